"""A sort that gives the event loop a turn: ``sorted_paced`` sorts any number of items in stretches of bounded work.

A reconciler's plan sorts every flow it adds and deletes (downstream tables first: openflow/installed.py), a
listing every flow of a switch (openflow/reconciler_report.py, controller/rest/dataplane.py). One ``sorted`` of
32,768 flows, its key a Python function, was one stretch of ~590,000 bytecodes and ~10-20 ms of CPU (stop 45,
docs/benchmarks.md "pace45"), and a merge of sorted chunks in Python (``heapq.merge``) costs more than the sort.
Here the Python work is the key of each item, ``CHUNK`` items a tick; the rest runs in C a piece of bounded size at
a time, on the keys alone (the items found again by key in a dict): runs of ``RUN`` sorted, then merged two at a time
in steps that take at most ``RUN`` keys of each run (``sorted`` of two ascending runs is a merge in C, linear). A
piece ticks the items it placed. Int keys (a flow's: ``flow_order``) are sorted as they are, made distinct where two
are equal by the item's index in their low bits, when every key is of type int (checked in C); any other keys
(GET /v1/bgp/routes': tuples of strings; a mix of ints and floats, which may be equal across types) as (key, index)
pairs, which compare more slowly."""

from __future__ import annotations

from bisect import bisect_right
from itertools import repeat
from operator import lshift, or_

CHUNK = 512  # items keyed, or taken back out, between two ticks (as openflow/installed.py's CHUNK)
RUN = 2048  # keys sorted at once in C, and the most a merge's step takes from one run (~0.3 ms of CPU)
_INT = frozenset((int,))  # the key types sorted as ints: int alone (a bool or a float may equal an int)


def sorted_paced(items: list, tick, key=None, reverse: bool = False, run: int = RUN, keys_of=None) -> list:
    """``items`` sorted by ``key(item)`` as ``sorted`` would (stable: items of equal keys keep their order, ``reverse``
    too), calling ``tick(n)`` after every piece of work on n items: keying ``CHUNK`` items, sorting a run of ``run``
    keys, a merge's step of at most 2 x ``run``, taking ``CHUNK`` items out. Keys: any hashable ones that ``sorted``
    compares (ints, when every key is one, the fastest; the items are found again by key in a dict). ``items`` must
    not change meanwhile (the caller's copy). ``keys_of`` instead of ``key``: the keys of a list of items as a list
    (made in C loops: openflow/flowkeys.py ``flow_orders``, no Python call an item)."""
    keys_of = keys_of or (lambda part: list(map(key, part)))
    if len(items) <= CHUNK:
        keys = keys_of(items)
        order = sorted(range(len(items)), key=keys.__getitem__, reverse=reverse)  # (stable, as sorted of the items)
        tick(len(items))
        return list(map(items.__getitem__, order))
    keys, ints = _keys(items, keys_of, tick)
    by_key = _by_key(keys, items, tick) if ints else {}
    if len(by_key) < len(items):  # keys not all ints, or equal ones: each made distinct by its item's place
        indexes = range(len(items) - 1, -1, -1) if reverse else range(len(items))  # (ties in order once reversed)
        keys = _placed(keys, indexes, tick, len(items).bit_length() if ints else None)
        by_key = _by_key(keys, items, tick)
    order = _merged(_runs(keys, tick, run), tick, run)
    if reverse:
        order.reverse()  # (C, a pointer a key)
    out: list = []
    for start in range(0, len(order), CHUNK):
        out += map(by_key.__getitem__, order[start:start + CHUNK])
        tick(min(CHUNK, len(order) - start))
    return out


def _keys(items: list, keys_of, tick) -> tuple[list, bool]:
    """(the key of each item, whether every key's type is int), in C but ``keys_of``."""
    keys: list = []
    ints = True
    for start in range(0, len(items), CHUNK):
        made = keys_of(items[start:start + CHUNK])
        ints = ints and set(map(type, made)) <= _INT
        keys += made
        tick(len(made))
    return keys, ints


def _by_key(keys: list, items: list, tick) -> dict:
    """Sort key -> item, in C (fewer entries than items where keys are equal)."""
    by_key: dict = {}
    for start in range(0, len(items), CHUNK):
        by_key.update(zip(keys[start:start + CHUNK], items[start:start + CHUNK]))
        tick(min(CHUNK, len(items) - start))
    return by_key


def _placed(keys: list, indexes, tick, shift: int | None) -> list:
    """``keys`` made distinct by their items' ``indexes``, in C: ints shifted left by ``shift``, the index in the bits
    freed; any other keys (``shift`` None) as (key, index) pairs."""
    placed: list = []
    for start in range(0, len(keys), CHUNK):
        part, at = keys[start:start + CHUNK], indexes[start:start + CHUNK]
        placed += zip(part, at) if shift is None else map(or_, map(lshift, part, repeat(shift)), at)
        tick(len(part))
    return placed


def _runs(keys: list, tick, run: int) -> list:
    runs = []
    for start in range(0, len(keys), run):
        runs.append(sorted(keys[start:start + run]))
        tick(len(runs[-1]))
    return runs


def _merged(runs: list, tick, step: int) -> list:
    """``runs`` in one ascending order: merged two at a time, level by level."""
    while len(runs) > 1:
        runs = [_merge(runs[at], runs[at + 1], tick, step) if at + 1 < len(runs) else runs[at]
                for at in range(0, len(runs), 2)]
    return runs[0] if runs else []


def _merge(a: list, b: list, tick, step: int) -> list:
    """Two ascending runs (of distinct keys) merged in steps: the next ``step`` keys of each run; of the run whose block
    ends lower, the whole block; of the other, its keys up to that one (the keys left in both are all above it). A
    step sorts at most 2 x ``step`` keys in two ascending runs: a linear merge in C."""
    merged: list = []
    i = j = 0
    while i < len(a) and j < len(b):
        a_end, b_end = min(i + step, len(a)), min(j + step, len(b))
        if a[a_end - 1] < b[b_end - 1]:
            b_end = bisect_right(b, a[a_end - 1], j, b_end)
        else:
            a_end = bisect_right(a, b[b_end - 1], i, a_end)
        part = sorted(a[i:a_end] + b[j:b_end])
        merged += part
        tick(len(part))
        i, j = a_end, b_end
    merged += a[i:] + b[j:]  # what is left of one run (the other is empty): copied in C, no comparison
    return merged
