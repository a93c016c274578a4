"""A bare-metal server on VLAN 100 of a hardware VTEP (the real ovs-vtep emulator) in the same subnet as
VMs on a KVM-style and a Hyper-V-style VRS, all driven by one Canopy: ping both ways, an OVSDB reconnect
that is the same VTEP (no full recompute, nothing written or sent), a migration the VTEP follows, and
unbinding the VLAN that stops the traffic."""

from __future__ import annotations

import pytest

from tests.harness.fabric import reach, vtep_fabric
from tests.harness.ovsdb_driver import hold_for

pytestmark = pytest.mark.integration

BM_MAC = "02:00:00:00:0b:01"
POLICY = {
    "tenants": [{"name": "acme", "domains": [{"name": "prod", "subnets": [
        {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", "vni": 5001, "vports": [
            {"name": "webk", "mac": "02:00:00:00:01:01", "ips": ["10.0.1.11"], "binding": {"flavour": "kvm"}},
            {"name": "webh", "mac": "02:00:00:00:01:02", "ips": ["10.0.1.12"], "binding": {"flavour": "hyperv"}},
        ]}]}]}],
    "vtep_bindings": [{"switch": "tor1", "port": "p1", "vlan": 100, "subnet": "acme/web"}],
}
LS = "canopy-5001"


@pytest.fixture(scope="module")
def fabric(lab_capable):
    with vtep_fabric(POLICY, "vtep", {"kvm1": "kvm", "kvm2": "kvm", "hyv1": "hyperv"},
                     {"webk": ("kvm1", {"vnic_id": "webk"}), "webh": ("hyv1", {})}, bm_mac=BM_MAC) as f:
        f.lab.wait_until(lambda: f.canopy.api.get("/v1/vteps/tor1").json.get("connected"), timeout=20,
                         what="tor1 connected to Canopy")
        yield f.lab, f.canopy, f.hosts, f.vms, f.tor, f.bm, f.ctl


def test_bare_metal_and_vms_ping_both_ways(fabric):
    lab, canopy, hosts, vms, tor, bm, ctl = fabric
    reach(lab, vms["webk"], "10.0.1.50", what="KVM VM reaches the bare-metal server")
    reach(lab, bm, "10.0.1.12", what="bare-metal server reaches the Hyper-V VM")
    reach(lab, vms["webh"], "10.0.1.50")
    reach(lab, bm, "10.0.1.11")


def test_the_vtep_holds_exactly_canopys_rows(fabric):
    lab, canopy, hosts, vms, tor, bm, ctl = fabric
    reach(lab, bm, "10.0.1.11")
    ucast, mcast = tor.remote_macs(LS)
    [gateway] = canopy.api.get("/v1/vteps/tor1").json["gateways"]  # a VRS with a port in web (docs/vtep.md)
    gw_mac = canopy.api.get("/v1/domains").json["items"][0]["gateway_mac"]
    assert gateway["chassis"] in ("kvm1", "hyv1")
    assert ucast == {"02:00:00:00:01:01": hosts["kvm1"].vtep_ip, "02:00:00:00:01:02": hosts["hyv1"].vtep_ip,
                     gw_mac: hosts[gateway["chassis"]].vtep_ip}
    assert mcast == {"unknown-dst": sorted([hosts["kvm1"].vtep_ip, hosts["hyv1"].vtep_ip])}
    locators = tor.locator_ips()
    assert len(locators) == len(set(locators))  # Physical_Locator rows reused, never duplicated
    view = lab.wait_until(lambda: (v := canopy.api.get("/v1/vteps/tor1").json)["local_macs"] and v, timeout=20,
                          what="tor1's learned bare-metal MAC in Canopy")
    assert [m["mac"] for m in view["local_macs"]] == [BM_MAC]
    assert view["bindings"][0]["programmed"] is True
    # every VRS with the subnet sends to the bare-metal MAC through the VTEP's tunnel IP
    for name in ("kvm1", "hyv1"):
        flows = canopy.api.get(f"/v1/switches/{hosts[name].datapath_id():016x}/flows").json["flows"]
        assert any(f"dl_dst={BM_MAC}" in f["flow"] and f"{tor.tunnel_ip}->tun_dst" in f["flow"] and f["installed"]
                   for f in flows), name


def tor_sessions(canopy):
    return [s for s in canopy.api.get("/v1/ovsdb/sessions").json["items"] if s["switch"] == "tor1"]


def sent(canopy, hosts):
    """What the reconcilers sent to each VRS so far (flow and group mods, change sets)."""
    return {name: canopy.api.get(f"/v1/switches/{hv.datapath_id():016x}/flows").json["status"]["sent"]
            for name, hv in sorted(hosts.items())}


def test_vtep_reconnecting_is_the_same_vtep_and_changes_nothing(fabric):
    """The VTEP's OVSDB session drops and comes back (from another port): keyed by its Physical_Switch name, it
    stays known through the reconnect grace, bare-metal traffic keeps flowing, and Canopy neither recomputes
    from scratch nor writes a row to the VTEP or a flow to a VRS."""
    lab, canopy, hosts, vms, tor, bm, ctl = fabric
    reach(lab, bm, "10.0.1.11")
    [before] = lab.wait_until(lambda: [s for s in tor_sessions(canopy) if s["state"] == "synced"], timeout=20,
                              what="tor1's OVSDB session synced")
    lab.wait_until(lambda: canopy.api.get("/v1/vteps/tor1").json["local_macs"], timeout=20,
                   what="tor1's learned bare-metal MAC in Canopy")
    transactions = tor.canopy_transactions()
    rows = {t: len(tor.rows(t)) for t in ("Logical_Switch", "Ucast_Macs_Remote", "Mcast_Macs_Remote",
                                           "Physical_Locator", "Physical_Locator_Set")}
    status, flows_sent = canopy.api.get("/v1/status").json, sent(canopy, hosts)

    tor.disconnect()
    lab.wait_until(lambda: not tor_sessions(canopy), timeout=20, what="tor1's OVSDB session closed")
    assert canopy.api.get("/v1/vteps/tor1").json["connected"]  # within the grace: still the same VTEP
    reach(lab, bm, "10.0.1.12", what="the bare-metal server reaches a VM while its VTEP's session is down")
    tor.connect(ctl)
    [after] = lab.wait_until(lambda: [s for s in tor_sessions(canopy) if s["state"] == "synced"], timeout=20,
                             what="tor1 back over OVSDB")
    assert after["peer"] != before["peer"] and after["key"] == before["key"] == "vtep:tor1" and after["speaking"]

    def unchanged():
        now = canopy.api.get("/v1/status").json
        return (now["programmer"]["full_recomputes"] == status["programmer"]["full_recomputes"]
                and canopy.api.get("/v1/vteps/tor1").json["connected"] and sent(canopy, hosts) == flows_sent)

    # Well past the reconnect grace (10 s): the VTEP never went, nothing was recomputed, written or sent.
    hold_for(12.0, unchanged, "no full recompute, no flow-mod, tor1 connected", lambda: canopy.log_tail())
    reach(lab, bm, "10.0.1.11")
    assert tor.canopy_transactions() == transactions
    assert {t: len(tor.rows(t)) for t in rows} == rows
    log = canopy.log_path.read_text()
    assert "hardware VTEP tor1 reconnected: the same switch" in log
    assert "hardware VTEP tor1 (OVSDB" not in log  # never reported disconnected


def test_migration_updates_the_vteps_remote_mac(fabric):
    lab, canopy, hosts, vms, tor, bm, ctl = fabric
    lab.remove_vm(vms.pop("webk"))
    vms["webk"] = lab.add_vm(hosts["kvm2"], "webk", mac="02:00:00:00:01:01", ip="10.0.1.11/24", vnic_id="webk")
    lab.wait_until(lambda: tor.remote_macs(LS)[0].get("02:00:00:00:01:01") == hosts["kvm2"].vtep_ip, timeout=20,
                   what="tor1's remote MAC for webk points at kvm2")
    reach(lab, bm, "10.0.1.11", what="the bare-metal server reaches the moved VM")


def test_unbinding_the_vlan_stops_the_traffic(fabric):
    lab, canopy, hosts, vms, tor, bm, ctl = fabric
    reach(lab, vms["webh"], "10.0.1.50")
    binding = canopy.api.get("/v1/vtep-bindings").json["items"][0]
    assert canopy.api.delete(f"/v1/vtep-bindings/{binding['id']}").status == 200
    lab.wait_until(lambda: tor.bindings("p1") == {}, timeout=20, what="VLAN 100 unbound on tor1")
    vms["webh"].exec("ip", "neigh", "flush", "dev", "eth0")
    assert not vms["webh"].ping("10.0.1.50", count=3, timeout=3)
    assert not bm.ping("10.0.1.12", count=2, timeout=3)

