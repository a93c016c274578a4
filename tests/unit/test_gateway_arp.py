"""The external gateway's MAC resolved by ARP (openflow/gateway_arp.py): the request the VRS sends, which answers
count, when to ask again and what to forget; and the flows: the gateway's answers punted on the uplink, nothing
sent out until a MAC is known, then sent to it."""

from types import SimpleNamespace

from controller import extnet
from controller.extnet import GatewayNeed
from openflow import gateway_arp as ga

from .helpers import trace
from .test_compiler import assert_matches_full
from .test_external_flows import NET, UPLINK, setup

NEED = GatewayNeed("hv1", "n1", UPLINK, None, "203.0.113.1", "203.0.113.10", extnet.floating_mac("203.0.113.10"))
GW_MAC = "02:00:00:ee:00:01"


def reply(spa="203.0.113.1", mac=GW_MAC):
    raw = bytes.fromhex(mac.replace(":", ""))
    return bytes.fromhex("02cfcb00710a") + raw + b"\x08\x06" + ga.ARP_HEADER + b"\x00\x02" + raw + \
        bytes(int(x) for x in spa.split(".")) + bytes.fromhex("02cfcb00710a") + bytes([203, 0, 113, 10])


def view_with(*needs):
    gateways = {}
    for need in needs:
        gateways.setdefault(need.session, {})[need.network_id] = need
    return SimpleNamespace(external=SimpleNamespace(gateways=gateways))


def test_the_request_asks_for_the_gateway_from_the_vrs_address():
    frame = ga.request_frame(NEED)
    assert frame[:6] == b"\xff" * 6 and frame[12:14] == b"\x08\x06" and frame[20:22] == b"\x00\x01"
    assert frame[28:32] == bytes([203, 0, 113, 10]) and frame[38:42] == bytes([203, 0, 113, 1])
    assert ga.request_actions(NEED) == [("output", UPLINK)]
    assert ga.parse_reply(frame) is None  # a request is no answer
    assert ga.parse_reply(reply()) == ("203.0.113.1", GW_MAC)


def test_answers_count_from_the_awaited_gateway_on_the_uplink_only_and_are_refreshed_and_forgotten():
    resolver, view = ga.GatewayResolver(refresh=10, timeout=30), view_with(NEED)
    assert resolver.due(view, 0) == [NEED]
    resolver.sent(NEED, 0)
    assert resolver.due(view, 5) == [] and resolver.due(view, 10) == [NEED]
    assert resolver.answer(view, "hv1", UPLINK + 1, reply(), 1) is None  # another port
    assert resolver.answer(view, "hv1", UPLINK, reply(spa="203.0.113.9"), 1) is None  # another host
    assert resolver.answer(view, "hv2", UPLINK, reply(), 1) is None  # another switch
    assert resolver.answer(view, "hv1", UPLINK, reply(), 1) == ("n1", GW_MAC)
    assert resolver.expired({("hv1", "n1"): GW_MAC}, 30) == []
    assert resolver.expired({("hv1", "n1"): GW_MAC}, 31) == [("hv1", "n1")]
    assert resolver.due(view_with(), 40) == [] and resolver.asked == {}  # no longer needed: forgotten


def test_a_mac_no_longer_needed_is_still_forgotten_after_the_timeout():
    """A VRS that stops translating to the network (its floating IP detached, the network deleted): its resolved MAC
    is no longer asked for and is forgotten once not confirmed for the timeout (before, forgetting when it was
    asked also forgot when it was heard, and the expiry then counted a full timeout from each round: never)."""
    resolver, view = ga.GatewayResolver(refresh=10, timeout=30), view_with(NEED)
    resolver.sent(NEED, 0)
    assert resolver.answer(view, "hv1", UPLINK, reply(), 1) == ("n1", GW_MAC)
    resolved = {("hv1", "n1"): GW_MAC}
    for now in range(2, 31):
        assert resolver.due(view_with(), now) == [] and resolver.expired(resolved, now) == []
    assert resolver.due(view_with(), 31) == [] and resolver.expired(resolved, 31) == [("hv1", "n1")]
    assert resolver.expired({}, 32) == [] and resolver.heard == {}  # forgotten: nothing kept for it


def test_without_a_static_mac_nothing_goes_out_until_the_gateway_answered():
    state, prog = setup({"vm0": "hv1", "vm1": "hv2", "vm2": "hv2"})
    policy = state.policy.copy()
    policy.put("external_network", dict(NET, gateway_mac=None))
    state.policy_committed(policy, [])
    prog.refresh()
    dom = state.policy.find("domain", "acme/prod")
    out = {"in_port": 10, "eth_src": "02:00:00:00:00:01", "eth_dst": dom["gateway_mac"], "eth_type": 0x0800,
           "ip_proto": 6, "tcp_src": 40000, "tcp_dst": 80, "ipv4_src": "10.0.1.10", "ipv4_dst": "198.51.100.7"}
    assert trace(prog.desired["hv1"], out) == []
    [need] = prog.view.external.gateways["hv1"].values()
    assert (need.gateway_ip, need.sender_ip) == ("203.0.113.1", "203.0.113.10")
    answer = {"in_port": UPLINK, "eth_type": 0x0806, "arp_op": 2, "arp_spa": "203.0.113.1", "arp_sha": GW_MAC,
              "eth_src": GW_MAC, "eth_dst": need.sender_mac, "arp_tpa": "203.0.113.10"}
    assert [port for port, _ in trace(prog.desired["hv1"], answer)] == ["controller"]
    state.gateway_learned("hv1", "n1", GW_MAC)
    prog.refresh()
    assert_matches_full(prog)
    [(port, sent)] = trace(prog.desired["hv1"], out)
    assert port == UPLINK and sent["eth_dst"] == GW_MAC and sent["ipv4_src"] == "203.0.113.10"
    state.gateway_learned("hv1", "n1", None)
    prog.refresh()
    assert_matches_full(prog)
    assert trace(prog.desired["hv1"], out) == []
