"""External networks and floating IPs: the rules that span objects, address allocation, and where each
floating IP is active. Pure functions of the policy (and of vport locations); docs/external.md.

A hypervisor's uplink to an external network comes from policy (the network's ``uplinks``) or from OVSDB:
a port of its integration bridge with ``external_ids:canopy-external-network=<network name>``, optionally
``canopy-external-vlan=<VLAN>`` and ``canopy-external-ip=<its address on the network>``. Policy wins.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from controller.keyed import discard_from
from controller.model import Problem
from controller.zones import ZONE_LIMIT, hashed_zones

OVSDB_NETWORK_KEY = "canopy-external-network"
OVSDB_VLAN_KEY = "canopy-external-vlan"
OVSDB_IP_KEY = "canopy-external-ip"
SHARED_NAT_ZONE = ZONE_LIMIT + 1  # 0xFF01: port address translation, and floating IPs' domains beyond the range
NAT_ZONE_FIRST = ZONE_LIMIT + 2  # 0xFF02-0xFFFF: one per domain with a floating IP active on the switch
NAT_ZONE_SPAN = 0x10000 - NAT_ZONE_FIRST


def nat_zones(l3_vnis) -> dict[int, int]:
    """The conntrack zone of each domain (by L3 VNI) with a floating IP active on one switch: a function of the
    set of VNIs alone (in VNI order, the first free zone of 0xFF02-0xFFFF from a hash of the VNI upwards), so a
    restarted controller or a standby taking over computes the same zones. Never two domains of a switch in one,
    never a vport's security zone (below 0xFF00); the domains beyond 254 on one switch share 0xFF01."""
    vnis = sorted(set(l3_vnis))
    zones = hashed_zones(vnis, NAT_ZONE_FIRST, NAT_ZONE_SPAN)
    return {vni: zones.get(vni, SHARED_NAT_ZONE) for vni in vnis}


def _p(policy, kind, obj, field, reason, code="invalid"):
    return Problem(kind, policy.ref(kind, obj), field, reason, code)


def reserved(net_obj) -> set[str]:
    """Addresses of an external network no floating IP may take: network, broadcast, gateway, uplinks."""
    net = ipaddress.IPv4Network(net_obj["cidr"])
    return ({str(net.network_address), str(net.broadcast_address), net_obj["gateway"]}
            | {u["ip"] for u in net_obj["uplinks"]})


def check(policy):
    """Problems of external networks, floating IPs and domains' translation settings."""
    yield from _overlaps(policy)
    yield from _floating_addresses(policy)
    yield from _floating_vports(policy)
    yield from _translated_domains(policy)


def _translated_domains(policy):
    """Domains translated to the underlay share one conntrack zone per VRS (openflow/external.py): their subnets
    may not overlap, or two connections of different tenants could be taken for one."""
    nats = {d["id"]: d for d in policy.all("domain") if d["underlay_nat"]}
    subs = sorted(((ipaddress.IPv4Network(s["cidr"]), s) for s in policy.all("subnet")
                   if s["domain_id"] in nats and s["cidr"]), key=lambda ns: (ns[0], ns[1]["name"]))
    for (net_a, a), (net_b, b) in zip(subs, subs[1:]):
        if net_a.overlaps(net_b) and a["domain_id"] != b["domain_id"]:
            dom = nats[b["domain_id"]]
            yield _p(policy, "domain", dom, "underlay_nat", f"subnet {b['name']!r} ({net_b}) overlaps subnet "
                     f"{a['name']!r} ({net_a}) of domain {policy.ref('domain', nats[a['domain_id']])!r}, also "
                     "translated to the underlay", "conflict")


def _overlaps(policy):
    nets = sorted(policy.all("external_network"), key=lambda n: (ipaddress.IPv4Network(n["cidr"]), n["name"]))
    for a, b in zip(nets, nets[1:]):
        if ipaddress.IPv4Network(a["cidr"]).overlaps(ipaddress.IPv4Network(b["cidr"])):
            yield _p(policy, "external_network", b, "cidr", f"{b['cidr']} overlaps external network {a['name']!r} "
                     f"({a['cidr']})", "conflict")


def _floating_addresses(policy):
    seen = {}
    for fip in sorted(policy.all("floating_ip"), key=lambda o: (o["tenant_id"], o["name"])):
        net_obj = policy.get("external_network", fip["external_network_id"])
        if net_obj is None or fip["address"] is None:
            continue  # a missing network is reported by the reference check
        addr = fip["address"]
        if ipaddress.IPv4Address(addr) not in ipaddress.IPv4Network(net_obj["cidr"]):
            yield _p(policy, "floating_ip", fip, "address", f"{addr} is outside external network "
                     f"{net_obj['name']!r} ({net_obj['cidr']})")
        elif addr in reserved(net_obj):
            yield _p(policy, "floating_ip", fip, "address", f"{addr} is the network, broadcast, gateway or an "
                     f"uplink address of external network {net_obj['name']!r}", "conflict")
        elif addr in seen:
            yield _p(policy, "floating_ip", fip, "address", f"{addr} is already floating IP "
                     f"{policy.ref('floating_ip', seen[addr])!r}", "conflict")
        seen[addr] = fip


def _floating_vports(policy):
    attached = {}
    for fip in sorted(policy.all("floating_ip"), key=lambda o: (o["tenant_id"], o["name"])):
        vport = policy.get("vport", fip["vport_id"]) if fip["vport_id"] else None
        if vport is None:
            continue  # free, or a missing vport (the reference check says so)
        subnet = policy.get("subnet", vport["subnet_id"])
        if subnet is None:
            continue
        if subnet["tenant_id"] != fip["tenant_id"]:
            yield _p(policy, "floating_ip", fip, "vport_id", "the vport belongs to another tenant")
        elif not subnet["domain_id"]:
            yield _p(policy, "floating_ip", fip, "vport_id", "the vport's subnet is not in a domain (a floating IP "
                     "is routed)")
        elif not vport["ips"]:
            yield _p(policy, "floating_ip", fip, "vport_id", "the vport has no IPv4 address")
        elif vport["binding"]["flavour"] == "baremetal":
            yield _p(policy, "floating_ip", fip, "vport_id", "a bare-metal server has no VRS to translate for it")
        elif vport["id"] in attached:
            yield _p(policy, "floating_ip", fip, "vport_id", "the vport already has floating IP "
                     f"{policy.ref('floating_ip', attached[vport['id']])!r}", "conflict")
        attached.setdefault(vport["id"], fip)


def allocate_address(policy, fip, counters) -> Problem | None:
    """Fill ``address`` with the first free host address of the network at or after its counter (wrapping):
    never one another floating IP holds, attached or not, nor a reserved one; freed ones come back late."""
    if fip["address"] is not None:
        return None
    net_obj = policy.get("external_network", fip["external_network_id"])
    if net_obj is None:
        return None  # reported by the reference check
    net = ipaddress.IPv4Network(net_obj["cidr"])
    used = reserved(net_obj) | {o["address"] for o in policy.all("floating_ip")
                                if o["external_network_id"] == net_obj["id"]}
    key = f"fip:{net_obj['id']}"
    first, size = int(net.network_address) + 1, net.num_addresses - 2
    start = counters.get(key, first)
    for step in range(size):
        candidate = first + (start - first + step) % size
        text = str(ipaddress.IPv4Address(candidate))
        if text not in used:
            fip["address"] = text
            counters[key] = candidate + 1
            return None
    return Problem("floating_ip", fip.get("name", ""), "address", f"external network {net_obj['name']!r} "
                   f"({net_obj['cidr']}) has no free address", "exhausted")


@dataclass(frozen=True)
class Uplink:
    network_id: str
    port: str
    vlan: int | None
    ip: str | None
    origin: str  # "policy" | "ovsdb"


def uplinks_of(policy, snap) -> dict[str, Uplink]:
    """network id -> how the hypervisor of ``snap`` (a VrsSnapshot) reaches it; policy wins over OVSDB."""
    by_name = {n["name"]: n for n in policy.all("external_network")}
    out = {}
    for port in snap.ports:
        net_obj = by_name.get(port.ext(OVSDB_NETWORK_KEY) or "")
        if net_obj is None:
            continue
        vlan = port.ext(OVSDB_VLAN_KEY)
        vlan = int(vlan) if vlan and vlan.isascii() and vlan.isdigit() and 1 <= int(vlan) <= 4094 else None
        ip = _ipv4_in(port.ext(OVSDB_IP_KEY), net_obj["cidr"])
        out[net_obj["id"]] = Uplink(net_obj["id"], port.name, vlan, ip, "ovsdb")
    for net_obj in by_name.values():
        for up in net_obj["uplinks"]:
            if up["chassis"] == snap.chassis:
                out[net_obj["id"]] = Uplink(net_obj["id"], up["port"], up.get("vlan"), up["ip"], "policy")
    return out


def _ipv4_in(text, cidr) -> str | None:
    try:
        addr = ipaddress.IPv4Address(text or "")
    except ValueError:
        return None
    return str(addr) if addr in ipaddress.IPv4Network(cidr) else None


def floating_status(policy, fip, locations, snapshots) -> dict:
    """Where a floating IP is active: the chassis and datapath of its vport's hypervisor when that hypervisor
    has an uplink to the floating IP's network, or why it is not active."""
    if not fip["vport_id"]:
        return {"state": "free", "active_on": None}
    loc = locations.get(fip["vport_id"])
    if loc is None:
        return {"state": "attached_unbound", "active_on": None}
    snap = snapshots.get(loc.session)
    if snap is None or fip["external_network_id"] not in uplinks_of(policy, snap):
        return {"state": "no_uplink", "active_on": None, "bound_on": loc.chassis}
    dpid = f"{loc.datapath_id:016x}" if loc.datapath_id is not None else None
    return {"state": "active", "active_on": {"chassis": loc.chassis, "dpid": dpid}}


# ------------------------------------------------------------------------- the derived view

@dataclass(frozen=True)
class FloatingInfo:
    id: str
    address: str
    mac: str  # what answers for it on the external network (the same on every VRS)
    vm_ip: str
    session: str
    l3_vni: int
    network_id: str
    uplink_ofport: int
    vlan: int | None
    gateway_mac: str | None  # the external network's gateway; None: nothing outbound
    inside: tuple[str, ...] = ()  # the CIDRs of the domain's subnets: never sent out
    domain_id: str = ""
    vm_mac: str = ""  # for traffic to the floating IP routed in the domain (over its L3 VNI from EVPN peers)
    l2_vni: int = 0
    vport_key: int = 0
    domain_mac: str = ""  # the domain's anycast gateway MAC


@dataclass(frozen=True)
class PatInfo:
    """Port address translation on one VRS to one external network: the domains it hides behind its address."""

    session: str
    network_id: str
    uplink_ofport: int
    vlan: int | None
    address: str  # the hypervisor's address on the external network
    mac: str  # what answers for it there
    gateway_mac: str | None  # None: not resolved yet (openflow/gateway_arp.py), nothing goes out
    domains: tuple[tuple[int, tuple[str, ...], str, str], ...]  # (L3 VNI, its subnets' CIDRs, gateway MAC, id)


@dataclass(frozen=True)
class GatewayNeed:
    """A VRS that must know the MAC of an external network's gateway (it translates there and the network has no
    static ``gateway_mac``): the controller asks by ARP out of the uplink, as the VRS's address there
    (openflow/gateway_arp.py)."""

    session: str
    network_id: str
    uplink_ofport: int
    vlan: int | None
    gateway_ip: str
    sender_ip: str  # the hypervisor's address on the network, else a floating IP active there
    sender_mac: str


@dataclass
class ExternalView:
    floating: dict[str, FloatingInfo] = field(default_factory=dict)
    by_session: dict[str, dict[str, FloatingInfo]] = field(default_factory=dict)  # session -> {id: info}
    pat: dict[tuple[str, str], PatInfo] = field(default_factory=dict)  # (session, network id) -> translation
    pat_by_session: dict[str, dict[str, PatInfo]] = field(default_factory=dict)  # session -> {network id: ...}
    gateways: dict[str, dict[str, GatewayNeed]] = field(default_factory=dict)  # session -> {network id: need}
    zones: dict[str, dict[int, int]] = field(default_factory=dict)  # session -> {L3 VNI: its NAT zone there}

    def zone_of(self, info: FloatingInfo) -> int:
        """The conntrack zone a floating IP is translated in on its switch (its domain's there)."""
        return self.zones.get(info.session, {}).get(info.l3_vni, SHARED_NAT_ZONE)

    def _set_zones(self, session: str) -> None:
        """The switch's NAT zones, allocated again when the set of its domains with a floating IP changed."""
        vnis = {f.l3_vni for f in self.by_session.get(session, {}).values()}
        if vnis != set(self.zones.get(session, ())):
            self.zones.pop(session, None)
            if vnis:
                self.zones[session] = nat_zones(vnis)

    def uplinks_on(self, session) -> set[tuple[str, int, int | None]]:
        """(network id, uplink ofport, vlan) of the uplinks this switch needs."""
        return {(f.network_id, f.uplink_ofport, f.vlan) for f in self.by_session.get(session, {}).values()} | \
            {(t.network_id, t.uplink_ofport, t.vlan) for t in self.pat_by_session.get(session, {}).values()}

    def set_floating(self, fid: str, info: FloatingInfo | None) -> None:
        old = self.floating.pop(fid, None)
        if old is not None:
            discard_from(self.by_session, old.session, fid)
        if info is not None:
            self.floating[fid] = info
            self.by_session.setdefault(info.session, {})[fid] = info
        for session in {f.session for f in (old, info) if f is not None}:
            self._set_zones(session)

    def set_pat(self, session: str, by_net: dict) -> None:
        for net_id in self.pat_by_session.pop(session, {}):
            self.pat.pop((session, net_id), None)
        if by_net:
            self.pat_by_session[session] = dict(by_net)
            self.pat.update({(session, n): t for n, t in by_net.items()})

    def set_gateways(self, session: str, needs: dict) -> None:
        self.gateways.pop(session, None)
        if needs:
            self.gateways[session] = dict(needs)


def pat_mac(address: str) -> str:
    return "02:ce:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(address).packed)


def floating_mac(address: str) -> str:
    return "02:cf:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(address).packed)


def gateway_mac_of(policy, net_obj, session, resolved) -> str | None:
    """The MAC outbound traffic of ``session`` to the network is sent to: the network's static ``gateway_mac``,
    else what the VRS's ARP resolution found (``resolved``: {(session, network id): MAC}), else None."""
    if net_obj is None:
        return None
    return net_obj.get("gateway_mac") or (resolved or {}).get((session, net_obj["id"]))


def external_view(policy, view, snapshots, resolved=None) -> ExternalView:
    """Where each attached floating IP is active (its vport is bound on a VRS with an uplink to its network), the
    translation each VRS does, and the gateways each must resolve; from scratch (controller/viewdelta.py keeps it
    by delta with the same functions)."""
    out = ExternalView()
    for fip in policy.all("floating_ip"):
        out.set_floating(fip["id"], floating_info(policy, view, snapshots, fip, resolved))
    for session in view.switches:
        refresh_session(out, policy, view, session, snapshots.get(session), resolved)
    return out


def refresh_session(out, policy, view, session, snap, resolved) -> None:
    """A switch's port address translation and gateway needs, again (after its floating IPs were set)."""
    out.set_pat(session, _pat_of(policy, view, session, snap, resolved))
    out.set_gateways(session, _needs(policy, out, session, snap))


def floating_info(policy, view, snapshots, fip, resolved) -> FloatingInfo | None:
    """Where a floating IP is active, with all its translation needs; None if it is not."""
    ep = view.endpoints.get(fip["vport_id"]) if fip["vport_id"] else None
    sub = view.subnets.get(ep.subnet_id) if ep else None
    snap = snapshots.get(ep.session) if ep else None
    if ep is None or sub is None or not sub.domain_id or not ep.ips or snap is None:
        return None
    up = uplinks_of(policy, snap).get(fip["external_network_id"])
    ofport = _ofport(snap, up)
    if ofport is None:
        return None
    net_obj = policy.get("external_network", fip["external_network_id"])
    return FloatingInfo(fip["id"], fip["address"], floating_mac(fip["address"]), ep.ips[0], ep.session,
                        sub.l3_vni, fip["external_network_id"], ofport, up.vlan,
                        gateway_mac_of(policy, net_obj, ep.session, resolved),
                        tuple(sorted(view.subnets[s].cidr for s in view.subnets_of_domain(sub.domain_id)
                                     if view.subnets[s].cidr)),
                        sub.domain_id, ep.mac, sub.vni, ep.key or 0, sub.gateway_mac)


def _ofport(snap, up):
    ofport = next((port.ofport for port in snap.ports if up and port.name == up.port), None)
    return ofport if up is not None and ofport and ofport > 0 else None


def _pat_of(policy, view, session, snap, resolved) -> dict:
    """The translation a switch does for the domains (with underlay_nat) it serves, per external network."""
    by_net = {}
    for did in view.domains_on(session):
        dom = view.domains.get(did)
        if dom and dom.get("underlay_nat") and dom.get("external_network_id"):
            cidrs = tuple(sorted(view.subnets[s].cidr for s in view.subnets_of_domain(did) if view.subnets[s].cidr))
            by_net.setdefault(dom["external_network_id"], []).append((dom["l3_vni"], cidrs, dom["gateway_mac"], did))
    if not by_net or snap is None:
        return {}
    uplinks, out = uplinks_of(policy, snap), {}
    for net_id, domains in by_net.items():
        up, net_obj = uplinks.get(net_id), policy.get("external_network", net_id)
        ofport = _ofport(snap, up)
        if ofport is None or not up.ip or net_obj is None:
            continue
        out[net_id] = PatInfo(session, net_id, ofport, up.vlan, up.ip, pat_mac(up.ip),
                              gateway_mac_of(policy, net_obj, session, resolved), tuple(sorted(domains)))
    return out


def _needs(policy, out, session, snap) -> dict:
    """{network id: GatewayNeed} of the networks this switch translates to whose gateway MAC is not static."""
    if snap is None:
        return {}
    senders = {n: (t.uplink_ofport, t.vlan, t.address, t.mac) for n, t in out.pat_by_session.get(session, {}).items()}
    for f in sorted(out.by_session.get(session, {}).values(), key=lambda f: f.address):
        senders.setdefault(f.network_id, (f.uplink_ofport, f.vlan, f.address, f.mac))
    needs = {}
    for net_id, (ofport, vlan, ip, mac) in senders.items():
        net_obj = policy.get("external_network", net_id)
        if net_obj is not None and not net_obj.get("gateway_mac"):
            needs[net_id] = GatewayNeed(session, net_id, ofport, vlan, net_obj["gateway"], ip, mac)
    return needs
