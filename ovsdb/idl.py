"""The one door to the ``ovs`` library (Open vSwitch's Python OVSDB IDL), pinned at ovs==4.0.0.

Canopy is the OVSDB *manager*: hypervisors run ``ovs-vsctl set-manager tcp:CANOPY:6640`` and their
ovsdb-server connects to us. The ``ovs`` library is written for the opposite direction (a client
dialling a server), so this module adapts it, and it is the only Canopy module that imports ``ovs``:

- ``Listener``: one passive TCP socket (``ovs.stream.PassiveStream``) accepting many peers.
- ``PeerLink``: one accepted connection before it is bound to a database; plain JSON-RPC calls with a
  deadline (``list_dbs``, ``get_schema``) so a silent or confused peer cannot hold us forever.
- ``Replica``: an ``ovs.db.idl.Idl`` replicating the peer's database over that *accepted* connection.
- ``IdleLink``: keeps an accepted connection open (answers echo probes) without replicating anything.
- ``Replica.transact``: writes through an ``ovs.db.idl.Transaction``; the body sees only a
  ``RowWriter`` and the caller a ``PendingTransaction`` it polls from its own loop (never blocks).
- ``Replica.take_changes``: the rows the IDL reported changed since the last call (``RowChanges``), so
  readers apply deltas instead of re-reading whole tables; ``Replica.named`` finds Port/Interface rows
  by name through an index kept from the same notifications.
- ``column_value``: a column of an IDL row as ``getattr`` gives it, converted once (``Row.__getattr__`` converts
  a set or map three times); ``_PacedIdl`` parses an update's new rows with one default per column, not per row.
- ``Doorbell``: lets another green thread wake a session loop sleeping in ``Replica.wait`` (e.g.
  when the controller hands a hardware VTEP a new desired state).

Everything here is cooperative under eventlet: ``ovs.poller`` switches to a ``select.select`` based
poller when eventlet has patched ``select``, so ``wait()`` yields to other green threads.

Quirks of ovs 4.0.0 handled here (see also tests/unit/test_ovsdb_idl.py, which fails loudly if they
change):

- ``PassiveStream.open("ptcp:...")`` parses ``ptcp:ADDR:PORT`` (address first, unlike OVS's C
  ``ptcp:PORT:ADDR``), raises ``OSError`` from ``bind`` instead of returning an errno, and has no way
  to report the port it bound; we read it from the socket.
- ``jsonrpc.Session.open_unreliably`` builds a Session with ``rpc=None``, i.e. without the connection
  it was given, so it is useless; we build the Session ourselves (see ``_session_on``).
- ``Idl.__init__`` always opens its own Session from a remote string; we replace ``Idl._session``.
- ``ovs.vlog`` drops every message unless ``Vlog.init`` was called, so the library's own warnings
  (parse errors, receive errors) are invisible; callers log what they see through this module.
- ``Transaction.commit()`` sends the request and detaches the transaction from the Idl; later calls
  return the status that ``Idl.run()`` recorded from the reply (or TRY_AGAIN if the connection
  dropped). ``PendingTransaction.poll`` relies on that (tests/integration/test_ovsdb_tunnel.py).
- With eventlet's select, a zero poll timeout is turned into 100 ms (eventlet bug workaround in
  ``ovs.poller``); harmless for us, but it bounds how "immediate" an immediate wake is.
"""

from __future__ import annotations

import errno
import os
import reprlib
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import ovs.db.data
import ovs.db.error
import ovs.db.idl
import ovs.db.types
import ovs.jsonrpc
import ovs.poller
import ovs.reconnect
import ovs.stream
import ovs.timeval
import ovs.version

from controller.pacer import Pacer
from ovsdb import jsonstream, longsets
from ovsdb.rowchanges import RowChange, RowChanges

PINNED_OVS_VERSION = "4.0.0"
_OVS_LOG = ovs.db.idl.vlog  # the ovs IDL's own log (silent unless ovs.vlog is initialised), for its own warnings
OVS_VERSION = ovs.version.VERSION
DEFAULT_PROBE_MS = 5000
DEFAULT_MAX_MESSAGE = 32 << 20  # characters in one message (settings: ovsdb.max_message_bytes)
READ_BUDGET = 64 * 1024  # bytes one Connection.recv may read and frame before the session loop yields
MAX_UNSOLICITED = 100  # messages a peer may send during one handshake call before we give up on it
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


class PeerError(Exception):
    """A peer broke the protocol, did not answer in time, or went away."""


class Listener:
    """A passive TCP OVSDB listener accepting any number of peers; with ``tls`` (a server-side
    ``ssl.SSLContext``) every accepted connection speaks TLS (``TlsStream``)."""

    def __init__(self, address: str, port: int, tls=None):
        """Bind and listen on IPv4 ``address:port`` (port 0 picks a free one). Raises ``OSError``."""
        if ":" in address:  # ovs 4.0.0 splits the name on ":" and binds AF_INET only
            raise ValueError("IPv6 listen address %r is not supported by ovs %s" % (address, OVS_VERSION))
        # ovs 4.0.0 parses "ptcp:ADDR:PORT" (and raises from bind rather than returning an errno).
        error, pstream = ovs.stream.PassiveStream.open("ptcp:%s:%d" % (address, port))
        if error:
            raise OSError(error, "cannot listen on %s:%d: %s" % (address, port, os.strerror(error)))
        self._pstream = pstream
        self._tls = tls
        self.address, self.port = pstream.socket.getsockname()[:2]

    def accept(self, max_message: int = DEFAULT_MAX_MESSAGE) -> PeerLink | None:
        """Accept one pending connection without blocking; ``None`` when none is pending.

        Raises ``OSError`` for accept errors other than "nothing pending" (e.g. EMFILE).
        """
        error, stream = self._pstream.accept()
        if error == errno.EAGAIN:
            return None
        if error:
            raise OSError(error, "accept: %s" % os.strerror(error))
        if self._tls is not None:
            stream = TlsStream.wrap(stream, self._tls)
        return PeerLink(stream, max_message)

    def wait(self, timeout_ms: int) -> None:
        """Block cooperatively until a connection may be pending, or ``timeout_ms`` passes."""
        poller = ovs.poller.Poller()
        self._pstream.wait(poller)
        poller.timer_wait(timeout_ms)
        poller.block()

    def close(self) -> None:
        """Stop listening. Connections already accepted are not affected."""
        self._pstream.close()


class TlsStream(ovs.stream.Stream):
    """The server side of an accepted TLS connection (ovs 4.0.0 only has the client side, ``ssl:``).

    The handshake runs inside ``connect`` a step at a time, as the jsonrpc layer sends and receives, so it
    never blocks and counts against the first request's deadline (``PeerLink.list_dbs``); ``wait`` polls
    for whichever direction the handshake needs next, and wakes at once while decrypted bytes are pending
    (the socket may have nothing more to say though data is there)."""

    def __init__(self, sock, name):
        super().__init__(sock, name, 0)
        self._handshaken = False
        self._want = ovs.poller.POLLIN
        self.handshake_error: str | None = None

    @classmethod
    def wrap(cls, stream, context) -> "TlsStream":
        sock, stream.socket = stream.socket, None  # the plain stream must not close it when collected
        return cls(context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), stream.name)

    def connect(self):
        if self._handshaken:
            return 0
        if self.handshake_error is not None:
            return errno.EPROTO
        try:
            self.socket.do_handshake()
        except ssl.SSLWantReadError:
            self._want = ovs.poller.POLLIN
            return errno.EAGAIN
        except ssl.SSLWantWriteError:
            self._want = ovs.poller.POLLOUT
            return errno.EAGAIN
        except (ssl.SSLError, OSError) as exc:  # no certificate, a wrong CA, not TLS at all, or gone
            self.handshake_error = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            return errno.EPROTO
        self._handshaken = True
        return 0

    def recv(self, n):
        try:
            return super()._recv(n)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return errno.EAGAIN, ""
        except ssl.SSLZeroReturnError:
            return 0, ""
        except ssl.SSLError:
            return errno.EPROTO, ""
        except OSError as exc:
            return exc.errno or errno.EPROTO, ""

    def send(self, buf):
        try:
            return super()._send(buf)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return -errno.EAGAIN
        except ssl.SSLError:
            return -errno.EPROTO
        except OSError as exc:
            return -(exc.errno or errno.EPROTO)

    def wait(self, poller, wait):
        if not self._handshaken and self.handshake_error is None:
            poller.fd_wait(self.socket, self._want)
        elif wait == ovs.stream.Stream.W_RECV and self._handshaken and self.socket.pending():
            poller.immediate_wake()
        else:
            super().wait(poller, wait)


def _peer_of(stream) -> str:
    """``ip:port`` of the remote end of an accepted stream."""
    try:
        host, port = stream.socket.getpeername()[:2]
        return "%s:%d" % (host, port)
    except OSError:
        # Already gone; the stream name is "ptcp:IP:PORT" for accepted TCP streams.
        return stream.name.split(":", 1)[-1]


class _ReadBudget:
    """A stream whose ``recv`` says EAGAIN once ``budget`` bytes were read since the last ``refill``, so
    that one ``Connection.recv`` never reads (and frames) more than that before its caller yields. It returns
    whole UTF-8 characters only, holding back a character's first bytes until the rest is read
    (``jsonstream.whole_characters``: ``Connection.recv``'s decoder lasts one call)."""

    def __init__(self, stream):
        self._stream = stream
        self.budget = READ_BUDGET
        self._held = b""  # the first bytes of a character the last read ended in

    def refill(self) -> None:
        self.budget = READ_BUDGET

    def recv(self, n):
        if self.budget <= 0:
            return errno.EAGAIN, ""
        error, data = self._stream.recv(n)
        if data:
            self.budget -= len(data)
            data = self._held + data
            whole = jsonstream.whole_characters(data)
            data, self._held = data[:whole], data[whole:]
            if not data:
                return errno.EAGAIN, ""
        return error, data

    def __getattr__(self, name):
        return getattr(self._stream, name)


class BoundedConnection(ovs.jsonrpc.Connection):
    """``ovs.jsonrpc.Connection`` parsing with ``ovsdb.jsonstream.Parser``: messages longer than
    ``max_message`` characters drop the connection (``limit_error`` says why), parse time is linear, and
    one ``recv`` reads at most ``READ_BUDGET`` bytes. ``pacer``: ticked while a long message is decoded (its
    pauses come inside ``recv``, in the session's own green thread; ``Replica`` gives its own)."""

    def __init__(self, stream, max_message: int):
        super().__init__(_ReadBudget(stream))
        self.max_message = max_message
        self.limit_error: str | None = None
        self.pacer = Pacer()

    def recv(self):
        if self.stream is None:
            return self.status or ovs.jsonrpc.EOF, None
        if self.parser is None:
            self.parser = jsonstream.Parser(self.max_message, self.pacer)
        parser = self.parser
        self.stream.refill()
        status, msg = super().recv()
        if status == errno.EPROTO and parser.error and self.limit_error is None:
            self.limit_error = parser.error
        return status, msg


class PeerLink:
    """One accepted connection, speaking plain JSON-RPC until it is bound to a database."""

    def __init__(self, stream, max_message: int = DEFAULT_MAX_MESSAGE):
        self.peer = _peer_of(stream)
        self._stream = stream
        self.rpc = BoundedConnection(stream, max_message)

    @property
    def limit_error(self) -> str | None:
        """Why the peer's last message was refused (too long, too deep), if it was."""
        return self.rpc.limit_error

    def call(self, method: str, params: list, timeout_ms: int):
        """Send one request and return its result; raise ``PeerError`` on error, EOF or timeout.

        Echo requests from the peer are answered meanwhile; other messages are ignored, up to
        ``MAX_UNSOLICITED`` of them (a peer flooding us would otherwise keep this loop from yielding).
        """
        request = ovs.jsonrpc.Message.create_request(method, params)
        deadline = ovs.timeval.msec() + timeout_ms
        self._check(self.rpc.send(request), method)
        for _ in range(MAX_UNSOLICITED):
            msg = self._next_message(deadline, method, timeout_ms)
            if msg.type == ovs.jsonrpc.Message.T_REQUEST and msg.method == "echo":
                self.rpc.send(ovs.jsonrpc.Message.create_reply(msg.params, msg.id))
            elif msg.id == request.id and msg.type == ovs.jsonrpc.Message.T_ERROR:
                raise PeerError("%s failed: %s" % (method, msg.error))
            elif msg.id == request.id and msg.type == ovs.jsonrpc.Message.T_REPLY:
                return msg.result
        raise PeerError("%d unsolicited messages while waiting for %s" % (MAX_UNSOLICITED, method))

    def list_dbs(self, timeout_ms: int) -> list[str]:
        """Names of the databases the peer serves."""
        result = self.call("list_dbs", [], timeout_ms)
        if not isinstance(result, list) or not all(isinstance(n, str) for n in result):
            raise PeerError("list_dbs returned %s, not a list of names" % (reprlib.repr(result),))
        return result

    def get_schema(self, database: str, timeout_ms: int) -> dict:
        """The peer's own schema (JSON) for ``database``, checked to parse."""
        result = self.call("get_schema", [database], timeout_ms)
        try:
            ovs.db.idl.SchemaHelper(schema_json=result)
        except Exception as exc:  # any parse failure of peer input means "unusable", whatever its type
            raise PeerError("unusable %s schema: %s" % (database, exc)) from exc
        if result.get("name") != database:
            raise PeerError("asked for the %s schema, got %r" % (database, result.get("name")))
        return result

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self.rpc.stream is not None:
            self.rpc.close()

    def _check(self, status: int, method: str) -> None:
        tls_error = getattr(self._stream, "handshake_error", None)
        if tls_error:
            raise PeerError("TLS handshake failed: %s" % tls_error)
        if status == ovs.jsonrpc.EOF:
            raise PeerError("connection closed during %s" % method)
        if status:
            raise PeerError("%s: %s" % (method, os.strerror(status)))

    def _next_message(self, deadline: int, method: str, timeout_ms: int):
        """The next message from the peer, waiting cooperatively until ``deadline``."""
        while True:
            self.rpc.run()
            status, msg = self.rpc.recv()
            if status != errno.EAGAIN:
                self._check(status, method)
                return msg
            self._wait_until(deadline, method, timeout_ms)

    def _wait_until(self, deadline: int, method: str, timeout_ms: int) -> None:
        if ovs.timeval.msec() >= deadline:
            raise PeerError("no reply to %s within %d ms" % (method, timeout_ms))
        poller = ovs.poller.Poller()
        self.rpc.wait(poller)
        self.rpc.recv_wait(poller)
        poller.timer_wait_until(deadline)
        poller.block()


def _session_on(link: PeerLink, probe_ms: int) -> ovs.jsonrpc.Session:
    """A ``jsonrpc.Session`` wrapping an already-accepted connection, never reconnecting.

    ovs 4.0.0 ``Session.open_unreliably`` passes ``rpc=None`` (drops the connection), so we do what
    it meant to do: a Reconnect FSM marked connected, with max_tries 0 so that once the peer goes the
    Session is dead rather than dialling the peer's ephemeral port. Probes (echo) stay on so a peer
    that vanishes without a FIN is noticed after about two probe intervals.
    """
    name = "tcp:%s" % link.peer
    now = ovs.timeval.msec()
    reconnect = ovs.reconnect.Reconnect(now)
    reconnect.set_name(name)
    reconnect.set_quiet(True)
    reconnect.set_max_tries(0)
    reconnect.set_probe_interval(probe_ms)
    reconnect.connected(now)
    return ovs.jsonrpc.Session(reconnect, link.rpc, [name])


def schema_helper(schema_json: dict, wanted: Mapping[str, Iterable[str]]) -> ovs.db.idl.SchemaHelper:
    """A SchemaHelper from the peer's schema registering only the wanted tables and columns.

    Tables or columns the peer's (older or newer) schema lacks are skipped, so reading them yields
    nothing rather than failing the whole session.
    """
    helper = ovs.db.idl.SchemaHelper(schema_json=schema_json)
    tables = schema_json.get("tables", {})
    for table, columns in wanted.items():
        if table in tables:
            present = [c for c in columns if c in tables[table].get("columns", {})]
            helper.register_columns(table, present)
    return helper


def _poll(session_wait, timeout_ms: int) -> None:
    poller = ovs.poller.Poller()
    session_wait(poller)
    poller.timer_wait(timeout_ms)
    poller.block()


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
    the replica lacks gives ``default``; a row this client's own transaction is changing, or a plain stand-in, is
    read with ``getattr``."""
    data = row.__dict__.get("_data") if isinstance(row, ovs.db.idl.Row) else None
    if data is None or row.__dict__.get("_changes") != {} or row.__dict__.get("_mutations") != {}:
        return getattr(row, name, default)
    schema = row._table.columns.get(name)
    if schema is None:
        return default
    datum = dict.get(data, name)  # HACK (ovs 4.0.0): _data is a ColumnDefaultDict; a column never set is its default
    if datum is None:
        datum = ovs.db.data.Datum.default(schema.type)
    return datum.to_python(row._uuid_to_row)


def reference_count(row, column: str) -> int:
    """How many references ``row``'s set column ``column`` holds, without converting it."""
    datum = _datum(row, column)
    return len(getattr(row, column, None) or ()) if datum is None else len(datum.values)


def _datum(row, column: str):
    # HACK (ovs 4.0.0): an IDL Row keeps its committed columns as Datums in __dict__["_data"].
    data = row.__dict__.get("_data") if isinstance(row, ovs.db.idl.Row) else None
    return data.get(column) if data else None


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
        # __missing__: ~60,000 for one update of 10,000 ports). Same values stored, same answer.
        changed = False
        data = row._data
        for name, datum_json in row_json.items():
            column = table.columns.get(name)
            if not column:
                _OVS_LOG.warn("unknown column %s updating table %s" % (name, table.name))
                continue
            try:
                datum = ovs.db.data.Datum.from_json(column.type, datum_json)
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


class Replica:
    """An ``ovs.db.idl.Idl`` replica of one database, over a connection the peer opened to us."""

    def __init__(self, link: PeerLink, schema_json: dict, wanted: Mapping[str, Iterable[str]],
                 probe_ms: int = DEFAULT_PROBE_MS, track: bool = False, named: Iterable[str] = (),
                 pause: Callable[[], None] | None = None):
        """``track``: record row changes for ``take_changes``; ``named``: tables (with a name column) that
        ``named()`` looks up by name (implies ``track``); ``pause``: called every ``PAUSE_ROWS`` rows while
        ``run()`` processes an update (the session's ``hub.sleep(0)``: other green threads run meanwhile, so
        the caller must not touch this replica from them)."""
        self.database = schema_json["name"]
        helper = schema_helper(schema_json, wanted)
        # leader_only=False: whatever the peer is (standalone, cluster member, relay), it chose to
        # connect to us; there is no other server to go to.
        if track or named:
            self._idl = _TrackingIdl("tcp:%s" % link.peer, helper, leader_only=False, named=named)
        else:
            self._idl = _PacedIdl("tcp:%s" % link.peer, helper, leader_only=False)
        self._idl.pacer = Pacer(pause, PAUSE_ROWS)
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
        """Why the peer's last message was refused (too long, too deep), if it was."""
        return self._link.limit_error

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


class Doorbell:
    """Wakes a green thread blocked in ``Replica.wait`` from another green thread (a self-pipe).

    ``ring`` never blocks and may be called any number of times before the sleeper wakes; the
    sleeper calls ``clear`` once it has looked at whatever the ringer changed. At most one byte is
    ever in the pipe, and ``clear`` reads only when it is there: eventlet's green ``os.read`` waits
    for data rather than raising EAGAIN, so reading an empty pipe would hang the sleeper.
    """

    def __init__(self):
        self._read, self._write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._rung = False

    def ring(self) -> None:
        """Wake the sleeper."""
        if not self._rung and self._write >= 0:
            self._rung = True
            os.write(self._write, b"!")

    def clear(self) -> None:
        """Forget the rings so far."""
        if self._rung and self._read >= 0:
            self._rung = False
            os.read(self._read, 1)

    def wait(self, poller) -> None:
        """Wake ``poller`` when the bell has been rung."""
        poller.fd_wait(self._read, ovs.poller.POLLIN)

    def close(self) -> None:
        """Release the pipe (idempotent)."""
        for fd in (self._read, self._write):
            try:
                os.close(fd)
            except OSError:
                pass
        self._read = self._write = -1


class IdleLink:
    """Keeps an accepted connection open, answering echo probes, replicating nothing.

    For databases Canopy neither reads nor programs, so the peer does not see its manager
    connection flap and reconnect with back-off. (hardware_vtep peers are replicated now.)
    """

    def __init__(self, link: PeerLink, probe_ms: int = DEFAULT_PROBE_MS):
        self._session = _session_on(link, probe_ms)

    def run(self) -> None:
        """Answer probes and discard anything else the peer sends."""
        self._session.run()
        for _ in range(50):
            if self._session.recv() is None:
                break

    @property
    def connected(self) -> bool:
        """False once the connection has dropped."""
        return self._session.is_connected()

    def wait(self, timeout_ms: int) -> None:
        """Block cooperatively until the peer sends something, or ``timeout_ms`` passes."""

        def session_wait(poller):
            self._session.wait(poller)
            self._session.recv_wait(poller)

        _poll(session_wait, timeout_ms)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._session.close()
