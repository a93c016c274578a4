"""Canopy reads and programs a hardware VTEP over OVSDB, against the real ovs-vtep emulator.

Each test builds a ``Lab`` with a hardware VTEP ``tor1`` (ports p1, p2; tests/harness/vtep.py: its own
ovsdb-server serving Open_vSwitch and hardware_vtep, its own ovs-vswitchd, ovs-vtep, br-phy holding
the tunnel IP) and a controller namespace. The manager runs there as a child process
(tests/harness/ovsdb_driver.py) listening on the controller's management address; the VTEP is told
``vtep-ctl set-manager tcp:CTL:PORT``; desired states are pushed through the driver's stdin.

Writes are counted on the device: each Canopy transaction carries the comment "canopy: vtep ...",
which ``ovsdb-tool show-log`` prints from the VTEP's vtep.db. Remote VTEPs (10.251.0.201/.202) need
not exist: the rows and the VXLAN ports ovs-vtep builds from them are what is checked.
"""

from __future__ import annotations


import pytest

from controller.discovery import VtepDesired
from tests.harness.ovsdb_driver import ManagerDriver, drivers_in, hold_for, poll_until
from tests.harness.vtep import vtep_unavailable

pytestmark = pytest.mark.integration

SLOW = 10.0  # connection set-up; ovs-vtep reacting (it polls once a second)
QUIET = 2.5  # observation window in which nothing may be written
LS = "canopy-5001"
REMOTE_A, REMOTE_B = "10.251.0.201", "10.251.0.202"
MAC_A1, MAC_A2, MAC_B1 = "02:00:00:00:0a:01", "02:00:00:00:0a:02", "02:00:00:00:0b:01"
DESIRED = VtepDesired(
    logical_switches=(5001,),
    bindings=(("p1", 100, 5001),),
    remote_macs=((5001, MAC_A1, "10.0.1.11", REMOTE_A), (5001, MAC_A2, None, REMOTE_A),
                 (5001, MAC_B1, "10.0.1.21", REMOTE_B)),
    flood=((5001, (REMOTE_A, REMOTE_B)),),
)


@pytest.fixture
def vtep_capable(lab_capable):
    reason = vtep_unavailable()
    if reason:
        pytest.skip(reason)


@pytest.fixture
def tor(lab, vtep_capable):
    """(lab, hardware VTEP tor1 with ports p1 and p2, controller host ctl1)."""
    return lab, lab.add_hardware_vtep("tor1", ports=("p1", "p2")), lab.add_controller_host("ctl1")


@pytest.fixture
def managers(tor):
    """Factory starting manager drivers in ctl1's namespace; all are closed at teardown."""
    lab, _, ctl = tor
    with drivers_in(lab, ctl) as start:
        yield start


def connect(tor, driver: ManagerDriver) -> dict:
    """Point tor1 at ``driver``; return its first VtepSnapshot of the new connection (its ``session`` is the
    switch key, ``vtep:tor1``, the same across connections; its ``peer`` is the connection's)."""
    _, vtep, ctl = tor
    known = {snap["peer"] for snap in driver.vtep_updates()}
    vtep.connect(ctl, driver.port, inactivity_probe_ms=1000)
    return driver.wait_vtep(lambda s: s["name"] == vtep.name and s["peer"] not in known, SLOW,
                            "tor1 reported")


def vtep_info(driver: ManagerDriver, key: str) -> dict:
    """The open OVSDB session speaking for the switch ``key``."""
    [info] = [s for s in driver.sessions() if s["key"] == key and s["speaking"]]
    return info


def programmed(vtep) -> bool:
    """tor1 holds exactly DESIRED's rows."""
    return (vtep.logical_switches() == [LS] and vtep.bindings("p1") == {100: LS}
            and vtep.remote_macs(LS) == ({MAC_A1: REMOTE_A, MAC_A2: REMOTE_A, MAC_B1: REMOTE_B},
                                         {"unknown-dst": [REMOTE_A, REMOTE_B]}))


def programmed_but_ops(vtep) -> bool:
    """DESIRED's rows, with the operator's own "ops" switch beside them."""
    return (vtep.logical_switches() == ["canopy-5001", "ops"] and vtep.bindings("p1") == {100: LS}
            and vtep.remote_macs(LS)[0] == {MAC_A1: REMOTE_A, MAC_A2: REMOTE_A, MAC_B1: REMOTE_B})


def wait_programmed(tor, driver: ManagerDriver) -> None:
    _, vtep, _ = tor
    poll_until(lambda: programmed(vtep), SLOW, "DESIRED's rows on tor1", driver.context)


def test_vtep_is_reported_with_its_name_tunnel_ip_and_ports_then_gone_once(tor, managers):
    _, vtep, _ = tor
    driver = managers()
    snap = connect(tor, driver)
    assert (snap["tunnel_ips"], snap["management_ips"]) == ([vtep.tunnel_ip], [vtep.mgmt_ip])
    assert snap["description"] == "OVS VTEP Emulator"
    assert snap["ports"] == [{"name": "p1", "vlan_bindings": []}, {"name": "p2", "vlan_bindings": []}]
    assert snap["local_macs"] == []
    info = vtep_info(driver, snap["session"])
    assert (info["database"], info["switch"], info["chassis"], info["tunnel"]) == ("hardware_vtep", "tor1", None, None)
    # no desired state given for tor1: it is waiting for one, not "in sync with nothing"
    assert (info["vtep"]["state"], info["vtep"]["transactions"]) == ("waiting", 0)
    assert not [e for e in driver.snapshot() if e["ev"] in ("update", "gone")]  # never a VRS

    vtep.disconnect()
    poll_until(lambda: driver.vtep_gones(snap["session"]) == 1, SLOW, "vtep_gone", driver.context)
    hold_for(1.0, lambda: driver.vtep_gones(snap["session"]) == 1, "exactly one vtep_gone", driver.context)
    assert vtep.canopy_transactions() == 0


def test_desired_state_creates_exactly_its_rows_and_ovs_vtep_builds_the_tunnels(tor, managers):
    _, vtep, _ = tor
    driver = managers()
    session = connect(tor, driver)["session"]
    driver.set_vtep_desired("tor1", DESIRED)
    wait_programmed(tor, driver)

    assert vtep.bindings("p2") == {}
    [ls] = vtep.rows("Logical_Switch")
    assert (ls["tunnel_key"], ls["replication_mode"]) == (5001, "source_node")
    ips = {row["MAC"]: row["ipaddr"] for row in vtep.rows("Ucast_Macs_Remote")}
    assert ips == {MAC_A1: "10.0.1.11", MAC_A2: "", MAC_B1: "10.0.1.21"}
    # ovs-vtep's consequence: a bridge for canopy-5001 with one VXLAN port per remote VTEP, key = VNI,
    # and its own unknown-dst row at its tunnel IP.
    poll_until(lambda: vtep.vxlan_ports(LS) == [("5001", REMOTE_A), ("5001", REMOTE_B)], SLOW,
               "ovs-vtep's VXLAN ports", driver.context)
    poll_until(lambda: vtep.local_macs(LS)[1] == {"unknown-dst": [vtep.tunnel_ip]}, SLOW,
               "ovs-vtep's own unknown-dst", driver.context)
    # One locator per IP: Canopy's MACs and flood list share them, and ovs-vtep's Tunnel rows too.
    assert vtep.locator_ips() == sorted([REMOTE_A, REMOTE_B, vtep.tunnel_ip])
    driver.wait_vtep(lambda s: s["ports"][0]["vlan_bindings"] == [[100, 5001]], SLOW, "p1's binding reported")
    assert vtep.canopy_transactions() == 1
    info = vtep_info(driver, session)["vtep"]
    assert (info["switch"], info["state"], info["transactions"], info["last_error"]) == ("tor1", "in-sync", 1, None)


def test_restart_and_reconnect_with_the_same_desired_state_write_nothing(tor, managers):
    _, vtep, _ = tor
    first = managers()
    connect(tor, first)
    first.set_vtep_desired("tor1", DESIRED)
    wait_programmed(tor, first)
    written = vtep.canopy_transactions()
    first.stop()
    first.close()

    second = managers()
    second.set_vtep_desired("tor1", DESIRED)  # before tor1 connects: kept for its name
    session = connect(tor, second)["session"]
    hold_for(QUIET, lambda: vtep.canopy_transactions() == written, "no new Canopy transaction", second.context)
    assert (vtep_info(second, session)["vtep"]["state"], vtep_info(second, session)["vtep"]["transactions"]) == \
        ("in-sync", 0)

    vtep.disconnect()  # the VTEP reconnecting: a new session, still nothing to write
    poll_until(lambda: second.vtep_gones(session) == 1, SLOW, "vtep_gone", second.context)
    again = connect(tor, second)["session"]
    hold_for(QUIET, lambda: vtep.canopy_transactions() == written, "still no new transaction", second.context)
    assert vtep_info(second, again)["vtep"]["state"] == "in-sync" and programmed(vtep)
    assert "transaction" not in second.log()


def test_baremetal_mac_is_learned_on_its_vlan_only(tor, managers):
    lab, vtep, _ = tor
    driver = managers()
    connect(tor, driver)
    driver.set_vtep_desired("tor1", DESIRED)
    wait_programmed(tor, driver)
    bm1 = lab.add_baremetal(vtep, "bm1", port="p1", vlan=100, ip="10.0.1.50/24")
    bm2 = lab.add_baremetal(vtep, "bm2", port="p1", vlan=200, ip="10.0.1.51/24")  # VLAN not bound

    def learned():
        bm1.exec("ping", "-c", "1", "-W", "1", "10.0.1.1")  # ARP requests are enough to be learned
        return [m for m in driver.vtep_updates()[-1]["local_macs"] if m["mac"] == bm1.mac]

    [mac] = poll_until(learned, SLOW, "bm1's MAC in local_macs", driver.context)
    assert mac == {"mac": bm1.mac, "vni": 5001, "ip": None, "locator": vtep.tunnel_ip}
    assert vtep.local_macs(LS)[0].get(bm1.mac) == vtep.tunnel_ip
    bm2.exec("ping", "-c", "2", "-i", "0.5", "-W", "1", "10.0.1.1")
    hold_for(1.5, lambda: all(m["mac"] != bm2.mac for m in driver.vtep_updates()[-1]["local_macs"]),
             "bm2 (VLAN 200) never learned", driver.context)


def test_removed_bindings_and_switches_go_and_foreign_rows_stay(tor, managers):
    _, vtep, _ = tor
    vtep.vtepctl("add-ls", "ops", "--", "set", "Logical_Switch", "ops", "tunnel_key=7000")
    vtep.vtepctl("bind-ls", "tor1", "p2", "300", "ops")
    driver = managers()
    connect(tor, driver)
    both = VtepDesired(DESIRED.logical_switches, DESIRED.bindings + (("p2", 200, 5001),),
                       DESIRED.remote_macs, DESIRED.flood)
    driver.set_vtep_desired("tor1", both)
    poll_until(lambda: vtep.bindings("p2") == {200: LS, 300: "ops"}, SLOW, "p2 VLAN 200 bound", driver.context)

    driver.set_vtep_desired("tor1", DESIRED)
    poll_until(lambda: vtep.bindings("p2") == {300: "ops"}, SLOW, "p2 VLAN 200 unbound", driver.context)
    assert programmed_but_ops(vtep)
    poll_until(lambda: vtep.local_macs(LS)[1], SLOW, "ovs-vtep serving canopy-5001", driver.context)

    driver.set_vtep_desired("tor1", VtepDesired())  # empty: Canopy wants nothing there
    poll_until(lambda: vtep.logical_switches() == ["ops"], SLOW, "canopy-5001 removed", driver.context)
    assert (vtep.bindings("p1"), vtep.bindings("p2")) == ({}, {300: "ops"})
    assert vtep.rows("Ucast_Macs_Remote") == [] and vtep.rows("Mcast_Macs_Remote") == []
    poll_until(lambda: vtep.ls_bridge(LS) is None, SLOW, "ovs-vtep's canopy-5001 bridge gone", driver.context)
    # The switch went last: once ovs-vtep had dropped its own unknown-dst row after the unbinding.
    assert "waiting: removing canopy-5001 once unreferenced (1 Mcast_Macs_Local)" in driver.log()
    assert vtep.rows("Logical_Switch")[0]["name"] == "ops" and "ERROR" not in driver.log()


def test_program_vteps_false_writes_nothing(tor, managers):
    _, vtep, _ = tor
    driver = managers("--no-vtep-program")
    driver.set_vtep_desired("tor1", DESIRED)
    session = connect(tor, driver)["session"]
    hold_for(QUIET, lambda: vtep.logical_switches() == [] and vtep.canopy_transactions() == 0,
             "no logical switch and no Canopy transaction", driver.context)
    info = vtep_info(driver, session)
    assert (info["switch"], info["vtep"]) == ("tor1", None)


def test_two_vteps_programmed_by_canopy_carry_baremetal_traffic_over_vxlan(lab, vtep_capable):
    """The rows are right for a real data plane: bm1 (tor1, VLAN 100) and bm2 (tor2, VLAN 200) share
    VNI 5001 over the underlay; bm3 on tor1's unbound VLAN 300 reaches nobody."""
    tor1, tor2, ctl = lab.add_hardware_vtep("tor1"), lab.add_hardware_vtep("tor2"), lab.add_controller_host("ctl1")
    bm1 = lab.add_baremetal(tor1, "bm1", port="p1", vlan=100, ip="10.0.1.51/24")
    bm2 = lab.add_baremetal(tor2, "bm2", port="p1", vlan=200, ip="10.0.1.52/24")
    bm3 = lab.add_baremetal(tor1, "bm3", port="p1", vlan=300, ip="10.0.1.53/24")
    driver = ManagerDriver(lab.workdir, ["--listen", ctl.ip, "--probe-interval", "2"], ns=ctl.ns,
                           record=lab.record.add_process)
    try:
        for vtep, vlan, peer, far in ((tor1, 100, tor2, bm2), (tor2, 200, tor1, bm1)):
            driver.set_vtep_desired(vtep.name, VtepDesired(
                (5001,), (("p1", vlan, 5001),), ((5001, far.mac, None, peer.tunnel_ip),),
                ((5001, (peer.tunnel_ip,)),)))
            vtep.connect(ctl, driver.port, inactivity_probe_ms=1000)
        for vtep, peer in ((tor1, tor2), (tor2, tor1)):
            poll_until(lambda: vtep.vxlan_ports(LS) == [("5001", peer.tunnel_ip)], SLOW,
                       "%s's tunnel to %s" % (vtep.name, peer.name), driver.context)
        poll_until(lambda: bm1.ping(bm2.address, timeout=2), SLOW, "bm1 -> bm2 over VXLAN", driver.context)
        assert bm2.ping(bm1.address, count=2)
        assert not bm3.ping(bm2.address, timeout=2)
    finally:
        driver.close()
