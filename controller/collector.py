"""The cyclic garbage collector's policy: no collection walks the whole heap while the controller works.

CPython's collector is generational: a young collection walks the objects allocated since the last one, a full
(generation 2) one walks every object it tracks, in one stretch of C that holds the GIL and so the event loop (about
0.1 µs per object here: a 500-850 MB controller tracks millions of objects, 100-500 ms, wherever an allocation
happens to trigger it). A full collection comes once the objects promoted to generation 2 since the last one exceed
a quarter of what that one walked, so while long-lived state grows (read-backs, a big report, a compile) each walks
everything again, a little more each time.

The policy (``install()``, by the controller at start):

- **Freeze after every full collection.** What survived it is long-lived: ``gc.freeze()`` (from the collection's
  ``stop`` callback) moves it out of the collector's sight (still freed by reference counting). The next full
  collection walks only what came since, and since the threshold follows what the last one walked, full
  collections stay small (tens of thousands of objects) however big the heap grows.
- **Freeze after any long collection.** A young collection is short while the young generation is small, but
  freeing old objects lowers the collector's count as much as allocating new ones raises it, so while a big
  structure is replaced (read-backs, a report) the young generation can grow far past its threshold unseen; the
  collection that finally runs walks all of it, and the survivors would be walked again by the next two
  generations' collections. Any collection of at least ``FREEZE_AFTER`` seconds of CPU is followed by a freeze.
- **Freeze what a paused region leaves.** ``controller.pacer.collector_paused`` regions (a compile, an OVSDB update,
  a plan) hold the collector off; the objects they leave young are frozen when the regions took ``FREEZE_SPAN`` of
  CPU or the count says ``FREEZE_YOUNG`` are left, instead of being walked in one young collection
  (controller/pacer.py), and a full compile's result is frozen whatever its size.
- **Refresh at a quiet moment.** Frozen objects that die are freed by reference counting, but cyclic garbage among
  them is not (a frozen cycle is never walked). ``refresh()`` unfreezes everything, runs one full collection (which
  walks the whole heap once: the only long collection left, once per ``REFRESH_EVERY`` at most, when ``quiet()`` says no
  work is under way) and freezes the survivors again; a second, empty collection makes the threshold follow what
  is left unfrozen (nothing) instead of the whole heap.

``Collections`` measures every collection (``gc.callbacks``): per generation how many, their CPU seconds, the
longest; ``/metrics`` exports them and the stretch tracer lists the longest with where they ran.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import logging
import sys
import time

from controller.osthread import os_threading

log = logging.getLogger("canopy.collector")

GENERATIONS = 3
FULL = GENERATIONS - 1
FREEZE_AFTER = 0.005  # CPU seconds: a collection at least this long is followed by a freeze, whatever its generation
KEEP = 10  # longest collections kept (with where they ran) since the last reset
MIN_SECONDS = 0.001  # shorter collections are counted, never kept in the longest list
REFRESH_EVERY = 3600.0  # seconds between two refreshes, at least
REFRESH_CHECK = 30.0  # seconds between two looks for a quiet moment once a refresh is due


class Collections:
    """Counts every collection by generation, with its CPU time (``clock``), and applies the freeze after every
    full collection (module docstring). Its callback runs inside the collector: it takes no lock and calls nothing
    that could (a scrape may hold prometheus_client's lock where an allocation triggers a collection)."""

    def __init__(self, clock=time.thread_time, keep: int = KEEP, freeze_after_full: bool = True,
                 freeze_after: float | None = FREEZE_AFTER):
        self.clock = clock
        self.keep = keep
        self.freeze_after_full = freeze_after_full
        self.freeze_after = freeze_after  # None: only after full collections
        self.count = [0] * GENERATIONS
        self.seconds = [0.0] * GENERATIONS
        self.max_seconds = [0.0] * GENERATIONS
        self.collected = [0] * GENERATIONS  # unreachable objects found (cyclic garbage freed)
        self.total = 0.0  # CPU seconds of every collection (the stretch tracer reads it per stretch)
        self.freezes = 0  # freezes after a collection
        self.refreshes = 0
        self.last_refresh: dict | None = None  # frozen before, collected, CPU seconds of the latest refresh
        self._longest: list = []  # a min-heap of (seconds, order, collection dict)
        self._order = itertools.count()
        self._started = None
        self._installed = False
        self._stack = None

    # -------------------------------------------------------------------------------------------- on and off
    @property
    def installed(self) -> bool:
        return self._installed

    def install(self) -> None:
        if not self._installed:
            from controller.stretchtrace import stack  # the tracer's module reads this one's totals

            self._stack = stack
            gc.callbacks.append(self._callback)
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            gc.callbacks.remove(self._callback)
            self._installed = False

    # -------------------------------------------------------------------------------------------- the callback
    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = self.clock()
            return
        if self._started is None:  # installed during a collection
            return
        seconds, self._started = self.clock() - self._started, None
        generation = info["generation"]
        self.count[generation] += 1
        self.seconds[generation] += seconds
        self.total += seconds
        self.collected[generation] += info["collected"]
        if seconds > self.max_seconds[generation]:
            self.max_seconds[generation] = seconds
        if seconds >= MIN_SECONDS and (len(self._longest) < self.keep or seconds > self._longest[0][0]):
            self._record(seconds, generation, info["collected"])
        if self.freeze_after_full and (generation == FULL or (self.freeze_after is not None
                                                              and seconds >= self.freeze_after)):
            gc.freeze()  # the lists are settled at "stop": this only moves them to the permanent generation
            self.freezes += 1

    def _record(self, seconds: float, generation: int, collected: int) -> None:
        entry = (seconds, next(self._order), {"cpu_ms": round(seconds * 1000, 2), "generation": generation,
                                              "collected": collected, "ended": round(time.time(), 3),
                                              "thread": os_threading.current_thread().name,
                                              "where": self._where()})
        if len(self._longest) < self.keep:
            heapq.heappush(self._longest, entry)
        else:
            heapq.heapreplace(self._longest, entry)

    def _where(self) -> list[str]:
        """The stack of the code whose allocation triggered the collection (none when C code did: at exit)."""
        try:
            return self._stack(sys._getframe(3))  # _where < _record < _callback < the code
        except ValueError:
            return []

    # -------------------------------------------------------------------------------------------- reading
    def longest(self) -> list[dict]:
        """The longest collections since the last ``reset_longest()``, longest first."""
        return [c for _, _, c in sorted(self._longest, key=lambda e: e[:2], reverse=True)]

    def reset_longest(self) -> None:
        self._longest = []

    def figures(self) -> list[dict]:
        """Per generation: collections, CPU seconds in all, the longest, objects collected (``/metrics``)."""
        return [{"generation": g, "collections": self.count[g], "seconds": self.seconds[g],
                 "max_seconds": self.max_seconds[g], "collected": self.collected[g]} for g in range(GENERATIONS)]

    # -------------------------------------------------------------------------------------------- refreshing
    def refresh(self) -> dict:
        """Unfreeze, collect everything once, freeze what survives (module docstring): frozen cyclic garbage is
        freed. One long stretch (the whole heap walked): call it only where nothing waits (``Refresher``)."""
        started = self.clock()
        frozen = gc.get_freeze_count()
        gc.unfreeze()
        collected = gc.collect()
        if not self.freeze_after_full or not self._installed:
            gc.freeze()
        gc.collect()  # walks nothing: the next full collection's threshold follows what is unfrozen, not the heap
        self.refreshes += 1
        self.last_refresh = {"frozen_before": frozen, "collected": collected,
                             "cpu_seconds": round(self.clock() - started, 4), "ended": round(time.time(), 3)}
        log.info("collector refreshed: %(frozen_before)d objects were frozen, %(collected)d unreachable freed, "
                 "%(cpu_seconds).3f s of CPU", self.last_refresh)
        return self.last_refresh


WATCH = Collections()  # the controller's (``install``); tests build their own


def install() -> Collections:
    """The controller's policy on: every collection measured, survivors of a full collection frozen."""
    WATCH.install()
    return WATCH


class Refresher:
    """A green thread's loop: ``refresh()`` once ``every`` seconds have passed since the last one and ``quiet()``
    says no work is under way (looked at every ``check`` seconds); bounded by ``rounds`` for tests."""

    def __init__(self, collections: Collections, quiet, sleep, every: float = REFRESH_EVERY,
                 check: float = REFRESH_CHECK, clock=time.monotonic):
        self.collections = collections
        self.quiet = quiet
        self.sleep = sleep
        self.every = every
        self.check = check
        self.clock = clock
        self._since = clock()

    def due(self) -> bool:
        return self.clock() - self._since >= self.every

    def step(self) -> bool:
        """One look: refresh if due and quiet; whether it did."""
        if not self.due() or not self.quiet():
            return False
        try:
            self.collections.refresh()
        finally:
            self._since = self.clock()
        return True

    def run(self, rounds: int | None = None) -> None:
        for _ in itertools.count() if rounds is None else range(rounds):
            self.sleep(self.check)
            try:
                self.step()
            except Exception:  # a bug here must not end the thread: the next look tries again
                log.exception("refreshing the collector failed")
