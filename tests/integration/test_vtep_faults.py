"""Faults on the hardware VTEP side, with the real ovs-vtep emulator and a bare-metal server pinging a VM
(docs/operations.md "When a part fails"): its VLAN binding removed behind Canopy's back (restored), its
Physical_Switch row deleted and created again (gone, then a VTEP again), ovs-vtep killed and restarted, and its
ovsdb-server restarted (both: nothing written, the same VTEP), the controller restarted while the VTEP was away, and
its database emptied while bound (reset and set up again by its operator: everything written again)."""

from __future__ import annotations

import copy
import signal
import subprocess

import pytest

from tests.harness.fabric import reach, vtep_fabric
from tests.harness.ovsdb_driver import hold_for
from tests.integration.test_vtep_e2e import BM_MAC, LS
from tests.integration.test_vtep_e2e import POLICY as E2E_POLICY

pytestmark = pytest.mark.integration

POLICY = copy.deepcopy(E2E_POLICY)  # one VM: the KVM one
POLICY["tenants"][0]["domains"][0]["subnets"][0]["vports"][1:] = []


@pytest.fixture(scope="module")
def fabric(lab_capable):
    with vtep_fabric(POLICY, "vtep", {"kvm1": "kvm"}, {"webk": ("kvm1", {"vnic_id": "webk"})}, bm_mac=BM_MAC) as f:
        f.lab.wait_until(lambda: vtep(f.canopy)["connected"], timeout=20, what="tor1 connected to Canopy")
        reach(f.lab, f.bm, "10.0.1.11")
        yield f


def vtep(canopy) -> dict:
    return canopy.api.get("/v1/vteps/tor1").json


class Pings:
    """``ping -i 0.2`` from ``host`` to ``ip`` for the length of a ``with`` block; ``lost`` afterwards."""

    def __init__(self, host, ip):
        self.argv = ["ip", "netns", "exec", host.ns, "ping", "-n", "-q", "-i", "0.2", "-W", "1", ip]
        self.lost = None

    def __enter__(self):
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return self

    def __exit__(self, *exc):
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=10)
        [line] = [line for line in out.splitlines() if "transmitted" in line]
        sent, received = int(line.split()[0]), int(line.split()[3])
        self.lost = sent - received


def settled(f, seconds=2.0):
    """Canopy's transactions on tor1 and full recomputes, after ``seconds`` with neither changing."""
    def counts():
        return f.tor.canopy_transactions(), f.canopy.api.get("/v1/status").json["programmer"]["full_recomputes"]
    before = counts()
    hold_for(seconds, lambda: counts() == before, "nothing written to tor1, nothing recomputed", f.canopy.log_tail)
    return before


def test_a_vlan_binding_removed_behind_canopys_back_is_restored(fabric):
    f = fabric
    before = settled(f)
    with Pings(f.bm, "10.0.1.11") as pings:
        f.tor.vtepctl("unbind-ls", "tor1", "p1", "100")
        f.lab.wait_until(lambda: f.tor.bindings("p1") == {100: LS}, timeout=10, what="VLAN 100 bound again")
        reach(f.lab, f.bm, "10.0.1.11")
    assert f.tor.canopy_transactions() == before[0] + 1  # one transaction: the binding
    assert vtep(f.canopy)["bindings"][0]["programmed"] is True
    assert pings.lost <= 2, pings.lost  # restored within ~0.1 s (one run: 0 of 25 lost)


def test_the_physical_switch_deleted_is_gone_and_created_again_a_vtep_again(fabric):
    f = fabric
    f.tor.vtepctl("del-ps", "tor1")
    # Before 2026-12-05 it stayed "connected" with its old ports and the binding "programmed", for as long as it
    # was deleted, and its learned MAC stayed an endpoint on every VRS.
    view = f.lab.wait_until(lambda: (v := vtep(f.canopy)) and not v["connected"] and v, timeout=10,
                            what="tor1 reported gone")
    assert view["ports"] == [] and view["bindings"][0]["programmed"] is False
    assert "hardware VTEP tor1: its Physical_Switch row was deleted" in f.canopy.log_path.read_text()
    f.tor.vtepctl("add-ps", "tor1")
    f.tor.vtepctl("set", "Physical_Switch", "tor1", f"tunnel_ips={f.tor.tunnel_ip}",
                  f"management_ips={f.tor.mgmt_ip}")
    # ovs-vtep adds the ports of its bridge to its Physical_Switch itself (handle_physical, about once a second):
    # it may have added p1 first (1 of 3 runs failed "a port with that name already exists")
    f.tor.vtepctl("--may-exist", "add-port", "tor1", "p1")
    f.lab.wait_until(lambda: f.tor.bindings("p1") == {100: LS}, timeout=10, what="VLAN 100 bound on the new row")
    reach(f.lab, f.bm, "10.0.1.11", what="the bare-metal server reaches the VM again")
    f.lab.wait_until(lambda: vtep(f.canopy)["bindings"][0]["programmed"], timeout=10, what="binding programmed")


def restart(f, child, name):
    """Stop ``child`` (a process of tor1's namespace), start it again with the same command line."""
    argv = child.popen.args[4:]  # without "ip netns exec <ns>"
    child.send(signal.SIGKILL)
    child.popen.wait(10)
    return f.lab.spawn(f"{f.tor.ns}/{name}-again", argv, f.tor.ovs.rundir / f"{name}-again.log", f.tor.ns,
                       f.tor.ovs.env)


def test_ovs_vtep_restarted_writes_nothing_and_traffic_resumes(fabric):
    f = fabric
    reach(f.lab, f.bm, "10.0.1.11")
    before = settled(f)
    with Pings(f.bm, "10.0.1.11") as pings:
        f.tor.emulator = restart(f, f.tor.emulator, "ovs-vtep")
        f.lab.wait_until(lambda: f.tor.ls_bridge(LS), timeout=20, what="ovs-vtep rebuilt its bridge")
        reach(f.lab, f.bm, "10.0.1.11")
    assert settled(f) == before  # Canopy saw nothing to do
    assert pings.lost <= 15, pings.lost  # ovs-vtep rebuilds its bridges (one run: 5 of 50 lost)


def test_the_vteps_ovsdb_server_restarted_is_the_same_vtep_and_changes_nothing(fabric):
    f = fabric
    reach(f.lab, f.bm, "10.0.1.11")
    before = settled(f)
    [server] = [c for c in f.tor.ovs.processes if c.name.endswith("ovsdb-server")]
    f.tor.ovs.processes.remove(server)
    with Pings(f.bm, "10.0.1.11") as pings:
        f.tor.ovs.processes.append(restart(f, server, "ovsdb-server"))
        f.lab.wait_until(lambda: "hardware VTEP tor1 reconnected: the same switch" in f.canopy.log_path.read_text(),
                         timeout=30, what="tor1 back over OVSDB")
        assert settled(f, 3.0) == before
    # ovs-vswitchd and ovs-vtep read the restarted database again, as on a hypervisor (docs/operations.md); Canopy
    # writes nothing. Runs: 0 and 10 of ~80 lost.
    assert pings.lost <= 15, pings.lost
    assert f.tor.emulator.alive()


def test_the_controller_restarted_while_the_vtep_is_away_writes_nothing_when_it_is_back(fabric):
    """tor1 drops its manager connection, the controller restarts meanwhile (the VTEP unknown to it), and tor1
    connects again: its rows are already as desired, so nothing is written; the bare-metal server kept reaching the
    VM throughout (the VTEP forwards without its manager)."""
    f = fabric
    reach(f.lab, f.bm, "10.0.1.11")
    before = settled(f)
    with Pings(f.bm, "10.0.1.11") as pings:
        f.tor.disconnect()
        f.canopy.restart()
        view = vtep(f.canopy)
        assert not view["connected"] and view["bindings"][0]["programmed"] is False
        f.tor.connect(f.ctl)
        f.lab.wait_until(lambda: vtep(f.canopy)["connected"], timeout=20, what="tor1 connected again")
        f.lab.wait_until(lambda: vtep(f.canopy)["bindings"][0]["programmed"], timeout=20, what="binding seen")
        assert settled(f, 3.0)[0] == before[0]  # no transaction on tor1
    assert pings.lost <= 2, pings.lost


def test_the_vteps_database_emptied_while_bound_is_written_again_whole(fabric):
    """tor1 reset behind Canopy's back: its ovsdb-server and ovs-vtep stopped, vtep.db made anew (empty), both
    started again and the switch set up again as its operator would (Physical_Switch, port, manager). Canopy writes
    its logical switch, binding and remote MACs again, and the bare-metal server reaches the VM again."""
    f = fabric
    reach(f.lab, f.bm, "10.0.1.11")
    before = settled(f)
    remote_before = f.tor.remote_macs(LS)
    [server] = [c for c in f.tor.ovs.processes if "ovsdb-server" in c.name]  # "-again": restarted above
    f.tor.ovs.processes.remove(server)
    argv = server.popen.args[4:]
    emulator_argv = f.tor.emulator.popen.args[4:]
    for child in (f.tor.emulator, server):
        child.send(signal.SIGKILL)
        child.popen.wait(10)
    f.tor.vtep_db.unlink()
    subprocess.run(["ovsdb-tool", "create", str(f.tor.vtep_db), "/usr/share/openvswitch/vtep.ovsschema"],
                   check=True, timeout=10)
    f.tor.ovs.processes.append(f.lab.spawn(f"{f.tor.ns}/ovsdb-server-emptied", argv,
                                           f.tor.ovs.rundir / "ovsdb-server-emptied.log", f.tor.ns, f.tor.ovs.env))
    f.lab.wait_until(lambda: subprocess.run(["ip", "netns", "exec", f.tor.ns, "vtep-ctl",
                                             f"--db=unix:{f.tor.ovs.db_socket}", "--timeout=2", "list-ps"],
                                            capture_output=True).returncode == 0, timeout=20, what="vtep.db served")
    f.tor.vtepctl("add-ps", "tor1")
    f.tor.vtepctl("set", "Physical_Switch", "tor1", f"tunnel_ips={f.tor.tunnel_ip}", f"management_ips={f.tor.mgmt_ip}")
    f.tor.vtepctl("add-port", "tor1", "p1")
    f.tor.connect(f.ctl)
    f.tor.emulator = f.lab.spawn(f"{f.tor.ns}/ovs-vtep-emptied", emulator_argv,
                                 f.tor.ovs.rundir / "ovs-vtep-emptied.log", f.tor.ns, f.tor.ovs.env)
    f.lab.wait_until(lambda: f.tor.bindings("p1") == {100: LS}, timeout=30, what="VLAN 100 bound again")
    f.lab.wait_until(lambda: f.tor.remote_macs(LS) == remote_before, timeout=20, what="the remote MACs again")
    reach(f.lab, f.bm, "10.0.1.11", what="the bare-metal server reaches the VM again")
    f.lab.wait_until(lambda: vtep(f.canopy)["connected"] and vtep(f.canopy)["bindings"][0]["programmed"],
                     timeout=20, what="tor1 shown connected and its binding programmed")
    assert f.tor.canopy_transactions() >= 1  # the new vtep.db's log: Canopy's transactions since the reset
    assert before
