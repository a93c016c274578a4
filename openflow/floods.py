"""A subnet's flood groups on one switch (head-end replication, openflow/pipeline.py): group ``2*VNI`` copies
to every local port of the subnet and to every other VTEP that has it, ``2*VNI+1`` to the local ports only.

One group-mod is at most 65,535 bytes (OpenFlow), about 1,000 buckets: a group of more buckets is split
(``split``). Its buckets go, ``PART_BUCKETS`` at a time, into part groups ``n << 25 | id`` (n = 1, 2, ...), and the
group itself (the head, the one flows name) holds one bucket ``group:PART`` per part. A split ``2*VNI`` does not
repeat the local ports: its buckets are ``group:2*VNI+1`` and the VTEPs (split the same way if they are many).
Part ids are stable (the n-th ``PART_BUCKETS`` buckets in the subnet's port order), so a restart's read-back
compares equal; a port added changes the parts from its place on (ports are in vport id order: at the end, the
last part only). A subnet under ``PART_BUCKETS`` buckets
keeps its two plain groups, as before. The reconciler sends parts before the groups that name them and deletes
them after (``send_rank``). Limits (docs/limits.md): ``MAX_PARTS`` parts per group; and Open vSwitch drops a
packet whose translation takes more than 4,096 resubmits, two per local port (the bucket's and the egress
table's; on the userspace datapath one per VTEP as well), so a broadcast stops being flooded at all past about
2,000 local ports of one subnet on one switch; and its 64 kB of datapath actions give a copy to ~780 VTEPs at most.

Groups are per switch (their buckets name the switch's own ports and VXLAN port), so they are not shared like
flows; what every switch's groups are built from (the subnet's ports by switch, its VTEPs, the buckets to
them) is gathered once per view in ``memo`` (openflow/compiler.py ``Shared.memo``), not once per switch.
"""

from __future__ import annotations

import os
from itertools import compress
from operator import attrgetter

from controller.derive import _ip_order  # the cached address order derive's FIB sorts by
from openflow import pipeline as p
from openflow.flows import Group

_OFPORT, _SESSION = attrgetter("ofport"), attrgetter("session")


#: buckets of one group-mod: 1,000 of the biggest (a VTEP's, 64 bytes) are 64,016 bytes, 64,032 in a bundle add,
#: under OpenFlow's 65,535 (tests/unit/test_flood_parts.py encodes them). ``CANOPY_FLOOD_PART_BUCKETS`` (2 to 1,000)
#: lowers it: a test hook, so that a test splits a flood group of a few ports.
PART_BUCKETS = 1000
PART_SHIFT = 25  # part n of group g is n << 25 | g (g < 2 << 24: group_ids of a 24-bit VNI)
MAX_PARTS = 15  # part ids below 16 << 25: Canopy's group range (openflow/reconciler.py CANOPY_GROUPS)
GROUP_RANGE = range((MAX_PARTS + 1) << PART_SHIFT)


def _part_buckets(environ=os.environ) -> int:
    text = environ.get("CANOPY_FLOOD_PART_BUCKETS")
    if not text:
        return PART_BUCKETS
    if not text.isdigit() or not 2 <= int(text) <= PART_BUCKETS:
        raise ValueError(f"CANOPY_FLOOD_PART_BUCKETS: {text!r} is not a whole number from 2 to {PART_BUCKETS}")
    return int(text)


part_buckets = _part_buckets()  # PART_BUCKETS unless lowered (a test hook)


def group_ids(vni: int) -> tuple[int, int]:
    """(flood to all, flood to local ports only) group ids of a subnet: derived from its VNI."""
    return vni << 1, (vni << 1) | 1


def to_vtep(vni: int, vtep_ip: str, sw) -> tuple:
    """Actions straight out of this switch's VXLAN port (group buckets, packet-outs)."""
    return (("set", "tunnel_id", vni), ("set", "tun_ipv4_dst", vtep_ip), ("output", sw.tunnel_ofport))


def subnet_groups(view, sw, owner, memo) -> tuple[Group, ...]:
    """The subnet's two flood groups on this switch: its local ports, and (all) the other VTEPs too."""
    sub = view.subnets[owner.id]
    everyone, local_only = group_ids(sub.vni)
    local = _local_ports(view, sub.id, memo).get(sw.session, ())
    local_buckets = tuple((("set", p.REG_OUT, ep.key), ("resubmit", p.EGRESS_ACL)) for ep in local)
    remote_buckets = _remote_buckets(view, sub, sw, memo) if sw.tunnel_ofport else ()
    return flood_groups(everyone, local_only, local_buckets, remote_buckets, owner)


def flood_groups(everyone: int, local_only: int, local: tuple, remote: tuple, owner, size: int | None = None) \
        -> tuple[Group, ...]:
    """The groups ``everyone`` (``local`` and ``remote`` buckets) and ``local_only`` (``local``), each split into
    parts of at most ``size`` buckets (default ``part_buckets``) if it has more (module docstring)."""
    size = size or part_buckets
    if len(local) + len(remote) <= size:
        return Group(everyone, local + remote, owner), Group(local_only, local, owner)
    return split(everyone, ((("group", local_only),),) + remote, owner, size) + split(local_only, local, owner, size)


def split(group_id: int, buckets: tuple, owner, size: int | None = None) -> tuple[Group, ...]:
    """The group ``group_id`` with ``buckets``: itself if it has at most ``size`` of them, else its parts (each of
    ``size`` buckets, the last of the rest) and then itself, one ``group:PART`` bucket per part. Past ``MAX_PARTS``
    the last part holds all the rest: once its group-mod passes 65,535 bytes it is left out as not encodable and
    named in the log (openflow/reconciler_send.py), as a whole flood group was before parts."""
    size = size or part_buckets
    if len(buckets) <= size:
        return (Group(group_id, buckets, owner),)
    starts = range(0, len(buckets), size)[:MAX_PARTS]
    ends = list(starts[1:]) + [len(buckets)]
    parts = tuple(Group(part_id(group_id, n), buckets[start:end], owner)
                  for n, (start, end) in enumerate(zip(starts, ends), 1))
    return parts + (Group(group_id, tuple((("group", g.group_id),) for g in parts), owner),)


def part_id(group_id: int, n: int) -> int:
    """The id of part ``n`` (1, 2, ...) of the flood group ``group_id``."""
    return (n << PART_SHIFT) | group_id


def send_rank(group_id: int) -> int:
    """The order in which the reconciler adds (and modifies) flood groups, so that a group is on the switch before
    one that names it: a local-only group's parts (0), the local-only group (1), which a split ``2*VNI``'s first
    part or head names, the parts of ``2*VNI`` (2), ``2*VNI`` (3). Deletes go the other way round. (Open vSwitch
    takes a bucket naming a missing group, and keeps it when that group is deleted: the bucket then copies nothing.
    In a bundle the order is atomic anyway; without one, on OpenFlow 1.3, it keeps a flood from missing a part while
    a change set is applied.)"""
    return (0 if group_id & 1 else 2) + (not group_id >> PART_SHIFT)


def _local_ports(view, subnet_id, memo) -> dict:
    """session -> the subnet's endpoints with a port there (in by_subnet order), once per view. Those without an
    ofport (EVPN MACs, most of a subnet's endpoints) are passed over in C: a subnet of 10,000 received MACs was
    ~16 bytecodes each in Python at each pass that compiled it (tests/unit/test_view_evpn_pacing.py)."""
    key = ("local", subnet_id)
    ports = memo.get(key)
    if ports is None:
        ports = memo[key] = {}
        eps = view.by_subnet.get(subnet_id, ())
        for ep in compress(eps, map(_OFPORT, eps)):
            if ep.key:
                ports.setdefault(ep.session, []).append(ep)
    return ports


def _remote_buckets(view, sub, sw, memo) -> tuple:
    """A bucket to every VTEP of ``view.vteps_of(sub.id, sw.session)``: built once per view for every VTEP of
    the subnet, and each switch takes them all but its own."""
    key = ("buckets", sub.id, sw.tunnel_ofport)
    entry = memo.get(key)
    if entry is None:
        holders, every = _flood_vteps(view, sub.id, memo)
        entry = memo[key] = (tuple(to_vtep(sub.vni, ip, sw) for ip in every), {ip: n for n, ip in enumerate(every)})
    buckets, index = entry
    own = view.tunnel_ip_of(sw.session)
    n = index.get(own)
    if n is None or _flood_vteps(view, sub.id, memo)[0].get(own, set()) - {sw.session}:
        return buckets  # our own VTEP is not among them, or another of the subnet's switches has the same one
    return buckets[:n] + buckets[n + 1:]


def _flood_vteps(view, subnet_id, memo) -> tuple[dict, list]:
    """(tunnel IP -> sessions with it, every tunnel IP sorted) of the subnet's BUM list (``view.vteps_of``'s
    sources: its endpoints' switches and VTEPs, the hardware VTEPs bound to it, its bare-metal gateway and the
    remote VTEPs that have it), gathered once per view, not per switch."""
    key = ("flood", subnet_id)
    entry = memo.get(key)
    if entry is None:
        holders: dict = {}
        sessions = set(map(_SESSION, view.by_subnet.get(subnet_id, ()))) | view.bound_vteps.get(subnet_id, set())
        if subnet_id in view.bm_gateways:
            sessions.add(view.bm_gateways[subnet_id])
        for s in sessions:
            holders.setdefault(view.tunnel_ip_of(s), set()).add(s)
        every = (set(holders) | view.remote_floods.get(subnet_id, frozenset())) - {None}
        entry = memo[key] = (holders, sorted(every, key=_ip_order))  # (parsed once per address, not once per view)
    return entry
