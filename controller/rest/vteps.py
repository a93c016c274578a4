"""REST view of hardware VTEPs: each switch, its ports and bindings, local and remote MACs, connection."""

from __future__ import annotations

from controller.derive import vtep_desired
from controller.rest.api import ApiError, Response, Route


def routes(state, programmer) -> list[Route]:
    def listing(req):
        known = _Known(state, programmer.view)
        items = [_vtep_view(state, programmer, known, name) for name in _names(state)]
        return Response(200, {"items": items, "count": len(items)})

    def one(req, name):
        if name not in _names(state):
            raise ApiError(404, "not_found", f"no hardware VTEP named {name!r} is connected or bound")
        return Response(200, _vtep_view(state, programmer, _Known(state, programmer.view), name))

    return [Route("GET", "/v1/vteps", listing, "hardware VTEPs: connection, ports, bindings, local and remote MACs"),
            Route("GET", "/v1/vteps/{name}", one, "one hardware VTEP by its Physical_Switch name")]


def _names(state):
    return sorted({s.name for s in state.vteps.values()} | {b["switch"] for b in state.policy.all("vtep_binding")})


class _Known:
    """What every VTEP of one request looks up, indexed once (not once per VTEP): connected VTEPs by name, the
    policy's and the View's subnets by VNI, the bindings per switch in (port, VLAN) order."""

    def __init__(self, state, view):
        self.snaps = {s.name: s for s in state.vteps.values()}
        self.subnets = {s["vni"]: s for s in state.policy.all("subnet")}
        self.view_subnets = {s.vni: s for s in view.subnets.values()}
        self.bindings: dict[str, list] = {}
        for b in sorted(state.policy.all("vtep_binding"), key=lambda b: (b["port"], b["vlan"])):
            self.bindings.setdefault(b["switch"], []).append(b)


def _vtep_view(state, programmer, known: _Known, name):
    snap = known.snaps.get(name)
    desired = _rows(state, programmer, name)
    bindings = []
    for b in known.bindings.get(name, ()):
        sub = state.policy.get("subnet", b["subnet_id"])
        seen = snap and any(p.name == b["port"] and (b["vlan"], sub["vni"]) in p.vlan_bindings for p in snap.ports)
        bindings.append({"id": b["id"], "port": b["port"], "vlan": b["vlan"],
                         "subnet": {"id": sub["id"], "ref": state.policy.ref("subnet", sub), "vni": sub["vni"]},
                         "programmed": bool(seen)})

    def subnet_ref(vni):
        sub = known.subnets.get(vni)
        return state.policy.ref("subnet", sub) if sub else None

    return {
        "name": name, "connected": snap is not None,
        "ovsdb": {"session": snap.session, "peer": snap.peer} if snap else None,
        "tunnel_ips": list(snap.tunnel_ips) if snap else [], "description": snap.description if snap else None,
        "ports": [{"name": p.name, "vlan_bindings": [{"vlan": v, "vni": n, "subnet": subnet_ref(n)}
                                                      for v, n in p.vlan_bindings]} for p in snap.ports] if snap else [],
        "bindings": bindings,
        "local_macs": [{"mac": m.mac, "vni": m.vni, "subnet": subnet_ref(m.vni), "ip": m.ip, "locator": m.locator}
                       for m in snap.local_macs] if snap else [],
        "remote_macs": [{"mac": mac, "vni": vni, "subnet": subnet_ref(vni), "ip": ip, "locator": loc}
                        for vni, mac, ip, loc in desired.remote_macs],
        "flood": [{"vni": vni, "subnet": subnet_ref(vni), "locators": list(locs)} for vni, locs in desired.flood],
        "gateways": _gateways(state, programmer.view, known, desired),
    }


def _rows(state, programmer, name):
    """The VTEP's desired rows as the programming pass keeps and pushes them (controller/viewvteps.py; after every
    pass equal to ``vtep_desired`` over the View: tests/unit/test_incremental_oracle.py), not computed per request
    (VTEPs x endpoints of their subnets); computed only for a VTEP no pass has seen yet (bound or connected since)."""
    rows = programmer.vteps.desired.get(name)
    return rows if rows is not None else vtep_desired(programmer.view, state.policy, name)


def _gateways(state, view, known: _Known, desired):
    """Per bound subnet, the VRS that answers ARP and DHCP and routes for its bare metal (docs/vtep.md)."""
    out = []
    for vni in desired.logical_switches:
        sub = known.view_subnets.get(vni)
        session = view.bm_gateways.get(sub.id) if sub else None
        sw = view.switches.get(session)
        if sw is not None:
            out.append({"vni": vni, "subnet": state.policy.ref("subnet", state.policy.get("subnet", sub.id)),
                        "chassis": sw.chassis, "vtep_ip": sw.vtep_ip})
    return out
