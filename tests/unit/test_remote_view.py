"""EVPN-learned reachability (controller.remote.RemoteTable) in the derived view and the compiled flows:
what packets do on each VRS (traced through the compiled flows by tests.unit.helpers.trace), the flood
lists, the FIB, and the rows a hardware VTEP is given."""

from controller.derive import derive, vtep_desired
from controller.programmer import Programmer
from controller.remote import RemoteMac, RemotePrefix, RemoteTable
from controller.rest import dataplane
from openflow.compiler import compile_switch, group_ids
from tests.unit.helpers import TUNNEL_PORT, VM_PORT, state_from, tor_snapshot, trace, vrs_snapshot

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
          - name: db
            cidr: 10.0.2.0/24
            gateway: 10.0.2.1
            vni: 5002
            vports:
              - {name: db1, mac: "02:00:00:00:02:01", ips: [10.0.2.11], binding: {flavour: kvm}}
    subnets:
      - name: lan
        cidr: 10.9.0.0/24
        vni: 5009
        dhcp: {enabled: false}
        vports:
          - {name: lan1, mac: "02:00:00:00:09:01", ips: [10.9.0.11], binding: {flavour: kvm}}
vtep_bindings:
  - {switch: tor1, port: p1, vlan: 100, subnet: acme/web}
"""
HOSTS = {"hv1": ("10.251.0.1", "acme/web/vm1"), "hv2": ("10.251.0.2", "acme/web/vm2"),
         "hv3": ("10.251.0.3", "acme/db/db1"), "hv4": ("10.251.0.4", "acme/lan/lan1")}
TUNNEL = TUNNEL_PORT
PEER, PEER_RMAC = "10.99.0.1", "02:dd:00:00:00:01"
RMAC, RIP = "02:00:00:00:01:99", "10.0.1.99"  # a web VM behind the peer


def setup(table_of=None, vtep=False):
    """Four VRS with one VM each (and tor1 when ``vtep``); ``table_of(state)`` builds the remote table."""
    state = state_from(DOC)
    for session, (vtep_ip, vm) in HOSTS.items():
        state.vrs_update(vrs_snapshot(session, vtep_ip, [vm.split("/")[-1]]))
    if vtep:
        state.vtep_update(tor_snapshot())
    state.remote = table_of(state) if table_of else RemoteTable()
    prog = Programmer(state)
    prog.refresh()
    return state, prog


def ids(state):
    return (state.policy.find("subnet", "acme/web")["id"], state.policy.find("subnet", "acme/db")["id"],
            state.policy.find("domain", "acme/prod"))


def remote_mac(state, mac=RMAC, ips=(RIP,), vtep=PEER, routed=True, subnet="acme/web"):
    dom = state.policy.find("domain", "acme/prod")
    return RemoteMac(state.policy.find("subnet", subnet)["id"], mac, ips, vtep,
                     PEER_RMAC if routed else None, dom["l3_vni"] if routed else 0)


with_remote = setup


def vm_of(prog, session):
    return prog.view.endpoints[prog.state.policy.find("vport", HOSTS[session][1])["id"]]


def vm_sends(prog, session, **packet):
    """What leaves the switch when its VM (on VM_PORT) sends this packet."""
    ep = vm_of(prog, session)
    base = {"in_port": VM_PORT, "eth_src": ep.mac, "eth_type": 0x0800, "ipv4_src": ep.ips[0]}
    return trace(prog.desired[session], {**base, **packet})


def arp_from_vm(prog, session, target_ip):
    ep = vm_of(prog, session)
    return vm_sends(prog, session, eth_dst="ff:ff:ff:ff:ff:ff", eth_type=0x0806, arp_op=1, arp_spa=ep.ips[0],
                    arp_sha=ep.mac, arp_tpa=target_ip, ipv4_src=None)


def to_tunnel(outputs):
    return [(pkt["tun_ipv4_dst"], pkt["tunnel_id"]) for port, pkt in outputs if port == TUNNEL]


# ------------------------------------------------------------------------------ L2 and ARP

def test_a_remote_mac_is_reached_over_vxlan_with_the_subnet_vni_and_its_ip_is_answered_by_arp():
    state, prog = with_remote(lambda s: RemoteTable(macs=(remote_mac(s),)))
    out = vm_sends(prog, "hv1", eth_dst=RMAC, ipv4_dst=RIP)
    assert to_tunnel(out) == [(PEER, 5001)] and len(out) == 1
    reply = arp_from_vm(prog, "hv1", RIP)
    assert [(port, pkt["arp_op"], pkt["arp_sha"], pkt["eth_src"]) for port, pkt in reply] == \
        [(VM_PORT, 2, RMAC, RMAC)]
    ep = prog.view.endpoints[f"evpn:{ids(state)[0]}/{RMAC}"]
    assert (ep.kind, ep.session, ep.ofport, ep.port_security) == ("evpn", f"evpn:{PEER}", None, False)
    assert prog.view.tunnel_ip_of(ep.session) == PEER


def test_switches_without_the_subnet_get_no_l2_flows_for_it():
    state, prog = with_remote(lambda s: RemoteTable(macs=(remote_mac(s),)))
    lan_only = [str(f) for f in prog.desired["hv4"].all_flows()]  # another tenant's L2 subnet: nothing at all
    assert not any(RMAC in f or RIP in f or PEER in f for f in lan_only)
    db_only = prog.desired["hv3"].all_flows()  # same domain, other subnet: routed to, but no ARP nor L2 entry
    assert not any(RMAC in str(f) for f in db_only)
    assert all(f.owner.kind != "subnet" or f.owner.id != ids(state)[0] for f in db_only)


# ------------------------------------------------------------------------------ routing

def test_a_remote_host_is_routed_from_another_subnet_over_the_l3_vni_to_its_router_mac():
    state, prog = with_remote(lambda s: RemoteTable(macs=(remote_mac(s),)))
    dom = ids(state)[2]
    out = vm_sends(prog, "hv3", eth_dst=dom["gateway_mac"], ipv4_dst=RIP, ttl=64)
    assert len(out) == 1
    port, pkt = out[0]
    assert (port, pkt["tunnel_id"], pkt["tun_ipv4_dst"]) == (TUNNEL, dom["l3_vni"], PEER)
    assert (pkt["eth_src"], pkt["eth_dst"], pkt["ttl"]) == (prog.view.switches["hv3"].router_mac, PEER_RMAC, 63)
    fib = {r.prefix: r for r in prog.view.fib[dom["id"]]}
    assert fib[f"{RIP}/32"].kind == "host" and fib[f"{RIP}/32"].vport_id.startswith("evpn:")


def test_a_remote_mac_without_router_mac_is_bridged_but_not_routed():
    state, prog = with_remote(lambda s: RemoteTable(macs=(remote_mac(s, routed=False),)))
    dom = ids(state)[2]
    assert vm_sends(prog, "hv3", eth_dst=dom["gateway_mac"], ipv4_dst=RIP) == []
    assert to_tunnel(vm_sends(prog, "hv1", eth_dst=RMAC, ipv4_dst=RIP)) == [(PEER, 5001)]


def test_a_type5_prefix_is_routed_and_yields_to_local_routes():
    def table(s):
        dom = s.policy.find("domain", "acme/prod")
        l3 = dom["l3_vni"]
        return RemoteTable(macs=(remote_mac(s),), prefixes=(
            RemotePrefix(dom["id"], "172.16.0.0/16", "10.99.0.7", "02:dd:00:00:00:07", l3),
            RemotePrefix(dom["id"], "172.16.0.0/16", "10.99.0.5", "02:dd:00:00:00:05", l3),  # lower VTEP wins
            RemotePrefix(dom["id"], "10.0.1.0/24", PEER, PEER_RMAC, l3),  # our connected subnet: ignored
            RemotePrefix(dom["id"], "10.0.0.0/8", PEER, PEER_RMAC, l3),  # covers our subnets
            RemotePrefix(dom["id"], f"{RIP}/32", "10.99.0.8", "02:dd:00:00:00:08", l3),  # the type 2 wins
            RemotePrefix(dom["id"], "10.0.1.12/32", "10.99.0.8", "02:dd:00:00:00:08", l3)))  # vm2 wins

    state, prog = with_remote(table)
    dom = ids(state)[2]
    gw = dom["gateway_mac"]
    out = vm_sends(prog, "hv1", eth_dst=gw, ipv4_dst="172.16.3.4", ttl=9)
    assert [(p, k["tun_ipv4_dst"], k["tunnel_id"], k["eth_dst"], k["ttl"]) for p, k in out] == \
        [(TUNNEL, "10.99.0.5", dom["l3_vni"], "02:dd:00:00:00:05", 8)]
    assert to_tunnel(vm_sends(prog, "hv1", eth_dst=gw, ipv4_dst="10.77.0.1")) == [(PEER, dom["l3_vni"])]
    assert vm_sends(prog, "hv1", eth_dst=gw, ipv4_dst="10.0.1.200") == []  # unknown host of our subnet: dropped
    assert to_tunnel(vm_sends(prog, "hv1", eth_dst=gw, ipv4_dst=RIP)) == [(PEER, dom["l3_vni"])]
    assert to_tunnel(vm_sends(prog, "hv1", eth_dst=gw, ipv4_dst="10.0.1.12")) == [("10.251.0.2", dom["l3_vni"])]
    fib = [(r.prefix, r.kind) for r in prog.view.fib[dom["id"]]]
    assert fib.count(("10.0.1.0/24", "connected")) == 1 and ("10.0.1.0/24", "evpn") not in fib
    assert len({prefix for prefix, _ in fib}) == len(fib)  # one route per prefix
    for session in HOSTS:  # and so no two flows of equal table, priority and match
        flows = prog.desired[session].all_flows()
        assert len({(f.table, f.priority, f.match) for f in flows}) == len(flows)


def test_a_more_specific_prefix_inside_our_subnet_is_routed():
    state, prog = with_remote(lambda s: RemoteTable(prefixes=(RemotePrefix(
        s.policy.find("domain", "acme/prod")["id"], "10.0.1.128/25", PEER, PEER_RMAC,
        s.policy.find("domain", "acme/prod")["l3_vni"]),)))
    dom = ids(state)[2]
    assert to_tunnel(vm_sends(prog, "hv3", eth_dst=dom["gateway_mac"], ipv4_dst="10.0.1.130")) == \
        [(PEER, dom["l3_vni"])]


# ------------------------------------------------------------------------------ flooding

def test_a_remote_flood_vtep_gets_broadcasts_from_local_ports_only():
    state, prog = with_remote(lambda s: RemoteTable(floods=((ids(s)[0], PEER),)))
    everyone, local_only = group_ids(5001)
    groups = prog.desired["hv1"].all_groups()
    assert any(("set", "tun_ipv4_dst", PEER) in b for b in groups[everyone].buckets)
    assert not any(("set", "tun_ipv4_dst", PEER) in b for b in groups[local_only].buckets)
    out = arp_from_vm(prog, "hv1", "10.0.1.77")  # nobody knows it: flooded
    assert sorted(to_tunnel(out)) == [("10.251.0.2", 5001), (PEER, 5001)]
    from_tunnel = trace(prog.desired["hv1"], {"in_port": TUNNEL, "tunnel_id": 5001, "eth_dst": "ff:ff:ff:ff:ff:ff",
                                              "eth_src": RMAC, "eth_type": 0x0806, "arp_op": 1,
                                              "arp_tpa": "10.0.1.77"})
    assert [port for port, _ in from_tunnel] == [VM_PORT]  # split horizon: never back into a tunnel
    assert all(("set", "tun_ipv4_dst", PEER) not in b for b in prog.desired["hv3"].all_groups()[group_ids(5002)[0]]
               .buckets)


def test_a_remote_mac_alone_makes_its_vtep_a_flood_target():
    state, prog = with_remote(lambda s: RemoteTable(macs=(remote_mac(s),)))
    assert prog.view.vteps_of(ids(state)[0], "hv1") == [PEER, "10.251.0.2"]


# ------------------------------------------------------------------------------ local wins

def test_our_own_routes_reflected_back_are_ignored():
    def table(s):
        dom = s.policy.find("domain", "acme/prod")
        return RemoteTable(macs=(remote_mac(s, vtep="10.251.0.2"), remote_mac(s, mac="02:00:00:00:01:98",
                                                                               ips=("10.0.1.98",),
                                                                               vtep="10.251.0.9")),
                           floods=((ids(s)[0], "10.251.0.1"), (ids(s)[0], "10.251.0.3")),
                           prefixes=(RemotePrefix(dom["id"], "172.16.0.0/16", "10.251.0.3", PEER_RMAC,
                                                  dom["l3_vni"]),))

    state, prog = with_remote(table)
    state.vtep_update(tor_snapshot())
    prog.refresh()
    view = prog.view
    assert [e for e in view.endpoints.values() if e.kind == "evpn"] == []
    assert view.vteps_of(ids(state)[0], "hv1") == ["10.251.0.2", "10.251.0.9"]  # not itself, not hv3 (no web)
    assert all(r.kind != "evpn" for r in view.fib[ids(state)[2]["id"]])


def test_a_local_endpoint_wins_over_a_remote_one_for_its_mac_and_ips():
    vm2_mac = "02:00:00:00:01:02"
    state, prog = with_remote(lambda s: RemoteTable(macs=(
        remote_mac(s, mac=vm2_mac, ips=("10.0.1.12",)),  # vm2 also announced by a peer
        remote_mac(s, mac="02:00:00:00:01:77", ips=("10.0.1.12", RIP)))))  # another MAC claiming vm2's IP
    assert to_tunnel(vm_sends(prog, "hv1", eth_dst=vm2_mac, ipv4_dst="10.0.1.12")) == [("10.251.0.2", 5001)]
    reply = arp_from_vm(prog, "hv1", "10.0.1.12")
    assert [pkt["arp_sha"] for _, pkt in reply] == [vm2_mac]
    evpn = [e for e in prog.view.endpoints.values() if e.kind == "evpn"]
    assert [(e.mac, e.ips) for e in evpn] == [("02:00:00:00:01:77", (RIP,))]


def imported_arp_answers(federation, state, prog) -> list:
    """Import what the speaker received, run a pass (checked against a from-scratch compile) and return the MACs
    hv1's ARP responder answers vm1's ARP request for RIP with."""
    federation._received_changed()
    federation.refresh_import()
    prog.refresh()
    view = derive(state.policy, state.locations, state.vrs, state.vtep_ip_of, state.vteps, state.remote)
    assert prog.desired["hv1"].all_flows() == compile_switch(view, "hv1").all_flows()
    return [pkt["arp_sha"] for _, pkt in arp_from_vm(prog, "hv1", RIP)]


def test_an_ip_that_moves_to_a_new_mac_is_answered_with_the_newer_binding_while_the_old_route_lingers():
    """RFC 7432 section 15 and RFC 9135 (ARP entries): an IP two remote MACs announce follows the higher MAC
    mobility sequence number, then the route received later, whatever the MACs' order (before: the lower MAC).
    From routes as ExaBGP prints them (a RouteBook numbers them as they arrive) through the Federation's import to
    the ARP responder's answer, which a from-scratch derive gives too."""
    from bgp.federation import Federation
    from bgp.routes import MacIpRoute
    from tests.unit.test_importer import BookSpeaker

    state, prog = setup()
    speaker = BookSpeaker()
    federation = Federation(None, "/nonexistent", state, speaker=speaker)
    rts = tuple(state.policy.find("subnet", "acme/web")["import_rts"])
    old, new, third = "02:00:00:00:01:98", "02:00:00:00:01:99", "02:00:00:00:01:9a"

    def route(mac, seq=None):
        return MacIpRoute(rd=f"{PEER}:2", mac=mac, ip=RIP, l2_vni=5001, next_hop=PEER, route_targets=rts,
                          mobility_seq=seq)

    def answer(*received):
        for item in received:
            speaker.receive(*item) if isinstance(item, tuple) else speaker.receive(item)
        return imported_arp_answers(federation, state, prog)

    assert answer(route(old)) == [old]
    assert answer(route(new)) == [new]  # the VM came back with a new MAC; the old MAC's route lingers
    assert answer(route(old, 2)) == [old]  # the old MAC again, with a higher sequence number
    assert answer(route(third)) == [old]  # received later, but a lower sequence number
    assert answer((route(old, 2), "withdraw")) == [third]  # of the two left (sequence 0), the later one
    assert answer(route(new), route(third)) == [third]  # sent again unchanged: still received earlier


def test_a_second_reflectors_copy_of_the_old_route_does_not_take_the_ip_back():
    """Two route reflectors send each route twice: a copy of a route another reflector already sent is not news (it
    keeps that route's receive order), so the old MAC's copy arriving late from the second reflector, or the second
    reflector's session flapping and sending both again in its own order, leaves the IP with the newer binding
    (before: each copy numbered as received, the old MAC took the IP back on equal sequence numbers)."""
    from bgp.federation import Federation
    from bgp.routes import MacIpRoute
    from tests.unit.test_importer import BookSpeaker

    state, prog = setup()
    rr1, rr2 = "127.0.0.1", "127.0.0.2"
    speaker = BookSpeaker((rr1, rr2))
    federation = Federation(None, "/nonexistent", state, speaker=speaker)
    rts = tuple(state.policy.find("subnet", "acme/web")["import_rts"])
    old, new = "02:00:00:00:01:98", "02:00:00:00:01:99"

    def route(mac):
        return MacIpRoute(rd=f"{PEER}:2", mac=mac, ip=RIP, l2_vni=5001, next_hop=PEER, route_targets=rts)

    def answer(*received):
        for mac, peer, *action in received:
            speaker.receive(route(mac), *action, peer=peer)
        return imported_arp_answers(federation, state, prog)

    assert answer((old, rr1)) == [old]
    assert answer((new, rr1), (new, rr2)) == [new]
    assert answer((old, rr2)) == [new]  # the second reflector's copy of the old route, late
    assert answer((old, rr2, "withdraw"), (new, rr2, "withdraw")) == [new]  # its session flaps:
    assert answer((new, rr2), (old, rr2)) == [new]  # both again, the old one last
    state.policy = state.policy.copy()  # an import from scratch ranks the same
    assert answer() == [new]


# ------------------------------------------------------------------------------ hardware VTEPs

def test_hardware_vtep_rows_include_remote_macs_and_flood_targets():
    def table(s):
        return RemoteTable(macs=(remote_mac(s),), floods=((ids(s)[0], "10.99.0.2"),))

    state, prog = setup(table, vtep=True)
    desired = vtep_desired(prog.view, state.policy, "tor1")
    assert (5001, RMAC, RIP, PEER) in desired.remote_macs
    assert desired.flood == ((5001, (PEER, "10.99.0.2", "10.251.0.1", "10.251.0.2")),)


# ------------------------------------------------------------------------------ changes and REST

def test_remote_changes_recompile_incrementally_like_a_full_recompute():
    state, prog = setup()
    dom = ids(state)[2]
    steps = [RemoteTable(macs=(remote_mac(state),)),
             RemoteTable(macs=(remote_mac(state, vtep="10.99.0.2"),)),  # moved
             RemoteTable(macs=(remote_mac(state, vtep="10.99.0.2"),), floods=((ids(state)[0], PEER),)),
             RemoteTable(prefixes=(RemotePrefix(dom["id"], "10.0.0.0/8", PEER, PEER_RMAC, dom["l3_vni"]),)),
             RemoteTable()]
    for table in steps:
        state.remote = table
        prog.refresh()
        view = derive(state.policy, state.locations, state.vrs, state.vtep_ip_of, state.vteps, state.remote)
        for session in HOSTS:
            full = compile_switch(view, session)
            assert prog.desired[session].all_flows() == full.all_flows()
            assert prog.desired[session].all_groups() == full.all_groups()
    assert prog.full_recomputes == 1
    assert not any(PEER in str(f) for f in prog.desired["hv1"].all_flows())


def test_the_fib_listing_shows_evpn_routes_with_their_vtep_router_mac_and_vni():
    state, prog = with_remote(lambda s: RemoteTable(macs=(remote_mac(s),), prefixes=(RemotePrefix(
        s.policy.find("domain", "acme/prod")["id"], "172.16.0.0/16", "10.99.0.5", "02:dd:00:00:00:05",
        s.policy.find("domain", "acme/prod")["l3_vni"]),)))
    dom = ids(state)[2]
    fib = next(r for r in dataplane.routes(state, prog, dict) if r.pattern.endswith("/fib"))
    routes = {r["prefix"]: r for r in fib.handler(None, dom["id"]).body["routes"]}
    prefix, host, local = routes["172.16.0.0/16"], routes[f"{RIP}/32"], routes["10.0.1.11/32"]
    assert (prefix["origin"], prefix["next_hop"], prefix["vtep_ip"], prefix["router_mac"], prefix["vni"]) == \
        ("evpn", "10.99.0.5", "10.99.0.5", "02:dd:00:00:00:05", dom["l3_vni"])
    assert (host["origin"], host["next_hop"], host["vtep_ip"], host["router_mac"], host["vni"]) == \
        ("evpn", PEER, PEER, PEER_RMAC, dom["l3_vni"])
    assert host["remote_mac"]["mac"] == RMAC and host["vport"] is None
    assert (local["origin"], local["vtep_ip"], local["vport"]["ref"]) == ("host", "10.251.0.1", "acme/web/vm1")
    assert set(prefix) >= set(local) - {"unresolved"}
