"""A chassis' desired state and its changes reach whichever datapath speaks for it, whole.

The programmer notes the owners changed on each switch (by chassis) since it was last handed its desired state, and
its reconciler plans only those. A chassis that comes to be spoken for by another datapath (two hypervisors given one
system-id, in turn: docs/vrs.md) holds in that datapath's reconciler what it held before, not the chassis' state
without its changes: that datapath is handed the whole (faults50). Here each fake reconciler keeps what it is given as
the real one's book does (openflow/installed.py ``set_desired``: the changed owners only, or everything when not
known), and must end holding exactly the switch's desired flows."""

from __future__ import annotations

from types import SimpleNamespace

from controller import app
from controller.discovery import VrsSnapshot
from controller.programmer import Programmer

from .test_compiler import add_vport, base_state, snapshot
from .test_partial_report_withheld import _glue


class _Book:
    """A switch's reconciler as the app drives it, holding what it was given the way the real one's book does."""

    def __init__(self, datapath):
        self.datapath, self.held = datapath, None

    def set_desired_owners(self, flows, groups, changed):
        if changed is None or self.held is None:
            self.held = {owner: fs for owner, fs in flows.items() if fs}
            return
        for owner in changed:
            if flows.get(owner):
                self.held[owner] = flows[owner]
            else:
                self.held.pop(owner, None)

    def keep_stale(self, on):
        pass

    def start(self):
        pass


def _as(session, datapath_id, vtep, ports):
    """``session``'s snapshot as the hypervisor of ``datapath_id`` (VTEP ``vtep``) reports it."""
    base = snapshot(session, vtep, ports)
    return VrsSnapshot(session, "peer", session, vtep_ip=vtep, datapath_id=datapath_id, bridge_present=True,
                       ports=base.ports)


def _two_switches(monkeypatch):
    """s1 (VM vm1, datapath 1) and s2 (VM vm2, datapath 2), both connected over OpenFlow and programmed."""
    monkeypatch.setattr(app, "SwitchReconciler", lambda dp, **kw: _Book(dp))
    state = base_state()
    add_vport(state, "acme/web", "vm1", "02:00:00:00:01:01", "10.0.1.21")
    add_vport(state, "acme/web", "vm2", "02:00:00:00:01:02", "10.0.1.22")
    add_vport(state, "acme/web", "vm3", "02:00:00:00:01:03", "10.0.1.23")  # on the hypervisor of datapath 3
    programmer = Programmer(state)
    glue = _glue(state, programmer)
    state.vrs_update(_as("s1", 1, "10.251.0.1", [("vm1", 1)]))
    state.vrs_update(_as("s2", 2, "10.251.0.2", [("vm2", 1)]))
    programmer.refresh(full=True)
    for dpid in (1, 2):
        glue._adopt(SimpleNamespace(id=dpid, address=None))
    return state, programmer, glue


def _holds_its_desired(glue, programmer, session, dpid):
    desired = {owner: fs for owner, fs in programmer.desired[session].flows.items() if fs}
    return glue.reconcilers[dpid].held == desired


def test_a_chassis_spoken_for_by_another_connected_datapath_is_handed_to_each_whole(monkeypatch):
    """s3's hypervisor (datapath 3, programmed as s3) given s1's system-id (s3 gone, s1 spoken for by datapath 3),
    then its own again. Before (faults50), datapath 3 was handed s1's state as the owners changed since datapath 1
    last took it: it kept s3's own owners (the table-miss flows of ``switch`` s3 among them)."""
    state, programmer, glue = _two_switches(monkeypatch)
    state.vrs_update(_as("s3", 3, "10.251.0.3", [("vm3", 1)]))
    glue._adopt(SimpleNamespace(id=3, address=None))
    glue.hand_out(programmer.refresh())
    assert _holds_its_desired(glue, programmer, "s3", 3)
    state.vrs_gone("s3")  # its system-id changed while connected: gone at once (docs/vrs.md)
    state.vrs_update(_as("s1", 3, "10.251.0.3", [("vm3", 1)]))
    glue.hand_out(programmer.refresh())
    assert _holds_its_desired(glue, programmer, "s1", 3)
    state.vrs_update(_as("s1", 1, "10.251.0.1", [("vm1", 1)]))  # s1's own session speaks again
    state.vrs_update(_as("s3", 3, "10.251.0.3", [("vm3", 1)]))
    glue.hand_out(programmer.refresh())
    assert all(_holds_its_desired(glue, programmer, s, dpid) for s, dpid in (("s1", 1), ("s2", 2), ("s3", 3)))


def test_changes_taken_while_no_reconciler_held_the_chassis_reach_the_datapath_that_holds_it_again(monkeypatch):
    """s1's system-id given to the hypervisor of datapath 3, not connected over OpenFlow (its controller target
    missing, or its connection down all the while): the changes of s1 meanwhile (a VM added on s2 gives s1 flows
    towards it) are taken and handed to no reconciler. Back on datapath 1, whose reconciler still holds what it was
    handed before, s1 is handed the whole: before (review50f), only what changed since those were taken, and
    datapath 1 never got vm4's flows."""
    state, programmer, glue = _two_switches(monkeypatch)
    state.vrs_update(_as("s1", 3, "10.251.0.3", [("vm3", 1)]))
    glue.hand_out(programmer.refresh())
    add_vport(state, "acme/web", "vm4", "02:00:00:00:01:04", "10.0.1.24")
    state.vrs_update(_as("s2", 2, "10.251.0.2", [("vm2", 1), ("vm4", 2)]))
    glue.hand_out(programmer.refresh())
    assert _holds_its_desired(glue, programmer, "s2", 2)
    state.vrs_update(_as("s1", 1, "10.251.0.1", [("vm1", 1)]))
    glue.hand_out(programmer.refresh())
    assert _holds_its_desired(glue, programmer, "s1", 1)
