"""A live migration in flight, with real Open vSwitch (docs/vrs.md "How a vport is recognised"): libvirt plugs the
destination's port, with the VM's iface-id and attached-mac, when the migration starts, while the VM runs on the
source until it ends. One controller, three KVM hypervisors: vm0 on hv1, vm1 on hv2 pinging it every 0.1 s.

Before 2026-12-06 the latest appearance won at once: the moment the destination's port (on hv3) appeared, every
packet to vm0 went to hv3, where it is not running yet: 38 of 38 pings lost over 4 s, and so for the whole
migration. Now the source's port keeps the vport until it goes or loses its device (the source's VM stopped: OVS
sets its ofport to -1 on the kernel datapath; the userspace one keeps the number of a vanished device), so no ping
is lost while the migration is in flight; an aborted migration (the destination's port removed) changes nothing; at
its end (the source's VM stopped, its port removed by libvirt) the VM answers from hv3. A port whose device
Open vSwitch cannot open (ofport -1) holds a vport only until a port with a device shows it, however late."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.harness import netns
from tests.harness.policy import acme_web
from tests.harness.two_hypervisors import MACS, kvm_vports, where
from tests.integration.test_foundation import switch_of

pytestmark = pytest.mark.integration

REPLY = re.compile(r"^\d+ bytes from \S+: icmp_seq=(\d+) ", re.M)  # an echo reply's line


def ping_lost(vm, ip, seconds):
    """Echo requests every 0.1 s, ``seconds`` x 10 of them: how many got no reply (``answered``).

    Each request gets up to 2 s past the last one's sending. Before, ``ping -w seconds`` ended at the deadline with
    the last request still in flight, so a reply later than the deadline counted as lost: one of 20 on a loaded
    machine (ping, OVS or the VM's namespace waiting for a CPU) while every echo was answered."""
    count = int(seconds * 10)
    out = subprocess.run(["ip", "netns", "exec", vm.ns, "ping", "-n", "-i", "0.1", "-c", str(count), "-w",
                          str(seconds + 2), ip], capture_output=True, text=True, timeout=seconds + 12).stdout
    return count - len(answered(out) & set(range(1, count + 1)))


def answered(out: str) -> set[int]:
    """The sequence numbers of the echo requests that ping's output ``out`` shows a reply to (with ``-c`` and ``-w``
    ping sends more while a reply is missing, to get ``-c`` replies: those later requests are not among the counted)."""
    return {int(seq) for seq in REPLY.findall(out)}


def test_a_vm_whose_migration_is_in_flight_or_aborted_keeps_its_traffic_and_answers_from_its_destination_after(lab):
    ctl = lab.add_controller_host("ctl1")
    canopy = lab.start_controller(ctl)
    api = canopy.api
    kvm_vports(api, acme_web(api)[2])
    hvs = [lab.add_hypervisor(f"hv{i}") for i in (1, 2, 3)]
    for hv in hvs:
        hv.connect(ctl)
    vm0 = lab.add_vm(hvs[0], "vm0", mac=MACS[0], ip="10.0.1.10/24", vnic_id="vm0")
    vm1 = lab.add_vm(hvs[1], "vm1", mac=MACS[1], ip="10.0.1.11/24", vnic_id="vm1")
    for hv in hvs:
        lab.wait_until(lambda: (s := switch_of(api, hv.name)) and s["openflow"]["connected"], timeout=15,
                       what=f"{hv.name} connected")
    lab.wait_until(lambda: vm1.ping("10.0.1.10"), timeout=15, what="vm1 pings vm0")

    dest = lab.add_vm(hvs[2], "vm0-in", mac=MACS[0], ip=None, vnic_id="vm0", paused=True)  # paused until the end: answers nothing
    lab.wait_until(lambda: hvs[2].vsctl("get", "Interface", dest.port, "ofport") not in ("[]", "-1"), timeout=10,
                   what="the destination's port numbered")
    assert ping_lost(vm1, "10.0.1.10", 3) == 0, "pings lost while the migration is in flight"
    assert where(api, "vm0") == "hv1"

    lab.remove_vm(dest)  # aborted
    assert ping_lost(vm1, "10.0.1.10", 1) == 0 and where(api, "vm0") == "hv1"

    dest = lab.add_vm(hvs[2], "vm0-in2", mac=MACS[0], ip=None, vnic_id="vm0", paused=True)  # again, to the end this time
    lab.wait_until(lambda: hvs[2].vsctl("get", "Interface", dest.port, "ofport") not in ("[]", "-1"), timeout=10,
                   what="the destination's port numbered")
    assert ping_lost(vm1, "10.0.1.10", 1) == 0
    netns.delete(vm0.ns)  # the source's VM stops (its device goes) and it runs on hv3 ...
    netns.add_address(dest.ns, "eth0", "10.0.1.10/24")
    hvs[0].vsctl("--if-exists", "del-port", "br-int", vm0.port)  # ... and libvirt removes the source's port
    lab.wait_until(lambda: where(api, "vm0") == "hv3", timeout=10, what="vm0 located on hv3")
    lab.wait_until(lambda: vm1.ping("10.0.1.10"), timeout=10, what="vm1 reaches vm0 on hv3")
    assert ping_lost(vm1, "10.0.1.10", 1) == 0


def test_a_port_whose_device_open_vswitch_cannot_open_holds_the_vport_only_until_one_with_a_device_shows_it(lab):
    """A port row left for a VM whose device is gone (a system interface with no such device: Open vSwitch cannot open
    it and sets its ofport to -1, on the userspace datapath too) holds vm0 only while nothing better shows it: the VM
    plugged on hv2 later takes it at once (the earliest appearance wins only among ports with a device:
    controller/binding.py ``preferred``), and vm1 on hv1 reaches it there."""
    ctl = lab.add_controller_host("ctl1")
    canopy = lab.start_controller(ctl)
    api = canopy.api
    kvm_vports(api, acme_web(api)[2])
    hvs = [lab.add_hypervisor(f"hv{i}") for i in (1, 2)]
    for hv in hvs:
        hv.connect(ctl)
    hvs[0].vsctl("add-port", "br-int", "ghost0", "--", "set", "Interface", "ghost0", "type=system",
                 "external_ids:iface-id=vm0", f"external_ids:attached-mac={MACS[0]}")
    lab.wait_until(lambda: hvs[0].vsctl("get", "Interface", "ghost0", "ofport").strip() == "-1", timeout=10,
                   what="ghost0's ofport -1 (no such device)")
    lab.wait_until(lambda: where(api, "vm0") == "hv1", timeout=15, what="vm0 held by ghost0 on hv1, alone")
    vm1 = lab.add_vm(hvs[0], "vm1", mac=MACS[1], ip="10.0.1.11/24", vnic_id="vm1")
    lab.add_vm(hvs[1], "vm0", mac=MACS[0], ip="10.0.1.10/24", vnic_id="vm0")
    lab.wait_until(lambda: where(api, "vm0") == "hv2", timeout=15, what="vm0 taken by its port with a device")
    lab.wait_until(lambda: vm1.ping("10.0.1.10"), timeout=15, what="vm1 on hv1 reaches vm0 on hv2")
    assert where(api, "vm0") == "hv2"
