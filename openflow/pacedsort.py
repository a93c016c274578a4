"""A sort that gives the event loop a turn: ``sorted_paced`` sorts any number of items in stretches of bounded work.

A reconciler's plan sorts every flow it adds and deletes (downstream tables first: openflow/installed.py), a
listing every flow of a switch (openflow/reconciler_report.py, controller/rest/dataplane.py). One ``sorted`` of
32,768 flows, its key a Python function, was one stretch of ~590,000 bytecodes and ~10-20 ms of CPU (stop 45,
docs/benchmarks.md "pace45"), and a merge of sorted chunks in Python (``heapq.merge``) costs more than the sort.
Here the Python work is the key of each item, ``CHUNK`` items a tick; the rest runs in C a piece of bounded size at
a time, on the keys alone (the items found again by key in a dict): runs of ``RUN`` sorted, then merged two at a time
in steps that take at most ``RUN`` keys of each run (``sorted`` of two ascending runs is a merge in C, linear). A
piece ticks the items it placed. Int keys are sorted as they are (a flow's: ``flow_order``), made distinct where two
are equal by the item's index in their low bits; other keys (GET /v1/bgp/routes': tuples of strings) as (key, index)
pairs, which compare more slowly."""

from __future__ import annotations

from bisect import bisect_right
from itertools import repeat
from operator import lshift, or_

CHUNK = 512  # items keyed, or taken back out, between two ticks (as openflow/installed.py's CHUNK)
RUN = 2048  # keys sorted at once in C, and the most a merge's step takes from one run (~0.3 ms of CPU)


def sorted_paced(items: list, tick, key, reverse: bool = False, run: int = RUN) -> list:
    """``items`` sorted by ``key(item)`` as ``sorted`` would (stable: items of equal keys keep their order, ``reverse``
    too), calling ``tick(n)`` after every piece of work on n items: keying ``CHUNK`` items, sorting a run of ``run``
    keys, a merge's step of at most 2 x ``run``, taking ``CHUNK`` items out. Keys: non-negative ints (the first item's
    decides for all), or any others that compare. ``items`` must not change meanwhile (the caller's copy)."""
    if len(items) <= CHUNK:
        ordered = sorted(items, key=key, reverse=reverse)
        tick(len(items))
        return ordered
    ints = type(key(items[0])) is int
    keys, by_key = _keyed(items, key, tick, _plain if ints else zip, reverse)
    if len(by_key) < len(items):  # equal int keys: each made distinct by its item's place, in order once reversed
        keys, by_key = _keyed(items, key, tick, _placed(len(items).bit_length()), reverse)
    order = _merged(_runs(keys, tick, run), tick, run)
    if reverse:
        order.reverse()  # (C, a pointer a key)
    out: list = []
    for start in range(0, len(order), CHUNK):
        out += map(by_key.__getitem__, order[start:start + CHUNK])
        tick(min(CHUNK, len(order) - start))
    return out


def _keyed(items: list, key, tick, place, reverse: bool) -> tuple[list, dict]:
    """(the sort key of each item, sort key -> item): ``place(keys, indexes)`` of a chunk's keys and their items'
    indexes (from the end if ``reverse``: ties stay in order once reversed). In C but the key."""
    keys: list = []
    by_key: dict = {}
    indexes = range(len(items) - 1, -1, -1) if reverse else range(len(items))
    for start in range(0, len(items), CHUNK):
        part = items[start:start + CHUNK]
        made = list(place(map(key, part), indexes[start:start + CHUNK]))
        keys += made
        by_key.update(zip(made, part))
        tick(len(part))
    return keys, by_key


def _plain(keys, _indexes):
    return keys


def _placed(shift: int):
    """Int keys shifted left by ``shift``, their items' indexes in the bits freed."""
    return lambda keys, indexes: map(or_, map(lshift, keys, repeat(shift)), indexes)


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
