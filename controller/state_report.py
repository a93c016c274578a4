"""What State reports about vports and switches, for REST: a vport's binding status, every VRS joined on its datapath.

``StateReport`` is State's read side (controller/state.py ``State`` inherits it): it reads ``locations``,
``mismatched``, ``vrs``, ``datapaths`` and the policy, and changes nothing (but for logging the Hyper-V vports a KVM
vport's iface-id keeps from a port, once: ``_warn_conflicts``).
"""

from __future__ import annotations

import bisect
import logging

log = logging.getLogger("canopy.state")

MAX_ROWS = 64  # Ucast_Macs_Local rows of one MAC in one VNI read (one per IP address the switch pairs it with)


def _vni_mac(mac) -> tuple:
    return (mac.vni, mac.mac)


def _no_tick(units: int = 1) -> None:
    pass


def dpid_str(dpid: int | None) -> str | None:
    return None if dpid is None else f"{dpid:016x}"


class StateReport:
    """A vport's status and the switches' listing (module docstring)."""

    def vport_status(self, vid: str) -> dict:
        """{"status": bound|mac_mismatch|unbound, "location", "mac_mismatch", "migration"} for REST ("migration":
        a bound vport's live migration in flight, controller/state_activation.py ``migration_of``); a baremetal
        vport also "learnt_on": where hardware VTEPs report its MAC (``vtep_places``), bound once one does."""
        loc = self.locations.get(vid)
        if loc is not None:
            return {"status": "bound", "location": loc.to_json(), "mac_mismatch": None,
                    "migration": self.migration_of(vid)}
        loc, vport = self.mismatched.get(vid), self.policy.get("vport", vid)
        status, mismatch = _refused(vport, loc) if loc is not None else ("unbound", None)
        if status == "mac_mismatch":
            return {"status": status, "location": loc.to_json(), "mac_mismatch": mismatch, "migration": None}
        if vport is not None and (vport.get("binding") or {}).get("flavour") == "baremetal":
            places = self.vtep_places(vport)
            return {"status": "bound" if places else "unbound", "location": places[0] if places else None,
                    "mac_mismatch": None, "learnt_on": places, "migration": None}
        return {"status": "unbound", "location": None, "mac_mismatch": None, "migration": None,
                **self._conflicts_view(vid)}

    def _conflicts_view(self, vid: str) -> dict:
        """``port_conflicts`` of an unbound Hyper-V vport whose port name shows on a port that a KVM vport's iface-id
        takes (controller/binding.py ``conflicting``): [{chassis, port, taken_by}]; nothing when there is none."""
        taken = self.index.port_conflicts(vid)
        if not taken:
            return {}
        return {"port_conflicts": [{"chassis": self.vrs[s].chassis if s in self.vrs else s, "port": name,
                                    "taken_by": self._ref_of(other)} for s, name, other in taken]}

    def _ref_of(self, vid: str) -> str:
        vport = self.policy.get("vport", vid)
        return self.policy.ref("vport", vport) if vport else vid

    def _warn_conflicts(self) -> None:
        """Each Hyper-V vport newly refused a port whose iface-id names a KVM vport, logged once."""
        for vid, taken in self.index.new_conflicts:
            if vid not in self.policy.objects["vport"]:
                continue
            for session, name, other in taken:
                snap = self.vrs.get(session)
                log.warning("vport %s (Hyper-V, port name %s) not bound on %s: the port's iface-id names vport %s, "
                            "which takes it (one port cannot hold two vports; docs/vrs.md)", self._ref_of(vid), name,
                            snap.chassis if snap is not None else session, self._ref_of(other))
        self.index.new_conflicts.clear()

    def vtep_places(self, vport) -> list[dict]:
        """Where hardware VTEPs report a bare-metal vport's MAC (Ucast_Macs_Local) in its subnet's VNI, by VTEP name:
        the VTEP, and its port and VLAN when one port of it binds that VNI (else None, ``ports`` lists those that
        do). Two places: two VTEPs claim the MAC, a conflict the operator must see. A bisection per VTEP."""
        subnet = self.policy.get("subnet", vport.get("subnet_id"))
        vni = subnet.get("vni") if subnet is not None else None
        if vni is None or not isinstance(vport.get("mac"), str):
            return []
        mac, out = vport["mac"].lower(), []
        for snap in sorted(getattr(self, "vteps", {}).values(), key=lambda snap: snap.name):
            macs = snap.local_macs
            at = bisect.bisect_left(macs, (vni, mac), key=_vni_mac)
            rows = [m for m in macs[at:at + MAX_ROWS] if (m.vni, m.mac) == (vni, mac)]
            if not rows:
                continue
            ports = [{"port": p.name, "vlan": vlan} for p in snap.ports for vlan, bound in p.vlan_bindings
                     if bound == vni]
            one = ports[0] if len(ports) == 1 else {"port": None, "vlan": None}
            out.append({"chassis": None, "datapath_id": None, "ofport": None, "flavour": "baremetal", "mac_seen": mac,
                        "vtep": snap.name, **one, "ports": ports, "vni": vni,
                        "ips": sorted({m.ip for m in rows if m.ip}), "locators": sorted({m.locator for m in rows})})
        return out

    def switches(self, tick=_no_tick, datapath_id: int | None = None, ports: bool = True) -> list[dict]:
        """Every VRS known over OVSDB or OpenFlow, joined on the integration bridge's datapath id; ``datapath_id``:
        only that one's (one switch's view does not describe every other's ports); ``ports`` False: each one's
        ``ports`` None, neither they nor where vports are bound looked at. ``tick()``: once a port described
        (a controller/pacer.py ``Pacer.tick``: it may pause); the switches, their snapshots and OpenFlow connections,
        the policy (a value: a change makes a new one) and where vports are bound (or refused for their MAC) are
        taken first, so a change meanwhile is in the next answer, not half in this one
        (tests/unit/test_rest_snapshots.py)."""
        out, covered = [], set()
        vrs = [snap for snap in self.vrs.values() if datapath_id is None or snap.datapath_id == datapath_id]
        bound = self._bound_on({snap.session for snap in vrs}) if ports else None
        datapaths = sorted((dpid, of) for dpid, of in self.datapaths.items()
                           if datapath_id is None or dpid == datapath_id)
        connected, policy = dict(datapaths), self.policy
        for snap in sorted(vrs, key=lambda snap: snap.chassis):
            of = connected.get(snap.datapath_id) if snap.datapath_id is not None else None
            covered.add(snap.datapath_id)
            out.append(self._switch_view(snap, of, _Briefs(policy, bound, snap.session) if ports else None, tick))
        for dpid, of in datapaths:
            if dpid not in covered:
                out.append({"datapath_id": dpid_str(dpid), "name": None, "chassis": None, "flavour": None,
                            "vtep_ip": None, "bridge": None, "openflow": _of_view(of), "ovsdb": None,
                            "ports": [] if ports else None})
        return out

    def _bound_on(self, sessions: set) -> dict:
        """A port's vport on ``sessions``: (session, port, VLAN) -> (its id, its Location where the hypervisor reports
        another MAC, else None)."""
        bound = {(loc.session, loc.port, loc.vlan): (vid, loc) for vid, loc in self.mismatched.items()
                 if loc.session in sessions}
        bound.update({(loc.session, loc.port, loc.vlan): (vid, None) for vid, loc in self.locations.items()
                      if loc.session in sessions})
        return bound

    def _switch_view(self, snap, of, briefs: "_Briefs | None", tick=_no_tick):
        """One VRS's view; ``briefs`` None: without its ports."""
        ports = [] if briefs is not None else None
        for p in snap.ports if briefs is not None else ():
            tick()
            vnics = p.vnic_vlans()
            entry = {"name": p.name, "ofport": p.ofport, "mac": p.mac, "iface_id": p.ext("iface-id"),
                     "vport": briefs.of(p.name, None)}
            if vnics or self.flavour_of(snap) == "esxi":
                entry["vnics"] = [{"vlan": vlan, "vnic_id": vnic, "vport": briefs.of(p.name, vlan)}
                                  for vlan, vnic in sorted(vnics.items())]
            ports.append(entry)
        return {"datapath_id": dpid_str(snap.datapath_id), "name": snap.hostname or snap.chassis,
                "chassis": snap.chassis, "flavour": self.flavour_of(snap), "vtep_ip": self.vtep_ip_of(snap),
                "bridge": snap.bridge, "bridge_present": snap.bridge_present,
                "bridge_safety": _safety_view(snap),
                "openflow": _of_view(of),
                "ovsdb": {"connected": True, "peer": snap.peer, "since": self.vrs_since.get(snap.session),
                          "ovs_version": snap.ovs_version},
                "ports": ports}


class _Briefs:
    """The vports on one switch's ports as ``switches`` took them (``bound``: (session, port, VLAN) -> (vport id, its
    Location when refused for its MAC, else None), with ``policy``): what ``vport_status`` says of them then."""

    def __init__(self, policy, bound: dict, session: str):
        self.policy, self.bound, self.session = policy, bound, session

    def of(self, port: str, vlan: int | None) -> dict | None:
        taken = self.bound.get((self.session, port, vlan))
        if taken is None:
            return None
        vid, refused = taken
        vport = self.policy.get("vport", vid)
        status, mismatch = ("bound", None) if refused is None else _refused(vport, refused)
        return {"id": vid, "ref": self.policy.ref("vport", vport) if vport else None, "status": status,
                "mac_mismatch": mismatch}


def _refused(vport: dict | None, loc) -> tuple[str, dict | None]:
    """(status, mac_mismatch) of a vport refused for its MAC at ``loc`` (``vport``: its policy, None once deleted):
    "mac_mismatch", with the MAC its policy gives and the one the hypervisor reports, while it exists; else "unbound".
    """
    if vport is None:
        return "unbound", None
    return "mac_mismatch", {"policy": vport["mac"], "hypervisor": loc.attached_mac}


def _safety_view(snap):
    """Whether the integration bridge is fail-secure with the OpenFlow versions Canopy needs (None while
    the bridge is absent); ``problems`` says what is not."""
    if not snap.bridge_present:
        return None
    problems = snap.bridge_problems()
    return {"safe": not problems, "fail_mode": snap.fail_mode or None, "protocols": list(snap.protocols),
            "problems": list(problems)}


def _of_view(of):
    if of is None:
        return {"connected": False}
    return {"connected": True, "peer": of["peer"], "since": of["since"]}
