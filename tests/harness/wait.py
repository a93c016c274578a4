"""Bounded polling: every wait in the harness goes through ``wait_until``."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float = 10, interval: float = 0.1,
               what: str = "condition") -> T:
    """Poll ``predicate`` until it returns something truthy, which is returned.

    Raises AssertionError naming ``what`` after ``timeout`` seconds; exceptions from
    ``predicate`` propagate at once.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
