"""No desired state is handed to a switch whose first report State is still taking in, outside the start-up hold too.

A switch gone past its reconnect grace (over OVSDB and OpenFlow) is forgotten: its VMs are unbound, their flows on
the other switches and their EVPN routes go (controller/state.py ``vrs_gone``). Its own flows stay on it (fail-secure)
and its VMs run on. When it comes back, State reads its first report again from scratch, with pauses (its vports
located a chunk at a time); a programming pass in one of them computes the switch's desired state without the VMs not
located yet. Handed out, it would delete their flows from the switch, to add them again one pass later: their traffic
dropped meanwhile. Here a pass (the programmer's refresh and the app's hand-out, to fake reconcilers recording what
they are given) runs in every one of State's pauses, deterministically (the pacer's pause runs it)."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

from controller import app
from controller import state as state_module
from controller.pacer import Pacer
from controller.programmer import Programmer

from .test_compiler import add_vport, base_state, snapshot

VMS = 40
S1_PORTS = [(f"vm{i}", i + 1) for i in range(VMS)]
S1_VMS = {f"vm{i}" for i in range(VMS)}


class _Rec:
    """A switch's reconciler as the app drives it: records which of s1's VMs each desired state it is given has."""

    def __init__(self, datapath):
        self.datapath, self.given = datapath, []

    def set_desired_owners(self, flows, groups, changed):
        self.given.append({owner.id for owner, fs in flows.items() if owner.kind == "vport" and fs} & S1_VMS)

    def keep_stale(self, on):
        pass

    def start(self):
        pass


def _glue(state, programmer):
    """What of the app ``_hand_out``, ``_push`` and ``_adopt`` use; the reconcilers by datapath id."""
    glue = SimpleNamespace(state=state, programmer=programmer, reconcilers={}, _handed={}, pair=None, _keep_stale=False,
                           hold=SimpleNamespace(holding=False, remember=lambda *a: None),
                           routes=SimpleNamespace(hand_out=lambda: None, held=lambda: None),
                           tunnels=SimpleNamespace(reading=contextlib.nullcontext, forget=lambda s: None),
                           gateway_garp=SimpleNamespace(forget=lambda s: None), watch=SimpleNamespace(note_synced=None),
                           reconcile_lane=SimpleNamespace(pause=None), meter_rates=None)
    for name in ("_after_hold", "_push", "_session_of", "_adopt", "_stop", "_reported"):
        setattr(glue, name, getattr(app.CanopyApp, name).__get__(glue))
    glue._announce_gateways = glue._warm_tunnels = lambda *a: None
    glue._announce_floating_ips = glue._push_vteps = lambda: None
    glue.probes = SimpleNamespace(disconnected=lambda rec: None)
    glue.hand_out = lambda touched: app.CanopyApp._hand_out(glue, touched)
    return glue


def _s1_back(monkeypatch, connect_in_take=False):
    """s1 (VMS VMs) and s2 (one VM) programmed; s1 gone past its grace; s1 back: its first report taken with a
    programming pass in each of State's pauses, and one after it. ``connect_in_take``: s1 connects over OpenFlow in
    the first pause whose View has it (else before its report). Returns (what s1's reconciler was given on its
    return, what of s1's VMs s2's desired state held at each pass of the return, s1's VMs bound then)."""
    monkeypatch.setattr(state_module, "RELOCATE_CHUNK", 2)  # s1's vports located 2 at a time, pausing between
    monkeypatch.setattr(app, "SwitchReconciler", lambda dp, **kw: _Rec(dp))
    state = base_state()
    for i in range(VMS):
        add_vport(state, "acme/web", f"vm{i}", f"02:00:00:00:01:{i:02x}", f"10.0.1.{20 + i}")
    add_vport(state, "acme/web", "vmx", "02:00:00:00:02:01", "10.0.1.200")
    programmer = Programmer(state)
    glue = _glue(state, programmer)
    state.vrs_update(snapshot("s1", "10.251.0.1", S1_PORTS))
    state.vrs_update(snapshot("s2", "10.251.0.2", [("vmx", 1)]))
    programmer.refresh(full=True)
    for dpid in (1, 2):
        glue._adopt(SimpleNamespace(id=dpid, address=None))
    assert glue.reconcilers[1].given[-1] >= S1_VMS and glue.reconcilers[2].given[-1] >= S1_VMS
    state.vrs_gone("s1")  # past its grace, its OpenFlow connection gone too
    glue._stop = lambda rec: None
    del glue.reconcilers[1]
    glue.hand_out(programmer.refresh())
    assert not glue.reconcilers[2].given[-1] & S1_VMS  # s1's VMs unbound: their flows on s2 went (as designed)
    if not connect_in_take:
        glue._adopt(SimpleNamespace(id=1, address=None))
    on_s2, bound = [], []

    def a_pass():  # the programming loop's pass when its wait for the report is cut short in this pause
        if connect_in_take and 1 not in glue.reconcilers and "s1" in programmer.view.switches:
            glue._adopt(SimpleNamespace(id=1, address=None))
        glue.hand_out(programmer.refresh())
        on_s2.append(glue.reconcilers[2].given[-1] & S1_VMS)
        bound.append({vid for vid in S1_VMS if vid in state.locations})

    state.pacer = Pacer(a_pass, every=5)
    state.vrs_update(snapshot("s1", "10.251.0.1", S1_PORTS))
    state.pacer = Pacer()
    a_pass()  # the pass after the report (State's last change woke the loop)
    assert any(0 < len(vms) < VMS for vms in bound)  # passes did run with s1's VMs partly bound
    return glue.reconcilers[1].given, on_s2, bound


def test_a_switch_back_after_its_grace_is_given_no_desired_state_before_its_report_is_taken_whole(monkeypatch):
    given, _, _ = _s1_back(monkeypatch)
    assert given and all(len(vms) == VMS for vms in given)  # on main: given its state without most of its VMs


def test_a_switch_connecting_over_openflow_while_its_report_is_taken_is_given_its_state_once_whole(monkeypatch):
    given, _, _ = _s1_back(monkeypatch, connect_in_take=True)
    assert given and all(len(vms) == VMS for vms in given)


def test_a_partly_taken_report_removes_nothing_elsewhere(monkeypatch):
    """The other switches' flows towards the returning switch's VMs, and their bindings (so their EVPN routes and
    hardware VTEP rows), only come back as the report is taken: each pass holds at least what the one before did."""
    _, on_s2, bound = _s1_back(monkeypatch)
    assert all(a <= b for a, b in zip(on_s2, on_s2[1:])) and len(on_s2[-1]) == VMS
    assert all(a <= b for a, b in zip(bound, bound[1:]))


def test_due_withholds_a_partial_switch_until_a_view_sees_it_whole():
    programmer = Programmer(base_state())
    programmer.partial = frozenset({"s1"})
    assert programmer.due({"s1", "s2"}) == {"s2"} and programmer.withheld == {"s1"}
    assert programmer.due(set()) == set()  # still partial
    programmer.partial = frozenset()
    assert programmer.due({"s3"}) == {"s1", "s3"} and programmer.withheld == {"s1"}  # until handed out
    programmer.handed("s1")
    assert programmer.withheld == set()
