"""Many remote MACs announcing one IP (a broken or hostile peer): each IP's holder (``controller.remote.ip_holder``)
is found once per pass, not once per MAC among every MAC (review33d: 10,000 MACs on one IP were ~12 s of CPU per
pass), in the from-scratch derive, a scope derived whole and a round of route deltas. Counted: the ranks compared,
and the lines of controller/viewremote.py run (gathering the MACs sharing each changed MAC's IP was O(n^2))."""

from collections import defaultdict

import pytest

from controller import derive as derive_module
from controller import remote, viewremote
from controller.derive import derive
from controller.remote import RemoteDelta, RemoteMac, RemoteTable
from tests.bytecodes import lines_of
from tests.unit.test_compiler import assert_matches_full
from tests.unit.test_remote_view import PEER, RIP, ids, setup

MACS = 2000


def announcing_one_ip(state) -> tuple:
    """MACS remote MACs of the web subnet, all announcing RIP, of sequence numbers 0-6 (in no MAC order)."""
    return tuple(RemoteMac(ids(state)[0], f"0a:00:00:00:{i // 256:02x}:{i % 256:02x}", (RIP,), PEER, seq=(i * 3) % 7)
                 for i in range(MACS))


def expected_holder(macs) -> str:
    return min(macs, key=lambda m: (-m.seq, m.mac)).mac


@pytest.fixture
def compared(monkeypatch):
    """The ranks ``ip_holder`` compares (the MACs wanting the IP, summed over its calls), wherever it is called."""
    seen = []

    def counting(wanting):
        seen.append(len(wanting))
        return remote.ip_holder(wanting)
    monkeypatch.setattr(derive_module, "ip_holder", counting)
    monkeypatch.setattr(viewremote, "ip_holder", counting)
    return seen


def viewremote_lines(run) -> int:
    """The lines of controller/viewremote.py executed while ``run()`` runs (loop iterations count once each)."""
    return lines_of(viewremote.__file__, run)


def holders_of_rip(view) -> list:
    return [ep.mac for ep in view.endpoints.values() if ep.kind == "evpn" and RIP in ep.ips]


def test_the_from_scratch_derive_finds_the_holder_of_an_ip_many_macs_announce_once(compared):
    state, _ = setup()
    macs = announcing_one_ip(state)
    view = derive(state.policy, state.locations, state.vrs, state.vtep_ip_of, state.vteps, RemoteTable(macs=macs))
    assert holders_of_rip(view) == [expected_holder(macs)]
    assert sum(compared) <= MACS  # before: MACS calls of MACS ranks each


def test_a_scope_derived_whole_finds_the_holder_of_an_ip_many_macs_announce_once(compared):
    state, prog = setup()
    macs = announcing_one_ip(state)

    def run():
        state.remote = RemoteTable(macs=macs)  # a table given whole: the web subnet's scope is derived whole
        prog.refresh()
    lines = viewremote_lines(run)
    assert holders_of_rip(prog.view) == [expected_holder(macs)]
    assert sum(compared) <= MACS
    assert lines <= 100 * MACS
    compared.clear()
    assert_matches_full(prog)


def test_a_round_of_many_macs_announcing_one_ip_gathers_them_once(compared):
    state, prog = setup()
    macs = announcing_one_ip(state)

    def run():
        state.remote_changed(RemoteDelta(added=frozenset(macs)))  # route deltas: the MACs named, one by one
        prog.refresh()
    lines = viewremote_lines(run)
    assert holders_of_rip(prog.view) == [expected_holder(macs)]
    assert sum(compared) <= MACS  # before: MACS calls of MACS ranks each
    assert lines <= 100 * MACS  # ~50 a MAC; before: > MACS * MACS (each changed MAC gathered every MAC sharing its IP)
    compared.clear()
    assert_matches_full(prog)


class CountingSet(set):
    added = 0

    def update(self, *others):
        for other in others:
            CountingSet.added += len(other)
        super().update(*others)


def test_a_subnet_changed_under_many_macs_announcing_one_ip_rechecks_each_once(compared):
    """A subnet whose info changes forgets its EVPN MACs (``forget_subnet``) and the MACs sharing their IPs are
    checked again: gathered after each MAC forgotten, they were MACS * MACS / 2 set insertions."""
    state, prog = setup()
    macs = announcing_one_ip(state)
    db = RemoteMac(ids(state)[1], "0a:00:00:01:00:01", (RIP,), PEER, seq=9)  # the holder, in another subnet
    state.remote = RemoteTable(macs=macs + (db,))
    prog.refresh()
    assert holders_of_rip(prog.view) == [db.mac]
    prog.live.remote.recheck = defaultdict(CountingSet)
    CountingSet.added = 0
    policy = state.policy.copy()
    sub = dict(policy.find("subnet", "acme/web"))
    sub["dhcp"] = dict(sub["dhcp"], enabled=not sub["dhcp"]["enabled"])
    policy.put("subnet", sub)
    state.policy_committed(policy, [])
    prog.refresh()
    assert holders_of_rip(prog.view) == [db.mac]
    assert CountingSet.added <= 2 * MACS  # before: ~MACS * MACS / 2
    compared.clear()
    assert_matches_full(prog)
