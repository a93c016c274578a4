"""In-process cost of one change on the input side, applied as a delta against redone in full, by size.

    .venv/bin/python -m tests.benchmarks.input_deltas [--sizes 500,1000,5000] [--repeat 30]

- OVSDB discovery: one port added to a bridge of N ports; ``VrsReporter.refresh`` with the change list
  (ovsdb/bridgeports.py) against ``build_snapshot`` of every row. Rows are the unit tests' stand-ins
  (tests/unit/test_vrs_delta.py), not ``ovs`` IDL rows: the IDL's own work (parsing the update, and the
  per-row conversions of a full read) is left out, so the full read is flattered.
- REST write: one vport created in a policy of N vports (the port_to_ping document); the rules checked from
  the change (``policy.check_changes``) against the whole-policy ``check``.
- Hardware VTEP: one remote MAC added to a VTEP holding N; the reconciler's delta plan (``step`` up to the
  transaction, which is not timed) against ``plan_vtep`` over every row (tests/unit/vtep_fakes.py stand-ins).

Medians in milliseconds, with the cyclic garbage collector kept off the set-up's objects (``gc.freeze``, as the
controller does after a full recompute). Needs nothing but this checkout; not collected by pytest.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import uuid


def settled() -> None:
    """After a set-up: collect, and keep the cyclic collector off what exists (as controller/programloop.py does
    after a full recompute), so a median is the change's own work, not a collection of the set-up's objects."""
    gc.collect()
    gc.freeze()


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def ovsdb(n: int, repeat: int) -> tuple[float, float]:
    from ovsdb.vrs import build_snapshot
    from tests.unit.sinks import Reports
    from tests.unit.test_vrs_delta import Db, follow

    db = Db(ports=n)
    reporter = follow(db, Reports())
    settled()
    delta, full = [], []
    for i in range(repeat):
        db.add(f"new{i}", {"iface-id": f"new{i}"})
        changes = db.take()
        delta.append(timed(lambda: reporter.refresh([db.root], changes)))
        full.append(timed(lambda: build_snapshot("s", "192.0.2.1:1", [db.root])))
    return statistics.median(delta), statistics.median(full)


def policy(n: int, repeat: int) -> tuple[float, float]:
    from controller import policy as pol
    from controller import policydoc
    from tests.benchmarks.port_to_ping import document, present_vports

    allocator = pol.Allocator({}, 65000, (10000, 20000))
    base = policydoc.plan(pol.Policy(), document(present_vports(n), 1), "bench", allocator).policy
    template = next(iter(base.all("vport")))
    settled()
    delta, full = [], []
    for i in range(repeat):
        cand = base.copy()
        vport = dict(template, id=str(uuid.uuid4()), name=f"new{i}", mac=f"02:dd:00:00:{i >> 8:02x}:{i & 0xff:02x}",
                     ips=[f"10.10.0.{100 + i}"], binding={"flavour": "kvm", "iface_id": f"new{i}"})
        cand.put("vport", vport)
        delta.append(timed(lambda: pol.check_changes(cand, [("vport", vport["id"])])))
        full.append(timed(lambda: pol.check(cand)))
        base = cand
    return statistics.median(delta), statistics.median(full)


def vtep(n: int, repeat: int) -> tuple[float, float]:
    from ovsdb.vtep import plan_vtep
    from ovsdb.vtep_sync import VtepReconciler
    from tests.unit.test_vtep_delta import TrackingReplica, desired, mac, run
    from tests.unit.vtep_fakes import HV1, Clock, FakeVtepDb

    db = FakeVtepDb()
    replica = TrackingReplica(db)
    rec = VtepReconciler(replica, "bench", clock=Clock())
    rec.note(None)
    macs = {(5001, mac(i), None, HV1) for i in range(n)}
    run(rec, replica, desired(macs))
    plans = []
    rec._start = lambda plan, _desired, _mode: plans.append(plan)  # plan only: the fake's writes are not timed
    settled()
    delta, full = [], []
    for i in range(repeat):
        macs.add((5001, "02:ee:00:00:%02x:%02x" % (i >> 8, i & 0xff), None, HV1))
        want = desired(macs)
        full.append(timed(lambda: plan_vtep(want, db.rows())))
        delta.append(timed(lambda: rec.step("tor1", want)))
        assert plans[-1].summary() == "ucast_add 1", plans[-1].summary()
        db.apply(plans[-1])
        replica.change_seqno += 1
        rec.note(replica.take_changes())
    return statistics.median(delta), statistics.median(full)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500,1000,5000")
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'change':44} {'N':>6} {'delta ms':>9} {'full ms':>9}")
    for label, fn in (("OVSDB: one port added to a bridge of N", ovsdb),
                      ("REST: one vport created, policy of N vports", policy),
                      ("VTEP: one remote MAC more, N on the VTEP", vtep)):
        for n in sizes:
            delta, full = fn(n, args.repeat)
            print(f"{label:44} {n:6d} {delta * 1000:9.3f} {full * 1000:9.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
