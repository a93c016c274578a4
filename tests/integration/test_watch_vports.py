"""GET /v1/watch/vports against a real VRS: a long poll that is open while a VM is plugged answers with the
change, and following the cursor reaches ``programmed`` exactly when every flow of the vport is installed on
its switch (and the VM gets its DHCP lease at once)."""

from __future__ import annotations

import threading

import pytest

from tests.harness.http import RestClient
from tests.integration.test_overlay import dhcp

pytestmark = pytest.mark.integration

POLICY = {"tenants": [{"name": "acme", "domains": [{"name": "prod", "subnets": [
    {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", "vports": [
        {"name": "os-vm1", "mac": "02:00:00:00:01:01", "ips": ["10.0.1.11"],
         "binding": {"flavour": "kvm", "iface_id": "vm1"}}]}]}]}]}


def test_a_long_poll_follows_a_vm_until_its_vport_is_programmed(lab):
    ctl = lab.add_controller_host("ctl1")
    canopy = lab.start_controller(ctl)
    assert canopy.api.post("/v1/apply", {"document": POLICY, "source": "t"}).status == 200
    hv = lab.add_hypervisor("kvm1", "kvm")
    hv.connect(ctl)
    lab.wait_until(lambda: canopy.api.get("/v1/switches").json["items"], timeout=20, what="kvm1 connected")
    watcher = RestClient(ctl.ns, "127.0.0.1", 8080, token=None, timeout=40)
    first = watcher.get("/v1/watch/vports?prefix=os-").json
    [item] = first["items"]
    assert (item["name"], item["status"], item["programmed"]) == ("os-vm1", "unbound", False)
    replies = []
    poll = threading.Thread(target=lambda: replies.append(
        watcher.get(f"/v1/watch/vports?prefix=os-&since={first['cursor']}&wait=20")))
    poll.start()
    lab.wait_until(lambda: not replies and poll.is_alive(), timeout=5, what="the long poll open and waiting")
    vm = lab.add_vm(hv, "vm1", mac="02:00:00:00:01:01", vnic_id="vm1")
    poll.join(40)
    assert replies and replies[0].status == 200 and replies[0].json["cursor"] != first["cursor"]
    reply = replies[0].json

    def followed():
        nonlocal reply
        if reply["items"][0]["programmed"]:
            return reply
        reply = watcher.get(f"/v1/watch/vports?prefix=os-&since={reply['cursor']}&wait=20").json
        return reply["items"][0]["programmed"] and reply

    done = lab.wait_until(followed, timeout=30, what="os-vm1 programmed")
    [item] = done["items"]
    assert item["status"] == "bound"
    dpid = canopy.api.get(f"/v1/vports/{item['id']}").json["location"]["datapath_id"]
    flows = canopy.api.get(f"/v1/switches/{dpid}/flows?owner={item['id']}").json["flows"]
    assert flows and all(f["desired"] and f["installed"] for f in flows), flows
    assert dhcp(lab, vm).get("ip") == "10.0.1.11"
    lab.remove_vm(vm)
    gone = lab.wait_until(lambda: (lambda r: not r["items"][0]["programmed"] and r)(
        watcher.get("/v1/watch/vports?prefix=os-").json), timeout=15, what="os-vm1 no longer programmed")
    assert gone["items"][0]["status"] == "unbound"
