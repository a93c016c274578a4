"""Accepted OVSDB connections before (or instead of) replication: the listener, TLS on the server side, bounded
JSON-RPC framing, the handshake calls, the session on an accepted connection, the poller helper and the doorbell.

- ``Listener``: one passive TCP socket (``ovs.stream.PassiveStream``) accepting many peers.
- ``PeerLink``: one accepted connection before it is bound to a database; plain JSON-RPC calls with a
  deadline (``list_dbs``, ``get_schema``) so a silent or confused peer cannot hold us forever.
- ``IdleLink``: keeps an accepted connection open (answers echo probes) without replicating anything.
- ``Doorbell``: lets another green thread wake a session loop sleeping in ``Replica.wait`` (e.g.
  when the controller hands a hardware VTEP a new desired state).

Quirks of ovs 4.0.0 handled here (see also tests/unit/test_ovsdb_idl.py, which fails loudly if they
change):

- ``PassiveStream.open("ptcp:...")`` parses ``ptcp:ADDR:PORT`` (address first, unlike OVS's C
  ``ptcp:PORT:ADDR``), raises ``OSError`` from ``bind`` instead of returning an errno, and has no way
  to report the port it bound; we read it from the socket.
- ``jsonrpc.Session.open_unreliably`` builds a Session with ``rpc=None``, i.e. without the connection
  it was given, so it is useless; we build the Session ourselves (see ``_session_on``).
- With eventlet's select, a zero poll timeout is turned into 0.1 ms (eventlet bug workaround in
  ``ovs.poller``: 0.1, in milliseconds); harmless for us, but it bounds how "immediate" an immediate wake is.
"""

from __future__ import annotations

import errno
import os
import reprlib
import ssl

import ovs.jsonrpc
import ovs.poller
import ovs.reconnect
import ovs.stream
import ovs.timeval
import ovs.version

from controller.pacer import Pacer
from ovsdb import jsonstream

PINNED_OVS_VERSION = "4.0.0"
OVS_VERSION = ovs.version.VERSION
DEFAULT_PROBE_MS = 5000
DEFAULT_MAX_MESSAGE = 32 << 20  # characters in one message (settings: ovsdb.max_message_bytes)
READ_BUDGET = 64 * 1024  # bytes one Connection.recv may read and frame before the session loop yields
MAX_UNSOLICITED = 100  # messages a peer may send during one handshake call before we give up on it


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
        """Up to what is left of the budget, in one read: ``Connection.recv`` asks for 4 KiB at a time (ovs 4.0.0),
        and each read is a call through the stream, the green socket and the framing (a 1.58 MB update: 386 reads)."""
        if self.budget <= 0:
            return errno.EAGAIN, ""
        error, data = self._stream.recv(max(n, self.budget))
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
        """The peer's own schema (JSON) for ``database``: an object naming that database. It is parsed where the
        replica is made (``idl.Replica``, which refuses one ovs cannot parse), in the session's first-read turn."""
        result = self.call("get_schema", [database], timeout_ms)
        if not isinstance(result, dict) or not isinstance(result.get("tables"), dict):
            raise PeerError("unusable %s schema: %s" % (database, reprlib.repr(result)))
        if result.get("name") != database:
            raise PeerError("asked for the %s schema, got %r" % (database, result.get("name")))
        return result

    def answer_echoes(self) -> None:
        """Answer the echo requests the peer has sent, without waiting for more (a session waiting for its turn to
        ask for its database: ovsdb/firstreads.py); other messages are ignored, up to ``MAX_UNSOLICITED``; raise
        ``PeerError`` if the peer has gone."""
        for _ in range(MAX_UNSOLICITED):
            self.rpc.run()
            status, msg = self.rpc.recv()
            if status == errno.EAGAIN:
                return
            self._check(status, "waiting for a first read")
            if msg.type == ovs.jsonrpc.Message.T_REQUEST and msg.method == "echo":
                self.rpc.send(ovs.jsonrpc.Message.create_reply(msg.params, msg.id))
        raise PeerError("%d unsolicited messages while waiting for a first read" % MAX_UNSOLICITED)

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


def _poll(session_wait, timeout_ms: int) -> None:
    poller = ovs.poller.Poller()
    session_wait(poller)
    poller.timer_wait(timeout_ms)
    poller.block()


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
