"""The active/standby pair: which node is active, and the rules that keep it to one.

Roles: ``starting`` (just started, not yet sure), ``active`` (OpenFlow MASTER on every switch, writes
policy, hardware VTEP rows and BGP routes, gets every write onto the standby before acknowledging it) and
``standby`` (OpenFlow SLAVE, read-only REST, keeps its store, State and compiled flows current from the
replication stream). Without ``ha.peer`` a controller is ``standalone``.

The split-brain rule (docs/ha.md): a node becomes active only when

1. the peer is not active: it said so on the HA link, or it has been silent for the dead interval (a refused
   dial counts as silence, never as proof that the peer process is gone: a firewall rejects too), and
2. the switches agree: of the VRS known to the pair, a majority report no connected controller in the
   master role (OVS's Controller table), so a live active that only lost the HA link keeps its
   switches. A switch whose controllers' roles OVS has not published yet is not free: it cannot be judged,
   until it has been seen so for ``report_lag_limit`` (then it counts as free, so a switch that never
   publishes does not block a takeover for ever); and
3. it takes MASTER with a generation id above every one it has seen (persisted), so each switch fences
   the old master: OVS refuses a stale generation, and demotes the previous master.

A node that a switch demotes (it reports a master with a higher generation) steps down to standby, and so
does an active that finds its process did not run for longer than the dead interval (stopped, or starved of
CPU: its pulse, an OS thread, missed its beats while the process used little CPU), or its event loop did not
turn for HUB_DEAD_INTERVALS dead intervals: the peer may have replaced it meanwhile.

A busy node is not a dead one: heartbeats are sent and heard by the HA link's OS threads (controller.pairlink),
so they keep their pace while the event loop is held by a big apply, compile or read-back; each heartbeat says
how long ago the sender's event loop last turned (``hub_lag``), and a peer whose heartbeats arrive is alive
unless that lag reaches HUB_DEAD_INTERVALS dead intervals (its event loop is stuck, not busy).

Both nodes starting together elect by (last change sequence, priority, node id): the one with the newest data
wins, so an acknowledged write is never overwritten by a stale copy.

Writes: an acknowledged write is on both nodes. ``replicate`` (the service's hook, called before the active
commits) re-checks the role, then waits for the standby to hold the write, and refuses it (NotActive,
code ``not_replicated``) when the standby does not confirm, unless the operator put the node in solo mode
(``ha.solo`` or PUT /v1/ha/solo), which acknowledges without the standby and says so in the log. Once the wait
ended it checks the role again: a node that stepped down meanwhile refuses a write the standby did not confirm
(``not_active``, solo mode too: the new active never got it) and acknowledges one it did (the standby holds it).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from controller.osthread import Pulse
from controller.pairlink import PairLink
from controller.replication import Applier, Replicator
from controller.service import NotActive
from controller.store import StoreFault

log = logging.getLogger("canopy.ha")
GENERATION_KEY = "ha_generation"
STARTUP_DEAD_INTERVALS = 4  # a node that never heard its peer waits this many dead intervals before acting alone
HUB_DEAD_INTERVALS = 10  # an event loop that did not turn for this many dead intervals is stuck, not busy
# How long the switches' reports may be behind (Pair.report_lag_limit): this many dead intervals, and at least two
# of OVS's status periods (it writes Controller.role and is_connected with its statistics, every 5 s by default)
UNPUBLISHED_DEAD_INTERVALS = 4
OVS_STATUS_PERIOD = 5.0


@dataclass
class PeerView:
    """What this node last heard from its peer."""

    node: str | None = None
    role: str | None = None
    generation: int = 0
    priority: int = 0
    seq: int = 0
    switches: int = 0  # how many VRS the peer sees over OVSDB
    hub_lag: float = 0.0  # seconds since the peer's event loop last turned, as its last heartbeat said
    heard_at: float | None = None  # time.monotonic()
    heard_wall: float | None = None  # time.time(), for REST


class Pair:
    def __init__(self, settings, store, state, on_role: Callable[[str, int], None]):
        """``settings``: HaSettings; ``on_role(role, generation)`` is called (from the pair's thread) on
        every role change; it must apply the role to switches, OVSDB and BGP."""
        self.settings = settings
        self.store = store
        self.state = state
        self.on_role = on_role
        self.role = "starting"
        self.generation = int(store.get_meta(GENERATION_KEY) or 0)  # highest used or seen
        self.peer = PeerView()
        self.switch_generation = 0  # highest master generation a switch reported
        self.demoted = False
        self.started = time.monotonic()
        self.changed_at = time.time()
        self.reason = "starting"
        self.takeovers = 0
        self.refused_writes = 0  # writes refused because the standby did not confirm them (stepped down or not)
        self.solo = {"enabled": False, "since": None, "by": None}
        if settings.solo:
            self.set_solo(True, "settings (ha.solo)")
        self._hub_tick = time.monotonic()  # when the decision loop (on the event loop) last ran
        self._resumed_at = 0.0  # when this process was last found to have not run (the pulse's gap)
        self._unpublished: dict[str, float] = {}  # switch key -> when first seen without its controllers' roles
        self.pulse = Pulse(min(settings.heartbeat_interval, settings.dead_interval / 4), "canopy-ha-pulse")
        self.link = PairLink(settings.node_id, settings.listen, settings.port, settings.peer, settings.peer_port,
                             settings.heartbeat_interval, self._heartbeat, self._on_message, log,
                             secret=settings.secret)
        self.link.on_frame = self._on_frame
        self.replicator = Replicator(store, self.link, settings.ack_timeout, log)
        self.applier = Applier(store, state, self.link, log)
        self.applier.accepting = lambda: self.role != "active"
        self.listeners: list[Callable[[dict, str], None]] = []  # (message, role) for each from the peer: bgp.dupkeep
        self.runtime: dict[str, Callable[[], dict]] = {}  # what status() shows of those (controller/overlink.py)
        self.applier.hello()
        self._stop = threading.Event()
        self._thread = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self.started = self._hub_tick = time.monotonic()
        self.pulse.start()
        self.applier.start()
        self.link.start()
        self._thread = threading.Thread(target=self._loop, name="canopy-ha", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.link.stop()
        self.applier.stop()
        self.pulse.stop()
        if self._thread is not None:
            self._thread.join(timeout=2)

    # ------------------------------------------------------------------ what others ask
    def writable(self) -> str | None:
        """None when this node takes writes; otherwise why not (names the active)."""
        self._check_stall()
        if self.role == "active":
            return self._superseded()
        where = f"{self.settings.peer}" + (f" (node {self.peer.node})" if self.peer.node else "")
        if self.role == "standby":
            return f"this controller ({self.settings.node_id}) is the standby; send writes to the active at {where}"
        return f"this controller ({self.settings.node_id}) is still deciding its role; retry, or use {where}"

    def replicate(self, changes, meta) -> None:
        """Service hook, called with a numbered write before this node commits it: returns once the standby
        holds it (or, in solo mode, after trying); raises NotActive when this node may not acknowledge it:
        not (or no longer) the active, or the standby did not confirm (code ``not_replicated``), or this node
        stepped down while it waited and the standby did not confirm (``not_active``; docs/ha.md "Writes")."""
        reason = self.writable()  # checked before the write goes out: role, generation, the peer's state
        if reason:
            raise NotActive(reason)
        solo = self.solo["enabled"]  # read once: the replicator keeps an unconfirmed write only if it is committed
        why = self.replicator.confirm(changes, meta, solo=solo)
        stepped = self.writable()  # again: the node may have stepped down (or been superseded) while it waited
        if why is None:
            if stepped:  # the standby holds it and is, or becomes, the active: refusing would be untrue (docs/ha.md)
                log.warning("acknowledging changes %d-%d, which the standby confirmed, although this node stepped "
                            "down while they waited: %s", changes[0].seq, changes[-1].seq, stepped)
            return
        first, last = changes[0].seq, changes[-1].seq
        if stepped:
            self._refuse_stepped_down(changes, why, stepped)
        if solo:
            log.warning("solo mode: acknowledging changes %d-%d without the standby (%s)", first, last, why)
            return
        self.refused_writes += 1
        log.warning("refused a write (changes %d-%d, nothing committed): %s", first, last, why)
        if self.solo["enabled"]:  # turned on while this write waited: it was confirmed as a write outside solo mode
            advice = "solo mode was turned on while this write waited for the standby: retry it"
        else:
            advice = ("retry, or if the standby is down for good put this node in solo mode: PUT /v1/ha/solo "
                      "{\"solo\": true}")
        raise NotActive(f"the write was refused and nothing was changed: {why} (the standby "
                        f"{self.settings.peer} must hold every acknowledged write; {advice})", code="not_replicated")

    def _refuse_stepped_down(self, changes, why: str, stepped: str) -> None:
        """Refuse an unconfirmed write whose node stopped being the active while it waited (solo mode too: the new
        active never got it, so acknowledging it would lose it). Not committed here, and forgotten by the
        replicator (solo mode kept it as a position the standby must hold): a standby that got it is not on our
        history any more and gets a snapshot. Raises NotActive (``not_active``: retry at the active)."""
        self.replicator.forget(changes)
        self.refused_writes += 1
        first, last = changes[0].seq, changes[-1].seq
        log.warning("refused a write (changes %d-%d, not committed here): this node stepped down while it waited "
                    "for the standby (%s): %s", first, last, why, stepped)
        raise NotActive(f"the write was refused and not committed: this controller stepped down while the write "
                        f"waited for the standby ({why}): {stepped}. The standby may hold it if it got it before "
                        f"it took over: read it back there before retrying")

    def set_solo(self, enabled: bool, by: str) -> dict:
        """Solo mode on or off (the operator's decision, logged); returns the solo status."""
        enabled = bool(enabled)
        if enabled != self.solo["enabled"]:
            self.solo = {"enabled": enabled, "since": time.time(), "by": by}
            if enabled:
                log.warning("HA: solo mode ON (by %s): writes are acknowledged even when the standby does not "
                            "hold them; they are lost if this node dies before the standby catches up", by)
            else:
                log.warning("HA: solo mode OFF (by %s): every acknowledged write is on both nodes", by)
        return dict(self.solo)

    def _superseded(self) -> str | None:
        """Why this active must not acknowledge anything (a newer active exists), or None."""
        if self.demoted or self.switch_generation > self.generation:
            return (f"this controller ({self.settings.node_id}) was active but a switch reports a newer master "
                    f"(generation {self.switch_generation}, ours {self.generation}); it is stepping down")
        if self._peer_alive(time.monotonic()) and self.peer.role == "active" and self.peer.generation > self.generation:
            return (f"this controller ({self.settings.node_id}) was active but the peer {self.settings.peer} is "
                    f"active with a newer generation {self.peer.generation}; send writes there")
        return None

    @property
    def report_lag_limit(self) -> float:
        """How long the switches' reports of their controllers' roles may be behind: a switch that publishes none is
        not judged for this long (then it counts as free)."""
        return max(UNPUBLISHED_DEAD_INTERVALS * self.settings.dead_interval, 2 * OVS_STATUS_PERIOD)

    @property
    def hub_limit(self) -> float:
        """How long an event loop may go without turning before the pair counts it stuck (not busy)."""
        return HUB_DEAD_INTERVALS * self.settings.dead_interval

    def _check_stall(self) -> None:
        """An active steps down when the peer may have taken over meanwhile (it re-decides from fresh
        heartbeats and switch reports): when its process did not run for longer than the dead interval while
        using little CPU (stopped, e.g. SIGSTOP, or starved: its heartbeats stopped too), judged by the pulse,
        an OS thread that a busy event loop does not hold up; or when its own event loop did not turn for
        ``hub_limit`` (its heartbeats said so, and the peer counts such a node as dead)."""
        if not self.pulse.running:
            return
        gap, cpu = self.pulse.take()
        hub_gap = time.monotonic() - self._hub_tick
        stalled = gap > self.settings.dead_interval and cpu < gap / 2
        if stalled:
            self._resumed_at = time.monotonic()  # decide nothing before the link has read what came meanwhile
        if self.role != "active":
            return
        if stalled:
            self._become("standby", f"this node did not run for {gap:.1f} s (stopped or starved), longer than "
                                    "the dead interval: the peer may have taken over; re-checking")
        elif hub_gap > self.hub_limit:
            self._hub_tick = time.monotonic()
            self._become("standby", f"this node's event loop did not turn for {hub_gap:.1f} s, so the peer "
                                    "counts it as stuck and may have taken over; re-checking")

    def switch_reported(self, generation: int, role: str) -> None:
        """A switch told us our role changed (OpenFlow 1.4 role status) or refused us as stale."""
        with self._lock:
            self.switch_generation = max(self.switch_generation, generation)
            if self.role == "active" and role != "master" and generation > self.generation:
                log.warning("a switch reports another master with generation %d (ours %d): stepping down",
                            generation, self.generation)
                self.demoted = True

    def status(self) -> dict:
        self._check_stall()
        now = time.monotonic()
        peer = self.peer
        return {
            "role": self.role, "node_id": self.settings.node_id, "since": self.changed_at, "reason": self.reason,
            "generation_id": self.generation, "priority": self.settings.priority, "takeovers": self.takeovers,
            "solo": dict(self.solo), "refused_writes": self.refused_writes,
            "auth": {"method": f"hmac-sha256 shared secret ({self.settings.secret_from})",
                     "failures": self.link.auth_failures, "refused_replicas": self.applier.refused},
            "peer": {"address": self.settings.peer, "port": self.settings.peer_port, "node_id": peer.node,
                     "role": peer.role, "alive": self._peer_alive(now),
                     "link": {"out": self.link.connected_out, "in": self.link.connected_in,
                              "refused": self.link.refused(), "last_dial_error": self.link.last_dial_error},
                     "last_heartbeat": peer.heard_wall,
                     "heartbeat_age": round(now - peer.heard_at, 3) if peer.heard_at else None,
                     "event_loop_lag": peer.hub_lag,
                     "generation_id": peer.generation, "priority": peer.priority},
            "replication": self._replication(),
            "runtime": {name: counts() for name, counts in self.runtime.items()},
            "switches": self._switch_view(),
        }

    def _replication(self) -> dict:
        """Our position as of the last committed transaction: read without waiting for a commit in flight."""
        seq = self.store.reader.last_seq()
        if self.role == "active":
            return {"direction": "out", "seq": seq, "acked_seq": self.replicator.acked_seq,
                    "lag": self.replicator.lag()}
        return {"direction": "in", "seq": seq, "peer_seq": self.peer.seq, "lag": max(0, self.peer.seq - seq),
                "store_renewed": self.applier.renewed, "store_renewals": self.applier.renewals}

    def _switch_view(self) -> dict:
        snaps = list(self.state.vrs.values())
        return {"seen": len(snaps), "reporting_a_master": sum(1 for s in snaps if s.other_master()),
                "roles_unpublished": sum(1 for s in snaps if s.roles_unpublished())}

    # ------------------------------------------------------------------ the HA link
    def _heartbeat(self) -> dict:
        """Built on the HA link's OS thread: plain attributes only (the position as the event loop last read
        it), and how long ago the event loop last turned."""
        return {"role": self.role, "generation": self.generation, "priority": self.settings.priority,
                "switches": len(self.state.vrs), "hub_lag": round(time.monotonic() - self._hub_tick, 3),
                **self.applier.beat()}

    def _on_frame(self, msg: dict) -> None:
        """On the HA link's receiving OS thread, for every authenticated frame from the peer: it is alive (a
        batch of changes too: heartbeats sent after it arrive after it); a heartbeat also says its role,
        generation, position and event-loop lag. Builds a new PeerView and swaps it in (no lock, no store)."""
        if msg.get("t") in ("hb", "hello"):
            view = _peer_view(msg, self.peer)
            if view is None:
                return  # malformed: logged by _on_message
        else:
            view = PeerView(**vars(self.peer))
        view.heard_at, view.heard_wall = time.monotonic(), time.time()
        self.peer = view

    def _on_message(self, msg: dict) -> None:
        """On the event loop, after _on_frame: remember a newer generation the peer uses, then hand the message
        to the replicator (active) or the applier (otherwise). The generation is learned under the pair's lock, as a
        takeover writes its own: both wait for an fsync, and a peer's generation decided against the one before a
        takeover and written after it would replace the takeover's (the active would fence with one it forgot)."""
        if msg.get("t") in ("hb", "hello"):
            if _peer_view(msg, self.peer) is None:
                log.warning("ignoring a malformed heartbeat from the peer: %r", msg)
            else:
                try:
                    self._learn_generation()
                except StoreFault:  # logged by the store; learned at a later heartbeat (a takeover uses it anyway)
                    pass
        if self.role == "active":
            self.replicator.on_message(msg)
        else:
            self.applier.on_message(msg)
        for listener in self.listeners:  # runtime state that is not the store's (docs/ha.md)
            listener(msg, self.role)

    def _learn_generation(self) -> None:
        """Remember the peer's generation if it is newer than ours and this node is not the active."""
        with self._lock:
            if self.peer.generation > self.generation and self.role != "active":
                self._remember_generation(self.peer.generation)

    # ------------------------------------------------------------------ deciding
    def _loop(self) -> None:
        interval = self.settings.heartbeat_interval
        while not self._stop.wait(interval / 2):
            try:
                self._check_stall()
                self._renew_store()
                self.applier.hello()  # the position the next heartbeats carry
                self._decide(time.monotonic())
            except StoreFault:  # the store logged the write its disk refused (one line); decided again next tick
                pass
            except Exception:  # never let a bug end the pair's thread
                log.exception("HA decision failed")
            self._hub_tick = time.monotonic()

    def _renew_store(self) -> None:
        """A standby whose store's file went takes a new one, filled by the active's snapshot (Applier.renew); one the
        disk refuses is logged by the store and tried again at the next tick. Not while a replicated message is in hand
        (its transaction holds the store): looked at the tick after it."""
        if self.role == "standby" and not self.applier.busy:
            try:
                self.applier.renew()
            except StoreFault:
                pass

    def _peer_alive(self, now: float) -> bool:
        """Heard within the dead interval, and its event loop not stuck (a busy one is alive). Silence counts
        only up to when the link's receiving thread last read what had arrived: a node that was itself stopped
        does not take what is still unread in its sockets for silence (its decision loop may run first)."""
        peer = self.peer
        listened = self.link.listened_at
        upto = now if listened is None else min(now, listened)
        return peer.heard_at is not None and upto - peer.heard_at < self.settings.dead_interval \
            and peer.hub_lag < self.hub_limit

    def _peer_gone(self, now: float) -> bool:
        """Silent for the dead interval after having been heard (a refused dial counts as silence: the link
        is down, whether the process or a firewall refuses it); a node that never heard its peer waits
        STARTUP_DEAD_INTERVALS dead intervals (links and switches reconnect). Rule 2 must hold too."""
        if self._peer_alive(now) and not self.link.refused():
            return False
        if self.peer.heard_at is not None:
            return True
        return now - self.started >= STARTUP_DEAD_INTERVALS * self.settings.dead_interval

    def _switches_agree(self, now: float) -> bool:
        """Rule 2: more than half of the VRS known to the pair (the larger of what we see and what the peer
        last said it sees) report no connected master to us. None known: nothing to fence. A switch whose
        controllers' roles are not published is not free until it has been seen so for ``report_lag_limit``."""
        snaps = list(self.state.vrs.values())
        self._unpublished = {s.session: self._unpublished.get(s.session, now) for s in snaps if s.roles_unpublished()}
        known = max(len(snaps), self.peer.switches)
        if not known:
            return True
        free = sum(1 for s in snaps if not s.other_master() and self._unpublished_free(s.session, now))
        return free * 2 > known

    def _unpublished_free(self, session: str, now: float) -> bool:
        """Whether switch ``session`` counts as free as far as its roles go: they are published, or have not
        been for ``report_lag_limit`` since this node first saw it so."""
        since = self._unpublished.get(session)
        return since is None or now - since >= self.report_lag_limit

    def _unpublished_note(self, now: float) -> str:
        """What the reason for a takeover adds when it counted switches without published roles as free."""
        late = sum(1 for session in self._unpublished if self._unpublished_free(session, now))
        return f" ({late} switch(es) published no controller roles within {self.report_lag_limit:.0f} s: " \
               "counted as free)" if late else ""

    def _election_keys(self) -> tuple[tuple, tuple]:
        """(ours, the peer's): newest data first, then priority, then node id."""
        return ((self.store.last_seq(), self.settings.priority, self.settings.node_id),
                (self.peer.seq, self.peer.priority, self.peer.node or ""))

    def _wins_election(self) -> bool:
        mine, theirs = self._election_keys()
        return mine > theirs

    def _heard_since_resumed(self) -> bool:
        """After this process did not run, its view of the peer is stale until the link's receiving thread has
        read what arrived meanwhile (the decision loop may run first)."""
        listened = self.link.listened_at
        return listened is None or listened > self._resumed_at

    def _decide(self, now: float) -> None:
        if self.role != "active" and self.applier.busy:
            return  # a replicated batch is in hand: applied (and acknowledged) before anything is decided
        if not self._heard_since_resumed():
            return
        alive = self._peer_alive(now) and not self.link.refused()
        if self.role == "active":
            if self.demoted:
                self._become("standby", "a switch reports a newer master")
            elif alive and self.peer.role == "active" and self._peer_outranks_us_as_active():
                self._become("standby", f"the peer is active with a newer generation {self.peer.generation}")
            return
        if alive and self.peer.role == "active":
            if self.role != "standby":
                self._become("standby", "the peer is active")
            return
        if self.applier.renewed is not None:
            return  # its store renewed and empty until the active's snapshot is in: never active on it (a standby,
            # even restarted meanwhile: Applier.renewed is in the store)
        if alive:  # both undecided or standby: elect
            if self._wins_election() and self._switches_agree(now):
                self._become("active", "elected (newest data, then priority, then node id)"
                             + self._unpublished_note(now))
            return
        if self._peer_gone(now) and self._switches_agree(now):
            link = "refuses the HA link" if self.link.refused() else "is silent"
            why = f"the peer {link} and the switches report no master" if self.peer.heard_at else \
                "no peer answered and the switches report no master"
            self._become("active", why + self._unpublished_note(now))

    def _peer_outranks_us_as_active(self) -> bool:
        """Both active (a healed partition): the newer generation stays, then the election keys."""
        mine, theirs = self._election_keys()
        return (self.peer.generation, theirs) > (self.generation, mine)

    def _become(self, role: str, reason: str) -> None:
        if role == "active":  # not active yet (_decide): no write of this term has started (one of an earlier
            self.replicator.reset()  # term may still be waiting or committing: the replicator keeps it)
        with self._lock:
            if role == "active":
                self._remember_generation(max(self.generation, self.peer.generation, self.switch_generation) + 1)
                self.demoted = False
                if self.role == "standby":
                    self.takeovers += 1
            self.role, self.reason, self.changed_at = role, reason, time.time()
            generation = self.generation
        log.warning("HA: now %s (generation %d): %s", role, generation, reason)
        try:
            self.on_role(role, generation)
        except Exception:
            log.exception("applying the HA role %s failed", role)

    def _remember_generation(self, generation: int) -> None:
        """Durable first, then visible: set_meta yields while its fsync runs (controller/store.py ``offload``), and
        the heartbeat (the HA link's OS thread), status and the other green threads read ``generation`` meanwhile.
        The caller holds the pair's lock (one generation written at a time, each decided on the one before)."""
        self.store.set_meta(GENERATION_KEY, generation)
        self.generation = generation


def _peer_view(msg: dict, before: PeerView) -> PeerView | None:
    """The peer as a heartbeat (or hello) describes it, fields it leaves out kept from ``before``; None if
    malformed."""
    try:
        return PeerView(node=str(msg.get("node") or before.node or ""), role=msg.get("role", before.role),
                        generation=int(msg.get("generation", before.generation) or 0),
                        priority=int(msg.get("priority", before.priority) or 0),
                        seq=int(msg.get("seq", before.seq) or 0),
                        switches=int(msg.get("switches", before.switches) or 0),
                        hub_lag=float(msg.get("hub_lag", 0.0) or 0.0),
                        heard_at=before.heard_at, heard_wall=before.heard_wall)
    except (TypeError, ValueError):
        return None
