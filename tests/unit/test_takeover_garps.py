"""Gratuitous ARPs around an HA takeover (controller/garps.py ``after_takeover``), through the app's wiring: a standby
keeps the records of what is announced without sending anything; once a switch takes the node that took over as
master, that node sends it every floating IP active there and the gateway announcements due there within the last
``RECENT`` seconds (the old active may have died or been demoted before it sent them), once; the external gateways'
ARP requests ask the role before every packet."""

import functools
from types import SimpleNamespace

import pytest

import controller.appannounce as announce_module
from controller.app import CanopyApp
from controller.extnet import GatewayNeed
from controller.garps import GARP_PAUSES
from controller.gatewaykeep import GatewayKeeper
from controller.pacer import Pacer
from openflow import external
from openflow.external import garp
from openflow.gateway_arp import GatewayResolver, request_frame
from openflow.gateway_garp import RECENT, GatewayAnnouncer

from .test_external_flows import setup as fip_world
from .test_gateway_garp import world_with_vms

BOUND = ("_announce_after_takeover", "_announce_if_due", "_reconciler_of_session", "_session_of", "_announce_gateways",
         "_announce_floating_ips", "_ask_gateways", "_forget_gateways")


class Rec:
    """A switch's reconciler: confirms every role asked, records what it sends."""

    def __init__(self, dpid):
        self.datapath, self.state, self.sent, self.role = SimpleNamespace(id=dpid), "in_sync", [], "slave"
        self.role_generation = None

    def request_role(self, role, generation):
        self.role, self.role_generation = role, generation
        return True, None

    def hold(self, on):
        pass

    def packet_out(self, actions, frame):
        self.sent.append((actions, frame))


def vrs_recs(world):
    """{1: hv1's reconciler, 3: hv3's}, keyed in the app by their datapath ids."""
    ids = {s[-1]: sw.datapath_id for s, sw in world.prog.view.switches.items()}
    return {1: Rec(ids["1"]), 3: Rec(ids["3"])}


def app(prog, recs, role):
    """The parts of CanopyApp the announcements use, its own methods bound to them."""
    prog.pacer = Pacer()
    resolver = GatewayResolver(10.0, 30.0)
    glue = SimpleNamespace(pair=SimpleNamespace(role=role), programmer=prog, federation=None,
                           reconcilers={rec.datapath.id: rec for rec in recs.values()},
                           garp=external.Announcer(), gateway_garp=GatewayAnnouncer(), _takeover_due=set(),
                           gateway_arp=resolver, gateway_keep=GatewayKeeper(prog.state, resolver), state=prog.state,
                           ovsdb=SimpleNamespace(set_writes=lambda on: None),
                           _roles_wake=SimpleNamespace(set=lambda: None),
                           program_loop=SimpleNamespace(urge=lambda: None))
    for name in BOUND:
        if hasattr(CanopyApp, name):
            setattr(glue, name, functools.partial(getattr(CanopyApp, name), glue))
    return glue


@pytest.fixture
def hub(monkeypatch):
    """Green threads run when ``run()`` is called; pauses take no time; ``clock[0]`` is time.monotonic()."""
    spawned, clock = [], [1000.0]
    monkeypatch.setattr(announce_module.hub, "spawn", lambda fn, *args: spawned.append((fn, args)))
    monkeypatch.setattr(announce_module.hub, "sleep", lambda seconds: None)
    monkeypatch.setattr(announce_module.time, "monotonic", lambda: clock[0])

    def run():
        while spawned:
            fn, args = spawned.pop(0)
            fn(*args)
    return SimpleNamespace(run=run, clock=clock)


def pass_on(glue, session, whole=False):
    """A programming pass's announcements for ``session`` (as ``_hand_out`` and ``_push`` make them)."""
    changed = glue.programmer.take_changes(session)
    rec = glue._reconciler_of_session(session)
    glue._announce_gateways(rec, session, None if whole else changed)
    glue._announce_floating_ips()


def take_over(glue, generation=7):
    """The pair made this node active (controller/ha.py: the role, then ``on_role``); the role keeper asks every switch
    for MASTER."""
    glue.pair.role = "active"
    CanopyApp._on_role(glue, "active", generation)
    for rec in list(glue.reconcilers.values()):
        CanopyApp._ask_role(glue, rec, "master", generation)


def frames(rec):
    return [frame for _, frame in rec.sent]


def standby_after_db_moved():
    """A standby's app that has handed hv3 its state twice, the second time after db moved away: (world, recs, glue)."""
    world = world_with_vms()
    recs = vrs_recs(world)
    glue = app(world.prog, recs, "standby")
    pass_on(glue, "ovsdb:hv3", whole=True)
    world.move("db", False)
    world.prog.refresh()
    pass_on(glue, "ovsdb:hv3")
    return world, recs, glue


def test_a_gateway_change_the_standby_saw_is_announced_by_it_once_it_takes_over(hub):
    world = world_with_vms()
    recs = vrs_recs(world)
    glue = app(world.prog, recs, "standby")
    for session in ("ovsdb:hv1", "ovsdb:hv3"):
        pass_on(glue, session, whole=True)  # the standby connects: nothing changed
    world.move("db", False)  # the db subnet leaves its domain: its gateway is answered by the DHCP server's MAC
    world.prog.refresh()
    pass_on(glue, "ovsdb:hv3")
    hub.run()
    assert recs[3].sent == [] and recs[1].sent == []  # a standby sends nothing
    hub.clock[0] += RECENT / 2
    take_over(glue)
    hub.run()
    db = world.prog.view.subnets[world.state.policy.find("subnet", "acme/db")["id"]]
    answer = garp(db.gateway_mac if db.domain_id else "02:ca:fe:00:00:01", "10.0.2.1")
    assert frames(recs[3]) == [answer] * len(GARP_PAUSES)  # to e1, its only VM there
    assert recs[1].sent == []  # web did not change
    recs[3].sent.clear()
    pass_on(glue, "ovsdb:hv3")  # the pass after: nothing again
    CanopyApp._ask_role(glue, recs[3], "master", 7)  # the role asked again (a reconnect): no second batch
    hub.run()
    assert recs[3].sent == []



def test_a_takeover_batch_leaves_out_a_vm_gone_during_it(hub, monkeypatch):
    """The takeover's batch asks the View before each send too (openflow/gateway_garp.py ``still_placed``): e1 leaves
    hv3 during the batch's second pause, so it has its gateway announced in the first round only."""
    world, recs, glue = standby_after_db_moved()
    hub.run()

    def sleep(seconds):
        if seconds == GARP_PAUSES[1]:  # e1 leaves hv3
            world.placed.pop("e1")
            world.push("hv3")
            world.prog.refresh()
    monkeypatch.setattr(announce_module.hub, "sleep", sleep)
    take_over(glue)
    hub.run()
    assert len(recs[3].sent) == 1 and recs[1].sent == []


def test_a_gateway_change_older_than_recent_is_not_sent_again_on_takeover(hub):
    world, recs, glue = standby_after_db_moved()
    hub.clock[0] += RECENT + 1
    take_over(glue)
    hub.run()
    assert recs[3].sent == []


def test_a_node_that_takes_over_again_announces_every_floating_ip_though_it_announced_them_before(hub):
    """Active, then demoted (another node announced meanwhile, then died), then active again: its record from its
    first term must not keep it from announcing the floating IPs (docs/external.md)."""
    state, prog = fip_world({"vm0": "hv1"})
    recs = {1: Rec(1)}
    glue = app(prog, recs, "active")
    glue._announce_floating_ips()
    hub.run()
    [info] = prog.view.external.floating.values()
    fip = external.garp_frame(info)
    assert frames(recs[1]) == [fip] * len(GARP_PAUSES)
    recs[1].sent.clear()
    glue.pair.role = "standby"  # demoted
    glue._announce_floating_ips()
    take_over(glue)
    glue._announce_floating_ips()  # the pass the new role urges
    hub.run()
    assert frames(recs[1]) == [fip] * len(GARP_PAUSES)
    assert [actions for actions, _ in recs[1].sent][0] == external.garp_actions(info)


def test_a_standby_keeps_the_floating_ip_record_and_the_active_does_not_announce_twice(hub):
    state, prog = fip_world({"vm0": "hv1"})
    recs = {1: Rec(1)}
    glue = app(prog, recs, "standby")
    glue._announce_floating_ips()
    hub.run()
    assert recs[1].sent == []
    take_over(glue)
    glue._announce_floating_ips()
    hub.run()
    assert len(recs[1].sent) == len(GARP_PAUSES)  # one batch: the takeover's, not the pass's too


NEEDS = [GatewayNeed("ovsdb:hv1", "n1", 50, None, "203.0.113.1", "203.0.113.2", "02:ce:cb:00:71:02"),
         GatewayNeed("ovsdb:hv3", "n1", 50, None, "203.0.113.1", "203.0.113.3", "02:ce:cb:00:71:03")]


@pytest.mark.parametrize("change", ["demoted", "switch stopped"])
def test_an_external_gateway_request_asks_the_role_before_every_packet(hub, change):
    world = world_with_vms()
    recs = vrs_recs(world)
    glue = app(world.prog, recs, "active")
    glue.gateway_arp.due = lambda view, now: list(NEEDS)

    def demote(actions, frame):
        recs[1].sent.append((actions, frame))
        if change == "demoted":
            glue.pair.role = "standby"
        else:
            recs[3].state = "stopped"

    recs[1].packet_out = demote
    glue._ask_gateways(hub.clock[0])
    assert frames(recs[1]) == [request_frame(NEEDS[0])] and recs[3].sent == []


def test_floating_ips_announced_on_takeover_are_not_announced_again_by_the_first_pass_after(hub):
    """A node whose passes handed nothing out before it took over (inside its start-up hold): the takeover's batch
    counts as the announcement, the pass that ends the hold sends none again."""
    state, prog = fip_world({"vm0": "hv1", "vm1": "hv1"})
    recs = {1: Rec(1)}
    glue = app(prog, recs, "starting")
    take_over(glue)
    glue._announce_floating_ips()
    hub.run()
    fips = sorted(prog.view.external.floating.values(), key=lambda f: f.address)
    assert frames(recs[1]) == [external.garp_frame(f) for f in fips] * len(GARP_PAUSES)


def test_a_master_confirmation_arriving_after_a_demotion_keeps_the_switch_held_and_announces_nothing(hub):
    """The node took over and asked the switch for MASTER; the pair demoted it again before the switch answered. The
    late confirmation must neither release the reconciler's hold (a standby syncs nothing: the role keeper asks for
    SLAVE next) nor start the takeover's batch."""
    state, prog = fip_world({"vm0": "hv1"})
    recs = {1: Rec(1)}
    glue = app(prog, recs, "standby")
    holds = []
    recs[1].hold = holds.append

    def demoted_meanwhile(role, generation):
        glue.pair.role = "standby"
        CanopyApp._on_role(glue, "standby", generation + 1)
        return True, None

    recs[1].request_role = demoted_meanwhile
    take_over(glue)
    hub.run()
    assert holds == [True, True] and recs[1].sent == []


def replaced_while_answering(rec):
    rec.state = "stopped"  # the switch reconnected meanwhile: this reconciler was stopped (app._stop)
    return True, None


@pytest.mark.parametrize("when", ["reconnected before MASTER", "replaced while it answered MASTER",
                                  "connected after the role change"])
def test_a_switch_whose_connection_is_new_since_the_takeover_gets_the_batch_at_its_first_master(hub, when):
    """The batch is owed to the switch, not to its connection at the role change: one that reconnected before it
    confirmed MASTER (a new reconciler), or that was not connected to this node then, gets it once too."""
    state, prog = fip_world({"vm0": "hv1"})
    recs = {1: Rec(1)}
    glue = app(prog, recs, "standby")
    if when == "connected after the role change":
        glue.reconcilers.clear()
    recs[1].request_role = lambda role, generation: (False, "no answer")
    if when == "replaced while it answered MASTER":
        recs[1].request_role = lambda role, generation: replaced_while_answering(recs[1])
    take_over(glue)  # the switches connected now are asked for MASTER: none, or one that does not answer
    hub.run()
    new = glue.reconcilers[1] = Rec(1)
    CanopyApp._ask_role(glue, new, "master", 7)
    CanopyApp._ask_role(glue, new, "master", 7)
    hub.run()
    [info] = prog.view.external.floating.values()
    assert frames(new) == [external.garp_frame(info)] * len(GARP_PAUSES)


def test_a_master_confirmation_between_the_role_change_and_on_role_still_gets_the_batch(hub):
    """controller/ha.py ``_become`` makes the role visible, logs, then calls ``on_role``: the role keeper may ask the
    switch for MASTER of the new generation and have it confirmed in that gap, before the batch is owed; ``_on_role``
    then sends it to a switch already master of its generation, once."""
    state, prog = fip_world({"vm0": "hv1"})
    recs = {1: Rec(1)}
    glue = app(prog, recs, "standby")
    glue.pair.role = "active"
    CanopyApp._ask_role(glue, recs[1], "master", 7)  # confirmed in the gap
    CanopyApp._on_role(glue, "active", 7)  # the role keeper asks no switch that confirmed this role and generation
    hub.run()
    [info] = prog.view.external.floating.values()
    assert frames(recs[1]) == [external.garp_frame(info)] * len(GARP_PAUSES)
    CanopyApp._ask_role(glue, recs[1], "master", 7)  # asked again all the same (a reconnect): no second batch
    hub.run()
    assert len(recs[1].sent) == len(GARP_PAUSES)


def migrate_during_second_pause(monkeypatch, state, prog):
    """vm0 moves from hv1 to hv2 while a batch waits for its second round: its floating IP is active on hv2 now."""
    from .test_external_flows import snapshot

    def sleep(seconds):
        if seconds == GARP_PAUSES[1]:
            state.vrs_update(snapshot("hv1", "10.251.0.1", [("vm1", 11)]))
            state.vrs_update(snapshot("hv2", "10.251.0.2", [("vm0", 10)]))
            prog.refresh()
    monkeypatch.setattr(announce_module.hub, "sleep", sleep)


def test_a_takeover_batch_leaves_out_a_floating_ip_whose_vm_left_during_it(hub, monkeypatch):
    """The floating IPs of a takeover's batch are asked before each send as its VMs are (openflow/gateway_garp.py
    ``still_due``): vm0 leaves hv1 during the batch, so hv1 announces its floating IP in the first round only (later,
    it would point the external network back at hv1); vm1's goes out every round."""
    state, prog = fip_world({"vm0": "hv1", "vm1": "hv1"})
    recs = {1: Rec(1)}
    glue = app(prog, recs, "standby")
    glue._announce_floating_ips()
    fips = {f.vm_ip: f for f in prog.view.external.floating.values()}
    vm0, vm1 = external.garp_frame(fips["10.0.1.10"]), external.garp_frame(fips["10.0.1.11"])
    migrate_during_second_pause(monkeypatch, state, prog)
    take_over(glue)
    hub.run()
    assert frames(recs[1]) == [vm0, vm1] + [vm1] * (len(GARP_PAUSES) - 1)
    assert prog.view.external.floating[fips["10.0.1.10"].id].session == "hv2"  # announced there by its pass


def test_a_floating_ip_batch_stops_once_its_vm_moved_away(hub, monkeypatch):
    """The same for an active's announcement of a floating IP that became active (controller/app.py)."""
    state, prog = fip_world({"vm0": "hv1", "vm1": "hv1"})
    recs = {1: Rec(1)}
    glue = app(prog, recs, "active")
    fips = {f.vm_ip: f for f in prog.view.external.floating.values()}
    vm0, vm1 = external.garp_frame(fips["10.0.1.10"]), external.garp_frame(fips["10.0.1.11"])
    migrate_during_second_pause(monkeypatch, state, prog)
    glue._announce_floating_ips()
    hub.run()
    assert sorted(frames(recs[1])) == sorted([vm0, vm1] + [vm1] * (len(GARP_PAUSES) - 1))


def test_a_floating_ip_whose_vm_comes_back_during_the_batch_is_announced_again_in_the_rounds_after(hub, monkeypatch):
    """Asked again each round (controller/garps.py): vm0 leaves hv1 before the second round and is back before the
    third (its floating IP then a new FloatingInfo, the same place, address and MAC): hv1 announces it in rounds 1, 3
    and 4, not in round 2 (when the external network would have been pointed at the wrong VRS)."""
    from .test_external_flows import snapshot

    state, prog = fip_world({"vm0": "hv1", "vm1": "hv1"})
    recs = {1: Rec(1)}
    glue = app(prog, recs, "standby")
    glue._announce_floating_ips()
    fips = {f.vm_ip: f for f in prog.view.external.floating.values()}
    vm0, vm1 = external.garp_frame(fips["10.0.1.10"]), external.garp_frame(fips["10.0.1.11"])

    def sleep(seconds):
        if seconds == GARP_PAUSES[1]:
            state.vrs_update(snapshot("hv1", "10.251.0.1", [("vm1", 11)]))
            state.vrs_update(snapshot("hv2", "10.251.0.2", [("vm0", 10)]))
        elif seconds == GARP_PAUSES[2]:
            state.vrs_update(snapshot("hv2", "10.251.0.2", []))
            state.vrs_update(snapshot("hv1", "10.251.0.1", [("vm0", 10), ("vm1", 11)]))
        prog.refresh()
    monkeypatch.setattr(announce_module.hub, "sleep", sleep)
    take_over(glue)
    hub.run()
    assert frames(recs[1]) == [vm0, vm1, vm1, vm0, vm1, vm0, vm1]
    assert prog.view.external.floating[fips["10.0.1.10"].id] is not fips["10.0.1.10"]  # asked by its place
