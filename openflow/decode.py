"""Flows and groups read back from a switch (flow stats, group desc) as Canopy's values, to compare and describe.

The inverse of openflow/encode.py for the reconciler's read-back: Ryu's parsed match, instructions and actions back
into the match and action tuples of openflow/flows.py, refusing (``EncodeError``) what is outside Canopy's vocabulary.
"""

from __future__ import annotations

import struct

from openflow.encode import CT_ZONE_OFS_NBITS, NX_CT_F_COMMIT, NX_CT_RECIRC_NONE, NX_NAT_F_DST, NX_NAT_F_SRC, \
    EncodeError
from openflow.flows import FIELD_ORDER, Flow, Group, render_flow

_RANK = {name: i for i, name in enumerate(FIELD_ORDER)}


def decode_actions(ofp, instructions) -> tuple:
    """Instructions read back from a switch as action tuples; EncodeError if outside the vocabulary."""
    out: list = []
    goto = meter = None
    for inst in instructions:
        if inst.type == ofp.OFPIT_METER:
            meter = ("meter", inst.meter_id)
        elif inst.type == ofp.OFPIT_APPLY_ACTIONS:
            out.extend(decode_action(ofp, a) for a in inst.actions)
        elif inst.type == ofp.OFPIT_GOTO_TABLE:
            goto = ("goto", inst.table_id)
        else:
            raise EncodeError(f"instruction {inst} is not in Canopy's vocabulary")
    return ((meter,) if meter else ()) + tuple(out) + ((goto,) if goto else ())


def decode_action(ofp, a):
    """One Ryu action object as an action tuple; EncodeError if outside the vocabulary."""
    name = type(a).__name__
    if name == "OFPActionOutput":
        special = {ofp.OFPP_IN_PORT: "in_port", ofp.OFPP_CONTROLLER: "controller"}
        return "output", special.get(a.port, a.port)
    simple = {"OFPActionSetField": lambda: ("set", a.key, a.value),
              "NXActionRegMove": lambda: ("move", a.src_field, a.dst_field),
              "OFPActionPushVlan": lambda: ("push_vlan",), "OFPActionPopVlan": lambda: ("pop_vlan",),
              "OFPActionDecNwTtl": lambda: ("dec_ttl",),
              "NXActionResubmitTable": lambda: ("resubmit", a.table_id),
              "OFPActionGroup": lambda: ("group", a.group_id),
              "NXActionConjunction": lambda: ("conjunction", a.id, a.clause + 1, a.n_clauses),
              "NXActionCT": lambda: _decode_ct(ofp, a)}
    if name not in simple:
        raise EncodeError(f"action {a} is not in Canopy's vocabulary")
    return simple[name]()


def _decode_ct(ofp, a):
    if not a.zone_src and len(a.actions) == 1 and type(a.actions[0]).__name__ == "NXActionNAT":
        return _decode_ct_nat(a)
    marks = [decode_action(ofp, n) for n in a.actions]
    if a.zone_ofs_nbits != CT_ZONE_OFS_NBITS or a.alg or any(m[0] != "move" or m[2] != "ct_mark" for m in marks):
        raise EncodeError(f"action {a} is not in Canopy's vocabulary")
    table = None if a.recirc_table == NX_CT_RECIRC_NONE else a.recirc_table
    return "ct", a.zone_src, table, bool(a.flags & NX_CT_F_COMMIT), marks[0][1] if marks else None


def _decode_ct_nat(a):
    nat = a.actions[0]
    ip = nat.range_ipv4_min or None
    if a.alg or nat.flags not in (0, NX_NAT_F_SRC, NX_NAT_F_DST) or (ip and nat.range_ipv4_max != ip) or \
            bool(ip) != bool(nat.flags) or nat.range_proto_min is not None:
        raise EncodeError(f"action {a} is not in Canopy's vocabulary")
    table = None if a.recirc_table == NX_CT_RECIRC_NONE else a.recirc_table
    spec = ("dst", ip) if nat.flags == NX_NAT_F_DST else ip
    return "ct_nat", a.zone_ofs_nbits, table, bool(a.flags & NX_CT_F_COMMIT), spec


def decode_group(ofp, desc, tick=None, failed=None) -> Group | None:
    """A group-desc entry read back as a Group, to compare with the desired one; None if it is not an ALL
    group, holds an action outside Canopy's vocabulary (its buckets then cannot be trusted) or a bucket that cannot be
    parsed, ``failed(group id, why)`` told then (a read-back says so: openflow/reconciler.py). ``tick()`` after each
    bucket: a read-back's entries (controller/groupdesc.py) parse a bucket at a time (``each_bucket``), so a caller
    that pauses there never parses a flood group of 1,000 buckets in one stretch; what a pause raises goes on up."""
    if desc.type != ofp.OFPGT_ALL:
        return _undecoded(failed, desc, f"of type {desc.type}, not ALL")
    each = getattr(desc, "each_bucket", None)
    buckets, decoded = iter(each() if each is not None else desc.buckets), []
    while True:
        try:
            bucket = next(buckets, None)
            if bucket is None:
                break
            decoded.append(tuple(decode_action(ofp, a) for a in bucket.actions))
        except Exception as exc:  # noqa: BLE001 - Canopy's vocabulary (EncodeError...), or Ryu's parser on a switch's bytes
            return _undecoded(failed, desc, f"bucket {len(decoded)}: {exc}")
        if tick is not None:
            tick()
    return Group(desc.group_id, tuple(decoded))


def _undecoded(failed, desc, why: str) -> None:
    if failed is not None:
        failed(desc.group_id, why)
    return None


def decode_match(match) -> tuple:
    """An OFPMatch as a match tuple in Canopy's canonical field order (unknown fields last)."""
    items = [(name, tuple(value) if isinstance(value, list) else value) for name, value in match.items()]
    return tuple(sorted(items, key=lambda kv: _RANK.get(kv[0], len(_RANK))))


def describe_stats(ofp, stats) -> str:
    """One flow-stats entry in ovs-ofctl syntax (render_flow), or Ryu's own text if it is foreign, or why its match
    and instructions could not be parsed (a switch's malformed entry: controller/flowstats.py)."""
    head = f"cookie={stats.cookie:#x},table={stats.table_id},priority={stats.priority},"
    try:
        match, instructions = stats.match, stats.instructions
    except Exception as exc:  # Ryu's parser raises struct.error, its own exceptions, ValueError, AssertionError...
        return f"{head}not parsed: {type(exc).__name__}: {exc}"
    try:
        f = Flow(stats.table_id, stats.priority, decode_match(match), decode_actions(ofp, instructions))
        return f"cookie={stats.cookie:#x}," + render_flow(f, with_cookie=False)
    except (EncodeError, ValueError, KeyError, AttributeError):
        return f"{head}{match},{instructions}"


def echoed_message(ofp, error_type: int, data) -> str:
    """What an error message's data says about the message it answers: its type name and xid, decoded
    from the echoed OpenFlow header (a HELLO_FAILED error carries text instead). Never raises."""
    data = bytes(data or b"")
    if error_type == getattr(ofp, "OFPET_HELLO_FAILED", None):
        return "the hello exchange (%r)" % data[:64].decode("ascii", "replace")
    if len(data) < 8:
        return "a message it did not echo (%d bytes of data)" % len(data)
    version, msg_type, length, xid = struct.unpack_from("!BBHI", data)
    names = {value: name for name, value in vars(ofp).items()
             if name.startswith("OFPT_") and isinstance(value, int)}
    return "%s xid %d (version 0x%02x, %d bytes, %d echoed)" % (
        names.get(msg_type, "message type %d" % msg_type), xid, version, length, len(data))
