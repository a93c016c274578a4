"""REST counters of external networks, read from the switches' flow statistics now (docs/external.md).

- ``GET /v1/floating-ips/{id}/stats``: on the VRS where it is active, packets translated inbound (from the uplink,
  over the domain's L3 VNI from EVPN peers, from the domain's VMs there) and outbound, ARP requests answered, and
  connections opened through it, inbound and outbound;
- ``GET /v1/floating-ips?counters=true`` (controller/rest/api.py ``list_parts``): the same for every floating IP,
  one request per switch;
- ``GET /v1/external-networks/{id}/stats``: per VRS that translates to the network (port address translation),
  packets sent out translated, replies translated back and connections opened, in total and per domain.

Connections opened are the packet counts of the flows that commit a new connection's translation
(openflow/external.py): each is hit once per connection. Switches that do not answer are listed in
``unanswered``.
"""

from __future__ import annotations

from controller.rest.wire import Response, Route
from controller.service import NotFound
from openflow import external
from openflow import pipeline as p
from openflow.flows import Owner, make_cookie

KIND_MASK = 0xFFF0000000000000  # mark and owner kind: every flow of one owner kind
FLOATING_KEYS = ("inbound_packets", "outbound_packets", "arp_answered")


def routes(state, programmer, reconcilers) -> list[Route]:
    """``reconcilers()`` returns {datapath id: SwitchReconciler} of the connected switches."""

    def floating_stats(req, id):
        obj = state.policy.get("floating_ip", id)
        if obj is None:
            raise NotFound("floating_ip", id)
        view = programmer.view  # where it is active, read before the switches are asked: a pass may drop the switch
        info = view.external.floating.get(id)  # from the View meanwhile (``metric_rows``)
        sw = view.switches.get(info.session) if info else None
        counts, unanswered = counters(programmer, reconcilers(), "fip", {id})
        got = counts.get(id, {})
        return Response(200, {"floating_ip_id": id, "address": obj["address"],
                              "active_on": sw.chassis if sw else None,
                              **{k: got.get(k, 0) for k in FLOATING_KEYS},
                              "connections_opened": _opened(got), "unanswered": unanswered})

    def network_stats(req, id):
        obj = state.policy.get("external_network", id)
        if obj is None:
            raise NotFound("external_network", id)
        ids = {f"{session}|{net_id}" for session, net_id in programmer.view.external.pat if net_id == id}
        counts, unanswered = counters(programmer, reconcilers(), "pat", ids)
        switches = []
        for session, net_id in sorted(programmer.view.external.pat):
            if net_id != id:
                continue
            t, got = programmer.view.external.pat[(session, net_id)], counts.get(f"{session}|{net_id}", {})
            chassis = programmer.view.switches[session].chassis
            switches.append({"chassis": chassis, "address": t.address,
                             "outbound_packets": got.get("outbound_packets", 0),
                             "reply_packets": got.get("reply_packets", 0),
                             "connections_opened": sum(got.get(("opened", vni), 0) for vni, *_ in t.domains),
                             "domains": [{"domain_id": did, "connections_opened": got.get(("opened", vni), 0)}
                                         for vni, _, _, did in t.domains],
                             "answered": not any(u == chassis for u in unanswered)})
        return Response(200, {"external_network_id": id, "name": obj["name"], "translation": switches,
                              "gateways": _gateways(state, programmer.view, obj)})

    return [Route("GET", "/v1/floating-ips/{id}/stats", floating_stats,
                  "packets a floating IP's flows translated, in and out, and connections opened through it (flow "
                  "statistics of its VRS)"),
            Route("GET", "/v1/external-networks/{id}/stats", network_stats,
                  "per VRS, packets port address translation sent out and brought back, and connections opened, "
                  "per domain (flow statistics)")]


def _gateways(state, view, net_obj) -> list[dict]:
    """Per VRS that translates to the network: the gateway MAC it sends to and where that comes from (``static``:
    the network's gateway_mac; ``arp``: resolved by the VRS; ``replicated``: resolved by the HA active and sent over
    the HA link, not yet heard by this node (controller/gatewaykeep.py); ``unresolved``: nothing goes out yet)."""
    sessions = {s for s, by_net in view.external.gateways.items() if net_obj["id"] in by_net} | \
        {f.session for f in view.external.floating.values() if f.network_id == net_obj["id"]} | \
        {s for s, n in view.external.pat if n == net_obj["id"]}
    out = []
    for session in sorted(sessions, key=lambda s: view.switches[s].chassis if s in view.switches else s):
        key = (session, net_obj["id"])
        mac = net_obj.get("gateway_mac") or state.gateway_macs.get(key)
        origin = "static" if net_obj.get("gateway_mac") else "unresolved" if not mac else \
            "replicated" if key in state.gateway_replicated else "arp"
        chassis = view.switches[session].chassis if session in view.switches else None
        out.append({"chassis": chassis, "gateway": net_obj["gateway"], "mac": mac, "origin": origin})
    return out


def floating_counters(programmer, reconcilers):
    """For ``GET /v1/floating-ips?counters=true``: items -> {id: counters} (one request per switch). A floating IP
    whose switch left the View while the counters waited for the switches (see ``metric_rows``) is not answered."""
    def part(items):
        ids = {o["id"] for o in items}
        counts, unanswered = counters(programmer, reconcilers(), "fip", ids)
        return {fid: {**{k: counts.get(fid, {}).get(k, 0) for k in FLOATING_KEYS},
                      "connections_opened": _opened(counts.get(fid, {})),
                      "answered": _answered(programmer.view, fid, unanswered)}
                for fid in ids}
    return part


def _answered(view, fid: str, unanswered) -> bool:
    """Whether the switch where floating IP ``fid`` is active answered (True: it is active nowhere)."""
    info = view.external.floating.get(fid)
    if info is None:
        return True
    sw = view.switches.get(info.session)
    return sw is not None and sw.chassis not in unanswered


def metric_rows(programmer, reconcilers):
    """For /metrics (controller/metrics.py): ([(floating IP id, address, chassis, direction, connections)],
    [(chassis, network id, domain id, connections)]) from the switches now. The counters wait for each switch's
    answer, and a programming pass may meanwhile have removed a switch from the View (before it updates the
    floating IPs and translations): the rows of a switch no longer in the View are left out."""
    ext, view, recs = programmer.view.external, programmer.view, reconcilers()
    fips, _ = counters(programmer, recs, "fip", set(ext.floating))
    pats, _ = counters(programmer, recs, "pat", {f"{s}|{n}" for s, n in ext.pat})
    switches = view.switches
    fip_rows = [(fid, info.address, switches[info.session].chassis, direction, got)
                for fid, info in sorted(ext.floating.items()) if fid in fips and info.session in switches
                for direction, got in _opened(fips[fid]).items()]
    pat_rows = [(switches[s].chassis, n, did, pats[f"{s}|{n}"].get(("opened", vni), 0))
                for (s, n), t in sorted(ext.pat.items()) if f"{s}|{n}" in pats and s in switches
                for vni, _, _, did in t.domains]
    return fip_rows, pat_rows


def _opened(got) -> dict:
    return {"inbound": got.get("opened_inbound", 0), "outbound": got.get("opened_outbound", 0)}


def counters(programmer, recs, kind, ids) -> tuple[dict, list]:
    """({owner id: {counter: packets}} for the owners of ``kind`` with the given ids, summed over the switches
    that hold them (one flow-stats request per switch), [chassis of the switches that did not answer])."""
    out, unanswered = {}, []
    view = programmer.view
    for session, owners in sorted(_holders(view.external, kind, ids).items()):
        desired, sw = programmer.desired.get(session), view.switches.get(session)
        owned = {o: desired.flows.get(o, ()) for o in owners} if desired is not None else {}
        if not any(owned.values()) or sw is None or sw.datapath_id not in recs:
            continue
        got = recs[sw.datapath_id].flow_stats(make_cookie(Owner(kind, ""), 0) & KIND_MASK, KIND_MASK)
        if got is None:
            unanswered.append(sw.chassis)
            continue
        by_cookie = {f.cookie: (o.id, f) for o, fs in owned.items() for f in fs}
        for cookie, packets in got.items():
            if cookie in by_cookie:
                oid, f = by_cookie[cookie]
                bucket = out.setdefault(oid, {})
                for name in (_floating_kind if kind == "fip" else _translation_kind)(f):
                    bucket[name] = bucket.get(name, 0) + packets
    return out, unanswered


def _holders(ext, kind, ids) -> dict:
    """session -> the owners of ``kind`` among ``ids`` active there (from the view, not by scanning flows)."""
    out = {}
    for oid in ids:
        if kind == "fip":
            info = ext.floating.get(oid)
            session = info.session if info is not None else None
        else:
            session = oid.partition("|")[0] if tuple(oid.split("|", 1)) in ext.pat else None
        if session is not None:
            out.setdefault(session, []).append(Owner(kind, oid))
    return out


def _floating_kind(f) -> tuple:
    """The counters a floating IP's flow adds its packets to."""
    if f.table == p.EXTERNAL_IN and dict(f.match).get("eth_type") == external.ETH_ARP:
        return ("arp_answered",)
    if f.table == p.L3_ROUTING and f.priority == external.HOST_ROUTE:
        return ("inbound_packets",)
    if f.table == p.EXTERNAL_DNAT and f.priority == external.OPENS:
        return ("opened_inbound",)
    if f.table == p.L3_ROUTING and f.priority == external.OUTBOUND and f.actions:
        return ("outbound_packets", "opened_outbound") if _commits(f) else ("outbound_packets",)
    return ()


def _translation_kind(f) -> tuple:
    """The counters a port address translation flow adds its packets to (connections per domain's L3 VNI)."""
    if f.table == p.EXTERNAL_NAT and f.priority == 100:
        return ("reply_packets",)
    if f.table == p.L3_ROUTING and f.priority == external.TRANSLATED:
        return ("outbound_packets", ("opened", dict(f.match)["reg4"]))
    if f.table == p.L3_ROUTING and f.priority == external.TRANSLATED + 2:
        return ("outbound_packets",)
    return ()


def _commits(f) -> bool:
    return any(a[0] == "ct_nat" and a[3] for a in f.actions)
