"""The metadata service's flows through the compiled pipeline (the product's tracer): a local VM's request to
169.254.169.254:80 reaches the agent's port with a source naming the VM's port (not what the VM wrote), the
agent's replies go back to that VM only, ARP is answered both ways; nothing without an agent port; and
incremental recompilation agrees with a full recompute while the agent port and VMs come and go."""

from dataclasses import replace

import pytest

from controller.programmer import Programmer
from openflow import metadata
from openflow.compiler import compile_switch

from . import pipeline_case as case
from .helpers import trace
from .test_compiler import assert_matches_full

AGENT, AGENT_MAC = 40, "02:aa:00:00:00:40"


def agent_port():
    return case.port("canopy-md", AGENT, **{"canopy-metadata-agent": "true"})


def with_agent(snap):
    return replace(snap, ports=snap.ports + (replace(agent_port(), mac=AGENT_MAC),))


def programmed(agent=True):
    state = case.build_state()
    if agent:
        state.vrs_update(with_agent(state.vrs["s1"]))
    prog = Programmer(state)
    prog.refresh()
    return state, prog


def vport(state, ref):
    return state.policy.find("vport", ref)


def request(state, ref, in_port, vlan=None, src=None, mac=None, via_gateway=True):
    vp = vport(state, ref)
    sub = state.policy.get("subnet", vp["subnet_id"])
    dom = state.policy.get("domain", sub["domain_id"])
    pkt = {"in_port": in_port, "eth_src": mac or vp["mac"],
           "eth_dst": dom["gateway_mac"] if via_gateway else metadata.METADATA_MAC, "eth_type": 0x0800,
           "ip_proto": 6, "ipv4_src": src or vp["ips"][0], "ipv4_dst": metadata.METADATA_IP, "tcp_src": 41000,
           "tcp_dst": 80}
    if vlan:
        pkt["vlan_vid"] = vlan | 0x1000
    return pkt


def test_source_addresses_name_the_port_and_vlan_and_read_back():
    assert metadata.source_address(1, None) == "240.0.16.0"
    assert metadata.source_address(4, 101) == "240.0.64.101"
    assert metadata.port_of("240.0.64.101") == (4, 101) and metadata.port_of("240.0.16.0") == (1, None)
    assert metadata.port_of("255.255.240.0") == (0xFFFF, None)
    for outside in ("10.0.1.11", "169.254.169.254", "240.0.0.5", "not an address"):
        assert metadata.port_of(outside) is None
    with pytest.raises(ValueError):
        metadata.source_address(0x10000, None)


@pytest.mark.parametrize("ref, in_port, vlan", [("acme/web/web1", 1, None), ("globex/web/g1", 5, None),
                                                ("acme/web/esx1", 4, 101)])
def test_a_request_reaches_the_agent_from_an_address_naming_the_port_and_the_reply_comes_back(ref, in_port, vlan):
    state, prog = programmed()
    hv1 = prog.desired["s1"]
    [(port, sent)] = trace(hv1, request(state, ref, in_port, vlan))
    source = metadata.source_address(in_port, vlan)
    assert port == AGENT and sent["ipv4_src"] == source and sent["eth_dst"] == AGENT_MAC
    assert sent["ipv4_dst"] == metadata.METADATA_IP and "vlan_vid" not in sent
    assert trace(hv1, request(state, ref, in_port, vlan, via_gateway=False))[0][1]["ipv4_src"] == source
    vp = vport(state, ref)
    reply = {"in_port": AGENT, "eth_src": AGENT_MAC, "eth_dst": metadata.METADATA_MAC, "eth_type": 0x0800,
             "ip_proto": 6, "ipv4_src": metadata.METADATA_IP, "ipv4_dst": source, "tcp_src": 80, "tcp_dst": 41000}
    [(port, back)] = trace(hv1, reply)
    assert port == in_port and back["ipv4_dst"] == vp["ips"][0] and back["eth_dst"] == vp["mac"]
    assert back["eth_src"] == metadata.METADATA_MAC and (back.get("vlan_vid", 0) & 0xFFF) == (vlan or 0)


def test_two_tenants_with_the_same_address_get_different_sources():
    state, prog = programmed()
    web1, g1 = vport(state, "acme/web/web1"), vport(state, "globex/web/g1")
    assert web1["ips"] == g1["ips"]
    sources = {trace(prog.desired["s1"], request(state, ref, port))[0][1]["ipv4_src"]
               for ref, port in (("acme/web/web1", 1), ("globex/web/g1", 5))}
    assert sources == {metadata.source_address(1, None), metadata.source_address(5, None)}


def test_a_vm_posing_as_another_gets_nothing_but_its_own_identity():
    state, prog = programmed()
    hv1 = prog.desired["s1"]
    web2 = vport(state, "acme/web/web2")
    # web1's port with web2's MAC and address: port security drops it
    assert trace(hv1, request(state, "acme/web/web1", 1, src=web2["ips"][0], mac=web2["mac"])) == []
    policy = state.policy.copy()
    web1 = dict(vport(state, "acme/web/web1"), port_security=False)
    policy.put("vport", web1)
    state.policy_committed(policy, [])
    prog.refresh()
    hv1 = prog.desired["s1"]
    # without port security it gets through the port, but is never steered as web2 (nor as itself: wrong source)
    assert all(port != AGENT for port, _ in trace(hv1, request(state, "acme/web/web1", 1, src=web2["ips"][0],
                                                                mac=web2["mac"])))
    [(port, sent)] = trace(hv1, request(state, "acme/web/web1", 1))
    assert port == AGENT and sent["ipv4_src"] == metadata.source_address(1, None)


def test_arp_for_the_metadata_address_and_for_a_source_address_is_answered():
    state, prog = programmed()
    hv1 = prog.desired["s1"]
    web1 = vport(state, "acme/web/web1")
    ask = {"in_port": 1, "eth_src": web1["mac"], "eth_dst": "ff:ff:ff:ff:ff:ff", "eth_type": 0x0806, "arp_op": 1,
           "arp_spa": web1["ips"][0], "arp_tpa": metadata.METADATA_IP, "arp_sha": web1["mac"]}
    [(port, reply)] = trace(hv1, ask)
    assert port == 1 and reply["arp_op"] == 2 and reply["arp_sha"] == metadata.METADATA_MAC
    source = metadata.source_address(1, None)
    agent_ask = {"in_port": AGENT, "eth_src": AGENT_MAC, "eth_dst": "ff:ff:ff:ff:ff:ff", "eth_type": 0x0806,
                 "arp_op": 1, "arp_spa": metadata.METADATA_IP, "arp_tpa": source, "arp_sha": AGENT_MAC}
    [(port, reply)] = trace(hv1, agent_ask)
    assert port == AGENT and reply["arp_spa"] == source and reply["arp_sha"] == metadata.METADATA_MAC
    # the agent gets nothing else through: not to a VM directly, not ARP for a VM's own address
    assert trace(hv1, dict(agent_ask, arp_tpa=web1["ips"][0])) == []
    direct = {"in_port": AGENT, "eth_src": AGENT_MAC, "eth_dst": web1["mac"], "eth_type": 0x0800, "ip_proto": 6,
              "ipv4_src": metadata.METADATA_IP, "ipv4_dst": web1["ips"][0], "tcp_src": 80, "tcp_dst": 41000}
    assert trace(hv1, direct) == []


def test_no_agent_port_no_metadata_flows():
    state, prog = programmed(agent=False)
    flows = prog.desired["s1"].all_flows()
    assert not [f for f in flows if f.owner.kind in metadata.OWNER_KINDS]
    assert all(port != AGENT for port, _ in trace(prog.desired["s1"], request(state, "acme/web/web1", 1)))
    _, prog = programmed()
    assert not [f for f in prog.desired["s2"].all_flows() if f.owner.kind in metadata.OWNER_KINDS]


def test_incremental_agrees_with_full_as_the_agent_port_and_vms_come_and_go():
    state, prog = programmed(agent=False)
    plain = state.vrs["s1"]
    steps = [with_agent(plain), replace(with_agent(plain), ports=tuple(p for p in with_agent(plain).ports
                                                                        if p.name != "web2")),
             with_agent(plain), plain, with_agent(plain)]
    for snap in steps:
        state.vrs_update(snap)
        prog.refresh()
        assert_matches_full(prog)
    view = prog.derive()
    assert any(f.owner.kind == "metadata" for f in compile_switch(view, "s1").all_flows())
    policy = state.policy.copy()
    web1 = vport(state, "acme/web/web1")
    policy.put("vport", dict(web1, ips=["10.0.1.77"]))
    state.policy_committed(policy, [])
    prog.refresh()
    assert_matches_full(prog)
    [(port, sent)] = trace(prog.desired["s1"], request(state, "acme/web/web1", 1))
    assert port == AGENT
    policy = state.policy.copy()
    policy.remove("vport", web1["id"])
    state.policy_committed(policy, [])
    prog.refresh()
    assert_matches_full(prog)
    assert not [f for f in prog.desired["s1"].all_flows() if f.owner == ("metadata", web1["id"])]
