"""The stretch tracer (controller/stretchtrace.py): the green thread that burns the most CPU between two switches is
the longest stretch, named by where it ran; off, nothing is installed or recorded."""

import eventlet
import greenlet
import pytest

from controller import stretchtrace
from controller.rest.wire import Request
from controller.stretchtrace import ENV, StretchTraceError, StretchTracer, from_environment, routes

BURN = 2_000_000  # iterations of the long stretch
CHUNK = 10_000  # iterations of each short one: 200 times fewer


def spin(iterations: int) -> int:
    total = 0
    for i in range(iterations):
        total += i & 7
    return total


def burn_then_yield() -> None:
    spin(BURN)
    eventlet.sleep(0)  # the long stretch ends here
    spin(CHUNK)


def short_runs(rounds: int = 30) -> None:
    for _ in range(rounds):
        spin(CHUNK)
        eventlet.sleep(0)


def run_green(*bodies) -> None:
    threads = [eventlet.spawn(body) for body in bodies]
    for thread in threads:
        thread.wait()


@pytest.fixture
def tracer():
    tracer = StretchTracer(5, sample_interval=None)
    yield tracer
    tracer.stop()


def test_the_burning_green_thread_is_the_longest_stretch_with_its_function(tracer):
    tracer.start()
    run_green(short_runs, burn_then_yield, short_runs)
    tracer.stop()
    got = tracer.stretches()
    longest, *others = got["stretches"]
    assert "test_stretchtrace.py" in longest["ended_in"][0] and longest["ended_in"][0].endswith(" burn_then_yield")
    assert all(other["cpu_ms"] < longest["cpu_ms"] / 10 for other in others)
    assert len(got["stretches"]) <= 5 and got["switches"] > 60


def test_a_sample_names_the_work_that_took_the_time_when_the_run_ends_elsewhere():
    tracer = StretchTracer(3)  # sampling every 5 ms from an OS thread

    def outer():
        spin_until_sampled()
        eventlet.sleep(0)  # the run ends here, in outer, after spin_until_sampled returned

    def spin_until_sampled():
        for _ in range(2000):  # bounded: ~2,000 x 1 ms of CPU at most
            spin(CHUNK)
            if len(tracer._samples) >= 2:
                return
        raise AssertionError("the sampler took no sample")

    tracer.start()
    try:
        run_green(outer, short_runs)
    finally:
        tracer.stop()
    longest = tracer.stretches()["stretches"][0]
    assert longest["ended_in"][0].endswith(" outer")
    assert any(" spin" in sample["stack"][0] and "spin_until_sampled" in " ".join(sample["stack"])
               for sample in longest["sampled"])


def test_stopped_it_records_nothing_and_restores_the_previous_trace(tracer):
    assert greenlet.gettrace() is None
    tracer.start()
    assert greenlet.gettrace() is not None
    tracer.stop()
    assert greenlet.gettrace() is None
    switches = tracer.switches
    run_green(burn_then_yield, short_runs)
    assert tracer.switches == switches and not any(
        "burn_then_yield" in s["ended_in"][0] for s in tracer.stretches()["stretches"])


def test_reset_forgets_what_was_kept(tracer):
    tracer.start()
    run_green(burn_then_yield)
    assert tracer.stretches()["stretches"]
    tracer.reset()
    assert tracer.stretches()["stretches"] == [] and tracer.switches == 0


def test_off_unless_the_environment_asks_for_it():
    assert from_environment({}) is None
    assert from_environment({ENV: ""}) is None and from_environment({ENV: "0"}) is None
    assert from_environment({ENV: "20"}).keep == 20
    assert routes(None) == []


@pytest.mark.parametrize("value", ["yes", "-3", "1.5", str(stretchtrace.MAX_KEEP + 1)])
def test_a_bad_count_names_the_variable_and_why(value):
    with pytest.raises(StretchTraceError, match=f"{ENV}: must be the number of stretches to keep.*{value!r}"):
        from_environment({ENV: value})


def test_the_routes_list_and_reset(tracer):
    get, delete = routes(tracer)
    assert (get.method, get.pattern, get.write) == ("GET", "/v1/stretches", False)
    assert (delete.method, delete.pattern, delete.write) == ("DELETE", "/v1/stretches", True)
    tracer.start()
    run_green(burn_then_yield)
    tracer.stop()
    request = Request("GET", "/v1/stretches", {}, {}, b"")
    assert get.handler(request).body["stretches"][0]["ended_in"][0].endswith(" burn_then_yield")
    assert delete.handler(request).body["stretches"] == []



def test_the_stacks_sampled_during_one_stretch_are_bounded(monkeypatch):
    """The OS thread holds the event loop without a switch (say, a C call of minutes): the sampler goes on, and
    what it keeps for that one stretch must not grow without end."""
    monkeypatch.setattr(stretchtrace, "MAX_SAMPLES", 20)
    real, rounds = stretchtrace.os_time, []

    class CountedTime:  # the sampler's sleep, counted: one per round
        @staticmethod
        def sleep(seconds):
            rounds.append(1)
            real.sleep(seconds)

    monkeypatch.setattr(stretchtrace, "os_time", CountedTime)
    tracer = StretchTracer(3, sample_interval=0.0005)
    tracer.start()
    try:
        for _ in range(5000):  # no green thread switch meanwhile: the original sleep blocks the OS thread
            if len(rounds) > 60:
                break
            real.sleep(0.001)
        assert len(rounds) > 60 and len(tracer._samples) <= 20
    finally:
        tracer.stop()


def test_a_stretch_says_how_much_of_it_the_collector_took_and_the_longest_collections_are_listed(monkeypatch):
    """With the collector's policy installed (controller/collector.py), a stretch that ran a full collection carries
    its CPU (a fake clock: each collection lasts 1 s) and the list names the collection and where it ran."""
    import gc
    import itertools

    from controller import collector

    ticks = itertools.count()
    watch = collector.Collections(clock=lambda: float(next(ticks)), freeze_after_full=False)
    monkeypatch.setattr(collector, "WATCH", watch)
    tracer = StretchTracer(3, sample_interval=None)

    def collect_then_yield():
        spin(BURN)  # long enough to be kept whatever the collection costs (an earlier test may have frozen the heap)
        gc.collect()
        eventlet.sleep(0)

    assert "collections" not in tracer.stretches()  # the policy is not installed: nothing to say
    watch.install()
    try:
        tracer.start()
        run_green(short_runs, collect_then_yield)
        tracer.stop()
    finally:
        watch.uninstall()
        watch._installed = True  # read as installed for the listing below
    got = tracer.stretches()
    assert got["stretches"][0]["collector_ms"] >= 1000.0
    assert any(c["generation"] == 2 and c["where"][0].endswith(" collect_then_yield") for c in got["collections"])
    tracer.reset()
    assert tracer.stretches()["collections"] == []


def blocked_in_a_system_call() -> None:
    spin(CHUNK)
    stretchtrace.os_time.sleep(0.03)  # the OS thread's sleep, not eventlet's: the hub is held, no CPU used
    eventlet.sleep(0)


def test_a_turn_that_waits_without_cpu_is_listed_by_its_wall_clock(tracer, monkeypatch):
    # every such turn kept: on a loaded machine the short runs' waits for a CPU outlast the 30 ms sleep and pushed it
    # out of the OFF_KEEP (5) longest (a unit run at load 24: none listed)
    monkeypatch.setattr(stretchtrace, "OFF_KEEP", 1000)
    tracer.start()
    run_green(short_runs, blocked_in_a_system_call, short_runs)
    tracer.stop()
    (waited,) = [s for s in tracer.stretches()["off_cpu"] if s["ended_in"][0].endswith(" blocked_in_a_system_call")]
    assert waited["wall_ms"] - waited["cpu_ms"] >= 25 and waited["cpu_ms"] < waited["wall_ms"] / 2
    assert all(s["wall_ms"] >= s["cpu_ms"] for s in tracer.stretches()["stretches"])

