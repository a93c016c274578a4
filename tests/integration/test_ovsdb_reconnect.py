"""An OVSDB reconnect of a hypervisor is the same switch (ovsdb/claims.py): keyed by its chassis, it keeps
its identity, and Canopy neither recomputes from scratch nor sends a single flow-mod. Real ovsdb-server and
ovs-vswitchd (userspace) in the Lab, traffic between two VMs across VXLAN before and after."""

from __future__ import annotations

import pytest

from tests.harness.ovsdb_driver import hold_for

pytestmark = pytest.mark.integration

POLICY = {"tenants": [{"name": "acme", "domains": [{"name": "prod", "subnets": [
    {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", "vports": [
        {"name": "a", "mac": "02:00:00:00:01:01", "ips": ["10.0.1.11"], "binding": {"flavour": "kvm"}},
        {"name": "b", "mac": "02:00:00:00:01:02", "ips": ["10.0.1.12"], "binding": {"flavour": "kvm"}},
    ]}]}]}]}


def sessions_of(canopy, chassis):
    return [s for s in canopy.api.get("/v1/ovsdb/sessions").json["items"] if s["chassis"] == chassis]


def sent(canopy, hvs):
    """What the reconcilers sent to each switch so far (flow and group mods, change sets)."""
    return {hv.name: canopy.api.get(f"/v1/switches/{hv.datapath_id():016x}/flows").json["status"]["sent"]
            for hv in hvs}


def in_sync(canopy, hvs):
    return all(canopy.api.get(f"/v1/switches/{hv.datapath_id():016x}/flows").json.get("in_sync") for hv in hvs)


def test_an_ovsdb_reconnect_keeps_the_switch_and_sends_nothing(lab):
    ctl = lab.add_controller_host("ctl1")
    canopy = lab.start_controller(ctl)
    assert canopy.api.post("/v1/apply", {"document": POLICY, "source": "t"}).status == 200
    kvm1, kvm2 = lab.add_hypervisor("kvm1", "kvm"), lab.add_hypervisor("kvm2", "kvm")
    for hv in (kvm1, kvm2):
        hv.connect(ctl)
    vm_a = lab.add_vm(kvm1, "a", mac="02:00:00:00:01:01", ip="10.0.1.11/24", vnic_id="a")
    lab.add_vm(kvm2, "b", mac="02:00:00:00:01:02", ip="10.0.1.12/24", vnic_id="b")
    lab.wait_until(lambda: canopy.api.get("/v1/status").json["vports_bound"] == 2, timeout=20, what="both bound")
    lab.wait_until(lambda: in_sync(canopy, (kvm1, kvm2)), timeout=20, what="both switches in sync")
    lab.wait_until(lambda: vm_a.ping("10.0.1.12", count=1, timeout=2), timeout=15, what="a reaches b")

    chassis = kvm1.vsctl("get", "Open_vSwitch", ".", "external_ids:system-id").strip().strip('"')
    [before] = sessions_of(canopy, chassis)
    switches = canopy.api.get("/v1/switches").json["items"]
    status = canopy.api.get("/v1/status").json
    sent_before = sent(canopy, (kvm1, kvm2))

    kvm1.vsctl("del-manager")  # the hypervisor's ovsdb-server drops the connection...
    lab.wait_until(lambda: not sessions_of(canopy, chassis), timeout=10, what="the old OVSDB session closed")
    kvm1.vsctl("set-manager", f"tcp:{ctl.ip}:6640")  # ...and connects again, from another port
    [after] = lab.wait_until(lambda: [s for s in sessions_of(canopy, chassis) if s["state"] == "synced"],
                             timeout=15, what="kvm1 back over OVSDB")
    assert after["peer"] != before["peer"] and after["session"] != before["session"]
    assert after["key"] == before["key"] and after["speaking"]

    # Well past the reconnect grace (10 s): the switch never went, nothing was recomputed or sent.
    def unchanged():
        now = canopy.api.get("/v1/status").json
        return (now["programmer"]["full_recomputes"] == status["programmer"]["full_recomputes"]
                and now["switches"] == status["switches"] and now["vports_bound"] == 2
                and sent(canopy, (kvm1, kvm2)) == sent_before)

    hold_for(12.0, unchanged, "no full recompute and no flow-mod after the reconnect", lambda: canopy.log_tail())
    assert [(s["chassis"], s["datapath_id"]) for s in canopy.api.get("/v1/switches").json["items"]] == \
        [(s["chassis"], s["datapath_id"]) for s in switches]
    log = canopy.log_path.read_text()
    assert f"chassis {chassis} reconnected: the same switch" in log
    assert "disconnected" not in log.split("reconnected: the same switch")[-1]
    assert vm_a.ping("10.0.1.12", count=1, timeout=2)
