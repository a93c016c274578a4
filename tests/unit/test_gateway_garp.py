"""Gratuitous ARP for a subnet's gateway address (openflow/gateway_garp.py): a routed subnet that leaves its domain
and joins it again (deleted and created again with the same VNI, as a Neutron router interface removed and added
makes it) has its VMs told the MAC that answers the gateway address now, each time it changes; a switch compiled
whole with nothing changed announces nothing."""

import random

from controller.derive import L2_SERVER_MAC
from openflow.external import garp
from openflow.flows import OFPVID_PRESENT
from openflow.gateway_garp import GatewayAnnouncer
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
    return announcer.due(world.prog.view, session, None if whole else changed)


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
