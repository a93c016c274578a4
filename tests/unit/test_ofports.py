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
    state.ofport_seen(1, "tap1", 7)  # the switch's MOD for the same port, before OVSDB: the hint stays
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


class _Datapath:
    """What Ryu's parser needs of a datapath: its OpenFlow modules (the bytes are a real OpenFlow 1.3 message)."""

    def __init__(self, dpid):
        from ryu.ofproto import ofproto_v1_3, ofproto_v1_3_parser

        self.id, self.ofproto, self.ofproto_parser = dpid, ofproto_v1_3, ofproto_v1_3_parser


def port_status_message(dp, reason: int, port_no: int, name: bytes):
    """An OFPT_PORT_STATUS as ovs-vswitchd sends it, parsed by Ryu."""
    import struct

    from ryu.ofproto import ofproto_parser

    body = struct.pack("!B7x", reason) + struct.pack("!I4x6s2x16sIIIIIIII", port_no, b"\x02\0\0\0\0\x07", name,
                                                     0, 0, 0, 0, 0, 0, 0, 0)
    data = struct.pack("!BBHI", 4, dp.ofproto.OFPT_PORT_STATUS, 8 + len(body), 0) + body
    return ofproto_parser.msg(dp, 4, dp.ofproto.OFPT_PORT_STATUS, len(data), 0, data)


def test_a_port_status_from_the_switch_numbers_the_port_and_a_delete_ends_the_hint():
    from controller.ofports import port_status

    state, dp = bound_state(), _Datapath(1)
    port_status(state, port_status_message(dp, dp.ofproto.OFPPR_ADD, 0xFFFFFFFE, b"tap1"))  # OFPP_LOCAL: no number
    assert state.locations["v1"].ofport is None
    port_status(state, port_status_message(dp, dp.ofproto.OFPPR_ADD, 7, b"tap1"))
    assert state.locations["v1"].ofport == 7
    port_status(state, port_status_message(dp, dp.ofproto.OFPPR_DELETE, 7, b"tap1"))
    assert state.ofport_hints.pending("s1") == {}
