"""The pure compiler: (View, one VRS) -> the complete desired flows and groups of that VRS.

Flows are grouped by the object that owns them (the switch itself, a subnet, a domain, a vport), so a
change recompiles only the owners it touches (``compile_owners``) and ``compile_switch`` (every owner) is
the full-recompute fallback; tests check the two agree. Every flow is checked against the pipeline.

What each owner contributes on a switch (see openflow/pipeline.py for tables and registers):
- switch: the default of every table (drop, or continue where a stage is pass-through);
- subnet (when the switch has an endpoint in it): the VXLAN classifier for its VNI, the gateway's ARP and
  ICMP echo responders and the route-to-gateway entry, flood groups and BUM/unknown-unicast entries;
- domain (when the switch serves one of its subnets): the VXLAN classifier for the L3 VNI, static routes,
  EVPN prefix routes (over the L3 VNI to the remote VTEP) and, under a less specific EVPN prefix, a drop
  for each connected subnet (an unknown address of our own subnet is never sent to a remote prefix);
- vport: where it is local, classifier, port security, DHCP punt, local L2 entry, host route and egress;
  where it is remote (another VRS, a hardware VTEP, or an EVPN VTEP: owner kinds vtep_mac and evpn compile
  alike), an L2 entry and a host route over VXLAN (symmetric IRB); everywhere its subnet is, the ARP
  responder for its IPs.

Route priorities are HOST_ROUTE_BASE + prefix length. derive keeps at most one FIB route per prefix of a
domain (a local host, connected or resolved static route wins over an EVPN prefix of the same length), so
no two routing flows of equal priority and match compete.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from functools import lru_cache

from controller.derive import Endpoint, View
from openflow import acl, external
from openflow import pipeline as p
from openflow.flows import OFPVID_PRESENT, Flow, Group, Owner, flow

ETH_IP, ETH_ARP, UDP, ICMP = 0x0800, 0x0806, 17, 1
MCAST = ("01:00:00:00:00:00", "01:00:00:00:00:00")
FROM_TUNNEL = (p.FLAG_FROM_TUNNEL, p.FLAG_FROM_TUNNEL)
NOT_FROM_TUNNEL = (0, p.FLAG_FROM_TUNNEL)
HOST_ROUTE_BASE = 100  # route priority = base + prefix length: longest prefix wins


@dataclass
class Desired:
    flows: dict[Owner, frozenset[Flow]] = field(default_factory=dict)
    groups: dict[Owner, tuple[Group, ...]] = field(default_factory=dict)

    def all_flows(self) -> set[Flow]:
        return set().union(*self.flows.values()) if self.flows else set()

    def all_groups(self) -> dict[int, Group]:
        return {g.group_id: g for gs in self.groups.values() for g in gs}

    def update(self, other: "Desired", owners) -> None:
        """Replace the given owners' flows and groups with ``other``'s (absent there = removed)."""
        for owner in owners:
            self.flows.pop(owner, None)
            self.groups.pop(owner, None)
        self.flows.update({o: fs for o, fs in other.flows.items() if fs})
        self.groups.update({o: gs for o, gs in other.groups.items() if gs})


def group_ids(vni: int) -> tuple[int, int]:
    """(flood to all, flood to local ports only) group ids of a subnet: derived from its VNI."""
    return vni << 1, (vni << 1) | 1


# ------------------------------------------------------------------------------------------ owners

def present(view: View, session: str, owner: Owner) -> bool:
    """Whether an owner has flows on this switch (the same rule as owners_of, for one owner)."""
    if owner.kind == "switch":
        return owner.id == session
    if owner.kind == "subnet":
        return owner.id in view.subnets_on(session)
    if owner.kind == "domain":
        return owner.id in view.domains_on(session)
    if owner.kind in acl.OWNER_KINDS:  # security policy: openflow/acl.py
        return acl.present(view, session, owner)
    if owner.kind in external.OWNER_KINDS:  # external networks: openflow/external.py
        return external.present(view, session, owner)
    ep = view.endpoints.get(owner.id)
    if ep is None:
        return False
    sub = view.subnets.get(ep.subnet_id)
    return ep.session == session or ep.subnet_id in view.subnets_on(session) or \
        bool(sub and sub.domain_id in view.domains_on(session))


def owners_of(view: View, session: str) -> set[Owner]:
    """Every owner with flows on this switch."""
    subnets = view.subnets_on(session)
    domains = view.domains_on(session)
    owners = {Owner("switch", session)} | {Owner("subnet", s) for s in subnets} | \
             {Owner("domain", d) for d in domains}
    reached = set(subnets)  # local endpoints are always in a subnet on the switch
    for dom in domains:
        reached.update(view.subnets_of_domain(dom))
    for sid in reached:
        owners.update(ep.owner for ep in view.by_subnet.get(sid, ()))
    owners |= acl.owners_on(view, session)  # security policy: openflow/acl.py
    owners |= external.owners_on(view, session)  # external networks: openflow/external.py
    return owners


class _AllOwners(set):
    """owners_of() of a switch, passed on so compile_owners need not compute it again."""


def compile_switch(view: View, session: str) -> Desired:
    return compile_owners(view, session, _AllOwners(owners_of(view, session)))


def compile_owners(view: View, session: str, owners) -> Desired:
    """Desired flows and groups of just these owners on this switch (owners not present compile to nothing)."""
    everything = isinstance(owners, _AllOwners)
    out = Desired()
    sw = view.switches[session]
    for owner in owners:
        if not everything and not present(view, session, owner):
            out.flows[owner] = frozenset()
            continue
        flows, groups = _COMPILERS[owner.kind](view, sw, owner)
        if not isinstance(flows, frozenset):  # a frozenset is shared by switches, checked once (openflow/acl.py)
            for f in flows:
                p.check_flow(f)
            flows = frozenset(flows)
        out.flows[owner] = flows
        out.groups[owner] = tuple(groups)
    return out


def _switch(view, sw, owner):
    """The table-miss flows. Their cookie names the switch by chassis, not by OVSDB session (which holds
    the peer's ephemeral port): the same on every controller and after every reconnect, so neither an HA
    takeover nor a restart rewrites them."""
    defaults = {p.CLASSIFY: (), p.PORT_SECURITY: (), p.INGRESS_ACL: (("goto", p.SERVICES),),
                p.SERVICES: (("goto", p.L2_LOOKUP),), p.L2_LOOKUP: (), p.L3_ROUTING: (),
                p.EGRESS_ACL: (("goto", p.EGRESS),), p.EGRESS: ()}
    stable = Owner("switch", sw.chassis or owner.id)
    return [flow(table, 0, {}, actions, stable) for table, actions in defaults.items()], []


def _subnet(view, sw, owner):
    sub = view.subnets[owner.id]
    regs = [("set", p.REG_L2, sub.vni), ("set", p.REG_L3, sub.l3_vni), ("set", p.REG_FLAGS, p.FLAG_FROM_TUNNEL)]
    flows = []
    gateway_here = view.bm_gateways.get(sub.id) == sw.session
    if sw.tunnel_ofport:
        flows.append(flow(p.CLASSIFY, 100, {"in_port": sw.tunnel_ofport, "tunnel_id": sub.vni},
                          regs + [("goto", p.SERVICES if gateway_here else p.L2_LOOKUP)], owner))
    if sub.domain_id and sub.gateway:
        flows.append(arp_responder(sub.vni, sub.gateway, sub.gateway_mac, owner))
        flows.append(gateway_echo_responder(sub.vni, sub.gateway, sub.gateway_mac, owner))
        flows.append(flow(p.L2_LOOKUP, 100, {"reg5": sub.vni, "eth_dst": sub.gateway_mac},
                          [("goto", p.L3_ROUTING)], owner))
        if sub.id in view.bm_gateways:  # bare metal's frames to the gateway: routed like a VM's (see LEAVE_TUNNEL)
            flows.append(flow(p.L2_LOOKUP, 101, {"reg0": FROM_TUNNEL, "reg5": sub.vni, "eth_dst": sub.gateway_mac},
                              [("set", p.REG_FLAGS, 0), LEAVE_TUNNEL, ("goto", p.L3_ROUTING)], owner))
    elif sub.dhcp and sub.dhcp_server:  # L2-only: renewals are unicast to the DHCP server's address
        flows.append(arp_responder(sub.vni, sub.dhcp_server, sub.gateway_mac, owner))
    if gateway_here and sw.tunnel_ofport:
        flows += _bare_metal_services(sub, owner)
    everyone, local_only = group_ids(sub.vni)
    flows += [
        flow(p.L2_LOOKUP, 50, {"reg0": FROM_TUNNEL, "reg5": sub.vni, "eth_dst": MCAST}, [("group", local_only)], owner),
        flow(p.L2_LOOKUP, 40, {"reg5": sub.vni, "eth_dst": MCAST}, [("group", everyone)], owner),
        flow(p.L2_LOOKUP, 10, {"reg0": FROM_TUNNEL, "reg5": sub.vni}, [("group", local_only)], owner),
        flow(p.L2_LOOKUP, 5, {"reg5": sub.vni}, [("group", everyone)], owner),
    ]
    local = [ep for ep in view.by_subnet.get(sub.id, ()) if ep.session == sw.session and ep.key]
    local_buckets = tuple((("set", p.REG_OUT, ep.key), ("resubmit", p.EGRESS_ACL)) for ep in local)
    remote_buckets = tuple(to_vtep(sub.vni, ip, sw) for ip in view.vteps_of(sub.id, sw.session)) \
        if sw.tunnel_ofport else ()
    groups = [Group(everyone, local_buckets + remote_buckets, owner), Group(local_only, local_buckets, owner)]
    return flows, groups


def _bare_metal_services(sub, owner) -> list[Flow]:
    """On the subnet's bare-metal gateway VRS: what hardware VTEPs send over the subnet's VNI meets the
    gateway's ARP and ICMP echo responders (or the L2-only DHCP server's ARP) and the DHCP punt, answered
    back into the tunnel; everything else goes on to l2_lookup, past the vports' own services."""
    tunnel = {"reg0": FROM_TUNNEL, "reg5": sub.vni}
    flows = [flow(p.SERVICES, TUNNEL_SERVICE - 5, tunnel, [("goto", p.L2_LOOKUP)], owner)]
    server = sub.gateway if sub.domain_id and sub.gateway else sub.dhcp_server
    if server:
        flows.append(arp_responder(sub.vni, server, sub.gateway_mac, owner, tunnel=True))
    if sub.domain_id and sub.gateway:
        flows.append(gateway_echo_responder(sub.vni, sub.gateway, sub.gateway_mac, owner, tunnel=True))
    if sub.dhcp:
        flows.append(flow(p.SERVICES, TUNNEL_SERVICE + 5, {**tunnel, "eth_type": ETH_IP, "ip_proto": UDP,
                                                          "udp_src": 68, "udp_dst": 67},
                          [("output", "controller")], owner))
    return flows


def _domain(view, sw, owner):
    dom = view.domains[owner.id]
    flows = []
    if sw.tunnel_ofport:
        flows.append(flow(p.CLASSIFY, 100, {"in_port": sw.tunnel_ofport, "tunnel_id": dom["l3_vni"]},
                          [("set", p.REG_L3, dom["l3_vni"]), ("set", p.REG_FLAGS, p.FLAG_FROM_TUNNEL),
                           ("goto", p.L3_ROUTING)], owner))
    for route in view.static.get(owner.id, ()):
        if route.vport_id not in view.endpoints:
            continue
        target = view.endpoints[route.vport_id]
        flows += route_to(view, sw, target, route.prefix, dom, owner)
    fib = view.fib.get(owner.id, ())
    evpn = [r for r in fib if r.kind == "evpn"]
    for route in evpn:
        flows += route_to_vtep(sw, route.prefix, dom, route.vtep_ip, route.router_mac, route.vni, owner)
    for route in fib:
        if route.kind == "connected" and any(_covers(r.prefix, route.prefix) for r in evpn):
            match, prefixlen = _prefix_match(route.prefix)
            flows.append(flow(p.L3_ROUTING, HOST_ROUTE_BASE + prefixlen,
                              {"reg4": dom["l3_vni"], "eth_type": ETH_IP, "ipv4_dst": match}, [], owner))
    return flows, []


def _vport(view, sw, owner):
    ep = view.endpoints[owner.id]
    sub = view.subnets[ep.subnet_id]
    flows = []
    local = ep.session == sw.session
    if local and ep.key:
        flows += _local_port(ep, sub, owner)
    if local or ep.subnet_id in view.subnets_on(sw.session):
        flows += [arp_responder(sub.vni, ip, ep.mac, owner) for ip in ep.ips]
        if not local and sw.tunnel_ofport:
            remote_ip = view.tunnel_ip_of(ep.session)
            if remote_ip:
                flows.append(flow(p.L2_LOOKUP, 100, {"reg0": NOT_FROM_TUNNEL, "reg5": sub.vni, "eth_dst": ep.mac},
                                  to_vtep(sub.vni, remote_ip, sw), owner))
    if sub.domain_id:
        dom = view.domains[sub.domain_id]
        for ip in ep.ips:
            flows += route_to(view, sw, ep, f"{ip}/32", dom, owner)
    return flows, []


def _local_port(ep: Endpoint, sub, owner) -> list[Flow]:
    key = ep.key
    classify_match = {"in_port": ep.ofport}
    pop = []
    if ep.vlan:
        classify_match["vlan_vid"] = ep.vlan | OFPVID_PRESENT
        pop = [("pop_vlan",)]
    flows = [flow(p.CLASSIFY, 100, classify_match, pop + [("set", p.REG_IN, key), ("set", p.REG_L2, sub.vni),
                                                          ("set", p.REG_L3, sub.l3_vni), ("goto", p.PORT_SECURITY)],
                  owner)]
    flows += _port_security(ep, owner)
    flows += [
        # the port's own ARP for its address (DAD, gratuitous ARP) is never answered by the responder
        *[flow(p.SERVICES, 110, {"reg6": key, "eth_type": ETH_ARP, "arp_op": 1, "arp_tpa": ip},
               [("goto", p.L2_LOOKUP)], owner) for ip in ep.ips],
        flow(p.L2_LOOKUP, 100, {"reg5": sub.vni, "eth_dst": ep.mac}, [("set", p.REG_OUT, key),
                                                                      ("goto", p.EGRESS_ACL)], owner),
    ]
    if sub.dhcp:
        flows.append(flow(p.SERVICES, 120, {"reg6": key, "eth_type": ETH_IP, "ip_proto": UDP, "udp_src": 68,
                                             "udp_dst": 67}, [("output", "controller")], owner))
    flows += _egress(ep, owner)
    return flows


def _port_security(ep, owner):
    key = ep.key
    go = [("goto", p.INGRESS_ACL)]
    if not ep.port_security:
        return [flow(p.PORT_SECURITY, 100, {"reg6": key}, go, owner)]
    flows = [flow(p.PORT_SECURITY, 100, {"reg6": key, "eth_src": ep.mac, "eth_type": ETH_IP, "ipv4_src": ip}, go,
                  owner) for ip in ep.ips]
    flows += [flow(p.PORT_SECURITY, 100, {"reg6": key, "eth_src": ep.mac, "eth_type": ETH_ARP, "arp_spa": ip,
                                          "arp_sha": ep.mac}, go, owner) for ip in ep.ips + ("0.0.0.0",)]
    flows.append(flow(p.PORT_SECURITY, 100, {"reg6": key, "eth_src": ep.mac, "eth_type": ETH_IP,
                                             "ipv4_src": "0.0.0.0", "ip_proto": UDP, "udp_src": 68, "udp_dst": 67},
                      go, owner))
    return flows


def egress_actions(ep: Endpoint, port="port") -> list[tuple]:
    """Actions that deliver to the endpoint's port ("port") or back out of the ingress port ("in_port").
    Shared by the egress flows and the DHCP responder's packet-out."""
    out = ("output", ep.ofport if port == "port" else "in_port")
    if ep.vlan:
        return [("push_vlan",), ("set", "vlan_vid", ep.vlan | OFPVID_PRESENT), out]
    return [out]


def _egress(ep, owner):
    key = ep.key
    flows = [
        flow(p.EGRESS, 300, {"in_port": ep.ofport, "reg0": (p.FLAG_LOOPBACK, p.FLAG_LOOPBACK), "reg7": key},
             egress_actions(ep, "in_port"), owner),
        flow(p.EGRESS, 100, {"reg7": key}, egress_actions(ep), owner),
    ]
    if ep.vlan:  # other vNICs share the trunk: deliver back out of it, but never to the sender itself
        flows += [flow(p.EGRESS, 200, {"reg6": key, "reg7": key}, [], owner),
                  flow(p.EGRESS, 150, {"in_port": ep.ofport, "reg7": key}, egress_actions(ep, "in_port"), owner)]
    return flows


# ----------------------------------------------------------------------------- shared flow builders

# How an answer made by the switch goes back: out of the asking vport's own port, or (from a tunnel) back
# into the tunnel to the VTEP that sent the question, with the VNI it came with.
_BACK_TO_PORT = (("set", p.REG_FLAGS, p.FLAG_LOOPBACK), ("move", p.REG_IN, p.REG_OUT), ("goto", p.EGRESS))
_BACK_INTO_TUNNEL = (("move", "tun_ipv4_src", "tun_ipv4_dst"), ("output", "in_port"))
TUNNEL_SERVICE = 115  # priority of answers to what arrives over a tunnel (above the vports' own, 100-110)
# A packet routed from one tunnel into another leaves by the port it came in on, which OpenFlow suppresses:
# forget the ingress port first (OVS lets the 16-bit NXM in_port be written, 0 included; nothing after
# routing matches it but egress, which only concerns packets from a local port).
LEAVE_TUNNEL = ("set", "in_port_nxm", 0)


def _answer(match: dict, rewrite: list, owner: Owner, tunnel: bool) -> Flow:
    if tunnel:
        return flow(p.SERVICES, TUNNEL_SERVICE, {"reg0": FROM_TUNNEL, **match}, rewrite + list(_BACK_INTO_TUNNEL),
                    owner)
    return flow(p.SERVICES, 100, match, rewrite + list(_BACK_TO_PORT), owner)


def arp_responder(vni: int, ip: str, mac: str, owner: Owner, tunnel: bool = False) -> Flow:
    """Answer 'who has ip' in the subnet with mac, from the switch, back to the asker (see _answer)."""
    return _answer({"reg5": vni, "eth_type": ETH_ARP, "arp_op": 1, "arp_tpa": ip}, [
        ("move", "eth_src", "eth_dst"), ("set", "eth_src", mac), ("set", "arp_op", 2),
        ("move", "arp_sha", "arp_tha"), ("move", "arp_spa", "arp_tpa"), ("set", "arp_sha", mac),
        ("set", "arp_spa", ip)], owner, tunnel)


def gateway_echo_responder(vni: int, ip: str, mac: str, owner: Owner, tunnel: bool = False) -> Flow:
    """Answer ICMP echo requests to the subnet's gateway address from the switch."""
    return _answer({"reg5": vni, "eth_type": ETH_IP, "ipv4_dst": ip, "ip_proto": ICMP, "icmpv4_type": 8}, [
        ("move", "eth_src", "eth_dst"), ("set", "eth_src", mac), ("move", "ipv4_src", "ipv4_dst"),
        ("set", "ipv4_src", ip), ("set", "icmpv4_type", 0)], owner, tunnel)


def to_vtep(vni: int, vtep_ip: str, sw) -> tuple:
    return (("set", "tunnel_id", vni), ("set", "tun_ipv4_dst", vtep_ip), ("output", sw.tunnel_ofport))


def route_to(view: View, sw, target: Endpoint, prefix: str, dom: dict, owner: Owner) -> list[Flow]:
    """Route a prefix in the domain to an endpoint: delivered locally, or over the L3 VNI to its VTEP."""
    match, prefixlen = _prefix_match(prefix)
    priority = HOST_ROUTE_BASE + prefixlen
    dst = {"reg4": dom["l3_vni"], "eth_type": ETH_IP, "ipv4_dst": match}
    tsub = view.subnets[target.subnet_id]
    if target.session == sw.session:
        if not target.key:
            return []
        return [flow(p.L3_ROUTING, priority, dst, [
            ("set", "eth_src", dom["gateway_mac"]), ("set", "eth_dst", target.mac), ("dec_ttl",),
            ("set", p.REG_L2, tsub.vni), ("set", p.REG_OUT, target.key), ("goto", p.EGRESS_ACL)], owner)]
    if target.kind == "evpn":  # without a Router's MAC and L3 VNI the peer offers L2 only
        return route_to_vtep(sw, prefix, dom, view.tunnel_ip_of(target.session), target.router_mac,
                             target.l3_vni, owner)
    if target.session in view.vteps:
        return _route_to_bare_metal(view, sw, target, prefix, dom, owner)
    remote = view.switches.get(target.session)
    if remote is None:
        return []
    return route_to_vtep(sw, prefix, dom, remote.vtep_ip, remote.router_mac, dom["l3_vni"], owner)


def _route_to_bare_metal(view, sw, target: Endpoint, prefix: str, dom: dict, owner: Owner) -> list[Flow]:
    """Route to a host behind a hardware VTEP through its subnet's gateway VRS: there, bridged into the
    subnet (gateway MAC to its MAC, TTL decremented) over the L2 VNI to the VTEP, whatever the packet came
    from; elsewhere, by symmetric IRB to the gateway VRS."""
    gateway = view.bm_gateways.get(target.subnet_id)
    if gateway != sw.session:
        remote = view.switches.get(gateway)
        return route_to_vtep(sw, prefix, dom, remote.vtep_ip, remote.router_mac, dom["l3_vni"], owner) \
            if remote else []
    vtep_ip = view.tunnel_ip_of(target.session)
    if not (sw.tunnel_ofport and vtep_ip):
        return []
    match, prefixlen = _prefix_match(prefix)
    return [flow(p.L3_ROUTING, HOST_ROUTE_BASE + prefixlen,
                 {"reg4": dom["l3_vni"], "eth_type": ETH_IP, "ipv4_dst": match}, [
                     ("set", "eth_src", dom["gateway_mac"]), ("set", "eth_dst", target.mac), ("dec_ttl",),
                     LEAVE_TUNNEL, *to_vtep(view.subnets[target.subnet_id].vni, vtep_ip, sw)], owner)]


def route_to_vtep(sw, prefix: str, dom: dict, vtep_ip, router_mac, l3_vni: int, owner: Owner) -> list[Flow]:
    """Route a prefix in the domain to a remote VTEP by symmetric IRB (RFC 9135): our router MAC to its
    router MAC, TTL decremented, over the L3 VNI. Nothing when either end lacks what that needs."""
    if not (sw.tunnel_ofport and sw.vtep_ip and vtep_ip and router_mac and l3_vni):
        return []
    match, prefixlen = _prefix_match(prefix)
    return [flow(p.L3_ROUTING, HOST_ROUTE_BASE + prefixlen,
                 {"reg0": NOT_FROM_TUNNEL, "reg4": dom["l3_vni"], "eth_type": ETH_IP, "ipv4_dst": match}, [
                     ("set", "eth_src", sw.router_mac), ("set", "eth_dst", router_mac), ("dec_ttl",),
                     *to_vtep(l3_vni, vtep_ip, sw)], owner)]


@lru_cache(maxsize=65536)
def _prefix_match(prefix: str):
    """(match value, prefix length) of a prefix: the address for a host, else (network, netmask)."""
    net = ipaddress.IPv4Network(prefix)
    if net.prefixlen == 32:
        return str(net.network_address), 32
    return (str(net.network_address), str(net.netmask)), net.prefixlen


@lru_cache(maxsize=65536)
def _covers(outer: str, inner: str) -> bool:
    """Whether prefix ``outer`` is strictly less specific than ``inner`` and contains it."""
    a, b = ipaddress.IPv4Network(outer), ipaddress.IPv4Network(inner)
    return a.prefixlen < b.prefixlen and b.subnet_of(a)


_COMPILERS = {"switch": _switch, "subnet": _subnet, "domain": _domain, "vport": _vport, "vtep_mac": _vport,
              "evpn": _vport, **acl.COMPILERS, **external.COMPILERS}
