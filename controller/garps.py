"""Gratuitous ARPs sent a few times (``GARP_PAUSES``): the flows they announce may still be on their way to the
switch. A batch (every packet one hand-out to a switch made due: a subnet's gateway announced to each of its VMs
there, or a floating IP) is sent by one green thread, each round of the batch back to back with a pacer tick per
packet, not by a green thread per packet: before, a cold start made a green thread per VM whose subnet was new on
its switch, each woken four times, and one late sample of the event loop's lag held 304 turns of 248 of them
(docs/benchmarks.md, "vrsprio, stop 34").

A batch asks before every packet whether the View still has the VM it is for where it was, or the floating IP it
announces active where it was (``here``; openflow/gateway_garp.py ``still_due``): the batch was made up to 3.5 s
before, perhaps while a programming pass paused with a subnet's VMs not yet up to date, and the port of a VM gone may
hold another VM now (and a floating IP's VM may have moved: announced from its old place, the external network's
switches would learn that place again). It asks ``may_send`` too:
a node demoted to standby (or shutting down, its switch's reconciler stopped) while a batch pauses sends none of the
rest: a switch without the OpenFlow roles set would take the old active's packet-outs as well (docs/ha.md).

A node that takes over sends each switch, once the switch has taken it as master, what the old active may not
have finished announcing (``after_takeover``): every floating IP active there (a handful of packets, as a restart
does) and the gateway answers that changed there recently (openflow/gateway_garp.py ``recent``). The MACs
themselves do not change with a takeover (the domains' gateway MACs are policy, a floating IP's MAC is made from its
address), so nothing else is due."""

from __future__ import annotations

import logging
from collections.abc import Callable

from openflow import external
from openflow.external import Garp

log = logging.getLogger("canopy.app")

GARP_PAUSES = (0.0, 0.5, 1.0, 2.0)  # seconds before each round of a batch


def send_repeated(rec, packets: list[Garp], what: str, sleep: Callable[[float], None],
                  may_send: Callable[[], bool], tick: Callable[[], None] = lambda: None,
                  here: Callable[[Garp], bool] = lambda packet: True) -> None:
    """Send every (actions, frame) of ``packets`` through reconciler ``rec``, in order, once after each pause of
    ``GARP_PAUSES`` (``sleep``), ticking ``tick`` (a pacer's) per packet sent or left out, while ``may_send()``
    (asked before each packet; once it says no the batch ends). A packet whose send fails (one that cannot be
    encoded; Ryu discards what is sent on a connection that closed, without an error) is left out of the later rounds
    and the others go on, as when each packet was a green thread of its own. One whose VM is not where it was
    (``here(packet)`` false, asked before each send) is not sent in that round, and asked again in the next."""
    left = list(packets)
    for pause in GARP_PAUSES:
        if not left:
            return
        sleep(pause)
        kept = []
        for packet in left:
            if not may_send():
                return
            if not here(packet):  # (ticked too: 5,000 VMs gone during a takeover's batch are 5,000 checks)
                tick()
                kept.append(packet)  # asked again next round: a VM back where it was by then is sent to
            elif _sent(rec, packet, what, tick):
                kept.append(packet)
        left = kept


def _sent(rec, packet: Garp, what: str, tick: Callable[[], None]) -> bool:
    """Whether ``packet`` went out through ``rec`` (a failure logged); ``tick`` either way."""
    try:
        rec.packet_out(packet[0], packet[1])
        sent = True
    except Exception:  # noqa: BLE001 - this packet only: the VM's next announcement comes with a change
        log.debug("gratuitous ARP for %s not sent", what, exc_info=True)
        sent = False
    tick()
    return sent


def after_takeover(view, session: str, garp, gateway_garp, now: float) -> list[Garp]:
    """(actions, frame) a node that took over sends switch ``session`` once it is master there: its active floating
    IPs (out of their uplinks; noted as sent in ``garp``, an openflow.external.Announcer, so that a pass after does
    not send them again) and the gateway announcements due there within the last ``RECENT`` seconds (to the VMs)."""
    fips = sorted(view.external.by_session.get(session, {}).values(), key=lambda f: f.address)
    for info in fips:
        garp.sent(info)
    return [external.fip_garp(f) for f in fips] + \
        gateway_garp.recent(view, session, now)
