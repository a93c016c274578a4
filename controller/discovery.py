"""What Canopy has discovered about virtual switches (VRS), as plain immutable values.

The OVSDB side (ovsdb/vrs.py) turns each hypervisor's Open_vSwitch database into one ``VrsSnapshot``
and hands it to State; the OpenFlow side reports datapaths connecting and leaving. Neither side
programs anything: State derives vport locations from these facts (controller/binding.py).

OVSDB conventions Canopy reads (documented for operators in docs/vrs.md):

- ``Open_vSwitch`` row ``external_ids:system-id``: the chassis name (falls back to the hostname).
- ``Open_vSwitch`` row ``external_ids:hostname``: shown in REST.
- ``Open_vSwitch`` row ``external_ids:canopy-vtep-ip``: the VTEP (tunnel) IP of this VRS.
- ``Open_vSwitch`` row ``external_ids:canopy-flavour``: ``kvm`` | ``hyperv`` | ``esxi``.
- The integration bridge (``br-int`` unless configured) and its ports/interfaces.
- ESXi trunk interfaces: ``external_ids:canopy-vnic-<VLAN>=<vnic id>`` written by the vCenter agent.
- The metadata agent's internal port: ``external_ids:canopy-metadata-agent=true`` on its Interface
  (controller/metadata_agent.py creates it; openflow/metadata.py steers the VMs' metadata requests to it).
- The integration bridge's ``fail_mode`` and ``protocols``: it is safe (``bridge_problems``) with
  ``fail_mode=secure`` and OpenFlow 1.3 and 1.4 allowed (ovsdb/bridge.py keeps it so).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field

from controller.frozen import cached_attribute

FLAVOURS = ("kvm", "hyperv", "esxi")

VTEP_IP_KEY = "canopy-vtep-ip"
FLAVOUR_KEY = "canopy-flavour"
VNIC_KEY_PREFIX = "canopy-vnic-"
METADATA_AGENT_KEY = "canopy-metadata-agent"
SECURE_FAIL_MODE = "secure"
REQUIRED_PROTOCOLS = ("OpenFlow13", "OpenFlow14")  # the floor, and native bundles / role status


def bridge_problems(fail_mode: str, protocols) -> tuple[str, ...]:
    """Why an integration bridge with this ``fail_mode`` and ``protocols`` is not safe, as readable
    phrases; empty when it is. Standalone (the default when unset) turns the bridge into a learning
    switch after a controller outage, across tenants, and flushes the flow table; without OpenFlow 1.3
    and 1.4 Canopy cannot program it as it should."""
    found = []
    if fail_mode != SECURE_FAIL_MODE:
        found.append("fail_mode is %s, not secure (after a controller outage OVS would flush the flows and "
                     "switch frames between tenants)" % (fail_mode or "unset, i.e. standalone"))
    missing = [p for p in REQUIRED_PROTOCOLS if protocols and p not in protocols]
    if not protocols:
        found.append("protocols is empty (OVS defaults) rather than listing %s" % ", ".join(REQUIRED_PROTOCOLS))
    elif missing:
        found.append("protocols %s lack %s" % (",".join(sorted(protocols)), ", ".join(missing)))
    return tuple(found)


@dataclass(frozen=True)
class PortInfo:
    """One OVS Interface on the integration bridge."""

    name: str
    ofport: int | None = None
    mac: str | None = None  # external_ids:attached-mac, else mac_in_use
    external_ids: tuple[tuple[str, str], ...] = ()
    type: str = ""

    def ext(self, key: str) -> str | None:
        return self._ext.get(key)

    @cached_attribute  # (controller/frozen.py: no lock)
    def _ext(self) -> dict[str, str]:
        return dict(self.external_ids)

    def vnic_vlans(self) -> dict[int, str]:
        """ESXi agent keys on a trunk port: {vlan: vnic id}. Malformed keys are ignored."""
        out = {}
        for k, v in self.external_ids:
            if k.startswith(VNIC_KEY_PREFIX):
                tail = k[len(VNIC_KEY_PREFIX):]
                if tail.isascii() and tail.isdigit() and 1 <= int(tail) <= 4094 and v:  # not '²'
                    out[int(tail)] = v
        return out


@dataclass(frozen=True)
class VrsSnapshot:
    """Everything one OVSDB session currently says about its hypervisor."""

    session: str  # the switch key: opaque, stable across OVSDB reconnects (ovsdb/claims.py: "vrs:<chassis>")
    peer: str  # remote address "ip:port"
    chassis: str  # system-id, else hostname, else peer ip
    hostname: str = ""
    flavour: str | None = None  # from external_ids:canopy-flavour, None when absent/invalid
    vtep_ip: str | None = None  # from external_ids:canopy-vtep-ip, None when absent/invalid
    bridge: str = "br-int"
    bridge_present: bool = False
    datapath_id: int | None = None  # Bridge.datapath_id parsed from hex
    # Open_vSwitch.ovs_version: written by ovs-ctl when it starts OVS, not by ovs-vswitchd itself; None when OVS was
    # started without ovs-ctl (the column is empty) or the row is not read yet
    ovs_version: str | None = None
    ports: tuple[PortInfo, ...] = field(default_factory=tuple)
    controllers: tuple[tuple[str, bool, str], ...] = ()  # (target, is_connected, role) of the bridge's controllers
    fail_mode: str = ""  # the bridge's fail_mode ("" when unset: OVS then runs it standalone)
    protocols: tuple[str, ...] = ()  # the bridge's OpenFlow protocols, sorted ("" set: OVS defaults)
    # Names of the ports whose PortInfo differs from the previous snapshot of this switch (None: unknown,
    # treat every port as changed). A PortInfo that did not change is the same object as before. Not part
    # of the value: two snapshots of the same rows are equal whatever they say changed.
    changed: frozenset[str] | None = field(default=None, compare=False)
    # The PortInfo of each port named in ``changed`` that is on the bridge (a name absent here: that port went),
    # so that whoever applies the change finds its ports without a pass over ``ports``; None: not given.
    # Not part of the value either.
    changed_ports: Mapping[str, PortInfo] | None = field(default=None, compare=False, repr=False)

    def ports_named(self, names) -> dict[str, PortInfo]:
        """{name: PortInfo} of the ports among ``names`` on the bridge: by ``changed_ports`` when they are all
        in ``changed`` (work proportional to ``names``), else one pass over ``ports``."""
        known, changed = self.changed_ports, self.changed
        if known is not None and changed is not None and changed.issuperset(names):
            if not known:  # (10,000 ports gone: none of them on the bridge, and no walk of their names)
                return {}
            present = list(filter(known.__contains__, names))  # (C loops: 10,000 new ports, ~4 ms in a dict display)
            return dict(zip(present, map(known.__getitem__, present)))
        return {p.name: p for p in self.ports if p.name in names}

    def bridge_problems(self) -> tuple[str, ...]:
        """Why the integration bridge is not safe (see ``bridge_problems``); empty when it is or is absent."""
        return bridge_problems(self.fail_mode, self.protocols) if self.bridge_present else ()

    def other_master(self) -> bool:
        """Whether the switch reports a connected controller in the master role (not us, if we are not)."""
        return any(connected and role == "master" for _target, connected, role in self.controllers)

    def roles_unpublished(self) -> bool:
        """Whether the switch cannot be judged yet: none of its controllers has a role. OVS (3.1) writes a
        controller's role (and is_connected) with its status, a moment after the connection comes up, and clears
        it when the connection drops; a passive target (``ptcp:``) never has one. So a switch that has published
        shows the role of every connected controller, this node's own among them, and one whose active just died
        still shows this node's: only a switch none of whose connections is published yet shows none."""
        return bool(self.controllers) and not any(role for _target, _connected, role in self.controllers)


@dataclass(frozen=True)
class VtepMac:
    """A MAC a hardware VTEP learned on its ports (Ucast_Macs_Local)."""

    mac: str  # lowercase
    vni: int  # tunnel_key of its Logical_Switch
    ip: str | None  # ipaddr column, when the switch fills it
    locator: str  # the tunnel IP (Physical_Locator dst_ip) to reach it


def mac_order(mac: VtepMac) -> tuple:
    """The order of ``VtepSnapshot.local_macs``: by VNI, then MAC (``macs_of`` bisects it by VNI)."""
    return (mac.vni, mac.mac, mac.ip or "", mac.locator)


@dataclass(frozen=True)
class VtepPort:
    name: str
    vlan_bindings: tuple[tuple[int, int], ...] = ()  # (vlan, vni of the bound Logical_Switch), sorted


@dataclass(frozen=True)
class VtepSnapshot:
    """Everything the hardware_vtep OVSDB session speaking for a physical switch says about it."""

    session: str  # the switch key: opaque, stable across OVSDB reconnects (ovsdb/claims.py: "vtep:<name>")
    peer: str
    name: str  # Physical_Switch name (what vtep bindings in policy refer to)
    tunnel_ips: tuple[str, ...] = ()
    management_ips: tuple[str, ...] = ()
    description: str = ""
    ports: tuple[VtepPort, ...] = ()
    local_macs: tuple[VtepMac, ...] = ()  # sorted by mac_order (vni, mac, ip, locator), whatever order is given
    # The local MACs added or removed since the previous snapshot of this switch (None: unknown, treat every
    # MAC as changed). Not part of the value: two snapshots of the same rows are equal whatever they say changed.
    changed: frozenset[VtepMac] | None = field(default=None, compare=False)

    def __post_init__(self):
        # By construction, not by each builder's care: macs_of bisects local_macs by VNI, and two snapshots of the
        # same MACs must be equal. Sorting MACs already in order is one pass (what the OVSDB side hands over).
        object.__setattr__(self, "local_macs", tuple(sorted(self.local_macs, key=mac_order)))

    def macs_of(self, vni: int) -> tuple[VtepMac, ...]:
        """The local MACs of one VNI, sorted (a slice of ``local_macs``: work proportional to the result)."""
        macs = self.local_macs
        lo = bisect.bisect_left(macs, vni, key=lambda m: m.vni)
        hi = bisect.bisect_right(macs, vni, lo=lo, key=lambda m: m.vni)
        return macs[lo:hi]

    def same_switch(self, other: "VtepSnapshot | None") -> bool:
        """Whether ``other`` says the same as this one but for its local MACs (and the peer address)."""
        return other is not None and (self.name, self.tunnel_ips, self.management_ips, self.description,
                                      self.ports) == (other.name, other.tunnel_ips, other.management_ips,
                                                      other.description, other.ports)

    @property
    def tunnel_ip(self) -> str | None:
        return self.tunnel_ips[0] if self.tunnel_ips else None


@dataclass(frozen=True)
class VtepDesired:
    """What Canopy wants in one hardware VTEP's database (ovsdb/vtep.py makes it so).

    Logical switches are named ``canopy-<VNI>`` with tunnel_key = VNI; only those are Canopy's.
    """

    logical_switches: tuple[int, ...] = ()  # VNIs
    bindings: tuple[tuple[str, int, int], ...] = ()  # (physical port, vlan, vni)
    remote_macs: tuple[tuple[int, str, str | None, str], ...] = ()  # (vni, mac, ip, locator ip)
    flood: tuple[tuple[int, tuple[str, ...]], ...] = ()  # (vni, locator ips) for Mcast_Macs_Remote unknown-dst


class DiscoverySink:
    """What State offers to event sources. ovsdb/ and the Ryu app call only these."""

    def vrs_update(self, snap: VrsSnapshot) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def vrs_gone(self, session: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def vrs_leaving(self, session: str, names) -> None:
        """The ports ``names`` of switch ``session`` are being deleted by an update its next reports take in (a hint:
        nothing changes until those reports; controller/state_leaving.py). Default: ignored."""

    def vrs_left(self, session: str, names) -> None:
        """The ports ``names`` told ``vrs_leaving`` are no longer leaving (their update is reported, or its session
        ended first). Default: ignored."""

    def vtep_update(self, snap: VtepSnapshot) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def vtep_gone(self, session: str) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def datapath_up(self, dpid: int, peer: str, conn=None) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def datapath_down(self, dpid: int, conn=None) -> None:  # pragma: no cover - interface
        raise NotImplementedError
