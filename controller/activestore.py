"""The active port of each vport shown on two ports (controller/state_activation.py), kept in the store's meta so that
a restart in the middle of a live migration keeps it: written behind State's back, off the event loop.

``MetaBehind.put(value)`` returns at once; one green thread (``spawn``) writes the newest value put through
``Store.set_meta`` (whose fsync runs through the store's ``offload``: the app's OS threads), then again if a newer one
came meanwhile: at most one write in flight, the newest written last. A failed write is logged; the next change
writes the whole value again. ``spawn`` defaults to calling at once (tests).
"""

from __future__ import annotations

import logging

log = logging.getLogger("canopy.state")


class MetaBehind:
    def __init__(self, store, key: str, spawn=lambda fn: fn()):
        self.store, self.key, self.spawn = store, key, spawn
        self.writes = 0
        self._pending = None
        self._busy = False

    def put(self, value) -> None:
        self._pending = value
        if not self._busy:
            self._busy = True
            self.spawn(self._write)

    def _write(self) -> None:
        try:
            while self._pending is not None:
                value, self._pending = self._pending, None
                try:
                    self.store.set_meta(self.key, value)
                    self.writes += 1
                except Exception:  # a store refusing (full disk): logged, the next change writes it whole again
                    log.exception("the active ports of live migrations could not be stored")
        finally:
            self._busy = False
