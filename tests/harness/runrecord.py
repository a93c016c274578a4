"""The on-disk record of one harness run, and the sweep of runs whose owner has died.

Each run claims a random 4-hex-digit id by creating ``/run/canopy-test/<id>.json`` exclusively,
before it creates anything else. The record names its owner (PID and start time), its workdir,
and every namespace and process it creates, so a later run can clean up after a crashed one:
only runs whose owner is gone are touched, and their processes only while (PID, start time)
still match what was recorded.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import threading
from pathlib import Path

from tests.harness import netns
from tests.harness.process import is_running, kill_foreign, start_time

RECORD_DIR = Path("/run/canopy-test")
PREFIX = "cnp"
_RUN_NAMESPACE = re.compile(rf"^{PREFIX}([0-9a-f]{{4}})-")
log = logging.getLogger(__name__)


class RunRecord:
    """The record of the current run; every change is written to disk at once (atomically), also from a
    helper thread of the test (one draft file per process: the lock keeps two threads' saves apart)."""

    def __init__(self, run_id: str, path: Path):
        self.run_id = run_id
        self.path = path
        self._lock = threading.Lock()
        self.data = {"owner": [os.getpid(), start_time(os.getpid())], "workdir": None,
                     "namespaces": [], "processes": []}

    @classmethod
    def claim(cls, attempts: int = 50) -> "RunRecord":
        """Pick an unused run id and create its record file, complete, in one atomic step."""
        RECORD_DIR.mkdir(parents=True, exist_ok=True)
        for _ in range(attempts):
            run_id = secrets.token_hex(2)
            record = cls(run_id, RECORD_DIR / f"{run_id}.json")
            draft = record._write_draft()
            try:
                os.link(draft, record.path)  # fails if the id is taken; never half-written
            except FileExistsError:
                continue
            finally:
                draft.unlink()
            return record
        raise RuntimeError(f"no free run id in {RECORD_DIR} after {attempts} attempts")

    @property
    def prefix(self) -> str:
        """Prefix of every namespace name of this run, e.g. 'cnp1a2b'."""
        return f"{PREFIX}{self.run_id}"

    def set_workdir(self, path: Path) -> None:
        self.data["workdir"] = str(path)
        self._save()

    def add_namespace(self, name: str) -> None:
        with self._lock:
            if name not in self.data["namespaces"]:  # a VM removed and added again reuses its name
                self.data["namespaces"].append(name)
                self._save()

    def add_process(self, pid: int, started: int) -> None:
        with self._lock:
            self.data["processes"].append([pid, started])
            self._save()

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def _save(self) -> None:
        self._write_draft().replace(self.path)

    def _write_draft(self) -> Path:
        draft = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        draft.write_text(json.dumps(self.data))
        return draft


def sweep_stale() -> list[str]:
    """Clean up after dead runs; return a description of each thing removed.

    The namespaces are listed before the records are read: a run makes its record before any namespace, so every
    namespace listed belongs to a record read after it. Read the other way round, a run claiming its id between the
    two reads (another xdist worker's lab opening) lost its fabric namespace to this sweep."""
    removed: list[str] = []
    names = netns.list_namespaces()
    live_ids: set[str] = set()
    for path, data, live in _runs(RECORD_DIR):
        if live:
            live_ids.add(path.stem)
            continue
        removed += _clean_dead_run(path, data)
    for name in names:
        match = _RUN_NAMESPACE.match(name)
        if match and match.group(1) not in live_ids:
            _quietly(netns.delete, name)
            removed.append(f"namespace {name}")
    return removed


def live_run_ids(directory: Path = RECORD_DIR) -> set[str]:
    """The ids of the runs on this machine whose owner is alive (this process's open labs included)."""
    return {path.stem for path, _, live in _runs(directory) if live}


def _runs(directory: Path):
    """(record path, its data or None if unreadable, whether its owner is alive) for every run record."""
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        data = _load(path)
        yield path, data, data is not None and is_running(*data["owner"])


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # unreadable: its namespaces are still swept by name below


def _clean_dead_run(path: Path, data: dict | None) -> list[str]:
    removed: list[str] = []
    if data is not None:
        for pid, started in data["processes"]:
            if kill_foreign(pid, started):
                removed.append(f"process {pid}")
        for name in data["namespaces"]:
            if netns.exists(name):
                _quietly(netns.delete, name)
                removed.append(f"namespace {name}")
        if data["workdir"] and Path(data["workdir"]).exists():
            shutil.rmtree(data["workdir"], ignore_errors=True)
            removed.append(f"workdir {data['workdir']}")
    path.unlink(missing_ok=True)
    return removed


def _quietly(action, *args) -> None:
    try:
        action(*args)
    except Exception:  # a sweep step failing must not stop the run that triggered it
        log.exception("stale clean-up step %s%r failed", action.__name__, args)
