"""One change set of a switch reconciler: its messages in the order they are sent, and their bytes.

A change set (openflow/reconciler.py, "What it does") is meter adds and modifies, group adds and modifies, flow adds
(downstream tables first), flow delete_stricts (upstream tables first), group deletes and meter deletes. ``ChangeSet`` keeps them as the plan made
them, one list of (key, item) per kind, so a change set of 16,000 flow adds (a switch's cold start) holds no object
per message; a message is named by its index in sending order (an OpenFlow error, matched by its xid, names it:
``ChangeSet.op``).

``encode`` writes a whole change set as bytes before anything is sent: message i gets xid ``first_xid + i``
(modulo 2**32), so an error's xid gives its index without a table of xids. A flow add costs a header on top of
the flow's cached bytes (``WireEncoder.write_adds``): a Flow shared by every switch that needs it is encoded once
per OpenFlow version, not once per switch; a flow delete, a header on top of the match sliced from that add
(``WireEncoder.write_deletes``). The bytes are cut into pieces of about ``SEND_CHUNK`` bytes, always
between two messages: a piece is written to the switch whole, and another green thread's message (an echo reply, a
packet-out) may go between two pieces, never inside one.

Pauses: ``tick(units)`` after every ``ENCODE_CHUNK`` messages, a unit being a flow whose bytes were cached (an add,
or a delete of a flow whose add was encoded) and ``FRESH_UNITS`` one encoded now (its match and instructions:
~20-40 times the CPU), so that a stretch between two pauses stays a few milliseconds whether the flows are new (the
first switch of a start) or shared (the 49 others).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from openflow import encode
from openflow.atonce import encode_slot
from openflow.flows import Flow

KINDS = ("meter_add", "meter_modify", "group_add", "group_modify", "flow_add", "flow_delete", "group_delete",
         "meter_delete")  # in sending order
ENCODE_CHUNK = 128  # messages encoded between two ticks
FRESH_UNITS = 20  # units ticked for a message encoded from scratch, against 1 for a flow add whose bytes are cached
SEND_CHUNK = 128 * 1024  # bytes written to the switch at once (whole messages: a piece ends between two)
MAX_XID = 0xFFFFFFFF


class Op(NamedTuple):
    """One message of a change set: kind, the flow key or group id, and the Flow/Group/read-back entry."""

    kind: str  # one of KINDS
    key: object
    item: object


class ChangeSet:
    """The messages of one change set, per kind a list of (key, item), indexed in sending order (module docstring)."""

    __slots__ = ("parts", "_size")

    def __init__(self, parts: dict):
        """``parts``: kind -> list of (key, item) (the lists are kept, not copied: the caller leaves them alone)."""
        self.parts = tuple((kind, parts.get(kind) or []) for kind in KINDS)
        self._size = sum(len(items) for _, items in self.parts)

    def __len__(self) -> int:
        return self._size

    def __iter__(self):
        for kind, items in self.parts:
            for key, item in items:
                yield Op(kind, key, item)

    def has_meters(self) -> bool:
        """Whether a meter is added, modified or deleted (such a change set is not bundled: openflow/reconciler.py)."""
        return any(items for kind, items in self.parts if kind[0] == "m")

    def segments(self):
        """(index of the first, kind, items) of each kind, in sending order."""
        start = 0
        for kind, items in self.parts:
            yield start, kind, items
            start += len(items)

    def op(self, index: int) -> Op:
        """The message at ``index`` (sending order)."""
        for start, kind, items in self.segments():
            if index < start + len(items):
                return Op(kind, *items[index - start])
        raise IndexError(index)

    def without(self, indexes) -> "ChangeSet":
        """This change set less the messages at ``indexes`` (say, those the switch rejected)."""
        if not indexes:
            return self
        parts = {}
        for start, kind, items in self.segments():
            gone = [i - start for i in indexes if start <= i < start + len(items)]
            if gone:
                gone = set(gone)
                items = [pair for i, pair in enumerate(items) if i not in gone]
            parts[kind] = items
        return ChangeSet(parts)


@dataclass
class Encoded:
    """A change set's bytes (module docstring)."""

    chunks: list = field(default_factory=list)  # bytes of whole messages, about SEND_CHUNK each, in sending order
    errors: dict = field(default_factory=dict)  # index -> why the message could not be encoded (left out)
    sent: dict = field(default_factory=dict)  # kind -> messages encoded (counted sent once written)


def encode_all(wire: encode.WireEncoder, changes: ChangeSet, first_xid: int, bundle_id: int | None,
               tick, stale=lambda: False) -> Encoded | None:
    """Every message of ``changes``, message i with xid ``first_xid + i`` (modulo 2**32), inside bundle adds of
    ``bundle_id`` unless it is None; those that cannot be encoded are left out and named in ``errors``. Pauses
    (``tick``: module docstring), holding a slot of the switches encoding at once if the change set is big
    (openflow/atonce.py ``ENCODES``). None, nothing encoded, if ``stale()`` once the slot is held: the change set
    became out of date while it waited (at a cold start, behind the full change sets of 44 other switches)."""
    with encode_slot(len(changes)):
        return None if stale() else _encode(wire, changes, first_xid, bundle_id, tick)


def _encode(wire: encode.WireEncoder, changes: ChangeSet, first_xid: int, bundle_id: int | None, tick) -> Encoded:
    done = Encoded()
    out = bytearray()
    for start, kind, items in changes.segments():
        encoded = 0
        for begin in range(0, len(items), ENCODE_CHUNK):
            batch = items[begin:begin + ENCODE_CHUNK]
            xid = (first_xid + start + begin) & MAX_XID
            if kind == "flow_add":
                fresh, failed = wire.write_adds([f for _, f in batch], xid, out, bundle_id)
                units = len(batch) + fresh * (FRESH_UNITS - 1)
            elif kind == "flow_delete":
                fresh, failed = wire.write_deletes(batch, xid, out, bundle_id)
                units = len(batch) + fresh * (FRESH_UNITS - 1)
            else:
                failed = _write_each(wire, kind, batch, xid, out, bundle_id)
                units = len(batch) * FRESH_UNITS
            done.errors.update((start + begin + at, f"not encodable: {text}") for at, text in failed.items())
            encoded += len(batch) - len(failed)
            if len(out) >= SEND_CHUNK:
                done.chunks.append(bytes(out))
                out = bytearray()
            tick(units)
        if encoded:
            done.sent[kind] = encoded
    if out:
        done.chunks.append(bytes(out))
    return done


def _write_each(wire: encode.WireEncoder, kind: str, batch, xid: int, out: bytearray, bundle_id) -> dict:
    """Append messages other than flow adds, one by one; {position in ``batch``: error text} of those left out."""
    failed = {}
    for position, (key, item) in enumerate(batch):
        try:
            data = encode_one(wire, Op(kind, key, item), (xid + position) & MAX_XID)
            out += wire.bundle_add(bundle_id, data) if bundle_id is not None else data  # may not fit either
        except encode.BAD_VALUE as exc:
            failed[position] = str(exc)
    return failed


def encode_one(wire: encode.WireEncoder, op: Op, xid: int) -> bytes:
    """One message of a change set (not inside a bundle add)."""
    if op.kind == "flow_add":
        return wire.flow_add(op.item, xid)
    if op.kind == "flow_delete":
        table, priority, cookie = op.key
        match = wire.flow_match(op.item) if isinstance(op.item, Flow) else encode.ryu_match_bytes(op.item.match)
        return wire.flow_delete_strict(table, priority, cookie, match, xid)
    if op.kind.startswith("meter"):
        return wire.meter_mod(op.item, op.kind.split("_")[1], xid)
    return wire.group_mod(op.item, op.kind.split("_")[1], xid)
