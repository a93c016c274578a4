"""Reads never wait for a write (docs/store.md "Reads do not wait for writes"): the store's lock is held through a
commit's transaction and fsync, and the REST reads that look into the store itself (GET /v1/changes, GET /v1/ha and
/metrics, which reads the pair's status) answer from a second, read-only SQLite connection meanwhile, with the last
committed state. The commit is held open at the start of its COMMIT statement (SQLite's trace callback, in the
committing thread): the writer holds the store's lock and SQLite's write lock, its changes written but not
committed, which is where a slow fsync keeps it. A read that had to wait for the store's lock says so at once
(SpyLock), so nothing here measures time."""

from __future__ import annotations

import threading

from controller.ha import STARTUP_DEAD_INTERVALS
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
