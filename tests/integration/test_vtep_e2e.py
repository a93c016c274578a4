"""A bare-metal server on VLAN 100 of a hardware VTEP (the real ovs-vtep emulator) in the same subnet as
VMs on a KVM-style and a Hyper-V-style VRS, all driven by one Canopy: ping both ways, a reconnect that
converges without churn, a migration the VTEP follows, and unbinding the VLAN that stops the traffic."""

from __future__ import annotations

import pytest

from tests.harness.fabric import reach, vtep_fabric

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


def test_vtep_reconnecting_converges_without_churn(fabric):
    lab, canopy, hosts, vms, tor, bm, ctl = fabric
    reach(lab, bm, "10.0.1.11")
    before = tor.canopy_transactions()
    rows = {t: len(tor.rows(t)) for t in ("Logical_Switch", "Ucast_Macs_Remote", "Mcast_Macs_Remote",
                                           "Physical_Locator", "Physical_Locator_Set")}
    tor.disconnect()
    lab.wait_until(lambda: not canopy.api.get("/v1/vteps/tor1").json["connected"], timeout=20,
                   what="Canopy sees tor1 leave")
    tor.connect(ctl)
    lab.wait_until(lambda: canopy.api.get("/v1/vteps/tor1").json["connected"], timeout=20, what="tor1 back")
    reach(lab, bm, "10.0.1.12")
    assert tor.canopy_transactions() == before
    assert {t: len(tor.rows(t)) for t in rows} == rows


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

