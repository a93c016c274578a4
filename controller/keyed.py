"""Indexes of sets and counts per key that keep no empty entry.

The LiveView (controller/viewdelta.py and its helpers) and State keep, per subnet, domain, switch or scope, the
sets and counts their deltas need. A controller runs for months while tenants come and go: an entry whose set
became empty, or a count that fell to zero, is taken away at once, so what is kept after any sequence of events is
what a build from scratch on the same inputs keeps (tests/unit/oracle_checks.py ``check_indexes``).
Readers use ``dict.get``: a read never adds an entry.
"""

from __future__ import annotations

from collections import Counter, deque
from itertools import compress, filterfalse, repeat
from operator import contains, eq
from types import MappingProxyType

_FEW_SCOPES = 8  # scopes losing some of their items in one ``remove_all``: at most these by set difference
EMPTY_COUNTS = MappingProxyType({})  # what a read of an absent entry's counts sees (read-only: shared by all)


def add_to(index: dict, key, item) -> None:
    """``item`` into the set ``index[key]`` (made when absent)."""
    items = index.get(key)
    if items is None:
        index[key] = items = set()
    items.add(item)


def add_all(index: dict, key, items) -> None:
    """Each of ``items`` into the set ``index[key]`` (made when absent and ``items`` has any)."""
    held = index.get(key)
    if held is None:
        if not items:
            return
        index[key] = held = set()
    held.update(items)


def discard_from(index: dict, key, item) -> None:
    """``item`` out of the set (or the dict: its key) ``index[key]``; the entry goes with its last item."""
    items = index.get(key)
    if items is not None:
        try:  # (a set, most often: no type check per call, 10,000 endpoints gone at once)
            items.discard(item)
        except AttributeError:  # a dict
            items.pop(item, None)
        if not items:
            del index[key]


def same(values: list) -> bool:
    """Whether ``values`` (a list) holds one value, however many times (a C pass of equality tests, each by identity
    first): a run of one subnet's endpoints on one switch, whose per-item keys need not be made, hashed and counted."""
    return bool(values) and values.count(values[0]) == len(values)


def remove_all(index: dict, scopes: list, items: list) -> None:
    """Each of ``items`` (distinct) out of the set ``index`` holds it in under its scope (``scopes``, in the same
    order; each item in one set, the one of its scope); an entry goes with its last item, an absent scope is passed
    over. In C loops: a scope losing every item goes at once; a few others lose theirs by set difference (each
    costs the fewer of its items and those gone); past ``_FEW_SCOPES`` of those, a discard per item of theirs (a set
    difference per scope walks every item once per scope: 200 items from 200 scopes, 40,000 probes). An index of one
    item per scope (a MAC's endpoint) whose every scope named holds just its item: each entry goes, without counting
    the scopes (``_only_theirs``)."""
    if _only_theirs(index, scopes, items):
        deque(map(index.pop, scopes, repeat(None)), maxlen=0)
        return
    counts = Counter({scopes[0]: len(scopes)}) if same(scopes) else Counter(scopes)
    held = list(filter(index.__contains__, counts))
    whole = set(compress(held, map(eq, map(len, map(index.__getitem__, held)), map(counts.__getitem__, held))))
    deque(map(index.__delitem__, whole), maxlen=0)
    if len(whole) == len(held):
        return
    partial = set(held) - whole
    if len(partial) > _FEW_SCOPES:
        for scope, item in zip(scopes, items):
            if scope in partial:
                index[scope].discard(item)
    else:
        gone = set(items)
        for scope in partial:
            left = index[scope]
            left.difference_update(left.intersection(gone))
    for scope in partial:
        if not index[scope]:
            del index[scope]


def _only_theirs(index: dict, scopes: list, items: list) -> bool:
    """Whether each of ``scopes`` holds a set of one item in ``index``, its item of ``items`` (in C loops; the first
    scope looked at alone first: most indexes hold many items a scope)."""
    first = index.get(scopes[0]) if scopes else None
    if first is None or len(first) != 1:
        return False
    held = list(map(index.get, scopes))
    return None not in held and set(map(len, held)) == {1} and all(map(contains, held, items))


def discard_under(index: dict, scope, keys, item) -> None:
    """``item`` out of the dict ``index[scope][key]`` for each of ``keys`` (an endpoint's IPs, a MAC's wanted IPs);
    an entry goes with its last item, the scope's with its last entry."""
    inner = index.get(scope)
    if inner is None:
        return
    for key in keys:
        items = inner.get(key)
        if items is not None:
            items.pop(item, None)
            if not items:
                del inner[key]
    if not inner:
        del index[scope]


def count_in(index: dict, key, item, step: int) -> int:
    """``index[key][item] += step`` (a Counter per key); a count at zero or below and an entry without counts are
    not kept. Returns the new count (0 when gone)."""
    counts = index.get(key)
    if counts is None:
        index[key] = counts = Counter()
    n = counts[item] + step
    if n > 0:
        counts[item] = n
        return n
    counts.pop(item, None)
    if not counts:
        del index[key]
    return 0


def count_all(index: dict, key, items: list, step: int) -> list:
    """``count_in(index, key, item, step)`` for each of ``items`` (``step`` 1 or -1), in C loops when each item is
    there once (10,000 ports gone: their MACs, their IPs). Returns the items (once each) for which one of those
    calls would have returned ``step > 0``: each whose count came from 0 (step 1), or went to 0 or below (-1)."""
    if not items:
        return []
    counts = index.get(key)
    if step > 0:
        if counts is None:
            index[key] = counts = Counter()
        came = list(dict.fromkeys(filterfalse(counts.__contains__, items)))
        counts.update(items)  # (a Counter's update of a list: a C loop)
        return came
    if counts is None:
        return list(dict.fromkeys(items))
    tally = Counter(items)
    befores = list(map(counts.get, tally, repeat(0)))
    if len(tally) == len(items) and befores.count(1) == len(befores):  # (most often: each there once, counted once)
        deque(map(counts.pop, tally), maxlen=0)
        gone = list(tally)
    else:
        gone = []
        for (item, k), before in zip(tally.items(), befores):
            if before - k > 0:
                counts[item] = before - k
            else:
                counts.pop(item, None)
                gone.append(item)
    if not counts:
        del index[key]
    return gone


def drop_keys(mapping: dict, keys) -> list:
    """Those of ``keys`` that ``mapping`` holds, taken out of it in C loops (10,000 ports gone at once); returns
    them (in the order of ``keys``)."""
    held = list(filter(mapping.__contains__, keys))
    deque(map(mapping.pop, held, repeat(None)), maxlen=0)
    return held


def count_of(index: dict, key, item) -> int:
    """``index[key][item]``, 0 when absent (adds nothing)."""
    return index.get(key, EMPTY_COUNTS).get(item, 0)

