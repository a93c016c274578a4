"""A routed subnet leaving its domain and joining it again, as a Neutron router interface removed and added makes it
(networking_canopy mapping.plan: a subnet's domain_id never changes, so the subnet is deleted with its vports and
created again in its new place with the same VNI, gateway and vports). Canopy only, no Neutron: a KVM VM in web
pings an ESXi VM (trunk VLAN 102) in db across the domain's router; db leaves (no route) and the ESXi VM resolves
its gateway meanwhile (the L2-only subnet answers with 02:ca:fe:00:00:01, which the VM then holds as REACHABLE for
up to 45 s), db comes back and the pings pass again within the usual wait (the VRS tells the VM the anycast gateway
MAC by gratuitous ARP, openflow/gateway_garp.py), several times; then the flows Canopy keeps equal what a restarted
controller computes from scratch (incremental == full compile after the moves)."""

from __future__ import annotations

import re

import pytest

from tests.harness.fabric import reach
from tests.integration.test_overlay import dhcp, pings

pytestmark = pytest.mark.integration

POLICY = {"tenants": [{"name": "acme", "domains": [{"name": "prod", "subnets": [
    {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", "vports": [
        {"name": "vma", "mac": "02:00:00:00:01:01", "ips": ["10.0.1.11"], "binding": {"flavour": "kvm"}}]},
    {"name": "db", "cidr": "10.0.2.0/24", "gateway": "10.0.2.1", "vports": [
        {"name": "vmd", "mac": "02:00:00:00:02:03", "ips": ["10.0.2.13"], "binding": {"flavour": "esxi"}}]},
]}]}]}
ROUNDS = 4


@pytest.fixture(scope="module")
def fabric(lab_capable):
    from tests.harness.lab import Lab

    with Lab() as lab:
        ctl = lab.add_controller_host("ctl1")
        canopy = lab.start_controller(ctl)
        reply = canopy.api.post("/v1/apply", {"document": POLICY, "source": "demo"})
        assert reply.status == 200, reply.text
        hosts = {"kvm": lab.add_hypervisor("kvm1", "kvm"), "esxi": lab.add_hypervisor("esx1", "esxi")}
        for hv in hosts.values():
            hv.connect(ctl)
        vms = {"vma": lab.add_vm(hosts["kvm"], "vma", mac="02:00:00:00:01:01", vnic_id="vma"),
               "vmd": lab.add_vm(hosts["esxi"], "vmd", mac="02:00:00:00:02:03", vnic_id="vmd", vlan=102)}
        lab.wait_until(lambda: canopy.api.get("/v1/status").json["vports_bound"] == 2, timeout=15,
                       what="both vports bound")
        for vm in vms.values():
            assert dhcp(lab, vm).get("ip"), vm.name
        yield lab, canopy, hosts, vms


def one(canopy, collection, name):
    [item] = canopy.api.get(f"/v1/{collection}?name={name}").json["items"]
    return item


def remake_db(canopy, domain_id):
    """What the Neutron driver does: delete db with its vports, create it again (same VNI) in ``domain_id``."""
    sub, vport = one(canopy, "subnets", "db"), one(canopy, "vports", "vmd")
    assert canopy.api.delete(f"/v1/subnets/{sub['id']}?cascade=true").status == 200
    body = {k: sub[k] for k in ("tenant_id", "name", "cidr", "gateway", "vni", "dhcp")}
    made = canopy.api.post("/v1/subnets", {**body, "domain_id": domain_id})
    assert made.status == 201, made.text
    body = {k: vport[k] for k in ("name", "mac", "ips", "binding")}
    made = canopy.api.post("/v1/vports", {**body, "subnet_id": made.json["id"]})
    assert made.status == 201, made.text


def neighbours(vm):
    return vm.exec("ip", "neigh", "show", "dev", "eth0").stdout.strip()


def test_db_leaving_the_domain_and_joining_again_routes_again_every_time(fabric):
    lab, canopy, _, vms = fabric
    domain = one(canopy, "domains", "prod")
    reach(lab, vms["vma"], "10.0.2.13", "KVM to ESXi across the router")
    for n in range(ROUNDS):
        remake_db(canopy, None)
        lab.wait_until(lambda: not pings(vms["vma"], "10.0.2.13"), timeout=15, what=f"round {n}: no route to db")
        vms["vmd"].exec("ip", "neigh", "flush", "dev", "eth0")  # vmd asks for its gateway while db is L2-only
        vms["vmd"].exec("ping", "-c", "1", "-W", "1", "10.0.2.1", timeout=5)
        held = neighbours(vms["vmd"])
        remake_db(canopy, domain["id"])
        try:
            reach(lab, vms["vma"], "10.0.2.13", f"round {n}: KVM to ESXi across the router again")
        except AssertionError as error:
            raise AssertionError(f"{error}\nvmd in the L2 window: {held}\nvma: {neighbours(vms['vma'])}\n"
                                 f"vmd: {neighbours(vms['vmd'])}") from None


def flows_of(hv):
    """Canopy's flows on the bridge, without counters."""
    lines = [line for line in hv.ofctl("dump-flows", "br-int").splitlines() if "cookie=0xca" in line]
    return sorted(re.sub(r" (duration|n_packets|n_bytes|idle_age|hard_age)=[^,]*,", "", line) for line in lines)


def test_after_the_moves_the_flows_equal_what_a_restarted_controller_computes(fabric):
    lab, canopy, hosts, vms = fabric
    before = {name: flows_of(hv) for name, hv in hosts.items()}
    canopy.stop()
    canopy.restart()
    for name, hv in hosts.items():
        dpid = f"{hv.datapath_id():016x}"
        lab.wait_until(lambda: canopy.api.get(f"/v1/switches/{dpid}/flows").json.get("in_sync"), timeout=20,
                       what=f"{name} flows in sync after the restart")
        assert flows_of(hv) == before[name], name
    reach(lab, vms["vma"], "10.0.2.13", "KVM to ESXi after the restart")
