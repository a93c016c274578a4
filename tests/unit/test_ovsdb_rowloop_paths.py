"""ovsdb/idl/rowloop.py's inserts and modifies: a new row put in its table, a changed row taken out and put back,
directly in ``IndexedRows.data`` (not through ovs's row mapping), giving what ovs gives (the random sequences of
tests/unit/test_ovsdb_idl_parse.py compare every shape with a plain ovs Idl)."""

from __future__ import annotations

import inspect
import uuid

import ovs.db.idl
import pytest
from ovs.db import custom_index

from tests.unit.test_ovsdb_idl_parse import UPDATES, U, both

PORTS = [str(uuid.UUID(int=5000 + i)) for i in range(20)]
IFACES = [str(uuid.UUID(int=6000 + i)) for i in range(20)]
INSERT = {"Bridge": {U[1]: {"modify": {"ports": ["set", [["uuid", p] for p in PORTS]]}}},
          "Port": {p: {"insert": {"name": f"p{k}", "interfaces": ["uuid", IFACES[k]]}} for k, p in enumerate(PORTS)},
          "Interface": {i: {"insert": {"name": f"p{k}", "external_ids": ["map", [["iface-id", f"v{k}"]]]}}
                        for k, i in enumerate(IFACES)}}
OFPORT = {"Interface": {i: {"modify": {"ofport": -1}} for i in IFACES}}


def _counting(monkeypatch) -> list:
    calls = []
    for name in ("__getitem__", "__setitem__", "__delitem__"):
        real = getattr(custom_index.IndexedRows, name)
        monkeypatch.setattr(custom_index.IndexedRows, name,
                            lambda *args, _real=real, _name=name: calls.append(_name) or _real(*args))
    return calls


@pytest.mark.parametrize("version", [ovs.db.idl.OVSDB_UPDATE2, ovs.db.idl.OVSDB_UPDATE3])
def test_new_and_changed_rows_go_into_their_table_without_ovs_row_mapping(monkeypatch, version):
    """evpn_routes' announce (new ports and interfaces, the bridge's ports changed) and ovs-vswitchd's ``ofport`` on
    the new interfaces: no ``IndexedRows.__getitem__`` (ovs's ``Mapping.get`` of the row), ``__setitem__`` nor
    ``__delitem__`` per row, the same rows, notifications and changes as ovs's own loop; a row the table lacks
    modified still refuses the update (ovs's error)."""
    plain, paced = both()
    for recorded in (plain, paced):
        recorded.feed(UPDATES[0], version)
    calls = _counting(monkeypatch)
    ticks = []
    paced.idl.cooperative_yield = lambda: ticks.append(1)  # the pacer's hook: still once per row
    paced.feed(INSERT, version)
    paced.feed(OFPORT, version)
    assert calls == [] and len(ticks) == 1 + 2 * len(PORTS) + len(IFACES)
    monkeypatch.undo()
    for update in (INSERT, OFPORT):
        plain.feed(update, version)
    assert paced.data() == plain.data()
    assert paced.notices == plain.notices
    assert paced.idl.change_seqno == plain.idl.change_seqno
    changes = paced.idl.changes.table("Interface")
    assert all(changes[uuid.UUID(i).int].columns is None for i in IFACES)  # created in the same span: whole rows
    assert [list(row) for row in (paced.idl.tables["Interface"].rows, plain.idl.tables["Interface"].rows)] == \
        [list(plain.idl.tables["Interface"].rows)] * 2  # the order too (a move to the end: the test below)
    paced.feed({"Interface": {str(uuid.UUID(int=7777)): {"modify": {"ofport": 1}}}}, version)
    assert "modify of a row that does not exist" in (paced.idl.refused or "")


def test_the_insert_and_modify_repeated_are_ovs_own():
    """HACK (ovs 4.0.0): rowloop's ``_insert`` and ``_modify`` repeat ``__process_update2``'s insert and modify around
    the Idl's own ``__create_row``, ``__add_default``, ``__row_update`` and ``__apply_diff``; ``IndexedRows`` keeps a
    stack of rows per uuid (``__setitem__`` appends, ``__delitem__`` pops and drops an empty stack)."""
    process = inspect.getsource(ovs.db.idl.Idl._Idl__process_update2)
    insert = ('elif "insert" in row_update or "initial" in row_update:', "row = self.__create_row(table, uuid)",
              "self.__add_default(table, row_update)", "changed = self.__row_update(table, row, row_update)",
              "table.rows[uuid] = row", "return Notice(ROW_CREATE, row)")
    modify = ('elif "modify" in row_update:', "raise error.Error('Modify non-existing row')", "del table.rows[uuid]",
              "old_row = self.__apply_diff(table, row, row_update['modify'])", "table.rows[uuid] = row",
              "return Notice(ROW_UPDATE, row, Row(self, table, uuid, old_row))")
    for line in insert + modify:
        assert line in process, line
    assert process.index(insert[0]) < process.index(modify[0])
    assert "self.data[key].append(item)" in inspect.getsource(custom_index.IndexedRows.__setitem__)
    assert "del self.data[key]" in inspect.getsource(custom_index.IndexedRows.__delitem__)


def test_a_row_changed_again_in_the_same_span_has_its_changes_merged(monkeypatch):
    """The tracking IDL writes a row's first change in a span straight into the changes (``rowchanges.change``); a
    second one is merged through ``RowChanges.record``: the columns of both, or the whole row for a row created in
    the span; the name index follows the last name."""
    from ovsdb.rowchanges import RowChanges

    _, paced = both()
    paced.feed(UPDATES[0])
    paced.feed(INSERT)
    paced.idl.changes = RowChanges()
    recorded = []
    real = RowChanges.record
    monkeypatch.setattr(RowChanges, "record", lambda *args: recorded.append(args[1]) or real(*args))
    paced.feed({"Interface": {IFACES[0]: {"modify": {"ofport": 3}}, U[5]: {"modify": {"ofport": 4}}}})
    assert recorded == []
    new = str(uuid.UUID(int=8888))
    paced.feed({"Interface": {IFACES[0]: {"modify": {"name": "renamed"}}, U[5]: {"modify": {"ofport": 5}},
                              new: {"insert": {"name": "fresh"}}}})
    paced.feed({"Interface": {new: {"modify": {"ofport": 9}}}})
    assert sorted(recorded) == ["Interface"] * 3
    changes = paced.idl.changes.table("Interface")
    assert changes[uuid.UUID(IFACES[0]).int].columns == {"ofport", "name"}
    assert changes[uuid.UUID(U[5]).int].columns == {"ofport"}
    assert changes[uuid.UUID(new).int].columns is None and not changes[uuid.UUID(new).int].deleted
    assert type(changes[uuid.UUID(IFACES[0]).int]).__name__ == "RowChange"
    names = paced.idl.names["Interface"]
    assert "p0" not in names and list(names["renamed"]) == [uuid.UUID(IFACES[0]).int]


def test_a_table_with_a_custom_index_takes_its_inserts_and_modifies_through_ovs():
    """``Idl.index_create`` (Canopy makes none): ovs's ``IndexedRows`` keeps the index as rows go in and out, so such
    a table's new and modified rows go through ovs's own path; the index follows a renamed row as ovs's does."""
    plain, paced = both()
    for recorded in (plain, paced):
        recorded.idl.index_create("Interface", "by name").add_column("name")
        for update in (UPDATES[0], INSERT, OFPORT, {"Interface": {IFACES[0]: {"modify": {"name": "renamed"}}}}):
            recorded.feed(update)
    names = [[row.name for row in recorded.idl.tables["Interface"].rows.indexes["by name"]]
             for recorded in (plain, paced)]
    assert names[0] == names[1] and "renamed" in names[1] and "p0" not in names[1]
    assert paced.data() == plain.data() and paced.notices == plain.notices


def test_rows_keep_ovs_order_and_stacks_when_modified_or_inserted_again():
    """The rows' order and stacks as ovs leaves them: a modified row moves to its table's end (ovs takes it out and
    puts it back), so does a row inserted again (ovs replaces it); a row stacked on a copy of itself (ovs's
    transaction code may put one back) inserted again has its top replaced, the copy below kept."""
    from tests.unit.test_ovsdb_idl_parse import stacked

    plain, paced = both()
    for recorded in (plain, paced):
        recorded.feed(UPDATES[0])
        recorded.feed(INSERT)
        stacked(recorded, uuid.UUID(IFACES[3]), "on top")
        recorded.feed({"Interface": {IFACES[1]: {"modify": {"ofport": 2}}, U[5]: {"modify": {"ofport": 3}}}})
        recorded.feed({"Interface": {IFACES[2]: {"insert": {"name": "again"}},
                                     IFACES[3]: {"insert": {"name": "replaced"}}}})

    def rows(recorded) -> list:
        return [(str(key), [row.name for row in stack])
                for key, stack in recorded.idl.tables["Interface"].rows.data.items()]

    assert rows(paced) == rows(plain)
    assert [key for key, _ in rows(plain)][-3:] == [IFACES[1], U[5], IFACES[2]]
    assert dict(rows(plain))[IFACES[3]] == ["p3", "replaced"]
    assert paced.data() == plain.data() and paced.notices == plain.notices
