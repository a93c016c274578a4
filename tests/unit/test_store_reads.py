"""Reads never wait for a write (docs/store.md "Reads do not wait for writes"): the store's lock is held through a
commit's transaction and fsync, and the REST reads that look into the store itself (GET /v1/changes, GET /v1/ha and
/metrics, which reads the pair's status) answer from a second, read-only SQLite connection meanwhile, with the last
committed state. The commit is held open at the start of its COMMIT statement (SQLite's trace callback, in the
committing thread): the writer holds the store's lock and SQLite's write lock, its changes written but not
committed, which is where a slow fsync keeps it. A read that had to wait for the store's lock says so at once
(SpyLock), so nothing here measures time."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from controller.ha import STARTUP_DEAD_INTERVALS
from controller.store import Change, Store
from tests.unit.interleave import BOUND, Gate, SpyLock, either, finish, run
from tests.unit.test_ha_rules import rest_node


def hold_commits(store, gate: Gate) -> None:
    """Stop every commit of ``store`` at the start of its COMMIT statement until ``gate`` opens."""
    store._db.set_trace_callback(lambda sql: sql.strip().upper() == "COMMIT" and gate.stop())


def test_reads_answer_with_the_last_commit_while_a_commit_is_held_in_its_fsync(tmp_path):
    store, state, pair, call = rest_node(tmp_path)
    pair._decide(pair.started + STARTUP_DEAD_INTERVALS * pair.settings.dead_interval)
    assert pair.role == "active"
    pair.set_solo(True, "a test")  # no standby here: writes are acknowledged by this node alone
    call.api.metrics.attach(pair=pair)  # /metrics shows the pair's status, as in the controller
    assert call("POST", "/v1/tenants", {"name": "first"})[0] == 201

    contended = threading.Event()
    store._lock = SpyLock(store._lock, contended)
    gate = Gate()
    hold_commits(store, gate)
    writing, written, failed = run(call, "POST", "/v1/tenants", {"name": "second"})
    assert gate.entered.wait(BOUND), "the write never reached its COMMIT"

    answers = {}
    for path in ("/v1/changes", "/v1/ha", "/metrics", "/v1/status"):
        _, read, _ = run(lambda p=path: answers.setdefault(p, call("GET", p, None)))
        either(read, contended)
        assert not contended.is_set(), f"GET {path} waited for the store's lock, held by the commit in flight"
        assert answers[path][0] == 200, (path, answers[path])
    assert not written.is_set(), "the write finished before the reads: they proved nothing"

    changes = answers["/v1/changes"][1]
    assert [c["body"]["name"] for c in changes["items"]] == ["first"]  # the last commit, nothing of the one in flight
    assert changes["last_seq"] == 1 and changes["oldest_seq"] == 1
    assert b"canopy_ha_replication_lag" in answers["/metrics"][1]
    replication = answers["/v1/ha"][1]["replication"]
    assert replication["direction"] == "out" and replication["seq"] == 1, replication

    gate.open()
    finish(writing)
    assert not failed, failed
    assert call("GET", "/v1/ha", None)[1]["replication"]["seq"] == 2
    _, changes = call("GET", "/v1/changes", None)
    assert [c["body"]["name"] for c in changes["items"]] == ["first", "second"] and changes["last_seq"] == 2
    store.close()


def test_changes_names_the_last_seq_of_the_state_it_lists_when_state_has_not_taken_the_commit_yet(tmp_path):
    """A commit's COMMIT has returned (the reader sees it) but its write has not reached State yet (it is held in
    the marker written after the COMMIT, still under the store's lock): GET /v1/changes lists that change, and its
    ``last_seq`` is that of the same committed state, never an older one from State (a client polling with
    ``since=last_seq`` would be given the change again)."""
    store, state, pair, call = rest_node(tmp_path)
    pair._decide(pair.started + STARTUP_DEAD_INTERVALS * pair.settings.dead_interval)
    pair.set_solo(True, "a test")
    assert call("POST", "/v1/tenants", {"name": "first"})[0] == 201

    gate, write_marker = Gate(), store._write_marker
    store._write_marker = lambda seq, ts: (gate.stop(), write_marker(seq, ts))
    writing, written, failed = run(call, "POST", "/v1/tenants", {"name": "second"})
    assert gate.entered.wait(BOUND), "the write never reached its marker"
    try:
        status, changes = call("GET", "/v1/changes", None)
        assert not written.is_set() and state.last_seq == 1, "State took the write before the read: it proved nothing"
    finally:
        gate.open()
        finish(writing)
    assert status == 200 and not failed, (changes, failed)
    assert [c["seq"] for c in changes["items"]] == [1, 2]
    assert changes["last_seq"] == 2 and changes["oldest_seq"] == 1, changes
    store.close()


def test_a_read_error_after_which_sqlite_ended_the_transaction_is_raised_as_it_was(tmp_path):
    """SQLite rolls a transaction back itself on some errors (an I/O error, out of memory): the reader raises that
    error, not one of its own ending a transaction that is gone, and the next read answers."""
    store = Store(str(tmp_path))
    store.commit([Change("tenant", "t1", "put", {"name": "first"})])

    def read_then_fail(db):
        db.execute("SELECT seq FROM changes").fetchall()
        db.execute("ROLLBACK")  # what SQLite does itself before raising SQLITE_IOERR or SQLITE_NOMEM
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        store.reader._read(read_then_fail)
    assert not store.reader._db.in_transaction
    assert [c.id for c in store.reader.changes(0, 10)[0]] == ["t1"]
    store.close()
