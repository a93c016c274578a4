"""Many switch reconcilers planning at once (a cold start: 50 switches read back and synced together) pause through one
lane (controller/app.py ``reconcile_lane``, controller/rest/lane.py): between two turns of another green thread (the
lag probe, an OVSDB probe, an HA heartbeat) the event loop runs one reconciler's stretch, not one per switch.

Counted, not timed: the reconcilers' stretches (runs of ``every`` flows planned, one per pause) between two turns of
a probe. Each reconciler's pauses bound its own stretch; with a plain ``hub.sleep(0)`` a sleeping green thread woke
only after every ready reconciler had had its turn, so a round of the loop held one stretch per switch syncing (in
vrs_scale's cold start, 10-20 reconcilers' turns of ~10 ms of CPU each in the probe's late intervals)."""

from __future__ import annotations

import functools

import pytest

from controller.pacer import Pacer
from controller.rest.lane import Lane
from controller.ryu_compat import hub
from openflow.flows import Group
from tests.unit.forked import forked
from tests.unit.green import joined, spawned
from tests.unit.probeturns import beside_probe, runs_between
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

    beside_probe([functools.partial(plan, dpid) for dpid in range(SWITCHES)], marks)
    runs = stretch_runs(marks)
    return max(runs[1:]), runs[0], [plans[d] for d in range(SWITCHES)]


def stretch_runs(marks: list) -> list[int]:
    """How many pauses ended between two of the probe's turns (``PROBE`` in ``marks``, every other mark a pause),
    from the round in which the pausing threads began."""
    runs = runs_between(marks)
    return runs[next(i for i, n in enumerate(runs) if n):]


def test_reconcilers_planning_together_take_one_stretch_a_turn_and_plan_the_same():
    lane = Lane(lambda: hub.sleep(0))
    laned, laned_first, laned_plans = most_stretches_between_probe_turns(lane.pause)
    plain, plain_first, plain_plans = most_stretches_between_probe_turns(lambda: hub.sleep(0))
    assert plain == SWITCHES  # every reconciler's stretch in every round of the loop
    assert laned == 1  # one reconciler's stretch between two turns of the probe, whatever the number of switches
    assert laned_first == plain_first == SWITCHES  # (each one's first stretch, before it paused at all)
    assert lane.queued >= SWITCHES - 1
    assert laned_plans == plain_plans and len(laned_plans[0]) > 10 * EVERY  # the same change sets, many stretches


def _app_lanes(data) -> str:
    """The app as ryu-manager builds it (``CanopyApp()``, a reconciler per switch ``_adopt`` makes, OVSDB sessions as
    its server holds them): a line of its pacers, then the most pauses ended between two of a probe's turns for the
    reconcilers, the sessions and both. Run in a forked child on a hub of its own (tests/unit/forked.py): the settings
    and the class it sets are the child's alone."""
    from types import SimpleNamespace

    from controller import app, runtime, settings
    from controller.yamldoc import Doc
    from ovsdb.server import PeerSession

    runtime.SETTINGS = settings.from_doc(Doc("<t>", {"data_dir": str(data)}))
    made = {}

    class Rec:  # the reconciler's pacer kept; it never starts
        def __init__(self, dp, pacer=None, **kw):
            made[dp.id] = pacer
        keep_stale = hold = lambda self, on: None
        start = stop = lambda self: None

    app.SwitchReconciler = Rec
    canopy = app.CanopyApp()  # wired as ryu-manager builds the app
    for dpid in range(1, SWITCHES + 1):
        canopy._adopt(SimpleNamespace(id=dpid, address=("127.0.0.1", 40000 + dpid), is_active=True))
    sessions = []
    for index in range(SWITCHES):  # OVSDB sessions as the app's server holds them (their _give_way)
        session = PeerSession.__new__(PeerSession)
        session._server, session.name, session._conn = canopy.ovsdb, "ovsdb:%d" % index, None
        sessions.append(session)
    pacers = [made[dpid] for dpid in sorted(made)]
    every = {p.every for p in pacers} == {app.RECONCILE_EVERY}
    reconcilers, ovsdb = [p.pause for p in pacers], [s._give_way for s in sessions]
    return "\n".join([f"pacers {len(made)} {len({id(p) for p in pacers})} {every}",
                      f"reconcilers {_most_between(reconcilers)}", f"sessions {_most_between(ovsdb)}",
                      f"both {_most_between(reconcilers + ovsdb)}"])


def _most_between(pauses, turns: int = 5) -> int:
    """Each pause called ``turns`` times by a green thread of its own, a probe taking a turn whenever it can: the most
    pauses ended between two of the probe's turns once every thread has begun."""
    marks = []

    def work(index, pause):
        for _ in range(turns):
            marks.append(index)
            pause()

    beside_probe([functools.partial(work, index, pause) for index, pause in enumerate(pauses)], marks)
    return max(stretch_runs(marks)[1:])


def test_the_apps_reconcilers_and_ovsdb_sessions_pause_through_a_lane_each(tmp_path):
    """The app as ryu-manager builds it (controller/app.py): the reconcilers ``_adopt`` makes (a pacer each, every
    RECONCILE_EVERY flows) pause through one lane, the OVSDB sessions (``PeerSession._give_way``, through the
    server's ``pause``) through one of their own. Counted: with ``SWITCHES`` of each pausing together, the most
    pauses ended between two turns of a probe: 1 for the reconcilers, 1 for the sessions, 2 for both together (a
    lane each, not one shared: an OVSDB probe's session does not wait behind the switches' plans). On main's wiring
    (``hub.sleep(0)`` for both) every one of them in every round: SWITCHES, SWITCHES, 2 * SWITCHES. Built in a child
    forked from this process, not a new interpreter (whose imports were the test's cost)."""
    import controller.app  # noqa: F401 - imported before the fork: the child builds the app at once

    data = tmp_path / "data"
    data.mkdir()
    done = forked(lambda: _app_lanes(data), own_hub=True)
    assert done.splitlines() == [f"pacers {SWITCHES} {SWITCHES} True", "reconcilers 1", "sessions 1", "both 2"]


def test_a_busy_lane_runs_a_stretch_every_round_not_every_other_round():
    """Serializing the switches' stretches must not also halve the pace: a reconciler queued for the lane has given
    the loop its turn by waiting (the turn handed to it wakes it in the next round), so it goes on at once. It used to
    sleep one more round with the turn in hand: SWITCHES x 20 stretches took twice as many rounds of the loop (a
    probe's turns: 241 for 120), every other round without a reconciler's stretch, and beside a busy programming pass
    or OVSDB session the reconcilers had a third of the CPU, not half. Counted: the probe's turns while they pause."""
    lane, turns = Lane(lambda: hub.sleep(0)), []

    def work():
        for _ in range(20):
            lane.pause()

    beside_probe([work] * SWITCHES, turns)
    assert lane.queued >= SWITCHES * 19  # busy: nearly every pause waited behind another's
    assert len(turns) <= SWITCHES * 20 + 2  # a round per stretch (and the first round, and the probe's last turn)


@pytest.mark.parametrize("killed", ["in its turn", "waiting"])
def test_a_reconciler_stopped_at_its_pause_leaves_the_lane_to_the_others(killed):
    """A switch disconnecting kills its reconciler at a pause (openflow/reconciler.py ``stop``): in its turn of the
    lane or queued for it, it holds nothing after; the others go on (bounded: they must end within ``BOUND_TURNS``
    turns of the loop, and a pause that failed fails the test)."""
    lane = Lane(lambda: hub.sleep(0))
    holder = spawned(lane.pause)
    waiter = spawned(lane.pause)
    hub.sleep(0)  # holder in its turn (sleeping in give_way), waiter queued
    hub.kill(holder if killed == "in its turn" else waiter)
    after = [spawned(lane.pause) for _ in range(3)]
    joined(*after, waiter if killed == "in its turn" else holder)
