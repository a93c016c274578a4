"""A FIFO for the tests that a secret file which is a FIFO is refused without blocking.

Opening a FIFO for reading the usual way blocks until a writer opens it. A watcher thread looks at the test's thread
in /proc: when the kernel shows it waiting in a FIFO's open for a writer (wchan ``wait_for_partner``), the watcher
notes that it blocked and releases it, writing ``data`` (by default two lines: no token, so a ``canopy run`` that
read it stops) and an end, so the test fails (on leaving the block, and on what the reader made of ``data``)
instead of hanging the run. The watcher is an OS thread with the OS's own
sleep even after eventlet monkey-patched threading and time (``canopy run`` does, in the tests that run it)."""

import contextlib
import os
import threading

from eventlet import patcher

_thread, _time = patcher.original("_thread"), patcher.original("time")
BLOCKED_IN_OPEN = "wait_for_partner"  # Linux: fs/pipe.c, a FIFO's open waiting for the other side


@contextlib.contextmanager
def fifo_without_writer(path, data=b"released\nby the test\n"):
    """A FIFO at ``path`` (mode 0600: only its kind is wrong) with no writer. The code run in the block, on this
    thread, must not block in its open: AssertionError on leaving the block if it did (it was released)."""
    os.mkfifo(path, 0o600)
    wchan = f"/proc/self/task/{threading.get_native_id()}/wchan"
    done, blocked, ended = [False], [False], _thread.allocate_lock()
    ended.acquire()

    def watch():
        try:
            while not done[0]:  # ends when the block does; the block ends because a blocked open is released
                if _read(wchan) == BLOCKED_IN_OPEN:
                    blocked[0] = True
                    _release(path, data)
                _time.sleep(0.001)
        finally:
            ended.release()

    _thread.start_new_thread(watch, ())
    try:
        yield str(path)
    finally:
        done[0] = True
        ended.acquire()
    assert not blocked[0], f"opening {path} blocked until a writer came (released by the test)"


def _read(proc_file):
    with open(proc_file) as fh:
        return fh.read().strip()


def _release(path, data):
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # a reader waits in open: this does not block
    except OSError:  # it stopped waiting meanwhile
        return
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
