"""Flow-stats replies as the reconciler reads them back (controller.flowstats.LazyFlowStats, through the door to Ryu:
controller.ryu_compat).

A reply is built on the wire from the sample flows (the fixed part of ofp_flow_stats, then the match and
instructions exactly as the WireEncoder writes them in a flow-mod) and parsed by Ryu's message parser:

- every entry carries the table, priority, cookie and counters it was given, and its match and instructions
  decode to the flow it came from;
- the match and instructions are parsed only when asked for: a read-back needs (table, priority, cookie) only,
  and Ryu's parse of every action of tens of thousands of flows held the event loop long enough for OVS to drop
  50 switches read back at once (tests/benchmarks/vrs_scale.py);
- an entry whose length is below its fixed part or beyond the message is refused (Ryu drops the message), and an
  instruction or action whose length is out of bounds when the match or instructions are first used (a stale
  entry's delete is left out, not encodable, the rest sent): a length of 0 spun Ryu's parser for ever.
"""

import logging
import struct

import pytest

from controller.ryu_compat import ofproto_parser, ofproto_protocol
from openflow import decode, encode, ryumsg
from tests.unit.flow_samples import FLOWS

VERSIONS = [4, 5]  # OpenFlow 1.3, 1.4


def flow_stats_reply(dp, flows) -> bytes:
    """An OFPMP_FLOW multipart reply holding ``flows`` (packet count i, byte count 100 i)."""
    ofp = dp.ofproto
    wire = encode.WireEncoder(ofp)
    entries = b""
    for i, f in enumerate(flows):
        body = wire.match(f.match) + wire.instructions(f.actions)
        fixed = [48 + len(body), f.table, 7, 8, f.priority, 0, 0, 0]
        if ofp.OFP_VERSION == 5:
            fixed.append(0)  # importance
        entries += struct.pack(ofp.OFP_FLOW_STATS_0_PACK_STR, *fixed, f.cookie, i, 100 * i) + body
    head = struct.pack(ofp.OFP_MULTIPART_REPLY_PACK_STR, ofp.OFPMP_FLOW, 0)
    length = ofp.OFP_HEADER_SIZE + len(head) + len(entries)
    return struct.pack(ofp.OFP_HEADER_PACK_STR, ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY, length, 9) + head + entries


def parse(dp, data):
    version, msg_type, length, xid = ofproto_parser.header(data)
    return ofproto_parser.msg(dp, version, msg_type, length, xid, bytearray(data))


@pytest.mark.parametrize("version", VERSIONS)
def test_entries_carry_what_the_switch_sent(version):
    dp = ofproto_protocol.ProtocolDesc(version)
    msg = parse(dp, flow_stats_reply(dp, FLOWS))
    assert len(msg.body) == len(FLOWS)
    for i, (f, entry) in enumerate(zip(FLOWS, msg.body)):
        assert (entry.table_id, entry.priority, entry.cookie) == f.key
        assert (entry.packet_count, entry.byte_count, entry.duration_sec, entry.duration_nsec) == (i, 100 * i, 7, 8)
        assert decode.decode_match(entry.match) == decode.decode_match(
            ryumsg.ryu_match(dp.ofproto_parser, f.match))
        assert decode.decode_actions(dp.ofproto, entry.instructions) == tuple(f.actions)
        assert decode.describe_stats(dp.ofproto, entry).startswith(f"cookie={f.cookie:#x},table={f.table},")


@pytest.mark.parametrize("version", VERSIONS)
def test_match_and_instructions_are_parsed_only_when_asked_for(version, monkeypatch):
    dp = ofproto_protocol.ProtocolDesc(version)
    data = flow_stats_reply(dp, FLOWS)
    parsed = []
    original = dp.ofproto_parser.OFPFlowStats.parser
    monkeypatch.setattr(dp.ofproto_parser.OFPFlowStats, "parser",
                        classmethod(lambda cls, buf, offset: parsed.append(offset) or original(buf, offset)))
    msg = parse(dp, data)
    keys = {(e.table_id, e.priority, e.cookie) for e in msg.body}  # what a read-back looks at
    assert keys == {f.key for f in FLOWS} and parsed == []
    assert msg.body[3].match is msg.body[3].match and len(parsed) == 1  # parsed once, on first use


def test_the_door_to_ryu_exports_every_name_it_lists():
    import controller.ryu_compat as ryu_compat
    from controller.flowstats import LazyFlowStats

    namespace: dict = {}
    exec("from controller.ryu_compat import *", namespace)  # raised AttributeError when a listed name was gone
    assert set(ryu_compat.__all__) <= namespace.keys()
    assert namespace["LazyFlowStats"] is LazyFlowStats


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("length", [0, 47, 10_000])
def test_an_entry_whose_length_is_below_its_fixed_part_or_beyond_the_message_is_refused(version, length,
                                                                                         monkeypatch):
    dp = ofproto_protocol.ProtocolDesc(version)
    data = bytearray(flow_stats_reply(dp, FLOWS[:3]))
    struct.pack_into("!H", data, 16, length)  # the first entry's length (after the headers: 8 + 8 bytes)
    lazy = dp.ofproto_parser.OFPFlowStatsReply.cls_stats_body_cls
    with pytest.raises(ValueError, match=f"flow stats entry at byte 16: length {length} is not between its fixed "
                                         f"part's {lazy.HEADER.size} bytes and the {len(data) - 16} left"):
        lazy.parser(data, 16)
    entries = []  # Ryu's parse loop steps by the length: 0 spun there for ever (bounded here: 100 entries)
    original = lazy.parser
    monkeypatch.setattr(lazy, "parser", classmethod(
        lambda cls, buf, offset: entries.append(offset) or len(entries) > 100 or original(buf, offset)))
    assert parse(dp, bytes(data)) is None  # Ryu logs the error and drops the message
    assert entries == [16]


def first_instruction(data: bytes, entry: int = 16) -> int:
    """The offset of an entry's first instruction in a reply of flow_stats_reply (after its match; ``entry``: where
    the entry starts, by default the first one, after the headers)."""
    match_length = struct.unpack_from("!H", data, entry + 48 + 2)[0]
    return entry + 48 + (match_length + 7) // 8 * 8


def bounded(monkeypatch, cls, calls: list) -> None:
    """``cls.parser`` (Ryu's instruction or action parser) raises after 100 calls: a loop of Ryu's that does not move
    on ends (a test that fails, not one that hangs)."""
    original = cls.parser
    monkeypatch.setattr(cls, "parser", classmethod(lambda _, buf, offset: calls.append(offset) or (
        original(buf, offset) if len(calls) <= 100 else pytest.fail("Ryu's parser did not move on"))))


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("where, length", [("instruction", 0), ("instruction", 4), ("instruction", 4096),
                                           ("action", 0), ("action", 4096)])
def test_an_instruction_or_action_whose_length_is_out_of_bounds_is_refused_on_first_use(version, where, length,
                                                                                          monkeypatch):
    dp = ofproto_protocol.ProtocolDesc(version)
    data = bytearray(flow_stats_reply(dp, FLOWS[:1]))  # an apply-actions instruction, its first action a set-field
    at = first_instruction(data)
    assert struct.unpack_from("!H", data, at)[0] == dp.ofproto.OFPIT_APPLY_ACTIONS
    at += 8 if where == "action" else 0
    struct.pack_into("!H", data, at + 2, length)
    entry = parse(dp, bytes(data)).body[0]
    assert entry.cookie == FLOWS[0].cookie  # the fixed fields read as before
    calls = []
    bounded(monkeypatch, dp.ofproto_parser.OFPInstruction, calls)
    bounded(monkeypatch, dp.ofproto_parser.OFPAction, calls)
    for field in ("instructions", "match"):
        with pytest.raises(ValueError, match=f"flow stats entry: the {where} at byte {at - 16} has a length of "
                                             f"{length}, not between 8 and the "):
            getattr(entry, field)
    assert calls == []  # refused before Ryu's parser ran


@pytest.mark.parametrize("version", VERSIONS)
def test_a_stale_entrys_delete_with_an_instruction_of_length_0_is_left_out_and_the_rest_sent(version, monkeypatch):
    from openflow.changeset import ChangeSet, encode_all

    dp = ofproto_protocol.ProtocolDesc(version)
    data = bytearray(flow_stats_reply(dp, FLOWS[:2]))
    struct.pack_into("!H", data, first_instruction(data) + 2, 0)
    bad, good = parse(dp, bytes(data)).body
    calls = []
    bounded(monkeypatch, dp.ofproto_parser.OFPInstruction, calls)
    wire = encode.WireEncoder(dp.ofproto)
    keyed = [((e.table_id, e.priority, e.cookie), e) for e in (bad, good)]
    encoded = encode_all(wire, ChangeSet({"flow_delete": keyed}), 100, None, lambda n: None)
    assert list(encoded.errors) == [0]
    assert encoded.errors[0].startswith("not encodable: flow stats entry: the instruction at byte ")
    assert encoded.sent == {"flow_delete": 1}


@pytest.mark.parametrize("version", VERSIONS)
def test_entries_sharing_a_key_are_logged_even_when_one_cannot_be_parsed(version, caplog):
    from tests.unit.test_reconcile_pacing import reconciler

    dp = ofproto_protocol.ProtocolDesc(version)
    data = bytearray(flow_stats_reply(dp, FLOWS[:1] * 2))  # the same flow twice: one key
    second = 16 + struct.unpack_from("!H", data, 16)[0]
    at = first_instruction(data, second)
    struct.pack_into("!H", data, at + 2, 0)  # the second's first instruction (the one the warning describes)
    entries = parse(dp, bytes(data)).body
    rec, _ = reconciler()
    with caplog.at_level(logging.WARNING, logger="test.reconciler"):
        rec._take_in(entries, [])  # raised out of the read-back (its warning's description), read again and again
    assert rec._book.loose == {FLOWS[0].key: entries[1]}
    assert [r.getMessage() for r in caplog.records] == [
        f"two installed flows share table, priority and cookie: cookie={FLOWS[0].cookie:#x},table={FLOWS[0].table},"
        f"priority={FLOWS[0].priority},not parsed: ValueError: flow stats entry: the instruction at byte "
        f"{at - second} has a length of 0, not between 8 and the "
        f"{len(entries[1][-1]) - at + second} bytes left for it"]
