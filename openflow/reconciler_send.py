"""The switch reconciler's side that talks to the switch: change sets sent and confirmed, requests and their answers,
the switch's errors matched to the message that caused them by xid (openflow/reconciler.py, "What it does", steps 3
and 4, and "Pauses").

``ChangeSender`` is a part of ``openflow.reconciler.SwitchReconciler`` (which inherits it), as ``SwitchReport`` is its
read side: it works on the reconciler's datapath, waiters and records, and asks it whether a change set is still
wanted (``_interrupted``, ``_drop``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from controller.ryu_compat import hub
from openflow import decode, encode, meters, ryumsg
from openflow.changeset import MAX_XID, ChangeSet, Op, encode_all
from openflow.flows import Flow, Group, render_flow, render_group
from openflow.installed import release

REPLY_TIMEOUT = 30.0  # seconds for a read-back or a change set, plus 1 s per REPLY_RATE messages
REPLY_RATE = 5000
LOGGED_TEXT = 1000  # characters of a flow's or group's text in an error line (a flood group of 10,000 ports: ~400 KB)
LOGGED_BUCKETS = 16  # of a group's buckets rendered in an error line (10,000 rendered: ~12 ms of CPU, each rejection)


def brief(text: str, limit: int = LOGGED_TEXT) -> str:
    """``text`` as an error line carries it: its first ``limit`` characters, and how many there were."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


@dataclass
class Waiter:
    """A request whose answer (a reply, the pieces of a multipart reply, or an error) is awaited."""

    event: object = field(default_factory=hub.Event)
    replies: list = field(default_factory=list)
    error: str | None = None


@dataclass
class Outcome:
    """What became of a change set sent once."""

    answered: bool  # the barrier/commit reply (or its error) arrived in time
    applied: bool  # the change set took effect (minus the rejected messages)
    errors: dict  # op index -> error text


class ChangeSender:
    """Sending change sets and requests to one switch, and matching its answers (module docstring)."""

    # ------------------------------------------------------------------------------ requests

    def _asked(self, msg, timeout: float) -> tuple[Waiter, bool]:
        """Send ``msg`` (a request) and wait for its answer, at most ``timeout``: (its waiter: replies or error,
        whether it answered). Blocks the calling green thread."""
        waiter = self._waiters[self._xid(msg)] = Waiter()
        try:
            self.datapath.send_msg(msg)
            answered = waiter.event.wait(timeout)
        finally:
            self._waiters.pop(msg.xid, None)
        return waiter, answered

    def _request(self, msg):
        """Send a request and return its (multipart) replies' entries, or None on error or timeout (a refused meter
        request, a switch without meters (openflow/meters.py): features, no entry; configuration, False)."""
        waiter, answered = self._asked(msg, REPLY_TIMEOUT)
        if answered and waiter.error and self.state != "stopped":
            parser = self.datapath.ofproto_parser
            if isinstance(msg, parser.OFPMeterFeaturesStatsRequest):
                return []  # a switch without meters may refuse to say: that is its answer
            if isinstance(msg, parser.OFPMeterConfigStatsRequest):
                return False  # nor list them: one without (reconciler._read_meters)
        if not answered or waiter.error or self.state == "stopped":
            self._log.error("%s failed: %s", type(msg).__name__, waiter.error or "no answer")
            return None
        return waiter.replies

    # ------------------------------------------------------------------------------ sending

    def _execute(self, changes: ChangeSet) -> None:
        """Send one change set until it has applied, leaving out what the switch rejects; dropped unsent if
        something came during its encoding's pauses that makes it out of date (module docstring, "Pauses")."""
        self.state = "syncing"
        started = time.monotonic()
        sent = len(changes)
        while changes:
            # Open vSwitch takes no meter-mod in a bundle: meters go in change sets of their own (reconciler._sync),
            # as messages and a barrier
            bundle = self._bundles and not changes.has_meters()
            outcome = self._transact(changes, bundle)
            if outcome is None:
                self._drop()
                return
            if self._deleting_meters:  # (openflow/meterdiff.py: bounded apart, never a flow change set's count)
                self._delete_drops = 0
            else:
                self._replans = 0
            if self._not_master:
                self._log.warning("the switch refuses changes from a controller that is not its master: "
                                  "waiting for set_desired or resync")
                self.state, self._need_read = "not_master", True
                return
            for index, text in outcome.errors.items():
                self._reject(changes.op(index), text)
            if outcome.applied:
                self._apply_groups(changes, outcome.errors)
                if self._planned is not None:
                    self._book.applied(self._planned, self.pacer.tick)
                    release(self._planned.deletes, self.pacer.tick)
                    self._planned = None
                break
            if not outcome.answered or not bundle:
                self._log.error("change set of %d messages not confirmed: reading back again", len(changes))
                self._need_read = True
                return
            if not outcome.errors:
                self._log.error("bundle failed without naming a message: using barriers from now on")
                self._bundles = False
            changes = changes.without(outcome.errors)
            sent += len(changes)
        self.counters["change_sets"] += 1
        self.change_seconds += time.monotonic() - started
        self.last_change = {"messages": sent, "seconds": round(time.monotonic() - started, 3)}
        self._log.debug("change set of %d messages planned in %.1f ms, confirmed by the switch %.1f ms after "
                        "sending began", sent, self._plan_ms, (time.monotonic() - started) * 1000)

    def _transact(self, changes: ChangeSet, bundle: bool) -> Outcome | None:
        """Encode ``changes`` (pausing), then send them as one bundle or followed by a barrier and wait for the
        commit/barrier reply; None, with nothing sent, if the change set became out of date before or while encoded."""
        dp = self.datapath
        bundle_id = next(self._bundle_ids) if bundle else None
        first_xid = self._next_xids(len(changes))
        encoded = encode_all(self._wire, changes, first_xid, bundle_id, self.pacer.tick, self._interrupted)
        if encoded is None or self._interrupted():  # out of date before its encoding began (its slot) or meanwhile
            return None
        self._errors = encoded.errors  # the switch's errors join those of encoding (_on_error)
        head = b""
        if bundle:  # its reply is not awaited: a failed open makes the commit fail too
            opening = ryumsg.bundle_ctrl(dp, bundle_id, "OPEN")
            self._waiters[self._xid(opening)] = Waiter()
            head = self._serialize(opening)
        final = ryumsg.bundle_ctrl(dp, bundle_id, "COMMIT") if bundle else dp.ofproto_parser.OFPBarrierRequest(dp)
        waiter = self._waiters[self._xid(final)] = Waiter()
        self._inflight = (first_xid, len(changes))
        for kind, count in encoded.sent.items():
            self.counters[kind] += count
        self._write(head, encoded.chunks, self._serialize(final))
        try:
            answered = waiter.event.wait(REPLY_TIMEOUT + len(changes) / REPLY_RATE) and self.state != "stopped"
        finally:
            self._waiters.pop(final.xid, None)
            if bundle:
                self._waiters.pop(opening.xid, None)
            self._inflight = (0, 0)
        return Outcome(answered, answered and waiter.error is None, self._errors)

    def _write(self, head: bytes, chunks: list, tail: bytes) -> None:
        """The change set's pieces (whole messages each: openflow/changeset.py), ``head`` before the first and
        ``tail`` after the last, one write each; other green threads run (and may write) between two."""
        pieces = list(chunks) or [b""]
        pieces[0] = head + pieces[0]
        pieces[-1] += tail
        for piece in pieces:
            self.datapath.send(piece)
            hub.sleep(0)

    def _apply_groups(self, changes: ChangeSet, errors: dict) -> None:
        """Record the groups and meters the switch has confirmed (flows: FlowBook.applied, once per change set)."""
        for start, kind, items in changes.segments():
            if kind.startswith("flow"):
                continue
            meter = kind.startswith("meter")
            installed = self._installed_meters if meter else self._installed_groups
            for index, (gid, group) in enumerate(items, start):
                if index in errors:
                    continue
                if kind.endswith("_delete"):
                    installed.pop(gid, None)
                else:
                    installed[gid] = group
                if meter:
                    self._meter_changed(gid)  # diffed again (openflow/meterdiff.py)

    def _reject(self, op: Op, text: str) -> None:
        self.counters["errors"] += 1
        if op.kind.startswith("flow"):
            self._rejected[op.key] = text
            what = render_flow(op.item) if isinstance(op.item, Flow) else decode.describe_stats(self.ofp, op.item)
            what = brief(what)
        elif op.kind.startswith("meter"):
            self._rejected_meters[op.key] = text
            self._meter_changed(op.key)
            what = meters.render_meter(op.item)
            # its flows must not wait for it: they go without meters (the controller meter is named by no flow)
            if op.kind != "meter_delete" and self.meter_support and op.key != meters.CONTROLLER:
                self._set_meter_support(False, f"the switch refused meter {op.key:#x} ({brief(text)}): packets to "
                                               "the controller are not metered (docs/vrs.md)")
                self._log.warning("%s", self.meter_note)
        else:
            self._rejected_groups[op.key] = text
            if op.kind != "group_delete":
                self._rejected_as[op.key] = op.item
            what = self._describe_group(op.item)
        self._log.error("switch rejected %s of %s: %s", op.kind.replace("_", " "), what, brief(text))

    def _describe_group(self, group) -> str:
        """A group as an error line names it: its id, buckets and group-mod bytes, then its text (``brief``)."""
        try:
            size = f"{16 + sum(len(self._wire.bucket(b)) for b in group.buckets):,} bytes"
        except encode.BAD_VALUE:
            size = "a bucket not encodable"
        text = render_group(Group(group.group_id, group.buckets[:LOGGED_BUCKETS]))
        if len(group.buckets) > LOGGED_BUCKETS:
            text += f",... ({len(group.buckets) - LOGGED_BUCKETS:,} more buckets)"
        return f"group {group.group_id} ({len(group.buckets):,} buckets, {size}): {brief(text)}"

    def _on_error(self, msg) -> bool:
        self.counters["errors_received"] += 1
        text = self._error_text(msg)
        if (msg.type, msg.code) == (self.ofp.OFPET_BAD_REQUEST, self.ofp.OFPBRC_IS_SLAVE):
            self._not_master = True
        first, count = self._inflight
        index = ((msg.xid or 0) - first) & MAX_XID
        if index < count:
            self._errors.setdefault(index, text)
            return True
        waiter = self._waiters.get(msg.xid)
        if waiter is None:
            self._unmatched_error(msg, text)
            return False
        waiter.error = text
        waiter.event.set()
        return True

    def _unmatched_error(self, msg, text: str) -> None:
        """An error that no request of ours awaits (a packet-out, an answer after its timeout, another
        controller's message): logged (rate-limited per kind) with the message it refers to."""
        self.counters["unmatched_errors"] += 1
        refers = decode.echoed_message(self.ofp, msg.type, getattr(msg, "data", b""))
        self._unmatched.warning((msg.type, msg.code, refers.split(" ", 1)[0]),
                                "switch sent error %s (xid %d) that matches no request in flight; it refers to %s",
                                text, msg.xid or 0, refers)

    def _error_text(self, msg) -> str:
        ofp = self.ofp
        try:
            return f"{ofp.ofp_error_type_to_str(msg.type)} {ofp.ofp_error_code_to_str(msg.type, msg.code)}"
        except (KeyError, AttributeError):
            return f"error type {msg.type} code {msg.code}"

    # ------------------------------------------------------------------------------ xids and bytes

    def _next_xid(self) -> int:
        """The datapath's next xid (the same counter Ryu's send_msg uses)."""
        return self._next_xids(1)

    def _next_xids(self, count: int) -> int:
        """The first of the datapath's next ``count`` xids (taken now: other senders go on after them)."""
        dp = self.datapath
        first = (dp.xid + 1) & MAX_XID
        dp.xid = (dp.xid + count) & MAX_XID
        return first

    def _xid(self, msg) -> int:
        msg.set_xid(self._next_xid())
        return msg.xid

    def _serialize(self, msg) -> bytes:
        if msg.xid is None:
            self._xid(msg)
        msg.serialize()
        return bytes(msg.buf)

