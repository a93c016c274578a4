"""Flow-stats entries as a read-back parses them: the fixed fields at once, the match and instructions on first use.

Part of the door to Ryu (controller/ryu_compat.py installs ``LazyFlowStats`` as each OpenFlow version's flow-stats
body: ``lazy_flow_stats``). A read-back of a switch needs table, priority and cookie of each flow; Ryu's parser
builds the match and every instruction and action as objects (tens of microseconds a flow, on the event loop), so
50 switches read back at once with 16,000 flows each held the loop long enough for OVS to drop them
(tests/benchmarks/vrs_scale.py).

An entry is a tuple of its fixed fields (in the version's ``OFP_FLOW_STATS_0_PACK_STR`` order) and its bytes, whose
named fields are read by ``operator.itemgetter``: in C, without a Python call. A restart of vrs_scale parses and
keys 800,000 entries (50 switches of 16,000 flows), and Ryu's parse loop reads ``length`` twice and the read-back
``table_id``, ``priority`` and ``cookie`` once each: five Python calls an entry, when they were properties of
functions (tests/benchmarks/read_back_cost.py: docs/benchmarks.md, "restart CPU, stop 37").
"""

from __future__ import annotations

import operator
import struct

from controller.ofcheck import Refused, check_actions


def entry_parser(what: str) -> classmethod:
    """The ``parser`` classmethod of a lazy entry (a tuple subclass whose ``HEADER`` is the entry's fixed part, its
    length first): ``parser(buf, offset)``, the fixed fields and the entry's bytes (a copy); ValueError, naming
    ``what``, if its length is below its fixed part or beyond the message. One Python call an entry (a read-back of
    800,000 flow stats: tests/unit/test_read_back_cost.py)."""

    def parser(cls, buf, offset: int):
        fixed = cls.HEADER.unpack_from(buf, offset)
        length = fixed[0]
        if not cls.HEADER.size <= length <= len(buf) - offset:
            raise ValueError(f"{what} at byte {offset}: length {length} is not between its fixed part's "
                             f"{cls.HEADER.size} bytes and the {len(buf) - offset} left in the message")
        return tuple.__new__(cls, (*fixed, bytes(buf[offset:offset + length])))

    return classmethod(parser)


class LazyFlowStats(tuple):
    """One entry of a flow-stats reply with Ryu's OFPFlowStats attributes: the fixed fields, then the entry's bytes
    (a copy), whose ``match`` and ``instructions`` Ryu's own parser builds on first use (kept in the instance's
    dict: a tuple subclass has no slots of its own). Each version's subclass names its fields (``lazy_flow_stats``)."""

    HEADER: struct.Struct
    RYU: type  # the version's OFPFlowStats

    # the entry at an offset of a reply's bytes; ValueError if its length is below its fixed part or beyond the message
    # (Ryu's parse loop steps by it: a length of 0 spun there for ever, the event loop held and the entries piling up;
    # Ryu logs the error and drops the message)
    parser = entry_parser("flow stats entry")

    def _parsed(self):
        try:
            return self._full
        except AttributeError:
            raw = self[-1]
            check_framing(raw, self.HEADER.size)
            full = self._full = self.RYU.parser(raw, 0)
            return full

    @property
    def match(self):
        return self._parsed().match

    @property
    def instructions(self):
        return self._parsed().instructions

    def __repr__(self) -> str:
        return repr(self._parsed())

    # compared and hashed as the objects Ryu makes are (by identity), not as tuples of their bytes
    __eq__ = object.__eq__
    __ne__ = object.__ne__
    __hash__ = object.__hash__


_TLV = struct.Struct("!HH")  # a match's, an instruction's or an action's type and length
_SHORTEST = 8  # bytes of the shortest instruction or action OpenFlow has
_ACTION_LISTS = (3, 4)  # OFPIT_WRITE_ACTIONS, OFPIT_APPLY_ACTIONS (the same in OpenFlow 1.3 and 1.4)


def check_framing(raw: bytes, at: int) -> None:
    """ValueError, naming it, at the first instruction of the entry ``raw`` (its match at byte ``at``), or action of a
    write- or apply-actions instruction (and, in those, an action nested in a Nicira ct action or a Nicira
    controller2 action's property: controller/ofcheck.py ``check_actions``), shorter than its header or running past
    what holds it. Ryu's parser steps by each length: a length of 0 spun there for ever on first use of the entry's
    match or instructions (a stale flow's delete, a REST listing), the event loop held and the list growing."""
    if len(raw) < at + _TLV.size:
        return  # no match header: Ryu's parser raises on its own
    at += -(-_TLV.unpack_from(raw, at)[1] // 8) * 8  # the match, padded to 8 bytes
    for kind, start, end in _framed(raw, at, len(raw), "instruction"):
        if kind in _ACTION_LISTS:
            try:
                check_actions(raw, start + _SHORTEST, end)
            except Refused as refused:
                raise ValueError(f"flow stats entry: the {refused}") from None


def _framed(raw: bytes, at: int, end: int, what: str):
    """(type, start, end) of each instruction in ``raw[at:end]``."""
    while at < end:
        kind, length = _TLV.unpack_from(raw, at) if end - at >= _TLV.size else (None, end - at)
        if not _SHORTEST <= length <= end - at:
            raise ValueError(f"flow stats entry: the {what} at byte {at} has a length of {length}, not between "
                             f"{_SHORTEST} and the {end - at} bytes left for it")
        yield kind, at, at + length
        at += length


def lazy_flow_stats(version, parser, fields: tuple) -> type:
    """Make ``parser``'s flow-stats replies carry LazyFlowStats entries (``version``: its ofproto module; ``fields``:
    the fixed part's names, in order). The class made."""
    names = {name: property(operator.itemgetter(index)) for index, name in enumerate(fields)}
    lazy = type(f"LazyFlowStats{version.OFP_VERSION:02x}", (LazyFlowStats,),
                {"HEADER": struct.Struct(version.OFP_FLOW_STATS_0_PACK_STR), "RYU": parser.OFPFlowStats, **names})
    parser.OFPFlowStatsReply.cls_stats_body_cls = lazy
    return lazy
