"""A hardware VTEP's remote MACs are planned from what changed (ovsdb/vtep_sync.py RemoteMacs): the rows the
replica reports changed and the difference between two desired states, not every MAC on every change."""

import random

from controller.discovery import VtepDesired
from ovsdb import idl
from ovsdb.rowchanges import RowChange, RowChanges, row_key
from ovsdb.vtep import plan_vtep
from ovsdb.vtep_sync import VtepReconciler
from tests.unit.sinks import Reports
from tests.unit.vtep_fakes import HV1, HV2, HV3, Clock, FakeReplica, FakeVtepDb

TRACKED = ("Ucast_Macs_Remote", "Logical_Switch", "Physical_Locator")


class TrackingReplica(FakeReplica):
    """A FakeReplica that reports, like ovsdb.idl.Replica.take_changes, the rows each transaction changed;
    ``macs_read`` counts reads of the per-endpoint tables."""

    def __init__(self, db):
        super().__init__(db)
        self.macs_read = 0
        self._seen = self._state()

    def _state(self):
        return {t: {row_key(r): (r, tuple(sorted((k, repr(v)) for k, v in vars(r).items())))
                    for r in self.db.all(t)} for t in TRACKED}

    def rows(self, table):
        if table in ("Ucast_Macs_Remote", "Ucast_Macs_Local", "Mcast_Macs_Local"):
            self.macs_read += 1
        return super().rows(table)

    def take_changes(self):
        now, changes = self._state(), RowChanges()
        for table in TRACKED:
            before, after = self._seen[table], now[table]
            for uuid in before.keys() - after.keys():
                changes.record(table, uuid, RowChange(before[uuid][0], deleted=True))
            for uuid, (row, values) in after.items():
                if before.get(uuid, (None, None))[1] != values:
                    changes.record(table, uuid, RowChange(row))
        self._seen = now
        return changes


def desired(macs, vnis=(5001, 5002)):
    return VtepDesired(logical_switches=tuple(vnis), bindings=(("p1", 100, 5001),),
                       remote_macs=tuple(sorted(macs)), flood=((5001, (HV1, HV2)),))


def run(rec, replica, want, steps=4):
    for _ in range(steps):
        rec.step("tor1", want)
        rec.note(replica.take_changes())


def remote(db):
    return {(r.logical_switch.tunnel_key[0] if isinstance(r.logical_switch.tunnel_key, list)
             else r.logical_switch.tunnel_key, r.MAC, r.ipaddr or None, r.locator.dst_ip)
            for r in db.all("Ucast_Macs_Remote")}


def mac(i):
    return "02:00:00:01:%02x:%02x" % (i >> 8, i & 0xff)


def test_one_mac_more_is_planned_without_reading_every_mac():
    db = FakeVtepDb()
    replica = TrackingReplica(db)
    rec = VtepReconciler(replica, "peer", clock=Clock())
    rec.note(None)
    macs = {(5001, mac(i), None, HV1) for i in range(200)}
    run(rec, replica, desired(macs))
    assert remote(db) == macs and rec.state == "in-sync"
    reads, plans = replica.macs_read, rec.delta_plans
    macs.add((5001, mac(999), "10.0.1.9", HV3))
    run(rec, replica, desired(macs))
    assert remote(db) == macs and rec.state == "in-sync"
    assert replica.comments[-1].endswith("ucast_add 1")
    assert replica.macs_read == reads and rec.delta_plans > plans


def test_random_desired_states_converge_like_a_full_plan():
    rng = random.Random(5)
    db = FakeVtepDb()
    replica = TrackingReplica(db)
    rec = VtepReconciler(replica, "peer", clock=Clock())
    rec.note(None)
    macs = set()
    for _ in range(60):
        for _ in range(rng.randrange(1, 4)):
            roll = rng.random()
            if roll < 0.5 or not macs:
                macs.add((rng.choice([5001, 5002]), mac(rng.randrange(40)), rng.choice([None, "10.0.1.5"]),
                          rng.choice([HV1, HV2, HV3])))
            else:
                macs.discard(rng.choice(sorted(macs, key=str)))
        by_key = {}
        for m in sorted(macs, key=str):
            by_key.setdefault((m[0], m[1]), m)  # one value per MAC and VNI, as derive gives them
        macs = set(by_key.values())
        want = desired(macs)
        if db.all("Ucast_Macs_Remote") and rng.random() < 0.3:  # someone else deletes one of Canopy's rows
            db.tables["Ucast_Macs_Remote"].remove(rng.choice(db.all("Ucast_Macs_Remote")))
            replica.change_seqno += 1
            rec.note(replica.take_changes())
        run(rec, replica, want)
        assert rec.state == "in-sync", rec.describe()
        assert remote(db) == macs
        assert plan_vtep(want, db.rows()).empty
    assert rec.delta_plans > 30


def test_the_macs_a_vtep_learns_are_applied_one_row_at_a_time():
    from ovsdb.vtep import build_vtep_snapshot
    from ovsdb.vtep_reporter import VtepReporter

    rng = random.Random(7)
    db = FakeVtepDb()
    for vni in (5001, 5002):
        db.logical_switch(f"canopy-{vni}", vni)
    for k in range(10):  # learnt before the first read: read whole, then changed and deleted row by row
        db.switch_learns(rng.choice([5001, 5002]), mac(k))
    sink = Reports()
    reporter = VtepReporter(sink, "v1", "10.0.0.9:1")
    reporter.refresh(db.all("Physical_Switch"), db.all("Ucast_Macs_Local"))

    def boom():
        raise AssertionError("every local MAC was read again")

    for _ in range(100):
        changes = RowChanges()
        if rng.random() < 0.6 or not db.all("Ucast_Macs_Local"):
            row = db.switch_learns(rng.choice([5001, 5002]), mac(rng.randrange(50)))
            changes.record("Ucast_Macs_Local", row_key(row), RowChange(row))
        else:
            row = rng.choice(db.all("Ucast_Macs_Local"))
            db.tables["Ucast_Macs_Local"].remove(row)
            changes.record("Ucast_Macs_Local", row_key(row), RowChange(row, deleted=True))
        reporter.refresh(db.all("Physical_Switch"), boom, changes)
        scratch = build_vtep_snapshot("vtep:tor1", "10.0.0.9:1", db.all("Physical_Switch"), db.all("Ucast_Macs_Local"))
        assert sink.updates[-1] == scratch


def test_a_failed_transaction_is_followed_by_a_full_plan():
    """What a failed transaction wrote is not known: the plans after it read every MAC again, not a delta."""
    db = FakeVtepDb()
    replica, clock = TrackingReplica(db), Clock()
    rec = VtepReconciler(replica, "peer", clock=clock)
    rec.note(None)
    macs = {(5001, mac(i), None, HV1) for i in range(50)}
    run(rec, replica, desired(macs))
    assert rec.state == "in-sync"
    macs.add((5001, mac(999), "10.0.1.9", HV3))
    replica.outcomes = [idl.TxnResult(idl.TXN_ERROR, "boom")]
    plans = rec.delta_plans
    rec.step("tor1", desired(macs))  # a delta plan, its transaction failing
    assert rec.delta_plans == plans + 1
    plans = rec.delta_plans
    rec.step("tor1", desired(macs))  # the failure seen: backed off
    assert rec.state == "backoff" and rec.last_error == "error: boom"
    clock.now += 1
    run(rec, replica, desired(macs))
    assert remote(db) == macs and rec.state == "in-sync"
    assert rec.delta_plans == plans  # every plan since the failure a full one
