"""A snapshot restored on a standby may hold an object whose fields fixed at creation differ from what the standby
held (controller/replicacheck.py checks a snapshot's objects as creations: docs/ha.md); State takes it by comparing
the two policies. (A replicated batch may not: a put of an object the batch deleted first keeps those fields,
tests/unit/test_replicacheck.py.) After it, the incremental result must equal a from-scratch one (the oracle's
comparisons, tests/unit/oracle_checks.py): a vport moved to another subnet (routed or L2-only), a floating IP's
address changed. (A subnet's domain: tests/unit/test_incremental_oracle.py.)"""

import random

import pytest

from tests.unit.oracle_checks import check
from tests.unit.oracle_world import World


def world_with(vports, fips=None) -> World:
    """The oracle's world with ``vports`` placed on hv1 and hv2 (k1, k2), ``fips`` attached, after a full pass."""
    world = World(random.Random(11))
    world.vports = vports
    if fips:
        world.ext["fips"], world.ext["ports"] = fips, {"hv1", "hv2"}
    world.commit()
    for n, (host, vm) in enumerate((("hv1", "k1"), ("hv2", "k2")), 1):
        world.hosts[host] = {"tunnel": 1, "vtep": f"10.251.0.{n}"}
        if vm in vports:
            world.placed[vm], world.ofports[vm] = host, 11 + n
        world.push(host)
    world.prog.refresh(full=True)
    return world


@pytest.mark.parametrize("target", ["db", "lan"])
def test_a_vport_moved_to_another_subnet_by_a_snapshot(target):
    world = world_with({"k1": {"subnet": "web", "mac": 0, "ip": 30}, "k2": {"subnet": "db", "mac": 0, "ip": 40}})
    p = world.state.policy
    k1, other = p.find("vport", "acme/web/k1"), p.find("subnet", f"acme/{target}")
    world.restore("vport", {**k1, "subnet_id": other["id"], "ips": [other["cidr"].rsplit(".", 1)[0] + ".31"]})
    world.prog.refresh()
    assert world.state.policy.get("vport", k1["id"])["subnet_id"] == other["id"]
    check(world, f"k1 moved to {target} in place")


def test_a_floating_ips_address_changed_by_a_snapshot():
    world = world_with({"k1": {"subnet": "web", "mac": 0, "ip": 30}, "k2": {"subnet": "db", "mac": 0, "ip": 40}},
                       fips={"f1": "k1"})
    f1 = world.state.policy.find("floating_ip", "acme/f1")
    world.restore("floating_ip", {**f1, "address": "203.0.113.99"})
    world.prog.refresh()
    assert world.state.policy.get("floating_ip", f1["id"])["address"] == "203.0.113.99"
    check(world, "f1's address changed in place")
