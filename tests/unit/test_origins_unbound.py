"""``Origins.unbound`` (bgp/origins.py), which takes 10,000 vports in C loops (the base's keys asked at once through
``standing``, each key counted down by how many of the vports went), against the same done a vport and a key at a
time, as it was until stop 38 (``one_at_a_time``), on random bases and random sequences of ``add``, ``keep``,
``unbound`` and ``bound``: the same keys gone (in any order) and the same counts, pins and vports held."""

from __future__ import annotations

import copy
import random

import pytest

from bgp.origins import Origins


class Vport:
    kind = "vport"

    def __init__(self, vid):
        self.vport_id = vid


class Base:
    """An Originator's answers (``keys_of``, ``behind``, ``pinned``, ``standing``, ``named``): vports with
    their type 2 keys (one vport behind each) and a type 3 key shared by several, some of those pinned."""

    def __init__(self, rng):
        self.vports: dict = {}  # vid -> (type 2 keys, type 3 key or None)
        self.t3: dict = {}  # key -> pinned
        for n in range(rng.randrange(1, 6)):
            self.t3[("t3", n)] = rng.random() < 0.3
        for n in range(rng.randrange(0, 30)):
            t2 = tuple(("t2", n, k) for k in range(rng.choice((0, 1, 2, 2))))
            self.vports[f"vm{n}"] = (t2, rng.choice([None, *self.t3]))

    def keys_of(self, vid) -> list:
        t2, t3 = self.vports.get(vid, ((), None))
        return [*t2, t3] if t3 is not None else list(t2)

    def behind(self, key) -> int:
        if key in self.t3:
            return sum(t3 == key for _t2, t3 in self.vports.values())
        return int(any(key in t2 for t2, _t3 in self.vports.values()))

    def pinned(self, key) -> bool:
        return self.t3.get(key, False)

    def standing(self, vport_ids) -> tuple:
        held, quick, grouped = {}, [], []
        for vid in vport_ids:
            keys = self.keys_of(vid)
            if keys:
                held[vid] = keys
                quick.extend(self.vports[vid][0])
                grouped.extend(key for key in keys if key in self.t3)
        return held, quick, grouped

    def named(self, vport_ids) -> set:
        return {vid for vid in vport_ids if self.keys_of(vid)}


def one_at_a_time(origins: Origins, vport_ids) -> list:
    """``Origins.unbound`` as it was until stop 38: a vport at a time, a key at a time."""
    gone = []
    for vid in vport_ids:
        if vid in origins._unbound:
            continue
        keys = origins._keys_of.get(vid)
        if keys is None:
            keys = origins._base.keys_of(vid)
            if keys:
                origins._keys_of[vid] = keys
        if not keys:
            continue
        origins._unbound.add(vid)
        for key in keys:
            left = origins._count.get(key)
            left = origins._count[key] = (origins._base.behind(key) if left is None else left) - 1
            if not left:
                pinned = origins._pins.get(key)
                pinned = origins._pins[key] = origins._base.pinned(key) if pinned is None else pinned
                if not pinned:
                    gone.append(key)
    return gone


def said(origins: Origins) -> tuple:
    return origins._keys_of, origins._count, origins._pins, origins._unbound


@pytest.mark.parametrize("seed", range(300))
def test_unbinding_many_at_once_is_unbinding_them_one_at_a_time(seed):
    rng = random.Random(seed)
    base = Base(rng)
    origins = Origins(base)
    names = [f"vm{n}" for n in range(35)]
    all_keys = [key for t2, _t3 in base.vports.values() for key in t2] + list(base.t3) + [("other", 0)]
    for _ in range(rng.randrange(1, 12)):
        roll = rng.random()
        if roll < 0.2:  # a route announced at bind, or made by a publish: vports (or a pin) behind one key
            sources = [Vport(vid) for vid in rng.sample(names, rng.choice((0, 0, 1, 2)))]
            pin = ["a VTEP's session"] if not sources or rng.random() < 0.2 else []
            origins.add(rng.choice(all_keys), sources + pin)
        elif roll < 0.35:  # the base is about to change
            keys = rng.sample(all_keys, rng.randrange(min(4, len(all_keys) + 1)))
            origins.keep(rng.sample(names, rng.randrange(4)), keys)
        elif roll < 0.45:
            origins.bound(rng.sample(names, rng.randrange(4)))
        else:
            ids = [rng.choice(names) for _ in range(rng.randrange(12))]
            twin = copy.deepcopy(origins)
            twin._base = base
            want = one_at_a_time(twin, ids)
            got = origins.unbound(ids)
            assert sorted(map(repr, got)) == sorted(map(repr, want)) and len(got) == len(set(got)), (got, want)
            assert said(origins) == said(twin)
