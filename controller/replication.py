"""Active/standby replication: the HA link between the two controllers of a pair, and both ends of the
store stream that runs over it.

- ``PairLink`` carries msgpack maps between the two nodes over TCP. Each node listens and also dials its
  peer, so there are two connections: a node sends on the one it dialled and receives on the one it
  accepted. It sends heartbeats; the pair state machine (not here) reads them to decide roles.
- ``Replicator`` (active side) ships every committed change to the standby and waits for its
  acknowledgement; when the standby is behind it sends the missing changes, or a snapshot of the whole
  store when those are compacted away or the standby's history diverged from ours.
- ``Applier`` (standby side) writes what arrives into its own store and State and acknowledges it.

Positions in history are (seq, ts) pairs (Store.history()): the standby reports its own in every
heartbeat and acknowledgement, and the active trusts a position only if its own change at that seq has
the same commit time, so a standby with commits of its own (an old active) is replaced, never merged.

Only stdlib threading/socket/select/time: under ryu-manager they are eventlet's green versions.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import threading
import time
from typing import Callable

import msgpack

from controller.policy import Policy
from controller.store import Change, StoreError

MAX_MESSAGE = 256 * 1024 * 1024  # the largest message a link accepts (a snapshot of a big policy)
POLL = 0.2                       # how often the link threads look at the stop flag
BACKOFF_MIN, BACKOFF_MAX = 0.2, 2.0
DIAL_TIMEOUT = 2.0
SEND_TIMEOUT = 5.0               # a send blocked this long drops the connection (the peer stopped reading)
HELLO_TIMEOUT = 5.0              # an accepted connection must introduce itself within this
MAX_STRANGERS = 8                # accepted connections that have not introduced themselves yet
BATCH = 500                      # changes per catch-up message
RESYNC_HOLDOFF = 0.5             # the standby asks again for the same position no sooner than this


class _Inbound:
    """One accepted connection: its socket, stream decoder, and the peer node once it said hello."""

    def __init__(self, sock, addr):
        self.sock = sock
        self.addr = f"{addr[0]}:{addr[1]}"
        self.unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=MAX_MESSAGE)
        self.accepted = time.monotonic()
        self.heard = self.accepted
        self.peer: str | None = None


class PairLink:
    """The HA link: this node listens on (listen, port); it also dials the peer at (peer_address, peer_port)
    and keeps re-dialling (back-off BACKOFF_MIN .. BACKOFF_MAX). Messages are msgpack maps, decoded with a
    streaming Unpacker. Outbound messages go on the dialled connection; inbound ones arrive on the accepted
    one (both exist once both nodes run).

    Every ``heartbeat_interval`` it sends {"t": "hb", "node": node_id, **heartbeat()}; a new dialled
    connection starts with the same map as {"t": "hello", ...}. Every inbound message from the peer,
    heartbeats included, goes to ``on_message`` (on the link's receiving thread). An accepted connection
    must start with a hello or hb from a node other than ourselves; one that sends anything else, or bytes
    that are not msgpack, is logged and closed. One silent for ``silence_timeout`` is closed too (the peer
    re-dials). ``heartbeat`` is called with the send lock held: it must not wait for other link traffic.
    ``on_message`` and ``heartbeat`` are plain attributes, so the owner may swap them."""

    def __init__(self, node_id: str, listen: str, port: int, peer_address: str, peer_port: int,
                 heartbeat_interval: float, heartbeat: Callable[[], dict], on_message: Callable[[dict], None],
                 log=None, silence_timeout: float | None = None):
        self.node_id = node_id
        self.listen, self.port = listen, port
        self.peer_address, self.peer_port = peer_address, peer_port
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat = heartbeat
        self.on_message = on_message
        self.log = log or logging.getLogger("canopy.ha")
        self.silence_timeout = silence_timeout or max(2.0, 6 * heartbeat_interval)
        self.last_heard: float | None = None      # time.monotonic() of the last message from the peer
        self.last_dial_error: str | None = None   # why the last dial failed; None once connected
        self.out_epoch = 0                        # counts dialled connections: a change may have lost data
        self._refused_at: float | None = None
        self._out: socket.socket | None = None
        self._out_lock = threading.RLock()
        self._inbound: dict[socket.socket, _Inbound] = {}
        self._peer_in: _Inbound | None = None
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ life cycle
    def start(self):
        """Bind the listener (raises OSError if the port is taken), then start the two link threads."""
        family = socket.AF_INET6 if ":" in self.listen else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self.listen, self.port))
            listener.listen(8)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._stop.clear()
        self._threads = [threading.Thread(target=target, name=f"canopy-ha-{name}-{self.node_id}", daemon=True)
                         for name, target in (("in", self._serve), ("out", self._dial_loop))]
        for thread in self._threads:
            thread.start()
        self.log.info("HA link %s listening on %s:%d, peer %s:%d", self.node_id, self.listen, self.port,
                      self.peer_address, self.peer_port)

    def stop(self):
        """Close every socket and join the link threads (bounded)."""
        self._stop.set()
        with self._out_lock:
            if self._out is not None:
                _shutdown(self._out)
        for thread in self._threads:
            thread.join(DIAL_TIMEOUT + SEND_TIMEOUT + 1)
            if thread.is_alive():
                self.log.warning("HA link thread %s did not stop", thread.name)
        self._threads = []

    # ------------------------------------------------------------------ status
    @property
    def connected_out(self) -> bool:
        return self._out is not None

    @property
    def connected_in(self) -> bool:
        return self._peer_in is not None

    def refused(self) -> bool:
        """True if the last dial was refused (nothing listens on the peer's port) and nothing was heard
        from the peer since: evidence that the peer process is gone, not merely unreachable."""
        refused_at = self._refused_at
        if refused_at is None:
            return False
        heard = self.last_heard
        return heard is None or heard < refused_at

    # ------------------------------------------------------------------ sending
    def send(self, msg: dict) -> bool:
        """Send one message on the dialled connection. False if not connected or the send failed (the
        connection is then dropped and re-dialled); never raises."""
        try:
            data = msgpack.packb(msg, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            self.log.error("HA link %s: cannot encode %r message: %s", self.node_id, msg.get("t"), exc)
            return False
        with self._out_lock:
            sock = self._out
            if sock is None:
                return False
            try:
                sock.sendall(data)
                return True
            except OSError as exc:
                self.log.warning("HA link %s: send to %s:%d failed (%s); reconnecting", self.node_id,
                                 self.peer_address, self.peer_port, exc)
                self._out = None
                _shutdown(sock)  # the dialling thread sees the end and closes it
                return False

    def _greeting(self, kind: str) -> dict:
        try:
            extra = self.heartbeat() or {}
        except Exception:
            self.log.exception("HA link %s: heartbeat() failed", self.node_id)
            extra = {}
        return {**extra, "t": kind, "node": self.node_id}

    # ------------------------------------------------------------------ dialling (outbound thread)
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

    def _dial(self) -> socket.socket | None:
        """Connect to the peer and send hello; the socket, or None with last_dial_error set."""
        try:
            sock = socket.create_connection((self.peer_address, self.peer_port), timeout=DIAL_TIMEOUT)
        except OSError as exc:
            self._dial_failed(exc)
            return None
        _tune(sock)
        with self._out_lock:
            if self._stop.is_set():
                sock.close()
                return None
            try:
                sock.sendall(msgpack.packb(self._greeting("hello"), use_bin_type=True))
            except (OSError, TypeError, ValueError) as exc:
                self._dial_failed(exc)
                sock.close()
                return None
            self._out = sock
            self.out_epoch += 1
        self.last_dial_error, self._refused_at = None, None
        self.log.info("HA link %s: connected to peer %s:%d", self.node_id, self.peer_address, self.peer_port)
        return sock

    def _dial_failed(self, exc):
        refused = isinstance(exc, ConnectionRefusedError)
        self._refused_at = time.monotonic() if refused else None
        error = "connection refused" if refused else (
            "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or str(exc)).lower())
        if error != self.last_dial_error:
            self.log.info("HA link %s: cannot reach peer %s:%d: %s", self.node_id, self.peer_address,
                          self.peer_port, error)
        self.last_dial_error = error

    def _run_out(self, sock):
        """Send heartbeats on a dialled connection until it fails, is dropped by send(), or the link stops."""
        next_beat = time.monotonic() + self.heartbeat_interval
        try:
            while not self._stop.is_set() and self._out is sock:
                wait = min(POLL, max(0.0, next_beat - time.monotonic()))
                readable, _, _ = select.select([sock], [], [], wait)
                if readable and not sock.recv(4096):  # the peer sends nothing here: data is ignored, EOF ends
                    self.log.info("HA link %s: peer closed our connection", self.node_id)
                    break
                if time.monotonic() >= next_beat:
                    with self._out_lock:  # built and sent under one hold: never older than a prior ack
                        if self._out is not sock or not self.send(self._greeting("hb")):
                            break
                    next_beat = time.monotonic() + self.heartbeat_interval
        except (OSError, ValueError) as exc:
            self.log.info("HA link %s: connection to peer lost: %s", self.node_id, exc)
        finally:
            with self._out_lock:
                if self._out is sock:
                    self._out = None
            sock.close()

    # ------------------------------------------------------------------ receiving (inbound thread)
    def _serve(self):
        try:
            while not self._stop.is_set():
                socks = [self._listener, *self._inbound]
                try:
                    readable, _, _ = select.select(socks, [], [], POLL)
                except (OSError, ValueError):
                    for sock in [s for s in self._inbound if s.fileno() < 0]:
                        self._drop(self._inbound[sock], "socket closed")
                    continue
                for sock in readable:
                    if sock is self._listener:
                        self._accept()
                    elif sock in self._inbound:
                        self._read(self._inbound[sock])
                self._expire()
        finally:
            for conn in list(self._inbound.values()):
                self._drop(conn, None)
            self._listener.close()

    def _accept(self):
        try:
            sock, addr = self._listener.accept()
        except OSError as exc:
            self.log.warning("HA link %s: accept failed: %s", self.node_id, exc)
            return
        _tune(sock)
        strangers = sorted((c for c in self._inbound.values() if c.peer is None), key=lambda c: c.accepted)
        if len(strangers) >= MAX_STRANGERS:
            self._drop(strangers[0], "too many connections that did not say hello")
        self._inbound[sock] = _Inbound(sock, addr)

    def _read(self, conn: _Inbound):
        try:
            data = conn.sock.recv(65536)
        except OSError as exc:
            self._drop(conn, f"read failed: {exc}")
            return
        if not data:
            self._drop(conn, "closed by the other end" if conn.peer else None)
            return
        try:
            conn.unpacker.feed(data)
            for msg in conn.unpacker:
                if not self._receive(conn, msg):
                    return
        except Exception as exc:  # any decoding error: the stream cannot be trusted any more
            self._drop(conn, f"malformed data ({type(exc).__name__}: {exc})", warn=True)

    def _receive(self, conn: _Inbound, msg) -> bool:
        """Check and deliver one decoded message; False if the connection was dropped."""
        if not isinstance(msg, dict) or not isinstance(msg.get("t"), str):
            self._drop(conn, f"malformed message {msg!r:.80}", warn=True)
            return False
        if conn.peer is None and not self._introduce(conn, msg):
            return False
        conn.heard = self.last_heard = time.monotonic()
        try:
            self.on_message(msg)
        except Exception:
            self.log.exception("HA link %s: handling %r message failed", self.node_id, msg.get("t"))
        return conn.sock in self._inbound

    def _introduce(self, conn: _Inbound, msg) -> bool:
        node = msg.get("node")
        if msg["t"] not in ("hello", "hb") or not isinstance(node, str) or not node:
            self._drop(conn, f"first message is not a hello ({msg['t']!r:.40})", warn=True)
            return False
        if node == self.node_id:
            self._drop(conn, "it is ourselves (does the peer address point at this node?)", warn=True)
            return False
        for other in [c for c in self._inbound.values() if c is not conn and c.peer is not None]:
            self._drop(other, "replaced by a new connection from the peer")
        conn.peer = node
        self._peer_in = conn
        self.log.info("HA link %s: peer %s connected from %s", self.node_id, node, conn.addr)
        return True

    def _expire(self):
        now = time.monotonic()
        for conn in list(self._inbound.values()):
            if conn.peer is None and now - conn.accepted > HELLO_TIMEOUT:
                self._drop(conn, "no hello", warn=True)
            elif conn.peer is not None and now - conn.heard > self.silence_timeout:
                self._drop(conn, f"nothing heard for {self.silence_timeout:g} s", warn=True)

    def _drop(self, conn: _Inbound, why: str | None, warn: bool = False):
        self._inbound.pop(conn.sock, None)
        if self._peer_in is conn:
            self._peer_in = None
        conn.sock.close()
        if why:
            (self.log.warning if warn else self.log.info)(
                "HA link %s: closed connection from %s (%s): %s", self.node_id, conn.addr,
                conn.peer or "unknown", why)


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


# ---------------------------------------------------------------------------------------------- active

class Replicator:
    """Active side. ship(changes, meta) sends {"t": "changes", "changes": [c.to_wire()...], "meta": meta}
    and waits (bounded by ack_timeout) for the standby's {"t": "ack", "seq": >= last, "history": ...}.
    Returns True if acknowledged; False at once when no standby is connected (both link directions), or
    after the timeout (the standby is then ``lagging`` and is caught up when it next reports its position).

    on_message handles the standby's "ack", and the "hello", "hb" and "resync" maps that carry its
    position ("seq" and "history"): behind on our history, it gets the missing changes (in batches of
    BATCH); behind a compacted log, or diverged from our history, a {"t": "snapshot", "snapshot":
    store.snapshot()}. Other message types are ignored. What was sent recently on the current connection
    counts as on its way, so a heartbeat does not trigger the same catch-up twice.

    on_message and ship() share one lock; ``synced``, ``lag()`` and ``acked_seq`` read without it, so a
    link heartbeat() may call them."""

    def __init__(self, store, link: PairLink, ack_timeout: float = 2.0, log=None):
        self.store = store
        self.link = link
        self.ack_timeout = ack_timeout
        self.resend_after = max(ack_timeout, 1.0)
        self.log = log or logging.getLogger("canopy.ha")
        self.acked_seq = 0        # the standby holds our history up to here (it acknowledged or reported it)
        self.lagging = False      # a ship() timed out and the standby has not caught up since
        self._known = False       # acked_seq is a verified position of the connected standby
        self._sent_upto = 0       # everything up to here was sent in order, on _sent_epoch, at _sent_at
        self._sent_epoch = -1
        self._sent_at = 0.0
        self._cond = threading.Condition(threading.RLock())

    @property
    def synced(self) -> bool:
        """The connected standby verifiably holds our whole history."""
        return self._known and self.acked_seq >= self.store.last_seq()

    def lag(self) -> int:
        """How many changes the standby is behind (by what it acknowledged)."""
        return max(0, self.store.last_seq() - self.acked_seq)

    # ------------------------------------------------------------------ shipping a commit
    def ship(self, changes: list[Change], meta: dict) -> bool:
        if not changes:
            return True
        last = changes[-1].seq
        if not (self.link.connected_out and self.link.connected_in):
            self._mark_lagging(last, "no standby connected")
            return False
        with self._cond:
            base = self._base()
            if base is not None and base < last:
                if base == changes[0].seq - 1:
                    self._send_changes(changes, meta)
                else:  # behind, or ahead of a lost send: catch up from the store (holds these changes too)
                    self._send_from(base)
            deadline = time.monotonic() + self.ack_timeout
            while self.acked_seq < last and self.link.connected_out and time.monotonic() < deadline:
                self._cond.wait(min(deadline - time.monotonic(), POLL))
            if self.acked_seq >= last:
                return True
        self._mark_lagging(last, "no acknowledgement in time")
        return False

    def _mark_lagging(self, seq, why):
        if not self.lagging:
            self.log.warning("standby not in step at seq %d (%s); it will be caught up", seq, why)
        self.lagging = True

    # ------------------------------------------------------------------ the standby's reports
    def on_message(self, msg: dict):
        kind = msg.get("t")
        if kind not in ("ack", "hello", "hb", "resync") or "seq" not in msg:
            return
        seq, history = msg["seq"], msg.get("history")
        if not isinstance(seq, int):
            self.log.warning("standby sent %s with seq %r", kind, seq)
            return
        with self._cond:
            verified = self._verified(seq, history)
            if kind in ("hello", "resync"):  # a fresh report: forget what we thought was on its way
                self._sent_epoch = -1
                self.acked_seq = seq if verified else 0
            if verified:
                self.acked_seq = max(self.acked_seq, seq)
                self._known = True
            elif self._known or kind == "hello":
                self.log.warning("standby position %r is not on our history: it gets a snapshot", history)
            self._known = self._known and verified
            if verified and self.acked_seq >= self.store.last_seq() and self.lagging:
                self.log.info("standby caught up at seq %d", self.acked_seq)
                self.lagging = False
            self._cond.notify_all()
            if kind != "ack" or not verified:
                self._advance()

    def _verified(self, seq: int, history) -> bool:
        """Whether the standby's position (seq, ts) lies on our history."""
        if seq == 0:
            return True
        if seq > self.store.last_seq() or not isinstance(history, (list, tuple)) or len(history) != 2:
            return False
        change = self.store.change_at(seq)
        if change is not None:
            return change.ts == history[1]
        if seq == self.store.get_meta("compacted_seq"):  # the last change compacted away; its time is kept
            ts = self.store.get_meta("compacted_ts")
            return ts is not None and ts == history[1]
        return False  # compacted away: cannot tell, so a snapshot

    # ------------------------------------------------------------------ catching up
    def _base(self) -> int | None:
        """Where the standby will be once what we sent arrives; None if unknown (it needs a snapshot)."""
        recent = time.monotonic() - self._sent_at < self.resend_after
        if self._sent_epoch == self.link.out_epoch and recent and self._sent_upto > self.acked_seq:
            return self._sent_upto
        return self.acked_seq if self._known else None

    def _advance(self):
        """Send the standby whatever it lacks: nothing, the missing changes, or a snapshot."""
        if not self.link.connected_out:
            return
        base = self._base()
        if base is None:
            self._send_snapshot()
        elif base < self.store.last_seq():
            self._send_from(base)

    def _send_from(self, seq: int):
        meta = self.store.replicated_meta()
        while True:
            batch = self.store.changes_since(seq, BATCH)
            if not batch:
                return
            if batch[0].seq != seq + 1:  # compacted away
                self._send_snapshot()
                return
            if not self._send_changes(batch, meta):
                return
            self.log.info("standby catch-up: sent changes %d-%d", batch[0].seq, batch[-1].seq)
            seq = batch[-1].seq

    def _send_changes(self, changes, meta) -> bool:
        epoch = self.link.out_epoch
        if not self.link.send({"t": "changes", "changes": [c.to_wire() for c in changes], "meta": meta}):
            return False
        self._sent(changes[-1].seq, epoch)
        return True

    def _send_snapshot(self):
        epoch = self.link.out_epoch
        snap = self.store.snapshot()
        if self.link.send({"t": "snapshot", "snapshot": snap}):
            self._sent(snap["last_seq"], epoch)
            self.log.info("standby catch-up: sent a snapshot at seq %d", snap["last_seq"])

    def _sent(self, upto, epoch):
        self._sent_upto, self._sent_epoch, self._sent_at = upto, epoch, time.monotonic()


# ---------------------------------------------------------------------------------------------- standby

class Applier:
    """Standby side. on_message handles "changes" (store.apply_replicated, then State gets a copy of its
    policy with the new changes put/removed, then {"t": "ack", "seq": last, "history": [seq, ts]}) and
    "snapshot" (store.restore, State gets the whole restored policy, then the ack). A gap, or a message it
    cannot apply, makes it ask for catch-up: {"t": "resync", "seq": last_seq, "history": store.history()}.
    Other message types are ignored. Bodies pass through JSON on the way in, so State holds exactly what
    a restart would load from the store."""

    def __init__(self, store, state, link: PairLink, log=None):
        self.store = store
        self.state = state
        self.link = link
        self.log = log or logging.getLogger("canopy.ha")
        self._last_resync = (None, 0.0)

    def hello(self) -> dict:
        """This store's position, for heartbeats: {"seq": last_seq, "history": [seq, ts]}."""
        seq, ts = self.store.history()
        return {"seq": seq, "history": [seq, ts]}

    def on_message(self, msg: dict):
        kind = msg.get("t")
        if kind == "changes":
            self._apply_changes(msg)
        elif kind == "snapshot":
            self._apply_snapshot(msg)

    def _apply_changes(self, msg):
        try:
            changes = [_json_clean(Change.from_wire(w)) for w in msg["changes"]]
            meta = msg.get("meta") or {}
            before = self.store.last_seq()
            last = self.store.apply_replicated(changes, meta)
        except (StoreError, KeyError, TypeError, ValueError, AttributeError) as exc:
            self.log.warning("cannot apply replicated changes: %s; asking the active to resync", exc)
            self._resync()
            return
        new = [c for c in changes if before < c.seq <= last]
        if new:
            policy = self.state.policy.copy()
            for change in new:
                if change.op == "put":
                    policy.put(change.kind, change.body)
                else:
                    policy.remove(change.kind, change.id)
            self.state.policy_committed(policy, new)
        self._ack()

    def _apply_snapshot(self, msg):
        try:
            self.store.restore(msg["snapshot"])
        except (StoreError, KeyError, TypeError, AttributeError) as exc:
            self.log.warning("cannot restore the active's snapshot: %s; asking the active to resync", exc)
            self._resync()
            return
        self.state.last_seq = self.store.last_seq()  # may go down: a diverged history was replaced
        self.state.policy_committed(Policy(self.store.load_objects()), [])
        self.log.info("restored a snapshot of the active at seq %d", self.state.last_seq)
        self._ack()

    def _ack(self):
        self.link.send({"t": "ack", **self.hello()})

    def _resync(self):
        position = self.hello()
        seq, at = self._last_resync
        if seq == position["seq"] and time.monotonic() - at < RESYNC_HOLDOFF:
            return  # asked already; the heartbeats carry the position anyway
        self._last_resync = (position["seq"], time.monotonic())
        self.link.send({"t": "resync", **position})


def _json_clean(change: Change) -> Change:
    """The change with its body as JSON stores it (lists for tuples, string keys)."""
    if change.body is None:
        return change
    body = json.loads(json.dumps(change.body, sort_keys=True))
    return Change(change.kind, change.id, change.op, body, change.seq, change.txn, change.ts)
