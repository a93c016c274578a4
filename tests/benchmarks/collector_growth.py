"""The cyclic collector while long-lived state grows, with and without the controller's policy (in-process).

    .venv/bin/python -m tests.benchmarks.collector_growth [--objects 3000000]

A heap grows by ``--objects`` long-lived objects (tuples, lists and dicts, as read-backs, reports and a compile
leave them; one small cyclic garbage list every 7), with the collector on as in Ryu's receive loop. Each run is a
process of its own (a fresh heap), once with controller/collector.py's policy off (Python's collector as it is)
and once on (survivors of a full collection frozen). Prints per generation: collections, the longest and the CPU
of all (``time.thread_time``: not the machine's load), peak RSS, and with the policy the refresh that frees the
cyclic garbage freezing kept (the one collection left that walks the whole heap). Not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def grow(objects: int, policy: bool) -> dict:
    from controller.collector import Collections

    watch = Collections(freeze_after_full=policy)
    watch.install()
    kept = []
    started = time.thread_time()
    for i in range(objects):
        kept.append((i, [i], {"i": i}) if i % 3 == 0 else [i])
        if i % 7 == 0:
            garbage = [None]
            garbage[0] = garbage
    result = {"policy": policy, "cpu_s": round(time.thread_time() - started, 2), "generations": watch.figures(),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if policy:
        result["refresh"] = watch.refresh()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=3_000_000)
    parser.add_argument("--child", choices=("on", "off"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(grow(args.objects, args.child == "on")))
        return
    for mode in ("off", "on"):
        out = subprocess.run([sys.executable, "-m", "tests.benchmarks.collector_growth", "--objects",
                              str(args.objects), "--child", mode], check=True, capture_output=True, text=True)
        r = json.loads(out.stdout)
        print(f"policy {mode}: {args.objects:,} objects kept in {r['cpu_s']} s CPU, peak RSS {r['peak_rss_mb']} MB")
        for g in r["generations"]:
            print(f"  generation {g['generation']}: {g['collections']:,} collections, longest "
                  f"{g['max_seconds'] * 1000:.1f} ms, {g['seconds'] * 1000:.0f} ms CPU in all, "
                  f"{g['collected']:,} unreachable freed")
        if "refresh" in r:
            f = r["refresh"]
            print(f"  refresh: {f['frozen_before']:,} frozen objects walked in {f['cpu_seconds'] * 1000:.0f} ms "
                  f"CPU, {f['collected']:,} unreachable freed")


if __name__ == "__main__":
    main()
