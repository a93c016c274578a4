"""Vport endpoints swapped and their owners listed a run at a time (controller/viewbatch.py, viewowners.py) against
one at a time: two LiveViews of one State, one as it is (runs: ``controller.pacer.runs``), the other with the walk of
the vports and the listing of owners as they were at stop 38 (``OneAtATime``: a ``_swap`` per endpoint, a Python
step per endpoint listed), given the same journals of random passes (many vports gone, bound, moved; IPs and MACs changed, shared by two vports, claimed by EVPN MACs; vports
changing subnet). After each pass both hold the same View and indexes, in the same order, and the same notes of
the pass (the endpoints changed in order, where they were, the presences changed and what they were before), and
reach the same owners."""

from __future__ import annotations

import copy
import random
from collections import defaultdict
from dataclasses import replace

import pytest

from controller import derive as d
from controller.pacer import Pacer
from controller.remote import RemoteDelta
from controller.viewdelta import LiveView

from openflow.flows import Owner

from .oracle_checks import PASS_NOTES, check_indexes, differences, indexes
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


class OneAtATime(LiveView):
    """A LiveView walking the vports and listing the owners an endpoint at a time, as at stop 38 (6a20bfd)."""

    def _vport_eps(self, vids, policy_changed):
        p, v = self.state.policy, self.view
        self.leaving = {}
        try:
            for vid in sorted(vids):
                self.pacer.tick()
                vport = p.get("vport", vid)
                if vid in policy_changed:
                    self._server(vid, vport)
                loc = self.state.locations.get(vid)
                new = None
                if vport is not None and loc is not None and loc.session in v.switches and \
                        vport["subnet_id"] in v.subnets:
                    new = d.vport_endpoint(vport, loc)
                old = v.endpoints.get(vid)
                old = old if old is not None and old.kind == "vport" else None
                if (old is None) != (new is None) or (old is not None and old != new):
                    self._swap(vid, old, new)
                    if old is not None:
                        self._place(old, remove=True)
                    if new is not None:
                        self._place(new)
        finally:
            leaving, self.leaving = self.leaving, None
            for sid, gone in leaving.items():
                self._unplace(sid, gone)

    def _owners(self, info_changed, bm_changed):
        v = self.view
        subnets = set(info_changed) | self.holders_changed | self.bound_changed | bm_changed
        domains = set(self.routes.changed)
        endpoints = {}
        for eid, pair in self.changed.items():
            self.pacer.tick()
            for ep in pair:
                if ep is None:
                    continue
                endpoints[(eid, id(ep))] = ep
                if ep.kind == "vport" and ep.key:
                    self._add(Owner("subnet", ep.subnet_id), {ep.session})
            domains |= self.routes.targets.get(eid) or set()
        for session in self.tunnels:
            for eid in self.by_session.get(session, ()):
                endpoints[(eid, None)] = v.endpoints[eid]
                domains |= self.routes.targets.get(eid, set())
            subnets |= v._on.get(session, (set(), set()))[0]
            subnets |= {sid for sid, bound in v.bound_vteps.items() if session in bound}
            bm_changed = bm_changed | {sid for sid, gw in v.bm_gateways.items() if gw == session}
        for sid in bm_changed:
            for ep in v.by_subnet.get(sid, ()):
                endpoints[(ep.vport_id, None)] = ep
            sub = v.subnets.get(sid)
            if sub is not None and sub.domain_id:
                domains.add(sub.domain_id)
        listed = defaultdict(list)
        for (eid, _), ep in endpoints.items():
            where, was = self._where(ep), self.was_at.get(eid)
            if was is not None and not was <= where:
                where = where | was
            self.pacer.tick(1 + len(where) // 25)
            self.r.touched.add(ep.owner)
            for session in where:
                listed[session].append(ep.owner)
        self._add_listed(listed)
        for sid in subnets:
            self._add(Owner("subnet", sid), self.sub_on.get(sid, ()))
        for did in domains:
            self._add(Owner("domain", did), self.dom_on.get(did, ()))
        self._presence_owners()

    def _presence_owners(self):
        v, owners = self.view, self.r.owners
        changed = defaultdict(set)
        for pair in self.changed.values():
            self.pacer.tick()
            for ep in pair:
                if ep is not None:
                    changed[ep.subnet_id].add(ep.owner)
        for session, items in self.presence.items():
            if session not in v.switches:
                continue
            reached = set()
            for item in items:
                if isinstance(item, tuple):
                    owners[session].add(Owner("domain", item[1]))
                    reached.update(self.dom_subnets.get(item[1], ()))
                else:
                    owners[session].add(Owner("subnet", item))
                    reached.add(item)
            for sid in reached:
                for ep in v.by_subnet.get(sid, ()):
                    owners[session].add(ep.owner)
                    self.pacer.tick()
                gone = changed.get(sid, ())
                owners[session].update(gone)
                self.pacer.tick(1 + len(gone) // 100)


def kept(live) -> dict:
    """What a LiveView keeps between passes (``indexes``, of either class)."""
    return {name: indexes(value) for name, value in vars(live).items() if name not in PASS_NOTES}


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
    for cls in (LiveView, OneAtATime):
        monkeypatch.setattr(cls, "_vport_eps", noting(cls.__dict__["_vport_eps"]))
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
    every = rng.choice((5, 20, 200))
    batched, single = LiveView(state, Pacer(every=every)), OneAtATime(state, Pacer(every=every))
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
        assert not differences(kept(batched), kept(single)), (step, differences(kept(batched), kept(single)))
        assert [list(x) for x in (batched.view.endpoints, batched.view.local, batched.ep_count)] == \
            [list(x) for x in (single.view.endpoints, single.view.local, single.ep_count)], step
        for live in (batched, single):
            live.view.fib.items()  # (read: the host routes that came or went are put in or taken out)
        check_indexes(state, batched, f"seed {seed} step {step}")


def view_delta_cost(n: int, gone: bool) -> tuple[float, int]:
    """evpn_routes' withdraw or announce after the IDL at ``n`` ports (tests/benchmarks/evpn_withdraw.py,
    evpn_announce.py): the View delta's Python bytecodes per port gone or bound, and its pauses (every 200 units)."""
    from tests.benchmarks.evpn_announce import collector_off, report, world
    from tests.benchmarks.evpn_withdraw import Opcodes

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
    with collector_off(), Opcodes() as counted:
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
