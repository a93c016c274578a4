"""A BGP speaker that cannot run ExaBGP is a degraded speaker, from the controller's start on, and SIGHUP hands it new
bgp settings at once.

- An error in ``Speaker.start()`` (its exabgp.conf or relay socket cannot be written: an unusable data directory)
  went to the caller, the controller's start. Now every start of ExaBGP prepares them, and a failure is shown and
  retried as any other (bgp/speakerfail.py).
- A rejected exabgp.conf (or a failing start) stayed until Canopy restarted: SIGHUP left every bgp change for a
  restart. Now, while no ExaBGP is up, the speaker takes the reloaded bgp section and starts one at once."""

from __future__ import annotations

import logging
import os
import threading

import pytest

import bgp.speaker
from bgp.federation import Federation
from bgp.speaker import BACKOFF_MIN, POLL_INTERVAL
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


def _settings(tmp_path, neighbor, asn=65000):
    path = tmp_path / "canopy.yaml"
    path.write_text(f"data_dir: {tmp_path}\nbgp:\n  asn: {asn}\n  router_id: 10.250.0.1\n"
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
