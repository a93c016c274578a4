"""Compile once, share (issue 13): an owner's flows that are the same on several switches are one object held
by all of them; flows are lean immutable values; a full compile leaves the cyclic garbage collector alone; the
programmer tells each switch which owners changed. The equality of shared and unshared compiles through random
changes is tests/unit/test_compiler.py (test_incremental_equals_full_recompute_through_random_changes)."""

import gc
import pickle

import pytest

from controller.programmer import Programmer
from openflow import pipeline as p
from openflow.compiler import compile_switch
from openflow.flows import Flow, Owner
from tests.unit.test_compiler import add_vport, base_state, snapshot

HOSTS = {"hv1": "10.251.0.1", "hv2": "10.251.0.2", "hv3": "10.251.0.3", "hv4": "10.251.0.4"}


def programmed(vms=12):
    """vm<i> in web or db, on hv1..hv3 round robin; hv4 has no port (serves nothing)."""
    state = base_state()
    for i in range(vms):
        web = i % 2 == 0
        add_vport(state, "acme/web" if web else "acme/db", f"vm{i}", f"02:00:00:00:01:{i:02x}",
                  f"10.0.{1 if web else 2}.{10 + i}")
    for n, (host, vtep) in enumerate(HOSTS.items()):
        ports = [(f"vm{i}", 10 + i) for i in range(vms) if i % 3 == n] if host != "hv4" else []
        state.vrs_update(snapshot(host, vtep, ports))
    prog = Programmer(state)
    prog.refresh(full=True)
    return state, prog


def test_a_remote_vports_flows_are_one_object_on_every_switch_that_holds_them():
    _, prog = programmed()
    vm0 = Owner("vport", "vm0")  # on hv1: remote on hv2 and hv3
    on2, on3 = prog.desired["hv2"].flows[vm0], prog.desired["hv3"].flows[vm0]
    assert on2 and on2 is on3
    kinds = {f.table for f in on2}
    assert {p.SERVICES, p.L2_LOOKUP, p.L3_ROUTING} <= kinds  # ARP responder, L2 entry, host route: all shared
    assert prog.desired["hv1"].flows[vm0] is not on2  # where it is local, its own flows
    web = Owner("subnet", prog.view.endpoints["vm0"].subnet_id)
    assert prog.desired["hv1"].flows[web] is prog.desired["hv2"].flows[web] is prog.desired["hv3"].flows[web]


def test_sharing_compiles_each_owner_once_per_variant_not_once_per_switch():
    _, prog = programmed()
    vm0 = Owner("vport", "vm0")
    assert sum(vm0 in d.flows for d in prog.desired.values()) == 3
    assert len(prog.shared.flows[vm0]) == 2  # compiled twice: where it is local, and once for both others


def test_shared_and_unshared_compiles_agree_on_every_switch_owners_and_cookies_included():
    _, prog = programmed()
    for session in HOSTS:
        alone = compile_switch(prog.view, session)  # a Shared of its own: nothing shared with other switches
        ours = prog.desired[session]
        assert ours.flows.keys() == alone.flows.keys()
        for owner, flows in alone.flows.items():
            assert {(f, f.owner, f.cookie) for f in ours.flows[owner]} == {(f, f.owner, f.cookie) for f in flows}
        assert ours.all_groups() == alone.all_groups()


def test_tunnel_exits_are_the_only_per_switch_flows_of_a_remote_port():
    _, prog = programmed()
    hv2 = prog.view.switches["hv2"]
    exits = {f.table: f for f in prog.desired["hv2"].flows[Owner("switch", "hv2")] if f.table in (p.IRB_OUT,
                                                                                                   p.TUNNEL_OUT)}
    assert exits[p.IRB_OUT].actions == (("set", "eth_src", hv2.router_mac), ("goto", p.TUNNEL_OUT))
    assert exits[p.TUNNEL_OUT].actions == (("output", hv2.tunnel_ofport),)


def test_flows_are_lean_immutable_values_that_survive_pickling():
    f = next(iter(programmed()[1].desired["hv2"].flows[Owner("vport", "vm0")]))
    assert not hasattr(f, "__dict__")
    with pytest.raises(AttributeError):
        f.priority = 1
    back = pickle.loads(pickle.dumps(f))
    assert back == f and hash(back) == hash(f) and back.cookie == f.cookie and back.owner == f.owner
    assert Flow(f.table, f.priority, f.match, f.actions, Owner("vport", "other")) == f  # the owner only names it


def test_a_full_compile_leaves_the_cycle_collector_alone():
    state, _ = programmed(vms=40)
    runs = []

    def count(phase, info):
        if phase == "start":
            runs.append(info["generation"])

    prog = Programmer(state)
    gc.collect()
    gc.callbacks.append(count)
    try:
        prog.refresh(full=True)
        frozen = gc.get_freeze_count()
    finally:
        gc.callbacks.remove(count)
        gc.unfreeze()
    flows = {f for d in prog.desired.values() for fs in d.flows.values() for f in fs}
    assert len(flows) > 300 and runs == [] and gc.isenabled()
    assert frozen > len(flows)  # what it keeps is out of the collector's sight: the next collection skips it


def test_the_programmer_tells_each_switch_which_owners_changed():
    state, prog = programmed()
    for session in HOSTS:
        assert prog.take_changes(session) is None  # the first compile: everything on it is new (diff all)
        assert prog.take_changes(session) == set()
    add_vport(state, "acme/web", "vm99", "02:00:00:00:01:99", "10.0.1.99")
    state.vrs_update(snapshot("hv2", HOSTS["hv2"], [(f"vm{i}", 10 + i) for i in range(12) if i % 3 == 1] +
                              [("vm99", 99)]))
    touched = prog.refresh()
    vm99 = Owner("vport", "vm99")
    assert "hv1" in touched and vm99 in prog.take_changes("hv1")
    changed = prog.take_changes("hv2")
    assert vm99 in changed and Owner("vport", "vm0") not in changed
    assert prog.take_changes("hv4") == set() and "hv4" not in touched


def test_a_full_recompute_tells_precise_owners_unless_it_was_asked_for():
    state, prog = programmed()
    for session in HOSTS:
        prog.take_changes(session)
    state.vrs_update(snapshot("hv5", "10.251.0.5", [("vm0", 50)]))  # vm0 moves to a new VRS (incremental)
    state.vrs_update(snapshot("hv1", HOSTS["hv1"], [(f"vm{i}", 10 + i) for i in range(3, 12, 3)]))  # leaving hv1
    prog.refresh()
    changed = prog.take_changes("hv2")
    assert prog.full_recomputes == 1 and Owner("vport", "vm0") in changed and Owner("vport", "vm1") not in changed
    prog.refresh(full=True)  # asked for (start, after a failed pass): every switch diffs everything
    assert all(prog.take_changes(session) is None for session in prog.desired)


def test_a_full_recompute_keeps_what_it_compiled_again_unchanged_and_finds_the_rest():
    """A full recompute that has a previous state (on request, after a failed pass) compiles every owner again: the
    sets that come out equal are the objects the switches already hold (``Shared.renew``), so that the comparison of a
    million owner entries is one by identity (2.5 s of CPU against 1.1 s at 10,000 vports on 100 VRS: docs/
    benchmarks.md, compile_scale, branch statuslat); those that changed are found."""
    state, prog = programmed()
    for session in HOSTS:
        prog.take_changes(session)
    before = {session: dict(d.flows) for session, d in prog.desired.items()}
    add_vport(state, "acme/web", "vm99", "02:00:00:00:01:99", "10.0.1.99")
    state.vrs_update(snapshot("hv2", HOSTS["hv2"], [(f"vm{i}", 10 + i) for i in range(12) if i % 3 == 1] +
                              [("vm99", 99)]))
    prog._built = False  # a failed pass: the next one recomputes everything
    prog.refresh()
    vm0, vm99 = Owner("vport", "vm0"), Owner("vport", "vm99")
    assert prog.desired["hv2"].flows[vm0] is before["hv2"][vm0]  # compiled again, the same: the same object
    assert prog.desired["hv3"].flows[vm0] is before["hv3"][vm0]
    changed = prog.take_changes("hv1")
    assert vm99 in changed and vm0 not in changed
    assert not prog.shared.settle()  # what was compiled before is not kept past the recompute
