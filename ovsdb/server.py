"""Canopy as OVSDB manager: one listener, one green thread and one IDL replica per hypervisor.

Hypervisors run ``ovs-vsctl set-manager tcp:CANOPY:6640`` (``ssl:`` with TLS, docs/security.md); their
ovsdb-server connects here. For each accepted connection a green thread:

1. asks the peer which databases it serves (``list_dbs``, bounded by ``handshake_timeout``);
2. ``hardware_vtep`` (served by hardware VTEPs and the ovs-vtep emulator, which also serve an Open_vSwitch database,
   hence it wins): replicates the tables in ``ovsdb.vtep.COLUMNS`` and reports ``VtepSnapshot``s, keyed by
   Physical_Switch name with the local MACs that changed, to the sink (``ovsdb.vtep_reporter.VtepReporter``,
   ``ovsdb.claims``) until the connection drops; unless ``program_vteps`` is off, ``ovsdb.vtep_sync.VtepReconciler``
   keeps Canopy's rows there as the controller wants them (``set_vtep_desired``, keyed by the Physical_Switch name).
   It is never reported as a VRS;
3. ``Open_vSwitch``: waits for its turn to read the peer's database (ovsdb/firstreads.py), fetches the peer's own
   schema, replicates the tables in ``ovsdb.vrs.COLUMNS`` and reports ``VrsSnapshot``s, keyed by chassis and applied
   from the rows the IDL says changed, to the sink (``ovsdb.vrs.VrsReporter``, ``ovsdb.claims``) until the
   connection drops; after each refresh, unless ``provision_tunnel`` is off, ``ovsdb.tunnel.TunnelReconciler`` keeps
   the VRS's VXLAN tunnel port as desired, and unless ``secure_bridge`` is off, ``ovsdb.bridge.BridgeReconciler``
   keeps its integration bridge fail-secure (the only things Canopy writes to a VRS database; only while
   ``may_write``: on the HA active, once the controller's start-up hold is over);
4. anything else, garbage, or silence: logged with the peer address, and that connection is dropped; so is a peer
   whose first full copy of its database has not arrived within ``sync_timeout`` (not counting the time its session
   waited for its turn to ask for it: ovsdb/firstreads.py), one that sends a message longer than ``max_message``
   (ovsdb/jsonstream.py), and a connection from an address already holding ``per_source`` sessions (docs/limits.md).

Nothing a peer sends can stop the listener or another session, nor can an unexpected error in one session: that session
ends (logged once, naming its switch and the error) with its replica, and the peer's next session reads its database
afresh. Every wait is bounded (``WAKE_MS``). A big update (10,000 ports added in one transaction: 20,000 rows) never
holds the event loop in one stretch: the replica gives it a turn every ``idl.PAUSE_ROWS`` rows and the reporter every
``PAUSE_PORTS`` ports it reads (``pause``; nothing but the session's own green thread touches its replica and reporter
meanwhile), and sends the peer an echo request about once a second meanwhile (``idl.Replica.keepalive``):
ovsdb-server's own probes wait behind the update, and it drops a manager it has heard nothing from for two probe
intervals. Such an update, when it only adds or only deletes ports, is reported a slice at a time as it is applied
(ovsdb/idl/slices.py); while one is, ``slicing`` names its session (the programming loop waits for its last slice:
controller/app.py).
"""

from __future__ import annotations

import datetime
import logging
import reprlib
import time
from collections.abc import Callable

from controller.discovery import DiscoverySink
from controller.guard import warn_limited
from controller.ryu_compat import hub
from controller.discovery import VtepDesired
from controller.pacer import Pacer, collector_paused
from ovsdb import bridge, claims, idl, tunnel, vrs, vtep, vtep_reporter, vtep_sync
from ovsdb import firstreads
from ovsdb.firstreads import FirstReads

VTEP_DATABASE = vtep.DATABASE
WAKE_MS = 1000  # longest a green thread sleeps without looking at its connection
SYNC_TIMEOUT_S = 120.0  # default: a peer whose first full copy of the database has not arrived by then goes
EXPIRE_S = 1.0  # longest between two looks for VRS whose reconnect grace is over
ACCEPT_RETRY_S = 0.1  # pause after an accept error (e.g. EMFILE) before trying again
PAUSE_PORTS = 100  # bridge ports read between two turns of the event loop (idl.PAUSE_ROWS: rows of an update)
FREEZE_ROWS = 2000  # rows changed by one batch of updates from which what exists is frozen out of the collector


def give_way() -> None:
    """A turn for every other green thread (echo replies, heartbeats, REST) in the middle of a long stretch."""
    hub.sleep(0)

# Session states shown in sessions().
HANDSHAKE, QUEUED, SYNCING, SYNCED, CLOSED = "handshake", "queued", "syncing", "synced", "closed"


def classify(databases: list[str]) -> str | None:
    """Which kind of peer serves these databases: hardware_vtep, Open_vSwitch (a VRS), or None."""
    for name in (VTEP_DATABASE, vrs.DATABASE):
        if name in databases:
            return name
    return None


class _PeerSession:
    """One accepted OVSDB connection and the green thread that serves it."""

    def __init__(self, server: OvsdbManagerServer, name: str, link: idl.PeerLink):
        self._server = server
        self._log = server.log
        self.name = name
        self.peer = link.peer
        self.database: str | None = None
        self.state = HANDSHAKE
        self.connected_since = time.time()  # shown (describe); the sync deadline counts from _connected_at
        self._connected_at = time.monotonic()  # a step of the wall clock (NTP at boot) must not end or extend it
        self._conn = link  # PeerLink, then Replica
        self._reporter = vrs.VrsReporter(server.sink, name, link.peer, server.bridge, server.log, server.claims,
                                         Pacer(self._give_way, PAUSE_PORTS))
        self._tunnel: tunnel.TunnelReconciler | None = None
        self._bridge: bridge.BridgeReconciler | None = None
        self._vtep_reporter = vtep_reporter.VtepReporter(server.sink, name, link.peer, server.log,
                                                         server.vtep_claims)
        self._vtep: vtep_sync.VtepReconciler | None = None
        self._doorbell: idl.Doorbell | None = None
        self._thread = None
        self._finished = False
        self._reading: float | None = None  # when it took one of the server's first-read slots (ovsdb/firstreads.py)
        self._queued: float | None = None  # when it began waiting for a first-read slot
        self.queued_s = 0.0  # seconds it waited for that slot: not counted against sync_timeout

    def start(self) -> None:
        """Serve the connection in its own green thread."""
        self._thread = hub.spawn(self._serve)

    def describe(self) -> dict:
        """JSON-ready summary for REST inspection."""
        since = datetime.datetime.fromtimestamp(self.connected_since, datetime.timezone.utc)
        last = self._reporter.last
        hw = self._vtep_reporter
        return {
            "session": self.name,
            "peer": self.peer,
            "database": self.database,
            "connected_since": since.isoformat(timespec="seconds"),
            "state": self.state,
            "chassis": last.chassis if last is not None else None,
            "key": last.session if last is not None else hw.key,
            "speaking": self._reporter.speaking if last is not None else hw.speaking if hw.key else None,
            "full_reads": self._reporter.full_reads if last is not None else None,
            "ports": len(last.ports) if last is not None else None,
            "refused_interface_claims": self._reporter.refused_claims if last is not None else None,
            "queued_s": round(self._queued_so_far(), 3),
            "tunnel": self._tunnel.describe() if self._tunnel is not None else None,
            "bridge": self._bridge.describe() if self._bridge is not None else None,
            "switch": self.switch,
            "vtep": self._vtep.describe() if self._vtep is not None else None,
        }

    @property
    def key(self) -> str | None:
        """The switch key (``VrsSnapshot.session``) its VRS reports are under; None before its first."""
        return self._reporter.key

    @property
    def switch(self) -> str | None:
        """The hardware VTEP's Physical_Switch name, once reported (None for a VRS)."""
        last = self._vtep_reporter.last
        return last.name if last is not None else None

    @property
    def kind(self) -> str:
        """vtep (a Physical_Switch reported), vrs (a chassis reported) or unidentified, as ``describe`` says."""
        last = self._reporter.last
        return "vtep" if self.switch else "vrs" if last is not None and last.chassis else "unidentified"

    def _give_way(self) -> None:
        """A pause in a long stretch of work on this session: keep the peer from giving up on us, then let the
        other green threads run."""
        if isinstance(self._conn, idl.Replica):
            self._conn.keepalive()
        if self.name in self._server.slicing:
            self._server.slicing_turns += 1  # its slices progress (the programming loop waits for the last)
        self._server.pause()

    def ring(self) -> None:
        """Wake the session loop (its VTEP's desired state changed)."""
        if self._doorbell is not None:
            self._doorbell.ring()

    def close(self) -> None:
        """Stop serving and close the connection; reports vrs_gone / vtep_gone if the VRS / hardware
        VTEP was ever reported."""
        thread = self._thread
        if thread is not None and thread is not hub.getcurrent():
            hub.kill(thread)  # runs the thread's cleanup (finish) before returning
        self._finish()

    def _serve(self) -> None:
        try:
            self._handshake_and_follow()
        except idl.PeerError as exc:
            limit = getattr(self._conn, "limit_error", None)
            self._log.warning("ovsdb %s: dropping connection: %s", self.peer, limit or exc)
        except Exception as exc:  # a bug or a sink failure ends this session only (its replica with it: read afresh)
            self._log.exception("ovsdb %s (%s): unexpected error, dropping connection: %r", self.peer,
                                self.key or self._vtep_reporter.key or "unidentified", exc)
        finally:
            self._finish()

    def _handshake_and_follow(self) -> None:
        timeout_ms = self._server.handshake_timeout_ms
        databases = self._conn.list_dbs(timeout_ms)
        self.database = classify(databases)
        if self.database is None:
            raise idl.PeerError("serves %s, neither %s nor %s" % (reprlib.repr(databases), vrs.DATABASE,
                                                                   VTEP_DATABASE))
        if self.database == VTEP_DATABASE:
            self._follow_vtep(self._conn.get_schema(self.database, timeout_ms))
            return
        self._first_read()
        self._follow_vrs(self._schema_in_turn(timeout_ms))

    def _schema_in_turn(self, timeout_ms: int) -> dict:
        """The peer's schema, asked for once the session has its first-read slot: reading it (15.6 KB of JSON, ~1 ms
        of CPU) is part of reading the database, and 50 VRS reconnecting at once after a restart read theirs in the
        same few rounds of the hub (50-70 ms of the loop's CPU, before they queued). Its wait stays bounded by
        ``handshake_timeout``; a peer that has not answered ``firstreads.HOLD_S`` after the slot was given gives
        the slot back meanwhile, as one slow to send its copy does (``_first_read_done``)."""
        self.state = SYNCING
        give_back = hub.spawn_after(firstreads.HOLD_S, self._first_read_done, self._reading + 1e-6)
        try:
            return self._conn.get_schema(self.database, timeout_ms)
        finally:
            hub.kill(give_back)

    def _first_read(self) -> None:
        """Wait for a slot to read the peer's whole database (ovsdb/firstreads.py), answering its echoes; the wait
        is not counted against ``sync_timeout`` (a session queued behind many big peers has not started its read)."""
        self.state = QUEUED
        self._queued = time.monotonic()
        try:
            self._server.first_reads.admit(self._conn.answer_echoes)
        finally:
            self.queued_s, self._queued = self._queued_so_far(), None
        self._reading = time.monotonic()

    def _queued_so_far(self) -> float:
        """Seconds this session has waited for its first-read slot (so far, while it waits)."""
        return self.queued_s if self._queued is None else time.monotonic() - self._queued

    def _first_read_done(self, unless_before: float | None = None) -> None:
        """Give the first-read slot back (the copy is reported, the session ended), or, with ``unless_before``,
        only if it was taken before then: a peer slow to send its copy holds a slot for ``firstreads.HOLD_S`` at
        most, not until ``sync_timeout``."""
        if self._reading is not None and (unless_before is None or self._reading < unless_before):
            self._reading = None
            self._server.first_reads.release()
            if unless_before is not None:
                self._log.info("ovsdb %s: no full copy %g s after its turn to send it: the turn goes on to the next "
                               "session (it is still read when it comes)", self.peer, firstreads.HOLD_S)

    def _follow_vrs(self, schema: dict) -> None:
        """Replicate the VRS's Open_vSwitch database and report every change until it goes (from the session's
        first-read turn: ``_first_read``)."""

        def report_slice():  # a big update of ports is reported as it lands, a slice at a time (idl.slices)
            self._server.slicing.add(self.name)  # until its last slice is reported (below, or the session ends)
            self._reporter.refresh(replica.rows(vrs.DATABASE), replica.take_changes())

        replica = idl.Replica(self._conn, schema, vrs.COLUMNS, self._server.probe_interval_ms,
                              named=tunnel.NAMED_TABLES, pause=self._give_way, on_slice=report_slice)
        self._conn = replica
        self.state = SYNCING
        self._log.info("ovsdb %s: VRS session %s, replicating %s", self.peer, self.name, vrs.DATABASE)
        if self._server.provision_tunnel:
            self._tunnel = tunnel.TunnelReconciler(replica, self.peer, self._server.tunnel_name, self._log,
                                                   on_bridge=self._reporter.holds_port)
        if self._server.secure_bridge:
            self._bridge = bridge.BridgeReconciler(replica, self.peer, self._server.bridge, self._log)
        seen = None
        while True:
            with collector_paused() as collector:  # no gen-2 collection in the middle of a big update
                before = replica.change_seqno
                replica.run()
                if not replica.connected:  # a transaction in flight is simply dropped with it
                    self._closed(replica)
                    return
                if replica.synced and replica.change_seqno != seen:
                    seen = replica.change_seqno
                    self.state = SYNCED
                    self._reporter.refresh(replica.rows(vrs.DATABASE), replica.take_changes())
                    self._first_read_done()
                self._server.slicing.discard(self.name)
                collector.freeze = replica.change_seqno - before >= FREEZE_ROWS  # the rows stay: never scan them
            if replica.synced:
                if self._server.may_write:
                    for writer in (self._bridge, self._tunnel):
                        if writer is not None:
                            writer.step(self._reporter.last)
            else:
                self._check_sync_deadline()
                self._first_read_done(unless_before=time.monotonic() - firstreads.HOLD_S)
            replica.wait(self._wake_ms())

    def _check_sync_deadline(self) -> None:
        """Raise PeerError if the peer has not sent its first full copy within the server's sync timeout of
        connecting, the time waited for a first-read slot not counted."""
        if time.monotonic() - self._connected_at - self.queued_s > self._server.sync_timeout:
            queued = " (after %.1f s waiting for its turn)" % self.queued_s if self.queued_s >= 0.1 else ""
            raise idl.PeerError("no full copy of %s within %g s%s" % (self.database, self._server.sync_timeout, queued))

    def _closed(self, replica) -> None:
        if replica.limit_error:
            self._log.warning("ovsdb %s: dropping the session: %s", self.peer, replica.limit_error)
        else:
            self._log.info("ovsdb %s: %sconnection closed by peer", self.peer,
                           "hardware_vtep " if self.database == VTEP_DATABASE else "")

    def _wake_ms(self) -> int:
        """How long the session loop may sleep: WAKE_MS, or less when a reconciler's back-off ends or a first-read
        slot is due back."""
        dues = [r.wake_in_ms() for r in (self._bridge, self._tunnel, self._vtep) if r is not None]
        if self._reading is not None:  # a first-read slot held: wake when it is to be given back (HOLD_S, not later)
            dues.append(max(0, int((self._reading + firstreads.HOLD_S - time.monotonic()) * 1000) + 1))
        return min([WAKE_MS] + [due for due in dues if due is not None])

    def _follow_vtep(self, schema: dict) -> None:
        """Replicate a hardware VTEP's database, report it and program it until it goes."""
        replica = idl.Replica(self._conn, schema, vtep.COLUMNS, self._server.probe_interval_ms, track=True,
                              pause=self._give_way)
        self._conn = replica
        self.state = SYNCING
        self._doorbell = idl.Doorbell()
        self._log.info("ovsdb %s: hardware_vtep peer (session %s), replicating %s%s", self.peer, self.name,
                       VTEP_DATABASE, "" if self._server.program_vteps else " (read only)")
        if self._server.program_vteps:
            self._vtep = vtep_sync.VtepReconciler(replica, self.peer, self._log)
        seen = None
        while True:
            replica.run()
            if not replica.connected:
                self._closed(replica)
                return
            if replica.synced:
                self._doorbell.clear()
                if replica.change_seqno != seen:
                    changes = replica.take_changes()
                    if seen is None or vtep.reported(changes):
                        self._vtep_reporter.refresh(replica.rows("Physical_Switch"),
                                                    lambda: replica.rows("Ucast_Macs_Local"),
                                                    changes if seen is not None else None)
                    if self._vtep is not None:
                        self._vtep.note(changes if seen is not None else None)
                    seen = replica.change_seqno
                    self.state = SYNCED
                if self._vtep is not None and self._server.may_write:
                    self._vtep.step(self.switch, self._server.vtep_desired(self.switch))
            else:
                self._check_sync_deadline()
            replica.wait(self._wake_ms(), self._doorbell)

    def _finish(self) -> None:
        """Close, report gone, forget; idempotent."""
        if self._finished:
            return
        self._finished = True
        self.state = CLOSED
        self._first_read_done()
        self._server.slicing.discard(self.name)
        try:
            self._conn.close()
        except Exception:
            self._log.exception("ovsdb %s: error closing connection", self.peer)
        try:
            self._reporter.gone()
        except Exception:
            self._log.exception("ovsdb %s: sink failed on vrs_gone(%s)", self.peer, self.name)
        try:
            self._vtep_reporter.gone()
        except Exception:
            self._log.exception("ovsdb %s: sink failed on vtep_gone(%s)", self.peer, self.name)
        if self._doorbell is not None:
            self._doorbell.close()
        self._server._forget(self)


class OvsdbManagerServer:
    """Listens for hypervisor and hardware VTEP ovsdb-servers and reports each VRS and hardware VTEP
    to a ``DiscoverySink``.

    ``listen``/``port``: address to bind (port 0 picks a free port; see ``port`` after ``start``).
    ``bridge``: the integration bridge whose interfaces become ``VrsSnapshot.ports``.
    ``handshake_timeout``: seconds a new peer has to answer each handshake request.
    ``probe_interval``: seconds of silence before an echo probe; a peer silent for two is dropped.
    ``provision_tunnel``: keep each VRS's VXLAN tunnel port (``tunnel_name``) on ``bridge`` as
    desired (ovsdb/tunnel.py). ``secure_bridge``: keep ``bridge`` fail-secure with OpenFlow 1.3 and 1.4
    (ovsdb/bridge.py). With both False, Canopy writes nothing to any VRS database.
    ``program_vteps``: write each hardware VTEP's desired rows (``set_vtep_desired``,
    ovsdb/vtep_sync.py); when False, hardware VTEPs are only read.
    ``per_source``: connections one source address may hold open; more are closed at once (logged).
    ``max_message``: characters in one message from a peer; a longer one drops its session (logged).
    ``sync_timeout``: seconds a peer has, from connecting, to send its first full copy of the database.
    ``reconnect_grace``: seconds a VRS or hardware VTEP stays known after its OVSDB session ends, so that a
    reconnect of the same chassis (Physical_Switch name) continues the same switch (ovsdb/claims.py).
    ``forwarding(dpids)``: those of the bridges that answer over OpenFlow now; a VRS whose does is not gone when its
    grace ends (ovsdb/claims.py).
    ``tls``: a server-side ``ssl.SSLContext`` (controller.tls): every peer must complete a TLS handshake
    (with a certificate of the context's CA when it requires one) within ``handshake_timeout``; else plain TCP.
    Nothing is written while ``writes_enabled`` is False (an HA standby) or ``held`` is True (the
    controller's start-up hold, ended by ``release()``).
    """

    def __init__(self, listen: str, port: int, sink: DiscoverySink, bridge: str = vrs.DEFAULT_BRIDGE,
                 log: logging.Logger | None = None, *, handshake_timeout: float = 5.0,
                 probe_interval: float = 5.0, provision_tunnel: bool = True,
                 tunnel_name: str = tunnel.DEFAULT_NAME, program_vteps: bool = True,
                 secure_bridge: bool = True, per_source: int = 16,
                 max_message: int = idl.DEFAULT_MAX_MESSAGE, sync_timeout: float = SYNC_TIMEOUT_S, tls=None,
                 reconnect_grace: float = claims.DEFAULT_GRACE_S,
                 forwarding: Callable[[set[int]], set[int]] = lambda dpids: set()):
        if not isinstance(tunnel_name, str) or not tunnel_name.strip():
            raise ValueError("tunnel_name must be a non-empty port name, not %r" % (tunnel_name,))
        self.listen = listen
        self.port = port
        self.sink = sink
        self.bridge = bridge
        self.log = log or logging.getLogger("canopy.ovsdb")
        self.handshake_timeout_ms = int(handshake_timeout * 1000)
        self.probe_interval_ms = int(probe_interval * 1000)
        self.provision_tunnel = provision_tunnel
        self.secure_bridge = secure_bridge
        self.tunnel_name = tunnel_name
        self.program_vteps = program_vteps
        self.per_source = per_source
        self.sync_timeout = sync_timeout
        self.max_message = max_message
        self.tls = tls
        self.claims = claims.VrsClaims(sink, reconnect_grace, self.log, forwarding=forwarding)
        self.vtep_claims = claims.VtepClaims(sink, reconnect_grace, self.log)
        self.writes_enabled = True  # False on an HA standby: replicate and report, write nothing
        self.first_reads = FirstReads()  # a few sessions read their peer's whole database at a time
        self.pause = give_way  # a big update (rows, then bridge ports) gives the event loop a turn this way
        self.held = False  # True until the controller's start-up hold ends (release()): write nothing
        self.slicing: set[str] = set()  # sessions reporting a big update in slices (ovsdb/idl/slices.py) now
        self.slicing_turns = 0  # turns those sessions gave the event loop, since the start (their progress)
        self._vtep_desired: dict[str, VtepDesired] = {}
        self._listener: idl.Listener | None = None
        self._accept_thread = None
        self._expire_thread = None
        self._sessions: dict[str, _PeerSession] = {}
        self._stopping = False

    def start(self) -> None:
        """Bind the listener (raises ``OSError`` if it cannot) and start accepting in a green thread."""
        if self._listener is not None:
            raise RuntimeError("OvsdbManagerServer already started")
        self._listener = idl.Listener(self.listen, self.port, self.tls)
        self.port = self._listener.port
        self._stopping = False
        self._accept_thread = hub.spawn(self._accept_loop)
        self._expire_thread = hub.spawn(self._expire_loop)
        self.log.info("ovsdb: manager listening on %s:%d%s", self.listen, self.port,
                      " (TLS)" if self.tls is not None else "")

    @property
    def accept_thread(self):
        """The green thread accepting connections (None before start and after stop)."""
        return self._accept_thread

    def stop(self) -> None:
        """Stop accepting and close every session (each VRS ever reported gets its vrs_gone)."""
        self._stopping = True
        if self._accept_thread is not None and self._accept_thread is not hub.getcurrent():
            hub.kill(self._accept_thread)
        self._accept_thread = None
        if self._expire_thread is not None and self._expire_thread is not hub.getcurrent():
            hub.kill(self._expire_thread)
        self._expire_thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for session in list(self._sessions.values()):
            session.close()
        self.claims.flush()
        self.vtep_claims.flush()
        self.log.info("ovsdb: manager on %s:%d stopped", self.listen, self.port)

    def first_reads_pending(self) -> int:
        """Sessions whose first copy of their peer's database is not reported yet (in their handshake, queued for a
        first-read slot, or reading): switches about to report (the start-up hold's passes wait for them)."""
        return sum(1 for session in self._sessions.values() if session.state in (HANDSHAKE, QUEUED, SYNCING))

    def slicing_switches(self) -> set[str]:
        """The switch keys (``VrsSnapshot.session``) the sessions in ``slicing`` report for."""
        keys = set()
        for name in self.slicing:
            session = self._sessions.get(name)
            if session is not None and session.key is not None:
                keys.add(session.key)
        return keys

    def sessions(self, tick=None) -> list[dict]:
        """One JSON-ready dict per open session: session, peer, database, connected_since, state,
        chassis, key (the switch key this VRS or hardware VTEP session claims) and speaking (whether it speaks
        for that switch: the newest session of a chassis or Physical_Switch name does, ovsdb/claims.py),
        full_reads (how often every port of its bridge was read rather than the changed rows applied),
        refused_interface_claims (Port rows refused an Interface row another port holds: ovsdb/bridgeports.py), queued_s
        (seconds it waited for its turn to read its peer's whole database: so far while ``queued``), tunnel
        (the tunnel reconciler's name/state/transactions/last_error, or None),
        bridge (the same for the integration bridge's fail-secure settings, or None),
        switch (a hardware VTEP's Physical_Switch name, else None) and vtep (the VTEP reconciler's
        switch/state/transactions/last_error/conflicts/waiting, or None). ``tick``: called after each session
        described (a controller/pacer.py ``Pacer.tick``: it may pause); a session that closes meanwhile is left out."""
        out = []
        for name, session in sorted(self._sessions.items(), key=lambda item: item[0]):
            if self._sessions.get(name) is session:
                out.append(session.describe())
            if tick is not None:
                tick(1)
        return out

    def session_kinds(self) -> dict[str, int]:
        """{kind: open sessions} for /metrics, without describing any (``sessions``: every whole summary, for REST)."""
        kinds = {"vrs": 0, "vtep": 0, "unidentified": 0}
        for session in list(self._sessions.values()):
            kinds[session.kind] += 1
        return kinds

    def set_vtep_desired(self, name: str, desired: VtepDesired | None) -> None:
        """What the hardware VTEP whose Physical_Switch is ``name`` should hold (None: not known yet, so
        the VTEP is left as it is; an empty ``VtepDesired`` removes Canopy's rows). Kept for a VTEP that
        connects later; sessions of that switch act on it at once."""
        if not isinstance(name, str) or not name:
            raise ValueError("a hardware VTEP is named by its Physical_Switch name, not %r" % (name,))
        if desired is not None and not isinstance(desired, VtepDesired):
            raise TypeError("desired must be a VtepDesired or None, not %s" % type(desired).__name__)
        if self._vtep_desired.get(name) == desired:
            return
        if desired is None:
            del self._vtep_desired[name]
        else:
            self._vtep_desired[name] = desired
        for session in self._sessions.values():
            if session.switch == name:
                session.ring()

    def set_writes(self, enabled: bool) -> None:
        """HA: only the active writes tunnel ports and hardware VTEP rows; the standby only reads."""
        if enabled == self.writes_enabled:
            return
        self.writes_enabled = enabled
        for session in self._sessions.values():
            session.ring()

    @property
    def may_write(self) -> bool:
        """Whether sessions may write tunnel ports and hardware VTEP rows now."""
        return self.writes_enabled and not self.held

    def release(self) -> None:
        """The start-up hold is over (controller/startup_hold.py): sessions may write."""
        if self.held:
            self.held = False
            for session in self._sessions.values():
                session.ring()

    def vtep_desired(self, name: str | None) -> VtepDesired | None:
        """The desired state last set for the hardware VTEP ``name`` (None if none)."""
        return self._vtep_desired.get(name) if name else None

    def _accept_loop(self) -> None:
        last_error = None  # log a persistent accept error (e.g. EMFILE) once, not ten times a second
        while not self._stopping:
            try:
                self._listener.wait(WAKE_MS)
                self._accept_pending()
                last_error = None
            except OSError as exc:
                if str(exc) != last_error:
                    self.log.error("ovsdb: accept on %s:%d failed: %s", self.listen, self.port, exc)
                last_error = str(exc)
                hub.sleep(ACCEPT_RETRY_S)
            except Exception:
                self.log.exception("ovsdb: unexpected error in the accept loop")
                hub.sleep(ACCEPT_RETRY_S)

    def _expire_loop(self) -> None:
        """About once a second: report gone the VRS and hardware VTEPs whose reconnect grace is over
        (ovsdb/claims.py). (The accept loop cannot: a green accept waits for a connection.)"""
        while not self._stopping:
            hub.sleep(min(EXPIRE_S, max(0.05, self.claims.grace / 4)))
            for kind in (self.claims, self.vtep_claims):
                try:
                    kind.expire()
                except Exception:  # a sink failure must not stop the next expiries
                    self.log.exception("ovsdb: unexpected error reporting a switch gone")

    def _accept_pending(self) -> None:
        while not self._stopping:
            link = self._listener.accept(self.max_message)
            if link is None:
                return
            if not self._admit(link):
                continue
            session = _PeerSession(self, self._session_name(link.peer), link)
            self._sessions[session.name] = session
            self.log.info("ovsdb %s: connected (session %s)", link.peer, session.name)
            session.start()

    def _admit(self, link: idl.PeerLink) -> bool:
        """False (and the link closed) if its source address already holds ``per_source`` sessions."""
        source = link.peer.rsplit(":", 1)[0]
        held = sum(1 for s in self._sessions.values() if s.peer.rsplit(":", 1)[0] == source)
        if held < self.per_source:
            return True
        warn_limited(self.log, ("ovsdb refused", source), "ovsdb %s: refusing connection: %s already has %d "
                     "sessions (the limit per source address)", link.peer, source, self.per_source)
        link.close()
        return False

    def _session_name(self, peer: str) -> str:
        """``ovsdb:IP:PORT``, suffixed if a previous connection from that address is still open."""
        name, n = "ovsdb:%s" % peer, 1
        while name in self._sessions:
            n += 1
            name = "ovsdb:%s#%d" % (peer, n)
        return name

    def _forget(self, session: _PeerSession) -> None:
        if self._sessions.get(session.name) is session:
            del self._sessions[session.name]
