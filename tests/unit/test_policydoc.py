"""Declarative documents: planning, idempotency, prune, and errors that point at file and line."""

import pytest

from controller import policy as pol
from controller import policydoc, yamldoc
from controller.model import PolicyError

DOC = """\
source: lab
tenants:
  - name: acme
    acls:
      - name: web-in
        rules: [{direction: ingress, action: allow, protocol: tcp, ports: "80"}]
    domains:
      - name: prod
        subnets:
          - name: web
            cidr: 10.0.1.0/24
            gateway: 10.0.1.1
            vports:
              - name: vm1
                mac: "02:00:00:00:00:01"
                binding: {flavour: kvm}
                acls: [web-in]
              - name: vm2
                mac: "02:00:00:00:00:02"
                binding: {flavour: hyperv}
    subnets:
      - name: lan
vtep_bindings:
  - {switch: tor1, port: eth1, vlan: 100, subnet: acme/web}
"""


def plan(current, text, prune=False, counters=None):
    doc = yamldoc.load(text, "lab.yaml")
    return policydoc.plan(current, doc.data, "lab.yaml", pol.Allocator(counters or {}, 65000, (10000, 20000)),
                          prune=prune)


def errors(current, text, prune=False):
    doc = yamldoc.load(text, "lab.yaml")
    with pytest.raises(PolicyError) as info:
        policydoc.plan(current, doc.data, "lab.yaml", pol.Allocator({}, 65000, (10000, 20000)), prune=prune)
    return [(doc.line_of(p.field), p.field, p.reason) for p in info.value.problems]


def test_plan_creates_everything_with_references_resolved():
    result = plan(pol.Policy(), DOC)
    p = result.policy
    assert p.counts() == {"tenant": 1, "domain": 1, "subnet": 2, "vport": 2, "acl": 1, "policy_group": 0,
                          "external_network": 0, "floating_ip": 0, "vtep_binding": 1}
    vm1 = p.find("vport", "acme/web/vm1")
    assert vm1["acls"] == [p.find("acl", "acme/web-in")["id"]]
    assert vm1["ips"] == ["10.0.1.2"] and p.find("vport", "acme/web/vm2")["ips"] == ["10.0.1.3"]
    assert p.find("subnet", "acme/lan")["domain_id"] is None
    assert {o["source"] for k in p.objects for o in p.all(k)} == {"lab"}
    assert [c["op"] for c in result.summary] == ["create"] * 8


def test_applying_the_same_document_twice_changes_nothing():
    first = plan(pol.Policy(), DOC)
    again = plan(first.policy, DOC)
    assert again.changes == [] and again.policy.objects == first.policy.objects


def test_a_changed_field_is_one_update_and_allocations_stay():
    first = plan(pol.Policy(), DOC)
    vni = first.policy.find("subnet", "acme/web")["vni"]
    second = plan(first.policy, DOC.replace("cidr: 10.0.1.0/24", "cidr: 10.0.1.0/24\n            description: x"))
    assert [(c["op"], c["ref"]) for c in second.summary] == [("update", "acme/web")]
    assert second.policy.find("subnet", "acme/web")["vni"] == vni


def test_removing_a_field_returns_it_to_its_default():
    first = plan(pol.Policy(), DOC.replace("name: lan", "name: lan\n        description: temp"))
    second = plan(first.policy, DOC)
    assert second.policy.find("subnet", "acme/lan")["description"] == ""


def api_subnet(cand):
    """An L2 subnet of tenant acme as if created through the REST API (no apply source)."""
    return {**cand.find("subnet", "acme/lan"), "id": "api-made", "name": "api", "source": None, "vni": 19999,
            "rd": "65000:19999", "import_rts": ["65000:19999"], "export_rts": ["65000:19999"]}


def test_prune_deletes_only_what_this_source_created():
    first = plan(pol.Policy(), DOC)
    cand = first.policy
    # an object created through the API (source None) under the same tenant must survive a prune
    tenant_id = cand.find("tenant", "acme")["id"]
    cand.put("subnet", api_subnet(cand))
    without_vm2 = DOC.replace('''              - name: vm2
                mac: "02:00:00:00:00:02"
                binding: {flavour: hyperv}
''', "")
    kept = plan(cand, without_vm2)
    assert kept.policy.find("vport", "acme/web/vm2") is not None  # no prune: nothing deleted
    pruned = plan(cand, without_vm2, prune=True)
    assert pruned.policy.find("vport", "acme/web/vm2") is None
    assert [(c["op"], c["ref"]) for c in pruned.summary] == [("delete", "acme/web/vm2")]
    assert pruned.policy.get("subnet", "api-made")["tenant_id"] == tenant_id


def test_prune_refuses_to_orphan_objects_it_does_not_manage():
    first = plan(pol.Policy(), DOC)
    cand = first.policy
    cand.put("subnet", api_subnet(cand))
    found = errors(cand, "source: lab\ntenants: []\n", prune=True)
    assert any("cannot prune" in r and "acme/api" in r for _, _, r in found)


def test_errors_point_at_the_line_of_the_bad_field():
    bad = DOC.replace("gateway: 10.0.1.1", "gateway: 10.0.9.1")
    assert errors(pol.Policy(), bad) == [(12, "tenants[0].domains[0].subnets[0].gateway",
                                          "10.0.9.1 is outside the subnet's cidr 10.0.1.0/24")]


def test_children_of_a_refused_parent_do_not_add_noise():
    bad = DOC.replace("cidr: 10.0.1.0/24", "cidr: 10.0.1.0/33")
    found = errors(pol.Policy(), bad)
    assert [(line, field) for line, field, _ in found] == [(11, "tenants[0].domains[0].subnets[0].cidr")]


def test_unknown_acl_name_and_unknown_vtep_subnet_are_named():
    bad = DOC.replace("acls: [web-in]", "acls: [nope]").replace("subnet: acme/web}", "subnet: acme/ghost}")
    found = errors(pol.Policy(), bad)
    assert (17, "tenants[0].domains[0].subnets[0].vports[0].acls[0]", "no acl named 'acme/nope'") in found
    assert (24, "vtep_bindings[0].subnet", "no subnet named 'acme/ghost'") in found
    assert len(found) == 2  # not also "must not be null" at each of the two places (the id left empty)


def test_shape_errors():
    assert errors(pol.Policy(), "tenants: {name: x}\n") == [(1, "tenants", "must be a list")]
    found = errors(pol.Policy(), "tenant: []\n")
    assert found[0][1] == "tenant" and "unknown top-level key" in found[0][2]
    found = errors(pol.Policy(), "tenants:\n  - name: a\n    domains:\n      - 5\n")
    assert found == [(4, "tenants[0].domains[0]", "must be a mapping")]


def test_yaml_duplicate_keys_and_syntax_errors_name_the_line():
    with pytest.raises(yamldoc.DocError) as info:
        yamldoc.load("tenants:\n  - name: a\n    name: b\n", "x.yaml")
    assert str(info.value) == "x.yaml:3: duplicate key 'name'"
    with pytest.raises(yamldoc.DocError) as info:
        yamldoc.load("tenants: [\n", "x.yaml")
    assert str(info.value).startswith("x.yaml:2:")


def test_example_documents_are_valid():
    import glob

    files = sorted(glob.glob("config/examples/*.yaml"))
    assert files
    cand = pol.Policy()
    for path in files:
        doc = yamldoc.load_file(path)
        cand = policydoc.plan(cand, doc.data, path, pol.Allocator({}, 65000, (10000, 20000))).policy
    assert cand.count("vport") >= 5


def problems_of(current, text, adopt=False):
    doc = yamldoc.load(text, "lab.yaml")
    with pytest.raises(PolicyError) as info:
        policydoc.plan(current, doc.data, "lab.yaml", pol.Allocator({}, 65000, (10000, 20000)), adopt=adopt)
    return doc, info.value.problems


def test_two_vports_with_one_name_in_a_subnet_are_refused_with_both_lines():
    twice = DOC.replace("- name: vm2", "- name: vm1")
    doc, found = problems_of(pol.Policy(), twice)
    assert [(p.kind, p.ref, p.code) for p in found] == [("vport", "acme/web/vm1", "duplicate")]
    assert (doc.line_of(found[0].field), doc.line_of(found[0].also)) == (18, 14)
    assert "vport name 'vm1' is used twice in subnet 'acme/web'" in found[0].reason


def test_two_tenants_two_subnets_and_two_bindings_with_one_name_are_refused():
    text = """\
tenants:
  - name: acme
    domains: [{name: prod, subnets: [{name: web}]}]
    subnets: [{name: web}]
  - name: acme
vtep_bindings:
  - {switch: tor1, port: eth1, vlan: 100, subnet: acme/web}
  - {switch: tor1, port: eth1, vlan: 100, subnet: acme/web}
"""
    doc, found = problems_of(pol.Policy(), text)
    got = sorted((p.kind, p.ref, doc.line_of(p.field), doc.line_of(p.also)) for p in found)
    assert got == [("subnet", "acme/web", 4, 3), ("tenant", "acme", 5, 2), ("vtep_binding", "tor1/eth1/100", 8, 7)]


def test_objects_without_names_are_not_reported_as_duplicates():
    found = errors(pol.Policy(), "tenants:\n  - {description: a}\n  - {description: b}\n")
    assert found and all("twice" not in reason for _, _, reason in found)


OTHER = """\
source: other
tenants:
  - name: acme
    description: taken
"""


def test_a_document_of_another_source_is_refused_naming_both_sources():
    first = plan(pol.Policy(), DOC)
    before = {k: dict(v) for k, v in first.policy.objects.items()}
    doc, found = problems_of(first.policy, OTHER)
    assert [(p.kind, p.ref, p.code, doc.line_of(p.field)) for p in found] == [
        ("tenant", "acme", "source_conflict", 3)]
    assert "managed by source 'lab'" in found[0].reason and "source 'other'" in found[0].reason
    assert "--adopt" in found[0].reason
    assert first.policy.objects == before


def test_an_object_created_through_rest_is_not_claimed_silently():
    cand = plan(pol.Policy(), DOC).policy
    cand.put("subnet", api_subnet(cand))
    doc, found = problems_of(cand, DOC.replace("      - name: lan\n", "      - name: lan\n      - name: api\n"))
    assert [(p.ref, p.code) for p in found] == [("acme/api", "source_conflict")]
    assert "REST API" in found[0].reason


def test_adopt_takes_the_objects_over_and_lists_the_fields_it_resets():
    first = plan(pol.Policy(), DOC.replace("  - name: acme\n", "  - name: acme\n    description: mine\n"))
    doc = yamldoc.load(OTHER, "other.yaml")
    taken = policydoc.plan(first.policy, doc.data, "other.yaml", pol.Allocator({}, 65000, (10000, 20000)),
                           adopt=True)
    assert taken.summary == [{"op": "adopt", "kind": "tenant", "ref": "acme", "id": taken.summary[0]["id"],
                              "from_source": "lab",
                              "diff": [{"field": "description", "old": "mine", "new": "taken"}]}]
    assert taken.policy.find("tenant", "acme")["source"] == "other"


def test_updates_carry_field_diffs_with_nested_fields_and_names_for_references():
    first = plan(pol.Policy(), DOC)
    changed = DOC.replace("acls: [web-in]", "acls: []").replace(
        "gateway: 10.0.1.1", "gateway: 10.0.1.1\n            dhcp: {enabled: false}")
    second = plan(first.policy, changed)
    diffs = {c["ref"]: c["diff"] for c in second.summary}
    assert diffs["acme/web/vm1"] == [{"field": "acls", "old": ["acme/web-in"], "new": []}]
    assert {"field": "dhcp.enabled", "old": True, "new": False} in diffs["acme/web"]
    assert all(c["op"] == "update" for c in second.summary)


def test_a_document_cannot_move_an_object_to_another_parent():
    """A subnet's domain is fixed at creation (controller/model.py ``immutable``; docs/policy.md): a document that
    moves one (L2-only into a domain) is refused at the subnet's place, naming the field as a REST update does, and
    changes nothing."""
    first = plan(pol.Policy(), DOC).policy
    moved = DOC.replace("    subnets:\n      - name: lan\n", "").replace(
        "        subnets:\n", "        subnets:\n          - {name: lan, cidr: 10.0.9.0/24, gateway: 10.0.9.1}\n", 1)
    assert errors(first, moved) == [(10, "tenants[0].domains[0].subnets[0]",
                                     "domain_id (the domain it is placed under): cannot be changed after creation")]
    assert first.find("subnet", "acme/lan")["domain_id"] is None


UNNAMED = """\
tenants:
  - nmae: acme
    domains: [{name: prod}]
    subnets: [{name: lan}]
  - name: ok
  - nmae: beta
    description: 5
"""


def test_an_object_without_a_name_is_known_by_its_place_not_as_none():
    """A misspelt `name` gave "tenant 'None'", and two unnamed tenants shared that ref, so the first one's problems
    pointed at the second one's lines. Each is now known by its place in the list; children add no noise."""
    current = plan(pol.Policy(), "tenants: [{name: old}]\n").policy
    before = {k: dict(v) for k, v in current.objects.items()}
    doc = yamldoc.load(UNNAMED, "lab.yaml")
    with pytest.raises(PolicyError) as info:
        policydoc.plan(current, doc.data, "lab.yaml", pol.Allocator({}, 65000, (10000, 20000)))
    found = [(doc.line_of(p.field), p.field, p.reason, p.ref) for p in info.value.problems]
    assert found == [(2, "tenants[0].nmae", "unknown field (did you mean 'name'?)", ""),
                     (2, "tenants[0].name", "is required", ""),
                     (6, "tenants[2].nmae", "unknown field (did you mean 'name'?)", ""),
                     (6, "tenants[2].name", "is required", ""),
                     (7, "tenants[2].description", "must be a string", "")]
    assert "None" not in str(info.value) and "tenant: tenants[0].name: is required" in str(info.value)
    assert {k: dict(v) for k, v in current.objects.items()} == before


@pytest.mark.parametrize("text, where", [
    ("external_networks: [{nmae: pub, cidr: 203.0.113.0/24, gateway: 203.0.113.1}]\n", "external_networks[0]"),
    ("tenants: [{name: a, domains: [{nmae: d}]}]\n", "tenants[0].domains[0]"),
    ("tenants: [{name: a, subnets: [{nmae: s}]}]\n", "tenants[0].subnets[0]"),
    ("tenants: [{name: a, subnets: [{name: s, vports: [{nmae: v, binding: {flavour: kvm}}]}]}]\n",
     "tenants[0].subnets[0].vports[0]"),
    ("tenants: [{name: a, acls: [{nmae: x}]}]\n", "tenants[0].acls[0]"),
    ("tenants: [{name: a, policy_groups: [{nmae: x}]}]\n", "tenants[0].policy_groups[0]"),
    ("tenants: [{name: a, floating_ips: [{nmae: x, external_network: null}]}]\n", "tenants[0].floating_ips[0]"),
    ("tenants: [{name: 5}]\n", "tenants[0]"),
])
def test_every_kind_without_a_name_names_the_field_at_its_place(text, where):
    found = errors(pol.Policy(), text)
    with pytest.raises(PolicyError) as info:
        policydoc.plan(pol.Policy(), yamldoc.load(text, "x").data, "x", pol.Allocator({}, 65000, (10000, 20000)))
    assert {p.ref for p in info.value.problems} == {""}  # not "None", "a/None", "5"
    assert (1, f"{where}.name", "must be a string" if "name: 5" in text else "is required") in found
    if "nmae" in text:
        assert (1, f"{where}.nmae", "unknown field (did you mean 'name'?)") in found


def test_a_vtep_binding_without_its_switch_is_known_by_its_place():
    doc = yamldoc.load("tenants: [{name: a, subnets: [{name: s}]}]\nvtep_bindings:\n  - {swtch: t, port: p, vlan: 1, "
                       "subnet: a/s}\n", "lab.yaml")
    with pytest.raises(PolicyError) as info:
        policydoc.plan(pol.Policy(), doc.data, "lab.yaml", pol.Allocator({}, 65000, (10000, 20000)))
    assert [(p.ref, p.field, p.reason) for p in info.value.problems] == [
        ("", "vtep_bindings[0].swtch", "unknown field (did you mean 'switch'?)"),
        ("", "vtep_bindings[0].switch", "is required")]


def test_a_vtep_binding_whose_port_holds_brackets_is_named_by_its_switch_port_and_vlan():
    """A port named like ``eth[1]`` made the binding's ref look like a place in the document: its problem had an
    empty ref (its field and line were right)."""
    doc = yamldoc.load("tenants: [{name: a, subnets: [{name: s}]}]\nvtep_bindings:\n  - {switch: t, port: 'eth[1]', "
                       "vlan: 1, subnet: a/s, colour: red}\n", "lab.yaml")
    with pytest.raises(PolicyError) as info:
        policydoc.plan(pol.Policy(), doc.data, "lab.yaml", pol.Allocator({}, 65000, (10000, 20000)))
    assert [(p.kind, p.ref, p.field) for p in info.value.problems] == [
        ("vtep_binding", "t/eth[1]/1", "vtep_bindings[0].colour")]
