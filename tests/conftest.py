"""Session-wide rules for the whole test run.

Where CI runs (``CI=true``) a skipped test proves nothing and hides a missing package or privilege:
every skip is turned into a failure of the run, listed with its reason.

eventlet's WSGI module is imported here, before any test: imported later, from inside a test (the REST server's
module imports it), it leaves the standard library's ``http`` modules it re-imports green for every test after it,
and a later test that serves HTTP from an OS thread (tests/unit/test_operate.py) then waits forever on a hub that
never runs its server.

Logging set up by a test (``canopy run`` does) is put back after it: tests/logsetup.py.
"""

from __future__ import annotations

import os

import eventlet.wsgi  # noqa: F401  (the docstring: imported first, once)
import pytest

from tests.logsetup import logging_put_back

_IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if _IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped where CI=true (a skip must not hide a missing part): {reason}"
    return report


@pytest.fixture(autouse=True)
def _logging_put_back():
    """tests/logsetup.py: no test leaves Canopy's logging set-up (a handler on a closed stream) to the tests after it."""
    with logging_put_back():
        yield
