"""One accepted OVSDB connection and the green thread that serves it (ovsdb/server.py: what it does, step by step).

The session asks the peer which databases it serves, then follows a hardware VTEP's ``hardware_vtep`` or a VRS's
``Open_vSwitch`` until the connection drops or the peer gets something wrong; its server (``OvsdbManagerServer``)
lends it the sink, the claims, the first-read slots and what it may write.
"""

from __future__ import annotations

import datetime
import reprlib
import time

from controller.pacer import collector_paused, paced
from controller.ryu_compat import hub
from ovsdb import bridge, firstreads, idl, laterfree, tunnel, vrs, vtep, vtep_reporter, vtep_sync

VTEP_DATABASE = vtep.DATABASE
WAKE_MS = 1000  # longest a green thread sleeps without looking at its connection
PAUSE_PORTS = 100  # bridge ports read between two turns of the event loop (idl.PAUSE_ROWS: rows of an update)
FREEZE_ROWS = 2000  # rows changed by one batch of updates from which what exists is frozen out of the collector

# Session states shown in sessions().
HANDSHAKE, QUEUED, SYNCING, SYNCED, CLOSED = "handshake", "queued", "syncing", "synced", "closed"
FIRST_READ_PENDING = frozenset((HANDSHAKE, QUEUED, SYNCING))  # its peer's first copy not reported yet


def classify(databases: list[str]) -> str | None:
    """Which kind of peer serves these databases: hardware_vtep, Open_vSwitch (a VRS), or None."""
    for name in (VTEP_DATABASE, vrs.DATABASE):
        if name in databases:
            return name
    return None


class PeerSession:
    """One accepted OVSDB connection and the green thread that serves it."""

    def __init__(self, server, name: str, link: idl.PeerLink):
        self._server = server
        self._log = server.log
        self.name = name
        self.peer = link.peer
        self.database: str | None = None
        self._state = CLOSED  # (until the end: the server counts the sessions before their first report)
        self.connected_since = time.time()  # shown (describe); the sync deadline counts from _connected_at
        self._connected_at = time.monotonic()  # a step of the wall clock (NTP at boot) must not end or extend it
        self._conn = link  # PeerLink, then Replica
        self._reporter = vrs.VrsReporter(server.sink, name, link.peer, server.bridge, server.log, server.claims,
                                         paced(self._give_way, PAUSE_PORTS, server.budget))
        self._tunnel: tunnel.TunnelReconciler | None = None
        self._bridge: bridge.BridgeReconciler | None = None
        self._vtep_reporter = vtep_reporter.VtepReporter(server.sink, name, link.peer, server.log,
                                                         server.vtep_claims,
                                                         paced(self._give_way, PAUSE_PORTS, server.budget))
        self._vtep: vtep_sync.VtepReconciler | None = None
        self._doorbell: idl.Doorbell | None = None
        self._thread = None
        self._finished = False
        self._reading: float | None = None  # when it took one of the server's first-read slots (ovsdb/firstreads.py)
        self._queued: float | None = None  # when it began waiting for a first-read slot
        self.queued_s = 0.0  # seconds it waited for that slot: not counted against sync_timeout
        self.state = HANDSHAKE  # last: a session whose building raised is never counted as pending (nothing ends it)

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, new: str) -> None:
        """Every change of state goes by here: the server keeps the names of the sessions whose first copy of their
        peer's database is not reported yet (``first_reads_pending``, asked every 5 ms in the start-up hold)."""
        self._state = new
        if new in FIRST_READ_PENDING:
            self._server.first_read_pending.add(self.name)
        else:
            self._server.first_read_pending.discard(self.name)

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
            "dropped_reads": self._reporter.dropped_reads if last is not None else None,
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

    def vtep_reconciler(self):
        """The hardware VTEP's reconciler (ovsdb/vtep_sync.py), None for a VRS or before the schema is read."""
        return self._vtep

    def ring(self) -> None:
        """Wake the session loop (its VTEP's desired state changed)."""
        if self._doorbell is not None:
            self._doorbell.ring()

    def close(self) -> None:
        """Stop serving and close the connection, giving up its claims: whether and when the VRS / hardware VTEP it
        reported is reported gone is the claims' word (ovsdb/claims.py: after the reconnect grace; never once the
        manager is stopping)."""
        thread = self._thread
        if thread is not None and thread is not hub.getcurrent():
            hub.kill(thread)  # runs the thread's cleanup (finish) before returning, unless the kill landed in a report:
            # State then takes the switch's last report again, pausing (controller/state.py ``_failed``), and the
            # thread ends after that (a second kill: without pauses); _finish below is idempotent
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
        if self._server.tls is not None:  # its handshake done: it is connected (not before: ovsdb/server.py)
            self._log.info("ovsdb %s: connected over TLS (session %s)", self.peer, self.name)
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

        later = laterfree.LaterFree()  # the rows the slices deleted: freed after the last slice's report

        def report_slice():  # a big update of ports is reported as it lands, a slice at a time (idl.slices)
            self._server.slicing.add(self.name)  # until its last slice is reported (below, or the session ends)
            changes = replica.take_changes()
            self._reporter.refresh(replica.rows(vrs.DATABASE), changes)
            later.hold(changes)

        replica = idl.Replica(self._conn, schema, vrs.COLUMNS, self._server.probe_interval_ms,
                              named=tunnel.NAMED_TABLES, pause=self._give_way, budget=self._server.budget,
                              on_slice=report_slice,
                              on_leaving=self._reporter.leaving)  # the vports of a big delete told before its slices
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
                    changes = replica.take_changes()
                    self._reporter.refresh(replica.rows(vrs.DATABASE), changes)
                    if later:  # the last part of an update in slices: its rows go with theirs
                        later.hold(changes)
                    del changes
                    self._first_read_done()
                self._server.slicing.discard(self.name)
                self._reporter.leaving_done()  # (the update that deleted the ports told leaving is reported)
                later.free(self._give_way)  # after the last slice's withdrawals, a run at a time (ovsdb/laterfree.py)
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
                              pause=self._give_way, budget=self._server.budget)
        self._conn = replica
        self.state = SYNCING
        self._doorbell = idl.Doorbell()
        self._server.following_vtep(self)  # (set_vtep_desired rings it, vtep_settled asks it: not every VRS's)
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
