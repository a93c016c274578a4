"""Controller compile cost and memory at scale, in-process: no OVS, no root (benchmark (c)).

    .venv/bin/python -m tests.benchmarks.compile_scale [--vports 10000] [--switches 100]

One tenant, one domain (a routed L3 context: every VRS gets a host route for every vport), the vports
spread over /22 subnets (``--per-subnet`` each) and bound round-robin on synthetic KVM VRS snapshots
(``--layout spread``: every switch serves every subnet, the worst case for a distributed router) or in
blocks (``--layout packed``: a subnet's ports sit on as few switches as possible). Measured, one after
the other, in this process:

- policy: ``policydoc.plan`` of the document (normalisation, allocation, every cross-object rule);
- discovery: State takes the policy and the 100 VRS snapshots one by one (binding resolution each time);
- derive: one ``derive()`` of the whole View (endpoints, FIB);
- full compile: ``Programmer.refresh(full=True)``, every owner on every switch;
- incremental: one vport created (policy commit, then its port appearing on one VRS) and one vport moved
  (its port leaving one VRS and appearing on another), each followed by ``Programmer.refresh()``;
- memory: process RSS (/proc/self/status VmRSS) after each step, and with ``--tracemalloc`` a second,
  traced full compile (peak and retained Python allocations; tracing slows it down several times).

Baselines in the same run, over the same flows: rendering every flow to ovs-ofctl text (render_flow),
packing them into OpenFlow 1.3 flow-mods with the WireEncoder, and building and serialising Ryu
OFPFlowMod objects (on a sample; DESIGN "Speed" puts these at about 9,300/s on this machine). The compile
is reported as flows/s and as a ratio to each baseline.

``--profile`` prints the top functions (cProfile) of the full compile and of each incremental refresh.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import ipaddress
import pstats
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

VNI_RANGE = (10000, 20000)
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


def document(vports: int, per_subnet: int, prefixlen: int) -> dict:
    """One tenant, one domain, ceil(vports / per_subnet) subnets; vport i is named v<i>, iface-id v<i>."""
    subnets = []
    for s in range((vports + per_subnet - 1) // per_subnet):
        net = subnet_cidr(s, prefixlen)
        hosts = net.hosts()
        gateway = str(next(hosts))
        ports = []
        for i in range(s * per_subnet, min(vports, (s + 1) * per_subnet)):
            ports.append({"name": f"v{i}", "mac": mac_of(i), "ips": [str(next(hosts))],
                          "binding": {"flavour": "kvm", "iface_id": f"v{i}"}})
        subnets.append({"name": f"s{s}", "cidr": str(net), "gateway": gateway, "vports": ports})
    return {"source": "bench", "tenants": [{"name": "bench", "domains": [{"name": "dom", "subnets": subnets}]}]}


def switch_of(i: int, vports: int, switches: int, layout: str) -> int:
    if layout == "spread":
        return i % switches
    per_switch = (vports + switches - 1) // switches
    return min(i // per_switch, switches - 1)


def port(i: int, ofport: int) -> PortInfo:
    """A KVM tap port as ovsdb/ reports it: iface-id, attached-mac, vm-uuid, iface-status."""
    return PortInfo(f"tap{i:011d}", ofport, mac_of(i), (("attached-mac", mac_of(i)), ("iface-id", f"v{i}"),
                                                         ("iface-status", "active"), ("vm-uuid", f"uuid-{i}")))


def snapshot(n: int, ports: tuple) -> VrsSnapshot:
    tunnel = PortInfo("vxlan0", TUNNEL_OFPORT, None, (), "vxlan")
    return VrsSnapshot(f"ovsdb:10.250.{n >> 8}.{n & 0xff}:6640", f"10.250.{n >> 8}.{n & 0xff}:40000", f"hv{n}",
                       f"hv{n}", "kvm", f"10.251.{(n + 1) >> 8}.{(n + 1) & 0xff}", "br-int", True, 0x1000 + n,
                       "3.1.0", (tunnel, *ports))


def snapshots(vports: int, switches: int, layout: str) -> list[VrsSnapshot]:
    ports: list[list[PortInfo]] = [[] for _ in range(switches)]
    for i in range(vports):
        where = ports[switch_of(i, vports, switches, layout)]
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
        self.rows: list[tuple[str, float, int, float, int]] = []
        self.profiles: list[tuple[str, str]] = []
        self.hub = health.HubProbe()  # the event-loop lag each step would cause in the controller
        self.lags: dict[str, float] = {}

    def run(self, label: str, function, *args):
        profiler = cProfile.Profile() if self.profile else None
        gc_seconds, gc_full = self.gc.reading()
        self.hub.settle()
        started = time.perf_counter()
        if profiler:
            result = profiler.runcall(function, *args)
        else:
            result = function(*args)
        seconds = time.perf_counter() - started
        self.lags[label] = self.hub.settle()
        gc_after, full_after = self.gc.reading()
        self.rows.append((label, seconds, rss_kib(), gc_after - gc_seconds, full_after - gc_full))
        if profiler:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(18)
            self.profiles.append((label, out.getvalue()))
        return result, seconds


def flow_totals(programmer: Programmer) -> tuple[int, int, list[int]]:
    per_switch = [sum(len(fs) for fs in d.flows.values()) for d in programmer.desired.values()]
    groups = sum(len(d.all_groups()) for d in programmer.desired.values())
    return sum(per_switch), groups, per_switch


def all_flows(programmer: Programmer) -> list:
    return [f for d in programmer.desired.values() for fs in d.flows.values() for f in fs]


def baselines(flows: list, sample: int) -> dict:
    """Seconds per flow of three ways of just turning the same flows into something a switch takes,
    measured on an evenly spread sample of at most ``sample`` flows."""
    from controller.ryu_compat import ofproto_protocol
    from openflow import encode
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
        msg = encode.flow_add(dp, f)
        msg.set_xid(1)
        msg.serialize()
    out["Ryu OFPFlowMod build + serialize"] = (time.perf_counter() - started) / len(ryu)
    return out, len(flows), len(ryu)


# ------------------------------------------------------------------------------------------- steps

def build_policy(doc):
    allocator = pol.Allocator({}, ASN, VNI_RANGE)
    plan = policydoc.plan(pol.Policy(), doc, "bench", allocator)
    return plan


def discover(state: State, snaps):
    for snap in snaps:
        state.vrs_update(snap)


def commit(state: State, plan):
    changes = [Change(c.kind, c.id, c.op, c.body, seq) for seq, c in enumerate(plan.changes, state.last_seq + 1)]
    state.policy_committed(plan.policy, changes)


def add_vport_plan(state: State, doc: dict, i: int, subnet: int, prefixlen: int):
    """The document plus vport v<i> in subnet s<subnet> (an address past the used ones)."""
    subnets = doc["tenants"][0]["domains"][0]["subnets"]
    net = subnet_cidr(subnet, prefixlen)
    used = {ip for v in subnets[subnet]["vports"] for ip in v["ips"]} | {subnets[subnet]["gateway"]}
    ip = next(str(h) for h in reversed(list(net.hosts())) if str(h) not in used)
    subnets[subnet]["vports"].append({"name": f"v{i}", "mac": mac_of(i), "ips": [ip],
                                      "binding": {"flavour": "kvm", "iface_id": f"v{i}"}})
    allocator = pol.Allocator({"vni": VNI_RANGE[0] + len(subnets) + 1}, ASN, VNI_RANGE)
    return policydoc.plan(state.policy, doc, "bench", allocator)


def with_port(snap: VrsSnapshot, info: PortInfo) -> VrsSnapshot:
    return replace(snap, ports=snap.ports + (info,))


def without_port(snap: VrsSnapshot, name: str) -> VrsSnapshot:
    return replace(snap, ports=tuple(p for p in snap.ports if p.name != name))


def refresh(programmer: Programmer):
    return programmer.refresh()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vports", type=int, default=10000)
    parser.add_argument("--switches", type=int, default=100)
    parser.add_argument("--per-subnet", type=int, default=1000, help="vports per /22 subnet (at most 1021)")
    parser.add_argument("--layout", choices=("spread", "packed"), default="spread")
    parser.add_argument("--tracemalloc", action="store_true", help="also a traced full compile (slow)")
    parser.add_argument("--profile", action="store_true", help="cProfile every step (slows them down)")
    parser.add_argument("--baseline-sample", type=int, default=200000,
                        help="flows (evenly spread) the render/WireEncoder baselines run over (Ryu: 20,000)")
    parser.add_argument("--security-policy", action="store_true",
                        help="the security policy case instead (security_policy_case below)")
    parser.add_argument("--groups", type=int, default=100, help="--security-policy: policy groups (one ACL each)")
    parser.add_argument("--rules", type=int, default=20, help="--security-policy: rules per ACL")
    args = parser.parse_args(argv)
    if args.security_policy:
        return security_policy_case(args)
    prefixlen = 22
    if not 1 <= args.per_subnet <= (1 << (32 - prefixlen)) - 3:
        parser.error("--per-subnet must fit a /22 with its gateway and a spare address")

    clock = Clock(args.profile)
    rss_start = rss_kib()
    doc = document(args.vports, args.per_subnet, prefixlen)
    plan, _ = clock.run("policy: plan + validate (policydoc.plan)", build_policy, doc)
    snaps = snapshots(args.vports, args.switches, args.layout)
    state = State(pol.Policy(), "kvm")
    clock.run("policy: commit to State (bind nothing yet)", commit, state, plan)
    clock.run(f"discovery: {args.switches} VRS snapshots into State", discover, state, snaps)
    bound = len(state.locations)
    if bound != args.vports:
        raise SystemExit(f"only {bound} of {args.vports} vports bound")
    programmer = Programmer(state)
    view, _ = clock.run("derive (View, FIB)", programmer.derive)
    del view
    gc.collect()
    _, full_seconds = clock.run("full compile, all switches (refresh(full=True))", programmer.refresh, True)
    flows_total, groups_total, per_switch = flow_totals(programmer)

    # one vport more: the policy commit (unbound: nothing to compile), then its port on one VRS
    new = args.vports
    target_subnet = 0
    plan2, _ = clock.run("add 1 vport: plan + validate", add_vport_plan, state, doc, new, target_subnet, prefixlen)
    clock.run("add 1 vport: commit to State", commit, state, plan2)
    touched_policy, _ = clock.run("add 1 vport: refresh after the commit", refresh, programmer)
    host = 0
    snap = state.vrs[snaps[host].session]
    clock.run("add 1 vport: its port appears (State)", state.vrs_update,
              with_port(snap, port(new, FIRST_VM_OFPORT + len(snap.ports))))
    touched_add, _ = clock.run("add 1 vport: refresh after the port appears", refresh, programmer)
    flows_after_add, _, _ = flow_totals(programmer)

    # move vport v1 from its switch to another: the port leaves one VRS and appears on another
    mover = 1
    src = switch_of(mover, args.vports, args.switches, args.layout)
    dst = (src + 1) % args.switches
    src_snap = state.vrs[snaps[src].session]
    moving = next(p for p in src_snap.ports if p.ext("iface-id") == f"v{mover}")
    clock.run("move 1 vport: port leaves the old VRS (State)", state.vrs_update, without_port(src_snap, moving.name))
    touched_gone, _ = clock.run("move 1 vport: refresh after it leaves", refresh, programmer)
    dst_snap = state.vrs[snaps[dst].session]
    clock.run("move 1 vport: port appears on the new VRS (State)", state.vrs_update,
              with_port(dst_snap, replace(moving, ofport=FIRST_VM_OFPORT + len(dst_snap.ports))))
    touched_move, _ = clock.run("move 1 vport: refresh after it appears", refresh, programmer)
    flows_after_move, _, _ = flow_totals(programmer)
    rss_compiled = rss_kib()

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

    print(f"Canopy compile scale: {args.vports:,} vports on {args.switches} VRS ({args.layout} layout), one tenant, "
          f"one domain, {len(doc['tenants'][0]['domains'][0]['subnets'])} /22 subnets of up to {args.per_subnet} "
          f"vports; in-process, Python {sys.version.split()[0]}")
    print(f"{'step':58} {'seconds':>10} {'RSS MiB':>9} {'of which GC s':>14} {'full GCs':>9} {'max lag ms':>11}")
    for label, seconds, rss, gc_seconds, gc_full in clock.rows:
        print(f"  {label:56} {seconds:10.3f} {rss / 1024:9.1f} {gc_seconds:14.3f} {gc_full:9d} "
              f"{clock.lags.get(label, 0.0):11.1f}")
    print(f"max event-loop lag (in-process probe: the longest stretch a step held an eventlet hub): "
          f"{max(clock.lags.values(), default=0.0):,.1f} ms")
    print(f"flows: {flows_total:,} on {args.switches} switches (per switch: min {min(per_switch):,}, median "
          f"{statistics.median(per_switch):,.0f}, max {max(per_switch):,}); groups: {groups_total:,}")
    print(f"  after adding 1 vport: {flows_after_add:,} flows ({flows_after_add - flows_total:+,}); "
          f"after moving 1: {flows_after_move:,} ({flows_after_move - flows_after_add:+,})")
    print(f"  switches touched: commit {len(touched_policy)}, port appears {len(touched_add)}, "
          f"port leaves {len(touched_gone)}, port re-appears elsewhere {len(touched_move)}")
    compile_per_flow = full_seconds / flows_total
    print(f"full compile: {flows_total / full_seconds:,.0f} flows/s ({compile_per_flow * 1e6:.1f} us per flow)")
    print(f"baselines over the same flows (same run; {base_n:,} evenly spread flows, Ryu {ryu_n:,}):")
    for label, per_flow in base.items():
        print(f"  {label:52} {1 / per_flow:12,.0f} flows/s   compile takes {compile_per_flow / per_flow:6.2f} x as "
              f"long per flow")
    print(f"memory: RSS {rss_start / 1024:.1f} MiB at start, {rss_compiled / 1024:.1f} MiB with everything compiled "
          f"(+{(rss_compiled - rss_start) / 1024:.1f} MiB, {(rss_compiled - rss_start) * 1024 / flows_total:.0f} "
          f"bytes per flow)")
    if traced:
        current, peak, seconds = traced
        print(f"  tracemalloc, a second full compile into a fresh Programmer ({seconds:.1f} s traced): retained "
              f"{current / 2**20:.1f} MiB ({current / flows_total:.0f} bytes per flow), peak {peak / 2**20:.1f} MiB")
    for label, text in clock.profiles:
        print(f"\n==== profile: {label}\n{text}")
    return 0



# ------------------------------------------------------------------------------- security policy case

def security_document(vports: int, per_subnet: int, groups: int, rules: int, switches: int) -> dict:
    """The base document, plus: vport i in policy group g<(i // switches) % groups> (with the spread layout every
    switch has members of every group: every ACL on every switch, the worst case); ACL a<g> applied to g<g>,
    with ``rules`` ingress rules: allow tcp port 1000+r from group g<(g + r + 1) % groups>, stateful."""
    doc = document(vports, per_subnet, 22)
    tenant = doc["tenants"][0]
    for i, vport in enumerate(v for s in tenant["domains"][0]["subnets"] for v in s["vports"]):
        vport["policy_groups"] = [f"g{(i // switches) % groups}"]
    tenant["policy_groups"] = [{"name": f"g{g}"} for g in range(groups)]
    tenant["acls"] = [{"name": f"a{g}", "policy_groups": [f"g{g}"], "rules": [
        {"direction": "ingress", "action": "allow", "protocol": "tcp", "ports": str(1000 + r),
         "remote_group": f"g{(g + r + 1) % groups}"} for r in range(rules)]} for g in range(groups)]
    return doc


def security_policy_case(args) -> int:
    """``--security-policy``: --vports vports in --groups policy groups, one ACL of --rules rules between
    groups per group, bound spread over --switches VRS. Reports the policy plan, the full compile (time,
    flows per switch, how many are ACL flows, RSS) and two changes: a vport joining another group, and one
    rule of one ACL changed, each as its refresh time and the flows it touched."""
    from openflow.flows import Owner

    clock = Clock(args.profile)
    rss_start = rss_kib()
    doc = security_document(args.vports, args.per_subnet, args.groups, args.rules, args.switches)
    plan, _ = clock.run("policy with groups and ACLs: plan + validate", build_policy, doc)
    state = State(pol.Policy(), "kvm")
    clock.run("policy: commit to State", commit, state, plan)
    clock.run(f"discovery: {args.switches} VRS snapshots", discover, state,
              snapshots(args.vports, args.switches, args.layout))
    programmer = Programmer(state)
    gc.collect()
    _, full = clock.run("full compile with security policies", programmer.refresh, True)
    total, _, per_switch = flow_totals(programmer)
    acl_kinds = ("acl", "acl_port", "acl_switch")
    acl_per_switch = [sum(len(fs) for o, fs in d.flows.items() if o.kind in acl_kinds)
                      for d in programmer.desired.values()]
    distinct = len({id(fs) for d in programmer.desired.values() for o, fs in d.flows.items() if o.kind == "acl"})
    rss_full = rss_kib()

    policy = state.policy.copy()
    mover = dict(policy.find("vport", "bench/s0/v0"))
    mover["policy_groups"] = [policy.find("policy_group", "bench/g1")["id"]]
    policy.put("vport", mover)
    clock.run("vport v0 joins group g1: commit", state.policy_committed, policy, [])
    joined, _ = clock.run("vport v0 joins group g1: refresh", refresh, programmer)
    policy = state.policy.copy()
    acl = dict(policy.find("acl", "bench/a5"))
    acl["rules"] = [dict(acl["rules"][0], ports="2000-2099")] + acl["rules"][1:]
    policy.put("acl", acl)
    clock.run("one rule of a5 changed: commit", state.policy_committed, policy, [])
    changed, _ = clock.run("one rule of a5 changed: refresh", refresh, programmer)
    a5 = Owner("acl", acl["id"])
    holders = sum(1 for d in programmer.desired.values() if a5 in d.flows)

    print(f"\nsecurity policies: {args.vports} vports in {args.groups} groups, {args.groups} ACLs x {args.rules} "
          f"rules between groups, {args.switches} switches ({args.layout})")
    for label, seconds, rss, gc_seconds, _ in clock.rows:
        print(f"  {label:58s} {seconds * 1000:10.1f} ms  RSS {rss / 1024:7,.0f} MiB  gc {gc_seconds * 1000:6.1f} ms")
    print(f"  flows per switch: mean {statistics.mean(per_switch):,.0f}, max {max(per_switch):,} "
          f"(ACL flows: mean {statistics.mean(acl_per_switch):,.0f}, max {max(acl_per_switch):,}); total {total:,}")
    print(f"  compiled ACL flow sets: {distinct} distinct, shared by every switch that needs one "
          f"(a5 is on {holders} switches)")
    print(f"  full compile: {total / full:,.0f} flows/s")
    print(f"  RSS: {rss_start / 1024:,.0f} MiB at start, {rss_full / 1024:,.0f} MiB after the full compile")
    print(f"  group join touched {len(joined)} switches; rule change touched {len(changed)} switches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
