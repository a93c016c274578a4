"""The read-only REST token (rest.read_token, rest.read_token_file): what it may do, what it is refused (403, nothing
changed), how it is loaded, checked offline and reloaded. Its value and file rules are the write token's:
tests/unit/test_settings.py runs those for both keys."""

from __future__ import annotations

import ast
import dataclasses
import hmac
import json
import pathlib
import re

import pytest

from controller import cli, lifecycle, resttoken
from controller import settings as settings_mod
from controller.programmer import Programmer
from controller.rest import bgp as rest_bgp
from controller.rest import dataplane as rest_dataplane
from controller.rest import inspection as rest_inspect
from controller.rest import vteps as rest_vteps
from controller.rest import api as api_mod
from controller.rest.api import Api
from controller.rest.wire import Request
from controller.stretchtrace import StretchTracer
from controller.stretchtrace import routes as stretch_routes
from tests.unit.helpers import TOKEN, Controller, demo_net, running
from tests.unit.test_rest import snapshot

READ = "read-only-token"
AFAR = "10.9.9.9"  # not loopback: with open_reads never no read is open anyway


@pytest.fixture
def ctl(tmp_path):
    c = Controller(tmp_path, read_token=READ, open_reads="never")
    prog = Programmer(c.state)
    prog.refresh(full=True)
    c.api = Api(c.service, c.state, c.settings, extra_routes=rest_dataplane.routes(c.state, prog, dict)
                + rest_vteps.routes(c.state, prog) + rest_bgp.routes(None) + rest_inspect.routes(c.state, prog)
                + stretch_routes(StretchTracer(3, sample_interval=None)))
    yield c
    c.close()


def call(ctl, method, path, token, body=None):
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    resp = ctl.api.handle(Request(method, path, {}, headers, json.dumps(body or {}).encode(), AFAR))
    text = resp.encoded()
    return resp.status, json.loads(text or b"null") if resp.content_type == "application/json" else text


def test_the_read_token_reads_every_read_route_and_every_write_route_refuses_it_403_changing_nothing(ctl):
    tenant, _, _ = demo_net(ctl)
    before = snapshot(ctl), ctl.call("GET", "/v1/log-level")[1]
    writes = [r for r in ctl.api.routes if r.write]
    reads = [r for r in ctl.api.routes if not r.write]
    assert {r.method for r in writes} == {"POST", "PUT", "PATCH", "DELETE"} and len(reads) > 20
    for route in writes:
        path = re.sub(r"\{\w+\}", tenant["id"], route.pattern)
        status, reply = call(ctl, route.method, path, READ, {"name": "changed", "level": "debug"})
        assert status == 403, (route.method, route.pattern, reply)
        assert reply["error"]["code"] == "read_only_token"
        assert reply["error"]["reason"].startswith(f"{route.method} {route.pattern} changes state, and the bearer "
                                                   "token is the read-only one (rest.read_token)")
    assert (snapshot(ctl), ctl.call("GET", "/v1/log-level")[1]) == before
    for route in reads:  # POST /v1/trace among them: a question about State, which it does not change
        path = re.sub(r"\{\w+\}", tenant["id"], route.pattern)
        status, reply = call(ctl, route.method, path, READ)
        assert status not in (401, 403), (route.method, route.pattern, reply)
    assert call(ctl, "GET", "/v1/tenants", READ) == (200, ctl.call("GET", "/v1/tenants")[1])
    assert call(ctl, "PATCH", f"/v1/tenants/{tenant['id']}", TOKEN, {"name": "changed"})[0] == 200  # the write token
    assert call(ctl, "GET", "/v1/tenants", "wrong")[0] == 401 and call(ctl, "GET", "/v1/tenants", READ + "x")[0] == 401


READING_POSTS = {("POST", "/v1/trace")}  # questions about State that change nothing: the read-only token may ask


def declared_routes():
    """(file, method, pattern or None, marked write) of every REST Route built anywhere in controller/, read from the
    source: the fixture's table lacks the routes only the app adds (PUT /v1/ha/solo with a pair, the sessions, ...)."""
    root = pathlib.Path(__file__).resolve().parents[2] / "controller"
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        if path != root / "rest" / "api.py" and not re.search(
                r"from controller\.rest\.(api|wire) import [^\n]*\bRoute\b", text):
            continue  # derive.py's Route is a FIB entry, not this one
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Route":
                method, pattern = (node.args + [None, None])[:2]
                write = node.args[4] if len(node.args) > 4 else next(
                    (k.value for k in node.keywords if k.arg == "write"), ast.Constant(False))
                found.append((path.name, ast.literal_eval(method) if isinstance(method, ast.Constant) else None,
                              pattern.value if isinstance(pattern, ast.Constant) else None,
                              write.value if isinstance(write, ast.Constant) else None))
    return found


def test_every_route_that_is_not_a_get_is_marked_write_so_the_read_token_is_refused_on_it():
    """A POST, PUT, PATCH or DELETE not marked write would let the read-only token (every hypervisor's) change
    state: every Route in controller/ is walked, so a new unmarked one fails here."""
    declared = declared_routes()
    assert len(declared) > 25 and ("api.py", "PUT", "/v1/ha/solo", True) in declared
    assert [d for d in declared if d[1] not in ("GET", "POST", "PUT", "PATCH", "DELETE")] == []  # literal methods
    unmarked = [d for d in declared if d[1] != "GET" and d[3] is not True and (d[1], d[2]) not in READING_POSTS]
    assert unmarked == []


def test_a_write_with_the_read_token_is_refused_from_its_headers_before_its_body_is_read(ctl):
    req = Request("POST", "/v1/apply", {}, {"authorization": f"Bearer {READ}"}, b"", AFAR)
    refused = ctl.api.preflight(req)
    assert refused.status == 403 and json.loads(refused.encoded())["error"]["code"] == "read_only_token"
    assert ctl.api.preflight(Request("GET", "/v1/tenants", {}, {"authorization": f"Bearer {READ}"}, b"", AFAR)) \
        is None


def test_every_token_check_compares_the_token_with_both_tokens_in_constant_time(ctl, monkeypatch):
    """No early exit after the write token matched, or the read-only one: the time would tell which it was."""
    compared = []

    def same(a, b):
        compared.append(b)
        return hmac.compare_digest(a.encode(), b.encode())

    monkeypatch.setattr(api_mod, "_same", same)
    for token in (TOKEN, READ, "wrong"):
        for method, path in (("GET", "/v1/tenants"), ("POST", "/v1/tenants")):
            compared.clear()
            call(ctl, method, path, token, {"name": "t"})
            assert sorted(compared) == sorted([TOKEN, READ]), (token, method, compared)


def test_the_openapi_document_names_403_on_writes_only(ctl):
    paths = ctl.call("GET", "/v1/openapi.json")[1]["paths"]
    refusing = {(path, method) for path, ops in paths.items() for method, op in ops.items() if "403" in op["responses"]}
    writes = {(r.pattern, r.method.lower()) for r in ctl.api.routes if r.write}
    assert refusing == writes and ("/v1/apply", "post") in writes and ("/v1/tenants/{id}", "patch") in writes


# ------------------------------------------------------------------------------------------------ settings

def write(tmp_path, text, name="canopy.yaml"):
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o600)
    return path


def test_read_token_and_read_token_file_together_are_refused_naming_the_line(tmp_path):
    config = write(tmp_path, f"rest:\n  read_token: abc\n  read_token_file: {tmp_path}/f\n")
    with pytest.raises(settings_mod.SettingsError) as refused:
        settings_mod.load(str(config))
    assert str(refused.value) == (f"{config}:3: rest.read_token_file: set rest.read_token or rest.read_token_file, "
                                  "not both")


@pytest.mark.parametrize("rest, key", [
    ("{token: same-token, read_token: same-token}", "rest.read_token"),
    ("{token_file: TOKEN_FILE, read_token: same-token}", "rest.read_token"),
    ("{read_token_file: READ_FILE}", "rest.read_token_file"),  # the same as the write token generated into data_dir
])
def test_a_read_token_equal_to_the_write_token_is_refused_at_start_and_by_check_settings(tmp_path, capsys, rest, key):
    data = tmp_path / "data"
    data.mkdir()
    token_file = write(data, "same-token\n", "rest-token")  # also data_dir's generated token file
    read_file = write(tmp_path, "same-token\n", "read-token")
    rest = rest.replace("TOKEN_FILE", str(token_file)).replace("READ_FILE", str(read_file))
    config = write(tmp_path, f"data_dir: {data}\nrest: {rest}\n")
    with pytest.raises(settings_mod.SettingsError) as refused:
        resttoken.resolved(settings_mod.load(str(config)))
    assert str(refused.value) == f"{config}:2: {key}: {resttoken.SAME}"  # the line of rest.read_token(_file)
    assert cli.main(["check-settings", str(config)]) == cli.EXIT_INVALID
    assert capsys.readouterr().err == f"{config}:2: {key}: {resttoken.SAME}\n"
    write(data, "another-token\n", "rest-token")
    config.write_text(config.read_text().replace("token: same-token,", "token: another-token,"))
    assert resttoken.resolved(settings_mod.load(str(config))).rest_read_token == "same-token"
    assert cli.main(["check-settings", str(config)]) == cli.EXIT_OK


def test_check_settings_refuses_a_read_token_file_others_can_read_or_that_is_missing(tmp_path, capsys):
    token = write(tmp_path, "read-token\n", "read-token")
    token.chmod(0o644)
    config = write(tmp_path, f"data_dir: {tmp_path}/d\nrest: {{token: w, read_token_file: {token}}}\n")
    assert cli.main(["check-settings", str(config)]) == cli.EXIT_INVALID
    assert f"{config}:2: rest.read_token_file: {token} has mode 0644" in capsys.readouterr().err
    token.unlink()
    assert cli.main(["check-settings", str(config)]) == cli.EXIT_INVALID
    assert capsys.readouterr().err == f"{config}:2: rest.read_token_file: {token} does not exist\n"


@pytest.mark.parametrize("key", ["token_file", "read_token_file"])
def test_run_stops_on_a_token_file_it_cannot_read_as_a_settings_error_naming_the_key(tmp_path, capsys, key):
    """Exit code 2 (docs/rest.md#authentication); it was exit 4 'cannot write the REST token file', a file it only
    read. A directory stands for a file it cannot use (the tests may run as root, who reads any file); a FIFO:
    tests/unit/test_secret_files.py."""
    unreadable = tmp_path / "token-dir"
    unreadable.mkdir(mode=0o700)
    rest = f"{key}: {unreadable}" if key == "token_file" else f"token: w, {key}: {unreadable}"
    config = write(tmp_path, f"data_dir: {tmp_path}/d\nrest: {{{rest}}}\n")
    assert cli.main(["run", "--config", str(config)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert (f"cannot start: {config}:2: rest.{key}: {unreadable} is a directory, not a regular file: a secret file "
            "must be one\n") in err
    assert "Traceback" not in err


# -------------------------------------------------------------------------------------------------- SIGHUP

def test_sighup_replaces_adds_and_removes_the_read_token_and_keeps_it_when_refused(tmp_path, caplog):
    ctl = Controller(tmp_path, open_reads="never")
    token = write(tmp_path, "first-read\n", "read-token")
    config = tmp_path / "canopy.yaml"

    def reload(rest):
        config.write_text(f"data_dir: {tmp_path / 'data'}\nlog_level: {level}\n"
                          f"rest: {{token: {TOKEN}, open_reads: never, {rest}}}\n")
        return lifecycle.reload(str(config))

    with running(ctl) as level:
        assert call(ctl, "GET", "/v1/tenants", "first-read")[0] == 401  # none yet
        assert f"read-only REST token added ({token})" in reload(f"read_token_file: {token}")
        assert call(ctl, "GET", "/v1/tenants", "first-read")[0] == 200
        write(tmp_path, "second-read\n", "read-token")
        assert f"read-only REST token replaced ({token})" in reload(f"read_token_file: {token}")
        assert call(ctl, "GET", "/v1/tenants", "first-read")[0] == 401
        assert call(ctl, "GET", "/v1/tenants", "second-read")[0] == 200
        assert call(ctl, "POST", "/v1/tenants", "second-read", {"name": "a"})[0] == 403
        write(tmp_path, f"{TOKEN}\n", "read-token")
        assert reload(f"read_token_file: {token}") == []  # refused: the running tokens stay
        assert f"{config}:3: rest.read_token_file: {resttoken.SAME}" in caplog.text
        assert call(ctl, "GET", "/v1/tenants", "second-read")[0] == 200
        assert call(ctl, "POST", "/v1/tenants", TOKEN, {"name": "a"})[0] == 201
        assert "read-only REST token unchanged (inline)" in reload("read_token: second-read")
        assert "read-only REST token removed" in reload("access_log: false")
        assert call(ctl, "GET", "/v1/tenants", "second-read")[0] == 401


def test_a_token_file_refused_names_the_settings_file_and_the_line_of_its_key(tmp_path, capsys):
    """As ha.secret_file's refusals do (README: bad settings are refused with file, line and reason); they named the
    settings file only. A key the file does not write (data_dir's generated token file): the settings file alone;
    no settings file: the built-in settings."""
    missing = tmp_path / "missing-token"
    config = write(tmp_path, f"data_dir: {tmp_path}/d\nlog_level: info\nrest:\n  port: 8080\n"
                             f"  token_file: {missing}\n")
    assert cli.main(["check-settings", str(config)]) == cli.EXIT_INVALID
    assert capsys.readouterr().err == f"{config}:5: rest.token_file: {missing} does not exist\n"
    with pytest.raises(settings_mod.SettingsError) as refused:
        resttoken.resolved(settings_mod.load(str(config)))  # canopy run, and a SIGHUP
    assert str(refused.value) == f"{config}:5: rest.token_file: {missing} does not exist"
    (tmp_path / "d").mkdir()
    generated = write(tmp_path / "d", "a-token\n", "rest-token")
    generated.chmod(0o644)
    config.write_text(f"data_dir: {tmp_path}/d\n")
    assert cli.main(["check-settings", str(config)]) == cli.EXIT_INVALID
    assert capsys.readouterr().err.startswith(f"{config}: rest.token_file: {generated} has mode 0644")
    defaults = dataclasses.replace(settings_mod.defaults(), rest_token_file=str(generated))
    with pytest.raises(settings_mod.SettingsError, match=f"^the built-in settings: rest.token_file: {generated} has"):
        resttoken.resolved(defaults)


def test_the_token_is_checked_before_the_path_so_without_one_the_api_shape_is_not_told(ctl):
    """An unknown path got 404 (and a method a path does not take 405 with Allow) before the token was looked at:
    without a token a client could map which paths exist. Now 401 comes first, for every path the API serves."""
    unknown = [("GET", "/v1/nothing"), ("POST", "/v1/nothing"), ("DELETE", "/v1/status"), ("PUT", "/v1/tenants"),
               ("GET", "/nothing"), ("HEAD", "/v1/status"), ("OPTIONS", "/v1/status"), ("OPTIONS", "/v1/nothing"),
               ("TRACE", "/v1/tenants")]
    for method, path in unknown:
        for token in ("", "wrong"):
            status, reply = call(ctl, method, path, token)
            assert (status, reply["error"]["code"]) == (401, "unauthorized"), (method, path, token)
        for token in (READ, TOKEN):  # either token: the API's shape is no secret to it (it reads the OpenAPI)
            assert call(ctl, method, path, token)[0] == (404 if "nothing" in path else 405), (method, path, token)
        refused = ctl.api.preflight(Request(method, path, {}, {}, b"", AFAR))  # from the headers too
        assert refused.status == 401, (method, path)


def test_where_reads_are_open_an_unknown_read_is_404_and_an_unknown_write_still_needs_a_token(tmp_path):
    c = Controller(tmp_path, open_reads="loopback")
    try:
        def anonymous(method, path, remote="127.0.0.1"):
            return c.api.handle(Request(method, path, {}, {}, b"", remote)).status

        assert anonymous("GET", "/v1/nothing") == 404 and anonymous("GET", "/v1/status") == 200
        assert anonymous("POST", "/v1/nothing") == 401 and anonymous("DELETE", "/v1/status") == 401
        assert anonymous("GET", "/v1/nothing", AFAR) == 401  # not loopback: reads are closed
    finally:
        c.close()
