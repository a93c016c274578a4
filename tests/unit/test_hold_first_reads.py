"""The start-up hold's passes wait for the first reads of the switches it waits for (controller/programloop.py
``_report_taken``, ``arriving``; controller/startup_hold.py ``AwaitedFirstReads``): after a restart the hold can end
only on a pass computed with every switch connected before, and a pass started on the first switch back (computed
without the others, while their first reads go on) only put the end off until the pass after it (vrs_scale's restart,
branch hold38 in docs/benchmarks.md)."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from controller import programloop
from controller.programloop import ProgramLoop
from controller.startup_hold import StartupHold

from .green import joined, spawned, turns, turns_until
from .test_compiler import snapshot
from .test_programloop import TURNS, Clock, _apps_loop

SWITCHES = ("s1", "s2", "s3")  # their chassis (tests/unit/test_compiler.py ``snapshot``: the session's name)


def _report_one_by_one(state, reading, hub, connect_openflow=True):
    for i, name in enumerate(SWITCHES):
        state.vrs_update(snapshot(name, f"10.251.0.{i + 1}", [(f"vm{j}", j + 1) for j in range(i * 10, i * 10 + 10)]))
        reading.discard(name)  # its first copy reported: the session is SYNCED
        if connect_openflow:
            state.datapath_up(i + 1, "peer")  # its OpenFlow connection, meanwhile (not a reason for a pass now)
        for _ in range(10):
            hub.sleep(0)  # the next session's first read


def _views(monkeypatch, remembered=SWITCHES, connect_openflow=True):
    """The chassis in the View of each pass (the start's first): SWITCHES report one after another, with turns of
    the event loop between them, as first reads do; the hold remembers ``remembered``."""
    from controller.ryu_compat import hub

    store = SimpleNamespace(get_meta=lambda key: {"vrs": list(remembered)}, set_meta=lambda key, value: None)
    hold = StartupHold(store, 15.0)
    reading = set(SWITCHES)  # the sessions of SWITCHES read their first copies (each one's gone once reported)
    state, loop, passes, _ = _apps_loop(monkeypatch, hold=hold, first_reads=lambda: len(reading))
    views = []
    refresh = loop.programmer.refresh

    def seen(full=False):
        touched = refresh(full=full)
        views.append(sorted(sw.chassis for sw in loop.programmer.view.switches.values()))
        return touched

    loop.programmer.refresh = seen
    worker = spawned(loop.run)
    try:
        turns_until(lambda: loop.passes, worker, bound=TURNS)
        joined(spawned(_report_one_by_one, state, reading, hub, connect_openflow), beside=[worker])
        turns_until(lambda: loop.passes > 1 and not loop._taking(), worker, bound=TURNS)
        turns(TURNS, worker)  # any pass still to come
        return views, hold
    finally:
        hub.kill(worker)


def test_the_holds_passes_wait_for_the_first_reads_of_the_switches_it_waits_for(monkeypatch):
    """Three switches remembered, back one after another (each first read a turn after the last, each switch's
    OpenFlow connection meanwhile): the pass after the start is computed with all three, so the hold can end on it
    (before: passes with [s1], [s1, s2], then all three: the hold ended two passes later than needed)."""
    views, hold = _views(monkeypatch)
    assert views[0] == []  # the start's pass
    assert views[1:] == [list(SWITCHES)]
    assert hold.check({"s1", "s2", "s3"}, set())  # that pass's View ends the hold


def test_a_first_read_of_a_switch_the_hold_does_not_wait_for_does_not_hold_the_pass_back(monkeypatch):
    """The hold remembers s1 only: s2's and s3's first reads do not hold back the pass (it can end the hold)."""
    views, _ = _views(monkeypatch, remembered=("s1",), connect_openflow=False)
    assert views[1] == ["s1"]


def test_the_wait_for_first_reads_is_bounded_like_the_wait_for_reports():
    """A first read that never ends (a silent peer): the pass runs REPORT_WAIT after the last report; one that keeps
    reporting: REPORT_WAIT_MAX after the wait began; and a REST change ends the wait at once, a switch connecting over
    OpenFlow does not."""
    loop = None

    def steady(now):
        loop.noted("vrs", sliced=False)
        loop.noted("datapath")

    clock = Clock(steady)
    loop = ProgramLoop(None, threading.Event(), None, sleep=clock.sleep, timer=lambda: clock.now,
                       arriving=lambda: True)
    loop._report_taken()
    assert programloop.REPORT_WAIT_MAX <= clock.slept < programloop.REPORT_WAIT_MAX + 2 * programloop.COALESCE

    clock = Clock()
    loop = ProgramLoop(None, threading.Event(), None, sleep=clock.sleep, timer=lambda: clock.now,
                       arriving=lambda: True)
    loop._report_taken()
    assert programloop.REPORT_WAIT <= clock.slept < programloop.REPORT_WAIT + 2 * programloop.COALESCE

    clock = Clock(lambda now: loop.noted("policy") if now > 0.1 else None)
    loop = ProgramLoop(None, threading.Event(), None, sleep=clock.sleep, timer=lambda: clock.now,
                       arriving=lambda: True)
    loop._report_taken()
    assert clock.slept < 0.1 + 2 * programloop.COALESCE
