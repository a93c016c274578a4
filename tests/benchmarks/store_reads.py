"""How long the store's REST reads (GET /v1/changes, GET /v1/ha) wait while a big write commits (docs/benchmarks.md
"ha_takeover", "Branch storelock"), in-process and under eventlet as in the controller:

    .venv/bin/python -m tests.benchmarks.store_reads [--vports 10000] [--runs 3]

A standby's store takes one replicated batch (an old active's apply of ``--vports`` vports, tests/benchmarks/
body_stretches.py's document) through the thread pool, as the HA applier does; once its transaction has begun, a
green thread reads the first 1,000 changes and the last sequence number twice: through the writer's connection and
lock (how these GETs read before branch storelock) and through the store's reader (how they read now). Prints the
wall-clock milliseconds each read took and how long the batch's transaction took, with the load average. Not
collected by pytest.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from controller.ryu_compat import blocking, hub

READS = {
    "writer's lock (before)": lambda store: (store.changes_since(0, 1000), store.last_seq()),
    "reader (now)": lambda store: (store.reader.changes(0, 1000), store.reader.last_seq()),
}


def one_run(vports: int, how: str) -> tuple[int, float, float]:
    """(changes in the batch, ms the read took, ms the batch's write took) for one batch and one way to read."""
    from controller.store import Store
    from tests.benchmarks.applier_hold import old_active

    with tempfile.TemporaryDirectory() as tmp:
        old, changes = old_active(Path(tmp), vports)
        store = Store(str(Path(tmp) / "standby"))
        store.offload = blocking  # as controller/app.py sets it
        times = {}

        def write():
            began = time.monotonic()
            store.apply_replicated(changes, old.store.replicated_meta())
            times["write"] = time.monotonic() - began

        writer = hub.spawn(write)
        hub.sleep(0.05)  # the writer holds the lock, its transaction running in the thread pool
        assert "write" not in times, "the batch was written before the read began: nothing measured"
        began = time.monotonic()
        READS[how](store)
        times["read"] = time.monotonic() - began
        hub.joinall([writer])
        assert store.last_seq() == len(changes), "the batch was not written"
        store.close()
        old.close()
        return len(changes), times["read"] * 1000, times["write"] * 1000


def main() -> None:
    from tests.benchmarks.applier_hold import arguments

    args = arguments(__doc__)
    for run in range(1, args.runs + 1):
        for how in READS:
            count, read, write = one_run(args.vports, how)
            print(f"run {run}, {how}: read {read:.1f} ms while a batch of {count:,} changes was written "
                  f"({write:.0f} ms); load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    hub.patch(thread=True)  # as run_manager does before the apps (and their Store) exist
    main()
