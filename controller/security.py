"""Security policy as the dataplane needs it: a pure function of the policy (docs/policy.md).

``derive_security(policy)`` -> ``SecurityView``:
- ``acls``: every ACL as an ``AclSpec``: its tag, and its rules in evaluation order with their remotes
  resolved to prefixes (a policy group: the /32 of every member's address, as membership is now; a subnet:
  its CIDR), each with the mark that names it in conntrack;
- ``ports``: for every vport whose IP traffic is policed, a ``PortPolicy``: its ACLs in evaluation order
  (direct ones and those of its policy groups) and what happens when no rule matches. A vport without ACLs
  is policed only when its domain's ``default_acl_action`` is deny.

openflow/acl.py compiles both into flows. ``applied(policy, acl, locations)`` says where an ACL applies.

``LiveSecurity`` keeps a ``SecurityView`` current from the objects a change names (ACLs, policy groups, vports,
subnets, domains), through indexes of who uses what: only the ACLs and vport policies a change reaches are
derived again (controller/viewdelta.py). ``Local`` (controller/zones.py) is the per-switch side: the policed vports
bound on each switch, the ACLs they use, and their conntrack zones (``allocate_zones``: never two vports of a switch
in one).
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property

from controller.keyed import add_to, discard_from
from controller.model import MAX_ACL_TAG
from controller.pacer import NEVER
from controller.zones import Local

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
    # the policed vports bound on each switch (``Local``): kept by controller/viewdelta.py; for a View derived
    # from scratch, filled by openflow/acl.py from the View's endpoints on first use
    local: "Local | None" = field(default=None, repr=False, compare=False)


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
        out.acls[acl["id"]] = _spec(policy, acl, _addresses(members.get))
        for gid in acl.get("policy_groups") or ():
            by_group[gid].append(acl)
    for vport in policy.all("vport"):
        port = _port_policy(policy, vport, by_group)
        if port is not None:
            out.ports[vport["id"]] = port
    return out


class LiveSecurity:
    """A ``SecurityView`` kept current by deltas. ``update`` takes the ids of the objects that changed and
    derives again only what they reach, through these indexes:

    - an ACL: its spec, and the policy of every vport using it (directly, or as a member of one of its groups);
    - a policy group: the ACLs whose rules name it (their remote addresses), and its members;
    - a vport: its own policy; when its groups or addresses changed, the ACLs whose rules name those groups;
    - a subnet: the ACLs whose rules name it, and its vports (the domain default); a domain: the vports of its
      subnets, when its ``default_acl_action`` changed.

    Returns the ACL ids whose spec changed and, per vport whose policy changed, (before, after)."""

    def __init__(self):
        self.pacer = NEVER  # ticked per vport indexed and derived (LiveView sets its own: 10,000 vports bound at once)
        self.view = SecurityView(local=Local())
        self.vport_facts: dict[str, tuple] = {}  # vport id -> (subnet, groups, acls, ips) as last seen
        # (sets per key lose their entry when they empty: controller/keyed.py)
        self.members: dict[str, set[str]] = {}  # policy group -> its vports
        self.direct: dict[str, set[str]] = {}  # ACL -> vports listing it
        self.subnet_vports: dict[str, set[str]] = {}
        self.acl_facts: dict[str, tuple] = {}  # ACL -> (groups it applies to, groups and subnets its rules name)
        self.group_acls: dict[str, set[str]] = {}  # policy group -> ACLs applied to its members
        self.group_users: dict[str, set[str]] = {}  # policy group -> ACLs whose rules name it
        self.subnet_users: dict[str, set[str]] = {}  # subnet -> ACLs whose rules name it
        self.subnet_domain: dict[str, str | None] = {}
        self.domain_subnets: dict[str, set[str]] = {}
        self.domain_default: dict[str, str | None] = {}
        self.addresses: dict[str, tuple] = {}  # policy group -> its members' /32s (dropped when they change)

    def update(self, policy, vports=(), acls=(), groups=(), subnets=(), domains=()) -> tuple[set, dict]:
        acl_ids, vport_ids = set(), set()
        for aid in acls:
            acl_ids.add(aid)
            vport_ids |= self._acl(aid, policy.get("acl", aid))
        for gid in groups:
            acl_ids |= self.group_users.get(gid, set())
            vport_ids |= self.members.get(gid, set())
            self.addresses.pop(gid, None)
        for sid in subnets:
            acl_ids |= self.subnet_users.get(sid, set())
            vport_ids |= self._subnet(sid, policy.get("subnet", sid))
        for did in domains:
            vport_ids |= self._domain(did, policy.get("domain", did))
        for vid in vports:
            self.pacer.tick()
            reached = self._vport(vid, policy.get("vport", vid))
            if reached is not None:
                vport_ids.add(vid)
                for gid in reached:
                    acl_ids |= self.group_users.get(gid, set())
                    self.addresses.pop(gid, None)
        return self._derive(policy, acl_ids, vport_ids)

    def _acl(self, aid, acl) -> set[str]:
        """Index an ACL again; returns the vports it applied to before or applies to now."""
        old = self.acl_facts.pop(aid, ((), (), ()))
        groups = tuple(acl.get("policy_groups") or ()) if acl else ()
        new = None
        if acl is not None:
            named = tuple({r["remote_group"] for r in acl["rules"] if r.get("remote_group")})
            named_subnets = tuple({r["remote_subnet"] for r in acl["rules"] if r.get("remote_subnet")})
            new = self.acl_facts[aid] = (groups, named, named_subnets)
        for facts, file in ((old, discard_from), (new or ((), (), ()), add_to)):
            for index, keys in zip((self.group_acls, self.group_users, self.subnet_users), facts):
                for k in keys:
                    file(index, k, aid)
        for gid in set(old[1]).difference(self.group_users):  # no ACL names it now: its addresses are not read
            self.addresses.pop(gid, None)
        out = set(self.direct.get(aid, ()))
        for gid in set(old[0]) | set(groups):
            out |= self.members.get(gid, set())
        return out

    def _vport(self, vid, vport) -> set[str] | None:
        """Index a vport again; returns None when nothing security reads of it changed (it only moved), else
        the policy groups whose address sets it may have changed."""
        old = self.vport_facts.pop(vid, None)
        new = None if vport is None else (vport["subnet_id"], tuple(vport.get("policy_groups") or ()),
                                           tuple(vport["acls"]), tuple(vport["ips"] or ()))
        if new is not None:
            self.vport_facts[vid] = new
        if old == new:
            return None
        for facts, add in ((old, False), (new, True)):
            if facts is None:
                continue
            subnet, groups, acls, _ = facts
            for index, keys in ((self.subnet_vports, (subnet,)), (self.members, groups), (self.direct, acls)):
                for k in keys:
                    (add_to if add else discard_from)(index, k, vid)
        old_groups, new_groups = set(old[1] if old else ()), set(new[1] if new else ())
        if (old and old[3]) == (new and new[3]):
            return old_groups ^ new_groups  # same addresses: only groups joined or left
        return old_groups | new_groups

    def _subnet(self, sid, subnet) -> set[str]:
        domain = subnet["domain_id"] if subnet else None
        old = self.subnet_domain.pop(sid, None)
        if old:
            discard_from(self.domain_subnets, old, sid)
        if subnet is not None:
            self.subnet_domain[sid] = domain
            if domain:
                add_to(self.domain_subnets, domain, sid)
        return set(self.subnet_vports.get(sid, ()))

    def _domain(self, did, domain) -> set[str]:
        """A domain's default changed (or it came or went): the vports of its subnets."""
        known, default = did in self.domain_default, domain.get("default_acl_action") if domain else None
        if (domain is None and not known) or (known and domain is not None and self.domain_default[did] == default):
            return set()
        if domain is None:
            del self.domain_default[did]
        else:
            self.domain_default[did] = default
        out = set()
        for sid in self.domain_subnets.get(did, ()):
            out |= self.subnet_vports.get(sid, set())
        return out

    def _derive(self, policy, acl_ids, vport_ids) -> tuple[set, dict]:
        sec = self.view
        members = _Lookup(policy, "vport", self.members)
        addresses = self.addresses

        def group_addresses(gid):
            found = addresses.get(gid)
            if found is None:
                found = addresses[gid] = _addresses(members.get)(gid)
            return found

        changed = set()
        for aid in acl_ids:
            acl = policy.get("acl", aid)
            new = _spec(policy, acl, group_addresses) if acl is not None else None
            if new != sec.acls.get(aid):
                changed.add(aid)
                if new is None:
                    del sec.acls[aid]
                else:
                    sec.acls[aid] = new
        by_group = _Lookup(policy, "acl", self.group_acls)
        ports = {}
        for vid in vport_ids:
            self.pacer.tick()
            vport = policy.get("vport", vid)
            new = _port_policy(policy, vport, by_group) if vport is not None else None
            old = sec.ports.get(vid)
            if new != old:
                ports[vid] = (old, new)
                if new is None:
                    del sec.ports[vid]
                else:
                    sec.ports[vid] = new
        return changed, ports


class _Lookup:
    """``get(key, ())``: the objects of ``kind`` whose ids an index holds under ``key`` (what _spec and
    _port_policy read of members and of the ACLs applied to a group)."""

    def __init__(self, policy, kind, index):
        self.policy, self.kind, self.index = policy, kind, index

    def get(self, key, default=()):
        ids = self.index.get(key)
        if not ids:
            return default
        return [o for o in (self.policy.get(self.kind, i) for i in sorted(ids)) if o is not None]


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


def _addresses(members):
    """gid -> the /32 prefixes of its members' addresses, sorted; ``members(gid, ())``: its vports."""
    return lambda gid: tuple(sorted({f"{ip}/32" for v in members(gid, ()) for ip in v["ips"] or ()}))


def _spec(policy, acl, addresses) -> AclSpec:
    tag = acl_tag(acl)
    order = sorted(enumerate(acl["rules"]), key=lambda ir: (_priority(ir[1]), ir[0]))
    return AclSpec(acl["id"], tag, tuple(_rule(policy, tag, i, r, addresses) for i, r in order))


def _priority(rule) -> int:
    value = rule.get("priority")
    return DEFAULT_PRIORITY if value is None else value


def _rule(policy, tag, index, r, addresses) -> Rule:
    """The rule, resolved. Its mark names what it allows, not where it stands or who is in its remote group:
    moving a rule or a member joining its group keeps the connections it admitted."""
    proto = PROTOCOLS[r["protocol"]]
    remote = r.get("remote_group") or r.get("remote_subnet") or r["remote"]
    dst, src = _ports(r.get("ports")), _ports(r.get("source_ports"))
    body = (r["direction"], r["action"], r["stateful"], proto, remote, dst, src, r.get("icmp_type"),
            r.get("icmp_code"))
    mark = zlib.crc32(repr((tag, body)).encode()) & MARK_BITS or 1
    return Rule(index, r["direction"], r["action"] == "allow", r["stateful"], proto, _remotes(policy, r, addresses),
                dst, src, r.get("icmp_type"), r.get("icmp_code"), mark)


def _remotes(policy, r, addresses):
    if r.get("remote_group") is not None:
        return addresses(r["remote_group"])
    if r.get("remote_subnet") is not None:
        sub = policy.get("subnet", r["remote_subnet"])
        return (sub["cidr"],) if sub and sub["cidr"] else ()
    return None if r["remote"] == "0.0.0.0/0" else (r["remote"],)


def _ports(text):
    if not text:
        return None
    low, _, high = text.partition("-")
    return int(low), int(high or low)


def applied(policy, acl: dict, locations, reach: "Reach | None" = None) -> dict:
    """Where an ACL applies: its policy groups, and every vport it reaches (directly or through which
    groups), with the switch the vport is bound on now (None: not bound). ``reach``: the vports of every ACL and
    group, found once for a listing of ACLs (None: every vport is looked at, for this ACL alone)."""
    groups = set(acl.get("policy_groups") or ())
    rows = []
    for vport in (policy.all("vport") if reach is None else reach.of(acl["id"], groups)):
        via = sorted(policy.ref("policy_group", policy.get("policy_group", g))
                     for g in groups & set(vport.get("policy_groups") or ()))
        direct = acl["id"] in vport["acls"]
        if direct or via:
            rows.append((policy.ref("vport", vport), vport, direct, via))
    rows.sort(key=lambda row: row[0])  # only the vports it reaches: not a ref made for every vport, to sort
    vports = [{"id": vport["id"], "ref": ref, "direct": direct, "via_groups": via,
               "switch": getattr(locations.get(vport["id"]), "session", None)} for ref, vport, direct, via in rows]
    return {"policy_groups": sorted(policy.ref("policy_group", policy.get("policy_group", g)) for g in groups
                                    if policy.get("policy_group", g)),
            "vports": vports, "count": len(vports)}


class Reach:
    """The vports of each ACL (directly) and policy group, found in one walk over ``vports``: a listing of ACLs
    asks every ACL where it applies, and a walk and a sort of every vport per ACL held the event loop for the
    whole listing's first stretch (100 ACLs over 10,000 vports: seconds; tests/unit/test_acl_listing.py).
    ``tick(n)``: called as vports are walked (it may pause: give it a list, not a live view of the policy)."""

    def __init__(self, vports, tick=lambda n: None, chunk: int = 100):
        self._acls: dict = defaultdict(list)
        self._groups: dict = defaultdict(list)
        for i, vport in enumerate(vports, 1):
            for aid in vport["acls"] or ():
                self._acls[aid].append(vport)
            for gid in vport.get("policy_groups") or ():
                self._groups[gid].append(vport)
            if i % chunk == 0:
                tick(chunk)

    def of(self, acl_id: str, groups) -> list:
        """The vports ``acl_id`` reaches directly or through one of ``groups``, each once."""
        found = {id(v): v for v in self._acls.get(acl_id, ())}
        for gid in groups:
            found.update((id(v), v) for v in self._groups.get(gid, ()))
        return list(found.values())
