"""Canopy provisions each VRS's VXLAN tunnel port over OVSDB, against real Open vSwitch.

Each test builds a ``Lab`` (tests/harness/lab.py): a hypervisor namespace running its own
ovsdb-server and ovs-vswitchd (userspace datapath, br-int with datapath_type=netdev, VTEP IP on
br-phy) and a controller namespace, joined by veths on the lab's management network. The manager
runs in the controller namespace as a child process (tests/harness/ovsdb_driver.py) listening on
the controller's management address; the hypervisor is told ``set-manager tcp:CTL:PORT``.

Writes are counted on the device itself: every Canopy transaction carries the comment
"canopy: tunnel ...", which ``ovsdb-tool show-log`` prints from the hypervisor's database file.
The lab (namespaces, OVS) and every driver are stopped by PID and removed even when a test fails.

One test needs a database that refuses the write: a bare ovsdb-server (no ovs-vswitchd) whose
schema allows a single Port row, reached on loopback with the driver in this namespace.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.harness import netns
from tests.harness.hosts import BR_INT
from tests.harness.ovsdb_driver import ManagerDriver, drivers_in, hold_for, poll_until, stop_process

pytestmark = pytest.mark.integration

TUNNEL = "vxlan0"
CREATE_BOUND = 5.0  # seconds for the port to be created and given an ofport
SLOW = 10.0  # connection set-up
QUIET = 2.5  # observation window in which nothing may be written
COMMENT = '"canopy: tunnel '


@pytest.fixture
def vrs(lab):
    """(lab, hypervisor hv1, controller host ctl1)."""
    return lab, lab.add_hypervisor("hv1"), lab.add_controller_host("ctl1")


@pytest.fixture
def managers(vrs):
    """Factory starting manager drivers in ctl1's namespace; all are closed at teardown."""
    lab, _, ctl = vrs
    with drivers_in(lab, ctl) as start:
        yield start


def connect(vrs, driver: ManagerDriver) -> str:
    """Point hv1 at ``driver``; return the session once its first snapshot has br-int."""
    _, hv, ctl = vrs
    hv.vsctl("--inactivity-probe=1000", "set-manager", "tcp:%s:%d" % (ctl.ip, driver.port))
    first = driver.wait_event(lambda e: e["ev"] == "update" and e["snap"]["chassis"] == hv.name
                              and e["snap"]["bridge_present"], SLOW, "hv1 reported with br-int")
    return first["snap"]["session"]


def _ovs_value(cell):
    """An ovs-vsctl JSON cell as Python: maps to dicts, empty sets to None."""
    if isinstance(cell, list) and cell[0] == "map":
        return dict(cell[1])
    if isinstance(cell, list) and cell[0] == "set":
        return cell[1][0] if cell[1] else None
    return cell


def rows(hv, table: str, columns: str) -> list[dict]:
    """Rows of ``table`` named ``vxlan0``, as dicts of ``columns`` (as the device holds them)."""
    listing = json.loads(hv.vsctl("--format=json", "--columns=" + columns, "find", table,
                                  "name=" + TUNNEL))
    names = listing["headings"]
    return [dict(zip(names, map(_ovs_value, row))) for row in listing["data"]]


def interface(hv) -> dict | None:
    found = rows(hv, "Interface", "type,options,external_ids,ofport")
    return found[0] if found else None


def desired_options(vtep_ip: str | None) -> dict:
    options = {"remote_ip": "flow", "key": "flow"}
    return {**options, "local_ip": vtep_ip} if vtep_ip else options


def is_tunnel(hv, vtep_ip: str | None):
    """The tunnel interface once it is exactly as Canopy wants it and has an ofport, else None."""
    iface = interface(hv)
    ok = (iface is not None and iface["type"] == "vxlan" and iface["options"] == desired_options(vtep_ip)
          and iface["external_ids"].get("canopy-owned") == "true" and (iface["ofport"] or 0) > 0)
    return iface if ok else None


def canopy_transactions(hv) -> int:
    """Transactions Canopy committed to hv1's database, read from the database file's log."""
    log = netns.run(["ovsdb-tool", "show-log", str(hv.ovs.rundir / "conf.db")]).stdout
    return log.count(COMMENT)


def tunnel_info(driver: ManagerDriver, session: str) -> dict:
    [info] = [s for s in driver.sessions() if s["key"] == session]
    return info["tunnel"]


def wait_tunnel(vrs, driver: ManagerDriver, vtep_ip: str | None, what: str) -> dict:
    _, hv, _ = vrs
    return poll_until(lambda: is_tunnel(hv, vtep_ip), CREATE_BOUND, what, driver.context)


def test_port_is_created_with_flow_endpoints_and_gets_an_ofport(vrs, managers):
    _, hv, _ = vrs
    driver = managers()
    session = connect(vrs, driver)
    iface = wait_tunnel(vrs, driver, hv.vtep_ip, "vxlan0 created with an ofport")

    assert hv.vsctl("port-to-br", TUNNEL) == BR_INT
    [port] = rows(hv, "Port", "external_ids")
    assert port["external_ids"].get("canopy-owned") == "true"
    # The snapshot reports it like any port, typed, so the compiler can find its ofport.
    snap = driver.wait_latest(session, lambda s: any(p["name"] == TUNNEL and p["ofport"] for p in s["ports"]),
                              CREATE_BOUND, "vxlan0 in the snapshot")
    [reported] = [p for p in snap["ports"] if p["name"] == TUNNEL]
    assert (reported["type"], reported["ofport"]) == ("vxlan", iface["ofport"])
    assert canopy_transactions(hv) == 1
    info = tunnel_info(driver, session)
    assert (info["state"], info["transactions"], info["last_error"]) == ("in-sync", 1, None)


def test_restart_finds_the_port_and_writes_nothing(vrs, managers):
    _, hv, _ = vrs
    first = managers()
    connect(vrs, first)
    ofport = wait_tunnel(vrs, first, hv.vtep_ip, "vxlan0 created")["ofport"]
    first.stop()
    first.close()

    second = managers()
    session = connect(vrs, second)
    second.wait_latest(session, lambda s: any(p["name"] == TUNNEL for p in s["ports"]), SLOW,
                       "vxlan0 seen by the restarted manager")
    hold_for(QUIET, lambda: canopy_transactions(hv) == 1, "no new Canopy transaction", second.context)
    info = tunnel_info(second, session)
    assert (info["state"], info["transactions"]) == ("in-sync", 0)
    assert "transaction" not in second.log()
    assert is_tunnel(hv, hv.vtep_ip)["ofport"] == ofport  # the very same port, untouched


def test_vtep_ip_change_updates_local_ip(vrs, managers):
    _, hv, _ = vrs
    driver = managers()
    session = connect(vrs, driver)
    wait_tunnel(vrs, driver, hv.vtep_ip, "vxlan0 created")

    hv.vsctl("set", "Open_vSwitch", ".", "external_ids:canopy-vtep-ip=10.251.0.200")
    wait_tunnel(vrs, driver, "10.251.0.200", "options:local_ip updated")
    hv.vsctl("remove", "Open_vSwitch", ".", "external_ids", "canopy-vtep-ip")
    wait_tunnel(vrs, driver, None, "options:local_ip removed with the VTEP IP")

    assert canopy_transactions(hv) == 3
    assert len(rows(hv, "Port", "name")) == 1
    assert tunnel_info(driver, session)["transactions"] == 3


def test_deleted_port_is_recreated(vrs, managers):
    _, hv, _ = vrs
    driver = managers()
    connect(vrs, driver)
    wait_tunnel(vrs, driver, hv.vtep_ip, "vxlan0 created")

    hv.vsctl("del-port", BR_INT, TUNNEL)
    poll_until(lambda: canopy_transactions(hv) == 2, CREATE_BOUND, "a second Canopy transaction",
               driver.context)
    wait_tunnel(vrs, driver, hv.vtep_ip, "vxlan0 recreated with an ofport")
    assert hv.vsctl("port-to-br", TUNNEL) == BR_INT


def test_foreign_port_is_left_alone_and_logged_then_adopted_once_it_matches(vrs, managers):
    _, hv, _ = vrs
    hv.vsctl("add-port", BR_INT, TUNNEL, "--", "set", "Interface", TUNNEL, "type=vxlan",
             "options:remote_ip=flow", "options:key=5001")
    foreign = interface(hv)
    driver = managers()
    session = connect(vrs, driver)

    hold_for(QUIET, lambda: interface(hv) == foreign and canopy_transactions(hv) == 0,
             "the foreign vxlan0 untouched", driver.context)
    conflicts = [line for line in driver.log().splitlines() if "leaving it alone" in line]
    assert len(conflicts) == 1 and " ERROR " in conflicts[0] and hv.mgmt_ip in conflicts[0], driver.context()
    assert "key=5001" in conflicts[0]
    info = tunnel_info(driver, session)
    assert (info["state"], info["transactions"]) == ("conflict", 0)

    # The operator makes it exactly what Canopy wants: Canopy adopts it, changing nothing else.
    hv.vsctl("set", "Interface", TUNNEL, "options:key=flow", "options:local_ip=" + hv.vtep_ip)
    wait_tunnel(vrs, driver, hv.vtep_ip, "vxlan0 adopted")
    [port] = rows(hv, "Port", "external_ids")
    assert port["external_ids"].get("canopy-owned") == "true"
    assert canopy_transactions(hv) == 1
    assert "adopting the existing port" in driver.log()


def test_provision_tunnel_false_writes_nothing(vrs, managers):
    _, hv, _ = vrs
    driver = managers("--no-tunnel")
    session = connect(vrs, driver)
    hold_for(QUIET, lambda: interface(hv) is None and canopy_transactions(hv) == 0,
             "no tunnel port and no Canopy transaction", driver.context)
    assert tunnel_info(driver, session) is None


@pytest.fixture
def one_port_vrs(tmp_path: Path, lab_capable):
    """(vsctl, Popen) for a bare ovsdb-server whose schema allows one Port (br-int's own) only."""
    schema = json.loads(Path("/usr/share/openvswitch/vswitch.ovsschema").read_text())
    schema["tables"]["Port"]["maxRows"] = 1
    (tmp_path / "schema").write_text(json.dumps(schema))
    subprocess.run(["ovsdb-tool", "create", str(tmp_path / "db"), str(tmp_path / "schema")], check=True,
                   timeout=SLOW)
    sock = tmp_path / "sock"
    server = subprocess.Popen(
        ["ovsdb-server", str(tmp_path / "db"), "--remote=punix:%s" % sock,
         "--remote=db:Open_vSwitch,Open_vSwitch,manager_options", "--unixctl=%s" % (tmp_path / "ctl"),
         "--no-chdir", "--log-file=%s" % (tmp_path / "ovsdb-server.log"), "-vconsole:off"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        poll_until(lambda: os.path.exists(sock), SLOW, "ovsdb-server socket")

        def vsctl(*args: str) -> str:
            return subprocess.run(["ovs-vsctl", "--db=unix:%s" % sock, "--timeout=5", "--no-wait", *args],
                                  check=True, capture_output=True, text=True, timeout=SLOW).stdout

        vsctl("init")
        vsctl("add-br", BR_INT, "--", "set", "Open_vSwitch", ".", "external_ids:system-id=bare")
        yield vsctl, server
    finally:
        if server.poll() is None:
            os.kill(server.pid, signal.SIGCONT)  # in case a test left it stopped
        stop_process(server)


def connect_bare(vsctl, driver: ManagerDriver) -> str:
    vsctl("--inactivity-probe=1000", "set-manager", "tcp:127.0.0.1:%d" % driver.port)
    return driver.wait_event(lambda e: e["ev"] == "update" and e["snap"]["bridge_present"], SLOW,
                             "bare VRS reported")["snap"]["session"]


def refusals(driver: ManagerDriver) -> list[str]:
    return [line for line in driver.log().splitlines() if "create transaction failed" in line]


def test_refused_transaction_is_logged_with_the_peer_and_retried_with_backoff(one_port_vrs, tmp_path):
    vsctl, _ = one_port_vrs
    driver = ManagerDriver(tmp_path, ["--probe-interval", "2"])
    try:
        session = connect_bare(vsctl, driver)
        peer = driver.updates(session)[-1]["peer"]

        def failures():
            return refusals(driver)

        poll_until(failures, CREATE_BOUND, "the refused transaction logged", driver.context)
        first = failures()[0]
        assert " ERROR " in first and peer in first and "constraint violation" in first, first
        hold_for(3.0, lambda: len(failures()) <= 5, "bounded retries", driver.context)  # 0, .5, 1.5, 3.5 s
        assert len(failures()) >= 2, driver.context()
        info = tunnel_info(driver, session)
        assert "constraint violation" in info["last_error"] and 2 <= info["transactions"] <= 5

        # Discovery goes on meanwhile.
        vsctl("set", "Open_vSwitch", ".", "external_ids:hostname=still-here")
        driver.wait_latest(session, lambda s: s["hostname"] == "still-here", CREATE_BOUND, "snapshot update")
    finally:
        driver.close()


def test_peer_going_silent_mid_transaction_ends_the_session_cleanly(one_port_vrs, tmp_path):
    vsctl, server = one_port_vrs
    driver = ManagerDriver(tmp_path, ["--probe-interval", "1"])
    try:
        session = connect_bare(vsctl, driver)
        poll_until(lambda: refusals(driver), CREATE_BOUND, "the first refusal", driver.context)
        os.kill(server.pid, signal.SIGSTOP)  # the retry 0.5 s later goes out and is never answered
        # Probes unanswered for two intervals: the manager drops the peer, transaction in flight.
        poll_until(lambda: driver.gones(session), SLOW, "vrs_gone", driver.context)
        log = driver.log()
        assert "transaction 2" in log and len(refusals(driver)) == 1, driver.context()  # 2 unanswered
        assert "Traceback" not in log, driver.context()
        assert "unexpected error" not in log and driver.sessions() == []
    finally:
        driver.close()
