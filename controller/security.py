"""Security policy as the dataplane needs it: a pure function of the policy (docs/policy.md).

``derive_security(policy)`` -> ``SecurityView``:
- ``acls``: every ACL as an ``AclSpec``: its tag, and its rules in evaluation order with their remotes
  resolved to prefixes (a policy group: the /32 of every member's address, as membership is now; a subnet:
  its CIDR), each with the mark that names it in conntrack;
- ``ports``: for every vport whose IP traffic is policed, a ``PortPolicy``: its ACLs in evaluation order
  (direct ones and those of its policy groups) and what happens when no rule matches. A vport without ACLs
  is policed only when its domain's ``default_acl_action`` is deny.

openflow/acl.py compiles both into flows. ``applied(policy, acl, locations)`` says where an ACL applies.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property

from controller.model import MAX_ACL_TAG

PROTOCOLS = {"any": None, "icmp": 1, "tcp": 6, "udp": 17}
DEFAULT_PRIORITY = 1000  # of a rule without one, and of an ACL (model default)
MARK_BITS = 0x3FFFFFFF  # a rule's mark: 30 bits (openflow/acl.py puts the verdict kind above)


@dataclass(frozen=True)
class Rule:
    index: int  # position in the ACL's rules list (what REST stats name)
    direction: str  # ingress (entering the vport) | egress (leaving it)
    allow: bool
    stateful: bool
    proto: int | None  # IP protocol number; None: any
    remotes: tuple[str, ...] | None  # prefixes; None: any address; (): nobody (an empty group)
    dst_ports: tuple[int, int] | None
    src_ports: tuple[int, int] | None
    icmp_type: int | None
    icmp_code: int | None
    mark: int


@dataclass(frozen=True)
class AclSpec:
    id: str
    tag: int
    rules: tuple[Rule, ...]  # evaluation order

    @cached_property
    def _hash(self):
        return hash((self.id, self.tag, self.rules))

    def __hash__(self):  # specs key a compile cache and can hold thousands of group addresses
        return self._hash


@dataclass(frozen=True)
class PortPolicy:
    acls: tuple[tuple[str, int], ...]  # (acl id, tag) in evaluation order
    default_allow: bool


@dataclass
class SecurityView:
    acls: dict[str, AclSpec] = field(default_factory=dict)
    ports: dict[str, PortPolicy] = field(default_factory=dict)
    # session -> (policed local vport ids, ACL ids they use): filled by openflow/acl.py from the View's
    # endpoints, once per View (a View and its SecurityView are derived together and never change)
    local: dict = field(default_factory=dict, repr=False, compare=False)


def acl_tag(acl: dict) -> int:
    """The stored tag; an ACL stored before tags existed gets one from its id, in the upper half of the range
    (allocation starts at the bottom)."""
    if acl.get("tag"):
        return acl["tag"]
    return (MAX_ACL_TAG + 1) // 2 + zlib.crc32(acl["id"].encode()) % ((MAX_ACL_TAG + 1) // 2)


def derive_security(policy) -> SecurityView:
    members = defaultdict(list)  # policy group id -> member vports
    for vport in policy.all("vport"):
        for gid in vport.get("policy_groups") or ():
            members[gid].append(vport)
    by_group = defaultdict(list)  # policy group id -> ACLs applied to its members
    out = SecurityView()
    for acl in policy.all("acl"):
        out.acls[acl["id"]] = _spec(policy, acl, members)
        for gid in acl.get("policy_groups") or ():
            by_group[gid].append(acl)
    for vport in policy.all("vport"):
        port = _port_policy(policy, vport, by_group)
        if port is not None:
            out.ports[vport["id"]] = port
    return out


def port_policy(policy, vport) -> PortPolicy | None:
    """One vport's policy, for a vport in no policy group (controller/viewdelta.py: one vport changed)."""
    assert not vport.get("policy_groups")
    return _port_policy(policy, vport, {})


def _port_policy(policy, vport, by_group) -> PortPolicy | None:
    acls = {a: policy.get("acl", a) for a in vport["acls"]}
    for gid in vport.get("policy_groups") or ():
        acls.update((a["id"], a) for a in by_group.get(gid, ()))
    acls = sorted((a for a in acls.values() if a is not None), key=lambda a: (a.get("priority", 1000), a["name"],
                                                                           a["id"]))
    if acls:
        return PortPolicy(tuple((a["id"], acl_tag(a)) for a in acls),
                          all(a["default_action"] == "allow" for a in acls))
    subnet = policy.get("subnet", vport["subnet_id"])
    domain = policy.get("domain", subnet["domain_id"]) if subnet and subnet["domain_id"] else None
    if domain is not None and domain.get("default_acl_action") == "deny":
        return PortPolicy((), False)
    return None


def _spec(policy, acl, members) -> AclSpec:
    tag = acl_tag(acl)
    order = sorted(enumerate(acl["rules"]), key=lambda ir: (_priority(ir[1]), ir[0]))
    return AclSpec(acl["id"], tag, tuple(_rule(policy, tag, i, r, members) for i, r in order))


def _priority(rule) -> int:
    value = rule.get("priority")
    return DEFAULT_PRIORITY if value is None else value


def _rule(policy, tag, index, r, members) -> Rule:
    """The rule, resolved. Its mark names what it allows, not where it stands or who is in its remote group:
    moving a rule or a member joining its group keeps the connections it admitted."""
    proto = PROTOCOLS[r["protocol"]]
    remote = r.get("remote_group") or r.get("remote_subnet") or r["remote"]
    dst, src = _ports(r.get("ports")), _ports(r.get("source_ports"))
    body = (r["direction"], r["action"], r["stateful"], proto, remote, dst, src, r.get("icmp_type"),
            r.get("icmp_code"))
    mark = zlib.crc32(repr((tag, body)).encode()) & MARK_BITS or 1
    return Rule(index, r["direction"], r["action"] == "allow", r["stateful"], proto, _remotes(policy, r, members),
                dst, src, r.get("icmp_type"), r.get("icmp_code"), mark)


def _remotes(policy, r, members):
    if r.get("remote_group") is not None:
        return tuple(sorted({f"{ip}/32" for v in members.get(r["remote_group"], ()) for ip in v["ips"] or ()}))
    if r.get("remote_subnet") is not None:
        sub = policy.get("subnet", r["remote_subnet"])
        return (sub["cidr"],) if sub and sub["cidr"] else ()
    return None if r["remote"] == "0.0.0.0/0" else (r["remote"],)


def _ports(text):
    if not text:
        return None
    low, _, high = text.partition("-")
    return int(low), int(high or low)


def applied(policy, acl: dict, locations) -> dict:
    """Where an ACL applies: its policy groups, and every vport it reaches (directly or through which
    groups), with the switch the vport is bound on now (None: not bound)."""
    groups = set(acl.get("policy_groups") or ())
    vports = []
    for vport in sorted(policy.all("vport"), key=lambda v: policy.ref("vport", v)):
        via = sorted(policy.ref("policy_group", policy.get("policy_group", g))
                     for g in groups & set(vport.get("policy_groups") or ()))
        direct = acl["id"] in vport["acls"]
        if not direct and not via:
            continue
        loc = locations.get(vport["id"])
        vports.append({"id": vport["id"], "ref": policy.ref("vport", vport), "direct": direct, "via_groups": via,
                       "switch": getattr(loc, "session", None)})
    return {"policy_groups": sorted(policy.ref("policy_group", policy.get("policy_group", g)) for g in groups
                                    if policy.get("policy_group", g)),
            "vports": vports, "count": len(vports)}
