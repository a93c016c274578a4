"""MAC mobility (bgp/mobility.py) and the Originator with the announce at bind (bgp/originator.py, bgp/early.py)
paced as in the controller, a Pacer pausing every 1-4 units, on their oracles' random worlds: after every pass the
same as from scratch (tests/unit/test_mobility_oracle.py ``FullWalk``, tests/unit/test_originator_oracle.py
``FullPublish``), with pauses taken, and the ways announce39 (stop 39) added to do work a run at a time in C loops
reached: ``Mobility._new``, ``_take_all`` at once and a MAC at a time, ``Originator._held_at_once`` both ways, routes
announced at bind. In each of MAC mobility's pauses every entry (a MAC's sequence number, read by a vport bound in
the pause) is what it was before the update or what it is after. (Until stop 40 these ran against copies of stop 38's code, test_announce39_old_new.py.)"""

from __future__ import annotations

import random

import pytest

from bgp.early import EarlyAnnounce
from bgp.mobility import Mobility
from bgp.originator import Originator
from controller import loglimit
from controller.pacer import Pacer
from tests.unit import test_mobility_oracle as mobility_oracle
from tests.unit import test_originator_oracle as originator_oracle
from tests.unit.oracle_world import World

SEEDS = 6
PAUSES = [0]


def _paced(rng: random.Random) -> Pacer:
    def pause():
        PAUSES[0] += 1
    return Pacer(pause, rng.randint(1, 4))


class PacedDriver(mobility_oracle.Driver):
    """MAC mobility's oracle world, its Mobility updated with a Pacer pausing every 1-4 units."""

    def __init__(self, rng):
        super().__init__(rng)
        self.every = random.Random(rng.random())

    def compare(self, where: str):
        """And in each pause (where a vport bound reads its MAC's sequence number: bgp/early.py) every entry is what
        it was before the update or what it is after it (the full walk's, made first by ``Driver.compare``)."""
        update, every, mobility, full = self.mobility.update, self.every, self.mobility, self.full

        def paced(view, remote, _pacer=None):
            before = dict(mobility.entries)

            def pause():
                PAUSES[0] += 1
                for key in before.keys() | mobility.entries.keys() | full.entries.keys():
                    assert mobility.entries.get(key) in (before.get(key), full.entries.get(key)), (where, key)
            return update(view, remote, Pacer(pause, every.randint(1, 4)))
        self.mobility.update = paced
        try:
            return super().compare(where)
        finally:
            del self.mobility.update


def _count_paths(monkeypatch) -> dict:
    """Counts of the C-loop paths taken and left (``_new``; ``_take_all`` at once or a MAC at a time)."""
    hits = {"_new": 0, "_take_all at once": 0, "_take_all by _take": 0}
    new, take_all, take = Mobility._new, Mobility._take_all, Mobility._take
    calls = [0]

    def counted_new(self, *args):
        hits["_new"] += 1
        return new(self, *args)

    def counted_take(self, *args):
        calls[0] += 1
        return take(self, *args)

    def counted_take_all(self, keys, remote):
        before = calls[0]
        take_all(self, keys, remote)
        hits["_take_all at once" if calls[0] == before else "_take_all by _take"] += 1

    monkeypatch.setattr(Mobility, "_new", counted_new)
    monkeypatch.setattr(Mobility, "_take", counted_take)
    monkeypatch.setattr(Mobility, "_take_all", counted_take_all)
    return hits


@pytest.mark.parametrize("stopping", [False, True])
def test_mobility_paced_in_runs_equals_the_full_walk(stopping, monkeypatch):
    """(``stopping``: the world's VMs of a migration in flight also stop on the host they leave: other sequences.)"""
    monkeypatch.setattr(loglimit, "_last_logged", {})
    monkeypatch.setattr(World, "stopping", stopping)
    monkeypatch.setattr(mobility_oracle, "Driver", PacedDriver)
    hits, PAUSES[0] = _count_paths(monkeypatch), 0
    for seed in range(SEEDS):
        mobility_oracle.run(seed)
    assert all(hits.values()) and PAUSES[0], (hits, PAUSES)  # both ways of each, and pauses, reached


class PacedPublishing(originator_oracle.Publishing):
    """The originator oracle's world, the Federation by delta paced every 1-4 units."""

    def publish(self, where: str) -> None:
        self.fed.pacer = _paced(self.rng)
        super().publish(where)


@pytest.mark.parametrize("stopping", [False, True])
def test_originator_and_announce_at_bind_paced_in_runs_equal_the_full_publish(stopping, monkeypatch):
    monkeypatch.setattr(loglimit, "_last_logged", {})
    monkeypatch.setattr(World, "stopping", stopping)
    monkeypatch.setattr(originator_oracle, "Publishing", PacedPublishing)
    held, bound, PAUSES[0] = Originator._held_at_once, EarlyAnnounce.bound, 0
    hits, announced = {True: 0, False: 0}, [0]

    def counted(self, *args):
        done = held(self, *args)
        hits[done] += 1
        return done

    def counted_bound(self, *args):
        out = bound(self, *args)
        announced[0] += len(out)
        return out

    monkeypatch.setattr(Originator, "_held_at_once", counted)
    monkeypatch.setattr(EarlyAnnounce, "bound", counted_bound)
    for seed in range(SEEDS):
        originator_oracle.run(seed)
    assert hits[True] and hits[False] and PAUSES[0] and announced[0], (hits, PAUSES, announced)
