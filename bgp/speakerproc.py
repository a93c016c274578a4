"""The operating-system side of ``bgp.speaker``: ExaBGP's death signal, who is at the other end of the relay's
socket, the sockets the speaker's thread opens (the relay's listener, the pair that wakes the thread), and ending
ExaBGP's process group.

Part of ``bgp.speaker``, apart so that module stays about supervising ExaBGP and the conversation with it.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

_LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1
WAIT_LOOK = 0.01  # seconds between looks at a child's exit in wait_exit (eventlet's green wait looks as often)
TERM_GRACE = 5.0  # seconds between SIGTERM and SIGKILL, and for the reap after SIGKILL


def die_with_parent() -> None:
    """In the child before exec: SIGTERM when the thread that started it dies, so a controller killed
    with SIGKILL leaves no ExaBGP behind (PR_SET_PDEATHSIG; the speaker's thread lives until stop())."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def peer_pid(conn: socket.socket) -> int:
    """PID of the process at the other end of a Unix socket (SO_PEERCRED)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[0]


def parent_pid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def listen_unix(path: str) -> socket.socket:
    """The relay's listening socket at ``path`` (a file left there by a previous run replaced), mode 0600."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        os.chmod(path, 0o600)  # and only a child of our ExaBGP is accepted (SO_PEERCRED)
        listener.listen(4)
        listener.setblocking(False)
    except OSError:
        listener.close()
        raise
    return listener


def wake_pair() -> tuple[socket.socket, socket.socket]:
    """The non-blocking pair another thread writes a byte into to wake the speaker's thread from select."""
    pair = socket.socketpair()
    for sock in pair:
        sock.setblocking(False)
    return pair


def wait_exit(proc: subprocess.Popen, timeout: float) -> int:
    """``proc.wait(timeout=timeout)`` timed on the monotonic clock: the controller's Popen is eventlet's green one
    (ryu-manager monkey-patches subprocess), whose wait times ``timeout`` with ``time.time()``, so a wall clock stepped
    back while the speaker waited on ExaBGP made the wait last as long as the step (the speaker's thread held, a stop
    not ending), and one stepped forward ended it at once (SIGKILL without SIGTERM's grace). Looks every WAIT_LOOK s
    (a sleep: the hub's turn under eventlet)."""
    deadline = time.monotonic() + timeout
    while True:
        status = proc.poll()
        if status is not None:
            return status
        left = deadline - time.monotonic()
        if left <= 0:
            raise subprocess.TimeoutExpired(proc.args, timeout)
        time.sleep(min(WAIT_LOOK, left))


def terminate_group(proc: subprocess.Popen | None, grace: float, log) -> None:
    """SIGTERM ``proc``'s process group (its own: started with start_new_session, so only what the speaker started),
    wait ``grace`` seconds, then SIGKILL it and wait as long; nothing if it exited already (it is not reaped here)."""
    if proc is None or proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            wait_exit(proc, grace)
            return
        except subprocess.TimeoutExpired:
            log.warning("BGP speaker: exabgp (pid %d) ignored %s", proc.pid, sig.name)
