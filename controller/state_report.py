"""What State reports about vports and switches, for REST: a vport's binding status, every VRS joined on its datapath.

``StateReport`` is State's read side (controller/state.py ``State`` inherits it): it reads ``locations``,
``mismatched``, ``vrs``, ``datapaths`` and the policy, and changes nothing.
"""

from __future__ import annotations


def dpid_str(dpid: int | None) -> str | None:
    return None if dpid is None else f"{dpid:016x}"


class StateReport:
    """A vport's status and the switches' listing (module docstring)."""

    def vport_status(self, vid: str) -> dict:
        """{"status": bound|mac_mismatch|unbound, "location", "mac_mismatch"} for REST."""
        loc = self.locations.get(vid)
        if loc is not None:
            return {"status": "bound", "location": loc.to_json(), "mac_mismatch": None}
        loc = self.mismatched.get(vid)
        vport = self.policy.get("vport", vid)
        if loc is not None and vport is not None:
            return {"status": "mac_mismatch", "location": loc.to_json(),
                    "mac_mismatch": {"policy": vport["mac"], "hypervisor": loc.attached_mac}}
        return {"status": "unbound", "location": None, "mac_mismatch": None}

    def switches(self) -> list[dict]:
        """Every VRS known over OVSDB or OpenFlow, joined on the integration bridge's datapath id."""
        out, covered = [], set()
        bound = {(loc.session, loc.port, loc.vlan): vid
                 for located in (self.mismatched, self.locations) for vid, loc in located.items()}
        for session, snap in sorted(self.vrs.items(), key=lambda kv: kv[1].chassis):
            of = self.datapaths.get(snap.datapath_id) if snap.datapath_id is not None else None
            covered.add(snap.datapath_id)
            out.append(self._switch_view(snap, of, bound))
        for dpid, of in sorted(self.datapaths.items()):
            if dpid not in covered:
                out.append({"datapath_id": dpid_str(dpid), "name": None, "chassis": None, "flavour": None,
                            "vtep_ip": None, "bridge": None, "openflow": _of_view(of), "ovsdb": None, "ports": []})
        return out

    def _switch_view(self, snap, of, bound):
        ports = []
        for p in snap.ports:
            vnics = p.vnic_vlans()
            entry = {"name": p.name, "ofport": p.ofport, "mac": p.mac, "iface_id": p.ext("iface-id"),
                     "vport": self._vport_brief(bound.get((snap.session, p.name, None)))}
            if vnics or self.flavour_of(snap) == "esxi":
                entry["vnics"] = [{"vlan": vlan, "vnic_id": vnic,
                                   "vport": self._vport_brief(bound.get((snap.session, p.name, vlan)))}
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

    def _vport_brief(self, vid):
        if vid is None:
            return None
        vport = self.policy.get("vport", vid)
        status = self.vport_status(vid)
        return {"id": vid, "ref": self.policy.ref("vport", vport) if vport else None, "status": status["status"],
                "mac_mismatch": status["mac_mismatch"]}


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
