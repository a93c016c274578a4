"""Canopy's DHCP responder: leases from stored objects, request parsing, and the replies on the wire.

Replies are decoded here with an independent struct reader (checksums verified), not with the module's
own parser, so an encoding mistake cannot cancel itself out.
"""

from __future__ import annotations

import ipaddress
import random
import struct

import pytest

from controller.model import normalise
from openflow import dhcp

CLIENT = "02:00:00:00:00:0b"
LEASE = dhcp.Lease(client_mac=CLIENT, ip="10.0.1.11", prefix_len=24, server_ip="10.0.1.1",
                   server_mac="02:ca:00:00:00:07", router="10.0.1.1", dns_servers=("10.0.1.53", "10.0.2.53"),
                   domain_name="acme.example", lease_time=3600, mtu=1450,
                   routes=(("192.168.50.0/24", "10.0.1.254"),), ntp_servers=("10.0.1.123",))


# ------------------------------------------------------------------------------------------ builders

def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def dhcp_payload(msg_type=dhcp.DISCOVER, mac=CLIENT, xid=0x1234ABCD, flags=0, ciaddr="0.0.0.0", options=b"",
                 op=1, cookie=dhcp.MAGIC_COOKIE, end=True):
    """A BOOTREQUEST with option 53 first, then ``options`` (raw bytes), then END."""
    fixed = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", op, 1, 6, 0, xid, 0, flags,
                        ipaddress.IPv4Address(ciaddr).packed, bytes(4), bytes(4), bytes(4),
                        bytes.fromhex(mac.replace(":", "")) + bytes(10), b"", b"")
    return fixed + cookie + bytes([53, 1, msg_type]) + options + (b"\xff" if end else b"")


def frame(payload: bytes, src_mac=CLIENT, sport=68, dport=67, src_ip="0.0.0.0", dst_ip="255.255.255.255",
          vlan=None):
    """Ethernet/IPv4/UDP around ``payload`` with valid checksums."""
    udp_len = 8 + len(payload)
    src, dst = ipaddress.IPv4Address(src_ip).packed, ipaddress.IPv4Address(dst_ip).packed
    pseudo = src + dst + struct.pack("!BBH", 0, 17, udp_len)
    udp = struct.pack("!HHHH", sport, dport, udp_len, 0) + payload
    udp = udp[:6] + struct.pack("!H", _csum(pseudo + udp) or 0xFFFF) + udp[8:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 1, 0, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    tag = struct.pack("!HH", 0x8100, vlan) if vlan is not None else b""
    return b"\xff" * 6 + bytes.fromhex(src_mac.replace(":", "")) + tag + b"\x08\x00" + ip + udp


def request(msg_type=dhcp.DISCOVER, **kw):
    parsed = dhcp.parse_request(frame(dhcp_payload(msg_type, **kw)))
    assert parsed is not None
    return parsed


def opt(tag, value: bytes) -> bytes:
    return bytes([tag, len(value)]) + value


def ip_opt(tag, address) -> bytes:
    return opt(tag, ipaddress.IPv4Address(address).packed)


def decode(wire: bytes) -> dict:
    """Every field of a reply frame; asserts the IPv4 and UDP checksums and lengths are right."""
    eth_dst, eth_src, eth_type = wire[0:6].hex(":"), wire[6:12].hex(":"), struct.unpack("!H", wire[12:14])[0]
    ip = wire[14:34]
    assert eth_type == 0x0800 and ip[0] == 0x45 and _csum(ip) == 0, "IPv4 header checksum"
    total, ttl, proto = struct.unpack("!H", ip[2:4])[0], ip[8], ip[9]
    assert total == len(wire) - 14 and proto == 17
    udp = wire[34:14 + total]
    sport, dport, udp_len, udp_sum = struct.unpack("!HHHH", udp[:8])
    assert udp_len == len(udp) and udp_sum != 0
    assert _csum(ip[12:20] + struct.pack("!BBH", 0, 17, udp_len) + udp) == 0, "UDP checksum"
    bootp = udp[8:]
    assert len(bootp) >= 300 and bootp[236:240] == dhcp.MAGIC_COOKIE
    op, htype, hlen, hops, xid, secs, flags = struct.unpack("!BBBBIHH", bootp[:12])
    options, order, i = {}, [], 240
    while bootp[i] != 255:
        if bootp[i] == 0:
            i += 1
            continue
        tag, length = bootp[i], bootp[i + 1]
        options[tag] = options.get(tag, b"") + bootp[i + 2:i + 2 + length]
        order.append(tag)
        i += 2 + length
    assert not bootp[i + 1:].strip(b"\0"), "only padding after END"
    addr = lambda raw: str(ipaddress.IPv4Address(raw))  # noqa: E731
    return {"eth_dst": eth_dst, "eth_src": eth_src, "ip_src": addr(ip[12:16]), "ip_dst": addr(ip[16:20]),
            "ttl": ttl, "sport": sport, "dport": dport, "op": op, "htype": htype, "hlen": hlen, "hops": hops,
            "xid": xid, "flags": flags, "ciaddr": addr(bootp[12:16]), "yiaddr": addr(bootp[16:20]),
            "siaddr": addr(bootp[20:24]), "giaddr": addr(bootp[24:28]), "chaddr": bootp[28:34].hex(":"),
            "options": options, "order": order}


def ips(raw: bytes) -> list[str]:
    return [str(ipaddress.IPv4Address(raw[i:i + 4])) for i in range(0, len(raw), 4)]


def u32(raw: bytes) -> int:
    return struct.unpack("!I", raw)[0]


# ------------------------------------------------------------------------------------------ lease_for

def _subnet(**dhcp_cfg):
    return normalise("subnet", {"tenant_id": "t", "domain_id": "d", "name": "web", "cidr": "10.0.1.0/24",
                                "gateway": "10.0.1.1", "dhcp": dhcp_cfg})


def _vport(ips=("10.0.1.11",), mac="02:00:00:00:00:0B"):
    return normalise("vport", {"subnet_id": "s", "name": "vm1", "mac": mac, "ips": list(ips),
                               "binding": {"flavour": "kvm"}})


DOMAIN = {"id": "d", "gateway_mac": "02:ca:00:00:00:07"}


def test_lease_for_a_routed_subnet_uses_every_configured_option():
    subnet = _subnet(dns_servers=["10.0.1.53"], domain_name="acme.example", lease_time=3600, mtu=1400,
                     ntp_servers=["10.0.1.123"], routes=[{"prefix": "192.168.50.0/24", "next_hop": "10.0.1.254"}])
    lease = dhcp.lease_for(subnet, _vport(), DOMAIN, underlay_mtu=1500)
    assert lease == dhcp.Lease(client_mac=CLIENT, ip="10.0.1.11", prefix_len=24, server_ip="10.0.1.1",
                               server_mac="02:ca:00:00:00:07", router="10.0.1.1", dns_servers=("10.0.1.53",),
                               domain_name="acme.example", lease_time=3600, mtu=1400,
                               routes=(("192.168.50.0/24", "10.0.1.254"),), ntp_servers=("10.0.1.123",))
    assert lease.netmask == "255.255.255.0"


def test_lease_for_defaults_mtu_to_underlay_minus_vxlan_and_lease_to_a_day():
    lease = dhcp.lease_for(_subnet(), _vport(), DOMAIN, underlay_mtu=9000)
    assert lease.mtu == 8950 and lease.lease_time == 86400
    assert lease.dns_servers == () and lease.domain_name is None and lease.routes == () and lease.ntp_servers == ()


def test_lease_for_returns_none_when_disabled_without_cidr_or_without_ip():
    assert dhcp.lease_for(_subnet(enabled=False), _vport(), DOMAIN, 1500) is None
    assert dhcp.lease_for(_subnet(), _vport(ips=()), DOMAIN, 1500) is None
    assert dhcp.lease_for(_subnet(), _vport(ips=("10.9.9.9",)), DOMAIN, 1500) is None
    no_cidr = normalise("subnet", {"tenant_id": "t", "name": "l2"})
    assert dhcp.lease_for(no_cidr, _vport(), None, 1500) is None


def test_lease_for_an_l2_only_subnet_has_no_router_and_the_fixed_server_mac():
    subnet = normalise("subnet", {"tenant_id": "t", "name": "l2", "cidr": "10.0.9.0/24"})
    lease = dhcp.lease_for(subnet, _vport(ips=("10.0.9.5",)), None, 1500)
    assert lease.router is None and lease.server_mac == dhcp.L2_SERVER_MAC
    assert lease.server_ip == "10.0.9.254"  # no gateway: the last host address identifies the server
    wire = decode(dhcp.reply(request(), lease))
    assert dhcp.ROUTER not in wire["options"] and wire["eth_src"] == dhcp.L2_SERVER_MAC


def test_l2_server_mac_is_locally_administered_unicast():
    assert int(dhcp.L2_SERVER_MAC[:2], 16) & 0b11 == 0b10


# ------------------------------------------------------------------------------------------ parsing

def test_parse_request_reads_every_field():
    options = (ip_opt(50, "10.0.1.11") + ip_opt(54, "10.0.1.1") + opt(61, b"\x01\x02\x00\x00\x00\x00\x0b")
               + opt(55, bytes([1, 3, 6, 15, 26, 121])))
    req = dhcp.parse_request(frame(dhcp_payload(dhcp.REQUEST, flags=0x8000, options=options)))
    assert req == dhcp.Request(message_type=dhcp.REQUEST, xid=0x1234ABCD, chaddr=CLIENT, eth_src=CLIENT,
                               flags=0x8000, ciaddr="0.0.0.0", giaddr="0.0.0.0", requested_ip="10.0.1.11",
                               server_id="10.0.1.1", client_id=b"\x01\x02\x00\x00\x00\x00\x0b",
                               param_request_list=(1, 3, 6, 15, 26, 121))
    assert req.broadcast and "DHCPREQUEST xid=0x1234abcd" in req.describe()


@pytest.mark.parametrize("msg_type", [dhcp.DISCOVER, dhcp.REQUEST, dhcp.DECLINE, dhcp.RELEASE, dhcp.INFORM])
def test_parse_request_accepts_every_client_message(msg_type):
    assert dhcp.parse_request(frame(dhcp_payload(msg_type))).message_type == msg_type


def test_parse_request_skips_pad_joins_split_options_and_accepts_a_vlan_tag():
    options = b"\x00\x00" + opt(55, b"\x01\x03") + b"\x00" + opt(55, b"\x06") + ip_opt(50, "10.0.1.11")
    req = dhcp.parse_request(frame(dhcp_payload(dhcp.REQUEST, options=options), vlan=100))
    assert req.param_request_list == (1, 3, 6) and req.requested_ip == "10.0.1.11"
    assert dhcp.parse_request(frame(dhcp_payload(end=False))) is not None  # no END: tolerated


@pytest.mark.parametrize("wire", [
    pytest.param(frame(dhcp_payload(), sport=67, dport=68), id="server-to-client ports"),
    pytest.param(frame(dhcp_payload(), sport=68, dport=53), id="not port 67"),
    pytest.param(frame(dhcp_payload(op=2)), id="BOOTREPLY"),
    pytest.param(frame(dhcp_payload(cookie=b"ABCD")), id="bad magic cookie"),
    pytest.param(frame(dhcp_payload(msg_type=dhcp.OFFER)), id="server message type"),
    pytest.param(frame(dhcp_payload(msg_type=99)), id="unknown message type"),
    pytest.param(frame(dhcp_payload()[:239]), id="bootp shorter than the cookie"),
    pytest.param(frame(dhcp_payload(options=bytes([50, 9, 1]))), id="truncated option"),
    pytest.param(frame(dhcp_payload(options=opt(50, b"\x0a\x00\x01"))), id="requested ip of 3 bytes"),
    pytest.param(frame(dhcp_payload(options=opt(54, b""))), id="empty server id"),
    pytest.param(frame(dhcp_payload()[:236] + dhcp.MAGIC_COOKIE + b"\xff"), id="no message type"),
    pytest.param(frame(dhcp_payload())[:12] + b"\x86\xdd" + frame(dhcp_payload())[14:], id="not IPv4"),
    pytest.param(b"", id="empty"),
    pytest.param(b"\xff" * 13, id="shorter than ethernet"),
])
def test_parse_request_refuses_what_is_not_a_client_dhcp_message(wire):
    assert dhcp.parse_request(wire) is None


def test_parse_request_refuses_fragments_and_lying_lengths():
    good = bytearray(frame(dhcp_payload()))
    fragment = bytearray(good)
    fragment[20:22] = b"\x20\x00"  # more fragments
    too_long_ip = bytearray(good)
    too_long_ip[16:18] = struct.pack("!H", len(good))
    too_long_udp = bytearray(good)
    too_long_udp[38:40] = struct.pack("!H", len(good))
    for wire in (fragment, too_long_ip, too_long_udp, good[:-1]):
        assert dhcp.parse_request(bytes(wire)) is None
    assert dhcp.parse_request(None) is None and dhcp.parse_request("text") is None


def test_parse_request_never_raises_on_truncations_mutations_or_random_bytes():
    rng = random.Random(20240531)
    good = frame(dhcp_payload(dhcp.REQUEST, options=ip_opt(50, "10.0.1.11") + opt(55, b"\x01\x03")))
    candidates = [good[:n] for n in range(len(good))]
    for _ in range(3000):
        mutated = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        candidates.append(bytes(mutated))
    for _ in range(1000):  # well-framed, garbage options
        candidates.append(frame(dhcp_payload(options=rng.randbytes(rng.randint(0, 80)), end=rng.random() < 0.5)))
    for _ in range(1000):
        candidates.append(rng.randbytes(rng.randint(0, 700)))
    parsed = 0
    for wire in candidates:
        req = dhcp.parse_request(wire)  # must not raise
        if req is not None:
            parsed += 1
            dhcp.reply(req, dhcp.Lease(**{**LEASE.__dict__, "client_mac": req.chaddr}))  # nor must replying
    assert parsed > 100  # the loop did reach the reply path


# ------------------------------------------------------------------------------------------ replies

def test_offer_carries_every_option_with_the_right_encoding():
    wire = decode(dhcp.reply(request(dhcp.DISCOVER, flags=0x8000), LEASE))
    assert (wire["op"], wire["htype"], wire["hlen"], wire["hops"]) == (2, 1, 6, 0)
    assert wire["xid"] == 0x1234ABCD and wire["chaddr"] == CLIENT and wire["flags"] == 0x8000
    assert (wire["yiaddr"], wire["ciaddr"], wire["siaddr"], wire["giaddr"]) == ("10.0.1.11", "0.0.0.0",
                                                                                "0.0.0.0", "0.0.0.0")
    o = wire["options"]
    assert o[53] == bytes([dhcp.OFFER]) and wire["order"][0] == 53
    assert ips(o[54]) == ["10.0.1.1"] and ips(o[1]) == ["255.255.255.0"] and ips(o[3]) == ["10.0.1.1"]
    assert ips(o[6]) == ["10.0.1.53", "10.0.2.53"] and o[15] == b"acme.example" and ips(o[42]) == ["10.0.1.123"]
    assert struct.unpack("!H", o[26])[0] == 1450
    assert (u32(o[51]), u32(o[58]), u32(o[59])) == (3600, 1800, 3150)
    assert o[121] == bytes([24, 192, 168, 50, 10, 0, 1, 254, 0, 10, 0, 1, 1])
    assert set(o) == {1, 3, 6, 15, 26, 42, 51, 53, 54, 58, 59, 121}


def test_reply_frame_comes_from_the_gateway_with_ttl_64():
    wire = decode(dhcp.reply(request(dhcp.DISCOVER, flags=0x8000), LEASE))
    assert (wire["eth_src"], wire["ip_src"], wire["ttl"]) == ("02:ca:00:00:00:07", "10.0.1.1", 64)
    assert (wire["sport"], wire["dport"]) == (67, 68)


def test_options_a_lease_does_not_have_are_left_out():
    bare = dhcp.Lease(client_mac=CLIENT, ip="10.0.9.5", prefix_len=22, server_ip="10.0.11.254",
                      server_mac=dhcp.L2_SERVER_MAC)
    o = decode(dhcp.reply(request(), bare))["options"]
    assert set(o) == {1, 51, 53, 54, 58, 59} and ips(o[1]) == ["255.255.252.0"]


def test_routes_without_a_router_carry_no_default_route():
    lease = dhcp.Lease(**{**LEASE.__dict__, "router": None})
    o = decode(dhcp.reply(request(), lease))["options"]
    assert 3 not in o and o[121] == bytes([24, 192, 168, 50, 10, 0, 1, 254])


@pytest.mark.parametrize("prefix, descriptor", [  # RFC 3442 section 5's table
    ("0.0.0.0/0", [0]),
    ("10.0.0.0/8", [8, 10]),
    ("10.0.0.0/24", [24, 10, 0, 0]),
    ("10.17.0.0/16", [16, 10, 17]),
    ("10.27.129.0/24", [24, 10, 27, 129]),
    ("10.229.0.128/25", [25, 10, 229, 0, 128]),
    ("10.198.122.47/32", [32, 10, 198, 122, 47]),
])
def test_classless_route_encoding_matches_rfc_3442(prefix, descriptor):
    assert dhcp.classless_routes([(prefix, "192.0.2.1")], None) == bytes(descriptor + [192, 0, 2, 1])


def test_long_options_are_split_into_repeated_options():
    routes = tuple((f"172.16.{i}.0/24", "10.0.1.254") for i in range(40))  # 40 * 8 + 5 = 325 bytes
    lease = dhcp.Lease(**{**LEASE.__dict__, "routes": routes})
    wire = decode(dhcp.reply(request(), lease))
    assert wire["order"].count(121) == 2
    assert wire["options"][121] == dhcp.classless_routes(routes, "10.0.1.1")


def test_request_for_the_lease_ip_is_acked_with_the_lease():
    req = request(dhcp.REQUEST, options=ip_opt(50, "10.0.1.11") + ip_opt(54, "10.0.1.1"))
    wire = decode(dhcp.reply(req, LEASE))
    o = wire["options"]
    assert o[53] == bytes([dhcp.ACK]) and wire["yiaddr"] == "10.0.1.11" and u32(o[51]) == 3600
    assert 121 in o and 26 in o


def test_init_reboot_and_renewing_requests_are_judged_by_their_address():
    reboot = request(dhcp.REQUEST, options=ip_opt(50, "10.0.1.11"))
    renew = request(dhcp.REQUEST, ciaddr="10.0.1.11")
    wrong_reboot = request(dhcp.REQUEST, options=ip_opt(50, "10.0.1.99"))
    wrong_renew = request(dhcp.REQUEST, ciaddr="10.0.7.7")
    nothing_asked = request(dhcp.REQUEST)
    assert [dhcp.request_verdict(r, LEASE) for r in (reboot, renew, wrong_reboot, wrong_renew, nothing_asked)] == \
        [dhcp.ACK, dhcp.ACK, dhcp.NAK, dhcp.NAK, dhcp.NAK]


def test_nak_is_broadcast_and_carries_only_type_and_server_id():
    req = request(dhcp.REQUEST, ciaddr="10.0.7.7")
    wire = decode(dhcp.reply(req, LEASE))
    assert set(wire["options"]) == {53, 54} and wire["options"][53] == bytes([dhcp.NAK])
    assert (wire["yiaddr"], wire["ciaddr"]) == ("0.0.0.0", "0.0.0.0")
    assert (wire["ip_dst"], wire["eth_dst"]) == ("255.255.255.255", "ff:ff:ff:ff:ff:ff")


def test_request_selecting_another_server_gets_no_answer():
    req = request(dhcp.REQUEST, options=ip_opt(50, "10.0.1.11") + ip_opt(54, "10.0.1.2"))
    assert dhcp.request_verdict(req, LEASE) is None and dhcp.reply(req, LEASE) is None


def test_inform_is_acked_without_address_or_lease_time():
    wire = decode(dhcp.reply(request(dhcp.INFORM, ciaddr="10.0.1.11"), LEASE))
    o = wire["options"]
    assert o[53] == bytes([dhcp.ACK]) and wire["yiaddr"] == "0.0.0.0" and wire["ciaddr"] == "10.0.1.11"
    assert not {51, 58, 59} & set(o) and {1, 3, 6, 15, 26, 42, 54, 121} <= set(o)
    assert (wire["ip_dst"], wire["eth_dst"]) == ("10.0.1.11", CLIENT)


@pytest.mark.parametrize("msg_type", [dhcp.RELEASE, dhcp.DECLINE])
def test_release_and_decline_get_no_answer(msg_type):
    assert dhcp.reply(request(msg_type, ciaddr="10.0.1.11"), LEASE) is None


def test_a_request_from_another_mac_gets_no_answer():
    assert dhcp.reply(request(mac="02:00:00:00:00:99"), LEASE) is None


@pytest.mark.parametrize("kw, ip_dst, eth_dst", [
    ({"ciaddr": "10.0.1.11", "flags": 0x8000}, "10.0.1.11", CLIENT),  # ciaddr wins over the flag
    ({"flags": 0x8000}, "255.255.255.255", "ff:ff:ff:ff:ff:ff"),
    ({}, "10.0.1.11", CLIENT),
])
def test_addressing_follows_rfc_2131_section_4_1(kw, ip_dst, eth_dst):
    options = ip_opt(50, "10.0.1.11") if not kw.get("ciaddr") else b""
    for msg_type in (dhcp.DISCOVER, dhcp.REQUEST):
        wire = decode(dhcp.reply(request(msg_type, options=options, **kw), LEASE))
        assert (wire["ip_dst"], wire["eth_dst"]) == (ip_dst, eth_dst)


def test_ack_echoes_ciaddr_and_offer_does_not():
    renew = decode(dhcp.reply(request(dhcp.REQUEST, ciaddr="10.0.1.11"), LEASE))
    offer = decode(dhcp.reply(request(dhcp.DISCOVER, ciaddr="10.0.1.11"), LEASE))
    assert renew["ciaddr"] == "10.0.1.11" and offer["ciaddr"] == "0.0.0.0"


def test_a_udp_checksum_that_sums_to_zero_is_sent_as_all_ones():
    # The xid is a 16-bit-aligned word of the UDP payload: with xid = the checksum sent for xid 0, the
    # ones'-complement sum becomes 0xFFFF and the computed checksum 0, which RFC 768 sends as 0xFFFF.
    xid = struct.unpack("!H", dhcp.reply(request(xid=0), LEASE)[40:42])[0]
    wire = dhcp.reply(request(xid=xid), LEASE)
    assert wire[40:42] == b"\xff\xff"
    decode(wire)
