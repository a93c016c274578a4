"""openflow/pacedsort.py ``sorted_paced``: the order ``sorted`` gives, in stretches whose work does not grow with the
number of items. Counted, not timed (tests/bytecodes.py): the keys' comparisons run in Python here (``Traced``), so
that the C sorts' work is counted between two ticks too."""

from __future__ import annotations

import random

import pytest

from openflow.installed import flow_order, listing_order
from openflow.pacedsort import CHUNK, sorted_paced
from tests.bytecodes import Bytecodes


def _flows(count: int, seed: int = 1) -> list:
    """``count`` (Flow.key, value) pairs of distinct keys, in no order."""
    rng = random.Random(seed)
    keys = {(rng.randrange(256), rng.randrange(65536), rng.getrandbits(64)) for _ in range(count)}
    return [(key, at) for at, key in enumerate(keys)]


@pytest.mark.parametrize("count", [0, 1, 2, CHUNK, CHUNK + 1, 3 * CHUNK + 7, 5_000])
@pytest.mark.parametrize("reverse", [False, True])
def test_the_order_is_sorteds(count, reverse):
    items = _flows(count)
    for run in (2, 64, 2048):
        assert sorted_paced(items, _no_tick, key=flow_order, reverse=reverse, run=run) == \
            sorted(items, key=flow_order, reverse=reverse)


@pytest.mark.parametrize("reverse", [False, True])
def test_items_of_equal_keys_keep_their_order(reverse):
    """Two owners whose ids' hints collide may hold flows of one key (a listing: controller/rest/dataplane.py)."""
    rng = random.Random(2)
    items = [(rng.randrange(40), at) for at in range(3_000)]
    first = _first
    assert sorted_paced(items, _no_tick, key=first, reverse=reverse, run=64) == \
        sorted(items, key=first, reverse=reverse)


def test_a_listing_order_is_tables_up_priorities_down():
    keys = [key for key, _ in _flows(2_000)]
    assert sorted(keys, key=listing_order) == sorted(keys, key=lambda k: (k[0], -k[1], k[2]))


def test_every_item_is_ticked_once_a_piece():
    ticks = []
    items = _flows(5_000)
    sorted_paced(items, ticks.append, key=flow_order, run=256)
    assert max(ticks) <= 2 * 256 and sum(ticks) >= 3 * len(items)  # keyed, sorted (runs, merges), taken out


class Traced(int):
    """An int whose comparisons run in Python: the work of a sort in C shows in the bytecodes counted."""

    def __lt__(self, other):
        return int.__lt__(self, other)


def _longest(items: list, key, run: int | None = None) -> int:
    """The most bytecodes between two ticks of sorting ``items``."""
    counter, most = Bytecodes(), [0]

    def tick(_units):
        most[0] = max(most[0], counter.count)
        counter.count = 0

    extra = {} if run is None else {"run": run}
    counter.run(lambda: sorted_paced(items, tick, key=key, reverse=True, **extra))
    return max(most[0], counter.count)


def test_a_stretch_does_not_grow_with_the_items():
    """Every comparison counted: 2,000 and 16,000 items, runs of 128: the longest stretch is the same work (a run
    sorted, a merge's step, a chunk keyed), not 8 times more."""
    def traced(item):
        return Traced(flow_order(item))

    small, big = _longest(_flows(2_000), traced, run=128), _longest(_flows(16_000), traced, run=128)
    assert big < 1.2 * small, (small, big)


def test_a_switchs_flows_sort_in_stretches_of_a_chunk():
    """40,000 flows of a switch (a plan's adds, openflow/installed.py): the longest stretch is a chunk keyed, ~18
    bytecodes a flow; one ``sorted`` of 32,768 of them with the Python key was ~590,000 (stop 45)."""
    assert _longest(_flows(40_000), flow_order) < 20 * CHUNK


def _first(item):
    return item[0]


def _no_tick(_units):
    pass


@pytest.mark.parametrize("reverse", [False, True])
def test_keys_that_are_not_ints_sort_as_sorted_does(reverse):
    """GET /v1/bgp/routes sorts by (type, peer, the route's JSON): (key, index) pairs, equal keys kept in order."""
    rng = random.Random(3)
    items = [((rng.randrange(3), "10.0.0.%d" % rng.randrange(4), "x" * rng.randrange(30)), at) for at in range(3_000)]
    for run in (64, 2048):
        assert sorted_paced(items, _no_tick, key=_first, reverse=reverse, run=run) == \
            sorted(items, key=_first, reverse=reverse)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("first", [7, 7.5, True])
def test_keys_of_mixed_number_types_sort_as_sorted_does(first, reverse):
    """Ints, floats and bools in one sort, keys equal across types among them (1, 1.0 and True; 3 and 3.0), the first
    key of each type in turn: as ``sorted`` orders them, equal keys kept in order (stop 46's sort took every key for
    an int when the first was one, and raised on shifting a float)."""
    rng = random.Random(4)
    kinds = (int, float, lambda n: n % 2 == 1)
    items = [(first, -1)] + [(kinds[rng.randrange(3)](rng.randrange(6)), at) for at in range(3 * CHUNK)]
    for run in (64, 2048):
        assert sorted_paced(items, _no_tick, key=_first, reverse=reverse, run=run) == \
            sorted(items, key=_first, reverse=reverse)


def test_int_keys_equal_or_negative_sort_as_sorted_does():
    rng = random.Random(5)
    items = [(rng.randrange(-40, 40) * 2 ** rng.randrange(70), at) for at in range(3 * CHUNK)]
    assert sorted_paced(items, _no_tick, key=_first, run=64) == sorted(items, key=_first)
