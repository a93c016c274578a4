"""The View delta's runs swapped together (controller/viewbatch.py, viewowners.py) on the incremental oracle's random
worlds (tests/unit/oracle_world.py) with bulk events: bare-metal vports and hardware VTEPs, ESXi trunks, MAC
mismatches, a VRS leaving (all its ports gone in one run), many ports gone or moved in one report with a VM left on
two ports, vports changing subnet, MAC or IP in the pass they move, a subnet's info and vports' MACs changed in the
same pass, EVPN MACs claiming IPs; the pacer's runs short (3 or 7 units) or long, events landing in a pass's first
pause or not. After every pass (once a quiet pass followed one with events inside) the View, the LiveView's indexes
and the desired flows and groups are those derived and compiled from scratch (tests/unit/oracle_checks.py
``check``); and the runs of ports gone or bound were swapped together (``_swap_out`` / ``_swap_in``) within the
seeds (counted in a test of its own). (Until stop 40 against a copy of stop 38's code, an endpoint at a time:
test_view_batch.py ``OneAtATime``.)"""

from __future__ import annotations

import itertools
import random
import uuid

import pytest

from controller import policydoc
from controller.pacer import Pacer
from controller.viewbatch import BatchSwaps
from tests.unit.oracle_checks import check
from tests.unit.oracle_inputs import HOSTS, VPORTS
from tests.unit.oracle_world import World

def counting(monkeypatch) -> dict:
    """The runs swapped together (``_swap_out``, ``_swap_in``) counted from now on, in the calling test alone."""
    batched = {"out": 0, "in": 0}

    def counted(name):
        swap = getattr(BatchSwaps, f"_swap_{name}")

        def swapped(self, vids, eps):
            batched[name] += 1
            return swap(self, vids, eps)
        return swapped
    for name in batched:
        monkeypatch.setattr(BatchSwaps, f"_swap_{name}", counted(name))
    return batched


def bulk(world: World) -> None:
    """Many of a host's ports go or come in one report, or the host goes (its ports all gone at once)."""
    rng = world.rng
    host = rng.choice(sorted(HOSTS))
    if host in world.hosts and rng.random() < 0.2:
        del world.hosts[host]
        world.state.vrs_gone(f"ovsdb:{host}")
        return
    world.hosts.setdefault(host, {"tunnel": 99, "vtep": f"10.251.0.{host[2:]}"})
    names = sorted(n for n in VPORTS if VPORTS[n] != "baremetal" and
                   (VPORTS[n] not in ("esxi", "static") or HOSTS[host] == "esxi"))
    if rng.random() < 0.5:  # all ports of it and maybe others go (a VM left shown on another: on two ports)
        left = set(rng.sample(sorted(HOSTS), rng.randrange(len(HOSTS)))) | {host}
        for shown in (world.placed, world.lingering):
            for name in [n for n, h in shown.items() if h in left and n in names]:
                del shown[name]
    else:  # many come (moved from other hosts: left shown there half of the time, a migration in flight)
        for name in rng.sample(names, rng.randrange(2, len(names) + 1)):
            old = world.placed.get(name)
            world.placed[name] = host
            world.ofports[name] = rng.randrange(10, 20)
            if old is not None and old != host and VPORTS[name] in ("kvm", "hyperv") and rng.random() < 0.5:
                world.lingering[name] = old
    pushed = rng.random() < 0.5
    if pushed:
        for each in sorted(world.hosts):
            world.push(each)
    if rng.random() < 0.5:  # in the same pass, a subnet's info changes (its vports leave and come back in the walk)
        world.subnets[rng.choice(sorted(world.subnets))]["dhcp"] ^= True
    for name in rng.sample(sorted(world.vports), min(len(world.vports), rng.randrange(3))):
        world.vports[name]["mac"] ^= 1  # and vports' MACs (a MAC shared in a subnet the policy refuses)
    world.commit()
    if not pushed:
        for each in sorted(world.hosts):
            world.push(each)


def run(seed: int, steps: int, monkeypatch, inside: bool = False) -> None:
    ids = random.Random(seed)
    monkeypatch.setattr(policydoc, "uuid", type("Ids", (), {"uuid4": lambda: uuid.UUID(int=ids.getrandbits(128))}))
    rng = random.Random(seed)
    world = World(rng)
    world.commit()
    pauses = {"n": 0, "at": ()}

    def pause():  # ``inside``: an event lands in the pass's first pause (a report, a switch gone, a commit)
        pauses["n"] += 1
        if pauses["n"] in pauses["at"]:
            world.inside_a_pass = True
            try:
                bulk(world) if rng.random() < 0.5 else world.step()
            finally:
                world.inside_a_pass = False

    world.prog.pacer = Pacer(pause, every=random.Random(-seed).choice((3, 7, 200)))
    world.prog.refresh(full=True)
    for step in range(steps):
        for _ in range(rng.choice((1, 1, 2, 4))):  # (several events in one pass: runs of changes of all kinds)
            bulk(world) if rng.random() < 0.3 else world.step()
        pauses["n"], pauses["at"] = 0, (1,) if inside else ()
        world.prog.refresh()
        if inside:  # (what changed in the pause is taken by the next pass)
            pauses["at"] = ()
            world.prog.refresh()
        check(world, f"seed {seed} step {step}", read_fib=rng.random() < 0.5)
    assert world.prog.full_recomputes == 1


SEEDS = range(6)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("inside", [False, True], ids=["quiet", "events in pauses"])
def test_runs_swapped_together_equal_a_view_derived_from_scratch_on_the_oracles_worlds(seed, inside, monkeypatch):
    run(seed, 40, monkeypatch, inside)


def test_the_worlds_reach_runs_swapped_together(monkeypatch):
    """The seeds above swap runs of endpoints gone and of endpoints bound together: counted in this test's own runs
    of them (as many as it takes, in order), so it holds in any order of the tests and alone."""
    batched = counting(monkeypatch)
    for seed, inside in itertools.product(SEEDS, (False, True)):
        if batched["out"] and batched["in"]:
            break
        run(seed, 40, monkeypatch, inside)
    assert batched["out"] and batched["in"], batched
