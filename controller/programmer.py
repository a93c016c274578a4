"""Keeps every switch's desired flows current: drain State's change journal, update the View for what it
reaches, recompile only the owners it reaches.

``refresh()`` takes the journal (``controller.journal``: the vports, subnets, domains, switches, hardware VTEPs
and EVPN scopes that changed), has ``controller.viewdelta.LiveView`` update the derived View in place for just
those, and recompiles the owners that delta reaches (switch, subnet, domain, vport, remote MAC) on the switches
where they are or were present; a switch that connected or whose own facts (VTEP IP, tunnel port) changed is
compiled whole, the others only for what its change reaches. ``refresh(full=True)`` (at start, on request, and
after a failed pass) derives and compiles everything from scratch: it is the oracle the incremental path is
tested against (tests/unit/test_incremental_oracle.py).
"""

from __future__ import annotations

import logging

from controller.derive import View, derive
from controller.viewdelta import LiveView
from openflow.compiler import Desired, compile_owners, compile_switch

log = logging.getLogger("canopy.programmer")


class Programmer:
    def __init__(self, state):
        self.state = state
        self.live = LiveView(state)
        self.journal = state.journal() if hasattr(state, "journal") else None
        self.desired: dict[str, Desired] = {}
        self.full_recomputes = 0
        self.incremental_updates = 0
        self._built = False

    @property
    def view(self) -> View:
        return self.live.view

    def derive(self) -> View:
        """A View derived from scratch (``controller.derive``): what the maintained one must equal."""
        s = self.state
        return derive(s.policy, s.locations, s.vrs, s.vtep_ip_of, s.vteps, getattr(s, "remote", None))

    def refresh(self, full: bool = False) -> set[str]:
        """Bring desired state up to date; returns the sessions whose desired flows or groups changed."""
        journal = self.journal.take() if self.journal is not None else None
        if full or not self._built or journal is None:
            self._built = False
            self.live.build()
            self._built = True
            return self._recompute_all(self.view)
        self.incremental_updates += 1
        if journal.empty():
            return set()
        reach = self.live.apply(journal)
        touched = {session for session in reach.gone if self.desired.pop(session, None) is not None}
        view = self.view
        for session in reach.rebuild:
            before = self.desired.get(session)
            self.desired[session] = compile_switch(view, session)
            if _content(before) != _content(self.desired[session]):
                touched.add(session)
        for session, owners in reach.owners.items():
            if session in reach.rebuild or session not in view.switches:
                continue
            current = self.desired.setdefault(session, Desired())
            before = {o: (current.flows.get(o, frozenset()), current.groups.get(o, ())) for o in owners}
            current.update(compile_owners(view, session, owners), owners)
            if any((current.flows.get(o, frozenset()), current.groups.get(o, ())) != before[o] for o in owners):
                touched.add(session)
        return touched

    def _recompute_all(self, view) -> set[str]:
        self.full_recomputes += 1
        previous = self.desired
        self.desired = {session: compile_switch(view, session) for session in view.switches}
        return {s for s in set(previous) | set(self.desired)
                if _content(previous.get(s)) != _content(self.desired.get(s))}


def _content(desired):
    return None if desired is None else (desired.all_flows(), desired.all_groups())
