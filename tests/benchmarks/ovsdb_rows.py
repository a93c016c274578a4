"""The controller's per-row OVSDB work for N new ports, counted offline: the IDL and the VRS reporter's ports.

    .venv/bin/python tests/benchmarks/ovsdb_rows.py [--ports 10000] [--meter opcodes|cpu] [--profile FILE]

(run from the checkout to measure). No ovsdb-server, no socket, no JSON text: a ``_TrackingIdl`` replicating
Canopy's VRS columns (ovsdb/vrs.py ``COLUMNS``, the real Open_vSwitch schema) is handed the updates ovsdb-server sends
(update2, decoded) and a ``BridgePorts`` (ovsdb/bridgeports.py) with ``vrs.port_info`` and ``port_info_again``, as
``VrsReporter`` wires it, reads the rows they changed. Three steps, each the IDL (the update parsed, applied and
notified) and the reporter (``BridgePorts.apply`` of the changes, or ``rebuild``) apart:

- **insert**: evpn_routes' announce, N Port + Interface rows inserted and added to br-int in one update (applied whole:
  the slices of ovsdb/idl/slices.py cut the same rows);
- **ofport**: ovs-vswitchd's follow-up, ``ofport`` -1 on the N new interfaces (a one-column modify per row);
- **first read**: a new session's first copy of that database (vrs_scale's restart: every row "initial"), then
  ``rebuild``.

``--meter opcodes`` (default) counts Python bytecodes (``sys.settrace``: no clock, repeatable on a loaded machine; what
tests/unit/test_ovsdb_rows_cost.py bounds); ``cpu``: ``time.thread_time`` (slowed by nothing but the machine).
Not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path

STEPS = ("insert: IDL", "insert: reporter", "ofport: IDL", "ofport: reporter", "first read: IDL",
         "first read: reporter")
SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


def _text(k: int) -> str:
    return str(uuid.UUID(int=k + 1))


class Rows:
    """The database's rows (update2 JSON, as ovsdb-server sends Canopy's columns) and the updates that make them."""

    def __init__(self, n: int):
        self.root, self.bridge, self.w1, self.iw1 = _text(0), _text(1), _text(2), _text(3)
        self.ports = [(_text(10 + 2 * k), _text(11 + 2 * k), "vp%05d" % k) for k in range(n)]

    @staticmethod
    def _iface(name: str, k: int) -> dict:
        mac = "02:00:%02x:%02x:%02x:01" % (k >> 16 & 255, k >> 8 & 255, k & 255)
        return {"name": name, "external_ids": ["map", [["attached-mac", mac], ["iface-id", name],
                                                       ["iface-status", "active"]]]}

    def first(self, with_ports: bool = False, ofport=None) -> dict:
        """The first copy: kvm1's root, br-int with w1's port (``with_ports``: and the N ports)."""
        ports = [self.w1] + ([port for port, _, _ in self.ports] if with_ports else [])
        out = {
            "Open_vSwitch": {self.root: {"initial": {
                "bridges": ["uuid", self.bridge],
                "external_ids": ["map", [["canopy-flavour", "kvm"], ["canopy-vtep-ip", "10.251.0.5"],
                                         ["system-id", "kvm1"]]]}}},
            "Bridge": {self.bridge: {"initial": {"name": "br-int", "datapath_id": "0000000000000005",
                                                 "ports": ["set", [["uuid", p] for p in ports]]}}},
            "Port": {self.w1: {"initial": {"name": "tapw1", "interfaces": ["uuid", self.iw1]}}},
            "Interface": {self.iw1: {"initial": {"name": "tapw1", "ofport": 5, "external_ids": [
                "map", [["attached-mac", "02:00:00:00:00:05"], ["iface-id", "w1"]]]}}}}
        if with_ports:
            for k, (port, iface, name) in enumerate(self.ports):
                row = self._iface(name, k)
                if ofport is not None:
                    row["ofport"] = ofport
                out["Port"][port] = {"initial": {"name": name, "interfaces": ["uuid", iface]}}
                out["Interface"][iface] = {"initial": row}
        return out

    def insert(self) -> dict:
        return {"Interface": {iface: {"insert": self._iface(name, k)} for k, (_, iface, name) in enumerate(self.ports)},
                "Port": {port: {"insert": {"name": name, "interfaces": ["uuid", iface]}}
                         for port, iface, name in self.ports},
                "Bridge": {self.bridge: {"modify": {"ports": ["set", [["uuid", p] for p, _, _ in self.ports]]}}}}

    def ofport(self) -> dict:
        return {"Interface": {iface: {"modify": {"ofport": -1}} for _, iface, _ in self.ports}}


def replica():
    from ovsdb import idl, vrs

    helper = idl.schema_helper(json.loads(Path(SCHEMA).read_text()), vrs.COLUMNS)
    made = idl._TrackingIdl("tcp:127.0.0.1:1", helper, leader_only=False, named=("Port", "Interface"))
    made.state = made.IDL_S_MONITORING
    return made


def reporter():
    from ovsdb import vrs
    from ovsdb.bridgeports import BridgePorts

    return BridgePorts(vrs.port_info, reread=vrs.port_info_again)


def run(n: int, meter, profiler=None) -> dict:
    """{step: what ``meter`` measured} (``meter()``: a context manager, its ``count`` read after)."""
    import ovs.db.idl

    from ovsdb.rowchanges import RowChanges

    rows = Rows(n)
    counted = {}

    def step(name, call, *args):
        if profiler is not None:
            profiler.enable()
        with meter() as measured:
            result = call(*args)
        if profiler is not None:
            profiler.disable()
        counted[name] = measured.count
        return result

    def feed(name, made, update, version=ovs.db.idl.OVSDB_UPDATE2):
        update = json.loads(json.dumps(update))  # each its own copy (ovs adds defaults to it), made outside
        step(name, made._Idl__parse_update, update, version)
        changes, made.changes = made.changes, RowChanges()
        assert made.refused is None, made.refused
        return changes

    def bridge(made):
        return next(iter(made.tables["Bridge"].rows.values()))

    made, ports = replica(), reporter()
    feed("setup", made, rows.first())
    ports.rebuild(bridge(made), None)
    changes = feed("insert: IDL", made, rows.insert())
    step("insert: reporter", ports.apply, bridge(made), changes)
    changes = feed("ofport: IDL", made, rows.ofport())
    step("ofport: reporter", ports.apply, bridge(made), changes)
    assert len(ports.ports) == n + 1 and all(info.ofport is None for info in ports.ports if info.name != "tapw1")
    again, ports_again = replica(), reporter()
    feed("first read: IDL", again, rows.first(with_ports=True, ofport=-1), ovs.db.idl.OVSDB_UPDATE3)
    step("first read: reporter", ports_again.rebuild, bridge(again), None)
    assert ports_again.ports == ports.ports
    del counted["setup"]
    return counted


def main(argv=None) -> int:
    from tests.benchmarks.evpn_withdraw import Clock
    from tests.bytecodes import Bytecodes

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=10000)
    parser.add_argument("--meter", choices=("opcodes", "cpu"), default="opcodes")
    parser.add_argument("--profile", help="cProfile of the steps into this file (with --meter cpu)")
    args = parser.parse_args(argv)
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
    counted = run(args.ports, Bytecodes if args.meter == "opcodes" else Clock, profiler)
    if profiler is not None:
        profiler.dump_stats(args.profile)
    unit = "bytecodes per port" if args.meter == "opcodes" else "CPU us per port"
    scale = 1 if args.meter == "opcodes" else 1e6
    print(f"{args.ports:,} ports: {unit}")
    for name in STEPS:
        print(f"  {name:22s} {counted[name] * scale / args.ports:10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
