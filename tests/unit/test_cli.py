"""The canopy command: offline check with file and line, and usage errors."""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from controller import cli

from .helpers import TOKEN

READ = "read-only-token"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_check_accepts_the_examples(capsys):
    assert cli.main(["check", "config/examples/demo.yaml"]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "demo.yaml: ok" in out and "2 tenants" in out


def test_check_reports_file_line_object_field_and_reason(tmp_path, capsys):
    path = write(tmp_path, "bad.yaml", """\
tenants:
  - name: acme
    domains:
      - name: prod
        subnets:
          - {name: a, cidr: 10.0.0.0/24, gateway: 10.0.0.1}
          - name: b
            cidr: 10.0.0.0/25
            gateway: 10.0.0.2
""")
    assert cli.main(["check", path]) == cli.EXIT_INVALID
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"{path}:8: subnet 'acme/b': cidr: 10.0.0.0/25 overlaps subnet 'a' (10.0.0.0/24) "
                   "in the same domain"]


def test_check_validates_files_together(tmp_path, capsys):
    a = write(tmp_path, "a.yaml", "tenants: [{name: acme, subnets: [{name: lan, vni: 5000}]}]\n")
    b = write(tmp_path, "b.yaml", "tenants: [{name: other, subnets: [{name: lan, vni: 5000}]}]\n")
    assert cli.main(["check", a]) == cli.EXIT_OK
    assert cli.main(["check", a, b]) == cli.EXIT_INVALID
    assert "VNI 5000 is already used" in capsys.readouterr().err


def test_check_reports_yaml_syntax_with_line(tmp_path, capsys):
    path = write(tmp_path, "broken.yaml", "tenants:\n  - name: a\n   bad: indent\n")
    assert cli.main(["check", path]) == cli.EXIT_INVALID
    assert capsys.readouterr().err.startswith(f"{path}:3:")


def test_check_missing_file(capsys):
    assert cli.main(["check", "/nonexistent/x.yaml"]) == cli.EXIT_INVALID
    assert "No such file" in capsys.readouterr().err


def test_run_refuses_bad_settings_before_starting(tmp_path, capsys):
    path = write(tmp_path, "s.yaml", "openflow: {port: 0}\n")
    assert cli.main(["run", "--config", path]) == cli.EXIT_USAGE
    assert f"{path}:1: openflow.port: must be between 1 and 65535" in capsys.readouterr().err


def test_the_settings_file_and_a_policy_document_given_for_each_other_are_named_so_in_one_line(tmp_path, capsys):
    """A new operator's likely mistake (README has `canopy check FILE` and `canopy run --config FILE` side by side):
    the settings file to `check` printed one "unknown top-level key" per section, a policy document to `run --config`
    or `check-settings` one "unknown field" per key. Now one line says which file it is and the command it is for."""
    assert cli.main(["check", "config/canopy.yaml"]) == cli.EXIT_INVALID
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("config/canopy.yaml:3: this is a settings file of the controller")
    assert "'canopy check-settings FILE'" in err[0] and "'canopy run --config FILE'" in err[0]
    for argv, exit_code in ((["check-settings"], cli.EXIT_INVALID), (["run", "--config"], cli.EXIT_USAGE)):
        assert cli.main([*argv, "config/examples/demo.yaml"]) == exit_code
        err = [line for line in capsys.readouterr().err.strip().splitlines() if "demo.yaml" in line]
        assert len(err) == 1 and "demo.yaml:5: this is a policy document (source, tenants, vtep_bindings)" in err[0]
        assert "'canopy apply FILE'" in err[0]
    mixed = write(tmp_path, "mixed.yaml", "rest: {port: 8080}\ntenants: []\n")  # a setting in it: the usual errors
    assert cli.main(["check-settings", mixed]) == cli.EXIT_INVALID
    assert capsys.readouterr().err.strip() == f"{mixed}:2: tenants: unknown field"


def test_only_a_mapping_mostly_of_settings_sections_is_called_the_settings_file_naming_those_only(tmp_path, capsys):
    """One key that is a section's name among others is no settings file: a document of junk keys and `bgp:` got
    "this is a settings file of the controller (foo, bar, bgp)", naming keys that are no settings at all."""
    junk = write(tmp_path, "junk.yaml", "foo: 1\nbar: 2\nbgp: {}\n")
    assert cli.main(["check", junk]) == cli.EXIT_INVALID
    err = capsys.readouterr().err
    assert "settings file" not in err and len(err.strip().splitlines()) == 3, err
    typo = write(tmp_path, "typo.yaml", "data_dir: /x\nrest: {}\nrets: {}\n")  # a settings file, one key misspelt
    assert cli.main(["check", typo]) == cli.EXIT_INVALID
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "this is a settings file of the controller (data_dir, rest), not" in err[0], err


def test_an_unknown_key_one_typo_from_a_known_one_is_named(tmp_path, capsys):
    """`rest.lisen` or `tenant:` was "unknown field" only: the key meant is named when one is that close."""
    path = write(tmp_path, "s.yaml", "rest: {lisen: 0.0.0.0}\nbgp: {neighbours: []}\nha: {colour: red}\n")
    assert cli.main(["check-settings", path]) == cli.EXIT_INVALID
    assert capsys.readouterr().err.strip().splitlines() == [
        f"{path}:1: rest.lisen: unknown field (did you mean 'listen'?)",
        f"{path}:2: bgp.neighbours: unknown field (did you mean 'neighbors'?)", f"{path}:3: ha.colour: unknown field"]
    path = write(tmp_path, "d.yaml", "tenant: [{name: acme}]\n")
    assert cli.main(["check", path]) == cli.EXIT_INVALID
    assert "tenant: unknown top-level key; expected [" in (err := capsys.readouterr().err)
    assert err.strip().endswith("(did you mean 'tenants'?)")
    path = write(tmp_path, "n.yaml", "tenants:\n  - name: acme\n    domains:\n      - name: prod\n        subnet: []\n")
    assert cli.main(["check", path]) == cli.EXIT_INVALID  # the objects a document nests are named too
    assert capsys.readouterr().err.strip() == (f"{path}:5: domain 'acme/prod': subnet: unknown field "
                                               "(did you mean 'subnets'?)")


def test_apply_reports_unreachable_controller(tmp_path, capsys):
    path = write(tmp_path, "a.yaml", "tenants: [{name: acme}]\n")
    assert cli.main(["apply", path, "--url", "http://127.0.0.1:9", "--token", "x"]) == cli.EXIT_UNREACHABLE
    assert "cannot reach the controller" in capsys.readouterr().err


def test_check_refuses_a_name_used_twice_naming_both_lines(tmp_path, capsys):
    path = write(tmp_path, "dup.yaml", """\
tenants:
  - name: acme
    subnets:
      - name: lan
        vports:
          - {name: vm1, mac: "02:00:00:00:00:01"}
          - {name: vm1, mac: "02:00:00:00:00:02"}
""")
    assert cli.main(["check", path]) == cli.EXIT_INVALID
    assert capsys.readouterr().err.strip() == (
        f"{path}:7: vport 'acme/lan/vm1': name: vport name 'vm1' is used twice in subnet 'acme/lan'; each object "
        f"may appear once (a second definition would replace the first) (first at {path}:6)")


def test_check_refuses_an_object_defined_in_two_files(tmp_path, capsys):
    a = write(tmp_path, "a.yaml", "tenants:\n  - name: acme\n")
    b = write(tmp_path, "b.yaml", "tenants:\n  - name: globex\n  - name: acme\n")
    assert cli.main(["check", a, b]) == cli.EXIT_INVALID
    assert capsys.readouterr().err.strip() == (f"{b}:3: tenant 'acme': is also defined in another file; each "
                                               f"object may appear once (first at {a}:2)")


SERVE = """
import http.server, os, pathlib, sys, urllib.parse
from controller.rest.wire import Request
from tests.unit.helpers import Controller

ctl = Controller(pathlib.Path(sys.argv[1]), **dict(arg.split("=", 1) for arg in sys.argv[2:]))  # rest settings

class Handler(http.server.BaseHTTPRequestHandler):
    def _serve(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        resp = ctl.api.handle(Request(self.command, url.path, query, headers, body, self.client_address[0]))
        data = resp.encoded()
        self.send_response(resp.status)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _serve

    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
if os.environ.get("SERVE_TLS"):  # "KEY CERT": HTTPS with the REST listener's own context (controller.tls)
    from controller.tls import TlsFiles, server_context
    key, cert = os.environ["SERVE_TLS"].split()
    context = server_context(TlsFiles(key=key, cert=cert, ca_cert=cert), mutual=False)
    server.socket = context.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@pytest.fixture
def served(tmp_path):
    """The controller core and its REST API behind a real HTTP server on loopback, in a process of its own
    (the test process has Ryu's eventlet imported, which makes threads unreliable here)."""
    yield from _serve(tmp_path)


@pytest.fixture(scope="module")
def served_closed(tmp_path_factory):
    """As ``served``, with rest.open_reads never: every read needs the token. One for the module: its tests only
    read, with a token it refuses (nothing changes)."""
    yield from _serve(tmp_path_factory.mktemp("closed"), "open_reads=never")


def _serve(tmp_path, *rest, tls=None):
    env = dict(os.environ, SERVE_TLS=f"{tls.key} {tls.cert}") if tls else None
    proc = subprocess.Popen([sys.executable, "-c", SERVE, str(tmp_path / "ctl"), *rest], stdout=subprocess.PIPE,
                            text=True, cwd=str(Path(__file__).resolve().parents[2]), env=env)
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{int(proc.stdout.readline())}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def served_read_token(tmp_path):
    """As ``served_closed`` (every read needs a token), with the read-only token READ (rest.read_token)."""
    yield from _serve(tmp_path, "open_reads=never", f"read_token={READ}")


@pytest.fixture(scope="module")
def served_https(tmp_path_factory):
    """As ``served`` over HTTPS, with a certificate for 127.0.0.1 signed by a CA of the test's own (tests/harness/pki):
    (the URL, the CA's certificate file, another CA's). One for the module (its keys made once): its tests only
    read."""
    from tests.harness.pki import Pki

    tmp_path = tmp_path_factory.mktemp("https")
    ca, other = Pki(tmp_path, "canopy-ca"), Pki(tmp_path, "other-ca")
    for url in _serve(tmp_path, tls=ca.issue("controller", ips=("127.0.0.1",))):
        yield url, str(ca.ca_cert), str(other.ca_cert)


def test_a_certificate_that_does_not_name_the_address_is_said_so_not_blamed_on_the_ca(capsys, monkeypatch,
                                                                                     served_https):
    """docs/security.md's ovs-pki certificates name no address: asked with the right --ca-file, the refusal told the
    operator to give --ca-file, which they had. A name mismatch now says the certificate does not name the address."""
    url, ca, _ = served_https
    monkeypatch.delenv("CANOPY_CA_FILE", raising=False)
    by_name = url.replace("127.0.0.1", "localhost")  # the certificate names IP:127.0.0.1 only
    assert cli.main(["status", "--url", by_name, "--ca-file", ca]) == cli.EXIT_UNREACHABLE
    err = capsys.readouterr().err
    assert "the controller's certificate does not name localhost: issue it with subjectAltName" in err
    assert "give --ca-file" not in err
    assert cli.main(["status", "--url", url, "--json"]) == cli.EXIT_UNREACHABLE  # no CA given: the CA advice stays
    assert "give --ca-file (or CANOPY_CA_FILE)" in capsys.readouterr().err


def tenant_source(url, name):
    with urllib.request.urlopen(f"{url}/v1/tenants?name={name}", timeout=30) as resp:
        return json.loads(resp.read())["items"][0]["source"]


def test_apply_refuses_another_sources_object_then_adopts_it_showing_the_diff(tmp_path, capsys, served):
    url = served
    first = write(tmp_path, "one.yaml", "tenants:\n  - name: acme\n    description: first\n")
    second = write(tmp_path, "two.yaml", "tenants:\n  - name: acme\n")
    args = ["--url", url, "--token", TOKEN]
    assert cli.main(["apply", first, *args]) == cli.EXIT_OK
    capsys.readouterr()
    assert cli.main(["apply", second, *args]) == cli.EXIT_INVALID
    assert capsys.readouterr().err.strip() == (
        f"{second}:2: tenant 'acme': is managed by source 'one.yaml', not by this document's source "
        "'two.yaml'; apply with --adopt (REST: \"adopt\": true) to take it over")
    assert cli.main(["apply", second, "--adopt", "--dry-run", *args]) == cli.EXIT_OK
    out = capsys.readouterr().out.splitlines()
    assert out[:2] == ["would adopt tenant acme (from source 'one.yaml')", '    description: "first" -> ""']
    assert tenant_source(url, "acme") == "one.yaml"
    assert cli.main(["apply", second, "--adopt", *args]) == cli.EXIT_OK
    assert tenant_source(url, "acme") == "two.yaml"


def test_apply_names_both_lines_of_a_duplicate_the_controller_refused(tmp_path, capsys, served):
    url = served
    path = write(tmp_path, "dup.yaml", "tenants:\n  - name: acme\n  - name: acme\n")
    assert cli.main(["apply", path, "--url", url, "--token", TOKEN]) == cli.EXIT_INVALID
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{path}:3: tenant 'acme': name: tenant name 'acme' is used twice")
    assert err.endswith(f"(first at {path}:2)")


def test_apply_refused_for_want_of_a_token_names_where_it_looked(tmp_path, capsys, served, monkeypatch):
    """A newcomer who runs the controller with its own settings and `canopy apply FILE` without them got only
    '401: this request needs a token'; the refusal now names the token file it could not read and the fix."""
    monkeypatch.delenv("CANOPY_TOKEN", raising=False)
    settings = write(tmp_path, "settings.yaml", f"data_dir: {tmp_path / 'nodata'}\n")
    path = write(tmp_path, "one.yaml", "tenants:\n  - name: acme\n")
    assert cli.main(["apply", path, "--url", served, "--config", settings]) == cli.EXIT_INVALID
    err = capsys.readouterr().err
    assert f"no token: {tmp_path / 'nodata' / 'rest-token'} does not exist ({settings})" in err
    assert "give --config with the controller's settings file, or --token (CANOPY_TOKEN)" in err
    assert cli.main(["apply", path, "--url", served, "--token", "wrong"]) == cli.EXIT_INVALID
    assert "the controller refused the token given by --token" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["status"], ["show"], ["show", "vport", "web1"]])
def test_a_read_refused_with_401_names_the_token_it_gave(capsys, served_closed, command):
    """Not only apply: a read refused with 401 (rest.open_reads never, or from another host) says which token the
    controller refused and how to give its own, too."""
    code = cli.main([*command, "--url", served_closed, "--token", "wrong"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_INVALID
    assert "canopy: the controller refused the token given by --token; give --config with the controller's settings " \
           "file, or --token (CANOPY_TOKEN)" in err


def test_a_reader_gone_from_standard_output_stops_the_command_without_a_traceback(tmp_path):
    """`canopy show | head` printed a BrokenPipeError traceback once head had what it wanted."""
    import os

    files = [str(p) for p in sorted((Path(__file__).resolve().parents[2] / "config" / "examples").glob("*.yaml"))]
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes
    try:
        done = subprocess.run([sys.executable, "-m", "controller.cli", "check", *files], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120,
                              cwd=str(Path(__file__).resolve().parents[2]))
    finally:
        os.close(write)
    assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr, done.stderr
    assert done.returncode == cli.EXIT_INVALID


def test_a_broken_pipe_other_than_standard_output_is_not_hidden(tmp_path):
    """Only a reader gone from standard output ends a command quietly: a BrokenPipeError from anything else (a
    socket, `canopy run`) is a fault and keeps its traceback, while standard output's reader is still there."""
    script = ("import sys\nfrom controller import cli\n"
              "def broken(args):\n    raise BrokenPipeError(32, 'a socket, not standard output')\n"
              "cli.cmd_check = broken\nsys.exit(cli.main(['check', 'x.yaml']))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=str(Path(__file__).resolve().parents[2]))
    assert "BrokenPipeError: [Errno 32] a socket, not standard output" in done.stderr, done.stderr


def test_config_names_the_rest_address_and_token_a_command_talks_to(tmp_path, capsys, monkeypatch, served):
    """`--config FILE` (as docs/deploy.md runs `canopy show`): the controller at that file's rest.listen and
    rest.port, with its token; the command line's --url and --token still win, and the environment comes after."""
    port = served.rsplit(":", 1)[1]
    config = write(tmp_path, "canopy.yaml", f"data_dir: {tmp_path / 'd'}\nrest: {{listen: 127.0.0.1, port: {port}, "
                                            f"token: {TOKEN}}}\n")
    monkeypatch.setenv("CANOPY_URL", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("CANOPY_TOKEN", "the-wrong-token")
    path = write(tmp_path, "a.yaml", "tenants: [{name: acme}]\n")
    assert cli.main(["apply", path, "--config", config]) == cli.EXIT_OK
    assert capsys.readouterr().out.startswith("create tenant acme")
    assert cli.main(["status", "--config", config, "--json"]) == cli.EXIT_OK
    assert json.loads(capsys.readouterr().out)["version"]
    assert cli.main(["status", "--config", config, "--url", "http://127.0.0.1:9"]) == cli.EXIT_UNREACHABLE
    assert "cannot reach the controller at http://127.0.0.1:9" in capsys.readouterr().err
    assert cli.main(["apply", path, "--config", config, "--token", "the-wrong-token"]) == cli.EXIT_INVALID
    assert cli.main(["status", "--config", write(tmp_path, "bad.yaml", "rest: {port: 0}\n")]) == cli.EXIT_USAGE
    assert "canopy: --config: " in capsys.readouterr().err


@pytest.mark.parametrize("rest, url", [
    ("{}", "http://127.0.0.1:8080"),
    ("{listen: 0.0.0.0, port: 9000}", "http://127.0.0.1:9000"),
    ("{listen: '::', port: 9000}", "http://[::1]:9000"),
    ("{listen: 'fd00::5'}", "http://[fd00::5]:8080"),
    ("{listen: 10.250.0.1}", "http://10.250.0.1:8080"),
])
def test_the_rest_url_of_settings_is_where_a_client_on_the_host_reaches_them(rest, url):
    from dataclasses import replace

    from controller import settings as settings_mod
    from controller.yamldoc import load

    settings = settings_mod.from_doc(load(f"rest: {rest}\n", "<t>"))
    assert cli.rest_url(settings) == url
    assert cli.rest_url(replace(settings, rest_tls=True)) == url.replace("http:", "https:")  # the tls section's


def test_ca_file_checks_an_https_controller_against_that_ca_before_the_environments(tmp_path, capsys, monkeypatch,
                                                                                   served_https):
    """--ca-file (else CANOPY_CA_FILE) is the CA the controller's certificate must be signed by; without either
    the system's CA store, which does not vouch for it. A CA file that cannot be used is named, and nothing sent."""
    url, ca, other = served_https
    monkeypatch.delenv("CANOPY_CA_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    assert cli.main(["status", "--url", url, "--json"]) == cli.EXIT_UNREACHABLE
    err = capsys.readouterr().err
    assert "CERTIFICATE_VERIFY_FAILED" in err and "give --ca-file (or CANOPY_CA_FILE)" in err
    assert cli.main(["status", "--url", url, "--ca-file", ca, "--json"]) == cli.EXIT_OK
    assert json.loads(capsys.readouterr().out)["version"]
    assert cli.main(["show", "--url", url, "--ca-file", other]) == cli.EXIT_UNREACHABLE  # another CA's: refused
    assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().err
    monkeypatch.setenv("CANOPY_CA_FILE", ca)
    assert cli.main(["status", "--url", url, "--json"]) == cli.EXIT_OK
    assert json.loads(capsys.readouterr().out)["version"]
    assert cli.main(["status", "--url", url, "--ca-file", other]) == cli.EXIT_UNREACHABLE  # the command line wins
    capsys.readouterr()
    not_pem = write(tmp_path, "not-pem.txt", "not a certificate\n")
    for argv, named in ((["--ca-file", str(tmp_path / "missing.pem")], f"--ca-file: cannot read {tmp_path}/missing"),
                        (["--ca-file", not_pem], f"--ca-file: {not_pem} holds no PEM CA certificate")):
        assert cli.main(["status", "--url", url, *argv]) == cli.EXIT_USAGE
        assert capsys.readouterr().err.startswith(f"canopy: {named}")
    monkeypatch.setenv("CANOPY_CA_FILE", not_pem)
    assert cli.main(["status", "--url", url]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.startswith(f"canopy: CANOPY_CA_FILE: {not_pem} holds no PEM CA certificate")


def test_a_token_that_is_no_http_header_value_is_refused_naming_where_it_came_from(tmp_path, capsys, monkeypatch):
    """A newline in the token (--token, CANOPY_TOKEN, a token file with a second line) ended the
    command with http.client's ValueError traceback, exit code 1 ('refused by the controller'); a token file that is
    no UTF-8 with a UnicodeDecodeError. Now each is refused as wrong usage, naming where the token came from, and
    nothing is sent (nothing listens at the URL: 'cannot reach' would say something was)."""
    monkeypatch.delenv("CANOPY_TOKEN", raising=False)
    url = "http://127.0.0.1:9"
    token = tmp_path / "rest-token"
    config = write(tmp_path, "canopy.yaml", f"data_dir: {tmp_path / 'd'}\nrest: {{token_file: {token}}}\n")
    for content, char in ((b"tok\nsecond\n", "'\\n' at character 4"), (b"tok\0\n", "'\\x00' at character 4")):
        token.write_bytes(content)
        token.chmod(0o600)
        assert cli.main(["status", "--url", url, "--config", config]) == cli.EXIT_USAGE
        assert capsys.readouterr().err.startswith(f"canopy: the token file {token} ({config}): holds {char}: ")
    assert cli.main(["status", "--url", url, "--token", "tok\n"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.startswith("canopy: the token given by --token: holds '\\n' at character 4: ")
    monkeypatch.setenv("CANOPY_TOKEN", "a b")
    assert cli.main(["show", "--url", url]) == cli.EXIT_USAGE
    assert capsys.readouterr().err == ("canopy: the token of CANOPY_TOKEN: holds ' ' at character 2: a token is "
                                       "printable ASCII without spaces (it is sent in an HTTP Authorization header)\n")
    token.write_bytes(b"tok\n")  # the token and one newline, as the controller reads it: sent
    assert cli.main(["status", "--url", url, "--config", config]) == cli.EXIT_UNREACHABLE
    assert "cannot reach the controller at http://127.0.0.1:9" in capsys.readouterr().err


@pytest.mark.parametrize("key, kind", [("token_file", "token"), ("read_token_file", "read-only token")])
def test_a_token_file_is_read_as_the_controller_reads_it_and_a_fifo_never_waited_on(tmp_path, capsys, monkeypatch,
                                                                                    key, kind):
    """The CLI read token files with open() and read(): a FIFO there (no writer) hung `canopy status` in its open,
    any size was read, a byte that is no UTF-8 was named as a character. It reads them as the controller does
    (secretfile.read_text): a file the controller would refuse is refused, naming it and why, before anything is sent
    (exit code 2); CRLF ends a token as LF does; an absent file is no token, as before."""
    from tests.unit.fifo import fifo_without_writer

    monkeypatch.delenv("CANOPY_TOKEN", raising=False)
    monkeypatch.delenv("CANOPY_READ_TOKEN", raising=False)
    url = "http://127.0.0.1:9"  # nothing listens: 'cannot reach' says the command went on to send

    def status(path):
        config = write(tmp_path, "canopy.yaml", f"data_dir: {tmp_path / 'd'}\nrest: {{{key}: {path}}}\n")
        code = cli.main(["status", "--url", url, "--config", config])
        return code, capsys.readouterr().err, config

    with fifo_without_writer(tmp_path / "fifo") as fifo:
        code, err, config = status(fifo)
    assert code == cli.EXIT_USAGE and err == (
        f"canopy: the {kind} file of {config}: {fifo} is a FIFO, not a regular file: a secret file must be one "
        "(reading a FIFO could block Canopy or never end)\n")
    token = tmp_path / "token"
    for content, mode, why in ((b"to\xffk\n", 0o600, "is not UTF-8 text (byte 3 is 0xff)"),
                               (b"t" * 70000, 0o600, "holds 70000 bytes"), (b"tok\n", 0o644, "has mode 0644")):
        token.write_bytes(content)
        token.chmod(mode)
        code, err, config = status(token)
        assert code == cli.EXIT_USAGE and err.startswith(f"canopy: the {kind} file of {config}: {token} {why}"), err
    token.write_bytes(b"tok\r\n")
    token.chmod(0o600)
    code, err, _ = status(token)
    assert code == cli.EXIT_UNREACHABLE and err.startswith("canopy: cannot reach the controller at http://127.0.0.1:9:")


def test_read_commands_take_the_read_only_token_as_the_write_token_is_taken(tmp_path, capsys, monkeypatch,
                                                                              served_read_token):
    """A host holding only the read-only token (rest.read_token) can run the commands that read: from --read-token,
    else --config's rest.read_token_file, else CANOPY_READ_TOKEN. Before there was no way to give it but as the
    write token (--token), and --config ignored it: the read got 401."""
    url = served_read_token
    monkeypatch.delenv("CANOPY_TOKEN", raising=False)
    monkeypatch.delenv("CANOPY_READ_TOKEN", raising=False)
    port = url.rsplit(":", 1)[1]
    read_file = tmp_path / "read-token"
    read_file.write_text(READ + "\n")
    read_file.chmod(0o600)  # as the controller wants it (secretfile.read_text)
    config = write(tmp_path, "canopy.yaml", f"data_dir: {tmp_path / 'd'}\nrest: {{port: {port}, token_file: "
                                            f"{tmp_path / 'not-mine'}, read_token_file: {read_file}}}\n")
    for how in (["--url", url, "--read-token", READ], ["--config", config]):
        assert cli.main(["status", "--json", *how]) == cli.EXIT_OK
        assert json.loads(capsys.readouterr().out)["version"]
        assert cli.main(["trace", "--switch", "nowhere", "ip", *how]) == cli.EXIT_INVALID  # a read: answered 404
        assert "401" not in capsys.readouterr().err
    monkeypatch.setenv("CANOPY_READ_TOKEN", READ)
    assert cli.main(["status", "--url", url, "--json"]) == cli.EXIT_OK
    monkeypatch.setenv("CANOPY_READ_TOKEN", "a b")  # refused before anything is sent, naming where it came from
    assert cli.main(["status", "--url", url]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.startswith("canopy: the read-only token of CANOPY_READ_TOKEN: holds ' '")


def test_reads_send_the_read_only_token_and_writes_the_write_token(tmp_path, capsys, monkeypatch, served_read_token):
    """With both, each request sends the token for its kind: a wrong write token leaves reads working, and the
    write's 401 names the write token."""
    url = served_read_token
    path = write(tmp_path, "a.yaml", "tenants: [{name: acme}]\n")
    both = ["--url", url, "--read-token", READ]
    assert cli.main(["status", "--json", *both, "--token", "wrong"]) == cli.EXIT_OK
    capsys.readouterr()
    assert cli.main(["apply", path, *both, "--token", "wrong"]) == cli.EXIT_INVALID
    assert "canopy: the controller refused the token given by --token; give --config" in capsys.readouterr().err
    assert cli.main(["apply", path, *both, "--token", TOKEN]) == cli.EXIT_OK
    assert cli.main(["status", "--json", "--url", url, "--read-token", "wrong", "--token", TOKEN]) == cli.EXIT_INVALID
    assert ("canopy: the controller refused the read-only token given by --read-token; give --config with the "
            "controller's settings file, or --token (CANOPY_TOKEN), or, for reads, --read-token (CANOPY_READ_TOKEN)"
            in capsys.readouterr().err)


@pytest.mark.parametrize("how", ["--read-token", "--token"])
def test_a_write_with_only_the_read_only_token_is_one_message_naming_it_and_changes_nothing(
        tmp_path, capsys, monkeypatch, served_read_token, how):
    """The controller's 403 read_only_token becomes a message that names the read-only token the command held and
    how to give the write token, also when the read-only token was given as --token; exit code 1, no traceback."""
    url = served_read_token
    monkeypatch.delenv("CANOPY_TOKEN", raising=False)
    config = write(tmp_path, "canopy.yaml", f"data_dir: {tmp_path / 'd'}\nrest: {{read_token: {READ}}}\n")
    path = write(tmp_path, "a.yaml", "tenants: [{name: acme}]\n")
    argv = ["apply", path, "--url", url, how, READ] + (["--config", config] if how == "--read-token" else [])
    assert cli.main(argv) == cli.EXIT_INVALID
    err = capsys.readouterr().err
    given = "the read-only token given by --read-token" if how == "--read-token" else "the token given by --token"
    assert err.splitlines()[-2].startswith("canopy: 403: POST /v1/apply changes state, and the bearer token is the "
                                           "read-only one")  # the controller's answer, as docs/rest.md shows it
    assert err.splitlines()[-1] == (
        f"canopy: this command writes, and {given} is the controller's read-only token (rest.read_token), which only "
        "reads; the write token (rest.token) is needed: give --config with the controller's settings file, or --token "
        "(CANOPY_TOKEN)")
    assert "Traceback" not in err
    request = urllib.request.Request(f"{url}/v1/tenants", headers={"Authorization": f"Bearer {READ}"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert json.loads(resp.read())["items"] == []


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "soon"])
@pytest.mark.parametrize("argv", [["health", "--timeout"], ["apply", "-", "--wait", "--wait-timeout"]])
def test_a_timeout_that_is_no_positive_number_of_seconds_is_refused_naming_the_option(capsys, argv, value):
    """``canopy health --timeout -1`` reported "unhealthy: ValueError: Timeout value out of range", naming no option;
    nan and inf were taken (a wait that never ends). A wrong command line: exit code 2, the option named."""
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, value])
    assert exc.value.code == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"argument {argv[-1]}: must be a number of seconds above 0, not '{value}'" in err
    assert "Traceback" not in err


def test_a_timeout_in_seconds_is_taken():
    from controller.cli_remote import seconds

    assert seconds("0.5") == 0.5 and seconds("300") == 300.0


def test_a_fifo_given_as_ca_file_is_refused_naming_where_it_came_from_without_waiting(tmp_path):
    """ssl opened a FIFO given as --ca-file and the CLI waited for a writer: the file is looked at first (a reader
    that blocks is released by the test, tests/unit/fifo.py, and the test fails)."""
    from controller.cli_remote import client_tls
    from tests.unit.fifo import fifo_without_writer

    with fifo_without_writer(tmp_path / "ca.pem") as fifo:
        context, problem = client_tls(fifo, "--ca-file")
    assert context is None and problem.startswith(f"--ca-file: {fifo} is a FIFO, not a regular file (reading a FIFO")


def test_check_names_an_object_without_a_name_by_its_place_and_line(tmp_path, capsys):
    """A misspelt `name` printed "tenant 'None'", at the line of the last unnamed tenant for all of them."""
    path = write(tmp_path, "n.yaml", "tenants:\n  - nmae: acme\n  - name: ok\n  - nmae: beta\n")
    assert cli.main(["check", path]) == cli.EXIT_INVALID
    assert capsys.readouterr().err.strip().splitlines() == [
        f"{path}:2: tenants[0].nmae: unknown field (did you mean 'name'?)", f"{path}:2: tenants[0].name: is required",
        f"{path}:4: tenants[2].nmae: unknown field (did you mean 'name'?)", f"{path}:4: tenants[2].name: is required"]
