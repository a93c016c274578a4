"""A Hyper-V port whose name names one vport and whose iface-id names another (a KVM vport's): one port cannot
classify two vports (both vports' flows matched its in_port and replaced each other on the switch; the standby
table kept one of them: "a port showing two vports' keys collides", stop 41). The iface-id takes it, the Hyper-V
vport is unbound there, logged once and shown in its REST status (controller/binding.py ``conflicting``); the
incremental result equals ``binding.resolve`` whatever the order of the vports' and the port's arrival."""

from __future__ import annotations

import logging

from controller import binding
from controller import policy as pol
from controller.discovery import PortInfo, VrsSnapshot
from controller.model import normalise
from controller.state import State
from controller.store import Change


def _vport(vid, name, mac, bind):
    v = normalise("vport", {"subnet_id": "s", "name": name, "mac": mac, "binding": bind})
    v.update(id=vid, source=None)
    return v


KVM = _vport("k", "vmk", "02:00:00:00:00:0a", {"flavour": "kvm", "iface_id": "vmk"})
HYPERV = _vport("h", "vmh", "02:00:00:00:00:0b", {"flavour": "hyperv", "port_name": "vmh-nic"})
SHARED = PortInfo(name="vmh-nic", ofport=5, external_ids=(("iface-id", "vmk"),))
OWN = PortInfo(name="vmh-nic2", ofport=6)


def _snap(*ports):
    return VrsSnapshot("a", "p", "hv1", flavour="hyperv", datapath_id=1, bridge_present=True, ports=ports)


def _reference(state):
    return binding.resolve(state.policy, state.vrs, state.flavour_of, lambda *a: 0)


def _commit(state, put=(), remove=()):
    policy = state.policy.copy()
    changes = []
    for v in put:
        policy.put("vport", v)
        changes.append(Change("vport", v["id"], "put", v, seq=state.last_seq + 1 + len(changes)))
    for vid in remove:
        policy.remove("vport", vid)
        changes.append(Change("vport", vid, "delete", None, seq=state.last_seq + 1 + len(changes)))
    state.policy_committed(policy, changes)


def test_a_port_naming_a_hyperv_vport_with_a_kvm_vports_iface_id_goes_to_the_kvm_vport_and_says_so(caplog):
    policy = pol.Policy()
    policy.put("vport", HYPERV)
    state = State(policy)
    with caplog.at_level(logging.WARNING, logger="canopy.state"):
        state.vrs_update(_snap(SHARED))
        assert state.locations["h"].port == "vmh-nic"  # no KVM vport of that iface-id yet: the name's
        _commit(state, put=[KVM])  # the KVM vport created: it takes the port
        assert state.locations["k"].port == "vmh-nic" and "h" not in state.locations
        assert state.locations == _reference(state)
        warned = [r.getMessage() for r in caplog.records if "iface-id names" in r.getMessage()]
        assert warned == ["vport s/vmh (Hyper-V, port name vmh-nic) not bound on hv1: the port's iface-id names vport "
                          "s/vmk, which takes it (one port cannot hold two vports; docs/vrs.md)"]
        status = state.vport_status("h")
        assert status["status"] == "unbound" and status["port_conflicts"] == [
            {"chassis": "hv1", "port": "vmh-nic", "taken_by": "s/vmk"}]
        state.vrs_update(_snap(SHARED, OWN))  # another report: said once
        assert len([r for r in caplog.records if "iface-id names" in r.getMessage()]) == 1
    assert "port_conflicts" not in state.vport_status("k")
    _commit(state, remove=["k"])  # the KVM vport deleted: the name's again
    assert state.locations["h"].port == "vmh-nic" and "port_conflicts" not in state.vport_status("h")
    assert state.locations == _reference(state)


def test_the_kvm_vport_takes_the_port_whichever_arrives_first_and_there_is_one_standby_entry():
    for order in ("port first", "policy first"):
        policy = pol.Policy()
        policy.put("vport", HYPERV)
        policy.put("vport", KVM)
        state = State(policy)
        if order == "port first":
            state.vrs_update(_snap(SHARED))
        state.vrs_update(VrsSnapshot("b", "p", "hv2", flavour="kvm", datapath_id=2, bridge_present=True,
                                     ports=(PortInfo(name="tapk", ofport=9, external_ids=(("iface-id", "vmk"),)),)))
        if order == "policy first":
            state.vrs_update(_snap(SHARED))
        assert state.locations == _reference(state), order
        assert "h" not in state.locations
        k = state.locations["k"]
        # vmk on two ports with a device (a live migration): one standby entry, the KVM vport's, never the name's
        others = {("a", "vmh-nic"), ("b", "tapk")} - {(k.session, k.port)}
        (session, port), = others
        assert state.standby == {session: {port: (5 if port == "vmh-nic" else 9, KVM["mac"], "k")}}, order
        assert state.standby == binding.standby_ports(state.policy, state.vrs, state.flavour_of,
                                                      {v: loc for v, loc in state.locations.items()})
