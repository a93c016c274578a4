"""The work a big delete of ports does before its lead slice is reported (ovsdb/idl/slices.py, ``_PacedIdl``): the
lead's report is where its vports are unbound and their EVPN routes withdrawn (bgp/origins.py), so everything before it
delays the first withdrawal (evpn_routes' withdraw phase, docs/benchmarks.md "wdfirst39").

Counted in Python bytecodes (every frame, ``sys.settrace``), not seconds: the update handed to the replica's parser
(what ``Idl.run`` does with a message) until the reader's first report (``on_slice``), 10,000 ports deleted."""

import json
import random

from ovsdb.idl import slices
from tests.bytecodes import opcodes
from tests.unit.test_ovsdb_slices import UPDATE2, Database

PORTS = 10000


def _deleted(ports: int):
    db = Database(random.Random(5))
    db._apply(db.insert_ports(ports))
    return db, db.fresh(), db.delete_ports(ports)


def test_a_big_delete_reports_its_lead_after_at_most_100_bytecodes_a_port_deleted():
    """10,000 ports deleted: at most 100 bytecodes a port from the update to the lead's report (~91 here; main at
    6a20bfd: 2.21 M, ~221: every row update walked in Python for its plain sets, every sliceable port found and the
    next slice built before the lead was reported, each deleted port's row looked up in a map of every row of the
    table made first). Every deleted port's row is still read before the lead (whether two deleted ports hold one
    interface decides what may be cut), once."""
    _, replica, update = _deleted(PORTS)
    update = json.loads(json.dumps(update))
    before, reports = len(replica.tables["Port"].rows), []

    def lead_reported():
        try:
            replica._Idl__parse_update(update, UPDATE2)
        except _Lead:
            pass

    def first_report():
        reports.append(len(replica.tables["Port"].rows))
        raise _Lead

    replica.on_slice = first_report
    counted = opcodes(lead_reported)
    assert reports and reports[0] == len(replica.tables["Port"].rows)  # the lead applied when it was reported
    assert before - reports[0] == slices.LEAD_PORTS
    assert counted <= 100 * PORTS, counted


class _Lead(Exception):
    """Raised by the first report: the count ends there."""


def test_the_lead_is_reported_before_the_next_slice_is_built_and_the_other_ports_are_found():
    """Once the lead slice is applied, the reader reports it before anything else of the update is done: the next
    slice is built, and the sliceable ports after the lead are found, only when the reader asks for it (on main the
    next slice was built first). The same slices, reported as many times: each slice but the last once, the last
    after the parse (there is no rest here)."""
    db, replica, update = _deleted(1200)
    events = []
    real_slice, real_sliceable = slices._slice, slices._sliceable

    def sliceable(*args):  # each port as it is found
        found = real_sliceable(*args)
        if isinstance(found, list):  # (all at once: as on main)
            events.extend("found" for _ in found)
            return found
        return (events.append("found") or port for port in found)

    replica.on_slice = lambda: events.append("report")
    try:
        slices._slice = lambda ports, *args: events.append("slice") or real_slice(ports, *args)
        slices._sliceable = sliceable
        replica._Idl__parse_update(json.loads(json.dumps(update)), UPDATE2)
    finally:
        slices._slice, slices._sliceable = real_slice, real_sliceable
    lead = events.index("slice")
    assert events[lead + 1] == "report"
    assert "found" not in events[lead:events.index("report")]
    assert events.index("found", lead) > events.index("report")  # the ports after the lead: found after its report
    assert [e for e in events if e != "found"] == ["slice", "report"] * 3 + ["slice"]  # 100, 500, 500, 100 ports; no
    # rest: the last slice is reported after the update, as a whole update is
    db._apply(update)
    assert contents(replica) == contents(db.fresh())


def contents(replica):
    """The Port and Interface rows' uuids of a replica."""
    return {name: sorted(str(uuid) for uuid in replica.tables[name].rows) for name in ("Port", "Interface")}
