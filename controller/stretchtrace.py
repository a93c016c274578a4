"""The longest stretches of the controller's own work between two turns of the event loop (opt-in diagnostics).

The lag probe (controller/lagprobe.py) says how late the event loop woke, in wall-clock time: on a loaded machine
that is mostly time the process waited for a CPU, and it does not say which work held the loop. This tracer does:
``greenlet.settrace`` calls it at every switch between green threads of the event loop's OS thread, and it takes
the OS thread's CPU time (``time.thread_time()``, independent of the machine's load and of other OS threads) since
the previous switch: one green thread's run, i.e. how long it held everything else. It keeps the ``keep`` longest
with where they ran: the stack of the green thread where its run ended (where it paused, waited or finished), and,
while it ran, a stack sampled every ``SAMPLE_INTERVAL`` seconds by an OS thread of its own (the work that took the
time, even when the run ended somewhere else).

Off unless ``CANOPY_STRETCH_TRACE`` is set to the number of stretches to keep (docs/operations.md): then
``GET /v1/stretches`` lists them and ``DELETE /v1/stretches`` starts over (a benchmark's bursts one by one), and
the controller logs them when it stops. Off, nothing is installed, so it costs nothing. On, each switch costs one
CPU-clock read (about a microsecond) and a stack is only walked for a stretch that enters the list; memory is
bounded (``keep`` stretches, ``MAX_SAMPLES`` stacks sampled per stretch). With the collector's policy installed
(controller/collector.py), each stretch also says how much of its CPU the cyclic collector took (``collector_ms``),
and the list carries the longest collections since the last reset, with where they ran (``collections``).

Each stretch also has its wall-clock length (``wall_ms``). A green thread's stretch whose wall clock is far above
its CPU waited inside its turn (for a CPU, for the GIL another thread held, or in a blocking system call): the
``OFF_KEEP`` longest such waits are listed apart (``off_cpu``; the hub's own turns, whose idle poll is expected
wall clock, are left out). The lag probe's latest samples, split into CPU, run-queue wait and time off CPU
(controller/lagcause.py), come with them as ``late_samples``.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import os
import sys
import sysconfig
import time
import weakref
from pathlib import Path

import greenlet
from eventlet import hubs, patcher

from controller import collector
from controller.osthread import os_threading

os_time = patcher.original("time")  # the sampler's sleep: eventlet's would wait on the hub it samples

ENV = "CANOPY_STRETCH_TRACE"  # the number of longest stretches kept; unset, empty or 0: off
MAX_KEEP = 1000
SAMPLE_INTERVAL = 0.005  # seconds (wall) between two stack samples of the event loop's thread
STACK_DEPTH = 10  # frames kept per stack, innermost first
MAX_SAMPLES = 1000  # stacks kept per stretch (5 s of sampling): a loop held for minutes does not grow the list
MIN_SECONDS = 0.001  # shorter stretches are never kept: the list is for what holds the loop
OFF_KEEP = 5  # green threads' stretches kept by their wall clock beyond their CPU
MIN_OFF_SECONDS = 0.005  # a shorter wait inside a turn is not listed
LATE_KEEP = 8  # the lag probe's longest samples kept with their split (controller/lagcause.py)
ROOT = str(Path(__file__).resolve().parent.parent) + os.sep
LIBRARIES = ("site-packages" + os.sep, sysconfig.get_paths()["stdlib"] + os.sep)
SKIPPED = (os.sep + "eventlet" + os.sep, os.sep + "greenlet" + os.sep, os.sep + "ryu" + os.sep + "lib" + os.sep
           + "hub.py", __file__)  # the switching machinery itself: the same in every stack


class StretchTraceError(ValueError):
    """``CANOPY_STRETCH_TRACE`` holds something that is not a count."""


def from_environment(environ=os.environ) -> "StretchTracer | None":
    """A tracer keeping ``CANOPY_STRETCH_TRACE`` stretches, or None when it is unset, empty or 0."""
    raw = environ.get(ENV, "").strip()
    if raw in ("", "0"):
        return None
    try:
        keep = int(raw)
    except ValueError:
        keep = -1
    if not 1 <= keep <= MAX_KEEP:
        raise StretchTraceError(f"{ENV}: must be the number of stretches to keep, 0 to {MAX_KEEP}, not {raw!r}")
    return StretchTracer(keep)


class StretchTracer:
    """See the module docstring. ``start()`` in the event loop's OS thread; ``stretches()`` from anywhere in it."""

    def __init__(self, keep: int, sample_interval: float | None = SAMPLE_INTERVAL, clock=time.thread_time,
                 wall=time.perf_counter):
        self.keep = keep
        self.sample_interval = sample_interval
        self.clock = clock
        self.wall = wall
        self.switches = 0  # since the last reset
        self.turns = 0  # since the start, never reset: lagcause counts an interval's turns across a reset
        self.window: dict | None = None  # {green thread: [turns, CPU seconds]} of the lag probe's interval
        self._roots = weakref.WeakKeyDictionary()  # green thread -> where it began (``root_of``)
        self.total = 0.0  # CPU seconds of every traced stretch since the last reset
        self.window_longest = 0.0  # the longest stretch since the lag probe's last sleep began (lagcause)
        self.late = None  # controller/lagcause.py LateSamples, listed with the stretches
        self._kept: list = []  # a min-heap of (seconds, order, stretch dict)
        self._off: list = []  # a min-heap of (wall - CPU seconds, order, stretch dict) of green threads' stretches
        self._wall_since = 0.0
        self._hub = None  # the hub's greenlet: its turns include the idle poll
        self._order = itertools.count()
        self._since = 0.0
        self._collector_since = 0.0  # collector.WATCH.total at the start of the running stretch
        self._samples: list = []  # stacks sampled during the running stretch (appended by the sampler thread)
        self._previous = None
        self._thread_id = None
        self._sampler = None
        self._running = False

    # -------------------------------------------------------------------------------------------- on and off
    def start(self) -> None:
        """Trace this OS thread's green-thread switches (and sample its stacks) until ``stop()``."""
        if self._running:
            return
        self._running = True
        self._thread_id = os_threading.get_ident()
        self._hub = hubs.get_hub().greenlet
        self._previous = greenlet.settrace(self._switched)
        self._since, self._wall_since = self.clock(), self.wall()
        self._collector_since = collector.WATCH.total
        if self.sample_interval:
            self._sampler = os_threading.Thread(target=self._sample, name="stretch-sampler", daemon=True)
            self._sampler.start()

    def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        greenlet.settrace(self._previous)
        if self._sampler is not None:
            self._sampler.join(1.0)

    def reset(self) -> None:
        """Forget what was kept (a benchmark's next burst)."""
        self._kept, self._off, self.switches, self.total = [], [], 0, 0.0
        collector.WATCH.reset_longest()
        if self.late is not None:
            self.late.reset()

    # -------------------------------------------------------------------------------------------- tracing
    def _switched(self, event, args) -> None:
        now, wall = self.clock(), self.wall()
        seconds, waited = now - self._since, wall - self._wall_since
        samples, self._samples = self._samples, []
        collected = collector.WATCH.total - self._collector_since
        self.switches += 1
        self.turns += 1
        self.total += seconds
        self.window_longest = max(self.window_longest, seconds)
        origin = args[0] if args else None
        if self.window is not None and origin is not None:
            self._count(origin, seconds)
        if seconds >= MIN_SECONDS and (len(self._kept) < self.keep or seconds > self._kept[0][0]):
            self._record(self._kept, self.keep, seconds, seconds, waited, origin, samples, collected)
        off = waited - seconds
        if off >= MIN_OFF_SECONDS and origin is not self._hub and (len(self._off) < OFF_KEEP or off > self._off[0][0]):
            self._record(self._off, OFF_KEEP, off, seconds, waited, origin, samples, collected)
        if self._previous is not None:
            self._previous(event, args)
        self._collector_since = collector.WATCH.total
        self._since, self._wall_since = self.clock(), self.wall()  # the tracer's own work is nobody's stretch

    def _count(self, origin, seconds: float) -> None:
        """One turn of ``origin`` in the lag probe's interval; its root is named the first time it is seen."""
        entry = self.window.get(origin)
        if entry is not None:
            entry[0] += 1
            entry[1] += seconds
            return
        self.window[origin] = [1, seconds]
        if origin not in self._roots:
            self._roots[origin] = root_of(origin, origin is self._hub)

    def root(self, thread) -> str:
        """Where green thread ``thread`` began (``root_of``, as first seen)."""
        return self._roots.get(thread) or root_of(thread, thread is self._hub)

    def _record(self, kept: list, keep: int, key: float, seconds: float, waited: float, origin, samples: list,
                collected: float = 0.0) -> None:
        """Keeps the stretch in ``kept`` (a min-heap of at most ``keep`` by ``key``)."""
        stretch = {"cpu_ms": round(seconds * 1000, 2), "wall_ms": round(waited * 1000, 2),
                   "collector_ms": round(collected * 1000, 2),
                   "ended": round(time.time(), 3),
                   "ended_in": _ended_in(origin),
                   "samples": len(samples),
                   "sampled": [{"count": n, "stack": list(where)}
                               for where, n in collections.Counter(samples).most_common(3)]}
        entry = (key, next(self._order), stretch)
        if len(kept) < keep:
            heapq.heappush(kept, entry)
        else:
            heapq.heapreplace(kept, entry)

    def _sample(self) -> None:
        """The sampler's OS thread: the event loop thread's stack every ``sample_interval``."""
        while self._running:
            os_time.sleep(self.sample_interval)  # not eventlet's: this is an OS thread
            if len(self._samples) >= MAX_SAMPLES:  # the first ones of a very long stretch are enough
                continue
            frame = sys._current_frames().get(self._thread_id)
            if frame is not None:
                self._samples.append(tuple(stack(frame, lines=False)))  # counted by function, not by line

    # -------------------------------------------------------------------------------------------- reading
    def stretches(self) -> dict:
        """JSON-ready: the kept stretches, longest first, and totals since the last reset."""
        listed = {"keep": self.keep, "switches": self.switches, "cpu_ms": round(self.total * 1000, 1),
                  "min_ms": MIN_SECONDS * 1000, "sample_interval_ms": (self.sample_interval or 0) * 1000,
                  "stretches": _longest_first(self._kept), "off_cpu": _longest_first(self._off)}
        if self.late is not None:
            listed["late_samples"] = self.late.listed()
        if collector.WATCH.installed:
            listed["collections"] = collector.WATCH.longest()
        return listed

    def summary(self, count: int = 5) -> str:
        """One line per stretch of the ``count`` longest (the log at stop)."""
        return "\n".join(f"  {s['cpu_ms']:.1f} ms CPU, ended in {' < '.join(s['ended_in'][:3])}"
                         for s in self.stretches()["stretches"][:count])


def _longest_first(kept: list) -> list[dict]:
    return [stretch for _, _, stretch in sorted(kept, key=lambda entry: entry[:2], reverse=True)]


def stack(frame, depth: int = STACK_DEPTH, lines: bool = True) -> list[str]:
    """``file:line function`` (``file function`` without ``lines``) of up to ``depth`` frames from ``frame``
    outwards, the switching machinery left out; files of this project relative to its root."""
    out = []
    while frame is not None and len(out) < depth:
        path = frame.f_code.co_filename
        if not any(part in path for part in SKIPPED):
            where = path[len(ROOT):] if path.startswith(ROOT) else _short(path)
            out.append(f"{where}:{frame.f_lineno} {frame.f_code.co_name}" if lines else
                       f"{where} {frame.f_code.co_name}")
        frame = frame.f_back
    return out


def _short(path: str) -> str:
    """A library's file from its package on (``.../site-packages/ovs/db/idl.py`` -> ``ovs/db/idl.py``, the standard
    library's ``.../lib/python3.11/json/decoder.py`` -> ``json/decoder.py``)."""
    for marker in LIBRARIES:
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def root_of(thread, is_hub: bool = False) -> str:
    """The function a green thread was started with (its outermost frame but the switching machinery's): what
    names it among the hundreds that run in one round of the hub (an OVSDB session, a switch's connection, a
    reconciler, the programming loop)."""
    if is_hub:
        return "(the hub: its timers, polling and callbacks)"
    frame = getattr(thread, "gr_frame", None)
    if frame is None:
        return "(a green thread that began and ended in one turn)"
    outermost = None
    while frame is not None:
        if not any(part in frame.f_code.co_filename for part in SKIPPED):
            outermost = frame
        frame = frame.f_back
    return stack(outermost, depth=1, lines=False)[0] if outermost is not None else "(the switching machinery)"


def _ended_in(origin) -> list[str]:
    """Where the green thread that ran the stretch stopped running."""
    frame = getattr(origin, "gr_frame", None)
    if frame is None:
        return ["(a green thread that ended)"]
    return stack(frame) or ["(the hub: its timers, polling and callbacks)"]


def routes(tracer: "StretchTracer | None") -> list:
    """``GET /v1/stretches`` and ``DELETE /v1/stretches`` while tracing is on; none while off."""
    if tracer is None:
        return []
    from controller.rest.wire import Response, Route

    def listed(req):
        return Response(200, tracer.stretches())

    def reset(req):
        tracer.reset()
        return Response(200, tracer.stretches())

    return [Route("GET", "/v1/stretches", listed, f"the longest stretches of CPU between two turns of the event "
                  f"loop, with where they ran ({ENV} set)"),
            Route("DELETE", "/v1/stretches", reset, "forget the stretches kept so far", write=True,
                  local=True)]
