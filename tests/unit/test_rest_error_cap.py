"""A write with thousands of bad list items (references, values, unknown keys) is refused with a clear, short 400/422:
the first 20 problems, then "and N more" naming the field; and the work it costs the hub does not grow with the
list past what checking each item once needs (a PATCH with 10,000 bad references listed 10,000 errors and held the
hub ~110-150 ms: each problem's text, object path and JSON). Counted in bytecodes, never in seconds."""

from __future__ import annotations

import pytest

from controller.model import LISTED, Problem, PolicyError, listed, normalise
from tests.unit.helpers import Controller
from tests.unit.test_duplicate_macs_pass import opcodes
from tests.unit.test_rest import demo_net, snapshot


@pytest.fixture
def ctl(tmp_path):
    c = Controller(tmp_path)
    yield c
    c.close()


N = 4_000  # bad items of a list (a list holds at most MAX_ITEMS, 4,096)


def objects(ctl):
    tenant, domain, subnet = demo_net(ctl)
    vport = ctl.create("vports", {"subnet_id": subnet["id"], "name": "vm1", "mac": "02:00:00:00:01:01",
                                  "binding": {"flavour": "kvm"}})
    acl = ctl.create("acls", {"tenant_id": tenant["id"], "name": "web-in"})
    return f"/v1/vports/{vport['id']}", f"/v1/acls/{acl['id']}"


def bodies(vport, acl, n):
    """Each kind of bad list of ``n`` items, and where it goes."""
    return {
        "acls": (vport, {"acls": [f"no-acl-{i}" for i in range(n)]}),
        "policy_groups": (vport, {"policy_groups": [f"no-group-{i}" for i in range(n)]}),
        "acl policy_groups": (acl, {"policy_groups": [f"no-group-{i}" for i in range(n)]}),
        "ips": (vport, {"ips": [f"not-an-ip-{i}" for i in range(n)]}),
        "acls not strings": (vport, {"acls": list(range(n))}),
        "unknown keys": (vport, {f"mack{i}": 1 for i in range(n)}),
        "rules": (acl, {"rules": [{"action": "allow", "direction": "ingress"}] * n}),
    }


@pytest.mark.parametrize("case", list(bodies("", "", 1)))
def test_thousands_of_bad_items_are_refused_listing_the_first_twenty_and_the_field_of_the_rest(ctl, case):
    vport, acl = objects(ctl)
    before = snapshot(ctl)
    path, body = bodies(vport, acl, N)[case]
    status, reply = ctl.call("PATCH", path, body)
    assert status in (400, 422) and snapshot(ctl) == before
    errors = reply["error"]["errors"]
    assert len(errors) <= LISTED + 1, len(errors)
    field = next(iter(body))
    if case == "rules":
        assert errors == [{**errors[0], "field": "rules", "reason": "at most 1,000 rules in one ACL (4,000 given)"}]
        return
    assert errors[0]["field"] == (field if case == "unknown keys" else f"{field}[0]")
    last = errors[-1]
    assert "more" in last["reason"], last
    assert last["field"] == ("" if case == "unknown keys" else field), last
    assert str(N - LISTED) in last["reason"].replace(",", ""), last


@pytest.mark.parametrize("case", ["acls", "policy_groups", "acl policy_groups", "ips", "acls not strings",
                                  "unknown keys"])
def test_the_work_of_a_refusal_grows_by_a_few_bytecodes_an_item_not_by_a_problem_each(ctl, case):
    """4,000 bad items against 1,000: the difference is reading each item once (its JSON, its check, its reference
    looked up), under 100 bytecodes an item (~77 for a reference); before, ~1,030, each a problem described with its
    object's path and written out as JSON."""
    vport, acl = objects(ctl)
    cost = {}
    for n in (1_000, N):
        path, body = bodies(vport, acl, n)[case]
        cost[n] = opcodes(lambda: ctl.call("PATCH", path, body))
    per_item = (cost[N] - cost[1_000]) / (N - 1_000)
    assert per_item < 100, (case, cost, per_item)


def test_listed_keeps_the_first_and_sums_up_the_rest_by_field():
    problems = [Problem("vport", "a/b/c", f"acls[{i}]", "no acl", "not_found") for i in range(30)] + \
        [Problem("vport", "a/b/c", f"ips[{i}]", "bad") for i in range(5)] + \
        [Problem("vport", "a/b/c", f"f{i}", "unknown field") for i in range(10)]
    out = listed(problems)
    assert out[:LISTED] == problems[:LISTED]
    assert out[LISTED:LISTED + 3] == [
        Problem("vport", "a/b/c", "acls", "and 10 more problems of this field (not listed)", "not_found", more=10),
        Problem("vport", "a/b/c", "ips", "and 5 more problems of this field (not listed)", more=5),
        Problem("vport", "a/b/c", "f0", "unknown field")]  # a field's only problem left: as it is
    assert out[-1] == Problem("vport", "a/b/c", "", "and 7 more problems with 7 other fields (not listed)", more=7)
    assert len(out) == LISTED + 6 and str(PolicyError(problems)).count(";") == LISTED + 5
    assert listed(problems[:LISTED]) == problems[:LISTED]


def test_a_list_over_its_limit_is_refused_by_its_count_before_its_items_are_checked(ctl):
    """A body of 1,000,000 ids (well inside 32 MiB and the decoder's limits) was checked item by item, ~0.5 s of the
    hub; a list field now holds at most MAX_ITEMS unless it has a limit of its own."""
    from controller.model import MAX_ITEMS

    vport, acl = objects(ctl)
    before = snapshot(ctl)
    for field in ("acls", "policy_groups", "ips"):
        status, reply = ctl.call("PATCH", vport, {field: [f"x{i}" for i in range(MAX_ITEMS + 1)]})
        assert status == 422 and reply["error"]["errors"] == [
            {"kind": "vport", "ref": "acme/web/vm1", "field": field, "code": "invalid",
             "reason": f"at most {MAX_ITEMS:,} items ({MAX_ITEMS + 1:,} given)"}]
    body = {"subnet_id": "s", "name": "bm", "mac": "02:00:00:00:0b:01", "binding": {"flavour": "kvm"},
            "acls": ["x"] * 200_000}  # (its JSON decoded in windows with pauses between: controller/rest/jsonbody.py)
    with pytest.raises(PolicyError, match="acls: at most 4,096 items"):
        normalise("vport", body)
    cost = opcodes(lambda: pytest.raises(PolicyError, normalise, "vport", body))
    assert cost < 20_000, cost  # the count, not the items (before: ~25 bytecodes an item, 5,000,000)
    assert snapshot(ctl) == before


def test_a_list_held_over_its_limit_is_kept_by_an_update_a_document_applied_again_and_a_replica(ctl, monkeypatch):
    """A limit refuses a list that grows past it, never one stored already (before the limit came, at stop 41): a
    domain holding 5,000 static routes could not be renamed, nor its document applied again, nor replicated."""
    from controller import model
    from controller.replicacheck import stored_object

    routes = [{"prefix": f"172.16.{i // 256}.{i % 256}/32", "next_hop": "10.0.1.10"} for i in range(5_000)]
    doc = {"tenants": [{"name": "acme", "domains": [{"name": "prod", "static_routes": routes, "subnets": [
        {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1"}]}]}]}
    with monkeypatch.context() as before_the_limit:
        before_the_limit.setattr(model, "MAX_ITEMS", 10_000)
        status, reply = ctl.call("POST", "/v1/apply", {"document": doc, "source": "ops"})
        assert status == 200, reply
    (domain,) = ctl.call("GET", "/v1/domains")[1]["items"]
    assert len(domain["static_routes"]) == 5_000
    status, reply = ctl.call("POST", "/v1/apply", {"document": doc, "source": "ops"})  # the same document again
    assert status == 200, reply
    status, reply = ctl.call("PATCH", f"/v1/domains/{domain['id']}", {"default_acl_action": "allow"})
    assert status == 200, reply
    status, reply = ctl.call("PATCH", f"/v1/domains/{domain['id']}", {"static_routes": routes[:-1]})
    assert status == 200, reply  # (shorter: still over the limit, never longer than held)
    held = ctl.call("GET", f"/v1/domains/{domain['id']}")[1]
    body = {k: v for k, v in held.items() if k in {s.name for s in model.SCHEMA["domain"]} | {"id", "source"}}
    assert stored_object("domain", domain["id"], body, current=body)["static_routes"] == routes[:-1]
    grown = routes[:-1] + [{"prefix": "172.17.0.0/32", "next_hop": "10.0.1.10"}] * 2
    status, reply = ctl.call("PATCH", f"/v1/domains/{domain['id']}", {"static_routes": grown})
    assert status == 422 and reply["error"]["errors"][0]["reason"] == "at most 4,096 items (5,001 given)", reply


def test_a_snapshot_of_an_active_holding_a_list_over_its_limit_is_taken_by_the_standby():
    """The active may hold a list stored before its limit came: its whole snapshot was refused by every standby,
    which then never synced. A put that grows a list past its limit is still refused."""
    from controller.replicacheck import InvalidReplica, checked_snapshot, stored_object

    tenant = {"id": "t1", "source": None, "name": "acme"}
    domain = {"id": "d1", "source": None, "tenant_id": "t1", "name": "prod", "import_rts": [f"65000:{i}" for i in range(5_000)]}
    policy = checked_snapshot({"objects": {"tenant": {"t1": tenant}, "domain": {"d1": domain}}, "meta": {}})
    assert len(policy.get("domain", "d1")["import_rts"]) == 5_000
    with pytest.raises(InvalidReplica, match="import_rts: at most 4,096 items"):
        stored_object("domain", "d1", domain)
