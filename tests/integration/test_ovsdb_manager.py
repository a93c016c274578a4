"""Canopy as OVSDB manager against real ovsdb-server processes, on loopback only.

The manager runs in a child process (``tests.harness.ovsdb_driver``) that monkey-patches like
ryu-manager does and runs ``OvsdbManagerServer`` with a recording sink; the sockets, ovsdb-servers and
IDLs are all real. Tunnel provisioning is off here (``--no-tunnel``): these tests are about what
Canopy reads (tests/integration/test_ovsdb_tunnel.py covers what it writes).

Hypervisors are bare ovsdb-servers (no ovs-vswitchd: ``ovs-vsctl --no-wait``), each in its own temp
dir, reached through a unix socket and told ``set-manager tcp:127.0.0.1:PORT``. Processes are stopped
by PID and temp dirs removed even when a test fails, after a failed test printed the tails of their logs (the
manager's, each ovsdb-server's) and what the manager reported (tests/harness/kept_logs.py). Every wait polls with a
deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from ovsdb import firstreads
from tests.harness import kept_logs
from tests.harness.ovsdb_driver import ManagerDriver, hold_for, poll_until, stop_process

pytestmark = pytest.mark.integration

SCHEMAS = Path("/usr/share/openvswitch")
HANDSHAKE_TIMEOUT = 2.0  # seconds the driver gives a new peer to answer list_dbs / get_schema
PROBE_MS = 1000  # inactivity probe we ask ovsdb-servers to use towards the manager
FAST = 1.0  # the brief's bound for a port change to reach the sink
SLOW = 30.0  # bound for process start-up, connection set-up, teardown and a big update (load 10: over 10 s)
MANAGER_PROBE_S = 2.0  # the manager's own echo probe interval


def start_manager(workdir: str) -> ManagerDriver:
    """The manager child on 127.0.0.1, read-only, with this module's handshake timeout and probe."""
    return ManagerDriver(workdir, ["--handshake-timeout", str(HANDSHAKE_TIMEOUT),
                                   "--probe-interval", str(MANAGER_PROBE_S), "--no-tunnel"])


class OvsdbServer:
    """A real ovsdb-server serving one freshly created database from ``schema``, in its own dir."""

    schema: Path
    remote_column: str  # where this database keeps its managers, as an ovsdb-server --remote=db:...

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="canopy-ovsdb-")
        self.sock = os.path.join(self.dir, "db.sock")
        self.proc = None
        try:
            self._start()
            self._prepare()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        db = os.path.join(self.dir, "conf.db")
        subprocess.run(["ovsdb-tool", "create", db, str(self.schema)], check=True, timeout=SLOW)
        self.proc = subprocess.Popen(
            ["ovsdb-server", db, "--remote=punix:" + self.sock, "--remote=" + self.remote_column,
             "--unixctl=" + os.path.join(self.dir, "ctl"), "--no-chdir",
             "--log-file=" + self.log_path, "-vconsole:off"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        poll_until(lambda: os.path.exists(self.sock), SLOW, "ovsdb-server socket " + self.sock)

    def _prepare(self) -> None:
        """Initial rows, once the server runs."""

    @property
    def log_path(self) -> str:
        return os.path.join(self.dir, "ovsdb-server.log")

    def run(self, tool: str, *args: str) -> str:
        out = subprocess.run([tool, "--db=unix:" + self.sock, "--timeout=5", *args],
                             check=True, capture_output=True, text=True, timeout=SLOW)
        return out.stdout

    def kill(self) -> None:
        """SIGKILL, by PID: the connection to the manager dies with the process."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(SLOW)

    def close(self) -> None:
        try:
            if self.proc is not None:
                stop_process(self.proc)
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class Hypervisor(OvsdbServer):
    """A VRS stand-in: an Open_vSwitch database with Canopy's external_ids conventions."""

    schema = SCHEMAS / "vswitch.ovsschema"
    remote_column = "db:Open_vSwitch,Open_vSwitch,manager_options"

    def __init__(self, system_id: str, **external_ids: str):
        self.system_id = system_id
        self.external_ids = {"system-id": system_id, **external_ids}
        super().__init__()

    def _prepare(self) -> None:
        self.vsctl("init")
        pairs = ("external_ids:%s=%s" % kv for kv in self.external_ids.items())
        self.vsctl("set", "Open_vSwitch", ".", *pairs)

    def vsctl(self, *args: str) -> str:
        return self.run("ovs-vsctl", "--no-wait", *args)

    def manage(self, port: int) -> None:
        self.vsctl("--inactivity-probe=%d" % PROBE_MS, "set-manager", "tcp:127.0.0.1:%d" % port)


class HardwareVtep(OvsdbServer):
    """A hardware VTEP stand-in: a hardware_vtep database (what ovs-vtep or a ToR switch serves)."""

    schema = SCHEMAS / "vtep.ovsschema"
    remote_column = "db:hardware_vtep,Global,managers"

    def _prepare(self) -> None:
        subprocess.run(["ovsdb-client", "transact", "unix:" + self.sock,
                        json.dumps(["hardware_vtep", {"op": "insert", "table": "Global", "row": {}}])],
                       check=True, capture_output=True, timeout=SLOW)
        self.run("vtep-ctl", "add-ps", "tor1")

    def manage(self, port: int) -> None:
        self.run("vtep-ctl", "--inactivity-probe=%d" % PROBE_MS, "set-manager", "tcp:127.0.0.1:%d" % port)


def _names(snap: dict) -> list[str]:
    return [p["name"] for p in snap["ports"]]


@pytest.fixture(scope="module", autouse=True)
def _needs_ovs():
    for tool in ("ovsdb-server", "ovsdb-tool", "ovsdb-client", "ovs-vsctl", "vtep-ctl"):
        if shutil.which(tool) is None:
            pytest.skip("%s not installed" % tool)


@pytest.fixture
def manager(call_failed):
    workdir = tempfile.mkdtemp(prefix="canopy-mgr-")
    try:
        driver = start_manager(workdir)
        yield driver
        driver.close()
        kept_logs.report("manager", [driver.log_path], call_failed(), driver.recorded())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def spawn(call_failed):
    """Factory for Hypervisor / HardwareVtep instances, all closed at teardown (their logs printed if the test failed)."""
    started = []

    def make(cls, *args, **kwargs):
        instance = cls(*args, **kwargs)
        started.append(instance)
        return instance

    yield make
    try:
        kept_logs.report("ovsdb-servers", [instance.log_path for instance in started], call_failed())
    finally:
        for instance in reversed(started):
            instance.close()


def connect_vrs(manager: ManagerDriver, hv: Hypervisor) -> dict:
    """Point ``hv`` at the manager and return its first snapshot."""
    hv.manage(manager.port)
    return manager.wait_event(lambda e: e["ev"] == "update" and e["snap"]["chassis"] == hv.system_id,
                              SLOW, "VRS %s" % hv.system_id)["snap"]


def test_vrs_appears_with_identity_from_external_ids(manager, spawn):
    hv = spawn(Hypervisor, "hv-ident", hostname="compute-1.example", **{
        "canopy-vtep-ip": "192.0.2.11", "canopy-flavour": "kvm"})
    snap = connect_vrs(manager, hv)
    assert snap["session"] == "vrs:" + hv.system_id  # keyed by chassis, not by connection
    assert snap["peer"].startswith("127.0.0.1:")
    assert (snap["hostname"], snap["vtep_ip"], snap["flavour"]) == ("compute-1.example", "192.0.2.11", "kvm")
    assert (snap["bridge"], snap["bridge_present"], snap["ports"]) == ("br-int", False, [])
    [info] = [s for s in manager.sessions() if s["key"] == snap["session"]]
    assert (info["database"], info["state"], info["peer"]) == ("Open_vSwitch", "synced", snap["peer"])
    assert info["session"] == "ovsdb:" + snap["peer"] and info["speaking"]


def test_ports_come_and_go_within_a_second(manager, spawn):
    hv = spawn(Hypervisor, "hv-ports")
    session = connect_vrs(manager, hv)["session"]
    hv.vsctl("add-br", "br-int")
    manager.wait_latest(session, lambda s: s["bridge_present"] and s["ports"] == [], FAST, "br-int present")
    [info] = [s for s in manager.sessions() if s["key"] == session]
    full_reads = info["full_reads"]

    hv.vsctl("add-port", "br-int", "tap1", "--", "set", "Interface", "tap1", "type=internal",
             "external_ids:iface-id=vp1", "external_ids:attached-mac=02:00:00:00:00:01")
    snap = manager.wait_latest(session, lambda s: _names(s) == ["tap1"], FAST, "tap1 reported")
    [tap1] = snap["ports"]
    assert snap["changed"] == ["tap1"]  # the ports whose rows changed since the previous snapshot
    assert tap1["mac"] == "02:00:00:00:00:01" and tap1["type"] == "internal"
    assert ["iface-id", "vp1"] in tap1["external_ids"]
    [info] = [s for s in manager.sessions() if s["key"] == session]
    assert info["ports"] == 1  # GET /v1/ovsdb/sessions: the ports as last reported (tests.benchmarks.bursts waits on it)

    hv.vsctl("del-port", "br-int", "tap1")
    manager.wait_latest(session, lambda s: s["bridge_present"] and s["ports"] == [], FAST, "tap1 removed")
    # applied from the rows the IDL reported changed: the bridge's ports were not read again
    [info] = [s for s in manager.sessions() if s["key"] == session]
    assert info["full_reads"] == full_reads and info["ports"] == 0, info


def test_a_bridge_with_more_external_ids_than_a_plain_map_may_hold_is_managed(manager, spawn):
    """ovn-controller keeps a ``ct-zone-*`` key per conntrack zone (up to 65,535) in its integration bridge's
    external_ids: more than the 10,000 elements a replicated plain map may hold (docs/limits.md). Canopy does not
    replicate that column, so such a hypervisor is read and followed; before, every session was refused."""
    hv = spawn(Hypervisor, "hv-ovn-zones")
    zones = [f"external_ids:ct-zone-{n:08x}-0000-0000-0000-000000000000_dnat={n}" for n in range(1, 12_001)]
    hv.vsctl("add-br", "br-int", "--", "set", "Bridge", "br-int", *zones)
    session = connect_vrs(manager, hv)["session"]
    hv.vsctl("add-port", "br-int", "tap1", "--", "set", "Interface", "tap1", "type=internal",
             "external_ids:iface-id=vp1", "external_ids:attached-mac=02:00:00:00:00:01")
    manager.wait_latest(session, lambda s: s["bridge_present"] and _names(s) == ["tap1"], SLOW, "tap1 reported")
    [info] = [s for s in manager.sessions() if s["key"] == session]
    assert info["state"] == "synced", info


def test_two_vrs_are_two_sessions_and_a_killed_one_goes_exactly_once(manager, spawn):
    hv_a, hv_b = spawn(Hypervisor, "hv-a"), spawn(Hypervisor, "hv-b")
    session_a = connect_vrs(manager, hv_a)["session"]
    session_b = connect_vrs(manager, hv_b)["session"]
    assert session_a != session_b
    listed = {s["key"] for s in manager.sessions()}
    assert {session_a, session_b} <= listed

    hv_a.kill()
    poll_until(lambda: manager.gones(session_a), SLOW, "vrs_gone for hv-a", manager.context)

    hv_b.vsctl("add-br", "br-int")
    hv_b.vsctl("add-port", "br-int", "vm-b1")
    manager.wait_latest(session_b, lambda s: _names(s) == ["vm-b1"], FAST, "hv-b still updating")
    # Two probe intervals: a second vrs_gone for hv-a, or hv-b flapping, would show up here.
    hold_for(2 * PROBE_MS / 1000, lambda: manager.gones(session_a) == 1 and manager.gones(session_b) == 0,
             "one vrs_gone for hv-a, none for hv-b", manager.context)
    events = manager.snapshot()
    gone_at = next(i for i, e in enumerate(events) if e.get("session") == session_a)
    assert not [e for e in events[gone_at:] if e["ev"] == "update" and e["snap"]["session"] == session_a]
    assert session_a not in {s["key"] for s in manager.sessions()}


def _read_request(sock: socket.socket) -> dict:
    """The next JSON-RPC request from the manager (it sends one, then waits for the reply)."""
    sock.settimeout(SLOW)
    buf = b""
    while chunk := sock.recv(4096):
        buf += chunk
        try:
            return json.loads(buf)
        except ValueError:
            continue
    raise AssertionError("manager closed the connection instead of asking")


def _reply(sock: socket.socket, request: dict, result) -> None:
    sock.sendall(json.dumps({"id": request["id"], "result": result, "error": None}).encode())


def _closed_by_manager(sock: socket.socket, timeout: float) -> bool:
    """True if the manager closes ``sock`` within ``timeout`` (after its one list_dbs request)."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    except socket.timeout:
        return False
    return True


def test_bad_peers_are_dropped_without_disturbing_others(manager, spawn):
    hv = spawn(Hypervisor, "hv-steady")
    session = connect_vrs(manager, hv)["session"]
    hv.vsctl("add-br", "br-int")

    garbage = socket.create_connection(("127.0.0.1", manager.port), timeout=SLOW)
    garbage.sendall(b"\x00\xff\xfe garbage {{{ ]]] \r\n" * 50)
    silent = socket.create_connection(("127.0.0.1", manager.port), timeout=SLOW)
    unknown_db = socket.create_connection(("127.0.0.1", manager.port), timeout=SLOW)
    request = _read_request(unknown_db)
    assert request["method"] == "list_dbs"
    _reply(unknown_db, request, ["Foo"])
    bad_schema = socket.create_connection(("127.0.0.1", manager.port), timeout=SLOW)
    _reply(bad_schema, _read_request(bad_schema), ["Open_vSwitch"])
    request = _read_request(bad_schema)
    assert request["method"] == "get_schema" and request["params"] == ["Open_vSwitch"]
    _reply(bad_schema, request, {"name": 7, "tables": "none"})
    peers = {s.getsockname()[1]: s for s in (garbage, silent, unknown_db, bad_schema)}

    hv.vsctl("add-port", "br-int", "tap-steady")
    manager.wait_latest(session, lambda s: _names(s) == ["tap-steady"], FAST,
                        "VRS updates while bad peers linger")

    try:
        for local_port, sock in peers.items():
            assert _closed_by_manager(sock, HANDSHAKE_TIMEOUT + 3), "peer :%d not dropped" % local_port
        log = manager.log()
        for local_port in peers:
            assert "ovsdb 127.0.0.1:%d: dropping connection" % local_port in log, manager.context()
    finally:
        for sock in peers.values():
            sock.close()

    hv.vsctl("del-port", "br-int", "tap-steady")
    manager.wait_latest(session, lambda s: s["ports"] == [], FAST, "VRS still updating afterwards")
    assert [s["key"] for s in manager.sessions()] == [session]
    assert manager.gones(session) == 0


def test_hardware_vtep_is_recognised_and_not_reported_as_vrs(manager, spawn):
    vtep = spawn(HardwareVtep)
    vtep.manage(manager.port)

    def vtep_sessions():
        return [s for s in manager.sessions() if s["database"] == "hardware_vtep"]

    def synced():
        return [s for s in vtep_sessions() if s["state"] == "synced" and s["switch"] == "tor1"]

    [info] = poll_until(synced, SLOW, "hardware_vtep session", manager.context)
    # Held open: the VTEP probes every second, and an unanswered probe would make it reconnect
    # (a new session). Watch for three probe intervals.
    hold_for(3 * PROBE_MS / 1000, lambda: synced() == [info], "the same hardware_vtep session",
             manager.context)
    assert not [e for e in manager.snapshot() if e["ev"] in ("update", "gone")]
    assert [e["snap"]["name"] for e in manager.snapshot() if e["ev"] == "vtep_update"] == ["tor1"]
    assert "hardware_vtep peer" in manager.log()


def test_stop_closes_every_session_and_reports_none_gone(manager, spawn):
    """The manager stopping is not its switches leaving (ovsdb/claims.py ``close``): before stop 46 each was reported
    gone as its session closed, and the controller re-placed or unbound their vports on its way out."""
    hv_a, hv_b = spawn(Hypervisor, "hv-stop-a"), spawn(Hypervisor, "hv-stop-b")
    vtep = spawn(HardwareVtep)
    for hv in (hv_a, hv_b):
        connect_vrs(manager, hv)
    vtep.manage(manager.port)
    poll_until(lambda: len(manager.sessions()) == 3, SLOW, "three sessions", manager.context)
    poll_until(lambda: any(e["ev"] == "vtep_update" for e in manager.snapshot()), SLOW, "tor reported",
               manager.context)

    assert manager.stop() == []
    assert not [e for e in manager.snapshot() if e["ev"] in ("gone", "vtep_gone")]
    poll_until(lambda: manager.proc.poll() is not None, SLOW, "driver exit")
    assert manager.proc.returncode == 0


def test_a_long_update_of_non_ascii_text_arrives_whatever_read_it_is_split_across(manager, spawn):
    """Four port names' worth of three-byte characters (about 360 KB): the manager reads a message in pieces (64 KB
    per turn, and what TCP has delivered), so some piece ends inside a character; that piece's last bytes must wait
    for the next read, not drop the connection (EILSEQ) and meet the same split again after every reconnect."""
    hv = spawn(Hypervisor, "hv-utf8")
    session = connect_vrs(manager, hv)["session"]
    hv.vsctl("add-br", "br-int")
    manager.wait_latest(session, lambda s: s["bridge_present"], FAST, "br-int present")
    texts = {f"note{i}": "x" * i + "\u20ac" * 30000 for i in range(4)}
    pairs = [f'external_ids:{key}="{text}"' for key, text in texts.items()]
    hv.vsctl("add-port", "br-int", "tap1", "--", "set", "Interface", "tap1", "type=internal",
             "external_ids:iface-id=vp1", *pairs)
    snap = manager.wait_latest(session, lambda s: _names(s) == ["tap1"], SLOW, "tap1 with its long external_ids")
    assert all([key, text] in snap["ports"][0]["external_ids"] for key, text in texts.items())
    [info] = [s for s in manager.sessions() if s["key"] == session]
    assert info["state"] == "synced"


def test_a_test_slow_to_read_the_managers_reports_does_not_stall_the_manager(manager, spawn):
    """The manager's child writes each sink call to a pipe this test process reads. A test process slow to read (busy
    elsewhere: in two-worker runs the two big-update tests above lost their session so, the child blocked 12-16 s in
    one write) must not stall the child's hub: it would answer no echo, and the ovsdb-server (probe 1 s here) drop
    it. A ~300 KB report (four times the pipe's 64 KB) held unread for three probe intervals: the same session after."""
    hv = spawn(Hypervisor, "hv-unread")
    first = connect_vrs(manager, hv)
    session = first["session"]
    hv.vsctl("add-br", "br-int")
    manager.wait_latest(session, lambda s: s["bridge_present"], SLOW, "br-int present")
    notes = {f"note{i}": "x" * 100_000 for i in range(3)}  # (one argument of ovs-vsctl: 128 KiB at most)
    with manager.reading_held():
        hv.vsctl("add-port", "br-int", "tap1", "--", "set", "Interface", "tap1", "type=internal",
                 *(f"external_ids:{key}={text}" for key, text in notes.items()))
        hold_for(3 * PROBE_MS / 1000, lambda: "disconnect" not in Path(hv.log_path).read_text(),
                 "the ovsdb-server's session with the manager")
    snap = manager.wait_latest(session, lambda s: _names(s) == ["tap1"], SLOW, "tap1 with its notes")
    assert all([key, text] in snap["ports"][0]["external_ids"] for key, text in notes.items())
    [info] = [s for s in manager.sessions() if s["key"] == session]
    assert info["peer"] == first["peer"] and manager.gones(session) == 0, info


def _transact(hv: Hypervisor, ops: list) -> None:
    """One transaction on the database's socket (too long for a command line), its reply checked."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(SLOW)
        sock.connect(hv.sock)
        sock.sendall(json.dumps({"method": "transact", "params": ["Open_vSwitch", *ops], "id": 1}).encode())
        data, decoder = b"", json.JSONDecoder()
        for _ in range(10000):  # bounded: each read waits at most SLOW
            data += sock.recv(1 << 16)
            try:
                reply, _ = decoder.raw_decode(data.decode())
                break
            except ValueError:
                continue
    assert reply["error"] is None and not any("error" in r for r in reply["result"]), reply


def test_ports_added_or_deleted_in_one_big_transaction_are_reported_in_growing_consistent_slices(manager, spawn):
    """1,200 ports added to br-int in one transaction arrive as one update of 2,401 rows; it is reported a slice at a
    time (ovsdb/idl/slices.py: a lead of 100 ports, then 500, 500 more (at most half of what is left), then the last
    100), each report a state smaller transactions could have given: the first ports, each with its interface's
    iface-id and MAC, and none of the others. Deleted in one transaction: 100 go first, then 500, 500, the last 100."""
    from ovsdb.idl.slices import LEAD_PORTS, SLICE_PORTS, sizes

    hv = spawn(Hypervisor, "hv-slices")
    session = connect_vrs(manager, hv)["session"]
    hv.vsctl("add-br", "br-int")
    # the manager's own write (fail_mode, protocols: ovsdb/bridge.py) reported first: nothing else changes the
    # database meanwhile, so every report after ``seen`` is a slice (a late one would look like another slice)
    manager.wait_latest(session, lambda s: s["bridge_present"] and s["ports"] == [] and s["fail_mode"] == "secure" and
                        {"OpenFlow13", "OpenFlow14"} <= set(s["protocols"]), SLOW, "br-int present, made secure")
    n = 1200
    ops = []
    for k in range(n):
        ids = ["map", [["iface-id", "vp%d" % k], ["attached-mac", "02:00:00:00:%02x:%02x" % divmod(k, 256)]]]
        ops += [{"op": "insert", "table": "Interface", "uuid-name": "i%d" % k,
                 "row": {"name": "tap%d" % k, "type": "internal", "external_ids": ids}},
                {"op": "insert", "table": "Port", "uuid-name": "p%d" % k,
                 "row": {"name": "tap%d" % k, "interfaces": ["named-uuid", "i%d" % k]}}]
    ops.append({"op": "mutate", "table": "Bridge", "where": [["name", "==", "br-int"]],
                "mutations": [["ports", "insert", ["set", [["named-uuid", "p%d" % k] for k in range(n)]]]]})
    seen = len(manager.updates(session))
    _transact(hv, ops)
    manager.wait_latest(session, lambda s: len(_names(s)) == n, SLOW, "every port")
    added = manager.updates(session)[seen:]
    # the session is named in ``slicing`` while it reports them (the programming pass waits: controller/app.py),
    # and no longer once the last is reported (else every pass would wait REPORT_WAIT for it, for ever)
    [name] = [s["session"] for s in manager.sessions() if s["key"] == session]
    reports = [e for e in manager.snapshot() if e["ev"] == "update" and e["snap"]["session"] == session]
    assert [LEAD_PORTS, *sizes(n - LEAD_PORTS, SLICE_PORTS)] == [100, 500, 500, 100]
    assert [name in e["slicing"] for e in reports[seen:]] == [True, True, True, True]
    poll_until(lambda: name not in manager.slicing(), FAST, "the session out of slicing", manager.context)
    assert [len(s["ports"]) for s in added] == [100, 600, 1100, n]
    for snap in added:
        for port in snap["ports"]:
            k = int(port["name"][3:])
            assert ["iface-id", "vp%d" % k] in port["external_ids"] and port["mac"], port
    seen = len(manager.updates(session))
    _transact(hv, [{"op": "update", "table": "Bridge", "where": [["name", "==", "br-int"]],
                    "row": {"ports": ["set", [["uuid", p] for p in _bridge_own_port(hv)]]}}])
    manager.wait_latest(session, lambda s: s["ports"] == [], SLOW, "every port gone")
    assert [len(s["ports"]) for s in manager.updates(session)[seen:]] == [n - 100, n - 600, n - 1100, 0]


def _bridge_own_port(hv: Hypervisor) -> list[str]:
    """The uuid of br-int's own port (the one ``add-br`` made)."""
    return [hv.vsctl("--columns=_uuid", "--bare", "find", "Port", "name=br-int").strip()]


class StalledPeer:
    """A peer that answers ``list_dbs`` and ``get_schema`` like a VRS, then never sends its database (a slow or
    hostile ovsdb-server), answering the manager's echo requests so that it is not dropped for silence."""

    def __init__(self, port: int, schema: dict):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=SLOW)
        _reply(self.sock, _read_request(self.sock), ["Open_vSwitch"])
        _reply(self.sock, _read_request(self.sock), schema)
        self.asked: list[str] = []
        self._thread = threading.Thread(target=self._answer, daemon=True)
        self._thread.start()

    def _answer(self) -> None:
        buf, decoder = "", json.JSONDecoder()
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(65536):
                buf += chunk.decode()
                while buf.strip():
                    try:
                        message, end = decoder.raw_decode(buf.lstrip())
                    except ValueError:
                        break
                    buf = buf.lstrip()[end:]
                    self.asked.append(message.get("method"))
                    if message.get("method") == "echo":
                        _reply(self.sock, message, message["params"])

    def close(self) -> None:
        self.sock.close()
        self._thread.join(SLOW)


def test_peers_that_never_send_their_database_do_not_keep_the_others_waiting(manager, spawn):
    """Sessions take turns to read their peer's whole database (ovsdb/firstreads.py); a peer that never sends
    it gives its turn back after ``HOLD_S``, not at the sync timeout (120 s), and a VRS waiting its turn answers
    its ovsdb-server's echo requests meanwhile (probe 1 s here: two unanswered and it would drop us)."""
    schema = json.loads((SCHEMAS / "vswitch.ovsschema").read_text())
    stalled = []
    try:
        for _ in range(firstreads.LIMIT):
            stalled.append(StalledPeer(manager.port, schema))
        poll_until(lambda: all(peer.asked for peer in stalled), SLOW, "every stalled peer asked for its database",
                   manager.context)
        hv = spawn(Hypervisor, "hv-behind")
        started = time.monotonic()
        connect_vrs(manager, hv)
        waited = time.monotonic() - started
        assert firstreads.HOLD_S - 1 < waited < firstreads.HOLD_S + 4, manager.context()
        assert "disconnect" not in (Path(hv.dir) / "ovsdb-server.log").read_text()
    finally:
        for peer in stalled:
            peer.close()


def test_the_sync_timeout_does_not_count_a_sessions_wait_for_its_turn(spawn):
    """A real VRS queued behind peers reading big databases (their first-read slots taken by the manager's driver,
    as their sessions would hold them) for longer than the sync timeout (2.5 s here) is not dropped for that: it
    answers its ovsdb-server's echoes meanwhile and reads its database once its turn comes (before: dropped as its
    turn came, 'no full copy within 2.5 s', though it had not asked for it yet), and /v1/ovsdb/sessions shows how
    long it waited (``queued_s``)."""
    sync_timeout = 2.5
    workdir = tempfile.mkdtemp(prefix="canopy-mgr-")
    manager = ManagerDriver(workdir, ["--handshake-timeout", str(HANDSHAKE_TIMEOUT), "--probe-interval",
                                      str(MANAGER_PROBE_S), "--no-tunnel", "--sync-timeout", str(sync_timeout)])
    try:
        assert manager.first_reads("take", firstreads.LIMIT)["waiting"] == 0
        hv = spawn(Hypervisor, "hv-queued")
        hv.manage(manager.port)
        poll_until(lambda: [s for s in manager.sessions() if s["state"] == "queued"], SLOW, "the VRS queued",
                   manager.context)
        time.sleep(sync_timeout + 1.0)  # its turn comes after the sync timeout
        (queued,) = manager.sessions()
        assert queued["state"] == "queued" and queued["queued_s"] > sync_timeout, queued
        manager.first_reads("give", firstreads.LIMIT)
        connect_vrs(manager, hv)
        (session,) = manager.sessions()
        assert session["state"] == "synced" and session["queued_s"] > sync_timeout, session
        assert "no full copy" not in manager.log()
        assert "disconnect" not in (Path(hv.dir) / "ovsdb-server.log").read_text()
    finally:
        manager.close()
        shutil.rmtree(workdir, ignore_errors=True)
