"""A flood group too big for one OpenFlow message is split into part groups its head names (openflow/floods.py):
at the boundary, what each group floods to (its buckets, following ``group:`` buckets) is what the one group held;
every part encodes in a bundle add; a broadcast traced through split groups leaves by the same ports as through
plain ones; the reconciler sends a part before the group that names it and deletes it after."""

from __future__ import annotations

import logging
from collections import Counter

import pytest

from controller.ryu_compat import hub, ofproto_protocol
from openflow import encode, floods
from openflow.compiler import compile_switch
from openflow.flows import Group, Owner
from openflow.reconciler import CANOPY_GROUPS, SwitchReconciler
from openflow.trace import parse_packet, walk
from tests.unit.pipeline_case import build_view
from tests.unit.test_oversized_group import Answering, local, remote

EVERYONE, LOCAL_ONLY = floods.group_ids(10_000)
OWNER = Owner("subnet", "s")


def reached(groups: dict, gid: int) -> Counter:
    """The buckets a copy of a packet takes through group ``gid``, following buckets that name another group."""
    out = Counter()
    for bucket in groups[gid].buckets:
        if bucket[0][0] == "group":
            assert len(bucket) == 1, bucket
            out += reached(groups, bucket[0][1])
        else:
            out[bucket] += 1
    return out


def split_case(locals_: int, remotes: int, size: int = floods.PART_BUCKETS) -> dict:
    lo, re_ = tuple(map(local, range(locals_))), tuple(map(remote, range(remotes)))
    groups = floods.flood_groups(EVERYONE, LOCAL_ONLY, lo, re_, OWNER, size)
    by_id = {g.group_id: g for g in groups}
    assert len(by_id) == len(groups)
    assert reached(by_id, EVERYONE) == Counter(lo + re_) and reached(by_id, LOCAL_ONLY) == Counter(lo)
    assert all(len(g.buckets) <= size for g in groups), [len(g.buckets) for g in groups]
    assert all(gid in CANOPY_GROUPS for gid in by_id)
    return by_id


@pytest.mark.parametrize("locals_, remotes, ids", [
    (1000, 0, 2), (999, 1, 2),  # at the limit: the two plain groups, as before
    (1001, 0, 4), (1000, 1, 2),  # one bucket over: local-only in two parts, or 2*VNI naming local-only and the VTEP
    (500, 501, 2), (2000, 0, 4), (2001, 0, 5), (1999, 2, 4),
    (0, 1001, 2 + 2), (5000, 999, 1 + 6), (5000, 1000, 1 + 2 + 6)])
def test_a_flood_group_is_split_at_the_boundary_and_floods_to_the_same_buckets(locals_, remotes, ids):
    by_id = split_case(locals_, remotes)
    assert len(by_id) == ids
    if locals_ + remotes <= floods.PART_BUCKETS:
        assert set(by_id) == {EVERYONE, LOCAL_ONLY}  # unchanged from before parts: a restart sends nothing
    if locals_ > floods.PART_BUCKETS:  # part n holds the n-th thousand of the subnet's ports, in their order
        parts = [by_id[floods.part_id(LOCAL_ONLY, n)] for n in range(1, -(-locals_ // floods.PART_BUCKETS) + 1)]
        assert [b for p in parts for b in p.buckets] == list(map(local, range(locals_)))
        assert by_id[LOCAL_ONLY].buckets == tuple((("group", p.group_id),) for p in parts)


def test_growing_by_one_port_changes_only_the_last_part():
    before, after = split_case(2500, 2), split_case(2501, 2)
    changed = {gid for gid in before.keys() | after.keys() if before.get(gid) != after.get(gid)}
    assert changed == {floods.part_id(LOCAL_ONLY, 3)}
    crossing = split_case(3001, 2)  # a fourth part: named by the local-only head, nothing else changes
    changed = {gid for gid in after.keys() | crossing.keys() if after.get(gid) != crossing.get(gid)}
    assert changed == {floods.part_id(LOCAL_ONLY, 3), floods.part_id(LOCAL_ONLY, 4), LOCAL_ONLY}


def test_past_max_parts_the_last_part_holds_the_rest_and_is_not_encodable_past_65535_bytes():
    size = floods.PART_BUCKETS
    groups = floods.split(LOCAL_ONLY, tuple(map(local, range(size * floods.MAX_PARTS + 5))), OWNER)
    assert len(groups) == floods.MAX_PARTS + 1 and len(groups[-2].buckets) == size + 5
    assert max(g.group_id for g in groups) < CANOPY_GROUPS.stop
    wire = encode.WireEncoder(ofproto_protocol.ProtocolDesc(5).ofproto)
    assert len(wire.group_mod(groups[-2], "add", 1)) == 16 + 48 * (size + 5)  # 1,005 local ports fit
    groups = floods.split(LOCAL_ONLY, tuple(map(local, range(size * floods.MAX_PARTS + 400))), OWNER)
    with pytest.raises(encode.EncodeError, match="a group-mod of 1,400 buckets is 67,216 bytes"):
        wire.group_mod(groups[-2], "add", 1)


@pytest.mark.parametrize("version", [4, 5], ids=["OpenFlow 1.3", "OpenFlow 1.4 (bundle)"])
def test_every_part_of_the_biggest_buckets_encodes_in_one_message(version):
    """1,000 buckets to VTEPs (64 bytes, the biggest a flood group has) are a group-mod of 64,016 bytes."""
    wire = encode.WireEncoder(ofproto_protocol.ProtocolDesc(version).ofproto)
    groups = split_case(5000, 2000).values()
    sizes = [len(wire.group_mod(g, "add", 1)) for g in groups]
    assert max(sizes) == 64_016
    if version == 5:
        assert max(len(wire.bundle_add(1, wire.group_mod(g, "add", 1))) for g in groups) == 64_032


@pytest.mark.parametrize("size", [2, 3, 4])
def test_a_broadcast_through_split_groups_leaves_by_the_same_ports(monkeypatch, size):
    """pipeline_case's hv1: web has 4 local endpoints (web1, web2, two ESXi vNICs) and a remote VTEP."""
    def trace(packet):
        _, view = build_view()
        desired = compile_switch(view, "s1")
        groups = desired.all_groups()
        result = walk(desired.all_flows(), groups, parse_packet(packet), view.switches["s1"].tunnel_ofport)
        chained = sum(b[0][0] == "group" for g in groups.values() for b in g.buckets)
        return sorted((e.kind, e.port, e.vlan, e.tun_dst) for e in result.exits), chained

    web1 = "in_port=1,dl_src=02:00:00:00:01:01,dl_dst=ff:ff:ff:ff:ff:ff,arp,arp_op=1,arp_spa=10.0.1.11," \
           "arp_sha=02:00:00:00:01:01,arp_tpa=10.0.1.200"
    from_tunnel = "in_port=100,tun_id={vni},dl_src=02:00:00:00:01:03,dl_dst=ff:ff:ff:ff:ff:ff"
    vni = build_view()[0].find("subnet", "acme/web")["vni"]
    whole = trace(web1), trace(from_tunnel.format(vni=vni))
    monkeypatch.setattr(floods, "part_buckets", size)
    split = trace(web1), trace(from_tunnel.format(vni=vni))
    assert [exits for exits, _ in split] == [exits for exits, _ in whole]
    assert ("output", 2, None, None) in whole[0][0] and ("tunnel", 100, None, "10.251.0.99") in whole[0][0]
    assert split[0][1] > whole[0][1] == 0  # groups naming groups there are


def test_the_part_size_hook_names_the_variable_and_the_reason():
    assert floods._part_buckets({}) == floods.PART_BUCKETS
    assert floods._part_buckets({"CANOPY_FLOOD_PART_BUCKETS": "2"}) == 2
    for bad in ("1", "1001", "x", "-3"):
        with pytest.raises(ValueError, match="CANOPY_FLOOD_PART_BUCKETS: .* is not a whole number from 2 to 1000"):
            floods._part_buckets({"CANOPY_FLOOD_PART_BUCKETS": bad})


def sending_order(rec: SwitchReconciler) -> list[tuple[str, int]]:
    return [(op.kind, op.key) for op in rec._plan_ops() if op.kind.startswith("group")]


def named_before_named(order: list, groups: dict) -> None:
    """Every group of this change set that a group added or modified names is sent before it."""
    sent, seen = {gid for kind, gid in order if kind != "group_delete"}, set()
    for kind, gid in order:
        if kind != "group_delete":
            named = {b[0][1] for b in groups[gid].buckets if b[0][0] == "group"}
            assert named & sent <= seen, (gid, order)
            seen.add(gid)


def deleted_after_naming(order: list, installed: dict) -> None:
    """Every group deleted is deleted after each deleted group that names it."""
    gone = [gid for kind, gid in order if kind == "group_delete"]
    for n, gid in enumerate(gone):
        naming = {g for g in gone if any(b == (("group", gid),) for b in installed[g].buckets)}
        assert naming <= set(gone[:n]), (gid, gone)


def test_the_reconciler_adds_parts_before_the_groups_naming_them_and_deletes_them_after():
    switch = Answering(5)
    rec = switch.rec = SwitchReconciler(switch, log=logging.getLogger("test.flood_parts"))
    rec._need_read = False
    rec._book.read_back({})
    big = split_case(2500, 1500)
    rec.set_desired([], list(big.values()))
    order = sending_order(rec)
    assert {g for _, g in order} == set(big) and {k for k, _ in order} == {"group_add"}
    named_before_named(order, big)
    assert order[-1] == ("group_add", EVERYONE)
    with hub.Timeout(10):
        assert rec._sync()
    assert rec._installed_groups == big and not rec._sync()  # in sync: nothing more to send
    small = split_case(1200, 1)  # local-only in 2 parts, 2*VNI plain: parts 3 of local-only and 1-2 of 2*VNI go
    rec.set_desired([], list(small.values()))
    order = sending_order(rec)
    deleted = [g for k, g in order if k == "group_delete"]
    assert set(deleted) == set(big) - set(small) and order[-len(deleted):] == [("group_delete", g) for g in deleted]
    named_before_named(order, small)
    deleted_after_naming(order, big)
    rec.set_desired([], [])
    order = sending_order(rec)
    assert {k for k, _ in order} == {"group_delete"} and {g for _, g in order} == set(big)
    deleted_after_naming(order, big)


def test_a_port_added_to_a_subnet_of_2500_local_ports_rewrites_one_part_not_the_whole_groups():
    """docs/benchmarks.md "flood41": one group-mod of the last part (501 buckets, 24 KB), not two of 120 KB each."""
    switch = Answering(5)
    rec = switch.rec = SwitchReconciler(switch, log=logging.getLogger("test.flood_parts"))
    rec._need_read = False
    rec._book.read_back({})
    rec.set_desired([], list(split_case(2500, 2).values()))
    with hub.Timeout(10):
        assert rec._sync()
    sent, before = switch.sent, dict(rec.counters)
    rec.set_desired([], list(split_case(2501, 2).values()))
    with hub.Timeout(10):
        assert rec._sync()
    assert {k: rec.counters[k] - before[k] for k in ("group_add", "group_modify", "group_delete")} == \
        {"group_add": 0, "group_modify": 1, "group_delete": 0}
    assert switch.sent - sent < 501 * 48 + 200  # the part's buckets, its header, the bundle's open and commit
