"""REST counters of external networks, read from the switches' flow statistics now (docs/external.md).

- ``GET /v1/floating-ips/{id}/stats``: packets translated inbound (from the uplink, and over the domain's L3 VNI
  from EVPN peers) and outbound, and ARP requests answered, on the VRS where it is active.
- ``GET /v1/external-networks/{id}/stats``: per VRS that translates to the network (port address translation),
  packets sent out translated and replies translated back.

Packets, not connections: conntrack's own table (``ovs-appctl dpctl/dump-conntrack zone=65281`` on a hypervisor)
is not readable over OpenFlow. Switches that do not answer are listed in ``unanswered``.
"""

from __future__ import annotations

from controller.rest.api import Response, Route
from controller.rest.flowstats import owner_counts
from controller.service import NotFound
from openflow import external
from openflow import pipeline as p
from openflow.flows import Owner


def routes(state, programmer, reconcilers) -> list[Route]:
    """``reconcilers()`` returns {datapath id: SwitchReconciler} of the connected switches."""

    def by_cookie(owner):
        flows = {}
        for desired in programmer.desired.values():
            flows.update({f.cookie: f for f in desired.flows.get(owner, ())})
        return flows

    def tally(owner, kind_of):
        total, unanswered = owner_counts(programmer, reconcilers, owner)
        flows, out = by_cookie(owner), {}
        for cookie, packets in total.items():
            kind = kind_of(flows[cookie]) if cookie in flows else None
            if kind:
                out[kind] = out.get(kind, 0) + packets
        return out, unanswered

    def floating_stats(req, id):
        obj = state.policy.get("floating_ip", id)
        if obj is None:
            raise NotFound("floating_ip", id)
        info = programmer.view.external.floating.get(id)
        counts, unanswered = tally(Owner("fip", id), _floating_kind)
        return Response(200, {"floating_ip_id": id, "address": obj["address"],
                              "active_on": programmer.view.switches[info.session].chassis if info else None,
                              **{k: counts.get(k, 0) for k in ("inbound_packets", "outbound_packets", "arp_answered")},
                              "unanswered": unanswered})

    def network_stats(req, id):
        obj = state.policy.get("external_network", id)
        if obj is None:
            raise NotFound("external_network", id)
        switches = []
        for session, net_id in sorted(programmer.view.external.pat):
            if net_id != id:
                continue
            counts, unanswered = tally(Owner("pat", f"{session}|{net_id}"), _translation_kind)
            t = programmer.view.external.pat[(session, net_id)]
            switches.append({"chassis": programmer.view.switches[session].chassis, "address": t.address,
                             "outbound_packets": counts.get("outbound_packets", 0),
                             "reply_packets": counts.get("reply_packets", 0), "answered": not unanswered})
        return Response(200, {"external_network_id": id, "name": obj["name"], "translation": switches})

    return [Route("GET", "/v1/floating-ips/{id}/stats", floating_stats,
                  "packets a floating IP's flows translated, in and out (flow statistics of its VRS)"),
            Route("GET", "/v1/external-networks/{id}/stats", network_stats,
                  "per VRS, packets port address translation sent out and brought back (flow statistics)")]


def _floating_kind(f):
    if f.table == p.EXTERNAL_IN:
        return "arp_answered" if dict(f.match).get("eth_type") == external.ETH_ARP else "inbound_packets"
    if f.table == p.L3_ROUTING and f.actions:
        return "inbound_packets" if f.priority == external.HOST_ROUTE else "outbound_packets"
    return None


def _translation_kind(f):
    if f.table == p.EXTERNAL_NAT:
        return "reply_packets"
    if f.table == p.L3_ROUTING and f.priority == external.TRANSLATED:
        return "outbound_packets"
    return None
