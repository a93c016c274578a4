"""Long stretches give the event loop a turn (controller/pacer.py, issue 15 item 1): a full compile, an incremental
compile of many vports and the plan of a big apply each let another green thread run many times while they work,
and pausing changes nothing they produce. Counted, never timed: a ticker green thread counts its turns."""

import random

import eventlet
import pytest

from controller import policy as pol
from controller import policydoc
from controller.pacer import Pacer, runs, unit_runs
from controller.programmer import Programmer
from tests.unit.test_compiler import add_vport, base_state, snapshot

HOSTS = {"hv1": "10.251.0.1", "hv2": "10.251.0.2", "hv3": "10.251.0.3"}


class Ticker:
    """A green thread counting the turns it gets (what an echo reply or a heartbeat would need)."""

    def __init__(self):
        self.turns = 0
        self._thread = eventlet.spawn(self._run)
        eventlet.sleep(0)  # let it start

    def _run(self):
        while True:
            self.turns += 1
            eventlet.sleep(0)

    def close(self):
        self._thread.kill()


@pytest.fixture
def ticker():
    t = Ticker()
    yield t
    t.close()


def paced(every=20):
    return Pacer(lambda: eventlet.sleep(0), every)


def vports_state(vms: int):
    state = base_state()
    policy = state.policy.copy()
    for i in range(vms):
        web = i % 2 == 0
        subnet = policy.find("subnet", "acme/web" if web else "acme/db")
        policy.put("vport", {"id": f"vm{i}", "source": None, "subnet_id": subnet["id"], "name": f"vm{i}",
                             "description": "", "mac": f"02:00:00:00:{i >> 8:02x}:{i & 0xff:02x}",
                             "ips": [f"10.0.{1 if web else 2}.{10 + i % 200}"] if i < 400 else [],
                             "binding": {"flavour": "kvm", "iface_id": None, "port_name": None, "vnic_id": None,
                                         "host": None, "trunk_port": None, "vlan": None},
                             "port_security": True, "acls": []})
    state.policy_committed(policy, [])
    return state


def discover(state, vms: int):
    for n, (host, vtep) in enumerate(HOSTS.items()):
        state.vrs_update(snapshot(host, vtep, [(f"vm{i}", 10 + i) for i in range(vms) if i % 3 == n]))


def flows_of(programmer):
    return {s: (dict(d.flows), dict(d.groups)) for s, d in programmer.desired.items()}


def test_a_full_compile_lets_other_green_threads_run_and_gives_the_same_flows(ticker):
    state = vports_state(300)
    discover(state, 300)
    plain = Programmer(state)
    plain.refresh(full=True)

    programmer = Programmer(state)
    programmer.pacer = paced()
    before = ticker.turns
    programmer.refresh(full=True)
    assert programmer.pacer.pauses >= 20  # 300 vports on 3 switches: hundreds of owner variants compiled
    assert ticker.turns - before >= programmer.pacer.pauses  # the ticker ran at every pause
    assert flows_of(programmer) == flows_of(plain)


def test_an_incremental_compile_of_many_new_ports_lets_other_green_threads_run(ticker):
    state = vports_state(300)
    programmer = Programmer(state)
    programmer.pacer = paced()
    programmer.refresh(full=True)
    pauses, before = programmer.pacer.pauses, ticker.turns
    discover(state, 300)  # 300 ports appear at once
    programmer.refresh()
    assert programmer.pacer.pauses - pauses >= 20
    assert ticker.turns - before >= programmer.pacer.pauses - pauses
    assert flows_of(programmer) == flows_of(_full(state))


def _full(state):
    programmer = Programmer(state)
    programmer.refresh(full=True)
    return programmer


def test_planning_a_big_apply_lets_other_green_threads_run_and_plans_the_same(ticker):
    vports = [{"name": f"v{i}", "mac": f"02:00:00:01:{i >> 8:02x}:{i & 0xff:02x}", "ips": [f"10.7.{i >> 8}.{i & 0xff}"],
               "binding": {"flavour": "kvm", "iface_id": f"v{i}"}} for i in range(10, 510)]
    doc = {"tenants": [{"name": "t", "domains": [{"name": "d", "subnets": [
        {"name": "s", "cidr": "10.7.0.0/16", "gateway": "10.7.0.1", "vports": vports}]}]}]}

    def plan(pacer):
        return policydoc.plan(pol.Policy(), doc, "src", pol.Allocator({}, 65000, (10000, 20000)), pacer=pacer)

    pacer, before = paced(), ticker.turns
    planned = plan(pacer)
    assert pacer.pauses >= 50  # 500 vports placed, allocated, indexed and checked
    assert ticker.turns - before >= pacer.pauses
    plain = plan(Pacer())
    def values(p):  # ids are fresh uuids in each plan; names, addresses and allocations must be the same
        return [(c.kind, c.op, *((c.body or {}).get(k) for k in ("name", "mac", "ips", "vni", "rd", "gateway_mac")))
                for c in p.changes]

    assert values(planned) == values(plain) and len(values(plain)) == 503


def test_a_pacer_pauses_once_every_so_many_units():
    calls = []
    pacer = Pacer(lambda: calls.append(1), every=3)
    for _ in range(10):
        pacer.tick()
    pacer.tick(5)
    assert len(calls) == pacer.pauses == 4  # after units 3, 6, 9 and 15
    with pytest.raises(ValueError):
        Pacer(every=0)
    silent = Pacer(every=1)
    silent.tick(100)
    assert silent.pauses == 0  # no pause wired in: only counts


@pytest.mark.parametrize("every, before", [(3, 0), (3, 2), (7, 5), (1, 0)])
def test_work_done_a_run_at_a_time_pauses_where_a_tick_per_item_would(every, before):
    """``runs``: the pauses fall after the same items as with a tick per item, and no run crosses a pause."""
    def pauses_after(by_runs: bool) -> list:
        done, where = [], []
        pacer = Pacer(lambda: where.append(len(done)), every=every)
        pacer.tick(before)
        items = list(range(20))
        if by_runs:
            for run in runs(pacer, items):
                done.extend(run)
                pacer.tick(len(run))
        else:
            for item in items:
                done.append(item)
                pacer.tick()
        return where

    assert pauses_after(True) == pauses_after(False) and pauses_after(True)
    stand_in = type("StandIn", (), {"every": 5})()  # (a test's pacer without ``due``: runs of one)
    assert list(runs(stand_in, [1, 2, 3])) == [[1], [2], [3]]


@pytest.mark.parametrize("every, before, seed", [(3, 0, 0), (3, 2, 1), (7, 5, 2), (1, 0, 3), (10, 4, 4)])
def test_work_of_several_units_an_item_done_a_run_at_a_time_pauses_where_a_tick_per_item_would(every, before, seed):
    """``unit_runs``: items of 1 to 12 units each (an owner listed on as many switches): the pauses fall after the
    same items as with ``tick(units)`` per item, and no run crosses a pause."""
    rng = random.Random(seed)  # (one generator: a new one per item gave 40 items of the same units)
    units = [rng.choice((1, 1, 1, 2, 5, 12)) for _ in range(40)]
    assert len(set(units)) > 1

    def pauses_after(by_runs: bool) -> list:
        done, where = [], []
        pacer = Pacer(lambda: where.append(len(done)), every=every)
        pacer.tick(before)
        if by_runs:
            for start, stop in unit_runs(pacer, units):
                done.extend(range(start, stop))
                pacer.tick(sum(units[start:stop]))
        else:
            for n, unit in enumerate(units):
                done.append(n)
                pacer.tick(unit)
        return where

    assert pauses_after(True) == pauses_after(False) and pauses_after(True)
    stand_in = type("StandIn", (), {"every": 5})()  # (a test's pacer without ``due``: runs of one)
    assert list(unit_runs(stand_in, [2, 1, 3])) == [(0, 1), (1, 2), (2, 3)]


def test_a_policy_committed_during_a_pause_is_read_by_the_next_pass_not_half_by_this_one():
    """A pass reads one policy from start to end (viewdelta._Pinned): here a commit lands in its first pause and
    gives another vport an ACL; that vport's port policy must come with the next pass, which it would not if this
    pass had read the new policy for its security step (the next one then sees nothing new)."""
    from controller.state import State
    from tests.unit.test_compiler import assert_matches_full
    from tests.unit.test_security_policy import plan

    state = State(plan().policy)
    add_vport(state, "acme/web", "x1", "02:00:00:00:0a:01", "10.0.1.51")
    add_vport(state, "acme/web", "x2", "02:00:00:00:0a:02", "10.0.1.52")
    state.vrs_update(snapshot("hv1", "10.251.0.1", [("x1", 5), ("x2", 6)]))
    programmer = Programmer(state)
    programmer.refresh(full=True)
    ops = state.policy.find("acl", "acme/ops")["id"]

    def commit_acl():  # the handler of a REST write, run while the pass is paused
        policy = state.policy.copy()
        x2 = dict(policy.find("vport", "acme/web/x2"), acls=[ops])
        policy.put("vport", x2)
        state.policy_committed(policy, [])

    pending = [commit_acl]
    programmer.pacer = Pacer(lambda: pending and pending.pop()(), every=1)
    policy = state.policy.copy()
    policy.put("vport", dict(policy.find("vport", "acme/web/x1"), ips=["10.0.1.61"]))
    state.policy_committed(policy, [])
    programmer.refresh()
    assert not pending  # the commit did land inside the pass
    programmer.refresh()
    assert_matches_full(programmer)
    assert "x2" in programmer.view.security.ports  # its ACL is in effect


def test_the_collector_stays_off_until_the_last_of_interleaved_pauses_ends():
    """Green threads pause the collector in turn and end in any order (one pauses inside another's)."""
    import gc

    from controller.pacer import collector_paused

    assert gc.isenabled()
    first, second = collector_paused(), collector_paused()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first to start ends first: the second is still working
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_pass_started_inside_another_passs_pause_is_refused():
    """Only the programming loop runs passes, one at a time: a pass started in another's pause would take the
    journal and change the View under it (a subnet gone from the View while the paused pass compiles it)."""
    state = vports_state(30)
    discover(state, 30)
    programmer = Programmer(state)
    programmer.refresh(full=True)
    refused = []

    def nested():
        try:
            programmer.refresh()
        except RuntimeError as exc:
            refused.append(str(exc))

    programmer.pacer = Pacer(nested, every=1)
    state.vrs_update(snapshot("hv1", HOSTS["hv1"], [(f"vm{i}", 50 + i) for i in range(30) if i % 3 == 0]))
    programmer.refresh()
    assert refused and refused[0] == "a programming pass is already running"
    programmer.pacer = Pacer()
    assert not programmer.refresh()  # nothing left over: the paused pass took it all


def test_a_switch_handed_its_state_in_a_pause_is_told_every_owner_changed_in_it():
    """A switch connecting during a pass's pause is handed its desired state then (app._adopt: ``desired`` and
    ``take_changes``): every owner whose flows differ from what it was handed before is among the changes."""
    state = vports_state(60)
    discover(state, 60)
    programmer = Programmer(state)
    programmer.refresh(full=True)
    handed = {s: flows_of_session(programmer, s) for s in programmer.desired}
    for session in handed:
        programmer.take_changes(session)
    missed = []

    def hand_out():  # what _adopt does for every switch, checked against what it had
        for session, desired in programmer.desired.items():
            now, changes = flows_of_session(programmer, session), programmer.take_changes(session)
            before = handed.get(session, {})
            differ = {o for o in now.keys() | before.keys() if now.get(o) != before.get(o)}
            if changes is not None and not differ <= changes:
                missed.append((session, differ - changes))
            handed[session] = now

    programmer.pacer = Pacer(hand_out, every=1)
    for n, (host, vtep) in enumerate(HOSTS.items()):  # every VM on a new port
        state.vrs_update(snapshot(host, vtep, [(f"vm{i}", 100 + i) for i in range(60) if i % 3 == n]))
    programmer.refresh()
    hand_out()
    assert programmer.pacer.pauses and not missed


def flows_of_session(programmer, session):
    return dict(programmer.desired[session].flows)


def test_a_report_superseded_during_states_pauses_leaves_state_as_the_newest_report_says():
    """State reads a big report's ports pausing (``State.pacer``); another OVSDB session speaking for the same switch
    may report it meanwhile, saying only what changed since the report being read (its reporter's previous one). The
    newer report wins, and State ends as a fresh State given only the newest report: every vport bound where that
    report shows it."""
    from dataclasses import replace

    from controller.state import State

    def report(state, ports, new):
        snap = snapshot("hv1", HOSTS["hv1"], ports)
        names = {f"p-{name}" for name, _ in new}
        return replace(snap, changed=frozenset(names), changed_ports={p.name: p for p in snap.ports if p.name in names})

    state = vports_state(3)
    state.vrs_update(snapshot("hv1", HOSTS["hv1"], [("vm0", 10)]))
    first = report(state, [("vm0", 10), ("vm1", 11)], [("vm1", 11)])
    newer = report(state, [("vm0", 10), ("vm1", 11), ("vm2", 12)], [("vm2", 12)])
    pending = [lambda: state.vrs_update(newer)]
    state.pacer = Pacer(lambda: pending and pending.pop()(), every=1)
    state.vrs_update(first)  # the newer report lands in its first pause
    assert not pending
    fresh = vports_state(3)
    fresh.vrs_update(snapshot("hv1", HOSTS["hv1"], [(f"vm{i}", 10 + i) for i in range(3)]))
    assert state.vrs["hv1"] == newer
    assert state.locations == fresh.locations and set(state.locations) == {"vm0", "vm1", "vm2"}


@pytest.mark.parametrize("ending", ["a newer report", "the switch's end"])
def test_whatever_pause_of_a_report_another_lands_in_state_ends_as_a_fresh_state_given_the_last(ending):
    """As above, at every pause of the report in turn (reading its ports, indexing them in chunks, forgetting the
    ports that went, re-resolving the vports): the newer report of the switch, or its end, lands there, and State
    ends as a fresh State given only what happened last."""
    from dataclasses import replace

    def report(ports, new, gone=()):
        snap = snapshot("hv1", HOSTS["hv1"], ports)
        names = {f"p-{name}" for name, _ in new} | {f"p-{name}" for name in gone}
        return replace(snap, changed=frozenset(names), changed_ports={p.name: p for p in snap.ports if p.name in names})

    before = [("vm0", 10), ("vm1", 11), ("vm2", 12)]
    first = report([("vm0", 10), ("vm3", 13), ("vm4", 14)], [("vm3", 13), ("vm4", 14)], gone=("vm1", "vm2"))
    newer = report([("vm0", 10), ("vm3", 13), ("vm4", 14), ("vm5", 15)], [("vm5", 15)])

    def taken(at: int):
        state = vports_state(6)
        state.vrs_update(snapshot("hv1", HOSTS["hv1"], before))
        pauses = []

        def pause():
            pauses.append(1)
            if len(pauses) == at:
                state.vrs_update(newer) if ending == "a newer report" else state.vrs_gone("hv1")

        state.pacer = Pacer(pause, every=1)
        state.vrs_update(first)
        return state, len(pauses)

    _, total = taken(0)
    assert total >= 3  # reading, indexing, re-resolving: each pauses at least once
    fresh = vports_state(6)
    if ending == "a newer report":
        fresh.vrs_update(snapshot("hv1", HOSTS["hv1"], [("vm0", 10), ("vm3", 13), ("vm4", 14), ("vm5", 15)]))
    for at in range(1, total + 1):
        state, _ = taken(at)
        assert state.locations == fresh.locations, f"{ending} in pause {at} of {total}"
        assert set(state.vrs) == set(fresh.vrs), f"{ending} in pause {at} of {total}"


def test_a_check_paused_while_another_copy_takes_the_shared_index_still_finds_the_problem():
    """A write's check pauses (per change, per vport of a changed subnet); the index its policy shares with other
    copies may move to another copy meanwhile (controller/policyindex.py). The check asks for it again after each
    pause, so it still sees its own policy: here a vport given the address of another, which the other copy removed."""
    policy = vports_state(4).policy  # vm0 and vm2 in acme/web
    vm0, vm2 = policy.get("vport", "vm0"), policy.get("vport", "vm2")
    candidate = policy.copy()
    candidate.put("vport", dict(vm2, ips=list(vm0["ips"])))  # vm2 takes vm0's address: a duplicate
    candidate.index()  # the shared index follows the candidate

    def another_write():  # a copy of the candidate without vm0 asks for the index, which follows it from now on
        other = candidate.copy()
        other.remove("vport", "vm0")
        other.index()

    pending = [another_write]
    problems = pol.check_changes(candidate, [("tenant", candidate.find("tenant", "acme")["id"]), ("vport", "vm2")],
                                 Pacer(lambda: pending and pending.pop()(), every=1))
    assert not pending
    assert [(p.ref, p.field, p.code) for p in problems] == [("acme/web/vm2", "ips[0]", "conflict")]


def test_a_vport_moving_between_ports_of_one_report_is_bound_in_every_pause_of_state():
    """State updates the binding index for a report's ports in chunks, pausing between them (``State.pacer``): a
    port that went is forgotten after the ports that came are learnt, so a vport whose port went and whose new port
    came in the same report is found at one or the other by a commit re-resolving it in any pause, never unbound."""
    from dataclasses import replace

    import controller.state as state_module
    from controller.discovery import PortInfo
    from controller.store import Change

    state = vports_state(8)
    state.vrs_update(snapshot("hv1", HOSTS["hv1"], [(f"vm{i}", 10 + i) for i in range(1, 8)] + [("vm0", 10)]))
    before = state.vrs["hv1"]
    came = tuple(PortInfo(name=f"p-new{i}", ofport=30 + i, external_ids=(("iface-id", f"other{i}"),)) for i in range(4))
    moved = PortInfo(name="p-zz", ofport=40, external_ids=(("iface-id", "vm0"),))  # learnt after the p-new ports
    report = replace(before, ports=tuple(p for p in before.ports if p.name != "p-vm0") + came + (moved,),
                     changed=frozenset({"p-vm0", "p-zz"} | {p.name for p in came}))
    seen, inside = [], [False]

    def commit_vm0():  # a commit touching vm0 in each pause of State (its own pauses skipped)
        if inside[0]:
            return
        inside[0] = True
        policy = state.policy.copy()
        vport = dict(policy.get("vport", "vm0"), description=f"pause {len(seen)}")
        policy.put("vport", vport)
        state.policy_committed(policy, [Change("vport", "vm0", "put", vport, seq=state.last_seq + 1)])
        seen.append(state.locations.get("vm0"))
        inside[0] = False

    chunk, state_module.INDEX_CHUNK = state_module.INDEX_CHUNK, 1
    try:
        state.pacer = Pacer(commit_vm0, every=1)
        state.vrs_update(report)
    finally:
        state_module.INDEX_CHUNK = chunk
    assert len(seen) >= 5 and all(loc is not None for loc in seen), seen
    assert state.locations["vm0"].port == "p-zz"


def test_a_report_deleting_many_ports_pauses_while_the_index_forgets_them_each_port_all_there_or_all_gone():
    """10,000 ports deleted in one OVSDB update (evpn_routes' withdraw) were forgotten by the binding index, with
    their order of first appearance, in one stretch (~30-50 ms) before State's first pause. They are forgotten in
    chunks now, pausing between them; in every pause each port is either still wholly known (index and order of
    appearance) or wholly gone: a report in parts, as the switch could have sent it."""
    state = vports_state(1000)
    state.vrs_update(snapshot("hv1", HOSTS["hv1"], [(f"vm{i}", 10 + i) for i in range(1000)]))
    assert len(state.locations) == 1000
    known = []

    def look():
        shown = set(state.index.shown["hv1"])
        assert shown == set(state._seen_ports["hv1"])  # the two forget a port together
        known.append(len(shown))

    state.pacer = Pacer(look, every=250)
    state.vrs_update(snapshot("hv1", HOSTS["hv1"], []))  # every VM's port deleted: the tunnel port stays
    assert len([n for n in known if 1 < n < 1001]) >= 3, known  # paused while the index still knew some
    assert not state.locations and set(state.index.shown["hv1"]) == {"vxlan0"}


def test_a_pass_removing_many_vports_frees_their_old_flows_a_few_owners_at_a_time():
    """When 10,000 vports are unbound, the pass's recompile dropped the last reference to their old flows at once
    (~90 ms of freeing without a pause, evpn_routes' withdraw). They are freed a few owners between two pauses now:
    no stretch between two pauses frees more than a fraction of the memory blocks the pass frees in all."""
    import sys

    state = vports_state(1000)
    state.vrs_update(snapshot("hv1", HOSTS["hv1"], [(f"vm{i}", 10 + i) for i in range(1000)]))
    programmer = Programmer(state)
    programmer.refresh(full=True)
    state.vrs_update(snapshot("hv1", HOSTS["hv1"], []))  # every VM's port deleted
    blocks = [sys.getallocatedblocks()]
    programmer.pacer = Pacer(lambda: blocks.append(sys.getallocatedblocks()), every=50)
    programmer.refresh()
    blocks.append(sys.getallocatedblocks())
    freed = [before - after for before, after in zip(blocks, blocks[1:])]
    assert blocks[0] - blocks[-1] > 50_000  # 9,000 flows and their matches and actions freed
    assert max(freed) < (blocks[0] - blocks[-1]) / 4, sorted(freed)[-3:]


def test_the_policy_index_built_by_an_incremental_pass_pauses_too(monkeypatch):
    """The first incremental pass after a start builds the policy's index from scratch (controller/extdelta.py
    asks it which floating IPs a change reaches): per object indexed, a tick (5,000 vports: ~33 ms of CPU in one stretch
    before)."""
    from controller.policyindex import PolicyIndex

    state = vports_state(300)
    programmer = Programmer(state)
    programmer.pacer = paced()
    programmer.refresh(full=True)
    built, build = [], PolicyIndex.build.__func__

    def counted(cls, policy, owner, pacer=None):
        pauses = programmer.pacer.pauses
        index = build(cls, policy, owner, *(() if pacer is None else (pacer,)))
        built.append((sum(len(objects) for objects in policy.objects.values()), programmer.pacer.pauses - pauses))
        return index

    monkeypatch.setattr(PolicyIndex, "build", classmethod(counted))
    state.policy._index = None  # as at a start: the policy read from the store has no index yet
    discover(state, 300)
    programmer.refresh()
    assert built and all(pauses >= objects // 20 for objects, pauses in built)
    assert flows_of(programmer) == flows_of(_full(state))


def test_the_compile_pauses_after_so_many_flows_built_not_so_many_owners():
    """A pause comes after about the same work whatever the owners are: ports appearing (each a local vport of ~10
    flows where a remote one has a few) pause at least once per ``every * FLOWS_PER_UNIT`` flows built. One unit per
    owner compiled let 200 local vports (~3,000 flows, 30-55 ms) run between two pauses of an apply burst."""
    from openflow.compiler import FLOWS_PER_UNIT

    state = vports_state(300)
    programmer = Programmer(state)
    programmer.refresh(full=True)
    every = 20
    built = []  # distinct flows the shared compile holds at each pause

    def pause():
        built.append(sum(len(flows) for by_variant in programmer.shared.flows.values()
                         for flows in by_variant.values()))

    programmer.pacer = Pacer(pause, every)
    start = sum(len(f) for by_variant in programmer.shared.flows.values() for f in by_variant.values())
    discover(state, 300)  # 300 ports appear at once: their local and remote variants are compiled
    programmer.refresh()
    gaps = [b - a for a, b in zip([start] + built, built)]
    largest_owner = max(len(f) for by_variant in programmer.shared.flows.values() for f in by_variant.values())
    assert len(built) >= 10
    assert max(gaps) <= every * FLOWS_PER_UNIT + largest_owner, gaps


def test_the_owners_ports_reach_are_added_a_switch_at_a_time():
    """300 ports appearing at once reach their owners on every switch of their subnets: the owners are added to
    each switch's set a switch at a time, so that between two pauses (a pause per unit here) one switch's set grows.
    Added owner by owner, the sets of 100 switches grew in step and one owner's add resized all of them (26-34 ms
    of CPU in one stretch at 10,000 ports on 100 VRS; controller/viewowners.py ``_add_listed``)."""
    state = vports_state(300)
    programmer = Programmer(state)
    programmer.refresh(full=True)
    grown = []  # per pause: the switches where more vport owners were noted since the previous pause
    sizes = {}

    def pause():
        now = {session: sum(o.kind == "vport" for o in owners) for session, owners in programmer.live.r.owners.items()}
        grown.append(sum(now[s] > sizes.get(s, 0) for s in now))
        sizes.clear()
        sizes.update(now)

    programmer.pacer = Pacer(pause, 1)
    discover(state, 300)
    programmer.refresh()
    assert len(grown) > 300 and max(grown) == 1, max(grown)
    assert flows_of(programmer) == flows_of(_full(state))


def test_an_acls_rules_pause_by_the_flows_they_build(monkeypatch):
    """ACLs are built rule by rule (openflow/acl.py), each rule's flows counted like any owner's: a pause comes after
    at most ``every * FLOWS_PER_UNIT`` flows checked plus one rule's. With one unit per ACL, the first switch built 100
    ACLs of 20 rules between two pauses (0.6 s of CPU at 10,000 vports: docs/benchmarks.md, branch statuslat)."""
    from controller.state import State
    from openflow import pipeline
    from openflow.compiler import FLOWS_PER_UNIT
    from tests.benchmarks import compile_scale as scale
    from tests.benchmarks.compile_security import security_document

    lay = scale.Layout(400, 4, 1, 200, "spread", 4, 0)
    state = State(pol.Policy(), "kvm")
    scale.commit(state, scale.build_policy(security_document(lay, 22, 10, 20)))
    scale.discover(state, scale.snapshots(lay))
    checked, gaps = [0], []
    check = pipeline.check_flow
    monkeypatch.setattr(pipeline, "check_flow", lambda f: (checked.__setitem__(0, checked[0] + 1), check(f))[1])
    every = 20
    programmer = Programmer(state)
    programmer.pacer = Pacer(lambda: (gaps.append(checked[0]), checked.__setitem__(0, 0)), every)
    programmer.refresh(full=True)
    first = next(iter(programmer.desired.values()))
    acl_flows = sum(len(fs) for o, fs in first.flows.items() if o.kind == "acl")
    assert acl_flows > 4 * every * FLOWS_PER_UNIT  # the ACLs alone are many pauses' worth
    largest_rule = 2 * 20 + 4  # a rule naming a group of 20 members (its conjunction's two halves) and its own
    assert max(gaps) <= every * FLOWS_PER_UNIT + largest_rule, max(gaps)
