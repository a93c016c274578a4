"""Durable store: SQLite in WAL mode under the data directory.

Tables:
- ``objects(kind, id, body)``: the current policy, one JSON body per object.
- ``changes(seq, txn, ts, kind, id, op, body)``: the change log. Every committed object change gets the
  next sequence number; ``txn`` groups the changes of one API call. The standby controller replays it.
- ``meta(key, value)``: schema version, allocation counters and other small durable values.

A write is acknowledged only after ``commit()`` returns, and commit runs with ``synchronous=FULL``: a
``kill -9`` (or a power cut) right after the acknowledgement loses nothing. The transactions of ``commit()``,
``apply_replicated()`` and ``set_meta()`` (their fsyncs) run through ``offload``: in the controller that is
eventlet's thread pool (``controller.ryu_compat.blocking``), so the event loop keeps serving OpenFlow, OVSDB, HA
and REST while the disk works, and the caller (its green thread) still returns only once the transaction is
durable. Work handed to ``offload`` takes no lock of its own: the caller holds the store's lock around it.

Replication (controller/replication.py) uses the second half of this module: ``apply_replicated()`` writes
the active's changes with their own seq/txn/ts, ``snapshot()``/``restore()`` copy the whole store, and
``history()`` names a position in the change history, (seq, ts of that change), so two stores can tell
whether one is a prefix of the other. The connection is shared between threads (REST, the HA link), so
every statement and transaction runs under one re-entrant lock, held through a commit's fsync. The rows each write
transaction writes are controller/storewrites.py's (SQL on the connection); this module keeps the lock, the file,
the faults and a standby's renewal.

The reads that answer REST (GET /v1/changes, GET /v1/ha and the /metrics lines built from it) use ``reader``, a
second connection with a lock of its own: in WAL mode a reader sees the last committed transaction and never waits
for the writer, so these reads never wait for a commit (docs/store.md "Reads do not wait for writes").

Beside the database, a marker file (``canopy.db.marker``) remembers which store this data directory holds
(``store_id``, a random id made when the store is created) and the last change it held. It is replaced
(write, rename; no fsync, so it can only lag the store, never lead it) after every commit, replicated
batch and restore. controller/storeguard.py compares the two before a controller starts: a store that is
empty, missing, another one, or older than its marker is refused instead of served.

A write transaction the disk refuses (full: SQLITE_FULL/ENOSPC; read-only; an I/O error) is rolled back whole and
raised as ``StoreFault``, naming the store and the reason: the caller changes nothing in memory, so State never
holds what the store does not. ``fault`` (and ``faults``, a count) says so until a write succeeds again, with no
restart needed once space is freed (docs/store.md "A full or failing disk"). A marker the disk refuses is logged and
left as it was (it may lag the store, never lead it); the write it follows stands.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import threading
import time
from functools import wraps

from controller.loglimit import log_limited, warn_limited
from controller.storerows import (  # noqa: F401 - imported from here too
    Change, Reader, StoreError, _changes_since, _is_int, _last_seq, _meta, _objects, _oldest_seq)
from controller.storefile import (
    DEFER_BOUND, WAITING_NAME, FilesBusy, FileWatch, Moved, PartlyMoved, discard, identity, moving_files, put_back,
    readable_marks, remove, set_aside, waiting_renewal)
from controller import storetxn
from controller.storedisk import network_warning
from controller.storetxn import Busy, InFlight, Transaction, fault_reason, flush_notes, free_bytes  # noqa: F401
from controller.storewrites import (  # noqa: F401 - imported from here too
    KEPT_META, KNOWN_DEVICES, LOCAL_META, RENEWED_META, SCHEMA_VERSION, committed_rows, made_tables, replicated_rows,
    restored_rows, set_meta)

# SQLite errors that are Canopy's bugs (a constraint, a misused cursor or connection, bad SQL), not the disk's: they
# propagate as bugs (500, a log line with a traceback) rather than being reported as the store's fault.
_BUGS = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError, sqlite3.NotSupportedError)

RENEWED_KEPT = 3  # a standby keeps the files of its newest renewals (renewed-, saved-, gone-<time>) beside its store
DB_NAME = "canopy.db"
MARKER_NAME = DB_NAME + ".marker"


log = logging.getLogger("canopy.store")


class StoreFault(StoreError):
    """A write transaction the disk refused (full, read-only, I/O error): rolled back, nothing written. ``str()``
    names the store, what was being written and the reason (SQLite's, and the free space left)."""

    def __init__(self, path: str, what: str, exc: BaseException):
        self.path, self.what = path, what
        self.reason = fault_reason(path, exc)
        super().__init__(f"the store {path} could not commit {what}: {self.reason}; nothing was written")


class RenewalDeferred(StoreFault):
    """A renewal refused while a ``canopy backup`` copies the store (storefile ``FilesBusy``): not the disk's fault,
    counted apart (``deferrals``), tried again at the next tick; new backups wait for it meanwhile."""

    def __init__(self, path: str, what: str, exc: BaseException):
        super().__init__(path, what, exc)
        self.args = (f"the store {path}: {what} deferred, a 'canopy backup' is copying the store (tried again at the "
                     "next tick; backups begun from now on wait for it)",)


def _direct(function, *args):
    return function(*args)


def _locked(method):
    """Run a Store method under the store's lock (one SQLite connection serves several threads), once a transaction a
    killed caller left in the thread pool ended (``InFlight``: read under it, the connection gave its uncommitted rows,
    and on the hub the read waited for its statement on SQLite's connection mutex, the hub's OS thread blocked);
    StoreError while it still runs after ``ABANDONED_WAIT``."""

    @wraps(method)
    def locked(self, *args, **kwargs):
        with self._lock:
            if not self._work.wait():
                raise StoreError(f"the store {self.path} is still in a transaction abandoned by a stopped caller")
            return method(self, *args, **kwargs)

    return locked


class Store:
    def __init__(self, data_dir: str, keep_changes: int = 100_000, offload=_direct, renewal_wait: float = DEFER_BOUND):
        os.makedirs(data_dir, mode=0o750, exist_ok=True)
        from controller.storeguard import verify  # imports this module

        verify(data_dir)  # StoreRefused: never turn an empty, damaged or older store into a served one
        self.path = os.path.join(data_dir, DB_NAME)
        self.file_system_warning = network_warning(data_dir)  # a network file system: said at start and in status
        self.marker_path = os.path.join(data_dir, MARKER_NAME)
        self.keep_changes = keep_changes
        self.offload = offload  # (function, *args) -> its result: where the write transactions run
        self.fault: dict | None = None  # the last write the disk refused, until one succeeds: {what, reason, since}
        self.faults = 0  # write transactions (and markers) the disk refused since the start
        self.deferral: dict | None = None  # a renewal a backup refused, until one succeeds: {reason, since, tries}
        self._deferred_at = 0.0  # time.monotonic() at the deferral's first refusal (its duration: not the wall clock)
        self.deferrals = 0  # renewals refused since the start while a ``canopy backup`` copied (not ``faults``)
        self.renewal_wait = renewal_wait  # seconds a deferral may last, health ok (ha.store_renewal_wait_ms)
        self._waiting: int | None = None  # while deferred: storefile ``waiting_renewal`` (new backups give way)
        self._lock = threading.RLock()
        self._renewals: list[list[str]] = []  # per renewal (``renew``), the files set aside and saved for it
        self._moved_own: list[str] = []  # this store's own files the renewal under way set aside (refused tries too)
        self._work = InFlight()  # what runs through ``offload``, until it ended (a caller killed meanwhile: a stop)
        self._closed = False  # both connections closed (``close``)
        self._db = self._connected({})
        self._store_id = self.get_meta("store_id")  # local meta: never replaced by replication or restore
        self.file = FileWatch(self.path, self._db.backup, self._data_version)  # each write first checks its file
        self.write_marker()
        self.reader = Reader(self.path)  # for the reads that must not wait for a write (REST)
        for mark in readable_marks(data_dir, self.path):
            log.info("the store %s: its mark %s made readable as the store is (made 0640 before stop 50: refused a "
                     "backup by another user)", self.path, mark)

    def _connected(self, kept: dict):
        """The writer's connection to the file at ``path``, its tables made (``kept`` meta values written into a new
        one); the caller holds the lock (this may run in another OS thread)."""
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            with Transaction(db):
                made_tables(db, self.path, kept)
        except BaseException:
            db.close()  # not left to the garbage collector, a connection (and its files) per refused renewal
            raise
        return db

    def renew(self) -> None:
        """A new, empty file for a store whose file went (``file.gone``), keeping this store's id and this node's own
        memory (KEPT_META): for an HA standby only, as the active holds every write this store took, and sends it
        the whole store (controller/replication.py ``Applier.renew``). What is at the path is moved aside first
        (``canopy.db.renewed-<time>``, with its log), so the old connections close without a checkpoint into it.
        Not before what the old connection holds is saved (storefile ``kept``: a save that failed when the file went is
        tried again here): StoreFault while it cannot be, and the next tick tries again (paced), as the connection
        closed is the last copy of what this store held (before, a failed save was followed by the renewal).
        Refused by anything but a backup (the disk, a save not made yet), it no longer waits for backups
        (``_undeferred``): before, backups begun then waited ``renewal_wait`` for it, and it read deferred."""
        with self._lock:
            try:
                self._renewing()
            except RenewalDeferred:
                raise
            except StoreFault:
                self._undeferred()
                raise

    def _renewing(self) -> None:
        """renew's steps (the caller holds the lock)."""
        try:
            saved = self._work.run(self.offload, self.file.kept)
        except Busy as exc:  # a transaction abandoned at a stop still runs: tried again at the next tick
            raise self._refused("a new file", exc) from None
        finally:
            flush_notes()  # what the save logged in the thread pool
        if not saved:
            raise self._refused("a new file", OSError(errno.EIO, "what the store held is not saved yet (its save "
                                                      "failed: see the error before)"))
        kept = {"store_id": self._store_id, RENEWED_META: time.time()}
        if not self.file.overwritten:  # else what it reads is not this store's
            kept[KNOWN_DEVICES] = self._get_meta(KNOWN_DEVICES)
        old = self.reader
        self._db = self._written("a new file", self._renewed, {k: v for k, v in kept.items() if v is not None})
        self._undeferred()
        self.file = FileWatch(self.path, self._db.backup, self._data_version)
        self.write_marker()
        self.reader = Reader(self.path)
        old.close()  # last on the old file, and read-only: no checkpoint into anything

    def _renewed(self, kept):
        """renew's file work (the caller holds the lock; this may run in another OS thread). No ``canopy backup``
        opens the store while its files are moved and the new one made (storefile ``moving_files``): FilesBusy while
        one copies it, tried again at the next tick."""
        with moving_files(os.path.dirname(self.path)):
            self._set_aside_own()
            try:
                db = self._connected(kept)  # refused (a full disk): the old file stays the store's, tried again later
            except BaseException:
                discard(self.path)  # what the refused one made: else the next try (the next tick) moves it aside too
                raise
        self._db.close()  # another file at the path, and the old reader open: no checkpoint into anything
        self._renewals.append(self.file.made + self._moved_own)  # a file deleted again and again: not copies
        self._moved_own = []
        while len(self._renewals) > RENEWED_KEPT:  # for ever. A name is claimed (storefile), but one another freed
            kept = set().union(*self._renewals[1:])  # (a clean-up removed it) a later renewal may claim again: a
            remove([path for path in self._renewals.pop(0) if path not in kept],  # kept renewal's file now
                   f"the files of a renewal older than the newest {RENEWED_KEPT}")
        return db

    def _set_aside_own(self) -> None:
        """What is at the path moved aside (``renewed-<time>``, never over an earlier renewal's files: storefile
        ``claim``), the store's own files among them recorded to be pruned with the renewal that succeeds. When one
        could not be moved (its log, after its database), those moved are put back, so that the next try moves them
        together under one stem (before, the database stayed at a stem of its own, never pruned, and its log went to
        another); those that cannot be put back are recorded as moved."""
        try:
            self._own(set_aside(self.path, "renewed"))
        except PartlyMoved as exc:
            self._own(put_back(exc.moved))
            raise

    def _own(self, moved: list[str]) -> None:
        """Record ``moved`` when it is the store's own file (and its log). One look, at the file moved (under a name
        only this store makes): a file put at the path between a look at the path and the move was taken for the
        store's before. Another's file is set aside and kept, never pruned (the only copy of an operator's file moved
        there, perhaps); ours, while the old connection holds it open. Recorded at once: a try refused later moved
        it too (before: never pruned). A log moved alone, once the store's database was (its move back failed), is
        its log (before stop 47's review: never pruned)."""
        databases = [path for path in moved if not path.endswith(("-wal", "-shm"))]
        ours = any(identity(path) == self.file.opened for path in databases)
        if ours or (moved and not databases and self._moved_own):
            self._moved_own += moved

    def close(self):
        """Close both connections, once a transaction a killed caller left in the thread pool ended (``InFlight``); if
        it still runs after ``ABANDONED_WAIT``, the writer's connection is left open (the process ends: SQLite keeps
        the transaction whole or rolls it back at the next open), never closed under it. Closing again does nothing
        (before, it looked at the file the first close's checkpoint had written, took it for one overwritten in place
        and logged so: ERROR lines, its log set aside)."""
        with self._lock:
            if self._closed:
                return
            if not self._work.wait():
                log.error("the store %s: a transaction left in the thread pool by a stopped caller still runs after "
                          "%.0f s; its connection is left open (SQLite commits it whole or rolls it back at the next "
                          "start; it was not acknowledged)", self.path, storetxn.ABANDONED_WAIT)
                self.reader.close()
                return
            self.file.closing()  # a file gone since the last write: what it held saved before the connection goes
            flush_notes()
            self._undeferred()
            self._closed = True
        if self.file.overwritten:  # the writer first: with the (read-only) reader open it checkpoints nothing into
            self._db.close()  # the file put in place of ours, and the reader, closing last, cannot
            self.reader.close()
            return
        self.reader.close()  # first: the writer, closing last, checkpoints and removes the WAL
        self._db.close()

    def file_failed(self) -> bool:
        """Whether the store's file went (storefile: deleted, replaced, changed in place, its log gone, written by
        another process), looked at through ``offload`` (a gone file's save): an HA standby's tick, between writes."""
        with self._lock:
            if self.file.gone is None:
                try:
                    self._work.run(self.offload, self.file.check)
                except Moved as exc:
                    self._refused("its file check", exc)
                except Busy:  # a transaction abandoned at a stop still runs: looked at again at the next tick
                    pass
                finally:
                    flush_notes()  # what the check logged in the thread pool
        return self.file.gone is not None

    def _data_version(self) -> int:
        """SQLite's count of commits by other connections to this file (storefile: a second writer)."""
        return self._db.execute("PRAGMA data_version").fetchone()[0]

    # ------------------------------------------------------------------ reading
    def load_objects(self) -> dict[str, dict[str, dict]]:
        """Every object, read through ``offload`` (a standby's State after a snapshot, the snapshot sent to one):
        5,000 vports' bodies decoded are ~50 ms of CPU."""
        with self._lock:
            return self._work.run(self.offload, _objects, self._db)

    @_locked
    def last_seq(self) -> int:
        return self._last_seq()

    def _last_seq(self) -> int:
        return _last_seq(self._db)

    @_locked
    def changes_since(self, seq: int, limit: int = 1000) -> list[Change]:
        return _changes_since(self._db, seq, limit)

    @_locked
    def oldest_seq(self) -> int:
        return _oldest_seq(self._db)

    @_locked
    def get_meta(self, key, default=None):
        return self._get_meta(key, default)

    def _get_meta(self, key, default=None):
        return _meta(self._db, key, default)

    # ------------------------------------------------------------------ writing
    def commit(self, changes: list[Change], meta: dict | None = None) -> list[Change]:
        """Write object changes and meta values in one transaction; returns the changes with seq numbers."""
        with self._lock:  # held on for the marker, so markers are written in commit order
            done = self._written("a write of %d change(s)" % len(changes), self._commit_unlocked, changes, meta)
            if done:
                self._write_marker(done[-1].seq, done[-1].ts)
        return done

    def _written(self, what: str, transaction, *args):
        """``transaction(*args)`` through ``offload`` (the caller holds the lock); StoreFault when the disk refuses it
        (SQLite rolled it back), and the store's ``fault`` follows: set by a refusal, cleared by a success."""
        try:
            result = self._work.run(self.offload, transaction, *args)
        except FilesBusy as exc:  # a renewal while a backup copies: not the disk's fault
            raise self._deferred(what, exc) from None
        except (sqlite3.DatabaseError, OSError) as exc:
            if isinstance(exc, _BUGS):  # a bug in how the store is used, not the disk: not a StoreFault
                raise
            raise self._refused(what, exc) from None
        finally:
            flush_notes()  # what its file check logged in the thread pool
        self._recovered()
        return result

    def _recovered(self):
        """A write succeeded: the store takes writes again (said once)."""
        if self.fault is not None:
            log.warning("the store %s takes writes again (%d refused in all; faulty since %s UTC)", self.path,
                        self.faults, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.fault["since"])))
            self.fault = None

    def _refused(self, what: str, exc: BaseException) -> StoreFault:
        """Record a write the disk refused (``fault``, ``faults``); the StoreFault to raise. Its warning is logged at
        most once per LOG_EVERY seconds for the same kind of write, with a count of those left out: an HA node tries
        its takeover at every tick, ten times a second, while the disk stays full."""
        fault = StoreFault(self.path, what, exc)
        self._faulty(what, fault.reason, isinstance(exc, Moved))
        warn_limited(log, ("store", self.path, what), "%s", fault)
        return fault

    def _deferred(self, what: str, exc: FilesBusy) -> RenewalDeferred:
        """Record a renewal a backup refused (``deferral``, ``deferrals``; not ``fault``) and mark it waiting, so that
        backups begun from now on wait for it (storefile ``reading_files``): deferred while those copying end only."""
        self.deferrals += 1
        if self.deferral is None:
            self._deferred_at = time.monotonic()
        since = self.deferral["since"] if self.deferral is not None else time.time()
        self.deferral = {"reason": "a 'canopy backup' is copying", "since": since, "tries": self.deferrals}
        if self._waiting is None:
            self._waiting = self._marked_waiting()
        deferred = RenewalDeferred(self.path, what, exc)
        log_limited(log, logging.INFO, ("store", self.path, "deferred"), "%s", deferred)
        return deferred

    def _marked_waiting(self) -> int | None:
        """storefile ``waiting_renewal``, or None when the disk refuses it (the renewal is tried again as before, only
        not marked): said at most once per LOG_EVERY (before, at every tick, ten a second, while the backup copied)."""
        try:
            return waiting_renewal(os.path.dirname(self.path))
        except OSError as exc:
            warn_limited(log, ("store", self.path, "waiting mark"), "the store %s: a renewal a backup deferred could "
                         "not mark itself waiting (%s: %s), so new backups do not give way to it", self.path,
                         os.path.join(os.path.dirname(self.path), WAITING_NAME), exc.strerror or exc)
            return None

    def _undeferred(self) -> None:
        """The renewal went ahead (or the store closes): backups no longer wait for it."""
        self.deferral = None
        if self._waiting is not None:
            os.close(self._waiting)
            self._waiting = None

    def _faulty(self, what: str, reason: str, file_gone: bool = False):
        """Count a refusal and keep it as ``fault`` for status and metrics; ``since`` stays that of the first one;
        ``file_gone``: refused as the store's file went (storefile ``Moved``), not by the disk, and so was every refusal
        since the last write that succeeded: the disk's refusal of a renewal stays the store's fault through the file
        gone's refusals after it (before, the next one made a full disk read as a renewal deferred, health ok)."""
        self.faults += 1
        file_gone = file_gone and (self.fault is None or self.fault["file_gone"])
        since = self.fault["since"] if self.fault is not None else time.time()
        self.fault = {"what": what, "reason": reason, "since": since, "at": time.time(), "file_gone": file_gone}

    @property
    def refusing(self) -> dict | None:
        """The fault status, health and metrics report as the store's (``fault``), but not while it is the file gone on
        an HA standby whose renewal, which mends it, waits for a ``canopy backup`` (``deferral``): waiting for a backup
        is no fault of the store's, and is reported as what it is (before stop 48: the store "failed" meanwhile,
        ``canopy_store_ok`` 0 and health degraded by the file check's refusal)."""
        if self.fault is not None and self.deferral is not None and self.fault["file_gone"]:
            return None
        return self.fault

    def deferred_for(self) -> float:
        """Seconds the renewal a backup deferred has waited (since its first refusal), on the monotonic clock (a step
        of the wall clock is no wait); 0 while none waits."""
        return time.monotonic() - self._deferred_at if self.deferral is not None else 0.0

    def _commit_unlocked(self, changes, meta):
        """The commit's transaction; the caller holds the lock (this may run in another OS thread)."""
        self.file.check()  # storefile.Moved: the path no longer names the file written to
        with self._writing():
            return self._commit_changes(changes, meta)

    def _commit_changes(self, changes, meta):
        return committed_rows(self._db, changes, meta, self.keep_changes)

    def set_meta(self, key, value):
        """One meta value in a transaction of its own, through ``offload`` as a commit is: its fsync held the
        event loop for 45 ms when the start-up hold recorded 50 connected switches (controller/startup_hold.py)."""
        with self._lock:
            self._written(f"the meta value {key!r}", self._set_meta_committed, key, value)

    def _set_meta_committed(self, key, value):
        """set_meta's transaction; the caller holds the lock (this may run in another OS thread)."""
        self.file.check()
        with self._writing():
            set_meta(self._db, key, value)

    def _txn(self):
        return Transaction(self._db, self._lock)

    def _writing(self):
        """A write transaction of the store's own (the caller holds the lock; this may run in another OS thread): once
        it ended, its checkpoint may have written the file, which is noted as it left it (storefile ``wrote``) here, in
        the thread that ran it, and not by the caller: one killed while it waited stops waiting before the end
        (ryu_compat.blocking: KILLED_WAITS), and a note taken then would take this checkpoint for someone else's."""
        return Transaction(self._db, after=self.file.wrote)

    # ------------------------------------------------------------------ replication
    @_locked
    def change_at(self, seq: int) -> Change | None:
        """The logged change with this sequence number, or None (never written, or compacted away)."""
        rows = self.changes_since(seq - 1, limit=1)
        return rows[0] if rows and rows[0].seq == seq else None

    @_locked
    def history(self) -> tuple[int, float | None]:
        """(last_seq, commit time of that change): the position in history. The time is the active's and is
        replicated verbatim, so two stores with the same pair hold the same history. (0, None): empty."""
        last = self.last_seq()
        change = self.change_at(last)
        if change is not None:
            return last, change.ts
        return last, (self.get_meta("compacted_ts") if last else None)

    @_locked
    def replicated_meta(self) -> dict:
        """The meta values a standby copies (counters, last_txn, ...): all but LOCAL_META."""
        return {key: json.loads(value) for key, value in self._db.execute("SELECT key, value FROM meta")
                if key not in LOCAL_META}

    def apply_replicated(self, changes: list[Change], meta: dict, what: str = "a replicated batch") -> int:
        """Write the active's changes, keeping their seq/txn/ts, and its meta values in one transaction.
        ``what`` names them in a refusal: the active commits its own write (numbered for the standby) here too.

        Changes at or below last_seq() were applied before and are skipped (a re-send is harmless); the meta
        then is not written either, as it may be older than ours. A gap (first new seq != last_seq() + 1, or
        a hole inside the batch) raises StoreError and writes nothing. Returns the new last_seq()."""
        with self._lock:  # held on for the marker, written once the transaction is committed
            last, new = self._written("%s of %d change(s)" % (what, len(changes)), self._apply_changes,
                                      changes, meta)
            if new:
                self._write_marker(new[-1].seq, new[-1].ts)
        return last

    def _apply_changes(self, changes, meta):
        """The replicated batch's transaction; the caller holds the lock (this may run in another OS thread)."""
        self.file.check()
        with self._writing():
            return replicated_rows(self._db, changes, meta, self.keep_changes)

    @_locked
    def write_marker(self):
        """Record (store_id, last_seq) in the marker file beside the database. Not fsynced: after a crash it
        may name an earlier change than the store holds (accepted), never a later one."""
        self._write_marker(*self.history())

    def _write_marker(self, seq, ts):
        """Replace the marker; a marker the disk refuses is left as it was (it lags the store: allowed) and counted as
        a fault, never failing the write it follows (that write is committed already)."""
        data = {"store_id": self._store_id, "seq": seq, "ts": ts, "written": time.time()}
        tmp = self.marker_path + ".tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(data, fh)
            os.replace(tmp, self.marker_path)
        except OSError as exc:
            reason = fault_reason(self.path, exc)
            self._faulty(f"its marker {self.marker_path}", reason)
            log.warning("the store %s could not replace its marker %s: %s; the write before it stands (the marker "
                        "lags the store until a later write replaces it)", self.path, self.marker_path, reason)
            try:
                os.remove(tmp)
            except OSError:
                pass

    def snapshot(self) -> dict:
        """The whole store as one value: {"objects": {kind: {id: body}}, "meta": {key: value} (all but
        schema_version), "last_seq": int, "history": [seq, ts] of the last change or None}. StoreError when the
        file was overwritten in place: the connection reads the pages put there under its own log (storefile)."""
        if self.file.overwritten:
            raise StoreError(f"the store {self.path} cannot be read whole: its file was {self.file.gone}")
        if not self._work.wait():  # (on this thread, not through ``offload``: not with the pool thread's transaction)
            raise StoreError(f"the store {self.path} is still in a transaction abandoned by a stopped caller")
        with self._txn():
            meta = {key: json.loads(value) for key, value in self._db.execute("SELECT key, value FROM meta")
                    if key != "schema_version"}
            seq, ts = self.history()
            return {"objects": self.load_objects(), "meta": meta, "last_seq": seq,
                    "history": [seq, ts] if ts is not None else None}

    def restore(self, snapshot: dict) -> None:
        """Replace every object and meta value (KEPT_META's stay) with a snapshot's and empty
        the change log, so last_seq() and history() equal the snapshot's. One transaction: a malformed snapshot
        raises StoreError and leaves the store as it was."""
        try:
            objects, meta, last = snapshot["objects"], snapshot["meta"], snapshot["last_seq"]
            history = snapshot.get("history")
            if not (isinstance(objects, dict) and isinstance(meta, dict) and _is_int(last) and last >= 0):
                raise StoreError("snapshot has no objects, meta and last_seq")
            ts = None
            if history is not None:
                hseq, ts = history
                if hseq != last or not isinstance(ts, (int, float)):
                    raise StoreError(f"snapshot history {history!r} does not match last_seq {last}")
            with self._lock:  # held on for the marker, written once the transaction is committed
                self._written("a snapshot restore", self._restore_unlocked, objects, meta, last, ts)
                self.write_marker()
        except StoreError:  # StoreFault too: the disk refused it (rolled back)
            raise
        except (KeyError, TypeError, ValueError, AttributeError, sqlite3.Error) as exc:
            raise StoreError(f"malformed snapshot: {exc!r}") from None

    def _restore_unlocked(self, objects, meta, last, ts):
        """restore's transaction, through ``offload`` as a commit's is (the file check, the save of a file gone, every
        row and the fsync: seconds of the event loop for a standby's first snapshot at scale); the caller holds the
        lock (this may run in another OS thread)."""
        self.file.check()
        with self._writing():
            restored_rows(self._db, objects, meta, last, ts)
