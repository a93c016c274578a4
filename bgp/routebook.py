"""The speaker's bookkeeping: what Canopy wants announced, what was sent to ExaBGP and acknowledged,
what peers sent, and each peer's session state. No I/O (``bgp.speaker`` does that), not thread-safe;
unit tested on its own with real ExaBGP JSON."""

from __future__ import annotations

import collections
import json
import logging
import time
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import is_not
from typing import TYPE_CHECKING

from bgp import endofrib
from bgp import routes as bgp_routes
from bgp.received import REASONS, Local, decode_message
from controller import fields

if TYPE_CHECKING:
    from bgp.speaker import Neighbor

LOG = logging.getLogger("canopy.bgp.speaker")
PEER_STATES = ("idle", "connected", "up", "down")
REFUSAL_LOG_INTERVAL = 60.0  # seconds between log lines for the same peer and reason after the first
LOG_ONCE = ("not_vxlan",)  # reasons logged only the first time per peer (then only counted)
# reasons that are normal operation when the route is one Canopy announces, logged at info: a route reflector sends
# every client's routes back to it too (FRR does, as the reflector docs/evpn.md shows), so a warning would be written
# at every session start. One Canopy does not announce is a warning: another speaker with Canopy's router id or AS
EXPECTED = ("own_route",)
PROBE_ACTION = "probe"  # the action of a pending probe line (no routes)
EVPN_FAMILY = "l2vpn/evpn"  # as ExaBGP names it in a graceful restart capability


@dataclass
class PeerStatus:
    """Runtime state of one configured neighbor, as ExaBGP last reported it."""

    address: str
    asn: int
    state: str = "idle"
    since: float | None = None  # epoch time of the last state change
    up_since: float | None = None  # monotonic time the session came up
    last_error: str | None = None
    restart_time: int | None = None  # graceful restart for l2vpn evpn in its last OPEN: its Restart Time
    forwarding: bool = False  # ... and its Forwarding State bit for l2vpn evpn
    stale: set = field(default_factory=set)  # keys of routes kept while it restarts (RFC 4724)
    stale_until: float | None = None  # monotonic deadline of the stale routes
    end_of_rib: bool = False  # its current session sent End-of-RIB for l2vpn evpn (every route it has is in)
    refused: collections.Counter = field(default_factory=collections.Counter)  # reason -> routes refused

    def change(self, state: str, error: str | None = None) -> bool:
        if error:
            self.last_error = error
        if state == self.state:
            return False
        self.state, self.since = state, time.time()
        self.up_since = time.monotonic() if state == "up" else None
        self.end_of_rib = False  # a new session (or none): its End-of-RIB is still to come
        return True


@dataclass(frozen=True)
class GracefulRestart:
    """Our side of BGP graceful restart (RFC 4724): advertised, and honoured for peers that advertise it."""

    enabled: bool = True
    restart_time: int = 120  # seconds we ask peers to keep our routes while we restart
    stale_time: int = 360  # seconds a returned peer has to send End-of-RIB before its stale routes go


def _ip(text) -> str:
    """A peer's address as ExaBGP reports it, normalised to match the configured neighbor's (a scoped one, never
    configured, stays as it is: a message about an unconfigured peer)."""
    try:
        return str(fields.ip_address(str(text)))
    except fields.Invalid:
        return str(text)


@dataclass
class RouteBook:
    """What the speaker wants, sent, had acknowledged and received; no I/O, not thread-safe.

    - ``desired``: {key: route} Canopy wants announced;
    - ``expected``: {key: route} ExaBGP will hold once every command sent is acknowledged;
    - ``announced``: {key: route} acknowledged "done";
    - ``failed``: {key: route} whose announce was answered "error" (not re-sent until it changes
      or ExaBGP restarts);
    - ``pending``: (action, routes) per command line sent and not yet acknowledged, in order; a line
      carries up to ``batch`` routes of one action (``bgp.routes.to_batch_command``);
    - ``received``: {(peer ip, key): route} from ExaBGP's updates (routes refused at the edge are
      treated as withdrawn: ``bgp.received``);
    - ``received_changes``: {(peer ip, key): route, or None when withdrawn} since ``take_received_changes``
      was last called: the delta of ``received``;
    - ``peers``: {peer ip: PeerStatus}, with the routes kept stale while a peer restarts.
    Methods that send return the command lines (without newline) for the caller to write; command lines
    made while handling ExaBGP's answers (a refused batch is re-sent one route per line, so that only the
    bad route is refused) wait in ``outbox`` (``take_outbox``).

    Graceful restart (RFC 4724, receiving side), when ``graceful.enabled`` and the peer's last OPEN
    advertised it for l2vpn evpn with a non-zero Restart Time: when its session ends other than by a
    NOTIFICATION it sent, or ExaBGP exits, its routes stay, marked stale, for its Restart Time; when it
    is back with the Forwarding State bit set they stay until its End-of-RIB (at most ``stale_time``),
    and those it did not announce again are then removed. Without the bit, or after the time, they go.
    """

    neighbors: tuple[Neighbor, ...] = ()
    desired: dict = field(default_factory=dict)
    expected: dict = field(default_factory=dict)
    announced: dict = field(default_factory=dict)
    failed: dict = field(default_factory=dict)
    pending: collections.deque = field(default_factory=collections.deque)
    received: dict = field(default_factory=dict)
    received_changes: dict = field(default_factory=dict)
    received_order: dict = field(default_factory=dict)  # (peer ip, key) -> when it was received (a counter)
    peers: dict = field(default_factory=dict)
    outbox: list = field(default_factory=list)
    received_per_peer: collections.Counter = field(default_factory=collections.Counter)  # peer ip -> routes
    batch: int = bgp_routes.BATCH_ROUTES
    connected: bool = False
    acks: int = 0  # acknowledgements ExaBGP has sent (the speaker's watchdog watches it move)
    log: logging.Logger = LOG
    local: Local | None = None  # our AS and router id, to recognise our own routes come back
    graceful: GracefulRestart = GracefulRestart()
    clock: object = time.monotonic  # () -> seconds, for the restart timers and the refusal log
    _received_count: int = 0  # the last ``received_order`` given
    _refusal_log: dict = field(default_factory=dict)  # (peer, reason, ours) -> [next log time, suppressed count]
    eor: endofrib.EndOfRib | None = None  # when each peer gets our End-of-RIB (bgp.endofrib)

    def __post_init__(self):
        if self.eor is None:
            self.eor = endofrib.EndOfRib(bound=self.graceful.restart_time, clock=self.clock, log=self.log)
        for neighbor in self.neighbors:
            self.peers[_ip(neighbor.address)] = PeerStatus(_ip(neighbor.address), neighbor.asn)

    def configure(self, neighbors: tuple[Neighbor, ...], local: Local, graceful: GracefulRestart) -> bool:
        """New settings while no ExaBGP runs (Speaker.reconfigure): a peer no longer configured, or now of another
        AS, goes with the routes it sent; a new one starts down. True if received routes or peers changed."""
        self.neighbors, self.local, self.graceful = tuple(neighbors), local, graceful
        wanted = {_ip(n.address): n.asn for n in neighbors}
        changed = False
        for address, peer in list(self.peers.items()):
            if wanted.get(address) != peer.asn:
                self._sweep(peer, {key for p, key in self.received if p == address})
                del self.peers[address]
                changed = True
        for address, asn in wanted.items():
            if address not in self.peers:
                self.peers[address] = PeerStatus(address, asn)
                changed = True
        return changed

    # ------------------------------------------------------------------ sending
    def set_desired(self, routes: dict) -> list[str]:
        """Record what Canopy wants; the commands that move ExaBGP there (none while disconnected)."""
        self.desired = dict(routes)
        return self._sync() if self.connected else []

    def complete(self) -> None:
        """Every route Canopy announces after this start is handed over (``bgp.endofrib``): End-of-RIB goes to
        each peer once ExaBGP acknowledged every line sent up to now. Only the first call counts."""
        self.eor.complete(self.acks + len(self.pending) if self.connected else None)

    def end_of_rib(self) -> list[str]:
        """The End-of-RIB command lines due now (``bgp.endofrib``), each waited for like the others."""
        lines = []
        for peer in self.eor.due(self.acks):
            self.pending.append((endofrib.EOR_ACTION, (peer,)))
            lines.append(endofrib.command(peer))
        return lines

    def announce(self, routes: dict) -> list[str]:
        """Want ``routes`` ({key: route}) too, leaving every other desired route as it is: the commands that announce
        those ExaBGP was not told yet. Costs what ``routes`` holds, not what is desired."""
        self.desired.update(routes)
        if not self.connected:
            return []
        return self._send_all(bgp_routes.ANNOUNCE, self._untold(routes))

    def withdraw(self, keys) -> list[str]:
        """Stop wanting the routes ``keys`` (and nothing else): the commands that withdraw those ExaBGP was told
        to announce. Costs what ``keys`` holds, not what is desired (``set_desired`` compares every route)."""
        keys = keys if isinstance(keys, list) else list(keys)  # (walked twice; C loops: 10,000 ports gone at once)
        gone = list(compress(keys, map(is_not, map(self.desired.pop, keys, repeat(None)), repeat(None))))
        if not self.connected:
            return []
        expected = self.expected
        return self._send_all(bgp_routes.WITHDRAW, list(map(expected.pop, filter(expected.__contains__, gone))))

    def attach(self) -> list[str]:
        """A new ExaBGP's API connected: it holds nothing, so every desired route is (re)sent."""
        self.connected = True
        self.expected, self.announced, self.failed = {}, {}, {}
        self.pending.clear()
        self.outbox.clear()
        commands = self._sync()
        self.eor.attached(self.acks + len(self.pending))
        return commands

    def _sync(self) -> list[str]:
        """The commands that move ExaBGP from ``expected`` to ``desired``. A route is compared by identity first:
        a publish hands over the same objects for the routes that did not change (bgp.evpn keeps them), and
        comparing each one field by field was ~10 ms of CPU per 10,000 routes (~1.5 ms by identity; load 7) under
        the speaker's lock, in one stretch of the event loop, at every publish (bursts, stop 33)."""
        withdraw = [self.expected.pop(k) for k in [k for k in self.expected if k not in self.desired]]
        announce = self._untold(self.desired)
        return self._send_all(bgp_routes.WITHDRAW, withdraw) + self._send_all(bgp_routes.ANNOUNCE, announce)

    def _untold(self, routes: dict) -> list:
        """Those of ``routes`` ({key: route}) ExaBGP was neither told to announce nor refused as they are: expected now.
        By identity first (a publish hands over the same objects for the routes that did not change)."""
        untold = []
        expected, failed = self.expected, self.failed
        for key, route in routes.items():
            sent = expected.get(key)  # (a key never sent nor failed: new, without two ``!=`` reaching __eq__)
            if (sent is None and key not in failed and route is not None) or \
                    (sent is not route and sent != route and failed.get(key) != route):
                expected[key] = route
                untold.append(route)
        return untold

    def _send_all(self, action: str, routes: list, size: int | None = None) -> list[str]:
        """Command lines for ``action`` on ``routes``, ``size`` (default ``batch``) routes per line."""
        size = size or self.batch
        return [self._send(action, tuple(routes[i:i + size])) for i in range(0, len(routes), size)]

    def _send(self, action: str, routes: tuple) -> str:
        self.pending.append((action, routes))
        return bgp_routes.to_batch_command(routes, action)

    def probe(self, command: str) -> str:
        """``command`` (the watchdog's probe, bgp.watchdog.PROBE), waited for like the others: its answer is
        acknowledged in order and changes nothing."""
        self.pending.append((PROBE_ACTION, ()))
        return command

    def take_outbox(self) -> list[str]:
        """Command lines made while handling answers, for the caller to write (after what it already has)."""
        out, self.outbox = self.outbox, []
        return out

    def take_received_changes(self) -> dict:
        """{(peer ip, key): route or None (withdrawn)} since the last call: what ``received`` gained, replaced
        or lost, each key once with its latest state."""
        out, self.received_changes = self.received_changes, {}
        return out

    def take_received_in_order(self) -> tuple[dict, dict, list]:
        """``take_received_changes`` and, taken with it, the receive order of its routes (``order_of``) and the peers
        whose routes may not all be in yet (``awaited``)."""
        changes = self.take_received_changes()
        return changes, self.order_of(changes), self.awaited()

    def received_in_order(self) -> tuple[dict, dict]:
        """Copies of ``received`` and of the receive order of every route in it."""
        return dict(self.received), dict(self.received_order)

    def order_of(self, keys) -> dict:
        """{(peer ip, key): n} for those of ``keys`` received: n grows with each route received new or changed (a
        route sent again unchanged keeps its n, a copy of one another peer sent takes its n: ``_copy_order``), so
        the higher n is the more recently received route (the tie-break of an IP two MACs announce:
        ``controller.remote.RemoteMac.ip_rank``)."""
        order = self.received_order
        return {key: order[key] for key in keys if key in order}

    def _copy_order(self, key, route) -> int | None:
        """The receive order of an equal copy of ``route`` (received new or changed as ``key``, (peer ip, route key))
        that another peer already sent, else None: two route reflectors' second copy is not news, and a reflector's
        session flapping does not renumber what the other still holds."""
        for peer in self.peers:
            other = (peer, key[1])
            if peer != key[0] and self.received.get(other) == route:
                return self.received_order[other]
        return None

    def detach(self) -> bool:
        """ExaBGP is gone: nothing is announced, every peer is down, and what they sent is dropped (or
        kept stale, graceful restart). True if changed."""
        self.connected = False
        self.expected, self.announced, self.failed = {}, {}, {}
        self.pending.clear()
        self.outbox.clear()
        self.eor.reset()
        changed = False
        for peer in self.peers.values():
            was_up = peer.state == "up"
            changed |= peer.change("down")
            if was_up:
                changed |= self._session_lost(peer, graceful=True)
        return changed

    # ------------------------------------------------------------------ receiving
    def handle_line(self, line: str) -> bool:
        """One line from ExaBGP (ack or JSON message); True if received routes or peer states changed.

        Malformed or unexpected lines are logged and dropped; this never raises (an exception here would
        lose the acknowledgements after it and desynchronise the command queue).
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
        except (ValueError, AttributeError, RecursionError):
            self.log.warning("ExaBGP API: malformed JSON dropped: %r", line[:200])
            return False
        try:
            if kind == "state":
                return self._state(message["neighbor"])
            if kind == "open":
                return self._open(message["neighbor"])
            if kind == "update":
                return self._update(message)
        except Exception as error:  # noqa: BLE001 - see the docstring
            self.log.warning("ExaBGP API: %s message dropped (%r): %r", kind, error, line[:200])
        return False

    def _acknowledge(self, answer: str) -> None:
        if not self.pending:
            self.log.warning("ExaBGP API: %r acknowledges no command", answer)
            return
        action, routes = self.pending.popleft()
        self.acks += 1
        if action == PROBE_ACTION:
            return
        if action == endofrib.EOR_ACTION:
            self.eor.acknowledged(routes[0], answer == "done")
            return
        if answer == "done":
            for route in routes:
                if action == bgp_routes.ANNOUNCE:
                    self.announced[route.key] = route
                    self.failed.pop(route.key, None)
                else:
                    self.announced.pop(route.key, None)
            return
        if len(routes) > 1:  # one bad route refuses its whole line: find it, one route per line
            self.log.warning("ExaBGP refused a command of %d routes (%s); sending them one by one", len(routes),
                             action)
            self.outbox += self._send_all(action, list(routes), size=1)
            self.eor.extend(self.acks, self.acks + len(self.pending))
            return
        route = routes[0]
        self.log.error("ExaBGP refused: %s", bgp_routes.to_command(route, action))
        if action == bgp_routes.ANNOUNCE:
            self.failed[route.key] = route
            if self.expected.get(route.key) == route:
                del self.expected[route.key]

    def _peer(self, neighbor: dict) -> PeerStatus | None:
        address = _ip(neighbor["address"]["peer"])
        peer = self.peers.get(address)
        if peer is None:
            self.log.warning("ExaBGP API: message about unconfigured peer %s ignored", address)
        return peer

    def _state(self, neighbor: dict) -> bool:
        state = neighbor["state"]
        peer = self._peer(neighbor)
        if peer is None:
            return False
        if state not in PEER_STATES:
            self.log.info("ExaBGP API: peer %s in unknown state %r ignored", peer.address, state)
            return False
        reason, before = (neighbor.get("reason") if state == "down" else None), peer.state
        changed = peer.change(state, reason or None)
        level = logging.INFO if changed and "up" in (before, state) else logging.DEBUG  # not every retry
        self.log.log(level, "BGP peer %s is %s%s", peer.address, state, f" ({reason})" if reason else "")
        if state == "up" and before != "up":
            self.eor.up(peer.address)
        elif state != "up":
            self.eor.down(peer.address)
        if state == "down" and before == "up":  # not on every failed attempt: the restart timer runs on
            changed |= self._session_lost(peer, graceful="notification received" not in str(reason))
        elif state == "up" and peer.stale:
            changed |= self._session_back(peer)
        return changed

    def _open(self, neighbor: dict) -> bool:
        """The peer's OPEN: remember whether it does graceful restart for l2vpn evpn (and how)."""
        if neighbor.get("direction") != "receive":
            return False
        peer = self._peer(neighbor)
        if peer is None:
            return False
        peer.restart_time, peer.forwarding = None, False
        for capability in (neighbor["open"].get("capabilities") or {}).values():
            if isinstance(capability, dict) and capability.get("name") == "graceful restart":
                families = capability.get("address-family-flags") or {}
                if EVPN_FAMILY in families:
                    peer.restart_time = int(capability.get("time") or 0)
                    peer.forwarding = "restart" in (families[EVPN_FAMILY] or ())  # ExaBGP prints F as "restart"
        return False

    def _session_lost(self, peer: PeerStatus, graceful: bool) -> bool:
        """The session with ``peer`` ended: keep its routes stale (graceful restart) or drop them."""
        keys = {k[1] for k in self.received if k[0] == peer.address}
        if graceful and self.graceful.enabled and peer.restart_time and keys:
            peer.stale |= keys
            peer.stale_until = self.clock() + peer.restart_time
            self.log.info("BGP peer %s: keeping its %d route(s) for up to %ds while it restarts (graceful "
                          "restart)", peer.address, len(peer.stale), peer.restart_time)
            return False
        return self._sweep(peer, keys)

    def _session_back(self, peer: PeerStatus) -> bool:
        """A restarting peer is back: wait for its End-of-RIB, unless it did not keep its forwarding state."""
        if self.graceful.enabled and peer.restart_time is not None and peer.forwarding:
            peer.stale_until = self.clock() + self.graceful.stale_time
            return False
        self.log.info("BGP peer %s is back without forwarding state for l2vpn evpn: its %d stale route(s) go",
                      peer.address, len(peer.stale))
        return self._sweep(peer, set(peer.stale))

    def _sweep(self, peer: PeerStatus, keys) -> bool:
        """Remove ``keys`` received from ``peer``; its stale routes are all gone afterwards."""
        changed = False
        for key in keys:
            changed |= self._unreceive((peer.address, key))
        peer.stale, peer.stale_until = set(), None
        return changed

    def _unreceive(self, key) -> bool:
        if self.received.pop(key, None) is None:
            return False
        self.received_changes[key] = None
        del self.received_order[key]
        self.received_per_peer[key[0]] -= 1
        return True

    def expire(self, now: float | None = None) -> bool:
        """Drop the stale routes of peers whose restart or End-of-RIB time is over; True if any went."""
        now = self.clock() if now is None else now
        changed = False
        for peer in self.peers.values():
            if peer.stale and peer.stale_until is not None and now >= peer.stale_until:
                self.log.warning("BGP peer %s: %d stale route(s) removed (%s)", peer.address, len(peer.stale),
                                 "no End-of-RIB in time" if peer.state == "up" else "restart time over")
                changed |= self._sweep(peer, set(peer.stale))
        return changed

    def _update(self, message: dict) -> bool:
        neighbor = message["neighbor"]
        if neighbor.get("direction", "receive") != "receive":
            return False
        peer = self._peer(neighbor)
        decoded = decode_message(message, self.local)
        if peer is None or decoded is None:
            return False
        address, changed = peer.address, False
        # withdrawals first: a route both withdrawn and announced in one UPDATE (one replacing it, its old labels
        # in MP_UNREACH_NLRI) is announced (RFC 4271 section 4.3: as though the withdrawn routes did not hold it)
        announced = {route.key for route in decoded.announced}
        for key in decoded.withdrawn:
            if key not in announced:
                changed |= self._unreceive((address, key))
                peer.stale.discard(key)
        for refusal in decoded.refused:
            self._refused(peer, refusal)
            if refusal.key is not None:
                changed |= self._unreceive((address, refusal.key))
                peer.stale.discard(refusal.key)
        for route in decoded.announced:
            key = (address, route.key)
            if self.received.get(key) != route:
                self.received_per_peer[address] += key not in self.received
                self.received[key] = self.received_changes[key] = route
                n = self._copy_order(key, route) if len(self.peers) > 1 else None
                if n is None:
                    n = self._received_count = self._received_count + 1
                self.received_order[key] = n
                changed = True
            peer.stale.discard(route.key)
        if decoded.end_of_rib and not peer.end_of_rib:
            peer.end_of_rib = changed = True  # a start-up hold may be waiting for it (``awaited``)
        if decoded.end_of_rib and peer.stale:
            self.log.info("BGP peer %s: End-of-RIB, %d stale route(s) not announced again removed", address,
                          len(peer.stale))
            changed |= self._sweep(peer, set(peer.stale))
        elif decoded.end_of_rib:
            peer.stale_until = None
        return changed

    def _refused(self, peer: PeerStatus, refusal) -> None:
        """Count a route refused at the edge; log the first of each reason per peer, then once a minute
        (``LOG_ONCE`` reasons: never again)."""
        peer.refused[refusal.reason] += 1
        expected = refusal.reason in EXPECTED and self._ours(refusal.key)
        slot = self._refusal_log.setdefault((peer.address, refusal.reason, expected), [float("-inf"), 0])
        now = self.clock()
        if now < slot[0]:
            slot[1] += 1
            return
        more = f" (and {slot[1]} more since the last report)" if slot[1] else ""
        unknown = "" if expected or refusal.reason not in EXPECTED else (
            "; Canopy does not announce this route: is another speaker using Canopy's router id or AS?")
        self.log.log(logging.INFO if expected else logging.WARNING, "BGP peer %s: route treated as withdrawn: %s: "
                     "%s%s%s", peer.address, REASONS.get(refusal.reason, refusal.reason), refusal.detail, unknown, more)
        slot[0], slot[1] = now + (float("inf") if refusal.reason in LOG_ONCE else REFUSAL_LOG_INTERVAL), 0

    def _ours(self, key) -> bool:
        """Whether the route with this key is one Canopy announces, is announcing, or is still withdrawing."""
        return key is not None and (key in self.desired or key in self.announced or key in self.expected)

    def awaited(self) -> list[str]:
        """The configured peers whose routes may not all be in yet: not up, or up with graceful restart for l2vpn
        evpn in their OPEN and no End-of-RIB on this session (RFC 4724 4.2: a restarting speaker defers its route
        selection until it has End-of-RIB from each peer that does graceful restart; the start-up hold waits so).
        Only with graceful restart on here too: without it nothing is negotiated, and End-of-RIB is only
        recommended (RFC 4724 section 2), so a peer need not send it."""
        graceful = self.graceful.enabled
        return sorted(peer.address for peer in self.peers.values()
                      if peer.state != "up" or (graceful and peer.restart_time is not None and not peer.end_of_rib))

    # ------------------------------------------------------------------ inspection
    def peer_rows(self) -> list[dict]:
        rows, now = [], time.monotonic()
        for peer in self.peers.values():
            up = peer.state == "up"
            rows.append({
                "address": peer.address, "asn": peer.asn, "state": peer.state, "since": peer.since,
                "uptime": now - peer.up_since if up and peer.up_since is not None else None,
                "received": self.received_per_peer[peer.address],
                "sent": len(self.announced) if up else 0, "last_error": peer.last_error,
                "stale": len(peer.stale), "refused": dict(peer.refused),
                "end_of_rib_sent": up and peer.address in self.eor.sent,
                "graceful_restart": {"restart_time": peer.restart_time, "forwarding": peer.forwarding}
                if peer.restart_time is not None else None,
            })
        return rows
