"""The packet tracer (openflow/trace.py) over compiled flows, and POST /v1/trace on top of it.

The switch under test is tests/unit/pipeline_case.py's hv1; tests/integration/test_pipeline_trace.py asks
real Open vSwitch the same questions and compares the verdicts.
"""

import re

import pytest

from controller.discovery import VrsSnapshot
from controller.programmer import Programmer
from controller.rest import inspection as rest_inspect
from controller.rest.api import Api
from openflow import pipeline as p
from openflow.compiler import compile_switch
from openflow.trace import PacketError, parse_packet, render_packet, walk
from tests.unit.helpers import TOKEN, make_settings
from tests.unit.pipeline_case import REMOTE_VTEP, build_state, build_view, port

WEB1 = "in_port=1,dl_src=02:00:00:00:01:01"


@pytest.fixture(scope="module")
def hv1():
    policy, view = build_view()
    desired = compile_switch(view, "s1")

    def trace(text):
        return walk(desired.all_flows(), desired.all_groups(), parse_packet(text), view.switches["s1"].tunnel_ofport)

    return trace, policy, view


def kinds(result):
    return sorted((e.kind, e.port) for e in result.exits)


def test_l2_to_a_local_port_walks_every_stage_with_owners(hv1):
    trace, policy, _ = hv1
    result = trace(f"{WEB1},dl_dst=02:00:00:00:01:02,ip,nw_src=10.0.1.11,nw_dst=10.0.1.12")
    assert kinds(result) == [("output", 2)]
    assert [s.table for s in result.steps] == [p.CLASSIFY, p.PORT_SECURITY, p.INGRESS_ACL, p.SERVICES, p.L2_LOOKUP,
                                               p.EGRESS_ACL, p.EGRESS]
    web1, web2 = policy.find("vport", "acme/web/web1"), policy.find("vport", "acme/web/web2")
    assert result.steps[0].owner == ("vport", web1["id"]) and result.steps[4].owner == ("vport", web2["id"])
    assert "set_field:0x1->reg6" in result.steps[0].actions and result.steps[0].table_name == "classify"
    assert not result.ambiguous


def test_l2_to_a_remote_mac_leaves_by_the_tunnel_with_the_subnet_vni(hv1):
    trace, policy, _ = hv1
    [out] = trace(f"{WEB1},dl_dst=02:00:00:00:01:03,ip,nw_src=10.0.1.11,nw_dst=10.0.1.13").exits
    assert (out.kind, out.port, out.tun_dst, out.tun_id) == ("tunnel", 100, REMOTE_VTEP,
                                                             policy.find("subnet", "acme/web")["vni"])


def test_routed_locally_rewrites_macs_and_decrements_ttl(hv1):
    trace, policy, _ = hv1
    gw = policy.find("domain", "acme/prod")["gateway_mac"]
    [out] = trace(f"{WEB1},dl_dst={gw},ip,nw_src=10.0.1.11,nw_dst=10.0.2.11,nw_ttl=64").exits
    assert (out.kind, out.port) == ("output", 3)
    assert (out.packet["eth_src"], out.packet["eth_dst"], out.packet["ttl"]) == (gw, "02:00:00:00:02:01", 63)


def test_routed_to_a_remote_host_goes_over_the_l3_vni(hv1):
    trace, policy, view = hv1
    gw = policy.find("domain", "acme/prod")["gateway_mac"]
    [out] = trace(f"{WEB1},dl_dst={gw},ip,nw_src=10.0.1.11,nw_dst=192.168.50.7").exits
    assert (out.kind, out.tun_dst, out.tun_id) == ("tunnel", REMOTE_VTEP, policy.find("domain", "acme/prod")["l3_vni"])
    assert out.packet["eth_dst"] == view.switches["s2"].router_mac


def test_esxi_vnic_is_classified_by_vlan_and_reached_with_its_vlan(hv1):
    trace, *_ = hv1
    assert kinds(trace("in_port=4,dl_vlan=101,dl_src=02:00:00:00:01:04,dl_dst=02:00:00:00:01:01,ip,"
                       "nw_src=10.0.1.14,nw_dst=10.0.1.11")) == [("output", 1)]
    [out] = trace(f"{WEB1},dl_dst=02:00:00:00:01:05,ip,nw_src=10.0.1.11,nw_dst=10.0.1.15").exits
    assert (out.kind, out.port, out.vlan) == ("output", 4, 102)


def test_spoofed_source_is_dropped_by_port_security_and_says_so(hv1):
    trace, *_ = hv1
    result = trace("in_port=1,dl_src=02:00:00:00:01:99,dl_dst=02:00:00:00:01:02,ip,nw_src=10.0.1.11")
    [drop] = result.exits
    assert drop.kind == "drop" and drop.reason.startswith("port security")
    assert result.steps[-1].table == p.PORT_SECURITY and result.steps[-1].priority == 0


def test_unknown_destinations_and_ports_drop_with_the_stage_that_refused(hv1):
    trace, policy, _ = hv1
    gw = policy.find("domain", "acme/prod")["gateway_mac"]
    [drop] = trace(f"{WEB1},dl_dst={gw},ip,nw_src=10.0.1.11,nw_dst=8.8.8.8").exits
    assert drop.kind == "drop" and drop.reason.startswith("l3_routing: no route")
    [drop] = trace("in_port=9,dl_src=02:00:00:00:01:01,dl_dst=02:00:00:00:01:02").exits
    assert drop.reason.startswith("unknown ingress")


def test_a_vnic_never_gets_its_own_packet_back(hv1):
    trace, *_ = hv1
    [drop] = trace("in_port=4,dl_vlan=101,dl_src=02:00:00:00:01:04,dl_dst=02:00:00:00:01:04,ip,nw_src=10.0.1.14,"
                   "nw_dst=10.0.1.14").exits
    assert drop.kind == "drop" and "never sent back" in drop.reason


def test_broadcast_floods_through_the_group_and_dhcp_goes_to_the_controller(hv1):
    trace, *_ = hv1
    result = trace(f"{WEB1},dl_dst=ff:ff:ff:ff:ff:ff,arp,arp_op=1,arp_spa=10.0.1.11,arp_sha=02:00:00:00:01:01,"
                   "arp_tpa=10.0.1.200")
    # web1's own copy is dropped: output to the ingress port is suppressed
    assert kinds(result) == [("drop", None), ("output", 2), ("output", 4), ("output", 4), ("tunnel", 100)]
    assert "suppressed" in result.drops()[0].reason
    assert sorted(e.vlan for e in result.exits if e.port == 4) == [101, 102]
    dhcp = trace("udp,in_port=1,dl_src=02:00:00:00:01:01,dl_dst=ff:ff:ff:ff:ff:ff,nw_src=0.0.0.0,"
                 "nw_dst=255.255.255.255,tp_src=68,tp_dst=67")
    assert kinds(dhcp) == [("controller", "controller")]


def test_from_the_tunnel_flood_stays_local_and_irb_delivers(hv1):
    trace, policy, view = hv1
    vni = policy.find("subnet", "acme/web")["vni"]
    flood = trace(f"in_port=100,tun_id={vni},dl_src=02:00:00:00:01:03,dl_dst=ff:ff:ff:ff:ff:ff")
    assert sorted(e.port for e in flood.exits) == [1, 2, 4, 4]
    l3 = policy.find("domain", "acme/prod")["l3_vni"]
    [out] = trace(f"in_port=100,tun_id={l3},dl_src={view.switches['s2'].router_mac},"
                  f"dl_dst={view.switches['s1'].router_mac},ip,nw_src=10.0.2.12,nw_dst=10.0.1.11").exits
    assert (out.kind, out.port, out.packet["eth_dst"]) == ("output", 1, "02:00:00:00:01:01")


def test_packet_descriptions_parse_render_and_name_the_bad_field():
    pkt = parse_packet("in_port=1,dl_vlan=101,dl_src=02:00:00:00:01:01,udp,nw_dst=10.0.1.1,tp_dst=67,tun_id=0x10")
    assert pkt["vlan_vid"] == 0x1000 | 101 and pkt["udp_dst"] == 67 and pkt["ip_proto"] == 17
    assert pkt["tunnel_id"] == 16 and pkt["ttl"] == 64
    assert parse_packet(render_packet(pkt)) == pkt
    assert parse_packet({"eth_dst": "02:00:00:00:01:02", "arp_tpa": "10.0.1.1"})["eth_type"] == 0x0806
    for text, field in (("dl_src=zz", "dl_src"), ("nw_dst=10.0.1", "nw_dst"), ("bogus=1", "bogus"),
                        ("in_port=-1", "in_port"), ("tcp,tp_src=70000", "tp_src"), ("ip,tp_dst=80", "tp_dst"),
                        ("arp,nw_dst=10.0.0.1", "ipv4_dst"), ("ipx", "ipx")):
        with pytest.raises(PacketError) as err:
            parse_packet(text)
        assert err.value.field == field, text


# ------------------------------------------------------------------------------------------ REST

@pytest.fixture()
def api(tmp_path):
    state = build_state()
    prog = Programmer(state)
    prog.refresh(full=True)
    return Api(None, state, make_settings(tmp_path), extra_routes=rest_inspect.routes(state, prog)), state


def post(api, body, token=None):
    import json

    from controller.rest.wire import Request

    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    resp = api.handle(Request("POST", "/v1/trace", {}, headers, json.dumps(body).encode(), "127.0.0.1"))
    return resp.status, json.loads(resp.encoded())


def test_rest_trace_from_a_vport_fills_in_its_port_addresses_and_next_hop(api):
    api, state = api
    status, body = post(api, {"vport": "web1", "packet": "ip,nw_dst=10.0.2.11"})
    assert status == 200, body
    [out] = body["exits"]
    assert out["kind"] == "output" and out["port_name"] == "db1" and out["vport"]["ref"] == "acme/db/db1"
    assert out["summary"] == "output to port 3 (db1, vport acme/db/db1)"
    assert body["switch"]["bridge"] == "br-int"
    assert body["switch"]["chassis"] == "hv1" and body["ofproto_trace"].startswith("ip,in_port=1,")
    assert "dl_dst=" + state.policy.find("domain", "acme/prod")["gateway_mac"] in body["ofproto_trace"]
    assert body["steps"][0]["owner_ref"] == "acme/web/web1" and body["steps"][0]["table_name"] == "classify"


def test_rest_trace_over_vxlan_names_the_vtep_and_the_vni(api):
    api, state = api
    vni = state.policy.find("subnet", "acme/web")["vni"]
    status, body = post(api, {"switch": "0000000000000001", "vni": vni, "remote_ip": REMOTE_VTEP,
                              "packet": "dl_src=02:00:00:00:01:03,dl_dst=02:00:00:00:01:04"})
    assert status == 200, body
    [out] = body["exits"]
    assert out["summary"] == "output to port 4 (trunk0 vlan 101, vport acme/web/esx1)"
    status, body = post(api, {"vport": "acme/web/web1", "packet": "dl_dst=02:00:00:00:01:03,ip,nw_dst=10.0.1.13"})
    assert body["exits"][0]["summary"] == f"tunnel to {REMOTE_VTEP} (VRS hv2) VNI {vni} (subnet acme/web)"


def test_rest_trace_to_an_unbound_neighbour_defaults_to_its_mac_from_the_policy(api):
    """README's example traces to a neighbour bound nowhere (the demo's hv-vm1): it has a MAC in the policy."""
    api, state = api
    state.vrs_update(VrsSnapshot("s2", "p", "hv2", vtep_ip=REMOTE_VTEP, datapath_id=2, bridge_present=True,
                                 ports=(port("tapB", 8, **{"iface-id": "db2"}), port("vxlan0", 100, type_="vxlan"))))
    status, body = post(api, {"vport": "web1", "packet": "ip,nw_dst=10.0.1.13"})  # web3: no longer bound
    assert status == 200, body
    assert "dl_dst=02:00:00:00:01:03" in body["ofproto_trace"]
    gateway_mac = re.search(r"dl_dst=([0-9a-f:]{17})", post(api, {"vport": "web1", "packet": "ip,nw_dst=192.0.2.9"})[1]
                            ["ofproto_trace"]).group(1)  # off the subnet: to the gateway
    status, body = post(api, {"vport": "web1", "packet": "icmp,nw_dst=10.0.1.1"})  # the gateway: in the subnet too
    assert status == 200 and f"dl_dst={gateway_mac}" in body["ofproto_trace"], body
    status, body = post(api, {"vport": "web1", "packet": "ip,nw_dst=10.0.1.99"})  # no vport has it
    assert status == 422 and body["error"]["field"] == "packet.dl_dst"
    assert "no vport of subnet acme/web has 10.0.1.99" in body["error"]["reason"]


def test_rest_trace_refuses_bad_questions_naming_the_field(api):
    api, _ = api
    cases = [({"packet": "in_port=1,dl_dst=02:00:00:00:01:02"}, "switch"),
             ({"vport": "nope", "packet": "ip"}, "vport"),
             ({"vport": "web3", "packet": "ip"}, "packet.dl_dst"),  # on hv2, but no destination
             ({"switch": "hv1", "vport": "web3", "packet": "ip,nw_dst=10.0.1.11"}, "vport"),
             ({"switch": "hv9", "vni": 5, "packet": "dl_dst=02:00:00:00:01:02"}, "switch"),
             ({"switch": "hv1", "vni": 0, "packet": "dl_dst=02:00:00:00:01:02"}, "vni"),
             ({"vport": "web1", "vni": 5, "packet": "dl_dst=02:00:00:00:01:02"}, "vni"),
             ({"switch": "hv1", "vni": 5, "packet": "in_port=1,dl_dst=02:00:00:00:01:02"}, "packet.in_port"),
             ({"switch": "hv1", "vni": 5, "remote_ip": "x", "packet": "dl_dst=02:00:00:00:01:02"}, "remote_ip"),
             ({"vport": "web1", "packet": "nw_dst=1.2.3"}, "packet.nw_dst"),
             ({"vport": "web1", "packet": "udp,nw_dst=8.8.8.8,tp_dst=53", "colour": "red"}, "colour"),
             ({"vport": "web1", "packet": "dl_type=0x86dd"}, "packet.dl_dst")]
    for body, field in cases:
        status, reply = post(api, body)
        assert status in (404, 422) and reply["error"]["field"] == field, (body, reply)


def test_openapi_documents_the_trace_body(api):
    api, _ = api
    from controller.rest.openapi import document

    doc = document(api.routes)
    body = doc["paths"]["/v1/trace"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["properties"]) == {"switch", "vport", "vni", "remote_ip", "packet"}
    assert "/v1/vports/{id}/dhcp" in doc["paths"]
    assert TOKEN  # the trace is a read: no token needed from loopback (post() sends none)


def test_rest_trace_names_the_vport_whose_acl_dropped_the_packet_not_its_uuid():
    """A packet a vport's ACLs refuse: the drop said "dropped by a flow of acl_port 7f14...-... in egress_acl_verdict"
    and the steps' owner_ref the same UUID; both now name the vport (acme/db/d1), as the other steps do."""
    from tests.unit.test_security_policy import _traced_switch

    _, state = _traced_switch()
    prog = Programmer(state)
    prog.refresh(full=True)
    d1 = state.policy.find("vport", "acme/db/d1")["id"]
    out = rest_inspect.run_trace(state, prog.view, prog.desired,
                                 {"vport": "acme/web/w1", "packet": "tcp,nw_dst=10.0.2.11,tp_dst=23"})
    [drop] = out["exits"]
    assert drop["summary"] == "drop: dropped by a flow of acl_port acme/db/d1 in egress_acl_verdict", drop
    assert drop["reason"] == drop["summary"][len("drop: "):] and d1 not in str(drop)
    acl_steps = [step for step in out["steps"] if step["owner"]["kind"] == "acl_port"]
    assert acl_steps and {step["owner_ref"] for step in acl_steps} == {"acme/db/d1"}
    assert {step["owner"]["id"] for step in acl_steps} == {d1}  # the id stays in owner, for tools
