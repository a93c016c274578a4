"""The speaker's bookkeeping: what Canopy wants announced, what was sent to ExaBGP and acknowledged,
what peers sent, and each peer's session state. No I/O (``bgp.speaker`` does that), not thread-safe;
unit tested on its own with real ExaBGP JSON."""

from __future__ import annotations

import collections
import ipaddress
import json
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bgp import routes as bgp_routes

if TYPE_CHECKING:
    from bgp.speaker import Neighbor

LOG = logging.getLogger("canopy.bgp.speaker")
PEER_STATES = ("idle", "connected", "up", "down")


@dataclass
class PeerStatus:
    """Runtime state of one configured neighbor, as ExaBGP last reported it."""

    address: str
    asn: int
    state: str = "idle"
    since: float | None = None  # epoch time of the last state change
    up_since: float | None = None  # monotonic time the session came up
    last_error: str | None = None

    def change(self, state: str, error: str | None = None) -> bool:
        if error:
            self.last_error = error
        if state == self.state:
            return False
        self.state, self.since = state, time.time()
        self.up_since = time.monotonic() if state == "up" else None
        return True


def _ip(text) -> str:
    try:
        return str(ipaddress.ip_address(str(text)))
    except ValueError:
        return str(text)


@dataclass
class RouteBook:
    """What the speaker wants, sent, had acknowledged and received; no I/O, not thread-safe.

    - ``desired``: {key: route} Canopy wants announced;
    - ``expected``: {key: route} ExaBGP will hold once every command sent is acknowledged;
    - ``announced``: {key: route} acknowledged "done";
    - ``failed``: {key: route} whose announce was answered "error" (not re-sent until it changes
      or ExaBGP restarts);
    - ``pending``: (action, route) per command line sent and not yet acknowledged, in order;
    - ``received``: {(peer ip, key): route} from ExaBGP's updates;
    - ``peers``: {peer ip: PeerStatus}.
    Methods that send return the command lines (without newline) for the caller to write.
    """

    neighbors: tuple[Neighbor, ...] = ()
    desired: dict = field(default_factory=dict)
    expected: dict = field(default_factory=dict)
    announced: dict = field(default_factory=dict)
    failed: dict = field(default_factory=dict)
    pending: collections.deque = field(default_factory=collections.deque)
    received: dict = field(default_factory=dict)
    peers: dict = field(default_factory=dict)
    connected: bool = False
    log: logging.Logger = LOG

    def __post_init__(self):
        for neighbor in self.neighbors:
            self.peers[_ip(neighbor.address)] = PeerStatus(_ip(neighbor.address), neighbor.asn)

    # ------------------------------------------------------------------ sending
    def set_desired(self, routes: dict) -> list[str]:
        """Record what Canopy wants; the commands that move ExaBGP there (none while disconnected)."""
        self.desired = dict(routes)
        return self._sync() if self.connected else []

    def attach(self) -> list[str]:
        """A new ExaBGP's API connected: it holds nothing, so every desired route is (re)sent."""
        self.connected = True
        self.expected, self.announced, self.failed = {}, {}, {}
        self.pending.clear()
        return self._sync()

    def _sync(self) -> list[str]:
        commands = []
        for key in [k for k in self.expected if k not in self.desired]:
            commands.append(self._send(bgp_routes.WITHDRAW, self.expected.pop(key)))
        for key, route in self.desired.items():
            if self.expected.get(key) != route and self.failed.get(key) != route:
                self.expected[key] = route
                commands.append(self._send(bgp_routes.ANNOUNCE, route))
        return commands

    def _send(self, action: str, route) -> str:
        self.pending.append((action, route))
        return bgp_routes.to_command(route, action)

    def detach(self) -> bool:
        """ExaBGP is gone: nothing is announced, every peer is down, nothing received. True if changed."""
        self.connected = False
        self.expected, self.announced, self.failed = {}, {}, {}
        self.pending.clear()
        changed = bool(self.received)
        self.received = {}
        for peer in self.peers.values():
            changed |= peer.change("down")
        return changed

    # ------------------------------------------------------------------ receiving
    def handle_line(self, line: str) -> bool:
        """One line from ExaBGP (ack or JSON message); True if received routes or peer states changed.

        Malformed or unexpected lines are logged and dropped; this never raises.
        """
        line = line.strip()
        if line in ("done", "error"):
            self._acknowledge(line)
            return False
        if not line.startswith("{"):
            if line:
                self.log.info("ExaBGP API: ignored line %r", line[:200])
            return False
        try:
            message = json.loads(line)
            kind = message.get("type")
        except (ValueError, AttributeError):
            self.log.warning("ExaBGP API: malformed JSON dropped: %r", line[:200])
            return False
        try:
            if kind == "state":
                return self._state(message["neighbor"])
            if kind == "update":
                return self._update(message)
        except (KeyError, TypeError, AttributeError, ValueError) as error:
            self.log.warning("ExaBGP API: %s message dropped (%r): %r", kind, error, line[:200])
        return False

    def _acknowledge(self, answer: str) -> None:
        if not self.pending:
            self.log.warning("ExaBGP API: %r acknowledges no command", answer)
            return
        action, route = self.pending.popleft()
        key = route.key
        if answer == "done":
            if action == bgp_routes.ANNOUNCE:
                self.announced[key] = route
                self.failed.pop(key, None)
            else:
                self.announced.pop(key, None)
            return
        self.log.error("ExaBGP refused: %s", bgp_routes.to_command(route, action))
        if action == bgp_routes.ANNOUNCE:
            self.failed[key] = route
            if self.expected.get(key) == route:
                del self.expected[key]

    def _state(self, neighbor: dict) -> bool:
        address = _ip(neighbor["address"]["peer"])
        state = neighbor["state"]
        if state not in PEER_STATES:
            self.log.info("ExaBGP API: peer %s in unknown state %r ignored", address, state)
            return False
        peer = self.peers.get(address)
        if peer is None:
            self.log.warning("ExaBGP API: state of unconfigured peer %s ignored", address)
            return False
        reason, before = (neighbor.get("reason") if state == "down" else None), peer.state
        changed = peer.change(state, reason or None)
        level = logging.INFO if changed and "up" in (before, state) else logging.DEBUG  # not every retry
        self.log.log(level, "BGP peer %s is %s%s", address, state, f" ({reason})" if reason else "")
        if state == "down":
            gone = [k for k in self.received if k[0] == address]
            for k in gone:
                del self.received[k]
            changed |= bool(gone)
        return changed

    def _update(self, message: dict) -> bool:
        neighbor = message["neighbor"]
        if neighbor.get("direction", "receive") != "receive":
            return False
        address = _ip(neighbor["address"]["peer"])
        changed = False
        for action, route in bgp_routes.from_exabgp_json(message):
            key = (address, route.key)
            if action == bgp_routes.ANNOUNCE:
                changed |= self.received.get(key) != route
                self.received[key] = route
            else:
                changed |= self.received.pop(key, None) is not None
        return changed

    # ------------------------------------------------------------------ inspection
    def peer_rows(self) -> list[dict]:
        rows, now = [], time.monotonic()
        for peer in self.peers.values():
            up = peer.state == "up"
            rows.append({
                "address": peer.address, "asn": peer.asn, "state": peer.state, "since": peer.since,
                "uptime": now - peer.up_since if up and peer.up_since is not None else None,
                "received": sum(1 for k in self.received if k[0] == peer.address),
                "sent": len(self.announced) if up else 0, "last_error": peer.last_error,
            })
        return rows
