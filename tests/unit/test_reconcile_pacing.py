"""A switch reconciler's big plan, read-back diff and encoding, and a switch's flows listing over REST, give other
green threads turns (openflow/reconciler.py "Pauses", issue 15): counted, never timed. What is sent is the same
bytes in the same order with and without pauses, and a plan is made from the desired state as it was when it
began, whatever arrives during its pauses."""

from __future__ import annotations

import itertools
import json
import logging
from types import SimpleNamespace

import pytest

from controller.pacer import Pacer
from controller.programmer import Programmer
from controller.rest import dataplane as rest_dataplane
from controller.rest.api import Api
from controller.rest.wire import Request, Response
from controller.rest.paced import paced_json
from controller.ryu_compat import hub, ofproto_protocol
from openflow import atonce, pipeline as p
from openflow.flows import Group, Owner, flow
from openflow.installed import CHUNK
from openflow.reconciler import MAX_REPLANS, SwitchReconciler
from tests.unit.green import joined, raise_failed, spawned, turns
from tests.unit.helpers import TOKEN, Controller

OWNERS = 2_000  # (past openflow/atonce.py SMALL_CHANGE_SET and many CHUNKs of a plan, a diff, a listing)


def owner(i):
    return Owner("vport", f"v{i}")


def flows_of(i, salt=0):
    mac = f"02:00:{salt:02x}:00:{i >> 8:02x}:{i & 0xff:02x}"
    return frozenset({flow(p.L2_LOOKUP, 100, {"reg5": 1, "eth_dst": mac}, [("goto", p.EGRESS_ACL)], owner(i)),
                      flow(p.L2_LOOKUP, 90, {"reg5": 2, "eth_dst": mac}, [("goto", p.EGRESS_ACL)], owner(i))})


class Switch:
    """A datapath that records the bytes written to it and answers every request at once (commit or barrier)."""

    def __init__(self, dpid=1):
        desc = ofproto_protocol.ProtocolDesc(5)
        self.id, self.ofproto, self.ofproto_parser, self.xid = dpid, desc.ofproto, desc.ofproto_parser, 0
        self.address = ("10.0.0.1", dpid)
        self.sent: list[bytes] = []
        self.rec = None

    def send(self, data):
        self.sent.append(data)
        for waiter in self.rec._waiters.values():
            waiter.event.set()

    def send_msg(self, msg):
        pass


def reconciler(pause=None, every=200):
    switch = Switch()
    rec = switch.rec = SwitchReconciler(switch, log=logging.getLogger("test.reconciler"),
                                        pacer=Pacer(pause, every) if pause else None)
    rec._need_read = False  # as after its first read-back: it may send
    return rec, switch


class Other:
    """A green thread that counts its turns while the test's work runs; ``act()`` once, on its first turn when
    ``when()`` holds."""

    def __init__(self, act=None, when=lambda: True):
        self.turns = 0
        self.act, self.when = act, when
        self.done = False
        self.thread = spawned(self._run)
        hub.sleep(0)  # it has had its first turn: it is waiting for the next one now
        self.turns = 0

    def _run(self):
        while not self.done:
            self.turns += 1
            if self.act is not None and self.when():
                self.act, act = None, self.act
                act()
            hub.sleep(0)

    def stop(self):
        """Ended; an error it met (in ``act``) raised here."""
        self.done = True
        hub.kill(self.thread)
        raise_failed([self.thread])


def give_way():
    hub.sleep(0)


def desired(salt=0, count=OWNERS):
    return {owner(i): flows_of(i, salt) for i in range(count)}


def change_of_many_owners(rec):
    """A switch in sync with OWNERS owners, then every owner changed: 2 * OWNERS adds and as many deletes."""
    rec.set_desired_owners(desired(), [Group(7, ())])
    rec._book.read_back({})
    rec._book.applied(rec._book.plan())
    rec._book.set_desired(desired(salt=1), changed=set(desired(salt=1)))


def read_back_of_many_flows(rec):
    """After a (re)connect: half of what is desired is held, plus stale flows: a full diff of 3 * 2 * OWNERS flows."""
    rec.set_desired_owners(desired(), [Group(7, ())])
    held = {f.key: f for i in range(0, OWNERS, 2) for f in flows_of(i)}
    held.update({f.key: f for i in range(OWNERS // 2) for f in flows_of(i, salt=9)})
    rec._book.read_back(held)


@pytest.mark.parametrize("scenario", [change_of_many_owners, read_back_of_many_flows])
def test_a_big_plan_gives_other_green_threads_turns_and_sends_the_same_flow_mods(scenario):
    sent = {}
    for paced in (False, True):
        rec, switch = reconciler(give_way if paced else None)
        scenario(rec)
        other = Other()
        try:
            ops = rec._plan()
            turns_in_plan = other.turns
        finally:
            other.stop()
        assert len(ops) > 2 * OWNERS
        assert (turns_in_plan > 0) == paced  # without a pacer nothing else runs while it plans
        rec._execute(ops)
        assert rec._book.counts()[2] == 0 and rec._planned is None
        sent[paced] = b"".join(switch.sent)
    assert sent[True] == sent[False]


def test_encoding_a_big_change_set_gives_other_green_threads_turns():
    rec, switch = reconciler(give_way)
    change_of_many_owners(rec)
    ops = rec._plan()
    before = rec.pacer.pauses
    rec._transact(ops, bundle=True)
    assert rec.pacer.pauses - before >= len(ops) // CHUNK  # a pause (every=200) at each tick of CHUNK ops


def test_the_read_back_diff_gives_other_green_threads_turns():
    rec, switch = reconciler(give_way)
    entries = [SimpleNamespace(table_id=f.table, priority=f.priority, cookie=f.cookie, match=None)
               for i in range(OWNERS) for f in flows_of(i)]
    rec._request = lambda msg: entries if "Flow" in type(msg).__name__ else []
    other = Other()
    try:
        assert rec._read_back()
        assert other.turns > 0
    finally:
        other.stop()
    assert len(rec._book.loose) == 2 * OWNERS


def late_change(rec):
    """The compiler's next state, as set_desired_owners would bring it in a pause: owner 0 changed, one owner
    added, a group replaced."""
    late = {**desired(salt=1), owner(0): flows_of(0, salt=2), owner(OWNERS): flows_of(OWNERS, salt=2)}
    rec.set_desired_owners(late, [Group(8, ())], changed={owner(0), owner(OWNERS)})
    return late


def plan_of(late):
    """The change set a switch holding the first state (desired()) is sent for ``late``, planned without pauses."""
    reference, _ = reconciler()
    change_of_many_owners(reference)
    reference.set_desired_owners(late, [Group(8, ())], changed=set(late))
    return sorted((op.kind, op.key) for op in reference._plan())


def stale_adds(switch):
    """How many flow adds of owner 0's superseded flows (flows_of(0, salt=1)) were written to the switch."""
    written = b"".join(switch.sent)
    wire = SwitchReconciler(switch, log=logging.getLogger("test.reconciler"))._wire
    return sum(wire.body(f) in written for f in flows_of(0, salt=1))


def execute_while(rec, during: str, change) -> None:
    """Plan and execute one change set, ``change()`` running in another green thread at the first pause of the
    plan (``during`` "plan") or of the encoding ("encoding"); checks that it ran."""
    if during == "plan":
        other = Other(change, when=lambda: rec.pacer.pauses > 0)
        try:
            ops = rec._plan()
        finally:
            other.stop()
    else:
        ops = rec._plan()
        planned = rec.pacer.pauses
        other = Other(change, when=lambda: rec.pacer.pauses > planned)
    try:
        rec._execute(ops)
        assert other.act is None  # it came
    finally:
        other.stop()


@pytest.mark.parametrize("during", ["plan", "encoding"])
def test_a_newer_desired_state_during_the_pauses_drops_the_change_set_unsent(during):
    """A plan works on the state it began with; when a newer one comes during its (or its encoding's) pauses,
    nothing of the stale change set is written: its owners are planned again with the new ones, and the switch
    ends exactly at the newer state."""
    rec, switch = reconciler(give_way)
    change_of_many_owners(rec)
    box = {}
    execute_while(rec, during, lambda: box.setdefault("late", late_change(rec)))
    assert switch.sent == [] and rec.dropped == 1
    following = rec._plan()
    assert sorted((op.kind, op.key) for op in following) == plan_of(box["late"])
    rec._execute(following)
    assert stale_adds(switch) == 0
    book = rec._book
    assert book.installed == book.desired and book.counts()[2] == 0 and 8 in rec._installed_groups


def test_a_change_set_out_of_date_once_its_turn_to_encode_comes_is_dropped_unencoded():
    """At a cold start a planned change set waits for an encoding slot (openflow/atonce.py ENCODES) behind the other
    switches' full ones; a newer desired state of its owners that comes meanwhile drops it before it is encoded (at
    10,000 owners 20,000 messages: tens of ms of the loop's CPU spent for nothing), and the switch ends exactly at
    the newer state."""
    rec, switch = reconciler(give_way)
    change_of_many_owners(rec)
    ops = rec._plan()
    planned, box = rec.pacer.pauses, {}
    for _ in range(atonce.ENCODES_AT_ONCE):  # every slot held by other switches' big change sets
        atonce.ENCODES.acquire()
    try:
        executing = spawned(rec._execute, ops)
        turns(20, executing)
        assert not executing.dead and rec.pacer.pauses == planned  # waiting for a slot
        box["late"] = late_change(rec)
    finally:
        for _ in range(atonce.ENCODES_AT_ONCE):
            atonce.ENCODES.release()
    joined(executing)
    assert switch.sent == [] and rec.dropped == 1 and rec.pacer.pauses == planned  # nothing encoded
    following = rec._plan()
    assert sorted((op.kind, op.key) for op in following) == plan_of(box["late"])
    rec._execute(following)
    assert stale_adds(switch) == 0 and rec._book.installed == rec._book.desired


def test_a_stream_of_newer_states_does_not_starve_the_switch():
    """A change of one of its owners at every pause: the change set is dropped MAX_REPLANS times in a row, then
    sent as planned; the newer states follow in the next change set and the installed record stays exact."""
    rec, switch = reconciler(give_way)
    change_of_many_owners(rec)
    changes = itertools.count(OWNERS)

    def changing():
        i = next(changes)
        rec._book.set_desired({owner(i % OWNERS): flows_of(i % OWNERS, salt=2 + i // OWNERS)},
                              changed={owner(i % OWNERS)})
        give_way()

    rec.pacer.pause = changing
    rec._wake.set()
    rec.start()
    try:
        for _ in range(100_000):
            if rec.counters["change_sets"]:
                break
            hub.sleep(0)
        assert rec.counters["change_sets"] == 1 and rec.dropped == MAX_REPLANS
        rec.pacer.pause = give_way
        rec._wake.set()
        for _ in range(100_000):
            if rec.state == "in_sync":
                break
            hub.sleep(0)
        book = rec._book
        assert rec.state == "in_sync" and book.installed == book.desired and book.counts()[2] == 0
    finally:
        rec.stop()


@pytest.mark.parametrize("during", ["plan", "encoding"])
def test_a_newer_state_of_other_owners_during_the_pauses_waits_for_the_next_change_set(during):
    """Owners the change set does not hold change during its (or its encoding's) pauses, as each programming pass
    removes other EVPN MACs: the change set is sent as planned, not dropped, and the next one carries the newer
    owners; the switch ends exactly at the newer state."""
    rec, switch = reconciler(give_way)
    change_of_many_owners(rec)
    late = {owner(OWNERS + i): flows_of(OWNERS + i, salt=3) for i in range(3)}

    execute_while(rec, during, lambda: rec._book.set_desired(late, changed=set(late)))
    assert rec.dropped == 0 and rec.counters["change_sets"] == 1
    following = rec._plan()
    assert sorted(op.key for op in following) == sorted(f.key for flows in late.values() for f in flows)
    rec._execute(following)
    book = rec._book
    assert book.installed == book.desired and book.counts()[2] == 0 and set(late) <= set(book.installed)


def test_a_retry_of_rejected_flows_during_the_plans_pauses_keeps_the_installed_record_exact():
    """A flow left out of a plan as rejected is not recorded installed, even if a retry cleared the rejections
    while the plan paused: the retry's plan sends it."""
    rec, switch = reconciler(give_way)
    change_of_many_owners(rec)
    refused = min(flows_of(0, salt=1), key=lambda f: f.priority)
    rec._book.rejected[refused.key] = "OFPET_BAD_ACTION OFPBAC_BAD_OUT_GROUP"
    other = Other(rec._book.retry_rejected, when=lambda: rec.pacer.pauses > 0)
    try:
        ops = rec._book.plan(tick=rec.pacer.tick)
        assert other.act is None  # it came
    finally:
        other.stop()
    assert refused.key not in {key for key, _ in ops.adds}
    rec._book.applied(ops)
    assert refused not in rec._book.installed[owner(0)]
    assert [op.key for op in rec._plan() if op.kind == "flow_add"] == [refused.key]


def test_a_hold_or_a_disconnect_during_encoding_writes_nothing():
    for stop in (lambda rec: rec.hold(True), lambda rec: rec.stop()):
        rec, switch = reconciler(give_way)
        change_of_many_owners(rec)
        ops = rec._plan()
        planned = rec.pacer.pauses
        other = Other(lambda: stop(rec), when=lambda: rec.pacer.pauses > planned)
        try:
            rec._execute(ops)
            assert other.act is None  # it came
        finally:
            other.stop()
        assert switch.sent == [] and rec._book.counts()[2] == 4 * OWNERS


def test_a_hold_during_the_plans_pauses_sends_nothing():
    """A standby never writes: a hold that arrives while a plan pauses drops the plan; takeover reads back anew."""
    rec, switch = reconciler(give_way)
    change_of_many_owners(rec)
    rec._need_read = False
    rec._wake.set()
    other = Other(lambda: rec.hold(True), when=lambda: rec.pacer.pauses > 0)  # in the middle of the plan
    rec.start()
    try:
        for _ in range(10_000):
            if rec.state == "standby":
                break
            hub.sleep(0)
        assert other.act is None and rec.state == "standby" and switch.sent == []
    finally:
        other.stop()
        rec.stop()


def test_the_flows_listing_gives_other_green_threads_turns_and_answers_the_same(tmp_path):
    rec, _ = reconciler()
    change_of_many_owners(rec)  # desired and installed differ: 40,000 rows
    ctl = Controller(tmp_path)
    try:
        answers = {}
        for pause in (None, give_way):
            routes = rest_dataplane.routes(ctl.state, Programmer(ctl.state), lambda: {1: rec}, pause)
            api = Api(ctl.service, ctl.state, ctl.settings, extra_routes=routes)
            other = Other()
            try:
                resp = api.handle(Request("GET", "/v1/switches/0000000000000001/flows", {}, {}, b"", "127.0.0.1"))
                body = resp.encoded()
                answers[pause is not None] = (resp.status, other.turns, body)
            finally:
                other.stop()
        assert answers[True][0] == answers[False][0] == 200
        assert answers[False][1] == 0 and answers[True][1] > 0
        assert answers[True][2] == answers[False][2]
        listed = json.loads(answers[True][2])
        assert listed["count"] == 4 * OWNERS and not listed["in_sync"]
        order = [(f["table"], -f["priority"], f["cookie"]) for f in listed["flows"]]
        assert order == sorted(order)
    finally:
        ctl.close()


def test_paced_json_is_what_a_response_writes():
    row = {"table": 1, "owner": {"kind": "vport", "id": "v", "ref": None}, "flow": "x", "error": None}
    bodies = [{}, [], {"flows": [], "count": 0}, {"flows": [row] * 40, "x": {"y": list(range(50)), "z": "\u00e9\n"}},
              [[list(range(40))] * 40], {"items": [{"ports": [{"n": i, "v": {"a": [1]}} for i in range(100)]}] * 3}]
    for body in bodies:
        ticks = []
        assert paced_json(body, ticks.append) == Response(200, body).encoded()
    assert sum(ticks) == 300  # the last body: each element of its one list longer than SMALL ticked (GROUP at a time)


def test_the_switches_listing_gives_other_green_threads_turns_and_answers_the_same(tmp_path):
    from controller.discovery import PortInfo, VrsSnapshot

    ctl = Controller(tmp_path)
    try:
        ports = tuple(PortInfo(name=f"tap{i}", ofport=i + 1, mac=f"02:00:00:00:{i >> 8:02x}:{i & 0xff:02x}",
                               external_ids=(("iface-id", f"vm{i}"),)) for i in range(3000))
        ctl.state.vrs_update(VrsSnapshot(session="s1", chassis="hv1", hostname="hv1", peer="127.0.0.1:1",
                                         bridge="br-int", bridge_present=True, datapath_id=0xA,
                                         vtep_ip="192.0.2.10", flavour="kvm", ports=ports))
        answers = {}
        for pause in (None, give_way):
            ctl.api.pause = pause
            other = Other()
            try:
                resp = ctl.api.handle(Request("GET", "/v1/switches", {}, {"authorization": f"Bearer {TOKEN}"}, b"",
                                              "127.0.0.1"))
                answers[pause is not None] = (resp.status, other.turns, resp.encoded())
            finally:
                other.stop()
        assert answers[True][0] == answers[False][0] == 200
        assert answers[False][1] == 0 and answers[True][1] > 0
        assert answers[True][2] == answers[False][2]
        assert len(json.loads(answers[True][2])["items"][0]["ports"]) == 3000
    finally:
        ctl.close()


def test_first_sync_is_set_once_the_switch_was_in_sync_and_when_the_reconciler_stops():
    """The tunnel probes of a switch wait for it (openflow/tunnel_warm.py ProbeSender): its flows go in first."""
    rec, _ = reconciler()
    rec._book.read_back({})
    rec.set_desired_owners(desired(count=3), [Group(7, ())])
    assert not rec.first_sync.is_set()
    rec.start()
    try:
        for _ in range(10_000):
            if rec.state == "in_sync":
                break
            hub.sleep(0)
        assert rec.state == "in_sync" and rec.first_sync.is_set()
    finally:
        rec.stop()
    idle, _ = reconciler()
    idle.stop()  # never in sync: nothing may wait for it for ever
    assert idle.first_sync.is_set()


def test_a_switch_read_back_whole_takes_its_owners_in_a_few_at_a_time():
    """A full plan with nothing to send (a switch read back holding every flow desired: a restart, a reconnect) takes
    every owner in as installed: once in one stretch (16,000 flows: 13-27 ms of CPU in vrs_scale's cold start with
    reconnects, stretch trace ``installed.py applied < reconciler.py _plan_ops``), now pausing as a plan does.
    Counted: the owners installed between two pauses."""
    seen = []
    rec, switch = reconciler(lambda: seen.append(len(rec._book.installed)), every=200)
    rec.set_desired_owners(desired(), [])
    rec._book.read_back({f.key: f for i in range(OWNERS) for f in flows_of(i)})
    ops = rec._plan()
    assert len(ops) == 0 and switch.sent == []  # nothing to send
    assert len(rec._book.installed) == OWNERS and not rec._book.loose  # every owner installed as planned
    taken = [b - a for a, b in zip([0] + seen, seen + [OWNERS])]
    assert max(taken) <= max(200, CHUNK) // 2  # a pause at least every CHUNK flows, 2 an owner (unpaced: all OWNERS)
