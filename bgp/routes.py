"""EVPN route model for Canopy's federation (pure Python, no ExaBGP imports).

Three route types (RFC 7432, RFC 8365, RFC 9135, RFC 9136), as frozen dataclasses:

- ``MacIpRoute`` (type 2): a MAC (and optionally its IP) in an L2 VNI, with an L3 VNI and the
  Router's MAC for symmetric IRB, and MAC mobility.
- ``InclusiveMulticastRoute`` (type 3): a VTEP joining an L2 VNI's flood list (PMSI tunnel,
  ingress replication, label = VNI).
- ``IpPrefixRoute`` (type 5): an IP prefix in a routed domain (L3 VNI, Router's MAC).

``route.key`` is the NLRI identity: every field that goes into the NLRI bytes. ExaBGP indexes
its RIB by the packed NLRI, so a withdraw must repeat exactly these values.

The API command format is one line: ``[neighbor <ip> ]announce evpn <json>`` or
``... withdraw evpn <json>``; the JSON is compact (no spaces) so ExaBGP's command dispatcher,
which matches registered names by substring, never finds a command name inside the payload.

``from_exabgp_json`` decodes what ExaBGP (``encoder json``) prints for received EVPN routes.
The NLRI is decoded from its ``raw`` hex (the wire truth: ExaBGP's parsed labels stop at the
first bottom-of-stack bit and show ``[label >> 4, raw]``); attributes from the extended
community integer values and the PMSI string.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

MAX_VNI = (1 << 24) - 1
ANNOUNCE = "announce"
WITHDRAW = "withdraw"
ACTIONS = (ANNOUNCE, WITHDRAW)
ENCAPSULATIONS = {"vxlan": 8}
_MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_COMMAND_RE = re.compile(r"^(?:neighbor (\S+) )?(announce|withdraw) evpn (\{.*\})$")


# --------------------------------------------------------------------------- validation


def _mac(value: str, name: str) -> str:
    mac = str(value).lower()
    if not _MAC_RE.match(mac):
        raise ValueError(f"{name}: {value!r} is not a MAC address like 52:54:00:12:34:56")
    return mac


def _ip(value: str, name: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not an IP address") from None


def _vni(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_VNI:
        raise ValueError(f"{name}: {value!r} is not a 24-bit VNI")
    return value


def _uint(value: int, bits: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < (1 << bits):
        raise ValueError(f"{name}: {value!r} is not a {bits}-bit unsigned integer")
    return value


def _admin_number(value: str, name: str) -> str:
    """Validate ``asn:number`` or ``ipv4:number`` (RD and RT syntax); return it normalised."""
    admin, sep, number = str(value).rpartition(":")
    if not sep or not number.isdigit():
        raise ValueError(f"{name}: {value!r} is not 'asn:number' or 'ipv4:number'")
    if admin.isdigit():
        asn, num = int(admin), int(number)
        if not (asn < 1 << 16 and num < 1 << 32) and not (asn < 1 << 32 and num < 1 << 16):
            raise ValueError(f"{name}: {value!r} is out of range")
        return f"{asn}:{num}"
    try:
        ipaddress.IPv4Address(admin)
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not 'asn:number' or 'ipv4:number'") from None
    if int(number) >= 1 << 16:
        raise ValueError(f"{name}: {value!r} is out of range")
    return f"{admin}:{int(number)}"


def _set(obj, name: str, value) -> None:
    object.__setattr__(obj, name, value)


def _common(route) -> None:
    """Normalise the fields every route type has."""
    _set(route, "rd", _admin_number(route.rd, "rd"))
    _set(route, "ethernet_tag", _uint(route.ethernet_tag, 32, "ethernet_tag"))
    _set(route, "next_hop", _ip(route.next_hop, "next_hop"))
    rts = tuple(_admin_number(rt, "route_targets") for rt in route.route_targets)
    _set(route, "route_targets", rts)
    if route.encapsulation not in ENCAPSULATIONS:
        raise ValueError(f"encapsulation: {route.encapsulation!r} is not one of {sorted(ENCAPSULATIONS)}")


# --------------------------------------------------------------------------- the routes


@dataclass(frozen=True, kw_only=True)
class MacIpRoute:
    """Type 2 MAC/IP advertisement. ``l3_vni`` set means symmetric IRB (two labels)."""

    TYPE = 2
    rd: str
    mac: str
    l2_vni: int
    next_hop: str
    ip: str | None = None
    l3_vni: int | None = None
    esi: int = 0
    ethernet_tag: int = 0
    route_targets: tuple[str, ...] = field(default=())
    router_mac: str | None = None
    mobility_seq: int | None = None
    encapsulation: str = "vxlan"

    def __post_init__(self):
        _common(self)
        _set(self, "mac", _mac(self.mac, "mac"))
        _set(self, "esi", _uint(self.esi, 80, "esi"))
        _set(self, "l2_vni", _vni(self.l2_vni, "l2_vni"))
        if self.ip is not None:
            _set(self, "ip", _ip(self.ip, "ip"))
        if self.l3_vni is not None:
            _set(self, "l3_vni", _vni(self.l3_vni, "l3_vni"))
        if self.router_mac is not None:
            _set(self, "router_mac", _mac(self.router_mac, "router_mac"))
        if self.mobility_seq is not None:
            _set(self, "mobility_seq", _uint(self.mobility_seq, 32, "mobility_seq"))

    @property
    def key(self) -> tuple:
        """The NLRI identity (ESI and labels are in the NLRI bytes too)."""
        return (2, self.rd, self.esi, self.ethernet_tag, self.mac, self.ip, self.l2_vni, self.l3_vni)


@dataclass(frozen=True, kw_only=True)
class InclusiveMulticastRoute:
    """Type 3 inclusive multicast: ``next_hop`` is the originator IP and the PMSI tunnel id."""

    TYPE = 3
    rd: str
    vni: int
    next_hop: str
    ethernet_tag: int = 0
    route_targets: tuple[str, ...] = field(default=())
    encapsulation: str = "vxlan"

    def __post_init__(self):
        _common(self)
        _set(self, "vni", _vni(self.vni, "vni"))

    @property
    def originator(self) -> str:
        """The originating router's IP (in the NLRI), equal to the next hop."""
        return self.next_hop

    @property
    def key(self) -> tuple:
        """The NLRI identity."""
        return (3, self.rd, self.ethernet_tag, self.next_hop)


@dataclass(frozen=True, kw_only=True)
class IpPrefixRoute:
    """Type 5 IP prefix route (interface-less: gateway 0.0.0.0, Router's MAC, L3 VNI)."""

    TYPE = 5
    rd: str
    prefix: str
    l3_vni: int
    next_hop: str
    gateway: str = "0.0.0.0"
    esi: int = 0
    ethernet_tag: int = 0
    route_targets: tuple[str, ...] = field(default=())
    router_mac: str | None = None
    encapsulation: str = "vxlan"

    def __post_init__(self):
        _common(self)
        try:
            _set(self, "prefix", str(ipaddress.ip_network(self.prefix, strict=False)))
        except ValueError:
            raise ValueError(f"prefix: {self.prefix!r} is not an IP prefix") from None
        _set(self, "gateway", _ip(self.gateway, "gateway"))
        if ipaddress.ip_address(self.gateway).version != ipaddress.ip_network(self.prefix).version:
            raise ValueError("gateway: must be of the same IP version as prefix")
        _set(self, "esi", _uint(self.esi, 80, "esi"))
        _set(self, "l3_vni", _vni(self.l3_vni, "l3_vni"))
        if self.router_mac is not None:
            _set(self, "router_mac", _mac(self.router_mac, "router_mac"))

    @property
    def key(self) -> tuple:
        """The NLRI identity."""
        return (5, self.rd, self.esi, self.ethernet_tag, self.prefix, self.gateway, self.l3_vni)


Route = MacIpRoute | InclusiveMulticastRoute | IpPrefixRoute
ROUTE_CLASSES = {cls.TYPE: cls for cls in (MacIpRoute, InclusiveMulticastRoute, IpPrefixRoute)}


# --------------------------------------------------------------------------- API commands


def route_to_dict(route: Route) -> dict:
    """The route as a plain dict with a ``type`` member (the command payload)."""
    data = {"type": route.TYPE}
    for name in route.__dataclass_fields__:
        value = getattr(route, name)
        data[name] = list(value) if isinstance(value, tuple) else value
    return data


def route_from_dict(data: dict) -> Route:
    """Build a route from ``route_to_dict`` output; ValueError on anything wrong."""
    if not isinstance(data, dict):
        raise ValueError("route: expected a JSON object")
    values = dict(data)
    cls = ROUTE_CLASSES.get(values.pop("type", None))
    if cls is None:
        raise ValueError(f"type: {data.get('type')!r} is not one of {sorted(ROUTE_CLASSES)}")
    unknown = set(values) - set(cls.__dataclass_fields__)
    if unknown:
        raise ValueError(f"{', '.join(sorted(unknown))}: unknown field(s) for route type {cls.TYPE}")
    if "route_targets" in values:
        if not isinstance(values["route_targets"], list):
            raise ValueError("route_targets: expected a list")
        values["route_targets"] = tuple(values["route_targets"])
    try:
        return cls(**values)
    except TypeError as error:
        raise ValueError(f"route type {cls.TYPE}: {error}") from None


def to_command(route: Route, action: str, neighbor: str | None = None) -> str:
    """One API line: ``[neighbor <ip> ]announce|withdraw evpn {json}`` (no newline)."""
    if action not in ACTIONS:
        raise ValueError(f"action: {action!r} is not one of {ACTIONS}")
    payload = json.dumps(route_to_dict(route), separators=(",", ":"), sort_keys=True)
    prefix = f"neighbor {neighbor} " if neighbor else ""
    return f"{prefix}{action} evpn {payload}"


def parse_command(line: str) -> tuple[str | None, str, Route]:
    """Parse a ``to_command`` line into (neighbor or None, action, route); ValueError if bad."""
    match = _COMMAND_RE.match(line.strip())
    if not match:
        raise ValueError(f"not an evpn command: {line[:80]!r}")
    neighbor, action, payload = match.groups()
    try:
        data = json.loads(payload)
    except json.JSONDecodeError as error:
        raise ValueError(f"evpn command payload is not JSON: {error}") from None
    return neighbor, action, route_from_dict(data)


# --------------------------------------------------------------------------- decoding ExaBGP output


def from_exabgp_json(message) -> list[tuple[str, Route]]:
    """Decode one ExaBGP JSON message (str or dict) into [(action, route)].

    Non-update messages, other families, malformed or unsupported routes are logged and
    skipped: this never raises.
    """
    try:
        if isinstance(message, (str, bytes)):
            message = json.loads(message)
        update = message["neighbor"]["message"]["update"]
    except (ValueError, KeyError, TypeError):
        log.debug("not an ExaBGP update message, ignored")
        return []
    if not isinstance(update, dict):
        return []
    attributes = _decode_attributes(update.get("attribute") or {})
    results = []
    for next_hop, nlri in _announced(update):
        _append(results, ANNOUNCE, nlri, next_hop, attributes)
    for nlri in _withdrawn(update):
        _append(results, WITHDRAW, nlri, None, {})
    return results


def _announced(update: dict):
    by_next_hop = (update.get("announce") or {}).get("l2vpn evpn") or {}
    if not isinstance(by_next_hop, dict):
        log.warning("EVPN announce section is not an object, ignored")
        return
    for next_hop, nlris in by_next_hop.items():
        for nlri in nlris if isinstance(nlris, list) else []:
            yield next_hop, nlri


def _withdrawn(update: dict):
    nlris = (update.get("withdraw") or {}).get("l2vpn evpn") or []
    yield from nlris if isinstance(nlris, list) else []


def _append(results: list, action: str, nlri, next_hop, attributes: dict) -> None:
    try:
        route = _decode_route(nlri, next_hop, attributes)
    except (ValueError, KeyError, TypeError, IndexError) as error:
        log.warning("EVPN %s skipped: %s (%s)", action, error, str(nlri)[:200])
        return
    if route is not None:
        results.append((action, route))


def _decode_route(nlri: dict, next_hop: str | None, attributes: dict) -> Route | None:
    fields = decode_nlri(bytes.fromhex(nlri["raw"]))
    route_type = fields.pop("type")
    if route_type not in ROUTE_CLASSES:
        log.info("EVPN route type %s is not handled, ignored", route_type)
        return None
    cls = ROUTE_CLASSES[route_type]
    values = {k: v for k, v in attributes.items() if k in cls.__dataclass_fields__}
    values.update(fields)
    if route_type == 3 and next_hop is None:
        values.setdefault("vni", 0)  # a withdrawal carries no PMSI; the VNI is not in the key
    elif route_type == 3 and "vni" not in values:
        raise ValueError("inclusive multicast route without an ingress replication PMSI")
    elif next_hop is not None:
        values["next_hop"] = next_hop
    values.setdefault("next_hop", "0.0.0.0")  # withdrawals carry no next hop
    return cls(**values)


def decode_nlri(data: bytes) -> dict:
    """Decode one EVPN NLRI (type, length, value) into route fields; ValueError if malformed."""
    if len(data) < 2 or len(data) != data[1] + 2:
        raise ValueError("EVPN NLRI length does not match its header")
    route_type, value = data[0], data[2:]
    decoder = _NLRI_DECODERS.get(route_type)
    if decoder is None:
        return {"type": route_type}
    return {"type": route_type, **decoder(value)}


def _rd(data: bytes) -> str:
    kind, body = int.from_bytes(data[:2], "big"), data[2:8]
    if kind == 0:
        return f"{int.from_bytes(body[:2], 'big')}:{int.from_bytes(body[2:], 'big')}"
    if kind == 1:
        return f"{ipaddress.IPv4Address(body[:4])}:{int.from_bytes(body[4:], 'big')}"
    if kind == 2:
        return f"{int.from_bytes(body[:4], 'big')}:{int.from_bytes(body[4:], 'big')}"
    raise ValueError(f"unknown route distinguisher type {kind}")


def _labels(data: bytes) -> list[int]:
    if len(data) % 3:
        raise ValueError("label field is not a multiple of 3 bytes")
    return [int.from_bytes(data[i:i + 3], "big") for i in range(0, len(data), 3)]


def _address(data: bytes) -> str:
    if len(data) not in (4, 16):
        raise ValueError(f"address of {len(data)} bytes")
    return str(ipaddress.ip_address(data))


def _decode_mac_ip(v: bytes) -> dict:
    if len(v) < 33 or v[22] != 48:
        raise ValueError("MAC/IP route too short or MAC length is not 48")
    ip_len = v[29] // 8
    labels = _labels(v[30 + ip_len:])
    if len(labels) not in (1, 2) or ip_len not in (0, 4, 16):
        raise ValueError("MAC/IP route has a bad IP length or label count")
    return {
        "rd": _rd(v[:8]), "esi": int.from_bytes(v[8:18], "big"),
        "ethernet_tag": int.from_bytes(v[18:22], "big"), "mac": v[23:29].hex(":"),
        "ip": _address(v[30:30 + ip_len]) if ip_len else None,
        "l2_vni": labels[0], "l3_vni": labels[1] if len(labels) == 2 else None,
    }


def _decode_multicast(v: bytes) -> dict:
    if len(v) < 13 or len(v) != 13 + v[12] // 8:
        raise ValueError("inclusive multicast route has a bad length")
    return {"rd": _rd(v[:8]), "ethernet_tag": int.from_bytes(v[8:12], "big"),
            "next_hop": _address(v[13:])}


def _decode_prefix(v: bytes) -> dict:
    size = {34: 4, 58: 16}.get(len(v))
    if size is None:
        raise ValueError("IP prefix route is neither IPv4 (34) nor IPv6 (58) bytes")
    address, gateway = v[23:23 + size], v[23 + size:23 + 2 * size]
    return {
        "rd": _rd(v[:8]), "esi": int.from_bytes(v[8:18], "big"),
        "ethernet_tag": int.from_bytes(v[18:22], "big"),
        "prefix": f"{_address(address)}/{v[22]}", "gateway": _address(gateway),
        "l3_vni": _labels(v[-3:])[0],
    }


_NLRI_DECODERS = {2: _decode_mac_ip, 3: _decode_multicast, 5: _decode_prefix}
_PMSI_RE = re.compile(r"^pmsi:ingressreplication:\d+:(\d+)(?:\((\d+)\))?:(\S+)$")


def _decode_attributes(attribute: dict) -> dict:
    """Route fields carried by path attributes (extended communities, PMSI)."""
    values: dict = {"route_targets": []}
    for community in attribute.get("extended-community") or []:
        try:
            _decode_extended(int(community["value"]), values)
        except (KeyError, TypeError, ValueError) as error:
            log.warning("extended community %r skipped: %s", community, error)
    values["route_targets"] = tuple(values["route_targets"])
    pmsi = attribute.get("pmsi")
    if isinstance(pmsi, str):
        match = _PMSI_RE.match(pmsi)
        if match:
            label, raw, _tunnel = match.groups()
            values["vni"] = int(raw) if raw is not None else int(label) << 4
        else:
            log.warning("PMSI %r is not ingress replication, ignored", pmsi)
    return values


def _decode_extended(value: int, values: dict) -> None:
    """Decode one 8-byte extended community (as the integer ExaBGP prints) into ``values``."""
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
        values["encapsulation"] = names.get(tunnel, f"unknown-{tunnel}")
    elif (kind, sub) == (0x06, 0x00):
        values["mobility_seq"] = int.from_bytes(data[4:], "big")
    elif (kind, sub) == (0x06, 0x03):
        values["router_mac"] = data[2:].hex(":")
