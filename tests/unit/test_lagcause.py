"""Why a lag sample was late (controller/lagcause.py): the late interval split into the event loop thread's CPU,
its wait for a CPU, its time off CPU and the other threads' CPU, for the longest samples only."""

import eventlet

from controller import lagcause
from controller.lagcause import LateSamples
from controller.lagprobe import LagProbe
from controller.osthread import os_threading
from controller.stretchtrace import StretchTracer


class Clocks:
    """Fake clocks the test moves: wall, this thread's CPU, the process's CPU, run-queue wait, per-thread CPU."""

    def __init__(self):
        self.wall = self.cpu = self.process = self.delay = self.collected = 0.0
        self.threads = {1: 0.0, 2: 0.0}

    def advance(self, wall=0.0, cpu=0.0, delay=0.0, others=None):
        self.wall += wall
        self.cpu += cpu
        self.delay += delay
        self.process += cpu + sum((others or {}).values())
        for tid, seconds in (others or {}).items():
            self.threads[tid] += seconds

    def samples(self, keep=3, tracer=None):
        return LateSamples(keep, tracer, wall=lambda: self.wall, cpu=lambda: self.cpu,
                           process=lambda: self.process, delay=lambda: self.delay,
                           per_thread=lambda: dict(self.threads), names=lambda: {1: "ha-heartbeat", 2: "tpool"},
                           collected=lambda: self.collected)


def test_a_late_interval_is_split_into_cpu_wait_off_cpu_and_other_threads():
    clocks = Clocks()
    late = clocks.samples()
    late.begin()
    clocks.advance(wall=0.25, cpu=0.08, delay=0.12, others={2: 0.03})
    late.end(0.15)
    (sample,) = late.listed()
    assert sample["lag_ms"] == 150.0 and sample["wall_ms"] == 250.0
    assert sample["cpu_ms"] == 80.0 and sample["run_delay_ms"] == 120.0 and sample["off_cpu_ms"] == 50.0
    assert sample["others_cpu_ms"] == 30.0 and sample["threads"] == []  # not read yet: nothing hinted at them
    assert sample["at_s"] == 0.25


def test_off_cpu_within_the_probes_own_sleep_is_not_counted_as_past_it():
    """evpn_routes (stop 35): 124 ms late, 24 ms of the loop's CPU, 140 waiting for a CPU, 60 off CPU with the loop's
    stack in a REST read: the 60 ms fit in the probe's 100 ms sleep (the hub's idle poll), nothing blocked after."""
    clocks = Clocks()
    late = clocks.samples()
    late.begin()
    clocks.advance(wall=0.224, cpu=0.024, delay=0.14)
    late.end(0.124)
    (sample,) = late.listed()
    assert sample["off_cpu_ms"] == 60.0 and sample["off_cpu_late_ms"] == 0.0


def test_off_cpu_the_sleep_cannot_hold_is_counted_as_past_it():
    """A blocking call of 140 ms after the sleep fell due: the lag less the loop's CPU and wait."""
    clocks = Clocks()
    late = clocks.samples()
    late.begin()
    clocks.advance(wall=0.25, cpu=0.01)
    late.end(0.15)
    (sample,) = late.listed()
    assert sample["off_cpu_ms"] == 240.0 and sample["off_cpu_late_ms"] == 140.0


def test_the_busiest_other_threads_are_named_from_the_sample_after_one_where_they_ran():
    clocks = Clocks()
    late = clocks.samples(keep=4)
    for lag, others in ((0.1, {2: 0.03}), (0.2, {1: 0.001, 2: 0.04}), (0.3, {1: 0.002}), (0.4, {1: 0.003})):
        late.begin()
        clocks.advance(wall=0.1 + lag, cpu=0.01, others=others)
        late.end(lag)
    fourth, third, second, first = late.listed()
    assert first["threads"] == [] and fourth["threads"] == []  # the third's others used 2 ms: not looked at next
    assert second["threads"] == [{"thread": "tpool", "cpu_ms": 40.0}, {"thread": "ha-heartbeat", "cpu_ms": 1.0}]
    assert third["threads"] == [{"thread": "ha-heartbeat", "cpu_ms": 2.0}]


def test_only_the_longest_samples_are_kept_longest_first():
    clocks = Clocks()
    late = clocks.samples(keep=2)
    for lag in (0.01, 0.3, 0.02, 0.2, 0.05):
        late.begin()
        clocks.advance(wall=0.1 + lag, cpu=lag)
        late.end(lag)
    assert [s["lag_ms"] for s in late.listed()] == [300.0, 200.0] and late.samples == 5
    late.reset()
    assert late.listed() == []


def test_the_collectors_share_of_the_loops_cpu_is_named():
    clocks = Clocks()
    late = clocks.samples()
    late.begin()
    clocks.advance(wall=0.3, cpu=0.2)
    clocks.collected += 0.15  # a collection of 150 ms inside the interval (controller/collector.py's total)
    late.end(0.2)
    assert late.listed()[0]["collector_ms"] == 150.0 and late.listed()[0]["cpu_ms"] == 200.0


def test_the_worst_sample_since_the_start_outlives_a_reset_and_a_long_one_is_split_beyond_keep():
    clocks = Clocks()
    late = clocks.samples(keep=1)
    made = []
    for lag in (0.3, 0.2, 0.01):
        late.begin()
        clocks.advance(wall=0.1 + lag, cpu=lag)
        made.append(late.end(lag, split_from=0.1))
    assert made[0]["lag_ms"] == 300.0 and made[1]["lag_ms"] == 200.0  # not kept (keep=1), split all the same
    assert made[2] is None  # short, not kept: not split at all (the common case costs nothing more)
    late.reset()  # a benchmark's next step (DELETE /v1/stretches)
    assert late.listed() == [] and late.worst["lag_ms"] == 300.0


def test_the_tracer_says_how_many_turns_and_the_longest_of_the_interval():
    class Tracer:
        turns, window_longest, window = 10, 0.5, None

    clocks, tracer = Clocks(), Tracer()
    late = clocks.samples(tracer=tracer)
    late.begin()
    assert tracer.window_longest == 0.0  # begun anew with each sleep
    tracer.turns, tracer.window_longest = 52, 0.012
    clocks.advance(wall=0.2, cpu=0.2)
    late.end(0.1)
    (sample,) = late.listed()
    assert sample["turns"] == 42 and sample["longest_ms"] == 12.0 and sample["green_threads"] == []


def test_the_probe_tells_its_cause_each_sleep_and_lag():
    now, calls = [0.0], []

    class Cause:
        def begin(self):
            calls.append("begin")

        def end(self, lag):
            calls.append(round(lag, 3))

    probe = LagProbe(interval=0.1, clock=lambda: now[0])
    probe.cause = Cause()
    stalls = iter([0.0, 0.4])

    def sleep(seconds):
        try:
            now[0] += seconds + next(stalls)
        except StopIteration:
            raise KeyboardInterrupt from None

    try:
        probe.run(sleep)
    except KeyboardInterrupt:
        pass
    assert calls == ["begin", 0.0, "begin", 0.4, "begin"]


def test_the_kernel_figures_are_read_for_this_process():
    on_cpu, waited = lagcause.Schedstat()()
    assert on_cpu > 0.0 and waited >= 0.0
    busy = os_threading.Event()
    worker = os_threading.Thread(target=busy.wait, args=(5,), name="waiter")
    worker.start()
    try:
        assert worker.native_id in lagcause.threads_cpu() and lagcause.thread_names()[worker.native_id] == "waiter"
    finally:
        busy.set()
        worker.join()
    assert lagcause.Schedstat("/nonexistent")() == (0.0, 0.0) and lagcause.threads_cpu("/nonexistent") == {}


def _green_work(turns: int) -> None:
    for _ in range(turns):
        sum(range(2000))
        eventlet.sleep(0)


def test_turns_stay_counted_when_the_tracer_is_reset_during_the_interval():
    """A benchmark's ``DELETE /v1/stretches`` between two phases reset the tracer's switch count while a sample
    was under way: its turns were printed as -346 (evpn_routes, session 28)."""
    tracer = StretchTracer(3, sample_interval=None)
    tracer.start()
    try:
        late = LateSamples(2, tracer)
        _green_work(50)  # turns before the interval: the count the reset drops
        late.begin()
        before = tracer.turns
        eventlet.spawn(_green_work, 20).wait()
        tracer.reset()
        eventlet.spawn(_green_work, 20).wait()
        late.end(0.2)
        (sample,) = late.listed()
        assert sample["turns"] == tracer.turns - before >= 40
    finally:
        tracer.stop()


def test_the_green_threads_of_the_interval_are_grouped_by_the_function_they_began_with():
    tracer = StretchTracer(3, sample_interval=None)
    tracer.start()
    try:
        late = LateSamples(2, tracer)
        late.begin()
        workers = [eventlet.spawn(_green_work, 5) for _ in range(4)]
        other = eventlet.spawn(_green_work_elsewhere)
        for thread in workers + [other]:
            thread.wait()
        late.end(0.3)
        groups = {g["root"]: g for g in late.listed()[0]["green_threads"]}
    finally:
        tracer.stop()
    work = groups["tests/unit/test_lagcause.py _green_work"]
    assert work["threads"] == 4 and work["turns"] >= 20 and work["cpu_ms"] > 0
    assert groups["tests/unit/test_lagcause.py _green_work_elsewhere"]["threads"] == 1
    assert any(root.startswith("(the hub") for root in groups)


def _green_work_elsewhere() -> None:
    _green_work(2)
