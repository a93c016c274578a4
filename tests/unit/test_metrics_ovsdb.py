"""/metrics counts OVSDB sessions without describing them: ``canopy_ovsdb_sessions`` came from
``OvsdbManagerServer.sessions()``, which builds every session's whole REST summary (its tunnel, bridge and VTEP
reconcilers' too) on each scrape, so a scrape cost grew with the fleet for three numbers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from controller.discovery import DiscoverySink
from ovsdb import server
from tests.unit.helpers import Controller
from tests.unit.sinks import Reports
from tests.unit.test_operate import samples, scrape
from tests.unit.test_ovsdb_hostile_updates import TwoClaims

SESSIONS = 300  # 200 VRS, 60 hardware VTEPs, 40 not identified yet


@pytest.fixture
def ctl(tmp_path):
    c = Controller(tmp_path)
    yield c
    c.close()


def _fleet() -> server.OvsdbManagerServer:
    manager = server.OvsdbManagerServer("127.0.0.1", 0, DiscoverySink())
    for i in range(SESSIONS):
        name = f"ovsdb:{i:03d}"
        session = server.PeerSession(manager, name, SimpleNamespace(peer=f"192.0.2.{i % 250}:{6640 + i}"))
        if i < 200:
            session._reporter.last = SimpleNamespace(chassis=f"hv{i}", session=f"hv{i}", ports=())
        elif i < 260:
            session._vtep_reporter.last = SimpleNamespace(name=f"tor{i}")
        manager._sessions[name] = session
    return manager


def test_a_scrape_counts_ovsdb_sessions_by_kind_without_describing_any(ctl, monkeypatch):
    manager = _fleet()
    described = []
    real = server.PeerSession.describe
    monkeypatch.setattr(server.PeerSession, "describe", lambda self: described.append(self.name) or real(self))
    ctl.api.metrics.attach(ovsdb=manager)
    got = samples(scrape(ctl.api))
    counts = {kind: got[("canopy_ovsdb_sessions", frozenset({("kind", kind)}))]
              for kind in ("vrs", "vtep", "unidentified")}
    assert counts == {"vrs": 200, "vtep": 60, "unidentified": 40}
    assert described == []  # before: one describe() per session and scrape (300 here)
    # the count reads sessions as the REST listing shows them: a switch named is a VTEP, a chassis a VRS
    listed = manager.sessions()
    assert counts == {"vrs": sum(1 for s in listed if not s["switch"] and s["chassis"]),
                      "vtep": sum(1 for s in listed if s["switch"]),
                      "unidentified": sum(1 for s in listed if not s["switch"] and not s["chassis"])}


def test_with_no_session_every_kind_is_listed_as_zero(ctl):
    ctl.api.metrics.attach(ovsdb=server.OvsdbManagerServer("127.0.0.1", 0, DiscoverySink()))
    got = samples(scrape(ctl.api))
    assert {k: got[("canopy_ovsdb_sessions", frozenset({("kind", k)}))] for k in ("vrs", "vtep", "unidentified")} \
        == {"vrs": 0, "vtep": 0, "unidentified": 0}


def test_refused_interface_claims_are_a_counter_of_every_session_that_outlives_each(ctl, caplog):
    """A hostile OVSDB peer claiming an interface another port holds was counted only in /v1/ovsdb/sessions (per open
    session, gone with it): now a Prometheus counter too, of every session together, that a session closing does
    not take down. Read in one look at the sessions' shared claims, not per session."""
    manager = server.OvsdbManagerServer("127.0.0.1", 0, Reports())
    ctl.api.metrics.attach(ovsdb=manager)
    refused = ("canopy_ovsdb_refused_interface_claims_total", frozenset())
    assert samples(scrape(ctl.api))[refused] == 0
    first, second = TwoClaims(caplog), TwoClaims(caplog)
    one = first.reporter(manager.claims)
    first.claim("evil", 0x60)
    first.step(one)
    first.claim("evil2", 0x61)
    first.step(one)
    assert one.refused_claims == 2 and samples(scrape(ctl.api))[refused] == 2
    one.gone()
    other = second.reporter(manager.claims)
    second.claim("evil", 0x60)
    second.step(other)
    assert samples(scrape(ctl.api))[refused] == 3
