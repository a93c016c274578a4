"""A file written behind its writer (controller/writebehind.py ``WriteBehind``): ``put`` returns before the write; at
most one write is in flight; content put meanwhile is coalesced, the newest written last (an older content never
lands after a newer one); a failed write is logged and tried again; ``close`` waits for the newest. Driven by hand:
``spawn`` records the writer, ``offload`` runs the write (and what the test does "during" it), ``later`` records the
retry."""

from __future__ import annotations

import logging

import pytest

from controller import loglimit, writebehind
from controller.writebehind import WriteBehind

log = logging.getLogger("canopy.test")


class Writer:
    """A WriteBehind on ``path`` whose writer, retry timers and writes are the test's to run."""

    def __init__(self, path):
        self.file = WriteBehind(str(path), log, "test flags")
        self.spawned, self.timers, self.writes, self.during = [], [], [], []
        self.fail = False
        self.file.spawn = self.spawned.append
        self.file.later = lambda delay, function: self.timers.append((delay, function)) or Timer()
        self.file.offload = self.offload

    def offload(self, function, *args):
        self.writes.append(args[1])
        if len(self.writes) >= 100:  # bounded: a writer that never stops fails the test (not an Exception: the
            pytest.fail("a busy loop of writes")  # writer takes those for a failed write)
        for step in self.during:  # what the event loop does while the OS thread writes
            step()
        self.during = []
        if self.fail:
            return OSError(28, "No space left on device")
        return function(*args)

    def run(self):
        """Run the writer spawned (one at most)."""
        assert len(self.spawned) == 1, self.spawned
        self.spawned.pop()()


class Timer:
    def cancel(self):
        pass


def failed_once(path) -> Writer:
    """A Writer whose write of b"one" (version 1) failed; its fault gone since."""
    w = Writer(path)
    w.fail = True
    w.file.put(1, b"one")
    w.run()
    w.fail = False
    return w


def test_put_returns_before_the_write_which_the_writer_then_does(tmp_path):
    w = Writer(tmp_path / "f")
    w.file.put(1, b"one")
    assert not (tmp_path / "f").exists() and w.file.behind() and w.file.written is None
    w.run()
    assert (tmp_path / "f").read_bytes() == b"one" and not w.file.behind() and w.file.written == 1


def test_content_put_during_a_write_is_coalesced_and_the_newest_written_last(tmp_path):
    """Two passes change the flags while the first write is in flight: one writer, two writes (the first and the
    newest), the middle content never written, the file left with the newest."""
    w = Writer(tmp_path / "f")
    w.file.put(1, b"one")
    w.during = [lambda: w.file.put(2, b"two"), lambda: w.file.put(3, b"three")]
    assert w.spawned and not w.file.written
    w.run()
    assert w.writes == [b"one", b"three"] and not w.spawned  # no second writer while the first ran
    assert (tmp_path / "f").read_bytes() == b"three" and w.file.written == 3 and not w.file.behind()


def test_a_failed_write_is_logged_and_tried_again_later(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(loglimit, "_last_logged", {})
    w = failed_once(tmp_path / "f")
    assert w.file.behind() and w.file.written is None and w.file.failures == 1
    assert "test flags not written to" in caplog.text and "No space left on device" in caplog.text
    assert [delay for delay, _ in w.timers] == [writebehind.RETRY] and not w.spawned
    w.timers.pop()[1]()  # the retry: a writer again, the same content
    w.run()
    assert (tmp_path / "f").read_bytes() == b"one" and w.file.written == 1 and w.file.failures == 0


def test_a_failed_write_never_overwrites_newer_content_put_during_it(tmp_path):
    """The content put during a write that fails is newer: it is the one tried again, not the failed one."""
    w = Writer(tmp_path / "f")
    w.fail = True
    w.file.put(1, b"one")
    w.during = [lambda: w.file.put(2, b"two")]
    w.run()
    w.fail = False
    w.timers.pop()[1]()
    w.run()
    assert w.writes == [b"one", b"two"] and (tmp_path / "f").read_bytes() == b"two" and w.file.written == 2


def test_new_content_after_a_failure_is_written_at_once(tmp_path):
    w = failed_once(tmp_path / "f")
    w.file.put(2, b"two")  # a change before the retry is due
    w.run()
    assert (tmp_path / "f").read_bytes() == b"two" and w.file.written == 2
    w.timers.pop()[1]()  # the retry, due later: nothing left to write
    assert not w.spawned and w.writes == [b"one", b"two"]


def test_close_tries_a_failed_write_once_more_and_arms_no_timer(tmp_path):
    w = failed_once(tmp_path / "f")
    w.file.spawn = lambda function: function()  # close waits for the writer it starts
    assert w.file.close(wait=0) and (tmp_path / "f").read_bytes() == b"one"
    w.fail = True
    w.file.put(2, b"two")
    assert len(w.timers) == 1  # the failure after the stop arms none
    assert not w.file.close(wait=0) and w.file.behind()


def test_close_waits_for_the_write_in_flight_and_the_newest(tmp_path):
    """The stop comes while a write is in flight (the writer green thread waits for the OS thread): close waits (its
    sleep: the event loop's turn, on which the writer goes on) until the newest content is written."""
    w = Writer(tmp_path / "f")
    w.file.put(1, b"one")
    w.file.put(2, b"two")
    w.file.sleep = lambda _seconds: w.spawned and w.run()  # the writer's turn comes while close sleeps
    assert w.file._busy
    assert w.file.close() and (tmp_path / "f").read_bytes() == b"two" and w.writes == [b"two"]


def test_close_gives_up_at_its_bound_on_a_write_that_never_ends(tmp_path, monkeypatch, caplog):
    """A write hung in its OS thread (a dead disk): the stop waits ``wait`` seconds (its sleeps: the event loop's
    turns), then logs that the newest flags were not written and goes on. Bounded here: a close that went on
    waiting fails the test."""
    monkeypatch.setattr(loglimit, "_last_logged", {})
    w = Writer(tmp_path / "f")
    w.file.put(1, b"one")  # the writer spawned, never to finish
    clock, slept = [0.0], []

    def sleep(seconds):
        slept.append(seconds)
        assert len(slept) <= 1000, "close went on waiting past its bound"
        clock[0] += seconds

    w.file.sleep, w.file.clock = sleep, lambda: clock[0]
    assert not w.file.close(wait=writebehind.CLOSE_WAIT) and w.file.behind()
    assert writebehind.CLOSE_WAIT <= sum(slept) < writebehind.CLOSE_WAIT + 2 * writebehind.POLL
    assert set(slept) == {writebehind.POLL}
    assert f"test flags not written to {tmp_path / 'f'} before the stop: a restart reads the file last written" \
        in caplog.text


def test_a_write_failing_forever_keeps_one_timer_and_no_writer_between_tries(tmp_path):
    """A disk that never takes the write: one try every RETRY seconds, and one at once per newer content, never a
    second timer armed beside the first nor a writer left running between two tries (no busy loop, no pile-up)."""
    w = Writer(tmp_path / "f")
    w.fail = True
    w.file.put(1, b"one")
    w.run()
    for version in range(2, 7):
        assert len(w.timers) == 1 and not w.spawned and not w.file._busy
        w.file.put(version, b"newer")  # a change while the retry is armed: tried at once, no second timer
        w.run()
        assert len(w.timers) == 1 and not w.spawned
        w.timers.pop()[1]()  # the retry
        w.run()
    assert len(w.timers) == 1 and not w.spawned and w.file.failures == 11 and len(w.writes) == 11
    assert w.file.behind() and w.file.written is None and not (tmp_path / "f").exists()
