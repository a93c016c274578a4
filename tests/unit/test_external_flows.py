"""Floating IPs through the compiled pipeline (the product's tracer): the ARP answer and both translations on
the VRS hosting the VM, VLAN tags on the uplink, nothing elsewhere; and incremental recompilation agreeing with
a full recompute while floating IPs move, VMs migrate and uplinks come and go."""

import random

from controller.discovery import PortInfo, VrsSnapshot
from controller.programmer import Programmer
from controller import extnet
from openflow import external
from openflow.flows import OFPVID_PRESENT

from .helpers import trace
from .test_compiler import add_vport, assert_matches_full, base_state

NET = {"id": "n1", "source": None, "name": "public", "description": "", "cidr": "203.0.113.0/24",
       "gateway": "203.0.113.1", "gateway_mac": "02:00:00:ee:00:01",
       "uplinks": [{"chassis": "hv2", "port": "eth9", "vlan": 30, "ip": "203.0.113.2"}]}
UPLINK = 50


def snapshot(session, vtep, vms, uplink=True):
    ports = [PortInfo(name=f"p-{name}", ofport=ofport, external_ids=(("iface-id", name),)) for name, ofport in vms]
    ports.append(PortInfo(name="vxlan0", ofport=99, type="vxlan"))
    if uplink:  # hv1 names its uplink in OVSDB; hv2's comes from policy (port eth9, VLAN 30)
        ports.append(PortInfo("up0", UPLINK, external_ids=(("canopy-external-network", "public"),)) if
                     session == "hv1" else PortInfo("eth9", UPLINK))
    return VrsSnapshot(session, "peer", session, vtep_ip=vtep, datapath_id=int(vtep.split(".")[-1]),
                       bridge_present=True, ports=tuple(ports))


def with_fips(state, attach):
    policy = state.policy.copy()
    policy.put("external_network", NET)
    tenant = policy.find("tenant", "acme")
    for i, vm in enumerate(attach):
        policy.put("floating_ip", {"id": f"f{i}", "source": None, "tenant_id": tenant["id"], "name": f"f{i}",
                                   "description": "", "external_network_id": "n1", "address": f"203.0.113.{10 + i}",
                                   "vport_id": vm})
    state.policy_committed(policy, [])


def setup(place):
    state = base_state()
    for i in range(3):
        add_vport(state, "acme/web", f"vm{i}", f"02:00:00:00:00:0{i + 1}", f"10.0.1.{10 + i}")
    with_fips(state, ["vm0", "vm1"])
    for host, vtep in (("hv1", "10.251.0.1"), ("hv2", "10.251.0.2")):
        state.vrs_update(snapshot(host, vtep, [(vm, 10 + int(vm[2:])) for vm, h in place.items() if h == host]))
    prog = Programmer(state)
    prog.refresh()
    return state, prog


def test_inbound_is_answered_and_translated_only_where_the_vm_is():
    state, prog = setup({"vm0": "hv1", "vm1": "hv2", "vm2": "hv2"})
    hv1, hv2 = prog.desired["hv1"], prog.desired["hv2"]
    arp = {"in_port": UPLINK, "eth_src": "02:00:00:ee:00:01", "eth_dst": "ff:ff:ff:ff:ff:ff", "eth_type": 0x0806,
           "arp_op": 1, "arp_spa": "203.0.113.1", "arp_tpa": "203.0.113.10", "arp_sha": "02:00:00:ee:00:01"}
    [(port, reply)] = trace(hv1, arp)
    assert port == UPLINK and reply["arp_op"] == 2 and reply["arp_sha"] == extnet.floating_mac("203.0.113.10")
    assert trace(hv2, arp) == []  # hv2 does not host vm0: it stays silent
    ping = {"in_port": UPLINK, "eth_src": "02:00:00:ee:00:01", "eth_dst": extnet.floating_mac("203.0.113.10"),
            "eth_type": 0x0800, "ip_proto": 1, "icmpv4_type": 8, "ipv4_src": "198.51.100.7",
            "ipv4_dst": "203.0.113.10"}
    [(port, inside)] = trace(hv1, ping)
    assert port == 10 and inside["ipv4_dst"] == "10.0.1.10" and inside["eth_dst"] == "02:00:00:00:00:01"
    assert trace(hv2, ping) == []
    tagged = dict(ping, vlan_vid=30 | OFPVID_PRESENT, ipv4_dst="203.0.113.11",
                  eth_dst=extnet.floating_mac("203.0.113.11"))
    [(port, inside)] = trace(hv2, tagged)
    assert port == 11 and inside["ipv4_dst"] == "10.0.1.11"


def test_outbound_leaves_with_the_floating_ip_and_the_own_domain_stays_inside():
    state, prog = setup({"vm0": "hv1", "vm1": "hv2", "vm2": "hv2"})
    dom = state.policy.find("domain", "acme/prod")
    out = {"in_port": 10, "eth_src": "02:00:00:00:00:01", "eth_dst": dom["gateway_mac"], "eth_type": 0x0800,
           "ip_proto": 6, "tcp_src": 40000, "tcp_dst": 80, "ipv4_src": "10.0.1.10", "ipv4_dst": "198.51.100.7"}
    [(port, sent)] = trace(prog.desired["hv1"], out)
    assert port == UPLINK and sent["ipv4_src"] == "203.0.113.10" and sent["eth_dst"] == "02:00:00:ee:00:01"
    [(port, sent)] = trace(prog.desired["hv2"], dict(out, in_port=11, eth_src="02:00:00:00:00:02",
                                                     ipv4_src="10.0.1.11"))
    assert port == UPLINK and sent["vlan_vid"] == 30 | OFPVID_PRESENT and sent["ipv4_src"] == "203.0.113.11"
    assert trace(prog.desired["hv1"], dict(out, ipv4_dst="10.0.2.99")) == []  # an own subnet: never out
    assert trace(prog.desired["hv2"], dict(out, in_port=12, eth_src="02:00:00:00:00:03", ipv4_src="10.0.1.12")) \
        == []  # vm2 has no floating IP (and no translation yet)


def test_incremental_equals_full_while_floating_ips_move_and_vms_migrate():
    rng = random.Random(16)
    state, prog = setup({})
    hosts = {"hv1": "10.251.0.1", "hv2": "10.251.0.2"}
    place, uplinks = {}, {"hv1": True, "hv2": True}
    for _ in range(80):
        action = rng.choice(["place", "place", "remove", "attach", "uplink"])
        if action == "place":
            place[f"vm{rng.randrange(3)}"] = rng.choice(list(hosts))
        elif action == "remove":
            place.pop(f"vm{rng.randrange(3)}", None)
        elif action == "attach":
            with_fips(state, rng.sample(["vm0", "vm1", "vm2", None], 2))
        else:
            host = rng.choice(list(hosts))
            uplinks[host] = not uplinks[host]
        for host, vtep in hosts.items():
            vms = [(vm, 10 + int(vm[2:])) for vm, h in sorted(place.items()) if h == host]
            state.vrs_update(snapshot(host, vtep, vms, uplinks[host]))
        prog.refresh()
        assert_matches_full(prog)
    assert prog.full_recomputes == 1


def test_a_floating_ip_is_announced_once_where_it_becomes_active():
    state, prog = setup({"vm0": "hv1"})
    garp = external.Announcer()
    [info] = garp.due(prog.view)
    garp.sent(info)
    assert garp.due(prog.view) == []
    frame = external.garp_frame(info)
    assert frame[:6] == b"\xff" * 6 and frame[28:32] == frame[38:42] == bytes([203, 0, 113, 10])
    state.vrs_update(snapshot("hv1", "10.251.0.1", []))
    state.vrs_update(snapshot("hv2", "10.251.0.2", [("vm0", 10)]))
    prog.refresh()
    [moved] = garp.due(prog.view)
    assert moved.session == "hv2" and external.garp_actions(moved)[-1] == ("output", UPLINK)


def translated_domain():
    """vm0 on hv1, vm1 and vm2 on hv2, domain acme/prod translated (``underlay_nat``) on external network n1, and
    programmed: (state, programmer, the domain)."""
    state, prog = setup({"vm0": "hv1", "vm1": "hv2", "vm2": "hv2"})
    policy = state.policy.copy()
    dom = dict(policy.find("domain", "acme/prod"), external_network_id="n1", underlay_nat=True)
    policy.put("domain", dom)
    state.policy_committed(policy, [])
    prog.refresh()
    return state, prog, dom


def test_a_translated_domain_leaves_behind_the_hypervisors_address_and_lets_nothing_new_in():
    state, prog, dom = translated_domain()
    assert_matches_full(prog)
    out = {"in_port": 12, "eth_src": "02:00:00:00:00:03", "eth_dst": dom["gateway_mac"], "eth_type": 0x0800,
           "ip_proto": 6, "tcp_src": 40000, "tcp_dst": 80, "ipv4_src": "10.0.1.12", "ipv4_dst": "198.51.100.7"}
    [(port, sent)] = trace(prog.desired["hv2"], out)  # vm2: no floating IP, translated behind 203.0.113.2
    assert port == UPLINK and sent["eth_src"] == extnet.pat_mac("203.0.113.2")
    assert sent["vlan_vid"] == 30 | OFPVID_PRESENT
    [(port, sent)] = trace(prog.desired["hv2"], dict(out, in_port=11, eth_src="02:00:00:00:00:02",
                                                     ipv4_src="10.0.1.11"))
    assert sent["ipv4_src"] == "203.0.113.11"  # vm1 has a floating IP: it leaves with that
    assert trace(prog.desired["hv2"], dict(out, ipv4_dst="10.0.2.9")) == []  # its own domain: never out
    inbound = {"in_port": UPLINK, "vlan_vid": 30 | OFPVID_PRESENT, "eth_src": "02:00:00:ee:00:01",
               "eth_dst": extnet.pat_mac("203.0.113.2"), "eth_type": 0x0800, "ip_proto": 6, "tcp_src": 80,
               "tcp_dst": 40000, "ipv4_src": "198.51.100.7", "ipv4_dst": "203.0.113.2"}
    assert trace(prog.desired["hv2"], inbound) == []  # a new connection from outside: dropped
    assert not any(o.kind == "pat" for o in prog.desired["hv1"].flows)  # hv1 has no address on the network


def test_an_active_floating_ip_is_a_type5_host_route_at_its_vrs_and_routed_to_its_vm():
    from bgp.evpn import originate

    state, prog = setup({"vm0": "hv1", "vm2": "hv2"})  # f1 (vm1) is attached but not bound: not announced
    dom = state.policy.find("domain", "acme/prod")
    routes = {r.prefix: r for r in originate(prog.view, state.policy).values() if r.TYPE == 5}
    assert "203.0.113.11/32" not in routes
    fip = routes["203.0.113.10/32"]
    assert (fip.next_hop, fip.l3_vni, fip.rd) == ("10.251.0.1", dom["l3_vni"], dom["rd"])
    assert fip.router_mac == prog.view.switches["hv1"].router_mac and fip.route_targets == tuple(dom["export_rts"])
    from_peer = {"in_port": 99, "tunnel_id": dom["l3_vni"], "eth_src": "02:dd:00:00:00:01",
                 "eth_dst": prog.view.switches["hv1"].router_mac, "eth_type": 0x0800, "ip_proto": 1,
                 "icmpv4_type": 8, "ipv4_src": "198.51.100.7", "ipv4_dst": "203.0.113.10"}
    [(port, inside)] = trace(prog.desired["hv1"], from_peer)
    assert port == 10 and inside["ipv4_dst"] == "10.0.1.10" and inside["eth_dst"] == "02:00:00:00:00:01"
    with_fips(state, [None, "vm1"])  # f0 detached: withdrawn
    prog.refresh()
    assert not any(r.TYPE == 5 and r.prefix == "203.0.113.10/32" for r in originate(prog.view, state.policy).values())


class _Switch:
    """A switch's reconciler as the counters read it (no OVS in a unit test): answers a flow-stats request with a
    packet on each flow of ``owners`` it holds; ``meanwhile`` runs while the answer is awaited (other green threads
    run then)."""

    def __init__(self, desired, meanwhile=lambda: None):
        self.desired, self.meanwhile = desired, meanwhile

    def flow_stats(self, cookie, mask):
        self.meanwhile()
        return {f.cookie: 1 for owner, flows in self.desired.flows.items() if owner.kind == "fip" for f in flows}


def test_a_switch_gone_from_the_view_while_the_counters_wait_leaves_its_rows_out_of_metrics():
    """/metrics reads the floating IPs' counters switch by switch, each a request awaited; a programming pass running
    meanwhile may have removed a switch from the View (LiveView removes a gone VRS before it pauses while placing
    vports, and only then updates the floating IPs): that switch's rows are left out of the scrape, which answers
    (main: KeyError, /metrics failed)."""
    from controller.rest.external import metric_rows

    state, prog = setup({"vm0": "hv1", "vm1": "hv2"})

    def hv1_gone():
        del prog.view.switches["hv1"]

    recs = {1: _Switch(prog.desired["hv1"]), 2: _Switch(prog.desired["hv2"], meanwhile=hv1_gone)}
    fip_rows, _ = metric_rows(prog, lambda: recs)
    assert {(fid, chassis) for fid, _, chassis, _, _ in fip_rows} == {("f1", "hv2")}


def test_a_switch_gone_from_the_view_while_the_counters_wait_is_not_a_failed_floating_ip_listing():
    """GET /v1/floating-ips?counters=true reads the same counters: a floating IP whose switch left the View meanwhile
    is listed as not answered (main: KeyError, the request failed)."""
    from controller.rest.external import floating_counters

    state, prog = setup({"vm0": "hv1", "vm1": "hv2"})

    def hv1_gone():
        del prog.view.switches["hv1"]

    recs = {1: _Switch(prog.desired["hv1"]), 2: _Switch(prog.desired["hv2"], meanwhile=hv1_gone)}
    got = floating_counters(prog, lambda: recs)([{"id": "f0"}, {"id": "f1"}])
    assert (got["f0"]["answered"], got["f1"]["answered"]) == (False, True)


def test_the_trace_says_why_an_own_subnet_address_is_dropped_under_translation_and_blames_no_evpn_prefix():
    """`canopy trace` in a translated domain with no EVPN at all: an unknown address of the domain's own subnets is
    dropped by port address translation's guard, and the reason says so (it named a covering EVPN prefix)."""
    from openflow.trace import walk

    state, prog, dom = translated_domain()
    packet = {"in_port": 12, "eth_src": "02:00:00:00:00:03", "eth_dst": dom["gateway_mac"], "eth_type": 0x0800,
              "ip_proto": 1, "ipv4_src": "10.0.1.12", "ipv4_dst": "10.0.1.99"}
    desired = prog.desired["hv2"]
    [drop] = walk(desired.all_flows(), desired.all_groups(), packet).exits
    assert drop.kind == "drop" and "EVPN" not in drop.reason
    assert drop.reason.startswith("l3_routing: an address of one of the domain's own subnets")


def test_the_trace_names_a_floating_ips_own_subnet_guard_as_the_translations():
    """A VM with a floating IP sending to an address of its domain's subnets that no endpoint has meets its floating
    IP's guard (openflow/external.py, f.inside) before any other: the trace says why, as for port address
    translation's (it said only "dropped by a flow of fip f1 in l3_routing")."""
    from openflow.trace import walk

    state, prog = setup({"vm0": "hv1", "vm1": "hv2", "vm2": "hv2"})
    dom = state.policy.find("domain", "acme/prod")
    packet = {"in_port": 11, "eth_src": "02:00:00:00:00:02", "eth_dst": dom["gateway_mac"], "eth_type": 0x0800,
              "ip_proto": 1, "ipv4_src": "10.0.1.11", "ipv4_dst": "10.0.1.99"}
    desired = prog.desired["hv2"]
    result = walk(desired.all_flows(), desired.all_groups(), packet)
    [drop] = result.exits
    assert result.steps[drop.step].owner == ("fip", "f1")
    assert drop.kind == "drop" and drop.reason.startswith("l3_routing: an address of one of the domain's own subnets")
