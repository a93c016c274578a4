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
Security policy (openflow/acl.py), external networks (openflow/external.py) and the metadata service
(openflow/metadata.py) compile their own owners.

Route priorities are HOST_ROUTE_BASE + prefix length. derive keeps at most one FIB route per prefix of a
domain (a local host, connected or resolved static route wins over an EVPN prefix of the same length), so
no two routing flows of equal priority and match compete.
"""

from __future__ import annotations

import ipaddress
from collections import deque
from dataclasses import dataclass, field
from itertools import compress, filterfalse, repeat
from functools import lru_cache

from controller.derive import Endpoint, View
from controller.viewroutes import own_routes
from controller.pacer import NEVER, Pacer
from openflow import acl, activation, external, metadata
from openflow import pipeline as p
from openflow.floods import group_ids, subnet_groups, to_vtep  # noqa: F401 (group_ids, to_vtep: API)
from openflow.flows import OFPVID_PRESENT, Flow, Group, Owner, arp_reply_actions, flow
from openflow.meters import punt
from openflow.owners import gone_endpoints, owners_of, present  # noqa: F401 (owners_of: API)

ETH_IP, ETH_ARP, UDP, ICMP = 0x0800, 0x0806, 17, 1
MCAST = ("01:00:00:00:00:00", "01:00:00:00:00:00")
FROM_TUNNEL = (p.FLAG_FROM_TUNNEL, p.FLAG_FROM_TUNNEL)
NOT_FROM_TUNNEL = (0, p.FLAG_FROM_TUNNEL)
HOST_ROUTE_BASE = 100  # route priority = base + prefix length: longest prefix wins

EMPTY: frozenset = frozenset()
OWNERS_PER_TICK = 5  # owners looked at (compiled or not) per pacer unit in compile_owners
FLOWS_PER_UNIT = 4  # flows built per pacer unit, on top of one unit per owner (variant) compiled: see _paced


@dataclass
class Desired:
    """One switch's desired state by owner. The flow sets are references: a set compiled once for an owner
    (``Shared``) is the same object in every switch's Desired that holds it. Treat them as immutable."""

    flows: dict[Owner, frozenset[Flow]] = field(default_factory=dict)
    groups: dict[Owner, tuple[Group, ...]] = field(default_factory=dict)

    def all_flows(self) -> set[Flow]:
        return set().union(*self.flows.values()) if self.flows else set()

    def all_groups(self) -> dict[int, Group]:
        return {g.group_id: g for gs in self.groups.values() for g in gs}

    def update(self, other: "Desired", owners) -> None:
        """Replace the given owners' flows and groups with ``other``'s (absent there = removed); in C loops."""
        deque(map(self.flows.pop, owners, repeat(None)), 0)
        deque(map(self.groups.pop, owners, repeat(None)), 0)
        self.flows.update(compress(other.flows.items(), other.flows.values()))  # (those with flows: truthy)
        self.groups.update(compress(other.groups.items(), other.groups.values()))


class Shared:
    """Compile once, share: an owner's flows by *variant*, the few facts about a switch they depend on
    (``_VARIANTS``). A remote vport's flows, for example, differ only by whether its subnet is on the
    switch and whether the switch has a tunnel, so 100 switches share one or two frozensets of them.

    ``begin(view)`` before compiling against a (new or changed) view: it drops the per-view memos (flood
    lists, local ports by subnet); ``forget(owners)`` drops the flows of owners whose inputs changed.
    Without a Shared, each compile_* call makes its own (nothing shared, nothing kept)."""

    def __init__(self, pacer: Pacer = NEVER):
        self.flows: dict[Owner, dict] = {}  # owner -> {variant: frozenset of its flows}
        self.memo: dict = {}  # per-view facts, valid until the next begin()
        self.compiled = 0  # owner variants compiled (for benchmarks)
        self._before: dict[Owner, dict] = {}  # renew(): what was compiled before, for sets compiled again equal
        self.pacer = pacer  # ticked by the flows compiled (_paced): its pauses must leave the view unchanged

    def begin(self, view) -> None:
        self.memo = {"view": view}

    def forget(self, owners) -> None:
        deque(map(self.flows.pop, owners, repeat(None)), 0)

    def drop_empty(self, owners) -> None:
        """Of ``owners`` (whose inputs changed), those without a flow in any variant compiled are not kept: an owner
        that went (a vport deleted) was compiled once more, to nothing, on the switches that had it."""
        for owner in owners:
            by_variant = self.flows.get(owner)
            if by_variant is not None and not any(by_variant.values()):
                del self.flows[owner]

    def clear(self) -> None:
        self.flows.clear()
        self._before, self.memo = {}, {}

    def renew(self) -> None:
        """``clear()``, but until ``settle()`` a set compiled again equal to the one its owner's variant had is that
        object: a full recompute then finds its unchanged owners by identity (programmer ``_changed_owners``)."""
        self._before, self.flows, self.memo = self.flows, {}, {}

    def settle(self) -> dict:
        """The end of a ``renew()``: what was compiled before, no longer kept here (the caller frees it)."""
        before, self._before = self._before, {}
        return before

    def owner_flows(self, view, sw, owner: Owner) -> frozenset:
        """The owner's flows on switch ``sw``: compiled once per variant and shared."""
        if self.memo.get("view") is not view:
            self.begin(view)
        variant = _VARIANTS.get(owner.kind)  # (the common kinds, none of the others': asked first)
        if variant is not None:
            return self.variant_flows(view, sw, owner, variant(view, sw, owner, self.memo))
        if owner.kind == "switch":
            return self._paced(_checked(_switch(view, sw, owner)))
        if owner.kind in acl.COMPILERS:  # security policy (openflow/acl.py): an ACL's set is shared already
            flows, _ = acl.COMPILERS[owner.kind](view, sw, owner, self._built)  # an ACL's rules tick as built
            self.pacer.tick()  # an ACL's set is mostly the one kept, not built anew
            return flows if isinstance(flows, frozenset) else self._paced(_checked(flows))
        if owner.kind in external.COMPILERS:  # external networks (openflow/external.py): per switch, not shared
            return self._paced(_checked(external.COMPILERS[owner.kind](view, sw, owner)[0]))
        if owner.kind in metadata.COMPILERS:  # the metadata service (openflow/metadata.py): per switch
            return self._paced(_checked(metadata.COMPILERS[owner.kind](view, sw, owner)))
        if owner.kind in activation.COMPILERS:  # a live migration's standby ports (openflow/activation.py)
            return self._paced(_checked(activation.COMPILERS[owner.kind](view, sw, owner)))
        return self.variant_flows(view, sw, owner, _VARIANTS[owner.kind](view, sw, owner, self.memo))

    def variant_flows(self, view, sw, owner: Owner, variant) -> frozenset:
        """The owner's flows in this variant (``_VARIANTS``; ``sw`` is one switch of that variant)."""
        by_variant = self.flows.get(owner)
        if by_variant is None:
            by_variant = self.flows[owner] = {}
        flows = by_variant.get(variant)
        if flows is None:
            flows, before = _checked(_FLOWS[owner.kind](view, sw, owner)), self._before.get(owner, {}).get(variant)
            flows = by_variant[variant] = before if before == flows else flows
            self.compiled += 1
            self._paced(flows)
        return flows

    def _paced(self, flows: frozenset) -> frozenset:
        """Tick for compiling ``flows``: a unit for the owner, one per ``FLOWS_PER_UNIT`` flows. A unit per variant let
        200 local vports (~15 flows each, a remote one 3) run 30-55 ms between two pauses of a 10,000-vport apply."""
        self.pacer.tick(1 + len(flows) // FLOWS_PER_UNIT)  # (``_built``'s, without its call)
        return flows

    def _built(self, flows: int) -> None:
        """``_paced`` by a count (an ACL's rules as built, openflow/acl.py: a unit per ACL let 100 ACLs of 20 rules
        be built between two pauses, 0.6 s of CPU)."""
        self.pacer.tick(1 + flows // FLOWS_PER_UNIT)


def _checked(flows) -> frozenset:
    for f in flows:
        p.check_flow(f)
    return frozenset(flows) if flows else EMPTY


def compile_switch(view: View, session: str, shared: Shared | None = None) -> Desired:
    """Every owner with flows on this switch (the owners of owners_of), compiled or taken from ``shared``."""
    shared = shared or Shared()
    if shared.memo.get("view") is not view:
        shared.begin(view)
    memo, sw, out = shared.memo, view.switches[session], Desired()
    me = Owner("switch", session)
    out.flows[me] = shared.owner_flows(view, sw, me)
    subnets, domains = view.subnets_on(session), view.domains_on(session)
    for sid in subnets:
        owner = Owner("subnet", sid)
        out.flows[owner] = shared.owner_flows(view, sw, owner)
        out.groups[owner] = subnet_groups(view, sw, owner, memo)
    for did in domains:
        owner = Owner("domain", did)
        out.flows[owner] = shared.owner_flows(view, sw, owner)
    for owner in acl.owners_on(view, session):  # security policy: openflow/acl.py
        out.flows[owner] = shared.owner_flows(view, sw, owner)
    for owner in external.owners_on(view, session):  # external networks: openflow/external.py
        out.flows[owner] = shared.owner_flows(view, sw, owner)
    for owner in metadata.owners_on(view, session):  # the metadata service: openflow/metadata.py
        out.flows[owner] = shared.owner_flows(view, sw, owner)
    for owner in activation.owners_on(view, session):  # standby ports: openflow/activation.py
        out.flows[owner] = shared.owner_flows(view, sw, owner)
    reached = set(subnets)
    for did in domains:
        reached.update(view.subnets_of_domain(did))
    for sid in reached:  # the endpoints: most are remote to this switch, and share one variant per subnet
        out.flows.update(_remote_endpoints(view, sw, sid, sid in subnets, shared))
        for ep, owner in _endpoints(view, sid, memo)[1].get(session, ()):  # then the exceptions
            out.flows[owner] = shared.variant_flows(view, sw, owner, _vport_variant(view, sw, owner, memo))
    return out


def _endpoints(view, subnet_id, memo) -> tuple[list, dict]:
    """A subnet's endpoints, once per view: [(endpoint, Owner)] of those on a VRS, and session -> [(endpoint,
    Owner)] of those whose variant is not the subnet's common remote one on that session's switch (its own
    ports there; hosts behind hardware VTEPs, listed under every session)."""
    key = ("endpoints", subnet_id)
    entry = memo.get(key)
    if entry is None:
        ordinary, special, everywhere = [], {}, []
        for ep in view.by_subnet.get(subnet_id, ()):
            pair = (ep, ep.owner)
            if ep.session in view.vteps:
                everywhere.append(pair)
            else:
                ordinary.append(pair)
                special.setdefault(ep.session, []).append(pair)
        if everywhere:
            special = _Everywhere(special, everywhere)
        entry = memo[key] = (ordinary, special)
    return entry


class _Everywhere(dict):
    """session -> exceptions, where some exceptions (``always``) apply to every session."""

    def __init__(self, by_session, always):
        super().__init__(by_session)
        self.always = always

    def get(self, session, default=()):
        return [*super().get(session, ()), *self.always]


def _remote_endpoints(view, sw, subnet_id, subnet_here: bool, shared) -> dict:
    """{Owner: flows} of the subnet's endpoints on other VRS, as a switch of this variant holds them: one dict
    per (subnet, variant), merged into each such switch's Desired (its own ports are then overridden). The
    first switch to ask compiles all but its own ports (which it cannot compile as remote); the next one
    adds those."""
    variant = (subnet_here, bool(sw.tunnel_ofport), bool(sw.vtep_ip), False)
    key = ("remote", subnet_id, variant)
    entry = shared.memo.get(key)
    if entry is None:
        flows, later = {}, []
        for ep, owner in _endpoints(view, subnet_id, shared.memo)[0]:
            if ep.session == sw.session:
                later.append(owner)
            else:
                flows[owner] = shared.variant_flows(view, sw, owner, variant)
        entry = shared.memo[key] = (flows, later)
    flows, later = entry
    if later and view.endpoints[later[0].id].session != sw.session:
        flows.update((owner, shared.variant_flows(view, sw, owner, variant)) for owner in later)
        later.clear()
    return flows


def compile_owners(view: View, session: str, owners, shared: Shared | None = None) -> Desired:
    """Desired flows and groups of just these owners on this switch (owners not present compile to nothing).
    With ``shared``, flows an owner has in the same form on several switches are compiled once."""
    shared = shared or Shared()
    out = Desired()
    sw = view.switches[session]
    owners = owners if type(owners) is list else list(owners)
    gone = gone_endpoints(view, owners)  # (a withdraw's 10,000: nothing to compile, found in C)
    if gone:
        out.flows.update(dict.fromkeys(gone, EMPTY))
        shared.pacer.tick(len(gone) // OWNERS_PER_TICK)
        owners = list(filterfalse(out.flows.__contains__, owners))
    for n, owner in enumerate(owners, 1):
        if n % OWNERS_PER_TICK == 0:  # most may be compiled already (shared): still a turn now and then
            shared.pacer.tick()
        if not present(view, session, owner):
            out.flows[owner] = EMPTY
            continue
        out.flows[owner] = shared.owner_flows(view, sw, owner)
        if owner.kind == "subnet":
            out.groups[owner] = subnet_groups(view, sw, owner, shared.memo)
    return out


# ------------------------------------------------------------------------------ variants (what is shared)

def _subnet_variant(view, sw, owner, memo):
    return sw.tunnel_ofport, view.bm_gateways.get(owner.id) == sw.session


def _domain_variant(view, sw, owner, memo):
    """Static routes to a port on this switch, or through it as a bare-metal gateway, are its own."""
    key = ("domain", owner.id)
    special = memo.get(key)
    if special is None:
        special = memo[key] = _static_route_sessions(view, owner.id)
    return sw.tunnel_ofport, bool(sw.vtep_ip), sw.session if sw.session in special else None


def _static_route_sessions(view, domain_id) -> frozenset:
    sessions = set()
    for route in view.static.get(domain_id, ()):
        target = view.endpoints.get(route.vport_id)
        if target is not None:
            sessions.add(target.session)
            sessions.add(view.bm_gateways.get(target.subnet_id))
    return frozenset(sessions)


def _vport_variant(view, sw, owner, memo):
    """Where the endpoint is local, its flows are that switch's; elsewhere they depend only on whether its
    subnet is on the switch, whether the switch can tunnel and route (VTEP IP), and, for a host behind a
    hardware VTEP, whether the switch is its subnet's bare-metal gateway."""
    ep = view.endpoints[owner.id]
    if ep.session == sw.session:
        return sw.session
    return (ep.subnet_id in view.subnets_on(sw.session), bool(sw.tunnel_ofport), bool(sw.vtep_ip),
            ep.session in view.vteps and view.bm_gateways.get(ep.subnet_id) == sw.session)


def _switch(view, sw, owner):
    """The table-miss flows. Their cookie names the switch by chassis, not by OVSDB session (which holds
    the peer's ephemeral port): the same on every controller and after every reconnect, so neither an HA
    takeover nor a restart rewrites them."""
    defaults = {p.CLASSIFY: (), p.PORT_SECURITY: (), p.INGRESS_ACL: (("goto", p.SERVICES),),
                p.SERVICES: (("goto", p.L2_LOOKUP),), p.L2_LOOKUP: (), p.L3_ROUTING: (),
                p.EGRESS_ACL: (("goto", p.EGRESS),), p.EGRESS: (), p.IRB_OUT: (), p.TUNNEL_OUT: ()}
    if sw.tunnel_ofport:  # the only per-switch parts of what goes into a tunnel (openflow/pipeline.py)
        defaults[p.IRB_OUT] = (("set", "eth_src", sw.router_mac), ("goto", p.TUNNEL_OUT))
        defaults[p.TUNNEL_OUT] = (("output", sw.tunnel_ofport),)
    stable = Owner("switch", sw.chassis or owner.id)
    return [flow(table, 0, {}, actions, stable) for table, actions in defaults.items()]


def _subnet(view, sw, owner):
    sub = view.subnets[owner.id]
    regs = [("set", p.REG_L2, sub.vni), ("set", p.REG_L3, sub.l3_vni), ("set", p.REG_FLAGS, p.FLAG_FROM_TUNNEL)]
    flows = []
    gateway_here = view.bm_gateways.get(sub.id) == sw.session
    if sw.tunnel_ofport:
        flows.append(flow(p.CLASSIFY, 100, {"in_port": sw.tunnel_ofport, "tunnel_id": sub.vni},
                          regs + [("goto", p.SERVICES if gateway_here else p.L2_LOOKUP)], owner))
    answer = arp_answer(sub)
    if answer is not None:
        flows.append(arp_responder(sub.vni, *answer, owner))
    if sub.domain_id and sub.gateway:
        flows.append(gateway_echo_responder(sub.vni, sub.gateway, sub.gateway_mac, owner))
        flows.append(flow(p.L2_LOOKUP, 100, {"reg5": sub.vni, "eth_dst": sub.gateway_mac},
                          [("goto", p.L3_ROUTING)], owner))
        if sub.id in view.bm_gateways:  # bare metal's frames to the gateway: routed like a VM's (see LEAVE_TUNNEL)
            flows.append(flow(p.L2_LOOKUP, 101, {"reg0": FROM_TUNNEL, "reg5": sub.vni, "eth_dst": sub.gateway_mac},
                              [("set", p.REG_FLAGS, 0), LEAVE_TUNNEL, ("goto", p.L3_ROUTING)], owner))
    if gateway_here and sw.tunnel_ofport:
        flows += _bare_metal_services(sub, owner)
    everyone, local_only = group_ids(sub.vni)
    flows += [
        flow(p.L2_LOOKUP, 50, {"reg0": FROM_TUNNEL, "reg5": sub.vni, "eth_dst": MCAST}, [("group", local_only)], owner),
        flow(p.L2_LOOKUP, 40, {"reg5": sub.vni, "eth_dst": MCAST}, [("group", everyone)], owner),
        flow(p.L2_LOOKUP, 10, {"reg0": FROM_TUNNEL, "reg5": sub.vni}, [("group", local_only)], owner),
        flow(p.L2_LOOKUP, 5, {"reg5": sub.vni}, [("group", everyone)], owner),
    ]
    return flows


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
                          punt("dhcp"), owner))
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
    fib = own_routes(view, owner.id)  # its host routes are the vports' own flows: not read here
    evpn = [r for r in fib if r.kind == "evpn"]
    for route in evpn:
        flows += route_to_vtep(sw, route.prefix, dom, route.vtep_ip, route.router_mac, route.vni, owner)
    for route in fib:
        if route.kind == "connected" and any(_covers(r.prefix, route.prefix) for r in evpn):
            match, prefixlen = _prefix_match(route.prefix)
            flows.append(flow(p.L3_ROUTING, HOST_ROUTE_BASE + prefixlen,
                              {"reg4": dom["l3_vni"], "eth_type": ETH_IP, "ipv4_dst": match}, [], owner))
    return flows


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
                                  via_tunnel(sub.vni, remote_ip), owner))
    if sub.domain_id:
        dom = view.domains[sub.domain_id]
        for ip in ep.ips:
            flows += route_to(view, sw, ep, f"{ip}/32", dom, owner)
    return flows


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
                                             "udp_dst": 67}, punt("dhcp", ep.ofport, ep.vlan), owner))
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
_BACK_TO_PORT = p.BACK_TO_PORT
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


def arp_answer(sub) -> tuple[str, str] | None:
    """(address, MAC) the subnet's ARP responder answers on its VRSs: a routed subnet's gateway with the domain's
    anycast gateway MAC; on an L2-only subnet with DHCP the DHCP server's address (renewals are unicast to it)
    with L2_SERVER_MAC; None: nothing (openflow/gateway_garp.py announces it when it changes)."""
    if sub.domain_id and sub.gateway:
        return sub.gateway, sub.gateway_mac
    if sub.dhcp and sub.dhcp_server:
        return sub.dhcp_server, sub.gateway_mac
    return None


def arp_responder(vni: int, ip: str, mac: str, owner: Owner, tunnel: bool = False) -> Flow:
    """Answer 'who has ip' in the subnet with mac, from the switch, back to the asker (see _answer)."""
    return _answer({"reg5": vni, "eth_type": ETH_ARP, "arp_op": 1, "arp_tpa": ip}, arp_reply_actions(mac, ip),
                   owner, tunnel)


def gateway_echo_responder(vni: int, ip: str, mac: str, owner: Owner, tunnel: bool = False) -> Flow:
    """Answer ICMP echo requests to the subnet's gateway address from the switch."""
    return _answer({"reg5": vni, "eth_type": ETH_IP, "ipv4_dst": ip, "ip_proto": ICMP, "icmpv4_type": 8}, [
        ("move", "eth_src", "eth_dst"), ("set", "eth_src", mac), ("move", "ipv4_src", "ipv4_dst"),
        ("set", "ipv4_src", ip), ("set", "icmpv4_type", 0)], owner, tunnel)


def via_tunnel(vni: int, vtep_ip: str, table: int = p.TUNNEL_OUT) -> tuple:
    """Actions of a flow into a tunnel, the same on every switch: VNI and remote VTEP, then ``tunnel_out``
    (or ``irb_out`` when routed), which holds the switch's own port and Router's MAC."""
    return (("set", "tunnel_id", vni), ("set", "tun_ipv4_dst", vtep_ip), ("goto", table))


def route_to(view: View, sw, target: Endpoint, prefix: str, dom: dict, owner: Owner) -> list[Flow]:
    """Route a prefix in the domain to an endpoint: delivered locally, or over the L3 VNI to its VTEP."""
    if target.session == sw.session:
        if not target.key:  # (before the prefix is parsed: 10,000 ports bound before OVS numbered them)
            return []
        match, prefixlen = _prefix_match(prefix)
        dst = {"reg4": dom["l3_vni"], "eth_type": ETH_IP, "ipv4_dst": match}
        tsub = view.subnets[target.subnet_id]
        return [flow(p.L3_ROUTING, HOST_ROUTE_BASE + prefixlen, dst, [
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
                     LEAVE_TUNNEL, *via_tunnel(view.subnets[target.subnet_id].vni, vtep_ip)], owner)]


def route_to_vtep(sw, prefix: str, dom: dict, vtep_ip, router_mac, l3_vni: int, owner: Owner) -> list[Flow]:
    """Route a prefix in the domain to a remote VTEP by symmetric IRB (RFC 9135): our router MAC to its
    router MAC, TTL decremented, over the L3 VNI (our router MAC is set in irb_out, so that the flow is the same
    on every switch). Nothing when either end lacks what that needs."""
    if not (sw.tunnel_ofport and sw.vtep_ip and vtep_ip and router_mac and l3_vni):
        return []
    match, prefixlen = _prefix_match(prefix)
    return [flow(p.L3_ROUTING, HOST_ROUTE_BASE + prefixlen,
                 {"reg0": NOT_FROM_TUNNEL, "reg4": dom["l3_vni"], "eth_type": ETH_IP, "ipv4_dst": match}, [
                     ("set", "eth_dst", router_mac), ("dec_ttl",), *via_tunnel(l3_vni, vtep_ip, p.IRB_OUT)], owner)]


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


_FLOWS = {"subnet": _subnet, "domain": _domain, "vport": _vport, "vtep_mac": _vport, "evpn": _vport}
_VARIANTS = {"subnet": _subnet_variant, "domain": _domain_variant, "vport": _vport_variant,
             "vtep_mac": _vport_variant, "evpn": _vport_variant}
