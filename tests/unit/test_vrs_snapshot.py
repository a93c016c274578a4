"""The pure Open_vSwitch rows -> VrsSnapshot function, with simple row stand-ins shaped like IDL rows."""

from types import SimpleNamespace

from ovsdb.vrs import VrsReporter, build_snapshot
from tests.unit.sinks import Reports

PEER = "10.250.0.11:51034"
SESSION = "ovsdb:" + PEER


def iface(name, ofport=(), ext=None, mac_in_use=(), type_=""):
    """An Interface row as the ovs IDL presents it: optional columns are 0/1-element lists."""
    return SimpleNamespace(name=name, ofport=list(ofport), external_ids=dict(ext or {}),
                           mac_in_use=list(mac_in_use), type=type_)


def port(name, *interfaces):
    return SimpleNamespace(name=name, interfaces=list(interfaces))


def bridge(name="br-int", ports=(), datapath_id=("00000a0b0c0d0e0f",)):
    own = port(name, iface(name, ofport=[65534], type_="internal"))
    return SimpleNamespace(name=name, ports=[own, *ports], datapath_id=list(datapath_id),
                           datapath_type="netdev", external_ids={})


def root(ext=None, bridges=(), ovs_version=("3.1.0",)):
    return SimpleNamespace(external_ids=dict(ext or {}), bridges=list(bridges), ovs_version=list(ovs_version))


def snap(*roots, **kwargs):
    return build_snapshot(SESSION, PEER, roots, **kwargs)


class Recorder:
    def __init__(self):
        self.bad = []

    def __call__(self, key, value):
        self.bad.append((key, value))


def test_identity_from_external_ids():
    s = snap(root({"system-id": "hv1", "hostname": "compute-1", "canopy-vtep-ip": "192.0.2.11",
                   "canopy-flavour": "hyperv"}))
    assert (s.session, s.peer, s.chassis, s.hostname) == (SESSION, PEER, "hv1", "compute-1")
    assert (s.vtep_ip, s.flavour, s.ovs_version) == ("192.0.2.11", "hyperv", "3.1.0")


def test_an_ovs_started_without_ovs_ctl_has_no_version_not_an_empty_one():
    """ovs-ctl writes Open_vSwitch.ovs_version; ovs-vswitchd started by hand leaves the column empty. The REST view
    shows null then (docs/rest.md), never "" as if OVS had said an empty version."""
    assert snap(root({"system-id": "hv1"}, ovs_version=())).ovs_version is None
    assert snap(root({"system-id": "hv1"}, ovs_version=("",))).ovs_version is None
    assert snap().ovs_version is None  # no Open_vSwitch row read yet


def test_chassis_falls_back_to_hostname_then_peer_ip():
    assert snap(root({"hostname": "compute-1"})).chassis == "compute-1"
    assert snap(root({})).chassis == "10.250.0.11"
    assert snap().chassis == "10.250.0.11"  # no Open_vSwitch row at all yet


def test_bad_vtep_ip_is_ignored_and_reported():
    for bad in ("192.0.2.300", "fe80::1", "not-an-ip", "0.0.0.0", "239.1.1.1", ""):
        bad_value = Recorder()
        assert snap(root({"canopy-vtep-ip": bad}), bad_value=bad_value).vtep_ip is None
        assert bad_value.bad == [("canopy-vtep-ip", bad)]


def test_unknown_flavour_is_none_and_reported():
    bad_value = Recorder()
    assert snap(root({"canopy-flavour": "xen"}), bad_value=bad_value).flavour is None
    assert bad_value.bad == [("canopy-flavour", "xen")]
    assert snap(root({"canopy-flavour": " ESXi "})).flavour == "esxi"
    assert snap(root({})).flavour is None


def test_bridge_missing():
    s = snap(root({"system-id": "hv1"}, bridges=[bridge("br-ex")]))
    assert (s.bridge, s.bridge_present, s.datapath_id, s.ports) == ("br-int", False, None, ())


def test_only_integration_bridge_interfaces_sorted_without_the_bridge_itself():
    br_int = bridge(ports=[port("vm2", iface("vm2", [2])), port("vm1", iface("vm1", [1]))])
    br_ex = bridge("br-ex", ports=[port("eth0", iface("eth0", [1]))])
    s = snap(root(bridges=[br_ex, br_int]))
    assert s.bridge_present and s.datapath_id == 0x0A0B0C0D0E0F
    assert [p.name for p in s.ports] == ["vm1", "vm2"]


def test_configured_bridge_name():
    s = snap(root(bridges=[bridge("br-canopy", ports=[port("p", iface("p"))])]), bridge="br-canopy")
    assert (s.bridge, s.bridge_present, [p.name for p in s.ports]) == ("br-canopy", True, ["p"])


def test_port_fields():
    tap = iface("tap1", ofport=[7], ext={"iface-id": "vp1", "attached-mac": "02:AA:00:00:00:01"},
                mac_in_use=["fe:16:3e:00:00:01"], type_="internal")
    [p] = snap(root(bridges=[bridge(ports=[port("tap1", tap)])])).ports
    assert (p.name, p.ofport, p.mac, p.type) == ("tap1", 7, "02:aa:00:00:00:01", "internal")
    assert p.external_ids == (("attached-mac", "02:AA:00:00:00:01"), ("iface-id", "vp1"))
    assert p.ext("iface-id") == "vp1"


def test_mac_falls_back_to_mac_in_use_and_ofport_minus_one_or_empty_is_none():
    ports = [port("a", iface("a", ofport=[-1], mac_in_use=["0A:00:00:00:00:0B"])), port("b", iface("b"))]
    a, b = snap(root(bridges=[bridge(ports=ports)])).ports
    assert (a.ofport, a.mac) == (None, "0a:00:00:00:00:0b")
    assert (b.ofport, b.mac) == (None, None)


def test_bad_or_missing_datapath_id_is_none():
    assert snap(root(bridges=[bridge(datapath_id=())])).datapath_id is None
    assert snap(root(bridges=[bridge(datapath_id=["zz"])])).datapath_id is None


def test_columns_missing_from_an_old_schema_read_as_absent():
    old = SimpleNamespace(name="vm1", external_ids={})  # no ofport, mac_in_use, type
    s = snap(root(bridges=[bridge(ports=[port("vm1", old)])]))
    assert (s.ports[0].ofport, s.ports[0].mac, s.ports[0].type) == (None, None, "")


def test_equal_states_give_equal_snapshots():
    def state(order):
        ports = [port(n, iface(n, [i], {"iface-id": n, "a": "1"})) for i, n in order]
        return snap(root({"system-id": "hv1"}, bridges=[bridge(ports=ports)]))

    assert state([(1, "x"), (2, "y")]) == state([(2, "y"), (1, "x")])


def test_reporter_reports_changes_only_and_gone_once():
    sink = Reports()
    reporter = VrsReporter(sink, SESSION, PEER)
    rows = [root({"system-id": "hv1"})]
    assert reporter.refresh(rows) and not reporter.refresh(rows)
    assert sink.calls[0][1].session == "vrs:hv1"  # the switch key: by chassis, not by connection
    assert reporter.refresh([root({"system-id": "hv2"})])  # another chassis: the first one is gone at once
    reporter.gone()
    reporter.gone()
    assert not reporter.refresh(rows)
    assert [c[0] for c in sink.calls] == ["update", "gone", "update", "gone"]
    assert sink.calls[1] == ("gone", "vrs:hv1") and sink.calls[-1] == ("gone", "vrs:hv2")


def test_reporter_never_reported_means_no_gone():
    sink = Reports()
    VrsReporter(sink, SESSION, PEER).gone()
    assert sink.calls == []


def test_reporter_warns_once_per_bad_value(caplog):
    reporter = VrsReporter(Reports(), SESSION, PEER)
    reporter.refresh([root({"canopy-vtep-ip": "bogus"})])
    reporter.refresh([root({"canopy-vtep-ip": "bogus", "hostname": "h"})])
    reporter.refresh([root({"canopy-vtep-ip": "bogus2"})])
    warnings = [r.getMessage() for r in caplog.records if "canopy-vtep-ip" in r.getMessage()]
    assert len(warnings) == 2 and PEER in warnings[0]
