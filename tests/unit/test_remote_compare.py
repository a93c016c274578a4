"""``controller.remote.RemoteIndex.delta_to``: the paced comparison of State's remote index with a table imported from
scratch (bgp/federation.py, ``State.take_remote``): the delta it finds turns the index into that table, it is the
tables' set difference, it is found with pauses (every kind of entry), a table with two locations for one MAC is
left to be taken whole, and an index changed during its pauses is compared again (or, changing at every pause, a
clear error)."""

import random
from dataclasses import replace

import pytest

from controller.pacer import Pacer
from controller.remote import IndexChanged, RemoteDelta, RemoteIndex, RemoteMac, RemotePrefix, RemoteTable


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
    if part == "floods":
        new = ("t", entries[at][1])
    elif part == "macs" and how == "add":
        bits = rng.getrandbits(32).to_bytes(4, "big")
        new = replace(entries[at], mac="02:bb:" + ":".join(f"{b:02x}" for b in bits))  # another MAC (one location each)
    else:
        new = replace(entries[at], vtep_ip="10.251.0.7")
    if how == "remove":
        del entries[at]
    elif how == "add":
        entries.insert(at, new)
    else:
        entries[at] = new
    return replace(table, **{part: tuple(entries)})


def counted_comparisons(monkeypatch, cls) -> list[int]:
    """[comparisons and hashes since the last pause (the caller's pause sets it to 0), the most between two pauses]:
    counted by ``cls.__eq__`` and ``cls.__hash__`` for as long as ``monkeypatch`` keeps them patched."""
    compared, equal, hashed = [0, 0], cls.__eq__, cls.__hash__

    def count():
        compared[0] += 1
        compared[1] = max(compared)

    def counted_eq(self, other):
        count()
        return equal(self, other)

    def counted_hash(self):
        count()
        return hashed(self)

    monkeypatch.setattr(cls, "__eq__", counted_eq)
    monkeypatch.setattr(cls, "__hash__", counted_hash)
    return compared


def _entries(table: RemoteTable) -> set:
    return set(table.macs) | set(table.floods) | set(table.prefixes)


def test_the_delta_found_is_the_difference_and_makes_the_index_the_table():
    for seed in range(300):
        rng = random.Random(seed)
        every = rng.choice((1, 3, 7, 10, 200))
        a = _table(rng.randrange(0, 40), rng.randrange(0, 8), rng.randrange(0, 40))
        b = _table(len(a.macs), len(a.floods), len(a.prefixes))  # equal, other objects
        for _ in range(rng.randrange(4)):
            if b.macs or b.floods or b.prefixes:
                b = _changed(rng, b)
        index = RemoteIndex(a)
        delta = index.delta_to(b, Pacer(None, every))
        assert delta.added == _entries(b) - _entries(a) and delta.removed == _entries(a) - _entries(b), f"seed {seed}"
        assert bool(delta) == (a != b), f"seed {seed}"
        index.apply(delta)
        assert _entries(index.table()) == _entries(b) and not index.several(), f"seed {seed}"


def test_two_locations_for_one_mac_are_left_to_be_taken_whole():
    """Only a table given whole can have them (the import keeps one location per MAC): on either side, no delta."""
    one = _table(3, 0, 0)
    two = replace(one, macs=one.macs + (replace(one.macs[0], vtep_ip="10.251.0.7"),))
    assert RemoteIndex(one).delta_to(two, Pacer()) is None
    assert RemoteIndex(two).delta_to(one, Pacer()) is None
    assert RemoteIndex(one).delta_to(one, Pacer()) == RemoteIndex(one).delta_to(_table(3, 0, 0), Pacer())


def test_every_kind_of_entry_is_compared_between_pauses(monkeypatch):
    """10,000 type 5 prefixes compared field by field cost about what 10,000 MACs do (~2 ms of CPU, load 10): none
    is compared in one stretch. Counted: entries compared or hashed between two pauses, the tables equal and not."""
    every = 10
    for cls in (RemoteMac, RemotePrefix):
        with monkeypatch.context() as patched:
            compared = counted_comparisons(patched, cls)
            for b in (_table(300, 3, 300), _changed(random.Random(1), _table(300, 3, 300))):
                index = RemoteIndex(_table(300, 3, 300))
                pacer = Pacer(lambda: compared.__setitem__(0, 0), every)
                compared[:] = [0, 0]
                index.delta_to(b, pacer)
                assert compared[1] <= 3 * every and pacer.pauses >= 600 // every, (cls, compared)


def _meddle(rng, index: RemoteIndex) -> None:
    """A delta taken by the index, as a caller breaking delta_to's rule would make it during a pause: one entry of
    one part added or removed (a new MAC, flood or prefix, or one the index holds)."""
    new = _table(1, 1, 1)
    fresh = replace(new.macs[0], mac=f"02:bb:00:00:00:{rng.randrange(256):02x}")
    held = list(index.table().macs) + list(index.table().floods) + list(index.table().prefixes)
    choices = [("add", fresh), ("add", ("s", f"10.251.2.{rng.randrange(256)}")),
               ("add", replace(new.prefixes[0], prefix=f"172.17.0.{rng.randrange(256)}/32"))]
    choices += [("remove", entry) for entry in held[:3] + held[-3:]]
    how, entry = rng.choice(choices)
    index.apply(RemoteDelta(frozenset({entry}) if how == "add" else frozenset(),
                            frozenset({entry}) if how == "remove" else frozenset()))


def test_an_index_changed_during_the_pauses_is_compared_again_and_the_delta_still_makes_it_the_table():
    """The guard (``generation``): a delta taken during one of the comparison's pauses makes it start again."""
    for seed in range(200):
        rng = random.Random(seed)
        every = rng.choice((1, 3, 7, 10))
        a = _table(rng.randrange(1, 40), rng.randrange(1, 8), rng.randrange(1, 40))
        b = _changed(rng, _table(len(a.macs), len(a.floods), len(a.prefixes)))
        index = RemoteIndex(a)
        at, pauses = rng.randrange(1, 1 + (len(a.macs) + len(a.floods) + len(a.prefixes)) // every), [0]

        def pause():
            pauses[0] += 1
            if pauses[0] == at:
                _meddle(rng, index)

        delta = index.delta_to(b, Pacer(pause, every))
        assert pauses[0] >= at, f"seed {seed}: no delta was taken during a pause"
        index.apply(delta)
        assert _entries(index.table()) == _entries(b), f"seed {seed}"


def test_an_index_that_keeps_changing_during_the_pauses_is_a_clear_error():
    rng = random.Random(1)
    a = _table(30, 3, 30)
    index = RemoteIndex(a)
    with pytest.raises(IndexChanged, match="took a delta during each of 3 comparisons"):
        index.delta_to(_table(30, 3, 30), Pacer(lambda: _meddle(rng, index), 5))
