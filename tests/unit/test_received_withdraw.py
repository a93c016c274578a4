"""A withdrawn NLRI's route key (bgp.received): read as decode_nlri reads the whole route, refused as it refuses."""

import random

import pytest

import bgp.received
from bgp.received import _Refuse, decode_message, decode_nlri
from bgp.routes import ROUTE_CLASSES, route_key


def _withdrawal(nlris) -> dict:
    return {"neighbor": {"message": {"update": {"withdraw": {"l2vpn evpn": nlris}}}}}


def _mac_ip(rng: random.Random) -> bytes:
    """A type 2 NLRI of any RD type (unknown ones too), IP length and label count, sometimes bent out of shape."""
    rd = bytes([0, rng.choice((0, 1, 2, 3))]) + rng.randbytes(6)
    ip = rng.choice((b"", rng.randbytes(4), rng.randbytes(16), b"\x00" * 10 + b"\xff\xff" + rng.randbytes(4)))
    labels = rng.randbytes(rng.choice((0, 3, 3, 6, 9, 4)))
    value = rd + rng.randbytes(10) + rng.randbytes(4) + bytes([rng.choice((48, 48, 48, 40))]) + rng.randbytes(6) \
        + bytes([len(ip) * 8 if rng.random() < 0.9 else rng.randrange(256)]) + ip + labels
    data = bytearray([2, len(value)]) + value
    bend = rng.random()
    if bend < 0.05:
        data = data[:rng.randrange(len(data))]  # truncated
    elif bend < 0.10:
        data[1] = rng.randrange(256)  # the header's length disagrees
    elif bend < 0.15:
        data[0] = rng.choice((1, 3, 4, 5))  # another route type
    return bytes(data)


def _expected(nlri) -> tuple:
    """What a withdrawal of ``nlri`` was before the key was read alone: the whole NLRI decoded, then its key."""
    try:
        fields = decode_nlri(bytes.fromhex(nlri["raw"]))
    except (ValueError, TypeError, KeyError, IndexError) as error:
        return "refused", "malformed", f"NLRI: {error}"
    if fields["type"] not in ROUTE_CLASSES:
        return "refused", "unsupported_type", f"route type {fields['type']}"
    return "withdrawn", route_key(fields.pop("type"), fields)


def _outcome(nlri) -> tuple:
    decoded = decode_message(_withdrawal([nlri]))
    if decoded.withdrawn:
        assert not decoded.refused
        return "withdrawn", decoded.withdrawn[0]
    (refused,) = decoded.refused
    assert refused.key is None and refused.detail.endswith(f" ({str(nlri)[:160]})")
    return "refused", refused.reason, refused.detail[:-len(f" ({str(nlri)[:160]})")]


def test_a_withdrawn_key_is_the_whole_nlris_key_and_is_refused_alike():
    rng = random.Random(36)
    nlris = [{"code": 2, "raw": _mac_ip(rng).hex().upper()} for _ in range(3000)]
    nlris += [{"code": 2, "raw": raw} for raw in ("", "02", "0200", "02FF", "zz", "0225" + "00" * 37)]
    nlris += [{"code": 2}, "not an object", {"raw": None},
              {"raw": "03110000FDE90000006400000000207F000002"},  # type 3
              {"raw": "05220000FDE9000000640000000000000000000000000000180A0100000000000000138900"}]  # type 5
    outcomes = [_outcome(nlri) for nlri in nlris]
    assert outcomes == [_expected(nlri) for nlri in nlris]
    seen = {outcome[0] for outcome in outcomes} | {outcome[1] for outcome in outcomes if outcome[0] == "refused"}
    assert seen == {"withdrawn", "refused", "malformed", "unsupported_type"}  # every case reached
    details = {outcome[2] for outcome in outcomes if outcome[0] == "refused"}
    assert {"NLRI: label field is not a multiple of 3 bytes", "NLRI: MAC/IP route has a bad IP length or label count",
            "NLRI: unknown route distinguisher type 3", "NLRI: EVPN NLRI length does not match its header"} <= details


def test_a_withdrawn_mac_ip_route_decodes_neither_its_labels_nor_its_esi(monkeypatch):
    """Only the key is needed of a withdrawal: its labels and ESI (no part of a type 2's key, RFC 7432 section 7.2)
    are not decoded (they were: a third of the speaker's CPU per received withdrawal), and its RD, shared by a
    peer's routes, is read once."""
    raws = ["02250000FDE900000064000000000000000000000000000030525400AABB%02X200A0100%02X001389" % (i, i)
            for i in range(100)]
    expected = [(2, "65001:100", 0, f"52:54:00:aa:bb:{i:02x}", f"10.1.0.{i}") for i in range(100)]
    monkeypatch.setattr(bgp.received, "_labels", lambda data: pytest.fail("labels decoded"))
    monkeypatch.setattr(bgp.received, "_NLRI_DECODERS", {})  # a whole NLRI decoded: its fields would be missing
    getattr(bgp.received._rd, "cache_clear", lambda: None)()
    decoded = decode_message(_withdrawal([{"code": 2, "raw": raw} for raw in raws]))
    assert (decoded.withdrawn, decoded.refused) == (expected, [])
    assert hasattr(bgp.received._rd, "cache_info") and bgp.received._rd.cache_info().misses == 1


def test_a_refused_withdrawal_names_why():
    with pytest.raises(_Refuse, match="^NLRI: MAC/IP route too short"):
        bgp.received._withdrawn_key({"raw": "0203" + "00" * 3})


def _type2(ip_bits: int, ip: bytes, labels: bytes, rd_type: int = 0, mac_bits: int = 48) -> str:
    """A type 2 NLRI's raw hex: RD 65001:100 (of ``rd_type``), no ESI, tag 7, MAC 52:54:00:aa:bb:cc."""
    value = bytes([0, rd_type]) + bytes.fromhex("FDE900000064") + bytes(10) + (7).to_bytes(4, "big") \
        + bytes([mac_bits]) + bytes.fromhex("525400AABBCC") + bytes([ip_bits]) + ip + labels
    return (bytes([2, len(value)]) + value).hex()


_LABEL = b"\x00\x13\x89"
_MAPPED = bytes(10) + b"\xff\xff" + bytes([10, 1, 0, 9])
_NOT_THREE, _COUNT = "label field is not a multiple of 3 bytes", "MAC/IP route has a bad IP length or label count"


@pytest.mark.parametrize("raw,outcome", [
    (_type2(0, b"", _LABEL), (2, "65001:100", 7, "52:54:00:aa:bb:cc", None)),
    (_type2(32, bytes([10, 1, 0, 9]), _LABEL * 2), (2, "65001:100", 7, "52:54:00:aa:bb:cc", "10.1.0.9")),
    (_type2(128, bytes.fromhex("20010db8" + "00" * 11 + "09"), _LABEL), (2, "65001:100", 7, "52:54:00:aa:bb:cc",
                                                                         "2001:db8::9")),
    (_type2(128, _MAPPED, _LABEL), (2, "65001:100", 7, "52:54:00:aa:bb:cc", "10.1.0.9")),
    (_type2(32, bytes([10, 1, 0, 9]), b""), _COUNT),  # no label
    (_type2(0, b"", b""), "MAC/IP route too short or MAC length is not 48"),  # no IP, no label: 30 bytes
    (_type2(0, b"", _LABEL * 3), _COUNT),  # three labels
    (_type2(32, bytes([10, 1, 0, 9]), _LABEL + b"\x00"), _NOT_THREE),
    (_type2(32, bytes([10, 1, 0, 9]), _LABEL[:2]), _NOT_THREE),
    (_type2(24, bytes([10, 1, 0]), _LABEL),  # a 3-byte IP
     "MAC/IP route's IP Address Length is 24 bits: RFC 7432 section 7.2 allows 0, 32 or 128"),
    (_type2(33, bytes([10, 1, 0, 9]), _LABEL),  # read as 4 bytes before
     "MAC/IP route's IP Address Length is 33 bits: RFC 7432 section 7.2 allows 0, 32 or 128"),
    (_type2(32, b"", _LABEL), _COUNT),  # the IP's length says 4 bytes: the label is taken for them
    (_type2(128, bytes(4), _LABEL), _COUNT),  # says 16 bytes, has 4
    (_type2(0, b"", _LABEL, mac_bits=40), "MAC/IP route too short or MAC length is not 48"),
    (_type2(0, b"", _LABEL)[:-8], "MAC/IP route too short or MAC length is not 48"),  # cut short, its length fixed
    (_type2(0, b"", _LABEL, rd_type=3), "unknown route distinguisher type 3"),
])
def test_a_mac_ip_nlri_is_read_or_refused_alike_announced_and_withdrawn(raw, outcome):
    """Hand-written cases (independent of the decoder's own length checks, which the whole decode and the key alone
    share): each type 2 NLRI withdrawn gives this key or is refused as malformed with this reason, and announced
    gives a route of that key or the same refusal."""
    data = bytearray.fromhex(raw)
    data[1] = len(data) - 2  # (the truncated case: its header's length made to agree)
    nlri = {"code": 2, "raw": data.hex()}
    withdrawn = decode_message(_withdrawal([nlri]))
    announced = decode_message({"neighbor": {"message": {"update": {
        "attribute": {"extended-community": [{"value": 0x030C000000000008, "string": "encap:VXLAN"}]},
        "announce": {"l2vpn evpn": {"192.0.2.9": [nlri]}}}}}})
    if isinstance(outcome, tuple):
        assert (withdrawn.withdrawn, withdrawn.refused) == ([outcome], [])
        assert [route.key for route in announced.announced] == [outcome] and not announced.refused
    else:
        for decoded in (withdrawn, announced):
            (refused,) = decoded.refused
            assert (refused.reason, refused.detail.split(" (")[0]) == ("malformed", f"NLRI: {outcome}")
            assert not decoded.withdrawn and not decoded.announced
