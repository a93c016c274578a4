"""Duplicate MAC detection (RFC 7432 section 15.1): a MAC that moves ``max_moves`` times within ``window`` seconds is
flagged a duplicate (two hosts using one MAC, or a loop): Canopy stops announcing it and keeps its sequence number
where it was (no further moves counted), logs one warning, and counts it (GET /v1/bgp/peers ``mobility``, /metrics),
until the operator clears it (DELETE /v1/bgp/duplicate-macs) or, with ``recovery`` set (bgp.duplicate_mac.recovery),
until the flag is that many seconds old: then it is cleared, logged, and the MAC's moves are counted anew (FRR's
``dup-addr-detection freeze <secs>``, Junos's ``auto-recovery-time``; without it the flag is permanent, FRR's
``freeze permanent``). ``bgp.evpn.Mobility`` reports the moves it sees of local MACs: into Canopy (a MAC a peer
announced appearing on a local port), between two of its VRS, and away (a peer's higher sequence number winning a
local MAC). A VM live migration is one move.

The flags outlive a restart and reach the HA standby (``bgp.dupkeep``); the moves being counted do not. ``since``
is wall-clock time (epoch seconds) for that reason: a flag's age goes on across a restart and a takeover.
"""

from __future__ import annotations

import logging
import time
from collections import deque

from controller.loglimit import log_limited, warn_limited

log = logging.getLogger("canopy.bgp")
LISTED = 100  # flagged MACs listed in GET /v1/bgp/peers (all are counted)


class DuplicateMacs:
    def __init__(self, max_moves: int = 5, window: float = 180.0, enabled: bool = True, clock=time.monotonic,
                 recovery: float | None = None, wall=time.time):
        self.max_moves, self.window, self.enabled, self.clock = max_moves, window, enabled, clock
        self.recovery, self.wall = recovery, wall  # recovery: seconds a flag lasts (None: until cleared)
        self.moves: dict[tuple[str, str], deque] = {}  # (subnet, MAC) -> when it moved, within the window
        self.flagged: dict[tuple[str, str], dict] = {}  # (subnet, MAC) -> {"took", "last_move", "window", "since"}
        self.version = 0  # raised by every change of ``flagged`` (bgp.dupkeep writes and sends the flags then)

    def __contains__(self, key) -> bool:
        return key in self.flagged

    def configure(self, settings) -> None:
        """Take a DuplicateMacSettings (at start and SIGHUP): flags kept, the moves from now on counted with these,
        a flag older than a new ``recovery`` cleared at the next pass."""
        self.max_moves, self.window, self.enabled = settings.max_moves, float(settings.window), settings.enabled
        self.recovery = None if settings.recovery == "permanent" else float(settings.recovery)

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
                             "window": self.window, "since": round(self.wall(), 3)}
        self.version += 1
        # a loop can make every local MAC a duplicate at once: one line per LOG_EVERY, counting those left out (GET
        # /v1/bgp/peers lists them)
        warn_limited(log, ("duplicate MAC",), "duplicate MAC %s in subnet %s: %d moves within %ss (the last %s): no "
                     "longer announced, its sequence number frozen, until %s", key[1], key[0], self.max_moves,
                     self.window, how, self._until())
        return True

    def _until(self) -> str:
        cleared = "cleared (DELETE /v1/bgp/duplicate-macs)"
        return cleared if self.recovery is None else f"{cleared} or {self.recovery:g}s old (bgp.duplicate_mac.recovery)"

    def prune(self) -> None:
        """Forget the moves older than the window (what is kept grows with the MACs moving, not all that ever moved),
        and the flags older than ``recovery``."""
        now = self.clock()
        for key in [k for k, times in self.moves.items() if now - times[-1] > self.window]:
            del self.moves[key]
        if self.recovery is not None and self.flagged:
            wall = self.wall()
            self._restamp(wall)
            self._recover(wall - self.recovery)

    def _restamp(self, wall: float) -> None:
        """A flag set later than ``wall`` (this host's clock set back since, or the HA active's clock ahead of ours)
        counts its age from now: it clears ``recovery`` seconds later at the latest, not as much later as the clock
        went back (a clock corrected by years would make every flag permanent)."""
        ahead = [row for row in self.flagged.values() if row["since"] > wall]
        for row in ahead:
            row["since"] = round(wall, 3)
        if ahead:
            self.version += 1
            warn_limited(log, ("duplicate MAC clock",), "%d duplicate MAC flag(s) set later than this host's clock "
                         "(set back since?): their age counted from now", len(ahead))

    def _recover(self, before: float) -> None:
        """Clear the flags set before ``before`` (epoch seconds): their MACs are announced and counted anew."""
        for key in [k for k, row in self.flagged.items() if row["since"] <= before]:
            del self.flagged[key]
            self.version += 1
            log_limited(log, logging.INFO, ("duplicate MAC recovered",), "duplicate MAC %s in subnet %s: flag cleared "
                        "after %gs (bgp.duplicate_mac.recovery): announced again, its moves counted anew", key[1],
                        key[0], self.recovery)

    def next_recovery(self) -> float | None:
        """Seconds until the oldest flag is to be cleared by ``recovery`` (None: no flag, or no recovery)."""
        if self.recovery is None or not self.flagged:
            return None
        oldest = min(row["since"] for row in self.flagged.values())
        return max(0.0, oldest + self.recovery - self.wall())

    def clear(self, subnet_id: str | None = None, mac: str | None = None) -> list[dict]:
        """Unflag the duplicates of ``subnet_id`` and ``mac`` (None: any); the rows cleared."""
        keys = [k for k in self.flagged if subnet_id in (None, k[0]) and mac in (None, k[1])]
        if keys:
            self.version += 1
        return [self.flagged.pop(key) for key in sorted(keys)]

    def replace(self, rows: list[dict]) -> None:
        """Hold exactly these flags (rows as ``rows()`` gives them: the HA active's, or those kept on disk); the same
        flags again (the active's sent anew on each connection of the HA link) are no change."""
        flagged = {(row["subnet_id"], row["mac"]): dict(row) for row in rows}
        if flagged == self.flagged:
            return
        self.flagged = flagged
        for key in self.flagged:
            self.moves.pop(key, None)
        self.version += 1

    def rows(self, limit: int | None = LISTED) -> list[dict]:
        """The flagged MACs (at most ``limit``), in subnet and MAC order."""
        return [dict(self.flagged[key]) for key in sorted(self.flagged)[:limit]]

    def oldest(self, limit: int) -> list[dict]:
        """At most ``limit`` flags, the oldest first (what is kept across a restart and sent to the standby: a flood
        of new flags never pushes out those set before it)."""
        keys = sorted(self.flagged, key=lambda k: (self.flagged[k]["since"], k))[:limit]
        return [dict(self.flagged[key]) for key in keys]
