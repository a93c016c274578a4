"""What the EVPN route benchmark (tests/benchmarks/evpn_routes.py) reports: its phases' rates against the baseline's,
the clocks stamped inside each phase, CPU seconds, stretches, lag and disconnects, as a dict (``--json``) or a table.
A result recorded with ``--json`` prints as the table again:
``python -m tests.benchmarks.evpn_routes_report FILE``."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from typing import TYPE_CHECKING

from tests.benchmarks import health
from tests.benchmarks.evpn_routes_floor import FLOOR_HV, floor as withdraw_floor

if TYPE_CHECKING:
    from tests.benchmarks.evpn_routes import Bench


ROWS = {
    "announce": ("ports added (one OVSDB transaction) until GoBGP A holds Canopy's routes",
                 "the feeder writes the same routes to A until A holds them"),
    "withdraw": ("ports deleted until A holds none of them", "the feeder writes their withdrawals until A holds none"),
    "receive": ("A releases its routes to Canopy until br-int has every MAC's flow",
                "A releases them to GoBGP Y until Y holds them"),
    "receive_withdraw": ("the feeder withdraws them at A until br-int has none of the flows",
                         "the same withdrawals, until Y holds none (same event, same time)"),
}

RECEIVE_WITHDRAW_COUNTS = {"y": "GoBGP Y's routes", "received": "Canopy's speaker's routes", "flows": "br-int's flows"}


def report(b: Bench, phases: dict, rounds: list | None = None) -> dict:
    """The result: ``phases`` (the first round's) in full; with more than one round (``--rounds``), each round's
    seconds, baseline seconds and ratio per phase in ``rounds``."""
    b.trace_stretches(b.last_marks, "stretches_after")
    rows = []
    for key, (marks, seconds, base_marks, base_seconds) in phases.items():
        seconds, base_seconds = max(seconds, 1e-6), max(base_seconds, 1e-6)  # a probe's first poll is 0 s
        rows.append({"phase": key, "routes": b.n, "seconds": seconds, "routes_per_s": b.n / seconds,
                     "baseline_seconds": base_seconds, "baseline_routes_per_s": b.n / base_seconds,
                     "ratio": base_seconds / seconds, "canopy": ROWS[key][0], "baseline": ROWS[key][1],
                     "marks": marks, "baseline_marks": base_marks})
        if "floor_ovsdb" in marks:  # the withdraw's floor: its two pieces, summed
            rows[-1]["floor"] = withdraw_floor(marks, base_seconds, seconds)
    done = subprocess.run(["gobgpd", "--version"], capture_output=True, text=True, timeout=10)
    return {"routes": b.n, "code": b.args.code or "this checkout", "rows": rows, "setup_seconds": b.setup,
            "gobgpd": done.stdout.strip(),
            "lag": health.lag_from_status(b.canopy.api.get("/v1/status").json), "disconnects": b.disconnects(),
            "speaker": b.canopy.api.get("/v1/bgp/peers").json["speaker"], "rounds": [{
                key: {"seconds": seconds, "baseline_seconds": base_seconds, "ratio": base_seconds / max(seconds, 1e-6),
                      "load": marks.get("load")}
                for key, (marks, seconds, _, base_seconds) in phases_of_round.items()}
                for phases_of_round in (rounds or [phases])],
            "machine": {"cpus": os.cpu_count(), "cpu": health.cpu_model(), "load_average": os.getloadavg(),
                        "python": sys.version.split()[0]}}


def as_recorded(result: dict) -> dict:
    """``result`` as ``--json`` records it (the share stamps' float keys, 0.0 to 0.75, become "0.0" to "0.75"): the
    table reads that form only, so a live result and one loaded back from a file print alike."""
    return json.loads(json.dumps(result))


def print_table(result: dict) -> None:
    result = as_recorded(result)
    rows = {row["phase"]: row for row in result["rows"]}
    print(f"EVPN type-2 routes, N = {result['routes']:,}: one controller (ExaBGP), one KVM hypervisor (userspace "
          f"OVS), {result['gobgpd']}; controller: {result['code']}; load average at the end "
          f"{', '.join(f'{x:.2f}' for x in result['machine']['load_average'])}; the controller's CPU: "
          f"{result.get('cpu_group') or 'no group of its own (the default weight)'}")
    print(f"  {'phase':17} {'seconds':>8} {'routes/s':>9}   {'baseline s':>10} {'routes/s':>9}   {'rate ratio':>10}")
    for row in result["rows"]:
        print(f"  {row['phase']:17} {row['seconds']:8.2f} {row['routes_per_s']:9,.0f}   {row['baseline_seconds']:10.2f}"
              f" {row['baseline_routes_per_s']:9,.0f}   {row['ratio']:9.2f}x")
    print("  rate ratio: Canopy's routes/s over the baseline's (below 1: Canopy is slower)")
    print_rounds(result.get("rounds") or [])
    for key, row in rows.items():
        print(f"  {key}: Canopy = {row['canopy']}; baseline = {row['baseline']}")
    for key, what in (("announce", "bound"), ("withdraw", "unbound")):
        marks = rows[key]["marks"]
        print(f"  {key}: OVSDB transaction {marks['action']:.2f} s, Canopy logged the last vport {what} at "
              f"{fmt(marks['logged'])} s, ExaBGP had acknowledged every command at {fmt(marks['acked'])} s")
    for key, what in (("announce", "held some of the routes, a quarter"), ("withdraw", "held fewer, a quarter gone")):
        for label, marks in ((key, rows[key]["marks"]), ("baseline", rows[key]["baseline_marks"])):
            print(f"  {label}: A first {what}, half, three quarters at "
                  + ", ".join(f"{fmt(at)}" for at in marks["filling"].values()) + " s")
    packed = rows["announce"]["marks"].get("packed")
    if packed:
        print("  A's intake of Canopy's routes packed as its ExaBGP packs them, fed at once: first, a quarter, half, "
              f"three quarters, all at {', '.join(fmt(packed[k]) for k in ('0.0', '0.25', '0.5', '0.75', 'all'))} s "
              f"(gobgpd A {packed['cpu']:.2f} CPU s)")
    print("  withdraw: A held none " + intake(rows["withdraw"], "seconds", "marks") + " after it first held fewer; "
          "baseline: " + intake(rows["withdraw"], "baseline_seconds", "baseline_marks"))
    if "floor" in rows["withdraw"]:
        print_floor(rows["withdraw"])
    for key in ("receive", "receive_withdraw"):
        print(f"  {key}: Canopy's speaker had {'all' if key == 'receive' else 'none'} of the routes at "
              f"{fmt(rows[key]['marks']['received'])} s")
    filling = rows["receive_withdraw"]["marks"].get("filling")
    if filling:  # recorded since rw44 (stop 44)
        print("  receive_withdraw: first fewer, a quarter gone, half, three quarters: " + "; ".join(
            f"{RECEIVE_WITHDRAW_COUNTS[name]} {', '.join(fmt(at) for at in shares.values())} s"
            for name, shares in filling.items()))
    names = list(result["rows"][0]["marks"]["cpu"])
    print(f"  CPU seconds during each phase    {''.join(f'{name:>11}' for name in names)}")
    for row in result["rows"]:
        for label, marks in ((row["phase"], row["marks"]), (f"  baseline {row['phase']}", row["baseline_marks"])):
            if label.strip() != "baseline receive_withdraw":  # the same event as receive_withdraw
                cpu = marks["cpu"]
                print(f"    {label:30}{''.join(f'{cpu[name]:11.2f}' for name in names)}")
    for row in result["rows"]:
        for label, marks in ((row["phase"], row["marks"]), (f"baseline {row['phase']}", row["baseline_marks"])):
            if label != "baseline receive_withdraw":
                health.print_stretches(label, marks.get("stretches"))
                health.print_stretches(f"after {label}, until the next step", marks.get("stretches_after"))
    print("  max event-loop lag in the last minute at the end of each phase (ms): " + ", ".join(
        f"{row['phase']} {fmt_lag(row['marks'].get('lag'))}" for row in result["rows"]))
    print("  " + health.lag_line(result["lag"]))
    print("  " + health.disconnects_line(result["disconnects"]))
    speaker = result["speaker"]
    print(f"  ExaBGP restarts {speaker['restarts']}; longest wait for an acknowledgement "
          f"{speaker.get('api_longest_quiet', '-')} s of real time, {speaker.get('api_longest_wait', '-')} s without "
          f"the speaker's own pauses (the watchdog reports its peers down at 5 s of that: bgp/watchdog.py)")
    print("  setup: " + ", ".join(f"{label} {seconds:.1f} s" for label, seconds in result["setup_seconds"].items()))


def print_rounds(rounds: list) -> None:
    """With more than one round (``--rounds``): each phase's ratio in every round (Canopy's seconds / the baseline's,
    the load average when the phase began), their median and the worst."""
    if len(rounds) < 2:
        return
    print(f"  {len(rounds)} rounds (each phase and its baseline in turn); ratio (Canopy s / baseline s, 1-minute load "
          "at the phase's start) per round; median, worst:")
    for phase in rounds[0]:
        ratios = [r[phase]["ratio"] for r in rounds]
        each = ", ".join(f"{r[phase]['ratio']:.2f}x ({r[phase]['seconds']:.2f} / {r[phase]['baseline_seconds']:.2f}"
                         + (f", {r[phase]['load']:.1f}" if r[phase].get("load") is not None else "") + ")"
                         for r in rounds)
        print(f"    {phase:17} {each}; median {statistics.median(ratios):.2f}x, worst {min(ratios):.2f}x")


def intake(row: dict, seconds: str, marks: str) -> str:
    """How long A took from the first route it dropped to the last (its intake of the withdrawals)."""
    first = row[marks]["filling"]["0.0"]
    return "?" if first is None else f"{row[seconds] - first:.2f} s"


def fmt_lag(lag) -> str:
    return "?" if not lag else f"{lag['max_1m_ms']:,.1f}"


def fmt(value) -> str:
    return "?" if value is None else f"{value:.2f}"


def print_floor(row: dict) -> None:
    """The withdraw's floor (tests/benchmarks/evpn_routes_floor.py): its pieces, their stamps and CPU, the ratios."""
    ovsdb, packed, result = row["marks"]["floor_ovsdb"], row["marks"]["floor_intake"], row["floor"]
    print(f"  withdraw floor (a): the same delete on {FLOOR_HV} (a hypervisor of its own), {len(ovsdb['runs'])} times;"
          f" the median: answered at {fmt(ovsdb['answer'])} s, a bare monitor of Canopy's columns had the update's "
          f"first bytes at {fmt(ovsdb['first_bytes'])} s, all {ovsdb['bytes']:,} at {ovsdb['update']:.2f} s (CPU s: "
          + ", ".join(f"{name} {cpu:.2f}" for name, cpu in ovsdb["cpu"].items()) + "); each (answer / update, load): "
          + ", ".join(f"{fmt(run['answer'])} / {run['update']:.2f} ({run['load']:.1f})" for run in ovsdb["runs"]))
    cpu = packed["cpu"]
    print(f"  withdraw floor (b): A's intake of Canopy's withdrawals packed as its ExaBGP packs them "
          f"({packed['updates']:,} UPDATEs, {packed['bytes']:,} bytes), fed at once: first fewer, a quarter, half, "
          "three quarters gone, none at " + ", ".join(fmt(at) for at in packed["filling"].values())
          + f", {packed['gobgp']:.2f} s (CPU s: gobgpd A {cpu['gobgpd A']:.2f}, Y {cpu['gobgpd Y']:.2f}, "
          f"ExaBGP {cpu['exabgp']:.2f})")
    print(f"  withdraw floor = (a) + (b) = {result['ovsdb']:.2f} + {result['intake']:.2f} = {result['seconds']:.2f} s:"
          f" floor/baseline rate ratio {result['floor_ratio']:.2f}x; Canopy's rate over the floor's "
          f"{result['canopy_over_floor']:.2f}x; Canopy behind the floor before A's first withdrawal "
          f"{fmt(result['behind_before_first'])} s, in A's intake after it {fmt(result['behind_in_intake'])} s")


def main(argv=None) -> int:
    """Print the table of a result ``evpn_routes --json`` recorded (a file, or - for standard input)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m tests.benchmarks.evpn_routes_report FILE (a result of evpn_routes --json; - for stdin)",
              file=sys.stderr)
        return 2
    print_table(json.load(sys.stdin if args[0] == "-" else open(args[0], encoding="utf-8")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
