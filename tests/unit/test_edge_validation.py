"""Every input validated at its edge: hardware VTEP and VRS rows with values Canopy cannot use are left
out (and logged, rate-limited) instead of reaching derive; OpenFlow errors that match no request are
logged with the message they refer to."""

from __future__ import annotations

import logging
import struct
from types import SimpleNamespace

from controller.discovery import VtepMac, VtepPort
from controller.logs import Throttle
from controller.programmer import Programmer
from ovsdb.vrs import VrsReporter, build_snapshot
from ovsdb.vtep import build_vtep_snapshot
from ovsdb.vtep_reporter import VtepReporter
from tests.unit.test_vtep_view import setup
from tests.unit.vtep_fakes import OWN_IP, FakeVtepDb, converge, desired

GOOD = "02:00:00:00:0b:01"


class Bad:
    def __init__(self):
        self.seen = []

    def __call__(self, *args):
        self.seen.append(args)


def garbage_vtep():
    """A VTEP database with one good learned MAC and every kind of bad one."""
    db = FakeVtepDb()
    converge(db, desired())
    ls = db.ls(5001)
    db.add("Ucast_Macs_Local", MAC=GOOD, logical_switch=ls, ipaddr="10.0.1.50", locator=db.own)
    db.add("Ucast_Macs_Local", MAC="02:00:00:00:0b:06", logical_switch=ls, ipaddr="fe80::6%eth0", locator=db.own)
    db.add("Ucast_Macs_Local", MAC="not-a-mac", logical_switch=ls, ipaddr="10.0.1.51", locator=db.own)
    db.add("Ucast_Macs_Local", MAC="01:00:5e:00:00:01", logical_switch=ls, ipaddr="", locator=db.own)
    bad_locator = db.add("Physical_Locator", encapsulation_type="vxlan_over_ipv4", dst_ip="2001:db8::9")
    db.add("Ucast_Macs_Local", MAC="02:00:00:00:0b:07", logical_switch=ls, ipaddr="", locator=bad_locator)
    db.add("Ucast_Macs_Local", MAC="02:00:00:00:0b:08", logical_switch=ls, ipaddr="10.0.1.300", locator=db.own)
    db.add("Ucast_Macs_Local", MAC="02:00:00:00:0b:09", logical_switch=db.logical_switch("big", 1 << 24),
           ipaddr="", locator=db.own)
    db.switch.tunnel_ips = [OWN_IP, "garbage", "ff02::1", "fe80::1%eth0"]  # a scoped address: no tunnel endpoint
    db.switch.management_ips = ["2001:db8::1", "192.0.2.9", "mgmt"]
    db.ports["p2"].vlan_bindings[5000] = ls
    return db


def test_bad_vtep_rows_are_left_out_and_reported_never_raised():
    db, bad = garbage_vtep(), Bad()
    snap = build_vtep_snapshot("v1", "peer", db.all("Physical_Switch"), db.all("Ucast_Macs_Local"), bad)
    assert snap.local_macs == (VtepMac(GOOD, 5001, "10.0.1.50", OWN_IP),
                               VtepMac("02:00:00:00:0b:06", 5001, None, OWN_IP),  # IPv6 neighbour: MAC kept
                               VtepMac("02:00:00:00:0b:08", 5001, None, OWN_IP))
    assert snap.tunnel_ips == (OWN_IP,) and snap.ports[1] == VtepPort("p2", ())
    assert snap.management_ips == ("192.0.2.9", "2001:db8::1", "mgmt")  # shown as reported, in order
    reported = " | ".join("%s %r %s" % args for args in bad.seen)
    for what in ("fe80::6%eth0", "not-a-mac", "01:00:5e:00:00:01", "2001:db8::9", "10.0.1.300", "garbage", "5000",
                 "fe80::1%eth0"):
        assert what in reported, (what, reported)


def test_an_ipv6_neighbour_on_a_vtep_does_not_stop_derive():
    """The issue's case: an IPv6 ipaddr in Ucast_Macs_Local, through the reporter into State and derive."""
    state = setup()
    db = garbage_vtep()
    db.switch.name = "tor1"
    state.vtep_gone("v1")  # setup's stand-in for tor1: the reporter keys it by name, vtep:tor1
    sink = SimpleNamespace(vtep_update=state.vtep_update, vtep_gone=state.vtep_gone)
    VtepReporter(sink, "v1", "peer").refresh(db.all("Physical_Switch"), db.all("Ucast_Macs_Local"))
    programmer = Programmer(state)
    programmer.refresh(full=True)
    learned = {e.mac: e.ips for e in programmer.view.endpoints.values() if e.kind == "vtep_mac"}
    assert learned["02:00:00:00:0b:06"] == () and learned[GOOD] == ("10.0.1.50",)


def test_reporters_log_bad_values_rate_limited(caplog):
    db = garbage_vtep()
    reporter = VtepReporter(SimpleNamespace(vtep_update=lambda s: None, vtep_gone=lambda s: None), "v1", "10.9.9.9:1",
                            logging.getLogger("test.vtep"))
    with caplog.at_level(logging.WARNING, "test.vtep"):
        for n in range(20):  # the peer keeps sending updates with the same garbage
            db.switch.description = str(n)
            reporter.refresh(db.all("Physical_Switch"), db.all("Ucast_Macs_Local"))
    lines = [r.getMessage() for r in caplog.records if "fe80::6" in r.getMessage()]
    assert len(lines) == 1 and "10.9.9.9:1" in lines[0] and "ipaddr" in lines[0]


def test_bad_vrs_port_macs_are_left_out_and_reported():
    iface = SimpleNamespace(name="tap1", ofport=[5], external_ids={"iface-id": "vm1", "attached-mac": "zz:zz",
                                                                   "canopy-vnic-5000": "vm9"},
                            mac_in_use=["02:00:00:00:00:09"], type="")
    good = SimpleNamespace(name="tap2", ofport=[6], external_ids={"attached-mac": "02:00:00:00:00:0A"},
                           mac_in_use=[], type="")
    own = SimpleNamespace(name="br-int", ofport=[65534], external_ids={}, mac_in_use=[], type="internal")
    bridge = SimpleNamespace(name="br-int", ports=[SimpleNamespace(name=i.name, interfaces=[i])
                                                   for i in (own, iface, good)],
                             datapath_id=["0000000000000001"], fail_mode=["secure"], protocols=["OpenFlow13"])
    root = SimpleNamespace(external_ids={"system-id": "hv1"}, bridges=[bridge], ovs_version=["3.1.0"])
    bad = Bad()
    snap = build_snapshot("s", "10.0.0.1:1", [root], bad_value=bad)
    assert {p.name: p.mac for p in snap.ports} == {"tap1": None, "tap2": "02:00:00:00:00:0a"}
    assert bad.seen == [("canopy-vnic-5000 of interface tap1 (VLAN 1-4094 and a vNIC id expected)", "vm9"),
                        ("attached-mac of interface tap1", "zz:zz")]
    sink = SimpleNamespace(vrs_update=lambda s: None, vrs_gone=lambda s: None)
    log = logging.getLogger("test.vrs")
    reporter = VrsReporter(sink, "s", "10.0.0.1:1", log=log)
    assert reporter.refresh([root]) and reporter.last.ports[0].mac is None


def test_throttle_logs_each_key_once_per_interval_and_counts_the_rest(caplog):
    now = [0.0]
    throttle = Throttle(logging.getLogger("test.throttle"), interval=60, max_keys=2, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, "test.throttle"):
        assert throttle.warning("a", "bad %s", "a")
        assert not throttle.warning("a", "bad %s", "a") and not throttle.warning("a", "bad %s", "a")
        now[0] = 61
        assert throttle.warning("a", "bad %s", "a")
        for key in "bcd":  # at most two keys remembered
            throttle.warning(key, "bad %s", key)
        assert len(throttle._keys) == 2
    assert [r.getMessage() for r in caplog.records][:2] == ["bad a", "bad a (2 more like it in the last 61 s)"]


def test_openflow_error_matching_no_request_is_logged_with_the_message_it_refers_to(caplog):
    from controller.ryu_compat import ofproto_v1_3
    from openflow.decode import echoed_message
    from openflow.reconciler import SwitchReconciler
    from ryu.ofproto import ofproto_v1_3_parser as parser

    ofp = ofproto_v1_3
    datapath = SimpleNamespace(id=0xA, ofproto=ofp, ofproto_parser=parser, xid=0, address=("10.0.0.1", 1))
    rec = SwitchReconciler(datapath, log=logging.getLogger("test.reconciler"))
    echoed = struct.pack("!BBHI", ofp.OFP_VERSION, ofp.OFPT_PACKET_OUT, 90, 4242) + b"\x00" * 16
    error = parser.OFPErrorMsg(datapath, type_=ofp.OFPET_BAD_ACTION, code=ofp.OFPBAC_BAD_OUT_PORT, data=echoed)
    error.xid, error.msg_type = 4242, ofp.OFPT_ERROR
    with caplog.at_level(logging.WARNING, "test.reconciler"):
        assert rec.handle(error) is False
    [line] = [r.getMessage() for r in caplog.records]
    assert "OFPET_BAD_ACTION" in line and "OFPBAC_BAD_OUT_PORT" in line and "OFPT_PACKET_OUT xid 4242" in line
    assert rec.counters["unmatched_errors"] == 1
    assert "did not echo" in echoed_message(ofp, ofp.OFPET_BAD_REQUEST, b"\x04")  # garbage never raises
    assert "hello" in echoed_message(ofp, ofp.OFPET_HELLO_FAILED, b"no common version")
