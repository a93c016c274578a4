"""Bare metal behind a hardware VTEP as a first-class endpoint: the subnet's gateway VRS (how it is chosen and
replaced), the rows the VTEP gets for the gateway, what packets from the tunnel meet on the gateway VRS and
elsewhere (traced through the compiled flows by tests.unit.helpers.trace), routing back to bare metal, DHCP
for declared bare-metal vports, and incremental recompilation agreeing with a full recompute."""

import random

import pytest

from controller.derive import derive, vtep_desired
from controller.discovery import VtepMac
from controller.model import PolicyError, normalise
from controller.programmer import Programmer
from openflow import dhcp
from openflow.compiler import compile_switch
from openflow.dhcp_service import DhcpService
from tests.unit.helpers import TOR_IP, TUNNEL_PORT, VM_PORT, state_from, tor_snapshot, trace, vrs_snapshot
from tests.unit.test_dhcp import dhcp_payload, frame

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
              - {name: bm1, mac: "02:00:00:00:0b:01", ips: [10.0.1.50], binding: {flavour: baremetal}}
          - name: db
            cidr: 10.0.2.0/24
            gateway: 10.0.2.1
            vni: 5002
            vports:
              - {name: db1, mac: "02:00:00:00:02:01", ips: [10.0.2.11], binding: {flavour: kvm}}
vtep_bindings:
  - {switch: tor1, port: p1, vlan: 100, subnet: acme/web}
"""
HOSTS = {"hv1": ("10.251.0.1", "vm1"), "hv2": ("10.251.0.2", "vm2"), "hv3": ("10.251.0.3", "db1")}
TUNNEL = TUNNEL_PORT
BM_MAC, BM_IP = "02:00:00:00:0b:01", "10.0.1.50"


def vrs(session, vms=None):
    vtep_ip, vm = HOSTS[session]
    return vrs_snapshot(session, vtep_ip, [vm] if vms is None else vms)


tor = tor_snapshot


def setup(gateway_chassis=None, doc=DOC):
    state = state_from(doc)
    if gateway_chassis is not None:
        prefer(state, gateway_chassis)
    for session in HOSTS:
        state.vrs_update(vrs(session))
    state.vtep_update(tor())
    prog = Programmer(state)
    prog.refresh()
    return state, prog


def prefer(state, chassis):
    policy = state.policy.copy()
    web = dict(policy.find("subnet", "acme/web"), gateway_chassis=list(chassis))
    policy.put("subnet", web)
    state.policy_committed(policy, [])


def web(state):
    return state.policy.find("subnet", "acme/web")


def dom(state):
    return state.policy.find("domain", "acme/prod")


def gateway(prog, state):
    return prog.view.bm_gateways.get(web(state)["id"])


def from_tor(prog, session, **packet):
    """What leaves ``session`` when tor1 sends it this frame over the tunnel with the web subnet's VNI."""
    base = {"in_port": TUNNEL, "tunnel_id": 5001, "tun_ipv4_src": TOR_IP, "eth_src": BM_MAC, "eth_type": 0x0800,
            "ipv4_src": BM_IP}
    return trace(prog.desired[session], {**base, **packet})


def arp_for(prog, session, ip):
    return from_tor(prog, session, eth_dst="ff:ff:ff:ff:ff:ff", eth_type=0x0806, arp_op=1, arp_spa=BM_IP,
                    arp_sha=BM_MAC, arp_tpa=ip, ipv4_src=None)


def assert_matches_full(prog):
    """Per owner, with every flow's cookie (``Flow`` equality ignores the owner: a vport's flows also filed under the
    owner of the kind it was before turning bare metal or back, under that owner's cookie, compared equal)."""
    from tests.unit.oracle_checks import by_owner

    view = prog.derive()
    for session in view.switches:
        full = compile_switch(view, session)
        assert by_owner(prog.desired[session]) == by_owner(full), session


# ------------------------------------------------------------------------------ choosing the gateway

def test_the_gateway_is_a_vrs_holding_the_subnet_and_the_same_on_every_derive():
    state, prog = setup()
    assert gateway(prog, state) in ("hv1", "hv2")  # both hold web; hv3 only serves the domain
    again = derive(state.policy, state.locations, state.vrs, state.vtep_ip_of, state.vteps)
    assert again.bm_gateways == prog.view.bm_gateways
    assert state.policy.find("subnet", "acme/db")["id"] not in prog.view.bm_gateways  # no VTEP binding


def test_policy_names_the_gateway_and_another_vrs_takes_over_when_it_goes():
    state, prog = setup(gateway_chassis=["hv3", "hv2"])
    assert gateway(prog, state) == "hv3"  # named first, though it has no port in web
    assert web(state)["id"] in prog.view.subnets_on("hv3")
    state.vrs_gone("hv3")
    prog.refresh()
    assert gateway(prog, state) == "hv2"
    state.vrs_gone("hv2")
    prog.refresh()
    assert gateway(prog, state) == "hv1"  # none named is left: Canopy's own choice
    state.vrs_update(vrs("hv3"))
    prog.refresh()
    assert gateway(prog, state) == "hv3"


def test_with_no_vrs_there_is_no_gateway_and_nothing_breaks():
    state, prog = setup()
    for session in HOSTS:
        state.vrs_gone(session)
    prog.refresh()
    assert prog.view.bm_gateways == {}
    assert (5001, dom(state)["gateway_mac"]) not in {r[:2] for r in vtep_desired(prog.view, state.policy,
                                                                                "tor1").remote_macs}


def test_the_vteps_gateway_mac_row_and_flood_list_point_at_the_gateway():
    state, prog = setup(gateway_chassis=["hv3"])
    desired = vtep_desired(prog.view, state.policy, "tor1")
    assert (5001, dom(state)["gateway_mac"], "10.0.1.1", "10.251.0.3") in desired.remote_macs
    assert desired.flood == ((5001, ("10.251.0.1", "10.251.0.2", "10.251.0.3")),)
    state.vrs_gone("hv3")
    prog.refresh()
    rows = {r[1]: r[3] for r in vtep_desired(prog.view, state.policy, "tor1").remote_macs}
    assert gateway(prog, state) in ("hv1", "hv2")
    assert rows[dom(state)["gateway_mac"]] == HOSTS[gateway(prog, state)][0]


# ------------------------------------------------------------------------------ from the bare metal

def test_the_gateway_answers_arp_and_ping_for_the_gateway_back_into_the_tunnel():
    state, prog = setup(gateway_chassis=["hv1"])
    gw_mac = dom(state)["gateway_mac"]
    [(port, reply)] = arp_for(prog, "hv1", "10.0.1.1")
    assert (port, reply["tun_ipv4_dst"], reply["tunnel_id"]) == (TUNNEL, TOR_IP, 5001)
    assert (reply["arp_op"], reply["arp_sha"], reply["arp_spa"], reply["arp_tha"], reply["eth_dst"]) == \
        (2, gw_mac, "10.0.1.1", BM_MAC, BM_MAC)
    [(port, echo)] = from_tor(prog, "hv1", eth_dst=gw_mac, ipv4_dst="10.0.1.1", ip_proto=1, icmpv4_type=8)
    assert (port, echo["tun_ipv4_dst"], echo["icmpv4_type"], echo["ipv4_dst"], echo["eth_dst"]) == \
        (TUNNEL, TOR_IP, 0, BM_IP, BM_MAC)


def test_other_vrs_leave_arp_for_the_gateway_to_the_gateway_and_still_answer_their_vms():
    state, prog = setup(gateway_chassis=["hv1"])
    out = arp_for(prog, "hv2", "10.0.1.1")
    assert all(port == VM_PORT for port, _ in out)  # flooded to its local VM (split horizon), not answered
    reply = trace(prog.desired["hv2"], {"in_port": VM_PORT, "eth_src": "02:00:00:00:01:02", "eth_type": 0x0806,
                                        "eth_dst": "ff:ff:ff:ff:ff:ff", "arp_op": 1, "arp_spa": "10.0.1.12",
                                        "arp_sha": "02:00:00:00:01:02", "arp_tpa": "10.0.1.1"})
    assert [(port, pkt["arp_op"]) for port, pkt in reply] == [(VM_PORT, 2)]


def test_arp_from_the_tunnel_for_a_vm_reaches_the_vm_on_the_gateway():
    state, prog = setup(gateway_chassis=["hv1"])
    out = arp_for(prog, "hv1", "10.0.1.11")
    assert [(port, pkt["arp_op"]) for port, pkt in out] == [(VM_PORT, 1)]  # the VM answers it itself


def test_dhcp_from_the_tunnel_is_punted_only_on_the_gateway():
    state, prog = setup(gateway_chassis=["hv1"])
    discover = dict(eth_dst="ff:ff:ff:ff:ff:ff", ipv4_src="0.0.0.0", ipv4_dst="255.255.255.255", ip_proto=17,
                    udp_src=68, udp_dst=67)
    assert [port for port, _ in from_tor(prog, "hv1", **discover)] == ["controller"]
    assert "controller" not in [port for port, _ in from_tor(prog, "hv2", **discover)]


def test_bare_metal_is_routed_to_a_vm_in_another_subnet_like_a_vm():
    state, prog = setup(gateway_chassis=["hv1"])
    gw_mac, l3 = dom(state)["gateway_mac"], dom(state)["l3_vni"]
    [(port, pkt)] = from_tor(prog, "hv1", eth_dst=gw_mac, ipv4_dst="10.0.2.11", ttl=64)
    assert (port, pkt["tun_ipv4_dst"], pkt["tunnel_id"], pkt["eth_dst"], pkt["ttl"]) == \
        (TUNNEL, "10.251.0.3", l3, "02:cb:0a:fb:00:03", 63)  # symmetric IRB to hv3's router MAC
    # on hv3 it arrives over the L3 VNI and is delivered to db1
    [(port, pkt)] = trace(prog.desired["hv3"], {**pkt, "in_port": TUNNEL, "reg0": 0})
    assert (port, pkt["eth_dst"], pkt["eth_src"]) == (VM_PORT, "02:00:00:00:02:01", gw_mac)


def test_a_vrs_that_is_not_the_gateway_routes_what_reaches_it_too():
    state, prog = setup(gateway_chassis=["hv1"])
    [(port, pkt)] = from_tor(prog, "hv2", eth_dst=dom(state)["gateway_mac"], ipv4_dst="10.0.2.11", ttl=64)
    assert (port, pkt["tun_ipv4_dst"]) == (TUNNEL, "10.251.0.3")  # e.g. while the VTEP's row still names it


def test_traffic_to_bare_metal_is_routed_through_the_gateway_to_the_vtep():
    state, prog = setup(gateway_chassis=["hv1"])
    gw_mac, l3 = dom(state)["gateway_mac"], dom(state)["l3_vni"]
    db1 = {"in_port": VM_PORT, "eth_src": "02:00:00:00:02:01", "eth_dst": gw_mac, "eth_type": 0x0800,
           "ipv4_src": "10.0.2.11", "ipv4_dst": BM_IP, "ttl": 64}
    [(port, pkt)] = trace(prog.desired["hv3"], db1)
    assert (port, pkt["tun_ipv4_dst"], pkt["tunnel_id"], pkt["eth_dst"]) == \
        (TUNNEL, "10.251.0.1", l3, "02:cb:0a:fb:00:01")  # to the gateway VRS's router MAC
    [(port, pkt)] = trace(prog.desired["hv1"], {**pkt, "in_port": TUNNEL, "reg0": 0})
    assert (port, pkt["tun_ipv4_dst"], pkt["tunnel_id"], pkt["eth_src"], pkt["eth_dst"], pkt["ttl"]) == \
        (TUNNEL, TOR_IP, 5001, gw_mac, BM_MAC, 62)
    # a VM of web on the gateway itself: L2 straight to the VTEP
    vm1 = {"in_port": VM_PORT, "eth_src": "02:00:00:00:01:01", "eth_dst": BM_MAC, "eth_type": 0x0800,
           "ipv4_src": "10.0.1.11", "ipv4_dst": BM_IP}
    assert [(p, o["tun_ipv4_dst"]) for p, o in trace(prog.desired["hv1"], vm1)] == [(TUNNEL, TOR_IP)]


def test_an_address_the_vtep_reports_is_routed_too():
    learned = VtepMac("02:00:00:00:0b:07", 5001, "10.0.1.77", TOR_IP)
    state, prog = setup(gateway_chassis=["hv1"])
    state.vtep_update(tor([learned, VtepMac("02:00:00:00:0b:08", 5001, "fe80::1", TOR_IP)]))
    prog.refresh()
    db1 = {"in_port": VM_PORT, "eth_src": "02:00:00:00:02:01", "eth_dst": dom(state)["gateway_mac"],
           "eth_type": 0x0800, "ipv4_src": "10.0.2.11", "ipv4_dst": "10.0.1.77", "ttl": 64}
    [(port, pkt)] = trace(prog.desired["hv3"], db1)
    [(port, pkt)] = trace(prog.desired["hv1"], {**pkt, "in_port": TUNNEL, "reg0": 0})
    assert (pkt["tun_ipv4_dst"], pkt["eth_dst"]) == (TOR_IP, "02:00:00:00:0b:07")


def test_a_declared_server_is_located_where_the_vtep_learned_it():
    state, prog = setup()
    bm = state.policy.find("vport", "acme/web/bm1")
    ep = prog.view.endpoints[bm["id"]]  # tor1 is the subnet's only VTEP: there before it is learned
    assert (ep.kind, ep.session, ep.ips) == ("vtep_mac", "v1", (BM_IP,))
    state.vtep_update(tor([VtepMac(BM_MAC, 5001, None, TOR_IP)]))
    prog.refresh()
    assert [e.vport_id for e in prog.view.endpoints.values() if e.mac == BM_MAC] == [bm["id"]]


# ------------------------------------------------------------------------------ DHCP

def dhcp_service(state, prog):
    return DhcpService(state, prog, underlay_mtu=1500)


def punt_cookie(prog, session):
    return next(f.cookie for f in prog.desired[session].all_flows()
                if f.owner.kind == "subnet" and ("output", "controller") in f.actions)


def test_a_declared_bare_metal_server_gets_its_lease_back_through_the_tunnel():
    state, prog = setup(gateway_chassis=["hv2"])
    answer = dhcp_service(state, prog).answer(2, punt_cookie(prog, "hv2"), frame(dhcp_payload(mac=BM_MAC),
                                                                                 src_mac=BM_MAC))
    assert answer is not None
    assert answer.actions == [("set", "tunnel_id", 5001), ("set", "tun_ipv4_dst", TOR_IP), ("output", TUNNEL)]
    offer = dhcp.parse_request(answer.frame)  # a reply is not a client message
    assert offer is None and "10.0.1.50" in answer.summary
    assert answer.frame[6:12] == bytes.fromhex(dom(state)["gateway_mac"].replace(":", ""))


def test_dhcp_from_an_undeclared_mac_behind_the_vtep_is_not_answered():
    state, prog = setup(gateway_chassis=["hv2"])
    service = dhcp_service(state, prog)
    stranger = "02:00:00:00:0b:99"
    assert service.answer(2, punt_cookie(prog, "hv2"), frame(dhcp_payload(mac=stranger), src_mac=stranger)) is None
    vm_mac = "02:00:00:00:01:01"  # a VM's MAC is not a bare-metal server
    assert service.answer(2, punt_cookie(prog, "hv2"), frame(dhcp_payload(mac=vm_mac), src_mac=vm_mac)) is None
    assert service.counters["ignored"] == 2


# ------------------------------------------------------------------------------ policy

def test_a_baremetal_binding_takes_no_hypervisor_fields_and_gateway_chassis_are_names():
    body = {"subnet_id": "s", "name": "bm", "mac": "02:00:00:00:0b:01", "binding": {"flavour": "baremetal"}}
    assert normalise("vport", body)["binding"]["flavour"] == "baremetal"
    with pytest.raises(PolicyError, match="binding.iface_id: does not apply to flavour baremetal"):
        normalise("vport", {**body, "binding": {"flavour": "baremetal", "iface_id": "x"}})
    subnet = {"tenant_id": "t", "name": "web"}
    assert normalise("subnet", subnet)["gateway_chassis"] == []
    with pytest.raises(PolicyError, match=r"gateway_chassis\[0\]"):
        normalise("subnet", {**subnet, "gateway_chassis": ["bad name!"]})


# ------------------------------------------------------------------------------ incremental

def test_gateway_changes_recompile_incrementally_like_a_full_recompute():
    rng = random.Random(11)
    state, prog = setup()
    full_before = prog.full_recomputes
    vms = {"hv1": ["vm1"], "hv2": ["vm2"], "hv3": ["db1"]}
    seen = set()
    for _ in range(80):
        action = rng.choice(["prefer", "move", "learn", "declare"])
        if action == "prefer":
            prefer(state, rng.sample(list(HOSTS), rng.randrange(3)))
        elif action == "move":  # VMs come and go: the holders of web change
            vm = rng.choice(["vm1", "vm2", "db1"])
            for placed in vms.values():
                if vm in placed:
                    placed.remove(vm)
            if rng.random() < 0.7:
                vms[rng.choice(list(HOSTS))].append(vm)
            for session in HOSTS:
                state.vrs_update(vrs(session, vms[session]))
        elif action == "learn":
            macs = [VtepMac(BM_MAC, 5001, None, TOR_IP)] if rng.random() < 0.5 else []
            if rng.random() < 0.5:
                macs.append(VtepMac("02:00:00:00:0b:07", 5001, "10.0.1.77", TOR_IP))
            state.vtep_update(tor(macs))
        else:
            policy = state.policy.copy()
            bm = dict(policy.find("vport", "acme/web/bm1"))
            bm["ips"] = [rng.choice(["10.0.1.50", "10.0.1.51"])]
            policy.put("vport", bm)
            state.policy_committed(policy, [])
        prog.refresh()
        assert_matches_full(prog)
        seen.add(gateway(prog, state))
    assert prog.full_recomputes == full_before and prog.incremental_updates > 70
    assert seen == set(HOSTS)  # the gateway moved between every VRS on the way


def test_rest_shows_the_gateway_of_each_bound_subnet_and_routes_to_bare_metal():
    from controller.rest import dataplane, vteps

    state, prog = setup(gateway_chassis=["hv3"])
    one = next(r for r in vteps.routes(state, prog) if r.pattern.endswith("{name}"))
    assert one.handler(None, "tor1").body["gateways"] == [
        {"vni": 5001, "subnet": "acme/web", "chassis": "hv3", "vtep_ip": "10.251.0.3"}]
    fib = next(r for r in dataplane.routes(state, prog, dict) if r.pattern.endswith("/fib"))
    routes = {r["prefix"]: r for r in fib.handler(None, dom(state)["id"]).body["routes"]}
    assert (routes[f"{BM_IP}/32"]["vport"]["ref"], routes[f"{BM_IP}/32"]["vtep_ip"]) == ("acme/web/bm1", TOR_IP)


L2_DOC = """
tenants:
  - name: acme
    subnets:
      - name: lan
        cidr: 10.9.0.0/24
        vni: 5001
        vports:
          - {name: vm1, mac: "02:00:00:00:01:01", ips: [10.9.0.11], binding: {flavour: kvm}}
          - {name: bm1, mac: "02:00:00:00:0b:01", ips: [10.9.0.50], binding: {flavour: baremetal}}
      - {name: quiet, cidr: 10.8.0.0/24, vni: 5003, dhcp: {enabled: false}}
vtep_bindings:
  - {switch: tor1, port: p1, vlan: 100, subnet: acme/lan}
  - {switch: tor1, port: p1, vlan: 200, subnet: acme/quiet}
"""


def test_an_l2_only_subnet_gets_dhcp_for_its_bare_metal_but_no_routing():
    state, prog = setup(doc=L2_DOC)
    lan, quiet = state.policy.find("subnet", "acme/lan"), state.policy.find("subnet", "acme/quiet")
    assert set(prog.view.bm_gateways) == {lan["id"]}  # no DHCP and no routing in quiet: nothing to do
    session = prog.view.bm_gateways[lan["id"]]
    server = "10.9.0.254"  # the last host address: L2-only subnets' DHCP server
    assert (5001, "02:ca:fe:00:00:01", server, HOSTS[session][0]) in \
        vtep_desired(prog.view, state.policy, "tor1").remote_macs
    [(port, reply)] = arp_for(prog, session, server)
    assert (port, reply["tun_ipv4_dst"], reply["arp_sha"]) == (TUNNEL, TOR_IP, "02:ca:fe:00:00:01")
    answer = dhcp_service(state, prog).answer(int(HOSTS[session][0][-1]), punt_cookie(prog, session),
                                              frame(dhcp_payload(mac=BM_MAC), src_mac=BM_MAC))
    assert answer is not None and "10.9.0.50" in answer.summary
    assert not any(f.priority == 101 for f in prog.desired[session].all_flows())  # nothing is routed


POLICED = DOC.replace("""    domains:""", """    policy_groups: [{name: web}]
    acls: [{name: web-in, policy_groups: [web], rules: [{direction: ingress, action: allow, protocol: tcp, ports: "80",
             remote_group: web}]}]
    domains:""", 1).replace("ips: [10.0.1.12], binding: {flavour: kvm}}", "ips: [10.0.1.12], binding: {flavour: kvm}, "
                            "policy_groups: [web]}")


@pytest.mark.parametrize("doc", [DOC, POLICED], ids=["open", "policed"])
def test_a_vport_turning_bare_metal_and_back_recompiles_like_a_full_recompute(doc):
    """Its endpoint keeps its id (the vport's) and changes kind: a server behind the VTEP, then a VM on hv2 again.
    Back on hv2, the View put the VM in before taking the server out, and recorded the change as none (nothing there
    before, nothing after): hv1 and hv3 kept sending vm2's frames and packets to the VTEP. ``View.local`` (what
    Canopy announces) follows the kind both ways. Compared per owner: the owner of the kind it was kept flows (the
    new endpoint's, under the old owner's cookie: openflow/owners.py ``present``), and a policed VM's port ACL stayed
    on hv2 after it turned bare metal (controller/viewowners.py ``_policed``)."""
    state, prog = setup(doc=doc)
    vid = state.policy.find("vport", "acme/web/vm2")["id"]
    for flavour, kind in (("baremetal", "vtep_mac"), ("kvm", "vport"), ("baremetal", "vtep_mac"), ("kvm", "vport")):
        policy = state.policy.copy()
        vm2 = dict(policy.find("vport", "acme/web/vm2"))
        policy.put("vport", dict(vm2, binding=dict(vm2["binding"], flavour=flavour)))
        state.policy_committed(policy, [])
        prog.refresh()
        full = prog.derive()
        assert prog.view.local[vid].kind == kind and prog.view.local == full.local, flavour
        assert_matches_full(prog)
    assert prog.full_recomputes == 1  # the set-up's



@pytest.mark.parametrize("back", [True, False])
def test_a_vport_turning_bare_metal_or_back_with_another_bound_or_gone_in_one_pass_equals_one_at_a_time(back):
    """One pass in which vm2 turns back from bare metal (its server endpoint still in the View, under its id) while
    vm3 is bound on hv1 (``back``), or turns bare metal while vm1's port goes: the View delta walks them in one run
    (controller/viewbatch.py). A run whose endpoints all come is swapped in together only when none of them is in
    the View under another kind (without that guard vm2's server endpoint was overwritten uncounted: its MACs,
    IPs and places kept); the LiveView equals one built from scratch, its indexes included (vm2's /32 kept: its
    server endpoint's going, after its vport endpoint came, took the new /32 out of the FIB), and the pass's notes
    match the View before and after it (tests/unit/test_view_batch.py)."""
    from controller.pacer import Pacer
    from controller.viewdelta import LiveView
    from tests.unit.oracle_checks import check_indexes
    from tests.unit.test_view_batch import before_pass, check_notes, view_from_scratch, view_of

    doc = DOC.replace("""              - {name: bm1,""", """              - {name: vm3, mac: "02:00:00:00:01:03", ips: [10.0.1.13], binding: {flavour: kvm}}
              - {name: bm1,""")
    state, _ = setup(doc=doc)
    vm2 = state.policy.find("vport", "acme/web/vm2")
    journal = state.journal()
    live = LiveView(state, Pacer())
    live.build()

    def flavour(value):
        policy = state.policy.copy()
        policy.put("vport", dict(vm2, binding=dict(vm2["binding"], flavour=value)))
        state.policy_committed(policy, [])

    def one_pass():
        before = before_pass(live)
        live.apply(journal.take())
        check_notes(live, before, "one pass")
        assert view_of(live) == view_from_scratch(state)
        check_indexes(state, live, "one pass")

    if back:
        flavour("baremetal")
        one_pass()
        assert live.view.endpoints[vm2["id"]].kind != "vport"
        flavour("kvm")
        state.vrs_update(vrs("hv1", ["vm1", "vm3"]))
    else:
        flavour("baremetal")
        state.vrs_update(vrs("hv1", []))
    one_pass()
    assert (live.view.endpoints[vm2["id"]].kind == "vport") == back


def test_a_vport_turning_back_from_bare_metal_is_routed_to_and_announced_through_its_static_route():
    """A static route whose next hop is vm2's IP, while vm2 turns bare metal and back: back on hv2, the static route
    resolves to it again, so a packet of db1 (another subnet) to the route's prefix reaches vm2 on hv2, and the route
    is announced (EVPN type 5) at hv2's VTEP. The incremental View lost vm2's host route there (its server endpoint's
    going took the new vport endpoint's /32 out, both keyed by vm2's id): the static route resolved to nothing, its
    flows and its type-5 route went, while a full recompute kept them; and a peer's type-5 /32 for vm2's IP was no
    longer filtered out (the View's host routes are what it is filtered by): its flow and vm2's own host route matched
    alike at one priority."""
    from bgp.evpn import originate
    from controller.remote import RemotePrefix, RemoteTable

    doc = DOC.replace("      - name: prod\n", "      - name: prod\n"
                      "        static_routes: [{prefix: 192.168.50.0/24, next_hop: 10.0.1.12}]\n")
    state, prog = setup(doc=doc)
    # a peer's type-5 /32 for vm2's IP: a local host's own route wins over it (derive keeps one route per prefix)
    state.take_remote(RemoteTable(prefixes=(RemotePrefix(dom(state)["id"], "10.0.1.12/32", "10.99.0.7",
                                                         "02:dd:00:00:00:07", dom(state)["l3_vni"]),)))
    for flavour in ("baremetal", "kvm"):
        policy = state.policy.copy()
        vm2 = dict(policy.find("vport", "acme/web/vm2"))
        policy.put("vport", dict(vm2, binding=dict(vm2["binding"], flavour=flavour)))
        state.policy_committed(policy, [])
        prog.refresh()
    db1 = {"in_port": VM_PORT, "eth_src": "02:00:00:00:02:01", "eth_dst": dom(state)["gateway_mac"], "eth_type": 0x0800,
           "ipv4_src": "10.0.2.11", "ipv4_dst": "192.168.50.7", "ttl": 64}
    [(port, pkt)] = trace(prog.desired["hv3"], {**db1, "ipv4_dst": "10.0.1.12"})  # to vm2 itself: hv2, not the peer
    assert (port, pkt["tun_ipv4_dst"]) == (TUNNEL, "10.251.0.2")
    [(port, pkt)] = trace(prog.desired["hv3"], db1)
    assert (port, pkt["tun_ipv4_dst"]) == (TUNNEL, "10.251.0.2")
    [(port, pkt)] = trace(prog.desired["hv2"], {**pkt, "in_port": TUNNEL, "reg0": 0})
    assert (port, pkt["eth_dst"]) == (VM_PORT, "02:00:00:00:01:02")
    prefixes = {(r.prefix, r.next_hop) for r in originate(prog.view, state.policy).values()
                if getattr(r, "prefix", None)}
    assert ("192.168.50.0/24", "10.251.0.2") in prefixes
    [route] = prog.view.static[dom(state)["id"]]
    assert route.vport_id == state.policy.find("vport", "acme/web/vm2")["id"]
    assert_matches_full(prog)
