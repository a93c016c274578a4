"""What the VRS scale benchmark (tests/benchmarks/vrs_scale.py) reads besides REST: each switch's sync state and
messages sent from a controller's /metrics, its process's figures from /proc (peak RSS, CPU seconds, niceness, its
event loop's time on and waiting for a CPU), the machine's busy CPU seconds, the kernel's neighbour table overflows,
and py-spy profiles of a phase."""

from __future__ import annotations

import gc
import os
import re
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from tests.harness import netns
from tests.harness.process import autogroup_nice

if TYPE_CHECKING:
    from tests.benchmarks.ha_takeover import Node


_SAMPLE = re.compile(r'^(\w+)\{([^}]*)\} (\S+)$')
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def switches(node: Node) -> dict[str, dict] | None:
    """{datapath: {state, pending, flow_mods, group_mods, meter_mods, read_backs}} from the controller's /metrics, or
    None while it does not answer."""
    try:
        reply = node.proc.api.get("/metrics")
    except Exception:  # noqa: BLE001 - a starting or busy controller answers nothing
        return None
    if reply.status != 200:
        return None
    out: dict[str, dict] = {}
    for line in reply.text.splitlines():
        found = _SAMPLE.match(line)
        if not found or not found.group(1).startswith("canopy_switch_"):
            continue
        name, labels, value = found.group(1), dict(_LABEL.findall(found.group(2))), float(found.group(3))
        if "datapath" not in labels:
            continue
        sw = out.setdefault(labels["datapath"], {"state": None, "pending": 0, "flow_mods": 0, "group_mods": 0,
                                                 "meter_mods": 0, "read_backs": 0})
        kind = labels.get("kind", "")
        if name == "canopy_switch_sync_state" and value:
            sw["state"] = labels["state"]
        elif name == "canopy_switch_flows" and kind == "pending":
            sw["pending"] = int(value)
        elif name.startswith("canopy_switch_messages_sent"):
            mods = f"{kind.split('_')[0]}_mods"  # flow_add: flow_mods, group_modify: group_mods, meter_delete: ...
            sw[mods] = sw.get(mods, 0) + int(value)
        elif name.startswith("canopy_switch_read_backs"):
            sw["read_backs"] = int(value)
    return out


def sent(sws: dict[str, dict]) -> dict:
    return {kind: sum(s[kind] for s in sws.values()) for kind in ("flow_mods", "group_mods", "meter_mods")}


def peak_rss_mb(node: Node) -> float | None:
    """The controller process's peak resident set (VmHWM), MB."""
    try:
        text = open(f"/proc/{node.proc.pid}/status").read()
    except OSError:
        return None
    found = re.search(r"^VmHWM:\s+(\d+) kB", text, re.M)
    return round(int(found.group(1)) / 1024, 1) if found else None


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (0 when it is gone)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def niceness(pid: int) -> list:
    """[nice, the nice of its scheduling group] of process ``pid`` (None for what it does not have)."""
    try:
        return [os.getpriority(os.PRIO_PROCESS, pid), autogroup_nice(pid)]
    except OSError:
        return [None, None]


def loop_thread(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of process ``pid``'s main thread, the controller's
    event loop (the kernel's schedstat; (0, 0) when it is gone): the wait is the wall-clock lag no work of the
    controller's caused (controller/lagcause.py)."""
    try:
        on_cpu, waited = open(f"/proc/{pid}/task/{pid}/schedstat").read().split()[:2]
    except (OSError, ValueError):
        return 0.0, 0.0
    return int(on_cpu) / 1e9, int(waited) / 1e9


_IPV4_AT_START = re.compile(r"^(\d+\.\d+\.\d+\.\d+)\s", re.M)  # an entry of tnl/neigh/show or ip neigh


def unresolved(hvs) -> dict:
    """The hypervisor pairs whose asker's tunnel neighbour cache (``tnl/neigh/show``) lacks the far side's VTEP:
    {"pairs": how many, "askers": distinct askers, "fars": distinct far sides, "far_kernel_knows": of the pairs,
    those whose far side's kernel holds an entry for the asker on br-phy}. A kernel makes such an entry when an ARP
    request for its own address comes from the asker (Open vSwitch sends the requests, so the far kernel makes none
    of its own): the request got there, and the reply was lost on the way back or not taken in. Entries idle for a
    minute may have been collected meanwhile: a pair not counted there is no proof its request was lost."""
    kernel = {hv.vtep_ip: set(_IPV4_AT_START.findall(netns.ip(hv.ns, "-4", "neigh", "show", "dev", "br-phy")))
              for hv in hvs}
    pairs = []
    for hv in hvs:
        held = set(_IPV4_AT_START.findall(hv.ovs.appctl("tnl/neigh/show")))
        pairs += [(hv, far) for far in hvs if far is not hv and far.vtep_ip not in held]
    return {"pairs": len(pairs), "askers": len({hv.name for hv, _ in pairs}),
            "fars": len({far.name for _, far in pairs}),
            "far_kernel_knows": sum(hv.vtep_ip in kernel[far.vtep_ip] for hv, far in pairs)}


def neighbour_table_fulls(path: str = "/proc/net/stat/arp_cache") -> int:
    """How often since boot the kernel's IPv4 neighbour table, shared by every namespace, was too full for a new
    entry (``table_fulls``, summed over the per-CPU rows of ``path``, in hex): each time an ARP request for a lab
    host's own address went unanswered (tests.harness.neighbour_table)."""
    head, *rows = open(path).read().split("\n")
    column = head.split().index("table_fulls")
    return sum(int(row.split()[column], 16) for row in rows if row.strip())


FIXED_WORK_ROUNDS = 300_000


def fixed_work_ms(rounds: int = FIXED_WORK_ROUNDS) -> float:
    """CPU milliseconds this process takes for a fixed piece of pure-Python work (tuples hashed into a dict and
    looked up, as much of the controller's work is): the machine's speed at that moment. A CPU second of this shared
    virtual machine is not a fixed amount of work: the same controller code took 30-40 % more CPU in every phase at
    stop 36 than at stop 35's end, and so did GoBGP's own baseline, which runs no Canopy code (docs/benchmarks.md,
    "restart CPU, stop 37"). Two runs' CPU figures compare only at about the same speed."""
    collecting = gc.isenabled()
    gc.disable()  # the cyclic collector's passes over this process's own heap (which grows with the run) not counted
    try:
        started = time.thread_time()
        table = {}
        for i in range(rounds):
            table[(i & 1023, i)] = i
        hits = sum(1 for i in range(rounds) if (i & 1023, i) in table)
        used = time.thread_time() - started
    finally:
        if collecting:
            gc.enable()
    assert hits == rounds
    return round(used * 1000, 1)


def machine_busy() -> float:
    """CPU seconds every core of the machine spent not idle, since boot."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")

class Spy:
    """``py-spy record`` of one controller process for one phase (``--profile DIR``): raw collapsed stacks in
    DIR/<phase>.txt, and DIR/<phase>-top.txt with the functions holding the most samples (self and total)."""

    def __init__(self, lab, node: Node, directory: str | None, phase: str):
        self.child, self.path = None, None
        if directory:
            os.makedirs(directory, exist_ok=True)
            self.path = os.path.join(directory, f"{phase}.txt")
            spy = os.path.join(os.path.dirname(sys.executable), "py-spy")
            self.child = lab.spawn(f"py-spy-{phase}", [spy, "record", "--pid", str(node.proc.pid), "--rate", "100",
                                                       "--nonblocking", "--format", "raw", "-o", self.path],
                                   lab.workdir / f"py-spy-{phase}.log")

    def stop(self) -> None:
        if self.child is None:
            return
        self.child.send(signal.SIGINT)
        try:
            self.child.popen.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.child.send(signal.SIGKILL)
            self.child.popen.wait(timeout=5)
        if os.path.exists(self.path):
            with open(self.path.replace(".txt", "-top.txt"), "w") as out:
                out.write(top_frames(self.path))


def top_frames(path: str, count: int = 40) -> str:
    """The functions with the most samples in py-spy's raw output: self (the stack's leaf) and total."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in open(path, errors="replace"):
        stack, _, n = line.rstrip("\n").rpartition(" ")
        if not n.isdigit():
            continue
        frames = stack.split(";")
        samples += int(n)
        own[frames[-1]] = own.get(frames[-1], 0) + int(n)
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + int(n)
    lines = [f"{samples} samples (CPU only)", "self:"]
    lines += [f"  {n:7d} {n / max(samples, 1):6.1%}  {f}"
              for f, n in sorted(own.items(), key=lambda kv: -kv[1])[:count]]
    lines.append("total:")
    lines += [f"  {n:7d} {n / max(samples, 1):6.1%}  {f}"
              for f, n in sorted(total.items(), key=lambda kv: -kv[1])[:count]]
    return "\n".join(lines) + "\n"
