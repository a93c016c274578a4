"""TCP ports for the tests' listeners, kept until they bind them."""

from __future__ import annotations

import socket

_RESERVED = []  # the sockets holding the ports reserved_port gave, for the test process's life


def reserved_port(ip: str = "127.0.0.1") -> int:
    """A TCP port on ``ip`` (the kernel's pick) kept for the listener it is meant for: bound (SO_REUSEADDR, not
    listening) for the test process's life, so that the listener binds it whenever it starts, in a child process a
    second or two later too, if it sets SO_REUSEADDR (PairLink, gobgpd, ExaBGP, eventlet's listen do), while no other
    socket can take it meanwhile: another process's bind(0) or connect skips it, a bind without SO_REUSEADDR is
    refused. (A port closed at once was free only until the listener bound it: test_ha_busy[standby] failed once
    with "Address already in use" on a loaded machine.) Nothing listens on it until the listener does: a dial to it
    is refused, as to a port nobody holds."""
    sock = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((ip, 0))
    _RESERVED.append(sock)
    return sock.getsockname()[1]
