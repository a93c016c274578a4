"""Checking Canopy's systemd units with ``systemd-analyze verify`` (tests/unit/test_deploy.py, test_metadata_agent.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

INSTALLED_CANOPY = "/opt/canopy/venv/bin/canopy"  # where docs/deploy.md installs the command the units run


def assert_unit_verifies(unit_text: str, name: str, tmp_path: Path) -> None:
    """``systemd-analyze verify`` finds nothing to say about the unit ``name`` (its command pointed at this venv's)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd; .ci/setup installs it)")
    path = tmp_path / name
    path.write_text(unit_text.replace(INSTALLED_CANOPY, str(Path(sys.executable).with_name("canopy"))))
    done = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (done.stdout + done.stderr).splitlines() if name in line]
    assert done.returncode == 0 and not problems, done.stdout + done.stderr
