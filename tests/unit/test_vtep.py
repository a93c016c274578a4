"""ovsdb/vtep.py and ovsdb/vtep_sync.py: the hardware VTEP snapshot, the plan, and its writer.

Rows are stand-ins shaped like ``ovs`` IDL rows (optional columns as lists, references as rows).
``FakeVtepDb`` (tests/unit/vtep_fakes.py) applies a plan the way ovsdb-server would, so tests assert
what the database ends up holding, not which calls were made.
"""

from __future__ import annotations

import json
import logging
import os
import select
from pathlib import Path

import pytest

from controller.discovery import VtepDesired, VtepMac, VtepPort
from ovsdb import idl
from ovsdb.idl import links
from ovsdb.vtep import COLUMNS, build_vtep_snapshot, canopy_vni, plan_vtep
from ovsdb.vtep_reporter import VtepReporter
from ovsdb.vtep_sync import VtepReconciler
from tests.unit.vtep_fakes import HV1, HV2, HV3, MAC1, MAC2, MAC3, OWN_IP, Clock, FakeReplica, FakeVtepDb, \
    converge, desired

SCHEMA = Path("/usr/share/openvswitch/vtep.ovsschema")


# The snapshot.

def test_snapshot_reports_switch_ports_bindings_and_learned_macs():
    db = FakeVtepDb()
    db.switch.management_ips = ["192.0.2.9"]
    converge(db, desired())
    db.switch_learns(5001, "02:00:00:00:0B:01")
    snap = build_vtep_snapshot("s1", "10.250.0.9:4000", db.all("Physical_Switch"), db.all("Ucast_Macs_Local"))
    assert (snap.name, snap.tunnel_ip, snap.management_ips) == ("tor1", OWN_IP, ("192.0.2.9",))
    assert snap.description == "OVS VTEP Emulator"
    assert snap.ports == (VtepPort("p1", ((100, 5001),)), VtepPort("p2", ()))
    assert snap.local_macs == (VtepMac("02:00:00:00:0b:01", 5001, None, OWN_IP),)


def test_snapshot_leaves_out_switches_without_tunnel_key_and_is_none_without_physical_switch():
    db = FakeVtepDb()
    keyless = db.logical_switch("ops-ls", None)
    db.ports["p2"].vlan_bindings[7] = keyless
    db.add("Ucast_Macs_Local", MAC=MAC3, logical_switch=keyless, ipaddr="10.0.0.3", locator=db.own)
    snap = build_vtep_snapshot("s1", "p", db.all("Physical_Switch"), db.all("Ucast_Macs_Local"))
    assert snap.ports == (VtepPort("p1", ()), VtepPort("p2", ())) and snap.local_macs == ()
    assert build_vtep_snapshot("s1", "p", [], []) is None


def test_several_physical_switches_manage_the_first_by_name_and_log_once(caplog):
    db = FakeVtepDb()
    db.add("Physical_Switch", name="a-ps", description="", tunnel_ips=[], management_ips=[], ports=[])
    seen = []
    sink = type("Sink", (), {"vtep_update": lambda self, s: seen.append(s), "vtep_gone": lambda self, s: None})()
    reporter = VtepReporter(sink, "s1", "peer", logging.getLogger("t"))
    with caplog.at_level(logging.WARNING):
        reporter.refresh(db.all("Physical_Switch"), [])
        db.switch.description = "changed"
        reporter.refresh(db.all("Physical_Switch"), [])
    assert [s.name for s in seen] == ["a-ps"]  # tor1 changing does not change a-ps's snapshot
    assert len([r for r in caplog.records if "managing only a-ps" in r.getMessage()]) == 1


def test_reporter_updates_on_change_only_and_reports_gone_once():
    events = []
    sink = type("Sink", (), {"vtep_update": lambda self, s: events.append(("update", s.description)),
                             "vtep_gone": lambda self, s: events.append(("gone", s))})()
    db = FakeVtepDb()
    reporter = VtepReporter(sink, "s1", "peer")
    reporter.refresh([], [])  # no physical switch yet: nothing to report
    assert reporter.refresh(db.all("Physical_Switch"), []) is True
    assert reporter.refresh(db.all("Physical_Switch"), []) is False
    reporter.gone()
    reporter.gone()
    assert events == [("update", "OVS VTEP Emulator"), ("gone", "vtep:tor1")]  # keyed by Physical_Switch name
    silent = VtepReporter(sink, "s2", "peer")
    silent.gone()
    assert events[-1] == ("gone", "vtep:tor1")


# The plan: creating, converging, reusing.

def test_empty_database_gets_exactly_the_desired_rows_in_one_transaction():
    db = FakeVtepDb()
    assert converge(db, desired()) == 1
    ls = db.ls(5001)
    assert (ls.tunnel_key, ls.replication_mode) == (5001, "source_node")
    assert db.bindings("p1") == {100: "canopy-5001"} and db.bindings("p2") == {}
    assert db.remote_macs() == {("canopy-5001", MAC1, "10.0.1.11", HV1), ("canopy-5001", MAC2, "", HV2)}
    assert db.flood() == {"canopy-5001": [HV1, HV2]}
    assert db.locator_ips() == sorted([HV1, HV2])  # one each, shared by MACs and flood; own one unused


def test_converged_database_plans_nothing_even_from_scratch_state():
    db = FakeVtepDb()
    converge(db, desired())
    plan = plan_vtep(desired(), db.rows())
    assert plan.empty and plan.summary() == "" and not plan.conflicts and not plan.waiting
    # Same desired built again (a controller restart): equal values, still nothing to do.
    assert plan_vtep(VtepDesired(**{k: tuple(v) for k, v in desired().__dict__.items()}), db.rows()).empty


def test_existing_locators_are_reused_never_duplicated():
    db = FakeVtepDb()
    tunnel_held = db.locator(HV1)
    db.add("Tunnel", local=db.own, remote=tunnel_held)  # as ovs-vtep's BFD bookkeeping holds it
    many = [(5001, "02:00:00:00:02:%02x" % n, None, HV1) for n in range(5)]
    converge(db, desired(remote=many, flood=((5001, (HV1, OWN_IP)),)))
    assert db.locator_ips() == sorted([HV1, OWN_IP])
    assert {r.locator for r in db.all("Ucast_Macs_Remote")} == {tunnel_held}
    assert set(db.all("Mcast_Macs_Remote")[0].locator_set.locators) == {tunnel_held, db.own}


def test_mac_moving_changing_ip_and_flood_list_changing_are_updated_in_place():
    db = FakeVtepDb()
    converge(db, desired())
    [row1] = [r for r in db.all("Ucast_Macs_Remote") if r.MAC == MAC1]
    old_set = db.all("Mcast_Macs_Remote")[0].locator_set
    moved = desired(remote=((5001, MAC1, "10.0.1.99", HV3), (5001, MAC2, None, HV2)), flood=((5001, (HV2, HV3)),))
    plan = plan_vtep(moved, db.rows())
    assert (len(plan.ucast_update), len(plan.flood_set), plan.ucast_add, plan.ucast_delete) == (1, 1, [], [])
    db.apply(plan)
    assert [r for r in db.all("Ucast_Macs_Remote") if r.MAC == MAC1] == [row1]
    assert db.remote_macs() == {("canopy-5001", MAC1, "10.0.1.99", HV3), ("canopy-5001", MAC2, "", HV2)}
    assert db.flood() == {"canopy-5001": [HV2, HV3]}
    assert old_set not in db.all("Physical_Locator_Set")  # immutable: replaced, then collected
    assert db.locator_ips() == sorted([HV2, HV3]) and plan_vtep(moved, db.rows()).empty


def test_macs_are_compared_case_insensitively_and_duplicates_removed():
    db = FakeVtepDb()
    converge(db, desired())
    [row] = [r for r in db.all("Ucast_Macs_Remote") if r.MAC == MAC1]
    row.MAC = MAC1.upper()
    assert plan_vtep(desired(), db.rows()).empty
    db.add("Ucast_Macs_Remote", MAC=MAC1, logical_switch=db.ls(5001), ipaddr="", locator=row.locator)
    plan = plan_vtep(desired(), db.rows())
    assert len(plan.ucast_delete) == 1 and plan.summary() == "ucast_delete 1"


def test_empty_flood_list_means_no_multicast_row():
    db = FakeVtepDb()
    converge(db, desired())
    converge(db, desired(flood=((5001, ()),)))
    assert db.flood() == {} and db.all("Physical_Locator_Set") == []


def test_old_schema_without_replication_mode_is_not_written_it():
    db = FakeVtepDb(replication_mode=False)
    converge(db, desired())
    assert not hasattr(db.ls(5001), "replication_mode") and plan_vtep(desired(), db.rows()).empty


def test_a_vni_used_only_by_a_binding_still_gets_its_switch():
    db = FakeVtepDb()
    converge(db, desired(lss=(), bindings=(("p2", 200, 5002),), remote=(), flood=()))
    assert db.bindings("p2") == {200: "canopy-5002"} and db.ls(5002).tunnel_key == 5002


def test_canopy_switch_with_a_wrong_key_is_corrected():
    db = FakeVtepDb()
    db.logical_switch("canopy-5001", 42)
    converge(db, desired())
    assert [ls.tunnel_key for ls in db.all("Logical_Switch")] == [5001]


# The plan: removing, in order.

def test_removal_goes_bindings_and_macs_first_then_the_switch_once_unreferenced():
    db = FakeVtepDb()
    converge(db, desired())
    db.switch_learns(5001, "02:00:00:00:0b:01")
    db.switch_floods_locally(5001)

    first = plan_vtep(None, db.rows())
    assert first.ls_delete == [] and any("canopy-5001" in w for w in first.waiting)
    db.apply(first)
    assert (db.bindings("p1"), db.remote_macs(), db.flood()) == ({}, set(), {})
    assert db.ls(5001) is not None  # the switch's own local rows still reference it

    again = plan_vtep(None, db.rows())
    assert again.empty and "1 Ucast_Macs_Local, 1 Mcast_Macs_Local" in again.waiting[0]
    db.switch_clears_local(5001)  # what the switch does once the binding is gone
    last = plan_vtep(None, db.rows())
    assert [ls.name for ls in last.ls_delete] == ["canopy-5001"]
    db.apply(last)
    assert db.all("Logical_Switch") == [] and plan_vtep(None, db.rows()).empty


def test_dropping_one_binding_keeps_the_rest():
    db = FakeVtepDb()
    both = desired(bindings=(("p1", 100, 5001), ("p2", 200, 5001)))
    converge(db, both)
    assert db.bindings("p2") == {200: "canopy-5001"}
    converge(db, desired())
    assert (db.bindings("p1"), db.bindings("p2")) == ({100: "canopy-5001"}, {})


def test_rebinding_a_vlan_to_another_canopy_switch_replaces_it_and_removes_the_old_switch():
    db = FakeVtepDb()
    converge(db, desired())
    moved = desired(lss=(5002,), bindings=(("p1", 100, 5002),), remote=(), flood=())
    assert converge(db, moved) == 2  # rebind and clean the old switch's MACs, then delete it
    assert db.bindings("p1") == {100: "canopy-5002"}
    assert [ls.name for ls in db.all("Logical_Switch")] == ["canopy-5002"]


def test_foreign_switches_their_bindings_and_macs_are_never_touched():
    db = FakeVtepDb()
    foreign = db.logical_switch("ops-5001", 7000)
    db.ports["p1"].vlan_bindings[300] = foreign
    db.add("Ucast_Macs_Remote", MAC=MAC3, logical_switch=foreign, ipaddr="", locator=db.locator(HV3))
    db.add("Mcast_Macs_Remote", MAC="unknown-dst", logical_switch=foreign,
           locator_set=db.add("Physical_Locator_Set", locators=[db.own]), ipaddr="")
    before = (db.bindings("p1"), db.remote_macs(), db.flood())
    converge(db, desired())
    converge(db, None)
    assert db.all("Logical_Switch") == [foreign]
    assert (db.bindings("p1"), db.remote_macs(), db.flood()) == before


def test_a_vlan_held_by_a_foreign_switch_is_a_conflict_and_left_alone():
    db = FakeVtepDb()
    foreign = db.logical_switch("ops", 7000)
    db.ports["p1"].vlan_bindings[100] = foreign
    converge(db, desired())
    plan = plan_vtep(desired(), db.rows())
    assert plan.empty and plan.conflicts == ["port p1 VLAN 100 is bound to logical switch 'ops', not Canopy's"]
    assert db.bindings("p1") == {100: "ops"}


def test_a_foreign_switch_with_the_same_key_is_reported_and_ours_is_still_made():
    db = FakeVtepDb()
    db.logical_switch("ops", 5001)
    converge(db, desired())
    plan = plan_vtep(desired(), db.rows())
    assert plan.conflicts == ["logical switch 'ops' (not Canopy's) also has tunnel_key 5001"]
    assert db.bindings("p1") == {100: "canopy-5001"}


def test_a_missing_port_waits_and_the_rest_is_written():
    db = FakeVtepDb()
    converge(db, desired(bindings=(("p1", 100, 5001), ("p9", 100, 5001))))
    plan = plan_vtep(desired(bindings=(("p1", 100, 5001), ("p9", 100, 5001))), db.rows())
    assert plan.empty and plan.waiting == ["port p9 is not on physical switch tor1"]
    assert db.bindings("p1") == {100: "canopy-5001"}


def test_canopy_names_are_canonical():
    assert [canopy_vni(n) for n in ("canopy-5001", "canopy-05001", "canopy-", "canopy-x", "ops")] == \
        [5001, None, None, None, None]


@pytest.mark.skipif(not SCHEMA.exists(), reason="openvswitch-vtep's vtep.ovsschema not installed")
def test_every_replicated_column_exists_in_the_vtep_schema():
    tables = json.loads(SCHEMA.read_text())["tables"]
    missing = [(t, c) for t, cols in COLUMNS.items() for c in cols if c not in tables.get(t, {}).get("columns", {})]
    assert missing == []


# The reconciler.

def test_reconciler_converges_and_then_stays_quiet():
    db = FakeVtepDb()
    replica, clock = FakeReplica(db), Clock()
    rec = VtepReconciler(replica, "peer", clock=clock)
    rec.step(None, desired())
    assert rec.state == "waiting" and replica.comments == []  # no switch name yet
    for _ in range(4):
        rec.step("tor1", desired())
    assert rec.state == "in-sync" and rec.transactions == 1
    assert replica.comments == ["canopy: vtep tor1: ls_create 1, bind 1, ucast_add 2, flood_set 1"]
    assert rec.describe()["switch"] == "tor1"


def test_reconciler_is_settled_with_the_desired_state_it_last_found_written():
    """What GET /v1/vteps ``programmed_seq`` reads (controller/programmed.py): in sync with this very desired state."""
    replica = FakeReplica(FakeVtepDb())
    rec = VtepReconciler(replica, "peer", clock=Clock())
    wanted = desired()
    rec.step("tor1", wanted)  # a transaction in flight
    assert not rec.settled(wanted)
    for _ in range(3):
        rec.step("tor1", wanted)
    assert rec.state == "in-sync" and rec.settled(wanted)
    newer = desired(flood=())
    assert not rec.settled(newer)  # handed, not yet stepped: not known written
    for _ in range(3):
        rec.step("tor1", newer)
    assert rec.settled(newer) and not rec.settled(wanted)


def test_reconciler_never_plans_a_desired_state_not_known_yet_as_empty():
    db = FakeVtepDb()
    replica = FakeReplica(db)
    first = VtepReconciler(replica, "peer", clock=Clock())
    for _ in range(3):
        first.step("tor1", desired())
    assert first.state == "in-sync" and first.transactions == 1
    # a controller that has just started: no desired state for tor1 yet; its rows stay
    rec = VtepReconciler(replica, "peer", clock=Clock())
    for _ in range(3):
        rec.step("tor1", None)
    assert rec.state == "waiting" and rec.transactions == 0 and len(replica.comments) == 1
    rec.step("tor1", desired())  # the same rows, once known: nothing to write
    assert rec.state == "in-sync" and rec.transactions == 0
    for _ in range(3):
        rec.step("tor1", VtepDesired())  # empty is "nothing of Canopy's": the rows go
    assert rec.transactions >= 1 and "unbind 1, ucast_delete 2" in replica.comments[1]


def test_reconciler_backs_off_after_a_failure_and_a_new_desired_state_waits_for_it(caplog):
    db = FakeVtepDb()
    replica, clock = FakeReplica(db), Clock()
    replica.outcomes = [idl.TxnResult(idl.TXN_ERROR, "constraint violation")]
    rec = VtepReconciler(replica, "10.250.0.9:4000", clock=clock)
    with caplog.at_level(logging.ERROR):
        rec.step("tor1", desired())
        rec.step("tor1", desired())
    assert rec.state == "backoff" and "constraint violation" in rec.last_error
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert line.startswith("ovsdb 10.250.0.9:4000: vtep tor1: transaction (") and \
        line.endswith(") failed (error: constraint violation); retrying in 0.5s"), line
    rec.step("tor1", desired(flood=()))
    assert rec.transactions == 1 and rec.wake_in_ms() == 500
    clock.now += 0.5
    rec.step("tor1", desired(flood=()))
    rec.step("tor1", desired(flood=()))
    assert (rec.transactions, rec.state, rec.last_error) == (2, "in-sync", "")


def test_reconciler_logs_a_conflict_once_and_its_resolution(caplog):
    db = FakeVtepDb()
    db.ports["p1"].vlan_bindings[100] = db.logical_switch("ops", 7000)
    replica = FakeReplica(db)
    rec = VtepReconciler(replica, "peer", clock=Clock())
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            rec.step("tor1", desired())
            replica.change_seqno += 1
        assert rec.state == "conflict" and rec.describe()["conflicts"]
        del db.ports["p1"].vlan_bindings[100]
        replica.change_seqno += 1
        rec.step("tor1", desired())
        rec.step("tor1", desired())
    assert len([r for r in caplog.records if "leaving it alone" in r.getMessage()]) == 1
    assert "resolved: port p1 VLAN 100" in caplog.text and db.bindings("p1") == {100: "canopy-5001"}


# The session loop's doorbell (ovsdb/idl/links.py).

def test_doorbell_keeps_one_ring_and_never_reads_an_empty_pipe(monkeypatch):
    bell = idl.Doorbell()
    real_read = os.read

    def read(fd, n):  # eventlet's green os.read would wait forever on an empty pipe
        assert readable(), "read from an empty pipe"
        return real_read(fd, n)

    def readable():
        return bool(select.select([bell._read], [], [], 0)[0])

    monkeypatch.setattr(links.os, "read", read)
    try:
        bell.clear()
        bell.ring()
        bell.ring()
        assert readable()
        bell.clear()
        assert not readable()
        bell.clear()
    finally:
        bell.close()
        bell.close()


# The server's desired-state store (ovsdb/server.py), without a listener.

def test_server_keeps_desired_state_by_switch_name():
    from ovsdb.server import OvsdbManagerServer

    server = OvsdbManagerServer("127.0.0.1", 0, sink=None)
    assert server.program_vteps is True and server.vtep_desired("tor1") is None
    server.set_vtep_desired("tor1", desired())
    assert server.vtep_desired("tor1") == desired() and server.vtep_desired(None) is None
    server.set_vtep_desired("tor1", None)
    server.set_vtep_desired("tor1", None)  # idempotent
    assert server.vtep_desired("tor1") is None
    with pytest.raises(ValueError):
        server.set_vtep_desired("", desired())
    with pytest.raises(TypeError):
        server.set_vtep_desired("tor1", {"logical_switches": [5001]})
    assert OvsdbManagerServer("127.0.0.1", 0, None, program_vteps=False).program_vteps is False


def test_server_writes_only_when_active_and_past_the_start_up_hold():
    from ovsdb.server import OvsdbManagerServer

    server = OvsdbManagerServer("127.0.0.1", 0, sink=None)
    assert server.may_write
    server.held = True
    assert not server.may_write
    server.release()
    assert server.may_write and not server.held
    server.set_writes(False)  # an HA standby
    assert not server.may_write


def _vtep_fleet(vrs: int):
    """A manager with ``vrs`` VRS sessions and one following hardware VTEP tor1 (its reconciler in sync with the
    desired state set), as GET /v1/vteps asks it (controller/programmed.py); (manager, tor1's session)."""
    from types import SimpleNamespace

    from controller.discovery import DiscoverySink
    from ovsdb import server

    manager = server.OvsdbManagerServer("127.0.0.1", 0, DiscoverySink())
    for i in range(vrs):
        session = server.PeerSession(manager, f"ovsdb:{i:05d}", SimpleNamespace(peer=f"192.0.2.{i % 250}:{6640 + i}"))
        session._reporter.last = SimpleNamespace(chassis=f"hv{i}", session=f"hv{i}", ports=())
        manager._sessions[session.name] = session
    tor = server.PeerSession(manager, "ovsdb:tor1", SimpleNamespace(peer="192.0.2.254:6640"))
    tor._vtep_reporter.last = SimpleNamespace(name="tor1")
    tor._vtep = SimpleNamespace(settled=lambda wanted: wanted is manager.vtep_desired("tor1"))
    manager._sessions[tor.name] = tor
    manager.following_vtep(tor)  # (as its session does once its peer serves hardware_vtep: PeerSession._follow_vtep)
    manager.set_vtep_desired("tor1", desired())
    return manager, tor


def test_a_vteps_programmed_state_is_found_without_a_look_at_every_vrs_session():
    """vtep_settled (asked for each VTEP GET /v1/vteps lists, at each poll of ``canopy apply --wait``) and
    set_vtep_desired (each VTEP a pass changes) look only at the sessions following a hardware VTEP: on main each
    walked every session, a fleet's VRS's too."""
    from tests.bytecodes import opcodes

    costs = []
    for vrs in (10, 1000):
        manager, tor = _vtep_fleet(vrs)
        assert manager.vtep_settled("tor1") == (tor._vtep, True)
        costs.append((opcodes(lambda: manager.vtep_settled("tor1")),
                      opcodes(lambda: manager.set_vtep_desired("tor1", desired(flood=())))))
        manager._forget(tor)
        assert manager.vtep_settled("tor1") == (None, False)
    assert costs[0] == costs[1], costs
