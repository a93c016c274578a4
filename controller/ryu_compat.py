"""The one door to Ryu.

Ryu 4.34 is unmaintained and needs two workarounds on Python 3.11 (both documented in docs/ryu.md):

1. Installing it needs ``setuptools<58`` and ``PBR_VERSION=4.34`` (done by .ci/setup).
2. ``ryu.app.wsgi`` imports ``eventlet.wsgi.ALREADY_HANDLED``, removed from eventlet in 0.30.3; we put it
   back before Ryu is imported.

Every other Canopy module imports Ryu names from here, so a move to os-ken touches this file only.

``run_manager`` is ryu-manager's main loop, with three changes (docs/limits.md):
Ryu's OpenFlow listener is replaced by Canopy's guarded accept loop (controller.guard: EMFILE survived,
connections per source address capped, a peer that has not finished the HELLO/features handshake within
``OpenFlowGuard.handshake_timeout`` seconds dropped), and every service thread is essential: if one ends,
the process exits with controller.guard.EXIT_FATAL instead of 0. And a switch's OFPT_ERROR is logged by
controller/ofcheck.py ``error_received``, not by Ryu's handler (which raised on some and flooded the log with others).

Flow-stats replies are parsed lazily (controller/flowstats.py ``LazyFlowStats``): an entry's fixed fields at once,
its match and instructions only when asked for; group-description replies too (controller/groupdesc.py
``LazyGroupDesc``): a group's fixed fields at once, its buckets a bucket at a time when asked for.

A switch's connection gives the event loop a turn every ``READ_PAUSE_BYTES`` read, or earlier once a piece has run
``pacer.BUDGET`` of wall clock (``PacedSocket``, its clock read every ``READ_CHECK_BYTES``): Ryu's receive loop
parses whatever the socket holds and yields only every 2,048 messages, so a read-back already in the socket's
buffer (2.5 MB of flow stats from a switch of 16,000 flows) was parsed in one stretch of 30-100 ms of CPU
(vrs_scale's restart and takeover). The pieces are big (under 10 ms of parsing each on a quiet machine, a
read-back in ~5): every pause waits for a whole turn of the event loop, and OVS drops a connection the controller
neither reads nor writes for ~10 s (its inactivity probe); reads paced every 128 KB were once followed by such drops
on a machine at load 13-27, not seen again at 128 KB at load 11-14 (docs/benchmarks.md, "Branch vrslag" and
"Branch vrslag2"). The clock is read every ``READ_CHECK_BYTES`` (16 KB: at about every message of a read-back), when
a message's body is read, before Ryu parses it: a piece is the budget and at most a check's bytes and a message past
it (tests/unit/test_openflow_read_pacing.py); how many pieces a read-back takes follows its parsing's wall clock, ~20
for 2.5 MB at a quarter of a CPU (branch perf47). One message is never split, but no message is parsed whole any more:
a group description reply of up to 64 KB, which Ryu parsed whole (10-20 ms of CPU in vrs_scale's restart), is parsed
to its groups' fixed fields, and the reconciler parses and decodes the buckets one at a time, pausing between.

Multipart replies of several messages (the read-backs' flow stats) are parsed by at most ``STREAMS_AT_ONCE``
connections at a time (``StreamGate``): eight switches read back at once (openflow/atonce.py) each parsed a 512 KB
piece in the same round of the hub, 30-90 ms of CPU that every other green thread waited for (vrs_scale's takeover
and restart, branch takeoverlag). Every other message (echo, role, barrier replies, packet-ins, errors, a reply of
one message such as a handshake's port descriptions) is read without the gate; one that arrives behind a stream on
the same connection waits for that connection's turn (``StreamGate``).
"""

import contextlib
import logging
import socket
import ssl
import struct
from collections import deque
from dataclasses import dataclass

from controller import ofcheck
from controller.flowstats import LazyFlowStats, lazy_flow_stats
from controller.groupdesc import LazyGroupDesc, lazy_group_desc
from controller.pacer import BUDGET, BoundedPacer, Pacer
from controller.tls import TlsFiles, server_context

import eventlet.patcher
import eventlet.wsgi  # (its deprecation warning is filtered by the package: controller/__init__.py)

if not hasattr(eventlet.wsgi, "ALREADY_HANDLED"):
    eventlet.wsgi.ALREADY_HANDLED = object()

from ryu.base import app_manager  # noqa: E402
from ryu.controller import ofp_event  # noqa: E402
from ryu.controller.handler import (  # noqa: E402
    CONFIG_DISPATCHER,
    DEAD_DISPATCHER,
    HANDSHAKE_DISPATCHER,
    MAIN_DISPATCHER,
    set_ev_cls,
    set_ev_handler,
)
from ryu.lib import hub, type_desc  # noqa: E402
from ryu.lib.packet import dhcp as pkt_dhcp  # noqa: E402
from ryu.lib.packet import ethernet as pkt_ethernet  # noqa: E402
from ryu.lib.packet import ipv4 as pkt_ipv4  # noqa: E402
from ryu.lib.packet import packet as pkt_packet  # noqa: E402
from ryu.lib.packet import udp as pkt_udp  # noqa: E402
from ryu.ofproto import ofproto_parser, ofproto_protocol, ofproto_v1_3, ofproto_v1_4  # noqa: E402
from ryu.ofproto import ofproto_v1_3_parser, ofproto_v1_4_parser  # noqa: E402

RyuApp = app_manager.RyuApp
KILLED_WAIT, KILLED_WAITS = 0.01, 500  # a killed ``blocking`` caller looks at its function every 10 ms, 5 s at most
_select = eventlet.patcher.original("select")  # a poll that never gives the hub a turn (PacedSocket)
READ_PAUSE_BYTES = 512 * 1024  # bytes read from one switch between two turns of the event loop (~3,400 flow stats)
READ_CHECK_BYTES = 16 * 1024  # bytes read between two clock reads of a connection's pacer: its smallest piece
STREAMS_AT_ONCE = 2  # connections parsing multipart replies at the same time (StreamGate)
AHEAD = 1e9  # seconds a ``spawn_first`` green thread's turn is dated back: before any turn already due


def spawn_first(function, *args):
    """``hub.spawn(function, *args)``, but its first turn comes before those of the green threads already waiting
    for theirs. A spawned green thread waits for the hub's next round of turns, and in that round behind every
    green thread that paused before it (each pacing a long piece of work: ``hub.sleep(0)``, controller/pacer.py):
    a REST connection accepted during a burst waited a whole round, 30-110 ms, before its request was read
    (docs/benchmarks.md, bursts, branch statuslat). The hub runs the turns of a round in the order they fell due;
    this one is dated ``AHEAD`` seconds back. Only the first turn: a pause after it waits like any other.
    ``function`` must handle its own exceptions (hub.spawn's logging is not here)."""
    import eventlet.greenthread
    import eventlet.hubs

    loop = eventlet.hubs.get_hub()
    thread = eventlet.greenthread.GreenThread(loop.greenlet)
    loop.schedule_call_global(-AHEAD, thread.switch, function, args, {})
    return thread


def blocking(function, *args):
    """Run ``function(*args)`` in eventlet's pool of OS threads and wait for it without holding the hub
    (for calls that block in C with the GIL released, such as SQLite's commit and its fsync). The function
    must not touch green locks or sockets.

    Only once threads are monkey-patched (run_manager does it before the apps exist): until then a
    ``threading`` lock is the OS thread's, which every green thread already holds, so a caller's lock around
    this call would let two green threads into it at once (two SQLite transactions on one connection). Then
    ``function`` runs here, holding the hub.

    A caller killed while it waits (the programming loop at a stop: controller/app.py) waits on, in turns of the hub
    (``KILLED_WAITS`` at most), for ``function`` to end: its locks (the store's) stay held while a transaction runs."""
    import eventlet.patcher
    import eventlet.tpool

    if not eventlet.patcher.is_monkey_patched("thread"):
        return function(*args)
    ended = []  # appended to in the OS thread (atomic under the GIL)

    def run():
        try:
            return function(*args)
        finally:
            ended.append(True)

    try:
        return eventlet.tpool.execute(run)
    except BaseException:  # function's own error (it has ended), or the caller killed while function runs
        for _ in range(KILLED_WAITS):
            if ended:
                break
            hub.sleep(KILLED_WAIT)
        raise


_FLOW_STATS_13 = ("length", "table_id", "duration_sec", "duration_nsec", "priority", "idle_timeout",
                  "hard_timeout", "flags", "cookie", "packet_count", "byte_count")
lazy_flow_stats(ofproto_v1_3, ofproto_v1_3_parser, _FLOW_STATS_13)
lazy_flow_stats(ofproto_v1_4, ofproto_v1_4_parser, _FLOW_STATS_13[:8] + ("importance",) + _FLOW_STATS_13[8:])
lazy_group_desc(ofproto_v1_3, ofproto_v1_3_parser)
lazy_group_desc(ofproto_v1_4, ofproto_v1_4_parser)
ofcheck.install()  # every message a switch sends is checked before Ryu parses it (controller/ofcheck.py)

__all__ = [
    "CONFIG_DISPATCHER",
    "DEAD_DISPATCHER",
    "MAIN_DISPATCHER",
    "RyuApp",
    "blocking",
    "hub",
    "spawn_first",
    "pkt_dhcp",
    "pkt_ethernet",
    "pkt_ipv4",
    "pkt_packet",
    "pkt_udp",
    "ofp_event",
    "ofproto_parser",
    "ofproto_protocol",
    "ofproto_v1_3",
    "ofproto_v1_4",
    "set_ev_cls",
    "type_desc",
    "run_manager",
    "OpenFlowGuard",
    "probe_datapath",
    "probe_datapaths",
    "drop_datapath",
    "LazyFlowStats",
    "LazyGroupDesc",
    "PacedSocket",
    "FifoSlots",
    "StreamGate",
    "STREAMS",
    "open_datapath",
]


class FifoSlots:
    """At most ``limit`` holders at a time; the others wait in the order they came (FIFO), and a slot given back goes
    straight to the first of them (handed over: no one who comes later takes it first, as one could from eventlet's
    Semaphore, whose woken waiter must still win the slot). A waiter killed while it waits holds nothing: a slot
    handed to it meanwhile goes on to the next. Used by ``StreamGate`` and ovsdb/firstreads.py."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError("limit must be at least 1, not %r" % (limit,))
        self.limit = limit
        self.held = 0  # slots held now (a slot handed over stays held)
        self.most = 0  # most slots held at once so far
        self.waited = 0  # acquisitions that had to wait, since the start
        self._queue = deque()  # hub.Event of each waiter, first come first: set when a slot is handed to it

    @property
    def waiting(self) -> int:
        """How many wait for a slot now."""
        return len(self._queue)

    def acquire(self, every: float | None = None, meanwhile=None) -> None:
        """Take a slot, waiting behind those who came first if none is free (or others wait); while waiting, call
        ``meanwhile()`` every ``every`` seconds (it may raise: then no slot is held)."""
        if self.held < self.limit and not self._queue:
            self.held += 1
            self.most = max(self.most, self.held)
            return
        self.waited += 1
        turn = hub.Event()
        self._queue.append(turn)
        try:
            while not turn.wait(timeout=every):
                meanwhile()
        except BaseException:  # killed or failed while waiting: a slot handed over meanwhile goes to the next one
            if turn in self._queue:
                self._queue.remove(turn)
            else:
                self.release()
            raise

    def release(self) -> None:
        """Give a slot back: to the first who waits, if any."""
        if self._queue:
            self._queue.popleft().set()  # handed over: held stays
        else:
            self.held -= 1


class StreamGate(FifoSlots):
    """At most ``slots`` holders at a time; the others wait in the order they came (FIFO), and a released slot goes to
    the first of them (no one who comes later takes it first). Held by a connection while it parses a multipart reply of
    several messages (``PacedSocket``), over its pauses too (green threads take turns: a slot given back at each pause
    would let every connection parse a piece in the same round), and handed on at a pause when another waits: a round of
    the hub parses at most ``slots`` pieces of ``READ_PAUSE_BYTES``, whatever the number of switches read back.

    How long one waits: each of the ``n`` connections ahead of it parses one piece (~3-6 ms of CPU here) and hands its
    slot on, ``slots`` of them a round: ``ceil(n / slots)`` rounds. ``n`` is at most the connections with a multipart
    reply of several messages in flight (openflow/atonce.py READ_BACKS_AT_ONCE read-backs, and a handshake's port
    descriptions of more than 64 KB). A message behind a stream on the same connection (OVS's echo request) is read when
    the stream in front of it is, each of its pieces after such a wait: in vrs_scale, a 2.5 MB read-back is 5 pieces
    (~20 at a quarter of a CPU, where the wall clock ends them), each behind at most 7 others at 2 a round, ~20 rounds
    (~80 at a quarter of a CPU; tests/unit/test_stream_gate.py counts them), below OVS's 5 s inactivity probe. A holder
    whose socket holds nothing to read gives its slot back before it waits (the read-back is over, or its switch is
    slow or stalls mid-message, even on purpose): only bytes already received are parsed holding a slot (over TLS:
    only whole records, as a part cannot be decrypted before its rest comes)."""


STREAMS = StreamGate(STREAMS_AT_ONCE)
_HEADER = struct.Struct("!BBHI")  # OpenFlow's header: version, type, length, xid
_MULTIPART_REPLY = ofproto_v1_3.OFPT_MULTIPART_REPLY  # the same type in OpenFlow 1.4
_MULTIPART = struct.Struct("!HH")  # a multipart reply's body starts with its type and flags
_REPLY_MORE = ofproto_v1_3.OFPMPF_REPLY_MORE  # the same flag in OpenFlow 1.4: more messages of this reply follow


class _Framing:
    """Where a connection's stream is: in which message, how many of its bytes are still to come, and whether that
    message belongs to a multipart reply of several messages (``bulk``: flow stats of a read-back; a reply that
    fits in one message, at most 64 KB, such as a handshake's port descriptions, needs no slot). Fed every byte the
    socket returns, in order; ``bulk`` is known once the message's multipart flags are read, before Ryu parses it
    (Ryu reads a header, then the rest of that message)."""

    __slots__ = ("head", "left", "bulk", "_flags", "_more")

    def __init__(self):
        self.head = bytearray()  # the part of the current message's header read so far
        self.left = 0  # bytes of the current message's body still to come
        self.bulk = False  # the current (or last) message is part of a multipart reply of several messages
        self._flags = None  # a multipart reply's type and flags read so far (None: read, or not such a reply)
        self._more = False  # the last multipart reply's message said more were to follow

    def feed(self, data: bytes) -> None:
        view, at = memoryview(data), 0
        while at < len(view):
            if not self.left:
                at += self._header(view[at:])
                continue
            step = min(self.left, len(view) - at)
            if self._flags is not None:
                self._multipart(view[at:at + step])
            self.left -= step
            at += step

    def _header(self, view) -> int:
        step = min(_HEADER.size - len(self.head), len(view))
        self.head += view[:step]
        if len(self.head) == _HEADER.size:
            _, kind, length, _ = _HEADER.unpack(self.head)
            self.head.clear()
            self.left = max(length, _HEADER.size) - _HEADER.size  # as Ryu reads a length below 8
            self.bulk = False
            self._flags = bytearray() if kind == _MULTIPART_REPLY and self.left >= _MULTIPART.size else None
        return step

    def _multipart(self, view) -> None:
        self._flags += view[:_MULTIPART.size - len(self._flags)]
        if len(self._flags) == _MULTIPART.size:
            more = bool(_MULTIPART.unpack(self._flags)[1] & _REPLY_MORE)
            self.bulk = more or self._more  # the last message of a long reply too
            self._more, self._flags = more, None


class PacedSocket:
    """A switch's socket whose reads tick ``pacer`` by the bytes they return (see the module docstring). Ryu reads
    at most the rest of one message at a time and parses and dispatches it before it reads again, so between two
    pauses it parsed at most ``READ_PAUSE_BYTES`` and one message; with a ``budget``, also at most what it parsed
    until the first check (every ``READ_CHECK_BYTES``) past ``budget`` seconds of wall clock (``BoundedPacer``).
    A multipart reply of several messages
    is parsed holding a slot of ``gate`` (``StreamGate``): taken once a message's flags say so (``_Framing``),
    before Ryu parses it; handed on at a pause if another connection waits (and taken again, behind them); given
    back before a read that would wait (the socket holds nothing, or only part of a TLS record), and when the
    connection is closed or fails. Other messages need no slot. Everything else is the socket's."""

    def __init__(self, sock, pause=None, gate: StreamGate | None = None, budget: float | None = None):
        """``pause``: called every ``READ_PAUSE_BYTES`` read (None: only counted), and at the first check past
        ``budget`` seconds since the last (None: by the count alone); ``gate``: None, parse freely."""
        self._sock, self.gate, self._pause = sock, gate, pause
        pause = pause and self._take_turns
        self.pacer = Pacer(pause, READ_PAUSE_BYTES) if budget is None else \
            BoundedPacer(pause, READ_PAUSE_BYTES, budget, checks=READ_PAUSE_BYTES // READ_CHECK_BYTES)
        self._framing = _Framing()
        self._holding = False

    def recv(self, size: int, *flags) -> bytes:
        try:
            data = self._read_at_once(size, *flags) if self._holding else None
            if data is None:
                self._give_back()  # the stream ended, or waits for the switch: the others do not wait meanwhile
                data = self._sock.recv(size, *flags)
        except BaseException:
            self._give_back()
            raise
        if not data:
            self._give_back()
            return data
        self._framing.feed(data)
        self.pacer.tick(len(data))
        if self._framing.bulk and self.gate is not None and not self._holding:
            self.gate.acquire()  # before Ryu parses what was read
            self._holding = True
        return data

    def close(self) -> None:
        self._give_back()
        self._sock.close()

    def _give_back(self) -> None:
        if self._holding:
            self._holding = False
            self.gate.release()

    def _take_turns(self) -> None:
        """The pause: its slot kept over it when no connection waits for one (so a round parses at most the
        slots' pieces), else handed to the first that waits (taken again, behind the others, once read)."""
        if self._holding and self.gate.waiting:
            self._give_back()
        self._pause()

    def _read_at_once(self, size: int, *flags) -> bytes | None:
        """What a read returns without waiting, None if it would wait: the kernel's buffer holds nothing, or (TLS)
        only part of a record, which cannot be decrypted before the rest comes."""
        pending = getattr(self._sock, "pending", None)  # TLS: bytes decrypted and not read yet
        if pending is not None and pending():
            return self._sock.recv(size, *flags)
        if not self._kernel_holds_bytes():
            return None
        if pending is None:
            return self._sock.recv(size, *flags)
        timeout = self._sock.gettimeout()
        self._sock.setblocking(False)
        try:
            return self._sock.recv(size, *flags)
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None  # the bytes read stay in TLS's buffer, for the next read
        finally:
            self._sock.setblocking(True)
            self._sock.settimeout(timeout)

    def _kernel_holds_bytes(self) -> bool:
        try:
            poll = _select.poll()  # not select(): it refuses descriptors of 1024 and more (a thousand switches)
            poll.register(self._sock, _select.POLLIN)
        except (OSError, TypeError, ValueError, AttributeError):  # closed, or a stand-in without a descriptor
            return True
        return bool(poll.poll(0))

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


def open_datapath(sock, addr, pause=None, gate: StreamGate | None = None, budget: float | None = BUDGET):
    """Ryu's Datapath on ``sock``, its reads paced (``PacedSocket``; ``pause``: by default a turn of the hub;
    ``gate``: by default ``STREAMS``, shared by every switch; ``budget``: by default the controller's pacers' wall
    clock, None: by the count alone)."""
    from ryu.controller import controller as ryu_controller

    return ryu_controller.Datapath(PacedSocket(sock, pause or _give_way, gate or STREAMS, budget), addr)


def _give_way() -> None:
    hub.sleep(0)


@dataclass(frozen=True)
class OpenFlowGuard:
    """Limits of the OpenFlow listener: seconds to finish the handshake, connections per source address, seconds
    after which a connection whose host stopped acknowledging TCP is closed (``keep_alive``; 0: never)."""

    handshake_timeout: float = 10.0
    per_source: int = 32
    dead_after: float = 30.0


def keep_alive(sock, dead_after: float) -> None:
    """Close ``sock`` (the kernel does, and the reader sees an error) once its peer's host has acknowledged nothing
    for about ``dead_after`` seconds: TCP keepalive probes while the connection is idle, and a bound on unacknowledged
    data while Canopy sends. A switch whose host died silently, or was cut off, otherwise stays connected forever:
    Canopy does not use Ryu's echo-request timeout, which a busy switch (or a busy controller) could miss. The host's
    kernel answers these, not ovs-vswitchd, so load never trips them."""
    if dead_after <= 0:
        return
    idle = max(1, int(dead_after / 2))
    interval = max(1, int(dead_after / 6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, max(1, int((dead_after - idle) / interval)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(dead_after * 1000))


def run_manager(argv, openflow_guard: OpenFlowGuard | None = None):
    """Run ryu-manager's main loop in this process with the given command-line arguments; returns the exit
    status (controller.guard.EXIT_FATAL if an essential thread ended, else 0 after an interrupt)."""
    import greenlet
    from ryu import cfg
    from ryu import log as ryu_log
    from ryu.app import wsgi
    from ryu.base.app_manager import AppManager
    from ryu.cmd import manager  # noqa: F401  (registers ryu-manager's options)

    from controller import guard, runtime

    cfg.CONF(args=list(argv), project="ryu", version="ryu-manager", default_config_files=[])
    ryu_log.init_log()
    hub.patch(thread=True)
    app_mgr = AppManager.get_instance()
    app_mgr.load_apps(cfg.CONF.app_lists + cfg.CONF.app)
    base = app_mgr.applications_cls.get("ryu.controller.ofp_handler")
    if base is not None:
        app_mgr.applications_cls["ryu.controller.ofp_handler"] = _guarded_handler(base, openflow_guard
                                                                                  or OpenFlowGuard())
    services = app_mgr.instantiate_apps(**app_mgr.create_contexts())
    webapp = wsgi.start_service(app_mgr)
    if webapp:
        services.append(hub.spawn(webapp))
        guard.essential(services[-1], "Ryu's web server")
    for app in list(app_mgr.applications.values()):
        for thread in [getattr(app, "main_thread", None)] + list(app.threads):
            if thread is not None:
                guard.essential(thread, f"the {app.name} application's thread")
    runtime.MAIN_GREENLET = greenlet.getcurrent()
    try:
        hub.joinall(services)
    except KeyboardInterrupt:
        logging.getLogger("canopy").info("interrupted; stopping")
    except SystemExit:
        pass
    finally:
        runtime.STOPPING = True
        app_mgr.close()
    return guard.EXIT_FATAL if runtime.FATAL else 0


def _guarded_handler(base, limits: OpenFlowGuard):
    """Ryu's OFPHandler with Canopy's OpenFlow listener (see the module docstring)."""
    from ryu import cfg
    from ryu.controller import controller as ryu_controller

    from controller import guard

    log = logging.getLogger("canopy.openflow")

    def expire(dp):
        if dp.state != MAIN_DISPATCHER and dp.is_active:
            guard.warn_limited(log, ("handshake", dp.address[0]), "openflow %s:%s: no HELLO and features reply "
                               "within %g s; dropping the connection", *dp.address[:2], limits.handshake_timeout)
            with contextlib.suppress(OSError):
                dp.socket.shutdown(socket.SHUT_RDWR)

    def serve_datapath(sock, addr, tls):
        try:
            keep_alive(sock, limits.dead_after)
            if tls is not None:  # the TLS handshake counts against the OpenFlow handshake's time
                with hub.Timeout(limits.handshake_timeout):
                    sock = tls.wrap_socket(sock, server_side=True)
            dp = open_datapath(sock, addr)
        except ssl.SSLError as exc:  # no certificate, one of another CA, or not TLS at all
            guard.warn_limited(log, ("tls", addr[0]), "openflow %s:%s: TLS handshake failed: %s; closing",
                               *addr[:2], exc.reason or exc)
            return
        except (OSError, hub.Timeout) as exc:  # gone, or too slow: nothing to serve
            log.debug("openflow %s:%s: not served: %s", *addr[:2], exc)
            return
        watchdog = hub.spawn_after(limits.handshake_timeout, expire, dp)
        with contextlib.closing(dp):
            try:
                dp.serve()
            finally:
                hub.kill(watchdog)

    class GuardedOpenFlowController(ryu_controller.OpenFlowController):
        def server_loop(self, tcp_port, ssl_port):
            """Listen where Ryu would: TLS on ``ssl_port`` when a key and certificate are configured
            (clients must then hold a certificate of ``ca_certs`` if that is set), else TCP on ``tcp_port``."""
            conf, tls = cfg.CONF, None
            if conf.ctl_privkey is not None and conf.ctl_cert is not None:  # the files loaded as checked (tls.py)
                tls = server_context(TlsFiles(conf.ctl_privkey, conf.ctl_cert, conf.ca_certs),
                                     mutual=conf.ca_certs is not None)
            host, port = conf.ofp_listen_host, ssl_port if tls is not None else tcp_port
            sock = guard.listen(host, port)
            log.info("OpenFlow listening on %s:%d%s", host, port, " (TLS)" if tls is not None else "")
            guard.accept_forever(sock, lambda s, a: serve_datapath(s, a, tls), f"openflow {host}:{port}",
                                 guard.ConnectionLimits(limits.per_source))

    class GuardedOFPHandler(base):
        def start(self):
            super(base, self).start()  # RyuApp.start; OFPHandler.start would build Ryu's own listener
            self.controller = GuardedOpenFlowController()
            return hub.spawn(self.controller)

        @set_ev_handler(ofp_event.EventOFPErrorMsg, [HANDSHAKE_DISPATCHER, CONFIG_DISPATCHER, MAIN_DISPATCHER])
        def error_msg_handler(self, ev):
            """Ryu's own raised (ending the connection) or flooded the log on some errors: ofcheck.error_received."""
            ofcheck.error_received(ev.msg)

    return GuardedOFPHandler


def probe_datapath(dp, timeout: float) -> bool:
    """True if datapath ``dp`` answers an OpenFlow echo request within ``timeout`` seconds."""
    return bool(probe_datapaths([dp], timeout))


def probe_datapaths(dps, timeout: float) -> list:
    """The datapaths of ``dps`` that answer an OpenFlow echo request within ``timeout`` seconds: every request is
    sent first and the replies awaited together, so asking many switches (a rack that lost power) takes one
    ``timeout``, not one each."""
    out = {}
    for dp in dps:
        if not dp.is_active or dp.state == DEAD_DISPATCHER:
            continue
        request = dp.ofproto_parser.OFPEchoRequest(dp, data=b"canopy-probe")
        xid = dp.set_xid(request)
        dp.unreplied_echo_requests.append(xid)  # Ryu's echo reply handler removes it when the reply comes
        if dp.send_msg(request):
            out[xid] = dp
    answered, waited = [], 0.0
    while out and waited < timeout:
        hub.sleep(0.05)
        waited += 0.05
        for xid, dp in list(out.items()):
            if xid not in dp.unreplied_echo_requests:
                answered.append(out.pop(xid))
            elif not dp.is_active:
                del out[xid]
    for xid, dp in out.items():
        with contextlib.suppress(ValueError):
            dp.unreplied_echo_requests.remove(xid)
    return answered


def drop_datapath(dp) -> None:
    """Close datapath ``dp``'s connection now (Ryu then reports it DEAD)."""
    with contextlib.suppress(OSError):
        dp.socket.shutdown(socket.SHUT_RDWR)
