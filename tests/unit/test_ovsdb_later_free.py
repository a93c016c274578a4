"""The rows a big delete's slices deleted are freed after its last slice is reported, not as each slice's report
returns (ovsdb/laterfree.py, ovsdb/peersession.py): freeing 20,000 rows was ~70-80 ms of CPU before the last slice's
withdrawals. Freed soon after (the memory stays bounded), a run at a time between turns of the event loop.

The session runs in a green thread with the real ``Replica`` and ovs's ``Idl.run``; only the connection is scripted
(tests/unit/test_ovsdb_session_faults.py)."""

import logging
import weakref

from ovsdb import laterfree, server
from ovsdb.rowchanges import RowChanges, deletion
from tests.unit.test_duplicate_macs_pass import opcodes
import eventlet
import ovs.db.idl

from ovsdb.idl import replica as replica_module
from tests.unit.test_ovsdb_session_faults import Link, Sink, add_port, database, ports, started, turns_until


def scripted_replicas(monkeypatch, made):
    """test_ovsdb_session_faults' ``scripted_replicas`` with a subclass of ``Replica`` (the session pauses in a big
    update: ``PeerSession._give_way`` asks whether its connection is one)."""
    monkeypatch.setattr(replica_module, "_session_on", lambda link, probe_ms: link.session)

    class Scripted(server.idl.Replica):
        def __init__(self, link, *args, **kwargs):
            super().__init__(link, *args, **kwargs)
            ovs_idl = self._idl  # as after its monitor request was answered: no request to answer here
            ovs_idl.state, ovs_idl._last_seqno, ovs_idl.cond_changed = ovs.db.idl.Idl.IDL_S_MONITORING, 1, False
            made.setdefault(link.peer, []).append(self)

        def wait(self, timeout_ms, doorbell=None):
            eventlet.sleep(0.001)

    monkeypatch.setattr(server.idl, "Replica", Scripted)


def test_a_big_deletes_rows_live_through_its_last_slices_report_and_are_freed_soon_after(monkeypatch):
    from ovsdb.idl import slices

    monkeypatch.setattr(slices, "SLICE_PORTS", 4)
    monkeypatch.setattr(slices, "LEAD_PORTS", 2)
    made, sink = {}, Sink()
    scripted_replicas(monkeypatch, made)
    manager = server.OvsdbManagerServer("127.0.0.1", 0, sink, provision_tunnel=False, secure_bridge=False,
                                        log=logging.getLogger("test.ovsdb"))
    rows, bridge = database("kvm1", *(("p%d" % n, "vp%d" % n) for n in range(11)))
    link = Link("192.0.2.1:6640", rows)
    session, = started(manager, link)
    try:
        turns_until(lambda: "kvm1" in sink.snaps and len(sink.snaps["kvm1"].ports) == 11)
        replica = made[link.peer][0]._idl
        gone = [row for row in replica.tables["Port"].rows.values() if row.name != "p0"]
        ifaces = [row for row in replica.tables["Interface"].rows.values() if row.name != "p0"]
        alive = weakref.WeakSet(gone + ifaces)
        big = {"Port": {str(row.uuid): {"delete": None} for row in gone},
               "Interface": {str(row.uuid): {"delete": None} for row in ifaces},
               "Bridge": {bridge: {"modify": {"ports": ["set", [["uuid", str(row.uuid)] for row in gone]]}}}}
        del gone, ifaces
        seen = []  # (ports reported, rows of the delete alive) at each report

        def vrs_update(snap, real=sink.vrs_update):
            seen.append((len(snap.ports), len(alive)))
            real(snap)

        sink.vrs_update = vrs_update
        link.send(big)
        turns_until(lambda: not alive)  # freed soon after (a bounded number of turns)
        assert ports(sink.snaps["kvm1"]) == [("p0", "vp0")] and manager.slicing == set()
        assert len(seen) >= 3 and seen[-1] == (1, 20), seen  # sliced; each report with all 20 rows alive
        assert {count for _, count in seen} == {20}, seen
        link.send(add_port(bridge, "p11", "vp11", 12))  # the session goes on reading
        turns_until(lambda: len(sink.snaps["kvm1"].ports) == 2)
    finally:
        session.close()


class _Row:
    """A deleted row's stand-in (what a ``RowChange`` holds)."""


def test_freeing_20000_rows_takes_c_loops_and_a_pause_per_run():
    changes, pauses = RowChanges(), []
    rows = [_Row() for _ in range(20000)]
    changes.rows("Port").update((id(row), deletion(row)) for row in rows[:10000])
    changes.rows("Interface").update((id(row), deletion(row)) for row in rows[10000:])
    refs = list(map(weakref.ref, rows))  # (no callback: a WeakSet's is a Python call per row freed)
    del rows
    later = laterfree.LaterFree()

    def hold_and_free():
        later.hold(changes)
        later.hold(None)
        later.free(lambda: pauses.append((refs[0]() is None, refs[-1]() is None)))

    counted = opcodes(hold_and_free)
    assert not any(ref() for ref in refs) and len(later) == 0 and changes.table("Port") == {}
    runs = -(-20000 // laterfree.FREE_ROWS)
    assert pauses == [(False, True)] * (runs - 1)  # a run freed before each pause, the rest after it
    assert counted <= 40 * runs + 100, counted  # a few dozen bytecodes a run (its pause too): none per row
