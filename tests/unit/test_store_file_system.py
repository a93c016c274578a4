"""The data directory's file system (controller/storedisk.py, storefile ``LocksRefused``): a network one said at start
and in ``GET /v1/status``; a flock it refuses said naming it and what to do; NFS's emulation of flock on files
(byte-range locks: an exclusive one needs the file open for writing) does not unmark a deferred renewal."""

from __future__ import annotations

import errno
import json
import fcntl
import os
import stat
import subprocess
import sys

import pytest

from controller import cli, storedisk, storefile, storeguard
from controller.store import StoreFault
from tests.unit.helpers import Controller
from tests.unit.stores import stores_closed  # noqa: F401 - autouse: closes the stores a test leaves open
from tests.unit.test_store_backup_renewal import _whole_store_at_the_path


def _mounts(tmp_path, *mounts) -> str:
    """A mountinfo file with ``mounts``: (mount point as mountinfo writes it, file system type)."""
    path = tmp_path / "mountinfo"
    path.write_text("".join(f"{n} 1 0:{n} / {point} rw,relatime - {kind} src rw\n"
                            for n, (point, kind) in enumerate((("/", "ext4"),) + mounts, 20)))
    return str(path)


def test_a_data_directory_on_nfs_is_named_and_a_local_one_is_not(tmp_path):
    mounts = _mounts(tmp_path, ("/srv/nfs", "nfs4"), ("/srv/nfs/local", "xfs"), ("/mnt/my\\040share", "cifs"))
    assert storedisk.network_warning("/var/lib/canopy", mounts) is None
    line = storedisk.network_warning("/srv/nfs/canopy", mounts)
    assert "network file system (nfs4 at /srv/nfs)" in line and "keep data_dir on a local file system" in line
    assert storedisk.network_warning("/srv/nfs/local/canopy", mounts) is None  # the longest mount point holds it
    assert storedisk.network_warning("/srv/nfsx", mounts) is None  # (a prefix of the name is not the mount)
    assert "cifs at /mnt/my share" in storedisk.network_warning("/mnt/my share/canopy", mounts)
    assert storedisk.network_warning("/srv/nfs/canopy", str(tmp_path / "none")) is None  # no mount table: unknown


@pytest.mark.parametrize("written, path", [
    ("/mnt/\u0434\u0430\u043d\u043d\u044b\u0435\\040nfs", "/mnt/\u0434\u0430\u043d\u043d\u044b\u0435 nfs"),  # not Latin-1
    ("/mnt/caf\u00e9\\011tab", "/mnt/caf\u00e9\ttab"),  # escaped, Latin-1 but not ASCII: UTF-8 in the file
    ("/mnt/back\\134slash\\012line", "/mnt/back\\slash\nline"),
    ("/mnt/\u6587\u4ef6", "/mnt/\u6587\u4ef6")])
def test_a_mount_point_with_escapes_and_names_beyond_latin_1_is_recognised(tmp_path, written, path):
    """/proc/self/mountinfo writes a mount point's bytes, a space, tab, newline and backslash as octal escapes
    (``\\040``): those were undone as if the line were Latin-1, so a name of UTF-8 beyond ASCII beside an escape was
    garbled (or, beyond Latin-1, replaced by "?"), and the network file system under it went unnamed."""
    mounts = _mounts(tmp_path, (written, "nfs4"))
    line = storedisk.network_warning(path + "/canopy", mounts)
    assert line is not None and f"nfs4 at {path})" in line, line


def test_a_mount_point_of_bytes_that_are_not_utf_8_is_recognised(tmp_path):
    """A mount point's name in another encoding (Latin-1 bytes): the path Canopy is given holds the same bytes
    (``os.fsdecode``), as the kernel's table does."""
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_bytes(b"20 1 0:20 / / rw - ext4 src rw\n21 1 0:21 / /mnt/caf\xe9\\040x rw - cifs src rw\n")
    line = storedisk.network_warning(os.fsdecode(b"/mnt/caf\xe9 x/canopy"), str(mountinfo))
    assert line is not None and "cifs at /mnt/caf" in line, line


def test_status_says_so_for_a_data_directory_on_a_network_file_system(tmp_path, monkeypatch):
    monkeypatch.setattr(storedisk, "MOUNTINFO", _mounts(tmp_path, (str(tmp_path), "nfs")))
    ctl = Controller(tmp_path)
    status = ctl.call("GET", "/v1/status")[1]
    assert "is on a network file system (nfs at" in status["store"]["file_system_warning"], status["store"]
    ctl.close()
    monkeypatch.setattr(storedisk, "MOUNTINFO", _mounts(tmp_path))
    ctl = Controller(tmp_path / "local")
    assert ctl.call("GET", "/v1/status")[1]["store"]["file_system_warning"] is None
    ctl.close()


def _refusing_flock(monkeypatch, code=errno.ENOLCK):
    def flock(fd, operation):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(fcntl, "flock", flock)


def test_a_flock_the_file_system_refuses_is_said_naming_it_and_what_to_do(tmp_path, monkeypatch):
    """An NFS mount without its lock service refuses every flock (ENOLCK). Before, a standby's every renewal was
    refused with the bare errno ("No locks available") and a backup failed with it; now both say the file system
    refused the lock and to keep data_dir on a local file system, and nothing is moved."""
    store = _whole_store_at_the_path(tmp_path)
    data = os.path.dirname(store.path)
    _refusing_flock(monkeypatch)
    with pytest.raises(StoreFault, match="refused a flock .*keep data_dir on a local file system"):
        store.renew()
    assert store.fault["reason"].startswith("the file system of"), store.fault
    with pytest.raises(storeguard.StoreRefused, match="could not back up .* refused a flock"):
        storeguard.backup(data, str(tmp_path / "b.db"))
    assert not (tmp_path / "b.db").exists()


def test_nfs_s_emulated_flock_still_marks_a_deferred_renewal_waiting(tmp_path, monkeypatch):
    """NFS emulates flock on a file with a byte-range lock (fcntl's), whose exclusive kind needs a descriptor open
    for writing; directories keep the local flock. The waiting mark (an exclusive lock on canopy.renewal-waiting) was
    taken on a read-only descriptor: EBADF there, the renewal left unmarked and backups back to back starving it
    again. It is taken on a descriptor open for writing now."""
    real = fcntl.flock

    def emulated(fd, operation):
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return real(fd, operation)
        if operation & fcntl.LOCK_EX and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, "Bad file descriptor")
        return fcntl.lockf(fd, operation)

    monkeypatch.setattr(fcntl, "flock", emulated)
    fd = storefile.waiting_renewal(str(tmp_path))
    assert fd is not None, "the renewal is not marked waiting"
    os.close(fd)


def test_the_data_directory_s_lock_refused_by_the_file_system_is_said_naming_it(tmp_path, monkeypatch, capsys):
    """The data directory's own lock (``canopy.lock``: ``canopy run`` takes it first, ``canopy restore`` too) on a
    mount refusing flocks. Before, ``canopy restore`` failed with the bare errno ("[Errno 37] No locks available"),
    and ``canopy run`` (``--accept-store`` too) said "cannot write the REST token file", though docs/operations.md
    says a refused flock is said naming the file system and what to do for restore and --accept-store. Nothing is
    changed."""
    store = _whole_store_at_the_path(tmp_path)
    data = os.path.dirname(store.path)
    store.close()
    backup = str(tmp_path / "b.db")
    storeguard.backup(data, backup)
    config = tmp_path / "canopy.yaml"
    config.write_text(json.dumps({"data_dir": data}))
    before = sorted(os.listdir(data)) + [storeguard.LOCK_NAME]  # (made when the lock is taken: holds nothing)
    _refusing_flock(monkeypatch)
    with pytest.raises(storeguard.StoreRefused, match="refused a flock on canopy.lock .*keep data_dir on a local"):
        storeguard.restore(data, backup)
    for argv in (["restore", backup], ["run"], ["run", "--accept-store"]):
        assert cli.main(argv + ["--config", str(config)]) == cli.EXIT_START, argv
        err = capsys.readouterr().err
        assert "refused a flock on canopy.lock" in err and "REST token" not in err, (argv, err)
    assert sorted(os.listdir(data)) == sorted(before)


def test_canopy_run_warns_once_at_start_for_a_data_directory_on_a_network_file_system(tmp_path, monkeypatch,
                                                                                      capsys):
    """``canopy run`` on a data directory that /proc/self/mountinfo puts on NFS logs the warning docs/operations.md
    quotes, once, and starts all the same (the event loop itself stubbed: ``run_manager``); on a local one it says
    nothing of the kind."""
    from controller import lifecycle, runtime, ryu_compat

    for name in ("exit_on_stop_signals", "install_signals", "check_listeners"):
        monkeypatch.setattr(lifecycle, name, lambda *args: None)
    monkeypatch.setattr(ryu_compat, "run_manager", lambda argv, guard: cli.EXIT_OK)
    for name in ("SETTINGS", "DATA_LOCK", "STORE_ACCEPTED"):
        monkeypatch.setattr(runtime, name, getattr(runtime, name))
    for place, kind, said in (("nfs", "nfs4", 1), ("local", "ext4", 0)):
        data = tmp_path / place
        config = tmp_path / f"{place}.yaml"
        config.write_text(json.dumps({"data_dir": str(data)}))
        monkeypatch.setattr(storedisk, "MOUNTINFO", _mounts(tmp_path, (str(data), kind)))
        try:
            assert cli.main(["run", "--config", str(config)]) == cli.EXIT_OK
        finally:
            runtime.DATA_LOCK.close()
        err = capsys.readouterr().err
        assert err.count(f"data_dir {data} is on a network file system ({kind} at {data})") == said, err


def test_malformed_mountinfo_lines_are_passed_over_and_do_not_crash_the_start(tmp_path):
    """Lines the kernel would not write (an escape beyond a byte, ``\\777``; a lone backslash; too few fields; no
    separator) are passed over: ``\\777`` raised ValueError out of ``file_system`` (bytes must be in range(0, 256)),
    which ``Store()`` and ``canopy run`` call at start. The lines around them are read as before."""
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_bytes(b"20 1 0:20 / / rw - ext4 src rw\n21 1 0:21 / /mnt/odd\\777x rw - nfs4 src rw\n"
                          b"22 1 0:22 / /mnt/lone\\ rw - ext4 src rw\n23 1\n - nfs\n\n"
                          b"24 1 0:24 / /srv/nfs rw - nfs4 src rw\n")
    assert storedisk.network_warning("/var/lib/canopy", str(mountinfo)) is None
    assert "nfs4 at /srv/nfs)" in storedisk.network_warning("/srv/nfs/canopy", str(mountinfo))
    assert storedisk.file_system("/mnt/lone\\/canopy", str(mountinfo)) == ("/mnt/lone\\", "ext4")


def test_the_renewal_s_marks_are_as_readable_as_the_store_s_files(tmp_path):
    """A backup sees whether a renewal waits (``canopy.renewal-waiting``) or who moves the files (``canopy.moving``) by
    opening their marks. They were made 0640 while SQLite makes the store's files 0644 (the umask applied to both): a
    ``canopy backup`` run by a user who reads the store but is not Canopy's failed on the mark's bare errno. Now the
    marks have the store's files' mode."""
    from controller.store import Change, Store

    store = Store(str(tmp_path / "data"))
    store.commit([Change("tenant", "a", "put", {"id": "a"})])
    data = os.path.dirname(store.path)
    os.close(storefile.waiting_renewal(data))
    with storefile.moving_files(data, "a 'canopy restore'"):
        pass
    mode = stat.S_IMODE(os.stat(store.path).st_mode)
    for mark in (storefile.WAITING_NAME, storefile.MOVER_NAME):
        assert stat.S_IMODE(os.stat(os.path.join(data, mark)).st_mode) == mode, mark


def test_a_backup_that_may_not_open_a_mark_says_which_and_what_to_do_and_copies_nothing(tmp_path, monkeypatch,
                                                                                      capsys):
    """``canopy backup`` run by another user than Canopy's, whose mark it may not open (made 0640 before stop 50, or
    by another user): before, it failed on the bare errno ("canopy: [Errno 13] Permission denied:
    '.../canopy.renewal-waiting'"). Now it names the file, what it is for and what to do; exit 4, no copy left. The
    data directory itself refused the same way is said the same way."""
    from controller.store import Change, Store

    store = Store(str(tmp_path / "data"))
    store.commit([Change("tenant", "a", "put", {"id": "a"})])
    data = os.path.dirname(store.path)
    os.close(storefile.waiting_renewal(data))  # a mark, not held: a renewal waited once
    config = tmp_path / "canopy.yaml"
    config.write_text(json.dumps({"data_dir": data}))
    real_open = os.open
    for refused in (os.path.join(data, storefile.WAITING_NAME), data):
        def refusing(path, flags, *args, refused=refused, **kwargs):
            if os.fspath(path) == refused:  # (as root, a mode refuses nothing: the refusal is made here)
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refusing)
        backup = str(tmp_path / "b.db")
        assert cli.main(["backup", backup, "--config", str(config)]) == cli.EXIT_START
        err = capsys.readouterr().err
        assert f"could not back up {store.path}: cannot open {refused} (Permission denied), which tells a backup" in err
        assert "run 'canopy backup' as the user Canopy runs as" in err and "nothing was copied" in err, err
        assert not os.path.lexists(backup)
        monkeypatch.setattr(os, "open", real_open)
    assert cli.main(["backup", backup, "--config", str(config)]) == cli.EXIT_OK


# a process that file modes bind: as root, one without the capabilities that pass them (setpriv, util-linux)
BOUND_BY_MODES = ["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                  "--inh-caps=-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else []


# ``canopy backup``'s work and what it says of a refusal (the CLI's own import left out: ~0.7 s of CPU a run)
BACKUP = ("import sys\nfrom controller import storeguard\ntry:\n    storeguard.backup(sys.argv[1], sys.argv[2])\n"
          "except storeguard.StoreRefused as exc:\n    sys.exit(f'canopy: {exc}')")


def _backup_bound_by_modes(data, dest):
    """The store in ``data`` backed up to ``dest`` in a process that file modes bind: (exit status, standard error)."""
    argv = BOUND_BY_MODES + [sys.executable, "-c", BACKUP, data, str(dest)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=os.getcwd())
    return done.returncode, done.stderr


@pytest.mark.parametrize("refused", ["the mark", "the directory"])
def test_a_backup_the_file_modes_refuse_says_what_to_do_and_copies_nothing(tmp_path, refused):
    """Real refusals, by file modes (the test's own process passes them as root: the backup runs in one that modes
    bind). The renewal's mark unreadable (made 0640 before stop 50, or by another user): "canopy: [Errno 13]
    Permission denied: '.../canopy.renewal-waiting'" before. The data directory not writable, the store stopped:
    SQLite cannot make the index it reads a WAL store through (SQLITE_READONLY_DIRECTORY): "backing up ... failed
    (attempt to write a readonly database)" before. Both now say to run the backup as Canopy's user; no copy left."""
    from controller.store import Change, Store

    store = Store(str(tmp_path / "data"))
    store.commit([Change("tenant", "a", "put", {"id": "a"})])
    store.close()  # (stopped: SQLite must make the index to read it)
    data = os.path.dirname(store.path)
    os.close(storefile.waiting_renewal(data))  # a mark, not held: a renewal waited once
    dest = tmp_path / "b.db"
    locked = os.path.join(data, storefile.WAITING_NAME) if refused == "the mark" else data
    os.chmod(locked, 0o000 if refused == "the mark" else 0o555)
    try:
        status, err = _backup_bound_by_modes(data, dest)
    finally:
        os.chmod(locked, 0o644 if refused == "the mark" else 0o755)
    assert status == 1 and "run 'canopy backup' as the user Canopy runs as" in err, err
    assert (f"cannot open {locked} (Permission denied)" if refused == "the mark" else "SQLITE_READONLY_DIRECTORY") \
        in err, err
    assert not os.path.lexists(dest)
    assert _backup_bound_by_modes(data, dest) == (0, "")


def test_marks_made_0640_before_are_made_readable_as_the_store_at_its_next_start(tmp_path, caplog):
    """The marks' mode applies when one is made: marks left 0640 by a Canopy before stop 50 refused a backup by a user
    who reads the store (0644) but is not Canopy's, for good. The next start gives them the store's read bits, and
    only them (a store made 0600 by its operator leaves them as they are)."""
    from controller.store import Change, Store

    store = Store(str(tmp_path / "data"))
    store.commit([Change("tenant", "a", "put", {"id": "a"})])
    store.close()
    data = os.path.dirname(store.path)
    marks = [os.path.join(data, mark) for mark in (storefile.WAITING_NAME, storefile.MOVER_NAME)]
    for mode, readable in ((0o644, 0o644), (0o600, 0o640)):
        os.chmod(store.path, mode)
        for mark in marks:
            os.close(os.open(mark, os.O_WRONLY | os.O_CREAT, 0o640))
            os.chmod(mark, 0o640)  # (as before stop 50, whatever the umask)
        caplog.clear()
        with caplog.at_level("INFO", logger="canopy.store"):
            Store(data).close()
        assert [stat.S_IMODE(os.stat(mark).st_mode) for mark in marks] == [readable] * 2, mode
        assert sum("made readable as the store is" in r.getMessage() for r in caplog.records) == (mode == 0o644) * 2
