"""Durable store: SQLite in WAL mode under the data directory.

Tables:
- ``objects(kind, id, body)``: the current policy, one JSON body per object.
- ``changes(seq, txn, ts, kind, id, op, body)``: the change log. Every committed object change gets the
  next sequence number; ``txn`` groups the changes of one API call. The standby controller replays it.
- ``meta(key, value)``: schema version, allocation counters and other small durable values.

A write is acknowledged only after ``commit()`` returns, and commit runs with ``synchronous=FULL``: a
``kill -9`` (or a power cut) right after the acknowledgement loses nothing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass

SCHEMA_VERSION = 1

_DDL = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS objects (kind TEXT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL,"
    " PRIMARY KEY (kind, id))",
    "CREATE TABLE IF NOT EXISTS changes (seq INTEGER PRIMARY KEY, txn INTEGER NOT NULL, ts REAL NOT NULL,"
    " kind TEXT NOT NULL, id TEXT NOT NULL, op TEXT NOT NULL, body TEXT)",
)


class StoreError(RuntimeError):
    pass


@dataclass(frozen=True)
class Change:
    """One object change. ``op`` is "put" (create or replace) or "delete" (body None)."""

    kind: str
    id: str
    op: str
    body: dict | None
    seq: int = 0
    txn: int = 0
    ts: float = 0.0

    def to_wire(self):
        return {"seq": self.seq, "txn": self.txn, "ts": self.ts, "kind": self.kind, "id": self.id,
                "op": self.op, "body": self.body}


class Store:
    def __init__(self, data_dir: str, keep_changes: int = 100_000):
        os.makedirs(data_dir, mode=0o750, exist_ok=True)
        self.path = os.path.join(data_dir, "canopy.db")
        self.keep_changes = keep_changes
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        with self._txn():
            for ddl in _DDL:
                self._db.execute(ddl)
            version = self.get_meta("schema_version")
            if version is None:
                self._set_meta("schema_version", SCHEMA_VERSION)
            elif version != SCHEMA_VERSION:
                raise StoreError(f"{self.path} has store schema {version}; this Canopy reads {SCHEMA_VERSION}")

    def close(self):
        self._db.close()

    # ------------------------------------------------------------------ reading
    def load_objects(self) -> dict[str, dict[str, dict]]:
        out: dict[str, dict[str, dict]] = {}
        for kind, oid, body in self._db.execute("SELECT kind, id, body FROM objects"):
            out.setdefault(kind, {})[oid] = json.loads(body)
        return out

    def last_seq(self) -> int:
        row = self._db.execute("SELECT MAX(seq) FROM changes").fetchone()
        return max(row[0] or 0, self.get_meta("compacted_seq") or 0)

    def changes_since(self, seq: int, limit: int = 1000) -> list[Change]:
        rows = self._db.execute(
            "SELECT seq, txn, ts, kind, id, op, body FROM changes WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit))
        return [Change(kind, oid, op, json.loads(body) if body else None, s, txn, ts)
                for s, txn, ts, kind, oid, op, body in rows]

    def oldest_seq(self) -> int:
        row = self._db.execute("SELECT MIN(seq) FROM changes").fetchone()
        return row[0] or (self.last_seq() + 1)

    def get_meta(self, key, default=None):
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # ------------------------------------------------------------------ writing
    def commit(self, changes: list[Change], meta: dict | None = None) -> list[Change]:
        """Write object changes and meta values in one transaction; returns the changes with seq numbers."""
        done = []
        with self._txn():
            seq = self.last_seq()
            txn = (self.get_meta("last_txn") or 0) + 1
            ts = time.time()
            for change in changes:
                seq += 1
                body = json.dumps(change.body, sort_keys=True) if change.body is not None else None
                if change.op == "put":
                    self._db.execute("INSERT OR REPLACE INTO objects (kind, id, body) VALUES (?, ?, ?)",
                                     (change.kind, change.id, body))
                elif change.op == "delete":
                    self._db.execute("DELETE FROM objects WHERE kind = ? AND id = ?", (change.kind, change.id))
                else:
                    raise StoreError(f"unknown change op {change.op!r}")
                self._db.execute("INSERT INTO changes (seq, txn, ts, kind, id, op, body) VALUES (?,?,?,?,?,?,?)",
                                 (seq, txn, ts, change.kind, change.id, change.op, body))
                done.append(Change(change.kind, change.id, change.op, change.body, seq, txn, ts))
            self._set_meta("last_txn", txn)
            for key, value in (meta or {}).items():
                self._set_meta(key, value)
            self._trim(seq)
        return done

    def set_meta(self, key, value):
        with self._txn():
            self._set_meta(key, value)

    def _set_meta(self, key, value):
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    def _trim(self, seq):
        cutoff = seq - self.keep_changes
        if cutoff > 0:
            self._db.execute("DELETE FROM changes WHERE seq <= ?", (cutoff,))
            self._set_meta("compacted_seq", max(cutoff, self.get_meta("compacted_seq") or 0))

    def _txn(self):
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False
