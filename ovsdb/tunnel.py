"""Each VRS's VXLAN tunnel port, provisioned over OVSDB: desired state, diff, and a small reconciler.

Every VRS needs one VXLAN port on its integration bridge whose endpoints are chosen per flow (the
OpenFlow pipeline sets ``tun_dst``/``tun_id``)::

    Port + Interface  vxlan0            (name configurable)
      type            vxlan
      options         remote_ip=flow, key=flow[, local_ip=<VTEP IP>]   (local_ip when known)
      external_ids    canopy-owned=true (on both rows)

Three layers, in the order data flows (docs/DESIGN.md):

- ``desired_tunnel`` (pure): a ``VrsSnapshot`` -> the ``TunnelSpec`` it needs, or None.
- ``plan_tunnel`` (pure): spec + replicated rows -> the one ``TunnelChange`` to make, or None.
  Canopy only ever modifies an interface carrying ``canopy-owned=true``. A same-named foreign
  interface that already matches exactly is adopted (the key is added); one that differs, or a
  name clash of another shape, is a CONFLICT: reported, never written.
- ``TunnelReconciler``: driven by the VRS session loop (ovsdb/server.py). At most one transaction
  in flight; failures retry with bounded exponential back-off; conflicts are logged once.

Rows are the ``ovs`` IDL's (through ovsdb/idl.py) or any stand-ins with the same attributes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from controller.discovery import VrsSnapshot

DEFAULT_NAME = "vxlan0"
TUNNEL_TYPE = "vxlan"
OWNER_KEY = "canopy-owned"
OWNER_VALUE = "true"
BACKOFF_BASE_S = 0.5  # delay before the second attempt at an unsettled change
BACKOFF_MAX_S = 30.0

# TunnelChange.kind
CREATE, UPDATE, ADOPT, CONFLICT = "create", "update", "adopt", "conflict"


@dataclass(frozen=True)
class TunnelSpec:
    """The tunnel port a VRS should have on ``bridge``."""

    name: str
    bridge: str
    options: tuple[tuple[str, str], ...]  # sorted (key, value) pairs
    type: str = TUNNEL_TYPE

    def options_map(self) -> dict[str, str]:
        return dict(self.options)


@dataclass(frozen=True)
class TunnelChange:
    """One change to bring a VRS's tunnel port to ``spec``; rows are the replica's, for the writer."""

    kind: str  # CREATE | UPDATE | ADOPT | CONFLICT
    spec: TunnelSpec
    reason: str = ""  # what differs (UPDATE) or why Canopy keeps its hands off (CONFLICT)
    bridge: object = field(default=None, compare=False, repr=False)
    port: object = field(default=None, compare=False, repr=False)
    interface: object = field(default=None, compare=False, repr=False)


def desired_tunnel(snap: VrsSnapshot | None, vtep_ip: str | None,
                   name: str = DEFAULT_NAME) -> TunnelSpec | None:
    """The tunnel port ``snap``'s VRS needs, or None while its integration bridge is missing."""
    if snap is None or not snap.bridge_present:
        return None
    options = {"remote_ip": "flow", "key": "flow"}
    if vtep_ip:
        options["local_ip"] = vtep_ip
    return TunnelSpec(name=name, bridge=snap.bridge, options=tuple(sorted(options.items())))


def _map(row, column: str) -> dict:
    return dict(getattr(row, column, None) or {})


def _owned(row) -> bool:
    return _map(row, "external_ids").get(OWNER_KEY) == OWNER_VALUE


def _differences(spec: TunnelSpec, iface) -> list[str]:
    """What about ``iface`` differs from ``spec`` (type, options), as readable phrases."""
    found = []
    if (getattr(iface, "type", "") or "") != spec.type:
        found.append("type %r" % getattr(iface, "type", ""))
    options = _map(iface, "options")
    if options != spec.options_map():
        found.append("options {%s}" % ", ".join("%s=%s" % kv for kv in sorted(options.items())))
    return found


def _holder(name: str, ports: Iterable):
    """(port, interface) for the port named ``name`` or holding an interface named ``name``."""
    for port in ports:
        ifaces = list(getattr(port, "interfaces", None) or [])
        named = next((i for i in ifaces if i.name == name), None)
        if port.name == name or named is not None:
            return port, named
    return None, None


def _shape_conflict(spec: TunnelSpec, bridge, port, iface) -> str | None:
    """Why an existing port/interface named like the tunnel cannot be the tunnel, or None."""
    if iface is None:
        return "port %s exists without an interface of that name" % spec.name
    if port.name != spec.name:
        return "interface %s belongs to port %s" % (spec.name, port.name)
    if len(port.interfaces) != 1:
        return "port %s has %d interfaces" % (spec.name, len(port.interfaces))
    if spec.name not in {p.name for p in getattr(bridge, "ports", None) or []}:
        return "port %s is not on bridge %s" % (spec.name, spec.bridge)
    return None


def plan_tunnel(spec: TunnelSpec | None, bridge, ports: Iterable) -> TunnelChange | None:
    """The change that makes the replica hold ``spec``, or None when nothing is to be done.

    ``bridge``: the integration bridge row (None: nothing to attach to); ``ports``: every Port
    row of the database (so a name clash on another bridge is seen too).
    """
    if spec is None or bridge is None:
        return None
    port, iface = _holder(spec.name, ports)
    if port is None:
        return TunnelChange(CREATE, spec, bridge=bridge)
    clash = _shape_conflict(spec, bridge, port, iface)
    if clash is not None:
        return TunnelChange(CONFLICT, spec, clash)
    differences = _differences(spec, iface)
    rows = {"bridge": bridge, "port": port, "interface": iface}
    if _owned(iface):
        return TunnelChange(UPDATE, spec, "was " + " and ".join(differences), **rows) if differences else None
    if not differences:
        return TunnelChange(ADOPT, spec, **rows)
    return TunnelChange(CONFLICT, spec, "a port %s not owned by Canopy (no external_ids:%s=%s) has %s"
                        % (spec.name, OWNER_KEY, OWNER_VALUE, " and ".join(differences)))


def apply_change(change: TunnelChange, writer) -> None:
    """Write ``change`` through ``writer`` (an ``ovsdb.idl.RowWriter``). CONFLICT is never written."""
    spec, owner = change.spec, {OWNER_KEY: OWNER_VALUE}
    if change.kind == CREATE:
        iface = writer.insert("Interface", name=spec.name, type=spec.type, options=spec.options_map(),
                              external_ids=owner)
        port = writer.insert("Port", name=spec.name, interfaces=[iface], external_ids=owner)
        writer.add_to_set(change.bridge, "ports", port)
    elif change.kind == UPDATE:
        # Verified: if someone changes the row meanwhile (or takes ownership away), try again.
        for column in ("external_ids", "type", "options"):
            writer.verify(change.interface, column)
        writer.set(change.interface, "type", spec.type)
        writer.set(change.interface, "options", spec.options_map())
    elif change.kind == ADOPT:
        for column in ("type", "options"):
            writer.verify(change.interface, column)
        writer.set_key(change.interface, "external_ids", OWNER_KEY, OWNER_VALUE)
        writer.set_key(change.port, "external_ids", OWNER_KEY, OWNER_VALUE)
    else:
        raise ValueError("cannot apply a %s" % change.kind)


def backoff_delay(attempts: int) -> float:
    """Seconds to wait before attempt number ``attempts + 1`` of a change that has not settled."""
    if attempts <= 0:
        return 0.0
    return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** (attempts - 1))


def _find(rows: Iterable, name: str):
    return next((row for row in rows if row.name == name), None)


class TunnelReconciler:
    """Keeps one VRS's tunnel port as desired; call ``step`` from the session loop after ``run()``.

    ``replica``: an ``ovsdb.idl.Replica`` (``rows``, ``change_seqno``, ``transact``). It re-plans
    when the replica changes, and has at most one transaction in flight. A change that has not
    settled (its transaction failed, or succeeded but the replica still differs) is retried no
    sooner than ``backoff_delay(attempts)`` later; reaching the desired state resets the count.
    """

    def __init__(self, replica, peer: str, name: str = DEFAULT_NAME,
                 log: logging.Logger | None = None, clock: Callable[[], float] = time.monotonic):
        self._replica = replica
        self._peer = peer
        self.name = name
        self._log = log or logging.getLogger(__name__)
        self._clock = clock
        self.transactions = 0  # transactions this reconciler started
        self.state = "waiting"  # waiting | in-sync | pending | backoff | conflict
        self.last_error = ""
        self._pending = None  # ovsdb.idl.PendingTransaction
        self._change: TunnelChange | None = None
        self._attempts = 0  # transactions since the replica last matched the desired state
        self._not_before = 0.0  # no transaction starts before this clock time
        self._planned_seqno = None  # replica.change_seqno at the last plan
        self._replan = True  # plan again even if the replica did not change
        self._conflict = ""  # the conflict last logged

    def describe(self) -> dict:
        """JSON-ready summary for sessions()."""
        return {"name": self.name, "state": self.state, "transactions": self.transactions,
                "last_error": self.last_error or None}

    def wake_in_ms(self) -> int | None:
        """How soon ``step`` has work even if the peer stays silent (a back-off ending), or None."""
        if self._pending is not None or not self._replan:
            return None
        return max(0, int((self._not_before - self._clock()) * 1000))

    def step(self, snap: VrsSnapshot | None) -> None:
        """Finish the transaction in flight, or plan and (back-off permitting) start the next one."""
        if self._pending is not None and not self._finish_pending():
            return
        seqno = self._replica.change_seqno
        if not self._replan and seqno == self._planned_seqno:
            return
        self._replan, self._planned_seqno = False, seqno
        try:
            self._reconcile(snap)
        except Exception:  # a bug or an unexpected schema must not end discovery for this VRS
            self._log.exception("ovsdb %s: tunnel %s: unexpected error", self._peer, self.name)
            self._fail("reconciling", "internal error")

    def _reconcile(self, snap: VrsSnapshot | None) -> None:
        spec = desired_tunnel(snap, snap.vtep_ip if snap else None, self.name)
        bridge = _find(self._replica.rows("Bridge"), spec.bridge) if spec else None
        change = plan_tunnel(spec, bridge, self._replica.rows("Port"))
        if change is None:
            self._settled("in-sync" if spec else "waiting")
        elif change.kind == CONFLICT:
            self._report_conflict(change.reason)
        elif self._clock() < self._not_before:
            self._replan, self.state = True, "backoff"  # wake_in_ms brings us back
        else:
            self._start(change)

    def _settled(self, state: str) -> None:
        if self._conflict:
            self._log.info("ovsdb %s: tunnel %s: conflict resolved", self._peer, self.name)
        self.state, self._conflict = state, ""
        self._attempts, self._not_before = 0, 0.0

    def _report_conflict(self, reason: str) -> None:
        """Log a conflict once (again only if it changes); nothing is written while it lasts."""
        if reason != self._conflict:
            self._log.error("ovsdb %s: tunnel %s: %s; leaving it alone", self._peer, self.name, reason)
        self.state, self._conflict = "conflict", reason
        self._attempts, self._not_before = 0, 0.0

    def _start(self, change: TunnelChange) -> None:
        self.transactions += 1
        self._attempts += 1
        self._change, self._conflict = change, ""
        what = change.kind + (" (%s)" % change.reason if change.reason else "")
        self._log.info("ovsdb %s: tunnel %s: %s, transaction %d", self._peer, self.name, what,
                       self.transactions)
        if change.kind == ADOPT:
            self._log.info("ovsdb %s: tunnel %s: adopting the existing port, which matches exactly "
                           "(adding external_ids:%s=%s)", self._peer, self.name, OWNER_KEY, OWNER_VALUE)
        comment = "canopy: tunnel %s: %s" % (self.name, change.kind)
        self._pending = self._replica.transact(lambda writer: apply_change(change, writer), comment)
        self.state = "pending"

    def _finish_pending(self) -> bool:
        """True once the transaction in flight has an outcome, which is handled here."""
        result = self._pending.poll()
        if result is None:
            return False
        self._pending = None
        if result.ok:
            self._log.info("ovsdb %s: tunnel %s: %s committed", self._peer, self.name, self._change.kind)
            self.last_error, self._replan = "", True
            # If the replica still differs once the update is in, the next attempt waits.
            self._not_before = self._clock() + backoff_delay(self._attempts)
        else:
            error = result.status + (": " + result.detail if result.detail else "")
            self._fail("%s transaction" % self._change.kind, error, result.transient)
        return True

    def _fail(self, what: str, error: str, transient: bool = False) -> None:
        """Log the failure of ``what`` with the peer; the next attempt waits for the back-off."""
        delay = backoff_delay(max(1, self._attempts))
        self.last_error, self.state, self._replan = error, "backoff", True
        self._not_before = self._clock() + delay
        self._log.log(logging.WARNING if transient else logging.ERROR,
                      "ovsdb %s: tunnel %s: %s failed (%s); retrying in %.1fs",
                      self._peer, self.name, what, error, delay)
