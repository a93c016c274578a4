"""The EVPN routes' steps in a programming pass: import what the peers sent (the pass's first step), and publish
what the pass's View originates (``bgp.federation``).

A pass that will hand its result out (not the first, not during the start-up hold) publishes the routes as soon as
its View is up to date and nothing is compiled yet (``view_ready``), so ExaBGP and the peers take them in while the
flows compile (10,000 new vports: a second or more); a pass that did not (``hand_out``) publishes before it hands
the flows out. The app builds one (controller/app.py); ``federation`` is None without BGP.

During the start-up hold (controller/startup_hold.py) nothing is written to any switch, but the routes of what the
View knows (the switches that have reported) are announced on every pass that changes the View (``view_ready``),
and on one that changes only the HA role, lets the last peer's routes in or changes the duplicate MAC flags (a
recovery fallen due, a DELETE: ``held``; Programmer.refresh calls no ``view_ready`` when its View did not
change): a peer without graceful restart for EVPN (FRR 8.4) dropped them when Canopy went away and would otherwise
get them back only when the hold ends, up to ``restart.hold_max`` later, black-holing the traffic to our VMs that
long. What the hold protects stays:

- End-of-RIB: these publishes are not complete (``Federation.publish(complete=False)``); it still follows the first
  publish after the hold, once every route is announced (bgp/endofrib.py; on the pass that releases the hold, its
  publish of the same View during the hold is handed over as complete: ``hand_out``). A peer with graceful restart
  (RFC 4724) replaces its stale copies by the routes announced meanwhile, and keeps the others stale until then.
- Withdrawals: only of routes announced since this start (ExaBGP is new; the speaker sends differences): one
  announced during the hold whose port goes (unbound, or its switch left: after OVSDB's reconnect grace) is
  withdrawn, as after the hold. The routes of a switch not back are not in the View, so never announced, never
  withdrawn: a peer with graceful restart keeps them stale until End-of-RIB, one without has dropped them already.
- MAC mobility: a sequence number computed while a peer's routes are still arriving would be too low for good (a
  MAC that moved here while Canopy was away would get 0, and lose to the peer's older route once that arrives). So
  nothing is announced during the hold while a peer's routes may not all be in (``Federation.awaited`` as of this
  pass's import: a peer not up, or one with graceful restart that has not sent End-of-RIB), the same measure the
  hold waits by.
- A standby announces nothing (not originating, or the HA role not decided yet); a node that becomes active during
  its hold announces from the pass its role change wakes, and one that steps down during its hold, after it
  announced, withdraws them all in the pass its role change wakes (not only when its hold ends).
- Announcing at bind (``Federation.early``) stays off until the hold ends: the hold's passes announce the routes of
  the vports bound meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

log = logging.getLogger("canopy.app")


class RoutePass:
    def __init__(self, federation, programmer, hold, started: Callable[[], bool]):
        self.federation, self.programmer, self.hold = federation, programmer, hold
        self.started = started  # the programming loop's first (full, not handed out) pass succeeded
        self.published = False  # this pass has published the complete set of EVPN routes already (view_ready)
        self.held_announced = False  # the last publish during the start-up hold handed routes to the speaker
        # (originating, policy, flag changes) of the last publish during the hold (``_reads``), while the speaker
        # holds what it made of the View as it is (None: none yet, or the View changed since without a publish)
        self.held_as: tuple | None = None
        self.viewed = False  # this pass's View changed (view_ready ran)

    def import_remote(self) -> None:
        """A new pass (its first step): import what the peers sent since the last, and tend the duplicate MAC flags
        (``Federation.tend_flags``: a recovery falls due in every state, also during the hold)."""
        self.published = self.viewed = False
        if self.federation is not None:
            try:
                self.federation.refresh_import()
            except Exception:  # a bad route or an import bug must not stop programming
                log.exception("importing EVPN routes failed; keeping the previous remote table")
            try:
                self.federation.tend_flags()
            except Exception:  # nor a flags bug
                log.exception("tending the duplicate MAC flags failed; they are tended again at the next pass")

    def view_ready(self) -> None:
        """The pass's View is up to date and nothing is compiled yet: a pass that will hand its result out
        publishes the EVPN routes now; one during the start-up hold, the routes of what its View knows (see the
        module docstring). The routes follow the View, as they did when published in ``hand_out``; a pass failing
        in its compile has published them all the same (the next pass, from scratch, publishes again)."""
        self.viewed = True
        if not self.started():
            return
        if not self.hold.holding:
            self.publish()
            self.published = True
        else:
            self.held_as = None  # the View changed
            self._publish_held()

    def held(self) -> None:
        """The pass is held (the start-up hold: the app hands nothing out). One whose View did not change calls no
        ``view_ready``; a role change, a peer's End-of-RIB, a flag's recovery timer or the hold's timer wakes such
        passes: publish here when the role, the policy or the flags (``_reads``) changed since the last publish during
        the hold, or the View since (its pass did not publish: a peer's routes were not all in yet)."""
        federation = self.federation
        if (federation is not None and not self.viewed and self.started()
                and self.held_as != self._reads()):
            self._publish_held()

    def _publish_held(self) -> None:
        """During the hold: the routes of what the View knows, when this node announces them (``_announces_held``),
        or none, when a node that did is demoted."""
        federation = self.federation
        if federation is None or not (self._announces_held() or (self.held_announced and not federation.originating)):
            return
        held_as = self._reads()  # what this publish reads
        if self.publish(complete=False):  # a node demoted during its hold withdraws what it announced in it
            self.held_announced, self.held_as = held_as[0], held_as  # withdrawn all: nothing left to withdraw

    def hand_out(self) -> None:
        """The pass hands its result out: the routes go first (ExaBGP works on them while the reconcilers send the
        flows), unless ``view_ready`` published them (not on the pass that released the hold: its ``view_ready``
        ran during the hold). On that pass, when a publish during the hold made the routes of this View with the role,
        policy and flags of now, those routes are the complete set already: only End-of-RIB follows (publishing the same
        View again would cost as much: 10,000 routes, 520,000 calls)."""
        held_as, self.held_as = self.held_as, None  # the hold is over: every pass from now on publishes in full
        if self.published:
            return
        federation = self.federation
        if federation is not None and held_as == self._reads():
            federation.early = True
            federation.handed_over()
            return
        self.publish()

    def _reads(self) -> tuple:
        """What a publish reads besides the View: the HA role, the policy, and the duplicate MAC flags as they were
        changed outside a publish (a recovery fallen due, a DELETE, the active's flags: ``Federation.flag_changes``)."""
        federation = self.federation
        return federation.originating, federation.state.policy, federation.flag_changes

    def _announces_held(self) -> bool:
        """During the start-up hold: this node originates (the HA active, its role decided) and every peer's routes
        are in as of this pass's import."""
        federation = self.federation
        return (federation is not None and federation.originating and federation.settled()
                and not federation.awaited)

    def publish(self, complete: bool = True) -> bool:
        """Announce the View's routes; ``complete`` (after the start-up hold): every route, End-of-RIB may follow, and
        routes may also go as vports are bound (``Federation.early``). False if there is no BGP or it failed."""
        if self.federation is None:
            return False
        if complete:
            self.federation.early = True
        try:
            self.federation.publish(self.programmer.view, complete=complete)
        except Exception:
            log.exception("computing the EVPN routes to announce failed")
            return False
        return True
