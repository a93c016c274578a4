"""Takeover time of an active/standby pair: SIGKILL of the active to the standby holding MASTER on every switch.

    .venv/bin/python -m tests.benchmarks.ha_takeover [--vrs 1 50] [--runs 5] [--json > figures.json]

Setup (tests.harness.lab), once per ``--vrs`` size: two controller hosts running Canopy as a pair (settings as in
tests/integration/test_ha.py: heartbeat 100 ms, dead interval 500 ms; ``--heartbeat-ms``, ``--dead-ms``), N KVM
hypervisors each pointed at both (``hv.connect([ctl_a, ctl_b])``), and one tenant, one domain, four /24 subnets with
``--ports`` vports per hypervisor, bound cheaply as internal OVS ports on br-int carrying their iface-id (no VM
namespaces), so every switch holds real flows (its own vports, the others' over VXLAN, routing between subnets).

One run: wait until one node is active, its replica caught up, both connected to every switch, the active's
reconcilers in sync and OVS's Controller table showing the active's target connected as master and the standby's as
slave on every switch; then wait a random 0..``--jitter`` s (see below), SIGKILL the active, and follow the survivor
until it is master everywhere. The killed node is then restarted (it comes back as standby), the run waits until the
pair is ready again, and the next run kills the other node.

What is measured, all in ms from just before the SIGKILL (wall clock, time.time()):

- OVS's Controller table of every hypervisor, followed by one ``ovsdb-client monitor ... Controller
  target,is_connected,role --format=csv --timestamp`` per hypervisor, started once with the lab and writing to a
  file: each update carries ovsdb-client's own receive time (1 ms resolution), so the figure does not depend on how
  fast this process polls, and nothing polls ovsdb-server. From it: when each switch reports the killed target
  disconnected (the **baseline**), and when it reports the survivor's target connected as master (the takeover as
  the Controller table shows it).
- The wire: ``tcpdump`` of OpenFlow (tcp port 6653) on the survivor's mgmt0 during the run, kernel timestamps (us).
  From it: when the survivor sent each switch its ROLE_REQUEST(master) and when the switch's ROLE_REPLY(master)
  arrived. **The ROLE_REPLY of the last switch is the takeover time**: the moment every switch has made the survivor
  master. It is needed because ovs-vswitchd (3.1) writes is_connected and role into the Controller table only with
  its statistics, every ``other_config:stats-update-interval`` (5 s at least): the table lags the switch by up to 5 s
  and its figure is the wire figure plus that lag.
- The survivor's /v1/ha (its role change, ``since``, and ``reason``), its log ("HA: now active", each switch's
  "read back"), and over REST at the end of the run every reconciler in sync and the flow-mods it sent.
- Baselines in the same run: the dead interval (configured; the lower bound of a takeover after a silent peer) and
  OVS's report of the killed controller's connection as disconnected, on the first switch, on a majority of them
  (what Canopy's split-brain rule waits for: more than half of the VRS reporting no connected master) and on all.

``--jitter`` (default 5 s, OVS's status period): each ovs-vswitchd refreshes its Controller table every 5 s, so
where a crash falls in that period decides when the witnesses report it; readiness is seen on such a refresh, so
without the random wait every kill would fall just after one (the worst case).

Needs root, Open vSwitch and tcpdump (``--no-capture`` runs without the wire figures). Not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import sys
import time
from datetime import datetime, timezone

from tests.benchmarks import health
from tests.benchmarks.port_to_ping import add_present_ports
from tests.benchmarks.takeover_witness import (OF_PORT, ControllerTable, RoleCapture, connected_as, disconnected,
                                              taken_over)
from tests.harness.lab import Lab

SUBNETS = 4
READY_TIMEOUT = 180.0
TAKEOVER_TIMEOUT = 60.0
OVS_STATUS_PERIOD = 5.0  # ovs-vswitchd: Controller status written with the statistics, every >= 5 s
_LOG_TIME = "%Y-%m-%d %H:%M:%S,%f"
_READ_BACK = re.compile(r"dpid=([0-9a-f]{16}) read back (\d+) Canopy flows")


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- lab setup

def ha_settings(node: str, peer, priority: int, heartbeat_ms: int, dead_ms: int) -> dict:
    return {"ha": {"node_id": node, "peer": peer.ip, "priority": priority, "heartbeat_interval_ms": heartbeat_ms,
                   "dead_interval_ms": dead_ms, "secret": "benchmark-pair-secret-0123"}}


def vports(n_vrs: int, per_vrs: int) -> list[dict]:
    """Vport i (hypervisor h, k-th on it): subnet i % SUBNETS, address .10 upwards, iface-id = its name."""
    out = []
    for h in range(n_vrs):
        for k in range(per_vrs):
            i = h * per_vrs + k
            s = i % SUBNETS
            out.append({"hv": h, "name": f"v{h}x{k}", "subnet": s, "ip": f"10.20.{s}.{10 + i // SUBNETS}",
                        "mac": f"02:dd:00:00:{i >> 8 & 0xff:02x}:{i & 0xff:02x}"})
    return out


def document(ports: list[dict]) -> dict:
    nets = [{"name": f"s{s}", "cidr": f"10.20.{s}.0/24", "gateway": f"10.20.{s}.1", "vports": []}
            for s in range(SUBNETS)]
    for p in ports:
        nets[p["subnet"]]["vports"].append({"name": p["name"], "mac": p["mac"], "ips": [p["ip"]],
                                            "binding": {"flavour": "kvm", "iface_id": p["name"]}})
    return {"tenants": [{"name": "bench", "domains": [{"name": "dom", "subnets": nets}]}]}


class Node:
    """One controller of the pair: its host, process and its OpenFlow target as OVS names it."""

    def __init__(self, host, proc):
        self.host, self.proc = host, proc
        self.target = f"tcp:{host.ip}:{OF_PORT}"

    @property
    def name(self) -> str:
        return self.proc.name

    def get(self, path: str) -> dict | None:
        try:
            reply = self.proc.api.get(path)
        except Exception:  # noqa: BLE001 - a dead or starting controller answers nothing
            return None
        return reply.json if reply.status == 200 else None

    def role(self) -> str | None:
        return (self.get("/v1/ha") or {}).get("role")


# ---------------------------------------------------------------------------------------------- one pair, many runs

class Pair:
    """The lab, the two controllers, the hypervisors and their Controller tables."""

    def __init__(self, lab, args, n_vrs: int):
        self.lab, self.args, self.n = lab, args, n_vrs
        self.ports = vports(n_vrs, args.ports)
        hosts = lab.add_controller_host("ctla"), lab.add_controller_host("ctlb")
        procs = [lab.start_controller(host, ha_settings(node, other, priority, args.heartbeat_ms, args.dead_ms),
                                      name=f"canopy{node}")
                 for host, other, node, priority in ((hosts[0], hosts[1], "a", 200), (hosts[1], hosts[0], "b", 100))]
        self.nodes = [Node(host, proc) for host, proc in zip(hosts, procs)]
        a, b = self.nodes
        lab.wait_until(lambda: a.role() == "active" and b.role() == "standby", timeout=60, what="A active, B standby")
        reply = a.proc.api.post("/v1/apply", {"document": document(self.ports), "source": "bench"})
        if reply.status != 200:
            raise SystemExit(f"apply failed: {reply.status} {reply.text[:500]}")
        self.hvs, self.tables = [], []
        for h in range(n_vrs):
            hv = lab.add_hypervisor(f"hv{h:02d}", "kvm")
            hv.connect([a.host, b.host])
            add_present_ports(hv, [p for p in self.ports if p["hv"] == h])
            self.hvs.append(hv)
            self.tables.append(ControllerTable(lab, hv, lab.workdir / f"{hv.name}-controller-table.csv"))
            if n_vrs >= 10 and (h + 1) % 10 == 0:
                progress(f"  {h + 1}/{n_vrs} hypervisors up")
        self.dpids = [f"{hv.datapath_id():016x}" for hv in self.hvs]

    def active_standby(self) -> tuple[Node, Node]:
        a, b = self.nodes
        return (a, b) if a.role() == "active" else (b, a)

    def wait_ready(self, active: Node, standby: Node, timeout: float = READY_TIMEOUT) -> None:
        """Bounded: roles, replica caught up, both see every switch, active in sync, OVS shows master/slave."""
        wait = self.lab.wait_until
        wait(lambda: active.role() == "active" and standby.role() == "standby", timeout, 0.2,
             f"{active.name} active, {standby.name} standby")
        wait(lambda: self._caught_up(active, standby), timeout, 0.2, f"{standby.name}'s replica caught up")
        for node in (active, standby):
            wait(lambda: (node.get("/v1/status") or {}).get("switches") == {"ovsdb": self.n, "openflow": self.n},
                 timeout, 0.2, f"{node.name} connected to all {self.n} switches (OVSDB and OpenFlow)")
        wait(lambda: (active.get("/v1/status") or {}).get("vports_bound") == len(self.ports), timeout, 0.2,
             f"{len(self.ports)} vports bound")
        wait(lambda: all(self._sync_state(active, dpid)[0] for dpid in self.dpids), timeout, 0.3,
             f"every switch in sync on {active.name}")
        wait(lambda: all(connected_as(active.target, "master")(t.poll()) and
                         connected_as(standby.target, "slave")(t.state()) for t in self.tables),
             timeout, 0.2, f"OVS's Controller tables: {active.name} master, {standby.name} slave, everywhere")

    @staticmethod
    def _caught_up(active: Node, standby: Node) -> bool:
        seq = (active.get("/v1/status") or {}).get("seq")
        rep = (standby.get("/v1/ha") or {}).get("replication") or {}
        return seq is not None and rep.get("seq") == seq and rep.get("lag") == 0

    @staticmethod
    def _sync_state(node: Node, dpid: str) -> tuple[bool, dict]:
        flows = node.get(f"/v1/switches/{dpid}/flows") or {}
        status = flows.get("status") or {}
        return bool(flows.get("in_sync")) and status.get("state") == "in_sync", status

    def run(self, k: int, rng: random.Random) -> dict:
        """Kill the active, follow the takeover, restart the killed node as standby; the run's figures (ms)."""
        lab, args = self.lab, self.args
        active, survivor = self.active_standby()
        self.wait_ready(active, survivor)
        capture = RoleCapture(lab, survivor.host, lab.workdir / f"run{k}-{survivor.name}.pcap") \
            if args.capture else None
        time.sleep(rng.uniform(0, args.jitter))
        for table in self.tables:
            table.poll()
        killed_at = time.time()
        active.proc.kill()
        ha = lab.wait_until(lambda: _active_ha(survivor), TAKEOVER_TIMEOUT, 0.05, f"{survivor.name} active")
        taken = taken_over(survivor, active)
        lab.wait_until(lambda: all(taken(t.poll()) for t in self.tables), TAKEOVER_TIMEOUT, 0.1,
                       f"OVS's Controller tables showing {survivor.name} master everywhere")
        sync = [self._sync_state(survivor, dpid) for dpid in self.dpids]
        lag = health.lag_from_status(survivor.get("/v1/status")) or {}
        dropped = capture.stop() if capture else None
        wire = capture.roles(killed_at) if capture else {}
        figures = self._figures(killed_at, active, survivor, ha, wire)
        sent = [status.get("sent", {}) for _, status in sync]  # the survivor's reconcilers: since it connected
        figures.update(run=k, killed=active.name, survivor=survivor.name, reason=ha.get("reason"),
                       generation=ha.get("generation_id"), capture_dropped=dropped, in_sync=sum(ok for ok, _ in sync),
                       flow_mods=sum(c.get("flow_add", 0) + c.get("flow_delete", 0) for c in sent),
                       group_mods=sum(c.get(g, 0) for c in sent for g in ("group_add", "group_modify", "group_delete")),
                       change_sets=sum(c.get("change_sets", 0) for c in sent), lag_max_1m_ms=lag.get("max_1m_ms"))
        started = time.monotonic()
        active.proc.start()
        self.wait_ready(survivor, active)
        figures["restart_ready_s"] = round(time.monotonic() - started, 1)
        return figures

    def _figures(self, t0: float, killed: Node, survivor: Node, ha: dict, wire: dict) -> dict:
        def ms(stamp):
            return None if stamp is None else round((stamp - t0) * 1000, 1)

        per_switch_gone = [ms(t.first(disconnected(killed.target), t0)) for t in self.tables]
        gone = sorted(per_switch_gone)
        db_master = [ms(t.first(taken_over(survivor, killed), t0)) for t in self.tables]
        requests = [ms(wire.get(hv.mgmt_ip, {}).get("request")) for hv in self.hvs]
        replies = [ms(wire.get(hv.mgmt_ip, {}).get("reply")) for hv in self.hvs]
        log = self._log_times(survivor, t0)
        read_back = [ms(log["read_back"].get(dpid)) for dpid in self.dpids]
        return {
            "per_switch": {"ovs_disconnected": per_switch_gone, "role_request": requests, "wire_master": replies,
                           "read_back": read_back, "table_master": db_master},
            "ovs_disconnected_first": gone[0], "ovs_disconnected_majority": gone[self.n // 2],
            "ovs_disconnected_all": gone[-1],
            "ha_active": ms(ha.get("since")), "ha_active_log": ms(log["active"]),
            "role_request_first": _least(requests), "role_request_last": _most(requests),
            "wire_master_first": _least(replies), "wire_master_all": _most(replies),
            "wire_switches": sum(r is not None for r in replies),
            "table_master_all": _most(db_master),
            "read_back_all": _most(read_back),
            "read_back_flows": sum(log["flows"].values()),
        }

    def _log_times(self, node: Node, t0: float) -> dict:
        """From the survivor's log, after ``t0``: "HA: now active", and each switch's first read-back."""
        active, read_back, flows = None, {}, {}
        for line in node.proc.log_path.read_text(errors="replace").splitlines():
            try:
                stamp = datetime.strptime(line[:23], _LOG_TIME).timestamp()
            except ValueError:
                continue
            if stamp < t0 - 0.001:
                continue
            if active is None and "HA: now active" in line:
                active = stamp
            found = _READ_BACK.search(line)
            if found and found.group(1) not in read_back:
                read_back[found.group(1)], flows[found.group(1)] = stamp, int(found.group(2))
        return {"active": active, "read_back": read_back, "flows": flows}


def _active_ha(node: Node) -> dict | None:
    ha = node.get("/v1/ha")
    return ha if ha and ha.get("role") == "active" else None


def _least(values):
    present = [v for v in values if v is not None]
    return min(present) if present else None


def _most(values):
    """The largest value, or None when any is missing (not every switch was seen)."""
    return None if not values or any(v is None for v in values) else max(values)


# ---------------------------------------------------------------------------------------------- report

ROWS = [  # (key, label); ms after SIGKILL
    ("ovs_disconnected_first", "baseline: OVS reports the killed controller disconnected, first switch"),
    ("ovs_disconnected_majority", "  ... on a majority of switches (what the split-brain rule waits for)"),
    ("ovs_disconnected_all", "  ... on every switch"),
    ("ha_active", "survivor's role active (/v1/ha 'since')"),
    ("role_request_first", "survivor sends ROLE_REQUEST(master), first switch (wire)"),
    ("role_request_last", "  ... last switch"),
    ("wire_master_first", "ROLE_REPLY(master) from the first switch (wire)"),
    ("wire_master_all", "TAKEOVER: MASTER on every switch (ROLE_REPLY on the wire)"),
    ("read_back_all", "survivor has read back every switch (its log, 1 ms)"),
    ("table_master_all", "MASTER on every switch per OVS's Controller table"),
]


DERIVED = [  # (key, label): Canopy's own share of the takeover, from the figures above
    ("canopy_decision", "Canopy: majority of witnesses -> role active"),
    ("canopy_first_request", "Canopy: role active -> first ROLE_REQUEST(master)"),
    ("canopy_roles", "Canopy: role active -> MASTER on every switch (wire)"),
    ("request_spacing", "Canopy: between consecutive ROLE_REQUESTs (first->last / (N-1))"),
]


def derived(run: dict) -> None:
    def gap(later, earlier, per=1):
        if run.get(later) is not None and run.get(earlier) is not None:
            return round((run[later] - run[earlier]) / per, 1)
        return None

    n = len(run["per_switch"]["wire_master"])
    run["canopy_decision"] = gap("ha_active", "ovs_disconnected_majority")
    run["canopy_first_request"] = gap("role_request_first", "ha_active")
    run["canopy_roles"] = gap("wire_master_all", "ha_active")
    run["request_spacing"] = gap("role_request_last", "role_request_first", n - 1) if n > 1 else None


def summarize(runs: list[dict]) -> dict:
    out = {}
    for key, _ in ROWS + DERIVED:
        values = [r[key] for r in runs if r.get(key) is not None]
        if values:
            out[key] = {"n": len(values), "median": round(statistics.median(values), 1), "min": min(values),
                        "max": max(values)}
    return out


def report(size: dict, args) -> list[str]:
    """The text report of one size, as lines."""
    n, runs, summary = size["vrs"], size["runs"], size["summary"]
    lines = [f"HA takeover: {n} VRS (userspace OVS, {args.ports} vports each, {size['flows_per_switch']} flows on "
             f"the first switch), heartbeat {args.heartbeat_ms} ms, dead interval {args.dead_ms} ms, {len(runs)} runs "
             f"(kill at a random 0-{args.jitter:g} s after ready)",
             f"  {'ms after SIGKILL':72} {'median':>8} {'min':>8} {'max':>8}",
             f"  {'baseline: dead interval (configured)':72} {args.dead_ms:8.1f}"]
    for key, label in ROWS + DERIVED:
        if key in summary:
            s = summary[key]
            lines.append(f"  {label:72} {s['median']:8.1f} {s['min']:8.1f} {s['max']:8.1f}" +
                         (f"   (n={s['n']})" if s["n"] != len(runs) else ""))
    for r in runs:
        lines.append(
            f"  run {r['run']}: {r['killed']} killed, {r['survivor']} took over (generation {r['generation']}, "
            f"'{r['reason']}'); takeover {r['wire_master_all']} ms (wire), {r['table_master_all']} ms (table); "
            f"{r['in_sync']}/{n} in sync, {r['flow_mods']} flow-mods and {r['group_mods']} group-mods in "
            f"{r['change_sets']} change sets; "
            f"{r['read_back_flows']} flows read back; survivor's max event-loop lag in the last minute "
            f"{r.get('lag_max_1m_ms')} ms; restart+ready {r['restart_ready_s']} s" +
            (f"; capture dropped {r['capture_dropped']}" if r.get("capture_dropped") else ""))
    lines.append("  setup: " + ", ".join(f"{label} {seconds:.1f} s" for label, seconds in size["setup"].items()))
    return lines


def machine() -> dict:
    return {"cpus": os.cpu_count(), "cpu": health.cpu_model(), "kernel": platform.release(), "python": platform.python_version(),
            "load_average": [round(x, 2) for x in os.getloadavg()], "date": datetime.now(timezone.utc).isoformat()}


def measure_size(args, n_vrs: int, rng: random.Random) -> dict:
    setup = {}
    with Lab() as lab:
        t = time.monotonic()
        progress(f"{n_vrs} VRS: building the lab")
        pair = Pair(lab, args, n_vrs)
        setup["lab, pair, policy, hypervisors"] = time.monotonic() - t
        t = time.monotonic()
        pair.wait_ready(*pair.active_standby())
        setup["first ready"] = time.monotonic() - t
        flows = (pair.active_standby()[0].get(f"/v1/switches/{pair.dpids[0]}/flows") or {}).get("count")
        runs = []
        t = time.monotonic()
        for k in range(args.runs):
            run = pair.run(k, rng)
            derived(run)
            runs.append(run)
            progress(f"  run {k}: takeover {run['wire_master_all']} ms on the wire, {run['table_master_all']} ms in "
                     f"the Controller table, active at {run['ha_active']} ms, majority of witnesses at "
                     f"{run['ovs_disconnected_majority']} ms ({run['reason']})")
        setup[f"{args.runs} runs"] = time.monotonic() - t
    return {"vrs": n_vrs, "flows_per_switch": flows, "runs": runs, "summary": summarize(runs),
            "setup": {k: round(v, 1) for k, v in setup.items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vrs", type=int, nargs="+", default=[1, 50], help="hypervisors per lab (one lab each)")
    parser.add_argument("--runs", type=int, default=5, help="takeovers per size (the roles alternate)")
    parser.add_argument("--ports", type=int, default=2, help="vports bound per hypervisor")
    parser.add_argument("--heartbeat-ms", type=int, default=100)
    parser.add_argument("--dead-ms", type=int, default=500)
    parser.add_argument("--jitter", type=float, default=OVS_STATUS_PERIOD,
                        help="random wait 0..s after ready before the kill (default: OVS's status period)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-capture", dest="capture", action="store_false", help="no tcpdump (no wire figures)")
    parser.add_argument("--json", action="store_true",
                        help="print every figure (ms) as one JSON document on stdout; the report goes to stderr")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.vrs) or args.runs < 1 or args.ports < 1:
        parser.error("--vrs, --runs and --ports must be positive")
    if max(args.vrs) * args.ports > SUBNETS * 240:
        parser.error(f"at most {SUBNETS * 240} vports in all (--vrs x --ports)")
    rng = random.Random(args.seed)
    out = sys.stderr if args.json else sys.stdout  # with --json, stdout carries only the JSON document
    result = {"machine": machine(), "settings": {k: v for k, v in vars(args).items() if k != "json"}, "sizes": []}
    for n in args.vrs:
        size = measure_size(args, n, rng)
        result["sizes"].append(size)
        print("\n".join(report(size, args)), file=out, flush=True)
    m = result["machine"]
    m["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    print(f"machine: {m['cpus']} CPUs ({m['cpu']}), kernel {m['kernel']}, Python {m['python']}, load average "
          f"{m['load_average']} at start, {m['load_average_end']} at the end", file=out)
    if args.json:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
