"""A damaged, empty or older store is refused before a controller serves it (controller/storeguard.py), with
one line for the operator; backup, restore and --accept-store are the way back."""

import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from controller import cli, storefile, storeguard
from controller.core import build_core
from controller.store import Change, Store

from .helpers import make_settings
from tests.unit.stores import stores_closed  # noqa: F401 - autouse: closes the stores a test leaves open

TENANTS = 60

# Commits TENANTS changes, says so, then waits to be killed: its last changes are only in canopy.db-wal.
WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from controller.store import Change, Store
    store = Store({data!r})
    for i in range({n}):
        store.commit([Change("tenant", f"t{{i}}", "put", {{"id": f"t{{i}}", "name": f"t{{i}}"}})])
    print("committed", flush=True)
    time.sleep(600)
""")


def killed_writer(data):
    """A data directory as a SIGKILLed controller leaves it: a marker, a small canopy.db and a full WAL."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER.format(root=os.getcwd(), data=str(data), n=TENANTS)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "committed"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    assert os.path.getsize(data / "canopy.db-wal") > 0
    return data


@pytest.fixture
def data(tmp_path):
    return killed_writer(tmp_path / "data")


def refused(data):
    with pytest.raises(storeguard.StoreRefused) as info:
        storeguard.verify(str(data))
    line = str(info.value)
    assert "\n" not in line and "canopy restore" in line and "--accept-store" in line
    return line


def test_a_killed_store_is_accepted_whole(data):
    assert storeguard.verify(str(data)) is None
    assert Store(str(data)).last_seq() == TENANTS


def test_a_zero_length_database_is_refused(data):
    os.truncate(data / "canopy.db", 0)
    assert f"is empty (0 bytes) but this data directory last held change {TENANTS}" in refused(data)


def test_a_zero_length_database_is_refused_even_without_a_marker(data):
    os.truncate(data / "canopy.db", 0)
    os.unlink(data / "canopy.db.marker")
    assert "is empty (0 bytes)" in refused(data)


def test_a_deleted_database_is_refused(data):
    os.unlink(data / "canopy.db")
    assert "is missing" in refused(data)


@pytest.mark.parametrize("damage", ["delete", "truncate", "garble"])
def test_a_damaged_write_ahead_log_is_refused(data, damage):
    wal = data / "canopy.db-wal"
    size = os.path.getsize(wal)
    if damage == "delete":
        os.unlink(wal)
    elif damage == "truncate":
        os.truncate(wal, size // 2)
    else:
        with open(wal, "r+b") as fh:
            fh.seek(size // 2)
            fh.write(os.urandom(4096))
    line = refused(data)
    assert "damaged" in line or f"this data directory last held change {TENANTS}" in line


def checkpointed(data):
    """As a controller that stopped cleanly leaves it: everything in canopy.db, no WAL."""
    Store(str(data)).close()
    assert not os.path.exists(data / "canopy.db-wal")
    return data


def test_a_garbled_database_is_refused_in_one_line(data):
    checkpointed(data)
    with open(data / "canopy.db", "r+b") as fh:
        fh.write(b"this is not SQLite" * 10)
    assert "damaged" in refused(data)


def test_another_store_is_refused(data, tmp_path):
    other = tmp_path / "other"
    store = Store(str(other))
    store.commit([Change("tenant", "x", "put", {"id": "x", "name": "x"})] * 100)
    store.close()
    checkpointed(data)
    os.replace(other / "canopy.db", data / "canopy.db")
    assert "another store" in refused(data)


def test_a_marker_behind_the_store_is_fine(data):
    marker = json.loads((data / "canopy.db.marker").read_text())
    (data / "canopy.db.marker").write_text(json.dumps({**marker, "seq": TENANTS - 5}))
    assert storeguard.verify(str(data)) is None


def test_accept_store_takes_it_as_it_is_and_then_starts_clean(data):
    os.truncate(data / "canopy.db", 0)
    note = storeguard.verify(str(data), accept=True)
    assert note.startswith("accepted the store as it is") and "0 bytes" in note
    store = Store(str(data))
    assert store.last_seq() == 0
    store.close()
    assert storeguard.verify(str(data)) is None


def test_backup_and_restore_bring_the_store_back(data, tmp_path):
    backup = tmp_path / "backup.db"
    assert cli.main(["backup", str(backup), "--config", write_settings(tmp_path, data)]) == cli.EXIT_OK
    assert storeguard.inspect(str(backup)).seq == TENANTS
    os.truncate(data / "canopy.db", 0)
    refused(data)
    assert cli.main(["restore", str(backup), "--config", write_settings(tmp_path, data)]) == cli.EXIT_OK
    assert storeguard.verify(str(data)) is None
    store = Store(str(data))
    assert store.last_seq() == TENANTS and len(store.load_objects()["tenant"]) == TENANTS
    assert list(data.glob("canopy.db.replaced-*")), "the replaced store is kept for inspection"


def test_backup_of_a_live_store_is_consistent(tmp_path):
    store = Store(str(tmp_path / "live"))
    store.commit([Change("tenant", "a", "put", {"id": "a", "name": "a"})])
    facts = storeguard.backup(str(tmp_path / "live"), str(tmp_path / "b.db"))
    store.commit([Change("tenant", "b", "put", {"id": "b", "name": "b"})])
    assert facts.seq == 1 and facts.store_id == store.get_meta("store_id")


def test_restore_refuses_while_a_controller_holds_the_data_directory(data, tmp_path):
    backup = tmp_path / "backup.db"
    storeguard.backup(str(data), str(backup))
    held = storeguard.lock(str(data))
    try:
        with pytest.raises(storeguard.StoreRefused, match="another Canopy process"):
            storeguard.restore(str(data), str(backup))
    finally:
        held.close()


def test_restore_refuses_a_damaged_backup_and_changes_nothing(data, tmp_path):
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"garbage" * 1000)
    with pytest.raises(storeguard.StoreRefused):
        storeguard.restore(str(data), str(bad))
    assert storeguard.verify(str(data)) is None


def write_settings(tmp_path, data):
    path = tmp_path / "canopy.yaml"
    path.write_text(json.dumps({"data_dir": str(data)}))
    return str(path)


@pytest.mark.parametrize("damage", ["empty", "garbled"])
def test_run_refuses_in_one_line_without_a_traceback(data, tmp_path, capsys, damage):
    checkpointed(data)
    if damage == "empty":
        os.truncate(data / "canopy.db", 0)
    else:
        with open(data / "canopy.db", "r+b") as fh:
            fh.write(b"\0" * 200)
    assert cli.main(["run", "--config", write_settings(tmp_path, data)]) == cli.EXIT_START
    err = capsys.readouterr().err
    assert "cannot start: " in err and "canopy restore FILE" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_the_core_refuses_too(data, tmp_path):
    os.truncate(data / "canopy.db", 0)
    settings = dataclasses.replace(make_settings(tmp_path), data_dir=str(data))
    with pytest.raises(storeguard.StoreRefused):
        build_core(settings)
    assert os.path.getsize(data / "canopy.db") == 0, "a refused store is left as it was"


def test_sqlite_reads_the_backup_as_a_plain_database(tmp_path, data):
    storeguard.backup(str(data), str(tmp_path / "b.db"))
    db = sqlite3.connect(tmp_path / "b.db")
    try:
        assert db.execute("SELECT COUNT(*) FROM objects").fetchone()[0] == TENANTS
    finally:
        db.close()


def test_two_restores_within_one_second_keep_each_replaced_store(data, tmp_path, monkeypatch):
    """The store a restore replaced was moved to ``canopy.db.replaced-<second>``: a second restore within the same
    second moved the first one's store over it, and the store the first restore replaced was gone. Now the names are
    claimed (controller/storefile.py ``set_aside``: ``-2``... when taken)."""
    import time
    import types

    from controller import storefile

    monkeypatch.setattr(storefile, "stamp", lambda: "20261207T000000Z")  # both within one second
    monkeypatch.setattr(storeguard, "time", types.SimpleNamespace(time=lambda: 1.8e9, strftime=time.strftime,
                                                                  gmtime=time.gmtime))
    checkpointed(data)
    backup = tmp_path / "backup.db"
    storeguard.backup(str(data), str(backup))
    original = os.stat(data / "canopy.db").st_ino
    _, first = storeguard.restore(str(data), str(backup))
    _, second = storeguard.restore(str(data), str(backup))
    assert first != second and os.stat(first).st_ino == original  # the store the first restore replaced
    assert storeguard.inspect(first).seq == storeguard.inspect(second).seq == TENANTS
    assert storeguard.verify(str(data)) is None


def test_any_opener_of_the_store_refuses(data):
    os.truncate(data / "canopy.db", 0)
    with pytest.raises(storeguard.StoreRefused, match="0 bytes"):
        Store(str(data))
    assert os.path.getsize(data / "canopy.db") == 0


def test_accept_store_moves_an_unreadable_database_aside(data):
    checkpointed(data)
    with open(data / "canopy.db", "r+b") as fh:
        fh.write(b"\0" * 200)
    assert "damaged" in storeguard.verify(str(data), accept=True)
    assert list(data.glob("canopy.db.replaced-*")) and list(data.glob("canopy.db.marker.replaced-*"))
    assert Store(str(data)).last_seq() == 0


@pytest.mark.parametrize("errorname, says", [
    ("SQLITE_FULL", "free space or mend the disk"),
    ("SQLITE_IOERR_SHMSIZE", "free space or mend the disk"),
    ("SQLITE_BUSY", "another process holds the store"),
    ("SQLITE_BUSY_RECOVERY", "another process holds the store"),
    ("SQLITE_NOMEM", "out of memory"),
    ("SQLITE_READONLY_DIRECTORY", "read-only"),
])
def test_a_store_unreadable_now_names_the_operator_s_next_step_by_sqlite_s_error(errorname, says):
    """A store locked by another process or a machine out of memory is not a full disk: the refusal says what to do."""
    assert says in storeguard._remedy(errorname)


def test_a_restore_whose_move_of_the_log_failed_puts_the_database_back(data, tmp_path, monkeypatch):
    """A restore moved the store's database aside, then its log's move failed (an I/O error). Before, the database
    stayed set aside and its log at the path: the controller then refused to start ("canopy.db is missing but its
    write-ahead log is there"). Now the database is put back: the refused restore leaves the store as it was, and it
    starts; a restore after it goes ahead."""
    import types

    from tests.unit.test_store_setaside import _failing_the_logs_move

    backup = tmp_path / "backup.db"
    storeguard.backup(str(data), str(backup))
    before = {suffix: os.stat(data / f"canopy.db{suffix}").st_ino for suffix in ("", "-wal", "-shm")}
    failed = _failing_the_logs_move(monkeypatch, types.SimpleNamespace(path=str(data / "canopy.db")),
                                    "replaced")
    with pytest.raises(OSError, match="Input/output error"):
        storeguard.restore(str(data), str(backup))
    assert failed and not list(data.glob("canopy.db.replaced-*"))
    assert {suffix: os.stat(data / f"canopy.db{suffix}").st_ino for suffix in before} == before
    assert storeguard.verify(str(data)) is None and Store(str(data)).last_seq() == TENANTS
    monkeypatch.undo()
    assert storeguard.restore(str(data), str(backup))[0].seq == TENANTS


def test_a_backup_whose_copy_is_damaged_leaves_no_file(tmp_path):
    """A damaged store copies as it is (SQLite's online backup copies pages): the copy's check fails, the backup is
    refused saying the copy was removed, and no file is left at the name given (before: the damaged copy, its -wal
    and -shm stayed, for an operator to trust or a later restore to refuse)."""
    store = Store(str(tmp_path / "data"))
    for i in range(TENANTS * 3):
        store.commit([Change("tenant", f"t{i}", "put", {"id": f"t{i}", "name": "x" * 100})])
    store.close()
    with open(tmp_path / "data" / "canopy.db", "r+b") as fh:
        for page in (3, 5, 10):  # b-tree pages' headers garbled: the copy is made, its quick_check fails
            fh.seek(4096 * page)
            fh.write(b"\x07" * 8)
    with pytest.raises(storeguard.StoreRefused, match="not a whole store, so it was removed"):
        storeguard.backup(str(tmp_path / "data"), str(tmp_path / "b.db"))
    assert sorted(name for name in os.listdir(tmp_path) if name.startswith("b.db")) == []


def test_a_backup_to_a_file_that_exists_leaves_that_file(tmp_path, data):
    """The name given is taken: refused, and the file there (someone's) is left as it was."""
    (tmp_path / "b.db").write_bytes(b"mine")
    with pytest.raises(storeguard.StoreRefused, match="exists; name a new file"):
        storeguard.backup(str(data), str(tmp_path / "b.db"))
    assert (tmp_path / "b.db").read_bytes() == b"mine"


def test_accept_store_moves_nothing_while_another_canopy_holds_the_data_directory(data, tmp_path, capsys):
    """``canopy run --accept-store`` beside a running Canopy (it holds the data directory's lock) is refused, naming
    it, and moves nothing aside. Before, the store was judged and moved aside first, the lock refused only after:
    the running controller's store (here: unreadable to the second) went from under it."""
    checkpointed(data)
    with open(data / "canopy.db", "r+b") as fh:
        fh.write(b"\0" * 200)
    held = storeguard.lock(str(data))
    before = sorted(os.listdir(data))
    try:
        code = cli.main(["run", "--config", write_settings(tmp_path, data), "--accept-store"])
    finally:
        held.close()
    assert code == cli.EXIT_START and "another Canopy process is using" in capsys.readouterr().err
    assert sorted(os.listdir(data)) == before, "the store was moved aside"


def test_accept_store_moves_nothing_while_a_backup_copies(data):
    """Its moves exclude a backup's copy as a restore's do: refused while one copies, nothing moved."""
    checkpointed(data)
    with open(data / "canopy.db", "r+b") as fh:
        fh.write(b"\0" * 200)
    before = sorted(os.listdir(data))
    with storefile.reading_files(str(data)):
        with pytest.raises(storeguard.StoreRefused, match="a 'canopy backup' is copying"):
            storeguard.verify(str(data), accept=True)
    assert sorted(os.listdir(data)) == before
    assert "damaged" in storeguard.verify(str(data), accept=True)


def test_a_lock_file_that_cannot_be_made_is_refused_naming_it(tmp_path):
    """``canopy run`` takes the lock first now: a data directory that cannot hold its lock file is refused as the
    store's (naming the file), not reported as the REST token's error that follows it in ``canopy run``."""
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(storeguard.StoreRefused, match=r"^data_dir: cannot open its lock file .*/file/below/canopy.lock"):
        storeguard.lock(str(afile / "below"))
