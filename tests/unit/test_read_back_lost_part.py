"""A read-back whose middle part was dropped (refused before parsing, or not parsed) is not believed.

Ryu drops a message it cannot parse (and Canopy one it refuses: controller/ofcheck.py) and goes on: the parts of a
multipart reply after it are dispatched, and the last one ended the reply as if it were whole. A flow read back
without the entries of the lost part was then missing from the book: its add sent again, or a stale flow in that part
never deleted. Here the real bytes go through Ryu's parse path (``ofproto_parser.msg``, as its receive loop calls it)
and what it dispatches goes to the reconciler, as the app hands it on.
"""

from __future__ import annotations

import logging
import struct

import pytest

from controller.ryu_compat import ofproto_parser, ofproto_protocol
from openflow.reconciler import SwitchReconciler

MORE = 1  # OFPMPF_REPLY_MORE


def entry(version: int, cookie: int, length: int | None = None) -> bytes:
    """One flow-stats entry (table 0, priority 100, ``cookie``), a match of no field and no instruction."""
    if version == 5:
        head = struct.pack("!HBxIIHHHHH2xQQQ", 0, 0, 1, 2, 100, 0, 0, 0, 0, cookie, 10, 1000)
    else:
        head = struct.pack("!HBxIIHHHH4xQQQ", 0, 0, 1, 2, 100, 0, 0, 0, cookie, 10, 1000)
    body = head + struct.pack("!HH4x", 1, 4)
    return struct.pack("!H", len(body) if length is None else length) + body[2:]


def part(version: int, xid: int, kind: int, flags: int, body: bytes) -> bytes:
    return struct.pack("!BBHIHH4x", version, 19, 16 + len(body), xid, kind, flags) + body


class Switch:
    """A datapath answering the read-back's flow-stats request with ``parts(xid)`` and the group request with an
    empty reply, each through Ryu's parse path."""

    def __init__(self, version: int, parts):
        desc = ofproto_protocol.ProtocolDesc(version)
        self.id, self.ofproto, self.ofproto_parser, self.xid = 1, desc.ofproto, desc.ofproto_parser, 0
        self.address = ("192.0.2.1", 1)
        self.version, self.parts, self.rec = version, parts, None

    def set_xid(self, msg):
        self.xid += 1
        msg.set_xid(self.xid)

    def send_msg(self, msg):
        kind = 1 if "Flow" in type(msg).__name__ else 7
        for data in (self.parts(msg.xid) if kind == 1 else [part(self.version, msg.xid, 7, 0, b"")]):
            parsed = ofproto_parser.msg(self, self.version, 19, len(data), msg.xid, bytearray(data))
            if parsed is not None:
                self.rec.handle(parsed)


def read_back(version: int, parts) -> tuple[bool, int]:
    switch = Switch(version, parts)
    rec = switch.rec = SwitchReconciler(switch, log=logging.getLogger("test.reconciler"))
    done = rec._read_back()
    return done, len(rec._book.loose) + len(rec._book.installed)


@pytest.mark.parametrize("version", [4, 5])
def test_a_read_back_with_a_middle_part_dropped_is_not_complete(version):
    def whole(xid):
        return [part(version, xid, 1, MORE, entry(version, 1)), part(version, xid, 1, MORE, entry(version, 2)),
                part(version, xid, 1, 0, entry(version, 3))]

    def middle_refused(xid):  # its entry's length is 0: refused as Ryu parses it (controller/flowstats.py)
        return [part(version, xid, 1, MORE, entry(version, 1)), part(version, xid, 1, MORE, entry(version, 2, 0)),
                part(version, xid, 1, 0, entry(version, 3))]

    def middle_refused_before_parsing(xid):  # a multipart type nobody asked for, with the read-back's xid
        return [part(version, xid, 1, MORE, entry(version, 1)), part(version, xid, 12, MORE, b"\0" * 64),
                part(version, xid, 1, 0, entry(version, 3))]

    assert read_back(version, whole) == (True, 3)
    assert not read_back(version, middle_refused)[0]
    assert not read_back(version, middle_refused_before_parsing)[0]
