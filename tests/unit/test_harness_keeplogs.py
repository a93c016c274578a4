"""The lab's teardown keeps its logs when asked (``CANOPY_KEEP_LOGS=DIR``, tests/harness/lab.py): a rare failure of
an integration test run many times can be read afterwards, its workdir being removed at teardown."""

from tests.harness import lab as lab_module
from tests.harness.lab import KEEP_LOGS, Lab


def _closed_lab(tmp_path, monkeypatch):
    """A lab holding only a workdir with a few files, closed; its workdir."""
    monkeypatch.setattr(lab_module.neighbour_table, "give_back", lambda live: None)
    lab = Lab()
    lab.record = type("Record", (), {"prefix": "cnp0abc", "data": {"namespaces": []}, "remove": lambda self: None})()
    lab.workdir = tmp_path / "work"
    (lab.workdir / "hva").mkdir(parents=True)
    (lab.workdir / "canopya.log").write_text("received SIGTERM: stopping\n")
    (lab.workdir / "canopya.yaml").write_text("log_level: info\n")
    (lab.workdir / "hva" / "ovs-vswitchd.log").write_text("connmgr|INFO|67 flow_mods\n")
    (lab.workdir / "hva" / "conf.db").write_text("{}\n")
    lab.close()
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
    monkeypatch.delenv(KEEP_LOGS, raising=False)
    workdir = _closed_lab(tmp_path, monkeypatch)
    assert not workdir.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
