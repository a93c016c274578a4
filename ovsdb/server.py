"""Canopy as OVSDB manager: one listener, one green thread and one IDL replica per hypervisor.

Hypervisors run ``ovs-vsctl set-manager tcp:CANOPY:6640`` (``ssl:`` with TLS, docs/security.md); their
ovsdb-server connects here. For each accepted connection a green thread (ovsdb/peersession.py):

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

import logging
from collections.abc import Callable

from controller.discovery import DiscoverySink, VtepDesired
from controller.guard import warn_limited
from controller.ryu_compat import hub
from ovsdb import claims, idl, tunnel, vrs
from ovsdb.firstreads import FirstReads
from ovsdb.peersession import (  # noqa: F401 - the session's names, as before
    CLOSED, HANDSHAKE, QUEUED, SYNCED, SYNCING, VTEP_DATABASE, WAKE_MS, PeerSession, classify)

SYNC_TIMEOUT_S = 120.0  # default: a peer whose first full copy of the database has not arrived by then goes
EXPIRE_S = 1.0  # longest between two looks for VRS whose reconnect grace is over
ACCEPT_RETRY_S = 0.1  # pause after an accept error (e.g. EMFILE) before trying again


def give_way() -> None:
    """A turn for every other green thread (echo replies, heartbeats, REST) in the middle of a long stretch."""
    hub.sleep(0)


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
        self.first_read_pending: set[str] = set()  # sessions before their first report (PeerSession.state keeps it)
        self.pause = give_way  # a big update (rows, then bridge ports) gives the event loop a turn this way
        self.budget: float | None = None  # seconds: its sessions' pacers also pause by the wall clock (pacer.paced)
        self.held = False  # True until the controller's start-up hold ends (release()): write nothing
        self.slicing: set[str] = set()  # sessions reporting a big update in slices (ovsdb/idl/slices.py) now
        self.slicing_turns = 0  # turns those sessions gave the event loop, since the start (their progress)
        self._vtep_desired: dict[str, VtepDesired] = {}
        self._listener: idl.Listener | None = None
        self._accept_thread = None
        self._expire_thread = None
        self._sessions: dict[str, PeerSession] = {}
        self._vtep_sessions: dict[str, PeerSession] = {}  # those following a hardware VTEP, by name (few of them)
        self._stopping = False

    def start(self) -> None:
        """Bind the listener (raises ``OSError`` if it cannot) and start accepting in a green thread. Once only: a
        stopped manager's claims are closed (``stop``) and would report nothing, so a new manager is made instead."""
        if self._listener is not None:
            raise RuntimeError("OvsdbManagerServer already started")
        if self.claims.closed:
            raise RuntimeError("OvsdbManagerServer stopped: it reports nothing any more (ovsdb/claims.py close); "
                               "make a new one")
        self._listener = idl.Listener(self.listen, self.port, self.tls)
        self.port = self._listener.port
        self._stopping = False
        self._accept_thread = hub.spawn(self._accept_loop)
        self._expire_thread = hub.spawn(self._expire_loop)
        self.log.info("ovsdb: manager listening on %s:%d%s; a silent peer probed after %g s", self.listen, self.port,
                      " (TLS)" if self.tls is not None else "", self.probe_interval_ms / 1000)

    @property
    def accept_thread(self):
        """The green thread accepting connections (None before start and after stop)."""
        return self._accept_thread

    def stop(self) -> None:
        """Stop accepting and close every session. No switch is reported gone (ovsdb/claims.py ``close``): the
        controller is stopping, not they; the sink keeps them as last reported."""
        self._stopping = True
        kept = self.claims.close() + self.vtep_claims.close()
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
        self.log.info("ovsdb: manager on %s:%d stopped (%d switches not reported gone: they are not leaving, the "
                      "controller is)", self.listen, self.port, kept)

    def first_reads_pending(self) -> int:
        """Sessions whose first copy of their peer's database is not reported yet (in their handshake, queued for a
        first-read slot, or reading): switches about to report (the start-up hold's passes wait for them). O(1):
        kept by each session's changes of state (ovsdb/peersession.py), not counted over the sessions."""
        return len(self.first_read_pending)

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
        full_reads (how often every port of its bridge was read rather than the changed rows applied), dropped_reads
        (such reads dropped unkept, a newer one begun in their pauses: ovsdb/vrs.py),
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
        for session in self._vtep_sessions.values():
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

    def vtep_settled(self, name: str):
        """(the reconciler of the session serving hardware VTEP ``name``, whether it holds the desired state handed to
        it); (None, False) when no session serves it (controller/programmed.py)."""
        for session in self._vtep_sessions.values():  # (not every VRS's session: GET /v1/vteps asks for each VTEP)
            rec = session.vtep_reconciler() if session.switch == name else None
            if rec is not None:
                return rec, self.may_write and rec.settled(self._vtep_desired.get(name))
        return None, False

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
            try:
                session = PeerSession(self, self._session_name(link.peer), link)
            except BaseException:  # (never served: the connection would stay open, its descriptor held, for good)
                link.close()
                raise
            self._sessions[session.name] = session
            if self.tls is None:
                self.log.info("ovsdb %s: connected (session %s)", link.peer, session.name)
            else:  # "connected" once it speaks OVSDB over TLS (PeerSession): a plain-TCP peer here never does
                self.log.debug("ovsdb %s: accepted (session %s), its TLS handshake next", link.peer, session.name)
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

    def following_vtep(self, session: PeerSession) -> None:
        """``session``'s peer is a hardware VTEP (it follows its hardware_vtep database) until it is forgotten."""
        if self._sessions.get(session.name) is session:
            self._vtep_sessions[session.name] = session

    def _forget(self, session: PeerSession) -> None:
        if self._sessions.get(session.name) is session:
            del self._sessions[session.name]
            self._vtep_sessions.pop(session.name, None)
            self.first_read_pending.discard(session.name)
