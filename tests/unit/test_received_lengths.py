"""A received EVPN NLRI's IP Address Length field (bgp.received): RFC 7432 section 7.2 sets a MAC/IP route's to 0, 32
or 128 bits and section 7.3 an inclusive multicast route's to 32 or 128; any other is refused as malformed, naming
the field (a length of 33-39 bits was read as 4 bytes, 129-135 as 16), whether announced or withdrawn."""

import logging

import pytest

from bgp.received import decode_message, decode_nlri, from_exabgp_json

RD = bytes.fromhex("0000FDE900000064")  # 65001:100
VXLAN = {"value": 0x030C000000000008, "string": "encap:VXLAN"}
PMSI = "pmsi:ingressreplication:0:80016:192.0.2.9"  # the VNI (5001) in its label


def mac_ip(bits: int, ip: bytes) -> bytes:
    value = RD + bytes(10) + bytes(4) + b"\x30" + bytes.fromhex("525400aabbcc") + bytes([bits]) + ip + b"\x00\x13\x89"
    return bytes([2, len(value)]) + value


def multicast(bits: int, ip: bytes) -> bytes:
    value = RD + bytes(4) + bytes([bits]) + ip
    return bytes([3, len(value)]) + value


def update(kind: str, nlri: bytes) -> dict:
    body = {"code": nlri[0], "raw": nlri.hex().upper()}
    section = {"192.0.2.9": [body]} if kind == "announce" else [body]
    return {"type": "update", "neighbor": {"message": {"update": {
        "attribute": {"extended-community": [VXLAN], "pmsi": PMSI}, kind: {"l2vpn evpn": section}}}}}


BAD = [(bits, size) for bits in (33, 39, 64, 127, 129) for size in sorted({bits // 8, -(-bits // 8)})]


@pytest.mark.parametrize("bits,size", BAD, ids=[f"{b}bits-{s}bytes" for b, s in BAD])
@pytest.mark.parametrize("build,section", [(mac_ip, "7.2"), (multicast, "7.3")], ids=["type2", "type3"])
def test_an_ip_address_length_the_rfc_does_not_allow_is_refused_naming_the_field(build, section, bits, size, caplog):
    nlri = build(bits, bytes(range(1, size + 1)))
    with pytest.raises(ValueError, match=rf"IP Address Length is {bits} bits: RFC 7432 section {section} allows "):
        decode_nlri(nlri)
    caplog.set_level(logging.WARNING, logger="bgp.routes")
    assert from_exabgp_json(update("announce", nlri)) == []  # never raises
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("EVPN route refused (malformed): NLRI: ") and f"IP Address Length is {bits} bits" in line
    withdrawn = decode_message(update("withdraw", nlri))
    assert withdrawn.withdrawn == [] and [r.reason for r in withdrawn.refused] == ["malformed"]
    assert f"IP Address Length is {bits} bits" in withdrawn.refused[0].detail


@pytest.mark.parametrize("bits,ip,text", [(0, b"", None), (32, bytes([10, 1, 0, 9]), "10.1.0.9"),
                                          (128, bytes.fromhex("20010db8000000000000000000000001"), "2001:db8::1")])
def test_the_lengths_the_rfc_allows_are_read(bits, ip, text):
    assert decode_nlri(mac_ip(bits, ip))["ip"] == text
    if bits:
        assert decode_nlri(multicast(bits, ip))["next_hop"] == text
    [(action, route)] = from_exabgp_json(update("announce", mac_ip(bits, ip)))
    assert (action, route.ip, route.l2_vni) == ("announce", text, 5001)
    assert decode_message(update("withdraw", mac_ip(bits, ip))).withdrawn == [(2, "65001:100", 0, "52:54:00:aa:bb:cc",
                                                                                text)]
