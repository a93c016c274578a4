"""Hardware VTEPs (the ``hardware_vtep`` schema): what Canopy reads, and the rows it wants written.

Two pure functions over replicated rows (``ovs`` IDL rows through ovsdb/idl/, or stand-ins with the
same attributes); the reporter feeding snapshots to State is ovsdb/vtep_reporter.py:

- ``build_vtep_snapshot``: Physical_Switch (name, description, tunnel_ips, management_ips, ports),
  Physical_Port (name, vlan_bindings -> Logical_Switch tunnel_key) and Ucast_Macs_Local (MAC,
  logical_switch -> tunnel_key, ipaddr, locator -> Physical_Locator dst_ip) -> one ``VtepSnapshot``.
  One Physical_Switch per database is the normal case; with several, the first by name is the one
  (logged once by ``VtepReporter``, ovsdb/vtep_reporter.py).
- ``plan_vtep``: a ``VtepDesired`` + the rows -> the ``VtepPlan`` that makes them so (ovsdb/vtep_sync.py
  writes it). An empty plan means converged: a reconnect or a Canopy restart writes nothing.

The rows Canopy writes (its row model; nothing else is ever changed)::

    Logical_Switch      name "canopy-<VNI>", tunnel_key <VNI>, replication_mode "source_node" (head-end
                        replication, like the VRS; set only when the peer's schema has the column),
                        description "Canopy VNI <VNI>" (written once, never compared)
    Physical_Port       vlan_bindings <VLAN> -> canopy-<VNI>, on the managed Physical_Switch's ports;
                        only entries pointing at a canopy-* switch are ever changed or removed
    Ucast_Macs_Remote   MAC (lowercase), logical_switch canopy-<VNI>, ipaddr ("" when unknown), locator
    Mcast_Macs_Remote   MAC "unknown-dst", logical_switch canopy-<VNI>, locator_set: the flood list (a
                        Physical_Locator_Set is immutable: a new list is a new set row; the old one is
                        garbage collected). No row when the flood list is empty.
    Physical_Locator    encapsulation_type "vxlan_over_ipv4", dst_ip: an existing locator with that
                        dst_ip is always reused (the schema's index forbids a duplicate anyway)

Every logical switch named ``canopy-<VNI>`` is Canopy's, and so are the remote MACs in it: rows there
that are not desired are removed. Logical switches of any other name are never touched, nor their
bindings or MACs. A logical switch no longer desired is removed last: its bindings, remote MACs and
flood row go first, and the switch itself once nothing references it any more (the VTEP clears its
own Ucast/Mcast_Macs_Local rows after the binding goes), in a later transaction.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from controller import fields
from controller.discovery import VtepDesired, VtepMac, VtepPort, VtepSnapshot

DATABASE = "hardware_vtep"
LS_PREFIX = "canopy-"
ENCAPSULATION = "vxlan_over_ipv4"
UNKNOWN_DST = "unknown-dst"
REPLICATION_MODE = "source_node"

# Told about each value read from a peer that is left out: (what, the value, why).
BadRow = Callable[[str, object, str], None]

# Everything Canopy replicates from a hardware VTEP. Writes (ovsdb/vtep_sync.py) touch only
# Logical_Switch, Physical_Port.vlan_bindings, Ucast/Mcast_Macs_Remote and new locator (set) rows.
COLUMNS = {
    "Physical_Switch": ("name", "description", "tunnel_ips", "management_ips", "ports"),
    "Physical_Port": ("name", "vlan_bindings"),
    "Logical_Switch": ("name", "tunnel_key", "replication_mode", "description"),
    "Ucast_Macs_Local": ("MAC", "logical_switch", "ipaddr", "locator"),
    "Mcast_Macs_Local": ("MAC", "logical_switch"),
    "Ucast_Macs_Remote": ("MAC", "logical_switch", "ipaddr", "locator"),
    "Mcast_Macs_Remote": ("MAC", "logical_switch", "locator_set", "ipaddr"),
    "Physical_Locator_Set": ("locators",),
    "Physical_Locator": ("encapsulation_type", "dst_ip", "tunnel_key"),
}


# The tables a VtepSnapshot is read from: a change elsewhere (the remote MACs and flood lists Canopy writes)
# needs no new snapshot.
SNAPSHOT_TABLES = ("Physical_Switch", "Physical_Port", "Logical_Switch", "Ucast_Macs_Local", "Physical_Locator")


def reported(changes) -> bool:
    """Whether ``changes`` (``ovsdb.rowchanges.RowChanges``, None: unknown) may change the VTEP's snapshot."""
    return changes is None or any(changes.table(name) for name in SNAPSHOT_TABLES)


def ls_name(vni: int) -> str:
    """The name of Canopy's logical switch for ``vni``."""
    return "%s%d" % (LS_PREFIX, vni)


def canopy_vni(name: str) -> int | None:
    """The VNI of a logical switch named like Canopy's (``canopy-<VNI>``, canonical digits), else None."""
    tail = name[len(LS_PREFIX):] if name.startswith(LS_PREFIX) else ""
    return int(tail) if tail.isascii() and tail.isdigit() and ls_name(int(tail)) == name else None


def _one(value):
    """The element of an optional (0..1) IDL column, or the value itself; None when empty."""
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    return value


def _vni(ls) -> int | None:
    """A Logical_Switch row's tunnel_key, None if unset or not a VNI (1..2^24-1)."""
    key = _one(getattr(ls, "tunnel_key", None)) if ls is not None else None
    return key if isinstance(key, int) and not isinstance(key, bool) and 1 <= key <= fields.MAX_VNI else None


def _locator_ip(locator) -> str | None:
    locator = _one(locator)
    return getattr(locator, "dst_ip", None) if locator is not None else None


def _ip_order(ip: str):
    """Sort key for addresses as a peer reports them: IPv4, then IPv6, then anything else (never raises)."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return (1, 0, str(ip))
    return (0, address.version, address.packed)


def _by_uuid(rows: Iterable) -> list:
    return sorted(rows, key=lambda row: str(getattr(row, "uuid", "")))


# Reading: the snapshot.

def pick_switch(switches: Iterable):
    """The managed Physical_Switch: the first by name (None if there is none)."""
    return min(switches, key=lambda row: row.name, default=None)


def _ignore(_what: str, _value, _reason: str) -> None:
    """Default ``BadRow``: drop silently."""


def _checked(check, value, what: str, bad_value: BadRow):
    """``check(value)`` (a controller.fields checker), or None after telling ``bad_value`` why not."""
    try:
        return check(value)
    except fields.Invalid as exc:
        bad_value(what, value, str(exc))
        return None


def _tunnel_ip(value, what: str, bad_value: BadRow) -> str | None:
    """A unicast IPv4 tunnel endpoint, else None (reported)."""
    ip = _checked(fields.ipv4, value, what, bad_value)
    if ip is not None and (ipaddress.IPv4Address(ip).is_multicast or ipaddress.IPv4Address(ip).is_unspecified):
        bad_value(what, value, "not a unicast address")
        return None
    return ip


def _port(row, bad_value: BadRow = _ignore) -> VtepPort:
    bindings = []
    for vlan, ls in dict(getattr(row, "vlan_bindings", None) or {}).items():
        vni = _vni(ls)
        if vni is not None and _checked(lambda v: fields.integer(v, 0, 4095), vlan,
                                        "Physical_Port %s vlan_bindings key" % row.name, bad_value) is not None:
            bindings.append((vlan, vni))
    return VtepPort(row.name, tuple(sorted(bindings)))


def local_mac(row, bad_value: BadRow = _ignore) -> VtepMac | None:
    """A Ucast_Macs_Local row as a ``VtepMac``; None when it has no usable VNI, MAC or locator (reported).
    An ipaddr that is not IPv4 (an IPv6 neighbour, garbage) is dropped and reported; the MAC is kept."""
    vni, locator = _vni(_one(row.logical_switch)), _locator_ip(row.locator)
    if vni is None or locator is None:
        return None
    mac = _checked(fields.mac, getattr(row, "MAC", None), "Ucast_Macs_Local MAC", bad_value)
    if mac is None:
        return None
    if _tunnel_ip(locator, "Ucast_Macs_Local %s locator" % mac, bad_value) is None:
        return None
    ip = getattr(row, "ipaddr", "") or None
    if ip is not None:
        ip = _checked(fields.ipv4, ip, "Ucast_Macs_Local %s ipaddr" % mac, bad_value)
    return VtepMac(mac, vni, ip, locator)


def build_vtep_snapshot(session: str, peer: str, switches: Iterable, local_macs: Iterable = (),
                        bad_value: BadRow = _ignore) -> VtepSnapshot | None:
    """The ``VtepSnapshot`` of the managed Physical_Switch, None while the database has none.

    ``switches``: Physical_Switch rows; ``local_macs``: Ucast_Macs_Local rows (those whose logical
    switch has no tunnel_key are left out: they have no VNI to report). Values Canopy cannot use (a MAC,
    VNI, VLAN or tunnel IP that is not one, an ipaddr that is not IPv4) are left out and reported to
    ``bad_value(what, value, reason)``; nothing here raises on what a peer sends.
    """
    switch = pick_switch(switches)
    if switch is None:
        return None
    macs = {mac for mac in (local_mac(row, bad_value) for row in local_macs) if mac is not None}
    tunnel_ips = (_tunnel_ip(ip, "Physical_Switch %s tunnel_ips" % switch.name, bad_value)
                  for ip in getattr(switch, "tunnel_ips", None) or ())
    return VtepSnapshot(
        session=session,
        peer=peer,
        name=switch.name,
        tunnel_ips=tuple(sorted({ip for ip in tunnel_ips if ip is not None}, key=_ip_order)),
        management_ips=tuple(sorted(getattr(switch, "management_ips", None) or (), key=_ip_order)),
        description=getattr(switch, "description", "") or "",
        ports=tuple(sorted((_port(p, bad_value) for p in switch.ports or ()), key=lambda p: p.name)),
        local_macs=tuple(macs),  # VtepSnapshot sorts them
    )


# Writing: the plan.

@dataclass(frozen=True)
class VtepRows:
    """The replicated rows ``plan_vtep`` reads (tuples of IDL rows or stand-ins)."""

    switch: object | None  # the managed Physical_Switch (see pick_switch)
    logical_switches: tuple = ()
    ports: tuple = ()  # every Physical_Port: a binding on any of them references its logical switch
    ucast_local: tuple = ()
    mcast_local: tuple = ()
    ucast_remote: tuple = ()
    mcast_remote: tuple = ()
    locators: tuple = ()
    replication_mode: bool = True  # the peer's Logical_Switch has replication_mode


@dataclass
class VtepPlan:
    """The writes that bring a hardware VTEP to its desired rows, and what keeps it from getting there.

    Rows are the replica's own. ``ls_rows`` (Canopy's logical switches by VNI) and ``locator_rows``
    (reusable locators by dst_ip) let the writer reference existing rows instead of inserting.
    """

    ls_create: list = field(default_factory=list)  # VNI
    ls_update: list = field(default_factory=list)  # (Logical_Switch row, VNI)
    ls_delete: list = field(default_factory=list)  # Logical_Switch row
    bind: list = field(default_factory=list)  # (Physical_Port row, VLAN, VNI)
    unbind: list = field(default_factory=list)  # (Physical_Port row, VLAN)
    ucast_add: list = field(default_factory=list)  # (VNI, MAC, ip or None, locator IP)
    ucast_update: list = field(default_factory=list)  # (Ucast_Macs_Remote row, ip or None, locator IP)
    ucast_delete: list = field(default_factory=list)  # Ucast_Macs_Remote row
    flood_set: list = field(default_factory=list)  # (VNI, locator IPs, Mcast_Macs_Remote row or None)
    flood_delete: list = field(default_factory=list)  # Mcast_Macs_Remote row
    ls_rows: dict = field(default_factory=dict)
    locator_rows: dict = field(default_factory=dict)
    conflicts: list = field(default_factory=list)  # foreign rows in the way (readable sentences)
    waiting: list = field(default_factory=list)  # what has to happen before the rest can be written

    WRITES = ("ls_create", "ls_update", "ls_delete", "bind", "unbind", "ucast_add", "ucast_update",
              "ucast_delete", "flood_set", "flood_delete")

    @property
    def empty(self) -> bool:
        """True when nothing is to be written."""
        return not any(getattr(self, name) for name in self.WRITES)

    def summary(self) -> str:
        """What the plan writes, counted per kind, e.g. "ls_create 1, bind 1, ucast_add 3"."""
        return ", ".join("%s %d" % (name, len(getattr(self, name)))
                         for name in self.WRITES if getattr(self, name))


def plan_vtep(desired: VtepDesired | None, rows: VtepRows, ucast=None, wanted: set[int] | None = None) -> VtepPlan:
    """The ``VtepPlan`` that makes ``rows`` hold ``desired`` (None: nothing, so Canopy's rows go).

    The logical switches wanted are ``desired.logical_switches`` plus every VNI its bindings, remote
    MACs and flood lists use (a row never references a switch that is not there). ``ucast``: plan the
    remote MACs with ``ucast(wanted, plan)`` instead of from every row of ``rows.ucast_remote`` (the
    reconciler's delta, ovsdb/vtep_sync.py); ``wanted``: the VNIs wanted, when the caller knows them.
    """
    plan = VtepPlan()
    ours = {canopy_vni(ls.name): ls for ls in rows.logical_switches if canopy_vni(ls.name) is not None}
    plan.ls_rows = dict(ours)
    plan.locator_rows = _reusable_locators(rows.locators)
    wanted = _wanted_vnis(desired) if wanted is None else wanted
    _plan_switches(wanted, ours, rows, plan)
    if desired is not None:
        _plan_bindings(desired, rows.switch, plan)
    _plan_unbindings(desired, rows.switch, plan)
    if ucast is None:
        _plan_ucast(desired, wanted, rows.ucast_remote, plan)
    else:
        ucast(wanted, plan)
    _plan_flood(desired, wanted, rows.mcast_remote, plan)
    _plan_removals(wanted, ours, rows, plan)
    return plan


def _wanted_vnis(desired: VtepDesired | None) -> set[int]:
    if desired is None:
        return set()
    return (set(desired.logical_switches) | {vni for _, _, vni in desired.bindings}
            | {mac[0] for mac in desired.remote_macs} | {vni for vni, _ in desired.flood})


def _reusable_locators(locators: Iterable) -> dict:
    """dst_ip -> an existing vxlan_over_ipv4 locator (one without a tunnel_key preferred)."""
    found = {}
    for row in sorted(_by_uuid(locators), key=lambda r: _one(getattr(r, "tunnel_key", None)) is not None):
        if getattr(row, "encapsulation_type", ENCAPSULATION) == ENCAPSULATION:
            found.setdefault(row.dst_ip, row)
    return found


def _plan_switches(wanted: set[int], ours: dict, rows: VtepRows, plan: VtepPlan) -> None:
    """Create or correct Canopy's logical switches; note foreign ones using a wanted VNI."""
    for ls in sorted(rows.logical_switches, key=lambda r: r.name):
        vni = _vni(ls)
        if vni in wanted and canopy_vni(ls.name) is None:
            plan.conflicts.append("logical switch %r (not Canopy's) also has tunnel_key %d" % (ls.name, vni))
    for vni in sorted(wanted):
        ls = ours.get(vni)
        if ls is None:
            plan.ls_create.append(vni)
        elif _vni(ls) != vni or (rows.replication_mode and _one(ls.replication_mode) != REPLICATION_MODE):
            plan.ls_update.append((ls, vni))


def _bindings(port) -> dict:
    return dict(getattr(port, "vlan_bindings", None) or {})


def _wanted_bindings(desired: VtepDesired | None, plan: VtepPlan | None = None) -> dict:
    """(port name, VLAN) -> VNI; a second VNI for the same port and VLAN is a conflict (first wins)."""
    want = {}
    for port, vlan, vni in sorted(desired.bindings if desired is not None else ()):
        if want.setdefault((port, vlan), vni) != vni and plan is not None:
            plan.conflicts.append("port %s VLAN %d desired in VNIs %d and %d; keeping %d"
                                  % (port, vlan, want[(port, vlan)], vni, want[(port, vlan)]))
    return want


def _plan_bindings(desired: VtepDesired, switch, plan: VtepPlan) -> None:
    """Bind each desired (port, VLAN) to its canopy-<VNI> unless a foreign switch holds it."""
    want = _wanted_bindings(desired, plan)
    if switch is None:
        if want:
            plan.waiting.append("no Physical_Switch to bind ports on")
        return
    ports = {port.name: port for port in switch.ports or ()}
    for (name, vlan), vni in sorted(want.items()):
        port = ports.get(name)
        if port is None:
            plan.waiting.append("port %s is not on physical switch %s" % (name, switch.name))
            continue
        current = _bindings(port).get(vlan)
        if current is None or (canopy_vni(current.name) not in (None, vni)):
            plan.bind.append((port, vlan, vni))
        elif canopy_vni(current.name) is None:
            plan.conflicts.append("port %s VLAN %d is bound to logical switch %r, not Canopy's"
                                  % (name, vlan, current.name))


def _plan_unbindings(desired: VtepDesired | None, switch, plan: VtepPlan) -> None:
    """Remove bindings to Canopy's switches that are not desired on the managed switch's ports."""
    want = _wanted_bindings(desired)
    for port in sorted(switch.ports or () if switch is not None else (), key=lambda p: p.name):
        for vlan, ls in sorted(_bindings(port).items()):
            if canopy_vni(ls.name) is not None and (port.name, vlan) not in want:
                plan.unbind.append((port, vlan))


def _plan_ucast(desired: VtepDesired | None, wanted: set[int], remote: Iterable, plan: VtepPlan) -> None:
    """Add, correct (ipaddr, locator) and remove remote MACs in Canopy's switches."""
    want = {}
    for vni, mac, ip, locator in sorted(desired.remote_macs if desired is not None else ()):
        if vni in wanted:
            want.setdefault((vni, mac.lower()), (ip or None, locator))
    seen = set()
    for row in _by_uuid(remote):
        vni = canopy_vni(_one(row.logical_switch).name)
        if vni is None:
            continue
        key = (vni, row.MAC.lower())
        if key not in want or key in seen:
            plan.ucast_delete.append(row)
            continue
        seen.add(key)
        ip, locator = want[key]
        if (row.ipaddr or None) != ip or _locator_ip(row.locator) != locator:
            plan.ucast_update.append((row, ip, locator))
    plan.ucast_add.extend((vni, mac, *want[(vni, mac)]) for vni, mac in sorted(set(want) - seen))


def plan_ucast_keys(keys, want: dict, wanted: set[int], rows_of, plan: VtepPlan) -> None:
    """``_plan_ucast`` for the (VNI, lowercase MAC) ``keys`` only: ``want`` maps a key to its desired
    (ip or None, locator IP), ``rows_of(key)`` gives its Ucast_Macs_Remote rows in Canopy's switches."""
    for key in sorted(keys):
        target = want.get(key) if key[0] in wanted else None
        rows = _by_uuid(rows_of(key))
        if target is None:
            plan.ucast_delete.extend(rows)
            continue
        if not rows:
            plan.ucast_add.append((key[0], key[1], *target))
            continue
        first, *extra = rows
        plan.ucast_delete.extend(extra)
        if (first.ipaddr or None) != target[0] or _locator_ip(first.locator) != target[1]:
            plan.ucast_update.append((first, *target))


def ucast_key(row) -> tuple | None:
    """(VNI, lowercase MAC) of a Ucast_Macs_Remote row in one of Canopy's switches, else None."""
    ls = _one(getattr(row, "logical_switch", None))
    vni = canopy_vni(ls.name) if ls is not None else None
    return (vni, row.MAC.lower()) if vni is not None else None


def _flood_ips(row) -> set:
    locator_set = _one(row.locator_set)
    return {_locator_ip(loc) for loc in getattr(locator_set, "locators", None) or ()}


def _plan_flood(desired: VtepDesired | None, wanted: set[int], remote: Iterable, plan: VtepPlan) -> None:
    """One unknown-dst row per Canopy switch with a non-empty flood list; anything else there goes."""
    want = {}
    for vni, ips in (desired.flood if desired is not None else ()):
        if vni in wanted and ips:
            want[vni] = tuple(sorted(set(ips), key=_ip_order))
    seen = set()
    for row in _by_uuid(remote):
        vni = canopy_vni(_one(row.logical_switch).name)
        if vni is None:
            continue
        if row.MAC != UNKNOWN_DST or vni not in want or vni in seen:
            plan.flood_delete.append(row)
            continue
        seen.add(vni)
        if _flood_ips(row) != set(want[vni]):
            plan.flood_set.append((vni, want[vni], row))
    plan.flood_set.extend((vni, want[vni], None) for vni in sorted(set(want) - seen))


def _referrers(ls, rows: VtepRows) -> list[str]:
    """What still references logical switch ``ls`` (bindings on any port, any MAC row)."""
    found = ["binding %s/%d" % (port.name, vlan) for port in rows.ports
             for vlan, bound in _bindings(port).items() if bound is ls]
    for table, macs in (("Ucast_Macs_Local", rows.ucast_local), ("Mcast_Macs_Local", rows.mcast_local),
                        ("Ucast_Macs_Remote", rows.ucast_remote), ("Mcast_Macs_Remote", rows.mcast_remote)):
        count = sum(1 for row in macs if _one(row.logical_switch) is ls)
        if count:
            found.append("%d %s" % (count, table))
    return found


def _plan_removals(wanted: set[int], ours: dict, rows: VtepRows, plan: VtepPlan) -> None:
    """Delete Canopy's switches no longer wanted, once nothing references them."""
    for vni, ls in sorted(ours.items()):
        if vni in wanted:
            continue
        referrers = _referrers(ls, rows)
        if referrers:
            plan.waiting.append("removing %s once unreferenced (%s)" % (ls.name, ", ".join(referrers)))
        else:
            plan.ls_delete.append(ls)

