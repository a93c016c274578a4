"""The event loop's lag: how late a green thread is woken from a short sleep.

Everything in Canopy shares one eventlet hub (OpenFlow echo replies, OVSDB probes, HA heartbeats, REST,
programming). A stretch of work that does not yield holds all of them; the probe sees it as a sleep that
ends late. ``LagProbe.run(sleep)`` is the green thread's body: it sleeps ``interval`` seconds, again and
again, and records each overshoot. ``status()`` gives the latest sample and the largest one of the last
``window`` seconds (for ``/v1/status``); ``on_sample`` gets each sample (the Prometheus histogram).

A sample is taken only when the probe wakes, so a stall shows up once it is over (then as its whole
length); while the hub is held nothing, REST included, can answer anyway.

``cause`` (optional: the controller's stall watch, controller/stallwatch.py, or a ``LateSamples`` of
controller/lagcause.py) is told when each sleep begins and how late it ended: it splits the late interval into the
thread's CPU, its wait for a CPU and its time off CPU, and takes the loop's stack while a sleep is overdue.
"""

from __future__ import annotations

import collections
import time
from typing import Callable

INTERVAL = 0.1  # seconds between samples: a stall of any length is seen within this of its end
WINDOW = 60.0  # seconds the maximum is kept over


class LagProbe:
    """Samples the hub's lag (see the module docstring). Not thread-safe: one green thread records."""

    def __init__(self, interval: float = INTERVAL, window: float = WINDOW,
                 on_sample: Callable[[float], None] | None = None, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.window = window
        self.on_sample = on_sample
        self.clock = clock
        self.current = 0.0  # the latest sample, seconds
        self.samples = 0
        self.max_ever = 0.0
        self._peaks: collections.deque = collections.deque()  # (time, lag), lags strictly decreasing
        self.cause = None  # begin() before each sleep, end(lag) after it (controller/lagcause.py), or None

    def run(self, sleep: Callable[[float], None]) -> None:
        """Forever: sleep ``interval`` and record how much later than that the sleep ended."""
        while True:
            cause = self.cause
            if cause is not None:
                cause.begin()
            before = self.clock()
            sleep(self.interval)
            after = self.clock()
            lag = max(0.0, after - before - self.interval)
            if cause is not None:
                cause.end(lag)
            self.record(lag, now=after)

    def record(self, lag: float, now: float | None = None) -> None:
        """One sample, taken at ``now`` (default: the clock)."""
        now = self.clock() if now is None else now
        self.current, self.samples, self.max_ever = lag, self.samples + 1, max(self.max_ever, lag)
        peaks = self._peaks
        while peaks and peaks[-1][1] <= lag:  # a sliding-window maximum: older, smaller samples never win
            peaks.pop()
        peaks.append((now, lag))
        self._expire(now)
        if self.on_sample is not None:
            self.on_sample(lag)

    def max_recent(self, now: float | None = None) -> float:
        """The largest sample of the last ``window`` seconds (0 when there is none)."""
        self._expire(self.clock() if now is None else now)
        return self._peaks[0][1] if self._peaks else 0.0

    def _expire(self, now: float) -> None:
        while self._peaks and self._peaks[0][0] < now - self.window:
            self._peaks.popleft()

    def status(self) -> dict:
        """JSON-ready, in milliseconds: current (latest sample), max over the window, max since start; ``worst``:
        the longest sample split, from a cause that keeps one (controller/stallwatch.py)."""
        out = {"current_ms": round(self.current * 1000, 1), "max_1m_ms": round(self.max_recent() * 1000, 1),
               "max_ms": round(self.max_ever * 1000, 1), "interval_ms": round(self.interval * 1000, 1),
               "window_s": self.window, "samples": self.samples}
        worst = getattr(self.cause, "worst", None)
        if worst is not None:
            out["worst"] = worst
        return out
