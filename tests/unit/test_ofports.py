"""A port numbered by the switch's PORT_STATUS before OVSDB has its ofport (controller/ofports.py)."""

from dataclasses import replace

from controller.state import State
from tests.unit.test_binding import policy, port, snap, vport

KVM = {"flavour": "kvm", "iface_id": "abc"}


def new_port(ofport=None):
    """The VM's tap as OVSDB first reports it: the row is there, ovs-vswitchd has not numbered it yet."""
    return port("tap1", ofport, **{"iface-id": "abc"})


def bound_state():
    state = State(policy(vport("v1", "vm1", KVM)))
    state.vrs_update(snap("s1", "hv1", [port("a-other", 3), new_port()]))
    assert state.locations["v1"].ofport is None
    return state


def test_the_switchs_port_status_numbers_a_port_before_ovsdb_does():
    state = bound_state()
    state.ofport_seen(1, "tap1", 7)
    assert state.locations["v1"].ofport == 7
    assert state.vrs["s1"].changed == {"tap1"}


def test_a_snapshot_for_another_change_keeps_the_number_until_ovsdb_gives_it():
    state = bound_state()
    state.ofport_seen(1, "tap1", 7)
    numbered = state.vrs["s1"].ports[1]
    state.vrs_update(snap("s1", "hv1", [port("a-other", 4), new_port()]))  # another port changed
    assert state.locations["v1"].ofport == 7
    assert state.vrs["s1"].ports[1] is numbered  # unchanged, the same object
    state.vrs_update(snap("s1", "hv1", [port("a-other", 4), new_port(7)]))  # OVSDB caught up: the hint ends
    assert state.ofport_hints.pending("s1") == {}
    assert state.locations["v1"].ofport == 7


def test_ovsdb_wins_over_the_hint():
    state = bound_state()
    state.ofport_seen(1, "tap1", 7)
    state.vrs_update(snap("s1", "hv1", [port("a-other", 3), new_port(9)]))
    assert state.locations["v1"].ofport == 9
    state.ofport_seen(1, "tap1", 7)  # a late or stale announcement changes nothing OVSDB numbered
    assert state.locations["v1"].ofport == 9
    assert state.ofport_hints.pending("s1") == {}


def test_a_number_announced_before_the_row_is_used_when_the_row_arrives():
    state = State(policy(vport("v1", "vm1", KVM)))
    state.vrs_update(snap("s1", "hv1", [port("a-other", 3)]))
    state.ofport_seen(1, "tap1", 7)
    assert "v1" not in state.locations
    state.vrs_update(replace(snap("s1", "hv1", [port("a-other", 3), new_port()]), changed=frozenset({"tap1"})))
    assert state.locations["v1"].ofport == 7


def test_a_deleted_port_or_a_gone_switch_ends_the_hint_and_other_switches_are_not_touched():
    state = bound_state()
    state.ofport_seen(2, "tap1", 7)  # another datapath: not this VRS's port
    assert state.locations["v1"].ofport is None
    state.ofport_seen(1, "tap1", 7)
    state.ofport_deleted(1, "tap1")
    assert state.ofport_hints.pending("s1") == {}
    state.ofport_seen(1, "tap1", 8)
    state.vrs_gone("s1")
    assert state.ofport_hints.pending("s1") == {}
    assert "v1" not in state.locations
