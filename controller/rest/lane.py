"""Big REST answers take their turns one at a time: ``Lane.pause`` is the pause of every REST pacer.

A paced answer (a listing, a switch's flows, BGP routes, a big body decoded) pauses every so many elements with
``hub.sleep(0)``, which lets every ready green thread run before it goes on. That bounds one answer's stretch, not
many at once: a sleeping green thread (the lag probe, an OVSDB probe, an HA heartbeat) wakes only after every ready
green thread has had its turn, so N clients asking for a big answer together held the loop for N stretches in every
round. Reads need no token: 60 connections asking for ``GET /v1/vports`` (3,000 vports) at once held it 2.5 s.

Through ``Lane.pause`` a paused answer waits for its turn in a FIFO queue (``FifoSlots``, one slot), where it is not
ready: one paused answer computes at a time, whatever the number of clients, and each gets its turn in order. Nothing
is held outside ``pause``: a request that never pauses (``GET /v1/status``) never queues, and one that waits for
something else (a write waiting for the standby) holds nothing meanwhile.

The switches' reconcilers take their turns through a lane of their own (controller/app.py ``reconcile_lane``): at a
cold start or a restart many plan, take read-backs in or encode at once (openflow/atonce.py lets 6 plans or read-backs
and 6 encodings run together), and each round of the loop held one stretch of each (vrs_scale: 10-20 reconcilers'
turns, 50-130 ms of CPU, in the cold start's late lag samples). Through the lane, one reconciler's stretch a round.
A reconciler's first stretch of a step, before its first pause, takes no turn (atonce's slots bound those).

A big answer's pacer (``answer_pacer``) pauses every so many elements and, given a ``budget`` (the controller gives
its REST answers ``BUDGET``: controller/app.py), also once that much wall clock has run since its last pause
(controller/pacer.py ``BoundedPacer``): an element costs from a few µs (a flow's row encoded) to ~100 µs (a vport's
view), the more on a loaded machine, where the loop gets a quarter of a CPU.
"""

from __future__ import annotations

from collections.abc import Callable

from controller.pacer import BoundedPacer, Pacer
from controller.ryu_compat import FifoSlots


class Lane:
    """The turn of paused REST answers (module docstring); ``give_way`` is the event loop's turn."""

    def __init__(self, give_way: Callable[[], None]):
        self._turn = FifoSlots(1)
        self._give_way = give_way

    @property
    def queued(self) -> int:
        """Pauses that waited behind another answer's, since the start (inspection, tests)."""
        return self._turn.waited

    def pause(self) -> None:
        """Wait until no other paused answer is ahead, then give the event loop its turn: the wait was that turn if
        there was one (a turn handed over wakes its waiter in the next round of the loop, after the hub has polled and
        every thread then ready has run), so a waiter goes on at once. Else each stretch through a busy lane cost two
        rounds of the loop (one to wake with the turn, one to give it back): half the lane's share of the CPU beside
        every other ready thread (the programming pass, the OVSDB sessions), and twice the rounds for the same work."""
        waited = self._turn.waited
        self._turn.acquire()
        try:
            if self._turn.waited == waited:  # not queued: nothing ran meanwhile
                self._give_way()
        finally:
            self._turn.release()


def answer_pacer(pause: Callable[[], None] | None, every: int, budget: float | None = None) -> Pacer:
    """The pacer of a big answer: ``pause`` every ``every`` elements, and once ``budget`` seconds of wall clock have
    run (module docstring), the clock read at every tick (not every ``every // CHECKS`` elements: an element may cost
    a thousand times another, a vport's view encoded ~2,200 bytecodes; answers tick a chunk or a run of elements at a
    time); a count only without a budget or without a pause."""
    if pause is None or budget is None:
        return Pacer(pause, every)
    return BoundedPacer(pause, every, budget, checks=every)
