"""The lab's teardown keeps its logs when asked (``CANOPY_KEEP_LOGS=DIR``, tests/harness/lab.py): a rare failure of
an integration test run many times can be read afterwards, its workdir being removed at teardown."""

import os
import sys
from pathlib import Path

from tests.harness import lab as lab_module
from tests.harness.lab import KEEP_LOGS, Lab

_WRITES: list | None = None  # while a list: every place this process writes to (audit events), appended


def _audit(event, args):
    if _WRITES is None:
        return
    if event == "open" and args[0] is not None and not isinstance(args[0], int):
        mode, flags = args[1], args[2]
        writing = any(c in mode for c in "wax+") if isinstance(mode, str) else flags & (
            os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC)
        if writing:
            _WRITES.append(args[0])
    elif event in ("os.mkdir", "os.symlink", "os.link", "os.rename", "shutil.copyfile", "shutil.copytree"):
        _WRITES.append(args[1] if event in ("os.symlink", "os.link", "os.rename", "shutil.copyfile",
                                            "shutil.copytree") else args[0])


_HOOKED: list = []  # the audit hook, once added (it cannot be removed: it records only while _WRITES is a list)


def _written_outside(tmp_path, close) -> list:
    """The places ``close()`` wrote to outside ``tmp_path`` (files opened for writing, directories made, copies)."""
    global _WRITES
    if not _HOOKED:
        sys.addaudithook(_audit)
        _HOOKED.append(_audit)
    _WRITES = []
    try:
        close()
    finally:
        written, _WRITES = _WRITES, None
    inside = Path(tmp_path).resolve()
    return [w for w in written if inside not in Path(os.fsdecode(w)).resolve().parents]


def _closed_lab(tmp_path, monkeypatch, outside: list | None = None):
    """A lab holding only a workdir with a few files, closed; its workdir. ``outside``: given, what the close wrote
    outside ``tmp_path`` is appended to it."""
    monkeypatch.setattr(lab_module.neighbour_table, "give_back", lambda live: None)
    lab = Lab()
    lab.record = type("Record", (), {"prefix": "cnp0abc", "data": {"namespaces": []}, "remove": lambda self: None})()
    lab.workdir = tmp_path / "work"
    (lab.workdir / "hva").mkdir(parents=True)
    (lab.workdir / "canopya.log").write_text("received SIGTERM: stopping\n")
    (lab.workdir / "canopya.yaml").write_text("log_level: info\n")
    (lab.workdir / "hva" / "ovs-vswitchd.log").write_text("connmgr|INFO|67 flow_mods\n")
    (lab.workdir / "hva" / "conf.db").write_text("{}\n")
    if outside is None:
        lab.close()
    else:
        outside.extend(_written_outside(tmp_path, lab.close))
    return lab.workdir


def test_teardown_copies_the_logs_and_configs_where_asked_then_removes_the_workdir(tmp_path, monkeypatch):
    monkeypatch.setenv(KEEP_LOGS, str(tmp_path / "kept"))
    workdir = _closed_lab(tmp_path, monkeypatch)
    assert not workdir.exists()
    [kept] = (tmp_path / "kept").iterdir()
    assert kept.name.startswith("cnp0abc-")
    assert sorted(str(p.relative_to(kept)) for p in kept.rglob("*") if p.is_file()) == [
        "canopya.log", "canopya.yaml", "hva/ovs-vswitchd.log"]  # not the databases
    assert (kept / "hva" / "ovs-vswitchd.log").read_text() == "connmgr|INFO|67 flow_mods\n"


def test_teardown_keeps_nothing_unless_asked(tmp_path, monkeypatch):
    """Nothing is written anywhere by the teardown (a copy to a default place included: every write of the process
    during it is seen), and the workdir is gone."""
    monkeypatch.delenv(KEEP_LOGS, raising=False)
    outside = []
    workdir = _closed_lab(tmp_path, monkeypatch, outside)
    assert not workdir.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    assert outside == []


def test_the_write_watch_sees_a_copy_made_outside_the_tests_directory(tmp_path, monkeypatch):
    """The watch the test above relies on: a copy of the logs to another place (as a default would be) is seen."""
    import shutil
    import tempfile

    elsewhere = Path(tempfile.mkdtemp(prefix="canopy-keeplogs-"))
    monkeypatch.setattr(Lab, "close", lambda lab: shutil.copy2(lab.workdir / "canopya.log", elsewhere / "a.log"))
    try:
        outside = []
        _closed_lab(tmp_path, monkeypatch, outside)
        assert {os.fsdecode(w) for w in outside} == {str(elsewhere / "a.log")}  # (seen as a copy and an open)
    finally:
        shutil.rmtree(elsewhere)
