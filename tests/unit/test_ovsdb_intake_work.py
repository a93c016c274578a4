"""The work of the OVSDB intake of a big insert of ports and of the ofport update that follows (evpn_routes' announce:
tests/benchmarks/ovsdb_announce.py, docs/benchmarks.md "ins40"), per port: from the update's text as ovsdb-server
sends it (compact JSON, read in 64 KiB pieces) to the reporter's snapshots, through the framing and decoding
(ovsdb/jsonstream.py), the replica's parse and apply in slices (ovsdb/idl/) and the reporter (ovsdb/vrs.py,
ovsdb/bridgeports.py); no State. Counted in Python bytecodes (every frame, ``sys.settrace``), not seconds."""

import json
import uuid

import ovs.db.idl
import pytest

from ovsdb import jsonstream, vrs
from ovsdb.rowchanges import RowChanges
from tests.bytecodes import opcodes
from tests.unit.sinks import Reports
from tests.unit.test_ovsdb_slices import root_rows, tracking

PORTS = 1000
READ = 64 * 1024  # characters a session reads and frames at once (ovsdb/idl/links.py READ_BUDGET)


def _uuid(kind: int, i: int) -> str:
    return str(uuid.UUID(int=(kind << 64) + i))


def _message(table_updates: dict) -> str:
    return json.dumps({"id": None, "method": "update3", "params": [["monid", "Open_vSwitch"], _uuid(9, 0),
                                                                   table_updates]}, separators=(",", ":"))


def _world(ports: int):
    """(the first copy, the insert of ``ports`` ports as libvirt leaves them, ovs-vswitchd's ofport -1 on each)."""
    root, bridge = _uuid(1, 0), _uuid(2, 0)
    first = {"Open_vSwitch": {root: {"initial": {"bridges": ["uuid", bridge], "external_ids": [
                 "map", [["system-id", "kvm1"], ["canopy-vtep-ip", "10.0.0.5"]]]}}},
             "Bridge": {bridge: {"initial": {"name": "br-int", "datapath_id": "0000000000000005"}}}}
    ifaces = {_uuid(3, i): {"insert": {"name": f"tap{i}", "external_ids": ["map", [
        ["attached-mac", f"02:00:00:00:{i >> 8:02x}:{i & 255:02x}"], ["iface-id", f"v{i}"],
        ["iface-status", "active"]]]}} for i in range(ports)}
    port_rows = {_uuid(4, i): {"insert": {"name": f"tap{i}", "interfaces": ["uuid", _uuid(3, i)]}}
                 for i in range(ports)}
    insert = {"Interface": ifaces, "Port": port_rows,
              "Bridge": {bridge: {"modify": {"ports": ["set", [["uuid", p] for p in port_rows]]}}}}
    ofport = {"Interface": {i: {"modify": {"ofport": -1}} for i in ifaces}}
    return first, _message(insert), _message(ofport)


class Session:
    """A tracking replica and its reporter, read as ovsdb/peersession.py reads them (each slice, then the rest)."""

    def __init__(self, first: dict):
        self.replica = tracking()
        self.replica._Idl__parse_update(first, ovs.db.idl.OVSDB_UPDATE2)
        self.replica.state = self.replica.IDL_S_MONITORING
        self.sink = Reports()
        self.reporter = vrs.VrsReporter(self.sink, "ovsdb:peer", "10.0.0.1:1")
        self.report()
        self.replica.on_slice = self.report

    def report(self):
        changes, self.replica.changes = self.replica.changes, RowChanges()
        self.reporter.refresh(root_rows(self.replica), changes)

    def take(self, text: str) -> None:
        """``text`` framed and decoded as a session reads it, then parsed, applied and reported."""
        parser = jsonstream.Parser(1 << 26)
        for start in range(0, len(text), READ):
            parser.feed(text[start:start + READ])
        message = parser.finish()
        self.replica._Idl__parse_update(message["params"][2], ovs.db.idl.OVSDB_UPDATE2)
        self.report()


def test_the_intake_of_a_big_insert_and_of_its_ofport_update_is_bounded_per_port():
    """1,000 new ports, then ofport -1 on their interfaces: at most 3,600 bytecodes a new port (~3,452 here; main at
    b942caf: ~4,078: each new row's columns parsed into ovs's Atoms and Datums at once, now kept as their JSON, checked
    in C loops, and read from it: ovsdb/idl/lazy.py; at 63375f1 ~4,752: the walk of the update's rows one at a time,
    now decoded 64 KB at a time in C; every row looked at in Python for a long plain set, now in C loops; the
    reporter's reads of each interface's columns and of the port's interfaces, now in one call each, and each new
    port's Atom looked up in its bridge's set, now one set of the bridge's keys per slice), and at most 830 a port's
    ofport (~785 here; b942caf ~943: the difference parsed into an Atom and a Datum and applied to a copy of the
    default, now the integer kept as its JSON on a column at its default; 63375f1 ~1,064: the plain sets looked for
    row by row, the row's key compared through UUID.__eq__ twice, the optional column read through a set and a sort,
    the PortInfo handed back compared field by field)."""
    first, insert, ofport = _world(PORTS)
    session = Session(first)
    reads = session.reporter.full_reads
    inserted = opcodes(lambda: session.take(insert))
    snapshot = session.sink.updates[-1]
    assert len(snapshot.ports) == PORTS and snapshot.ports[0].mac == "02:00:00:00:00:00"
    assert session.reporter.full_reads == reads  # each slice's ports found on the bridge: no port read twice
    numbered = opcodes(lambda: session.take(ofport))
    assert session.replica.tables["Interface"].rows[uuid.UUID(_uuid(3, 7))].ofport == [-1]
    assert session.sink.updates[-1] is snapshot  # -1 reads as no ofport, as before: nothing to report
    assert inserted <= 3600 * PORTS, inserted
    assert numbered <= 830 * PORTS, numbered


@pytest.mark.parametrize("value", [
    None, 0, "x" * 20_001, ["map", []], ["map", [["k", "v"]] * 10_001], ["set", ["a"] * 20_001], ["set", "a" * 30_000],
    ["map"], [["k", "v"]] * 3, {"1": 2}, ["set", 5], ["set", ["a"] * 20_001, "extra"], [1, [0] * 10_000]])
@pytest.mark.parametrize("operation", ["insert", "modify", "initial", "new"])
@pytest.mark.parametrize("deleted", [False, True])
def test_the_long_plain_sets_are_looked_for_as_row_by_row(value, operation, deleted):
    """``refusals.check_plain_sets`` with its look in C loops first (``_all_short``: every value's second element no
    longer than MAX_PLAIN, or a shape it leaves to the row-by-row loop) refuses what the loop alone refuses, with the
    same reason, and nothing else; with a row deleted too (a part that is not an object: the loop's to judge) and
    without (the C loops judge)."""
    from ovsdb.idl import refusals

    update = {"Interface": {_uuid(3, 0): {operation: {"name": "a"}}, _uuid(3, 1): {operation: {"external_ids": value}},
                            **({_uuid(3, 2): {"delete": None}} if deleted else {})}}
    columns = {"Interface": ("external_ids", "options")}

    def outcome():
        try:
            refusals.check_plain_sets(update, columns)
        except refusals.UpdateRefused as exc:
            return str(exc)
        return None

    got = outcome()
    real = refusals._all_short
    refusals._all_short = lambda *args: False
    try:
        assert got == outcome()
    finally:
        refusals._all_short = real
