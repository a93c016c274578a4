"""The start-up hold never ends on a pass whose View holds a remembered switch State had only partly taken in.

State takes a switch's first report with pauses (controller/state.py ``vrs_update``: the switch is in ``State.vrs``,
then in the journal, before its vports are located, chunk by chunk). A programming pass may run in such a pause (its
wait for the report cut short: a REST or BGP change, a switch connecting over OpenFlow, REPORT_WAIT, the hold's end):
its View holds the switch with only some of its VMs. Released on that pass, the hold would hand every switch a desired
state without the rest of them: their flows deleted, to be added again one pass later (controller/app.py
``_after_hold``). Here a pass runs in every one of State's pauses, deterministically (the pacer's pause runs it)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from controller import app
from controller import state as state_module
from controller.pacer import Pacer
from controller.programmer import Programmer
from controller.startup_hold import StartupHold

from .test_compiler import add_vport, add_vports, base_state, snapshot

VMS = 40



def app_glue(state, programmer, hold):
    """The app's hold questions (``_reported``, ``_arrived``, ``_partial``) asked of these parts, as CanopyApp asks them."""
    glue = SimpleNamespace(state=state, programmer=programmer, hold=hold, federation=None,
                           ovsdb=SimpleNamespace(release=lambda: None))
    glue._reported = lambda: app.CanopyApp._reported(glue)
    glue._arrived = lambda: app.CanopyApp._arrived(glue)
    glue._partial = lambda: app.CanopyApp._partial(glue)
    return glue

def _hold_over_a_first_report(monkeypatch, remembered=("s1",), later=0.0, ends_in_take=False):
    """s1 reports its VMS vports (its first report) while the hold remembers ``remembered``; a programming pass (the
    app's ``_after_hold`` on the programmer's View) runs in each of State's pauses and once after the report. Returns
    (the hold, s1's vports in the View of each pass that has s1, and in that of the pass that released the hold).
    ``later``: seconds on the hold's clock from its start to the report; ``ends_in_take``: the clock is past hold_max
    (by less than hold_time) from the first pause in which State has s1."""
    monkeypatch.setattr(state_module, "RELOCATE_CHUNK", 2)  # s1's vports located 2 at a time, pausing between
    state = base_state()
    for i in range(VMS):
        add_vport(state, "acme/web", f"vm{i}", f"02:00:00:00:01:{i:02x}", f"10.0.1.{20 + i}")
    programmer = Programmer(state)
    programmer.refresh(full=True)  # the start's pass
    store = SimpleNamespace(get_meta=lambda key: {"vrs": list(remembered)}, set_meta=lambda key, value: None)
    now = [0.0]
    hold = StartupHold(store, 15.0, clock=lambda: now[0], hold_max=60.0)
    now[0] += later
    glue = app_glue(state, programmer, hold)
    seen, released = [], []

    def a_pass():  # what the programming loop does when its wait for the report is cut short in this pause
        if not hold.holding:
            return
        if ends_in_take and "s1" in state.vrs:
            now[0] = 70.0
        programmer.refresh()
        placed = len(programmer.live.by_session.get("s1", ()))
        if "s1" in programmer.view.switches:
            seen.append(placed)
        if app.CanopyApp._after_hold(glue, set()) is not None:
            released.append(placed)

    state.pacer = Pacer(a_pass, every=5)
    state.vrs_update(snapshot("s1", "10.251.0.1", [(f"vm{i}", i + 1) for i in range(VMS)]))
    state.pacer = Pacer()
    a_pass()  # the pass after the report (State's last change woke the loop)
    return hold, seen, released


def test_the_hold_is_not_released_on_a_pass_with_a_switch_state_has_partly_taken_in(monkeypatch):
    hold, seen, released = _hold_over_a_first_report(monkeypatch)
    assert any(placed < VMS for placed in seen)  # passes did run with s1 partly in the View
    assert released == [VMS]  # on main: released on the first of them, with none of s1's vports
    assert not hold.holding


def test_a_partly_taken_switch_holds_past_the_holds_end_and_past_hold_max(monkeypatch):
    """The hold's end (hold_time, even hold_max) reached while s1's report is being taken: no pass computed with s1
    partly in ends it (the take ends by itself, and State's last change wakes the loop for the pass that sees it
    whole)."""
    hold, seen, released = _hold_over_a_first_report(monkeypatch, ends_in_take=True)
    assert any(placed < VMS for placed in seen)
    assert released == [VMS]


def test_a_partly_taken_switch_the_hold_does_not_remember_does_not_hold_it(monkeypatch):
    """The hold waits for the switches connected before: s1 is not one of them, s2 has not come back, and the hold's
    end is reached on the first pass: released there, s1's report being taken or not (as on main)."""
    hold, seen, released = _hold_over_a_first_report(monkeypatch, remembered=("s2",), later=100.0)
    assert len(released) == 1 and not hold.holding


def test_state_notifies_a_first_report_that_paused_again_once_it_is_taken_whole(monkeypatch):
    """The pass that sees the switch whole must run even if nothing else changes: State's last notification of a
    first report that paused comes when the switch is no longer ``partial`` (without it, a hold that a pass in the
    report's pauses did not end would wait for hold_time to wake the loop); one that did not pause adds none."""
    monkeypatch.setattr(state_module, "RELOCATE_CHUNK", 2)
    state = base_state()
    for i in range(VMS):
        add_vport(state, "acme/web", f"vm{i}", f"02:00:00:00:01:{i:02x}", f"10.0.1.{20 + i}")
    notes = []
    state.subscribe(lambda what, detail: notes.append((what, dict(state.partial))))
    state.pacer = Pacer(lambda: None, every=5)
    state.vrs_update(snapshot("s1", "10.251.0.1", [(f"vm{i}", i + 1) for i in range(VMS)]))
    assert ("vrs", {"s1": 1}) in notes  # notified while partly taken in
    assert notes[-1] == ("vrs", {}) and state.partial == {}
    notes.clear()
    state.pacer = Pacer()
    state.vrs_update(snapshot("s2", "10.251.0.2", [("vm-x", 1)]))
    assert notes == [("vrs", {"s2": 1})]


def _hold_over_a_first_report_in_its_index(monkeypatch, past_max_from: str, chunk: int | None = 2, vms: int = VMS,
                                           pacer=None):
    """As ``_hold_over_a_first_report``, State's pauses falling where the switch is not in the journal yet: its first
    report's ports indexed ``chunk`` at a time (``State._index_ports``: the switch in ``State.vrs``, not in the View)
    and read 5 at a time (``_read_ports``: not even in ``State.vrs``), the vports located in one chunk. The hold's
    clock is past hold_max (by less than hold_time) from the first pause in which State has s1 (``past_max_from`` =
    "vrs") or from the first pause of the report (="read"). ``chunk`` None: State's own chunks; ``pacer``: made of
    a pause, State's (default: a ``Pacer`` every 5 units). Returns (the hold, s1's vports in the View of each pass (0
    if s1 is not in it), those in the View of the pass that released the hold)."""
    if chunk is not None:
        monkeypatch.setattr(state_module, "INDEX_CHUNK", chunk)
        monkeypatch.setattr(state_module, "RELOCATE_CHUNK", 10 * vms)
    state = base_state()
    add_vports(state, [("acme/web" if i < 200 else "acme/db", f"vm{i}", f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}",
                        f"10.0.{1 + i // 200}.{20 + i % 200}") for i in range(vms)])
    programmer = Programmer(state)
    programmer.refresh(full=True)
    store = SimpleNamespace(get_meta=lambda key: {"vrs": ["s1"]}, set_meta=lambda key, value: None)
    now = [0.0]
    hold = StartupHold(store, 15.0, clock=lambda: now[0], hold_max=60.0)
    glue = app_glue(state, programmer, hold)
    seen, released = [], []

    def a_pass():
        if not hold.holding:
            return
        if past_max_from == "read" or "s1" in state.vrs:
            now[0] = 70.0
        programmer.refresh()
        placed = len(programmer.live.by_session.get("s1", ()))
        seen.append(placed)
        if app.CanopyApp._after_hold(glue, set()) is not None:
            released.append(placed)

    state.pacer = Pacer(a_pass, every=5) if pacer is None else pacer(a_pass)
    state.vrs_update(snapshot("s1", "10.251.0.1", [(f"vm{i}", i + 1) for i in range(vms)]))
    assert state.pacer.pauses > 2  # (passes did run in the report's pauses)
    state.pacer = Pacer()
    a_pass()
    return hold, seen, released


@pytest.mark.parametrize("chunk", [1, 2, 7])
def test_a_switch_whose_first_report_is_indexed_holds_past_hold_max_though_not_in_the_journal_yet(monkeypatch, chunk):
    """State takes a first report into its binding index before the switch is in the journal (``_take``): a pass in
    those pauses has a View without s1, while State has it (``_arrived``). Past hold_max the hold waited for one such
    pass only, then released on the next one: with none of s1's VMs (their flows deleted from every switch, to be
    added again a pass later). Found by lag44 (stop 44) with ``INDEX_CHUNK`` 2: a first report of more than
    ``STATE_EVERY`` ports pauses there by the count, and by the clock (``BoundedPacer``) one of far fewer."""
    hold, seen, released = _hold_over_a_first_report_in_its_index(monkeypatch, "vrs", chunk)
    assert seen.count(0) >= 2  # passes ran with s1 not in the View, past hold_max (2: the hold's one wait spent)
    assert released == [VMS] and not hold.holding


def test_a_switch_whose_first_report_is_read_holds_past_hold_max(monkeypatch):
    """Likewise while its ports are read (``_read_ports``: s1 not in ``State.vrs`` yet): a switch whose first report
    State is taking in is waited for until it is whole (hold_time past hold_max at most), not released without."""
    hold, seen, released = _hold_over_a_first_report_in_its_index(monkeypatch, "read")
    assert seen.count(0) >= 2
    assert released == [VMS] and not hold.holding


def test_a_first_report_of_300_ports_paused_by_the_controllers_pacer_holds_past_hold_max(monkeypatch):
    """With State's own chunks and pacer (``loop_pacer``: STATE_EVERY units, or 8 ms of the clock, here one that moves
    10 ms a read: a loaded machine, every check past the budget), hold_max passed from the report's first pause: a
    first report of 300 ports, fewer than STATE_EVERY, pauses by the clock while its ports are read and indexed,
    before the switch is in the View (``BoundedPacer``, stop 44, made that reachable below STATE_EVERY ports); the
    hold released on the first such pass, without s1."""
    from controller.app import STATE_EVERY
    from controller.pacer import BoundedPacer

    clock = [0.0]

    def ticking():
        clock[0] += 0.010
        return clock[0]

    hold, seen, released = _hold_over_a_first_report_in_its_index(
        monkeypatch, "read", None, 300, lambda pause: BoundedPacer(pause, STATE_EVERY, clock=ticking))
    assert 300 < STATE_EVERY and seen.count(0) >= 2
    assert released == [300] and not hold.holding
