"""ovsdb/bridge.py and the bridge safety view: what is unsafe, the plan, the writes, and the reconciler
restoring the settings when someone changes them. Rows are stand-ins shaped like ``ovs`` IDL rows."""

from __future__ import annotations

import copy
import logging
from types import SimpleNamespace

from controller.discovery import VrsSnapshot, bridge_problems
from controller.policy import Policy
from controller.state import State
from ovsdb import idl
from ovsdb.bridge import SECURE, BridgeReconciler, apply_bridge, plan_bridge
from ovsdb.rowsync import CONFLICT

PEER = "10.250.0.11:51034"


def bridge_row(fail_mode=(), protocols=()):
    return SimpleNamespace(name="br-int", fail_mode=list(fail_mode), protocols=list(protocols))


def snapshot(fail_mode="", protocols=(), present=True):
    return VrsSnapshot(session="ovsdb:" + PEER, peer=PEER, chassis="hv1", bridge_present=present,
                       datapath_id=1, fail_mode=fail_mode, protocols=tuple(protocols))


class Writer:
    """Applies writes to the stand-in rows like ovsdb-server would (mutations keep other elements)."""

    def set(self, row, column, value):
        setattr(row, column, [value] if column == "fail_mode" else copy.deepcopy(value))

    def add_to_set(self, row, column, value):
        if value not in getattr(row, column):
            getattr(row, column).append(value)


def test_ovs_defaults_are_unsafe_and_say_why():
    problems = bridge_problems("", ())
    assert any("standalone" in p for p in problems) and any("protocols" in p for p in problems)
    assert bridge_problems("standalone", ("OpenFlow13", "OpenFlow14"))
    assert bridge_problems("secure", ("OpenFlow13",)) == ("protocols OpenFlow13 lack OpenFlow14",)
    assert bridge_problems("secure", ("OpenFlow10", "OpenFlow13", "OpenFlow14")) == ()


def test_plan_sets_secure_and_adds_only_the_missing_protocols():
    row = bridge_row(protocols=["OpenFlow10", "OpenFlow13"])
    change = plan_bridge(row)
    assert (change.kind, change.add_protocols) == (SECURE, ("OpenFlow14",))
    apply_bridge(change, Writer())
    assert row.fail_mode == ["secure"] and row.protocols == ["OpenFlow10", "OpenFlow13", "OpenFlow14"]
    assert plan_bridge(row) is None


def test_a_default_bridge_gets_exactly_the_two_versions():
    row = bridge_row()
    apply_bridge(plan_bridge(row), Writer())
    assert (row.fail_mode, sorted(row.protocols)) == (["secure"], ["OpenFlow13", "OpenFlow14"])


def test_a_schema_without_the_columns_is_a_conflict_never_written():
    change = plan_bridge(bridge_row(), writable=False)
    assert change.kind == CONFLICT and "schema" in change.reason


class Replica:
    def __init__(self, row):
        self.row, self.change_seqno, self.in_flight = row, 1, []

    def rows(self, table):
        return [self.row] if table == "Bridge" else []

    def transact(self, body, comment=""):
        pending = SimpleNamespace(result=None)
        pending.poll = lambda: pending.result
        self.in_flight.append((body, comment, pending))
        return pending

    def finish(self, ok=True):
        body, _, pending = self.in_flight.pop(0)
        if ok:
            body(Writer())
            self.change_seqno += 1
        pending.result = idl.TxnResult(idl.TXN_SUCCESS if ok else idl.TXN_ERROR, "" if ok else "refused")


def test_reconciler_secures_the_bridge_and_restores_it_after_an_operator_change():
    row = bridge_row(["standalone"])
    replica, now = Replica(row), [0.0]
    rec = BridgeReconciler(replica, PEER, "br-int", logging.getLogger("test.bridge"), clock=lambda: now[0])
    rec.step(snapshot())
    assert len(replica.in_flight) == 1 and "canopy: bridge br-int: secure" in replica.in_flight[0][1]
    replica.finish()
    rec.step(snapshot())
    assert rec.state == "in-sync" and row.fail_mode == ["secure"]
    row.fail_mode, row.protocols = ["standalone"], ["OpenFlow13", "OpenFlow15"]  # someone changes it
    replica.change_seqno += 1
    now[0] += 60
    rec.step(snapshot())
    replica.finish()
    rec.step(snapshot())
    assert row.fail_mode == ["secure"] and row.protocols == ["OpenFlow13", "OpenFlow15", "OpenFlow14"]
    assert (rec.state, rec.transactions) == ("in-sync", 2)


def test_a_refused_write_is_logged_as_unsafe_and_retried(caplog):
    replica, now = Replica(bridge_row()), [0.0]
    rec = BridgeReconciler(replica, PEER, "br-int", logging.getLogger("test.bridge"), clock=lambda: now[0])
    rec.step(snapshot())
    replica.finish(ok=False)
    rec.step(snapshot())
    assert rec.state == "backoff" and "refused" in rec.last_error
    assert any("NOT fail-secure" in r.getMessage() and PEER in r.getMessage() for r in caplog.records)
    now[0] += 1
    rec.step(snapshot())
    assert len(replica.in_flight) == 1


def test_switches_report_each_bridge_safety_and_the_log_says_when_it_is_not(caplog):
    state = State(Policy())
    with caplog.at_level(logging.WARNING, "canopy.state"):
        state.vrs_update(snapshot("standalone", ("OpenFlow10",)))
    [item] = state.switches()
    safety = item["bridge_safety"]
    assert safety["safe"] is False and safety["fail_mode"] == "standalone" and safety["protocols"] == ["OpenFlow10"]
    assert any("OpenFlow13" in p for p in safety["problems"])
    assert any("NOT safe" in r.getMessage() and "hv1" in r.getMessage() for r in caplog.records)
    state.vrs_update(snapshot("secure", ("OpenFlow13", "OpenFlow14")))
    assert state.switches()[0]["bridge_safety"] == {"safe": True, "fail_mode": "secure",
                                                    "protocols": ["OpenFlow13", "OpenFlow14"], "problems": []}
