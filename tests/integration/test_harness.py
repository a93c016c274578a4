"""Proof that the integration harness itself works, without the Canopy controller.

Real OVS instances in namespaces, real traffic. Where a controller is needed, a tiny stand-in
(``FAKE_CONTROLLER``) takes the place of ``canopy run``: it reads the same YAML config, accepts
OpenFlow and OVSDB connections and answers REST requests with what it saw.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.harness import netns
from tests.harness.controller import ControllerStartError
from tests.harness.lab import Lab
from tests.harness.runrecord import RECORD_DIR

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

FAKE_CONTROLLER = textwrap.dedent('''
    import json, socket, sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import yaml

    config = yaml.safe_load(open(sys.argv[-1]))
    peers = {"openflow": 0, "ovsdb": 0}
    held = []

    def accept(kind):
        server = socket.create_server(("0.0.0.0", config[kind]["port"]))
        while True:
            held.append(server.accept()[0])
            peers[kind] += 1

    class Echo(BaseHTTPRequestHandler):
        def reply(self):
            size = int(self.headers.get("Content-Length") or 0)
            data = json.dumps({"method": self.command, "path": self.path, "peers": peers,
                               "config": config, "authorization": self.headers["Authorization"],
                               "body": self.rfile.read(size).decode()}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = reply

    for kind in peers:
        threading.Thread(target=accept, args=(kind,), daemon=True).start()
    rest = config["rest"]
    ThreadingHTTPServer((rest["listen"], rest["port"]), Echo).serve_forever()
''')


def use_fake_controller(lab: Lab, monkeypatch, script: str = FAKE_CONTROLLER) -> None:
    """Make ``lab.start_controller`` run ``script`` (given the config path last) instead of canopy."""
    path = lab.workdir / "fake_controller.py"
    path.write_text(script)
    monkeypatch.setattr(lab, "controller_argv",
                        lambda config: [sys.executable, str(path), "run", "--config", str(config)])


def is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_hypervisors_come_up_and_reach_each_other_over_the_underlay(lab):
    hv1 = lab.add_hypervisor("hv1")
    hv2 = lab.add_hypervisor("hv2", flavour="hyperv")
    for hv in (hv1, hv2):
        assert hv.vsctl("get", "Bridge", "br-int", "datapath_type") == "netdev"
        assert hv.vsctl("get", "Bridge", "br-int", "fail_mode") == "secure"
        assert hv.vsctl("get", "Bridge", "br-int", "other_config:disable-in-band") == '"true"'
        assert hv.vsctl("get", "Bridge", "br-phy", "datapath_type") == "netdev"
        assert hv.ovs.external_ids("Open_vSwitch", ".") == {
            "system-id": hv.name, "hostname": hv.name, "canopy-vtep-ip": hv.vtep_ip,
            "canopy-flavour": hv.flavour}
        assert hv.datapath_id() > 0
    assert hv1.datapath_id() != hv2.datapath_id()
    assert hv1.ping(hv2.vtep_ip) and hv2.ping(hv1.vtep_ip)


def test_a_vtep_address_is_answered_for_by_br_phy_only_as_on_a_hypervisor_whose_uplink_is_ovs_s(lab):
    """ul0, br-phy's uplink, is also a kernel interface in the lab: unless told not to, the kernel answered each ARP
    request for the VTEP address on it too, with ul0's MAC, and kept an entry for the asker there (docs/vrs.md)."""
    hv1, hv2 = lab.add_hypervisor("hv1"), lab.add_hypervisor("hv2")
    assert hv1.ping(hv2.vtep_ip)
    [link] = json.loads(netns.ip(hv2.ns, "-j", "link", "show", "br-phy"))
    entries = json.loads(netns.ip(hv1.ns, "-j", "neigh", "show", hv2.vtep_ip))
    assert [(e["dev"], e.get("lladdr")) for e in entries] == [("br-phy", link["address"])]
    assert netns.ip(hv2.ns, "neigh", "show", "dev", "ul0") == ""


def test_a_hypervisor_has_no_ipv6_so_nothing_changes_its_routes_after_its_links_are_made(lab):
    """Open vSwitch's userspace datapath reloads its route table on each route, address or link change in its
    namespace and loses tunnelled packets meanwhile (docs/vrs.md, "Route and link changes on a hypervisor"). With
    IPv6 on, each new link's IPv6 link-local address and its route came 1-2 s after the link (duplicate address
    detection): on every hypervisor, while the tests' first pings went."""
    hv = lab.add_hypervisor("hv1")
    lab.add_vm(hv, "vm1")
    assert [(link["ifname"], a["local"]) for link in json.loads(netns.ip(hv.ns, "-j", "-6", "addr", "show"))
            for a in link.get("addr_info", ())] == []
    assert netns.ip(hv.ns, "-6", "route", "show", "table", "all") == ""
    assert netns.run(["sysctl", "-n", "net.ipv6.conf.default.disable_ipv6"], ns=hv.ns).stdout.strip() == "1"


def test_a_lost_pings_evidence_names_a_route_change_on_a_hypervisor_of_the_path(lab):
    """tests.harness.path_evidence, which a failing ping count quotes: the kernel's route changes in the namespace."""
    from tests.harness.path_evidence import PathEvidence

    hv = lab.add_hypervisor("hv1")
    evidence = PathEvidence([hv])

    def flapped():  # again until seen: the monitor may start listening after the first change
        netns.ip(hv.ns, "route", "add", "192.0.2.0/24", "dev", "mgmt0")
        netns.ip(hv.ns, "route", "del", "192.0.2.0/24", "dev", "mgmt0")
        return any("Deleted 192.0.2.0/24 dev mgmt0" in line for line in evidence.events(hv.name))

    try:
        lab.wait_until(flapped, timeout=10, what="a route change on hv1 in its evidence")
    finally:  # its monitor ends whatever the wait did (PathEvidence)
        evidence.stop()
    assert "192.0.2.0/24" in evidence.report() and evidence.report().startswith("hv1: counters moved")


def test_controller_host_reaches_hypervisors_and_they_connect_to_it(lab, monkeypatch):
    ctl1, ctl2 = lab.add_controller_host("ctl1"), lab.add_controller_host("ctl2")
    hv = lab.add_hypervisor("hv1")
    assert ctl1.ping(hv.mgmt_ip) and hv.ping(ctl2.ip)

    use_fake_controller(lab, monkeypatch)
    controller = lab.start_controller(ctl1)
    hv.connect(ctl1)
    lab.wait_until(lambda: all(controller.api.get("/v1/status").json["peers"].values()),
                   timeout=10, what="OpenFlow and OVSDB connections from hv1 to ctl1")

    hv.connect([ctl1, ctl2], of_port=6633)
    assert hv.vsctl("get-controller", "br-int").split() == [
        f"tcp:{ctl1.ip}:6633", f"tcp:{ctl2.ip}:6633"]
    assert sorted(hv.vsctl("get-manager").split()) == [f"tcp:{ctl1.ip}:6640", f"tcp:{ctl2.ip}:6640"]


def test_kvm_vm_is_a_tap_port_with_libvirt_external_ids(lab):
    hv = lab.add_hypervisor("hv1", flavour="kvm")
    vm = lab.add_vm(hv, "vm1", mac="02:00:00:00:00:01", vnic_id="vport-1")
    assert vm.port.startswith("tap") and vm.port in hv.vsctl("list-ports", "br-int").split()
    ids = hv.ovs.external_ids("Interface", vm.port)
    assert ids == {"iface-id": "vport-1", "attached-mac": "02:00:00:00:00:01",
                   "vm-uuid": str(vm.uuid), "iface-status": "active"}
    assert "link/ether 02:00:00:00:00:01" in vm.exec("ip", "link", "show", "eth0", check=True).stdout

    lab.remove_vm(vm)
    assert vm.port not in hv.vsctl("list-ports", "br-int").split()
    assert not netns.exists(vm.ns)


def test_hyperv_vm_port_is_named_after_the_vm_without_external_ids(lab):
    hv = lab.add_hypervisor("hv1", flavour="hyperv")
    vm = lab.add_vm(hv, "web-01", mac="02:00:00:00:00:02")
    assert vm.port == "web-01" and "web-01" in hv.vsctl("list-ports", "br-int").split()
    assert hv.ovs.external_ids("Interface", "web-01") == {}
    with pytest.raises(ValueError):
        lab.add_vm(hv, "a-name-longer-than-15", mac="02:00:00:00:00:03")


def test_esxi_vm_reaches_br_int_tagged_on_the_trunk(lab):
    hv = lab.add_hypervisor("hv1", flavour="esxi")
    vm = lab.add_vm(hv, "vm1", mac="02:00:00:00:01:01", ip="10.0.101.10/24", vnic_id="vnic-a",
                    vlan=101)
    other = lab.add_vm(hv, "vm2", mac="02:00:00:00:01:02", vlan=102)
    trunk_ids = hv.ovs.external_ids("Interface", "trunk0")
    assert trunk_ids == {"canopy-vnic-101": "vnic-a", "canopy-vnic-102": "vm2"}
    with pytest.raises(ValueError):
        lab.add_vm(hv, "vm3", vlan=101)

    hv.ofctl("add-flow", "br-int", "in_port=trunk0,dl_vlan=101,actions=drop")
    lab.wait_until(lambda: vm.ping("10.0.101.1", timeout=1) or
                   hv.ovs.flow_packets("br-int", "in_port=trunk0,dl_vlan=101") > 0,
                   timeout=10, what="vm1's frames on trunk0 tagged with VLAN 101")

    lab.remove_vm(vm)
    assert hv.ovs.external_ids("Interface", "trunk0") == {"canopy-vnic-102": "vm2"}
    assert vm.port not in hv.port_group.ovs.vsctl("list-ports", "pg0").split()
    assert other.port in hv.port_group.ovs.vsctl("list-ports", "pg0").split()
    assert not netns.exists(vm.ns)


def test_vms_exchange_tcp_through_the_userspace_datapath(lab):
    hv = lab.add_hypervisor("hv1")
    client = lab.add_vm(hv, "vm1", ip="10.0.0.1/24")
    server = lab.add_vm(hv, "vm2", ip="10.0.0.2/24")
    hv.ofctl("add-flow", "br-int", "actions=NORMAL")
    assert client.ping(server.address)

    lab.spawn("http-vm2", [sys.executable, "-m", "http.server", "--bind", server.address, "8000"],
              lab.workdir / "http-vm2.log", ns=server.ns)
    url = f"http://{server.address}:8000/"
    lab.wait_until(lambda: client.exec("curl", "-sf", "-m", "2", "-o", "/dev/null", url).returncode == 0,
                   timeout=10, what=f"{url} to answer vm1 over TCP")


def test_vms_on_two_hypervisors_reach_each_other_over_userspace_vxlan(lab):
    """The br-phy arrangement carries VXLAN between VTEP IPs (flows stand in for the controller)."""
    hv1, hv2 = lab.add_hypervisor("hv1"), lab.add_hypervisor("hv2", flavour="hyperv")
    vm1 = lab.add_vm(hv1, "vm1", ip="10.0.0.1/24")
    vm2 = lab.add_vm(hv2, "vm2", ip="10.0.0.2/24")
    for hv, vm, remote in ((hv1, vm1, hv2), (hv2, vm2, hv1)):
        hv.vsctl("add-port", "br-int", "vxlan0", "--", "set", "Interface", "vxlan0", "type=vxlan",
                 "options:remote_ip=flow", "options:key=flow", f"options:local_ip={hv.vtep_ip}")
        hv.ofctl("add-flow", "br-int", f"in_port={vm.port},actions=set_field:{remote.vtep_ip}->tun_dst,"
                                       "set_field:5001->tun_id,output:vxlan0")
        hv.ofctl("add-flow", "br-int", f"in_port=vxlan0,tun_id=5001,actions=output:{vm.port}")
    # The first packets may go while OVS still resolves the remote VTEP's MAC: retry, bounded.
    lab.wait_until(lambda: vm1.ping(vm2.address, timeout=1), timeout=10,
                   what="vm1 (hv1) to ping vm2 (hv2) over VXLAN")


def test_controller_process_config_rest_and_lifecycle(lab, monkeypatch):
    ctl = lab.add_controller_host("ctl1")
    use_fake_controller(lab, monkeypatch)
    controller = lab.start_controller(ctl, {"log_level": "debug", "rest": {"port": 8181}})

    config = controller.api.get("/v1/status").json["config"]
    assert config["rest"] == {"listen": "127.0.0.1", "port": 8181, "token": "test-token"}
    assert config["log_level"] == "debug" and config["openflow"]["port"] == 6653
    assert Path(config["data_dir"]).is_dir()

    echoed = controller.api.post("/v1/things", {"name": "a"}).json
    assert echoed["authorization"] == "Bearer test-token" and echoed["body"] == '{"name": "a"}'
    assert controller.api.get("/v1/things").json["authorization"] is None
    assert controller.api.delete("/v1/things/a", token="wrong").json["authorization"] == "Bearer wrong"

    first_pid = controller.pid
    controller.restart()
    assert controller.pid != first_pid and is_gone(first_pid)
    assert controller.api.get("/v1/status").status == 200
    controller.kill()
    assert not controller.alive()


def test_controller_that_exits_at_start_is_reported_with_its_log(lab, monkeypatch):
    ctl = lab.add_controller_host("ctl1")
    use_fake_controller(lab, monkeypatch, "import sys\nprint('bad setting: rest.port')\nsys.exit(3)\n")
    with pytest.raises(ControllerStartError, match=r"(?s)exited with code 3.*bad setting: rest.port"):
        lab.start_controller(ctl)


def test_wait_until_is_bounded_and_names_what_it_waited_for():
    with pytest.raises(AssertionError, match="waiting for the impossible"):
        Lab.wait_until(lambda: False, timeout=0.3, what="the impossible")
    assert Lab.wait_until(lambda: 42, timeout=0.3) == 42


def test_teardown_removes_every_namespace_process_and_file_even_on_failure(lab_capable):
    with pytest.raises(RuntimeError, match="test body failed"):
        with Lab() as lab:
            hv = lab.add_hypervisor("hv1", flavour="esxi")
            lab.add_vm(hv, "vm1", vlan=10)
            lab.add_controller_host("ctl1")
            lab.spawn("sleeper", ["sleep", "60"], lab.workdir / "sleeper.log", ns=hv.ns)
            namespaces, pids, workdir, record = lab.namespaces, lab.pids, lab.workdir, lab.record.path
            assert all(netns.exists(ns) for ns in namespaces) and len(pids) == 5
            raise RuntimeError("test body failed")
    assert not [ns for ns in namespaces if netns.exists(ns)]
    assert all(is_gone(pid) for pid in pids)
    assert not workdir.exists() and not record.exists()


CRASHING_RUN = textwrap.dedent('''
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from tests.harness.lab import Lab
    lab = Lab().__enter__()
    lab.add_controller_host("ctl1")
    print(lab.run_id, lab.prefix, lab.workdir, flush=True)
    time.sleep(60)
''')


def test_a_new_lab_sweeps_what_a_crashed_run_left(lab_capable, tmp_path):
    out = tmp_path / "crashed.out"
    with open(out, "w") as sink:
        crashed = subprocess.Popen([sys.executable, "-c", CRASHING_RUN, str(REPO)], stdout=sink)
    try:
        Lab.wait_until(lambda: out.read_text().endswith("\n") or crashed.poll() is not None,
                       timeout=20, what="the doomed run to set up its lab")
        run_id, prefix, workdir = out.read_text().split()
        left = [ns for ns in netns.list_namespaces() if ns.startswith(prefix + "-")]
        record = RECORD_DIR / f"{run_id}.json"
        assert left and Path(workdir).exists() and record.exists()
    finally:
        crashed.send_signal(signal.SIGKILL)
        crashed.wait(timeout=10)

    with Lab():  # (a concurrent run's Lab may have swept it already: the outcome is the same)
        assert not [ns for ns in left if netns.exists(ns)]
        assert not Path(workdir).exists() and not record.exists()
