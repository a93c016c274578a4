"""Keeps one switch's flows and groups equal to the desired state, hitlessly (DESIGN "How data flows").

One ``SwitchReconciler`` per connected datapath, owned by the Ryu app, which calls (see docs in each):

- on EventOFPStateChange MAIN: ``rec = SwitchReconciler(datapath); rec.start()``;
- whenever the compiler has a new desired state for that switch: ``rec.set_desired_owners(flows_by_owner,
  groups, changed)`` with the owners that changed since the last call (None: not known), or
  ``rec.set_desired(flows, groups)`` with all of them (any time, also before the read-back has finished);
- for every event in ``REPLY_EVENTS`` (MAIN_DISPATCHER): ``rec.handle(ev.msg)``;
- on EventOFPStateChange DEAD (of that same datapath object): ``rec.stop()``;
- REST: ``rec.status()``, ``rec.flows()``; operators: ``rec.resync()``.

Only a master (or equal) controller may change a switch: call ``set_desired`` on the active controller;
if the switch refuses a change because this controller is its slave, the reconciler waits (state
"not_master") until the next ``set_desired`` or ``resync()``, which the app calls when it becomes master.
An HA standby calls ``hold(True)``: the switch is read back (so the installed state is known) but nothing
is sent (state "standby"); ``hold(False)`` on takeover reads back again and sends only the difference.
A switch read back and given no desired state yet (the start-up hold, a bridge no OVSDB session names) is "waiting".
``request_role(role, generation)`` sends an OpenFlow role request and waits for the answer.

What it does, in one green thread per switch:

1. Read back what the switch holds: flows whose cookie carries Canopy's mark (flow stats over all
   tables with a cookie mask) and the groups in Canopy's range (group desc). Never a delete-all; until
   ``set_desired`` has been called nothing at all is sent, so a controller restart leaves traffic alone.
2. Diff desired against installed by ``Flow.key`` (table, priority, cookie) and send only the
   difference: after a read-back (or when the changed owners are not known) everything; otherwise only the
   owners that changed (openflow/installed.py keeps both records by owner, as references). The difference
   goes as one change set in this order: group adds and modifies, flow adds (downstream tables first),
   flow delete_stricts (read-back match, full cookie mask; upstream tables first), group deletes. An add with the match and priority of an installed flow replaces it in place, so a changed
   flow (a new cookie) is never missing, even without bundles.
3. OpenFlow 1.4: the change set is one atomic, ordered bundle; 1.3: the messages, then a barrier. The
   installed state changes only when the commit or barrier reply arrives.
4. OpenFlow errors are matched by xid to the message that caused them and logged with the flow's text.
   The rejected flow or group is marked (``flows()``, ``status()``) and left out; the rest applies (a
   failed atomic bundle is sent again without it). Rejected flows are retried when the desired groups
   change (a missing group is the usual cause) and on ``resync()``.

Groups: Canopy owns group ids ``0..0x1FFFFFFF`` (``CANOPY_GROUPS``): every id the compiler can give a
subnet (``compiler.group_ids``: 2*VNI and 2*VNI+1 for a 24-bit VNI) and the parts of a flood group too big for
one message (openflow/floods.py: ``n << 25 | id`` for n up to 15). Only groups in that range are read
back, modified or deleted as stale; groups above it are foreign and never touched, and a desired group
outside it is refused (it could never be cleaned up). The range is a constructor argument, should the
id scheme change. Groups read back are decoded (``decode.decode_group``) and compared with the desired
ones: only a group whose buckets differ, or cannot be decoded, is modified. Groups are added and modified
parts first, so that a group is on the switch before one that names it, and deleted the other way round
(``floods.send_rank``).

Pauses: planning, the read-back's diff, encoding and counting (``status``) call ``pacer.tick`` (a
controller/pacer.py ``Pacer``, one unit a flow or group, ``BUCKET_UNITS`` a bucket of a group read back, whose buckets
are parsed one at a time as they are decoded; the app's pauses with ``hub.sleep(0)``), so one switch's change of
10,000 owners or read-back of 100,000 flows or of a flood group of 1,000 buckets does not hold the event loop. A
change set is planned from the desired flows and groups as they were when it began (the compiler's immutable
frozensets and Flows), encoded whole, and only then written (one bundle, or one batch and its barrier, as before).
What may happen during its pauses, and what becomes of it:

- a newer desired state (``set_desired_owners``) for one of its owners (or an owner whose 20-bit hint collides with
  one of theirs: a flow of the same content is one key, ``FlowBook._outdates``), or new groups: the change set is
  dropped before a byte of it is written and its owners are planned again with the new ones (``FlowBook.unplan``), so
  no flow the compiler no longer wants is sent; a newer state of other owners only waits for the next change set (the
  one being planned is still right for its own: ``FlowBook._outdates``);
  after ``MAX_REPLANS`` drops in a row (a stream of changes, each arriving within a plan) it is sent as planned and
  the newer state follows in the next change set, so the switch is never starved; the installed record is what was
  planned and confirmed either way;
- ``hold``, ``resync`` or ``keep_stale(False)`` (a read-back is due, or a standby must not write), or a refusal as
  slave: dropped the same way, before anything is written;
- a change set of meter deletes: a newer desired state that names one of its meters again drops it (a port handed a
  freed ofport: openflow/meterdiff.py), at most ``MAX_REPLANS`` times in a row, counted apart from the flows';
- a retry of rejected flows (new groups): the plan left them out, and the installed record leaves them out too
  (``FlowBook.applied``), so the retry sends them;
- the switch disconnecting (``stop``): the thread is killed at its pause; nothing more is written;
- replies and errors (``handle``): answer the requests they name by xid; those of an earlier change set that timed
  out match nothing in flight and are logged as unmatched. The reconciler's own requests (read-back, change set) are
  never in flight while it plans or encodes.

``flows()`` and ``status()`` (the read side, ``openflow/reconciler_report.py``), run in other green threads, pause
the same way on copies of the records. Sending change sets and requests, and matching the switch's answers and
errors by xid (steps 3 and 4), is ``openflow/reconciler_send.py``.
"""

from __future__ import annotations

import functools
import itertools
import logging
import operator
import time

from controller import ofcheck
from controller.logs import Throttle
from controller.pacer import Pacer, collector_paused
from controller.ryu_compat import hub, ofp_event
from openflow import decode, encode, meters, ryumsg
from openflow.atonce import PLANS as _PLANS, READ_BACKS as _READ_BACKS, READ_BACKS_AT_ONCE, plan_slot  # noqa: F401
from openflow.changeset import ChangeSet
from openflow.floods import GROUP_RANGE, send_rank
from openflow.flows import Group
from openflow.installed import EMPTY, FlowBook, chunked, paced
from openflow.meterdiff import MeterSync
from openflow.reconciler_report import OPENFLOW_NAMES, SwitchReport
from openflow.reconciler_send import REPLY_RATE, REPLY_TIMEOUT, ChangeSender, Waiter  # noqa: F401  (as before)

CANOPY_GROUPS = GROUP_RANGE  # flood groups and their parts (openflow/floods.py)
_STATS_KEY = operator.attrgetter("table_id", "priority", "cookie")  # a flow read back as Flow.key names it
#: The replies the app must forward to ``SwitchReconciler.handle`` (a list, as set_ev_cls wants).
REPLY_EVENTS = [ofp_event.EventOFPFlowStatsReply, ofp_event.EventOFPGroupDescStatsReply,
                ofp_event.EventOFPMeterFeaturesStatsReply, ofp_event.EventOFPMeterConfigStatsReply,
                ofp_event.EventOFPBarrierReply, ofp_event.EventOFPBundleCtrlMsg, ofp_event.EventOFPErrorMsg,
                ofp_event.EventOFPRoleReply]
ROLE_TIMEOUT = 5.0  # seconds for a role request's answer
COUNTS_BEFORE_PLAN = 4  # counts of the desired meters a round makes at most before it plans (``_sync``)
COUNT_PART = 500  # owners whose meters are counted between two ticks (``_count_owners``: their flows looked at in C)
BUCKET_UNITS = 10  # pacer units of a group's bucket read back (parsed and decoded: ~2,000 bytecodes, ten flows' worth)
RETRY_DELAY = 5.0  # seconds before reading back again after the switch did not answer
MAX_REPLANS = 2  # change sets dropped in a row because a newer desired state came during their pauses (docstring)


def _ranked(items: list, reverse: bool = False) -> list:
    """Group changes in sending order: a group before the groups that name it (deletes: after them)."""
    if len(items) > 1:
        items.sort(key=lambda pair: send_rank(pair[0]), reverse=reverse)
    return items


class _DpidLog(logging.LoggerAdapter):
    def process(self, msg, kwargs):
        return f"dpid={self.extra['dpid']} {msg}", kwargs


class SwitchReconciler(ChangeSender, SwitchReport, MeterSync):
    """Desired versus installed flows and groups of one connected datapath (module docstring)."""

    def __init__(self, datapath, log=None, on_sync=None, groups_owned=CANOPY_GROUPS, pacer: Pacer | None = None,
                 meter_rates: dict | None = None):
        """``log``: a logger (default: canopy.reconciler with a dpid prefix); ``on_sync()`` is called (in
        the reconciler's thread) each time the switch has become equal to the desired state, minus
        rejected items; ``groups_owned``: the group ids that are Canopy's (supports ``in``); ``pacer``: pauses
        in planning, diffing and encoding (module docstring; default: none, only counted); ``meter_rates``: kind ->
        (packets per second, burst) of the meters the desired flows name (default: openflow/meters.py's)."""
        self.datapath = datapath
        self.pacer = pacer or Pacer()
        self.ofp = datapath.ofproto
        self.dpid = f"{datapath.id or 0:016x}"
        self._log = log or _DpidLog(logging.getLogger("canopy.reconciler"), {"dpid": self.dpid})
        self._on_sync = on_sync
        self._owned = groups_owned
        self._wire = encode.WireEncoder(self.ofp)
        self._bundles = self.ofp.OFP_VERSION >= 5
        self._bundle_ids = itertools.count(1)
        self._book = FlowBook()  # flows desired and installed, by owner
        self._planned = None  # the FlowPlan of the change set being sent
        self._desired_groups: dict = {}  # group id -> Group
        self._installed_groups: dict = {}  # group id -> Group sent or read back, None: buckets not decodable
        self._rejected_groups: dict = {}  # group id -> error text
        self._rejected_as: dict = {}  # group id -> the Group whose add or modify was rejected (``_retry_changed``)
        self._meter_rates = meters.rates_of(meter_rates)
        self._desired_meters: dict = {}  # meter id -> Meter: those the desired flows name (``_count_meters``)
        self._meter_users: dict = {}  # owner -> the meter ids its desired flows name (owners naming one)
        self._meter_refs: dict = {}  # meter id -> how many owners' flows name it
        self._meter_dirty: set | None = None  # owners whose meters are to be counted again (None: every owner)
        self._installed_meters: dict = {}  # meter id (Canopy's range) -> Meter read back or sent, None: not Canopy's shape
        self._rejected_meters: dict = {}  # meter id -> error text
        self._meter_todo: set | None = None  # meter ids that may differ (openflow/meterdiff.py), None: every one
        self._stale_meters: set = set()  # meter ids installed and no longer desired: deleted once no flow names them
        self._delete_seen: set = set()  # the owners changed that the meter deletes being made have looked at
        self._delete_drops = 0  # change sets of meter deletes dropped in a row (openflow/meterdiff.py)
        self.meter_support: bool | None = None  # None: not read yet; False: the flows go without their meters
        self.meter_note: str | None = None  # why the switch has no meters (status, logged once)
        self.packet_ins = dict.fromkeys(meters.KINDS, 0)  # packets sent to the controller, by meter kind
        self._waiters: dict = {}  # xid -> _Waiter
        self._inflight = (0, 0)  # (xid of message 0, messages) of the change set being sent: xid - first = index
        self._errors: dict = {}  # op index -> error text
        self._unmatched = Throttle(self._log, interval=10.0)
        self._wake = hub.Event()
        self._need_read = True
        self._not_master = False
        self._hold = False
        self._keep = False  # keep what Canopy would delete (keep_stale)
        self._kept_logged = 0
        self.role: str | None = None  # the OpenFlow role the switch last confirmed, None: never asked (equal)
        self.role_generation: int | None = None  # the generation id it was confirmed with
        self._thread = None
        self.state = "connected"
        # set once the switch was first in sync on this connection, or the reconciler stopped (tunnel probes wait
        # for it: openflow/tunnel_warm.py ProbeSender)
        self.first_sync = hub.Event()
        self.counters = dict.fromkeys(("flow_add", "flow_delete", "group_add", "group_modify", "group_delete",
                                       "meter_add", "meter_modify", "meter_delete",
                                       "change_sets", "errors", "unmatched_errors", "read_backs",
                                       "errors_received"), 0)
        self.last_change: dict = {}
        self.change_seconds = 0.0  # time spent sending and confirming change sets (metrics)
        self._plan_ms = 0.0  # the last change set's planning time (the debug line after it is confirmed)
        self._plan_version = 0  # FlowBook.version when the change set being planned or sent began
        self._replans = 0  # change sets dropped in a row because the desired state changed during their pauses
        self.dropped = 0  # change sets dropped unsent, ever (for tests and the debug log)
        self.given = 0  # desired states handed to it (set_desired_owners), counted
        self._synced_given = -1  # ``given`` when a round last found the switch equal to it (``settled``)

    # ------------------------------------------------------------------------------ the app's API

    def start(self) -> None:
        """Start the reconciler's green thread: read back, then keep the switch in sync."""
        self._thread = hub.spawn(self._run)

    def stop(self) -> None:
        """Stop the thread (the datapath is gone); pending waits end at once."""
        self.state = "stopped"
        self.first_sync.set()
        if self._thread is not None:
            hub.kill(self._thread)
            self._thread = None
        for waiter in self._waiters.values():
            waiter.event.set()

    @property
    def _rejected(self) -> dict:  # Flow.key -> error text
        return self._book.rejected

    def set_desired(self, flows, groups=()) -> None:
        """The complete desired state of this switch (empty removes every Canopy flow and group); only
        the difference to installed is sent. Call it only once the state for this switch is known."""
        by_owner: dict = {}
        for f in flows:
            by_owner.setdefault(f.owner, set()).add(f)
        self.set_desired_owners({o: frozenset(fs) for o, fs in by_owner.items()}, groups, None)

    def set_desired_owners(self, flows_by_owner, groups=(), changed=None) -> None:
        """The desired state as the compiler keeps it: owner -> frozenset of flows (references are kept, so
        the sets must not change), every group; ``changed``: the owners whose flows changed since the last
        call, the only ones planned (None: not known, everything is diffed)."""
        self.given += 1
        self._book.set_desired(flows_by_owner, changed)
        if changed is None or self._meter_dirty is None:  # counted in the reconciler's thread (``_count_meters``)
            self._meter_dirty = None
        else:
            self._meter_dirty |= self._may_name_meters(changed)
        desired_groups, foreign = {}, {}
        for g in groups:
            (desired_groups if g.group_id in self._owned else foreign)[g.group_id] = g
        for gid in foreign.keys() - self._rejected_groups.keys():
            self._log.error("refusing %s: id outside Canopy's range", self._describe_group(foreign[gid]))
        if desired_groups != self._desired_groups:
            self._book.retry_rejected()  # flows may have been waiting for a group: retry them
            self._book.outdate()
        self._desired_groups = desired_groups
        self._rejected_groups = {**{k: v for k, v in self._rejected_groups.items() if k in desired_groups},
                                 **dict.fromkeys(foreign, "group id outside Canopy's range")}
        self._wake.set()

    def _may_name_meters(self, changed) -> set:
        """Of the changed owners, those whose meters may have changed: those with desired flows now, and those that
        named a meter when last counted (an owner changed again before its count is in ``_meter_dirty`` already). The
        others, a vport gone with its port and its flows that had no ofport and so no meter (evpn_routes' withdraw:
        10,000 of them), have nothing to count. Two set intersections in C, each as long as its smaller side, not a
        look at every changed owner in the count (~80 bytecodes each: stop 45, docs/benchmarks.md "wd46")."""
        return (self._book.desired.keys() & changed) | (self._meter_users.keys() & changed)

    def _count_meters(self) -> None:
        """The desired meters: those the desired flows name (openflow/meters.py), counted per owner so that a change
        looks only at the changed owners' flows (owners of the kinds that punt: meters.KIND_OF_OWNER); in the
        reconciler's thread, pausing (``pacer``: a switch's 16,000 flows counted from scratch are ~10-60 ms of CPU)."""
        refs, changed, self._meter_dirty = self._meter_refs, self._meter_dirty, set()
        if changed is None:
            self._meter_users.clear()
            refs.clear()
            self._desired_meters.clear()
            self._meter_todo = None  # counted from scratch: every meter diffed
            self._want_meter(meters.CONTROLLER, True)  # the switch's cap on every punt, named by no flow
        try:  # the book's dict changes in the pauses: its owners listed first
            self._count_owners(list(self._book.desired) if changed is None else changed)
        except BaseException:  # stopped meanwhile: counted again from scratch, whatever was left
            self._meter_dirty = None
            raise

    def _count_owners(self, owners) -> None:
        """The meters of ``owners`` counted again: those of the kinds that punt (meters.KIND_OF_OWNER, picked in C),
        ``COUNT_PART`` at a time, their flows' meters found in C (``meters.named_by``); Python only per owner that
        names a meter now or did at the last count."""
        owners = meters.punting(list(owners))
        for start in range(0, len(owners), COUNT_PART):
            part = owners[start:start + COUNT_PART]
            desired = self._book.desired  # as it is now (a full set_desired replaces the dict)
            flowsets = list(map(desired.get, part, itertools.repeat(EMPTY)))
            named = meters.named_by(part, flowsets)
            for owner in named.keys() | (self._meter_users.keys() & part):
                self._recount(owner, frozenset(named.get(owner, EMPTY)))
            self.pacer.tick(sum(map(len, flowsets)))

    def _recount(self, owner, now: frozenset) -> None:
        """``owner``'s flows name the meters ``now``: the owners naming each meter counted, a meter wanted or not."""
        users, refs = self._meter_users, self._meter_refs
        before = users.pop(owner, EMPTY)
        if now:
            users[owner] = now
        for mid in before - now:
            refs[mid] -= 1
            if not refs[mid]:
                del refs[mid]
                self._want_meter(mid, False)
        for mid in now - before:
            refs[mid] = refs.get(mid, 0) + 1
            if refs[mid] == 1:
                self._want_meter(mid, True)

    def packet_out(self, actions, frame: bytes) -> None:
        """Send one packet (e.g. a DHCP reply) through ``actions``: this reconciler is the switch's only
        sender, so replies and flow changes leave through one place."""
        self.datapath.send_msg(ryumsg.packet_out(self.datapath, actions, frame))

    def hold(self, on: bool) -> None:
        """Standby: keep reading, send nothing (``on``); takeover: read back again and sync (``not on``)."""
        if on == self._hold:
            return
        self._hold = on
        if not on:
            self._not_master = False
            self._need_read = True
        self._wake.set()

    def keep_stale(self, on: bool) -> None:
        """``on``: add what is missing but delete nothing (the controller's store is new and empty, so flows
        it does not know may be a tenant's: docs/store.md); ``not on``: read back again and sync fully."""
        if on == self._keep:
            return
        self._keep = on
        if not on:
            self._need_read = True
        self._wake.set()

    def request_role(self, role: str, generation: int) -> tuple[bool, str | None]:
        """Ask the switch for ``role`` (master, slave, equal) with ``generation``; (confirmed, error text).
        Blocks the calling green thread until the answer (at most ROLE_TIMEOUT)."""
        waiter, answered = self._asked(ryumsg.role_request(self.datapath, role, generation), ROLE_TIMEOUT)
        if waiter.error or not answered or not waiter.replies:
            return False, waiter.error or "no answer"
        reply = waiter.replies[0]
        self.role, self.role_generation = ryumsg.role_name(self.ofp, reply.role), generation
        if role == "master":
            self._not_master = False
        return self.role == role, None

    def resync(self) -> None:
        """Read everything back again, retry rejected items, and send the difference."""
        self._need_read = True
        self._wake.set()

    def handle(self, msg) -> bool:
        """A reply or error from this switch (REPLY_EVENTS); True if it answered one of our requests."""
        if msg.datapath is not self.datapath:
            return False
        if msg.msg_type == self.ofp.OFPT_ERROR:
            return self._on_error(msg)
        waiter = self._waiters.get(msg.xid)
        if waiter is None:
            return False
        if msg.msg_type == self.ofp.OFPT_MULTIPART_REPLY:
            if ofcheck.lost_part(self.datapath, msg.xid):  # an earlier part was dropped: the read is not whole
                waiter.error = "a part of the reply was refused or could not be parsed (logged): read again"
                waiter.event.set()
                return True
            waiter.replies.extend(msg.body)
            if msg.flags & self.ofp.OFPMPF_REPLY_MORE:
                return True
        else:
            waiter.replies.append(msg)
        waiter.event.set()
        return True

    # ------------------------------------------------------------------------------ the thread

    def _run(self) -> None:
        """The switch's green thread: a bug in one round (say, a flow that cannot be encoded) is logged,
        and the switch is read back and tried again after a pause instead of being abandoned."""
        while True:
            try:
                self._round()
            except Exception:
                self.counters["errors"] += 1
                self.state = "error"
                self._log.exception("reconciling failed; reading the switch back in %.0f s", RETRY_DELAY)
                self._need_read = True
                hub.sleep(RETRY_DELAY)

    @property
    def settled(self) -> bool:
        """In sync with every desired state handed to it so far (minus rejected items): a round found nothing to send
        after the last ``set_desired_owners`` (its state stays in_sync while the next round plans)."""
        return self.state == "in_sync" and self._synced_given == self.given

    def _round(self) -> None:
        while True:
            self._wake.clear()
            given = self.given
            if self._not_master:
                self._wake.wait()  # until set_desired or resync
                self._not_master = False
                continue
            if self._need_read and not self._read_back():
                self._wake.wait(RETRY_DELAY)
                continue
            if self._hold:
                self.state = "standby"
                self._wake.wait()  # until hold(False)
                continue
            if self._book.desired is None:
                self.state = "waiting"  # read back; nothing handed to it yet (module docstring)
            elif self._sync():
                continue
            else:
                self._in_sync(given)
            self._wake.wait()

    def _in_sync(self, given: int) -> None:
        """A round found nothing to send: the switch holds the desired state as handed up to ``given``."""
        self._synced_given = given
        if self.state != "in_sync":
            self.state = "in_sync"
            self.first_sync.set()
            self._notify_sync()

    def _interrupted(self) -> bool:
        """Whether the change set being planned or encoded must not be written (module docstring, "Pauses")."""
        if self._hold or self._need_read or self._not_master or self.state == "stopped":
            return True
        if self._deleting_meters:  # (openflow/meterdiff.py)
            return self._delete_drops < MAX_REPLANS and self._deletes_outdated()
        return self._plan_version != self._book.version and self._replans < MAX_REPLANS

    def _drop(self) -> None:
        """Drop the change set unsent: its owners are planned again (FlowBook.unplan)."""
        if self._planned is not None:
            self._book.unplan(self._planned)
            self._planned = None
        if not (self._hold or self._need_read or self._not_master):
            if self._deleting_meters:
                self._delete_drops += 1
            else:
                self._replans += 1
        self.dropped += 1

    def _notify_sync(self) -> None:
        if self._on_sync is None:
            return
        try:
            self._on_sync()
        except Exception:  # the caller's bug must not stop the reconciler
            self._log.exception("on_sync callback failed")

    def _read_back(self) -> bool:
        """Replace installed with what the switch holds (a few switches at a time: openflow/atonce.py); False if
        it did not answer."""
        self.state = "reading"
        with _READ_BACKS:
            flows = self._request(ryumsg.canopy_flow_stats_request(self.datapath))
            groups = self._request(ryumsg.group_desc_request(self.datapath)) if flows is not None else None
            got = self._read_meters() if groups is not None else None
        if flows is None or groups is None or got is None:
            return False
        with _PLANS:
            self._take_in(flows, groups)
        return True

    def _take_in(self, flows: list, groups: list) -> None:
        """Make what the switch answered the book's installed flows and groups."""
        installed: dict = {}
        for part in chunked(flows, self.pacer.tick):  # keyed in C (controller/flowstats.py: fields read in C too)
            installed.update(zip(map(_STATS_KEY, part), part))
        if len(installed) < len(flows):
            self._warn_shared_keys(flows)
        self._book.read_back(installed)
        bucket = functools.partial(self.pacer.tick, BUCKET_UNITS)  # (a group's buckets parsed and decoded one at a
        # time: controller/groupdesc.py)
        undecoded: dict = {}  # group id -> why it cannot be decoded (modified to the desired one: ``_plan_ops``)
        self._installed_groups = {g.group_id: decode.decode_group(self.ofp, g, bucket, undecoded.__setitem__)
                                  for g in paced(groups, self.pacer.tick) if g.group_id in self._owned}
        if undecoded:
            gid, why = next(iter(undecoded.items()))
            self._log.warning("read back %d Canopy group(s) it cannot decode, each to be written again as desired (or "
                              "deleted): group %d %s", len(undecoded), gid, why)
        self._rejected_groups = {k: v for k, v in self._rejected_groups.items() if k not in self._owned}
        self._rejected_as.clear()
        self._need_read = False
        self.counters["read_backs"] += 1
        self._log.info("read back %d Canopy flows, %d Canopy groups and %d Canopy meters (OpenFlow %s)",
                       len(installed), len(self._installed_groups), len(self._installed_meters),
                       OPENFLOW_NAMES.get(self.ofp.OFP_VERSION, "?"))

    def _warn_shared_keys(self, flows: list) -> None:
        """Each entry read back after another with its table, priority and cookie (the last one is kept). Paced: each
        is described (its match and instructions parsed), and a switch may answer thousands of them."""
        seen = set()
        for stats in paced(flows, self.pacer.tick):
            key = _STATS_KEY(stats)
            if key in seen:
                self._log.warning("two installed flows share table, priority and cookie: %s",
                                  decode.describe_stats(self.ofp, stats))
            seen.add(key)

    # ------------------------------------------------------------------------------ planning

    def _sync(self) -> bool:
        """Plan, encode and send one change set (``_execute``); False if there was nothing to send. The cyclic
        collector stays paused until the plan's objects are freed (the switch's answer to a commit comes in
        milliseconds; REPLY_TIMEOUT at most): re-enabled with them alive, its first collection walked every one of
        them in one stretch (60,000 changes: ~50-100 ms of CPU, tests/benchmarks/reconcile_stretches.py)."""
        if self._book.desired is not None:
            if not self._meters_counted():
                return True  # still changing: counted again, in the next round
            # a meter before the flows that name it: in a change set of its own, first; then the flows, in this round
            # (a round of its own each time was a round without flows for as long as new meters kept coming), unless
            # it was dropped unsent (a groups-only change during its pauses: no owner to count, the flows would go)
            dropped = self.dropped
            if self._send_meters() and (self._need_read or self._not_master or self.dropped != dropped):
                return True
        with collector_paused():
            with plan_slot(self._book.dirty):  # a small plan needs none (openflow/atonce.py)
                # a change while this waited for its slot may name a meter the switch does not hold yet: sent here,
                # before the plan copies the desired state (not a round again: the slot lost at a cold start)
                if self._book.desired is not None and self._meter_dirty != set() and not self._meters_ready():
                    return True
                planning = time.perf_counter()  # not counting the wait for a slot: the plan's own time
                ops = self._plan_ops()
            if ops and self._interrupted():  # came during the plan's pauses
                self._drop()
            elif ops:
                self._plan_ms = (time.perf_counter() - planning) * 1000
                self._execute(ops)
            sent, ops = bool(ops), None  # freed while the collector is paused
        if self._book.desired is None:
            return sent
        # a meter no longer desired goes after the round's flows, unless a flow may still name it on the switch or
        # be about to (a meter's delete deletes the flows naming it): openflow/meterdiff.py
        return self._send_meter_deletes() or sent or self._meter_dirty != set()

    def _meters_counted(self) -> bool:
        """Count the desired meters again if a change came (``_count_meters``); a change during a count's pauses is
        counted too, at most COUNTS_BEFORE_PLAN counts; False if the last one still left a change uncounted."""
        for _ in range(COUNTS_BEFORE_PLAN):
            if self._meter_dirty is not None and not self._meter_dirty:
                return True
            self._count_meters()
        return self._meter_dirty == set()

    def _meters_ready(self) -> bool:
        """Count the changes that came and send their meters' adds and modifies until a count finds nothing to send
        and no change came while it looked (its pauses: a port handed out then would be planned before its meter), at
        most COUNTS_BEFORE_PLAN times; False if there still was."""
        for _ in range(COUNTS_BEFORE_PLAN):
            if not self._meters_counted():
                return False
            if not self._send_meters() and self._meter_dirty == set():
                return True
        return False

    def _plan(self) -> ChangeSet:
        """The ordered change set that makes installed equal to desired (minus rejected items): every flow
        after a read-back, else only the owners that changed (FlowBook.plan). It pauses (``pacer``), and a full
        plan allocates a few tuples per flow: the cyclic collector is paused meanwhile (controller/pacer.py)."""
        with collector_paused():
            return self._plan_ops()

    def _plan_ops(self) -> ChangeSet:
        self._retry_changed(self._desired_groups)
        # the groups as desired now, with the flows: set_desired_owners replaces these dicts, never changes them
        groups, have, refused = self._desired_groups, self._installed_groups, self._rejected_groups
        self._plan_version = self._book.version
        plan = self._planned = self._book.plan(self._keep, self.pacer.tick)
        if self._keep:
            self._log_kept(self._book.kept_count(plan))
            have = {gid: g for gid, g in have.items() if gid in groups}
        if not (plan.adds or plan.deletes):  # no flow to send: the owners are installed as planned already
            self._book.applied(plan, self.pacer.tick)  # a switch read back whole: every owner (16,000 flows) pauses
            self._planned = None
        return ChangeSet({
            "group_add": _ranked([(gid, g) for gid, g in groups.items() if gid not in have and gid not in refused]),
            "group_modify": _ranked([(gid, g) for gid, g in groups.items()
                                     if gid in have and have[gid] != g and gid not in refused]),
            "flow_add": plan.adds, "flow_delete": plan.deletes,
            "group_delete": _ranked([(gid, Group(gid, ())) for gid in have if gid not in groups and gid not in refused],
                                    reverse=True)})

    def _retry_changed(self, groups: dict) -> None:
        """Forget the rejection of a group's add or modify once the desired group differs from the one rejected (a
        flood group back under OpenFlow's 64 KiB, docs/limits.md): it is sent again, once per change; one that
        stays the same stays left out (until a read-back), not sent again every round."""
        for gid, rejected in list(self._rejected_as.items()):
            if groups.get(gid) != rejected:
                del self._rejected_as[gid]
                self._rejected_groups.pop(gid, None)

    def _log_kept(self, count: int) -> None:
        if count and count != self._kept_logged:
            self._kept_logged = count
            self._log.warning("keeping %d flow(s) Canopy would delete: this controller's store is new and empty "
                              "(restore one, or make any policy change to let Canopy remove them: docs/store.md)",
                              count)
