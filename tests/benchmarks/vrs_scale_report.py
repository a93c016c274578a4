"""What tests/benchmarks/vrs_scale.py reports: the run's settings (the OVS daemons' and the controllers' nice, the
controllers' CPU cgroup), each phase's milestones, flow-mods, CPU (the event loop's thread on a CPU and waiting for
one), disconnects, stretches and late lag samples, as lines of text."""

from __future__ import annotations

import contextlib
import io
import os

from tests.benchmarks import health


TARGETS = {"cold_start": "every switch in sync <= 30 s", "restart": "0 flow-mods, 0 disconnects",
           "takeover": "0 disconnects of the survivor, 0 flow-mods"}


PHASES = (("cold_start", "(a) cold start"), ("restart", "(b) restart"),
          ("takeover", "(c) HA takeover (SIGKILL of the active)"))


def report(result: dict) -> list[str]:
    a = result["settings"]
    lines = [f"vrs_scale: {a['vrs']} VRS (userspace OVS), {a['vports']} vports bound as internal ports "
             f"({a['vports'] // a['vrs']} per VRS), one tenant, one domain, {result['subnets']} "
             f"/22 subnets; max_backoff of OVS's Controller and Manager rows: "
             f"{a.get('max_backoff_ms') or 'unset (8 s)'}{' ms' if a.get('max_backoff_ms') else ''}; the OVS daemons "
             f"at nice {a.get('ovs_nice') or 0}" + (" (--ovs-nice: they yield the CPUs to the controller)"
                                                     if a.get("ovs_nice") else " (as the controller)")
             + (f"; the controllers at nice {a['controller_nice']}" if a.get("controller_nice") else "")
             + (f"; the controllers in a CPU cgroup of their own, {result['cpu_group']} (--controller-cpu-weight: "
                "systemd's CPUWeight=)" if result.get("cpu_group") else "")
             + (f"; the OVS daemons in one CPU cgroup, {result['ovs_cpu_group']} (--ovs-cpu-weight)"
                if result.get("ovs_cpu_group") else "")]
    lines.append("  setup: " + ", ".join(f"{k} {v} s" for k, v in result["setup"].items()))
    for name, _ in PHASES:
        if result.get(name) is not None:
            lines += phase_lines(name, result[name], a)
    m = result["machine"]
    lines.append(f"machine: {m['cpus']} CPUs ({m['cpu']}), kernel {m['kernel']}, Python {m['python']}, load "
                 f"average {m['load_average']} at start, {m.get('load_average_end')} at the end")
    return lines


def phase_lines(name: str, ph: dict, a: dict) -> list[str]:
    label = dict(PHASES)[name]
    if "error" in ph:
        return [f"{label}: FAILED: {ph['error']}"]
    lines = [f"{label}: target {TARGETS[name]}"]
    for what, seconds in sorted(ph["milestones"].items(), key=lambda kv: kv[1]):
        lines.append(f"    {seconds:8.2f} s  {what}")
    meter_mods = f", meter-mods {ph['meter_mods']:,}" if "meter_mods" in ph else ""  # (a result of stop 45 or before)
    lines.append(f"    flow-mods {ph['flow_mods']:,}, group-mods {ph['group_mods']:,}{meter_mods}; peak RSS "
                 f"{ph['peak_rss_mb']} MB; max event-loop lag {ph['lag_max_ms']} ms since start, "
                 f"{ph['lag_max_1m_ms']} ms in the last minute")
    cpu = ph.get("cpu_s") or {}
    if cpu:
        lines.append(f"    CPU during the phase ({cpu['wall']} s): controller {cpu['controller']} s, the "
                     f"{a['vrs'] * 2} OVS daemons {cpu['ovs']} s, the whole machine {cpu['machine']} s of "
                     f"{round(cpu['wall'] * (os.cpu_count() or 1), 1)} s")
        if "loop_wait" in cpu:
            nice, group = ph.get("nice") or [None, None]
            lines.append(f"    the event loop's thread: {cpu['loop_cpu']} s on a CPU, {cpu['loop_wait']} s runnable "
                         f"and waiting for one (the machine's share of the lag, not the controller's work); the "
                         f"controller at nice {nice}, its scheduling group at nice {group}, its CPU cgroup "
                         f"{ph.get('cpu_group')}")
    if ph.get("fixed_work_ms"):
        before, after = ph["fixed_work_ms"]
        lines.append(f"    the machine's speed: a fixed piece of Python work took {before} ms of CPU before the phase, "
                     f"{after} ms after it (vrs_scale_probes.fixed_work_ms: CPU figures compare at equal speed)")
    if "resolved_s" in ph:
        rc = ph["cpu_s_resolved"]
        r = ph["resolved_s"]
        lines.append(f"    every VRS resolved every other VTEP (tnl/neigh/show): {r['s']} s ({r['entries']:,} of "
                     f"{r['of']:,} entries); CPU until then "
                     f"({rc['wall']} s): controller {rc['controller']} s, the OVS daemons {rc['ovs']} s, the "
                     f"whole machine {rc['machine']} s")
        if r.get("unresolved"):
            u = r["unresolved"]
            lines.append(f"    unresolved then: {u['pairs']} pairs, {u['askers']} askers, {u['fars']} far sides; the "
                         f"far side's kernel held the asker (its ARP request got there) in {u['far_kernel_knows']}")
    if "upcalls" in ph:
        lines.append(f"    datapath misses handled by an upcall in the {a['vrs']} ovs-vswitchd: "
                     f"{ph['upcalls']['success']:,} ({ph['upcalls']['failed']:,} failed); the kernel's neighbour "
                     f"table full {ph.get('table_fulls', '?')} times (an ARP request unanswered each)")
    lines.append("    " + health.disconnects_line(ph["disconnects"]))
    if ph.get("stretches"):
        lines += stretch_lines(name, ph["stretches"])
    if "pair_setup_s" in ph:
        lines.append(f"    pair built, policy applied, ready in {ph['pair_setup_s']} s; before the kill: "
                     + health.disconnects_line(ph["pair_disconnects_before_kill"]) +
                     f"; OVS's Controller tables: {ph['controller_tables']}; the standby's max lag in the "
                     f"minute before the kill {ph['lag_before_kill_1m_ms']} ms")
        lines.append(f"    {ph['killed']} killed, {ph['survivor']} took over; HA role changes after the first "
                     f"election, before the kill: {len(ph['pair_role_changes_before_kill'])}")
        lines += [f"      {line}" for line in ph["pair_role_changes_before_kill"]]
        if (ph.get("standby_before_kill") or {}).get("late_samples"):
            lines.append(f"    {ph['survivor']} from its start to the kill (its lag since start; at (s): from its "
                         "start):")
            lines += _printed(health.print_late_samples, ph["standby_before_kill"]["late_samples"])
    return lines


def stretch_lines(name: str, traced: dict) -> list[str]:
    """The phase's longest stretches of the controller's CPU (tests.benchmarks.bursts prints them)."""
    return _printed(health.print_stretches, name, traced)


def _printed(printer, *args) -> list[str]:
    """What ``printer(*args)`` prints (a tests.benchmarks.health printer), as lines indented two more."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        printer(*args)
    return ["  " + line for line in out.getvalue().splitlines()]
