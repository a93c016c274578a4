"""The programming pass's wait for switch reports (controller/programloop.py ``_report_taken``) against what is not
a slice: an HA role taken and a hardware VTEP's report do not wait behind another switch's slices, and a step of
the wall clock neither stretches nor cuts the wait (review29f)."""

from __future__ import annotations

import threading

from controller import programloop
from controller.programloop import ProgramLoop

from .helpers import tor_snapshot
from .test_compiler import snapshot
from .test_programloop import Clock, _apps_loop, _turns_until


def test_the_apps_loop_runs_a_pass_for_an_ha_role_taken_while_an_update_is_still_slicing(monkeypatch):
    """A standby turned active (controller/app.py ``_on_role``) while kvm1 reports an update in slices: the pass
    that publishes the routes and VTEP rows under the new role runs at once (before: it waited behind the slices,
    REPORT_WAIT_MAX at most: the role change woke the loop without saying it was not a report)."""
    from types import SimpleNamespace

    from controller import app
    from controller.ryu_compat import hub

    state, loop, passes, slicing = _apps_loop(monkeypatch, slicing={"ovsdb:kvm1"})
    glue = SimpleNamespace(ovsdb=SimpleNamespace(set_writes=lambda active: None), federation=None, reconcilers={},
                           _roles_wake=hub.Event(), _wake=loop._wake, program_loop=loop)
    worker = hub.spawn(loop.run)
    try:
        _turns_until(lambda: loop.passes)
        state.vrs_update(snapshot("s1", "10.251.0.1", [(f"vm{i}", i + 1) for i in range(10)]))  # s1's first slice
        _turns_until(lambda: False)  # the loop waits for s1's next slices
        assert loop.passes == 1
        app.CanopyApp._on_role(glue, "active", 2)
        _turns_until(lambda: loop.passes > 1)
        assert slicing and loop.passes == 2  # the pass ran with the update still slicing
    finally:
        hub.kill(worker)


def test_the_apps_loop_runs_a_pass_for_a_hardware_vteps_report_while_an_update_is_still_slicing(monkeypatch):
    """A hardware VTEP (it never slices) reports a MAC while kvm1 reports an update in slices: its pass runs once
    State has taken it, like a report of another hypervisor (before: its report counted as the slices' progress,
    and it waited behind them, REPORT_WAIT_MAX at most)."""
    from controller.ryu_compat import hub

    state, loop, passes, slicing = _apps_loop(monkeypatch, slicing={"ovsdb:kvm1"})
    worker = hub.spawn(loop.run)
    try:
        _turns_until(lambda: loop.passes)
        state.vrs_update(snapshot("s1", "10.251.0.1", [(f"vm{i}", i + 1) for i in range(10)]))  # s1's first slice
        _turns_until(lambda: False)
        assert loop.passes == 1
        state.vtep_update(tor_snapshot())
        _turns_until(lambda: loop.passes > 1)
        assert slicing and loop.passes == 2
    finally:
        hub.kill(worker)


def test_a_step_back_of_the_wall_clock_does_not_stretch_the_wait_for_reports():
    """Reports that keep coming, and the wall clock set back an hour at each look (NTP, an operator): the wait still
    ends after REPORT_WAIT_MAX of the loop's own (monotonic) timer; before, it read the wall clock and waited as long
    as the clock stayed behind its start."""
    loop, wall = None, [10_000.0]

    def meanwhile(now):
        loop.noted("vrs")
        wall[0] -= 3600.0

    clock = Clock(meanwhile)
    loop = ProgramLoop(None, threading.Event(), None, sleep=clock.sleep, clock=lambda: wall[0],
                       timer=lambda: clock.now, taking=lambda: True)
    loop._report_taken()
    assert programloop.REPORT_WAIT_MAX <= clock.slept < programloop.REPORT_WAIT_MAX + 2 * programloop.COALESCE
