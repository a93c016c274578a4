"""Derived forwarding state: a pure function of the policy, vport locations, the connected VRS and VTEPs,
and what EVPN peers told us.

``derive(policy, locations, snapshots, ...)`` -> ``View``: which endpoints (bound vports, MACs hardware
VTEPs learned, MACs behind remote EVPN VTEPs) exist and where, which subnets and domains each VRS serves,
every VRS's VTEP and router MAC, each subnet's BUM replication list, and per domain the FIB (connected
subnets, host routes, static routes, EVPN prefixes) that the compiler turns into flows and REST shows.

Remote (EVPN) input, a ``controller.remote.RemoteTable``, always yields to local knowledge: a local
endpoint with the same (subnet, MAC) or IP wins, a route whose VTEP is one of ours (reflected back to us)
is ignored, and an EVPN prefix never replaces a connected, host or resolved static route of the same prefix.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

from controller.discovery import METADATA_AGENT_KEY
from controller.feed import Feeds
from controller.frozen import cached_attribute, one_step_init
from controller.policy import dhcp_server_ip
from controller.remote import ip_holder
from controller.extnet import ExternalView, external_view
from controller.security import SecurityView, derive_security
from openflow.flows import Owner

L2_SERVER_MAC = "02:ca:fe:00:00:01"  # DHCP server MAC on L2-only subnets (no anycast gateway there)
LOCAL_KINDS = ("vport", "vtep_mac")  # endpoints of ours (a VRS's vports, a hardware VTEP's MACs): not "evpn"


@dataclass(frozen=True)
class SwitchInfo:
    session: str
    datapath_id: int | None
    chassis: str
    vtep_ip: str | None
    tunnel_ofport: int | None
    metadata_port: tuple[int, str] | None = None  # (ofport, MAC) of the metadata agent's port (openflow/metadata.py)
    standby: tuple = ()  # sorted (ofport, MAC, vport id) of the ports waiting for their VM's first packet
    # (controller/state_activation.py; openflow/activation.py)

    @cached_property
    def router_mac(self) -> str:
        """This VRS's own MAC for symmetric IRB (RFC 9135 Router's MAC), derived from its VTEP IP."""
        if not self.vtep_ip:
            return "02:cb:00:00:00:00"
        a, b, c, d = ipaddress.IPv4Address(self.vtep_ip).packed
        return f"02:cb:{a:02x}:{b:02x}:{c:02x}:{d:02x}"


@dataclass(frozen=True)
class VtepInfo:
    """A connected hardware VTEP: an L2 gateway for the subnets bound to its ports."""

    session: str
    name: str
    tunnel_ip: str | None


@one_step_init  # built by the ten thousand (controller/frozen.py)
@dataclass(frozen=True)
class Endpoint:
    """A MAC in a subnet and where it is: a bound vport on a VRS, a MAC a hardware VTEP learned
    (kind "vtep_mac"; its session is the VTEP's), or a MAC an EVPN peer announced (kind "evpn")."""

    vport_id: str
    subnet_id: str
    mac: str
    ips: tuple[str, ...]
    port_security: bool
    session: str
    ofport: int | None
    vlan: int | None
    kind: str = "vport"  # vport | vtep_mac | evpn (behind a remote VTEP; session "evpn:<VTEP IP>")
    router_mac: str | None = None  # evpn: the remote VTEP's Router's MAC (symmetric IRB), None: L2 only
    l3_vni: int = 0  # evpn: the L3 VNI to route to it over, 0: L2 only

    @cached_attribute
    def owner(self) -> Owner:
        """Its flows' owner, made once per endpoint (a pass that removes 10,000 EVPN MACs asks for each several
        times: finding the owners to recompile, their switches, their presence)."""
        return Owner(self.kind, self.vport_id)

    @property
    def key(self) -> int | None:
        """The vport key on its own switch (reg6/reg7): ofport, or ofport << 12 | vlan on a trunk."""
        if self.ofport is None or self.ofport <= 0:
            return None
        return (self.ofport << 12) | self.vlan if self.vlan else self.ofport


@dataclass(frozen=True)
class SubnetInfo:
    id: str
    vni: int
    l3_vni: int  # 0 for an L2-only subnet
    domain_id: str | None
    cidr: str | None
    gateway: str | None
    gateway_mac: str  # the domain's anycast gateway MAC, or L2_SERVER_MAC
    dhcp: bool
    dhcp_server: str | None  # the DHCP server address (the gateway, or reserved on L2-only subnets)


@one_step_init
@dataclass(frozen=True)
class Route:
    prefix: str
    kind: str  # connected | host | static | evpn (a remote prefix: type 5, or type 2 not imported at L2)
    next_hop: str | None  # IP (static, evpn: the remote VTEP) or None
    vport_id: str | None  # the endpoint traffic goes to (host routes, resolved static routes)
    subnet_id: str | None
    vtep_ip: str | None = None  # evpn: the remote VTEP
    router_mac: str | None = None  # evpn: its Router's MAC
    vni: int = 0  # evpn: the L3 VNI to send over


@dataclass
class View:
    switches: dict[str, SwitchInfo] = field(default_factory=dict)
    vteps: dict[str, VtepInfo] = field(default_factory=dict)
    bound_vteps: dict[str, set[str]] = field(default_factory=dict)  # subnet id -> VTEP sessions bound to it
    subnets: dict[str, SubnetInfo] = field(default_factory=dict)
    domains: dict[str, dict] = field(default_factory=dict)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    # the endpoints of kind LOCAL_KINDS, by id (a subset of endpoints): what Canopy announces (bgp/evpn.py) walks
    # these, so a pass costs its local endpoints, not the MACs peers sent (10,000 received routes: 3 walks a pass)
    local: dict[str, Endpoint] = field(default_factory=dict)
    by_subnet: dict[str, list[Endpoint]] = field(default_factory=lambda: defaultdict(list))
    fib: dict[str, list[Route]] = field(default_factory=dict)
    static: dict[str, list[Route]] = field(default_factory=dict)  # domain id -> its static routes (in fib too)
    remote_vteps: dict[str, str] = field(default_factory=dict)  # evpn session -> remote VTEP IP
    remote_floods: dict[str, frozenset[str]] = field(default_factory=dict)  # subnet id -> remote VTEPs (type 3)
    bm_gateways: dict[str, str] = field(default_factory=dict)  # subnet id -> the VRS routing for its bare metal
    security: SecurityView = field(default_factory=SecurityView)  # ACLs and policed vports (controller/security.py)
    external: ExternalView = field(default_factory=ExternalView)  # active floating IPs (controller/extnet.py)
    _on: dict = field(default_factory=dict, repr=False, compare=False)  # session -> (subnets, domains)
    # kept by controller.viewdelta.LiveView (None in a View derived from scratch): subnet -> sessions with
    # endpoints there (counts)
    _holders: dict | None = field(default=None, repr=False, compare=False)
    # kept by a LiveView (None in a View derived from scratch): session -> the ids of its endpoints
    _sessions: dict | None = field(default=None, repr=False, compare=False)
    # kept by a LiveView (None in a View derived from scratch): datapath id -> the sessions of switches with it, in the
    # order they came (one, but for a switch reported again under a new session before the old one went)
    _datapaths: dict | None = field(default=None, repr=False, compare=False)
    # kept by a LiveView (None in a View derived from scratch): the local endpoints whose ids ("endpoint", id) changed
    # and the sessions whose tunnel IP ("tunnel", session) changed, for readers that keep results by delta (MAC
    # mobility: bgp/mobility.py)
    local_feeds: Feeds | None = field(default=None, repr=False, compare=False)
    # kept by a LiveView (None in a View derived from scratch): how many of State's change journals it has taken
    # (``LiveView.apply``); unchanged, it has taken no change of State since (bgp/early.py ``carry``)
    journals: int | None = field(default=None, repr=False, compare=False)

    def session_of_datapath(self, datapath_id) -> str | None:
        """The session of the switch with this datapath id (the first to come, if two have it); None for none. A live
        View answers from its index (an HA takeover asks once per switch: no walk over every switch each time)."""
        if datapath_id is None:
            return None
        if self._datapaths is not None:
            sessions = self._datapaths.get(datapath_id)
            return next(iter(sessions)) if sessions else None
        return next((s for s, sw in self.switches.items() if sw.datapath_id == datapath_id), None)

    def endpoint_ids_on(self, session) -> set[str] | None:
        """The ids of the endpoints on this switch, from a live View's index (not to be changed); None in a View
        derived from scratch, which keeps no such index (the caller walks the endpoints)."""
        return self._sessions.get(session, set()) if self._sessions is not None else None

    def subnets_on(self, session) -> set[str]:
        """Subnets with at least one endpoint on this switch."""
        return self._presence(session)[0]

    def domains_on(self, session) -> set[str]:
        """Domains with at least one endpoint on this switch."""
        return self._presence(session)[1]

    def _presence(self, session):
        if not self._on and self._holders is None:  # one pass over the endpoints answers every switch (a live
            # View keeps _on itself, and it is empty when no switch holds anything)
            subnets = defaultdict(set)
            for e in self.endpoints.values():
                subnets[e.session].add(e.subnet_id)
            for sid, sess in self.bm_gateways.items():  # the gateway VRS serves the subnet like a holder
                subnets[sess].add(sid)
            for sess, subs in subnets.items():
                self._on[sess] = (subs, {self.subnets[s].domain_id for s in subs if self.subnets[s].domain_id})
        return self._on.get(session, (set(), set()))

    def subnets_of_domain(self, domain_id) -> list[str]:
        kept = getattr(self, "_dom_subnets", None)  # the live View's index (controller/viewdelta.py)
        if kept is not None:
            return list(kept.get(domain_id, ()))
        return [s.id for s in self.subnets.values() if s.domain_id == domain_id]

    def tunnel_ip_of(self, session) -> str | None:
        """The tunnel IP of a VRS, a hardware VTEP or a remote EVPN VTEP."""
        if session in self.switches:
            return self.switches[session].vtep_ip
        vtep = self.vteps.get(session)
        return vtep.tunnel_ip if vtep else self.remote_vteps.get(session)

    def vteps_of(self, subnet_id, exclude_session=None) -> list[str]:
        """The subnet's BUM replication list: tunnel IPs of every other VRS with endpoints in the subnet, of
        the hardware VTEPs bound to it, and of the remote VTEPs that have it (MACs there, or type 3 routes)."""
        if self._holders is not None:
            sessions = set(self._holders.get(subnet_id, ()))
        else:
            sessions = {e.session for e in self.by_subnet.get(subnet_id, ())}
        sessions |= self.bound_vteps.get(subnet_id, set())
        if subnet_id in self.bm_gateways:
            sessions.add(self.bm_gateways[subnet_id])
        ips = {self.tunnel_ip_of(s) for s in sessions if s != exclude_session}
        ips |= self.remote_floods.get(subnet_id, frozenset()) - {self.tunnel_ip_of(exclude_session)}
        return sorted(ips - {None}, key=_ip_order)


def switch_info(snap, vtep_ip, tunnels: dict[str, int] | None = None,
                agents: dict[str, tuple[int, str]] | None = None, standby: dict | None = None) -> SwitchInfo:
    """``tunnels`` ({name: ofport} of the switch's VXLAN ports) and ``agents`` ({name: (ofport, MAC)} of its
    metadata agent ports), when the caller keeps them (State, from deltas); else they are found in
    ``snap.ports``. The first of each by name is used. ``standby``: State's for the switch ({port: (ofport, MAC,
    vport id)})."""
    if tunnels is None:
        tunnels = tunnel_ports(snap.ports)
    if agents is None:
        agents = agent_ports(snap.ports)
    return SwitchInfo(snap.session, snap.datapath_id, snap.chassis, vtep_ip, tunnels[min(tunnels)] if tunnels else None,
                      agents[min(agents)] if agents else None, tuple(sorted(standby.values())) if standby else ())


def tunnel_ports(ports) -> dict[str, int]:
    """{name: ofport} of the VXLAN ports among ``ports`` that have an ofport."""
    return {p.name: p.ofport for p in ports if p.type == "vxlan" and p.ofport and p.ofport > 0}


def agent_ports(ports) -> dict[str, tuple[int, str]]:
    """{name: (ofport, MAC)} of the metadata agent's ports among ``ports`` (openflow/metadata.py)."""
    return {p.name: (p.ofport, p.mac) for p in ports
            if p.ext(METADATA_AGENT_KEY) == "true" and p.ofport and p.ofport > 0 and p.mac}


def derive(policy, locations, snapshots, vtep_ip_of, vteps=None, remote=None, gateways=None, standby=None) -> View:
    """The View for the current State. ``vtep_ip_of(snapshot)`` applies settings overrides; ``vteps`` are
    the hardware VTEP snapshots by session; ``remote`` is the ``RemoteTable`` imported from EVPN peers;
    ``gateways`` the external gateways' MACs resolved by the VRSs (State.gateway_macs); ``standby``: State's standby
    ports by session (controller/state_activation.py)."""
    view = View()
    for session, snap in snapshots.items():
        view.switches[session] = switch_info(snap, vtep_ip_of(snap), standby=(standby or {}).get(session))
    for dom in policy.all("domain"):
        view.domains[dom["id"]] = dom
    for sub in policy.all("subnet"):
        view.subnets[sub["id"]] = subnet_info(policy, sub)
    for vid, loc in sorted(locations.items()):
        vport = policy.get("vport", vid)
        if vport is None or loc.session not in view.switches:
            continue
        _add_endpoint(view, vport_endpoint(vport, loc))
    _add_vteps(view, policy, vteps or {})
    view.bm_gateways = bm_gateways(view, policy)
    own_ips = own_vtep_ips((sw.vtep_ip for sw in view.switches.values()), vteps or {})
    prefixes = _add_remote(view, remote, own_ips) if remote is not None else {}
    for dom_id in view.domains:
        view.fib[dom_id] = _fib(view, policy, dom_id, prefixes.get(dom_id, ()))
        view.static[dom_id] = [r for r in view.fib[dom_id] if r.kind == "static"]
    view.security = derive_security(policy)
    view.external = external_view(policy, view, snapshots, gateways)  # external networks: controller/extnet.py
    return view


def subnet_info(policy, sub) -> SubnetInfo | None:
    """What the compiler needs of a subnet (None for no subnet)."""
    if sub is None:
        return None
    dom = policy.get("domain", sub["domain_id"]) if sub["domain_id"] else None
    return SubnetInfo(sub["id"], sub["vni"], dom["l3_vni"] if dom else 0, sub["domain_id"], sub["cidr"],
                      sub["gateway"], dom["gateway_mac"] if dom else L2_SERVER_MAC,
                      bool(sub["cidr"] and sub["dhcp"]["enabled"]), dhcp_server_ip(sub))


def vport_endpoint(vport, loc) -> Endpoint:
    """A bound vport at its location (``controller.binding.Location``)."""
    return Endpoint(vport["id"], vport["subnet_id"], vport["mac"], tuple(vport["ips"] or ()), vport["port_security"],
                    loc.session, loc.ofport, loc.vlan)


def server_endpoint(vport, session) -> Endpoint:
    """A bare-metal vport (flavour baremetal) behind the hardware VTEP of ``session``."""
    return Endpoint(vport["id"], vport["subnet_id"], vport["mac"], tuple(vport["ips"] or ()), False, session, None,
                    None, "vtep_mac")


def learned_endpoint(vtep_name, mac, subnet_id, session) -> Endpoint:
    """A MAC a hardware VTEP learned in a bound subnet (not a declared server)."""
    return Endpoint(f"{vtep_name}/{mac.vni}/{mac.mac}", subnet_id, mac.mac, (mac.ip,) if _ipv4(mac.ip) else (),
                    False, session, None, None, "vtep_mac")


def evpn_endpoint(mac, ips) -> Endpoint:
    """A MAC behind a remote EVPN VTEP (``controller.remote.RemoteMac``) with the IPs left to it."""
    routed = bool(mac.router_mac and mac.l3_vni)
    return Endpoint(f"evpn:{mac.subnet_id}/{mac.mac}", mac.subnet_id, mac.mac, ips, False, f"evpn:{mac.vtep_ip}",
                    None, None, "evpn", mac.router_mac if routed else None, mac.l3_vni if routed else 0)


def _add_vteps(view, policy, vteps):
    """Hardware VTEPs, the subnets bound to them, and the MACs they learned in those subnets."""
    by_name = {}
    for session, snap in sorted(vteps.items()):
        view.vteps[session] = VtepInfo(session, snap.name, snap.tunnel_ip)
        by_name.setdefault(snap.name, session)
    for binding in policy.all("vtep_binding"):
        session = by_name.get(binding["switch"])
        if session is not None and binding["subnet_id"] in view.subnets:
            view.bound_vteps.setdefault(binding["subnet_id"], set()).add(session)
    by_vni = {s.vni: s.id for s in view.subnets.values()}
    known = {(e.subnet_id, e.mac) for e in view.endpoints.values()}
    servers = {(v["subnet_id"], v["mac"]): v for v in policy.all("vport")
               if v["binding"]["flavour"] == "baremetal" and v["subnet_id"] in view.subnets}
    for session, snap in sorted(vteps.items()):
        for mac in sorted(snap.local_macs, key=lambda m: (m.vni, m.mac)):
            sid = by_vni.get(mac.vni)
            if sid is None or session not in view.bound_vteps.get(sid, ()) or (sid, mac.mac) in known:
                continue  # not a bound subnet, or a vport's MAC (policy wins)
            server = servers.get((sid, mac.mac))
            if server is not None:  # a declared bare-metal server: its id and IPs come from policy
                _add_endpoint(view, server_endpoint(server, session))
            else:
                _add_endpoint(view, learned_endpoint(snap.name, mac, sid, session))
            known.add((sid, mac.mac))
    for (sid, mac), server in sorted(servers.items()):
        bound = view.bound_vteps.get(sid, set())
        if (sid, mac) not in known and len(bound) == 1:  # not learned yet: behind the subnet's only VTEP
            _add_endpoint(view, server_endpoint(server, next(iter(bound))))


def _add_endpoint(view, ep):
    view.endpoints[ep.vport_id] = ep
    if ep.kind in LOCAL_KINDS:
        view.local[ep.vport_id] = ep
    view.by_subnet[ep.subnet_id].append(ep)


def needs_gateway(sub: SubnetInfo) -> bool:
    """Whether bare metal in this subnet needs a gateway VRS: it is routed, or Canopy serves its DHCP."""
    return bool((sub.domain_id and sub.gateway) or (sub.dhcp and sub.dhcp_server))


def bm_gateways(view, policy) -> dict[str, str]:
    """Subnet id -> the VRS session that answers ARP and DHCP and routes for the subnet's bare metal, for
    every subnet with a VTEP binding in policy that needs one (``needs_gateway``), whether or not the VTEP
    is connected to Canopy right now (its rows, and so its traffic, outlive the OVSDB session).

    Candidates are the VRS with a VTEP IP and a tunnel port. The first connected chassis of the subnet's
    ``gateway_chassis`` wins; else a VRS with an endpoint in the subnet, else one serving its domain, else
    any (a VRS that already serves the subnet or its domain needs the fewest extra flows); ties go to the
    highest rendezvous hash of (subnet, chassis), so subnets spread over the VRS, and the gateway moves only
    when the candidates or their tiers change (a VRS coming or going, gaining or losing its last port in the
    subnet or domain), never because of an unrelated VRS."""
    candidates = [sw for sw in view.switches.values() if sw.vtep_ip and sw.tunnel_ofport]
    if not candidates:
        return {}
    holders = defaultdict(set)
    for ep in view.endpoints.values():
        if ep.session in view.switches:
            holders[ep.subnet_id].add(ep.session)
    domains = defaultdict(set)
    for sid, sessions in holders.items():
        if view.subnets[sid].domain_id:
            domains[view.subnets[sid].domain_id] |= sessions
    out = {}
    for sid in sorted({b["subnet_id"] for b in policy.all("vtep_binding") if b["subnet_id"] in view.subnets}):
        sub = view.subnets[sid]
        if needs_gateway(sub):
            preferred = list(policy.get("subnet", sid).get("gateway_chassis") or ())
            serving = (holders[sid], domains.get(sub.domain_id, set()))
            out[sid] = min(candidates, key=lambda sw: _gateway_rank(sid, sw, preferred, serving)).session
    return out


def _gateway_rank(sid, sw, preferred, serving):
    named = preferred.index(sw.chassis) if sw.chassis in preferred else len(preferred)
    holding, in_domain = serving
    tier = 0 if sw.session in holding else 1 if sw.session in in_domain else 2
    return named, tier, -_rendezvous(sid, sw.chassis), sw.session


@lru_cache(maxsize=65536)
def _rendezvous(subnet_id: str, chassis: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{subnet_id}/{chassis}".encode()).digest()[:8], "big")


def own_vtep_ips(switch_vtep_ips, vteps: dict) -> frozenset:
    """Our own VTEP IPs: the connected VRSs' (``switch_vtep_ips``) and the hardware VTEPs' tunnel IPs (``vteps``:
    their snapshots). An EVPN route naming one is ours come back (on an HA standby: the active's, reflected by a
    route reflector) and is ignored."""
    return frozenset(switch_vtep_ips).union(ip for snap in vteps.values() for ip in snap.tunnel_ips) - {None}


def _add_remote(view, remote, own_ips) -> dict[str, list]:
    """EVPN-learned MACs as endpoints of kind "evpn", type 3 flood targets per subnet; returns the remote
    prefixes per domain for the FIB. Our own VTEPs' routes reflected back are ignored, and a local endpoint
    keeps its (subnet, MAC) and its IPs (per domain, or per subnet when L2-only)."""
    def scope(sid):
        return view.subnets[sid].domain_id or sid

    known = {(e.subnet_id, e.mac) for e in view.endpoints.values()}
    claimed = {(scope(e.subnet_id), ip) for e in view.endpoints.values() for ip in e.ips}
    taken, wanting = [], defaultdict(dict)  # the remote MACs made endpoints; (scope, IP) -> {(subnet, MAC): rank}
    for mac in sorted(remote.macs, key=lambda m: (m.subnet_id, m.mac, m.vtep_ip)):
        sid = mac.subnet_id
        if sid not in view.subnets or (sid, mac.mac) in known or not _ipv4(mac.vtep_ip) or mac.vtep_ip in own_ips:
            continue
        known.add((sid, mac.mac))
        taken.append(mac)
        for ip in mac.ips:
            if _ipv4(ip) and (scope(sid), ip) not in claimed:
                wanting[(scope(sid), ip)][(sid, mac.mac)] = mac.ip_rank(ip)
    holders = {}  # (scope, IP) -> its holder, found once (10,000 MACs on one IP: not 10,000 times among 10,000)
    for mac in taken:  # an IP two remote MACs announce goes to the newer binding (``RemoteMac.ip_rank``)
        sid = mac.subnet_id
        for ip in mac.ips:
            if (scope(sid), ip) in wanting and (scope(sid), ip) not in holders:
                holders[(scope(sid), ip)] = ip_holder(wanting[(scope(sid), ip)])
        ips = tuple(ip for ip in mac.ips if holders.get((scope(sid), ip)) == (sid, mac.mac))
        ep = evpn_endpoint(mac, ips)
        _add_endpoint(view, ep)
        view.remote_vteps[ep.session] = mac.vtep_ip
    floods = defaultdict(set)
    for sid, ip in remote.floods:
        if sid in view.subnets and _ipv4(ip) and ip not in own_ips:
            floods[sid].add(ip)
    view.remote_floods = {sid: frozenset(ips) for sid, ips in floods.items()}
    prefixes = defaultdict(list)
    for rp in remote.prefixes:
        if rp.domain_id in view.domains and _ipv4(rp.vtep_ip) and rp.vtep_ip not in own_ips and \
                _ipv4_prefix(rp.prefix):
            prefixes[rp.domain_id].append(rp)
    return prefixes


def _ipv4(text) -> bool:
    """Whether ``text`` is an IPv4 address; strings are remembered (``_ipv4_text``), other values checked as is."""
    return _ipv4_text(text) if isinstance(text, str) else _is_ipv4(text)


@lru_cache(maxsize=65536)
def _ipv4_text(text: str) -> bool:
    """Whether ``text`` is an IPv4 address; remembered: a subnet's EVPN endpoints are checked again whenever the
    subnet is (10,000 remote MACs: 20,000 parses a pass)."""
    return _is_ipv4(text)


def _is_ipv4(value) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=65536)
def _ipv4_prefix(prefix) -> str | None:
    """The prefix in canonical form (host bits cleared), or None when it is not IPv4."""
    try:
        return str(ipaddress.IPv4Network(prefix, strict=False))
    except ValueError:
        return None


def _fib(view, policy, dom_id, remote_prefixes=()) -> list[Route]:
    routes = []
    host_by_ip = {}
    for sub in view.subnets.values():
        if sub.domain_id != dom_id or not sub.cidr:
            continue
        routes.append(Route(sub.cidr, "connected", None, None, sub.id))
        for ep in view.by_subnet.get(sub.id, ()):
            for ip in ep.ips:
                host_by_ip[ip] = ep
                routes.append(Route(f"{ip}/32", "host", None, ep.vport_id, sub.id))
    for route in view.domains[dom_id]["static_routes"]:
        target = host_by_ip.get(route["next_hop"])
        routes.append(Route(route["prefix"], "static", route["next_hop"], target.vport_id if target else None,
                            target.subnet_id if target else None))
    routes += _evpn_routes(routes, remote_prefixes)
    routes.sort(key=lambda r: _route_order(r.prefix))
    return routes


def _evpn_routes(routes, remote_prefixes) -> list[Route]:
    """One FIB route per remote prefix (the lowest VTEP IP when peers announce the same prefix), unless the
    domain already has that prefix as a connected, host or resolved static route: local knowledge wins, so
    flows of equal match and priority never compete."""
    taken = {_ipv4_prefix(r.prefix) for r in routes if r.kind != "static" or r.vport_id}
    out = []
    for rp in sorted(remote_prefixes, key=lambda p: (_route_order(_ipv4_prefix(p.prefix)),
                                                     ipaddress.IPv4Address(p.vtep_ip))):
        prefix = _ipv4_prefix(rp.prefix)
        if prefix in taken:
            continue
        taken.add(prefix)
        out.append(Route(prefix, "evpn", rp.vtep_ip, None, None, rp.vtep_ip, rp.router_mac, rp.l3_vni))
    return out


@lru_cache(maxsize=65536)
def _ip_order(ip: str) -> int:
    """``int(ipaddress.IPv4Address(ip))``: inet_pton takes exactly the dotted quads it takes (no leading zeros, no
    spaces) in C; anything else goes to ``ipaddress``, which raises as before (10,000 new host routes: 10,000
    parses in Python). ValueError: what inet_pton cannot even pass to C (a NUL, a lone surrogate)."""
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, ip), "big")
    except (OSError, TypeError, ValueError):
        return int(ipaddress.IPv4Address(ip))


@lru_cache(maxsize=65536)
def _route_order(prefix: str):
    """Longest prefix first, then by address: the FIB's order."""
    net = ipaddress.IPv4Network(prefix)
    return (-net.prefixlen, int(net.network_address))


def vtep_desired(view: View, policy, name: str, bindings=None):
    """What the hardware VTEP called ``name`` should hold: a logical switch per bound subnet (key = its
    VNI), the port/VLAN bindings, every other MAC of those subnets as a remote MAC at its tunnel IP, the
    subnet's gateway MAC (with the gateway IP) at its gateway VRS (``bm_gateways``), and the subnet's flood
    list (every other VRS and VTEP that has the subnet, the gateway VRS included). ``bindings``: the VTEP's
    vtep_binding objects of ``policy``, when the caller keeps them by VTEP (controller/viewvteps.py); else they
    are found among all of them."""
    from controller.discovery import VtepDesired

    if bindings is None:
        bindings = [b for b in policy.all("vtep_binding") if b["switch"] == name]
    own = {s for s, v in view.vteps.items() if v.name == name}
    bound = [b for b in bindings if b["subnet_id"] in view.subnets]
    subnets = sorted({b["subnet_id"] for b in bound}, key=lambda s: view.subnets[s].vni)
    bindings = sorted((b["port"], b["vlan"], view.subnets[b["subnet_id"]].vni) for b in bound)
    remote, flood = [], []
    for sid in subnets:
        vni = view.subnets[sid].vni
        for ep in view.by_subnet.get(sid, ()):
            locator = view.tunnel_ip_of(ep.session)
            if ep.session not in own and locator:
                remote.append((vni, ep.mac, ep.ips[0] if ep.ips else None, locator))
        gateway = view.tunnel_ip_of(view.bm_gateways.get(sid))
        if gateway:  # the subnet's gateway (or DHCP server) MAC and IP are at its gateway VRS
            sub = view.subnets[sid]
            remote.append((vni, sub.gateway_mac, sub.gateway or sub.dhcp_server, gateway))
        others = set()
        for session in own or {None}:
            others.update(view.vteps_of(sid, exclude_session=session))
        own_ips = {view.tunnel_ip_of(s) for s in own}
        flood.append((vni, tuple(sorted(others - own_ips, key=lambda ip: ipaddress.IPv4Address(ip)))))
    return VtepDesired(logical_switches=tuple(view.subnets[s].vni for s in subnets), bindings=tuple(bindings),
                       remote_macs=tuple(sorted(remote)), flood=tuple(flood))
