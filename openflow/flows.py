"""Flows and groups as plain, hashable values, and the cookies that name their owners.

The compiler produces ``Flow`` and ``Group`` values; the reconciler diffs sets of them and only then
encodes the difference as OpenFlow messages. Nothing here depends on Ryu.

A flow's cookie says who owns it and what it is::

    bits 63-56  0xCA          Canopy's mark: flows without it are not Canopy's and are never touched
    bits 55-52  owner kind    1 switch, 2 subnet, 3 domain, 4 vport, 5 MAC learned by a hardware VTEP,
                              6 MAC behind a remote EVPN VTEP, 7 ACL rules, 8 a vport's ACL chain,
                              9 a switch's shared ACL verdict flows, 10 an uplink to an external network,
                              11 a floating IP, 12 a VRS's port address translation to one external network,
                              13 a local vport's metadata steering, 14 a VRS's metadata agent port,
                              15 a VRS's live migration standby ports (their VM's first packet to the controller)
    bits 51-32  owner hint    20 bits of a hash of the owner id (for reading dump-flows)
    bits 31-0   content hash  of (table, priority, match, actions)

So (table, priority, cookie) identifies a flow *with* its actions: the reconciler reads back only
cookies, and a changed flow is a different cookie (added first, then the old one deleted strictly
with a cookie mask, which is hitless even without bundles).

Match fields use Ryu's OXM names (``eth_dst``, ``ipv4_dst``, ``reg5``, ``tunnel_id``...). A value is an
int or a string; a masked value is a ``(value, mask)`` tuple. Actions are tuples:

    ("output", port | "in_port" | "controller")     ("set", field, value)
    ("move", src_field, dst_field)                  ("push_vlan",)  ("pop_vlan",)  ("dec_ttl",)
    ("resubmit", table)   ("group", group_id)      ("goto", table)  -- goto only as the last action
    ("ct", zone_reg, table | None, commit, mark_reg | None)  conntrack in the zone held in zone_reg[0..15]
                          (then continue in table, if any; commit: with ct_mark loaded from mark_reg)
    ("ct_nat", zone, table | None, commit, nat)  conntrack in an immediate zone with NAT: nat an IP (source NAT
                          to it, with commit), ("dst", IP) (destination NAT to it, with commit), or None: plain nat
                          (translate the packets of connections already committed with NAT, both ways)
    ("conjunction", id, clause, n_clauses)          one clause (1-based) of a conjunctive match
    ("meter", meter_id)   only as the first action: the packets go through that meter first (openflow/meters.py)
An empty action tuple drops.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import NamedTuple

MARK = 0xCA
MARK_SHIFT = 56
MARK_MASK = 0xFF << MARK_SHIFT
OWNER_KINDS = {"switch": 1, "subnet": 2, "domain": 3, "vport": 4, "vtep_mac": 5, "evpn": 6,
               "acl": 7, "acl_port": 8, "acl_switch": 9,  # acl*: openflow/acl.py
               "uplink": 10, "fip": 11, "pat": 12,  # openflow/external.py
               "metadata": 13, "metadata_agent": 14,  # openflow/metadata.py
               "activation": 15}  # openflow/activation.py
OWNER_NAMES = {v: k for k, v in OWNER_KINDS.items()}
OFPVID_PRESENT = 0x1000

# Canonical order of match fields, so equal flows render and hash equally.
FIELD_ORDER = ("in_port", "tunnel_id", "vlan_vid", "reg0", "reg1", "reg2", "reg3", "reg4", "reg5", "reg6", "reg7",
               "conj_id", "ct_state", "ct_zone", "ct_mark", "eth_src", "eth_dst", "eth_type", "arp_op", "arp_spa",
               "arp_tpa", "arp_sha", "ip_proto", "ipv4_src", "ipv4_dst", "tcp_src", "tcp_dst", "udp_src", "udp_dst",
               "icmpv4_type", "icmpv4_code")
CT_FLAGS = (("new", 0x01), ("est", 0x02), ("rel", 0x04), ("rpl", 0x08), ("inv", 0x10), ("trk", 0x20))
_RANK = {name: i for i, name in enumerate(FIELD_ORDER)}


class Owner(NamedTuple):
    """Who a flow belongs to. A tuple: owners key every switch's desired state and every diff, and a tuple's
    hash and equality run in C."""

    kind: str  # switch | subnet | domain | vport | vtep_mac | evpn
    id: str

    def hint(self) -> int:
        return zlib.crc32(self.id.encode()) & 0xFFFFF


NO_OWNER = Owner("switch", "")


class Flow:
    """One flow: an immutable value, compared and hashed by (table, priority, match, actions); the owner
    only names it (in its cookie). Lean on purpose: a switch holds tens of thousands and one Flow object is
    shared by every switch that needs the same flow (openflow/compiler.py), so no per-instance dict, the hash
    computed once and the cookie once, on first use; ``_wire`` is its add as encoded after the OpenFlow header by
    openflow.encode.WireEncoder.flow_tail, one slot per version (the same bytes for every switch of that version:
    encoded once, not once per switch)."""

    __slots__ = ("table", "priority", "match", "actions", "owner", "_hash", "_cookie", "_wire")

    def __init__(self, table: int, priority: int, match: tuple, actions: tuple, owner: Owner = NO_OWNER):
        setter = object.__setattr__
        setter(self, "table", table)
        setter(self, "priority", priority)
        setter(self, "match", match)  # ((field, value), ...) in FIELD_ORDER
        setter(self, "actions", actions)  # (action tuple, ...)
        setter(self, "owner", owner)
        setter(self, "_hash", hash((table, priority, match, actions)))
        setter(self, "_cookie", None)
        setter(self, "_wire", None)

    def __setattr__(self, name, value):
        raise AttributeError(f"Flow is immutable (cannot set {name})")

    def __reduce__(self):  # rebuilt (and re-hashed) where it is unpickled: str hashes differ per process
        return Flow, (self.table, self.priority, self.match, self.actions, self.owner)

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        if self is other:
            return True
        if not isinstance(other, Flow):
            return NotImplemented
        return self._hash == other._hash and self.table == other.table and self.priority == other.priority \
            and self.match == other.match and self.actions == other.actions

    def __repr__(self):
        return f"Flow({self.table}, {self.priority}, {self.match!r}, {self.actions!r}, {self.owner!r})"

    @property
    def cookie(self) -> int:
        cookie = self._cookie
        if cookie is None:  # computed once: diffs and encoders ask for it a lot
            cookie = make_cookie(self.owner, self.content_hash())
            object.__setattr__(self, "_cookie", cookie)
        return cookie

    def content_hash(self) -> int:
        return zlib.crc32(repr((self.table, self.priority, self.match, self.actions)).encode())

    @property
    def key(self):
        """What identifies this exact flow on a switch (the cookie read without a second call once computed: every
        full plan keys every flow desired, 800,000 after a restart of 50 switches of 16,000 flows)."""
        cookie = self._cookie
        return (self.table, self.priority, self.cookie if cookie is None else cookie)

    def __str__(self):
        return render_flow(self)


def flow(table, priority, match: dict, actions, owner: Owner) -> Flow:
    """Build a Flow with its match in canonical order. Each place that builds flows names its match fields in one
    order, so the canonical order of a set of names is found once (``_canonical``), not sorted again per flow."""
    names = tuple(match)
    order = _ORDERS.get(names, False)
    if order is False:
        order = _canonical(names)
    items = tuple(match.items()) if order is None else tuple([(name, match[name]) for name in order])
    return Flow(table, priority, items, tuple(actions), owner)


_ORDERS: dict[tuple, tuple | None] = {}  # match field names as given -> canonical order (None: already in it)


def _canonical(names: tuple) -> tuple | None:
    order = tuple(sorted(names, key=_RANK.__getitem__))
    _ORDERS[names] = None if order == names else order
    return _ORDERS[names]


@dataclass(frozen=True)
class Group:
    """An OpenFlow ALL group (head-end replication): every bucket gets a copy."""

    group_id: int
    buckets: tuple  # (actions tuple, ...) in a stable order
    owner: Owner = field(compare=False, hash=False, default=NO_OWNER)


def arp_reply_actions(mac: str, ip: str) -> list[tuple]:
    """Turn an ARP request for ``ip`` into the reply "``ip`` is at ``mac``", addressed to the asker."""
    return [("move", "eth_src", "eth_dst"), ("set", "eth_src", mac), ("set", "arp_op", 2),
            ("move", "arp_sha", "arp_tha"), ("move", "arp_spa", "arp_tpa"), ("set", "arp_sha", mac),
            ("set", "arp_spa", ip)]


def make_cookie(owner: Owner, content: int) -> int:
    return (MARK << MARK_SHIFT) | (OWNER_KINDS[owner.kind] << 52) | (owner.hint() << 32) | (content & 0xFFFFFFFF)


def is_ours(cookie: int) -> bool:
    return (cookie & MARK_MASK) == (MARK << MARK_SHIFT)


def owner_kind_of(cookie: int) -> str | None:
    return OWNER_NAMES.get((cookie >> 52) & 0xF) if is_ours(cookie) else None


# ------------------------------------------------------------------------------- ovs-ofctl text form

_OFCTL_FIELD = {"eth_src": "dl_src", "eth_dst": "dl_dst", "eth_type": "dl_type", "tunnel_id": "tun_id",
                "ipv4_src": "nw_src", "ipv4_dst": "nw_dst", "ip_proto": "nw_proto", "udp_src": "tp_src",
                "udp_dst": "tp_dst", "tcp_src": "tp_src", "tcp_dst": "tp_dst", "icmpv4_type": "icmp_type",
                "icmpv4_code": "icmp_code", "vlan_vid": "dl_vlan",
                "tun_ipv4_dst": "tun_dst"}
_OFCTL_SET = {"tun_ipv4_dst": "tun_dst", "tunnel_id": "tun_id", "icmpv4_type": "icmp_type", "ipv4_src": "ip_src",
             "ipv4_dst": "ip_dst", "in_port_nxm": "in_port"}
_MOVE_NAME = {"eth_src": "NXM_OF_ETH_SRC[]", "eth_dst": "NXM_OF_ETH_DST[]", "arp_sha": "NXM_NX_ARP_SHA[]",
              "arp_tha": "NXM_NX_ARP_THA[]", "arp_spa": "NXM_OF_ARP_SPA[]", "arp_tpa": "NXM_OF_ARP_TPA[]",
              "ipv4_src": "NXM_OF_IP_SRC[]", "ipv4_dst": "NXM_OF_IP_DST[]", "reg6": "NXM_NX_REG6[]",
              "reg7": "NXM_NX_REG7[]", "reg1": "NXM_NX_REG1[]", "reg2": "NXM_NX_REG2[]", "ct_mark": "NXM_NX_CT_MARK[]", "tun_ipv4_src": "NXM_NX_TUN_IPV4_SRC[]",
              "tun_ipv4_dst": "NXM_NX_TUN_IPV4_DST[]"}


def ct_state_text(value, mask) -> str:
    """ct_state (value, mask) in ovs-ofctl's flag syntax: +trk+est-rpl."""
    return "".join(("+" if value & bit else "-") + name for name, bit in CT_FLAGS if mask & bit)


def _value(name, value):
    if name == "ct_state":
        return ct_state_text(*(value if isinstance(value, tuple) else (value, value)))
    if isinstance(value, tuple):
        return f"{_value(name, value[0])}/{_value(name, value[1])}"
    if name == "vlan_vid" and isinstance(value, int):
        return str(value & 0xFFF)
    if isinstance(value, int) and (name.startswith("reg") or name in ("tunnel_id", "eth_type", "ct_mark")):
        return hex(value)
    return str(value)


def render_match(match) -> str:
    return ",".join(f"{_OFCTL_FIELD.get(n, n)}={_value(n, v)}" for n, v in match)


def render_action(action) -> str:
    kind = action[0]
    if kind == "output":
        return {"in_port": "in_port", "controller": "controller"}.get(action[1], f"output:{action[1]}")
    if kind == "set":
        name, value = action[1], action[2]
        if name == "vlan_vid":
            return f"mod_vlan_vid:{value & 0xFFF}"
        return f"set_field:{_value(name, value)}->{_OFCTL_SET.get(name, name)}"
    if kind == "move":
        return f"move:{_MOVE_NAME[action[1]]}->{_MOVE_NAME[action[2]]}"
    if kind == "push_vlan":
        return "push_vlan:0x8100"
    if kind in ("pop_vlan", "dec_ttl"):
        return kind
    if kind == "resubmit":
        return f"resubmit(,{action[1]})"
    if kind == "group":
        return f"group:{action[1]}"
    if kind == "goto":
        return f"goto_table:{action[1]}"
    if kind == "ct":
        _, zone, table, commit, mark = action
        parts = (["commit"] if commit else []) + [f"zone={_MOVE_NAME[zone][:-2]}[0..15]"] + \
            ([f"table={table}"] if table is not None else []) + \
            ([f"exec(move:{_MOVE_NAME[mark]}->NXM_NX_CT_MARK[])"] if mark else [])
        return f"ct({','.join(parts)})"
    if kind == "ct_nat":
        _, zone, table, commit, spec = action
        nat = "nat" if spec is None else f"nat(dst={spec[1]})" if isinstance(spec, tuple) else f"nat(src={spec})"
        parts = (["commit"] if commit else []) + [f"zone={zone}", nat] + \
            ([f"table={table}"] if table is not None else [])
        return f"ct({','.join(parts)})"
    if kind == "meter":
        return f"meter:{action[1]}"
    if kind == "conjunction":
        return f"conjunction({action[1]},{action[2]}/{action[3]})"
    raise ValueError(f"unknown action {action!r}")


def render_actions(actions) -> str:
    return ",".join(render_action(a) for a in actions) or "drop"


def render_flow(f: Flow, with_cookie=True) -> str:
    """The flow in ovs-ofctl add-flow syntax (OpenFlow 1.3)."""
    head = f"cookie={f.cookie:#x}," if with_cookie else ""
    match = render_match(f.match)
    return f"{head}table={f.table},priority={f.priority}{',' + match if match else ''},actions=" \
           f"{render_actions(f.actions)}"


def render_group(g: Group) -> str:
    buckets = ",".join(f"bucket={render_actions(b)}" for b in g.buckets)
    return f"group_id={g.group_id},type=all{',' + buckets if buckets else ''}"
