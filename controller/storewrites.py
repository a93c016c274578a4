"""The rows the store's write transactions write (controller/store.py): SQL on the writer's connection, run inside a
transaction the store opened, under its lock (perhaps in its thread pool). What a commit, a replicated batch and a
snapshot restore put in the tables ``objects``, ``changes`` and ``meta``, and which meta keys are this node's own;
the store keeps the rest (its lock, its file, its faults and a standby's renewal)."""

from __future__ import annotations

import json
import time
import uuid

from controller.storerows import Change, StoreError, _last_seq, _meta

SCHEMA_VERSION = 1
DDL = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS objects (kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL,"
    " PRIMARY KEY (kind, id))",
    "CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY, txn INTEGER NOT NULL, ts REAL NOT NULL,"
    " kind TEXT NOT NULL, id TEXT NOT NULL, op TEXT NOT NULL, body TEXT)",
)
# the devices connected to this node (controller/startup_hold.py): each node of a pair holds, after its restart, for
# the switches that connect to it, so neither a replicated batch nor a snapshot copies or replaces it
KNOWN_DEVICES = "known_devices"
# meta keys a snapshot restore keeps: the store's own identity and this node's own memory
# ("active_ports": the live migrations' active ports this node holds, controller/state_activation.py: a standby's
# snapshot restore deleted them before review41a, so a standby restarted after one lost them)
KEPT_META = ("schema_version", "store_id", KNOWN_DEVICES, "active_ports")
# when this store's file was renewed (an HA standby's: Store.renew), until a snapshot restore replaces it: a node
# restarted on it meanwhile knows its store is empty (controller/replication.py Applier.renewed)
RENEWED_META = "store_renewed"
# meta keys that describe this store's own log or this node, never copied from another store
LOCAL_META = KEPT_META + ("compacted_seq", "compacted_ts", RENEWED_META)


def made_tables(db, path: str, kept: dict) -> None:
    """The tables made (in a new file) and its meta values that are missing written: the schema version, a store id
    (new, or made before store ids existed) and ``kept``'s. StoreError for another schema."""
    for ddl in DDL:
        db.execute(ddl)
    version = _meta(db, "schema_version")
    if version not in (None, SCHEMA_VERSION):
        raise StoreError(f"{path} has store schema {version}; this Canopy reads {SCHEMA_VERSION}")
    kept = {"schema_version": SCHEMA_VERSION, "store_id": uuid.uuid4().hex, **kept}
    for key, value in kept.items():
        if _meta(db, key) is None:
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))


def committed_rows(db, changes, meta, keep: int) -> list[Change]:
    """A commit's rows: each change numbered (the next seq, one txn for all), its object written and logged, the
    meta values set and the log trimmed to ``keep`` changes; the changes with their numbers."""
    done = []
    seq = _last_seq(db)
    txn = (_meta(db, "last_txn") or 0) + 1
    ts = time.time()
    for change in changes:
        seq += 1
        done.append(Change(change.kind, change.id, change.op, change.body, seq, txn, ts))
    _logged(db, done)
    set_meta(db, "last_txn", txn)
    for key, value in (meta or {}).items():
        set_meta(db, key, value)
    _trim(db, seq, keep)
    return done


def replicated_rows(db, changes, meta, keep: int) -> tuple[int, list[Change]]:
    """A replicated batch's rows, the active's seq/txn/ts kept: (the new last seq, the changes new here). Those at or
    below the last seq were applied before and are skipped, and the meta then is not written (it may be older than
    ours); a gap raises StoreError before anything is written."""
    last = _last_seq(db)
    new = [c for c in changes if c.seq > last]
    if changes and not new:
        return last, new
    for expected, change in enumerate(new, last + 1):
        if change.seq != expected:
            raise StoreError(f"replication gap: got change {change.seq}, expected {expected}")
    _logged(db, new)
    for key, value in (meta or {}).items():
        if key not in LOCAL_META:
            set_meta(db, key, value)
    set_meta(db, "last_txn", max([c.txn for c in new] + [_meta(db, "last_txn") or 0]))
    last = new[-1].seq if new else last
    _trim(db, last, keep)
    return last, new


def restored_rows(db, objects: dict, meta: dict, last: int, ts) -> None:
    """A snapshot's rows in place of every object, change and meta value (KEPT_META's stay); the log's position is
    the snapshot's (``compacted_seq``, ``compacted_ts``). StoreError for an object that is not a body."""
    db.execute("DELETE FROM objects")
    db.execute("DELETE FROM changes")
    db.execute("DELETE FROM meta WHERE key NOT IN (%s)" % ",".join("?" * len(KEPT_META)), KEPT_META)
    for kind, bodies in objects.items():
        for oid, body in bodies.items():
            if not (isinstance(kind, str) and isinstance(oid, str) and isinstance(body, dict)):
                raise StoreError(f"snapshot object {kind!r}/{oid!r} is not an object body")
            db.execute("INSERT INTO objects (kind, id, body) VALUES (?, ?, ?)",
                       (kind, oid, json.dumps(body, sort_keys=True)))
    for key, value in meta.items():
        if key not in LOCAL_META:
            set_meta(db, key, value)
    set_meta(db, "compacted_seq", last)
    if ts is not None:
        set_meta(db, "compacted_ts", ts)


def set_meta(db, key, value) -> None:
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))


def _logged(db, changes: list[Change]) -> None:
    """Each change's object written and the change logged with its numbers."""
    for change in changes:
        body = json.dumps(change.body, sort_keys=True) if change.body is not None else None
        _write_object(db, change, body)
        db.execute("INSERT INTO changes (seq, txn, ts, kind, id, op, body) VALUES (?,?,?,?,?,?,?)",
                   (change.seq, change.txn, change.ts, change.kind, change.id, change.op, body))


def _write_object(db, change: Change, body: str | None) -> None:
    if change.op == "put":
        if body is None:
            raise StoreError(f"put of {change.kind} {change.id} without a body")
        db.execute("INSERT OR REPLACE INTO objects (kind, id, body) VALUES (?, ?, ?)", (change.kind, change.id, body))
    elif change.op == "delete":
        db.execute("DELETE FROM objects WHERE kind = ? AND id = ?", (change.kind, change.id))
    else:
        raise StoreError(f"unknown change op {change.op!r}")


def _trim(db, seq: int, keep: int) -> None:
    """The log cut to the last ``keep`` changes; the position of the last one cut kept (``compacted_seq``, and
    ``compacted_ts``: history() still names the position once the log is empty)."""
    cutoff = seq - keep
    if cutoff > 0:
        row = db.execute("SELECT ts FROM changes WHERE seq = ?", (cutoff,)).fetchone()
        if row is not None:
            set_meta(db, "compacted_ts", row[0])
        db.execute("DELETE FROM changes WHERE seq <= ?", (cutoff,))
        set_meta(db, "compacted_seq", max(cutoff, _meta(db, "compacted_seq") or 0))
