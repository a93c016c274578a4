"""REST views of the dataplane: per-domain FIB and per-switch flows (desired against installed).

A switch's flows listing (100,000 flows: 200,000 rows when desired and installed differ) is built and encoded with
pauses (``pause``), with the cyclic collector paused until its rows are freed: the rows are hundreds of thousands of
young dicts, and a collection among them walked every one in one stretch (~1 s of CPU at 200,000 rows,
tests/benchmarks/reconcile_stretches.py); the answer leaves as bytes."""

from __future__ import annotations

import re

from controller.pacer import Pacer, collector_paused
from controller.rest.lane import answer_pacer
from controller.rest.wire import ApiError, Response, Route
from controller.rest.paced import paced_json, release
from controller.service import NotFound
from openflow.installed import listing_order, paced, shared_flows
from openflow.pacedsort import sorted_paced
from openflow.pipeline import BY_ID

LIST_EVERY = 1000  # flows listed or encoded between two pauses of GET /v1/switches/{dpid}/flows (a few ms)
FIB_EVERY = 1000  # routes made into views between two pauses of GET /v1/domains/{id}/fib (20,000: ~95 ms)

def routes(state, programmer, reconcilers, pause=None, budget: float | None = None) -> list[Route]:
    """``reconcilers()`` returns {datapath id: SwitchReconciler} of the connected switches; ``pause()``: a turn for
    the event loop, taken every LIST_EVERY flows while a switch's flows are listed and encoded, and every FIB_EVERY
    routes of a domain's FIB (None: never), and once ``budget`` seconds have run (controller/rest/lane.py
    ``answer_pacer``; None: by the count only)."""

    def _add_ref(policy, owner: dict) -> None:
        obj = policy.get(owner.get("kind"), owner.get("id")) if owner.get("kind") in (
            "subnet", "domain", "vport") else None
        owner["ref"] = policy.ref(owner["kind"], obj) if obj else owner.get("ref")

    def fib(req, id):
        policy = state.policy  # a value: the domain's and its routes' refs as they were when it began
        domain = policy.get("domain", id)
        if domain is None:
            raise NotFound("domain", id)
        ref = policy.ref("domain", domain)
        pacer = answer_pacer(pause, FIB_EVERY, budget)
        pacer.tick(FIB_EVERY)  # waits for its turn (controller/rest/lane.py), the collector not held off meanwhile
        view = programmer.view
        items = []
        with collector_paused():  # tens of thousands of young dicts (listing: module docstring)
            for route in list(view.fib.get(id, ())):  # a copy: the View may change in the pauses
                items.append(_route_view(policy, view, route))
                pacer.tick()
        return Response(200, {"domain_id": id, "ref": ref, "l3_vni": domain["l3_vni"], "routes": items,
                              "count": len(items)})

    def flows(req, dpid):
        for name in req.query:
            if name not in FLOW_FILTERS:
                raise ApiError(400, "bad_query", f"unknown query parameter; use {sorted(FLOW_FILTERS)}", name)
        keep = _flow_filter(req.query)
        key = _dpid(dpid)
        pacer = answer_pacer(pause, LIST_EVERY, budget)
        pacer.tick(LIST_EVERY)  # waits for its turn (controller/rest/lane.py), the collector not held off meanwhile
        session = programmer.view.session_of_datapath(key)
        reconciler = reconcilers().get(key)
        if session is None and reconciler is None:
            raise ApiError(404, "not_found", f"no switch with datapath id {key:016x}")
        with collector_paused():  # freed before it ends (listing: module docstring)
            return Response(200, listing(key, session, reconciler, keep, pacer))

    def listing(key, session, reconciler, keep, pacer) -> bytes:
        policy = state.policy  # owners' refs as they were when it began (a value: a change makes a new one)
        if reconciler is not None:
            items = reconciler.flows(pacer)
            status = reconciler.status(pacer.tick)  # the answer's pauses: not behind the reconcilers' lane
        else:  # known over OVSDB only: what Canopy wants there, nothing installed yet
            items = _desired_flows(programmer.desired.get(session), pacer)
            status = {"openflow": "disconnected", "desired": len(items), "installed": 0}
        for item in paced(items, pacer.tick):
            _add_ref(policy, item.get("owner") or {})
            for other in item["shared_with"]:  # most often none
                _add_ref(policy, other)
        agree = all(i["desired"] == i["installed"] or i["kept"] for i in paced(items, pacer.tick))  # kept: as status
        shown = [i for i in paced(items, pacer.tick) if keep(i)]  # after in_sync: that stays the whole switch's
        body = paced_json({"datapath_id": f"{key:016x}", "status": status, "in_sync": agree, "flows": shown,
                           "count": len(shown)}, pacer.tick)
        release(shown, pacer.tick)
        release(items, pacer.tick)
        return body

    return [Route("GET", "/v1/domains/{id}/fib", fib, "the domain's forwarding table: prefix, next hop, origin"),
            Route("GET", "/v1/switches/{dpid}/flows", flows,
                  "desired and installed flows of a VRS, with the object that owns each",
                  query=tuple(FLOW_FILTERS.items()))]


FLOW_FILTERS = {"owner": "only the flows of this owner (a vport, subnet or domain id), with those it shares",
                "table": "only the flows of this table (its number or its name)",
                "cookie": "only the flows with this cookie (hex with 0x, or decimal)"}


def _flow_filter(query):
    """A predicate over flow rows for the ?owner= ?table= ?cookie= filters (all must hold)."""
    owner = query.get("owner")
    table = _table_param(query["table"]) if "table" in query else None
    cookie = _cookie_param(query["cookie"]) if "cookie" in query else None

    def keep(item):
        return ((owner is None or (item.get("owner") or {}).get("id") == owner
                 or any(other["id"] == owner for other in item["shared_with"]))
                and (table is None or item["table"] == table)
                and (cookie is None or int(item["cookie"], 16) == cookie))
    return keep


def _table_param(text):
    if text.isdigit():
        return int(text)
    for table_id, table in BY_ID.items():
        if table.name == text:
            return table_id
    names = ", ".join(t.name for t in BY_ID.values())
    raise ApiError(400, "bad_query", f"{text!r} is not a table number or name ({names})", "table")


def _cookie_param(text):
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        raise ApiError(400, "bad_query", "must be a cookie in hex (0x...) or decimal", "cookie") from None


def _dpid(text):
    key = text.lower().replace(":", "")
    if not re.fullmatch(r"[0-9a-f]{1,16}", key):  # ASCII only: int() would also take "0x", "_", "５"
        raise ApiError(400, "bad_request", "a datapath id is up to 16 hex digits", "dpid")
    return int(key, 16)


def _order(flow) -> int:
    return listing_order(flow.key)


def _desired_flows(desired, pacer: Pacer) -> list[dict]:
    """The listing's rows of a switch known over OVSDB only (``desired``: a compiler Desired, or None): collected,
    sorted and described with pauses (``pacer``), as a connected switch's are (SwitchReport.flows)."""
    if not desired:
        return []
    sharers = shared_flows(desired.flows, pacer.tick)
    ordered = sorted_paced(list(desired.all_flows()), pacer.tick, key=_order)
    return [_desired_flow(f, sharers) for f in paced(ordered, pacer.tick)]


def _desired_flow(flow, sharers: dict):
    """One row, with the fields and cookie format of a connected switch's (SwitchReport._flow_row)."""
    from openflow.flows import render_flow
    from openflow.reconciler_report import named

    owner, *shared_with = named(sharers.get(flow.key) or (flow.owner,))
    return {"table": flow.table, "table_name": BY_ID[flow.table].name, "priority": flow.priority,
            "cookie": f"{flow.cookie:#018x}", "owner": owner, "shared_with": shared_with, "flow": render_flow(flow),
            "desired": True, "installed": False, "kept": False, "error": None}


def _route_view(policy, view, route):
    """One FIB entry. ``origin``: connected, host, static, or evpn (a remote prefix, or a host route to a MAC
    an EVPN peer announced); ``vtep_ip``, ``router_mac`` and ``vni`` say where a remote route goes."""
    out = {"prefix": route.prefix, "origin": route.kind, "next_hop": route.next_hop, "vport": None,
           "subnet": None, "vtep_ip": None, "chassis": None, "router_mac": None, "vni": None}
    if route.subnet_id:
        sub = policy.get("subnet", route.subnet_id)
        out["subnet"] = {"id": route.subnet_id, "ref": policy.ref("subnet", sub) if sub else None}
    if route.kind == "evpn":
        out["vtep_ip"], out["router_mac"], out["vni"] = route.vtep_ip, route.router_mac, route.vni
    elif route.vport_id:
        ep = view.endpoints.get(route.vport_id)
        if ep is not None and ep.kind == "evpn":
            _evpn_host(view, route, ep, out)
            return out
        vport = policy.get("vport", route.vport_id)
        out["vport"] = {"id": route.vport_id, "ref": policy.ref("vport", vport) if vport else None}
        sw = view.switches.get(ep.session) if ep else None
        if sw:
            out["vtep_ip"], out["chassis"] = sw.vtep_ip, sw.chassis
        elif ep is not None and ep.session in view.vteps:  # bare metal: behind a hardware VTEP
            out["vtep_ip"], out["switch"] = view.tunnel_ip_of(ep.session), view.vteps[ep.session].name
    elif route.kind == "static":
        out["unresolved"] = True  # the next hop is not a known, bound vport: no flows for this route
    return out


def _evpn_host(view, route, ep, out):
    """A route to a MAC behind a remote EVPN VTEP: a host route (origin evpn), or a static route through it."""
    vtep_ip = view.tunnel_ip_of(ep.session)
    if route.kind == "host":
        out["origin"], out["next_hop"] = "evpn", vtep_ip
    out["vtep_ip"], out["router_mac"], out["vni"] = vtep_ip, ep.router_mac, ep.l3_vni or None
    out["remote_mac"] = {"id": ep.vport_id, "mac": ep.mac}
