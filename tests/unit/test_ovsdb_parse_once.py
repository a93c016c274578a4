"""Per-column work made once, not per row (ovsdb/idl/rows.py ``column_value``'s reader; ovsdb/idl/datums.py's parser
of a map of strings): the same values as ovs gives (tests/unit/test_ovsdb_datums.py and test_ovsdb_idl_parse.py
compare every column), without the per-read or per-atom calls."""

from __future__ import annotations

import ovs.db.data
import ovs.db.schema

from ovsdb import idl
from ovsdb.idl import datums, rows
from tests.unit.test_ovsdb_idl_parse import SCHEMA, UPDATES, both
from tests.unit.test_ovsdb_rowloop_paths import INSERT


def test_column_value_makes_each_columns_conversion_once_per_replica(monkeypatch):
    _, paced = both()
    paced.feed(UPDATES[0])
    paced.feed(INSERT)
    made = []
    real = rows._reader
    monkeypatch.setattr(rows, "_reader", lambda type_: made.append(type_) or real(type_))
    interfaces = list(paced.idl.tables["Interface"].rows.values())
    names = [idl.column_value(row, "name") for row in interfaces]
    ids = [idl.column_value(row, "external_ids") for row in interfaces]
    assert len(interfaces) > 20 and len(made) == 1  # external_ids' (the name's was made by the name index's reads)
    for row in interfaces:
        idl.column_value(row, "name")
        idl.column_value(row, "external_ids")
    assert len(made) == 1
    assert names == [row.name for row in interfaces] and ids == [row.external_ids for row in interfaces]


def test_a_map_of_strings_is_parsed_without_a_reader_call_per_atom(monkeypatch):
    schema = ovs.db.schema.DbSchema.from_json(SCHEMA)
    type_ = schema.tables["Interface"].columns["external_ids"].type
    calls = []
    real = datums._map
    monkeypatch.setattr(datums, "_map", lambda *args: calls.append(args) or real(*args))
    parse = datums.datum_parser(type_)
    value = ["map", [["attached-mac", "02:00:00:00:00:01"], ["iface-id", "vp1"], ["iface-status", "active"]]]
    assert parse(value).to_json() == ovs.db.data.Datum.from_json(type_, value).to_json()
    assert calls == []


def test_each_replica_reads_a_column_by_its_own_schemas_type():
    """The conversion is kept on the replica's own column (an IdlColumn per Idl): two sessions whose peers' schemas
    type a column differently (two OVS versions: Interface.ofport optional in one, a scalar in the other) each read
    it by their own type, in any order."""
    import copy
    import json
    import uuid

    import ovs.db.idl

    from ovsdb import vrs
    from tests.unit.test_ovsdb_idl_parse import SCHEMA as JSON

    scalar = copy.deepcopy(JSON)
    scalar["tables"]["Interface"]["columns"]["ofport"] = {"type": "integer"}
    row = str(uuid.UUID(int=1))
    replicas = []
    for schema in (JSON, scalar, JSON):
        replica = idl._TrackingIdl("tcp:127.0.0.1:1", idl.schema_helper(schema, vrs.COLUMNS), leader_only=False,
                                   named=("Interface",))
        replica._Idl__parse_update(json.loads(json.dumps(
            {"Interface": {row: {"initial": {"name": "p1", "ofport": 7}}}})), ovs.db.idl.OVSDB_UPDATE2)
        replicas.append(next(iter(replica.tables["Interface"].rows.values())))
    assert [idl.column_value(found, "ofport") for found in replicas] == [[7], 7, [7]]
    assert [found.ofport for found in replicas] == [[7], 7, [7]]
