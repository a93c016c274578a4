"""OpenFlow meters bound what one VM can send to the controller (openflow/meters.py, docs/vrs.md "Packets to the
controller"), with real Open vSwitch (its userspace datapath's meters), real frames and a real DHCP client.

vm0 migrates from hv1 to hv2: its first frame on hv2 activates it there, and its port on hv1 becomes the standby
(its frames go to the controller, which moves the vport back at most once per ACTIVATION_HOLD, 2 s). Within that
hold vm0 floods from the standby port: every frame is punted, through hv1's activation meter (30 packets/s, burst
30). Meanwhile vm1, on the same switch, gets its DHCP lease (its requests go through the dhcp meter, which the
flood does not touch). The packet-ins the controller counted for hv1's activation meter stay within the meter's
burst and rate over the flood, and Open vSwitch's meter stats show the rest dropped.

Why real parts: what is proven is Open vSwitch's datapath dropping over the rate before the controller queue, with
the meters and flows Canopy installed, and a real client's lease through them. About 8 s (a controller, two
hypervisors)."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest

from openflow import meters
from tests.harness.policy import create
from tests.integration.test_foundation import switch_of
from tests.integration.test_migration_activation import MACS, SEND, rarp, send, vport_of, where
from tests.integration.test_overlay import dhcp

pytestmark = pytest.mark.integration

FLOOD_SECONDS = 1.2  # within ACTIVATION_HOLD (2 s) after the activation: every frame of the standby port punted
ACTIVATION = meters.IDS["activation"]
FLOOD = SEND.replace("for _ in range(int(sys.argv[2])):\n", "import time\nn, end = 0, time.monotonic() + "
                     "float(sys.argv[2])\nwhile time.monotonic() < end:\n    n += 1\n") + "print(n)\n"


def meter_stats(hv, meter_id: int) -> tuple[int, int]:
    """(packets that entered the meter, packets its drop band dropped) on ``hv``'s br-int."""
    text = hv.ofctl("meter-stats", "br-int", f"meter={meter_id}")
    entered = int(re.search(r"packet_in_count:(\d+)", text).group(1))
    dropped = int(re.search(r"0: packet_count:(\d+)", text).group(1))
    return entered, dropped


def test_a_flood_to_the_controller_is_bounded_by_its_meter_and_another_vms_dhcp_still_gets_its_lease(lab):
    ctl = lab.add_controller_host("ctl1")
    canopy = lab.start_controller(ctl)
    api = canopy.api
    tenant = create(api, "tenants", {"name": "acme"})
    domain = create(api, "domains", {"tenant_id": tenant["id"], "name": "prod"})
    subnet = create(api, "subnets", {"tenant_id": tenant["id"], "domain_id": domain["id"], "name": "web",
                                     "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", "dhcp": {"lease_time": 600}})
    for i, mac in enumerate(MACS):
        create(api, "vports", {"subnet_id": subnet["id"], "name": f"vm{i}", "mac": mac, "ips": [f"10.0.1.{10 + i}"],
                               "binding": {"flavour": "kvm", "iface_id": f"vm{i}"}})
    hv1, hv2 = lab.add_hypervisor("hv1"), lab.add_hypervisor("hv2")
    for hv in (hv1, hv2):
        hv.connect(ctl)
    vm0 = lab.add_vm(hv1, "vm0", mac=MACS[0], ip="10.0.1.10/24", vnic_id="vm0")
    vm1 = lab.add_vm(hv1, "vm1", mac=MACS[1], ip=None, vnic_id="vm1")  # its address from DHCP, during the flood
    for hv in (hv1, hv2):
        try:
            lab.wait_until(lambda: (s := switch_of(api, hv.name)) and (s["sync"] or {}).get("state") == "in_sync",
                           timeout=30, what=f"{hv.name} in sync")
        except AssertionError:
            print(f"{hv.name} not in sync: {switch_of(api, hv.name)}")
            raise
    meters_of = switch_of(api, "hv1")["sync"]["meters"]
    assert meters_of == {"supported": True, "desired": 3, "installed": 3, "rejected": 0, "warning": None}
    dumped = hv1.ofctl("dump-meters", "br-int")
    assert re.search(rf"meter={ACTIVATION}\s+pktps\s+burst\s+stats\s+bands=\s+type=drop\s+rate=30\s+burst_size=30", dumped), \
        dumped

    dest = lab.add_vm(hv2, "vm0-in", mac=MACS[0], ip=None, vnic_id="vm0", paused=True)
    lab.wait_until(lambda: vport_of(api, "vm0")["migration"], timeout=10, what="the destination's port pending")
    send(dest, rarp(MACS[0]), 1)  # the VM resumes on hv2: hv1's port becomes the standby, held there 2 s
    lab.wait_until(lambda: where(api, "vm0") == "hv2", timeout=10, what="vm0 active on hv2")
    lab.wait_until(lambda: f"meter:{ACTIVATION}" in hv1.ofctl("dump-flows", "br-int", "table=0"), timeout=5,
                   what="hv1's port the standby, through the activation meter")
    before = switch_of(api, "hv1")["sync"]["packet_ins"]["activation"]
    entered0, dropped0 = meter_stats(hv1, ACTIVATION)

    client = subprocess.Popen(["ip", "netns", "exec", vm0.ns, sys.executable, "-c", FLOOD, rarp(MACS[0]).hex(),
                               str(FLOOD_SECONDS)], stdout=subprocess.PIPE, text=True)
    started = time.monotonic()
    try:
        lease = dhcp(lab, vm1, timeout=15)  # udhcpc in vm1 while vm0 floods
        sent = int(client.communicate(timeout=30)[0])
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(5)
    flooded = time.monotonic() - started
    assert lease.get("ip") == "10.0.1.11", lease

    last = [None]

    def settled():  # the meter's counts the same at two polls in a row (lab.wait_until polls every 0.1 s)
        now = meter_stats(hv1, ACTIVATION)
        done, last[0] = now == last[0], now
        time.sleep(0.2)
        return now if done else None

    entered, dropped = (a - b for a, b in zip(lab.wait_until(settled, timeout=5, what="the meter's counts settled"),
                                              (entered0, dropped0)))
    punted = lab.wait_until(lambda: (n := switch_of(api, "hv1")["sync"]["packet_ins"]["activation"] - before) and
                            n >= entered - dropped and n, timeout=5, what="the controller counted what passed")
    bound = 30 + 30 * (flooded + 1)  # the burst, and the rate over the flood (a second's margin)
    print(f"punt meter: {sent} frames in {flooded:.2f} s, {entered} entered the meter, {dropped} dropped, "
          f"{punted} packet-ins at the controller (bound {bound:.0f})")
    # the flood went through the meter (its end may come after the hold: the vport moved back, the frames delivered)
    assert entered > 10 * bound
    assert punted <= bound and dropped >= entered - bound
    assert where(api, "vm0") in ("hv1", "hv2")
