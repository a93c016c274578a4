"""VRS discovery: one hypervisor's Open_vSwitch database -> one ``VrsSnapshot`` for State.

``build_snapshot`` is a pure function of the replicated rows (or any stand-ins with the same
attributes), so it is unit-tested without OVSDB. ``VrsReporter`` feeds the snapshots of one OVSDB
session into a ``DiscoverySink``: an update whenever the snapshot changes, one ``vrs_gone`` at the end.

Row shapes follow the ``ovs`` IDL: optional columns (``ovs_version``, ``datapath_id``, ``ofport``,
``mac_in_use``) read as lists of zero or one element, maps as dicts, references as rows. Plain scalars
are accepted too. The conventions read are listed in controller/discovery.py.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable

from controller import fields
from controller.discovery import (
    FLAVOUR_KEY,
    FLAVOURS,
    VNIC_KEY_PREFIX,
    VTEP_IP_KEY,
    DiscoverySink,
    PortInfo,
    VrsSnapshot,
)
from controller.logs import Throttle

DATABASE = "Open_vSwitch"
DEFAULT_BRIDGE = "br-int"

# Everything Canopy replicates from a VRS; nothing else is monitored. All are writable through
# ovsdb.idl.Replica.transact; ovsdb/tunnel.py writes Bridge.ports, Port.name/interfaces/external_ids
# and Interface.name/type/options/external_ids (its tunnel port only); ovsdb/bridge.py writes the
# integration bridge's fail_mode and protocols.
COLUMNS = {
    "Open_vSwitch": ("external_ids", "ovs_version", "bridges"),
    "Bridge": ("name", "datapath_id", "ports", "datapath_type", "external_ids", "controller", "fail_mode",
               "protocols"),
    "Controller": ("target", "is_connected", "role"),
    "Port": ("name", "interfaces", "external_ids"),
    "Interface": ("name", "ofport", "external_ids", "mac_in_use", "type", "options"),
}

# Called with (external_ids key, offending value) for values that are ignored.
BadValue = Callable[[str, str], None]


def _ignore(_key: str, _value: str) -> None:
    """Default ``BadValue``: drop silently."""


def _opt(value):
    """First element of an optional (0..1) IDL column, or the scalar itself; None when empty."""
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    return value


def _column(row, name: str, default):
    """``row.name``, or ``default`` when the peer's schema lacks that column."""
    value = getattr(row, name, default)
    return default if value is None else value


def _ext(row) -> dict:
    return dict(_column(row, "external_ids", {}))


def _ofport(row) -> int | None:
    ofport = _opt(_column(row, "ofport", None))
    if isinstance(ofport, bool) or not isinstance(ofport, int) or ofport < 0:
        return None
    return ofport


def _mac(row, ext: dict, bad_value: BadValue) -> str | None:
    """external_ids:attached-mac, else mac_in_use; a value that is not a unicast MAC is reported, not used."""
    key = "attached-mac" if ext.get("attached-mac") else "mac_in_use"
    mac = ext.get("attached-mac") or _opt(_column(row, "mac_in_use", None))
    if not mac or mac == "00:00:00:00:00:00":  # none, or none yet (OVS reports zeros for some ports)
        return None
    try:
        return fields.mac(mac)
    except fields.Invalid:
        bad_value("%s of interface %s" % (key, row.name), mac)
        return None


def _check_vnic_keys(interface, ext: dict, bad_value: BadValue) -> None:
    """Report ESXi agent keys (``canopy-vnic-<VLAN>``) that ``PortInfo.vnic_vlans`` ignores."""
    for key, value in ext.items():
        if key.startswith(VNIC_KEY_PREFIX):
            tail = key[len(VNIC_KEY_PREFIX):]
            if not (tail.isdigit() and 1 <= int(tail) <= 4094 and value):
                bad_value("%s of interface %s (VLAN 1-4094 and a vNIC id expected)" % (key, interface.name), value)


def port_info(interface, bad_value: BadValue = _ignore) -> PortInfo:
    """One Interface row as a ``PortInfo`` (external_ids sorted, so equal rows give equal values)."""
    ext = _ext(interface)
    _check_vnic_keys(interface, ext, bad_value)
    return PortInfo(
        name=interface.name,
        ofport=_ofport(interface),
        mac=_mac(interface, ext, bad_value),
        external_ids=tuple(sorted(ext.items())),
        type=_column(interface, "type", ""),
    )


def bridge_ports(bridge, bad_value: BadValue = _ignore) -> tuple[PortInfo, ...]:
    """Every Interface of every Port on ``bridge`` except the bridge's own internal interface."""
    interfaces = [
        iface
        for port in _column(bridge, "ports", [])
        for iface in _column(port, "interfaces", [])
        if iface.name != bridge.name
    ]
    return tuple(sorted((port_info(i, bad_value) for i in interfaces), key=lambda p: p.name))


def _datapath_id(bridge) -> int | None:
    value = _opt(_column(bridge, "datapath_id", None))
    try:
        return int(value, 16) if value else None
    except (TypeError, ValueError):
        return None


def _flavour(ext: dict, bad_value: BadValue) -> str | None:
    value = ext.get(FLAVOUR_KEY)
    if value is None:
        return None
    flavour = value.strip().lower()
    if flavour in FLAVOURS:
        return flavour
    bad_value(FLAVOUR_KEY, value)
    return None


def _vtep_ip(ext: dict, bad_value: BadValue) -> str | None:
    """A usable unicast IPv4 address, else None (0.0.0.0 and multicast are not tunnel endpoints)."""
    value = ext.get(VTEP_IP_KEY)
    if value is None:
        return None
    try:
        address = ipaddress.IPv4Address(value.strip())
    except ValueError:
        address = None
    if address is None or address.is_unspecified or address.is_multicast:
        bad_value(VTEP_IP_KEY, value)
        return None
    return str(address)


def _find_bridge(root, name: str):
    if root is None:
        return None
    for bridge in _column(root, "bridges", []):
        if bridge.name == name:
            return bridge
    return None


def build_snapshot(session: str, peer: str, root_rows: Iterable, bridge: str = DEFAULT_BRIDGE,
                   bad_value: BadValue = _ignore) -> VrsSnapshot:
    """The ``VrsSnapshot`` for one VRS from its ``Open_vSwitch`` table rows (normally exactly one).

    ``peer`` is "ip:port"; ``bad_value`` is told about external_ids values that were ignored.
    """
    root = next(iter(root_rows), None)
    ext = _ext(root) if root is not None else {}
    hostname = ext.get("hostname", "")
    br = _find_bridge(root, bridge)
    return VrsSnapshot(
        session=session,
        peer=peer,
        chassis=ext.get("system-id") or hostname or peer.rsplit(":", 1)[0],
        hostname=hostname,
        flavour=_flavour(ext, bad_value),
        vtep_ip=_vtep_ip(ext, bad_value),
        bridge=bridge,
        bridge_present=br is not None,
        datapath_id=_datapath_id(br) if br is not None else None,
        ovs_version=(_opt(_column(root, "ovs_version", None)) or "") if root is not None else "",
        ports=bridge_ports(br, bad_value) if br is not None else (),
        controllers=bridge_controllers(br) if br is not None else (),
        fail_mode=bridge_fail_mode(br) if br is not None else "",
        protocols=bridge_protocols(br) if br is not None else (),
    )


def bridge_fail_mode(bridge) -> str:
    """The bridge's fail_mode ("" when unset, which OVS runs as standalone)."""
    value = _opt(_column(bridge, "fail_mode", None))
    return value if isinstance(value, str) else ""


def bridge_protocols(bridge) -> tuple[str, ...]:
    """The OpenFlow versions the bridge allows, sorted (empty: OVS's defaults)."""
    value = _column(bridge, "protocols", ())
    return tuple(sorted(p for p in (value if isinstance(value, (list, tuple, set)) else (value,))
                        if isinstance(p, str)))


def bridge_controllers(bridge) -> tuple:
    """(target, is_connected, role) of each OpenFlow controller of the bridge, as OVS reports them: the
    witnesses an HA pair asks before a takeover (is another controller still connected as master?)."""
    out = []
    for ctl in _column(bridge, "controller", []):
        role = _opt(_column(ctl, "role", None)) or ""
        out.append((str(_column(ctl, "target", "")), bool(_column(ctl, "is_connected", False)), role))
    return tuple(sorted(out))


class SnapshotReporter:
    """Reports one OVSDB session's snapshots through ``update(snapshot)`` and ``gone(session)``.

    Contract: an update only when the snapshot differs from the last one reported (None: nothing to
    report yet); a session reported at least once gets exactly one ``gone``, and nothing after it.
    """

    def __init__(self, session: str, update, gone):
        self.session = session
        self._update, self._gone_callback = update, gone
        self.last = None
        self._gone = False

    def report(self, snap) -> bool:
        """Report ``snap`` if it is new; True if it was reported."""
        if self._gone or snap is None or snap == self.last:
            return False
        self.last = snap
        self._update(snap)
        return True

    def gone(self) -> None:
        """Report the session gone (once, and only if it was ever reported)."""
        if self._gone:
            return
        self._gone = True
        if self.last is not None:
            self._gone_callback(self.session)


class VrsReporter(SnapshotReporter):
    """Reports one OVSDB session's VRS snapshots to a ``DiscoverySink`` (vrs_update / vrs_gone)."""

    def __init__(self, sink: DiscoverySink, session: str, peer: str, bridge: str = DEFAULT_BRIDGE,
                 log: logging.Logger | None = None):
        super().__init__(session, sink.vrs_update, sink.vrs_gone)
        self.peer = peer
        self.bridge = bridge
        self._log = log or logging.getLogger(__name__)
        self._bad = Throttle(self._log)

    def refresh(self, root_rows: Iterable) -> bool:
        """Rebuild from the current rows; report and return True if the snapshot changed."""
        if self._gone:
            return False
        return self.report(build_snapshot(self.session, self.peer, root_rows, self.bridge, self._bad_value))

    def _bad_value(self, key: str, value: str) -> None:
        self._bad.warning((key, str(value)[:64]), "%s (%s): ignoring %s=%r", self.session, self.peer,
                          key if " " in key else "external_ids:" + key, value)
