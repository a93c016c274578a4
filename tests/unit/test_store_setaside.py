"""Files the store sets aside (controller/storefile.py ``set_aside``, controller/store.py ``renew``): on a real file
system with real SQLite. A database's log and index keep its stem when names are numbered (``-2``, ``-3``: two
within one second), a renewal whose new file could not be opened has the file it set aside pruned like any
renewal's, and one whose move of the log failed after its database's puts the database back."""

import errno
import os
import sqlite3

import pytest

from controller import storefile
from controller.store import RENEWED_KEPT, Change, Store, StoreFault
from tests.unit.stores import stores_closed  # noqa: F401 - autouse: closes the stores a test leaves open

STAMP = "20261207T000000Z"


def _put(store, oid):
    store.commit([Change("tenant", oid, "put", {"id": oid})])


def _stems(names, suffixes=("-wal", "-shm")):
    return {suffix: {name.removesuffix(suffix) for name in names if name.endswith(suffix)} for suffix in suffixes}


def test_a_log_and_index_set_aside_share_one_stem_when_a_name_of_one_is_taken(tmp_path, monkeypatch):
    """The store's file deleted: its log and index go to ``gone-<time>-wal`` and ``-shm``. With ``gone-<time>-wal``
    taken (an earlier renewal within the second whose index an operator removed), the log went to ``gone-<time>-2-wal``
    and the index to ``gone-<time>-shm``: the index beside another's log. Now both go to ``gone-<time>-2``."""
    monkeypatch.setattr(storefile, "stamp", lambda: STAMP)
    data = tmp_path / "data"
    store = Store(str(data))
    _put(store, "a")
    earlier = f"{store.path}.gone-{STAMP}-wal"
    with open(earlier, "wb") as out:
        out.write(b"an earlier log")
    assert os.path.exists(store.path + "-shm")  # (WAL mode: the index is there while the store is open)
    os.remove(store.path)
    assert store.file_failed()
    names = [name for name in os.listdir(data) if ".gone-" in name]
    assert sorted(names) == sorted([os.path.basename(earlier), f"canopy.db.gone-{STAMP}-2-wal",
                                    f"canopy.db.gone-{STAMP}-2-shm"]), names
    with open(earlier, "rb") as kept:
        assert kept.read() == b"an earlier log"


def test_a_file_set_aside_alone_takes_no_stem_another_databases_file_has(tmp_path, monkeypatch):
    """A log set aside without its database (``set_aside`` of what is there) took the first stem whose ``-wal`` was
    free, though that stem's database file was another's. Now a stem holding any of a database's files is taken."""
    monkeypatch.setattr(storefile, "stamp", lambda: STAMP)
    path = str(tmp_path / "canopy.db")
    sqlite3.connect(f"{path}.replaced-{STAMP}").close()  # another database, set aside alone before
    with open(path + "-wal", "wb") as out:
        out.write(b"a log")
    moved = storefile.set_aside(path, "replaced")
    assert moved == [f"{path}.replaced-{STAMP}-2-wal"]
    assert sorted(os.listdir(tmp_path)) == [f"canopy.db.replaced-{STAMP}", f"canopy.db.replaced-{STAMP}-2-wal"]


def test_a_renewal_whose_new_file_failed_to_open_has_the_file_it_set_aside_pruned_too(tmp_path, monkeypatch):
    """The store's file overwritten in place: a renewal sets it aside (``renewed-<time>``) and opens a new one. When
    that open failed (a full disk for a moment), the next tick's renewal set nothing aside (the path empty) and
    recorded nothing: that ``renewed-`` file was never pruned, however many renewals followed. Now it is recorded with
    the renewal that succeeds, and pruned with it once RENEWED_KEPT newer ones kept theirs."""
    ticks = iter(range(1, 1000))
    monkeypatch.setattr(storefile, "stamp", lambda: "20261207T%06dZ" % next(ticks))  # a name per call
    data = tmp_path / "data"
    store = Store(str(data))
    _put(store, "t0")
    os.truncate(store.path, 0)
    assert store.file_failed()
    real, refusals = store._connected, [1]

    def connected(kept):
        if refusals[0]:
            refusals[0] -= 1
            raise sqlite3.OperationalError("database or disk is full")
        return real(kept)

    store._connected = connected
    with pytest.raises(StoreFault):
        store.renew()
    [first] = [name for name in os.listdir(data) if ".renewed-" in name and not name.endswith(("-wal", "-shm"))]
    store.renew()  # the next tick
    for round_ in range(1, RENEWED_KEPT + 1):
        _put(store, f"t{round_}")
        os.truncate(store.path, 0)
        assert store.file_failed()
        store.renew()
    renewed = [name for name in os.listdir(data) if ".renewed-" in name and not name.endswith(("-wal", "-shm"))]
    assert first not in renewed and len(renewed) == RENEWED_KEPT, sorted(os.listdir(data))


def test_a_copy_saved_takes_no_name_whose_log_is_there(tmp_path, monkeypatch):
    """A save claimed ``saved-<time>`` though a ``saved-<time>-wal`` was there (left by a reader of an earlier copy of
    that name, killed): SQLite, opening the empty file claimed, deleted that log (``test_sqlite_deletes_a_log_beside_
    an_empty_file``: it never replays it). Now the save takes ``saved-<time>-2`` and the log is kept."""
    monkeypatch.setattr(storefile, "stamp", lambda: STAMP)
    data = tmp_path / "data"
    store = Store(str(data))
    _put(store, "a")
    with open(f"{store.path}.saved-{STAMP}-wal", "wb") as out:
        out.write(b"a log left behind")
    os.remove(store.path)
    assert store.file_failed() and store.file.saved == f"{store.path}.saved-{STAMP}-2"
    assert not os.path.exists(f"{store.path}.saved-{STAMP}")
    with open(f"{store.path}.saved-{STAMP}-wal", "rb") as left:
        assert left.read() == b"a log left behind"


def test_sqlite_deletes_a_log_beside_an_empty_file(tmp_path):
    """What docs/store.md says of a save's claimed file: another database's (valid) log beside it is deleted at the
    first open, not replayed into the copy."""
    other = sqlite3.connect(tmp_path / "other.db", isolation_level=None)
    other.execute("PRAGMA journal_mode=WAL")
    other.execute("PRAGMA wal_autocheckpoint=0")
    other.execute("CREATE TABLE t (x)")
    other.execute("INSERT INTO t VALUES ('another')")
    empty = tmp_path / "copy"
    empty.touch()
    os.link(tmp_path / "other.db-wal", f"{empty}-wal")  # (a copy of the log, while ``other`` keeps it open)
    source = sqlite3.connect(":memory:")
    source.execute("CREATE TABLE t (x)")
    source.execute("INSERT INTO t VALUES ('mine')")
    source.commit()
    storefile.copy_into(source.backup, str(empty))
    assert not os.path.exists(f"{empty}-wal")
    copy = sqlite3.connect(empty)
    assert copy.execute("SELECT x FROM t").fetchall() == [("mine",)]
    for connection in (copy, source, other):
        connection.close()


def committed_by_another(store) -> None:
    """``store``'s file committed to by another connection: its log and index stay beside it, whole, and the renewal
    moves all three aside."""
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("INSERT INTO objects (kind, id, body) VALUES ('tenant', 'z', '{\"id\": \"z\"}')")
    other.close()
    assert store.file_failed() and all(os.path.exists(store.path + suffix) for suffix in ("", "-wal", "-shm"))


def _failing_the_logs_move(monkeypatch, store, label: str = "renewed") -> list:
    """The renewal's (``label``: a restore's, "replaced") move of the store's log refused (an I/O error), once; the
    list says when it was."""
    real, failed = os.replace, []

    def replace(src, dst, *args, **kwargs):
        if src == store.path + "-wal" and f".{label}-" in dst and not failed:
            failed.append(dst)
            raise OSError(errno.EIO, "Input/output error", src)
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    return failed


def _log_move_failing(tmp_path, monkeypatch, link_refusal: int):
    """(data directory, a standby's store there whose file went) with its renewal's move of the log refused once and
    every hard link refused with ``link_refusal``; renewal files named one per call of ``stamp``."""
    ticks = iter(range(1, 1000))
    monkeypatch.setattr(storefile, "stamp", lambda: "20261207T%06dZ" % next(ticks))
    data = tmp_path / "data"
    store = Store(str(data))
    _put(store, "t0")
    committed_by_another(store)
    _failing_the_logs_move(monkeypatch, store)
    monkeypatch.setattr(os, "link", lambda *args, **kwargs: (_ for _ in ()).throw(OSError(link_refusal, "refused")))
    return data, store


def _inodes(store) -> dict:
    return {suffix: os.stat(store.path + suffix).st_ino for suffix in ("", "-wal", "-shm")}


def _renewed_files(data) -> list[str]:
    return sorted(name for name in os.listdir(data) if ".renewed-" in name)


def test_a_renewal_whose_second_move_failed_puts_the_first_back(tmp_path, monkeypatch):
    """The renewal moved the store's database aside (``renewed-<time>``), then its log's move failed. Before, the
    database stayed there, recorded nowhere (never pruned), and the next try moved the log and index to a stem of
    their own, apart from their database. Now what was moved is put back: the refused try leaves the path as it was
    (the same files), and the next one moves all three under one stem, pruned like any renewal's."""
    ticks = iter(range(1, 1000))
    monkeypatch.setattr(storefile, "stamp", lambda: "20261207T%06dZ" % next(ticks))  # a name per call
    data = tmp_path / "data"
    store = Store(str(data))
    _put(store, "t0")
    committed_by_another(store)
    before = {suffix: os.stat(store.path + suffix).st_ino for suffix in ("", "-wal", "-shm")}
    failed = _failing_the_logs_move(monkeypatch, store)
    with pytest.raises(StoreFault, match="Input/output error"):
        store.renew()
    assert failed and _renewed_files(data) == [], _renewed_files(data)
    assert {suffix: os.stat(store.path + suffix).st_ino for suffix in before} == before
    store.renew()  # the next tick
    [first] = {name.removesuffix("-wal").removesuffix("-shm") for name in _renewed_files(data)}
    assert _renewed_files(data) == [first, first + "-shm", first + "-wal"]
    for round_ in range(1, RENEWED_KEPT + 1):
        _put(store, f"t{round_}")
        os.truncate(store.path, 0)
        assert store.file_failed()
        store.renew()
    assert not [name for name in _renewed_files(data) if name.startswith(first)], _renewed_files(data)


def test_a_file_that_cannot_be_put_back_is_pruned_with_the_renewal_that_succeeds(tmp_path, monkeypatch):
    """The database moved, the log's move failed, and the database cannot be put back either (here: its old name
    refused): it stays set aside, and goes with the renewal that succeeds once RENEWED_KEPT newer ones kept theirs;
    so does its log, which the next try moved alone (before stop 47's review, that log was never removed: no
    database among the files moved, it was not taken for the store's)."""
    data, store = _log_move_failing(tmp_path, monkeypatch, errno.EIO)
    with pytest.raises(StoreFault):
        store.renew()
    [left] = _renewed_files(data)
    monkeypatch.undo()
    store.renew()
    first = _renewed_files(data)
    assert left in first and {name for name in first if name.endswith(("-wal", "-shm"))}, first  # (its log)
    for round_ in range(1, RENEWED_KEPT + 1):
        _put(store, f"t{round_}")
        os.truncate(store.path, 0)
        assert store.file_failed()
        store.renew()
    assert not set(first) & set(_renewed_files(data)), _renewed_files(data)


@pytest.mark.parametrize("no_replace", [True, False], ids=["renameat2", "without-renameat2"])
@pytest.mark.parametrize("refusal", [errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS])
def test_a_file_system_without_hard_links_still_has_the_moved_file_put_back(tmp_path, monkeypatch, refusal,
                                                                           no_replace):
    """On a file system without hard links (vfat, some FUSE: link(2) refused), a renewal whose log's move failed
    after its database's still puts the database back (a rename, nothing being at its old name; one that never
    replaces, or a look then a rename where the system has none), so that the next try moves the three together.
    Before, the hard link was refused and the database stayed set aside."""
    if not no_replace:
        monkeypatch.setattr(storefile, "_RENAMEAT2", None)
    data, store = _log_move_failing(tmp_path, monkeypatch, refusal)
    before = _inodes(store)
    with pytest.raises(StoreFault, match="Input/output error"):
        store.renew()
    assert _renewed_files(data) == [] and _inodes(store) == before


@pytest.mark.parametrize("no_replace", [True, False], ids=["renameat2", "without-renameat2"])
def test_a_file_put_at_the_old_name_is_never_replaced_by_a_move_back(tmp_path, monkeypatch, no_replace):
    """Without hard links the move back is a rename: refused while a file is at the old name (someone's, put there
    since), which stays as it was; the file moved is left set aside."""
    if not no_replace:
        monkeypatch.setattr(storefile, "_RENAMEAT2", None)
    monkeypatch.setattr(os, "link", lambda *args, **kwargs: (_ for _ in ()).throw(OSError(errno.EPERM, "no links")))
    (tmp_path / "went").write_text("ours")
    (tmp_path / "was").write_text("theirs")
    assert storefile.put_back([(str(tmp_path / "went"), str(tmp_path / "was"))]) == [str(tmp_path / "went")]
    assert (tmp_path / "was").read_text() == "theirs" and (tmp_path / "went").read_text() == "ours"


def test_a_file_put_at_the_old_name_between_the_look_and_the_move_back_is_never_replaced(tmp_path, monkeypatch):
    """Without hard links, a file put at the old name after the move back looked (the look always finds none here)
    stays as it was: the move back is one atomic rename that never replaces (renameat2 RENAME_NOREPLACE), where the
    kernel and the file system have it. Before, a look then a plain rename: the file put there between the two
    system calls was replaced."""
    monkeypatch.setattr(os, "link", lambda *args, **kwargs: (_ for _ in ()).throw(OSError(errno.EPERM, "no links")))
    monkeypatch.setattr(os.path, "lexists", lambda path: False)
    (tmp_path / "went").write_text("ours")
    (tmp_path / "was").write_text("theirs")
    assert storefile.put_back([(str(tmp_path / "went"), str(tmp_path / "was"))]) == [str(tmp_path / "went")]
    assert (tmp_path / "was").read_text() == "theirs" and (tmp_path / "went").read_text() == "ours"
    monkeypatch.undo()
    monkeypatch.setattr(os, "link", lambda *args, **kwargs: (_ for _ in ()).throw(OSError(errno.EPERM, "no links")))
    os.remove(tmp_path / "was")
    assert storefile.put_back([(str(tmp_path / "went"), str(tmp_path / "was"))]) == []
    assert (tmp_path / "was").read_text() == "ours" and not (tmp_path / "went").exists()
