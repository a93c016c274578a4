"""A table's run of deletes taken together (ovsdb/idl/rowloop.py ``_delete_all``, paced.py ``notify_deleted``) against
the same updates taken row by row (rowloop's ``_delete`` and the tracking IDL's ``notify``), on both schemas Canopy
replicates: a VRS's Open_vSwitch (its Port and Interface rows indexed by name) and a hardware VTEP's (tracked, no
index).

Random update2 sequences (``RandomUpdates``: inserts whose columns are kept as their JSON, ovsdb/idl/lazy.py, modifies,
deletes of rows present and absent), with half of the tables' updates made only deletes and some of those naming a
row twice (its uuid's text in capitals too) or a row inserted again under its uuid in capitals (a delete and an insert
of one row in one update: the row loop's), and the tracked changes left to accumulate across updates (a row deleted
then inserted again, inserted then deleted, before a reader takes them). After each update: the same refusal or none,
rows, changes (their order, kind, columns, and the deleted rows' values, read from their JSON where still kept), name
index, change_seqno and pauses."""

import json
import random
import uuid

import ovs.db.idl
import pytest

from controller.pacer import Pacer
from ovsdb import idl, vrs, vtep
from tests.unit.test_ovsdb_idl_parse import RandomUpdates

SCHEMAS = {"vrs": ("/usr/share/openvswitch/vswitch.ovsschema", vrs.COLUMNS, ("Port", "Interface")),
           "vtep": ("/usr/share/openvswitch/vtep.ovsschema", vtep.COLUMNS, ())}


def _replica(schema: dict, columns, named):
    replica = idl._TrackingIdl("tcp:127.0.0.1:1", idl.schema_helper(schema, columns), leader_only=False,
                               named=named)
    replica.pacer = Pacer(lambda: None, 3)  # pauses inside the runs
    return replica


def _seen(replica) -> tuple:
    """What a reader of ``replica`` sees: rows, changes (a deleted row's values too), name index, change_seqno."""
    rows = {name: {str(key): {c: d.to_json() for c, d in dict.items(row._data)} for key, row in table.rows.items()}
            for name, table in replica.tables.items()}
    changes = {name: [(key, change.deleted, change.columns,
                       {c: d.to_json() for c, d in dict.items(change.row._data)} if change.deleted else None)
                      for key, change in replica.changes.table(name).items()] for name in replica.tables}
    names = {table: {name: sorted(rows) for name, rows in index.items()} for table, index in replica.names.items()}
    return rows, changes, names, replica.change_seqno, replica.pacer.pauses


def _hostile(rng, update: dict) -> None:
    """Half of the tables' updates only deletes; some name a row twice, some insert a deleted row again."""
    for rows in update.values():
        if not rows or rng.random() < 0.5:
            continue
        for text in list(rows):
            rows[text] = {"delete": None}
        first = next(iter(rows))
        shape = rng.random()
        if shape < 0.2:
            rows[first.upper()] = {"delete": None}  # the same row twice
        elif shape < 0.3:
            rows[first.upper()] = {"insert": {}}  # deleted and inserted again in one update (not a run of deletes)


@pytest.mark.parametrize("schema", sorted(SCHEMAS))
@pytest.mark.parametrize("seed", range(3))
def test_runs_of_deletes_taken_together_give_what_row_by_row_gives(schema, seed, monkeypatch):
    path, columns, named = SCHEMAS[schema]
    loaded = json.loads(open(path).read())
    together, alone = _replica(loaded, columns, named), _replica(loaded, columns, named)
    real = idl.rowloop._only_deletes
    rng = random.Random(seed)
    updates = RandomUpdates(rng, alone.tables)
    batches = 0
    for _ in range(40):
        update = updates.update(lambda table, u: uuid.UUID(u) in alone.tables[table].rows)
        _hostile(rng, update)
        batches += sum(1 for rows in update.values() if rows and real(rows))
        for replica, batched in ((together, True), (alone, False)):
            monkeypatch.setattr(idl.rowloop, "_only_deletes", real if batched else lambda table_update: False)
            replica._Idl__parse_update(json.loads(json.dumps(update)), ovs.db.idl.OVSDB_UPDATE2)
        assert together.refused == alone.refused
        assert _seen(together) == _seen(alone)
    assert batches >= 10


def test_the_comparison_sees_a_deleted_row_left_in_the_name_index(monkeypatch):
    """The comparison can fail: a batch that leaves its rows in the name index is told apart."""
    monkeypatch.setattr(idl._TrackingIdl, "_unindex_all", staticmethod(lambda index, name_of, keys: None))
    with pytest.raises(AssertionError):
        test_runs_of_deletes_taken_together_give_what_row_by_row_gives("vrs", 0, monkeypatch)
