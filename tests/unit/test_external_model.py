"""External networks and floating IPs: REST, YAML, validation, allocation and where each is active."""

import pytest

from controller import binding, extnet, replicacheck
from controller import policy as pol
from controller.discovery import PortInfo, VrsSnapshot
from controller.store import Change

from .helpers import Controller, demo_net
from .test_policydoc import errors, plan


@pytest.fixture
def ctl(tmp_path):
    c = Controller(tmp_path)
    yield c
    c.close()


def snapshot(ctl):
    return (ctl.store.load_objects(), ctl.store.last_seq(), ctl.store.get_meta("counters"))


def public(ctl, **extra):
    return ctl.create("external-networks", {"name": "public", "cidr": "203.0.113.0/29", "gateway": "203.0.113.1",
                                            "uplinks": [{"chassis": "hv1", "port": "uplink", "ip": "203.0.113.2"}],
                                            **extra})


def vm(ctl, subnet, name, mac):
    return ctl.create("vports", {"subnet_id": subnet["id"], "name": name, "mac": mac, "binding": {"flavour": "kvm"}})


def refused(ctl, method, path, body, status=422):
    before = snapshot(ctl)
    got, reply = ctl.call(method, path, body)
    assert got == status, reply
    assert snapshot(ctl) == before
    return [(e["field"], e["reason"]) for e in reply["error"].get("errors") or [reply["error"]]]


def test_allocation_skips_reserved_and_held_addresses_and_never_reuses_an_attached_one(ctl):
    tenant, _, subnet = demo_net(ctl)
    net = public(ctl)
    a = ctl.create("floating-ips", {"tenant_id": tenant["id"], "name": "a", "external_network_id": net["id"],
                                    "vport_id": vm(ctl, subnet, "vm1", "02:00:00:00:00:01")["id"]})
    b = ctl.create("floating-ips", {"tenant_id": tenant["id"], "name": "b", "external_network_id": net["id"]})
    # .0 network, .1 gateway, .2 the uplink of hv1: the first free is .3
    assert (a["address"], b["address"]) == ("203.0.113.3", "203.0.113.4")
    assert (a["state"], b["state"]) == ("attached_unbound", "free") and b["active_on"] is None
    ctl.call("DELETE", f"/v1/floating-ips/{b['id']}")
    addrs = [ctl.create("floating-ips", {"tenant_id": tenant["id"], "name": f"c{i}", "external_network_id":
                                         net["id"]})["address"] for i in range(3)]
    assert addrs == ["203.0.113.5", "203.0.113.6", "203.0.113.4"]  # freed .4 comes back last, .3 never
    problems = refused(ctl, "POST", "/v1/floating-ips", {"tenant_id": tenant["id"], "name": "d",
                                                         "external_network_id": net["id"]}, 409)
    assert problems == [("address", "external network 'public' (203.0.113.0/29) has no free address")]


def test_explicit_addresses_are_checked(ctl):
    tenant, _, _ = demo_net(ctl)
    net = public(ctl)
    body = {"tenant_id": tenant["id"], "name": "x", "external_network_id": net["id"]}
    assert refused(ctl, "POST", "/v1/floating-ips", {**body, "address": "198.51.100.9"}) == [
        ("address", "198.51.100.9 is outside external network 'public' (203.0.113.0/29)")]
    assert refused(ctl, "POST", "/v1/floating-ips", {**body, "address": "203.0.113.2"}, 409)[0][0] == "address"
    ctl.create("floating-ips", {**body, "address": "203.0.113.5"})
    assert refused(ctl, "POST", "/v1/floating-ips", {**body, "name": "y", "address": "203.0.113.5"}, 409) == [
        ("address", "203.0.113.5 is already floating IP 'acme/x'")]


def test_reattach_moves_and_one_vport_holds_one_floating_ip(ctl):
    tenant, _, subnet = demo_net(ctl)
    net = public(ctl)
    vm1, vm2 = vm(ctl, subnet, "vm1", "02:00:00:00:00:01"), vm(ctl, subnet, "vm2", "02:00:00:00:00:02")
    fip = ctl.create("floating-ips", {"tenant_id": tenant["id"], "name": "a", "external_network_id": net["id"],
                                      "vport_id": vm1["id"]})
    status, moved = ctl.call("PATCH", f"/v1/floating-ips/{fip['id']}", {"vport_id": vm2["id"]})
    assert status == 200 and moved["vport_id"] == vm2["id"] and moved["address"] == fip["address"]
    other = ctl.create("floating-ips", {"tenant_id": tenant["id"], "name": "b", "external_network_id": net["id"]})
    assert refused(ctl, "PATCH", f"/v1/floating-ips/{other['id']}", {"vport_id": vm2["id"]}, 409)[0][1] == \
        "the vport already has floating IP 'acme/a'"
    assert refused(ctl, "PATCH", f"/v1/floating-ips/{fip['id']}", {"address": "203.0.113.6"})[0] == \
        ("address", "cannot be changed after creation")
    # a vport with a floating IP, and a network still used, are not deleted from under it
    assert refused(ctl, "DELETE", f"/v1/vports/{vm2['id']}", None, 409)[0][1].startswith("floating_ip 'acme/a'")
    assert refused(ctl, "DELETE", f"/v1/external-networks/{net['id']}", None, 409)
    status, _ = ctl.call("PATCH", f"/v1/floating-ips/{fip['id']}", {"vport_id": None})
    assert status == 200 and ctl.call("DELETE", f"/v1/vports/{vm2['id']}")[0] == 200


def test_floating_ip_needs_a_routed_vport_of_its_tenant(ctl):
    tenant, _, _ = demo_net(ctl)
    net = public(ctl)
    l2 = ctl.create("subnets", {"tenant_id": tenant["id"], "name": "lan", "cidr": "10.9.0.0/24"})
    port = vm(ctl, l2, "vm9", "02:00:00:00:00:09")
    other = ctl.create("tenants", {"name": "globex"})
    body = {"name": "a", "external_network_id": net["id"], "vport_id": port["id"]}
    assert refused(ctl, "POST", "/v1/floating-ips", {**body, "tenant_id": tenant["id"]})[0] == (
        "vport_id", "the vport's subnet is not in a domain (a floating IP is routed)")
    assert refused(ctl, "POST", "/v1/floating-ips", {**body, "tenant_id": other["id"]})[0] == (
        "vport_id", "the vport belongs to another tenant")
    assert refused(ctl, "POST", "/v1/floating-ips", {**body, "tenant_id": tenant["id"], "vport_id": "nope"})[0] == (
        "vport_id", "no vport with id 'nope'")


def test_external_network_and_domain_validation(ctl):
    tenant, domain, _ = demo_net(ctl)
    problems = refused(ctl, "POST", "/v1/external-networks", {
        "name": "x", "cidr": "203.0.113.0/24", "gateway": "198.51.100.1",
        "uplinks": [{"chassis": "hv1", "port": "p", "ip": "203.0.113.0"},
                    {"chassis": "hv1", "port": "q", "ip": "203.0.113.9"}]})
    assert problems == [("gateway", "198.51.100.1 is outside the network's cidr 203.0.113.0/24"),
                        ("uplinks[0].ip", "203.0.113.0 is the network address of 203.0.113.0/24"),
                        ("uplinks[1].chassis", "hv1 already has an uplink (uplinks[0])")]
    public(ctl)
    assert refused(ctl, "POST", "/v1/external-networks", {"name": "y", "cidr": "203.0.113.0/24",
                                                          "gateway": "203.0.113.200"}, 409)[0][0] == "cidr"
    assert refused(ctl, "PATCH", f"/v1/domains/{domain['id']}", {"underlay_nat": True})[0] == (
        "underlay_nat", "needs external_network_id (the network whose uplinks translate)")


def test_yaml_names_networks_and_vports_and_reapplies_to_nothing():
    doc = """\
external_networks:
  - {name: public, cidr: 203.0.113.0/24, gateway: 203.0.113.1,
     uplinks: [{chassis: hv1, port: uplink, vlan: 10, ip: 203.0.113.11}]}
tenants:
  - name: acme
    floating_ips:
      - {name: web1, external_network: public, vport: web/vm1}
      - {name: spare, external_network: public}
    domains:
      - name: prod
        external_network: public
        underlay_nat: true
        subnets:
          - name: web
            cidr: 10.0.1.0/24
            gateway: 10.0.1.1
            vports: [{name: vm1, mac: "02:00:00:00:00:01", binding: {flavour: kvm}}]
"""
    result = plan(pol.Policy(), doc)
    p = result.policy
    net, web1 = p.find("external_network", "public"), p.find("floating_ip", "acme/web1")
    assert p.find("domain", "acme/prod")["external_network_id"] == net["id"]
    assert web1["vport_id"] == p.find("vport", "acme/web/vm1")["id"] and web1["address"] == "203.0.113.2"
    assert p.find("floating_ip", "acme/spare")["vport_id"] is None
    assert plan(p, doc).changes == []  # allocations kept, nothing to do
    bad = doc.replace("vport: web/vm1", "vport: web/vm7").replace("external_network: public\n        under",
                                                                   "external_network: private\n        under")
    assert {(line, field) for line, field, _ in errors(pol.Policy(), bad)} == {
        (7, "tenants[0].floating_ips[0].vport"), (11, "tenants[0].domains[0].external_network"),
        (12, "tenants[0].domains[0].underlay_nat")}  # no network: translation has nothing to use either


def test_the_standby_checks_replicated_floating_ips_like_a_write():
    policy = pol.Policy()
    policy.put("external_network", {"id": "n1", "source": None, "name": "public", "description": "",
                                    "cidr": "203.0.113.0/24", "gateway": "203.0.113.1", "uplinks": []})
    fip = {"id": "f1", "source": None, "tenant_id": "t1", "name": "a", "description": "",
           "external_network_id": "n1", "address": "203.0.113.1", "vport_id": None}
    policy.put("tenant", {"id": "t1", "source": None, "name": "acme", "description": ""})
    with pytest.raises(replicacheck.InvalidReplica, match="gateway"):
        replicacheck.checked_changes([Change("floating_ip", "f1", "put", fip, 1, 1, 1.0)], policy)
    fip["address"] = "203.0.113.7"
    out, cand = replicacheck.checked_changes([Change("floating_ip", "f1", "put", fip, 1, 1, 1.0)], policy)
    assert cand.get("floating_ip", "f1")["address"] == "203.0.113.7"


def test_uplinks_come_from_policy_or_ovsdb_and_policy_wins():
    policy = pol.Policy()
    policy.put("external_network", {"id": "n1", "source": None, "name": "public", "description": "",
                                    "cidr": "203.0.113.0/24", "gateway": "203.0.113.1", "uplinks": []})
    policy.put("external_network", {"id": "n2", "source": None, "name": "dmz", "description": "",
                                    "cidr": "198.51.100.0/24", "gateway": "198.51.100.1",
                                    "uplinks": [{"chassis": "hv1", "port": "eth9", "vlan": None,
                                                 "ip": "198.51.100.5"}]})
    ports = (PortInfo("up0", 3, external_ids=(("canopy-external-network", "public"), ("canopy-external-vlan", "7"),
                                              ("canopy-external-ip", "203.0.113.9"))),
             PortInfo("up1", 4, external_ids=(("canopy-external-network", "dmz"),)),
             PortInfo("junk", 5, external_ids=(("canopy-external-network", "nope"),)))
    snap = VrsSnapshot("s1", "p", "hv1", ports=ports)
    ups = extnet.uplinks_of(policy, snap)
    assert ups["n1"] == extnet.Uplink("n1", "up0", 7, "203.0.113.9", "ovsdb")
    assert ups["n2"] == extnet.Uplink("n2", "eth9", None, "198.51.100.5", "policy") and len(ups) == 2


def test_floating_ip_shows_the_hypervisor_it_is_active_on(ctl):
    tenant, _, subnet = demo_net(ctl)
    net = public(ctl)
    port = vm(ctl, subnet, "vm1", "02:00:00:00:00:01")
    fip = ctl.create("floating-ips", {"tenant_id": tenant["id"], "name": "a", "external_network_id": net["id"],
                                      "vport_id": port["id"]})
    ctl.state.locations[port["id"]] = binding.Location(port["id"], "s1", "hv1", 0xab, "tap1", 5, None, "kvm", None)
    ctl.state.vrs["s1"] = VrsSnapshot("s1", "p", "hv1", ports=(PortInfo("eth0", 3),))
    assert ctl.call("GET", f"/v1/floating-ips/{fip['id']}")[1]["state"] == "active"  # hv1's uplink: policy
    ctl.state.locations[port["id"]] = binding.Location(port["id"], "s2", "hv2", 0xac, "tap1", 5, None, "kvm", None)
    ctl.state.vrs["s2"] = VrsSnapshot("s2", "p", "hv2", ports=(PortInfo("eth0", 3),))
    got = ctl.call("GET", f"/v1/floating-ips/{fip['id']}")[1]
    assert (got["state"], got["active_on"], got["bound_on"]) == ("no_uplink", None, "hv2")
    ctl.state.vrs["s2"] = VrsSnapshot("s2", "p", "hv2", ports=(
        PortInfo("eth0", 3, external_ids=(("canopy-external-network", "public"),)),))
    status, listing = ctl.call("GET", "/v1/floating-ips")
    assert status == 200 and listing["items"][0]["id"] == fip["id"]
    assert listing["items"][0]["state"] == "active"
    assert listing["items"][0]["active_on"] == {"chassis": "hv2", "dpid": "00000000000000ac"}


def test_domains_translated_to_the_underlay_may_not_overlap(ctl):
    tenant, domain, _ = demo_net(ctl)
    net = public(ctl)
    other = ctl.create("tenants", {"name": "globex"})
    dom2 = ctl.create("domains", {"tenant_id": other["id"], "name": "main", "external_network_id": net["id"],
                                  "underlay_nat": True})
    ctl.create("subnets", {"tenant_id": other["id"], "domain_id": dom2["id"], "name": "web", "cidr": "10.0.1.0/25",
                           "gateway": "10.0.1.1"})
    problems = refused(ctl, "PATCH", f"/v1/domains/{domain['id']}", {"external_network_id": net["id"],
                                                                    "underlay_nat": True}, 409)
    assert problems[0][0] == "underlay_nat" and "overlaps subnet" in problems[0][1]
    status, _ = ctl.call("PATCH", f"/v1/domains/{domain['id']}", {"external_network_id": net["id"]})
    assert status == 200  # the same addresses with floating IPs only: fine


def test_writes_to_a_floating_ips_vport_or_a_translated_domains_subnets_are_checked(ctl):
    """The incremental policy check (controller/policyindex.py) sends these to the full check: a vport holding a
    floating IP, a subnet while floating IPs exist or in a translated domain."""
    tenant, domain, subnet = demo_net(ctl)
    net = public(ctl)
    vm1 = vm(ctl, subnet, "vm1", "02:00:00:00:00:01")
    ctl.create("floating-ips", {"tenant_id": tenant["id"], "name": "a", "external_network_id": net["id"],
                                "vport_id": vm1["id"]})
    assert refused(ctl, "PATCH", f"/v1/vports/{vm1['id']}", {"ips": []}) == [
        ("vport_id", "the vport has no IPv4 address")]
    other = ctl.create("tenants", {"name": "globex"})
    dom2 = ctl.create("domains", {"tenant_id": other["id"], "name": "main", "external_network_id": net["id"],
                                  "underlay_nat": True})
    status, _ = ctl.call("PATCH", f"/v1/domains/{domain['id']}", {"external_network_id": net["id"],
                                                                  "underlay_nat": True})
    assert status == 200
    problems = refused(ctl, "POST", "/v1/subnets", {"tenant_id": other["id"], "domain_id": dom2["id"],
                                                    "name": "web", "cidr": "10.0.1.0/25", "gateway": "10.0.1.1"},
                       409)
    assert problems[0][0] == "underlay_nat" and "overlaps subnet" in problems[0][1]
