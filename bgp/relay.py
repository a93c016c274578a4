"""The API process ExaBGP runs for Canopy: a byte pipe between ExaBGP and the speaker.

ExaBGP talks to its API processes only through their stdin and stdout, and it is the one that
starts them. ``bgp.speaker.Speaker`` listens on a Unix socket and renders
``process canopy { run <python> -m bgp.relay <socket>; encoder json; }``, so this relay is:

- ExaBGP -> relay stdin -> socket -> speaker: JSON messages (updates, neighbor states) and
  one acknowledgement line ("done" / "error") per command;
- speaker -> socket -> relay stdout -> ExaBGP: API commands, one per line.

It copies bytes both ways, unchanged, and exits when either side closes (ExaBGP gone: stdin at
end of file, after handing the speaker what it still holds; speaker gone: socket at end of file).
What ExaBGP writes is read as soon as it is written and held here (up to ``MAX_PENDING`` bytes) until
the speaker takes it: ExaBGP blocks on a full pipe, so without this it would stop decoding updates
whenever the controller's event loop is busy compiling. The speaker's commands are held the same way
until ExaBGP reads them (ExaBGP reads 16 KiB per turn of its reactor; withdrawing 10,000 routes is ~3 MB
of command lines): the speaker hands a burst over in a few turns of the controller's event loop instead of
a socket buffer's worth per turn, and neither direction waits for the other. The pipe to ExaBGP holds
``PIPE_SIZE`` (``widen_pipe``), not Linux's 64 KiB: a line of 500 withdrawals is ~136 KiB, and ExaBGP no longer
waits mid-line for this relay to be scheduled again to refill it. Standard library only; no
Canopy import, so nothing here can break with ExaBGP or the controller.

Why a relay: ExaBGP 5.0.15 exchanges API messages only with children it starts itself, over
their stdin and stdout (even its named-pipe CLI is such a child), and only the processes named
in a neighbor's ``api`` section receive that neighbor's updates and state changes. Canopy, as
ExaBGP's parent, has no hold on those pipes; a child that forwards them to a socket Canopy owns
is the smallest bridge, and it needs no ExaBGP internals.
"""

from __future__ import annotations

import fcntl
import functools
import os
import select
import socket
import sys

CHUNK = 65536
SEND_CHUNK = 1 << 20  # bytes offered to the other side at once
PIPE_SIZE = 1 << 20  # bytes the pipe to ExaBGP holds (Linux's default: 64 KiB; pipe-max-size's default: 1 MiB)
F_SETPIPE_SZ, F_GETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031), getattr(fcntl, "F_GETPIPE_SZ", 1032)
MAX_PENDING = 256 << 20  # bytes held each way (ExaBGP's output for a busy speaker, commands for a busy ExaBGP)


def relay(sock: socket.socket, stdin_fd: int, stdout_fd: int) -> None:
    """Copy stdin -> sock and sock -> stdout until either side reaches end of file or closes."""
    try:
        _copy(sock, stdin_fd, stdout_fd)
    except (BrokenPipeError, ConnectionResetError):
        return


def _copy(sock: socket.socket, stdin_fd: int, stdout_fd: int) -> None:
    sock.setblocking(False)
    widen_pipe(stdout_fd)
    os.set_blocking(stdout_fd, False)
    pending = bytearray()  # from ExaBGP, not yet taken by the speaker
    commands = bytearray()  # from the speaker, not yet taken by ExaBGP
    to_exabgp = functools.partial(os.write, stdout_fd)
    while True:
        reading = [fd for fd, held in ((stdin_fd, pending), (sock, commands)) if len(held) < MAX_PENDING]
        writing = [fd for fd, held in ((sock, pending), (stdout_fd, commands)) if held]
        readable, writable, _ = select.select(reading, writing, [])
        if sock in writable:
            del pending[:_offer(sock.send, pending)]
        if stdout_fd in writable:
            del commands[:_offer(to_exabgp, commands)]
        if stdin_fd in readable:
            data = os.read(stdin_fd, CHUNK)
            if not data:
                sock.setblocking(True)
                sock.sendall(pending)
                return
            pending += data
        if sock in readable:
            try:
                data = sock.recv(CHUNK)
            except BlockingIOError:
                continue
            if not data:
                return
            commands += data


def widen_pipe(fd: int, size: int = PIPE_SIZE) -> int:
    """Make the pipe ``fd`` hold ``size`` bytes (Linux ``F_SETPIPE_SZ``); its size after (unchanged where it cannot
    be set: not a pipe, another system, a size over ``/proc/sys/fs/pipe-max-size``)."""
    try:
        return fcntl.fcntl(fd, F_SETPIPE_SZ, size)
    except OSError:
        try:
            return fcntl.fcntl(fd, F_GETPIPE_SZ)
        except OSError:
            return 0


def _offer(write, held: bytearray) -> int:
    """Bytes of ``held`` the non-blocking ``write`` took (0 when the other side is full)."""
    try:
        with memoryview(held) as view, view[:SEND_CHUNK] as part:  # released before ``held`` is cut
            return write(part)
    except BlockingIOError:
        return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m bgp.relay <unix socket path>``; exit status 0 on a normal close."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m bgp.relay <unix socket path>\n")
        return 2
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.connect(args[0])
            relay(sock, sys.stdin.fileno(), sys.stdout.fileno())
    except OSError as error:
        sys.stderr.write(f"bgp.relay: {args[0]}: {error}\n")
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
