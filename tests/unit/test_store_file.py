"""The store's file deleted or replaced under a running controller (controller/storefile.py, docs/store.md): on a
real file system, with real SQLite. Before, SQLite went on committing to the deleted file (or the one moved away):
every later write was acknowledged and lost with the process, and the next start was refused (the marker names a
store that is not there). Now every write after it is refused (StoreFault: REST's 503 store_failed), and the
first refusal saves what the store held, every write acknowledged before included, for ``canopy restore``."""

import glob
import json
import os
import sqlite3

import pytest

from controller import storefile
from controller.store import Change, Store, StoreError, StoreFault
from controller.storeguard import StoreRefused, restore
from tests.unit.stores import stores_closed  # noqa: F401 - autouse: closes the stores a test leaves open


def _put(store, oid):
    return store.commit([Change("tenant", oid, "put", {"id": oid})])


def _remove(path):
    os.remove(path)


def _replace(path):
    other = sqlite3.connect(path + ".other")
    other.execute("CREATE TABLE t (x)")
    other.close()
    os.replace(path + ".other", path)


@pytest.mark.parametrize("fault", [_remove, _replace], ids=["deleted", "replaced"])
def test_a_write_after_the_file_went_is_refused_and_what_was_acknowledged_is_saved(tmp_path, fault):
    data = str(tmp_path / "data")
    store = Store(data)
    _put(store, "a")
    _put(store, "b")
    fault(store.path)
    with pytest.raises(StoreFault) as refused:
        _put(store, "c")
    assert "its file was" in str(refused.value) and store.path in str(refused.value)
    assert store.fault is not None and store.faults == 1
    [saved] = glob.glob(store.path + ".saved-*")
    assert f"saved in {saved}" in str(refused.value)
    with pytest.raises(StoreFault):  # every later write too, and meta values, and a replicated batch
        _put(store, "d")
    with pytest.raises(StoreFault):
        store.set_meta("x", 1)
    with pytest.raises(StoreFault):
        store.apply_replicated([Change("tenant", "e", "put", {"id": "e"}, 3, 3, 1.0)], {})
    with pytest.raises(StoreFault):
        store.restore(store.snapshot())
    assert glob.glob(store.path + ".saved-*") == [saved]  # saved once
    assert set(store.load_objects()["tenant"]) == {"a", "b"}
    store.close()
    if fault is _replace:
        with pytest.raises(StoreRefused):  # the file put there is no Canopy store
            Store(data)
    else:
        with pytest.raises(StoreRefused):  # the marker names a store that is not there
            Store(data)
    restore(data, saved)
    again = Store(data)
    assert set(again.load_objects()["tenant"]) == {"a", "b"} and again.last_seq() == 2
    _put(again, "c")
    assert again.last_seq() == 3


def test_a_data_directory_deleted_whole_refuses_writes_and_saves_nothing_it_cannot(tmp_path):
    data = str(tmp_path / "data")
    store = Store(data)
    _put(store, "a")
    for name in os.listdir(data):
        os.remove(os.path.join(data, name))
    os.rmdir(data)
    with pytest.raises(StoreFault) as refused:
        _put(store, "b")
    assert "restore a backup" in str(refused.value)
    assert set(store.load_objects()["tenant"]) == {"a"}


def test_the_file_renamed_back_is_still_refused_and_the_saved_copy_holds_every_acknowledged_write(tmp_path):
    """Its write-ahead log was moved aside when the file went: a write now would be in a log no start reads."""
    data = str(tmp_path / "data")
    store = Store(data)
    _put(store, "a")
    os.rename(store.path, store.path + ".away")
    with pytest.raises(StoreFault):
        _put(store, "b")
    os.rename(store.path + ".away", store.path)
    with pytest.raises(StoreFault):
        _put(store, "b")
    [saved] = glob.glob(store.path + ".saved-*")
    assert not os.path.exists(store.path + "-wal") and glob.glob(store.path + ".gone-*-wal")
    store.close()
    restore(data, saved)
    assert set(Store(data).load_objects()["tenant"]) == {"a"}


def test_a_bad_write_is_still_a_store_error_not_a_fault(tmp_path):
    store = Store(str(tmp_path))
    with pytest.raises(StoreError) as raised:
        store.commit([Change("tenant", "b", "explode", None)])
    assert not isinstance(raised.value, StoreFault) and store.fault is None


def test_a_save_that_failed_is_tried_again_at_a_later_refusal_and_then_holds_every_acknowledged_write(tmp_path):
    """The data directory gone (or the disk full) when the file went: nothing could be saved, and the open connection
    is the only copy of what was acknowledged. Once the directory is there again (or space freed), a later refused
    write saves it, at most every SAVE_AGAIN seconds (a clock of the test's own), instead of never again."""
    data = str(tmp_path / "data")
    store = Store(data)
    _put(store, "a")
    _put(store, "b")
    for name in os.listdir(data):
        os.remove(os.path.join(data, name))
    os.rmdir(data)
    now = [0.0]
    store.file.clock = lambda: now[0]
    with pytest.raises(StoreFault):
        _put(store, "c")
    assert store.file.saved is None
    os.mkdir(data)
    now[0] = storefile.SAVE_AGAIN - 1
    with pytest.raises(StoreFault):  # not tried again yet: no full copy per refused write
        _put(store, "c")
    assert glob.glob(store.path + ".saved-*") == []
    now[0] = storefile.SAVE_AGAIN
    with pytest.raises(StoreFault) as refused:
        _put(store, "c")
    [saved] = glob.glob(store.path + ".saved-*")
    assert f"saved in {saved}" in str(refused.value)
    now[0] = 10 * storefile.SAVE_AGAIN
    with pytest.raises(StoreFault):  # saved once
        _put(store, "d")
    assert glob.glob(store.path + ".saved-*") == [saved]
    store.close()
    restore(data, saved)
    again = Store(data)
    assert set(again.load_objects()["tenant"]) == {"a", "b"} and again.last_seq() == 2


def test_a_file_deleted_after_the_last_write_is_saved_when_the_store_closes(tmp_path):
    """No write came after the file went (a quiet controller stopped or restarted): nothing noticed it, and every
    write acknowledged before went with the process. The store saves what it held when it closes."""
    data = str(tmp_path / "data")
    store = Store(data)
    _put(store, "a")
    _put(store, "b")
    os.remove(store.path)
    store.close()
    [saved] = glob.glob(store.path + ".saved-*")
    with pytest.raises(StoreRefused):  # the marker names a store that is not there
        Store(data)
    restore(data, saved)
    again = Store(data)
    assert set(again.load_objects()["tenant"]) == {"a", "b"} and again.last_seq() == 2
    again.close()
    assert [p for p in glob.glob(store.path + ".saved-*") if p[-4:] not in ("-wal", "-shm")] == [saved]  # kept: none


def test_a_save_that_failed_is_tried_again_when_the_store_closes(tmp_path):
    data = str(tmp_path / "data")
    store = Store(data)
    _put(store, "a")
    for name in os.listdir(data):
        os.remove(os.path.join(data, name))
    os.rmdir(data)
    with pytest.raises(StoreFault):
        _put(store, "b")
    os.mkdir(data)
    store.close()  # at once: not SAVE_AGAIN seconds later, the last chance
    [saved] = glob.glob(store.path + ".saved-*")
    restore(data, saved)
    assert set(Store(data).load_objects()["tenant"]) == {"a"}


# ------------------------------------------------------------------ the file changed in place (same inode)

def _written_in_place(path, data: bytes):
    """Write ``data`` into the store's own file (same inode), as ``cp -p other.db canopy.db`` or a restore tool does:
    truncated and rewritten, its modification time set to the source's (a time of the past)."""
    with open(path, "r+b") as fh:
        fh.truncate(0)
        fh.write(data)
    os.utime(path, ns=(10**18, 10**18))


def _another_store(tmp_path) -> bytes:
    other = Store(str(tmp_path / "other"))
    _put(other, "x")
    other.close()
    with open(other.path, "rb") as fh:
        return fh.read()


def test_a_file_overwritten_in_place_refuses_writes_saves_nothing_and_is_left_as_it_was_put(tmp_path):
    """``cp other.db canopy.db`` under a running controller: the same inode, another store's pages. Before, SQLite
    went on committing into its log over the foreign pages (every write 201), and its close checkpointed that log
    into the file put there: a damaged file. Now the write is refused, no copy is made (the open store reads through
    the foreign pages), its log is moved aside and the file put there is left byte for byte as it was put."""
    data = str(tmp_path / "data")
    foreign = _another_store(tmp_path)
    store = Store(data)
    inode = os.stat(store.path).st_ino
    _put(store, "a")
    _put(store, "b")
    _written_in_place(store.path, foreign)
    assert os.stat(store.path).st_ino == inode
    with pytest.raises(StoreFault) as refused:
        _put(store, "c")
    assert "overwritten in place" in str(refused.value) and "canopy backup" in str(refused.value)
    with pytest.raises(StoreFault):
        store.apply_replicated([Change("tenant", "e", "put", {"id": "e"}, 3, 3, 1.0)], {})
    with pytest.raises(StoreError):  # nothing it reads is the store: no snapshot for a standby either
        store.snapshot()
    assert glob.glob(store.path + ".saved-*") == [] and glob.glob(store.path + ".gone-*-wal")
    store.close()
    with open(store.path, "rb") as fh:
        assert fh.read() == foreign, "the store's log was checkpointed into the file put in its place"
    with pytest.raises(StoreRefused):  # another store than the marker names
        Store(data)


def test_a_file_truncated_in_place_refuses_writes_and_is_not_written_again(tmp_path):
    data = str(tmp_path / "data")
    store = Store(data)
    _put(store, "a")
    os.truncate(store.path, 0)
    with pytest.raises(StoreFault) as refused:
        _put(store, "b")
    assert "overwritten in place" in str(refused.value)
    store.close()
    assert os.path.getsize(store.path) == 0
    with pytest.raises(StoreRefused):  # empty
        Store(data)


def test_an_older_copy_of_the_same_store_written_in_place_is_refused(tmp_path):
    """A restore tool writing last night's copy into the running store's file: the same store id, fewer changes."""
    data = str(tmp_path / "data")
    store = Store(data)
    _put(store, "a")
    copy = str(tmp_path / "copy.db")
    out = sqlite3.connect(copy)
    store._db.backup(out)
    out.close()
    with open(copy, "rb") as fh:
        older = fh.read()
    _put(store, "b")
    _written_in_place(store.path, older)
    with pytest.raises(StoreFault):
        _put(store, "c")
    store.close()
    with open(store.path, "rb") as fh:
        assert fh.read() == older
    with pytest.raises(StoreRefused, match="fewer changes|holds change"):
        Store(data)


def test_the_write_ahead_log_deleted_refuses_writes_and_what_was_acknowledged_is_saved(tmp_path):
    """``canopy.db-wal`` removed: SQLite goes on writing to the log it opened, which no start reads."""
    data = str(tmp_path / "data")
    store = Store(data)
    _put(store, "a")
    _put(store, "b")
    os.remove(store.path + "-wal")
    with pytest.raises(StoreFault) as refused:
        _put(store, "c")
    assert "write-ahead log" in str(refused.value)
    [saved] = glob.glob(store.path + ".saved-*")
    store.close()
    restore(data, saved)
    again = Store(data)
    assert set(again.load_objects()["tenant"]) == {"a", "b"} and again.last_seq() == 2


def test_a_commit_by_another_connection_refuses_writes_and_keeps_the_file_whole(tmp_path):
    """A second controller (or an sqlite3 shell) committing to the same file: its change is not in this controller's
    memory or history. Writes are refused; the file, with its log, stays whole for the restart."""
    data = str(tmp_path / "data")
    store = Store(data)
    _put(store, "a")
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("INSERT INTO objects (kind, id, body) VALUES ('tenant', 'z', '{\"id\": \"z\"}')")
    other.close()
    with pytest.raises(StoreFault) as refused:
        _put(store, "b")
    assert "another process" in str(refused.value)
    assert os.path.exists(store.path + "-wal") and not glob.glob(store.path + ".gone-*")
    store.close()
    again = Store(data)
    assert set(again.load_objects()["tenant"]) == {"a", "z"} and again.last_seq() == 1


def test_the_stores_own_writes_checkpoints_reads_and_a_backup_are_not_taken_for_a_change(tmp_path):
    """Only something else's write refuses: thousands of writes (their checkpoints write the file), snapshots,
    replicated batches and a restore, the reader, and a ``canopy backup`` from another connection."""
    from controller.storeguard import backup

    data = str(tmp_path / "data")
    store = Store(data)
    size = os.path.getsize(store.path)
    for i in range(300):
        store.commit([Change("vport", f"v{i}-{j}", "put", {"id": f"v{i}-{j}", "pad": "x" * 400}) for j in range(10)])
        store.reader.last_seq()
    assert os.path.getsize(store.path) > size, "no checkpoint wrote the file: the test proves nothing"
    store.set_meta("x", 1)
    replica = Store(str(tmp_path / "replica"))
    replica.restore(store.snapshot())
    replica.apply_replicated([Change("tenant", "t", "put", {"id": "t"}, 3001, 301, 1.0)], {})
    backup(data, str(tmp_path / "backup.db"))
    _put(store, "a")
    assert store.fault is None and replica.fault is None


def test_a_big_commit_by_another_connection_is_not_taken_for_an_overwrite(tmp_path):
    """Another connection's commit big enough for its own automatic checkpoint writes the file: its size and time
    change as an overwrite's would, but the file and its log are one SQLite store still (its commit is counted by
    ``PRAGMA data_version``). Before, it was taken for an overwrite: the log moved aside, nothing saved, and the
    advice to restore a backup, when the file and its log held every acknowledged write (and the close, writer first,
    left out of the file whatever a checkpoint had not copied yet)."""
    data = str(tmp_path / "data")
    store = Store(data)
    _put(store, "a")
    _put(store, "b")
    size = os.path.getsize(store.path)
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("INSERT INTO meta (key, value) VALUES ('big', ?)", (json.dumps("x" * 6_000_000),))  # > 1,000 pages
    other.close()
    assert os.path.getsize(store.path) > size, "the other's commit did not checkpoint: the test proves nothing"
    with pytest.raises(StoreFault) as refused:
        _put(store, "c")
    assert "another process" in str(refused.value)
    assert os.path.exists(store.path + "-wal") and not glob.glob(store.path + ".gone-*")
    assert glob.glob(store.path + ".saved-*")
    store.close()
    again = Store(data)
    assert set(again.load_objects()["tenant"]) == {"a", "b"} and again.get_meta("big") == "x" * 6_000_000
    again.close()


def test_a_file_deleted_while_it_is_being_checked_is_saved_not_taken_for_one_overwritten(tmp_path):
    """The check looked at the path twice (its inode, then its size and time): a file deleted between the two (the
    HA standby's tick racing an ``rm``, at load) was taken for one overwritten in place, whose pages are not the
    store's, so nothing was saved, and a standby renewed its store with no ``saved-<time>`` copy (CI at load ~10).
    The deletion is made here at that very point, from the check's own look at SQLite's data_version, between them."""
    data = str(tmp_path / "data")
    store = Store(data)
    _put(store, "a")
    version, armed = store.file.version, [True]

    def deleting():  # (the check asks it after the inode, before the size and time)
        if armed:
            armed.clear()
            os.remove(store.path)
        return version()

    store.file.version = deleting
    try:
        _put(store, "b")  # its check saw the file still there: written to the open connection (in the copy below)
    except StoreFault:
        pass
    assert not armed, "the deletion was not made during a check: the test proves nothing"
    with pytest.raises(StoreFault) as refused:
        _put(store, "c")
    assert not store.file.overwritten and "deleted" in str(refused.value)
    [saved] = glob.glob(store.path + ".saved-*")
    store.close()
    restore(data, saved)
    again = Store(data)
    assert set(again.load_objects()["tenant"]) == {"a", "b"}
    again.close()
