"""Bursts of 10,000 (issue 15 item 2): ports appearing in one OVSDB transaction, vports in one apply, EVPN routes
from a GoBGP peer in about a second. Does the controller stay responsive, and does it drop anything?

    .venv/bin/python -m tests.benchmarks.bursts [--count 10000] [--port-type absent|internal] [--ha] [--json]
        [--stretches N] [--poller process|thread|both]

Lab (tests.harness.lab, real processes): one controller (with ``--ha`` an HA pair, ctl1 active and ctl2 standby:
heartbeats every 100 ms, dead interval 1 s; docs/benchmarks.md), one KVM
hypervisor (kvm1, userspace OVS) connected to both over OpenFlow and OVSDB,
with one VM (w1), and GoBGP as in ``tests.benchmarks.evpn_routes``: gobgpd A (the active controller's EVPN
neighbor, passive) holding routes back from it with an export policy, and a feeder (this process writing UPDATEs
encoded by ExaBGP's encoder) that loads A. Bursts, one after the other (``--only``, default routes, ports, apply),
each after ``--idle`` seconds of polling:

a. **ports**: ``--count`` ports (Port + Interface rows with ``external_ids:iface-id``/``attached-mac``, the vports
   of subnet ``out`` in the policy) appear on br-int in ONE OVSDB transaction (JSON-RPC ``transact`` on kvm1's
   ovsdb-server; one ``ovs-vsctl`` call with 10,000 ``add-port`` is the same transaction, but ovs-vsctl itself
   needs minutes to build it: it took 12 s for 2,000). Done when /v1/status counts them bound and the switch's
   flows are in sync. ``--port-type internal`` makes them internal ports (ovs-vswitchd then creates a device
   for each; the default ``absent`` leaves the device missing, as evpn_routes does, see docs/benchmarks.md).
b. **apply**: ``--count`` vports of a new subnet ``apply`` in ONE ``POST /v1/apply``; their ports (iface-ids
   ``a<i>``) were put on br-int before the clock (and read by every controller, ``GET /v1/ovsdb/sessions``
   ``ports``, before the idle polling), so the apply binds them all. Done when the apply answered, all
   are bound and the switch is in sync.
c. **routes** (run first: GoBGP's intake slows down with the routes the other bursts make Canopy announce): the
   feeder loads ``--count`` type-2 routes into A while the lab is built (A holds them back from Canopy), then A
   releases them to Canopy at once (``softresetout``: A sends them in about a second). Done when br-int has an
   l2_lookup flow for each MAC.

For each: seconds until done; the active controller's largest event-loop lag during the burst (its /v1/status,
sampled throughout); the REST latency of ``GET /v1/status`` (p50, p95, max) polled every ``--poll`` seconds during
the burst, against the same polling while idle just before it (from a process of its own,
tests/benchmarks/statuspoll.py, so that the benchmark's own work does not hold the poller: ``--poller thread`` polls
from a thread of this process as before, ``both`` does both at once), with the slowest requests split into where
their time went (the client's connect, send, read and decode; the controller's ``Server-Timing``: its first turn
after the accept, reading, handling and encoding; the rest of the wait: before the accept, and the write); and the
sessions that ended, counted in the logs (both controllers' OpenFlow/OVSDB/BGP/HA messages, OVSDB sessions closed,
kvm1's ovs-vswitchd's and ovsdb-server's inactivity probes and drops, gobgpd's peer downs; 0 expected). The machine
(CPUs, model) and the load average are printed with the figures: on a shared machine the lag includes time the
controller was runnable but not running. With ``--stretches N`` (default 10; 0: off) the controllers run with
``CANOPY_STRETCH_TRACE`` (controller/stretchtrace.py) and each burst also reports the N longest stretches of the
active controller's CPU between two turns of its event loop (independent of the load), with where they ran.

Needs root, Open vSwitch and gobgpd, like the integration tests. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.benchmarks import health, statuspoll
from tests.benchmarks.bgp_peers import GoBGP
from tests.benchmarks.evpn_routes import (A_ASN, CANOPY_ASN, FEED_ASN, IN_NET, IN_VNI, L3_VNI, OUT_NET, OUT_VNI, W1,
                                          add_ports_ops, encode, evpn_l2_flows, host_ip, mac, open_feeder, py_spy,
                                          remote_routes, speaker, transact)
from tests.benchmarks.ha_takeover import ha_settings
from tests.harness import cpugroup, netns
from tests.harness.lab import Lab

APPLY_NET, APPLY_VNI = "10.3", 6103
SETUP_TIMEOUT = 300
BURST_TIMEOUT = 900
MAX_COUNT = 60000
SLOWEST = 3  # status requests per burst shown split into their parts
REPO = Path(__file__).resolve().parents[2]  # statuspoll runs from this checkout, whatever --code runs


# ---------------------------------------------------------------------------------------------- policy

def vport(prefix: str, net: str, i: int, kind: str) -> dict:
    return {"name": f"{prefix}{i}", "mac": mac(kind, i), "ip": host_ip(net, i)}


def subnet(name: str, net: str, vni: int, vports: list[dict]) -> dict:
    rt = f"{CANOPY_ASN}:{vni}"
    return {"name": name, "cidr": f"{net}.0.0/16", "gateway": f"{net}.0.1", "vni": vni, "import_rts": [rt],
            "export_rts": [rt], "vports": [{"name": v["name"], "mac": v["mac"], "ips": [v["ip"]],
                                            "binding": {"flavour": "kvm", "iface_id": v["name"]}} for v in vports]}


def document(count: int, applied: bool) -> dict:
    """Subnet ``in`` (w1; GoBGP's MACs), ``out`` (the port burst's vports o<i>) and, with ``applied``, ``apply``
    (the apply burst's vports a<i>)."""
    l3_rt = f"{CANOPY_ASN}:{L3_VNI}"
    subnets = [subnet("in", IN_NET, IN_VNI, [W1]),
               subnet("out", OUT_NET, OUT_VNI, [vport("o", OUT_NET, i, "0e") for i in range(count)])]
    if applied:
        subnets.append(subnet("apply", APPLY_NET, APPLY_VNI, [vport("a", APPLY_NET, i, "0a") for i in range(count)]))
    return {"tenants": [{"name": "bench", "domains": [{"name": "dom", "l3_vni": L3_VNI, "import_rts": [l3_rt],
                                                       "export_rts": [l3_rt], "subnets": subnets}]}]}


def port_ops(vports: list[dict], port_type: str) -> list:
    ops = add_ports_ops(vports)
    if port_type == "internal":
        for op in ops:
            if op["op"] == "insert" and op["table"] == "Interface":
                op["row"]["type"] = "internal"
    return ops


# ---------------------------------------------------------------------------------------------- measuring

class ProcessPoller:
    """GET /v1/status every ``interval`` s from a process of its own (tests/benchmarks/statuspoll.py), each
    request's time split where it went; with ``in_process`` from a thread of this process instead (as this benchmark
    did before branch statuslat: a thread per request joining the namespace, behind this process's GIL)."""

    def __init__(self, canopy, interval: float, in_process: bool = False):
        self.canopy, self.interval, self.in_process = canopy, interval, in_process
        self.records: list[dict] = []
        api = canopy.api
        if api.tls is not None:
            raise SystemExit("the status poller speaks plain HTTP; this lab's REST is HTTPS")

    def start(self) -> "ProcessPoller":
        api = self.canopy.api
        if self.in_process:
            self._halt = threading.Event()
            connect = lambda: netns.connect_tcp(api.ns, api.host, api.port, 10.0)  # noqa: E731
            self._thread = threading.Thread(name="status-poller", daemon=True, target=lambda: self.records.extend(
                statuspoll.poll(connect, api.host, self.interval, self._halt.wait)))
            self._thread.start()
            return self
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.benchmarks.statuspoll", "--ns", api.ns, "--host", api.host, "--port",
             str(api.port), "--interval", str(self.interval)], cwd=REPO, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True)
        if self._proc.stdout.readline().strip() != "ready":
            raise SystemExit("the status poller did not start (tests/benchmarks/statuspoll.py)")
        return self

    def stop(self) -> "ProcessPoller":
        if self.in_process:
            self._halt.set()
            self._thread.join(30)
            return self
        out, _ = self._proc.communicate("stop\n", timeout=60)
        self.records = json.loads(out)
        return self

    def figures(self, max_before: float) -> dict:
        """Latency p50/p95/max (ms), requests, failures, the largest lag seen (ms: the largest sample polled, or the
        probe's maximum since start if it grew meanwhile), and the ``SLOWEST`` requests split into their parts."""
        done = [r for r in self.records if "error" not in r]
        ms = [r["total"] for r in done]
        grown = max((r["lag_max_ms"] for r in done), default=0.0)
        lag = max(max((r["lag_ms"] for r in done), default=0.0), grown if grown > max_before else 0.0)
        ranked = sorted(done, key=lambda r: r["total"], reverse=True)
        slowest, tail = ranked[:SLOWEST], ranked[:max(1, len(ranked) // 20)]
        tail_parts = {}  # the slowest 5 %: where their time went, in all
        for record in tail:
            for part, part_ms in statuspoll.split(record).items():
                tail_parts[part] = tail_parts.get(part, 0.0) + part_ms
        return {"requests": len(ms), "failures": len(self.records) - len(done), "p50_ms": health.percentile(ms, 50),
                "p95_ms": health.percentile(ms, 95), "max_ms": max(ms, default=float("nan")), "max_lag_ms": lag,
                "tail": {"requests": len(tail), "ms": sum(r["total"] for r in tail), "parts": tail_parts},
                "slowest": [{"total": r["total"], "parts": statuspoll.split(r), "cpu": r["server"].get("cpu"),
                             "lag_ms": r["lag_ms"]} for r in slowest]}


# ---------------------------------------------------------------------------------------------- the lab

class Bursts:
    def __init__(self, lab, args):
        self.lab, self.args, self.n = lab, args, args.count
        self.results: dict[str, dict] = {}
        self.setup: dict[str, float] = {}

    def progress(self, text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    def build(self) -> None:
        t, lab = time.monotonic(), self.lab
        self.ctl = lab.add_controller_host("ctl1")
        self.ctl2 = None if self.args.no_ha else lab.add_controller_host("ctl2")
        a_host, self.feed_host = lab.add_controller_host("gobgpa"), lab.add_controller_host("feed")
        self.a = GoBGP(lab, a_host, A_ASN, [(self.ctl.ip, CANOPY_ASN, True), (self.feed_host.ip, FEED_ASN, True)],
                       held=(self.ctl.ip,))
        bgp = {"bgp": {"asn": CANOPY_ASN, "router_id": self.ctl.ip,
                       "neighbors": [{"address": a_host.ip, "asn": A_ASN, "local_address": self.ctl.ip}]}}
        settings = dict(bgp)
        if self.ctl2 is not None:
            settings.update(ha_settings("ctl1", self.ctl2, 200, 100, 1000))
        self.canopy = lab.start_controller(self.ctl, settings)
        self.standby = None
        if self.ctl2 is not None:
            self.standby = lab.start_controller(self.ctl2, ha_settings("ctl2", self.ctl, 100, 100, 1000),
                                                name="canopy2")
            lab.wait_until(lambda: (self.canopy.api.get("/v1/ha").json or {}).get("role") == "active", SETUP_TIMEOUT,
                           0.2, "ctl1 active")
        def applied():  # refused (503) until the standby is on the HA link
            reply = self.canopy.api.post("/v1/apply", {"document": document(self.n, False), "source": "bench"})
            if reply.status not in (200, 503):
                raise SystemExit(f"apply failed: {reply.status} {reply.text[:500]}")
            return reply.status == 200

        lab.wait_until(applied, SETUP_TIMEOUT, 0.5, "the policy applied (both nodes of the pair)")
        self.hv = lab.add_hypervisor("kvm1", "kvm")
        self.hv.connect([self.ctl] + ([self.ctl2] if self.ctl2 is not None else []))
        lab.add_vm(self.hv, W1["name"], mac=W1["mac"], ip=f"{W1['ip']}/16", vnic_id=W1["name"])
        self.feeder = lab.wait_until(self._feeder, SETUP_TIMEOUT, 0.5, "the feeder's session with GoBGP A")
        lab.wait_until(lambda: speaker(self.canopy)["peer"]["state"] == "up", SETUP_TIMEOUT, 0.2, "Canopy-A session")
        lab.wait_until(lambda: self.settled(1), SETUP_TIMEOUT, 0.2, "w1 bound and br-int in sync")
        self.setup["lab, pair, policy, w1"] = time.monotonic() - t
        if "routes" in self.args.only:
            self.load_a()
        self.log_start = health.log_offsets(*self.logs())

    def _feeder(self):
        return open_feeder(self.feed_host, self.a)

    def logs(self) -> list:
        workdir = self.lab.workdir
        controllers = [self.canopy.log_path] + ([self.standby.log_path] if self.standby is not None else [])
        ovs = [workdir / "kvm1" / "ovs-vswitchd.log", workdir / "kvm1" / "ovsdb-server.log"]  # its probes of us too
        return [*controllers, *ovs, workdir / "gobgpd-gobgpa.log"]

    def disconnects(self) -> dict:
        *controllers, vswitchd, ovsdb, gobgp = self.logs()
        return health.disconnects(controllers, [vswitchd, ovsdb], [gobgp], since=self.log_start)

    def flow_counts(self) -> dict:
        """kvm1's flows from /metrics (canopy_switch_flows: desired, installed, pending, rejected). Not
        /v1/switches/<dpid>/flows: that lists every flow, and its JSON at 100,000 flows holds the controller's
        event loop for seconds (which this benchmark would then measure)."""
        text = self.canopy.api.get("/metrics").text
        counts = {}
        for line in text.splitlines():
            if line.startswith("canopy_switch_flows{"):
                kind = re.search(r'kind="(\w+)"', line).group(1)
                counts[kind] = float(line.rsplit(None, 1)[1])
        return counts

    def controllers(self) -> list:
        return [self.canopy] + ([self.standby] if self.standby is not None else [])

    @staticmethod
    def ports_read(canopy) -> int | None:
        """kvm1's ports as ``canopy`` last read them (GET /v1/ovsdb/sessions: kvm1 is its one VRS); None from a
        controller that does not say (``--code`` of a checkout before stop 36)."""
        items = canopy.api.get("/v1/ovsdb/sessions").json["items"]
        if any("ports" not in item for item in items):
            return None
        return sum(item["ports"] or 0 for item in items)

    def settled(self, bound: int, flows_at_least: int = 0) -> bool:
        """``bound`` vports bound, kvm1's desired flows at least ``flows_at_least`` and every one installed."""
        status = self.canopy.api.get("/v1/status").json
        if status.get("vports_bound") != bound:
            return False
        counts = self.flow_counts()
        return bool(counts) and counts["pending"] == 0 and counts["desired"] == counts["installed"] >= flows_at_least

    # ------------------------------------------------------------------------------------------ one burst
    def stretches(self, reset: bool = False) -> dict | None:
        """The active controller's traced stretches (``GET``, or ``DELETE`` to start over), None when not traced."""
        if not self.args.stretches:
            return None
        return health.traced_stretches(self.canopy.api, reset)

    def burst(self, name: str, action, done, what: str) -> dict:
        """Idle polling, then the burst (``action``, the clock starting just before it) with polling, until
        ``done()`` (polled every 0.1 s from this thread); the stretches traced from the start of the burst."""
        self.progress(f"{name}: idle {self.args.idle:g} s ...")
        idle = self._pollers()
        before = health.lag_from_status(self.canopy.api.get("/v1/status").json) or {}
        for poller in idle:
            poller.start()
        time.sleep(self.args.idle)
        idle = [poller.stop().figures(before.get("max_ms", 0.0)) for poller in idle]
        self.progress(f"{name}: burst ...")
        offsets = health.log_offsets(*self.logs())
        before = health.lag_from_status(self.canopy.api.get("/v1/status").json) or {}
        pollers = self._pollers()
        self.stretches(reset=True)
        for poller in pollers:
            poller.start()
        started = time.monotonic()
        marks = {"action": None}
        result = action()
        marks["action"] = time.monotonic() - started
        deadline = started + BURST_TIMEOUT
        while True:
            try:
                if done():
                    break
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                for poller in pollers:
                    poller.stop()
                raise SystemExit(f"{name}: {what} not reached within {BURST_TIMEOUT} s")
            time.sleep(0.1)
        marks["done"] = time.monotonic() - started
        busy = [poller.stop().figures(before.get("max_ms", 0.0)) for poller in pollers]
        stretches = self.stretches()
        *controllers, vswitchd, ovsdb, gobgp = self.logs()
        out = {"seconds": marks["done"], "action_seconds": marks["action"], "what": what, "idle": idle[0],
               "burst": busy[0],
               "disconnects": health.disconnects(controllers, [vswitchd, ovsdb], [gobgp], since=offsets),
               "load_average": os.getloadavg(), "result": result}
        if len(busy) > 1:  # --poller both: the thread's figures too
            out["idle_thread"], out["burst_thread"] = idle[1], busy[1]
        self.progress(f"{name}: {json.dumps(out, default=str)}")
        out["stretches"] = stretches
        self.results[name] = out
        return out

    def _pollers(self) -> list[ProcessPoller]:
        """The status pollers of ``--poller``: a process's first, a thread's second."""
        kinds = {"process": [False], "thread": [True], "both": [False, True]}[self.args.poller]
        return [ProcessPoller(self.canopy, self.args.poll, in_process) for in_process in kinds]

    def ports(self) -> None:
        vports = [vport("o", OUT_NET, i, "0e") for i in range(self.n)]
        ops = port_ops(vports, self.args.port_type)
        flows = self.flow_counts()["desired"] + self.n  # each vport bound adds at least its ARP responder
        self.burst("ports", lambda: len(transact(self.hv, ops, timeout=600)), lambda: self.settled(self.n + 1, flows),
                   f"{self.n:,} ports added in one OVSDB transaction until all bound and br-int in sync")

    def apply(self) -> None:
        t = time.monotonic()
        vports = [vport("a", APPLY_NET, i, "0a") for i in range(self.n)]
        ports = {c.name: self.ports_read(c) for c in self.controllers()}
        ports = {name: None if seen is None else seen + self.n for name, seen in ports.items()}
        transact(self.hv, port_ops(vports, self.args.port_type), timeout=600)  # unknown iface-ids: nothing binds
        bound = self.canopy.api.get("/v1/status").json["vports_bound"]
        # read by every controller before the idle polling: nothing binds, so settled() alone held before they were
        # (stop 35's 105.6 ms "idle" sample before this burst could have been the active one reading them)
        self.lab.wait_until(lambda: all(ports[c.name] in (None, self.ports_read(c)) for c in self.controllers())
                            and self.settled(bound), SETUP_TIMEOUT, 0.5, "the apply burst's ports seen")
        flows = self.flow_counts()["desired"] + self.n
        self.setup["apply burst's ports on br-int"] = time.monotonic() - t
        body = {"document": document(self.n, True), "source": "bench"}

        def post():
            started = time.monotonic()
            reply = self._post(body)  # a client of its own: the apply of 10,000 may take longer than 10 s
            return {"status": reply.status, "seconds": round(time.monotonic() - started, 2)}

        self.burst("apply", post, lambda: self.settled(bound + self.n, flows),
                   f"{self.n:,} vports in one POST /v1/apply until answered, all bound and br-int in sync")

    def _post(self, body):
        from tests.harness.http import RestClient

        api = self.canopy.api
        client = RestClient(api.ns, api.host, api.port, timeout=600, tls=api.tls)
        reply = client.post("/v1/apply", body)
        if reply.status != 200:
            raise SystemExit(f"apply burst failed: {reply.status} {reply.text[:500]}")
        return reply

    def load_a(self) -> None:
        """The feeder loads A with the routes of the routes burst (held back from Canopy), before any burst: GoBGP
        takes type-2 routes in at a cost that grows with its table (evpn_routes), and the other bursts make Canopy
        announce 20,000."""
        t = time.monotonic()
        base = self.a.count()
        self.feeder.send(encode(remote_routes(self.n), "announce"))
        self.lab.wait_until(lambda: self.a.count() == base + self.n, SETUP_TIMEOUT * 2, 0.5, "A holding the routes")
        self.setup["encoding and loading A"] = time.monotonic() - t

    def routes(self) -> None:
        self.burst("routes", lambda: self.a.release(self.ctl.ip), lambda: evpn_l2_flows(self.hv) == self.n,
                   f"{self.n:,} type-2 routes released by GoBGP A at once until br-int has every MAC's flow")
        self.results["routes"]["received_by_canopy"] = speaker(self.canopy)["peer"]["received"]


# ---------------------------------------------------------------------------------------------- report

def machine() -> dict:
    return {"cpus": os.cpu_count(), "cpu": health.cpu_model(), "python": sys.version.split()[0], "load_average": os.getloadavg()}


def print_table(result: dict) -> None:
    m = result["machine"]
    print(f"bursts of {result['count']:,} ({result['code']}): {'an HA pair' if result['ha'] else 'one controller'}, "
          f"one KVM hypervisor "
          f"(userspace OVS, {result['port_type']} ports), GoBGP A; machine: {m['cpus']} CPUs {m['cpu']}, Python "
          f"{m['python']}, load average at the end {', '.join(f'{x:.2f}' for x in m['load_average'])}; the "
          f"controllers' CPU: {result.get('cpu_group') or 'no group of its own (the default weight)'}")
    print(f"  {'burst':7} {'done s':>7} {'max lag ms':>10}   {'GET /v1/status ms: idle p50/p95/max':>36}   "
          f"{'burst p50/p95/max':>22} {'n':>5}   disconnects  load")
    for name, r in result["bursts"].items():
        idle, busy = r["idle"], r["burst"]
        print(f"  {name:7} {r['seconds']:7.2f} {busy['max_lag_ms']:10,.0f}   "
              f"{idle['p50_ms']:14.1f} /{idle['p95_ms']:7.1f} /"
              f"{idle['max_ms']:7.1f}        {busy['p50_ms']:7.1f} /{busy['p95_ms']:7.1f} /{busy['max_ms']:7.1f} "
              f"{busy['requests']:5d}   {sum(r['disconnects'].values()):11d}  {r['load_average'][0]:.2f}")
        if "burst_thread" in r:  # --poller both
            idle, busy = r["idle_thread"], r["burst_thread"]
            print(f"    {'thread':>24}   {idle['p50_ms']:14.1f} /{idle['p95_ms']:7.1f} /{idle['max_ms']:7.1f}        "
                  f"{busy['p50_ms']:7.1f} /{busy['p95_ms']:7.1f} /{busy['max_ms']:7.1f} {busy['requests']:5d}   "
                  f"(polled from a thread of the benchmark's process)")
    for name, r in result["bursts"].items():
        print(f"  {name}: {r['what']}; the action itself {r['action_seconds']:.2f} s"
              + (f" ({r['result']})" if isinstance(r['result'], dict) else "")
              + (f"; {r['burst']['failures']} status requests failed" if r['burst']['failures'] else "")
              + ("; " + health.disconnects_line(r["disconnects"]) if sum(r["disconnects"].values()) else ""))
    for name, r in result["bursts"].items():
        print_slowest(name, r["burst"])
        if "burst_thread" in r:
            print_slowest(f"{name} (thread)", r["burst_thread"])
    for name, r in result["bursts"].items():
        health.print_stretches(name, r.get("stretches"))
    print("  " + health.lag_line(result["lag"], "active controller, whole run"))
    print("  " + health.disconnects_line(result["disconnects"]))
    print("  setup: " + ", ".join(f"{label} {seconds:.1f} s" for label, seconds in result["setup_seconds"].items()))


def print_slowest(name: str, figures: dict) -> None:
    """A burst's slowest status requests, each split into where its time went (statuspoll.split), and where the
    time of its slowest 5 % went in all."""
    slowest, tail = figures["slowest"], figures.get("tail")
    print(f"  {name}: the {len(slowest)} slowest GET /v1/status during the burst, ms (ctl: the controller's "
          f"Server-Timing; cpu: its CPU for the request; lag: the event-loop lag it reported):")
    if tail and tail["ms"] > 0:
        shares = sorted(tail["parts"].items(), key=lambda item: -item[1])
        print(f"    the slowest {tail['requests']} ({tail['ms']:,.0f} ms): "
              + ", ".join(f"{part} {ms / tail['ms']:.0%}" for part, ms in shares if ms / tail["ms"] >= 0.005))
    for r in slowest:
        parts = " + ".join(f"{part} {ms:.1f}" for part, ms in r["parts"].items() if abs(ms) >= 0.05)
        cpu = "?" if r["cpu"] is None else f"{r['cpu']:.1f}"
        print(f"    {r['total']:7.1f} = {parts}; cpu {cpu}, lag {r['lag_ms']:.1f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10000, help="ports, vports and routes per burst")
    parser.add_argument("--port-type", choices=("absent", "internal"), default="absent",
                        help="ports without a device (default) or internal ports (ovs-vswitchd makes a device each)")
    parser.add_argument("--only", default="routes,ports,apply", help="the bursts to run, in order (comma-separated)")
    parser.add_argument("--ha", action="store_true", help="an HA pair instead of one controller")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of idle polling before each burst")
    parser.add_argument("--poll", type=float, default=0.05, help="seconds between GET /v1/status requests")
    parser.add_argument("--poller", choices=("process", "thread", "both"), default="process",
                        help="poll /v1/status from a process of its own (default), from a thread of this process (as "
                        "before branch statuslat), or both at once (the thread's figures as rows of their own)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    parser.add_argument("--py-spy", nargs=2, metavar=("BIN", "OUT"), help="record the active controller during "
                        "the bursts with py-spy BIN into OUT (speedscope JSON: samples in time order, for finding "
                        "stretches)")
    parser.add_argument("--code", metavar="DIR", help="run the controllers of the checkout at DIR (e.g. /work/main, "
                        "or a git archive of this one) with this venv: before/after comparisons on one machine")
    parser.add_argument("--logs", metavar="DIR", help="copy the controllers', kvm1's OVS and gobgpd's logs into DIR "
                        "at the end (the lab's own are removed with it)")
    parser.add_argument("--stretches", type=int, default=10, metavar="N", help="trace the controllers' stretches "
                        "of CPU between two turns of the event loop and print each burst's N longest (0: off)")
    cpugroup.add_option(parser)
    args = parser.parse_args(argv)
    cpugroup.check_option(parser, args)
    if args.stretches:
        os.environ["CANOPY_STRETCH_TRACE"] = str(args.stretches)  # the controllers the lab starts inherit it
    if not 1 <= args.count <= MAX_COUNT:
        parser.error(f"--count must be 1..{MAX_COUNT} (a /16 per subnet)")
    wanted = [b.strip() for b in args.only.split(",") if b.strip()]
    if not wanted or set(wanted) - {"ports", "apply", "routes"}:
        parser.error("--only takes ports, apply and routes")
    args.no_ha = not args.ha
    with contextlib.ExitStack() as groups, Lab() as lab:  # the group is removed after the lab stopped its processes
        if args.code:
            health.run_code(lab, args.code)
        group = cpugroup.weigh_controllers(groups, lab, args.controller_cpu_weight)
        bench = Bursts(lab, args)
        bench.build()
        spied = py_spy(args.py_spy[0], {bench.canopy.pid: args.py_spy[1]}, "speedscope") if args.py_spy else \
            contextlib.nullcontext()
        with spied:
            for name in wanted:
                getattr(bench, name)()
        disconnects = bench.disconnects()  # before the feeder's session ends
        if args.logs:
            Path(args.logs).mkdir(parents=True, exist_ok=True)
            for path in bench.logs():
                if Path(path).exists():
                    shutil.copy(path, Path(args.logs) / f"{Path(path).parent.name}-{Path(path).name}")
        bench.feeder.close()
        result = {"count": args.count, "code": args.code or "this checkout", "ha": not args.no_ha,
                  "port_type": args.port_type, "bursts": bench.results,
                  "setup_seconds": bench.setup, "disconnects": disconnects,
                  "lag": health.lag_from_status(bench.canopy.api.get("/v1/status").json), "machine": machine(),
                  "cpu_group": group}
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
