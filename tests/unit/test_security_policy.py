"""Security policies without a switch: validation (clear errors, nothing half-applied), documents naming
groups, what applies to a vport and in which order, the flow cost of group rules (conjunctive: N + M, not
N x M), port ranges as masks, and incremental recompilation agreeing with a full recompute while ACLs,
group memberships, domain defaults and placements change. (Packets: tests/integration/test_security_policy.py.)"""

import random

import pytest

from controller import policy as pol
from controller import policydoc
from controller.model import PolicyError
from controller.security import derive_security
from controller.zones import ZONE_LIMIT, allocate_zones
from openflow import acl
from openflow.compiler import compile_switch
from openflow.flows import Owner
from tests.unit.helpers import Controller, demo_net
from tests.unit.test_compiler import add_vport, assert_matches_full, base_state, snapshot

DOC = {"tenants": [{
    "name": "acme",
    "policy_groups": [{"name": "web"}, {"name": "db"}],
    "acls": [
        {"name": "db-in", "policy_groups": ["db"], "rules": [
            {"direction": "ingress", "action": "allow", "protocol": "tcp", "ports": "5432", "remote_group": "web"},
            {"direction": "ingress", "action": "deny", "protocol": "icmp", "icmp_type": 8, "priority": 5},
            {"direction": "egress", "action": "allow", "remote_subnet": "web", "stateful": False}]},
        {"name": "ops", "priority": 10, "default_action": "allow", "rules": [
            {"direction": "ingress", "action": "allow", "protocol": "tcp", "ports": "22"}]},
    ],
    "domains": [{"name": "prod", "subnets": [
        {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", "vports": [
            {"name": "w1", "mac": "02:00:00:00:01:01", "ips": ["10.0.1.11"], "binding": {"flavour": "kvm"},
             "policy_groups": ["web"]},
            {"name": "w2", "mac": "02:00:00:00:01:02", "ips": ["10.0.1.12"], "binding": {"flavour": "kvm"},
             "policy_groups": ["web"]}]},
        {"name": "db", "cidr": "10.0.2.0/24", "gateway": "10.0.2.1", "vports": [
            {"name": "d1", "mac": "02:00:00:00:02:01", "ips": ["10.0.2.11"], "binding": {"flavour": "kvm"},
             "policy_groups": ["db"], "acls": ["ops"]}]},
    ]}]}]}


def plan(doc=DOC, current=None):
    return policydoc.plan(current or pol.Policy(), doc, "t", pol.Allocator({}, 65000, (10000, 20000)))


def test_a_document_names_groups_and_subnets_and_they_resolve_to_ids():
    p = plan().policy
    web, db = p.find("policy_group", "acme/web"), p.find("policy_group", "acme/db")
    acl_obj = p.find("acl", "acme/db-in")
    assert acl_obj["policy_groups"] == [db["id"]] and acl_obj["tag"] == 1
    assert acl_obj["rules"][0]["remote_group"] == web["id"]
    assert acl_obj["rules"][2]["remote_subnet"] == p.find("subnet", "acme/web")["id"]
    assert p.find("vport", "acme/web/w1")["policy_groups"] == [web["id"]]
    assert p.find("acl", "acme/ops")["tag"] == 2
    assert plan(current=p).changes == []  # applying twice changes nothing


@pytest.mark.parametrize("rule, field, reason", [
    ({"protocol": "icmp", "ports": "80"}, "rules[0].ports", "needs protocol tcp or udp"),
    ({"protocol": "any", "source_ports": "1-9"}, "rules[0].source_ports", "needs protocol tcp or udp"),
    ({"protocol": "tcp", "icmp_type": 3}, "rules[0].icmp_type", "needs protocol icmp"),
    ({"protocol": "icmp", "icmp_code": 3}, "rules[0].icmp_code", "needs icmp_type"),
    ({"remote": "10.0.0.0/8", "remote_group": "x"}, "rules[0].remote_group", "give only one of remote"),
    ({"priority": 10000}, "rules[0].priority", "between 0 and 9999"),
])
def test_bad_rules_are_refused_with_the_field_and_the_reason(rule, field, reason):
    doc = {"tenants": [{"name": "acme", "policy_groups": [{"name": "x"}], "acls": [{"name": "a", "rules": [
        {"direction": "ingress", "action": "allow", **rule}]}]}]}
    with pytest.raises(PolicyError) as exc:
        plan(doc)
    assert any(field in p.field and reason in p.reason for p in exc.value.problems), exc.value


def test_groups_and_subnets_of_another_tenant_or_missing_are_refused(tmp_path):
    ctl = Controller(tmp_path)
    tenant, _, subnet = demo_net(ctl)
    other = ctl.create("tenants", {"name": "other"})
    theirs = ctl.create("policy-groups", {"tenant_id": other["id"], "name": "g"})
    status, reply = ctl.call("POST", "/v1/acls", {"tenant_id": tenant["id"], "name": "a", "rules": [
        {"direction": "ingress", "action": "allow", "remote_group": theirs["id"]}]})
    assert status == 422 and "belongs to another tenant" in reply["error"]["message"]
    status, reply = ctl.call("POST", "/v1/vports", {"subnet_id": subnet["id"], "name": "v", "mac": "02:00:00:00:00:01",
                                                    "binding": {"flavour": "kvm"}, "policy_groups": ["nope"]})
    assert status == 422 and reply["error"]["field"] == "policy_groups[0]"
    assert ctl.call("GET", "/v1/acls")[1]["count"] == 0 and ctl.call("GET", "/v1/vports")[1]["count"] == 0
    ctl.close()


def test_a_group_in_use_cannot_be_deleted_and_the_acl_shows_where_it_applies(tmp_path):
    ctl = Controller(tmp_path)
    tenant, _, subnet = demo_net(ctl)
    group = ctl.create("policy-groups", {"tenant_id": tenant["id"], "name": "web"})
    a = ctl.create("acls", {"tenant_id": tenant["id"], "name": "a", "policy_groups": [group["id"]]})
    vport = ctl.create("vports", {"subnet_id": subnet["id"], "name": "v", "mac": "02:00:00:00:00:01",
                                  "binding": {"flavour": "kvm"}, "policy_groups": [group["id"]]})
    status, reply = ctl.call("DELETE", f"/v1/policy-groups/{group['id']}")
    assert status == 409 and reply["error"]["code"] == "has_dependents"
    applied = ctl.call("GET", f"/v1/acls/{a['id']}")[1]["applied"]
    assert applied == {"policy_groups": ["acme/web"], "count": 1, "vports": [
        {"id": vport["id"], "ref": "acme/web/v", "direct": False, "via_groups": ["acme/web"], "switch": None}]}
    ctl.close()


def test_what_applies_to_a_vport_and_in_which_order():
    p = plan().policy
    sec = derive_security(p)
    ids = {name: p.find("acl", f"acme/{name}")["id"] for name in ("db-in", "ops")}
    d1 = sec.ports[p.find("vport", "acme/db/d1")["id"]]
    assert [a for a, _ in d1.acls] == [ids["ops"], ids["db-in"]]  # by ACL priority: ops (10) first
    assert d1.default_allow is False  # db-in denies by default
    assert p.find("vport", "acme/web/w1")["id"] not in sec.ports  # no ACL, domain default allow
    spec = sec.acls[ids["db-in"]]
    assert [r.index for r in spec.rules] == [1, 0, 2]  # priority 5 first, then the default 1000 in list order
    assert spec.rules[1].remotes == ("10.0.1.11/32", "10.0.1.12/32")
    assert spec.rules[2].remotes == ("10.0.1.0/24",)


def test_the_domain_default_polices_vports_without_acls():
    doc = {"tenants": [{**DOC["tenants"][0], "domains": [{**DOC["tenants"][0]["domains"][0],
                                                          "default_acl_action": "deny"}]}]}
    p = plan(doc).policy
    w1 = derive_security(p).ports[p.find("vport", "acme/web/w1")["id"]]
    assert w1.acls == () and w1.default_allow is False


def _group_policy(members, ports="1000-1999"):
    """An ACL applied to group a, allowing tcp from group b (``members`` each) on a port range."""
    doc = {"tenants": [{"name": "t", "policy_groups": [{"name": "a"}, {"name": "b"}],
                        "acls": [{"name": "x", "policy_groups": ["a"], "rules": [
                            {"direction": "ingress", "action": "allow", "protocol": "tcp", "ports": ports,
                             "remote_group": "b"}]}],
                        "domains": [{"name": "d", "subnets": [
                            {"name": "s", "cidr": "10.1.0.0/16", "gateway": "10.1.0.1", "vports": [
                                {"name": f"{g}{i}", "mac": f"02:00:00:{'a' if g == 'a' else 'b'}0:{i >> 8:02x}:{i & 255:02x}",
                                 "ips": [f"10.1.{1 if g == 'a' else 2}.{i + 10}"], "binding": {"flavour": "kvm"},
                                 "policy_groups": [g]}
                                for g in ("a", "b") for i in range(members)]}]}]}]}
    return plan(doc).policy


def test_a_rule_between_two_groups_costs_n_plus_m_flows():
    for members in (10, 40):
        p = _group_policy(members)
        spec = derive_security(p).acls[p.find("acl", "t/x")["id"]]
        flows = acl.acl_flows(spec)
        masks = len(acl.port_masks(1000, 1999))
        # M remote addresses + P port masks + the conj_id flow, plus the two return-traffic checks
        assert len(flows) == members + masks + 1 + 2, len(flows)
        assert sum(1 for f in flows if any(a[0] == "conjunction" for a in f.actions)) == members + masks


def test_port_ranges_become_exact_masks():
    for low, high in ((1, 65535), (80, 80), (1000, 1999), (1024, 65535), (5, 6), (65535, 65535)):
        masks = acl.port_masks(low, high)
        covered = set()
        for m in masks:
            value, mask = m if isinstance(m, tuple) else (m, 0xFFFF)
            covered |= {port for port in range(value, value + (~mask & 0xFFFF) + 1)}
        assert covered == set(range(low, high + 1)), (low, high)


def test_zones_never_collide_on_a_switch_with_many_trunk_ports():
    """Plain ports keep their ofport as zone; ESXi trunk vports (ofport << 12 | VLAN) whose key does not fit get
    a zone no other vport of the switch has (the old fold gave trunk ofport 16 VLAN 100 the zone of ofport 358)."""
    assert allocate_zones([358, (16 << 12) | 100]) == {358: 358, (16 << 12) | 100: allocate_zones(
        [(16 << 12) | 100])[(16 << 12) | 100]}
    assert len(set(allocate_zones([358, (16 << 12) | 100]).values())) == 2
    keys = list(range(1, 3001)) + [(1 << 12) | v for v in range(1, 4095)] + \
        [(t << 12) | v for t in (16, 17, 33, 200, 4000, 0xFEFF) for v in range(1, 4095, 1)]
    zones = allocate_zones(keys)
    assert len(zones) == len(keys) and len(set(zones.values())) == len(keys)
    assert all(0 < z < ZONE_LIMIT for z in zones.values())
    assert all(zones[k] == k for k in keys if k < ZONE_LIMIT)  # today's zones where the key fits: hitless upgrade
    shuffled = keys[:]
    random.Random(3).shuffle(shuffled)
    assert allocate_zones(shuffled) == zones  # a function of the set: a restarted controller finds the same zones


def test_a_vport_arriving_keeps_the_zones_of_the_others_unless_it_takes_one():
    trunk = [(20 << 12) | v for v in range(1, 500)]
    before = allocate_zones(trunk)
    after = allocate_zones(trunk + [7, (21 << 12) | 9])
    moved = {k for k in trunk if before[k] != after[k]}
    taken = {after[7], after[(21 << 12) | 9]}
    assert all(before[k] in taken or before[k] in {after[x] for x in moved} for k in moved)
    assert len(moved) <= 2


def test_trunk_vports_whose_folded_zones_collided_get_their_own_zones_in_the_flows():
    """Two policed vports on one ESXi VRS: one on trunk ofport 16 VLAN 100, one on a plain port of ofport 358
    (the old fold put both in zone 358); their conntrack zones in the compiled flows differ."""
    from controller.discovery import PortInfo

    state = base_state()
    p = plan().policy
    state.policy_committed(p, [])
    w1, d1 = p.find("vport", "acme/web/w1"), p.find("vport", "acme/db/d1")
    v = dict(w1, binding={**w1["binding"], "flavour": "esxi", "host": "hv1", "trunk_port": "trunk16", "vlan": 100},
             acls=[p.find("acl", "acme/ops")["id"]])
    policy = state.policy.copy()
    policy.put("vport", v)
    state.policy_committed(policy, [])
    snap = snapshot("hv1", "10.251.0.1", [])
    ports = (PortInfo("trunk16", 16, None, ()), PortInfo("p358", 358, None, (("iface-id", "d1"),)))
    state.vrs_update(snap.__class__(**{**snap.__dict__, "flavour": "esxi", "ports": snap.ports + ports}))
    from controller.programmer import Programmer

    prog = Programmer(state)
    prog.refresh()
    assert {w1["id"], d1["id"]} <= set(state.locations)
    desired = prog.desired[snap.session]

    def zone(vid):
        (value,) = {a[2] for f in desired.flows[Owner("acl_port", vid)] for a in f.actions
                    if a[0] == "set" and a[1] == "reg1"}
        return value

    assert zone(d1["id"]) == 358 and zone(w1["id"]) not in (358, 0) and zone(w1["id"]) < ZONE_LIMIT
    assert_matches_full(prog)


def test_incremental_equals_full_recompute_while_policies_change():
    rng = random.Random(14)
    state = base_state()
    policy = state.policy.copy()
    tenant = policy.find("tenant", "acme")
    for name in ("g1", "g2"):
        policy.put("policy_group", {"id": name, "source": None, "tenant_id": tenant["id"], "name": name,
                                    "description": ""})
    state.policy_committed(policy, [])
    from controller.programmer import Programmer

    prog = Programmer(state)
    for i in range(8):
        add_vport(state, ("acme/web", "acme/db")[i % 2], f"vm{i}", f"02:00:00:00:00:{i + 1:02x}",
                  f"10.0.{1 + i % 2}.{10 + i}")
    hosts = {"hv1": "10.251.0.1", "hv2": "10.251.0.2"}
    placement = {}
    for host, vtep in hosts.items():
        state.vrs_update(snapshot(host, vtep, []))
    prog.refresh()
    for step in range(80):
        policy = state.policy.copy()
        action = rng.choice(["place", "remove", "join", "leave", "acl", "rules", "attach", "default"])
        vm = f"vm{rng.randrange(8)}"
        if action == "place":
            placement[vm] = rng.choice(list(hosts))
        elif action == "remove":
            placement.pop(vm, None)
        elif action in ("join", "leave", "attach"):
            v = dict(policy.get("vport", vm))
            if action == "attach":
                acls = [a["id"] for a in policy.all("acl")]
                v["acls"] = rng.sample(acls, rng.randrange(len(acls) + 1))
            else:
                v["policy_groups"] = [rng.choice(["g1", "g2"])] if action == "join" else []
            policy.put("vport", v)
        elif action in ("acl", "rules"):
            name = f"acl{rng.randrange(3)}"
            rules = [{"direction": rng.choice(["ingress", "egress"]), "action": rng.choice(["allow", "deny"]),
                      "priority": None, "protocol": "tcp", "remote": "0.0.0.0/0", "remote_subnet": None,
                      "remote_group": rng.choice([None, "g1", "g2"]), "ports": rng.choice([None, "80", "1000-1099"]),
                      "source_ports": None, "icmp_type": None, "icmp_code": None, "stateful": rng.random() < 0.7}
                     for _ in range(rng.randrange(4))]
            policy.put("acl", {"id": name, "source": None, "tenant_id": tenant["id"], "name": name, "description": "",
                               "priority": rng.randrange(3), "default_action": rng.choice(["allow", "deny"]),
                               "rules": rules, "policy_groups": rng.sample(["g1", "g2"], rng.randrange(3)),
                               "tag": int(name[-1]) + 1})
        else:
            dom = dict(policy.find("domain", "acme/prod"))
            dom["default_acl_action"] = rng.choice(["allow", "deny"])
            policy.put("domain", dom)
        state.policy_committed(policy, [])
        for host, vtep in hosts.items():
            ports = [(v, 10 + int(v[2:])) for v, h in sorted(placement.items()) if h == host]
            state.vrs_update(snapshot(host, vtep, ports))
        prog.refresh()
        assert_matches_full(prog)
    assert prog.full_recomputes == 1
    assert any(o.kind == "acl" for d in prog.desired.values() for o in d.flows)


def test_acl_flows_are_shared_across_switches_and_pass_the_pipeline_check():
    state = base_state()
    p = _group_policy(3)
    state.policy_committed(p, [])
    hosts = {"hv1": "10.251.0.1", "hv2": "10.251.0.2"}
    names = sorted(v["name"] for v in p.all("vport"))
    for n, (host, vtep) in enumerate(hosts.items()):
        mine = [(name, 10 + i) for i, name in enumerate(names) if i % 2 == n]  # kvm: iface-id = vport name
        snap = snapshot(host, vtep, [])
        from controller.discovery import PortInfo
        infos = tuple(PortInfo(name=f"p{o}", ofport=o, external_ids=(("iface-id", vid),)) for vid, o in mine)
        state.vrs_update(snap.__class__(**{**snap.__dict__, "ports": snap.ports + infos}))
    from controller.programmer import Programmer

    prog = Programmer(state)
    prog.refresh()
    view = prog.view
    owner = Owner("acl", p.find("acl", "t/x")["id"])
    both = [compile_switch(view, s).flows.get(owner) for s in hosts]
    assert both[0] and both[0] is both[1]  # compiled once: the same set object on every switch


def _traced_switch(doc=DOC):
    """DOC bound on one switch hv1: w1 (ofport 11), w2 (12), d1 (13); tunnel ofport 99."""
    state = base_state()
    state.policy_committed(plan(doc).policy, [])
    state.vrs_update(snapshot("hv1", "10.251.0.1", [("w1", 11), ("w2", 12), ("d1", 13)]))
    from controller.programmer import Programmer

    prog = Programmer(state)
    prog.refresh()
    return prog.desired["hv1"], state


def _to_d1(**fields):
    base = {"in_port": 11, "eth_src": "02:00:00:00:01:01", "eth_dst": "02:ca:00:00:27:10", "eth_type": 0x0800,
            "ipv4_src": "10.0.1.11", "ipv4_dst": "10.0.2.11", "ip_proto": 6, "tcp_dst": 5432, "ttl": 64}
    return {**base, **fields}


def test_packets_through_the_compiled_policy():
    from tests.unit.helpers import trace

    desired, state = _traced_switch()
    gw = state.policy.find("domain", "acme/prod")["gateway_mac"]
    assert [port for port, _ in trace(desired, _to_d1(eth_dst=gw))] == [13]  # web member, tcp 5432: allowed
    assert trace(desired, _to_d1(eth_dst=gw, tcp_dst=23)) == []  # no rule for 23; db-in denies by default
    assert [port for port, _ in trace(desired, _to_d1(eth_dst=gw, tcp_dst=22))] == [13]  # ops allows 22
    icmp = _to_d1(eth_dst=gw, ip_proto=1, icmpv4_type=8, icmpv4_code=0)
    del icmp["tcp_dst"]
    assert trace(desired, icmp) == []  # db-in denies echo requests (priority 5)
    from_tunnel = _to_d1(in_port=99, tunnel_id=state.policy.find("domain", "acme/prod")["l3_vni"],
                         eth_dst="02:cb:0a:fb:00:01", ipv4_src="10.0.1.12")
    assert [port for port, _ in trace(desired, from_tunnel)] == [13]  # over the L3 VNI: same rules
    assert trace(desired, {**from_tunnel, "ipv4_src": "10.0.1.99"}) == []  # not a member of web


def test_a_reply_passes_only_with_the_mark_of_a_current_rule():
    from openflow.trace import walk

    tenant = DOC["tenants"][0]
    no_egress = [{**tenant["acls"][0], "rules": tenant["acls"][0]["rules"][:2]}, tenant["acls"][1]]
    desired, state = _traced_switch({"tenants": [{**tenant, "acls": no_egress}]})
    spec = next(s for s in state.policy.all("acl") if s["name"] == "db-in")
    rule = derive_security(state.policy).acls[spec["id"]].rules[1]  # tcp 5432 from web (after the icmp deny)
    assert rule.index == 0
    reply = {"in_port": 13, "eth_src": "02:00:00:00:02:01", "eth_dst": "02:ca:00:00:27:10", "eth_type": 0x0800,
             "ipv4_src": "10.0.2.11", "ipv4_dst": "10.0.1.11", "ip_proto": 6, "tcp_src": 5432, "ttl": 64}
    gw = state.policy.find("domain", "acme/prod")["gateway_mac"]
    reply["eth_dst"] = gw
    flows, groups = desired.all_flows(), desired.all_groups()
    ok = walk(flows, groups, {**reply, "ct_state": 0x2a, "ct_mark": acl.COMMIT | rule.mark})
    assert [e.port for e in ok.exits if e.kind == "output"] == [11]
    stale = walk(flows, groups, {**reply, "ct_state": 0x2a, "ct_mark": acl.COMMIT | (rule.mark ^ 1)})
    assert [e.kind for e in stale.exits] == ["drop"]  # d1 has no egress rule matching: denied


def test_a_subnet_named_in_a_rule_is_not_deleted_with_cascade(tmp_path):
    ctl = Controller(tmp_path)
    tenant, _, subnet = demo_net(ctl)
    a = ctl.create("acls", {"tenant_id": tenant["id"], "name": "a", "rules": [
        {"direction": "ingress", "action": "allow", "remote_subnet": subnet["id"]}]})
    status, reply = ctl.call("DELETE", f"/v1/subnets/{subnet['id']}", query={"cascade": "true"})
    assert status == 409 and "acl 'acme/a'" in reply["error"]["message"]
    assert ctl.call("GET", f"/v1/acls/{a['id']}")[0] == 200
    ctl.close()


def test_a_policy_change_recompiles_only_the_acls_and_chains_it_reaches():
    """Security by delta (controller/security.py LiveSecurity): an ACL's rules changing reaches that ACL on the
    switches using it; a member leaving a group, the ACLs whose rules name the group; a vport given an ACL, its
    chain and that ACL on its own switch. Nothing else is recompiled, and the result equals a full compile."""
    from controller.programmer import Programmer

    state = base_state()
    p = plan().policy
    state.policy_committed(p, [])
    state.vrs_update(snapshot("hv1", "10.251.0.1", [("w1", 11), ("w2", 12)]))
    state.vrs_update(snapshot("hv2", "10.251.0.2", [("d1", 13)]))
    prog = Programmer(state)
    prog.refresh(full=True)
    reaches = []
    apply = prog.live.apply
    prog.live.apply = lambda j, owners=True: reaches.append(apply(j, owners)) or reaches[-1]

    def change(kind, ref, **fields):
        policy = state.policy.copy()
        obj = dict(policy.find(kind, ref), **fields)
        policy.put(kind, obj)
        state.policy_committed(policy, [])
        prog.refresh()
        assert_matches_full(prog)
        return {s: o for s, o in reaches[-1].owners.items() if o}, obj["id"]

    ops = p.find("acl", "acme/ops")
    reached, _ = change("acl", "acme/ops", rules=ops["rules"] + [dict(ops["rules"][0], ports="2222")])
    assert reached == {"hv2": {Owner("acl", ops["id"])}}
    db_in = p.find("acl", "acme/db-in")["id"]
    reached, _ = change("vport", "acme/web/w2", policy_groups=[])
    assert reached == {"hv2": {Owner("acl", db_in)}}  # web's addresses lost w2: db-in, where d1 uses it
    reached, w1 = change("vport", "acme/web/w1", acls=[ops["id"]])
    assert reached == {"hv1": {Owner("acl_port", w1), Owner("acl", ops["id"])}}  # not even its own L2 flows
    assert prog.full_recomputes == 1
