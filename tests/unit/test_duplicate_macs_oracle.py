"""A randomised oracle for the duplicate MAC flags' order (bgp/duplicates.py): many flags leaving it at once (due
together, set "in the future", cleared by one DELETE) leave it in one rebuild (``_cut``, ``_many``), a few one by
one. Both give exactly what a plain model gives (flag -> since; the order sorted by since, then subnet and MAC), and
the same as removing every flag one by one (``MANY`` out of reach), after every step of random runs that cross the
threshold both ways."""

from __future__ import annotations

import random

import pytest

from bgp import duplicates as duplicates_mod
from bgp.duplicates import DuplicateMacs

SUBNETS = ("s", "t", "u")


def run(seed: int, steps: int = 120) -> tuple[list, int]:
    """The snapshots (flags and order, and what each clear returned) after every step of the run ``seed``, each
    checked against the model; and how many steps took the rebuild (``_many`` true)."""
    rng = random.Random(seed)
    wall = [1000.0]
    dup = DuplicateMacs(max_moves=1, window=60.0, recovery=600.0, clock=lambda: 0.0, wall=lambda: wall[0])
    many = dup._many
    rebuilds = [0]

    def counted(count):
        result = many(count)
        rebuilds[0] += result
        return result

    dup._many = counted
    model: dict = {}  # (subnet, MAC) -> since
    snapshots = []
    for _ in range(steps):
        op = rng.choice(("flag", "flag", "flag", "prune", "clear"))
        returned = None
        if op == "flag":  # a batch of MACs flagged at the same instant (a loop), or a few
            wall[0] = round(wall[0] + rng.choice((0.0, 0.001, 1.0, 250.0)), 3)
            for _i in range(rng.choice((1, 3, 40, 70, 300))):
                key = (rng.choice(SUBNETS), f"02:00:00:00:{rng.randrange(4):02x}:{rng.randrange(256):02x}")
                dup.moved(key, "away")
                model.setdefault(key, round(wall[0], 3))
        elif op == "prune":  # forward (flags due) or back (flags set "in the future": restamped)
            wall[0] = round(wall[0] + rng.choice((-900.0, -100.0, -0.0005, 0.0, 300.0, 599.999, 600.0, 2000.0)), 4)
            dup.prune()
            now = round(wall[0], 3)
            model = {k: (now if since > wall[0] else since) for k, since in model.items()}
            model = {k: since for k, since in model.items() if since > wall[0] - 600.0}
        else:
            subnet = rng.choice((None,) + SUBNETS)
            mac = rng.choice((None, rng.choice(sorted(model))[1] if model else None))
            returned = [(row["subnet_id"], row["mac"], row["since"]) for row in dup.clear(subnet, mac)]
            cleared = sorted(k for k in model if subnet in (None, k[0]) and mac in (None, k[1]))
            assert returned == [(k[0], k[1], model[k]) for k in cleared], (seed, op)
            for key in cleared:
                del model[key]
        held = {key: row["since"] for key, row in dup.flagged.items()}
        assert held == model, (seed, op)
        assert list(dup._order) == sorted((since, key) for key, since in model.items()), (seed, op)
        snapshots.append((held, list(dup._order), returned))
    return snapshots, rebuilds[0]


@pytest.mark.parametrize("seed", range(12))
def test_many_flags_leaving_the_order_at_once_give_what_one_by_one_gives(monkeypatch, seed):
    fast, rebuilt = run(seed)
    monkeypatch.setattr(duplicates_mod, "MANY", float("inf"))  # every flag removed one by one, as before
    slow, none = run(seed)
    assert fast == slow
    assert rebuilt > 0 and none == 0  # the run crossed the threshold: both ways taken
