"""A small file kept up to date behind its writer's back: the caller hands over the newest content and goes on; the
write, its fsyncs included, happens later, off the event loop (the duplicate MAC flags' file: bgp/dupkeep.py).

- ``write_file``: replace a file whole or not at all, also across a power cut (a ``.part`` file made anew with
  O_EXCL and O_NOFOLLOW, fsynced, renamed over the file, the directory fsynced).
- ``WriteBehind``: ``put(version, data)`` returns at once; one writer (``spawn``: a green thread under ryu-manager)
  writes through ``offload`` (the app's ``blocking``: eventlet's OS threads), so neither the caller nor the event
  loop waits for a disk. At most one write is in flight; content put meanwhile replaces what was waiting (only the
  newest is written, and it is written last: an older content never lands after a newer one); a failed write is
  logged and tried again ``RETRY`` seconds later (``later``), or at once when newer content comes. ``written`` is
  the version of the content the file is known to hold (acknowledged: renamed and the directory fsynced). ``close``
  (on stop) waits a bounded time for the newest content.

What a crash loses: the content put since the last acknowledged write (a restart reads the file last written). The
defaults (``spawn`` and ``offload`` run the function at once) write before ``put`` returns: tests, and tools that
have no event loop.

One green thread at a time, assumed: ``put``, ``close`` and the writer share ``_pending`` and ``_busy`` without a
lock (``_start``'s check-and-set of ``_busy`` is not atomic across OS threads). Under ryu-manager (threads
monkey-patched) the default ``later`` is a green thread too. Outside it, a failed write's retry would run ``_start``
from the OS thread of a real ``threading.Timer``, racing ``put``: no such caller exists (2026-12-05: the only
WriteBehind is the duplicate MAC flags' file, bgp/dupkeep.py, built by bgp/federation.py; the app sets its
``spawn`` and ``offload``; the benchmarks build a Federation without bgp settings, so without a file; no CLI
command builds one; the unit tests that make a write fail replace ``later``). A tool that writes with it without
ryu-manager must pass a ``later`` that runs on its own thread (or take a lock around ``put``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time

from controller.loglimit import warn_limited

RETRY = 5.0  # seconds before a failed write is tried again (without newer content meanwhile)
CLOSE_WAIT = 5.0  # seconds ``close`` waits at most for the newest content to be written
POLL = 0.02  # seconds between two looks of ``close`` at the writer


def later(delay: float, function):
    """Run ``function()`` in ``delay`` seconds; the timer (``cancel()``). Also bgp/federation.py's recovery timer."""
    timer = threading.Timer(delay, function)  # a green thread under ryu-manager (threads are monkey-patched)
    timer.daemon = True
    timer.start()
    return timer


class WriteBehind:
    def __init__(self, path: str, log: logging.Logger, what: str):
        """``path``: the file; ``what``: what it holds, for the log ("duplicate MAC flags")."""
        self.path, self.log, self.what = path, log, what
        self.offload = lambda function, *args: function(*args)  # the app's ``blocking``: the write off the loop
        self.spawn = lambda function: function()  # the app's ``hub.spawn``: the caller does not wait for the write
        self.later = later  # (delay, function) -> a timer with cancel(): a failed write tried again
        self.sleep = time.sleep  # green under ryu-manager: ``close`` waits without holding the loop
        self.clock = time.monotonic  # ``close``'s bound
        self.written = None  # the version the file is known to hold (None: none written by this process)
        self.failures = 0  # writes failed in a row
        self._pending: tuple | None = None  # (version, data) to write next: the newest put and not written
        self._busy = False  # a writer runs (at most one: the write in flight is its)
        self._retry = None  # the timer armed after a failure
        self._closed = False

    def put(self, version, data: bytes) -> None:
        """Have the file hold ``data`` (``version``: what ``written`` says once it does); returns before the write."""
        self._pending = (version, data)
        self._start()

    def behind(self) -> bool:
        """Whether content put is not written yet (waiting, in flight, or failed and to be tried again)."""
        return self._busy or self._pending is not None

    def close(self, wait: float = CLOSE_WAIT) -> bool:
        """On stop: try a failed write once more and wait up to ``wait`` seconds for the newest content to be
        written; whether it was (no timer is armed from now on)."""
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._start()
        deadline = self.clock() + wait
        while self._busy and self.clock() < deadline:
            self.sleep(POLL)
        if self.behind():
            self.log.warning("%s not written to %s before the stop: a restart reads the file last written",
                             self.what, self.path)
        return not self.behind()

    def _start(self) -> None:
        if not self._busy and self._pending is not None:
            self._busy = True
            self.spawn(self._drain)

    def _drain(self) -> None:
        """The writer: the newest content, until none is waiting or a write failed."""
        try:
            while self._pending is not None:
                version, data = self._pending
                self._pending = None
                try:
                    exc = self.offload(write_file, self.path, data)
                except Exception as error:  # not an OSError (write_file returns those): raised in the pool's thread
                    exc = error
                if exc is not None:
                    self._failed(version, data, exc)
                    return
                self.written, self.failures = version, 0
        finally:
            self._busy = False

    def _failed(self, version, data: bytes, exc: Exception) -> None:
        if self._pending is None:  # nothing newer came during the write: this content is still the newest
            self._pending = (version, data)
        self.failures += 1
        warn_limited(self.log, (self.what, "not written"), "%s not written to %s (they hold in memory; tried again "
                     "in %gs or with the next change; a restart meanwhile reads the file last written): %s",
                     self.what, self.path, RETRY, exc)
        if self._retry is None and not self._closed:
            self._retry = self.later(RETRY, self._retry_now)

    def _retry_now(self) -> None:
        self._retry = None
        if not self._closed:
            self._start()


def write_file(path: str, data: bytes) -> OSError | None:
    """Replace the file at ``path`` by one holding ``data``, whole or not at all, also across a power cut; the error,
    or None. Runs in an OS thread (WriteBehind.offload): no logging, no green lock. The ``.part`` file is made
    anew (O_EXCL, O_NOFOLLOW) after removing whatever is at its path (unlink removes a link or a FIFO itself, never
    what it names or opens it); fsynced before the rename, and the directory after it (the rename durable too)."""
    part = path + ".part"
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(part)  # a stale one (a crash mid-write), or anything put there
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(part, path)
        _fsync_directory(os.path.dirname(path) or ".")
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(part)
        return exc
    return None


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
