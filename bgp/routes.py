"""EVPN route model for Canopy's federation (pure Python, no ExaBGP imports).

Three route types (RFC 7432, RFC 8365, RFC 9135, RFC 9136), as frozen dataclasses:

- ``MacIpRoute`` (type 2): a MAC (and optionally its IP) in an L2 VNI, with an L3 VNI and the
  Router's MAC for symmetric IRB, and MAC mobility.
- ``InclusiveMulticastRoute`` (type 3): a VTEP joining an L2 VNI's flood list (PMSI tunnel,
  ingress replication, label = VNI).
- ``IpPrefixRoute`` (type 5): an IP prefix in a routed domain (L3 VNI, Router's MAC).

``route.key`` is the route key as the RFCs define it (RFC 7432 section 7.2, RFC 9136 section 3): the
NLRI fields that identify a route, without the ESI, the MPLS labels (VNIs) or the type 5 gateway IP.
A peer withdraws with any labels (FRR: label 0), and a new announcement with the same key replaces
the old one, on both sides (``bgp.exabgp_ext`` keys ExaBGP's outgoing RIB the same way).

The API command format is one line: ``[neighbor <ip> ]announce evpn <json>`` or
``... withdraw evpn <json>``; the JSON is compact (no spaces) so ExaBGP's command dispatcher,
which matches registered names by substring, never finds a command name inside the payload. The
payload is one route (an object) or several (an array of objects, ``to_batch_command``): one command
line, one acknowledgement, however many routes it carries.

What peers send is decoded and checked in ``bgp.received``.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from dataclasses import dataclass, field
from operator import itemgetter

from controller import fields

MAX_VNI = (1 << 24) - 1
ANNOUNCE = "announce"
WITHDRAW = "withdraw"
ACTIONS = (ANNOUNCE, WITHDRAW)
ENCAPSULATIONS = {"vxlan": 8}
_MAC_RE = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")  # fullmatch: ``$`` would let a trailing newline through
_COMMAND_RE = re.compile(r"^(?:neighbor (\S+) )?(announce|withdraw) evpn (\{.*\}|\[.*\])$")
BATCH_ROUTES = 500  # routes per command line at most (ExaBGP takes lines of up to 1 MiB)


# --------------------------------------------------------------------------- validation


def _mac(value: str, name: str) -> str:
    mac = str(value).lower()
    if not _MAC_RE.fullmatch(mac):
        raise ValueError(f"{name}: {value!r} is not a MAC address like 52:54:00:12:34:56")
    return mac


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"  # 0-255 without a leading zero
_CANONICAL_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")  # as ``str(ipaddress.IPv4Address(...))`` writes it


def _ip(value: str, name: str) -> str:
    """The address normalised; an IPv4-mapped IPv6 address (::ffff:a.b.c.d) becomes a.b.c.d. An IPv4 address written
    as it is normalised is returned as it is, without ``ipaddress`` (10,000 vports bound: 10,000 new IPs); only a
    plain ``str``: a subclass of it goes through ``ipaddress`` and comes back a plain ``str``, as before."""
    if type(value) is str and _CANONICAL_IPV4.fullmatch(value):
        return value
    try:
        return _normal_ip(value) if isinstance(value, str) else _normal_ip.__wrapped__(value)
    except fields.Invalid as exc:
        raise ValueError(f"{name}: {exc}") from None


@functools.lru_cache(maxsize=1 << 16)
def _normal_ip(value) -> str:
    """``_ip`` without the field name, remembered: a batch of routes repeats its next hops and VTEP IPs. A scoped
    IPv6 address (fe80::1%eth0: a host's zone, any text) is no BGP address: refused (fields.ip_address)."""
    address = fields.ip_address(value)
    mapped = getattr(address, "ipv4_mapped", None)
    return str(mapped or address)


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
    if isinstance(value, str):
        return _admin_number_text(value, name)
    return _admin_number_text.__wrapped__(value, name)


@functools.lru_cache(maxsize=4096)
def _admin_number_text(value: str, name: str) -> str:
    """``_admin_number``, remembered (every route of a batch carries the same RD and route targets)."""
    admin, sep, number = str(value).rpartition(":")
    if not sep or not _digits(number):
        raise ValueError(f"{name}: {value!r} is not 'asn:number' or 'ipv4:number'")
    if _digits(admin):
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


def _digits(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also takes other scripts' digits (which ``int`` reads) and superscripts
    (which it refuses, with a message that names no field)."""
    return text.isascii() and text.isdigit()


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
    sticky: bool = False  # the MAC Mobility community's sticky/static flag (RFC 7432 section 7.7): cannot move

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
        if not isinstance(self.sticky, bool):
            raise ValueError(f"sticky: {self.sticky!r} is not true or false")

    def with_host(self, mac: str, ip: str | None) -> MacIpRoute:
        """This route with another MAC and IP (or none), checked as ``__post_init__`` checks them; the other fields
        are this route's, checked when it was built (``bgp.evpn`` builds a subnet's 10,000 type 2 routes at one
        VTEP from its first: they differ in these two fields only)."""
        route = object.__new__(MacIpRoute)
        vars(route).update(vars(self))
        _set(route, "mac", _mac(mac, "mac"))
        _set(route, "ip", None if ip is None else _ip(ip, "ip"))
        return route

    @property
    def key(self) -> tuple:
        """RFC 7432 section 7.2: RD, Ethernet tag, MAC and IP; not the ESI nor the labels (``route_key``'s, without
        its generator: asked of every type 2 route made, 10,000 for 10,000 ports bound)."""
        fields = vars(self)
        return 2, fields["rd"], fields["ethernet_tag"], fields["mac"], fields["ip"]


@dataclass(frozen=True, kw_only=True)
class InclusiveMulticastRoute:
    """Type 3 inclusive multicast: ``next_hop`` is the originating router's IP (in the NLRI, part of the key) and,
    unless ``tunnel`` says otherwise, the PMSI tunnel identifier: for ingress replication the address BUM traffic
    goes to (RFC 6514 section 5). ``tunnel`` is set only when a peer's differs from its originating IP (``vtep``:
    the address to flood to either way); Canopy's own are equal."""

    TYPE = 3
    rd: str
    vni: int
    next_hop: str
    ethernet_tag: int = 0
    route_targets: tuple[str, ...] = field(default=())
    encapsulation: str = "vxlan"
    tunnel: str | None = None

    def __post_init__(self):
        _common(self)
        _set(self, "vni", _vni(self.vni, "vni"))
        if self.tunnel is not None:
            tunnel = _ip(self.tunnel, "tunnel")
            _set(self, "tunnel", None if tunnel == self.next_hop else tunnel)

    @property
    def vtep(self) -> str:
        """Where this route's VTEP takes BUM traffic: the PMSI tunnel identifier."""
        return self.tunnel or self.next_hop

    @property
    def originator(self) -> str:
        """The originating router's IP (in the NLRI), equal to the next hop."""
        return self.next_hop

    @property
    def key(self) -> tuple:
        """RFC 7432 section 7.2: RD, Ethernet tag and the originating router's IP (the whole NLRI)."""
        return route_key(3, vars(self))


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
            _set(self, "prefix", str(fields.ip_network(self.prefix, strict=False)))
        except fields.Invalid as exc:
            raise ValueError(f"prefix: {exc}") from None
        _set(self, "gateway", _ip(self.gateway, "gateway"))
        if ipaddress.ip_address(self.gateway).version != ipaddress.ip_network(self.prefix).version:
            raise ValueError("gateway: must be of the same IP version as prefix")
        _set(self, "esi", _uint(self.esi, 80, "esi"))
        _set(self, "l3_vni", _vni(self.l3_vni, "l3_vni"))
        if self.router_mac is not None:
            _set(self, "router_mac", _mac(self.router_mac, "router_mac"))

    @property
    def key(self) -> tuple:
        """RFC 9136 section 3: RD, Ethernet tag and the IP prefix (with its length); not the ESI, the
        gateway IP nor the label."""
        return route_key(5, vars(self))


Route = MacIpRoute | InclusiveMulticastRoute | IpPrefixRoute
ROUTE_CLASSES = {cls.TYPE: cls for cls in (MacIpRoute, InclusiveMulticastRoute, IpPrefixRoute)}
KEY_FIELDS = {2: ("rd", "ethernet_tag", "mac", "ip"), 3: ("rd", "ethernet_tag", "next_hop"),
              5: ("rd", "ethernet_tag", "prefix")}


def route_key(kind: int, fields: dict) -> tuple:
    """The RFC route key of route type ``kind`` from its fields (``decode_nlri`` output or a route's)."""
    return (kind, *(fields.get(name) for name in KEY_FIELDS[kind]))


# --------------------------------------------------------------------------- API commands


def route_to_dict(route: Route) -> dict:
    """The route as a plain dict with a ``type`` member (the command payload): its fields in order (a route's
    ``vars`` hold its fields only), ``route_targets`` (every type's one tuple) as a list; a type 2's ``sticky``
    and a type 3's ``tunnel`` only when set (Canopy announces neither: its command texts stay as they were)."""
    data = {"type": route.TYPE, **vars(route)}
    data["route_targets"] = list(route.route_targets)
    unset = _UNSET.get(route.TYPE)
    if unset and not data[unset]:
        del data[unset]
    return data


_UNSET = {2: "sticky", 3: "tunnel"}  # the field ``route_to_dict`` leaves out when false (False, None) per type


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
    return _command(payload(route), action, neighbor)


def to_batch_command(batch, action: str, neighbor: str | None = None) -> str:
    """One API line for several routes: ``[neighbor <ip> ]announce|withdraw evpn [{json},...]``; a batch of
    one is written as ``to_command`` writes it. The text is what ``json.dumps`` of the routes' dicts gives, made
    of each route's ``payload``."""
    batch = list(batch)
    if len(batch) == 1:
        return to_command(batch[0], action, neighbor)
    held = list(map(_PAYLOADS.get, map(id, batch)))  # (each made already, most often: looked up in C loops)
    if None in held or list(map(_FIRST, held)) != batch:
        return _command("[" + ",".join(map(payload, batch)) + "]", action, neighbor)
    return _command("[" + ",".join(map(_SECOND, held)) + "]", action, neighbor)


_PAYLOADS: dict = {}  # id(route) -> (route, its payload): the route is kept, so its id is not reused meanwhile
_PAYLOADS_SIZE = 1 << 18
_FIRST, _SECOND = itemgetter(0), itemgetter(1)
_PAYLOAD_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode  # ``json.dumps`` with these
_JSON_TEXT = json.encoder.encode_basestring_ascii  # what that encoder's ``encode`` returns for a str (ensure_ascii)
# arguments, without making an encoder per call (10,000 new routes: 10,000 calls)


def payload(route: Route) -> str:
    """``route_to_dict`` as compact JSON (sorted keys): the route's text in command lines. Made once per route
    object (routes are frozen, and ``bgp.evpn`` hands out the same object for an unchanged route round after
    round), looked up by identity afterwards."""
    entry = _PAYLOADS.get(id(route))
    if entry is not None and entry[0] is route:
        return entry[1]
    text = _PAYLOAD_JSON(route_to_dict(route))
    if len(_PAYLOADS) >= _PAYLOADS_SIZE:
        _PAYLOADS.clear()
    _PAYLOADS[id(route)] = (route, text)
    return text


_HOST_CUTS: dict = {}  # id(route) -> (route, its payload cut around its IP's and MAC's values, or None)


def encode_host(route: MacIpRoute, first: MacIpRoute) -> None:
    """Make the ``payload`` of ``route``, ``first.with_host(...)``, from ``first``'s: compact JSON with sorted keys
    writes the two alike but for the values of "ip" and "mac" (10,000 vports bound: 10,000 texts written by
    the JSON encoder otherwise). Each value is written as the encoder writes it."""
    if _PAYLOADS.get(id(route), (None,))[0] is route:
        return
    cuts = _host_cuts(first)
    if cuts is None:
        payload(route)
        return
    head, middle, tail = cuts
    if len(_PAYLOADS) >= _PAYLOADS_SIZE:
        _PAYLOADS.clear()
    ip, mac = route.ip, route.mac  # (text as the encoder writes it: its own C function, without its Python call)
    _PAYLOADS[id(route)] = (route, head + (_JSON_TEXT(ip) if isinstance(ip, str) else _PAYLOAD_JSON(ip)) + middle +
                            (_JSON_TEXT(mac) if isinstance(mac, str) else _PAYLOAD_JSON(mac)) + tail)


def _host_cuts(first: MacIpRoute) -> tuple[str, str, str] | None:
    """``first``'s payload as (what precedes the IP's value, what lies between it and the MAC's, what follows),
    remembered by identity; None if the text is not so cut (then each route is encoded whole)."""
    entry = _HOST_CUTS.get(id(first))
    if entry is not None and entry[0] is first:
        return entry[1]
    text, ip, mac = payload(first), _PAYLOAD_JSON(first.ip), _PAYLOAD_JSON(first.mac)
    head, found, rest = text.partition(f'"ip":{ip},')
    middle, found_too, tail = rest.partition(f'"mac":{mac},')
    cuts = (f'{head}"ip":', f',{middle}"mac":', f",{tail}") if found and found_too else None
    if cuts is not None and cuts[0] + ip + cuts[1] + mac + cuts[2] != text:
        cuts = None
    if len(_HOST_CUTS) >= _PAYLOADS_SIZE:
        _HOST_CUTS.clear()
    _HOST_CUTS[id(first)] = (first, cuts)
    return cuts


def encode(route: Route) -> bool:
    """Make the route's ``payload`` now; True if it was not made before. A caller that pauses between routes
    (``bgp.federation``) encodes where it may pause, so that building the command lines later (under the
    speaker's lock) only looks texts up and joins them."""
    entry = _PAYLOADS.get(id(route))
    if entry is not None and entry[0] is route:
        return False
    payload(route)
    return True


def _command(text: str, action: str, neighbor: str | None) -> str:
    if action not in ACTIONS:
        raise ValueError(f"action: {action!r} is not one of {ACTIONS}")
    prefix = f"neighbor {neighbor} " if neighbor else ""
    return f"{prefix}{action} evpn {text}"


_PARSED: dict = {}  # a route's payload text -> the route parsed from it (routes are frozen, texts immutable)
_PARSED_SIZE = 1 << 17  # ~100 MB at most in ExaBGP; past it, parsed again
_BETWEEN = re.compile(r"\}\s*,\s*\{")  # between two payloads of an array: ``},{``, or ``} , {`` as ExaBGP's
# line formatter spaces out every comma and bracket before a command reaches the extension
_SPACE = re.compile(r"\s*")
_SCAN = json.JSONDecoder().scan_once  # (value, end) of the JSON value at an index; StopIteration if none there


def _parse_payloads(text: str) -> tuple[Route, ...] | None:
    """The routes of a batch's JSON array, each route's text parsed once and looked up when seen again (ExaBGP
    gets the same texts in a withdraw command as in the announce: parsing and checking a route cost more than
    the rest of injecting its withdrawal); None when the text is not an array of good routes (the caller parses
    it whole and names what is wrong).

    Seen before: the array cut at every ``},{`` gives pieces that are each a text parsed before; then the array
    is exactly those objects, whatever the cut found (every piece is a whole object's text). Otherwise the array
    is walked with the JSON scanner, which gives each object's exact text, and each route is remembered."""
    if text[:1] != "[" or text[-1:] != "]":
        return None
    inner = text[1:-1].strip()
    cut = _BETWEEN.search(inner)
    if (inner if cut is None else inner[:cut.start() + 1]) not in _PARSED:  # a new batch: no cutting needed
        return _scan_payloads(text)
    pieces = _BETWEEN.split(inner)
    if len(pieces) > 1:
        last = len(pieces) - 1
        pieces = [("{" if i else "") + piece + ("}" if i < last else "") for i, piece in enumerate(pieces)]
    known = [_PARSED.get(piece) for piece in pieces]
    if None not in known:
        return tuple(known)
    return _scan_payloads(text)


def _scan_payloads(text: str) -> tuple[Route, ...] | None:
    """The routes of a JSON array of route objects, each remembered by its object's exact text; None if the text
    is not one, or a route in it is bad."""
    batch, at = [], _SPACE.match(text, 1).end()
    while text[at:at + 1] == "{":
        try:
            data, end = _SCAN(text, at)
            route = route_from_dict(data)
        except (StopIteration, ValueError, TypeError, RecursionError):
            return None
        if len(_PARSED) >= _PARSED_SIZE:
            _PARSED.clear()
        batch.append(_PARSED.setdefault(text[at:end], route))
        at = _SPACE.match(text, end).end()
        if text[at:at + 1] != ",":
            break
        at = _SPACE.match(text, at + 1).end()
    if not batch or text[at:] != "]":
        return None
    return tuple(batch)


def parse_command(line: str) -> tuple[str | None, str, Route]:
    """Parse a ``to_command`` line into (neighbor or None, action, route); ValueError if bad."""
    neighbor, action, batch = parse_batch_command(line)
    if len(batch) != 1:
        raise ValueError(f"evpn command carries {len(batch)} routes, expected one")
    return neighbor, action, batch[0]


def parse_batch_command(line: str) -> tuple[str | None, str, tuple[Route, ...]]:
    """Parse a ``to_command`` or ``to_batch_command`` line into (neighbor or None, action, routes); ValueError
    if the line or any route in it is bad (naming the route's position in a batch)."""
    match = _COMMAND_RE.match(line.strip())
    if not match:
        raise ValueError(f"not an evpn command: {line[:80]!r}")
    neighbor, action, text = match.groups()
    known = _parse_payloads(text)
    if known is not None:
        return neighbor, action, known
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"evpn command payload is not JSON: {error}") from None
    if not isinstance(data, list):
        return neighbor, action, (route_from_dict(data),)
    if not data:
        raise ValueError("evpn command carries no route")
    batch = []
    for position, item in enumerate(data):
        try:
            batch.append(route_from_dict(item))
        except ValueError as error:
            raise ValueError(f"route {position}: {error}") from None
    return neighbor, action, tuple(batch)
