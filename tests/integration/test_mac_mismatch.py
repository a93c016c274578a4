"""A vport whose policy MAC is not the MAC the hypervisor reports for the VM (KVM ``attached-mac``): REST shows
``mac_mismatch`` with both MACs, the controller logs it once, nothing is programmed for it (no DHCP answer);
once the policy MAC is fixed, the vport is bound and the VM gets its lease."""

from __future__ import annotations

import pytest

from tests.integration.test_overlay import dhcp

pytestmark = pytest.mark.integration

VM_MAC = "02:00:00:00:01:01"
WRONG_MAC = "02:00:00:00:01:99"


def policy(mac):
    return {"tenants": [{"name": "acme", "domains": [{"name": "prod", "subnets": [
        {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", "vports": [
            {"name": "vm1", "mac": mac, "ips": ["10.0.1.11"], "binding": {"flavour": "kvm", "iface_id": "vm1"}}]}]}]}]}


def vport(canopy):
    return canopy.api.get("/v1/vports").json["items"][0]


def test_a_mac_mismatch_is_reported_not_bound_and_fixing_the_policy_binds_it(lab):
    ctl = lab.add_controller_host("ctl1")
    canopy = lab.start_controller(ctl)
    assert canopy.api.post("/v1/apply", {"document": policy(WRONG_MAC), "source": "t"}).status == 200
    hv = lab.add_hypervisor("kvm1", "kvm")
    hv.connect(ctl)
    vm = lab.add_vm(hv, "vm1", mac=VM_MAC, vnic_id="vm1")
    lab.wait_until(lambda: vport(canopy)["status"] == "mac_mismatch", timeout=20, what="vm1 reported mac_mismatch")
    got = vport(canopy)
    assert got["mac_mismatch"] == {"policy": WRONG_MAC, "hypervisor": VM_MAC}
    assert got["location"]["port"] == vm.port
    ports = [p for sw in canopy.api.get("/v1/switches").json["items"] for p in sw["ports"] if p["name"] == vm.port]
    assert ports and ports[0]["vport"]["status"] == "mac_mismatch"
    assert canopy.api.get("/v1/status").json["vports_bound"] == 0
    assert dhcp(lab, vm) == {}  # not programmed: the classify table drops what the port sends
    log = (lab.workdir / "canopy.log").read_text()
    assert log.count("MAC mismatch") == 1 and WRONG_MAC in log and VM_MAC in log

    reply = canopy.api.post("/v1/apply", {"document": policy(VM_MAC), "source": "t"})
    assert reply.status == 200 and reply.json["changes"][0]["diff"] == [
        {"field": "mac", "old": WRONG_MAC, "new": VM_MAC}]
    lab.wait_until(lambda: vport(canopy)["status"] == "bound", timeout=20, what="vm1 bound once the MAC agrees")
    assert vport(canopy)["mac_mismatch"] is None
    lab.wait_until(lambda: dhcp(lab, vm).get("ip") == "10.0.1.11", timeout=60, interval=1, what="vm1's DHCP lease")
