"""State's unbinding of ports gone, in C loops (controller/state.py ``_relocate_some``: the vports shown nowhere taken
out of the locations together; ``_forget_seen``; controller/binding.py ``forget_ports``, batched past no port here,
``locate``'s one-port way; controller/state_ports.py ``_mark_seen``'s all-new way), on the incremental oracle's random
worlds (tests/unit/oracle_world.py: ports appearing, leaving and moving on KVM, Hyper-V and ESXi hypervisors, trunks
and static bindings, MAC mismatches, VRS leaving): after every step State's locations and mismatches are those
resolved from scratch, its indexes those of a fresh State given the same reports, the flows those compiled from
scratch (tests/unit/oracle_checks.py ``check``), a mismatch is warned of while it lasts, and every vport whose
location changed is recorded in the journal. (Until stop 40 against a copy of stop 38's code, a port and a vport at
a time.)"""

from __future__ import annotations

import random

import pytest

from controller import binding, state_ports
from tests.unit.oracle_checks import check
from tests.unit.oracle_world import World

REACHED = {"forget_ports": 0, "locate one port": 0, "_mark_seen all new": 0}


def _counting(monkeypatch) -> None:
    forget, locate, mark = binding.BindingIndex.forget_ports, binding.BindingIndex.locate, \
        state_ports.ReportPorts._mark_seen

    def forget_ports(self, session, names, reached):
        REACHED["forget_ports"] += bool(names)
        return forget(self, session, names, reached)

    def located(self, vid, seen_order, active=None):
        key = self.key_of.get(vid)
        REACHED["locate one port"] += bool(key and vid not in self.static_of and len(self.sightings.get(key, ())) == 1)
        return locate(self, vid, seen_order, active)

    def mark_seen(self, snap, changed, seen):
        ports = self._seen_ports.get(snap.session, {})
        REACHED["_mark_seen all new"] += changed is not None and bool(seen) and ports.keys().isdisjoint(seen)
        return mark(self, snap, changed, seen)

    monkeypatch.setattr(binding.BindingIndex, "forget_ports", forget_ports)
    monkeypatch.setattr(binding.BindingIndex, "locate", located)
    monkeypatch.setattr(state_ports.ReportPorts, "_mark_seen", mark_seen)


SEEDS = range(6)


@pytest.mark.parametrize("seed", SEEDS)
def test_ports_gone_unbind_as_resolved_from_scratch(seed, monkeypatch):
    _world_checked(seed, monkeypatch)


def _world_checked(seed, monkeypatch) -> None:
    monkeypatch.setattr(binding, "_FEW", 0)  # (the worlds' reports show at most ~6 ports gone: batched past none)
    _counting(monkeypatch)
    rng = random.Random(seed)
    world = World(rng)
    world.commit()
    world.prog.refresh(full=True)
    journal = world.state.journal()
    for step in range(80):
        before = dict(world.state.locations)
        world.step()
        where = f"seed {seed} step {step}"
        state = world.state
        moved = {vid for vid in set(before) | set(state.locations) if before.get(vid) != state.locations.get(vid)}
        assert moved <= set(journal.take().vports), where
        assert set(state._warned) <= set(state.mismatched), where
        if rng.random() < 0.75:
            world.prog.refresh()
            check(world, where)


def test_the_worlds_reach_the_batched_ways(monkeypatch):
    """The seeds above take each batched way at least once (counted afresh here: the test does not depend on the
    others having run before it in the same process)."""
    REACHED.update(dict.fromkeys(REACHED, 0))
    for seed in SEEDS:
        _world_checked(seed, monkeypatch)
    assert all(REACHED.values()), REACHED
