"""WireEncoder.write_deletes' bulk path (``_write_cached_deletes``): the deletes of flows whose adds were encoded, built
in C loops, are the bytes the per-item loop writes (and Ryu's), for random batches in OpenFlow 1.3 and 1.4, plain and
bundled; a batch with one flow it cannot take (never encoded, read back, xid wrapping) goes through the loop whole.
Its work is bounded by counts: a few bytecodes a delete, whatever the batch's size (the loop: ~107)."""

from __future__ import annotations

import random

import pytest

from openflow import encode, ryumsg
from tests.bytecodes import opcodes
from tests.unit.flow_samples import FLOWS
from tests.unit.test_changeset import MAX_XID, copies, many_flows, messages, protocol, read_back_entry, ryu_delete

CASES = [(4, None), (5, None), (5, 7)]
IDS = ["1.3", "1.4", "1.4-bundle"]


def one_by_one(wire, items, xid, bundle_id) -> bytes:
    """The per-item loop's bytes: ``write_deletes`` of one item at a time (never the bulk path)."""
    out = bytearray()
    for position, item in enumerate(items):
        assert wire.write_deletes([item], (xid + position) & MAX_XID, out, bundle_id) == (0, {})
    return bytes(out)


@pytest.mark.parametrize("version,bundle_id", CASES, ids=IDS)
def test_bulk_deletes_are_the_loops_bytes_and_ryus_for_random_batches(version, bundle_id):
    dp, rng = protocol(version), random.Random(44)
    for _ in range(30):
        wire = encode.WireEncoder(dp.ofproto)
        flows = copies(rng.sample(FLOWS, rng.randint(2, len(FLOWS))) + many_flows(rng.randint(0, 40)))
        wire.write_adds(flows, 1, bytearray(), bundle_id)
        rng.shuffle(flows)
        items = [(f.key, f) for f in flows]
        xid = rng.choice([0, 1, MAX_XID - 2 * len(items), rng.randrange(MAX_XID - len(items))])
        out = bytearray()
        assert wire.write_deletes(items, xid, out, bundle_id) == (0, {})
        assert bytes(out) == one_by_one(wire, items, xid, bundle_id)
        want = [ryu_delete(dp, *key, ryumsg.ryu_match(dp.ofproto_parser, f.match), xid + i, bundle_id)
                for i, (key, f) in enumerate(items)]
        assert messages(bytes(out)) == want


@pytest.mark.parametrize("version,bundle_id", CASES, ids=IDS)
def test_a_batch_the_bulk_path_cannot_take_is_the_loops_bytes(version, bundle_id):
    """One flow never encoded, one read back, or an xid that wraps: the same bytes as one at a time (the loop)."""
    dp = protocol(version)
    wire = encode.WireEncoder(dp.ofproto)
    flows = copies(FLOWS)
    wire.write_adds(flows, 1, bytearray(), bundle_id)
    cold = copies(FLOWS[:1])[0]
    batches = [([*flows, cold], 5, 1), ([*flows, read_back_entry(dp, FLOWS[0])], 5, 1), (flows, MAX_XID - 3, 0)]
    for batch, xid, fresh in batches:
        items = [((f.table_id, f.priority, f.cookie) if not hasattr(f, "key") else f.key, f) for f in batch]
        out = bytearray()
        assert wire.write_deletes(items, xid, out, bundle_id) == (fresh, {})
        want = [ryu_delete(dp, *key, f.match if not hasattr(f, "key") else ryumsg.ryu_match(dp.ofproto_parser, f.match),
                           (xid + i) & MAX_XID, bundle_id) for i, (key, f) in enumerate(items)]
        assert messages(bytes(out)) == want


def test_bulk_deletes_cost_a_few_bytecodes_each_at_1000_as_at_10000():
    """The deletes of encoded flows (a withdrawn MAC's three flows): at most 3 bytecodes a delete at 1,000 and at
    10,000 (the per-item loop: ~107 a delete)."""
    dp = protocol(5)
    wire = encode.WireEncoder(dp.ofproto)
    flows = many_flows(10000)
    wire.write_adds(flows, 1, bytearray(), 7)
    for count in (1000, 10000):
        items = [(f.key, f) for f in flows[:count]]
        out = bytearray()
        per_delete = opcodes(lambda: wire.write_deletes(items, 1, out, 7)) / count
        assert per_delete <= 3, (count, per_delete)
        assert len(messages(bytes(out))) == count
