"""The EVPN routes' steps in a programming pass: import what the peers sent (the pass's first step), and publish
what the pass's View originates (``bgp.federation``).

A pass that will hand its result out (not the first, not during the start-up hold) publishes the routes as soon as
its View is up to date and nothing is compiled yet (``view_ready``), so ExaBGP and the peers take them in while the
flows compile (10,000 new vports: a second or more); a pass that did not (``hand_out``) publishes before it hands
the flows out. The app builds one (controller/app.py); ``federation`` is None without BGP.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("canopy.app")


class RoutePass:
    def __init__(self, federation, programmer, hold, started: Callable[[], bool]):
        self.federation, self.programmer, self.hold = federation, programmer, hold
        self.started = started  # the programming loop's first (full, not handed out) pass succeeded
        self.published = False  # this pass has published the EVPN routes already (view_ready)

    def import_remote(self) -> None:
        """A new pass (its first step): import what the peers sent since the last."""
        self.published = False
        if self.federation is not None:
            try:
                self.federation.refresh_import()
            except Exception:  # a bad route or an import bug must not stop programming
                log.exception("importing EVPN routes failed; keeping the previous remote table")

    def view_ready(self) -> None:
        """The pass's View is up to date and nothing is compiled yet: a pass that will hand its result out
        publishes the EVPN routes now. The routes follow the View, as they did when published in ``hand_out``;
        a pass failing in its compile has published them all the same (the next pass, from scratch, publishes
        again)."""
        if self.started() and not self.hold.holding:
            self.publish()
            self.published = True

    def hand_out(self) -> None:
        """The pass hands its result out: the routes go first (ExaBGP works on them while the reconcilers send the
        flows), unless ``view_ready`` published them."""
        if not self.published:
            self.publish()

    def publish(self) -> None:
        if self.federation is not None:
            self.federation.early = True  # passes hand out now: routes may also go as vports are bound
            try:
                self.federation.publish(self.programmer.view)
            except Exception:
                log.exception("computing the EVPN routes to announce failed")
