"""The duplicate MAC flags' file (bgp/dupkeep.py, controller/writebehind.py ``write_file``): whatever is put at the
``.part`` path (a FIFO, a symbolic link) neither blocks the write nor redirects it; the file is fsynced before the
rename and the directory after; and in the app the write, fsyncs included, runs behind the pass and off the event
loop (its ``spawn`` and ``blocking``)."""

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
    keep = dupkeep.DuplicateKeeper(DuplicateMacs, str(tmp_path / FILE_NAME))
    keep.file.later = lambda delay, function: None  # a failed write's retry: not started here
    return keep


def written(tmp_path):
    path = tmp_path / FILE_NAME
    assert stat.S_ISREG(os.lstat(path).st_mode)  # a regular file, not a link or a FIFO renamed over it
    return json.loads(path.read_text())["flags"]


def test_a_fifo_at_the_part_path_neither_blocks_the_write_nor_takes_it(tmp_path):
    """A FIFO put at ``.part`` held the pass (and the event loop) in open() until a reader came: removed, never
    opened. A blocked open is released by the test (tests/unit/fifo.py) and the test fails."""
    keep = keeper(tmp_path)
    with fifo_without_reader(tmp_path / (FILE_NAME + ".part")):
        keep._write(1, ROWS)
    assert written(tmp_path) == ROWS
    assert sorted(os.listdir(tmp_path)) == [FILE_NAME]


def test_a_symlink_at_the_part_path_does_not_redirect_the_write(tmp_path):
    """A link put at ``.part`` made the write land in the file it names, and the rename then left the flags' path a
    link to it: the link is removed, the file written where it belongs, the other file untouched."""
    victim = tmp_path / "elsewhere"
    victim.write_text("not yours\n")
    (tmp_path / (FILE_NAME + ".part")).symlink_to(victim)
    keeper(tmp_path)._write(1, ROWS)
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
    keeper(tmp_path)._write(1, ROWS)
    assert events == ["part fsynced, whole", "renamed", "directory fsynced"]
    assert written(tmp_path) == ROWS


def test_a_failed_write_leaves_the_old_file_and_no_part(tmp_path, monkeypatch, caplog):
    keep = keeper(tmp_path)
    keep._write(1, ROWS)

    def full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    keep._write(2, ROWS + [dict(ROWS[0], mac="02:00:00:00:00:02")])
    assert written(tmp_path) == ROWS and sorted(os.listdir(tmp_path)) == [FILE_NAME]
    assert "No space left on device" in caplog.text


APP_WRITE = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {root!r})
    from controller.ryu_compat import hub
    from ryu.cmd import manager               # as run_manager does before the apps exist: its import patches
    hub.patch(thread=True)                    # all but threads (time.sleep green), then threads
    from eventlet import patcher
    from controller import runtime, settings
    from controller.yamldoc import Doc

    runtime.SETTINGS = settings.from_doc(Doc("<t>", {{"data_dir": {data!r}, "bgp": {{
        "router_id": "10.250.0.1", "neighbors": [{{"address": "10.250.0.2", "asn": 65002}}]}}}}))
    from controller.app import CanopyApp
    fed = CanopyApp().federation              # wired as ryu-manager builds the app
    os_threading = patcher.original("threading")
    loop, released, real_fsync = os_threading.get_ident(), os_threading.Event(), os.fsync

    def fsync(fd):                            # a slow disk: done once the test has seen the pass end
        if os_threading.get_ident() == loop:
            print("the write ran on the event loop", flush=True)
        elif not released.wait({bound}):
            print("the pass waited for the write", flush=True)
        real_fsync(fd)

    os.fsync = fsync
    fed.mobility.duplicates.replace({rows!r})
    fed.tend_flags()                          # a pass's first step: the flags changed
    print("pass done, file written:", os.path.exists({path!r}), flush=True)
    hub.spawn(released.set)                   # the disk is released only on an event loop's turn:
    print("stopped, written:", fed.keeper.file.close(), flush=True)  # the stop's wait gives the loop turns
    print(open({path!r}).read(), flush=True)
""")


def test_the_app_writes_the_flags_behind_the_pass_and_off_the_event_loop(tmp_path):
    """The app as ryu-manager builds it (controller/app.py wires the flags' file): a pass that changed the flags
    hands them over and goes on, its flows and routes not waiting for a disk (was: the pass waited for both
    fsyncs), and the write, fsyncs included, runs in an OS thread, never on the event loop; the stop waits for it
    without holding the event loop. The fsync waits (in the test) until the pass has returned, then until a green
    thread has run: a pass that waited for it, a write on the event loop, or a stop whose wait holds the event loop
    (the green thread never runs: the write not done when ``close`` gives up), is reported (bounded), and the test
    fails."""
    data = tmp_path / "data"
    data.mkdir()
    path = data / FILE_NAME
    code = APP_WRITE.format(root=os.getcwd(), data=str(data), path=str(path), rows=ROWS, bound=10)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["pass done, file written: False", "stopped, written: True",
                                        json.dumps({"flags": ROWS}, separators=(",", ":"))]
