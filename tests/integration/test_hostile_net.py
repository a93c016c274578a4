"""Hostile peers on the controller's own ports (issue 12, items 1, 2, 3 and 5), against a real controller.

Every attack here comes from sockets opened inside the controller's namespace (loopback, sources
127.0.0.N so that per-source caps can be told apart from global ones); the proof that the controller
survived is a real Open vSwitch hypervisor that still connects and is still programmed, and REST that
still answers.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.harness import netns
from tests.harness.http import RestClient
from tests.harness.policy import acme_web, create
from tests.harness.ports import reserved_port
from tests.harness.wait import wait_until

pytestmark = pytest.mark.integration

TOKEN = "test-token"
REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------- helpers

def in_ns(ctl, function, timeout=120.0):
    return netns.call_in(ctl.ns, function, timeout)


def connect_from(source: str, port: int, timeout: float = 5.0) -> socket.socket | None:
    """A TCP connection from ``source`` to 127.0.0.1:``port`` (call inside the namespace), or None."""
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(timeout)
    try:
        sock.connect(("127.0.0.1", port))
    except OSError:
        sock.close()
        return None
    return sock


def open_idle(ctl, port: int, sources: range, each: int) -> list[socket.socket]:
    """``each`` idle connections from every 127.0.0.N, N in ``sources``, that send nothing."""
    def make():
        socks = [connect_from(f"127.0.0.{n}", port) for n in sources for _ in range(each)]
        return [s for s in socks if s is not None]
    return in_ns(ctl, make)


def closed_by_peer(sock: socket.socket) -> bool:
    """True once the other end closed (EOF or reset); whatever it sent before is read and dropped."""
    sock.setblocking(False)
    try:
        while True:
            if not sock.recv(65536):
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True


def close_all(socks):
    for sock in socks:
        sock.close()


def log_of(canopy) -> str:
    return canopy.log_path.read_text(errors="replace")


def switch_of(api, chassis):
    return next((s for s in api.get("/v1/switches").json["items"] if s["chassis"] == chassis), None)


def connected(api, hv):
    sw = switch_of(api, hv.name)
    return bool(sw and sw["openflow"]["connected"] and sw["ovsdb"] and sw["ovsdb"]["connected"])


# ------------------------------------------------------------------------ 1. descriptor exhaustion

def test_idle_openflow_peers_are_dropped_and_emfile_is_survived(lab):
    ctl = lab.add_controller_host("ctl1")
    canopy = lab.start_controller(ctl, {"openflow": {"handshake_timeout_ms": 3000, "max_connections_per_source": 3}})
    # The common limit is 1024; 200 makes the same point with fewer sockets.
    subprocess.run(["prlimit", "--pid", str(canopy.pid), "--nofile=200:200"], check=True)
    idle = open_idle(ctl, 6653, range(2, 82), 4)  # 320 connections from 80 addresses, 4 each (cap: 3)
    try:
        wait_until(lambda: all(closed_by_peer(s) for s in idle), 60,
                   what="every idle OpenFlow connection (no HELLO) closed by the controller")
        text = log_of(canopy)
        assert "Too many open files" in text  # the descriptor limit was really hit ...
        assert "already has 3 connections open" in text  # ... and the fourth from one address was refused
        assert "no HELLO and features reply within 3 s" in text
        assert canopy.alive()
        assert canopy.api.get("/v1/status").status == 200
        hv = lab.add_hypervisor("hv1")
        hv.connect(ctl)
        wait_until(lambda: connected(canopy.api, hv), 30, what="a real switch connects after the attack")
    finally:
        close_all(idle)


def _free_port() -> int:
    """A port kept for the controller's listener until it binds it (tests/harness/ports.py)."""
    return reserved_port()


def test_a_listener_that_cannot_run_ends_the_process_with_a_failure_status(tmp_path):
    """The OpenFlow port is taken: the controller must not carry on without it, nor exit 0."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    config = tmp_path / "canopy.yaml"
    config.write_text(json.dumps({
        "data_dir": str(tmp_path / "data"),
        "openflow": {"listen": "127.0.0.1", "port": taken.getsockname()[1]},
        "ovsdb": {"listen": "127.0.0.1", "port": _free_port()},
        "rest": {"listen": "127.0.0.1", "port": _free_port(), "token": TOKEN}}))
    log_path = tmp_path / "canopy.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "canopy"), "run", "--config", str(config)],
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: proc.poll() is not None, 60, what="the controller to exit without its OpenFlow listener")
        # found before anything starts (controller/lifecycle.py): exit 4 and one line naming the setting
        assert proc.returncode == 4, log_path.read_text()
        assert f"cannot start: openflow.port: 127.0.0.1:{taken.getsockname()[1]} is already in use" in \
            log_path.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        taken.close()


# --------------------------------------------------------------------------- 2. OVSDB message size

def _read_request(sock) -> dict:
    buf, decoder = b"", json.JSONDecoder()
    while True:
        buf += sock.recv(65536)
        try:
            return decoder.raw_decode(buf.decode())[0]
        except ValueError:
            continue


def test_a_huge_ovsdb_string_is_refused_without_stalling_rest(lab):
    ctl = lab.add_controller_host("ctl1")
    canopy = lab.start_controller(ctl, {"ovsdb": {"max_message_bytes": 262144}})
    attacker = in_ns(ctl, lambda: connect_from("127.0.0.9", 6640, timeout=30))
    request = _read_request(attacker)  # Canopy asks every new peer for list_dbs
    assert request["method"] == "list_dbs"
    reply = json.dumps({"id": request["id"], "result": ["x" * (1 << 20)], "error": None}).encode()
    slowest, done = [0.0], threading.Event()
    probe = RestClient(ctl.ns, timeout=60)

    def watch_rest():
        while not done.is_set():
            started = time.monotonic()
            assert probe.get("/v1/status").status == 200
            slowest[0] = max(slowest[0], time.monotonic() - started)

    watcher = threading.Thread(target=watch_rest, daemon=True)
    watcher.start()
    try:
        attacker.settimeout(60)
        try:
            attacker.sendall(reply)
        except OSError:
            pass  # the controller may close before it has all of it
        wait_until(lambda: closed_by_peer(attacker), 30, what="the OVSDB session sending 1 MiB to be dropped")
    finally:
        done.set()
        watcher.join(70)
        attacker.close()
    # Generous bound (this machine is shared and noisy): before the fix, this one message held every
    # green thread, REST included, for 15-20 s while the ovs library parsed it.
    assert slowest[0] < 5.0, f"GET /v1/status took {slowest[0]:.1f} s while the OVSDB message arrived"
    assert "message longer than 262144 characters" in log_of(canopy)
    assert canopy.api.get("/v1/ovsdb/sessions").json["count"] == 0


def _reply(sock, request, result):
    sock.sendall(json.dumps({"id": request["id"], "result": result, "error": None}).encode())


def test_unidentified_ovsdb_peers_are_capped_and_dropped(lab):
    ctl = lab.add_controller_host("ctl1")
    canopy = lab.start_controller(ctl, {"ovsdb": {"max_connections_per_source": 2, "sync_timeout_ms": 3000}})
    crowd = open_idle(ctl, 6640, range(5, 6), 4)  # four from one address: two over the cap
    try:
        wait_until(lambda: sum(closed_by_peer(s) for s in crowd) >= 2, 10, what="two OVSDB connections refused")
        assert "127.0.0.5 already has 2 sessions (the limit per source address)" in log_of(canopy)
    finally:
        close_all(crowd)
    # A peer that names a real database and hands over its schema, then never sends the database.
    stalling = in_ns(ctl, lambda: connect_from("127.0.0.6", 6640, timeout=10))
    try:
        _reply(stalling, _read_request(stalling), ["Open_vSwitch"])
        request = _read_request(stalling)
        assert request["method"] == "get_schema"
        _reply(stalling, request, json.loads(Path("/usr/share/openvswitch/vswitch.ovsschema").read_text()))
        wait_until(lambda: closed_by_peer(stalling), 30, what="the peer that never sends its database dropped")
        assert "no full copy of Open_vSwitch within 3 s" in log_of(canopy)
    finally:
        stalling.close()


def _populate_vrs_db(lab, ctl, ports: int) -> tuple[Path, int]:
    """An ovsdb-server (no vswitchd) in ``ctl``'s namespace holding a VRS with ``ports`` ports on br-int,
    the columns vswitchd fills set as it would; returns (its socket, the size of the monitor reply for
    the columns Canopy replicates)."""
    from ovsdb import vrs

    workdir = lab.workdir / "bigvrs"
    workdir.mkdir()
    db, sock = workdir / "conf.db", workdir / "db.sock"
    subprocess.run(["ovsdb-tool", "create", str(db), "/usr/share/openvswitch/vswitch.ovsschema"], check=True)
    lab.spawn("bigvrs-ovsdb", ["ovsdb-server", str(db), f"--remote=punix:{sock}", f"--unixctl={workdir}/ctl"],
              workdir / "ovsdb.log", ctl.ns)
    wait_until(sock.exists, 10, what="ovsdb-server socket")

    def vsctl(*args):
        subprocess.run(["ovs-vsctl", f"--db=unix:{sock}", "--no-wait", *args], check=True, capture_output=True)

    vsctl("init")
    vsctl("set", "Open_vSwitch", ".", "external_ids:system-id=big1", "external_ids:hostname=big1")
    vsctl("add-br", "br-int")
    ops, names = [], []
    for i in range(ports):
        mac = "02:00:%02x:%02x:%02x:%02x" % ((i >> 24) & 255, (i >> 16) & 255, (i >> 8) & 255, i & 255)
        ids = [["iface-id", f"6f1c2d3e-4a5b-4c6d-8e9f-{i:012d}"], ["attached-mac", mac],
               ["vm-uuid", f"0b7a8c9d-1e2f-4a3b-9c4d-{i:012d}"], ["iface-status", "active"]]
        ops.append({"op": "insert", "table": "Interface", "uuid-name": f"i{i}",
                    "row": {"name": f"tap{i:05d}abcdef-01", "ofport": i + 10, "mac_in_use": mac,
                            "external_ids": ["map", ids]}})
        ops.append({"op": "insert", "table": "Port", "uuid-name": f"p{i}",
                    "row": {"name": f"tap{i:05d}abcdef-01", "interfaces": ["named-uuid", f"i{i}"]}})
        names.append(["named-uuid", f"p{i}"])
    ops.append({"op": "mutate", "table": "Bridge", "where": [["name", "==", "br-int"]],
                "mutations": [["ports", "insert", ["set", names]]]})
    client = socket.socket(socket.AF_UNIX)
    client.connect(str(sock))

    def call(method, params):
        client.sendall(json.dumps({"method": method, "params": params, "id": method}).encode())
        buf, decoder = b"", json.JSONDecoder()
        while True:
            buf += client.recv(1 << 20)
            try:
                return decoder.raw_decode(buf.decode())[0], len(buf)
            except ValueError:
                continue

    result, _ = call("transact", ["Open_vSwitch"] + ops)
    assert not any(r and "error" in r for r in result["result"]), result["result"][-1]
    _, size = call("monitor", ["Open_vSwitch", None, {t: {"columns": list(c)} for t, c in vrs.COLUMNS.items()}])
    client.close()
    return sock, size


def test_ovsdb_cap_fits_a_10000_port_hypervisor(lab):
    """The default ovsdb.max_message_bytes leaves room for a real hypervisor's first update."""
    from controller.settings import Limits

    ctl = lab.add_controller_host("ctl1")
    canopy = lab.start_controller(ctl)
    sock, size = _populate_vrs_db(lab, ctl, 10000)
    assert size * 4 < Limits().ovsdb_max_message, f"a 10,000-port update is {size} bytes"
    subprocess.run(["ovs-appctl", "-t", str(sock.parent / "ctl"), "ovsdb-server/add-remote", "tcp:127.0.0.1:6640"],
                   check=True)
    sw = wait_until(lambda: (s := switch_of(canopy.api, "big1")) and len(s["ports"]) >= 10000 and s, 180,
                    interval=1.0, what="the 10,000-port VRS reported over OVSDB")
    # every port the database holds, plus the tunnel port Canopy itself may have added meanwhile
    assert len({p["name"] for p in sw["ports"]} - {"vxlan0"}) == 10000


# ------------------------------------------------------------------------------ 3. datapath spoofing

OFP_HELLO, OFP_ECHO_REQUEST, OFP_ECHO_REPLY, OFP_FEATURES_REQUEST, OFP_FEATURES_REPLY = 0, 2, 3, 5, 6
OFP_MULTIPART_REQUEST, OFP_MULTIPART_REPLY, OFPMP_PORT_DESC = 18, 19, 13


class FakeSwitch:
    """A raw OpenFlow 1.3 peer claiming datapath id ``dpid``: HELLO, features, port description and echo
    replies, nothing else."""

    def __init__(self, sock: socket.socket, dpid: int):
        self.sock, self.dpid = sock, dpid
        self.stop = threading.Event()
        self.closed = threading.Event()
        self.sock.sendall(struct.pack("!BBHI", 4, OFP_HELLO, 8, 1))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _reply(self, kind, xid, body=b""):
        self.sock.sendall(struct.pack("!BBHI", 4, kind, 8 + len(body), xid) + body)

    def _serve(self):
        buf = b""
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            buf += data
            while len(buf) >= 8 and len(buf) >= struct.unpack("!H", buf[2:4])[0]:  # whole messages only
                _version, kind, length, xid = struct.unpack("!BBHI", buf[:8])
                msg, buf = buf[:max(length, 8)], buf[max(length, 8):]
                self._answer(kind, xid, msg)
        self.closed.set()

    def _answer(self, kind, xid, msg):
        """The handshake's answers (features, port descriptions) and echo replies."""
        if kind == OFP_FEATURES_REQUEST:
            self._reply(OFP_FEATURES_REPLY, xid, struct.pack("!QIBB2xII", self.dpid, 256, 254, 0, 0x4f, 0))
        elif kind == OFP_MULTIPART_REQUEST and struct.unpack("!H", msg[8:10])[0] == OFPMP_PORT_DESC:
            self._reply(OFP_MULTIPART_REPLY, xid, struct.pack("!HH4x", OFPMP_PORT_DESC, 0))
        elif kind == OFP_ECHO_REQUEST:
            self._reply(OFP_ECHO_REPLY, xid, msg[8:])

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def flows_with(hv, mac: str) -> int:
    return sum(1 for line in hv.ofctl("dump-flows", "br-int").splitlines() if mac in line)


def hv1_with_vm1(lab):
    """A controller on ctl1, hypervisor hv1 connected to it, vm1 and vm2 declared in acme/web and vm1 running on hv1
    with its flows there: what the hostile-switch tests start from. (ctl, canopy, hv)"""
    ctl = lab.add_controller_host("ctl1")
    canopy = lab.start_controller(ctl)
    api = canopy.api
    _tenant, _domain, subnet = acme_web(api)
    hv = lab.add_hypervisor("hv1")
    hv.connect(ctl)
    wait_until(lambda: connected(api, hv), 30, what="hv1 connected")
    for n in (1, 2):
        create(api, "vports", {"subnet_id": subnet["id"], "name": f"vm{n}", "mac": f"02:00:00:00:01:0{n}",
                               "binding": {"flavour": "kvm", "iface_id": f"vm{n}"}})
    lab.add_vm(hv, "vm1", mac="02:00:00:00:01:01", vnic_id="vm1")
    wait_until(lambda: flows_with(hv, "02:00:00:00:01:01"), 30, what="vm1's flows on hv1")
    return ctl, canopy, hv


def test_a_spoofed_datapath_id_does_not_take_the_switch_over(lab):
    ctl, canopy, hv = hv1_with_vm1(lab)
    api = canopy.api

    fake = FakeSwitch(in_ns(ctl, lambda: connect_from("127.0.0.1", 6653)), hv.datapath_id())
    try:
        # The controller closes the impostor (the chassis hv1 reports hv1's address over OVSDB); before the
        # fix it took hv1's session over instead. Either way, it is gone after this.
        fake.closed.wait(15)
    finally:
        fake.close()
    wait_until(lambda: connected(api, hv), 10, what="hv1 still shown connected")
    lab.add_vm(hv, "vm2", mac="02:00:00:00:01:02", vnic_id="vm2")
    wait_until(lambda: flows_with(hv, "02:00:00:00:01:02"), 30, what="hv1 still programmed: vm2's flows")
    assert "claims it while the session from" in log_of(canopy)


# ------------------------------------------------------------------------------------ 5. REST limits

REST_LIMITS = {"header_timeout_ms": 2000, "body_timeout_ms": 2000, "max_body_bytes": 1 << 20,
               "max_connections": 64, "max_connections_per_source": 16}


def raw_http(ctl, payload: bytes, source="127.0.0.1", timeout=20.0) -> tuple[int, dict, dict]:
    """Send ``payload`` on a new connection and read one response: (status, headers, JSON body)."""
    def exchange():
        sock = connect_from(source, 8080)
        sock.settimeout(timeout)
        try:
            sock.sendall(payload)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                assert chunk, f"connection closed without a response (got {data!r})"
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            while len(body) < int(headers.get("content-length", 0)):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
            return int(lines[0].split()[1]), headers, json.loads(body)
        finally:
            sock.close()
    return in_ns(ctl, exchange, timeout + 10)


def test_rest_idle_and_slow_clients_cannot_starve_it(lab):
    ctl = lab.add_controller_host("ctl1")
    canopy = lab.start_controller(ctl, {"rest": REST_LIMITS})
    idle = open_idle(ctl, 8080, range(2, 76), 15)  # 1,110 connections that never send a request
    try:
        wait_until(lambda: canopy.api.get("/v1/status").status == 200, 30, what="/v1/status answered meanwhile")
        wait_until(lambda: all(closed_by_peer(s) for s in idle), 30, what="every idle REST connection closed")
    finally:
        close_all(idle)

    def trickle():
        sock = connect_from("127.0.0.1", 8080)
        try:
            for byte in b"GET /v1/status HTTP/1.1\r\nHost: canopy\r\nX-Slow: " + b"a" * 40:
                sock.sendall(bytes([byte]))
                time.sleep(0.25)
                if closed_by_peer(sock):
                    return True
            return False
        except OSError:
            return True
        finally:
            sock.close()
    assert in_ns(ctl, trickle, 60), "a request trickling its headers was never cut off"


def test_rest_bodies_are_authorised_first_bounded_and_timed(lab):
    ctl = lab.add_controller_host("ctl1")
    lab.start_controller(ctl, {"rest": REST_LIMITS})
    auth = f"Authorization: Bearer {TOKEN}\r\n".encode()

    status, headers, body = raw_http(ctl, b"POST /v1/tenants HTTP/1.1\r\nHost: c\r\nContent-Length: 1073741824\r\n\r\n")
    assert status == 401 and body["error"]["code"] == "unauthorized"  # answered before any of the 1 GiB

    status, _, body = raw_http(ctl, b"POST /v1/tenants HTTP/1.1\r\nHost: c\r\n" + auth +
                               b"Content-Length: 2097152\r\n\r\n")
    assert status == 413 and body["error"]["code"] == "too_large"

    status, _, body = raw_http(ctl, b"POST /v1/tenants HTTP/1.1\r\nHost: c\r\n" + auth +
                               b"Content-Length: 1000000\r\n\r\n{")
    assert status == 408 and body["error"]["code"] == "body_timeout"

    chunked = b'{"name": "acme"}'
    status, _, body = raw_http(ctl, b"POST /v1/tenants HTTP/1.1\r\nHost: c\r\n" + auth +
                               b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
                               b"%x\r\n%s\r\n0\r\n\r\n" % (len(chunked), chunked))
    assert status == 411 and body["error"]["code"] == "length_required"


def test_rest_errors_are_json_and_405_names_the_allowed_methods(lab):
    ctl = lab.add_controller_host("ctl1")
    lab.start_controller(ctl, {"rest": REST_LIMITS})
    status, headers, body = raw_http(ctl, b"DELETE /v1/status HTTP/1.1\r\nHost: c\r\n" +
                                     f"Authorization: Bearer {TOKEN}\r\n\r\n".encode())
    assert status == 405 and headers["allow"] == "GET" and body["error"]["code"] == "method_not_allowed"
    status, headers, body = raw_http(ctl, b"GET /v1/status%0A HTTP/1.1\r\nHost: c\r\n\r\n")
    assert status == 404 and headers["content-type"].startswith("application/json"), body
    status, headers, body = raw_http(ctl, b"GET /v1/%0Atenants%0A HTTP/1.1\r\nHost: c\r\n\r\n")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, headers, body = raw_http(ctl, b"BREW /v1/status HTTP/9.9\r\n\r\n")
    assert 400 <= status < 600 and headers["content-type"].startswith("application/json"), body
