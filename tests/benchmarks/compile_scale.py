"""Controller compile cost and memory at scale, in-process: no OVS, no root (benchmark (c)).

    .venv/bin/python -m tests.benchmarks.compile_scale                     # 10,000 vports on 100 VRS, spread
    .venv/bin/python -m tests.benchmarks.compile_scale --layout packed --switches 1000 --vports 20000 \
        --tenants 100 --per-subnet 100                                      # the packed layout of issue 13

Tenants of one domain each (a routed L3 context: every VRS serving one of its subnets gets a host route for
every vport of it), the vports split evenly over the tenants and over /22 subnets (``--per-subnet`` each), bound
on synthetic KVM VRS snapshots: ``--layout spread`` puts vport i on VRS i mod N (every switch serves every
subnet, the worst case for a distributed router); ``--layout packed`` puts each tenant on ``--span`` VRS of its
own block (tenants' subnets on a few dozen hypervisors each, as clouds place them). Measured in this process:

- policy: ``policydoc.plan`` of the document, and its commit to State;
- discovery: State takes the VRS snapshots one by one; derive: one ``derive()`` of the whole View;
- full compile: ``Programmer.refresh(full=True)``, every owner on every switch, wall and CPU seconds, RSS, and
  the time the cyclic garbage collector took; at the end, full compiles that have a previous state to compare with
  (on request, or the pass after a failed one), with nothing changed and with one vport added;
- per change, ``--samples`` times each: a vport added (its port appears on a VRS), moved (appears on another VRS
  of its tenant and leaves the first) and removed, timed from the event entering State (``vrs_update``) to every
  affected switch's desired state ready (``refresh()`` returned): medians, split into State, derive, finding
  the owners and compiling them (``Programmer.timings``), and the switches touched;
- before/after in the same run: the same switches compiled the old way, one by one with nothing shared
  (``compile_switch`` without a ``Shared``; on ``--unshared-sample`` switches, extrapolated), and the raw
  baselines of turning the flows into something a switch takes: ovs-ofctl text (render_flow), OpenFlow 1.3
  flow-mod bytes (WireEncoder) and Ryu OFPFlowMod objects (DESIGN "Speed": about 9,300/s here);
- the machine: CPU, cores, load average (other work on the machine slows wall time: compare CPU seconds).

``--tracemalloc`` adds a traced full compile (peak and retained Python allocations); ``--profile`` prints the
top functions (cProfile) of the full compile and of one change of each kind.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import ipaddress
import os
import pstats
import resource
import statistics
import sys
import time
import tracemalloc
from dataclasses import replace

from controller import policy as pol
from controller import policydoc
from controller.discovery import PortInfo, VrsSnapshot
from controller.programmer import Programmer
from controller.state import State
from controller.store import Change
from tests.benchmarks import health
from openflow.compiler import compile_switch

VNI_RANGE = (10000, 40000)
ASN = 65000
TUNNEL_OFPORT = 1
FIRST_VM_OFPORT = 10
RYU_SAMPLE = 20000


# ------------------------------------------------------------------------------------------ inputs

def mac_of(i: int) -> str:
    return f"02:00:{i >> 24 & 0xff:02x}:{i >> 16 & 0xff:02x}:{i >> 8 & 0xff:02x}:{i & 0xff:02x}"


def subnet_cidr(s: int, prefixlen: int) -> ipaddress.IPv4Network:
    size = 1 << (32 - prefixlen)
    return ipaddress.IPv4Network((int(ipaddress.IPv4Address("10.0.0.0")) + s * size, prefixlen))


class Layout:
    """Who is where: vport i of ``vports`` in tenant i // per_tenant, on switch ``switch_of(i)``; vports
    ``vports .. vports + spare - 1`` are in tenant 0's subnets (round robin) but not bound anywhere yet."""

    def __init__(self, vports, switches, tenants, per_subnet, layout, span, spare):
        self.vports, self.switches, self.tenants, self.per_subnet = vports, switches, tenants, per_subnet
        self.layout, self.span, self.spare = layout, min(span, switches), spare
        self.per_tenant = (vports + tenants - 1) // tenants

    def switch_of(self, i: int) -> int:
        if self.layout == "spread":
            return i % self.switches
        tenant, j = divmod(i, self.per_tenant)
        return (tenant * self.switches // self.tenants + j % self.span) % self.switches

    def tenant_vports(self, tenant: int) -> range:
        return range(tenant * self.per_tenant, min(self.vports, (tenant + 1) * self.per_tenant))


def document(lay: Layout, prefixlen: int) -> dict:
    """The policy: per tenant one domain and /22 subnets of up to per_subnet vports; vport i is named v<i>,
    iface-id v<i>; the spare vports go round robin into tenant 0's subnets."""
    tenants, index = [], 0
    for t in range(lay.tenants):
        ids = list(lay.tenant_vports(t))
        subnets = []
        for start in range(0, len(ids), lay.per_subnet):
            net = subnet_cidr(index, prefixlen)
            index += 1
            hosts = net.hosts()
            gateway = str(next(hosts))
            ports = [{"name": f"v{i}", "mac": mac_of(i), "ips": [str(next(hosts))],
                      "binding": {"flavour": "kvm", "iface_id": f"v{i}"}} for i in ids[start:start + lay.per_subnet]]
            subnets.append({"name": f"s{len(subnets)}", "cidr": str(net), "gateway": gateway, "vports": ports,
                            "_hosts": hosts})
        if t == 0:
            for k in range(lay.spare):
                sub = subnets[k % len(subnets)]
                i = lay.vports + k
                sub["vports"].append({"name": f"v{i}", "mac": mac_of(i), "ips": [str(next(sub["_hosts"]))],
                                      "binding": {"flavour": "kvm", "iface_id": f"v{i}"}})
        for sub in subnets:
            del sub["_hosts"]
        tenants.append({"name": f"t{t}", "domains": [{"name": "dom", "subnets": subnets}]})
    return {"source": "bench", "tenants": tenants}


def port(i: int, ofport: int) -> PortInfo:
    """A KVM tap port as ovsdb/ reports it: iface-id, attached-mac, vm-uuid, iface-status."""
    return PortInfo(f"tap{i:011d}", ofport, mac_of(i), (("attached-mac", mac_of(i)), ("iface-id", f"v{i}"),
                                                         ("iface-status", "active"), ("vm-uuid", f"uuid-{i}")))


def snapshot(n: int, ports: tuple) -> VrsSnapshot:
    tunnel = PortInfo("vxlan0", TUNNEL_OFPORT, None, (), "vxlan")
    return VrsSnapshot(f"ovsdb:10.250.{n >> 8}.{n & 0xff}:6640", f"10.250.{n >> 8}.{n & 0xff}:40000", f"hv{n}",
                       f"hv{n}", "kvm", f"10.251.{(n + 1) >> 8}.{(n + 1) & 0xff}", "br-int", True, 0x1000 + n,
                       "3.1.0", (tunnel, *ports))


def snapshots(lay: Layout) -> list[VrsSnapshot]:
    ports: list[list[PortInfo]] = [[] for _ in range(lay.switches)]
    for i in range(lay.vports):
        where = ports[lay.switch_of(i)]
        where.append(port(i, FIRST_VM_OFPORT + len(where)))
    return [snapshot(n, tuple(ps)) for n, ps in enumerate(ports)]


# ----------------------------------------------------------------------------------------- measures

def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class GcMeter:
    """Time spent in the cyclic garbage collector (gc.callbacks), total and in full (generation 2) passes."""

    def __init__(self):
        self.seconds = 0.0
        self.full = 0
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase, info):
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.full += info["generation"] == 2

    def reading(self) -> tuple[float, int]:
        return self.seconds, self.full


class Clock:
    """Times a step, records RSS and garbage-collector time after it, optionally profiles it."""

    def __init__(self, profile: bool):
        self.profile = profile
        self.gc = GcMeter()
        self.rows: list[tuple[str, float, int, float, int, float]] = []
        self.profiles: list[tuple[str, str]] = []
        self.hub = health.HubProbe()  # the event-loop lag each step would cause in the controller
        self.lags: dict[str, float] = {}

    def run(self, label: str, function, *args):
        profiler = cProfile.Profile() if self.profile else None
        gc_seconds, gc_full = self.gc.reading()
        self.hub.settle()
        started, cpu = time.perf_counter(), time.process_time()
        if profiler:
            result = profiler.runcall(function, *args)
        else:
            result = function(*args)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        self.lags[label] = self.hub.settle()
        gc_after, full_after = self.gc.reading()
        self.rows.append((label, seconds, rss_kib(), gc_after - gc_seconds, full_after - gc_full, cpu))
        if profiler:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(18)
            self.profiles.append((label, out.getvalue()))
        return result, seconds


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{health.cpu_model()}, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, load average {load}"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def flow_totals(programmer: Programmer) -> tuple[int, int, list[int], int, int]:
    """(flows held, groups, flows per switch, distinct flow sets, distinct Flow objects)."""
    per_switch = [sum(len(fs) for fs in d.flows.values()) for d in programmer.desired.values()]
    groups = sum(len(d.all_groups()) for d in programmer.desired.values())
    sets = {id(fs): fs for d in programmer.desired.values() for fs in d.flows.values()}
    return sum(per_switch), groups, per_switch, len(sets), sum(len(fs) for fs in sets.values())


def all_flows(programmer: Programmer) -> list:
    unique = {id(fs): fs for d in programmer.desired.values() for fs in d.flows.values()}
    return [f for fs in unique.values() for f in fs]


def baselines(flows: list, sample: int) -> dict:
    """Seconds per flow of three ways of just turning the same flows into something a switch takes,
    measured on an evenly spread sample of at most ``sample`` flows."""
    from controller.ryu_compat import ofproto_protocol
    from openflow import encode, ryumsg
    from openflow.flows import render_flow

    out = {}
    flows = flows[::max(1, len(flows) // sample)][:sample]
    started = time.perf_counter()
    for f in flows:
        render_flow(f)
    out["render_flow (ovs-ofctl text)"] = (time.perf_counter() - started) / len(flows)
    dp = ofproto_protocol.ProtocolDesc(4)
    wire = encode.WireEncoder(dp.ofproto)
    started = time.perf_counter()
    for f in flows:
        wire.flow_add(f, 1, f.cookie)
    out["WireEncoder flow-mod bytes"] = (time.perf_counter() - started) / len(flows)
    ryu = flows[::max(1, len(flows) // RYU_SAMPLE)][:RYU_SAMPLE]
    started = time.perf_counter()
    for f in ryu:
        msg = ryumsg.flow_add(dp, f)
        msg.set_xid(1)
        msg.serialize()
    out["Ryu OFPFlowMod build + serialize"] = (time.perf_counter() - started) / len(ryu)
    return out, len(flows), len(ryu)


def unshared(programmer: Programmer, sample: int) -> dict:
    """The old way on ``sample`` switches: each compiled alone, nothing shared (every flow its own object);
    seconds and RSS growth per switch, to extrapolate to all switches."""
    view = programmer.view
    sessions = sorted(view.switches)[::max(1, len(view.switches) // sample)][:sample]
    gc.collect()
    rss_before, started, cpu = rss_kib(), time.perf_counter(), time.process_time()
    held = [compile_switch(view, s) for s in sessions]
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    flows = sum(len(fs) for d in held for fs in d.flows.values())
    grown = (rss_kib() - rss_before) * 1024
    del held
    return {"switches": len(sessions), "seconds": seconds / len(sessions), "cpu": cpu / len(sessions),
            "bytes_per_flow": grown / max(1, flows)}


# ------------------------------------------------------------------------------------------- steps

def build_policy(doc):
    allocator = pol.Allocator({}, ASN, VNI_RANGE)
    return policydoc.plan(pol.Policy(), doc, "bench", allocator)


def discover(state: State, snaps):
    for snap in snaps:
        state.vrs_update(snap)


def commit(state: State, plan):
    changes = [Change(c.kind, c.id, c.op, c.body, seq) for seq, c in enumerate(plan.changes, state.last_seq + 1)]
    state.policy_committed(plan.policy, changes)


def with_port(snap: VrsSnapshot, info: PortInfo) -> VrsSnapshot:
    """The next report of the switch with ``info`` added, saying what changed as ovsdb/vrs.py does."""
    return replace(snap, ports=snap.ports + (info,), changed=frozenset({info.name}),
                   changed_ports={info.name: info})


def without_port(snap: VrsSnapshot, name: str) -> VrsSnapshot:
    return replace(snap, ports=tuple(p for p in snap.ports if p.name != name), changed=frozenset({name}),
                   changed_ports={})


def full_again(clock: Clock, state: State, programmer: Programmer, lay: Layout, sessions: list[str]) -> None:
    """Full compiles that have a previous state to compare with (``refresh(full=True)`` on request, or the pass after
    a failed one): with nothing changed, and with one spare vport added (removed again after, incrementally)."""
    clock.run("full compile again, nothing changed (refresh(full=True))", programmer.refresh, True)
    session = sessions[lay.switch_of(0)]
    info = port(lay.vports, FIRST_VM_OFPORT + len(state.vrs[session].ports))
    state.vrs_update(with_port(state.vrs[session], info))
    clock.run("full compile again, one vport added (refresh(full=True))", programmer.refresh, True)
    state.vrs_update(without_port(state.vrs[session], info.name))
    programmer.refresh()


class Changes:
    """Per-change samples: each spare vport added on the VRS of a vport of its subnet, moved to the VRS of
    another vport of its tenant, then removed; each timed from its events entering State to refresh() done."""

    KINDS = ("add", "move", "remove")

    def __init__(self, state: State, programmer: Programmer, lay: Layout, sessions: list[str], profile: bool):
        self.state, self.programmer, self.lay, self.sessions = state, programmer, lay, sessions
        self.rows = {kind: [] for kind in self.KINDS}
        self.profiles: list[tuple[str, str]] = []
        self.profile = profile

    def run(self, count: int) -> None:
        tenant0 = list(self.lay.tenant_vports(0))
        for k in range(count):
            i = self.lay.vports + k
            src = self.sessions[self.lay.switch_of(tenant0[k % len(tenant0)])]
            dst = self.sessions[self.lay.switch_of(tenant0[(k + 1 + len(tenant0) // 2) % len(tenant0)])]
            if dst == src:
                dst = self.sessions[(self.sessions.index(src) + 1) % len(self.sessions)]
            info = port(i, FIRST_VM_OFPORT + len(self.state.vrs[src].ports))
            self._timed("add", k, lambda: self.state.vrs_update(with_port(self.state.vrs[src], info)))
            moved = replace(info, ofport=FIRST_VM_OFPORT + len(self.state.vrs[dst].ports))
            self._timed("move", k, lambda: (self.state.vrs_update(with_port(self.state.vrs[dst], moved)),
                                            self.state.vrs_update(without_port(self.state.vrs[src], info.name))))
            self._timed("remove", k, lambda: self.state.vrs_update(without_port(self.state.vrs[dst], info.name)))

    def _timed(self, kind: str, k: int, events) -> None:
        profiler = cProfile.Profile() if self.profile and k == 0 else None
        if profiler:
            profiler.enable()
        started, cpu = time.perf_counter(), time.process_time()
        events()
        entered = time.perf_counter()
        touched = self.programmer.refresh()
        done, cpu = time.perf_counter(), time.process_time() - cpu
        if profiler:
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(18)
            self.profiles.append((f"one vport {kind}", out.getvalue()))
        t = self.programmer.timings
        self.rows[kind].append((done - started, entered - started, t.get("derive", 0.0), t.get("owners", 0.0),
                                t.get("compile", 0.0), len(touched), cpu, t.get("compile_cpu", 0.0)))

    def report(self) -> list[str]:
        lines = [f"{'per change (median of ' + str(len(self.rows['add'])) + ')':30} {'total ms':>9} {'CPU ms':>8} "
                 f"{'State':>8} {'derive':>8} {'owners':>8} {'compile':>8} {'its CPU':>8}  switches touched "
                 f"(min/median/max)"]
        for kind, rows in self.rows.items():
            if not rows:
                continue
            med = [statistics.median(r[c] for r in rows) * 1000 for c in range(5)]
            touched = [r[5] for r in rows]
            cpu, compile_cpu = (statistics.median(r[c] for r in rows) * 1000 for c in (6, 7))
            lines.append(f"  one vport {kind:19} {med[0]:9.2f} {cpu:8.2f} {med[1]:8.2f} {med[2]:8.2f} {med[3]:8.2f} "
                         f"{med[4]:8.2f} {compile_cpu:8.2f}  {min(touched)}/{statistics.median(touched):.0f}/"
                         f"{max(touched)}")
        return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vports", type=int, default=10000)
    parser.add_argument("--switches", type=int, default=100)
    parser.add_argument("--tenants", type=int, default=1, help="tenants (one domain each) the vports are split over")
    parser.add_argument("--per-subnet", type=int, default=1000, help="vports per /22 subnet (at most 1000)")
    parser.add_argument("--layout", choices=("spread", "packed"), default="spread")
    parser.add_argument("--span", type=int, default=30, help="packed: VRS each tenant is spread over")
    parser.add_argument("--samples", type=int, default=50, help="changes of each kind timed (at least 50: issue 13)")
    parser.add_argument("--unshared-sample", type=int, default=10, help="switches compiled the old way")
    parser.add_argument("--tracemalloc", action="store_true", help="also a traced full compile (slow)")
    parser.add_argument("--profile", action="store_true", help="cProfile the full compile and one change of each kind")
    parser.add_argument("--baseline-sample", type=int, default=200000,
                        help="flows (evenly spread) the render/WireEncoder baselines run over (Ryu: 20,000)")
    parser.add_argument("--security-policy", action="store_true",
                        help="the security policy case instead (tests/benchmarks/compile_security.py)")
    parser.add_argument("--groups", type=int, default=100, help="--security-policy: policy groups (one ACL each)")
    parser.add_argument("--rules", type=int, default=20, help="--security-policy: rules per ACL")
    parser.add_argument("--policy-samples", type=int, default=20, help="--security-policy: policy changes of each kind")
    args = parser.parse_args(argv)
    if args.security_policy:
        from tests.benchmarks.compile_security import security_policy_case

        return security_policy_case(args)
    prefixlen = 22
    if not 1 <= args.per_subnet <= 1000:
        parser.error("--per-subnet must be 1..1000 (a /22 with its gateway and room for the spare vports)")
    lay = Layout(args.vports, args.switches, args.tenants, args.per_subnet, args.layout, args.span, args.samples)

    clock = Clock(args.profile)
    rss_start = rss_kib()
    doc = document(lay, prefixlen)
    plan, _ = clock.run("policy: plan + validate (policydoc.plan)", build_policy, doc)
    snaps = snapshots(lay)
    state = State(pol.Policy(), "kvm")
    clock.run("policy: commit to State (bind nothing yet)", commit, state, plan)
    del plan, doc
    clock.run(f"discovery: {args.switches} VRS snapshots into State", discover, state, snaps)
    bound = len(state.locations)
    if bound != args.vports:
        raise SystemExit(f"only {bound} of {args.vports} vports bound")
    programmer = Programmer(state)
    view, _ = clock.run("derive (View, FIB)", programmer.derive)
    del view
    gc.collect()
    rss_before_compile = rss_kib()
    _, full_seconds = clock.run("full compile, all switches (refresh(full=True))", programmer.refresh, True)
    full_cpu = clock.rows[-1][5]
    flows_total, groups_total, per_switch, distinct_sets, distinct_flows = flow_totals(programmer)
    rss_compiled = rss_kib()
    peak_after_compile = peak_rss_mib()
    old = unshared(programmer, args.unshared_sample)

    changes = Changes(state, programmer, lay, [s.session for s in snaps], args.profile)
    changes.run(args.samples)
    full_again(clock, state, programmer, lay, [s.session for s in snaps])
    base, base_n, ryu_n = baselines(all_flows(programmer), args.baseline_sample)

    traced = None
    if args.tracemalloc:
        gc.collect()
        tracemalloc.start()
        fresh = Programmer(state)
        started = time.perf_counter()
        fresh.refresh(full=True)
        traced_seconds = time.perf_counter() - started
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        traced = (current, peak, traced_seconds)
        del fresh

    print(f"Canopy compile scale: {args.vports:,} vports on {args.switches} VRS ({args.layout} layout"
          f"{f', {lay.span} VRS per tenant' if args.layout == 'packed' else ''}), {args.tenants} tenant(s) of one "
          f"domain, /22 subnets of up to {args.per_subnet} vports; in-process")
    print(f"machine: {machine()}")
    print(f"{'step':58} {'seconds':>10} {'CPU s':>8} {'RSS MiB':>9} {'of which GC s':>14} {'full GCs':>9} "
          f"{'max lag ms':>11}")
    for label, seconds, rss, gc_seconds, gc_full, cpu in clock.rows:
        print(f"  {label:56} {seconds:10.3f} {cpu:8.3f} {rss / 1024:9.1f} {gc_seconds:14.3f} {gc_full:9d} "
              f"{clock.lags.get(label, 0.0):11.1f}")
    print(f"max event-loop lag (in-process probe: the longest stretch a step held an eventlet hub): "
          f"{max(clock.lags.values(), default=0.0):,.1f} ms")
    print(f"flows: {flows_total:,} held by {args.switches} switches (per switch: min {min(per_switch):,}, median "
          f"{statistics.median(per_switch):,.0f}, max {max(per_switch):,}); groups: {groups_total:,}")
    print(f"  shared: {distinct_flows:,} distinct Flow objects in {distinct_sets:,} distinct flow sets "
          f"({flows_total / max(1, distinct_flows):.1f} switches hold each flow on average)")
    print(f"full compile: {full_seconds:.2f} s wall, {full_cpu:.2f} s CPU; {flows_total / full_seconds:,.0f} flows/s "
          f"held ({full_seconds / flows_total * 1e6:.2f} us per flow held, "
          f"{full_seconds / max(1, distinct_flows) * 1e6:.1f} us per distinct flow)")
    print(f"memory: RSS {rss_start / 1024:.1f} MiB at start, {rss_before_compile / 1024:.1f} MiB before the compile, "
          f"{rss_compiled / 1024:.1f} MiB after (+{(rss_compiled - rss_before_compile) / 1024:.1f} MiB, "
          f"{(rss_compiled - rss_before_compile) * 1024 / flows_total:.0f} bytes per flow held); peak RSS "
          f"{peak_after_compile:.1f} MiB")
    print(f"before/after, same run: the old way (each switch compiled alone, nothing shared) on {old['switches']} "
          f"switches: {old['seconds']:.3f} s ({old['cpu']:.3f} s CPU) per switch, {old['bytes_per_flow']:.0f} bytes "
          f"per flow")
    print(f"  extrapolated to {args.switches} switches: {old['seconds'] * args.switches:.1f} s "
          f"({old['cpu'] * args.switches:.1f} s CPU) and {old['bytes_per_flow'] * flows_total / 2**20:,.0f} MiB, "
          f"against {full_seconds:.1f} s ({full_cpu:.1f} s CPU) and "
          f"{(rss_compiled - rss_before_compile) / 1024:,.0f} MiB shared")
    for line in changes.report():
        print(line)
    print(f"baselines over the distinct flows (same run; {base_n:,} evenly spread flows, Ryu {ryu_n:,}):")
    for label, per_flow in base.items():
        print(f"  {label:52} {1 / per_flow:12,.0f} flows/s")
    if traced:
        current, peak, seconds = traced
        print(f"  tracemalloc, a second full compile into a fresh Programmer ({seconds:.1f} s traced): retained "
              f"{current / 2**20:.1f} MiB ({current / flows_total:.0f} bytes per flow), peak {peak / 2**20:.1f} MiB")
    for label, text in clock.profiles + changes.profiles:
        print(f"\n==== profile: {label}\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
