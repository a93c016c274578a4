"""tests.harness.runrecord.sweep_stale: a lab opening sweeps what dead runs left, and only that. Two labs opening
at once (CI's two xdist workers) must not sweep each other's namespaces: a run claiming its id while another sweeps
lost its fabric namespace ("setting the network namespace ... failed: Invalid argument", CI of f1f7d915)."""

import json
import os

from tests.harness import netns, runrecord
from tests.harness.process import start_time


def _record(directory, run_id: str, pid: int, started: int) -> None:
    (directory / f"{run_id}.json").write_text(json.dumps(
        {"owner": [pid, started], "workdir": None, "namespaces": [], "processes": []}))


def _sweep(monkeypatch, tmp_path, listed, on_listing=lambda: None):
    """sweep_stale over records in tmp_path and the namespaces ``listed``; returns the namespaces it deleted."""
    deleted = []

    def list_namespaces():
        on_listing()
        return list(listed)

    monkeypatch.setattr(runrecord, "RECORD_DIR", tmp_path)
    monkeypatch.setattr(netns, "list_namespaces", list_namespaces)
    monkeypatch.setattr(netns, "exists", lambda name: True)
    monkeypatch.setattr(netns, "delete", deleted.append)
    runrecord.sweep_stale()
    return deleted


def test_a_run_claiming_its_id_during_the_sweep_keeps_its_namespaces(monkeypatch, tmp_path):
    """Its record is made before its namespaces: by the time the sweep lists the namespace, the record is there."""
    def another_lab_opens():
        _record(tmp_path, "beef", os.getpid(), start_time(os.getpid()))

    assert _sweep(monkeypatch, tmp_path, ["cnpbeef-fabric"], another_lab_opens) == []


def test_the_namespaces_of_a_dead_run_and_of_no_run_are_swept(monkeypatch, tmp_path):
    _record(tmp_path, "dead", 2 ** 22 + 1, 1)  # above pid_max's default: no such process
    _record(tmp_path, "a11e", os.getpid(), start_time(os.getpid()))
    listed = ["cnpdead-fabric", "cnp0000-kvm1", "cnpa11e-fabric", "other-ns"]
    assert sorted(_sweep(monkeypatch, tmp_path, listed)) == ["cnp0000-kvm1", "cnpdead-fabric"]
    assert not (tmp_path / "dead.json").exists() and (tmp_path / "a11e.json").exists()
