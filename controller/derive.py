"""Derived forwarding state: a pure function of the policy, vport locations and the connected VRS.

``derive(policy, locations, snapshots, ...)`` -> ``View``: which endpoints (bound vports) exist and where,
which subnets and domains each VRS serves, every VRS's VTEP and router MAC, and per domain the FIB
(connected subnets, host routes, static routes) that the compiler turns into flows and REST shows.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

from controller.policy import dhcp_server_ip

L2_SERVER_MAC = "02:ca:fe:00:00:01"  # DHCP server MAC on L2-only subnets (no anycast gateway there)


@dataclass(frozen=True)
class SwitchInfo:
    session: str
    datapath_id: int | None
    chassis: str
    vtep_ip: str | None
    tunnel_ofport: int | None

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


@dataclass(frozen=True)
class Endpoint:
    """A MAC in a subnet and where it is: a bound vport on a VRS, or a MAC a hardware VTEP learned
    (kind "vtep_mac"; its session is the VTEP's)."""

    vport_id: str
    subnet_id: str
    mac: str
    ips: tuple[str, ...]
    port_security: bool
    session: str
    ofport: int | None
    vlan: int | None
    kind: str = "vport"

    @property
    def owner(self):
        from openflow.flows import Owner

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


@dataclass(frozen=True)
class Route:
    prefix: str
    kind: str  # connected | host | static
    next_hop: str | None  # IP (static) or None
    vport_id: str | None  # the endpoint traffic goes to (host routes, resolved static routes)
    subnet_id: str | None


@dataclass
class View:
    switches: dict[str, SwitchInfo] = field(default_factory=dict)
    vteps: dict[str, VtepInfo] = field(default_factory=dict)
    bound_vteps: dict[str, set[str]] = field(default_factory=dict)  # subnet id -> VTEP sessions bound to it
    subnets: dict[str, SubnetInfo] = field(default_factory=dict)
    domains: dict[str, dict] = field(default_factory=dict)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    by_subnet: dict[str, list[Endpoint]] = field(default_factory=lambda: defaultdict(list))
    fib: dict[str, list[Route]] = field(default_factory=dict)
    static: dict[str, list[Route]] = field(default_factory=dict)  # domain id -> its static routes (in fib too)
    _on: dict = field(default_factory=dict, repr=False, compare=False)  # session -> (subnets, domains)

    def subnets_on(self, session) -> set[str]:
        """Subnets with at least one endpoint on this switch."""
        return self._presence(session)[0]

    def domains_on(self, session) -> set[str]:
        """Domains with at least one endpoint on this switch."""
        return self._presence(session)[1]

    def _presence(self, session):
        if not self._on:  # one pass over the endpoints answers every switch
            subnets = defaultdict(set)
            for e in self.endpoints.values():
                subnets[e.session].add(e.subnet_id)
            for sess, subs in subnets.items():
                self._on[sess] = (subs, {self.subnets[s].domain_id for s in subs if self.subnets[s].domain_id})
        return self._on.get(session, (set(), set()))

    def subnets_of_domain(self, domain_id) -> list[str]:
        return [s.id for s in self.subnets.values() if s.domain_id == domain_id]

    def tunnel_ip_of(self, session) -> str | None:
        """The tunnel IP of a VRS or a hardware VTEP."""
        if session in self.switches:
            return self.switches[session].vtep_ip
        vtep = self.vteps.get(session)
        return vtep.tunnel_ip if vtep else None

    def vteps_of(self, subnet_id, exclude_session=None) -> list[str]:
        """Tunnel IPs of every other VRS with endpoints in the subnet and of the hardware VTEPs bound to it
        (the subnet's BUM replication list)."""
        sessions = {e.session for e in self.by_subnet.get(subnet_id, ())} | self.bound_vteps.get(subnet_id, set())
        ips = {self.tunnel_ip_of(s) for s in sessions if s != exclude_session} - {None}
        return sorted(ips, key=lambda ip: ipaddress.IPv4Address(ip))


def switch_info(snap, vtep_ip) -> SwitchInfo:
    tunnel = next((p.ofport for p in snap.ports if p.type == "vxlan" and p.ofport and p.ofport > 0), None)
    return SwitchInfo(snap.session, snap.datapath_id, snap.chassis, vtep_ip, tunnel)


def derive(policy, locations, snapshots, vtep_ip_of, vteps=None) -> View:
    """The View for the current State. ``vtep_ip_of(snapshot)`` applies settings overrides; ``vteps`` are
    the hardware VTEP snapshots by session."""
    view = View()
    for session, snap in snapshots.items():
        view.switches[session] = switch_info(snap, vtep_ip_of(snap))
    for dom in policy.all("domain"):
        view.domains[dom["id"]] = dom
    for sub in policy.all("subnet"):
        dom = policy.get("domain", sub["domain_id"]) if sub["domain_id"] else None
        view.subnets[sub["id"]] = SubnetInfo(
            sub["id"], sub["vni"], dom["l3_vni"] if dom else 0, sub["domain_id"], sub["cidr"], sub["gateway"],
            dom["gateway_mac"] if dom else L2_SERVER_MAC, bool(sub["cidr"] and sub["dhcp"]["enabled"]),
            dhcp_server_ip(sub))
    for vid, loc in sorted(locations.items()):
        vport = policy.get("vport", vid)
        if vport is None or loc.session not in view.switches:
            continue
        ep = Endpoint(vid, vport["subnet_id"], vport["mac"], tuple(vport["ips"] or ()), vport["port_security"],
                      loc.session, loc.ofport, loc.vlan)
        view.endpoints[vid] = ep
        view.by_subnet[ep.subnet_id].append(ep)
    _add_vteps(view, policy, vteps or {})
    for dom_id in view.domains:
        view.fib[dom_id] = _fib(view, policy, dom_id)
        view.static[dom_id] = [r for r in view.fib[dom_id] if r.kind == "static"]
    return view


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
    for session, snap in sorted(vteps.items()):
        for mac in sorted(snap.local_macs, key=lambda m: (m.vni, m.mac)):
            sid = by_vni.get(mac.vni)
            if sid is None or session not in view.bound_vteps.get(sid, ()) or (sid, mac.mac) in known:
                continue  # not a bound subnet, or a vport's MAC (policy wins)
            ep = Endpoint(f"{snap.name}/{mac.vni}/{mac.mac}", sid, mac.mac, (mac.ip,) if mac.ip else (), False,
                          session, None, None, "vtep_mac")
            view.endpoints[ep.vport_id] = ep
            view.by_subnet[sid].append(ep)
            known.add((sid, mac.mac))


def _fib(view, policy, dom_id) -> list[Route]:
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
    routes.sort(key=lambda r: _route_order(r.prefix))
    return routes


@lru_cache(maxsize=65536)
def _route_order(prefix: str):
    """Longest prefix first, then by address: the FIB's order."""
    net = ipaddress.IPv4Network(prefix)
    return (-net.prefixlen, int(net.network_address))


def vtep_desired(view: View, policy, name: str):
    """What the hardware VTEP called ``name`` should hold: a logical switch per bound subnet (key = its
    VNI), the port/VLAN bindings, every other MAC of those subnets as a remote MAC at its tunnel IP, and
    the subnet's flood list (every other VRS and VTEP that has the subnet)."""
    from controller.discovery import VtepDesired

    own = {s for s, v in view.vteps.items() if v.name == name}
    bindings = sorted((b["port"], b["vlan"], view.subnets[b["subnet_id"]].vni)
                      for b in policy.all("vtep_binding") if b["switch"] == name and b["subnet_id"] in view.subnets)
    subnets = sorted({b["subnet_id"] for b in policy.all("vtep_binding")
                      if b["switch"] == name and b["subnet_id"] in view.subnets}, key=lambda s: view.subnets[s].vni)
    remote, flood = [], []
    for sid in subnets:
        vni = view.subnets[sid].vni
        for ep in view.by_subnet.get(sid, ()):
            locator = view.tunnel_ip_of(ep.session)
            if ep.session not in own and locator:
                remote.append((vni, ep.mac, ep.ips[0] if ep.ips else None, locator))
        others = set()
        for session in own or {None}:
            others.update(view.vteps_of(sid, exclude_session=session))
        own_ips = {view.tunnel_ip_of(s) for s in own}
        flood.append((vni, tuple(sorted(others - own_ips, key=lambda ip: ipaddress.IPv4Address(ip)))))
    return VtepDesired(logical_switches=tuple(view.subnets[s].vni for s in subnets), bindings=tuple(bindings),
                       remote_macs=tuple(sorted(remote)), flood=tuple(flood))
