"""The operating-system side of running ExaBGP as the speaker's child (``bgp.speaker``): the child dies with the
thread that started it, the Unix socket its API relay connects back to, and who is at the other end of it."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import struct
from pathlib import Path

_LIBC = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


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


def listen(path: str) -> socket.socket:
    """A non-blocking Unix listener at ``path``, readable by its owner only."""
    try:
        os.unlink(path)  # a socket file left by a previous run
    except FileNotFoundError:
        pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o600)  # and only a child of our ExaBGP is accepted (SO_PEERCRED)
    listener.listen(4)
    listener.setblocking(False)
    return listener
