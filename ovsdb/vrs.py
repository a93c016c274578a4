"""VRS discovery: one hypervisor's Open_vSwitch database -> one ``VrsSnapshot`` for State.

``build_snapshot`` is a pure function of the replicated rows (or any stand-ins with the same
attributes), so it is unit-tested without OVSDB. ``VrsReporter`` follows one OVSDB session: it applies the
rows the IDL reports changed (ovsdb/bridgeports.py) and reports the switch, keyed by chassis, through
ovsdb/claims.py to a ``DiscoverySink``: an update whenever the snapshot changes, ``vrs_gone`` when no
session has spoken for the chassis for the grace period.

Row shapes follow the ``ovs`` IDL: optional columns (``ovs_version``, ``datapath_id``, ``ofport``,
``mac_in_use``) read as lists of zero or one element, maps as dicts, references as rows. Plain scalars
are accepted too. The conventions read are listed in controller/discovery.py.
"""

from __future__ import annotations

import dataclasses
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
from controller.pacer import NEVER, Pacer
from ovsdb.bridgeports import BridgePorts
from ovsdb.claims import Claimant, VrsClaims, switch_key
from ovsdb.idl import column_value, column_values
from ovsdb.rowchanges import row_key

DATABASE = "Open_vSwitch"
DEFAULT_BRIDGE = "br-int"

# Everything Canopy replicates from a VRS; nothing else is monitored. All are writable through
# ovsdb.idl.Replica.transact; ovsdb/tunnel.py writes Bridge.ports, Port.name/interfaces/external_ids
# and Interface.name/type/options/external_ids (its tunnel port only); ovsdb/bridge.py writes the
# integration bridge's fail_mode and protocols.
COLUMNS = {
    "Open_vSwitch": ("external_ids", "ovs_version", "bridges"),
    # not the bridge's external_ids: unread, and ovn-controller keeps a key per conntrack zone there (up to 65,535,
    # more than a plain map may hold: docs/limits.md), so replicating it refused such a hypervisor at every session
    "Bridge": ("name", "datapath_id", "ports", "datapath_type", "controller", "fail_mode", "protocols"),
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
    value = column_value(row, name, default)
    return default if value is None else value


def _ext(row) -> dict:
    return dict(_column(row, "external_ids", {}))


def _ofport(row) -> int | None:
    return _ofport_of(column_value(row, "ofport", None))


def _ofport_of(value) -> int | None:
    """The ofport an ``ofport`` column's value names (None: none yet, -1, or not a port number)."""
    ofport = _opt(value)
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


_PORT_INFO_COLUMNS = ("name", "external_ids", "ofport", "type")


def port_info(interface, bad_value: BadValue = _ignore) -> PortInfo:
    """One Interface row as a ``PortInfo`` (external_ids sorted, so equal rows give equal values). Its columns read in
    one call (``column_values``: 10,000 new interfaces read in one update); a column the peer's schema lacks (None)
    reads as its default."""
    name, ext, ofport, type_ = column_values(interface, _PORT_INFO_COLUMNS)
    ext = dict(ext) if ext is not None else {}
    _check_vnic_keys(interface, ext, bad_value)
    return PortInfo(
        name=name,
        ofport=_ofport_of(ofport),
        mac=_mac(interface, ext, bad_value),
        external_ids=tuple(sorted(ext.items())),
        type="" if type_ is None else type_,
    )


OFPORT_ONLY = frozenset({"ofport"})


def port_info_again(old: PortInfo, interface, columns: frozenset | None, bad_value: BadValue = _ignore) -> PortInfo:
    """``port_info(interface)`` for an interface read before as ``old``, of which ``columns`` changed (None: not
    known). A change of its ``ofport`` alone (ovs-vswitchd numbering new ports, or setting -1 on those it cannot
    open: 10,000 rows at once after evpn_routes' announce) reads that column only: the rest is ``old``'s."""
    if columns is None or not columns <= OFPORT_ONLY:
        return port_info(interface, bad_value)
    ofport = _ofport(interface)
    return old if ofport == old.ofport else dataclasses.replace(old, ofport=ofport)


def bridge_ports(bridge, bad_value: BadValue = _ignore) -> tuple[PortInfo, ...]:
    """Every Interface of every Port on ``bridge`` except the bridge's own internal interface, once each (an
    Interface two ports reference, which a hostile peer may send, is one port), one per name (of Interfaces that
    share one, which a hostile peer may send too, the one with the smallest uuid: ovsdb/bridgeports.py)."""
    interfaces = {
        row_key(iface): iface
        for port in _column(bridge, "ports", [])
        for iface in _column(port, "interfaces", [])
        if iface.name != bridge.name
    }
    named: dict = {}
    for key in sorted(interfaces):
        named.setdefault(interfaces[key].name, interfaces[key])
    return tuple(sorted((port_info(i, bad_value) for i in named.values()), key=lambda p: p.name))


def _present(named: dict, names) -> dict:
    """{name: ``named[name]``} of those of ``names`` in ``named`` (C loops: a big delete's slice names thousands of
    ports gone, none of them there)."""
    present = list(filter(named.__contains__, names))
    return dict(zip(present, map(named.__getitem__, present)))


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


def _chassis(ext: dict, peer: str) -> str:
    """system-id, else hostname, else the peer's IP address."""
    return ext.get("system-id") or ext.get("hostname", "") or peer.rsplit(":", 1)[0]


def build_snapshot(session: str, peer: str, root_rows: Iterable, bridge: str = DEFAULT_BRIDGE,
                   bad_value: BadValue = _ignore) -> VrsSnapshot:
    """The ``VrsSnapshot`` for one VRS from its ``Open_vSwitch`` table rows (normally exactly one).

    ``peer`` is "ip:port"; ``bad_value`` is told about external_ids values that were ignored.
    """
    root = next(iter(root_rows), None)
    br = _find_bridge(root, bridge)
    ports = bridge_ports(br, bad_value) if br is not None else ()
    return _snapshot(session, peer, root, bridge, br, ports, bad_value)


def _snapshot(session: str, peer: str, root, bridge: str, br, ports: tuple, bad_value: BadValue,
              changed: frozenset[str] | None = None, changed_ports: dict | None = None) -> VrsSnapshot:
    ext = _ext(root) if root is not None else {}
    return VrsSnapshot(
        session=session,
        peer=peer,
        chassis=_chassis(ext, peer),
        hostname=ext.get("hostname", ""),
        flavour=_flavour(ext, bad_value),
        vtep_ip=_vtep_ip(ext, bad_value),
        bridge=bridge,
        bridge_present=br is not None,
        datapath_id=_datapath_id(br) if br is not None else None,
        ovs_version=(_opt(_column(root, "ovs_version", None)) or None) if root is not None else None,
        ports=ports,
        controllers=bridge_controllers(br) if br is not None else (),
        fail_mode=bridge_fail_mode(br) if br is not None else "",
        protocols=bridge_protocols(br) if br is not None else (),
        changed=changed,
        changed_ports=changed_ports,
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


class VrsReporter(Claimant):
    """Reports one OVSDB session's VRS snapshots, keyed by chassis, through ``claims`` (ovsdb/claims.py)
    to its sink.

    ``refresh(root_rows, changes)`` after each replica change: with ``changes`` (``ovsdb.rowchanges.RowChanges``)
    only the rows named there are read again (``ovsdb.bridgeports``); without, everything. The snapshot
    reported has ``session`` = the switch key and ``changed`` = the ports whose ``PortInfo`` differs from
    the last snapshot reported for that switch (by any session; None when there was none). A switch is
    reported only while this session speaks for it, and only when its snapshot changed. ``gone()`` ends
    the claim (once); the claims decide when the switch is reported gone. Without ``claims`` the reporter
    has its own, with no grace (gone at once).
    """

    def __init__(self, sink: DiscoverySink, session: str, peer: str, bridge: str = DEFAULT_BRIDGE,
                 log: logging.Logger | None = None, claims: VrsClaims | None = None, pacer: Pacer = NEVER):
        self.session = session  # the connection's name (logs, sessions())
        self.peer = peer
        self.bridge = bridge
        self._log = log or logging.getLogger(__name__)
        self._bad = Throttle(self._log)
        self._claims = claims if claims is not None else VrsClaims(sink, 0.0, self._log)
        self._ports = BridgePorts(lambda iface: port_info(iface, self._bad_value), pacer,  # pauses: see refresh
                                  lambda old, iface, columns: port_info_again(old, iface, columns, self._bad_value),
                                  self._refused_claim)
        self.key: str | None = None  # the switch key this session claims
        self.last: VrsSnapshot | None = None  # this session's latest snapshot (reported or not)
        self._root_rows: Iterable = ()
        self._changed: set[str] | None = None  # ports changed since the switch was last reported
        self._resync = True  # a refresh reads every port until one such read is kept (first copy, taking over a key)
        self._gone = False
        self._reads = 0  # refreshes begun: one that a newer one began in its pauses is dropped (``refresh``)
        self.dropped_reads = 0  # reads of every port dropped so (not in ``full_reads``, their refused claims untold)
        self._leaving: list[str] = []  # ports told leaving (``leaving``) until the update deleting them is applied

    @property
    def speaking(self) -> bool:
        """Whether this session speaks for its switch (see ovsdb/claims.py)."""
        return self.key is not None and self._claims.speaker(self.key) is self

    @property
    def full_reads(self) -> int:
        """How many times every port of the bridge was read (the first copy, a resync, a bridge replaced)."""
        return self._ports.full_reads

    @property
    def refused_claims(self) -> int:
        """How many claims of an Interface row already held by another Port row were refused (ovsdb/bridgeports.py)."""
        return self._ports.refused_claims

    def holds_port(self, port_row) -> bool:
        """Whether ``port_row`` is on the integration bridge (O(1))."""
        return self._ports.holds_port(port_row)

    def refresh(self, root_rows: Iterable, changes=None) -> bool:
        """Apply the current rows; report and return True if the switch's snapshot changed. Reading many ports
        pauses (``pacer``): another session's green thread may then make this one speak (``speak``), which reads
        the same rows, already complete, in full; and a speak in another green thread (the speaker's session gone
        while this one is idle) pauses too, in which this session's own next update may be read and refreshed. A
        read of every port builds new ``BridgePorts`` kept only at its end; a refresh that a newer one began in its
        pauses is dropped (it changes and reports nothing), the newer one, of newer rows, reports
        (tests/unit/test_vrs_delta.py)."""
        if self._gone:
            return False
        self._reads += 1
        read = self._reads
        self._root_rows = root_rows
        root = next(iter(root_rows), None)
        key = switch_key(_chassis(_ext(root) if root is not None else {}, self.peer))
        if key != self.key:
            if self.key is not None:
                self._claims.leave(self.key, self, now=True)
            self.key, self._resync = key, True
            self._claims.join(key, self)
        br = _find_bridge(root, self.bridge)
        if not self._read_ports(br, changes, read):
            return False
        changed = frozenset(self._changed) if self._changed is not None else None
        named = self._ports.by_name()
        changed_ports = _present(named, changed) if changed is not None else None
        self.last = _snapshot(key, self.peer, root, self.bridge, br, self._ports.ports, self._bad_value, changed,
                              changed_ports)
        if not self.speaking or not self._claims.report(key, self.last):
            return False
        self._changed = set()
        return True

    def leaving(self, iface_keys) -> None:
        """The update being applied deletes the Interface rows ``iface_keys`` (row keys: ovsdb/idl/slices.py, a big
        delete of ports, before its first slice): tell the claims the integration bridge's ports they are, while this
        session speaks for its switch and its ports are read (the vports only they show are about to be unbound:
        controller/state_leaving.py). While a read of every port is under way (a speak's, in whose pauses this
        session's next update is decoded) the ports as last read name them: a big delete is told as early then too,
        its routes withdrawn at intake, not once its slices are taken (bgp/federation.py ``_ports_leaving``)."""
        if self._gone or self._ports.bridge_key is None or not self.speaking:
            return
        names = self._ports.names_of(iface_keys)
        if names:
            self._leaving.extend(names)
            self._claims.leaving(self.key, names)

    def leaving_done(self) -> None:
        """The update that deleted the ports told ``leaving`` is applied and reported, or the session ends before
        (its update refused, the session killed): the claims are told those ports are no longer leaving (what
        still shows them, a port the next session finds again, is bound as it is: controller/state_leaving.py)."""
        if self._leaving:
            names, self._leaving = self._leaving, []
            self._claims.left(self.key, names)

    def gone(self) -> None:
        self.leaving_done()
        super().gone()

    def speak(self) -> None:
        """This session speaks for its switch again (the speaker went): report its rows as they are."""
        self._resync = True
        self.refresh(self._root_rows)

    def _read_ports(self, br, changes, read: int) -> bool:
        """Bring the bridge's ports up to date and ``_changed`` with them; False (nothing changed) if a newer refresh
        began in the read's pauses (``refresh``), or the session ended."""
        if not self._resync and changes is not None and br is not None and \
                self._ports.bridge_key is not None and row_key(br) == self._ports.bridge_key:
            delta = self._ports.apply(br, changes)  # (overtaken: a speak's read of every port replaced ``_ports``)
            if read != self._reads or self._gone:
                return False
            if self._changed is not None:
                self._changed |= delta
            return True
        last = self._claims.last(self.key)
        previous = {p.name: p for p in last.ports} if last is not None else None
        if br is None:
            self._ports.clear()
            self._changed = set(previous) if previous is not None else None
        else:
            ports, delta = self._ports.rebuilt(br, previous)
            if read != self._reads or self._gone:  # a newer refresh began in a pause: it reads the rows as they are
                self.dropped_reads += 1
                return False
            self._ports = ports
            ports.kept()
            self._changed = set(delta) if delta is not None else None
        self._resync = False
        return True

    def _refused_claim(self, iface: str, port: str, holder: str) -> None:
        # one key for every claim: a peer making many (the same again and again, or new ones) is one line a minute
        # per session, the next saying how many were held back (refused_claims counts each, and the claims every
        # session's together)
        self._claims.refused_interface_claims += 1
        self._bad.warning("interface claim", "%s (%s): interface %s is referenced by port %s and by port %s: it "
                          "stays %s's, the claim of %s is refused", self.session, self.peer, iface, port, holder,
                          holder, port)

    def _bad_value(self, key: str, value: str) -> None:
        self._bad.warning((key, str(value)[:64]), "%s (%s): ignoring %s=%r", self.session, self.peer,
                          key if " " in key else "external_ids:" + key, value)
