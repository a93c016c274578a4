"""``Replica``: an ``ovs.db.idl.Idl`` replicating the peer's database over an *accepted* connection, and its writes.

- ``Replica.transact``: writes through an ``ovs.db.idl.Transaction``; the body sees only a
  ``RowWriter`` and the caller a ``PendingTransaction`` it polls from its own loop (never blocks).
- ``Replica.take_changes``: the rows the IDL reported changed since the last call (``RowChanges``), so
  readers apply deltas instead of re-reading whole tables; ``Replica.named`` finds Port/Interface rows
  by name through an index kept from the same notifications.

Quirks of ovs 4.0.0 handled here (see also tests/unit/test_ovsdb_idl.py, which fails loudly if they
change):

- ``Idl.__init__`` always opens its own Session from a remote string; we replace ``Idl._session``.
- ``Transaction.commit()`` sends the request and detaches the transaction from the Idl; later calls
  return the status that ``Idl.run()`` recorded from the reply (or TRY_AGAIN if the connection
  dropped). ``PendingTransaction.poll`` relies on that (tests/integration/test_ovsdb_tunnel.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import ovs.db.error
import ovs.db.idl
import ovs.jsonrpc
import ovs.timeval

from controller.pacer import paced
from ovsdb.idl.links import (DEFAULT_PROBE_MS, OVS_VERSION, PINNED_OVS_VERSION, Doorbell, PeerError, PeerLink, _poll,
                             _session_on)
from ovsdb.idl.paced import _PacedIdl, _TrackingIdl
from ovsdb.rowchanges import RowChanges

TXN_TIMEOUT_MS = 10000  # a transaction without a reply by then is abandoned (TXN_TIMED_OUT)
PAUSE_ROWS = 100  # rows of one update processed (and, tracked, recorded) between two pauses (Replica ``pause``)
KEEPALIVE_MS = 1000  # while one long update is processed, an echo request to the peer at most this often

# Outcomes of a transaction (TxnResult.status).
TXN_SUCCESS, TXN_UNCHANGED, TXN_TRY_AGAIN, TXN_ERROR, TXN_TIMED_OUT = (
    "success", "unchanged", "try again", "error", "timed out")
_FINAL = {
    ovs.db.idl.Transaction.SUCCESS: TXN_SUCCESS,
    ovs.db.idl.Transaction.UNCHANGED: TXN_UNCHANGED,
    ovs.db.idl.Transaction.TRY_AGAIN: TXN_TRY_AGAIN,
    ovs.db.idl.Transaction.ERROR: TXN_ERROR,
    ovs.db.idl.Transaction.NOT_LOCKED: TXN_ERROR,
    ovs.db.idl.Transaction.ABORTED: TXN_ERROR,
}


def schema_helper(schema_json: dict, wanted: Mapping[str, Iterable[str]]) -> ovs.db.idl.SchemaHelper:
    """A SchemaHelper from the peer's schema registering only the wanted tables and columns.

    Tables or columns the peer's (older or newer) schema lacks are skipped, so reading them yields
    nothing rather than failing the whole session.
    """
    helper = ovs.db.idl.SchemaHelper(schema_json=schema_json)
    tables = schema_json.get("tables", {})
    for table, columns in wanted.items():
        defined = tables.get(table)
        if isinstance(defined, dict):  # any other shape (a hostile peer's): the parse refuses it (Replica)
            known = defined.get("columns")
            present = [c for c in columns if c in known] if isinstance(known, dict) else []
            helper.register_columns(table, present)
    return helper


@dataclass(frozen=True)
class TxnResult:
    """How a transaction ended: ``status`` is one of the ``TXN_*`` values; ``detail`` explains errors."""

    status: str
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True if the database now holds what the transaction wrote."""
        return self.status in (TXN_SUCCESS, TXN_UNCHANGED)

    @property
    def transient(self) -> bool:
        """True for a conflict with a concurrent change (or a dropped connection): just re-plan."""
        return self.status == TXN_TRY_AGAIN


class RowWriter:
    """What a transaction body may do to a replica's rows; every change joins one transaction.

    Rows are the replica's own (as returned by ``Replica.rows``) or ones ``insert`` returned.
    Columns must be replicated (see ``schema_helper``); an unknown column raises ``KeyError``. A
    value of the wrong type is dropped by ``ovs`` with only a muted vlog message: pass str, int,
    dict, list and rows matching the schema.
    """

    def __init__(self, idl: ovs.db.idl.Idl, txn: ovs.db.idl.Transaction):
        self._idl = idl
        self._txn = txn

    def insert(self, table: str, **columns):
        """A new row of ``table`` with ``columns`` set; reference it from a root row, or it is dropped."""
        row = self._txn.insert(self._idl.tables[table])
        for column, value in columns.items():
            self.set(row, column, value)
        return row

    def set(self, row, column: str, value) -> None:
        """Replace the whole ``column`` of ``row``."""
        setattr(row, column, value)

    def verify(self, row, column: str) -> None:
        """Make the transaction fail (TXN_TRY_AGAIN) if ``column`` changed since the replica read it."""
        row.verify(column)

    def set_key(self, row, column: str, key: str, value: str) -> None:
        """Set one key of a map column, leaving the other keys alone (a server-side mutation)."""
        row.setkey(column, key, value)

    def add_to_set(self, row, column: str, value) -> None:
        """Add one element (e.g. a row reference) to a set column (a server-side mutation)."""
        row.addvalue(column, value)

    def del_key(self, row, column: str, key) -> None:
        """Remove one key of a map column, leaving the other keys alone (a server-side mutation)."""
        row.delkey(column, key)

    def delete(self, row) -> None:
        """Delete ``row``. Rows still referencing it (strongly) make the transaction fail."""
        row.delete()


class PendingTransaction:
    """A committed transaction awaiting its reply; ``poll`` it from the loop that runs the replica."""

    def __init__(self, txn: ovs.db.idl.Transaction, status: str, timeout_ms: int):
        self._txn = txn
        self._status = status
        self._deadline = ovs.timeval.msec() + timeout_ms
        self._timeout_ms = timeout_ms
        self.result: TxnResult | None = None

    def poll(self) -> TxnResult | None:
        """The outcome once known (call after ``Replica.run``); None while the reply is awaited."""
        if self.result is None:
            # After the first commit() the transaction is detached: commit() returns the status
            # Idl.run() recorded from the reply.
            self._status = self._txn.commit()
            if self._status in _FINAL:
                status = _FINAL[self._status]
                self.result = TxnResult(status, self._txn.get_error() if status == TXN_ERROR else "")
            elif ovs.timeval.msec() >= self._deadline:  # a late reply is ignored
                self.result = TxnResult(TXN_TIMED_OUT, "no reply within %d ms" % self._timeout_ms)
        return self.result

    def wait(self, poller) -> None:
        """Wake ``poller`` when the outcome may be known or the deadline passes."""
        self._txn.wait(poller)
        poller.timer_wait_until(self._deadline)


class Replica:
    """An ``ovs.db.idl.Idl`` replica of one database, over a connection the peer opened to us."""

    def __init__(self, link: PeerLink, schema_json: dict, wanted: Mapping[str, Iterable[str]],
                 probe_ms: int = DEFAULT_PROBE_MS, track: bool = False, named: Iterable[str] = (),
                 pause: Callable[[], None] | None = None, on_slice: Callable[[], None] | None = None,
                 on_leaving: Callable[[list[int]], None] | None = None, budget: float | None = None):
        """``track``: record row changes for ``take_changes``; ``named``: tables (with a name column) that
        ``named()`` looks up by name (implies ``track``); ``pause``: called every ``PAUSE_ROWS`` rows while
        ``run()`` processes an update (the session's ``hub.sleep(0)``: other green threads run meanwhile, so
        the caller must not touch this replica from them); ``on_slice`` (with ``track``): called inside ``run()``
        between the slices of a big update of ports (ovsdb/idl/slices.py), to read the rows and ``take_changes``
        (each slice a consistent state); without it every update is applied whole. ``on_leaving`` (with ``on_slice``):
        called with the row numbers of the Interface rows a big pure delete of ports deletes, before its first slice."""
        self.database = schema_json["name"]
        helper = schema_helper(schema_json, wanted)
        # leader_only=False: whatever the peer is (standalone, cluster member, relay), it chose to
        # connect to us; there is no other server to go to.
        try:  # the peer's schema is parsed here (~2 ms of CPU: not before its session's turn, ovsdb/firstreads.py)
            if track or named:
                self._idl = _TrackingIdl("tcp:%s" % link.peer, helper, leader_only=False, named=named)
            else:
                self._idl = _PacedIdl("tcp:%s" % link.peer, helper, leader_only=False)
        except ovs.db.error.Error as exc:  # the peer's input, unusable: its session ends saying why
            raise PeerError("unusable %s schema: %s" % (self.database, exc)) from exc
        self._idl.pacer = paced(pause, PAUSE_ROWS, budget)  # ``budget``: also by the wall clock (controller/pacer.py)
        self._idl.on_slice = on_slice if isinstance(self._idl, _TrackingIdl) else None
        self._idl.on_leaving = on_leaving if self._idl.on_slice is not None else None
        self.pacer = link.rpc.pacer = self._idl.pacer  # a long update pauses while decoded (ovsdb/jsonstream.py) too
        # HACK (ovs 4.0.0): Idl.__init__ always creates its own Session from the remote string (it
        # has not connected yet: nothing happens before run()). Swap in a Session on the accepted
        # connection. Checked by tests/unit/test_ovsdb_idl.py.
        if not isinstance(getattr(self._idl, "_session", None), ovs.jsonrpc.Session):
            raise RuntimeError("ovs %s: Idl has no _session to replace (pinned %s)"
                               % (OVS_VERSION, PINNED_OVS_VERSION))
        self._idl._session = _session_on(link, probe_ms)
        self._link = link
        self._pending: PendingTransaction | None = None
        self._keepalive_at = 0  # ovs.timeval.msec() of the last keepalive()

    @property
    def limit_error(self) -> str | None:
        """Why the peer's last message was refused (too long, too deep, or an update breaking the protocol: the
        connection is then closed), if it was."""
        return self._link.limit_error or self._idl.refused

    def run(self) -> None:
        """Process what the peer sent (at most one batch); never blocks."""
        self._idl.run()

    def keepalive(self) -> None:
        """Call in the pauses of a long stretch of work on this replica (processing an update, reading its rows):
        at most every ``KEEPALIVE_MS``, an echo request to the peer (its reply is dropped by the session). The peer's
        echo requests wait behind the update being processed, and ovsdb-server drops a manager that has sent it
        nothing for two probe intervals; anything it receives counts (``reconnect_activity``)."""
        now = ovs.timeval.msec()
        rpc = self._idl._session.rpc
        if now - self._keepalive_at < KEEPALIVE_MS or rpc is None:
            return
        self._keepalive_at = now
        request = ovs.jsonrpc.Message.create_request("echo", [])
        request.id = "echo"  # what ovs.jsonrpc.Session's own probes use: Session.recv drops the reply
        rpc.send(request)

    @property
    def connected(self) -> bool:
        """False once the connection has dropped; it is never re-established."""
        return self._idl._session.is_connected()

    @property
    def synced(self) -> bool:
        """True once the first full copy of the database has arrived."""
        return self._idl.state == ovs.db.idl.Idl.IDL_S_MONITORING

    @property
    def change_seqno(self) -> int:
        """Changes whenever the replica's contents change."""
        return self._idl.change_seqno

    def rows(self, table: str) -> list:
        """Current rows of ``table`` (empty if the table is not replicated)."""
        idl_table = self._idl.tables.get(table)
        return list(idl_table.rows.values()) if idl_table is not None else []

    def take_changes(self) -> RowChanges | None:
        """The rows changed since the last call (None if this replica does not track changes)."""
        if not isinstance(self._idl, _TrackingIdl):
            return None
        changes, self._idl.changes = self._idl.changes, RowChanges()
        return changes

    def named(self, table: str, name: str) -> list:
        """The rows of ``table`` (one of the ``named`` tables) whose name is ``name``; O(1)."""
        return list(self._idl.names[table].get(name, {}).values())

    def has_column(self, table: str, column: str) -> bool:
        """True if ``table.column`` is replicated (the peer's schema has it and it was wanted)."""
        idl_table = self._idl.tables.get(table)
        return idl_table is not None and column in idl_table.columns

    def transact(self, body: Callable[[RowWriter], None], comment: str = "",
                 timeout_ms: int = TXN_TIMEOUT_MS) -> PendingTransaction:
        """Run ``body`` to build one transaction and send it; poll the result with ``poll()``.

        Never blocks. The replica's rows are unchanged until the peer's update arrives. If ``body``
        raises, the transaction is abandoned and the exception propagates.
        """
        txn = ovs.db.idl.Transaction(self._idl)
        try:
            if comment:
                txn.add_comment(comment)
            body(RowWriter(self._idl, txn))
        except BaseException:
            txn.abort()
            raise
        pending = PendingTransaction(txn, txn.commit(), timeout_ms)
        self._pending = pending
        return pending

    def wait(self, timeout_ms: int, doorbell: Doorbell | None = None) -> None:
        """Block cooperatively until there is work for ``run()``, ``doorbell`` rings, or
        ``timeout_ms`` passes."""

        def session_wait(poller):
            self._idl.wait(poller)
            if self._pending is not None and self._pending.result is None:
                self._pending.wait(poller)
            if doorbell is not None:
                doorbell.wait(poller)

        _poll(session_wait, timeout_ms)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._idl.close()
