"""ovsdb/tunnel.py: the desired tunnel port, the pure diff against replicated rows, and the reconciler.

Rows are stand-ins shaped like ``ovs`` IDL rows. ``FakeDb`` applies a change the way ovsdb-server
would (verified columns must be unchanged at commit), so tests assert where the rows end up rather
than which calls were made.
"""

from __future__ import annotations

import copy
import logging
from types import SimpleNamespace

import pytest

from controller.discovery import VrsSnapshot
from ovsdb import idl
from ovsdb.tunnel import (
    ADOPT,
    BACKOFF_MAX_S,
    CONFLICT,
    CREATE,
    UPDATE,
    TunnelReconciler,
    apply_change,
    backoff_delay,
    desired_tunnel,
    plan_tunnel,
)

PEER = "10.250.0.11:51034"
VTEP = "10.251.0.11"
OWNED = {"canopy-owned": "true"}
FLOW = {"remote_ip": "flow", "key": "flow", "local_ip": VTEP}


def snapshot(vtep_ip=VTEP, bridge_present=True, bridge="br-int") -> VrsSnapshot:
    return VrsSnapshot(session="ovsdb:" + PEER, peer=PEER, chassis="hv1", vtep_ip=vtep_ip,
                       bridge=bridge, bridge_present=bridge_present)


def iface(name="vxlan0", type_="vxlan", options=None, ext=None):
    return SimpleNamespace(name=name, type=type_, options=dict(FLOW if options is None else options),
                           external_ids=dict(ext or {}))


def port(name, *interfaces, ext=None):
    return SimpleNamespace(name=name, interfaces=list(interfaces), external_ids=dict(ext or {}))


def bridge(name="br-int", *ports):
    return SimpleNamespace(name=name, ports=list(ports))


def spec(vtep_ip=VTEP, name="vxlan0"):
    return desired_tunnel(snapshot(vtep_ip), vtep_ip, name)


def plan(*ports, on_bridge=None, the_spec=None):
    """Plan against br-int holding ``on_bridge`` (default: all ``ports``); ``ports`` are all Port rows."""
    br = bridge("br-int", *(ports if on_bridge is None else on_bridge))
    return plan_tunnel(the_spec or spec(), br, ports)


# desired_tunnel

def test_desired_tunnel_has_flow_endpoints_and_local_ip_when_known():
    s = spec()
    assert (s.name, s.bridge, s.type) == ("vxlan0", "br-int", "vxlan")
    assert s.options_map() == FLOW
    assert spec(vtep_ip=None).options_map() == {"remote_ip": "flow", "key": "flow"}


def test_desired_tunnel_follows_the_configured_names():
    s = desired_tunnel(snapshot(bridge="br-canopy"), VTEP, "tun9")
    assert (s.name, s.bridge) == ("tun9", "br-canopy")


def test_no_tunnel_without_the_integration_bridge():
    assert desired_tunnel(snapshot(bridge_present=False), VTEP) is None
    assert desired_tunnel(None, VTEP) is None


def test_equal_inputs_give_equal_specs():
    assert spec() == spec() and hash(spec()) == hash(spec())
    assert spec() != spec(vtep_ip="10.251.0.12")


# plan_tunnel

def test_nothing_to_plan_without_spec_or_bridge():
    assert plan_tunnel(None, bridge(), []) is None
    assert plan_tunnel(spec(), None, []) is None


def test_missing_port_is_created():
    change = plan(port("tap1", iface("tap1", type_="", options={})))
    assert change.kind == CREATE and change.spec == spec()


def test_owned_matching_port_needs_nothing():
    assert plan(port("vxlan0", iface(ext=OWNED), ext=OWNED)) is None


@pytest.mark.parametrize("options, type_, says", [
    ({"remote_ip": "flow", "key": "flow", "local_ip": "10.251.0.99"}, "vxlan", "local_ip=10.251.0.99"),
    ({"remote_ip": "flow", "key": "flow"}, "vxlan", "options"),
    ({**FLOW, "dst_port": "4790"}, "vxlan", "dst_port=4790"),  # Canopy's port: exactly as desired
    (FLOW, "geneve", "geneve"),
])
def test_owned_port_that_differs_is_updated(options, type_, says):
    change = plan(port("vxlan0", iface(type_=type_, options=options, ext=OWNED)))
    assert change.kind == UPDATE and says in change.reason


def test_foreign_port_that_matches_exactly_is_adopted():
    change = plan(port("vxlan0", iface(ext={"other": "x"})))
    assert change.kind == ADOPT


@pytest.mark.parametrize("options, type_", [
    ({"remote_ip": "192.0.2.1", "key": "5001"}, "vxlan"),
    ({"remote_ip": "flow", "key": "flow"}, "vxlan"),  # missing local_ip is a difference too
    (FLOW, "geneve"),
])
def test_foreign_port_that_differs_is_a_conflict(options, type_):
    change = plan(port("vxlan0", iface(type_=type_, options=options)))
    assert change.kind == CONFLICT and "not owned by Canopy" in change.reason


def test_owned_key_with_another_value_is_not_ownership():
    change = plan(port("vxlan0", iface(options={"key": "1"}, ext={"canopy-owned": "false"})))
    assert change.kind == CONFLICT


@pytest.mark.parametrize("ports, on_bridge, says", [
    ([port("vxlan0", iface(ext=OWNED))], [], "not on bridge br-int"),
    ([port("tun", iface(ext=OWNED))], None, "interface vxlan0 belongs to port tun"),
    ([port("vxlan0", iface("other"))], None, "without an interface of that name"),
    ([port("vxlan0", iface(ext=OWNED), iface("vxlan1"))], None, "has 2 interfaces"),
])
def test_name_clashes_of_other_shapes_are_conflicts(ports, on_bridge, says):
    change = plan(*ports, on_bridge=on_bridge)
    assert change.kind == CONFLICT and says in change.reason


# apply_change, against a database stand-in

class FakeDb:
    """Bridge/Port/Interface stand-ins and a writer that commits like ovsdb-server."""

    def __init__(self, *ports, bridge_name="br-int"):
        self.bridge = bridge(bridge_name, *ports)
        self.ports = list(ports)
        self.seqno = 1

    def rows(self, table):
        return {"Bridge": [self.bridge], "Port": self.ports}[table]

    def commit(self, body) -> str:
        """Run ``body`` with a writer; apply its writes unless a verified column changed meanwhile."""
        writer = FakeWriter(self)
        body(writer)
        if any(getattr(row, column) != seen for row, column, seen in writer.verified):
            return idl.TXN_TRY_AGAIN
        for write in writer.writes:
            write()
        self.seqno += 1
        return idl.TXN_SUCCESS


class FakeWriter:
    def __init__(self, db):
        self.db, self.writes, self.verified = db, [], []

    def insert(self, table, **columns):
        row = SimpleNamespace(**columns)
        if table == "Port":
            self.writes.append(lambda: self.db.ports.append(row))
        return row

    def set(self, row, column, value):
        self.writes.append(lambda: setattr(row, column, copy.deepcopy(value)))

    def verify(self, row, column):
        self.verified.append((row, column, copy.deepcopy(getattr(row, column))))

    def set_key(self, row, column, key, value):
        self.writes.append(lambda: getattr(row, column).__setitem__(key, value))

    def add_to_set(self, row, column, value):
        self.writes.append(lambda: getattr(row, column).append(value))


def converge(db, the_spec=None):
    """Plan, apply, and return the plan that follows (None once the database matches)."""
    the_spec = the_spec or spec()
    change = plan_tunnel(the_spec, db.bridge, db.ports)
    assert db.commit(lambda writer: apply_change(change, writer)) == idl.TXN_SUCCESS
    return plan_tunnel(the_spec, db.bridge, db.ports)


def test_created_port_matches_and_is_owned_on_both_rows():
    db = FakeDb(port("tap1", iface("tap1", type_="", options={})))
    assert converge(db) is None
    [tunnel] = [p for p in db.bridge.ports if p.name == "vxlan0"]
    assert tunnel.external_ids == OWNED and tunnel.interfaces[0].external_ids == OWNED
    assert [p.name for p in db.ports] == ["tap1", "vxlan0"]


def test_update_rewrites_options_and_keeps_other_external_ids():
    db = FakeDb(port("vxlan0", iface(options={"key": "flow"}, ext={**OWNED, "note": "x"}), ext=OWNED))
    assert converge(db, spec(vtep_ip="10.251.0.99")) is None
    tunnel_iface = db.ports[0].interfaces[0]
    assert tunnel_iface.options["local_ip"] == "10.251.0.99"
    assert tunnel_iface.external_ids == {**OWNED, "note": "x"}


def test_adoption_only_adds_the_owner_key():
    foreign = iface(ext={"note": "x"})
    db = FakeDb(port("vxlan0", foreign))
    assert converge(db) is None
    assert foreign.external_ids == {"note": "x", **OWNED} and foreign.options == FLOW
    assert db.ports[0].external_ids == OWNED


def test_update_fails_if_ownership_is_taken_away_before_commit():
    db = FakeDb(port("vxlan0", iface(options={"key": "flow"}, ext=OWNED), ext=OWNED))
    change = plan_tunnel(spec(), db.bridge, db.ports)

    def racing_body(writer):
        apply_change(change, writer)
        db.ports[0].interfaces[0].external_ids = {}  # an operator takes the port back meanwhile

    assert db.commit(racing_body) == idl.TXN_TRY_AGAIN
    assert db.ports[0].interfaces[0].options == {"key": "flow"}
    assert plan_tunnel(spec(), db.bridge, db.ports).kind == CONFLICT


def test_a_conflict_is_never_written():
    change = plan(port("vxlan0", iface(options={"key": "1"})))
    with pytest.raises(ValueError):
        apply_change(change, FakeWriter(FakeDb()))


# TunnelReconciler

class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class FakePending:
    def __init__(self):
        self.result = None

    def poll(self):
        return self.result


class FakeReplica(FakeDb):
    """A FakeDb whose transactions stay in flight until the test ``finish``es them."""

    def __init__(self, *ports):
        super().__init__(*ports)
        self.in_flight = []  # (body, comment, pending)

    @property
    def change_seqno(self):
        return self.seqno

    def transact(self, body, comment=""):
        pending = FakePending()
        self.in_flight.append((body, comment, pending))
        return pending

    def finish(self, status=idl.TXN_SUCCESS, apply=True):
        """Complete the oldest transaction: applied (if ``apply``) and reported as ``status``."""
        body, _, pending = self.in_flight.pop(0)
        if status == idl.TXN_SUCCESS and apply:
            status = self.commit(body)
        pending.result = idl.TxnResult(status, "" if status == idl.TXN_SUCCESS else "boom")


@pytest.fixture
def clock():
    return Clock()


def reconciler(replica, clock):
    return TunnelReconciler(replica, PEER, log=logging.getLogger("test.tunnel"), clock=clock)


def test_reconciler_creates_once_and_then_rests(clock):
    replica = FakeReplica()
    rec = reconciler(replica, clock)
    rec.step(snapshot())
    rec.step(snapshot())  # in flight: no second transaction
    assert len(replica.in_flight) == 1 and rec.state == "pending"
    assert "canopy: tunnel vxlan0: create" in replica.in_flight[0][1]
    replica.finish()
    for _ in range(5):
        rec.step(snapshot())
    assert (rec.state, rec.transactions, replica.in_flight) == ("in-sync", 1, [])
    assert rec.wake_in_ms() is None


def test_reconciler_waits_for_the_bridge(clock):
    replica = FakeReplica()
    rec = reconciler(replica, clock)
    rec.step(snapshot(bridge_present=False))
    assert (rec.state, rec.transactions) == ("waiting", 0)


def test_failures_retry_with_bounded_backoff_and_are_logged_with_the_peer(clock, caplog):
    replica = FakeReplica()
    rec = reconciler(replica, clock)
    started_at = []
    while clock.now < 1000.0 + 120:
        rec.step(snapshot())
        if replica.in_flight:
            started_at.append(clock.now)
            replica.finish(idl.TXN_ERROR)
            rec.step(snapshot())
        clock.now += 0.1
    gaps = [round(b - a, 1) for a, b in zip(started_at, started_at[1:])]
    assert gaps[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(gaps) <= BACKOFF_MAX_S + 0.1 and len(started_at) < 12
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and all(PEER in r.getMessage() and "boom" in r.getMessage() for r in errors)
    assert errors[0].getMessage() == f"ovsdb {PEER}: {rec.label}: create transaction failed (error: boom); retrying " \
        "in 0.5s", errors[0].getMessage()
    assert rec.state == "backoff" and rec.last_error == "error: boom"


def test_backoff_wakes_the_session_loop_in_time(clock):
    replica = FakeReplica()
    rec = reconciler(replica, clock)
    rec.step(snapshot())
    replica.finish(idl.TXN_TIMED_OUT)
    rec.step(snapshot())
    assert rec.wake_in_ms() == 500
    clock.now += 0.5
    assert rec.wake_in_ms() == 0
    rec.step(snapshot())
    assert rec.transactions == 2


def test_success_that_does_not_settle_is_not_a_hot_loop(clock):
    replica = FakeReplica()
    rec = reconciler(replica, clock)
    for _ in range(200):  # 20 simulated seconds; the database never takes the write
        rec.step(snapshot())
        if replica.in_flight:
            replica.finish(apply=False)
            replica.seqno += 1  # a reply, and unrelated updates, keep arriving
        clock.now += 0.1
    assert 3 <= rec.transactions <= 7


def test_recovery_resets_the_backoff(clock):
    replica = FakeReplica()
    rec = reconciler(replica, clock)
    rec.step(snapshot())
    replica.finish(idl.TXN_ERROR)
    rec.step(snapshot())  # the failure is seen: back-off from now
    clock.now += 5
    rec.step(snapshot())
    replica.finish()
    rec.step(snapshot())
    assert rec.state == "in-sync"
    replica.ports.clear()  # someone deletes the port: recreated at once
    replica.bridge.ports.clear()
    replica.seqno += 1
    rec.step(snapshot())
    assert rec.transactions == 3 and rec.state == "pending"


def test_conflict_is_logged_once_and_nothing_is_written(clock, caplog):
    replica = FakeReplica(port("vxlan0", iface(options={"key": "5001"})))
    rec = reconciler(replica, clock)
    for _ in range(10):
        rec.step(snapshot())
        replica.seqno += 1
        clock.now += 1
    conflicts = [r for r in caplog.records if "leaving it alone" in r.getMessage()]
    assert len(conflicts) == 1 and conflicts[0].levelno == logging.ERROR and PEER in conflicts[0].getMessage()
    assert (rec.state, rec.transactions, replica.in_flight) == ("conflict", 0, [])


def test_unexpected_error_is_logged_and_backed_off(clock, caplog):
    replica = FakeReplica()

    def broken(body, comment=""):
        raise KeyError("options")

    replica.transact = broken
    rec = reconciler(replica, clock)
    rec.step(snapshot())
    rec.step(snapshot())
    assert rec.state == "backoff" and rec.transactions == 1
    assert any(r.exc_info for r in caplog.records)


def test_backoff_delay_doubles_and_is_capped():
    assert [backoff_delay(n) for n in range(5)] == [0.0, 0.5, 1.0, 2.0, 4.0]
    assert backoff_delay(50) == BACKOFF_MAX_S
