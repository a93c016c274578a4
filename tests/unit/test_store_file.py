"""The store's file deleted or replaced under a running controller (controller/storefile.py, docs/store.md): on a
real file system, with real SQLite. Before, SQLite went on committing to the deleted file (or the one moved away):
every later write was acknowledged and lost with the process, and the next start was refused (the marker names a
store that is not there). Now every write after it is refused (StoreFault: REST's 503 store_failed), and the
first refusal saves what the store held, every write acknowledged before included, for ``canopy restore``."""

import glob
import os
import sqlite3

import pytest

from controller import storefile
from controller.store import Change, Store, StoreError, StoreFault
from controller.storeguard import StoreRefused, restore


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
