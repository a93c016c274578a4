"""Programming a hardware VTEP: a ``VtepPlan`` (ovsdb/vtep.py) written in one transaction, and the
reconciler that keeps one VTEP's database as desired.

- ``replica_rows``: the replica's rows as the ``VtepRows`` the planner reads.
- ``apply_plan``: writes a plan through an ``ovsdb.idl.RowWriter``. Existing logical switches and
  locators are referenced, never duplicated; a locator or switch a plan needs twice is inserted once.
  Every read-modify-write is verified, so a concurrent change makes the transaction TRY_AGAIN.
- ``VtepReconciler``: driven by the session loop (ovsdb/peersession.py) like ``ovsdb.tunnel.TunnelReconciler``:
  it re-plans when the replica or the desired state changes, has at most one transaction in flight,
  retries with bounded exponential back-off, and logs each conflict once (and its resolution).

Every transaction carries the comment "canopy: vtep <switch>: <summary>" (``ovsdb-tool show-log``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from controller.discovery import VtepDesired
from ovsdb.rowchanges import row_key
from ovsdb.rowsync import OneInFlight
from ovsdb.vtep import (
    ENCAPSULATION,
    canopy_vni,
    REPLICATION_MODE,
    UNKNOWN_DST,
    VtepPlan,
    VtepRows,
    ls_name,
    pick_switch,
    plan_ucast_keys,
    plan_vtep,
    ucast_key,
)

COMMENT = "canopy: vtep"

# VtepReconciler.state
WAITING, IN_SYNC, PENDING, BACKOFF, CONFLICT = "waiting", "in-sync", "pending", "backoff", "conflict"


def replica_rows(replica, macs: bool = True) -> VtepRows:
    """The rows of an ``ovsdb.idl.Replica`` of a hardware_vtep database, for ``plan_vtep``; without
    ``macs``, none of the (per endpoint) Ucast/Mcast_Macs_Local and Ucast_Macs_Remote rows."""
    def table(name):
        return tuple(replica.rows(name))

    return VtepRows(
        switch=pick_switch(replica.rows("Physical_Switch")),
        logical_switches=table("Logical_Switch"),
        ports=table("Physical_Port"),
        ucast_local=table("Ucast_Macs_Local") if macs else (),
        mcast_local=table("Mcast_Macs_Local") if macs else (),
        ucast_remote=table("Ucast_Macs_Remote") if macs else (),
        mcast_remote=table("Mcast_Macs_Remote"),
        locators=table("Physical_Locator"),
        replication_mode=replica.has_column("Logical_Switch", "replication_mode"),
    )


class RemoteMacs:
    """Canopy's Ucast_Macs_Remote rows by (VNI, lowercase MAC), kept from row changes, and the desired
    (ip, locator) by the same key, kept from the difference between two desired states: what the
    reconciler needs to plan only the remote MACs a change reaches."""

    def __init__(self, rows, desired: VtepDesired):
        self._rows: dict[tuple, dict] = {}  # key -> {row_key: row}
        self._key_of: dict = {}  # row_key -> key
        for row in rows:
            self.row_changed(row_key(row), row)
        self.desired = desired
        self._desired_set = set(desired.remote_macs)
        self._want: dict[tuple, dict] = {}  # key -> {(ip, locator): None}, every desired value of it
        self._vnis: dict[int, int] = {}  # VNI -> how many keys of it are desired
        self._add_wanted(desired.remote_macs)

    def vnis(self) -> set[int]:
        """The VNIs of the desired remote MACs."""
        return set(self._vnis)

    def rows_of(self, key) -> list:
        return list(self._rows.get(key, {}).values())

    def want(self) -> dict:
        """key -> (ip or None, locator): the first in sorted order, as plan_vtep picks it."""
        return _WantView(self._want)

    def row_changed(self, uuid, row) -> set:
        """The Ucast_Macs_Remote row whose ``row_key`` is ``uuid`` is now ``row`` (None: deleted); returns the keys it
        touched."""
        touched = set()
        old = self._key_of.pop(uuid, None)
        if old is not None:
            touched.add(old)
            rows = self._rows.get(old, {})
            rows.pop(uuid, None)
            if not rows:
                self._rows.pop(old, None)
        key = ucast_key(row) if row is not None else None
        if key is not None:
            self._key_of[uuid] = key
            self._rows.setdefault(key, {})[uuid] = row
            touched.add(key)
        return touched

    def desire(self, desired: VtepDesired) -> set:
        """Move to ``desired``; returns the keys whose desired value may have changed."""
        old, new = self.desired.remote_macs, desired.remote_macs
        self.desired = desired
        if old is new or old == new:
            return set()
        now = set(new)  # one pass over the desired MACs, in C (derive hands over whole desired states)
        gone, came = self._desired_set - now, now - self._desired_set
        self._desired_set = now
        for vni, mac, ip, locator in gone:
            values = self._want.get((vni, mac.lower()), {})
            values.pop((ip or None, locator), None)
            if not values and self._want.pop((vni, mac.lower()), None) is not None:
                self._vnis[vni] -= 1
                if not self._vnis[vni]:
                    del self._vnis[vni]
        self._add_wanted(came)
        return {(vni, mac.lower()) for vni, mac, _, _ in gone | came}

    def _add_wanted(self, macs) -> None:
        for vni, mac, ip, locator in macs:
            key = (vni, mac.lower())
            if key not in self._want:
                self._want[key] = {}
                self._vnis[vni] = self._vnis.get(vni, 0) + 1
            self._want[key][(ip or None, locator)] = None


class _WantView:
    """``RemoteMacs.want()``: a read-only mapping key -> the value plan_vtep would pick."""

    def __init__(self, values: dict):
        self._values = values

    def get(self, key, default=None):
        values = self._values.get(key)
        if not values:
            return default
        return min(values, key=lambda v: (v[0] is not None, v[0] or "", v[1]))


class _Refs:
    """The rows one transaction references: existing ones reused, missing ones inserted once."""

    def __init__(self, plan: VtepPlan, writer, replication_mode: bool):
        self._writer = writer
        self._replication_mode = replication_mode
        self._switches = dict(plan.ls_rows)
        self._locators = dict(plan.locator_rows)
        self._verified: set[str] = set()

    def switch(self, vni: int):
        """Canopy's logical switch for ``vni``, created if the database has none."""
        if vni not in self._switches:
            columns = {"name": ls_name(vni), "tunnel_key": vni, "description": "Canopy VNI %d" % vni}
            if self._replication_mode:
                columns["replication_mode"] = REPLICATION_MODE
            self._switches[vni] = self._writer.insert("Logical_Switch", **columns)
        return self._switches[vni]

    def locator(self, ip: str):
        """The vxlan_over_ipv4 locator for ``ip``: the existing one (verified still there) or a new one."""
        if ip not in self._locators:
            self._locators[ip] = self._writer.insert("Physical_Locator", encapsulation_type=ENCAPSULATION,
                                                     dst_ip=ip)
            self._verified.add(ip)
        elif ip not in self._verified:
            self._writer.verify(self._locators[ip], "dst_ip")  # garbage collected meanwhile: try again
            self._verified.add(ip)
        return self._locators[ip]


def apply_plan(plan: VtepPlan, writer, replication_mode: bool = True) -> None:
    """Write ``plan`` through ``writer`` (an ``ovsdb.idl.RowWriter``) as one transaction body.

    ``replication_mode``: whether the peer's Logical_Switch has that column (older schemas do not).
    """
    refs = _Refs(plan, writer, replication_mode)
    for vni in plan.ls_create:
        refs.switch(vni)
    for ls, vni in plan.ls_update:
        _update_switch(writer, ls, vni, replication_mode)
    for port, vlan in plan.unbind:
        writer.verify(port, "vlan_bindings")
        writer.del_key(port, "vlan_bindings", vlan)
    for port, vlan, vni in plan.bind:
        writer.verify(port, "vlan_bindings")
        writer.set_key(port, "vlan_bindings", vlan, refs.switch(vni))
    _write_ucast(plan, writer, refs)
    _write_flood(plan, writer, refs)
    for ls in plan.ls_delete:
        writer.verify(ls, "name")
        writer.delete(ls)


def _update_switch(writer, ls, vni: int, replication_mode: bool) -> None:
    writer.verify(ls, "name")
    writer.set(ls, "tunnel_key", vni)
    if replication_mode:
        writer.set(ls, "replication_mode", REPLICATION_MODE)


def _write_ucast(plan: VtepPlan, writer, refs: _Refs) -> None:
    for row in plan.ucast_delete:
        writer.delete(row)
    for row, ip, locator in plan.ucast_update:
        for column in ("ipaddr", "locator"):
            writer.verify(row, column)
        writer.set(row, "ipaddr", ip or "")
        writer.set(row, "locator", refs.locator(locator))
    for vni, mac, ip, locator in plan.ucast_add:
        writer.insert("Ucast_Macs_Remote", MAC=mac, logical_switch=refs.switch(vni),
                      locator=refs.locator(locator), ipaddr=ip or "")


def _write_flood(plan: VtepPlan, writer, refs: _Refs) -> None:
    for row in plan.flood_delete:
        writer.delete(row)
    for vni, ips, row in plan.flood_set:
        # A locator set cannot change: a different flood list is a new set (the old one is collected).
        locator_set = writer.insert("Physical_Locator_Set", locators=[refs.locator(ip) for ip in ips])
        if row is None:
            writer.insert("Mcast_Macs_Remote", MAC=UNKNOWN_DST, logical_switch=refs.switch(vni),
                          locator_set=locator_set, ipaddr="")
        else:
            writer.verify(row, "locator_set")
            writer.set(row, "locator_set", locator_set)


class VtepReconciler(OneInFlight):
    """Keeps one hardware VTEP's database as desired; call ``step`` from the session loop after ``run()``.

    ``replica``: an ``ovsdb.idl.Replica`` (``rows``, ``has_column``, ``change_seqno``, ``transact``).
    Nothing is planned until the database names its physical switch and the controller has given a desired
    state (None is "not known yet", never "empty"). A plan that has not settled (its
    transaction failed, or succeeded but the replica still differs) is retried no sooner than
    ``ovsdb.rowsync.backoff_delay(attempts)`` later; a new desired state is written at once unless the last
    transaction failed; reaching the desired state resets the count.
    """

    def __init__(self, replica, peer: str, log: logging.Logger | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self._replica = replica
        self._peer = peer
        self._log = log or logging.getLogger(__name__)
        self._clock = clock
        self.switch: str | None = None  # the physical switch being programmed
        self.transactions = 0
        self.state = WAITING
        self.last_error = ""
        self.conflicts: tuple[str, ...] = ()
        self.waiting: tuple[str, ...] = ()
        self._pending = None  # ovsdb.idl.PendingTransaction
        self._summary = ""
        self._started_with: object = None  # the desired state of the last transaction started
        self._attempts = 0
        self._not_before = 0.0
        self._planned = None  # (change_seqno, switch, desired) at the last plan
        self._replan = True
        # Delta planning of remote MACs (only once ``note`` has been given the replica's row changes):
        self._tracking = False
        self._macs: RemoteMacs | None = None  # from the last converged plan; None: plan in full next
        self._touched: set = set()  # keys whose rows changed since the last plan
        self._carry: set = set()  # keys of the last plan that wrote something: look again until converged
        self.delta_plans = 0  # plans of the remote MACs a change reached (the others were full)

    def describe(self) -> dict:
        """JSON-ready summary for sessions()."""
        return {"switch": self.switch, "state": self.state, "transactions": self.transactions,
                "last_error": self.last_error or None, "conflicts": list(self.conflicts),
                "waiting": list(self.waiting)}

    def settled(self, desired: VtepDesired | None) -> bool:
        """The VTEP holds ``desired`` (the controller's current desired state): the last plan was made for it and
        found nothing to write (controller/programmed.py)."""
        return self.state == IN_SYNC and self._planned is not None and self._planned[2] is desired

    def note(self, changes) -> None:
        """The rows the replica reports changed (``ovsdb.rowchanges.RowChanges``; None: unknown), so that the next
        plan covers only the remote MACs they and the desired state's changes reach."""
        self._tracking = True
        if changes is None or changes.table("Logical_Switch"):
            self._macs = None  # which switches are Canopy's, so which rows: plan in full
            return
        if self._macs is not None:
            for uuid, change in changes.table("Ucast_Macs_Remote").items():
                self._touched |= self._macs.row_changed(uuid, None if change.deleted else change.row)

    def step(self, switch: str | None, desired: VtepDesired | None) -> None:
        """Finish the transaction in flight, or plan and (back-off permitting) start the next one."""
        if self._pending is not None and not self._finish_pending():
            return
        key = (self._replica.change_seqno, switch, desired)
        if not self._replan and key == self._planned:
            return
        self._replan, self._planned, self.switch = False, key, switch
        if switch is None or desired is None:  # no desired state yet is not "nothing": leave the VTEP alone
            self.state = WAITING
            return
        try:
            self._reconcile(desired)
        except Exception:  # a bug or an unexpected schema must not end discovery for this VTEP
            self._log.exception("ovsdb %s: vtep %s: unexpected error", self._peer, switch)
            self._fail("reconciling", "internal error")

    def _reconcile(self, desired: VtepDesired | None) -> None:
        plan, rows = self._delta_plan(desired) if self._macs is not None else (None, None)
        if plan is None:
            rows = replica_rows(self._replica)
            plan = plan_vtep(desired, rows)
            self._macs = None
            if self._tracking and plan.empty and not plan.conflicts:  # converged: the base of delta plans
                self._macs = RemoteMacs(rows.ucast_remote, desired)
                self._touched, self._carry = set(), set()
        self._note(plan)
        if plan.empty:
            self.state = CONFLICT if plan.conflicts else WAITING if plan.waiting else IN_SYNC
            self._attempts, self._not_before = 0, 0.0
            return
        fresh = desired != self._started_with and not self.last_error
        if not fresh and self._clock() < self._not_before:
            self._replan, self.state = True, BACKOFF  # wake_in_ms brings us back
            return
        if fresh:
            self._attempts = 0
        self._start(plan, desired, rows.replication_mode)

    def _delta_plan(self, desired: VtepDesired):
        """(plan, rows) from the last converged state, or (None, None) when a full plan is needed (a logical
        switch of Canopy's is to go: its remaining references are counted over every row)."""
        rows = replica_rows(self._replica, macs=False)
        ours = {canopy_vni(ls.name) for ls in rows.logical_switches} - {None}
        macs = self._macs
        keys = macs.desire(desired) | self._touched | self._carry
        wanted = set(desired.logical_switches) | {vni for _, _, vni in desired.bindings} | \
            {vni for vni, _ in desired.flood} | macs.vnis()
        if not ours <= wanted:
            return None, None
        plan = plan_vtep(desired, rows, ucast=lambda wanted, p: plan_ucast_keys(
            keys, macs.want(), wanted, macs.rows_of, p), wanted=wanted)
        self.delta_plans += 1
        self._touched, self._carry = set(), (set(keys) if not plan.empty else set())
        return plan, rows

    def _note(self, plan: VtepPlan) -> None:
        """Log conflicts and waits when they appear (once) and conflicts when they are resolved."""
        for conflict in plan.conflicts:
            if conflict not in self.conflicts:
                self._log.error("ovsdb %s: vtep %s: %s; leaving it alone", self._peer, self.switch, conflict)
        for conflict in self.conflicts:
            if conflict not in plan.conflicts:
                self._log.info("ovsdb %s: vtep %s: resolved: %s", self._peer, self.switch, conflict)
        for wait in plan.waiting:
            if wait not in self.waiting:
                self._log.info("ovsdb %s: vtep %s: waiting: %s", self._peer, self.switch, wait)
        self.conflicts, self.waiting = tuple(plan.conflicts), tuple(plan.waiting)

    def _start(self, plan: VtepPlan, desired: VtepDesired | None, replication_mode: bool) -> None:
        self.transactions += 1
        self._attempts += 1
        self._started_with, self._summary = desired, plan.summary()
        self._log.info("ovsdb %s: vtep %s: %s, transaction %d", self._peer, self.switch, self._summary,
                       self.transactions)
        comment = "%s %s: %s" % (COMMENT, self.switch, self._summary)
        self._pending = self._replica.transact(lambda writer: apply_plan(plan, writer, replication_mode),
                                               comment)
        self.state = PENDING

    def _name(self) -> str:
        return "vtep %s" % self.switch

    def _committed(self) -> str:
        return "committed (%s)" % self._summary

    def _transaction(self) -> str:
        return "transaction (%s)" % self._summary

    def _failed(self, what: str, error: str) -> None:
        self._macs = None  # what was written is not known: the next plan is a full one
