"""Row changes as an OVSDB replica reports them (ovsdb/idl/replica.py ``Replica.take_changes``): plain values,
so that what applies them (ovsdb/bridgeports.py, ovsdb/vtep_sync.py, ovsdb/vtep_reporter.py) and their tests need
no ``ovs`` library."""

from __future__ import annotations

from typing import NamedTuple


class RowChange(NamedTuple):
    """One row that changed: ``row`` as it is now (a deleted row: as it was); ``columns`` the columns
    that changed, None when the whole row is new or gone (or the peer did not say). A named tuple: one is made per
    row of every update (20,000 for 10,000 new ports), in about half a frozen dataclass's time."""

    row: object
    deleted: bool = False
    columns: frozenset[str] | None = None


class RowChanges:
    """Rows that changed, by table name then row uuid; a row changed twice keeps one merged entry."""

    def __init__(self):
        self._tables: dict[str, dict] = {}

    def record(self, table: str, uuid, change: RowChange) -> None:
        rows = self._tables.setdefault(table, {})
        before = rows.get(uuid)
        if before is not None and not change.deleted:
            if before.columns is None or change.columns is None:
                change = RowChange(change.row, False, None)
            else:
                change = RowChange(change.row, False, before.columns | change.columns)
        rows[uuid] = change

    def table(self, name: str) -> dict:
        """{uuid: RowChange} of ``name`` (empty if none of its rows changed)."""
        return self._tables.get(name, {})

    def __len__(self) -> int:
        return sum(len(rows) for rows in self._tables.values())
