"""Conntrack zones never collide on a switch (issue 14; docs/pipeline.md "Connection tracking"), proven on real OVS.

One ESXi VRS holds two policed vports whose zones the old fold made equal: x, a vNIC on VLAN 100 of trunk0 with
ofport 16 (key 16 << 12 | 100, folded to 358), and y, a tap port with ofport 358 (zone 358). x may open TCP 5432
(a stateful egress rule) and y admits it (a stateful ingress rule); neither has a rule for the other direction.
Sharing a zone, y's commit overwrote the mark of x's, so y's replies were not x's return traffic and x dropped
them: the connection failed. In zones of their own each side keeps its own connection and mark: it works, and
conntrack holds the connection in two zones, 358 and x's allocated one. A restarted controller computes the same
zones: it rewrites no ACL flow and an open connection goes on."""

from __future__ import annotations

import re
import sys

import pytest

from tests.integration.test_security_policy import ECHO, tcp

pytestmark = pytest.mark.integration

X, Y = "10.0.1.11", "10.0.1.12"
POLICY = {"tenants": [{
    "name": "acme",
    "acls": [
        {"name": "x-out", "default_action": "deny", "rules": [
            {"direction": "egress", "action": "allow", "protocol": "tcp", "ports": "5432"}]},
        {"name": "y-in", "default_action": "deny", "rules": [
            {"direction": "ingress", "action": "allow", "protocol": "tcp", "ports": "5432"}]}],
    "domains": [{"name": "prod", "subnets": [
        {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", "vports": [
            {"name": "x", "mac": "02:00:00:00:01:01", "ips": [X], "binding": {"flavour": "esxi"}, "acls": ["x-out"]},
            {"name": "y", "mac": "02:00:00:00:01:02", "ips": [Y], "binding": {"flavour": "kvm"}, "acls": ["y-in"]},
        ]}]}]}]}


@pytest.fixture(scope="module")
def esx(lab_capable):
    from tests.harness.lab import Lab

    with Lab() as lab:
        ctl = lab.add_controller_host("ctl1")
        canopy = lab.start_controller(ctl)
        reply = canopy.api.post("/v1/apply", {"document": POLICY, "source": "zones"})
        assert reply.status == 200, reply.text
        hv = lab.add_hypervisor("esx1", "esxi")
        hv.connect(ctl)
        x = lab.add_vm(hv, "x", mac="02:00:00:00:01:01", ip=f"{X}/24", vnic_id="x", vlan=100)
        y = lab.add_vm(hv, "y", mac="02:00:00:00:01:02", ip=f"{Y}/24", vnic_id="y", plug_as="kvm")
        hv.vsctl("set", "Interface", "trunk0", "ofport_request=16")
        hv.vsctl("set", "Interface", y.port, "ofport_request=358")
        lab.wait_until(lambda: hv.vsctl("get", "Interface", "trunk0", "ofport").strip() == "16" and
                       hv.vsctl("get", "Interface", y.port, "ofport").strip() == "358", timeout=15,
                       what="trunk0 at ofport 16 and y at 358")
        lab.spawn("echo-y", [sys.executable, ECHO, "serve", "5432"], lab.workdir / "echo-y.log", ns=y.ns)

        def bound_at_new_ofports():
            ports = {n: canopy.api.get(f"/v1/vports?name={n}").json["items"][0].get("location") or {} for n in "xy"}
            return ports["x"].get("ofport") == 16 and ports["y"].get("ofport") == 358

        lab.wait_until(bound_at_new_ofports, timeout=20, what="x and y bound at their new ofports")
        yield lab, hv, x, y, canopy


def test_two_vports_the_old_fold_put_in_one_zone_each_keep_their_connection(esx):
    lab, hv, x, _, _ = esx
    lab.wait_until(lambda: tcp(x, Y), timeout=20, what="x -> y tcp 5432 (y's replies are x's return traffic)")
    ctl = str(hv.ovs.rundir / "ovs-vswitchd.ctl")
    out = hv.exec("ovs-appctl", "-t", ctl, "dpctl/dump-conntrack", timeout=10, check=True).stdout
    zones = {int(z) for line in out.splitlines() if f"dst={Y}" in line and "dport=5432" in line
             for z in re.findall(r"zone=(\d+)", line)}
    assert 358 in zones and len(zones) == 2, out


def test_a_restart_keeps_the_allocated_zones_and_the_open_connection(esx):
    lab, hv, x, _, canopy = esx
    lab.wait_until(lambda: tcp(x, Y), timeout=20, what="x -> y tcp 5432")
    log = lab.workdir / "stream.log"
    lab.spawn("stream", [sys.executable, ECHO, "stream", Y, "5432", "90"], log, ns=x.ns)
    lab.wait_until(lambda: log.exists() and "ok 5" in log.read_text(), timeout=15, what="the stream flows")

    def acl_flows():
        return sorted(hv.ofctl("-O", "OpenFlow13", "--no-stats", "dump-flows", "br-int", "table=20").splitlines())

    before = acl_flows()
    assert any("reg1" in line.lower() for line in before), before  # the zones are set there
    canopy.stop()
    canopy.start()
    lab.wait_until(lambda: canopy.api.get("/v1/status").json.get("vports_bound") == 2, timeout=30,
                   what="both vports bound again after the restart")
    lab.wait_until(lambda: canopy.api.get("/v1/status").json.get("startup_hold", {}).get("state") == "synced", timeout=60,
                   what="the start-up hold released")
    seen = len(log.read_text().splitlines())
    lab.wait_until(lambda: len(log.read_text().splitlines()) >= seen + 30, timeout=20,
                   what="30 more lines echoed after the restart")
    assert "cut" not in log.read_text()
    assert acl_flows() == before
