"""The figures of a port_to_ping round (tests/benchmarks/port_to_ping.py) besides the ping times: per sample, when the
controller's log shows its vport bound, its programming passes and change sets, and the ofport OVSDB gave after the
switch's PORT_STATUS; and the summary line of a list of times (median, p95, min, max)."""

from __future__ import annotations

import re
import statistics
from datetime import datetime

from tests.benchmarks.health import percentile


def bound_times(lines: list[str], walls: list[float]) -> tuple[list[float], list[float]]:
    """Seconds from each sample's add-port to the first and the last 'vport ... sample<k> bound at' line of the
    controller's log (its timestamps have millisecond resolution; the second line comes when OVS has given the
    port its ofport)."""
    first, last = [], []
    for k, wall in enumerate(walls):
        stamps = []
        for line in lines:
            if f"/sample{k} bound at " in line:
                stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                if stamp >= wall - 0.002:
                    stamps.append(stamp - wall)
        if stamps:
            first.append(max(0.0, stamps[0]))
            last.append(max(0.0, stamps[-1]))
    return first, last


def log_stamp(line: str) -> float:
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def pass_timings(lines: list[str], walls: list[float], firsts: list[float], dpids: dict) -> dict[str, list[float]]:
    """From the controller's debug lines (controller/programloop.py, openflow/reconciler.py), per Canopy sample,
    between its add-port and its first reply: the programming passes' refresh and hand-out time summed, and per
    switch when its last change set was confirmed (from the add-port) and how long the switch took to confirm it
    after sending began, and the controller's reaction: from logging the vport bound with its ofport to
    beginning to send kvm1's change set (seconds)."""
    out: dict[str, list[float]] = {"refresh": [], "hand_out": []}
    passes = re.compile(r"programming pass \d+: refresh ([\d.]+) ms .* handed out in ([\d.]+) ms")
    change = re.compile(r"dpid=(\w+) change set of \d+ messages planned in ([\d.]+) ms, confirmed by the switch "
                        r"([\d.]+) ms")
    for k, (wall, first) in enumerate(zip(walls, firsts)):
        refresh = hand = 0.0
        bound = None
        confirmed: dict[str, tuple[float, float, float]] = {}
        for line in lines:
            if not line[:4].isdigit():
                continue
            stamp = log_stamp(line) - wall
            if not -0.002 <= stamp <= first + 0.002:
                continue
            if f"/sample{k} bound at " in line:
                bound = stamp
            elif m := passes.search(line):
                refresh += float(m.group(1)) / 1000
                hand += float(m.group(2)) / 1000
            elif m := change.search(line):
                confirmed[m.group(1)] = (max(0.0, stamp), float(m.group(3)) / 1000, float(m.group(2)) / 1000)
        out["refresh"].append(refresh)
        out["hand_out"].append(hand)
        for name, dpid in dpids.items():
            if dpid in confirmed:
                out.setdefault(f"{name} confirmed", []).append(confirmed[dpid][0])
                out.setdefault(f"{name} switch took", []).append(confirmed[dpid][1])
                out.setdefault(f"{name} planned in", []).append(confirmed[dpid][2])
        kvm1 = confirmed.get(dpids.get("kvm1"))
        if kvm1 is not None and bound is not None:
            out.setdefault("bound with ofport -> kvm1 sending", []).append(max(0.0, kvm1[0] - kvm1[1] - bound))
    return out


def ofport_leads(lines: list[str], ports: list[str], walls: list[float], within: float) -> list[float]:
    """Per Canopy sample whose port was numbered by the switch's PORT_STATUS (controller/ofports.py): how much
    later OVSDB gave the same ofport (seconds, from the controller's debug line, at most ``within`` s after the
    sample's add-port)."""
    lead = re.compile(r"port (\S+): OVSDB gave ofport \d+ ([\d.]+) ms after the switch")
    out = []
    for port, wall in zip(ports, walls):
        for line in lines:
            m = lead.search(line)
            if m and m.group(1) == port and line[:4].isdigit() and 0 <= log_stamp(line) - wall <= within:
                out.append(float(m.group(2)) / 1000)
                break
    return out


def summary(label: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"  {label:44} n={len(ms):3d}  median {statistics.median(ms):8.1f}  p95 {percentile(ms, 95):8.1f}  "
            f"min {min(ms):8.1f}  max {max(ms):8.1f}  ms")
