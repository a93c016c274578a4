"""The supervised programming loop (controller/programloop.py): a failing pass (derive raising, the full
recompute fallback raising too, a push raising) never ends the loop; the switches keep their last good
state; /v1/status says degraded with the reason until a pass succeeds, then ok and every switch is handed
its state again."""

from __future__ import annotations

import threading

import pytest

from controller import programloop
from controller.programloop import ProgramLoop
from controller.programmer import Programmer
from controller.rest.api import Api
from controller.rest.wire import Request

from .green import joined, spawned, turns, turns_until
from .test_compiler import add_vport, base_state, snapshot


class Switches:
    """What the loop hands out: the desired flows each switch was last given."""

    def __init__(self, programmer):
        self.programmer, self.given, self.calls = programmer, {}, 0

    def __call__(self, touched):
        self.calls += 1
        for session in touched:
            self.given[session] = self.programmer.desired[session].all_flows()


class Breakable:
    """Wraps the View's derivation (the incremental update and the from-scratch build): raises while
    ``broken`` (counting the calls)."""

    def __init__(self, programmer):
        self.broken, self.calls = False, 0
        live = programmer.live
        live.apply, live.build = self._wrap(live.apply), self._wrap(live.build)

    def _wrap(self, real):
        def call(*args, **kwargs):
            self.calls += 1
            if self.broken:
                raise ValueError("'fe80::1' does not appear to be an IPv4 address")
            return real(*args, **kwargs)
        return call


@pytest.fixture
def world():
    state = base_state()
    add_vport(state, "acme/web", "vm1", "02:00:00:00:00:01", "10.0.1.11")
    state.vrs_update(snapshot("s1", "10.251.0.1", [("vm1", 1)]))
    programmer = Programmer(state)
    switches = Switches(programmer)
    loop = ProgramLoop(programmer, threading.Event(), switches, sleep=lambda s: None)
    return state, programmer, switches, loop, Breakable(programmer)


def test_a_failing_pass_is_reported_degraded_changes_nothing_and_recovers(world):
    state, programmer, switches, loop, derive = world
    assert loop.attempt()
    switches(set(programmer.desired))  # the switch connects and gets its state (CanopyApp._datapath_state)
    good = dict(switches.given)
    assert good and loop.status()["state"] == "ok"
    derive.broken = True
    add_vport(state, "acme/web", "vm2", "02:00:00:00:00:02", "10.0.1.12")
    state.vrs_update(snapshot("s1", "10.251.0.1", [("vm1", 1), ("vm2", 2)]))  # its VM starts
    for _ in range(3):  # the incremental pass, then the full recompute that follows, all fail
        assert loop.attempt() is False
    status = loop.status()
    assert status["state"] == "degraded" and "fe80::1" in status["reason"] and status["failures"] == 3
    assert status["retry_in"] == 2.0 and switches.given == good  # the last good state stays
    derive.broken = False
    assert loop.attempt()
    assert loop.status() == {"state": "ok", "reason": None, "since": None, "failures": 0, "retry_in": None,
                             "handed_seq": 0}
    assert switches.given["s1"] != good["s1"]  # vm2's flows, computed from scratch and handed out
    assert switches.given["s1"] == from_scratch(state)


def test_a_compiled_flow_without_an_output_port_fails_the_pass_loudly_and_is_never_left_out(world, monkeypatch,
                                                                                            caplog):
    """A compiler bug giving a flow None as its output port used to reach the encoder, whose ``struct`` refused it
    like a value out of range: the flow was left out of the switch and the pass succeeded. openflow/pipeline.py's
    check names it: the pass fails, logged, degraded, retried like any failing pass, the switches keep their state."""
    import logging

    from openflow import compiler, pipeline
    from openflow.flows import flow

    state, programmer, switches, loop, _ = world
    assert loop.attempt()
    switches(set(programmer.desired))
    good = dict(switches.given)
    real = compiler._FLOWS["vport"]

    def buggy(view, sw, owner):
        flows = list(real(view, sw, owner))
        if owner.id == "vm2":
            flows.append(flow(pipeline.EGRESS, 100, {"reg7": 99}, [("output", None)], owner))
        return flows

    monkeypatch.setitem(compiler._FLOWS, "vport", buggy)
    add_vport(state, "acme/web", "vm2", "02:00:00:00:00:02", "10.0.1.12")
    state.vrs_update(snapshot("s1", "10.251.0.1", [("vm1", 1), ("vm2", 2)]))
    with caplog.at_level(logging.ERROR, logger=programloop.log.name):
        assert loop.attempt() is False
    status = loop.status()
    assert status["state"] == "degraded" and "PipelineError" in status["reason"]
    assert "output port None" in status["reason"] and "reg7=0x63" in status["reason"]  # the flow, as dump-flows
    assert "output port None" in caplog.text and switches.given == good
    assert loop.attempt() is False and loop.status()["failures"] == 2  # retried, failing the same way
    monkeypatch.setitem(compiler._FLOWS, "vport", real)  # the bug fixed
    assert loop.attempt() and loop.status()["state"] == "ok"
    assert switches.given["s1"] == from_scratch(state)


def test_a_failing_push_is_retried(world):
    _, _, switches, loop, _ = world
    loop.attempt()
    add_vport(loop.programmer.state, "acme/web", "vm2", "02:00:00:00:00:02", "10.0.1.12")
    broken = [True]

    def hand_out(touched):
        if broken[0]:
            raise RuntimeError("switch went away")
        switches(touched)

    loop._hand_out = hand_out
    assert not loop.attempt() and loop.status()["state"] == "degraded"
    broken[0] = False
    assert loop.attempt() and switches.given


def test_the_loop_thread_survives_failures_and_status_follows(world, monkeypatch):
    state, _, switches, loop, derive = world
    monkeypatch.setattr(programloop, "RETRY_BASE_S", 0.01)
    derive.broken = True
    wake = loop._wake
    thread = threading.Thread(target=loop.run, daemon=True)
    thread.start()
    ctl = _api(loop)
    _poll(lambda: derive.calls >= 3, "three failed passes")
    assert thread.is_alive()
    reply = ctl.handle(Request("GET", "/v1/status")).body
    assert reply["health"] == "degraded" and "fe80::1" in reply["degraded_reason"]
    derive.broken = False
    _poll(lambda: loop.status()["state"] == "ok", "recovery on the next retry, without a State change")
    add_vport(state, "acme/web", "vm3", "02:00:00:00:00:03", "10.0.1.13")
    state.vrs_update(snapshot("s1", "10.251.0.1", [("vm1", 1), ("vm3", 3)]))
    wake.set()
    _poll(lambda: switches.given.get("s1") == from_scratch(state), "vm3's flows handed out")
    assert thread.is_alive() and ctl.handle(Request("GET", "/v1/status")).body["health"] == "ok"


def from_scratch(state):
    """The flows a fresh programmer computes for switch s1 from the same State."""
    fresh = Programmer(state)
    fresh.refresh(full=True)
    return fresh.desired["s1"].all_flows()


def _api(loop):
    from types import SimpleNamespace

    state = loop.programmer.state
    store = SimpleNamespace(path="canopy.db", fault=None, refusing=None, faults=0, deferral=None, deferrals=0,
                            deferred_for=lambda: 0.0, file_system_warning=None)
    service = SimpleNamespace(counts=lambda: {}, store=store)
    return Api(service, state, SimpleNamespace(open_reads="always"), programming=loop.status)


def _poll(predicate, what, timeout=10.0):
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_pass_gives_the_event_loop_a_turn_between_its_steps():
    """Heartbeats and echo replies (other green threads) run between import, refresh and hand-out."""
    import eventlet

    state = base_state()
    add_vport(state, "acme/web", "vm1", "02:00:00:00:00:01", "10.0.1.11")
    state.vrs_update(snapshot("s1", "10.251.0.1", [("vm1", 1)]))
    programmer = Programmer(state)
    ticks, seen = [0], []

    def ticker():
        while True:
            ticks[0] += 1
            eventlet.sleep(0)

    refresh = programmer.refresh

    def watched_refresh(*args, **kwargs):
        seen.append(("refresh", ticks[0]))
        return refresh(*args, **kwargs)

    programmer.refresh = watched_refresh
    loop = ProgramLoop(programmer, threading.Event(), lambda touched: seen.append(("hand_out", ticks[0])),
                       prepare=lambda: seen.append(("prepare", ticks[0])), sleep=eventlet.sleep)
    thread = eventlet.spawn(ticker)
    try:
        assert loop.attempt() and loop.attempt()
    finally:
        thread.kill()
    (_, prepared), (_, refreshed), (_, handed) = seen[-3:]
    assert [step for step, _ in seen[-3:]] == ["prepare", "refresh", "hand_out"]
    assert prepared < refreshed < handed


def test_the_view_is_handed_on_before_the_pass_compiles():
    """``Programmer.on_view`` (the app publishes the EVPN routes there) runs once per pass that changed something,
    with the View holding the new vport and its flows not compiled yet: 10,000 new vports' routes reach ExaBGP a
    compile earlier (evpn_routes' announce). A pass with nothing to do does not call it; the first pass (from scratch)
    does, and ``ProgramLoop.started`` says whether the pass hands its result out."""
    state = base_state()
    add_vport(state, "acme/web", "vm1", "02:00:00:00:00:01", "10.0.1.10")
    programmer = Programmer(state)
    seen = []

    def view_ready():
        view, desired = programmer.view, programmer.desired.get("hv1")
        seen.append(("vm1" in view.endpoints, desired is not None and any(
            o == ("vport", "vm1") for o in desired.flows)))

    programmer.on_view = view_ready
    loop = ProgramLoop(programmer, threading.Event(), lambda touched: None, sleep=lambda _s: None)
    assert not loop.started
    loop.attempt()
    assert loop.started and seen == [(False, False)]
    state.vrs_update(snapshot("hv1", "10.251.0.1", [("vm1", 10)]))
    loop.attempt()
    assert seen[1:] == [(True, False)]  # the View has vm1, its flows are not compiled yet
    assert "hv1" in programmer.desired and any(o == ("vport", "vm1")
                                               for o in programmer.desired["hv1"].flows)  # and then they are
    loop.attempt()
    assert len(seen) == 2  # nothing changed: no call


def test_a_pass_waits_for_the_report_state_is_taking_and_not_longer_than_report_wait():
    """A big switch report unbinds its vports chunk by chunk, pausing between them, and its first chunk wakes the
    loop: the pass waits until State has taken the whole report (one pass then, not one per chunk deriving a View
    the next chunks change again); a report that never ends holds it REPORT_WAIT at most (a fake clock)."""
    now, sleeps = [0.0], []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += seconds
        assert sum(sleeps) < WAIT_BOUND, "the wait did not end"

    taking = iter([True, True, True, False])
    loop = ProgramLoop(None, threading.Event(), None, sleep=sleep, timer=lambda: now[0], taking=lambda: next(taking))
    loop._report_taken()
    assert sleeps == [programloop.COALESCE] * 3
    sleeps.clear()
    endless = ProgramLoop(None, threading.Event(), None, sleep=sleep, timer=lambda: now[0], taking=lambda: True)
    endless._report_taken()
    assert programloop.REPORT_WAIT <= sum(sleeps) < programloop.REPORT_WAIT + 2 * programloop.COALESCE


WAIT_BOUND = 60.0  # seconds of a fake clock: any wait for reports has ended long before


class Clock:
    """A fake clock whose sleep advances it and runs ``each`` (what happens meanwhile: slices reported, a REST
    change) with the time slept so far."""

    def __init__(self, each=lambda now: None):
        self.now, self.slept, self.each = 0.0, 0.0, each

    def sleep(self, seconds):
        self.now += seconds
        self.slept += seconds
        assert self.slept < WAIT_BOUND, "the wait did not end"  # a test of a wait without its bound fails, not hangs
        self.each(self.now)


def _waiting_loop(clock, taking):
    return ProgramLoop(None, threading.Event(), None, sleep=clock.sleep, timer=lambda: clock.now, taking=taking)


def test_a_pass_waits_past_report_wait_while_the_slices_keep_coming_and_runs_once_they_end():
    """A sliced update lasting 3 s whose slices come every 0.8 s: the pass waits for its last slice (before, it
    ran after REPORT_WAIT, in the middle of the update, and again after it)."""
    loop = None

    def slices(now):
        if int(now / 0.8) != int((now - programloop.COALESCE) / 0.8):
            loop.noted("vrs")  # a slice reported (and its vports located)
            loop.noted("locations")

    clock = Clock(slices)
    loop = _waiting_loop(clock, lambda: clock.now < 3.0)
    loop._report_taken()
    assert 3.0 <= clock.slept < 3.0 + 2 * programloop.COALESCE


def test_a_pass_waits_while_a_slicing_session_works_on_its_next_slice_though_state_does_not_change():
    """Between two slices' reports the session parses the next slice (at load 10, 2-3 s for 4,000 ports) and State
    does not change: the session's turns are its progress, so the pass waits for the slice after it (before: the
    wait ended REPORT_WAIT after the last report, a pass in the middle of the update)."""
    turns = [0]

    def parsing(now):
        turns[0] += 1  # the session's turns while it parses the next slice

    clock = Clock(parsing)
    loop = ProgramLoop(None, threading.Event(), None, sleep=clock.sleep, timer=lambda: clock.now,
                       slicing=lambda: clock.now < 2.5, turns=lambda: turns[0])
    loop._report_taken()
    assert 2.5 <= clock.slept < 2.5 + 2 * programloop.COALESCE
    turns[0], clock.slept, clock.each = 0, 0.0, lambda now: None  # a session slicing that gets no turn: stalled
    loop = ProgramLoop(None, threading.Event(), None, sleep=clock.sleep, timer=lambda: clock.now,
                       slicing=lambda: True, turns=lambda: turns[0])
    loop._report_taken()
    assert programloop.REPORT_WAIT <= clock.slept < programloop.REPORT_WAIT + 2 * programloop.COALESCE


def test_a_pass_waits_report_wait_max_at_most_for_reports_that_keep_coming():
    """Hypervisors sending big updates in turn, for ever: a pass runs at least every REPORT_WAIT_MAX."""
    loop = None
    clock = Clock(lambda now: loop.noted("vrs"))
    loop = _waiting_loop(clock, lambda: True)
    loop._report_taken()
    assert programloop.REPORT_WAIT_MAX <= clock.slept < programloop.REPORT_WAIT_MAX + 2 * programloop.COALESCE


def test_a_pass_for_a_rest_or_bgp_change_does_not_wait_behind_slices():
    """Any change that is not a switch report (a policy applied through REST, EVPN routes from BGP, an external
    network, a switch connecting) ends the wait at once, and a pass it wakes does not wait at all; the next pass,
    woken by slices alone, waits for them again."""
    for what in ("policy", "bgp", "external", "datapath"):
        loop = None

        def rest_change(now, what=what):
            loop.noted("vrs")
            if now >= 0.3:
                loop.noted(what)

        clock = Clock(rest_change)
        loop = _waiting_loop(clock, lambda: True)
        loop._report_taken()
        assert 0.3 <= clock.slept < 0.3 + 2 * programloop.COALESCE, what
        clock.slept, clock.each = 0.0, lambda now: None
        loop._report_taken()  # the change still waits for its pass: no wait
        assert clock.slept == 0.0, what
        loop.programmer = Programmer(base_state())
        loop._hand_out = lambda touched: None
        assert loop.attempt()  # the pass takes it
        loop._report_taken()  # a pass woken by slices alone waits for them (stalled here: REPORT_WAIT)
        assert programloop.REPORT_WAIT <= clock.slept < programloop.REPORT_WAIT + 2 * programloop.COALESCE, what


def test_state_counts_a_report_as_taken_until_its_last_pause_is_over():
    """What the loop's wait reads: State.reports_taking is 1 in every pause of a report (its chunks), 0 after."""
    from controller.pacer import Pacer

    state = base_state()
    for i in range(3):
        add_vport(state, "acme/web", f"vm{i}", f"02:00:00:00:00:1{i}", f"10.0.1.2{i}")
    seen = []
    state.pacer = Pacer(lambda: seen.append(state.reports_taking), every=1)
    state.vrs_update(snapshot("s1", "10.251.0.1", [(f"vm{i}", i + 1) for i in range(3)]))
    assert seen and set(seen) == {1} and state.reports_taking == 0


def test_a_report_that_fails_in_a_pause_is_not_counted_as_being_taken_any_more():
    """The count goes back to 0 however the report ends: else every later pass would wait REPORT_WAIT for it."""
    from controller.pacer import Pacer

    state = base_state()
    for i in range(3):
        add_vport(state, "acme/web", f"vm{i}", f"02:00:00:00:00:1{i}", f"10.0.1.2{i}")

    def fail():
        raise RuntimeError("the session ended in a pause")

    state.pacer = Pacer(fail, every=1)
    with pytest.raises(RuntimeError):
        state.vrs_update(snapshot("s1", "10.251.0.1", [(f"vm{i}", i + 1) for i in range(3)]))
    assert state.reports_taking == 0


def _apps_loop(monkeypatch, slicing=(), hold=None, first_reads=lambda: 0):
    """The app's programming loop (its wiring, controller/app.py ``_programming``) over a State of 40 vports that
    none of its switches binds yet, reports taken with pauses as the app paces State: (state, loop, passes: the
    (reports being taken, vports located) at each pass, the OVSDB server's ``slicing``). ``hold``: the app's start-up
    hold (default: released); ``first_reads``: the OVSDB server's sessions whose first read is under way."""
    from types import SimpleNamespace

    from controller import app
    from controller import state as state_module
    from controller.pacer import Pacer
    from controller.ryu_compat import hub

    monkeypatch.setattr(state_module, "RELOCATE_CHUNK", 2)  # its vports bound 2 at a time, each chunk waking the loop
    monkeypatch.setattr(programloop, "COALESCE", 0)
    monkeypatch.setattr(programloop, "REPORT_WAIT", 600.0)  # a bound only: the report takes far less
    state = base_state()
    for i in range(40):
        add_vport(state, "acme/web", f"vm{i}", f"02:00:00:00:01:{i:02x}", f"10.0.1.{20 + i}")
    state.pacer = Pacer(app.give_way, every=5)
    programmer, passes = Programmer(state), []
    refresh = programmer.refresh
    programmer.refresh = lambda full=False: (passes.append((state.reports_taking, len(state.locations))),
                                             refresh(full=full))[1]
    glue = SimpleNamespace(state=state, programmer=programmer, _wake=hub.Event(), _hand_out=lambda touched: None,
                           routes=SimpleNamespace(import_remote=lambda: None),
                           ovsdb=SimpleNamespace(slicing=set(slicing), slicing_turns=0,
                                                 first_reads_pending=first_reads),
                           hold=hold or SimpleNamespace(latest=lambda: None, holding=False))
    glue.ovsdb.slicing_switches = lambda: {"s1"} if glue.ovsdb.slicing else set()  # kvm1 reports switch s1
    return state, app.CanopyApp._programming(glue), passes, glue.ovsdb.slicing


TURNS = 100  # turns of the event loop a wait for the loop's pass takes at the most


def test_the_apps_loop_waits_for_the_report_state_is_taking_across_its_pauses(monkeypatch):
    """The app's wiring (controller/app.py ``_programming``: woken by State, ``taking`` read from
    State.reports_taking, the hub's sleep), on green threads: a report taken with pauses (the hub's turn, as the app
    paces State) wakes the loop with its first chunks, yet the pass runs only once the whole report is taken. Without
    the coalescing sleep (0 here) a pass not waiting would run in the report's next pause."""
    from controller.ryu_compat import hub

    state, loop, passes, _ = _apps_loop(monkeypatch)
    worker = spawned(loop.run)
    try:
        turns_until(lambda: loop.passes, worker, bound=TURNS)
        assert passes == [(0, 0)]  # the first pass, before the report
        joined(spawned(state.vrs_update, snapshot("s1", "10.251.0.1", [(f"vm{i}", i + 1) for i in range(40)])),
               beside=[worker])
        turns_until(lambda: loop.passes > 1, worker, bound=TURNS)
        assert state.pacer.pauses >= 10  # the report paused, each pause a turn for the loop
        assert passes[1:] == [(0, 40)]  # one pass, after the whole report
    finally:
        hub.kill(worker)


def test_the_apps_loop_waits_for_the_last_slice_of_an_ovsdb_update_reported_in_slices(monkeypatch):
    """An OVSDB update reported in slices (ovsdb/idl/slices.py) is one report per slice, with turns of the event loop
    between them; while the session says it has more to report (``OvsdbManagerServer.slicing``) the pass waits,
    and runs once, after the last slice (without the wait: a pass after the first slice, and one after the last)."""
    from controller.ryu_compat import hub

    state, loop, passes, slicing = _apps_loop(monkeypatch, slicing={"ovsdb:kvm1"})
    worker = spawned(loop.run)

    def report_in_slices():
        state.vrs_update(snapshot("s1", "10.251.0.1", [(f"vm{i}", i + 1) for i in range(10)]))
        for _ in range(10):
            hub.sleep(0)  # the IDL applying the next slice
        state.vrs_update(snapshot("s1", "10.251.0.1", [(f"vm{i}", i + 1) for i in range(40)]))
        slicing.clear()  # the last slice reported

    try:
        turns_until(lambda: loop.passes, worker, bound=TURNS)
        joined(spawned(report_in_slices), beside=[worker])
        turns_until(lambda: loop.passes > 1, worker, bound=TURNS)
        assert passes[1:] == [(0, 40)]
    finally:
        hub.kill(worker)


def test_the_apps_loop_runs_a_pass_for_a_rest_change_while_an_ovsdb_update_is_still_slicing(monkeypatch):
    """The app's wiring on green threads: a policy change (a REST apply) arriving while a session reports slices
    wakes a pass that does not wait for the last slice (before: it waited, REPORT_WAIT at most, behind them)."""
    from controller.ryu_compat import hub

    state, loop, passes, slicing = _apps_loop(monkeypatch, slicing={"ovsdb:kvm1"})
    worker = spawned(loop.run)
    try:
        turns_until(lambda: loop.passes, worker, bound=TURNS)
        state.vrs_update(snapshot("s1", "10.251.0.1", [(f"vm{i}", i + 1) for i in range(10)]))  # the first slice
        add_vport(state, "acme/web", "vm-rest", "02:00:00:00:02:01", "10.0.1.99")  # a REST apply meanwhile
        turns_until(lambda: loop.passes > 1, worker, bound=TURNS)
        assert slicing and loop.passes == 2  # the pass ran with the update still slicing
    finally:
        hub.kill(worker)


def test_the_apps_loop_waits_for_a_sliced_update_lasting_longer_than_report_wait_while_it_progresses(monkeypatch):
    """The app's wiring on green threads, with a clock that advances 50 ms at each look: an update reported in 5
    slices, 0.5 s apart on that clock, lasts 2 s, longer than REPORT_WAIT (1 s); each slice's report reaches the
    loop as progress, so it waits, and runs once after the last slice (before: a pass in the middle, after 1 s,
    and another after the last slice)."""
    from controller.ryu_compat import hub

    state, loop, passes, slicing = _apps_loop(monkeypatch, slicing={"ovsdb:kvm1"})
    monkeypatch.setattr(programloop, "REPORT_WAIT", 1.0)  # (_apps_loop made it a mere bound)
    now = [0.0]

    def clock():
        now[0] += 0.05
        return now[0]

    loop._timer = clock
    worker = spawned(loop.run)

    def report_in_slices():
        for part in range(1, 6):
            state.vrs_update(snapshot("s1", "10.251.0.1", [(f"vm{i}", i + 1) for i in range(8 * part)]))
            for _ in range(10):
                hub.sleep(0)  # the IDL applying the next slice: the loop looks at its clock meanwhile
        slicing.clear()  # the last slice reported

    try:
        turns_until(lambda: loop.passes, worker, bound=TURNS)
        joined(spawned(report_in_slices), beside=[worker])
        turns_until(lambda: loop.passes > 1, worker, bound=TURNS)
        assert now[0] > 2.0 and passes[1:] == [(0, 40)]
    finally:
        hub.kill(worker)


def test_the_apps_loop_runs_a_pass_for_another_switchs_report_while_one_is_still_slicing(monkeypatch):
    """A VM started on another hypervisor (a small report of switch s2) while kvm1 (switch s1) reports an update in
    slices: its pass runs once State has taken that report, without waiting for s1's last slice (before: it waited
    behind them, REPORT_WAIT at most)."""
    passes, slicing = while_s1_slices(monkeypatch, lambda state, loop: state.vrs_update(
        snapshot("s2", "10.251.0.2", [("vm39", 1)])))  # a VM on the other hypervisor
    assert slicing and passes[1:] == [(0, 11)]  # its pass ran with s1 still slicing


def while_s1_slices(monkeypatch, meanwhile):
    """The app's loop on green threads: kvm1 (switch s1) reports the first slice of an update and the loop waits for
    the next; then ``meanwhile(state, loop)`` happens, and the loop is given turns until a second pass: (the passes,
    as ``_apps_loop``'s, and the OVSDB server's ``slicing`` after)."""
    from controller.ryu_compat import hub

    state, loop, passes, slicing = _apps_loop(monkeypatch, slicing={"ovsdb:kvm1"})
    worker = spawned(loop.run)
    try:
        turns_until(lambda: loop.passes, worker, bound=TURNS)
        state.vrs_update(snapshot("s1", "10.251.0.1", [(f"vm{i}", i + 1) for i in range(10)]))  # s1's first slice
        turns(TURNS, worker)  # the loop waits for s1's next slices
        assert loop.passes == 1
        meanwhile(state, loop)
        turns_until(lambda: loop.passes > 1, worker, bound=TURNS)
        return passes, set(slicing)
    finally:
        hub.kill(worker)


def test_a_report_of_a_switch_not_slicing_waits_only_until_state_has_taken_it():
    """The loop's side, on a fake clock: a report of a switch that is not slicing ends the wait for others' slices
    once State is not taking a report any more; a slice of the switch slicing does not."""
    loop, taking = None, [True]

    def meanwhile(now):
        if now >= 0.2:
            loop.noted("vrs", sliced=now < 0.3)  # slices of s1 until 0.3 s, then a report of s2 (taken at 0.5 s)
        taking[0] = now < 0.5

    clock = Clock(meanwhile)
    loop = ProgramLoop(None, threading.Event(), None, sleep=clock.sleep, timer=lambda: clock.now,
                       taking=lambda: taking[0], slicing=lambda: True)
    loop._report_taken()
    assert 0.5 <= clock.slept < 0.5 + 2 * programloop.COALESCE
