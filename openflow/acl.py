"""Security policy flows: stateful ACLs with OVS connection tracking (docs/policy.md, docs/pipeline.md).

Three owner kinds, compiled from ``view.security`` (controller/security.py):

- ``acl`` (one per ACL): the ACL's rules, in ingress_acl_rules (its egress rules: traffic leaving a vport)
  and egress_acl_rules (its ingress rules), and its return-traffic checks. They match the ACL's tag in reg3
  and never a vport, so they are the same on every switch (compiled once, shared) and cost O(rules x
  remote addresses), whatever the number of vports the ACL applies to. A rule between a policy group of M
  members and ports of P ranges is a conjunctive match: M + P flows, not M x P.
- ``acl_port`` (one per policed local vport): into conntrack in the vport's zone (controller/zones.py
  ``allocate_zones``: unique on its switch), the chain that evaluates its ACLs in order (reg3 = tag, resubmit
  to the rules table), and its verdicts that drop (counted here, per vport).
- ``acl_switch`` (one per switch): what every policed vport shares: invalid packets are denied, allowed
  packets go on, stateful ones committed with their rule's mark as ct_mark.

A packet that a rule allows statefully is committed with ct_mark = COMMIT | mark. Its replies (ct_state
+est+rpl, or +rel) pass when the mark is still one of a current rule of the vport's ACLs; every other
packet, established or not, is evaluated against the rules again. So a removed or changed rule cuts the
connections it admitted, in both directions.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from controller.zones import ZONE_LIMIT, Local  # noqa: F401 (ZONE_LIMIT: API)
from openflow import pipeline as p
from openflow.flows import Owner, flow

ETH_IP, UDP = 0x0800, 17
ALLOW, COMMIT, DENY = 1 << 30, 2 << 30, 3 << 30  # verdict kinds in reg2 bits 30-31 (0: none yet)
KIND_MASK = 3 << 30
NONE_YET = (0, KIND_MASK)
CT_NEW, CT_EST, CT_REL, CT_RPL, CT_INV, CT_TRK = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
DENIED_PRIORITY, DEFAULT_PRIORITY = 100, 90  # a vport's verdict flows: denied by a rule (or invalid); default
REPLY_PRIORITY, RULE_TOP = 60000, 50000  # rule priorities: RULE_TOP - position (at most 1000 rules)
OWNER_KINDS = ("acl", "acl_port", "acl_switch")


class Side:
    """One direction of the pipeline: the tables, the register naming the vport, where allowed traffic goes,
    which rules apply there, and the address field that is the remote end."""

    def __init__(self, reg, entry, ct, rules, verdict, after, direction, remote_field, bit):
        self.reg, self.entry, self.ct, self.rules, self.verdict, self.after = reg, entry, ct, rules, verdict, after
        self.direction, self.remote_field, self.bit = direction, remote_field, bit


# Traffic leaving a vport meets its egress rules (the remote is the destination), traffic entering it its
# ingress rules (the remote is the source).
LEAVING = Side(p.REG_IN, p.INGRESS_ACL, p.INGRESS_ACL_CT, p.INGRESS_ACL_RULES, p.INGRESS_ACL_VERDICT, p.SERVICES,
               "egress", "ipv4_dst", 0)
ENTERING = Side(p.REG_OUT, p.EGRESS_ACL, p.EGRESS_ACL_CT, p.EGRESS_ACL_RULES, p.EGRESS_ACL_VERDICT, p.EGRESS,
                "ingress", "ipv4_src", 1)
SIDES = (LEAVING, ENTERING)


# ------------------------------------------------------------------------------------------ owners

def present(view, session: str, owner: Owner) -> bool:
    if owner.kind == "acl_switch":
        return owner.id == session
    local = _local(view)
    if owner.kind == "acl_port":
        return owner.id in local.ports.get(session, ())
    return owner.id in local.acls.get(session, ())


def owners_on(view, session: str) -> set[Owner]:
    local = _local(view)
    return {Owner("acl_switch", session)} | {Owner("acl_port", v) for v in local.ports.get(session, ())} | \
        {Owner("acl", a) for a in local.acls.get(session, ())}


def _local(view) -> Local:
    """The policed vports bound on each switch, the ACLs they use and their zones (controller/zones.py
    ``Local``): kept by the live View; for a View derived from scratch, computed once in one pass."""
    sec = view.security
    if sec.local is None:
        sec.local = Local.of(view.endpoints.values(), sec.ports)
    return sec.local


# ----------------------------------------------------------------------------------------- compile

def compile_switch_acl(view, sw, owner, built=None):
    """The flows every policed vport of a switch shares. Their cookies name the switch by chassis."""
    stable = Owner("acl_switch", sw.chassis or owner.id)
    flows = []
    for side in SIDES:
        flows += [
            flow(side.ct, 200, {"ct_state": (CT_INV | CT_TRK, CT_INV | CT_TRK)},
                 [("set", p.REG_VERDICT, DENY), ("goto", side.verdict)], stable),
            flow(side.ct, 0, {}, [], stable),
            flow(side.verdict, 50, {p.REG_VERDICT: (COMMIT, KIND_MASK), "eth_type": ETH_IP},  # ct needs IP
                 [("ct", p.REG_ZONE, None, True, p.REG_VERDICT), ("goto", side.after)], stable),
            flow(side.verdict, 50, {p.REG_VERDICT: (ALLOW, KIND_MASK)}, [("goto", side.after)], stable),
            flow(side.verdict, 0, {}, [], stable),
        ]
    return flows, []


def compile_port(view, sw, owner, built=None):
    """A policed vport: its IP traffic into conntrack in its zone, its ACL chain, and its drops."""
    ep = view.endpoints[owner.id]
    policy = view.security.ports[owner.id]
    key, zone = ep.key, _local(view).zone(sw.session, ep.key)
    flows = [flow(p.INGRESS_ACL, 110, {p.REG_IN: key, "eth_type": ETH_IP, "ip_proto": UDP, "udp_src": 68,
                                       "udp_dst": 67}, [("goto", p.SERVICES)], owner)]  # DHCP always
    if zone is None:  # no conntrack zone left on the switch (controller/zones.py): its IP traffic is dropped
        return flows + [flow(side.entry, 100, {side.reg: key, "eth_type": ETH_IP}, [], owner) for side in SIDES], []
    for side in SIDES:
        mine = {side.reg: key}
        chain = [a for _, tag in policy.acls for a in (("set", p.REG_ACL, tag), ("resubmit", side.rules))]
        flows += [
            flow(side.entry, 100, {**mine, "eth_type": ETH_IP},
                 [("set", p.REG_ZONE, zone), ("set", p.REG_VERDICT, 0), ("ct", p.REG_ZONE, side.ct, False, None)],
                 owner),
            flow(side.ct, 100, mine, chain + [("goto", side.verdict)], owner),
            flow(side.verdict, DENIED_PRIORITY, {**mine, p.REG_VERDICT: (DENY, KIND_MASK)}, [], owner),
            flow(side.verdict, DEFAULT_PRIORITY, {**mine, p.REG_VERDICT: NONE_YET},
                 [("goto", side.after)] if policy.default_allow else [], owner),
        ]
    return flows, []


_COMPILED: dict = {}  # ACL id -> (spec, its flows, its rules' flows): the latest version of each ACL only


def compile_acl(view, sw, owner, built=None):
    """The ACL's shared flow set itself (compile_owners keeps a frozenset as it is). ``built(n)``: called with the
    flows of each rule built (the compiler's pacer: a pause comes after so much work, whatever the ACLs)."""
    return acl_flows(view.security.acls[owner.id], view.security.acls, built), []


def acl_flows(spec, current=None, built=None) -> frozenset:
    """An ACL's flows: the same on every switch, so compiled once per version of the ACL and shared. Only the
    latest version of each ACL is kept; ACLs no longer in ``current`` are forgotten when the cache grows. A new
    version builds only the rules that changed (or moved): a member joining a group named by one rule of an ACL
    of twenty rebuilds that rule's flows, not the ACL's. ``built(n)`` is called after each rule built (n flows)."""
    cached = _COMPILED.get(spec.id)
    if cached is not None and (cached[0] is spec or cached[0] == spec):
        return cached[1]
    flows, by_rule = _build(spec, *(cached[1:] if cached is not None else (frozenset(), {})), built or _nothing)
    if current is not None and len(_COMPILED) > 2 * len(current) + 64:
        for gone in [a for a in _COMPILED if a not in current]:
            del _COMPILED[gone]
    _COMPILED[spec.id] = (spec, flows, by_rule)
    return flows


def _nothing(flows: int) -> None:
    """``acl_flows``' ``built`` by default."""


def _build(spec, flows_before: frozenset, before: dict, built=_nothing) -> tuple[frozenset, dict]:
    """The ACL's flows, and its rules' flows by (side, rule, rank) for the next version (taken from ``before``
    where the same rule stands at the same rank). Keys never share a flow (a rule's priority is its rank; return
    checks are keyed by the rule's mark), so the new set is the old one less the keys gone plus the keys new."""
    owner = Owner("acl", spec.id)
    by_rule = {}
    for side in SIDES:
        rank = 0
        for rule in spec.rules:
            if rule.allow and rule.stateful and rule.direction != side.direction:
                key = ("return", spec.tag, side.bit, rule.mark)
                by_rule[key] = before.get(key) or _built(_return_checks(side, spec.tag, rule, owner), built)
            if rule.direction == side.direction:
                key = ("rule", spec.tag, side.bit, rule, rank)
                by_rule[key] = before.get(key) or _built(
                    _rule_flows(side, spec.tag, rule, RULE_TOP - rank, _conj_id(spec.tag, rank, side), owner), built)
                rank += 1
    gone = [flows for key, flows in before.items() if key not in by_rule]
    new = [flows for key, flows in by_rule.items() if key not in before]
    if len(gone) + len(new) > len(by_rule) // 2:  # most of it changed: build it whole
        return frozenset(f for flows in by_rule.values() for f in flows), by_rule
    return flows_before.difference(*gone).union(*new), by_rule  # set operations on stored hashes: no rehashing


def _built(flows, built) -> tuple:
    """A rule's flows, checked, with ``built`` told how many."""
    for f in flows:
        p.check_flow(f)
    built(len(flows))
    return tuple(flows)


def rule_flows_by_index(spec) -> dict:
    """{cookie: rule index} of the flows that count a rule's matches, and {cookie: rule index} of those that
    count its return traffic (for REST statistics)."""
    hits, returns = {}, {}
    for f in acl_flows(spec):
        verdict = next((a[2] for a in f.actions if a[0] == "set" and a[1] == p.REG_VERDICT), None)
        if verdict is None:
            continue
        rule = _rule_by_mark(spec, verdict & ~KIND_MASK)
        if rule is not None:
            (returns if dict(f.match).get("ct_mark") else hits)[f.cookie] = rule.index
    return hits, returns


def _rule_by_mark(spec, mark):
    return next((r for r in spec.rules if r.mark == mark), None)


def _conj_id(tag: int, rank: int, side: Side) -> int:
    return (tag << 12) | (rank << 1) | side.bit


def _return_checks(side, tag, rule, owner):
    """Replies to (and ICMP errors about) a connection this rule admitted in the other direction pass while
    the rule stands."""
    base = {p.REG_ACL: tag, p.REG_VERDICT: NONE_YET, "ct_mark": COMMIT | rule.mark}
    allow = [("set", p.REG_VERDICT, ALLOW | rule.mark)]
    return [flow(side.rules, REPLY_PRIORITY, {**base, "ct_state": (CT_EST | CT_RPL | CT_TRK,) * 2}, allow, owner),
            flow(side.rules, REPLY_PRIORITY, {**base, "ct_state": (CT_REL | CT_TRK,) * 2}, allow, owner)]


def _rule_flows(side, tag, rule, priority, conj_id, owner):
    if rule.remotes == ():  # an empty group: nobody to match
        return []
    fixed = {p.REG_ACL: tag, p.REG_VERDICT: NONE_YET, "eth_type": ETH_IP}
    if rule.proto is not None:
        fixed["ip_proto"] = rule.proto
    if rule.icmp_type is not None:
        fixed["icmpv4_type"] = rule.icmp_type
    if rule.icmp_code is not None:
        fixed["icmpv4_code"] = rule.icmp_code
    prefix = {6: "tcp", 17: "udp"}.get(rule.proto)
    dims = []
    if rule.remotes is not None:
        dims.append([{side.remote_field: _prefix_match(r)} for r in rule.remotes])
    if rule.dst_ports and prefix:
        dims.append([{f"{prefix}_dst": m} for m in port_masks(*rule.dst_ports)])
    if rule.src_ports and prefix:
        dims.append([{f"{prefix}_src": m} for m in port_masks(*rule.src_ports)])
    verdict = ((COMMIT if rule.stateful else ALLOW) if rule.allow else DENY) | rule.mark
    action = [("set", p.REG_VERDICT, verdict)]
    return conjunctive(side.rules, priority, fixed, dims, action, conj_id, owner)


def conjunctive(table, priority, fixed, dims, actions, conj_id, owner):
    """Flows matching ``fixed`` and one alternative of every dimension: one flow per alternative when at
    most one dimension has several, else a conjunctive match (a flow per alternative and one for conj_id)."""
    for dim in [d for d in dims if len(d) == 1]:
        fixed = {**fixed, **dim[0]}
    multi = [d for d in dims if len(d) > 1]
    if len(multi) <= 1:
        return [flow(table, priority, {**fixed, **alt}, actions, owner) for alt in (multi[0] if multi else [{}])]
    flows = [flow(table, priority, {"conj_id": conj_id}, actions, owner)]
    for k, dim in enumerate(multi, 1):
        flows += [flow(table, priority, {**fixed, **alt}, [("conjunction", conj_id, k, len(multi))], owner)
                  for alt in dim]
    return flows


def port_masks(low: int, high: int) -> list:
    """A port range as the fewest (value, mask) matches (an exact port as an int)."""
    out = []
    while low <= high:
        size = low & -low if low else 1 << 16
        while size > high - low + 1:
            size >>= 1
        out.append(low if size == 1 else (low, 0xFFFF & ~(size - 1)))
        low += size
    return out


@lru_cache(maxsize=65536)
def _prefix_match(prefix: str):
    net = ipaddress.IPv4Network(prefix)
    if net.prefixlen == 32:
        return str(net.network_address)
    return str(net.network_address), str(net.netmask)


COMPILERS = {"acl": compile_acl, "acl_port": compile_port, "acl_switch": compile_switch_acl}
