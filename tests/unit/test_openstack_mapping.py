"""networking_canopy.mapping: Neutron resources onto Canopy's model, refusals, and the sync plan (pure)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "networking_canopy"))
from networking_canopy import mapping  # noqa: E402 (the driver package lives in its own folder)

P = "0123456789abcdef0123456789abcdef"
NET = {"id": "11111111-1111-1111-1111-111111111111", "name": "web", "project_id": P, "mtu": 1450,
       "provider:network_type": "vxlan", "provider:segmentation_id": 5001, "router:external": False}
SUB = {"id": "22222222-2222-2222-2222-222222222222", "network_id": NET["id"], "ip_version": 4,
       "cidr": "10.0.1.0/24", "gateway_ip": "10.0.1.1", "enable_dhcp": True,
       "dns_nameservers": ["10.0.1.53", "fd00::1"],
       "host_routes": [{"destination": "192.168.0.0/24", "nexthop": "10.0.1.254"}]}
ROUTER = {"id": "33333333-3333-3333-3333-333333333333", "name": "r1", "project_id": P,
          "routes": [{"destination": "172.16.0.0/16", "nexthop": "10.0.1.9"}]}
RIF = {"id": "44444444-4444-4444-4444-444444444444", "network_id": NET["id"],
       "device_owner": "network:router_interface",
       "device_id": ROUTER["id"], "fixed_ips": [{"subnet_id": SUB["id"], "ip_address": "10.0.1.1"}]}


def port(pid="55555555-5555-5555-5555-555555555555", flavour="kvm", **extra):
    return {"id": pid, "network_id": NET["id"], "name": "vm1", "device_owner": "compute:nova",
            "mac_address": "FA:16:3E:00:00:01", "fixed_ips": [{"subnet_id": SUB["id"], "ip_address": "10.0.1.5"}],
            "port_security_enabled": False, "security_groups": [], "binding:vif_type": "ovs",
            "binding:vif_details": {"port_filter": True, "canopy_flavour": flavour}, **extra}


def test_names_carry_the_neutron_id_and_only_such_names_are_ours():
    assert mapping.name_of(NET["id"]) == "os-" + NET["id"] and mapping.neutron_id("os-" + NET["id"]) == NET["id"]
    assert mapping.neutron_id("os-" + P) == P
    for other in ("web", "os-", "os-web", "xos-" + P, None):
        assert mapping.neutron_id(other) is None


def test_a_network_with_its_subnet_and_router_interface_is_one_canopy_subnet_in_the_domain():
    items = mapping.desired_items([NET], [SUB], [RIF], [ROUTER])
    subnet = items[("subnet", "os-" + NET["id"])]
    assert subnet.parents == {"tenant_id": "os-" + P, "domain_id": "os-" + ROUTER["id"]}
    assert subnet.body == {"name": "os-" + NET["id"], "description": "neutron network web", "cidr": "10.0.1.0/24",
                           "gateway": "10.0.1.1", "vni": 5001,
                           "dhcp": {"enabled": True, "dns_servers": ["10.0.1.53"], "mtu": 1450,
                                    "routes": [{"prefix": "192.168.0.0/24", "next_hop": "10.0.1.254"}]}}
    domain = items[("domain", "os-" + ROUTER["id"])]
    assert domain.body["static_routes"] == [{"prefix": "172.16.0.0/16", "next_hop": "10.0.1.9"}]
    assert set(items) == {("tenant", "os-" + P), ("subnet", "os-" + NET["id"]), ("domain", "os-" + ROUTER["id"])}


def test_a_network_without_a_subnet_is_an_l2_subnet_without_dhcp():
    item = mapping.subnet_item(NET, None, None)
    assert (item.body["cidr"], item.body["gateway"], item.body["dhcp"]["enabled"]) == (None, None, False)
    assert item.parents["domain_id"] is None


@pytest.mark.parametrize("flavour, binding", [
    ("kvm", {"flavour": "kvm", "iface_id": "55555555-5555-5555-5555-555555555555"}),
    ("esxi", {"flavour": "esxi", "vnic_id": "55555555-5555-5555-5555-555555555555"}),
    ("hyperv", {"flavour": "hyperv", "port_name": "55555555-5555-5555-5555-555555555555"}),
])
def test_a_bound_port_is_a_vport_keyed_by_the_port_id_on_each_flavour(flavour, binding):
    items = mapping.desired_items([NET], [SUB], [port(flavour=flavour)], [])
    vport = items[("vport", "os-55555555-5555-5555-5555-555555555555")]
    assert vport.parents == {"subnet_id": "os-" + NET["id"]}
    assert vport.body == {"name": "os-55555555-5555-5555-5555-555555555555", "description": "neutron port vm1",
                          "mac": "fa:16:3e:00:00:01", "ips": ["10.0.1.5"], "port_security": False,
                          "binding": binding, "policy_groups": [], "instance_id": None}


def test_a_hyperv_port_name_can_come_from_the_binding_profile():
    item = mapping.vport_item(port(flavour="hyperv", **{"binding:profile": {"canopy_port_name": "vm-web-1"}}), "hyperv")
    assert item.body["binding"] == {"flavour": "hyperv", "port_name": "vm-web-1"}


def test_unbound_ports_router_ports_and_ports_of_refused_networks_are_not_vports():
    unbound = port(pid="66666666-6666-6666-6666-666666666666", **{"binding:vif_type": "unbound"})
    other_driver = port(pid="77777777-7777-7777-7777-777777777777", **{"binding:vif_details": {}})
    items = mapping.desired_items([NET], [SUB], [unbound, other_driver, RIF], [])
    assert not [k for k in items if k[0] == "vport"]
    external = {**NET, "router:external": True}  # an external network is no overlay subnet: no vports on it
    assert {k[0] for k in mapping.desired_items([external], [SUB], [port()], [])} == {"external_network"}


@pytest.mark.parametrize("network, words", [
    ({**NET, "provider:network_type": "vlan"}, "'vlan' is not supported"),
])
def test_networks_canopy_cannot_carry_are_refused(network, words):
    assert words in mapping.network_refusal(network)
    assert mapping.network_refusal(NET) is None


@pytest.mark.parametrize("subnet, others, words", [
    ({**SUB, "ip_version": 6, "cidr": "fd00::/64"}, [], "IPv4 subnets only"),
    ({**SUB, "cidr": "10.0.1.0/31"}, [], "/30 or shorter"),
    (SUB, [{"id": "x", "ip_version": 4}], "one IPv4 subnet per network"),
    ({**SUB, "host_routes": [{"destination": f"10.9.{i}.0/24", "nexthop": "10.0.1.9"} for i in range(17)]}, [],
     "at most 16"),
])
def test_subnets_canopy_cannot_express_are_refused(subnet, others, words):
    assert words in mapping.subnet_refusal(subnet, others)
    assert mapping.subnet_refusal(SUB, [SUB, {"id": "v6", "ip_version": 6}]) is None


@pytest.mark.parametrize("extra, words", [
    ({"port_security_enabled": True}, "port security without security groups"),
    ({"allowed_address_pairs": [{"ip_address": "10.0.1.99"}]}, "allowed_address_pairs"),
    ({"binding:profile": {"canopy_port_name": "x" * 49}}, "1-48 characters"),
])
def test_ports_canopy_cannot_express_are_refused(extra, words):
    assert words in mapping.port_refusal(port(**extra))
    assert mapping.port_refusal(port()) is None
    assert mapping.port_refusal(port(security_groups=["sg1"], port_security_enabled=True)) is None
    assert mapping.port_refusal({**RIF, "security_groups": ["sg"]}) is None  # Neutron's own ports are not vports
    assert "floating IP" in mapping.port_refusal(port(), {**NET, "router:external": True})


def test_a_network_cannot_become_external_or_stop_being_so():
    assert "router:external cannot change" in mapping.network_update_refusal(NET, {**NET, "router:external": True})
    assert mapping.network_update_refusal(NET, {**NET, "name": "renamed"}) is None


def test_a_router_interface_must_be_the_gateway_and_a_network_joins_one_router():
    assert mapping.router_interface_refusal(RIF, [SUB], None, ROUTER["id"]) is None
    assert mapping.router_interface_refusal(RIF, [SUB], ROUTER["id"], ROUTER["id"]) is None
    assert "already attached to router other" in mapping.router_interface_refusal(RIF, [SUB], "other", ROUTER["id"])
    moved = {**RIF, "fixed_ips": [{"subnet_id": SUB["id"], "ip_address": "10.0.1.7"}]}
    assert "not the subnet's gateway_ip" in mapping.router_interface_refusal(moved, [SUB], None, ROUTER["id"])


# ------------------------------------------------------------------ the plan

def canopy_side(items):
    """What Canopy would return for these desired items (ids, defaults filled in), as actual_items reads it."""
    ids = {key: f"id-{key[0]}-{i}" for i, key in enumerate(sorted(items))}
    lists = {kind: [] for kind in mapping.KINDS}
    for key, item in items.items():
        obj = {**item.body, "id": ids[key]}
        if key[0] == "subnet":
            obj["dhcp"] = {**item.body["dhcp"], "lease_time": 86400, "ntp_servers": [], "domain_name": None}
        if key[0] == "vport":
            obj["binding"] = {**item.body["binding"], "host": None, "vlan": None}
        obj = mapping.convert_refs(key[0], obj, lambda kind, name: ids[(kind, name)])
        for fname, parent in item.parents.items():
            obj[fname] = ids[(mapping.PARENT_KIND[fname], parent)] if parent else None
        lists[key[0]].append(obj)
    return mapping.actual_items(*(lists[k] for k in mapping.KINDS)), lists


def ops_of(plan):
    return [(op.op, op.item.kind, op.item.name, sorted(op.fields)) for op in plan]


def test_equal_sides_need_nothing_and_missing_objects_are_created_parents_first():
    desired = mapping.desired_items([NET], [SUB], [RIF, port()], [ROUTER])
    actual, _ = canopy_side(desired)
    assert mapping.plan(desired, actual) == []
    made = ops_of(mapping.plan(desired, {}))
    assert [m[:2] for m in made] == [("create", "tenant"), ("create", "domain"), ("create", "subnet"),
                                     ("create", "vport"), ("update", "domain")]
    assert made[-1][3] == ["static_routes"]  # the next hop needs the subnet in the domain first


def test_a_vport_deleted_behind_neutrons_back_is_recreated_and_a_stale_one_deleted():
    desired = mapping.desired_items([NET], [SUB], [port()], [])
    actual, _ = canopy_side(desired)
    vport_key = ("vport", "os-55555555-5555-5555-5555-555555555555")
    missing = {k: v for k, v in actual.items() if k != vport_key}
    assert ops_of(mapping.plan(desired, missing)) == [("create", "vport", vport_key[1], [])]
    desired_without = {k: v for k, v in desired.items() if k != vport_key}
    assert ops_of(mapping.plan(desired_without, actual)) == [("delete", "vport", vport_key[1], [])]


def test_changed_fields_are_updated_and_a_subnet_changing_domain_is_remade_with_its_vports():
    desired = mapping.desired_items([NET], [SUB], [port()], [])
    actual, _ = canopy_side(desired)
    changed = mapping.desired_items([NET], [{**SUB, "dns_nameservers": ["10.0.1.54"]}], [port()], [])
    assert ops_of(mapping.plan(changed, actual)) == [("update", "subnet", "os-" + NET["id"], ["dhcp"])]
    routed = mapping.desired_items([NET], [SUB], [port(), RIF], [ROUTER])
    assert [m[:2] for m in ops_of(mapping.plan(routed, actual))] == [
        ("delete", "subnet"), ("create", "domain"), ("create", "subnet"), ("create", "vport"), ("update", "domain")]


def test_objects_not_made_by_neutron_are_never_in_the_plan():
    desired = mapping.desired_items([NET], [SUB], [port()], [])
    _, lists = canopy_side(desired)
    lists["tenant"].append({"id": "t-manual", "name": "manual"})
    lists["subnet"].append({"id": "s-manual", "name": "os-" + NET["id"][:8], "tenant_id": "t-manual",
                            "domain_id": None})
    tenant_id = lists["tenant"][0]["id"]
    lists["subnet"].append({"id": "s-hand", "name": "handmade", "tenant_id": tenant_id, "domain_id": None})
    lists["vport"].append({"id": "v-hand", "name": "vm-by-hand", "subnet_id": lists["subnet"][0]["id"]})
    actual = mapping.actual_items(*(lists[k] for k in mapping.KINDS))
    assert mapping.plan(desired, actual) == []
    assert mapping.plan({}, actual) != []  # ... while Neutron's own would go
    assert {op.item.name for op in mapping.plan({}, actual)} == {k[1] for k in desired}


def test_a_scope_limits_the_plan():
    desired = mapping.desired_items([NET], [SUB], [port()], [])
    only_vports = mapping.plan(desired, {}, scope=lambda key: key[0] == "vport")
    assert ops_of(only_vports) == [("create", "vport", "os-55555555-5555-5555-5555-555555555555", [])]
