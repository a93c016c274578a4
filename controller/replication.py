"""Active/standby replication: both ends of the store stream that runs over the HA link
(controller.pairlink.PairLink, authenticated).

- ``Replicator`` (active side) gets every write to the standby before the active commits it: confirm()
  sends the numbered changes and waits for the standby's acknowledgement; the active commits (and the API
  acknowledges) only after it, and refuses the write otherwise. When the standby is behind it sends the
  missing changes first, or a snapshot of the whole store when those are compacted away or the standby's
  history diverged from ours.
- ``Applier`` (standby side) validates what arrives with the rules of a REST write (controller.replicacheck:
  controller.model normalise, a held object's immutable fields, controller.policy check), writes it into its own
  store and State and acknowledges it; what fails validation is refused (logged, told to the active), never applied.

Positions in history are (seq, ts) pairs (Store.history()): the standby reports its own in every
heartbeat and acknowledgement, and the active trusts a position only if its own change at that seq (or
the write it is confirming) has the same commit time, so a standby with commits of its own (an old active,
or a write the active then refused) is replaced by a snapshot, never merged.

Only stdlib threading/time: under ryu-manager they are eventlet's green versions.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque

from controller.loglimit import log_limited, warn_limited
from controller.pacer import NEVER, Pacer
from controller.pairlink import PairLink
from controller.policy import Policy
from controller.replicacheck import InvalidReplica, check_meta, checked_changes, checked_snapshot
from controller.store import RENEWED_META, Change, StoreError, StoreFault

POLL = 0.2                       # how often a waiting confirm() looks again
BATCH = 500                      # changes per catch-up message
RESYNC_HOLDOFF = 0.5             # the standby asks again for the same position no sooner than this
REFUSED_HOLDOFF = 0.5            # a catch-up the standby's store refused is sent again no sooner than this
STORE_REFUSED = "the standby's store could not take it"  # how a refusal by the standby's store (its disk) begins
ACK_PER_CHANGE = 0.0005          # seconds a write's confirmation may take per change, beyond ack_timeout
RENEWED = {"seq": -1, "history": [-1, None]}  # a renewed standby's position: on no history, so it gets a snapshot


# ---------------------------------------------------------------------------------------------- active

class Replicator:
    """Active side. confirm(changes, meta) sends a numbered write, not yet in our store, as {"t": "changes",
    "changes": [c.to_wire()...], "meta": meta} and waits (bounded by ack_timeout) for the standby's
    {"t": "ack", "seq": >= last, "history": [seq, ts]} on our history (the write's own ts counts). It
    returns None once the standby holds the write, else why not: at once when no standby is connected (both
    link directions) or the standby refused the write ({"t": "refused", "seq", "ts", "reason"}), or after the
    timeout (the standby is then ``lagging`` and is caught up when it next reports its position: caught up once it
    holds our last change, or the unconfirmed write a solo-mode caller commits after confirm() returns).

    on_message handles the standby's "ack" and "refused", and the "hello", "hb" and "resync" maps that carry
    its position ("seq" and "history"): behind on our history, it gets the missing changes (in batches of
    BATCH); behind a compacted log, or diverged from our history (a write we refused after it got there
    included), a {"t": "snapshot", "snapshot": store.snapshot()}. Other message types are ignored. What was
    sent recently on the current connection counts as on its way, so a heartbeat does not trigger the same
    catch-up twice (one the standby's store refused, for REFUSED_HOLDOFF only).

    on_message and confirm() share one lock; ``synced``, ``lag()`` and ``acked_seq`` read without it, so a
    link heartbeat() may call them. Its warnings about the standby (out of step, a bad seq, a position not on our
    history) are logged at most once per 10 s each (controller/loglimit.py): a standby that keeps sending them
    (each heartbeat, each resync) or keeps falling behind and catching up does not flood the log."""

    def __init__(self, store, link: PairLink, ack_timeout: float = 2.0, log=None):
        self.store = store
        self.link = link
        self.ack_timeout = ack_timeout
        self.resend_after = max(ack_timeout, 1.0)  # what was sent counts as on its way this long (+ its size)
        self.log = log or logging.getLogger("canopy.ha")
        self.acked_seq = 0        # the standby holds our history up to here (it acknowledged or reported it)
        self.lagging = False      # a write went unconfirmed and the standby has not caught up since
        self._known = False       # acked_seq is a verified position of the connected standby
        self._sent_upto = 0       # everything up to here was sent in order, on _sent_epoch, at _sent_at
        self._sent_epoch = -1
        self._sent_at = 0.0
        self._sent_window = self.resend_after
        self._pending: list[Change] = []  # the write being confirmed, then committed (solo mode: unconfirmed too),
        # until its commit ended (committed(), or forget() when it failed or was refused)
        self._pending_meta: dict = {}
        self._refusal: str | None = None  # why the standby refused the pending write
        self._cond = threading.Condition(threading.RLock())

    @property
    def synced(self) -> bool:
        """The connected standby verifiably holds our whole history, the write being committed included."""
        return self._known and self.acked_seq >= self._last()

    def lag(self) -> int:
        """How many committed changes the standby is behind (by what it acknowledged); read without waiting for a
        commit in flight (GET /v1/ha, /metrics)."""
        return max(0, self.store.reader.last_seq() - self.acked_seq)

    def timeout_for(self, count: int) -> float:
        """How long a write of ``count`` changes waits for the standby's confirmation: ``ack_timeout`` plus
        ACK_PER_CHANGE per change (the standby checks and applies every change before it confirms)."""
        return self.ack_timeout + count * ACK_PER_CHANGE

    # ------------------------------------------------------------------ confirming a write
    def confirm(self, changes: list[Change], meta: dict, solo: bool = False) -> str | None:
        """Get a numbered write (seq from our last_seq() + 1 on) onto the standby; None when it holds it. ``solo``:
        the caller commits the write even when the standby does not confirm it (solo mode), so it stays the newest
        position the standby must hold (it is caught up to it); otherwise an unconfirmed write is forgotten."""
        if not changes:
            return None
        last = changes[-1].seq
        with self._cond:
            if self.link.connected_out and self.link.connected_in:
                self._pending, self._pending_meta, self._refusal = list(changes), meta, None
                why = self._wait_for(last, self.timeout_for(len(changes)))
                if why is not None and not solo:
                    self.forget(changes)
            else:
                why = "the standby is not connected on the HA link"
                if solo:
                    self._pending, self._pending_meta, self._refusal = list(changes), meta, None
            if why is not None:
                self._sent_epoch = -1  # what was sent is not on its way: the standby's next report gets it again
                self._mark_lagging(last, why)  # before the lock is let go: a report meanwhile must not end it at once
        return why

    def forget(self, changes: list[Change]) -> None:
        """A write that will not be committed here (unconfirmed, or confirmed and then refused by our store): a
        standby that got it is not on our history any more, and its next report gets it a snapshot."""
        with self._cond:
            self._pending, self._sent_epoch = [], -1
            self.acked_seq = min(self.acked_seq, changes[0].seq - 1)

    def committed(self, changes: list[Change]) -> None:
        """The write confirm() returned for is in our store now: the store holds the position (and the changes to
        send), so it is pending no longer. A solo-mode write kept pending after its commit would outlive a snapshot
        of the peer that replaced our store while this node was the standby (awaited, and sent, on a history that
        no longer has it)."""
        with self._cond:
            if self._pending and _same_write(self._pending, changes):
                self._pending, self._pending_meta = [], {}

    def reset(self) -> None:
        """This node becomes the active (again): what was sent in an earlier term is not on its way. A write still
        pending is kept: its confirm() returned, or is still waiting, and its commit has not ended (``committed`` or
        ``forget`` ends it; the service holds the commit section until then, so no snapshot of the peer replaced our
        store meanwhile): it lands in our store, so the standby must hold it, and a report of it is on our history.
        So is the standby's refusal of it (confirm() sets none aside but the pending write's): a write still
        waiting is refused with the standby's reason at once."""
        with self._cond:
            self._sent_epoch = -1

    def _wait_for(self, last: int, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while True:
            if self._known and self.acked_seq >= last:
                return None
            if self._refusal is not None:
                return f"the standby refused it: {self._refusal}"
            if not self.link.connected_out:
                return "the HA link to the standby went down"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return f"the standby did not confirm it within {timeout:g} s"
            self._advance()
            self._cond.wait(min(remaining, POLL))

    def _mark_lagging(self, seq, why):
        if not self.lagging:  # once a lagging spell; at most once per LOG_EVERY however often it starts again
            warn_limited(self.log, ("standby not in step", self.store.path),
                         "standby not in step at seq %d (%s); it will be caught up", seq, why)
        self.lagging = True

    # ------------------------------------------------------------------ the standby's reports
    def on_message(self, msg: dict):
        kind = msg.get("t")
        if kind == "refused":
            self._on_refused(msg)
            return
        if kind not in ("ack", "hello", "hb", "resync") or "seq" not in msg:
            return
        seq, history = msg["seq"], msg.get("history")
        if not isinstance(seq, int):
            warn_limited(self.log, ("standby sent a bad seq", self.store.path), "standby sent %s with seq %r", kind,
                         seq)
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
                warn_limited(self.log, ("standby position not on our history", self.store.path),
                             "standby position %r is not on our history: it gets a snapshot", history)
            self._known = self._known and verified
            if verified and self.acked_seq >= self._last() and self.lagging:
                log_limited(self.log, logging.INFO, ("standby caught up", self.store.path),  # a flapping link
                            "standby caught up at seq %d", self.acked_seq)
                self.lagging = False
            self._cond.notify_all()
            if kind != "ack" or not verified:
                self._advance()

    def _on_refused(self, msg):
        """The pending write refused: its confirm() returns why. A catch-up refused (the standby's full disk) is not
        on its way: it is sent again at a heartbeat at least REFUSED_HOLDOFF later, not after the whole
        ``resend_after`` (ack_timeout), so a standby whose disk was freed meanwhile catches up at once."""
        reason, seq, ts = msg.get("reason"), msg.get("seq"), msg.get("ts")
        with self._cond:
            if any(c.seq == seq and c.ts == ts for c in self._pending):
                self._refusal = str(reason)[:500]
                self._cond.notify_all()
            # also the pending write sent again by a heartbeat after its confirm() returned, before its commit ended
            if (isinstance(seq, int) and self.acked_seq < seq <= self._sent_upto
                    and str(reason).startswith(STORE_REFUSED)):
                self._sent_window = min(self._sent_window, time.monotonic() - self._sent_at + REFUSED_HOLDOFF)

    def _ts_at(self, seq: int):
        """The commit time of our change at seq (the pending write included); None if we do not have it."""
        change = self.store.change_at(seq)
        if change is None:
            change = next((c for c in self._pending if c.seq == seq), None)
        if change is not None:
            return change.ts
        if seq == self.store.get_meta("compacted_seq"):  # the last change compacted away; its time is kept
            return self.store.get_meta("compacted_ts")
        return None  # compacted away (cannot tell: a snapshot), or never ours

    def _last(self) -> int:
        """The newest position the standby should hold: our last change, or the write being confirmed or committed
        (confirmed, or in solo mode unconfirmed: it is committed after confirm() returns). Read without the lock
        (``synced``): ``_pending`` is read once."""
        pending = self._pending
        return max(self.store.last_seq(), pending[-1].seq if pending else 0)

    def _verified(self, seq: int, history) -> bool:
        """Whether the standby's position (seq, ts) lies on our history."""
        if seq == 0:
            return True
        if seq > self._last() or not isinstance(history, (list, tuple)) or len(history) != 2:
            return False
        ts = self._ts_at(seq)
        return ts is not None and ts == history[1]

    # ------------------------------------------------------------------ catching up
    def _base(self) -> int | None:
        """Where the standby will be once what we sent arrives; None if unknown (it needs a snapshot)."""
        recent = time.monotonic() - self._sent_at < self._sent_window
        if self._sent_epoch == self.link.out_epoch and recent and self._sent_upto > self.acked_seq:
            return self._sent_upto
        return self.acked_seq if self._known else None

    def _advance(self):
        """Send the standby whatever it lacks: nothing, the missing changes, or a snapshot (then the pending
        write, if any)."""
        if not self.link.connected_out:
            return
        base = self._base()
        if base is None:
            base = self._send_snapshot()
        if base is not None and base < self._last():
            self._send_from(base)

    def _send_from(self, seq: int):
        meta = self.store.replicated_meta()
        while seq < self.store.last_seq():
            batch = self.store.changes_since(seq, BATCH)
            if not batch:
                break
            if batch[0].seq != seq + 1:  # compacted away
                self._sent_epoch = -1
                self._known = False
                self._send_snapshot()
                return
            if not self._send_changes(batch, meta):
                return
            self.log.info("standby catch-up: sent changes %d-%d", batch[0].seq, batch[-1].seq)
            seq = batch[-1].seq
        pending = [c for c in self._pending if c.seq > seq]
        if pending and pending[0].seq == seq + 1:
            self._send_changes(pending, self._pending_meta)

    def _send_changes(self, changes, meta) -> bool:
        epoch = self.link.out_epoch
        if not self.link.send({"t": "changes", "changes": [c.to_wire() for c in changes], "meta": meta}):
            return False
        self._sent(changes[-1].seq, epoch, len(changes))
        return True

    def _send_snapshot(self) -> int | None:
        """Send the whole store; the seq it ends at, or None if the send failed."""
        epoch = self.link.out_epoch
        try:
            snap = self.store.snapshot()
        except StoreError as exc:  # its file overwritten in place: what it reads is not the store (writes refused too)
            warn_limited(self.log, ("no snapshot for the standby", self.store.path), "no snapshot for the standby: %s",
                         exc)
            return None
        if not self.link.send({"t": "snapshot", "snapshot": snap}):
            return None
        self._sent(snap["last_seq"], epoch, sum(len(b) for b in snap.get("objects", {}).values()))
        self.log.info("standby catch-up: sent a snapshot at seq %d", snap["last_seq"])
        return snap["last_seq"]

    def _sent(self, upto, epoch, count):
        """Sent up to ``upto`` on ``epoch``: not re-sent while the standby may still be applying ``count``."""
        self._sent_upto, self._sent_epoch, self._sent_at = upto, epoch, time.monotonic()
        self._sent_window = self.resend_after + count * ACK_PER_CHANGE


def _same_write(pending: list[Change], changes: list[Change]) -> bool:
    """Whether ``changes`` are the pending write (its last change's position)."""
    return bool(changes) and (pending[-1].seq, pending[-1].ts) == (changes[-1].seq, changes[-1].ts)


# ---------------------------------------------------------------------------------------------- standby

class Applier:
    """Standby side. on_message handles "changes" and "snapshot" (see the module docstring): each is first
    checked with the rules of a REST write (controller.replicacheck): every object body through
    controller.model.normalise (with its id and source as the store keeps them), a put of an object the standby
    holds as an update (its immutable fields unchanged; not a snapshot's objects, which replace what it holds), the
    resulting policy through controller.policy.check. What
    passes goes into the store (store.apply_replicated / store.restore) and State, then {"t": "ack", "seq":
    last, "history": [seq, ts]}. What fails is logged and refused ({"t": "refused", "seq", "ts", "reason"}:
    the change that broke the rule, else the batch's first new change), and
    changes nothing. A gap, or a message the store cannot apply, makes it ask for catch-up: {"t":
    "resync", "seq": last_seq, "history": store.history()}. Other message types are ignored. Bodies pass
    through JSON on the way in, so State holds exactly what a restart would load from the store.

    Once started, on_message only queues "changes" and "snapshot" (in arrival order) for the applier's own
    thread, so the link's receiving thread goes on reading (heartbeats are heard while a batch of 10,000 is
    applied); checking ticks ``pacer`` once per change (the controller's pauses with ``hub.sleep(0)``). Before
    each message it asks ``accepting()`` (the pair: not active) and drops the message if not, in State's commit
    section, held until State took the message (``_handle``). Nothing but the
    applier changes the standby's store or policy meanwhile: the pair does not take over while ``busy``.
    Unstarted (tests, tools), on_message applies at once, on the caller's thread."""

    def __init__(self, store, state, link: PairLink, log=None):
        self.store = store
        self.state = state
        self.link = link
        self.log = log or logging.getLogger("canopy.ha")
        self.refused = 0  # replicated messages refused as invalid
        self.store_refusals = 0  # replicated batches our store could not take (a full or failing disk)
        self.pacer: Pacer = NEVER
        self.accepting = lambda: True
        self._last_resync = (None, 0.0)
        self.position: dict = {"seq": 0, "history": [0, None]}  # the store's position when hello() last looked
        # when our store's file was renewed, until the active's snapshot is in it (in the store: across a restart)
        self.renewed: float | None = store.get_meta(RENEWED_META)
        self.renewals = 0  # store files renewed (its file went while this node was the standby)
        self._queue: deque = deque()
        self._applying = False
        self._stopping = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the applier's thread
    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="canopy-ha-apply", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._thread = None

    @property
    def busy(self) -> bool:
        """A replicated message is queued or being applied."""
        return self._applying or bool(self._queue)

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait(POLL)
                if self._stopping:
                    return
                msg = self._queue.popleft()
                self._applying = True
            try:
                self._handle(msg)
            except Exception:  # never let a bug end the applier's thread
                self.log.exception("applying a replicated %r message failed", msg.get("t"))
            finally:
                self._applying = False

    def hello(self) -> dict:
        """This store's position: {"seq": last_seq, "history": [seq, ts]} (read from the store; remembered as
        ``position``)."""
        seq, ts = self.store.history()
        self.position = {"seq": seq, "history": [seq, ts]} if self.renewed is None else dict(RENEWED)
        return self.position

    def beat(self) -> dict:
        """The position hello() last read, for heartbeats built on the HA link's OS thread (which must not
        wait on the store's lock). ``_ack`` reads it afresh before every acknowledgement, so a heartbeat sent
        after an acknowledgement never reports an older position."""
        return self.position

    def on_message(self, msg: dict):
        if msg.get("t") not in ("changes", "snapshot"):
            return
        if self._thread is None:
            self._handle(msg)
            return
        with self._cond:
            self._queue.append(msg)
            self._cond.notify_all()

    def _handle(self, msg: dict):
        """One message in State's commit section (``State.committing``), from asking ``accepting()`` until State took
        it: a node that takes over meanwhile takes REST writes only after it, and they build on it. A write let in
        while the batch was still being read (its pauses) took the batch's first seq; the store skipped that change
        as held already and put the rest of the batch on top of the write (tests/unit/test_replication_standby.py)."""
        with self.state.committing(holder=_holding(msg)):
            if not self.accepting():
                self.log.info("dropped a replicated %r message: this node is no longer the standby", msg["t"])
            elif msg["t"] == "changes":
                self._apply_changes(msg)
            else:
                self._apply_snapshot(msg)

    def _decoded(self, wires: list) -> list[Change]:
        """The batch's changes as the store keeps them, ticking ``pacer`` per change: 5,000 vports' bodies
        round-tripped through JSON were one stretch of ~70 ms of CPU (docs/benchmarks.md, "Branch vrslag")."""
        changes = []
        for wire in wires:
            self.pacer.tick()
            changes.append(_json_clean(Change.from_wire(wire)))
        return changes

    def _apply_changes(self, msg):
        try:
            wires, meta = msg["changes"], msg.get("meta") or {}
            if not isinstance(wires, list) or not isinstance(meta, dict):
                raise StoreError("changes must be a list and meta a map")
            changes = self._decoded(wires)
        except (StoreError, KeyError, TypeError, ValueError, AttributeError) as exc:
            self._refuse(None, InvalidReplica(f"malformed changes: {exc}"))
            return
        if self._commit_changes(changes, meta):
            self._ack()

    def _commit_changes(self, changes, meta) -> bool:
        """Check the changes the store does not hold yet against State's policy, then commit them to the store and
        State; False when refused or the store could not take them (the active was told), or they do not follow the
        store's last change (a resync asked). The last two warnings are logged at most once per 10 s each
        (controller/loglimit.py): while the disk stays full the active sends its whole catch-up again every
        REFUSED_HOLDOFF or resync, and each batch after the first is a gap."""
        before = self.store.last_seq()
        new = [c for c in changes if c.seq > before]
        try:
            checked, policy = checked_changes(new, self.state.policy, self.pacer)
            check_meta(meta)
        except InvalidReplica as exc:  # named by the change that broke the rule, else the batch's first new one
            self._refuse(exc.change or (new[0] if new else None), exc)
            return False
        try:
            last = self.store.apply_replicated([c for c in changes if c.seq <= before] + checked, meta)
        except StoreFault as exc:  # our disk refused it: the active refuses the write rather than hold it alone
            self.store_refusals += 1  # the active sends it again every REFUSED_HOLDOFF while the disk stays full
            warn_limited(self.log, ("replicated changes refused by the store", self.store.path),
                         "could not store replicated changes (nothing applied): %s", exc)
            self._tell_refused(new[0] if new else None, f"{STORE_REFUSED}: {exc}")
            return False
        except (StoreError, TypeError, ValueError) as exc:  # a gap: each batch after one the disk refused, too
            warn_limited(self.log, ("replicated changes not applied", self.store.path),
                         "cannot apply replicated changes: %s; asking the active to resync", exc)
            self._resync()
            return False
        if checked:
            self.state.policy_committed(policy, [c for c in checked if c.seq <= last])
        return True

    def renew(self) -> bool:
        """The pair's tick while this node is the standby: a store whose file went (deleted, replaced, changed in
        place: docs/store.md) takes a new, empty file and asks the active for the whole store (a position on no
        history, RENEWED, until the snapshot is in), instead of refusing every replicated write (and so the active
        every write) until an operator restarts it; the active holds every write it took. True when renewed."""
        if not self.store.file_failed():
            return False
        with self.state.committing(holder="the store's file being renewed"):
            if not self.accepting():
                return False
            self.store.renew()
            self.renewed, self.renewals = self.store.get_meta(RENEWED_META), self.renewals + 1
        self.log.warning("the store %s went while this node was the standby: took a new file, asking the active for "
                         "the whole store (this node does not take over until it has it)", self.store.path)
        self._resync()
        return True

    def _apply_snapshot(self, msg):
        if self._restore(msg):
            self.renewed = None
            self.log.info("restored a snapshot of the active at seq %d", self.state.last_seq)
            self._ack()

    def _restore(self, msg) -> bool:
        try:
            snapshot = msg["snapshot"]
            checked_snapshot(snapshot)
            self.store.restore(snapshot)
        except InvalidReplica as exc:
            self._refuse(None, exc)
            return False
        except StoreFault as exc:  # our disk refused it: the active sends it again when its heartbeat says so (paced)
            self.store_refusals += 1
            warn_limited(self.log, ("replicated snapshot refused by the store", self.store.path),
                         "could not store the active's snapshot (nothing applied): %s", exc)
            return False
        except (StoreError, KeyError, TypeError, AttributeError) as exc:
            self.log.warning("cannot restore the active's snapshot: %s; asking the active to resync", exc)
            self._resync()
            return False
        self.state.last_seq = self.store.last_seq()  # may go down: a diverged history was replaced
        self.state.policy_committed(Policy(self.store.load_objects()), [])
        return True

    def _refuse(self, change: Change | None, exc):
        """Log and tell the active; ``change`` names the first refused change by (seq, ts), if known."""
        self.refused += 1
        self.log.warning("refused replicated data from the peer (nothing applied): %s", exc)
        self._tell_refused(change, str(exc))

    def _tell_refused(self, change: Change | None, reason: str):
        where = {"seq": change.seq, "ts": change.ts} if change is not None else {}
        self.link.send({"t": "refused", **where, "reason": reason[:500]})

    def _ack(self):
        self.link.send({"t": "ack", **self.hello()})

    def _resync(self):
        position = self.hello()
        seq, at = self._last_resync
        if seq == position["seq"] and time.monotonic() - at < RESYNC_HOLDOFF:
            return  # asked already; the heartbeats carry the position anyway
        self._last_resync = (position["seq"], time.monotonic())
        self.link.send({"t": "resync", **position})


def _holding(msg: dict) -> str:
    """What the applier is doing while it holds State's commit section, for a REST write refused meanwhile."""
    if msg.get("t") == "snapshot":
        return "replicated snapshot of the active being restored"
    changes = msg.get("changes")
    return f"replicated batch being applied ({len(changes) if isinstance(changes, list) else '?'} changes)"


def _json_clean(change: Change) -> Change:
    """The change with its body as JSON stores it (lists for tuples, string keys)."""
    if change.body is None:
        return change
    body = json.loads(json.dumps(change.body, sort_keys=True))
    return Change(change.kind, change.id, change.op, body, change.seq, change.txn, change.ts)
