"""The store's rows and reads (controller/store.py): a change of the log (``Change``), the queries both of the store's
connections run, and ``Reader``, the second, read-only connection that answers REST without waiting for a write."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path


class StoreError(RuntimeError):
    pass


def _last_seq(db) -> int:
    """The last sequence number this store has held: its newest change, or the last one compacted away."""
    row = db.execute("SELECT MAX(seq) FROM changes").fetchone()
    return max(row[0] or 0, _meta(db, "compacted_seq") or 0)


def _meta(db, key, default=None):
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return json.loads(row[0]) if row else default


def _changes_since(db, seq: int, limit: int) -> list["Change"]:
    rows = db.execute("SELECT seq, txn, ts, kind, id, op, body FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
                      (seq, limit))
    return [Change(kind, oid, op, json.loads(body) if body else None, s, txn, ts)
            for s, txn, ts, kind, oid, op, body in rows]


def _objects(db) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for kind, oid, body in db.execute("SELECT kind, id, body FROM objects"):
        out.setdefault(kind, {})[oid] = json.loads(body)
    return out


def _oldest_seq(db) -> int:
    """The first change still in the log (the next one to come when the log is empty)."""
    row = db.execute("SELECT MIN(seq) FROM changes").fetchone()
    return row[0] or (_last_seq(db) + 1)


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

    @classmethod
    def from_wire(cls, wire: dict) -> "Change":
        """The inverse of to_wire(); raises StoreError on a map that is not a change."""
        try:
            change = cls(wire["kind"], wire["id"], wire["op"], wire["body"], wire["seq"], wire["txn"],
                         float(wire["ts"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"malformed change {wire!r:.200}: {exc!r}") from None
        if not (isinstance(change.kind, str) and isinstance(change.id, str) and _is_int(change.seq)
                and _is_int(change.txn) and (change.body is None or isinstance(change.body, dict))):
            raise StoreError(f"malformed change {wire!r:.200}")
        return change


class Reader:
    """The store as of its last committed transaction, for reads that must not wait for a write: a second SQLite
    connection (query_only), with a lock of its own that no write takes. The writer holds the store's lock through
    a transaction and its fsync (up to seconds on a busy disk, or for a big replicated batch); in WAL mode a reader
    neither waits for that transaction nor sees any of it before its COMMIT has returned. Each method reads in one
    read transaction, so what it returns is one committed state."""

    def __init__(self, path: str):
        self._lock = threading.Lock()  # one read at a time on this connection
        # read-only (not only query_only): closing last, it never checkpoints the log into a file overwritten in place
        self._db = sqlite3.connect(Path(os.path.abspath(path)).as_uri() + "?mode=ro", uri=True, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("PRAGMA query_only=ON")
        self._db.execute("PRAGMA schema_version").fetchone()  # a first read: SQLite holds the file's shared lock
        # from now on (WAL mode), so the writer closing before it cannot checkpoint (Store.close)

    def close(self):
        with self._lock:  # not while a read runs (a standby's store renewed: Store.renew)
            self._db.close()

    def last_seq(self) -> int:
        """The last committed (durable) sequence number."""
        return self._read(_last_seq)

    def changes(self, seq: int, limit: int) -> tuple[list[Change], int, int]:
        """(up to ``limit`` changes after ``seq``, the oldest change still in the log, the last one), from one
        committed state: State's last_seq may lag it, as State takes a commit only after its COMMIT has returned."""
        return self._read(lambda db: (_changes_since(db, seq, limit), _oldest_seq(db), _last_seq(db)))

    def _read(self, query):
        with self._lock:
            self._end()  # one a failed end left open (an I/O error)
            self._db.execute("BEGIN")  # deferred: a read transaction, a snapshot of the last commit
            try:
                return query(self._db)
            finally:
                self._end()

    def _end(self):
        """End the read transaction at once (a snapshot kept open keeps checkpoints from emptying the WAL), unless
        SQLite ended it itself (it rolls back on some errors: an I/O error): a COMMIT then would raise in place of
        the error that ended it."""
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")  # a read transaction: nothing to commit


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
