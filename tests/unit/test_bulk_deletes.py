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


def test_gone_owners_flows_in_bulk_are_the_loops_deletes_and_kept_in_order():
    """``_gone_deletes`` (the flows of owners that went, keyed in C loops) against the per-flow loop it replaces:
    the same ``deletes`` and ``kept``, in the same order, a later flow of a key replacing an earlier one, for random
    owners' sets with shared keys, rejected keys and cookies not computed yet."""
    from openflow.flows import Flow, Owner
    from openflow.installed import _gone_deletes

    rng = random.Random(4)
    for _ in range(200):
        pool = [Flow(rng.choice([0, 5, 40]), rng.choice([100, 200]), (("reg5", rng.randrange(6)),), (),
                     Owner("evpn", f"m{rng.randrange(3)}")) for _ in range(12)]
        for f in pool:
            if rng.random() < 0.9:
                f.key  # noqa: B018 (its cookie computed, as an installed flow's is)
        gone = [frozenset(rng.sample(pool, rng.randint(1, 5))) for _ in range(rng.randint(1, 4))]
        rejected = {rng.choice(pool).key: "no"} if rng.random() < 0.3 else {}
        want_kept, want_deletes = {"k": 1}, {"d": 2}
        for f in (f for flows in gone for f in flows):
            key = f.key
            (want_kept if key in rejected else want_deletes)[key] = f
        kept, deletes = {"k": 1}, {"d": 2}
        _gone_deletes(list(gone), rejected, kept, deletes)
        assert list(deletes.items()) == list(want_deletes.items()) and list(kept.items()) == list(want_kept.items())
        assert all(v is want_deletes[k] for k, v in deletes.items())


@pytest.mark.parametrize("reverse", [False, True])
def test_flows_sorted_in_bulk_are_sorted_by_flow_order(reverse):
    """``sorted_flows`` (each item's order computed in C) is ``sorted_paced`` by ``flow_order``, above and below the
    chunk it sorts at once, ticking as often."""
    from openflow import installed

    rng = random.Random(5)
    for size in (0, 1, 2, 50, installed.FLOW_SORT_CHUNK + 7):
        keys = {(rng.randrange(256), rng.randrange(1 << 16), rng.randrange(1 << 64)) for _ in range(size)}
        items = [(key, object()) for key in keys]
        ticks, want_ticks = [], []
        got = installed.sorted_flows(items, ticks.append, reverse)
        want = installed.sorted_paced(items, want_ticks.append, reverse, installed.FLOW_SORT_CHUNK, installed.flow_order)
        assert got == want and ticks == want_ticks


def test_planning_gone_owners_deletes_costs_fewer_bytecodes_a_flow_at_1000_as_at_10000():
    """A FlowBook planning the deletes of N owners that went (withdrawn MACs, 3 flows each: ``_gone_deletes`` and
    ``sorted_flows``): at most 25 bytecodes a flow at 1,000 and 10,000 owners (17 with them; a Python step a flow
    for its key and one for its order: 59 before)."""
    from openflow.flows import Owner, flow
    from openflow.installed import FlowBook
    from openflow import pipeline as p

    for count in (1000, 10000):
        owners = [Owner("evpn", f"m{i}") for i in range(count)]
        desired = {o: frozenset(flow(table, 100, {"reg5": 7, "eth_dst": f"02:00:00:00:{i >> 8:02x}:{i & 0xff:02x}"},
                                     [("goto", p.EGRESS_ACL)], o) for table in (p.L2_LOOKUP, p.EGRESS_ACL, 0))
                   for i, o in enumerate(owners)}
        book = FlowBook()
        book.set_desired(desired)
        book.applied(book.plan())
        book.set_desired({}, changed=owners)
        plan = []
        per_flow = opcodes(lambda: plan.append(book.plan())) / (3 * count)
        assert len(plan[0].deletes) == 3 * count and not plan[0].adds
        assert per_flow <= 25, (count, per_flow)
