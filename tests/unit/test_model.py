"""Per-object validation and cross-object rules of the tenancy model."""

import pytest

from controller import policy as pol
from controller.model import PolicyError, normalise


def problems_of(kind, body, current=None):
    with pytest.raises(PolicyError) as info:
        normalise(kind, body, current=current)
    return {(p.field, p.reason) for p in info.value.problems}


def fields_of(kind, body, current=None):
    return {f for f, _ in problems_of(kind, body, current)}


def test_subnet_defaults_are_filled_including_nested_dhcp():
    sub = normalise("subnet", {"tenant_id": "t", "name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1"})
    assert sub["dhcp"]["enabled"] is True and sub["dhcp"]["lease_time"] == 86400 and sub["dhcp"]["routes"] == []
    assert sub["vni"] is None and sub["domain_id"] is None


@pytest.mark.parametrize("cidr, reason_part", [
    ("10.0.1.0", "needs a prefix length"),
    ("10.0.1.1/24", "host bits set"),
    ("10.0.1.0/33", "invalid prefix length"),
    ("10.0.1.0/31", "too long"),
    ("fd00::/64", "IPv6 is not supported"),
    ("banana", "not an IPv4 CIDR"),
    (42, "must be a CIDR string"),
])
def test_bad_cidrs_name_the_field_and_reason(cidr, reason_part):
    found = problems_of("subnet", {"tenant_id": "t", "name": "s", "cidr": cidr})
    assert any(f == "cidr" and reason_part in r for f, r in found), found


def test_gateway_must_be_a_host_inside_the_cidr():
    base = {"tenant_id": "t", "domain_id": "d", "name": "s", "cidr": "10.0.1.0/24"}
    assert any("outside" in r for f, r in problems_of("subnet", {**base, "gateway": "10.0.2.1"}) if f == "gateway")
    assert any("broadcast" in r for f, r in problems_of("subnet", {**base, "gateway": "10.0.1.255"}))
    assert fields_of("subnet", base) == {"gateway"}  # required in a domain


def test_unknown_and_missing_fields_are_reported_together():
    found = fields_of("vport", {"subnet_id": "s", "name": "v", "colour": "red"})
    assert found == {"colour", "mac", "binding"}


def test_unknown_nested_field_has_a_dotted_path():
    assert fields_of("subnet", {"tenant_id": "t", "name": "s", "cidr": "10.0.0.0/24",
                                "dhcp": {"dns": ["1.1.1.1"]}}) == {"dhcp.dns"}


@pytest.mark.parametrize("mac, ok", [("02:00:00:00:00:01", True), ("02-00-00-00-00-0A", True),
                                     ("01:00:5e:00:00:01", False), ("00:00:00:00:00:00", False),
                                     ("02:00:00:00:00", False)])
def test_mac_validation(mac, ok):
    body = {"subnet_id": "s", "name": "v", "mac": mac, "binding": {"flavour": "kvm"}}
    if ok:
        assert normalise("vport", body)["mac"] == mac.lower().replace("-", ":")
    else:
        assert "mac" in fields_of("vport", body)


def test_binding_fields_must_fit_the_flavour():
    body = {"subnet_id": "s", "name": "v", "mac": "02:00:00:00:00:01",
            "binding": {"flavour": "kvm", "port_name": "x"}}
    assert fields_of("vport", body) == {"binding.port_name"}
    body["binding"] = {"flavour": "hyperv", "port_name": "x" * 49}
    assert fields_of("vport", body) == {"binding.port_name"}
    body["binding"] = {"flavour": "esxi", "host": "esx1"}
    assert fields_of("vport", body) == {"binding"}


def test_immutable_fields_and_managed_fields_cannot_be_written():
    current = normalise("vport", {"subnet_id": "s", "name": "v", "mac": "02:00:00:00:00:01",
                                  "binding": {"flavour": "kvm"}})
    current["id"] = "abc"
    assert fields_of("vport", {"subnet_id": "other"}, current) == {"subnet_id"}
    assert fields_of("vport", {"id": "zzz"}, current) == {"id"}
    assert fields_of("tenant", {"name": "t", "source": "x"}) == {"source"}
    updated = normalise("vport", {"description": "web server"}, current)
    assert updated["id"] == "abc" and updated["mac"] == current["mac"]


@pytest.mark.parametrize("value, ok", [("65000:100", True), ("4200000000:7", True), ("10.0.0.1:5", True),
                                       ("65000", False), ("10.0.0.1:70000", False), ("x:1", False),
                                       ("4200000000:70000", False)])
def test_route_distinguisher_formats(value, ok):
    body = {"tenant_id": "t", "name": "d", "rd": value}
    if ok:
        normalise("domain", body)
    else:
        assert fields_of("domain", body) == {"rd"}


def test_acl_ports_need_tcp_or_udp():
    rule = {"direction": "ingress", "action": "allow", "protocol": "icmp", "ports": "80"}
    assert fields_of("acl", {"tenant_id": "t", "name": "a", "rules": [rule]}) == {"rules[0].ports"}


# ----------------------------------------------------------------------------------- cross-object rules

def build(*objects):
    p = pol.Policy()
    for kind, body in objects:
        obj = normalise(kind, body)
        obj["id"] = f"{kind}-{body['name']}"
        obj["source"] = None
        p.put(kind, obj)
    return p


def tenant(name="acme"):
    return ("tenant", {"name": name})


def domain(name="prod", tenant_name="acme", **kw):
    return ("domain", {"tenant_id": f"tenant-{tenant_name}", "name": name, **kw})


def subnet(name, cidr, gw, dom="prod", tenant_name="acme", **kw):
    return ("subnet", {"tenant_id": f"tenant-{tenant_name}", "domain_id": f"domain-{dom}" if dom else None,
                       "name": name, "cidr": cidr, "gateway": gw, **kw})


def vport(name, sub, mac, ips, **kw):
    return ("vport", {"subnet_id": f"subnet-{sub}", "name": name, "mac": mac, "ips": ips,
                      "binding": kw.pop("binding", {"flavour": "kvm", "iface_id": name}), **kw})


def reasons(p):
    return [(x.kind, x.field, x.reason) for x in pol.check(p)]


def test_overlapping_cidrs_in_one_domain_are_refused():
    p = build(tenant(), domain(), subnet("a", "10.0.0.0/24", "10.0.0.1"), subnet("b", "10.0.0.128/25", "10.0.0.129"))
    assert any(f == "cidr" and "overlaps" in r for _, f, r in reasons(p))


def test_overlapping_cidrs_across_tenants_and_domains_are_fine():
    p = build(tenant(), tenant("globex"), domain(), domain("main", "globex"), domain("lab"),
              subnet("a", "10.0.0.0/24", "10.0.0.1"), subnet("b", "10.0.0.0/24", "10.0.0.1", "main", "globex"),
              subnet("c", "10.0.0.0/24", "10.0.0.1", "lab"))
    assert reasons(p) == []


def test_duplicate_mac_and_ip_in_a_subnet_are_refused():
    p = build(tenant(), domain(), subnet("a", "10.0.0.0/24", "10.0.0.1"),
              vport("v1", "a", "02:00:00:00:00:01", ["10.0.0.5"]), vport("v2", "a", "02:00:00:00:00:01", ["10.0.0.5"]))
    found = {(f, r.split(" ")[0]) for _, f, r in reasons(p)}
    assert ("mac", "02:00:00:00:00:01") in found and ("ips[0]", "10.0.0.5") in found


def test_vport_ip_must_be_a_usable_address_of_its_subnet():
    p = build(tenant(), domain(), subnet("a", "10.0.0.0/24", "10.0.0.1"),
              vport("v1", "a", "02:00:00:00:00:01", ["10.0.1.5"]), vport("v2", "a", "02:00:00:00:00:02", ["10.0.0.1"]),
              vport("v3", "a", "02:00:00:00:00:03", ["10.0.0.255"]))
    found = reasons(p)
    assert any("outside" in r for _, _, r in found)
    assert any("gateway" in r for _, _, r in found)
    assert any("broadcast" in r for _, _, r in found)


def test_vni_collision_between_subnet_and_domain():
    p = build(tenant(), domain(l3_vni=5000), subnet("a", "10.0.0.0/24", "10.0.0.1", vni=5000))
    assert any(f == "vni" and "already used" in r for _, f, r in reasons(p))


def test_static_route_next_hop_must_be_in_a_domain_subnet():
    p = build(tenant(), domain(static_routes=[{"prefix": "0.0.0.0/0", "next_hop": "192.168.0.1"}]),
              subnet("a", "10.0.0.0/24", "10.0.0.1"))
    assert [f for _, f, _ in reasons(p)] == ["static_routes[0].next_hop"]


def test_binding_keys_are_unique_across_vports():
    p = build(tenant(), domain(), subnet("a", "10.0.0.0/24", "10.0.0.1"),
              vport("v1", "a", "02:00:00:00:00:01", [], binding={"flavour": "hyperv", "port_name": "web"}),
              vport("v2", "a", "02:00:00:00:00:02", [], binding={"flavour": "hyperv", "port_name": "web"}))
    assert any(f == "binding" for _, f, _ in reasons(p))


def test_missing_references_are_reported():
    p = build(tenant(), subnet("a", "10.0.0.0/24", "10.0.0.1", dom="ghost"))
    assert any(f == "domain_id" and "no domain" in r for _, f, r in reasons(p))


# ------------------------------------------------------------------------------------------ allocation

def test_allocation_fills_vni_rd_rts_gateway_mac_and_ip():
    p = build(tenant(), domain(), subnet("a", "10.0.0.0/24", "10.0.0.1"))
    alloc = pol.Allocator({}, 65000, (100, 200))
    dom = p.get("domain", "domain-prod")
    sub = p.get("subnet", "subnet-a")
    alloc.fill(p, "domain", dom)
    alloc.fill(p, "subnet", sub)
    assert (dom["l3_vni"], dom["rd"], dom["export_rts"]) == (100, "65000:100", ["65000:100"])
    assert dom["gateway_mac"] == "02:ca:00:00:00:64"
    assert (sub["vni"], sub["rd"], sub["import_rts"]) == (101, "65000:101", ["65000:101"])
    v = normalise("vport", {"subnet_id": "subnet-a", "name": "v", "mac": "02:00:00:00:00:01",
                            "binding": {"flavour": "kvm"}})
    alloc.fill(p, "vport", v)
    assert v["ips"] == ["10.0.0.2"]
    assert alloc.counters["vni"] == 102


def test_allocation_skips_used_vnis_and_reports_exhaustion():
    p = build(tenant(), domain(l3_vni=100), subnet("a", "10.0.0.0/24", "10.0.0.1", vni=101))
    alloc = pol.Allocator({}, 65000, (100, 102))
    extra = normalise("domain", {"tenant_id": "tenant-acme", "name": "x"})
    assert alloc.fill(p, "domain", extra) == [] and extra["l3_vni"] == 102
    p.put("domain", {**extra, "id": "dx", "source": None})
    another = normalise("domain", {"tenant_id": "tenant-acme", "name": "y"})
    assert [x.code for x in alloc.fill(p, "domain", another)] == ["exhausted"]


def test_four_byte_asn_uses_its_low_16_bits_for_derived_values():
    p = build(tenant(), domain())
    alloc = pol.Allocator({}, 4200000001, (7000, 7000))
    dom = p.get("domain", "domain-prod")
    alloc.fill(p, "domain", dom)
    assert dom["rd"] == f"{4200000001 & 0xFFFF}:7000"


def test_dhcp_server_address_of_an_l2_subnet_is_reserved():
    p = build(tenant(), subnet("lan", "10.0.0.0/24", None, dom=None),
              vport("v1", "lan", "02:00:00:00:00:01", ["10.0.0.254"]))
    assert any(f == "ips[0]" and "DHCP server" in r for _, f, r in reasons(p))
    alloc = pol.Allocator({}, 65000, (100, 200))
    sub = p.get("subnet", "subnet-lan")
    assert pol.dhcp_server_ip(sub) == "10.0.0.254"
    used = alloc._used_ips(p, sub)
    assert "10.0.0.254" in used


def test_dhcp_routes_are_capped():
    routes = [{"prefix": f"192.168.{i}.0/24", "next_hop": "10.0.0.5"} for i in range(17)]
    assert "dhcp.routes" in fields_of("subnet", {"tenant_id": "t", "name": "s", "cidr": "10.0.0.0/24",
                                                 "dhcp": {"routes": routes}})


def test_an_object_id_is_the_controllers_so_a_domain_and_a_subnet_never_share_one():
    """A domain's and an L2-only subnet's IPs are each kept under the object's id (the "scope" of
    controller/viewremote.py and controller/derive.py): two objects with one id would share their IPs. A write
    cannot choose an id (the controller gives each new object a UUID: controller/service.py, policydoc.py), neither in
    a create nor in an update; replicated data is checked apart (tests/unit/test_replication_standby.py)."""
    from tests.unit.helpers import state_from

    assert problems_of("domain", {"tenant_id": "t", "name": "prod", "id": "x"}) == {
        ("id", "is set by the controller and cannot be written")}
    current = normalise("subnet", {"tenant_id": "t", "name": "lan"})
    current["id"] = "s1"
    assert ("id", "is set by the controller and cannot be written") in problems_of("subnet", {"id": "x"}, current)
    with pytest.raises(PolicyError, match="id: is set by the controller"):
        state_from("tenants: [{name: acme, domains: [{name: prod, id: x}]}]")
    state = state_from("tenants: [{name: acme, domains: [{name: lan}], subnets: [{name: lan}]}]")  # one name
    ids = [obj["id"] for kind in ("tenant", "domain", "subnet") for obj in state.policy.all(kind)]
    assert len(set(ids)) == len(ids) == 3
