"""Stores a test leaves open are closed as it ends, in the modules that import ``stores_closed`` (an autouse
fixture: ``from .stores import stores_closed  # noqa: F401``).

A store a test does not close keeps its SQLite connections (canopy.db, its -wal and -shm) open until the garbage
collector frees it, at a moment no test chooses: inside a later test, which then sees descriptors freed under it. A
whole unit run left some fifty such stores to the collector (tests/unit/test_store*.py, test_startup_hold.py,
test_restart_routes.py), at descriptors 896-953; test_stream_gate's socket was twice given 943 or 947, freed after
it had filled every descriptor below 1,024."""

from __future__ import annotations

import weakref

import pytest

from controller import store as store_mod

BOUND = 10.0  # seconds to wait for a store's lock held by a thread of the test; past it the store is left open


@pytest.fixture(autouse=True)
def stores_closed():
    opened: weakref.WeakSet = weakref.WeakSet()
    init = store_mod.Store.__init__

    def tracked(self, *args, **kwargs):
        opened.add(self)
        init(self, *args, **kwargs)

    store_mod.Store.__init__ = tracked
    try:
        yield
    finally:
        store_mod.Store.__init__ = init
        for store in list(opened):
            _close(store)


def _close(store) -> None:
    """Close ``store`` (again: closing twice is harmless); one refused (its open failed half-way) stays as it is."""
    lock = getattr(store, "_lock", None)
    if lock is None or not lock.acquire(timeout=BOUND):
        return
    lock.release()
    try:
        store.close()
    except Exception:  # noqa: BLE001 - a store the test broke on purpose (its file deleted, overwritten, closed)
        pass
