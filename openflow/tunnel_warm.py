"""Each VRS resolves the underlay address of every VTEP it tunnels to before a VM's packet needs it.

Open vSwitch's userspace datapath (``datapath_type=netdev``: DPDK hypervisors and the test labs) builds VXLAN
headers itself, with the next hop's MAC from its own tunnel neighbour cache (``ovs-appctl tnl/neigh/show``), not the
kernel's. A packet to a VTEP that has no entry there is dropped while Open vSwitch sends the ARP request that fills
it. So the first packet from a hypervisor to a VTEP it had not sent to yet was lost: the first ping between two VMs
on different hypervisors lost 1 of 2, however long after both were bound (tests/integration/test_first_ping.py).
(The kernel datapath queues such a packet in the kernel's neighbour table instead.)

So when a VRS's desired flows or groups first tunnel to a VTEP (a VM of a subnet it has appeared on another
hypervisor, a hardware VTEP bound to the subnet, an EVPN route), and again on each new OpenFlow connection of
that VRS (ovs-vswitchd restarted: its cache is empty), the controller sends one probe through its VXLAN port to
that VTEP: a packet-out whose own miss makes Open vSwitch resolve the address. When the address is known already
the probe reaches the VTEP with VNI ``PROBE_VNI`` (0), which no subnet or domain has (VNIs are 1..2^24-1), so the
VTEP drops it (a VRS in its classify table).

Open vSwitch forgets an entry that no packet looked up for ``tnl/neigh/aging`` (15 min by default), and a probe's
own look-up renews it: so every ``vrs.tunnel_probe_refresh_ms`` (5 min by default) each VRS probes every VTEP it
tunnels to again (``again``), and two hypervisors quiet for longer than the ageing still keep their entries.

``TunnelWarmer`` is pure bookkeeping; ``ProbeSender`` sends, from a green thread per switch (controller/app.py), once
the switch was first in sync on that connection and at most ``vrs.tunnel_probe_rate`` a second on average for all
switches, each switch's together, and each first probe towards a VTEP once more ``vrs.tunnel_probe_retry_ms``
after it left (its ARP request or reply may have been lost).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import operator
import time
from itertools import chain, compress, repeat
from operator import eq

from controller.pacer import C_PER_UNIT, c_runs
from controller.ryu_compat import hub

from openflow.floods import to_vtep

log = logging.getLogger(__name__)

PROBE_VNI = 0  # never a subnet's or a domain's VNI (controller/fields.py: 1..MAX_VNI)
PROBE_OUI = b"\x02\xca"  # locally administered: a probe's source and destination MAC, then its VRS's VTEP IPv4
PROBE_ETHERTYPE = 0x88B5  # IEEE 802 local experimental: nothing on the way acts on it
TUNNEL_DST = "tun_ipv4_dst"


def probe_mac(vtep_ip: str | None) -> bytes:
    """The MAC a probe from the VRS whose VTEP address is ``vtep_ip`` carries as source and destination: one per VRS.
    A hardware VTEP built on Open vSwitch (ovs-vtep) takes VNI 0 in on a bridge of its own that switches by MAC
    (action NORMAL) between its tunnels to every hypervisor: it learns the MAC on the tunnel the probe came in by
    and, the destination being that MAC, sends it nowhere. With one MAC for all, it learned it from one hypervisor
    and sent the others' probes on to that one (tests/integration/test_tunnel_probe_far_end.py)."""
    try:
        return PROBE_OUI + ipaddress.IPv4Address(vtep_ip).packed
    except ValueError:  # no VTEP address (yet): a MAC of its own all the same
        return PROBE_OUI + bytes(4)


def probe_frame(vtep_ip: str | None) -> bytes:
    """The Ethernet frame of a probe from the VRS whose VTEP address is ``vtep_ip`` (60 bytes, zero payload)."""
    mac = probe_mac(vtep_ip)
    return (mac + mac + PROBE_ETHERTYPE.to_bytes(2, "big")).ljust(60, b"\0")


_second, _THIRD, _HEAD = operator.itemgetter(1), operator.itemgetter(2), operator.itemgetter(slice(0, 2))


def _targets(actions) -> list[str]:
    return [a[2] for a in actions if a[0] == "set" and a[1] == TUNNEL_DST]


def _bucket_targets(buckets: tuple, out: set, pacer=None) -> None:
    """The VTEP addresses a group's ``buckets`` send to, added to ``out``, in C loops ``C_PER_UNIT`` buckets a unit of
    ``pacer``: a subnet's flood group on a switch of 10,000 of its vports (a bucket each) was ~45 bytecodes a bucket
    in one unit (tests/benchmarks/burst_places.py ``push``)."""
    for a, b in c_runs(pacer, len(buckets)) if pacer is not None else ((0, len(buckets)),):
        actions = list(chain.from_iterable(buckets[a:b]))
        out.update(map(_THIRD, compress(actions, map(eq, map(_HEAD, actions), repeat(("set", TUNNEL_DST))))))


class TunnelWarmer:
    """Which VTEPs each VRS has been probed towards, on which OpenFlow connection, and the probes now due."""

    def __init__(self):
        self.probed: dict[str, tuple[tuple, set[str]]] = {}  # session -> ((connection, VXLAN port), VTEP addresses)
        # while ``reading``: id(flow set) -> (that flow set, the VTEPs its flows send to): an owner's flows compiled
        # once are the same set object in every switch's desired state (openflow/compiler.py Shared), so 5,000
        # vports are read once per pass, not once per switch
        self._read: dict[int, tuple[frozenset, frozenset]] | None = None

    @contextlib.contextmanager
    def reading(self):
        """A programming pass or a refresh round: a flow set several switches share is read once within it, and no
        flow set is kept after it. Kept, the flow sets of 10,000 owners withdrawn by the next pass would be freed
        at once when dropped here, not paced as the programmer frees them (controller/pacer.py ``release``).
        Overlapping (a refresh round pausing while a pass runs): the first to end stops the sharing, nothing else."""
        self._read = {}
        try:
            yield
        finally:
            self._read = None

    def tunnel_ips(self, desired, owners, pacer=None) -> set[str]:
        """The VTEP addresses the flows and groups of ``owners`` (None: every owner) in ``desired``
        (openflow.compiler.Desired) send to; ``pacer`` ticks once per flow set (read, or united as read before) and
        per owner's groups read. Within ``reading`` a flow set read for one switch is not read again for the next,
        nor walked per owner: after the start-up hold 50 switches of 5,000 owners each were 250,000 Python steps
        (~0.4 s), now each switch costs C loops over its owners and Python steps only for the flow sets no switch had
        before. Those C loops tick too, after them: a refresh round (``again``) of 50 switches sharing 5,000 flow sets
        was otherwise one stretch after the first switch's reads (~70 ms, 10,000: ~140 ms)."""
        flows_of, groups_of = desired.flows, desired.groups
        if owners is None:
            sets, grouped = list(flows_of.values()), list(groups_of.values())
        else:
            owners = list(owners)  # (C loops: none of Python's steps per owner)
            sets, grouped = list(filter(None, map(flows_of.get, owners))), list(filter(None, map(groups_of.get, owners)))
        shared = self._read if self._read is not None else {}
        by_id = dict(zip(map(id, sets), sets))  # (a set held in ``shared`` is alive: its id names it alone)
        fresh = by_id.keys() - shared.keys()
        for key in fresh:
            flows = by_id[key]
            shared[key] = (flows, frozenset(ip for f in flows for ip in _targets(f.actions)))
            if pacer is not None:
                pacer.tick()
        out: set[str] = set().union(*map(_second, map(shared.__getitem__, by_id)))
        if pacer is not None and len(by_id) > len(fresh):
            pacer.tick(len(by_id) - len(fresh))
        for groups in grouped:
            for group in groups:  # (a few buckets: one C loop, the owner's tick)
                _bucket_targets(group.buckets, out, pacer if len(group.buckets) > C_PER_UNIT else None)
            if pacer is not None:
                pacer.tick()
        return out

    def due(self, sw, connection, desired, changed, pacer=None, again=False) -> list[tuple[tuple, bytes]]:
        """(actions, frame) packet-outs for switch ``sw`` (a View switch: session, tunnel port, own VTEP IP) on
        ``connection`` after its desired state was handed out. ``changed``: the owners handed out, or None (all
        of them); a connection or VXLAN port not seen before looks at every owner (a remote endpoint's flows do
        not change when the switch's VXLAN port appears: only its tunnel_out flow does). ``again``: every VTEP
        the switch tunnels to now, probed before or not (the refresh; VTEPs it no longer tunnels to are dropped)."""
        if not sw.tunnel_ofport:  # no VXLAN port yet: once it has one, every owner is looked at
            self.probed.pop(sw.session, None)
            return []
        known = self.probed.get(sw.session)
        if again or known is None or known[0] != (connection, sw.tunnel_ofport):
            known = self.probed[sw.session] = ((connection, sw.tunnel_ofport), set())
            changed = None
        new = self.tunnel_ips(desired, changed, pacer) - known[1] - {sw.vtep_ip, None}
        known[1].update(new)
        frame = probe_frame(sw.vtep_ip)
        return [(to_vtep(PROBE_VNI, ip, sw), frame) for ip in sorted(new)]

    def again(self, view, desired_by_session: dict, reconciler_of, pacer=None):
        """(reconciler, VXLAN port, [(actions, frame)...]) of every VRS of ``view`` with desired state and a reconciler
        (``reconciler_of(datapath id)``): all its probes again, the periodic refresh that keeps Open vSwitch's
        entries from ageing out (docs/vrs.md). A generator: the caller sends each switch's; it pauses with
        ``pacer`` per owner read. At its end, the switches no longer in ``desired_by_session`` are forgotten (one
        that left during the round's pauses was forgotten by the programming pass, then counted here again)."""
        with self.reading():
            for session, desired in list(desired_by_session.items()):
                sw = view.switches.get(session)
                rec = reconciler_of(sw.datapath_id) if sw is not None and sw.datapath_id is not None else None
                if rec is not None:
                    probes = self.due(sw, rec.datapath, desired, None, pacer, again=True)
                    if probes:
                        yield rec, sw.tunnel_ofport, probes
        for session in self.probed.keys() - desired_by_session.keys():
            del self.probed[session]

    def forget(self, session: str) -> None:
        """A VRS that left: what it was probed towards no longer matters."""
        self.probed.pop(session, None)

    def disconnected(self, connection) -> None:
        """An OpenFlow connection closed (its OVSDB session may stay): its next connection probes everything again
        anyway, and the closed one must not be kept alive by this record until then."""
        for session in [s for s, (key, _) in self.probed.items() if key[0] is connection]:
            del self.probed[session]


class ProbeSender:
    """Sends each switch's probes from a green thread of its own (``spawn``), in turn, while ``may_send()`` (the
    active controller). Ryu queues 16 messages per OpenFlow connection and then blocks whoever sends more until the
    switch reads: a switch slow to read (ovs-vswitchd busy or stopped) must hold up neither the programming pass nor
    the OpenFlow events (controller/app.py sends from both) nor the other switches' probes. Probes due while a
    switch's sender waits join its queue, once per VTEP: a queue never holds more than the VTEPs it tunnels to.

    What a probe costs is the far side's: the address it resolves is asked by ARP, which a flat underlay broadcasts
    to every hypervisor (50 VRS probing each other at a cold start: 2,450 ARP requests, each an upcall in 49
    userspace bridges). So the probes of one switch wait until its reconciler first had it in sync on this
    connection (``rec.first_sync``: its flows go in first, and a VM's packet needs them anyway), and all switches'
    probes together leave at most ``rate`` a second on average (``vrs.tunnel_probe_rate``), switch after switch,
    each switch's queued probes together (at most ``rate`` of them): every tunnel neighbour entry Open vSwitch
    learns makes it revalidate every datapath flow it has (``tnl_conf_seq``: ``REV_RECONFIGURE``), once for the
    answers it learns in one turn of its main loop, once each when they come apart. One probe at a time from
    switch to switch in turn spread each switch's answers out, and the OVS daemons worked about twice as long.

    A queue holds probes for one VXLAN port (``send``'s ``port``): probes for another port replace it (the port was
    re-created meanwhile: the old number is stale), and a switch without one drops its queue.

    Each first probe towards a VTEP on a connection is sent once more ``retry`` seconds after it left
    (``vrs.tunnel_probe_retry_ms``; 0: never), paced as the others: a probe whose ARP request or reply was lost
    (hypervisors starved of CPU at a cold start) would otherwise wait for the next refresh round, and a VM's first
    packet to that VTEP would be dropped meanwhile. Resolved by then, the second probe costs no ARP: it reaches the
    VTEP and is dropped there. The refresh round's probes are sent once (``send``'s ``retry``): their VTEPs were
    resolved, a look-up costs no ARP, and the round itself comes again. While only second probes wait, the
    switch's sender sleeps until the first is due, a new probe comes or the switch disconnects (``wait``)."""

    def __init__(self, spawn, may_send, rate: float, retry: float = 0.0, clock=time.monotonic, sleep=hub.sleep,
                 wait=lambda event, seconds: event.wait(seconds)):
        self._spawn, self._may_send, self._retry = spawn, may_send, retry
        self._gap, self._clock, self._sleep, self._wait = 1.0 / rate, clock, sleep, wait
        self._burst = max(1, int(rate))  # a switch's probes that leave together at most: one second's
        self._next = 0.0  # when the next probe of any switch may leave (clock)
        self.queued: dict = {}  # reconciler -> _Queue of probes not sent yet, while its sender runs

    def send(self, rec, port, probes, retry: bool = True) -> None:
        """Queue ``probes`` ((actions, frame) packet-outs through VXLAN port ``port``) for reconciler ``rec``'s
        switch; never blocks. ``retry``: each sent once more after ``vrs.tunnel_probe_retry_ms`` (not the refresh
        round's: their VTEPs were resolved before, so they cost no ARP that could be lost)."""
        queue = self.queued.get(rec)
        if queue is not None:
            queue.woken.set()  # its sender may be waiting for second probes: it looks at the queue again
            if queue.port != port:
                queue.clear()
                queue.port = port
        if not probes or not port:
            return
        if queue is None:
            queue = self.queued[rec] = _Queue(port)
            self._spawn(self._run, rec, queue)
        for actions, frame in probes:  # queued by both a first probe and a refresh before it left: sent twice
            if retry:
                queue.once.discard(actions)
            elif actions not in queue.probes:
                queue.once.add(actions)
            queue.probes[actions] = frame

    def disconnected(self, rec) -> None:
        """Reconciler ``rec``'s OpenFlow connection closed (``rec`` stopped): its sender ends now, not once its
        next second probe is due, and keeps neither ``rec`` nor its connection meanwhile."""
        queue = self.queued.get(rec)
        if queue is not None:
            queue.clear()
            queue.woken.set()

    def _pace(self, count: int) -> None:
        """Wait for the turn of ``count`` probes among every switch's: they leave together, and the next ones
        ``count / rate`` seconds later."""
        now = self._clock()
        at = max(now, self._next)
        self._next = at + count * self._gap
        if at > now:
            self._sleep(at - now)

    def _once(self, queue, actions) -> bool:
        """Whether a probe that just left for the first time is not to be sent again (and it is no longer queued)."""
        if actions in queue.once:
            queue.once.discard(actions)
            return True
        return self._retry <= 0

    def _run(self, rec, queue) -> None:
        try:
            rec.first_sync.wait()
            while self._may_send() and rec.state != "stopped":
                pending = queue.probes or queue.take_due(self._clock())
                if not pending:
                    if not queue.later:
                        break
                    queue.woken.clear()
                    self._wait(queue.woken, max(0.0, queue.next_due() - self._clock()))
                    continue
                count = min(len(pending), self._burst)
                self._pace(count)
                for _ in range(count):  # asked again after the pause: the port went, this node is standby now,
                    pending = queue.probes or queue.again  # or the switch left (its reconciler stopped)
                    if not pending or not self._may_send() or rec.state == "stopped":
                        break
                    actions = next(iter(pending))
                    frame = pending.pop(actions)
                    rec.packet_out(actions, frame)
                    if pending is queue.probes and not self._once(queue, actions):
                        queue.later.pop(actions, None)  # (kept in the order they are due)
                        queue.later[actions] = (frame, self._clock() + self._retry)
        except Exception:  # a connection that closed meanwhile: the next connection probes again
            log.debug("tunnel probe not sent", exc_info=True)
        finally:
            if self.queued.get(rec) is queue:
                del self.queued[rec]


class _Queue:
    """One switch's probes not sent yet, all through VXLAN port ``port``: ``probes`` (actions -> frame) to send a
    first time, ``again`` to send a second time now, ``later`` (actions -> (frame, when)) a second time when due."""

    def __init__(self, port):
        self.port, self.probes, self.again, self.later = port, {}, {}, {}
        self.once: set = set()  # of ``probes``: the refresh round's, sent once only
        self.woken = hub.Event()  # set by each ``send`` to this queue, and when its switch disconnected

    def clear(self) -> None:
        self.probes.clear()
        self.once.clear()
        self.again.clear()
        self.later.clear()

    def next_due(self) -> float:
        return next(iter(self.later.values()))[1]

    def take_due(self, now: float) -> dict:
        """``again``, with the second probes due by ``now`` moved into it."""
        while self.later and self.next_due() <= now:
            actions = next(iter(self.later))
            self.again[actions] = self.later.pop(actions)[0]
        return self.again
