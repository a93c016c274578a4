"""The SQLite store: round trips, the change log, and durability across kill -9."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from controller.store import Change, Store, StoreError
from tests.unit.stores import stores_closed  # noqa: F401 - autouse: closes the stores a test leaves open


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


GREEN_WRITERS = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from controller.ryu_compat import blocking, hub
    hub.patch(thread=True)                            # as run_manager does before the apps (and their Store) exist
    from controller.store import Change, Store
    store = Store({data!r})
    store.offload = blocking                          # as controller/app.py sets it
    ticks = [0]

    def ticker():                                     # another green thread: runs only when the hub is free
        while True:
            ticks[0] += 1
            hub.sleep(0)

    def writer(w):
        for i in range(100000):
            before = ticks[0]
            store.commit([Change("vport", f"w{{w}}-{{i}}", "put", {{"id": f"w{{w}}-{{i}}"}})])
            print(w, i, ticks[0] - before, flush=True)   # acknowledged: commit() returned

    hub.spawn(ticker)
    hub.joinall([hub.spawn(writer, w) for w in range({writers})])
""")


def test_concurrent_offloaded_commits_free_the_hub_and_survive_kill_9(tmp_path):
    """Green threads committing at once through the thread pool: the hub runs other green threads during
    every commit, and every acknowledged write is in the store after SIGKILL."""
    data = str(tmp_path / "data")
    code = GREEN_WRITERS.format(root=os.getcwd(), data=data, writers=8)
    stderr = tmp_path / "stderr"
    with open(stderr, "w") as err:  # a file, not a pipe: a full pipe would stop the writers
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=err, text=True)
    acked, freed = [], 0
    try:
        for _ in range(400):  # bounded: read 400 acknowledgements, then kill mid-stream
            line = proc.stdout.readline()
            if not line:
                break
            w, i, ticks = map(int, line.split())
            acked.append(f"w{w}-{i}")
            freed += ticks > 0
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    errors = stderr.read_text()
    assert "Traceback" not in errors, errors  # a writer that died (two transactions at once) proves nothing
    assert len(acked) == 400, "the writers acknowledged too little"
    assert len({a.split("-")[0] for a in acked}) == 8, "a writer made no progress"
    assert freed == len(acked), "a commit held the event loop: no other green thread ran during it"
    objects = Store(data).load_objects().get("vport", {})
    assert set(acked) <= set(objects)


GREEN_RESTORE = textwrap.dedent("""
    import sys
    sys.path.insert(0, {root!r})
    from controller.ryu_compat import blocking, hub
    hub.patch(thread=True)                            # as run_manager does before the apps (and their Store) exist
    from controller.store import Store
    store = Store({data!r})
    store.offload = blocking                          # as controller/app.py sets it
    snapshot = {{"objects": {{"vport": {{f"v{{i}}": {{"id": f"v{{i}}", "mac": "02:00:00:00:00:01", "ips": ["10.0.0.1"]}}
                                        for i in range({count})}}}}, "meta": {{}}, "last_seq": 5, "history": [5, 1.0]}}
    ticks = [0]

    def ticker():                                     # another green thread: runs only when the hub is free
        while True:
            ticks[0] += 1
            hub.sleep(0)

    hub.spawn(ticker)
    hub.sleep(0)
    before = ticks[0]
    store.restore(snapshot)
    restoring = ticks[0] - before
    before = ticks[0]
    objects = store.load_objects()                    # what the standby's State then takes
    print(restoring, ticks[0] - before, store.last_seq(), len(objects["vport"]), flush=True)
""")


def test_a_snapshot_restore_frees_the_hub_while_it_writes(tmp_path):
    """A standby's snapshot restore (its file check, every row, the fsync) runs through ``offload`` as a commit does,
    and so does reading its objects back (for State): the hub turns other green threads while they run. Before, the whole restore held the event loop (no other green
    thread ran: OpenFlow echoes, OVSDB probes and REST waited for 5,000 vports' rows and their fsync)."""
    code = GREEN_RESTORE.format(root=os.getcwd(), data=str(tmp_path / "data"), count=5000)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    restoring, loading, seq, count = map(int, done.stdout.split())
    assert (seq, count) == (5, 5000)
    assert restoring > 0, "the restore held the event loop: no other green thread ran during it"
    assert loading > 0, "reading the restored objects back held the event loop"


def test_set_meta_commits_through_offload_like_a_commit(tmp_path):
    """A meta value's transaction (and its fsync) runs where ``offload`` puts it, as commit's does: in the
    controller that is the thread pool, off the event loop (the start-up hold's memory, the HA generation)."""
    store = Store(str(tmp_path / "data"))
    offloaded = []

    def offload(function, *args):
        offloaded.append(function.__name__)
        return function(*args)

    store.offload = offload
    store.set_meta("startup_switches", {"vrs": ["hv1"], "vteps": []})
    assert offloaded == ["_set_meta_committed"]
    assert store.get_meta("startup_switches") == {"vrs": ["hv1"], "vteps": []}
    assert Store(str(tmp_path / "data")).get_meta("startup_switches") == {"vrs": ["hv1"], "vteps": []}


# ------------------------------------------------------------------ replication support

def _source_with_history(tmp_path, keep_changes=100_000):
    """A store with puts, a replace, a delete and a two-change transaction (seqs 1-5)."""
    store = Store(str(tmp_path / "source"), keep_changes=keep_changes)
    store.commit([Change("tenant", "a", "put", {"id": "a", "name": "acme"})], meta={"counters": {"vni": 1}})
    store.commit([Change("tenant", "b", "put", {"id": "b", "name": "b"}),
                  Change("domain", "d", "put", {"id": "d", "tenant_id": "a", "rts": ["1:1"]})],
                 meta={"counters": {"vni": 2}})
    store.commit([Change("tenant", "a", "put", {"id": "a", "name": "acme2"})])
    store.commit([Change("tenant", "b", "delete", None)])
    return store


def _content(store):
    """Everything replication must reproduce."""
    return (store.load_objects(), store.last_seq(), store.history(),
            [c.to_wire() for c in store.changes_since(0)], store.replicated_meta())


def test_replayed_changes_equal_the_source(tmp_path):
    source = _source_with_history(tmp_path)
    replica = Store(str(tmp_path / "replica"))
    changes = source.changes_since(0)
    assert replica.apply_replicated(changes[:2], {"counters": {"vni": 2}}) == 2
    assert replica.apply_replicated(changes[2:], source.replicated_meta()) == 5
    assert _content(replica) == _content(source)
    assert replica.get_meta("last_txn") == source.get_meta("last_txn") == 4
    assert replica.change_at(3) == source.change_at(3) and replica.change_at(9) is None


def test_a_resent_batch_is_skipped(tmp_path):
    source = _source_with_history(tmp_path)
    replica = Store(str(tmp_path / "replica"))
    replica.apply_replicated(source.changes_since(0), source.replicated_meta())
    before = _content(replica)
    assert replica.apply_replicated(source.changes_since(1), {"counters": {"vni": 0}}) == 5
    assert _content(replica) == before  # neither the changes nor their (older) meta were written again
    overlap = source.changes_since(3)
    source.commit([Change("tenant", "c", "put", {"id": "c"})])
    assert replica.apply_replicated(overlap + source.changes_since(5), {}) == 6
    assert _content(replica) == _content(source)


@pytest.mark.parametrize("pick", [lambda cs: cs[1:], lambda cs: cs[:1] + cs[2:]], ids=["leading", "inner"])
def test_a_gap_is_refused_and_writes_nothing(tmp_path, pick):
    source = _source_with_history(tmp_path)
    replica = Store(str(tmp_path / "replica"))
    with pytest.raises(StoreError, match="gap"):
        replica.apply_replicated(pick(source.changes_since(0)), {"counters": {"vni": 9}})
    assert replica.load_objects() == {} and replica.last_seq() == 0 and replica.get_meta("counters") is None
    assert replica.history() == (0, None)


def test_snapshot_restore_round_trip(tmp_path):
    source = _source_with_history(tmp_path)
    snap = source.snapshot()
    assert snap["last_seq"] == 5 and snap["history"] == [5, source.change_at(5).ts]
    replica = Store(str(tmp_path / "replica"))
    replica.commit([Change("tenant", "x", "put", {"id": "x", "name": "stale"})], meta={"other": 1})
    replica.restore(snap)
    assert replica.load_objects() == source.load_objects() and replica.last_seq() == 5
    assert replica.history() == source.history() and replica.changes_since(0) == []
    assert replica.replicated_meta() == source.replicated_meta() and replica.get_meta("schema_version") == 1
    source.commit([Change("tenant", "c", "put", {"id": "c"})])  # the stream continues after a restore
    assert replica.apply_replicated(source.changes_since(5), source.replicated_meta()) == 6
    assert replica.load_objects() == source.load_objects() and replica.history() == source.history()
    replica.close()
    again = Store(str(tmp_path / "replica"))
    assert again.last_seq() == 6 and again.history() == source.history()


@pytest.mark.parametrize("damage", [
    lambda s: s.pop("last_seq"),
    lambda s: s.update(objects=[1, 2]),
    lambda s: s.update(history=[99, 1.0]),
    lambda s: s["objects"].update(zzz={"bad": "not a body"}),
    lambda s: s["objects"].update(zzz={"bad": {"x": object()}}),
], ids=["no-last-seq", "objects-not-a-map", "history-mismatch", "body-not-a-map", "body-not-json"])
def test_a_failed_restore_leaves_the_store_unchanged(tmp_path, damage):
    source = _source_with_history(tmp_path)
    snap = source.snapshot()
    damage(snap)
    replica = Store(str(tmp_path / "replica"))
    replica.commit([Change("tenant", "x", "put", {"id": "x"})], meta={"counters": {"vni": 7}})
    before = _content(replica)
    with pytest.raises(StoreError):
        replica.restore(snap)
    assert _content(replica) == before


def test_history_survives_a_log_compacted_to_nothing(tmp_path):
    store = Store(str(tmp_path), keep_changes=0)
    done = store.commit([Change("tenant", "a", "put", {"id": "a"})])
    assert store.changes_since(0) == [] and store.history() == (1, done[0].ts)


def test_a_disk_refusing_writes_many_times_a_second_is_one_warning_with_a_count(tmp_path, monkeypatch, caplog):
    """An HA node retries its takeover ten times a second while the disk is full: one warning per LOG_EVERY seconds
    for the same kind of write, the next one counting those left out; every refusal still counts in ``faults``."""
    from controller import loglimit
    from controller.store import StoreFault

    store = Store(str(tmp_path))
    now = [1000.0]
    monkeypatch.setattr(loglimit.time, "monotonic", lambda: now[0])

    def full(*_args):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "offload", full)
    caplog.set_level("WARNING", logger="canopy.store")
    for _ in range(5):
        with pytest.raises(StoreFault):
            store.commit([Change("tenant", "a", "put", {"id": "a"})])
    assert store.faults == 5 and len(caplog.records) == 1 and "disk is full" in caplog.records[0].getMessage()
    now[0] += loglimit.LOG_EVERY
    with pytest.raises(StoreFault):
        store.commit([Change("tenant", "a", "put", {"id": "a"})])
    assert len(caplog.records) == 2 and caplog.records[1].getMessage().endswith("(4 more like it not logged)")
    store.close()


@pytest.mark.parametrize("bug", [sqlite3.ProgrammingError("Cannot operate on a closed database."),
                                 sqlite3.InterfaceError("bad parameter"), sqlite3.IntegrityError("UNIQUE")])
def test_a_bug_in_using_sqlite_is_not_reported_as_the_disk_s_fault(tmp_path, monkeypatch, bug):
    """Only what the disk or the file can cause is a StoreFault (503 store_failed, "free space"): a programming error
    stays a bug (500 with a traceback in the log), and the store is not marked faulty for it."""
    from controller.store import StoreFault

    store = Store(str(tmp_path))

    def broken(*_args):
        raise bug

    monkeypatch.setattr(store, "offload", broken)
    with pytest.raises(type(bug)) as raised:
        store.commit([Change("tenant", "a", "put", {"id": "a"})])
    assert not isinstance(raised.value, StoreFault) and store.fault is None and store.faults == 0
    store.close()


def test_the_node_s_own_meta_is_neither_copied_nor_replaced(tmp_path):
    """known_devices (controller/startup_hold.py) is what connected to this node: a batch's meta, a snapshot and a
    restore leave the replica's value as it was, and the source does not send its own."""
    source = _source_with_history(tmp_path)
    source.set_meta("known_devices", {"vrs": ["hv9"], "vteps": []})
    replica = Store(str(tmp_path / "replica"))
    replica.set_meta("known_devices", {"vrs": ["hv1"], "vteps": []})
    assert "known_devices" not in source.replicated_meta()
    replica.apply_replicated(source.changes_since(0), dict(source.replicated_meta(), known_devices={"vrs": []}))
    assert replica.get_meta("known_devices") == {"vrs": ["hv1"], "vteps": []}
    replica.restore(source.snapshot())
    assert replica.load_objects() == source.load_objects() and replica.get_meta("counters") == {"vni": 2}
    assert replica.get_meta("known_devices") == {"vrs": ["hv1"], "vteps": []}
    fresh = Store(str(tmp_path / "fresh"))
    fresh.restore(source.snapshot())
    assert fresh.get_meta("known_devices") is None


def test_a_restore_keeps_the_node_s_live_migration_records(tmp_path):
    """active_ports (controller/state_activation.py) is this node's own: a standby's snapshot restore kept neither
    the source's nor, before review41a, its own (a standby restarted after a restore lost them)."""
    source = _source_with_history(tmp_path)
    source.set_meta("active_ports", {"v9": ["s9", "tap9"]})
    replica = Store(str(tmp_path / "replica"))
    replica.set_meta("active_ports", {"v1": ["s1", "tap1"]})
    assert "active_ports" not in source.replicated_meta()
    replica.restore(source.snapshot())
    assert replica.get_meta("active_ports") == {"v1": ["s1", "tap1"]}


def test_closing_twice_says_nothing_and_sets_nothing_aside(tmp_path, caplog):
    """A store closed twice (a stop after a failed start, a test's clean-up): the second close does nothing. Before,
    it looked at the file the first close's checkpoint had written, took it for one overwritten in place, logged
    ERROR lines and moved aside what it took for the store's log."""
    store = Store(str(tmp_path))
    store.commit([Change("tenant", "a", "put", {"id": "a"})])
    store.close()
    store.close()
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []
    assert sorted(os.listdir(tmp_path)) == ["canopy.db", "canopy.db.marker"]
    assert Store(str(tmp_path)).load_objects() == {"tenant": {"a": {"id": "a"}}}
