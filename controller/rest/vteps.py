"""REST view of hardware VTEPs: each switch, its ports and bindings, local and remote MACs, connection.

An answer grows with the MACs of the VTEPs' subnets (10,000 remote MACs: 7-12 ms of views in one stretch): it waits
for its turn of the REST lane (controller/rest/lane.py), then pauses every VTEPS_EVERY MACs, bindings or ports made
into views, as the big listings do. What it reads is taken before the first pause (``_Known``: the connected
VTEPs' snapshots, the policy's subnets and bindings) or immutable (the desired rows the passes keep: a VTEP's
``VtepDesired`` is replaced, never changed), so a change meanwhile is in the next answer, never half in this one.
"""

from __future__ import annotations

from controller.derive import vtep_desired
from controller.pacer import collector_paused
from controller.rest.lane import answer_pacer
from controller.rest.wire import ApiError, Response, Route
from openflow.installed import paced

VTEPS_EVERY = 1000  # MACs, bindings and ports made into views between two pauses of GET /v1/vteps (a few ms)
CHUNK = 100  # views made between two ticks


def routes(state, programmer, pause=None, budget: float | None = None, programmed=None) -> list[Route]:
    """``pause``: a turn for the event loop (the REST lane's), taken first and every VTEPS_EVERY views (None:
    never), and once ``budget`` seconds have run (controller/rest/lane.py ``answer_pacer``; None: by the count only).
    ``programmed(name)``: the newest policy seq a VTEP is known to hold (controller/programmed.py), None: unknown."""
    seq_of = programmed or (lambda name: None)

    def listing(req):
        pacer = answer_pacer(pause, VTEPS_EVERY, budget)
        pacer.tick(VTEPS_EVERY)  # waits for its turn (controller/rest/lane.py), the collector not held off meanwhile
        with collector_paused():  # thousands of young dicts (controller/rest/dataplane.py's listing)
            known = _Known(state, programmer.view)
            items = [_vtep_view(state, programmer, known, name, pacer.tick, seq_of) for name in _names(state)]
        return Response(200, {"items": items, "count": len(items)})

    def one(req, name):
        if name not in _names(state):
            raise ApiError(404, "not_found", f"no hardware VTEP named {name!r} is connected or bound")
        pacer = answer_pacer(pause, VTEPS_EVERY, budget)
        pacer.tick(VTEPS_EVERY)
        with collector_paused():
            return Response(200, _vtep_view(state, programmer, _Known(state, programmer.view), name, pacer.tick,
                                            seq_of))

    return [Route("GET", "/v1/vteps", listing, "hardware VTEPs: connection, ports, bindings, local and remote MACs"),
            Route("GET", "/v1/vteps/{name}", one, "one hardware VTEP by its Physical_Switch name")]


def _names(state):
    return sorted({s.name for s in state.vteps.values()} | {b["switch"] for b in state.policy.all("vtep_binding")})


class _Known:
    """What every VTEP of one request looks up, indexed once (not once per VTEP) and taken before its first pause:
    connected VTEPs by name, the policy's subnets by id and by VNI (with their refs, each made once) and the View's
    by VNI, the bindings per switch in (port, VLAN) order."""

    def __init__(self, state, view):
        self.snaps = {s.name: s for s in state.vteps.values()}
        self.by_id = {s["id"]: s for s in state.policy.all("subnet")}
        self.subnets = {s["vni"]: s for s in self.by_id.values()}
        self.refs = {s["vni"]: state.policy.ref("subnet", s) for s in self.by_id.values()}
        self.view, self.view_subnets = view, {s.vni: s for s in view.subnets.values()}
        self.bindings: dict[str, list] = {}
        for b in sorted(state.policy.all("vtep_binding"), key=lambda b: (b["port"], b["vlan"])):
            self.bindings.setdefault(b["switch"], []).append(b)

    def subnet_ref(self, vni):
        return self.refs.get(vni)


def _vtep_view(state, programmer, known: _Known, name, tick=lambda n: None, seq_of=lambda name: None):
    """One VTEP's answer; ``tick(n)``: ``n`` more views made (a controller/pacer.py ``Pacer.tick``: it may pause)."""
    snap = known.snaps.get(name)
    programmed = seq_of(name) if snap else None  # (before the pauses)
    desired = _rows(state, programmer, name)
    ref = known.subnet_ref
    bindings = []
    for b in paced(known.bindings.get(name, ()), tick, CHUNK):
        sub = known.by_id[b["subnet_id"]]  # a binding's subnet exists while it does (taken together)
        seen = snap and any(p.name == b["port"] and (b["vlan"], sub["vni"]) in p.vlan_bindings for p in snap.ports)
        bindings.append({"id": b["id"], "port": b["port"], "vlan": b["vlan"],
                         "subnet": {"id": sub["id"], "ref": ref(sub["vni"]), "vni": sub["vni"]},
                         "programmed": bool(seen)})
    return {
        "name": name, "connected": snap is not None, "programmed_seq": programmed,
        "ovsdb": {"session": snap.session, "peer": snap.peer} if snap else None,
        "tunnel_ips": list(snap.tunnel_ips) if snap else [], "description": snap.description if snap else None,
        "ports": [{"name": p.name, "vlan_bindings": [{"vlan": v, "vni": n, "subnet": ref(n)}
                                                      for v, n in p.vlan_bindings]}
                  for p in paced(snap.ports, tick, CHUNK)] if snap else [],
        "bindings": bindings,
        "local_macs": [{"mac": m.mac, "vni": m.vni, "subnet": ref(m.vni), "ip": m.ip, "locator": m.locator}
                       for m in paced(snap.local_macs, tick, CHUNK)] if snap else [],
        "remote_macs": [{"mac": mac, "vni": vni, "subnet": ref(vni), "ip": ip, "locator": loc}
                        for vni, mac, ip, loc in paced(desired.remote_macs, tick, CHUNK)],
        "flood": [{"vni": vni, "subnet": ref(vni), "locators": list(locs)} for vni, locs in desired.flood],
        "gateways": _gateways(state, known.view, known, desired),
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
            out.append({"vni": vni, "subnet": state.policy.ref("subnet", known.by_id.get(sub.id)),
                        "chassis": sw.chassis, "vtep_ip": sw.vtep_ip})
    return out
