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
    assert p.counts() == {"tenant": 1, "domain": 1, "subnet": 2, "vport": 2, "acl": 1, "vtep_binding": 1}
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
