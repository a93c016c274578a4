"""A lab case run while traffic and a switch's flows are watched, its failure said with what they saw meanwhile.

``with Watched(pinger, flows, "hva") as watched:`` runs the case's steps while ``pinger`` (a ``Pinger`` of
tests/integration/test_evpn_frr.py) pings; a route watcher started inside (anything with ``stop()``) is handed over as
``watched.routes``. On leaving, however the case ended, the route watcher and then the pinger are stopped
(``watched.sent``, ``watched.got``: what the pinger's ``stop()`` returned). An ``AssertionError`` raised inside is
raised again with the pings lost, the requests that reached the responder and the first flow changes ``flows()``
returns (the switch's, named by ``where``); anything else is raised as it is.
"""

from __future__ import annotations

from collections.abc import Callable

SHOWN = 5  # flow changes quoted in a failure


class Watched:
    def __init__(self, pinger, flows: Callable[[], list], where: str):
        self.pinger, self.flows, self.where = pinger, flows, where
        self.routes = None
        self.sent = self.got = None

    def __enter__(self) -> "Watched":
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        try:
            if self.routes is not None:
                self.routes.stop()
        finally:
            self.sent, self.got = self.pinger.stop()
        if isinstance(exc, AssertionError):
            raise AssertionError(
                f"{exc}; meanwhile {self.sent - self.got} of {self.sent} pings lost, "
                f"{self.pinger.counters.get('InEchos')} requests reached the responder; flow changes on {self.where}: "
                f"{self.flows()[:SHOWN]}") from None
        return False
