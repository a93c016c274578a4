"""Group-description replies parsed lazily (controller/groupdesc.py): a message to its groups' fixed fields, a group's
buckets a bucket at a time on use (openflow/decode.py ``decode_group``, ticking the read-back's pacer per bucket).

Ryu parsed a reply whole as it was read, every bucket's actions built as objects: a flood group's part of 1,000
buckets (64 KB, one message) was one stretch of 10-20 ms of CPU, the longest of vrs_scale's restart (docs/benchmarks.md
"Branch perf47"). The oracle here is Ryu's own parser on the same bytes (the buckets Canopy's encoder makes, as OVS
returns them; tests/integration/test_flood_parts.py compares them on replies captured from a real OVS)."""

from __future__ import annotations

import struct

import pytest

from controller.ryu_compat import hub, ofproto_parser, ofproto_protocol
from openflow import decode, encode
from openflow.flows import Group
from tests.bytecodes import Bytecodes, opcodes
from tests.unit.flow_samples import GROUPS
from tests.unit.test_oversized_group import local, remote

VERSIONS = (4, 5)


def reply(version: int, groups, kind=None, xid: int = 9) -> bytes:
    """A group-description reply holding ``groups`` (their buckets as Canopy's encoder makes them): its bytes."""
    dp = ofproto_protocol.ProtocolDesc(version)
    wire = encode.WireEncoder(dp.ofproto)
    kind = dp.ofproto.OFPGT_ALL if kind is None else kind
    entries = b""
    for group in groups:
        buckets = b"".join(map(wire.bucket, group.buckets))
        entries += struct.pack("!HBxI", 8 + len(buckets), kind, group.group_id) + buckets
    body = struct.pack("!HH4x", 7, 0) + entries
    return struct.pack("!BBHI", version, 19, 8 + len(body), xid) + body


def parsed(version: int, message: bytes):
    """The message as Ryu's receive loop parses it (the parsers Canopy installs): its body."""
    dp = ofproto_protocol.ProtocolDesc(version)
    return ofproto_parser.msg(dp, version, 19, len(message), 9, message).body


def ryus(version: int, message: bytes) -> list:
    """Ryu's own OFPGroupDescStats of each entry of the message's body."""
    dp = ofproto_protocol.ProtocolDesc(version)
    stats, at, out = dp.ofproto_parser.OFPGroupDescStats, 16, []
    while at < len(message):
        entry = stats.parser(message, at)
        out.append(entry)
        at += entry.length
    return out


def same_as_ryus(version: int, message: bytes) -> None:
    """The lazy entries of ``message`` say what Ryu's parser says: fixed fields, and each bucket (all of its
    attributes and actions, as Ryu's JSON), whether read whole (``buckets``) or one at a time."""
    lazy, ryu = parsed(version, message), ryus(version, message)
    assert [(e.length, e.type, e.group_id) for e in lazy] == [(e.length, e.type, e.group_id) for e in ryu]
    for mine, theirs in zip(lazy, ryu):
        expected = [b.to_jsondict() for b in theirs.buckets]
        assert [b.to_jsondict() for b in mine.each_bucket()] == expected
        assert [b.to_jsondict() for b in mine.buckets] == expected


BIG = (Group(2 * 7000, tuple(map(local, range(1000)))), Group(2 * 7000 + 1, tuple(map(remote, range(1000)))))


@pytest.mark.parametrize("version", VERSIONS)
def test_entries_and_buckets_are_what_ryus_parser_makes(version):
    """The sample groups (every bucket shape Canopy makes), several in one message, and the biggest parts a flood
    group has (1,000 buckets to local ports, 1,000 to VTEPs: 64,016 bytes), each in one message."""
    same_as_ryus(version, reply(version, GROUPS))
    for group in BIG:
        message = reply(version, (group,))
        assert len(message) <= 65_535
        same_as_ryus(version, message)


@pytest.mark.parametrize("version", VERSIONS)
def test_read_back_groups_decode_to_the_groups_sent_a_bucket_a_tick(version):
    """Each group decodes to the Group sent, its pacer ticked once a bucket; one of another type does not decode."""
    dp = ofproto_protocol.ProtocolDesc(version)
    for group in GROUPS + BIG:
        ticks = []
        assert decode.decode_group(dp.ofproto, parsed(version, reply(version, (group,)))[0],
                                   lambda: ticks.append(1)) == group
        assert len(ticks) == len(group.buckets)
        other = parsed(version, reply(version, (group,), kind=dp.ofproto.OFPGT_SELECT))[0]
        assert decode.decode_group(dp.ofproto, other) is None


@pytest.mark.parametrize("version", VERSIONS)
def test_a_64_kb_reply_is_parsed_to_its_groups_and_decoded_a_bucket_at_a_time(version):
    """A part of 1,000 buckets to VTEPs (each a tunnel id and tunnel destination set, an output: 64,016 bytes): the
    read of its message parses the group's fixed fields only: 549 bytecodes (on main 95a4b671, the check of every
    bucket's actions and Ryu's parse of all of them: 1,805,569 with OpenFlow 1.3, in one stretch of the receive loop);
    decoding it, no more than one bucket's parse and decode between two ticks (~2,000 bytecodes)."""
    message = reply(version, BIG[1:])
    dp = ofproto_protocol.ProtocolDesc(version)
    read = opcodes(lambda: parsed(version, message))
    assert read <= 1_000, read
    (entry,) = parsed(version, message)
    counter, most, ticks = Bytecodes(), [0], [0]

    def tick():
        most[0], counter.count = max(most[0], counter.count), 0
        ticks[0] += 1

    decoded = counter.run(lambda: decode.decode_group(dp.ofproto, entry, tick))
    assert decoded == BIG[1] and ticks[0] == 1000
    assert max(most[0], counter.count) <= 3_000, most


def _with_a_bad_bucket(version: int, group: Group) -> bytes:
    """The reply holding ``group`` (two buckets or more), the first action of its second bucket of length 0."""
    message = bytearray(reply(version, (group,)))
    first = struct.unpack_from("!H", message, 24)[0]  # (the first bucket's length: after the headers, 16 + 8 bytes)
    struct.pack_into("!H", message, 24 + first + 16 + 2, 0)
    return bytes(message)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_group_read_back_with_a_bucket_that_cannot_be_parsed_is_replaced_once_and_said_so(version, caplog):
    """A read-back's group whose second bucket would spin Ryu's parser (refused at its first use): taken as one it
    cannot decode, said in one warning of the read-back (naming the group and the field), modified to the desired
    group once; then in sync, nothing more sent. Before, the read-back dropped it silently (decode_group: None)."""
    import logging

    from openflow.reconciler import SwitchReconciler
    from tests.unit.test_oversized_group import Answering

    group = Group(2 * 7000, (local(0), local(1), local(2)))
    switch = Answering(version)
    rec = switch.rec = SwitchReconciler(switch, log=logging.getLogger("test.groupdesc"))
    rec.set_desired([], [group])
    with caplog.at_level(logging.WARNING, logger="test.groupdesc"):
        rec._book.read_back({})
        rec._take_in([], parsed(version, _with_a_bad_bucket(version, group)))
    assert rec._installed_groups == {group.group_id: None}
    said = [r.getMessage() for r in caplog.records if "cannot decode" in r.getMessage()]
    assert len(said) == 1 and f"group {group.group_id}" in said[0] and "has a length of 0" in said[0], said
    with hub.Timeout(10):
        assert rec._sync()
    assert rec.counters["group_modify"] == 1 and rec._installed_groups == {group.group_id: group}
    with hub.Timeout(10):
        assert not rec._sync()  # (in sync: not modified again)
    assert rec.counters["group_modify"] == 1


class _Stopped(Exception):
    """What a pause of the read-back raised (not a bucket that cannot be parsed)."""


def test_what_a_pause_raises_while_buckets_are_decoded_is_not_taken_for_a_bad_bucket():
    """``decode_group`` gives None for a bucket it cannot parse or decode, not for what its ``tick`` raised: that
    goes on up (the read-back ends there), not a group modified as if the switch held something else."""
    dp = ofproto_protocol.ProtocolDesc(4)
    (entry,) = parsed(4, reply(4, BIG[:1]))

    def tick():
        raise _Stopped()

    with pytest.raises(_Stopped):
        decode.decode_group(dp.ofproto, entry, tick)
