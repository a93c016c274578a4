"""CPU and Python bytecodes of a big delete of ports in the OVSDB replica until its lead slice is reported: what the
first EVPN withdrawal waits for once the update is decoded (its vports are unbound, their routes withdrawn, when the
reader reports the lead: bgp/origins.py).

    PYTHONPATH=CHECKOUT .venv/bin/python -P tests/benchmarks/withdraw_lead.py [--ports 10000] [--repeat 15]

A replica of Canopy's columns holding N ports (one interface each) on br-int (tests/unit/test_ovsdb_slices.py
``Database``), then the update deleting all of them handed to its parser (what ``Idl.run`` does with a message): CPU
(``time.thread_time``) from there to the reader's first report (``on_slice``), each run on a fresh copy of the update;
the median of ``--repeat`` runs, and the bytecodes (``sys.settrace`` opcodes) of one more run by function. Neither the
JSON decoding before it (ovsdb/jsonstream.py) nor the reporter and State after it are in it
(tests/benchmarks/ovsdb_announce.py has the whole path). Run it with PYTHONPATH naming the checkout to measure (a git
archive of main for "before"), interleaved. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import random
import statistics
import sys
import time


class _Lead(Exception):
    """Raised by the first report: the run ends there."""


def _first_report():
    raise _Lead


def world(ports: int):
    """(a replica holding ``ports`` ports, the JSON text of the update deleting them all)."""
    from tests.unit.test_ovsdb_slices import Database

    db = Database(random.Random(5))
    db.rng.choice = lambda options: options[0]  # one interface a port (the lab's, a VM's tap)
    db._apply(db.insert_ports(ports))
    return db, json.dumps(db.delete_ports(ports))


def to_lead(db, text: str, trace=None) -> float:
    """CPU seconds from the update handed to a fresh replica's parser to the lead's report."""
    from tests.unit.test_ovsdb_slices import UPDATE2

    replica, update = db.fresh(), json.loads(text)
    replica.on_slice = _first_report
    gc.collect()
    start = time.thread_time()
    sys.settrace(trace)
    try:
        replica._Idl__parse_update(update, UPDATE2)
    except _Lead:
        pass
    finally:
        sys.settrace(None)
    return time.thread_time() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args(argv)
    db, text = world(args.ports)
    gc.disable()  # as the OVSDB session reads an update (collector_paused): the runs' garbage is collected between
    runs = sorted(to_lead(db, text) for _ in range(args.repeat))
    by_function = collections.Counter()

    def trace(frame, event, _arg):
        frame.f_trace_opcodes = True
        if event == "opcode":
            by_function[frame.f_code.co_qualname] += 1
        return trace

    to_lead(db, text, trace)
    print(f"{args.ports:,} ports deleted in one update, to the lead slice's report: CPU ms, median (min-max) of "
          f"{args.repeat}: {statistics.median(runs) * 1000:.1f} ({runs[0] * 1000:.1f}-{runs[-1] * 1000:.1f}); "
          f"Python bytecodes {sum(by_function.values()):,}, the most in")
    for name, count in by_function.most_common(6):
        print(f"  {count:>10,}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
