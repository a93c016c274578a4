"""The OVSDB manager stopping (ovsdb/claims.py ``close``, ovsdb/server.py ``stop``): its sessions closing one by one
report nothing, so State keeps every switch and every vport where it was. Before stop 46, each closing session
reported its switch gone: a vport shown on two switches (a live migration in flight) was re-placed at the one still
open ("bound at hv1") and the rest unbound, in the log and for State's subscribers, though nothing had moved.
The case: pipeline_case with web3 migrating, active on hv2 (s2), pending on hv1 (s1)."""

from __future__ import annotations

import logging

import pytest

from ovsdb.claims import VrsClaims

from .test_activation import migrating


class Reporter:
    """A session's reporter as the claims see it (ovsdb/vrs.py ``VrsReporter``)."""

    def __init__(self, peer: str):
        self.peer = peer
        self.spoke = 0

    def speak(self) -> None:
        self.spoke += 1


def claimed(state, grace=0.0):
    """Claims speaking for State's two switches, as after their first reports; the reporters by session."""
    claims = VrsClaims(state, grace, logging.getLogger("test.claims"))
    reporters = {}
    for session in ("s1", "s2"):
        reporters[session] = Reporter(f"10.0.0.{len(reporters) + 1}:6640")
        claims.join(session, reporters[session])
        claims.report(session, state.vrs[session])
    return claims, reporters


def where(state):
    return {vid: (loc.chassis, loc.port) for vid, loc in state.locations.items()}


def test_a_session_ending_reports_its_switch_gone_and_its_migrating_vport_moves():
    state, _, web3 = migrating()
    claims, reporters = claimed(state)
    claims.leave("s2", reporters["s2"])
    assert "s2" not in state.vrs and state.locations[web3["id"]].chassis == "hv1"


def test_once_the_manager_stops_its_sessions_ending_change_nothing_in_state():
    state, _, web3 = migrating()
    claims, reporters = claimed(state)
    before, version, switches = where(state), state.version, set(state.vrs)
    assert claims.close() == 2
    claims.leave("s2", reporters["s2"])  # the active port's switch first: before, web3 was "bound at hv1"
    claims.left("s1", ["tapW3"])
    claims.leave("s1", reporters["s1"])
    claims.expire()
    assert set(state.vrs) == switches and where(state) == before and state.version == version
    assert state.locations[web3["id"]].chassis == "hv2"


def test_once_the_manager_stops_an_older_session_of_a_switch_does_not_speak_for_it_again():
    state, _, _ = migrating()
    claims, reporters = claimed(state)
    older = Reporter("10.0.0.9:6640")
    claims.join("s1", older)
    claims.leave("s1", older)  # (not the speaker: nothing to say)
    claims.join("s1", older)
    newest = Reporter("10.0.0.10:6640")
    claims.join("s1", newest)
    claims.close()
    claims.leave("s1", newest)
    assert older.spoke == 0 and "s1" in state.vrs


def test_a_stopped_manager_is_not_started_again():
    """Its claims stay closed (``stop``): started again, it would take sessions and report none of them, and no
    switch that did not come back would ever be reported gone. It refuses, binding nothing."""
    from ovsdb.server import OvsdbManagerServer

    manager = OvsdbManagerServer("127.0.0.1", 0, migrating()[0], log=logging.getLogger("test.claims"))
    manager.start()
    manager.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        manager.start()
    assert manager.accept_thread is None
