"""Hardware VTEPs in the derived view: bound subnets, learned MACs as endpoints, and the rows Canopy
wants on each VTEP (the OVSDB side that writes them is tested in tests/unit/test_vtep.py)."""

from controller.derive import derive, vtep_desired
from controller.discovery import VtepMac
from controller.programmer import Programmer
from openflow.compiler import compile_switch
from tests.unit.helpers import TOR_IP, state_from, tor_snapshot, vrs_snapshot

DOC = """
tenants:
  - name: acme
    domains:
      - name: prod
        subnets:
          - name: web
            cidr: 10.0.1.0/24
            gateway: 10.0.1.1
            vni: 5001
            vports:
              - {name: vm1, mac: "02:00:00:00:01:01", ips: [10.0.1.11], binding: {flavour: kvm}}
              - {name: vm2, mac: "02:00:00:00:01:02", ips: [10.0.1.12], binding: {flavour: kvm}}
          - {name: db, cidr: 10.0.2.0/24, gateway: 10.0.2.1, vni: 5002}
vtep_bindings:
  - {switch: tor1, port: p1, vlan: 100, subnet: acme/web}
"""


def setup():
    state = state_from(DOC)
    for session, vtep_ip, vm in (("hv1", "10.251.0.1", "vm1"), ("hv2", "10.251.0.2", "vm2")):
        state.vrs_update(vrs_snapshot(session, vtep_ip, [vm]))
    state.vtep_update(tor_snapshot((VtepMac("02:00:00:00:0b:01", 5001, None, TOR_IP),
                                    VtepMac("02:00:00:00:0b:02", 5002, None, TOR_IP),
                                    VtepMac("02:00:00:00:01:01", 5001, None, TOR_IP))))
    return state


def test_vtep_learned_macs_of_bound_subnets_become_endpoints():
    state = setup()
    view = derive(state.policy, state.locations, state.vrs, state.vtep_ip_of, state.vteps)
    learned = [e for e in view.endpoints.values() if e.kind == "vtep_mac"]
    assert [(e.mac, e.session) for e in learned] == [("02:00:00:00:0b:01", "v1")]  # db is not bound; vm1 is a vport
    assert view.vteps_of(view.subnets[learned[0].subnet_id].id, "hv1") == ["10.251.0.2", "10.251.0.9"]


def test_vrs_send_to_the_vtep_and_flood_to_it():
    state = setup()
    prog = Programmer(state)
    prog.refresh()
    flows = [str(f) for f in prog.desired["hv1"].all_flows()]
    assert any("dl_dst=02:00:00:00:0b:01" in f and "10.251.0.9->tun_dst" in f for f in flows)
    group = prog.desired["hv1"].all_groups()[5001 << 1]
    assert any(("set", "tun_ipv4_dst", "10.251.0.9") in bucket for bucket in group.buckets)
    view = prog.view
    assert compile_switch(view, "hv1").all_flows() == prog.desired["hv1"].all_flows()


def test_desired_rows_for_the_vtep():
    state = setup()
    view = derive(state.policy, state.locations, state.vrs, state.vtep_ip_of, state.vteps)
    desired = vtep_desired(view, state.policy, "tor1")
    assert desired.logical_switches == (5001,)
    assert desired.bindings == (("p1", 100, 5001),)
    gateway = view.tunnel_ip_of(view.bm_gateways[state.policy.find("subnet", "acme/web")["id"]])  # docs/vtep.md
    gw_mac = state.policy.find("domain", "acme/prod")["gateway_mac"]
    assert desired.remote_macs == tuple(sorted(((5001, "02:00:00:00:01:01", "10.0.1.11", "10.251.0.1"),
                                                (5001, "02:00:00:00:01:02", "10.0.1.12", "10.251.0.2"),
                                                (5001, gw_mac, "10.0.1.1", gateway))))
    assert desired.flood == ((5001, ("10.251.0.1", "10.251.0.2")),)
    assert vtep_desired(view, state.policy, "tor9").logical_switches == ()


def test_a_vtep_that_leaves_is_dropped_from_flooding():
    state = setup()
    prog = Programmer(state)
    prog.refresh()
    state.vtep_gone("v1")
    prog.refresh()
    group = prog.desired["hv1"].all_groups()[5001 << 1]
    assert not any(("set", "tun_ipv4_dst", "10.251.0.9") in bucket for bucket in group.buckets)
    assert not any("02:00:00:00:0b:01" in str(f) for f in prog.desired["hv1"].all_flows())


def test_a_snapshot_keeps_its_local_macs_sorted_whatever_order_they_are_given_in():
    """``macs_of`` bisects ``local_macs`` by VNI: a snapshot built with them out of order (here, or by any other
    builder than ovsdb/vtep.py) must not lose MACs of a VNI, and equal MACs make equal snapshots."""
    import dataclasses

    web_a, web_b = (VtepMac("02:00:00:00:0b:0%d" % n, 5001, None, TOR_IP) for n in (1, 2))
    db = VtepMac("02:00:00:00:0b:03", 5002, None, TOR_IP)
    given = (web_b, db, web_a)
    snap = tor_snapshot(given)
    assert snap.macs_of(5001) == (web_a, web_b) and snap.macs_of(5002) == (db,) and snap.macs_of(5003) == ()
    assert snap == tor_snapshot(given[::-1]) and snap.local_macs == (web_a, web_b, db)
    assert dataclasses.replace(snap, local_macs=[db, web_b, web_a]).macs_of(5001) == (web_a, web_b)
