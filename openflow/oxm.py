"""One OXM/NXM match field or set-field as OpenFlow writes it (openflow/encode.py ``WireEncoder``): its sort rank in a
match (as Ryu sorts one), its TLV headers (masked or not) and its value's bytes, learnt once from Ryu's ofproto
module of the negotiated version; and the error of a flow or group outside the vocabulary."""

from __future__ import annotations

import socket

from controller.ryu_compat import type_desc


class EncodeError(ValueError):
    """A flow or group uses something outside the vocabulary."""


def mac_bytes(value) -> bytes:
    raw = bytes.fromhex(value.replace(":", "")) if isinstance(value, str) else value.to_bytes(6, "big")
    if len(raw) != 6:
        raise EncodeError(f"bad MAC address {value!r}")
    return raw


def ipv4_bytes(value) -> bytes:
    return socket.inet_pton(socket.AF_INET, value) if isinstance(value, str) else value.to_bytes(4, "big")


class OxmField:
    """How one OXM/NXM field is written: sort rank (as Ryu sorts a match), headers, value bytes."""

    def __init__(self, ofp, name: str):
        number = ofp.oxm_from_user_header(name)
        self.rank = number[0] if isinstance(number, tuple) else number
        self.kind = ofp.oxm_get_field_info_by_name(name)[1]
        self.size = self.kind.size
        self.header = self._header(ofp, number, masked=False)
        self.masked_header = self._header(ofp, number, masked=True)

    def _header(self, ofp, number, masked: bool) -> bytes:
        """The TLV header (with experimenter id, if any) as Ryu writes it before the value."""
        zero = b"\0" * self.size
        buf = bytearray()
        length = ofp.oxm_serialize(number, zero, zero if masked else None, buf, 0)
        return bytes(buf[:length - self.size * (2 if masked else 1)])

    def value(self, value) -> bytes:
        if self.kind is type_desc.MacAddr:
            return mac_bytes(value)
        if self.kind is type_desc.IPv4Addr:
            return ipv4_bytes(value)
        if isinstance(value, int):
            return value.to_bytes(self.size, "big")
        return self.kind.from_user(value)

    def tlv(self, value) -> bytes:
        if isinstance(value, tuple):
            return self.masked_header + self.value(value[0]) + self.value(value[1])
        return self.header + self.value(value)
