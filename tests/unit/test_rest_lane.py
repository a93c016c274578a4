"""Many clients asking for a big answer at once (controller/rest/lane.py): between two turns of another green thread
(the lag probe, an OVSDB probe, an HA heartbeat) the event loop computes one answer's stretch, not one per client.

Counted, not timed: the vport views built between two turns of a probe. Before the lane, 8 clients asking
``GET /v1/vports`` together built all 8 listings in one round of the loop (8 x 40 views), and with 60 clients and
3,000 vports a real controller's loop was held 2.5 s (docs/operations.md, "When a part fails")."""

from __future__ import annotations

import eventlet

from controller.rest.api import Request
from controller.rest.lane import Lane

from .helpers import Controller

VPORTS, CLIENTS = 40, 8


def controller_with_vports(tmp_path):
    ctl = Controller(tmp_path)
    ports = [{"name": f"v{i}", "mac": "02:00:00:00:%02x:%02x" % (i // 256, i % 256), "ips": [f"10.0.1.{i + 2}"],
              "binding": {"flavour": "kvm"}} for i in range(VPORTS)]
    doc = {"tenants": [{"name": "acme", "domains": [{"name": "prod", "subnets": [
        {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", "vports": ports}]}]}]}
    status, reply = ctl.call("POST", "/v1/apply", {"document": doc})
    assert status == 200, reply
    return ctl


def most_views_between_probe_turns(ctl, pause) -> int:
    """``CLIENTS`` green threads ask ``GET /v1/vports`` together, the Api pausing with ``pause``; a probe green thread
    takes a turn whenever it can. The most vport views built between two of its turns."""
    marks, done = [], []
    view = ctl.api._view
    ctl.api._view = lambda kind, obj: marks.append("view") or view(kind, obj)
    ctl.api.pause = pause

    def client():
        resp = ctl.api.handle(Request("GET", "/v1/vports", {}, {}, b"", "127.0.0.1"))
        assert resp.status == 200 and len(resp.body["items"]) == VPORTS
        ctl.api.encoded(resp)

    def probe():
        while len(done) < CLIENTS:
            marks.append("probe")
            eventlet.sleep(0)

    prober = eventlet.spawn(probe)
    eventlet.sleep(0)
    clients = [eventlet.spawn(lambda: client() or done.append(1)) for _ in range(CLIENTS)]
    for thread in clients + [prober]:
        thread.wait()
    between = "".join("p" if m == "probe" else "v" for m in marks).split("p")
    return max(len(run) for run in between)


def test_many_big_answers_at_once_are_computed_one_at_a_time(tmp_path):
    ctl = controller_with_vports(tmp_path)
    try:
        lane = Lane(lambda: eventlet.sleep(0))
        assert most_views_between_probe_turns(ctl, lane.pause) == VPORTS  # one listing's views per turn
        assert lane.queued >= CLIENTS - 1
        # a plain turn of the loop (what the REST pacers used before): every client's listing in one round
        assert most_views_between_probe_turns(ctl, lambda: eventlet.sleep(0)) == CLIENTS * VPORTS
    finally:
        ctl.close()


def test_a_request_that_never_pauses_never_queues(tmp_path):
    """GET /v1/status answers while big answers wait for their turn: it takes no turn of the lane."""
    ctl = Controller(tmp_path)
    try:
        lane = Lane(lambda: eventlet.sleep(0))
        ctl.api.pause = lane.pause
        holder = eventlet.spawn(lane.pause)  # an answer in its turn
        waiting = eventlet.spawn(lane.pause)  # another queued behind it
        eventlet.sleep(0)
        queued = lane.queued
        resp = ctl.api.handle(Request("GET", "/v1/status", {}, {}, b"", "127.0.0.1"))
        ctl.api.encoded(resp)
        assert resp.status == 200 and lane.queued == queued == 1
        holder.wait()
        waiting.wait()
    finally:
        ctl.close()
