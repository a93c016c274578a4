"""Vport endpoints swapped a run at a time (controller/viewbatch.py) against one at a time: two LiveViews of one
State, one walking the vports in runs (a Pacer: ``controller.pacer.runs``), the other a vport at a time (a pacer
without ``due``: runs of one, so ``LiveView._swap`` each, as before the batches), given the same journals of random
passes (many vports gone, bound, moved; IPs and MACs changed, shared by two vports, claimed by EVPN MACs; vports
changing subnet). After each pass both hold the same View and indexes, in the same order, and the same notes of
the pass (the endpoints changed in order, where they were, the presences changed and what they were before), and
reach the same owners."""

from __future__ import annotations

import copy
import random

import pytest

from controller.pacer import Pacer
from controller.remote import RemoteDelta
from controller.viewdelta import LiveView

from .oracle_checks import check_indexes, differences, indexes
from .test_compiler import add_vport, base_state, snapshot
from .test_incremental_reach import HOSTS, remote_mac

VPORTS = 80
SUBNETS = ("acme/web", "acme/db", "acme/lan")
NOTES = ("changed", "was_at", "presence", "on_before", "holders_changed", "local_changed", "tails", "redo")


RECHECKED: dict[int, dict] = {}  # id of a LiveView -> the EVPN MACs its last walk of the vports has to check again


def noting(walk):
    """``LiveView._vport_eps``, noting the EVPN MACs whose IPs' local claims changed in the walk (``recheck``: taken
    by ``remote.update`` later in the pass)."""

    def noted(live, vids, policy_changed):
        walk(live, vids, policy_changed)
        RECHECKED[id(live)] = {scope: set(keys) for scope, keys in live.remote.recheck.items() if keys}
    return noted


class OneAtATime:
    """A pacer without ``due``: ``runs`` gives runs of one (the walk as it was before the batches)."""

    def __init__(self):
        self.ticks = 0

    def tick(self, units: int = 1) -> None:
        self.ticks += units


def ip_of(subnet: str, i: int, variant: int) -> str:
    net = {"acme/web": "10.0.1", "acme/db": "10.0.2", "acme/lan": "10.9.0"}[subnet]
    return f"{net}.{10 + (i // 2 if variant else i)}"  # (variant 1: vm 2k and 2k+1 share an IP)


def commit_vports(state, rng, vports: dict, names) -> None:
    policy = state.policy.copy()
    for i in names:
        subnet, mac, variant = vports[i]
        obj = dict(policy.get("vport", f"vm{i}"))
        obj["subnet_id"] = policy.find("subnet", subnet)["id"]
        obj["mac"] = f"02:00:00:00:{mac:02x}:{i:02x}"
        obj["ips"] = [ip_of(subnet, i, variant)] if variant < 2 else []
        policy.put("vport", obj)
    state.policy_committed(policy, [])


def pass_of(live) -> dict:
    notes = {name: copy.copy(getattr(live, name)) for name in NOTES}
    notes["changed order"] = list(live.changed)
    notes["places"] = {k: set(v) for k, v in live.places.items()}
    notes["rechecked"] = RECHECKED.pop(id(live))
    return notes


def reach_of(reach) -> dict:
    return {"owners": {s: o for s, o in reach.owners.items() if o}, "rebuild": reach.rebuild, "gone": reach.gone,
            "touched": reach.touched, "vteps": indexes(reach.vteps)}


@pytest.mark.parametrize("seed", range(10))
def test_runs_swapped_together_equal_one_at_a_time(seed, monkeypatch):
    monkeypatch.setattr(LiveView, "_vport_eps", noting(LiveView._vport_eps))
    rng = random.Random(seed)
    state = base_state()
    vports = {}
    for i in range(VPORTS):
        vports[i] = (rng.choice(SUBNETS), 0, rng.randrange(3))
        add_vport(state, vports[i][0], f"vm{i}", "02:00:00:00:00:01", None)
    commit_vports(state, rng, vports, range(VPORTS))
    web = state.policy.find("subnet", "acme/web")
    dom = state.policy.get("domain", web["domain_id"])
    state.remote_changed(RemoteDelta(added=frozenset(remote_mac(web, dom, i, f"10.0.1.{10 + i}") for i in range(12))))
    hosts = list(HOSTS)
    where = {i: None for i in range(VPORTS)}
    journal = state.journal()
    batched, single = LiveView(state, Pacer(every=rng.choice((5, 20, 200)))), LiveView(state, OneAtATime())
    for live in (batched, single):
        live.build()
    journal.take()
    for step in range(14):
        kind = rng.choice(("place", "place", "all", "all", "none", "none", "policy"))
        if kind == "policy":
            names = rng.sample(range(VPORTS), rng.choice((1, 5, 30)))
            for i in names:
                subnet, mac, variant = vports[i]
                vports[i] = (rng.choice(SUBNETS) if rng.random() < 0.3 else subnet, mac ^ rng.randrange(2),
                             rng.randrange(3))
            commit_vports(state, rng, vports, names)
        else:
            for _ in range(rng.choice((1, 3, 20, 80))):
                where[rng.randrange(VPORTS)] = {"all": rng.choice(hosts), "none": None}.get(
                    kind, rng.choice(hosts + [None]))
        for n, host in enumerate(hosts):
            state.vrs_update(snapshot(host, HOSTS[host], [(f"vm{i}", 10 + i + 100 * n) for i in range(VPORTS)
                                                          if where[i] == host]))
        j = journal.take()
        got = [(reach_of(live.apply(copy.deepcopy(j))), pass_of(live)) for live in (batched, single)]
        assert got[0][0] == got[1][0], step
        assert got[0][1] == got[1][1], (step, [k for k in got[0][1] if got[0][1][k] != got[1][1][k]])
        assert not differences(indexes(batched), indexes(single)), (step, differences(indexes(batched),
                                                                                       indexes(single)))
        assert [list(x) for x in (batched.view.endpoints, batched.view.local, batched.ep_count)] == \
            [list(x) for x in (single.view.endpoints, single.view.local, single.ep_count)], step
        for live in (batched, single):
            live.view.fib.items()  # (read: the host routes that came or went are put in or taken out)
        check_indexes(state, batched, f"seed {seed} step {step}")
