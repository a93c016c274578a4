"""Pure parts of the hostile-peer defences (docs/limits.md): the OVSDB message framer, REST checks made
from headers alone, connection counting, datapath-id claims and the limit settings."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import ovs.json
import pytest

from controller.discovery import VrsSnapshot
from controller.guard import ConnectionLimits
from controller.rest.wire import Request
from ovsdb.jsonstream import MAX_DEPTH, Parser

from .helpers import Controller

SAMPLES = [
    {"id": 1, "method": "update",
     "params": [None, {"Interface": {"u1": {"new": {"name": "tap\u00e9\"]}", "ofport": 7, "mtu": 1.5, "up": True}}}}]},
    ["a\\\"b", {"k": [[], {}, [[[]]]], "\\": "\\\\"}, -3, 2.5e10, False, None, "\u2603 snow"],
    {"result": ["x" * 5000, "y\\n\\u0041" * 100], "error": None, "id": "echo"},
]


def feed_in_pieces(parser, text, rng):
    """Feed ``text`` in random pieces as a Connection does; returns what is left after the value."""
    while text:
        n = rng.randint(1, 50)
        taken = parser.feed(text[:n])
        if parser.is_done():
            return text[taken:]
        assert taken == min(n, len(text))
        text = text[n:]
    return ""


@pytest.mark.parametrize("sample", SAMPLES)
def test_framer_decodes_like_the_ovs_parser_whatever_the_pieces(sample):
    text = json.dumps(sample)
    expected = ovs.json.from_string(text)
    for seed in range(20):
        parser = Parser(1 << 20)
        rest = feed_in_pieces(parser, "  \n" + text + ' {"next": 1}', random.Random(seed))
        assert parser.finish() == expected
        assert rest == ' {"next": 1}'


@pytest.mark.parametrize("text, reason", [
    ('"just a string"', "an object or array is expected"),
    ("[" * (MAX_DEPTH + 1), f"nested deeper than {MAX_DEPTH}"),
    ("[NaN]", "invalid JSON"),
    ('{"a": 1,}', "invalid JSON"),
    ('{"a": [1}}', "invalid JSON"),  # brackets are counted, not matched: the decoder finds it
])
def test_framer_refuses_what_is_not_a_json_rpc_message(text, reason):
    parser = Parser(1 << 20)
    parser.feed(text)
    if not parser.is_done():
        parser.feed(" ")
    result = parser.finish()
    assert isinstance(result, str) and reason in result


def test_a_message_over_the_cap_is_refused_before_the_rest_arrives():
    parser = Parser(1000)
    piece = '["' + "x" * 600
    assert parser.feed(piece) == len(piece) and not parser.is_done()
    parser.feed("x" * 600)
    assert parser.is_done() and "message longer than 1000 characters" in parser.finish()
    assert parser.feed("x" * 600) == 0  # nothing more is taken


def test_an_unfinished_message_is_an_error():
    parser = Parser(1000)
    parser.feed('{"a": "b')
    assert parser.finish() == "unexpected end of input"
    assert Parser(10).finish() == "empty input stream"


# ------------------------------------------------------------------------------------------ REST checks

@pytest.fixture
def ctl(tmp_path):
    c = Controller(tmp_path)
    yield c
    c.close()


def test_preflight_decides_from_headers_alone(ctl):
    def pre(method, path, headers=None, remote="10.0.0.9"):
        return ctl.api.preflight(Request(method, path, {}, headers or {}, b"", remote))

    refused = pre("POST", "/v1/tenants")
    assert refused.status == 401 and refused.body["error"]["code"] == "unauthorized"
    assert pre("POST", "/v1/tenants", {"authorization": "Bearer wrong"}).status == 401
    assert pre("POST", "/v1/tenants", {"authorization": f"Bearer {ctl.settings.rest_token}"}) is None
    auth = {"authorization": f"Bearer {ctl.settings.rest_token}"}
    refused = pre("DELETE", "/v1/status", auth)
    assert refused.status == 405 and refused.headers["Allow"] == "GET"
    assert pre("GET", "/v1/status\n", auth).status == 404
    assert pre("GET", "/v1/nothing", auth).status == 404
    for method, path in (("DELETE", "/v1/status"), ("GET", "/v1/status\n"), ("GET", "/v1/nothing")):
        assert pre(method, path).status == 401, (method, path)  # the token before the path: no shape told


def test_405_through_handle_names_the_allowed_methods(ctl):
    resp = ctl.api.handle(Request("PUT", "/v1/tenants", {}, {"authorization": f"Bearer {ctl.settings.rest_token}"},
                                  b"", "127.0.0.1"))
    assert resp.status == 405 and resp.headers["Allow"] == "GET, POST"


def test_a_path_ending_in_a_newline_is_not_the_path_without_it(ctl):
    status, reply = ctl.call("GET", "/v1/status\n")
    assert status == 404 and reply["error"]["code"] == "not_found"


# ------------------------------------------------------------------------------------- connection counts

def test_connection_limits_per_source_and_in_all():
    limits = ConnectionLimits(per_source=2, total=3)
    assert limits.admit("a") is None and limits.admit("a") is None
    assert "already has 2 connections" in limits.admit("a")
    assert limits.admit("b") is None
    assert "3 connections are open" in limits.admit("c")
    limits.release("a")
    assert limits.admit("c") is None and limits.count() == 3


# ------------------------------------------------------------------------------------- datapath claims

def fake_dp(ip, dpid=0x1234, active=False):
    return SimpleNamespace(address=(ip, 40000), id=dpid, is_active=active, state="main")


def state_with_chassis(peer_ip, dpid=0x1234):
    snap = VrsSnapshot(session="ovsdb:x", peer=f"{peer_ip}:5555", chassis="hv1", datapath_id=dpid,
                       controllers=(("tcp:10.250.0.1:6653", True, "master"),))
    return SimpleNamespace(vrs={"ovsdb:x": snap})


def test_the_chassis_address_decides_a_contested_datapath():
    from openflow import claims

    state = state_with_chassis("10.250.0.11")
    keep, reason = claims.decide(state, fake_dp("10.250.0.11"), fake_dp("127.0.0.1"), 6653)
    assert keep and "chassis hv1 reports over OVSDB from 10.250.0.11" in reason
    assert "tcp:10.250.0.1:6653 connected" in reason
    keep, _ = claims.decide(state, fake_dp("127.0.0.1"), fake_dp("10.250.0.11"), 6653)
    assert not keep  # the impostor came first; the real switch takes its session back


def test_without_a_witness_a_dead_session_gives_way():
    from openflow import claims

    keep, reason = claims.decide(SimpleNamespace(vrs={}), fake_dp("10.0.0.1", active=False),
                                 fake_dp("10.0.0.2"), 6653)
    assert not keep and "did not answer" in reason


# ------------------------------------------------------------------------------------------- settings

def test_limit_settings_defaults_and_overrides(tmp_path):
    from controller import settings as settings_mod
    from controller import yamldoc

    s = settings_mod.from_doc(yamldoc.Doc("x.yaml", {}))
    assert s.limits == settings_mod.Limits()
    doc = {"openflow": {"handshake_timeout_ms": 2500, "max_connections_per_source": 4},
           "ovsdb": {"max_message_bytes": 1 << 20}, "rest": {"max_connections": 10, "body_timeout_ms": 1500}}
    s = settings_mod.from_doc(yamldoc.Doc("x.yaml", doc))
    assert (s.limits.openflow_handshake_timeout, s.limits.openflow_per_source) == (2.5, 4)
    assert (s.limits.ovsdb_max_message, s.limits.rest_max_connections, s.limits.rest_body_timeout) == \
        (1 << 20, 10, 1.5)
    with pytest.raises(settings_mod.SettingsError) as info:
        settings_mod.from_doc(yamldoc.Doc("x.yaml", {"ovsdb": {"max_message_bytes": 100}}))
    assert "ovsdb.max_message_bytes" in str(info.value)


# ------------------------------------------------------------------------------------- REST server app

def wsgi_call(server, method, path, body=b"", headers=None, remote="127.0.0.1"):
    import io

    environ = {"REQUEST_METHOD": method, "PATH_INFO": path.encode().decode("latin-1"), "QUERY_STRING": "",
               "REMOTE_ADDR": remote, "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body))}
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
    got = {}

    def start_response(status, response_headers):
        got["status"], got["headers"] = int(status.split()[0]), dict(response_headers)

    reply = b"".join(server.application(environ, start_response))
    return got["status"], got["headers"], json.loads(reply)


def test_rest_server_app_refuses_before_reading_and_decodes_utf8_paths(ctl):
    from controller.rest.server import RestServer
    from controller.settings import Limits

    server = RestServer("127.0.0.1", 0, ctl.api, Limits(rest_max_body=1024))
    auth = {"Authorization": f"Bearer {ctl.settings.rest_token}", "Content-Type": "application/json"}
    status, headers, reply = wsgi_call(server, "POST", "/v1/tenants", b'{"name": "acme"}', auth)
    assert status == 201 and headers["Location"].startswith("/v1/tenants/")
    status, _, reply = wsgi_call(server, "POST", "/v1/tenants", b"x" * 2048, auth)
    assert status == 413 and reply["error"]["code"] == "too_large"
    status, _, reply = wsgi_call(server, "POST", "/v1/tenants", b'{"name": "x"}',
                                 {**auth, "Transfer-Encoding": "chunked"})
    assert status == 411 and reply["error"]["code"] == "length_required"
    status, _, reply = wsgi_call(server, "POST", "/v1/tenants", b"x" * 2048, remote="10.0.0.5")
    assert status == 401  # the token is checked before the size, and nothing is read
    status, _, reply = wsgi_call(server, "GET", "/v1/tenants/caf\u00e9")
    assert status == 404 and "caf\u00e9" in reply["error"]["reason"]
