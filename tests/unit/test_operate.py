"""Operating Canopy: /metrics, the one log stream and its level, flow filters, start checks, SIGHUP reload,
and the CLI's check-settings, status and apply from standard input."""

from __future__ import annotations

import http.server
import io
import json
import logging
import socket
import sys
import threading
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller import cli, lifecycle, logs, runtime
from controller.cli_status import render_status
from controller.rest import dataplane as rest_dataplane
from controller.rest.api import Api
from controller.rest.wire import Request
from controller.programmer import Programmer
from tests.unit.helpers import TOKEN, Controller, FederationStandIn, demo_net


@pytest.fixture
def ctl(tmp_path):
    c = Controller(tmp_path)
    yield c
    c.close()


@pytest.fixture
def log_stream():
    """Canopy's one handler writing to a buffer at info; the previous logging set-up is restored after."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), logging.lastResort)
    stream = io.StringIO()
    logs.setup("info", "text", stream)
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[1]:
        root.addHandler(handler)
    root.setLevel(saved[0])
    logging.lastResort = saved[2]


def scrape(api, remote="127.0.0.1", token=None):
    headers = {"authorization": f"Bearer {token}"} if token else {}
    resp = api.handle(Request("GET", "/metrics", {}, headers, b"", remote))
    return resp


def samples(resp):
    """{(name, frozenset(labels)): value} from a Prometheus text body."""
    out = {}
    for family in text_string_to_metric_families(resp.encoded().decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


# ------------------------------------------------------------------------------------------- metrics

def test_metrics_are_prometheus_text_with_store_sequence_and_rest_requests(ctl):
    demo_net(ctl)
    ctl.call("GET", "/v1/nowhere")
    ctl.call("GET", "/v1/tenants", query={"bogus": "1"})
    resp = scrape(ctl.api)
    assert resp.status == 200 and resp.content_type.startswith("text/plain; version=")
    got = samples(resp)
    assert got[("canopy_store_sequence", frozenset())] == ctl.state.last_seq == 3
    assert got[("canopy_policy_objects", frozenset({("kind", "subnet")}))] == 1
    created = frozenset({("method", "POST"), ("route", "/v1/tenants"), ("code", "201")})
    assert got[("canopy_rest_requests_total", created)] == 1
    assert got[("canopy_rest_requests_total", frozenset({("method", "GET"), ("route", "unmatched"),
                                                         ("code", "404")}))] == 1
    bad = frozenset({("method", "GET"), ("route", "/v1/tenants"), ("code", "400")})
    assert got[("canopy_rest_requests_total", bad)] == 1
    timing = frozenset({("method", "POST"), ("route", "/v1/tenants")})
    assert got[("canopy_rest_request_duration_seconds_count", timing)] == 1
    assert got[("canopy_ha_role", frozenset({("role", "standalone")}))] == 1
    assert ("process_start_time_seconds", frozenset()) in got


def test_metrics_route_labels_are_patterns_not_ids(ctl):
    tenant, _, _ = demo_net(ctl)
    ctl.call("GET", f"/v1/tenants/{tenant['id']}")
    names = {dict(labels).get("route") for (name, labels) in samples(scrape(ctl.api))
             if name == "canopy_rest_requests_total"}
    assert "/v1/tenants/{id}" in names and not any(tenant["id"] in (n or "") for n in names)


def test_metrics_show_the_startup_hold_until_it_is_released(ctl, tmp_path):
    from controller.startup_hold import KEY, StartupHold
    from controller.store import Store

    store = Store(str(tmp_path / "hold"))
    store.set_meta(KEY, {"vrs": ["hv1", "hv2"], "vteps": ["tor1"]})
    hold = StartupHold(store, 15.0)
    ctl.api.metrics.attach(hold=hold)
    hold.check({"hv1"}, set())
    got = samples(scrape(ctl.api))
    assert got[("canopy_startup_hold", frozenset())] == 1
    assert got[("canopy_startup_hold_waiting_switches", frozenset({("kind", "vrs")}))] == 1
    assert got[("canopy_startup_hold_waiting_switches", frozenset({("kind", "vtep")}))] == 1
    assert 0 < got[("canopy_startup_hold_seconds_left", frozenset())] <= 15
    assert hold.check({"hv1", "hv2"}, {"tor1"})
    got = samples(scrape(ctl.api))
    assert got[("canopy_startup_hold", frozenset())] == 0
    assert got[("canopy_startup_hold_waiting_switches", frozenset({("kind", "vrs")}))] == 0
    assert got[("canopy_startup_hold_seconds_left", frozenset())] == 0
    store.close()


class _Reconciler:
    """A switch's reconciler as a scrape reads it."""

    change_seconds = 0.5

    def status(self, tick=None) -> dict:
        return {"desired": 16_000, "installed": 16_000, "pending": 0, "rejected": 0, "kept": 0,
                "groups": {"desired": 16, "installed": 16, "rejected": 0}, "state": "in_sync",
                "sent": {"flow_add": 16_000, "change_sets": 1, "read_backs": 1},
                "meters": {"supported": True, "desired": 3, "installed": 3, "rejected": 0, "warning": None},
                "packet_ins": {"activation": 0, "dhcp": 2, "other": 0}}


def test_a_scrape_of_many_switches_pauses_per_switch_and_per_family(ctl):
    """Every switch's samples are added with a pause per switch (50 switches in one go: 30-50 ms in vrs_scale's
    takeover), and each family is followed by a pause (prometheus_client formats it as soon as it is yielded)."""
    switches = 50
    pauses = []
    ctl.api.metrics.attach(reconcilers=lambda: {dpid: _Reconciler() for dpid in range(1, switches + 1)},
                           pause=lambda: pauses.append(1))
    got = samples(scrape(ctl.api))
    assert got[("canopy_switch_flows", frozenset({("datapath", f"{50:016x}"), ("chassis", ""),
                                                  ("kind", "desired")}))] == 16_000
    per_switch_families = len({name for name, _ in got if name.startswith("canopy_switch_")})
    assert per_switch_families >= 9
    assert len(pauses) >= 2 * switches + per_switch_families  # main: one per switch (while reading their counts)


@pytest.mark.parametrize("supported", [None, True, False])
def test_a_switchs_meter_support_is_absent_until_the_switch_has_said(ctl, supported):
    """``canopy_switch_meters{kind="supported"}``: 1 or 0 once the switch's meter features are read; no sample before
    (at stop 45 it read 1 while the switch had not said)."""
    rec = _Reconciler()
    status = rec.status()
    status["meters"]["supported"] = supported
    rec.status = lambda tick=None: status
    ctl.api.metrics.attach(reconcilers=lambda: {7: rec}, pause=lambda: None)
    got = samples(scrape(ctl.api))
    labels = frozenset({("datapath", f"{7:016x}"), ("chassis", "")})
    assert got.get(("canopy_switch_meters", labels | {("kind", "supported")})) == \
        {None: None, True: 1, False: 0}[supported]
    assert got[("canopy_switch_meters", labels | {("kind", "desired")})] == 3


def test_metrics_follow_the_read_rules(ctl):
    assert scrape(ctl.api, remote="10.9.9.9").status == 401
    assert scrape(ctl.api, remote="10.9.9.9", token=TOKEN).status == 200
    assert scrape(ctl.api, remote="::1").status == 200


def test_event_loop_lag_is_the_sleeps_overshoot(ctl):
    times = [0.0, 0.5, 1.0, 1.75]

    def clock():
        return times.pop(0) if len(times) > 1 else times[0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        if len(slept) == 2:
            raise StopIteration

    with pytest.raises(StopIteration):
        ctl.api.metrics.watch_loop(sleep, interval=0.5, clock=clock)
    got = samples(scrape(ctl.api))
    assert got[("canopy_event_loop_lag_seconds_count", frozenset())] == 1
    assert got[("canopy_event_loop_lag_last_seconds", frozenset())] == 0.0
    ctl.api.metrics.record_lag(0.25)
    got = samples(scrape(ctl.api))
    assert got[("canopy_event_loop_lag_last_seconds", frozenset())] == 0.25
    assert got[("canopy_event_loop_lag_seconds_bucket", frozenset({("le", "0.1")}))] == 1
    assert got[("canopy_event_loop_lag_max_seconds", frozenset())] == 0.25
    lag = ctl.api.status(None).body["event_loop_lag"]
    assert lag["current_ms"] == 250.0 and lag["max_1m_ms"] == 250.0


# ---------------------------------------------------------------------------------------------- logs

def test_log_level_changes_at_run_time_with_the_write_token(ctl, log_stream):
    assert ctl.call("PUT", "/v1/log-level", {"level": "debug"}, token=None)[0] == 401
    status, reply = ctl.call("PUT", "/v1/log-level", {"level": "loud"})
    assert status == 422 and reply["error"]["field"] == "level"
    status, reply = ctl.call("PUT", "/v1/log-level", {"level": "debug", "loud": True})  # changes nothing
    assert status == 422 and reply["error"]["field"] == "loud" and reply["error"]["reason"] == "unknown field"
    assert ctl.call("GET", "/v1/log-level") == (200, {"level": "info"})
    status, reply = ctl.call("PUT", "/v1/log-level", {"level": "debug"})
    assert (status, reply) == (200, {"level": "debug", "previous": "info"})
    assert ctl.call("GET", "/v1/log-level") == (200, {"level": "debug"})
    assert logging.getLogger("ryu.controller.controller").isEnabledFor(logging.DEBUG)
    ctl.call("PUT", "/v1/log-level", {"level": "error"})
    assert not logging.getLogger("canopy.app").isEnabledFor(logging.WARNING)
    assert "log level changed from debug to error over REST" in log_stream.getvalue()


def test_access_line_obeys_the_level_and_never_shows_the_query(ctl, log_stream, tmp_path):
    ctl.call("GET", "/v1/tenants", query={"name": "secret-name"})
    assert "/v1/tenants" not in log_stream.getvalue()
    logs.set_level("debug")
    ctl.call("GET", "/v1/tenants", query={"name": "secret-name"})
    lines = [line for line in log_stream.getvalue().splitlines() if "canopy.rest.access" in line]
    assert len(lines) == 1 and "DEBUG" in lines[0] and "GET /v1/tenants -> 200" in lines[0]
    assert "secret-name" not in log_stream.getvalue()
    logs.set_level("info")
    loud = Controller(tmp_path / "loud", access_log=True)
    loud.call("GET", "/v1/status", query={"token": "x"})
    loud.close()
    assert any("INFO" in line and "GET /v1/status -> 200" in line for line in log_stream.getvalue().splitlines())


def test_eventlet_chatter_is_debug_and_its_access_lines_are_dropped(log_stream):
    hub = logging.getLogger("ryu.lib.hub")
    hub.info("(123) accepted ('127.0.0.1', 4242)")
    hub.info('127.0.0.1 - - [03/Dec/2026 10:00:00] "GET /v1/tenants?name=x HTTP/1.1" 200 10 0.001')
    hub.info("(123) wsgi starting up on http://127.0.0.1:8080")
    logging.Logger("eventlet").error("1 RLock(s) were not greened, to fix this error make sure you run ...")
    assert log_stream.getvalue() == ""
    logs.set_level("debug")
    hub.info("(123) accepted ('127.0.0.1', 4243)")
    hub.info('127.0.0.1 - - [03/Dec/2026 10:00:00] "GET /v1/tenants?name=x HTTP/1.1" 200 10 0.001')
    hub.error("something real")
    lines = log_stream.getvalue().splitlines()
    assert len(lines) == 2 and "DEBUG" in lines[0] and "accepted" in lines[0] and "ERROR" in lines[1]


def test_json_lines_for_every_logger(log_stream):
    logs.setup("info", "json", log_stream)
    logging.getLogger("ryu.base.app_manager").info("loading app %s", "x")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("canopy.app").exception("failed")
    records = [json.loads(line) for line in log_stream.getvalue().splitlines() if line.startswith("{")]
    assert [(r["level"], r["logger"], r["message"]) for r in records] == [
        ("info", "ryu.base.app_manager", "loading app x"), ("error", "canopy.app", "failed")]
    assert "ValueError: boom" in records[1]["exc"] and records[0]["time"].endswith("Z")


# --------------------------------------------------------------------------------------- flows view

def flows_api(ctl):
    """An Api with the dataplane routes over a switch known over OVSDB only (desired flows, none installed)."""
    from controller.discovery import PortInfo, VrsSnapshot

    tenant, domain, subnet = demo_net(ctl)
    vport = ctl.create("vports", {"subnet_id": subnet["id"], "name": "vm1", "mac": "02:00:00:00:00:01",
                                  "binding": {"flavour": "kvm", "iface_id": "vm1"}})
    port = PortInfo(name="tap1", ofport=5, mac="02:00:00:00:00:01",
                    external_ids=(("iface-id", "vm1"), ("attached-mac", "02:00:00:00:00:01")))
    ctl.state.vrs_update(VrsSnapshot(session="s1", chassis="hv1", hostname="hv1", peer="127.0.0.1:1", bridge="br-int",
                                     bridge_present=True, datapath_id=0xA, vtep_ip="192.0.2.10", flavour="kvm",
                                     ports=(port,)))
    programmer = Programmer(ctl.state)
    programmer.refresh(full=True)
    api = Api(ctl.service, ctl.state, ctl.settings, extra_routes=rest_dataplane.routes(ctl.state, programmer, dict))
    return api, vport


def get_flows(api, query):
    resp = api.handle(Request("GET", "/v1/switches/000000000000000a/flows", query, {}, b"", "127.0.0.1"))
    return resp.status, json.loads(resp.encoded())


def test_flows_filter_by_table_cookie_and_owner(ctl):
    api, vport = flows_api(ctl)
    status, everything = get_flows(api, {})
    assert status == 200 and everything["count"] > 3
    first = everything["flows"][0]
    status, by_table = get_flows(api, {"table": str(first["table"])})
    assert by_table["flows"] == [f for f in everything["flows"] if f["table"] == first["table"]]
    assert get_flows(api, {"table": first["table_name"]})[1]["flows"] == by_table["flows"]
    status, by_cookie = get_flows(api, {"cookie": first["cookie"]})
    assert by_cookie["flows"] and all(f["cookie"] == first["cookie"] for f in by_cookie["flows"])
    assert get_flows(api, {"cookie": str(int(first["cookie"], 16))})[1]["flows"] == by_cookie["flows"]
    mine = get_flows(api, {"owner": vport["id"], "table": str(first["table"])})[1]["flows"]
    assert all(f["owner"]["id"] == vport["id"] and f["table"] == first["table"] for f in mine)


def test_flows_refuse_unknown_parameters_and_bad_values(ctl):
    api, _ = flows_api(ctl)
    for query, field in (({"tabel": "0"}, "tabel"), ({"table": "nope"}, "table"), ({"cookie": "0xzz"}, "cookie")):
        status, reply = get_flows(api, query)
        assert status == 400 and reply["error"]["field"] == field, reply


# ------------------------------------------------------------------------------------ start checks

def test_preflight_names_the_setting_for_a_port_in_use_and_a_foreign_address(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        with pytest.raises(lifecycle.StartError, match=rf"^ovsdb\.port: 127\.0\.0\.1:{port} is already in use"):
            lifecycle.check_listeners([("openflow", "127.0.0.1", 0), ("ovsdb", "127.0.0.1", port)])
    finally:
        busy.close()
    with pytest.raises(lifecycle.StartError, match=r"^rest\.listen: 192\.0\.2\.77 is not an address of this host"):
        lifecycle.check_listeners([("rest", "192.0.2.77", 8080)])
    with pytest.raises(lifecycle.StartError, match=r"^openflow\.port: .* already in use"):
        free = socket.socket()
        free.bind(("127.0.0.1", 0))
        same = free.getsockname()[1]
        free.close()
        lifecycle.check_listeners([("rest", "127.0.0.1", same), ("openflow", "127.0.0.1", same)])


def test_preflight_data_dir(tmp_path):
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(lifecycle.StartError, match=r"^data_dir: .* is not a directory"):
        lifecycle.check_data_dir(str(afile))
    with pytest.raises(lifecycle.StartError, match=r"^data_dir: cannot create"):
        lifecycle.check_data_dir(str(afile / "below"))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "canopy.db").write_text("not a database at all, just text" * 100)
    with pytest.raises(lifecycle.StartError, match=r"^data_dir: cannot open the store"):
        lifecycle.check_data_dir(str(broken))
    lifecycle.check_data_dir(str(tmp_path / "fresh"))


# ------------------------------------------------------------------------------------------- SIGHUP

def test_reload_applies_log_level_and_token_and_names_the_rest(tmp_path, log_stream):
    ctl = Controller(tmp_path)
    config = tmp_path / "canopy.yaml"
    token_file = tmp_path / "token"
    token_file.write_text("first-token\n")
    token_file.chmod(0o600)
    config.write_text(f"data_dir: {tmp_path / 'data'}\nrest: {{token_file: {token_file}}}\n")
    runtime.SETTINGS = ctl.api.settings = cli.resttoken.resolved(cli.settings_mod.load(str(config)))
    runtime.API = ctl.api
    try:
        assert ctl.call("POST", "/v1/tenants", {"name": "a"}, token="first-token")[0] == 201
        token_file.write_text("second-token\n")
        config.write_text(f"data_dir: {tmp_path / 'data'}\nlog_level: debug\nrest: {{token_file: {token_file}}}\n"
                          "ovsdb: {port: 6641}\nrestart: {hold_time: 20}\n")
        done = lifecycle.reload(str(config))
        assert "log_level info -> debug" in done and any(d.startswith("REST token replaced") for d in done)
        assert logs.current_level() == "debug"
        assert ctl.call("POST", "/v1/tenants", {"name": "b"}, token="first-token")[0] == 401
        assert ctl.call("POST", "/v1/tenants", {"name": "b"}, token="second-token")[0] == 201
        text = log_stream.getvalue()
        assert "SIGHUP: reloaded" in text
        assert "SIGHUP: ovsdb.port, restart.hold_time changed in" in text  # the keys of the file, as written
        config.write_text("log_level: [not, a, level]\n")
        assert lifecycle.reload(str(config)) == []
        assert logs.current_level() == "debug" and "not reloaded" in log_stream.getvalue()
    finally:
        runtime.SETTINGS = runtime.API = None
        ctl.close()


def test_reload_names_each_bgp_change_and_applies_none_of_them(tmp_path, log_stream):
    """With no BGP speaker to hand them to (one with no exabgp up takes them: tests/unit/test_bgp_reload.py)."""
    config = tmp_path / "canopy.yaml"

    def write(neighbors, asn=65000):
        config.write_text(f"data_dir: {tmp_path}\nbgp:\n  asn: {asn}\n  router_id: 192.0.2.250\n  neighbors:\n"
                          + "".join(f"    - {{address: {a}, asn: 65001, hold_time: {h}}}\n" for a, h in neighbors))

    write([("192.0.2.1", 90), ("192.0.2.2", 90)])
    runtime.SETTINGS = cli.resttoken.resolved(cli.settings_mod.load(str(config)))
    running = runtime.SETTINGS.bgp
    try:
        write([("192.0.2.1", 30), ("192.0.2.3", 90)], asn=65010)
        done = lifecycle.reload(str(config))
        assert not any("neighbor" in d or "asn" in d for d in done) and runtime.SETTINGS.bgp == running
        [line] = [x for x in log_stream.getvalue().splitlines() if "SIGHUP: bgp changed" in x]
        assert ("(neighbor 192.0.2.3 added; neighbor 192.0.2.2 removed; neighbor 192.0.2.1: hold_time changed; "
                "bgp.asn changed); not applied: BGP settings apply only after a restart") in line
        assert "(bgp.asn also derives the policy's route distinguishers and targets)" in line
        write([("192.0.2.1", 90), ("192.0.2.2", 90)])
        lifecycle.reload(str(config))
        assert log_stream.getvalue().count("SIGHUP: bgp changed") == 1  # no change, no warning
    finally:
        runtime.SETTINGS = None


# ---------------------------------------------------------------------------------------------- CLI

def test_check_settings(tmp_path, capsys):
    good = tmp_path / "good.yaml"
    good.write_text("openflow: {port: 6633}\nlog_format: json\n")
    assert cli.main(["check-settings", str(good)]) == cli.EXIT_OK
    assert f"{good}: ok (OpenFlow 0.0.0.0:6633" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("log_level: info\nlog_format: xml\n")
    assert cli.main(["check-settings", str(bad)]) == cli.EXIT_INVALID
    assert f"{bad}:2: log_format:" in capsys.readouterr().err
    missing = tmp_path / "t.yaml"
    missing.write_text("rest: {token_file: /nonexistent/token}\n")
    assert cli.main(["check-settings", str(missing)]) == cli.EXIT_INVALID
    assert "rest.token_file" in capsys.readouterr().err
    token = tmp_path / "token"
    token.write_text("some-token\n")
    token.chmod(0o644)  # canopy run would refuse it: so does check-settings
    missing.write_text(f"rest: {{token_file: {token}}}\n")
    assert cli.main(["check-settings", str(missing)]) == cli.EXIT_INVALID
    assert f"rest.token_file: {token} has mode 0644" in capsys.readouterr().err
    token.chmod(0o600)
    assert cli.main(["check-settings", str(missing)]) == cli.EXIT_OK
    capsys.readouterr()
    for content, reason in ((b"some-token\nsecond line\n", "holds '\\n' at character 11"),
                            (b"some-token \n", "holds ' ' at character 11")):
        token.write_bytes(content)  # canopy run refuses a token file holding more than one token: so does check
        assert cli.main(["check-settings", str(missing)]) == cli.EXIT_INVALID
        assert f"rest.token_file: {token}: the token in it {reason}" in capsys.readouterr().err
    token.write_bytes(b"some-\xfftoken\n")
    assert cli.main(["check-settings", str(missing)]) == cli.EXIT_INVALID
    assert f"rest.token_file: {token} is not UTF-8 text" in capsys.readouterr().err
    missing.write_text("rest: {token: ''}\n")  # took for the generated token before: refused since (docs/deploy.md)
    assert cli.main(["check-settings", str(missing)]) == cli.EXIT_INVALID
    assert f"{missing}:1: rest.token: must not be empty" in capsys.readouterr().err


def test_status_is_readable():
    text = render_status({"version": "0.1.0", "role": "standalone", "uptime": 3725.4, "seq": 7, "state_version": 9,
                          "counts": {"tenant": 1, "subnet": 2, "acl": 0}, "switches": {"ovsdb": 2, "openflow": 1},
                          "vports_bound": 3, "extra": {"since": 1796320000.5}})
    assert text.splitlines()[0].startswith("Canopy 0.1.0, role standalone, up 1h 02m (since ")
    assert "policy: seq 7, 2 subnets, 1 tenant" in text and "switches: 1 over OpenFlow, 2 over OVSDB" in text
    assert "vports bound: 3" in text and "since: 2026-" in text and "3725.4" not in text
    text = render_status({"version": "0.1.0", "programming": {"state": "ok", "reason": None}})
    assert "  reason: -" in text.splitlines() and "None" not in text


def test_status_lists_what_the_startup_hold_waits_for_by_kind_and_name():
    text = render_status({"version": "0.1.0", "role": "standalone", "startup_hold": {
        "state": "syncing", "message": "waiting for 2 of 3 switches",
        "waiting_for": [{"kind": "vrs", "name": "hv1"}, {"kind": "vtep", "name": "tor1"}]}})
    assert "  waiting for: vrs hv1, vtep tor1" in text.splitlines()
    assert "{" not in text and "'kind'" not in text


class _ApiServer:
    """The Api behind a real HTTP server on loopback (the CLI speaks HTTP)."""

    def __init__(self, api):
        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                length = int(self.headers.get("content-length") or 0)
                req = Request(self.command, self.path.split("?")[0], {},
                              {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length),
                              self.client_address[0])
                resp = api.handle(req)
                body = resp.encoded()
                self.send_response(resp.status)
                self.send_header("Content-Type", resp.content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _any

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_apply_reads_standard_input_and_status_prints_text(ctl, monkeypatch, capsys):
    server = _ApiServer(ctl.api)
    try:
        monkeypatch.setattr(sys, "stdin", io.StringIO("tenants:\n  - name: acme\n    subnets: [{name: lan}]\n"))
        assert cli.main(["apply", "-", "--url", server.url, "--token", TOKEN]) == cli.EXIT_OK
        out = capsys.readouterr()
        assert "create tenant acme" in out.out and "<stdin>: 2 change(s)" in out.out and "source 'stdin'" in out.out
        assert ctl.state.policy.count("subnet") == 1
        monkeypatch.setattr(sys, "stdin", io.StringIO("tenants:\n  - name: acme\n    bad_key: 1\n"))
        assert cli.main(["apply", "-", "--url", server.url, "--token", TOKEN]) == cli.EXIT_INVALID
        assert "<stdin>:3:" in capsys.readouterr().err
        assert cli.main(["status", "--url", server.url]) == cli.EXIT_OK
        assert capsys.readouterr().out.startswith("Canopy ")
        assert cli.main(["status", "--json", "--url", server.url]) == cli.EXIT_OK
        assert json.loads(capsys.readouterr().out)["counts"]["tenant"] == 1
    finally:
        server.close()
    assert cli.main(["status", "--url", server.url]) == cli.EXIT_UNREACHABLE


def test_dashboard_and_served_metrics_are_documented(ctl, tmp_path):
    import re
    from pathlib import Path

    from controller.gatewaykeep import GatewayKeeper
    from openflow.gateway_arp import GatewayResolver
    from tests.unit.test_ha_rules import rest_node

    root = Path(__file__).resolve().parents[2]
    documented = set(re.findall(r"`(canopy_\w+)`", (root / "docs/operations.md").read_text()))
    dashboard = json.loads((root / "docs/grafana-dashboard.json").read_text())
    used = {name for panel in dashboard["panels"] for target in panel["targets"]
            for name in re.findall(r"canopy_\w+", target["expr"])}
    strip = re.compile(r"_(bucket|sum|count)$")
    assert {strip.sub("", n) for n in used} - documented == set()
    from controller.collector import Collections

    # the BGP families too: without them canopy_evpn_duplicate_macs was served by every controller with BGP
    # neighbors and listed in no table
    federation = FederationStandIn(SimpleNamespace(status=lambda: {"announced": 0, "restarts": 0}), lambda: [
        {"address": "192.0.2.1", "asn": 65001, "state": "up", "received": 0, "sent": 0}])
    # and a pair's, with the runtime state it carries (controller/overlink.py): the gateway MACs' counts
    store, state, pair, _ = rest_node(tmp_path / "pair")
    try:
        GatewayKeeper(state, GatewayResolver(refresh=10, timeout=30)).pair_with(pair)
        ctl.api.metrics.attach(reconcilers=dict, collector=Collections(), federation=federation, pair=pair)
        served = {family.name for family in text_string_to_metric_families(scrape(ctl.api).encoded().decode())
                  if family.name.startswith("canopy_")}
    finally:
        store.close()
    assert {"canopy_ha_takeovers", "canopy_ha_store_renewals", "canopy_ha_gateway_macs_refused",
            "canopy_ha_gateway_macs_not_kept"} <= served
    assert {n if n in documented else n + "_total" for n in served} <= documented


def test_openapi_lists_the_operations_routes(ctl):
    paths = ctl.call("GET", "/v1/openapi.json")[1]["paths"]
    assert "text/plain" in paths["/metrics"]["get"]["responses"]["200"]["content"]
    assert set(paths["/v1/log-level"]) == {"get", "put"}
    api, _ = flows_api(ctl)
    paths = json.loads(api.handle(Request("GET", "/v1/openapi.json")).encoded())["paths"]
    names = {p["name"] for p in paths["/v1/switches/{dpid}/flows"]["get"]["parameters"] if p["in"] == "query"}
    assert names == {"owner", "table", "cookie"}


def test_metrics_export_the_cyclic_collectors_collections_per_generation(ctl):
    import gc
    import itertools

    from controller.collector import Collections

    ticks = itertools.count()
    watch = Collections(clock=lambda: next(ticks) * 0.5, freeze_after_full=False)
    ctl.api.metrics.attach(collector=watch)
    watch.install()
    try:
        gc.collect(2)
    finally:
        watch.uninstall()
    got = samples(scrape(ctl.api))
    assert got[("canopy_gc_collections_total", frozenset({("generation", "2")}))] >= 1
    assert got[("canopy_gc_collection_max_seconds", frozenset({("generation", "2")}))] == 0.5
    assert got[("canopy_gc_collection_seconds_total", frozenset({("generation", "2")}))] >= 0.5
    assert got[("canopy_gc_refreshes_total", frozenset())] == 0


def test_metrics_export_the_event_loop_threads_cpu_and_its_wait_for_one(ctl):
    def stop(seconds):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ctl.api.metrics.watch_loop(stop)  # the probe's green thread: it opens the loop thread's figures
    spin = sum(range(200_000))  # some CPU of this thread's for the counter to show
    got = samples(scrape(ctl.api))
    assert spin and got[("canopy_event_loop_cpu_seconds_total", frozenset())] > 0.0
    assert got[("canopy_event_loop_cpu_wait_seconds_total", frozenset())] >= 0.0
