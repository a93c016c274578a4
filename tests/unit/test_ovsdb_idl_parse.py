"""ovsdb/idl/'s cheaper paths through the pinned ``ovs`` IDL give what ovs's own give.

- ``_PacedIdl``'s ``__add_default``, ``__row_update`` and ``__apply_diff`` (an update's rows parsed): the same rows,
  the same committed data, the same notifications (their old values too) as a plain ``ovs.db.idl.Idl`` fed the same
  updates, of every shape (``RandomUpdates``);
- ovsdb/idl/rowloop.py's fast path for a row only deleted: the same rows and notifications as a plain Idl, the same
  changes and name index as the tracking Idl given ovs's own loop;
- ``column_value`` (a column read from its committed datum): the same value as ``getattr`` for every column Canopy
  replicates from a VRS, without converting the datum back and forth.

The real Open_vSwitch schema (Open vSwitch's vswitch.ovsschema), Canopy's columns (ovsdb/vrs.py ``COLUMNS``); the
updates are fed to the IDLs' update parser directly (what ``Idl.run`` does with a message): no connection.
"""

import json
import uuid
from pathlib import Path

import ovs.db.data
import ovs.db.idl
import ovs.db.schema
import ovs.db.types
import ovs.ovsuuid
import pytest

from controller.pacer import Pacer
from ovsdb import idl, vrs

SCHEMA = json.loads(Path("/usr/share/openvswitch/vswitch.ovsschema").read_text())
U = [str(uuid.UUID(int=i + 1)) for i in range(8)]  # root, bridge, controller, port 1-2, interface 1-3


class Recorded:
    """An IDL of each kind with its notifications recorded as comparable tuples."""

    def __init__(self, kind):
        helper = idl.schema_helper(SCHEMA, vrs.COLUMNS)
        extra = {"named": ("Port", "Interface")} if issubclass(kind, idl._TrackingIdl) else {}
        self.idl = kind("tcp:127.0.0.1:1", helper, leader_only=False, **extra)
        self.notices = []
        real = self.idl.notify

        def notify(event, row, updates=None):  # the old values too (a copy: ovs's diff changes a datum in place)
            self.notices.append((event, row._table.name, str(row.uuid), None if updates is None else
                                 {column: datum.to_json() for column, datum in updates.__dict__["_data"].items()}))
            real(event, row, updates)
        self.idl.notify = notify

    def feed(self, update, version=ovs.db.idl.OVSDB_UPDATE2):
        self.idl._Idl__parse_update(json.loads(json.dumps(update)), version)  # each IDL its own copy (ovs adds to it)

    def data(self):
        """Every row's committed data as JSON, by table and uuid."""
        return {name: {str(u): {column: datum.to_json() for column, datum in dict.items(row._data)}
                       for u, row in table.rows.items()} for name, table in self.idl.tables.items()}


def both():
    return Recorded(ovs.db.idl.Idl), Recorded(idl._TrackingIdl)


UPDATES = [
    # the first copy: columns at their default left out (update2), a map, an optional integer, references
    {"Open_vSwitch": {U[0]: {"initial": {"bridges": ["uuid", U[1]], "external_ids": [
        "map", [["system-id", "kvm1"], ["canopy-vtep-ip", "10.0.0.5"]]]}}},
     "Bridge": {U[1]: {"initial": {"name": "br-int", "ports": ["set", [["uuid", U[3]], ["uuid", U[4]]]],
                                   "controller": ["uuid", U[2]], "datapath_id": "0000000000000005"}}},
     "Controller": {U[2]: {"initial": {"target": "tcp:10.0.0.1:6653", "is_connected": True}}},
     "Port": {U[3]: {"initial": {"name": "p1", "interfaces": ["uuid", U[5]]}},
              U[4]: {"initial": {"name": "p2", "interfaces": ["set", [["uuid", U[6]], ["uuid", U[7]]]]}}},
     "Interface": {U[5]: {"initial": {"name": "p1", "ofport": 7, "external_ids": ["map", [["iface-id", "v1"]]]}},
                   U[6]: {"initial": {"name": "p2a", "ofport": ["set", []], "mac_in_use": "02:00:00:00:00:02"}},
                   U[7]: {"initial": {"name": "p2b", "type": "internal", "options": ["map", [["k", "v"]]]}}}},
    # a row whose every column is at its default
    {"Interface": {str(uuid.UUID(int=99)): {"insert": {}}}},
    # an insert naming its defaults explicitly, and an unknown column (skipped; a value of the wrong type refuses the
    # update: tests/unit/test_ovsdb_hostile_updates.py)
    {"Interface": {str(uuid.UUID(int=100)): {"insert": {"name": "", "ofport": ["set", []], "nonesuch": 1,
                                                        "external_ids": ["map", []]}}}},
    # a change (the difference), a delete
    {"Interface": {U[5]: {"modify": {"ofport": 8, "external_ids": ["map", [["iface-id", "v1"], ["x", "y"]]]}},
                   U[7]: {"delete": None}},
     "Port": {U[4]: {"modify": {"interfaces": ["uuid", U[7]]}}}},
]


def test_an_update_is_parsed_into_the_same_rows_data_and_notifications_as_ovs_parses_it():
    ours_and_ovs = both()
    for update in UPDATES:
        for recorded in ours_and_ovs:
            recorded.feed(update)
        plain, paced = ours_and_ovs
        assert paced.data() == plain.data()
        assert paced.notices == plain.notices
    plain, paced = ours_and_ovs
    assert str(uuid.UUID(int=99)) in paced.data()["Interface"] and len(paced.notices) == 13


def test_the_old_protocol_update_is_parsed_the_same_too():
    ours_and_ovs = both()
    interface = {"name": "p1", "ofport": 7, "external_ids": ["map", []], "mac_in_use": ["set", []], "type": "",
                 "options": ["map", []]}  # the old protocol's "new" holds every column
    old = {"Interface": {U[5]: {"new": interface}},
           "Port": {U[3]: {"new": {"name": "p1", "interfaces": ["uuid", U[5]], "external_ids": ["map", []]}}}}
    change = {"Interface": {U[5]: {"old": {"ofport": 7}, "new": {**interface, "ofport": 9}}}}
    for update in (old, change):
        for recorded in ours_and_ovs:
            recorded.feed(update, ovs.db.idl.OVSDB_UPDATE)
    plain, paced = ours_and_ovs
    assert paced.data() == plain.data() and paced.notices == plain.notices


def test_column_value_reads_every_column_as_getattr_does_without_converting_twice(monkeypatch):
    """Every column of every row, sets of rows too (read through the table's rows directly: ovsdb/idl/rows.py
    ``_rows_reader``), a reference to a row the replica lacks dropped as ovs drops it; ``column_values`` the same."""
    _, paced = both()
    for update in UPDATES + [{"Port": {U[3]: {"modify": {"interfaces": ["uuid", str(uuid.UUID(int=555))]}}}}]:
        paced.feed(update)
    rows = [(name, row) for name, table in paced.idl.tables.items() for row in table.rows.values()]
    assert len(rows) == 9
    expected = {(name, str(row.uuid), column): getattr(row, column)
                for name, row in rows for column in paced.idl.tables[name].columns}
    assert any(isinstance(v, dict) and v for v in expected.values())  # maps, sets of rows, scalars, defaults
    assert any(isinstance(v, list) and v and isinstance(v[0], ovs.db.idl.Row) for v in expected.values())
    converted = []
    real = ovs.db.data.Datum.from_python
    monkeypatch.setattr(ovs.db.data.Datum, "from_python",
                        staticmethod(lambda *args: converted.append(args) or real(*args)))
    got = {(name, str(row.uuid), column): idl.column_value(row, column)
           for name, row in rows for column in paced.idl.tables[name].columns}
    assert got == expected
    assert {key[1]: [str(row.uuid) for row in got[key]] for key in got if key[0] == "Port" and key[2] == "interfaces"} \
        == {U[3]: [U[5]], U[4]: [U[6]]}  # p1's reference to a row the replica lacks: dropped
    assert {(name, str(row.uuid), column): value for name, row in rows for column, value in
            zip(paced.idl.tables[name].columns, idl.column_values(row, tuple(paced.idl.tables[name].columns)))} == got
    assert converted == []  # getattr converts a set or a map back into a Datum first (ovs 4.0.0)
    row = rows[0][1]
    assert idl.column_value(row, "nonesuch", "gone") == "gone"


def test_column_value_of_a_row_this_client_is_changing_or_of_a_stand_in_is_getattr():
    _, paced = both()
    paced.feed(UPDATES[0])
    iface = paced.idl.tables["Interface"].rows[uuid.UUID(U[5])]
    txn = ovs.db.idl.Transaction(paced.idl)
    iface.name = "renamed"  # this client's own write, not committed
    assert idl.column_value(iface, "name") == "renamed" == iface.name
    txn.abort()

    class StandIn:
        name = "plain"
    assert idl.column_value(StandIn(), "name") == "plain"
    assert idl.column_value(StandIn(), "ofport", [5]) == [5]


@pytest.mark.parametrize("method", ["_Idl__add_default", "_Idl__row_update", "_Idl__apply_diff"])
def test_the_methods_replaced_are_ovs_private_methods_of_that_name(method):
    """HACK (ovs 4.0.0): ovsdb/idl/paced.py's _PacedIdl replaces these; they must still be what ovs calls."""
    import inspect

    assert hasattr(ovs.db.idl.Idl, method)
    source = inspect.getsource(ovs.db.idl.Idl._Idl__process_update2)
    assert "self.%s(" % method.replace("_Idl", "") in source


def test_the_old_protocols_row_update_replaced_is_what_its_loop_calls():
    """HACK (ovs 4.0.0): _PacedIdl replaces __process_update (to note a copy a delete leaves below a stacked row)."""
    import inspect

    assert "self.__process_update(table, uuid, old, new)" in inspect.getsource(ovs.db.idl.Idl._Idl__do_parse_update)


def test_the_table_clearing_replaced_is_what_run_calls_on_a_monitors_answer():
    """HACK (ovs 4.0.0): ovsdb/idl/paced.py's _TrackingIdl replaces __clear (run() calls it before parsing the answer
    to a monitor request), announcing each row deleted first."""
    import inspect

    assert hasattr(ovs.db.idl.Idl, "_Idl__clear")
    assert "self.__clear()" in inspect.getsource(ovs.db.idl.Idl.run)


def test_the_update_parser_replaced_only_runs_do_parse_update_and_logs_its_error():
    """HACK (ovs 4.0.0): _PacedIdl._Idl__parse_update replaces ovs's whole __parse_update, calling __do_parse_update
    itself (to refuse a malformed update, ovsdb/idl/refusals.py): ovs's must do nothing more than that."""
    import inspect

    lines = [line.strip() for line in inspect.getsource(ovs.db.idl.Idl._Idl__parse_update).splitlines()[1:]]
    assert [line for line in lines if line] == [
        "try:", "if not tables:", "self.__do_parse_update(update, version, self.tables)", "else:",
        "self.__do_parse_update(update, version, tables)", "except error.Error as e:",
        'vlog.err("%s: error parsing update: %s"', "% (self._session.get_name(), e))"]


def test_new_rows_are_compared_with_one_default_per_column_not_one_per_row_and_column(monkeypatch):
    _, paced = both()
    made = []
    real = ovs.db.data.Datum.default
    monkeypatch.setattr(ovs.db.data.Datum, "default", staticmethod(lambda type_: made.append(type_) or real(type_)))
    paced.feed({"Interface": {str(uuid.UUID(int=1000 + i)): {"insert": {"name": f"p{i}", "external_ids": [
        "map", [["iface-id", f"v{i}"]]]}} for i in range(200)}})
    assert len(paced.idl.tables["Interface"].rows) == 200
    assert len(made) <= len(vrs.COLUMNS["Interface"])  # ovs 4.0.0 makes one per row and column it compares


def test_changes_to_columns_at_their_default_make_no_default_per_row_and_give_what_ovs_gives(monkeypatch):
    """ovs-vswitchd sets ofport -1 on 10,000 new ports it cannot open: a modify of a column each row holds at its
    default (ovs 4.0.0 makes three default Datums per row and column for it)."""
    ours_and_ovs = both()
    rows = [str(uuid.UUID(int=1000 + i)) for i in range(200)]
    for recorded in ours_and_ovs:
        recorded.feed({"Interface": {u: {"insert": {"name": f"p{i}"}} for i, u in enumerate(rows)}})
    change = {"Interface": {u: {"modify": {"ofport": -1, "external_ids": ["map", [["iface-id", f"v{i}"]]]}}
                            for i, u in enumerate(rows)}}
    plain, paced = ours_and_ovs
    plain.feed(change)
    made = []
    real = ovs.db.data.Datum.default
    monkeypatch.setattr(ovs.db.data.Datum, "default", staticmethod(lambda type_: made.append(type_) or real(type_)))
    paced.feed(change)
    assert paced.data() == plain.data() and paced.notices == plain.notices
    assert paced.idl.tables["Interface"].rows[uuid.UUID(rows[7])].ofport == [-1]
    assert len(made) <= 2  # one per column changed


def test_column_value_of_the_old_values_notify_is_given_is_getattr():
    """``notify``'s ``updates`` row holds only the columns that changed (a plain dict, not a ColumnDefaultDict): a
    column that did not change is no default there, and ``getattr`` gives the caller's default for it."""
    _, paced = both()
    paced.feed(UPDATES[0])
    olds = []
    real = paced.idl.notify

    def notify(event, row, updates=None):
        olds.append(updates)
        real(event, row, updates)
    paced.idl.notify = notify
    paced.feed({"Interface": {U[5]: {"modify": {"ofport": 8}}}})
    old = olds[-1]
    assert idl.column_value(old, "ofport") == getattr(old, "ofport") == [7]
    for column in ("name", "external_ids", "mac_in_use"):
        assert idl.column_value(old, column, "unchanged") == getattr(old, column, "unchanged") == "unchanged"


class _OvsLoopIdl(idl._TrackingIdl):
    """Canopy's tracking IDL applying update2/update3 rows by ovs's own loop (no fast path for deletes)."""

    _Idl__do_parse_update = ovs.db.idl.Idl._Idl__do_parse_update


def tracked(recorded) -> tuple:
    """What the replica's reader sees of a tracking IDL: its changes (uuid, deleted, columns) and its name index."""
    tracking = recorded.idl
    changes = {name: [(str(key), change.deleted, change.columns)
                      for key, change in tracking.changes.table(name).items()] for name in tracking.tables}
    names = {table: {name: sorted(map(str, rows)) for name, rows in index.items()}
             for table, index in tracking.names.items()}
    return changes, names, tracking.change_seqno


P = [str(uuid.UUID(int=2000 + i)) for i in range(40)]  # ports
I = [str(uuid.UUID(int=3000 + i)) for i in range(40)]  # their interfaces
DELETES = [
    {"Bridge": {U[1]: {"modify": {"ports": ["set", [["uuid", p] for p in P]]}}},
     "Port": {p: {"insert": {"name": f"p{k}", "interfaces": ["uuid", I[k]]}} for k, p in enumerate(P)},
     "Interface": {i: {"insert": {"name": f"p{k}", "ofport": k + 1}} for k, i in enumerate(I)}},
    # a big delete as ovsdb-server sends it, with a row the replica lacks, a row update naming "delete" and more
    # (ovs: a delete), inserts and a modify in between (the notifications' order), a port re-inserted (replaced)
    {"Bridge": {U[1]: {"modify": {"ports": ["set", [["uuid", p] for p in P[:30]]]}}},
     "Port": {**{p: {"delete": None} for p in P[:20]}, str(uuid.UUID(int=9999)): {"delete": None},
              P[30]: {"insert": {"name": "again", "interfaces": ["uuid", I[30]]}},
              **{p: {"delete": None} for p in P[20:30]}},
     "Interface": {**{i: {"delete": None} for i in I[:25]}, I[25]: {"delete": None, "modify": {"ofport": 1}},
                   U[5]: {"modify": {"ofport": 9}}, **{i: {"delete": None} for i in I[26:30]},
                   str(uuid.UUID(int=4000)): {"insert": {"name": "new"}}}},
    # a deleted row's uuid inserted again in the next update, then deleted with the rest
    {"Port": {P[0]: {"insert": {"name": "p0 again"}}}},
    {"Port": {p: {"delete": None} for p in [P[0], *P[30:]]}, "Interface": {i: {"delete": None} for i in I[30:]},
     "Bridge": {U[1]: {"modify": {"ports": ["set", [["uuid", p] for p in P[30:]]]}}}},
]


@pytest.mark.parametrize("version", [ovs.db.idl.OVSDB_UPDATE2, ovs.db.idl.OVSDB_UPDATE3])
def test_deleted_rows_give_the_rows_notifications_and_changes_ovs_gives(version):
    """ovsdb/idl/rowloop.py's fast path for a row only deleted: the same rows, the same notifications in the same
    order as a plain ovs Idl, and the same changes, name index and change_seqno as the tracking IDL given ovs's own
    loop, update by update (inserts, modifies and deletes mixed)."""
    plain, paced, ovs_loop = Recorded(ovs.db.idl.Idl), Recorded(idl._TrackingIdl), Recorded(_OvsLoopIdl)
    for update in [UPDATES[0], *DELETES]:
        for recorded in (plain, paced, ovs_loop):
            recorded.feed(update, version)
        assert paced.data() == plain.data() == ovs_loop.data()
        assert paced.notices == plain.notices == ovs_loop.notices
        assert tracked(paced) == tracked(ovs_loop)
        assert paced.idl.change_seqno == plain.idl.change_seqno
        paced.idl.changes, ovs_loop.idl.changes = type(paced.idl.changes)(), type(ovs_loop.idl.changes)()
    assert not paced.data()["Port"].keys() & set(P)
    assert sum(1 for notice in paced.notices if notice[0] == ovs.db.idl.ROW_DELETE) == 2 * len(P) + 1  # not 9999


def test_a_table_with_a_custom_index_deletes_through_ovs_and_keeps_its_index():
    plain, paced = both()
    for recorded in (plain, paced):
        recorded.idl.index_create("Port", "by name").add_column("name")
    for update in [UPDATES[0], *DELETES[:2]]:
        for recorded in (plain, paced):
            recorded.feed(update)
    names = [[row.name for row in recorded.idl.tables["Port"].rows.indexes["by name"]] for recorded in (plain, paced)]
    assert names[0] == names[1] and "p25" not in names[1] and "again" in names[1]
    assert paced.data() == plain.data() and paced.notices == plain.notices


def stacked(recorded, key, name: str) -> None:
    """A copy of the row ``key`` named ``name`` put on top of it, as ovs's transaction code puts back a row it
    deleted (``IndexedRows.__setitem__`` appends; no notification)."""
    table = recorded.idl.tables["Interface"]
    data = dict(table.rows[key]._data)
    data["name"] = ovs.db.data.Datum.from_json(table.columns["name"].type, name)
    table.rows[key] = ovs.db.idl.Row(recorded.idl, table, key, data)


def test_a_stacked_row_deleted_leaves_the_copy_below_it_as_ovs_does():
    """A row stacked on another of its uuid (``IndexedRows.__setitem__`` appends: ovs's transaction code may put a
    row back while its table holds one; an update's insert of a row that exists replaces it) is popped by a delete,
    the copy below it is the row then, as through ovs's ``IndexedRows.__delitem__``; a second delete takes that one,
    a third finds none. Only the rows' order may differ (ovsdb/idl/rowloop.py moves the key to the table's end). The
    replica reports the copy below as the row, whole (the test below)."""
    key = uuid.UUID(U[5])
    plain, paced = both()
    for recorded in (plain, paced):
        recorded.feed(UPDATES[0])
        recorded.feed({"Interface": {U[5]: {"insert": {"name": "p1"}}}})  # replaced: no stack
        assert len(recorded.idl.tables["Interface"].rows.data[key]) == 1
        stacked(recorded, key, "on top")

    def stack(recorded):
        return [row.name for row in recorded.idl.tables["Interface"].rows.data.get(key, [])]

    assert stack(paced) == stack(plain) == ["p1", "on top"]
    before = len(paced.notices)
    for left, reported in ((["p1"], ("p1", False)), ([], ("p1", True)), ([], None)):
        paced.idl.changes = type(paced.idl.changes)()
        for recorded in (plain, paced):
            recorded.feed({"Interface": {U[5]: {"delete": None}}})
        assert stack(paced) == stack(plain) == left
        assert paced.data() == plain.data() and paced.notices == plain.notices
        change = paced.idl.changes.table("Interface").get(key.int)
        assert (change and (change.row.name, change.deleted)) == reported
    assert [notice[:3] for notice in paced.notices[before:]] == [(ovs.db.idl.ROW_DELETE, "Interface", U[5])] * 2


@pytest.mark.parametrize("path", ["update2", "indexed", "update"])
def test_a_stacked_row_deleted_leaves_the_copy_below_it_named_and_reported_whole(path):
    """The name index and the changes follow the table: once a delete popped the stacked row, the copy below it is the
    row, under its own name, reported as a whole row (not deleted); the next delete takes it. Through rowloop's fast
    path (update2), ovs's own delete (a table with a custom index) and the old protocol's. Was: the name dropped and
    the row reported deleted while the table held the copy (closing33, "OVSDB, older")."""
    key = uuid.UUID(U[5])
    _, paced = both()
    if path == "indexed":
        paced.idl.index_create("Interface", "by name").add_column("name")
    paced.feed(UPDATES[0])
    stacked(paced, key, "on top")
    version = ovs.db.idl.OVSDB_UPDATE if path == "update" else ovs.db.idl.OVSDB_UPDATE2
    delete = {"Interface": {U[5]: {"old": {"name": "on top"}} if path == "update" else {"delete": None}}}
    for left, change in (("p1", ("p1", False, None)), (None, ("p1", True, None))):
        paced.idl.changes = type(paced.idl.changes)()
        paced.feed(delete, version)
        table = paced.idl.tables["Interface"]
        assert (table.rows[key].name if key in table.rows else None) == left
        names = paced.idl.names["Interface"]
        assert "on top" not in names and (names.get("p1") == {key.int: table.rows[key]} if left else "p1" not in names)
        got = paced.idl.changes.table("Interface")[key.int]
        assert (got.row.name, got.deleted, got.columns) == change
        assert paced.idl.uncovered == {}


def test_the_server_database_changes_are_applied_and_not_notified_as_ovs_does():
    server = ovs.db.schema.DbSchema.from_json({"name": "_Server", "version": "1.0.0", "tables": {
        "Database": {"columns": {"name": {"type": "string"}, "model": {"type": "string"}}}}})
    plain, paced = both()
    for recorded in (plain, paced):
        recorded.idl.server_tables = ovs.db.idl.IdlTable.schema_tables(recorded.idl, server)
    row = str(uuid.UUID(int=77))
    for update in ({"Database": {row: {"insert": {"name": "Open_vSwitch", "model": "standalone"}}}},
                   {"Database": {row: {"delete": None}}}):
        for recorded in (plain, paced):
            recorded.idl._Idl__parse_update(json.loads(json.dumps(update)), ovs.db.idl.OVSDB_UPDATE2,
                                            recorded.idl.server_tables)
        assert [len(recorded.idl.server_tables["Database"].rows) for recorded in (plain, paced)] == \
            ([1, 1] if "insert" in update["Database"][row] else [0, 0])
    assert paced.notices == plain.notices == [] and paced.idl.change_seqno == plain.idl.change_seqno == 0


def test_a_deleted_row_is_found_once_without_ovs_uuid_parser_or_the_rows_mapping(monkeypatch):
    """A big delete's rows (20,000 for 10,000 ports): each uuid matched once, the row's stack looked up once; ovs 4.0.0
    matches the pattern twice (from_string after is_valid_string), and finds and removes the row through
    ``Mapping.get`` and ``IndexedRows.__delitem__`` (three lookups); the tracking IDL's ``notify`` reads the row's
    table name from its schema (the IdlTable's ``name`` is a ``__getattr__`` call)."""
    from ovs.db import custom_index

    _, paced = both()
    paced.feed(UPDATES[0])
    paced.feed(DELETES[0])
    del paced.idl.notify  # the tracking IDL's own, without the recording (which reads the IdlTable's name)
    calls = []
    for owner, name in ((ovs.ovsuuid, "from_string"), (custom_index.IndexedRows, "__delitem__"),
                        (custom_index.IndexedRows, "__getitem__"), (ovs.db.idl.IdlTable, "__getattr__")):
        real = getattr(owner, name)
        monkeypatch.setattr(owner, name, lambda *args, _real=real, _name=name: calls.append(_name) or _real(*args))
    pauses = []
    paced.idl.pacer = pacer = _Counting(lambda: pauses.append(1), 7)  # a row's units: applied and notified
    paced.feed({"Port": {p: {"delete": None} for p in P}, "Interface": {i: {"delete": None} for i in I}})
    assert not paced.idl.tables["Port"].rows.keys() & {uuid.UUID(p) for p in P}
    assert calls == [] and pacer.units == 2 * 2 * len(P) and len(pauses) == 2 * 2 * len(P) // 7


class _Counting(Pacer):
    """A pacer counting the units ticked."""

    units = 0

    def tick(self, units: int = 1) -> None:
        self.units += units
        super().tick(units)


def test_the_row_loop_replaced_is_ovs_and_deletes_as_the_fast_path_does():
    """HACK (ovs 4.0.0): ovsdb/idl/rowloop.py replaces __do_parse_update's update2/update3 loop and takes a deleted
    row out of IndexedRows.data itself: ovs's delete must be that (the row's stack popped, a notice of the row)."""
    import inspect

    from ovs.db import custom_index

    loop = inspect.getsource(ovs.db.idl.Idl._Idl__do_parse_update)
    assert "self.__process_update2(table, uuid, row_update)" in loop and "self.notify(*notice)" in loop
    # what rowloop repeats around each row: the pause, _Server's changes not notified, change_seqno per notice
    assert "self.cooperative_yield()" in loop and "tables is not self.server_tables" in loop
    assert "self.change_seqno += 1" in loop
    # the uuid: the pattern rowloop matches (ovs.ovsuuid.uuidRE), parsed as uuid.UUID of the same text
    assert "uuidRE.match(s)" in inspect.getsource(ovs.ovsuuid.is_valid_string)
    assert "return uuid.UUID(s)" in inspect.getsource(ovs.ovsuuid.from_string)
    process = inspect.getsource(ovs.db.idl.Idl._Idl__process_update2)
    assert 'if "delete" in row_update:' in process and "del table.rows[uuid]" in process
    assert "return Notice(ROW_DELETE, row)" in process and 'vlog.warn("cannot delete missing row' in process
    delete = inspect.getsource(custom_index.IndexedRows.__delitem__)
    assert "val = self.data[key].pop()" in delete and "del self.data[key]" in delete
    # custom indexes live in IndexedRows.indexes (rowloop leaves a table that has one to ovs's own path)
    assert "for index in self.indexes.values():" in delete


class RandomUpdates:
    """update2/update3 messages of every shape, valid for the schema (each column's type read from it): initial,
    insert (of a row that exists too), modify, delete (of a row that does not exist too); values at their default
    or not, references to rows of any table (seen or not), and modifies as ovsdb-server sends them: a scalar's new
    value, a set's elements added and removed, a map's keys added, removed or given another value."""

    POOL = [str(uuid.UUID(int=k)) for k in range(1, 9)]  # every table's rows, and what references point at

    def __init__(self, rng, tables):
        self.rng, self.tables = rng, tables

    def atom(self, base):
        rng = self.rng
        if base.enum is not None:
            return rng.choice(sorted(atom.value for atom in base.enum.values))
        if base.type == ovs.db.types.UuidType:
            return ["uuid", rng.choice(self.POOL)]
        if base.type == ovs.db.types.IntegerType:
            low = base.min if base.min is not None else -1
            return rng.choice([low, low + 1, low + 7])
        if base.type == ovs.db.types.BooleanType:
            return rng.random() < 0.5
        return rng.choice(["", "a", "b"] if base.min_length == 0 else ["a", "b"])

    def elements(self, type_, low, high):
        found = {}
        for _ in range(self.rng.randint(low, high) * 2):
            key = self.atom(type_.key)
            found.setdefault(json.dumps(key), [key, self.atom(type_.value)] if type_.value else key)
        chosen = list(found.values())[:high]
        return chosen if len(chosen) >= low else None

    def value(self, type_, diff=False):
        """A whole value; with ``diff``, a set's or map's elements to toggle (ovsdb-server never sends none)."""
        if type_.n_max == 1 and not type_.is_map():
            return self.atom(type_.key) if type_.n_min == 1 or self.rng.random() < 0.6 else ["set", []]
        low = max(type_.n_min, 1) if diff else type_.n_min
        chosen = self.elements(type_, low, min(type_.n_max, 3))
        if chosen is None:
            return None
        return ["map" if type_.is_map() else "set", chosen]

    def update(self, exists) -> dict:
        out = {}
        for name, table in self.tables.items():
            for u in self.rng.sample(self.POOL, self.rng.randint(0, 3)):
                present = exists(name, u)
                op = self.rng.choice(("modify", "modify", "delete", "insert") if present else
                                     ("initial", "insert", "delete"))
                if op == "delete":
                    out.setdefault(name, {})[u] = {"delete": None}
                    continue
                columns = self.rng.sample(sorted(table.columns), self.rng.randint(0, len(table.columns)))
                values = {c: self.value(table.columns[c].type, op == "modify") for c in columns}
                out.setdefault(name, {})[u] = {op: {c: v for c, v in values.items() if v is not None}}
        return out

    def old_protocol(self, rows) -> dict:
        """The old protocol's update (every column of a row in ``new``; ``old`` the columns it had before, or the
        whole row deleted): the same shapes, ``rows`` the IDL's tables as they are."""
        out = {}
        for name, table in self.tables.items():
            for u in self.rng.sample(self.POOL, self.rng.randint(0, 3)):
                row = rows[name].rows.get(uuid.UUID(u))
                before = {c: row._data[c].to_json() for c in sorted(table.columns)} if row is not None else None
                if before is not None and self.rng.random() < 0.3:
                    out.setdefault(name, {})[u] = {"old": before}
                    continue
                new = {c: self.value(table.columns[c].type) for c in sorted(table.columns)}
                if before is None:
                    out.setdefault(name, {})[u] = {"new": new}
                else:
                    out.setdefault(name, {})[u] = {"old": {c: v for c, v in before.items() if v != new[c]}, "new": new}
        return out


@pytest.mark.parametrize("version", [ovs.db.idl.OVSDB_UPDATE2, ovs.db.idl.OVSDB_UPDATE3, ovs.db.idl.OVSDB_UPDATE])
@pytest.mark.parametrize("seed", range(6))
def test_any_sequence_of_updates_gives_the_rows_and_notifications_ovs_gives(seed, version):
    """_PacedIdl's own parsing (ovsdb/idl/paced.py: one parser and default per column, a column at its default
    diffed from a copy of one default Datum) against a plain ``ovs.db.idl.Idl``: after each update the same committed
    data and the same notifications, old values included."""
    import random

    plain, paced = both()
    updates = RandomUpdates(random.Random(seed), plain.idl.tables)
    shapes = set()
    for _ in range(40):
        if version == ovs.db.idl.OVSDB_UPDATE:
            update = updates.old_protocol(plain.idl.tables)
        else:
            update = updates.update(lambda table, u: uuid.UUID(u) in plain.idl.tables[table].rows)
        shapes |= {" ".join(sorted(row)) for rows in update.values() for row in rows.values()}
        for recorded in (plain, paced):
            recorded.feed(update, version)
        assert paced.idl.refused is None
        assert paced.data() == plain.data()
        assert paced.notices == plain.notices
    assert shapes == ({"new", "new old", "old"} if version == ovs.db.idl.OVSDB_UPDATE else
                      {"initial", "insert", "modify", "delete"})
    assert {event for event, *_ in paced.notices} == {"create", "update", "delete"}


def _bridge_changed(monkeypatch, change: dict) -> tuple:
    """(plain, paced, the uuid atoms paced hashed taking ``change``): both fed UPDATES[0] and DELETES[0], then
    ``change``."""
    plain, paced = both()
    for update in [UPDATES[0], DELETES[0], change]:
        plain.feed(update)
        if update is not change:
            paced.feed(update)
    hashed = []
    real = ovs.db.data.Atom.__hash__
    monkeypatch.setattr(ovs.db.data.Atom, "__hash__", lambda atom: hashed.append(atom.value) or real(atom))
    paced.feed(change)
    monkeypatch.setattr(ovs.db.data.Atom, "__hash__", real)
    return plain, paced, sum(1 for value in hashed if isinstance(value, uuid.UUID))


def test_a_set_difference_looks_each_element_up_once_and_gives_what_ovs_gives(monkeypatch):
    """update2's difference of a set (a big delete's bridge ``ports``: 10,000 elements removed, in slices): each element
    toggled with one lookup in the row's set (ovs 4.0.0's ``Datum.diff``: three, ``in``, ``[]`` and ``del``, each an
    Atom's hash in Python), to the same rows and notifications as ovs; a map's difference is ovs's own."""
    change = {"Bridge": {U[1]: {"modify": {"ports": ["set", [["uuid", p] for p in [*P[:30], U[0]]]],
                                           "external_ids": ["map", [["k", "v"]]]}}}}  # 30 out, one in; a map
    plain, paced, hashed = _bridge_changed(monkeypatch, change)
    # each element: hashed once parsing the difference, once toggled in the row's set (and a new one once more); counted
    # before the rows are read below (a new row's reference still as its JSON is made into its Atom when read:
    # ovsdb/idl/lazy.py)
    assert hashed == 2 * 31 + 1
    assert paced.data() == plain.data() and paced.notices == plain.notices
    ports = {str(atom.value) for atom in paced.idl.tables["Bridge"].rows[uuid.UUID(U[1])]._data["ports"].values}
    assert ports == {U[3], U[4], *P[30:], U[0]}


def test_a_set_difference_removing_many_is_applied_in_place_hashing_each_once_as_ovs_gives_it(monkeypatch):
    """update2's difference of a set of uuids that only removes, many at once (a big delete's slice of a bridge's
    ``ports``: ovsdb/idl/datums.py ``drop_uuids``): not parsed, each element found by its number and popped by the
    set's own atom, one hash each; the same rows and notifications (old values included) as ovs. One that also adds
    is toggled as ever (the same again); one naming an element twice is parsed, and refused, as before."""
    for ports in ([*P[:30]], [*P[:30], U[0]], [*P[:30], P[0]]):
        change = {"Bridge": {U[1]: {"modify": {"ports": ["set", [["uuid", p] for p in ports]]}}}}
        plain, paced, uuids = _bridge_changed(monkeypatch, change)
        if ports[-1] == P[0]:
            assert "column ports" in paced.idl.refused and "duplicate" in paced.idl.refused, paced.idl.refused
            continue
        assert uuids == 30 if len(ports) == 30 else uuids >= 2 * 30, (ports[-1], uuids)
        assert paced.data() == plain.data() and paced.notices == plain.notices


def test_a_deleted_rows_change_is_recorded_without_a_call_per_row(monkeypatch):
    """A big delete notifies 20,000 rows (10,000 ports and their interfaces): each one's change is written straight
    into the tracked changes (``RowChanges.rows``, ``rowchanges.deletion``), not through ``RowChanges.record`` and
    the named tuple's ``__new__``; the changes and name index are those ovs's own loop gives (the test above)."""
    from ovsdb.rowchanges import RowChanges

    _, paced = both()
    paced.feed(UPDATES[0])
    paced.feed(DELETES[0])
    del paced.idl.notify  # the tracking IDL's own
    paced.idl.changes = RowChanges()
    recorded = []
    real = RowChanges.record
    monkeypatch.setattr(RowChanges, "record", lambda *args: recorded.append(args[1]) or real(*args))
    paced.feed({"Port": {p: {"delete": None} for p in P}, "Interface": {i: {"delete": None} for i in I},
                "Bridge": {U[1]: {"modify": {"ports": ["set", [["uuid", p] for p in P]]}}}})
    assert recorded == []  # the bridge's modify too: its first change in the span (rowchanges.change)
    changes = paced.idl.changes
    assert {str(uuid.UUID(int=key)) for key in changes.table("Port")} == set(P)
    assert all(change.deleted and change.columns is None and type(change).__name__ == "RowChange"
               for table in ("Port", "Interface") for change in changes.table(table).values())
    indexed = {key for rows in paced.idl.names["Port"].values() for key in rows}
    assert indexed and not indexed & {uuid.UUID(p).int for p in P}


@pytest.mark.parametrize("seed", range(8))
def test_tables_only_deleted_take_the_batch_and_give_what_the_row_loop_gives(seed, monkeypatch):
    """ovsdb/idl/rowloop.py deletes a table's rows together when its every row update names "delete" (``_delete_all``)
    and the tracking IDL records them together (``notify_deleted``), a run of rows between two pauses at a time: the
    same rows, changes (in order), name index, change_seqno and the same units ticked as the tracking IDL taking them
    row by row (rowloop's ``_delete`` and ``notify``: what ovs's own loop gives, the tests above), with the IDLs' own
    ``notify`` (not a recording one: that takes the rows one by one), for deletes mixed
    with a row the replica lacks, a row named twice (its uuid's text in capitals too), a row stacked over a copy (the
    copy is the row then; named twice, both go), a row update naming "delete" and "modify", and a pacer pausing
    inside the runs."""
    import random

    rng = random.Random(seed)
    ours, theirs = Recorded(idl._TrackingIdl), Recorded(idl._TrackingIdl)
    real_only_deletes = idl.rowloop._only_deletes
    monkeypatch.setattr(idl.rowloop, "_only_deletes", lambda table_update: (
        real_only_deletes(table_update) if by_batch else False))
    every = rng.choice((3, 7, 100))
    by_batch = True
    for recorded in (ours, theirs):
        del recorded.idl.notify
        recorded.idl.pacer = _Counting(lambda: None, every)
        recorded.feed(UPDATES[0])
        recorded.feed(DELETES[0])
    left_ports, left_ifaces = list(P), list(I)
    while left_ports:
        gone = rng.sample(left_ports, min(len(left_ports), rng.randint(1, 15)))
        ifaces = [I[P.index(p)] for p in gone if I[P.index(p)] in left_ifaces]
        update = {"Port": {p: {"delete": None} for p in gone},
                  "Interface": {i: rng.choice(({"delete": None}, {"delete": None, "modify": {"ofport": 3}}))
                                for i in ifaces},
                  "Bridge": {U[1]: {"modify": {"ports": ["set", [["uuid", p] for p in gone]]}}}}
        if rng.random() < 0.3:  # a row the replica lacks
            update["Port"][str(uuid.UUID(int=rng.randint(5000, 6000)))] = {"delete": None}
        if rng.random() < 0.3:  # the same row twice: its text in capitals too
            update["Port"][gone[0].upper()] = {"delete": None}
        if ifaces and rng.random() < 0.3:  # a row stacked over a copy of it
            for recorded in (ours, theirs):
                stacked(recorded, uuid.UUID(ifaces[0]), "on top")
            if rng.random() < 0.5:  # and named twice: the copy below goes too, in the same run
                update["Interface"][ifaces[0].upper()] = {"delete": None}
        for by_batch, recorded in ((True, ours), (False, theirs)):
            recorded.feed(update)
        assert ours.data() == theirs.data()
        assert tracked(ours) == tracked(theirs)
        assert ours.idl.uncovered == theirs.idl.uncovered == {}
        assert ours.idl.pacer.units == theirs.idl.pacer.units and ours.idl.pacer.pauses == theirs.idl.pacer.pauses
        for recorded in (ours, theirs):
            recorded.idl.changes = type(recorded.idl.changes)()
        left_ports = [p for p in left_ports if p not in gone]
        left_ifaces = [i for i in left_ifaces if i not in ifaces or str(uuid.UUID(i)) in
                       {str(u) for u in ours.idl.tables["Interface"].rows}]
    assert not ours.data()["Port"].keys() & set(P)


def test_a_big_delete_makes_no_python_call_per_row_in_the_row_loop_nor_in_notify():
    """10,000 ports and their interfaces deleted (20,000 rows): applied and notified in C loops, a run at a time
    (``_delete_all``, ``notify_deleted``): at most 60 bytecodes a row (~47 here: the uuid's ``__hash__`` and ``__eq__``
    in the table's lookup, the name index), where the row loop and ``notify`` made twelve Python calls a row (main at
    b942caf: 5,988,513 for these rows, ~300 a row; here 935,729)."""
    from tests.unit.test_duplicate_macs_pass import opcodes

    ports = [str(uuid.UUID(int=100000 + k)) for k in range(10000)]
    ifaces = [str(uuid.UUID(int=200000 + k)) for k in range(10000)]
    paced = Recorded(idl._TrackingIdl)
    del paced.idl.notify
    paced.idl.pacer = Pacer(lambda: None, 100)
    paced.feed(UPDATES[0])
    paced.feed({"Port": {p: {"insert": {"name": f"t{k}", "interfaces": ["uuid", ifaces[k]]}}
                         for k, p in enumerate(ports)},
                "Interface": {i: {"insert": {"name": f"t{k}"}} for k, i in enumerate(ifaces)}})
    update = {"Port": {p: {"delete": None} for p in ports}, "Interface": {i: {"delete": None} for i in ifaces}}
    paced.idl.changes = type(paced.idl.changes)()
    counted = opcodes(lambda: idl.rowloop.apply(paced.idl, update, paced.idl.tables))
    assert not paced.idl.tables["Port"].rows.keys() & {uuid.UUID(p) for p in ports[:10]}
    assert len(paced.idl.changes.table("Interface")) == len(ifaces) and "t5" not in paced.idl.names["Port"]
    assert counted <= 60 * 2 * len(ports), counted


def test_uuids_made_together_are_the_uuids_uuid_makes():
    """``datums.uuids_of`` (C loops) gives what ``uuid.UUID`` gives for each text: equal, the same hash, number and
    safety, of that class; a text of 37 characters (the pattern's final newline) raises UUID's ValueError."""
    from ovsdb.idl.datums import uuids_of

    texts = [str(uuid.uuid4()) for _ in range(50)] + [str(uuid.uuid4()).upper(), str(uuid.UUID(int=0))]
    made, real = uuids_of(texts), [uuid.UUID(text) for text in texts]
    assert made == real and [type(u) for u in made] == [uuid.UUID] * len(texts)
    assert [(hash(u), u.int, u.is_safe, str(u)) for u in made] == [(hash(u), u.int, u.is_safe, str(u)) for u in real]
    with pytest.raises(ValueError):
        uuids_of(texts[:3] + [texts[3] + "\n"])
