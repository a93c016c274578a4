"""A round of the event loop has a budget of CPU: once it is spent, work that paused waits for the next round.

eventlet's hub runs in rounds: it fires every timer that is due (each green thread that paused with ``sleep(0)``
is one, each sleeper whose time came another), polls its sockets and runs the green threads whose sockets are
ready, then starts again. A green thread woken by a timer or a socket (an echo reply, a keepalive, REST, the lag
probe) waits for the round under way to end, so for every turn that was ready before it: with 50 reconcilers,
8 read-backs and the compile pausing every few milliseconds, rounds took 100-200 ms of CPU although no turn was
longer than 10 ms (docs/benchmarks.md, "vrs_scale", "Branch lagcause").

``give_way()`` is the pause of long work (controller/pacer.py's ``pause`` in the controller): a turn for every
other green thread, and then, while the round under way has already taken ``BUDGET`` of the loop thread's CPU,
more turns until a round with budget left comes, so work that paused waits for the next round instead of
lengthening this one. Paused work resumes in the order it paused (tickets: a younger one also waits while an
older one is still waiting), so none is passed over for good. ``install()`` marks where each round begins
(the hub's timer phase); without it ``give_way()`` is a plain ``sleep(0)``.
"""

from __future__ import annotations

import itertools
import time

from eventlet import hubs

BUDGET = 0.02  # CPU seconds of the loop's thread per round after which paused work waits for the next round
MAX_WAITS = 1000  # more turns than this and the work goes on anyway (a bound, never reached by a fair hub)
CLOCK = time.thread_time  # the loop thread's CPU: work, not the wait for a CPU


class Rounds:
    """The budget's book-keeping (see the module docstring); ``ROUNDS`` is the controller's."""

    def __init__(self, budget: float = BUDGET, clock=CLOCK):
        self.budget = budget
        self.clock = clock
        self.started = None  # the loop thread's CPU when the round under way began; None: not installed
        self.waited = 0  # extra turns paused work took because the round's budget was spent
        self._tickets = itertools.count()
        self._waiting: set[int] = set()

    def install(self, hub=None) -> None:
        """Mark each round's start: wraps ``fire_timers`` of ``hub`` (this thread's by default)."""
        hub = hub or hubs.get_hub()
        fire = hub.fire_timers

        def fire_timers(when):
            self.started = self.clock()
            fire(when)

        hub.fire_timers = fire_timers
        self._hub = hub

    def uninstall(self) -> None:
        if getattr(self, "_hub", None) is not None:
            del self._hub.fire_timers  # the class's own again
            self._hub, self.started = None, None

    def spent(self) -> bool:
        return self.started is not None and self.clock() - self.started >= self.budget

    def give_way(self, sleep) -> None:
        """A turn for every other green thread; more while this round's budget is spent or older work waits."""
        ticket = next(self._tickets)
        self._waiting.add(ticket)
        try:
            sleep(0)
            for _ in range(MAX_WAITS):
                if not self.spent() and min(self._waiting) == ticket:
                    return
                self.waited += 1
                sleep(0)
        finally:
            self._waiting.discard(ticket)


ROUNDS = Rounds()
