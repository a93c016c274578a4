"""The external gateways' MACs resolved by ARP, handed to the HA standby (docs/external.md "The gateway's MAC",
docs/ha.md "ARP after a takeover").

Each VRS that translates to an external network without a static ``gateway_mac`` resolves the gateway by ARP
(openflow/gateway_arp.py); what it found is runtime state of the active (``State.gateway_macs``), not policy: like
the duplicate MAC flags (bgp/dupkeep.py) it travels beside the store's stream, never as a write to confirm. So:

- **The active** sends the whole table, ``{"t": "gateway_macs", "macs": [{"switch", "network", "mac", "age"}]}``
  (``age``: seconds since the gateway last confirmed the MAC, as the active's clock says when it builds the table;
  no clock is compared across nodes, so the time the table then waits on the HA link and in the standby's queue is
  not counted: an entry is that much younger on the standby, which is not shown anywhere and only keeps a silent
  gateway's MAC in use that much longer; docs/external.md), whenever a MAC was learnt, changed or forgotten
  (looked at on each of the standby's heartbeats: at most one table per heartbeat interval), when gateways only
  confirmed theirs at most every half refresh (``offer``), again on each new connection of the link, and once it
  is the active again. At most ``KEPT`` entries (the rest counted and logged, not sent).
- **The standby** holds the last table whole (each entry's confirmation time on its own clock: now - age) and
  takes into its State those not older than ``vrs.gateway_arp_timeout_ms``, of switches it sees and external
  networks its policy holds (so its flows are the active's: a takeover sends no translation flow again), as
  ``replicated``; what it held before and the table no longer lists is forgotten. An entry of a switch it sees or a
  network it holds only later is taken at the active's next heartbeat (``take_waiting``). Entries age there as on
  the active (the app's resolver loop forgets those the timeout passed on either role).
- **On takeover** the new active already has the table in its State; at its first round of requests (within a
  second) it takes what else it holds (switches seen again since the table came) and resolves as always: its
  first request goes out at once, an answer makes the origin ``arp`` (a new MAC is taken then), and a gateway that
  stays silent is forgotten ``timeout`` after the old active last heard it (up to half a refresh earlier: the
  confirmation times the standby holds are at most that late; later by the time the table waited, above).
- **Refused**: a message whose table is not a list of at most ``KEPT`` well-formed entries (the four fields, no
  other; a unicast MAC; a finite age >= 0; no entry twice) is refused whole with one warning naming the entry, the
  field and why, and counted (``refused``, shown in GET /v1/ha and /metrics): nothing changes, the table held stays.
"""

from __future__ import annotations

import logging
import math
import time

from controller import fields, overlink
from controller.loglimit import warn_limited
from controller.overlink import OverLink

log = logging.getLogger("canopy.ha")
MESSAGE = "gateway_macs"
KEPT = 4096  # entries sent and held (~90 bytes each): switches x external networks that resolve by ARP
ROW_KEYS = frozenset(("switch", "network", "mac", "age"))


class Refused(overlink.Refused):
    """Why a gateway_macs message is refused (the entry, the field, the reason)."""


class GatewayKeeper(OverLink):
    MESSAGE, FIELD = MESSAGE, "macs"

    def __init__(self, state, resolver, clock=time.monotonic):
        """``state``: State (its ``gateway_macs``); ``resolver``: the app's GatewayResolver (its ``heard`` times and
        ``timeout``)."""
        super().__init__()  # the HA link once paired (controller/app.py), what was sent on it
        self.state, self.resolver, self.clock = state, resolver, clock
        self.held: dict[tuple[str, str], tuple[str, float]] = {}  # (switch, network) -> (MAC, heard): the active's
        self.waiting: set[tuple[str, str]] = set()  # those of held not applicable when they came (switch, network)
        self._waited = None  # State.version when ``waiting`` was last looked at (no change since: nothing applies)
        self.refused = 0  # messages refused whole (malformed or hostile)
        self.not_kept = 0  # entries beyond KEPT in the last table built here: not sent
        self._sent_at = 0.0  # when the last table was sent (self.clock)

    # ------------------------------------------------------------------ the HA link (event loop): OverLink's steps
    def version(self, link) -> tuple:
        return self.state.gateway_version, link.out_epoch, self.resolver.confirmed

    def hold(self, version: tuple, last: tuple | None) -> bool:
        """If only gateways confirmed their MACs, the table goes at most every half refresh (with many VRSs an answer
        comes at every heartbeat, and the whole table went with each: ~25 ms of the standby's event loop at KEPT
        entries). The standby's confirmation times are then at most half a refresh old: its entries, confirmed every
        refresh, do not age out there (the timeout is at least two refreshes)."""
        return last is not None and version[:2] == last[:2] and \
            self.clock() - self._sent_at < self.resolver.refresh / 2

    def sent(self) -> None:
        self._sent_at = self.clock()

    def rows(self) -> list[dict]:
        return self.table()

    def receive(self, rows) -> None:
        """Not the active: the active's table, taken (``take``) or refused whole."""
        self.take_or_refuse(rows, parse, self.take, "gateway MACs")

    def heartbeat(self) -> None:
        self.take_waiting()

    def counts(self) -> dict:
        return {"refused": self.refused, "not_kept": self.not_kept}

    def table(self) -> list[dict]:
        """What the active sends: each resolved MAC with how long ago its gateway confirmed it (at most KEPT)."""
        now, heard = self.clock(), self.resolver.heard
        items = sorted(self.state.gateway_macs.items())
        self.not_kept = max(0, len(items) - KEPT)
        if self.not_kept:
            warn_limited(log, ("gateway macs not kept",), "%d external gateway MAC(s) beyond the %d sent to the HA "
                         "standby: a takeover resolves them again", self.not_kept, KEPT)
        return [{"switch": switch, "network": network, "mac": mac,
                 "age": round(max(0.0, now - heard.get((switch, network), now)), 3)}
                for (switch, network), mac in items[:KEPT]]

    # ------------------------------------------------------------------ the standby's side
    def take(self, rows: list[tuple[str, str, str, float]]) -> None:
        """Hold the active's table (``parse``d) and take what of it applies into State; entries held before and no
        longer listed are forgotten there."""
        now = self.clock()
        self.held = {(switch, network): (mac, now - age) for switch, network, mac, age in rows}
        usable = self._usable(now, self.held)
        for key in [k for k in self.state.gateway_macs if k not in usable]:
            self.state.gateway_learned(key[0], key[1], None)
        self._learn(usable)
        self.waiting, self._waited = set(self.held) - set(usable), None

    def take_waiting(self) -> None:
        """Not the active (at each of the active's heartbeats): take the held entries that apply since the table came
        (their switch seen, their network held), so the flows are the active's without waiting for its next table
        (its next confirmation: up to a refresh); those aged past the timeout are no longer waited for."""
        if not self.waiting or self._waited == self.state.version:
            return
        self._waited = self.state.version
        now, timeout = self.clock(), self.resolver.timeout
        usable = self._usable(now, {key: self.held[key] for key in self.waiting})
        self.waiting = {key for key in self.waiting if key not in usable and now - self.held[key][1] < timeout}
        self._learn(usable)

    def take_held(self) -> None:
        """This node is the active (called before each round of requests): take what it holds and State lacks (a
        switch seen again since the table came), then hold nothing (its own resolution is the truth from now on)."""
        if not self.held:
            return
        usable = self._usable(self.clock(), self.held)
        self._learn({k: v for k, v in usable.items() if k not in self.state.gateway_macs})
        self.held, self.waiting = {}, set()

    def _usable(self, now: float, entries: dict) -> dict:
        """Those of the held ``entries`` not aged past the timeout, of switches State sees and networks its policy
        holds."""
        state, timeout = self.state, self.resolver.timeout
        return {key: (mac, heard) for key, (mac, heard) in entries.items()
                if now - heard < timeout and key[0] in state.vrs
                and state.policy.get("external_network", key[1]) is not None}

    def _learn(self, entries: dict) -> None:
        for key, (mac, heard) in entries.items():
            self.resolver.heard[key] = heard
            self.state.gateway_learned(key[0], key[1], mac, replicated=True)


def parse(macs) -> list[tuple[str, str, str, float]]:
    """(switch, network, MAC, age) of each entry of a ``gateway_macs`` message; raises Refused naming the first
    entry that is not well-formed (the whole message is refused: nothing is taken from it)."""
    out, seen = [], set()
    for i, row in enumerate(overlink.table_of("macs", macs, KEPT, Refused)):
        entry = _entry(i, row)
        if entry[:2] in seen:
            raise Refused(f"macs[{i}]: switch {entry[0]!r} and network {entry[1]!r} listed twice")
        seen.add(entry[:2])
        out.append(entry)
    return out


def _entry(i: int, row) -> tuple[str, str, str, float]:
    where = f"macs[{i}]"
    overlink.entry_of(where, row, ROW_KEYS, ("switch", "network"), Refused)
    try:
        mac = fields.mac(row["mac"])
    except fields.Invalid as exc:
        raise Refused(f"{where}.mac: {exc}") from None
    age = row["age"]
    if isinstance(age, bool) or not isinstance(age, (int, float)) or not math.isfinite(age) or age < 0:
        raise Refused(f"{where}.age: must be a finite number of seconds >= 0, not {age!r:.80}")
    return row["switch"], row["network"], mac, float(age)
