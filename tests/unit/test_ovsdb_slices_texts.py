"""A big delete of ports whose uuid texts are odd or hostile, applied in slices against the same update applied whole
(ovsdb/idl/slices.py with ovsdb/idl/datums.py ``checked_numbers``, the numbers handed on to ovsdb/idl/rowloop.py
and ``_TrackingIdl.row_keys``): the oracle of tests/unit/test_ovsdb_slices_oracle.py, one shape at a time.

Each shape changes a big delete where the plan reads a uuid's text once and hands its number on: texts in upper
case (the same rows), a row named twice under its two texts, a row that is not there, a row update naming "delete"
and more, a delete and an insert of one uuid, a bridge's difference naming ports no slice holds; and a text ovs's
pattern refuses (one ``int(text, 16)`` took, a final newline the pattern takes, braces ``uuid.UUID`` takes) as a
member name, in a bridge's ``ports`` difference, or in a renamed bridge's next to a text the plan read. After each:
the same refusal or none, a refusal saying where; unrefused, the same rows, name index, row notifications and
reporter's ports.
"""

import json
import random
import uuid

import pytest

from tests.unit.test_ovsdb_slices import UPDATE2, Database, _uuid, contents, names, small_slices
from tests.unit.test_ovsdb_slices_oracle import _apply, _merged_bridges

__all__ = ["small_slices"]  # the fixture, used by name


def _some(rng, keys):
    keys = sorted(keys)
    return rng.sample(keys, rng.randint(1, len(keys)))


def _recased(rows: dict, chosen) -> dict:
    """``rows`` with the keys ``chosen`` in upper case, in their order."""
    return {key.upper() if key in chosen else key: row for key, row in rows.items()}


def _upper_interfaces(rng, db, update):
    update["Interface"] = _recased(update["Interface"], _some(rng, update["Interface"]))


def _upper_ports(rng, db, update):
    update["Port"] = _recased(update["Port"], _some(rng, update["Port"]))


def _upper_in_difference(rng, db, update):
    for row_update in update["Bridge"].values():
        for atom in row_update["modify"]["ports"][1]:
            if rng.random() < 0.5:
                atom[1] = atom[1].upper()


def _upper_bridge(rng, db, update):
    update["Bridge"] = _recased(update["Bridge"], _some(rng, update["Bridge"]))


def _interface_twice(rng, db, update):
    iface = rng.choice(sorted(update["Interface"]))
    again = {iface.upper(): {"delete": None}}
    update["Interface"] = {**again, **update["Interface"]} if rng.random() < 0.5 else {**update["Interface"], **again}


def _missing_rows(rng, db, update):
    update[rng.choice(("Port", "Interface"))][_uuid()] = {"delete": None}


def _delete_and_more(rng, db, update):
    table = rng.choice(("Port", "Interface"))
    update[table][rng.choice(sorted(update[table]))] = {"delete": None, "x": 1}


def _delete_and_insert(rng, db, update):
    port = rng.choice(sorted(update["Port"]))
    update["Port"][port.upper()] = {"insert": {"name": "again", "interfaces": ["uuid", _uuid()]}}


def _unsliced_in_difference(rng, db, update):
    """A port that stays and one that is not there named in a bridge's difference, one removal left out."""
    bridge = rng.choice(sorted(update["Bridge"]))
    atoms = update["Bridge"][bridge]["modify"]["ports"][1]
    staying = [port for b in db.bridges for port in db.members(b) if port not in update["Port"]]
    atoms.pop(rng.randrange(len(atoms)))
    atoms.insert(rng.randrange(len(atoms) + 1), ["uuid", _uuid()])
    if staying:
        atoms.insert(rng.randrange(len(atoms) + 1), ["uuid", rng.choice(staying)])


SHAPES = [_upper_interfaces, _upper_ports, _upper_in_difference, _upper_bridge, _interface_twice, _missing_rows,
          _delete_and_more, _delete_and_insert, _unsliced_in_difference]


def _bad_texts(good: str) -> list:
    """Texts of ``good``'s uuid that ovs's pattern refuses, or takes and ``uuid.UUID`` refuses, and a non-text."""
    return [good[:8] + "_" + good[9:],  # int(text without "-", 16) takes the "_"
            " " + good[1:], good[:-1] + "+", good[:-1] + "g", good + "\n", "{%s}" % good, good.replace("-", ""),
            good[:-1] + "\u0661", 7]


def _place_bad(rng, db, update, bad) -> str:
    """``bad`` where a text was: an interface's or a port's member name, an element of a bridge's difference, or one of
    a renamed bridge's difference next to a deleted port another bridge's names (its number read by the plan); the
    words its refusal must hold (where it is)."""
    where = rng.choice(("Interface", "Port", "Bridge", "renamed") if isinstance(bad, str) else ("Bridge", "renamed"))
    if where == "renamed":
        other, row_update = rng.choice(sorted(update["Bridge"].items()))
        bridge = rng.choice([b for b in sorted(db.bridges) if b != other])
        diff = update["Bridge"].setdefault(bridge, {"modify": {"ports": ["set", []]}})["modify"]
        diff["ports"][1] += [row_update["modify"]["ports"][1][0][:], ["uuid", bad]]
        diff["name"] = "renamed"
        return "Bridge row %s: column ports: " % bridge
    if where == "Bridge":
        bridge, row_update = rng.choice(sorted(update["Bridge"].items()))
        atoms = row_update["modify"]["ports"][1]
        atoms[rng.randrange(len(atoms))][1] = bad
        return "Bridge row %s: column ports: " % bridge
    rows = update[where]
    key = rng.choice(sorted(rows))
    update[where] = {bad if k == key else k: row for k, row in rows.items()}
    return "table %s: row %r is not a UUID" % (where, bad)


def _big_delete(seed):
    """(database, its rows, a big delete of its ports: more than the slices' ports)."""
    rng = random.Random(seed)
    db = Database(rng)
    db._apply(db.insert_ports(24))
    rows = json.loads(json.dumps(db.rows))
    return db, rows, db.delete_ports(rng.randint(10, 24))


def _compare(db, rows, update):
    """The update applied whole and in slices: (whole replica, whether it was cut)."""
    whole, whole_notified, whole_ports, _ = _apply(db, rows, update, sliced=False)
    sliced, sliced_notified, sliced_ports, seen = _apply(db, rows, update, sliced=True)
    assert whole.refused == sliced.refused
    if whole.refused is None:
        assert contents(sliced) == contents(whole)
        assert names(sliced) == names(whole)
        assert not sliced.uncovered and not whole.uncovered
        assert _merged_bridges(sliced_notified) == _merged_bridges(whole_notified)
        assert sliced_ports == whole_ports
    return whole, seen


@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: shape.__name__)
def test_a_big_delete_with_odd_uuid_texts_leaves_in_slices_what_it_leaves_whole(shape, small_slices):
    cut = 0
    for seed in range(6):
        db, rows, update = _big_delete(seed)
        shape(random.Random(seed), db, update)
        whole, seen = _compare(db, rows, update)
        assert whole.refused is None, whole.refused
        cut += seen
    assert cut or shape in (_delete_and_more, _delete_and_insert)  # (those two: not a pure delete, whole)


@pytest.mark.parametrize("seed", range(12))
def test_a_big_delete_naming_a_text_ovs_refuses_is_refused_sliced_as_whole_saying_where(seed, small_slices):
    for number, bad in enumerate(_bad_texts(str(uuid.UUID(int=seed + 1)))):
        db, rows, update = _big_delete(100 * seed + number)
        says = _place_bad(random.Random(seed * 100 + number), db, update, bad)
        whole, seen = _compare(db, rows, update)
        assert whole.refused is not None and whole.refused.startswith("update refused: " + says), (bad, whole.refused)
        assert not whole._session.is_connected()
        if "renamed" not in json.dumps(update):  # a text the plan reads: the update applied whole, no slice reported
            assert not seen, bad


@pytest.mark.parametrize("operation", ["insert", "modify"])
def test_a_reference_ovs_pattern_takes_and_uuid_refuses_is_refused_naming_its_row_and_column(operation):
    """A reference whose text ends in a newline (ovs's pattern ends in "$", which takes one; ``uuid.UUID`` raises
    ValueError, not ovs's error): refused naming the row and column, as any value that does not parse."""
    db = Database(random.Random(1))
    replica = db.fresh()
    bridge = sorted(db.bridges)[0]
    port = _uuid()
    bad = ["set", [["uuid", _uuid() + "\n"]]]
    update = {"Port": {port: {"insert": {"name": "p", "interfaces": bad}}}} if operation == "insert" else \
        {"Bridge": {bridge: {"modify": {"ports": bad}}}}
    replica._Idl__parse_update(update, UPDATE2)
    row, column = (port, "interfaces") if operation == "insert" else (bridge, "ports")
    table = "Port" if operation == "insert" else "Bridge"
    assert replica.refused is not None and \
        replica.refused.startswith("update refused: %s row %s: column %s: " % (table, row, column)), replica.refused


@pytest.mark.parametrize("table", ["Port", "Interface"])
def test_a_big_insert_naming_a_uuid_twice_is_applied_whole(table, small_slices):
    """A row inserted twice under its uuid's two texts (upper case first, other columns): ovs inserts them in order,
    the later replacing the earlier. Sliced, the one a port holds went into its slice and the other into the rest,
    applied after it: the replica kept the upper-case row's columns where the whole update leaves the other's."""
    for seed in range(4):
        rng = random.Random(seed)
        db = Database(rng)
        rows = json.loads(json.dumps(db.rows))
        update = db.insert_ports(12)
        key = rng.choice(sorted(update[table]))
        twin = {"name": "twin", "ofport": ["set", [99]]} if table == "Interface" else \
            {"name": "twin", "interfaces": update["Port"][key]["insert"]["interfaces"]}
        update[table] = {key.upper(): {"insert": twin}, **update[table]}
        whole, seen = _compare(db, rows, update)
        assert whole.refused is None and not seen
