"""The work of a big delete's whole intake per port deleted, from the update's text as ovsdb-server sends it to State
having unbound every vport and the speaker holding none of their routes (evpn_routes' withdraw phase; the CPU figures:
tests/benchmarks/ovsdb_announce.py, docs/benchmarks.md "Branch wd48a"): the framing and decoding
(ovsdb/jsonstream.py), the replica's plan and slices (ovsdb/idl/), the reporter at each slice (ovsdb/vrs.py,
ovsdb/bridgeports.py), the vports told leaving before the first slice (controller/state_leaving.py) and their routes
withdrawn then (bgp/federation.py), State taking each slice's report (the binding index, the unbinding). Counted in
Python bytecodes (every frame, ``sys.settrace``), not seconds: the same whatever the machine's load."""

import json
import uuid

import ovs.db.idl

from ovsdb import jsonstream, vrs
from ovsdb.claims import VrsClaims
from ovsdb.rowchanges import RowChanges
from tests.bytecodes import opcodes
from tests.unit.test_ovsdb_slices import root_rows, tracking

PORTS = 2000  # sliced (more than slices.SLICE_PORTS): the lead, then slices growing; per port as at 10,000
READ = 64 * 1024  # characters a session reads and frames at once (ovsdb/idl/links.py READ_BUDGET)
# the last read, where the message ends: its characters are framed bracket by bracket in Python (ovsdb/jsonstream.py
# ``feed``), ~2.3 bytecodes a character, once per message whatever its ports (up to a whole read: ~150,000), so
# a small one here: what is counted is the work per port
TAIL = 1024


def _uuid(kind: int, i: int) -> str:
    return str(uuid.UUID(int=(kind << 64) + i))


def _text(table_updates: dict) -> str:
    return json.dumps({"id": None, "method": "update3", "params": [["monid", "Open_vSwitch"], _uuid(9, 0),
                                                                   table_updates]}, separators=(",", ":"))


class Intake:
    """kvm1's replica, its reporter and claims reporting to State (evpn_routes' policy of ``n`` vports, the Federation
    subscribed, early as the app makes it), read as ovsdb/peersession.py reads them: each slice, then the rest."""

    def __init__(self, n: int):
        from tests.benchmarks.evpn_announce import world
        from tests.benchmarks.evpn_routes import out_vport

        self.state, self.programmer, self.federation = world(n)
        root, self.bridge = _uuid(1, 0), _uuid(2, 0)
        first = {"Open_vSwitch": {root: {"initial": {"bridges": ["uuid", self.bridge], "external_ids": [
                     "map", [["system-id", "kvm1"], ["canopy-vtep-ip", "10.251.0.5"]]]}}},
                 "Bridge": {self.bridge: {"initial": {"name": "br-int", "datapath_id": "0000000000000005"}}}}
        self.replica = tracking()
        self.replica._Idl__parse_update(first, ovs.db.idl.OVSDB_UPDATE2)
        self.replica.state = self.replica.IDL_S_MONITORING
        self.reporter = vrs.VrsReporter(self.state, "ovsdb:peer", "10.250.0.5:1", claims=VrsClaims(self.state, 0.0))
        self.report()
        self.replica.on_slice, self.replica.on_leaving = self.report, self.reporter.leaving
        vports = [out_vport(i) for i in range(n)]
        self.ifaces = {_uuid(3, i): {"insert": {"name": v["name"], "external_ids": ["map", [
            ["attached-mac", v["mac"]], ["iface-id", v["name"]], ["iface-status", "active"]]]}}
            for i, v in enumerate(vports)}
        self.ports = {_uuid(4, i): {"insert": {"name": v["name"], "interfaces": ["uuid", _uuid(3, i)]}}
                      for i, v in enumerate(vports)}
        self.take(_text({"Interface": self.ifaces, "Port": self.ports, "Bridge": {self.bridge: {"modify": {
            "ports": ["set", [["uuid", p] for p in self.ports]]}}}}))
        self.programmer.refresh()
        self.federation.publish(self.programmer.view)
        self.federation.early = True  # the app's, once passes hand out

    def report(self) -> None:
        changes, self.replica.changes = self.replica.changes, RowChanges()
        self.reporter.refresh(root_rows(self.replica), changes)

    def take(self, text: str) -> None:
        """``text`` framed and decoded as a session reads it (its last ``TAIL`` characters a read of their own), then
        parsed, applied (in slices) and reported."""
        parser = jsonstream.Parser(1 << 26)
        for start in range(0, len(text) - TAIL, READ):
            parser.feed(text[start:min(start + READ, len(text) - TAIL)])
        parser.feed(text[-TAIL:])
        self.replica._Idl__parse_update(parser.finish()["params"][2], ovs.db.idl.OVSDB_UPDATE2)
        self.report()
        self.reporter.leaving_done()

    def delete_all(self) -> str:
        return _text({"Interface": dict.fromkeys(self.ifaces, {"delete": None}),
                      "Port": dict.fromkeys(self.ports, {"delete": None}),
                      "Bridge": {self.bridge: {"modify": {"ports": ["set", [["uuid", p] for p in self.ports]]}}}})


def type2_routes(federation) -> int:
    return sum(1 for route in federation.speaker.desired.values() if route.TYPE == 2)


def test_a_big_deletes_whole_intake_is_at_most_160_bytecodes_a_port():
    """2,000 bound vports' ports deleted in one update: from its text to State having unbound them all and the speaker
    holding none of their routes, at most 160 bytecodes a port (~118 here; main at 95a4b671: ~414, the vports leaving
    found port by port, the plan's walk of the Port table, the bridges' differences owned, the rest's difference and
    each slice's rows looked at for long sets in Python loops, the bridge's ``ports`` difference parsed and each
    element looked up with six Python calls, each slice's interfaces unset and its changed ports picked one by one)."""
    intake = Intake(PORTS)
    assert len(intake.state.locations) == PORTS and type2_routes(intake.federation) == PORTS
    text = intake.delete_all()
    counted = opcodes(lambda: intake.take(text))
    assert not intake.state.locations and type2_routes(intake.federation) == 0
    assert intake.reporter.last.ports == () and not intake.replica.tables["Port"].rows
    assert counted <= 160 * PORTS, counted / PORTS
