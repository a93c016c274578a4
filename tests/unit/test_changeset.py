"""openflow/changeset.py, WireEncoder.write_adds and write_deletes: a change set's bytes, with a shared flow's add encoded once and
reused by every switch, are exactly the bytes Ryu serializes for each message, fresh, in OpenFlow 1.3 (barriers) and
1.4 (bundle adds); message i carries xid first + i; an error's xid names its message."""

from __future__ import annotations

import logging
import struct
from types import SimpleNamespace

import pytest

from controller.ryu_compat import hub, ofproto_protocol
from openflow import encode, ryumsg, pipeline as p
from openflow.changeset import ENCODE_CHUNK, SEND_CHUNK, ChangeSet, encode_all
from openflow.flows import FIELD_ORDER, Flow, Group, Owner, flow
from openflow.reconciler import SwitchReconciler
from tests.unit.flow_samples import FLOWS, GROUPS
from tests.unit.green import joined, spawned, turns

VERSIONS = [4, 5]  # OpenFlow 1.3, 1.4
MAX_XID = 0xFFFFFFFF


def protocol(version):
    return ofproto_protocol.ProtocolDesc(version)


def ryu_bytes(dp, msg, xid: int) -> bytes:
    """What Ryu serializes for ``msg`` with ``xid``: the reference, built fresh for every message."""
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


def ryu_add(dp, f: Flow, xid: int, bundle_id: int | None) -> bytes:
    inner = ryumsg.flow_add(dp, f)
    if bundle_id is None:
        return ryu_bytes(dp, inner, xid)
    flags = dp.ofproto.OFPBF_ATOMIC | dp.ofproto.OFPBF_ORDERED
    return ryu_bytes(dp, dp.ofproto_parser.OFPBundleAddMsg(dp, bundle_id, flags, inner, []), xid)


def copies(flows) -> list[Flow]:
    """The same flows as new objects: nothing cached on them yet."""
    return [Flow(f.table, f.priority, f.match, f.actions, f.owner) for f in flows]


def messages(data: bytes) -> list[bytes]:
    """OpenFlow messages, split by their header's length; fails on a partial one."""
    out, at = [], 0
    while at < len(data):
        length = struct.unpack_from("!H", data, at + 2)[0]
        assert length >= 8 and at + length <= len(data), "a message cut in two"
        out.append(data[at:at + length])
        at += length
    return out


@pytest.mark.parametrize("bundle_id", [None, 7], ids=["barrier", "bundle"])
def test_a_shared_flows_add_reused_by_every_switch_is_ryus_bytes_for_each(bundle_id):
    """Three switches of each version take the same Flow objects, one after another and interleaved 1.3/1.4 (a
    Flow keeps one encoding per version): every message equals Ryu's fresh serialization with its own xid (xids
    wrapping past 2**32 - 1 on one of them); each flow is encoded from scratch once per version only."""
    shared = copies(FLOWS)
    versions = [5, 4, 5, 4, 5, 4] if bundle_id is not None else [4, 5, 4, 5, 4, 5]
    fresh_total = {4: 0, 5: 0}
    for n, version in enumerate(versions):
        if bundle_id is not None and version == 4:
            continue  # bundles are OpenFlow 1.4's
        dp = protocol(version)
        wire = encode.WireEncoder(dp.ofproto)
        first = MAX_XID - 3 if n == 2 else 1000 * n + 1
        out = bytearray()
        fresh, errors = wire.write_adds(shared, first, out, bundle_id)
        fresh_total[version] += fresh
        assert errors == {}
        want = [ryu_add(dp, f, (first + i) & MAX_XID, bundle_id) for i, f in enumerate(copies(shared))]
        assert messages(bytes(out)) == want
        assert [wire.flow_add(f, 0x1234) for f in shared] == [ryu_add(dp, f, 0x1234, None) for f in shared]
    assert fresh_total[5] == len(FLOWS)
    assert fresh_total[4] == (len(FLOWS) if bundle_id is None else 0)


def test_a_flow_that_cannot_be_encoded_is_named_and_its_xid_left_unused():
    dp = protocol(5)
    wire = encode.WireEncoder(dp.ofproto)
    bad = Flow(p.L2_LOOKUP, 10, (("reg5", 1),), (("teleport", 3),), Owner("vport", "v"))
    good = copies(FLOWS[:2])
    out = bytearray()
    fresh, errors = wire.write_adds([good[0], bad, good[1]], 10, out, 3)
    assert fresh == 2 and list(errors) == [1] and "teleport" in errors[1]
    assert messages(bytes(out)) == [ryu_add(dp, good[0], 10, 3), ryu_add(dp, good[1], 12, 3)]


def ryu_delete(dp, table: int, priority: int, cookie: int, match, xid: int, bundle_id: int | None) -> bytes:
    inner = ryumsg.flow_delete_strict(dp, table, priority, cookie, match)
    if bundle_id is None:
        return ryu_bytes(dp, inner, xid)
    flags = dp.ofproto.OFPBF_ATOMIC | dp.ofproto.OFPBF_ORDERED
    return ryu_bytes(dp, dp.ofproto_parser.OFPBundleAddMsg(dp, bundle_id, flags, inner, []), xid)


@pytest.mark.parametrize("version,bundle_id", [(4, None), (5, None), (5, 7)], ids=["1.3", "1.4", "1.4-bundle"])
def test_deletes_written_together_are_ryus_bytes_and_reuse_the_match_of_an_encoded_add(version, bundle_id):
    """write_deletes: the DELETE_STRICT of flows whose adds were encoded (the match sliced from the add), of flows
    never encoded, and of flows read back, each Ryu's bytes with xid first + i (wrapping); a match it cannot
    encode is named by position and its xid left unused."""
    dp = protocol(version)
    wire = encode.WireEncoder(dp.ofproto)
    added, cold = copies(FLOWS), copies(FLOWS)
    wire.write_adds(added, 1, bytearray(), bundle_id)
    entries = [read_back_entry(dp, f) for f in FLOWS]
    bad = Flow(p.L2_LOOKUP, 10, (("no_such_field", 1),), (), Owner("vport", "v"))
    items = [*((f.key, f) for f in added), *((f.key, f) for f in cold), (bad.key, bad),
             *(((e.table_id, e.priority, e.cookie), e) for e in entries)]
    first, out = MAX_XID - 5, bytearray()
    fresh, errors = wire.write_deletes(items, first, out, bundle_id)
    assert list(errors) == [2 * len(FLOWS)] and fresh == 2 * len(FLOWS)  # the cold flows and the read-back ones
    want = [ryu_delete(dp, *key, ryumsg.ryu_match(dp.ofproto_parser, f.match), (first + i) & MAX_XID, bundle_id)
            for i, (key, f) in enumerate(items[:2 * len(FLOWS)])]
    want += [ryu_delete(dp, *key, e.match, (first + 2 * len(FLOWS) + 1 + i) & MAX_XID, bundle_id)
             for i, (key, e) in enumerate(items[2 * len(FLOWS) + 1:])]
    assert messages(bytes(out)) == want


def read_back_entry(dp, f: Flow):
    """A flow as flow stats bring it back: table, priority, cookie and Ryu's OFPMatch."""
    return SimpleNamespace(table_id=f.table, priority=f.priority, cookie=f.cookie,
                           match=ryumsg.ryu_match(dp.ofproto_parser, f.match))


def many_flows(count: int) -> list[Flow]:
    return [flow(p.L2_LOOKUP, 100, {"reg5": 7, "eth_dst": f"02:00:00:00:{i >> 8:02x}:{i & 0xff:02x}"},
                 [("set", "reg7", i), ("goto", p.EGRESS_ACL)], Owner("vport", f"v{i}")) for i in range(count)]


@pytest.mark.parametrize("version", VERSIONS)
def test_a_change_set_is_each_messages_ryu_bytes_in_order_in_pieces_of_whole_messages(version):
    """Group adds and modifies, flow adds, flow deletes (of a Flow and of a read-back entry), group deletes, in
    that order, message i with xid first + i; the pieces to write end between two messages; pauses are ticked with
    more units for what is encoded from scratch than for a flow whose bytes were cached."""
    dp = protocol(version)
    bundle_id = 9 if version == 5 else None
    adds = many_flows(1500)  # more than SEND_CHUNK bytes
    gone, entry = FLOWS[3], read_back_entry(dp, FLOWS[4])
    modified = Group(GROUPS[0].group_id + 2, GROUPS[0].buckets[:1])
    changes = ChangeSet({
        "group_add": [(GROUPS[0].group_id, GROUPS[0])], "group_modify": [(modified.group_id, modified)],
        "flow_add": [(f.key, f) for f in adds], "flow_delete": [(gone.key, gone), (FLOWS[4].key, entry)],
        "group_delete": [(GROUPS[0].group_id + 1, Group(GROUPS[0].group_id + 1, ()))]})
    first = 50
    ryu = [ryumsg.group_mod(dp, GROUPS[0], "add"), ryumsg.group_mod(dp, modified, "modify"),
           *(ryumsg.flow_add(dp, f) for f in adds),
           ryumsg.flow_delete_strict(dp, gone.table, gone.priority, gone.cookie,
                                     ryumsg.ryu_match(dp.ofproto_parser, gone.match)),
           ryumsg.flow_delete_strict(dp, entry.table_id, entry.priority, entry.cookie, entry.match),
           ryumsg.group_mod(dp, Group(GROUPS[0].group_id + 1, ()), "delete")]
    flags = getattr(dp.ofproto, "OFPBF_ATOMIC", 0) | getattr(dp.ofproto, "OFPBF_ORDERED", 0)
    want = [ryu_bytes(dp, dp.ofproto_parser.OFPBundleAddMsg(dp, bundle_id, flags, msg, []) if bundle_id else msg,
                      first + i) for i, msg in enumerate(ryu)]
    ticks = []
    cold = encode_all(encode.WireEncoder(dp.ofproto), changes, first, bundle_id, ticks.append)
    warm_ticks = []
    warm = encode_all(encode.WireEncoder(dp.ofproto), changes, first, bundle_id, warm_ticks.append)
    for done in (cold, warm):
        assert done.errors == {} and len(done.chunks) > 1
        assert [m for chunk in done.chunks for m in messages(chunk)] == want
        assert all(len(chunk) < SEND_CHUNK + ENCODE_CHUNK * max(map(len, want)) for chunk in done.chunks)
        assert done.sent == {"group_add": 1, "group_modify": 1, "flow_add": 1500, "flow_delete": 2,
                             "group_delete": 1}
    assert sum(warm_ticks) < sum(ticks)  # the adds' bytes were cached on the Flows by the first


def test_without_drops_the_named_messages_and_op_names_each_one():
    changes = ChangeSet({"group_add": [(1, "g1")], "flow_add": [("k1", "f1"), ("k2", "f2")],
                         "group_delete": [(3, "g3")]})
    assert [changes.op(i) for i in range(4)] == list(changes)
    assert [(op.kind, op.key) for op in changes] == [("group_add", 1), ("flow_add", "k1"), ("flow_add", "k2"),
                                                     ("group_delete", 3)]
    assert [op.key for op in changes.without({0, 2})] == ["k1", 3]
    assert changes.without({}) is changes and len(changes.without({0, 1, 2, 3})) == 0
    with pytest.raises(IndexError):
        changes.op(4)


class RejectingSwitch:
    """A 1.3 datapath that answers the barrier and, first, an error naming the message with ``reject_xid``."""

    def __init__(self, start_xid: int):
        desc = protocol(4)
        self.id, self.ofproto, self.ofproto_parser, self.xid = 1, desc.ofproto, desc.ofproto_parser, start_xid
        self.address = ("10.0.0.1", 1)
        self.rec = None
        self.sent = b""

    def send(self, data):
        self.sent += data
        for message in messages(data):
            version, kind, length, xid = struct.unpack_from("!BBHI", message)
            if kind == self.ofproto.OFPT_FLOW_MOD and struct.unpack_from("!H", message, 30)[0] == 0x30:  # priority
                error = self.ofproto_parser.OFPErrorMsg(self, type_=self.ofproto.OFPET_BAD_ACTION,
                                                        code=self.ofproto.OFPBAC_BAD_OUT_GROUP, data=message[:64])
                error.xid, error.msg_type, error.datapath = xid, self.ofproto.OFPT_ERROR, self
                self.rec.handle(error)
            elif kind == self.ofproto.OFPT_BARRIER_REQUEST:
                for waiter in self.rec._waiters.values():
                    waiter.event.set()

    def send_msg(self, msg):
        pass


@pytest.mark.parametrize("start_xid", [100, MAX_XID - 5], ids=["plain", "xids wrapping"])
def test_an_error_names_the_flow_it_answers_by_its_xid(start_xid):
    """The reconciler finds the rejected message from its xid (first + index, also across the wrap of the 32-bit
    xid): that flow is marked rejected and left out of the installed record, the others are installed."""
    switch = RejectingSwitch(start_xid)
    rec = switch.rec = SwitchReconciler(switch, log=logging.getLogger("test.changeset"))
    rec._need_read = False
    refused = flow(p.L2_LOOKUP, 0x30, {"reg5": 1}, [("group", 77)], Owner("subnet", "s"))
    flows = many_flows(12) + [refused]
    rec.set_desired(flows)
    rec._book.read_back({})
    with hub.Timeout(10):
        assert rec._sync()
    assert list(rec._rejected) == [refused.key] and "OFPBAC_BAD_OUT_GROUP" in rec._rejected[refused.key]
    installed = {f for fs in rec._book.installed.values() for f in fs}
    assert installed == set(flows) - {refused}
    assert rec.counters["flow_add"] == 13 and rec.counters["errors"] == 1


def field_values(name: str) -> tuple:
    """A plain and a masked value of match field ``name``, of its kind (MAC, IPv4 address, integer)."""
    if name in ("eth_src", "eth_dst", "arp_sha"):
        return "02:00:00:00:00:09", ("01:00:00:00:00:00", "01:00:00:00:00:00")
    if name in ("arp_spa", "arp_tpa", "ipv4_src", "ipv4_dst"):
        return "10.0.1.5", ("10.0.2.0", "255.255.255.0")
    return {"vlan_vid": 10 | 0x1000, "ct_mark": 0x80000123, "ct_state": 0x22, "eth_type": 0x800}.get(name, 7), (2, 2)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", FIELD_ORDER)
def test_a_delete_of_every_match_field_plain_or_masked_is_ryus_bytes_whether_its_add_was_encoded_or_not(version, name):
    """write_deletes slices the match from the flow's encoded add when it has one: for each match field Canopy
    writes, plain and masked, that delete and one encoded fresh are Ryu's flow_delete_strict."""
    dp = protocol(version)
    for value in field_values(name):
        f = Flow(p.L2_LOOKUP, 100, ((name, value),), (), Owner("vport", "v"))
        want = ryu_delete(dp, *f.key, ryumsg.ryu_match(dp.ofproto_parser, f.match), 9, None)
        for added in (False, True):
            wire, (item,) = encode.WireEncoder(dp.ofproto), copies([f])
            if added:
                wire.write_adds([item], 1, bytearray())
            out = bytearray()
            assert wire.write_deletes([(item.key, item)], 9, out) == (0 if added else 1, {})
            assert messages(bytes(out)) == [want], (name, value, added)


def test_at_most_a_few_switches_encode_a_big_change_set_at_once_and_a_small_one_never_waits():
    """At a cold start every switch encodes 16,000 flow adds, pausing every few milliseconds; 19-35 of 50 switches
    doing so at once filled the worst lag samples. ENCODES_AT_ONCE do it at a time; a change set of at most
    SMALL_CHANGE_SET messages (a new vport) takes no slot, so it does not wait behind them."""
    from openflow import atonce

    dp = protocol(5)
    big = ChangeSet({"flow_add": [(f.key, f) for f in many_flows(atonce.SMALL_CHANGE_SET + 1)]})
    small = ChangeSet({"flow_add": [(f.key, f) for f in many_flows(atonce.SMALL_CHANGE_SET)]})
    at_work, most = [0], [0]

    def encode_big():
        counted = []

        def tick(units):
            if not counted:  # the first pause: this switch is encoding
                counted.append(1)
                at_work[0] += 1
                most[0] = max(most[0], at_work[0])
            hub.sleep(0)
        done = encode_all(encode.WireEncoder(dp.ofproto), big, 1, 7, tick)
        at_work[0] -= 1
        return done

    threads = [spawned(encode_big) for _ in range(atonce.ENCODES_AT_ONCE + 4)]
    assert all(done.sent == {"flow_add": len(big)} for done in joined(*threads))
    assert most[0] == atonce.ENCODES_AT_ONCE
    for _ in range(atonce.ENCODES_AT_ONCE):  # every slot held by other switches' big change sets
        atonce.ENCODES.acquire()
    try:
        encoding = spawned(encode_all, encode.WireEncoder(dp.ofproto), small, 1, 7, lambda units: hub.sleep(0))
        turns(200, encoding)  # (one that failed: its error)
        assert encoding.dead, "a small change set waited for a slot"
        assert encoding.wait().sent == {"flow_add": len(small)}
    finally:
        for _ in range(atonce.ENCODES_AT_ONCE):
            atonce.ENCODES.release()
