"""Long stretches of work give the event loop a turn: ``Pacer.tick()`` at each unit of work, a pause every so many.

Everything in Canopy shares one eventlet hub (OpenFlow echo replies, OVSDB probes, HA heartbeats, REST,
programming; controller/lagprobe.py measures how late it wakes). Work whose size follows the input (one OVSDB
update of 20,000 rows, a full compile, an apply of 10,000 vports) calls ``tick()`` once per unit (a row, a port,
an owner compiled, a switch compared, a vport planned) and the pacer calls ``pause`` once every ``every`` units:
in the controller ``hub.sleep(0)``, which lets every ready green thread run (and the hub poll its sockets) before
the work goes on. The count decides: the same input pauses at the same places, which is what the tests count
(``pauses``); ``every`` is chosen so that a run of units takes a few milliseconds on this machine. The controller's
own pacers are ``BoundedPacer``s: they also pause once a stretch has run ``BUDGET`` of wall clock (a few checks of
the clock every ``every`` units), whatever its units cost.

A pacer without ``pause`` (pure code, offline tools, most unit tests) only counts. The work that pauses must
tolerate other green threads running meanwhile: each caller says what may change during its pauses.
"""

from __future__ import annotations

import gc
import time
from bisect import bisect_left
from itertools import accumulate
from collections.abc import Callable
from contextlib import contextmanager

from controller.osthread import os_threading

EVERY = 200  # default units between two pauses
FREEZE_YOUNG = 50_000  # objects left in the youngest generation by a collector pause from which they are frozen
FREEZE_SPAN = 0.005  # CPU seconds of collector pauses (the first one's start to the last one's end) that freeze too
CLOCK = time.thread_time  # this OS thread's CPU: what the paused regions and the work between them allocated with
BUDGET = 0.008  # seconds of wall clock a BoundedPacer's stretch runs before it pauses at its next check
CHECKS = 8  # a BoundedPacer's clock reads per ``every`` units
_RESUMED: dict = {}  # (clock, OS thread id) -> when a BoundedPacer of that clock and thread last resumed from a pause
_os_ident = os_threading.get_ident  # the OS thread's: ``threading``'s, monkey-patched (ryu-manager), names the green one


class Pacer:
    """Calls ``pause()`` once every ``every`` units ticked (see the module docstring)."""

    def __init__(self, pause: Callable[[], None] | None = None, every: int = EVERY):
        if every < 1:
            raise ValueError("every must be at least 1, not %r" % (every,))
        self.pause = pause
        self.every = every
        self.pauses = 0  # pauses made so far
        self._left = every

    def tick(self, units: int = 1) -> None:
        """``units`` of work done; pauses when ``every`` have been done since the last pause."""
        self._left -= units
        if self._left <= 0:
            self._left = self.every
            if self.pause is not None:
                self.pauses += 1
                self.pause()

    def due(self) -> int:
        """Units left until the next pause (at least 1)."""
        return max(self._left, 1)


class _Never(Pacer):
    """A pacer that never pauses and keeps no count (``due`` is ``every``): ``NEVER``, shared by every caller without
    a pacer of its own, in any thread. A countdown kept there made what a tick costs depend on every tick before it,
    anywhere (a count in bytecodes of 234 or 241 in one xdist worker: tests/unit/test_changed_owners_cost.py)."""

    def tick(self, units: int = 1) -> None:
        pass

    def due(self) -> int:
        return self.every


NEVER = _Never()  # never pauses: the default wherever no pause is wired in
C_PER_UNIT = 32  # items a C loop looks at (a key sorted, a vport's key tested) per pacer unit: a key hashed in Python


def c_ticks(pacer: Pacer, per_unit: int = C_PER_UNIT) -> Callable[[int], None]:
    """A ``tick(n)`` for work done in C on n items (openflow/pacedsort.py's pieces, a copy, a zip): ``pacer`` ticked
    a unit per ``per_unit`` items, rounded up. Ticked a unit an item, the sorts of a 10,000-MAC scope derived again
    whole made ~92 of its pass's 343 pauses (controller/viewremote.py ``_take``, before stop 47)."""
    return lambda n: pacer.tick(-(-n // per_unit))


class BoundedPacer(Pacer):
    """A ``Pacer`` that also pauses early, by the wall clock: at ``checks`` checks every ``every`` units (one each
    ``every // checks`` units ticked) it reads ``clock`` and pauses once ``budget`` seconds have passed since its last
    pause. ``every`` stays the most units between two pauses; the checks bound the stretch whatever a unit costs.

    Why: the count alone bounds a stretch by what its units cost, which is neither the same for every unit (a port
    re-resolved and announced, ~40 µs, against one only re-indexed) nor on a loaded machine. The controller's pacers
    paused every 200-500 units in stretches of 13-27 ms of CPU (evpn_routes, stop 44: State's ``_relocate``, the
    federation's hand-over, the leaving vports), 40-80 ms of wall clock while five busy processes shared the two
    cores; the lag probe, woken only once the stretch under way and every ready green thread's turn are over, was
    late by that much and more (docs/benchmarks.md "lag44"). The wall clock, not this thread's CPU, is read: it is
    what the probe measures (a stretch preempted by the kernel holds the loop as long), and ``time.perf_counter`` costs
    ~0.1 µs where ``time.thread_time`` costs ~2.4 µs here.

    A stretch begins when its green thread gets a turn, which the pacer cannot see; what it sees is its own pauses
    and those of every other ``BoundedPacer`` of its OS thread and clock (``_RESUMED``): one that resumed from a pause
    after this one's last pause ran while this one's thread did not, so this one's stretch began after that. A check
    past the budget takes the later of the two as the stretch's start (read only then: no cost at other checks). A
    pacer idle since its last pause (a pass over, the next one begun seconds later) paused at its first check, a hub
    switch more per burst (stop 44's debt, measured in tests/unit/test_bounded_pacer.py); now only when no other
    pacer paused meanwhile either, that is when the loop had nothing paced to run, and a pause there costs little.

    ``pauses`` counts every pause; ``early``, those the clock made. Where pauses must fall at the same places for the
    same input (tests counting them), a plain ``Pacer``: the controller wires this one (controller/app.py)."""

    def __init__(self, pause: Callable[[], None] | None = None, every: int = EVERY, budget: float = BUDGET,
                 checks: int = CHECKS, clock: Callable[[], float] = time.perf_counter):
        super().__init__(pause, every)
        if budget <= 0 or checks < 1:
            raise ValueError("budget must be positive and checks at least 1, not %r, %r" % (budget, checks))
        self.budget = budget
        self.step = max(1, every // checks)
        self.clock = clock
        self.early = 0  # pauses the clock made, before ``every`` units
        self._check = self.step
        self._since = clock()

    def tick(self, units: int = 1) -> None:
        self._left -= units
        if self._left <= 0:
            self._pause()
            return
        self._check -= units
        if self._check <= 0:
            self._check = self.step
            now = self.clock()
            if now - self._since >= self.budget:
                self._since = max(self._since, _RESUMED.get((self.clock, _os_ident()), self._since))
                if now - self._since >= self.budget:
                    self.early += 1
                    self._pause()

    def _pause(self) -> None:
        self._left, self._check = self.every, self.step
        if self.pause is not None:
            self.pauses += 1
            self.pause()
            self._since = _RESUMED[self.clock, _os_ident()] = self.clock()  # a turn of the loop: see the docstring
        else:
            self._since = self.clock()

    def due(self) -> int:
        """Units left until the next check (at least 1): work done a run at a time (``runs``) is checked as often."""
        return max(min(self._left, self._check), 1)


def loop_pacer(pause: Callable[[], None], every: int = EVERY) -> Pacer:
    """The pacer of the controller's own long loops (controller/app.py: State's, the programmer's and federation's,
    the service's, the standby's applier, the reconcilers): bounded by the count and by ``BUDGET`` of wall clock
    (``BoundedPacer``)."""
    return paced(pause, every, BUDGET)


def paced(pause: Callable[[], None] | None, every: int, budget: float | None) -> Pacer:
    """A ``BoundedPacer`` of ``budget`` seconds, or a plain ``Pacer`` when ``budget`` is None."""
    return Pacer(pause, every) if budget is None else BoundedPacer(pause, every, budget)


class Finishing:
    """``pacer`` for work that must not be left half done (State taking a switch's last report again after one
    failed: controller/state.py ``_failed``): it pauses as ``pacer`` does until a pause raises (its green thread
    killed there: GreenletExit). The work then goes on to its end without pauses, and ``raise_held`` raises what that
    pause raised: a thread killed in such work (a second time, say) leaves nothing half done."""

    def __init__(self, pacer: Pacer):
        self.pacer = pacer
        self.held: BaseException | None = None  # what a pause raised (pauses end there)

    @property
    def pauses(self) -> int:
        return self.pacer.pauses

    @property
    def pause(self):
        """The pacer's pause while it pauses, None once one raised (what looks at a pacer's ``pause``)."""
        return getattr(self.pacer, "pause", None) if self.held is None else None

    def tick(self, units: int = 1) -> None:
        if self.held is None:
            try:
                self.pacer.tick(units)
            except BaseException as exc:  # (GreenletExit too: the work finishes first)
                self.held = exc

    def due(self) -> int:
        due = getattr(self.pacer, "due", None)
        return 1 << 62 if self.held is not None else due() if due is not None else 1

    def raise_held(self) -> None:
        """Raise what a pause raised, if one did."""
        if self.held is not None:
            raise self.held


def runs(pacer: Pacer, items: list, most: int | None = None):
    """``items`` in runs that end where a ``tick`` per item would pause (or a ``BoundedPacer`` check its clock), of
    ``most`` items at most if given: the caller ticks each run's length once it has done the run (``for run in
    runs(pacer, items): work(run); pacer.tick(len(run))``), and work done a run at a time in C loops pauses where, and
    as often as, work done an item at a time. A pacer without ``due`` (a test's stand-in) gets runs of one (of
    ``most`` if given)."""
    due = getattr(pacer, "due", None)
    start, end = 0, len(items)
    while start < end:
        size = due() if due is not None else 1 if most is None else most
        stop = start + (size if most is None else min(size, most))
        yield items[start:stop]
        start = stop


def c_runs(pacer: Pacer, count: int, per_unit: int = C_PER_UNIT):
    """``(a, b)`` of runs of ``count`` items for the caller's C loops over ``items[a:b]``, ``per_unit`` items a pacer
    unit: each run ends where ticks of those units would pause (``runs``), and is ticked once the caller has done it."""
    for run in runs(pacer, range(0, count, per_unit)):
        yield run.start, min(run.start + len(run) * per_unit, count)
        pacer.tick(len(run))


def unit_runs(pacer: Pacer, units: list):
    """``runs`` for items of ``units[i]`` units each: ``(start, stop)`` of runs of items that end where a
    ``tick(units[i])`` per item would pause (the caller ticks ``sum(units[start:stop])`` once it has done the run).
    A pacer without ``due`` gets runs of one."""
    due = getattr(pacer, "due", None)
    ends = list(accumulate(units))
    start, end, done = 0, len(units), 0
    while start < end:
        stop = bisect_left(ends, done + due(), start) + 1 if due is not None else start + 1
        stop = min(stop, end)
        yield start, stop
        done = ends[stop - 1]
        start = stop


def release(mapping: dict, pacer: Pacer) -> None:
    """Empty ``mapping`` an entry at a time, ticking ``pacer`` per entry. Dropping the last reference to a big
    structure frees all of it in one stretch: the flows of 10,000 owners a withdrawal removed, left to go when their
    dict went out of scope, were ~90 ms of CPU freed without a pause. Other references keep what they hold."""
    # not openflow/installed.py ``release``: a dict has no slice to delete a chunk of, so an entry at a time
    while mapping:
        mapping.popitem()
        pacer.tick()


def release_list(items: list, pacer: Pacer) -> None:
    """``release`` of a list: emptied from the end, the entries a tick per entry would reach before a pause at a time
    (``Pacer.due``: the same pauses, a ``del`` of a slice in C, not a Python step an entry)."""
    due = getattr(pacer, "due", None)
    while items:
        count = min(due() if due is not None else 1, len(items))
        del items[-count:]
        pacer.tick(count)


class _Collector:
    freeze = False  # set: freeze what exists at the end (a full compile's result) out of the collector's sight


_paused = {"depth": 0, "enabled": False, "since": 0.0}  # collector_paused() regions open (interleaved)


def paused_now() -> bool:
    """Whether a ``collector_paused`` region is open (work under way: the collector's refresh waits)."""
    return _paused["depth"] > 0


@contextmanager
def collector_paused():
    """Deriving and compiling (and reading a big OVSDB update) allocate up to millions of long-lived objects: without
    a pause the cyclic collector walks all of them again and again while they pile up (34 s of a 78 s full compile
    before issue 13; a gen-2 collection of ~100 ms CPU, in one stretch, inside an OVSDB update of 20,000 rows), and
    once more right after. Set ``freeze`` on what this yields to freeze what exists at the end (gc.freeze: never
    scanned again, still freed by reference counting). Regions of several green threads overlap in any order (one
    pauses inside another's): the collector is back on (if it was on before the first) when the last one ends. When
    the last one ends with more than ``FREEZE_YOUNG`` objects young (a burst: 10,000 vports compiled; a reconciler's
    round; read-backs parsed by other green threads meanwhile), they are frozen too: the first collection after it
    would walk every one of them in one stretch (0.1-0.2 µs each: a million young objects, 176 ms of CPU in a
    restart of vrs_scale). ``gc.get_count()`` alone misses them: every object freed lowers it, old or young (a
    region freeing its temporaries, or read-backs replacing installed records, leave it near 0 with a million young
    objects), and listing them costs about half their collection (31 ms of CPU once). So the young generation is
    also frozen when the regions, from the first one's start to the last one's end, took ``FREEZE_SPAN`` seconds of
    this OS thread's CPU or more: shorter, they allocated too little for a collection to matter. Cyclic garbage
    among frozen objects is kept until the collector's next refresh (controller/collector.py, the controller-wide
    policy)."""
    if _paused["depth"] == 0:
        _paused["enabled"] = gc.isenabled()
        _paused["since"] = CLOCK()
        gc.disable()
    _paused["depth"] += 1
    pause = _Collector()
    try:
        yield pause
    finally:
        _paused["depth"] -= 1
        if pause.freeze or (_paused["depth"] == 0 and (gc.get_count()[0] >= FREEZE_YOUNG
                                                       or CLOCK() - _paused["since"] >= FREEZE_SPAN)):
            gc.freeze()
        if _paused["depth"] == 0 and _paused["enabled"]:
            gc.enable()
