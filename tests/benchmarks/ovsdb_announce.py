"""In-process CPU of the controller's path from one OVSDB update of N new ports to their type-2 routes, and back.

    PYTHONPATH=CHECKOUT .venv/bin/python -P tests/benchmarks/ovsdb_announce.py [--ports 10000] [--repeat 2]
                                                                            [--profile FILE]

A real ovsdb-server (a fresh Open_vSwitch database in a temporary directory: the root row with kvm1's chassis and
VTEP IP, br-int with w1's port) connects to Canopy's ``OvsdbManagerServer`` over loopback, as a hypervisor does; the
server reports to a real ``State`` with the ``Federation`` subscribed (a real ``RouteBook`` whose command lines are
kept: tests/unit/test_evpn_early_withdraw.py ``BookedSpeaker``), evpn_routes' policy (tests/benchmarks/evpn_routes.py)
and a first pass done. Then evpn_routes' two transactions, sent by the harness as it sends them in the lab:

- **announce**: N Port + Interface rows inserted and added to br-int in ONE transaction; CPU (``time.thread_time``:
  every green thread of this process, ovsdb-server not included) until the speaker held its first new route, and
  until State has taken the report and the speaker holds a type-2 route per vport (announced at bind, bgp/early.py;
  State pauses as the app has it pause, so the routes go out chunk by chunk); then the programming pass's View
  delta and ``Federation.publish`` (the compile is left out: openflow/, measured by compile_scale).
- **withdraw**: the N ports deleted in one transaction; CPU until the speaker withdrew the first of them, until
  State has taken the report and the speaker holds none of them (withdrawn at intake: controller/state_leaving.py),
  and until the delete's intake ended (the IDL's slices applied, reported and taken, their rows freed: marked by
  State holding the next transaction's change, w1's ``ofport`` 7); then the View delta and publish.

- **ofport** (between them): what ovs-vswitchd writes after the announce in the lab for taps without a device,
  ``ofport`` -1 on the N new interfaces (one transaction: ``ofport_ops``); CPU until State holds a second
  transaction's change (w1's ``ofport``), which marks the first one's end.

No ovs-vswitchd runs (the harness writes its ``ofport``, not the interfaces' error); no reconciler, no ExaBGP
process. ``--profile FILE``: cProfile of the first run's phases (one profile, green threads included;
``--profile-phase withdraw``: that phase's only;
``--profile-to-routes``: each until the speaker holds its routes, without the View delta and publish). ``--steps``:
each phase's CPU to the speaker's routes split into the intake's steps (``Steps``: JSON decode, the IDL's parse and
apply with its notifications, the slicing and the rest of the IDL's update, the reporter, State), each exclusive of the
steps it calls (a few calls per update: the timers cost nothing measurable). ``--count``: the withdraw's figures in Python
bytecodes too, in one more run whose withdraw is traced (tests/bytecodes.py; the harness's polls untraced): the work,
whatever the machine's load; ``--functions N``: the N functions with the most bytecodes of their own in the withdraw's
intake. Run with
PYTHONPATH naming the checkout to measure (a git archive of main for "before"). Not collected by pytest.
"""

from __future__ import annotations

from controller.ryu_compat import hub

hub.patch(thread=False)

import argparse  # noqa: E402 (after eventlet's patching, as ryu-manager does)
import gc  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
MARKER_OFPORT = 7  # w1's port renumbered after the withdraw's delete: State holding it marks the delete's intake done
MARKER = [{"op": "update", "table": "Interface", "where": [["name", "==", "tapw1"]], "row": {"ofport": MARKER_OFPORT}}]
DEADLINE_S = 300.0  # one phase; a bound for every wait here
VTEP_IP = "10.251.0.5"


class Database:
    """ovsdb-server on a fresh Open_vSwitch database, dialling Canopy's manager port (an active ``tcp:`` remote)."""

    def __init__(self, workdir: Path, manager_port: int):
        self.socket = workdir / "db.sock"
        db = workdir / "conf.db"
        subprocess.run(["ovsdb-tool", "create", str(db), SCHEMA], check=True)
        self.proc = subprocess.Popen(["ovsdb-server", str(db), f"--remote=punix:{self.socket}",
                                      f"--remote=tcp:127.0.0.1:{manager_port}", f"--unixctl={workdir / 'ctl'}",
                                      f"--log-file={workdir / 'ovsdb-server.log'}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait(lambda: self.socket.exists(), "ovsdb-server's socket")

    def transact(self, ops: list) -> list:
        """One transaction on the unix socket (evpn_routes' own)."""
        from tests.benchmarks.evpn_routes import transact

        return transact(Hv(self), ops)

    def send(self, request: bytes) -> None:
        """A transaction encoded beforehand (its JSON is the harness's CPU, not the controller's), on a green socket:
        the session runs meanwhile; the reply is read and dropped (ovsdb-server sends it after the update)."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(DEADLINE_S)
            sock.connect(str(self.socket))
            sock.sendall(request)
            sock.recv(1 << 16)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def wait(predicate, what: str, timeout: float = DEADLINE_S) -> None:
    """Poll ``predicate`` every 10 ms until true (its own bytecodes not counted: ``Meter``)."""
    deadline = time.monotonic() + timeout
    while not polled(predicate):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        hub.sleep(0.01)


def polled(predicate) -> bool:
    if clock.counter is None:
        return predicate()
    with clock.counter.untraced():
        return predicate()


def root_ops() -> list:
    """kvm1's root row and br-int holding w1's port (ofport 5) and a datapath id, as ovs-vswitchd would leave them."""
    from tests.benchmarks.evpn_routes import W1

    ids = ["map", [["iface-id", W1["name"]], ["attached-mac", W1["mac"]]]]
    return [
        {"op": "insert", "table": "Interface", "uuid-name": "iw1",
         "row": {"name": "tapw1", "ofport": 5, "external_ids": ids}},
        {"op": "insert", "table": "Port", "uuid-name": "pw1",
         "row": {"name": "tapw1", "interfaces": ["named-uuid", "iw1"]}},
        {"op": "insert", "table": "Bridge", "uuid-name": "br",
         "row": {"name": "br-int", "datapath_id": "0000000000000005", "ports": ["named-uuid", "pw1"]}},
        {"op": "insert", "table": "Open_vSwitch", "row": {
            "bridges": ["named-uuid", "br"],
            "external_ids": ["map", [["system-id", "kvm1"], ["canopy-vtep-ip", VTEP_IP],
                                     ["canopy-flavour", "kvm"]]]}}]


class Type2:
    """The speaker's type-2 routes, counted again only when its table's size changed (polled every 10 ms)."""

    def __init__(self, speaker):
        self.speaker, self.size, self.count = speaker, -1, 0

    def __call__(self) -> int:
        if len(self.speaker.desired) != self.size:
            self.size = len(self.speaker.desired)
            self.count = sum(1 for route in self.speaker.desired.values() if route.TYPE == 2)
        return self.count


class FirstChange:
    """True once the count of ``type2`` differs from its first: ``at``, the process's CPU time (``thread_time``)
    at the first poll that saw it (polled every 10 ms: when the first route was announced or withdrawn)."""

    def __init__(self, type2: Type2):
        self.type2, self.initial, self.at = type2, type2(), None

    def __call__(self) -> bool:
        if self.at is None and self.type2() != self.initial:
            self.at = clock()
        return self.at is not None


class Meter:
    """What the phases are measured in: the process's CPU time (``time.thread_time``), or with ``counter`` (a
    tests/bytecodes.py ``Bytecodes``, tracing meanwhile) the Python bytecodes run so far (``--count``)."""

    def __init__(self):
        self.counter = None
        self.functions = 0  # the top functions of the withdraw's intake to name (``counter`` a ``ByFunction``)
        self.top: list[tuple[str, int]] = []  # they, with their own bytecodes

    def __call__(self) -> float:
        return time.thread_time() if self.counter is None else self.counter.count


clock = Meter()


class W1At:
    """True once State holds w1's port numbered ``ofport`` (the mark of an update's end: updates are taken in order)
    and no report is being taken. Each snapshot State holds is searched once (the polls' own work is the harness's)."""

    def __init__(self, state, ofport: int):
        self.state, self.ofport, self.seen = state, ofport, {}

    def __call__(self) -> bool:
        found = False
        for snap in self.state.vrs.values():
            if id(snap) not in self.seen:
                self.seen[id(snap)] = any(p.name == "tapw1" and p.ofport == self.ofport for p in snap.ports)
            found = found or self.seen[id(snap)]
        return found and self.state.reports_taking == 0


def run(n: int, profiler=None, profiled=("announce", "withdraw"), to_routes: bool = False,
        traced: bool = False) -> dict:
    import bgp.evpn
    from bgp.federation import Federation
    from controller import policy as pol
    from controller import policydoc
    from controller.app import STATE_EVERY
    from controller.pacer import Pacer
    from controller.programmer import Programmer
    from controller.state import State
    from ovsdb.server import OvsdbManagerServer, give_way
    from tests.benchmarks.evpn_routes import add_ports_ops, delete_ports_ops, out_vport, policy
    from tests.unit.test_evpn_early_withdraw import BookedSpeaker

    bgp.evpn._BUILT.clear()  # routes built (and validated) once: a fresh run builds them all
    plan = policydoc.plan(pol.Policy(), policy(n), "bench", pol.Allocator({}, 65000, (10000, 20000)))
    state = State(plan.policy)
    state.pacer = Pacer(give_way, STATE_EVERY)  # as the app wires it: State's binding pauses, routes go out per chunk
    programmer = Programmer(state)
    federation = Federation(None, "/unused", state, speaker=BookedSpeaker())
    server = OvsdbManagerServer("127.0.0.1", 0, state, provision_tunnel=False, secure_bridge=False)
    server.start()
    workdir = Path(tempfile.mkdtemp(prefix="ovsdb_announce."))
    db = Database(workdir, server.port)
    cpu = {}
    try:
        db.transact(root_ops())
        wait(lambda: any(s.get("chassis") == "kvm1" for s in server.sessions()) and state.reports_taking == 0,
             "kvm1's session to report")
        programmer.refresh(full=True)
        federation.publish(programmer.view)
        federation.early = True  # the app's, once passes hand out
        speaker = federation.speaker
        vports = [out_vport(i) for i in range(n)]
        phases = (("announce", add_ports_ops(vports), n + 1),
                  ("ofport", ofport_ops(), n + 1),
                  ("withdraw", None, 1))
        for phase, ops, routes in phases:
            if phase == "ofport":
                cpu.update(ofport_phase(db, state, ops, profiler if phase in profiled else None))
                continue
            if ops is None:
                ops = delete_ports_ops(Hv(db), {v["name"] for v in vports})
            requests = [json.dumps({"method": "transact", "params": ["Open_vSwitch", *ops], "id": 0}).encode()]
            if phase == "withdraw":  # then w1 renumbered: State holding it marks the end of the delete's intake
                requests.append(json.dumps({"method": "transact", "params": ["Open_vSwitch", *MARKER], "id": 0})
                                .encode())
            gc.collect()
            if traced and phase == "withdraw":  # (traced, the announce takes minutes: a session may time out)
                sys.settrace(clock.counter._trace)
            commands = len(speaker.commands)
            if profiler is not None and phase in profiled:
                profiler.enable()
            type2 = Type2(speaker)
            first = FirstChange(type2)
            STEPS.take()
            if clock.functions:
                clock.counter.functions.clear()
            start = clock()
            hub.spawn(lambda: [db.send(request) for request in requests])  # in order: each reply read before the next
            wait(lambda: first() and state.reports_taking == 0 and type2() == routes, f"{phase}: the speaker's routes")
            routed = clock()
            if phase == "withdraw":
                wait(W1At(state, MARKER_OFPORT), "withdraw: the marker taken")
                if clock.functions:
                    clock.top = clock.counter.top(clock.functions)
            for step, spent in STEPS.take().items():
                cpu[f"{phase}: step: {step}"] = spent
            cpu[f"{phase}: OVSDB update to the speaker's first route changed"] = first.at - start
            cpu[f"{phase}: OVSDB update to the speaker's routes (IDL, reporter, State, routes at bind)"] = \
                routed - start
            if phase == "withdraw":
                cpu[f"{phase}: OVSDB update to its intake's end (the next update's marker in State)"] = clock() - start
            if profiler is not None and phase in profiled and to_routes:
                profiler.disable()
            step = clock()
            programmer.live.apply(programmer.journal.take())
            cpu[f"{phase}: View delta"] = clock() - step
            step = clock()
            federation.publish(programmer.view)
            cpu[f"{phase}: publish"] = clock() - step
            if profiler is not None and phase in profiled:
                profiler.disable()
            cpu[f"{phase}: commands to the speaker (count)"] = len(speaker.commands) - commands
    finally:
        if traced:
            sys.settrace(None)
        server.stop()
        db.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return cpu


def ofport_ops() -> list:
    """What ovs-vswitchd writes after the announce for ports it cannot open (the lab's taps have no device): ``ofport``
    -1 on every interface but w1's; then w1's ``ofport`` 5 -> 6, a second transaction whose report marks the first's
    end (updates are applied in order; the first changes no port's ``PortInfo``: -1 reads as no ofport, as the new
    interfaces' empty ``ofport`` did)."""
    return [[{"op": "update", "table": "Interface", "where": [["name", "!=", "tapw1"]], "row": {"ofport": -1}}],
            [{"op": "update", "table": "Interface", "where": [["name", "==", "tapw1"]], "row": {"ofport": 6}}]]


def ofport_phase(db: Database, state, transactions: list, profiler=None) -> dict:
    """CPU (``thread_time``) from ovs-vswitchd's ``ofport`` update (``ofport_ops``) until State holds w1's new ofport:
    the IDL's modify of the 10,000 interfaces and the reporter's reread (``BridgePorts._update_iface``)."""
    requests = [json.dumps({"method": "transact", "params": ["Open_vSwitch", *ops], "id": 0}).encode()
                for ops in transactions]

    gc.collect()
    if profiler is not None:
        profiler.enable()
    STEPS.take()
    start = clock()
    hub.spawn(lambda: [db.send(request) for request in requests])  # in order: each reply read before the next
    wait(W1At(state, 6), "ofport: w1's ofport 6 reported")
    spent = clock() - start
    steps = STEPS.take()
    if profiler is not None:
        profiler.disable()
    return {"ofport: OVSDB update (ofport -1 on N interfaces) to State holding the next one's": spent,
            **{f"ofport: step: {step}": took for step, took in steps.items()}}


class Steps:
    """CPU (``time.thread_time``) of the intake's steps, each exclusive of the steps it calls: every green thread runs
    on this OS thread, so a step also holds what other green threads did in its pauses (the harness's polls, every
    10 ms). ``install`` wraps the steps' functions (the same names in every checkout measured); ``take`` returns the
    totals since the last call."""

    STEPS = (("decode", "ovsdb.jsonstream", "Parser", "feed"),
             ("decode", "ovsdb.jsonstream", "Parser", "finish"),
             ("IDL parse+apply+notify", "ovsdb.idl.rowloop", None, "apply"),
             ("IDL slicing, checks, rest", "ovsdb.idl.paced", "_PacedIdl", "_Idl__parse_update"),
             ("reporter (BridgePorts, port_info, snapshot)", "ovsdb.vrs", "VrsReporter", "refresh"),
             ("reporter: ports leaving", "ovsdb.vrs", "VrsReporter", "leaving"),
             ("State", "controller.state", "State", "vrs_update"),
             ("State: vports leaving", "controller.state_leaving", "Leaving", "vrs_leaving"),
             ("Federation (State's listeners)", "bgp.federation", "Federation", "_locations_changed"),
             ("Federation (State's listeners)", "bgp.federation", "Federation", "_ports_leaving"),
             ("Federation (State's listeners)", "bgp.federation", "Federation", "_ports_left"),
             ("deleted rows freed", "ovsdb.laterfree", "LaterFree", "free"))

    def __init__(self):
        self.totals: dict[str, float] = {}
        self.stack: list[list] = []  # [step, start, time of the steps it called]

    def install(self) -> None:
        import importlib

        for step, module, owner, name in self.STEPS:
            where = importlib.import_module(module)
            where = getattr(where, owner) if owner else where
            setattr(where, name, self._wrap(step, getattr(where, name)))

    def _wrap(self, step: str, function):
        import functools

        @functools.wraps(function)
        def timed(*args, **kwargs):
            self.stack.append([step, clock(), 0.0])
            try:
                return function(*args, **kwargs)
            finally:
                name, start, inner = self.stack.pop()
                spent = clock() - start
                self.totals[name] = self.totals.get(name, 0.0) + spent - inner
                if self.stack:
                    self.stack[-1][2] += spent
        return timed

    def take(self) -> dict[str, float]:
        totals, self.totals = self.totals, {}
        return totals


STEPS = Steps()


class Hv:
    """What evpn_routes.delete_ports_ops reads of a hypervisor: its database socket."""

    def __init__(self, db: Database):
        self.ovs = type("Ovs", (), {"db_socket": db.socket})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--profile", help="cProfile of the first run's phases into this file")
    parser.add_argument("--profile-phase", choices=("announce", "ofport", "withdraw"), help="profile this phase only")
    parser.add_argument("--profile-to-routes", action="store_true",
                        help="profile each phase until the speaker holds its routes (not the View delta, publish)")
    parser.add_argument("--steps", action="store_true", help="split each phase's intake into its steps (Steps)")
    parser.add_argument("--count", action="store_true",
                        help="also the withdraw's figures in Python bytecodes, in one more run (its withdraw traced)")
    parser.add_argument("--functions", type=int, default=0, metavar="N",
                        help="with --count: the N functions that ran the most bytecodes of their own in the "
                             "withdraw's intake")
    args = parser.parse_args(argv)
    import logging

    if args.steps:
        STEPS.install()

    logging.basicConfig(level=logging.WARNING)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    runs = []
    for k in range(args.repeat):
        profiled = (args.profile_phase,) if args.profile_phase else ("announce", "ofport", "withdraw")
        runs.append(run(args.ports, profiler if k == 0 else None, profiled, args.profile_to_routes))
        if k == 0 and profiler is not None:
            profiler.dump_stats(args.profile)
    print(f"{args.ports:,} ports added, then deleted, each in one OVSDB transaction: CPU ms, median (min-max) of "
          f"{args.repeat} runs")
    for step in runs[0]:
        values = sorted(r.get(step, 0.0) * (1 if "count" in step else 1000) for r in runs)
        print(f"  {step:82s} {statistics.median(values):8.1f} ({values[0]:.1f}-{values[-1]:.1f})")
    if args.count:
        counted = counted_run(args.ports, args.functions)
        print(f"the withdraw in Python bytecodes, per port (of {args.ports:,})")
        for step, count in counted.items():
            if not step.startswith("withdraw"):
                continue
            per = "" if "count" in step else f"{count / args.ports:10,.1f}"
            print(f"  {step:82s} {count:>12,.0f} {per}")
    if clock.top:
        print(f"the withdraw's intake: the {args.functions} functions with the most bytecodes of their own")
        for name, count in clock.top:
            print(f"  {name:90s} {count:>10,} {count / args.ports:8,.1f}")
    return 0


def counted_run(n: int, functions: int) -> dict:
    """``run`` with its withdraw phase traced (``Meter``): its figures in bytecodes; ``functions``: the top ones of
    the withdraw's intake kept in ``clock.top``."""
    from tests.bytecodes import ByFunction, Bytecodes

    clock.counter = ByFunction() if functions else Bytecodes()
    clock.functions = functions
    try:
        return run(n, traced=True)
    finally:
        clock.counter = None


if __name__ == "__main__":
    sys.exit(main())
