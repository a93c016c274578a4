"""Before a controller serves its store: is it the store this data directory last held, whole and current?

A controller trusts its store completely: whatever policy it holds is what every switch is made to match.
So an empty ``canopy.db`` (zero bytes, deleted, or replaced by a fresh one) or one that lost its newest
changes (a truncated, garbled or deleted write-ahead log) would delete tenant flows from every switch that
connects. ``verify()`` compares the database with the marker file the store keeps beside it
(controller/store.py) and refuses, with one line saying what is wrong and what to do, when:

- ``canopy.db`` is missing or empty (0 bytes) while the marker (or a write-ahead log) says a store was here;
  a zero-length ``canopy.db`` is refused even without a marker (SQLite never leaves one behind);
- it is not a readable Canopy store (``PRAGMA quick_check`` fails, tables or schema version missing);
- it is another store than the marker names (``store_id``);
- it holds fewer changes than the marker says it last held.

A store that cannot be read now because of its disk (full, read-only, an I/O error: SQLite's DISK_ERRORS) is
refused as ``StoreUnreadable`` saying so, even with ``accept``: it is not damaged, and accepting it would move a
whole store aside.

Recovery (docs/store.md): ``canopy restore FILE`` from a ``canopy backup`` (taken on this node or on the
HA peer), or ``canopy run --accept-store`` to take the store as it is (``canopy run`` takes the data directory's
``lock()`` first: never while another Canopy serves it). ``backup()`` copies a live store
consistently with SQLite's online backup; ``restore()`` needs the controller stopped (``lock()``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from controller.store import DB_NAME, MARKER_NAME, RENEWED_META, SCHEMA_VERSION, StoreError, free_bytes
from controller.storefile import (
    DEFER_BOUND, DATABASE_FILES, FilesBusy, FilesRefused, PartlyMoved, copy_into, discard, moving_files, put_back,
    reading_files, refused_lock, set_aside)

LOCK_NAME = "canopy.lock"
# what ``canopy backup`` says of a copy made beside a waiting renewal, or of a renewed store (notes)
PASSED = ("an HA standby's renewal of this store waited for the backups begun before this one, and this backup for it "
          "as long as ha.store_renewal_wait_ms: copied beside them what is at the path, the file the renewal will "
          "replace (this node's store file went): back up the active for the pair's policy (docs/store.md)")
RENEWED = ("this is an HA standby's store renewed at {} (its file went), empty until the active's snapshot fills it: "
           "back up the active for the pair's policy (docs/store.md)")
RECOVERY = ("restore a backup with 'canopy restore FILE' (a 'canopy backup' from this node or the HA peer), "
            "or take the store as it is with 'canopy run --accept-store'")


class StoreRefused(StoreError):
    """The store is not safe to serve; ``str()`` is one line for the operator."""


class StoreUnreadable(StoreRefused):
    """The store cannot be read now because of its disk (full, read-only, an I/O error), not because it is damaged:
    refused even with ``--accept-store``, which must never move aside (and so empty) a store that is whole."""


# SQLite's errors that say the disk or the file system failed, not the file's contents (sqlite3 ``sqlite_errorname``)
DISK_ERRORS = ("SQLITE_IOERR", "SQLITE_FULL", "SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_BUSY", "SQLITE_NOMEM")
# SQLite's errors for a store it may read but not open as a WAL store needs (its index made or written beside it): a
# backup by a user who is not Canopy's, of a stopped store (while it runs, SQLite reads an index it may not write)
UNWRITABLE_TO_READ = ("SQLITE_READONLY_DIRECTORY", "SQLITE_READONLY_CANTINIT", "SQLITE_READONLY_CANTLOCK")
_REMEDIES = {  # what to do about a store that cannot be read now, by SQLite's error name (its start)
    "SQLITE_BUSY": "another process holds the store (a second Canopy, a backup, an sqlite3 shell): stop it",
    "SQLITE_NOMEM": "the machine is out of memory: free some",
    "SQLITE_READONLY": "the store or its directory is read-only: make both writable for Canopy's user",
    "SQLITE_CANTOPEN": "the store cannot be opened: check its directory exists and Canopy's user may write it",
}


def _remedy(errorname: str) -> str:
    """The operator's next step for a store that cannot be read now (free space or mend the disk unless SQLite's
    error says otherwise)."""
    return next((text for name, text in _REMEDIES.items() if errorname.startswith(name)),
                "free space or mend the disk")


@dataclass(frozen=True)
class StoreFacts:
    """What a database file holds: its store id and last change (seq) and when that change was made; ``renewed``: when
    an HA standby renewed it (its file went), while the active's snapshot has not filled it (empty until then)."""

    store_id: str | None
    seq: int
    ts: float | None
    renewed: float | None = None


def _paths(data_dir):
    return os.path.join(data_dir, DB_NAME), os.path.join(data_dir, MARKER_NAME)


def read_marker(data_dir) -> dict | None:
    """The marker's contents, None when there is none; StoreRefused when it cannot be read."""
    _, marker = _paths(data_dir)
    try:
        with open(marker, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StoreRefused(f"the store marker {marker} is unreadable ({exc}); if {DB_NAME} is right, "
                           "start with 'canopy run --accept-store'") from None
    if not (isinstance(data, dict) and isinstance(data.get("seq"), int)):
        raise StoreRefused(f"the store marker {marker} is malformed; if {DB_NAME} is right, start with "
                           "'canopy run --accept-store'")
    return data


def _read_only(path):
    """A read-only connection to the SQLite file at ``path`` (any characters in the name)."""
    return sqlite3.connect(Path(os.path.abspath(path)).as_uri() + "?mode=ro", uri=True)


def inspect(path) -> StoreFacts:
    """Read a store file without changing it; StoreRefused naming the damage when it is not a Canopy store."""
    try:
        db = _read_only(path)
    except sqlite3.Error as exc:
        raise StoreRefused(f"{path} cannot be opened ({exc})") from None
    try:
        check = db.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise StoreRefused(f"{path} is damaged (SQLite: {check})")
        meta = dict(db.execute("SELECT key, value FROM meta"))
        if json.loads(meta.get("schema_version", "null")) != SCHEMA_VERSION:
            raise StoreRefused(f"{path} has store schema {meta.get('schema_version')}; this Canopy reads "
                               f"{SCHEMA_VERSION}")
        seq = max(db.execute("SELECT MAX(seq) FROM changes").fetchone()[0] or 0,
                  json.loads(meta.get("compacted_seq", "0")) or 0)
        row = db.execute("SELECT ts FROM changes WHERE seq = ?", (seq,)).fetchone()
        ts = row[0] if row else json.loads(meta.get("compacted_ts", "null"))
        return StoreFacts(json.loads(meta.get("store_id", "null")), seq, ts, json.loads(meta.get(RENEWED_META, "null")))
    except sqlite3.Error as exc:
        if (getattr(exc, "sqlite_errorname", None) or "").startswith(DISK_ERRORS):
            free = free_bytes(path)
            space = "" if free is None else f"; {free} bytes free on its file system"
            raise StoreUnreadable(f"{path} cannot be read now ({exc}, {exc.sqlite_errorname}{space}): "
                                  f"{_remedy(exc.sqlite_errorname)}, then start again; nothing was changed") from None
        raise StoreRefused(f"{path} is damaged or not a Canopy store ({exc})") from None
    finally:
        db.close()


def verify(data_dir: str, accept: bool = False) -> str | None:
    """Raise StoreRefused when the store must not be served. With ``accept`` the store is taken as it is:
    the marker is moved aside (the store writes a new one), and so is a database that cannot be read (an
    empty store is made in its place); the returned line says what was accepted."""
    try:
        problem = _problem(data_dir)
    except StoreUnreadable:
        raise  # the disk's fault, not the store's: nothing to accept, nothing moved aside
    except StoreRefused as exc:
        problem = str(exc)
    if problem is None:
        return None
    if not accept:
        raise StoreRefused(f"{problem}; {RECOVERY}")
    path, marker = _paths(data_dir)
    with _files_moved(data_dir, "a 'canopy run --accept-store'", "nothing accepted"):  # (as for a restore)
        set_aside(marker, "replaced", ("",))  # (names claimed: never over an earlier one, storefile)
        if not _readable(path):
            _moved_aside(path)
    return f"accepted the store as it is (--accept-store): {problem}"


@contextlib.contextmanager
def _files_moved(data_dir: str, mover: str, undone: str):
    """The store's files in ``data_dir`` held for ``mover`` (a restore, --accept-store: storefile ``moving_files``), so
    that no backup opens them while they move; refused as StoreRefused saying ``undone`` ("nothing restored")."""
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(moving_files(data_dir, mover))
        except FilesBusy:
            raise StoreRefused(f"a 'canopy backup' is copying the store in {data_dir}: {undone}; try again once it "
                               "ended") from None
        except FilesRefused as exc:
            raise StoreRefused(f"{undone}: {exc.strerror}") from None
        yield


def _moved_aside(path: str) -> list[str]:
    """The store at ``path`` and its log moved aside (``replaced-<time>``), together or not at all: when its log
    could not be moved after its database, the database is put back (before, in a restore: set aside, and the
    controller refused to start on the log left alone); where they went."""
    try:
        return set_aside(path, "replaced")
    except PartlyMoved as exc:
        put_back(exc.moved)
        raise


def _readable(path) -> bool:
    """True when ``path`` is missing (a new store is made) or a readable Canopy store."""
    if not os.path.exists(path):
        return True
    if os.path.getsize(path) == 0:
        return False
    try:
        inspect(path)
    except StoreUnreadable:
        raise  # whole, as far as anyone can tell: never moved aside
    except StoreRefused:
        return False
    return True


def _problem(data_dir) -> str | None:
    if not os.path.isdir(data_dir):
        return None  # nothing stored yet (or not a directory at all: the data directory check says so)
    path, _ = _paths(data_dir)
    marker = read_marker(data_dir)
    last = _describe(marker) if marker else ""
    size = os.path.getsize(path) if os.path.exists(path) else None
    if size is None:
        if marker and marker["seq"] > 0:
            return f"{path} is missing but this data directory last held {last}"
        if os.path.exists(path + "-wal"):
            return f"{path} is missing but its write-ahead log {path}-wal is there"
        return None  # a new data directory
    if size == 0:
        return f"{path} is empty (0 bytes)" + (f" but this data directory last held {last}" if marker else "")
    facts = inspect(path)
    if marker is None:
        return None  # a store from before markers existed: the store writes one now
    if marker.get("store_id") and facts.store_id != marker["store_id"]:
        return f"{path} is another store than the one this data directory last held ({last})"
    if facts.seq < marker["seq"]:
        return (f"{path} holds changes up to {facts.seq} but this data directory last held {last}: the newest "
                f"changes are lost (was {DB_NAME}-wal truncated, damaged or deleted?)")
    return None


def _describe(marker) -> str:
    when = marker.get("ts")
    stamp = time.strftime(" of %Y-%m-%d %H:%M:%S UTC", time.gmtime(when)) if isinstance(when, (int, float)) else ""
    return f"change {marker['seq']}{stamp}"


def lock(data_dir: str):
    """Take this data directory for one process (held until the returned file is closed or the process
    ends); StoreRefused when another Canopy holds it."""
    try:
        os.makedirs(data_dir, mode=0o750, exist_ok=True)
        fh = open(os.path.join(data_dir, LOCK_NAME), "a+")
    except OSError as exc:  # (``canopy run`` takes it first: not a REST token file's error)
        raise StoreRefused(f"data_dir: cannot open its lock file {os.path.join(data_dir, LOCK_NAME)}: "
                           f"{exc.strerror or exc}") from None
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise StoreRefused(f"another Canopy process is using {data_dir}; stop it first") from None
    except OSError as exc:  # refused outright (an NFS mount without its lock service): said as storefile's are
        fh.close()
        raise StoreRefused(f"data_dir: {refused_lock(fh.name, exc, 'two Canopy processes')}") from None
    return fh


def backup(data_dir: str, dest: str, wait: float = DEFER_BOUND, notes: list | None = None) -> StoreFacts:
    """Copy the live store to ``dest`` (SQLite online backup: consistent while the controller writes). An HA
    standby's renewal does not move the store's files while the copy is opened and made (storefile
    ``reading_files``; one under way, or waiting for the backups before, is waited for, ``wait`` seconds at most):
    the copy is of the old store or the new, whole. What the operator should know of the copy is added to ``notes``
    (a waiting renewal passed; a renewed store, empty until the active's snapshot: back up the active). A copy that
    fails, or whose check fails (a damaged store copies as it is), is removed: no file named ``dest`` is left that
    is not a whole store (before, a damaged copy stayed, for a later restore to refuse or an operator to trust)."""
    path, _ = _paths(data_dir)
    try:
        return _checked_copy(data_dir, path, dest, wait, [] if notes is None else notes)
    except FileNotFoundError:  # (the data directory)
        raise StoreRefused(f"there is no store to back up at {path}") from None
    except FilesRefused as exc:
        raise StoreRefused(f"could not back up {path}: {exc.strerror}") from None


def _checked_copy(data_dir: str, path: str, dest: str, wait: float, notes: list) -> StoreFacts:
    """The store at ``path`` copied to the new file ``dest`` (no renewal moving its files meanwhile) and the copy
    checked; what this made removed when either fails."""
    new = [suffix for suffix in DATABASE_FILES if not os.path.lexists(dest + suffix)]  # (``dest`` there: refused)
    try:
        with reading_files(data_dir, wait) as passed:
            _copied(path, dest)
        if passed:
            notes.append(PASSED)
        try:
            facts = inspect(dest)
        except StoreRefused as exc:
            raise StoreRefused(f"the copy of {path} is not a whole store, so it was removed ({exc}); if the store "
                               "itself is damaged, back up the HA peer (docs/store.md)") from None
    except BaseException:
        if "" in new:
            discard(dest, new)
        raise
    if facts.renewed is not None:
        notes.append(RENEWED.format(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(facts.renewed))))
    return facts


def _copied(path: str, dest: str) -> None:
    """SQLite's online backup of the store at ``path`` into the new file ``dest``."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        raise StoreRefused(f"there is no store to back up at {path}")
    if os.path.exists(dest):
        raise StoreRefused(f"{dest} exists; name a new file")
    src = _read_only(path)
    try:
        copy_into(src.backup, dest)
    except sqlite3.Error as exc:
        unwritable = (getattr(exc, "sqlite_errorname", None) or "").startswith(UNWRITABLE_TO_READ)
        raise StoreRefused(f"backing up {path} failed ({exc}" + (f", {exc.sqlite_errorname}: SQLite reads a store "
                           "through its index, canopy.db-shm, which this user may not make or write there: run "
                           "'canopy backup' as the user Canopy runs as" if unwritable else "") + ")") from None
    finally:
        src.close()


def restore(data_dir: str, source: str) -> tuple[StoreFacts, str | None]:
    """Make a backup the store of ``data_dir`` (the controller must be stopped). The store it replaces is
    kept beside it as ``canopy.db.replaced-<time>`` (with its -wal), and the marker is rewritten.
    Returns (what the restored store holds, where the replaced one went)."""
    facts = inspect(source)  # refuse a damaged backup before touching anything
    held = lock(data_dir)
    try:
        with _files_moved(data_dir, "a 'canopy restore'", "nothing restored"):
            kept = _replaced(data_dir, source, facts)
    finally:
        held.close()
    return facts, kept


def _replaced(data_dir: str, source: str, facts: StoreFacts) -> str | None:
    """restore's file work: the store moved aside, the backup at its path, the marker rewritten; where the store
    it replaced went."""
    path, marker = _paths(data_dir)
    moved = _moved_aside(path)  # two restores within one second: the first's no longer replaced
    kept = moved[0].removesuffix("-wal").removesuffix("-shm") if moved else None  # (the store moved, or its log)
    src = _read_only(source)
    try:
        copy_into(lambda out: (src.backup(out), out.execute("PRAGMA journal_mode=WAL")), path)
    finally:
        src.close()
    with open(marker + ".tmp", "w", encoding="utf-8") as fh:
        json.dump({"store_id": facts.store_id, "seq": facts.seq, "ts": facts.ts, "written": time.time()}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(marker + ".tmp", marker)
    return kept
