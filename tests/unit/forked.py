"""Work run in a child forked from the test process: what it changes (module globals such as ``runtime.SETTINGS``, a
class patched) stays in the child, while what the test process has imported already costs the child nothing (a new
interpreter imports Ryu, eventlet and the controller again: ~1.4 s of CPU, 7 s at load 9.5)."""

from __future__ import annotations

import os
import select
import signal
import time
import traceback

FORKED_TIMEOUT = 60.0  # seconds a child has at most (its work takes well under one)


def forked(work, timeout: float = FORKED_TIMEOUT, own_hub: bool = False) -> str:
    """What ``work()`` returns (text), run in a forked child that ends with it. ``work`` must not run the event loop
    unless ``own_hub``: the child's hub is the test process's, holding its green threads as they were at the fork and
    its epoll (one kernel object for both processes: what the child's loop waited on and took is the parent's). With
    ``own_hub`` the child drops it first and runs a new one of its own (eventlet ``use_hub``), whose green threads
    are only those ``work`` spawns. A child that raised fails the test with its traceback; one not done in
    ``timeout`` seconds is killed and fails it too."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the test process's code
        status = 1
        try:
            os.close(read)
            if own_hub:
                from eventlet import hubs

                hubs.use_hub()  # (the test process's hub, its timers and listeners, never resumed here)
            answer, status = work().encode(), 0
        except BaseException:
            answer = traceback.format_exc().encode()
        finally:
            try:
                while answer:
                    answer = answer[os.write(write, answer):]
            finally:
                os._exit(status)
    os.close(write)
    try:
        out = _read_all(read, time.monotonic() + timeout)
    finally:
        os.close(read)
        status = _reaped(pid, out is None)
    assert out is not None, f"the forked child was not done in {timeout} s (killed)"
    assert status == 0, f"the forked child failed ({status}):\n{out}"
    return out


def _read_all(fd: int, deadline: float) -> str | None:
    """Everything written to the pipe ``fd`` until its writer closed it; None if that was not by ``deadline``."""
    chunks = []
    while (left := deadline - time.monotonic()) > 0:
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 65536)
            if not chunk:
                return b"".join(chunks).decode(errors="replace")
            chunks.append(chunk)
    return None


def _reaped(pid: int, kill: bool) -> int:
    """The exit status of child ``pid`` (killed first if ``kill``)."""
    if kill:
        os.kill(pid, signal.SIGKILL)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
