"""Group-description entries as a read-back parses them: the fixed fields at once, the buckets one at a time on use.

Part of the door to Ryu (controller/ryu_compat.py installs ``LazyGroupDesc`` as each OpenFlow version's
group-description body: ``lazy_group_desc``), as flow stats are (controller/flowstats.py). Ryu's parser built every
bucket of every group of a reply, each action an object (a Nicira ``resubmit``, an OXM ``set_field`` of a register or
tunnel field), when its message was read: a reply of up to 64 KB, one flood group of 1,000 buckets, in one stretch of
10-20 ms of CPU on the event loop, the longest of vrs_scale's restart (docs/benchmarks.md "Branch perf47"). The message
is now parsed to its groups' fixed fields only (a few per message), and a group's buckets when they are used:
``each_bucket`` parses one at a time, so a read-back that decodes them (openflow/decode.py ``decode_group``) pauses
between buckets (openflow/reconciler.py).

A group's length is checked as it is parsed (the message's groups are framed by controller/ofcheck.py before); each
bucket's length and actions as the bucket is reached (``ofcheck.checked_buckets``): a length that would spin Ryu's
parser is a ValueError at first use, as for a flow-stats entry's instructions.
"""

from __future__ import annotations

import operator
import struct

from controller.flowstats import entry_parser
from controller.ofcheck import checked_buckets


class LazyGroupDesc(tuple):
    """One entry of a group-description reply with Ryu's OFPGroupDescStats attributes: ``length``, ``type`` and
    ``group_id``, then the entry's bytes (a copy); ``buckets`` (Ryu's OFPBucket objects) parsed on first use and kept
    (in the instance's dict), or one at a time by ``each_bucket``. Each version's subclass: ``lazy_group_desc``."""

    HEADER: struct.Struct
    BUCKET: type  # the version's OFPBucket

    length = property(operator.itemgetter(0))
    type = property(operator.itemgetter(1))
    group_id = property(operator.itemgetter(2))

    # the entry at an offset of a reply's bytes; ValueError if its length is below its fixed part or beyond the message
    # (controller/ofcheck.py refuses such a message before: this holds without it too)
    parser = entry_parser("group description")

    def each_bucket(self):
        """Ryu's OFPBucket of each bucket, in order, each parsed (its length and actions checked first) when the
        caller asks for it: a caller may pause between two. ValueError at a bucket whose framing is wrong."""
        raw, parse = self[-1], self.BUCKET.parser
        for start, _end in checked_buckets(raw, self.HEADER.size, len(raw)):
            yield parse(raw, start)

    @property
    def buckets(self) -> list:
        try:
            return self._buckets
        except AttributeError:
            buckets = self._buckets = list(self.each_bucket())
            return buckets

    def __repr__(self) -> str:
        return f"{type(self).__name__}(type={self.type}, group_id={self.group_id}, {len(self[-1])} bytes)"

    # compared and hashed as the objects Ryu makes are (by identity), not as tuples of their bytes
    __eq__ = object.__eq__
    __ne__ = object.__ne__
    __hash__ = object.__hash__


def lazy_group_desc(version, parser) -> type:
    """Make ``parser``'s group-description replies carry LazyGroupDesc entries (``version``: its ofproto module).
    The class made."""
    lazy = type(f"LazyGroupDesc{version.OFP_VERSION:02x}", (LazyGroupDesc,),
                {"HEADER": struct.Struct(version.OFP_GROUP_DESC_STATS_PACK_STR), "BUCKET": parser.OFPBucket})
    parser.OFPGroupDescStatsReply.cls_stats_body_cls = lazy
    return lazy
