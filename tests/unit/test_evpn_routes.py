"""EVPN route model: fixtures captured from ExaBGP 5.0.15 / GoBGP 3.10, commands, bad input."""

import json
import logging

import pytest

import bgp.routes as routes_module
from bgp.received import decode_nlri, from_exabgp_json
from bgp.routes import (
    InclusiveMulticastRoute,
    IpPrefixRoute,
    MacIpRoute,
    parse_command,
    route_from_dict,
    route_to_dict,
    to_command,
)
from tests.unit.evpn_fixtures import fixture_text as fixture, fixtures_dir


def only(message) -> tuple:
    results = from_exabgp_json(message)
    assert len(results) == 1, results
    return results[0]


def test_type2_single_label_with_router_mac():
    action, route = only(fixture("rx_type2_macadv.json"))
    assert action == "announce"
    assert route == MacIpRoute(
        rd="65001:100", mac="52:54:00:aa:bb:cc", ip="10.1.0.9", l2_vni=5001, next_hop="127.0.0.2",
        route_targets=("65001:5001",), router_mac="02:00:00:00:00:02",
    )
    assert route.l3_vni is None and route.encapsulation == "vxlan"


def test_type2_second_label_comes_from_raw_hex():
    _, route = only(fixture("rx_type2_two_labels.json"))
    assert (route.l2_vni, route.l3_vni) == (5001, 9001)
    assert route.route_targets == ("65001:9001",)
    assert route.mac == "52:54:00:aa:bb:dd" and route.ip == "10.1.0.10"


def test_type2_withdraw_repeats_the_announced_key():
    _, announced = only(fixture("rx_type2_macadv.json"))
    action, withdrawn = only(fixture("rx_type2_withdraw.json"))
    assert action == "withdraw"
    assert withdrawn == announced.key


def test_type3_vni_from_pmsi_string():
    action, route = only(fixture("rx_type3_multicast_pmsi.json"))
    assert action == "announce"
    assert route == InclusiveMulticastRoute(
        rd="65001:100", vni=5001, next_hop="127.0.0.2", route_targets=("65001:5001",))
    assert route.originator == "127.0.0.2"


def test_type5_prefix():
    _, route = only(fixture("rx_type5_prefix.json"))
    assert route == IpPrefixRoute(
        rd="65001:100", prefix="10.2.0.0/24", l3_vni=5001, next_hop="127.0.0.2",
        route_targets=("65001:5001",), router_mac="02:00:00:00:00:02",
    )


def test_every_fixture_decodes_to_one_route():
    paths = sorted(fixtures_dir().glob("rx_*.json"))
    assert paths, f"no rx_*.json in {fixtures_dir()}"
    for path in paths:
        assert len(from_exabgp_json(json.loads(path.read_text()))) == 1, path.name


VXLAN = (0x030C000000000008, "encap:VXLAN")


def test_mac_mobility_and_ip_rt_and_4byte_rt():
    message = _update(
        [(0x0600000000000007, ""), (0x0102C000020100C8, ""), (0x0202000186A00064, ""), VXLAN],
        "02250000FDE900000064000000000000000000000000000030525400AABBCC200A010009001389",
    )
    _, route = only(message)
    assert route.mobility_seq == 7
    assert route.route_targets == ("192.0.2.1:200", "100000:100")


ROUTES = [
    MacIpRoute(rd="65000:100", mac="52:54:00:12:34:56", ip="10.1.0.5", l2_vni=5001, l3_vni=9001,
               next_hop="192.0.2.1", route_targets=("65000:5001", "65000:9001"),
               router_mac="02:00:00:00:00:01", mobility_seq=3),
    MacIpRoute(rd="192.0.2.1:7", mac="52:54:00:12:34:57", l2_vni=16777215, next_hop="2001:db8::1",
               esi=1, ethernet_tag=10),
    InclusiveMulticastRoute(rd="65000:100", vni=5001, next_hop="192.0.2.1", route_targets=("65000:5001",)),
    IpPrefixRoute(rd="4200000000:1", prefix="10.1.0.0/24", l3_vni=9001, next_hop="192.0.2.1",
                  router_mac="02:00:00:00:00:01"),
    IpPrefixRoute(rd="65000:1", prefix="2001:db8:1::/48", gateway="::", l3_vni=9001, next_hop="2001:db8::1"),
]


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: type(r).__name__)
@pytest.mark.parametrize("action", ["announce", "withdraw"])
def test_command_round_trip(route, action):
    line = to_command(route, action, neighbor="127.0.0.2")
    assert line.startswith(f"neighbor 127.0.0.2 {action} evpn {{") and "\n" not in line
    assert " " not in line.split(" evpn ", 1)[1], "payload must have no spaces (ExaBGP dispatch)"
    assert parse_command(line) == ("127.0.0.2", action, route)
    assert parse_command(to_command(route, action)) == (None, action, route)


def test_normalisation_and_key():
    route = MacIpRoute(rd="65000:100", mac="52:54:00:AA:BB:CC", l2_vni=1, next_hop="192.0.2.1")
    assert route.mac == "52:54:00:aa:bb:cc"
    assert route.key == (2, "65000:100", 0, "52:54:00:aa:bb:cc", None)  # RFC 7432 7.2: no ESI, no labels
    assert IpPrefixRoute(rd="1:1", prefix="10.1.0.0/24", l3_vni=1, next_hop="192.0.2.1", esi=5).key == \
        (5, "1:1", 0, "10.1.0.0/24")  # RFC 9136: no ESI, gateway or label
    assert IpPrefixRoute(rd="1:1", prefix="10.1.0.7/24", l3_vni=1, next_hop="192.0.2.1").prefix == "10.1.0.0/24"


@pytest.mark.parametrize("bad", [
    dict(mac="52:54:00:12:34"), dict(l2_vni=1 << 24), dict(l2_vni=True), dict(next_hop="vtep"),
    dict(rd="100"), dict(rd="70000:70000"), dict(route_targets=("x:1",)), dict(encapsulation="mpls"),
    dict(router_mac="zz"), dict(esi=-1),
])
def test_invalid_routes_are_refused(bad):
    fields = dict(rd="65000:100", mac="52:54:00:12:34:56", l2_vni=5001, next_hop="192.0.2.1") | bad
    with pytest.raises(ValueError):
        MacIpRoute(**fields)


@pytest.mark.parametrize("line", [
    "announce evpn", "announce route 10.0.0.0/8 next-hop 1.2.3.4", "announce evpn {not json}",
    'announce evpn {"type":4}', 'announce evpn {"type":3,"rd":"1:1","vni":1,"next_hop":"1.1.1.1","x":1}',
    'announce evpn {"type":3,"rd":"1:1"}', 'announce evpn []', 'flush evpn {"type":3}',
    'announce evpn {"type":3,"rd":"1:1","vni":1,"next_hop":"1.1.1.1","route_targets":"1:1"}',
])
def test_bad_commands_raise_value_error(line):
    with pytest.raises(ValueError):
        parse_command(line)


def test_to_command_refuses_unknown_action():
    with pytest.raises(ValueError):
        to_command(ROUTES[0], "replace")
    with pytest.raises(ValueError):
        route_from_dict({"type": 2})


def _update(communities, raw, next_hop="192.0.2.9", pmsi=None):
    attribute = {"extended-community": [{"value": v, "string": s} for v, s in communities]}
    if pmsi is not None:
        attribute["pmsi"] = pmsi
    nlri = {"code": int(raw[:2], 16), "parsed": True, "raw": raw}
    return {"type": "update", "neighbor": {"message": {"update": {
        "attribute": attribute, "announce": {"l2vpn evpn": {next_hop: [nlri]}}}}}}


@pytest.mark.parametrize("message", [
    "", "not json", "[]", "{}", {"type": "state"}, {"neighbor": {"message": {"update": []}}},
    {"neighbor": {"message": {"update": {"announce": {"l2vpn evpn": []}}}}},
    {"neighbor": {"message": {"update": {"announce": {"ipv4 unicast": {"1.1.1.1": [{"nlri": "10.0.0.0/8"}]}}}}}},
    _update([], "0225"),                                          # truncated NLRI
    _update([], "02250000FDE9000000640000"),                      # length disagrees
    _update([], "01190000FDE9000000640000000000000000000000000000000000000000"),  # type 1: ignored
    _update([(0x030C000000000002, "encap:GRE")],                  # not VXLAN
            "02250000FDE900000064000000000000000000000000000030525400AABBCC200A010009001389"),
    _update([], "02250000FDE900000064000000000000000000000000000018525400AABBCC200A010009001389"),
    _update([], "03110000FDE90000006400000000207F000002", pmsi="pmsi:rsvp:0:0:x"),  # no VNI found
    _update([("x", "")], "03110000FDE90000006400000000207F000002"),
])
def test_malformed_input_is_skipped_not_raised(message, caplog):
    caplog.set_level(logging.DEBUG, logger="bgp.routes")
    assert from_exabgp_json(message) == []


def test_one_bad_route_does_not_hide_the_good_one():
    good = "02250000FDE900000064000000000000000000000000000030525400AABBCC200A010009001389"
    message = _update([VXLAN], good)
    nlris = message["neighbor"]["message"]["update"]["announce"]["l2vpn evpn"]["192.0.2.9"]
    nlris.insert(0, {"code": 2, "raw": "02FF"})
    assert [r.mac for _, r in from_exabgp_json(message)] == ["52:54:00:aa:bb:cc"]


def test_decode_nlri_reads_both_labels():
    raw = bytes.fromhex("02280000FDE900000064000000000000000000000000000030525400AABBDD200A01000A001389002329")
    fields = decode_nlri(raw)
    assert (fields["l2_vni"], fields["l3_vni"], fields["rd"]) == (5001, 9001, "65001:100")


def test_decode_nlri_reads_any_bytes_like_input_and_refuses_other_input_clearly():
    raw = bytes.fromhex("02280000FDE900000064000000000000000000000000000030525400AABBDD200A01000A001389002329")
    multicast = bytes.fromhex("03110000FDE90000006400000000207F000002")
    for data in (raw, multicast):
        assert decode_nlri(bytearray(data)) == decode_nlri(memoryview(data)) == decode_nlri(data)
    for bad in (raw.hex(), 7, None, [2, 0]):
        with pytest.raises(TypeError, match=f"^EVPN NLRI: bytes expected, not {type(bad).__name__}$"):
            decode_nlri(bad)


@pytest.mark.parametrize("route_type", [2, 3])
def test_ipv4_fields_are_read_without_ipaddress_objects_and_read_as_before(route_type, monkeypatch):
    """An IPv4 RD, IP or next hop in a received NLRI is formatted from its bytes (building an ipaddress object
    per field was a fifth of handling a received withdrawal): the same text as ``ipaddress`` gives."""
    import ipaddress
    import random

    import bgp.received

    rng = random.Random(7)
    samples = [bytes(rng.randrange(256) for _ in range(4)) for _ in range(200)] + [bytes(4), b"\xff" * 4]
    expected = [str(ipaddress.IPv4Address(sample)) for sample in samples]
    monkeypatch.setattr(bgp.received.ipaddress, "ip_address", lambda data: pytest.fail("ipaddress used"))
    monkeypatch.setattr(bgp.received.ipaddress, "IPv4Address", lambda data: pytest.fail("ipaddress used"))
    for sample, text in zip(samples, expected):
        rd = b"\x00\x01" + sample + b"\x00\x07"
        if route_type == 2:  # MAC/IP: RD type 1, ESI, tag, MAC, the IPv4 address, one label
            value = rd + bytes(10) + bytes(4) + b"\x30" + bytes(6) + b"\x20" + sample + b"\x00\x17\x71"
            fields = decode_nlri(bytes([2, len(value)]) + value)
            assert (fields["rd"], fields["ip"]) == (f"{text}:7", text)
        else:  # inclusive multicast: RD type 1, tag, the originating router's IPv4 address
            value = rd + bytes(4) + b"\x20" + sample
            fields = decode_nlri(bytes([3, len(value)]) + value)
            assert (fields["rd"], fields["next_hop"]) == (f"{text}:7", text)


def test_a_route_for_another_host_equals_one_built_whole_and_checks_the_host():
    first = MacIpRoute(rd="65000:100", mac="52:54:00:12:34:56", ip="10.0.0.5", l2_vni=5001, next_hop="192.0.2.1",
                       route_targets=("65000:1", "65000:2"), l3_vni=9001, router_mac="02:00:00:00:00:01",
                       mobility_seq=3)
    for mac, ip in (("52:54:00:AA:BB:CC", "10.0.0.6"), ("52:54:00:aa:bb:cd", None), ("52:54:00:aa:bb:ce", "::1")):
        other = first.with_host(mac, ip)
        whole = MacIpRoute(**(vars(first) | {"mac": mac, "ip": ip}))
        assert other == whole and vars(other) == vars(whole) and other.key == whole.key
        assert to_command(other, "announce") == to_command(whole, "announce")
    assert first.mac == "52:54:00:12:34:56" and first.ip == "10.0.0.5"  # the first is left as it was
    with pytest.raises(ValueError, match="^mac: "):
        first.with_host("52:54:00:12:34", None)
    with pytest.raises(ValueError, match="^ip: "):
        first.with_host("52:54:00:12:34:57", "10.0.0.300")


def test_an_ipv4_address_as_written_normalised_is_kept_and_any_other_is_read_by_ipaddress():
    import ipaddress

    for text in ("0.0.0.0", "10.0.0.5", "255.255.255.255", "192.168.1.10", "::ffff:10.0.0.5", "2001:DB8::1"):
        route = MacIpRoute(rd="1:1", mac="52:54:00:12:34:56", l2_vni=1, next_hop=text, ip=text)
        address = ipaddress.ip_address(text)
        assert route.ip == route.next_hop == str(getattr(address, "ipv4_mapped", None) or address)
    for bad in ("10.0.0.256", "10.0.0", "10.0.0.5.1", "010.0.0.5", "10.0.0.5\n", " 10.0.0.5", "10.0.0.٥", "1e1.0.0.1"):
        with pytest.raises(ValueError, match="^ip: "):
            MacIpRoute(rd="1:1", mac="52:54:00:12:34:56", l2_vni=1, next_hop="192.0.2.1", ip=bad)


def test_a_route_as_a_dict_lists_its_fields_in_order_after_its_type():
    """A type 2's ``sticky`` and a type 3's ``tunnel`` only when set: Canopy announces neither, and its command
    texts stay as they were."""
    plain = MacIpRoute(rd="1:1", mac="52:54:00:12:34:56", l2_vni=1, next_hop="192.0.2.1", route_targets=("1:2",))
    flood = InclusiveMulticastRoute(rd="1:1", vni=1, next_hop="192.0.2.1")
    tunnelled = InclusiveMulticastRoute(**{**vars(flood), "tunnel": "192.0.2.9"})
    for route, unset in ((plain, {"sticky"}), (MacIpRoute(**{**vars(plain), "sticky": True}), set()),
                         (flood, {"tunnel"}), (tunnelled, set()),
                         (IpPrefixRoute(rd="1:1", prefix="10.0.0.0/24", l3_vni=1, next_hop="192.0.2.1"), set())):
        data = route_to_dict(route)
        assert list(data) == ["type", *(name for name in route.__dataclass_fields__ if name not in unset)]
        assert data["route_targets"] == list(route.route_targets) and route_from_dict(data) == route
    with pytest.raises(ValueError, match="^sticky: "):
        MacIpRoute(**{**vars(plain), "sticky": 1})
    with pytest.raises(ValueError, match="^tunnel: "):
        InclusiveMulticastRoute(**{**vars(flood), "tunnel": "192.0.2"})
    same = InclusiveMulticastRoute(**{**vars(flood), "tunnel": "192.0.2.1"})
    assert same == flood and same.tunnel is None and same.vtep == "192.0.2.1"  # equal to the originator: left out


def test_ipv4_addresses_written_normalised_are_not_parsed_by_ipaddress(monkeypatch):
    """10,000 vports bound at once: each route's new IP is checked without building an ``ipaddress`` object."""
    import ipaddress

    def refuse(value):
        raise AssertionError(f"ipaddress parsed {value!r}")

    monkeypatch.setattr(ipaddress, "ip_address", refuse)
    route = MacIpRoute(rd="1:1", mac="52:54:00:12:34:56", l2_vni=1, next_hop="198.51.100.77", ip="203.0.113.201")
    assert (route.next_hop, route.ip) == ("198.51.100.77", "203.0.113.201")


def test_an_ipv4_address_in_a_str_subclass_comes_back_a_plain_str():
    """The fast check returns its input as it is: only a plain ``str`` may take it (a subclass could compare, hash
    or print otherwise than the address it spells)."""

    class Text(str):
        pass

    route = MacIpRoute(rd="1:1", mac="52:54:00:12:34:56", l2_vni=1, next_hop=Text("192.0.2.1"), ip=Text("10.0.0.5"))
    assert (route.ip, route.next_hop) == ("10.0.0.5", "192.0.2.1")
    assert (type(route.ip), type(route.next_hop)) == (str, str)


@pytest.mark.parametrize("field", ["mac", "router_mac"])
def test_a_mac_with_a_trailing_newline_is_refused_naming_the_field(field):
    """``$`` matches before a final newline: the MAC check matches the whole text (a route, ``with_host`` and
    ``route_from_dict`` alike)."""
    fields = {"rd": "1:1", "mac": "52:54:00:12:34:56", "l2_vni": 1, "next_hop": "192.0.2.1"}
    with pytest.raises(ValueError, match=f"^{field}: "):
        MacIpRoute(**fields | {field: "52:54:00:12:34:57\n"})
    with pytest.raises(ValueError, match=f"^{field}: "):
        route_from_dict({"type": 2, **fields, field: "52:54:00:12:34:57\n"})
    if field == "mac":
        with pytest.raises(ValueError, match="^mac: "):
            MacIpRoute(**fields).with_host("52:54:00:12:34:57\n", None)


@pytest.mark.parametrize("text", ["1:\u00b2", "1:\u0665", "\u0661:5", "192.0.2.1:\u0665"])
def test_a_route_distinguisher_or_target_in_other_than_ascii_digits_is_refused_naming_the_field(text):
    """``str.isdigit`` takes digits of other scripts and superscripts: the first were read as ASCII ones, the
    second failed in ``int`` with a message naming no field."""
    with pytest.raises(ValueError, match="^rd: "):
        MacIpRoute(rd=text, mac="52:54:00:12:34:56", l2_vni=1, next_hop="192.0.2.1")
    with pytest.raises(ValueError, match="^route_targets: "):
        MacIpRoute(rd="1:1", mac="52:54:00:12:34:56", l2_vni=1, next_hop="192.0.2.1", route_targets=(text,))


@pytest.mark.parametrize("text", ["fe80::1%eth0", 'fe80::1%a"b\\c', "fe80::1%0"])
def test_an_ipv6_address_with_a_scope_is_refused_naming_the_field(text):
    """``ipaddress`` takes ``address%scope`` with any text after the ``%``: an interface of one host, no address
    to announce (it went out to ExaBGP as the next hop or IP, quotes and all)."""
    for field in ("ip", "next_hop"):
        with pytest.raises(ValueError, match=f"^{field}: "):
            MacIpRoute(**{"rd": "1:1", "mac": "52:54:00:12:34:56", "l2_vni": 1, "next_hop": "fe80::1"} | {field: text})
    with pytest.raises(ValueError, match="^gateway: "):
        IpPrefixRoute(rd="1:1", prefix="2001:db8::/64", l3_vni=1, next_hop="192.0.2.1", gateway=text)
    with pytest.raises(ValueError, match=r"^prefix: .* is a scoped IPv6 address"):  # ip_network keeps the zone too
        IpPrefixRoute(rd="1:1", prefix=text.replace("::1%", "::%") + "/64", l3_vni=1, next_hop="192.0.2.1")


def _first_routes():
    """Type 2 routes as ``bgp.evpn`` builds a subnet's first at a VTEP: with and without IP, L3 VNI, sequence."""
    common = {"rd": "65000:100", "l2_vni": 5001, "next_hop": "192.0.2.1", "route_targets": ("65000:1", "65000:2")}
    return [MacIpRoute(mac="52:54:00:12:34:56", ip="10.0.0.5", l3_vni=9001, router_mac="02:00:00:00:00:01",
                       mobility_seq=3, **common),
            MacIpRoute(mac="52:54:00:12:34:56", **common),
            MacIpRoute(mac="52:54:00:12:34:56", ip="2001:db8::5", **common | {"next_hop": "2001:db8::1"})]


@pytest.mark.parametrize("first", _first_routes())
def test_a_route_for_another_host_has_the_text_the_encoder_writes_from_the_first_s(first, monkeypatch):
    real, dicts = routes_module._PAYLOAD_JSON, []
    monkeypatch.setattr(routes_module, "_PAYLOAD_JSON", lambda value: (dicts.append(type(value) is dict),
                                                                       real(value))[1])
    others = [first.with_host(mac, ip) for mac, ip in (("52:54:00:aa:bb:cc", "10.0.0.6"), ("52:54:00:aa:bb:cd", None),
                                                       ("52:54:00:aa:bb:ce", "2001:db8::6"))]
    for route in others:
        routes_module.encode_host(route, first)
    assert dicts.count(True) == 1  # the first's dict only
    assert [routes_module.payload(route) for route in others] == [real(route_to_dict(route)) for route in others]


def test_a_route_for_another_host_is_encoded_whole_when_the_first_s_text_is_not_cut():
    first = _first_routes()[0]
    route = first.with_host("52:54:00:aa:bb:cc", "10.0.0.6")
    routes_module._HOST_CUTS[id(first)] = (first, None)
    routes_module.encode_host(route, first)
    assert routes_module.payload(route) == routes_module._PAYLOAD_JSON(route_to_dict(route))


def test_a_type2_key_is_route_keys_for_every_route_made():
    """MacIpRoute.key (written out, no generator) is ``route_key``'s, for a route built whole and one made from it."""
    from bgp.routes import MacIpRoute, route_key

    first = MacIpRoute(rd="65000:1", mac="02:00:00:00:00:01", ip="10.0.0.1", l2_vni=10, next_hop="10.1.1.1",
                       route_targets=("65000:1",), ethernet_tag=7)
    for route in (first, first.with_host("02:00:00:00:00:02", None), first.with_host("02:00:00:00:00:03", "10.0.0.3")):
        assert route.key == route_key(2, vars(route)) == (2, "65000:1", 7, route.mac, route.ip)
