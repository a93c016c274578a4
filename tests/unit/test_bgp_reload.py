"""A BGP speaker that cannot run ExaBGP is a degraded speaker, from the controller's start on, and SIGHUP hands it new
bgp settings at once.

- An error in ``Speaker.start()`` (its exabgp.conf or relay socket cannot be written: an unusable data directory)
  went to the caller, the controller's start. Now every start of ExaBGP prepares them, and a failure is shown and
  retried as any other (bgp/speakerfail.py).
- A rejected exabgp.conf (or a failing start) stayed until Canopy restarted: SIGHUP left every bgp change for a
  restart. Now, while no ExaBGP is up, the speaker takes the reloaded bgp section and starts one at once: also when
  the SIGHUP comes while a retry is being started with the old section (review31b), with a new bgp.listen/bgp.port
  bound first as at start, and with duplicate_mac applied too."""

from __future__ import annotations

import errno
import logging
import os
import socket
import subprocess
import threading
import types

import pytest

import bgp.speaker
from bgp.federation import Federation
from bgp.speaker import BACKOFF_MIN, POLL_INTERVAL, exabgp_env
from controller import lifecycle, resttoken, runtime
from controller import settings as settings_mod
from tests.unit.test_speaker_start import PEER, FlakyEnv, clock, ctl, federation_of, turns, wait_for  # noqa: F401

NEW_PEER = "10.250.0.9"


def test_a_start_that_cannot_write_exabgp_conf_is_a_degraded_speaker_not_an_error_of_the_caller(ctl, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    doc = {"bgp": {"router_id": "10.250.0.1", "neighbors": [{"address": PEER, "asn": 65002}]}}
    federation = Federation(settings_mod.from_doc(settings_mod.yamldoc.Doc("<t>", doc)).bgp, str(blocked), ctl.state)
    from controller.rest import bgp as rest_bgp
    from controller.rest.api import Api

    ctl.api = Api(ctl.service, ctl.state, ctl.settings,
                  status_parts={"bgp": lambda: rest_bgp.status_part(federation)},
                  faults={"BGP speaker": lambda: rest_bgp.failure(federation)})
    federation.start()  # raised NotADirectoryError before: the controller's start failed
    try:
        assert wait_for(lambda: federation.speaker.status()["failure"] is not None, timeout=30)
        status = federation.speaker.status()
        assert status["failure"].startswith("could not start exabgp: [Errno 20] Not a directory")
        assert status["last_error"] == status["failure"] and not status["running"]
        [peer] = federation.peers()
        assert (peer["state"], peer["last_error"]) == ("down", status["failure"])
        reply = ctl.call("GET", "/v1/status")[1]
        assert reply["health"] == "degraded" and reply["degraded_reason"] == f"BGP speaker: {status['failure']}"
    finally:
        federation.stop()


def _failing(ctl, tmp_path, clock, monkeypatch):
    """A federation whose speaker's starts raise, after two attempts (waiting out its back-off)."""
    federation = federation_of(ctl, tmp_path)
    env = FlakyEnv(lambda: clock[0], RuntimeError("cannot start"))
    monkeypatch.setattr(bgp.speaker, "exabgp_env", env)
    federation.speaker._thread = threading.current_thread()  # started, as start() marks it (its turns run here)
    turns(federation.speaker, clock, 1.0)
    assert len(env.calls) == 2 and federation.speaker.status()["restart_in"] > 0  # waiting out its back-off
    return federation, env


def _settings(tmp_path, neighbor, asn=65000, extra=""):
    path = tmp_path / "canopy.yaml"
    path.write_text(f"data_dir: {tmp_path}\nbgp:\n  asn: {asn}\n  router_id: 10.250.0.1\n{extra}"
                    f"  neighbors:\n    - {{address: {neighbor}, asn: 65002}}\n")
    return str(path)


@pytest.fixture
def running(tmp_path):
    runtime.SETTINGS = resttoken.resolved(settings_mod.load(_settings(tmp_path, PEER)))
    yield
    runtime.SETTINGS = runtime.FEDERATION = None


def test_sighup_starts_a_failed_speaker_at_once_with_the_new_bgp_section(ctl, tmp_path, clock, monkeypatch, running,
                                                                         caplog):
    federation, env = _failing(ctl, tmp_path, clock, monkeypatch)
    runtime.FEDERATION = federation
    caplog.set_level(logging.WARNING, logger="canopy.lifecycle")
    lifecycle.reload(_settings(tmp_path, NEW_PEER))
    [line] = [r.getMessage() for r in caplog.records if "SIGHUP: bgp changed" in r.getMessage()]
    assert f"neighbor {NEW_PEER} added; neighbor {PEER} removed); applied: the BGP speaker had no exabgp up " \
           "(could not start exabgp: RuntimeError: cannot start)" in line
    assert [n.address for n in runtime.SETTINGS.bgp.neighbors] == [NEW_PEER]  # the next SIGHUP compares with these

    federation.speaker._supervise()  # the very next turn, without waiting out the back-off
    assert env.calls[-1] == clock[0] and len(env.calls) == 3
    speaker = federation.speaker
    assert [n.address for n in speaker.config.neighbors] == [NEW_PEER]
    with open(speaker.config.conf_path) as conf:
        text = conf.read()
    assert f"neighbor {NEW_PEER} {{" in text and PEER not in text  # exabgp.conf written from the new section
    assert [p["address"] for p in federation.peers()] == [NEW_PEER]
    assert speaker.status()["restart_in"] == pytest.approx(BACKOFF_MIN)  # the back-off started over


def test_sighup_leaves_a_running_speaker_and_a_changed_asn_for_a_restart(ctl, tmp_path, clock, monkeypatch, running,
                                                                        caplog):
    federation, env = _failing(ctl, tmp_path, clock, monkeypatch)
    runtime.FEDERATION = federation
    caplog.set_level(logging.WARNING, logger="canopy.lifecycle")
    lifecycle.reload(_settings(tmp_path, NEW_PEER, asn=65010))
    assert f"(bgp.asn also derives the policy's route distinguishers and targets)" in caplog.text
    federation.speaker._failure = None  # an ExaBGP is up (its API connected)
    caplog.clear()
    lifecycle.reload(_settings(tmp_path, NEW_PEER))
    assert f"not applied: BGP settings apply only after a restart ({lifecycle.BGP_RESTART})" in caplog.text
    assert [n.address for n in runtime.SETTINGS.bgp.neighbors] == [PEER]
    turns(federation.speaker, clock, 4 * POLL_INTERVAL)
    assert [n.address for n in federation.speaker.config.neighbors] == [PEER]
    assert not os.path.exists(federation.speaker.config.conf_path) or NEW_PEER not in open(
        federation.speaker.config.conf_path).read()


class SleepPopen:
    """ExaBGP's Popen, running ``sleep`` instead (in its own session, as ExaBGP: the speaker signals only that group;
    no BGP traffic); records the neighbors of each exabgp.conf it was started with."""

    def __init__(self):
        self.started = []

    def __call__(self, argv, **kwargs):
        with open(argv[-1]) as conf:
            self.started.append([w for line in conf for w in line.split()[1:2] if line.startswith("neighbor ")])
        return subprocess.Popen(["sleep", "60"], **{k: kwargs[k] for k in ("cwd", "stdin", "start_new_session")})


@pytest.fixture
def sleeping(monkeypatch):
    popen = SleepPopen()
    monkeypatch.setattr(bgp.speaker, "subprocess", types.SimpleNamespace(
        Popen=popen, DEVNULL=subprocess.DEVNULL, STDOUT=subprocess.STDOUT, TimeoutExpired=subprocess.TimeoutExpired))
    return popen


def _end(speaker):
    """Stop a speaker whose turns ran in the test's thread: its child terminated and reaped, its sockets closed."""
    speaker._stopping = True
    speaker._terminate_child()
    speaker._reap()
    speaker._thread = threading.Thread(target=lambda: None)
    speaker._thread.start()
    speaker.stop()


@pytest.mark.parametrize("start_fails", [False, True])
def test_a_sighup_during_a_retry_started_with_the_old_settings_starts_one_at_once_with_the_new(
        ctl, tmp_path, clock, monkeypatch, running, caplog, sleeping, start_fails):
    """reconfigure() came after the retry took its settings: that ExaBGP (or its failed start) had the old ones, while
    the log said "applied", and the new ones waited for its next exit (or its back-off)."""
    federation, _ = _failing(ctl, tmp_path, clock, monkeypatch)
    runtime.FEDERATION = federation
    speaker = federation.speaker

    def sighup_meanwhile(config, base=None):  # ExaBGP's environment is built between taking settings and Popen
        lifecycle.reload(_settings(tmp_path, NEW_PEER))
        if start_fails:
            raise RuntimeError("cannot start")
        return exabgp_env(config, base)

    monkeypatch.setattr(bgp.speaker, "exabgp_env", sighup_meanwhile)
    caplog.set_level(logging.WARNING)
    clock[0] += speaker.status()["restart_in"]
    try:
        speaker._supervise()  # the retry: the old settings taken, SIGHUP, then its start
        assert "applied: the BGP speaker had no exabgp up" in caplog.text
        monkeypatch.setattr(bgp.speaker, "exabgp_env", exabgp_env)
        assert speaker.status()["restart_in"] == 0 and not speaker.status()["running"]
        speaker._supervise()  # the very next turn, the clock not moved
        assert sleeping.started == ([] if start_fails else [[PEER]]) + [[NEW_PEER]]
        assert [n.address for n in speaker.config.neighbors] == [NEW_PEER] and speaker.status()["running"]
        if not start_fails:
            assert "exabgp stopped: it was started with the bgp settings a SIGHUP replaced meanwhile (pid " in \
                caplog.text and "restarting in 0.0s with the reloaded bgp settings" in caplog.text
    finally:
        _end(speaker)


def test_a_wake_pair_that_cannot_be_made_is_a_degraded_speaker_not_an_error_of_start(ctl, tmp_path, monkeypatch,
                                                                                   sleeping):
    """socket.socketpair() in Speaker.start() raised to the controller's start (no file descriptor left)."""
    federation = federation_of(ctl, tmp_path)
    speaker = federation.speaker
    real = socket.socketpair

    def exhausted(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(socket, "socketpair", exhausted)
    speaker.start()  # raised OSError before
    try:
        reason = "could not start exabgp: [Errno 24] Too many open files"
        assert wait_for(lambda: speaker.status()["failure"] == reason, timeout=30)
        assert ctl.call("GET", "/v1/status")[1]["degraded_reason"] == f"BGP speaker: {reason}"
        monkeypatch.setattr(socket, "socketpair", real)
        assert wait_for(lambda: speaker.status()["running"], timeout=30)  # the next attempt, on the back-off
        assert sleeping.started == [[PEER]] and speaker._wake_w is not None
    finally:
        speaker.stop()


@pytest.fixture
def busy_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    yield sock.getsockname()[1]
    sock.close()


def test_sighup_refuses_a_bgp_listen_or_port_the_host_refuses_naming_the_key(ctl, tmp_path, clock, monkeypatch,
                                                                              running, caplog, busy_port):
    federation, _ = _failing(ctl, tmp_path, clock, monkeypatch)
    runtime.FEDERATION = federation
    caplog.set_level(logging.WARNING)
    before, held = runtime.SETTINGS, federation.settings
    for extra, why in ((f"  listen: 127.0.0.1\n  port: {busy_port}\n", f"bgp.port: 127.0.0.1:{busy_port} is already "
                        "in use"), ("  listen: 192.0.2.77\n", "bgp.listen: 192.0.2.77 is not an address of this host")):
        caplog.clear()
        path = _settings(tmp_path, NEW_PEER, extra=extra)
        lifecycle.reload(path)
        assert f"SIGHUP: {path} not reloaded; the running settings stay: {why}" in caplog.text
        assert "SIGHUP: reloaded" not in caplog.text and runtime.SETTINGS is before
        assert federation.speaker._next_config is None and federation.settings is held
    caplog.clear()
    free = socket.socket()
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    lifecycle.reload(_settings(tmp_path, NEW_PEER, extra=f"  listen: 127.0.0.1\n  port: {port}\n"))  # one it can bind
    assert "applied: the BGP speaker had no exabgp up" in caplog.text
    assert runtime.SETTINGS.bgp.listen == "127.0.0.1" and federation.speaker._next_config.listen_port == port


def test_sighup_applies_duplicate_mac_with_the_rest_of_the_bgp_section(ctl, tmp_path, clock, monkeypatch, running):
    """The log says every bgp key but asn applied: duplicate_mac (evpnmob) was left to the detector made at start."""
    federation, _ = _failing(ctl, tmp_path, clock, monkeypatch)
    runtime.FEDERATION = federation
    lifecycle.reload(_settings(tmp_path, NEW_PEER,
                               extra="  duplicate_mac: {max_moves: 3, window: 60, enabled: false}\n"))
    duplicates = federation.mobility.duplicates
    assert (duplicates.max_moves, duplicates.window, duplicates.enabled) == (3, 60.0, False)
    # with another bgp key changed, the speaker takes the section at once (duplicate_mac alone: the test below)
    assert [n.address for n in federation.speaker._next_config.neighbors] == [NEW_PEER]
    assert runtime.SETTINGS.bgp.duplicate_mac.max_moves == 3


def test_sighup_changing_only_duplicate_mac_leaves_a_failed_speakers_retry_alone(ctl, tmp_path, clock, monkeypatch,
                                                                                 running, caplog):
    """review32: duplicate_mac alone re-applied the whole bgp section: ExaBGP started at once, its back-off reset."""
    federation, env = _failing(ctl, tmp_path, clock, monkeypatch)
    runtime.FEDERATION = federation
    speaker = federation.speaker
    due, backoff, config = speaker._next_start, speaker._backoff, speaker.config
    caplog.set_level(logging.INFO, logger="canopy.lifecycle")
    lifecycle.reload(_settings(tmp_path, PEER, extra="  duplicate_mac: {max_moves: 3, enabled: false}\n"))
    duplicates = federation.mobility.duplicates
    assert (duplicates.max_moves, duplicates.enabled) == (3, False)  # applied to MAC mobility
    assert runtime.SETTINGS.bgp.duplicate_mac.max_moves == 3  # the next SIGHUP compares with these
    assert "bgp.duplicate_mac applied (enabled True -> False, max_moves 5 -> 3)" in caplog.text
    assert "SIGHUP: bgp changed" not in caplog.text  # nothing else of bgp changed
    assert (speaker._next_start, speaker._backoff, speaker._next_config) == (due, backoff, None)  # retry as it was
    speaker._supervise()
    assert len(env.calls) == 2 and speaker.config is config  # not started at once
