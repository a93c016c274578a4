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
derived again (controller/viewdelta.py). ``Local`` is the per-switch side: the policed vports bound on each
switch, the ACLs they use, and their conntrack zones (``allocate_zones``: never two vports of a switch in one).
"""

from __future__ import annotations

import logging
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import cached_property

from controller.keyed import add_to, discard_from
from controller.model import MAX_ACL_TAG
from controller.pacer import NEVER

PROTOCOLS = {"any": None, "icmp": 1, "tcp": 6, "udp": 17}
DEFAULT_PRIORITY = 1000  # of a rule without one, and of an ACL (model default)
MARK_BITS = 0x3FFFFFFF  # a rule's mark: 30 bits (openflow/acl.py puts the verdict kind above)
ZONE_LIMIT = 0xFF00  # vport zones are 1..0xFEFF; 0xFF00-0xFFFF are left to other stages (docs/pipeline.md)
LOGGED_UNZONED = 20  # vports named in the line that says a switch has policed vports without a zone

_log = logging.getLogger(__name__)


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


def allocate_zones(keys, held=None) -> dict[int, int]:
    """Conntrack zones for the policed vports of one switch, by vport key (ofport, or ofport << 12 | VLAN on an
    ESXi trunk): a function of the set of keys alone, so a restarted controller computes the same zones and
    conntrack entries stay valid. A key below ZONE_LIMIT is its own zone (no two keys of a switch are equal).
    The others (trunks with ofport >= 16) each take the first zone not taken, from a hash of the key upwards,
    in key order: never a zone another vport of the switch has. Such a vport's zone changes only when a vport
    arriving on the switch takes it (a plain port whose ofport is that zone, or a lower key whose probe meets it), or
    one leaving frees a zone its probe passed.

    Past 65,279 keys there are not zones enough: the keys left get none (not in the answer; docs/limits.md). Then
    the trunk keys that have a zone in ``held`` (the switch's zones before this change) keep it, unless a plain port
    is that zone, and the others take what is left in key order: a vport arriving on a full switch is the one
    refused, the established ones keep their zones and connections."""
    zones = {k: k for k in keys if 0 < k < ZONE_LIMIT}
    left = sorted(k for k in keys if not 0 < k < ZONE_LIMIT)
    taken = set(zones.values())
    probed = hashed_zones(left, 1, ZONE_LIMIT - 1, taken)
    if len(probed) < len(left) and held:
        kept = {}
        for key in left:
            zone = held.get(key)
            if zone is not None and zone not in taken:
                kept[key] = zone
                taken.add(zone)
        probed = hashed_zones([k for k in left if k not in kept], 1, ZONE_LIMIT - 1, taken)
        probed.update(kept)
    zones.update(probed)
    return zones


def hashed_zones(keys, first, span, taken=frozenset()) -> dict[int, int]:
    """Zones in ``first .. first + span - 1`` for ``keys``, in the order given: each takes the first zone not in
    ``taken`` nor given to an earlier key, from a hash of the key upwards (wrapping). Keys left when the range is
    full get none. A key whose hash meets a run of zones taken skips it at once (``after``: each taken zone points
    at a zone further on, paths shortened as they are walked), not zone by zone: a run of 8,000 plain ports' zones
    was walked by every trunk vport hashed into it (0.8 s for 31,000 keys)."""
    taken = set(taken)
    count, last = len(taken), first + span - 1
    after = {zone: first if zone == last else zone + 1 for zone in taken if first <= zone <= last}
    out = {}
    for key in keys:
        if count >= span:
            break
        zone, walked = first + zlib.crc32(key.to_bytes(8, "big")) % span, []
        while zone in after:
            walked.append(zone)
            zone = after[zone]
        for passed in walked:
            after[passed] = zone
        out[key] = zone
        after[zone] = first if zone == last else zone + 1
        count += 1
    return out


class Local:
    """Per switch: its policed vports (id -> key), how many of them use each ACL, and their zones by key; and per
    ACL the switches using it. ``put``/``drop`` one vport; ``zones_changed`` allocates again on the switches whose
    keys changed and names the vports whose zone changed: a switch whose keys all are their own zones (no trunk key
    probing, none coming or going) only takes and drops the keys that came and went, as many steps as they; any
    other is allocated again whole (``allocate_zones``)."""

    def __init__(self):
        self.ports: dict[str, dict[str, int]] = defaultdict(dict)  # session -> vport id -> key
        self.acls: dict[str, Counter] = defaultdict(Counter)  # session -> ACL id -> policed vports using it
        self.acl_on: dict[str, Counter] = defaultdict(Counter)  # ACL id -> session -> policed vports using it
        self.zones: dict[str, dict[int, int]] = {}  # session -> key -> zone
        self.at: dict[str, tuple] = {}  # vport id -> (session, key, ACL ids)
        self.keys: dict[str, Counter] = defaultdict(Counter)  # session -> key -> policed vports with it
        self.hashed: dict[str, int] = Counter()  # session -> keys present without a zone of their own (trunks)
        self._keys_changed: dict[str, set[int]] = defaultdict(set)  # session -> keys that came or went
        self.unzoned: dict[str, frozenset[int]] = {}  # session -> policed keys without a zone (allocate_zones)
        self.refused_vports: dict[str, set[str]] = {}  # session -> policed vports whose key is in ``unzoned``

    @classmethod
    def of(cls, endpoints, ports) -> "Local":
        """From scratch: every policed vport endpoint (bound on a VRS, with a key)."""
        out = cls()
        for ep in endpoints:
            port = ports.get(ep.vport_id)
            if port is not None and ep.key and ep.kind == "vport":
                out.put(ep.vport_id, ep.session, ep.key, port)
        out.zones_changed()
        return out

    def put(self, vid, session, key, port) -> None:
        acls = tuple(a for a, _ in port.acls)
        self.at[vid] = (session, key, acls)
        self.ports[session][vid] = key
        for aid in acls:
            self.acls[session][aid] += 1
            self.acl_on[aid][session] += 1
        if key in self.unzoned.get(session, ()):
            self.refused_vports.setdefault(session, set()).add(vid)
        keys = self.keys[session]
        keys[key] += 1
        if keys[key] == 1:
            self._keys_changed[session].add(key)
            if not 0 < key < ZONE_LIMIT:
                self.hashed[session] += 1

    def drop(self, vid) -> tuple | None:
        """Forget a vport; returns where it was (session, key, ACL ids), or None."""
        was = self.at.pop(vid, None)
        if was is None:
            return None
        session, key, acls = was
        if session in self.refused_vports:
            self.refused_vports[session].discard(vid)
        del self.ports[session][vid]
        if not self.ports[session]:
            del self.ports[session]
        for aid in acls:
            for counts, k in ((self.acls[session], aid), (self.acl_on[aid], session)):
                counts[k] -= 1
                if counts[k] <= 0:
                    del counts[k]
            if not self.acl_on[aid]:
                del self.acl_on[aid]
        if not self.acls[session]:
            del self.acls[session]
        keys = self.keys[session]
        keys[key] -= 1
        if keys[key] <= 0:
            del keys[key]
            self._keys_changed[session].add(key)
            if not 0 < key < ZONE_LIMIT:
                self.hashed[session] -= 1
                if not self.hashed[session]:
                    del self.hashed[session]
            if not keys:
                del self.keys[session]
        return was

    def zones_changed(self) -> dict[str, set[str]]:
        """Allocate zones again on the switches whose policed keys changed; returns session -> vports still there
        whose zone is not what it was."""
        out = {}
        for session, came_or_went in self._keys_changed.items():
            present, old = self.keys.get(session, {}), self.zones.get(session, {})
            was_unzoned = self.unzoned.get(session)
            if was_unzoned and not was_unzoned <= present.keys():  # a vport without a zone left (no zone changed)
                self._note_unzoned(session, present, old, was_unzoned, frozenset(was_unzoned & present.keys()))
            came_or_went = {key for key in came_or_went if (key in present) != (key in old)}
            if not came_or_went:
                continue  # (a vport dropped and put again with its key)
            if not self.hashed.get(session) and all(0 < key < ZONE_LIMIT for key in came_or_went):
                for key in came_or_went:  # (no trunk key before nor now: every key is its own zone, none moves)
                    if key in present:
                        old[key] = key
                    else:
                        del old[key]
                self.zones[session] = old
            else:
                ports, was_unzoned = self.ports.get(session, {}), self.unzoned.get(session, frozenset())
                new = self.zones[session] = allocate_zones(present, old)
                moved = {vid for vid, key in ports.items()
                         if (key in old or key in was_unzoned) and old.get(key) != new.get(key)}
                if moved:
                    out[session] = moved
                self._note_unzoned(session, present, new, was_unzoned)
            if not self.zones[session]:
                del self.zones[session]
        self._keys_changed = defaultdict(set)
        return out

    def _note_unzoned(self, session, present, zones, was, unzoned=None) -> None:
        """Keep and log once (when it changes) which policed keys of the switch got no zone (``unzoned``: known), and
        their vports (``refused_vports``, kept by ``put`` and ``drop`` until the keys change again)."""
        if unzoned is None:
            unzoned = frozenset(present.keys() - zones.keys()) if len(zones) < len(present) else frozenset()
        if unzoned == was:
            return
        self.refused_vports.pop(session, None)
        if unzoned:
            self.unzoned[session] = unzoned
            vids = sorted(vid for vid, key in self.ports.get(session, {}).items() if key in unzoned)
            self.refused_vports[session] = set(vids)
            more = f" and {len(vids) - LOGGED_UNZONED:,} more" if len(vids) > LOGGED_UNZONED else ""
            _log.error("switch %s: %d policed vports got no conntrack zone (over %s on one switch), their IP "
                       "traffic is dropped: %s%s", session, len(vids), f"{ZONE_LIMIT - 1:,}",
                       ", ".join(vids[:LOGGED_UNZONED]), more)
        else:
            del self.unzoned[session]
            _log.warning("switch %s: every policed vport has a conntrack zone again", session)

    def zone(self, session, key) -> int | None:
        """The key's conntrack zone; None: none left for it (``unzoned``)."""
        return self.zones[session].get(key)

    def refused(self) -> dict[str, list[str]]:
        """Per switch (session) the policed vports without a conntrack zone, sorted (GET /v1/status, /metrics): as
        many steps as they, not a walk of the switch's vports (``refused_vports``)."""
        return {session: sorted(self.refused_vports.get(session, ())) for session in self.unzoned}


def refused_zones(view) -> dict[str, list[str]]:
    """Per switch (session) the policed vports the View's switches have no conntrack zone for (``Local.refused``)."""
    local = view.security.local if view is not None and view.security is not None else None
    return local.refused() if local is not None else {}


def zones_status(view) -> dict:
    """GET /v1/status ``programmer.vports_without_zone``: how many policed vports have no conntrack zone, and per
    switch (session) how many and the first LOGGED_UNZONED of them."""
    refused = refused_zones(view)
    return {"count": sum(map(len, refused.values())),
            "switches": {session: {"count": len(vids), "vports": vids[:LOGGED_UNZONED]}
                         for session, vids in sorted(refused.items())}}


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
