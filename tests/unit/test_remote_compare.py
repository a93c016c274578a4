"""``controller.remote.same_tables``: the paced ``==`` of two RemoteTables (an import from scratch compared with
State's, bgp/federation.py), the same answer as ``==`` for every kind of difference, wherever it lies."""

import random
from dataclasses import replace

from controller.pacer import Pacer
from controller.remote import RemoteMac, RemotePrefix, RemoteTable, same_tables


def _table(macs: int, floods: int, prefixes: int) -> RemoteTable:
    """A table of new objects each time (an import from scratch builds its own)."""
    return RemoteTable(
        macs=tuple(RemoteMac("s", f"02:aa:00:00:{i >> 8:02x}:{i & 0xff:02x}", (f"10.0.{i >> 8}.{i & 0xff}",),
                             "10.251.0.9", seq=i % 3, ip_order=(i,)) for i in range(macs)),
        floods=tuple(("s", f"10.251.1.{i}") for i in range(floods)),
        prefixes=tuple(RemotePrefix("d", f"172.16.{i >> 8}.{i & 0xff}/32", "10.251.0.9", "02:cb:00:00:00:09", 9000)
                       for i in range(prefixes)))


def _changed(rng, table: RemoteTable) -> RemoteTable:
    """``table`` with one entry of one part changed, added or removed (at a random place: the first, a middle or
    the last slice)."""
    part = rng.choice([p for p in ("macs", "floods", "prefixes") if getattr(table, p)])
    entries = list(getattr(table, part))
    at = rng.randrange(len(entries))
    how = rng.choice(("change", "add", "remove"))
    new = ("t", entries[at][1]) if part == "floods" else replace(entries[at], vtep_ip="10.251.0.7")
    if how == "remove":
        del entries[at]
    elif how == "add":
        entries.insert(at, new)
    else:
        entries[at] = new
    return replace(table, **{part: tuple(entries)})


def counted_comparisons(monkeypatch, cls) -> list[int]:
    """[comparisons since the last pause (the caller's pause sets it to 0), the most between two pauses]: counted
    by ``cls.__eq__`` for as long as ``monkeypatch`` keeps it patched."""
    compared, equal = [0, 0], cls.__eq__

    def counted(self, other):
        compared[0] += 1
        compared[1] = max(compared)
        return equal(self, other)

    monkeypatch.setattr(cls, "__eq__", counted)
    return compared


def test_the_paced_comparison_answers_as_equality():
    for seed in range(200):
        rng = random.Random(seed)
        every = rng.choice((1, 3, 7, 10, 200))
        a = _table(rng.randrange(0, 40), rng.randrange(0, 8), rng.randrange(0, 40))
        b = _table(len(a.macs), len(a.floods), len(a.prefixes))  # equal, other objects
        if rng.random() < 0.7 and (a.macs or a.floods or a.prefixes):
            b = _changed(rng, b)
        assert same_tables(a, b, Pacer(None, every)) == (a == b), f"seed {seed}"
        assert same_tables(b, a, Pacer(None, every)) == (a == b), f"seed {seed}"


def test_the_prefixes_are_compared_between_pauses_too(monkeypatch):
    """10,000 type 5 prefixes compared field by field cost about what 10,000 MACs do (~2 ms of CPU, load 10): they
    were compared in one stretch before the MACs' first pause. Counted: prefixes compared between two pauses."""
    every = 10
    a, b = _table(30, 3, 300), _table(30, 3, 300)
    compared = counted_comparisons(monkeypatch, RemotePrefix)
    pacer = Pacer(lambda: compared.__setitem__(0, 0), every)
    assert same_tables(a, b, pacer)
    assert compared[1] <= every and pacer.pauses >= 300 // every
