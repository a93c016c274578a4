"""The reconciler's record (openflow/installed.py ``FlowBook``) in-process: CPU per change on a 10,000-flow switch.

`.venv/bin/python -m tests.benchmarks.flowbook_changes [--owners 2500] [--flows 4] [--changes 2000] [--repeat 5]`

A switch of ``--owners`` vports (UUIDs, seeded) with ``--flows`` flows each (10,000 by default; among n ids of one
kind about n²/2²¹ pairs share a 20-bit owner hint, openflow/flows.py: ~3 of 2,500, ~48 of 10,000), read back empty
and fully planned once; then, as CPU time of this thread (``time.thread_time()``: independent of the machine's load), the best of
``--repeat`` runs of:

- ``full``: the full plan of every flow and its ``applied`` (a cold start);
- ``change``: ``--changes`` changes of one owner each (one of its flows replaced by another), each planned and
  applied on its own (``set_desired`` with the owner changed, ``plan``, ``applied``): per change;
- ``remove``: a tenth of the owners removed in one change, planned and applied (EVPN withdrawals);
- the same ``change`` with two owners whose hints collide installed and changing (the path that looks at them).

Run it against another checkout (before/after on the same machine) with that checkout first on ``PYTHONPATH`` and
this file and tests/unit/test_installed.py (``colliding_owners``) copied into it.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
import uuid

from openflow import pipeline as p
from openflow.flows import Owner, flow
from openflow.installed import FlowBook
from tests.unit.test_installed import colliding_owners


def flows_of(owner: Owner, index: int, count: int, variant: int = 0) -> frozenset:
    return frozenset(flow(p.L2_LOOKUP, 100, {"reg5": 1 + j, "eth_dst": f"02:00:{index >> 16:02x}:{index >> 8 & 255:02x}"
                                                                        f":{index & 255:02x}:{j:02x}"},
                          [("set", "reg7", variant), ("goto", p.EGRESS_ACL)], owner) for j in range(count))


def synced(desired: dict) -> FlowBook:
    book = FlowBook()
    book.set_desired(desired)
    book.read_back({})
    book.applied(book.plan())
    return book


def timed(run) -> float:
    start = time.thread_time()
    run()
    return time.thread_time() - start


def full(desired: dict) -> float:
    book = FlowBook()
    book.set_desired(desired)
    book.read_back({})
    return timed(lambda: book.applied(book.plan()))


def changes(desired: dict, owners: list, count: int, flows: int) -> float:
    """CPU per change; ``owners``: (owner, its flows' index) pairs changed in turn."""
    book = synced(desired)
    desired = dict(desired)
    plan = []
    for n in range(count):
        owner, index = owners[n % len(owners)]
        plan.append((owner, flows_of(owner, index, flows, variant=1 + n)))

    def run():
        for owner, new in plan:
            desired[owner] = new
            book.set_desired(desired, changed={owner})
            book.applied(book.plan())

    return timed(run) / count


def remove(desired: dict, owners: list) -> float:
    book = synced(desired)
    gone = {owner for owner, _ in owners[::10]}
    after = {o: fs for o, fs in desired.items() if o not in gone}
    book.set_desired(after, changed=gone)
    return timed(lambda: book.applied(book.plan()))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--owners", type=int, default=2500)
    parser.add_argument("--flows", type=int, default=4)
    parser.add_argument("--changes", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    rng = random.Random(28)
    owners = [(Owner("vport", str(uuid.UUID(int=rng.getrandbits(128)))), i) for i in range(args.owners)]
    desired = {o: flows_of(o, i, args.flows) for o, i in owners}
    hints: dict = {}
    for o, _ in owners:
        hints.setdefault(o.hint(), []).append(o)
    shared = sum(1 for group in hints.values() if len(group) > 1)
    a, b = colliding_owners()
    base = args.owners
    with_pair = {**desired, a: flows_of(a, base, args.flows) | flows_of(a, base + 1, 1),
                 b: flows_of(b, base, args.flows) | flows_of(b, base + 2, 1)}  # one flow of the same content
    gc.disable()  # the collector's pauses are not the record's work
    results = {
        "full plan + applied (s)": min(full(desired) for _ in range(args.repeat)),
        "one owner's change, per change (µs)": 1e6 * min(changes(desired, owners, args.changes, args.flows)
                                                        for _ in range(args.repeat)),
        "a tenth of the owners removed (s)": min(remove(desired, owners) for _ in range(args.repeat)),
        "per change, a colliding pair changing (µs)": 1e6 * min(
            changes(with_pair, [(a, base), (b, base)], args.changes, args.flows) for _ in range(args.repeat)),
    }
    gc.enable()
    flows = sum(len(fs) for fs in desired.values())
    print(f"{args.owners} owners, {flows} flows; hint values shared by two owners or more: {shared}")
    for name, value in results.items():
        print(f"  {name:45s} {value:10.4f}")


if __name__ == "__main__":
    main()
