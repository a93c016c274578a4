"""ovsdb-server's own CPU for evpn_routes' big delete, and how much of it comes after its reply, per monitoring client.

    .venv/bin/python -m tests.benchmarks.ovsdb_compose [--ports 10000] [--repeat 2]

Why: evpn_routes' withdraw phase starts its clock at the OVSDB transaction that deletes N ports. Canopy can withdraw
nothing before ovsdb-server has sent it the update, and ovsdb-server composes the monitors' updates after it has
answered the transaction (for every monitoring client, in one stretch of its main loop). This measures that part.

A fresh ovsdb-server (Open_vSwitch schema, in a temporary directory, on a unix socket only) gets br-int with N ports
(evpn_routes' rows: ``add_ports_ops``), then the clients of a setup connect and take the first copy, then the N
ports are deleted in one transaction (as evpn_routes deletes them). Reported per setup: the transaction's wall
time and ovsdb-server's CPU until its answer; ovsdb-server's CPU after the answer until every client holds no port
(plus 0.3 s); the wall time from the answer until each client held no port. Setups: ``none`` (no client),
``canopy`` (one ovs IDL with Canopy's VRS columns, ``ovsdb.vrs.COLUMNS``), ``canopy-nodelete`` (the same, its monitor
request asking for no deletes of Port and Interface rows: ``"select"`` without ``"delete"``, RFC 7047 4.1.5; it
holds no port once br-int's ``ports`` is empty), ``canopy+vswitchd`` (``canopy`` and an IDL of every column, as
ovs-vswitchd monitors, both as in the lab). The clients are plain ovs IDLs run in this process, one
after the other: their own parsing is in the wall times, not in ovsdb-server's CPU.

Needs Open vSwitch's ovsdb-server and ovsdb-tool. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import ovs.db.idl
import ovs.poller

from ovsdb.vrs import COLUMNS
from tests.benchmarks.evpn_routes import add_ports_ops, out_vport, transact_at

SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"
TIMEOUT = 120.0  # seconds, any one wait
SETUPS = ("none", "canopy", "canopy-nodelete", "canopy+vswitchd")
NO_DELETE = ("Port", "Interface")  # the tables canopy-nodelete asks no deletes of


class Server:
    """ovsdb-server on a fresh database in ``workdir``, with br-int and ``ports`` evpn_routes ports."""

    def __init__(self, workdir: Path, ports: int):
        self.socket, db = workdir / "db.sock", workdir / "conf.db"
        subprocess.run(["ovsdb-tool", "create", str(db), SCHEMA], check=True)
        self.proc = subprocess.Popen(["ovsdb-server", str(db), f"--remote=punix:{self.socket}",
                                      f"--unixctl={workdir / 'ctl'}", f"--log-file={workdir / 'server.log'}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait(self.socket.exists, "ovsdb-server's socket", poll=lambda: time.sleep(0.05))
        self.transact([{"op": "insert", "table": "Open_vSwitch", "row": {"bridges": ["named-uuid", "b"]}},
                       {"op": "insert", "table": "Bridge", "uuid-name": "b", "row": {"name": "br-int"}}])
        self.transact(add_ports_ops([out_vport(i) for i in range(ports)]))

    def transact(self, ops: list) -> list:
        return transact_at(self.socket, ops, TIMEOUT)

    def cpu(self) -> float:
        """ovsdb-server's CPU seconds (user + system) so far."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def wait(done, what: str, poll) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not done():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        poll()


class _NoDeleteIdl(ovs.db.idl.Idl):
    """An ovs IDL whose monitor requests select no deletes of the ``NO_DELETE`` tables."""

    def send_request(self, request):
        if request.method in ("monitor", "monitor_cond", "monitor_cond_since") and request.params[0] == self._db.name:
            for table in NO_DELETE:
                for one in request.params[2].get(table, ()):
                    one["select"] = {"initial": True, "insert": True, "modify": True, "delete": False}
        return super().send_request(request)


def client(server: Server, columns: dict | None, no_delete: bool = False) -> ovs.db.idl.Idl:
    """An ovs IDL on ``server`` replicating ``columns`` ({table: columns}; None: every column of the schema)."""
    helper = ovs.db.idl.SchemaHelper(SCHEMA)
    if columns is None:
        helper.register_all()
    else:
        for table, names in columns.items():
            helper.register_columns(table, list(names))
    return (_NoDeleteIdl if no_delete else ovs.db.idl.Idl)(f"unix:{server.socket}", helper)


def holds_no_port(idl: ovs.db.idl.Idl) -> bool:
    """The IDL holds no port: none in its Port table, or (a ``_NoDeleteIdl``, which keeps the deleted rows) none in
    its bridges' ``ports``."""
    if isinstance(idl, _NoDeleteIdl):
        return not any(bridge.ports for bridge in idl.tables["Bridge"].rows.values())
    return not idl.tables["Port"].rows


def run_clients(idls: list) -> None:
    poller = ovs.poller.Poller()
    for idl in idls:
        idl.run()
        idl.wait(poller)
    poller.timer_wait(20)
    poller.block()


def run(setup: str, ports: int) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="ovsdb_compose."))
    server = Server(workdir, ports)
    try:
        idls = [] if setup == "none" else [client(server, COLUMNS, setup.endswith("nodelete"))] + (
            [client(server, None)] if "+" in setup else [])
        wait(lambda: all(len(idl.tables["Port"].rows) == ports for idl in idls), "the clients' first copy",
             poll=lambda: run_clients(idls))
        rows = server.transact([{"op": "select", "table": "Port", "where": [], "columns": ["_uuid"]}])[0]["rows"]
        delete = [{"op": "mutate", "table": "Bridge", "where": [["name", "==", "br-int"]],
                   "mutations": [["ports", "delete", ["set", [row["_uuid"] for row in rows]]]]}]
        cpu, started = server.cpu(), time.monotonic()
        server.transact(delete)
        answered, answered_cpu = time.monotonic(), server.cpu()
        emptied: dict[int, float] = {}

        def all_empty() -> bool:
            for k, idl in enumerate(idls):
                if k not in emptied and holds_no_port(idl):
                    emptied[k] = time.monotonic() - answered
            return len(emptied) == len(idls)

        wait(all_empty, "the clients to hold no port", poll=lambda: run_clients(idls))
        time.sleep(0.3)
        return {"transaction s": answered - started, "server CPU s to the answer": answered_cpu - cpu,
                "server CPU s after the answer": server.cpu() - answered_cpu,
                "clients emptied s after the answer": [round(emptied[k], 3) for k in range(len(idls))]}
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each setup, interleaved")
    args = parser.parse_args(argv)
    print(f"{args.ports:,} ports deleted in one transaction; load average at the start "
          f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for k in range(args.repeat):
        for setup in SETUPS:
            result = run(setup, args.ports)
            print(f"  run {k + 1} {setup:16}" + "; ".join(
                f"{name} {value if isinstance(value, list) else round(value, 3)}" for name, value in result.items()))
    print(f"  load average at the end {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
