"""Logs of a test's processes that live outside a ``Lab`` (test_ovsdb_manager's manager child and ovsdb-servers, each
in a temp dir its fixture removes): when the test failed, their tails are printed (pytest shows them under "Captured
stdout teardown"), and with ``CANOPY_KEEP_LOGS=DIR`` in the environment (as for a Lab: tests/harness/lab.py) the files
are copied to ``DIR/<label>-<time>/`` first, passed or failed."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from tests.harness.lab import KEEP_LOGS
from tests.harness.process import log_tail

TAIL_LINES = 60


def report(label: str, paths, failed: bool, extra: str = "") -> None:
    """Keep (``CANOPY_KEEP_LOGS``) and, if ``failed``, print the tails of ``paths``, then ``extra`` (say, what a
    driver recorded). Call it before the files' directory is removed."""
    paths = [Path(p) for p in paths]
    target = os.environ.get(KEEP_LOGS)
    if target:
        into = Path(target) / f"{label}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
        into.mkdir(parents=True, exist_ok=True)
        for n, path in enumerate(paths):
            if path.is_file():
                shutil.copy2(path, into / f"{n}-{path.parent.name}-{path.name}")
        print(f"--- logs of {label} kept in {into} ---")
    if failed:
        tails = "\n".join(f"==> {path} <==\n{log_tail(path, TAIL_LINES)}" for path in paths)
        print(f"--- process logs of {label} ---\n{tails}\n{extra}")
