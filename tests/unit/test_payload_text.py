"""A type 2 route's text (bgp/routes.py ``encode_host``: the IP's and MAC's text written by the JSON encoder's C
function) is the whole route's as ``payload`` writes it, for any text in the two fields. (Moved from
test_announce39_old_new_state.py at stop 40: it never needed the old code.)"""

from __future__ import annotations

import json
import random

from bgp import routes as bgp_routes
_ODD = ["", "a", "é", "ü\u00ff", "\u2028\u2029", "\U0001f600", "\ud800", "\x00\x1f\x7f", '"\\/', "\t\n\r\b\f",
        "02:00:00:00:00:01", "fe80::1", "10.0.0.1", "<>&'"]


class _Text(str):
    """A str of another class (the encoder writes it as a str)."""


def test_encode_host_writes_each_value_as_the_json_encoder_does():
    """``encode_host`` writes a type 2 route's IP and MAC by the encoder's C function: the route's text must be the
    whole route's as ``payload`` writes it (ea463af^1: ``_PAYLOAD_JSON`` of each), for routes built normally, and for
    any text at all in the two fields (unusual, non-ASCII, lone surrogates, a str subclass, None)."""
    rng = random.Random(39)
    encode = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
    for text in _ODD + ["".join(rng.choice(_ODD) for _ in range(3)) for _ in range(200)]:
        for value in (text, _Text(text)):
            assert bgp_routes._JSON_TEXT(value) == bgp_routes._PAYLOAD_JSON(value) == encode(value), repr(value)
    first = bgp_routes.MacIpRoute(rd="65000:1", mac="02:00:00:00:00:01", ip="10.0.0.1", l2_vni=10,
                                  next_hop="10.251.0.1", route_targets=("65000:10",))
    for i in range(300):
        route = first.with_host(f"02:00:00:{i % 256:02x}:{rng.randrange(256):02x}:{rng.randrange(256):02x}",
                                rng.choice([None, f"10.0.{i % 256}.{rng.randrange(256)}", f"fd00::{i:x}"]))
        if i % 3 == 0:  # whatever the fields hold
            object.__setattr__(route, "ip", rng.choice(_ODD + [None, _Text("é")]))
            object.__setattr__(route, "mac", rng.choice(_ODD + [_Text("ü")]))
        bgp_routes.encode_host(route, first)
        assert bgp_routes.payload(route) == encode(bgp_routes.route_to_dict(route)), i
