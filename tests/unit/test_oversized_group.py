"""A subnet's flood group too big for one OpenFlow message (docs/limits.md: ~1,360 local ports of a subnet on one VRS):
its group-mod is left out as not encodable and the rest of the change set is sent, also when the group-mod fits in
65,535 bytes but its bundle add (16 bytes more, OpenFlow 1.4) does not; and the error line that says so names the
group by id, buckets, bytes and reason, not by its whole text (10,000 buckets: ~400 KB a line, each rejection)."""

from __future__ import annotations

import logging

import pytest

from controller.ryu_compat import hub, ofproto_protocol
from openflow import pipeline as p
from openflow.flows import Group, Owner, flow
from openflow.reconciler import SwitchReconciler

LOG = "test.oversized_group"
FLOOD = 20_000  # group id 2*VNI of VNI 10,000


class Answering:
    """A datapath of OpenFlow ``version`` that takes the bytes and answers every commit or barrier at once."""

    def __init__(self, version: int):
        desc = ofproto_protocol.ProtocolDesc(version)
        self.id, self.ofproto, self.ofproto_parser, self.xid = 1, desc.ofproto, desc.ofproto_parser, 0
        self.address = ("10.0.0.1", 1)
        self.rec, self.sent = None, 0

    def send(self, data):
        self.sent += len(data)
        for waiter in self.rec._waiters.values():
            waiter.event.set()

    def send_msg(self, msg):
        pass


def local(i: int) -> tuple:
    """A bucket to a local port (48 bytes), as openflow/floods.py makes it."""
    return ("set", p.REG_OUT, i), ("resubmit", p.EGRESS_ACL)


def remote(i: int) -> tuple:
    """A bucket to another VTEP (64 bytes)."""
    return ("set", "tunnel_id", 10_000), ("set", "tun_ipv4_dst", f"10.0.{i // 250}.{i % 250 + 1}"), ("output", 7)


def flood(locals_: int, remotes: int, group_id: int = FLOOD) -> Group:
    return Group(group_id, tuple(map(local, range(locals_))) + tuple(map(remote, range(remotes))))


FLOWS = [flow(p.L2_LOOKUP, 100, {"reg5": 1, "eth_dst": f"02:00:00:00:00:{i:02x}"}, [("goto", p.EGRESS_ACL)],
              Owner("vport", f"v{i}")) for i in range(3)]


def synced(version: int, groups) -> SwitchReconciler:
    """A reconciler of a switch holding nothing, after one change set of FLOWS and ``groups``."""
    switch = Answering(version)
    rec = switch.rec = SwitchReconciler(switch, log=logging.getLogger(LOG))
    rec._need_read = False
    rec._book.read_back({})
    rec.set_desired(FLOWS, groups)
    with hub.Timeout(10):
        assert rec._sync()
    return rec


@pytest.mark.parametrize("version", [4, 5], ids=["OpenFlow 1.3", "OpenFlow 1.4 (bundle)"])
@pytest.mark.parametrize("locals_, remotes, bytes_", [(1364, 0, 65_488), (1362, 2, 65_520), (1363, 2, 65_568)])
def test_a_flood_group_too_big_for_a_message_is_left_out_and_the_rest_sent(version, locals_, remotes, bytes_):
    """1,362 local ports and 2 VTEPs: a group-mod of 65,520 bytes fits alone (OpenFlow 1.3) but not in a bundle add
    (65,536): it raised struct.error out of the change set, and the reconciler read the switch back and failed
    again every 5 s, sending nothing to that switch while the subnet kept its size."""
    group = flood(locals_, remotes)
    rec = synced(version, [group])
    fits = bytes_ + (16 if version == 5 else 0) <= 0xFFFF  # the group-mod, and its bundle add
    assert rec.counters["flow_add"] == len(FLOWS) and rec._book.installed
    assert (FLOOD in rec._installed_groups) is fits and (FLOOD in rec._rejected_groups) is not fits
    if not fits:
        assert "over OpenFlow's 65,535" in rec._rejected_groups[FLOOD]


def test_a_rejected_big_group_is_logged_by_id_buckets_bytes_and_reason_not_its_whole_text(caplog):
    caplog.set_level(logging.ERROR, logger=LOG)
    synced(5, [flood(10_000, 0)])
    (record,) = [r for r in caplog.records if r.name == LOG]
    line = record.getMessage()
    assert line.startswith("switch rejected group add of group 20000 (10,000 buckets, 480,016 bytes): "
                           "group_id=20000,type=all,bucket="), line[:300]
    assert line.endswith(",... (9,984 more buckets): not encodable: a group-mod of 10,000 buckets is 480,016 bytes, "
                         "over OpenFlow's 65,535"), line[-300:]
    assert len(line) < 1_300, len(line)


def test_a_refused_foreign_group_is_logged_by_id_buckets_and_bytes_not_its_whole_text(caplog):
    caplog.set_level(logging.ERROR, logger=LOG)
    synced(5, [flood(10_000, 0, group_id=1 << 29)])
    (record,) = [r for r in caplog.records if r.name == LOG]
    line = record.getMessage()
    assert line.startswith(f"refusing group {1 << 29} (10,000 buckets, 480,016 bytes): group_id=")
    assert line.endswith(": id outside Canopy's range") and len(line) < 1_300, (line[:200], len(line))


def test_a_rejected_group_is_sent_again_once_it_changes_and_only_then():
    """A subnet past the limit and back under it (ports gone): its group was left out until the switch was read
    back again (a reconnection), however small it became; now each change of it is tried once, and an unchanged
    one is not sent again every round."""

    def sync(group) -> bool:
        rec.set_desired(FLOWS, [group])
        with hub.Timeout(10):
            return rec._sync()

    rec = synced(5, [flood(1_400, 0)])
    assert FLOOD in rec._rejected_groups and FLOOD not in rec._installed_groups
    assert not sync(flood(1_400, 0)) and rec.counters["errors"] == 1  # the same: not tried again
    assert sync(flood(1_401, 0)) and rec.counters["errors"] == 2  # changed, still too big: tried once
    assert not sync(flood(1_401, 0)) and rec.counters["errors"] == 2
    assert sync(flood(1_000, 0)) and rec._installed_groups[FLOOD] == flood(1_000, 0)
    assert not rec._rejected_groups and rec.status()["groups"]["rejected"] == 0
    assert sync(flood(1_500, 0)) and rec.counters["group_modify"] == 0  # too big: the switch keeps 1,000 buckets
    assert rec._installed_groups[FLOOD] == flood(1_000, 0) and FLOOD in rec._rejected_groups
    assert sync(flood(1_001, 0)) and rec._installed_groups[FLOOD] == flood(1_001, 0) and not rec._rejected_groups
    assert rec.counters["group_modify"] == 1 and rec.counters["errors"] == 3
