"""External networks on the VRS: floating IPs (one-to-one translation) and port address translation.

What is compiled here:

- (derived in controller/extnet.py ``external_view``) where each floating IP is active;
- owner ``uplink`` (id ``<session>|<network id>``): on a switch with an uplink to an external network that has
  an active floating IP or translates there, the classifier of the uplink port (VLAN popped) into ``external_in``;
- owner ``fip`` (id: the floating IP's id), only on the VRS where its vport is bound: the ARP answer for the
  floating IP on the uplink (MAC ``02:cf`` + the address) and its translation to and from the VM's address by
  conntrack NAT (``_floating``): inbound from the uplink and from EVPN peers over the L3 VNI (VMs reach a
  floating IP like any host outside: translated out of their own uplink, back through the gateway); outbound
  to destinations the domain has no route for (and outside its subnets), sent to the external gateway; replies
  of inbound connections translated back whichever way they are routed;
- owner ``pat`` (id ``<session>|<network id>``): port address translation of the domains with ``underlay_nat``
  that the switch serves, behind its own address on the network (``_translation``).

Each domain with a floating IP active on a switch translates them in its own conntrack zone there
(controller/extnet.py ``nat_zones``: 0xFF02-0xFFFF, never a vport's security zone, a function of the switch's
domains so a restarted or standby controller computes the same); port address translation, whose domains share
the hypervisor's address and may not overlap (controller/extnet.py), uses ``PAT_ZONE`` (0xFF01). ``ct_mark`` is
never written in these zones. The flow that commits a new connection's translation is hit once per connection:
packets of connections already committed went through the zone with ``nat`` before and are translated, so they
match other flows; its packet count is the number of connections opened (REST ``connections_opened``).
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

from controller.extnet import SHARED_NAT_ZONE, FloatingInfo, PatInfo
from openflow import pipeline as p
from openflow.flows import OFPVID_PRESENT, Owner, flow
from openflow.meters import punt

OWNER_KINDS = ("uplink", "fip", "pat")
ETH_IP, ETH_ARP = 0x0800, 0x0806
OUTBOUND = 50  # in l3_routing: below every route of the domain (100 + prefix length)
HOST_ROUTE = 132  # in l3_routing: a floating IP as a host route of its domain (100 + 32)
TRANSLATED = 40  # in l3_routing: below a floating IP's outbound flows (a VM with one leaves with it)
OPENS, KNOWN = 110, 100  # in external_dnat: a new connection to a floating IP; one already translated
FROM_VPORT, FROM_DOMAIN = 110, 105  # in l2_lookup and external_nat: a floating IP's vport; a translated domain
PAT_ZONE = SHARED_NAT_ZONE  # port address translation's zone (docs/pipeline.md: 0xFF00-0xFFFF are ours)
CT_ESTABLISHED, CT_RELATED, CT_NEW = (0x22, 0x22), (0x24, 0x24), (0x21, 0x21)  # +trk+est, +trk+rel, +trk+new
NOT_FROM_TUNNEL = (0, p.FLAG_FROM_TUNNEL)


# ------------------------------------------------------------------------------------------ owners

def present(view, session, owner) -> bool:
    ext = view.external
    if owner.kind == "pat":
        sess, _, net_id = owner.id.partition("|")
        return sess == session and net_id in ext.pat_by_session.get(session, ())
    if owner.kind == "fip":
        info = ext.floating.get(owner.id)
        return info is not None and info.session == session
    sess, _, net_id = owner.id.partition("|")
    return sess == session and any(n == net_id for n, _, _ in ext.uplinks_on(session))


def owners_on(view, session) -> set[Owner]:
    ext = view.external
    return {Owner("fip", fid) for fid in ext.by_session.get(session, ())} | \
        {Owner("uplink", f"{session}|{n}") for n, _, _ in ext.uplinks_on(session)} | \
        {Owner("pat", f"{session}|{n}") for n in ext.pat_by_session.get(session, ())}


def session_part(ext, session) -> tuple:
    """What the switch-wide owners of one switch are compiled from: (uplinks, translations, gateway needs), and the
    NAT zone of each floating IP active there."""
    return (ext.uplinks_on(session), dict(ext.pat_by_session.get(session, {})), dict(ext.gateways.get(session, {})),
            {fid: ext.zone_of(f) for fid, f in ext.by_session.get(session, {}).items()})


def reached_parts(old_f, new_f, old_s, new_s) -> dict[Owner, set[str]]:
    """Owners whose inputs differ, and the switches they are or were on, from the parts that may have changed:
    floating IPs ({id: FloatingInfo or None} before and after) and switches ({session: session_part}): a floating
    IP whose zone moved (another domain arrived on its switch) too."""
    out = {}
    for fid in set(old_f) | set(new_f):
        before, after = old_f.get(fid), new_f.get(fid)
        if before != after:
            out[Owner("fip", fid)] = {f.session for f in (before, after) if f}
    empty = (set(), {}, {}, {})
    for session in set(old_s) | set(new_s):
        (ups_a, pat_a, gw_a, zones_a), (ups_b, pat_b, gw_b, zones_b) = old_s.get(session, empty), \
            new_s.get(session, empty)
        for fid in set(zones_a) & set(zones_b):
            if zones_a[fid] != zones_b[fid]:
                out.setdefault(Owner("fip", fid), set()).add(session)
        nets = {n for n, _, _ in ups_a ^ ups_b} | {n for n in set(gw_a) | set(gw_b) if gw_a.get(n) != gw_b.get(n)}
        out.update({Owner("uplink", f"{session}|{n}"): {session} for n in nets})
        out.update({Owner("pat", f"{session}|{n}"): {session} for n in set(pat_a) | set(pat_b)
                    if pat_a.get(n) != pat_b.get(n)})
    return out


def reached(old, new) -> dict[Owner, set[str]]:
    """Owners whose inputs differ between two ExternalViews, and the switches they are or were on."""
    sessions = set(old.by_session) | set(new.by_session) | set(old.pat_by_session) | set(new.pat_by_session) | \
        set(old.gateways) | set(new.gateways)
    return reached_parts(old.floating, new.floating, {s: session_part(old, s) for s in sessions},
                         {s: session_part(new, s) for s in sessions})


# ---------------------------------------------------------------------------------------- compilers

def _to_uplink(vlan, ofport):
    tag = [("push_vlan",), ("set", "vlan_vid", vlan | OFPVID_PRESENT)] if vlan else []
    return tag + [("output", ofport)]


def _uplink(view, sw, owner):
    _, _, net_id = owner.id.partition("|")
    flows = []
    for n, ofport, vlan in sorted(view.external.uplinks_on(sw.session), key=str):
        if n != net_id:
            continue
        match = {"in_port": ofport, **({"vlan_vid": vlan | OFPVID_PRESENT} if vlan else {})}
        flows.append(flow(p.CLASSIFY, 100, match, ([("pop_vlan",)] if vlan else []) + [("goto", p.EXTERNAL_IN)],
                          owner))
        need = view.external.gateways.get(sw.session, {}).get(net_id)
        if need is not None and need.uplink_ofport == ofport:  # the gateway's ARP answers, to the controller
            flows.append(flow(p.EXTERNAL_IN, 100, {"in_port": ofport, "eth_type": ETH_ARP, "arp_op": 2,
                                                   "arp_spa": need.gateway_ip}, punt("other"), owner))
    return flows, ()


def _floating(view, sw, owner):
    """A floating IP on the VRS of its VM, translated by conntrack NAT in its domain's zone there. What is routed
    to it in its domain from the uplink or over the L3 VNI (EVPN peers) goes through the zone to
    ``external_dnat``, where a new connection is committed with the VM's address as destination (the flow counts
    connections opened inbound); what the VM sends to its gateway goes through the zone first
    (``external_nat``), so the replies of those connections leave with the floating IP whichever way the domain
    routes them; its new connections to destinations the domain has no route for are committed with the floating
    IP as source on their way out of the uplink (the flow counts connections opened outbound)."""
    f = view.external.floating[owner.id]
    zone = view.external.zone_of(f)
    back = [("push_vlan",), ("set", "vlan_vid", f.vlan | OFPVID_PRESENT)] if f.vlan else []
    deliver = [("set", "eth_src", f.domain_mac), ("set", "eth_dst", f.vm_mac), ("dec_ttl",),
               ("set", p.REG_L2, f.l2_vni), ("set", p.REG_OUT, f.vport_key), ("goto", p.EGRESS_ACL)]
    to_fip = {"reg4": f.l3_vni, "eth_type": ETH_IP, "ipv4_dst": f.address}
    flows = [
        _arp_answer(f.uplink_ofport, f.address, f.mac, back, owner),
        flow(p.EXTERNAL_IN, 100, {"in_port": f.uplink_ofport, "eth_type": ETH_IP, "ipv4_dst": f.address},
             [("set", p.REG_L3, f.l3_vni), ("goto", p.L3_ROUTING)], owner),
        # from the uplink or a tunnel only (reg6 0): the domain's own VMs reach it through the external network
        flow(p.L3_ROUTING, HOST_ROUTE, {"reg6": 0, **to_fip}, [("ct_nat", zone, p.EXTERNAL_DNAT, False, None)],
             owner),
        flow(p.EXTERNAL_DNAT, OPENS, {"ct_state": CT_NEW, **to_fip},
             [("ct_nat", zone, None, True, ("dst", f.vm_ip)), ("set", "ipv4_dst", f.vm_ip), *deliver], owner),
        flow(p.EXTERNAL_DNAT, KNOWN, {"reg4": f.l3_vni, "eth_type": ETH_IP, "ipv4_dst": f.vm_ip}, deliver, owner),
        flow(p.L2_LOOKUP, FROM_VPORT, {"reg6": f.vport_key, "eth_dst": f.domain_mac, "eth_type": ETH_IP},
             [("ct_nat", zone, p.EXTERNAL_NAT, False, None)], owner),
        flow(p.EXTERNAL_NAT, FROM_VPORT, {"reg6": f.vport_key, "eth_type": ETH_IP}, [("goto", p.L3_ROUTING)], owner),
    ]
    if f.gateway_mac:
        out = [("set", "eth_src", f.mac), ("set", "eth_dst", f.gateway_mac), ("dec_ttl",),
               *_to_uplink(f.vlan, f.uplink_ofport)]
        for src in (f.vm_ip, f.address):
            flows += [flow(p.L3_ROUTING, OUTBOUND + 1, {"reg4": f.l3_vni, "eth_type": ETH_IP, "ipv4_src": src,
                                                        "ipv4_dst": _network(cidr)}, [], owner) for cidr in f.inside]
        flows += [
            flow(p.L3_ROUTING, OUTBOUND, {"reg4": f.l3_vni, "eth_type": ETH_IP, "ipv4_src": f.vm_ip},
                 [("ct_nat", zone, None, True, f.address), ("set", "ipv4_src", f.address), *out], owner),
            flow(p.L3_ROUTING, OUTBOUND, {"reg4": f.l3_vni, "eth_type": ETH_IP, "ipv4_src": f.address}, out, owner),
        ]
    return flows, ()


def _translation(view, sw, owner):
    """Port address translation behind the hypervisor's address, in ``PAT_ZONE``: what the domains send to their
    gateway goes through the zone first (``external_nat``: packets of known connections already translated); a new
    connection to a destination the domain has no route for is committed with nat(src=address) on its way out
    (the flow, one per domain, counts connections opened); IP to the address goes through the zone to
    ``external_nat``, where replies are routed in the domain their inside address is in. ARP for the address
    answered. Nothing comes in that did not go out first."""
    t: PatInfo = view.external.pat[tuple(owner.id.split("|", 1))]
    back = [("push_vlan",), ("set", "vlan_vid", t.vlan | OFPVID_PRESENT)] if t.vlan else []
    out = [("set", "eth_src", t.mac), ("set", "eth_dst", t.gateway_mac), ("dec_ttl",),
           *_to_uplink(t.vlan, t.uplink_ofport)]
    flows = [
        _arp_answer(t.uplink_ofport, t.address, t.mac, back, owner),
        flow(p.EXTERNAL_IN, 90, {"in_port": t.uplink_ofport, "eth_type": ETH_IP, "ipv4_dst": t.address},
             [("ct_nat", PAT_ZONE, p.EXTERNAL_NAT, False, None)], owner),
    ]
    if t.gateway_mac is None:  # not resolved yet (openflow/gateway_arp.py): nothing goes out
        return flows, ()
    for vni, cidrs, gateway_mac, _ in t.domains:
        flows += [
            flow(p.L2_LOOKUP, FROM_DOMAIN, {"reg0": NOT_FROM_TUNNEL, "reg4": vni, "eth_dst": gateway_mac,
                                            "eth_type": ETH_IP}, [("ct_nat", PAT_ZONE, p.EXTERNAL_NAT, False, None)],
                 owner),
            flow(p.EXTERNAL_NAT, FROM_DOMAIN, {"reg4": vni, "eth_type": ETH_IP}, [("goto", p.L3_ROUTING)], owner),
            flow(p.L3_ROUTING, TRANSLATED + 2, {"reg4": vni, "eth_type": ETH_IP, "ipv4_src": t.address}, out, owner),
            flow(p.L3_ROUTING, TRANSLATED, {"reg4": vni, "eth_type": ETH_IP},
                 [("ct_nat", PAT_ZONE, None, True, t.address), ("set", "ipv4_src", t.address), *out], owner),
        ]
        for cidr in cidrs:
            for state in (CT_ESTABLISHED, CT_RELATED):  # from the uplink: reg4 is 0 until set here
                flows.append(flow(p.EXTERNAL_NAT, 100, {"reg4": 0, "ct_state": state, "eth_type": ETH_IP,
                                                        "ipv4_dst": _network(cidr)},
                                  [("set", p.REG_L3, vni), ("goto", p.L3_ROUTING)], owner))
            flows.append(flow(p.L3_ROUTING, TRANSLATED + 1, {"reg4": vni, "eth_type": ETH_IP,
                                                             "ipv4_dst": _network(cidr)}, [], owner))
    return flows, ()


def _arp_answer(ofport, address, mac, back, owner):
    return flow(p.EXTERNAL_IN, 100, {"in_port": ofport, "eth_type": ETH_ARP, "arp_op": 1, "arp_tpa": address}, [
        ("move", "eth_src", "eth_dst"), ("set", "eth_src", mac), ("set", "arp_op", 2),
        ("move", "arp_sha", "arp_tha"), ("move", "arp_spa", "arp_tpa"), ("set", "arp_sha", mac),
        ("set", "arp_spa", address), *back, ("output", "in_port")], owner)


def _network(cidr):
    net = ipaddress.IPv4Network(cidr)
    return str(net.network_address), str(net.netmask)


COMPILERS = {"uplink": _uplink, "fip": _floating, "pat": _translation}


class Garp(NamedTuple):
    """A gratuitous ARP to send to a switch (controller/garps.py): its actions and frame, and what is asked again
    before each send (openflow/gateway_garp.py ``still_due``): the vport endpoint it is for (None: out of an uplink)
    or the floating IP it announces out of an uplink (None: to a VM)."""

    actions: list
    frame: bytes
    vport: object = None
    fip: FloatingInfo | None = None


def garp_frame(info: FloatingInfo) -> bytes:
    """A gratuitous ARP from the floating IP's MAC: the external network's switches and gateway learn where it
    is now."""
    return garp(info.mac, info.address)


def garp(mac: str, address: str) -> bytes:
    """A gratuitous ARP (broadcast request, sender = target = ``address``) from ``mac``."""
    raw = bytes.fromhex(mac.replace(":", ""))
    ip = ipaddress.IPv4Address(address).packed
    arp = (b"\x00\x01\x08\x00\x06\x04\x00\x01" + raw + ip + b"\x00" * 6 + ip)
    return b"\xff" * 6 + raw + b"\x08\x06" + arp + b"\x00" * 18


def garp_actions(info: FloatingInfo) -> list:
    return _to_uplink(info.vlan, info.uplink_ofport)


def fip_garp(info: FloatingInfo) -> Garp:
    """The gratuitous ARP announcing floating IP ``info`` out of its uplink; sent while ``still_active``."""
    return Garp(garp_actions(info), garp_frame(info), fip=info)


def still_active(view, info: FloatingInfo) -> bool:
    """Whether floating IP ``info`` is still active where it was announced from (its switch, uplink and VLAN, with
    its address and MAC): a batch lasts 3.5 s, and its VM may have left or moved meanwhile; an announcement from the
    old place then would point the external network's switches back at it."""
    now = view.external.floating.get(info.id)
    return now is info or now is not None and _where(now) + (now.address, now.mac) == _where(info) + (info.address,
                                                                                                      info.mac)


class Announcer:
    """Which floating IPs were announced where: a floating IP that becomes active on a VRS (attached, moved to
    another vport, or its VM migrated) is announced there once by gratuitous ARP."""

    def __init__(self):
        self.announced: dict[str, tuple] = {}  # floating IP id -> (session, uplink ofport, vlan) announced

    def due(self, view) -> list[FloatingInfo]:
        """The floating IPs to announce now; forgets the ones no longer active."""
        active = view.external.floating
        out = [f for fid, f in sorted(active.items()) if self.announced.get(fid) != _where(f)]
        self.announced = {fid: self.announced[fid] for fid in active if fid in self.announced}
        return out

    def sent(self, info: FloatingInfo) -> None:
        self.announced[info.id] = _where(info)


def _where(info: FloatingInfo) -> tuple:
    return info.session, info.uplink_ofport, info.vlan
