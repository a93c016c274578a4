"""How long the HA applier holds State's commit section for one replicated batch, in-process (docs/benchmarks.md
"ha_takeover", "Branch writepath"): on a node that has just taken over, a REST write waits that long (at most
``rest.write_wait_ms``, then 503 commit_busy).

    .venv/bin/python -m tests.benchmarks.applier_hold [--vports 10000] [--runs 3]

An "old active" (a real Store, State and PolicyService in a temporary directory) applies a document of ``--vports``
vports (tests/benchmarks/body_stretches.py's); its change log is handed as one replicated "changes" message to an
Applier of a fresh node (real Store and State, this thread, unpaced). Prints, per run, the wall-clock seconds the
applier held the section (checking, the store's transaction and its fsync, State taking the commit) and the CPU
seconds of this thread meanwhile, with the load average. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from controller.replication import Applier
from tests.benchmarks.body_stretches import apply_body
from tests.unit.helpers import Controller
from tests.unit.replication_pair import Sent


def timed_section(state, held: list):
    """Wrap ``state``'s commit section so each holding appends (wall seconds, CPU seconds of the holder) to ``held``."""
    real = state._commits.section

    def section(*args, **kwargs):
        @contextmanager
        def holding():
            with real(*args, **kwargs):
                wall, cpu = time.monotonic(), time.thread_time()
                yield
                held.append((time.monotonic() - wall, time.thread_time() - cpu))
        return holding()

    state._commits.section = section


def old_active(tmp: Path, vports: int):
    """An old active (in ``tmp``/old) after an apply of ``vports`` vports: (its Controller, its change log)."""
    old = Controller(tmp / "old")
    body = json.loads(apply_body(vports))
    old.service.apply(body["document"], body["source"])
    return old, old.store.changes_since(0, 2 * vports + 10)


def arguments(doc: str) -> argparse.Namespace:
    """--vports and --runs, the command line of the benchmarks that replicate one old active's batch."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--vports", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    return parser.parse_args()


def one_run(vports: int) -> tuple[int, float, float]:
    """(changes in the batch, wall seconds, CPU seconds) of the applier's section for one batch."""
    with tempfile.TemporaryDirectory() as tmp:
        old, changes = old_active(Path(tmp), vports)
        batch = {"t": "changes", "changes": [c.to_wire() for c in changes], "meta": old.store.replicated_meta()}
        new = Controller(Path(tmp) / "new")
        held: list = []
        timed_section(new.state, held)
        Applier(new.store, new.state, Sent()).on_message(batch)
        assert new.store.last_seq() == len(changes), "the batch was not applied"
        old.close()
        new.close()
        return len(changes), held[0][0], held[0][1]


def main() -> None:
    args = arguments(__doc__)
    for run in range(1, args.runs + 1):
        count, wall, cpu = one_run(args.vports)
        print(f"run {run}: batch of {count:,} changes ({args.vports:,} vports): section held {wall:.2f} s wall, "
              f"{cpu:.2f} s CPU of the applier's thread; load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
