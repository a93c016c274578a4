"""Which OVSDB session speaks for each VRS: switches are keyed by chassis, not by connection.

A VRS is known to State under ``switch_key(chassis)`` (``vrs:<system-id>``; the chassis falls back to the
hostname, then the peer address, see ovsdb/vrs.py). The key is an opaque string to everything downstream;
only this module makes it. It outlives the OVSDB connection that reported it:

- A reconnect of the same chassis is not a new switch. When a session ends, the switch is reported gone
  only ``grace`` seconds later (``expire``, called by the server about once a second); a session of the
  same chassis arriving meanwhile takes over the key and reports its own rows as a delta against the last
  snapshot reported (``VrsSnapshot.changed``), reusing unchanged ``PortInfo`` objects, so nothing that
  did not change is recompiled.
- Two live sessions claiming one chassis (a hypervisor reconnecting before its old connection timed out,
  or two hypervisors given the same system-id): the **newest speaks**, the older one is kept open but
  silent, and a warning names both. If the speaker goes while the other is still connected, the other
  speaks again at once (its current rows, as a delta). Writers (tunnel port, bridge fail-secure) keep
  working on each session's own database.
- A VRS whose bridge still answers over OpenFlow when its grace ends (``forwarding``, given the datapath ids, asked
  together) is not gone: its ovsdb-server hangs or restarts slowly while ovs-vswitchd forwards, with ports that
  cannot change without ovsdb-server, so the last snapshot stays true. It stays known (a warning says so, once),
  asked again every grace, until a session of it comes back or its bridge no longer answers.
- ``close`` (the manager stopping): from then on nothing is reported, neither a switch gone nor a port left. The
  switches are not leaving, the controller is: its sessions closing one by one would otherwise re-place the vports
  shown on two switches at the one still open and unbind the rest (log lines, and anything State's subscribers do
  with it), none of it true; a restart reads every switch afresh.

Hardware VTEPs are claimed the same way (``VtepClaims``): keyed ``vtep:<Physical_Switch name>``
(``vtep_key``), reported to ``vtep_update`` / ``vtep_gone``, with ``VtepSnapshot.changed`` the local MACs
added or removed since the last snapshot reported for that key (ovsdb/vtep_reporter.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from controller.discovery import DiscoverySink, VrsSnapshot

DEFAULT_GRACE_S = 10.0  # > Open vSwitch's 8 s maximum reconnection back-off
PREFIX = "vrs:"
VTEP_PREFIX = "vtep:"


def switch_key(chassis: str) -> str:
    """The key State knows a VRS by (opaque downstream)."""
    return PREFIX + chassis


def vtep_key(name: str) -> str:
    """The key State knows a hardware VTEP by: its Physical_Switch name (opaque downstream)."""
    return VTEP_PREFIX + name


class Claimant:
    """A session (VrsReporter, VtepReporter) holding ``key`` in ``_claims`` while it lives; ``_gone`` set once it
    ended."""

    key: str | None
    _claims: "VrsClaims"
    _gone: bool

    def gone(self) -> None:
        """The session ended: give up the claim (once)."""
        if self._gone:
            return
        self._gone = True
        if self.key is not None:
            self._claims.leave(self.key, self)


class VrsClaims:
    """The speaking session of each switch key and the last snapshot reported for it.

    Claimants are reporters (ovsdb/vrs.py ``VrsReporter``) offering ``speak()``: report your current rows
    now, as the speaker. ``sink`` receives ``vrs_update`` / ``vrs_gone`` for the keys.
    """

    prefix, what = PREFIX, "chassis"

    def __init__(self, sink: DiscoverySink, grace: float = DEFAULT_GRACE_S, log: logging.Logger | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 forwarding: Callable[[set[int]], set[int]] = lambda dpids: set()):
        self._sink = sink
        self._forwards = forwarding
        self.grace = grace
        self._log = log or logging.getLogger(__name__)
        self._clock = clock
        self._claimants: dict[str, list] = {}  # key -> reporters, oldest first; the last one speaks
        self._last: dict[str, VrsSnapshot] = {}  # key -> the snapshot last reported
        self._leaving: dict[str, float] = {}  # key -> when to report it gone
        self._forwarding: set[str] = set()  # leaving keys kept past their grace by their OpenFlow connection
        # Port rows refused an Interface row another Port held (ovsdb/bridgeports.py), by every session ever: the
        # sessions share these claims, and the count outlives each (/metrics: a counter never goes down)
        self.refused_interface_claims = 0
        self.closed = False  # ``close``: the manager stopping, nothing reported from then on

    def _send_update(self, snap) -> None:
        self._sink.vrs_update(snap)

    def _send_gone(self, key: str) -> None:
        self._sink.vrs_gone(key)

    def _name(self, key: str) -> str:
        return "%s %s" % (self.what, key[len(self.prefix):])

    # ------------------------------------------------------------------ reporters' side
    def speaker(self, key: str):
        claimants = self._claimants.get(key)
        return claimants[-1] if claimants else None

    def last(self, key: str) -> VrsSnapshot | None:
        return self._last.get(key)

    def join(self, key: str, reporter) -> None:
        """``reporter`` claims ``key``; it speaks from now on (newest wins)."""
        claimants = self._claimants.setdefault(key, [])
        if claimants:
            self._log.warning("ovsdb %s: %s is also claimed by the OVSDB session from %s, which is still "
                              "connected; the newest speaks for it (two switches with one name, or a "
                              "reconnect before the old connection timed out)", reporter.peer,
                              self._name(key), claimants[-1].peer)
        elif key in self._leaving:
            self._log.info("ovsdb %s: %s reconnected: the same switch, continuing", reporter.peer,
                           self._name(key))
        self._leaving.pop(key, None)
        self._forwarding.discard(key)
        claimants.append(reporter)

    def report(self, key: str, snap: VrsSnapshot) -> bool:
        """The speaker's snapshot; reported if it differs from the last one (and the manager is not stopping:
        ``close``). True if reported."""
        if self.closed or snap == self._last.get(key):
            return False
        self._last[key] = snap
        self._send_update(snap)
        return True

    def leaving(self, key: str, names: list[str]) -> None:
        """The speaker of ``key`` is applying an update that deletes its ports ``names`` (``VrsReporter.leaving``)."""
        if not self.closed:
            self._sink.vrs_leaving(key, names)

    def left(self, key: str, names: list[str]) -> None:
        """The ports ``names`` of ``key`` told ``leaving`` are no longer leaving (deleted and reported, or their
        session ended first)."""
        if not self.closed:
            self._sink.vrs_left(key, names)

    def leave(self, key: str, reporter, now: bool = False) -> None:
        """``reporter`` no longer claims ``key`` (its session ended, or its chassis changed: ``now``)."""
        claimants = self._claimants.get(key, [])
        speaking = bool(claimants) and claimants[-1] is reporter
        if reporter in claimants:
            claimants.remove(reporter)
        if self.closed:
            return
        if claimants:
            if speaking:
                self._log.info("ovsdb %s: %s: the session from %s speaks for it again", reporter.peer,
                               self._name(key), claimants[-1].peer)
                claimants[-1].speak()
            return
        self._claimants.pop(key, None)
        if key not in self._last:
            return
        if now or self.grace <= 0:
            self._gone(key)
        else:
            self._leaving[key] = self._clock() + self.grace

    # ------------------------------------------------------------------ the server's side
    def expire(self) -> None:
        """Report gone every switch whose grace is over."""
        now = self._clock()
        due = [k for k, when in self._leaving.items() if when <= now]
        answering = self._answering(due)
        for key in due:
            if self._leaving.get(key, now + 1) > now:
                continue  # it reconnected (or left again) while the bridges were asked: the echo requests yield
            if key in answering:
                self._warn_forwarding(key)
                self._leaving[key] = now + self.grace
                continue
            self._log.info("%s: no OVSDB session for %g s, gone", self._name(key), self.grace)
            self._gone(key)

    def _answering(self, keys: list[str]) -> set[str]:
        """Those of ``keys`` whose last snapshot's bridge still answers over OpenFlow (asked together). ovs-vswitchd
        takes its ports from ovsdb-server only, so while it forwards without one, the ports it had are the ports it
        has: unbinding them would cut its VMs off for nothing. A host that died silently answers neither: gone as
        before."""
        dpids = {key: self._last[key].datapath_id for key in keys}
        asked = {dpid for dpid in dpids.values() if dpid is not None}
        answered = self._forwards(asked) if asked else set()
        return {key for key, dpid in dpids.items() if dpid in answered}

    def _warn_forwarding(self, key: str) -> None:
        """Say once per absence that ``key`` is kept by its OpenFlow connection."""
        if key not in self._forwarding:
            self._forwarding.add(key)
            dpid = self._last[key].datapath_id
            self._log.warning("%s: no OVSDB session for %g s, but its bridge (datapath %016x) still answers over "
                              "OpenFlow: keeping its ports as last reported until it reconnects over OVSDB or its "
                              "bridge no longer answers (asked every %g s)", self._name(key), self.grace, dpid,
                              self.grace)

    def close(self) -> int:
        """The manager is stopping (module docstring): nothing is reported from now on (no switch gone, no port left,
        no other session speaking for one) as its sessions close. Returns how many switches had been reported (the
        sink keeps them as they were)."""
        self.closed = True
        return len(self._last)

    def pending(self) -> list[str]:
        """Keys within their grace (reported, no session now)."""
        return sorted(self._leaving)

    def _gone(self, key: str) -> None:
        self._leaving.pop(key, None)
        self._forwarding.discard(key)
        if self._last.pop(key, None) is not None and not self.closed:
            self._send_gone(key)


class VtepClaims(VrsClaims):
    """The same for hardware VTEPs: keys ``vtep:<Physical_Switch name>``, reported to ``vtep_update`` /
    ``vtep_gone``; claimants are ``ovsdb.vtep_reporter.VtepReporter``s."""

    prefix, what = VTEP_PREFIX, "hardware VTEP"

    def _send_update(self, snap) -> None:
        self._sink.vtep_update(snap)

    def _send_gone(self, key: str) -> None:
        self._sink.vtep_gone(key)

    def _answering(self, keys: list[str]) -> set[str]:
        return set()  # a hardware VTEP has no OpenFlow connection: its OVSDB session is all there is
