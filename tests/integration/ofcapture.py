"""Raw OpenFlow replies from a real Open vSwitch bridge, read over its management socket (``BRIDGE.mgmt`` in the
instance's run directory, where ``ovs-ofctl`` talks to it): for oracles that compare Canopy's parsing with Ryu's on
bytes OVS itself wrote (tests/integration/test_flood_parts.py)."""

from __future__ import annotations

import socket
import struct

HEADER = struct.Struct("!BBHI")
HELLO, MULTIPART_REQUEST, MULTIPART_REPLY = 0, 18, 19
MP_GROUP_DESC, REPLY_MORE = 7, 1
TIMEOUT = 10.0  # seconds a read may wait
MOST = 10_000  # messages read at most for one request


def multipart(rundir, bridge: str, version: int, kind: int) -> list[bytes]:
    """Each message of the bridge's reply to a multipart request of ``kind`` (no body), in OpenFlow ``version``
    (0x04, 0x05: the bridge must allow it), as OVS sent it."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(TIMEOUT)
        sock.connect(str(rundir / f"{bridge}.mgmt"))
        sock.sendall(HEADER.pack(version, HELLO, 8, 1))
        xid, replies = 2, []
        sock.sendall(HEADER.pack(version, MULTIPART_REQUEST, 16, xid) + struct.pack("!HH4x", kind, 0))
        for _ in range(MOST):
            message = _read(sock)
            got_version, got_kind, _length, got_xid = HEADER.unpack_from(message)
            if got_kind != MULTIPART_REPLY or got_xid != xid:
                continue  # (its hello; an echo request)
            assert got_version == version, (got_version, version)
            replies.append(message)
            if not struct.unpack_from("!H", message, 10)[0] & REPLY_MORE:
                return replies
    raise AssertionError(f"{bridge}: more than {MOST} messages without the reply's last part")


def _read(sock) -> bytes:
    head = _exactly(sock, HEADER.size)
    return head + _exactly(sock, HEADER.unpack(head)[2] - HEADER.size)


def _exactly(sock, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the bridge closed its management connection")
        data += chunk
    return data
