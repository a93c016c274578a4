"""What a switch sends is checked before Ryu's parser sees it (a hostile or broken switch cannot hold the event loop).

Part of the door to Ryu (controller/ryu_compat.py installs it: ``install``). Ryu's parse loops step through a
message by the lengths the switch wrote in it: a hello's elements, a port's or a role status's properties, the
entries and buckets of a multipart reply, actions, the actions nested in a Nicira ct action and the properties of a
Nicira controller2 action. A length of 0 (or, for some, below a header) spun there for ever, on the one event loop
every switch and REST shares; a truncated match raised out of Ryu's receive loop and ended the connection
(tests/fuzz/openflow.py found them). Each is checked here first. A message that fails is refused: not parsed, a
warning naming the switch, the field, its byte, its length and the bounds (once every 10 s per switch and reason), and
dropped, as Ryu drops a message it cannot parse; the connection goes on.

Refused as well, whole: a message of a version Canopy does not speak (only a hello may be of another: the version
negotiation's), and a message of a kind a switch has no reason to send Canopy (Ryu would parse a flow-mod, a table
features reply or an experimenter message for no handler; each kind is parser code a switch could reach). What is
let through: ``ALLOWED`` and ``ALLOWED_MULTIPART``.

A multipart reply's part that is refused here, or that Ryu's parser fails on, is remembered by its xid
(``lost_part``): the parts after it are still dispatched and the last ends the reply, so a read-back asks before it
believes it is whole (openflow/reconciler.py ``handle``: it reads again).

The errors a switch sends are logged here too, in place of Ryu's own handler (``error_received``: Ryu's raised on some
and wrote three lines for others, each time).

Flow-stats entries are not walked here (a read-back's 16,000 entries would cost a walk each): their lengths are
checked as they are parsed and their match and instructions at first use (controller/flowstats.py), with
``check_actions`` below. Nor are a group description's buckets: its groups' lengths are checked here, each bucket's
length and actions as it is parsed, at first use (controller/groupdesc.py, ``checked_buckets``).
"""

from __future__ import annotations

import contextlib
import logging
import re
import struct

from ryu.exception import OFPTruncatedMessage
from ryu.ofproto import nicira_ext, ofproto_common, ofproto_parser

from controller.loglimit import warn_limited

log = logging.getLogger("canopy.openflow")

SPOKEN = (0x04, 0x05)  # OpenFlow 1.3 and 1.4 (controller/app.py OFP_VERSIONS)
HELLO, ERROR, ECHO_REQUEST, ECHO_REPLY, FEATURES_REPLY = 0, 1, 2, 3, 6
PACKET_IN, PORT_STATUS, MULTIPART_REPLY, BARRIER_REPLY, ROLE_REPLY = 10, 12, 19, 21, 25
ROLE_STATUS, BUNDLE_CONTROL = 30, 33  # OpenFlow 1.4
ERROR_HELLO_FAILED, ERROR_EXPERIMENTER = 0, 0xFFFF  # OFPT_ERROR types (the same in OpenFlow 1.3 and 1.4)
ALLOWED = {0x04: {HELLO, ERROR, ECHO_REQUEST, ECHO_REPLY, FEATURES_REPLY, PACKET_IN, PORT_STATUS, MULTIPART_REPLY,
                  BARRIER_REPLY, ROLE_REPLY},
           0x05: {HELLO, ERROR, ECHO_REQUEST, ECHO_REPLY, FEATURES_REPLY, PACKET_IN, PORT_STATUS, MULTIPART_REPLY,
                  BARRIER_REPLY, ROLE_REPLY, ROLE_STATUS, BUNDLE_CONTROL}}
MP_FLOW, MP_GROUP_DESC, MP_METER_CONFIG, MP_METER_FEATURES, MP_PORT_DESC = 1, 7, 10, 11, 13
# the replies Canopy asks for (a read-back: flows, groups, meters (openflow/meters.py); a handshake: ports)
ALLOWED_MULTIPART = {MP_FLOW, MP_GROUP_DESC, MP_METER_CONFIG, MP_METER_FEATURES, MP_PORT_DESC}
LOST_KEPT = 64  # xids of multipart replies with a part dropped, kept per switch until asked for (``lost_part``)
UNPARSED_SHOWN = 64  # bytes of a message Ryu could not parse shown in the warning (Ryu's own line showed all)
NESTED_DEPTH = 4  # Nicira ct actions inside ct actions (Canopy puts no ct in a ct; Ryu's parser recurses)

_TLV = struct.Struct("!HH")
_NX = struct.Struct("!HHIH")  # an experimenter action's type, length, experimenter and Nicira subtype
_ACTION_MIN = 8
_CT_ACTIONS_AT = 24  # a Nicira ct action's nested actions start here (Ryu's NXActionCT: '!H4sHB3xH' after the header)
_C2_PROPS_AT = 16  # a Nicira controller2 action's properties start here
_PORT14 = 40  # an OpenFlow 1.4 port's fixed part
_GROUP, _BUCKET = 8, 16  # a group description's and a bucket's fixed parts
_METER, _BAND = 8, 12  # a meter configuration's fixed part and a meter band's (type, len, rate, burst_size)


class Refused(ValueError):
    """A message (or part) that Ryu's parser must not see; its text names the field, its length and the bounds."""


def _within(what: str, at: int, length: int, shortest: int, left: int) -> None:
    if not shortest <= length <= left:
        raise Refused(f"{what} at byte {at} has a length of {length}, not between {shortest} and the {left} bytes "
                      f"left for it")


def _framed(raw, at: int, end: int, what: str, shortest: int):
    """(type, start, end) of each type-length item in ``raw[at:end]``, each at least ``shortest`` bytes long."""
    while at < end:
        kind, length = _TLV.unpack_from(raw, at) if end - at >= _TLV.size else (None, end - at)
        _within(what, at, length, shortest, end - at)
        yield kind, at, at + length
        at += length


def check_actions(raw, at: int, end: int, depth: int = 0) -> None:
    """Refused, naming it, at the first action in ``raw[at:end]`` shorter than 8 bytes or running past ``end``, and
    in a Nicira ct action's nested actions and a controller2 action's properties."""
    for kind, start, stop in _framed(raw, at, end, "action", _ACTION_MIN):
        if kind != 0xFFFF or stop - start < _NX.size:
            continue
        _, _, experimenter, subtype = _NX.unpack_from(raw, start)
        if experimenter != ofproto_common.NX_EXPERIMENTER_ID:
            continue
        if subtype == nicira_ext.NXAST_CT and stop - start > _CT_ACTIONS_AT:
            if depth >= NESTED_DEPTH:
                raise Refused(f"action at byte {start}: Nicira ct actions nested more than {NESTED_DEPTH} deep")
            check_actions(raw, start + _CT_ACTIONS_AT, stop, depth + 1)
        elif subtype == nicira_ext.NXAST_CONTROLLER2:
            _check_controller2(raw, start, stop)


def _check_controller2(raw, start: int, stop: int) -> None:
    """Walk a controller2 action's properties as Ryu's parser does (it steps 4 bytes, then by each property's own
    size: the user data's from its length, every other 4)."""
    at = start + _C2_PROPS_AT
    while at < stop:
        if stop - at < _TLV.size:
            raise Refused(f"controller2 property at byte {at}: {stop - at} bytes left, below its 4-byte header")
        kind, length = _TLV.unpack_from(raw, at)
        _within("controller2 property", at, length, _TLV.size, stop - at)
        user = -(-(length - 4) // 4) * 4
        at += 4 + ((user + 4 if user > 4 and user % 8 == 0 else user) if kind == nicira_ext.NXAC2PT_USERDATA else 4)


def check_match(raw, at: int, end: int) -> int:
    """Refused unless the match at ``at`` and each of its fields lies within ``raw[at:end]``; where the match ends
    (padded to 8 bytes, as Ryu steps past it)."""
    if end - at < _TLV.size:
        raise Refused(f"match at byte {at}: {end - at} bytes left, below its 4-byte header")
    length = _TLV.unpack_from(raw, at)[1]
    _within("match", at, length, _TLV.size, end - at)
    field, stop = at + _TLV.size, at + length
    while field < stop:
        if stop - field < 4:
            raise Refused(f"match field at byte {field}: {stop - field} bytes left, below its 4-byte header")
        size = 4 + raw[field + 3]
        _within("match field", field, size, 4, stop - field)
        field += size
    return at + -(-length // 8) * 8


def _check_props(raw, at: int, end: int, what: str) -> None:
    """OpenFlow 1.4 properties: Ryu steps by each length rounded up to 8 (a length below 4 never moved on)."""
    while at < end:
        if end - at < _TLV.size:
            raise Refused(f"{what} at byte {at}: {end - at} bytes left, below its 4-byte header")
        length = _TLV.unpack_from(raw, at)[1]
        _within(what, at, length, _TLV.size, end - at)
        at += -(-length // 8) * 8


def _check_hello(raw, version: int) -> None:
    if version >= 0x04:
        for _ in _framed(raw, 8, len(raw), "hello element", _TLV.size):
            pass


def _check_port14(raw, at: int, end: int) -> int:
    length = struct.unpack_from("!H", raw, at + 4)[0] if end - at >= 6 else end - at
    _within("port", at, length, _PORT14, end - at)
    _check_props(raw, at + _PORT14, at + length, "port property")
    return at + length


def _check_group_desc(raw, at: int, end: int) -> None:
    """The groups' lengths only: their buckets are checked as they are parsed, at first use (``checked_buckets``)."""
    for _ in _length_first(raw, at, end, "group description", _GROUP):
        pass


def checked_buckets(raw, at: int, end: int):
    """(start, end) of each bucket in ``raw[at:end]`` (a group description's), its length and its actions checked
    as it is reached (Refused at the first that would spin Ryu's parser): controller/groupdesc.py."""
    for bucket, bucket_end in _length_first(raw, at, end, "bucket", _BUCKET):
        check_actions(raw, bucket + _BUCKET, bucket_end)
        yield bucket, bucket_end


def _check_meter_config(raw, at: int, end: int) -> None:
    """Each meter configuration (its length first) and its bands (type-length): Ryu steps through both by them."""
    for start, stop in _length_first(raw, at, end, "meter configuration", _METER):
        for _ in _framed(raw, start + _METER, stop, "meter band", _BAND):
            pass


def _length_first(raw, at: int, end: int, what: str, shortest: int):
    """(start, end) of each item in ``raw[at:end]`` whose first field is its length (groups, buckets)."""
    while at < end:
        length = struct.unpack_from("!H", raw, at)[0] if end - at >= 2 else end - at
        _within(what, at, length, shortest, end - at)
        yield at, at + length
        at += length


def _check_multipart(raw, version: int) -> None:
    if len(raw) < 16:
        return  # Ryu refuses it on its own (struct.error)
    kind = struct.unpack_from("!H", raw, 8)[0]
    if kind not in ALLOWED_MULTIPART:
        raise Refused(f"multipart reply of type {kind}: not one Canopy asks for ({sorted(ALLOWED_MULTIPART)})")
    if kind == MP_GROUP_DESC:
        _check_group_desc(raw, 16, len(raw))
    elif kind == MP_METER_CONFIG:
        _check_meter_config(raw, 16, len(raw))
    elif kind == MP_PORT_DESC and version >= 0x05:
        at = 16
        while at < len(raw):
            at = _check_port14(raw, at, len(raw))


def check_message(raw, version: int, kind: int) -> None:
    """Refused if Ryu's parser must not see the message ``raw`` (its header's ``version`` and ``kind``)."""
    if kind == HELLO:
        return _check_hello(raw, version)
    if version not in SPOKEN:
        raise Refused(f"OpenFlow version {version:#04x}: not one Canopy speaks (0x04, 0x05)")
    if kind not in ALLOWED[version]:
        raise Refused(f"message type {kind}: not one a switch sends Canopy in OpenFlow {version:#04x}")
    if kind == MULTIPART_REPLY:
        _check_multipart(raw, version)
    elif kind == PACKET_IN and len(raw) >= 32:
        check_match(raw, 24, len(raw))  # after buffer id, length, reason, table and cookie
    elif kind == PORT_STATUS and version >= 0x05 and len(raw) >= 16:
        _check_port14(raw, 16, len(raw))
    elif kind == ROLE_STATUS and len(raw) >= 24:
        _check_props(raw, 24, len(raw), "role status property")
    elif kind == BUNDLE_CONTROL and len(raw) >= 16:
        _check_props(raw, 16, len(raw), "bundle control property")
    return None


def _guarded(parse):
    def guarded(datapath, version_, msg_type, msg_len, xid, buf):
        try:
            check_message(buf, version_, msg_type)
        except Refused as refused:
            _warn(datapath, refused)
            _note_lost(datapath, msg_type, xid)
            return None  # as Ryu returns a message it could not parse: nothing dispatched, the connection goes on
        try:
            return parse(datapath, version_, msg_type, msg_len, xid, buf)
        except OFPTruncatedMessage:  # Ryu ends the connection on it
            _note_lost(datapath, msg_type, xid)
            raise
        except Exception as exc:  # Ryu would log the whole message in hex, each time: logged here, limited
            _note_lost(datapath, msg_type, xid)
            _warn_unparsed(datapath, msg_type, buf, exc)
            return None  # as Ryu returns it: nothing dispatched, the connection goes on
    guarded.ryu = parse
    return guarded


def _note_lost(datapath, msg_type: int, xid: int) -> None:
    """Remember that a part of multipart reply ``xid`` was dropped (``lost_part``); at most LOST_KEPT xids."""
    if msg_type != MULTIPART_REPLY:
        return
    lost = getattr(datapath, "canopy_lost_parts", None)
    if lost is None:
        lost = datapath.canopy_lost_parts = {}
    lost[xid] = None
    if len(lost) > LOST_KEPT:
        del lost[next(iter(lost))]


def lost_part(datapath, xid: int) -> bool:
    """Whether a part of the multipart reply ``xid`` from ``datapath`` was refused or could not be parsed (forgotten
    once asked). The parts that follow it are still dispatched, and the last one ends the reply as if it were
    whole: a read-back must ask this before it believes it (openflow/reconciler.py ``handle``)."""
    lost = getattr(datapath, "canopy_lost_parts", None)
    return bool(lost) and lost.pop(xid, False) is None


_NUMBER = re.compile(r"\s+(0x[0-9a-f]+|\d+)$")  # the version or type a refusal names: one reason whatever it is


def _warn(datapath, refused: Refused) -> None:
    """Rate-limited per switch and reason: the field refused, or the version, type or multipart type refused
    whatever its number (a switch cycling through 65,536 multipart types is one reason, one key)."""
    address = getattr(datapath, "address", None) or ("?", 0)
    reason = _NUMBER.sub("", str(refused).split(" at byte")[0].split(":")[0])
    warn_limited(log, ("refused", address[0], reason),
                 "openflow %s:%s: message refused before parsing: %s", *address[:2], refused)


def _warn_unparsed(datapath, msg_type: int, buf, exc: Exception) -> None:
    """Rate-limited per switch and type (a type let through: a handful), with the error and the first bytes only;
    Ryu's own line held the whole message in hex and a traceback, for every one (a flood a switch could send)."""
    address = getattr(datapath, "address", None) or ("?", 0)
    warn_limited(log, ("unparsed", address[0], msg_type),
                 "openflow %s:%s: message of type %d (%d bytes) could not be parsed, dropped: %s: %.200s; "
                 "its first %d bytes: %s", *address[:2], msg_type, len(buf), type(exc).__name__, exc,
                 min(len(buf), UNPARSED_SHOWN), bytes(buf[:UNPARSED_SHOWN]).hex())


def error_received(msg) -> None:
    """An OFPT_ERROR a switch sent, logged in place of Ryu's own handler (ryu/controller/ofp_handler.py
    ``error_msg_handler``; controller/ryu_compat.py installs this one). Ryu's decoded a HELLO_FAILED error's text as
    ASCII and raised on any other byte, in the switch's receive loop: the connection ended. And it warned in three
    lines for every error echoing less than the failed request's header, a flood a switch could send. Here: never
    raises; the text shown as bytes (escaped), the data's first bytes in hex; a HELLO_FAILED error (the switch
    failed the version negotiation: it closes the connection itself, OpenFlow 1.3's "Connection Setup") and an error
    echoing less than a header are warnings, once every 10 s per switch and reason (with a count of those left out);
    every other error is logged at debug level, as Ryu did (openflow/reconciler.py matches them to the requests it
    sent). The session is kept, as Ryu keeps it (its handler never closes one): a switch failing the hello closes the
    connection, and one that does not finish the handshake is dropped by its timeout (controller/ryu_compat.py
    ``OpenFlowGuard``)."""
    datapath = getattr(msg, "datapath", None)
    address = getattr(datapath, "address", None) or ("?", 0)
    kind, code = getattr(msg, "type", None), getattr(msg, "code", None)
    data = bytes(getattr(msg, "data", None) or b"")
    if kind == ERROR_HELLO_FAILED:
        warn_limited(log, ("hello failed", address[0]), "openflow %s:%s: the switch failed the hello (error code %s): "
                     "%r; it closes the connection (docs/operations.md)", *address[:2], code, data[:UNPARSED_SHOWN])
    elif kind != ERROR_EXPERIMENTER and len(data) < ofproto_common.OFP_HEADER_SIZE:
        warn_limited(log, ("short error", address[0]), "openflow %s:%s: error type %s code %s echoes %d bytes of the "
                     "failed request, less than its %d-byte header (OpenFlow asks for at least 64): a switch's bug, "
                     "the request it failed unknown: %s", *address[:2], kind, code, len(data),
                     ofproto_common.OFP_HEADER_SIZE, data.hex())
    elif log.isEnabledFor(logging.DEBUG):
        log.debug("openflow %s:%s: error type %s code %s, %d bytes of data: %s", *address[:2], kind, code, len(data),
                  data[:UNPARSED_SHOWN].hex())


def install() -> None:
    """Check every message of every version Ryu parses (``ofproto_parser._MSG_PARSERS``) before it does."""
    parsers = ofproto_parser._MSG_PARSERS  # noqa: SLF001 - the one table Ryu's receive loop parses through
    for version, parse in list(parsers.items()):
        if not hasattr(parse, "ryu"):
            parsers[version] = _guarded(parse)


@contextlib.contextmanager
def uninstalled():
    """Ryu's parsers alone for the time of the block (tests/fuzz/openflow.py ``--ryu-only``)."""
    parsers = ofproto_parser._MSG_PARSERS  # noqa: SLF001
    saved = dict(parsers)
    parsers.update({v: getattr(p, "ryu", p) for v, p in parsers.items()})
    try:
        yield
    finally:
        parsers.update(saved)
