"""A switch reconciler driven through random sequences of desired states, each arriving at a random pause of a plan
or an encoding (openflow/reconciler.py "Pauses"), with read-backs (resync), a standby's holds and kept stale flows
(``keep_stale``) among them, against a switch that applies what it is sent as OpenFlow does: a flow is (table,
priority, match), an add replaces it (cookie and all), a strict delete with a full cookie mask removes it only if its
cookie matches, a bundle applies at its commit, a group delete takes the flows that use it along, a group added
twice or modified before it exists is an error.

The incremental oracle (tests/unit/test_incremental_oracle.py) checks the desired state; this checks what a
reconciler sends for it:

- when a change set begins to be written, none of its adds is a flow the desired state of that moment no longer
  wants and none of its deletes is a flow it wants (a change set kept while other owners changed,
  ``FlowBook._outdates``, is still right for its own), unless it was sent as planned after ``MAX_REPLANS`` drops;
- no flow is added that names a group the switch does not hold, no group is added twice or modified unknown;
- only differences: no add of a flow the switch holds already (same match, cookie and instructions: it would replace
  it with itself), no delete of a flow it did not hold when the change set began (a strict delete of a flow an add of
  the same change set replaced in place, another owner's cookie on its match, is the reconciler's order: the add
  first, so the flow is never missing, then the old cookie's delete, which matters should the add be refused);
- once the states stop, the switch holds exactly the last one (flows and groups);
- a restarted controller (a new reconciler, its read-back) sends nothing more for that state (hitless restart).

Owners trade their flows' matches from one state to the next (the same (table, priority, match) under another
owner's cookie), so a flow moves between owners and change sets, and flows use groups that come and go. Two pairs of
owners whose ids' 20-bit hints collide (``TWIN``) at times want flows of the same content, one flow (one key) on the
switch for both: it must stay while either wants it (openflow/installed.py ``OwnersByBits``)."""

from __future__ import annotations

import logging
import os
import random
import struct
from types import SimpleNamespace

import pytest

from controller.pacer import Pacer
from controller.ryu_compat import hub, ofproto_protocol
from openflow import pipeline as p
from openflow.flows import Group, Owner, flow
from openflow.installed import EMPTY
from openflow.reconciler import MAX_REPLANS, SwitchReconciler

OWNERS = 8
GROUP_IDS = (2, 4, 6)
STATES = 40  # desired states per run
SEEDS = range(int(os.environ.get("CANOPY_INTERLEAVE_SEEDS", "12")))  # more for a deeper run
TURNS = 20_000  # bound of every wait for the reconciler, in turns of the hub

ADD, DELETE_STRICT = 0, 4
OFPT_FLOW_MOD, OFPT_GROUP_MOD, OFPT_BARRIER_REQUEST, OFPT_BUNDLE_CONTROL, OFPT_BUNDLE_ADD = 14, 15, 20, 33, 34
GROUP_ADD, GROUP_MODIFY, GROUP_DELETE = 0, 1, 2
COMMIT = 4
ALL_ONES = 0xFFFFFFFFFFFFFFFF


IDS = ("v197", "v27000", "v196", "v27001", "v4", "v5", "v6", "v7")  # 0, 1 and 2, 3: ids whose 20-bit hints collide
TWIN = {0: 1, 1: 0, 2: 3, 3: 2}  # owners whose cookies share their upper half (openflow/flows.py, the owner hint)


def owner(i: int) -> Owner:
    return Owner("vport", IDS[i])


def mac(slot: int) -> str:
    return f"02:00:00:00:00:{slot:02x}"


def flows_of(i: int, slot: int, variant: int, group: int | None) -> frozenset:
    """Owner i's flows in one state: their matches are its slot's (another owner may hold them in another state).
    Twins (``TWIN``) in one slot want flows of the same content, so the same cookie: one flow on the switch for both;
    variants 2k and 2k+1 share the first flow, and only one of them (or both) has the second."""
    content = min(i, TWIN.get(i, i))
    out = {flow(p.L2_LOOKUP, 100, {"reg5": 1, "eth_dst": mac(slot)},
                [("set", "reg7", variant // 2), ("goto", p.EGRESS_ACL)], owner(i))}
    if variant % 3:
        actions = [("group", group)] if group is not None else [("set", "reg7", content), ("goto", p.EGRESS_ACL)]
        out.add(flow(p.L2_LOOKUP, 90, {"reg5": 2, "eth_dst": mac(slot)}, actions, owner(i)))
    return frozenset(out)


def share(rng: random.Random, params: dict, i: int) -> None:
    """Owner i joins its twin's slot with a variant of the same first flow and the twin's group."""
    slot, variant, group = params[TWIN[i]]
    params[i] = (slot, variant ^ rng.randrange(2), group)


def separate(rng: random.Random, params: dict) -> None:
    """Two owners wanting different flows with one (table, priority, match) is no state the compiler gives: one of
    them moves to a free slot (one is free whenever two owners hold one slot)."""
    for _ in range(OWNERS):
        held: dict = {}
        for i in sorted(params):
            for f in flows_of(i, *params[i]):
                other = held.setdefault((f.table, f.priority, f.match), (i, f.cookie))
                if other[1] != f.cookie:
                    free = sorted(set(range(OWNERS)) - {slot for slot, _, _ in params.values()})
                    moved = rng.choice((i, other[0]))
                    params[moved] = (rng.choice(free), *params[moved][1:])
                    break
            else:
                continue
            break
        else:
            return
    raise AssertionError(f"owners still clash: {params}")


def next_state(rng: random.Random, params: dict, buckets: dict) -> tuple[dict, list]:
    """(owner -> flows, groups) after changing one or two owners of ``params`` (owner number -> (slot, variant,
    group), changed in place): one comes or goes, takes another variant or group, or two trade slots (their flows'
    matches), or one joins its twin (a flow both want: one key); the groups are those the flows use (``buckets``:
    group id -> bucket list, sometimes replaced) and sometimes one more."""
    for _ in range(rng.choice((1, 1, 2))):
        i = rng.randrange(OWNERS)
        free = sorted(set(range(OWNERS)) - {slot for slot, _, _ in params.values()})
        twin = TWIN.get(i)
        if i not in params:
            params[i] = (rng.choice(free), rng.randrange(6), rng.choice((None, *GROUP_IDS)))
            if twin in params and rng.random() < 0.5:
                share(rng, params, i)
        elif rng.random() < 0.25:
            del params[i]
        elif twin in params and params[twin][0] != params[i][0] and rng.random() < 0.3:
            share(rng, params, i)
        elif rng.random() < 0.4 and len(params) > 1:
            j = rng.choice(sorted(set(params) - {i}))
            (si, vi, gi), (sj, vj, gj) = params[i], params[j]
            params[i], params[j] = (sj, vi, gi), (si, vj, gj)
        else:
            params[i] = (params[i][0], rng.randrange(6), rng.choice((None, *GROUP_IDS)))
            if twin in params and params[twin][0] == params[i][0] and rng.random() < 0.5:
                share(rng, params, twin)  # the twin changes along, in the same state
        separate(rng, params)
    flows = {owner(i): flows_of(i, *params[i]) for i in params}
    used = {g for fs in flows.values() for f in fs for kind, *args in f.actions if kind == "group" for g in args}
    if rng.random() < 0.2:
        used.add(rng.choice(GROUP_IDS))
    for g in GROUP_IDS:
        if g not in buckets or rng.random() < 0.1:
            buckets[g] = ((("output", 1 + rng.randrange(2)),),)
    return flows, [Group(g, buckets[g]) for g in sorted(used)]


def changed_owners(old: dict, new: dict) -> set:
    return {o for o in old.keys() | new.keys() if old.get(o) != new.get(o)}


def messages(data: bytes):
    at = 0
    while at < len(data):
        length = struct.unpack_from("!H", data, at + 2)[0]
        yield data[at:at + length]
        at += length


class OpenFlowSwitch:
    """A datapath (OpenFlow 1.3: barriers, or 1.4: bundles) that applies the flow and group mods it is written."""

    def __init__(self, version: int, universe: dict):
        desc = ofproto_protocol.ProtocolDesc(version)
        self.id, self.ofproto, self.ofproto_parser, self.xid = 1, desc.ofproto, desc.ofproto_parser, 0
        self.address = ("10.0.0.1", 1)
        self.universe = universe  # cookie -> Flow: every flow a state of the test held
        self.flows: dict = {}  # (table, priority, match bytes) -> (cookie, instruction bytes)
        self.groups: dict = {}  # group id -> bucket bytes
        self.violations: list[str] = []
        self.wasted: list[str] = []  # flow-mods that change nothing (module docstring, "only differences")
        self.before: dict = {}  # the flows when the change set being written began
        self.staged: list[bytes] = []
        self.rec: SwitchReconciler | None = None
        self.changes = None  # the ChangeSet being written (``connect``)
        self.on_change_set = None  # called with the messages of each change set as it begins to be written
        self._seen = None

    # ---------------------------------------------------------------- what the reconciler writes
    def send(self, data: bytes) -> None:
        if self.rec._inflight != self._seen:  # the first piece of a new change set
            self._seen = self.rec._inflight
            self.before = dict(self.flows)
            if self.on_change_set is not None:
                self.on_change_set()
        for message in messages(bytes(data)):
            kind = message[1]
            if kind == OFPT_BUNDLE_ADD:
                self.staged.append(message[16:])
            elif kind == OFPT_BUNDLE_CONTROL:
                if struct.unpack_from("!H", message, 12)[0] == COMMIT:
                    staged, self.staged = self.staged, []
                    for inner in staged:
                        self.apply(inner)
                    self._answer()
            elif kind == OFPT_BARRIER_REQUEST:
                self._answer()
            else:
                self.apply(message)

    def send_msg(self, msg) -> None:
        pass

    def _answer(self) -> None:
        for waiter in list(self.rec._waiters.values()):
            waiter.event.set()

    def apply(self, message: bytes) -> None:
        kind = message[1]
        if kind == OFPT_FLOW_MOD:
            self._flow_mod(message)
        elif kind == OFPT_GROUP_MOD:
            self._group_mod(message)
        else:
            self.violations.append(f"unexpected message type {kind}")

    def _flow_mod(self, message: bytes) -> None:
        cookie, mask, table, command = struct.unpack_from("!QQBB", message, 8)
        priority = struct.unpack_from("!H", message, 30)[0]
        length = struct.unpack_from("!H", message, 50)[0]
        match = message[48:48 + ((length + 7) & ~7)]
        key = (table, priority, match)
        if command == ADD:
            if self.flows.get(key) == (cookie, message[48 + len(match):]):
                self.wasted.append(f"an add of a flow the switch holds: {self.universe.get(cookie)}")
            f = self.universe.get(cookie)
            for action in f.actions if f is not None else ():
                if action[0] == "group" and action[1] not in self.groups:
                    self.violations.append(f"add of {f} before its group {action[1]}")
            self.flows[key] = (cookie, message[48 + len(match):])
        elif command == DELETE_STRICT:
            if mask != ALL_ONES:
                self.violations.append("a strict delete without a full cookie mask")
            if key in self.flows and self.flows[key][0] == cookie:
                del self.flows[key]
            elif self.before.get(key, (None,))[0] != cookie:  # else an add of this change set replaced it
                self.wasted.append(f"a delete of a flow the switch did not hold: {self.universe.get(cookie)}")
        else:
            self.violations.append(f"flow mod command {command}")

    def _group_mod(self, message: bytes) -> None:
        command, _, gid = struct.unpack_from("!HBxI", message, 8)
        if command == GROUP_ADD:
            if gid in self.groups:
                self.violations.append(f"group {gid} added twice")
            self.groups[gid] = message[16:]
        elif command == GROUP_MODIFY:
            if gid not in self.groups:
                self.violations.append(f"group {gid} modified before it exists")
            self.groups[gid] = message[16:]
        elif command == GROUP_DELETE:
            self.groups.pop(gid, None)
            for key, (cookie, _) in list(self.flows.items()):  # OpenFlow: the flows that use it go with it
                f = self.universe.get(cookie)
                if f is not None and ("group", gid) in f.actions:
                    del self.flows[key]

    # ---------------------------------------------------------------- what a read-back finds
    def request(self, msg):
        """The reconciler's ``_request``: flow stats or group descriptions of what this switch holds."""
        parser, ofp = self.ofproto_parser, self.ofproto
        if isinstance(msg, parser.OFPMeterFeaturesStatsRequest):  # a switch without meters (openflow/meters.py)
            return [SimpleNamespace(max_meter=0)]
        if isinstance(msg, parser.OFPGroupDescStatsRequest):
            return [SimpleNamespace(type=ofp.OFPGT_ALL, group_id=gid, buckets=self._buckets(body))
                    for gid, body in self.groups.items()]
        return [SimpleNamespace(table_id=table, priority=priority, cookie=cookie,
                                match=parser.OFPMatch.parser(match, 0))
                for (table, priority, match), (cookie, _) in self.flows.items()]

    def _buckets(self, body: bytes) -> list:
        buckets, at = [], 0
        while at < len(body):
            bucket = self.ofproto_parser.OFPBucket.parser(body, at)
            buckets.append(bucket)
            at += bucket.len
        return buckets

    # ---------------------------------------------------------------- the state to compare
    def state(self) -> tuple[dict, dict]:
        return {key: cookie for key, (cookie, _) in self.flows.items()}, dict(self.groups)


def wanted(switch: OpenFlowSwitch, flows: dict, groups: list) -> tuple[dict, dict]:
    """What ``switch`` should hold for a desired state, in its own terms."""
    wire = switch.rec._wire
    held = {(f.table, f.priority, wire.flow_match(f)): f.cookie for fs in flows.values() for f in fs}
    return held, {g.group_id: wire.group_mod(g, "add", 0)[16:] for g in groups}


def connect(switch: OpenFlowSwitch, pacer: Pacer) -> SwitchReconciler:
    rec = switch.rec = SwitchReconciler(switch, log=logging.getLogger("test.reconcile.interleave"), pacer=pacer)
    rec._request = switch.request
    transact = rec._transact

    def transacted(changes, bundle):
        switch.changes = changes  # the change set being encoded and written
        return transact(changes, bundle)

    rec._transact = transacted
    switch._seen = None
    return rec


def wait_in_sync(rec: SwitchReconciler) -> None:
    """Until the reconciler has nothing planned or to plan and says it is in sync (bounded)."""
    book = rec._book
    for _ in range(TURNS):
        if rec.state == "in_sync" and not rec._wake.is_set() and book._planning is None and \
                book.counts()[2] == 0 and rec._installed_groups == rec._desired_groups:
            return
        hub.sleep(0)
    raise AssertionError(f"the reconciler did not settle: state {rec.state}")


class Driver:
    """Random desired states, each at a random pause of the reconciler (and some resyncs), recorded."""

    def __init__(self, rng: random.Random, rec: SwitchReconciler, universe: dict):
        self.rng, self.rec, self.universe = rng, rec, universe
        self.flows, self.groups = {}, []
        self.params, self.buckets = {}, {}
        self.left = STATES
        self.forced = 0

    def pause(self) -> None:
        if self.left and self.rng.random() < 0.12:
            self.next_state()
        elif self.left:
            self.disturb()
        hub.sleep(0)

    def disturb(self) -> None:
        """Now and then a read-back (resync), a standby's hold or its end, or keeping stale flows or its end (a
        restart with an empty store: docs/store.md)."""
        roll = self.rng.random()
        if roll < 0.02:
            self.rec.resync()
        elif roll < 0.03:
            self.rec.hold(not self.rec._hold)
        elif roll < 0.04:
            self.rec.keep_stale(not self.rec._keep)

    def settle(self) -> None:
        """No more states: the reconciler active and deleting again."""
        self.rec.hold(False)
        self.rec.keep_stale(False)

    def next_state(self) -> None:
        flows, groups = next_state(self.rng, self.params, self.buckets)
        for fs in flows.values():
            self.universe.update((f.cookie, f) for f in fs)
        changed = None if self.rng.random() < 0.1 else changed_owners(self.flows, flows)
        self.flows, self.groups = flows, groups
        self.left -= 1
        self.rec.set_desired_owners(flows, groups, changed)

    def check_change_set(self) -> None:
        """A change set begins to be written: it agrees with the desired state of now (module docstring)."""
        if self.rec._replans >= MAX_REPLANS:
            self.forced += 1
            return
        flows = {f.key for fs in self.flows.values() for f in fs}
        groups = {g.group_id: g for g in self.groups}
        for op in self.rec.datapath.changes:
            if op.kind == "flow_add":
                assert op.key in flows, f"a change set adds a flow the desired state no longer wants: {op.item}"
            elif op.kind == "flow_delete":
                assert op.key not in flows, f"a change set deletes a flow the desired state wants: {op.item}"
            elif op.kind == "group_delete":
                assert op.key not in groups, f"a change set deletes group {op.key}, desired"
            else:
                assert groups.get(op.key) == op.item, f"a change set's {op.kind} of {op.item} is not desired"


@pytest.mark.parametrize("version", [4, 5], ids=["1.3-barrier", "1.4-bundle"])
@pytest.mark.parametrize("seed", SEEDS)
def test_random_states_arriving_mid_plan_leave_the_switch_at_the_last_one(version, seed):
    rng = random.Random(seed * 7919 + version)
    universe: dict = {}
    switch = OpenFlowSwitch(version, universe)
    pacer = Pacer(every=rng.choice((1, 2, 3)))
    rec = connect(switch, pacer)
    driver = Driver(rng, rec, universe)
    pacer.pause = driver.pause
    switch.on_change_set = driver.check_change_set
    driver.next_state()
    rec.start()
    try:
        for _ in range(TURNS):
            if not driver.left:
                break
            if rng.random() < 0.04:
                driver.next_state()
            elif rng.random() < 0.04:
                driver.disturb()
            hub.sleep(0)
        assert not driver.left, "the states were not all given"
        driver.settle()
        wait_in_sync(rec)
        assert switch.violations == []
        assert switch.wasted == []
        assert switch.state() == wanted(switch, driver.flows, driver.groups)
        assert rec._book.counts()[2] == 0 and rec._book.installed == driver.flows
    finally:
        rec.stop()
    restarted = connect(switch, Pacer(every=2))
    restarted.set_desired_owners(driver.flows, driver.groups, None)
    restarted.start()
    try:
        wait_in_sync(restarted)
        assert restarted.counters["read_backs"] == 1
        assert {k: v for k, v in restarted.counters.items() if k.startswith(("flow", "group"))} == \
            dict.fromkeys(("flow_add", "flow_delete", "group_add", "group_modify", "group_delete"), 0)
        assert switch.state() == wanted(switch, driver.flows, driver.groups) and switch.violations == []
    finally:
        restarted.stop()


def test_the_random_states_give_twins_flows_they_share():
    """The states above reach the case of a hint collision (openflow/installed.py ``OwnersByBits``): twins whose
    hints collide, often wanting one flow (one key), sometimes only one of their two, never two owners' different
    flows with one match."""
    assert all(owner(i).hint() == owner(j).hint() for i, j in TWIN.items())
    assert len({owner(i).hint() for i in range(OWNERS)}) == OWNERS - len(TWIN) // 2
    shared = partly = 0
    for seed in range(20):
        rng, params, buckets = random.Random(seed), {}, {}
        for _ in range(STATES):
            flows, _ = next_state(rng, params, buckets)
            matches = [(f.table, f.priority, f.match) for fs in flows.values() for f in fs]
            assert len(set(matches)) == len({f.key for fs in flows.values() for f in fs})  # one cookie a match
            for i, j in ((0, 1), (2, 3)):
                common = flows.get(owner(i), EMPTY) & flows.get(owner(j), EMPTY)
                shared += bool(common)
                partly += bool(common) and flows[owner(i)] != flows[owner(j)]
    assert shared > 100 and partly > 20, (shared, partly)
