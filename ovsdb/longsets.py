"""Pauses inside one row's long set: a bridge's ``ports`` column with 10,000-20,000 references.

``ovsdb.idl`` pauses between the rows of an update (``PAUSE_ROWS``), and a row is normally a few atoms. A reference
set that grows with the database is not: the integration bridge's ``ports`` (or ``Open_vSwitch.bridges``,
``Port.interfaces``, a VTEP's ``Physical_Switch.ports``) arrives as one array that ``ovs.db.data.Datum.from_json``
converts atom by atom, in pure Python (about 5 us a UUID here: 20,000 references held the hub for ~110 ms, in one
stretch, when a bridge was first read or 20,000 ports were added in one transaction). Only the size of the *change*
arrives after that: update2/update3 carry a set column's difference, and one port added to a bridge of 10,000 costs
its own atom (measured: ~1 ms for the whole update).

``pace_long_sets`` runs on each update before ovs parses it and swaps every array of more than ``LONG`` elements in
those columns for a ``PacedArray``: the same list, whose iteration ticks the replica's pacer once per
``ATOMS_PER_TICK`` elements, so the pacer pauses inside the row as it does between rows. The result is the same
datum: only where the event loop gets its turns changes. The work must tolerate pauses anyway (``Replica``: other
green threads must not touch the replica while ``run()`` is under way).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import chain, compress, repeat

LONG = 1000  # arrays at most this long are converted in one go (a few ms)
ATOMS_PER_TICK = 10  # atoms converted count as one row of the pacer (``idl.PAUSE_ROWS`` rows between pauses)


_DELETED = {"delete": None}  # an update2/update3 row update deleting its row, and nothing else


def deleted_only(rows: dict) -> bool:
    """Whether every row update of ``rows`` (a table's, in an update) is ``{"delete": null}`` and nothing else: none
    holds a value to look at. Compared in C (``list.count``, ~100 instructions a row: a big delete's 20,000 rows were
    walked by the checks, ~1,700 a row)."""
    return list(rows.values()).count(_DELETED) == len(rows)


class PacedArray(list):
    """A JSON array whose iteration ticks ``pacer`` once per ``ATOMS_PER_TICK`` elements."""

    __slots__ = ("pacer",)

    def __init__(self, elements: list, pacer):
        super().__init__(elements)
        self.pacer = pacer

    def __iter__(self):
        tick = self.pacer.tick
        for i, element in enumerate(list.__iter__(self), 1):
            yield element
            if i % ATOMS_PER_TICK == 0:
                tick()


def long_set_columns(tables) -> dict[str, tuple[str, ...]]:
    """{table: (column, ...)} of the set and map columns of ``tables`` (an Idl's ``tables``) that reference rows
    and have no small bound: the ones that grow with the database."""
    found = {}
    for name, table in tables.items():
        columns = tuple(column.name for column in table.columns.values()
                        if column.type.n_max > LONG and _references(column.type))
        if columns:
            found[name] = columns
    return found


def _references(type_) -> bool:
    return type_.key.ref_table_name is not None or (type_.value is not None and type_.value.ref_table_name is not None)


def pace_long_sets(table_updates, columns: dict[str, tuple[str, ...]], pacer) -> None:
    """Swap the long arrays of ``columns`` in ``table_updates`` (the ``<table-updates>`` of an update, update2 or
    update3, as received) for ``PacedArray``s. Malformed input is left as it is, for ovs to reject."""
    if not isinstance(table_updates, dict):
        return
    for table_name, names in columns.items():
        rows = table_updates.get(table_name)
        if not isinstance(rows, dict) or deleted_only(rows):
            continue
        for part in _parts(rows.values()):  # initial / insert / modify (update2, update3); old / new (update)
            for name in names:
                _pace(part, name, pacer)


def _parts(row_updates) -> Iterable[dict]:
    """The parts of each row update that are objects, in order (a row update that is not an object: none), picked in
    C loops (``map``): a big delete's 10,000 ports are ``{"delete": null}`` each, ~24 Python bytecodes a row looked at
    one by one."""
    updates = list(row_updates)
    if not all(map(isinstance, updates, repeat(dict))):
        updates = list(compress(updates, map(isinstance, updates, repeat(dict))))
    parts = list(chain.from_iterable(map(dict.values, updates)))
    return compress(parts, map(isinstance, parts, repeat(dict)))


def _pace(row: dict, name: str, pacer) -> None:
    value = row.get(name)  # ["set", [...]] or ["map", [...]]; a single atom is never long
    if type(value) is list and len(value) == 2 and type(value[1]) is list and len(value[1]) > LONG:
        value[1] = PacedArray(value[1], pacer)
