"""REST reads and scrapes that count a switch's flows (GET /v1/switches and /v1/switches/{dpid}, GET
/v1/switches/{dpid}/flows, /metrics) pause with their own pacer, not the reconciler's: the reconciler's pacer pauses
through the reconcilers' lane (controller/app.py ``reconcile_lane``, controller/rest/lane.py), so a read that counted
through it queued behind the switches' plans and read-backs (review42b) and, with the lane held, never answered.

Here the lane is held the whole time by another green thread (a reconciler in its turn), and each read, in a green
thread of its own, must answer within a bounded number of the loop's turns (counted, not timed); its counts are the
book's, equal to those read once the lane is free again (the count is made on copies of the records)."""

from __future__ import annotations

import functools
import json
from types import SimpleNamespace

import pytest

from controller.app import CanopyApp
from controller.discovery import VrsSnapshot
from controller.pacer import Pacer
from controller.programmed import ProgrammedSeqs
from controller.programmer import Programmer
from controller.rest import dataplane as rest_dataplane
from controller.rest.lane import Lane
from controller.rest.wire import Request
from controller.ryu_compat import hub
from tests.unit.green import joined, spawned, turns, turns_until
from tests.unit.helpers import TOKEN, Controller
from tests.unit.probeturns import beside_probe, runs_between
from tests.unit.test_reconcile_pacing import OWNERS, change_of_many_owners, desired, give_way, reconciler

TURNS = 10_000  # turns of the loop a read may take (it takes a few hundred: a pause every 1,000 flows)
READS = ["switches", "switch", "flows", "metrics"]


@pytest.fixture
def world(tmp_path):
    """A controller whose switch (datapath 1) has every one of OWNERS owners changed (4 x OWNERS flows to add or
    delete: a count that pauses), its reconciler pausing through a lane; the app's ``_switch_status`` wired."""
    lane = Lane(give_way)
    rec, _ = reconciler()
    rec.pacer = Pacer(lane.pause, 200)
    change_of_many_owners(rec)
    ctl = Controller(tmp_path)
    ctl.state.vrs_update(VrsSnapshot(session="s1", chassis="hv1", hostname="hv1", peer="127.0.0.1:1", bridge="br-int",
                                     bridge_present=True, datapath_id=1, vtep_ip="192.0.2.10", flavour="kvm"))
    glue = SimpleNamespace(reconcilers={1: rec}, programmed=ProgrammedSeqs(lambda: 0, set),
                           _session_of=lambda dpid: "s1")
    ctl.api.switch_status = functools.partial(CanopyApp._switch_status, glue)
    ctl.api.pause = Lane(give_way).pause  # the REST lane: a lane of its own
    ctl.api.metrics.attach(reconcilers=lambda: {1: rec}, pause=give_way)
    routes = rest_dataplane.routes(ctl.state, Programmer(ctl.state), lambda: {1: rec}, ctl.api.pause)
    yield SimpleNamespace(ctl=ctl, rec=rec, lane=lane, flows=routes[1].handler)
    ctl.close()


def read(world, what) -> dict:
    """The pending flows the read reports for switch 1."""
    ctl = world.ctl
    if what == "metrics":
        body = ctl.api.metrics.exposition()[0].decode()
        line = next(line for line in body.splitlines()
                    if line.startswith("canopy_switch_flows{") and 'kind="pending"' in line)
        return {"pending": int(float(line.rsplit(" ", 1)[1]))}
    if what == "flows":
        return json.loads(world.flows(Request("GET", "/v1/switches/1/flows"), "0000000000000001").encoded())["status"]
    path = "/v1/switches" if what == "switches" else "/v1/switches/0000000000000001"
    resp = ctl.api.handle(Request("GET", path, {}, {"authorization": f"Bearer {TOKEN}"}, b"", "127.0.0.1"))
    assert resp.status == 200, resp.encoded()
    body = json.loads(resp.encoded())
    return (body["items"][0] if what == "switches" else body)["sync"]


@pytest.mark.parametrize("what", READS)
def test_a_read_answers_while_the_reconcilers_lane_is_held(world, what):
    world.rec._book._counted = None  # (each read counts afresh: the count is kept per state of the book)
    world.lane._turn.acquire()  # a reconciler in its turn, for as long as the read takes
    answer = []
    reader = spawned(lambda: answer.append(read(world, what)))
    try:
        turns_until(lambda: answer, reader, bound=TURNS,
                    what=f"{what}: an answer with the reconcilers' lane held")  # (a read that failed: its error)
        assert world.lane._turn.held == 1 and world.lane._turn.waiting == 0  # it never queued there
    finally:
        world.lane._turn.release()
        hub.kill(reader)
    assert answer[0]["pending"] == 4 * OWNERS
    world.rec._book._counted = None
    assert read(world, what)["pending"] == answer[0]["pending"]  # as counted once the lane is free


AT_ONCE = 4


@pytest.mark.parametrize("what", ["metrics", "switch"])
def test_reads_counting_together_take_one_count_stretch_a_turn_of_the_loop(world, monkeypatch, what):
    """Off the reconcilers' lane, a read's count still takes turns with the other reads' (review43d): else AT_ONCE
    scrapes, or GET /v1/switches/{dpid}, at once (reads need no token: 64 connections from one address) each held the
    loop for a count's stretch in every round, or for its first, AT_ONCE times what one lane allows. Counted: the
    flows counted between two turns of a probe thread, AT_ONCE reads counting the same 4 x OWNERS changed flows."""
    from controller import metrics as metrics_mod
    from controller.rest import api as api_mod
    marks = []

    class Marking(Pacer):  # the read's count pacer, marking the units it counts
        def tick(self, units=1):
            marks.append(units)
            super().tick(units)
    monkeypatch.setattr(metrics_mod, "paced", lambda pause, every, _budget: Marking(pause, every))
    monkeypatch.setattr(api_mod, "answer_pacer", lambda pause, every, _budget: Marking(pause, every))
    done = []

    def reader():
        world.rec._book._counted = None  # (each counts afresh, as reads that began before any count ended do)
        done.append(read(world, what)["pending"])

    beside_probe([reader] * AT_ONCE, marks)
    runs = runs_between(marks, weight=lambda units: units)
    assert done == [4 * OWNERS] * AT_ONCE
    assert sum(runs) >= AT_ONCE * 4 * OWNERS  # each counted the changed flows
    assert max(runs) <= metrics_mod.COUNT_EVERY + 10, max(runs)


def _plan_applied(book):
    book.applied(book.plan())


def _new_desired(book):
    book.set_desired(desired(salt=1, count=OWNERS // 2), changed=set(desired()))  # half the owners gone


def _read_back(book):
    book.read_back({})


@pytest.mark.parametrize("change", [_plan_applied, _new_desired, _read_back])
def test_a_count_the_reconciler_changes_the_records_under_is_that_of_the_book_when_it_began(change):
    """Off the lane, a read's count pauses while the reconciler changes its records (a plan applied, a new desired
    state, a read-back): the answer is the book's when the count began (it counts copies), and the next read counts
    the book as it is now (the count kept under the state it began with, not the new one)."""
    rec, _ = reconciler()
    change_of_many_owners(rec)
    counts = ("desired", "installed", "pending")
    before = {k: rec.status()[k] for k in counts}
    rec._book._counted = None
    got = []
    reader = spawned(lambda: got.append(rec.status(Pacer(give_way, 200).tick)))
    turns(2, reader)
    assert not got  # paused in its count
    change(rec._book)
    joined(reader)
    assert {k: got[0][k] for k in counts} == before
    now = {k: rec.status()[k] for k in counts}
    rec._book._counted = None
    assert now == {k: rec.status()[k] for k in counts} != before
