"""Why an update from the peer is refused (ovsdb/idl/paced.py): the checks ovs 4.0.0 lacks, and the reason, naming
the table, row and column, for what it raises without saying where.

- ``check_whole_rows``: run before an old protocol (``update``) update is applied.
- ``describe``: run only once ovs has raised, to say where the update broke the protocol (ovs's message names
  neither the row nor, for a part of the wrong shape, anything at all).
"""

from __future__ import annotations

import ovs.db.idl
import ovs.ovsuuid

UPDATE2_OPERATIONS = ("delete", "insert", "initial", "modify")


class UpdateRefused(ValueError):
    """An update that breaks the protocol (what ovs 4.0.0 would let through, or raise without saying where)."""


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
            if not ovs.ovsuuid.is_valid_string(uuid):
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
