"""Where the event loop was while it did not turn: the stall watch (``stall_report_ms``, docs/operations.md).

The lag probe (controller/lagprobe.py) sees a stall only once it is over, and its sample says how long, not where.
The stall watch is the probe's ``cause`` (``begin()`` before each of its sleeps, ``end(lag)`` after): an OS thread
of its own wakes when the probe's sleep would be overdue by half the report threshold and, if it is (the probe has
not begun another sleep since), takes the stack of the event loop's OS thread (``sys._current_frames()``: the green
thread running at that moment), then again every quarter of the threshold, up to ``MAX_STACKS`` per stall. When
the probe wakes ``report`` seconds late or later, the sample is split (controller/lagcause.py: the loop's CPU, its
wait for a CPU, its time off CPU, the collector's share) and logged with those stacks (controller/loglimit.py: at
most once per 10 s at each level, with a count of those left out; each watch counts apart): at info when the loop
waited for a CPU for at least ``MACHINE_SHARE`` of the lag (the machine's load: other processes had the CPUs), else
at warning (the controller's own: its work, a blocking call, or the GIL held by another of its threads); the
longest since the start stays in ``/v1/status`` (``event_loop_lag.worst``) with its stacks.

The OS thread only reads clocks and frames and appends to a list: it takes no Python lock (logging's included: the log
line is written by ``end()``, on the event loop) and touches nothing green (it waits on an OS thread's Event).
Cheap when nothing stalls: it wakes about once per probe interval (10 times a second), briefly takes the GIL and
compares two floats; no stack is walked. A stack is the loop's position when the watch got the GIL: a C call that
holds the GIL throughout (a full collection of the cyclic collector) ends before the watch can look, which is why
the split names the collector's CPU apart. ``report`` None (``stall_report_ms: 0``): no OS thread, and the split of
the worst sample only (``LateSamples`` alone). ``stop()`` (the controller's shutdown) ends the thread and the
watch: no look and no log after it returns.
"""

from __future__ import annotations

import itertools
import logging
import sys
import time

from controller.lagcause import LateSamples
from controller.loglimit import log_limited
from controller.osthread import os_threading

log = logging.getLogger("canopy.stall")

REPORT = 0.1  # seconds: the default threshold (``stall_report_ms``): issue 15's target for the loop's lag
MAX_STACKS = 8  # stacks kept per stall (the rest are counted)
DEPTH = 12  # frames per stack
MIN_WAIT = 0.001  # seconds: the shortest sleep of the watching thread
MACHINE_SHARE = 0.5  # a stall at least this share of whose lag the loop waited for a CPU is the machine's (info)
JOIN_WAIT = 1.0  # seconds ``stop()`` waits for the thread at most (it is told at once; a look takes microseconds)
_serial = itertools.count()  # each watch's own key for the log's limit (an id() is reused once its object is freed)


class StallWatch:
    """See the module docstring. ``probe``: the LagProbe (its ``interval``); ``late``: the sample splitter."""

    def __init__(self, probe, late: LateSamples, report: float | None = REPORT, frames=sys._current_frames,
                 clock=time.monotonic, logger=log):
        self.probe = probe
        self.late = late
        self.report = report
        self._frames, self._clock, self._log = frames, clock, logger
        self._log_key = ("stall", next(_serial))
        self._loop_thread = None  # the event loop's OS thread ident, from the first begin()
        self._watch = None  # (the time from which to take stacks, [stacks], [stacks not kept]) of the current sleep
        self._thread = None
        self._stopping = None  # the thread's stop signal (an OS thread's Event: the thread waits on it, not on the hub)
        self.stalls = 0  # samples of at least ``report``

    def start(self) -> None:
        """The watching OS thread (nothing when ``report`` is None)."""
        if self.report is None or self._thread is not None:
            return
        self._stopping = os_threading.Event()
        self._thread = os_threading.Thread(target=self._run, args=(self._stopping,), name="stall-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """The watch is off from now on: the thread ends (told at once, joined within ``JOIN_WAIT``), and no stall
        is looked at or logged after this returns (a shutdown that holds the loop says nothing more); the split of
        the samples still goes on (``worst``)."""
        self.report = None
        self._watch = None
        if self._thread is not None:
            self._stopping.set()
            self._thread.join(JOIN_WAIT)

    @property
    def worst(self) -> dict | None:
        """The longest lag sample since the start, split (with the stacks taken during it, if any)."""
        return self.late.worst

    # ------------------------------------------------------------------------------------- the probe's cause
    def begin(self) -> None:
        if self._loop_thread is None:
            self._loop_thread = os_threading.get_ident()
        self.late.begin()
        if self.report is not None:
            self._watch = (self._clock() + self.probe.interval + self.report / 2, [], [0])

    def end(self, lag: float) -> None:
        watch, self._watch = self._watch, None
        stalled = self.report is not None and lag >= self.report
        sample = self.late.end(lag, split_from=self.report if stalled else None)
        if sample is None or watch is None or not (stalled or watch[1]):
            return
        stacks, not_kept = list(watch[1]), watch[2][0]  # a copy: a look begun before this sleep ended may still add
        sample["stacks"], sample["stacks_not_kept"] = stacks, not_kept
        if stalled:
            self.stalls += 1
            own = sample["run_delay_ms"] < sample["lag_ms"] * MACHINE_SHARE
            log_limited(self._log, logging.WARNING if own else logging.INFO, (*self._log_key, own),
                        "the event loop did not turn for %.0f ms (its CPU %.1f ms, of which the collector %.1f; "
                        "waiting for a CPU %.1f ms; off CPU %.1f ms, of which past the probe's sleep %.1f: %s); "
                        "where it was:%s", sample["lag_ms"], sample["cpu_ms"], sample["collector_ms"],
                        sample["run_delay_ms"], sample["off_cpu_ms"], sample["off_cpu_late_ms"],
                        "the controller's own: its work, a blocking call or another thread's GIL" if own else
                        "mostly waiting for a CPU: the machine's load",
                        described(stacks, not_kept))

    # ------------------------------------------------------------------------------------- the OS thread
    def _run(self, stopping) -> None:
        while not stopping.is_set():
            try:
                wait = self.look()
            except Exception:  # noqa: BLE001 - a diagnostic must never end: the next look tries again
                wait = REPORT / 4
            stopping.wait(wait)  # an OS thread's wait (eventlet's sleep would wait on the hub it watches)

    def look(self) -> float:
        """One look (the OS thread's): the loop's stack if the probe's sleep is overdue by half of ``report``; the
        seconds until the next look: a quarter of ``report`` while overdue, else until the sleep would be."""
        watch = self._watch
        if watch is None or self.report is None:
            return REPORT / 4
        check = self.report / 4
        now = self._clock()
        if now < watch[0]:
            return max(watch[0] - now, MIN_WAIT)
        if len(watch[1]) >= MAX_STACKS:
            watch[2][0] += 1
            return check
        frame = self._frames().get(self._loop_thread)
        if frame is not None:
            from controller.stretchtrace import stack  # the tracer's formatting (its module imports greenlet)

            watch[1].append({"overdue_ms": round((now - watch[0]) * 1000 + self.report * 500, 1),
                             "stack": stack(frame, depth=DEPTH)})
        return check


def described(stacks: list[dict], not_kept: int = 0) -> str:
    """The stacks for the log, innermost frame first; a stack the same as the one before is not repeated."""
    runs: list = []  # [first overdue ms, stack, [overdue ms of the same stack again]]
    for taken in stacks:
        if runs and runs[-1][1] == taken["stack"]:
            runs[-1][2].append(taken["overdue_ms"])
        else:
            runs.append([taken["overdue_ms"], taken["stack"], []])
    text = "".join(f"\n  at {first:.0f} ms overdue" + (f" (the same at {', '.join(f'{ms:.0f}' for ms in same)} ms)"
                                                         if same else "") + ":" + "".join(f"\n    {f}" for f in frames)
                   for first, frames, same in runs)
    if not stacks:
        text = (" no stack taken (the loop held the GIL throughout, the stall was shorter than the watch's look, or the"
                " process did not run: stopped, e.g. SIGSTOP or a paused VM, the watch's thread with it)")
    return text + (f"\n  ({not_kept} more looks, their stacks not kept)" if not_kept else "")
