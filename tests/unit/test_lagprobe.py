"""The event-loop lag probe: overshoot of its sleeps, current and maximum over a sliding window."""

import pytest

from controller.lagprobe import LagProbe


def test_a_sample_is_how_late_the_sleep_ended():
    now = [0.0]
    probe = LagProbe(interval=0.1, clock=lambda: now[0])
    stalls = iter([0.0, 0.4, 0.02])

    def sleep(seconds):
        try:
            now[0] += seconds + next(stalls)
        except StopIteration:
            raise KeyboardInterrupt from None

    with pytest.raises(KeyboardInterrupt):
        probe.run(sleep)
    assert probe.samples == 3
    assert probe.current == pytest.approx(0.02)
    assert probe.max_recent() == pytest.approx(0.4)
    status = probe.status()
    assert status["current_ms"] == 20.0 and status["max_1m_ms"] == 400.0 and status["max_ms"] == 400.0


def test_the_maximum_covers_only_the_window():
    probe = LagProbe(window=60.0, clock=lambda: 0.0)
    probe.record(0.5, now=0.0)
    probe.record(0.1, now=30.0)
    probe.record(0.2, now=50.0)
    assert probe.max_recent(now=59.0) == 0.5
    assert probe.max_recent(now=61.0) == 0.2  # the 0.5 s stall is more than a minute old
    assert probe.max_recent(now=111.0) == 0.0
    assert probe.max_ever == 0.5


def test_samples_feed_the_callback():
    seen = []
    probe = LagProbe(on_sample=seen.append, clock=lambda: 0.0)
    probe.record(0.003)
    assert seen == [0.003]
