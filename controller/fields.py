"""Field checkers: each takes a raw value and returns it normalised, or raises Invalid with a reason.

Small, pure and shared by the policy schema (controller/model.py), the settings loader and REST.
"""

from __future__ import annotations

import ipaddress
import re

MAX_VNI = (1 << 24) - 1
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
NAME_RE = re.compile(NAME_PATTERN)
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
MAX_INT_DIGITS = 20  # no Canopy number is longer; a longer string is refused before int() parses it


class Invalid(ValueError):
    """A value was rejected; str(self) is the reason, written for an operator."""


def is_digits(value: str) -> bool:
    """True for a non-empty string of ASCII digits 0-9 only (str.isdigit() also takes '²' and other scripts'
    digits, which int() then refuses), short enough to be a number Canopy uses."""
    return value.isascii() and value.isdigit() and len(value) <= MAX_INT_DIGITS


def _with_schema(check, **schema):
    """Attach the JSON-schema keywords a checker enforces (the OpenAPI document shows them)."""
    check.schema = schema
    return check


def name(value):
    if not isinstance(value, str):
        raise Invalid("must be a string")
    if not NAME_RE.fullmatch(value):  # fullmatch: "$" alone would take a trailing newline
        raise Invalid("must be 1-63 characters of letters, digits, '-', '_' or '.', starting with a letter or digit")
    return value


def text(value, limit=1024):
    if not isinstance(value, str):
        raise Invalid("must be a string")
    if len(value) > limit:
        raise Invalid(f"must be at most {limit} characters")
    return value


name.schema = {"pattern": NAME_PATTERN, "minLength": 1, "maxLength": 63}


text.schema = {"maxLength": 1024}


def text_upto(limit):
    """A checker for text of at most ``limit`` characters."""
    return _with_schema(lambda value: text(value, limit), maxLength=limit)


def integer(value, low, high):
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid("must be an integer")
    if not low <= value <= high:
        raise Invalid(f"must be between {low} and {high}")
    return value


def int_range(low, high):
    """A checker for an integer in [low, high]."""
    return _with_schema(lambda value: integer(value, low, high), minimum=low, maximum=high)


def boolean(value):
    if not isinstance(value, bool):
        raise Invalid("must be true or false")
    return value


def vni(value):
    return integer(value, 1, MAX_VNI)


def vlan(value):
    return integer(value, 1, 4094)


vni.schema = {"minimum": 1, "maximum": MAX_VNI}
vlan.schema = {"minimum": 1, "maximum": 4094}


def mac(value):
    if not isinstance(value, str):
        raise Invalid("must be a MAC address string like 02:00:00:00:00:01")
    norm = value.strip().lower().replace("-", ":")
    if not MAC_RE.fullmatch(norm):
        raise Invalid(f"{value[:64]!r} is not a MAC address (expected six hex octets like 02:00:00:00:00:01)")
    if int(norm[:2], 16) & 1:
        raise Invalid(f"{norm!r} is a multicast MAC address; a port needs a unicast one")
    if norm == "00:00:00:00:00:00":
        raise Invalid("the all-zero MAC address is not allowed")
    return norm


UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
OPENSTACK_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
OPENSTACK_ID_RE = re.compile(OPENSTACK_ID_PATTERN)


def uuid(value):
    """A UUID in its canonical form (lower case, with dashes), as Nova names its instances."""
    if not isinstance(value, str):
        raise Invalid("must be a UUID string like 6f1c8e3a-0a8b-4c55-9e2f-1d2c3b4a5f60")
    norm = value.strip().lower()
    if not UUID_RE.fullmatch(norm):
        raise Invalid(f"{value[:64]!r} is not a UUID (expected 8-4-4-4-12 hex digits)")
    return norm


def openstack_id(value):
    """An OpenStack identifier such as a Keystone project id: 1-64 letters, digits, "-", "_" or "." (sent as an HTTP
    header value, so nothing else)."""
    if not isinstance(value, str):
        raise Invalid("must be a string")
    if not OPENSTACK_ID_RE.fullmatch(value):
        raise Invalid("must be 1-64 characters of letters, digits, '-', '_' or '.'")
    return value


uuid.schema = {"format": "uuid", "minLength": 36, "maxLength": 36}
openstack_id.schema = {"pattern": OPENSTACK_ID_PATTERN, "minLength": 1, "maxLength": 64}


def ip_address(value):
    """An IPv4 or IPv6 address (an ``ipaddress`` object) from outside: settings, OVSDB rows, BGP and ExaBGP; raises
    Invalid with the reason. ``ipaddress`` takes an IPv6 zone (``fe80::1%eth0``, any text after the ``%``) and keeps
    it: it names an interface of one host, no address Canopy can listen on, announce or tunnel to. Every address that
    may be IPv6 goes through here (or ``ip_network``); an IPv4 one through ``ipv4``, which has no zone."""
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise Invalid(f"{value!r} is not an IP address") from None
    return _unscoped(address, value)


def ip_network(value, strict: bool = True):
    """An IPv4 or IPv6 prefix (an ``ipaddress`` network) from outside, refused with a zone as ``ip_address``."""
    try:
        net = ipaddress.ip_network(value, strict=strict)
    except ValueError:
        raise Invalid(f"{value!r} is not an IP prefix") from None
    _unscoped(net.network_address, value)
    return net


def _unscoped(address, value):
    if getattr(address, "scope_id", None) is not None:
        raise Invalid(f"{value!r} is a scoped IPv6 address: its zone (after '%') names an interface of one host; "
                      "give the address without it")
    return address


def ipv4(value):
    if not isinstance(value, str):
        raise Invalid("must be an IPv4 address string")
    try:
        addr = ipaddress.IPv4Address(value.strip())
    except ValueError:
        raise Invalid(f"{value!r} is not an IPv4 address") from None
    return str(addr)


def ipv4_network(value, max_prefix=32):
    """A CIDR with no host bits set ("10.0.1.0/24")."""
    if not isinstance(value, str):
        raise Invalid("must be a CIDR string like 10.0.1.0/24")
    try:
        net = ipaddress.IPv4Network(value.strip(), strict=True)
    except ipaddress.NetmaskValueError:
        raise Invalid(f"{value!r} has an invalid prefix length") from None
    except ValueError as exc:
        if "host bits set" in str(exc):
            raise Invalid(f"{value!r} has host bits set; did you mean "
                          f"{ipaddress.IPv4Network(value.strip(), strict=False)}?") from None
        raise Invalid(f"{value!r} is not an IPv4 CIDR (IPv6 is not supported yet)") from None
    if "/" not in value:
        raise Invalid(f"{value!r} needs a prefix length, like {value}/24")
    if net.prefixlen > max_prefix:
        raise Invalid(f"prefix length /{net.prefixlen} is too long; at most /{max_prefix}")
    return str(net)


def _ext_community(value, what):
    """Route distinguisher or route target: 'ASN:NN' (2- or 4-byte ASN) or 'IPv4:NN'."""
    if not isinstance(value, str) or value.count(":") != 1:
        raise Invalid(f"{value!r} is not a {what}; use ASN:NN or IPv4:NN, like 65000:100")
    admin, _, num = value.partition(":")
    if not is_digits(num):
        raise Invalid(f"{value!r}: the part after ':' must be a number (digits 0-9)")
    number = int(num)
    if is_digits(admin):
        asn = int(admin)
        if asn > 0xFFFFFFFF:
            raise Invalid(f"{value!r}: AS number {asn} is larger than 4294967295")
        limit = 0xFFFFFFFF if asn <= 0xFFFF else 0xFFFF
    else:
        try:
            admin = str(ipaddress.IPv4Address(admin))
        except ValueError:
            raise Invalid(f"{value!r}: {admin!r} is neither an AS number nor an IPv4 address") from None
        limit = 0xFFFF
    if number > limit:
        raise Invalid(f"{value!r}: the assigned number must be at most {limit} with that administrator")
    return f"{admin}:{number}"


def route_distinguisher(value):
    return _ext_community(value, "route distinguisher")


def route_target(value):
    return _ext_community(value, "route target")


def port_range(value):
    """'80' or '1000-2000' -> (low, high)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) > 11:
        raise Invalid("must be a port number or range like 80 or 1000-2000")
    low, _, high = value.partition("-")
    if not is_digits(low) or (high and not is_digits(high)):
        raise Invalid(f"{value!r} is not a port number or range like 80 or 1000-2000")
    lo, hi = int(low), int(high or low)
    if not 1 <= lo <= hi <= 65535:
        raise Invalid(f"{value!r}: ports must be 1-65535 with the low end first")
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


# the shapes the OpenAPI document shows (the checkers above also check ranges and normalise)
ipv4.schema = {"format": "ipv4"}
ipv4_network.schema = {"pattern": r"^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$"}
mac.schema = {"pattern": r"^[0-9a-fA-F]{2}([:-][0-9a-fA-F]{2}){5}$"}
route_distinguisher.schema = {"pattern": r"^([0-9]{1,10}|[0-9]{1,3}(\.[0-9]{1,3}){3}):[0-9]{1,10}$"}
route_target.schema = route_distinguisher.schema
port_range.schema = {"pattern": r"^[0-9]{1,5}(-[0-9]{1,5})?$"}


def network_upto(max_prefix):
    """A checker for a CIDR whose prefix is at most ``max_prefix`` long."""
    return _with_schema(lambda value: ipv4_network(value, max_prefix), **ipv4_network.schema)


def one_of(*choices):
    def check(value):
        if value not in choices:
            raise Invalid(f"must be one of {', '.join(map(str, choices))}")
        return value

    check.choices = choices
    return check


def seconds_or_permanent(low, high):
    """A checker for a number of seconds in [low, high], or "permanent" (also "off", and false: YAML's unquoted
    off), which it returns as "permanent"."""

    def check(value):
        if value is False or value in ("permanent", "off"):  # YAML reads an unquoted off as false
            return "permanent"
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise Invalid(f"must be seconds (an integer from {low} to {high}), or permanent (also off)")
        return value

    return check
