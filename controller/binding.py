"""Where each vport is: a pure function of the policy and what discovery has seen.

A vport is located when a VRS shows the port its binding names:
- kvm:    an interface on the integration bridge with ``external_ids:iface-id`` = binding.iface_id (any VRS);
- hyperv: an interface named binding.port_name on a VRS of flavour hyperv (the port name is the identity);
- esxi:   on a VRS of flavour esxi, a trunk interface whose ``external_ids:canopy-vnic-<VLAN>`` = binding.vnic_id
          (written by the vCenter agent), or the static host/trunk_port/vlan of the binding.
When the same vport shows up in two places (a migration in flight), the most recent appearance wins.

A located vport is bound only when the hypervisor does not contradict its MAC: when the port's
``external_ids:attached-mac`` (libvirt/Nova, os-vif on Hyper-V) names another MAC than the vport's policy MAC,
the vport is a MAC mismatch instead (``partition``) and is not programmed: port security would drop every
frame the VM sends from its real MAC anyway, and the switch would answer ARP and advertise (EVPN) a MAC the
VM does not have. The port's own ``mac_in_use`` is not compared: on KVM it is the tap device's MAC
(fe:..), never the VM's. ESXi trunk ports carry no per-vNIC MAC.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from controller.discovery import VrsSnapshot
from controller.fields import Invalid, mac as parse_mac
from controller.model import binding_key, esxi_static_key


@dataclass(frozen=True)
class Location:
    vport_id: str
    session: str
    chassis: str
    datapath_id: int | None
    port: str
    ofport: int | None
    vlan: int | None
    flavour: str
    mac_seen: str | None  # the MAC the hypervisor reports for the port, if any
    attached_mac: str | None = None  # external_ids:attached-mac, normalised: the VM's MAC per the hypervisor

    def to_json(self):
        return {"chassis": self.chassis, "datapath_id": _dpid(self.datapath_id), "port": self.port,
                "ofport": self.ofport, "vlan": self.vlan, "flavour": self.flavour, "mac_seen": self.mac_seen}


def _dpid(dpid):
    return None if dpid is None else f"{dpid:016x}"


def resolve(policy, snapshots: dict[str, VrsSnapshot], flavour_of, seen_order) -> dict[str, Location]:
    """vport id -> Location. ``flavour_of(snap)`` gives a VRS's effective flavour; ``seen_order(session,
    port, vlan)`` a number that grows with the time the port appeared there (the latest appearance wins)."""
    by_key = {binding_key(v): v for v in policy.all("vport")}
    static = defaultdict(list)  # (host, trunk port) -> [(vlan, vport)]
    for v in policy.all("vport"):
        skey = esxi_static_key(v)
        if skey:
            static[skey[:2]].append((skey[2], v))
    found: dict[str, tuple[int, Location]] = {}
    for snap in snapshots.values():
        flavour = flavour_of(snap)
        for vport, port, vlan in _hits(snap, flavour, by_key, static):
            loc = Location(vport["id"], snap.session, snap.chassis, snap.datapath_id, port.name, port.ofport, vlan,
                           flavour, port.mac, None if vlan is not None else attached_mac(port))
            order = seen_order(snap.session, port.name, vlan)
            if vport["id"] not in found or order > found[vport["id"]][0]:
                found[vport["id"]] = (order, loc)
    return {vid: loc for vid, (_, loc) in found.items()}


def attached_mac(port) -> str | None:
    """The port's ``external_ids:attached-mac`` normalised (Hyper-V's dashes too); None when absent or not a
    unicast MAC (nothing reliable to compare)."""
    raw = port.ext("attached-mac")
    try:
        return parse_mac(raw) if raw else None
    except Invalid:
        return None


def partition(policy, found: dict[str, Location]) -> tuple[dict[str, Location], dict[str, Location]]:
    """(bound, mac mismatches): a location is a mismatch when the hypervisor reports a MAC for the VM that
    is not the vport's policy MAC."""
    bound, mismatched = {}, {}
    for vid, loc in found.items():
        vport = policy.get("vport", vid)
        wrong = vport is not None and loc.attached_mac is not None and loc.attached_mac != vport["mac"]
        (mismatched if wrong else bound)[vid] = loc
    return bound, mismatched


def _hits(snap, flavour, by_key, static):
    """(vport, port, vlan) for every vport this VRS shows."""
    for port in snap.ports:
        iface_id = port.ext("iface-id")
        if iface_id and ("kvm", iface_id) in by_key:
            yield by_key[("kvm", iface_id)], port, None
        if flavour == "hyperv" and ("hyperv", port.name) in by_key:
            yield by_key[("hyperv", port.name)], port, None
        if flavour == "esxi":
            for vlan, vnic in port.vnic_vlans().items():
                if ("esxi", vnic) in by_key:
                    yield by_key[("esxi", vnic)], port, vlan
            for vlan, vport in static.get((snap.chassis, port.name), ()):
                yield vport, port, vlan
