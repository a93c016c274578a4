"""Tunnel probes (openflow/tunnel_warm.py): a VRS is made to resolve each VTEP its desired state tunnels to, bridged
or routed, once per OpenFlow connection and VXLAN port, and again only for VTEPs new to it. The traffic it saves (the
first ping between two hypervisors) is tests/integration/test_first_ping.py."""

import random
import weakref
from dataclasses import replace
from types import SimpleNamespace

import pytest
from ryu.lib import hub

from controller.app import CanopyApp
from controller.pacer import Pacer
from openflow.floods import to_vtep
from openflow.flows import Owner
from openflow.pipeline import CLASSIFY
from openflow.trace import walk
from openflow.tunnel_warm import PROBE_ETHERTYPE, PROBE_VNI, ProbeSender, TunnelWarmer, probe_frame
from tests.unit.green import Jobs, turns
from tests.unit.oracle_world import World

HV1 = "ovsdb:hv1"
IPS = {"hv1": "10.251.0.1", "hv2": "10.251.0.2", "hv3": "10.251.0.3", "hv4": "10.251.0.4"}


def place(world, vm, host, subnet, ofport):
    world.vports[vm] = {"subnet": subnet, "mac": 0, "ip": 20 + ofport}
    world.commit()
    world.hosts.setdefault(host, {"tunnel": 1, "vtep": IPS[host]})
    world.placed[vm], world.ofports[vm] = host, ofport
    world.push(host)


def three_hosts():
    """k1 (web) on hv1, h1 (web) on hv2, e1 (db, routed from web) on hv3."""
    world = World(random.Random(1))
    for vm, host, subnet, ofport in (("k1", "hv1", "web", 11), ("h1", "hv2", "web", 12), ("e1", "hv3", "db", 13)):
        place(world, vm, host, subnet, ofport)
    world.prog.refresh(full=True)
    return world


def probes(world, warmer, connection, whole=False, session=HV1, sw=None):
    changed = world.prog.take_changes(session)
    sw = sw or world.prog.view.switches[session]
    return warmer.due(sw, connection, world.prog.desired[session], None if whole else changed)


def targets(out) -> list[str]:
    return [dict((a[1], a[2]) for a in actions if a[0] == "set")["tun_ipv4_dst"] for actions, _ in out]


def test_a_switch_probes_every_vtep_it_tunnels_to_bridged_or_routed_and_never_its_own():
    world, warmer, conn = three_hosts(), TunnelWarmer(), object()
    desired, sw = world.prog.desired[HV1], world.prog.view.switches[HV1]
    flooded = {a[2] for gs in desired.groups.values() for g in gs for b in g.buckets for a in b
               if a[:2] == ("set", "tun_ipv4_dst")}
    assert flooded == {IPS["hv2"]}  # hv3 shares no subnet with hv1: only the domain's routes name it
    out = probes(world, warmer, conn, whole=True)
    assert out == [(to_vtep(PROBE_VNI, ip, sw), probe_frame(IPS["hv1"])) for ip in (IPS["hv2"], IPS["hv3"])]
    assert to_vtep(PROBE_VNI, IPS["hv2"], sw)[-1] == ("output", 1)  # out of the switch's VXLAN port
    frame = probe_frame(IPS["hv1"])
    assert len(frame) == 60 and int.from_bytes(frame[12:14], "big") == PROBE_ETHERTYPE
    # source and destination: a MAC of this VRS's own (a hardware VTEP switching VNI 0 by MAC sends it nowhere)
    assert frame[:6] == frame[6:12] == bytes.fromhex("02ca0afb0001") != probe_frame(IPS["hv2"])[:6]
    assert probe_frame(None)[:6] == bytes.fromhex("02ca00000000")


def test_only_a_vtep_new_to_the_switch_is_probed_and_only_once():
    world, warmer, conn = three_hosts(), TunnelWarmer(), object()
    probes(world, warmer, conn, whole=True)
    place(world, "k2", "hv4", "web", 14)  # a fourth hypervisor gets a VM of hv1's subnet
    world.prog.refresh()
    assert targets(probes(world, warmer, conn)) == [IPS["hv4"]]
    assert probes(world, warmer, conn, whole=True) == []  # compiled whole again: nothing new


def test_a_new_connection_probes_everything_again():
    world, warmer = three_hosts(), TunnelWarmer()
    probes(world, warmer, object(), whole=True)
    assert targets(probes(world, warmer, object())) == [IPS["hv2"], IPS["hv3"]]  # ovs-vswitchd restarted


def test_a_switch_whose_vxlan_port_comes_late_probes_every_vtep_when_it_comes():
    world, warmer, conn = three_hosts(), TunnelWarmer(), object()
    sw = world.prog.view.switches[HV1]
    assert probes(world, warmer, conn, whole=True, sw=replace(sw, tunnel_ofport=None)) == []
    # its port numbered: only the switch's own tunnel_out flow changes, not the remote endpoints' flows
    desired = world.prog.desired[HV1]
    out = warmer.due(sw, conn, desired, {Owner("switch", HV1)})
    assert targets(out) == [IPS["hv2"], IPS["hv3"]]
    assert targets(warmer.due(replace(sw, tunnel_ofport=7), conn, desired, set())) == [IPS["hv2"], IPS["hv3"]]


def test_a_switch_that_left_is_forgotten():
    world, warmer, conn = three_hosts(), TunnelWarmer(), object()
    probes(world, warmer, conn, whole=True)
    warmer.forget(HV1)
    assert warmer.probed == {}
    assert warmer.tunnel_ips(world.prog.desired[HV1], []) == set()


def test_the_refresh_probes_every_vtep_again_and_drops_those_no_longer_tunnelled_to():
    world, warmer = three_hosts(), TunnelWarmer()
    view = world.prog.view
    recs = {sw.datapath_id: SimpleNamespace(datapath=object()) for sw in view.switches.values()}
    rec1 = recs[view.switches[HV1].datapath_id]
    probes(world, warmer, rec1.datapath, whole=True)

    def refreshed():
        return [ip for rec, port, out in warmer.again(world.prog.view, world.prog.desired, recs.get) if rec is rec1
                for ip in targets(out)]

    assert refreshed() == [IPS["hv2"], IPS["hv3"]]  # probed before, and probed again: the entries age otherwise
    assert refreshed() == [IPS["hv2"], IPS["hv3"]]
    del world.placed["e1"]  # hv3's only VM leaves: hv1 no longer routes to it
    world.push("hv3")
    world.prog.refresh()
    assert refreshed() == [IPS["hv2"]]
    assert warmer.probed[HV1][1] == {IPS["hv2"]}
    assert warmer._read is None  # the flow sets read are not kept after the round


def test_a_vrs_drops_a_probe_that_reaches_it_whatever_its_world():
    """The far end of a probe: VNI 0 arriving on a VRS's VXLAN port ends in its classify table's drop, in worlds
    with subnets, domains, hardware VTEPs, EVPN routes and external networks (tests/unit/oracle_world.py)."""
    tunnelled = 0
    for seed in range(5):
        world = World(random.Random(seed))
        for _ in range(150):
            world.step()
        world.prog.refresh(full=True)
        for session, desired in world.prog.desired.items():
            sw = world.prog.view.switches.get(session)
            if sw is None or not sw.tunnel_ofport:
                continue
            packet = {"in_port": sw.tunnel_ofport, "tunnel_id": PROBE_VNI, "tun_ipv4_src": IPS["hv2"],
                      "eth_src": "02:ca:0a:fb:00:02", "eth_dst": "02:ca:0a:fb:00:02", "eth_type": PROBE_ETHERTYPE}
            trace = walk([f for flows in desired.flows.values() for f in flows], desired.all_groups(), packet,
                         sw.tunnel_ofport)
            assert [e.kind for e in trace.exits] == ["drop"], trace.exits
            assert [(s.table, s.priority) for s in trace.steps] == [(CLASSIFY, 0)], trace.steps  # its default
            tunnelled += any(dict(f.match).get("tunnel_id") for flows in desired.flows.values() for f in flows)
    assert tunnelled >= 6  # switches that take in VNIs from their tunnel port


class Switch:
    """A reconciler's packet-out as the app calls it: records, and blocks while ``stuck`` (a switch slow to read:
    Ryu blocks the sender once 16 messages wait on its connection); in sync on its connection unless ``syncing``."""

    def __init__(self, stuck=False, syncing=False):
        self.sent, self.gate, self.first_sync, self.state = [], hub.Event(), hub.Event(), "in_sync"
        if not stuck:
            self.gate.set()
        if not syncing:
            self.first_sync.set()

    def packet_out(self, actions, frame):
        self.gate.wait()
        self.sent.append(actions)


JOBS = Jobs()  # the green threads the test under way spawned (its senders', its own): their errors fail it


@pytest.fixture(autouse=True)
def jobs_of_the_test():
    JOBS.clear()
    yield
    JOBS.clear()


def settle(count=20):
    """``count`` turns of the hub; a job of ``JOBS`` ended by an error fails the test at once with it."""
    turns(count, JOBS)


def probes_to(*ips, port=1):
    sw = SimpleNamespace(tunnel_ofport=port)
    return [(to_vtep(PROBE_VNI, ip, sw), probe_frame(None)) for ip in ips]


def sender(spawn=JOBS, may_send=lambda: True, rate=1000.0, clock=None, retry=0.0):
    """A ProbeSender; its pauses are turns of the hub (no wall clock) unless ``clock`` (a FakeClock) is given."""
    if clock is None:
        return ProbeSender(spawn, may_send, rate, clock=lambda: 0.0, sleep=lambda s: hub.sleep(0))
    return ProbeSender(spawn, may_send, rate, retry, clock=clock.now, sleep=clock.sleep, wait=clock.wait)


def test_a_switch_slow_to_read_holds_up_neither_the_caller_nor_the_other_switches_and_its_queue_stays_bounded():
    spawned = []
    out = sender(lambda *a: spawned.append(JOBS(*a)))
    stuck, fine = Switch(stuck=True), Switch()
    out.send(stuck, 1, probes_to(IPS["hv2"], IPS["hv3"]))
    out.send(fine, 1, probes_to(IPS["hv1"]))
    assert stuck.sent == fine.sent == []  # nothing sent on the caller's green thread
    settle()
    assert fine.sent == [probes_to(IPS["hv1"])[0][0]] and stuck.sent == []
    for _ in range(3):  # every refresh round again while it does not read
        out.send(stuck, 1, probes_to(IPS["hv2"], IPS["hv3"], IPS["hv4"]))
    assert len(spawned) == 2 and len(out.queued[stuck].probes) == 3  # one sender, at most one probe queued per VTEP
    stuck.gate.set()
    settle()
    assert sorted(targets([(a, b"") for a in stuck.sent])) == [IPS["hv2"], IPS["hv2"], IPS["hv3"], IPS["hv4"]]
    assert out.queued == {}


def test_probes_go_from_a_green_thread_of_their_own_and_only_from_the_active_controller():
    """The programming pass (and the OpenFlow event that adopts a switch) hand probes over, never wait for a switch
    to read them (controller/appannounce.py ``_warm_tunnels``); a standby neither sends nor counts a VTEP probed."""
    world = three_hosts()
    rec = Switch()
    rec.datapath = object()
    glue = SimpleNamespace(pair=SimpleNamespace(role="standby"), tunnels=TunnelWarmer(), programmer=world.prog,
                           probes=sender(may_send=lambda: glue.pair.role == "active"))
    sw, desired = world.prog.view.switches[HV1], world.prog.desired[HV1]
    CanopyApp._warm_tunnels(glue, rec, sw, desired, None)
    settle()
    assert rec.sent == [] and glue.tunnels.probed == {}
    glue.pair.role = "active"
    CanopyApp._warm_tunnels(glue, rec, sw, desired, None)
    assert rec.sent == []  # handed over: the caller goes on
    settle()
    assert targets([(a, b"") for a in rec.sent]) == [IPS["hv2"], IPS["hv3"]]


def test_a_refresh_round_forgets_a_switch_that_left_during_it():
    world, warmer = three_hosts(), TunnelWarmer()
    view = world.prog.view
    recs = {sw.datapath_id: SimpleNamespace(datapath=object()) for sw in view.switches.values()}
    warmer.probed["ovsdb:gone"] = ((object(), 1), {IPS["hv2"]})  # re-counted by a round after it was forgotten
    assert list(warmer.again(view, world.prog.desired, recs.get))
    assert set(warmer.probed) == set(world.prog.desired) - {"ovsdb:gone"}


def test_a_pass_reads_only_the_owners_it_changed():
    """The work per programming pass follows the change: one owner changed, one owner's flows read (the pacer ticks
    once per flow set read and per owner's groups read), not every owner of the switch."""
    world, warmer, conn = three_hosts(), TunnelWarmer(), object()
    reads = Pacer(lambda: None, every=1)
    desired, sw = world.prog.desired[HV1], world.prog.view.switches[HV1]
    assert warmer.due(sw, conn, desired, None, reads) and reads.pauses == len(desired.flows) + len(desired.groups)
    assert len(desired.flows) > 5
    reads.pauses = 0
    assert warmer.due(sw, conn, desired, {Owner("switch", HV1)}, reads) == [] and reads.pauses == 1


class Tracked(frozenset):
    """A flow set whose end a weak reference sees."""


def test_no_flow_set_is_kept_after_a_pass_or_outside_one():
    """The programmer frees the flow sets it no longer needs paced (controller/pacer.py release): the warmer must
    not hold the last reference to them, to be dropped all at once later."""
    world, warmer = three_hosts(), TunnelWarmer()
    desired, sw = world.prog.desired[HV1], world.prog.view.switches[HV1]
    flows = desired.flows[Owner("switch", HV1)] = Tracked(desired.flows[Owner("switch", HV1)])
    gone = weakref.ref(flows)
    del flows
    warmer.due(sw, object(), desired, None)  # the OpenFlow event adopting a switch: outside any pass
    with warmer.reading():
        warmer.due(sw, object(), desired, None)
        assert warmer._read  # shared within the pass
    desired.flows.pop(Owner("switch", HV1))
    assert gone() is None


def test_a_vrs_with_no_vport_probes_nothing():
    """Only VTEPs that a local vport can reach are probed: a hypervisor with no vport of a subnet or domain gets none
    of their flows (openflow/owners.py), so it tunnels nowhere and sends no probe into a flat underlay's ARP."""
    world, warmer = three_hosts(), TunnelWarmer()
    world.hosts["hv4"] = {"tunnel": 1, "vtep": IPS["hv4"]}
    world.push("hv4")
    world.prog.refresh(full=True)
    assert world.prog.view.switches["ovsdb:hv4"].tunnel_ofport
    assert probes(world, warmer, object(), whole=True, session="ovsdb:hv4") == []
    assert targets(probes(world, warmer, object(), whole=True)) == [IPS["hv2"], IPS["hv3"]]  # hv1 has k1: it does


class FakeClock:
    """The clock of a ProbeSender in tests: a pause moves it on (and gives the hub a turn); no wall clock."""

    def __init__(self):
        self.t, self.waking = 0.0, []

    def now(self):
        return self.t

    def sleep(self, seconds):
        """Until ``seconds`` from now: the clock moves to the earliest sleeper's wake-up, then the next one's."""
        self.wait(None, seconds)

    def wait(self, event, seconds):
        """Until ``seconds`` from now or ``event`` (a hub.Event) is set, whichever comes first."""
        wake = self.t + seconds
        self.waking.append(wake)
        hub.sleep(0)  # a green thread that sleeps at the same time first: it may wake earlier
        while self.t < wake and not (event is not None and event.is_set()):
            if wake == min(self.waking):
                self.t = wake
            else:
                hub.sleep(0)
        self.waking.remove(wake)


class TimedSwitch(Switch):
    def __init__(self, clock, **kw):
        super().__init__(**kw)
        self.clock, self.times = clock, []

    def packet_out(self, actions, frame):
        super().packet_out(actions, frame)
        self.times.append(self.clock.t)


def test_every_switch_s_probes_together_leave_at_most_rate_a_second_each_switch_s_together():
    """At a cold start 50 VRS each probe 49 VTEPs: on a flat underlay each probe's ARP is an upcall in every bridge,
    so all switches' probes together are paced (vrs.tunnel_probe_rate), not each switch's alone. A switch's own
    leave together: each neighbour entry Open vSwitch learns apart from the others makes it revalidate every
    datapath flow it has (one probe from each switch in turn doubled the OVS daemons' CPU at a cold start)."""
    clock = FakeClock()
    out = sender(rate=10.0, clock=clock)
    recs = [TimedSwitch(clock) for _ in range(3)]
    for rec in recs:
        out.send(rec, 1, probes_to(IPS["hv2"], IPS["hv3"], IPS["hv4"]))
    settle(60)
    assert out.queued == {}
    assert sorted(rec.times for rec in recs) == [[pytest.approx(t)] * 3 for t in (0.0, 0.3, 0.6)]  # 10 a second


def test_a_switch_s_probes_leave_together_at_most_rate_at_once():
    clock = FakeClock()
    out, rec = sender(rate=2.0, clock=clock), TimedSwitch(clock)
    out.send(rec, 1, probes_to(*(f"10.251.1.{n}" for n in range(5))))
    settle(60)
    assert rec.times == [pytest.approx(t) for t in (0.0, 0.0, 1.0, 1.0, 2.0)] and out.queued == {}


def test_a_node_that_is_standby_now_sends_no_more_of_a_switch_s_probes_leaving_together():
    active = [True]
    rec = Switch()
    out = sender(may_send=lambda: active[0])
    rec.packet_out = lambda actions, frame: (rec.sent.append(actions), active.__setitem__(0, False))
    out.send(rec, 1, probes_to(IPS["hv2"], IPS["hv3"], IPS["hv4"]))
    settle()
    assert len(rec.sent) == 1 and out.queued == {}


def test_a_switch_stopped_while_its_probes_wait_their_turn_gets_none_of_them():
    """The controller shutting down (or the switch leaving: its reconciler stopped) during the rate's pause: the
    probes that were waiting for it stay unsent."""
    rec = Switch()

    def pause(seconds):
        rec.state = "stopped"

    out = ProbeSender(JOBS, lambda: True, 1.0, clock=lambda: 0.0, sleep=pause)  # one probe a second
    out.send(rec, 1, probes_to(IPS["hv2"], IPS["hv3"], IPS["hv4"]))
    settle()
    assert rec.sent == [probes_to(IPS["hv2"])[0][0]] and out.queued == {}


def test_a_switch_is_probed_only_once_its_flows_are_in():
    """Its first sync on this connection first: the probes' ARP would compete with its flow-mods, and a VM's packet
    needs the flows anyway."""
    out, rec = sender(), Switch(syncing=True)
    out.send(rec, 1, probes_to(IPS["hv2"], IPS["hv3"]))
    settle()
    assert rec.sent == [] and len(out.queued[rec].probes) == 2
    rec.first_sync.set()
    settle()
    assert targets([(a, b"") for a in rec.sent]) == [IPS["hv2"], IPS["hv3"]] and out.queued == {}


def test_a_stopped_switch_s_waiting_probes_are_dropped():
    out, rec = sender(), Switch(syncing=True)
    out.send(rec, 1, probes_to(IPS["hv2"]))
    settle()
    rec.state = "stopped"
    rec.first_sync.set()  # SwitchReconciler.stop sets it: nothing waits for a switch that is gone
    settle()
    assert rec.sent == [] and out.queued == {}


def test_queued_probes_follow_the_vxlan_port_re_created_meanwhile():
    """A probe waiting in a queue leaves through the port the switch has when it leaves, never a stale number."""
    out, rec = sender(), Switch(syncing=True)
    out.send(rec, 1, probes_to(IPS["hv2"], IPS["hv3"], port=1))
    out.send(rec, 7, probes_to(IPS["hv2"], port=7))  # the port re-created: numbered 7 now
    rec.first_sync.set()
    settle()
    assert rec.sent == [a for a, _ in probes_to(IPS["hv2"], port=7)]
    rec.first_sync.clear()  # (a fake switch waiting again, to hold the queue)
    out.send(rec, 7, probes_to(IPS["hv3"], IPS["hv4"], port=7))
    out.send(rec, None, [])  # the port went: nothing to probe through
    rec.first_sync.set()
    settle()
    assert rec.sent == [a for a, _ in probes_to(IPS["hv2"], port=7)] and out.queued == {}


class Connection:
    """An OpenFlow connection (a Ryu Datapath) whose end a weak reference sees."""

    id = 0x1


def test_a_closed_openflow_connection_is_not_kept_while_ovsdb_stays():
    """The switch's OpenFlow connection closes, its OVSDB session stays (the View still has it): the warmer must not
    hold the closed connection (a Ryu Datapath: its socket and queues) until the next one comes."""
    from controller.ryu_compat import DEAD_DISPATCHER

    world = three_hosts()
    glue = SimpleNamespace(reconcilers={}, tunnels=TunnelWarmer(),
                           state=SimpleNamespace(datapath_down=lambda dpid, conn: None))
    conn = Connection()
    assert probes(world, glue.tunnels, conn, whole=True)
    gone = weakref.ref(conn)
    CanopyApp._datapath_state(glue, SimpleNamespace(datapath=conn, state=DEAD_DISPATCHER))
    del conn
    assert gone() is None and HV1 not in glue.tunnels.probed
    assert targets(probes(world, glue.tunnels, Connection())) == [IPS["hv2"], IPS["hv3"]]  # the next: all again


def test_each_probe_is_sent_once_more_a_retry_after_it_left_paced_as_the_others():
    """A probe whose ARP request or reply was lost (hypervisors starved at a cold start) is not left to the next
    refresh round (vrs.tunnel_probe_retry_ms); the second probes leave at the same pace, and only once."""
    clock = FakeClock()
    out, rec = sender(rate=2.0, clock=clock, retry=5.0), TimedSwitch(clock)
    out.send(rec, 1, probes_to(IPS["hv2"], IPS["hv3"], IPS["hv4"]))
    settle(600)
    assert rec.times == [pytest.approx(t) for t in (0.0, 0.0, 1.0, 5.0, 5.0, 6.0)] and out.queued == {}
    assert rec.sent[3:] == rec.sent[:3]


def test_a_new_probe_does_not_wait_for_the_second_probes_due_later():
    clock = FakeClock()
    out, rec = sender(rate=100.0, clock=clock, retry=5.0), TimedSwitch(clock)
    out.send(rec, 1, probes_to(IPS["hv2"]))

    def later():
        clock.sleep(1.0)
        out.send(rec, 1, probes_to(IPS["hv3"]))

    JOBS(later)
    settle(600)
    assert targets([(a, b"") for a in rec.sent]) == [IPS["hv2"], IPS["hv3"], IPS["hv2"], IPS["hv3"]]
    assert rec.times == [0.0, 1.0, 5.0, 6.0]
    assert out.queued == {}


def test_second_probes_through_a_vxlan_port_re_created_meanwhile_are_dropped():
    clock = FakeClock()
    out, rec = sender(rate=100.0, clock=clock, retry=5.0), TimedSwitch(clock)
    out.send(rec, 1, probes_to(IPS["hv2"], port=1))

    def recreated():
        clock.sleep(1.0)
        out.send(rec, 7, probes_to(IPS["hv3"], port=7))

    JOBS(recreated)
    settle(600)
    assert rec.sent == [a for a, _ in probes_to(IPS["hv2"], port=1) + probes_to(IPS["hv3"], IPS["hv3"], port=7)]
    assert out.queued == {}


def test_the_refresh_rounds_probes_are_sent_once():
    """A refresh round's VTEPs were resolved before (the look-up renews them, no ARP that could be lost): no second
    probe, so a round costs one packet-out per VTEP as before; a first probe queued with them is still sent twice."""
    clock = FakeClock()
    out, rec = sender(rate=100.0, clock=clock, retry=5.0), TimedSwitch(clock)
    out.send(rec, 1, probes_to(IPS["hv2"], IPS["hv3"]), retry=False)
    out.send(rec, 1, probes_to(IPS["hv3"], IPS["hv4"]))
    settle(600)
    assert targets([(a, b"") for a in rec.sent]) == [IPS["hv2"], IPS["hv3"], IPS["hv4"], IPS["hv3"], IPS["hv4"]]
    assert out.queued == {}


def test_a_disconnected_switchs_sender_ends_at_once_and_sends_no_second_probe():
    """Its connection closed (controller/app.py stops its reconciler): the sender waiting for a second probe due
    later ends now, holding neither the reconciler nor its connection until then (one per reconnect)."""
    clock, ended = FakeClock(), []
    out = ProbeSender(lambda f, *a: JOBS(lambda: (f(*a), ended.append(clock.now()))), lambda: True, 100.0,
                      3600.0, clock=clock.now, sleep=clock.sleep, wait=clock.wait)
    rec = TimedSwitch(clock)
    out.send(rec, 1, probes_to(IPS["hv2"]))

    def disconnect():
        clock.sleep(1.0)
        rec.state = "stopped"
        out.disconnected(rec)

    JOBS(disconnect)
    settle(600)
    assert ended == [1.0] and out.queued == {} and rec.times == [0.0]


def test_the_controller_stops_a_closed_connections_sender_and_sends_the_refresh_round_once():
    """controller/app.py: the OpenFlow connection's end stops its reconciler and its probes' sender together; the
    refresh round hands its probes over to be sent once."""
    from controller.ryu_compat import DEAD_DISPATCHER

    clock, ended, conn = FakeClock(), [], Connection()
    rec = TimedSwitch(clock)
    rec.datapath, rec.stop = conn, lambda: setattr(rec, "state", "stopped")
    glue = SimpleNamespace(reconcilers={conn.id: rec}, tunnels=TunnelWarmer(), pair=None,
                           state=SimpleNamespace(datapath_down=lambda dpid, conn: None),
                           probes=ProbeSender(lambda f, *a: JOBS(lambda: (f(*a), ended.append(clock.now()))),
                                              lambda: True, 100.0, 3600.0, clock=clock.now, sleep=clock.sleep,
                                              wait=clock.wait))
    glue._stop = lambda r: CanopyApp._stop(glue, r)
    glue.probes.send(rec, 1, probes_to(IPS["hv2"]))

    def close():
        clock.sleep(1.0)
        CanopyApp._datapath_state(glue, SimpleNamespace(datapath=conn, state=DEAD_DISPATCHER))

    JOBS(close)
    settle(600)
    assert ended == [1.0] and glue.probes.queued == {} and rec.state == "stopped" and glue.reconcilers == {}

    handed = []
    glue.hold, glue.programmer = SimpleNamespace(holding=False), SimpleNamespace(view=None, desired={}, pacer=None)
    glue.tunnels = SimpleNamespace(again=lambda *a: iter([(rec, 1, probes_to(IPS["hv3"]))]))
    glue.probes = SimpleNamespace(send=lambda *a, **kw: handed.append((a, kw)))
    CanopyApp._probe_tunnels_again(glue)
    assert handed == [((rec, 1, probes_to(IPS["hv3"])), {"retry": False})]
