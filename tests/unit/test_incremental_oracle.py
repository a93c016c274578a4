"""The full recompute is the oracle (issue 13, item 4): random sequences of events go through State and the
incremental Programmer, and after every programming pass the incremental result must equal a from-scratch one:

- vport locations: ``State.locations`` / ``mismatched`` (kept by the binding index from deltas) equal
  ``binding.resolve`` + ``partition`` over everything State holds;
- desired state: for every switch, ``Programmer.desired`` (updated from the change journal, owner by owner)
  equals ``compile_switch`` over ``derive.derive`` from scratch, compared per owner with every flow's cookie
  (Flow equality ignores the owner, so a flow filed under the wrong owner would otherwise pass) and every group;
- hardware VTEPs: every VTEP's desired rows (``Programmer.vteps``, kept by delta: controller/viewvteps.py) equal
  ``vtep_desired`` over the View derived from scratch.

Events: policy create/update/delete (subnets routed and L2-only, domains and their static routes, vports of every
flavour, hardware VTEP bindings, DHCP and gateway chassis; a KVM vport turning bare metal and back while its port
shows, another port coming or going in the same pass) applied as documents with their commit's change list; a
routed subnet leaving its domain and joining it again (deleted with its vports and created again with the same VNI,
as a Neutron router interface removed and added makes it); a subnet's domain changed in place and back by snapshots
restored on a standby (which a REST write and a replicated put refuse); a domain's gateway MAC changing; ports
appearing, leaving and moving across KVM, Hyper-V and ESXi hypervisors (vNIC keys and static trunk bindings, MAC
mismatches); VRS connecting, disconnecting, changing tunnel port or VTEP IP; two hardware VTEPs connecting, leaving,
changing tunnel IP and learning MACs (and a third bound in policy, never connected); EVPN routes (types 2, 3, 5)
arriving and withdrawn; an external network (its gateway MAC and uplinks, from policy and from OVSDB), floating IPs
attached, moved and freed, domains translated to the underlay or not (controller/extnet.py, docs/external.md);
security policies: ACLs created, changed and deleted (rules naming policy groups, subnets and prefixes; applied to
groups and to vports directly), vports joining and leaving policy groups, groups created and deleted, a domain's
default ACL action, an ESXi trunk whose ofport makes its vports' conntrack zones allocated (controller/zones.py).
Seeded: a failure names its seed and step. ``CANOPY_ORACLE_SEEDS`` / ``CANOPY_ORACLE_STEPS`` make longer runs.

The world and its inputs to State: tests/unit/oracle_inputs.py; its random events: tests/unit/oracle_world.py; the
comparisons with a from-scratch recompute: tests/unit/oracle_checks.py.
"""

from __future__ import annotations

import random

import pytest

from controller.pacer import Pacer
from openflow import floodlimits, floods
from tests.unit.oracle_checks import check
from tests.unit.oracle_inputs import EXT_OVSDB, SEEDS, STEPS, VPORTS
from tests.unit import oracle_world


class World(oracle_world.World):
    stopping = True  # the VM of a migration in flight stops on the host it left (binding.preferred's two branches)
    crossing = True  # a Hyper-V port carries a KVM vport's iface-id (binding.conflicting)


@pytest.mark.parametrize("seed", range(SEEDS))
def test_incremental_equals_a_from_scratch_compile_after_every_step(monkeypatch, seed):
    monkeypatch.setattr(floodlimits, "RESUBMITS", 8)  # (subnets of 2 local ports or more come past it and go back)
    monkeypatch.setattr(floodlimits, "MAX_VTEPS", 1)
    rng, reads = random.Random(seed), random.Random(-seed - 1)  # reads: whether a check reads the FIBs
    world = World(rng)
    world.commit()
    world.prog.refresh(full=True)
    for step in range(STEPS):
        world.step()
        if rng.random() < 0.75:  # else the next pass takes two events at once
            world.prog.refresh()
            check(world, f"seed {seed} step {step}", read_fib=reads.random() < 0.5)
    world.prog.refresh()
    check(world, f"seed {seed} at the end")
    assert world.prog.full_recomputes == 1  # every pass after the first was incremental


@pytest.mark.parametrize("seed", [1, 2, 3, 4])  # seed 0's world never has two ports of a subnet on one switch
def test_incremental_equals_a_from_scratch_compile_with_flood_groups_split_in_parts(monkeypatch, seed):
    """The same with a part size of 1 bucket (openflow/floods.py): subnets' flood groups split, grow and shrink
    across part boundaries on every step."""
    monkeypatch.setattr(floods, "part_buckets", 1)
    rng = random.Random(1000 + seed)
    world = type("PartsWorld", (World,), {"crossing": False})(rng)  # (the seeds' sequences as they were)
    world.commit()
    world.prog.refresh(full=True)
    parts = 0
    for step in range(STEPS // 2):
        world.step()
        world.prog.refresh()
        check(world, f"seed {seed} step {step} (parts of 1 bucket)")
        parts += sum(gid >> floods.PART_SHIFT > 0 for d in world.prog.desired.values() for gid in d.all_groups())
    assert parts and world.prog.full_recomputes == 1


def test_the_events_reach_every_kind_of_owner():
    """The driver is worth its time: the incremental passes recompile every kind of owner (within a few seeds)."""
    wanted = {"switch", "subnet", "domain", "vport", "vtep_mac", "evpn", "uplink", "fip", "pat", "acl", "acl_port",
              "acl_switch", "metadata"}
    kinds = set()
    for seed in range(16):
        world = World(random.Random(seed))
        world.commit()
        world.prog.refresh(full=True)
        for _ in range(STEPS):
            world.step()
            world.prog.refresh()
            kinds |= {o.kind for d in world.prog.desired.values() for o in d.flows}
        if kinds >= wanted:
            break
    assert kinds >= wanted, wanted - kinds


def test_the_events_reach_a_migration_in_flight_held_by_either_port():
    """The driver shows a vport on two hypervisors (a migration in flight) both ways (controller/binding.py
    ``preferred``): held by the port it left while that has a device, by the port it came to once the one it left has
    none (``ev_stopped``); so the oracle above compares both branches of the rule, incremental against resolve."""
    reached = set()
    for seed in range(16):
        world = World(random.Random(seed))
        world.commit()
        for _ in range(STEPS):
            world.step()
            for name, left in world.lingering.items():
                v = world.vports.get(name)
                vport = world.state.policy.find("vport", f"acme/{v['subnet']}/{name}") if v else None
                came = world.placed.get(name)
                loc = world.state.locations.get(vport["id"]) if vport is not None else None
                if loc is not None and {left, came} <= set(world.hosts) and name not in world.unnumbered:
                    reached.add((name in world.stopped, loc.chassis == left))
        if reached >= {(False, True), (True, False)}:
            break
    assert reached >= {(False, True), (True, False)}, reached
    assert (True, True) not in reached  # a port without a device never holds it against one with


@pytest.mark.parametrize("seed", range(SEEDS // 2))
def test_events_during_a_passs_pauses_reach_the_next_pass(seed):
    """A pass pauses (controller/pacer.py) while it derives and compiles, and handlers change State meanwhile (every
    kind of event of ``World.step``) and read the FIBs (a REST GET): the pass after it still ends where a
    from-scratch compile of the State then does, and the paused pass itself compiled one consistent State (no
    error)."""
    rng = random.Random(1000 + seed)
    world = World(rng)
    world.commit()
    world.prog.refresh(full=True)
    inside = {"left": 0, "events": 0}
    reads = random.Random(-1000 - seed)  # whether a pause reads the FIBs (as GET /v1/domains/{id}/fib would)

    def pause():  # an event handled while the pass is paused (as a green thread would)
        if reads.random() < 0.25:  # a FIB read in a pause is not kept: the View is whole only when the pass ends
            for did in list(world.prog.view.domains):
                world.prog.view.fib.get(did)
        if inside["left"] and rng.random() < 0.5:
            inside["left"] -= 1
            inside["events"] += 1
            world.inside_a_pass = True
            try:
                world.step()
            finally:
                world.inside_a_pass = False

    world.prog.pacer = Pacer(pause, every=1)
    for step in range(STEPS // 2):
        for _ in range(rng.randrange(1, 3)):  # one or two events before the pass, up to four inside it
            world.step()
        inside["left"] = rng.randrange(1, 5)
        world.prog.refresh()
        inside["left"] = 0
        world.prog.refresh()  # takes what changed during the pauses
        check(world, f"seed {seed} step {step}")
    assert inside["events"] >= 10  # events did land inside passes
    assert world.prog.full_recomputes == 1


@pytest.mark.parametrize("seed", range(SEEDS // 2))
def test_events_during_states_own_pauses_reach_the_next_pass(seed):
    """State pauses too (``State.pacer``): while it reads a VRS report's ports, between the chunks of ports whose
    bindings it updates, and between the chunks of vports it re-resolves after a report or a commit. Handlers change State meanwhile (in a report's pauses every kind of event
    of ``World.step``, reports of the same switch and commits included, themselves pausing; in a commit's pauses VRS
    reports, as writes are one at a time): the next pass still ends where a from-scratch compile of the State then
    does."""
    import controller.state as state_module

    rng = random.Random(2000 + seed)
    world = World(rng)
    inside = {"left": 0, "events": 0}

    def pause():  # an event handled while State is paused (as a green thread would); in a commit's, no other write
        if inside["left"] and rng.random() < 0.5:
            inside["left"] -= 1
            inside["events"] += 1
            (world.ev_place if world.committing else world.step)()

    world.state.pacer = Pacer(pause, every=1)
    chunk, state_module.RELOCATE_CHUNK = state_module.RELOCATE_CHUNK, 1  # a pause after every vport re-resolved
    ports, state_module.INDEX_CHUNK = state_module.INDEX_CHUNK, 1  # ... and every port of a report indexed
    try:
        world.commit()
        world.prog.refresh(full=True)
        for step in range(STEPS // 2):
            inside["left"] = rng.randrange(1, 5)
            for _ in range(rng.randrange(1, 3)):
                world.step()
            inside["left"] = 0
            world.prog.refresh()
            check(world, f"seed {seed} step {step}")
    finally:
        state_module.RELOCATE_CHUNK, state_module.INDEX_CHUNK = chunk, ports
    assert inside["events"] >= 10  # events did land inside State's pauses
    assert world.prog.full_recomputes == 1


def test_two_reports_of_a_switch_between_passes_reach_its_uplinks():
    """Two VRS reports reach one pass (or one lands in a pass's pause): the first shows the port marked for the
    external network, the second changes another port. The uplinks are taken again for what every report since
    the last pass changed (``Journal.ports``), not just the last one's ``changed``: the floating IP bound there
    becomes active."""
    world = World(random.Random(7))
    world.subnets["web"] = {"dhcp": True, "chassis": []}
    world.vports = {n: {"subnet": "web", "mac": 0, "ip": 20 + 2 * sorted(VPORTS).index(n)} for n in ("k1", "k2")}
    world.ext["fips"] = {"f1": "k1"}
    world.commit()
    world.hosts[EXT_OVSDB] = {"tunnel": 1, "vtep": "10.251.0.4"}
    world.placed["k1"], world.ofports["k1"] = EXT_OVSDB, 11
    world.push(EXT_OVSDB)
    world.prog.refresh(full=True)
    assert not world.prog.view.external.floating
    world.rng.random = lambda: 0.0  # every report says which ports it changed
    world.ext["ports"].add(EXT_OVSDB)  # first report: the uplink port appears
    world.push(EXT_OVSDB)
    world.placed["k2"], world.ofports["k2"] = EXT_OVSDB, 12  # second: another VM's port
    world.push(EXT_OVSDB)
    assert world.state.vrs[f"ovsdb:{EXT_OVSDB}"].changed == {"tap-k2"}
    world.prog.refresh()
    assert [f.session for f in world.prog.view.external.floating.values()] == [f"ovsdb:{EXT_OVSDB}"]
    check(world, "two reports in one pass")


def test_a_vport_gone_while_its_domain_left_a_switch_and_came_back_in_one_pass_leaves_it():
    """One pass: subnet db changes (its endpoints leave and come back, so the domain leaves hv4 and comes back) and
    subnet web is deleted with its vport on hv2 (a router interface removed: web is created again outside the
    domain). The vport's routed flows on hv4, where the domain is, go: the switches it had flows on are the ones its
    subnet and domain were on when the pass began, not in the middle of it."""
    world = World(random.Random(3))
    for name in ("web", "db"):
        world.subnets[name] = {"dhcp": True, "chassis": []}
    world.vports = {"k1": {"subnet": "web", "mac": 0, "ip": 30}, "k2": {"subnet": "db", "mac": 0, "ip": 40}}
    world.commit()
    for host, vm in (("hv2", "k1"), ("hv4", "k2")):
        world.hosts[host] = {"tunnel": 1, "vtep": f"10.251.0.{host[2:]}"}
        world.placed[vm], world.ofports[vm] = host, 12
        world.push(host)
    world.prog.refresh(full=True)
    k1 = world.state.policy.find("vport", "acme/web/k1")["id"]
    assert any(o.id == k1 for o in world.prog.desired["ovsdb:hv4"].flows)  # its host route, where db's domain is
    world.subnets["db"]["dhcp"] = False
    world.commit()
    world.move("web", pass_between=False)
    world.prog.refresh()
    check(world, "db changed, web left its domain")


@pytest.mark.parametrize("target", ["dev", None])
@pytest.mark.parametrize("holds", [False, True])
def test_a_subnets_domain_changed_in_place_while_its_gateway_vrs_keeps_it(target, holds):
    """A snapshot restored on a standby changes subnet web's domain_id in place (controller/replicacheck.py accepts
    it in a snapshot; a REST write and a replicated put refuse it). hv1, web's bare-metal gateway for hardware VTEP
    tor1 (holding a vport of web or not), stays its gateway: the switch now serves web's new domain (or none), no
    longer the old one."""
    world = World(random.Random(5))
    world.domains["dev"], world.subnets["app"] = {"static": []}, {"dhcp": True, "chassis": []}
    world.vports = {"k1": {"subnet": "web", "mac": 0, "ip": 30}} if holds else {}
    world.bindings = {("tor1", "p1", 100, "web")}
    world.commit()
    world.hosts["hv1"] = {"tunnel": 1, "vtep": "10.251.0.1"}
    if holds:
        world.placed["k1"], world.ofports["k1"] = "hv1", 12
    world.push("hv1")
    world.tors["tor1"] = []
    world.push_tor("tor1")
    world.prog.refresh(full=True)
    p = world.state.policy
    web, prod = p.find("subnet", "acme/web"), p.find("domain", "acme/prod")["id"]
    assert world.prog.view.bm_gateways == {web["id"]: "ovsdb:hv1"} and world.prog.view.domains_on("ovsdb:hv1") == {prod}
    domain = p.find("domain", f"acme/{target}")["id"] if target else None
    world.restore("subnet", {**web, "domain_id": domain})
    world.prog.refresh()
    assert world.prog.view.bm_gateways == {web["id"]: "ovsdb:hv1"}
    assert world.prog.view.domains_on("ovsdb:hv1") == ({domain} if domain else set())
    check(world, f"web moved to {target} in place")


def test_an_external_change_derives_only_the_floating_ips_and_switches_it_reaches(monkeypatch):
    """Per object (controller/extdelta.py): a floating IP moved derives that floating IP and the switches it was
    and is on; a vport that moved, its floating IP; a gateway MAC resolved on one switch, that switch's; the
    external network changed, all of its floating IPs. Checked by counting the derivations, and against a
    from-scratch compile after each."""
    from controller import extdelta

    rng = random.Random(7)
    world = World(rng)
    for name in ("web", "db"):
        world.subnets[name] = {"dhcp": True, "chassis": []}
    world.vports = {name: {"subnet": "web", "mac": 0, "ip": 20 + 2 * sorted(VPORTS).index(name)}
                    for name in ("k1", "k2", "h1")}
    world.ext["fips"] = {"f1": "k1", "f2": "k2", "f3": "h1"}
    world.ext["ports"] = {"hv1", "hv2"}
    world.commit()
    for host, vms in (("hv1", ("k1", "k2")), ("hv2", ("h1",))):
        world.hosts[host] = {"tunnel": 1, "vtep": f"10.251.0.{host[2:]}"}
        for vm in vms:
            world.placed[vm], world.ofports[vm] = host, 10 + len(world.placed)
    for host in ("hv1", "hv2"):
        world.push(host)
    world.prog.refresh(full=True)
    assert len(world.prog.view.external.floating) == 3
    derived = []
    real = extdelta.floating_info
    monkeypatch.setattr(extdelta, "floating_info", lambda policy, view, snaps, fip, resolved: (
        derived.append(fip["name"]), real(policy, view, snaps, fip, resolved))[1])
    session_parts = []
    real_refresh = extdelta.refresh_session
    monkeypatch.setattr(extdelta, "refresh_session", lambda ext, policy, view, session, snap, resolved: (
        session_parts.append(session), real_refresh(ext, policy, view, session, snap, resolved))[1])

    def step(what, fips, sessions):
        derived.clear()
        session_parts.clear()
        world.prog.refresh()
        check(world, what)
        assert sorted(derived) == sorted(fips), (what, derived)
        assert sorted(session_parts) == sorted(sessions), (what, session_parts)

    world.ext["fips"]["f2"] = None
    world.commit()
    step("a floating IP freed", ["f2"], ["ovsdb:hv1"])
    world.placed["k1"] = "hv2"
    world.push("hv1")
    world.push("hv2")
    step("a VM migrated", ["f1"], ["ovsdb:hv1", "ovsdb:hv2"])
    net = world.state.policy.find("external_network", "public")
    world.state.gateway_learned("ovsdb:hv2", net["id"], "02:ee:ee:00:00:09")
    step("a gateway MAC resolved on one switch", ["f1", "f3"], ["ovsdb:hv2"])
    world.ext["gateway_mac"] = not world.ext["gateway_mac"]
    world.commit()
    step("the external network changed", ["f1", "f2", "f3"], ["ovsdb:hv1", "ovsdb:hv2"])
