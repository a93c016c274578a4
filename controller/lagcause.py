"""Why a lag sample was late: what the event loop's OS thread and the others did over the late interval
(always on: cheap; with the stretch tracer, also its figures).

The lag probe (controller/lagprobe.py) measures wall clock: a sleep of 100 ms that ended 140 ms late. The stretch
tracer (controller/stretchtrace.py) measures the CPU of each turn of one green thread. When every traced stretch is
short and the lag is long, the wall-clock time went somewhere else, and the interval from the probe's sleep to its
wake-up says where, split four ways:

- ``cpu_ms``: the event loop's OS thread ran (Python, C, the collector): green threads' turns, all short maybe,
  but one after another. A sleeping green thread is woken only in the hub's next round of timers, after every
  green thread that was ready (``turns``) has had its turn, so the sum of a round's turns is the lag.
- ``run_delay_ms``: the thread was runnable and waited for a CPU (the kernel's ``schedstat``, its run-queue wait):
  other processes (or threads) had the cores.
- ``off_cpu_ms``: neither: the thread slept: the hub's idle poll (expected: the probe asked for ``interval`` of
  it), a blocking system call, or waiting for the GIL that another thread of the process held. ``others_cpu_ms``
  (the process's CPU minus this thread's) and ``threads`` (the busiest other threads by name) tell the GIL apart.
- ``off_cpu_late_ms``: of ``off_cpu_ms``, what cannot have been the probe's own sleep: the lag less the thread's
  CPU and wait over the whole interval (at least this long the thread was off CPU after the sleep fell due: a
  blocking call or another thread's GIL). A lower bound: 0 when the time off CPU can fit in the sleep (the hub's
  idle poll while the probe slept), which does not rule a block out: the loop's CPU and wait during the sleep count
  too (100 ms of work while the probe slept, then a 100 ms block: lag 100, CPU 100, so 0 past the sleep).
- ``collector_ms``: of ``cpu_ms``, what the cyclic garbage collector took (controller/collector.py, when its policy
  is installed: a collection holds the GIL, so no other thread, the stall watch included, runs meanwhile).
- ``longest_ms`` and ``turns``: the longest traced stretch of the interval and how many turns it held (the tracer's).
- ``at_s``: when the sample ended, in seconds from the start of tracing (the controller's start).

``LateSamples`` keeps the ``keep`` longest samples, each with that split; ``listed()`` is JSON-ready
(``GET /v1/stretches`` carries it as ``late_samples``), and ``worst`` (the longest since the start, never reset: the
``worst`` of ``/v1/status``'s ``event_loop_lag``). The controller always has one (controller/stallwatch.py), with
the stretch tracer's figures when that is on. A sample costs a few clock reads and one ``pread`` of this
thread's ``schedstat`` (some 10 microseconds every ``interval``, 100 ms). Each
thread's CPU (a ``/proc`` file per thread, some 30 in the controller: ~1 ms) is read only for the samples after one
in which the other threads used ``THREADS_FROM`` of CPU, so a busy thread is named from its second sample on.
"""

from __future__ import annotations

import heapq
import itertools
import os
import time

from controller import collector
from controller.osthread import os_os, os_threading

SCHEDSTAT = "/proc/thread-self/schedstat"  # on-CPU ns, run-queue wait ns, timeslices (Linux)
TASKS = "/proc/self/task"
TOP_THREADS = 3  # other threads named per sample
TOP_GREEN = 8  # groups of green threads named per sample
THREADS_FROM = 0.005  # other threads' CPU in a sample from which the next samples name the busiest threads


class Schedstat:
    """(seconds on a CPU, seconds runnable and waiting on a run queue) of the thread that first calls it, since it
    started ((0.0, 0.0) where the kernel does not say). The file is opened once and read again from its start: a
    reading costs one system call."""

    def __init__(self, path: str = SCHEDSTAT):
        self.path = path
        self._fd = None

    def __call__(self) -> tuple[float, float]:
        try:
            if self._fd is None:
                self._fd = os_os.open(self.path, os_os.O_RDONLY)  # /proc/thread-self: this thread's, kept
            on_cpu, waited = os_os.pread(self._fd, 128, 0).split()[:2]
            return int(on_cpu) / 1e9, int(waited) / 1e9
        except (OSError, ValueError):
            return 0.0, 0.0

    def run_delay(self) -> float:
        return self()[1]


def threads_cpu(tasks: str = TASKS) -> dict[int, float]:
    """{native thread id: CPU seconds} of every thread of this process (schedstat's on-CPU time)."""
    cpu = {}
    try:
        names = os.listdir(tasks)
    except OSError:
        return cpu
    for name in names:
        try:
            with open(f"{tasks}/{name}/schedstat", "rb") as handle:
                cpu[int(name)] = int(handle.read().split()[0]) / 1e9
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile
    return cpu


def thread_names() -> dict[int, str]:
    """{native thread id: name} of the threads Python knows (the OS threads eventlet did not patch)."""
    return {t.native_id: t.name for t in os_threading.enumerate() if t.native_id is not None}


class LateSamples:
    """See the module docstring. ``begin()`` before the probe's sleep, ``end(lag)`` after it, both in the event
    loop's OS thread; ``tracer``: the stretch tracer (its ``switches`` and ``window_longest``), or None."""

    def __init__(self, keep: int, tracer=None, wall=time.monotonic, cpu=time.thread_time,
                 process=time.process_time, delay=None, per_thread=threads_cpu, names=thread_names,
                 collected=lambda: collector.WATCH.total):
        self.keep = keep
        self.tracer = tracer
        self._wall, self._cpu, self._process, self._delay = wall, cpu, process, delay or Schedstat().run_delay
        self._per_thread, self._names, self._collected = per_thread, names, collected
        self._kept: list = []  # a min-heap of (lag, order, sample dict)
        self._order = itertools.count()
        self._started = wall()  # samples say when they ended from here on (``at_s``): the start of tracing
        self._begun = None
        self._name_threads = False  # the last sample's other threads used THREADS_FROM: read each thread's CPU
        self.samples = 0
        self.worst: dict | None = None  # the longest sample since the start (``reset`` keeps it)

    def begin(self) -> None:
        tracer = self.tracer
        if tracer is not None:
            tracer.window_longest = 0.0
            tracer.window = {}
        threads = self._per_thread() if self._name_threads else None
        self._begun = (self._wall(), self._cpu(), self._process(), self._delay(), threads,
                       tracer.turns if tracer is not None else 0, self._collected())

    def end(self, lag: float, split_from: float | None = None) -> dict | None:
        """The sample just taken (seconds late): split and kept when it is among the ``keep`` longest (or the
        longest since the start: ``worst``); also split, not kept, when at least ``split_from`` seconds. The split
        (a dict, kept by reference: a caller may add to it), or None when it was not made."""
        if self._begun is None:
            return None
        self.samples += 1
        wall0, cpu0, process0, delay0, threads0, turns0, collected0 = self._begun
        self._begun = None
        cpu, process = self._cpu() - cpu0, self._process() - process0
        self._name_threads = process - cpu >= THREADS_FROM
        kept = len(self._kept) < self.keep or lag > self._kept[0][0]
        worst = self.worst is None or lag * 1000 > self.worst["lag_ms"]
        if not kept and not worst and (split_from is None or lag < split_from):
            return None
        now = self._wall()
        wall, delay = now - wall0, self._delay() - delay0
        sample = {"lag_ms": _ms(lag), "wall_ms": _ms(wall), "cpu_ms": _ms(cpu), "run_delay_ms": _ms(delay),
                  "off_cpu_ms": _ms(max(0.0, wall - cpu - delay)), "off_cpu_late_ms": _ms(max(0.0, lag - cpu - delay)),
                  "others_cpu_ms": _ms(max(0.0, process - cpu)),
                  "collector_ms": _ms(self._collected() - collected0),
                  "ended": round(time.time(), 3), "at_s": round(now - self._started, 2),
                  "threads": self._busiest(threads0) if threads0 is not None else []}
        if self.tracer is not None:
            sample.update(turns=self.tracer.turns - turns0, longest_ms=_ms(self.tracer.window_longest),
                          green_threads=green_threads(self.tracer))
        if worst:
            self.worst = sample
        if kept:
            entry = (lag, next(self._order), sample)
            if len(self._kept) < self.keep:
                heapq.heappush(self._kept, entry)
            else:
                heapq.heapreplace(self._kept, entry)
        return sample

    def _busiest(self, before: dict[int, float]) -> list[dict]:
        """The other threads that used the most CPU since ``before`` (the event loop's own thread left out)."""
        own = os_threading.get_native_id()
        after, names = self._per_thread(), self._names()
        used = sorted(((after[tid] - before.get(tid, 0.0), tid) for tid in after if tid != own), reverse=True)
        return [{"thread": names.get(tid, f"tid {tid}"), "cpu_ms": _ms(seconds)}
                for seconds, tid in used[:TOP_THREADS] if seconds >= 0.0005]

    def listed(self) -> list[dict]:
        """The kept samples, longest first (JSON-ready)."""
        return [sample for _, _, sample in sorted(self._kept, key=lambda entry: entry[:2], reverse=True)]

    def reset(self) -> None:
        self._kept, self.samples = [], 0


def green_threads(tracer, top: int = TOP_GREEN) -> list[dict]:
    """The green threads whose turns filled the tracer's window (the probe's interval), grouped by the function
    each began with (``root``): how many threads, turns and CPU ms, busiest first, and where the busiest thread of
    each group is now (its pause: what it is doing)."""
    from controller.stretchtrace import stack

    groups: dict[str, list] = {}
    for thread, (turns, seconds) in (tracer.window or {}).items():
        group = groups.setdefault(tracer.root(thread), [0, 0, 0.0, None, -1.0])
        group[0] += 1
        group[1] += turns
        group[2] += seconds
        if seconds > group[4]:
            group[3], group[4] = thread, seconds
    busiest = sorted(groups.items(), key=lambda item: item[1][2], reverse=True)[:top]
    return [{"root": root, "threads": threads, "turns": turns, "cpu_ms": _ms(seconds),
             "now": stack(thread.gr_frame, depth=4) if getattr(thread, "gr_frame", None) is not None else []}
            for root, (threads, turns, seconds, thread, _) in busiest]


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)
