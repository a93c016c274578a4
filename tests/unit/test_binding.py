"""Where vports are: State joins discovery snapshots with policy (all three VRS flavours, migration)."""

from controller import policy as pol
from controller.discovery import PortInfo, VrsSnapshot
from controller.model import normalise
from controller.state import State


def vport(vid, name, binding):
    obj = normalise("vport", {"subnet_id": "s", "name": name, "mac": "02:00:00:00:00:01", "binding": binding})
    obj.update(id=vid, source=None)
    return obj


def policy(*vports):
    p = pol.Policy()
    for v in vports:
        p.put("vport", v)
    return p


def snap(session, chassis, ports, flavour=None, dpid=1):
    return VrsSnapshot(session=session, peer="10.0.0.1:1", chassis=chassis, flavour=flavour, datapath_id=dpid,
                       bridge_present=True, ports=tuple(ports))


def port(name, ofport=1, **ext):
    return PortInfo(name=name, ofport=ofport, external_ids=tuple(sorted(ext.items())))


def test_kvm_binds_by_iface_id_on_any_vrs():
    state = State(policy(vport("v1", "vm1", {"flavour": "kvm", "iface_id": "abc"})))
    state.vrs_update(snap("s1", "hv1", [port("tap1", **{"iface-id": "abc"})], flavour="hyperv"))
    loc = state.locations["v1"]
    assert (loc.chassis, loc.port, loc.vlan) == ("hv1", "tap1", None)


def test_hyperv_binds_by_port_name_only_on_hyperv_hosts():
    state = State(policy(vport("v1", "web-01", {"flavour": "hyperv"})))
    state.vrs_update(snap("s1", "kvm1", [port("web-01")], flavour="kvm"))
    assert state.locations == {}
    state.vrs_update(snap("s2", "hyv1", [port("web-01")], flavour="hyperv", dpid=2))
    assert state.locations["v1"].chassis == "hyv1"


def test_esxi_binds_by_agent_vnic_key_with_its_vlan():
    state = State(policy(vport("v1", "vm1", {"flavour": "esxi", "vnic_id": "vnic-7"})))
    trunk = port("trunk0", **{"canopy-vnic-101": "vnic-7", "canopy-vnic-9999": "bad"})
    state.vrs_update(snap("s1", "esx1", [trunk], flavour="esxi"))
    assert (state.locations["v1"].port, state.locations["v1"].vlan) == ("trunk0", 101)
    state.vrs_update(snap("s1", "esx1", [port("trunk0")], flavour="esxi"))
    assert state.locations == {}


def test_esxi_static_binding():
    state = State(policy(vport("v1", "vm1", {"flavour": "esxi", "host": "esx1", "trunk_port": "trunk0",
                                             "vlan": 300})))
    state.vrs_update(snap("s1", "esx2", [port("trunk0")], flavour="esxi"))
    assert state.locations == {}
    state.vrs_update(snap("s2", "esx1", [port("trunk0")], flavour="esxi", dpid=2))
    assert (state.locations["v1"].chassis, state.locations["v1"].vlan) == ("esx1", 300)


def test_a_migration_in_flight_keeps_the_source_until_its_port_goes_or_loses_its_device():
    """libvirt plugs the destination's port when a live migration starts; the VM runs on the source until it ends.
    Before 2026-12-06 the latest appearance won at once: every packet to the VM went to the destination, where it
    is not running yet, for the whole migration (tests/integration/test_migration_in_flight.py)."""
    state = State(policy(vport("v1", "vm1", {"flavour": "kvm"})))
    state.vrs_update(snap("s1", "hv1", [port("tapA", **{"iface-id": "vm1"})]))
    state.vrs_update(snap("s2", "hv2", [port("tapB", **{"iface-id": "vm1"})], dpid=2))
    assert state.locations["v1"].chassis == "hv1"  # in flight: the source keeps it
    state.vrs_update(snap("s1", "hv1", [port("tapA", ofport=None, **{"iface-id": "vm1"})]))
    assert state.locations["v1"].chassis == "hv2"  # the source's VM stopped: its tap is gone (OVS: ofport -1)
    state.vrs_update(snap("s1", "hv1", []))
    assert state.locations["v1"].chassis == "hv2"  # libvirt removes the source's port: nothing changes
    state.vrs_gone("s2")
    assert state.locations == {}


def test_a_migration_aborted_or_done_moves_the_vport_where_the_port_is_left():
    state = State(policy(vport("v1", "vm1", {"flavour": "kvm"})))
    state.vrs_update(snap("s1", "hv1", [port("tapA", **{"iface-id": "vm1"})]))
    state.vrs_update(snap("s2", "hv2", [port("tapB", **{"iface-id": "vm1"})], dpid=2))
    state.vrs_update(snap("s2", "hv2", [], dpid=2))  # aborted: the destination's port goes
    assert state.locations["v1"].chassis == "hv1"
    state.vrs_update(snap("s2", "hv2", [port("tapB", **{"iface-id": "vm1"})], dpid=2))
    state.vrs_update(snap("s1", "hv1", []))  # done: the source's port goes
    assert state.locations["v1"].chassis == "hv2"


def test_a_stale_port_without_a_device_never_holds_the_vport():
    """A port left behind with no device (its VM gone, the row not removed) loses to any port with one, even an
    earlier one; between ports without a device the latest wins, as before."""
    state = State(policy(vport("v1", "vm1", {"flavour": "kvm"})))
    state.vrs_update(snap("s1", "hv1", [port("tapA", ofport=None, **{"iface-id": "vm1"})]))
    assert state.locations["v1"].chassis == "hv1"
    state.vrs_update(snap("s2", "hv2", [port("tapB", ofport=None, **{"iface-id": "vm1"})], dpid=2))
    assert state.locations["v1"].chassis == "hv2"
    state.vrs_update(snap("s2", "hv2", [port("tapB", **{"iface-id": "vm1"})], dpid=2))
    assert state.locations["v1"].chassis == "hv2"
    state.vrs_update(snap("s1", "hv1", [port("tapA", **{"iface-id": "vm1"})]))
    assert state.locations["v1"].chassis == "hv1"  # both with a device now: the earlier appearance


def test_default_flavour_applies_when_vrs_does_not_say():
    state = State(policy(vport("v1", "web-01", {"flavour": "hyperv"})), default_flavour="hyperv")
    state.vrs_update(snap("s1", "h", [port("web-01")]))
    assert "v1" in state.locations


def test_late_close_of_a_replaced_openflow_connection_is_ignored():
    state = State(pol.Policy())
    state.datapath_up(7, "10.0.0.1:1", conn="old")
    state.datapath_up(7, "10.0.0.1:2", conn="new")
    state.datapath_down(7, conn="old")
    assert 7 in state.datapaths
    state.datapath_down(7, conn="new")
    assert 7 not in state.datapaths


def test_switch_view_joins_ovsdb_and_openflow():
    state = State(policy(vport("v1", "vm1", {"flavour": "kvm"})))
    state.vrs_update(snap("s1", "hv1", [port("tap1", 5, **{"iface-id": "vm1"}), port("tap2", 6)], dpid=0xab))
    state.datapath_up(0xab, "10.0.0.1:5000")
    state.datapath_up(0xcd, "10.0.0.2:5000")
    views = state.switches()
    assert [v["datapath_id"] for v in views] == ["00000000000000ab", "00000000000000cd"]
    first = views[0]
    assert first["openflow"]["connected"] and first["ovsdb"]["connected"] and first["flavour"] == "kvm"
    assert [(p["name"], p["ofport"], p["vport"] and p["vport"]["id"]) for p in first["ports"]] == [
        ("tap1", 5, "v1"), ("tap2", 6, None)]
    assert views[1]["ovsdb"] is None


def test_settings_hosts_override_flavour_and_vtep_ip():
    state = State(policy(vport("v1", "web-01", {"flavour": "hyperv"})),
                  hosts=[("h", {"vtep_ip": "192.0.2.5", "flavour": "hyperv"})])
    state.vrs_update(VrsSnapshot(session="s1", peer="p", chassis="h", flavour="kvm", vtep_ip="192.0.2.9",
                                 datapath_id=1, ports=(port("web-01"),)))
    assert "v1" in state.locations and state.switches()[0]["vtep_ip"] == "192.0.2.5"


def test_attached_mac_other_than_the_policy_mac_is_a_mismatch_not_bound(caplog):
    state = State(policy(vport("v1", "vm1", {"flavour": "kvm"})))
    wrong = port("tap1", 5, **{"iface-id": "vm1", "attached-mac": "02:00:00:00:00:99"})
    with caplog.at_level("WARNING", logger="canopy.state"):
        state.vrs_update(snap("s1", "hv1", [wrong]))
        state.vrs_update(snap("s1", "hv1", [wrong, port("tap2", 6)]))  # same mismatch: no second warning
    assert state.locations == {} and state.mismatched["v1"].port == "tap1"
    assert state.vport_status("v1")["status"] == "mac_mismatch"
    assert state.vport_status("v1")["mac_mismatch"] == {"policy": "02:00:00:00:00:01",
                                                        "hypervisor": "02:00:00:00:00:99"}
    warnings = [r.getMessage() for r in caplog.records if "MAC mismatch" in r.getMessage()]
    assert len(warnings) == 1 and "02:00:00:00:00:99" in warnings[0] and "02:00:00:00:00:01" in warnings[0]
    ports = state.switches()[0]["ports"]
    assert ports[0]["vport"]["status"] == "mac_mismatch" and ports[1]["vport"] is None
    assert ports[0]["vport"]["mac_mismatch"] == state.vport_status("v1")["mac_mismatch"]  # (one rule: state_report.py)
    # the hypervisor's MAC agrees once it is fixed (Hyper-V's dashed upper case is the same MAC)
    state.vrs_update(snap("s1", "hv1", [port("tap1", 5, **{"iface-id": "vm1", "attached-mac": "02-00-00-00-00-01"})]))
    assert "v1" in state.locations and state.mismatched == {} and state.vport_status("v1")["status"] == "bound"


def test_mac_in_use_and_esxi_trunks_are_not_compared():
    state = State(policy(vport("v1", "vm1", {"flavour": "kvm"}),
                         {**vport("v2", "vm2", {"flavour": "esxi", "vnic_id": "vnic-7"}), "mac": "02:00:00:00:00:02"}))
    tap = PortInfo(name="tap1", ofport=5, mac="fe:00:00:00:00:01", external_ids=(("iface-id", "vm1"),))
    trunk = port("trunk0", 7, **{"canopy-vnic-101": "vnic-7", "attached-mac": "02:00:00:00:00:77"})
    state.vrs_update(snap("s1", "hv1", [tap, trunk], flavour="esxi"))
    assert set(state.locations) == {"v1", "v2"} and state.mismatched == {}


def test_an_esxi_vnic_announced_on_two_trunks_is_where_it_came_up_last():
    """The vCenter agent announces a vNIC on the trunk of the host where it came up (a vMotion: where the VM runs once
    it switched over) and removes it from the host it left, maybe later, or never if that agent or host is down; a
    trunk always has a device, so the earliest appearance (KVM's rule for a live migration in flight) would keep the
    VM's traffic on the host it left."""
    state = State(policy(vport("v1", "vm1", {"flavour": "esxi", "vnic_id": "vnic-7"})))
    state.vrs_update(snap("s1", "esx1", [port("trunk0", **{"canopy-vnic-101": "vnic-7"})], flavour="esxi"))
    state.vrs_update(snap("s2", "esx2", [port("trunk0", **{"canopy-vnic-102": "vnic-7"})], flavour="esxi", dpid=2))
    assert (state.locations["v1"].chassis, state.locations["v1"].vlan) == ("esx2", 102)
    state.vrs_update(snap("s1", "esx1", [port("trunk0")], flavour="esxi"))
    assert (state.locations["v1"].chassis, state.locations["v1"].vlan) == ("esx2", 102)
