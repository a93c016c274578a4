"""Session-wide rules for the whole test run.

Where CI runs (``CI=true``) a skipped test proves nothing and hides a missing package or privilege:
every skip is turned into a failure of the run, listed with its reason.
"""

from __future__ import annotations

import os

import pytest

_IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if _IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped where CI=true (a skip must not hide a missing part): {reason}"
    return report
