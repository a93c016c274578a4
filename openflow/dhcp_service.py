"""Answers DHCP packet-ins: which vport asked (from the punt flow's cookie), its lease, the reply.

The pipeline sends a VM's DHCP to the controller with a flow owned by that VM's vport (one per local
vport, table services). The packet-in carries the flow's cookie, so the asking vport is known without
trusting anything in the packet; its lease comes from policy (openflow/dhcp.py). The reply goes out of
the vport's own port (with its VLAN on an ESXi trunk): the same egress actions the pipeline uses.
State is only read here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from openflow import dhcp
from openflow.compiler import egress_actions
from openflow.flows import owner_kind_of

log = logging.getLogger("canopy.dhcp")


@dataclass(frozen=True)
class Answer:
    actions: list  # action tuples that deliver the reply to the vport
    frame: bytes
    summary: str


class DhcpService:
    def __init__(self, state, programmer, underlay_mtu: int):
        self.state = state
        self.programmer = programmer
        self.underlay_mtu = underlay_mtu
        self.counters = {"requests": 0, "answered": 0, "ignored": 0}

    def answer(self, datapath_id: int, cookie: int, frame: bytes) -> Answer | None:
        """The reply to a DHCP packet-in, or None (not DHCP, unknown vport, no lease, nothing to say)."""
        self.counters["requests"] += 1
        answer = self._answer(datapath_id, cookie, frame)
        self.counters["answered" if answer else "ignored"] += 1
        return answer

    def _answer(self, datapath_id, cookie, frame):
        request = dhcp.parse_request(frame)
        if request is None or owner_kind_of(cookie) != "vport":
            return None
        vport_id = self._vport_of(datapath_id, cookie)
        vport = self.state.policy.get("vport", vport_id) if vport_id else None
        endpoint = self.programmer.view.endpoints.get(vport_id) if vport_id else None
        if vport is None or endpoint is None or request.chaddr != vport["mac"]:
            log.info("ignoring %s on datapath %016x: not from a known vport's own MAC", request.describe(),
                     datapath_id)
            return None
        subnet = self.state.policy.get("subnet", vport["subnet_id"])
        domain = self.state.policy.get("domain", subnet["domain_id"]) if subnet["domain_id"] else None
        lease = dhcp.lease_for(subnet, vport, domain, self.underlay_mtu)
        frame_out = dhcp.reply(request, lease) if lease else None
        if frame_out is None:
            return None
        ref = self.state.policy.ref("vport", vport)
        log.info("%s for vport %s: %s", request.describe(), ref, lease.ip)
        return Answer(egress_actions(endpoint), frame_out, f"{request.describe()} -> {lease.ip}")

    def _vport_of(self, datapath_id, cookie):
        """The vport owning the punt flow with this cookie on this switch."""
        session = next((s for s, sw in self.programmer.view.switches.items() if sw.datapath_id == datapath_id),
                       None)
        desired = self.programmer.desired.get(session)
        if desired is None:
            return None
        for owner, flows in desired.flows.items():
            if owner.kind == "vport" and any(f.cookie == cookie for f in flows):
                return owner.id
        return None
