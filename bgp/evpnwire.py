"""EVPN path attribute bytes read before ExaBGP parses them: plain bytes in, bytes out, no exabgp import.

Used by Canopy's ExaBGP extension on what peers send (``bgp.exabgp_ext`` and its API side ``bgp.exabgp_ext_api``,
the only modules importing ExaBGP, STYLE rule 7); kept apart so that what needs no ExaBGP is testable and
readable without it:

- ``evpn_next_hop``: an MP_REACH_NLRI's EVPN next hop of 16 or 32 bytes made readable for ExaBGP 5.0.15, which
  knows only 4 (and resets the session with NOTIFICATION 3/9 otherwise);
- ``mp_unreach_value``: the MP_UNREACH_NLRI of an UPDATE body that holds nothing else (how GoBGP and FRR
  withdraw), found without ExaBGP's attribute machinery.
"""

from __future__ import annotations

import ipaddress

EVPN_AFI_SAFI = b"\x00\x19\x46"  # AFI 25 (L2VPN), SAFI 70 (EVPN): how an EVPN MP_(UN)REACH_NLRI value starts
_MP_UNREACH = 15
_OPTIONAL, _EXTENDED = 0x80, 0x10  # MP_UNREACH_NLRI is optional non-transitive (RFC 4760)


def evpn_next_hop(data: bytes) -> tuple[bytes, bool]:
    """An MP_REACH_NLRI attribute value with an EVPN next hop ExaBGP can read: (value, unusable).

    4 bytes: unchanged. 16 or 32 bytes (IPv6 global [+ link-local]): an IPv4-mapped address becomes
    the 4-byte IPv4 address; another IPv6 address keeps its first 16 bytes. Any other length becomes
    0.0.0.0 and ``unusable`` is True (the caller makes the routes withdrawals). Other families and
    attributes too short to hold their next hop are returned unchanged (ExaBGP judges them).
    """
    if len(data) < 5 or data[:3] != EVPN_AFI_SAFI or data[3] == 4 or len(data) < 5 + data[3]:
        return data, False
    length, hop = data[3], data[4:4 + data[3]]
    unusable = length not in (16, 32)
    if unusable:
        new = bytes(4)
    else:
        mapped = ipaddress.IPv6Address(hop[:16]).ipv4_mapped
        new = mapped.packed if mapped else hop[:16]
    return data[:3] + bytes([len(new)]) + new + data[4 + length:], unusable


def mp_unreach_value(data: bytes) -> bytes | None:
    """The value of the UPDATE body's only path attribute when it is an MP_UNREACH_NLRI and there are neither
    IPv4 withdrawn routes nor IPv4 NLRI; None otherwise."""
    if len(data) < 7 or data[:2] != b"\x00\x00" or int.from_bytes(data[2:4], "big") != len(data) - 4:
        return None
    flags, code = data[4], data[5]
    if code != _MP_UNREACH or flags & ~_EXTENDED != _OPTIONAL:
        return None
    if flags & _EXTENDED:
        length, value = (int.from_bytes(data[6:8], "big"), data[8:]) if len(data) >= 8 else (-1, b"")
    else:
        length, value = data[6], data[7:]
    return value if length == len(value) else None
