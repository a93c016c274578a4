"""EVPN compilers: what Canopy announces, and what the routes it receives mean.

- ``originate(view, policy, seqs)`` -> {key: route}: a pure function of the View (DESIGN: "(state) -> EVPN
  routes to originate"). Type 2 for every local endpoint (bound vports with L2 VNI, L3 VNI and the VRS's
  Router's MAC for symmetric IRB; MACs hardware VTEPs learned, L2 only), type 3 per subnet per VTEP that
  has it, type 5 per subnet prefix and resolved static route of every domain present here, and per active
  floating IP (a /32 at the VRS that translates for it). Next hops are
  the real VTEP IPs; RDs and RTs come from the subnet (L2) and domain (L3) objects.
- ``import_routes(received, policy)`` -> ``RemoteTable``: received routes filtered by the import route
  targets of our subnets and domains (and the VNI for L2), hence remote endpoints, flood targets and
  prefixes. Everything else is counted as ignored. From scratch; ``bgp.importer.RouteImport`` does the
  same route by route (the programming loop's import, by delta).

MAC mobility sequence numbers (the ``seqs`` of ``originate``) are ``bgp.mobility.Mobility``'s.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from bgp.importer import RouteImport
from bgp.origins import Origins
from bgp.routes import InclusiveMulticastRoute, IpPrefixRoute, MacIpRoute, encode_host
from controller.pacer import NEVER, Pacer
from controller.remote import RemoteTable


# ------------------------------------------------------------------------------------ originate

def originate(view, policy, seqs: dict | None = None, pacer: Pacer = NEVER, origins: Origins | None = None) -> dict:
    """Every route Canopy should announce for this View. ``seqs``: (subnet id, MAC) -> mobility sequence
    number, or None for a MAC a peer has won (not announced); MACs absent from it get sequence 0. ``pacer``
    (controller/pacer.py) is ticked per type 2 route and, with ``origins``, per local endpoint of the type 3
    routes (10,000 of them: ~0.15 s the first time, loaded more): ``view``, ``policy`` and ``seqs`` must not
    change during its pauses (the caller's objects: the programming loop's View and the Policy it read once).
    ``origins`` (bgp/origins.py), if given, is told what stands behind each type 2 and type 3 route."""
    seqs = seqs if seqs is not None else {}
    record = origins.add if origins is not None else None
    out = {}
    for ep, route in _mac_routes(view, policy, seqs):
        out[key := route.key] = route
        if record:
            record(key, (ep,))
        pacer.tick()
    for route, behind in _multicast_routes(view, policy):
        out[key := route.key] = route
        if record:
            record(key, behind)
            pacer.tick(len(behind))
    for route in _prefix_routes(view):
        out[route.key] = route
    for route in _floating_routes(view):  # external networks: controller/extnet.py
        out[route.key] = route
    return out


def _rts(obj) -> tuple[str, ...]:
    return tuple(obj["export_rts"] or ())


_BUILT: dict = {}  # (route class, its fields) -> the route: built (and validated) once, shared afterwards; and
# for type 2 routes, (their shared fields, MAC, IP) -> the route, and their shared fields -> the first route with them
_BUILT_SIZE = 1 << 18


def _route(cls, **fields):
    """``cls(**fields)``, the same (frozen, equal) object as the last time these fields were given: a round
    that originates 10,000 unchanged routes looks them up instead of validating each again."""
    key = (cls, tuple(fields.items()))
    route = _BUILT.get(key)
    if route is None:
        if len(_BUILT) >= _BUILT_SIZE:
            _BUILT.clear()
        route = _BUILT[key] = cls(**fields)
    return route


def _mac_routes(view, policy, seqs):
    for ep in view.local.values():
        next_hop = view.tunnel_ip_of(ep.session)
        subnet = policy.get("subnet", ep.subnet_id)
        key = (ep.subnet_id, ep.mac)
        if next_hop is None or subnet is None or (key in seqs and seqs[key] is None):
            continue
        for route in mac_ip_routes(view, ep, subnet, next_hop, seqs.get(key) or None):
            yield ep, route


def mac_ip_routes(view, ep, subnet, next_hop: str, seq: int | None, memo: dict | None = None) -> list:
    """The type 2 routes of one local endpoint (one per IP, or one without): ``subnet`` its policy object,
    ``next_hop`` its VTEP's tunnel IP, ``seq`` its mobility sequence number (None: 0). Reads ``view.subnets``,
    ``view.domains`` and ``view.switches`` only (``originate``'s, and the announcement at bind's: bgp/early.py).
    ``memo``: a dict the caller keeps while neither ``view`` nor the policy changes: the fields the endpoints of one
    subnet at one switch share are worked out once there (the announcement at bind: 10,000 vports of one subnet)."""
    place = (ep.subnet_id, ep.session, ep.kind, next_hop, seq)
    shared = memo.get(place) if memo is not None else None
    if shared is None:
        shared = _shared_fields(view, ep, subnet, next_hop, seq)
        if memo is not None:
            memo[place] = shared
    return [_mac_ip_route(shared, ep.mac, ip) for ip in ep.ips or (None,)]


def _shared_fields(view, ep, subnet, next_hop: str, seq: int | None) -> tuple:
    """What the type 2 routes of the endpoints of one subnet at one switch share (``_mac_ip_route``'s tuple)."""
    sub = view.subnets[ep.subnet_id]
    routed = ep.kind == "vport" and sub.domain_id and sub.l3_vni and ep.session in view.switches
    rts = _rts(subnet) + (_rts(view.domains[sub.domain_id]) if routed else ())
    return (subnet["rd"], sub.vni, next_hop, tuple(dict.fromkeys(rts)), seq,
            sub.l3_vni if routed else None, view.switches[ep.session].router_mac if routed else None)


def _mac_ip_route(shared: tuple, mac: str, ip: str | None) -> MacIpRoute:
    """The type 2 route of ``mac`` and ``ip`` with the ``shared`` fields (``mac_ip_routes``' tuple), the same
    object as the last time. The endpoints of one subnet at one VTEP share every field but the MAC and IP: the
    first route of those fields is built (and validated) whole, the others from it, checking only their MAC and
    IP (``MacIpRoute.with_host``), and their command text is written from its (``encode_host``: each new route
    is announced)."""
    route = _BUILT.get((shared, mac, ip))
    if route is None:
        if len(_BUILT) >= _BUILT_SIZE:
            _BUILT.clear()
        first = _BUILT.get(shared)
        if first is None:
            rd, l2_vni, next_hop, route_targets, seq, l3_vni, router_mac = shared
            route = _BUILT[shared] = MacIpRoute(rd=rd, mac=mac, ip=ip, l2_vni=l2_vni, next_hop=next_hop,
                                                route_targets=route_targets, mobility_seq=seq, l3_vni=l3_vni,
                                                router_mac=router_mac)
        else:
            route = first.with_host(mac, ip)
            encode_host(route, first)
        _BUILT[(shared, mac, ip)] = route
    return route


def _multicast_routes(view, policy):
    """(route, what stands behind it): per subnet, one type 3 per tunnel IP of the VRSs and hardware VTEPs with
    a local endpoint in it (those endpoints) or bound to it (those VTEPs' sessions)."""
    local = {}  # subnet -> session -> its local endpoints there (what stands behind its type 3)
    for ep in view.local.values():
        local.setdefault(ep.subnet_id, {}).setdefault(ep.session, []).append(ep)
    for sid in view.by_subnet:
        subnet = policy.get("subnet", sid)
        if subnet is None or sid not in view.subnets:
            continue
        sessions: dict = {session: list(eps) for session, eps in local.get(sid, {}).items()}
        for session in view.bound_vteps.get(sid, ()):
            sessions.setdefault(session, []).append(session)
        behind: dict = {}  # tunnel IP -> what stands behind it
        for session, sources in sessions.items():
            behind.setdefault(view.tunnel_ip_of(session), []).extend(sources)
        behind.pop(None, None)
        for ip in sorted(behind):
            yield _route(InclusiveMulticastRoute, rd=subnet["rd"], vni=view.subnets[sid].vni, next_hop=ip,
                         route_targets=_rts(subnet)), behind[ip]


def _prefix_routes(view):
    """Each routed subnet's prefix, announced at the lowest VRS VTEP that has a port in it (any VRS of the
    domain when none has), and each static route whose next hop is a local endpoint, at that endpoint's VRS."""
    for dom_id, dom in view.domains.items():
        present = sorted((s for s in view.switches.values() if dom_id in view.domains_on(s.session) and s.vtep_ip),
                         key=lambda s: ipaddress.IPv4Address(s.vtep_ip))
        if not present:
            continue
        common = dict(rd=dom["rd"], l3_vni=dom["l3_vni"], route_targets=_rts(dom))
        for sid in view.subnets_of_domain(dom_id):
            sub = view.subnets[sid]
            if not sub.cidr:
                continue
            having = [s for s in present if sid in view.subnets_on(s.session)] or present
            yield _route(IpPrefixRoute, prefix=sub.cidr, next_hop=having[0].vtep_ip, router_mac=having[0].router_mac,
                         **common)
        for route in view.static.get(dom_id, ()):
            target = view.endpoints.get(route.vport_id) if route.vport_id else None
            sw = view.switches.get(target.session) if target and target.kind == "vport" else None
            if sw and sw.vtep_ip:
                yield _route(IpPrefixRoute, prefix=route.prefix, next_hop=sw.vtep_ip, router_mac=sw.router_mac,
                             **common)


def _floating_routes(view):
    """Each active floating IP as a /32 of its domain at the VTEP of the VRS that translates for it (a DC gateway
    learns where it is); gone, hence withdrawn, when it is detached or no VRS translates for it."""
    for info in view.external.floating.values():
        dom, sw = view.domains.get(info.domain_id), view.switches.get(info.session)
        if dom and sw and sw.vtep_ip:
            yield _route(IpPrefixRoute, prefix=f"{info.address}/32", next_hop=sw.vtep_ip, router_mac=sw.router_mac,
                         rd=dom["rd"], l3_vni=dom["l3_vni"], route_targets=_rts(dom))


# ------------------------------------------------------------------------------------ import

@dataclass(frozen=True)
class ImportResult:
    table: RemoteTable
    imported: int
    ignored: int


def import_routes(received: dict, policy, order: dict | None = None) -> ImportResult:
    """``received``: {(peer, key): route}; ``order``: {(peer, key): n}, when each was received. Type 2/3 routes
    are imported into the subnets whose import RTs they carry and whose VNI they name; type 5 (and type 2 host
    routes of subnets not imported at L2, with an L3 VNI and Router's MAC) into the domains whose import RTs they
    carry. From scratch: the same rules
    as the incremental import (``bgp.importer.RouteImport``), which the programming loop uses."""
    importer = RouteImport(policy)
    importer.apply(received, order=order)
    return ImportResult(importer.table(), importer.imported, importer.ignored)
