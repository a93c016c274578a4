"""Work proportional to the change (issue 13, item 1, State side): a delta re-resolves, re-derives and
recompiles only what it reaches. A VRS connecting, a tunnel port changing, a hardware VTEP connecting and a VTEP
binding are incremental passes (no full recompute) that touch only the switches whose flows change; one port
re-resolves only the vport it shows; one vport moving recompiles its own owner everywhere and its subnet only where
it left and arrived. (That the results equal a full recompute is tests/unit/test_incremental_oracle.py.)"""

from __future__ import annotations

from dataclasses import replace
from unittest.mock import patch

from controller import derive as derive_module
from controller.discovery import PortInfo, VtepPort, VtepSnapshot
from controller.programmer import Programmer
from controller.remote import RemoteDelta, RemoteMac
from openflow.flows import Owner

from .test_compiler import add_vport, assert_matches_full, base_state, snapshot

HOSTS = {"hv1": "10.251.0.1", "hv2": "10.251.0.2", "hv3": "10.251.0.3"}


def world(vports=30):
    state = base_state()
    for i in range(vports):
        add_vport(state, ("acme/web", "acme/db")[i % 2], f"vm{i}", f"02:00:00:00:01:{i:02x}",
                  f"10.0.{1 + i % 2}.{10 + i}")
    for n, (host, vtep) in enumerate(HOSTS.items()):
        state.vrs_update(snapshot(host, vtep, [(f"vm{i}", 10 + i) for i in range(vports) if i % 3 == n]))
    prog = Programmer(state)
    prog.refresh(full=True)
    return state, prog


def test_a_vrs_connecting_is_compiled_alone_without_a_full_recompute():
    state, prog = world()
    state.vrs_update(snapshot("hv4", "10.251.0.4", []))
    assert prog.refresh() == {"hv4"}  # it serves no subnet yet: nobody else's flows change
    assert prog.full_recomputes == 1
    assert_matches_full(prog)
    state.vrs_update(snapshot("hv4", "10.251.0.4", [("vm0", 10)]))  # vm0 migrates there (still on hv1 too)
    state.vrs_update(snapshot("hv1", HOSTS["hv1"], [(f"vm{i}", 10 + i) for i in range(3, 30, 3)]))  # and left hv1
    touched = prog.refresh()
    assert prog.full_recomputes == 1 and "hv4" in touched
    assert_matches_full(prog)


def test_a_tunnel_port_change_touches_only_that_switch():
    state, prog = world()
    snap = state.vrs["hv2"]
    ports = tuple(replace(p, ofport=98) if p.type == "vxlan" else p for p in snap.ports)
    state.vrs_update(replace(snap, ports=ports))
    assert prog.refresh() == {"hv2"}  # the others reach hv2 by its VTEP IP, not its port number
    assert prog.full_recomputes == 1
    assert_matches_full(prog)


def test_a_hardware_vtep_and_its_binding_need_no_full_recompute():
    state, prog = world()
    state.vtep_update(VtepSnapshot("v1", "p", "tor1", tunnel_ips=("10.251.0.9",),
                                   ports=(VtepPort("p1", ()),)))
    assert prog.refresh() == set()  # bound to nothing yet
    policy = state.policy.copy()
    web = policy.find("subnet", "acme/web")
    policy.put("vtep_binding", {"id": "b1", "source": None, "switch": "tor1", "port": "p1", "vlan": 100,
                                "subnet_id": web["id"], "description": ""})
    state.policy_committed(policy, [])
    prog.refresh()
    assert prog.full_recomputes == 1
    assert_matches_full(prog)
    assert any("10.251.0.9" in str(f) for f in prog.desired["hv2"].all_flows() | set(
        str(g) for g in prog.desired["hv2"].all_groups().values()))  # the VTEP joined web's flood list


def test_one_port_re_resolves_only_the_vport_it_shows():
    state, _ = world(60)
    located = []
    real = state.index.locate
    state.index.locate = lambda vid, order, active=None: located.append(vid) or real(vid, order, active)
    snap = state.vrs["hv3"]
    state.vrs_update(replace(snap, ports=snap.ports + (PortInfo("p-vm1", 77, external_ids=(("iface-id", "vm1"),)),)))
    assert located == ["vm1"]
    assert state.locations["vm1"].session == "hv2"  # its earlier port keeps it (a migration in flight: binding.py)


def test_a_vport_moving_recompiles_its_owner_and_its_subnet_only_where_it_left_and_arrived():
    state, prog = world()
    prog.refresh()
    src = state.locations["vm0"].session
    dst = next(h for h in HOSTS if h != src)
    ports = [p for p in state.vrs[src].ports if p.name != "p-vm0"]
    state.vrs_update(replace(state.vrs[src], ports=tuple(ports)))
    state.vrs_update(replace(state.vrs[dst], ports=state.vrs[dst].ports + (PortInfo("p-vm0", 50, external_ids=(
        ("iface-id", "vm0"),)),)))
    prog.refresh()
    reach = prog.live.r.owners
    vport, subnet = Owner("vport", "vm0"), Owner("subnet", state.policy.get("vport", "vm0")["subnet_id"])
    assert {s: owners for s, owners in reach.items() if owners} == {
        src: {vport, subnet}, dst: {vport, subnet}, next(h for h in HOSTS if h not in (src, dst)): {vport}}
    assert_matches_full(prog)


def remote_mac(web: dict, dom: dict, i: int, ip: str | None = None) -> RemoteMac:
    """Remote MAC number ``i`` of subnet ``web``, behind one of two remote VTEPs (alternately)."""
    return RemoteMac(web["id"], f"02:aa:00:00:{i >> 8:02x}:{i & 0xff:02x}", (ip or f"10.0.1.{50 + i}",),
                     f"10.99.0.{1 + i % 2}", "02:dd:00:00:00:01", dom["l3_vni"])


def remote_macs_world(count: int = 200):
    """``world(vports=6)`` with ``count`` remote MACs in acme/web (``remote_mac``), received and programmed:
    (state, programmer, the subnet, its domain, the MACs)."""
    state, prog = world(vports=6)
    web = state.policy.find("subnet", "acme/web")
    dom = state.policy.get("domain", web["domain_id"])
    many = {remote_mac(web, dom, i) for i in range(count)}
    state.remote_changed(RemoteDelta(added=frozenset(many)))
    prog.refresh()
    return state, prog, web, dom, many


def test_an_evpn_route_delta_re_derives_and_recompiles_only_the_macs_it_reaches():
    """Received EVPN routes reach State as deltas (State.remote_changed): one MAC added, moved or withdrawn among
    two hundred in the same subnet re-derives that MAC's endpoint only and recompiles only its owner, and a MAC
    taking an IP another remote MAC held gives that one's endpoint back without it."""
    state, prog, web, dom, many = remote_macs_world()

    def remote(i, ip=None):
        return remote_mac(web, dom, i, ip)

    assert_matches_full(prog)
    for session in prog.desired:
        prog.take_changes(session)  # handed out
    derived = []
    real = derive_module.evpn_endpoint
    with patch.object(derive_module, "evpn_endpoint", lambda mac, ips: derived.append(mac) or real(mac, ips)):
        moved = replace(remote(7), vtep_ip="10.99.0.1")  # from 10.99.0.2
        state.remote_changed(RemoteDelta(added=frozenset({moved}), removed=frozenset({remote(7)})))
        touched = prog.refresh()
        assert [m.mac for m in derived] == [moved.mac]
        changed = {o for s in touched for o in prog.take_changes(s)}
        assert changed == {Owner("evpn", f"evpn:{web['id']}/{moved.mac}")}
        assert_matches_full(prog)
        derived.clear()
        state.remote_changed(RemoteDelta(removed=frozenset({remote(199)})))
        prog.refresh()
        assert derived == [] and f"evpn:{web['id']}/{remote(199).mac}" not in prog.view.endpoints
        assert_matches_full(prog)
        derived.clear()
        # an earlier MAC (02:aa:00:00:00:00 sorts first) claims 10.0.1.57, which 02:aa:...:07 held
        state.remote_changed(RemoteDelta(added=frozenset({remote(0, ip="10.0.1.57")}),
                                         removed=frozenset({remote(0)})))
        prog.refresh()
        assert sorted(m.mac for m in derived) == [remote(0).mac, moved.mac]
        assert prog.view.endpoints[f"evpn:{web['id']}/{moved.mac}"].ips == ()
        assert_matches_full(prog)


class _CountingGets(dict):
    gets = 0

    def get(self, *args):
        self.gets += 1
        return super().get(*args)


class _Removals(list):
    """A subnet's sorted EVPN endpoints, noting how many endpoints after each removed one had to move."""

    moved = 0

    def __delitem__(self, at):
        self.moved += len(self) - 1 - at
        super().__delitem__(at)


def test_withdrawing_a_subnets_remote_macs_costs_per_mac_not_per_mac_times_the_subnet():
    """A pass withdrawing 200 remote MACs of one subnet (behind two VTEPs) works out where their owners have flows
    once per VTEP, subnet and domain (``OwnerReach._where``, not twice per MAC), and takes each endpoint out of its
    subnet's sorted list from the end (no endpoint after it is moved: in ascending order, 10,000 withdrawn MACs
    moved the rest of the list at each, 50 million moves), and finds it in the View by identity; the result is a full
    recompute's."""
    state, prog, web, _, many = remote_macs_world()
    live = prog.live
    sub_on = live.sub_on = _CountingGets(live.sub_on)
    listed = live.ev[web["id"]] = _Removals(live.ev[web["id"]])
    state.remote_changed(RemoteDelta(removed=frozenset(many)))
    compared = []
    real = derive_module.Endpoint.__eq__
    with patch.object(derive_module.Endpoint, "__eq__", lambda a, b: compared.append(b is not None) or real(a, b)):
        prog.refresh()
    assert web["id"] not in live.ev and listed.moved == 0
    assert not any(compared)  # an endpoint that went is the View's: found by identity, not compared field by field
    assert sub_on.gets <= 12  # a few per place; 400 more before (each MAC: when it went, when listed)
    assert_matches_full(prog)


def test_a_vport_bound_or_moved_is_no_policy_change_to_the_view():
    """The journal keeps the vports whose policy changed apart from those that only moved: security policy and the
    bare-metal servers, which read a vport's policy only, are derived again for the first alone (10,000 ports bound
    at once were 10,000 vports' security facts read and compared again, unchanged)."""
    state, prog = world()
    journal = state.journal()
    state.vrs_update(snapshot("hv2", HOSTS["hv2"], [(f"vm{i}", 10 + i) for i in range(30) if i % 3 in (0, 1)]))
    state.vrs_update(snapshot("hv1", HOSTS["hv1"], []))  # their ports left hv1: they move to hv2
    moved = {f"vm{i}" for i in range(30) if i % 3 == 0}
    assert journal.vports == moved and journal.vport_policies == set()
    with patch.object(prog.live.sec, "_vport", wraps=prog.live.sec._vport) as security:
        prog.refresh()
    assert security.call_count == 0
    assert_matches_full(prog)
    add_vport(state, "acme/web", "vm99", "02:00:00:00:01:99", "10.0.1.99")
    assert journal.vport_policies == {"vm99"} and "vm99" in journal.vports
