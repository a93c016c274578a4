"""In-process CPU and Python bytecodes of evpn_routes' withdraw after the OVSDB IDL: N bound vports' ports gone in one
VRS report, then a programming pass's steps and the switch reconciler's push.

    PYTHONPATH=CHECKOUT .venv/bin/python -P tests/benchmarks/evpn_withdraw.py [--routes 10000] [--repeat 3]
                                                                            [--count [--functions N]] [--profile FILE]

evpn_routes' policy (tests/benchmarks/evpn_routes.py: N vports in subnet ``out`` of a routed domain), one VRS
reporting w1 and the N ports (tests/benchmarks/evpn_announce.py ``report``), a pass done and its routes published
(by delta, withdrawing at unbind as the app allows once passes hand out), the switch's reconciler in sync with it.
Then one report without the N ports, as the VRS reporter makes it (``changed`` names them, ``changed_ports`` holds
none of them): CPU (``time.thread_time``) of each step as a pass takes them: State taking the report (the binding
index, the vports re-resolved, the Federation's unbinding: MAC mobility, the Originator, the speaker's withdrawals at
unbind), the View delta, the compile, ``Federation.publish``; then the push: kvm1's ``SwitchReconciler`` handed the
switch's desired state and changed owners as the app's ``_push`` does, and its rounds (``_sync``: the meters counted,
the plan, the encoding, the change set recorded applied) until in sync, against a switch that answers at once and
has meters (none of these vports has an ofport, so none has one). State's and the reconciler's pacers tick as the
app's (``STATE_EVERY``, ``RECONCILE_EVERY``) and pause into nothing. The collector is off as in the controller.
Apart from the five (another process's): ExaBGP taking the withdraw's command lines, Canopy's extension in this process
(``ExaBGPSide``): each line as ExaBGP's reader formats it, dispatched to its API (the routes parsed, their changes
built and put in a real neighbor's outgoing RIB, which held the announced ones), then the UPDATEs the RIB yields
packed for a session of 4,096-byte messages, as to GoBGP (not the socket, nor ExaBGP's reactor loop).
``--count``: each step's Python bytecodes (``sys.settrace`` opcodes) in a run of its own after the timed ones
(independent of the machine's load); ``--functions N``: with it, the N functions that ran the most bytecodes of their
own in the push (which function's work grew between two checkouts). ``--profile FILE``: cProfile of the first run's
steps. The IDL's parsing is not in it (tests/benchmarks/ovsdb_announce.py has it). Run it with PYTHONPATH naming the
checkout to measure (a git archive of main for "before"; copy this file and tests/bytecodes.py into it). Not
collected by pytest.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time

from tests.bytecodes import ByFunction, Bytecodes

STEPS = ("State takes the report (unbinding; withdrawn at unbind)", "View delta", "compile", "publish")
PUSH = "push: kvm1's reconciler handed the changes, its rounds"
EXABGP = "ExaBGP takes the withdraw lines (parse, RIB, UPDATEs packed)"
SESSION = "vrs:kvm1"
RECONCILE_EVERY = 1000  # as controller/app.py
PUSHED: list = []  # each run's push meter (``--functions``: the last one's by function)


def reconciler(programmer):
    """kvm1's switch reconciler in sync with its desired state (a switch that answers every request at once, with
    meters where the checkout has them, none installed), paced as the app's with pauses into nothing."""
    from controller.pacer import Pacer
    from openflow.reconciler import SwitchReconciler
    from tests.benchmarks.reconcile_stretches import Switch

    switch = Switch()
    rec = switch.rec = SwitchReconciler(switch, pacer=Pacer(lambda: None, RECONCILE_EVERY))
    rec._need_read = False  # as after its first read-back
    rec._book.read_back({})
    if hasattr(rec, "_set_meter_support"):  # (stop 45 on: Open vSwitch has meters)
        rec._set_meter_support(True, None)
    hand_out(rec, programmer)
    return rec


def hand_out(rec, programmer) -> None:
    """The app's ``_push`` of kvm1, then the reconciler's rounds until the switch is in sync (at most 10)."""
    desired = programmer.desired[SESSION]
    rec.set_desired_owners(desired.flows, desired.all_groups().values(), programmer.take_changes(SESSION))
    for _ in range(10):
        if not rec._sync():
            return
    raise SystemExit("kvm1's reconciler still sending after 10 rounds")


class ExaBGPSide:
    """ExaBGP with Canopy's extension in this process: the speaker's command lines (a booked speaker's ``commands``)
    dispatched as ExaBGP's reader hands them to its API, to a real neighbor's outgoing RIB
    (tests/unit/exabgp_cases.py ``FakeReactor``), and the UPDATEs it yields packed (4,096-byte messages)."""

    def __init__(self, speaker):
        import copy

        from bgp.exabgp_codec import _codec
        from tests.unit.exabgp_cases import FakeReactor

        self.speaker, self.reactor, self.taken = speaker, FakeReactor(), 0
        self.negotiated = copy.copy(_codec(65000, 65001)[1])
        self.negotiated.msg_size = 4096
        self.take()  # the announcements so far: the RIB holds them, sent

    def take(self) -> int:
        """The lines the speaker wrote since the last call, taken; the UPDATE messages they made (their count)."""
        from exabgp.configuration.core.format import formated

        from tests.unit.exabgp_cases import dispatch

        lines = self.speaker.commands[self.taken:]
        self.taken += len(lines)
        for line in lines:
            dispatch(self.reactor, formated(line))
        if self.reactor.acks.count("done") != len(self.reactor.acks):
            raise SystemExit(f"ExaBGP refused a command: {self.reactor.acks}")
        return len([m for update in self.reactor.rib.updates(True) for m in update.messages(self.negotiated)])


class Clock:
    """Thread CPU time inside ``with``."""

    def __enter__(self):
        self.start = time.thread_time()
        return self

    def __exit__(self, *_exc):
        self.count = time.thread_time() - self.start


def run(n: int, meter=Clock, profiler=None) -> dict:
    from controller.app import STATE_EVERY
    from controller.pacer import Pacer
    from tests.benchmarks.evpn_announce import collector_off, report, steps, world

    state, programmer, federation = world(n)
    federation.early = True  # the app's, once passes hand out
    full = report(n)
    state.vrs_update(full)
    programmer.refresh()
    federation.publish(programmer.view)
    rec = reconciler(programmer)
    exabgp = ExaBGPSide(federation.speaker)
    state.pacer = Pacer(lambda: None, STATE_EVERY)  # ticks as the app's; the pauses run nothing here
    kept = full.ports[:2]  # the tunnel port and w1
    gone = frozenset(port.name for port in full.ports[2:])
    snap = dataclasses.replace(full, ports=kept, changed=gone, changed_ports={})
    with collector_off():
        if profiler is not None:
            profiler.enable()
        try:
            out = steps(state, programmer, federation, snap, meter, STEPS)
            del out["start"]
            with meter() as m:
                hand_out(rec, programmer)
            out[PUSH] = m.count
            PUSHED.append(m)
            with meter() as m:
                updates = exabgp.take()
            out[EXABGP] = m.count
        finally:
            if profiler is not None:
                profiler.disable()
    if updates < 1 or len(list(exabgp.reactor.rib.cached_changes())) != len(federation.speaker.desired):
        raise SystemExit("ExaBGP's RIB does not hold what the speaker wants")
    if sum(1 for route in federation.speaker.desired.values() if route.TYPE == 2) != 1:
        raise SystemExit("the speaker holds other type 2 routes than w1's")
    if len(state.locations) != 1:
        raise SystemExit("State locates other vports than w1")
    if {o: fs for o, fs in rec._book.installed.items() if fs} != \
            {o: fs for o, fs in programmer.desired[SESSION].flows.items() if fs}:
        raise SystemExit("kvm1's reconciler did not make the switch's flows the desired ones")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--count", action="store_true", help="also each step's Python bytecodes (one more run)")
    parser.add_argument("--profile", help="cProfile of the first run's steps into this file")
    parser.add_argument("--functions", type=int, default=0, metavar="N",
                        help="with --count: the N functions that ran the most bytecodes of their own in the push")
    args = parser.parse_args(argv)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    runs = [run(args.routes, Clock, profiler if k == 0 else None) for k in range(args.repeat)]
    if profiler is not None:
        profiler.dump_stats(args.profile)
    print(f"{args.routes:,} bound vports' ports gone in one report: CPU ms, median (min-max) of {args.repeat} runs")
    for step in STEPS + (PUSH,):
        values = sorted(r[step] * 1000 for r in runs)
        print(f"  {step:58s} {statistics.median(values):8.1f} ({values[0]:.1f}-{values[-1]:.1f})")
    total = sorted(sum(r[step] for step in STEPS + (PUSH,)) * 1000 for r in runs)
    print(f"  {'all five':58s} {statistics.median(total):8.1f} ({total[0]:.1f}-{total[-1]:.1f})")
    values = sorted(r[EXABGP] * 1000 for r in runs)
    print(f"  {EXABGP:58s} {statistics.median(values):8.1f} ({values[0]:.1f}-{values[-1]:.1f})")
    if args.count:
        counted = run(args.routes, ByFunction if args.functions else Bytecodes)
        print("Python bytecodes")
        for step in STEPS + (PUSH,):
            print(f"  {step:58s} {counted[step]:>12,}")
        print(f"  {'all five':58s} {sum(counted[step] for step in STEPS + (PUSH,)):>12,}")
        print(f"  {EXABGP:58s} {counted[EXABGP]:>12,}")
    if args.count and args.functions:
        print(f"the push's {args.functions} functions with the most bytecodes of their own")
        for name, count in PUSHED[-1].top(args.functions):
            print(f"  {name:90s} {count:>10,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
