"""Duplicate MAC detection (RFC 7432 section 15.1): a MAC that moves ``max_moves`` times within ``window`` seconds is
flagged a duplicate (two hosts using one MAC, or a loop): Canopy stops announcing it and keeps its sequence number
where it was (no further moves counted), logs one warning, and counts it (GET /v1/bgp/peers ``mobility``, /metrics),
until the operator clears it (DELETE /v1/bgp/duplicate-macs). ``bgp.evpn.Mobility`` reports the moves it sees of
local MACs: into Canopy (a MAC a peer announced appearing on a local port), between two of its VRS, and away (a
peer's higher sequence number winning a local MAC). A VM live migration is one move.

Runtime state, not policy, each node's own: a restart forgets the flags (the moves start counting again); each node
of an HA pair detects and is cleared on its own (docs/evpn.md).
"""

from __future__ import annotations

import logging
import time
from collections import deque

from controller.loglimit import warn_limited

log = logging.getLogger("canopy.bgp")
LISTED = 100  # flagged MACs listed in GET /v1/bgp/peers (all are counted)


class DuplicateMacs:
    def __init__(self, max_moves: int = 5, window: float = 180.0, enabled: bool = True, clock=time.monotonic):
        self.max_moves, self.window, self.enabled, self.clock = max_moves, window, enabled, clock
        self.moves: dict[tuple[str, str], deque] = {}  # (subnet, MAC) -> when it moved, within the window
        self.flagged: dict[tuple[str, str], dict] = {}  # (subnet, MAC) -> {"took", "last_move", "window", "since"}

    def __contains__(self, key) -> bool:
        return key in self.flagged

    def moved(self, key, how: str) -> bool:
        """Count one move of ``key`` (``how``: into, within or away, for the log); True when it is (now) a duplicate."""
        if key in self.flagged or not self.enabled:
            return key in self.flagged
        now = self.clock()
        times = self.moves.setdefault(key, deque())
        times.append(now)
        while now - times[0] > self.window:
            times.popleft()
        if len(times) < self.max_moves:
            return False
        del self.moves[key]
        # took: seconds from the first of the max_moves moves to this one (how fast it moves); since: epoch seconds
        self.flagged[key] = {"subnet_id": key[0], "mac": key[1], "took": round(now - times[0], 3), "last_move": how,
                             "window": self.window, "since": round(time.time(), 3)}
        # a loop can make every local MAC a duplicate at once: one line per LOG_EVERY, counting those left out (GET
        # /v1/bgp/peers lists them)
        warn_limited(log, ("duplicate MAC",), "duplicate MAC %s in subnet %s: %d moves within %ss (the last %s): no "
                     "longer announced, its sequence number frozen, until cleared (DELETE /v1/bgp/duplicate-macs)",
                     key[1], key[0], self.max_moves, self.window, how)
        return True

    def prune(self) -> None:
        """Forget the moves older than the window (what is kept grows with the MACs moving, not all that ever moved)."""
        now = self.clock()
        for key in [k for k, times in self.moves.items() if now - times[-1] > self.window]:
            del self.moves[key]

    def clear(self, subnet_id: str | None = None, mac: str | None = None) -> list[dict]:
        """Unflag the duplicates of ``subnet_id`` and ``mac`` (None: any); the rows cleared."""
        keys = [k for k in self.flagged if subnet_id in (None, k[0]) and mac in (None, k[1])]
        return [self.flagged.pop(key) for key in sorted(keys)]

    def rows(self) -> list[dict]:
        """The flagged MACs (at most LISTED), in subnet and MAC order."""
        return [dict(self.flagged[key]) for key in sorted(self.flagged)[:LISTED]]
