"""A big update applied in slices against the same update applied whole (ovsdb/idl/slices.py): the oracle.

Random sequences of updates on the real schema (``test_ovsdb_slices.Database``), each applied to two replicas of
the same rows, one whole (no reader of slices) and one in slices (a reader taking the changes at each), of every
shape: big inserts and deletes (the lead slice, the growing ones, the rest made after them), inserts mixed with
deletes, an interface modified too, a port moved (with ports added or deleted), a deleted port named by another
bridge's difference too, a deleted port's row named twice (its uuid's text in upper case too), the root changed too, interfaces shared between ports (inserted
shared, deleted while the other port stays), a port deleted while its interface stays, an interface inserted again,
a port inserted holding an interface the update lacks, and malformed shapes. After each: the same refusal or none;
unrefused, the same rows, name index, row notifications (each row's, in order; a bridge's ``ports`` changes merged)
and the reporter's snapshot.
"""

import json
import logging
import random

import pytest

from ovsdb import vrs
from ovsdb.claims import VrsClaims
from ovsdb.idl import slices
from ovsdb.rowchanges import RowChanges
from tests.unit.sinks import Reports
from tests.unit.test_ovsdb_slices import (SLICE, UPDATE2, Database, _refs, _uuid, contents, names, root_rows,
                                          session, small_slices, take)

__all__ = ["small_slices"]  # the fixture, used by name


def _inserted(update):
    return sorted(port for port, row_update in update["Port"].items() if "insert" in row_update)


def _shared(db, update):
    """A second inserted port holding the first's interface too."""
    if len(_inserted(update)) < 2:
        return
    first, second = _inserted(update)[:2]
    iface = _refs(update["Port"][first]["insert"]["interfaces"])[0]
    update["Port"][second]["insert"]["interfaces"][1].append(["uuid", iface])


def _keep_an_interface(db, update):
    """A deleted port's interface stays (another port may hold it)."""
    if update["Interface"]:
        del update["Interface"][db.rng.choice(sorted(update["Interface"]))]


def _foreign_interface(db, update):
    """An inserted port holding an interface the update does not insert (one that exists, when any does)."""
    if not _inserted(update):
        return
    port = db.rng.choice(_inserted(update))
    held = sorted(set(db.rows["Interface"]) - set(update["Interface"])) or [_uuid()]
    update["Port"][port]["insert"]["interfaces"][1].append(["uuid", db.rng.choice(held)])


def _insert_again(db, update):
    """An interface that exists inserted again by a new port: the row replaced, as whole."""
    if db.rows["Interface"] and _inserted(update):
        iface = db.rng.choice(sorted(db.rows["Interface"]))
        port = db.rng.choice(_inserted(update))
        update["Interface"][iface] = {"insert": {"name": "again", "ofport": ["set", [1]]}}
        update["Port"][port]["insert"]["interfaces"][1].append(["uuid", iface])


def _mixed(db, update):
    """A delete and an insert in one update (applied whole)."""
    more = db.insert_ports(2)
    for table, rows in more.items():
        for key, row_update in rows.items():
            update.setdefault(table, {}).setdefault(key, row_update)


def _named_by_another_bridge(db, update):
    """A deleted port also named in the other bridge's ``ports`` difference (a hostile peer's: it adds the port there,
    a dangling reference), that bridge's row first or last in the update."""
    if not update.get("Bridge"):
        return
    port = db.rng.choice(sorted(update["Port"]))
    other = next(b for b in db.bridges if port not in db.members(b))
    update["Bridge"].setdefault(other, {"modify": {"ports": ["set", []]}})["modify"]["ports"][1].append(["uuid", port])
    order = sorted(update["Bridge"], key=lambda bridge: (bridge != other) == db.rng.choice((True, False)))
    update["Bridge"] = {bridge: update["Bridge"][bridge] for bridge in order}


def _moved_while_deleting(db, update):
    """A port that stays, moved from one bridge to the other in a big delete."""
    staying = [(b, p) for b in db.bridges for p in db.members(b) if p not in update["Port"]]
    if not staying:
        return
    _, port = db.rng.choice(staying)
    for bridge in db.bridges:
        update.setdefault("Bridge", {}).setdefault(bridge, {"modify": {"ports": ["set", []]}})["modify"]["ports"][
            1].append(["uuid", port])


def _uuid_text_twice(db, update):
    """A deleted port's row named again under its uuid's other text (upper case: the same row), first or last."""
    port = db.rng.choice(sorted(update["Port"]))
    rows = {port.upper(): {"delete": None}}
    update["Port"] = {**rows, **update["Port"]} if db.rng.random() < 0.5 else {**update["Port"], **rows}


def _malformed(db, update):
    """A shape ovs refuses (the planner must leave it whole, or the slices before the break must be as whole's)."""
    rng = db.rng
    port = rng.choice(sorted(update["Port"]))
    bridge = rng.choice(sorted(db.bridges))
    rng.choice([
        lambda: update["Port"].update({port: {"insert": {"interfaces": 5}}}),
        lambda: update["Port"].update({port: {"delete": None, "insert": {}}}),
        lambda: update["Bridge"].update({bridge: {"modify": {"ports": ["uuid", ["x"]], "name": "b"}}}),
        lambda: update["Bridge"].update({bridge: {"modify": {"ports": ["map", []]}}}),
        lambda: update["Bridge"].update({_uuid(): {"modify": {"ports": ["set", []]}}}),
        lambda: update.update(Mirror={_uuid(): None}),
        lambda: update["Port"].update({_uuid(): {"delete": None}}),
    ])()


SHAPES = [None, None, None, _shared, _keep_an_interface, _foreign_interface, _insert_again, _mixed, _malformed]


def _rows_of(replica):
    """The replica's rows as ``Database.rows`` (the next update's starting point)."""
    return {table: {u: {c: json.loads(v) for c, v in row.items()} for u, row in rows.items()}
            for table, rows in contents(replica).items()}


def _apply(db, rows, update, sliced):
    """(replica, notifications {(table, uuid): [(deleted, columns, row json)]}, reporter's last ports, slices seen)."""
    db.rows = json.loads(json.dumps(rows))
    replica = db.fresh()
    sink = Reports()
    reporter = session(replica, VrsClaims(sink, 0.0, logging.getLogger("test")), sink)
    notified, seen = {}, []
    record, deleted = replica.changes.record, replica._deleted

    def note(table, key, change):
        row = {c: json.dumps(change.row._data[c].to_json(), sort_keys=True) for c in change.row._data}
        notified.setdefault((table, key), []).append((change.deleted, change.columns, row))

    def recorded(table, key, change):
        note(table, key, change)
        replica.changes.record_real(table, key, change)

    def on_deleted(table, row):  # a deleted row's change is written without ``record`` (paced.py ``_deleted``)
        deleted(table, row)
        note(table, row.uuid.int, replica.changes.table(table)[row.uuid.int])

    replica._deleted = on_deleted
    deleted_all = replica.notify_deleted

    def on_deleted_all(table, rows):  # rows only deleted, told together (rowloop.py, paced.py ``notify_deleted``)
        deleted_all(table, rows)
        for row in rows:
            note(table, row.uuid.int, replica.changes.table(table)[row.uuid.int])

    replica.notify_deleted = on_deleted_all

    def hook(changes):
        changes.record_real = changes.record
        changes.record = recorded
        return changes

    hook(replica.changes)
    if sliced:
        def on_slice():
            seen.append(1)
            take(replica, reporter)
            hook(replica.changes)
        replica.on_slice = on_slice
    else:
        replica.on_slice = None
    del record
    replica._Idl__parse_update(json.loads(json.dumps(update)), UPDATE2)
    if replica.refused is None:
        take(replica, reporter)
    return replica, notified, reporter.last.ports, bool(seen)


def _merged_bridges(notified):
    """Each Bridge row's notifications as one (a slice's ``ports`` difference each): columns merged, the last row."""
    out = {}
    for (table, key), changes in notified.items():
        if table == "Bridge":
            columns = frozenset().union(*(c[1] or () for c in changes))
            out[table, key] = [(changes[-1][0], columns, changes[-1][2])]
        else:
            out[table, key] = changes
    return out


@pytest.mark.parametrize("seed", range(16))
def test_an_update_applied_in_slices_leaves_what_it_leaves_applied_whole(seed, small_slices):
    rng = random.Random(1000 + seed)
    db = Database(rng)
    rows = json.loads(json.dumps(db.rows))
    cut = deletions = 0
    for _ in range(10):
        db.rows = json.loads(json.dumps(rows))
        ports = len(db.rows["Port"])
        try:  # Database's generators expect its own shapes: a port without its interfaces here makes a big insert
            if ports > SLICE and rng.random() < 0.5:
                update = db.delete_ports(rng.randint(SLICE + 1, ports))
                shape = rng.choice([None, None, _keep_an_interface, _mixed, _malformed, _named_by_another_bridge,
                                    _moved_while_deleting, _uuid_text_twice])
            else:
                update, _ = db.random_update()
                shape = rng.choice(SHAPES)
        except KeyError:
            db.rows = json.loads(json.dumps(rows))
            update, shape = db.insert_ports(rng.randint(SLICE + 1, 4 * SLICE)), rng.choice(SHAPES)
        if shape is not None and update.get("Port"):
            shape(db, update)
        update = {table: rows for table, rows in update.items() if rows != {}}
        whole, whole_notified, whole_ports, whole_seen = _apply(db, rows, update, sliced=False)
        sliced, sliced_notified, sliced_ports, seen = _apply(db, rows, update, sliced=True)
        assert not whole_seen
        assert (whole.refused is None) == (sliced.refused is None), (whole.refused, sliced.refused)
        if whole.refused is not None:
            continue  # the session is dropped; the next one reads the database afresh (test_ovsdb_slices.py)
        cut += seen
        deletions += sum(change[0] for changes in whole_notified.values() for change in changes)
        assert contents(sliced) == contents(whole)
        assert names(sliced) == names(whole)
        assert not sliced.uncovered and not whole.uncovered
        assert _merged_bridges(sliced_notified) == _merged_bridges(whole_notified)
        assert sliced_ports == whole_ports
        rows = _rows_of(whole)
    assert cut  # some of them were cut
    assert deletions  # and deleted rows' notifications were compared


def test_the_oracle_sees_a_slice_that_differs(small_slices, monkeypatch):
    """The oracle can fail: a slice that drops a port's interface is told apart from the update applied whole."""
    real = slices._slice

    def lossy(ports, update, held, owner):
        part = real(ports, update, held, owner)
        part["Interface"].pop(next(iter(part["Interface"])), None)
        return part

    monkeypatch.setattr(slices, "_slice", lossy)
    db = Database(random.Random(5))
    rows = json.loads(json.dumps(db.rows))
    update = db.insert_ports(20)
    whole = _apply(db, rows, update, sliced=False)[0]
    sliced, _, _, seen = _apply(db, rows, update, sliced=True)
    assert seen and contents(sliced) != contents(whole)


@pytest.mark.parametrize("other_first", [True, False])
def test_a_deleted_port_another_bridge_names_too_is_left_to_the_rest(other_first, small_slices):
    """A big delete whose deleted port is also added to the other bridge (a hostile peer's: a dangling reference,
    which the whole update leaves there): that port is in no slice, whichever bridge's row comes first, and the rows
    are the whole update's (a slice took it out of both bridges' differences, the other's addition lost)."""
    db = Database(random.Random(3))
    db._apply(db.insert_ports(20))
    rows = json.loads(json.dumps(db.rows))
    update = db.delete_ports(20)
    port = sorted(update["Port"])[0]
    other = next(b for b in db.bridges if port not in _refs(rows["Bridge"][b]["ports"]))
    diff = {"modify": {"ports": ["set", [["uuid", port]]]}}
    if other in update["Bridge"]:
        diff["modify"]["ports"][1] += update["Bridge"].pop(other)["modify"]["ports"][1]
    update["Bridge"] = {other: diff, **update["Bridge"]} if other_first else {**update["Bridge"], other: diff}
    parts = list(slices.plan(json.loads(json.dumps(update)), db.fresh().tables))
    assert len(parts) > 2 and all(port not in part.get("Port", ()) for part in parts[:-1])
    whole, _, whole_ports, _ = _apply(db, rows, update, sliced=False)
    sliced, _, sliced_ports, seen = _apply(db, rows, update, sliced=True)
    assert seen and whole.refused is None and sliced.refused is None
    assert port in contents(whole)["Bridge"][other]["ports"]
    assert contents(sliced) == contents(whole) and sliced_ports == whole_ports


@pytest.mark.parametrize("kind", ["insert", "delete"])
def test_a_port_of_two_bridges_one_renamed_too_keeps_its_other_bridge_in_the_rest(kind, small_slices):
    """A port in two bridges at once (ovsdb-server lets a database hold it), added or deleted in a big update whose
    other bridge's row changes another column too (renamed: that bridge's difference goes whole to the rest): the
    port is sliced with the bridge whose ``ports`` alone change, and the rest still adds it to (removes it from) the
    renamed one (a slice took it out of every bridge's difference: the renamed bridge kept a deleted port, or lacked
    an added one, against the whole update)."""
    db = Database(random.Random(6))
    db._apply(db.insert_ports(20))
    first, second = sorted(db.bridges)
    update = db.insert_ports(20) if kind == "insert" else db.delete_ports(20)
    port = sorted(update["Port"])[0]
    if kind == "delete":  # it is in both bridges now
        for bridge in db.bridges:
            if port not in db.members(bridge):
                db.rows["Bridge"][bridge]["ports"][1].append(["uuid", port])
    for bridge in db.bridges:
        diff = update["Bridge"].setdefault(bridge, {"modify": {"ports": ["set", []]}})["modify"]
        diff["ports"][1] = [ref for ref in diff["ports"][1] if ref[1] != port] + [["uuid", port]]
    update["Bridge"][second]["modify"]["name"] = "br-renamed"
    rows = json.loads(json.dumps(db.rows))
    whole, _, whole_ports, _ = _apply(db, rows, update, sliced=False)
    sliced, _, sliced_ports, seen = _apply(db, rows, update, sliced=True)
    assert seen and whole.refused is None and sliced.refused is None
    assert (port in contents(whole)["Bridge"][second]["ports"]) == (kind == "insert")
    assert contents(sliced) == contents(whole) and sliced_ports == whole_ports
