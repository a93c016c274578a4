"""What peers send: ExaBGP's JSON for received EVPN updates, decoded and checked at the edge.

``decode_message(message, local)`` turns one ExaBGP message (``encoder json``) into a ``Decoded``:
the routes Canopy can use, the keys withdrawn, an End-of-RIB marker, and the routes it refuses with
a reason. RFC 7606: a refused route is treated as withdrawn (its key, when the NLRI could be read,
removes what the peer sent before under that key); nothing a peer sends raises out of here or resets a
session. Refused:

- ``malformed``: the NLRI or an attribute cannot be decoded (for an attribute: every route of the
  update, RFC 7606 section 7.14), an IP Address Length field RFC 7432 does not allow included;
- ``not_vxlan``: no VXLAN encapsulation extended community (RFC 8365 section 5.1.3: MPLS is assumed
  when it is absent) or another tunnel type;
- ``next_hop``: a next hop that is not IPv4 (an IPv4-mapped IPv6 address counts as its IPv4 address), or a type
  3's PMSI tunnel identifier that is not 4 bytes (ExaBGP prints any other as hex, IPv4-mapped included, and drops
  the low bits of its label: the VNI);
- ``gateway_ip``: a type 5 route with a non-zero gateway IP (RFC 9136 overlay index): Canopy routes
  type 5 only to a Router's MAC (interface-less model) and does not resolve gateway IPs;
- ``no_pmsi``: a type 3 route without an ingress replication PMSI tunnel;
- ``own_route``: Canopy's own route come back: its AS in AS_PATH (eBGP) or its router id as
  ORIGINATOR_ID or in CLUSTER_LIST (iBGP through a route reflector);
- ``unsupported_type``: EVPN route types other than 2, 3 and 5.

The NLRI is decoded from its ``raw`` hex (the wire truth: ExaBGP's parsed labels stop at the first
bottom-of-stack bit and show ``[label >> 4, raw]``); attributes from the extended communities'
integer values and the PMSI string.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import re
from dataclasses import dataclass, field

from bgp.routes import ANNOUNCE, ENCAPSULATIONS, ROUTE_CLASSES, WITHDRAW, Route, route_key

log = logging.getLogger("bgp.routes")

REASONS = {
    "malformed": "the route or one of its attributes could not be decoded",
    "not_vxlan": "no VXLAN encapsulation extended community (RFC 8365 section 5.1.3: MPLS is assumed)",
    "next_hop": "the next hop is not an IPv4 address",
    "gateway_ip": "type 5 route with a gateway IP (only a Router's MAC is supported)",
    "no_pmsi": "type 3 route without an ingress replication PMSI tunnel",
    "own_route": "Canopy's own route reflected back (own AS in AS_PATH, own router id as ORIGINATOR_ID or "
                 "in CLUSTER_LIST)",
    "unsupported_type": "EVPN route type other than 2, 3 and 5",
}
_EVPN = "l2vpn evpn"
_NO_GATEWAY = {"0.0.0.0", "::"}


@dataclass(frozen=True)
class Local:
    """Who we are, to recognise our own routes coming back."""

    asn: int
    router_id: str


@dataclass(frozen=True)
class Refused:
    key: tuple | None  # the route key when the NLRI could be read (then: treated as withdrawn)
    reason: str  # one of REASONS
    detail: str


@dataclass
class Decoded:
    announced: list = field(default_factory=list)  # usable routes
    withdrawn: list = field(default_factory=list)  # route keys
    refused: list = field(default_factory=list)  # Refused
    end_of_rib: bool = False  # an End-of-RIB marker for l2vpn evpn


class _Refuse(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def decode_message(message, local: Local | None = None) -> Decoded | None:
    """One ExaBGP update message (str, bytes or dict) decoded; None if it is not an update. Never raises."""
    try:
        if isinstance(message, (str, bytes)):
            message = json.loads(message)
        body = message["neighbor"]["message"]
    except (ValueError, KeyError, TypeError):
        log.debug("not an ExaBGP update message, ignored")
        return None
    if not isinstance(body, dict):
        return None
    if "eor" in body:
        eor = body["eor"] if isinstance(body["eor"], dict) else {}
        return Decoded(end_of_rib=f"{eor.get('afi')} {eor.get('safi')}" == _EVPN)
    update = body.get("update")
    if not isinstance(update, dict):
        return None
    decoded = Decoded()
    try:
        _decode_update(update, local, decoded)
    except Exception as error:  # noqa: BLE001 - a bug here must not desynchronise the ExaBGP conversation
        decoded.refused.append(Refused(None, "malformed", f"update not decoded: {error!r}"))
    return decoded


def _decode_update(update: dict, local: Local | None, decoded: Decoded) -> None:
    attribute = update.get("attribute") or {}
    problem = None
    try:
        attributes = _decode_attributes(attribute if isinstance(attribute, dict) else {})
        own = _own_route(attribute, local)
        if own:
            problem = _Refuse("own_route", own)
    except Exception as error:  # noqa: BLE001 - RFC 7606: a malformed attribute withdraws the routes
        attributes, problem = {}, _Refuse("malformed", f"attribute: {error!r}")
    for next_hop, nlri in _announced(update):
        _announce(decoded, nlri, next_hop, attributes, problem)
    for nlri in _withdrawn(update):
        try:
            decoded.withdrawn.append(_withdrawn_key(nlri))
        except _Refuse as refusal:
            decoded.refused.append(Refused(None, refusal.reason, f"{refusal} ({str(nlri)[:160]})"))


def _announce(decoded: Decoded, nlri, next_hop, attributes: dict, problem: _Refuse | None) -> None:
    key = None
    try:
        fields = _nlri_fields(nlri)
        kind = fields.pop("type")
        key = route_key(kind, fields)
        if problem is not None:
            raise problem
        decoded.announced.append(_usable(_build(kind, fields, next_hop, attributes)))
    except _Refuse as refusal:
        decoded.refused.append(Refused(key, refusal.reason, f"{refusal} ({str(nlri)[:160]})"))
    except (ValueError, TypeError, KeyError) as error:
        decoded.refused.append(Refused(key, "malformed", f"{error} ({str(nlri)[:160]})"))


def _nlri_fields(nlri) -> dict:
    try:
        fields = _decode_nlri(bytes.fromhex(nlri["raw"]))
    except (ValueError, TypeError, KeyError, IndexError) as error:
        raise _Refuse("malformed", f"NLRI: {error}") from None
    if fields["type"] not in ROUTE_CLASSES:
        raise _Refuse("unsupported_type", f"route type {fields['type']}")
    return fields


def _withdrawn_key(nlri) -> tuple:
    """The route key of a withdrawn NLRI: what ``_nlri_fields`` checks, but a type 2's key fields decoded alone
    (its ESI and labels are no part of the key: every received withdrawal, ~a third of the speaker's CPU for it)."""
    try:
        data = bytes.fromhex(nlri["raw"])
        if len(data) > 1 and data[0] == 2 and len(data) == data[1] + 2:
            return _mac_ip_key(data[2:])
    except (ValueError, TypeError, KeyError, IndexError) as error:
        raise _Refuse("malformed", f"NLRI: {error}") from None
    fields = _nlri_fields(nlri)
    return route_key(fields.pop("type"), fields)


def _build(kind: int, fields: dict, next_hop, attributes: dict) -> Route:
    cls = ROUTE_CLASSES[kind]
    values = {k: v for k, v in attributes.items() if k in cls.__dataclass_fields__}
    values.update(fields)
    if "encapsulation" not in attributes:
        raise _Refuse("not_vxlan", "no encapsulation extended community")
    if attributes["encapsulation"] not in ENCAPSULATIONS:
        raise _Refuse("not_vxlan", f"encapsulation {attributes['encapsulation']}")
    if kind == 3 and "vni" not in values:
        raise _Refuse("no_pmsi", "inclusive multicast route without an ingress replication PMSI")
    if kind == 3 and values.get("tunnel", "").startswith("0x"):  # ExaBGP's hex: a tunnel id of any size but 4 bytes
        raise _Refuse("next_hop", f"PMSI tunnel identifier {values['tunnel']} (not an IPv4 address)")
    if kind != 3:  # type 3: the originating router's IP in the NLRI is the VTEP (and the key)
        values["next_hop"] = next_hop
    return cls(**values)


def _usable(route: Route) -> Route:
    if ":" in route.next_hop:  # normalised by the route (bgp.routes): an IPv4 address has no colon
        raise _Refuse("next_hop", f"next hop {route.next_hop}")
    if ":" in (getattr(route, "tunnel", None) or ""):
        raise _Refuse("next_hop", f"PMSI tunnel identifier {route.tunnel}")
    if route.TYPE == 5 and route.gateway not in _NO_GATEWAY:
        raise _Refuse("gateway_ip", f"gateway IP {route.gateway}")
    return route


def _own_route(attribute: dict, local: Local | None) -> str | None:
    """Why this update is our own route come back, or None."""
    if local is None:
        return None
    if local.asn in _as_path(attribute.get("as-path")):
        return f"own AS {local.asn} in AS_PATH"
    if attribute.get("originator-id") == local.router_id:
        return f"own router id {local.router_id} as ORIGINATOR_ID"
    if local.router_id in (attribute.get("cluster-list") or []):
        return f"own router id {local.router_id} in CLUSTER_LIST"
    return None


def _as_path(path) -> list:
    """Every AS number in ExaBGP's AS_PATH JSON ({"0": {"element": ..., "value": [...]}} or a list)."""
    if isinstance(path, dict):
        return [asn for segment in path.values() for asn in _as_path(segment.get("value", []))]
    if isinstance(path, list):
        return [asn for item in path for asn in (_as_path(item) if isinstance(item, (list, dict)) else [item])]
    return []


def _announced(update: dict):
    by_next_hop = (update.get("announce") or {}).get(_EVPN) or {}
    if not isinstance(by_next_hop, dict):
        raise ValueError("EVPN announce section is not an object")
    for next_hop, nlris in by_next_hop.items():
        for nlri in nlris if isinstance(nlris, list) else []:
            yield next_hop, nlri


def _withdrawn(update: dict):
    nlris = (update.get("withdraw") or {}).get(_EVPN) or []
    yield from nlris if isinstance(nlris, list) else []


def from_exabgp_json(message) -> list[tuple[str, Route]]:
    """[(action, route)] of the usable routes and the withdrawals in one message (refused routes are
    logged and left out; a withdrawal is a route that carries only its key fields). Never raises."""
    decoded = decode_message(message)
    if decoded is None:
        return []
    for refused in decoded.refused:
        log.warning("EVPN route refused (%s): %s", refused.reason, refused.detail)
    return [(ANNOUNCE, route) for route in decoded.announced] + [(WITHDRAW, key) for key in decoded.withdrawn]


# --------------------------------------------------------------------------- NLRI bytes


def decode_nlri(data: bytes) -> dict:
    """Decode one EVPN NLRI (type, length, value: bytes or any bytes-like object) into route fields; ValueError if
    malformed, TypeError if not bytes-like."""
    if type(data) is not bytes:  # a bytearray's slices are unhashable: _rd remembers RDs by their bytes
        try:
            data = bytes(memoryview(data))
        except TypeError:
            raise TypeError(f"EVPN NLRI: bytes expected, not {type(data).__name__}") from None
    return _decode_nlri(data)


def _decode_nlri(data: bytes) -> dict:
    """``decode_nlri`` of bytes (every received route's NLRI, from its hex: no other type to check)."""
    if len(data) < 2 or len(data) != data[1] + 2:
        raise ValueError("EVPN NLRI length does not match its header")
    route_type, value = data[0], data[2:]
    decoder = _NLRI_DECODERS.get(route_type)
    if decoder is None:
        return {"type": route_type}
    return {"type": route_type, **decoder(value)}


@functools.lru_cache(maxsize=1024)
def _rd(data: bytes) -> str:
    """A route distinguisher's text, remembered: a peer's routes share a few RDs."""
    kind, body = int.from_bytes(data[:2], "big"), data[2:8]
    if kind == 0:
        return f"{int.from_bytes(body[:2], 'big')}:{int.from_bytes(body[2:], 'big')}"
    if kind == 1:
        return f"{_ipv4(body[:4])}:{int.from_bytes(body[4:], 'big')}"
    if kind == 2:
        return f"{int.from_bytes(body[:4], 'big')}:{int.from_bytes(body[4:], 'big')}"
    raise ValueError(f"unknown route distinguisher type {kind}")


def _labels(data: bytes) -> list[int]:
    if len(data) % 3:
        raise ValueError("label field is not a multiple of 3 bytes")
    return [int.from_bytes(data[i:i + 3], "big") for i in range(0, len(data), 3)]


def _ipv4(data: bytes) -> str:
    """Four bytes as dotted decimal: ``str(ipaddress.IPv4Address(data))``, without building the object (every
    received route's RD, IP and next hop: a fifth of handling a received withdrawal)."""
    return "%d.%d.%d.%d" % (data[0], data[1], data[2], data[3])


def _address(data: bytes) -> str:
    if len(data) == 4:
        return _ipv4(data)
    if len(data) != 16:
        raise ValueError(f"address of {len(data)} bytes")
    address = ipaddress.ip_address(data)
    return str(getattr(address, "ipv4_mapped", None) or address)


def _bad_ip_length(bits: int, route: str) -> ValueError:
    """Why an IP Address Length field of ``bits`` is refused: RFC 7432 allows only those of _IP_LENGTHS (a length of
    33 bits was read as 4 bytes). Checked in line by the callers: every received route's, most of them well-formed."""
    section, allowed = _IP_LENGTHS[route]
    return ValueError(f"{route} route's IP Address Length is {bits} bits: RFC 7432 section {section} allows {allowed}")


_IP_LENGTHS = {"MAC/IP": ("7.2", "0, 32 or 128"), "inclusive multicast": ("7.3", "32 or 128")}


def _mac_ip_length(v: bytes) -> int:
    """A type 2 NLRI value's IP length in bytes (0, 4 or 16), its lengths checked; ValueError if malformed."""
    if len(v) < 33 or v[22] != 48:
        raise ValueError("MAC/IP route too short or MAC length is not 48")
    if v[29] not in (0, 32, 128):
        raise _bad_ip_length(v[29], "MAC/IP")
    ip_len = v[29] // 8
    labels = max(len(v) - 30 - ip_len, 0)  # bytes of labels after the IP: one or two of 3 bytes
    if labels % 3:
        raise ValueError("label field is not a multiple of 3 bytes")
    if labels not in (3, 6):
        raise ValueError("MAC/IP route has a bad IP length or label count")
    return ip_len


def _mac_ip_key(v: bytes) -> tuple:
    """``route_key(2, _decode_mac_ip(v))`` without decoding what the key leaves out (the ESI, the labels)."""
    ip_len = _mac_ip_length(v)
    return (2, _rd(v[:8]), int.from_bytes(v[18:22], "big"), v[23:29].hex(":"),
            _ipv4(v[30:34]) if ip_len == 4 else _address(v[30:30 + ip_len]) if ip_len else None)


def _decode_mac_ip(v: bytes) -> dict:
    ip_len = _mac_ip_length(v)
    labels = _labels(v[30 + ip_len:])
    return {
        "rd": _rd(v[:8]), "esi": int.from_bytes(v[8:18], "big"),
        "ethernet_tag": int.from_bytes(v[18:22], "big"), "mac": v[23:29].hex(":"),
        "ip": _address(v[30:30 + ip_len]) if ip_len else None,
        "l2_vni": labels[0], "l3_vni": labels[1] if len(labels) == 2 else None,
    }


def _decode_multicast(v: bytes) -> dict:
    if len(v) > 12 and v[12] not in (32, 128):
        raise _bad_ip_length(v[12], "inclusive multicast")
    if len(v) < 13 or len(v) != 13 + v[12] // 8:
        raise ValueError("inclusive multicast route has a bad length")
    return {"rd": _rd(v[:8]), "ethernet_tag": int.from_bytes(v[8:12], "big"),
            "next_hop": _address(v[13:])}  # the VNI is in the PMSI attribute, not in the NLRI


def _decode_prefix(v: bytes) -> dict:
    size = {34: 4, 58: 16}.get(len(v))
    if size is None:
        raise ValueError("IP prefix route is neither IPv4 (34) nor IPv6 (58) bytes")
    address, gateway = v[23:23 + size], v[23 + size:23 + 2 * size]
    return {
        "rd": _rd(v[:8]), "esi": int.from_bytes(v[8:18], "big"),
        "ethernet_tag": int.from_bytes(v[18:22], "big"),
        "prefix": str(ipaddress.ip_network(f"{ipaddress.ip_address(address)}/{v[22]}", strict=False)),
        "gateway": str(ipaddress.ip_address(gateway)), "l3_vni": _labels(v[-3:])[0],
    }


_NLRI_DECODERS = {2: _decode_mac_ip, 3: _decode_multicast, 5: _decode_prefix}
_PMSI_RE = re.compile(r"^pmsi:ingressreplication:\d+:(\d+)(?:\((\d+)\))?:(\S+)$")


def _decode_attributes(attribute: dict) -> dict:
    """Route fields carried by path attributes (extended communities, PMSI); raises on a malformed one."""
    values: dict = {"route_targets": []}
    communities = attribute.get("extended-community") or []
    if not isinstance(communities, list):
        raise ValueError("extended-community is not a list")
    for community in communities:
        _decode_extended(int(community["value"]), values)
    values["route_targets"] = tuple(values["route_targets"])
    pmsi = attribute.get("pmsi")
    if isinstance(pmsi, str):
        match = _PMSI_RE.match(pmsi)
        if match:
            label, raw, tunnel = match.groups()
            values["vni"] = int(raw) if raw is not None else int(label) << 4
            values["tunnel"] = tunnel  # the address to flood to (RFC 6514 section 5); the route drops it if equal
    return values


def _decode_extended(value: int, values: dict) -> None:
    """Decode one 8-byte extended community (as the integer ExaBGP prints) into ``values``."""
    if not 0 <= value < 1 << 64:
        raise ValueError(f"extended community {value} is not 8 bytes")
    data = value.to_bytes(8, "big")
    kind, sub = data[0] & 0x3F, data[1]
    if sub == 0x02 and kind in (0x00, 0x02):
        split = 4 if kind == 0x00 else 6
        admin, number = data[2:split], data[split:]
        values["route_targets"].append(f"{int.from_bytes(admin, 'big')}:{int.from_bytes(number, 'big')}")
    elif (kind, sub) == (0x01, 0x02):
        values["route_targets"].append(f"{ipaddress.IPv4Address(data[2:6])}:{int.from_bytes(data[6:], 'big')}")
    elif (kind, sub) == (0x03, 0x0C):
        tunnel = int.from_bytes(data[6:], "big")
        names = {number: name for name, number in ENCAPSULATIONS.items()}
        values["encapsulation"] = names.get(tunnel, f"tunnel type {tunnel}")
    elif (kind, sub) == (0x06, 0x00):
        values["mobility_seq"] = int.from_bytes(data[4:], "big")
        values["sticky"] = bool(data[2] & 0x01)  # RFC 7432 section 7.7: the flags' low-order bit
    elif (kind, sub) == (0x06, 0x03):
        values["router_mac"] = data[2:].hex(":")
