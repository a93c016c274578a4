"""Gratuitous ARP for a floating IP after an HA takeover, seen on the external network's wire: a pair drives one
hypervisor with a floating IP active on it. A (active, it announced the floating IP) is frozen long enough for B to
take over, then resumed: it steps down to standby without a restart. B is killed: A takes over again, and the
outside host's capture shows A's gratuitous ARP for the floating IP (before the fix A's record from its first term
said the floating IP was announced there, and it sent none), and the outside host still reaches the VM by it."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness.external import external_segment, join_external, outside_host
from tests.integration.test_ha_writes import connect_to_pair, masters, role, settle, start_pair

pytestmark = pytest.mark.integration

OUTSIDE_IP, OUTSIDE_MAC, FIP, VM_MAC = "203.0.113.1", "02:00:00:ee:00:01", "203.0.113.11", "02:00:00:00:01:01"
WATCH = 20  # seconds the capture runs: the takeover (up to ~5 s, docs/ha.md) and the batch's 3.5 s, with room
POLICY = {
    "external_networks": [{"name": "public", "cidr": "203.0.113.0/24", "gateway": OUTSIDE_IP,
                           "gateway_mac": OUTSIDE_MAC}],
    "tenants": [{"name": "acme",
                 "floating_ips": [{"name": "fip-vm1", "external_network": "public", "address": FIP,
                                   "vport": "web/vm1"}],
                 "domains": [{"name": "prod", "external_network": "public", "subnets": [
                     {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", "vports": [
                         {"name": "vm1", "mac": VM_MAC, "ips": ["10.0.1.11"], "binding": {"flavour": "kvm"}}]}]}]}]}


def capture(ns: str, out: Path) -> subprocess.Popen:
    """tcpdump on the outside host for the floating IP's gratuitous ARP (a request for itself from its address),
    for WATCH seconds at most; its output lines, written to ``out`` as they come, are the frames seen, each after its
    time (seconds since the epoch); what it says on stderr goes to ``out`` with ".err" added."""
    with open(out, "w") as sink, open(f"{out}.err", "w") as errors:
        return subprocess.Popen(["ip", "netns", "exec", ns, "timeout", str(WATCH), "tcpdump", "-i", "eth0", "-nn",
                                 "-e", "-tt", "-l", "arp", "and", "arp[14:4]", "=", "0xcb00710b", "and", "arp[24:4]",
                                 "=", "0xcb00710b"], stdout=sink, stderr=errors)


def floating_ip_world(lab, ctls: dict, hosts: dict, policy: dict, source: str) -> tuple:
    """``policy`` applied at A (vm1 on hv1 with a floating IP on the external network "public"), hv1 on that network
    and connected to the pair, the outside host (the network's gateway, OUTSIDE_IP) on it, vm1 routed through its
    subnet's gateway; the pair settled with A active. Returns (hv1, the outside host, vm1)."""
    reply = ctls["a"].api.post("/v1/apply", {"document": policy, "source": source})
    assert reply.status == 200, reply.text
    hv = lab.add_hypervisor("hv1", "kvm")
    segment = external_segment(lab)
    join_external(segment, hv, "public", "203.0.113.101")
    connect_to_pair(hv, hosts)
    outside = outside_host(lab, segment, f"{OUTSIDE_IP}/24", OUTSIDE_MAC)
    vm = lab.add_vm(hv, "vm1", mac=VM_MAC, ip="10.0.1.11/24", vnic_id="vm1")
    vm.exec("ip", "route", "add", "default", "via", "10.0.1.1", check=True)
    settle(lab, ctls, hosts, hv, "a", "b")
    return hv, outside, vm


def seen_after(out: str, since: float) -> list[str]:
    """The captured frames (``capture``'s lines) seen at ``since`` or later: B's own takeover batch (four rounds
    over 3.5 s from when hv1 took it as master) may still be going when the capture starts. Lines that do not start
    with a time continue the frame before."""
    return [line for line in out.splitlines() if line[:1].isdigit() and float(line.split(" ", 1)[0]) >= since]


def test_a_node_active_again_after_a_demotion_announces_the_floating_ip(lab_capable):
    from tests.harness.lab import Lab

    with Lab() as lab:
        hosts, ctls = start_pair(lab)
        hv, outside, _ = floating_ip_world(lab, ctls, hosts, POLICY, "garps")
        lab.wait_until(lambda: outside.ping(FIP, timeout=1), timeout=20, what="outside pings vm1 by its floating IP")

        frozen = ctls["a"].child  # A steps down on resume, without a restart: it keeps what it recorded
        frozen.send(signal.SIGSTOP)
        try:
            lab.wait_until(lambda: role(ctls["b"]) == "active", timeout=40, what="B takes over")
        finally:
            frozen.send(signal.SIGCONT)
        settle(lab, ctls, hosts, hv, "b", "a")
        lab.wait_until(lambda: outside.ping(FIP, timeout=1), timeout=20, what="outside pings vm1 under B")

        out = lab.workdir / "garps.out"
        seen = capture(outside.ns, out)
        killed = time.time()
        try:
            ctls["b"].kill()
            lab.wait_until(lambda: role(ctls["a"]) == "active", timeout=30, what="A takes over again")
            lab.wait_until(lambda: masters(hv) == [f"tcp:{hosts['a'].ip}:6653"], timeout=30, what="A master of hv1")
            lab.wait_until(lambda: seen_after(out.read_text(), killed) or seen.poll() is not None, timeout=WATCH + 10,
                           what="a gratuitous ARP after B was killed, or the capture's end")
        finally:  # (the capture ends at the first frame seen after the kill, not WATCH seconds after its start)
            seen.terminate()
            seen.wait(timeout=10)
        frames = seen_after(out.read_text(), killed)
        assert frames, f"no gratuitous ARP for {FIP} after B was killed: {out.read_text()[-300:]} " \
                       f"{Path(f'{out}.err').read_text()[-300:]}"
        assert "02:cf:cb:00:71:0b" in frames[0], frames  # the floating IP's MAC (controller/extnet.py floating_mac)
        lab.wait_until(lambda: outside.ping(FIP, timeout=1), timeout=20, what="outside pings vm1 under A again")
