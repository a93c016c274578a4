"""Canopy with many real VRS and thousands of bound vports: cold start, restart read-back, HA takeover.

    .venv/bin/python -m tests.benchmarks.vrs_scale                      # --vrs 50 --vports 5000
    .venv/bin/python -m tests.benchmarks.vrs_scale --vrs 5 --vports 500  # a couple of minutes
    .venv/bin/python -m tests.benchmarks.vrs_scale --profile /tmp/prof --logs /tmp/logs   # py-spy, keep the logs
    .venv/bin/python -m tests.benchmarks.vrs_scale --stretches 12 --code /tmp/main   # longest stretches; main's code

Setup (tests.harness.lab, hypervisors as tests.benchmarks.ha_takeover builds them): one controller host; a
controller is started once with no switch, the policy is applied (one tenant, one domain, /22 subnets of at most
700 vports each, ``--vports`` KVM vports) and it is stopped gracefully, so its store holds the policy and it
remembers no switch. Then ``--vrs`` KVM hypervisors (each its own ovsdb-server and userspace ovs-vswitchd), pointed
at that controller host, with the vports spread round-robin and bound cheaply as internal OVS ports on br-int
carrying their iface-id (50 per ovs-vsctl call, tests.benchmarks.port_to_ping.add_present_ports).

OVS reconnects to a controller that is down after 1, 2, 4 and then every 8 s. The hypervisors are set up as
docs/vrs.md says, with ``max_backoff`` 1000 ms on their Controller and Manager rows (``--max-backoff-ms``; 0: OVS's
default): ovsdb-server then retries every second; ovs-vswitchd 3.1.0 keeps 8 s for a controller it has not been
connected to since it started (fixed in OVS 3.1.3), so when the last switch comes back over OpenFlow after a cold
start is still partly OVS's doing: the report gives when every switch was connected, and Canopy's share after.

Phases, each timed from just before the controller process is started (or killed) until the condition, by polling
``/v1/status`` every 0.25 s and ``/metrics`` (per switch: reconciler state, pending flows, flow-mods sent,
read-backs) every 0.5 s, with bounded waits; "in sync" figures are late by up to 0.5 s. (Before FlowBook.counts
was cached, a scrape right after the read-backs cost about a second: 50 full diffs of 16,000 flows.)

(a) cold start: the controller starts with the policy and switches empty of Canopy's flows, until every switch is
    connected over OVSDB and OpenFlow, every vport bound, and every reconciler in sync with nothing pending.
(b) restart: SIGTERM, start again (the switches keep their flows), until the start-up hold is released, every
    switch read back and in sync; the flow-mods, group-mods and meter-mods it sent (target 0: the restart is hitless).
(c) HA takeover: the standalone controller stops; a pair (nodes a and b on two controller hosts, heartbeat and
    dead interval as ``--heartbeat-ms``/``--dead-ms``, the controller's defaults) starts with a fresh store, the
    policy is applied through a, every hypervisor is pointed at both, and the run waits until one node is active
    and in sync everywhere, the other's replica has caught up and it holds every switch as standby (role changes
    after the first election are listed: a spurious failover while the pair is loaded shows there), and until the
    standby's max lag of the last minute is below 100 ms (at most 90 s). Then the active is SIGKILLed, until the
    survivor is active and every switch is in sync on it (its reconcilers leave "standby" only after the switch
    confirmed MASTER); then OVS's Controller tables are checked to show it master everywhere (not timed: OVS
    writes them every 5 s). Flow-mods it sent from the kill.

Printed for each phase: the milestones (s), flow-mods, group-mods and meter-mods sent, the controller's peak RSS
(VmHWM), its max event-loop lag (tests.benchmarks.health; since start for (a) and (b), the last minute for (c)) and the
OpenFlow, OVSDB and HA disconnects in the controller's and every ovs-vswitchd's log during the phase (for (c), the
ovs-vswitchd lines about the survivor only: the killed node's connections end by design), and the machine's speed
before and after the phase (vrs_scale_probes.fixed_work_ms: a CPU second of a shared VM is not a fixed amount of
work). With the machine line and load averages. ``--stretches N``: also each phase's N longest stretches of the controller's CPU between two
turns of its event loop (controller/stretchtrace.py; for (c) the survivor's, from the kill). After (a): when every
hypervisor's tunnel neighbour cache held every other VTEP (the tunnel probes' work, polled each second for at most
120 s; else how many entries it held) with the CPU until then, the upcalls of every ovs-vswitchd so far, and how
often the kernel's neighbour table, which every namespace shares, was too full to answer an ARP request.

The lab's 100 OVS daemons share the controller's CPUs, where real hypervisors have their own. ``--controller-cpu-weight
W`` runs the controllers in a CPU cgroup of their own with systemd's ``CPUWeight=W`` (tests/harness/cpugroup.py; what
deploy/systemd/canopy.service gives it), ``--controller-nice N`` at nice N with their session's scheduling group,
``--ovs-nice N`` the OVS daemons at nice N, ``--ovs-cpu-weight W`` all of them in one CPU cgroup of weight W (each
detaches into a session of its own: where the kernel groups processes by session, 100 daemons weigh as 100 groups
and outweigh a controller's weight of 1000 ten to one, where under systemd a host's OVS is one service); each phase
prints the controller's nice, its group's and its cgroup's weight, and the event loop's thread's seconds on a CPU and
runnable waiting for one.

Needs root and Open vSwitch, like the integration tests. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
import shutil
import sys
import time

from tests.benchmarks import health
from tests.benchmarks.ha_takeover import Node, ha_settings, machine, progress
from tests.benchmarks.port_to_ping import add_present_ports
from tests.benchmarks.takeover_witness import ControllerTable, connected_as
from tests.benchmarks.vrs_scale_report import PHASES, phase_lines, report
from tests.benchmarks.vrs_scale_probes import (Spy, cpu_seconds, fixed_work_ms, loop_thread, machine_busy,
                                               neighbour_table_fulls, niceness, peak_rss_mb, sent, switches,
                                               unresolved)
from tests.harness import cpugroup
from tests.harness.cpugroup import CpuGroupError, cpu_group_of
from tests.harness.hosts import BR_INT
from tests.harness.lab import Lab
from tests.harness.process import renice

PER_SUBNET = 700
FIRST_NET = ipaddress.IPv4Network("10.40.0.0/22")
POLL = 0.25
METRICS_EVERY = 2  # polls: /metrics every 0.5 s (a scrape costs the controller a pass over every switch's record)
START_TIMEOUT = 120.0  # the controller answering /v1/status
APPLY_TIMEOUT = 300.0
QUIET_LAG_MS = 100.0  # b's max lag of the last minute before the kill (the setup's lag must leave the window)
QUIET_TIMEOUT = 90.0  # OVS's minimum max_backoff
RESOLVE_TIMEOUT = 120.0  # every tunnel neighbour resolved after a cold start's sync
_NEIGH = re.compile(r"^\d+\.\d+\.\d+\.\d+\s", re.M)  # an IPv4 entry of tnl/neigh/show


# ---------------------------------------------------------------------------------------------- policy and lab

def vports(n_vrs: int, total: int) -> list[dict]:
    """Vport i: on hypervisor i % n_vrs, in /22 subnet i // PER_SUBNET, iface-id = its name."""
    out = []
    for i in range(total):
        s, k = divmod(i, PER_SUBNET)
        net = subnet_net(s)
        out.append({"hv": i % n_vrs, "name": f"v{i}", "subnet": s, "ip": str(net.network_address + 10 + k),
                    "mac": f"02:5c:00:{i >> 16 & 0xff:02x}:{i >> 8 & 0xff:02x}:{i & 0xff:02x}"})
    return out


def subnet_net(s: int) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network((int(FIRST_NET.network_address) + (s << 10), 22))


def document(ports: list[dict]) -> dict:
    count = max(p["subnet"] for p in ports) + 1
    nets = [{"name": f"s{s}", "cidr": str(subnet_net(s)), "gateway": str(subnet_net(s).network_address + 1),
             "vports": []} for s in range(count)]
    for p in ports:
        nets[p["subnet"]]["vports"].append({"name": p["name"], "mac": p["mac"], "ips": [p["ip"]],
                                            "binding": {"flavour": "kvm", "iface_id": p["name"]}})
    return {"tenants": [{"name": "bench", "domains": [{"name": "dom", "subnets": nets}]}]}


def apply(node: Node, doc: dict) -> float:
    """POST /v1/apply through ``node``; seconds it took."""
    api = node.proc.api
    timeout, api.timeout = api.timeout, APPLY_TIMEOUT
    try:
        started = time.monotonic()
        reply = api.post("/v1/apply", {"document": doc, "source": "bench"})
    finally:
        api.timeout = timeout
    if reply.status != 200:
        raise AssertionError(f"apply through {node.name} failed: {reply.status} {reply.text[:300]}")
    return time.monotonic() - started


def connect(hv, controllers, max_backoff_ms: int) -> None:
    """Point ``hv`` at ``controllers`` as docs/vrs.md says: ``set-controller``/``set-manager``, then (unless
    ``max_backoff_ms`` is 0) ``max_backoff`` on every Controller and Manager row, so that OVS retries a controller
    that is down every second instead of every 8 s."""
    hv.connect(controllers)
    if max_backoff_ms:
        hv.set_max_backoff(max_backoff_ms)


# ---------------------------------------------------------------------------------------------- following a controller

class Follow:
    """Polls one controller until every switch is in sync, noting when each milestone was first seen (s after
    ``t0``). ``read_back``: also require a read-back of every switch by this process."""

    def __init__(self, node: Node, dpids: list[str], bound: int, t0: float, read_back: bool = False,
                 active: bool = False):
        self.node, self.dpids, self.bound, self.t0 = node, dpids, bound, t0
        self.read_back, self.active = read_back, active
        self.milestones: dict[str, float] = {}
        self.last: dict = {}
        self.switches: dict[str, dict] = {}
        self.polls = 0

    def _mark(self, name: str, reached: bool) -> bool:
        if reached and name not in self.milestones:
            self.milestones[name] = round(time.monotonic() - self.t0, 2)
        return reached

    def done(self) -> bool:
        status = self.node.get("/v1/status") or {}
        n = len(self.dpids)
        if self.active:
            self._mark(f"{self.node.name} active", status.get("role") == "active")
        self._mark("REST answers", bool(status))
        conns = status.get("switches") or {}
        self._mark("every switch connected over OVSDB", conns.get("ovsdb") == n)
        self._mark("every switch connected over OpenFlow", conns.get("openflow") == n)
        self._mark("every vport bound", status.get("vports_bound") == self.bound)
        self._mark("start-up hold released", (status.get("startup_hold") or {}).get("state") == "synced")
        self.polls += 1
        if self.polls % METRICS_EVERY:
            return False  # /metrics costs the controller a pass over every switch's flows: not every poll
        sws = switches(self.node) or {}
        self.switches = sws
        mine = [sws.get(d) for d in self.dpids]
        read = all(s and s["read_backs"] for s in mine)
        self._mark("every switch read back", read)
        synced = all(s and s["state"] == "in_sync" and not s["pending"] for s in mine)
        self.last = {"status": {k: status.get(k) for k in ("role", "switches", "vports_bound")},
                     "states": _count_states(mine)}
        ok = synced and conns.get("openflow") == n and status.get("vports_bound") == self.bound and \
            (read or not self.read_back) and (status.get("role") == "active" or not self.active)
        return self._mark("EVERY SWITCH IN SYNC", ok)

    def wait(self, lab, timeout: float, what: str) -> None:
        try:
            lab.wait_until(self.done, timeout, POLL, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last seen: {self.last}; milestones: {self.milestones}") from None


def _count_states(mine: list) -> dict:
    out: dict = {}
    for s in mine:
        key = s["state"] if s else "unknown"
        out[key] = out.get(key, 0) + 1
    return out


# ---------------------------------------------------------------------------------------------- the phases

class Scale:
    """The lab: controller hosts, hypervisors with their vports, the logs disconnects are counted in."""

    def __init__(self, lab, args):
        self.lab, self.args = lab, args
        self.ports = vports(args.vrs, args.vports)
        self.hosts = [lab.add_controller_host("ctla"), lab.add_controller_host("ctlb")]
        self.setup: dict[str, float] = {}
        t = time.monotonic()
        self.single = Node(self.hosts[0], lab.start_controller(self.hosts[0], name="canopy"))
        self.setup["policy applied (no switch)"] = round(apply(self.single, document(self.ports)), 1)
        self.single.proc.stop()
        self.setup["controller started, policy applied, stopped"] = round(time.monotonic() - t, 1)
        t = time.monotonic()
        self.hvs = []
        for h in range(args.vrs):
            hv = lab.add_hypervisor(f"hv{h:02d}", "kvm")
            connect(hv, self.hosts[0], args.max_backoff_ms)
            add_present_ports(hv, [p for p in self.ports if p["hv"] == h])
            self.hvs.append(hv)
            if (h + 1) % 10 == 0:
                progress(f"  {h + 1}/{args.vrs} hypervisors up ({time.monotonic() - t:.0f} s)")
        self.setup[f"{args.vrs} hypervisors, {args.vports} internal ports"] = round(time.monotonic() - t, 1)
        if args.ovs_nice:
            for pid in (c.pid for hv in self.hvs for c in hv.ovs.processes):
                renice(pid, args.ovs_nice)  # tests/harness/process.py
        self.dpids = [f"{hv.datapath_id():016x}" for hv in self.hvs]
        self.ovs_logs = [hv.ovs.rundir / "ovs-vswitchd.log" for hv in self.hvs]

    def cpu(self, node: Node | None = None) -> dict:
        """CPU seconds so far: the controller's (``node``), every OVS daemon's, the whole machine's."""
        ovs = [c.pid for hv in self.hvs for c in hv.ovs.processes]
        loop_cpu, loop_wait = loop_thread(node.proc.pid) if node else (0.0, 0.0)
        return {"controller": cpu_seconds(node.proc.pid) if node else 0.0, "ovs": sum(map(cpu_seconds, ovs)),
                "machine": machine_busy(), "wall": time.monotonic(), "loop_cpu": loop_cpu, "loop_wait": loop_wait}

    def phase(self, node: Node, follow: Follow, timeout: float, what: str, logs, ovs_filter=None,
              since=None, baseline=None, spy: Spy | None = None, cpu0: dict | None = None,
              speed: float | None = None) -> dict:
        spy = spy or Spy(self.lab, node, self.args.profile, what.split(":")[0].replace(" ", "-"))
        try:
            follow.wait(self.lab, timeout, what)
        finally:
            spy.stop()
        cpu1 = self.cpu(node)
        used = {k: round(cpu1[k] - v, 1) for k, v in (cpu0 or {}).items()}
        speeds = [speed, fixed_work_ms()]  # the machine's speed before the phase (the caller's) and after it
        now = sent(follow.switches)
        if baseline:
            now = {k: v - baseline[k] for k, v in now.items()}
        lag = health.lag_from_status(node.get("/v1/status")) or {}
        return {"milestones": follow.milestones, **now, "peak_rss_mb": peak_rss_mb(node), "cpu_s": used,
                "fixed_work_ms": speeds,
                "nice": niceness(node.proc.pid), "cpu_group": cpu_group_of(node.proc.pid),
                "stretches": self.stretches(node),
                "lag_max_ms": lag.get("max_ms"), "lag_max_1m_ms": lag.get("max_1m_ms"),
                "disconnects": health.disconnects(logs, self.ovs_logs, since=since, ovs_filter=ovs_filter)}

    def stretches(self, node: Node, reset: bool = False) -> dict | None:
        """``node``'s traced stretches (``--stretches``): ``GET /v1/stretches``, or ``DELETE`` to start over; None
        when not traced (or a controller without the tracer, ``--code``)."""
        if not self.args.stretches:
            return None
        try:
            reply = node.proc.api.delete("/v1/stretches") if reset else node.proc.api.get("/v1/stretches")
        except Exception:  # noqa: BLE001 - a busy controller: the figures go without its stretches
            return None
        return reply.json if reply.status == 200 else None

    def cold_start(self) -> dict:
        proc = self.single.proc
        since = health.log_offsets(proc.log_path, *self.ovs_logs)
        speed = fixed_work_ms()
        cpu0, fulls0 = self.cpu(), neighbour_table_fulls()
        t0 = time.monotonic()
        proc.start(START_TIMEOUT)
        follow = Follow(self.single, self.dpids, len(self.ports), t0)
        out = self.phase(self.single, follow, self.args.timeout, "cold start: every switch in sync",
                         [proc.log_path], since=since, cpu0=cpu0, speed=speed)
        out["resolved_s"] = resolved(self.hvs, t0, RESOLVE_TIMEOUT)
        out["upcalls"], out["table_fulls"] = upcalls(self.hvs), neighbour_table_fulls() - fulls0
        cpu1 = self.cpu(self.single)
        out["cpu_s_resolved"] = {k: round(cpu1[k] - v, 1) for k, v in cpu0.items()}
        return out

    def restart(self) -> dict:
        proc = self.single.proc
        proc.stop()
        since = health.log_offsets(proc.log_path)
        speed = fixed_work_ms()
        cpu0 = self.cpu()
        t0 = time.monotonic()
        proc.start(START_TIMEOUT)
        # OVS logs the stopped controller's connections as ended a moment after stop() returns: its logs are counted
        # from the new process's readiness (its own connections cannot have timed out on a 5 s probe by then)
        since.update(health.log_offsets(*self.ovs_logs))
        follow = Follow(self.single, self.dpids, len(self.ports), t0, read_back=True)
        return self.phase(self.single, follow, self.args.timeout, "restart: every switch read back, in sync",
                          [proc.log_path], since=since, cpu0=cpu0, speed=speed)

    def takeover(self) -> dict:
        """(c): the pair built and ready; SIGKILL of the active; the survivor active and in sync everywhere."""
        self.single.proc.stop()
        args, lab = self.args, self.lab
        for hv in self.hvs:  # the pair starts without switches, as tests.benchmarks.ha_takeover builds it
            hv.vsctl("del-controller", BR_INT, "--", "del-manager")
        t = time.monotonic()
        a_host, b_host = self.hosts
        procs = [lab.start_controller(host, ha_settings(name, other, prio, args.heartbeat_ms, args.dead_ms),
                                      name=f"canopy{name}")
                 for host, other, name, prio in ((a_host, b_host, "a", 200), (b_host, a_host, "b", 100))]
        a, b = (Node(host, proc) for host, proc in zip(self.hosts, procs))
        lab.wait_until(lambda: a.role() == "active" and b.role() == "standby", 60, 0.2, "a active, b standby")
        pair_logs = [a.proc.log_path, b.proc.log_path]
        pair_since = health.log_offsets(*pair_logs)
        self._apply_to_pair(a, b)
        for hv in self.hvs:
            connect(hv, list(self.hosts), args.max_backoff_ms)
        active, standby = lab.wait_until(lambda: _roles(a, b), args.timeout, POLL, "one node active, one standby")
        Follow(active, self.dpids, len(self.ports), t).wait(lab, args.timeout, f"pair: in sync on {active.name}")
        lab.wait_until(lambda: _caught_up(active, standby), args.timeout, POLL, "the standby's replica caught up")
        lab.wait_until(lambda: all(s and s["state"] == "standby" for s in
                                   ((switches(standby) or {}).get(d) for d in self.dpids)),
                       args.timeout, POLL, "the standby connected to every switch, holding")
        setup = round(time.monotonic() - t, 1)
        steady = health.disconnects(pair_logs, since=pair_since)
        changes = _role_changes(pair_logs, pair_since)
        quiet = _settle_lag(lab, standby)
        before = sent(switches(standby) or {})
        since = health.log_offsets(standby.proc.log_path, *self.ovs_logs)
        spy = Spy(lab, standby, args.profile, "takeover")
        speed = fixed_work_ms()
        cpu0 = self.cpu(standby)
        build = self.stretches(standby)  # the standby's from its start: its lag "since start" happened there
        self.stretches(standby, reset=True)  # the survivor's stretches of the takeover only
        t0 = time.monotonic()
        active.proc.kill()
        follow = Follow(standby, self.dpids, len(self.ports), t0, active=True)
        out = self.phase(standby, follow, args.timeout, "takeover: the survivor active, every switch in sync",
                         [standby.proc.log_path], ovs_filter=standby.host.ip, since=since, baseline=before, spy=spy,
                         cpu0=cpu0, speed=speed)
        out["disconnects"].pop("HA link (controller log)")  # the link to the killed node ends by design
        tables = [ControllerTable(lab, hv, lab.workdir / f"{hv.name}-controller-table.csv") for hv in self.hvs]
        master = connected_as(standby.target, "master")
        lab.wait_until(lambda: all(master(t.poll()) for t in tables), 60, 0.5,
                       "OVS's Controller tables showing the survivor master everywhere")
        out.update(pair_setup_s=setup, standby_before_kill=build, pair_disconnects_before_kill=steady,
                   pair_role_changes_before_kill=changes,
                   controller_tables=f"{standby.name} master everywhere", lag_before_kill_1m_ms=quiet,
                   killed=active.name, survivor=standby.name)
        return out


    def _apply_to_pair(self, a: Node, b: Node, tries: int = 3) -> None:
        """The policy applied through whichever node is active (a role change during the apply, or the standby
        not confirming it in time on a loaded machine, when nothing was changed: again)."""
        for attempt in range(tries):
            active, _ = self.lab.wait_until(lambda: _roles(a, b), self.args.timeout, POLL, "one node active")
            try:
                apply(active, document(self.ports))
                return
            except AssertionError as exc:
                if attempt == tries - 1 or not any(code in str(exc) for code in ("not_active", "not_replicated")):
                    raise
                progress(f"  {exc}; again")


def resolved(hvs, t0: float, timeout: float) -> dict:
    """When every hypervisor's tunnel neighbour cache (``ovs-appctl tnl/neigh/show``) held every other one's VTEP (the
    tunnel probes' work: docs/vrs.md), polled each second: {"s": seconds after ``t0`` or None if not within
    ``timeout``, "entries": how many it held then, "of": how many were wanted}."""
    held, deadline = {}, time.monotonic() + timeout
    while time.monotonic() < deadline:
        for hv in hvs:
            if held.get(hv.name, 0) < len(hvs) - 1:
                held[hv.name] = len(_NEIGH.findall(hv.ovs.appctl("tnl/neigh/show")))
        if all(n >= len(hvs) - 1 for n in held.values()):
            break
        time.sleep(1.0)
    done = all(n >= len(hvs) - 1 for n in held.values())
    return {"s": round(time.monotonic() - t0, 2) if done else None, "entries": sum(held.values()),
            "of": len(hvs) * (len(hvs) - 1), "unresolved": None if done else unresolved(hvs)}


def upcalls(hvs) -> dict:
    """The datapath misses every hypervisor's ovs-vswitchd handled by an upcall so far, and those it failed
    (``ovs-appctl dpif-netdev/pmd-stats-show``): the tunnel probes' ARP on a flat underlay is one in every bridge."""
    out = {"success": 0, "failed": 0}
    for hv in hvs:
        text = hv.ovs.appctl("dpif-netdev/pmd-stats-show")
        for kind in out:
            out[kind] += sum(int(n) for n in re.findall(rf"miss with {kind} upcall: (\d+)", text))
    return out


def _roles(a: Node, b: Node):
    """(active, standby) once one node is active and the other standby, else None."""
    roles = a.role(), b.role()
    if sorted(roles) != ["active", "standby"]:
        return None
    return (a, b) if roles[0] == "active" else (b, a)


def _role_changes(paths, since: dict) -> list[str]:
    """The "HA: now ..." lines written after ``since`` (offsets): role changes after the first election."""
    found = []
    for path in paths:
        with open(path, "rb") as handle:
            handle.seek(since.get(str(path), 0))
            found += [f"{os.path.basename(str(path))}: {line[:23]} {line.split('HA: ', 1)[1]}"
                      for line in handle.read().decode(errors="replace").splitlines() if "HA: now " in line]
    return sorted(found, key=lambda line: line.split(": ", 1)[1])


def _settle_lag(lab, node: Node) -> float | None:
    """Wait (at most QUIET_TIMEOUT) until ``node``'s max lag of the last minute is below QUIET_LAG_MS, so that the
    takeover's lag is the only large sample of the minute after the kill; that max lag (ms)."""
    seen = [None]

    def quiet() -> bool:
        seen[0] = (health.lag_from_status(node.get("/v1/status")) or {}).get("max_1m_ms")
        return seen[0] is not None and seen[0] < QUIET_LAG_MS

    try:
        lab.wait_until(quiet, QUIET_TIMEOUT, 1.0, "the standby's lag to settle")
    except AssertionError:
        progress(f"  the standby's max lag of the last minute is still {seen[0]} ms; killing the active anyway")
    return seen[0]


def _caught_up(active: Node, standby: Node) -> bool:
    seq = (active.get("/v1/status") or {}).get("seq")
    rep = (standby.get("/v1/ha") or {}).get("replication") or {}
    return seq is not None and rep.get("seq") == seq and rep.get("lag") == 0


def document_subnets(total: int) -> range:
    return range((total + PER_SUBNET - 1) // PER_SUBNET)


def run(args) -> dict:
    result = {"machine": machine(), "settings": {k: v for k, v in vars(args).items() if k != "json"},
              "subnets": len(document_subnets(args.vports))}
    if args.stretches:
        os.environ["CANOPY_STRETCH_TRACE"] = str(args.stretches)  # the controllers the lab starts inherit it
    with contextlib.ExitStack() as groups, Lab() as lab:  # the group is removed after the lab stopped its processes
        if args.code:
            health.run_code(lab, args.code)
        if args.controller_nice:
            health.run_niced(lab, args.controller_nice)
        if args.controller_cpu_weight:
            result["cpu_group"] = cpugroup.weigh_controllers(groups, lab, args.controller_cpu_weight)
        progress(f"building the lab: {args.vrs} VRS, {args.vports} vports")
        scale = Scale(lab, args)
        result["setup"] = scale.setup
        if args.ovs_cpu_weight:
            result["ovs_cpu_group"] = cpugroup.weigh_processes(
                groups, "ovs", [c.pid for hv in scale.hvs for c in hv.ovs.processes], args.ovs_cpu_weight)
        try:
            phases(scale, args, result)
        finally:
            if args.logs:
                shutil.copytree(lab.workdir, args.logs, dirs_exist_ok=True, ignore=lambda d, names: [
                    n for n in names if not (n.endswith((".log", ".csv")) or os.path.isdir(os.path.join(d, n)))])
    result["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def phases(scale: Scale, args, result: dict) -> None:
    """Run the phases asked for, each reported (stderr) as it ends; the first that fails ends the run."""
    for name, _ in PHASES:
        if name not in args.phases:
            continue
        progress(f"{name} ...")
        try:
            result[name] = getattr(scale, name)()
        except AssertionError as exc:
            result[name] = {"error": str(exc)}
        progress("\n".join(phase_lines(name, result[name], result["settings"])))
        if "error" in result[name]:
            break


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vrs", type=int, default=50, help="hypervisors (each its own ovs-vswitchd)")
    parser.add_argument("--vports", type=int, default=5000, help="vports bound, spread round-robin")
    parser.add_argument("--max-backoff-ms", type=int, default=1000,
                        help="max_backoff of the hypervisors' Controller and Manager rows (docs/vrs.md; 0: OVS's 8 s)")
    parser.add_argument("--ovs-nice", type=int, default=0, metavar="N", help="run the hypervisors' OVS daemons at "
                        "nice N (1-19), below the controller: here 100 daemons share the controller's CPUs, where "
                        "50 real hypervisors have their own (default 0: as the controller)")
    parser.add_argument("--controller-nice", type=int, default=0, metavar="N", help="run the controllers at nice N "
                        "(-20 to 0; below 0 needs root): their share of CPUs shared with the 100 OVS daemons and "
                        "other work, as an operator's own cores or a CPU weight give it (default 0)")
    cpugroup.add_option(parser)
    parser.add_argument("--ovs-cpu-weight", type=int, default=0, metavar="W", help="move the hypervisors' OVS "
                        "daemons into one CPU cgroup with weight W (1-10000; 100: as systemd runs a service): each "
                        "detaches into a session of its own, and where the kernel groups by session each weighs as "
                        "a group, so 100 daemons outweigh --controller-cpu-weight 1000 ten to one (default: none)")
    parser.add_argument("--timeout", type=float, default=600.0, help="bound of every wait for sync (s)")
    parser.add_argument("--heartbeat-ms", type=int, default=200, help="HA heartbeat (the controller's default)")
    parser.add_argument("--dead-ms", type=int, default=1000, help="HA dead interval (the controller's default)")
    parser.add_argument("--phases", nargs="+", choices=[n for n, _ in PHASES], default=[n for n, _ in PHASES],
                        help="the phases to run (default: all; restart follows a cold start)")
    parser.add_argument("--profile", metavar="DIR", help="py-spy record each phase's controller into DIR")
    parser.add_argument("--logs", metavar="DIR", help="copy the lab's logs (controllers, ovs-vswitchd) to DIR")
    parser.add_argument("--json", action="store_true", help="also print every figure as JSON on stdout")
    parser.add_argument("--stretches", type=int, default=0, metavar="N", help="trace the controllers' stretches of "
                        "CPU between two turns of the event loop (CANOPY_STRETCH_TRACE) and print each phase's N "
                        "longest (0: off, the default)")
    parser.add_argument("--code", metavar="DIR", help="run the controllers of the checkout at DIR (e.g. a git "
                        "archive of main) with this venv: before/after comparisons on one machine")
    args = parser.parse_args(argv)
    if args.vrs < 1 or args.vports < args.vrs:
        parser.error("--vrs must be positive and --vports at least --vrs")
    if not 0 <= args.ovs_nice <= 19:
        parser.error("--ovs-nice must be 0 to 19")
    if not -20 <= args.controller_nice <= 0:
        parser.error("--controller-nice must be -20 to 0")
    cpugroup.check_option(parser, args)
    if args.ovs_cpu_weight and not 1 <= args.ovs_cpu_weight <= cpugroup.MAX_WEIGHT:
        parser.error(f"--ovs-cpu-weight must be 1 to {cpugroup.MAX_WEIGHT}")
    if len(document_subnets(args.vports)) > 64:
        parser.error(f"at most {64 * PER_SUBNET} vports")
    try:
        result = run(args)
    except CpuGroupError as exc:
        parser.error(f"--controller-cpu-weight: {exc}")
    print("\n".join(report(result)), flush=True)
    if args.json:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
