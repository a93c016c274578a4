"""openflow.encode: flows and groups to OpenFlow 1.3/1.4 messages, checked against Ryu's own parser.

- the fast WireEncoder writes exactly the bytes Ryu serializes for the same flow-mod;
- a serialized flow-mod parsed back by Ryu decodes to the flow it came from (match, actions, cookie...);
- groups, packet-outs and bundle adds survive the same round trip.
"""

import struct

import pytest

from controller import ofcheck

from controller.ryu_compat import ofproto_parser, ofproto_protocol
from openflow import decode, encode, pipeline, ryumsg
from openflow.flows import Group, Owner, flow, render_flow
from tests.unit.flow_samples import FLOWS, GROUPS

VERSIONS = [4, 5]  # OpenFlow 1.3, 1.4


def protocol(version):
    """A stand-in datapath: Ryu's descriptor of the version, with the ofproto and parser modules."""
    return ofproto_protocol.ProtocolDesc(version)


def serialized(msg, xid=0x1234):
    msg.set_xid(xid)
    msg.serialize()
    return bytes(msg.buf)


def parse(dp, data):
    """Ryu's own parse of a message Canopy sends (without controller/ofcheck.py, which refuses a flow-mod: no
    switch sends one)."""
    version, msg_type, length, xid = ofproto_parser.header(data)
    with ofcheck.uninstalled():
        return ofproto_parser.msg(dp, version, msg_type, length, xid, bytearray(data))


def parse_actions(parser, data, offset, end):
    actions = []
    while offset < end:
        action = parser.OFPAction.parser(data, offset)
        actions.append(action)
        offset += action.len
    return actions


def test_samples_are_valid_pipeline_flows():
    for f in FLOWS:
        pipeline.check_flow(f)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("f", FLOWS, ids=lambda f: render_flow(f, with_cookie=False)[:60])
def test_wire_flow_add_is_byte_for_byte_ryu(version, f):
    dp = protocol(version)
    wire = encode.WireEncoder(dp.ofproto)
    assert wire.flow_add(f, 0x1234) == serialized(ryumsg.flow_add(dp, f))
    assert wire.flow_add(f, 0x1234, f.cookie) == wire.flow_add(f, 0x1234)


def test_a_shared_flow_is_encoded_once_for_every_switch(monkeypatch):
    """Every switch's encoder reuses a Flow's match and instructions once encoded (a Flow object is shared by
    the switches that need it); each message still carries its own xid, and the bytes stay Ryu's. Per version:
    a 1.3 switch after a 1.4 one gets its own encoding."""
    shared = flow(20, 100, {"eth_dst": "02:00:00:00:00:01"}, [("set", "reg7", 5), ("goto", 50)],
                  Owner("vport", "v1"))
    encoders = [encode.WireEncoder(protocol(5).ofproto) for _ in range(3)] + [encode.WireEncoder(protocol(4).ofproto)]
    matched = []
    for wire in encoders:
        original = wire.match
        monkeypatch.setattr(wire, "match", lambda m, original=original: matched.append(m) or original(m))
    messages = [wire.flow_add(shared, xid) for xid, wire in enumerate(encoders, start=1)]
    assert len(matched) == 2  # once for 1.4 (three switches), once for 1.3
    for xid, (version, data) in enumerate(zip([5, 5, 5, 4], messages), start=1):
        assert data == serialized(ryumsg.flow_add(protocol(version), shared), xid)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("cache", [encode.INSTRUCTION_CACHE, 4])
def test_an_action_many_flows_share_is_encoded_once(monkeypatch, version, cache):
    """Flows whose action lists differ still share most actions (each vport's ARP answer: its MAC and IP in three
    of nine; 10,000 new ports bring 10,000 such flows, none of them cached): each action is encoded once per encoder
    and its bytes reused (was: every action of every new action list). The bytes stay Ryu's, also when the cache is
    full and starts over."""
    from openflow.flows import arp_reply_actions

    monkeypatch.setattr(encode, "INSTRUCTION_CACHE", cache)
    dp = protocol(version)
    wire = encode.WireEncoder(dp.ofproto)
    moves = []
    move = wire._actions["move"]
    monkeypatch.setitem(wire._actions, "move", lambda a: moves.append(a) or move(a))
    flows = [flow(pipeline.SERVICES, 100, {"reg5": 7, "eth_type": 0x0806, "arp_op": 1, "arp_tpa": f"10.0.0.{i}"},
                  [*arp_reply_actions(f"02:00:00:00:00:{i:02x}", f"10.0.0.{i}"), *pipeline.BACK_TO_PORT],
                  Owner("vport", f"v{i}")) for i in range(1, 101)]
    for f in flows:
        assert wire.flow_add(f, 0x1234) == serialized(ryumsg.flow_add(dp, f))
    per_flow = sum(a[0] == "move" for a in flows[0].actions)
    assert len(moves) == (per_flow if cache > 100 else len(flows) * per_flow)  # a cache of 4 starts over each flow


@pytest.mark.parametrize("version", VERSIONS)
def test_wire_delete_strict_is_byte_for_byte_ryu(version):
    dp = protocol(version)
    wire = encode.WireEncoder(dp.ofproto)
    for f in FLOWS:
        ryu = ryumsg.flow_delete_strict(dp, f.table, f.priority, f.cookie, ryumsg.ryu_match(dp.ofproto_parser, f.match))
        assert wire.flow_delete_strict(f.table, f.priority, f.cookie, wire.match(f.match), 7) == serialized(ryu, 7)


@pytest.mark.parametrize("version", VERSIONS)
def test_read_back_match_deletes_the_same_flow(version):
    """A match read back from the switch (an OFPMatch) encodes to the bytes of the flow's own match."""
    dp = protocol(version)
    wire = encode.WireEncoder(dp.ofproto)
    for f in FLOWS:
        parsed = parse(dp, wire.flow_add(f, 1))
        assert encode.ryu_match_bytes(parsed.match) == wire.match(f.match)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("f", FLOWS, ids=lambda f: render_flow(f, with_cookie=False)[:60])
def test_flow_add_round_trips_through_ryus_parser(version, f):
    dp = protocol(version)
    msg = parse(dp, encode.WireEncoder(dp.ofproto).flow_add(f, 99))
    ofp = dp.ofproto
    assert (msg.xid, msg.command, msg.cookie, msg.table_id, msg.priority) == \
        (99, ofp.OFPFC_ADD, f.cookie, f.table, f.priority)
    assert (msg.idle_timeout, msg.hard_timeout, msg.flags, msg.buffer_id) == (0, 0, 0, ofp.OFP_NO_BUFFER)
    assert decode.decode_match(msg.match) == f.match
    assert decode.decode_actions(ofp, msg.instructions) == f.actions
    assert decode.describe_stats(ofp, msg) == render_flow(f)


@pytest.mark.parametrize("version", VERSIONS)
def test_delete_strict_names_one_flow_exactly(version):
    dp = protocol(version)
    f = FLOWS[0]
    wire = encode.WireEncoder(dp.ofproto)
    msg = parse(dp, wire.flow_delete_strict(f.table, f.priority, f.cookie, wire.match(f.match), 5))
    ofp = dp.ofproto
    assert (msg.command, msg.cookie, msg.cookie_mask) == (ofp.OFPFC_DELETE_STRICT, f.cookie, encode.ALL_ONES)
    assert (msg.out_port, msg.out_group, msg.instructions) == (ofp.OFPP_ANY, ofp.OFPG_ANY, [])
    assert decode.decode_match(msg.match) == f.match


def test_bundle_add_is_byte_for_byte_ryu_and_keeps_the_xid():
    dp = protocol(5)
    wire = encode.WireEncoder(dp.ofproto)
    f = FLOWS[-1]
    inner = ryumsg.flow_add(dp, f)
    ryu = dp.ofproto_parser.OFPBundleAddMsg(dp, 3, dp.ofproto.OFPBF_ATOMIC | dp.ofproto.OFPBF_ORDERED, inner, [])
    assert wire.bundle_add(3, wire.flow_add(f, 0x42)) == serialized(ryu, 0x42)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("command", ["add", "modify", "delete"])
def test_group_mod_buckets_round_trip(version, command):
    dp = protocol(version)
    group = GROUPS[0]
    data = serialized(ryumsg.group_mod(dp, group, command))
    ofp, parser = dp.ofproto, dp.ofproto_parser
    cmd, kind, group_id = struct.unpack_from("!HBxI", data, 8)
    assert (cmd, kind, group_id) == (getattr(ofp, f"OFPGC_{command.upper()}"), ofp.OFPGT_ALL, group.group_id)
    buckets, offset = [], 16
    while offset < len(data):
        bucket = parser.OFPBucket.parser(data, offset)
        buckets.append(tuple(decode.decode_action(ofp, a) for a in bucket.actions))
        offset += bucket.len
    assert tuple(buckets) == (() if command == "delete" else group.buckets)


@pytest.mark.parametrize("version", VERSIONS)
def test_packet_out_carries_actions_and_data(version):
    dp = protocol(version)
    actions = (("set", "reg6", 3), ("output", 3))
    frame = bytes(range(64))
    data = serialized(ryumsg.packet_out(dp, actions, frame))
    ofp, parser = dp.ofproto, dp.ofproto_parser
    buffer_id, in_port, actions_len = struct.unpack_from("!IIH", data, 8)
    assert (buffer_id, in_port) == (ofp.OFP_NO_BUFFER, ofp.OFPP_CONTROLLER)
    decoded = parse_actions(parser, data, 24, 24 + actions_len)
    assert tuple(decode.decode_action(ofp, a) for a in decoded) == actions
    assert data[24 + actions_len:] == frame


@pytest.mark.parametrize("version", VERSIONS)
def test_read_back_requests_select_only_canopy_cookies(version):
    dp = protocol(version)
    data = serialized(ryumsg.canopy_flow_stats_request(dp))
    table, out_port, out_group, cookie, mask = struct.unpack_from("!B3xII4xQQ", data, 16)
    ofp = dp.ofproto
    assert (table, out_port, out_group) == (ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY)
    assert (cookie, mask) == (0xCA << 56, 0xFF << 56)


def test_unknown_vocabulary_is_refused():
    wire = encode.WireEncoder(protocol(4).ofproto)
    owner = Owner("switch", "s")
    with pytest.raises(encode.EncodeError):
        wire.flow_add(flow(0, 1, {}, [("teleport", 1)], owner), 1)
    with pytest.raises(encode.EncodeError):
        wire.flow_add(flow(0, 1, {}, [("set", "no_such_field", 1)], owner), 1)
    with pytest.raises(encode.EncodeError):
        ryumsg.group_mod(protocol(4), Group(2, ((("goto", 3),),)), "add")


def test_foreign_flow_is_still_described():
    """A flow read back with something outside the vocabulary falls back to Ryu's text, never fails."""
    dp = protocol(4)
    parser = dp.ofproto_parser
    stats = parser.OFPFlowStats(table_id=0, priority=1, cookie=0xCA << 56, match=parser.OFPMatch(in_port=1),
                                instructions=[parser.OFPInstructionWriteMetadata(1, 1)])
    text = decode.describe_stats(dp.ofproto, stats)
    assert text.startswith("cookie=0xca00000000000000,table=0,priority=1,") and "WriteMetadata" in text


@pytest.mark.parametrize("version", VERSIONS)
def test_groups_read_back_decode_to_the_groups_sent(version):
    """A group-mod's buckets, returned as a group-desc entry on the wire, decode to the same Group; a
    group of another type does not decode (its buckets are not trusted)."""
    dp = protocol(version)
    for group in GROUPS:
        data = serialized(ryumsg.group_mod(dp, group, "add"))
        buckets = data[16:]  # ofp_header, command, type, pad, group_id
        for kind, expected in ((dp.ofproto.OFPGT_ALL, group), (dp.ofproto.OFPGT_SELECT, None)):
            entry = struct.pack("!HBxI", 8 + len(buckets), kind, group.group_id) + buckets
            desc = dp.ofproto_parser.OFPGroupDescStats.parser(bytearray(entry), 0)
            assert decode.decode_group(dp.ofproto, desc) == expected


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("command", ["add", "modify", "delete"])
def test_wire_group_mod_is_byte_for_byte_ryu(version, command):
    dp = protocol(version)
    wire = encode.WireEncoder(dp.ofproto)
    for group in GROUPS:
        assert wire.group_mod(group, command, 0x77) == serialized(ryumsg.group_mod(dp, group, command), 0x77)
    with pytest.raises(encode.EncodeError):
        wire.group_mod(Group(2, ((("goto", 3),),)), "add", 1)


class _CountingParser:
    """A Ryu parser module that counts the message and action objects built through it."""

    def __init__(self, parser):
        self._parser, self.built = parser, 0

    def __getattr__(self, name):
        attr = getattr(self._parser, name)
        if not (name.startswith("OFP") or name.startswith("NX")) or not callable(attr):
            return attr

        def build(*args, **kwargs):
            self.built += 1
            return attr(*args, **kwargs)
        return build


@pytest.mark.parametrize("version", VERSIONS)
def test_reconciler_sends_a_big_flood_group_without_building_ryu_objects(version):
    """A subnet's flood group has a bucket per local port and is rewritten whole whenever one comes or goes:
    the reconciler writes it with the WireEncoder (before: one Ryu bucket and two action objects per port,
    ~6 ms of CPU for a 627-bucket group-mod, two per added port at 5,000 vports in port_to_ping)."""
    from types import SimpleNamespace

    from openflow.changeset import ChangeSet, encode_all
    from openflow.reconciler import SwitchReconciler

    dp = protocol(version)
    counting = _CountingParser(dp.ofproto_parser)
    datapath = SimpleNamespace(id=0xA, ofproto=dp.ofproto, ofproto_parser=counting, xid=0, address=("10.0.0.1", 1))
    rec = SwitchReconciler(datapath)
    group = Group(20002, tuple((("set", "reg7", port), ("resubmit", pipeline.EGRESS_ACL)) for port in range(1, 314)))
    counting.built = 0
    encoded = encode_all(rec._wire, ChangeSet({"group_modify": [(group.group_id, group)]}), 0x99, None, lambda n: None)
    data, = encoded.chunks
    assert counting.built == 0
    assert data == serialized(ryumsg.group_mod(dp, group, "modify"), 0x99)


@pytest.mark.parametrize("version", [4, 5])
def test_a_flows_match_for_its_delete_is_the_same_from_its_cached_body(version):
    """WireEncoder.flow_match takes the head of the body encoded for the flow's add (a delete of a flow this
    controller added re-encodes nothing): the same bytes as encoding the match, for every sample."""
    wire = encode.WireEncoder(ofproto_protocol.ProtocolDesc(version).ofproto)
    fresh = encode.WireEncoder(ofproto_protocol.ProtocolDesc(version).ofproto)
    for f in FLOWS:
        wire.body(f)
        assert wire.flow_match(f) == fresh.match(f.match)


@pytest.mark.parametrize("version", VERSIONS)
def test_a_value_out_of_range_is_one_message_left_out_not_the_change_set(version):
    """A port number OVSDB reported (any non-negative integer: a buggy or hostile hypervisor can say 2**33), a
    priority or a malformed address that does not fit its field: that message is left out and named, the rest of
    the change set is encoded. It used to raise out of encode_all (OverflowError, struct.error, OSError...), so
    every change set of the switch failed and it was read back again and again, nothing else sent."""
    from openflow.changeset import ChangeSet, encode_all

    wire = encode.WireEncoder(protocol(version).ofproto)
    owner = Owner("vport", "v")
    good = flow(0, 100, {"in_port": 5}, [("output", 7)], owner)
    bad = [flow(0, 100, {"in_port": 2 ** 33}, [("output", 7)], owner),
           flow(0, 100, {"in_port": 5}, [("output", 2 ** 33)], owner),
           flow(0, 70000, {"in_port": 5}, [("output", 7)], owner),
           flow(0, 100, {"eth_type": 0x0800, "ipv4_dst": "300.1.1.1"}, [("output", 7)], owner),
           flow(0, 100, {"eth_dst": "zz:00:00:00:00:01"}, [("output", 7)], owner)]
    groups = [(7, Group(7, ((("output", 2 ** 33),),))), (8, Group(8, ((("output", 3),),)))]
    changes = ChangeSet({"group_add": groups, "flow_add": [(f.key, f) for f in [*bad, good]],
                         "flow_delete": [(f.key, f) for f in bad[:2]]})
    encoded = encode_all(wire, changes, 0xFFFFFFFE, None, lambda n: None)
    assert sorted(encoded.errors) == [0, 2, 3, 4, 5, 6, 8]  # the second delete's match is in range
    assert all(text.startswith("not encodable: ") for text in encoded.errors.values())
    assert encoded.sent == {"group_add": 1, "flow_add": 1, "flow_delete": 1}
    xid = (0xFFFFFFFE + 7) & 0xFFFFFFFF  # message 7, the xids wrapped
    assert b"".join(encoded.chunks) == wire.group_mod(groups[1][1], "add", 0xFFFFFFFF) + wire.flow_add(good, xid) + \
        wire.flow_delete_strict(0, 100, bad[1].cookie, wire.match(bad[1].match), xid + 2)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("kind", ["flow_add", "flow_delete"])
def test_a_value_of_the_wrong_type_is_a_bug_raised_not_a_message_left_out(version, kind):
    """A string where a port number goes (a compiler bug, never a value a switch or OVSDB reported: those are typed)
    raises out of the change set, so the reconciler logs it with its traceback, instead of being counted with the
    values that do not fit their field."""
    from openflow.changeset import ChangeSet, encode_all

    wire = encode.WireEncoder(protocol(version).ofproto)
    bug = flow(0, 100, {"in_port": "5"}, [("output", 7)], Owner("vport", "v"))
    with pytest.raises(TypeError):
        encode_all(wire, ChangeSet({kind: [(bug.key, bug)]}), 1, None, lambda n: None)


@pytest.mark.parametrize("match, actions, says", [
    ({"reg7": 5}, [("set", "reg6", 1.0)], "action set of field reg6 has the value 1.0 of type float, not an integer"),
    ({"reg7": 5}, [("set", "reg6", True)], "action set of field reg6 has the value True of type bool"),
    ({"reg7": 5}, [("set", "reg6", "1")], "action set of field reg6 has the value '1' of type str, not an integer"),
    ({"reg7": 5}, [("set", "reg6", (1.0, 0xFF))], "action set of field reg6 has the value 1.0 of type float"),
    ({"reg7": 5}, [("set", "eth_dst", 2.0)], "has the value 2.0 of type float, not an integer or an address as text"),
    ({"reg7": 5.0}, [], "match field reg7 has the value 5.0 of type float, not an integer"),
    ({"reg7": False}, [], "match field reg7 has the value False of type bool"),
])
def test_a_set_or_match_value_that_is_not_an_integer_is_refused_at_check_time(match, actions, says):
    """The encoder caches an action's and a match field's bytes by its value, and ``1.0 == 1 == True``: a float
    equal to an int raised in a fresh encoder but was written as the int once the int's bytes were cached, so one
    flow had two encodings. check_flow refuses it, naming the flow and the field."""
    bug = flow(pipeline.EGRESS, 100, match, [*actions, ("output", 7)], Owner("vport", "v"))
    with pytest.raises(pipeline.PipelineError) as info:
        pipeline.check_flow(bug)
    assert says in str(info.value) and str(info.value).startswith(str(bug))
    for ok in ([("set", "reg6", 1)], [("set", "reg6", (1, 0xFF))], [("set", "eth_dst", "02:00:00:00:00:01")],
               [("set", "eth_dst", 0x020000000001)], [("set", "ipv4_src", "10.0.0.1")]):
        pipeline.check_flow(flow(pipeline.EGRESS, 100, {"reg7": 5}, [*ok, ("output", 7)],
                                 Owner("vport", "v")))


@pytest.mark.parametrize("bug, says", [
    (flow(pipeline.EGRESS, None, {"reg7": 5}, [("output", 7)], Owner("vport", "v")), "priority None is not an integer"),
    (flow(pipeline.EGRESS, 100, {"reg7": 5}, [("output", None)], Owner("vport", "v")), "output port None is neither"),
    (flow(pipeline.EGRESS, 100, {"reg7": 5}, [("output", "7")], Owner("vport", "v")), "output port '7' is neither"),
    (flow(pipeline.EGRESS, 100, {"reg7": None}, [("output", 7)], Owner("vport", "v")), "match field reg7 has no value"),
    (flow(pipeline.EGRESS, 100, {"reg7": 5}, [("group", None)], Owner("vport", "v")), "action group has no value"),
    (flow(pipeline.EGRESS, 100, {"reg7": 5}, [("set", "reg6", None), ("output", 7)], Owner("vport", "v")),
     "action set of field reg6 has no value"),
])
def test_a_value_missing_where_the_encoder_needs_one_is_a_compiler_bug_raised_at_check_time(bug, says):
    """None as a priority or an output port made ``struct`` raise in the encoder, which leaves out a message whose
    value does not fit its field (the test above): the compiler's bug became a flow quietly missing from the switch.
    check_flow names the flow and the field, so the programming pass fails loudly (tests/unit/test_programloop.py)."""
    with pytest.raises(pipeline.PipelineError) as info:
        pipeline.check_flow(bug)
    assert says in str(info.value) and str(info.value).startswith(str(bug))  # the flow as dump-flows shows it
    for ok in ("in_port", "controller", 7):
        pipeline.check_flow(flow(pipeline.EGRESS, 100, {"reg7": 5}, [("output", ok)], Owner("vport", "v")))
