"""Canopy's logging set-up made by a test is put back after it (tests/conftest.py runs every test inside
``logging_put_back``).

A test that runs ``canopy run`` (controller/cli.py) sets Canopy's logging up (controller/logs.py ``setup``): a handler
on the root logger writing to ``sys.stderr`` as it is then (under capsys, a stream closed when the test ends), made
``logging.lastResort`` too, and the root logger's level. Left behind, every later record reaching the root logger
fails to write: pytest hides the "--- Logging error ---" a test's own records print, but one logged between two tests
(by a thread still finishing its work) shows in the run's output."""

from __future__ import annotations

import logging
from contextlib import contextmanager


@contextmanager
def logging_put_back():
    """Around a test: the root logger's handlers made by ``controller.logs.setup`` meanwhile removed, its level,
    ``logging.lastResort``, the "canopy" logger's level and propagation, and whether warnings go to logging
    (``logging.captureWarnings``, which ``setup`` switches on) as they were before."""
    root, canopy = logging.getLogger(), logging.getLogger("canopy")
    before = set(root.handlers)
    level, last_resort, canopy_level, propagate = root.level, logging.lastResort, canopy.level, canopy.propagate
    capturing = _capturing_warnings()
    try:
        yield
    finally:
        if _capturing_warnings() and not capturing:
            logging.captureWarnings(False)
        for handler in [h for h in root.handlers if h not in before and getattr(h, "_canopy", False)]:
            root.removeHandler(handler)
        root.setLevel(level)
        logging.lastResort = last_resort
        canopy.setLevel(canopy_level)
        canopy.propagate = propagate


def _capturing_warnings() -> bool:
    """Whether ``logging.captureWarnings(True)`` is in force (the stdlib keeps the replaced ``warnings.showwarning``
    there until ``captureWarnings(False)`` puts it back; no public way to ask)."""
    return logging._warnings_showwarning is not None
