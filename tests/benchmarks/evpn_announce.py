"""In-process CPU of evpn_routes' announce: N new vports bound by one VRS report, then a programming pass's steps.

    PYTHONPATH=CHECKOUT .venv/bin/python -P tests/benchmarks/evpn_announce.py [--routes 10000] [--repeat 3]
                                            [--no-early] [--push] [--count [--functions N]] [--profile FILE]

evpn_routes' policy (tests/benchmarks/evpn_routes.py: N vports in subnet ``out`` of a routed domain), one VRS
already reporting (w1 bound, a pass done and its routes published, announcing at bind allowed where the checkout
has it), then one report with N more ports (no device: ``ofport`` absent, as in the lab). CPU
(``time.thread_time``) of each step, as a pass takes them: State taking the report (binding, and in a checkout
with bgp/early.py the routes announced at bind), the View delta, the compile, ``Federation.publish``; and when the
speaker (a real RouteBook, tests/unit/test_evpn_early_withdraw.py) first had a new route and had all of them,
counted from the report. Medians of ``--repeat`` runs, each from a fresh State (and route cache), with the cyclic
collector off as in the controller (``collector_paused`` around an OVSDB update and a programming pass: on, it
was a fifth to a third of each step here, none of it the controller's). Neither the OVSDB
IDL's parsing nor the reconciler's push is in it. Run it with PYTHONPATH naming the checkout to measure (a git
archive of main for "before"). ``--no-early``: no announcing at bind (the routes come at publish), so State's
step is the binding alone: the difference with a default run is what the routes at bind cost. ``--count``: each
step's Python bytecodes (``sys.settrace`` opcodes, tests/bytecodes.py ``Bytecodes``) in a run of its own
after the timed ones (independent of the machine's load; the speaker's stamps are not taken in it). ``--profile
FILE``: cProfile of the first run's steps. ``--push``: a fifth step, kvm1's ``SwitchReconciler`` (in sync with the
world before the report, meters supported where the checkout has them) handed the desired state and changed owners
as the app's ``_push`` does, and its rounds until in sync (tests/benchmarks/evpn_withdraw.py ``hand_out``: copy it,
with tests/bytecodes.py, into an older checkout); ``--functions N`` (with ``--count``): the N functions that ran the
most bytecodes of their own in the push. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import statistics
import sys
import time


def report(n: int):
    """kvm1's report: its tunnel port, w1, and ``n`` ports of evpn_routes' vports."""
    from controller.discovery import PortInfo, VrsSnapshot
    from tests.benchmarks.evpn_routes import W1, out_vport

    ports = [PortInfo(name="vxlan0", ofport=99, type="vxlan"),
             PortInfo(name="tapw1", ofport=5, mac=W1["mac"], external_ids=(("iface-id", W1["name"]),
                                                                           ("attached-mac", W1["mac"])))]
    for vport in map(out_vport, range(n)):
        ports.append(PortInfo(name=vport["name"], mac=vport["mac"],
                              external_ids=(("attached-mac", vport["mac"]), ("iface-id", vport["name"]))))
    return VrsSnapshot("vrs:kvm1", "10.250.0.5:1", "kvm1", vtep_ip="10.251.0.5", datapath_id=5, bridge_present=True,
                       ports=tuple(ports))


class Stamps:
    """Wraps the speaker's ways in: the CPU time when it first held a new route and when it held ``n``."""

    def __init__(self, speaker, n: int):
        self.speaker, self.n, self.base, self.marks = speaker, n, len(speaker.book.desired), {}
        for name in ("announce", "set_desired"):
            if hasattr(speaker, name):
                setattr(speaker, name, self._wrap(getattr(speaker, name)))

    def _wrap(self, real):
        def call(routes):
            real(routes)
            new = len(self.speaker.book.desired) - self.base
            if new > 0:
                self.marks.setdefault("first", time.thread_time())
            if new >= self.n:
                self.marks.setdefault("all", time.thread_time())
        return call


def world(n: int):
    """State, Programmer and Federation over evpn_routes' policy for ``n`` vports, programmed and published once with
    no port bound yet (the speaker a booked one): what the announce and withdraw harnesses start from."""
    import bgp.evpn
    from bgp.federation import Federation
    from controller import policy as pol
    from controller import policydoc
    from controller.programmer import Programmer
    from controller.state import State
    from tests.benchmarks.evpn_routes import policy
    from tests.unit.test_evpn_early_withdraw import BookedSpeaker

    bgp.evpn._BUILT.clear()  # routes built (and validated) once: a fresh run builds them all
    plan = policydoc.plan(pol.Policy(), policy(n), "bench", pol.Allocator({}, 65000, (10000, 20000)))
    state = State(plan.policy)
    programmer = Programmer(state)
    federation = Federation(None, "/unused", state, speaker=BookedSpeaker())
    state.vrs_update(report(0))
    programmer.refresh(full=True)
    federation.publish(programmer.view)
    return state, programmer, federation


@contextlib.contextmanager
def collector_off():
    """The cyclic collector off (after a collection and a freeze), as in the controller, whose OVSDB updates and
    programming passes run with it paused; put back as it was whatever the block raised (a caller's process runs
    on with it)."""
    gc.collect()
    gc.freeze()
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.unfreeze()


STEPS = ("State takes the report (binding; routes at bind)", "View delta", "compile",
         "publish (mobility, originate, command text)")
STAMPS = ("from the report: the speaker has a first new route", "from the report: the speaker has all new routes")


PUSH = "push: kvm1's reconciler handed the changes, its rounds"
PUSHED: list = []  # each run's push meter (``--functions``: the last one's by function)


def run(n: int, early: bool = True, meter=None, profiler=None, push: bool = False) -> dict:
    """Each step's CPU (``meter`` None: ``time.thread_time``, with the speaker's stamps) or count (``meter``: a
    context manager class whose instance has ``count`` after the block, as tests/bytecodes.py ``Bytecodes``);
    ``push``: and the reconciler's push after them (``PUSH``)."""
    state, programmer, federation = world(n)
    federation.early = early  # the app's, once passes hand out (an attribute nothing reads before bgp/early.py)
    snap = report(n)
    stamps = Stamps(federation.speaker, n) if meter is None else None
    if push:
        from tests.benchmarks.evpn_withdraw import hand_out, reconciler

        rec = reconciler(programmer)
    with collector_off():
        if profiler is not None:
            profiler.enable()
        try:
            out = steps(state, programmer, federation, snap, meter or _Clock)
            if push:
                with (meter or _Clock)() as m:
                    hand_out(rec, programmer)
                out[PUSH] = m.count
                PUSHED.append(m)
        finally:
            if profiler is not None:
                profiler.disable()
    if sum(1 for route in federation.speaker.desired.values() if route.TYPE == 2) != n + 1:
        raise SystemExit("the speaker does not hold a type 2 route per vport")
    start = out.pop("start")
    if stamps is not None:
        out[STAMPS[0]] = stamps.marks["first"] - start
        out[STAMPS[1]] = stamps.marks["all"] - start
    return out


class _Clock:
    """Thread CPU time inside ``with``."""

    def __enter__(self):
        self.start = time.thread_time()
        return self

    def __exit__(self, *_exc):
        self.count = time.thread_time() - self.start


def steps(state, programmer, federation, snap, meter, names=STEPS) -> dict:
    """Each of a pass's steps from ``snap`` on, measured by ``meter`` (the collector paused by the caller) and named
    by ``names``; "start": the CPU time when the first began (evpn_withdraw.py takes its steps here too)."""
    out = {"start": time.thread_time()}
    with meter() as m:
        state.vrs_update(snap)
    out[names[0]] = m.count
    with meter() as m:
        reach = programmer.live.apply(programmer.journal.take())
    out[names[1]] = m.count
    view = programmer.view
    with meter() as m:
        work = {s: owners for s, owners in reach.owners.items()
                if owners and s not in reach.rebuild and s in view.switches}
        programmer._recompile(view, work, set().union(*reach.owners.values()))
    out[names[2]] = m.count
    with meter() as m:
        federation.publish(view)
    out[names[3]] = m.count
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-early", action="store_true", help="no announcing at bind: State's step is binding alone")
    parser.add_argument("--count", action="store_true", help="also each step's Python bytecodes (one more run)")
    parser.add_argument("--profile", help="cProfile of the first run's steps into this file")
    parser.add_argument("--push", action="store_true", help="and the reconciler's push (a fifth step)")
    parser.add_argument("--functions", type=int, default=0, metavar="N",
                        help="with --count and --push: the push's N functions with the most bytecodes of their own")
    args = parser.parse_args(argv)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    runs = [run(args.routes, not args.no_early, profiler=profiler if k == 0 else None, push=args.push)
            for k in range(args.repeat)]
    if profiler is not None:
        profiler.dump_stats(args.profile)
    shown = STEPS + ("the four",) + ((PUSH,) if args.push else ()) + STAMPS
    print(f"{args.routes:,} vports bound by one report: CPU ms, median (min-max) of {args.repeat} runs")
    for step in shown:
        values = sorted((sum(r[s] for s in STEPS) if step == "the four" else r[step]) * 1000 for r in runs)
        print(f"  {step:55s} {statistics.median(values):8.1f} ({values[0]:.1f}-{values[-1]:.1f})")
    if args.count:
        from tests.bytecodes import ByFunction, Bytecodes

        counted = run(args.routes, not args.no_early, ByFunction if args.functions else Bytecodes, push=args.push)
        print("Python bytecodes")
        for step in shown[:len(STEPS) + 1 + args.push]:
            value = sum(counted[s] for s in STEPS) if step == "the four" else counted[step]
            print(f"  {step:55s} {value:>12,}")
    if args.count and args.push and args.functions:
        print(f"the push's {args.functions} functions with the most bytecodes of their own")
        for name, count in PUSHED[-1].top(args.functions):
            print(f"  {name:90s} {count:>10,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
