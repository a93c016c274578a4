"""External networks proven by packets on real OVS (userspace datapath, conntrack): an outside host on the
external network (a Linux bridge that every hypervisor's uplink port joins) pings and connects by TCP to VMs on
KVM, Hyper-V and ESXi through their floating IPs, and they reach it with their floating IP as source; VMs without
one reach it through port address translation behind their hypervisor's address, and are not reachable from
outside; a floating IP moved to another VM answers there; a VM that migrates keeps its floating IP (gratuitous
ARP from the new hypervisor; lost pings counted); security policies apply to what arrives through a floating IP
and to translated traffic, on the inside address."""

from __future__ import annotations

import subprocess

import pytest

from tests.harness.external import external_segment, join_external, outside_host, serve_echo, tcp

pytestmark = pytest.mark.integration

OUTSIDE_IP, OUTSIDE_MAC = "203.0.113.1", "02:00:00:ee:00:01"
FIPS = {"vm1": "203.0.113.11", "vm2": "203.0.113.12", "vm3": "203.0.113.13"}
UPLINK_IPS = {"kvm1": "203.0.113.101", "hyv1": "203.0.113.102", "esx1": "203.0.113.103", "kvm2": "203.0.113.104"}
VMS = {  # name: (hypervisor, mac, ip, extra ports it serves)
    "vm1": ("kvm1", "02:00:00:00:01:01", "10.0.1.11", 7001),
    "vm2": ("hyv1", "02:00:00:00:01:02", "10.0.1.12", 7002),
    "vm3": ("esx1", "02:00:00:00:01:03", "10.0.1.13", 7003),
    "vm4": ("kvm1", "02:00:00:00:01:04", "10.0.1.14", 7004),
    "vm5": ("hyv1", "02:00:00:00:01:05", "10.0.1.15", 7005),  # no floating IP; its ACL only lets it open tcp 9000
}
ACLS = {"vm2": "vm2-in", "vm5": "vm5-out"}


def vport(name):
    hv, mac, ip, _ = VMS[name]
    flavour = {"kvm1": "kvm", "kvm2": "kvm", "hyv1": "hyperv", "esx1": "esxi"}[hv]
    return {"name": name, "mac": mac, "ips": [ip], "binding": {"flavour": flavour},
            **({"acls": [ACLS[name]]} if name in ACLS else {})}


POLICY = {
    "external_networks": [{"name": "public", "cidr": "203.0.113.0/24", "gateway": OUTSIDE_IP,
                           "gateway_mac": OUTSIDE_MAC}],
    "tenants": [{
        "name": "acme",
        "acls": [{"name": "vm2-in", "default_action": "deny", "rules": [
            {"direction": "ingress", "action": "allow", "protocol": "tcp", "ports": "22"},
            {"direction": "ingress", "action": "allow", "protocol": "icmp"},
            {"direction": "egress", "action": "allow"}]},
                 {"name": "vm5-out", "default_action": "deny", "rules": [
                     {"direction": "egress", "action": "allow", "protocol": "tcp", "ports": "9000"}]}],
        "floating_ips": [{"name": f"fip-{vm}", "external_network": "public", "address": ip, "vport": f"web/{vm}"}
                         for vm, ip in FIPS.items()],
        "domains": [{"name": "prod", "external_network": "public", "underlay_nat": True, "subnets": [
            {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", "vports": [vport(n) for n in VMS]}]}],
    }]}


def add_vm(lab, hosts, name, hv_name=None):
    hv, mac, ip, port = VMS[name]
    hv = hosts[hv_name or hv]
    vm = lab.add_vm(hv, name, mac=mac, ip=f"{ip}/24", vnic_id=name, vlan=101 + int(name[2:]) if
                    hv.flavour == "esxi" else None)
    vm.exec("ip", "route", "add", "default", "via", "10.0.1.1", check=True)
    serve_echo(lab, vm, 22, port, name=f"echo-{name}-{hv.name}")
    return vm


@pytest.fixture(scope="module")
def net(lab_capable):
    from tests.harness.lab import Lab

    with Lab() as lab:
        ctl = lab.add_controller_host("ctl1")
        canopy = lab.start_controller(ctl)
        reply = canopy.api.post("/v1/apply", {"document": POLICY, "source": "extnet"})
        assert reply.status == 200, reply.text
        hosts = {"kvm1": lab.add_hypervisor("kvm1", "kvm"), "hyv1": lab.add_hypervisor("hyv1", "hyperv"),
                 "esx1": lab.add_hypervisor("esx1", "esxi"), "kvm2": lab.add_hypervisor("kvm2", "kvm")}
        segment = external_segment(lab)
        for hv in hosts.values():  # uplinks announced in OVSDB only (no policy uplink)
            join_external(segment, hv, "public", UPLINK_IPS[hv.name])
            hv.connect(ctl)
        outside = outside_host(lab, segment, f"{OUTSIDE_IP}/24", OUTSIDE_MAC, routes=["10.0.1.0/24"])  # must fail
        serve_echo(lab, outside, 9000)
        vms = {name: add_vm(lab, hosts, name) for name in VMS}
        lab.wait_until(lambda: canopy.api.get("/v1/status").json["vports_bound"] == len(VMS), timeout=15,
                       what="every vport bound")
        yield lab, canopy, hosts, vms, outside


def fip_named(canopy, name):
    items = canopy.api.get(f"/v1/floating-ips?name={name}").json["items"]
    assert len(items) == 1, items
    return items[0]


def test_outside_reaches_each_flavour_by_its_floating_ip_by_ping_and_tcp(net):
    lab, canopy, _, _, outside = net
    for vm, fip in FIPS.items():
        lab.wait_until(lambda: outside.ping(fip, timeout=1), timeout=20, what=f"outside pings {vm} at {fip}")
        lab.wait_until(lambda: tcp(outside, fip, 22), timeout=20, what=f"outside connects to {vm} at {fip}:22")
    where = {fip_named(canopy, f"fip-{vm}")["active_on"]["chassis"] for vm in FIPS}
    assert where == {"kvm1", "hyv1", "esx1"}
    for vm in FIPS:  # counted by the switch that translates (flow statistics)
        stats = canopy.api.get(f"/v1/floating-ips/{fip_named(canopy, f'fip-{vm}')['id']}/stats").json
        assert stats["inbound_packets"] > 0 and stats["outbound_packets"] > 0 and stats["arp_answered"] > 0, stats
        assert stats["unanswered"] == [], stats


def test_a_vm_reaches_the_outside_with_its_floating_ip_as_source(net):
    """The outside host has no route back to 10.0.1.0/24 but on its own segment, where nobody answers for it:
    an answer arrives only if the VM's packets left with the floating IP."""
    lab, _, _, vms, outside = net
    for name in FIPS:
        lab.wait_until(lambda: vms[name].ping(OUTSIDE_IP, timeout=1), timeout=20, what=f"{name} pings outside")
        lab.wait_until(lambda: tcp(vms[name], OUTSIDE_IP, 9000), timeout=20, what=f"{name} connects outside")


def test_vms_without_a_floating_ip_reach_the_outside_behind_their_hypervisors_address(net):
    """vm4 (kvm1) and vm5 (hyv1) have no floating IP: their connections leave translated (conntrack NAT, ports
    included) behind kvm1's and hyv1's addresses, the only addresses their answers can come back to; the
    translation zone of each VRS holds them. vm5's ACL lets it open tcp 9000 only (checked on its own address)."""
    lab, canopy, hosts, vms, outside = net
    lab.wait_until(lambda: tcp(vms["vm4"], OUTSIDE_IP, 9000), timeout=20, what="vm4 connects outside")
    lab.wait_until(lambda: vms["vm4"].ping(OUTSIDE_IP, timeout=1), timeout=20, what="vm4 pings outside")
    lab.wait_until(lambda: tcp(vms["vm5"], OUTSIDE_IP, 9000), timeout=20, what="vm5 connects outside")
    assert not vms["vm5"].ping(OUTSIDE_IP, timeout=1), "vm5's ACL allows tcp 9000 only"
    for hv, vm in (("kvm1", "vm4"), ("hyv1", "vm5")):
        ctl = str(hosts[hv].ovs.rundir / "ovs-vswitchd.ctl")
        dump = hosts[hv].exec("ovs-appctl", "-t", ctl, "dpctl/dump-conntrack", "zone=65281", check=True).stdout
        assert f"src={VMS[vm][2]}" in dump and f"dst={UPLINK_IPS[hv]}" in dump, dump
    neighbours = outside.exec("ip", "neigh", "show", "dev", "eth0", check=True).stdout
    assert UPLINK_IPS["kvm1"] in neighbours and UPLINK_IPS["hyv1"] in neighbours, neighbours
    net_id = canopy.api.get("/v1/external-networks?name=public").json["items"][0]["id"]
    stats = {s["chassis"]: s for s in canopy.api.get(f"/v1/external-networks/{net_id}/stats").json["translation"]}
    for hv in ("kvm1", "hyv1"):
        assert stats[hv]["outbound_packets"] > 0 and stats[hv]["reply_packets"] > 0, stats
        assert stats[hv]["address"] == UPLINK_IPS[hv]


def test_a_vm_without_a_floating_ip_cannot_be_reached_from_outside(net):
    lab, _, _, vms, outside = net
    lab.wait_until(lambda: outside.ping(FIPS["vm1"], timeout=1), timeout=20, what="the outside network works")
    assert not outside.ping(VMS["vm5"][2], timeout=1)
    assert not tcp(outside, VMS["vm5"][2], 22)
    assert not outside.ping("203.0.113.15", timeout=1)  # nobody answers for an address not floating
    assert not tcp(outside, UPLINK_IPS["hyv1"], 7005)  # nor lets a new connection in through the translation


def test_a_security_policy_applies_to_what_comes_through_a_floating_ip(net):
    """vm2's ACL admits tcp 22 and ICMP only: its own echo port 7002 stays closed through the floating IP."""
    lab, _, _, vms, outside = net
    lab.wait_until(lambda: tcp(outside, FIPS["vm2"], 22), timeout=20, what="tcp 22 to vm2's floating IP")
    assert not tcp(outside, FIPS["vm2"], 7002), "no rule admits 7002"
    assert tcp(vms["vm2"], OUTSIDE_IP, 9000), "vm2's own connections out (egress allowed) get their answers"


def test_a_floating_ip_moved_to_another_vm_answers_there(net):
    lab, canopy, _, _, outside = net
    fip = fip_named(canopy, "fip-vm3")
    lab.wait_until(lambda: tcp(outside, FIPS["vm3"], 7003), timeout=20, what="vm3 (esxi) answers on 7003")
    vm4 = canopy.api.get("/v1/vports?name=vm4").json["items"][0]
    reply = canopy.api.patch(f"/v1/floating-ips/{fip['id']}", {"vport_id": vm4["id"]})
    assert reply.status == 200, reply.text
    lab.wait_until(lambda: tcp(outside, FIPS["vm3"], 7004), timeout=20, what="vm4 (kvm) answers on 7004")
    assert not tcp(outside, FIPS["vm3"], 7003)
    assert fip_named(canopy, "fip-vm3")["active_on"]["chassis"] == "kvm1"
    reply = canopy.api.patch(f"/v1/floating-ips/{fip['id']}", {"vport_id": fip["vport_id"]})  # back to vm3
    assert reply.status == 200, reply.text
    lab.wait_until(lambda: tcp(outside, FIPS["vm3"], 7003), timeout=20, what="vm3 answers again")


def replies_until(pinger, enough, limit=400):
    """Read the pinger's lines (one per ping with -O: answered or not) until ``enough(seqs answered)``; bounded
    by ``limit`` lines (20 s at 50 ms). Returns (answered seqs, lines read)."""
    answered, lines = [], []
    while len(lines) < limit and not enough(answered):
        line = pinger.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "icmp_seq=" in line and "ttl=" in line:
            answered.append(int(line.split("icmp_seq=")[1].split()[0]))
    return answered, lines


def test_a_migrated_vm_keeps_its_floating_ip(net):
    """vm1 moves from kvm1 to kvm2 (unplugged there, plugged here, same MAC and IP) while the outside host pings
    its floating IP every 50 ms: pings resume from kvm2; the lost ones are counted (printed, not bounded)."""
    lab, canopy, hosts, vms, outside = net
    fip = FIPS["vm1"]
    lab.wait_until(lambda: outside.ping(fip, timeout=1), timeout=20, what="vm1 reachable before the move")
    pinger = subprocess.Popen(["ip", "netns", "exec", outside.ns, "ping", "-n", "-O", "-i", "0.05", "-W", "1", fip],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        before, _ = replies_until(pinger, lambda seqs: len(seqs) >= 3)
        assert len(before) >= 3, "pings answered before the move"
        lab.remove_vm(vms["vm1"])
        vms["vm1"] = add_vm(lab, hosts, "vm1", "kvm2")
        lab.wait_until(lambda: (fip_named(canopy, "fip-vm1")["active_on"] or {}).get("chassis") == "kvm2",
                       timeout=20, what="the floating IP active on kvm2")
        lab.wait_until(lambda: tcp(outside, fip, 7001), timeout=20, what="vm1 answers on kvm2")
        during, lines = replies_until(pinger, lambda seqs: len(seqs) >= 10)
    finally:
        pinger.send_signal(2)
        pinger.communicate(timeout=10)
    assert len(during) >= 10, "".join(lines[-20:])  # pings answered again, now by kvm2
    sent = during[-1] - before[0] + 1
    answered = len(before) + len(during)
    print(f"migration: {sent} pings every 50 ms across the move, {sent - answered} lost")
