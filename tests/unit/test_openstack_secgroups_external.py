"""networking_canopy: security groups onto ACLs and policy groups, external networks, router gateways and
floating IPs onto Canopy's external connectivity, and the sync plan for them (pure)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "networking_canopy"))
from networking_canopy import external, mapping, secgroups  # noqa: E402 (the driver package lives in its own folder)

from tests.unit.test_openstack_mapping import NET, P, RIF, ROUTER, SUB, canopy_side, ops_of, port  # noqa: E402

SG = {"id": "aaaaaaaa-0000-0000-0000-000000000001", "name": "default", "project_id": P, "stateful": True}
WEB = {"id": "aaaaaaaa-0000-0000-0000-000000000002", "name": "web", "project_id": P, "stateful": True}


def rule(rid, group=SG, **fields):
    return {"id": f"bbbbbbbb-0000-0000-0000-{rid:012d}", "security_group_id": group["id"], "ethertype": "IPv4",
            "direction": "ingress", "protocol": None, "port_range_min": None, "port_range_max": None,
            "remote_ip_prefix": None, "remote_group_id": None, **fields}


DEFAULT_RULES = [  # what Neutron gives every project's default group
    rule(1, remote_group_id=SG["id"]), rule(2, ethertype="IPv6", remote_group_id=SG["id"]),
    rule(3, direction="egress"), rule(4, direction="egress", ethertype="IPv6")]
EXT = {"id": "cccccccc-0000-0000-0000-000000000001", "name": "public", "project_id": "admin", "mtu": 1500,
       "provider:network_type": "flat", "router:external": True}
EXT_SUB = {"id": "cccccccc-0000-0000-0000-000000000002", "network_id": EXT["id"], "ip_version": 4,
           "cidr": "203.0.113.0/24", "gateway_ip": "203.0.113.1"}
GW_ROUTER = {**ROUTER, "external_gateway_info": {"network_id": EXT["id"], "enable_snat": True,
                                                 "external_fixed_ips": [{"ip_address": "203.0.113.2"}]}}
FIP = {"id": "dddddddd-0000-0000-0000-000000000001", "project_id": P, "floating_network_id": EXT["id"],
       "floating_ip_address": "203.0.113.50", "port_id": "55555555-5555-5555-5555-555555555555",
       "fixed_ip_address": "10.0.1.5"}
SECURED = dict(port_security_enabled=True, security_groups=[SG["id"], WEB["id"]])


def everything(ports=None, fips=(FIP,), router=GW_ROUTER, macs=None):
    ports = [RIF, port(**SECURED)] if ports is None else ports
    return mapping.desired_items([NET, EXT], [SUB, EXT_SUB], ports, [router], [SG, WEB], DEFAULT_RULES, list(fips),
                                 macs or {"public": "02:00:00:EE:00:01"})


def test_the_default_group_is_a_policy_group_and_a_deny_by_default_acl_of_its_ipv4_rules():
    items = mapping.desired_items([], [], [], [], [SG], DEFAULT_RULES)
    name = "os-" + SG["id"]
    assert items[("policy_group", name)].parents == {"tenant_id": "os-" + P}
    acl = items[("acl", name)].body
    assert acl["default_action"] == "deny" and acl["policy_groups"] == [name]
    assert [(r["direction"], r["protocol"], r["remote"], r["remote_group"], r["stateful"]) for r in acl["rules"]] == [
        ("egress", "any", "0.0.0.0/0", None, True),  # egress anywhere
        ("ingress", "any", "0.0.0.0/0", name, True)]  # ingress from the group's own members; IPv6 rules ignored
    assert ("tenant", "os-" + P) in items


@pytest.mark.parametrize("fields, expected", [
    ({"protocol": "tcp", "port_range_min": 22, "port_range_max": 22}, {"protocol": "tcp", "ports": "22"}),
    ({"protocol": "6", "port_range_min": 8000, "port_range_max": 8080}, {"protocol": "tcp", "ports": "8000-8080"}),
    ({"protocol": "udp"}, {"protocol": "udp", "ports": None}),
    ({"protocol": "icmp", "port_range_min": 8, "port_range_max": 0}, {"protocol": "icmp", "icmp_type": 8,
                                                                      "icmp_code": 0}),
    ({"protocol": "icmp", "port_range_min": 3}, {"protocol": "icmp", "icmp_type": 3, "icmp_code": None}),
    ({"remote_ip_prefix": "10.1.2.3/16"}, {"remote": "10.1.0.0/16", "remote_group": None}),
    ({"direction": "egress", "remote_group_id": WEB["id"]}, {"direction": "egress", "remote_group": "os-" + WEB["id"]}),
])
def test_rules_map_protocols_ports_icmp_type_and_code_and_remotes(fields, expected):
    got = secgroups.acl_rule(rule(9, **fields), True)
    assert {k: got[k] for k in expected} == expected
    assert got["action"] == "allow"


def test_a_stateless_group_makes_stateless_rules():
    items = mapping.desired_items([], [], [], [], [{**SG, "stateful": False}], DEFAULT_RULES)
    assert {r["stateful"] for r in items[("acl", "os-" + SG["id"])].body["rules"]} == {False}


@pytest.mark.parametrize("fields, words", [
    ({"protocol": "sctp"}, "protocol 'sctp'"),
    ({"protocol": "47"}, "protocol '47'"),
    ({"remote_address_group_id": "x"}, "address groups"),
    ({"remote_group_id": "other"}, "another project"),
])
def test_rules_canopy_cannot_express_are_refused(fields, words):
    other = {"id": "other", "project_id": "someone-else"}
    assert words in secgroups.rule_refusal(rule(9, **fields), other if "remote_group_id" in fields else None, SG, 3)
    assert secgroups.rule_refusal(rule(9, protocol="tcp"), None, SG, 3) is None
    assert secgroups.rule_refusal(rule(9, ethertype="IPv6", protocol="ipv6-icmp"), None, SG, 3) is None  # ignored
    assert "at most 1000" in secgroups.rule_refusal(rule(9), None, SG, 1000)


def test_a_port_joins_the_policy_groups_of_its_security_groups_unless_port_security_is_off():
    items = everything()
    vport = items[("vport", "os-55555555-5555-5555-5555-555555555555")].body
    assert vport["port_security"] is True
    assert vport["policy_groups"] == sorted(["os-" + SG["id"], "os-" + WEB["id"]])
    assert secgroups.port_policy_groups(port()) == []
    assert secgroups.port_groups_refusal(port(**SECURED), [SG, WEB], P) is None
    assert "belongs to project x" in secgroups.port_groups_refusal(port(**SECURED), [{**WEB, "project_id": "x"}], P)


def test_an_external_network_router_gateway_and_floating_ip_map_onto_canopy():
    items = everything()
    ext = items[("external_network", "os-" + EXT["id"])]
    assert ext.parents == {} and ext.body == {"name": "os-" + EXT["id"], "description": "neutron external network "
                                              "public", "cidr": "203.0.113.0/24", "gateway": "203.0.113.1",
                                              "gateway_mac": "02:00:00:ee:00:01"}
    domain = items[("domain", "os-" + ROUTER["id"])].body
    assert (domain["external_network_id"], domain["underlay_nat"]) == ("os-" + EXT["id"], True)
    fip = items[("floating_ip", "os-" + FIP["id"])]
    assert fip.parents == {"tenant_id": "os-" + P}
    assert (fip.body["external_network_id"], fip.body["address"], fip.body["vport_id"]) == (
        "os-" + EXT["id"], "203.0.113.50", "os-55555555-5555-5555-5555-555555555555")
    assert ("subnet", "os-" + EXT["id"]) not in items  # not an overlay network
    no_snat = {**GW_ROUTER, "external_gateway_info": {"network_id": EXT["id"], "enable_snat": False}}
    assert everything(router=no_snat)[("domain", "os-" + ROUTER["id"])].body["underlay_nat"] is False
    plain = everything(router=ROUTER)[("domain", "os-" + ROUTER["id"])].body
    assert (plain["external_network_id"], plain["underlay_nat"]) == (None, False)


def test_a_floating_ip_of_a_port_that_is_no_vport_is_free():
    unbound = port(**SECURED, **{"binding:vif_type": "unbound"})
    assert everything(ports=[RIF, unbound])[("floating_ip", "os-" + FIP["id"])].body["vport_id"] is None
    free = {**FIP, "port_id": None, "fixed_ip_address": None}
    assert everything(fips=[free])[("floating_ip", "os-" + FIP["id"])].body["vport_id"] is None


def test_gateways_and_associations_canopy_cannot_express_are_refused():
    assert external.gateway_refusal({"network_id": EXT["id"]}, [EXT_SUB]) is None
    assert "external_fixed_ips" in external.gateway_refusal(
        {"network_id": EXT["id"], "external_fixed_ips": [{"ip_address": "203.0.113.9"}]}, [EXT_SUB])
    assert "exactly one IPv4 subnet" in external.gateway_refusal({"network_id": EXT["id"]}, [EXT_SUB, EXT_SUB])
    assert "gateway_ip" in external.external_subnet_refusal({**EXT_SUB, "gateway_ip": None})
    two = port(fixed_ips=[{"ip_address": "10.0.1.9"}, {"ip_address": "10.0.1.5"}])
    assert external.floating_ip_refusal(FIP, two, P) is None
    assert "first IPv4 address (10.0.1.5)" in external.floating_ip_refusal({**FIP, "fixed_ip_address": "10.0.1.9"},
                                                                           two, P)
    assert "own tenant" in external.floating_ip_refusal(FIP, two, "another-project")


def test_equal_sides_need_nothing_and_references_are_created_before_what_names_them():
    desired = everything()
    actual, _ = canopy_side(desired)
    assert mapping.plan(desired, actual) == []
    order = [m[1] for m in ops_of(mapping.plan(desired, {})) if m[0] == "create"]
    assert order.index("external_network") < order.index("domain")
    assert order.index("policy_group") < order.index("acl") < order.index("vport") < order.index("floating_ip")


def test_a_changed_rule_and_a_moved_floating_ip_are_updates():
    desired = everything()
    actual, _ = canopy_side(desired)
    opened = mapping.desired_items([], [], [], [], [SG, WEB], DEFAULT_RULES + [rule(5, WEB, protocol="tcp",
                                                                                    port_range_min=22,
                                                                                    port_range_max=22)])
    changed = {**desired, **opened}
    assert ops_of(mapping.plan(changed, actual)) == [("update", "acl", "os-" + WEB["id"], ["rules"])]
    narrowed = mapping.desired_items([], [], [], [], [SG, WEB], DEFAULT_RULES + [rule(5, WEB, protocol="tcp")])
    wider, _ = canopy_side({**desired, **opened})
    assert ops_of(mapping.plan({**desired, **narrowed}, wider)) == [("update", "acl", "os-" + WEB["id"], ["rules"])]
    freed = everything(fips=[{**FIP, "port_id": None}])
    assert ops_of(mapping.plan(freed, actual)) == [("update", "floating_ip", "os-" + FIP["id"], ["vport_id"])]


def test_a_floating_ip_is_detached_before_its_vport_is_remade_and_attached_again_after():
    desired = everything()
    actual, _ = canopy_side(desired)
    esxi = everything(ports=[RIF, port(**SECURED, **{"binding:vif_details": {"canopy_flavour": "esxi"}})])
    assert ops_of(mapping.plan(esxi, actual)) == [
        ("update", "floating_ip", "os-" + FIP["id"], ["vport_id"]),
        ("delete", "vport", "os-55555555-5555-5555-5555-555555555555", []),
        ("create", "vport", "os-55555555-5555-5555-5555-555555555555", []),
        ("update", "floating_ip", "os-" + FIP["id"], ["vport_id"])]
    gone = everything(ports=[RIF], fips=[])
    assert [m[:2] for m in ops_of(mapping.plan(gone, actual))] == [("delete", "floating_ip"), ("delete", "vport")]


def test_resources_of_a_project_whose_id_makes_no_name_of_ours_are_left_out():
    odd = {**SG, "id": "aaaaaaaa-0000-0000-0000-000000000009", "project_id": "fake_project_id"}
    items = mapping.desired_items([{**NET, "project_id": "fake_project_id"}], [SUB], [port()], [], [odd], [])
    assert items == {}
    shared_ext = {**EXT, "project_id": "fake_project_id"}  # an external network belongs to no tenant
    assert list(mapping.desired_items([shared_ext], [EXT_SUB], [], [])) == [("external_network", "os-" + EXT["id"])]


def test_routers_that_translate_may_not_have_overlapping_subnets():
    others = {"r2": ["10.0.1.0/25"], "r3": ["10.9.0.0/16"]}
    assert "overlaps 10.0.1.0/25 of router r2" in external.translation_refusal("r1", ["10.0.1.0/24"], others)
    assert external.translation_refusal("r1", ["10.0.2.0/24"], others) is None
    assert external.translation_refusal("r2", ["10.0.1.0/24"], {"r2": ["10.0.1.0/25"]}) is None  # itself
