"""The programming pass's wait for switch reports (controller/programloop.py ``_report_taken``) against what is not
a slice: an HA role taken and a hardware VTEP's report do not wait behind another switch's slices, a step of
the wall clock neither stretches nor cuts the wait (review29f), and the start-up hold's end (restart.hold_max) is
not put off by it."""

from __future__ import annotations

import threading

from controller import programloop
from controller.programloop import ProgramLoop

from .helpers import tor_snapshot
from .test_compiler import snapshot
from .test_programloop import Clock, _apps_loop, while_s1_slices


def test_the_apps_loop_runs_a_pass_for_an_ha_role_taken_while_an_update_is_still_slicing(monkeypatch):
    """A standby turned active (controller/approles.py ``_on_role``) while kvm1 reports an update in slices: the pass
    that publishes the routes and VTEP rows under the new role runs at once (before: it waited behind the slices,
    REPORT_WAIT_MAX at most: the role change woke the loop without saying it was not a report)."""
    from types import SimpleNamespace

    from controller import app
    from controller.ryu_compat import hub

    def role_taken(state, loop):
        glue = SimpleNamespace(ovsdb=SimpleNamespace(set_writes=lambda active: None), federation=None,
                               reconcilers={}, _roles_wake=hub.Event(), _wake=loop._wake, program_loop=loop,
                               programmer=SimpleNamespace(view=SimpleNamespace(switches={})))
        app.CanopyApp._on_role(glue, "active", 2)

    passes, slicing = while_s1_slices(monkeypatch, role_taken)
    assert slicing and len(passes) == 2  # the pass ran with the update still slicing


def test_the_apps_loop_runs_a_pass_for_a_hardware_vteps_report_while_an_update_is_still_slicing(monkeypatch):
    """A hardware VTEP (it never slices) reports a MAC while kvm1 reports an update in slices: its pass runs once
    State has taken it, like a report of another hypervisor (before: its report counted as the slices' progress,
    and it waited behind them, REPORT_WAIT_MAX at most)."""
    passes, slicing = while_s1_slices(monkeypatch, lambda state, loop: state.vtep_update(tor_snapshot()))
    assert slicing and len(passes) == 2


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


def test_the_pass_that_ends_the_start_up_hold_does_not_wait_for_slices_past_hold_max(monkeypatch):
    """The app's wiring and a real start-up hold on one fake clock: an update still slicing, and making no progress,
    when hold_max (2 s) comes: the pass that ends the hold runs then, not REPORT_WAIT_MAX (5 s) after its wait began
    (before: restart.hold_max could be overrun by up to 5 s)."""
    from types import SimpleNamespace

    from controller.startup_hold import StartupHold

    clock = Clock()
    store = SimpleNamespace(get_meta=lambda key: {"vrs": ["kvm1-chassis"]}, set_meta=lambda key, value: None)
    hold = StartupHold(store, 1.0, clock=lambda: clock.now, hold_max=2.0)
    state, loop, passes, slicing = _apps_loop(monkeypatch, slicing={"ovsdb:kvm1"}, hold=hold)
    monkeypatch.setattr(programloop, "COALESCE", 0.005)  # (_apps_loop made it 0: the fake clock must advance)
    loop._sleep, loop._timer = clock.sleep, lambda: clock.now
    clock.sleep(0.5)  # the pass's wait begins 0.5 s after the start
    loop._report_taken()
    assert slicing and hold.latest() == 2.0 <= clock.now < 2.0 + 2 * programloop.COALESCE
    assert hold.check(set(), set()) and hold.latest() is None  # that pass ends the hold (kvm1 never came back)
    clock.slept = 0.0
    loop._report_taken()  # released: the wait for slices is bounded as before
    assert programloop.REPORT_WAIT_MAX <= clock.slept < programloop.REPORT_WAIT_MAX + 2 * programloop.COALESCE
