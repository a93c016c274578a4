"""Updates from a buggy or hostile ovsdb-server (ovsdb/idl/paced.py): the replica after any sequence of updates holds
what a fresh read of the same database gives, its name index (``Replica.named``) agrees with its rows, the changes it
reports cover every row and column that changed, and an update that breaks the protocol is refused whole, with its
reason: nothing of it is announced (no change reported, the name index untouched; rows before the break may be in the
IDL's tables, which nothing reads again) and ``Replica`` drops the session (tests/unit/test_ovsdb_idl.py).

The real Open_vSwitch schema, Canopy's columns (ovsdb/vrs.py ``COLUMNS``); updates are fed to the IDL's update parser
directly (what ``Idl.run`` does with a message): no connection.
"""

import json
import random
import uuid
from pathlib import Path

import ovs.db.idl
import pytest

from ovsdb import idl
from ovsdb.rowchanges import RowChanges, row_key
from tests.unit.sinks import Reports
from tests.unit.test_ovsdb_idl_parse import SCHEMA

UPDATE2, UPDATE = ovs.db.idl.OVSDB_UPDATE2, ovs.db.idl.OVSDB_UPDATE
WANTED = {"Port": ("name", "external_ids"), "Interface": ("name", "ofport", "external_ids", "type")}
# the real schema's two tables, with only the columns wanted: a replica made in ~1 ms, not ~25
SMALL = {**SCHEMA, "tables": {table: {**SCHEMA["tables"][table], "columns": {
    column: SCHEMA["tables"][table]["columns"][column] for column in columns}} for table, columns in WANTED.items()}}
P1 = str(uuid.UUID(int=1))


def tracking():
    helper = idl.schema_helper(SMALL, WANTED)
    return idl._TrackingIdl("tcp:127.0.0.1:1", helper, leader_only=False, named=("Port", "Interface"))


def feed(replica, update, version=UPDATE2):
    replica._Idl__parse_update(json.loads(json.dumps(update)), version)


def index(replica, table="Port"):
    """The name index as {name: sorted uuids}, every name as it is stored."""
    return {name: sorted(str(uuid.UUID(int=u)) for u in rows) for name, rows in replica.names[table].items()}


def whole_port(name, **ext):
    """Every column of a Port row Canopy monitors (what the old protocol's ``new`` carries)."""
    return {"name": name, "external_ids": ["map", [[k, v] for k, v in sorted(ext.items())]]}


@pytest.mark.parametrize("version", [UPDATE2, UPDATE])
def test_an_insert_of_a_row_that_exists_leaves_only_its_new_name_in_the_index(version):
    replica = tracking()
    kind = "insert" if version == UPDATE2 else "new"
    feed(replica, {"Port": {P1: {kind: whole_port("old-name")}}}, version)
    feed(replica, {"Port": {P1: {kind: whole_port("new-name")}}}, version)  # the server says "insert" again
    assert index(replica) == {"new-name": [P1]}
    (row,) = replica.tables["Port"].rows.values()
    assert replica.names["Port"]["new-name"][row_key(row)] is row


def test_an_old_protocol_row_without_a_column_is_refused_whole_with_its_reason():
    """The old protocol's ``new`` holds every monitored column (RFC 7047 4.1.6); ovs 4.0.0 fills a missing scalar with
    a broken default (an ``Atom`` holding an ``Atom``), which became the row's name in the index."""
    replica = tracking()
    good = str(uuid.UUID(int=2))
    feed(replica, {"Port": {P1: {"new": whole_port("p1")}}}, UPDATE)
    seqno = replica.change_seqno
    feed(replica, {"Port": {good: {"new": whole_port("p2")},
                            P1: {"old": {"external_ids": ["map", []]}, "new": {"external_ids": ["map", []]}}}},
         UPDATE)
    assert "Port" in replica.refused and P1 in replica.refused and "name" in replica.refused
    assert "missing" in replica.refused
    assert index(replica) == {"p1": [P1]}  # nothing of the update applied, not even its valid row
    assert replica.change_seqno == seqno and len(replica.changes) == 1


@pytest.mark.parametrize("update, says", [
    ({"Port": {P1: {"modify": {"name": "x"}}}}, "Port row %s: modify of a row that does not exist" % P1),
    ({"Port": {"not-a-uuid": {"insert": {}}}}, "table Port: row 'not-a-uuid' is not a UUID"),
    # a run of deletes (ovsdb/idl/rowloop.py takes a table only deleted together) with a malformed member name: the
    # pattern's "$" takes a final newline, which uuid.UUID refuses (ValueError, no table nor row named before)
    ({"Port": {P1: {"delete": None}, "not-a-uuid": {"delete": None}}}, "table Port: row 'not-a-uuid' is not a UUID"),
    ({"Port": {P1: {"delete": None}, P1 + "\n": {"delete": None}}}, "table Port: row '%s\\n' is not a UUID" % P1),
    ({"Nonesuch": {}}, "unknown table Nonesuch"),
    ({"Port": {P1: {"insert": ["not", "an", "object"]}}}, "Port row %s: its insert is not an object" % P1),
    ({"Port": {P1: {"frobnicate": {}}}}, "Port row %s: no operation" % P1),
    ({"Port": {P1: {"insert": {"name": 5}}}}, "Port row %s: column name: " % P1),
    ({"Port": {P1: {"insert": {"external_ids": ["map", 5]}}}}, "Port row %s: column external_ids: " % P1),
    (["not", "an", "object"], "the update is not an object"),
])
def test_a_malformed_update_is_refused_with_where_and_why_and_nothing_of_it_is_announced(update, says):
    """ovs 4.0.0 raises in the middle of such an update (or, for a value of the wrong type, keeps the column's old
    value): the rows before that point stay applied without a notification, and it logs the reason where nobody sees
    it. Refused, the session is closed (``Replica``: tests/unit/test_ovsdb_idl.py) and nothing reads these rows."""
    replica = tracking()
    before = str(uuid.UUID(int=7))
    if isinstance(update, dict):
        update = {"Interface": {before: {"insert": {"name": "applied-first?"}}}, **update}
    feed(replica, update)
    assert replica.refused is not None and replica.refused.startswith("update refused: " + says), replica.refused
    assert not replica.names["Interface"] and not len(replica.changes) and not replica._session.is_connected()


@pytest.mark.parametrize("diff, says", [
    (["not", "an", "object"], "Port row %s: its modify is not an object" % P1),
    ({"external_ids": ["map", [["a"]]]}, "Port row %s: column external_ids: " % P1),
])
def test_a_malformed_modify_of_a_row_that_exists_is_refused_with_its_own_reason(diff, says):
    """The row loop takes the row out of its table to apply the difference (ovsdb/idl/rowloop.py ``_modify``): one
    that raised (not an object: AttributeError, no ovs error) left the row out, and the refusal's reason, worked out
    after, said "modify of a row that does not exist" (stop 42's debt). The row is put back: the reason is the real
    one, and the row is still in the replica's table."""
    replica = tracking()
    feed(replica, {"Port": {P1: {"insert": whole_port("p1", a="b")}}})
    feed(replica, {"Port": {P1: {"modify": diff}}})
    assert replica.refused.startswith("update refused: " + says), replica.refused
    assert uuid.UUID(P1) in replica.tables["Port"].rows


def test_a_modify_whose_value_does_not_parse_is_refused_not_skipped():
    """ovs 4.0.0 skips the column and keeps its old value: a fresh read gives something else."""
    replica = tracking()
    feed(replica, {"Port": {P1: {"insert": whole_port("p1", a="b")}}})
    feed(replica, {"Port": {P1: {"modify": {"external_ids": ["map", [["a"]]]}}}})
    assert replica.refused.startswith("update refused: Port row %s: column external_ids: " % P1)


@pytest.mark.parametrize("version", [UPDATE2, UPDATE])
def test_a_map_of_plain_values_longer_than_the_bound_is_refused_naming_its_column(version):
    """external_ids of a million pairs (~0.9 s of CPU converted in one stretch, then diffed and read without a pause)
    is refused before anything of the update is applied; one of MAX_PLAIN pairs is stored whole."""
    from ovsdb.idl import refusals

    replica = tracking()
    assert replica.plain_sets == {"Port": ("external_ids",), "Interface": ("external_ids",)}
    kind = "insert" if version == UPDATE2 else "new"
    most = {f"k{i}": "v" for i in range(refusals.MAX_PLAIN)}
    feed(replica, {"Port": {P1: {kind: whole_port("p1", **most)}}}, version)
    assert replica.refused is None
    (row,) = replica.tables["Port"].rows.values()
    assert len(row.external_ids) == refusals.MAX_PLAIN
    other = str(uuid.UUID(int=2))
    feed(replica, {"Port": {other: {kind: whole_port("p2")}},
                   "Interface": {P1: {kind: {"name": "i1", "ofport": ["set", []], "type": "",
                                             "external_ids": ["map", [[f"k{i}", "v"] for i in range(10_001)]]}}}},
         version)
    assert replica.refused == "update refused: Interface row %s: column external_ids: 10001 elements, more than %d" % (
        P1, refusals.MAX_PLAIN)
    assert index(replica) == {"p1": [P1]} and not replica._session.is_connected()  # nothing of it applied


def test_a_difference_rewriting_a_map_within_the_bound_is_applied(monkeypatch):
    """update2's modify lists the pairs removed and those added: rewriting a map of MAX_PLAIN pairs takes twice as
    many, and is no map longer than the bound; a difference longer than that is refused, naming where."""
    from ovsdb.idl import refusals

    monkeypatch.setattr(refusals, "MAX_PLAIN", 3)
    replica = tracking()
    feed(replica, {"Port": {P1: {"insert": whole_port("p1", a="1", b="2", c="3")}}})
    feed(replica, {"Port": {P1: {"modify": {"external_ids": ["map", [["a", "1"], ["b", "2"], ["c", "3"], ["d", "4"],
                                                                     ["e", "5"], ["f", "6"]]]}}}})
    assert replica.refused is None
    (row,) = replica.tables["Port"].rows.values()
    assert row.external_ids == {"d": "4", "e": "5", "f": "6"}
    feed(replica, {"Port": {P1: {"modify": {"external_ids": ["map", [[k, "0"] for k in "abcdefg"]]}}}})
    assert replica.refused == "update refused: Port row %s: column external_ids: 7 elements in a difference, more " \
        "than 6" % P1
    assert row.external_ids == {"d": "4", "e": "5", "f": "6"} and not replica._session.is_connected()


def test_a_map_of_plain_values_grown_past_the_bound_by_differences_is_refused(monkeypatch):
    """Differences within the bound, one pair at a time, may not build a map longer than it (each change then
    copied and read it whole)."""
    from ovsdb.idl import refusals

    monkeypatch.setattr(refusals, "MAX_PLAIN", 3)
    replica = tracking()
    feed(replica, {"Port": {P1: {"insert": whole_port("p1", a="1", b="2")}}})
    feed(replica, {"Port": {P1: {"modify": {"external_ids": ["map", [["c", "3"]]]}}}})
    assert replica.refused is None
    feed(replica, {"Port": {P1: {"modify": {"external_ids": ["map", [["d", "4"]]]}}}})
    assert replica.refused == "update refused: Port row %s: column external_ids: 4 elements once changed, more " \
        "than 3" % P1
    assert not replica._session.is_connected()


@pytest.mark.parametrize("row", ["insert", "delete and insert"])
def test_a_map_over_the_bound_after_many_deleted_rows_is_refused(row, monkeypatch):
    """A table whose rows are all deleted is not read for long maps (refusals.py ``_nothing_to_read``: a big delete's
    20,000 rows); one row that carries a map among them, last, is: refused, naming it."""
    from ovsdb.idl import refusals

    monkeypatch.setattr(refusals, "MAX_PLAIN", 3)
    replica = tracking()
    gone = [str(uuid.UUID(int=k)) for k in range(10, 20)]
    feed(replica, {"Port": {u: {"insert": whole_port("p%s" % u[-2:])} for u in gone}})
    feed(replica, {"Port": {u: {"delete": None} for u in gone[:5]}})  # a pure delete: nothing to read, applied
    assert replica.refused is None and len(replica.tables["Port"].rows) == 5
    body = whole_port("p1", **{f"k{i}": "v" for i in range(4)})
    feed(replica, {"Port": {**{u: {"delete": None} for u in gone[5:]},
                            P1: {"insert": body} if row == "insert" else {"delete": None, "insert": body}}})
    assert replica.refused == "update refused: Port row %s: column external_ids: 4 elements, more than 3" % P1
    assert len(replica.tables["Port"].rows) == 5 and not replica._session.is_connected()


@pytest.mark.parametrize("value", [["set", ["x" * 1000000, "y"]], "x" * 1000000])
def test_a_refusal_quoting_a_huge_value_says_where_in_a_few_hundred_characters(value):
    """ovs's message quotes the value that did not parse (its JSON, or the string broken); the reason is logged each
    time the peer's session is dropped (ovsdb/server.py), so a hostile peer sending megabytes would write a warning
    of megabytes per reconnect."""
    schema = {"name": "Open_vSwitch", "version": "1.0.0", "tables": {"Port": {"isRoot": True, "columns": {
        "name": {"type": {"key": {"type": "string", "maxLength": 64}}}}}}}
    replica = idl._TrackingIdl("tcp:127.0.0.1:1", idl.schema_helper(schema, {"Port": ("name",)}), leader_only=False)
    feed(replica, {"Port": {P1: {"insert": {"name": value}}}})
    assert replica.refused.startswith("update refused: Port row %s: column name: " % P1)
    assert len(replica.refused) < 600, len(replica.refused)

def _columns(row, table):
    return {column: idl.column_value(row, column) for column in WANTED[table]}


def _contents(replica):
    return {table: {str(u): _columns(row, table) for u, row in replica.tables[table].rows.items()}
            for table in WANTED}


def _names(replica):
    return {table: index(replica, table) for table in WANTED}


class Database:
    """What the server holds, as the JSON of every monitored column of every row, and the updates that change it,
    sent as update2 or as the old protocol, some of them the way a buggy server sends them (an insert of a row that
    exists, a delete of a row that does not, an old protocol ``old`` that names other columns than changed)."""

    NAMES = ("a", "b", "c", "")

    def __init__(self, rng):
        self.rng = rng
        self.rows = {table: {} for table in WANTED}

    def row(self, table):
        rng = self.rng
        row = {"name": rng.choice(self.NAMES), "external_ids": ["map", [["k", rng.choice("xy")]] * rng.randint(0, 1)]}
        if table == "Interface":
            row.update(ofport=["set", [rng.randint(1, 3)]] if rng.random() < 0.7 else ["set", []],
                       type=rng.choice(("", "internal")))
        return row

    def update(self):
        """(update, version) changing a few rows."""
        version = self.rng.choice((UPDATE2, UPDATE))
        out = {}
        for table in WANTED:
            rows = self.rows[table]
            for _ in range(self.rng.randint(0, 3)):
                known = list(rows)
                what = self.rng.choice(("insert", "insert", "reinsert", "modify", "modify", "delete", "delete_gone"))
                if what in ("reinsert", "modify", "delete") and not known:
                    what = "insert"
                u = str(uuid.uuid4()) if what in ("insert", "delete_gone") else self.rng.choice(known)
                if u in out.get(table, {}):
                    continue
                out.setdefault(table, {})[u] = self._row_update(table, u, what, version)
        return out, version

    def _row_update(self, table, u, what, version):
        rows = self.rows[table]
        if what in ("delete", "delete_gone"):
            old = rows.pop(u, None) or self.row(table)
            return {"delete": None} if version == UPDATE2 else {"old": old}
        new = self.row(table)
        before, rows[u] = rows.get(u), new
        if what != "modify":
            return {"insert": new} if version == UPDATE2 else {"new": new}
        if version == UPDATE2:
            return {"modify": self._diff(table, before, new)}
        liar = self.rng.sample(sorted(new), self.rng.randint(1, len(new)))  # "old" should list the changed columns
        return {"old": {column: before[column] for column in liar}, "new": new}

    def _diff(self, table, before, new):
        """update2's "modify": the new value of a column holding at most one value (ovsdb-server's
        ``ovsdb_datum_diff``); for a set or map of more, the elements added or removed."""
        diff = {}
        for column, value in new.items():
            if value == before[column]:
                continue
            if isinstance(value, list) and value[0] in ("set", "map") and column != "ofport":
                old = {json.dumps(e) for e in before[column][1]}
                now = {json.dumps(e) for e in value[1]}
                changed = [json.loads(e) for e in sorted(old ^ now)]
                if value[0] == "map":  # a changed value of a key that stays: listed once, with its new value
                    keys = {}
                    for key, val in changed:
                        keys[key] = dict(value[1]).get(key, val)
                    changed = [[k, v] for k, v in keys.items()]
                diff[column] = [value[0], changed]
            else:
                diff[column] = value
        return diff

    def fresh(self):
        """A replica that has read the database once (the first copy, update2 "initial")."""
        replica = tracking()
        feed(replica, {table: {u: {"initial": row} for u, row in rows.items()} for table, rows in self.rows.items()})
        return replica


@pytest.mark.parametrize("seed", range(8))
def test_after_any_sequence_of_updates_the_replica_is_a_fresh_read_and_its_changes_cover_the_differences(seed):
    rng = random.Random(seed)
    db = Database(rng)
    replica = tracking()
    for _ in range(40):
        before = _contents(replica)
        update, version = db.update()
        feed(replica, update, version)
        assert getattr(replica, "refused", None) is None  # (main has no such attribute: the rest fails there)
        fresh = db.fresh()
        assert _contents(replica) == _contents(fresh)
        assert _names(replica) == _names(fresh)
        changes, replica.changes = replica.changes, RowChanges()
        after = _contents(replica)
        for table in WANTED:
            reported = changes.table(table)
            for u in before[table].keys() | after[table].keys():
                old, new = before[table].get(u), after[table].get(u)
                if old == new:
                    continue
                change = reported.get(uuid.UUID(u).int)
                assert change is not None, (table, u, old, new)
                if old is not None and new is not None and change.columns is not None:
                    assert {c for c in old if old[c] != new[c]} <= change.columns, (table, u, version)


def test_a_bridge_inserted_again_with_other_ports_of_the_same_number_is_read_again():
    """ovsdb/bridgeports.py applies a bridge change by its ports' count (a port moved between bridges); a bridge row
    whose insert comes again (a whole new row: no columns named) may hold other ports of the same number. The ports
    reported must be those a fresh read finds."""
    from ovsdb import vrs

    helper = idl.schema_helper(SCHEMA, vrs.COLUMNS)
    replica = idl._TrackingIdl("tcp:127.0.0.1:1", helper, leader_only=False, named=("Port", "Interface"))
    root, bridge = str(uuid.UUID(int=1)), str(uuid.UUID(int=2))
    ports = {n: (str(uuid.UUID(int=10 + n)), str(uuid.UUID(int=20 + n))) for n in range(3)}

    def bridge_row(*which):
        return {"name": "br-int", "ports": ["set", [["uuid", ports[n][0]] for n in which]]}

    first = {"Open_vSwitch": {root: {"initial": {"bridges": ["uuid", bridge]}}},
             "Bridge": {bridge: {"initial": bridge_row(0, 1)}},
             "Port": {port: {"initial": {"name": "p%d" % n, "interfaces": ["uuid", iface]}}
                      for n, (port, iface) in ports.items()},
             "Interface": {iface: {"initial": {"name": "p%d" % n, "ofport": n + 1}} for n, (_, iface) in ports.items()}}
    feed(replica, first)

    reporter = vrs.VrsReporter(Reports(), "ovsdb:peer", "10.0.0.1:1")
    rows = lambda: list(replica.tables["Open_vSwitch"].rows.values())  # noqa: E731
    reporter.refresh(rows(), replica.changes)
    replica.changes = RowChanges()
    assert [p.name for p in reporter.last.ports] == ["p0", "p1"]
    feed(replica, {"Bridge": {bridge: {"insert": bridge_row(0, 2)}}})  # again, with p2 for p1
    reporter.refresh(rows(), replica.changes)
    fresh = vrs.build_snapshot("ovsdb:peer", "10.0.0.1:1", rows())
    assert [p.name for p in fresh.ports] == ["p0", "p2"]
    assert reporter.last.ports == fresh.ports


def test_a_difference_listing_more_elements_than_the_set_holds_is_applied_not_refused():
    """update2 lists a set's added and removed elements together (ovsdb-server's ``ovsdb_datum_diff``): {a, b} ->
    {c} is the difference {a, b, c}, more than a set of at most two holds. ovs 4.0.0 parses it with the bound and
    skips the column (its value stays {a, b}); refusing it would drop a correct peer's session."""
    schema = {"name": "Open_vSwitch", "version": "1.0.0", "tables": {"Port": {"isRoot": True, "columns": {
        "name": {"type": "string"}, "tags": {"type": {"key": "string", "min": 0, "max": 2}}}}}}
    helper = idl.schema_helper(schema, {"Port": ("name", "tags")})
    replica = idl._TrackingIdl("tcp:127.0.0.1:1", helper, leader_only=False, named=("Port",))
    feed(replica, {"Port": {P1: {"insert": {"name": "p1", "tags": ["set", ["a", "b"]]}}}})
    feed(replica, {"Port": {P1: {"modify": {"tags": ["set", ["a", "b", "c"]]}}}})
    assert replica.refused is None
    (row,) = replica.tables["Port"].rows.values()
    assert idl.column_value(row, "tags") == ["c"]


def test_a_monitor_answered_again_drops_the_rows_its_new_copy_lacks_from_the_index_and_reports_them_deleted():
    """A monitor answered again in the same session (ovsdb-server's "monitor_canceled", its database converted online:
    ovs 4.0.0 asks again) empties the tables before the new first copy (``Idl.__clear``), without a notification: a
    row the new copy lacks stayed in the name index (ovsdb/tunnel.py would find a tunnel port that no longer exists)
    and in no change reported. The same as a fresh read now."""
    replica = tracking()
    gone = str(uuid.UUID(int=2))
    feed(replica, {"Port": {P1: {"insert": whole_port("kept")}, gone: {"insert": whole_port("tunnel")}}})
    replica.changes = RowChanges()
    replica._Idl__clear()  # what Idl.run does with the monitor's answer before parsing it
    feed(replica, {"Port": {P1: {"initial": whole_port("kept")}}})
    assert index(replica) == {"kept": [P1]}
    reported = replica.changes.table("Port")
    assert reported[uuid.UUID(gone).int].deleted and not reported[uuid.UUID(P1).int].deleted
    (row,) = replica.tables["Port"].rows.values()
    assert replica.names["Port"]["kept"][row_key(row)] is row and reported[row_key(row)].row is row


def test_a_real_ovsdb_server_converting_its_database_online_leaves_no_row_it_dropped_in_the_index(tmp_path):
    """The same with a real ovsdb-server: ``ovsdb-client convert`` cancels the monitor, ovs asks again, and the rows
    the conversion dropped (a table made non-root: its unreferenced rows go) are reported deleted and leave the
    index (without the fix: no row left, both names still in the index, no deletion reported)."""
    import subprocess
    import time

    import ovs.poller

    schema_path = "/usr/share/openvswitch/vtep.ovsschema"
    db, sock = tmp_path / "vtep.db", tmp_path / "db.sock"
    remote = "unix:%s" % sock
    subprocess.run(["ovsdb-tool", "create", str(db), schema_path], check=True)
    server = subprocess.Popen(["ovsdb-server", str(db), "--remote=punix:%s" % sock, "--unixctl=%s" % (tmp_path / "ctl"),
                               "--log-file=%s" % (tmp_path / "ovsdb.log")], stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        inserts = [{"op": "insert", "table": "Logical_Switch", "row": {"name": name}} for name in ("ls1", "ls2")]
        subprocess.run(["ovsdb-client", "transact", remote, json.dumps(["hardware_vtep", *inserts])], check=True,
                       capture_output=True, timeout=30)
        schema = json.loads(Path(schema_path).read_text())
        replica = idl._TrackingIdl(remote, idl.schema_helper(schema, {"Logical_Switch": ("name",)}), leader_only=False,
                                   named=("Logical_Switch",))

        def run_until(done):
            for _ in range(100):  # at most ~10 s
                replica.run()
                if done():
                    return
                poller = ovs.poller.Poller()
                replica.wait(poller)
                poller.timer_wait(100)
                poller.block()

        run_until(lambda: len(replica.names["Logical_Switch"]) == 2)
        assert sorted(replica.names["Logical_Switch"]) == ["ls1", "ls2"]
        replica.changes = RowChanges()
        converted = {**schema, "version": "99.0.0"}
        converted["tables"] = {**schema["tables"], "Logical_Switch": {**schema["tables"]["Logical_Switch"],
                                                                      "isRoot": False}}
        (tmp_path / "converted.ovsschema").write_text(json.dumps(converted))
        subprocess.run(["ovsdb-client", "convert", remote, str(tmp_path / "converted.ovsschema")], check=True,
                       capture_output=True, timeout=30)
        run_until(lambda: len(replica.changes.table("Logical_Switch")) == 2)
        assert not replica.tables["Logical_Switch"].rows and replica.names["Logical_Switch"] == {}
        assert all(change.deleted for change in replica.changes.table("Logical_Switch").values())
        replica.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


class TwoClaims:
    """Ports p1 and p2 on br-int, each with its own Interface (if1, if2), read through ovs's IDL (the real schema,
    Canopy's columns, VrsReporter as the manager runs it); ``claim`` adds a Port that references if1 too."""

    def __init__(self, caplog):
        from ovsdb import vrs

        self.vrs, self.caplog = vrs, caplog
        self.replica = idl._TrackingIdl("tcp:127.0.0.1:1", idl.schema_helper(SCHEMA, vrs.COLUMNS), leader_only=False,
                                        named=("Port", "Interface"))
        self.root, self.bridge = str(uuid.UUID(int=1)), str(uuid.UUID(int=2))
        self.ports = {"p1": str(uuid.UUID(int=0x51)), "p2": str(uuid.UUID(int=0x52))}
        self.ifaces = {"if1": str(uuid.UUID(int=0x11)), "if2": str(uuid.UUID(int=0x12))}
        feed(self.replica, {
            "Open_vSwitch": {self.root: {"initial": {"bridges": ["uuid", self.bridge]}}},
            "Bridge": {self.bridge: {"initial": self.bridge_row()}},
            "Port": {u: {"initial": {"name": n, "interfaces": ["uuid", self.ifaces["if" + n[1]]]}}
                     for n, u in self.ports.items()},
            "Interface": {u: {"initial": {"name": n, "ofport": int(n[2])}} for n, u in self.ifaces.items()}})

    def bridge_row(self):
        return {"name": "br-int", "ports": ["set", [["uuid", u] for u in sorted(self.ports.values())]]}

    def rows(self):
        return list(self.replica.tables["Open_vSwitch"].rows.values())

    def reporter(self, claims=None):
        reporter = self.vrs.VrsReporter(Reports(), "ovsdb:peer", "10.0.0.1:1", claims=claims)
        self.now = 0.0
        reporter._bad._clock = lambda: self.now  # the warnings' throttle (logs.Throttle), on the test's clock
        reporter.refresh(self.rows(), self.replica.changes)
        self.replica.changes = RowChanges()
        return reporter

    def claim(self, name, number):
        """A new Port ``name`` (uuid ``number``; p1's is 0x51) whose interfaces are if1."""
        self.ports[name] = u = str(uuid.UUID(int=number))
        feed(self.replica, {"Port": {u: {"insert": {"name": name, "interfaces": ["uuid", self.ifaces["if1"]]}}},
                            "Bridge": {self.bridge: {"modify": {"ports": ["set", [["uuid", u]]]}}}})

    def delete(self, name):
        u = self.ports.pop(name)
        feed(self.replica, {"Port": {u: {"delete": None}}})
        feed(self.replica, {"Bridge": {self.bridge: {"modify": {"ports": ["set", [["uuid", u]]]}}}})

    def step(self, reporter):
        """Apply what changed; the ports reported, checked against a fresh read of the same rows; the warnings."""
        self.caplog.clear()
        reporter.refresh(self.rows(), self.replica.changes)
        self.replica.changes = RowChanges()
        fresh = self.vrs.build_snapshot("ovsdb:peer", "10.0.0.1:1", self.rows())
        assert reporter.last.ports == fresh.ports
        return [p.name for p in reporter.last.ports], [r.getMessage() for r in self.caplog.records
                                                       if r.levelname == "WARNING"]


def test_a_second_port_claiming_an_interface_is_refused_once_named_and_takes_it_over_when_the_holder_goes(caplog):
    """A hostile peer makes Port rows reference an Interface another port holds: before, the interface went to
    whichever port was applied last, and to nobody once either port was deleted (a fresh read still finds it)."""
    db = TwoClaims(caplog)
    reporter = db.reporter()
    db.claim("evil", 0x61)
    names, warned = db.step(reporter)
    assert names == ["if1", "if2"] and reporter.refused_claims == 1
    assert warned == ["ovsdb:peer (10.0.0.1:1): interface if1 is referenced by port evil and by port p1: it stays "
                      "p1's, the claim of evil is refused"]
    feed(db.replica, {"Interface": {db.ifaces["if2"]: {"modify": {"ofport": 7}}}})  # anything else: not told again
    assert db.step(reporter)[1] == [] and reporter.refused_claims == 1
    db.delete("p1")  # the holder goes: the claim still standing takes the interface over
    assert db.step(reporter) == (["if1", "if2"], [])
    db.now += 60  # the warnings are throttled, all claims together (the next test)
    db.claim("evil2", 0x63)
    assert db.step(reporter)[1] == ["ovsdb:peer (10.0.0.1:1): interface if1 is referenced by port evil2 and by port "
                                    "evil: it stays evil's, the claim of evil2 is refused"]
    db.delete("evil")
    db.delete("evil2")
    assert db.step(reporter) == (["if2"], []) and reporter.refused_claims == 2


def test_many_different_refused_claims_are_one_line_a_minute_with_a_count(caplog):
    """A peer making claim after claim, each a new Port row on if1: one warning line per claim before (the throttle's
    key was the interface and port), at most one a minute per session now, the next one saying how many were held
    back; each is still counted."""
    db = TwoClaims(caplog)
    reporter = db.reporter()
    warned = []
    for i in range(20):
        db.claim(f"evil{i}", 0x100 + i)
        warned += db.step(reporter)[1]
        db.now += 2
    assert warned == ["ovsdb:peer (10.0.0.1:1): interface if1 is referenced by port evil0 and by port p1: it stays "
                      "p1's, the claim of evil0 is refused"]
    assert reporter.refused_claims == 20
    db.now = 60.0
    db.claim("late", 0x200)
    assert db.step(reporter)[1] == ["ovsdb:peer (10.0.0.1:1): interface if1 is referenced by port late and by port "
                                    "p1: it stays p1's, the claim of late is refused (19 more like it in the last "
                                    "60 s)"]
    assert reporter.refused_claims == 21


@pytest.mark.parametrize("number", [0x30, 0x70])  # the claiming port's uuid before p1's (0x51), or after it
def test_a_fresh_read_of_two_claims_gives_the_interface_to_the_smallest_port_uuid_whatever_the_order(caplog, number):
    db = TwoClaims(caplog)
    db.claim("other", number)
    reporter = db.reporter()
    names = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    refused, holder = ("p1", "other") if number < 0x51 else ("other", "p1")
    assert names == [f"ovsdb:peer (10.0.0.1:1): interface if1 is referenced by port {refused} and by port {holder}: "
                     f"it stays {holder}'s, the claim of {refused} is refused"]
    assert [p.name for p in reporter.last.ports] == ["if1", "if2"] and reporter.refused_claims == 1


def test_a_refused_claim_is_told_without_walking_the_bridges_ports(caplog, monkeypatch):
    """Naming the two ports of a refused claim read every port of the bridge (unpaced) on each update bringing one, even
    when its line was then throttled: a peer adding claim after claim made each update cost O(ports). The names are
    read from the two ports' rows now: an update bringing a claim (and one taking it over) walks no port list."""
    from ovsdb import bridgeports

    db = TwoClaims(caplog)
    reporter = db.reporter()
    walks = []

    def walk(row, column):
        walks.append(column)
        raise AssertionError(f"walked {column}")

    for name, number in (("evil", 0x61), ("evil2", 0x62)):
        db.claim(name, number)
        caplog.clear()
        with monkeypatch.context() as patch:
            patch.setattr(bridgeports, "referenced_rows", walk)
            reporter.refresh(db.rows(), db.replica.changes)
        db.replica.changes = RowChanges()
        db.now += 60
        assert walks == [] and [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
            f"ovsdb:peer (10.0.0.1:1): interface if1 is referenced by port {name} and by port p1: it stays p1's, the "
            f"claim of {name} is refused"]
    db.delete("p1")  # evil takes if1 over; evil2's claim, told already, is not told again
    assert db.step(reporter) == (["if1", "if2"], []) and reporter.refused_claims == 2
