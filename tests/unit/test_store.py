"""The SQLite store: round trips, the change log, and durability across kill -9."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from controller.store import Change, Store, StoreError


def test_commit_round_trip_and_sequence_numbers(tmp_path):
    store = Store(str(tmp_path))
    done = store.commit([Change("tenant", "a", "put", {"id": "a", "name": "acme"}),
                         Change("tenant", "b", "put", {"id": "b", "name": "b"})], meta={"counters": {"vni": 5}})
    assert [c.seq for c in done] == [1, 2] and done[0].txn == done[1].txn
    store.commit([Change("tenant", "b", "delete", None)])
    assert store.load_objects() == {"tenant": {"a": {"id": "a", "name": "acme"}}}
    assert [(c.seq, c.op) for c in store.changes_since(1)] == [(2, "put"), (3, "delete")]
    assert store.get_meta("counters") == {"vni": 5} and store.last_seq() == 3
    store.close()
    again = Store(str(tmp_path))
    assert again.last_seq() == 3 and again.load_objects()["tenant"]["a"]["name"] == "acme"


def test_a_failed_commit_leaves_nothing(tmp_path):
    store = Store(str(tmp_path))
    store.commit([Change("tenant", "a", "put", {"id": "a"})])
    with pytest.raises(StoreError):
        store.commit([Change("tenant", "b", "put", {"id": "b"}), Change("tenant", "c", "explode", None)])
    assert set(store.load_objects()["tenant"]) == {"a"} and store.last_seq() == 1


def test_change_log_is_trimmed_but_sequence_keeps_counting(tmp_path):
    store = Store(str(tmp_path), keep_changes=3)
    for i in range(5):
        store.commit([Change("tenant", str(i), "put", {"id": str(i)})])
    assert [c.seq for c in store.changes_since(0)] == [3, 4, 5] and store.oldest_seq() == 3
    assert store.last_seq() == 5


def test_store_refuses_a_newer_schema(tmp_path):
    store = Store(str(tmp_path))
    store.set_meta("schema_version", 99)
    store.close()
    with pytest.raises(StoreError, match="schema 99"):
        Store(str(tmp_path))


WRITER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from controller.store import Change, Store
    store = Store({data!r})
    for i in range(100000):
        store.commit([Change("vport", f"v{{i}}", "put", {{"id": f"v{{i}}", "n": i}})])
        print(i, flush=True)   # the acknowledgement: printed only after commit() returned
""")


def test_acknowledged_writes_survive_kill_9(tmp_path):
    data = str(tmp_path / "data")
    code = WRITER.format(root=os.getcwd(), data=data)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    acked = -1
    try:
        for _ in range(200):  # bounded: read 200 acknowledgements, then kill mid-stream
            line = proc.stdout.readline()
            if not line:
                break
            acked = int(line)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert acked >= 0, "the writer acknowledged nothing"
    store = Store(data)
    objects = store.load_objects().get("vport", {})
    assert all(f"v{i}" in objects for i in range(acked + 1))
    assert store.last_seq() >= acked + 1
