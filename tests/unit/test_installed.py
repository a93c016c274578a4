"""The reconciler's record by owner (openflow/installed.py): plans only the owners it is told changed, keeps
references rather than copies, and after a read-back diffs everything as the reconciler always did."""

from types import SimpleNamespace

import pytest

from openflow import pipeline as p
from openflow.flows import Owner, flow
from openflow.installed import EMPTY, FlowBook, FlowPlan
from tests.unit.green import joined, spawned, turns

A, B, C = Owner("vport", "a"), Owner("vport", "b"), Owner("subnet", "s")


def flows_of(owner, *macs):
    return frozenset(flow(p.L2_LOOKUP, 100, {"reg5": 1, "eth_dst": mac}, [("goto", p.EGRESS_ACL)], owner)
                     for mac in macs)


def synced(desired):
    """A book whose switch holds exactly ``desired`` (read back, then a full plan applied)."""
    book = FlowBook()
    book.set_desired(desired)
    book.read_back({})
    book.applied(book.plan())
    return book


def stats(f):
    return SimpleNamespace(table_id=f.table, priority=f.priority, cookie=f.cookie, match=None)


def test_after_a_read_back_what_is_held_and_desired_stays_the_rest_is_added_or_removed():
    keep, missing = flows_of(A, "02:00:00:00:00:01"), flows_of(B, "02:00:00:00:00:02")
    stale = next(iter(flows_of(C, "02:00:00:00:00:03")))
    book = FlowBook()
    book.set_desired({A: keep, B: missing})
    book.read_back({f.key: stats(f) for f in [*keep, stale]})
    plan = book.plan()
    assert plan.full and [f for _, f in plan.adds] == list(missing)
    assert [k for k, _ in plan.deletes] == [stale.key]
    book.applied(plan)
    assert book.installed == {A: keep, B: missing} and book.loose == {}
    assert book.installed[A] is keep  # a reference to the compiler's set, not a copy
    assert book.counts() == (2, 2, 0)


def test_only_the_owners_said_to_have_changed_are_planned():
    a1, b1 = flows_of(A, "02:00:00:00:00:01"), flows_of(B, "02:00:00:00:00:02")
    book = synced({A: a1, B: b1})
    a2, b2 = flows_of(A, "02:00:00:00:00:11"), flows_of(B, "02:00:00:00:00:12")
    book.set_desired({A: a2, B: b2}, changed={A})  # B differs too, but nobody said so: not even looked at
    plan = book.plan()
    assert not plan.full and set(plan.owners) == {A}
    assert [f for _, f in plan.adds] == list(a2) and [f for _, f in plan.deletes] == list(a1)
    book.applied(plan)
    assert book.installed[A] is a2 and book.installed[B] is b1
    assert book.plan().adds == [] and book.plan().deletes == []
    book.set_desired({A: a2}, changed={B})  # B gone
    plan = book.plan()
    assert [f for _, f in plan.deletes] == list(b1) and plan.adds == []
    book.applied(plan)
    assert book.installed == {A: a2}


def test_unknown_changes_diff_everything():
    a1 = flows_of(A, "02:00:00:00:00:01")
    book = synced({A: a1})
    b1 = flows_of(B, "02:00:00:00:00:02")
    book.set_desired({B: b1}, changed=None)
    plan = book.plan()
    assert plan.full and [f for _, f in plan.adds] == list(b1) and [f for _, f in plan.deletes] == list(a1)


def test_a_rejected_flow_is_left_out_until_a_retry():
    a1 = flows_of(A, "02:00:00:00:00:01", "02:00:00:00:00:02")
    book = FlowBook()
    book.set_desired({A: a1})
    book.read_back({})
    plan = book.plan()
    bad = plan.adds[0][0]
    book.rejected[bad] = "OFPET_BAD_ACTION"
    book.applied(plan)
    assert {f.key for f in book.installed[A]} == {f.key for f in a1} - {bad}
    assert book.plan().adds == []  # not sent again by itself
    book.retry_rejected()
    assert [k for k, _ in book.plan().adds] == [bad]


def test_keep_sends_no_delete_and_remembers_what_it_kept():
    a1, a2 = flows_of(A, "02:00:00:00:00:01"), flows_of(A, "02:00:00:00:00:02")
    book = synced({A: a1})
    book.set_desired({A: a2}, changed={A})
    plan = book.plan(keep=True)
    assert plan.deletes == [] and [f for _, f in plan.kept] == list(a1)
    book.applied(plan)
    assert set(book.loose) == {f.key for f in a1}
    book.set_desired({A: a2}, changed=set())
    assert [f for _, f in book.plan().deletes] == list(a1)  # keep off: removed


def test_a_kept_flow_wanted_again_is_not_added_again():
    """A flow kept while ``keep`` is on (``loose``: the switch holds it, no owner does), whether an owner stopped
    wanting it or a read-back found it, is not sent again when an owner comes to want it: the owner takes it over as
    the switch holds it, as a full plan would, and it is no longer loose (with keep off, nothing deletes it)."""
    a1, a2 = flows_of(A, "02:00:00:00:00:01"), flows_of(A, "02:00:00:00:00:02")
    found = flows_of(B, "02:00:00:00:00:03")
    book, switch = FlowBook(), {f.key: f for f in a1 | found}
    book.set_desired({A: a1})
    book.read_back({f.key: stats(f) for f in a1 | found})
    plan = book.plan(keep=True)
    assert book.kept_count(plan) == 1
    book.applied(plan)  # the switch holds what is desired and more: nothing sent, ``found`` kept
    assert set(book.loose) == {f.key for f in found}
    for desired, changed, kept in (({A: a2}, {A}, 2),  # a1 kept
                                   ({A: a1 | a2}, {A}, 1),  # a1 wanted again
                                   ({A: a1 | a2, B: found}, {B}, 0)):  # what the read-back found wanted
        book.set_desired(desired, changed=changed)
        plan = book.plan(keep=True)
        assert {f for _, f in plan.adds} == (a2 if desired == {A: a2} else EMPTY), desired
        assert book.kept_count(plan) == kept and not {k for k, _ in plan.kept} & book.loose.keys()  # not walked
        for key, f in plan.adds:
            switch[key] = f
        book.applied(plan)
        assert book.installed == desired
    assert book.loose == {} and book.counts()[2] == 0 and set(switch) == set(book.desired_by_key())
    assert book.plan().deletes == []


def test_kept_flows_are_counted_as_kept_not_pending():
    """With keep (the reconciler's keep_stale) a flow Canopy would delete is counted as kept, not pending: after a
    read-back (a full diff), after an owner's change (its old flows), and once applied (``loose``), as many as
    ``kept_count`` says the plan keeps; before, they stayed pending and a switch in sync looked behind."""
    a1, a2 = flows_of(A, "02:00:00:00:00:01"), flows_of(A, "02:00:00:00:00:02")
    found = flows_of(B, "02:00:00:00:00:03", "02:00:00:00:00:04")
    book = FlowBook()
    book.set_desired({A: a1})
    book.read_back({f.key: stats(f) for f in found})
    assert book.tally(keep=True) == (1, 2, 1, 2) and book.counts() == (1, 2, 3)  # a1 to add; found kept
    plan = book.plan(keep=True)
    kept = book.kept_count(plan)
    book.applied(plan)
    assert book.tally(keep=True) == (1, 3, 0, kept) == (1, 3, 0, 2)
    assert book.counts() == (1, 3, 2)  # without keep they are still to remove
    book.set_desired({A: a2}, changed={A})
    assert book.tally(keep=True) == (1, 3, 1, 3)  # a2 to add; a1 kept too
    plan = book.plan(keep=True)
    kept = book.kept_count(plan)
    book.applied(plan)
    assert book.tally(keep=True) == (1, 4, 0, kept) == (1, 4, 0, 3)


def test_a_kept_flow_taken_over_by_a_plan_that_fails_stays_true_to_the_switch():
    """A plan that takes a loose flow over and is dropped unsent (superseded) leaves it loose, the owner without it;
    the next plan takes it over again. A plan whose other add the switch refuses still takes it over (nothing was
    sent for it). Not answered: the reconciler reads back (``read_back``), and a full plan keeps it, sending nothing."""
    a1, a2 = flows_of(A, "02:00:00:00:00:01"), flows_of(A, "02:00:00:00:00:02")
    found = flows_of(B, "02:00:00:00:00:03")
    book = FlowBook()
    book.set_desired({A: a1})
    book.read_back({f.key: stats(f) for f in a1 | found})
    book.applied(book.plan(keep=True))
    book.set_desired({A: a1 | a2, B: found}, changed={A, B})
    dropped = book.plan(keep=True)
    assert dropped.adopted == [f.key for f in found] and [f for _, f in dropped.adds] == list(a2)
    book.unplan(dropped)
    assert set(book.loose) == {f.key for f in found} and B not in book.installed
    plan = book.plan(keep=True)
    assert plan.adopted == dropped.adopted and [f for _, f in plan.adds] == list(a2)
    [(refused, _)] = plan.adds
    book.rejected[refused] = "refused"  # the reconciler's _reject, before applied
    book.applied(plan)
    assert book.loose == {} and book.installed == {A: a1, B: found}
    book.read_back({f.key: stats(f) for f in a1 | found})  # a change set not answered
    plan = book.plan()
    assert [f for _, f in plan.adds] == list(a2) and plan.deletes == []


def test_a_flow_moving_between_owners_with_the_same_key_is_not_deleted():
    moved = flows_of(A, "02:00:00:00:00:01")
    book = synced({A: moved})
    book.set_desired({B: moved}, changed={A, B})  # same flows (and cookies) now held as B's: nothing to send
    plan = book.plan()
    assert plan.deletes == []


def test_a_full_plan_runs_no_cyclic_collection():
    """A switch's full plan (after a read-back) allocates a few tuples per flow; with the controller's millions of
    long-lived objects each collection the allocations trigger walks them all (controller/pacer.py collector_paused), so the
    reconciler plans with the collector paused: none runs meanwhile (at most the one young collection that was
    deferred, when it is back on), instead of one every 700 allocations; and it is on again afterwards."""
    import gc

    rec = _reconciler(1)
    owners = [Owner("vport", f"v{i}") for i in range(5000)]
    rec._book.set_desired({o: flows_of(o, f"02:00:00:00:{i >> 8:02x}:{i & 0xff:02x}") for i, o in enumerate(owners)})
    rec._book.read_back({})
    runs = []

    def seen(phase, info):
        if phase == "start":
            runs.append(info["generation"])

    gc.collect()  # nothing pending: a collection seen now is the plan's doing
    gc.callbacks.append(seen)
    try:
        ops = rec._plan()
    finally:
        gc.callbacks.remove(seen)
    assert len(ops) == 5000 and runs in ([], [0]) and gc.isenabled()


def test_at_most_a_few_switches_are_read_back_at_once():
    """Each read-back streams all of a switch's flows, and OVS's echo requests queue behind the stream: switches
    are read back READ_BACKS_AT_ONCE at a time, the next one as soon as one is done (or gone)."""
    import logging

    from controller.ryu_compat import hub, ofproto_protocol
    from openflow import reconciler

    dp = ofproto_protocol.ProtocolDesc(5)
    asked = []

    def switch(n):
        sent = SimpleNamespace(id=n, ofproto=dp.ofproto, ofproto_parser=dp.ofproto_parser, xid=0,
                               address=("10.0.0.1", n))
        sent.send_msg = lambda msg: asked.append((n, type(msg).__name__))
        return sent

    at_once = getattr(reconciler, "READ_BACKS_AT_ONCE", 8)
    recs = [reconciler.SwitchReconciler(switch(n), log=logging.getLogger("test.reconciler"))
            for n in range(1, at_once + 4)]
    for rec in recs:
        rec.start()
    try:
        hub.sleep(0.05)
        flow_requests = [n for n, kind in asked if kind == "OFPFlowStatsRequest"]
        assert sorted(flow_requests) == list(range(1, at_once + 1))
        recs[0].stop()  # its switch is gone: the next waiting one goes ahead
        hub.sleep(0.05)
        flow_requests = [n for n, kind in asked if kind == "OFPFlowStatsRequest"]
        assert sorted(flow_requests) == list(range(1, at_once + 2))
    finally:
        for rec in recs:
            rec.stop()


def test_counts_are_taken_once_per_state_of_the_book(monkeypatch):
    """counts() after a read-back (a full plan due) diffs everything; asked again and again (REST, a Prometheus
    scrape of every switch) it counts once per state of the book, and each input is counted afresh."""
    book = FlowBook()
    book.set_desired({A: flows_of(A, "02:00:00:00:00:01", "02:00:00:00:00:02")})
    book.read_back({})
    diffs = []
    original = book.desired_by_key
    monkeypatch.setattr(book, "desired_by_key", lambda *args: diffs.append(1) or original(*args))
    assert [book.counts() for _ in range(5)] == [(2, 0, 2)] * 5 and len(diffs) == 1
    installed = next(iter(flows_of(A, "02:00:00:00:00:01")))
    book.read_back({installed.key: stats(installed)})
    assert book.counts() == (2, 1, 1)
    book.set_desired({B: flows_of(B, "02:00:00:00:00:03")}, {B})
    assert book.counts() == (3, 1, 2)  # A's second flow and B's to add
    book.rejected[next(iter(flows_of(B, "02:00:00:00:00:03"))).key] = "refused"
    assert book.counts() == (3, 1, 1) and len(diffs) == 4


def test_a_count_taken_while_a_confirmed_plan_is_recorded_is_not_kept_for_the_book_after_it():
    """``applied`` pauses (every CHUNK flows); a REST status or a scrape counting in that pause sees the record half
    written. Once it is written the count must be that of the whole record, not the one cached in the pause."""
    owners = [Owner("vport", f"v{i}") for i in range(3)]
    desired = {o: flows_of(o, *(f"02:00:00:{i:02x}:{j >> 8:02x}:{j & 255:02x}" for j in range(400)))
               for i, o in enumerate(owners)}
    book = FlowBook()
    book.set_desired(desired)
    book.read_back({})
    plan = book.plan()
    mid = []
    book.applied(plan, tick=lambda n: mid.append(book.counts()))
    assert mid and mid[0] != (1200, 1200, 0)  # counted in a pause: the record half written
    assert book.counts() == (1200, 1200, 0)



def colliding_owners(kind: str = "vport") -> tuple[Owner, Owner]:
    """Two owners of ``kind`` whose ids' 20-bit hints collide (a search: ~1,300 ids expected, 65,536 at most)."""
    seen: dict = {}
    for i in range(1 << 16):
        owner = Owner(kind, f"v{i}")
        other = seen.setdefault(owner.hint(), owner)
        if other is not owner:
            return other, owner
    raise AssertionError("no two ids with the same hint")


def planned(book: FlowBook, switch: dict) -> FlowPlan:
    """Plan, apply the plan to ``switch`` (key -> flow, as a switch applies adds and strict deletes) and confirm it."""
    pending = book.counts()[2]
    plan = book.plan()
    assert pending == len(plan.adds) + len(plan.deletes)
    for key, f in plan.adds:
        switch[key] = f
    for key, _ in plan.deletes:
        del switch[key]  # a strict delete of a flow the switch does not hold would be a bug of its own
    book.applied(plan)
    return plan


def test_a_flow_two_owners_share_through_a_hint_collision_stays_while_either_wants_it():
    """Two owners whose hints collide and who want a flow of the same content want one flow (one key): one of them
    dropping it, going away, or changing its other flows must not delete it while the other still wants it; once
    neither does it goes. At every step the switch holds exactly the desired flows."""
    a, b = colliding_owners()
    shared_a, shared_b = flows_of(a, "02:00:00:00:00:01"), flows_of(b, "02:00:00:00:00:01")
    assert {f.key for f in shared_a} == {f.key for f in shared_b}  # the collision: one key for both
    own_a, own_b, more_b = flows_of(a, "02:00:00:00:00:02"), flows_of(b, "02:00:00:00:00:03"), \
        flows_of(b, "02:00:00:00:00:04")
    book, switch = FlowBook(), {}
    book.set_desired({a: shared_a | own_a, b: shared_b | own_b})
    book.read_back({})
    planned(book, switch)
    states = [
        ({a: own_a, b: shared_b | own_b}, {a}),  # a drops it
        ({a: shared_a | own_a, b: shared_b | own_b}, {a}),  # a wants it again
        ({b: shared_b | own_b}, {a}),  # a goes
        ({a: shared_a, b: shared_b | own_b}, {a}),  # a comes back with it
        ({a: own_a, b: shared_b | more_b}, {a, b}),  # a drops it while b, planned too, keeps it
        ({a: shared_a, b: more_b}, {a, b}),  # they trade it: b drops it, a wants it again, in one plan
        ({a: own_a, b: more_b}, {a}),  # neither wants it: it goes
    ]
    for desired, changed in states:
        book.set_desired(desired, changed=changed)
        planned(book, switch)
        assert set(switch) == set(book.desired_by_key()), (desired, changed)
        assert book.counts()[2] == 0


def test_only_owners_whose_hints_collide_are_looked_at():
    """A switch without a hint collision among its installed owners (almost every one) plans as before; with one,
    the owners involved are known and lose that mark when one of them goes."""
    a, b = colliding_owners()
    book = synced({A: flows_of(A, "02:00:00:00:00:01"), B: flows_of(B, "02:00:00:00:00:02")})
    assert not book.sharing.involved
    book.set_desired({A: flows_of(A, "02:00:00:00:00:01"), a: flows_of(a, "02:00:00:00:00:03"),
                      b: flows_of(b, "02:00:00:00:00:04")}, changed={B, a, b})
    book.applied(book.plan())
    assert book.sharing.involved == {a, b} and book.sharing.others(a, book.installed[a]) == (b,)
    book.set_desired({A: flows_of(A, "02:00:00:00:00:01"), a: flows_of(a, "02:00:00:00:00:03")}, changed={b})
    book.applied(book.plan())
    assert not book.sharing.involved and book.sharing.others(a, book.installed[a]) == ()


def test_a_flow_a_colliding_owner_already_holds_is_not_added_again():
    """An owner coming (or changing) to want a flow of the same content as one its colliding twin holds installed
    wants a flow the switch holds (one key): the plan sends nothing for it, as a full plan would not, and the count
    has nothing pending for it; both owners then hold it."""
    a, b = colliding_owners()
    shared_a, shared_b = flows_of(a, "02:00:00:00:00:01"), flows_of(b, "02:00:00:00:00:01")
    own_b = flows_of(b, "02:00:00:00:00:02")
    book, switch = FlowBook(), {}
    book.set_desired({a: shared_a})
    book.read_back({})
    planned(book, switch)
    for desired, added in (({a: shared_a, b: shared_b}, EMPTY),  # b comes with it
                           ({a: shared_a, b: own_b}, own_b),  # b drops it
                           ({a: shared_a, b: own_b | shared_b}, EMPTY)):  # b, installed, wants it again
        book.set_desired(desired, changed={b})
        plan = planned(book, switch)
        assert {f for _, f in plan.adds} == added and not plan.deletes, desired
        shared = [(wanted.owner, have.owner) for key, wanted, have in book.listing()[0] if wanted in shared_a]
        assert len(shared) == 1 and set(shared[0]) <= {a, b}  # listed once (docs/pipeline.md), under one of them
        assert set(switch) == set(book.desired_by_key()) and book.installed == desired


def test_a_plan_goes_out_of_date_when_a_colliding_owner_comes_to_want_a_flow_it_deletes():
    """A plan in flight deletes a flow of one owner; its colliding twin, not planned, comes to want a flow of the same
    content (one key) meanwhile: the plan would delete what the desired state wants, so it is out of date (the
    reconciler drops it). A change of an owner of other bits leaves it be."""
    a, b = colliding_owners()
    own_b = flows_of(b, "02:00:00:00:00:02")
    book = synced({b: flows_of(b, "02:00:00:00:00:01") | own_b, A: flows_of(A, "02:00:00:00:00:03")})
    book.set_desired({b: own_b, A: flows_of(A, "02:00:00:00:00:03")}, changed={b})
    plan, version = book.plan(), book.version
    assert [f for _, f in plan.deletes] == list(flows_of(b, "02:00:00:00:00:01"))
    book.set_desired({b: own_b, A: flows_of(A, "02:00:00:00:00:04")}, changed={A, Owner("no such kind", b.id)})
    assert book.version == version
    book.set_desired({b: own_b, A: flows_of(A, "02:00:00:00:00:04"), a: flows_of(a, "02:00:00:00:00:01")},
                     changed={a})
    assert book.version == version + 1


@pytest.mark.parametrize("step", ["_plan_ops", "_take_in"])
def test_at_most_a_few_switches_take_in_a_read_back_or_plan_at_once(monkeypatch, step):
    """Taking in a read-back and planning a change set pause every few milliseconds; 30 switches doing so at once
    made every round of the hub 70-100 ms of CPU after a restart. PLANS_AT_ONCE do it at a time."""
    from controller.ryu_compat import hub
    from openflow import atonce, reconciler

    at_work, most = [0], [0]

    def work(self, *args):
        at_work[0] += 1
        most[0] = max(most[0], at_work[0])
        for _ in range(3):
            hub.sleep(0)  # the step's pauses
        at_work[0] -= 1
        return []

    monkeypatch.setattr(reconciler.SwitchReconciler, step, work)
    monkeypatch.setattr(reconciler.SwitchReconciler, "_request", lambda self, msg: [])
    recs = [_reconciler(n) for n in range(1, atonce.PLANS_AT_ONCE + 5)]
    joined(*[spawned(rec._sync if step == "_plan_ops" else rec._read_back) for rec in recs])
    assert most[0] == atonce.PLANS_AT_ONCE


def _reconciler(dpid: int):
    """A switch reconciler of an OpenFlow 1.4 switch that is never answered."""
    import logging

    from controller.ryu_compat import ofproto_protocol
    from openflow import reconciler

    dp = ofproto_protocol.ProtocolDesc(5)
    return reconciler.SwitchReconciler(SimpleNamespace(id=dpid, ofproto=dp.ofproto, ofproto_parser=dp.ofproto_parser,
                                                       xid=0, address=("10.0.0.1", dpid)),
                                       log=logging.getLogger("test.reconciler"))


def test_a_plans_time_does_not_count_its_wait_for_a_slot(monkeypatch):
    """The debug line after a change set names its planning time: waiting behind PLANS_AT_ONCE other switches (a
    restart: seconds) is not planning."""
    import time

    from openflow import atonce, reconciler

    clock = [0.0]
    monkeypatch.setattr(reconciler, "time", SimpleNamespace(perf_counter=lambda: clock[0], monotonic=time.monotonic,
                                                            time=time.time))
    rec = _reconciler(1)

    def plan(self):
        clock[0] += 0.002  # the plan itself: 2 ms
        return ["a change"]

    monkeypatch.setattr(reconciler.SwitchReconciler, "_plan_ops", plan)
    monkeypatch.setattr(reconciler.SwitchReconciler, "_interrupted", lambda self: False)
    monkeypatch.setattr(reconciler.SwitchReconciler, "_execute", lambda self, ops: None)
    for _ in range(atonce.PLANS_AT_ONCE):  # every slot held by other switches
        atonce.PLANS.acquire()
    try:
        waiting = spawned(rec._sync)
        turns(1, waiting)
        clock[0] += 5.0  # five seconds behind the others
    finally:
        for _ in range(atonce.PLANS_AT_ONCE):
            atonce.PLANS.release()
    assert joined(waiting) == [True]
    assert rec._plan_ms == pytest.approx(2.0)


def test_a_small_plan_does_not_wait_behind_other_switches_full_plans(monkeypatch):
    """At a restart up to 44 other switches take in a read-back and plan every flow, 6 at a time: a new vport on a
    switch in sync (a plan of a few owners, a turn or two) is planned at once; a full plan waits for a slot."""
    from openflow import atonce, reconciler

    rec = _reconciler(1)
    monkeypatch.setattr(reconciler.SwitchReconciler, "_plan_ops", lambda self: ["a change"])
    monkeypatch.setattr(reconciler.SwitchReconciler, "_interrupted", lambda self: False)
    monkeypatch.setattr(reconciler.SwitchReconciler, "_execute", lambda self, ops: None)
    for _ in range(atonce.PLANS_AT_ONCE):  # every slot held by other switches' full plans
        atonce.PLANS.acquire()
    try:
        rec._book.dirty = {"vport-%d" % n for n in range(atonce.SMALL_PLAN_OWNERS)}
        small = spawned(rec._sync)
        turns(50, small)  # (a small plan that failed: its error)
        assert small.dead and small.wait() is True, "a small plan waited for a slot"
        rec._book.dirty = None
        full = spawned(rec._sync)
        turns(50, full)
        assert not full.dead, "a full plan did not wait for a slot"
    finally:
        for _ in range(atonce.PLANS_AT_ONCE):
            atonce.PLANS.release()
    assert joined(full) == [True]
