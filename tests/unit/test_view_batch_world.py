"""The View delta's runs swapped together (controller/viewbatch.py, viewowners.py) against stop 38's code an endpoint
at a time (tests/unit/test_view_batch.py ``OneAtATime``) on the incremental oracle's random worlds
(tests/unit/oracle_world.py): bare-metal vports and hardware VTEPs, ESXi trunks, MAC mismatches, a VRS leaving (all
its ports gone in one run), ports moving, vports changing subnet, MAC or IP in the pass they move, EVPN MACs
claiming IPs; the pacer's runs short (3 or 7 units) or long. Each seed runs the world twice, once with each code, and
after every pass the View (in order), the LiveView's indexes and the desired flows and groups are the same; and the
runs of ports gone or bound were swapped together (``_swap_out`` / ``_swap_in``) within the seeds. With events in
the passes' pauses (a report, a switch gone, a commit in the first pause) a run ends one item later than a tick per
item paused (the work of a run comes before its tick), so the two ways are compared once a quiet pass followed."""

from __future__ import annotations

import copy
import random
import uuid

import pytest

from controller import policydoc
from controller.pacer import Pacer
from controller.viewbatch import BatchSwaps
from controller.viewdelta import LiveView
from tests.unit.oracle_checks import by_owner, indexes
from tests.unit.oracle_inputs import HOSTS, VPORTS
from tests.unit.oracle_world import World
from tests.unit.test_view_batch import NOTES, OneAtATime, kept, reach_of

BATCHED = {"out": 0, "in": 0}


def counted(name, swap):
    def swapped(self, vids, eps):
        BATCHED[name] += 1
        return swap(self, vids, eps)
    return swapped


def held(prog) -> dict:
    v = prog.live.view
    return copy.deepcopy({"endpoints": list(v.endpoints.items()), "local": list(v.local), "by_subnet": dict(v.by_subnet),
            "live": indexes(kept(prog.live)), "desired": {s: by_owner(d) for s, d in prog.desired.items()},
            "fib": {did: v.fib.get(did) for did in sorted(v.domains)},
            "notes": {name: getattr(prog.live, name, None) for name in NOTES},
            "changed order": list(getattr(prog.live, "changed", ())), "reach": reach_of(prog.live.r)})


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


def run(seed: int, steps: int, monkeypatch, inside: bool = False) -> list:
    ids = random.Random(seed)  # (the same object ids in both runs)
    monkeypatch.setattr(policydoc, "uuid", type("Ids", (), {"uuid4": lambda: uuid.UUID(int=ids.getrandbits(128))}))
    rng = random.Random(seed)
    world = World(rng)
    world.commit()
    pauses = {"n": 0, "at": ()}

    def pause():  # ``inside``: an event lands in the pass's first pause (a report, a switch gone, a commit; one: the passes after it pause as often in both ways only so far)
        pauses["n"] += 1
        if pauses["n"] in pauses["at"]:
            world.inside_a_pass = True
            try:
                bulk(world) if rng.random() < 0.5 else world.step()
            finally:
                world.inside_a_pass = False

    world.prog.pacer = Pacer(pause, every=random.Random(-seed).choice((3, 7, 200)))
    world.prog.refresh(full=True)
    out = []
    for _ in range(steps):
        for _ in range(rng.choice((1, 1, 2, 4))):  # (several events in one pass: runs of changes of all kinds)
            bulk(world) if rng.random() < 0.3 else world.step()
        pauses["n"], pauses["at"] = 0, (1,) if inside else ()
        world.prog.refresh()
        if inside:  # (a pause falls a run's length later than a tick per item put it: compared once quiet)
            pauses["at"] = ()
            world.prog.refresh()
        if inside:  # (host routes gone are taken out when read: which ones wait differs with the pauses' places)
            for fib in list(world.prog.live.routes.ordered.values()):
                fib.settle()
        got = held(world.prog)
        if inside:  # (and the View's dicts' order is their history's, which the pauses' places change)
            got = {k: v for k, v in got.items() if k not in ("notes", "changed order", "reach")}
            got["endpoints"], got["local"] = dict(got["endpoints"]), set(got["local"])
        out.append(got)
    return out


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("inside", [False, True], ids=["quiet", "events in pauses"])
def test_runs_swapped_together_equal_one_at_a_time_on_the_oracles_worlds(seed, inside, monkeypatch):
    monkeypatch.setattr(BatchSwaps, "_swap_out", counted("out", BatchSwaps._swap_out))
    monkeypatch.setattr(BatchSwaps, "_swap_in", counted("in", BatchSwaps._swap_in))
    batched = run(seed, 40, monkeypatch, inside)
    for name in ("_vport_eps", "_owners", "_presence_owners"):
        monkeypatch.setattr(LiveView, name, OneAtATime.__dict__[name])
    single = run(seed, 40, monkeypatch, inside)
    for step, (got, want) in enumerate(zip(batched, single)):
        assert got == want, f"seed {seed} step {step}: {[k for k in got if got[k] != want[k]]}"


def test_the_worlds_reach_runs_swapped_together():
    """(after the seeds above, in this module's order) runs of endpoints gone and bound were swapped together."""
    assert BATCHED["out"] and BATCHED["in"], BATCHED
