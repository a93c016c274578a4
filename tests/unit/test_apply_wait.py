"""``canopy apply --wait`` after a controller restart (controller/cli_status.py ``wait_programmed``).

After a restart the switches come back one by one, over OpenFlow and over OVSDB each in its own time (Open vSwitch's
back-off, up to 8 s), and the start-up hold hands none of them anything until those connected before have reported
(controller/startup_hold.py). A bridge back over OpenFlow only is not counted (no OVSDB session names it yet: it is
"waiting"), so a wait polled then counted no switch to wait for and returned 0 within a second, the switches not
programmed (walked in stop 49 with two hypervisors whose managers came back 6 s after OpenFlow)."""

from __future__ import annotations

import io

from controller import cli
from controller.cli_status import wait_programmed

HOLDING = {"startup_hold": {"state": "syncing", "message": "waiting for 2 of 2 switches"}}
RELEASED = {"startup_hold": {"state": "synced", "message": "all 2 switches connected before have reported"}}


def bare(dpid, installed):
    """A bridge connected over OpenFlow that no OVSDB session names (yet): read back, handed nothing."""
    return {"datapath_id": dpid, "chassis": None, "ovsdb": None,
            "sync": {"state": "waiting", "installed": installed, "desired": 0, "pending": 0}}


def vrs(chassis, dpid, state, pending):
    return {"datapath_id": dpid, "chassis": chassis, "ovsdb": {"connected": True},
            "sync": {"state": state, "pending": pending} if state else None}


class Restarted:
    """The controller's answers, one (/v1/status, /v1/switches) a poll, the last repeated."""

    def __init__(self, polls):
        self.polls, self.status = list(polls), None

    def __call__(self, path="/v1/switches"):
        if path == "/v1/status" or self.status is None:
            self.status, self.switches = self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]
        if path == "/v1/status":
            return 200, self.status
        switches, self.status = self.switches, None
        return 200, {"items": switches}


def waited(fetch, timeout=60):
    out, ticks = io.StringIO(), iter(range(10_000))
    code = wait_programmed(fetch, timeout, clock=lambda: next(ticks), sleep=lambda s: None, out=out)
    return code, out.getvalue().splitlines()


def test_apply_wait_after_a_restart_waits_for_the_hold_and_the_switches_it_names():
    both_bare = [bare("a", 65), bare("b", 42)]
    fetch = Restarted([(HOLDING, []), (HOLDING, both_bare), (HOLDING, both_bare), (HOLDING, both_bare),
                       (RELEASED, [vrs("hv1", "a", "syncing", 3), vrs("hv2", "b", "waiting", 0)]),
                       (RELEASED, [vrs("hv1", "a", "in_sync", 0), vrs("hv2", "b", "in_sync", 0)])])
    code, lines = waited(fetch)
    assert code == 0
    assert lines == ["canopy: programming switches: held after the start (waiting for 2 of 2 switches)",
                     "canopy: programming switches: 0/2 in sync, 3 flow(s) pending",
                     "canopy: programming switches: 2/2 in sync, 0 flow(s) pending"]


def test_apply_wait_counts_a_vrs_not_connected_over_openflow_as_not_programmed():
    """Its OVSDB session back before its OpenFlow connection (the hold ends on OVSDB reports): not in sync."""
    code, lines = waited(Restarted([(RELEASED, [vrs("hv1", "a", "in_sync", 0), vrs("hv2", None, None, 0),
                                                bare("c", 0), bare("d", 0)])]), timeout=10)
    assert code == cli.EXIT_TIMEOUT
    assert lines[0] == ("canopy: programming switches: 1/2 in sync, 0 flow(s) pending, 1 not connected over OpenFlow "
                        "(2 bridges over OpenFlow only not counted: no OVSDB session names them)")


def test_apply_wait_does_not_take_a_refused_listing_for_no_switch_to_wait_for():
    """/v1/switches answered 503 (the REST server at its connection limit, or stopping) has no items: that is no
    answer, not "0/0 in sync" (it returned 0)."""
    answers = iter([(503, {"error": {"code": "unavailable", "message": "too many connections"}}),
                    (200, {"items": [vrs("hv1", "a", "in_sync", 0)]})])
    listing = next(answers)

    def fetch(path="/v1/switches"):
        nonlocal listing
        if path == "/v1/status":
            return 200, RELEASED
        got, listing = listing, next(answers, listing)
        return got

    code, lines = waited(fetch)
    assert code == 0
    assert lines == ["canopy: programming switches: GET /v1/switches answered 503 (too many connections)",
                     "canopy: programming switches: 1/1 in sync, 0 flow(s) pending"]
