"""``canopy show`` and ``canopy trace`` against a running controller, and the trace's verdicts against
``ovs-appctl ofproto/trace`` on the flows Canopy really installed on each hypervisor.

Lab: one controller; kvm1 (webk, webk2), kvm2 (dbk), esx1 (webe on VLAN 101 of its trunk).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.test_pipeline_trace import Traced, verdict_ovs

pytestmark = pytest.mark.integration

CANOPY = str(Path(sys.executable).with_name("canopy"))
POLICY = {"tenants": [{"name": "acme", "domains": [{"name": "prod", "subnets": [
    {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", "vports": [
        {"name": "webk", "mac": "02:00:00:00:01:01", "ips": ["10.0.1.11"], "binding": {"flavour": "kvm"}},
        {"name": "webk2", "mac": "02:00:00:00:01:04", "ips": ["10.0.1.14"], "binding": {"flavour": "kvm"}},
        {"name": "webe", "mac": "02:00:00:00:01:03", "ips": ["10.0.1.13"], "binding": {"flavour": "esxi"}}]},
    {"name": "db", "cidr": "10.0.2.0/24", "gateway": "10.0.2.1", "vports": [
        {"name": "dbk", "mac": "02:00:00:00:02:01", "ips": ["10.0.2.11"], "binding": {"flavour": "kvm"}}]},
]}]}]}


@pytest.fixture(scope="module")
def live(lab_capable):
    from tests.harness.lab import Lab

    with Lab() as lab:
        ctl = lab.add_controller_host("ctl1")
        canopy = lab.start_controller(ctl)
        assert canopy.api.post("/v1/apply", {"document": POLICY, "source": "t"}).status == 200
        hosts = {"kvm1": lab.add_hypervisor("kvm1", "kvm"), "kvm2": lab.add_hypervisor("kvm2", "kvm"),
                 "esx1": lab.add_hypervisor("esx1", "esxi")}
        for hv in hosts.values():
            hv.connect(ctl)
        lab.add_vm(hosts["kvm1"], "webk", mac="02:00:00:00:01:01", vnic_id="webk")
        lab.add_vm(hosts["kvm1"], "webk2", mac="02:00:00:00:01:04", vnic_id="webk2")
        lab.add_vm(hosts["kvm2"], "dbk", mac="02:00:00:00:02:01", vnic_id="dbk")
        lab.add_vm(hosts["esx1"], "webe", mac="02:00:00:00:01:03", vnic_id="webe", vlan=101)

        def settled():
            switches = canopy.api.get("/v1/switches").json["items"]
            return canopy.api.get("/v1/status").json["vports_bound"] == 4 and len(switches) == 3 and all(
                (s.get("sync") or {}).get("state") == "in_sync" and s["sync"]["desired"] == s["sync"]["installed"]
                for s in switches)
        lab.wait_until(settled, timeout=30, what="four vports bound and three switches in sync")

        def cli(*args):
            done = subprocess.run(["ip", "netns", "exec", ctl.ns, CANOPY, *args, "--url", "http://127.0.0.1:8080",
                                   "--token", "test-token"], capture_output=True, text=True, timeout=60)
            return done.returncode, done.stdout, done.stderr

        yield cli, hosts, canopy


def ofproto(hv, packet):
    done = subprocess.run(["ovs-appctl", "-t", str(hv.ovs.rundir / "ovs-vswitchd.ctl"), "ofproto/trace", "br-int",
                           packet], capture_output=True, text=True, timeout=10, check=True)
    return Traced(done.stdout)


def test_show_prints_the_tree_with_where_each_vport_is_bound(live):
    cli, hosts, _ = live
    code, out, err = cli("show")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("canopy ") and "role standalone" in lines[0]
    assert any(line.strip().startswith("vport webe  02:00:00:00:01:03  10.0.1.13  esxi  on esx1 port trunk0 vlan 101")
               for line in lines), out
    for name, hv in hosts.items():
        line = next(line for line in lines if line.startswith(f"hypervisor {name} "))
        assert f"dpid {hv.datapath_id():016x}" in line and "openflow up  ovsdb up" in line and "in_sync" in line
    code, out, _ = cli("show", "--json")
    tree = json.loads(out)
    assert [t["name"] for t in tree["tenants"]] == ["acme"] and len(tree["hypervisors"]) == 3


def test_show_vport_has_its_flows_by_table_installed(live):
    cli, _, _ = live
    code, out, err = cli("show", "vport", "webe")
    assert code == 0, err
    assert "    status bound  on esx1 port trunk0 vlan 101" in out and "flows on esx1 (in sync):" in out
    assert "      table 0 classify" in out and "dl_vlan=101" in out and "not installed" not in out
    assert "    dhcp 10.0.1.13/24  router 10.0.1.1" in out
    code, _, err = cli("show", "vport", "nosuch")
    assert code == 1 and "nosuch" in err


CASES = {  # name: (hypervisor, canopy trace arguments, the exit kinds expected)
    "l2 local": ("kvm1", ["--vport", "webk", "ip,nw_dst=10.0.1.14"], ["output"]),
    "l2 remote over vxlan": ("kvm1", ["--vport", "webk", "ip,nw_dst=10.0.1.13"], ["tunnel"]),
    "routed to a remote host": ("kvm1", ["--vport", "webk", "ip,nw_dst=10.0.2.11"], ["tunnel"]),
    "esxi vnic out over vxlan": ("esx1", ["--vport", "webe", "ip,nw_dst=10.0.1.11"], ["tunnel"]),
    "from vxlan to an esxi vlan": ("esx1", ["--switch", "esx1", "--vni", "{vni}",
                                            "dl_src=02:00:00:00:01:01,dl_dst=02:00:00:00:01:03,ip,"
                                            "nw_src=10.0.1.11,nw_dst=10.0.1.13"], ["output"]),
    "spoofed source dropped": ("kvm1", ["--vport", "webk", "ip,dl_src=02:00:00:00:99:99,nw_dst=10.0.1.14"],
                               ["drop"]),
    "dhcp to the controller": ("kvm2", ["--vport", "dbk", "udp,dl_dst=ff:ff:ff:ff:ff:ff,nw_src=0.0.0.0,"
                                                          "nw_dst=255.255.255.255,udp_src=68,udp_dst=67"],
                               ["controller"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_trace_verdict_agrees_with_ofproto_trace_on_the_installed_flows(live, case):
    cli, hosts, canopy = live
    vni = canopy.api.get("/v1/subnets?name=web").json["items"][0]["vni"]
    hv_name, args, kinds = CASES[case]
    code, out, err = cli("trace", *[a.format(vni=vni) for a in args], "--json")
    assert code == 0, err
    reply = json.loads(out)
    assert [e["kind"] for e in reply["exits"]] == kinds, reply["exits"]
    ours = sorted(((str(e["port"]), e.get("tun_dst"), e.get("tun_id"), e["vlan"]) for e in reply["exits"]
                   if e["kind"] in ("output", "tunnel")), key=repr)
    theirs = ofproto(hosts[hv_name], reply["ofproto_trace"])
    assert (ours, any(e["kind"] == "controller" for e in reply["exits"])) == \
        verdict_ovs(theirs, str(reply["switch"]["tunnel_ofport"])), theirs.text
    if case == "from vxlan to an esxi vlan":
        assert reply["exits"][0]["vlan"] == 101 and reply["exits"][0]["vport"]["ref"] == "acme/web/webe"
    if case == "spoofed source dropped":
        assert [e["summary"] for e in reply["exits"]] == ["drop: port security: the source MAC or IP is not the "
                                                          "vport's own"]
    code, text, _ = cli("trace", *[a.format(vni=vni) for a in args])
    assert code == 0 and text.splitlines()[0].startswith(f"trace on {hv_name} ") and "=> " in text
