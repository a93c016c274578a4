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
- ``TunnelReconciler``: driven by the VRS session loop (ovsdb/peersession.py), on the machinery of
  ``ovsdb.rowsync.RowReconciler``: at most one transaction in flight; failures retry with bounded
  exponential back-off; conflicts are logged once.

Rows are the ``ovs`` IDL's (through ovsdb/idl/) or any stand-ins with the same attributes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from controller.discovery import VrsSnapshot
from ovsdb.rowsync import CONFLICT, BACKOFF_MAX_S, RowReconciler, backoff_delay  # noqa: F401 (re-exported)

DEFAULT_NAME = "vxlan0"
NAMED_TABLES = ("Port", "Interface")  # the replica indexes these by name (ovsdb.idl.Replica.named)
TUNNEL_TYPE = "vxlan"
OWNER_KEY = "canopy-owned"
OWNER_VALUE = "true"

# TunnelChange.kind
CREATE, UPDATE, ADOPT = "create", "update", "adopt"


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


def _shape_conflict(spec: TunnelSpec, bridge, port, iface, on_bridge) -> str | None:
    """Why an existing port/interface named like the tunnel cannot be the tunnel, or None."""
    if iface is None:
        return "port %s exists without an interface of that name" % spec.name
    if port.name != spec.name:
        return "interface %s belongs to port %s" % (spec.name, port.name)
    if len(port.interfaces) != 1:
        return "port %s has %d interfaces" % (spec.name, len(port.interfaces))
    if not on_bridge(port):
        return "port %s is not on bridge %s" % (spec.name, spec.bridge)
    return None


def _on(bridge):
    """Whether a Port row is on ``bridge``, by reading the bridge's ports (the pure planner's default)."""
    names = {p.name for p in getattr(bridge, "ports", None) or []}
    return lambda port: port.name in names


def plan_tunnel(spec: TunnelSpec | None, bridge, ports: Iterable, on_bridge=None) -> TunnelChange | None:
    """The change that makes the replica hold ``spec``, or None when nothing is to be done.

    ``bridge``: the integration bridge row (None: nothing to attach to); ``ports``: every Port
    row of the database that may hold the tunnel (so a name clash on another bridge is seen too): the
    ones named like it and the one holding an interface named like it are enough. ``on_bridge(port)``:
    whether a port is on ``bridge`` (default: read ``bridge.ports``).
    """
    if spec is None or bridge is None:
        return None
    port, iface = _holder(spec.name, ports)
    if port is None:
        return TunnelChange(CREATE, spec, bridge=bridge)
    clash = _shape_conflict(spec, bridge, port, iface, on_bridge or _on(bridge))
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


def _find(rows: Iterable, name: str):
    return next((row for row in rows if row.name == name), None)


class TunnelReconciler(RowReconciler):
    """Keeps one VRS's tunnel port as desired; call ``step`` from the session loop after ``run()``.

    The machinery (one transaction in flight, bounded back-off, conflicts logged once) is
    ``ovsdb.rowsync.RowReconciler``'s; this class plans and writes the tunnel port.
    """

    def __init__(self, replica, peer: str, name: str = DEFAULT_NAME,
                 log: logging.Logger | None = None, clock: Callable[[], float] = time.monotonic, on_bridge=None):
        super().__init__(replica, peer, "tunnel %s" % name, log, clock)
        self.name = name
        self._on_bridge = on_bridge  # Port row -> on the integration bridge? (None: read the bridge's ports)

    def describe(self) -> dict:
        """JSON-ready summary for sessions()."""
        return {"name": self.name, **super().describe()}

    def _plan(self, snap: VrsSnapshot | None):
        spec = desired_tunnel(snap, snap.vtep_ip if snap else None, self.name)
        bridge = _find(self._replica.rows("Bridge"), spec.bridge) if spec else None
        if bridge is None:
            return None, "in-sync" if spec else "waiting"
        return plan_tunnel(spec, bridge, self._candidates(), self._on_bridge), "in-sync"

    def _candidates(self) -> list:
        """The Port rows that may hold the tunnel: named like it, or holding an interface named like it.
        By name through the replica's index (``Replica.named``); every Port row only when an interface
        of that name sits in a port of another name (a conflict), or the replica has no index."""
        named = getattr(self._replica, "named", None)
        if named is None:
            return self._replica.rows("Port")
        ports = named("Port", self.name)
        ifaces = named("Interface", self.name)
        if ifaces and not any(i in (getattr(p, "interfaces", None) or []) for p in ports for i in ifaces):
            return self._replica.rows("Port")
        return ports

    def _apply(self, change: TunnelChange, writer) -> None:
        apply_change(change, writer)

    def _starting(self, change: TunnelChange) -> None:
        if change.kind == ADOPT:
            self._log.info("ovsdb %s: tunnel %s: adopting the existing port, which matches exactly "
                           "(adding external_ids:%s=%s)", self._peer, self.name, OWNER_KEY, OWNER_VALUE)
