"""``OvsdbManagerServer`` run in a child process, and the test-side handle that drives it.

The child (``python -m tests.harness.ovsdb_driver ...``) monkey-patches like ryu-manager does
(``hub.patch(thread=False)``) and runs the server with a recording sink printing one JSON line per
sink call; keeping eventlet out of the pytest process keeps other test modules unpatched. It can run
inside a network namespace (``ns``); it exits when its stdin closes, so it dies with the test run.

stdin commands: ``sessions ID`` -> {"ev": "sessions", "id": ID, "sessions": [...]};
``desired ID NAME JSON`` -> server.set_vtep_desired(NAME, VtepDesired from JSON, or None for
``null``), then {"ev": "desired", "id": ID}; ``stop`` -> server.stop(), then {"ev": "stopped",
"sessions": [...]} and exit. Sink calls: {"ev": "update"|"vtep_update", "snap": {...}} and
{"ev": "gone"|"vtep_gone", "session": ...}.

Also here: the bounded polling helpers the OVSDB integration tests share (``poll_until``,
``hold_for``) and ``stop_process`` (by PID).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

from eventlet import patcher

from tests.harness.wait import wait_until
from tests.harness.process import netns_argv, start_time

# The test side's reader thread and its locks are the OS's even in a pytest process that an earlier test
# monkey-patched (a unit test that runs the controller in-process does: ``hub.patch(thread=True)``): a green reader
# blocked reading the pipe would hold the whole process, and the child with it (its writes wait for the reader).
_threading = patcher.original("threading")

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT = 10.0  # seconds for the child (listening) to answer a command or stop
# seconds for the child to listen: an interpreter started, eventlet, ovs and Canopy imported, the server started
# (~1 s of CPU; 4.3-4.8 s of wall time at load 12-16 on 2 cores, past 10 s under a heavier load). Generous and
# bounded; a child that exits before it listens fails the wait at once, with its exit status and log.
LISTEN_TIMEOUT = 120.0
READ_HOLD_MAX = 30.0  # seconds a test may hold the reading of the child's lines back (ManagerDriver.reading_held)
_WRITE = os.write  # before driver_main's hub.patch (eventlet's green os.write waits in the calling thread's hub)


# Child side.

def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ovsdb_driver")
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--bridge", default="br-int")
    parser.add_argument("--handshake-timeout", type=float, default=5.0)
    parser.add_argument("--probe-interval", type=float, default=5.0)
    parser.add_argument("--no-tunnel", action="store_true", help="provision_tunnel=False")
    parser.add_argument("--tunnel-name", default=None)
    parser.add_argument("--no-vtep-program", action="store_true", help="program_vteps=False")
    parser.add_argument("--read-only", action="store_true", help="writes_enabled=False (an HA standby)")
    parser.add_argument("--sync-timeout", type=float, default=120.0,
                        help="seconds a peer has to send its first full copy (not counting its wait for a turn)")
    parser.add_argument("--reconnect-grace", type=float, default=1.0,
                        help="seconds a VRS stays known after its session ends (short here: tests wait for gone)")
    return parser.parse_args(argv)


def desired_to_json(desired) -> str:
    """A ``VtepDesired`` (or None) as one JSON line for the ``desired`` command."""
    import dataclasses

    return json.dumps(dataclasses.asdict(desired) if desired is not None else None)


def desired_from_json(text: str):
    """The ``VtepDesired`` (or None) that ``desired_to_json`` wrote."""
    from controller.discovery import VtepDesired

    data = json.loads(text)
    if data is None:
        return None
    return VtepDesired(
        logical_switches=tuple(data.get("logical_switches", ())),
        bindings=tuple(tuple(b) for b in data.get("bindings", ())),
        remote_macs=tuple(tuple(m) for m in data.get("remote_macs", ())),
        flood=tuple((vni, tuple(ips)) for vni, ips in data.get("flood", ())))


def _listed(items) -> list:
    """Frozensets (VrsSnapshot.changed: names; VtepSnapshot.changed: VtepMacs) as sorted lists."""
    import dataclasses

    return sorted((dataclasses.asdict(x) if dataclasses.is_dataclass(x) else x for x in items), key=str)


def driver_main(argv: list[str]) -> int:
    """Run OvsdbManagerServer under eventlet; sink calls and replies go to stdout as JSON lines."""
    args = _parse(argv)
    from controller.ryu_compat import hub

    hub.patch(thread=False)
    import dataclasses
    import logging

    import eventlet.hubs

    from controller.discovery import DiscoverySink
    from ovsdb.server import OvsdbManagerServer

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")

    lines = queue.SimpleQueue()  # the standard library's (hub.patch(thread=False) leaves queue and threading alone)

    def write_lines():
        """An OS thread writing each line whole to stdout, in order, as fast as the test side reads them. Not the hub:
        a write to a full pipe blocks until the reader (a thread of the pytest process) has read it, and meanwhile
        the whole child would answer no ovsdb-server's probe (1 s in test_ovsdb_manager: dropped after 2 s; seen in
        two-worker runs, where a worker's full garbage collections stopped its reader). ``_WRITE``: the unpatched
        ``os.write`` (eventlet's would wait in this thread's own hub); never a text layer (under PYTHONUNBUFFERED it
        drops what a short write left: a 290 KB update was cut mid-escape once)."""
        while (data := lines.get()) is not None:
            view = memoryview(data)
            while view:
                view = view[_WRITE(1, view):]

    writer = threading.Thread(target=write_lines, name="stdout-writer", daemon=True)
    writer.start()

    def emit(**event):
        """One JSON line for the test side, queued for ``write_lines``: a green thread never waits for the reader."""
        lines.put((json.dumps(event, default=_listed) + "\n").encode())

    class RecordingSink(DiscoverySink):
        def vrs_update(self, snap):
            emit(ev="update", snap=dataclasses.asdict(snap), slicing=sorted(server.slicing))

        def vrs_gone(self, session):
            emit(ev="gone", session=session)

        def vtep_update(self, snap):
            emit(ev="vtep_update", snap=dataclasses.asdict(snap))

        def vtep_gone(self, session):
            emit(ev="vtep_gone", session=session)

    tunnel = {"tunnel_name": args.tunnel_name} if args.tunnel_name else {}
    server = OvsdbManagerServer(args.listen, 0, RecordingSink(), bridge=args.bridge,
                                handshake_timeout=args.handshake_timeout,
                                probe_interval=args.probe_interval,
                                provision_tunnel=not args.no_tunnel,
                                program_vteps=not args.no_vtep_program,
                                reconnect_grace=args.reconnect_grace, sync_timeout=args.sync_timeout, **tunnel)
    server.writes_enabled = not args.read_only
    server.start()
    emit(ev="listening", port=server.port)
    for line in _stdin_commands(eventlet.hubs.trampoline):
        words = line.split(None, 3)
        if words[0] == "sessions":
            emit(ev="sessions", id=int(words[1]), sessions=server.sessions(), slicing=sorted(server.slicing))
        elif words[0] == "desired":
            server.set_vtep_desired(words[2], desired_from_json(words[3]))
            emit(ev="desired", id=int(words[1]))
        elif words[0] == "first_reads":  # take or give back first-read slots, as sessions of big peers would
            for _ in range(int(words[3])):
                server.first_reads.admit(lambda: None) if words[2] == "take" else server.first_reads.release()
            emit(ev="first_reads", id=int(words[1]), status=server.first_reads.status())
        elif words[0] == "stop":
            break
    server.stop()
    emit(ev="stopped", sessions=server.sessions())
    lines.put(None)
    writer.join(START_TIMEOUT)
    return 0


def _stdin_commands(trampoline):
    """Yield non-blank stdin lines until EOF, waiting in the hub so green threads keep running.

    (eventlet's green ``select.select`` never reports fd 0 readable here; ``trampoline`` does.)
    """
    buffered, fd = b"", sys.stdin.fileno()
    while True:
        trampoline(fd, read=True)
        chunk = os.read(fd, 4096)
        if not chunk:
            return
        *lines, buffered = (buffered + chunk).split(b"\n")
        for line in lines:
            if line.split():
                yield line.decode()


# Test side.

@contextlib.contextmanager
def drivers_in(lab, host):
    """A factory starting ManagerDrivers in ``host``'s namespace, listening on its address (probe 2 s);
    every driver it started is closed on exit."""
    started: list[ManagerDriver] = []
    numbers = itertools.count(1)

    def start(*options: str) -> ManagerDriver:
        driver = ManagerDriver(lab.workdir, ["--listen", host.ip, "--probe-interval", "2", *options],
                               ns=host.ns, record=lab.record.add_process, name="manager%d" % next(numbers))
        started.append(driver)
        return driver

    try:
        yield start
    finally:
        for driver in started:
            driver.close()


def poll_until(predicate, timeout: float, what: str, context=lambda: ""):
    """``wait_until`` every 20 ms, adding ``context()`` (say, the driver's log) to a timeout's message."""
    try:
        return wait_until(predicate, timeout=timeout, interval=0.02, what=what)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{context()}") from None


def hold_for(seconds: float, invariant, what: str, context=lambda: "") -> None:
    """Check ``invariant`` every 20 ms for ``seconds`` (an observation window, not a sync point)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert invariant(), "%s stopped holding\n%s" % (what, context())
        time.sleep(0.02)


def stop_process(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """Terminate a child we started, by its PID; kill it if it does not exit in time."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout)


class ManagerDriver:
    """The child process running OvsdbManagerServer, and everything its sink recorded.

    ``ns``: network namespace to run in (None: this one); ``options``: driver flags such as
    ``--listen 10.250.0.2`` or ``--no-tunnel``; ``record(pid, start_time)`` is told the child's
    identity (e.g. a ``RunRecord.add_process``) so a crashed run's child can be swept.
    """

    def __init__(self, workdir: str | Path, options: list[str] = (), ns: str | None = None,
                 record: Callable[[int, int], None] | None = None, name: str = "manager"):
        self.log_path = os.path.join(str(workdir), name + ".log")
        self._log = open(self.log_path, "wb")
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        argv = [sys.executable, "-m", "tests.harness.ovsdb_driver", *options]
        self.proc = subprocess.Popen(netns_argv(ns, argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._log, env=env, cwd=str(REPO))
        self.events: list[dict] = []
        self._lock = _threading.Lock()
        self._ids = itertools.count(1)
        self._may_read, self._parked = _threading.Event(), _threading.Event()
        self._may_read.set()
        self._reader = _threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            if record is not None:
                record(self.proc.pid, start_time(self.proc.pid))
            self.port = poll_until(self._listening, LISTEN_TIMEOUT, "manager listening", self.context)["port"]
        except BaseException:
            self.close()
            raise

    def _listening(self) -> dict | None:
        """The child's "listening" event, or None while it starts; AssertionError once it has exited and everything
        it wrote is read without one (no wait for ``LISTEN_TIMEOUT`` on a child that is gone)."""
        found = next((e for e in self.snapshot() if e["ev"] == "listening"), None)
        if found is None and self.proc.poll() is not None and not self._reader.is_alive():
            raise AssertionError("the manager's child exited (status %s) before listening" % self.proc.returncode)
        return found

    def _read(self):
        while True:
            if not self._may_read.is_set():  # held back by reading_held
                self._parked.set()
                self._may_read.wait(READ_HOLD_MAX)
                self._parked.clear()
            line = self.proc.stdout.readline()
            if not line:
                return
            with self._lock:
                self.events.append(json.loads(line))

    @contextlib.contextmanager
    def reading_held(self):
        """Read none of the child's lines in this block (at most ``READ_HOLD_MAX`` seconds), as a test process busy
        elsewhere would not: what the child writes meanwhile fills the pipe. The reader, waiting for a line, stops
        once it has read the answer to a ``sessions`` request sent here (id 0: never waited for)."""
        self._may_read.clear()
        try:
            self._send("sessions 0")
            poll_until(self._parked.is_set, START_TIMEOUT, "the reader held back", self.context)
            yield
        finally:
            self._may_read.set()

    def snapshot(self) -> list[dict]:
        with self._lock:
            return list(self.events)

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def context(self) -> str:
        return "manager log tail:\n" + "\n".join(self.log().splitlines()[-30:]) + "\n" + self.recorded()

    def recorded(self) -> str:
        """What the child reported, one short line an event (an update's session and port count, not its rows)."""
        lines = []
        for event in self.snapshot():
            if event["ev"] in ("update", "vtep_update"):
                snap = event["snap"]
                lines.append("%s %s ports=%s" % (event["ev"], snap["session"], len(snap.get("ports", ()))))
            elif event["ev"] == "sessions":
                lines.append("sessions %s: %s" % (event["id"], [s["key"] for s in event["sessions"]]))
            else:
                lines.append(" ".join("%s=%s" % kv for kv in event.items()))
        return "manager reported (%d events):\n%s" % (len(lines), "\n".join(lines[-60:]))

    def wait_event(self, predicate, timeout: float, what: str) -> dict:
        """The first recorded event matching ``predicate``, waiting up to ``timeout``."""
        return poll_until(lambda: next((e for e in self.snapshot() if predicate(e)), None),
                          timeout, what, self.context)

    def updates(self, session: str) -> list[dict]:
        return [e["snap"] for e in self.snapshot() if e["ev"] == "update" and e["snap"]["session"] == session]

    def gones(self, session: str) -> int:
        return sum(1 for e in self.snapshot() if e["ev"] == "gone" and e["session"] == session)

    def wait_latest(self, session: str, predicate, timeout: float, what: str) -> dict:
        """Wait until the *latest* update of ``session`` matches ``predicate``."""
        def check():
            ups = self.updates(session)
            return ups[-1] if ups and predicate(ups[-1]) else None
        return poll_until(check, timeout, what, self.context)

    def sessions(self) -> list[dict]:
        return self._sessions_reply()["sessions"]

    def slicing(self) -> list[str]:
        """The sessions reporting an update in slices now (``OvsdbManagerServer.slicing``)."""
        return self._sessions_reply()["slicing"]

    def _sessions_reply(self) -> dict:
        request = next(self._ids)
        self._send("sessions %d" % request)
        return self.wait_event(lambda e: e["ev"] == "sessions" and e["id"] == request, START_TIMEOUT,
                               "sessions reply")

    def set_vtep_desired(self, name: str, desired) -> None:
        """``server.set_vtep_desired(name, desired)`` (a ``VtepDesired`` or None), acknowledged."""
        request = next(self._ids)
        self._send("desired %d %s %s" % (request, name, desired_to_json(desired)))
        self.wait_event(lambda e: e["ev"] == "desired" and e["id"] == request, START_TIMEOUT, "desired ack")

    def vtep_updates(self, session: str | None = None) -> list[dict]:
        """Every VtepSnapshot reported (of ``session`` if given), oldest first, as dicts."""
        return [e["snap"] for e in self.snapshot()
                if e["ev"] == "vtep_update" and session in (None, e["snap"]["session"])]

    def vtep_gones(self, session: str) -> int:
        return sum(1 for e in self.snapshot() if e["ev"] == "vtep_gone" and e["session"] == session)

    def wait_vtep(self, predicate, timeout: float, what: str, session: str | None = None) -> dict:
        """Wait until the latest VtepSnapshot (of ``session``, else of any session) matches."""
        def check():
            ups = self.vtep_updates(session)
            return ups[-1] if ups and predicate(ups[-1]) else None
        return poll_until(check, timeout, what, self.context)

    def first_reads(self, verb: str, count: int) -> dict:
        """Take (``take``) or give back (``give``) ``count`` of the server's first-read slots (ovsdb/firstreads.py)
        as sessions reading big databases would; the server's ``first_reads`` status after."""
        request = next(self._ids)
        self._send("first_reads %d %s %d" % (request, verb, count))
        return self.wait_event(lambda e: e["ev"] == "first_reads" and e["id"] == request, START_TIMEOUT,
                               "first_reads ack")["status"]

    def stop(self) -> list[dict]:
        self._send("stop")
        return self.wait_event(lambda e: e["ev"] == "stopped", START_TIMEOUT, "manager stopped")["sessions"]

    def _send(self, line: str) -> None:
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def close(self) -> None:
        """Close stdin (the child exits), then stop it by PID if it has not; idempotent."""
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        stop_process(self.proc)
        self._reader.join(START_TIMEOUT)
        self._log.close()


if __name__ == "__main__":
    sys.exit(driver_main(sys.argv[1:]))
