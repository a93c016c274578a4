"""ovsdb/idl/lazy.py: a new row's column kept as its JSON until read gives, for every column of the real Open_vSwitch
schema and every value (valid, malformed, at and outside the type's bounds, random), what an eager parse gives: the
JSON it takes parses (ovs's own ``Datum.from_json``) to the Datum it makes on first read, its ``SAME`` only for what
parses to the column's default, and what it leaves (None) is parsed at once (the refusals: the parser's, unchanged);
Canopy's readers (ovsdb/idl/rows.py) read its JSON as ovs's ``to_python`` reads the Datum. In a replica: the values
read before and after a change of such a column are the column's, not the JSON it was inserted with."""

import json
import random
import uuid
from types import SimpleNamespace

import ovs.db.data
import ovs.db.error
import ovs.db.idl
import pytest

from ovsdb.idl import lazy
from ovsdb.idl.datums import datum_parser
from ovsdb.idl.rows import _reader, column_value
from tests.unit.test_ovsdb_datums import COLUMNS, MALFORMED_AND_EDGE, U1, U2, outcome, per_type_values, random_value
from tests.unit.test_ovsdb_idl_parse import U, UPDATES, both

EXTRA = [["map", [["k", "v"]] * 2], ["map", [["", ""]]], ["map", [["k", "v"], ["k2", ""]]], ["uuid", U1 + "\n"],
         ["uuid", "00000000-0000-0000-0000-000000000000"], "", "\u00e9t\u00e9", ["map", [["a", "b"], ["c"]]],
         ["map", [["a", "b"], ("c", "d")]], ["map", [["a", "b"], [None, "d"]]], ["map", [["a", "b"], ["c", 1]]],
         ["map", ["ab", "cd"]], ["map", [["a", "b"], "cd"]], ["map", [["a", "b"], ["c", ["d"]]]],
         ["map", [[["a"], "b"]]],
         ["uuid", "g" * 36], ["uuid", U1[:-1] + "g"], ["uuid", "-" * 36], ["uuid", U1.replace("-", "0")]]


def _values(type_, rng):
    return MALFORMED_AND_EDGE + EXTRA + BOUNDED_VALUES + per_type_values(type_) + \
        [random_value(rng, type_) for _ in range(60)]


def _read(datum, type_):
    """``column_value``'s reading of ``datum`` (its reader), references resolved to stand-ins (U1 to a row)."""
    rows = {uuid.UUID(U1): "row 1"}
    return _reader(type_)(datum, SimpleNamespace(_uuid_to_row=lambda value, base: rows.get(value) if base.ref_table
                                                 else value, __dict__={}))


BOUNDED = [  # types with string lengths and sizes bounded (the Open_vSwitch schema's strings are not)
    ("bounded", "map", {"key": {"type": "string", "minLength": 2, "maxLength": 3},
                        "value": {"type": "string", "minLength": 1, "maxLength": 2}, "min": 0, "max": 2}),
    ("bounded", "scalar", {"key": {"type": "string", "minLength": 1, "maxLength": 4}}),
    ("plain", "uuid", {"key": "uuid"}),  # a uuid that is no reference: one, or an optional one
    ("plain", "optional-uuid", {"key": "uuid", "min": 0, "max": 1}),
    ("enum", "uuid", {"key": {"type": "uuid", "enum": ["set", [["uuid", U1]]]}, "min": 0, "max": 1}),  # (ovs refuses
    # any other uuid: no schema Canopy replicates has one, a peer's may)
]
BOUNDED_VALUES = [["map", [[k, v]]] for k in ("a", "ab", "abc", "abcd") for v in ("", "x", "xy", "xyz")] + [
    ["map", [["ab", "x"], ["abc", "y"]]], ["map", [["ab", "x"], ["abc", "y"], ["ac", "z"]]], "", "a", "abcd", "abcde"]


def _bounded():
    import ovs.db.types

    return [(table, SimpleNamespace(name=name, type=ovs.db.types.Type.from_json(spec)))
            for table, name, spec in BOUNDED]


@pytest.mark.parametrize("table,column", COLUMNS + _bounded(),
                         ids=[f"{t}.{c.name}" for t, c in COLUMNS] + [f"{t}.{n}" for t, n, _ in BOUNDED])
def test_a_column_kept_as_json_is_the_datum_an_eager_parse_makes(table, column):
    type_ = column.type
    parse, default = datum_parser(type_), ovs.db.data.Datum.default(type_)
    take = lazy.lazy_maker(type_, parse, default)
    if take is None:
        return
    rng = random.Random(table + column.name)
    taken = False
    for value in _values(type_, rng):
        got = take(json.loads(json.dumps(value)))
        if got is None:
            continue  # parsed at once, as before
        taken = True
        theirs = outcome(ovs.db.data.Datum.from_json, type_, value)
        assert theirs[0] == "datum", (table, column.name, value)  # it never takes what ovs refuses
        eager = ovs.db.data.Datum.from_json(type_, json.loads(json.dumps(value)))
        if got is lazy.SAME:
            assert eager.values == default.values, (table, column.name, value)
            continue
        assert eager.values != default.values, (table, column.name, value)
        assert isinstance(got, ovs.db.data.Datum) and lazy.raw(got) is not None
        if type_.key.ref_table is None:  # (a reference's reader needs a replica: the replica test below)
            expected = eager.to_python(lambda v, base: v)
            assert _read(got, type_) == expected and type(_read(got, type_)) is type(expected), (column.name, value)
        if type_.key.type.to_string() == "string":
            assert lazy.raw(got) is not None  # reading it from its JSON made no atoms
        assert outcome(lambda _t, _js: got, type_, value) == theirs, (table, column.name, value)  # made now
        assert lazy.raw(got) is None and got == eager and got.to_json() == eager.to_json()
    assert table != "Interface" or column.name not in ("name", "external_ids") or taken  # (the fast path is taken)


def test_a_bad_value_is_parsed_at_once_and_refused_as_before():
    types = {name: c.type for t, c in COLUMNS for name in [f"{t}.{c.name}"]}
    for name, value in [("Interface.external_ids", ["map", [["a", 1]]]), ("Interface.name", 5),
                        ("Port.interfaces", ["uuid", "nonesuch"]),
                        ("Interface.external_ids", ["map", [["a", "b"]] * 2])]:
        type_ = types[name]
        take = lazy.lazy_maker(type_, datum_parser(type_), ovs.db.data.Datum.default(type_))
        assert take(value) is None
        with pytest.raises(ovs.db.error.Error):
            datum_parser(type_)(value)


def test_a_replica_reads_its_new_rows_columns_as_ovs_and_follows_their_changes():
    plain, paced = both()
    for update in UPDATES[:3]:
        for recorded in (plain, paced):
            recorded.feed(update)
    rows = paced.idl.tables["Port"].rows, paced.idl.tables["Interface"].rows
    port, iface = rows[0][uuid.UUID(U[3])], rows[1][uuid.UUID(U[5])]
    assert lazy.raw(port._data["interfaces"]) == ["uuid", U[5]] and lazy.raw(iface._data["external_ids"]) is not None
    assert column_value(port, "interfaces") == [iface] and column_value(iface, "external_ids") == {"iface-id": "v1"}
    assert column_value(port, "name") == "p1" and lazy.raw(port._data["name"]) == "p1"  # read, still JSON
    # ovs's own reads make the atoms; the values are the same as a plain IDL's
    plain_port = plain.idl.tables["Port"].rows[uuid.UUID(U[3])]
    assert port.name == plain_port.name and [r.uuid for r in port.interfaces] == [r.uuid for r in plain_port.interfaces]
    assert lazy.raw(port._data["interfaces"]) is None
    # a change of a column still as its JSON: a set's difference applied in place, a map's replaced
    change = {"Port": {U[3]: {"modify": {"interfaces": ["uuid", U[6]]}}},
              "Interface": {U[6]: {"modify": {"external_ids": ["map", [["iface-id", "v2"]]]}}}}
    port2 = rows[0][uuid.UUID(U[4])]
    assert lazy.raw(rows[1][uuid.UUID(U[6])]._data["name"]) == "p2a"
    change["Port"][U[4]] = {"modify": {"interfaces": ["uuid", U[7]]}}
    for recorded in (plain, paced):
        recorded.feed(change)
    assert paced.data() == plain.data() and paced.notices == plain.notices
    assert sorted(r.uuid for r in column_value(port, "interfaces")) == [uuid.UUID(U[5]), uuid.UUID(U[6])]
    assert [r.uuid for r in column_value(port2, "interfaces")] == [uuid.UUID(U[6])]
    assert column_value(rows[1][uuid.UUID(U[6])], "external_ids") == {"iface-id": "v2"}


def test_a_set_changed_in_place_is_read_as_changed_not_as_its_json():
    """A new row's one reference kept as its JSON, then a difference adding one (applied to the Datum's values in
    place: ovsdb/idl/paced.py ``_diff``): read as both, the JSON dropped when the values were made."""
    plain, paced = both()
    update = {"Port": {U[3]: {"insert": {"name": "p", "interfaces": ["uuid", U[5]]}}},
              "Interface": {U[5]: {"insert": {"name": "a"}}, U[6]: {"insert": {"name": "b"}}}}
    for recorded in (plain, paced):
        recorded.feed(update)
        recorded.feed({"Port": {U[3]: {"modify": {"interfaces": ["uuid", U[6]]}}}})
    port = paced.idl.tables["Port"].rows[uuid.UUID(U[3])]
    assert sorted(column_value(iface, "name") for iface in column_value(port, "interfaces")) == ["a", "b"]
    assert paced.data() == plain.data()


@pytest.mark.parametrize("table,column", COLUMNS + _bounded(),
                         ids=[f"{t}.{c.name}" for t, c in COLUMNS] + [f"{t}.{n}" for t, n, _ in BOUNDED])
def test_a_difference_kept_as_json_is_what_ovs_makes_of_the_column_at_its_default(table, column):
    """update2's difference of a column at its default (ovs-vswitchd's ofport on a new interface): the Datum made on
    first read is ovs's ``Datum.default(type).diff(difference)``, its reading ``to_python``'s, for every value taken."""
    type_ = column.type
    take = lazy.diff_maker(type_, datum_parser(type_))
    if take is None:
        return
    taken = 0
    for value in _values(type_, random.Random(table + column.name)) + [-1, 1, 65279, 65280, 2 ** 31, -(2 ** 63)]:
        got = take(json.loads(json.dumps(value)))
        if got is None:
            continue
        taken += 1
        difference = ovs.db.data.Datum.from_json(type_, json.loads(json.dumps(value)))
        theirs = ovs.db.data.Datum.default(type_).diff(difference)
        assert _read(got, type_) == theirs.to_python(lambda v, base: v) and lazy.raw(got) is not None, value
        assert got == theirs and got.to_json() == theirs.to_json() and lazy.raw(got) is None, value
    assert taken or (table, column.name) != ("Interface", "ofport")


def test_an_ofport_set_on_a_new_interface_reads_as_ovs_and_follows_its_changes():
    plain, paced = both()
    new = {"Interface": {U[5]: {"insert": {"name": "a"}}, U[6]: {"insert": {"name": "b", "ofport": 3}}}}
    for change in [new, {"Interface": {U[5]: {"modify": {"ofport": -1}}, U[6]: {"modify": {"ofport": 4}}}},
                   {"Interface": {U[5]: {"modify": {"ofport": 7}}}}, {"Interface": {U[5]: {"modify": {"ofport": 7}}}}]:
        for recorded in (plain, paced):
            recorded.feed(change)
        rows = {u: paced.idl.tables["Interface"].rows[uuid.UUID(u)] for u in (U[5], U[6])}
        assert {u: column_value(row, "ofport") for u, row in rows.items()} == \
            {u: plain.idl.tables["Interface"].rows[uuid.UUID(u)].ofport for u in (U[5], U[6])}
        assert paced.data() == plain.data() and paced.notices == plain.notices
    assert column_value(rows[U[5]], "ofport") == [7] and column_value(rows[U[6]], "ofport") == [4]


def test_new_ports_read_by_the_reporter_then_deleted_in_slices_make_no_atoms(monkeypatch):
    """The intake of 1,000 new ports, ovs-vswitchd's ofport on them, and their delete (in slices: the plan reads each
    deleted port's interfaces, ovsdb/idl/slices.py) read the new rows' columns from their JSON: no Datum's values made
    (each would be a parse deferred, not saved); the reporter sees the ports come and go."""
    from tests.unit.test_ovsdb_intake_work import Session, _message, _uuid, _world

    first, insert, ofport = _world(1000)
    session = Session(first)  # (the first copy's rows: the bridge's name read through getattr, its atoms made once)
    made = []
    real = lazy.LazyDatum.__getattr__
    monkeypatch.setattr(lazy.LazyDatum, "__getattr__", lambda datum, name: made.append(name) or real(datum, name))
    session.take(insert)
    session.take(ofport)
    assert len(session.sink.updates[-1].ports) == 1000 and made == []
    bridge = _uuid(2, 0)
    delete = {"Interface": {_uuid(3, i): {"delete": None} for i in range(1000)},
              "Port": {_uuid(4, i): {"delete": None} for i in range(1000)},
              "Bridge": {bridge: {"modify": {"ports": ["set", [["uuid", _uuid(4, i)] for i in range(1000)]]}}}}
    session.take(_message(delete))
    assert session.sink.updates[-1].ports == () and made == []


def _unread(recorded) -> dict:
    """``Recorded.data``, a column still as its JSON read without making its values (``Recorded.data`` makes them all:
    every later change would then meet parsed values only)."""
    def as_json(datum):
        return (datum.parse(datum.json) if lazy.raw(datum) is not None else datum).to_json()
    return {name: {str(u): {column: as_json(datum) for column, datum in dict.items(row._data)}
                   for u, row in table.rows.items()} for name, table in recorded.idl.tables.items()}


@pytest.mark.parametrize("version", [ovs.db.idl.OVSDB_UPDATE2, ovs.db.idl.OVSDB_UPDATE3, ovs.db.idl.OVSDB_UPDATE])
@pytest.mark.parametrize("seed", range(6))
def test_random_changes_of_columns_never_read_give_what_ovs_gives(seed, version, monkeypatch):
    """tests/unit/test_ovsdb_idl_parse.py's random sequences of updates, the replica's columns never read between
    them: each change (a set's or map's difference, a scalar replaced, the old protocol's whole row) meets columns
    still as their JSON, and gives ovs's rows and notifications."""
    from tests.unit.test_ovsdb_idl_parse import RandomUpdates

    plain, paced = both()
    updates = RandomUpdates(random.Random(seed), plain.idl.tables)
    made, real = [], lazy.LazyDatum.__getattr__
    monkeypatch.setattr(lazy.LazyDatum, "__getattr__", lambda datum, name: made.append(name) or real(datum, name))
    for _ in range(40):
        if version == ovs.db.idl.OVSDB_UPDATE:
            update = updates.old_protocol(plain.idl.tables)
        else:
            update = updates.update(lambda table, u: uuid.UUID(u) in plain.idl.tables[table].rows)
        for recorded in (plain, paced):
            recorded.feed(update, version)
        assert paced.idl.refused is None
        assert _unread(paced) == plain.data() and paced.notices == plain.notices
    assert made  # changes met columns still as their JSON (each made into values by the change itself)
    assert any(lazy.raw(datum) is not None for table in paced.idl.tables.values() for row in table.rows.values()
               for datum in dict.values(row._data))
