"""ExaBGP's share of a big withdraw (Canopy's extension in its process, bgp/exabgp_ext.py): the withdraw lines parsed,
their changes in a neighbor's outgoing RIB, the UPDATEs it yields grouped and packed. The grouped NLRIs are sorted by
their index in C before ExaBGP sorts them (``_Group.flush``): the bytes are ExaBGP's own order's, and the work a route
stays the same whatever the batch (ExaBGP's ``sorted`` by ``NLRI.__lt__``, two ``index()`` calls a comparison: ~960
bytecodes a route at 2,000 withdrawn in a random order, ~1,010 at 10,000, before stop 48; tests/benchmarks/
evpn_withdraw.py counts it in evpn_routes' withdraw)."""

from __future__ import annotations

import copy
import random

from exabgp.bgp.message import Update
from exabgp.configuration.core.format import formated

from bgp import exabgp_ext, routes
from bgp.exabgp_codec import _codec, encode_rib_updates
from tests.bytecodes import opcodes
from tests.unit.exabgp_cases import FakeReactor, batch_of, dispatch


def shuffled(count: int, seed: int = 48) -> list:
    batch = batch_of(count, next_hops=("192.0.2.1", "192.0.2.2"))
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
    """Bytecodes a route of ExaBGP taking ``count`` routes' withdraw lines (announced before, in a random order)."""
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
    return counted / count


def test_exabgps_work_a_withdrawn_route_does_not_grow_with_the_batch():
    """At most 800 bytecodes a route at 2,000 and at 10,000 (before stop 48: ~960 and ~1,010)."""
    for count in (2000, 10000):
        per_route = exabgp_withdraws(count)
        assert per_route <= 800, (count, per_route)
