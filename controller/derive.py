"""Derived forwarding state: a pure function of the policy, vport locations and the connected VRS.

``derive(policy, locations, snapshots, ...)`` -> ``View``: which endpoints (bound vports) exist and where,
which subnets and domains each VRS serves, every VRS's VTEP and router MAC, and per domain the FIB
(connected subnets, host routes, static routes) that the compiler turns into flows and REST shows.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass, field

from controller.policy import dhcp_server_ip

L2_SERVER_MAC = "02:ca:fe:00:00:01"  # DHCP server MAC on L2-only subnets (no anycast gateway there)


@dataclass(frozen=True)
class SwitchInfo:
    session: str
    datapath_id: int | None
    chassis: str
    vtep_ip: str | None
    tunnel_ofport: int | None

    @property
    def router_mac(self) -> str:
        """This VRS's own MAC for symmetric IRB (RFC 9135 Router's MAC), derived from its VTEP IP."""
        if not self.vtep_ip:
            return "02:cb:00:00:00:00"
        a, b, c, d = ipaddress.IPv4Address(self.vtep_ip).packed
        return f"02:cb:{a:02x}:{b:02x}:{c:02x}:{d:02x}"


@dataclass(frozen=True)
class Endpoint:
    vport_id: str
    subnet_id: str
    mac: str
    ips: tuple[str, ...]
    port_security: bool
    session: str
    ofport: int | None
    vlan: int | None

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
    subnets: dict[str, SubnetInfo] = field(default_factory=dict)
    domains: dict[str, dict] = field(default_factory=dict)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    by_subnet: dict[str, list[Endpoint]] = field(default_factory=lambda: defaultdict(list))
    fib: dict[str, list[Route]] = field(default_factory=dict)
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

    def vteps_of(self, subnet_id, exclude_session=None) -> list[str]:
        """Distinct VTEP IPs of the other switches that have endpoints in the subnet (BUM replication list)."""
        ips = {self.switches[e.session].vtep_ip for e in self.by_subnet.get(subnet_id, ())
               if e.session != exclude_session and e.session in self.switches and self.switches[e.session].vtep_ip}
        return sorted(ips, key=lambda ip: ipaddress.IPv4Address(ip))


def switch_info(snap, vtep_ip) -> SwitchInfo:
    tunnel = next((p.ofport for p in snap.ports if p.type == "vxlan" and p.ofport and p.ofport > 0), None)
    return SwitchInfo(snap.session, snap.datapath_id, snap.chassis, vtep_ip, tunnel)


def derive(policy, locations, snapshots, vtep_ip_of) -> View:
    """The View for the current State. ``vtep_ip_of(snapshot)`` applies settings overrides."""
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
    for dom_id in view.domains:
        view.fib[dom_id] = _fib(view, policy, dom_id)
    return view


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
    routes.sort(key=lambda r: (-ipaddress.IPv4Network(r.prefix).prefixlen, ipaddress.IPv4Network(r.prefix)))
    return routes
