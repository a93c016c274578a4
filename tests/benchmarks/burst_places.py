"""The bursts' longest stretches at their places, counted in bytecodes (issue 15, "Bounded lag"; docs/benchmarks.md
"Branch burst48"): the places perf47's hunt found in the apply of 10,000 vports (tests/benchmarks/bursts.py
--stretches), each run in-process with the pacer the controller wires there (a ``BoundedPacer`` whose clock is the
bytecodes run at a quarter of a CPU, as tests/unit/test_paced_wiring.py), the longest run of bytecodes between two
pauses printed with the pauses made. Load-independent; for a "before", run it with ``PYTHONPATH`` on a ``git
archive`` of the older code (this file and tests/unit/test_paced_wiring.py copied in).

    .venv/bin/python -m tests.benchmarks.burst_places [--count 10000] [--only commit,...]

Places:
- commit: ``State.policy_committed`` of the apply's ``--count`` vports, their ports shown already (the binding index
  updated from the commit: ``_take_changes``, ``binding.crossed``), State's pacer;
- import: the federation's import from scratch after a policy commit (a new ``RouteImport``) of ``--count`` type-2
  routes received into subnet ``in`` and held by State (``refresh_import``: the import, its table, State comparing
  it with what it holds), the programming pass's pacer;
- pass: the programming pass after that commit (``Programmer.refresh``: the View's delta, its routes, the compile),
  its pacer;
- push: kvm1's desired state handed out after that pass (controller/app.py ``_push``: ``set_desired_owners``, the
  gateway's gratuitous ARPs, ``tunnel_warm``), the programming pass's pacer;
- resorted: in that pass, the most keys sorted again in one C call by a ``SortedDict.update`` (the domain's routes:
  ``viewroutes.settle``), not bytecodes.
Not collected by pytest.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import sys
import time

from controller import policy as pol
from controller import policydoc
from controller.pacer import Pacer, collector_paused, loop_pacer
from controller.state import State
from tests.benchmarks.bursts import CANOPY_ASN, IN_VNI, L3_VNI, document
from tests.benchmarks.evpn_routes import mac
from tests.benchmarks.stretches import ports, snapshot
from tests.unit.test_paced_wiring import STATE_EVERY, Stretches


def _planned(count: int):
    """(State holding the base document with the apply's ports shown on kvm1, the apply's plan)."""
    allocator = pol.Allocator({}, 65000, (10000, 20000))
    base = policydoc.plan(pol.Policy(), document(count, applied=False), "bench", allocator)
    state = State(base.policy)
    state.vrs_update(snapshot(ports(count, "o", 100) + ports(count, "a", 100 + count)))
    return state, policydoc.plan(state.policy, document(count, applied=True), "bench", allocator)


def commit(count: int) -> tuple[int, int]:
    """(longest stretch in bytecodes, pauses) of State taking the apply's commit."""
    state, plan = _planned(count)
    stretches = Stretches()
    state.pacer = stretches.bind(loop_pacer(stretches.pause, STATE_EVERY))
    with collector_paused():
        most = stretches.run(lambda: state.policy_committed(plan.policy, plan.changes))
    assert len(state.locations) == 2 * count, len(state.locations)
    return most, stretches.pauses


class _Received:
    """The speaker as the import reads it: ``count`` type-2 routes received from one peer, in subnet ``in``."""

    def __init__(self, count: int):
        from bgp.routes import MacIpRoute

        routes = [MacIpRoute(rd=f"192.0.2.1:{IN_VNI}", mac=mac("0c", i), l2_vni=IN_VNI, next_hop="192.0.2.1",
                             route_targets=(f"{CANOPY_ASN}:{IN_VNI}",)) for i in range(count)]
        self.received = {("192.0.2.9", route.key): route for route in routes}
        self.order = dict(zip(self.received, range(count)))

    def received_in_order(self):
        return self.received, self.order


def import_(count: int) -> tuple[int, int]:
    """(longest stretch in bytecodes, pauses) of the federation importing ``count`` received routes from scratch."""
    from bgp.federation import Federation

    state = _planned(1)[0]
    federation = Federation(None, "/unused", state, speaker=_Received(count))
    federation.refresh_import()  # State holds them
    state.policy = state.policy.copy()  # a commit: the next import is from scratch, and finds nothing changed
    stretches = Stretches()
    federation.pacer = state.pacer = stretches.bind(loop_pacer(stretches.pause))
    with collector_paused():
        most = stretches.run(federation.refresh_import)
    assert sum(map(len, state.remote_index.macs.values())) == count, state.remote_index.macs.keys()
    return most, stretches.pauses


def pass_(count: int) -> tuple[int, int]:
    """(longest stretch in bytecodes, pauses) of the programming pass after State took the apply's commit."""
    from controller.programmer import Programmer

    state, plan = _planned(count)
    programmer = Programmer(state)
    programmer.refresh(full=True)
    state.policy_committed(plan.policy, plan.changes)
    stretches = Stretches()
    programmer.pacer = stretches.bind(loop_pacer(stretches.pause))
    with collector_paused():
        most = stretches.run(programmer.refresh)
    assert len(programmer.view.local) == 2 * count, len(programmer.view.local)
    return most, stretches.pauses


def resorted(count: int) -> tuple[int, int]:
    """(the most keys a ``SortedDict.update`` sorted again in one call, in C, during that pass: the domain's routes
    (controller/viewroutes.py ``OrderedFib.settle``), the pauses)."""
    from sortedcontainers import SortedDict

    sizes = [0]
    update = SortedDict.update

    def recorded(self, *args, **kwargs):
        pairs = args[0] if args else kwargs
        if recording and 10 * len(pairs) > len(self):  # (sortedcontainers sorts every key again)
            sizes.append(len(self) + len(pairs))
        return update(self, *args, **kwargs)

    recording = False
    SortedDict.update = SortedDict._update = recorded
    try:
        from controller.programmer import Programmer

        state, plan = _planned(count)
        programmer = Programmer(state)
        programmer.refresh(full=True)
        state.policy_committed(plan.policy, plan.changes)
        programmer.pacer = Pacer(lambda: None, 200)  # (not traced: the count is of keys)
        recording = True
        with collector_paused():
            programmer.refresh()
    finally:
        SortedDict.update = SortedDict._update = update
    return max(sizes), programmer.pacer.pauses


def push(count: int) -> tuple[int, int]:
    """(longest stretch in bytecodes, pauses) of kvm1's desired state handed out after that pass, as controller/app.py
    ``_push`` does: its reconciler told, the gratuitous ARPs of the new subnet's gateway, the tunnel probes due."""
    from controller.programmer import Programmer
    from openflow.gateway_garp import GatewayAnnouncer
    from openflow.tunnel_warm import TunnelWarmer
    from tests.unit.test_reconcile_pacing import reconciler

    state, plan = _planned(count)
    programmer = Programmer(state)
    programmer.refresh(full=True)
    rec, _switch = reconciler()
    garps, tunnels, connection = GatewayAnnouncer(), TunnelWarmer(), object()

    def hand_out(pacer):
        sw, desired = programmer.view.switches["kvm1"], programmer.desired["kvm1"]
        changed = programmer.take_changes("kvm1")
        rec.set_desired_owners(desired.flows, desired.all_groups().values(), changed)
        paced = (pacer,) if "pacer" in inspect.signature(garps.due).parameters else ()  # (as controller/appannounce.py)
        due = garps.due(programmer.view, "kvm1", changed, 1.0, *paced)
        with tunnels.reading():
            return due, tunnels.due(sw, connection, desired, changed, pacer)

    hand_out(Pacer())
    state.policy_committed(plan.policy, plan.changes)
    programmer.refresh()
    stretches = Stretches()
    pacer = programmer.pacer = stretches.bind(loop_pacer(stretches.pause))
    with collector_paused():
        most = stretches.run(lambda: hand_out(pacer))
    return most, stretches.pauses


PLACES = {"commit": commit, "import": import_, "pass": pass_, "resorted": resorted, "push": push}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--only", default=",".join(PLACES), help="the places, comma-separated")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=open(os.devnull, "w"))  # the controller's level, logged nowhere
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load {os.getloadavg()[0]:.1f}, Python "
          f"{sys.version.split()[0]}, count {args.count:,}: the longest stretch in bytecodes (pauses)")
    for name in args.only.split(","):
        most, pauses = PLACES[name](args.count)
        print(f"{name:10} {most:>12,} ({pauses} pauses)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
