"""The /v1 API through Api.handle: status codes, JSON errors, auth, and that refused writes change nothing."""

import pytest

from controller.rest.openapi import document

from .helpers import Controller, demo_net


@pytest.fixture
def ctl(tmp_path):
    c = Controller(tmp_path)
    yield c
    c.close()


def snapshot(ctl):
    """Everything a refused request must leave as it was: objects, change log, counters."""
    return (ctl.store.load_objects(), ctl.store.last_seq(), ctl.store.get_meta("counters"),
            {k: dict(v) for k, v in ctl.state.policy.objects.items()})


def test_create_get_list_update_delete_round_trip(ctl):
    tenant, domain, subnet = demo_net(ctl)
    assert subnet["vni"] and subnet["rd"] and subnet["ref"] == "acme/web"
    status, got = ctl.call("GET", f"/v1/subnets/{subnet['id']}")
    assert status == 200 and got == subnet
    status, listing = ctl.call("GET", "/v1/subnets", query={"domain_id": domain["id"]})
    assert status == 200 and [s["id"] for s in listing["items"]] == [subnet["id"]]
    status, changed = ctl.call("PATCH", f"/v1/subnets/{subnet['id']}", {"description": "front end"})
    assert status == 200 and changed["description"] == "front end" and changed["vni"] == subnet["vni"]
    status, reply = ctl.call("DELETE", f"/v1/tenants/{tenant['id']}")
    assert status == 409 and reply["error"]["code"] == "has_dependents"
    status, reply = ctl.call("DELETE", f"/v1/tenants/{tenant['id']}", query={"cascade": "true"})
    assert status == 200 and {d["kind"] for d in reply["deleted"]} == {"tenant", "domain", "subnet"}
    assert ctl.call("GET", f"/v1/subnets/{subnet['id']}")[0] == 404


def test_vport_shows_where_it_is_attached(ctl):
    _, _, subnet = demo_net(ctl)
    vport = ctl.create("vports", {"subnet_id": subnet["id"], "name": "vm1", "mac": "02:00:00:00:00:01",
                                  "binding": {"flavour": "kvm"}})
    assert vport["status"] == "unbound" and vport["location"] is None and vport["ips"] == ["10.0.1.2"]


@pytest.mark.parametrize("raw, ctype, status, code", [
    (b"{not json", "application/json", 400, "bad_json"),
    (b"[1, 2]", "application/json", 400, "bad_json"),
    (b"\xff\xfe", "application/json", 400, "bad_json"),
    (b'{"name": "x"}', "text/xml", 415, "unsupported_media_type"),
])
def test_malformed_bodies_are_4xx_json_and_change_nothing(ctl, raw, ctype, status, code):
    demo_net(ctl)
    before = snapshot(ctl)
    got, reply = ctl.call("POST", "/v1/tenants", raw=raw, ctype=ctype)
    assert (got, reply["error"]["code"]) == (status, code)
    assert snapshot(ctl) == before


def test_unknown_field_names_the_field(ctl):
    before = snapshot(ctl)
    status, reply = ctl.call("POST", "/v1/tenants", {"name": "acme", "colour": "red"})
    assert status == 422 and reply["error"]["field"] == "colour" and reply["error"]["reason"] == "unknown field"
    assert snapshot(ctl) == before


def test_invalid_cidr_is_422_naming_cidr_and_changes_nothing(ctl):
    tenant, domain, _ = demo_net(ctl)
    before = snapshot(ctl)
    status, reply = ctl.call("POST", "/v1/subnets", {"tenant_id": tenant["id"], "domain_id": domain["id"],
                                                     "name": "db", "cidr": "10.0.300.0/24", "gateway": "10.0.3.1"})
    assert status == 422 and reply["error"]["field"] == "cidr" and "not an IPv4 CIDR" in reply["error"]["reason"]
    assert snapshot(ctl) == before


def test_overlap_is_a_409_conflict_naming_cidr(ctl):
    tenant, domain, _ = demo_net(ctl)
    before = snapshot(ctl)
    status, reply = ctl.call("POST", "/v1/subnets", {"tenant_id": tenant["id"], "domain_id": domain["id"],
                                                     "name": "db", "cidr": "10.0.1.0/25", "gateway": "10.0.1.126"})
    assert status == 409 and reply["error"]["field"] == "cidr" and "overlaps" in reply["error"]["reason"]
    assert snapshot(ctl) == before


def test_writes_need_the_token(ctl):
    before = snapshot(ctl)
    status, reply = ctl.call("POST", "/v1/tenants", {"name": "acme"}, token=None)
    assert status == 401 and reply["error"]["code"] == "unauthorized"
    status, _ = ctl.call("POST", "/v1/tenants", {"name": "acme"}, token="wrong")
    assert status == 401
    assert snapshot(ctl) == before


def test_reads_are_open_on_loopback_only_by_default(ctl):
    assert ctl.call("GET", "/v1/status", token=None, remote="127.0.0.1")[0] == 200
    assert ctl.call("GET", "/v1/status", token=None, remote="::1")[0] == 200
    assert ctl.call("GET", "/v1/status", token=None, remote="10.250.0.9")[0] == 401
    assert ctl.call("GET", "/v1/status", remote="10.250.0.9")[0] == 200


def test_unknown_path_method_and_query(ctl):
    assert ctl.call("GET", "/v1/nothing")[1]["error"]["code"] == "not_found"
    status, reply = ctl.call("PUT", "/v1/tenants")
    assert status == 405 and "GET" in reply["error"]["reason"]
    status, reply = ctl.call("GET", "/v1/tenants", query={"colour": "red"})
    assert status == 400 and reply["error"]["field"] == "colour"
    assert ctl.call("GET", "/v1/tenants/does-not-exist")[0] == 404
    assert ctl.call("GET", "/v1/switches/zz")[0] == 400


def test_a_documented_endpoint_a_setting_turns_on_says_which_setting_when_off(ctl):
    """README sends operators to GET /v1/stretches and PUT /v1/ha/solo; without CANOPY_STRETCH_TRACE or ha.peer
    they answered "no such endpoint". The 404 stays; its reason says what turns each on."""
    status, reply = ctl.call("GET", "/v1/stretches")
    assert status == 404 and reply["error"]["code"] == "not_found"
    assert "CANOPY_STRETCH_TRACE" in reply["error"]["reason"]
    status, reply = ctl.call("PUT", "/v1/ha/solo", {"solo": True})
    assert status == 404 and "not one of an HA pair" in reply["error"]["reason"]
    assert "no such endpoint" in ctl.call("GET", "/v1/stretch")[1]["error"]["reason"]


def test_an_apply_with_an_unknown_field_is_refused_naming_it_and_changes_nothing(ctl):
    before = snapshot(ctl)
    status, reply = ctl.call("POST", "/v1/apply", {"document": {"tenants": [{"name": "acme"}]}, "purge": True})
    assert status == 422 and reply["error"]["field"] == "purge" and reply["error"]["reason"] == "unknown field"
    assert snapshot(ctl) == before


def test_the_settings_file_posted_as_a_document_is_named_so_and_changes_nothing(ctl):
    """POST /v1/apply with config/canopy.yaml's content: one problem saying it is the settings file (it was one
    "unknown top-level key" per section), a 422, and nothing written."""
    before = snapshot(ctl)
    status, reply = ctl.call("POST", "/v1/apply", {"document": {"data_dir": "/var/lib/canopy", "rest": {"port": 8080}}})
    assert status == 422 and len(reply["error"]["errors"]) == 1
    assert reply["error"]["reason"].startswith("this is a settings file of the controller (data_dir, rest)")
    assert snapshot(ctl) == before


def test_internal_errors_are_json_500_without_traceback(ctl, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("secret detail")

    monkeypatch.setattr(ctl.service, "create", boom)
    status, reply = ctl.call("POST", "/v1/tenants", {"name": "x"})
    assert status == 500 and "secret detail" not in str(reply) and reply["error"]["code"] == "internal"


def test_apply_endpoint_is_idempotent_and_reports_document_paths(ctl):
    doc = {"tenants": [{"name": "acme", "subnets": [{"name": "lan"}]}]}
    status, first = ctl.call("POST", "/v1/apply", {"document": doc, "source": "t"})
    assert status == 200 and len(first["changes"]) == 2
    status, second = ctl.call("POST", "/v1/apply", {"document": doc, "source": "t"})
    assert status == 200 and second["changes"] == [] and second["seq"] == first["seq"]
    bad = {"tenants": [{"name": "acme", "subnets": [{"name": "lan", "cidr": "nope"}]}]}
    before = snapshot(ctl)
    status, reply = ctl.call("POST", "/v1/apply", {"document": bad, "source": "t"})
    assert status == 422 and reply["error"]["errors"][0]["field"] == "tenants[0].subnets[0].cidr"
    assert snapshot(ctl) == before
    assert ctl.call("POST", "/v1/apply", {"document": doc, "sauce": "t"})[1]["error"]["field"] == "sauce"


def test_dry_run_changes_nothing(ctl):
    before = snapshot(ctl)
    status, reply = ctl.call("POST", "/v1/apply", {"document": {"tenants": [{"name": "a"}]}, "dry_run": True})
    assert status == 200 and reply["changes"][0]["op"] == "create"
    assert snapshot(ctl) == before


def test_change_log_has_a_sequence_number_per_change(ctl):
    demo_net(ctl)
    status, reply = ctl.call("GET", "/v1/changes", query={"since": "1"})
    assert status == 200 and [c["seq"] for c in reply["items"]] == [2, 3]
    assert [c["kind"] for c in reply["items"]] == ["domain", "subnet"] and reply["last_seq"] == 3


def test_openapi_describes_every_route_and_kind(ctl):
    status, doc = ctl.call("GET", "/v1/openapi.json")
    assert status == 200 and doc == document(ctl.api.routes)
    served = {(r.method.lower(), r.pattern) for r in ctl.api.routes}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert served == documented
    create = doc["components"]["schemas"]["subnet_create"]
    assert create["additionalProperties"] is False and "cidr" in create["properties"]
    assert set(create["required"]) == {"tenant_id", "name"}
    assert doc["paths"]["/v1/tenants"]["post"]["security"] == [{"bearer": []}]
    post = doc["paths"]["/v1/tenants"]["post"]  # an object route: its kind's schemas, 201 with links
    assert post["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/tenant_create"}
    assert post["responses"]["201"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/tenant"}


def test_openapi_request_schemas_match_what_the_server_accepts(ctl):
    """Every property the create schema lists is accepted, and a property it does not list is refused."""
    doc = ctl.call("GET", "/v1/openapi.json")[1]
    props = doc["components"]["schemas"]["tenant_create"]["properties"]
    status, _ = ctl.call("POST", "/v1/tenants", {k: "x1" for k in props})
    assert status == 201
    assert ctl.call("POST", "/v1/tenants", {"name": "x2", "not_in_schema": 1})[0] == 422


def test_apply_refuses_duplicates_naming_both_paths_and_changes_nothing(ctl):
    before = snapshot(ctl)
    doc = {"tenants": [{"name": "acme", "subnets": [{"name": "lan", "vports": [
        {"name": "vm1", "mac": "02:00:00:00:00:01"}, {"name": "vm1", "mac": "02:00:00:00:00:02"}]}]}]}
    status, reply = ctl.call("POST", "/v1/apply", {"document": doc, "source": "t"})
    assert status == 422 and reply["error"]["code"] == "duplicate"
    assert reply["error"]["errors"][0]["field"] == "tenants[0].subnets[0].vports[1].name"
    assert reply["error"]["errors"][0]["also"] == "tenants[0].subnets[0].vports[0].name"
    assert "first at tenants[0].subnets[0].vports[0].name" in reply["error"]["message"]
    assert snapshot(ctl) == before


def test_apply_refuses_a_source_change_unless_adopt_and_dry_run_shows_the_diff(ctl):
    assert ctl.call("POST", "/v1/apply", {"document": {"tenants": [{"name": "acme", "description": "a"}]},
                                          "source": "one"})[0] == 200
    before = snapshot(ctl)
    other = {"document": {"tenants": [{"name": "acme"}]}, "source": "two"}
    status, reply = ctl.call("POST", "/v1/apply", other)
    assert status == 409 and reply["error"]["code"] == "source_conflict"
    assert reply["error"]["errors"][0]["ref"] == "acme" and "source 'one'" in reply["error"]["reason"]
    assert snapshot(ctl) == before
    status, reply = ctl.call("POST", "/v1/apply", {**other, "adopt": True, "dry_run": True})
    assert status == 200 and reply["changes"] == [{
        "op": "adopt", "kind": "tenant", "ref": "acme", "id": reply["changes"][0]["id"], "from_source": "one",
        "diff": [{"field": "description", "old": "a", "new": ""}]}]
    assert snapshot(ctl) == before
    assert ctl.call("POST", "/v1/apply", {**other, "adopt": "yes"})[1]["error"]["field"] == "adopt"
    status, reply = ctl.call("POST", "/v1/apply", {**other, "adopt": True})
    assert status == 200 and ctl.call("GET", "/v1/tenants")[1]["items"][0]["source"] == "two"


def test_a_rest_created_object_is_claimed_by_a_document_only_with_adopt(ctl):
    ctl.create("tenants", {"name": "acme"})
    status, reply = ctl.call("POST", "/v1/apply", {"document": {"tenants": [{"name": "acme"}]}})
    assert status == 409 and "REST API" in reply["error"]["reason"]


def test_vport_and_switch_views_report_a_mac_mismatch(ctl):
    from controller.discovery import PortInfo, VrsSnapshot

    _, _, subnet = demo_net(ctl)
    vport = ctl.create("vports", {"subnet_id": subnet["id"], "name": "vm1", "mac": "02:00:00:00:00:01",
                                  "binding": {"flavour": "kvm", "iface_id": "vm1"}})
    tap = PortInfo("tap1", 5, "02:00:00:00:00:09", (("attached-mac", "02:00:00:00:00:09"), ("iface-id", "vm1")))
    ctl.state.vrs_update(VrsSnapshot("s1", "10.0.0.1:1", "hv1", datapath_id=1, bridge_present=True, ports=(tap,)))
    got = ctl.call("GET", f"/v1/vports/{vport['id']}")[1]
    assert got["status"] == "mac_mismatch" and got["location"]["port"] == "tap1"
    assert got["mac_mismatch"] == {"policy": "02:00:00:00:00:01", "hypervisor": "02:00:00:00:00:09"}
    port = ctl.call("GET", "/v1/switches")[1]["items"][0]["ports"][0]
    assert port["vport"]["status"] == "mac_mismatch" and port["vport"]["ref"] == "acme/web/vm1"
    status = ctl.call("GET", "/v1/status")[1]
    assert (status["vports_bound"], status["vports_mac_mismatch"]) == (0, 1)


def test_uptime_does_not_follow_a_step_of_the_wall_clock(tmp_path, monkeypatch):
    """The wall clock stepped an hour back (NTP): the uptime was time.time() - start, so it went negative."""
    import time

    ctl = Controller(tmp_path)
    try:
        wall = time.time
        monkeypatch.setattr(time, "time", lambda: wall() - 3600.0)
        status, reply = ctl.call("GET", "/v1/status")
        assert status == 200 and 0 <= reply["uptime"] < 3600
    finally:
        ctl.close()


def test_apply_names_a_tenant_without_a_name_by_its_place_and_changes_nothing(ctl):
    before = snapshot(ctl)
    status, reply = ctl.call("POST", "/v1/apply", {"document": {"tenants": [{"nmae": "acme"}]}, "source": "t"})
    assert status == 422 and "None" not in str(reply)
    assert [(e["ref"], e["field"], e["reason"]) for e in reply["error"]["errors"]] == [
        ("", "tenants[0].nmae", "unknown field (did you mean 'name'?)"), ("", "tenants[0].name", "is required")]
    assert snapshot(ctl) == before


def test_a_name_where_rest_takes_an_id_is_refused_naming_the_object_and_its_id(ctl):
    """A newcomer copies names from a policy document into a REST body (`"policy_groups": ["admins"]`): the 422 says
    which object has that name and its id (it said only "no policy_group with id 'admins'"), and nothing changes."""
    tenant, domain, subnet = demo_net(ctl)
    group = ctl.create("policy-groups", {"tenant_id": tenant["id"], "name": "admins"})
    acl = ctl.create("acls", {"tenant_id": tenant["id"], "name": "web-in"})
    vport = ctl.create("vports", {"subnet_id": subnet["id"], "name": "vm1", "mac": "02:00:00:00:01:01",
                                  "binding": {"flavour": "kvm"}})
    before = snapshot(ctl)
    status, reply = ctl.call("PATCH", f"/v1/vports/{vport['id']}", {"policy_groups": ["admins"]})
    assert status == 422 and reply["error"]["field"] == "policy_groups[0]"
    assert reply["error"]["reason"] == (f"no policy_group with id 'admins'; 'admins' is the name of policy_group "
                                        f"acme/admins (id {group['id']}): REST references objects by id")
    status, reply = ctl.call("PATCH", f"/v1/vports/{vport['id']}", {"acls": ["web-in"]})
    assert status == 422 and f"acme/web-in (id {acl['id']})" in reply["error"]["reason"]
    status, reply = ctl.call("POST", "/v1/subnets", {"tenant_id": "acme", "name": "db", "cidr": "10.0.2.0/24"})
    assert status == 422 and f"tenant acme (id {tenant['id']})" in reply["error"]["reason"]
    status, reply = ctl.call("PATCH", f"/v1/vports/{vport['id']}", {"acls": ["nothing-named-so"]})
    assert status == 422 and reply["error"]["reason"] == "no acl with id 'nothing-named-so'"
    assert snapshot(ctl) == before


def test_names_given_for_ids_are_looked_up_once_per_kind_not_once_each(ctl, monkeypatch):
    """A PATCH giving 300 names where ids belong, with 100 ACLs: each kind's objects are gone through for their names
    once per check, not once per name (300 x 100 = 30,000 in one stretch of the hub, growing with both)."""
    from controller import policy as pol

    tenant, domain, subnet = demo_net(ctl)
    for i in range(100):
        ctl.create("acls", {"tenant_id": tenant["id"], "name": f"a{i}"})
    vport = ctl.create("vports", {"subnet_id": subnet["id"], "name": "vm1", "mac": "02:00:00:00:01:01",
                                  "binding": {"flavour": "kvm"}})
    seen = []
    real_all = pol.Policy.all

    def counting_all(self, kind):
        for obj in real_all(self, kind):
            if kind == "acl":
                seen.append(obj)
            yield obj

    monkeypatch.setattr(pol.Policy, "all", counting_all)
    status, reply = ctl.call("PATCH", f"/v1/vports/{vport['id']}", {"acls": [f"a{i % 100}" for i in range(300)]})
    assert status == 422 and len(reply["error"]["errors"]) == 21  # the first 20, and "and 280 more"
    assert "'a19' is the name of acl acme/a19" in str(reply)
    assert reply["error"]["errors"][-1]["reason"] == "and 280 more of its acl references fail (not listed)"
    assert len(seen) <= 10 * 100  # a few passes over the ACLs in the whole check, whatever the body's length
