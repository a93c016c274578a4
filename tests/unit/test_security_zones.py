"""Conntrack zones of policed vports (controller/zones.py): ``Local.zones_changed`` kept incremental against
``allocate_zones`` of the switch's keys from scratch, and what a change costs, in Python bytecodes (a count, not a
time): a switch whose keys are all their own zones takes only the keys that came and went; ``hashed_zones`` skips a
run of taken zones at once."""

from __future__ import annotations

import random
import zlib
from types import SimpleNamespace

import pytest

from controller.zones import ZONE_LIMIT, Local, allocate_zones, hashed_zones
from tests.bytecodes import opcodes


def _port(*acls):
    return SimpleNamespace(acls=[(a, None) for a in acls])


TRUNK_KEYS = [(ofport << 12) | vlan for ofport in range(16, 18) for vlan in range(1, 9)]
HASHED = [1 + zlib.crc32(k.to_bytes(8, "big")) % (ZONE_LIMIT - 1) for k in TRUNK_KEYS]  # where their probes start


def _key(rng, session: str, trunks: bool) -> int:
    if trunks and rng.random() < 0.5:
        return rng.choice(TRUNK_KEYS)  # an ESXi trunk's VLAN: a hashed zone
    if session != "plain" and rng.random() < 0.3:  # a plain port on a trunk vport's zone, or just past it: it moves
        return rng.choice(HASHED) + rng.randrange(3)
    return rng.randrange(1, 60) if session != "big" else rng.randrange(1, 300)


@pytest.mark.parametrize("seed", range(8))
def test_zones_kept_a_change_at_a_time_are_those_allocated_from_scratch(seed):
    """Vports put, dropped, put again with their key, moved between switches and keys (plain ones only on some
    switches, trunk keys coming and going on others, plain ports on the zone a trunk key's probe starts at, two vports
    showing one key): after each pass the zones of every switch are ``allocate_zones`` of its keys, and the vports
    named as moved are those whose zone is not what it was (some are); with every vport gone nothing is kept."""
    rng = random.Random(seed)
    local, sessions, fast, moves = Local(), ("plain", "mixed", "big"), [0, 0], 0
    before: dict = {}
    for step in range(150):
        for _ in range(rng.randrange(1, 12)):
            vid, roll = f"v{rng.randrange(80)}", rng.random()
            was = local.drop(vid)
            if roll < 0.15 and was is not None:
                local.put(vid, was[0], was[1], _port(*was[2]))  # dropped and put again as it was
            elif roll < 0.8:
                session = rng.choice(sessions)
                local.put(vid, session, _key(rng, session, session != "plain" and step % 40 < 30),
                          _port(*rng.sample(("a1", "a2", "a3"), rng.randrange(3))))
        moved = local.zones_changed()
        moves += sum(map(len, moved.values()))
        for session in sessions:
            want = allocate_zones(set(local.ports.get(session, {}).values()))
            assert local.zones.get(session, {}) == want, (step, session)
            was = before.get(session, {})
            assert moved.get(session, set()) == {vid for vid, key in local.ports.get(session, {}).items()
                                                 if key in was and was[key] != want[key]}, (step, session)
            if was != want:
                fast[any(not 0 < k < ZONE_LIMIT for k in set(was) | set(want))] += 1
            before[session] = dict(want)
    assert all(fast) and moves, (fast, moves)  # switches changed with plain keys only, with trunk keys; zones moved
    for vid in list(local.at):  # every vport gone: nothing is kept for any switch
        local.drop(vid)
    assert not local.zones_changed()
    assert not any(vars(local).values()), {k: v for k, v in vars(local).items() if v}


def test_a_vport_coming_to_a_switch_of_10000_plain_ports_costs_the_same_as_to_one_of_10():
    """At stop 39 every pass that touched a policed vport allocated its switch's zones again: ~10 bytecodes per vport
    of the switch (a pass binding one vport on a 10,000-port hypervisor: ~100,000)."""
    costs = {}
    for n in (10, 10_000):
        local = Local()
        for i in range(1, n + 1):
            local.put(f"v{i}", "hv1", i, _port("a1"))
        local.zones_changed()

        def one_more(local=local, n=n):
            local.drop("v1")
            local.put("v1", "hv1", 1, _port("a1"))  # a pass looking at it again
            local.put("new", "hv1", n + 1, _port("a1"))
            local.zones_changed()

        costs[n] = opcodes(one_more)
        assert local.zones["hv1"] == allocate_zones(range(1, n + 2))
    assert costs[10_000] == costs[10] and costs[10] < 800, costs


def test_trunk_vports_hashed_into_a_run_of_plain_zones_skip_it_at_once():
    """8,000 plain ports' zones (1..8,191) and 24,564 ESXi trunk vports: each trunk vport hashed into the run walked
    it zone by zone (147 M bytecodes, 0.8 s CPU at load 0.6); now ~93 a key (2.9 M, 25 ms), most of them in the
    comprehensions every key passes."""
    keys = list(range(1, 3001)) + [(1 << 12) | v for v in range(1, 4095)] + \
        [(t << 12) | v for t in (16, 17, 33, 200, 4000, 0xFEFF) for v in range(1, 4095)]
    assert opcodes(lambda: allocate_zones(keys)) < 120 * len(keys)


def _linear(keys, first, span, taken):
    """hashed_zones as it was until stop 40: from the hash upwards, a zone at a time (wrapping)."""
    taken, out = set(taken), {}
    for key in keys:
        if len(taken) >= span:
            break
        zone = first + zlib.crc32(key.to_bytes(8, "big")) % span
        while zone in taken:
            zone = first + (zone - first + 1) % span
        out[key] = zone
        taken.add(zone)
    return out


@pytest.mark.parametrize("seed", range(20))
def test_skipping_runs_of_taken_zones_gives_the_zones_a_zone_at_a_time_gave(seed):
    """The zones a trunk vport had before stop 40 are those it has now (an upgraded controller cuts no connection):
    small ranges nearly full, runs of taken zones met and passed, the range's end wrapping to its start, keys left
    when it is full."""
    rng = random.Random(seed)
    first, span = rng.randrange(1, 100), rng.randrange(1, 60)
    taken = set(rng.sample(range(first, first + span), rng.randrange(span + 1)))
    if rng.random() < 0.5:  # a run reaching the range's end
        taken |= set(range(first + span - rng.randrange(1, span + 1), first + span))
    keys = rng.sample(range(1 << 16, 1 << 20), rng.randrange(1, span + 5))
    assert hashed_zones(keys, first, span, taken) == _linear(keys, first, span, taken)
