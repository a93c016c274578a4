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
    [peer] = body["items"]
    assert (peer["address"], peer["asn"], peer["state"], peer["received"]) == ("10.250.0.2", 65002, "idle", 0)
    route = MacIpRoute(rd="65000:1", mac="02:00:00:00:00:01", l2_vni=5001, next_hop="10.251.0.1")
    federation.speaker.set_desired({route.key: route})  # queued; nothing is announced until ExaBGP acks
    assert ctl.call("GET", "/v1/bgp/routes", query={"direction": "out"})[1]["items"] == []
