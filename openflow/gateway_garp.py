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

An HA standby keeps the same record without sending (its passes see every change the active's do), and remembers
when each answer last changed: a node that takes over cannot know whether the old active sent an announcement due
just before it died or was demoted, so it sends again those due within the last ``RECENT`` seconds (``recent``;
docs/ha.md): that covers a takeover's detection (up to ~15 s after an active froze) and a batch's 3.5 s with room.
Not every announcement ever made: a takeover sends at most what the old active itself sent in the last ``RECENT``
seconds, and nothing after a quiet spell, whatever the number of VMs.

Each announcement names the VM it goes to, and is sent only while the View still has that VM where it was
(``still_placed``, asked before every send of a batch's rounds): a VM gone meanwhile (or moved to another port) is
left out of that round (one back where it was by a later round is sent to again). A batch lasts 3.5 s, and one
made while a programming pass pauses reads a subnet's VMs before the pass has taken out those that left
(``View.by_subnet`` is whole only at the pass's end); the port of a VM gone may be given to another VM already,
perhaps of another tenant whose gateway has the same address.
"""

from __future__ import annotations

from itertools import compress, repeat
from operator import attrgetter, eq

from controller.pacer import NEVER, Pacer, runs
from openflow.compiler import arp_answer, egress_actions
from openflow.external import Garp, garp, still_active

RECENT = 30.0  # seconds: an answer that changed this recently is announced again by a node taking over
_VPORT_ID, _KIND, _ID = attrgetter("vport_id"), attrgetter("kind"), attrgetter("id")


class GatewayAnnouncer:
    """What each VRS's responder answered per VNI, and the announcements a change there is due."""

    def __init__(self):
        self.answered: dict[str, dict[int, tuple[str, str] | None]] = {}  # session -> {VNI: (address, MAC)}
        self.changed_at: dict[str, dict[int, tuple[float, str]]] = {}  # session -> {VNI: (when, subnet id)}

    def due(self, view, session: str, changed, now: float = 0.0, pacer: Pacer = NEVER) -> list[Garp]:
        """(actions, frame) packet-outs for ``session`` after its desired state was handed out. ``changed``: the
        owners handed out (their subnets are looked at; a subnet new there is announced), or None when the switch
        was compiled whole (then every subnet on it is looked at and only a changed answer is announced: a
        reconnect or a restart changes no MAC). ``now`` (time.monotonic()): when, for ``recent``. ``pacer`` (the
        programming loop's) is ticked per VM looked at and announced to (``_to_vms``: a new subnet of 10,000 VMs)."""
        present = view.subnets_on(session)
        if changed is None:
            sids = sorted(present)
        else:  # (C loops: 10,000 vports' owners handed out)
            owners = list(changed)
            subnets = compress(owners, map(eq, map(_KIND, owners), repeat("subnet")))
            sids = sorted(filter(present.__contains__, map(_ID, subnets)))
        due, answered = [], self.answered.setdefault(session, {})
        for sid in sids:
            sub = view.subnets.get(sid)
            if sub is None:
                continue
            answer = arp_answer(sub)
            before = answered.get(sub.vni, "unknown")
            answered[sub.vni] = answer
            if answer is None or before == answer or (changed is None and before == "unknown"):
                continue
            self.changed_at.setdefault(session, {})[sub.vni] = (now, sid)
            due.append((sid, answer))
        return _to_vms(view, session, due, pacer)

    def recent(self, view, session: str, now: float) -> list[Garp]:
        """The announcements due on ``session`` within the last ``RECENT`` seconds before ``now``, with what answers
        there now: for a node that took over (the old active may not have sent them)."""
        due, changes, answered = [], self.changed_at.get(session, {}), self.answered.get(session, {})
        for vni, (when, sid) in sorted(changes.items()):
            sub, answer = view.subnets.get(sid), answered.get(vni)
            if now - when <= RECENT and sub is not None and sub.vni == vni and answer:
                due.append((sid, answer))
        return _to_vms(view, session, due)

    def forget(self, session: str) -> None:
        """A VRS that left: what it answered is no longer known (its own entries only, whatever the others')."""
        self.answered.pop(session, None)
        self.changed_at.pop(session, None)


def _to_vms(view, session: str, due: list[tuple[str, tuple[str, str]]], pacer: Pacer = NEVER) -> list[Garp]:
    """For each (subnet id, answer (address, MAC)) of ``due`` in turn, a gratuitous ARP of the answer to each VM of
    that subnet on ``session``, in the subnet's order (while a pass pauses, ``by_subnet`` may still hold VMs gone:
    ``still_placed`` leaves them out when sending). ``pacer`` ticked per VM looked at and per announcement made: the
    View may change in its pauses (another pass), which ``still_placed`` covers as it does a batch's rounds."""
    out = []
    vms = _vms_on(view, session, [sid for sid, _answer in due], pacer)
    for sid, answer in due:
        frame = garp(answer[1], answer[0])
        for run in runs(pacer, vms.get(sid, ())):
            out += [Garp(egress_actions(ep), frame, ep) for ep in run]
            pacer.tick(len(run))
    return out


def _vms_on(view, session: str, sids: list[str], pacer: Pacer = NEVER) -> dict[str, list]:
    """{subnet id: its VMs on ``session``, in the subnet's order} for ``sids``, read from whichever is shorter: the
    subnets' endpoints on every switch, or the switch's own endpoints (a live View's index by switch, sorted by vport
    id as a live View's subnet holds its vports). A takeover asks every switch in turn: with the subnets' walk alone
    that was each subnet's VMs on every switch, once per switch (a subnet of 5,000 VMs over 100 switches: 500,000 VMs
    looked at); now at most the switch's own endpoints per switch (5,000 in all)."""
    if not sids:
        return {}
    subnets = sum(len(view.by_subnet.get(sid, ())) for sid in set(sids))
    own = view.endpoint_ids_on(session)
    if own is None or subnets <= len(own):
        return {sid: _vms_of(list(view.by_subnet.get(sid, ())), session, pacer) for sid in set(sids)}
    wanted, endpoints = {sid: [] for sid in sids}, view.endpoints
    for run in runs(pacer, list(own)):
        for eid in run:
            ep = endpoints.get(eid)
            group = wanted.get(ep.subnet_id) if ep is not None else None
            if group is not None and ep.kind == "vport" and ep.session == session and ep.ofport:
                group.append(ep)
        pacer.tick(len(run))
    for group in wanted.values():
        group.sort(key=_VPORT_ID)
    return wanted


def still_placed(view, vport) -> bool:
    """Whether the View holds vport endpoint ``vport`` where it was: on its switch, in its subnet, at its port and
    VLAN (``vport`` None: a packet for no vport, always)."""
    if vport is None:
        return True
    now = view.endpoints.get(vport.vport_id)
    return now is vport or now is not None and now.kind == "vport" and _place(now) == _place(vport)


def _vms_of(eps: list, session: str, pacer: Pacer) -> list:
    """Of a subnet's endpoints ``eps`` (a copy: the View may change in the pauses), its VMs on ``session``."""
    out = []
    for run in runs(pacer, eps):
        out += [ep for ep in run if ep.kind == "vport" and ep.session == session and ep.ofport]
        pacer.tick(len(run))
    return out


def still_due(view, packet: Garp) -> bool:
    """Whether ``packet`` is still to be sent: its VM where it was (``still_placed``) and its floating IP still active
    where it was announced from (openflow/external.py ``still_active``)."""
    return still_placed(view, packet.vport) and (packet.fip is None or still_active(view, packet.fip))


def _place(ep) -> tuple:
    return ep.session, ep.subnet_id, ep.ofport, ep.vlan or 0  # (VLAN 0 and None: untagged, ``egress_actions``)
