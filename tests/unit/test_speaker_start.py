"""A BGP speaker whose ExaBGP cannot be started: the reason is recorded and shown (last_error, the peers, /v1/status
health), it is retried on the speaker's bounded back-off with one traceback per distinct reason, and it recovers by
itself once the cause is gone."""

import dataclasses
import functools
import logging
import os
import threading
import time
import types

import pytest

import bgp.speaker
import bgp.speakerthread
from bgp.federation import Federation
from bgp.speaker import BACKOFF_MAX, POLL_INTERVAL, Neighbor, Speaker, SpeakerConfig, exabgp_env
from bgp.speakerfail import REASON_CHARS, FirstTime, exit_reason, one_line
from controller import settings as settings_mod
from controller.rest import bgp as rest_bgp
from controller.rest.api import Api
from controller.yamldoc import Doc
from tests.unit.helpers import Controller

PEER = "10.250.0.2"


class FlakyEnv:
    """ExaBGP's environment builder, raising ``error`` while ``failing``; records the (fake) time of every call."""

    def __init__(self, clock, error):
        self.clock, self.error, self.failing, self.calls = clock, error, True, []

    def __call__(self, config, base=None):
        self.calls.append(self.clock())
        if self.failing:
            raise self.error
        return exabgp_env(config, base)


@pytest.fixture
def ctl(tmp_path):
    c = Controller(tmp_path)
    yield c
    c.close()


@pytest.fixture
def clock(monkeypatch):
    """The speaker module's monotonic clock, moved by the test (the speaker's own thread is not started)."""
    now = [1000.0]
    monkeypatch.setattr(bgp.speaker, "time", types.SimpleNamespace(monotonic=lambda: now[0], time=time.time,
                                                                   sleep=time.sleep))
    return now


def federation_of(ctl, tmp_path):
    doc = {"bgp": {"router_id": "10.250.0.1", "neighbors": [{"address": PEER, "asn": 65002}]}}
    federation = Federation(settings_mod.from_doc(Doc("<t>", doc)).bgp, str(tmp_path), ctl.state)
    os.makedirs(federation.speaker.config.workdir)
    ctl.api = Api(ctl.service, ctl.state, ctl.settings, status_parts={"bgp": functools.partial(
        rest_bgp.status_part, federation)}, faults={"BGP speaker": functools.partial(rest_bgp.failure, federation)})
    return federation


def turns(speaker, clock, seconds):
    """The speaker's supervision as its thread runs it: a turn every POLL_INTERVAL for ``seconds``."""
    for _ in range(int(seconds / POLL_INTERVAL)):
        speaker._supervise()
        clock[0] += POLL_INTERVAL


def test_a_start_that_raises_is_shown_retried_on_the_back_off_and_traced_once_per_reason(ctl, tmp_path, clock,
                                                                                         monkeypatch, caplog):
    federation = federation_of(ctl, tmp_path)
    env = FlakyEnv(lambda: clock[0], KeyError("getpwuid(): uid not found: 12345"))
    monkeypatch.setattr(bgp.speaker, "exabgp_env", env)
    caplog.set_level(logging.INFO, logger="canopy.bgp")
    turns(federation.speaker, clock, 120)

    reason = "could not start exabgp: KeyError: 'getpwuid(): uid not found: 12345'"
    status = federation.speaker.status()
    assert (status["last_error"], status["failure"], status["running"]) == (reason, reason, False)
    gaps = [later - earlier for earlier, later in zip(env.calls, env.calls[1:])]
    assert gaps == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, BACKOFF_MAX, BACKOFF_MAX]  # not every turn (480 of them)
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == len(env.calls) and all(reason in r.getMessage() for r in errors)
    assert [bool(r.exc_info) for r in errors] == [True] + [False] * (len(errors) - 1)  # one traceback, then lines

    [peer] = federation.peers()
    assert (peer["address"], peer["state"], peer["last_error"]) == (PEER, "down", reason)
    status, body = ctl.call("GET", "/v1/status")
    assert status == 200 and body["health"] == "degraded"
    assert body["degraded_reason"] == f"BGP speaker: {reason}"
    assert body["bgp"]["failure"] == reason and body["bgp"]["peers"] == {PEER: "down"}

    caplog.clear()
    env.error = RuntimeError("another cause\nsecond line")  # a distinct reason: its traceback once, one line
    turns(federation.speaker, clock, 2 * BACKOFF_MAX)
    other = "could not start exabgp: RuntimeError: another cause"
    assert federation.speaker.status()["last_error"] == other
    assert [bool(r.exc_info) for r in caplog.records if r.levelno == logging.ERROR] == [True, False]


def test_the_cause_gone_exabgp_starts_and_health_is_ok_again(ctl, tmp_path, monkeypatch):
    """A real ExaBGP (a passive peer: it connects nowhere) once the builder stops raising: when its API connects the
    failure ends, the peers are reported as it says and /v1/status is ok again; last_error keeps the reason."""
    federation = federation_of(ctl, tmp_path)
    speaker = federation.speaker
    speaker.config = dataclasses.replace(speaker.config, neighbors=(Neighbor(PEER, 65002, passive=True),))
    env = FlakyEnv(time.monotonic, ValueError("no environment"))
    monkeypatch.setattr(bgp.speaker, "exabgp_env", env)
    speaker.start()
    try:
        reason = "could not start exabgp: ValueError: no environment"
        assert wait_for(lambda: len(env.calls) >= 2)  # two attempts (0.5 s apart), each refused
        assert speaker.status()["failure"] == reason and ctl.call("GET", "/v1/status")[1]["health"] == "degraded"
        env.failing = False
        assert wait_for(lambda: speaker.status()["api_connected"])
        status = speaker.status()
        assert status["running"] and status["failure"] is None and status["last_error"] == reason
        [peer] = federation.peers()
        assert (peer["state"], peer["last_error"]) == ("idle", None)
        reply = ctl.call("GET", "/v1/status")[1]
        assert reply["health"] == "ok" and "degraded_reason" not in reply and reply["bgp"]["failure"] is None
    finally:
        speaker.stop()


def wait_for(condition, timeout=60.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_a_speaker_never_started_has_no_failure(tmp_path):
    speaker = Speaker(SpeakerConfig(asn=65000, router_id="10.0.0.1", neighbors=(Neighbor(PEER, 65001),),
                                    workdir=str(tmp_path)))
    assert speaker.status()["failure"] is None and speaker.peers()[0]["state"] == "idle"


def test_a_turn_that_raises_is_last_error_and_traced_once(tmp_path, caplog):
    """Any other error in a turn of the speaker's thread (a bug): last_error, one traceback, then at most a line
    every LOG_EVERY seconds, not a traceback per turn."""
    speaker = Speaker(SpeakerConfig(asn=65000, router_id="10.0.0.1", neighbors=(Neighbor(PEER, 65001),),
                                    workdir=str(tmp_path)))
    turns = []

    def broken():
        turns.append(1)
        raise RuntimeError("boom\nmore detail")

    speaker._supervise = broken  # every turn raises before anything is started
    caplog.set_level(logging.INFO, logger="canopy.bgp")
    speaker.start()
    try:
        assert wait_for(lambda: len(turns) >= 6)
        assert speaker.status()["last_error"] == "unexpected error: RuntimeError: boom"
    finally:
        speaker.stop()
    logged = [r for r in caplog.records if "unexpected error: RuntimeError: boom" in r.getMessage()]
    assert [bool(r.exc_info) for r in logged[:1]] == [True] and not any(r.exc_info for r in logged[1:])
    assert len(logged) < len(turns)


def test_turns_raising_a_different_reason_each_are_not_a_traceback_each(tmp_path, caplog):
    """A bug whose message varies each turn (a counter, an id in it) is not a new reason each turn: one traceback per
    LOG_EVERY seconds (the clock of the speaker's tracebacks held still here: one), one line at most every LOG_EVERY
    seconds for the others, never a log record per turn (was: a traceback every POLL_INTERVAL)."""
    speaker = Speaker(SpeakerConfig(asn=65000, router_id="10.0.0.1", neighbors=(Neighbor(PEER, 65001),),
                                    workdir=str(tmp_path)))
    speaker._traced = FirstTime(clock=lambda: 0.0)
    turns = []

    def broken():
        turns.append(1)
        raise KeyError(f"row {len(turns)}")

    speaker._supervise = broken
    caplog.set_level(logging.INFO, logger="canopy.bgp")
    speaker.start()
    try:
        assert wait_for(lambda: len(turns) >= 6)
        assert speaker.status()["last_error"].startswith("unexpected error: KeyError: 'row ")
    finally:
        speaker.stop()
    logged = [r for r in caplog.records if "unexpected error: KeyError" in r.getMessage()]
    assert sum(bool(r.exc_info) for r in logged) == 1 and logged[0].exc_info
    assert len(logged) < len(turns) - 1


def test_a_reason_is_one_bounded_line_whatever_exabgp_printed_or_an_error_says(tmp_path):
    """ExaBGP's last printed line (a crash's traceback quoting what a peer sent) or an error's message can be a line of
    any length: the reason (last_error, every peer's last_error, /v1/status degraded_reason, the log) is cut."""
    config = SpeakerConfig(asn=65000, router_id="10.0.0.1", neighbors=(Neighbor(PEER, 65001),), workdir=str(tmp_path))
    with open(config.output_path, "w") as out:
        out.write("Traceback (most recent call last):\nValueError: " + "x" * 60000 + "\n")
    reason = exit_reason(1, config, (0, 0))
    assert reason.startswith("exabgp exited with status 1: ValueError: xxx") and len(reason) <= REASON_CHARS + 10
    line = one_line(RuntimeError("y" * 100000 + "\nsecond"))
    assert line.startswith("RuntimeError: yyy") and len(line) <= REASON_CHARS + 10
    assert one_line(OSError("short"), named=False) == "short"


def test_a_stop_ends_the_failure_and_its_back_off(ctl, tmp_path, clock, monkeypatch):
    """Stopped while ExaBGP could not start (the controller shutting down, REST still answering): /v1/status is no
    longer degraded by the speaker, last_error keeps the reason, and a new start's back-off starts over at its least
    (the speaker's clock held still: restart_in is exactly the back-off)."""
    federation = federation_of(ctl, tmp_path)
    speaker = federation.speaker
    env = FlakyEnv(lambda: clock[0], ValueError("no environment"))
    monkeypatch.setattr(bgp.speaker, "exabgp_env", env)
    reason = "could not start exabgp: ValueError: no environment"
    speaker.start()
    try:
        assert wait_for(lambda: len(env.calls) == 1 and speaker.status()["restart_in"])
        clock[0] += speaker.status()["restart_in"]
        assert wait_for(lambda: len(env.calls) == 2 and speaker.status()["restart_in"])
        assert speaker.status()["restart_in"] == 1.0 and ctl.call("GET", "/v1/status")[1]["health"] == "degraded"
        speaker.stop()
        status = speaker.status()
        assert (status["failure"], status["last_error"], status["restart_in"]) == (None, reason, None)
        reply = ctl.call("GET", "/v1/status")[1]
        assert reply["health"] == "ok" and "degraded_reason" not in reply
        assert federation.peers()[0]["last_error"] is None

        speaker.start()
        assert wait_for(lambda: len(env.calls) == 3 and speaker.status()["restart_in"])
        assert speaker.status()["restart_in"] == 0.5 and speaker.status()["failure"] == reason
    finally:
        speaker.stop()


class Unfired:
    """A ``threading.Timer`` that never fires: the speaker is retried only when asked."""

    def __init__(self, interval, function):
        self.interval, self.function, self.daemon = interval, function, False

    def start(self):
        pass

    def cancel(self):
        pass


class FlakyThread(threading.Thread):
    """The speaker's thread, whose start raises as with no thread to be had while ``failing``; counts the attempts."""

    failing, attempts = True, []

    def start(self):
        FlakyThread.attempts.append(time.monotonic())
        if FlakyThread.failing:
            raise RuntimeError("can't start new thread")
        super().start()


def test_a_thread_that_cannot_start_is_a_failure_shown_and_retried_not_an_error_of_the_start(ctl, tmp_path,
                                                                                               monkeypatch):
    """``Thread.start`` raising (no thread left: ulimit -u, memory) escaped start() to the controller's start. Now it is
    a start failure like the others: shown (last_error, the peers, /v1/status), retried on the back-off when the
    speaker is next asked or used, and the speaker recovers (a real ExaBGP, a passive peer) once a thread starts. A
    stop meanwhile ends the failure."""
    monkeypatch.setattr(bgp.speakerthread, "threading", types.SimpleNamespace(Thread=FlakyThread, Lock=threading.Lock,
                                                                              Timer=Unfired))  # asked, not timed
    monkeypatch.setattr(FlakyThread, "attempts", [])
    monkeypatch.setattr(FlakyThread, "failing", True)
    reason = "could not start the BGP speaker's thread: RuntimeError: can't start new thread"
    stopped = Speaker(SpeakerConfig(asn=65000, router_id="10.0.0.1", neighbors=(), workdir=str(tmp_path / "other")))
    stopped.start()
    assert stopped.status()["failure"] == reason
    stopped.stop()
    assert (stopped.status()["failure"], stopped.status()["last_error"]) == (None, reason)
    FlakyThread.attempts.clear()

    federation = federation_of(ctl, tmp_path)
    speaker = federation.speaker
    speaker.config = dataclasses.replace(speaker.config, neighbors=(Neighbor(PEER, 65002, passive=True),))
    federation.start()
    try:
        status = speaker.status()
        assert (status["last_error"], status["failure"], status["running"]) == (reason, reason, False)
        assert len(FlakyThread.attempts) == 1  # asked again within the back-off: not retried yet
        [peer] = federation.peers()
        assert (peer["state"], peer["last_error"]) == ("down", reason)
        reply = ctl.call("GET", "/v1/status")[1]
        assert reply["health"] == "degraded" and reply["degraded_reason"] == f"BGP speaker: {reason}"
        assert wait_for(lambda: speaker.status() and len(FlakyThread.attempts) == 2)
        assert FlakyThread.attempts[1] - FlakyThread.attempts[0] >= 0.5  # BACKOFF_MIN
        FlakyThread.failing = False
        assert wait_for(lambda: speaker.status()["api_connected"])
        status = speaker.status()
        assert status["running"] and status["failure"] is None and status["last_error"] == reason
        assert len(FlakyThread.attempts) == 3 and ctl.call("GET", "/v1/status")[1]["health"] == "ok"
    finally:
        speaker.stop()


class HeldTimer(Unfired):
    """A ``threading.Timer`` the test fires; every one made is in ``made``."""

    made: list = []

    def __init__(self, interval, function):
        super().__init__(interval, function)
        self.started = self.cancelled = False
        HeldTimer.made.append(self)

    def start(self):
        self.started = True

    def cancel(self):
        self.cancelled = True


class HeldThread:
    """The speaker's thread: its start raises as with no thread to be had while ``failing``, else it only looks
    started (no ExaBGP); counts the attempts."""

    failing, attempts = True, []

    def __init__(self, target, name, daemon):
        self.ident = None

    def start(self):
        HeldThread.attempts.append(1)
        if HeldThread.failing:
            raise RuntimeError("can't start new thread")
        self.ident = 1

    def join(self, timeout=None):
        pass

    def is_alive(self):
        return False


def held_threads(monkeypatch, timer=HeldTimer):
    """The speaker's threads are HeldThreads (failing, none attempted yet) and its timers ``timer``, on the test's
    clock (the ``clock`` fixture)."""
    monkeypatch.setattr(bgp.speakerthread, "threading", types.SimpleNamespace(Thread=HeldThread, Lock=threading.Lock,
                                                                              Timer=timer))
    monkeypatch.setattr(bgp.speakerthread, "time", bgp.speaker.time)
    monkeypatch.setattr(HeldTimer, "made", [])
    monkeypatch.setattr(HeldThread, "attempts", [])
    monkeypatch.setattr(HeldThread, "failing", True)


def test_a_thread_that_cannot_start_is_started_again_by_a_timer_with_nobody_asking(tmp_path, clock, monkeypatch):
    """A speaker whose thread could not start was started again only when something asked it (status, peers, a route
    change, SIGHUP): a controller with no REST client, no scrape and no route change kept a dead speaker for ever.
    A timer now starts it once the back-off is over (the speaker's clock moved by the test, its timers fired by the
    test: nothing else asks it here), a failure arming the next on the bounded back-off, one timer at a time; a timer
    due early waits again; once the thread runs, or the speaker is stopped, no timer starts anything."""
    held_threads(monkeypatch)
    speaker = Speaker(SpeakerConfig(asn=65000, router_id="10.0.0.1", neighbors=(), workdir=str(tmp_path)))
    speaker.start()
    delays = []
    for _ in range(9):
        timer = HeldTimer.made[-1]
        assert timer.started and timer.daemon and not timer.cancelled
        delays.append(timer.interval)
        clock[0] += timer.interval
        timer.function()
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, BACKOFF_MAX, BACKOFF_MAX, BACKOFF_MAX]
    assert len(HeldThread.attempts) == 10 and len(HeldTimer.made) == 10

    clock[0] += 10.0
    HeldTimer.made[-1].function()  # early (a back-off that moved on): the rest waited for, no attempt
    assert len(HeldThread.attempts) == 10 and HeldTimer.made[-1].interval == BACKOFF_MAX - 10.0
    HeldThread.failing = False
    clock[0] += BACKOFF_MAX
    HeldTimer.made[-1].function()
    assert len(HeldThread.attempts) == 11 and speaker._thread.ident is not None and len(HeldTimer.made) == 11
    speaker.stop()

    HeldThread.failing = True
    speaker.start()
    pending = HeldTimer.made[-1]
    assert pending.interval == 0.5 and not pending.cancelled
    speaker.stop()
    assert pending.cancelled
    clock[0] += 1.0
    pending.function()  # had it fired meanwhile: nothing starts
    assert len(HeldThread.attempts) == 12 and len(HeldTimer.made) == 12


def test_with_real_timers_a_thread_that_could_not_start_runs_once_it_can_with_nobody_asking(tmp_path, monkeypatch):
    """The same with the speaker's real clock and timers, and its real thread once it starts (no peer: ExaBGP with
    no neighbor). Nothing asks the speaker while it waits."""
    monkeypatch.setattr(bgp.speakerthread, "threading", types.SimpleNamespace(
        Thread=FlakyThread, Lock=threading.Lock, Timer=threading.Timer))
    monkeypatch.setattr(FlakyThread, "attempts", [])
    monkeypatch.setattr(FlakyThread, "failing", True)
    speaker = Speaker(SpeakerConfig(asn=65000, router_id="10.0.0.1", neighbors=(), workdir=str(tmp_path)))
    speaker.start()
    try:
        assert wait_for(lambda: len(FlakyThread.attempts) >= 2)
        FlakyThread.failing = False
        assert wait_for(lambda: speaker._thread is not None and speaker._thread.ident is not None)
    finally:
        speaker.stop()


class NoTimer(Unfired):
    def start(self):
        raise RuntimeError("can't start new thread")


def test_a_timer_that_cannot_start_is_logged_once_and_asking_the_speaker_still_retries(tmp_path, clock, monkeypatch,
                                                                                        caplog):
    held_threads(monkeypatch, timer=NoTimer)
    caplog.set_level(logging.INFO, logger="canopy.bgp")
    speaker = Speaker(SpeakerConfig(asn=65000, router_id="10.0.0.1", neighbors=(), workdir=str(tmp_path)))
    speaker.start()
    for _ in range(3):
        clock[0] += BACKOFF_MAX
        speaker.status()
    assert len(HeldThread.attempts) == 4
    warned = [r.getMessage() for r in caplog.records if "no timer" in r.getMessage()]
    assert warned == ["BGP speaker: no timer to start its thread again (RuntimeError: can't start new thread); "
                      "retried when it is next asked or given a change"]
    HeldThread.failing = False
    clock[0] += BACKOFF_MAX
    speaker.status()
    assert speaker._thread.ident is not None
    speaker.stop()


def test_a_sighup_while_the_thread_cannot_start_keeps_the_back_off(tmp_path, clock, monkeypatch):
    """SIGHUP's settings handed over (``reconfigure``) while the speaker's thread could not start: its every failure
    was then a restart "at once" (the settings wait for that thread, so they stayed handed over), and its timer fired
    at once again and again: a retry without a back-off (a loop of starts and error lines), or, its timer firing
    while the failed retry still held the retry lock, no timer left at all. reconfigure tries at once; each failure
    after it waits on the back-off, which starts over; the settings stay handed over for the thread that starts."""
    held_threads(monkeypatch)
    speaker = Speaker(SpeakerConfig(asn=65000, router_id="10.0.0.1", neighbors=(), workdir=str(tmp_path)))
    speaker.start()
    for _ in range(3):
        clock[0] += HeldTimer.made[-1].interval
        HeldTimer.made[-1].function()
    assert len(HeldThread.attempts) == 4 and HeldTimer.made[-1].interval == 4.0
    reloaded = dataclasses.replace(speaker.config, asn=65001)
    assert speaker.reconfigure(reloaded)
    assert len(HeldThread.attempts) == 5  # at once
    delays = []
    for _ in range(3):
        timer = HeldTimer.made[-1]
        delays.append(timer.interval)
        clock[0] += timer.interval
        timer.function()
    assert delays == [0.5, 1.0, 2.0] and len(HeldThread.attempts) == 8
    assert speaker.status()["restart_in"] == 4.0 and speaker._next_config is reloaded
    HeldThread.failing = False
    clock[0] += 4.0
    HeldTimer.made[-1].function()
    assert speaker._thread.ident is not None and speaker._next_config is reloaded  # the thread takes them
    speaker.stop()
