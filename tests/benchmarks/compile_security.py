"""compile_scale's security policy case (``.venv/bin/python -m tests.benchmarks.compile_scale --security-policy``):
the same layout with policy groups and ACLs between them, against the layout without them, in one run."""

from __future__ import annotations

import gc
import logging
import statistics
import time

from controller import policy as pol
from controller.programmer import Programmer
from controller.state import State
from controller.store import Change
from tests.benchmarks.compile_scale import (Changes, Clock, Layout, build_policy, commit, discover, document,
                                            flow_totals, machine, peak_rss_mib, rss_kib, snapshots)


def security_document(lay: Layout, prefixlen: int, groups: int, rules: int) -> dict:
    """The base document (one tenant), plus: vport i (spare ones too) in policy group g<(i // switches) % groups>
    (with the spread layout every switch has members of every group: every ACL on every switch, the worst case);
    ACL a<g> applied to g<g>, with ``rules`` ingress rules: allow tcp port 1000+r from group g<(g + r + 1) %
    groups>, stateful."""
    doc = document(lay, prefixlen)
    tenant = doc["tenants"][0]
    for vport in (v for d in tenant["domains"] for s in d["subnets"] for v in s["vports"]):
        vport["policy_groups"] = [f"g{(int(vport['name'][1:]) // lay.switches) % groups}"]
    tenant["policy_groups"] = [{"name": f"g{g}"} for g in range(groups)]
    tenant["acls"] = [{"name": f"a{g}", "policy_groups": [f"g{g}"], "rules": [
        {"direction": "ingress", "action": "allow", "protocol": "tcp", "ports": str(1000 + r),
         "remote_group": f"g{(g + r + 1) % groups}"} for r in range(rules)]} for g in range(groups)]
    return doc


class PolicyChanges:
    """Security policy changes, each committed with its change list (as REST and apply do) and timed from the
    commit entering State to refresh() done: a rule appended to an ACL and removed again, a vport joining a
    second policy group and leaving it again."""

    KINDS = ("rule added", "rule removed", "vport joins a group", "vport leaves it")

    def __init__(self, state: State, programmer: Programmer, groups: int):
        self.state, self.programmer, self.groups = state, programmer, groups
        self.rows = {kind: [] for kind in self.KINDS}

    def run(self, count: int) -> None:
        p = self.state.policy
        acls = sorted(p.all("acl"), key=lambda a: int(a["name"][1:]))
        group_ids = {g["name"]: g["id"] for g in p.all("policy_group")}
        vports = sorted((v for v in p.all("vport") if v["id"] in self.state.locations), key=lambda v: v["name"])
        for k in range(count):
            acl = acls[k % len(acls)]
            extra = {"direction": "ingress", "action": "allow", "protocol": "udp", "ports": str(5000 + k),
                     "remote_group": group_ids[f"g{(k + 7) % self.groups}"]}
            self._timed("rule added", "acl", dict(acl, rules=acl["rules"] + [_rule_body(extra)]))
            self._timed("rule removed", "acl", acl)
            vport = vports[(k * 97) % len(vports)]
            own = (int(vport["name"][1:]) // len(self.state.vrs)) % self.groups
            other = group_ids[f"g{(own + 1 + k % (self.groups - 1)) % self.groups}"]
            self._timed("vport joins a group", "vport", dict(vport, policy_groups=vport["policy_groups"] + [other]))
            self._timed("vport leaves it", "vport", vport)

    def _timed(self, kind: str, what: str, obj: dict) -> None:
        policy = self.state.policy.copy()
        policy.put(what, obj)
        change = Change(what, obj["id"], "put", obj, self.state.last_seq + 1)
        started, cpu = time.perf_counter(), time.process_time()
        self.state.policy_committed(policy, [change])
        touched = self.programmer.refresh()
        done, cpu = time.perf_counter(), time.process_time() - cpu
        t = self.programmer.timings
        self.rows[kind].append((done - started, cpu, t.get("derive", 0.0), t.get("compile", 0.0), len(touched)))

    def report(self) -> list[str]:
        lines = [f"{'policy change (median of ' + str(len(self.rows['rule added'])) + ')':32} {'total ms':>9} "
                 f"{'CPU ms':>8} {'derive':>8} {'compile':>8}  switches touched (min/median/max)"]
        for kind, rows in self.rows.items():
            med = [statistics.median(r[c] for r in rows) * 1000 for c in range(4)]
            touched = [r[4] for r in rows]
            lines.append(f"  {kind:30} {med[0]:9.2f} {med[1]:8.2f} {med[2]:8.2f} {med[3]:8.2f}  "
                         f"{min(touched)}/{statistics.median(touched):.0f}/{max(touched)}")
        return lines


def _rule_body(rule: dict) -> dict:
    """A rule as stored (every field present), from the fields given."""
    return {"direction": "ingress", "action": "allow", "priority": None, "protocol": "any", "remote": "0.0.0.0/0",
            "remote_subnet": None, "remote_group": None, "ports": None, "source_ports": None, "icmp_type": None,
            "icmp_code": None, "stateful": True, **rule}


def scale_run(lay: Layout, doc: dict, label: str, samples: int, policy_samples: int, groups: int) -> dict:
    """One layout: plan, commit, discovery, full compile, per-change medians (and policy changes when the
    document has groups); returns the figures."""
    clock = Clock(False)
    rss_start = rss_kib()
    plan, _ = clock.run(f"{label}: plan + validate", build_policy, doc)
    state = State(pol.Policy(), "kvm")
    clock.run(f"{label}: commit to State", commit, state, plan)
    del plan
    snaps = snapshots(lay)
    clock.run(f"{label}: discovery, {lay.switches} VRS", discover, state, snaps)
    if len(state.locations) != lay.vports:
        raise SystemExit(f"only {len(state.locations)} of {lay.vports} vports bound")
    programmer = Programmer(state)
    gc.collect()
    rss_before = rss_kib()
    _, full = clock.run(f"{label}: full compile (refresh(full=True))", programmer.refresh, True)
    full_cpu = clock.rows[-1][5]
    total, _, per_switch, distinct_sets, distinct_flows = flow_totals(programmer)
    acl_kinds = ("acl", "acl_port", "acl_switch")
    acl_per_switch = [sum(len(fs) for o, fs in d.flows.items() if o.kind in acl_kinds)
                      for d in programmer.desired.values()]
    out = {"clock": clock, "full": full, "full_cpu": full_cpu, "total": total, "per_switch": per_switch,
           "acl_per_switch": acl_per_switch, "distinct_flows": distinct_flows, "distinct_sets": distinct_sets,
           "rss_start": rss_start, "rss_before": rss_before, "rss_compiled": rss_kib(), "peak": peak_rss_mib()}
    changes = Changes(state, programmer, lay, [s.session for s in snaps], False)
    changes.run(samples)
    out["changes"] = changes
    if groups:
        policy_changes = PolicyChanges(state, programmer, groups)
        policy_changes.run(policy_samples)
        out["policy_changes"] = policy_changes
    out["recomputes"] = programmer.full_recomputes
    return out


def print_run(r: dict) -> None:
    for label, seconds, rss, gc_seconds, gc_full, cpu in r["clock"].rows:
        print(f"  {label:62} {seconds:9.3f} s {cpu:8.3f} s CPU  RSS {rss / 1024:7,.0f} MiB  GC {gc_seconds:6.3f} s")
    ps, aps = r["per_switch"], r["acl_per_switch"]
    print(f"  flows per switch: min {min(ps):,}, median {statistics.median(ps):,.0f}, max {max(ps):,} (ACL flows: "
          f"median {statistics.median(aps):,.0f}, max {max(aps):,}); held {r['total']:,}; distinct "
          f"{r['distinct_flows']:,} in {r['distinct_sets']:,} flow sets")
    print(f"  full compile {r['full']:.2f} s wall, {r['full_cpu']:.2f} s CPU; RSS {r['rss_before'] / 1024:,.0f} MiB "
          f"before, {r['rss_compiled'] / 1024:,.0f} MiB after; peak RSS so far {r['peak']:,.0f} MiB")
    for line in r["changes"].report():
        print(line)
    if "policy_changes" in r:
        for line in r["policy_changes"].report():
            print(line)
    print(f"  full recomputes: {r['recomputes']} (every change after the first compile was incremental)")


def security_policy_case(args) -> int:
    """``--security-policy``: --vports vports in --groups policy groups, one ACL of --rules rules between groups
    per group, bound over --switches VRS (--layout). Measures it (full compile, flows per switch and how many are
    ACL flows, RSS, the vport add/move/remove medians of issue 13 and the policy changes of ``PolicyChanges``), then
    the same layout without security policies as the baseline, in the same run."""
    if args.tenants != 1 or args.groups < 2:
        raise SystemExit("--security-policy takes one tenant and at least two groups")
    logging.getLogger("canopy").setLevel(logging.ERROR)  # synthetic bridges are not fail-secure: no warning each
    lay = Layout(args.vports, args.switches, 1, args.per_subnet, args.layout, args.span, args.samples)
    print(f"Canopy compile scale with security policies: {args.vports:,} vports on {args.switches} VRS "
          f"({args.layout}), {args.groups} policy groups, one ACL of {args.rules} rules between groups per group, "
          f"/22 subnets of up to {args.per_subnet} vports; in-process")
    print(f"machine: {machine()}")
    doc = security_document(lay, 22, args.groups, args.rules)
    secured = scale_run(lay, doc, "with policies", args.samples, args.policy_samples, args.groups)
    print_run(secured)
    peak = secured["peak"]
    del secured, doc
    gc.collect()
    print(f"baseline, same run: the same layout without security policies (machine: {machine()})")
    base = scale_run(lay, document(lay, 22), "no policies", args.samples, 0, 0)
    print_run(base)
    print(f"peak RSS with policies (measured before the baseline ran): {peak:,.0f} MiB")
    return 0
