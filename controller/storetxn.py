"""One write transaction of the store's connection (controller/store.py): BEGIN IMMEDIATE ... COMMIT, rolled back on
any exception, what to do when the disk refuses the COMMIT or the ROLLBACK, and how a refusal is worded; and
``note``, the store's logging from code that may run in its thread pool."""

from __future__ import annotations

import errno
import functools
import logging
import os
import sqlite3
import sys
import threading
import time
from collections import deque

log = logging.getLogger("canopy.store")
_held: deque = deque()  # (logger, level, message, args) noted in the thread pool, logged by ``flush_notes``


def note(logger: logging.Logger, level: int, message: str, *args) -> None:
    """``logger.log(level, message, *args)``, or, in the store's thread pool (``ryu_compat.blocking``: an OS thread
    other than the hub's once threads are green), kept until the hub's next ``flush_notes``: logging takes its
    handlers' locks, green ones then, which an OS thread must not touch (one the hub holds would switch to the hub
    from the wrong thread). The store flushes after each call through ``offload``."""
    patcher = sys.modules.get("eventlet.patcher")
    if patcher is not None and patcher.is_monkey_patched("thread") and \
            threading.get_native_id() != threading.main_thread().native_id:
        _held.append((logger, level, message, args))  # atomic under the GIL
    else:
        logger.log(level, message, *args, stacklevel=2)  # the caller's line in the record


def flush_notes() -> None:
    """Log what ``note`` kept (on the hub: the store, once its call through ``offload`` returned)."""
    while _held:
        logger, level, message, args = _held.popleft()
        logger.log(level, message, *args)


def fault_reason(path: str, exc: BaseException) -> str:
    """SQLite's message with its error name, or the OS error, and how much space the store's file system has left."""
    name = getattr(exc, "sqlite_errorname", None)
    reason = f"{exc} ({name})" if name else (exc.strerror or str(exc) if isinstance(exc, OSError) else str(exc))
    free = free_bytes(path)
    return reason if free is None else f"{reason}; {free} bytes free on its file system"


def free_bytes(path) -> int | None:
    """The space left for ``path``'s file system (what an operator must free when the store's disk is full); None
    when the file system cannot say."""
    try:
        stat = os.statvfs(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


class Unlocked:
    def acquire(self):
        pass

    def release(self):
        pass


class Transaction:
    """Take the store lock (none: the caller holds it), BEGIN IMMEDIATE ... COMMIT, rolled back on any
    exception."""

    def __init__(self, db, lock=Unlocked(), after=None):
        self.db = db
        self.lock = lock
        self.after = after  # called once it ended, committed or not (before the lock is released)

    def __enter__(self):
        self.lock.acquire()
        try:
            if self.db.in_transaction:  # left open by a rollback the disk refused: end it first
                self.db.execute("ROLLBACK")
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise

    def __exit__(self, exc_type, exc, tb):
        """COMMIT, or ROLLBACK on an exception; a COMMIT the disk refuses is rolled back and raised. SQLite may have
        rolled back itself (SQLITE_FULL): then there is nothing to roll back, and the first error is the one raised."""
        try:
            if exc_type is None:
                try:
                    self.db.execute("COMMIT")
                except BaseException:
                    self._rollback()
                    raise
            else:
                self._rollback()
        finally:
            try:
                if self.after is not None:
                    self.after()
            finally:
                self.lock.release()
        return False

    def _rollback(self):
        """ROLLBACK unless SQLite already did (SQLITE_FULL ends the transaction itself); a failed one is left for
        ``__enter__`` of the next transaction to finish."""
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error:
                note(log, logging.WARNING, "rolling back a refused transaction failed too; the next one rolls it back "
                     "first")


ABANDONED_WAIT = 30.0  # seconds the store's next use of its connection, or its close, waits for abandoned work
_POLL = 0.01  # seconds between two looks at whether it ended


class Busy(OSError):
    """The store's connection is still in work a caller abandoned (``InFlight``) after ``ABANDONED_WAIT``."""


class InFlight:
    """The store's work handed to its thread pool (``offload``), marked running from when it starts until it ends, in
    the thread that runs it. A caller killed while it waits (a stop: ryu_compat.blocking waits for its function
    ``KILLED_WAITS``, 5 s at most, then raises) releases the store's lock while the pool thread may still be in the
    transaction: the store's next use of the connection (``run``, ``wait``) and its close wait for that work to end
    (``ABANDONED_WAIT`` at most) instead of starting a second transaction on the connection, or closing it, under it.
    Work whose caller stopped waiting before it started never starts (a queued job run later would start its
    transaction under another's): whichever comes first, the start or the caller's exception, decides (``setdefault``
    on one dict, atomic under the GIL). Waiting looks every 10 ms with ``time.sleep`` (green once threads are: the hub
    serves the others meanwhile), a bounded number of times (not a clock a test may have frozen)."""

    def __init__(self):
        self._work: dict = {}  # the last work: {"by": "run" (started) or "cancel", "ended": True once it ended}

    def running(self) -> bool:
        work = self._work
        return work.get("by") == "run" and not work.get("ended")

    def wait(self, seconds: float | None = None) -> bool:
        """Whether no work runs, once it ended or after ``seconds`` (``ABANDONED_WAIT``; False: it still runs)."""
        for _ in range(int((ABANDONED_WAIT if seconds is None else seconds) / _POLL)):
            if not self.running():
                return True
            time.sleep(_POLL)
        return not self.running()

    def run(self, offload, function, *args):
        """``offload(function, *args)``, marked running while ``function`` runs; ``Busy`` (nothing run) while work
        abandoned before still runs after ``ABANDONED_WAIT``."""
        if not self.wait():
            raise Busy(errno.EBUSY, "a transaction abandoned by a stopped caller still runs")
        work: dict = {}

        @functools.wraps(function)  # (its name, for what offload logs or counts)
        def marked():
            if work.setdefault("by", "run") != "run":
                return None  # its caller stopped waiting before it started: never started
            try:
                return function(*args)
            finally:
                work["ended"] = True

        self._work = work
        try:
            return offload(marked)
        except BaseException:
            work.setdefault("by", "cancel")  # (started: it runs on, ``running`` until it ended)
            raise
