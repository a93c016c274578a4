"""OpenStack drives Canopy: a real Neutron 29 (MariaDB, uWSGI, noauth, no agents) with the networking-canopy
ML2 driver and L3 plugin, a fake Nova, and Canopy with a KVM, a Hyper-V and an ESXi hypervisor. Everything is
asked of Neutron's API only; the proof is Canopy's objects, port status, Nova's events and traffic: security group
rules opening and closing TCP between VMs, remote-group and default-group rules, and a floating IP reached from an
outside host on the external network until it is disassociated."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

from tests.harness.external import external_segment, join_external, outside_host, serve_echo, tcp
from tests.harness.fabric import reach
from tests.harness.openstack import NeutronLab, neutron_unavailable
from tests.integration.test_overlay import dhcp, pings

pytestmark = pytest.mark.integration
PROJECT = "0123456789abcdef0123456789abcdef"
ADMIN_PROJECT = "fedcba9876543210fedcba9876543210"
OUTSIDE_IP, OUTSIDE_MAC = "203.0.113.1", "02:00:00:ee:00:01"
UPLINK_IPS = {"kvm": "203.0.113.101", "esxi": "203.0.113.103"}


def canopy_items(canopy, collection, **query):
    reply = canopy.api.get(f"/v1/{collection}" + ("?" + "&".join(f"{k}={v}" for k, v in query.items())
                                                   if query else ""))
    assert reply.status == 200, reply.text
    return reply.json["items"]


def vport_of(canopy, port_id):
    found = canopy_items(canopy, "vports", name=f"os-{port_id}")
    return found[0] if found else None


def bound_port(neutron, network, host, name, profile=None, **extra):
    body = {"network_id": network["id"], "project_id": PROJECT, "name": name, "device_owner": "compute:nova",
            "device_id": str(uuid.uuid4()), "binding:host_id": host, **extra}
    if profile:
        body["binding:profile"] = profile
    return neutron.create("port", body)


@pytest.fixture(scope="module")
def cloud(lab_capable):
    from tests.harness.lab import Lab

    reason = neutron_unavailable()
    if reason:
        pytest.skip(reason)
    with Lab() as lab, ThreadPoolExecutor(max_workers=1) as background:
        ctl = lab.add_controller_host("ctl1")
        canopy = lab.start_controller(ctl)
        neutron = NeutronLab(lab, ctl, gateway_macs={"public": OUTSIDE_MAC})
        # MariaDB, Neutron's schema (~7 CPU s and ~6,500 fdatasyncs) and Neutron's start (its start-up sync finds
        # no network yet) while the hypervisors are made: nothing Neutron does touches them (docs/benchmarks.md)
        started = background.submit(neutron.start)
        hosts = {"kvm": lab.add_hypervisor("oskvm", "kvm"), "hyperv": lab.add_hypervisor("oshyv", "hyperv"),
                 "esxi": lab.add_hypervisor("osesx", "esxi")}
        for hv in hosts.values():
            hv.connect(ctl)
        started.result()
        lab.wait_until(lambda: len(canopy.api.get("/v1/switches").json["items"]) == 3, timeout=20,
                       what="three hypervisors known to Canopy")
        nets = {}
        for name, cidr in (("web", "10.10.1.0/24"), ("db", "10.10.2.0/24")):
            net = neutron.create("network", {"name": name, "project_id": PROJECT, "port_security_enabled": False})
            sub = neutron.create("subnet", {"network_id": net["id"], "project_id": PROJECT, "ip_version": 4,
                                            "cidr": cidr, "dns_nameservers": ["10.10.0.53"]})
            nets[name] = (net, sub)
        router = neutron.create("router", {"name": "r1", "project_id": PROJECT})
        for _, sub in nets.values():
            reply = neutron.api.put(f"/v2.0/routers/{router['id']}/add_router_interface", {"subnet_id": sub["id"]})
            assert reply.status == 200, reply.text
        ports = {
            "vma": bound_port(neutron, nets["web"][0], "oskvm", "vma"),
            "vmh": bound_port(neutron, nets["web"][0], "oshyv", "vmh", {"canopy_port_name": "vmh"}),
            "vmd": bound_port(neutron, nets["db"][0], "osesx", "vmd"),
        }
        ext = neutron.create("network", {"name": "public", "project_id": ADMIN_PROJECT, "router:external": True})
        neutron.create("subnet", {"network_id": ext["id"], "project_id": ADMIN_PROJECT, "ip_version": 4,
                                  "cidr": "203.0.113.0/24", "gateway_ip": OUTSIDE_IP, "enable_dhcp": False,
                                  "allocation_pools": [{"start": "203.0.113.10", "end": "203.0.113.99"}]})
        segment = external_segment(lab)
        for flavour, ip in UPLINK_IPS.items():  # the hypervisors' uplinks, announced in OVSDB (docs/openstack.md)
            join_external(segment, hosts[flavour], f"os-{ext['id']}", ip)
        outside = outside_host(lab, segment, f"{OUTSIDE_IP}/24", OUTSIDE_MAC)
        yield SimpleNamespace(lab=lab, canopy=canopy, neutron=neutron, hosts=hosts, nets=nets, router=router,
                              ports=ports, vms={}, ext=ext, outside=outside, sec=SimpleNamespace())


def test_networks_subnets_and_the_router_become_canopy_subnets_in_a_domain(cloud):
    canopy, nets, router = cloud.canopy, cloud.nets, cloud.router
    [tenant] = canopy_items(canopy, "tenants", name=f"os-{PROJECT}")
    [domain] = canopy_items(canopy, "domains", name=f"os-{router['id']}")
    assert domain["tenant_id"] == tenant["id"]
    for net, sub in nets.values():
        [subnet] = canopy_items(canopy, "subnets", name=f"os-{net['id']}")
        assert (subnet["domain_id"], subnet["vni"], subnet["cidr"], subnet["gateway"]) == (
            domain["id"], net["provider:segmentation_id"], sub["cidr"], sub["gateway_ip"])
        assert subnet["dhcp"]["dns_servers"] == ["10.10.0.53"] and subnet["dhcp"]["mtu"] == net["mtu"]


def test_ports_bind_with_vif_type_ovs_and_stay_down_until_the_vm_is_wired(cloud):
    lab, canopy, ports = cloud.lab, cloud.canopy, cloud.ports
    flavours = {"vma": "kvm", "vmh": "hyperv", "vmd": "esxi"}
    for name, port in ports.items():
        assert port["binding:vif_type"] == "ovs" and port["binding:vif_details"]["port_filter"] is True
        assert port["status"] == "DOWN"
        vport = lab.wait_until(lambda: vport_of(canopy, port["id"]), timeout=10, what=f"vport of {name}")
        assert vport["binding"]["flavour"] == flavours[name] and vport["mac"] == port["mac_address"]
        assert vport["ips"] == [port["fixed_ips"][0]["ip_address"]] and vport["status"] == "unbound"


def test_vms_plugged_like_nova_does_make_ports_active_and_nova_hears_vif_plugged(cloud):
    lab, neutron, ports = cloud.lab, cloud.neutron, cloud.ports
    vms = {
        "vma": lab.add_vm(cloud.hosts["kvm"], "vma", mac=ports["vma"]["mac_address"], vnic_id=ports["vma"]["id"]),
        "vmh": lab.add_vm(cloud.hosts["hyperv"], "vmh", mac=ports["vmh"]["mac_address"]),
        "vmd": lab.add_vm(cloud.hosts["esxi"], "vmd", mac=ports["vmd"]["mac_address"], vnic_id=ports["vmd"]["id"],
                          vlan=101),
    }
    for name, port in ports.items():
        lab.wait_until(lambda: neutron.show("port", port["id"])["status"] == "ACTIVE", timeout=30,
                       what=f"port {name} ACTIVE")
    plugged = lab.wait_until(lambda: {e["tag"] for e in neutron.nova_events() if e["name"] == "network-vif-plugged"
                                      } >= {p["id"] for p in ports.values()} and neutron.nova_events(),
                             timeout=30, what="network-vif-plugged for every port")
    by_port = {e["tag"]: e for e in plugged if e["name"] == "network-vif-plugged"}
    for port in ports.values():
        assert by_port[port["id"]]["server_uuid"] == port["device_id"]
        assert by_port[port["id"]]["status"] == "completed"
    cloud.vms.update(vms)


def test_vms_get_their_neutron_addresses_by_dhcp_and_ping_across_hosts_and_subnets(cloud):
    lab, nets, router, ports = cloud.lab, cloud.nets, cloud.router, cloud.ports
    vms = cloud.vms
    for name, vm in vms.items():
        lease = dhcp(lab, vm)
        assert lease.get("ip") == ports[name]["fixed_ips"][0]["ip_address"], (name, lease)
        assert lease.get("dns") == "10.10.0.53"
    assert dhcp(lab, vms["vmd"]).get("router") == nets["db"][1]["gateway_ip"]
    ip = {name: port["fixed_ips"][0]["ip_address"] for name, port in ports.items()}
    reach(lab, vms["vma"], ip["vmh"], "KVM to Hyper-V in one network")
    reach(lab, vms["vma"], ip["vmd"], "KVM to ESXi across the router")
    reach(lab, vms["vmd"], ip["vmh"], "ESXi to Hyper-V across the router")


def test_what_canopy_cannot_express_is_refused_and_nothing_is_half_created(cloud):
    canopy, neutron, nets, router, ports = cloud.canopy, cloud.neutron, cloud.nets, cloud.router, cloud.ports
    before = len(canopy_items(canopy, "vports"))
    secured = neutron.create("network", {"name": "sec", "project_id": PROJECT})  # port security on by default
    reply = neutron.api.post("/v2.0/ports", {"port": {"network_id": secured["id"], "project_id": PROJECT,
                                                      "security_groups": []}})
    assert reply.status == 400 and "without security groups" in reply.json["NeutronError"]["message"], reply.text
    reply = neutron.api.post("/v2.0/subnets", {"subnet": {"network_id": nets["web"][0]["id"], "project_id": PROJECT,
                                                          "ip_version": 4, "cidr": "10.10.9.0/24"}})
    assert reply.status == 400 and "one IPv4 subnet" in reply.json["NeutronError"]["message"], reply.text
    [default] = neutron.api.get(f"/v2.0/security-groups?name=default&project_id={PROJECT}").json["security_groups"]
    reply = neutron.api.post("/v2.0/security-group-rules", {"security_group_rule": {
        "security_group_id": default["id"], "direction": "ingress", "protocol": "sctp"}})
    assert reply.status == 400 and "protocol 'sctp'" in reply.json["NeutronError"]["message"], reply.text
    reply = neutron.api.put(f"/v2.0/routers/{router['id']}", {"router": {"external_gateway_info": {
        "network_id": cloud.ext["id"], "external_fixed_ips": [{"ip_address": "203.0.113.77"}]}}})
    assert reply.status == 400 and "external_fixed_ips" in reply.json["NeutronError"]["message"], reply.text
    assert neutron.show("router", router["id"])["external_gateway_info"] is None
    assert not neutron.api.get("/v2.0/ports?device_owner=network:router_gateway").json["ports"]
    reply = neutron.api.post("/v2.0/ports", {"port": {"network_id": cloud.ext["id"], "project_id": PROJECT,
                                                      "device_owner": "compute:nova"}})
    assert reply.status == 400 and "floating IP" in reply.json["NeutronError"]["message"], reply.text
    assert neutron.api.get("/v2.0/security-group-rules?protocol=sctp").json["security_group_rules"] == []
    assert len(canopy_items(canopy, "vports")) == before
    assert neutron.api.delete(f"/v2.0/networks/{secured['id']}").status == 204


def test_deleting_a_port_removes_its_vport_and_its_traffic(cloud):
    lab, canopy, neutron, ports = cloud.lab, cloud.canopy, cloud.neutron, cloud.ports
    vms = cloud.vms
    target = ports["vmh"]
    assert neutron.api.delete(f"/v2.0/ports/{target['id']}").status == 204
    lab.wait_until(lambda: vport_of(canopy, target["id"]) is None, timeout=10, what="the vport deleted")
    lab.wait_until(lambda: not pings(vms["vma"], target["fixed_ips"][0]["ip_address"]), timeout=15,
                   what="the deleted port unreachable")


def test_the_sync_repairs_a_vport_deleted_behind_neutrons_back_and_leaves_others_alone(cloud):
    lab, canopy, neutron, ports = cloud.lab, cloud.canopy, cloud.neutron, cloud.ports
    vms = cloud.vms
    manual = canopy.api.post("/v1/tenants", {"name": "manual"})
    assert manual.status == 201, manual.text
    victim = vport_of(canopy, ports["vmd"]["id"])
    assert canopy.api.delete(f"/v1/vports/{victim['id']}").status == 200
    repaired = lab.wait_until(lambda: vport_of(canopy, ports["vmd"]["id"]), timeout=30,
                              what="the periodic sync recreating the vport")
    assert repaired["id"] != victim["id"] and repaired["mac"] == victim["mac"] and repaired["ips"] == victim["ips"]
    repair = "Canopy repair: create vport os-%s (missing in Canopy)" % ports["vmd"]["id"]
    lab.wait_until(lambda: repair in neutron.neutron_log.read_text(), timeout=10,
                   what="the repair in Neutron's log (written just after the create)")
    reach(lab, vms["vma"], ports["vmd"]["fixed_ips"][0]["ip_address"], "KVM to ESXi again after the repair")
    lab.wait_until(lambda: neutron.show("port", ports["vmd"]["id"])["status"] == "ACTIVE", timeout=30,
                   what="the repaired port ACTIVE")
    assert canopy_items(canopy, "tenants", name="manual"), "a tenant made outside Neutron was removed"


def test_a_router_interface_removed_and_added_again_moves_the_subnet_out_of_and_into_the_domain(cloud):
    lab, canopy, neutron, router, ports = cloud.lab, cloud.canopy, cloud.neutron, cloud.router, cloud.ports
    db_net, db_sub = cloud.nets["db"]
    vmd_ip = ports["vmd"]["fixed_ips"][0]["ip_address"]
    path = f"/v2.0/routers/{router['id']}"
    assert neutron.api.put(path + "/remove_router_interface", {"subnet_id": db_sub["id"]}).status == 200
    [subnet] = canopy_items(canopy, "subnets", name=f"os-{db_net['id']}")
    assert subnet["domain_id"] is None and vport_of(canopy, ports["vmd"]["id"]) is not None
    lab.wait_until(lambda: not pings(cloud.vms["vma"], vmd_ip), timeout=15, what="no route to the db network")
    vmd = cloud.vms["vmd"]  # resolves its gateway meanwhile: answered with the L2-only subnet's MAC (02:ca:fe:00:00:01)
    vmd.exec("ip", "neigh", "flush", "dev", "eth0")
    vmd.exec("ping", "-c", "1", "-W", "1", db_sub["gateway_ip"], timeout=5)
    assert neutron.api.put(path + "/add_router_interface", {"subnet_id": db_sub["id"]}).status == 200
    [domain] = canopy_items(canopy, "domains", name=f"os-{router['id']}")
    assert canopy_items(canopy, "subnets", name=f"os-{db_net['id']}")[0]["domain_id"] == domain["id"]
    reach(lab, cloud.vms["vma"], vmd_ip, "KVM to ESXi across the router again")  # vmd told the gateway's MAC


def test_a_vm_leaving_its_hypervisor_takes_its_port_down_and_up_again_when_it_returns(cloud):
    lab, neutron, port = cloud.lab, cloud.neutron, cloud.ports["vmd"]
    lab.wait_until(lambda: neutron.show("port", port["id"])["status"] == "ACTIVE", timeout=30, what="vmd ACTIVE")
    lab.remove_vm(cloud.vms.pop("vmd"))
    lab.wait_until(lambda: neutron.show("port", port["id"])["status"] == "DOWN", timeout=30, what="vmd DOWN")
    plugged = [e for e in neutron.nova_events() if e["tag"] == port["id"] and e["name"] == "network-vif-plugged"]
    vm = lab.add_vm(cloud.hosts["esxi"], "vmd2", mac=port["mac_address"], vnic_id=port["id"], vlan=102)
    cloud.vms["vmd"] = vm
    lab.wait_until(lambda: neutron.show("port", port["id"])["status"] == "ACTIVE", timeout=30, what="vmd ACTIVE again")
    lab.wait_until(lambda: len([e for e in neutron.nova_events() if e["tag"] == port["id"]
                                and e["name"] == "network-vif-plugged"]) > len(plugged), timeout=30,
                   what="a second network-vif-plugged for vmd")


# ------------------------------------------------------------------ security groups

def group_rule(neutron, group, **fields):
    return neutron.create("security_group_rule", {"security_group_id": group["id"], "direction": "ingress",
                                                  "ethertype": "IPv4", **fields})


def test_ports_in_security_groups_are_members_of_policy_groups_with_their_acls(cloud):
    """Three VMs with port security: s1 (KVM, web) in group app, s2 (ESXi, db) in group client, s3 (KVM, web) in
    the project's default group. app admits ICMP from anywhere; nothing else is open yet."""
    lab, canopy, neutron, sec = cloud.lab, cloud.canopy, cloud.neutron, cloud.sec
    sec.app = neutron.create("security_group", {"name": "app", "project_id": PROJECT})
    sec.client = neutron.create("security_group", {"name": "client", "project_id": PROJECT})
    [sec.default] = neutron.api.get(f"/v2.0/security-groups?name=default&project_id={PROJECT}").json[
        "security_groups"]
    group_rule(neutron, sec.app, protocol="icmp")
    web, db = cloud.nets["web"][0], cloud.nets["db"][0]
    sec.ports = {
        "s1": bound_port(neutron, web, "oskvm", "s1", port_security_enabled=True, security_groups=[sec.app["id"]]),
        "s2": bound_port(neutron, db, "osesx", "s2", port_security_enabled=True, security_groups=[sec.client["id"]]),
        "s3": bound_port(neutron, web, "oskvm", "s3", port_security_enabled=True,
                         security_groups=[sec.default["id"]]),
    }
    where = {"s1": ("kvm", None), "s2": ("esxi", 103), "s3": ("kvm", None)}
    sec.vms = {name: lab.add_vm(cloud.hosts[where[name][0]], name, mac=port["mac_address"], vnic_id=port["id"],
                                vlan=where[name][1]) for name, port in sec.ports.items()}
    sec.ip = {name: port["fixed_ips"][0]["ip_address"] for name, port in sec.ports.items()}
    for name, port in sec.ports.items():
        lab.wait_until(lambda: neutron.show("port", port["id"])["status"] == "ACTIVE", timeout=30,
                       what=f"port {name} ACTIVE")
        assert dhcp(lab, sec.vms[name]).get("ip") == sec.ip[name], f"{name}: DHCP passes whatever the ACLs say"
    serve_echo(lab, sec.vms["s1"], 8080, 9090)
    [group] = canopy_items(canopy, "policy-groups", name=f"os-{sec.app['id']}")
    [acl] = canopy_items(canopy, "acls", name=f"os-{sec.app['id']}")
    assert acl["policy_groups"] == [group["id"]] and acl["default_action"] == "deny"
    assert sorted((r["direction"], r["protocol"]) for r in acl["rules"]) == [("egress", "any"), ("ingress", "icmp")]
    assert vport_of(canopy, sec.ports["s1"]["id"])["policy_groups"] == [group["id"]]
    reach(lab, sec.vms["s2"], sec.ip["s1"], "s2 pings s1 (app admits ICMP), across the router")


def test_a_security_group_rule_opens_and_closes_tcp(cloud):
    lab, neutron, sec = cloud.lab, cloud.neutron, cloud.sec
    s1, s2 = sec.ip["s1"], sec.vms["s2"]
    reach(lab, s2, s1, "s2 reaches s1 (the path works)")
    assert not tcp(s2, s1, 8080), "app has no rule for tcp 8080 yet"
    opened = group_rule(neutron, sec.app, protocol="tcp", port_range_min=8080, port_range_max=8080,
                        remote_ip_prefix=cloud.nets["db"][1]["cidr"])
    lab.wait_until(lambda: tcp(s2, s1, 8080), timeout=20, what="tcp 8080 from the db network open")
    assert not tcp(s2, s1, 9090), "the rule opens 8080 only"
    neutron.delete("security_group_rule", opened["id"])
    lab.wait_until(lambda: not tcp(s2, s1, 8080), timeout=20, what="tcp 8080 closed again")
    assert s2.ping(s1, timeout=2), "ICMP still admitted"


def test_a_remote_group_rule_admits_the_groups_members_only(cloud):
    lab, neutron, sec = cloud.lab, cloud.neutron, cloud.sec
    s1 = sec.ip["s1"]
    group_rule(neutron, sec.app, protocol="tcp", port_range_min=9090, port_range_max=9090,
               remote_group_id=sec.client["id"])
    lab.wait_until(lambda: tcp(sec.vms["s2"], s1, 9090), timeout=20, what="s2 (in client) reaches s1:9090")
    reach(lab, sec.vms["s3"], s1, "s3 reaches s1 (ICMP)")
    assert not tcp(sec.vms["s3"], s1, 9090), "s3 is not in client"
    assert not tcp(cloud.vms["vma"], s1, 9090), "vma (no port security, no group) is not in client"
    neutron.update("port", sec.ports["s2"]["id"], {"security_groups": [sec.default["id"]]})
    lab.wait_until(lambda: not tcp(sec.vms["s2"], s1, 9090), timeout=20, what="s2 out of client: 9090 closed")


def test_the_default_group_admits_its_members_and_lets_everything_out(cloud):
    """s2 and s3 are now in the project's default group: each admits the other; vma (outside the group) is
    reached from s3 (egress allowed) but cannot open anything to s3 (ingress denied by default)."""
    lab, sec, vma = cloud.lab, cloud.sec, cloud.vms["vma"]
    reach(lab, sec.vms["s2"], sec.ip["s3"], "s2 -> s3 within the default group")
    reach(lab, sec.vms["s3"], sec.ip["s2"], "s3 -> s2 within the default group")
    reach(lab, sec.vms["s3"], cloud.ports["vma"]["fixed_ips"][0]["ip_address"], "s3 -> vma (egress allowed)")
    assert not pings(vma, sec.ip["s3"]), "vma is not in the default group"


# ------------------------------------------------------------------ external network and floating IPs

def test_a_router_gateway_puts_the_domain_on_the_external_network(cloud):
    canopy, neutron, router = cloud.canopy, cloud.neutron, cloud.router
    neutron.update("router", router["id"], {"external_gateway_info": {"network_id": cloud.ext["id"]}})
    [extnet] = canopy_items(canopy, "external-networks", name=f"os-{cloud.ext['id']}")
    assert (extnet["cidr"], extnet["gateway"], extnet["gateway_mac"]) == ("203.0.113.0/24", OUTSIDE_IP, OUTSIDE_MAC)
    [domain] = canopy_items(canopy, "domains", name=f"os-{router['id']}")
    assert (domain["external_network_id"], domain["underlay_nat"]) == (extnet["id"], True)
    # a second router translating a network that overlaps web would share Canopy's translation zone: refused
    other = neutron.create("network", {"name": "web2", "project_id": PROJECT, "port_security_enabled": False})
    sub = neutron.create("subnet", {"network_id": other["id"], "project_id": PROJECT, "ip_version": 4,
                                    "cidr": "10.10.1.0/25"})
    r2 = neutron.create("router", {"name": "r2", "project_id": PROJECT})
    assert neutron.api.put(f"/v2.0/routers/{r2['id']}/add_router_interface", {"subnet_id": sub["id"]}).status == 200
    reply = neutron.api.put(f"/v2.0/routers/{r2['id']}", {"router": {"external_gateway_info": {
        "network_id": cloud.ext["id"]}}})
    assert reply.status == 400 and f"of router {router['id']}" in reply.json["NeutronError"]["message"], reply.text
    assert neutron.show("router", r2["id"])["external_gateway_info"] is None
    neutron.update("router", r2["id"], {"external_gateway_info": {"network_id": cloud.ext["id"],
                                                                  "enable_snat": False}})
    [domain2] = canopy_items(canopy, "domains", name=f"os-{r2['id']}")
    assert (domain2["external_network_id"], domain2["underlay_nat"]) == (extnet["id"], False)


def test_a_floating_ip_is_reachable_from_outside_until_disassociated(cloud):
    lab, canopy, neutron, outside = cloud.lab, cloud.canopy, cloud.neutron, cloud.outside
    vma = cloud.ports["vma"]
    serve_echo(lab, cloud.vms["vma"], 7001)
    fip = neutron.create("floatingip", {"floating_network_id": cloud.ext["id"], "project_id": PROJECT,
                                        "port_id": vma["id"]})
    address = fip["floating_ip_address"]
    [mapped] = canopy_items(canopy, "floating-ips", name=f"os-{fip['id']}")
    assert mapped["address"] == address and mapped["vport_id"] == vport_of(canopy, vma["id"])["id"]
    lab.wait_until(lambda: outside.ping(address, timeout=1), timeout=30, what=f"outside pings {address} (vma)")
    lab.wait_until(lambda: tcp(outside, address, 7001), timeout=20, what="outside connects to vma:7001")
    neutron.update("floatingip", fip["id"], {"port_id": None})
    assert canopy_items(canopy, "floating-ips", name=f"os-{fip['id']}")[0]["vport_id"] is None
    lab.wait_until(lambda: not outside.ping(address, timeout=1), timeout=20, what="the freed address unreachable")
    assert not tcp(outside, address, 7001)
    cloud.sec.fip = fip


def test_a_floating_ip_moved_to_a_secured_port_answers_there_within_its_security_groups(cloud):
    lab, canopy, neutron, outside, sec = cloud.lab, cloud.canopy, cloud.neutron, cloud.outside, cloud.sec
    fip, address = sec.fip, sec.fip["floating_ip_address"]
    neutron.update("floatingip", fip["id"], {"port_id": sec.ports["s1"]["id"]})
    lab.wait_until(lambda: outside.ping(address, timeout=1), timeout=30, what="outside pings s1 (app admits ICMP)")
    assert not tcp(outside, address, 8080), "app admits no tcp 8080 from outside"
    neutron.delete("floatingip", fip["id"])
    assert not canopy_items(canopy, "floating-ips", name=f"os-{fip['id']}")
    lab.wait_until(lambda: not outside.ping(address, timeout=1), timeout=20, what="the deleted address unreachable")


def test_a_neutron_restart_repairs_canopy_with_its_start_up_sync(cloud):
    """Neutron is stopped (and restarted with only its start-up sync: sync_interval 0); behind its back vma's vport
    and app's ACL are deleted in Canopy, and a stale os- subnet and a stale os- ACL made in its tenant. The
    restarted Neutron's sync makes the vport and app's ACL again (ICMP admitted, TCP 8080 still closed), deletes
    the stale ones and leaves the tenant made outside Neutron alone. (One restart for both kinds of repair: each
    start of Neutron takes 10-20 s.)"""
    lab, canopy, neutron, ports, sec = cloud.lab, cloud.canopy, cloud.neutron, cloud.ports, cloud.sec
    neutron.set_sync_interval(0)  # from now on only the start-up sync runs
    neutron.stop_neutron()
    victim = vport_of(canopy, ports["vma"]["id"])
    assert canopy.api.delete(f"/v1/vports/{victim['id']}").status == 200
    [tenant] = canopy_items(canopy, "tenants", name=f"os-{PROJECT}")
    stale_subnet = canopy.api.post("/v1/subnets", {"tenant_id": tenant["id"], "name": f"os-{uuid.uuid4()}"})
    assert stale_subnet.status == 201, stale_subnet.text
    [acl] = canopy_items(canopy, "acls", name=f"os-{sec.app['id']}")
    assert canopy.api.delete(f"/v1/acls/{acl['id']}").status == 200
    stale_acl = canopy.api.post("/v1/acls", {"tenant_id": acl["tenant_id"], "name": f"os-{uuid.uuid4()}"})
    assert stale_acl.status == 201, stale_acl.text
    neutron.start_neutron()
    lab.wait_until(lambda: vport_of(canopy, ports["vma"]["id"]), timeout=30, what="the start-up sync's repair")
    lab.wait_until(lambda: not canopy_items(canopy, "subnets", name=stale_subnet.json["name"]), timeout=30,
                   what="the stale subnet deleted")
    lab.wait_until(lambda: canopy_items(canopy, "acls", name=f"os-{sec.app['id']}"), timeout=30,
                   what="app's ACL made again")
    lab.wait_until(lambda: not canopy_items(canopy, "acls", name=stale_acl.json["name"]), timeout=30,
                   what="the stale ACL deleted")
    for line in (f"Canopy repair: create vport os-{ports['vma']['id']} (missing in Canopy)",
                 f"Canopy repair: delete subnet {stale_subnet.json['name']} (not in Neutron)",
                 f"Canopy repair: create acl os-{sec.app['id']} (missing in Canopy)",
                 f"Canopy repair: delete acl {stale_acl.json['name']} (not in Neutron)"):
        lab.wait_until(lambda: line in neutron.neutron_log.read_text(), timeout=10, what=line)
    assert canopy_items(canopy, "tenants", name="manual"), "a tenant made outside Neutron was removed"
    reach(lab, sec.vms["s2"], ports["vma"]["fixed_ips"][0]["ip_address"],  # s2's default group lets it out
          "ESXi to KVM (the repaired vport) after the restart")
    lab.wait_until(lambda: not tcp(sec.vms["s2"], sec.ip["s1"], 8080), timeout=20,
                   what="app's ACL enforced again: tcp 8080 closed")
    reach(lab, sec.vms["s2"], sec.ip["s1"], "s2 pings s1 (app admits ICMP)")


def test_the_driver_logged_no_error(cloud):
    # (ML2 itself logs each refusal above with a traceback: neutron.plugins.ml2.managers, not the driver)
    errors = [line for line in cloud.neutron.neutron_log.read_text().splitlines() if "ERROR networking_canopy" in line]
    assert not errors, "\n".join(errors[:20])
