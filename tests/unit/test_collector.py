"""The cyclic collector's policy (controller/collector.py): every collection counted by generation with its CPU time
and where it ran, what survives a full collection frozen out of the next one's walk, what a paused region leaves
young frozen, and a refresh that frees the cyclic garbage freezing kept, only when it is due and the controller is
quiet. Durations come from a fake clock: no test reads the wall clock."""

from __future__ import annotations

import gc
import itertools
import weakref

import pytest

from controller import collector, pacer
from controller.collector import Collections, Refresher


class Node:
    """An object that can be part of a reference cycle (a cycle is what only the collector frees)."""

    def __init__(self):
        self.other = None


def ticking(step: float = 1.0):
    """A clock that moves ``step`` at each read: each collection lasts exactly ``step``."""
    counter = itertools.count()
    return lambda: next(counter) * step


def is_frozen(obj) -> bool:
    """Whether the (tracked) object is in the permanent generation: no collection walks it."""
    return gc.is_tracked(obj) and not any(o is obj for o in gc.get_objects())


def cycle() -> weakref.ref:
    """A reference cycle, unreachable once this returns; a weak reference tells whether it was freed."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture
def watch():
    """A policy installed for the test only; what it froze is unfrozen after (the test process goes on)."""
    watch = Collections(clock=ticking(), freeze_after=None)  # freezes after full collections only
    watch.install()
    yield watch
    watch.uninstall()
    gc.unfreeze()


def test_every_collection_is_counted_by_generation_with_its_duration_and_where_it_ran(watch):
    for generation in (0, 1, 2):
        gc.collect(generation)
    figures = watch.figures()
    assert [f["collections"] >= 1 for f in figures] == [True, True, True]
    assert [f["max_seconds"] for f in figures] == [1.0, 1.0, 1.0]  # one tick of the fake clock each
    longest = watch.longest()
    assert {c["generation"] for c in longest} >= {0, 1, 2}
    assert any("test_collector.py" in c["where"][0] and c["where"][0].endswith(
        "test_every_collection_is_counted_by_generation_with_its_duration_and_where_it_ran") for c in longest)
    watch.reset_longest()
    assert watch.longest() == []


def test_what_survives_a_full_collection_is_frozen_out_of_the_next_ones_walk(watch):
    gc.unfreeze()
    kept = [Node() for _ in range(1000)]
    before = gc.get_freeze_count()
    gc.collect()
    assert gc.get_freeze_count() >= before + len(kept) and watch.freezes >= 1
    assert not any(node is kept[0] for node in gc.get_objects(2))  # the collector no longer walks it
    assert gc.get_freeze_count() >= len(kept)


def test_a_long_young_collection_is_followed_by_a_freeze_and_a_short_one_is_not():
    """A young collection that ran long (the fake clock: 1 s each) had a big young generation to walk: its survivors
    are frozen, not walked again by the next two generations' collections; a short one (no time on the clock) leaves
    them to those."""
    gc.unfreeze()
    still = Collections(clock=lambda: 0.0)
    still.install()
    try:
        kept = [Node() for _ in range(1000)]
        gc.collect(0)
        assert gc.get_freeze_count() == 0 and still.freezes == 0
    finally:
        still.uninstall()
    long = Collections(clock=ticking())
    long.install()
    try:
        gc.collect(0)
        assert gc.get_freeze_count() >= len(kept) and long.freezes == 1
    finally:
        long.uninstall()
        gc.unfreeze()


def test_without_the_policy_a_full_collection_freezes_nothing():
    """The test above can fail: a collection alone leaves the survivors in generation 2."""
    gc.unfreeze()
    watch = Collections(clock=ticking(), freeze_after_full=False)
    watch.install()
    try:
        kept = [Node() for _ in range(1000)]
        gc.collect()
        assert gc.get_freeze_count() == 0 and watch.freezes == 0
        assert len(kept) == 1000
    finally:
        watch.uninstall()


def test_frozen_cyclic_garbage_is_kept_until_a_refresh_frees_it(watch):
    freed = cycle()
    kept = [Node() for _ in range(100)]
    gc.freeze()  # as a full compile's end, or a paused region's
    gc.collect()
    assert freed() is not None  # a frozen cycle is never walked: it is leaked until a refresh
    refreshed = watch.refresh()
    assert freed() is None and refreshed["collected"] >= 2 and watch.refreshes == 1
    assert refreshed["frozen_before"] >= 100 + 2
    assert gc.get_freeze_count() >= len(kept)  # what lives is frozen again


def test_a_refresh_without_the_freezing_callback_freezes_the_survivors_itself():
    watch = Collections(clock=ticking())  # not installed: its callback does not run
    kept = [Node() for _ in range(100)]
    freed = cycle()
    gc.freeze()
    try:
        watch.refresh()
        assert freed() is None and gc.get_freeze_count() >= len(kept)
    finally:
        gc.unfreeze()


def test_a_paused_region_leaving_many_young_objects_freezes_them():
    """A reconciler's round or an OVSDB update ending with more than FREEZE_YOUNG objects young: frozen, not walked
    by one young collection when the collector is back on."""
    gc.collect()
    gc.unfreeze()
    try:
        with pacer.collector_paused():
            kept = [Node() for _ in range(pacer.FREEZE_YOUNG + 1000)]
        assert gc.get_freeze_count() >= len(kept)
        with pacer.collector_paused():
            few = [Node() for _ in range(100)]
        frozen = gc.get_freeze_count()
        gc.collect()
        assert gc.get_freeze_count() == frozen and len(few) == 100  # a few are left to the young collections
    finally:
        gc.unfreeze()


def test_young_objects_are_frozen_after_long_regions_even_when_freeing_old_ones_hid_them_from_the_count(
        monkeypatch):
    """Every object freed lowers the youngest generation's count, old or young: a read-back replacing installed records
    leaves the count near 0 with a million young objects. Regions that took FREEZE_SPAN of CPU (a fake clock here)
    freeze what is young whatever the count; shorter ones leave it to the young collections."""
    now = [0.0]
    monkeypatch.setattr(pacer, "CLOCK", lambda: now[0])
    old = [Node() for _ in range(2 * pacer.FREEZE_YOUNG)]
    gc.collect()
    gc.freeze()
    try:
        with pacer.collector_paused():
            short = [Node() for _ in range(1000)]
            del old[: len(old) // 2]  # old ones freed: the count falls back to 0
            assert gc.get_count()[0] < len(short) <= len(gc.get_objects(0))
        assert not is_frozen(short[0])  # a short region: left to the young collections
        with pacer.collector_paused():
            long = [Node() for _ in range(pacer.FREEZE_YOUNG + 1000)]
            del old[:]
            assert gc.get_count()[0] < pacer.FREEZE_YOUNG <= len(gc.get_objects(0))
            now[0] += pacer.FREEZE_SPAN  # the region (and the work in its pauses) took that much CPU
        assert is_frozen(long[0]) and is_frozen(long[-1])  # frozen, not walked young
    finally:
        gc.unfreeze()


class Stub:
    def __init__(self):
        self.refreshed = 0

    def refresh(self):
        self.refreshed += 1


def test_a_refresh_waits_until_it_is_due_and_the_controller_is_quiet():
    now, quiet = [0.0], [False]
    stub = Stub()
    refresher = Refresher(stub, lambda: quiet[0], sleep=lambda s: None, every=100.0, check=10.0,
                          clock=lambda: now[0])
    assert not refresher.step()  # not due
    now[0] = 100.0
    assert not refresher.step() and stub.refreshed == 0  # due, but work is under way
    quiet[0] = True
    assert refresher.step() and stub.refreshed == 1
    assert not refresher.step() and stub.refreshed == 1  # the next one is due 100 s later
    now[0] = 200.0
    refresher.run(rounds=2)
    assert stub.refreshed == 2


def test_a_failing_refresh_does_not_end_the_refreshers_thread():
    class Failing:
        calls = 0

        def refresh(self):
            Failing.calls += 1
            raise RuntimeError("boom")

    refresher = Refresher(Failing(), lambda: True, sleep=lambda s: None, every=0.0, clock=lambda: 0.0)
    refresher.run(rounds=3)
    assert Failing.calls == 3


def test_the_controller_installs_the_policy_once():
    installed = collector.install()
    try:
        collector.install()
        assert installed is collector.WATCH and gc.callbacks.count(collector.WATCH._callback) == 1
    finally:
        collector.WATCH.uninstall()
    assert collector.WATCH._callback not in gc.callbacks
