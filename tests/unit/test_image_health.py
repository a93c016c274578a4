"""The image's HEALTHCHECK, run as the engine runs it (the command from the Dockerfile, in the container's process
layout: PID 1 is the image's ENTRYPOINT with the run arguments), against a REST listener that wants the token, without
building the image (.ci/image-smoke builds it). It used to read the token from the data volume only and to speak
plain HTTP: with the settings docs/deploy.md gives (rest.token_file elsewhere, a tls section) it died with a
traceback. Now it asks with the settings the container runs with, and fails in one line, exit 1."""

from __future__ import annotations

import http.server
import json
import re
import ssl
import threading
from pathlib import Path

import pytest

from controller import cli, cli_health
from tests.harness.pki import Pki

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "f" * 64


def _instruction(name) -> list[str]:
    """An exec-form instruction of the final stage (JSON after its options), continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    [line] = [ln for ln in text.splitlines() if ln.startswith(name + " ") and "[" in ln]
    return json.loads(line[line.index("["):])


class _Status(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        ok = self.path == "/v1/status" and self.headers.get("Authorization") == f"Bearer {TOKEN}"
        body = b'{"health": "ok"}' if ok else b'{"error": "unauthorized"}'
        self.send_response(200 if ok else 401)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a refused TLS handshake is the test's point: not a report on (captured) standard error


@pytest.fixture
def serve():
    """serve(tls_context=None) -> port of a REST stand-in that answers /v1/status 200 to the token, 401 otherwise."""
    servers = []

    def start(context=None):
        server = _Server(("127.0.0.1", 0), _Status)
        if context is not None:
            server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def container(tmp_path, monkeypatch, capsys):
    """health(settings_text) -> (exit code, standard error): the HEALTHCHECK command run in a container whose PID 1 is
    the image's ENTRYPOINT running ``run --config FILE`` (FILE holding settings_text), as after `podman run IMAGE run
    --config FILE`."""
    for name in ("CANOPY_URL", "CANOPY_TOKEN", "CANOPY_READ_TOKEN", "CANOPY_CA_FILE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    exe, *argv = _instruction("HEALTHCHECK")
    assert exe == "/opt/canopy/venv/bin/canopy" and argv == ["health"]

    def health(settings_text):
        settings = tmp_path / "canopy.yaml"
        settings.write_text(settings_text)
        cmdline = tmp_path / "pid1-cmdline"
        cmdline.write_bytes("\0".join(_instruction("ENTRYPOINT") + ["run", "--config", str(settings)]).encode() + b"\0")
        monkeypatch.setattr(cli_health, "MAIN_CMDLINE", str(cmdline))
        capsys.readouterr()
        code = cli.main(argv)
        return code, capsys.readouterr().err

    return health


def _secret(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def _one_line(err: str) -> str:
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith("canopy health: unhealthy: ")
    return err


def test_with_the_images_settings_it_sends_the_token_of_the_data_volume(tmp_path, serve, container):
    port = serve()
    data = tmp_path / "data"
    data.mkdir()
    settings = f"data_dir: {data}\nrest: {{listen: 0.0.0.0, port: {port}, open_reads: never}}\n"
    assert container(settings)[0] == 1  # no token in the volume yet: unhealthy, in one line (was a traceback)
    _one_line(container(settings)[1])
    _secret(data / "rest-token", TOKEN + "\n")
    assert container(settings) == (0, "")


def test_with_a_token_file_elsewhere_and_https_it_asks_with_those_settings_and_the_ca_the_docs_name(
        tmp_path, serve, container, monkeypatch):
    ca = Pki(tmp_path / "pki", "controllerca")
    own = ca.issue("controller", ips=("127.0.0.1",))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(own.cert, own.key)
    port = serve(context)
    token = _secret(tmp_path / "rest-token", TOKEN + "\n")
    settings = (f"data_dir: {tmp_path / 'data'}\nrest: {{listen: 0.0.0.0, port: {port}, open_reads: never, "
                f"token_file: {token}}}\ntls: {{key: {own.key}, cert: {own.cert}, ca_cert: {ca.ca_cert}}}\n")
    code, err = container(settings)  # the CA not given: refused, one line naming why
    assert code == 1 and "CERTIFICATE_VERIFY_FAILED" in _one_line(err)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca_cert))  # docs/deploy.md: --env=SSL_CERT_FILE=<the CA>
    assert container(settings) == (0, "")
    monkeypatch.delenv("SSL_CERT_FILE")
    monkeypatch.setenv("CANOPY_CA_FILE", str(ca.ca_cert))  # as for every canopy command
    assert container(settings) == (0, "")


def test_a_refused_token_and_a_controller_down_are_one_line_each(tmp_path, serve, container):
    port = serve()
    token = _secret(tmp_path / "rest-token", "0" * 64 + "\n")
    settings = f"data_dir: {tmp_path}\nrest: {{listen: 127.0.0.1, port: {port}, token_file: {token}}}\n"
    code, err = container(settings)
    assert code == 1 and f"answered 401 Unauthorized; the token file {token}" in _one_line(err)
    with socket_closed() as free:
        code, err = container(f"data_dir: {tmp_path}\nrest: {{listen: 127.0.0.1, port: {free}, token_file: {token}}}\n")
    assert code == 1 and f"cannot reach the controller at http://127.0.0.1:{free}" in _one_line(err)
    code, err = container("rest: {port: not-a-port}\n")  # settings it cannot use: still one line, exit 1 (not 2)
    assert code == 1 and "rest.port" in _one_line(err)


def test_with_a_read_only_token_configured_it_asks_with_that_token(tmp_path, serve, container):
    """The check only reads: with rest.read_token_file (or rest.read_token) in the settings it sends the read-only
    token, not the write token (the stand-in accepts TOKEN alone: here the read-only token); a read-only token file
    that is a FIFO is one line, exit 1, without waiting for a writer."""
    from tests.unit.fifo import fifo_without_writer

    port = serve()
    write = _secret(tmp_path / "rest-token", "0" * 64 + "\n")  # the write token: refused by the stand-in
    read = _secret(tmp_path / "read-token", TOKEN + "\n")
    rest = f"listen: 127.0.0.1, port: {port}, open_reads: never, token_file: {write}"
    assert container(f"data_dir: {tmp_path}\nrest: {{{rest}, read_token_file: {read}}}\n") == (0, "")
    assert container(f"data_dir: {tmp_path}\nrest: {{{rest}, read_token: {TOKEN}}}\n") == (0, "")
    code, err = container(f"data_dir: {tmp_path}\nrest: {{{rest}}}\n")  # no read-only token: the write token
    assert code == 1 and f"answered 401 Unauthorized; the token file {write}" in _one_line(err)
    with fifo_without_writer(tmp_path / "read-fifo") as fifo:
        code, err = container(f"data_dir: {tmp_path}\nrest: {{{rest}, read_token_file: {fifo}}}\n")
    assert code == 1 and f"{fifo} is a FIFO, not a regular file" in _one_line(err)


class socket_closed:
    """A loopback port nothing listens on (bound, then closed)."""

    def __enter__(self):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("argv, config", [
    (["/usr/bin/tini", "--", "/opt/canopy/venv/bin/canopy", "run", "--config", "/etc/canopy/canopy.yaml"],
     "/etc/canopy/canopy.yaml"),
    (["/usr/bin/tini", "--", "/opt/canopy/venv/bin/canopy", "run", "--config=/etc/c.yaml", "--accept-store"],
     "/etc/c.yaml"),
    (["/usr/bin/tini", "--", "/opt/canopy/venv/bin/canopy", "run"], None),  # the built-in defaults
    (["/usr/bin/tini", "--", "/opt/canopy/venv/bin/canopy", "check-settings", "/x.yaml"], None),
    (["/sbin/init"], None),  # no container of its own (chroot isolation): the defaults
])
def test_the_settings_file_is_the_one_pid_1_runs_canopy_with(tmp_path, argv, config):
    path = tmp_path / "cmdline"
    path.write_bytes("\0".join(argv).encode() + b"\0")
    assert cli_health.main_settings_file(str(path)) == config
    assert cli_health.main_settings_file(str(tmp_path / "absent")) is None


@pytest.mark.parametrize("run_args", [["--config"], ["--config", "--accept-store"], ["--help"]])
def test_a_pid_1_command_line_canopy_refuses_is_no_config_and_the_check_stays_one_line(tmp_path, monkeypatch, capsys,
                                                                                       run_args):
    """argparse printed its usage (or help) for PID 1's ``canopy run --config`` without a value: the check's output was
    several lines. Such a command line is one without --config (the defaults) and the check says why in one line."""
    for name in ("CANOPY_READ_TOKEN", "CANOPY_CA_FILE", "SSL_CERT_FILE"):
        monkeypatch.delenv(name, raising=False)
    cmdline = tmp_path / "pid1-cmdline"
    cmdline.write_bytes("\0".join(["/usr/bin/tini", "--", "/opt/canopy/venv/bin/canopy", "run", *run_args]).encode())
    monkeypatch.setattr(cli_health, "MAIN_CMDLINE", str(cmdline))
    with socket_closed() as free:
        monkeypatch.setenv("CANOPY_URL", f"http://127.0.0.1:{free}")
        monkeypatch.setenv("CANOPY_TOKEN", TOKEN)
        capsys.readouterr()
        code = cli.main(["health"])
    out, err = capsys.readouterr()
    assert code == 1 and out == "" and f"cannot reach the controller at http://127.0.0.1:{free}" in _one_line(err)
