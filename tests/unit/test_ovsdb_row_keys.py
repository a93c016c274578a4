"""Canopy's dicts of OVSDB rows are keyed by ``row_key`` (ovsdb/rowchanges.py: the uuid's number), not by the
``uuid.UUID``: a uuid's ``__hash__`` is a Python call at every lookup, ~170,000 of them in these dicts when
10,000 ports are deleted (the change list, the replica's name index, the bridge's ports: ovsdb/bridgeports.py).

A big delete (and a big insert) of ports, fed to a tracking replica read by a ``VrsReporter`` slice by slice as the
OVSDB session reads it (the harness of tests/unit/test_ovsdb_slices.py), counts every ``UUID.__hash__`` and
``__eq__`` call: what is left is ovs's own (its rows' table, ``IndexedRows.data``, looked up once per deleted row:
ovsdb/idl/rowloop.py; a bridge's ``ports`` set of Atoms), a few per row, and the reporter's result is still a fresh
read's.
"""

import json
import logging
import random
import uuid

import ovs.db.idl

from ovsdb import vrs
from ovsdb.claims import VrsClaims
from ovsdb.rowchanges import RowChange, RowChanges, row_key
from tests.unit.sinks import Reports
from tests.unit.test_ovsdb_slices import Database, root_rows, session, take

PORTS = 1200  # more than two slices (100, 500, 500, 100)


class UuidCalls:
    """Counts the Python-level ``uuid.UUID.__hash__`` and ``__eq__`` calls (each lookup of a uuid in a dict: a hash,
    and an ``__eq__`` when the key found is an equal uuid, not the same object) until ``monkeypatch.undo()``; the
    same results as before: the dicts behave the same."""

    def __init__(self, monkeypatch):
        self.calls = 0
        for name in ("__hash__", "__eq__"):
            monkeypatch.setattr(uuid.UUID, name, self._counted(getattr(uuid.UUID, name)))

    def _counted(self, real):
        def counted(*args):
            self.calls += 1
            return real(*args)
        return counted


def _reported(db: Database, update: dict, monkeypatch) -> tuple[int, int, object]:
    """Feed ``update`` (not applied to ``db`` yet) to a replica of ``db`` read by a reporter slice by slice; returns
    (rows the update names, ``UuidCalls`` meanwhile, the reporter). ``db`` holds the update's result afterwards."""
    replica = db.fresh()
    sink = Reports()
    reporter = session(replica, VrsClaims(sink, 0.0, logging.getLogger("test")), sink)
    slices_read = []
    replica.on_slice = lambda: slices_read.append(take(replica, reporter))
    message = json.loads(json.dumps(update))
    count = UuidCalls(monkeypatch)
    replica._Idl__parse_update(message, ovs.db.idl.OVSDB_UPDATE2)
    take(replica, reporter)
    monkeypatch.undo()
    assert replica.refused is None and len(slices_read) >= 2  # read slice by slice
    db._apply(update)
    return sum(len(rows) for rows in update.values()), count.calls, reporter


def test_a_big_delete_of_ports_makes_few_uuid_calls_per_row_and_reports_a_fresh_read(monkeypatch):
    """Keyed by the uuid.UUID: 13.3 calls per row (the change list 2, the name index 2, the bridge's ports ~9 per
    port, the rows' table 4: a lookup, then a delete, each a hash and an ``__eq__``); the rows' table looked up twice:
    5.4; now 3.4: the rows' table once (2 per row) and the bridge's set of ports (ovs's Atoms: ~3 per port)."""
    db = Database(random.Random(11))
    db._apply(db.insert_ports(PORTS))
    rows, calls, reporter = _reported(db, db.delete_ports(PORTS), monkeypatch)
    assert rows > 2 * PORTS
    assert calls <= 4 * rows, calls
    assert reporter.last.ports == vrs.build_snapshot("x", "10.0.0.1:1", root_rows(db.fresh())).ports


def test_a_big_insert_of_ports_makes_few_uuid_calls_per_row_and_reports_a_fresh_read(monkeypatch):
    """Keyed by the uuid.UUID: 15.4 calls per row; now 6.1 (ovs's own: its rows' table and references)."""
    db = Database(random.Random(12))
    rows, calls, reporter = _reported(db, db.insert_ports(PORTS), monkeypatch)
    assert rows > 2 * PORTS
    assert calls <= 7 * rows, calls
    assert reporter.last.ports == vrs.build_snapshot("x", "10.0.0.1:1", root_rows(db.fresh())).ports


def test_the_change_list_and_the_name_index_are_keyed_by_row_key():
    """What ovsdb/bridgeports.py and the VTEP tables look rows up by: ``row_key`` of the row, an int."""
    db = Database(random.Random(13))
    db._apply(db.insert_ports(3))
    replica = db.fresh()
    ports = list(replica.tables["Port"].rows.values())
    assert set(replica.changes.table("Port")) == {row_key(p) for p in ports} == {p.uuid.int for p in ports}
    for port in ports:
        assert replica.names["Port"][port.name] == {row_key(port): port}


def test_row_key_of_a_stand_in_without_a_uuid_is_the_object():
    row = type("Row", (), {})()
    assert row_key(row) == id(row)
    changes = RowChanges()
    changes.record("Port", row_key(row), RowChange(row))
    assert changes.table("Port")[id(row)].row is row
