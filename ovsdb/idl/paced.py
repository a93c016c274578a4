"""The ``ovs.db.idl.Idl`` subclasses a ``Replica`` runs: every override of ovs 4.0.0's private methods in one place.

- ``_PacedIdl``: pauses every ``PAUSE_ROWS`` rows of an update (and inside long reference sets), parses an
  update's new rows with one default per column, not per row, and puts its deleted, new and modified rows in or out
  of their tables directly (ovsdb/idl/rowloop.py).
- ``_TrackingIdl``: also records the rows each update changed (``RowChanges``) and indexes named tables by name.

An update that breaks the protocol is refused whole (``refused`` says why, naming the table, row and column) and the
session closed: ovs 4.0.0 raises in the middle of such an update, leaving the rows before that point applied without a
notification, and logs the reason to its own log, which is silent. The peer's next session reads the database afresh.

A big pure insert or delete of ports is applied in slices when the replica's reader takes them (``on_slice``,
ovsdb/idl/slices.py): each slice is parsed, applied and notified like an update of its own, and the reader is called
between them, before the next is built (a big delete's first withdrawals wait for its lead slice alone). A refusal
in a slice leaves the slices before it reported (each a state smaller transactions could have produced: whole ports
with their interfaces, and the bridge's ports with them); nothing of the refused slice or after it is. The session
is closed as for any refusal, and the next session's first read reports the database as it is, against what was
reported (tests/unit/test_ovsdb_slices.py). A set or map of plain values longer than ``refusals.MAX_PLAIN`` is looked
for in the whole update first: it refuses the update before any slice.
"""

from __future__ import annotations

import collections
import itertools
import operator
import sys
from collections.abc import Callable, Iterable

import ovs.db.data
import ovs.db.error
import ovs.db.idl
import ovs.db.types

from controller.pacer import Pacer
from ovsdb import longsets
from ovsdb.idl import lazy, refusals, rowloop, slices
from ovsdb.idl.datums import datum_parser, drop_uuids
from ovsdb.idl.rows import column_value
from ovsdb.rowchanges import RowChange, RowChanges, change as _change, deletion as _deletion

_ROW_DELETE = ovs.db.idl.ROW_DELETE
_SAME = lazy.SAME
_UUID_NUMBER = operator.attrgetter("uuid.int")  # a row's key (``row_key``)
_UUID = operator.attrgetter("uuid")
_OVS_LOG = ovs.db.idl.vlog  # the ovs IDL's own log (silent unless ovs.vlog is initialised), for its own warnings
# What ovs 4.0.0 raises on a malformed update: its own Error, and Python's where a part of it has the wrong shape (a
# row's "insert" that is not an object, a set's elements that are not an array, ...). Peer input: the update is refused.
# (ValueError: also refusals.UpdateRefused, what the checks here raise.)
_MALFORMED = (ovs.db.error.Error, AttributeError, TypeError, KeyError, IndexError, ValueError)
# What a column's parser raises for a value that does not parse: ovs's Error, and uuid.UUID's ValueError for a reference
# ovs's pattern takes with a final newline (its "$"): refused naming the row and column either way
_UNPARSED = (ovs.db.error.Error, ValueError)
REASON_CHARS = 400  # of a refusal's reason, logged at each dropped session: ovs's message quotes the bad value whole


_ABSENT = object()


def _diff(datum, diff):
    """``datum.diff(diff)``: update2's difference of a column applied (ovs 4.0.0's ``Datum.diff``), a set's elements
    toggled with one lookup each. ovs looks each element up three times (``in``, ``[]``, ``del``), each an ``Atom``'s
    hash and comparison in Python, and a uuid's under it: a big delete's bridge ``ports``, 10,000 elements. A map's
    difference (a key's value replaced or removed) and a scalar's are ovs's own."""
    values = datum.values
    if datum.type.is_map() or (datum.type.n_max <= 1 and values):
        return datum.diff(diff)
    for atom in diff.values:
        if values.pop(atom, _ABSENT) is _ABSENT:
            values[atom] = None
    return datum


def _every(items: list) -> bool:
    """Whether none of ``items`` is None, by identity in C (``None in items`` compares each with None: a Row's
    comparison is a Python call)."""
    return all(map(operator.is_not, items, itertools.repeat(None)))


class _PacedIdl(ovs.db.idl.Idl):
    """An Idl that ticks ``pacer`` (controller/pacer.py) for each row of an update it processes: ovs 4.0.0 calls
    its ``cooperative_yield`` hook once per row in ``__do_parse_update`` (checked by tests/unit/test_ovsdb_idl.py),
    as does ovsdb/idl/rowloop.py, which applies update2/update3's rows in its stead (a deleted row too), so one
    update of 20,000 rows gives the event loop a turn every ``PAUSE_ROWS`` rows instead of holding it for seconds;
    and inside a row whose reference set is long (a bridge's 10,000 ports: ovsdb/longsets.py). Only the session's
    own green thread touches the Idl, and it is inside ``run()`` meanwhile."""

    pacer = Pacer()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.long_sets = longsets.long_set_columns(self.tables)
        self.plain_sets = refusals.plain_set_columns(self.tables)
        self._defaults_json: dict[str, dict] = {}  # table -> {column: JSON of its default}, as __add_default adds
        # (table, a diff?) -> {column name: (Column, its datum_parser, its default Datum)}, learnt column by column
        self._columns: dict[tuple[str, bool], dict[str, tuple]] = {}
        self.version = None  # the protocol of the update being parsed (notify: what its old values mean)
        self.refused: str | None = None  # why the peer's update was refused (the session is then closed)
        self.on_slice: Callable[[], None] | None = None  # called between the slices of a big update (slices.py)
        # called with the numbers of the Interface rows a big pure delete of ports deletes, before its slices (slices.py)
        self.on_leaving: Callable[[list[int]], None] | None = None
        # (table name, row key) -> the copy a delete left below a stacked row (rowloop.py), the row now: for the
        # tracking IDL's notify of that delete; emptied at each update
        self.uncovered: dict[tuple[str, int], ovs.db.idl.Row] = {}
        # {uuid text: its number} of the update being parsed, made by its plan (slices.py: a big delete's ports and
        # interfaces), for its rows deleted (rowloop.py) and its bridge's ``ports`` difference (drop_uuids): each read
        # once, not three times; emptied at each update
        self.numbers: dict[str, int] = {}
        self.sets_found: dict[int, tuple] = {}  # drop_uuids' atoms by number of the sets it changed, per update

    def cooperative_yield(self):
        self.pacer.tick()

    def row_keys(self, table: str, numbers: list[int]) -> list | None:
        """The table's own keys (``row.uuid``) of its rows ``numbers`` when found without a lookup by uuid, else None
        (ovsdb/idl/rowloop.py then makes uuids: each lookup by one compares it with the table's key in Python)."""
        return None

    def notify_deleted(self, table: str, rows: list) -> None:
        """``notify(ROW_DELETE, row)`` of each of ``rows``, deleted from ``table`` (ovsdb/idl/rowloop.py's notice of
        rows only deleted), in order."""
        for row in rows:
            self.notify(_ROW_DELETE, row)

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
        # (ovsdb/idl/datums.py: ovs's Datum.from_json, cheaper for plainly valid values); each column's parser and
        # default found in one lookup (``_known``), in one loop: ~20,000 rows per update of 10,000 new ports. Same
        # values stored, same answer; but a value that does not parse refuses the update (ovs keeps the column's old
        # value, which a fresh read would not give).
        # A column the row does not hold yet (a new row's: rowloop's _insert) is kept as its JSON when ``lazy`` takes it
        # (ovsdb/idl/lazy.py: checked in C loops, its atoms made when read as a Datum, if ever).
        changed = False
        data = row._data
        known = self._columns.get((table.name, False)) or self._known(table, False)
        for name, value in row_json.items():
            found = known.get(name) or self._learn(table, name, False)
            if found is None:
                continue
            column, parse, default, lazy, _ = found
            old = dict.get(data, name)
            if old is None and lazy is not None:
                datum = lazy(value)
                if datum is _SAME:  # equal to the default: nothing stored, as below
                    continue
                if datum is not None:
                    data[name] = datum
                    if column.alert:
                        changed = True
                    continue
            try:
                datum = parse(value)
            except _UNPARSED as exc:
                raise self._refusal(table, row, name, exc) from exc
            if datum.values != (default if old is None else old).values:  # Datum.__eq__'s comparison, without its call
                data[name] = datum
                if column.alert:
                    changed = True
        return changed

    def _Idl__apply_diff(self, table, row, row_diff):
        # HACK (ovs 4.0.0): ovs's __apply_diff (update2's "modify"), but a difference that does not parse refuses the
        # update, as in __row_update above, so does a set or map of plain values it grows past refusals.MAX_PLAIN
        # (whole ones are checked first: refusals.check_plain_sets), and a column at its default starts from a copy of
        # the default Datum made once per column (ovs: three made per row and column, by the row's ColumnDefaultDict:
        # 30,000 when ovs-vswitchd sets ofport on 10,000 new ports).
        old_row = {}
        data = row._data
        known = self._columns.get((table.name, True)) or self._known(table, True)
        for name, value in row_diff.items():
            found = known.get(name) or self._learn(table, name, True)
            if found is None:
                continue
            _, parse, default, lazy_diff, uuid_set = found
            held = dict.get(data, name)
            old = drop_uuids(held, value, self.pacer, self.numbers, self.sets_found) \
                if uuid_set and held is not None else None
            if old is not None:  # many references removed at once (a big delete's slice of a bridge's ``ports``)
                old_row[name] = old
                continue
            if held is None and lazy_diff is not None:  # an optional integer set on a row at its default: the value
                datum = lazy_diff(value)  # kept as its JSON (ovsdb/idl/lazy.py diff_maker), else parsed below
                if datum is not None:
                    old_row[name] = default.copy()
                    data[name] = datum
                    continue
            try:
                diff = parse(value)
            except _UNPARSED as exc:
                raise self._refusal(table, row, name, exc) from exc
            current = held if held is not None else default.copy()  # a copy: diff changes the datum in place
            old_row[name] = current.copy()
            datum = _diff(current, diff)  # changes a datum the row holds in place; a scalar's: a new one
            if self.sets_found:  # (changed otherwise: drop_uuids' atoms by number of it no longer hold)
                self.sets_found.pop(id(current.values), None)
            if len(datum.values) > refusals.MAX_PLAIN and name in self.plain_sets.get(table.name, ()):
                raise refusals.UpdateRefused("%s row %s: column %s: %d elements once changed, more than %d" % (
                    table.name, row.uuid, name, len(datum.values), refusals.MAX_PLAIN))  # grown by differences
            if datum.values != (default if held is None else held).values:  # (Datum.__eq__'s, as above)
                data[name] = datum
        return old_row

    def _known(self, table, diff: bool) -> dict:
        return self._columns.setdefault((table.name, diff), {})

    def _learn(self, table, name: str, diff: bool) -> tuple | None:
        """(Column, datum_parser, default Datum, lazy maker or None: ovsdb/idl/lazy.py, ``diff_maker`` for a
        difference; whether it is a difference of a set of uuids: ``datums.drop_uuids``) of ``table``'s column ``name``,
        kept for the next rows; None (ovs's warning logged) when the table has no such column."""
        column = table.columns.get(name)
        if not column:
            _OVS_LOG.warn("unknown column %s updating table %s" % (name, table.name))
            return None
        type_ = column.type
        if diff and type_.n_max > 1:
            # update2's difference of a set or map lists the elements added and those removed together
            # (ovsdb-server's ovsdb_datum_diff): more than the column may hold, and OVS's C IDL parses it without
            # the bounds. ovs 4.0.0 parses it with them and drops a legitimate change (now it would refuse it).
            type_ = ovs.db.types.Type(type_.key, type_.value, 0, sys.maxsize)
        parse, default = datum_parser(type_), ovs.db.data.Datum.default(column.type)
        kept = (lazy.diff_maker(type_, parse) if type_ is column.type else None) if diff else \
            lazy.lazy_maker(type_, parse, default)
        uuid_set = diff and type_.key.type == ovs.db.types.UuidType and type_.value is None and type_.n_max > 1
        found = self._known(table, diff)[name] = (column, parse, default, kept, uuid_set)
        return found

    @staticmethod
    def _refusal(table, row, name: str, exc: Exception) -> refusals.UpdateRefused:
        return refusals.UpdateRefused("%s row %s: column %s: %s" % (table.name, row.uuid, name, exc))

    def _Idl__parse_update(self, update, version, tables=None):
        # HACK (ovs 4.0.0): Idl.run hands every update of the database (update, update2, update3, and the replies to
        # its monitor requests) to the private __parse_update, which runs __do_parse_update and logs what it raises
        # to the silent vlog. The same here, but the long reference sets in it are made to pause inside their row
        # first (ovsdb/longsets.py), a set of plain values longer than refusals.MAX_PLAIN and an old protocol row
        # without every column are refused first, and so is a malformed update.
        # Checked by tests/unit/test_ovsdb_idl.py and tests/unit/test_ovsdb_idl_parse.py.
        tables = tables or self.tables
        self.version = version
        self.uncovered.clear()  # what a refused update left un-notified
        self.numbers, self.sets_found = {}, {}  # (and the last update's let go: 20,000 texts of a big delete)
        if tables is self.tables:
            try:
                refusals.check_plain_sets(update, self.plain_sets, self.pacer)  # the whole update, before any slice
            except refusals.UpdateRefused as exc:
                self._refuse(exc, update, version, tables)
                return
        for part in self._slices(update, version, tables):  # (the slices call on_slice between them: _slices)
            try:
                if tables is self.tables:
                    longsets.pace_long_sets(part, self.long_sets, self.pacer)
                if version == ovs.db.idl.OVSDB_UPDATE:
                    refusals.check_whole_rows(part, tables, self.readonly)
                self._Idl__do_parse_update(part, version, tables)
            except _MALFORMED as exc:
                self._refuse(exc, update, version, tables)
                return

    def _Idl__do_parse_update(self, table_updates, version, tables):
        # HACK (ovs 4.0.0): update2/update3's rows applied by ovsdb/idl/rowloop.py, ovs's loop with the rows deleted,
        # inserted and modified put in or taken from their table directly (a big insert's or delete's 20,000 rows);
        # the old protocol's by ovs itself.
        if version in (ovs.db.idl.OVSDB_UPDATE2, ovs.db.idl.OVSDB_UPDATE3):
            rowloop.apply(self, table_updates, tables)
        else:
            super()._Idl__do_parse_update(table_updates, version, tables)

    def _Idl__process_update(self, table, uuid, old, new):
        # HACK (ovs 4.0.0): the old protocol's row update (__do_parse_update calls it per row); a delete that left a
        # copy stacked below the row (ovsdb/idl/rowloop.py) notes it, as rowloop does for update2/update3
        notice = super()._Idl__process_update(table, uuid, old, new)
        if notice and notice.event == ovs.db.idl.ROW_DELETE and uuid in table.rows:
            self.uncovered[table.name, uuid.int] = table.rows[uuid]
        return notice

    def _slices(self, update, version, tables) -> Iterable:
        """The parts to apply ``update`` in: its slices (ovsdb/idl/slices.py) when a reader takes them
        (``on_slice``) and the first copy is in, else the update whole. A slice is built when the loop reaches it,
        outside the loop's ``try``: building one raises nothing (it reads only what the plan checked, ``_parts``)."""
        if self.on_slice is None or tables is not self.tables or self.state != self.IDL_S_MONITORING or \
                version == ovs.db.idl.OVSDB_UPDATE:
            return [update]
        return slices.plan(update, tables, pacer=self.pacer, between=self.on_slice, leaving=self.on_leaving,
                           known=self.numbers) or [update]

    def _refuse(self, exc: Exception, update, version, tables) -> None:
        """Refuse the update (``refused`` says why) and close the session: the replica no longer follows the peer's
        database (part of the update may be applied, unannounced), so no reader may see it; ``connected`` is False
        at once. The peer reconnects and its next session reads the database afresh."""
        if self.refused is None:
            reason = str(exc) if isinstance(exc, refusals.UpdateRefused) else \
                refusals.describe(update, version, tables) or "%s: %s" % (type(exc).__name__, exc)
            if len(reason) > REASON_CHARS:  # where (table, row, column) comes first
                reason = "%s... (%d characters)" % (reason[:REASON_CHARS], len(reason))
            self.refused = "update refused: %s" % reason
        self._session.close()


class _TrackingIdl(_PacedIdl):
    """An Idl that records every row change its ``notify`` hook is told of (``changes``) and keeps, for
    the tables in ``named``, an index name -> {row_key: row}."""

    def __init__(self, *args, named: Iterable[str] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self.changes = RowChanges()
        self.names: dict[str, dict[str, dict]] = {table: {} for table in named}
        self._name_of: dict[str, dict] = {table: {} for table in named}  # table -> {row_key: its name in ``names``}

    def notify(self, event, row, updates=None):
        self.pacer.tick()  # ovs calls notify for every changed row once the update is applied: pace that too
        # HACK (ovs 4.0.0): Row keeps its IdlTable (and old data) in __dict__, the IdlTable its TableSchema in _table
        # (the IdlTable's own ``name`` is the schema's through __getattr__: a call per row of an update)
        table = row._table._table.name
        if event == _ROW_DELETE:
            below = self.uncovered.pop((table, row.uuid.int), None) if self.uncovered else None
            if below is None:
                self._deleted(table, row)
                return
            event, row = ovs.db.idl.ROW_CREATE, below  # the delete left a copy of the row (rowloop.py): the row now
        columns = None
        if event == ovs.db.idl.ROW_UPDATE and updates is not None and self.version != ovs.db.idl.OVSDB_UPDATE:
            # update2/update3: the old values of the columns the update changed. The old protocol's "old" should
            # say the same, but only "new" (every column) is applied: what it lists is no bound on what changed.
            columns = frozenset(updates.__dict__.get("_data") or ()) or None
        key = row.uuid.int  # row_key
        recorded = self.changes.rows(table)
        if key in recorded:  # a change of it recorded before: merged with it
            self.changes.record(table, key, RowChange(row, False, columns))
        else:  # the usual row, changed once in the span: without record's call (20,000 rows of new ports)
            recorded[key] = _change(row, columns)
        index = self.names.get(table)
        if index is not None and (columns is None or "name" in columns):
            self._index(index, self._name_of[table], row)

    def row_keys(self, table: str, numbers: list[int]) -> list | None:
        # the keys of named rows, found through the name index in C loops: a big delete's 20,000 rows, each popped
        # from its table by its own key (no ``UUID.__eq__`` call), none made
        name_of = self._name_of.get(table)
        if not name_of:
            return None
        names = list(map(name_of.get, numbers))
        named = list(map(self.names[table].get, names)) if _every(names) else None
        rows = list(map(dict.get, named, numbers)) if named is not None and _every(named) else None
        return list(map(_UUID, rows)) if rows is not None and _every(rows) else None

    def notify_deleted(self, table: str, rows: list) -> None:
        # what ``notify`` does with each of ``rows`` deleted from ``table``, in C loops (``map``) a run at a time between
        # the pacer's pauses (ticked per row, as notify ticks): a big delete's 20,000 rows made four Python calls
        # each there. Row by row (notify's) when a delete left a copy below a row (``uncovered``), or when ``notify``
        # is not this class's (a subclass's or the instance's own: tests record the notifications).
        if self.uncovered or "notify" in self.__dict__ or type(self).notify is not _TrackingIdl.notify:
            super().notify_deleted(table, rows)
            return
        recorded, index = self.changes.rows(table), self.names.get(table)
        pacer, start = self.pacer, 0
        while start < len(rows):
            run = rows[start:start + pacer.due()]
            start += len(run)
            keys = list(map(_UUID_NUMBER, run))
            recorded.update(zip(keys, map(tuple.__new__, itertools.repeat(RowChange),
                                          zip(run, itertools.repeat(True), itertools.repeat(None)))))  # ``_deletion``s
            if index is not None:
                self._unindex_all(index, self._name_of[table], keys)
            pacer.tick(len(run))

    @staticmethod
    def _unindex_all(index: dict, name_of: dict, keys: list) -> None:
        """``_unindex`` of each of ``keys``, in C loops when each was indexed (the usual); a name left with no row
        leaves the index."""
        names = list(map(name_of.pop, keys, itertools.repeat(None)))
        rows = list(map(index.get, names))
        if None in rows:  # (a row not indexed: row by row)
            for name, key in zip(names, keys):
                named = index.get(name)
                if named is not None:
                    named.pop(key, None)
                    if not named:
                        del index[name]
            return
        collections.deque(map(dict.pop, rows, keys, itertools.repeat(None)), maxlen=0)
        collections.deque(map(index.pop, itertools.compress(names, map(operator.not_, rows)),
                              itertools.repeat(None)), maxlen=0)

    def _deleted(self, table: str, row) -> None:
        """``notify`` of a row deleted (nothing left below it): what ``changes.record`` and ``_index`` do with it, in
        one call. A big delete notifies 20,000 of them (10,000 ports and their interfaces): a deleted row's change
        replaces any change of it recorded before (``RowChanges.record``), and it leaves the name index."""
        key = row.uuid.int
        self.changes.rows(table)[key] = _deletion(row)
        index = self.names.get(table)
        if index is not None:
            self._unindex(index, self._name_of[table], key)

    def _Idl__clear(self):
        # HACK (ovs 4.0.0): ovs's __clear empties the tables without a notification when a monitor is answered again
        # in the same session (ovsdb-server's "monitor_canceled": its database converted online): a row the new first
        # copy lacks stayed in the name index and in no change. Each row is announced deleted first (those the copy
        # holds come back created: a whole-row change). Checked by tests/unit/test_ovsdb_hostile_updates.py.
        self.uncovered.clear()  # every row goes, a stacked row's copies too
        for table in self.tables.values():
            for row in list(table.rows.values()):
                self.notify(ovs.db.idl.ROW_DELETE, row)
        super()._Idl__clear()

    @staticmethod
    def _index(index: dict, name_of: dict, row) -> None:
        """Move ``row`` (created or changed: a deleted one is ``_deleted``'s) to its name in ``index``, from the name
        it was indexed under (an insert of a row that exists replaces it, whatever the notification says). Keyed by
        the uuid's number (``row_key``: a uuid.UUID's hash is a Python call)."""
        key = row.uuid.int
        if key in name_of:  # indexed before (a new row is not: no call)
            _TrackingIdl._unindex(index, name_of, key)
        name = name_of[key] = column_value(row, "name")
        index.setdefault(name, {})[key] = row

    @staticmethod
    def _unindex(index: dict, name_of: dict, key: int) -> None:
        """The row ``key`` leaves ``index`` (from the name it was indexed under)."""
        old = name_of.pop(key, None)
        named = index.get(old)
        if named is not None:
            named.pop(key, None)
            if not named:
                del index[old]
