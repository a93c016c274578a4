"""``canopy run`` under systemd's Type=notify: READY=1 once the REST API answers, STOPPING=1 on a clean stop.

The test plays the service manager: it binds a Unix datagram socket, starts ``canopy run`` with NOTIFY_SOCKET
pointing at it (every listener on a free loopback port), and reads what arrives.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.harness import process
from tests.harness.ports import reserved_port
from tests.harness.wait import wait_until

CANOPY = str(Path(sys.executable).with_name("canopy"))


def free_port() -> int:
    """A port kept for the controller's listener until it binds it (tests/harness/ports.py)."""
    return reserved_port()


def status_answers(port) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture()
def manager(tmp_path):
    """(the bound notify socket, its path)."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    yield sock, path
    sock.close()


def start(tmp_path, notify_path, rest_port):
    settings = {"data_dir": str(tmp_path / "data"), "openflow": {"listen": "127.0.0.1", "port": free_port()},
                "ovsdb": {"listen": "127.0.0.1", "port": free_port()},
                "rest": {"listen": "127.0.0.1", "port": rest_port, "token": "t"}}
    config = tmp_path / "canopy.yaml"
    config.write_text(json.dumps(settings))
    env = {"NOTIFY_SOCKET": str(notify_path)} if notify_path else {}
    return process.spawn("canopy", [CANOPY, "run", "--config", str(config)], tmp_path / "canopy.log", env=env)


def receive(sock, timeout):
    sock.settimeout(timeout)
    return sock.recv(4096).decode()


def test_ready_is_sent_once_the_rest_api_answers_and_stopping_on_a_clean_stop(tmp_path, manager):
    sock, path = manager
    rest_port = free_port()
    child = start(tmp_path, path, rest_port)
    try:
        message = receive(sock, 60)
        assert status_answers(rest_port), "READY=1 came before /v1/status answered"
        fields = dict(line.split("=", 1) for line in message.splitlines())
        assert fields["READY"] == "1" and fields["MAINPID"] == str(child.pid), message
        assert f"127.0.0.1:{rest_port}" in fields["STATUS"]
        child.send(signal.SIGTERM)  # what systemd sends to stop a service: a clean stop (docs/operations.md)
        assert "STOPPING=1" in receive(sock, 30).splitlines()
        wait_until(lambda: not child.alive(), timeout=30, what="canopy run exits after SIGTERM")
        assert child.popen.returncode == 0
    finally:
        process.stop([child])


def test_nothing_is_sent_without_notify_socket(tmp_path, manager):
    sock, _path = manager
    rest_port = free_port()
    child = start(tmp_path, None, rest_port)
    try:
        wait_until(lambda: status_answers(rest_port), timeout=60, what="/v1/status answers")
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(4096)
    finally:
        process.stop([child])


def test_abstract_socket_address_and_unreachable_manager(tmp_path):
    from controller import sdnotify

    name = f"canopy-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert sdnotify.notify("READY=1", {"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(100) == b"READY=1"
    assert not sdnotify.notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "absent.sock")})  # logged, no raise
    assert not sdnotify.notify("READY=1", {})
