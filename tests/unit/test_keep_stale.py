"""A new, empty store deletes nothing (docs/store.md): the switch reconciler keeps what Canopy would delete
(``keep_stale``), and its status, ``/v1/switches`` and ``/metrics`` count those flows as kept, not pending. Before,
a switch holding kept flows was in sync but showed them pending, as if it were behind."""

from __future__ import annotations

import json
from types import SimpleNamespace

from controller.derive import View
from controller.rest import dataplane as rest_dataplane
from controller.rest.api import Api
from controller.rest.wire import Request
from openflow.flows import Group

from .test_operate import samples, scrape
from .test_reconcile_pacing import flows_of, owner, reconciler
from .helpers import Controller

OWNERS, STALE = 3, 2  # owners desired (two flows each); owners read back that nothing wants any more


def kept_in_sync():
    """A reconciler with keep_stale on after a read-back of its owners' flows and STALE owners' more, synced."""
    rec, switch = reconciler()
    rec.keep_stale(True)
    rec._need_read = False  # keep_stale(True) asks no read-back: as after the first
    held = {f.key: f for i in range(OWNERS + STALE) for f in flows_of(i)}
    rec.set_desired_owners({owner(i): flows_of(i) for i in range(OWNERS)}, [Group(7, ())])
    rec._book.read_back(held)
    rec._sync()
    return rec, switch


def test_kept_flows_are_not_pending_in_the_status():
    rec, _ = kept_in_sync()
    assert rec._book.loose.keys() == {f.key for i in range(OWNERS, OWNERS + STALE) for f in flows_of(i)}  # kept
    assert rec._sync() is False  # nothing more to send: the switch is as Canopy leaves it
    status = rec.status()
    assert (status["desired"], status["installed"], status["pending"]) == (2 * OWNERS, 2 * (OWNERS + STALE), 0)
    assert status.get("kept") == 2 * STALE
    rec.keep_stale(False)  # the first policy change: they are to be removed now
    status = rec.status()
    assert (status["pending"], status.get("kept")) == (2 * STALE, 0)


def test_rest_and_metrics_show_kept_flows_as_kept(tmp_path):
    rec, _ = kept_in_sync()
    ctl = Controller(tmp_path)
    try:
        ctl.api.switch_status = lambda dpid, tick: rec.status(tick)
        sync = ctl.api._with_sync({"datapath_id": f"{1:016x}"})["sync"]
        assert (sync["pending"], sync.get("kept")) == (0, 2 * STALE)
        ctl.api.metrics.attach(reconcilers=lambda: {1: rec})
        got = samples(scrape(ctl.api))
        labels = {("datapath", f"{1:016x}"), ("chassis", "")}
        assert got[("canopy_switch_flows", frozenset(labels | {("kind", "pending")}))] == 0
        assert got.get(("canopy_switch_flows", frozenset(labels | {("kind", "kept")}))) == 2 * STALE
    finally:
        ctl.close()


def test_the_flow_listing_shows_kept_flows_as_kept_and_the_switch_in_sync(tmp_path):
    """GET /v1/switches/{dpid}/flows agrees with the status (docs/store.md): kept flows are listed ``kept`` and are
    no reason for ``in_sync: false`` (was: false while any were kept); once keep_stale ends they are stale again."""
    rec, _ = kept_in_sync()
    ctl = Controller(tmp_path)
    try:
        def listing():
            programmer = SimpleNamespace(view=View(), desired={})
            api = Api(ctl.service, ctl.state, ctl.settings,
                      extra_routes=rest_dataplane.routes(ctl.state, programmer, lambda: {1: rec}))
            resp = api.handle(Request("GET", f"/v1/switches/{1:016x}/flows", {}, {}, b"", "127.0.0.1"))
            assert resp.status == 200, resp.encoded()
            return json.loads(resp.encoded())

        body = listing()
        kept = [f for f in body["flows"] if f["kept"]]
        assert body["in_sync"] is True and len(body["flows"]) == 2 * (OWNERS + STALE)
        assert len(kept) == 2 * STALE and all(f["installed"] and not f["desired"] for f in kept)
        rec.keep_stale(False)  # the first policy change: they are to be removed now, not yet removed
        body = listing()
        assert body["in_sync"] is False and not any(f["kept"] for f in body["flows"])
    finally:
        ctl.close()
