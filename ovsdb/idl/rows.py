"""Reading an IDL row's columns from its committed datums: cheaper than ``getattr`` (which converts a set or map
three times, and sorts a set of rows), the same values. Plain stand-ins for rows are read with ``getattr``.

- ``column_value``: a column of an IDL row as ``getattr`` gives it, converted once (``Row.__getattr__`` converts
  a set or map three times), and without ovs's conversion per atom where the column holds no reference.
- ``column_values``: several columns of one row, as ``column_value`` reads each.
- ``references``, ``referenced_rows``, ``reference_count``, ``reference_keys``: a reference set looked up, listed
  unsorted, counted, its rows' keys.
"""

from __future__ import annotations

import operator

import ovs.db.data
import ovs.db.idl
import ovs.db.types

from ovsdb.idl.datums import uuid_of
from ovsdb.idl.lazy import LazyDatum

# HACK (ovs 4.0.0): an IDL Row keeps its committed columns in __dict__["_data"], a ColumnDefaultDict, and its table in
# __dict__["_table"]
_ROW, _COMMITTED, _DEFAULT = ovs.db.idl.Row, ovs.db.idl.ColumnDefaultDict, ovs.db.data.Datum.default
_LAZY = LazyDatum  # a new row's column still as its JSON (ovsdb/idl/lazy.py): read from the JSON, the same value


def references(row, column: str, target) -> bool:
    """Whether ``row``'s reference column ``column`` holds ``target`` (a row): one lookup in the committed
    datum of an IDL row, not a conversion of the whole column; plain stand-ins are searched."""
    datum = _datum(row, column)
    if datum is None:
        return any(ref is target for ref in getattr(row, column, None) or ())
    return ovs.db.data.Atom(ovs.db.types.UuidType, target.uuid) in datum.values


def referenced_rows(row, column: str) -> list:
    """The rows ``row``'s reference set ``column`` holds, in no particular order: ``getattr(row, column)`` without
    the sort (ovs 4.0.0 ``Datum.to_python`` sorts a set of rows by uuid, compared in Python: ~225 ms in one stretch
    for a bridge's 20,000 ports). The committed datum of an IDL row, unless this client's own transaction has
    changed the column (then, and for plain stand-ins, ``getattr``)."""
    datum = _datum(row, column)
    if datum is None or _pending(row, column):
        return list(getattr(row, column, None) or ())
    to_row, key_type = row._uuid_to_row, datum.type.key  # HACK (ovs 4.0.0): what Row.__getattr__ converts with
    return [found for found in (to_row(atom.value, key_type) for atom in datum.values) if found is not None]


def _pending(row, column: str) -> bool:
    # HACK (ovs 4.0.0): a Row keeps this client's uncommitted writes in __dict__["_changes"] and "_mutations".
    mutations = row.__dict__.get("_mutations") or {}
    return column in (row.__dict__.get("_changes") or {}) or any(column in part for part in mutations.values())


def column_value(row, name: str, default=None):
    """``getattr(row, name, default)`` of an IDL row, read from its committed datum: one ``Datum.to_python``, the same
    value. ovs 4.0.0's ``Row.__getattr__`` converts a set or map column three times (to a list, back to a Datum,
    checking its constraints, and to Python again: most of the reporter's CPU for 10,000 new interfaces). A column
    the replica lacks gives ``default``; a row this client's own transaction is changing, the old values ``notify``
    is given (a plain dict of the columns that changed: the others are no default there), or a plain stand-in, is
    read with ``getattr``. Each column's conversion is made once (``_reader``, kept on the table's column)."""
    attrs = row.__dict__ if isinstance(row, _ROW) else None  # 80,000 reads for 10,000 new ports: names looked up once
    data = attrs.get("_data") if attrs is not None else None
    if not isinstance(data, _COMMITTED) or attrs.get("_changes") != {} or attrs.get("_mutations") != {}:
        return getattr(row, name, default)
    column = attrs["_table"].columns.get(name)
    if column is None:
        return default
    read = column.__dict__.get(_READ) or _reader_of(column)
    return read(dict.get(data, name), row)  # HACK (ovs 4.0.0): _data is a ColumnDefaultDict; a column never set: None


def column_values(row, names: tuple[str, ...], default=None) -> list:
    """``[column_value(row, name, default) for name in names]``, the row's state looked at once: an interface's name,
    external_ids, ofport and type for its ``PortInfo`` (10,000 new ports, 40,000 reads)."""
    attrs = row.__dict__ if isinstance(row, _ROW) else None
    data = attrs.get("_data") if attrs is not None else None
    if not isinstance(data, _COMMITTED) or attrs.get("_changes") != {} or attrs.get("_mutations") != {}:
        return [getattr(row, name, default) for name in names]
    columns, out = attrs["_table"].columns, []
    for name in names:
        column = columns.get(name)
        if column is None:
            out.append(default)
            continue
        read = column.__dict__.get(_READ) or _reader_of(column)
        out.append(read(dict.get(data, name), row))
    return out


# HACK (ovs 4.0.0): an IdlTable's columns are IdlColumns, which forward unknown attributes to their ColumnSchema
# (a Python call each); the conversion ``column_value`` makes of the column is kept in the IdlColumn's own __dict__,
# made once per column and session (it lives as long as the replica's table).
_READ = "canopy_read"


def _reader_of(column):
    read = column.__dict__[_READ] = _reader(column.type)
    return read


def _reader(type_):
    """A function (datum or None, row) -> ``datum.to_python(row._uuid_to_row)`` for datums of ``type_`` (None: the
    type's default Datum), the same value: taken from the atoms directly when no reference is in the type (ovs 4.0.0's
    ``uuid_to_row`` gives the value unchanged then), the type's shape looked at once, not per read (the name,
    external_ids and ofport read for each of 10,000 new interfaces)."""
    key, value = type_.key, type_.value

    def whole(datum, row):
        return (datum if datum is not None else _DEFAULT(type_)).to_python(row._uuid_to_row)
    if key.ref_table and value is None and not (type_.n_min == 1 and type_.n_max == 1):
        return _rows_reader(key.ref_table.name, whole)
    if key.ref_table or (value is not None and value.ref_table):
        return whole
    if value is not None:
        def pairs(datum, row):
            if datum is None:
                return whole(datum, row)
            if datum.__class__ is _LAZY and datum.json is not None:  # a new row's map of strings as sent: [k, v]s
                return dict(datum.json[1])
            return {k.value: v.value for k, v in datum.values.items()}
        return pairs
    if type_.n_min == 1 and type_.n_max == 1:  # a scalar: as_scalar, else the key type's default
        string = key.type == ovs.db.types.StringType  # (a uuid's JSON is ["uuid", text])

        def scalar(datum, row):
            if datum is None:
                return whole(datum, row)
            if string and datum.__class__ is _LAZY and datum.json is not None:  # a new row's string as sent
                return datum.json
            values = datum.values
            return next(iter(values)).value if len(values) == 1 else key.default()
        return scalar

    integer = key.type == ovs.db.types.IntegerType and type_.n_max == 1

    def elements(datum, row):
        if datum is None:
            return whole(datum, row)
        if integer and datum.__class__ is _LAZY and datum.json is not None:  # an optional integer set as sent
            return [datum.json]
        values = datum.values
        if len(values) == 1:  # an optional column's one value (an interface's ofport: 10,000 read at once)
            for k in values:
                return [k.value]
        return sorted({k.value for k in values})
    return elements


def _rows_reader(target: str, whole):
    """The reader of a set of references to ``target``'s rows (a port's ``interfaces``, a bridge's ``ports``): the
    rows found, sorted, as ``Datum.to_python`` gives them, each looked up in the table's ``IndexedRows.data`` directly
    (ovs 4.0.0's ``Row._uuid_to_row`` goes through ``Mapping.get``, ``IndexedRows.__getitem__`` and the Idl's tables
    per atom: ~3 µs, a third of the reporter's reading of a new port). ``whole`` (ovs's conversion) for a table with
    a custom index, one not replicated (ovs raises), and a row that is not an IDL row's."""
    def rows(datum, row):
        idl = row.__dict__.get("_idl") if datum is not None else None
        table = idl.tables.get(target) if idl is not None else None
        if table is None or table.rows.indexes:
            return whole(datum, row)
        stacks = table.rows.data  # HACK (ovs 4.0.0): IndexedRows keeps uuid -> [row, ...], the last one the row
        if datum.__class__ is _LAZY and datum.json is not None:  # a new row's one reference as sent: ["uuid", text]
            stack = stacks.get(uuid_of(datum.json[1]))
            return [stack[-1]] if stack else []
        if len(datum.values) == 1:  # a port's one interface
            for atom in datum.values:
                stack = stacks.get(atom.value)
                return [stack[-1]] if stack else []
        found = set()
        for atom in datum.values:
            stack = stacks.get(atom.value)
            if stack:
                found.add(stack[-1])
        return sorted(found)
    return rows


_VALUE_INT = operator.attrgetter("value.int")  # an atom's uuid's number


def reference_keys(row, column: str) -> set[int] | None:
    """The uuid numbers (``row_key``s) of the rows ``row``'s reference set ``column`` holds, read in C loops from the
    committed datum of an IDL row, as ``references`` looks them up (10,000 new ports checked on their bridge: one set
    of the bridge's ~10,000 instead of an Atom made and compared in Python per port); None for a plain stand-in."""
    datum = _datum(row, column)
    return None if datum is None else set(map(_VALUE_INT, datum.values))


def reference_count(row, column: str) -> int:
    """How many references ``row``'s set column ``column`` holds, without converting it."""
    datum = _datum(row, column)
    return len(getattr(row, column, None) or ()) if datum is None else len(datum.values)


def _datum(row, column: str):
    # HACK (ovs 4.0.0): an IDL Row keeps its committed columns as Datums in __dict__["_data"].
    data = row.__dict__.get("_data") if isinstance(row, ovs.db.idl.Row) else None
    return data.get(column) if data else None
