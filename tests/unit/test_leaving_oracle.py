"""The vports a big delete's ports stand for, found in C loops (controller/state_leaving.py ``_leaving_keyed``), are
those the port-by-port rule finds (``_leaving_one_by_one``), in the same order: after every step of the incremental
oracle's random events (ports placed, moved, lingering in a migration, stopped, crossed by a KVM iface-id, MAC
mismatches, static ESXi bindings, switches coming and going), for every switch without an ESXi trunk, every port and
random subsets of them."""

from __future__ import annotations

import random

import pytest

from tests.unit import oracle_world
from tests.unit.oracle_inputs import HOSTS, SEEDS, STEPS


class World(oracle_world.World):
    stopping = True
    crossing = True


def _compare(state, session: str, names: list[str], where: str) -> int:
    shown = state.index.shown.get(session)
    if not shown or any(kind == "trunk" for name in names for kind, _key in shown.get(name, ())):
        return 0
    fast = state._leaving_vports(session, names)
    assert fast == state._leaving_one_by_one(session, names, shown), where
    return len(fast)


@pytest.mark.parametrize("seed", range(SEEDS))
def test_the_leaving_vports_found_in_c_loops_are_those_found_port_by_port(seed):
    rng = random.Random(seed)
    world = World(rng)
    world.commit()
    for host in sorted(HOSTS):  # every switch there from the start (the events take them away and back)
        world.hosts[host] = {"tunnel": 99, "vtep": f"10.251.0.{host[2:]}"}
        world.push(host)
    world.prog.refresh(full=True)
    told = 0
    for step in range(STEPS):
        world.step()
        state = world.state
        for session in sorted(state.index.shown):
            names = sorted(state.index.shown[session]) + ["no-such-port"]
            told += _compare(state, session, names, f"seed {seed} step {step} {session}")
            subset = rng.sample(names, rng.randrange(len(names) + 1))
            _compare(state, session, subset, f"seed {seed} step {step} {session} {subset}")
        if rng.random() < 0.5:
            world.prog.refresh()
    assert told  # (some vports were found: the comparison is not of empty lists only)
