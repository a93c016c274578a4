"""Which policy seq a switch has programmed (controller/programmed.py): GET /v1/switches ``sync.programmed_seq``,
what ``canopy apply --wait`` compares with its apply's seq.

The chain: State takes a commit whole (``settled_seq``: not while its vports are still re-resolved), a successful pass
computes from it and hands it out (``ProgramLoop.handed_seq``), and a reconciler is ``settled`` only once a round
found the switch equal to everything handed to it."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace

from controller.app import CanopyApp
from controller.discovery import VrsSnapshot
from controller.programloop import ProgramLoop
from controller.programmed import ProgrammedSeqs
from controller.programmer import Programmer
from controller.rest.wire import Request
from controller.store import Change
from tests.unit.green import turns_until
from tests.unit.helpers import TOKEN, Controller
from tests.unit.test_compiler import add_vport, base_state, snapshot
from tests.unit.test_reconciler_waiting import started


def committed(state, seq, name, ip):
    """A vport put by a commit numbered ``seq`` (as the store numbers it)."""
    made = []
    state.policy_committed = lambda policy, changes: made.append(policy)  # (add_vport's policy, not committed)
    add_vport(state, "acme/web", name, "02:00:00:00:00:%02x" % seq, ip)
    del state.policy_committed
    vport = made[0].get("vport", name)
    state.policy_committed(made[0], [Change("vport", vport["id"], "put", vport, seq=seq)])


class Watching:
    """State's pacer: what ``settled_seq`` was at each pause of the commit being taken."""

    def __init__(self, state):
        self.state, self.seen = state, []

    def tick(self, units=1):
        self.seen.append((self.state.last_seq, self.state.settled_seq))


def test_a_commit_is_settled_only_once_its_vports_are_re_resolved():
    state = base_state()
    committed(state, 3, "vm1", "10.0.1.11")
    assert state.settled_seq == state.last_seq == 3
    state.pacer = watching = Watching(state)
    committed(state, 4, "vm2", "10.0.1.12")
    assert (4, 3) in watching.seen  # in the relocation's pauses: taken, not settled (a pass then has part of it)
    assert state.settled_seq == 4


def world():
    state = base_state()
    add_vport(state, "acme/web", "vm1", "02:00:00:00:00:01", "10.0.1.11")
    state.vrs_update(snapshot("s1", "10.251.0.1", [("vm1", 1)]))
    programmer = Programmer(state)
    handed = []
    loop = ProgramLoop(programmer, threading.Event(), handed.append, sleep=lambda s: None)
    return state, programmer, loop, handed


def test_a_pass_hands_out_the_seq_it_computed_from_and_a_failed_pass_none():
    state, programmer, loop, handed = world()
    assert loop.attempt() and loop.handed_seq == 0 and loop.status()["handed_seq"] == 0
    committed(state, 5, "vm2", "10.0.1.12")
    assert loop.attempt() and loop.handed_seq == 5 == programmer.revision
    real = programmer.live.apply
    programmer.live.apply = programmer.live.build = lambda *a: (_ for _ in ()).throw(ValueError("broken"))
    committed(state, 6, "vm3", "10.0.1.13")
    assert loop.attempt() is False and loop.handed_seq == 5  # nothing of seq 6 was handed out
    programmer.live.apply = real
    del programmer.live.build  # (the class's again)
    assert loop.attempt() and loop.handed_seq == 6


def test_a_reconciler_is_settled_only_once_a_round_found_the_switch_equal_to_all_it_was_handed():
    rec = started()
    try:
        turns_until(lambda: rec.state == "waiting", rec._thread, what="the read-back")
        assert not rec.settled  # handed nothing yet
        rec.set_desired_owners({}, [])
        assert not rec.settled
        turns_until(lambda: rec.settled, rec._thread, what="in sync with nothing desired")
        rec.set_desired_owners({}, [], set())  # handed again: in_sync still, but not known equal to it yet
        assert rec.state == "in_sync" and not rec.settled
        turns_until(lambda: rec.settled, rec._thread, what="settled again")
    finally:
        rec.stop()


class Rec:
    settled = False


def test_programmed_seq_is_the_handed_seq_when_settled_and_remembered_while_busy():
    handed, withheld = [4], set()
    seqs = ProgrammedSeqs(lambda: handed[0], lambda: withheld)
    rec = Rec()
    assert seqs.of_switch(rec, "s1") is None  # nothing known on this connection
    rec.settled = True
    assert seqs.of_switch(rec, "s1") == 4
    handed[0], rec.settled = 5, False  # busy with seq 5's change: still holds 4
    assert seqs.of_switch(rec, "s1") == 4
    rec.settled, withheld = True, {"s1"}  # its desired state withheld (State is reading it): not seq 5's
    seqs._withheld = lambda: withheld
    assert seqs.of_switch(rec, "s1") == 4
    withheld.clear()
    assert seqs.of_switch(rec, "s1") == 5
    assert seqs.of_switch(Rec(), "s1") is None  # a new connection (read back again) knows nothing yet


def test_a_pass_in_a_commits_relocation_is_followed_by_one_that_hands_out_its_seq():
    """A pass that ran in the relocation's pauses computed from the seq before the commit; once it is settled State
    says so ("settled"), and the pass that follows hands out its seq, even with nothing left to compile (it hung at
    the seq before: the wait ran into its timeout)."""
    state, programmer, loop, handed = world()
    assert loop.attempt()
    kinds = []
    state.subscribe(lambda what, detail: kinds.append(what))

    class PassInPause:
        def tick(self, units=1):
            loop.attempt()

    state.pacer = PassInPause()
    committed(state, 8, "vm2", "10.0.1.12")
    assert loop.handed_seq == 0 and kinds[-1] == "settled"
    state.pacer = Watching(state)
    assert loop.attempt() and loop.handed_seq == 8


def test_get_v1_switches_says_the_seq_a_switch_holds(tmp_path):
    """The app's ``_switch_status`` (what GET /v1/switches ``sync`` is made of) adds ``programmed_seq``."""
    class Settled(Rec):
        settled = True

        def status(self, tick=None):
            return {"state": "in_sync", "desired": 3, "installed": 3, "pending": 0}

    ctl = Controller(tmp_path)
    ctl.state.vrs_update(VrsSnapshot(session="s1", chassis="hv1", hostname="hv1", peer="127.0.0.1:1", bridge="br-int",
                                     bridge_present=True, datapath_id=1, vtep_ip="192.0.2.10", flavour="kvm"))
    glue = SimpleNamespace(reconcilers={1: Settled()}, programmed=ProgrammedSeqs(lambda: 12, set),
                           _session_of=lambda dpid: "s1")
    ctl.api.switch_status = lambda dpid, tick: CanopyApp._switch_status(glue, dpid, tick)
    resp = ctl.api.handle(Request("GET", "/v1/switches", {}, {"authorization": f"Bearer {TOKEN}"}, b"", "127.0.0.1"))
    assert resp.status == 200
    assert json.loads(resp.encoded())["items"][0]["sync"]["programmed_seq"] == 12
    ctl.close()


def test_a_switch_withheld_by_the_pass_before_holds_no_seq_of_it_while_the_hand_out_reaches_it():
    """A switch whose report State was still taking (back after its grace, OpenFlow kept) was withheld from the pass
    of seq 5; its reconciler stays in sync with what it had before. The next pass releases it (Programmer.due) and
    hands the switches out one by one, pausing between them: until its turn it holds nothing of seq 5 (on main it was
    said to hold seq 5 in those pauses: ``due`` had dropped it from ``withheld`` before it was handed anything)."""
    from tests.unit.test_partial_report_withheld import _glue

    state = base_state()
    add_vport(state, "acme/web", "vm1", "02:00:00:00:00:01", "10.0.1.11")
    state.vrs_update(snapshot("s1", "10.251.0.1", [("vm1", 1)]))
    programmer = Programmer(state)
    programmer.refresh(full=True)
    glue = _glue(state, programmer)

    class Held(Rec):
        settled = True  # in sync with what it was handed before seq 5

        def set_desired_owners(self, flows, groups, changed):
            self.settled = False  # (a round finds it equal later)

    rec = glue.reconcilers[1] = Held()
    handed = [5]
    seqs = ProgrammedSeqs(lambda: handed[0], lambda: programmer.withheld)
    programmer.partial = frozenset({"s1"})
    glue.hand_out({"s1"})  # the pass of seq 5: s1 withheld
    assert seqs.of_switch(rec, "s1") is None
    programmer.partial = frozenset()
    seen = []
    glue.routes.hand_out = lambda: seen.append(seqs.of_switch(rec, "s1"))  # a pause of the next hand-out, s1's turn
    glue.hand_out(set())  # still to come
    assert seen == [None]
    assert programmer.withheld == set()
    rec.settled = True
    assert seqs.of_switch(rec, "s1") == 5  # handed seq 5's state (or newer) and found equal to it


def test_the_waits_poll_of_the_switches_does_not_look_at_their_ports(tmp_path):
    """``canopy apply --wait`` polls GET /v1/switches?ports=false twice a second: each switch without its ports, the
    answer's work the same whatever number of ports the switches have (each poll described every port before)."""
    from controller.cli_wait import SWITCHES
    from tests.bytecodes import opcodes

    ctl = Controller(tmp_path)
    path, _, query = SWITCHES.partition("?")
    ask = Request("GET", path, dict([query.split("=")]), {"authorization": f"Bearer {TOKEN}"}, b"", "127.0.0.1")
    costs = []
    for count in (10, 1000):
        ctl.state.vrs_update(snapshot("s1", "10.251.0.1", [(f"vm{i}", i + 1) for i in range(count)]))
        resp = ctl.api.handle(ask)
        assert resp.status == 200
        item = json.loads(resp.encoded())["items"][0]
        assert item["chassis"] == "s1" and item["ports"] is None
        costs.append(opcodes(lambda: ctl.api.handle(ask).encoded()))
    full = ctl.api.handle(Request("GET", path, {}, {"authorization": f"Bearer {TOKEN}"}, b"", "127.0.0.1"))
    assert len(json.loads(full.encoded())["items"][0]["ports"]) == 1001  # (and the vxlan port) without the parameter
    ctl.close()
    assert costs[1] - costs[0] < 100, costs  # (not 0: the answer's pacer may pause by the clock under load; each
    # port described was ~50)
