"""Hitless restarts: nothing is written to any device until what Canopy knows is complete enough.

After a restart, switches reconnect one by one. Desired state computed from the first of them is
incomplete (the VMs of hypervisors not yet back, the MACs a hardware VTEP learned), and writing it
would delete flows and rows that are right, to add them again moments later. So Canopy remembers, in
its store (meta key ``known_devices``: each node of an HA pair its own, never replicated), the hypervisors (by
chassis, their system-id) and hardware VTEPs (by Physical_Switch name) that were connected, and after a start it writes nothing, to no switch or
VTEP (to BGP peers only the routes of what it knows, no End-of-RIB: controller/routepass.py), until every
one of them has reported its state over OVSDB again. It waits only while
they are coming back: ``hold_time`` seconds after the start, or after the last of them came back if that
is later (a loaded machine brings them back slowly, and releasing between two of them would rewrite the
flows of those not back yet), and never longer than ``hold_max`` seconds after the start. Then it is
released for the life of the process, and the remembered set follows the devices as they come and go.

``StartupHold`` is pure bookkeeping (the app asks it, and hands out desired state only once it is
released); its clock is injectable for tests.
"""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Callable, Iterable

from controller.loglimit import warn_limited
from controller.store import KNOWN_DEVICES as KEY  # store meta: {"vrs": [chassis, ...], "vteps": [name, ...]}
DEFAULT_HOLD_TIME = 15.0  # seconds; > Open vSwitch's 8 s maximum reconnection back-off
DEFAULT_HOLD_MAX = 60.0  # seconds after the start the hold never outlasts, however slowly switches come back

log = logging.getLogger("canopy.hold")


def _names(value) -> frozenset[str]:
    """The names in a stored list, ignoring anything that is not a non-empty string."""
    if not isinstance(value, list):
        return frozenset()
    return frozenset(v for v in value if isinstance(v, str) and v)


def _iso(wall: float) -> str:
    return datetime.datetime.fromtimestamp(wall, datetime.timezone.utc).isoformat(timespec="seconds")


class StartupHold:
    """Whether desired state may be written yet, and the durable memory of the devices connected.

    ``store``: a controller.store.Store (``get_meta``/``set_meta``); ``hold_time``: seconds to wait after the
    start, or after the last remembered switch came back (0: never hold); ``hold_max``: seconds after the start
    the hold ends at the latest."""

    def __init__(self, store, hold_time: float = DEFAULT_HOLD_TIME, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, hold_max: float = DEFAULT_HOLD_MAX):
        self._store = store
        self._clock, self._wall = clock, wall
        self.hold_time, self.hold_max = hold_time, max(hold_max, hold_time)
        stored = store.get_meta(KEY)
        stored = stored if isinstance(stored, dict) else {}
        self.expected = {"vrs": _names(stored.get("vrs")), "vtep": _names(stored.get("vteps"))}
        self._recorded = (self.expected["vrs"], self.expected["vtep"])
        self._record_failed = False  # the last try to record them failed: its traceback is logged already
        self._started, self._started_wall = clock(), wall()
        self._progress = self._started  # when the last remembered switch came back (the start until one does)
        self._back = 0  # remembered switches back so far
        self._extended = False  # the hold outlasted hold_time (logged once)
        self._waited_past_max = False  # past hold_max, the hold waited for a pass with the arrived switches
        self._missing = {kind: set(names) for kind, names in self.expected.items()}
        self._closed = False
        self.released_at: float | None = None
        self.reason = ""
        total = self.total
        if total and hold_time > 0:
            log.info("holding every write until the %d switches connected before have reported (%s); waiting %g s "
                     "for the next of them (restart.hold_time), at most %g s (restart.hold_max)", total,
                     self._describe(self._missing), hold_time, self.hold_max)
        else:
            self._release("no switch was connected before" if not total else "hold_time is 0")

    @property
    def total(self) -> int:
        return sum(len(names) for names in self.expected.values())

    @property
    def holding(self) -> bool:
        return self.released_at is None

    @property
    def _deadline(self) -> float:
        """hold_time after the start or the last switch back, whichever is later; hold_max after the start at most."""
        return min(self._progress + self.hold_time, self._started + self.hold_max)

    def check(self, vrs: Iterable[str], vteps: Iterable[str], arrived: tuple[Iterable[str], Iterable[str]] = ((), ()),
              peers: Iterable[str] = (), peers_now: Iterable[str] | None = None, partial: Iterable[str] = ()) -> bool:
        """Given the chassis of the VRS and the names of the VTEPs that have reported (in the desired state
        about to be handed out), release the hold when all expected ones have, or when the hold ends: no
        remembered switch came back for hold_time, or hold_max is reached. True only on the call that releases.

        ``arrived``: (chassis, VTEP names) that have reported since that desired state was computed (State has
        them, the next pass will). They count as coming back (the hold waits on while they do), and a hold that
        ends while every missing switch is among them does not release: on a loaded machine a pass can take
        seconds, and releasing on the pass that started before the last switches reported would remove their
        VMs' flows everywhere, to add them again one pass later. The caller runs that next pass; it releases
        (all reported) or, if one left meanwhile, the hold is still over. Past hold_max it waits so for one pass
        only: a switch whose session keeps dropping would be arriving at every check.

        ``peers``: the BGP peers whose routes that desired state may lack (not up yet, or no End-of-RIB yet from one
        that does graceful restart: ``bgp.routebook.RouteBook.awaited``). Writing before their routes are in would
        remove the flows towards their endpoints, to add them again moments later (RFC 4724 4.2: the restarting
        speaker defers its route selection until its peers' End-of-RIB). The hold waits for them as for a missing
        switch, to the same end (a peer is not a switch coming back: it moves no deadline). ``peers_now``: those
        awaited as of the routes taken since (the next pass imports them; None: as ``peers``). A hold that ends while
        the routes of a missing peer are in by then waits for that pass as for an arrived switch: releasing with the
        View that lacks them would remove the flows towards the peer's endpoints, to add them again one pass later.

        ``partial``: chassis whose first report State had only partly taken in when that desired state was computed
        (controller/state.py ``vrs_update``: some of their VMs not located yet, or the switch not in it at all, its
        ports still read or indexed: among ``vrs`` or not). A remembered one has not
        reported (it has arrived), and the hold never ends on such a pass, not at its end, not past hold_max: it would
        delete the flows of that switch's other VMs everywhere (and their routes with End-of-RIB). State takes a
        report in bounded time and then wakes the loop for the pass that sees it whole; a switch whose first reports
        keep coming (its session ending and starting again) holds it hold_time past hold_max at most."""
        if not self.holding:
            return False
        partial = set(partial) & self.expected["vrs"]
        vrs, vteps = set(vrs) - partial, set(vteps)
        arrived = (set(arrived[0]) | partial, arrived[1])
        self._missing = {"vrs": set(self.expected["vrs"] - vrs), "vtep": set(self.expected["vtep"] - vteps),
                         "bgp peer": set(peers)}
        self._note_progress(vrs | set(arrived[0]), vteps | set(arrived[1]))
        now = self._clock()
        if not any(self._missing.values()):
            self._release(f"all {self.total} switches connected before have reported"
                          + (", every BGP peer's routes are in" if peers != () else ""))
        elif now >= self._deadline and not (partial and now < self._started + self.hold_max + self.hold_time) and \
                not self._waits_for(arrived, set(peers if peers_now is None else peers_now), now):
            self._release(self._ended_why())
        elif now >= self._started + self.hold_time and not self._extended:
            self._extended = True
            self._log_extended()
        return not self.holding

    def _switches_missing(self) -> bool:
        return bool(self._missing["vrs"] or self._missing["vtep"])

    def _log_extended(self) -> None:
        """Once, when hold_time since the start is over and the hold goes on: for switches still coming back, or,
        every switch back, for BGP peers' routes (up to hold_time after the last switch came back, hold_max after the
        start at most)."""
        if self._switches_missing():
            log.info("hold time of %g s over, but switches connected before are still coming back (%d of %d back): "
                     "holding while they do, until %s at the latest (restart.hold_max %g s)", self.hold_time,
                     self._back, self.total, _iso(self._started_wall + self.hold_max), self.hold_max)
        else:
            log.info("hold time of %g s over; every switch connected before is back (%d of %d), not yet the routes of "
                     "%s: holding for them until %s at the latest (%s)", self.hold_time, self._back, self.total,
                     self._describe(self._missing), _iso(self._started_wall + self._deadline - self._started),
                     f"restart.hold_max {self.hold_max:g} s" if self._max_bounds() else
                     "restart.hold_time after the last switch came back")

    def _note_progress(self, vrs: set, vteps: set) -> None:
        """A remembered switch that came back since the last check moves the hold's end to hold_time from now."""
        back = len(self.expected["vrs"] & vrs) + len(self.expected["vtep"] & vteps)
        if back > self._back:
            self._back, self._progress = back, self._clock()

    def _max_bounds(self) -> bool:
        """The last switch came back so late that hold_max, not hold_time after it, ends the hold."""
        return self._progress + self.hold_time > self._started + self.hold_max

    def _ended_why(self) -> str:
        missing = f"still missing {self._describe(self._missing)}"
        if self._max_bounds():
            waiting = ("while switches were coming back" if self._switches_missing() else
                       "with every switch connected before back, waiting for BGP peers' routes")
            return f"restart.hold_max of {self.hold_max:g} s reached {waiting}; {missing}"
        if not self._switches_missing():
            return (f"every switch connected before is back, and {self.hold_time:g} s (hold time) passed since the "
                    f"last one came back; {missing}")
        if self._back:
            return f"no switch connected before came back for {self.hold_time:g} s (hold time); {missing}"
        return f"hold time of {self.hold_time:g} s over; {missing}"

    def _waits_for(self, arrived, peers_now: set, now: float) -> bool:
        """The hold is over but waits for the next pass: every missing switch is among ``arrived``, and that pass has
        more (those switches, or a missing peer's routes: not in ``peers_now``); before hold_max as often as that is
        so, after it once."""
        if not self._arriving(arrived, peers_now):
            return False
        if now >= self._started + self.hold_max:
            if self._waited_past_max:
                return False
            self._waited_past_max = True
        return True

    def _arriving(self, arrived, peers_now: set) -> bool:
        """Every missing switch has reported since the pass being checked was computed, and the next pass has more
        than it: those switches, or the routes of a missing BGP peer that are in now."""
        vrs, vteps = arrived
        missing_vrs, missing_vteps = self._missing["vrs"], self._missing["vtep"]
        if not (missing_vrs <= set(vrs) and missing_vteps <= set(vteps)):
            return False
        return bool(missing_vrs or missing_vteps or self._missing["bgp peer"] - peers_now)

    def awaits(self, vrs: Iterable[str], vteps: Iterable[str]) -> bool:
        """Holding, its end not reached (a pass then may end it), and a switch connected before is not among ``vrs``
        (chassis) and ``vteps`` (names): those that have reported (State's): a pass computed now could not end the
        hold on that account."""
        return self.end_ahead() and self.unreported(vrs, vteps)

    def end_ahead(self) -> bool:
        """Holding, and its end (as of now) not reached."""
        return self.holding and self._clock() < self._deadline

    def unreported(self, vrs: Iterable[str], vteps: Iterable[str]) -> bool:
        """A switch connected before is not among ``vrs`` (chassis) and ``vteps`` (names)."""
        return bool(self.expected["vrs"] - set(vrs) or self.expected["vtep"] - set(vteps))

    def waiting(self) -> dict[str, int]:
        """{"vrs": n, "vtep": n}: remembered switches that have not reported yet (0 each once released)."""
        return {kind: len(self._missing[kind]) if self.holding else 0 for kind in ("vrs", "vtep")}

    def seconds_left(self) -> float | None:
        """How long the hold can still last unless another remembered switch comes back (None once released): the
        programming loop's longest sleep."""
        return max(0.0, self._deadline - self._clock()) if self.holding else None

    def latest(self) -> float | None:
        """On the hold's clock, when hold_max ends the hold at the latest (None once released): the programming loop
        runs a pass then, whatever switch reports it would wait for."""
        return self._started + self.hold_max if self.holding else None

    def remember(self, vrs: Iterable[str], vteps: Iterable[str]) -> None:
        """Record the devices connected now, if that changed (only once released, and not after close)."""
        if self.holding or self._closed:
            return
        now = (frozenset(vrs), frozenset(vteps))
        if now == self._recorded:
            return
        try:
            self._store.set_meta(KEY, {"vrs": sorted(now[0]), "vteps": sorted(now[1])})
        except Exception as error:  # the store is closing, full or read-only: memory is best effort, never stops
            # programming; tried again after every pass, so a traceback the first time, then a line per LOG_EVERY
            if self._record_failed:
                warn_limited(log, ("could not record the connected switches", id(self)),
                             "could not record the connected switches: %s: %s", type(error).__name__, error)
            else:
                log.exception("could not record the connected switches (tried again after every programming pass)")
            self._record_failed = True
            return
        self._recorded, self._record_failed = now, False

    def close(self) -> None:
        """The controller is stopping: the sessions it closes are not devices leaving; forget nothing."""
        self._closed = True

    def status(self) -> dict:
        """For GET /v1/status."""
        if self.holding:
            missing, peers = sum(self.waiting().values()), self._missing.get("bgp peer")
            routes = f" and the routes of BGP peer(s) {', '.join(sorted(peers))} (End-of-RIB)" if peers else ""
            return {"state": "syncing", "hold_time": self.hold_time, "hold_max": self.hold_max,
                    "message": f"waiting for {missing} of {self.total} switches{routes}",
                    "until": _iso(self._started_wall + self._deadline - self._started),
                    "latest": _iso(self._started_wall + self.hold_max), "waiting_for": self._listing(self._missing)}
        return {"state": "synced", "hold_time": self.hold_time, "hold_max": self.hold_max, "message": self.reason,
                "since": _iso(self.released_at)}

    def _release(self, reason: str) -> None:
        self.released_at, self.reason = self._wall(), reason
        log.info("writing to switches: %s", reason)

    @staticmethod
    def _listing(missing) -> list[dict]:
        return [{"kind": kind, "name": name} for kind in ("vrs", "vtep", "bgp peer")
                for name in sorted(missing.get(kind, ()))]

    @staticmethod
    def _describe(missing) -> str:
        return ", ".join(f"{item['kind']} {item['name']}" for item in StartupHold._listing(missing))


class AwaitedFirstReads:
    """Whether the hold waits for a switch State has no report of yet while an OVSDB session's first read is under
    way (a pass computed now could not end the hold: the programming loop waits for them, bounded; controller/
    programloop.py ``arriving``). The loop asks every 5 ms while it waits, so an ask is O(1): the OVSDB server keeps
    the count of sessions before their first report (``first_reads_pending``), and which remembered switches State
    has reports of is looked at again only when State changed (``State.version``, or a switch added in the pause of
    its first report). Before, every ask built the sets of every switch's chassis and name: O(switches) every 5 ms
    through a restart's first reads. ``looks``: how often the switches were looked at (tests count them)."""

    def __init__(self, hold: StartupHold, ovsdb, state):
        self.hold, self.ovsdb, self.state = hold, ovsdb, state
        self._seen: tuple | None = None  # State's version and switch counts the last look was made at
        self._unreported = False
        self.looks = 0

    def __call__(self) -> bool:
        if not self.hold.holding or self.ovsdb.first_reads_pending() <= 0:
            return False
        state = self.state
        seen = (state.version, len(state.vrs), len(state.vteps))
        if seen != self._seen:
            self._seen, self.looks = seen, self.looks + 1
            self._unreported = self.hold.unreported({snap.chassis for snap in state.vrs.values()},
                                                    {snap.name for snap in state.vteps.values() if snap.name})
        return self._unreported and self.hold.end_ahead()
