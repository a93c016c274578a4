"""What every benchmark prints besides its figures: the controller's event-loop lag and, from the logs, the
sessions that dropped during the run.

- A controller run as a process reports its lag in ``/v1/status`` (``event_loop_lag``: the latest sample, the
  largest of the last minute and since start, controller/lagprobe.py): ``lag_from_status`` reads it and
  ``lag_line`` prints it.
- A benchmark that runs controller code in its own process (no hub of its own) uses ``HubProbe``: the same
  probe in an eventlet green thread. Work that never yields holds the probe exactly as it would hold the
  controller's hub, so ``HubProbe.settle()`` after each step lets the probe see it, and ``max_ms`` is the lag
  that step would have caused in the controller.
- ``disconnects`` counts the OpenFlow, OVSDB, BGP and HA sessions that ended (and HA role changes), in the
  controller's log, in
  ovs-vswitchd's logs (inactivity probes, dropped connections) and in gobgpd's logs.
- ``traced_stretches`` and ``print_stretches``: with ``CANOPY_STRETCH_TRACE`` set (``--stretches N``), the longest
  stretches of the controller's CPU between two turns of its event loop (controller/stretchtrace.py), per step.
- ``run_code``: the lab's controllers run another checkout with this venv (``--code DIR``: before/after).
- ``cpu_model`` for the line saying which machine ran it, ``percentile`` for figures over many samples.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

from controller.lagprobe import LagProbe


def lag_from_status(status: dict | None) -> dict | None:
    """The ``event_loop_lag`` part of a ``/v1/status`` reply (None from a controller without one)."""
    return (status or {}).get("event_loop_lag")


def lag_line(lag: dict | None, label: str = "controller") -> str:
    if not lag:
        return f"max event-loop lag ({label}): not reported"
    return (f"max event-loop lag ({label}): {lag['max_ms']:,.1f} ms since start, {lag['max_1m_ms']:,.1f} ms in the "
            f"last minute ({lag['samples']:,} samples every {lag['interval_ms']:g} ms)" + worst_line(lag.get("worst")))


def worst_line(worst: dict | None) -> str:
    """The longest sample's split (``/v1/status`` ``event_loop_lag.worst``, controller/stallwatch.py), with the
    innermost frames of the loop's first stack taken while it stalled."""
    if not worst:
        return ""
    line = (f"; the worst, at {worst['at_s']:,.1f} s from start: {worst['cpu_ms']:.1f} ms of the loop's CPU (collector "
            f"{worst.get('collector_ms', 0.0):.1f}) + {worst['run_delay_ms']:.1f} waiting for a CPU + "
            f"{worst['off_cpu_ms']:.1f} off CPU")
    if "off_cpu_late_ms" in worst:  # a controller older than stop 36 does not say
        line += f" ({worst['off_cpu_late_ms']:.1f} past the probe's sleep)"
    stacks = worst.get("stacks") or []
    if stacks:
        line += f"; at {stacks[0]['overdue_ms']:.0f} ms overdue the loop was in " + " < ".join(stacks[0]["stack"][:4])
    return line


class HubProbe:
    """The lag probe in an eventlet green thread of this process (see the module docstring)."""

    def __init__(self, interval: float = 0.05):
        import eventlet

        self._eventlet = eventlet
        self._since = 0.0  # the largest sample since the last settle()
        self.probe = LagProbe(interval=interval, on_sample=self._sample)
        self._thread = eventlet.spawn(self.probe.run, eventlet.sleep)
        for _ in range(3):  # the first turns of a new hub are slow: not a step's doing
            self.settle()

    def _sample(self, lag: float) -> None:
        self._since = max(self._since, lag)

    def settle(self) -> float:
        """Give the probe its turn (it records the stretch just run); the largest sample since the last
        settle(), in ms."""
        self._eventlet.sleep(self.probe.interval * 2)
        since, self._since = self._since, 0.0
        return since * 1000

    @property
    def max_ms(self) -> float:
        return self.probe.max_ever * 1000

    def close(self) -> None:
        self._thread.kill()


DISCONNECT_PATTERNS = {
    "OpenFlow (controller log)": re.compile(r"datapath \S+ disconnected"),
    "OVSDB (controller log)": re.compile(r"(VRS|hardware VTEP) \S+ \(OVSDB \S+\) disconnected"),
    # a session that ends and comes back within the reconnect grace is no switch leaving: logged only as this
    "OVSDB session closed (controller log)": re.compile(r"ovsdb \S+: ((hardware_vtep )?connection closed by peer|"
                                                        r"dropping (the session|connection))"),
    "BGP (controller log)": re.compile(r"BGP peer \S+ is down"),
    "HA role change (controller log)": re.compile(r"HA: now \w+ \(generation"),
    "HA link lost (controller log)": re.compile(r"HA link \S+: (connection to peer lost|peer closed our connection)"),
    "OVS inactivity probe (ovs-vswitchd log)": re.compile(r"no response to inactivity probe"),
    "OVS connection dropped (ovs-vswitchd log)": re.compile(r"connection dropped"),
    "BGP (gobgpd log)": re.compile(r"Peer Down", re.IGNORECASE),
    "HA link (controller log)": re.compile(r"HA link \S+: (connection to peer lost|peer closed our connection|"
                                           r"send to \S+ failed)"),
}


def disconnects(controller_logs=(), ovs_logs=(), gobgp_logs=(), since: dict | None = None,
                ovs_filter: str | None = None) -> dict:
    """{what: count} of session ends in the logs (paths); ``since``: {path: byte offset} to count only what
    was written after it (``log_offsets`` at the start of a run); ``ovs_filter``: count only the ovs-vswitchd
    log lines containing it (a controller's address, when another controller's connections end by design)."""
    sources = {"controller log": controller_logs, "ovs-vswitchd log": ovs_logs, "gobgpd log": gobgp_logs}
    counts = dict.fromkeys(DISCONNECT_PATTERNS, 0)
    for source, paths in sources.items():
        for path in paths:
            text = _read_from(Path(path), (since or {}).get(str(path), 0))
            if ovs_filter is not None and source == "ovs-vswitchd log":
                text = "\n".join(line for line in text.splitlines() if ovs_filter in line)
            for what, pattern in DISCONNECT_PATTERNS.items():
                if what.endswith(f"({source})"):
                    counts[what] += len(pattern.findall(text))
    return counts


def log_offsets(*paths) -> dict:
    """{path: current size}: where ``disconnects(..., since=...)`` starts counting."""
    return {str(p): (Path(p).stat().st_size if Path(p).exists() else 0) for p in paths}


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def disconnects_line(counts: dict) -> str:
    total = sum(counts.values())
    detail = ", ".join(f"{what} {n}" for what, n in counts.items() if n)
    return f"disconnects during the run: {total}" + (f" ({detail})" if detail else "")


def run_code(lab, code: str) -> None:
    """The lab's controllers run the checkout at ``code`` (port_to_ping's ``--before`` does the same); ``-P``: the
    current directory (a checkout of its own when the benchmark is started from one) does not come first."""
    lab.controller_argv = lambda path: ["env", f"PYTHONPATH={code}", sys.executable, "-P", "-c",
                                        "from controller.cli import main; main()", "run", "--config", str(path)]


def run_niced(lab, nice: int) -> None:
    """The lab's controllers run at ``nice``, their session's scheduling group too (tests/harness/process.py
    ``renice``: the lab starts each in a session of its own, and where the kernel groups by session a process's nice
    counts only inside its group): a larger share of CPUs the benchmark's other processes (emulated hypervisors,
    each a group of its own) also use, as an operator gives the controller cores or a CPU weight of its own
    (docs/operations.md). The group's nice is set by the shell that then runs the controller in its place."""
    argv = lab.controller_argv
    script = f'echo {nice} > /proc/self/autogroup 2>/dev/null; exec nice -n {nice} "$@"'
    lab.controller_argv = lambda path: ["sh", "-c", script, "niced", *argv(path)]


def traced_stretches(api, reset: bool = False) -> dict | None:
    """The controller's traced stretches (``GET``, or ``DELETE`` to start over); None when it does not trace them
    (``CANOPY_STRETCH_TRACE`` unset, or ``--code`` of a checkout without the tracer: 404)."""
    reply = api.delete("/v1/stretches") if reset else api.get("/v1/stretches")
    return reply.json if reply.status == 200 else None


def print_stretches(name: str, traced: dict | None) -> None:
    """One step's longest stretches of the controller's CPU: where each ended and its most sampled stack."""
    if not traced:
        return
    print(f"  {name}: the {len(traced['stretches'])} longest stretches of CPU between two turns of the event loop "
          f"(of {traced['switches']:,} switches, {traced['cpu_ms']:,.0f} ms CPU in all):")
    for s in traced["stretches"]:
        sampled = s["sampled"][0] if s["sampled"] else None
        collector = f" ({s['collector_ms']:.1f} ms of it the collector)" if s.get("collector_ms", 0) >= 1 else ""
        print(f"    {s['cpu_ms']:8.1f} ms  ended in {' < '.join(s['ended_in'][:5])}{collector}")
        if sampled is not None:
            print(f"{'':17}{sampled['count']} of {s['samples']} samples in {' < '.join(sampled['stack'][:5])}")
    print_collections(traced.get("collections"))
    print_off_cpu(traced.get("off_cpu"))
    print_late_samples(traced.get("late_samples"))


def print_off_cpu(stretches: list | None, count: int = 3) -> None:
    """Green threads' turns whose wall clock was far above their CPU (a wait inside the turn)."""
    _print_longest(stretches, count, "turns with the most wall clock beyond their CPU", lambda s: (
        f"{s['wall_ms'] - s['cpu_ms']:8.1f} ms  off CPU ({s['wall_ms']:.1f} ms wall, {s['cpu_ms']:.1f} ms CPU), "
        f"ended in {' < '.join(s['ended_in'][:4])}"))


GREEN_GROUPS = 6  # groups of green threads printed under each late sample


def print_late_samples(samples: list | None, count: int = 5) -> None:
    """The lag probe's longest samples, each late interval split (controller/lagcause.py): the event loop's thread
    on CPU, waiting for a CPU, off CPU; the other threads' CPU; the turns of green threads it held; when it ended
    (seconds from the controller's start); under each, the green threads whose turns filled it, grouped by the
    function each began with."""
    if not samples:
        return
    print(f"    why the {min(count, len(samples))} longest lag samples were late (the interval from the probe's sleep "
          f"to its wake-up, ms):")
    print(f"    {'lag':>8} {'wall':>7} {'loop CPU':>9} {'CPU wait':>9} {'off CPU':>8} {'others':>7} {'turns':>6} "
          f"{'longest':>8} {'at (s)':>7}  busiest other threads")
    for s in samples[:count]:
        threads = ", ".join(f"{t['thread']} {t['cpu_ms']:.1f}" for t in s.get("threads", [])) or "-"
        print(f"    {s['lag_ms']:8.1f} {s['wall_ms']:7.1f} {s['cpu_ms']:9.1f} {s['run_delay_ms']:9.1f} "
              f"{s['off_cpu_ms']:8.1f} {s['others_cpu_ms']:7.1f} {s.get('turns', 0):6,} {s.get('longest_ms', 0):8.1f}"
              f" {s.get('at_s', 0):7.1f}  {threads}")
        for group in s.get("green_threads", [])[:GREEN_GROUPS]:
            now = " < ".join(group["now"][:4]) or "-"
            print(f"{'':14}{group['cpu_ms']:7.1f} ms in {group['turns']:4,} turns of {group['threads']:3} green threads "
                  f"begun in {group['root']}; the busiest now in {now}")


def print_collections(collections: list | None, count: int = 3) -> None:
    """The longest cyclic garbage collections of the step (a controller with controller/collector.py's policy)."""
    _print_longest(collections, count, "longest collections of the cyclic garbage collector", lambda c: (
        f"{c['cpu_ms']:8.1f} ms  generation {c['generation']}, {c['collected']:,} unreachable, "
        f"{c['thread']} in {' < '.join(c['where'][:4])}"))


def _print_longest(items: list | None, count: int, title: str, line) -> None:
    """``the N <title>:`` and one ``line(item)`` each, for the first ``count`` of ``items`` (nothing without)."""
    if not items:
        return
    print(f"    the {min(count, len(items))} {title}:")
    for item in items[:count]:
        print(f"    {line(item)}")


def cpu_model() -> str:
    """The machine's CPU model as ``/proc/cpuinfo`` names it ("?" where it does not)."""
    try:
        with open("/proc/cpuinfo") as info:
            return next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "?")
    except OSError:
        return "?"


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (NaN of no values)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * pct / 100) - 1)] if ordered else float("nan")
