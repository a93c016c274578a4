"""Which policy seq each connected switch has programmed: GET /v1/switches ``sync.programmed_seq``, which ``canopy
apply --wait`` compares with the seq its apply answered (docs/operations.md "Waiting for the switches").

A policy commit's seq (the store's, the same on both nodes of an HA pair and across restarts) reaches a switch in
three steps: State takes the commit whole (``State.settled_seq``: its vports re-resolved too), a programming pass
computes the desired state from it (``Programmer.revision``) and hands it to every switch it changed
(``ProgramLoop.handed_seq`` once the pass succeeded), and the switch's reconciler finds the switch equal to all it was
handed (``SwitchReconciler.settled``). So a switch seen settled when the last pass handed out seq N holds the desired
state of seq N: a switch that pass did not touch had nothing of it to change. A switch whose desired state is withheld
(State is still taking its first report; or released and its turn in the hand-out still to come: Programmer.due)
is not. What a switch was last seen to hold is remembered
per connection (a reconnected switch is read back: nothing is known of it until it settles again), so a switch busy
with a newer change still shows the seq it had programmed when last looked at; it is looked at when it is listed.
A hardware VTEP alike (GET /v1/vteps ``programmed_seq``): its reconciler settled when its last plan, made for the
desired rows the pass handed it, found nothing to write.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable


class ProgrammedSeqs:
    """``handed()``: the seq of the last pass handed out (ProgramLoop.handed_seq); ``withheld()``: the sessions whose
    desired state is not handed out yet (Programmer.withheld)."""

    def __init__(self, handed: Callable[[], int], withheld: Callable[[], set]):
        self._handed = handed
        self._withheld = withheld
        self._seen: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # reconciler -> seq seen programmed

    def of_switch(self, rec, session: str | None) -> int | None:
        """The newest seq ``rec``'s switch (VRS ``session``, None: no OVSDB session names it) is known to hold;
        None: none yet on this connection. Call it before anything pauses: settled and handed are read together."""
        return self.of(rec, rec.settled and session not in self._withheld())

    def of_vtep(self, rec, settled: bool) -> int | None:
        """Alike for a hardware VTEP's reconciler (ovsdb/vtep_sync.py; OvsdbManagerServer.vtep_settled); None for no
        reconciler (no session serves it)."""
        return None if rec is None else self.of(rec, settled)

    def of(self, rec, settled: bool) -> int | None:
        if settled:
            self._seen[rec] = self._handed()
        return self._seen.get(rec)
