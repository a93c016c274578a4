"""A subnet's flood groups on one switch (head-end replication, openflow/pipeline.py): group ``2*VNI`` copies
to every local port of the subnet and to every other VTEP that has it, ``2*VNI+1`` to the local ports only.

Groups are per switch (their buckets name the switch's own ports and VXLAN port), so they are not shared like
flows; what every switch's groups are built from (the subnet's ports by switch, its VTEPs, the buckets to
them) is gathered once per view in ``memo`` (openflow/compiler.py ``Shared.memo``), not once per switch.
"""

from __future__ import annotations

from controller.derive import _ip_order  # the cached address order derive's FIB sorts by
from openflow import pipeline as p
from openflow.flows import Group


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
    return Group(everyone, local_buckets + remote_buckets, owner), Group(local_only, local_buckets, owner)


def _local_ports(view, subnet_id, memo) -> dict:
    """session -> the subnet's endpoints with a port there (in by_subnet order), once per view."""
    key = ("local", subnet_id)
    ports = memo.get(key)
    if ports is None:
        ports = memo[key] = {}
        for ep in view.by_subnet.get(subnet_id, ()):
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
        sessions = {e.session for e in view.by_subnet.get(subnet_id, ())} | view.bound_vteps.get(subnet_id, set())
        if subnet_id in view.bm_gateways:
            sessions.add(view.bm_gateways[subnet_id])
        for s in sessions:
            holders.setdefault(view.tunnel_ip_of(s), set()).add(s)
        every = (set(holders) | view.remote_floods.get(subnet_id, frozenset())) - {None}
        entry = memo[key] = (holders, sorted(every, key=_ip_order))  # (parsed once per address, not once per view)
    return entry
