"""Row changes as an OVSDB replica reports them (ovsdb/idl/replica.py ``Replica.take_changes``): plain values,
so that what applies them (ovsdb/bridgeports.py, ovsdb/vtep_sync.py, ovsdb/vtep_reporter.py) and their tests need
no ``ovs`` library."""

from __future__ import annotations

from typing import NamedTuple


def row_key(row):
    """A row's identity across changes, the key of every Canopy dict of rows (``RowChanges``, ovsdb/bridgeports.py,
    the replica's name index, the VTEP MAC tables): its uuid's number (IDL rows), else the object's id (plain
    stand-ins). Not the ``uuid.UUID`` itself: its ``__hash__`` is a Python call, made at every lookup (10,000 ports
    deleted: ~170,000 of them in these dicts), an int's is C's."""
    uuid = getattr(row, "uuid", None)
    return uuid.int if uuid is not None else id(row)


class RowChange(NamedTuple):
    """One row that changed: ``row`` as it is now (a deleted row: as it was); ``columns`` the columns
    that changed, None when the whole row is new or gone (or the peer did not say). A named tuple: one is made per
    row of every update (20,000 for 10,000 new ports), in about half a frozen dataclass's time."""

    row: object
    deleted: bool = False
    columns: frozenset[str] | None = None


def deletion(row, _new=tuple.__new__) -> RowChange:
    """``RowChange(row, True, None)``: a row deleted, made without the named tuple's ``__new__`` (a Python function:
    20,000 deleted rows of one update)."""
    return _new(RowChange, (row, True, None))


def change(row, columns: frozenset[str] | None, _new=tuple.__new__) -> RowChange:
    """``RowChange(row, False, columns)``, made without the named tuple's ``__new__`` (20,000 new rows of one
    update)."""
    return _new(RowChange, (row, False, columns))


class RowChanges:
    """Rows that changed, by table name then row key (``row_key``); a row changed twice keeps one merged entry."""

    def __init__(self):
        self._tables: dict[str, dict] = {}

    def record(self, table: str, key, change: RowChange) -> None:
        """``change`` of the row whose ``row_key`` is ``key``."""
        rows = self._tables.setdefault(table, {})
        before = rows.get(key)
        if before is not None and not change.deleted:
            if before.columns is None or change.columns is None:
                change = RowChange(change.row, False, None)
            else:
                change = RowChange(change.row, False, before.columns | change.columns)
        rows[key] = change

    def rows(self, table: str) -> dict:
        """{row key: RowChange} of ``table``, to record in directly: a deleted row's change (``deletion``) replaces
        what was recorded of it (what ``record`` does with one), without a call per row."""
        return self._tables.setdefault(table, {})

    def table(self, name: str) -> dict:
        """{row key: RowChange} of ``name`` (empty if none of its rows changed)."""
        return self._tables.get(name, {})

    def take_all(self) -> list[RowChange]:
        """Every change recorded, in a list (C loops), this one left empty: what holds the rows now
        (ovsdb/laterfree.py frees them a run at a time)."""
        out: list[RowChange] = []
        for rows in self._tables.values():
            out.extend(rows.values())
        self._tables = {}
        return out

    def __len__(self) -> int:
        return sum(len(rows) for rows in self._tables.values())
