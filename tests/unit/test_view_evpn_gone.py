"""Withdrawn remote MACs' EVPN endpoints dropped a run at a time (controller/viewremote.py ``_drop_going``,
viewbatch.py ``_swap_out_evpn``), given random passes of remote MACs received and withdrawn (many at once, a few,
sharing IPs, some MACs a local vport has too, two remote VTEPs, two subnets): after each pass the View and the
LiveView's indexes are those derived and built from scratch, the pass's notes hold what changed, and the View and
every note (``changed`` in its order, ``was_at``, ``presence``, ``holders_changed``, the tails) are exactly those of the
same passes with each endpoint put one at a time (``_put``: the path before). And the cost in bytecodes per MAC."""

from __future__ import annotations

import random
import uuid

import pytest

from controller.pacer import Pacer
from controller.remote import RemoteDelta, RemoteMac
from controller.viewdelta import LiveView
from controller.viewremote import RemoteEndpoints

from .oracle_checks import check_indexes
from .test_compiler import add_vport, base_state, snapshot
from .test_incremental_reach import HOSTS
from .test_view_batch import before_pass, check_notes, view_from_scratch, view_of

MACS = 60


def one_at_a_time(self, going: list) -> None:
    """``_drop_going`` as before it: a tick and a ``_put`` per key."""
    for sid, mac in going:
        self.live.pacer.tick()
        self._put(sid, mac, None)


def remote(state, subnet: str, i: int, variant: int) -> RemoteMac:
    sub = state.policy.find("subnet", subnet)
    dom = state.policy.get("domain", sub["domain_id"])
    net = {"acme/web": "10.0.1", "acme/db": "10.0.2"}[subnet]
    ips = (f"{net}.{100 + (i // 3 if variant else i)}",) if variant < 2 else ()
    mac = f"02:00:00:00:00:{i % 4 + 1:02x}" if variant == 3 else f"02:aa:00:00:00:{i:02x}"
    return RemoteMac(sub["id"], mac, ips, f"10.99.0.{1 + i % 2}", "02:dd:00:00:00:01", dom["l3_vni"], seq=i % 3)


def passes(seed: int, bulk: bool, monkeypatch) -> list:
    """The random passes (``seed``), each checked against from scratch; what each pass left: the View and notes."""
    with monkeypatch.context() as patch:
        ids = iter(range(1 << 30))  # the same ids in both ways (policydoc names new objects with uuid4)
        patch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=next(ids)))
        if not bulk:
            patch.setattr(RemoteEndpoints, "_drop_going", one_at_a_time)
        bulks, swap_out = [], LiveView._swap_out_evpn
        patch.setattr(LiveView, "_swap_out_evpn", lambda self, vids, olds: (bulks.append(len(vids)),
                                                                              swap_out(self, vids, olds)))
        rng = random.Random(seed)
        state = base_state()
        for i, subnet in enumerate(("acme/web", "acme/db") * 2):
            add_vport(state, subnet, f"vm{i}", f"02:00:00:00:00:{i + 1:02x}", None)
        for n, host in enumerate(HOSTS):
            state.vrs_update(snapshot(host, HOSTS[host], [(f"vm{i}", 10 + i) for i in range(4) if i % 3 == n]))
        held: set = set()
        journal = state.journal()
        live = LiveView(state, Pacer(every=rng.choice((3, 20, 500))))
        live.build()
        journal.take()
        out = []
        for step in range(12):
            pool = [remote(state, rng.choice(("acme/web", "acme/db")), i, rng.choice((0, 0, 1, 2, 3)))
                    for i in range(MACS)]
            kind = rng.choice(("add", "gone", "gone", "mixed"))
            gone = set(rng.sample(sorted(held, key=repr), min(len(held), rng.choice((1, 5, 40, MACS)))))
            if kind == "add":
                gone = set()
            added = set(rng.sample(pool, rng.choice((5, 30)))) if kind != "gone" else set()
            added = {m for m in added if all((m.subnet_id, m.mac) != (h.subnet_id, h.mac) for h in held - gone)}
            state.remote_changed(RemoteDelta(added=frozenset(added), removed=frozenset(gone)))
            held = (held - gone) | added
            before = before_pass(live)
            live.apply(journal.take())
            where = f"seed {seed} bulk {bulk} step {step}"
            check_notes(live, before, where)
            assert view_of(live) == view_from_scratch(state), where
            check_indexes(state, live, where)
            out.append((view_of(live), list(live.changed.items()), dict(live.was_at), dict(live.presence),
                        set(live.holders_changed), dict(live.view.remote_vteps), set(live.tails)))
        assert (max(bulks, default=0) > 1) == bulk  # (the path under test taken)
        return out


@pytest.mark.parametrize("seed", range(8))
def test_withdrawn_macs_dropped_in_runs_equal_one_at_a_time_and_a_view_from_scratch(seed, monkeypatch):
    assert passes(seed, True, monkeypatch) == passes(seed, False, monkeypatch)


def view_withdraw_cost(n: int) -> tuple[float, int]:
    """``n`` remote MACs of acme/web (one IP each, two remote VTEPs) withdrawn in one pass: the View delta's Python
    bytecodes per MAC, and its pauses (every 200 units)."""
    from tests.bytecodes import Bytecodes

    from .test_incremental_reach import remote_mac

    state = base_state()
    web = state.policy.find("subnet", "acme/web")
    dom = state.policy.get("domain", web["domain_id"])
    macs = frozenset(remote_mac(web, dom, i, f"10.0.{100 + i // 250}.{i % 250 + 1}") for i in range(n))
    state.remote_changed(RemoteDelta(added=macs))
    journal = state.journal()
    live = LiveView(state)
    live.build()
    journal.take()
    state.remote_changed(RemoteDelta(removed=macs))
    pauses = []
    live.pacer = Pacer(lambda: pauses.append(1), 200)
    with Bytecodes() as counted:
        live.apply(journal.take())
    assert not live.view.remote_vteps and not live.remote.ev
    return counted.count / n, len(pauses)


def test_withdrawn_macs_cost_the_view_delta_fewer_bytecodes_each_at_1000_as_at_10000():
    """The View delta of 1,000 and 10,000 remote MACs withdrawn in one pass: 907 and 903 Python bytecodes a MAC
    before (main 2277b0da: a ``_put``, a ``_swap``, a ``_count`` and the host routes each), 329 and 326 with the
    endpoints dropped a run at a time; the bound ~20% above. It pauses as often as before (25 and 251 times: every 200
    units ticked)."""
    for n, pauses in ((1000, 25), (10000, 251)):
        per_mac, paused = view_withdraw_cost(n)
        assert per_mac <= 400, (n, per_mac)
        assert paused == pauses, (n, paused)
