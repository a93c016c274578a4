"""A switch's record by owner (openflow/installed.py ``FlowBook``) with gone owners planned and recorded in C loops
(openflow/flowkeys.py): the plans are the full diff's, in the order ``flow_order`` gives, and the record after them
is what a book built from scratch holds, for random changes of many owners at once (runs of ``OWNERS_RUN`` and
chunks of ``CHUNK``), hint collisions and flows the switch refuses. The work of a withdraw's push is bounded by
counts: a few bytecodes a gone flow (evpn_routes' withdraw: 10,000 vports' 30,000 flows; ~97 a flow a flow at a
time, before stop 48)."""

from __future__ import annotations

import random
from types import SimpleNamespace

from openflow import pipeline as p
from openflow.flowkeys import OwnersByBits, flow_keys, flow_orders
from openflow.flows import Owner, flow
from openflow.installed import CHUNK, OWNERS_RUN, FlowBook, flow_order
from tests.bytecodes import opcodes
from tests.unit.test_installed import colliding_owners

MACS = [f"02:00:00:00:00:{i:02x}" for i in range(6)]


def flows_of(owner, macs) -> frozenset:
    return frozenset(flow(p.L2_LOOKUP, 100 + i % 3, {"reg5": 1, "eth_dst": mac}, [("goto", p.EGRESS_ACL)], owner)
                     for i, mac in enumerate(macs))


def stats(key):
    return SimpleNamespace(table_id=key[0], priority=key[1], cookie=key[2], match=None)


def full_plan(desired: dict, switch: dict, rejected: dict):
    """The plan of a book that knows nothing but the switch's flows (read back) and what it refused: the oracle."""
    book = FlowBook()
    book.set_desired(desired)
    book.read_back({key: stats(key) for key in switch})
    book.rejected.update(rejected)
    return book.plan()


def keys(items) -> set:
    return {key for key, _ in items}


def a_change(rng, owners, desired) -> tuple[dict, set]:
    """Some owners changed: most of them gone at once now and then (past a run and a chunk), else a few changed."""
    changed = set(rng.sample(owners, rng.choice([1, 3, 10, len(owners) // 2, len(owners)])))
    after = dict(desired)
    going = rng.random() < 0.5
    for owner in changed:
        if going or rng.random() < 0.3:
            after.pop(owner, None)
        else:
            after[owner] = flows_of(owner, rng.sample(MACS, rng.randint(1, 3)))
    return after, changed


def test_plans_are_the_full_diffs_and_the_record_a_fresh_ones_for_random_changes():
    rng = random.Random(48)
    a, b = colliding_owners()
    c, d = colliding_owners("evpn")
    owners = [a, b, c, d] + [Owner("vport", f"p{i}") for i in range(2 * OWNERS_RUN + CHUNK)]
    for _ in range(6):
        book, switch, desired = FlowBook(), {}, {}
        book.set_desired({})
        book.read_back({})
        for _step in range(12):
            desired, changed = a_change(rng, owners, desired)
            book.set_desired(desired, changed=changed)
            assert book.desired == {o: fs for o, fs in desired.items() if fs}
            oracle = full_plan(desired, switch, book.rejected)
            plan = book.plan()
            assert keys(plan.adds) == keys(oracle.adds) and keys(plan.deletes) == keys(oracle.deletes)
            assert plan.adds == sorted(plan.adds, key=flow_order, reverse=True)
            assert plan.deletes == sorted(plan.deletes, key=flow_order)
            for key, f in plan.adds:
                if rng.random() < 0.02:
                    book.rejected[key] = "refused"
                else:
                    switch[key] = f
            for key, _ in plan.deletes:
                if rng.random() < 0.02:
                    book.rejected[key] = "refused"
                else:
                    del switch[key]
            book.applied(plan)
            installed = {k for fs in book.installed.values() for k in flow_keys(list(fs))} | set(book.loose)
            assert installed == set(switch)
            fresh = OwnersByBits()
            for owner, flows in book.installed.items():
                fresh.add(owner, flows)
            assert book.sharing._owners == fresh._owners and book.sharing.involved == fresh.involved
            if rng.random() < 0.3:
                book.retry_rejected()


def test_keys_and_orders_read_in_c_are_the_flows_own():
    flows = list(flows_of(Owner("vport", "x"), MACS))
    cold = list(flows_of(Owner("vport", "y"), MACS))  # never keyed: their cookies read through the property
    assert flow_keys(flows) == [f.key for f in flows] and flow_keys(cold) == [f.key for f in cold]
    pairs = [(f.key, f) for f in flows]
    assert flow_orders(pairs) == list(map(flow_order, pairs))


def withdrawn(count: int) -> int:
    """Bytecodes of the book's part of a withdraw's push: ``count`` owners of three installed flows each gone (set,
    planned, sorted, recorded)."""
    owners = [Owner("evpn", f"m{i}") for i in range(count)]
    book = FlowBook()
    book.set_desired({o: flows_of(o, MACS[:3]) for o in owners})
    book.read_back({})
    book.applied(book.plan())

    def push():
        book.set_desired({}, changed=set(owners))
        book.applied(book.plan())

    counted = opcodes(push)
    assert book.installed == {} and book.counts() == (0, 0, 0)
    return counted


def test_a_withdraws_push_costs_a_few_bytecodes_a_gone_flow_at_1000_as_at_10000():
    """At most 3 bytecodes a gone flow at 1,000 owners and at 10,000 (a flow at a time before stop 48: ~97)."""
    for count in (1000, 10000):
        per_flow = withdrawn(count) / (3 * count)
        assert per_flow <= 3, (count, per_flow)


def test_a_gone_owners_flow_of_a_refused_key_is_kept_not_deleted():
    """A gone owner's flows are deleted but for one whose key the switch refused (kept, as a full plan keeps it)."""
    owner = Owner("vport", "x")
    book = FlowBook()
    book.set_desired({owner: flows_of(owner, MACS[:3])})
    book.read_back({})
    book.applied(book.plan())
    refused = sorted(f.key for f in book.installed[owner])[1]
    book.rejected[refused] = "refused"
    book.set_desired({}, changed={owner})
    plan = book.plan()
    assert keys(plan.kept) == {refused} and keys(plan.deletes) == {f.key for f in flows_of(owner, MACS[:3])} - {refused}
