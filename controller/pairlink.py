"""The HA link between the two controllers of a pair: authenticated msgpack maps over TCP.

Each node listens and also dials its peer, so there are two connections: a node sends on the one it
dialled and receives on the one it accepted. The state machine (controller.ha) and the store stream
(controller.replication) run over it.

Authentication (both ways, shared secret ``ha.secret``), on every new connection:

1. dialler -> listener  ``{"t": "hi", "node": D, "nonce": Nd}``
2. listener -> dialler  ``{"t": "challenge", "node": L, "nonce": Nl, "proof": mac("listener", Nd, Nl, D, L)}``
3. dialler -> listener  ``{"t": "auth", "proof": mac("dialler", Nd, Nl, D, L)}``

where ``mac`` is HMAC-SHA256 keyed with the secret and the nonces are 32 random bytes. Each side checks the
other's proof before it believes anything: the dialler will not stream to an impostor, the listener
delivers nothing from a connection that has not proved it knows the secret. After step 3 every message
the dialler sends is ``[body, tag]``: ``body`` the msgpack-encoded map and ``tag`` HMAC-SHA256 (keyed with
a session key derived from the secret and both nonces) over the message's counter and ``body``, so a
message cannot be forged, altered, replayed or reordered on the way. A connection that fails any of this
is logged and closed. A new connection never displaces a live authenticated one: an older authenticated
connection from the peer is closed only once it has been silent for two heartbeat intervals.

The link's sockets are served by real OS threads (controller.osthread), not green ones: the heartbeats go out,
and the peer's are heard, every interval while the event loop is busy with a big apply or compile, so a busy
node is not taken for a dead one (docs/ha.md, "A busy node is not a dead one"). Those threads touch no green
lock, event or socket: what they receive is handed to the event loop through an ``Inbox`` and delivered there
(``on_message``, on one green thread, in order); what the event loop sends is queued for the sending thread
(``send``); their log lines go the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import socket
import struct
import threading
import time
from collections import deque
from typing import Callable

import msgpack

from controller.osthread import Inbox, os_select, os_socket, os_threading

MAX_MESSAGE = 256 * 1024 * 1024  # the largest message a link accepts (a snapshot of a big policy)
MAX_HANDSHAKE = 4096             # the largest handshake message
MAX_UNAUTHENTICATED = 2 * 65536  # bytes a connection may send before it authenticated
POLL = 0.2                       # how often the link threads look at the stop flag
BACKOFF_MIN, BACKOFF_MAX = 0.2, 2.0
DIAL_TIMEOUT = 2.0
SEND_TIMEOUT = 5.0               # a send blocked this long drops the connection (the peer stopped reading)
HELLO_TIMEOUT = 5.0              # an accepted connection must authenticate within this
MAX_STRANGERS = 8                # accepted connections that have not authenticated yet
NONCE = 32
REASON_CHARS = 200               # the most of a refusal's reason shown (sent before any proof of the secret)
TAG = 32


def _mac(key: bytes, *parts) -> bytes:
    """HMAC-SHA256 over length-prefixed parts (bytes or str), so no two part lists collide."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        data = part.encode() if isinstance(part, str) else bytes(part)
        mac.update(struct.pack(">I", len(data)) + data)
    return mac.digest()


class _Session:
    """What both ends of one authenticated connection share: the session key and the message counter."""

    def __init__(self, secret: bytes, dialler_nonce: bytes, listener_nonce: bytes):
        self.key = _mac(secret, "canopy-ha-session", dialler_nonce, listener_nonce)
        self.counter = 0

    def seal(self, body: bytes) -> bytes:
        tag = _mac(self.key, struct.pack(">Q", self.counter), body)
        self.counter += 1
        return msgpack.packb([body, tag], use_bin_type=True)

    def open(self, frame) -> dict:
        """The map inside a sealed frame; raises ValueError if it is not one, or its tag is wrong."""
        if not (isinstance(frame, (list, tuple)) and len(frame) == 2 and isinstance(frame[0], bytes)
                and isinstance(frame[1], bytes)):
            raise ValueError("not a sealed message")
        body, tag = frame
        if not hmac.compare_digest(tag, _mac(self.key, struct.pack(">Q", self.counter), body)):
            raise ValueError("bad message authentication tag")
        self.counter += 1
        msg = msgpack.unpackb(body, raw=False, strict_map_key=False)
        if not isinstance(msg, dict) or not isinstance(msg.get("t"), str):
            raise ValueError(f"malformed message {msg!r:.80}")
        return msg


class _Inbound:
    """One accepted connection: its socket, stream decoder, handshake stage and, once it authenticated,
    the peer node and session."""

    def __init__(self, sock, addr):
        self.sock = sock
        self.addr = f"{addr[0]}:{addr[1]}"
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=MAX_MESSAGE)
        self.fed = 0                      # bytes received
        self.accepted = time.monotonic()
        self.heard = self.accepted
        self.claimed: str | None = None   # the node it says it is (step 1)
        self.nonces: tuple[bytes, bytes] | None = None
        self.session: _Session | None = None
        self.peer: str | None = None      # set once it authenticated


class AuthError(Exception):
    pass


class PairLink:
    """The HA link: this node listens on (listen, port); it also dials the peer at (peer_address, peer_port)
    and keeps re-dialling (back-off BACKOFF_MIN .. BACKOFF_MAX). Messages are msgpack maps. Outbound
    messages go on the dialled connection; inbound ones arrive on the accepted one (both exist once both
    nodes run). Both connections authenticate first (see the module docstring); ``secret`` is the shared
    secret (str or bytes).

    Every ``heartbeat_interval`` the sending OS thread sends {"t": "hb", "node": node_id, **heartbeat()}; a new
    dialled connection starts, once authenticated, with the same map as {"t": "hello", ...}. ``heartbeat`` is
    called on that OS thread: it must only read plain attributes (no lock, no store, no socket). Every inbound
    message from the authenticated peer, heartbeats included, is first given to ``on_frame`` on the receiving OS
    thread (the same rules: plain attributes only; it is where a node notes that its peer is alive), then to
    ``on_message`` on the delivering thread (green under eventlet), in arrival order. Anything else (bytes that
    are not msgpack, a failed handshake, a bad tag, our own node id) is logged and closes that connection only.
    One silent for ``silence_timeout`` is closed too (the peer re-dials). ``on_message``, ``on_frame`` and
    ``heartbeat`` are plain attributes, so the owner may swap them."""

    def __init__(self, node_id: str, listen: str, port: int, peer_address: str, peer_port: int,
                 heartbeat_interval: float, heartbeat: Callable[[], dict], on_message: Callable[[dict], None],
                 log=None, silence_timeout: float | None = None, secret: str | bytes = b""):
        if not secret:
            raise ValueError("the HA link needs a shared secret")
        self.secret = secret.encode() if isinstance(secret, str) else bytes(secret)
        self.node_id = node_id
        self.listen, self.port = listen, port
        self.peer_address, self.peer_port = peer_address, peer_port
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat = heartbeat
        self.on_message = on_message
        self.on_frame: Callable[[dict], None] = lambda msg: None
        self.log = log or logging.getLogger("canopy.ha")
        self.silence_timeout = silence_timeout or max(2.0, 6 * heartbeat_interval)
        self.last_heard: float | None = None      # time.monotonic() of the last message from the peer
        self.listened_at: float | None = None     # what had arrived by then has been read (None: not serving)
        self.last_dial_error: str | None = None   # why the last dial failed; None once connected
        self.auth_failures = 0                    # connections closed for failing authentication
        self.out_epoch = 0                        # counts dialled connections: a change may have lost data
        self.beats_sent = 0                       # heartbeats sent (hello included)
        self._refused_at: float | None = None
        self._out: socket.socket | None = None
        self._out_session: _Session | None = None
        self._outbox: deque = deque()             # (epoch, body) queued by send() for the sending thread
        self._wake_out = Inbox()                  # wakes the sending thread when something is queued
        self._inbox = Inbox()                     # received messages and log lines, for the delivering thread
        self._inbound: dict[socket.socket, _Inbound] = {}
        self._hi_nonces: deque = deque(maxlen=4)  # our own last dials' nonces: a hi carrying one is ourselves
        self._peer_in: _Inbound | None = None
        self._listener: socket.socket | None = None
        self._stop = os_threading.Event()
        self._threads: list = []
        self._deliverer: threading.Thread | None = None

    # ------------------------------------------------------------------ life cycle
    def start(self):
        """Bind the listener (raises OSError if the port is taken), then start the two link threads (OS
        threads) and the delivering thread."""
        family = socket.AF_INET6 if ":" in self.listen else socket.AF_INET
        listener = os_socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.listen, self.port))
            listener.listen(8)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self.port = listener.getsockname()[1]
        if self._inbox.closed:  # started again after a stop
            self._wake_out, self._inbox = Inbox(), Inbox()
        self._stop.clear()
        self._threads = [os_threading.Thread(target=target, name=f"canopy-ha-{name}-{self.node_id}", daemon=True)
                         for name, target in (("in", self._serve), ("out", self._dial_loop))]
        for thread in self._threads:
            thread.start()
        self._deliverer = threading.Thread(target=self._deliver, name=f"canopy-ha-deliver-{self.node_id}",
                                           daemon=True)
        self._deliverer.start()
        self.log.info("HA link %s listening on %s:%d, peer %s:%d", self.node_id, self.listen, self.port,
                      self.peer_address, self.peer_port)

    def stop(self):
        """Close every socket and join the link threads (bounded); once they have all ended, close the wake-up
        pipes too (they were left open: four descriptors per stopped link)."""
        self._stop.set()
        self._wake_out.put(None)
        out = self._out
        if out is not None:
            _shutdown(out)
        ended = True
        for thread in self._threads:
            thread.join(DIAL_TIMEOUT + SEND_TIMEOUT + 1)
            if thread.is_alive():
                ended = False
                self.log.warning("HA link thread %s did not stop", thread.name)
        self._threads = []
        self._inbox.put(None)
        if self._deliverer is not None:
            self._deliverer.join(POLL * 5)
            ended = ended and not self._deliverer.is_alive()
        self._deliverer = None
        if ended:  # a thread still running may yet wait on or write to them
            self._wake_out.close()
            self._inbox.close()

    # ------------------------------------------------------------------ status
    @property
    def connected_out(self) -> bool:
        return self._out is not None

    @property
    def connected_in(self) -> bool:
        return self._peer_in is not None

    def refused(self) -> bool:
        """True if the last dial was refused (a TCP reset or an ICMP unreachable) and nothing was heard from
        the peer since. Not proof that the peer is dead: a firewall rejects the same way."""
        refused_at = self._refused_at
        if refused_at is None:
            return False
        heard = self.last_heard
        return heard is None or heard < refused_at

    # ------------------------------------------------------------------ the event loop's side
    def send(self, msg: dict) -> bool:
        """Queue one message for the dialled connection, after everything queued before it. False if not
        connected (or not encodable); never raises. A message queued on a connection that then fails is not
        sent on the next one (``out_epoch`` tells the owner that something may have been lost)."""
        try:
            body = msgpack.packb(msg, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            self.log.error("HA link %s: cannot encode %r message: %s", self.node_id, msg.get("t"), exc)
            return False
        if self._out is None or self._out_session is None:
            return False
        self._outbox.append((self.out_epoch, body))
        self._wake_out.put(None)
        return True

    def _deliver(self):
        """The delivering thread (green under eventlet): what the OS threads received, in order."""
        while not self._stop.is_set() or self._inbox_pending():
            for item in self._inbox.take(POLL):
                if isinstance(item, dict):
                    try:
                        self.on_message(item)
                    except Exception:
                        self.log.exception("HA link %s: handling %r message failed", self.node_id, item.get("t"))
                elif isinstance(item, tuple):
                    level, fmt, args = item
                    self.log.log(level, fmt, *args)

    def _inbox_pending(self) -> bool:
        return self._inbox.pending()

    def _say(self, level: int, fmt: str, *args):
        """Log from an OS thread: the line is written by the delivering thread (no green lock taken here)."""
        self._inbox.put((level, fmt, args))

    def _greeting(self, kind: str) -> dict:
        try:
            extra = self.heartbeat() or {}
        except Exception as exc:
            self._say(logging.ERROR, "HA link %s: heartbeat() failed: %r", self.node_id, exc)
            extra = {}
        return {**extra, "t": kind, "node": self.node_id}

    # ------------------------------------------------------------------ dialling and sending (outbound OS thread)
    def _dial_loop(self):
        delay = BACKOFF_MIN
        while not self._stop.is_set():
            sock = self._dial()
            if sock is not None:
                began = time.monotonic()
                self._run_out(sock)
                if time.monotonic() - began > BACKOFF_MAX:
                    delay = BACKOFF_MIN
            self._stop.wait(delay)
            delay = min(delay * 2, BACKOFF_MAX)

    def _dial(self):
        """Connect to the peer, authenticate both ways and send hello; the socket, or None with
        last_dial_error set."""
        try:
            sock = os_socket.create_connection((self.peer_address, self.peer_port), timeout=DIAL_TIMEOUT)
        except OSError as exc:
            self._dial_failed(exc)
            return None
        try:
            session = self._authenticate_out(sock)
            _tune(sock)
            if self._stop.is_set():
                raise OSError("stopping")
            self._outbox.clear()  # queued for an earlier connection: the owner re-sends by out_epoch
            sock.sendall(session.seal(msgpack.packb(self._greeting("hello"), use_bin_type=True)))
        except (OSError, ValueError, AuthError, msgpack.UnpackException) as exc:
            if isinstance(exc, AuthError):
                self.auth_failures += 1
                self._say(logging.WARNING, "HA link %s: the peer at %s:%d failed authentication: %s", self.node_id,
                          self.peer_address, self.peer_port, exc)
            self._dial_failed(exc)
            sock.close()
            return None
        self.beats_sent += 1
        self.out_epoch += 1
        self._out, self._out_session = sock, session
        self.last_dial_error, self._refused_at = None, None
        self._say(logging.INFO, "HA link %s: connected to peer %s:%d", self.node_id, self.peer_address,
                  self.peer_port)
        return sock

    def _authenticate_out(self, sock) -> _Session:
        """Steps 1-3 of the handshake on a dialled socket (blocking, DIAL_TIMEOUT per read)."""
        mine = os.urandom(NONCE)
        self._hi_nonces.append(mine)
        sock.sendall(msgpack.packb({"t": "hi", "node": self.node_id, "nonce": mine}, use_bin_type=True))
        reply = _read_one(sock)
        if reply.get("t") == "refused":  # (whoever answers at the peer address may send it: printable, bounded)
            raise AuthError(f"refused by the peer: {_printable(reply.get('reason'), REASON_CHARS)}")
        theirs, node, proof = reply.get("nonce"), reply.get("node"), reply.get("proof")
        if reply.get("t") != "challenge" or not isinstance(theirs, bytes) or len(theirs) != NONCE \
                or not isinstance(node, str) or not node or not isinstance(proof, bytes):
            raise AuthError(f"unexpected answer {reply.get('t')!r:.40} to our hi")
        if node == self.node_id:
            raise AuthError("it is ourselves (does the peer address point at this node?)")
        if not hmac.compare_digest(proof, _mac(self.secret, "listener", mine, theirs, self.node_id, node)):
            raise AuthError("wrong proof of the shared secret (is ha.secret the same on both nodes?)")
        sock.sendall(msgpack.packb({"t": "auth", "proof": _mac(self.secret, "dialler", mine, theirs,
                                                                 self.node_id, node)}, use_bin_type=True))
        return _Session(self.secret, mine, theirs)

    def _dial_failed(self, exc):
        """Record why a dial failed: ``last_dial_error`` before ``_refused_at``, so that a reader in another thread
        that sees ``refused()`` also sees its reason."""
        refused = isinstance(exc, ConnectionRefusedError)
        if isinstance(exc, AuthError):
            error = f"authentication failed: {exc}"
        elif refused:
            error = "connection refused"
        else:
            error = "timed out" if isinstance(exc, socket.timeout) else (
                getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).lower()
        if error != self.last_dial_error:
            self._say(logging.INFO, "HA link %s: cannot reach peer %s:%d: %s", self.node_id, self.peer_address,
                      self.peer_port, error)
        self.last_dial_error = error
        self._refused_at = time.monotonic() if refused else None

    def _run_out(self, sock):
        """Send what send() queued, and a heartbeat every interval, on a dialled connection until it fails or
        the link stops. The heartbeat is built right before it is sent, after everything queued before it, so
        it never reports an older position than a message sent ahead of it."""
        epoch, session = self.out_epoch, self._out_session
        poller = os_select.poll()
        poller.register(sock, os_select.POLLIN)
        poller.register(self._wake_out.fd, os_select.POLLIN)
        next_beat = time.monotonic() + self.heartbeat_interval
        try:
            while not self._stop.is_set():
                wait = min(POLL, max(0.0, next_beat - time.monotonic()))
                for fd, _ in poller.poll(wait * 1000):
                    if fd == sock.fileno() and not sock.recv(4096):  # the peer sends nothing here; EOF ends
                        raise ConnectionResetError("peer closed our connection")
                self._wake_out.drain()
                self._flush(sock, session, epoch)
                if time.monotonic() >= next_beat:
                    sock.sendall(session.seal(msgpack.packb(self._greeting("hb"), use_bin_type=True)))
                    self.beats_sent += 1
                    next_beat = time.monotonic() + self.heartbeat_interval
        except (OSError, ValueError) as exc:
            if not self._stop.is_set():
                self._say(logging.INFO, "HA link %s: connection to peer lost: %s; reconnecting", self.node_id, exc)
        finally:
            self._out, self._out_session = None, None
            sock.close()

    def _flush(self, sock, session, epoch):
        """Send the queued messages of this connection, in order (older connections' ones are dropped)."""
        while self._outbox:
            queued_epoch, body = self._outbox.popleft()
            if queued_epoch == epoch:
                sock.sendall(session.seal(body))

    # ------------------------------------------------------------------ receiving (inbound OS thread)
    def _serve(self):
        poller = os_select.poll()
        poller.register(self._listener, os_select.POLLIN)
        by_fd = {self._listener.fileno(): self._listener}
        try:
            while not self._stop.is_set():
                began = time.monotonic()
                for fd, _ in poller.poll(POLL * 1000):
                    sock = by_fd.get(fd)
                    if sock is self._listener:
                        accepted = self._accept()
                        if accepted is not None:
                            by_fd[accepted.fileno()] = accepted
                            poller.register(accepted, os_select.POLLIN)
                    elif sock is not None and sock in self._inbound:
                        self._read(self._inbound[sock])
                self.listened_at = began
                self._expire()
                for fd in [fd for fd, s in by_fd.items() if s is not self._listener and s not in self._inbound]:
                    poller.unregister(fd)
                    del by_fd[fd]
        finally:
            self.listened_at = None
            for conn in list(self._inbound.values()):
                self._drop(conn, None)
            self._listener.close()

    def _accept(self):
        try:
            sock, addr = self._listener.accept()
        except OSError as exc:
            self._say(logging.WARNING, "HA link %s: accept failed: %s", self.node_id, exc)
            return None
        _tune(sock)
        strangers = sorted((c for c in self._inbound.values() if c.peer is None), key=lambda c: c.accepted)
        if len(strangers) >= MAX_STRANGERS:
            self._drop(strangers[0], "too many connections that did not authenticate")
        self._inbound[sock] = _Inbound(sock, addr)
        return sock

    def _read(self, conn: _Inbound):
        try:
            data = conn.sock.recv(65536)
        except OSError as exc:
            self._drop(conn, f"read failed: {exc}")
            return
        if not data:
            self._drop(conn, "closed by the other end" if conn.peer else None)
            return
        conn.fed += len(data)
        if conn.peer is None and conn.fed > MAX_UNAUTHENTICATED:
            self.auth_failures += 1
            self._drop(conn, f"sent {conn.fed} bytes without authenticating", warn=True)
            return
        try:
            conn.unpacker.feed(data)
            for item in conn.unpacker:
                if not self._receive(conn, item):
                    return
        except Exception as exc:  # any decoding or authentication error: the stream cannot be trusted
            self.auth_failures += conn.peer is None
            self._drop(conn, f"{type(exc).__name__}: {exc}", warn=True)

    def _receive(self, conn: _Inbound, item) -> bool:
        """Check one decoded item, note the peer alive (``on_frame``) and queue it for ``on_message``; False if
        the connection was dropped. Raises on anything that is not the next step of the handshake or a
        correctly sealed message."""
        if conn.peer is None:
            self._handshake(conn, item)
            return True
        msg = conn.session.open(item)
        conn.heard = self.last_heard = time.monotonic()
        self._peer_in = conn  # the connection the peer last spoke on
        try:
            self.on_frame(msg)
        except Exception as exc:
            self._say(logging.ERROR, "HA link %s: noting a %r message failed: %r", self.node_id, msg.get("t"), exc)
        self._inbox.put(msg)
        return conn.sock in self._inbound

    def _handshake(self, conn: _Inbound, msg):
        if not isinstance(msg, dict):
            raise AuthError(f"expected a handshake map, got {msg!r:.80}")
        if conn.claimed is None:  # step 1: hi -> challenge
            node, nonce = msg.get("node"), msg.get("nonce")
            if msg.get("t") != "hi" or not isinstance(node, str) or not node or not isinstance(nonce, bytes) \
                    or len(nonce) != NONCE:
                raise AuthError(f"first message is not a hi ({msg.get('t')!r:.40})")
            if node == self.node_id and nonce in self._hi_nonces:
                _refuse(conn.sock, "it is ourselves (does the peer address point at this node?)")
            if node == self.node_id:  # another node given our name (ha.node_id defaults to the host name)
                _refuse(conn.sock, f"both nodes have ha.node_id {node!r}: each node of a pair needs its own "
                                   "(default: the host name)")
            mine = os.urandom(NONCE)
            conn.claimed, conn.nonces = node, (nonce, mine)
            proof = _mac(self.secret, "listener", nonce, mine, node, self.node_id)
            conn.sock.sendall(msgpack.packb({"t": "challenge", "node": self.node_id, "nonce": mine,
                                             "proof": proof}, use_bin_type=True))
            return
        theirs, mine = conn.nonces  # step 3: auth
        proof = msg.get("proof")
        expected = _mac(self.secret, "dialler", theirs, mine, conn.claimed, self.node_id)
        if msg.get("t") != "auth" or not isinstance(proof, bytes) or not hmac.compare_digest(proof, expected):
            raise AuthError("failed authentication (wrong proof of the shared secret)")
        conn.session, conn.peer = _Session(self.secret, theirs, mine), conn.claimed
        conn.heard = time.monotonic()
        self._retire_silent(conn)
        self._say(logging.INFO, "HA link %s: peer %s connected from %s (authenticated)", self.node_id, conn.peer,
                  conn.addr)

    def _retire_silent(self, newcomer: _Inbound):
        """Close older authenticated connections that went silent; a live one stays (never displaced)."""
        now = time.monotonic()
        for other in [c for c in self._inbound.values() if c is not newcomer and c.peer is not None]:
            if now - other.heard > 2 * self.heartbeat_interval:
                self._drop(other, "replaced by a new authenticated connection from the peer")

    def _expire(self):
        now = time.monotonic()
        for conn in list(self._inbound.values()):
            if conn.peer is None and now - conn.accepted > HELLO_TIMEOUT:
                self._drop(conn, "did not authenticate in time", warn=True)
            elif conn.peer is not None and now - conn.heard > self.silence_timeout:
                self._drop(conn, f"nothing heard for {self.silence_timeout:g} s", warn=True)

    def _drop(self, conn: _Inbound, why: str | None, warn: bool = False):
        self._inbound.pop(conn.sock, None)
        if self._peer_in is conn:
            self._peer_in = next((c for c in self._inbound.values() if c.peer is not None), None)
        conn.sock.close()
        if why:
            self._say(logging.WARNING if warn else logging.INFO, "HA link %s: closed connection from %s (%s): %s",
                      self.node_id, conn.addr, conn.peer or conn.claimed or "unknown", why)


def _refuse(sock, why: str):
    """Tell the dialler why its hi is refused, so that its log and /v1/ha say why too (not "does the peer use the same
    ha.secret?"), and raise AuthError(why)."""
    try:
        sock.sendall(msgpack.packb({"t": "refused", "reason": why}, use_bin_type=True))
    except OSError:
        pass
    raise AuthError(why)


def _printable(value, limit: int) -> str:
    """``value`` as at most ``limit`` characters of one printable line (a line break or an escape sequence a peer sent
    would forge lines of our log, or rewrite the terminal showing it)."""
    return "".join(c if c.isprintable() else "?" for c in str(value)[:limit])


def _read_one(sock) -> dict:
    """One msgpack map from a blocking socket (at most MAX_HANDSHAKE bytes)."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=MAX_HANDSHAKE)
    while True:
        data = sock.recv(MAX_HANDSHAKE)
        if not data:
            raise AuthError("closed during the handshake (does the peer use the same ha.secret?)")
        unpacker.feed(data)
        for item in unpacker:
            if not isinstance(item, dict):
                raise AuthError(f"expected a handshake map, got {item!r:.80}")
            return item


def _tune(sock):
    """TCP_NODELAY, keepalive, a send timeout and (Linux) a bound on unacknowledged data."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_USER_TIMEOUT"):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(SEND_TIMEOUT * 1000))
    sock.settimeout(SEND_TIMEOUT)


def _shutdown(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
