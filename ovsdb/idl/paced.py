"""The ``ovs.db.idl.Idl`` subclasses a ``Replica`` runs: every override of ovs 4.0.0's private methods in one place.

- ``_PacedIdl``: pauses every ``PAUSE_ROWS`` rows of an update (and inside long reference sets), and parses an
  update's new rows with one default per column, not per row.
- ``_TrackingIdl``: also records the rows each update changed (``RowChanges``) and indexes named tables by name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import ovs.db.data
import ovs.db.error
import ovs.db.idl

from controller.pacer import Pacer
from ovsdb import longsets
from ovsdb.idl.datums import datum_parser
from ovsdb.idl.rows import column_value
from ovsdb.rowchanges import RowChange, RowChanges

_OVS_LOG = ovs.db.idl.vlog  # the ovs IDL's own log (silent unless ovs.vlog is initialised), for its own warnings


class _PacedIdl(ovs.db.idl.Idl):
    """An Idl that ticks ``pacer`` (controller/pacer.py) for each row of an update it processes: ovs 4.0.0 calls
    its ``cooperative_yield`` hook once per row in ``__do_parse_update`` (checked by tests/unit/test_ovsdb_idl.py),
    so one update of 20,000 rows gives the event loop a turn every ``PAUSE_ROWS`` rows instead of holding it
    for seconds; and inside a row whose reference set is long (a bridge's 10,000 ports: ovsdb/longsets.py). Only
    the session's own green thread touches the Idl, and it is inside ``run()`` meanwhile."""

    pacer = Pacer()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.long_sets = longsets.long_set_columns(self.tables)
        self._defaults_json: dict[str, dict] = {}  # table -> {column: JSON of its default}, as __add_default adds
        self._defaults: dict[tuple[str, str], ovs.db.data.Datum] = {}  # (table, column) -> its default Datum
        self._parsers: dict[tuple[str, str], Callable] = {}  # (table, column) -> its datum_parser

    def cooperative_yield(self):
        self.pacer.tick()

    def _Idl__add_default(self, table, row_update):
        # HACK (ovs 4.0.0): update2 leaves out the columns at their default, and __process_update2 adds those of the
        # columns with at least one value that are not maps, per row, walking every column and its type. The same
        # columns and values here, found once per table (by ovs's own method on an empty row) and added per row.
        defaults = self._defaults_json.get(table.name)
        if defaults is None:
            defaults = self._defaults_json[table.name] = {}
            super()._Idl__add_default(table, defaults)
        for name, value in defaults.items():
            if name not in row_update:
                row_update[name] = value

    def _Idl__row_update(self, table, row, row_json):
        # HACK (ovs 4.0.0): ovs's __row_update, but a column the row does not hold yet is compared with its type's
        # default Datum made once per column, instead of one made per row and column (the row's ColumnDefaultDict's
        # __missing__: ~60,000 for one update of 10,000 ports), and the column's JSON parsed by its datum_parser
        # (ovsdb/idl/datums.py: ovs's Datum.from_json, cheaper for plainly valid values). Same values stored, same
        # answer, the same errors.
        changed = False
        data = row._data
        for name, datum_json in row_json.items():
            column = table.columns.get(name)
            if not column:
                _OVS_LOG.warn("unknown column %s updating table %s" % (name, table.name))
                continue
            try:
                datum = self._parser(table.name, name, column)(datum_json)
            except ovs.db.error.Error as e:
                _OVS_LOG.warn("error parsing column %s in table %s: %s" % (name, table.name, e))
                continue
            old = dict.get(data, name)
            if old is None:
                old = self._default(table.name, name, column)
            if datum != old:
                data[name] = datum
                if column.alert:
                    changed = True
        return changed

    def _parser(self, table: str, name: str, column):
        parser = self._parsers.get((table, name))
        if parser is None:
            parser = self._parsers[(table, name)] = datum_parser(column.type)
        return parser

    def _default(self, table: str, name: str, column) -> ovs.db.data.Datum:
        default = self._defaults.get((table, name))
        if default is None:
            default = self._defaults[(table, name)] = ovs.db.data.Datum.default(column.type)
        return default

    def _Idl__parse_update(self, update, version, tables=None):
        # HACK (ovs 4.0.0): Idl.run hands every update of the database (update, update2, update3, and the replies to
        # its monitor requests) to the private __parse_update; the long reference sets in it are made to pause inside
        # their row first (ovsdb/longsets.py). Checked by tests/unit/test_ovsdb_idl.py.
        if tables is None:
            longsets.pace_long_sets(update, self.long_sets, self.pacer)
        return super()._Idl__parse_update(update, version, tables)


class _TrackingIdl(_PacedIdl):
    """An Idl that records every row change its ``notify`` hook is told of (``changes``) and keeps, for
    the tables in ``named``, an index name -> {uuid: row}."""

    def __init__(self, *args, named: Iterable[str] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.changes = RowChanges()
        self.names: dict[str, dict[str, dict]] = {table: {} for table in named}

    def notify(self, event, row, updates=None):
        self.pacer.tick()  # ovs calls notify for every changed row once the update is applied: pace that too
        table = row._table.name  # HACK (ovs 4.0.0): Row keeps its table and old data in __dict__
        columns = None
        if event == ovs.db.idl.ROW_UPDATE and updates is not None:
            columns = frozenset(updates.__dict__.get("_data") or ()) or None
        self.changes.record(table, row.uuid, RowChange(row, event == ovs.db.idl.ROW_DELETE, columns))
        index = self.names.get(table)
        if index is not None:
            self._index(index, event, row, updates, columns)

    @staticmethod
    def _index(index: dict, event, row, updates, columns) -> None:
        if event != ovs.db.idl.ROW_CREATE and (columns is None or "name" in columns):
            old = column_value(row if event == ovs.db.idl.ROW_DELETE or updates is None else updates, "name")
            named = index.get(old)
            if named is not None:
                named.pop(row.uuid, None)
                if not named:
                    del index[old]
        if event != ovs.db.idl.ROW_DELETE:
            index.setdefault(column_value(row, "name"), {})[row.uuid] = row
