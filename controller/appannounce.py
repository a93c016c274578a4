"""What this node sends into the network on its own, beside programming (part of the Ryu application, controller/app.py):
gratuitous ARPs for a subnet's gateway and for floating IPs (openflow/gateway_garp.py, openflow/external.py, sent
in batches by controller/garps.py; after an HA takeover, what the old active may not have finished), the tunnel
probes that warm each VRS's tunnels (openflow/tunnel_warm.py) and the ARP requests that resolve external gateways
(openflow/gateway_arp.py). The active controller only sends; a standby keeps the records for a takeover.

``Announcements`` is a mixin of ``CanopyApp``: it uses the app's ``pair``, ``programmer``, ``reconcilers``, ``state``,
``settings``, ``hold``, ``garp``, ``gateway_garp``, ``gateway_arp``, ``gateway_keep``, ``tunnels`` and ``probes``.
"""

from __future__ import annotations

import logging
import time

from controller.approles import may_announce
from controller.garps import after_takeover, send_repeated
from controller.ryu_compat import hub
from openflow import external
from openflow.gateway_arp import request_actions, request_frame
from openflow.gateway_garp import still_due

log = logging.getLogger("canopy.app")


class Announcements:
    """See the module docstring."""

    def _announce_gateways(self, rec, session, changed):
        """Gratuitous ARP to a subnet's VMs on this switch when the MAC answering its gateway address there is new
        or changed (openflow/gateway_garp.py); the active controller only, while it is (controller/garps.py). A
        standby keeps the record without sending, for a takeover (``_announce_after_takeover``)."""
        due = self.gateway_garp.due(self.programmer.view, session, changed, time.monotonic(), self.programmer.pacer)
        if due and may_announce(self.pair, rec):  # one green thread for the hand-out's batch (controller/garps.py)
            hub.spawn(send_repeated, rec, due, "a subnet's gateway", hub.sleep, lambda: may_announce(self.pair, rec),
                      self.programmer.pacer.tick, lambda packet: still_due(self.programmer.view, packet))

    def _warm_tunnels(self, rec, sw, desired, changed):
        """A probe through the VXLAN port towards each VTEP this switch tunnels to for the first time on this
        connection, so that Open vSwitch resolves its address before a VM's packet needs it
        (openflow/tunnel_warm.py); the active controller only. Sent from a green thread of the switch's own."""
        if self.pair is None or self.pair.role == "active":
            self.probes.send(rec, sw.tunnel_ofport,
                             self.tunnels.due(sw, rec.datapath, desired, changed, self.programmer.pacer))

    def _refresh_tunnel_probes(self):
        """Every VRS probes every VTEP it tunnels to again each ``vrs.tunnel_probe_refresh_ms``, so that Open vSwitch's
        tunnel neighbour entries do not age out (openflow/tunnel_warm.py); the active controller only, after the
        start-up hold. The thread never ends."""
        while True:
            hub.sleep(self.settings.tunnel_probe_refresh)
            self._probe_tunnels_again()

    def _probe_tunnels_again(self):
        if self.hold.holding or (self.pair is not None and self.pair.role != "active"):
            return
        try:
            for rec, port, probes in self.tunnels.again(self.programmer.view, self.programmer.desired,
                                                        self.reconcilers.get, self.programmer.pacer):
                self.probes.send(rec, port, probes, retry=False)
        except Exception:  # a bug: the next round probes again
            log.exception("refreshing the tunnel probes failed")

    def _announce_floating_ips(self):
        """Gratuitous ARP from the VRS where a floating IP became active (openflow/external.py), a few times:
        the flows it announces may still be on their way to the switch; the active controller only, while it is. A
        standby keeps the record without sending: a takeover announces every floating IP (controller/garps.py)."""
        active = self.pair is None or self.pair.role == "active"
        for info in self.garp.due(self.programmer.view):
            rec = self._reconciler_of_session(info.session)
            if rec is not None:
                self.garp.sent(info)
                if active:
                    hub.spawn(send_repeated, rec, [external.fip_garp(info)], info.address, hub.sleep,
                              lambda rec=rec: may_announce(self.pair, rec), self.programmer.pacer.tick,
                              lambda packet: still_due(self.programmer.view, packet))

    def _announce_after_takeover(self, rec):
        """A switch took this node, which has just become active, as master: what the old active may not have
        finished announcing there goes out now, one batch (controller/garps.py ``after_takeover``)."""
        session, view = self._session_of(rec.datapath.id), self.programmer.view
        due = after_takeover(view, session, self.garp, self.gateway_garp, time.monotonic()) if session else []
        if due:
            hub.spawn(send_repeated, rec, due, "the announcements after a takeover", hub.sleep,
                      lambda: may_announce(self.pair, rec), self.programmer.pacer.tick,
                      lambda packet: still_due(self.programmer.view, packet))

    def _reconciler_of_session(self, session):
        sw = self.programmer.view.switches.get(session)
        return self.reconcilers.get(sw.datapath_id) if sw and sw.datapath_id is not None else None

    def _session_of(self, dpid):
        return self.programmer.view.session_of_datapath(dpid)  # (indexed: a takeover asks once per switch)

    # ------------------------------------------------------------------ external gateways
    def _resolve_gateways(self):
        """Ask external gateways for their MAC by ARP from the VRSs that need it (the active controller only), and
        forget the MACs no longer confirmed (openflow/gateway_arp.py; on a standby, those the active sent:
        controller/gatewaykeep.py). The thread never ends."""
        resolver = self.gateway_arp
        while True:
            hub.sleep(min(1.0, resolver.refresh / 4))
            try:
                if self.pair is None or self.pair.role == "active":
                    self._ask_gateways(time.monotonic())
                else:
                    self._forget_gateways(time.monotonic())
            except Exception:  # a switch that went away meanwhile: the next round asks again
                log.exception("resolving external gateways failed")

    def _ask_gateways(self, now):
        """One round of ``_resolve_gateways``: each request asks ``may_announce`` just before it leaves (a node
        demoted meanwhile sends none of the rest); the MACs no longer confirmed are forgotten."""
        resolver = self.gateway_arp
        self.gateway_keep.take_held()  # what the old active sent and State lacks (once: then nothing is held)
        for need in resolver.due(self.programmer.view, now):
            rec = self._reconciler_of_session(need.session)
            if rec is not None and may_announce(self.pair, rec):
                rec.packet_out(request_actions(need), request_frame(need))
                resolver.sent(need, now)
        self._forget_gateways(now)

    def _forget_gateways(self, now):
        """The MACs whose gateway did not confirm them for the timeout forgotten (by this node's ARP, or the HA
        active's as it sent them: controller/gatewaykeep.py)."""
        resolver = self.gateway_arp
        for session, net_id in resolver.expired(dict(self.state.gateway_macs), now):
            log.info("external gateway of %s on %s not confirmed by ARP for %g s: forgotten", net_id, session,
                     resolver.timeout)
            self.state.gateway_learned(session, net_id, None)

    def _gateway_answer(self, msg):
        view = self.programmer.view
        session = view.session_of_datapath(msg.datapath.id)
        got = self.gateway_arp.answer(view, session, msg.match.get("in_port"), bytes(msg.data), time.monotonic()) \
            if session is not None else None
        if got is not None:
            self.state.gateway_learned(session, got[0], got[1])
