"""A flow too big for one OpenFlow message (a hostile or mistaken action list: thousands of outputs): its add is left
out as not encodable, named in the switch's error line, and the rest of the change set is sent; also when the
flow-mod fits in 65,535 bytes but its bundle add (16 bytes more, OpenFlow 1.4) does not. Its length used to be packed
outside the try that turns an over-long message into "not encodable": struct.error left the change set, and the
reconciler read the switch back and failed again every 5 s, sending nothing to that switch."""

from __future__ import annotations

import logging

import pytest

from controller.ryu_compat import hub, ofproto_protocol
from openflow import encode, pipeline as p
from openflow.flows import Flow, Owner, flow
from openflow.reconciler import SwitchReconciler
from tests.unit.test_oversized_group import FLOWS, Answering

LOG = "test.oversized_flow"


def wide(outputs: int) -> Flow:
    """A flow of ``outputs`` output actions (16 bytes each) after a 16-byte match: its add is 72 + 16n bytes."""
    return flow(p.L2_LOOKUP, 90, {"reg5": 7}, [("output", 1 + i) for i in range(outputs)], Owner("vport", "wide"))


def synced(version: int, flows) -> SwitchReconciler:
    switch = Answering(version)
    rec = switch.rec = SwitchReconciler(switch, log=logging.getLogger(LOG))
    rec._need_read = False
    rec._book.read_back({})
    rec.set_desired(flows, [])
    with hub.Timeout(10):
        assert rec._sync()
    return rec


@pytest.mark.parametrize("version", [4, 5], ids=["OpenFlow 1.3", "OpenFlow 1.4 (bundle)"])
@pytest.mark.parametrize("outputs", [4_090, 4_091, 4_092, 5_000])
def test_a_flow_too_big_for_a_message_is_left_out_named_and_the_rest_sent(version, outputs, caplog):
    caplog.set_level(logging.ERROR, logger=LOG)
    big = wide(outputs)
    size = 72 + 16 * outputs
    fits = size + (16 if version == 5 else 0) <= 0xFFFF  # the flow-mod, and its bundle add
    rec = synced(version, FLOWS + [big])
    assert rec.counters["flow_add"] == len(FLOWS) + fits
    assert (big.key in rec._rejected) is not fits
    if not fits:
        (line,) = [r.getMessage() for r in caplog.records if r.name == LOG]
        assert line.startswith("switch rejected flow add of ") and "not encodable: " in line, line[:300]
        assert "output:1," in line and len(line) < 1_300, (line[:300], len(line))
        assert rec._rejected[big.key].startswith("not encodable: ") and "65,535" in rec._rejected[big.key]


@pytest.mark.parametrize("bundle_id", [None, 3])
def test_write_adds_refuses_each_over_long_flow_by_position_and_writes_the_others(bundle_id):
    wire = encode.WireEncoder(ofproto_protocol.ProtocolDesc(5).ofproto)
    flows = [FLOWS[0], wide(4_092), FLOWS[1], wide(4_091), FLOWS[2]]
    out = bytearray()
    fresh, errors = wire.write_adds(flows, 10, out, bundle_id)
    assert sorted(errors) == ([1] if bundle_id is None else [1, 3])
    assert errors[1] == ("a flow-mod of 65,544 bytes is over OpenFlow's 65,535" if bundle_id is None else
                         "a flow-mod of 65,544 bytes is 65,560 in a bundle add, over OpenFlow's 65,535")
    kept = [0, 2, 4] if bundle_id else [0, 2, 3, 4]
    assert bytes(out) == b"".join(  # each kept flow with its own xid: a refused one's xid unused
        wire.flow_add(flows[i], 10 + i) if bundle_id is None else wire.bundle_add(bundle_id, wire.flow_add(flows[i], 10 + i))
        for i in kept)
    with pytest.raises(encode.EncodeError, match="a flow-mod of 65,544 bytes is over OpenFlow's 65,535"):
        wire.flow_add(flows[1], 1)
    assert len(wire.flow_add(flows[3], 1)) == 65_528


def test_an_action_list_over_a_message_is_refused_clearly():
    wire = encode.WireEncoder(ofproto_protocol.ProtocolDesc(4).ofproto)
    fresh, errors = wire.write_adds([wide(5_000)], 1, bytearray())
    assert errors == {0: "5,000 actions are 80,008 bytes, over the 65,535 of an OpenFlow message"}


def test_a_delete_whose_match_is_over_a_message_is_refused_clearly():
    wire = encode.WireEncoder(ofproto_protocol.ProtocolDesc(5).ofproto)
    with pytest.raises(encode.EncodeError, match="a flow delete of 65,560 bytes is over OpenFlow's 65,535"):
        wire.flow_delete_strict(1, 2, 3, b"\0" * 65_512, 1)


def test_a_refused_flow_is_not_sent_again_every_round_and_a_smaller_one_in_its_place_is():
    big = wide(5_000)
    rec = synced(5, FLOWS + [big])
    assert rec.counters["errors"] == 1 and big.key in rec._rejected
    rec.set_desired(FLOWS + [big], [])
    with hub.Timeout(10):
        assert not rec._sync() and rec.counters["errors"] == 1  # the same: not tried again
    small = wide(10)  # the same owner, table, priority and match, fewer outputs: it fits
    rec.set_desired(FLOWS + [small], [])
    with hub.Timeout(10):
        assert rec._sync()
    assert rec.counters["flow_add"] == len(FLOWS) + 1 and not rec._rejected and rec.counters["errors"] == 1
