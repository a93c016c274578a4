"""Field checkers: each takes a raw value and returns it normalised, or raises Invalid with a reason.

Small, pure and shared by the policy schema (controller/model.py), the settings loader and REST.
"""

from __future__ import annotations

import ipaddress
import re

MAX_VNI = (1 << 24) - 1
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


class Invalid(ValueError):
    """A value was rejected; str(self) is the reason, written for an operator."""


def name(value):
    if not isinstance(value, str):
        raise Invalid("must be a string")
    if not NAME_RE.match(value):
        raise Invalid("must be 1-63 characters of letters, digits, '-', '_' or '.', starting with a letter or digit")
    return value


def text(value, limit=1024):
    if not isinstance(value, str):
        raise Invalid("must be a string")
    if len(value) > limit:
        raise Invalid(f"must be at most {limit} characters")
    return value


def integer(value, low, high):
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid("must be an integer")
    if not low <= value <= high:
        raise Invalid(f"must be between {low} and {high}")
    return value


def boolean(value):
    if not isinstance(value, bool):
        raise Invalid("must be true or false")
    return value


def vni(value):
    return integer(value, 1, MAX_VNI)


def vlan(value):
    return integer(value, 1, 4094)


def mac(value):
    if not isinstance(value, str):
        raise Invalid("must be a MAC address string like 02:00:00:00:00:01")
    norm = value.strip().lower().replace("-", ":")
    if not MAC_RE.match(norm):
        raise Invalid(f"{value!r} is not a MAC address (expected six hex octets like 02:00:00:00:00:01)")
    if int(norm[:2], 16) & 1:
        raise Invalid(f"{value!r} is a multicast MAC address; a port needs a unicast one")
    if norm == "00:00:00:00:00:00":
        raise Invalid("the all-zero MAC address is not allowed")
    return norm


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
    if not num.isdigit():
        raise Invalid(f"{value!r}: the part after ':' must be a number")
    number = int(num)
    if admin.isdigit():
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
    if not isinstance(value, str):
        raise Invalid("must be a port number or range like 80 or 1000-2000")
    low, _, high = value.partition("-")
    if not low.isdigit() or (high and not high.isdigit()):
        raise Invalid(f"{value!r} is not a port number or range like 80 or 1000-2000")
    lo, hi = int(low), int(high or low)
    if not 1 <= lo <= hi <= 65535:
        raise Invalid(f"{value!r}: ports must be 1-65535 with the low end first")
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def one_of(*choices):
    def check(value):
        if value not in choices:
            raise Invalid(f"must be one of {', '.join(map(str, choices))}")
        return value

    check.choices = choices
    return check
