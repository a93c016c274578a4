"""Why an update from the peer is refused (ovsdb/idl/paced.py): the checks ovs 4.0.0 lacks, and the reason, naming
the table, row and column, for what it raises without saying where.

- ``check_whole_rows``: run before an old protocol (``update``) update is applied.
- ``check_plain_sets``: run before any update is applied (``plain_set_columns``: which columns it reads).
- ``describe``: run only once ovs has raised, to say where the update broke the protocol (ovs's message names
  neither the row nor, for a part of the wrong shape, anything at all).
"""

from __future__ import annotations

from itertools import chain, repeat
from operator import itemgetter

import ovs.db.idl
import ovs.ovsuuid

from controller.pacer import NEVER, Pacer
from ovsdb.longsets import deleted_only

UPDATE2_OPERATIONS = ("delete", "insert", "initial", "modify")
_SECOND = itemgetter(1)


# Elements of a set or map column that references no rows (external_ids, options, tunnel_ips): a real one holds a
# few (one exception known: ovn-controller's integration bridge's external_ids, a ct-zone-* key per conntrack zone,
# up to 65,535: docs/limits.md); a broken or hostile peer's may hold millions (a 32 MiB message: 2.6 million pairs),
# and each is converted, diffed and read in Python without a pause (one of a million: ~0.9 s of CPU to convert). The
# reference sets that grow with the database (a bridge's ports) are paced instead (ovsdb/longsets.py).
MAX_PLAIN = 10_000
CHECK_CHUNK = 2_000  # rows of a table ``check_plain_sets`` looks at between two ticks of its pacer (~0.7 ms)
ROWS_PER_TICK = 100  # rows so looked at per pacer unit (the replica's pacer ticks per parsed row, ~30 times dearer)


class UpdateRefused(ValueError):
    """An update that breaks the protocol (what ovs 4.0.0 would let through, or raise without saying where), or
    exceeds a bound of Canopy's (``MAX_PLAIN``)."""


def plain_set_columns(tables) -> dict[str, tuple[str, ...]]:
    """{table: (column, ...)} of the set and map columns of ``tables`` (an Idl's ``tables``) that reference no rows
    and may hold more than ``MAX_PLAIN`` elements."""
    found = {}
    for name, table in tables.items():
        columns = tuple(column.name for column in table.columns.values()
                        if column.type.n_max > MAX_PLAIN and column.type.key.ref_table_name is None
                        and (column.type.value is None or column.type.value.ref_table_name is None))
        if columns:
            found[name] = columns
    return found


def check_plain_sets(update, columns: dict[str, tuple[str, ...]], pacer: Pacer = NEVER) -> None:
    """Raise ``UpdateRefused``, naming the table, row and column, if a set or map of ``columns`` in ``update`` (its
    ``<table-updates>``, any protocol) holds more than ``MAX_PLAIN`` elements, or an update2/3 ``modify`` more than
    twice that: its difference lists the elements removed and those added, so rewriting a set of up to ``MAX_PLAIN``
    takes up to ``2 * MAX_PLAIN`` (ovsdb-server's ovsdb_datum_diff). Other shapes are left to ovs. A table's rows are
    looked at ``CHECK_CHUNK`` at a time, ``pacer`` ticked between chunks (one per ``ROWS_PER_TICK`` rows): a big
    update's 20,000 rows were one stretch of ~7-10 ms before any row was parsed (evpn_routes, stop 44)."""
    if type(update) is not dict:
        return
    for table_name, names in columns.items():
        rows = update.get(table_name)
        if type(rows) is not dict or deleted_only(rows):
            continue
        if len(rows) <= CHECK_CHUNK:
            _check_rows(table_name, rows.items(), rows.values(), names)
            continue
        items, values = list(rows.items()), list(rows.values())
        for start in range(0, len(items), CHECK_CHUNK):  # (20,000 rows: ~7 ms of C loops, paced: lag44)
            if start:
                pacer.tick(CHECK_CHUNK // ROWS_PER_TICK)
            _check_rows(table_name, items[start:start + CHECK_CHUNK], values[start:start + CHECK_CHUNK], names)


def _check_rows(table_name: str, items, values, names: tuple[str, ...]) -> None:
    """``check_plain_sets`` for rows of ``table_name`` (``items``: (uuid, row update), ``values``: the row updates)."""
    if not (_nothing_to_read(values) or _all_short(values, names)):
        for uuid, row_update in items:
            _check_row(table_name, uuid, row_update, names)


def _check_row(table_name: str, uuid, row_update, names: tuple[str, ...]) -> None:
    for operation, part in (row_update.items() if type(row_update) is dict else ()):  # insert/...; old/new
        if type(part) is dict:
            most = 2 * MAX_PLAIN if operation == "modify" else MAX_PLAIN
            for name in names:
                value = part.get(name)  # ["set", [...]] or ["map", [...]]
                if type(value) is list and len(value) == 2 and isinstance(value[1], list) and len(value[1]) > most:
                    raise UpdateRefused("%s row %s: column %s: %d elements%s, more than %d" % (
                        table_name, uuid, name, len(value[1]), " in a difference" if most > MAX_PLAIN else "", most))


def _all_short(row_updates, names: tuple[str, ...]) -> bool:
    """True when no value of ``names`` in ``row_updates`` (each an object of objects: update2/3's operations, or
    "old"/"new") can be a set or map longer than ``MAX_PLAIN``: the second element of each value found (what
    ``check_plain_sets`` counts) no longer than that, looked at by C loops (``map``): ovs-vswitchd's ofport on 10,000
    interfaces, no such column named, ~75 bytecodes a row in the loop; 10,000 new ones, their external_ids, ~150).
    False, for the loop to judge, on any other shape (a part that is not an object, a value without a second
    element, ...) or anything longer."""
    try:
        parts = list(chain.from_iterable(map(dict.values, row_updates)))
        for name in names:
            values = list(filter(None, map(dict.get, parts, repeat(name))))
            if values and max(map(len, map(_SECOND, values))) > MAX_PLAIN:
                return False
    except (TypeError, IndexError, KeyError):  # (a part not an object, a value without a second element, ...)
        return False
    return True


def _nothing_to_read(row_updates) -> bool:
    """True when every row update is an object none of whose parts is one (every row deleted: 10,000 ports deleted,
    20,000 rows looked at in C loops, ~35 bytecodes a row in the loop of ``check_plain_sets``)."""
    try:  # (stops at the first object: a big insert's first row)
        return not any(map(dict.__instancecheck__, chain.from_iterable(map(dict.values, row_updates))))
    except TypeError:  # a row update not an object: the loop's to judge
        return False


def check_whole_rows(update, tables, readonly) -> None:
    """Raise ``UpdateRefused`` if an old protocol row's ``new`` lacks a monitored column: it holds every one (RFC 7047
    4.1.6), and ovs 4.0.0 gives a missing scalar a broken default (an ``Atom`` holding an ``Atom``, which became the
    row's name). ``readonly``: the Idl's {table: columns not monitored}. The rest of the shape is ovs's to check."""
    for table_name, rows in (update.items() if isinstance(update, dict) else ()):
        table = tables.get(table_name)
        if table is None or not isinstance(rows, dict):
            continue
        unmonitored = readonly.get(table_name, ())
        for uuid, row_update in rows.items():
            new = row_update.get("new") if isinstance(row_update, dict) else None
            if isinstance(new, dict):
                missing = sorted(c for c in table.columns if c not in new and c not in unmonitored)
                if missing:
                    raise UpdateRefused("%s row %s: column %s missing from its new value (the old protocol sends "
                                        "every column)" % (table_name, uuid, ", ".join(missing)))


def describe(update, version, tables) -> str | None:
    """Where ``update`` has the wrong shape (the first place found), or None if its shape is right."""
    if not isinstance(update, dict):
        return "the update is not an object"
    for table_name, rows in update.items():
        if table_name not in tables:
            return "unknown table %s" % table_name
        if not isinstance(rows, dict):
            return "table %s: its rows are not an object" % table_name
        for uuid, row_update in rows.items():
            # (ovs's pattern ends in "$", which takes a final newline too: uuid.UUID refuses that text)
            if len(uuid) != 36 or not ovs.ovsuuid.is_valid_string(uuid):
                return "table %s: row %r is not a UUID" % (table_name, uuid)
            wrong = _row_shape(tables[table_name], uuid, row_update, version)
            if wrong:
                return "%s row %s: %s" % (table_name, uuid, wrong)
    return None


def _row_shape(table, uuid, row_update, version) -> str | None:
    if not isinstance(row_update, dict):
        return "not an object"
    if version == ovs.db.idl.OVSDB_UPDATE:
        parts = {part: row_update[part] for part in ("old", "new") if part in row_update}
        if not parts or set(row_update) - {"old", "new"}:
            return "%s, not \"old\" and/or \"new\"" % sorted(row_update)
    else:
        operation = next((op for op in UPDATE2_OPERATIONS if op in row_update), None)
        if operation is None:
            return "no operation (%s)" % ", ".join(UPDATE2_OPERATIONS)
        if operation == "modify" and ovs.ovsuuid.from_string(uuid) not in table.rows:
            return "modify of a row that does not exist"
        parts = {} if operation == "delete" else {operation: row_update[operation]}
    for part, value in parts.items():
        if not isinstance(value, dict):
            return "its %s is not an object" % part
    return None
