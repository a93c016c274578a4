"""Gratuitous ARP for a subnet's gateway address (openflow/gateway_garp.py): a routed subnet that leaves its domain
and joins it again (deleted and created again with the same VNI, as a Neutron router interface removed and added
makes it) has its VMs told the MAC that answers the gateway address now, each time it changes; a switch compiled
whole with nothing changed announces nothing; an announcement goes only to a VM the View holds where it was when it
is sent (not one gone, whose port another VM may hold now), whether the batch was made in a programming pass's pause
or the VM left between its rounds."""

import random
from types import SimpleNamespace

import controller.appannounce as announce_module
from controller.app import CanopyApp
from controller.derive import L2_SERVER_MAC
from controller.garps import GARP_PAUSES
from controller.pacer import Pacer
from openflow.external import garp
from openflow.flows import OFPVID_PRESENT, Owner
from openflow.gateway_garp import GatewayAnnouncer, still_placed
from tests.unit.oracle_world import World


def world_with_vms():
    world = World(random.Random(1))
    world.vports = {"k1": {"subnet": "web", "mac": 0, "ip": 20}, "e1": {"subnet": "db", "mac": 0, "ip": 30}}
    world.commit()
    for host, vm, ofport in (("hv1", "k1", 11), ("hv3", "e1", 12)):
        world.hosts[host] = {"tunnel": 1, "vtep": f"10.251.0.{host[2:]}"}
        world.placed[vm], world.ofports[vm] = host, ofport
        world.push(host)
    world.prog.refresh(full=True)
    return world


def announced(world, announcer, session, whole=False):
    changed = world.prog.take_changes(session)
    return [(p.actions, p.frame) for p in announcer.due(world.prog.view, session, None if whole else changed)]


def test_vms_are_told_the_gateway_mac_each_time_their_subnet_leaves_and_joins_its_domain():
    world, announcer = world_with_vms(), GatewayAnnouncer()
    for session in ("ovsdb:hv1", "ovsdb:hv3"):
        assert announced(world, announcer, session, whole=True) == []  # a (re)connect: nothing changed
    domain_mac = world.state.policy.find("domain", "acme/prod")["gateway_mac"]
    vlan = world.prog.view.endpoints[world.state.policy.find("vport", "acme/db/e1")["id"]].vlan
    to_e1 = [("push_vlan",), ("set", "vlan_vid", vlan | OFPVID_PRESENT), ("output", 5)]  # the ESXi trunk
    for mac, pass_between in ((L2_SERVER_MAC, False), (domain_mac, False), (L2_SERVER_MAC, True),
                              (domain_mac, True)):
        world.move("db", pass_between)  # both commits in one programming pass or not: the same announcement
        world.prog.refresh()
        assert announced(world, announcer, "ovsdb:hv3") == [(to_e1, garp(mac, "10.0.2.1"))]
        assert announced(world, announcer, "ovsdb:hv1") == []  # web did not change
        assert announced(world, announcer, "ovsdb:hv3", whole=True) == []


def test_a_vm_arriving_in_a_subnet_new_on_the_switch_is_told_its_gateway_and_one_already_there_is_not():
    world, announcer = world_with_vms(), GatewayAnnouncer()
    announced(world, announcer, "ovsdb:hv1", whole=True)
    world.vports["k2"] = {"subnet": "db", "mac": 0, "ip": 40}
    world.vports["k3"] = {"subnet": "web", "mac": 0, "ip": 50}
    world.commit()
    world.placed["k2"], world.ofports["k2"] = "hv1", 13
    world.placed["k3"], world.ofports["k3"] = "hv1", 14
    world.push("hv1")
    world.prog.refresh()
    mac = world.state.policy.find("domain", "acme/prod")["gateway_mac"]
    assert announced(world, announcer, "ovsdb:hv1") == [([("output", 13)], garp(mac, "10.0.2.1"))]


class Rec:
    def __init__(self):
        self.sent, self.state = [], "in_sync"

    def packet_out(self, actions, frame):
        self.sent.append((actions, frame))


def ids(world, vm, subnet):
    p = world.state.policy
    return p.find("vport", f"acme/{subnet}/{vm}")["id"], p.find("subnet", f"acme/{subnet}")["id"]


def a_vm_leaves_and_k2_of_db_takes_its_port():
    """hv1 with k1 (web, port 11) and k3 (web, port 14); ``move`` makes one of them leave (``gone``: the one whose
    id sorts first, as a pass walks vports) and k2, of db (another gateway MAC answers 10.0.2.1 there), come on its
    port in the same report, and the other one (``stays``) get another IP: a pass walks ``stays`` after ``gone``."""
    world = world_with_vms()
    world.vports["k2"] = {"subnet": "db", "mac": 0, "ip": 40}
    world.vports["k3"] = {"subnet": "web", "mac": 0, "ip": 50}
    world.commit()
    world.placed["k3"], world.ofports["k3"] = "hv1", 14
    world.push("hv1")
    world.prog.refresh()
    gone, stays = sorted(("k1", "k3"), key=lambda vm: ids(world, vm, "web")[0])

    def move():
        world.vports[stays]["ip"] = 60
        world.commit()
        world.placed.pop(gone)
        world.placed["k2"], world.ofports["k2"] = "hv1", world.ofports[gone]
        world.push("hv1")
    return world, move, world.ofports[gone], world.ofports[stays], ids(world, gone, "web")[0]


def batch_of(monkeypatch, world, sleep=lambda seconds: None):
    """The app's glue announcing web's gateway on hv1 as new (a switch connecting with web among its changed
    owners), its batch spawned into ``batches`` and run by the caller; the batch's pauses call ``sleep``."""
    batches, rec = [], Rec()
    monkeypatch.setattr(announce_module.hub, "spawn", lambda fn, *args: batches.append((fn, args)))
    monkeypatch.setattr(announce_module.hub, "sleep", sleep)
    glue = SimpleNamespace(pair=None, programmer=world.prog, gateway_garp=GatewayAnnouncer())
    _, web = ids(world, "k1", "web")
    return rec, batches, lambda: CanopyApp._announce_gateways(glue, rec, "ovsdb:hv1", {Owner("subnet", web)})


def test_a_batch_made_in_a_passs_pause_leaves_out_a_vm_gone_in_that_pass(monkeypatch):
    world, move, gone_port, stays_port, gone = a_vm_leaves_and_k2_of_db_takes_its_port()
    _, web = ids(world, "k1", "web")
    rec, batches, announce = batch_of(monkeypatch, world)
    announcing = []

    def pause():  # hv1 connects while the pass pauses with a VM gone from the View's endpoints, not from web's
        view = world.prog.view
        if not batches and not announcing and gone not in view.endpoints and \
                any(ep.vport_id == gone for ep in view.by_subnet[web]):
            announcing.append(True)  # (its own pauses, with the pass's pacer: a turn of the loop, not a new batch)
            announce()
            fn, args = batches[0]
            fn(*args)  # every round of it inside this pause

    move()
    world.prog.pacer = Pacer(pause, every=1)
    world.prog.refresh()
    assert batches  # the pause came: by_subnet still held the VM gone
    assert {tuple(actions) for actions, _ in rec.sent} == {(("output", stays_port),)}  # not to k2 now
    assert len(rec.sent) == len(GARP_PAUSES)


def test_a_batchs_later_rounds_leave_out_a_vm_gone_meanwhile(monkeypatch):
    world, move, gone_port, stays_port, _ = a_vm_leaves_and_k2_of_db_takes_its_port()

    def sleep(seconds):  # a VM leaves, k2 takes its port, during the batch's second pause
        if seconds == GARP_PAUSES[1]:
            move()
            world.prog.refresh()

    rec, batches, announce = batch_of(monkeypatch, world, sleep)
    announce()
    fn, args = batches[0]
    fn(*args)
    sent_to = [actions for actions, _ in rec.sent]
    assert sent_to.count([("output", gone_port)]) == 1  # the first round's, while the VM was there
    assert sent_to.count([("output", stays_port)]) == len(GARP_PAUSES)


def test_still_placed_is_the_same_switch_subnet_port_and_vlan_untagged_either_way():
    """A VM bound again where it was (a new endpoint) still is; one on another port, VLAN, switch or subnet is not;
    VLAN 0 (a static binding's "untagged") and None (a tap port's) are the same place, as ``egress_actions`` sends
    to both alike."""
    from dataclasses import replace

    from controller.derive import Endpoint
    ep = Endpoint("v1", "s1", "02:00:00:00:00:01", ("10.0.0.5",), True, "ovsdb:hv1", 11, None)
    view = SimpleNamespace(endpoints={})
    assert not still_placed(view, ep)  # gone
    assert still_placed(view, None)  # a packet for no vport (a floating IP's, out of an uplink)
    for now, placed in [(ep, True), (replace(ep, ips=("10.0.0.6",)), True), (replace(ep, vlan=0), True),
                        (replace(ep, ofport=12), False), (replace(ep, vlan=7), False),
                        (replace(ep, session="ovsdb:hv3"), False), (replace(ep, subnet_id="s2"), False),
                        (replace(ep, kind="vtep_mac"), False)]:
        view.endpoints["v1"] = now
        assert still_placed(view, ep) is placed, now
        assert still_placed(view, replace(ep, vlan=0)) is placed, now


def test_a_vm_back_where_it_was_by_a_later_round_is_sent_to_again(monkeypatch):
    """k1 leaves hv1 before the batch's second round and is back on its port before the third: it is sent to in the
    first, third and fourth (a port flapping; left out for good, it missed the rest of its gateway's announcement)."""
    world = world_with_vms()
    port = world.ofports["k1"]

    def sleep(seconds):
        if seconds == GARP_PAUSES[1]:
            world.placed.pop("k1")
        elif seconds == GARP_PAUSES[2]:
            world.placed["k1"], world.ofports["k1"] = "hv1", port
        else:
            return
        world.push("hv1")
        world.prog.refresh()

    rec, batches, announce = batch_of(monkeypatch, world, sleep)
    announce()
    fn, args = batches[0]
    fn(*args)
    assert [actions for actions, _ in rec.sent] == [[("output", port)]] * (len(GARP_PAUSES) - 1)


def test_announcements_made_with_pauses_leave_out_a_vm_gone_in_a_pass_run_then_and_are_made_once(monkeypatch):
    """The announcement pauses with the programming loop's pacer (a switch's connect announces from Ryu's thread, so a
    pass may run in those pauses): a VM gone in such a pass (k2 of db on its port) is not sent to, and the same
    announcement asked again in a pause (the pass handing the switch out) is not made twice."""
    world, move, gone_port, stays_port, gone = a_vm_leaves_and_k2_of_db_takes_its_port()
    rec, batches, announce = batch_of(monkeypatch, world)
    paused = []

    def pause():
        if not paused:
            paused.append(gone in world.prog.view.endpoints)
            move()
            world.prog.refresh()  # (its own ticks pause again: nothing more happens then)
            announce()  # again, for the same switch and subnet: nothing new to announce

    world.prog.pacer = Pacer(pause, every=1)
    announce()
    assert paused == [True] and len(batches) == 1
    fn, args = batches[0]
    fn(*args)
    assert {tuple(actions) for actions, _ in rec.sent} == {(("output", stays_port),)}
    assert len(rec.sent) == len(GARP_PAUSES)
