"""REST counters of security policies, read from the switches' flow statistics now.

- ``GET /v1/acls/{id}/stats``: per rule, the packets its flows matched (``packets``: what the rule decided,
  every packet of the original direction counts) and the return traffic it let through (``return_packets``),
  summed over the switches where the ACL is installed.
- ``GET /v1/vports/{id}/acl-stats``: the vport's drops, leaving and entering it: by a deny rule or an invalid
  packet (``denied``) and by the default action (``default_denied``).

Switches that do not answer are listed in ``unanswered``; their counts are missing from the sums.
"""

from __future__ import annotations

from controller.rest.wire import Response, Route
from controller.rest.flowstats import owner_counts
from controller.service import NotFound
from openflow import acl
from openflow.flows import Owner


def routes(state, programmer, reconcilers) -> list[Route]:
    """``reconcilers()`` returns {datapath id: SwitchReconciler} of the connected switches."""

    def counts(owner):
        return owner_counts(programmer, reconcilers, owner)

    def acl_stats(req, id):
        obj = state.policy.get("acl", id)
        spec = programmer.view.security.acls.get(id)
        if obj is None or spec is None:
            raise NotFound("acl", id)
        hits, returns = acl.rule_flows_by_index(spec)
        total, unanswered = counts(Owner("acl", id))
        rules = []
        for i, rule in enumerate(obj["rules"]):
            rules.append({"index": i, "direction": rule["direction"], "action": rule["action"],
                          "protocol": rule["protocol"],
                          "packets": sum(n for c, n in total.items() if hits.get(c) == i),
                          "return_packets": sum(n for c, n in total.items() if returns.get(c) == i)})
        return Response(200, {"acl_id": id, "ref": state.policy.ref("acl", obj), "rules": rules,
                              "unanswered": unanswered})

    def vport_stats(req, id):
        obj = state.policy.get("vport", id)
        if obj is None:
            raise NotFound("vport", id)
        total, unanswered = counts(Owner("acl_port", id))
        flows = {}
        for desired in programmer.desired.values():
            flows.update({f.cookie: f for f in desired.flows.get(Owner("acl_port", id), ())})
        out = {side.direction: {"denied": 0, "default_denied": 0} for side in acl.SIDES}
        names = {side.verdict: side.direction for side in acl.SIDES}
        for cookie, packets in total.items():
            f = flows.get(cookie)
            if f is None or f.table not in names or f.actions:
                continue
            out[names[f.table]]["denied" if f.priority == acl.DENIED_PRIORITY else "default_denied"] += packets
        return Response(200, {"vport_id": id, "ref": state.policy.ref("vport", obj),
                              "policed": id in programmer.view.security.ports,
                              "leaving": out["egress"], "entering": out["ingress"], "unanswered": unanswered})

    return [Route("GET", "/v1/acls/{id}/stats", acl_stats,
                  "per-rule packet counters of an ACL, summed over the switches (flow statistics)"),
            Route("GET", "/v1/vports/{id}/acl-stats", vport_stats,
                  "packets the vport's ACLs dropped, leaving and entering it (flow statistics)")]
