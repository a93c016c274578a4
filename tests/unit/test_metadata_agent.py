"""The metadata agent's decisions: which vport asked (from the source address the switch gave it, read from the
controller's real REST API), the headers and signature Nova checks, the relay to a Nova stand-in on loopback
that verifies them, 404 without an instance, and its settings file."""

import hashlib
import hmac
from dataclasses import replace

import pytest

from controller import metadata_agent as ma
from controller.discovery import PortInfo, VrsSnapshot
from openflow.metadata import source_address
from tests.harness import fake_nova_metadata
from tests.harness.systemd import assert_unit_verifies

from .helpers import Controller

SECRET = b"s3cret"
PROJECT = "0123456789abcdef0123456789abcdef"
INSTANCE = "6f1c8e3a-0a8b-4c55-9e2f-1d2c3b4a5f60"
OTHER = "9d2e7c1a-5b4f-4e3d-8c2b-1a0f9e8d7c6b"
DPID = 0x2A


@pytest.fixture
def canopy(tmp_path):
    """A controller core with tenant acme (project PROJECT): vm1 (instance INSTANCE) on port 7 of switch DPID,
    esx1 (instance OTHER) on VLAN 101 of its trunk, bare (no instance) on port 8."""
    ctl = Controller(tmp_path)
    tenant = ctl.create("tenants", {"name": "acme", "project_id": PROJECT})
    subnet = ctl.create("subnets", {"tenant_id": tenant["id"], "name": "lan", "cidr": "10.0.1.0/24"})
    for name, mac, ip, flavour, instance in (("vm1", "02:00:00:00:00:01", "10.0.1.5", "kvm", INSTANCE),
                                              ("esx1", "02:00:00:00:00:02", "10.0.1.6", "esxi", OTHER),
                                              ("bare", "02:00:00:00:00:03", "10.0.1.7", "kvm", None)):
        ctl.create("vports", {"subnet_id": subnet["id"], "name": name, "mac": mac, "ips": [ip],
                              "binding": {"flavour": flavour}, "instance_id": instance})
    ports = (PortInfo("tap-vm1", 7, "02:00:00:00:00:01", (("iface-id", "vm1"),)),
             PortInfo("tap-bare", 8, "02:00:00:00:00:03", (("iface-id", "bare"),)),
             PortInfo("trunk0", 9, None, (("canopy-vnic-101", "esx1"),)))
    ctl.state.vrs_update(VrsSnapshot("hv1", "p", "hv1", flavour="esxi", datapath_id=DPID, bridge_present=True,
                                     ports=ports))
    yield ctl
    ctl.close()


def reader(ctl):
    def get(path):
        status, body = ctl.call("GET", path)
        if status != 200:
            raise ma.Refused(404 if status == 404 else 503, f"{status} {path}")
        return body
    return get


def test_the_source_address_names_the_vport_bound_there(canopy):
    vm1 = ma.resolve(reader(canopy), DPID, source_address(7, None))
    assert (vm1.vport_ref, vm1.instance_id, vm1.project_id, vm1.address) == ("acme/lan/vm1", INSTANCE, PROJECT,
                                                                            "10.0.1.5")
    esx1 = ma.resolve(reader(canopy), DPID, source_address(9, 101))
    assert (esx1.vport_ref, esx1.instance_id) == ("acme/lan/esx1", OTHER)


@pytest.mark.parametrize("client, status", [("10.0.1.5", 403), ("169.254.169.254", 403),
                                            (source_address(11, None), 404), (source_address(9, 102), 404),
                                            (source_address(7, 101), 404)])
def test_an_address_that_names_no_bound_vport_is_refused(canopy, client, status):
    with pytest.raises(ma.Refused) as info:
        ma.resolve(reader(canopy), DPID, client)
    assert info.value.status == status


def test_nova_headers_carry_the_instance_the_project_the_address_and_the_signature():
    identity = ma.Identity("v1", "acme/lan/vm1", INSTANCE, PROJECT, "10.0.1.5")
    headers = ma.nova_headers(identity, SECRET)
    assert headers == {"X-Instance-ID": INSTANCE, "X-Tenant-ID": PROJECT, "X-Forwarded-For": "10.0.1.5",
                       "X-Instance-ID-Signature": hmac.new(SECRET, INSTANCE.encode(), hashlib.sha256).hexdigest()}
    assert len(headers["X-Instance-ID-Signature"]) == 64
    assert ma.nova_headers(identity, b"other")["X-Instance-ID-Signature"] != headers["X-Instance-ID-Signature"]
    for missing in (replace(identity, instance_id=None), replace(identity, project_id=None)):
        with pytest.raises(ma.Refused) as info:
            ma.nova_headers(missing, SECRET)
        assert info.value.status == 404


@pytest.fixture
def nova():
    server = fake_nova_metadata.serve("127.0.0.1", 0, SECRET, {INSTANCE: {"project_id": PROJECT, "name": "vm1"},
                                                               OTHER: {"project_id": PROJECT, "name": "esx1"}})
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def agent(canopy, nova, secret=SECRET):
    settings = ma.AgentSettings(nova, "/nonexistent", ("http://canopy.invalid",), "/nonexistent", timeout=5)
    return ma.Agent(settings, lambda: DPID, secret, reader(canopy))


def test_requests_are_relayed_for_the_asking_vport_and_nova_accepts_them(canopy, nova):
    status, headers, body = agent(canopy, nova).handle("GET", "/latest/meta-data/instance-id",
                                                       source_address(7, None), None)
    assert (status, body) == (200, INSTANCE.encode())
    status, headers, body = agent(canopy, nova).handle("GET", "/openstack/latest/meta_data.json",
                                                       source_address(9, 101), None)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert b'"uuid": "%s"' % OTHER.encode() in body and b'"forwarded_for": "10.0.1.6"' in body


def test_a_vport_without_instance_gets_404_and_nova_is_not_asked(canopy):
    status, _, body = agent(canopy, "http://127.0.0.1:9").handle("GET", "/latest/meta-data/instance-id",
                                                                 source_address(8, None), None)
    assert status == 404 and b"has no instance_id" in body


def test_what_is_not_a_relayable_request_is_answered_by_the_agent(canopy, nova):
    client = source_address(7, None)
    assert agent(canopy, nova).handle("PUT", "/latest/meta-data/", client, b"")[0] == 405
    assert agent(canopy, nova).handle("GET", "http://elsewhere/latest", client, None)[0] == 400

    def broken():
        raise RuntimeError("ovs-vsctl: database connection failed")

    broken_agent = agent(canopy, nova)
    broken_agent.dpid = broken
    status, _, body = broken_agent.handle("GET", "/latest/meta-data/instance-id", client, None)
    assert status == 503 and b"datapath id" in body


def test_a_wrong_secret_is_what_nova_refuses(canopy, nova):
    status, _, _ = agent(canopy, nova, b"not the secret").handle("GET", "/latest/meta-data/instance-id",
                                                                 source_address(7, None), None)
    assert status == 403


def test_settings_name_what_is_wrong(tmp_path):
    good = tmp_path / "agent.yaml"
    good.write_text("nova_metadata_url: http://192.0.2.10:8775\nshared_secret_file: /etc/s\n"
                    "canopy_url: https://canopy.example:8080\ntoken_file: /etc/t\ntimeout: 3\n")
    settings = ma.load_settings(str(good))
    assert settings.port == "canopy-md" and settings.bridge == "br-int" and settings.timeout == 3.0
    bad = tmp_path / "bad.yaml"
    bad.write_text("nova_metadata_url: ftp://x\nshared_secret_file: /etc/s\ntoken_file: ''\nport: a-very-long-name0\n"
                   "colour: blue\n")
    with pytest.raises(ma.SettingsError) as info:
        ma.load_settings(str(bad))
    text = str(info.value)
    for part in ("bad.yaml:1: nova_metadata_url", "canopy_url: required", "bad.yaml:3: token_file",
                 "bad.yaml:4: port", "bad.yaml:5: colour: unknown setting"):
        assert part in text, text
    empty = tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    with pytest.raises(ma.SettingsError, match="is empty"):
        replace(settings, shared_secret_file=str(empty)).secret()


def test_the_unit_runs_the_agent_with_the_example_settings_and_they_load(tmp_path):
    import shlex
    from pathlib import Path

    from controller import cli

    root = Path(__file__).resolve().parents[2]
    unit = (root / "deploy" / "systemd" / "canopy-metadata-agent.service").read_text()
    exec_start = next(line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("ExecStart="))
    exe, *argv = shlex.split(exec_start)
    assert exe == "/opt/canopy/venv/bin/canopy"
    args = cli._parser().parse_args(argv)
    assert args.func is cli.cmd_metadata_agent and args.config == "/etc/canopy/metadata-agent.yaml"
    example = ma.load_settings(str(root / "config" / "metadata-agent.yaml"))
    assert example.port == "canopy-md" and example.nova_metadata_url.startswith("http")
    assert_unit_verifies(unit, "canopy-metadata-agent.service", tmp_path)


def test_the_command_refuses_bad_settings_with_exit_code_2(tmp_path, capsys):
    from controller import cli

    path = tmp_path / "agent.yaml"
    path.write_text("nova_metadata_url: http://192.0.2.10:8775\nshared_secret_file: /nonexistent/secret\n"
                    "canopy_url: http://192.0.2.1:8080\ntoken_file: /nonexistent/token\n")
    assert cli.main(["metadata-agent", "--config", str(path)]) == cli.EXIT_USAGE
    assert "shared_secret_file: /nonexistent/secret does not exist" in capsys.readouterr().err


def test_secret_files_other_users_can_read_are_refused_naming_key_file_and_mode(tmp_path, capsys):
    """As the controller's ha.secret_file and rest.token_file (controller/secretfile.py): the shared secret signs
    requests for any instance's metadata, and the token reads the whole policy."""
    from controller import cli

    secret, token = tmp_path / "secret", tmp_path / "token"
    secret.write_text("s3cret\n")
    token.write_text("t0ken\n")
    path = tmp_path / "agent.yaml"
    path.write_text(f"nova_metadata_url: http://192.0.2.10:8775\nshared_secret_file: {secret}\n"
                    f"canopy_url: http://192.0.2.1:8080\ntoken_file: {token}\n")
    settings = ma.load_settings(str(path))
    for key, file, read in (("shared_secret_file", secret, settings.secret), ("token_file", token, settings.token)):
        file.chmod(0o644)
        with pytest.raises(ma.SettingsError) as refused:
            read()
        assert f"{key}: {file} has mode 0644" in str(refused.value) and "chmod 600" in str(refused.value)
        file.chmod(0o600)
    assert settings.secret() == b"s3cret" and settings.token() == "t0ken"
    token.write_text("t0ken\nsecond line\n")  # a token is the file's text but one trailing newline, as Canopy's
    with pytest.raises(ma.SettingsError, match=rf"^token_file: {token}: the token in it holds '\\n' at character 6"):
        settings.token()
    token.write_text("t0ken\n")
    token.chmod(0o604)
    assert cli.main(["metadata-agent", "--config", str(path)]) == cli.EXIT_USAGE
    assert f"token_file: {token} has mode 0604" in capsys.readouterr().err


@pytest.fixture
def canopy_node():
    """A stand-in for one Canopy node's REST API on loopback: GET /v1/here answers, anything else is 404;
    ``asked`` lists the paths it was asked."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    asked = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            status, body = (200, {"here": True}) if self.path == "/v1/here" else (404, {"error": {}})
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", asked
    server.shutdown()
    server.server_close()


def test_with_both_nodes_of_a_pair_listed_the_agent_reads_past_one_that_is_down(tmp_path, canopy_node):
    import socket

    with socket.socket() as s:  # a loopback port nothing listens on: the node that is down
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}"
    up, asked = canopy_node
    config = tmp_path / "agent.yaml"
    config.write_text(f"nova_metadata_url: http://192.0.2.10:8775\nshared_secret_file: /etc/s\n"
                      f"canopy_url: [{down}, {up}]\ntoken_file: /etc/t\n")
    settings = ma.load_settings(str(config))
    assert settings.canopy_url == (down, up)
    read = ma.CanopyReader(settings, "tok")
    assert read("/v1/here") == {"here": True} and read("/v1/here") == {"here": True}
    assert read.current == 1 and asked == ["/v1/here", "/v1/here"]
    with pytest.raises(ma.Refused) as unknown:  # a 404 is the answer, not a node that is down: not asked again
        read("/v1/vports/nothing")
    assert unknown.value.status == 404 and asked[-1] == "/v1/vports/nothing"
    alone = ma.CanopyReader(replace(settings, canopy_url=(down,)), "tok")
    with pytest.raises(ma.Refused) as unreachable:
        alone("/v1/here")
    assert unreachable.value.status == 503 and "127.0.0.1" not in unreachable.value.reason  # the VM reads it


def test_a_list_of_canopy_urls_names_the_bad_one(tmp_path):
    for value, reason in (("[]", "must not be an empty list"), ("[http://a:8080, ftp://b]", "'ftp://b' is not")):
        config = tmp_path / "agent.yaml"
        config.write_text("nova_metadata_url: http://192.0.2.10:8775\nshared_secret_file: /etc/s\n"
                          f"canopy_url: {value}\ntoken_file: /etc/t\n")
        with pytest.raises(ma.SettingsError, match=f"agent.yaml:3: canopy_url: {reason}"):
            ma.load_settings(str(config))


def _settings(*urls, ca_file=None):
    return ma.AgentSettings("http://192.0.2.10:8775", "/nonexistent", tuple(urls), "/nonexistent", ca_file=ca_file,
                            timeout=5)


def _down_url():
    import socket

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_a_404_from_the_other_node_makes_it_the_one_asked_first(canopy_node):
    """A 404 is an answer: with the first node down, the second's 404 makes it the node asked first next (not the
    down one again, which costs ``timeout`` per request when it does not refuse connections)."""
    up, asked = canopy_node
    read = ma.CanopyReader(_settings(_down_url(), up), "tok")
    with pytest.raises(ma.Refused) as unknown:
        read("/v1/vports/nothing")
    assert unknown.value.status == 404 and read.current == 1


@pytest.fixture
def odd_node(tmp_path):
    """A stand-in node on loopback that answers every connection with ``node["reply"]`` bytes then closes; with
    ``node["tls"]`` set to a certificate it speaks TLS with it first."""
    import socket
    import ssl
    import threading

    node = {"reply": b"", "tls": None}
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                try:
                    if node["tls"] is not None:
                        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                        context.load_cert_chain(node["tls"].cert, node["tls"].key)
                        conn = context.wrap_socket(conn, server_side=True)
                    conn.settimeout(5)
                    conn.recv(65536)
                    conn.sendall(node["reply"])
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    node["url"] = f"127.0.0.1:{listener.getsockname()[1]}"
    yield node
    stop.set()
    thread.join(5)
    listener.close()


@pytest.mark.parametrize("reply", [b"\x00 not HTTP\r\n\r\n", b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n{x}"])
def test_a_garbled_answer_is_a_503_for_the_vm(odd_node, reply):
    odd_node["reply"] = reply
    with pytest.raises(ma.Refused) as garbled:
        ma.CanopyReader(_settings("http://" + odd_node["url"]), "tok")("/v1/here")
    assert garbled.value.status == 503


def test_a_tls_failure_is_a_503_that_does_not_name_the_controller(odd_node, tmp_path):
    """The VM reads the reason: a certificate that does not name the address asked names that address in its
    error, which goes to the log only."""
    from tests.harness.pki import Pki

    ca = Pki(tmp_path, "ca")
    odd_node["tls"] = ca.issue("canopy-node")  # no subjectAltName for 127.0.0.1
    odd_node["reply"] = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    context = ssl_context(ca.ca_cert)
    with pytest.raises(ma.Refused) as refused:
        ma.CanopyReader(_settings("https://" + odd_node["url"]), "tok", context)("/v1/here")
    assert refused.value.status == 503 and "127.0.0.1" not in refused.value.reason, refused.value.reason


def ssl_context(ca_file):
    import ssl

    return ssl.create_default_context(cafile=str(ca_file))


def test_a_nova_answer_that_is_no_http_is_a_502(canopy, odd_node):
    odd_node["reply"] = b"\x00 not HTTP\r\n\r\n"
    status, _, body = agent(canopy, "http://" + odd_node["url"]).handle("GET", "/latest/meta-data/instance-id",
                                                                        source_address(7, None), None)
    assert status == 502 and b"cannot be reached" in body


def test_a_fifo_at_ca_file_is_refused_naming_it_without_waiting_for_a_writer(tmp_path):
    """ssl opened a FIFO at ``ca_file`` and the agent's start waited for a writer: the file is looked at first (a
    reader that blocks is released by the test, tests/unit/fifo.py, and the test fails)."""
    from tests.unit.fifo import fifo_without_writer

    with fifo_without_writer(tmp_path / "ca.pem") as fifo:
        with pytest.raises(ma.SettingsError, match=f"^ca_file: {fifo} is a FIFO, not a regular file"):
            _settings("http://192.0.2.11", ca_file=fifo).tls_context()
    with pytest.raises(ma.SettingsError, match="^ca_file: cannot read .*missing.pem"):
        _settings("http://192.0.2.11", ca_file=str(tmp_path / "missing.pem")).tls_context()
    (tmp_path / "empty.pem").write_text("")
    with pytest.raises(ma.SettingsError, match="^ca_file: .*empty.pem holds no PEM CA certificate"):
        _settings("http://192.0.2.11", ca_file=str(tmp_path / "empty.pem")).tls_context()
    assert _settings("http://192.0.2.11").tls_context() is None


def test_the_wait_for_the_agents_port_counts_elapsed_time_not_the_wall_clock(monkeypatch):
    """The agent's only wait of its own (its port appearing after ovs-vsctl add-port) runs on the monotonic clock, as
    the controller's do (tests/harness/wallclock); its other waits are timeouts of subprocess, urllib and the HTTP
    server, which count elapsed time. A wall clock stepped back an hour at each look neither stretches it past
    10 s nor, stepped forward, cuts it short."""
    from types import SimpleNamespace

    clock = {"wall": 1_800_000_000.0, "monotonic": 100.0, "looks": 0}

    def sleep(seconds):
        clock["monotonic"] += seconds
        clock["wall"] += -3600.0 if clock["looks"] % 2 else 3600.0
        clock["looks"] += 1

    monkeypatch.setattr(ma, "time", SimpleNamespace(time=lambda: clock["wall"], monotonic=lambda: clock["monotonic"],
                                                    sleep=sleep))
    monkeypatch.setattr(ma, "_run", lambda argv: "")  # ovs-vsctl, ip: done
    monkeypatch.setattr(ma.subprocess, "run", lambda *a, **k: SimpleNamespace(returncode=1))  # the link never shows
    port = ma.AgentPort(ma.AgentSettings("http://n", "s", ("http://c",), "t"))
    with pytest.raises(RuntimeError, match="did not appear"):
        port.create()
    assert 10.0 < clock["monotonic"] - 100.0 <= 10.1 and clock["looks"] == 201
