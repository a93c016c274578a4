"""Each VRS's integration bridge kept fail-secure over OVSDB: the pure plan, and its reconciler.

What Canopy keeps on the integration bridge (``br-int`` unless configured)::

    Bridge  fail_mode   secure
            protocols   OpenFlow13 and OpenFlow14 added to whatever the operator listed
                        (when the column is empty, i.e. OVS's defaults, it becomes exactly these two)

Why: with ``fail_mode`` unset or ``standalone``, ovs-vswitchd fails open once no controller has
answered for three inactivity probes (15 s by default): it flushes the flow table and forwards like a
learning switch, so VMs of different tenants with the same addresses reach each other, and every
reconnect starts from an empty table. In ``secure`` mode the flows stay and keep forwarding while the
controller is away. OpenFlow 1.3 is Canopy's floor and 1.4 gives it native bundles and role-status.

- ``plan_bridge`` (pure): the bridge row -> the ``BridgeChange`` that makes it safe, or None.
- ``apply_bridge``: writes it (fail_mode set, each missing protocol added by a server-side mutation,
  so a protocol the operator adds meanwhile is kept).
- ``BridgeReconciler``: the session loop's driver (ovsdb/peersession.py), on ``ovsdb.rowsync``: restores
  the settings whenever someone changes them, retries failed writes with back-off. The session loop
  calls it only while this node may write (the HA active, or a standalone controller).

Whether a bridge is safe is also visible without this module: ``VrsSnapshot.bridge_problems`` (REST
``/v1/switches``, field ``bridge_safety``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from controller.discovery import REQUIRED_PROTOCOLS, SECURE_FAIL_MODE, VrsSnapshot, bridge_problems
from ovsdb.rowsync import CONFLICT, RowReconciler
from ovsdb.vrs import bridge_fail_mode, bridge_protocols

SECURE = "secure"  # BridgeChange.kind


@dataclass(frozen=True)
class BridgeChange:
    """Make ``bridge`` safe: set fail_mode secure and add ``add_protocols``."""

    kind: str  # SECURE | CONFLICT
    reason: str  # what is unsafe now
    add_protocols: tuple[str, ...] = ()
    bridge: object = field(default=None, compare=False, repr=False)


def plan_bridge(bridge, writable: bool = True) -> BridgeChange | None:
    """The change that makes ``bridge`` (a Bridge row) safe, or None when it is (or absent).

    ``writable``: the peer's schema has both columns; if not, the change is a CONFLICT (never written).
    """
    if bridge is None:
        return None
    protocols = bridge_protocols(bridge)
    problems = bridge_problems(bridge_fail_mode(bridge), protocols)
    if not problems:
        return None
    if not writable:
        return BridgeChange(CONFLICT, "; ".join(problems) + "; the peer's schema lacks Bridge fail_mode or "
                            "protocols, so Canopy cannot fix it")
    missing = tuple(p for p in REQUIRED_PROTOCOLS if p not in protocols)
    return BridgeChange(SECURE, "; ".join(problems), missing, bridge)


def apply_bridge(change: BridgeChange, writer) -> None:
    """Write ``change`` through ``writer`` (an ``ovsdb.idl.RowWriter``). CONFLICT is never written."""
    if change.kind != SECURE:
        raise ValueError("cannot apply a %s" % change.kind)
    writer.set(change.bridge, "fail_mode", SECURE_FAIL_MODE)
    for protocol in change.add_protocols:
        writer.add_to_set(change.bridge, "protocols", protocol)


class BridgeReconciler(RowReconciler):
    """Keeps one VRS's integration bridge safe; call ``step(snapshot)`` from the session loop."""

    def __init__(self, replica, peer: str, bridge: str, log: logging.Logger | None = None,
                 clock: Callable[[], float] = time.monotonic):
        super().__init__(replica, peer, "bridge %s" % bridge, log, clock)
        self.bridge = bridge

    def describe(self) -> dict:
        """JSON-ready summary for sessions()."""
        return {"name": self.bridge, **super().describe()}

    def _plan(self, snap: VrsSnapshot | None):
        if snap is None or not snap.bridge_present:
            return None, "waiting"
        row = next((b for b in self._replica.rows("Bridge") if b.name == self.bridge), None)
        has_column = getattr(self._replica, "has_column", lambda table, column: True)
        writable = has_column("Bridge", "fail_mode") and has_column("Bridge", "protocols")
        return plan_bridge(row, writable), "in-sync" if row is not None else "waiting"

    def _apply(self, change: BridgeChange, writer) -> None:
        apply_bridge(change, writer)

    def _failed(self, what: str, error: str) -> None:
        self._log.error("ovsdb %s: bridge %s is NOT fail-secure yet: Canopy could not write it (%s); a "
                        "controller outage would flush its flows and mix tenants", self._peer, self.bridge, error)
