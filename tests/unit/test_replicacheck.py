"""controller/replicacheck.py's refusal of an id that two kinds' objects share judges the state a batch leads to,
not each change on its way: an id freed by a delete may be another kind's in the same batch (in either order) or a
later one; only an id two objects hold once the batch is in is refused, naming the object, the field and why.
A replicated put of an object the standby holds is an update: a field a REST update may not change (declared
``immutable`` in controller/model.py) is refused, naming the object, the field, both values and why."""

import pytest

from controller.model import SCHEMA, PolicyError, normalise
from controller.policy import Policy
from controller.replicacheck import InvalidReplica, checked_changes
from controller.store import Change

TENANT = {"id": "t1", "source": None, "name": "acme"}
DOMAIN = {"id": "x", "source": None, "name": "prod", "tenant_id": "t1"}
SUBNET = {"id": "x", "source": None, "name": "l2", "tenant_id": "t1"}  # an L2-only subnet: a "scope" as a domain


def with_domain() -> Policy:
    _, policy = checked_changes([Change("tenant", "t1", "put", TENANT, 1, 1, 1.0),
                                 Change("domain", "x", "put", DOMAIN, 2, 2, 2.0)], Policy())
    return policy


def delete_domain(seq):
    return Change("domain", "x", "delete", None, seq, seq, float(seq))


def put_subnet(seq):
    return Change("subnet", "x", "put", dict(SUBNET), seq, seq, float(seq))


@pytest.mark.parametrize("order", ["delete-first", "put-first"])
def test_an_id_a_batch_frees_may_be_another_kinds_in_the_same_batch(order):
    batch = [delete_domain(3), put_subnet(4)] if order == "delete-first" else [put_subnet(3), delete_domain(4)]
    _, policy = checked_changes(batch, with_domain())
    assert policy.get("domain", "x") is None and policy.get("subnet", "x")["name"] == "l2"


def test_an_id_a_batch_freed_may_be_another_kinds_in_a_later_batch():
    _, policy = checked_changes([delete_domain(3)], with_domain())
    _, policy = checked_changes([put_subnet(4)], policy)
    assert policy.get("subnet", "x")["name"] == "l2"


def test_an_id_held_by_two_kinds_once_the_batch_is_in_is_refused_and_the_policy_given_is_untouched():
    policy = with_domain()
    with pytest.raises(InvalidReplica, match=r"^subnet 'x': id: also the id of a domain \(an id names one object\)$"):
        checked_changes([put_subnet(3)], policy)
    assert policy.get("domain", "x") and policy.get("subnet", "x") is None


# ------------------------------------------------------------------ the fields a REST update may not change

def _body(oid, **fields):
    return {"id": oid, "source": None, **fields}


HELD = {  # kind -> {id: body}: every kind, in an order a creation accepts, and a second of each parent to move to
    "tenant": {"t1": _body("t1", name="acme"), "t2": _body("t2", name="other")},
    "external_network": {"e1": _body("e1", name="pub", cidr="203.0.113.0/24", gateway="203.0.113.1"),
                         "e2": _body("e2", name="pub2", cidr="198.51.100.0/24", gateway="198.51.100.1")},
    "domain": {"d1": _body("d1", name="prod", tenant_id="t1"), "d2": _body("d2", name="dev", tenant_id="t1")},
    "subnet": {"s1": _body("s1", name="web", tenant_id="t1", domain_id="d1", cidr="10.0.1.0/24", gateway="10.0.1.1"),
               "l2": _body("l2", name="lan", tenant_id="t1"), "l3": _body("l3", name="lan2", tenant_id="t1")},
    "vport": {"v1": _body("v1", name="vm1", subnet_id="l2", mac="02:00:00:00:00:01", binding={"flavour": "kvm"})},
    "acl": {"a1": _body("a1", name="web-in", tenant_id="t1")},
    "policy_group": {"g1": _body("g1", name="web", tenant_id="t1")},
    "floating_ip": {"f1": _body("f1", name="fip", tenant_id="t1", external_network_id="e1", address="203.0.113.10")},
    "vtep_binding": {"b1": _body("b1", switch="tor1", port="p1", vlan=100, subnet_id="l2")},
}

# kind, id, the put's changed fields -> the fields named, as "field (held here: old, replicated: new)"
IMMUTABLE = {
    "domain.tenant_id": ("domain", "d2", {"tenant_id": "t2"}),
    "subnet.tenant_id": ("subnet", "l3", {"tenant_id": "t2"}),
    "subnet.domain_id": ("subnet", "s1", {"domain_id": "d2"}),
    "subnet.domain_id-to-none": ("subnet", "s1", {"domain_id": None}),
    "vport.subnet_id": ("vport", "v1", {"subnet_id": "l3"}),
    "acl.tenant_id": ("acl", "a1", {"tenant_id": "t2"}),
    "policy_group.tenant_id": ("policy_group", "g1", {"tenant_id": "t2"}),
    "floating_ip.tenant_id": ("floating_ip", "f1", {"tenant_id": "t2"}),
    "floating_ip.external_network_id": ("floating_ip", "f1", {"external_network_id": "e2",
                                                              "address": "198.51.100.10"}),
    "floating_ip.address": ("floating_ip", "f1", {"address": "203.0.113.11"}),
}


def held() -> Policy:
    bodies = [(kind, oid, body) for kind, objs in HELD.items() for oid, body in objs.items()]
    changes = [Change(kind, oid, "put", dict(body), n, n, float(n)) for n, (kind, oid, body) in enumerate(bodies, 1)]
    return checked_changes(changes, Policy())[1]


def put(policy, kind, oid, seq=100, **changed):
    return Change(kind, oid, "put", {**policy.get(kind, oid), **changed}, seq, seq, float(seq))


def test_the_cases_cover_every_field_the_model_declares_immutable():
    declared = {f"{kind}.{spec.name}" for kind, specs in SCHEMA.items() for spec in specs if spec.immutable}
    assert declared == {case.split("-")[0] for case in IMMUTABLE}


@pytest.mark.parametrize("case", IMMUTABLE, ids=IMMUTABLE)
def test_a_replicated_put_that_changes_an_immutable_field_is_refused_naming_it_and_the_policy_is_untouched(case):
    kind, oid, changed = IMMUTABLE[case]
    policy = held()
    before = {k: dict(objs) for k, objs in policy.objects.items()}
    with pytest.raises(InvalidReplica) as refused:
        checked_changes([put(policy, kind, oid, **changed)], policy)
    name = HELD[kind][oid]["name"]
    assert str(refused.value) == f"{kind} {oid!r}: " + "; ".join(
        f"{kind} {name!r}: {field}: cannot be changed after creation (held here: "
        f"{policy.get(kind, oid)[field]!r}, replicated: {value!r})" for field, value in changed.items())
    assert policy.objects == before


@pytest.mark.parametrize("case", IMMUTABLE, ids=IMMUTABLE)
def test_a_rest_update_refuses_the_same_change(case):
    """The same rule (controller.model.immutable_problems) as a REST PATCH of the object, through normalise."""
    kind, oid, changed = IMMUTABLE[case]
    current = held().get(kind, oid)
    with pytest.raises(PolicyError) as refused:
        normalise(kind, changed, current=current)
    assert [(p.field, p.reason) for p in refused.value.problems] == [
        (field, "cannot be changed after creation") for field in changed]


def test_a_refused_put_refuses_its_whole_batch():
    """A batch is refused as a whole: the legal put before the bad one is not kept either."""
    policy = held()
    with pytest.raises(InvalidReplica, match=r"^vport 'v1': vport 'vm1': subnet_id: cannot be changed"):
        checked_changes([put(policy, "tenant", "t1", 100, description="legal"),
                         put(policy, "vport", "v1", 101, subnet_id="l3")], policy)
    assert policy.get("tenant", "t1")["description"] == ""


def test_a_put_that_changes_what_an_earlier_put_of_the_batch_created_is_refused():
    policy = held()
    fresh = _body("v2", name="vm2", subnet_id="l2", mac="02:00:00:00:00:02", binding={"flavour": "kvm"})
    with pytest.raises(InvalidReplica, match=r"^vport 'v2': vport 'vm2': subnet_id: cannot be changed after creation "
                                             r"\(held here: 'l2', replicated: 'l3'\)$"):
        checked_changes([Change("vport", "v2", "put", fresh, 100, 100, 100.0),
                         Change("vport", "v2", "put", {**fresh, "subnet_id": "l3"}, 101, 101, 101.0)], policy)


@pytest.mark.parametrize("kind, oid, field, value", [
    ("tenant", "t1", "name", "acme2"), ("domain", "d1", "description", "the prod domain"),
    ("subnet", "s1", "gateway", "10.0.1.254"), ("vport", "v1", "mac", "02:00:00:00:00:09"),
    ("acl", "a1", "priority", 5), ("policy_group", "g1", "name", "web2"), ("floating_ip", "f1", "name", "fip2"),
    ("external_network", "e1", "gateway", "203.0.113.254"), ("subnet", "s1", "vni", 5001),
    ("vtep_binding", "b1", "subnet_id", "l3")])
def test_a_legal_replicated_put_of_a_held_object_applies(kind, oid, field, value):
    """Mutable fields (auto ones included: a REST PATCH may set them; a hardware VTEP binding's subnet) change; the
    immutable ones are given unchanged."""
    policy = held()
    out, after = checked_changes([put(policy, kind, oid, **{field: value})], policy)
    assert after.get(kind, oid)[field] == value and out[0].body[field] == value
    assert policy.get(kind, oid)[field] != value


def without_floating_ips() -> Policy:
    """held() without its floating IP, whose presence makes every subnet change run the full policy check
    (controller/policyindex.py): the local checks are what a batch could slip past."""
    return checked_changes([Change("floating_ip", "f1", "delete", None, 50, 50, 50.0)], held())[1]


@pytest.mark.parametrize("kind, oid, changed, field, was", [
    ("subnet", "l2", {"tenant_id": "t2"}, "tenant_id", "t1"),   # its vport's ACL would be another tenant's
    ("subnet", "s1", {"domain_id": "d2"}, "domain_id", "d1"),   # prod's static route would lose its subnet
    ("vport", "v1", {"subnet_id": "l3"}, "subnet_id", "l2")])
def test_a_put_of_an_object_the_batch_deleted_first_keeps_the_fields_fixed_at_creation(kind, oid, changed, field,
                                                                                        was):
    """A REST write never puts an id again (each object gets a new UUID), and State, comparing each object before
    and after the batch, would see the object changed in place: the put is an update of the object the standby held.
    (Judged as a creation, a subnet deleted and put again in another tenant or domain passed the policy check with a
    vport holding another tenant's ACL, or a static route whose next hop is in none of its domain's subnets: the
    local checks presume these fields stay, and the deletion that would run the full check was hidden.)"""
    policy = without_floating_ips()
    _, policy = checked_changes([put(policy, "vport", "v1", 60, acls=["a1"]),
                                 put(policy, "domain", "d1", 61, static_routes=[
                                     {"prefix": "10.9.0.0/16", "next_hop": "10.0.1.5"}])], policy)
    before = {k: dict(objs) for k, objs in policy.objects.items()}
    with pytest.raises(InvalidReplica, match=rf"^{kind} '{oid}': {kind} '[^']+': {field}: cannot be changed after "
                                             rf"creation \(held here: '{was}', replicated: "):
        checked_changes([Change(kind, oid, "delete", None, 100, 100, 100.0), put(policy, kind, oid, 101, **changed)],
                        policy)
    assert policy.objects == before


def test_a_put_of_an_object_the_batch_deleted_first_applies_when_its_fixed_fields_stay():
    policy = held()
    out, after = checked_changes([Change("vport", "v1", "delete", None, 100, 100, 100.0),
                                  put(policy, "vport", "v1", 101, name="vm1b")], policy)
    assert after.get("vport", "v1")["name"] == "vm1b" and [c.op for c in out] == ["delete", "put"]


def test_an_object_the_batch_created_and_deleted_is_created_again_as_new():
    """Before and after the batch the standby holds no other version of it: the last put is a creation."""
    policy = held()
    fresh = _body("v2", name="vm2", subnet_id="l2", mac="02:00:00:00:00:02", binding={"flavour": "kvm"})
    _, after = checked_changes([Change("vport", "v2", "put", fresh, 100, 100, 100.0),
                                Change("vport", "v2", "delete", None, 101, 101, 101.0),
                                Change("vport", "v2", "put", {**fresh, "subnet_id": "l3"}, 102, 102, 102.0)], policy)
    assert after.get("vport", "v2")["subnet_id"] == "l3"


# ------------------------------------------------------------------ which change the refusal names

def test_a_refusal_names_the_change_that_broke_the_rule_not_the_batchs_first():
    """The standby tells the active which change it refused (controller/replication.py Applier: its seq and ts)."""
    policy = held()
    legal, bad = put(policy, "tenant", "t1", 100, description="legal"), put(policy, "vport", "v1", 101, subnet_id="l3")
    with pytest.raises(InvalidReplica) as refused:
        checked_changes([legal, bad], policy)
    assert (refused.value.change.seq, refused.value.change.ts) == (101, 101.0)


def test_a_policy_rule_a_batch_breaks_names_the_put_of_the_object_it_is_about():
    policy = held()
    legal = put(policy, "tenant", "t1", 100, description="legal")
    dangling = Change("domain", "d9", "put", _body("d9", name="lost", tenant_id="nope"), 101, 101, 101.0)
    with pytest.raises(InvalidReplica) as refused:
        checked_changes([legal, dangling, put(policy, "tenant", "t2", 102, description="legal too")], policy)
    assert str(refused.value) == "domain 'd9': domain 'nope/lost': tenant_id: no tenant with id 'nope'"
    assert (refused.value.change.seq, refused.value.change.ts) == (101, 101.0)


def test_a_deletion_that_leaves_a_reference_dangling_is_the_change_named():
    """The object the rule names is held, not put by the batch: the change that broke it is the batch's delete of what
    it refers to (tenant t1, which the held domains and subnets name), not the batch's first change."""
    policy = held()
    legal = put(policy, "tenant", "t2", 100, description="legal")
    unrelated = Change("vport", "gone", "delete", None, 101, 101, 101.0)  # a delete the problems do not refer to
    with pytest.raises(InvalidReplica) as refused:
        checked_changes([legal, Change("tenant", "t1", "delete", None, 102, 102, 102.0), unrelated], policy)
    assert (refused.value.change.seq, refused.value.change.ts) == (102, 102.0)
    assert str(refused.value).startswith("tenant 't1': domain 't1/prod': tenant_id: no tenant with id 't1'")
