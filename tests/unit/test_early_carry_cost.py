"""The publish's hand-over (bgp/federation.py ``_hand_over``, under the Federation's lock, no pause) when its View
took only some of the vports bound while its pass ran: evpn_routes' announce in the lab, where 10,000 ports are bound
chunk by chunk over a second or more and the first pass starts after the first chunks (its longest stretch of CPU,
63 ms at load 7, had its samples in ``_Handed.get``). The routes announced at bind that the View does not have are
carried (``EarlyAnnounce.carry``), and the keys told or carried compared with what the speaker holds: at stop 43's
start (c1a85d3) 2.27 million bytecodes at 10,000 ports (9,000 carried, ~250 each), a Python step per route in each;
in C loops now (docs/benchmarks.md "ann43, stop 43"). Also: ``Origins.add_each`` is ``add`` pair by pair, and
``_Handed.now`` is ``_Handed.get`` key by key, on random inputs, including those that leave the C loops."""

from __future__ import annotations

import random

import pytest


def _split_pass(n: int, k: int, meter):
    """evpn_announce's world for ``n`` vports: ``k`` bound, their pass's View delta and compile, then the other
    ``n - k`` bound (announced at bind) before that pass publishes, then a pass that takes them and publishes. The
    bytecodes of each publish's hand-over (``meter``: tests/bytecodes.py ``Bytecodes``), and the Federation."""
    import bgp.federation as federation_module
    from tests.benchmarks import evpn_announce as ea

    state, programmer, federation = ea.world(n)
    federation.early = True
    counts = []
    hand_over = federation_module.Federation._hand_over

    def counted(self, *args):
        m = meter()
        m.run(lambda: hand_over(self, *args))
        counts.append(m.count)

    def view_compiled():
        reach = programmer.live.apply(programmer.journal.take())
        view = programmer.view
        work = {s: o for s, o in reach.owners.items() if o and s not in reach.rebuild and s in view.switches}
        programmer._recompile(view, work, set().union(*reach.owners.values()))
        return view

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(federation_module.Federation, "_hand_over", counted)
        state.vrs_update(ea.report(k))
        view = view_compiled()
        state.vrs_update(ea.report(n))  # bound while the pass runs: announced at bind, not in its View
        federation.publish(view)
        federation.publish(view_compiled())
    return counts, federation


def test_a_publish_carrying_900_routes_announced_at_bind_hands_over_in_few_bytecodes():
    from tests.bytecodes import Bytecodes

    n, k = 1_000, 100
    counts, federation = _split_pass(n, k, Bytecodes)
    desired = federation.speaker.desired
    assert sum(1 for route in desired.values() if route.TYPE == 2) == n + 1  # (w1's too)
    # c1a85d3: 227,239 for the publish carrying 900 routes, 50,823 for the next (which has them all); now ~1,000 each
    assert counts[0] <= 20 * n and counts[1] <= 20 * n, counts


def test_the_routes_carried_are_those_announced_at_bind_and_their_vports_stand_behind_them():
    from tests.bytecodes import Bytecodes

    n, k = 300, 30
    _counts, federation = _split_pass(n, k, Bytecodes)
    origins, state = federation._origins, federation.state
    vports = [vid for vid in state.locations if state.policy.get("vport", vid)["name"].startswith("o")]
    assert len(vports) == n
    for vid in vports:
        keys = [key for key in origins._keys(vid) if key[0] == 2]  # (and its subnet's type 3 at the VTEP)
        assert len(keys) == 1 and origins._left(keys[0]) == 1 and keys[0] in federation.speaker.desired
    # all unbound: every type 2 route goes at once
    gone = origins.unbound(vports)
    assert len([key for key in gone if key[0] == 2]) == n


class _Ep:
    def __init__(self, vid, kind="vport"):
        self.vport_id, self.kind = vid, kind


class _Base:
    """An Originator-like base: some vports with keys, some keys with vports behind them."""

    def __init__(self, rng):
        self.keys = {f"v{i}": [("b", i)] for i in range(6) if rng.random() < 0.5}
        self.behind_of = {("b", i): 1 for i in range(6)} | {("k", i): 1 for i in range(6) if rng.random() < 0.2}

    def keys_of(self, vid):
        return list(self.keys.get(vid, ()))

    def behind(self, key):
        return self.behind_of.get(key, 0)

    def pinned(self, key):
        return False

    def named(self, vids):
        return {vid for vid in vids if self.keys.get(vid)}

    def behind_any(self, keys):
        return any(self.behind_of.get(key, 0) for key in keys)


@pytest.mark.parametrize("seed", range(40))
def test_add_each_is_add_pair_by_pair(seed):
    from bgp.origins import Origins

    rng = random.Random(seed)
    base = _Base(rng) if rng.random() < 0.7 else None
    one, two = Origins(base), Origins(base)
    before = rng.randrange(3)
    for origins in (one, two):  # (the same start: something added before)
        for i in range(before):
            origins.add(("k", i + 10), (_Ep(f"v{i + 3}"),))
    pairs = [(("k", rng.randrange(8 if rng.random() < 0.3 else 10**6)),
              _Ep(f"v{rng.randrange(12 if rng.random() < 0.3 else 10**6)}",
                  "vport" if rng.random() < 0.95 else "vtep_mac")) for _ in range(rng.randrange(1, 12))]
    for key, ep in pairs:
        one.add(key, (ep,))
    two.add_each([key for key, _ep in pairs], [ep for _key, ep in pairs])
    assert (one._keys_of, one._count, one._pins) == (two._keys_of, two._count, two._pins)


@pytest.mark.parametrize("seed", range(40))
def test_now_is_get_key_by_key(seed):
    from bgp.federation import _Handed

    rng = random.Random(seed)
    routes = {i: f"r{i}" for i in range(20) if rng.random() < 0.6}
    handed = _Handed(routes, {i for i in range(20) if rng.random() < 0.3})
    for i in range(20):
        if rng.random() < 0.2:
            handed[i] = f"c{i}"
    keys = {i for i in range(25) if rng.random() < 0.7}
    listed, now = handed.now(keys)
    assert sorted(listed) == sorted(keys) and dict(zip(listed, now)) == {key: handed.get(key) for key in keys}


def test_a_thousand_new_ports_cost_state_and_the_publish_fewer_bytecodes_than_at_stop_43_start():
    """evpn_announce's steps at 1,000 ports: State taking the report (the routes at bind recorded in ``Origins`` in
    C loops: ``add_each``) 1,310,837 -> 1,191,517 bytecodes; the publish (MAC mobility's ``_ours_again`` for new
    MACs in C loops: ``_ours_at_once``; the hand-over's keys told compared in C loops) 462,796 -> 324,426."""
    from tests.benchmarks.evpn_announce import STEPS, run
    from tests.bytecodes import Bytecodes

    n = 1_000
    counted = run(n, True, Bytecodes)
    assert counted[STEPS[0]] <= 1_250 * n and counted[STEPS[3]] <= 360 * n, counted
