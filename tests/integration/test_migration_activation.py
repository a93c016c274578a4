"""A live migration's destination activated by its VM's first packet, with real Open vSwitch and real frames
(docs/vrs.md "A live migration"; controller/state_activation.py, openflow/activation.py). Two KVM hypervisors: vm0
runs on hv1 with vm1 pinging it; libvirt plugs vm0's destination port on hv2 when the migration starts.

- In flight, pings go to the source; hv2's port only sends its VM's own frames to the controller (none yet).
- A controller restart in the middle keeps the source (the active port is stored; before, a restart ordered the two
  ports by when their switches reported to it, and a destination reporting first took the VM's traffic).
- The VM resumes on hv2 (the source paused: its address gone) and QEMU announces it: a flood of 5,000 RARP frames
  from its MAC, as fast as a packet socket sends them (a hostile VM's flood, too). The first makes hv2's port active,
  once; the controller answers REST and OpenFlow all along, and pings are answered from hv2.
- A restart while the source's port is still there (post-copy: the source's QEMU stays until every page is copied)
  keeps hv2, and the source's port going at the end changes nothing.
- Each stop leaves State as it was: its OVSDB sessions closing report no switch gone (before stop 46 the log said
  vm0 "bound at hv2" and vm1 "unbound" on the way out: ovsdb/claims.py ``close``).
Before 2026-12-06 the destination never became active while the source's port was there (pings lost until libvirt
removed it). About 20 s: two controller restarts, each waiting for both switches' reports (the switches retry
every second: max_backoff 1000 ms).

The second test: a restart while the source's hypervisor stays away (it went with the controller). vm0 is located
nowhere while the start-up hold waits for it (its stored active port is there), and at the hold's end it goes where
it is shown, the destination (docs/vrs.md "A live migration"), where vm1 reaches it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.harness.policy import acme_web, create
from tests.integration.test_foundation import switch_of
from tests.integration.test_migration_in_flight import ping_lost

pytestmark = pytest.mark.integration

MACS = ("02:00:00:00:01:01", "02:00:00:00:01:02")
HOLD = 4  # restart.hold_time of the second test: seconds the start-up hold waits for the source's hypervisor
STOP_MOVES = re.compile(r"canopy\.state: .*(bound at|unbound|disconnected)")  # what a stop must not log
SEND = ("import socket, sys\n"
        "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
        "s.bind(('eth0', 0))\n"
        "frame = bytes.fromhex(sys.argv[1])\n"
        "for _ in range(int(sys.argv[2])):\n"
        "    s.send(frame)\n")


def rarp(mac: str) -> bytes:
    """QEMU's announcement of a VM (RARP request reverse, its own MAC as sender and target), padded to 60 bytes."""
    own = bytes.fromhex(mac.replace(":", ""))
    body = bytes.fromhex("0001080006040003") + own + bytes(4) + own + bytes(4)
    return (b"\xff" * 6 + own + b"\x80\x35" + body).ljust(60, b"\0")


def send(vm, frame: bytes, count: int) -> None:
    subprocess.run(["ip", "netns", "exec", vm.ns, sys.executable, "-c", SEND, frame.hex(), str(count)], check=True,
                   timeout=60)


def vport_of(api, name):
    return next(item for item in api.get("/v1/vports").json["items"] if item["name"] == name)


def where(api, name):
    return ((vport_of(api, name)["location"]) or {}).get("chassis")


def kvm_pair(lab, ctl, api, subnet):
    """vm0's and vm1's vports (KVM, ``MACS``) in ``subnet``, and hypervisors hv1 and hv2 pointed at ``ctl``."""
    for i, mac in enumerate(MACS):
        create(api, "vports", {"subnet_id": subnet["id"], "name": f"vm{i}", "mac": mac, "ips": [f"10.0.1.{10 + i}"],
                               "binding": {"flavour": "kvm", "iface_id": f"vm{i}"}})
    hv1, hv2 = lab.add_hypervisor("hv1"), lab.add_hypervisor("hv2")
    for hv in (hv1, hv2):
        hv.connect(ctl)
    return hv1, hv2


def vm1_pings_vm0(lab, api, ctl, vm1_on):
    """acme/web with ``kvm_pair``: vm0 on hv1, vm1 on hv``vm1_on`` pinging it, both switches connected and back within
    a second of each restart, not after OVS's 1, 2, 4, 8 s (docs/vrs.md). (hv1, hv2, vm0, vm1)."""
    _, _, subnet = acme_web(api)
    hv1, hv2 = kvm_pair(lab, ctl, api, subnet)
    vm0 = lab.add_vm(hv1, "vm0", mac=MACS[0], ip="10.0.1.10/24", vnic_id="vm0")
    vm1 = lab.add_vm((hv1, hv2)[vm1_on - 1], "vm1", mac=MACS[1], ip="10.0.1.11/24", vnic_id="vm1")
    for hv in (hv1, hv2):
        lab.wait_until(lambda: (s := switch_of(api, hv.name)) and s["openflow"]["connected"], timeout=15,
                       what=f"{hv.name} connected")
        hv.set_max_backoff(1000)
    lab.wait_until(lambda: vm1.ping("10.0.1.10"), timeout=15, what="vm1 pings vm0")
    return hv1, hv2, vm0, vm1


def restart_quietly(canopy):
    """Restart ``canopy``; assert that its stop re-placed, unbound and disconnected nothing (the log lines from
    SIGTERM to "Canopy stopped")."""
    since = canopy.log_path.stat().st_size
    canopy.restart()
    text = canopy.log_path.read_bytes()[since:].decode(errors="replace")
    stop = text[text.index("received SIGTERM: stopping"):text.index("Canopy stopped")]
    assert not STOP_MOVES.findall(stop), stop


def test_the_destination_takes_the_vm_at_its_first_packet_across_restarts_and_a_flood(lab):
    ctl = lab.add_controller_host("ctl1")
    canopy = lab.start_controller(ctl)
    api = canopy.api
    hv1, hv2, vm0, vm1 = vm1_pings_vm0(lab, api, ctl, vm1_on=1)

    dest = lab.add_vm(hv2, "vm0-in", mac=MACS[0], ip=None, vnic_id="vm0", paused=True)  # paused: sends nothing yet
    lab.wait_until(lambda: vport_of(api, "vm0")["migration"], timeout=10, what="the destination's port pending")
    assert vport_of(api, "vm0")["migration"]["pending"][0]["chassis"] == "hv2"
    assert ping_lost(vm1, "10.0.1.10", 2) == 0 and where(api, "vm0") == "hv1"

    restart_quietly(canopy)  # in the middle of the migration
    lab.wait_until(lambda: vport_of(api, "vm0")["migration"], timeout=15, what="both ports seen after the restart")
    assert where(api, "vm0") == "hv1"
    assert ping_lost(vm1, "10.0.1.10", 2) == 0

    vm0.exec("ip", "addr", "flush", "dev", "eth0", check=True)  # the source pauses ...
    dest.exec("ip", "addr", "add", "10.0.1.10/24", "dev", "eth0", check=True)  # ... and the VM resumes on hv2
    send(dest, rarp(MACS[0]), 5000)
    lab.wait_until(lambda: where(api, "vm0") == "hv2", timeout=10, what="vm0 active on hv2")
    status = api.get("/v1/status").json
    assert status["activation"]["activated"] == 1, status["activation"]
    assert vport_of(api, "vm0")["migration"]["pending"][0]["chassis"] == "hv1"  # the source: standby now
    lab.wait_until(lambda: vm1.ping("10.0.1.10"), timeout=10, what="vm1 reaches vm0 on hv2")
    assert ping_lost(vm1, "10.0.1.10", 2) == 0
    print("activation flood: event loop lag", status["event_loop_lag"], "activation", status["activation"])

    restart_quietly(canopy)  # post-copy: the source's port is still there
    lab.wait_until(lambda: vport_of(api, "vm0")["migration"], timeout=15, what="both ports seen after the restart")
    assert where(api, "vm0") == "hv2"
    assert ping_lost(vm1, "10.0.1.10", 2) == 0

    hv1.vsctl("--if-exists", "del-port", "br-int", vm0.port)  # libvirt removes the source's port at the end
    lab.wait_until(lambda: vport_of(api, "vm0")["migration"] is None, timeout=10, what="the migration over")
    assert where(api, "vm0") == "hv2" and ping_lost(vm1, "10.0.1.10", 1) == 0


def test_a_restart_whose_source_hypervisor_stays_away_places_the_vm_at_its_destination_when_the_hold_ends(lab):
    ctl = lab.add_controller_host("ctl1")
    canopy = lab.start_controller(ctl, {"restart": {"hold_time": HOLD}})
    api = canopy.api
    hv1, hv2, vm0, vm1 = vm1_pings_vm0(lab, api, ctl, vm1_on=2)  # vm1 on hv2: hv1 goes with the controller
    dest = lab.add_vm(hv2, "vm0-in", mac=MACS[0], ip=None, vnic_id="vm0", paused=True)
    lab.wait_until(lambda: vport_of(api, "vm0")["migration"], timeout=10, what="the destination's port pending")
    assert where(api, "vm0") == "hv1"

    canopy.stop()
    hv1.vsctl("del-manager")  # hv1 went with the controller (to the controller: it never comes back) ...
    hv1.vsctl("del-controller", "br-int")
    vm0.exec("ip", "addr", "flush", "dev", "eth0", check=True)
    dest.exec("ip", "addr", "add", "10.0.1.10/24", "dev", "eth0", check=True)  # ... and the VM runs on hv2
    canopy.start()
    seen = []

    def released():
        at = where(api, "vm0")  # (before the hold's state: a location seen while it said syncing was given in it)
        seen.append((api.get("/v1/status").json["startup_hold"]["state"], at))
        return seen[-1] == ("synced", "hv2")

    lab.wait_until(released, timeout=HOLD + 30, interval=0.2, what="the hold over, vm0 placed at hv2")
    holding = [at for state, at in seen if state == "syncing"]
    assert holding and set(holding) == {None}, seen  # waiting for hv1, its stored active port's switch
    lab.wait_until(lambda: vm1.ping("10.0.1.10"), timeout=10, what="vm1 reaches vm0 on hv2")
    assert ping_lost(vm1, "10.0.1.10", 2) == 0
