"""``canopy apply --wait`` (controller/cli_wait.py ``wait_programmed``): it waits until every switch an OVSDB session
names holds the policy seq the apply answered (GET /v1/switches ``sync.programmed_seq``).

Before stop 50 it waited for two polls in a row with every switch in sync and nothing pending: a switch still in sync
with its old state when the pass had not handed it the change yet counted as programmed, and the wait returned 0
before the apply's flows were on the switch. After a restart the switches come back one by one, and the start-up hold
hands none of them anything until those connected before have reported (controller/startup_hold.py); a bridge back over
OpenFlow only is not counted (no OVSDB session names it: it is "waiting")."""

from __future__ import annotations

import io

from controller import cli
from controller.cli_wait import SWITCHES, wait_programmed

HOLDING = {"startup_hold": {"state": "syncing", "message": "waiting for 2 of 2 switches"}}
RELEASED = {"startup_hold": {"state": "synced", "message": "all 2 switches connected before have reported"}}


def bare(dpid, installed):
    """A bridge connected over OpenFlow that no OVSDB session names (yet): read back, handed nothing."""
    return {"datapath_id": dpid, "chassis": None, "ovsdb": None,
            "sync": {"state": "waiting", "installed": installed, "desired": 0, "pending": 0, "programmed_seq": None}}


def vrs(chassis, dpid, state, pending, programmed=None, rejected=0):
    sync = {"state": state, "pending": pending, "programmed_seq": programmed, "rejected": rejected}
    return {"datapath_id": dpid, "chassis": chassis, "ovsdb": {"connected": True}, "sync": sync if state else None}


class Answers:
    """The controller's answers, one (/v1/status, /v1/switches[, /v1/vteps]) a poll, the last repeated; a status None:
    not reached."""

    def __init__(self, polls):
        self.polls, self.now = list(polls), None

    def __call__(self, path):
        if path == "/v1/status":
            self.now = self.polls.pop(0) if len(self.polls) > 1 else self.polls[0]
        status, switches, vteps = (*self.now, [])[:3]
        if status is None:
            return None, None
        return 200, status if path == "/v1/status" else {"items": switches if path == SWITCHES else vteps}


def waited(fetch, seq=7, timeout=60):
    out, ticks = io.StringIO(), iter(range(10_000))
    code = wait_programmed(fetch, timeout, seq, clock=lambda: next(ticks), sleep=lambda s: None, out=out)
    return code, out.getvalue().splitlines()


def test_a_switch_in_sync_with_its_old_state_is_not_taken_for_programmed():
    """The fault of stop 49: in sync, nothing pending, at any number of polls, but holding seq 6 of the apply's 7."""
    old = [vrs("hv1", "a", "in_sync", 0, 6), vrs("hv2", "b", "in_sync", 0, 7)]
    code, lines = waited(Answers([(RELEASED, old)] * 5 + [(RELEASED, [vrs("hv1", "a", "syncing", 12, 6),
                                                                       vrs("hv2", "b", "in_sync", 0, 7)]),
                                                          (RELEASED, [vrs("hv1", "a", "in_sync", 0, 7),
                                                                      vrs("hv2", "b", "in_sync", 0, 7)])]))
    assert code == 0
    assert lines == ["canopy: programming seq 7: 1/2 switch(es) hold it; hv1: still programming (holds seq 6)",
                     "canopy: programming seq 7: 1/2 switch(es) hold it; hv1: still programming (holds seq 6, 12 "
                     "flow(s) pending)",
                     "canopy: programming seq 7: 2/2 switch(es) hold it"]


def test_switches_holding_the_seq_or_a_newer_one_end_the_wait_at_the_first_poll():
    """An apply that changed nothing answers the seq the controller holds: programmed already, it returns at once."""
    code, lines = waited(Answers([(RELEASED, [vrs("hv1", "a", "in_sync", 0, 7), vrs("hv2", "b", "syncing", 9, 8)])]))
    assert code == 0 and lines == ["canopy: programming seq 7: 2/2 switch(es) hold it"]


def test_after_a_restart_it_waits_for_the_hold_and_the_switches_it_names():
    both_bare = [bare("a", 65), bare("b", 42)]
    fetch = Answers([(None, None), (HOLDING, []), (HOLDING, both_bare), (HOLDING, both_bare),
                     (RELEASED, [vrs("hv1", "a", "syncing", 3), vrs("hv2", "b", "waiting", 0)]),
                     (RELEASED, [vrs("hv1", "a", "in_sync", 0, 7), vrs("hv2", "b", "in_sync", 0, 7)])])
    code, lines = waited(fetch)
    assert code == 0
    assert lines == ["canopy: programming seq 7: the controller cannot be reached (restarting?): asking again",
                     "canopy: programming seq 7: held after the start (waiting for 2 of 2 switches)",
                     "canopy: programming seq 7: 0/2 switch(es) hold it; hv1: still programming (holds no seq yet on "
                     "this connection, 3 flow(s) pending); hv2: given no desired state yet (its OVSDB report is still "
                     "being taken) (holds no seq yet on this connection)",
                     "canopy: programming seq 7: 2/2 switch(es) hold it"]


def test_a_vrs_not_connected_over_openflow_is_waited_for_and_named_at_the_timeout():
    """Its OVSDB session is there, its OpenFlow connection not: it cannot be programmed, and is waited for (it may
    connect during the wait) until --wait-timeout, which names it. Bridges over OpenFlow only are not counted."""
    code, lines = waited(Answers([(RELEASED, [vrs("hv1", "a", "in_sync", 0, 7), vrs("hv2", None, None, 0),
                                              bare("c", 0), bare("d", 0)])]), timeout=10)
    assert code == cli.EXIT_TIMEOUT
    assert lines == ["canopy: programming seq 7: 1/2 switch(es) hold it; hv2: not connected over OpenFlow (it cannot "
                     "be programmed until it connects) (2 bridges over OpenFlow only not counted: no OVSDB session "
                     "names them)",
                     "canopy: gave up after 10 s: programming seq 7: 1/2 switch(es) hold it; hv2: not connected over "
                     "OpenFlow (it cannot be programmed until it connects) (2 bridges over OpenFlow only not counted: "
                     "no OVSDB session names them)"]


def test_a_switch_connecting_during_the_wait_is_waited_for():
    code, lines = waited(Answers([(RELEASED, [vrs("hv1", "a", "in_sync", 0, 7)]),
                                  (RELEASED, [vrs("hv1", "a", "in_sync", 0, 7), vrs("hv2", "b", "reading", 0)]),
                                  (RELEASED, [vrs("hv1", "a", "in_sync", 0, 7), vrs("hv2", "b", "in_sync", 0, 7)])]))
    assert code == 0  # the first poll ended it: hv2 was not there yet
    assert lines == ["canopy: programming seq 7: 1/1 switch(es) hold it"]


def test_the_timeout_names_every_switch_behind_and_why():
    names = [f"hv{n}" for n in range(6)]
    states = ["syncing", "not_master", "standby", "error", "reading", "connected"]
    code, lines = waited(Answers([(RELEASED, [vrs(n, n, s, 1 if s == "syncing" else 0, 5)
                                              for n, s in zip(names, states)])]), timeout=3)
    assert code == cli.EXIT_TIMEOUT
    assert lines[0].endswith("; 2 more behind")
    assert lines[-1] == (
        "canopy: gave up after 3 s: programming seq 7: 0/6 switch(es) hold it; hv0: still programming (holds seq 5, "
        "1 flow(s) pending); hv1: refused: the switch says this controller is not its master (holds seq 5); hv2: held: "
        "this controller is not the active one (holds seq 5); hv3: a round failed (it is read back again) (holds seq "
        "5); hv4: being read back (holds seq 5); hv5: connected, not read back yet (holds seq 5)")


def test_flows_refused_end_the_wait_at_once_when_nothing_else_is_behind():
    code, lines = waited(Answers([(RELEASED, [vrs("hv1", "a", "in_sync", 0, 7, rejected=2)])]))
    assert code == cli.EXIT_TIMEOUT
    assert lines[-1] == ("canopy: programming seq 7: 0/1 switch(es) hold it; hv1: holds seq 7 but refused 2 flow(s): "
                         "refused flows are not sent again until the desired state changes (GET "
                         "/v1/switches/DPID/flows names the errors)")


def test_the_standby_an_older_store_and_failing_passes_are_said():
    synced = [vrs("hv1", "a", "in_sync", 0, 7)]
    for status, said in (({"role": "standby"}, "the controller answering is the HA standby"),
                         ({"seq": 5}, "the controller answering holds policy up to seq 5 only")):
        code, lines = waited(Answers([({**RELEASED, **status}, synced)]), timeout=2)
        assert code == cli.EXIT_TIMEOUT and said in lines[0], lines
    failing = {**RELEASED, "programming": {"state": "degraded", "reason": "KeyError: 'x'"}}
    code, lines = waited(Answers([(failing, [vrs("hv1", "a", "in_sync", 0, 6)])]), timeout=2)
    assert code == cli.EXIT_TIMEOUT and lines[0].endswith("; programming passes fail (KeyError: 'x'): the switches "
                                                          "keep their last good state"), lines
    assert waited(Answers([(failing, synced)]))[0] == 0  # a later change failing: this one is programmed


def test_unreachable_at_the_deadline_is_exit_3():
    code, lines = waited(Answers([(RELEASED, [vrs("hv1", "a", "syncing", 4, 6)]), (None, None)]), timeout=3)
    assert code == cli.EXIT_UNREACHABLE
    assert lines[-1] == "canopy: gave up after 3 s: the controller cannot be reached"


def test_a_refused_listing_is_no_answer_not_no_switch_to_wait_for():
    """/v1/switches answered 503 (the REST server at its connection limit, or stopping) has no items: that is no
    answer, not "0/0"."""
    answers = iter([(503, {"error": {"code": "unavailable", "message": "too many connections"}}),
                    (200, {"items": [vrs("hv1", "a", "in_sync", 0, 7)]})])
    listing = next(answers)

    def fetch(path):
        nonlocal listing
        if path != SWITCHES:
            return 200, RELEASED if path == "/v1/status" else {"items": []}
        got, listing = listing, next(answers, listing)
        return got

    code, lines = waited(fetch)
    assert code == 0
    assert lines == ["canopy: programming seq 7: GET /v1/switches answered 503 (too many connections)",
                     "canopy: programming seq 7: 1/1 switch(es) hold it"]


def test_a_controller_older_than_programmed_seq_is_waited_for_as_before():
    """No ``programmed_seq`` in ``sync``: in sync with nothing pending counts as holding the seq."""
    old = {"chassis": "hv1", "sync": {"state": "in_sync", "pending": 0}}
    code, lines = waited(Answers([(RELEASED, [{"chassis": "hv1", "sync": {"state": "syncing", "pending": 3}}]),
                                  (RELEASED, [old])]))
    assert code == 0 and lines[-1] == "canopy: programming seq 7: 1/1 switch(es) hold it"


def vtep(name, programmed, connected=True):
    return {"name": name, "connected": connected, "programmed_seq": programmed}


def test_hardware_vteps_an_ovsdb_session_serves_are_waited_for():
    """A VTEP only bound in policy (not connected) is not counted; one connected is, until it holds the seq."""
    switches = [vrs("hv1", "a", "in_sync", 0, 7)]
    code, lines = waited(Answers([(RELEASED, switches, [vtep("tor1", 6), vtep("tor2", None, connected=False)]),
                                  (RELEASED, switches, [vtep("tor1", 7), vtep("tor2", None, connected=False)])]))
    assert code == 0
    assert lines == ["canopy: programming seq 7: 1/2 switch(es) hold it; hardware VTEP tor1: its rows are still being "
                     "written (holds seq 6; GET /v1/ovsdb/sessions: its state, conflicts and waits)",
                     "canopy: programming seq 7: 2/2 switch(es) hold it"]
    old = {"name": "tor1", "connected": True}  # a controller older than programmed_seq: not counted
    assert waited(Answers([(RELEASED, switches, [old])]))[0] == 0
