"""Flows and groups (openflow.flows) as OpenFlow 1.3 / 1.4 messages (reading them back: openflow/decode.py).

Two encoders speak the same vocabulary:

- Ryu message objects (openflow/ryumsg.py), built with the negotiated ``datapath.ofproto_parser``: ``flow_add``,
  ``flow_delete_strict``, ``group_mod``, ``packet_out`` and the read-back requests. They are the
  reference and serve the rare messages (groups, packet-outs, requests).
- ``WireEncoder`` packs flow-mods and group-mods straight into bytes: the same bytes Ryu serializes (the unit
  tests compare them), several times faster, because the flow-mod is the hot message (DESIGN "Speed") and a
  subnet's flood group, rewritten whole each time a port of the subnet comes or goes, has one bucket per port
  (with Ryu's objects a 600-bucket group-mod cost ~6 ms of CPU, ten times the rest of the port's programming).
  How one match field or set-field is written (its rank, headers and value bytes): openflow/oxm.py.

Action tuples map to OpenFlow as follows (``goto`` becomes a goto-table instruction, ``meter`` a meter
instruction, the others go in one apply-actions instruction, in order):

=====================  =====================================================================
("meter", meter_id)    OFPIT_METER (first action only; openflow/meters.py); left out by an encoder
                       of a switch without meters (``WireEncoder(ofp, meters=False)``)
("output", port)       OFPAT_OUTPUT; "in_port" -> OFPP_IN_PORT, "controller" -> OFPP_CONTROLLER
                       with max_len OFPCML_NO_BUFFER (whole packet)
("set", field, value)  OFPAT_SET_FIELD with any OXM/NXM field Ryu knows (reg0..7, tun_ipv4_dst,
                       tunnel_id, vlan_vid with OFPVID_PRESENT set by the caller, eth/arp/ipv4...)
("move", src, dst)     NXAST_REG_MOVE over the full width of both fields
("push_vlan",)         OFPAT_PUSH_VLAN 0x8100;  ("pop_vlan",) OFPAT_POP_VLAN
("dec_ttl",)           OFPAT_DEC_NW_TTL
("resubmit", table)    NXAST_RESUBMIT_TABLE (in_port unchanged)
("group", group_id)    OFPAT_GROUP
("ct", zone_reg, table, commit, mark_reg)
("ct_nat", zone, table, commit, nat)  NXAST_CT with an immediate zone and a nested NXAST_NAT (nat: None,
                                     an IP (source NAT) or ("dst", IP))
                       NXAST_CT: zone from zone_reg[0..15], recirculate to table (or none),
                       NX_CT_F_COMMIT when commit, and a nested reg-move mark_reg -> ct_mark
("conjunction", id, k, n)
                       NXAST_CONJUNCTION (clause k of n, 1-based here, 0-based on the wire)
=====================  =====================================================================
"""

from __future__ import annotations

import operator
import socket
import struct
from itertools import chain, repeat

from openflow.flows import Flow, Group
from openflow.oxm import EncodeError, OxmField

ALL_ONES = (1 << 64) - 1
OFPP_ANY = OFPG_ANY = 0xFFFFFFFF
OFP_NO_BUFFER = 0xFFFFFFFF
OFPCML_NO_BUFFER = 0xFFFF
NX_EXPERIMENTER = 0x00002320
NXAST_REG_MOVE, NXAST_RESUBMIT_TABLE, NXAST_CONJUNCTION, NXAST_CT, NXAST_NAT = 6, 14, 34, 35, 36
NX_NAT_F_SRC, NX_NAT_F_DST = 1, 2
NX_NAT_RANGE_IPV4 = 0x3  # NX_NAT_RANGE_IPV4_MIN | NX_NAT_RANGE_IPV4_MAX
NX_CT_F_COMMIT = 1
NX_CT_RECIRC_NONE = 0xFF
CT_ZONE_OFS_NBITS = 15  # bits 0..15 of the zone register: (offset << 6) | (n_bits - 1)
NX_IN_PORT = 0xFFF8  # OFPP_IN_PORT in the 16-bit port space of Nicira actions
INSTRUCTION_CACHE = 65536  # action tuples (instructions, group buckets) or match fields a WireEncoder remembers
_GROUP_COMMANDS = {"add": "OFPGC_ADD", "modify": "OFPGC_MODIFY", "delete": "OFPGC_DELETE"}


# what packing a value that does not fit its field raises (a port number OVSDB reported as 2**33, a priority over
# 65535, a malformed address): the message is left out like one outside the vocabulary (openflow/changeset.py), not
# the change set. Not TypeError: a value of the wrong type (a string where a number goes) is a compiler bug,
# raised out of the change set (the reconciler logs it and reads the switch back), not a message quietly left out.
# None where a number goes is one too, but struct says struct.error for it: openflow/pipeline.py check_flow refuses
# it (and a priority or output port that is not an integer) when the flow is compiled, so it never gets here.
BAD_VALUE = (ValueError, OverflowError, OSError, struct.error)


def too_long(what: str, size: int, bundled: bool = False) -> str:
    """Why a message over OpenFlow's 16-bit length is left out (the reconciler names the flow)."""
    if bundled:
        return f"a {what} of {size:,} bytes is {size + 16:,} in a bundle add, over OpenFlow's {MAX_MESSAGE:,}"
    return f"a {what} of {size:,} bytes is over OpenFlow's {MAX_MESSAGE:,}"


# ----------------------------------------------------------------------------- helpers (also openflow/ryumsg.py)

def _port(ofp, port) -> tuple[int, int]:
    """(port number, max_len) of an output action."""
    if port == "in_port":
        return ofp.OFPP_IN_PORT, 0
    if port == "controller":
        return ofp.OFPP_CONTROLLER, OFPCML_NO_BUFFER
    return port, 0


def _split_goto(actions) -> tuple[tuple, int | None]:
    if actions and actions[-1][0] == "goto":
        return actions[:-1], actions[-1][1]
    return actions, None


# ----------------------------------------------------------------------------------- wire encoder

_FLOW_MOD = struct.Struct("!BBHIQQBBHHHIIIHH")  # header + ofp_flow_mod up to its match: 48 bytes
_MATCH_HEADER = struct.Struct("!HH")
_ACTION_HEADER = struct.Struct("!HH")
_OUTPUT = struct.Struct("!HHIH6x")
_GROUP = struct.Struct("!HHI")
_PLAIN = struct.Struct("!HH4x")  # pop_vlan, dec_nw_ttl; also an apply-actions instruction header
_PUSH_VLAN = struct.Struct("!HHH2x")
_NX_HEADER = struct.Struct("!HHIH")
_REG_MOVE = struct.Struct("!HHH")
_RESUBMIT = struct.Struct("!HB3x")
_CT = struct.Struct("!H4sHB3xH")  # flags, zone_src (NXM header), zone_ofs_nbits, recirc_table, pad, alg
_CONJUNCTION = struct.Struct("!BBI")
_NAT = struct.Struct("!2xHH")  # flags, range_present (then the ranges present)
_GOTO = struct.Struct("!HHB3x")
_METER = struct.Struct("!HHI")  # OFPIT_METER: type, len 8, meter_id
_METER_MOD = struct.Struct("!BBHIHHI")  # header + ofp_meter_mod: command, flags, meter_id (then its bands)
_METER_BAND_DROP = struct.Struct("!HHII4x")  # type, len 16, rate, burst_size, pad
_BUNDLE_ADD = struct.Struct("!BBHII2xH")
_GROUP_MOD = struct.Struct("!BBHIHBxI")  # header + ofp_group_mod: command, type, pad, group_id
_BUCKET = struct.Struct("!HHII4x")  # len, weight, watch_port, watch_group, pad (then the actions)
MAX_MESSAGE = 0xFFFF  # bytes of an OpenFlow message: its header's 16-bit length


_FLOW_HEADER = struct.Struct("!BBHI")  # an OpenFlow header: version, type, length, xid
_BUNDLED_FLOW_HEADER = struct.Struct("!BBHII2xHBBHI")  # a bundle add's header, then its flow-mod's own header
_FLOW_HEAD = struct.Struct("!QQBBHHHIIIHH")  # ofp_flow_mod after its header, up to its match: 40 bytes
_BUNDLED_FLOW_MOD = struct.Struct(_BUNDLED_FLOW_HEADER.format + _FLOW_HEAD.format[1:])  # both, one pack: a delete
# A DELETE_STRICT up to its match with its constant runs packed as bytes ("s": a copy, where an integer field is a
# conversion; the cookie mask of all ones was the dearest): version and type, length, xid, cookie, mask, table,
# command/idle/hard timeouts, priority, buffer/out port/out group/flags/importance. 48 bytes; bundled: 64.
_DELETE_HEAD = struct.Struct("!2sHIQ8sB5sH16s")
_BUNDLED_DELETE_HEAD = struct.Struct("!2sHI8s2sHIQ8sB5sH16s")  # the bundle add's header and bundle, then the above
_RANKED = operator.itemgetter(0)
_WIRE = operator.attrgetter("_wire")  # a Flow's cached adds, one slot per version (None before its first)
_VERSION_SLOTS = {4: 0, 5: 1}  # OpenFlow 1.3, 1.4: where a Flow keeps its bytes of that version (``Flow._wire``)
_METER_COMMANDS = {"add": "OFPMC_ADD", "modify": "OFPMC_MODIFY", "delete": "OFPMC_DELETE"}


class WireEncoder:
    """Flow-mods (add, delete_strict) and bundle adds as bytes for one OpenFlow version (1.3 or 1.4).

    Byte-for-byte what Ryu's OFPFlowMod built by ``flow_add``/``flow_delete_strict`` serializes.

    A flow's add is the same bytes on every switch of one OpenFlow version but for the 8-byte header (the xid,
    and the version): everything after it (``flow_tail``) is encoded once per Flow and version and kept on the
    Flow, which the compiler shares between every switch that needs it (openflow/compiler.py), so 50 switches
    cost one encoding and 50 headers (``write_adds``), not 50 encodings.
    """

    def __init__(self, ofproto, meters: bool = True):
        """``meters``: False for a switch without meters (the flows' meter instructions are left out)."""
        self.ofp = ofproto
        self.meters = meters
        self.version = ofproto.OFP_VERSION
        if self.version not in _VERSION_SLOTS:
            raise ValueError(f"OpenFlow version 0x{self.version:02x}: Canopy speaks 1.3 and 1.4 only")
        self._slot = _VERSION_SLOTS[self.version]
        self._unmetered: dict[Flow, Flow] = {}  # meters=False: a metered Flow -> the same without its meter
        self._fields: dict[str, OxmField] = {}
        self._instructions: dict[tuple, bytes] = {}
        self._buckets: dict[tuple, bytes] = {}
        self._tlvs: dict[tuple, tuple[int, bytes]] = {}  # (field, value) -> (sort rank, TLV)
        self._action_bytes: dict[tuple, bytes] = {}  # action tuple -> its bytes (``_action_list``)
        self._actions = {
            "output": self._output, "set": self._set_field, "move": self._reg_move,
            "push_vlan": lambda a: _PUSH_VLAN.pack(ofproto.OFPAT_PUSH_VLAN, 8, 0x8100),
            "pop_vlan": lambda a: _PLAIN.pack(ofproto.OFPAT_POP_VLAN, 8),
            "dec_ttl": lambda a: _PLAIN.pack(ofproto.OFPAT_DEC_NW_TTL, 8),
            "resubmit": self._resubmit,
            "group": lambda a: _GROUP.pack(ofproto.OFPAT_GROUP, 8, a[1]),
            "ct": self._ct,
            "ct_nat": self._ct_nat,
            "conjunction": lambda a: _NX_HEADER.pack(ofproto.OFPAT_EXPERIMENTER, 16, NX_EXPERIMENTER,
                                                     NXAST_CONJUNCTION) + _CONJUNCTION.pack(a[2] - 1, a[3], a[1]),
        }

    def unmetered(self, flows):
        """``flows`` as a switch without meters gets them (``meters=False``): a flow whose first action is a meter
        as the same flow without it, with the same cookie (its add's bytes kept on that stand-in, which this
        encoder keeps); the others as they are. A switch with meters: ``flows`` itself, at no cost."""
        if self.meters:
            return flows
        return [self._stand_in(f) if f.actions and f.actions[0][0] == "meter" else f for f in flows]

    def _stand_in(self, f: Flow) -> Flow:
        plain = self._unmetered.get(f)
        if plain is None:
            if len(self._unmetered) >= INSTRUCTION_CACHE:
                self._unmetered.clear()
            plain = Flow(f.table, f.priority, f.match, f.actions[1:], f.owner)
            object.__setattr__(plain, "_cookie", f.cookie)
            self._unmetered[f] = plain
        return plain

    def flow_add(self, f: Flow, xid: int, cookie: int | None = None) -> bytes:
        """ADD of ``f``; ``cookie``: another cookie than ``f.cookie`` (not cached), None: its own."""
        if not self.meters:
            f = self.unmetered([f])[0]
        tail = self.flow_tail(f) if cookie is None or cookie == f.cookie else \
            self._encode_tail(f, cookie)
        if len(tail) > MAX_MESSAGE - 8:
            raise EncodeError(too_long("flow-mod", 8 + len(tail)))
        return _FLOW_HEADER.pack(self.version, self.ofp.OFPT_FLOW_MOD, 8 + len(tail), xid) + tail

    def flow_tail(self, f: Flow) -> bytes:
        """``f``'s add after its OpenFlow header (cookie, table, priority..., match, instructions): encoded once per
        Flow and OpenFlow version and kept on the Flow (``Flow._wire``, one slot per version: a Flow shared by a 1.3
        and a 1.4 switch keeps both)."""
        cached = f._wire
        if cached is not None and cached[self._slot] is not None:
            return cached[self._slot]
        return self._cache_tail(f)

    def _cache_tail(self, f: Flow) -> bytes:
        tail = self._encode_tail(f, f.cookie)
        slots = list(f._wire or (None, None))
        slots[self._slot] = tail
        object.__setattr__(f, "_wire", tuple(slots))
        return tail

    def _encode_tail(self, f: Flow, cookie: int) -> bytes:
        return _FLOW_HEAD.pack(cookie, 0, f.table, self.ofp.OFPFC_ADD, 0, 0, f.priority, OFP_NO_BUFFER, OFPP_ANY,
                               OFPG_ANY, 0, 0) + self.match(f.match) + self.instructions(f.actions)

    def write_adds(self, flows, xid: int, out: bytearray, bundle_id: int | None = None) -> tuple[int, dict]:
        """Append to ``out`` the ADD of each flow of ``flows`` (a sequence), the first with ``xid`` and each next
        one with the next xid (modulo 2**32), each inside a bundle add of ``bundle_id`` (with the flow-mod's own
        xid, as ``bundle_add``) unless it is None. The same bytes as ``flow_add`` (and ``bundle_add``) one flow at a
        time, for a fraction of the CPU: a flow already encoded (``flow_tail``) costs one header. Returns (how many
        flows were encoded for the first time, {position in ``flows``: error text} of those that cannot be encoded:
        left out, their xid unused)."""
        slot, version, flow_mod = self._slot, self.version, self.ofp.OFPT_FLOW_MOD
        if bundle_id is not None:  # OpenFlow 1.4 only
            bundle_add, flags = self.ofp.OFPT_BUNDLE_ADD_MESSAGE, self.ofp.OFPBF_ATOMIC | self.ofp.OFPBF_ORDERED
        bundled, plain = _BUNDLED_FLOW_HEADER.pack, _FLOW_HEADER.pack
        flows = self.unmetered(flows)
        room = MAX_MESSAGE - (8 if bundle_id is None else 24)  # the longest tail whose message's length fits 16 bits
        fresh, errors = 0, {}
        for position, f in enumerate(flows):
            cached = f._wire
            tail = cached[slot] if cached is not None else None
            if tail is None:
                try:
                    tail = self._cache_tail(f)
                except BAD_VALUE as exc:
                    errors[position] = str(exc)
                    xid = (xid + 1) & 0xFFFFFFFF
                    continue
                fresh += 1
            if len(tail) > room:  # a huge action list (thousands of outputs): this flow is refused, not the set
                errors[position] = too_long("flow-mod", 8 + len(tail), bundle_id is not None)
                xid = (xid + 1) & 0xFFFFFFFF
                continue
            if bundle_id is None:
                out += plain(version, flow_mod, 8 + len(tail), xid)
            else:
                out += bundled(version, bundle_add, 24 + len(tail), xid, bundle_id, flags, version, flow_mod,
                               8 + len(tail), xid)
            out += tail
            xid = (xid + 1) & 0xFFFFFFFF
        return fresh, errors

    def write_deletes(self, items, xid: int, out: bytearray, bundle_id: int | None = None) -> tuple[int, dict]:
        """Append to ``out`` the DELETE_STRICT of each (key, flow) of ``items`` (key: (table, priority, cookie); flow:
        a Flow, or a flow read back with Ryu's OFPMatch), numbered and bundled as ``write_adds`` does: the same bytes
        as ``flow_delete_strict`` (and ``bundle_add``) one at a time, for half the CPU (30,000 deletes of flows
        whose adds were encoded: ~25 ms instead of ~55). Returns (how many matches were encoded now: not from a
        cached add, {position in ``items``: error text} of those that cannot be encoded: left out, their xid
        unused)."""
        if self._write_cached_deletes(items, xid, out, bundle_id):
            return 0, {}
        slot, version, flow_mod, strict = self._slot, self.version, self.ofp.OFPT_FLOW_MOD, self.ofp.OFPFC_DELETE_STRICT
        if bundle_id is not None:  # OpenFlow 1.4 only
            bundle_add, flags = self.ofp.OFPT_BUNDLE_ADD_MESSAGE, self.ofp.OFPBF_ATOMIC | self.ofp.OFPBF_ORDERED
        bundled, plain, skip = _BUNDLED_FLOW_MOD.pack, _FLOW_MOD.pack, _FLOW_HEAD.size
        length_at = skip + 2  # the match's length in an add's tail (``flow_tail``): 16 bits, unpadded
        room = MAX_MESSAGE - (48 if bundle_id is None else 64)  # the longest match whose message's length fits
        fresh, errors = 0, {}
        for position, ((table, priority, cookie), item) in enumerate(items):
            cached = getattr(item, "_wire", None)
            tail = cached[slot] if cached is not None else None
            if tail is not None:  # the match as its add carried it, padded (``flow_match``)
                match = tail[skip:skip + (((tail[length_at] << 8 | tail[length_at + 1]) + 7) & ~7)]
            else:
                try:
                    match = self.match(item.match) if isinstance(item, Flow) else ryu_match_bytes(item.match)
                except BAD_VALUE as exc:
                    errors[position] = str(exc)
                    xid = (xid + 1) & 0xFFFFFFFF
                    continue
                fresh += 1
            if len(match) > room:  # a match read back from a switch: bytes Canopy did not choose
                errors[position] = too_long("flow delete", 48 + len(match), bundle_id is not None)
                xid = (xid + 1) & 0xFFFFFFFF
                continue
            length = 48 + len(match)
            if bundle_id is None:
                out += plain(version, flow_mod, length, xid, cookie, ALL_ONES, table, strict, 0, 0, priority,
                             OFP_NO_BUFFER, OFPP_ANY, OFPG_ANY, 0, 0)
            else:
                out += bundled(version, bundle_add, 16 + length, xid, bundle_id, flags, version, flow_mod, length, xid,
                               cookie, ALL_ONES, table, strict, 0, 0, priority, OFP_NO_BUFFER, OFPP_ANY, OFPG_ANY, 0, 0)
            out += match
            xid = (xid + 1) & 0xFFFFFFFF
        return fresh, errors

    def _write_cached_deletes(self, items, xid: int, out: bytearray, bundle_id: int | None) -> bool:
        """``write_deletes``' bytes when every item is a Flow whose add of this version was encoded (the usual
        delete: a flow this controller added) and no xid wraps, built in C loops (``map`` over the structs' packs and
        the add's bytes, no Python per delete: a gone owner's deletes, e.g. 10,000 withdrawn MACs' 30,000, cost a
        few bytecodes each instead of ~107). False, nothing written, otherwise (``write_deletes``' loop then)."""
        count = len(items)
        if count < 2 or xid + count > 0xFFFFFFFF:
            return False
        keys, flows = zip(*items)
        if not all(map(isinstance, flows, repeat(Flow))):
            return False
        cached = list(map(_WIRE, flows))
        if None in cached:
            return False
        tails = list(map(operator.itemgetter(self._slot), cached))
        if None in tails:
            return False
        skip = _FLOW_HEAD.size  # the match's length (16 bits, unpadded) at skip + 2 of an add's tail
        raw = map(int.from_bytes, map(operator.getitem, tails, repeat(slice(skip + 2, skip + 4))), repeat("big"))
        padded = list(map(operator.and_, map(operator.add, raw, repeat(7)), repeat(~7)))
        if max(padded) > MAX_MESSAGE - (48 if bundle_id is None else 64):
            return False  # cannot be, for an add that was encoded; ``write_deletes`` names it
        matches = map(operator.getitem, tails, map(slice, repeat(skip), map(operator.add, padded, repeat(skip))))
        lengths = list(map(operator.add, padded, repeat(48)))
        tables, priorities, cookies = zip(*keys)
        flow_mod = repeat(bytes((self.version, self.ofp.OFPT_FLOW_MOD)))
        tail = (cookies, repeat(b"\xff" * 8), tables, repeat(struct.pack("!BHH", self.ofp.OFPFC_DELETE_STRICT, 0, 0)),
                priorities, repeat(struct.pack("!IIIHH", OFP_NO_BUFFER, OFPP_ANY, OFPG_ANY, 0, 0)))
        xids = range(xid, xid + count)
        if bundle_id is None:
            heads = map(_DELETE_HEAD.pack, flow_mod, lengths, xids, *tail)
        else:  # OpenFlow 1.4 only
            bundle = struct.pack("!I2xH", bundle_id, self.ofp.OFPBF_ATOMIC | self.ofp.OFPBF_ORDERED)
            heads = map(_BUNDLED_DELETE_HEAD.pack, repeat(bytes((self.version, self.ofp.OFPT_BUNDLE_ADD_MESSAGE))),
                        map(operator.add, lengths, repeat(16)), xids, repeat(bundle), flow_mod, lengths, xids, *tail)
        out += b"".join(chain.from_iterable(zip(heads, matches)))
        return True

    def body(self, f: Flow) -> bytes:
        """``f``'s match and instructions as its add carries them (from its cached ``flow_tail``)."""
        return self.flow_tail(f)[_FLOW_HEAD.size:]

    def flow_match(self, f: Flow) -> bytes:
        """``f``'s encoded ofp_match, for its delete: from its cached add when it has one (a flow deleted was
        usually added by this controller, its add encoded then), else encoded now."""
        cached = f._wire
        if cached is None or cached[self._slot] is None:
            return self.match(f.match)
        tail, head = cached[self._slot], _FLOW_HEAD.size
        return tail[head:head + ((int.from_bytes(tail[head + 2:head + 4], "big") + 7) & ~7)]  # the match, padded

    def flow_delete_strict(self, table: int, priority: int, cookie: int, match: bytes, xid: int) -> bytes:
        """DELETE_STRICT of one flow; ``match`` is an encoded ofp_match (``match`` or ``ryu_match_bytes``)."""
        if 48 + len(match) > MAX_MESSAGE:
            raise EncodeError(too_long("flow delete", 48 + len(match)))
        return _FLOW_MOD.pack(self.version, self.ofp.OFPT_FLOW_MOD, 48 + len(match), xid, cookie, ALL_ONES,
                              table, self.ofp.OFPFC_DELETE_STRICT, 0, 0, priority, OFP_NO_BUFFER, OFPP_ANY,
                              OFPG_ANY, 0, 0) + match

    def group_mod(self, group: Group, command: str, xid: int) -> bytes:
        """OFPGroupMod of an ALL group; ``command`` is "add", "modify" or "delete" (no buckets)."""
        buckets = b"" if command == "delete" else b"".join(map(self.bucket, group.buckets))
        try:
            code = getattr(self.ofp, _GROUP_COMMANDS[command])
        except KeyError as exc:
            raise EncodeError(f"unknown group command {command!r}") from exc
        if 16 + len(buckets) > MAX_MESSAGE:  # a flood group of ~1,360 ports or more (docs/limits.md)
            raise EncodeError(f"a group-mod of {len(group.buckets):,} buckets is {16 + len(buckets):,} bytes, "
                              f"over OpenFlow's {MAX_MESSAGE:,}")
        return _GROUP_MOD.pack(self.version, self.ofp.OFPT_GROUP_MOD, 16 + len(buckets), xid, code,
                               self.ofp.OFPGT_ALL, group.group_id) + buckets

    def meter_mod(self, meter, command: str, xid: int) -> bytes:
        """OFPMeterMod of a Meter (openflow/meters.py): one drop band in packets per second with a burst, stats on;
        ``command`` is "add", "modify" or "delete" (no band)."""
        try:
            code = getattr(self.ofp, _METER_COMMANDS[command])
        except KeyError as exc:
            raise EncodeError(f"unknown meter command {command!r}") from exc
        ofp = self.ofp
        flags = ofp.OFPMF_PKTPS | ofp.OFPMF_BURST | ofp.OFPMF_STATS
        band = b"" if command == "delete" else _METER_BAND_DROP.pack(ofp.OFPMBT_DROP, 16, meter.rate, meter.burst)
        return _METER_MOD.pack(self.version, ofp.OFPT_METER_MOD, 16 + len(band), xid, code,
                               0 if command == "delete" else flags, meter.meter_id) + band

    def bucket(self, actions) -> bytes:
        """One ofp_bucket of an ALL group (weight 0, no watch port or group) with ``actions`` (cached)."""
        cached = self._buckets.get(actions)
        if cached is None:
            if len(self._buckets) >= INSTRUCTION_CACHE:
                self._buckets.clear()
            body = self._action_list(actions)
            cached = self._buckets[actions] = _BUCKET.pack(16 + len(body), 0, OFPP_ANY, OFPG_ANY) + body
        return cached

    def bundle_add(self, bundle_id: int, message: bytes) -> bytes:
        """OFPT_BUNDLE_ADD_MESSAGE (1.4) carrying ``message``, with the message's own xid as required."""
        if 16 + len(message) > MAX_MESSAGE:  # a group-mod of 65,520 bytes or more, one that fits alone
            raise EncodeError(f"a message of {len(message):,} bytes in a bundle add is {16 + len(message):,} "
                              f"bytes, over OpenFlow's {MAX_MESSAGE:,}")
        xid = int.from_bytes(message[4:8], "big")
        flags = self.ofp.OFPBF_ATOMIC | self.ofp.OFPBF_ORDERED
        return _BUNDLE_ADD.pack(self.version, self.ofp.OFPT_BUNDLE_ADD_MESSAGE, 16 + len(message), xid,
                                bundle_id, flags) + message

    def match(self, match) -> bytes:
        """An ofp_match (OXM, padded to 8 bytes) with fields in the order Ryu writes them. A field's TLV is cached
        by (name, value): a switch's flows repeat their registers, types and addresses (5,000 vports: 275,000
        fields of 76,000 flows, 35,000 distinct)."""
        cache = self._tlvs
        if len(cache) >= INSTRUCTION_CACHE:
            cache.clear()
        fields = [cache.get(item) or self._field_tlv(item) for item in match]
        if len(fields) > 1:
            fields.sort(key=_RANKED)
        tlvs = b"".join([tlv for _, tlv in fields])
        length = 4 + len(tlvs)
        return _MATCH_HEADER.pack(self.ofp.OFPMT_OXM, length) + tlvs + b"\0" * (-length % 8)

    def _field_tlv(self, item) -> tuple[int, bytes]:
        """(sort rank, TLV) of one (name, value) of a match (hashable, as a Flow's match is), cached."""
        name, value = item
        field = self._field(name)
        entry = self._tlvs[item] = (field.rank, field.tlv(value))
        return entry

    def instructions(self, actions) -> bytes:
        """A flow's action tuples as instructions (cached: many flows share their actions)."""
        cached = self._instructions.get(actions)
        if cached is None:
            if len(self._instructions) >= INSTRUCTION_CACHE:
                self._instructions.clear()
            cached = self._instructions[actions] = self._encode_instructions(actions)
        return cached

    def _encode_instructions(self, actions) -> bytes:
        actions, goto = _split_goto(actions)
        out = b""
        if actions and actions[0][0] == "meter":
            out = _METER.pack(self.ofp.OFPIT_METER, 8, actions[0][1])
            actions = actions[1:]
        if actions:
            body = self._action_list(actions)
            if 8 + len(body) > MAX_MESSAGE:
                raise EncodeError(f"{len(actions):,} actions are {8 + len(body):,} bytes, over the {MAX_MESSAGE:,} "
                                  f"of an OpenFlow message")
            out += _PLAIN.pack(self.ofp.OFPIT_APPLY_ACTIONS, 8 + len(body)) + body
        if goto is not None:
            out += _GOTO.pack(self.ofp.OFPIT_GOTO_TABLE, 8, goto)
        return out

    def _action_list(self, actions) -> bytes:
        """Action tuples (no goto) as consecutive OpenFlow actions, each action's bytes cached by its tuple: flows
        whose action lists differ (a vport's ARP answer: its MAC and IP in 3 of its 9 actions) share most actions
        (10,000 ARP answers' instructions, a fresh encoder: ~67 -> ~45 ms of CPU)."""
        cache = self._action_bytes
        if len(cache) >= INSTRUCTION_CACHE:
            cache.clear()
        return b"".join([cache.get(a) or self._action(a, actions) for a in actions])

    def _action(self, action, actions) -> bytes:
        """One action's bytes, cached (``_action_list``); ``actions``: the list it is in, for the error."""
        try:
            data = self._action_bytes[action] = self._actions[action[0]](action)
        except KeyError as exc:
            raise EncodeError(f"unknown or misplaced action in {actions!r}") from exc
        return data

    def _field(self, name: str) -> OxmField:
        field = self._fields.get(name)
        if field is None:
            try:
                field = self._fields[name] = OxmField(self.ofp, name)
            except KeyError as exc:
                raise EncodeError(f"unknown field {name!r}") from exc
        return field

    def _output(self, action) -> bytes:
        port, max_len = _port(self.ofp, action[1])
        return _OUTPUT.pack(self.ofp.OFPAT_OUTPUT, 16, port, max_len)

    def _set_field(self, action) -> bytes:
        tlv = self._field(action[1]).tlv(action[2])
        length = 4 + len(tlv)
        pad = -length % 8
        return _ACTION_HEADER.pack(self.ofp.OFPAT_SET_FIELD, length + pad) + tlv + b"\0" * pad

    def _reg_move(self, action) -> bytes:
        src, dst = self._field(action[1]), self._field(action[2])
        body = _REG_MOVE.pack(src.size * 8, 0, 0) + src.header + dst.header
        length = 10 + len(body)
        pad = -length % 8
        return _NX_HEADER.pack(self.ofp.OFPAT_EXPERIMENTER, length + pad, NX_EXPERIMENTER, NXAST_REG_MOVE) + \
            body + b"\0" * pad

    def _ct(self, action) -> bytes:
        _, zone, table, commit, mark = action
        nested = self._reg_move(("move", mark, "ct_mark")) if mark else b""
        body = _CT.pack(NX_CT_F_COMMIT if commit else 0, self._field(zone).header, CT_ZONE_OFS_NBITS,
                        NX_CT_RECIRC_NONE if table is None else table, 0)
        return _NX_HEADER.pack(self.ofp.OFPAT_EXPERIMENTER, 10 + len(body) + len(nested), NX_EXPERIMENTER,
                               NXAST_CT) + body + nested

    def _ct_nat(self, action) -> bytes:
        _, zone, table, commit, spec = action
        flags, ip = nat_spec(spec)
        ranges = socket.inet_aton(ip) * 2 if ip else b""
        nat = _NX_HEADER.pack(self.ofp.OFPAT_EXPERIMENTER, 16 + len(ranges), NX_EXPERIMENTER, NXAST_NAT) + \
            _NAT.pack(flags, NX_NAT_RANGE_IPV4 if ip else 0) + ranges
        body = _CT.pack(NX_CT_F_COMMIT if commit else 0, b"\0" * 4, zone,
                        NX_CT_RECIRC_NONE if table is None else table, 0)
        return _NX_HEADER.pack(self.ofp.OFPAT_EXPERIMENTER, 10 + len(body) + len(nat), NX_EXPERIMENTER,
                               NXAST_CT) + body + nat

    def _resubmit(self, action) -> bytes:
        return _NX_HEADER.pack(self.ofp.OFPAT_EXPERIMENTER, 16, NX_EXPERIMENTER, NXAST_RESUBMIT_TABLE) + \
            _RESUBMIT.pack(NX_IN_PORT, action[1])


def ryu_match_bytes(match) -> bytes:
    """An OFPMatch (e.g. read back in flow stats) as encoded ofp_match bytes, for a delete_strict."""
    buf = bytearray()
    match.serialize(buf, 0)
    return bytes(buf)


def nat_spec(spec) -> tuple[int, str | None]:
    """A ct_nat action's nat argument as (NXAST_NAT flags, address): None (plain nat), an IP (nat(src=IP)) or
    ("dst", IP) (nat(dst=IP))."""
    if spec is None:
        return 0, None
    if isinstance(spec, tuple):
        return NX_NAT_F_DST, spec[1]
    return NX_NAT_F_SRC, spec
