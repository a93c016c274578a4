"""A ``canopy backup`` and an HA standby's renewal of its store (controller/storeguard.py ``backup``,
controller/store.py ``renew``) on a real file system with real SQLite, their steps interleaved by hooks (no sleeps):
the renewal moves the store's database, its log and its index aside one at a time and makes a new store at the path.
A backup whose steps met those moves read files changing under it: with SQLite 3.40 it failed (the database it had
opened gone from the path: ``disk I/O error``, SQLITE_IOERR_FSTAT; or none there to open), and one that opened the old
database before the renewal and copied after it read that file through the new store's log and index (the new
store's pages, as long as its log holds them all). Now the two exclude each other (storefile ``moving_files``,
``reading_files``): a backup copies the old store or the new one, whole, whatever the timing."""

from __future__ import annotations

import functools
import os
import shutil
import threading

import pytest

from controller import cli, storefile, storeguard
from controller.store import Change, Store, StoreFault
from tests.unit.stores import stores_closed  # noqa: F401 - autouse: closes the stores a test leaves open
from tests.unit.test_store_setaside import committed_by_another

BOUND = 10.0  # seconds a step of the test waits for another thread's step; past it the test fails


def _whole_store_at_the_path(tmp_path) -> Store:
    """A store whose file another connection committed to (its log and index left beside it, whole), seen by the
    store: the standby's next tick renews it, moving the database, its log and its index aside."""
    store = Store(str(tmp_path / "data"))
    store.commit([Change("tenant", "a", "put", {"id": "a"})])
    committed_by_another(store)
    assert store.file.shared
    return store


def _dump(path: str) -> list[str]:
    """Everything the database at ``path`` holds, as SQL (read-only)."""
    db = storeguard._read_only(path)
    try:
        return list(db.iterdump())
    finally:
        db.close()


def _restored(tmp_path, backup: str) -> list[str]:
    """What a data directory holds once ``backup`` is restored into it (``canopy restore``)."""
    data = tmp_path / "restored"
    storeguard.restore(str(data), backup)
    return _dump(str(data / "canopy.db"))


def _after_move(monkeypatch, store, move: int, hook) -> None:
    """``hook()`` runs right after the renewal's ``move``-th move of the store's files (1: its database), once."""
    real, done = os.replace, []

    def replace(src, dst, *args, **kwargs):
        real(src, dst, *args, **kwargs)
        if ".renewed-" in str(dst) and str(src).startswith(store.path):
            done.append(src)
            if len(done) == move:
                hook()

    monkeypatch.setattr(os, "replace", replace)


def _in_thread(work, out: dict) -> None:
    """``work()`` run in a thread of its own (``out["thread"]``), its result or error in ``out``, ``out["settled"]``
    (an Event) set when it ends."""
    def run():
        try:
            out["result"] = work()
        except BaseException as exc:  # noqa: BLE001 - the test looks at it
            out["error"] = exc
        finally:
            out["settled"].set()

    out["thread"] = threading.Thread(target=run, daemon=True)
    out["thread"].start()


@pytest.mark.parametrize("move", [1, 2, 3], ids=["database", "log", "index"])
def test_a_renewal_that_begins_while_a_backup_copies_leaves_the_backup_the_old_store(tmp_path, monkeypatch, move):
    """The backup opened the store's database; the renewal began then, and the backup read after the renewal's
    ``move``-th move. Before, the backup failed (``disk I/O error``, SQLITE_IOERR_FSTAT: its database gone from the
    path). Now the renewal is refused while a backup copies (tried again at the next tick, which then renews) and the
    backup holds the old store exactly."""
    store = _whole_store_at_the_path(tmp_path)
    old, dest = _dump(store.path), str(tmp_path / "backup.db")
    moved, copied, renewal = threading.Event(), threading.Event(), {"settled": threading.Event()}

    def moving():  # the renewal's thread, after its move: the backup copies now
        moved.set()
        assert copied.wait(BOUND)

    def renew_between_open_and_copy(copy):
        def copy_after_the_renewal_began(*args):
            _in_thread(store.renew, renewal)
            assert _either(moved, renewal["settled"])
            return copy(*args)
        return copy_after_the_renewal_began

    _after_move(monkeypatch, store, move, moving)
    monkeypatch.setattr(storeguard, "copy_into", renew_between_open_and_copy(storefile.copy_into))
    try:
        storeguard.backup(str(tmp_path / "data"), dest)
    finally:
        copied.set()
        if "thread" in renewal:
            renewal["thread"].join(BOUND)
    monkeypatch.undo()
    assert _restored(tmp_path, dest) == old, "the backup is not the store it began to copy"
    assert isinstance(renewal.get("error"), StoreFault) and "'canopy backup' is copying" in str(renewal["error"])
    store.renew()  # the next tick
    assert _dump(store.path) != old and store.fault is None


@pytest.mark.parametrize("move", [1, 2, 3], ids=["database", "log", "index"])
def test_a_backup_that_begins_while_a_renewal_moves_the_files_copies_the_new_store(tmp_path, monkeypatch, move):
    """The backup began right after the renewal's ``move``-th move. Before, it found no database at the path and
    failed. Now it waits for the renewal (its looks counted by a pause of the test's: it waits, whatever the time
    the renewal takes) and copies the new store, whole."""
    store = _whole_store_at_the_path(tmp_path)
    dest = str(tmp_path / "backup.db")
    renewed, waited, backup = threading.Event(), [], {"settled": threading.Event()}

    def looked_again(seconds):  # the backup's pause while the renewal holds the files
        waited.append(seconds)
        backup["settled"].set()
        assert renewed.wait(BOUND)

    def back_up_now():  # in the renewal, after its move
        _in_thread(lambda: storeguard.backup(str(tmp_path / "data"), dest), backup)
        assert backup["settled"].wait(BOUND)

    monkeypatch.setattr(storeguard, "reading_files", functools.partial(storefile.reading_files, pause=looked_again))
    _after_move(monkeypatch, store, move, back_up_now)
    try:
        store.renew()
    finally:
        renewed.set()
        if "thread" in backup:
            backup["thread"].join(BOUND)
    monkeypatch.undo()
    assert "error" not in backup, backup.get("error")
    assert waited and _restored(tmp_path, dest) == _dump(store.path), "the backup is not the new store"


def test_a_backup_waits_for_a_renewal_at_most_its_bound_then_fails_saying_so(tmp_path, monkeypatch, capsys):
    """A renewal holding the store's files (here: never letting go) is waited for DEFER_BOUND seconds of the backup's
    clock (a clock of the test's, moved by each pause: no sleep), then ``canopy backup`` exits with 4 naming it, and
    makes no file at the name given (docs/store.md, Recovery)."""
    store = _whole_store_at_the_path(tmp_path)
    dest, now, pauses = tmp_path / "backup.db", [0.0], []

    def pause(seconds):
        pauses.append(seconds)
        assert len(pauses) < 10_000, "the backup waits for ever"
        now[0] += seconds

    monkeypatch.setattr(storeguard, "reading_files",
                        functools.partial(storefile.reading_files, pause=pause, clock=lambda: now[0]))
    config = tmp_path / "canopy.yaml"
    config.write_text(f'{{"data_dir": "{tmp_path / "data"}"}}')
    with storefile.moving_files(os.path.dirname(store.path)):
        assert cli.main(["backup", str(dest), "--config", str(config)]) == cli.EXIT_START
    assert now[0] >= storefile.DEFER_BOUND and pauses and not dest.exists()
    assert "renewal of the store" in capsys.readouterr().err
    assert cli.main(["backup", str(dest), "--config", str(config)]) == cli.EXIT_OK  # let go: the backup is made

def _either(*events: threading.Event) -> bool:
    """Whether one of ``events`` was set within about BOUND seconds (each looked at in turn)."""
    for _ in range(100):
        if any(event.wait(BOUND / 100) for event in events):
            return True
    return False


def test_a_restore_while_a_backup_copies_is_refused_and_changes_nothing(tmp_path, monkeypatch):
    """``canopy restore`` moves the store's files aside and writes the backup in their place, as a renewal does
    (the controller stopped, killed here: its last changes in the log; a ``canopy backup`` may still run, from cron).
    Before, a restore while a backup had the store open went ahead, and the backup copied the old database without
    its log (moved aside: "no such table: meta", a damaged copy left at its name). Now the restore is refused while
    a backup copies, naming it, and changes nothing; the backup holds the old store; a restore after it goes ahead."""
    data, dest = tmp_path / "data", str(tmp_path / "backup.db")
    _killed(tmp_path / "first", data, [Change("tenant", "a", "put", {"id": "a"})])
    source = _backed_up(tmp_path / "other", [Change("tenant", t, "put", {"id": t}) for t in "bc"])
    old, before, restore = _dump(str(data / "canopy.db")), _files(data), {}

    def restore_between_open_and_copy(copy):
        def copy_after_the_restore(*args):
            if not restore:  # (once: the restore copies too)
                restore["began"] = True
                try:
                    restore["result"] = storeguard.restore(str(data), source)
                except storeguard.StoreRefused as exc:
                    restore["error"] = exc
            return copy(*args)
        return copy_after_the_restore

    monkeypatch.setattr(storeguard, "copy_into", restore_between_open_and_copy(storefile.copy_into))
    storeguard.backup(str(data), dest)
    monkeypatch.undo()
    assert "'canopy backup' is copying" in str(restore.get("error")), restore
    assert _files(data) == before and _dump(str(data / "canopy.db")) == old
    assert _restored(tmp_path, dest) == old, "the backup is not the store it began to copy"
    facts, kept = storeguard.restore(str(data), source)  # the backup ended: the restore goes ahead
    assert facts.seq == 2 and kept and _dump(str(data / "canopy.db")) == _dump(source)


def _killed(data, image, changes) -> None:
    """In ``image``, the data directory a store in ``data`` that committed ``changes`` leaves when its controller is
    killed: the changes in the log (``canopy.db-wal``), not yet in the database."""
    store = Store(str(data))
    store.commit(changes)
    os.makedirs(image)
    for suffix in ("", "-wal"):
        shutil.copyfile(store.path + suffix, os.path.join(image, "canopy.db" + suffix))


def _backed_up(data, changes) -> str:
    """A backup (``data``.db) of a store in the data directory ``data`` that committed ``changes``."""
    store, path = Store(str(data)), f"{data}.db"
    store.commit(changes)
    storeguard.backup(str(data), path)
    return path


def _files(data) -> list[str]:
    """The files of the data directory ``data`` but its lock (``canopy.lock``, made by the first restore)."""
    return sorted(name for name in os.listdir(data) if name != storeguard.LOCK_NAME)


@pytest.mark.parametrize("mover, named", [
    ("restore", "a 'canopy restore' of the store"),
    ("accept", "a 'canopy run --accept-store' of the store"),
    ("renewal", "an HA standby's renewal of the store")])
def test_a_backup_that_waits_in_vain_for_the_files_moving_names_who_moves_them(tmp_path, monkeypatch, mover, named):
    """A backup waits for the store's files moving (``ha.store_renewal_wait_ms`` at most: 0 here) and then fails naming
    what moves them: before, always "an HA standby's renewal", also behind a restore's move (a large store's copy)."""
    data, dest = tmp_path / "data", str(tmp_path / "backup.db")
    _killed(tmp_path / "first", data, [Change("tenant", "a", "put", {"id": "a"})])
    source = _backed_up(tmp_path / "other", [Change("tenant", "b", "put", {"id": "b"})])
    said = []

    def back_up(*args):
        with pytest.raises(storeguard.StoreRefused) as refused:
            storeguard.backup(str(data), dest, wait=0)
        said.append(str(refused.value))

    if mover == "renewal":
        with storefile.moving_files(str(data)):
            back_up()
    else:
        real = storeguard.set_aside
        monkeypatch.setattr(storeguard, "set_aside", lambda *args: (said or back_up(), real(*args))[1])  # (once)
        if mover == "restore":
            storeguard.restore(str(data), source)
        else:
            (data / "canopy.db").write_bytes(b"")  # (refused: accepted, moved aside)
            storeguard.verify(str(data), accept=True)
    [line] = said
    assert named in line and "was still moving its files after 0 s" in line, line
    assert ("renewal" in line) == (mover == "renewal") and not os.path.exists(dest)
    monkeypatch.undo()
    if mover != "accept":  # (accepted: no store until a controller makes one)
        storeguard.backup(str(data), dest)  # nothing moves: the backup goes ahead (a mark left behind holds none back)


def test_a_mover_mark_the_disk_refuses_to_write_holds_nothing_after_the_move(tmp_path, monkeypatch):
    """The mover's name written into ``canopy.moving`` refused (a full disk: ENOSPC): the move goes ahead unnamed, and
    the mark's descriptor is closed with it. It was left open holding the mark's flock, for the life of the process
    (``canopy run --accept-store``: the controller), so every later backup waiting in vain for a renewal named
    "a 'canopy run --accept-store'"."""
    import errno

    data = tmp_path / "data"
    data.mkdir()
    mark = str(data / storefile.MOVER_NAME)
    real = os.pwrite

    def full(fd, payload, offset):
        if os.path.realpath(f"/proc/self/fd/{fd}") == mark:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, payload, offset)

    monkeypatch.setattr(os, "pwrite", full)
    with storefile.moving_files(str(data), "a 'canopy run --accept-store'"):
        pass
    assert not storefile._held(mark), "the mark's flock is still held after the move"
    with storefile.moving_files(str(data)):  # a renewal moving them: named so
        with pytest.raises(storefile.FilesBusy, match="an HA standby's renewal"):
            with storefile.reading_files(str(data), wait=0):
                pass
