"""Walk a packet through a switch's compiled pipeline, as Open vSwitch would (like ``ovn-trace``).

``walk(flows, groups, packet, tunnel_ofport)`` looks the packet up table by table in Canopy's desired flows
(openflow/compiler.py output, tables of openflow/pipeline.py): per table the highest-priority matching flow,
its actions applied in order, ``goto``/``resubmit``/``group`` followed (a group's buckets each get a copy).
It records every matched flow (table, priority, owner, actions) and how each copy of the packet ends:

- ``output``: out of a local port (``port``), or ``in_port`` (back where it came from, asked for explicitly);
- ``tunnel``: out of the VXLAN port, with ``tun_dst`` (the remote VTEP) and ``tun_id`` (the VNI);
- ``controller``: punted to Canopy (DHCP);
- ``drop``: with the reason (a table's default, an explicit drop, an empty flood group, output to the
  ingress port, which OpenFlow suppresses).

Conntrack: ``ct(table=N)`` continues in table N with ``ct_state`` and ``ct_mark`` as the packet gives them
(default: a new connection, ``+trk+new``, mark 0), so a trace shows what the ACLs decide for the first packet
of a connection; a commit changes nothing in the trace. Conjunctive matches are resolved as OVS does.

A packet is a dict of OXM field names (those openflow/flows.py uses: ``in_port``, ``tunnel_id``,
``vlan_vid``, ``eth_src``... plus ``tun_ipv4_src``, ``tun_ipv4_dst`` and ``ttl``); registers default to 0.
``parse_packet`` reads the ``ovs-appctl ofproto/trace`` syntax (``in_port=1,dl_dst=..,ip,nw_dst=..``)
or a dict, ``render_packet`` writes it back. Nothing here depends on Ryu or on State.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from itertools import groupby

from openflow import pipeline as p
from openflow.flows import OFPVID_PRESENT, render_actions

GROUP, BUCKET = -1, -2  # Step.table of a group applied, and of each of its buckets
MAX_DEPTH = 64  # resubmits and groups nested deeper than this are a loop
CT_NEW = 0x21  # +trk+new: what conntrack says of a packet the trace does not say otherwise
RESUBMIT_ONLY = (p.INGRESS_ACL_RULES, p.EGRESS_ACL_RULES)  # flows there set registers and return
ETH_TYPES = {"ip": 0x0800, "arp": 0x0806}
IP_PROTOS = {"icmp": 1, "tcp": 6, "udp": 17}

# Why a table's default (priority 0, owned by the switch) drops: what the packet did not match.
MISS_REASONS = {
    p.CLASSIFY: "unknown ingress: no bound vport on this port (and VLAN), and no subnet or domain with this VNI "
                "on this switch",
    p.PORT_SECURITY: "port security: the source MAC or IP is not the vport's own",
    p.SERVICES: "services: no answer for this packet",
    p.L2_LOOKUP: "l2_lookup: destination MAC unknown in this subnet",
    p.L3_ROUTING: "l3_routing: no route to the destination in this domain",
    p.EGRESS: "egress: no port for this egress vport key on this switch",
}


class PacketError(ValueError):
    """A packet description that cannot be traced; ``field`` names the culprit."""

    def __init__(self, field_name, reason):
        self.field, self.reason = field_name, reason
        super().__init__(f"{field_name}: {reason}")


@dataclass
class Step:
    """One matched flow (or an applied group) on the packet's path; ``depth`` is the nesting of resubmits and
    group buckets (a goto_table stays at its depth, as ofproto/trace prints it)."""

    depth: int
    table: int
    priority: int | None
    owner: tuple[str, str] | None  # (kind, id)
    match: str
    actions: str
    cookie: int | None = None
    note: str = ""

    @property
    def table_name(self) -> str:
        if self.table in (GROUP, BUCKET):
            return "group" if self.table == GROUP else "bucket"
        return p.BY_ID[self.table].name if self.table in p.BY_ID else str(self.table)

    def to_json(self) -> dict:
        return {"depth": self.depth, "table": self.table if self.table >= 0 else None,
                "table_name": self.table_name, "priority": self.priority,
                "owner": {"kind": self.owner[0], "id": self.owner[1]} if self.owner else None,
                "cookie": f"{self.cookie:#x}" if self.cookie is not None else None, "match": self.match,
                "actions": self.actions, "note": self.note}


@dataclass
class Exit:
    """Where one copy of the packet leaves the switch (or why it does not)."""

    kind: str  # output | tunnel | controller | drop
    packet: dict
    port: int | str | None = None  # the OpenFlow port it leaves by ("in_port" when sent back explicitly)
    reason: str = ""  # for a drop
    step: int | None = None  # index in Trace.steps of the flow that decided it

    @property
    def tun_dst(self):
        return self.packet.get("tun_ipv4_dst") if self.kind == "tunnel" else None

    @property
    def tun_id(self):
        return self.packet.get("tunnel_id") if self.kind == "tunnel" else None

    @property
    def vlan(self):
        vid = self.packet.get("vlan_vid")
        return vid & 0xFFF if isinstance(vid, int) and vid & OFPVID_PRESENT else None

    def to_json(self) -> dict:
        out = {"kind": self.kind, "port": self.port, "reason": self.reason or None, "step": self.step,
               "vlan": self.vlan, "packet": render_packet(self.packet)}
        if self.kind == "tunnel":
            out.update(tun_dst=self.tun_dst, tun_id=self.tun_id)
        return out


@dataclass
class Trace:
    packet: dict
    steps: list[Step] = field(default_factory=list)
    exits: list[Exit] = field(default_factory=list)
    ambiguous: list[str] = field(default_factory=list)  # tables where two flows matched at the top priority

    def outputs(self) -> list[tuple]:
        """(port, packet as sent) of every copy that leaves (tunnel, local port or in_port by number)."""
        return [(e.port, e.packet) for e in self.exits if e.kind in ("output", "tunnel")]

    def drops(self) -> list[Exit]:
        return [e for e in self.exits if e.kind == "drop"]

    def to_json(self) -> dict:
        return {"packet": render_packet(self.packet), "steps": [s.to_json() for s in self.steps],
                "exits": [e.to_json() for e in self.exits], "ambiguous": self.ambiguous}


# ------------------------------------------------------------------------------------------- walking

def walk(flows, groups, packet: dict, tunnel_ofport: int | None = None) -> Trace:
    """Trace ``packet`` from table 0 through ``flows`` (an iterable of Flow) and ``groups`` ({id: Group})."""
    by_table: dict[int, list] = {}
    for f in flows:
        by_table.setdefault(f.table, []).append(f)
    for table_flows in by_table.values():
        table_flows.sort(key=lambda f: (-f.priority, f.cookie))
    walker = _Walker(by_table, groups, tunnel_ofport, Trace(dict(packet)))
    walker.lookup(0, dict(packet), 0)
    return walker.trace


@dataclass
class _Walker:
    by_table: dict
    groups: dict
    tunnel_ofport: int | None
    trace: Trace

    def lookup(self, table, packet, depth):
        if depth > MAX_DEPTH:
            self._exit("drop", packet, reason=f"more than {MAX_DEPTH} nested resubmits: a loop")
            return
        best = self._best(table, packet)
        if best is None and table in RESUBMIT_ONLY:
            return
        if best is None:
            self.trace.steps.append(Step(depth, table, None, None, "", "", note="no flow matched"))
            self._exit("drop", packet, reason=MISS_REASONS.get(table, f"no flow matched in table {table}"))
            return
        self.trace.steps.append(Step(depth, table, best.priority, (best.owner.kind, best.owner.id),
                                     _render_match(best), render_actions(best.actions), best.cookie))
        if not any(a[0] in ("output", "goto", "resubmit", "group", "ct", "ct_nat") for a in best.actions) and \
                best.table not in RESUBMIT_ONLY:
            self._exit("drop", packet, reason=_drop_reason(best))
            return
        self.apply(best.actions, packet, depth)

    def _best(self, table, packet):
        """The flow OVS would pick: the highest-priority match; at a priority whose matches are clauses of
        conjunctive matches, the conj_id flow of a conjunction whose every clause matched (else lower)."""
        for priority, level in groupby(self.by_table.get(table, ()), key=lambda f: f.priority):  # sorted
            level = list(level)
            found = [f for f in level if "conj_id" not in dict(f.match) and matches(f, packet)]
            clauses = {}
            for f in found:
                for a in f.actions:
                    if a[0] == "conjunction":
                        clauses.setdefault((a[1], a[3]), set()).add(a[2])
            plain = [f for f in found if not any(a[0] == "conjunction" for a in f.actions)]
            done = sorted(cid for (cid, n), seen in clauses.items() if len(seen) == n)
            for cid in done:
                conj = [f for f in level if dict(f.match).get("conj_id") == cid and matches(f, {**packet, "conj_id": cid})]
                plain += conj
            if len(plain) > 1:
                self.trace.ambiguous.append(f"table {table}: {plain[0]} and {plain[1]}")
            if plain:
                return plain[0]
        return None

    def apply(self, actions, packet, depth):
        for action in actions:
            kind = action[0]
            if kind == "set":
                packet["in_port" if action[1] == "in_port_nxm" else action[1]] = action[2]
            elif kind == "move":
                packet[action[2]] = packet.get(action[1], 0)
            elif kind == "dec_ttl":
                packet["ttl"] = packet.get("ttl", 64) - 1
            elif kind == "pop_vlan":
                packet.pop("vlan_vid", None)
            elif kind == "push_vlan":
                packet["vlan_vid"] = OFPVID_PRESENT
            elif kind == "output":
                self._output(action[1], packet)
            elif kind == "goto":
                self.lookup(action[1], packet, depth)
            elif kind == "resubmit":
                self.lookup(action[1], packet, depth + 1)  # as in OVS, changes made there persist
            elif kind == "group":
                self._group(action[1], packet, depth)
            elif kind in ("ct", "ct_nat"):  # ct_nat: traced as a new connection, addresses as they are
                packet.setdefault("ct_state", CT_NEW)
                packet.setdefault("ct_mark", 0)
                if action[2] is not None:  # recirculation: the rest of this action list is not traced
                    self.lookup(action[2], packet, depth)
            elif kind == "conjunction" or kind == "meter":  # a meter: traced as a packet within its rate
                pass
            else:
                raise ValueError(f"unknown action {action!r}")

    def _group(self, group_id, packet, depth):
        group = self.groups.get(group_id)
        buckets = group.buckets if group is not None else ()
        self.trace.steps.append(Step(depth, GROUP, None, (group.owner.kind, group.owner.id) if group else None,
                                     f"group {group_id}", f"{len(buckets)} bucket(s)",
                                     note="" if group else "no such group"))
        if not buckets:
            why = "flood group has no other port or VTEP in this subnet" if group else "group is not installed"
            self._exit("drop", packet, reason=f"group {group_id}: {why}")
        for number, bucket in enumerate(buckets):
            self.trace.steps.append(Step(depth + 1, BUCKET, None, (group.owner.kind, group.owner.id),
                                         f"bucket {number}", render_actions(bucket)))
            self.apply(bucket, dict(packet), depth + 1)

    def _output(self, port, packet):
        if port == "controller":
            self._exit("controller", packet, port="controller")
            return
        if port != "in_port" and port == packet.get("in_port"):
            self._exit("drop", packet, reason=f"output to the ingress port {port} is suppressed (OpenFlow sends a "
                                              "packet back only when asked with in_port)")
            return
        actual = packet.get("in_port") if port == "in_port" else port
        kind = "tunnel" if self.tunnel_ofport is not None and actual == self.tunnel_ofport else "output"
        self._exit(kind, packet, port=port)

    def _exit(self, kind, packet, port=None, reason=""):
        step = len(self.trace.steps) - 1 if self.trace.steps else None
        self.trace.exits.append(Exit(kind, dict(packet), port, reason, step))


def _drop_reason(flow) -> str:
    if flow.priority == 0 and flow.owner.kind == "switch":
        return MISS_REASONS.get(flow.table, f"table {p.BY_ID[flow.table].name}: default drop")
    if flow.table == p.EGRESS:
        return "egress: a vNIC's packet is never sent back to itself"
    if flow.table == p.L3_ROUTING and flow.owner.kind in ("pat", "fip"):  # openflow/external.py: translations' guard
        return ("l3_routing: an address of one of the domain's own subnets that no endpoint has is never "
                "translated out to the external network")
    if flow.table == p.L3_ROUTING and flow.owner.kind == "domain":  # openflow/compiler.py, under an EVPN prefix
        return "l3_routing: an unknown address of a connected subnet is not sent to a covering EVPN prefix"
    return f"dropped by a flow of {flow.owner.kind} {flow.owner.id} in {p.BY_ID[flow.table].name}"


def _render_match(flow) -> str:
    from openflow.flows import render_match

    return render_match(flow.match) or "(any)"


def _as_int(value):
    """A match or packet value as an int: MACs, IPv4 addresses and ints alike (for masked matches)."""
    if isinstance(value, int):
        return value
    if value.count(":") == 5:
        return int(value.replace(":", ""), 16)
    return int(ipaddress.IPv4Address(value))


def matches(flow, packet) -> bool:
    """Whether the packet matches every field of the flow (registers are 0 unless set)."""
    for name, want in flow.match:
        have = packet.get(name, 0 if name.startswith("reg") else None)
        if have is None:
            return False
        if isinstance(want, tuple):
            value, mask = (_as_int(w) for w in want)
            if _as_int(have) & mask != value & mask:
                return False
        elif have != want and not (isinstance(have, str) and isinstance(want, str) and have.lower() == want.lower()):
            return False
    return True


# -------------------------------------------------------------------------------- packet descriptions

# ofproto/trace (ovs-fields) names -> the OXM names flows use; the OXM names are accepted as they are.
_ALIASES = {"dl_src": "eth_src", "dl_dst": "eth_dst", "dl_type": "eth_type", "nw_src": "ipv4_src",
            "nw_dst": "ipv4_dst", "ip_src": "ipv4_src", "ip_dst": "ipv4_dst", "nw_proto": "ip_proto",
            "nw_ttl": "ttl", "ip_ttl": "ttl", "tun_id": "tunnel_id", "vni": "tunnel_id", "tun_src": "tun_ipv4_src",
            "tun_dst": "tun_ipv4_dst", "icmp_type": "icmpv4_type", "dl_vlan": "vlan", "tp_src": "tp_src",
            "tp_dst": "tp_dst"}
_MAC_FIELDS = {"eth_src", "eth_dst", "arp_sha", "arp_tha"}
_IP_FIELDS = {"ipv4_src", "ipv4_dst", "arp_spa", "arp_tpa", "tun_ipv4_src", "tun_ipv4_dst"}
_INT_FIELDS = {"in_port": 0xFFFFFFFF, "eth_type": 0xFFFF, "ip_proto": 0xFF, "ttl": 0xFF, "tunnel_id": 0xFFFFFF,
               "vlan": 4095, "arp_op": 0xFFFF, "udp_src": 0xFFFF, "udp_dst": 0xFFFF, "tcp_src": 0xFFFF,
               "tcp_dst": 0xFFFF, "tp_src": 0xFFFF, "tp_dst": 0xFFFF, "icmpv4_type": 0xFF, "icmpv4_code": 0xFF,
               "reg0": 0xFFFFFFFF, "reg4": 0xFFFFFFFF, "reg5": 0xFFFFFFFF, "reg6": 0xFFFFFFFF, "reg7": 0xFFFFFFFF}
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def parse_packet(description) -> dict:
    """A packet from ``ofproto/trace`` text (``in_port=1,dl_src=..,ip,nw_dst=..``) or a dict of fields.
    Protocol keywords (ip, arp, icmp, udp, tcp) set eth_type and ip_proto; ``dl_vlan``/``vlan`` is a VLAN id;
    ``tp_src``/``tp_dst`` become UDP or TCP ports by ip_proto. Raises PacketError naming the field."""
    if isinstance(description, str):
        items = []
        for part in (s.strip() for s in description.split(",")):
            if not part:
                continue
            name, eq, value = part.partition("=")
            items.append((name.strip(), value.strip() if eq else None))
    elif isinstance(description, dict):
        items = [(str(k), v) for k, v in description.items()]
    else:
        raise PacketError("packet", "must be a string in the ofproto/trace syntax or an object of fields")
    packet: dict = {}
    for raw_name, value in items:
        name = _ALIASES.get(raw_name.lower(), raw_name.lower())
        if value is None:
            _keyword(packet, raw_name)
            continue
        packet[name] = _field_value(raw_name, name, value)
    _finish(packet)
    return packet


def _keyword(packet, word):
    key = word.lower()
    if key in ETH_TYPES:
        packet["eth_type"] = ETH_TYPES[key]
    elif key in IP_PROTOS:
        packet["eth_type"], packet["ip_proto"] = ETH_TYPES["ip"], IP_PROTOS[key]
    else:
        raise PacketError(word, "unknown protocol keyword or missing '=value' (use ip, arp, icmp, udp, tcp)")


def _field_value(raw_name, name, value):
    text = str(value).strip().lower() if not isinstance(value, int) or isinstance(value, bool) else value
    if name in _MAC_FIELDS:
        if not isinstance(text, str) or not _MAC.match(text):
            raise PacketError(raw_name, f"{value!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
        return text
    if name in _IP_FIELDS:
        try:
            return str(ipaddress.IPv4Address(text))
        except (ipaddress.AddressValueError, ValueError):
            raise PacketError(raw_name, f"{value!r} is not an IPv4 address") from None
    if name in _INT_FIELDS:
        try:
            number = text if isinstance(text, int) else int(text, 0)
        except ValueError:
            raise PacketError(raw_name, f"{value!r} is not a number") from None
        if isinstance(number, bool) or not 0 <= number <= _INT_FIELDS[name]:
            raise PacketError(raw_name, f"{value!r} is out of range 0..{_INT_FIELDS[name]}")
        return number
    raise PacketError(raw_name, "unknown field; use ofproto/trace names (in_port, dl_src, dl_dst, dl_vlan, tun_id, "
                                "tun_src, nw_src, nw_dst, nw_ttl, tp_src, tp_dst, icmp_type, arp_op, arp_spa, arp_tpa, "
                                "arp_sha, arp_tha) or keywords ip, arp, icmp, udp, tcp")


def _finish(packet):
    if "vlan" in packet:
        packet["vlan_vid"] = packet.pop("vlan") | OFPVID_PRESENT
    proto = packet.get("ip_proto")
    for side in ("src", "dst"):
        if f"tp_{side}" in packet:
            port = packet.pop(f"tp_{side}")
            if proto not in (6, 17):
                raise PacketError(f"tp_{side}", "needs udp or tcp (nw_proto=17 or 6)")
            packet[f"{'udp' if proto == 17 else 'tcp'}_{side}"] = port
    needs_ip = {"ipv4_src", "ipv4_dst", "ip_proto", "ttl"} & set(packet)
    if needs_ip and packet.setdefault("eth_type", ETH_TYPES["ip"]) != ETH_TYPES["ip"]:
        raise PacketError(sorted(needs_ip)[0], "an IPv4 field needs an IPv4 packet (ip, dl_type=0x0800)")
    arp = {"arp_op", "arp_spa", "arp_tpa", "arp_sha", "arp_tha"} & set(packet)
    if arp and packet.setdefault("eth_type", ETH_TYPES["arp"]) != ETH_TYPES["arp"]:
        raise PacketError(sorted(arp)[0], "an ARP field needs an ARP packet (arp, dl_type=0x0806)")
    if "ttl" not in packet and packet.get("eth_type") == ETH_TYPES["ip"]:
        packet["ttl"] = 64


_RENDER = (("in_port", "in_port"), ("tunnel_id", "tun_id"), ("tun_ipv4_src", "tun_src"),
           ("tun_ipv4_dst", "tun_dst"), ("vlan_vid", "dl_vlan"), ("eth_src", "dl_src"), ("eth_dst", "dl_dst"),
           ("eth_type", "dl_type"), ("arp_op", "arp_op"), ("arp_spa", "arp_spa"), ("arp_tpa", "arp_tpa"),
           ("arp_sha", "arp_sha"), ("arp_tha", "arp_tha"), ("ip_proto", "nw_proto"), ("ipv4_src", "nw_src"),
           ("ipv4_dst", "nw_dst"), ("ttl", "nw_ttl"), ("udp_src", "udp_src"), ("udp_dst", "udp_dst"),
           ("tcp_src", "tcp_src"), ("tcp_dst", "tcp_dst"), ("icmpv4_type", "icmp_type"))


def render_packet(packet: dict, registers: bool = False) -> str:
    """The packet in the ``ovs-appctl ofproto/trace`` flow syntax (registers only when asked)."""
    parts = []
    keyword = _keyword_of(packet)
    if keyword:
        parts.append(keyword)
    for name, ofctl in _RENDER:
        value = packet.get(name)
        if value is None or (name == "in_port" and value == 0):
            continue
        if keyword and (name == "eth_type" or (name == "ip_proto" and keyword != "ip")):
            continue  # said by the keyword (ofproto/trace wants udp, not dl_type+nw_proto, before tp_src)
        if name == "vlan_vid":
            if not value & OFPVID_PRESENT:
                continue
            value = value & 0xFFF
        elif name in ("tunnel_id", "eth_type"):
            value = hex(value)
        elif name == "ttl" and packet.get("eth_type") != ETH_TYPES["ip"]:
            continue
        parts.append(f"{ofctl}={value}")
    if registers:
        parts += [f"{r}={packet[r]:#x}" for r in ("reg0", "reg4", "reg5", "reg6", "reg7") if packet.get(r)]
    return ",".join(parts)


def _keyword_of(packet):
    kind = packet.get("eth_type")
    if kind == ETH_TYPES["arp"]:
        return "arp"
    if kind != ETH_TYPES["ip"]:
        return None
    return next((word for word, proto in IP_PROTOS.items() if packet.get("ip_proto") == proto), "ip")
