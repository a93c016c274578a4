"""REST listers pace by the wall clock too where the controller gives its REST answers a budget (controller/app.py,
controller/rest/lane.py ``answer_pacer``). Counted, not timed: the clock is the bytecodes run at a quarter of a CPU
(tests/unit/test_paced_wiring.py ``Stretches``), as for the reconcilers', the applier's and a scrape's pacers."""

from __future__ import annotations

import json

import pytest

from controller.pacer import BUDGET, BoundedPacer, Pacer
from controller.rest import lane as lane_module
from controller.rest.api import LIST_EVERY
from controller.rest.lane import Lane, answer_pacer
from controller.rest.wire import Request
from tests.unit.helpers import TOKEN, Controller
from tests.unit.test_paced_wiring import LOADED_BUDGET, Stretches

VPORTS = 600  # more than LIST_EVERY: the count alone pauses once a listing's views


@pytest.fixture(scope="module")
def ctl(tmp_path_factory):
    c = Controller(tmp_path_factory.mktemp("budget"))
    ports = [{"name": f"v{i}", "mac": "02:00:00:00:%02x:%02x" % (i // 256, i % 256),
              "ips": ["10.0.%d.%d" % (i // 250, i % 250 + 2)], "binding": {"flavour": "kvm"}} for i in range(VPORTS)]
    doc = {"tenants": [{"name": "acme", "domains": [{"name": "prod", "subnets": [
        {"name": "web", "cidr": "10.0.0.0/16", "gateway": "10.0.255.1", "vports": ports}]}]}]}
    status, reply = c.call("POST", "/v1/apply", {"document": doc})
    assert status == 200, reply
    yield c
    c.close()


def _listing(ctl, budget, monkeypatch) -> int:
    """The longest stretch of ``GET /v1/vports`` (its views made, then encoded as the REST server does) through a
    lane, answers given ``budget``."""
    stretches = Stretches()
    made = lane_module.BoundedPacer
    monkeypatch.setattr(lane_module, "BoundedPacer", lambda *args, **kw: stretches.bind(made(*args, **kw)))
    ctl.api.pause, ctl.api.budget = Lane(stretches.pause).pause, budget
    request = Request("GET", "/v1/vports", {}, {"authorization": f"Bearer {TOKEN}"}, b"", "127.0.0.1")
    try:
        answers = []
        longest = stretches.run(lambda: answers.append(ctl.api.encoded(ctl.api.handle(request))))
    finally:
        ctl.api.pause, ctl.api.budget = None, None
    assert json.loads(answers[0])["count"] == VPORTS
    return longest


def test_a_listing_pauses_within_the_budget_at_the_loops_share(ctl, monkeypatch):
    """600 vports listed: by the count, LIST_EVERY views a stretch, and their encoding ANSWER_EVERY (1,000) views
    a stretch, 600 here: 1,851,073 bytecodes (370 ms at a quarter of a CPU); through a lane with the app's budget,
    58,347: the budget and the rest of a tick's chunk (LIST_CHUNK views) or run (rest/paced.py ``TEXT`` characters
    encoded). Before stop 46: 593,094 (the clock read every 125 views, a run of 100 views encoded at once)."""
    before, after = _listing(ctl, None, monkeypatch), _listing(ctl, BUDGET, monkeypatch)
    assert before > 10 * LOADED_BUDGET, before
    assert after < 2 * LOADED_BUDGET, (before, after)


def test_an_answer_pacer_is_bounded_only_when_given_a_budget_and_a_pause():
    bounded = answer_pacer(Lane(lambda: None).pause, LIST_EVERY, BUDGET)
    assert isinstance(bounded, BoundedPacer) and (bounded.budget, bounded.every, bounded.step) == (BUDGET, LIST_EVERY, 1)
    assert type(answer_pacer(Lane(lambda: None).pause, LIST_EVERY)) is Pacer
    assert type(answer_pacer(lambda: None, LIST_EVERY)) is Pacer
    assert type(answer_pacer(None, LIST_EVERY, BUDGET)) is Pacer
