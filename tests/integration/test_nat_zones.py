"""Tenants reuse addresses: two VMs of different tenants with the same inside address on one hypervisor, each
with a floating IP, talk to the same outside host and port from the same source port at the same time. Each
domain translates in its own conntrack zone on the VRS (docs/external.md), so each connection keeps its own
translation and each VM gets its own answers (with one zone for every domain, the second VM's packets met the
first's connection). Real OVS (userspace datapath), an outside host on the external network."""

from __future__ import annotations

import pytest

from tests.harness.external import external_segment, join_external, outside_host, probe, serve_echo

pytestmark = pytest.mark.integration

OUTSIDE_IP, OUTSIDE_MAC = "203.0.113.1", "02:00:00:ee:00:01"
INSIDE_IP, SRC_PORT, DST_PORT = "10.0.1.5", 5353, 9053
TENANTS = {"alpha": ("02:00:00:00:0a:05", "203.0.113.21"), "beta": ("02:00:00:00:0b:05", "203.0.113.22")}


def tenant(name):
    mac, fip = TENANTS[name]
    vm = {"name": "vm", "mac": mac, "ips": [INSIDE_IP], "binding": {"flavour": "kvm", "iface_id": f"{name}-vm"}}
    return {"name": name,
            "floating_ips": [{"name": "fip", "external_network": "public", "address": fip, "vport": "web/vm"}],
            "domains": [{"name": "prod", "external_network": "public", "subnets": [
                {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", "vports": [vm]}]}]}


POLICY = {"external_networks": [{"name": "public", "cidr": "203.0.113.0/24", "gateway": OUTSIDE_IP,
                                 "gateway_mac": OUTSIDE_MAC}],
          "tenants": [tenant(name) for name in TENANTS]}


@pytest.fixture(scope="module")
def net(lab_capable):
    from tests.harness.lab import Lab

    with Lab() as lab:
        ctl = lab.add_controller_host("ctl1")
        canopy = lab.start_controller(ctl)
        reply = canopy.api.post("/v1/apply", {"document": POLICY, "source": "natzones"})
        assert reply.status == 200, reply.text
        hv = lab.add_hypervisor("kvm1", "kvm")
        segment = external_segment(lab)
        join_external(segment, hv, "public", "203.0.113.101")
        hv.connect(ctl)
        outside = outside_host(lab, segment, f"{OUTSIDE_IP}/24", OUTSIDE_MAC)
        serve_echo(lab, outside, DST_PORT)
        vms = {}
        for name, (mac, _) in TENANTS.items():
            vms[name] = lab.add_vm(hv, f"{name}-vm", mac=mac, ip=f"{INSIDE_IP}/24", vnic_id=f"{name}-vm")
            vms[name].exec("ip", "route", "add", "default", "via", "10.0.1.1", check=True)
        lab.wait_until(lambda: canopy.api.get("/v1/status").json["vports_bound"] == 2, timeout=15,
                       what="both vports bound")
        yield lab, canopy, hv, vms, outside


def test_same_inside_address_in_two_tenants_keeps_two_translations_on_one_vrs(net):
    lab, _, hv, vms, _ = net
    for name in TENANTS:  # each works alone first (the flows are in place)
        lab.wait_until(lambda: probe(vms[name], "udp", OUTSIDE_IP, DST_PORT), timeout=20,
                       what=f"{name}'s VM reaches the outside host")
    for round_ in range(3):  # both connections (same inside tuple) live in conntrack at once, in turns
        for name in TENANTS:
            assert probe(vms[name], "udp", OUTSIDE_IP, DST_PORT, SRC_PORT, f"{name}-{round_}"), \
                f"{name}'s VM gets its own answer from {SRC_PORT} (round {round_})"
    ctl = str(hv.ovs.rundir / "ovs-vswitchd.ctl")
    dump = hv.exec("ovs-appctl", "-t", ctl, "dpctl/dump-conntrack", check=True).stdout
    rows = [line for line in dump.splitlines() if f"sport={SRC_PORT}," in line and f"dport={DST_PORT}" in line]
    zones = {line.split("zone=")[1].split(",")[0] for line in rows if "zone=" in line}
    translated = {fip for _, fip in TENANTS.values() if any(f"dst={fip}" in line for line in rows)}
    assert len(zones) == 2 and all(int(z) > 0xFF01 for z in zones), dump
    assert translated == {fip for _, fip in TENANTS.values()}, dump
