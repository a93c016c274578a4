"""Packet counters of one owner's flows, asked of the switches that should hold them now (flow statistics).

Shared by the REST counters of security policies (controller/rest/security.py) and of external networks
(controller/rest/external.py)."""

from __future__ import annotations

from openflow.flows import make_cookie

OWNER_MASK = 0xFFFFFFFF00000000  # mark, owner kind and owner hint: every flow of one owner (and rare others)


def holders(programmer, reconcilers, owner):
    """(datapath id, reconciler) of every connected switch that should hold the owner's flows."""
    recs = reconcilers()
    for session, desired in sorted(programmer.desired.items()):
        sw = programmer.view.switches.get(session)
        if owner in desired.flows and sw is not None and sw.datapath_id in recs:
            yield sw.datapath_id, recs[sw.datapath_id]


def owner_counts(programmer, reconcilers, owner) -> tuple[dict, list]:
    """({cookie: packets} summed over the holders, [datapath ids (hex) that did not answer])."""
    total, unanswered = {}, []
    for dpid, rec in holders(programmer, reconcilers, owner):
        got = rec.flow_stats(make_cookie(owner, 0), OWNER_MASK)
        if got is None:
            unanswered.append(f"{dpid:016x}")
            continue
        for cookie, packets in got.items():
            total[cookie] = total.get(cookie, 0) + packets
    return total, unanswered
