"""Duplicate MAC detection (RFC 7432 section 15.1): a MAC that moves ``max_moves`` times within ``window`` seconds is
flagged a duplicate (two hosts using one MAC, or a loop): Canopy stops announcing it and keeps its sequence number
where it was (no further moves counted), logs one warning, and counts it (GET /v1/bgp/peers ``mobility``, /metrics),
until the operator clears it (DELETE /v1/bgp/duplicate-macs) or, with ``recovery`` set (bgp.duplicate_mac.recovery),
until the flag is that many seconds old: then it is cleared, logged, and the MAC's moves are counted anew (FRR's
``dup-addr-detection freeze <secs>``, Junos's ``auto-recovery-time``; without it the flag is permanent, FRR's
``freeze permanent``). ``bgp.mobility.Mobility`` reports the moves it sees of local MACs: into Canopy (a MAC a peer
announced appearing on a local port), between two of its VRS, and away (a peer's higher sequence number winning a
local MAC). A VM live migration is one move.

The flags outlive a restart and reach the HA standby (``bgp.dupkeep``); the moves being counted do not. ``since``
is wall-clock time (epoch seconds) for that reason: a flag's age goes on across a restart and a takeover.

Work per programming pass: what changed and what is due, not what is held. The flags are also kept in ``since``
order (``_order``: the next to recover is the first, a flag set in the future is among the last, and ``oldest`` is
a slice), and the MACs being counted in the order of their last move (the first are the first to expire), so
``prune`` and ``next_recovery`` look only at the flags and moves they clear, and at one more. Many flags leaving
that order at once (thousands due together after a loop flagged every local MAC, a DELETE of them all) leave it in
one rebuild from the rest, not one removal each (``_cut``, ``_many``).
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import OrderedDict, deque
from itertools import islice, takewhile

from sortedcontainers import SortedList

from controller.feed import Feeds
from controller.loglimit import log_limited, warn_limited

log = logging.getLogger("canopy.bgp")
LISTED = 100  # flagged MACs listed in GET /v1/bgp/peers (all are counted)
MANY = 64  # flags taken out of the order at once from which a rebuild of the order is tried (``_many``)


class DuplicateMacs:
    def __init__(self, max_moves: int = 5, window: float = 180.0, enabled: bool = True, clock=time.monotonic,
                 recovery: float | None = None, wall=time.time):
        self.max_moves, self.window, self.enabled, self.clock = max_moves, window, enabled, clock
        self.recovery, self.wall = recovery, wall  # recovery: seconds a flag lasts (None: until cleared)
        # (subnet, MAC) -> when it moved, within the window; the MAC moved last is the last (``clock`` is monotonic)
        self.moves: OrderedDict[tuple[str, str], deque] = OrderedDict()
        self.flagged: dict[tuple[str, str], dict] = {}  # (subnet, MAC) -> {"took", "last_move", "window", "since"}
        self._order = SortedList()  # (since, (subnet, MAC)) of every flag, the oldest first
        self.version = 0  # raised by every change of ``flagged`` (bgp.dupkeep writes and sends the flags then)
        self.feeds = Feeds()  # the keys flagged or unflagged (MAC mobility takes them again: bgp/mobility.py)

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
        times = self.moves.get(key)
        if times is None:
            times = self.moves[key] = deque()
        else:
            self.moves.move_to_end(key)
        times.append(now)
        while now - times[0] > self.window:
            times.popleft()
        if len(times) < self.max_moves:
            return False
        del self.moves[key]
        # took: seconds from the first of the max_moves moves to this one (how fast it moves); since: epoch seconds
        self._flag(key, {"subnet_id": key[0], "mac": key[1], "took": round(now - times[0], 3), "last_move": how,
                         "window": self.window, "since": round(self.wall(), 3)})
        self.version += 1
        self.feeds.record((key,))
        # a loop can make every local MAC a duplicate at once: one line per LOG_EVERY, counting those left out (GET
        # /v1/bgp/peers lists them)
        warn_limited(log, ("duplicate MAC",), "duplicate MAC %s in subnet %s: %d moves within %ss (the last %s): no "
                     "longer announced, its sequence number frozen, until %s", key[1], key[0], self.max_moves,
                     self.window, how, self._until())
        return True

    def _until(self) -> str:
        cleared = "cleared (DELETE /v1/bgp/duplicate-macs)"
        return cleared if self.recovery is None else f"{cleared} or {self.recovery:g}s old (bgp.duplicate_mac.recovery)"

    def _flag(self, key, row: dict) -> None:
        self.flagged[key] = row
        self._order.add((row["since"], key))

    def prune(self) -> None:
        """Forget the moves older than the window (what is kept grows with the MACs moving, not all that ever moved),
        and the flags older than ``recovery``: each looked at only if it goes, and one more of each."""
        now, moves = self.clock(), self.moves
        while moves and now - moves[next(iter(moves))][-1] > self.window:
            moves.popitem(last=False)
        if self.recovery is not None and self.flagged:
            wall = self.wall()
            self._restamp(wall)
            self._recover(wall - self.recovery)

    def _restamp(self, wall: float) -> None:
        """A flag set later than ``wall`` (this host's clock set back since, or the HA active's clock ahead of ours)
        counts its age from now: it clears ``recovery`` seconds later at the latest, not as much later as the clock
        went back (a clock corrected by years would make every flag permanent). They are the last of the order: cut
        off and put back at ``wall`` (``_cut``)."""
        ahead = list(takewhile(lambda item: item[0] > wall, reversed(self._order)))
        if not ahead:
            return
        self._cut(ahead, len(self._order) - len(ahead))
        since = round(wall, 3)
        for _since, key in ahead:
            self.flagged[key]["since"] = since
        if self._many(len(ahead)):
            self._order.update((since, key) for _since, key in ahead)  # sortedcontainers: many, one rebuild
        else:
            for _since, key in ahead:
                self._order.add((since, key))
        self.version += 1
        warn_limited(log, ("duplicate MAC clock",), "%d duplicate MAC flag(s) set later than this host's clock "
                     "(set back since?): their age counted from now", len(ahead))

    def _recover(self, before: float) -> None:
        """Clear the flags set before ``before`` (epoch seconds): their MACs are announced and counted anew. They are
        the first of the order (``_cut``)."""
        due = list(takewhile(lambda item: item[0] <= before, self._order))
        if not due:
            return
        self._cut(due, 0)
        self.feeds.record([key for _since, key in due])
        for _since, key in due:
            del self.flagged[key]
            log_limited(log, logging.INFO, ("duplicate MAC recovered",), "duplicate MAC %s in subnet %s: flag cleared "
                        "after %gs (bgp.duplicate_mac.recovery): announced again, its moves counted anew", key[1],
                        key[0], self.recovery)
        self.version += 1

    def _cut(self, items: list, start: int) -> None:
        """Take ``items``, the order's from ``start`` on, out of the order (not out of ``flagged``). Many (``_many``):
        one slice deleted, which SortedList rebuilds from the rest, not one ``remove`` each (a bisect and a
        rebalance: ~190 bytecodes a flag; 10,000 flags due at once held the event loop 50-100 ms); a few: removed one
        by one, so that their cost does not grow with the flags held."""
        if self._many(len(items)):
            del self._order[start:start + len(items)]  # sortedcontainers: an eighth or more, a rebuild from the rest
        else:
            for item in items:
                self._order.remove(item)

    def _many(self, count: int) -> bool:
        """Whether taking ``count`` flags out of the order is cheaper as a rebuild from the rest (one sorted pass, in
        C) than as ``count`` removals."""
        return count >= MANY and 8 * count >= len(self._order)

    def next_recovery(self) -> float | None:
        """Seconds until the oldest flag is to be cleared by ``recovery`` (None: no flag, or no recovery)."""
        if self.recovery is None or not self.flagged:
            return None
        return max(0.0, self._order[0][0] + self.recovery - self.wall())

    def clear(self, subnet_id: str | None = None, mac: str | None = None) -> list[dict]:
        """Unflag the duplicates of ``subnet_id`` and ``mac`` (None: any); the rows cleared. Many at once (a DELETE of
        every flag, of a subnet's): the order rebuilt from the flags left, in one sorted pass, not one ``remove``
        each (``_cut``)."""
        if subnet_id is not None and mac is not None:  # one flag: looked up, not searched
            keys = [(subnet_id, mac)] if (subnet_id, mac) in self.flagged else []
        else:
            keys = sorted(k for k in self.flagged if subnet_id in (None, k[0]) and mac in (None, k[1]))
        if not keys:
            return []
        self.version += 1
        self.feeds.record(keys)
        rows = [self.flagged.pop(key) for key in keys]
        if self._many(len(rows)):
            flagged = self.flagged
            self._order = SortedList(item for item in self._order if item[1] in flagged)
        else:
            for row, key in zip(rows, keys):
                self._order.remove((row["since"], key))
        return rows

    def replace(self, rows: list[dict]) -> None:
        """Hold exactly these flags (rows as ``rows()`` gives them: the HA active's, or those kept on disk); the same
        flags again (the active's sent anew on each connection of the HA link) are no change."""
        flagged = {(row["subnet_id"], row["mac"]): dict(row) for row in rows}
        if flagged == self.flagged:
            return
        self.feeds.record(flagged.keys() ^ self.flagged.keys())
        self.flagged = flagged
        self._order = SortedList((row["since"], key) for key, row in flagged.items())
        for key in self.flagged:
            self.moves.pop(key, None)
        self.version += 1

    def rows(self, limit: int | None = LISTED) -> list[dict]:
        """The flagged MACs (at most ``limit``), in subnet and MAC order."""
        keys = sorted(self.flagged) if limit is None else heapq.nsmallest(limit, self.flagged)
        return [dict(self.flagged[key]) for key in keys]

    def oldest(self, limit: int) -> list[dict]:
        """At most ``limit`` flags, the oldest first (what is kept across a restart and sent to the standby: a flood
        of new flags never pushes out those set before it)."""
        return [dict(self.flagged[key]) for _since, key in islice(self._order, limit)]
