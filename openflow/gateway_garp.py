"""Gratuitous ARP to a subnet's VMs when the MAC that answers its gateway address changes on a VRS.

A subnet's ARP responder (``openflow.compiler.arp_answer``) answers its gateway address with the domain's anycast
gateway MAC; on an L2-only subnet with DHCP it answers the DHCP server's address, which is the gateway address when
the subnet has one, with ``L2_SERVER_MAC``. A routed subnet that leaves its domain and joins it again (a Neutron
router interface removed and added: networking_canopy deletes the subnet and creates it again, same VNI) answers
the same address with another MAC for a while. A VM that asked meanwhile keeps that MAC as REACHABLE (Linux: up to
1.5 x base_reachable_time, 45 s by default) and its routed traffic goes nowhere until the entry ages. So, as
Neutron's L3 agent does when it plugs a router port, the controller announces the address with its new MAC by
gratuitous ARP to the subnet's VMs on a VRS when the answer for that VNI there is new or changed: an existing
neighbour entry takes the new MAC (Linux creates none from it unless arp_accept is set). Pure bookkeeping here; the
Ryu app sends (controller/app.py).
"""

from __future__ import annotations

from openflow.compiler import arp_answer, egress_actions
from openflow.external import garp


class GatewayAnnouncer:
    """What each VRS's responder answered per VNI, and the announcements a change there is due."""

    def __init__(self):
        self.answered: dict[tuple[str, int], tuple[str, str] | None] = {}  # (session, VNI) -> (address, MAC)

    def due(self, view, session: str, changed) -> list[tuple[list, bytes]]:
        """(actions, frame) packet-outs for ``session`` after its desired state was handed out. ``changed``: the
        owners handed out (their subnets are looked at; a subnet new there is announced), or None when the switch
        was compiled whole (then every subnet on it is looked at and only a changed answer is announced: a
        reconnect or a restart changes no MAC)."""
        present = view.subnets_on(session)
        if changed is None:
            sids = sorted(present)
        else:
            sids = sorted(o.id for o in changed if o.kind == "subnet" and o.id in present)
        out = []
        for sid in sids:
            sub = view.subnets.get(sid)
            if sub is None:
                continue
            answer = arp_answer(sub)
            key = (session, sub.vni)
            before = self.answered.get(key, "unknown")
            self.answered[key] = answer
            if answer is None or before == answer or (changed is None and before == "unknown"):
                continue
            frame = garp(answer[1], answer[0])
            out += [(egress_actions(ep), frame) for ep in view.by_subnet.get(sid, ())
                    if ep.kind == "vport" and ep.session == session and ep.ofport]
        return out

    def forget(self, session: str) -> None:
        """A VRS that left: what it answered is no longer known."""
        self.answered = {k: v for k, v in self.answered.items() if k[0] != session}
