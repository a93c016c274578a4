"""ExaBGP's share of a big withdraw (Canopy's extension in its process, bgp/exabgp_ext.py): the withdraw lines parsed,
their changes built (``build_changes``: a batch's NLRIs copied from its announcements', or taken again, in C loops) and
put in a neighbor's outgoing RIB, the UPDATEs it yields grouped and packed. The grouped NLRIs are sorted by their index
in C before ExaBGP sorts them (bgp/updategroup.py ``UpdateGroup.flush``): the bytes are ExaBGP's own order's. The work
a route stays the same whatever the batch: before stop 48, ~960 bytecodes a route at 2,000 withdrawn in a random order
and ~1,010 at 10,000 (~870 and ~920 withdrawn again after a new announce), ExaBGP's ``sorted`` by ``NLRI.__lt__`` (two
``index()`` calls a comparison) and a copy of each NLRI a route at a time; ~630 now (tests/benchmarks/evpn_withdraw.py
counts it in evpn_routes' withdraw)."""

from __future__ import annotations

import copy
import random
from dataclasses import replace

from exabgp.bgp.message import Update
from exabgp.configuration.core.format import formated

from bgp import exabgp_ext, routes
from bgp.exabgp_codec import _codec, encode_rib_updates
from tests.bytecodes import opcodes
from tests.unit.exabgp_cases import FakeReactor, batch_of, dispatch


def shuffled(count: int, seed: int = 48) -> list:
    """``count`` routes in a random order (of an RD of their own: texts no other batch has, parsed afresh)."""
    hops = ("192.0.2.1", "192.0.2.2")
    batch = [replace(route, rd=f"65000:{seed}{count}") for route in batch_of(count, next_hops=hops)]
    random.Random(seed).shuffle(batch)
    return batch


def negotiated():
    out = copy.copy(_codec(65000, 65001)[1])
    out.msg_size = 4096  # as with GoBGP
    return out


def test_grouped_withdrawals_are_the_bytes_of_exabgps_own_order():
    """Withdrawals queued in a random order: the UPDATEs are those ExaBGP's own ``Update`` of the same NLRIs packs (it
    sorts them by ``__lt__``)."""
    for seed in (1, 2, 3):
        batch = shuffled(1500, seed)
        nlris = [exabgp_ext.build_nlri(route, "withdraw") for route in batch]
        want = list(Update(nlris, exabgp_ext.shared_attributes(batch[0])).messages(negotiated()))
        assert encode_rib_updates(batch, "withdraw", message_size=4096) == want


def exabgp_withdraws(count: int) -> float:
    """Bytecodes a route of ExaBGP taking ``count`` routes' withdraw lines (announced before, in a random order), the
    more of the first withdraw and one after the routes were announced again."""
    batch, reactor, session = shuffled(count), FakeReactor(), negotiated()

    def lines(action):
        return [routes.to_batch_command(batch[i:i + 500], action) for i in range(0, count, 500)]

    def take(taken):
        for line in taken:
            dispatch(reactor, formated(line))
        return [m for update in reactor.rib.updates(True) for m in update.messages(session)]

    take(lines("announce"))
    withdraw = lines("withdraw")
    counted = opcodes(lambda: take(withdraw))
    assert reactor.acks.count("done") == len(reactor.acks) and list(reactor.rib.cached_changes()) == []
    take(lines("announce"))  # again: the same routes (parsed once), their withdrawals built already
    again = opcodes(lambda: take(withdraw))
    assert list(reactor.rib.cached_changes()) == []
    return max(counted, again) / count


def test_exabgps_work_a_withdrawn_route_does_not_grow_with_the_batch():
    """At most 700 bytecodes a route at 2,000 and at 10,000 (before stop 48: ~960 and ~1,010; now ~630)."""
    for count in (2000, 10000):
        per_route = exabgp_withdraws(count)
        assert per_route <= 700, (count, per_route)


def test_a_batchs_withdrawals_built_at_once_are_those_built_one_by_one():
    """``build_changes``: the withdrawals of routes announced before, copied in C loops, are the changes
    ``build_change`` makes of each (the NLRI's bytes, index and action, the announcement's attributes); a batch with a
    route never announced, or withdrawn before, is built one by one as before."""
    announced = shuffled(300, 5)
    for route in announced:
        exabgp_ext.build_change(route, "announce")
    fresh = batch_of(2)  # never announced (other objects)
    for batch in (announced, announced[:100] + fresh, announced[:50]):  # the last: withdrawn already above
        got = exabgp_ext.build_changes(batch, "withdraw")
        want = [exabgp_ext.build_change(route, "withdraw") for route in batch]
        assert [c.nlri.pack_nlri() for c in got] == [c.nlri.pack_nlri() for c in want]
        assert [c.nlri.index() for c in got] == [c.nlri.index() for c in want]
        assert all(str(c.nlri.action).lower().endswith("withdraw") for c in got)
        assert all(g.attributes is w.attributes for g, w in zip(got, want))
        assert [c.nlri for c in got] == [exabgp_ext.shared_nlri(route, "withdraw") for route in batch]
    for route in announced:  # the announcements' NLRIs are left as they were
        assert str(exabgp_ext.shared_nlri(route, "announce").action).lower().endswith("announce")
