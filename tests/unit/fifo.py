"""A FIFO for the tests that a secret file which is a FIFO is refused without blocking.

Opening a FIFO for reading the usual way blocks until a writer opens it. A watcher thread looks at the test's thread
in /proc: when the kernel shows it waiting in a FIFO's open for a writer (wchan ``wait_for_partner``), the watcher
notes that it blocked and releases it, writing ``data`` (by default two lines: no token, so a ``canopy run`` that
read it stops) and an end, so the test fails (on leaving the block, and on what the reader made of ``data``)
instead of hanging the run. Where wchan does not tell (another kernel, or wchan hidden), the watcher tries from
``BOUND`` seconds on, ten times a second, whether a reader holds the FIFO open, and releases it the same way: a
bound on a wrong reader's hang, not on a right one's time (a right reader opens without waiting, fstats and closes
at once: it holds the FIFO open for microseconds, not from one try to the next, so a slow run alone never fails on
the bound; only a try landing within those microseconds of a run already over ``BOUND`` seconds would). The
watcher is an OS thread with the OS's own sleep, open and write even after eventlet monkey-patched threading, time
and os (``canopy run`` does, and some tests: eventlet's write, run on this thread, waited on a hub of its own and
tried again for ever once the reader had gone, EPIPE). ``fifo_without_reader`` is the same for code that must not
open a FIFO for writing (that open waits for a reader)."""

import contextlib
import os
import threading

from eventlet import patcher

_os, _thread, _time = patcher.original("os"), patcher.original("_thread"), patcher.original("time")
BLOCKED_IN_OPEN = "wait_for_partner"  # Linux: fs/pipe.c, a FIFO's open waiting for the other side
BOUND = 60.0  # seconds after which a reader holding the FIFO open is released, whatever wchan shows
TRY_EVERY = 0.1  # seconds between those tries


def fifo_without_writer(path, data=b"released\nby the test\n"):
    """A FIFO at ``path`` (mode 0600: only its kind is wrong) with no writer. The code run in the block, on this
    thread, must not block in its open: AssertionError on leaving the block if it did (it was released)."""
    return _guarded(path, lambda: _release(path, data), "a writer")


def fifo_without_reader(path):
    """A FIFO at ``path`` with no reader, for code that must not open it for writing (that open waits for a reader):
    AssertionError on leaving the block if the code run in it, on this thread, blocked in such an open. It is
    released by a reader that opens the FIFO and closes it at once (a write after that fails, EPIPE)."""
    return _guarded(path, lambda: _release_writer(path), "a reader")


@contextlib.contextmanager
def _guarded(path, release, partner):
    """A FIFO at ``path`` whose blocked open on this thread ``release()`` ends (True if someone had it open)."""
    os.mkfifo(path, 0o600)
    wchan = f"/proc/self/task/{threading.get_native_id()}/wchan"
    done, blocked, ended = [False], [None], _thread.allocate_lock()
    ended.acquire()

    def watch():
        next_try = _time.monotonic() + BOUND
        try:
            while not done[0]:  # ends when the block does; the block ends because a blocked open is released
                if _read(wchan) == BLOCKED_IN_OPEN:
                    blocked[0] = f"blocked until {partner} came"
                    release()
                elif _time.monotonic() > next_try:
                    next_try += TRY_EVERY
                    if release():
                        blocked[0] = f"still held it open after {BOUND:g} s, when {partner} came"
                _time.sleep(0.001)
        finally:
            ended.release()

    _thread.start_new_thread(watch, ())
    try:
        yield str(path)
    finally:
        done[0] = True
        ended.acquire()
    assert not blocked[0], f"the code opening {path} {blocked[0]} (released by the test)"


def _read(proc_file):
    """The text of ``proc_file``; "" where it cannot be read (then only BOUND releases a blocked reader)."""
    try:
        with open(proc_file) as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _release(path, data) -> bool:
    """Whether a reader had ``path`` open (waiting in its open, or not): it gets ``data`` and an end."""
    try:
        fd = _os.open(path, _os.O_WRONLY | _os.O_NONBLOCK)  # ENXIO unless a reader has it open: never blocks
    except OSError:  # no reader: none came yet, or it stopped waiting meanwhile
        return False
    try:
        _os.write(fd, data)
    except OSError:  # the reader went meanwhile (EPIPE): it had the FIFO open all the same
        pass
    finally:
        _os.close(fd)
    return True


def _release_writer(path) -> bool:
    """Whether a writer had ``path`` open (waiting in its open, or not): a reader opens it and closes it at once, so a
    writer waiting in its open goes on (its write then fails, EPIPE). A writer counts from the start of its open, so
    the reader's first read tells: EAGAIN (a writer, no data), data (a writer), or the end (none)."""
    try:
        fd = _os.open(path, _os.O_RDONLY | _os.O_NONBLOCK)  # a FIFO's read side never waits
    except OSError:
        return False
    try:
        return _os.read(fd, 1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        _os.close(fd)
