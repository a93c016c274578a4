"""Fixtures for integration tests against real Open vSwitch in network namespaces.

- ``lab``: a ``tests.harness.lab.Lab``, always torn down; when the test fails, the tails of every
  process log are printed (pytest shows them under "Captured stdout teardown").
- ``lab_capable``: skips the test unless this machine can run a lab (root, ovs-vswitchd).
- ``call_failed``: asked at teardown, whether the test's call failed (a fixture then prints its processes' logs:
  tests/harness/kept_logs.py).
"""

from __future__ import annotations

import os

import pytest

from tests.harness.lab import Lab, this_checkout_first
from tests.harness.ovs import ovs_available

_CALL_FAILED = pytest.StashKey[bool]()

# The controllers a test starts and their children (and any process a test starts itself) import this checkout's
# code: tests.harness.lab.this_checkout_first, at collection.
this_checkout_first()


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
def call_failed(request):
    """A callable: whether this test's call failed (ask it at teardown)."""
    return lambda: request.node.stash.get(_CALL_FAILED, False)


@pytest.fixture
def lab(request, lab_capable):
    """A fresh Lab for one test; torn down whatever the outcome."""
    with Lab() as the_lab:
        yield the_lab
        if request.node.stash.get(_CALL_FAILED, False):
            print(f"--- process logs of lab {the_lab.prefix} ---\n{the_lab.log_tails()}")
