"""A burst of concurrent REST writes: how fast they are acknowledged (each durable: SQLite synchronous=FULL),
and whether the controller keeps answering meanwhile (docs/benchmarks.md, write_burst).

    .venv/bin/python -m tests.benchmarks.write_burst [--writes 2000] [--writers 16]

Lab (tests.harness.lab): one controller in its namespace, nothing else. ``--writers`` client threads POST
``--writes`` tenants in all (``POST /v1/tenants``, one object each: the cheapest write, so the figure is the
write path and the disk, not policy validation), while one more thread asks ``GET /v1/status`` every 20 ms
and times each answer. Baseline, in the same run: the same status requests with no write going on (before
the burst). Printed: writes acknowledged per second, the status latency with and without the burst, and
the controller's event-loop lag (``/v1/status`` event_loop_lag) at the end. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time

from tests.benchmarks import health
from tests.harness.lab import Lab

STATUS_EVERY = 0.02  # seconds between status requests


def status_latencies(api, stop: threading.Event, out: list, count: int | None = None) -> None:
    """Time GET /v1/status every STATUS_EVERY s until ``stop`` (or ``count`` answers); ms into ``out``."""
    while not stop.is_set() and (count is None or len(out) < count):
        started = time.monotonic()
        reply = api.get("/v1/status")
        if reply.status == 200:
            out.append((time.monotonic() - started) * 1000)
        time.sleep(max(0.0, STATUS_EVERY - (time.monotonic() - started)))


def writer(api, names: list[str], acked: list, errors: list) -> None:
    for name in names:
        reply = api.post("/v1/tenants", {"name": name})
        (acked if reply.status == 201 else errors).append((name, reply.status))


def figures(values: list[float]) -> str:
    if not values:
        return "no answer"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return (f"n={len(values):5}  median {statistics.median(values):7.1f}  p95 {p95:7.1f}  max {ordered[-1]:7.1f} ms")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--writers", type=int, default=16)
    args = parser.parse_args(argv)
    with Lab() as lab:
        ctl = lab.add_controller_host("ctl1")
        canopy = lab.start_controller(ctl)
        api = canopy.api
        idle: list[float] = []
        status_latencies(api, threading.Event(), idle, count=200)
        names = [f"burst-{i}" for i in range(args.writes)]
        acked, errors, busy, stop = [], [], [], threading.Event()
        prober = threading.Thread(target=status_latencies, args=(api, stop, busy), daemon=True)
        writers = [threading.Thread(target=writer, args=(api, names[w::args.writers], acked, errors), daemon=True)
                   for w in range(args.writers)]
        prober.start()
        started = time.monotonic()
        for thread in writers:
            thread.start()
        for thread in writers:
            thread.join(900)
        seconds = time.monotonic() - started
        stop.set()
        prober.join(10)
        status = api.get("/v1/status").json
        stored = sum(1 for t in api.get("/v1/tenants").json["items"] if t["name"].startswith("burst-"))
    print(f"REST write burst: {args.writes:,} tenants POSTed by {args.writers} concurrent clients, one controller")
    print(f"  acknowledged {len(acked):,} ({len(errors)} refused) in {seconds:.2f} s: {len(acked) / seconds:,.0f} writes/s;"
          f" {stored:,} in the store afterwards")
    print(f"  GET /v1/status, no writes (baseline)   {figures(idle)}")
    print(f"  GET /v1/status, during the burst       {figures(busy)}")
    print("  " + health.lag_line(health.lag_from_status(status)))
    return 0 if not errors and stored == len(acked) else 1


if __name__ == "__main__":
    sys.exit(main())
