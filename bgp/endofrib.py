"""When Canopy sends End-of-RIB to each peer: graceful restart (RFC 4724), the restarting side.

A peer that does graceful restart keeps the routes of a speaker whose session went down, marked stale, and when the
speaker is back it keeps them until the speaker's End-of-RIB, then drops those not announced again. ExaBGP sends
End-of-RIB by itself right after a session comes up, when it holds nothing yet after a restart of Canopy (Canopy
injects its routes only after its start-up hold): the peers then dropped every route of Canopy's for that while.
So ExaBGP runs with ``manual-eor`` (``bgp.speakerconf``) and Canopy sends End-of-RIB itself, per peer and session,
once every route it announces after this start is in ExaBGP:

- the first complete set of routes after the start is handed over (``handed``: the first publish after the start-up
  hold, with the HA role decided), and ExaBGP acknowledged every command line sent up to then (``ready_at``, an
  acknowledgement count; re-counted when a new ExaBGP is attached, which is sent every route again);
- a session that comes up later gets it at once (ExaBGP sends a new session what it holds before a later End-of-RIB);
- at the latest ``bound`` seconds (the advertised Restart Time) after the session came up, ready or not: the peer
  then drops the routes it kept that Canopy has not announced again yet (logged), and takes them as they come.

Pure bookkeeping for ``bgp.routebook.RouteBook`` (no I/O, not thread-safe; the clock is injectable).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

EOR_ACTION = "eor"  # the action of a pending End-of-RIB command line (RouteBook.pending)
FAMILY = "l2vpn evpn"  # ExaBGP's API names the address family so


def command(peer: str) -> str:
    """ExaBGP 5.0.15's API command that sends End-of-RIB for l2vpn evpn to the peer at ``peer`` only."""
    return f"neighbor {peer} announce eor {FAMILY}"


@dataclass
class EndOfRib:
    """Which peers are owed End-of-RIB on their current session, and when it is due."""

    bound: float = 120.0  # seconds after a session came up by which End-of-RIB goes, ready or not
    clock: Callable[[], float] = time.monotonic
    log: logging.Logger = logging.getLogger("canopy.bgp.speaker")
    handed: bool = False  # the first complete set of routes after the start was handed over
    ready_at: int | None = None  # acknowledgements after which ExaBGP holds that set (None: not known yet)
    owed: dict = field(default_factory=dict)  # peer address -> monotonic deadline
    sent: set = field(default_factory=set)  # peers whose current session had End-of-RIB (acknowledged)

    def complete(self, mark: int | None) -> None:
        """Every route announced after the start is handed over: ExaBGP holds them once ``mark`` lines are
        acknowledged (None: no ExaBGP connected; ``attached`` counts then). Only the first call counts."""
        if not self.handed:
            self.handed, self.ready_at = True, mark

    def attached(self, mark: int) -> None:
        """A new ExaBGP was sent every desired route: it holds them once ``mark`` lines are acknowledged."""
        self.reset()
        self.ready_at = mark if self.handed else None

    def reset(self) -> None:
        """No ExaBGP (or a new one): no session is owed anything, none had End-of-RIB."""
        self.owed.clear()
        self.sent.clear()

    def extend(self, acks: int, mark: int) -> None:
        """More lines carry routes of the set (a refused line re-sent one route per line): wait for them too.
        ``acks`` counts the refused line: it belongs to the set when it is not past ``ready_at`` (its last line
        included)."""
        if self.ready_at is not None and acks <= self.ready_at:
            self.ready_at = max(self.ready_at, mark)

    def up(self, peer: str) -> None:
        self.owed[peer] = self.clock() + self.bound
        self.sent.discard(peer)

    def down(self, peer: str) -> None:
        self.owed.pop(peer, None)
        self.sent.discard(peer)

    def ready(self, acks: int) -> bool:
        return self.ready_at is not None and acks >= self.ready_at

    def due(self, acks: int) -> list[str]:
        """The peers to send End-of-RIB now (no longer owed afterwards)."""
        if not self.owed:
            return []
        ready, now = self.ready(acks), self.clock()
        peers = [peer for peer, deadline in self.owed.items() if ready or now >= deadline]
        for peer in peers:
            del self.owed[peer]
            if not ready:
                self.log.warning("BGP peer %s: End-of-RIB sent %.0fs after the session came up although not every "
                                 "route is announced again yet: the peer drops the routes it kept that are not",
                                 peer, self.bound)
        return peers

    def acknowledged(self, peer: str, done: bool) -> None:
        if done:
            self.sent.add(peer)
            self.log.info("BGP peer %s: End-of-RIB sent", peer)
        else:  # ExaBGP had no session with it any more: the next session is owed one
            self.log.info("BGP peer %s: End-of-RIB not sent (its session went down meanwhile)", peer)
