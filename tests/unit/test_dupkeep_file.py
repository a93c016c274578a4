"""The duplicate MAC flags' file (bgp/dupkeep.py ``write_file``): whatever is put at the ``.part`` path (a FIFO, a
symbolic link) neither blocks the write nor redirects it; the file is fsynced before the rename and the directory
after; and the write, fsyncs included, runs off the event loop (the app's ``blocking``)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap

from bgp import dupkeep
from bgp.dupkeep import FILE_NAME
from bgp.duplicates import DuplicateMacs
from tests.unit.fifo import fifo_without_reader

ROWS = [{"subnet_id": "s", "mac": "02:00:00:00:00:01", "took": 1.0, "last_move": "away", "window": 60.0,
         "since": 999.5}]


def keeper(tmp_path):
    return dupkeep.DuplicateKeeper(DuplicateMacs, str(tmp_path / FILE_NAME))


def written(tmp_path):
    path = tmp_path / FILE_NAME
    assert stat.S_ISREG(os.lstat(path).st_mode)  # a regular file, not a link or a FIFO renamed over it
    return json.loads(path.read_text())["flags"]


def test_a_fifo_at_the_part_path_neither_blocks_the_write_nor_takes_it(tmp_path):
    """A FIFO put at ``.part`` held the pass (and the event loop) in open() until a reader came: removed, never
    opened. A blocked open is released by the test (tests/unit/fifo.py) and the test fails."""
    keep = keeper(tmp_path)
    with fifo_without_reader(tmp_path / (FILE_NAME + ".part")):
        keep._write(ROWS)
    assert written(tmp_path) == ROWS
    assert sorted(os.listdir(tmp_path)) == [FILE_NAME]


def test_a_symlink_at_the_part_path_does_not_redirect_the_write(tmp_path):
    """A link put at ``.part`` made the write land in the file it names, and the rename then left the flags' path a
    link to it: the link is removed, the file written where it belongs, the other file untouched."""
    victim = tmp_path / "elsewhere"
    victim.write_text("not yours\n")
    (tmp_path / (FILE_NAME + ".part")).symlink_to(victim)
    keeper(tmp_path)._write(ROWS)
    assert written(tmp_path) == ROWS and victim.read_text() == "not yours\n"
    assert sorted(os.listdir(tmp_path)) == ["elsewhere", FILE_NAME]


def test_the_file_is_fsynced_before_the_rename_and_the_directory_after(tmp_path, monkeypatch):
    """A power cut after the rename could otherwise leave an empty or cut file (the data not on disk yet), or the
    old file (the rename not on disk)."""
    events = []
    fsync, replace = os.fsync, os.replace

    def synced(fd):
        st = os.fstat(fd)
        part = os.lstat(tmp_path / (FILE_NAME + ".part")) if (tmp_path / (FILE_NAME + ".part")).exists() else None
        if stat.S_ISDIR(st.st_mode) and st.st_ino == os.stat(tmp_path).st_ino:
            events.append("directory fsynced")
        elif part is not None and st.st_ino == part.st_ino and st.st_size == len(json.dumps({"flags": ROWS},
                                                                                            separators=(",", ":"))):
            events.append("part fsynced, whole")
        else:
            events.append("something else fsynced")
        fsync(fd)

    monkeypatch.setattr(os, "fsync", synced)
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("renamed"), replace(a, b))[1])
    keeper(tmp_path)._write(ROWS)
    assert events == ["part fsynced, whole", "renamed", "directory fsynced"]
    assert written(tmp_path) == ROWS


def test_a_failed_write_leaves_the_old_file_and_no_part(tmp_path, monkeypatch, caplog):
    keep = keeper(tmp_path)
    keep._write(ROWS)

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    keep._write(ROWS + [dict(ROWS[0], mac="02:00:00:00:00:02")])
    assert written(tmp_path) == ROWS and sorted(os.listdir(tmp_path)) == [FILE_NAME]
    assert "No space left on device" in caplog.text


GREEN_WRITE = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {root!r})
    from controller.ryu_compat import blocking, hub
    hub.patch(thread=True)                    # as run_manager does before the apps exist
    from eventlet import patcher
    from bgp.dupkeep import DuplicateKeeper
    from bgp.duplicates import DuplicateMacs

    ran = patcher.original("threading").Event()  # set by a green thread: only when the hub is free
    real_fsync = os.fsync

    def fsync(fd):                            # a slow disk: done only once another green thread has run
        if not ran.wait({bound}):
            print("the write held the event loop", flush=True)
        real_fsync(fd)

    os.fsync = fsync
    keeper = DuplicateKeeper(DuplicateMacs, {path!r})
    keeper.offload = {offload}                # as controller/app.py sets it
    hub.spawn(ran.set)
    keeper._write([])
    print(open({path!r}).read(), flush=True)
""")


def test_the_write_and_its_fsyncs_leave_the_event_loop_free(tmp_path):
    """The fsync waits (in the test) until another green thread has run: through ``blocking`` (eventlet's OS
    threads) it does at once; run on the event loop, it would wait for ever (bounded by the test: then it says so)."""
    code = GREEN_WRITE.format(root=os.getcwd(), path=str(tmp_path / FILE_NAME), offload="blocking", bound=60)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == '{"flags":[]}\n'
