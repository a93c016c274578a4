"""Many switch reconcilers planning at once (a cold start: 50 switches read back and synced together) pause through one
lane (controller/app.py ``reconcile_lane``, controller/rest/lane.py): between two turns of another green thread (the
lag probe, an OVSDB probe, an HA heartbeat) the event loop runs one reconciler's stretch, not one per switch.

Counted, not timed: the reconcilers' stretches (runs of ``every`` flows planned, one per pause) between two turns of
a probe. Each reconciler's pauses bound its own stretch; with a plain ``hub.sleep(0)`` a sleeping green thread woke
only after every ready reconciler had had its turn, so a round of the loop held one stretch per switch syncing (in
vrs_scale's cold start, 10-20 reconcilers' turns of ~10 ms of CPU each in the probe's late intervals)."""

from __future__ import annotations

import pytest

from controller.pacer import Pacer
from controller.rest.lane import Lane
from controller.ryu_compat import hub
from openflow.flows import Group
from tests.unit.test_reconcile_pacing import desired, reconciler

SWITCHES = 6
OWNERS = 300
EVERY = 50


def change_of_every_owner(rec):
    """A switch in sync with OWNERS owners, then every owner changed (test_reconcile_pacing's, smaller)."""
    rec.set_desired_owners(desired(count=OWNERS), [Group(7, ())])
    rec._book.read_back({})
    rec._book.applied(rec._book.plan())
    rec._book.set_desired(desired(salt=1, count=OWNERS), changed=set(desired(salt=1, count=OWNERS)))


def most_stretches_between_probe_turns(pause) -> tuple[int, int, list]:
    """``SWITCHES`` reconcilers plan a change of every owner together, each pausing with ``pause`` every ``EVERY``
    flows; a probe takes a turn whenever it can. The most stretches ended between two of its turns once each
    reconciler has begun, those of the first round (each one's first stretch, before its first pause: the lane
    orders pauses, and openflow/atonce.py's slots bound how many heavy steps begin together), and the plans."""
    marks, plans, recs = [], {}, []
    for dpid in range(SWITCHES):
        def paused(dpid=dpid):
            marks.append(dpid)
            pause()

        rec, _ = reconciler()
        rec.pacer = Pacer(paused, EVERY)
        change_of_every_owner(rec)
        recs.append(rec)

    def plan(dpid):
        plans[dpid] = sorted((op.kind, op.key) for op in recs[dpid]._plan())

    def probe():
        while len(plans) < SWITCHES:
            marks.append("probe")
            hub.sleep(0)

    prober = hub.spawn(probe)
    hub.sleep(0)
    threads = [hub.spawn(plan, dpid) for dpid in range(SWITCHES)]
    for thread in threads + [prober]:
        thread.wait()
    runs, run = [], 0
    for mark in marks:
        if mark == "probe":
            runs.append(run)
            run = 0
        else:
            run += 1
    runs = runs[next(i for i, n in enumerate(runs) if n):] + [run]  # from the round in which they began
    return max(runs[1:]), runs[0], [plans[d] for d in range(SWITCHES)]


def test_reconcilers_planning_together_take_one_stretch_a_turn_and_plan_the_same():
    lane = Lane(lambda: hub.sleep(0))
    laned, laned_first, laned_plans = most_stretches_between_probe_turns(lane.pause)
    plain, plain_first, plain_plans = most_stretches_between_probe_turns(lambda: hub.sleep(0))
    assert plain == SWITCHES  # every reconciler's stretch in every round of the loop
    assert laned == 1  # one reconciler's stretch between two turns of the probe, whatever the number of switches
    assert laned_first == plain_first == SWITCHES  # (each one's first stretch, before it paused at all)
    assert lane.queued >= SWITCHES - 1
    assert laned_plans == plain_plans and len(laned_plans[0]) > 10 * EVERY  # the same change sets, many stretches


def test_the_app_gives_every_reconciler_the_lane(monkeypatch):
    """controller/app.py ``_adopt``: each switch's reconciler pauses through the app's one ``reconcile_lane``, every
    RECONCILE_EVERY flows; the OVSDB sessions (ovsdb/server.py ``pause``, every session's pacer) through one of their
    own."""
    import inspect
    from types import SimpleNamespace

    from controller import app
    from controller.programmer import Programmer
    from tests.unit.test_partial_report_withheld import _glue, _Rec
    from tests.unit.test_compiler import base_state

    made = {}
    monkeypatch.setattr(app, "SwitchReconciler",
                        lambda dp, pacer=None, **kw: made.setdefault(dp.id, pacer) and _Rec(dp))
    state = base_state()
    glue = _glue(state, Programmer(state))
    glue.reconcile_lane = Lane(lambda: hub.sleep(0))
    for dpid in (1, 2):
        glue._adopt(SimpleNamespace(id=dpid, address=None))
    assert set(made) == {1, 2} and made[1] is not made[2]  # a pacer each (its own count), one lane for all
    assert all(p.pause == glue.reconcile_lane.pause and p.every == app.RECONCILE_EVERY for p in made.values())
    init = inspect.getsource(app.CanopyApp.__init__)
    assert "self.reconcile_lane = Lane(give_way)" in init
    assert "self.ovsdb.pause = Lane(give_way).pause" in init  # the OVSDB sessions' pauses: a lane of their own


@pytest.mark.parametrize("killed", ["in its turn", "waiting"])
def test_a_reconciler_stopped_at_its_pause_leaves_the_lane_to_the_others(killed):
    """A switch disconnecting kills its reconciler at a pause (openflow/reconciler.py ``stop``): in its turn of the
    lane or queued for it, it holds nothing after; the others go on (bounded: they must finish in 10 s)."""
    lane = Lane(lambda: hub.sleep(0))
    holder = hub.spawn(lane.pause)
    waiter = hub.spawn(lane.pause)
    hub.sleep(0)  # holder in its turn (sleeping in give_way), waiter queued
    hub.kill(holder if killed == "in its turn" else waiter)
    after = [hub.spawn(lane.pause) for _ in range(3)]
    with hub.Timeout(10):
        for thread in after + ([waiter] if killed == "in its turn" else [holder]):
            thread.wait()
