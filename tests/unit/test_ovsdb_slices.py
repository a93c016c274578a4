"""A big update of ports applied and reported in slices (ovsdb/idl/slices.py, ``_PacedIdl.on_slice``).

The real Open_vSwitch schema and Canopy's columns (ovsdb/vrs.py ``COLUMNS``); updates are fed to the IDL's update
parser directly (what ``Idl.run`` does with a message), with a ``VrsReporter`` reading each slice as the OVSDB
session does (ovsdb/server.py). The property test checks, after random sequences of updates (big inserts and
deletes of ports, and updates that must not be cut: a port renamed, an iface-id changed, a port moved):

- at every slice, the replica holds a state that smaller transactions could have produced: every row as it was or
  as it will be, a port on its bridge exactly when it exists (with its interfaces), no reference dangling;
- the reporter's snapshot at every slice is what a fresh read of those rows gives;
- after the update, the replica, its name index and the reporter equal a fresh read of the database;
- an update that renames or re-binds a port is applied whole (no slice); a port moved between bridges in an update
  that also adds many is moved in its last slice (on one bridge at every slice).

A refused update (a value that does not parse, in a late slice) leaves reported the slices before it, each such a
state; the session is dropped, and the next session's first read reports the database as it is, naming every port
that differs from what was reported (``VrsReporter``'s resync against the last snapshot reported).
"""

import json
import logging
import random
import uuid

import ovs.db.idl
import pytest

from ovsdb import idl, vrs
from ovsdb.claims import VrsClaims
from ovsdb.idl import slices
from ovsdb.rowchanges import RowChanges
from tests.unit.sinks import Reports
from tests.unit.test_ovsdb_idl_parse import SCHEMA

UPDATE2 = ovs.db.idl.OVSDB_UPDATE2
SLICE = 4  # ports in the slice after the lead here (slices.SLICE_PORTS: 500)
LEAD = 2  # ports in the first slice here (slices.LEAD_PORTS: 100)
TABLES = ("Open_vSwitch", "Bridge", "Port", "Interface")


def _uuid():
    return str(uuid.uuid4())


def _refs(value):
    """The uuids of a reference set's JSON (a set, or a single ``["uuid", u]``)."""
    return sorted(u for _, u in value[1]) if value[0] == "set" else [value[1]]


class Database:
    """The server's rows (the JSON of Canopy's columns) and the update2 updates that change them."""

    def __init__(self, rng):
        self.rng = rng
        self.root = _uuid()
        self.bridges = {_uuid(): "br-int", _uuid(): "br-ex"}
        self.rows = {"Open_vSwitch": {self.root: {"bridges": ["set", [["uuid", b] for b in self.bridges]],
                                                  "external_ids": ["map", [["system-id", "kvm1"]]]}},
                     "Bridge": {b: {"name": name, "ports": ["set", []]} for b, name in self.bridges.items()},
                     "Port": {}, "Interface": {}}
        self.serial = 0
        for _ in range(rng.randint(0, 6)):
            update = self.insert_ports(1)
            self._apply(update)

    # ------------------------------------------------------------------ rows
    def _port(self):
        """(port uuid, its row, {interface uuid: row}) of a new port with one or two interfaces."""
        self.serial += 1
        name = "tap%d" % self.serial
        ifaces = {_uuid(): {"name": name + ("" if k == 0 else "-%d" % k), "ofport": ["set", [self.serial]],
                            "external_ids": ["map", [["iface-id", "vp%d" % self.rng.randint(0, 20)]]]}
                  for k in range(self.rng.choice((1, 1, 1, 2)))}
        return _uuid(), {"name": name, "interfaces": ["set", [["uuid", i] for i in ifaces]]}, ifaces

    def members(self, bridge):
        return _refs(self.rows["Bridge"][bridge]["ports"])

    # ------------------------------------------------------------------ updates (each also applied to self.rows)
    def insert_ports(self, n):
        update = {"Interface": {}, "Port": {}, "Bridge": {}}
        added = {b: [] for b in self.bridges}
        for _ in range(n):
            port, row, ifaces = self._port()
            update["Port"][port] = {"insert": row}
            update["Interface"].update({i: {"insert": r} for i, r in ifaces.items()})
            added[self.rng.choice(list(self.bridges))].append(port)
        for bridge, ports in added.items():
            if ports:
                update["Bridge"][bridge] = {"modify": {"ports": ["set", [["uuid", p] for p in ports]]}}
        return update

    def delete_ports(self, n):
        update = {"Interface": {}, "Port": {}, "Bridge": {}}
        on = [(b, p) for b in self.bridges for p in self.members(b)]
        for bridge, port in self.rng.sample(on, min(n, len(on))):
            update["Port"][port] = {"delete": None}
            for iface in _refs(self.rows["Port"][port]["interfaces"]):
                update["Interface"][iface] = {"delete": None}
            diff = update["Bridge"].setdefault(bridge, {"modify": {"ports": ["set", []]}})
            diff["modify"]["ports"][1].append(["uuid", port])
        return update

    def random_update(self):
        """(update, whether it may be cut into slices)."""
        rng = self.rng
        kind = rng.choice(("insert", "insert", "delete", "delete", "rename", "iface-id", "move", "small"))
        ports = sum(len(self.members(b)) for b in self.bridges)
        if kind == "delete" and ports <= SLICE:
            kind = "insert"
        if kind in ("insert", "rename", "iface-id", "move"):
            update = self.insert_ports(rng.randint(SLICE + 1, 4 * SLICE))
        elif kind == "delete":
            update = self.delete_ports(rng.randint(SLICE + 1, ports))
        else:
            update = self.insert_ports(rng.randint(1, SLICE))
        sliced = kind in ("insert", "delete", "move")  # a move: the ports added are cut, the move is in the last slice
        if kind == "rename" and not ports or kind == "iface-id" and not self.rows["Interface"]:
            sliced = True  # nothing to rename or re-bind yet: a big insert only (seed 27 of the test below, at 3 ports)
        if kind == "rename" and ports:  # a port deleted and inserted again under its name: applied whole
            gone = self.delete_ports(1)
            for table in ("Port", "Interface"):
                update[table].update(gone[table])
            for bridge, diff in gone["Bridge"].items():
                update["Bridge"].setdefault(bridge, {"modify": {"ports": ["set", []]}})["modify"]["ports"][1] += \
                    diff["modify"]["ports"][1]
        elif kind == "iface-id" and self.rows["Interface"]:  # an existing interface re-bound: applied whole
            iface = rng.choice(sorted(self.rows["Interface"]))
            update["Interface"][iface] = {"modify": {"external_ids": ["map", [["iface-id", "moved"]]]}}
        elif kind == "move" and ports:  # a port moved from one bridge to the other, with ports added
            source = rng.choice([b for b in self.bridges if self.members(b)])
            target = next(b for b in self.bridges if b != source)
            port = rng.choice(self.members(source))
            for bridge in (source, target):
                update["Bridge"].setdefault(bridge, {"modify": {"ports": ["set", []]}})["modify"]["ports"][1].append(
                    ["uuid", port])
        elif kind in ("insert", "delete") and rng.random() < 0.3:  # another column of the root: order unknown, whole
            update["Open_vSwitch"] = {self.root: {"modify": {"external_ids": ["map", [["note", str(self.serial)]]]}}}
            sliced = False
        self._apply(update)
        return {table: rows for table, rows in update.items() if rows}, sliced

    def _apply(self, update):
        for table, rows in update.items():
            for u, row_update in rows.items():
                if "delete" in row_update:
                    del self.rows[table][u]
                elif "insert" in row_update:
                    self.rows[table][u] = json.loads(json.dumps(row_update["insert"]))
                else:
                    row = self.rows[table][u]
                    for column, diff in row_update["modify"].items():
                        if column in ("ports", "bridges"):
                            now = set(_refs(row[column])) ^ set(_refs(diff))
                            row[column] = ["set", [["uuid", p] for p in sorted(now)]]
                        else:  # external_ids: update2's map difference (a key with its value again: removed)
                            pairs = dict(row[column][1])
                            for key, value in diff[1]:
                                if pairs.get(key) == value:
                                    del pairs[key]
                                else:
                                    pairs[key] = value
                            row[column] = ["map", sorted(map(list, pairs.items()))]

    def fresh(self, columns=vrs.COLUMNS):
        """A replica (reading ``columns``) that has read the database once."""
        replica = tracking(columns)
        replica._Idl__parse_update({t: {u: {"initial": r} for u, r in rows.items()} for t, rows in self.rows.items()},
                                   UPDATE2)
        replica.state = replica.IDL_S_MONITORING
        return replica


def tracking(columns=vrs.COLUMNS):
    helper = idl.schema_helper(SCHEMA, columns)
    return idl._TrackingIdl("tcp:127.0.0.1:1", helper, leader_only=False, named=("Port", "Interface"))


def contents(replica):
    """{table: {uuid: {column: value}}} of Canopy's columns, references as uuid strings."""
    out = {}
    for table in TABLES:
        rows = {}
        for u, row in replica.tables[table].rows.items():
            rows[str(u)] = {c: json.dumps(row._data[c].to_json(), sort_keys=True) for c in vrs.COLUMNS[table]
                            if c in row._data}
        out[table] = rows
    return out


def names(replica):
    return {table: {n: sorted(str(uuid.UUID(int=u)) for u in rows) for n, rows in replica.names[table].items()}
            for table in ("Port", "Interface")}


def root_rows(replica):
    return list(replica.tables["Open_vSwitch"].rows.values())


def session(replica, claims, sink):
    """A reporter reading ``replica`` as ovsdb/server.py's session does: its first copy, then each slice."""
    reporter = vrs.VrsReporter(sink, "ovsdb:peer", "10.0.0.1:1", claims=claims)
    reporter.refresh(root_rows(replica), replica.changes)
    replica.changes = RowChanges()
    return reporter


def take(replica, reporter):
    changes, replica.changes = replica.changes, RowChanges()
    reporter.refresh(root_rows(replica), changes)


def assert_a_state_between(replica, before, after):
    """Every row as it was or as it will be, but a bridge's ports: those of before and after, a port inserted or
    deleted on its bridge exactly when it exists, a port moved on one bridge; no reference dangles."""
    now = contents(replica)
    members = {bridge: set(_members(now, bridge)) for bridge in now["Bridge"]}
    ports, ifaces = now["Port"], now["Interface"]
    for bridge in members:
        assert members[bridge] <= set(_members(before, bridge)) | set(_members(after, bridge))
        assert members[bridge] <= ports.keys(), "a dangling port reference"
        for u in set(_members(before, bridge)) ^ set(_members(after, bridge)):
            if (u in before["Port"]) != (u in after["Port"]):  # inserted or deleted (not moved)
                assert (u in members[bridge]) == (u in ports), "a port apart from its bridge"
        now["Bridge"][bridge] = dict(now["Bridge"][bridge], ports=after["Bridge"][bridge]["ports"])
    for table in TABLES:
        for u in now[table].keys() | before[table].keys() | after[table].keys():
            assert now[table].get(u) in (before[table].get(u), after[table].get(u)), (table, u)
    for row in ports.values():
        assert set(_refs(json.loads(row["interfaces"]))) <= ifaces.keys(), "a port without its interfaces"
    on_before = {u: {b for b in before["Bridge"] if u in _members(before, b)} for u in before["Port"]}
    on_after = {u: {b for b in after["Bridge"] if u in _members(after, b)} for u in after["Port"]}
    for u in before["Port"].keys() & after["Port"].keys():  # a port moved is on one bridge, never two or none
        assert {b for b in members if u in members[b]} in (on_before[u], on_after[u]), "a port moved across slices"


def _members(state, bridge):
    return _refs(json.loads(state["Bridge"][bridge]["ports"]))


@pytest.fixture
def small_slices(monkeypatch):
    monkeypatch.setattr(slices, "SLICE_PORTS", SLICE)
    monkeypatch.setattr(slices, "LEAD_PORTS", LEAD)


@pytest.mark.parametrize("seed", range(12))
def test_slices_are_states_smaller_transactions_give_and_the_end_is_a_fresh_read(seed, small_slices):
    rng = random.Random(seed)
    db = Database(rng)
    replica = db.fresh()
    sink = Reports()
    reporter = session(replica, VrsClaims(sink, 0.0, logging.getLogger("test")), sink)
    for _ in range(12):
        before = contents(replica)
        update, sliceable = db.random_update()
        after = contents(db.fresh())
        seen = []

        def on_slice():
            assert_a_state_between(replica, before, after)
            take(replica, reporter)
            assert reporter.last.ports == vrs.build_snapshot("x", "10.0.0.1:1", root_rows(replica)).ports
            seen.append(len(reporter.last.ports))

        replica.on_slice = on_slice
        replica._Idl__parse_update(json.loads(json.dumps(update)), UPDATE2)
        assert replica.refused is None
        assert bool(seen) == sliceable, (update.keys(), sliceable)
        assert contents(replica) == after
        fresh = db.fresh()
        assert names(replica) == names(fresh)
        take(replica, reporter)
        assert reporter.last.ports == vrs.build_snapshot("x", "10.0.0.1:1", root_rows(fresh)).ports
        assert sink.updates[-1].ports == reporter.last.ports


def test_the_slices_grow_and_each_holds_ports_with_their_interfaces_and_their_bridges_difference(small_slices):
    db = Database(random.Random(1))
    replica = db.fresh()
    update = db.insert_ports(30)
    parts = list(slices.plan(json.loads(json.dumps(update)), replica.tables))
    assert [len(part["Port"]) for part in parts] == [2, 4, 8, 8, 4, 4]  # the lead, growing, then at most half left
    for part in parts:
        ports = set(part["Port"])
        added = {u for row in part["Bridge"].values() for _, u in row["modify"]["ports"][1]}
        assert added == ports
        held = {i for p in ports for i in _refs(update["Port"][p]["insert"]["interfaces"])}
        assert set(part["Interface"]) == held


@pytest.mark.parametrize("what", ["old protocol", "first copy", "no reader", "few ports", "a port deleted too",
                                  "an interface changed too", "its bridge renamed too", "the system-id changed too"])
def test_an_update_that_is_not_a_pure_big_insert_or_delete_is_applied_whole(what, small_slices):
    db = Database(random.Random(2))
    replica = db.fresh()
    update = db.insert_ports(3 if what == "few ports" else 20)
    version = UPDATE2
    calls = []
    replica.on_slice = lambda: calls.append(1)
    if what == "old protocol":
        version = ovs.db.idl.OVSDB_UPDATE
        update = {t: {u: {"new": r["insert"]} for u, r in rows.items()} for t, rows in update.items() if t != "Bridge"}
    elif what == "first copy":
        replica.state = replica.IDL_S_DATA_MONITOR_COND_REQUESTED
    elif what == "no reader":
        replica.on_slice = None
    elif what == "a port deleted too":
        update["Port"][_uuid()] = {"delete": None}
    elif what == "an interface changed too":
        update["Interface"][_uuid()] = {"modify": {"external_ids": ["map", []]}}
    elif what == "its bridge renamed too":  # transactions merged, order unknown: the ports may be added after it
        for diff in update["Bridge"].values():
            diff["modify"]["name"] = "br-old"
    elif what == "the system-id changed too":  # the ports would be reported under the old one
        update["Open_vSwitch"] = {db.root: {"modify": {"external_ids": ["map", [["system-id", "kvm1"]]]}}}
    replica._Idl__parse_update(json.loads(json.dumps(update)), version)
    assert not calls


def test_a_replica_reading_another_reference_to_ports_applies_a_big_delete_whole(small_slices):
    """A Mirror's ``select_src_port`` is a weak reference: ovsdb-server removes a deleted port from it in the same
    transaction, and the Mirror row's change would be in the last slice, the reference dangling before it."""
    db = Database(random.Random(5))
    db._apply(db.insert_ports(20))
    update = db.delete_ports(20)
    assert slices.plan(json.loads(json.dumps(update)), db.fresh().tables) is not None
    mirrored = db.fresh(dict(vrs.COLUMNS, Mirror=("name", "select_src_port")))
    assert slices.plan(json.loads(json.dumps(update)), mirrored.tables) is None


@pytest.mark.parametrize("broken", [
    lambda u: u.update(Port=[]), lambda u: u["Port"].update(x=5),
    lambda u: next(iter(u["Port"].values()))["insert"].update(interfaces=5),
    lambda u: next(iter(u["Port"].values()))["insert"].update(interfaces=["uuid"]),
    lambda u: next(iter(u["Bridge"].values()))["modify"].update(ports=["map", []]),
    lambda u: next(iter(u["Bridge"].values()))["modify"]["ports"][1].append(["named-uuid", "x"]),
    lambda u: u["Bridge"].update({_uuid(): None}),
    # what the rest (made after the slices: _check_rest) reads: a bridge with another column, a table of rows
    lambda u: u["Bridge"].update({_uuid(): {"modify": {"name": "br-x", "ports": ["map", []]}}}),
    lambda u: u.update(Mirror=[]),
    lambda u: u["Bridge"].update({_uuid(): {"modify": {"name": "br-x", "ports": ["uuid", ["x"]]}}}),  # unhashable
])
def test_a_shape_the_planner_does_not_expect_is_left_whole_to_ovs(broken, small_slices):
    db = Database(random.Random(3))
    replica = db.fresh()
    update = db.insert_ports(20)
    assert slices.plan(json.loads(json.dumps(update)), replica.tables) is not None
    broken(update)
    assert slices.plan(update, replica.tables) is None


def test_a_refused_slice_leaves_the_slices_before_it_reported_and_the_next_session_converges(small_slices):
    """What may have been reported of a refused update: the slices before the one that broke the protocol, each a
    state smaller transactions could have produced. The session is dropped; the next one reads the database afresh
    and reports it, naming every port that differs from what was reported."""
    db = Database(random.Random(4))
    replica = db.fresh()
    sink = Reports()
    claims = VrsClaims(sink, 60.0, logging.getLogger("test"))
    reporter = session(replica, claims, sink)
    before = contents(replica)
    saved = json.loads(json.dumps(db.rows))
    update = db.insert_ports(30)
    bad = list(update["Interface"])[-1]  # in the last slice
    update["Interface"][bad]["insert"]["ofport"] = "not a number"
    reported = []

    def on_slice():
        take(replica, reporter)
        reported.append({p.name for p in reporter.last.ports})

    replica.on_slice = on_slice
    replica._Idl__parse_update(json.loads(json.dumps(update)), UPDATE2)
    assert replica.refused.startswith("update refused: Interface row %s: column ofport" % bad), replica.refused
    assert not replica._session.is_connected()
    assert len(reported) == 5 and len(reported[-1]) > len(before["Port"])  # 2 + 4 + 8 + 8 + 4 ports reported
    partial = sink.updates[-1]
    # the peer's database, whatever it holds now (here: as before the update); the next session reads it whole
    db.rows = saved
    fresh = db.fresh()
    reporter.gone()
    again = vrs.VrsReporter(sink, "ovsdb:peer2", "10.0.0.1:2", claims=claims)
    again.refresh(root_rows(fresh), None)
    last = sink.updates[-1]
    assert last.ports == vrs.build_snapshot("x", "10.0.0.1:2", root_rows(fresh)).ports
    differ = {p.name for p in partial.ports} ^ {p.name for p in last.ports}
    assert differ and differ <= last.changed


@pytest.mark.parametrize("count", [501, 1200, 3000, 10000, 60000])
def test_the_slices_grow_then_shrink_so_the_last_is_no_bigger_than_the_first(count):
    """What the reader makes of the last slice waits for nothing after it (a big delete's last EVPN withdrawals: 2,500
    of 10,000 when the slices only doubled), so the slices shrink again: each at most GROWTH times the one before
    and half of the ports left (but the first's size), the last no bigger than the first."""
    got = slices.sizes(count, 500)
    assert sum(got) == count and got[0] == 500 and got[-1] <= 500, got
    left = count
    for before, size in zip([500] + got, got):
        assert size <= before * slices.GROWTH and size <= max(500, (left + 1) // 2), got
        left -= size
    assert len(got) <= 2 * count.bit_length(), got  # a few slices, not one per 500 ports


def test_the_slices_of_few_ports_are_whole_and_none_is_empty():
    """The edges: no ports, no slice; up to the first slice's size, one; one port past a slice, a slice of one."""
    assert [slices.sizes(count, 500) for count in (0, 1, 499, 500, 501, 1001)] == \
        [[], [1], [499], [500], [500, 1], [500, 500, 1]]


def test_planning_a_big_delete_gives_the_event_loop_turns_and_plans_the_same():
    """10,000 ports deleted took ~40 ms to plan (a 75 ms stretch of the event loop at load 12): the planner ticks
    the replica's pacer as it looks at the ports, interfaces and rows."""
    from controller.pacer import Pacer

    db = Database(random.Random(5))
    db._apply(db.insert_ports(3000))
    replica = db.fresh()
    update = db.delete_ports(3000)
    pauses = []
    paced = list(slices.plan(json.loads(json.dumps(update)), replica.tables,
                             pacer=Pacer(lambda: pauses.append(1), 100)))
    assert paced == list(slices.plan(json.loads(json.dumps(update)), replica.tables))
    assert [len(part["Port"]) for part in paced] == [100, 500, 1000, 700, 500, 200]  # the lead; the last small
    assert len(pauses) >= 3000 * 3 // (100 * slices.ITEMS_PER_TICK)  # ports, interfaces and rows, each looked at


def test_the_slices_after_the_first_are_built_when_the_reader_reaches_them():
    """A big delete's first withdrawal waits for its own slice only, not for the other slices to be built (~7 ms of
    CPU for 10,000 ports): the plan hands the first out, then builds each of the others when it is reached (its
    ports walked then, ticking the pacer); the same slices as built at once."""
    class Units:  # the units ticked
        n = 0

        def tick(self, units=1):
            self.n += units

    db = Database(random.Random(7))
    db._apply(db.insert_ports(3000))
    replica = db.fresh()
    update = db.delete_ports(3000)
    ticks = Units()
    parts = iter(slices.plan(json.loads(json.dumps(update)), replica.tables, pacer=ticks))
    first = next(parts)
    planned = ticks.n
    rest = list(parts)
    built = ticks.n
    assert [len(part["Port"]) for part in [first, *rest]] == [100, 500, 1000, 700, 500, 200]
    assert built - planned >= 2900 // slices.ITEMS_PER_TICK  # the other slices' 2,900 ports walked after the first
    assert [first, *rest] == list(slices.plan(json.loads(json.dumps(update)), replica.tables))


def test_planning_a_big_delete_reads_the_ports_without_the_rows_mapping(monkeypatch):
    """The planner finds the interfaces each deleted port holds in the replica's rows: HACK (ovs 4.0.0) it reads them
    from ``IndexedRows.data`` (as ovsdb/idl/rowloop.py does), not one ``IndexedRows.__getitem__`` call per row of the
    table through the mapping's ``values()`` (10,000 ports deleted: a fifth of the plan); the plan is the same."""
    from ovs.db import custom_index

    db = Database(random.Random(9))
    db._apply(db.insert_ports(1200))
    replica = db.fresh()
    update = db.delete_ports(1200)
    expected = [[sorted(part.get(table, {})) for table in TABLES] for part in
                slices.plan(json.loads(json.dumps(update)), replica.tables)]
    calls = []
    real = custom_index.IndexedRows.__getitem__
    monkeypatch.setattr(custom_index.IndexedRows, "__getitem__", lambda *args: calls.append(1) or real(*args))
    paced = list(slices.plan(json.loads(json.dumps(update)), replica.tables))
    assert [len(part["Port"]) for part in paced] == [100, 500, 500, 100]
    assert len(calls) <= len(db.bridges)  # a bridge's row, for its members: not one call per port
    assert [[sorted(part.get(table, {})) for table in TABLES] for part in paced] == expected


def test_a_later_slice_is_what_the_plan_read_whatever_the_replica_holds_when_it_is_reached():
    """Between two slices the reader runs and the event loop turns: the replica's rows may change meanwhile (a slice
    applied, or all of them gone as a fresh copy begins). A later slice is built from what the plan read (each
    port's interfaces and bridge, the update's rows), never from the rows then: the same slices as planned at once."""
    db = Database(random.Random(7))
    db._apply(db.insert_ports(3000))
    replica = db.fresh()
    update = db.delete_ports(3000)
    expected = list(slices.plan(json.loads(json.dumps(update)), db.fresh().tables))
    parts = slices.plan(json.loads(json.dumps(update)), replica.tables)
    first = next(parts)
    for table in replica.tables.values():  # as ovs's __clear leaves them
        table.rows = type(table.rows)(table)
    assert [first, *parts] == expected and len(expected) == 6


def test_a_plain_map_over_the_bound_in_a_later_slice_refuses_the_update_before_any_slice(small_slices, monkeypatch):
    """refusals.MAX_PLAIN is checked on the whole update: no slice of it is applied or reported."""
    from ovsdb.idl import refusals

    monkeypatch.setattr(refusals, "MAX_PLAIN", 3)
    db = Database(random.Random(3))
    replica = db.fresh()
    before = contents(replica)
    update = db.insert_ports(30)
    last = list(update["Interface"])[-1]
    update["Interface"][last]["insert"]["external_ids"] = ["map", [[f"k{i}", "v"] for i in range(4)]]
    calls = []
    replica.on_slice = lambda: calls.append(1)
    replica._Idl__parse_update(json.loads(json.dumps(update)), UPDATE2)
    assert replica.refused == "update refused: Interface row %s: column external_ids: 4 elements, more than 3" % last
    assert not calls and contents(replica) == before


def test_the_rest_of_a_big_delete_is_made_after_its_slices(monkeypatch):
    """The rest walks every row of the update (10,000 ports deleted: ~6 ms of CPU): it is made when the reader reaches
    it, after the slices, not before the first slice (which holds the first withdrawal); the same parts."""
    db = Database(random.Random(7))
    db._apply(db.insert_ports(3000))
    update = db.delete_ports(3000)
    update["Open_vSwitch"] = {db.root: {"modify": {"bridges": ["set", []]}}}  # a row the rest holds
    replica = db.fresh()
    expected = list(slices.plan(json.loads(json.dumps(update)), replica.tables))
    made, handed = [], []
    real = slices._rest
    monkeypatch.setattr(slices, "_rest", lambda *args: made.append(len(handed)) or real(*args))
    for part in slices.plan(json.loads(json.dumps(update)), replica.tables):
        handed.append(part)
    assert handed == expected and list(handed[-1]) == ["Open_vSwitch"]
    assert made == [6] and [len(part.get("Port", ())) for part in handed] == [100, 500, 1000, 700, 500, 200, 0]


def test_planning_a_big_delete_reads_each_uuid_text_once(monkeypatch):
    """A deleted port's uuid text is made a number once (for its bridge's members and for its row), an interface's
    once (one by one, or a list at a time): 10,000 ports deleted made 30,000 numbers, a seventh of the plan before the
    first withdrawal."""
    db = Database(random.Random(9))
    db._apply(db.insert_ports(1200))
    replica = db.fresh()
    update = db.delete_ports(1200)
    expected = list(slices.plan(json.loads(json.dumps(update)), replica.tables))
    calls = []
    real, real_many = slices._number, slices._numbers
    monkeypatch.setattr(slices, "_number", lambda text: calls.append(text) or real(text))
    monkeypatch.setattr(slices, "_numbers", lambda texts: calls.extend(texts) or real_many(texts))
    assert list(slices.plan(json.loads(json.dumps(update)), replica.tables)) == expected
    assert len(calls) == len(update["Port"]) + len(update["Interface"]) == len(set(calls))


def test_a_big_delete_leads_with_a_small_slice():
    """The first withdrawal of a big delete waits for the first slice: it holds ``LEAD_PORTS`` ports (100), the
    slices after it grow from ``SLICE_PORTS`` (500) as before; a lead of at most the slice size given."""
    db = Database(random.Random(11))
    db._apply(db.insert_ports(1200))
    replica = db.fresh()
    update = db.delete_ports(1200)
    assert [len(part["Port"]) for part in slices.plan(json.loads(json.dumps(update)), replica.tables)] == \
        [slices.LEAD_PORTS, 500, 500, 100] == [100, 500, 500, 100]
    assert [len(part["Port"]) for part in slices.plan(json.loads(json.dumps(update)), replica.tables, 60)] == \
        [60, 60, 120, 240, 360, 180, 90, 60, 30]


def _deleted_rows(rows):
    ports = {_uuid(): {"delete": None} for _ in range(rows)}
    return ports, {_uuid(): {"delete": None} for _ in range(rows)}, ["set", [["uuid", u] for u in ports]], list(ports)


def test_the_plan_reads_each_row_update_reference_and_uuid_text_in_c_loops():
    """The plan's checks of every row update (one operation, the same for all), of a bridge's reference set and the
    numbers of uuid texts run in C (``map``): their bytecodes do not grow with the rows (10,000 ports deleted: ~30,
    ~25 and ~18 bytecodes a row each in Python loops). Same answers, and the same refusals (ValueError) as before."""
    from tests.bytecodes import opcodes

    def counted(rows):
        ports, ifaces, refs, texts = _deleted_rows(rows)
        return [opcodes(lambda: slices._operation(ports, ifaces)), opcodes(lambda: slices._uuids(refs)),
                opcodes(lambda: slices._numbers(texts))]

    assert counted(1000) == counted(10)
    ports, ifaces, refs, texts = _deleted_rows(50)
    assert slices._operation(ports, ifaces) == slices.DELETE and slices._uuids(refs) == texts
    assert slices._numbers(texts) == [uuid.UUID(u).int for u in texts]
    assert slices._operation({**ports, "x": {"insert": {}}}, ifaces) is None
    assert slices._operation(ports, {**ifaces, "x": {"delete": None, "insert": {}}}) is None
    assert slices._operation(ports, {**ifaces, "x": None}) is None
    assert slices._operation({"x": {"modify": {}}}, {}) is None
    for bad in (["set", [*refs[1], ["uuid", 5]]], ["set", [["named-uuid", "a"]]], ["map", []]):
        with pytest.raises(ValueError):
            slices._uuids(bad)
    with pytest.raises(ValueError):
        slices._numbers([*texts, "not-a-uuid"])


def test_a_big_deletes_plan_hands_out_the_numbers_of_its_ports_and_interfaces_uuids():
    """The plan reads each deleted port's and interface's uuid text as a number (for the bridge's members and the
    ports' interfaces): given ``known``, it hands them out ({text: number}), and the replica's rows deleted and its
    bridge's difference look them up rather than read each text twice more (ovsdb/idl/rowloop.py, datums.py
    ``numbers_of``); an insert hands out none. The same slices either way."""
    import uuid

    db = Database(random.Random(9))
    db._apply(db.insert_ports(40))
    replica = db.fresh()
    update = db.delete_ports(40)
    known = {}
    parts = list(slices.plan(json.loads(json.dumps(update)), replica.tables, 8, known=known))
    assert parts == list(slices.plan(json.loads(json.dumps(update)), replica.tables, 8))
    assert set(update["Port"]) | set(update["Interface"]) <= known.keys()
    assert all(number == uuid.UUID(text).int for text, number in known.items())
    inserted = {}
    assert slices.plan(json.loads(json.dumps(db.insert_ports(40))), replica.tables, 8, known=inserted) is not None
    assert not inserted
