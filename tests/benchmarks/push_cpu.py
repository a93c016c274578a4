"""The controller's CPU to push a cold start's flows to every switch, in-process: plan, encode, send.

`.venv/bin/python -m tests.benchmarks.push_cpu [--switches 50] [--vports 5000] [--openflow 1.4]`

vrs_scale's cold start (50 real VRS, 5,000 bound vports, ~800,000 flow-mods) is CPU-bound, and the reconcilers'
push is the controller's largest share of it (docs/benchmarks.md, "vrs_scale"). This builds the same desired state
in-process (tests/benchmarks/compile_scale.py's layout: one tenant, /22 subnets of ``--per-subnet`` vports spread
round-robin over the switches, compiled by the Programmer, so flows are shared between switches as in the
controller), then gives every switch a reconciler whose switch holds nothing (read back empty) and runs each
reconciler's change set in turn, with the pauses wired as controller/app.py wires them
(``Pacer(hub.sleep(0), RECONCILE_EVERY)``), against a stand-in datapath that takes the bytes and answers every
commit or barrier at once. Printed, as CPU time of this thread (``time.thread_time()``: independent of the
machine's load):

- the plan (``_plan``: the full diff, sorted) and the rest (``_execute``: encode, send, record) of every switch,
  in total and per flow pushed; the first switch (every shared flow encoded for the first time) apart;
- the longest stretch between two green-thread switches (``greenlet.settrace``, as
  tests/benchmarks/reconcile_stretches.py), with the collector's share;
- flow-mods, group-mods and bytes sent, and a digest of every byte written to every switch, in order: two runs of
  the same desired state, say before and after a change of the encoder, must print the same digest.

Run it against another checkout (before/after on the same machine) with that checkout first on ``PYTHONPATH``
and this file copied into it, both with ``--load`` of one ``--save`` and the same ``PYTHONHASHSEED`` (the digests
are then comparable); the compile runs with the cyclic collector paused, as the controller's does.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import logging
import os
import pickle
import sys
import time

import openflow
from controller import policy as pol
from controller.pacer import Pacer, collector_paused
from controller.programmer import Programmer
from controller.ryu_compat import hub, ofproto_protocol
from controller.state import State
from openflow.reconciler import SwitchReconciler
from tests.benchmarks import compile_scale as scale
from tests.benchmarks.reconcile_stretches import Stretches

RECONCILE_EVERY = 1000  # as controller/app.py
VERSIONS = {"1.3": 4, "1.4": 5}


class Switch:
    """A datapath that hashes the bytes written to it and answers every request at once (commit or barrier)."""

    def __init__(self, dpid: int, version: int):
        desc = ofproto_protocol.ProtocolDesc(version)
        self.id, self.ofproto, self.ofproto_parser, self.xid = dpid, desc.ofproto, desc.ofproto_parser, 0
        self.address = ("10.0.0.1", dpid)
        self.rec = None
        self.bytes = 0
        self.digest = hashlib.sha256()

    def send(self, data):
        self.bytes += len(data)
        self.digest.update(data)
        for waiter in self.rec._waiters.values():
            waiter.event.set()

    def send_msg(self, msg):
        pass


def desired_state(args) -> dict:
    """session -> the Programmer's desired state of that switch, compiled as the controller compiles it."""
    logging.getLogger("canopy").setLevel(logging.ERROR)  # synthetic bridges are not fail-secure: no warning each
    lay = scale.Layout(args.vports, args.switches, 1, args.per_subnet, "spread", args.switches, 0)
    state = State(pol.Policy(), "kvm")
    with collector_paused() as paused:
        scale.commit(state, scale.build_policy(scale.document(lay, 22)))
        scale.discover(state, scale.snapshots(lay))
        programmer = Programmer(state)
        programmer.refresh(True)
        paused.freeze = True
    return programmer.desired


def inputs(args) -> dict:
    """session -> (flows by owner, groups) of every switch: compiled now, or loaded from ``--load`` (a pickle keeps
    the Flows and flow sets shared between switches as they are shared in the controller)."""
    if args.load:
        with open(args.load, "rb") as saved:
            with collector_paused() as paused:
                paused.freeze = True
                return pickle.load(saved)
    desired = {session: (wanted.flows, tuple(wanted.all_groups().values()))
               for session, wanted in desired_state(args).items()}
    if args.save:
        with open(args.save, "wb") as out:
            pickle.dump(desired, out, protocol=pickle.HIGHEST_PROTOCOL)
    return desired


def reconcilers(desired: dict, version: int) -> list:
    out = []
    for n, session in enumerate(sorted(desired), start=1):
        switch = Switch(n, version)
        rec = switch.rec = SwitchReconciler(switch, log=logging.getLogger("bench.push"),
                                            pacer=Pacer(lambda: hub.sleep(0), RECONCILE_EVERY))
        rec._need_read = False  # as after its first read-back, of a switch that holds nothing of Canopy's
        rec._book.read_back({})
        flows, groups = desired[session]
        rec.set_desired_owners(flows, groups, None)
        out.append(rec)
    return out


def push(rec) -> tuple[float, float]:
    """Plan, then encode, send and record one switch's change set; (plan CPU s, the rest's CPU s)."""
    with collector_paused():
        started = time.thread_time()
        changes = rec._plan()
        planned = time.thread_time()
        rec._execute(changes)
        changes = None
    return planned - started, time.thread_time() - planned


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--switches", type=int, default=50)
    parser.add_argument("--vports", type=int, default=5000)
    parser.add_argument("--per-subnet", type=int, default=700, help="vports per /22 subnet (vrs_scale: 700)")
    parser.add_argument("--openflow", choices=sorted(VERSIONS), default="1.4", help="1.4: bundles, 1.3: barriers")
    parser.add_argument("--save", help="write the compiled desired state to this file (a pickle)")
    parser.add_argument("--load", help="push the desired state of --save instead of compiling one: the same input "
                                       "for two checkouts (each compile allocates new vport ids, and they order the "
                                       "flood groups' buckets)")
    args = parser.parse_args(argv)
    compiling = time.process_time()
    recs = reconcilers(inputs(args), VERSIONS[args.openflow])
    compiled = time.process_time() - compiling
    stretches = Stretches()
    rows = []

    def run_all():
        for rec in recs:
            rows.append((*push(rec), rec.counters["flow_add"]))

    _, longest, cpu, switches, collecting = stretches.measure(run_all)
    flows = sum(r[2] for r in rows)
    plan, rest = sum(r[0] for r in rows), sum(r[1] for r in rows)
    digest = hashlib.sha256()
    for rec in recs:
        digest.update(rec.datapath.digest.digest())
    print(f"# push_cpu {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}, Python {sys.version.split()[0]}, code "
          f"{os.path.dirname(os.path.dirname(os.path.abspath(openflow.__file__)))}")
    print(f"{args.switches} switches, {args.vports:,} vports, OpenFlow {args.openflow}; compiled or loaded in "
          f"{compiled:.1f} s CPU")
    print(f"flow-mods {flows:,}, group-mods {sum(r.counters['group_add'] for r in recs):,}, "
          f"bytes {sum(r.datapath.bytes for r in recs):,}, digest {digest.hexdigest()[:16]}")
    print(f"push CPU {cpu / 1000:.2f} s ({cpu * 1000 / max(1, flows):.2f} us per flow): plan {plan:.2f} s, "
          f"encode+send+record {rest:.2f} s")
    first = rows[0]
    others = rows[1:] or rows
    print(f"first switch {first[0] * 1000:.0f} + {first[1] * 1000:.0f} ms ({first[2]:,} flows); the others, mean "
          f"{sum(r[0] for r in others) / len(others) * 1000:.0f} + {sum(r[1] for r in others) / len(others) * 1000:.0f}"
          f" ms")
    print(f"longest stretch {longest:.1f} ms (collector {collecting:.1f} ms), {switches:,} green-thread switches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
