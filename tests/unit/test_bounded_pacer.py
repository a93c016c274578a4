"""The controller's pacers bound a stretch by the clock too (controller/pacer.py ``BoundedPacer``, ``loop_pacer``).

evpn_routes (stop 44) traced the longest stretches of its controller at 13-27 ms of CPU, each ended by a count-paced
pause: 500 ports of State's intake, whatever each cost. Here the clock is counted, not read: a ``Bytecodes`` counter
stands for it (``RATE`` bytecodes a second), so a bound holds whatever the machine's load."""

import dataclasses

import pytest

from controller.pacer import BUDGET, BoundedPacer, Pacer, loop_pacer, paced, runs
from tests.bytecodes import Bytecodes

RATE = 20_000_000  # bytecodes a second the counted clock stands for (CPython here: some 20-60 million)


class _Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_bounded_pacer_pauses_at_its_first_check_past_the_budget_and_at_every_units_at_most():
    clock, paused = _Clock(), []
    pacer = BoundedPacer(lambda: paused.append(clock.now), every=80, budget=0.010, checks=8, clock=clock)
    assert pacer.step == 10 and pacer.due() == 10
    for _ in range(35):  # 1 ms a unit: the check after the 10th ms pauses
        clock.now += 0.001
        pacer.tick()
    assert paused == [pytest.approx(0.010), pytest.approx(0.020), pytest.approx(0.030)] and pacer.early == 3
    for _ in range(200):  # a cheap unit: the count pauses, every 80 units
        clock.now += 1e-6
        pacer.tick()
    assert pacer.pauses == 3 + 200 // 80 + (1 if 5 + 200 % 80 >= 80 else 0) and pacer.early == 3
    pacer.tick(80)  # a tick of ``every`` units pauses, as a Pacer's
    assert pacer.pauses == 6


def test_a_bounded_pacer_without_pause_only_counts_and_bad_settings_are_refused():
    clock = _Clock()
    pacer = BoundedPacer(None, every=4, budget=0.001, clock=clock)
    clock.now = 1.0
    for _ in range(9):
        pacer.tick()
    assert pacer.pauses == 0 and pacer.early == 1  # (the clock stood still after the first)
    for bad in ({"budget": 0.0}, {"checks": 0}, {"every": 0}):
        with pytest.raises(ValueError):
            BoundedPacer(lambda: None, **{"every": 10, **bad})


def test_runs_of_a_bounded_pacer_end_at_its_checks():
    clock = _Clock()
    pacer = BoundedPacer(lambda: None, every=80, budget=1.0, checks=8, clock=clock)
    assert [len(run) for run in runs(pacer, list(range(25)))] == [10, 10, 5]


def test_paced_makes_a_plain_pacer_without_a_budget():
    assert type(paced(None, 10, None)) is Pacer
    bounded = paced(None, 10, 0.005)
    assert isinstance(bounded, BoundedPacer) and bounded.budget == 0.005


def _longest_intake_stretch(vports: int) -> tuple[int, int]:
    """(the most bytecodes run between two pauses, pauses) while State takes kvm1's report of ``vports`` new ports
    (evpn_routes' announce: each bound, located and its route announced at bind), with the controller's pacers
    (``loop_pacer``: State's every ``STATE_EVERY`` units, the programmer's and federation's every 200) on a clock
    that is the bytecodes counted."""
    from controller.app import STATE_EVERY
    from tests.benchmarks import evpn_announce as ea

    state, programmer, federation = ea.world(vports)
    federation.early = True
    report = ea.report(vports)  # as the reporter (ovsdb/vrs.py) makes it: the ports that changed named
    added = {port.name: port for port in report.ports[2:]}  # (not vxlan0 and tapw1: in the first)
    report = dataclasses.replace(report, changed=frozenset(added), changed_ports=added)
    counter, most, pauses = Bytecodes(), [0], [0]

    def pause():
        most[0] = max(most[0], counter.count)
        counter.count = 0
        pauses[0] += 1

    def clock():
        return counter.count / RATE

    state.pacer = loop_pacer(pause, STATE_EVERY)
    programmer.pacer = federation.pacer = loop_pacer(pause)
    for pacer in (state.pacer, programmer.pacer):
        if isinstance(pacer, BoundedPacer):
            pacer.clock = clock
            pacer._since = clock()  # (made on perf_counter: its first stretch would be bounded by the count alone)
    counter.run(lambda: state.vrs_update(report))
    return max(most[0], counter.count), pauses[0]


def test_state_intake_of_3_000_new_ports_pauses_within_the_budget():
    """State's intake of new ports (``_vrs_apply``: ``_read_ports``, ``_index_ports``, ``_relocate`` locating each
    vport and announcing its route at bind) paused every 500 ports, ``_relocate``'s every two chunks of 250: ~515,000
    bytecodes a stretch whatever the clock (13-19 ms of CPU in evpn_routes' announce, stop 44). With the clock: the
    budget (8 ms: 160,000 bytecodes at ``RATE``) and one check's units (``STATE_EVERY // CHECKS`` ports, ~65,000
    bytecodes) at most: 195,189 at 3,000 ports as at 5,000 and 195,244 at 10,000 (not run here: the tracing's time),
    every stretch of this intake being of a paced loop."""
    longest, pauses = _longest_intake_stretch(3_000)
    assert longest <= 240_000, (longest, pauses)


def _update_of(rows: int, long_at: int | None = None) -> dict:
    """An update inserting ``rows`` Interface rows (each with external_ids), the one at ``long_at`` with too many."""
    from ovsdb.idl import refusals

    out = {}
    for i in range(rows):
        pairs = [["iface-id", "v%d" % i]] if i != long_at else [["k%d" % j, "v"] for j in range(refusals.MAX_PLAIN + 1)]
        out["%08x-0000-4000-8000-%012x" % (i, i)] = {"insert": {"name": "p%d" % i, "external_ids": ["map", pairs]}}
    return {"Interface": out}


def test_the_plain_set_check_of_20_000_rows_pauses_every_check_chunk_and_still_names_the_row(monkeypatch):
    """``refusals.check_plain_sets`` looked at a big update's 20,000 rows in one stretch of C loops (~7-10 ms, before
    any row was parsed: evpn_routes' announce, stop 44); now ``CHECK_CHUNK`` rows between two ticks of the replica's
    pacer, and what it refuses is the same."""
    from ovsdb.idl import refusals

    seen, pauses = [], []
    real = refusals._all_short
    monkeypatch.setattr(refusals, "_all_short", lambda values, names: seen.append(len(values)) or real(values, names))
    pacer = Pacer(lambda: pauses.append(len(seen)), 1)
    refusals.check_plain_sets(_update_of(20_000), {"Interface": ("external_ids",)}, pacer)
    assert max(seen) <= refusals.CHECK_CHUNK and sum(seen) == 20_000 and pauses == list(range(1, len(seen)))
    with pytest.raises(refusals.UpdateRefused, match="Interface row 00004a37-.*: column external_ids: 10001 elements"):
        refusals.check_plain_sets(_update_of(20_000, long_at=0x4a37), {"Interface": ("external_ids",)}, pacer)


def test_the_originator_tells_its_watcher_in_parts_that_end_at_the_pacers_checks():
    """``bgp.originator._in_slices`` told a pacer's ``every`` (200) vports and keys at a time, then ticked as many:
    with 10,000 ports gone, a stretch of 15 ms of CPU each (evpn_routes' withdraw, stop 44), whatever the clock. Now
    a part ends where a ``BoundedPacer`` reads its clock, and the clock pauses it once the budget is spent."""
    from bgp.originator import _in_slices

    clock, parts, pauses = _Clock(), [], []
    pacer = BoundedPacer(lambda: pauses.append(len(parts)), every=200, budget=0.008, clock=clock)

    def tell(vports, keys):
        parts.append((len(vports), len(keys)))
        clock.now += 0.0001 * len(vports)  # 0.1 ms a vport told

    _in_slices(tell, range(1_000), range(1_000), pacer)
    assert all(n == 25 for n, _k in parts) and sum(n for n, _k in parts) == 1_000
    assert pauses and pauses[0] == 4 and pacer.early == len(pauses)  # 4 parts: 10 ms, past 8 ms at the check


def _bursts(others_pause: bool) -> tuple[int, int]:
    """(pauses, early ones) of a programmer-like pacer (every 200: a check every 25 units) over 10 bursts of 100 units
    of 10 µs each (1 ms a burst, far under the budget), a second apart; between two bursts another pacer of the same
    clock pauses (``others_pause``: the loop ran other paced work meanwhile) or none does (an idle loop)."""
    clock = _Clock()
    pacer = BoundedPacer(lambda: None, every=200, budget=0.008, clock=clock)
    other = BoundedPacer(lambda: None, every=1, budget=0.008, clock=clock)
    for _burst in range(10):
        clock.now += 1.0
        if others_pause:
            other.tick()  # (every=1: it pauses, and resumes at the clock's time)
        for _unit in range(100):
            clock.now += 0.00001
            pacer.tick()
    return pacer.pauses, pacer.early


def test_a_bounded_pacer_idle_since_its_last_pause_does_not_pause_a_short_burst_once_the_loop_had_other_turns():
    """Stop 44's debt (c): a ``BoundedPacer`` measured a stretch from its own last pause, so after an idle second
    every burst paused at its first check (25 units), one hub switch more per burst, however short. Now the start
    of a stretch is the later of its last pause and the last resume of any pacer of its clock and OS thread: over 10
    short bursts (1,000 units) only the count's 5 pauses, none by the clock (before this change: 10, one early
    pause a burst). With no other pacer paused in between (an idle loop, where a pause costs little) it still
    pauses once a burst."""
    assert _bursts(others_pause=True) == (5, 0)
    assert _bursts(others_pause=False) == (10, 10)


def test_a_stretch_that_began_after_another_pacers_pause_still_pauses_once_past_the_budget():
    clock, paused = _Clock(), []
    pacer = BoundedPacer(lambda: paused.append(clock.now), every=80, budget=0.010, checks=8, clock=clock)
    other = BoundedPacer(lambda: None, every=1, budget=0.010, clock=clock)
    clock.now = 5.0
    other.tick()  # resumed at 5.0: the stretch below begins there
    for _ in range(30):  # 1 ms a unit
        clock.now += 0.001
        pacer.tick()
    assert paused == [pytest.approx(5.010), pytest.approx(5.020), pytest.approx(5.030)] and pacer.early == 3


GREEN_THREADS = """
import sys
sys.path.insert(0, {root!r})
import eventlet
eventlet.monkey_patch()                       # as under ryu-manager, before this module is first imported
from controller.pacer import BoundedPacer


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


clock = Clock()
burst = BoundedPacer(lambda: eventlet.sleep(0), every=200, budget=0.008, clock=clock)
other = BoundedPacer(lambda: eventlet.sleep(0), every=1, budget=0.008, clock=clock)


def elsewhere():                              # another green thread's paced work, a second later
    clock.now += 1.0
    other.tick()                              # pauses: resumes at 1.0


eventlet.spawn(elsewhere).wait()
for _unit in range(100):                      # a short burst (1 ms) of this green thread after it
    clock.now += 0.00001
    burst.tick()
print(burst.pauses, burst.early)
"""


def test_a_bounded_pacer_sees_another_green_threads_resume_when_threads_are_green():
    """``_RESUMED`` is keyed by the OS thread: where ``threading`` is eventlet's (monkey-patched before
    controller/pacer.py is first imported), its ``get_ident`` names the green thread, and a burst after another green
    thread's pause paused at its first check as it did before stop 45 (1 pause, early)."""
    import os
    import subprocess
    import sys

    code = GREEN_THREADS.format(root=os.getcwd())
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "0"]
