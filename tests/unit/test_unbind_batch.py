"""State's unbinding of ports gone, in C loops (controller/state.py ``_relocate_some``: the vports shown nowhere taken
out of the locations together; ``_forget_seen``; controller/binding.py ``forget_ports`` when no ESXi trunk went),
against the code of stop 38 (6a20bfd) that did it a port and a vport at a time (below, as it was): the incremental
oracle's random worlds (tests/unit/oracle_world.py: ports appearing, leaving and moving on KVM, Hyper-V and ESXi
hypervisors, trunks and static bindings, MAC mismatches, VRS leaving) run once with each, and after every step
State's locations, mismatches and their warnings, the ports' order of appearance, the binding index and the vports
recorded in its journal are the same."""

from __future__ import annotations

import copy
import random
import uuid

import pytest

from controller import binding, policydoc
from controller.state import State
from tests.unit.oracle_world import World


def forget_ports_one_by_one(self, session: str, names, reached: set) -> None:
    ports = self.shown.get(session, {})
    sightings, vport_at, trunks = self.sightings, self.vport_at, self.trunks
    for name in names:
        for kind, key in ports.pop(name, ()):
            if kind == "trunk":
                trunks[key].pop(session, None)
                if not trunks[key]:
                    del trunks[key]
                reached.update(self.static_at.get(key, ()))
                continue
            spot, bkey = key
            spots = sightings[bkey]
            spots.pop(spot, None)
            if not spots:
                del sightings[bkey]
            if bkey in vport_at:
                reached.add(vport_at[bkey])
    if not ports:
        self.shown.pop(session, None)


def forget_seen_one_by_one(self, session: str, names) -> None:
    ports, seen = self._seen_ports.get(session, {}), self._seen
    for name in names:
        for key in ports.pop(name, ()):
            seen.pop(key, None)


def relocate_one_by_one(self, vids) -> set[str]:
    seen = self._seen

    def seen_order(session, port, vlan):
        return seen.get((session, port, vlan), 0)

    moved, warn = set(), set()
    index, locations, mismatched = self.index, self.locations, self.mismatched
    for vid in vids:
        loc = index.locate(vid, seen_order) if vid in index.key_of else None
        bound = None if loc is None or binding.is_mismatch(self.policy.get("vport", vid), loc) else loc
        if loc is not None and bound is None:
            mismatched[vid] = loc
            warn.add(vid)
        elif vid in mismatched:
            del mismatched[vid]
            self._warned.pop(vid, None)
        was = locations.get(vid)
        if (bound is None) != (was is None) or (bound is not None and bound != was):
            moved.add(vid)
            if bound is None:
                del locations[vid]
            else:
                locations[vid] = bound
    self._warn_mismatches(warn)
    if moved:
        self._record("vports", moved)
        self._notify("locations", moved)
    return moved


def held(state) -> dict:
    return copy.deepcopy({"locations": state.locations, "mismatched": state.mismatched, "warned": state._warned,
                          "seen": state._seen, "seen ports": state._seen_ports, "index": vars(state.index)})


def run(seed: int, steps: int, monkeypatch) -> list:
    ids = random.Random(seed)  # (the same object ids in both runs)
    monkeypatch.setattr(policydoc, "uuid", type("Ids", (), {"uuid4": lambda: uuid.UUID(int=ids.getrandbits(128))}))
    rng = random.Random(seed)
    world = World(rng)
    world.commit()
    world.prog.refresh(full=True)
    journal, out = world.state.journal(), []
    for _ in range(steps):
        world.step()
        if rng.random() < 0.75:
            world.prog.refresh()
        out.append((held(world.state), journal.take().vports))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_ports_gone_unbind_as_one_at_a_time(seed, monkeypatch):
    monkeypatch.setattr(binding, "_FEW", 0)  # (the worlds' reports show at most ~6 ports gone: batched past none)
    batched = run(seed, 80, monkeypatch)
    monkeypatch.setattr(binding.BindingIndex, "forget_ports", forget_ports_one_by_one)
    monkeypatch.setattr(State, "_forget_seen", forget_seen_one_by_one)
    monkeypatch.setattr(State, "_relocate_some", relocate_one_by_one)
    single = run(seed, 80, monkeypatch)
    for step, (got, want) in enumerate(zip(batched, single)):
        assert got == want, f"seed {seed} step {step}"
