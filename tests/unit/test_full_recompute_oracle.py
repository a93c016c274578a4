"""The oracle for a full recompute that has a previous state (after a failed pass: controller/programmer.py
``_recompute_all``). It keeps the sets it compiles again unchanged as the objects the switches hold (``Shared.renew``)
and tells each switch only the owners that changed, found by identity first (``_changed_owners``): two shortcuts
that, wrong, would leave stale flows on a switch. The incremental oracle's random events
(tests/unit/test_incremental_oracle.py) drive it, a full recompute now and then; after every pass the desired state
must equal a from-scratch compile, and every owner whose flows or groups differ from what a switch was handed must be
among that switch's changes."""

from __future__ import annotations

import random

import pytest

from tests.unit.oracle_checks import check
from tests.unit.oracle_inputs import SEEDS, STEPS
from tests.unit.oracle_world import World


def handed_out(prog, handed: dict, where: str) -> None:
    """Hand every switch its state as the app does (``take_changes``), checking the changes against ``handed``, what
    each switch was handed before (updated)."""
    for session, desired in prog.desired.items():
        changes = prog.take_changes(session)
        now = (dict(desired.flows), dict(desired.groups))
        before = handed.get(session)
        if before is not None and changes is not None:
            differ = {o for part in (0, 1) for o in now[part].keys() | before[part].keys()
                      if now[part].get(o, ()) != before[part].get(o, ()) and (now[part].get(o) or before[part].get(o))}
            assert differ <= changes, f"{where}: {session}: changed but not told: {sorted(differ - changes, key=str)}"
        handed[session] = now
    for session in set(handed) - set(prog.desired):
        del handed[session]


@pytest.mark.parametrize("seed", range(max(1, SEEDS // 2)))
def test_a_full_recompute_after_a_failed_pass_equals_the_oracle_and_tells_every_change(seed):
    rng = random.Random(seed)
    world = World(rng)
    world.commit()
    world.prog.refresh(full=True)
    handed: dict = {}
    handed_out(world.prog, handed, "first pass")
    fulls = 0
    for step in range(STEPS):
        world.step()
        if rng.random() < 0.3:
            world.prog._built = False  # a failed pass: the next one recomputes everything, its previous state at hand
            fulls += 1
        world.prog.refresh()
        where = f"seed {seed} step {step}"
        check(world, where)
        handed_out(world.prog, handed, where)
    assert fulls and world.prog.full_recomputes == fulls + 1
