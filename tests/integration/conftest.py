"""Fixtures for integration tests against real Open vSwitch in network namespaces.

- ``lab``: a ``tests.harness.lab.Lab``, always torn down; when the test fails, the tails of every
  process log are printed (pytest shows them under "Captured stdout teardown").
- ``lab_capable``: skips the test unless this machine can run a lab (root, ovs-vswitchd).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.harness.lab import Lab
from tests.harness.ovs import ovs_available

_CALL_FAILED = pytest.StashKey[bool]()

# The controllers a test starts (``canopy run``: the venv's entry point) and their children import the code of this
# checkout, not the one the venv's editable install names (/work/main's, for a test run from another worktree):
# its root goes first on their PYTHONPATH.
_ROOT = str(Path(__file__).resolve().parents[2])
if os.environ.get("PYTHONPATH", "").split(os.pathsep)[0] != _ROOT:
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


@pytest.fixture(scope="session")
def lab_capable() -> None:
    """Skip unless running as root with Open vSwitch installed."""
    if os.geteuid() != 0:
        pytest.skip("integration tests need root (network namespaces, veths, Open vSwitch)")
    if not ovs_available():
        pytest.skip("integration tests need Open vSwitch: ovs-vswitchd not found")


@pytest.fixture
def lab(request, lab_capable):
    """A fresh Lab for one test; torn down whatever the outcome."""
    with Lab() as the_lab:
        yield the_lab
        if request.node.stash.get(_CALL_FAILED, False):
            print(f"--- process logs of lab {the_lab.prefix} ---\n{the_lab.log_tails()}")
