"""ovsdb/idl/datums.py ``datum_parser``: for every column of the real Open_vSwitch schema and every value, valid or
malformed, the same Datum as ovs's ``Datum.from_json`` (the same atoms, types and order) or the same error (type and
message); plainly valid values of Canopy's columns never reach ovs's parser (else the fast path is not taken); and
ovsdb/idl/rows.py's conversion of a datum to Python (``column_value``'s) gives what ovs's ``Datum.to_python`` gives."""

import json
import uuid
from pathlib import Path
from types import SimpleNamespace

import ovs.db.data
import ovs.db.error
import ovs.db.schema
import pytest

from ovsdb.idl.datums import datum_parser, uuid_of
from ovsdb.idl.rows import _reader

SCHEMA = ovs.db.schema.DbSchema.from_json(json.loads(Path("/usr/share/openvswitch/vswitch.ovsschema").read_text()))
COLUMNS = [(table.name, column) for table in SCHEMA.tables.values() for column in table.columns.values()]
U1, U2 = str(uuid.UUID(int=1)), str(uuid.UUID(int=2))

MALFORMED_AND_EDGE = [
    None, {}, [], "", "x", 0, -1, 7, 2 ** 70, True, False, 1.0, 1.5, -0.0,
    ["set"], ["set", []], ["set", "a"], ["set", [], []], ["set", ["a"]], ["set", ["a", "a"]], ["set", ["a", "b"]],
    ["set", [1]], ["set", [1, 1]], ["set", [1, 2]], ["set", [True]], ["set", [1.0]], ["set", [None]],
    ["set", [["uuid", U1]]], ["set", [["uuid", U1], ["uuid", U1]]], ["set", [["uuid", U1], ["uuid", U2]]],
    ["set", (["uuid", U1],)], ("set", []),
    ["uuid", U1], ["uuid", U1.upper()], ["uuid", "not-a-uuid"], ["uuid", 5], ["uuid", U1, 1], ["uuid"],
    ["uuid", U1 + "0"], ["uuid", "{%s}" % U1], ["named-uuid", "row1"], ["UUID", U1],
    ["map", []], ["map", [["a", "b"]]], ["map", [["a", "b"], ["c", "d"]]], ["map", [["a", "b"], ["a", "c"]]],
    ["map", [["a"]]], ["map", [["a", "b", "c"]]], ["map", [("a", "b")]], ["map", [["a", 1]]], ["map", [[1, "b"]]],
    ["map", [[1, 2]]], ["map", [["a", None]]], ["map", "x"], ["map", [["a", "b"]], 1], ["map"], ["map", {}],
    ["map", [["uuid", U1]]], ["map", [[["uuid", U1], ["uuid", U2]]]], ["map", [["a", ["uuid", U1]]]],
    ["map", [[1, ["uuid", U1]]]], ["map", [["a", True]]], ["map", [[True, "b"]]], ["map", [["a", 1.5]]],
    "x" * 300, ["set", ["x" * 300]], ["map", [["k", "x" * 300]]], 65280, 65279, 0, -2 ** 63, 2 ** 63,
    "up", "down", "internal", "vxlan", "secure", "standalone", "OpenFlow13", ["set", ["OpenFlow13", "OpenFlow14"]],
]


def to_python(datum, uuid_to_row):
    """``datum.to_python(uuid_to_row)`` through the reader ``column_value`` keeps for the datum's type
    (ovsdb/idl/rows.py ``_reader``), given what a reader takes of an IDL row: its ``_uuid_to_row``."""
    return _reader(datum.type)(datum, SimpleNamespace(_uuid_to_row=uuid_to_row))


def per_type_values(type_) -> list:
    """Values at and just outside the type's own bounds: its size, its integers' range, its strings' lengths."""
    key = type_.key
    out = []
    atom = {"string": "s", "integer": 1, "boolean": True, "real": 1.5, "uuid": ["uuid", U1]}[key.type.to_string()]
    for n in (type_.n_min, type_.n_max, type_.n_max + 1):
        if n <= 4:
            items = [atom if key.type.to_string() != "string" else f"s{i}" for i in range(n)]
            if key.type.to_string() == "integer":
                items = list(range(n))
            out.append(["set", items])
    for bound in (key.min, key.max):
        if isinstance(bound, int):
            out += [bound - 1, bound, bound + 1, ["set", [bound + 1]], ["map", [[bound + 1, "v"]]]]
    for length in (key.min_length, key.max_length):
        if length < 1000:
            out += ["x" * max(length - 1, 0), "x" * length, "x" * (length + 1), ["map", [["x" * (length + 1), "v"]]]]
    if key.enum is not None:
        out += [atom.value for atom in key.enum.values] + [["set", [atom.value for atom in key.enum.values]]]
    return out


def outcome(parse, type_, value):
    """What parsing gives: ("datum", its type, its atoms with their Python types, in order) or ("error", ...)."""
    try:
        datum = parse(type_, json.loads(json.dumps(value)))
    except ovs.db.error.Error as e:
        return ("error", type(e), str(e), e.json)
    except Exception as e:  # noqa: BLE001 (anything ovs raises must be raised the same)
        return ("exception", type(e), str(e))
    return ("datum", datum.type is type_, [(k.type, k.value, type(k.value), None if v is None else
                                            (v.type, v.value, type(v.value))) for k, v in datum.values.items()])


@pytest.mark.parametrize("table,column", COLUMNS, ids=[f"{t}.{c.name}" for t, c in COLUMNS])
def test_every_column_parses_every_value_as_ovs_does_errors_included(table, column):
    parser = datum_parser(column.type)
    for value in MALFORMED_AND_EDGE + per_type_values(column.type):
        ours = outcome(lambda _type, js: parser(js), column.type, value)
        theirs = outcome(ovs.db.data.Datum.from_json, column.type, value)
        assert ours == theirs, (table, column.name, value)


CANOPY_ROWS = [  # what one new port of evpn_routes' announce looks like in an update2 "insert"
    ("Interface", {"name": "vp1", "type": "", "ofport": ["set", []], "ofport_request": 10, "admin_state": ["set", []],
                   "external_ids": ["map", [["iface-id", "vport-1"], ["attached-mac", "02:00:00:00:00:01"]]],
                   "mac_in_use": "02:00:00:00:00:01", "error": ["set", []]}),
    ("Port", {"name": "vp1", "interfaces": ["uuid", U1], "external_ids": ["map", []], "tag": ["set", []],
              "trunks": ["set", [1, 2]]}),
    ("Bridge", {"name": "br-int", "ports": ["set", [["uuid", U1], ["uuid", U2]]], "fail_mode": "secure",
                "protocols": ["set", ["OpenFlow13", "OpenFlow14"]],
                "datapath_id": "0000000000000005", "controller": ["uuid", U2]}),
]


def test_plainly_valid_values_of_canopys_columns_do_not_reach_ovs_parser(monkeypatch):
    calls = []
    real = ovs.db.data.Datum.from_json
    expected = [real(SCHEMA.tables[table].columns[name].type, value).to_json()
                for table, row in CANOPY_ROWS for name, value in row.items()]
    monkeypatch.setattr(ovs.db.data.Datum, "from_json", staticmethod(lambda *a, **k: calls.append(a) or real(*a, **k)))
    parsed = [datum_parser(SCHEMA.tables[table].columns[name].type)(value).to_json()
              for table, row in CANOPY_ROWS for name, value in row.items()]
    assert parsed == expected
    assert calls == []


def test_a_value_it_does_not_take_is_left_to_ovs_and_rejected_there(monkeypatch):
    calls = []
    real = ovs.db.data.Datum.from_json
    monkeypatch.setattr(ovs.db.data.Datum, "from_json", staticmethod(lambda *a, **k: calls.append(a) or real(*a, **k)))
    column = SCHEMA.tables["Interface"].columns["ofport_request"]  # an optional integer, 1 to 65279
    parse = datum_parser(column.type)
    bad = (0, 65280, "1", 1.5, ["set", [1, 1]], ["set", [1, 2]], ["set", 1], ["uuid", U1])
    for value in bad:
        with pytest.raises(ovs.db.error.Error):
            parse(value)
    assert [value for _type, value in calls] == list(bad)
    assert parse(True).values == real(column.type, True).values  # what ovs takes (bool is an int to it), taken


@pytest.mark.parametrize("table,column", COLUMNS, ids=[f"{t}.{c.name}" for t, c in COLUMNS])
def test_a_datum_of_every_column_reads_as_ovs_to_python_gives_it(table, column):
    """ovsdb/idl/rows.py's conversion (``column_value``'s: ``to_python`` here) against ovs's ``Datum.to_python``."""
    rows = {uuid.UUID(U1): "row 1"}  # a reference resolves to a stand-in row; U2 to none (a dangling one)

    def uuid_to_row(value, base):
        return rows.get(value) if base.ref_table else value

    datums = [ovs.db.data.Datum.default(column.type)]
    for value in MALFORMED_AND_EDGE + per_type_values(column.type):
        try:
            datums.append(ovs.db.data.Datum.from_json(column.type, value))
        except ovs.db.error.Error:
            pass
    for datum in datums:
        theirs = datum.to_python(uuid_to_row)
        ours = to_python(datum, uuid_to_row)
        assert (ours, type(ours)) == (theirs, type(theirs)), (table, column.name, datum.to_json())


def test_a_long_reference_set_paced_by_longsets_takes_the_fast_path_and_still_pauses(monkeypatch):
    """A bridge's 10,000 new ports arrive as a ``PacedArray`` (ovsdb/longsets.py, a list's subclass): parsed here,
    not atom by atom in ovs's parser, to the same Datum, and its iteration still ticks the pacer."""
    from ovsdb.longsets import ATOMS_PER_TICK, LONG, PacedArray

    class Ticks:
        n = 0

        def tick(self, units=1):
            self.n += units

    refs = [["uuid", str(uuid.UUID(int=k + 1))] for k in range(LONG + 10)]
    column = SCHEMA.tables["Bridge"].columns["ports"]
    expected = ovs.db.data.Datum.from_json(column.type, ["set", refs])
    calls, ticks = [], Ticks()
    real = ovs.db.data.Datum.from_json
    monkeypatch.setattr(ovs.db.data.Datum, "from_json", staticmethod(lambda *a, **k: calls.append(a) or real(*a, **k)))
    parsed = datum_parser(column.type)(["set", PacedArray(refs, ticks)])
    assert parsed.to_json() == expected.to_json()
    assert calls == []
    assert ticks.n == len(refs) // ATOMS_PER_TICK


def test_a_uuid_is_made_as_uuid_makes_it_without_its_generic_parser(monkeypatch):
    """``uuid_of`` (the references of every update, each row's uuid in ovsdb/idl/rowloop.py): the same uuid.UUID as
    ``uuid.UUID(text)`` (number, hash, text, is_safe, pickled), without ``UUID.__init__``; a text ovs's pattern takes
    that UUID refuses (a final newline: the pattern's "$") is refused as UUID refuses it."""
    import pickle

    texts = [str(uuid.uuid4()) for _ in range(20)] + [U1, U1.upper(), "0123ABCD-ef01-4567-89ab-CDEF01234567"]
    expected = [uuid.UUID(text) for text in texts]
    made = []
    real = uuid.UUID.__init__
    monkeypatch.setattr(uuid.UUID, "__init__", lambda self, *a, **k: made.append(a) or real(self, *a, **k))
    ours = [uuid_of(text) for text in texts]
    assert made == []
    for mine, theirs in zip(ours, expected):
        assert type(mine) is uuid.UUID and mine == theirs and hash(mine) == hash(theirs)
        assert (str(mine), repr(mine), mine.int, mine.is_safe) == (str(theirs), repr(theirs), theirs.int,
                                                                   theirs.is_safe)
        assert pickle.loads(pickle.dumps(mine)) == theirs
    with pytest.raises(ValueError):
        uuid_of(U1 + "\n")
    column = SCHEMA.tables["Port"].columns["interfaces"]
    for value in (["uuid", U1 + "\n"], ["set", [["uuid", U1], ["uuid", U2 + "\n"]]]):  # ValueError, as ovs raises
        assert outcome(lambda _type, js: datum_parser(column.type)(js), column.type, value) == \
            outcome(ovs.db.data.Datum.from_json, column.type, value)


def test_a_set_of_references_looks_each_atom_up_once(monkeypatch):
    """A bridge's ``ports`` of 10,000 references: each atom hashed once (ovs: twice, an Atom's hash and a uuid's under
    it, both in Python), duplicates still left to ovs to refuse."""
    column = SCHEMA.tables["Bridge"].columns["ports"]
    refs = ["set", [["uuid", str(uuid.UUID(int=k + 1))] for k in range(50)]]
    expected = ovs.db.data.Datum.from_json(column.type, refs).to_json()
    hashed = []
    real = ovs.db.data.Atom.__hash__
    monkeypatch.setattr(ovs.db.data.Atom, "__hash__", lambda atom: hashed.append(atom) or real(atom))
    parse = datum_parser(column.type)
    assert parse(refs).to_json() == expected
    assert len(hashed) == 50
    with pytest.raises(ovs.db.error.Error):
        parse(["set", [["uuid", U1], ["uuid", U2], ["uuid", U1]]])


def random_value(rng, type_) -> object:
    """A column's value built at random from its type's atoms, duplicates, atoms just outside its bounds and atoms of
    other kinds (a uuid's text with a final newline, which ovs's pattern takes and UUID refuses, among them)."""
    def atom(base):
        good = {"string": lambda: rng.choice(["a", "b", "up", "vxlan", "x" * 300, ""]),
                "integer": lambda: rng.choice([0, 1, 2, 4095, 4096, -1, 65279, 2 ** 63]),
                "boolean": lambda: rng.choice([True, False]),
                "real": lambda: rng.choice([1.5, 0.0, 2]),
                "uuid": lambda: ["uuid", rng.choice([U1, U2])]}[base.type.to_string()]
        bad = [lambda: ["uuid", rng.choice([U1, U2]) + "\n"], lambda: ["uuid", U1.upper()], lambda: ["uuid", U1[1:]],
               lambda: rng.choice([None, 1.5, "s", 3, True, ["set", []], ["uuid"]])]
        return good() if rng.random() < 0.8 else rng.choice(bad)()

    n = rng.choice([0, 1, 2, 3, 5])
    if type_.is_map():
        pairs = [[atom(type_.key), atom(type_.value)] for _ in range(n)]
        if pairs and rng.random() < 0.4:
            pairs.insert(rng.randrange(len(pairs) + 1), [pairs[0][0], atom(type_.value)])  # a duplicate key
        return ["map", pairs]
    if rng.random() < 0.3:
        return atom(type_.key)
    elements = [atom(type_.key) for _ in range(n)]
    if elements and rng.random() < 0.4:
        elements.insert(rng.randrange(len(elements) + 1), elements[0])  # a duplicate
    return ["set", elements]


@pytest.mark.parametrize("seed", range(4))
def test_random_values_of_every_column_parse_as_ovs_parses_them_errors_included(seed):
    """Sets and maps mixing good atoms, duplicates and bad atoms, in any order: the same Datum or the same error as
    ovs (ovs's error is the first thing wrong in its order: a duplicate before a bad uuid is "set contains
    duplicate")."""
    import random

    rng = random.Random(seed)
    for table, column in COLUMNS:
        parser = datum_parser(column.type)
        for _ in range(40):
            value = random_value(rng, column.type)
            ours = outcome(lambda _type, js: parser(js), column.type, value)
            theirs = outcome(ovs.db.data.Datum.from_json, column.type, value)
            assert ours == theirs, (table, column.name, value)


UUID_SET_COLUMNS = [(table, column) for table, column in COLUMNS
                    if column.type.key.type.to_string() == "uuid" and column.type.value is None
                    and column.type.n_max > 1]


@pytest.mark.parametrize("seed", range(2))
def test_long_sets_of_uuids_read_in_c_loops_parse_as_ovs_parses_them_errors_included(seed):
    """Sets of ``MANY_UUIDS`` or more uuids (read in C loops: ``_uuid_set``), good ones, with a duplicate, a bad atom
    (anywhere, in or after the first run of ``UUID_RUN``), past the column's size: the same Datum (atoms, types,
    order) or the same error as ovs."""
    import random

    from ovsdb.idl import datums

    rng = random.Random(seed)
    bad = [["uuid", U1 + "\n"], ["uuid", U1.upper()], ["uuid", U1[1:]], ["uuid"], ["named-uuid", "x"], "s", 3, None,
           ["uuid", 5], ["uuid", U1, 1], ("uuid", U1)]
    for table, column in UUID_SET_COLUMNS:
        parser = datum_parser(column.type)
        for _ in range(6):
            n = rng.choice([datums.MANY_UUIDS, 40, datums.UUID_RUN + 3])
            elements = [["uuid", str(uuid.UUID(int=rng.getrandbits(128)))] for _ in range(n)]
            shape = rng.choice(["good", "duplicate", "bad"])
            if shape == "duplicate":
                elements.insert(rng.randrange(n + 1), elements[rng.randrange(n)])
            elif shape == "bad":
                elements.insert(rng.choice([0, n // 2, n]), rng.choice(bad))
            value = ["set", elements]
            ours = outcome(lambda _type, js: parser(js), column.type, value)
            theirs = outcome(ovs.db.data.Datum.from_json, column.type, value)
            assert ours == theirs, (table, column.name, shape)


def test_a_set_of_10000_uuids_is_read_in_at_most_15_bytecodes_an_element():
    """A big delete's (or insert's) bridge ``ports`` difference, 10,000 references, read in C loops: at most 15
    bytecodes an element (~12 here: each Atom's and uuid's ``__hash__``; element by element, main at b287fd1: 1.39 M,
    ~139: the reader, ``Atom.__init__`` and ``uuid_of`` calls per element), the same Datum as ovs's."""
    from tests.bytecodes import opcodes

    column = SCHEMA.tables["Bridge"].columns["ports"]
    refs = ["set", [["uuid", str(uuid.uuid4())] for _ in range(10000)]]
    parse, parsed = datum_parser(column.type), []
    counted = opcodes(lambda: parsed.append(parse(refs)))
    assert parsed[0].to_json() == ovs.db.data.Datum.from_json(column.type, refs).to_json()
    assert counted <= 15 * 10000, counted


@pytest.mark.parametrize("first", [["uuid"], {"uuid": U1}, [], {}])
def test_a_long_uuid_sets_element_whose_tag_is_an_array_or_object_gets_ovs_error(first):
    """An element ``[<array or object>, text]`` in a set read in C loops (its tags gathered in a set: unhashable there),
    first, in the middle, last, in the first run or after it: ovs's own error (what ``_Idl__row_update`` turns into a
    refusal naming the table, row and column), not Python's TypeError."""
    from ovsdb.idl import datums

    column = SCHEMA.tables["Bridge"].columns["ports"]
    parser = datum_parser(column.type)
    for n in (datums.MANY_UUIDS, datums.UUID_RUN + 3):
        for at in (0, n // 2, n):
            elements = [["uuid", str(uuid.UUID(int=i + 1))] for i in range(n)]
            elements.insert(at, [first, U1])
            value = ["set", elements]
            ours = outcome(lambda _type, js: parser(js), column.type, value)
            theirs = outcome(ovs.db.data.Datum.from_json, column.type, value)
            assert ours == theirs and theirs[0] == "error", (n, at, ours)


def test_a_long_uuid_sets_malformed_element_refuses_the_update_naming_table_row_and_column():
    from ovsdb.idl import datums
    from tests.unit.test_ovsdb_idl_parse import U, UPDATES, Recorded, idl

    tracking = Recorded(idl._TrackingIdl)
    tracking.feed(UPDATES[0])
    ports = [["uuid", str(uuid.UUID(int=1000 + i))] for i in range(datums.MANY_UUIDS)] + [[["uuid"], U[3]]]
    tracking.feed({"Bridge": {U[1]: {"modify": {"ports": ["set", ports]}}}})
    refused = tracking.idl.refused
    assert "Bridge row %s: column ports: " % U[1] in refused and "syntax error" in refused, refused
