"""Vport endpoints swapped and their owners listed a run at a time (controller/viewbatch.py, viewowners.py), given
journals of random passes (many vports gone, bound, moved; IPs and MACs changed, shared by two vports, claimed by
EVPN MACs, two IPs on one vport or none; vports changing subnet): after each pass the View and the LiveView's indexes are those derived and built
from scratch, and the pass's notes hold what changed, as found by comparing the View before and after the pass:
every endpoint changed with what it was and is (``changed``), the local endpoints changed (``local_changed``, what
MAC mobility and the Originator take), and where each vport endpoint changed was (``was_at``: its owner is listed
there, so its flows go), and each subnet or domain that came to or left a switch with the switches it was on at the
start (``presence``, ``on_before``) and each subnet whose switches holding endpoints changed (``holders_changed``),
as found from the LiveView's indexes before and after. (Until stop 40 against a copy of stop 38's code, ``OneAtATime``.) And the cost of the
View delta in bytecodes and the places worked out between two pauses."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from controller.pacer import Pacer
from controller.remote import RemoteDelta
from controller.viewdelta import LiveView

from .oracle_checks import check_indexes
from .test_compiler import add_vport, base_state, snapshot
from .test_incremental_reach import HOSTS, remote_mac

VPORTS = 80
SUBNETS = ("acme/web", "acme/db", "acme/lan")


def ips_of(subnet: str, i: int, variant: int) -> list:
    """vm ``i``'s IPs: variant 0 its own; 1 one shared by vm 2k and 2k+1; 2 none; 3 two (its own and another: the
    endpoints of a run holding other than one IP each)."""
    net = {"acme/web": "10.0.1", "acme/db": "10.0.2", "acme/lan": "10.9.0"}[subnet]
    return {0: [f"{net}.{10 + i}"], 1: [f"{net}.{10 + i // 2}"], 2: [], 3: [f"{net}.{10 + i}", f"{net}.{150 + i}"]}[
        variant]


def commit_vports(state, rng, vports: dict, names) -> None:
    policy = state.policy.copy()
    for i in names:
        subnet, mac, variant = vports[i]
        obj = dict(policy.get("vport", f"vm{i}"))
        obj["subnet_id"] = policy.find("subnet", subnet)["id"]
        obj["mac"] = f"02:00:00:00:{mac:02x}:{i:02x}"
        obj["ips"] = ips_of(subnet, i, variant)
        policy.put("vport", obj)
    state.policy_committed(policy, [])


def before_pass(live) -> tuple:
    """The View's endpoints and local endpoints, where each vport endpoint is, and the switches each subnet and
    domain is on and holds endpoints on, before a pass."""
    v = live.view
    return dict(v.endpoints), dict(v.local), {eid: frozenset(live._where(ep)) for eid, ep in v.endpoints.items()
                                               if ep.kind == "vport"}, places_of(live)


def places_of(live) -> tuple:
    """("s", subnet) and ("d", domain) -> the switches it is on; subnet -> the switches holding its endpoints."""
    on = {("s", sid): set(sessions) for sid, sessions in live.sub_on.items() if sessions}
    on.update({("d", dom): set(sessions) for dom, sessions in live.dom_on.items() if sessions})
    return on, {sid: {s for s, n in counts.items() if n > 0} for sid, counts in live.ep_count.items()}


def check_notes(live, before, where: str) -> None:
    """The pass's notes against the View before and after it."""
    endpoints, local, placed, (on, holders) = before
    v = live.view
    moved = {eid for eid in set(endpoints) | set(v.endpoints) if endpoints.get(eid) != v.endpoints.get(eid)}
    assert moved <= set(live.changed), (where, moved - set(live.changed))
    for eid, (old, new) in live.changed.items():
        assert (old, new) == (endpoints.get(eid), v.endpoints.get(eid)), (where, eid)
    gone_local = {eid for eid in set(local) | set(v.local) if local.get(eid) != v.local.get(eid)}
    assert gone_local <= set(live.local_changed), (where, gone_local - set(live.local_changed))
    for eid in moved & set(placed):  # (where it was when swapped: a place can go earlier in the pass)
        assert eid in live.was_at, (where, eid)
    # a subnet or domain that came to or left a switch (its flows there go or come: viewowners._presence_owners) is
    # in ``presence`` there, with the switches it was on at the start (``on_before``: its owners are listed there)
    on_now, holders_now = places_of(live)
    for place in set(on) | set(on_now):
        for session in on.get(place, set()) ^ on_now.get(place, set()):
            assert (place[1] if place[0] == "s" else place) in live.presence.get(session, ()), (where, place, session)
            assert live.on_before.get(place) == on.get(place, set()), (where, place)
    for sid in set(holders) | set(holders_now):  # a subnet whose switches holding endpoints changed
        if holders.get(sid, set()) != holders_now.get(sid, set()):
            assert sid in live.holders_changed, (where, sid)


def view_from_scratch(state) -> dict:
    fresh = LiveView(state)
    fresh.build()
    v = fresh.view
    return {"endpoints": v.endpoints, "local": v.local, "by_subnet": {k: set(x) for k, x in v.by_subnet.items() if x},
            "fib": {did: v.fib.get(did) for did in sorted(v.domains)}}


def view_of(live) -> dict:
    v = live.view
    return {"endpoints": dict(v.endpoints), "local": dict(v.local),
            "by_subnet": {k: set(x) for k, x in v.by_subnet.items() if x},
            "fib": {did: v.fib.get(did) for did in sorted(v.domains)}}


@pytest.mark.parametrize("seed", range(10))
def test_runs_swapped_together_equal_a_view_built_from_scratch(seed):
    rng = random.Random(seed)
    state = base_state()
    vports = {}
    for i in range(VPORTS):
        vports[i] = (rng.choice(SUBNETS), 0, rng.randrange(4))
        add_vport(state, vports[i][0], f"vm{i}", "02:00:00:00:00:01", None)
    commit_vports(state, rng, vports, range(VPORTS))
    web = state.policy.find("subnet", "acme/web")
    dom = state.policy.get("domain", web["domain_id"])
    state.remote_changed(RemoteDelta(added=frozenset(remote_mac(web, dom, i, f"10.0.1.{10 + i}") for i in range(12))))
    hosts = list(HOSTS)
    where = {i: None for i in range(VPORTS)}
    journal = state.journal()
    live = LiveView(state, Pacer(every=rng.choice((5, 20, 200))))
    live.build()
    journal.take()
    for step in range(14):
        kind = rng.choice(("place", "place", "all", "all", "none", "none", "policy"))
        if kind == "policy":
            names = rng.sample(range(VPORTS), rng.choice((1, 5, 30)))
            for i in names:
                subnet, mac, variant = vports[i]
                vports[i] = (rng.choice(SUBNETS) if rng.random() < 0.3 else subnet, mac ^ rng.randrange(2),
                             rng.randrange(4))
            commit_vports(state, rng, vports, names)
        else:
            for _ in range(rng.choice((1, 3, 20, 80))):
                where[rng.randrange(VPORTS)] = {"all": rng.choice(hosts), "none": None}.get(
                    kind, rng.choice(hosts + [None]))
        for n, host in enumerate(hosts):
            state.vrs_update(snapshot(host, HOSTS[host], [(f"vm{i}", 10 + i + 100 * n) for i in range(VPORTS)
                                                          if where[i] == host]))
        before = before_pass(live)
        live.apply(journal.take())
        check_notes(live, before, f"seed {seed} step {step}")
        assert view_of(live) == view_from_scratch(state), step
        check_indexes(state, live, f"seed {seed} step {step}")


def view_delta_cost(n: int, gone: bool) -> tuple[float, int]:
    """evpn_routes' withdraw or announce after the IDL at ``n`` ports (tests/benchmarks/evpn_withdraw.py,
    evpn_announce.py): the View delta's Python bytecodes per port gone or bound, and its pauses (every 200 units)."""
    from tests.benchmarks.evpn_announce import collector_off, report, world
    from tests.bytecodes import Bytecodes

    state, prog, federation = world(n)
    federation.early = True
    snap = report(n)
    if gone:
        state.vrs_update(snap)
        prog.refresh()
        federation.publish(prog.view)
        snap = replace(snap, ports=snap.ports[:2], changed=frozenset(port.name for port in snap.ports[2:]),
                       changed_ports={})
    state.vrs_update(snap)
    pauses = []
    prog.live.pacer = Pacer(lambda: pauses.append(1))
    with collector_off(), Bytecodes() as counted:
        prog.live.apply(prog.journal.take())
    assert len(prog.view.endpoints) == (1 if gone else n + 1)
    return counted.count / n, len(pauses)


@pytest.mark.parametrize("gone", [True, False], ids=["gone", "bound"])
def test_a_thousand_ports_gone_or_bound_cost_the_view_delta_fewer_bytecodes_each_than_in_stop_38(gone):
    """The View delta of 1,000 ports gone (bound): 924 (980) Python bytecodes a port at stop 38's end (6a20bfd), a
    ``_swap`` and a listing of owners per endpoint; 89 (200) swapped and listed a run at a time, 24 (175) with the
    ports gone found a run at a time too (docs/benchmarks.md "wdview39, stop 39"); the bounds ~10-25% above. It pauses as often as at stop 38 (20 and 25 times: every 200 units
    ticked, a tick per port walked and per endpoint listed)."""
    per_port, pauses = view_delta_cost(1_000, gone)
    assert per_port <= (30 if gone else 195), per_port
    assert pauses == (20 if gone else 25)


def test_the_owners_listed_work_out_no_more_places_between_two_pauses_than_one_at_a_time(monkeypatch):
    """``_list_owners`` works out where each endpoint's owner goes (``_where_of``, a set union over the switches its
    subnet and domain are on: at 10,000 places, 50 VRS by 200 subnets, tens of ms) a run at a time: between two
    pauses no more places than a tick per endpoint listed allowed (``every``), not every place of the pass at once."""
    from controller.viewowners import OwnerReach

    state = base_state()
    hosts, names = list(HOSTS), []
    for n, subnet in enumerate(SUBNETS * 8):
        add_vport(state, subnet, f"vm{n}", f"02:00:00:00:01:{n:02x}", None)
        names.append(f"vm{n}")
    live = LiveView(state, Pacer(every=1_000_000))
    live.build()
    journal = state.journal()
    for n, host in enumerate(hosts):
        state.vrs_update(snapshot(host, HOSTS[host], [(name, 10 + i) for i, name in enumerate(names)
                                                      if i // 3 % len(hosts) == n]))
    stretch, longest = [0], [0]

    def pause():
        stretch[0] = 0

    def where_of(self, place, where_of=OwnerReach._where_of):
        stretch[0] += 1
        longest[0] = max(longest[0], stretch[0])
        return where_of(self, place)

    monkeypatch.setattr(OwnerReach, "_where_of", where_of)
    live.pacer = Pacer(pause, every=2)
    live.apply(journal.take())
    assert len({(ep.session, ep.subnet_id) for ep in live.view.endpoints.values()}) == 9  # (places: 3 x 3)
    assert 1 <= longest[0] <= 2, longest[0]
