"""REST /v1/bgp: peers and routes, with BGP off and with a configured (not started) speaker."""

import json

import pytest

from bgp.federation import Federation
from bgp.routes import MacIpRoute
from controller import settings as settings_mod
from controller.rest import bgp as rest_bgp
from controller.rest.api import Api
from controller.yamldoc import Doc
from tests.unit.helpers import Controller


@pytest.fixture
def ctl(tmp_path):
    c = Controller(tmp_path)
    yield c
    c.close()


def with_routes(ctl, federation):
    ctl.api = Api(ctl.service, ctl.state, ctl.settings, extra_routes=rest_bgp.routes(federation))
    return ctl


def test_bgp_off_answers_empty(ctl):
    with_routes(ctl, None)
    assert ctl.call("GET", "/v1/bgp/peers") == (200, {"items": [], "count": 0, "enabled": False})
    status, body = ctl.call("GET", "/v1/bgp/routes", query={"direction": "out", "type": "2"})
    assert status == 200 and body["items"] == []


@pytest.mark.parametrize("query, field", [({"direction": "sideways"}, "direction"), ({"type": "4"}, "type"),
                                          ({"kind": "2"}, "kind")])
def test_bad_queries_name_the_parameter(ctl, query, field):
    with_routes(ctl, None)
    status, body = ctl.call("GET", "/v1/bgp/routes", query=query)
    assert status == 400 and body["error"]["field"] == field


def test_configured_peers_and_routes(ctl, tmp_path):
    bgp = settings_mod.from_doc(Doc("<t>", {"bgp": {"router_id": "10.250.0.1", "neighbors": [
        {"address": "10.250.0.2", "asn": 65002}]}})).bgp
    federation = Federation(bgp, str(tmp_path), ctl.state)  # not started: no process, peers idle
    with_routes(ctl, federation)
    status, body = ctl.call("GET", "/v1/bgp/peers")
    assert status == 200 and body["enabled"] is True
    assert str(tmp_path) not in json.dumps(body) and "pid" not in body["speaker"]  # no paths, no pid
    assert body["mobility"] == {"not_announced": 0, "sticky": 0, "duplicate": 0, "duplicate_not_kept": 0,
                                "duplicate_dropped": 0, "duplicate_macs": []}
    federation.mobility.lost |= {("s", "02:00:00:00:00:01"), ("s", "02:00:00:00:00:02")}
    federation.mobility.lost_to_sticky.add(("s", "02:00:00:00:00:02"))
    assert ctl.call("GET", "/v1/bgp/peers")[1]["mobility"] == {"not_announced": 2, "sticky": 1, "duplicate": 0,
                                                                "duplicate_not_kept": 0, "duplicate_dropped": 0,
                                                                "duplicate_macs": []}
    from controller.metrics import _bgp

    [gauge] = [m for m in _bgp(federation) if m.name == "canopy_evpn_local_macs_not_announced"]
    assert sorted((s.labels["reason"], s.value) for s in gauge.samples) == [("sequence", 1), ("sticky", 1)]
    [peer] = body["items"]
    assert (peer["address"], peer["asn"], peer["state"], peer["received"]) == ("10.250.0.2", 65002, "idle", 0)
    route = MacIpRoute(rd="65000:1", mac="02:00:00:00:00:01", l2_vni=5001, next_hop="10.251.0.1")
    federation.speaker.set_desired({route.key: route})  # queued; nothing is announced until ExaBGP acks
    assert ctl.call("GET", "/v1/bgp/routes", query={"direction": "out"})[1]["items"] == []


class ListedSpeaker:
    """What the routes listing reads of a speaker: copies of the announced and received routes."""

    def __init__(self, announced):
        self._announced = announced

    def announced(self):
        return dict(self._announced)

    def received(self):
        return {("10.250.0.2", key): route for key, route in self._announced.items()}


def many_routes(count):
    routes = (MacIpRoute(rd="65000:1", mac=f"02:00:00:00:{i >> 8:02x}:{i & 0xff:02x}", l2_vni=5001,
                         next_hop="10.251.0.1") for i in range(count))
    return {route.key: route for route in routes}


@pytest.mark.parametrize("direction", ["out", "in"])
def test_listing_many_routes_pauses_and_answers_the_same(ctl, direction):
    """GET /v1/bgp/routes of 2,000 routes lets the event loop run every ROUTES_EVERY routes while it lists and
    encodes them (10,000 in one piece held it ~0.15-0.4 s), and answers what the unpaced listing answers."""
    federation = Federation(None, "/unused", ctl.state, speaker=ListedSpeaker(many_routes(2000)))
    with_routes(ctl, federation)
    plain = ctl.call("GET", "/v1/bgp/routes", query={"direction": direction})
    pauses = []
    ctl.api = Api(ctl.service, ctl.state, ctl.settings,
                  extra_routes=rest_bgp.routes(federation, lambda: pauses.append(1)))
    assert ctl.call("GET", "/v1/bgp/routes", query={"direction": direction}) == plain
    assert plain[1]["count"] == 2000 and plain[1]["items"] == sorted(plain[1]["items"], key=lambda e: e["mac"])
    assert len(pauses) >= 2 * 2000 // rest_bgp.ROUTES_EVERY  # listed, then encoded: each pauses (and freed)


def test_duplicate_macs_are_listed_counted_and_cleared(ctl, tmp_path):
    """RFC 7432 section 15.1: GET /v1/bgp/peers ``mobility`` lists the MACs flagged duplicate, /metrics counts them,
    DELETE /v1/bgp/duplicate-macs clears them (all, or one subnet's or MAC's) and wakes a programming pass; a bad
    MAC is refused naming the parameter, changing nothing."""
    from controller.metrics import _bgp

    bgp = settings_mod.from_doc(Doc("<t>", {"bgp": {"router_id": "10.250.0.1", "neighbors": [
        {"address": "10.250.0.2", "asn": 65002}], "duplicate_mac": {"max_moves": 2, "window": 60}}})).bgp
    federation = Federation(bgp, str(tmp_path), ctl.state)
    with_routes(ctl, federation)
    duplicates = federation.mobility.duplicates
    assert (duplicates.max_moves, duplicates.window) == (2, 60.0)
    now = [100.0]
    duplicates.clock = lambda: now[0]
    for mac, took in (("02:00:00:00:00:01", 7.5), ("02:00:00:00:00:02", 30.0)):
        assert not duplicates.moved(("s", mac), "into this controller")
        now[0] += took
        assert duplicates.moved(("s", mac), "away, to 10.251.0.9")
    mobility = ctl.call("GET", "/v1/bgp/peers")[1]["mobility"]
    assert mobility["duplicate"] == 2 and [(r["subnet_id"], r["mac"], r["took"], r["last_move"], r["window"]) for r in
                                           mobility["duplicate_macs"]] == [
        ("s", "02:00:00:00:00:01", 7.5, "away, to 10.251.0.9", 60.0),
        ("s", "02:00:00:00:00:02", 30.0, "away, to 10.251.0.9", 60.0)]
    [gauge] = [m for m in _bgp(federation) if m.name == "canopy_evpn_duplicate_macs"]
    assert [s.value for s in gauge.samples] == [2]
    status, body = ctl.call("DELETE", "/v1/bgp/duplicate-macs", query={"mac": "02:00:00:00:00:zz"})
    assert status == 400 and body["error"]["field"] == "mac" and len(duplicates.flagged) == 2
    woken = []
    ctl.state.subscribe(lambda what, detail: woken.append(what))
    status, body = ctl.call("DELETE", "/v1/bgp/duplicate-macs", query={"mac": "02:00:00:00:00:02"})
    assert status == 200 and [r["mac"] for r in body["items"]] == ["02:00:00:00:00:02"] and woken == ["bgp"]
    assert list(duplicates.flagged) == [("s", "02:00:00:00:00:01")]
    assert ctl.call("DELETE", "/v1/bgp/duplicate-macs")[1]["count"] == 1 and not duplicates.flagged


def _listed(ctl, count: int, direction: str) -> tuple[list, int]:
    """GET /v1/bgp/routes of ``count`` routes the speaker hands over in no order: (its items, the most bytecodes it
    ran between two pauses)."""
    import random

    from controller.rest.api import Request
    from tests.bytecodes import Bytecodes

    routes = list(many_routes(count).items())
    random.Random(count).shuffle(routes)
    federation = Federation(None, "/unused", ctl.state, speaker=ListedSpeaker(dict(routes)))
    counter, stretches = Bytecodes(), []

    def pause():
        stretches.append(counter.count)
        counter.count = 0

    api = Api(ctl.service, ctl.state, ctl.settings, extra_routes=rest_bgp.routes(federation, pause))
    body = counter.run(lambda: api.handle(Request("GET", "/v1/bgp/routes", {"direction": direction}, {}, b"",
                                                  "127.0.0.1")).encoded())
    stretches.append(counter.count)
    return json.loads(body)["items"], max(stretches)


@pytest.mark.parametrize("direction", ["out", "in"])
def test_the_routes_listing_sorts_pausing_in_stretches_that_do_not_grow_with_the_routes(ctl, direction):
    """GET /v1/bgp/routes sorted and unpacked every route in one stretch (10,000 routes: ~8-10 ms of C sorting and
    ~110,000 bytecodes, evpn_routes' listing after its announce, docs/benchmarks.md "wd46"): now a sorted run of
    openflow/pacedsort.py's RUN at a time, merged pausing. Counted, not timed: the longest stretch between two pauses is the same
    for 3,000 routes as for 300, and the answer is in the order it was (type, peer, the route's JSON)."""
    items, small = _listed(ctl, 300, direction)
    items, large = _listed(ctl, 3000, direction)
    assert len(items) == 3000
    assert items == sorted(items, key=lambda e: (e["type"], e.get("peer", ""), json.dumps(e, sort_keys=True)))
    assert large - small < 5000, (small, large)
