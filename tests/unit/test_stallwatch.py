"""The stall watch (controller/stallwatch.py): while the lag probe's sleep is overdue, an OS thread takes the event
loop's stack; a sample of at least the threshold is logged with its split and those stacks, and stays as the
worst in the probe's status."""

import logging
import sys
import time
from types import SimpleNamespace

import eventlet
import pytest

from controller import loglimit
from controller import settings as settings_mod
from controller import stallwatch as stallwatch_mod
from controller.lagcause import LateSamples
from controller.lagprobe import LagProbe
from controller.osthread import os_threading
from controller.stallwatch import MAX_STACKS, StallWatch, described


class Clock:
    def __init__(self):
        self.now = 0.0
        self.cpu = 0.0  # the loop thread's CPU seconds
        self.delay = 0.0  # its wait for a CPU

    def __call__(self):
        return self.now


def _the_loops_work():
    return sys._getframe()  # a frame of a function whose name the stack must show


def watched(report=0.1, frames=None):
    clock = Clock()
    probe = LagProbe(interval=0.1, clock=clock)
    late = LateSamples(4, wall=clock, cpu=lambda: clock.cpu, process=lambda: clock.cpu, delay=lambda: clock.delay,
                       per_thread=dict, names=dict, collected=lambda: 0.0)
    frame = _the_loops_work()
    watch = StallWatch(probe, late, report, frames=frames or (lambda: {os_threading.get_ident(): frame}),
                       clock=clock)
    probe.cause = watch
    return watch, probe, clock


def test_a_stall_is_logged_with_the_loops_stack_and_its_split(caplog):
    watch, probe, clock = watched()
    watch.begin()
    clock.now += 0.1 + 0.04  # overdue by 40 ms: under half the threshold, no stack yet
    watch.look()
    for step in (0.03, 0.025):  # 70, then 95 ms overdue: the same stack twice (looked at from the same line)
        clock.now += step
        watch.look()
    clock.now += 0.2
    clock.cpu += 0.29
    with caplog.at_level(logging.INFO, logger="canopy.stall"):
        watch.end(0.295)
    (record,) = [r for r in caplog.records if r.name == "canopy.stall"]
    text = record.getMessage()
    assert record.levelno == logging.WARNING and "the controller's own" in text  # no wait for a CPU
    assert "did not turn for 295 ms" in text and "_the_loops_work" in text and "at 70 ms overdue" in text
    assert "(the same at 95 ms)" in text  # a repeated stack is not printed twice
    assert "off CPU 105.0 ms, of which past the probe's sleep 5.0" in text  # 100 ms of it: the probe's own sleep
    assert watch.stalls == 1
    worst = probe.status()["worst"]
    assert worst["lag_ms"] == 295.0 and [s["overdue_ms"] for s in worst["stacks"]] == [70.0, 95.0]
    assert any("_the_loops_work" in frame for frame in worst["stacks"][0]["stack"])


@pytest.mark.parametrize("cpu, delay, level", [(0.05, 0.15, logging.INFO), (0.05, 0.1, logging.INFO),
                                               (0.15, 0.099, logging.WARNING), (0.0, 0.0, logging.WARNING)])
def test_a_stall_mostly_of_waiting_for_a_cpu_is_the_machines(caplog, cpu, delay, level):
    """At least half the lag spent waiting for a CPU: the machine's load (info); else the controller's own, whether
    its CPU, a blocking call or another thread's GIL (off CPU): a warning."""
    watch, probe, clock = watched()
    watch.begin()
    clock.now += 0.1 + 0.2
    clock.cpu += cpu
    clock.delay += delay
    with caplog.at_level(logging.INFO, logger="canopy.stall"):
        watch.end(0.2)
    (record,) = [r for r in caplog.records if r.name == "canopy.stall"]
    assert record.levelno == level
    assert ("the machine's load" in record.getMessage()) == (level == logging.INFO)


def test_nothing_is_taken_or_logged_when_the_loop_turns_in_time(caplog):
    looked = []
    watch, probe, clock = watched(frames=lambda: looked.append(1) or {})
    for _ in range(5):
        watch.begin()
        clock.now += 0.1 + 0.03  # 30 ms late: under half the threshold
        watch.look()
        with caplog.at_level(logging.INFO, logger="canopy.stall"):
            watch.end(0.03)
    assert looked == [] and watch.stalls == 0 and not caplog.records  # no frame was even asked for
    assert probe.status()["worst"]["lag_ms"] == 30.0 and "stacks" not in probe.status()["worst"]


def test_the_stacks_of_one_stall_are_bounded():
    watch, probe, clock = watched()
    watch.begin()
    clock.now += 0.2
    for _ in range(MAX_STACKS + 5):
        watch.look()
    watch.end(0.2)
    worst = probe.status()["worst"]
    assert len(worst["stacks"]) == MAX_STACKS and worst["stacks_not_kept"] == 5
    assert "5 more looks" in described(worst["stacks"], worst["stacks_not_kept"])


def test_off_no_thread_and_no_stacks_but_the_worst_split():
    watch, probe, clock = watched(report=None)
    watch.start()
    assert watch._thread is None
    watch.begin()
    clock.now += 0.5
    watch.look()
    watch.end(0.4)
    assert probe.status()["worst"]["lag_ms"] == 400.0 and "stacks" not in probe.status()["worst"]


def _hold_the_loop(watch, deadline):
    """Pure Python that does not yield to the hub, until the watch has taken four stacks, a quarter of the threshold
    apart from half of it overdue on: the sleep is overdue by more than the threshold (bounded)."""
    while not (watch._watch and len(watch._watch[1]) >= 4) and time.monotonic() < deadline:
        sum(range(100))


def test_the_watch_thread_finds_a_green_thread_that_holds_the_real_hub(caplog, monkeypatch):
    # every stall logged: on a loaded machine the probe's first sleep can stall too (waiting for a CPU), and the log
    # limit (one line per level per 10 s) then kept the hold's own line back (1 failure in the unit suite, load 13)
    monkeypatch.setattr(loglimit, "LOG_EVERY", 0.0)
    probe = LagProbe(interval=0.01)
    watch = StallWatch(probe, LateSamples(2), report=0.04)
    probe.cause = watch
    watch.start()
    sampler = eventlet.spawn(probe.run, eventlet.sleep)
    try:
        eventlet.sleep(0.05)  # the probe is sleeping: its sleep is watched
        with caplog.at_level(logging.INFO, logger="canopy.stall"):
            before = watch.stalls
            _hold_the_loop(watch, time.monotonic() + 30)
            for _ in range(100):  # the probe wakes, late, and reports (bounded)
                eventlet.sleep(0.01)
                if watch.stalls > before:
                    break
    finally:
        sampler.kill()
        watch.stop()
    assert watch.stalls > before
    assert any("_hold_the_loop" in r.getMessage() for r in caplog.records if r.name == "canopy.stall")


@pytest.mark.parametrize("value, expected", [(100, 0.1), (0, None), (20, 0.02), (60000, 60.0)])
def test_the_setting(tmp_path, value, expected):
    path = tmp_path / "canopy.yaml"
    path.write_text(f"stall_report_ms: {value}\n")
    assert settings_mod.load(str(path)).stall_report == expected
    assert settings_mod.defaults().stall_report == 0.1


@pytest.mark.parametrize("value", [1, 19, -1, 60001, "x", True])
def test_a_bad_setting_is_refused_naming_it(tmp_path, value):
    path = tmp_path / "canopy.yaml"
    path.write_text(f"stall_report_ms: {value}\n")
    with pytest.raises(settings_mod.SettingsError, match=r"canopy.yaml:1: stall_report_ms: must"):
        settings_mod.load(str(path))


def test_the_watch_sleeps_until_the_probes_sleep_would_be_overdue_then_looks_every_quarter():
    watch, probe, clock = watched()
    assert watch.look() == pytest.approx(0.025)  # no sleep begun yet
    watch.begin()  # the probe sleeps 0.1 s: half the threshold overdue at 0.15
    assert watch.look() == pytest.approx(0.15) and watch._watch[1] == []
    clock.now = 0.16
    assert watch.look() == pytest.approx(0.025) and len(watch._watch[1]) == 1


def stall(watch, clock, cpu=0.2, delay=0.0, lag=0.2):
    """One probe sleep that ended ``lag`` late, the loop's CPU and its wait for a CPU meanwhile as given."""
    watch.begin()
    clock.now += 0.1 + lag
    clock.cpu += cpu
    clock.delay += delay
    watch.end(lag)


def stall_lines(caplog):
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "canopy.stall"]


def test_a_stall_that_repeats_is_logged_at_most_once_per_10_s_at_each_level(caplog, monkeypatch):
    """The same stall again and again (the same stack) is one line per 10 s with a count of those left out; a
    warning (the controller's own) is never hidden behind an info (the machine's load) logged just before."""
    now = [1000.0]
    monkeypatch.setattr(loglimit, "time", SimpleNamespace(monotonic=lambda: now[0]))
    monkeypatch.setattr(loglimit, "_last_logged", {})
    watch, probe, clock = watched()
    with caplog.at_level(logging.INFO, logger="canopy.stall"):
        for _ in range(5):  # the controller's own, at 1000, 1001, ... 1004: the first logged
            stall(watch, clock)
            now[0] += 1
        stall(watch, clock, cpu=0.0, delay=0.2)  # the machine's, at 1005: logged (its own limit)
        now[0] = 1009.9
        stall(watch, clock)  # under 10 s since the warning: left out
        now[0] = 1010.0
        stall(watch, clock)
    lines = stall_lines(caplog)
    assert [level for level, _ in lines] == [logging.WARNING, logging.INFO, logging.WARNING]
    assert "(5 more like it not logged)" in lines[2][1] and watch.stalls == 8


def test_a_new_watch_logs_its_first_stall_whatever_an_old_one_logged(caplog, monkeypatch):
    """A controller started again in one process (tests): its watch may sit where a freed one was (the same
    ``id()``); its first stall is logged all the same."""
    monkeypatch.setattr(loglimit, "_last_logged", {})
    monkeypatch.setattr(stallwatch_mod, "id", lambda obj: 1, raising=False)  # both watches at one address
    with caplog.at_level(logging.INFO, logger="canopy.stall"):
        for _ in range(2):
            watch, probe, clock = watched()
            stall(watch, clock)
    assert len(stall_lines(caplog)) == 2


def test_a_look_still_under_way_when_the_sleep_ends_adds_nothing_to_its_sample(caplog):
    """The OS thread read the watched sleep, then the loop woke and ended the sample before the look added its
    stack: the sample, logged and kept as the worst, has only the stacks taken while it was overdue."""
    frame, ended = _the_loops_work(), []

    def frames_after_the_end():
        if not ended:
            ended.append(True)
            watch.end(0.2)  # the loop turns between the thread's read of the watch and its append
        return {os_threading.get_ident(): frame}

    watch, probe, clock = watched(frames=frames_after_the_end)
    watch.begin()
    clock.now += 0.1 + 0.2
    with caplog.at_level(logging.INFO, logger="canopy.stall"):
        watch.look()
    assert ended and probe.status()["worst"]["stacks"] == []
    assert "no stack taken" in stall_lines(caplog)[0][1]
    assert "or the process did not run: stopped" in stall_lines(caplog)[0][1]  # a SIGSTOP looks the same (faults38)


def test_after_stop_the_thread_has_ended_and_no_stall_is_logged(caplog):
    """The controller's shutdown stops the watch (controller/app.py): its thread is gone when ``stop()`` returns, and
    a stall after it (a shutdown step that holds the loop) is neither looked at nor logged; the split goes on."""
    looked = []
    watch, probe, clock = watched(frames=lambda: looked.append(1) or {})
    watch.start()
    thread = watch._thread
    assert thread.is_alive()
    watch.stop()
    assert not thread.is_alive()
    with caplog.at_level(logging.INFO, logger="canopy.stall"):
        watch.begin()
        clock.now += 0.1 + 0.4
        watch.look()
        watch.end(0.4)
    assert looked == [] and stall_lines(caplog) == [] and watch.stalls == 0
    assert probe.status()["worst"]["lag_ms"] == 400.0
