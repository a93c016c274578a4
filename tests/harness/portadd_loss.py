"""Does adding a port on a hypervisor lose a packet in flight through it? ``python -m tests.harness.portadd_loss
[TRIALS [KINDS]]`` (as root, from the repository): one controller, VMs a1 (hva) and b1 (hvb) in one subnet; per trial
1500 pings at 1 ms from b1 to a1 while, 0.4 s in, hva gets

- ``a``: vport a2 of another subnet of the domain (Canopy binds it and adds its flows),
- ``b``: a port whose iface-id Canopy does not know (Canopy sends no flow-mod: counted with an OpenFlow monitor),
- ``c``: nothing (control),
- ``d``: a veth pair in hva's namespace that is no port of OVS (the kernel and OVS's netlink listeners see a link
  appear; the datapath gets no port),
- ``e``: the same in a namespace of its own (no hypervisor's: does the kernel lose it anywhere?),
- ``f``: no link at all: an IPv4 route added to hva's kernel and removed again, 20 times (what Open vSwitch does on
  any route, address or link change in its namespace: docs/vrs.md, "Route and link changes on a hypervisor").

Prints per trial the requests that never reached a1 (sent - a1's InEchos), the lost replies with their time after
the port's addition began, the counters that moved on hva and hvb where Open vSwitch loses a tunnelled packet
(tests.harness.path_evidence: ``Udp:NoPorts``, a VXLAN packet handed to the kernel instead of decapsulated), and the
flow-mods hva received around it. Figures: docs/vrs.md."""

from __future__ import annotations

import calendar
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.harness import netns
from tests.harness.lab import Lab
from tests.harness.path_evidence import PathEvidence
from tests.integration.test_federation import VPORTS, policy

MACS = {v["name"]: v["mac"] for v in VPORTS}
COUNT, START = 1500, 0.4


def lost_replies(out: str, sent: int, added: float) -> list[tuple[int, float]]:
    """(seq, seconds after the addition began that its neighbour's reply came) for each unanswered request."""
    stamps = {int(m.group(2)): float(m.group(1)) for m in re.finditer(r"\[([\d.]+)\].*icmp_seq=(\d+)", out)}
    where = []
    for seq in sorted(set(range(1, sent + 1)) - set(stamps)):
        near = [stamps[s] for s in (seq - 1, seq + 1) if s in stamps]
        where.append((seq, round(min(near, default=0) - added, 4)))
    return where


def trial(b1, a1, add):
    """Pings from b1 to a1 around ``add()``: (port added or None, its window, sent, replies, requests a1 got, ping's
    output, the counters that moved on the hypervisors)."""
    before = a1.icmp_counters()["InEchos"]
    evidence = PathEvidence([b1.hv, a1.hv])
    ping = subprocess.Popen(["ip", "netns", "exec", b1.ns, "ping", "-n", "-D", "-i", "0.001", "-c", str(COUNT),
                             "10.0.1.11"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(START)
    started = time.time()
    vm = add()
    window = (started, time.time())
    out = ping.communicate(timeout=60)[0]
    sent = int(re.search(r"(\d+) packets transmitted", out).group(1))
    got = int(re.search(r"(\d+) received", out).group(1))
    return vm, window, sent, got, a1.icmp_counters()["InEchos"] - before, out, evidence.moved()


def flow_mod_times(log: Path) -> list[float]:
    """The wall-clock time of every flow added, modified or deleted in an ``ovs-ofctl --timestamp monitor`` log."""
    times, stamp = [], 0.0
    for line in log.read_text().splitlines():
        m = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:[\d.]+): OFPST", line)
        if m:
            day, fraction = m.group(1).split(".")
            stamp = calendar.timegm(time.strptime(day, "%Y-%m-%d %H:%M:%S")) + float(f"0.{fraction}")  # UTC
        elif "event=" in line and "INITIAL" not in line:
            times.append(stamp)
    return times


def veth(ns: str, number: int):
    """A veth pair, up, in namespace ``ns`` and no port of any switch; returns what deletes it."""
    netns.ip(ns, "link", "add", f"vd{number}", "type", "veth", "peer", "name", f"ve{number}")
    netns.ip(ns, "link", "set", f"vd{number}", "up")
    return lambda: netns.ip(ns, "link", "del", f"vd{number}")


def route_flaps(ns: str, times: int = 20) -> None:
    """An IPv4 route (TEST-NET-1, through mgmt0) added to and removed from namespace ``ns``'s kernel ``times``
    times: no link, address or port changes."""
    for _ in range(times):
        netns.ip(ns, "route", "add", "192.0.2.0/24", "dev", "mgmt0")
        netns.ip(ns, "route", "del", "192.0.2.0/24", "dev", "mgmt0")


def main(trials: int, kinds: str) -> None:
    with Lab() as lab:
        ctl = lab.add_controller_host("ctl")
        canopy = lab.start_controller(ctl)
        reply = canopy.api.post("/v1/apply", {"document": policy([dict(v) for v in VPORTS]), "source": "portadd"})
        assert reply.status == 200, reply.text
        hva, hvb = lab.add_hypervisor("hva", "kvm"), lab.add_hypervisor("hvb", "kvm")
        hva.connect(ctl)
        hvb.connect(ctl)
        a1 = lab.add_vm(hva, "a1", mac=MACS["a1"], ip="10.0.1.11/24", vnic_id="a1")
        b1 = lab.add_vm(hvb, "b1", mac=MACS["b1"], ip="10.0.1.21/24", vnic_id="b1")
        lab.wait_until(lambda: b1.ping("10.0.1.11", timeout=2), timeout=60, what="b1 to a1")
        monitor_log = lab.workdir / "hva-monitor.log"
        monitor = subprocess.Popen(["ip", "netns", "exec", hva.ns, "ovs-ofctl", "-O", "OpenFlow14", "--timestamp",
                                    "monitor", f"unix:{hva.ovs.rundir}/br-int.mgmt", "watch:"],
                                   stdout=monitor_log.open("w"), stderr=subprocess.STDOUT,
                                   env={**os.environ, "OVS_RUNDIR": str(hva.ovs.rundir)})
        adds = {"a": lambda i: lab.add_vm(hva, "a2", mac=MACS["a2"], ip="10.0.2.11/24", vnic_id="a2"),
                "b": lambda i: lab.add_vm(hva, f"x{i}", ip="10.0.9.9/24", vnic_id=f"unknown{i}"),
                "c": lambda i: None,
                "d": lambda i: veth(hva.ns, i),
                "e": lambda i: veth(spare, i),
                "f": lambda i: route_flaps(hva.ns)}
        adds = {kind: adds[kind] for kind in kinds}
        spare = lab.add_namespace("spare")
        results = []
        try:
            for i in range(trials):
                for kind, add in adds.items():
                    vm, window, sent, got, reached, out, counts = trial(b1, a1, lambda: add(i))
                    results.append((kind, window, sent - reached, reached - got, lost_replies(out, sent, window[0])))
                    print(kind, i, f"plug {window[1] - window[0]:.3f}s", "requests lost", sent - reached,
                          "replies lost", reached - got, results[-1][-1], "counters moved", counts, flush=True)
                    if callable(vm):
                        vm()
                    elif vm is not None:
                        lab.remove_vm(vm)
                    time.sleep(0.5)
        finally:
            monitor.terminate()
            monitor.wait(timeout=10)
        mods = flow_mod_times(monitor_log)
        for kind in adds:
            rows = [r for r in results if r[0] == kind]
            near = sum(1 for _, (start, _end), *_ in rows for t in mods if start - 0.05 <= t <= start + 1.5)
            print(f"{kind}: {sum(1 for r in rows if r[2] or r[3])} of {len(rows)} trials lost a packet "
                  f"({sum(r[2] for r in rows)} requests, {sum(r[3] for r in rows)} replies); "
                  f"{near} flow-mods on hva within 1.5 s of the additions")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10, sys.argv[2] if len(sys.argv) > 2 else "abc")
