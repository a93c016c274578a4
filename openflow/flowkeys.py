"""Flows' keys, cookies' owner bits and sort orders read in C loops, and the installed owners by their owner bits.

A gone owner's flows are deleted whole (openflow/installed.py ``FlowBook``): 10,000 vports' ports leaving a switch at
once are 30,000 deletes keyed, sorted and recorded. A key read through ``Flow.key`` (a Python property), a sort key
made by a Python function and an owner's bits read through ``Flow.cookie`` were most of the bytecodes of that push
(evpn_routes' withdraw, stop 48, docs/benchmarks.md "wd48b"); here each is read from the flows' slots by ``map``
over C functions (``operator.attrgetter``, ``itemgetter``, shifts), a few bytecodes per call whatever the count.
A cookie is computed the first time a flow is keyed: a flow not keyed yet (never planned) is read through the
property instead, the same value.
"""

from __future__ import annotations

from collections import deque
from itertools import compress, repeat
from operator import attrgetter, is_, itemgetter, lshift, not_, or_, rshift

from openflow.flows import OWNER_KINDS, make_cookie

_TABLE, _PRIORITY, _COOKIE_SLOT, _COOKIE = (attrgetter("table"), attrgetter("priority"), attrgetter("_cookie"),
                                            attrgetter("cookie"))
_FIRST, _SECOND, _THIRD = itemgetter(0), itemgetter(1), itemgetter(2)


def cookies(flows: list) -> list:
    """The cookie of each of ``flows``, from its slot (computed already, as every flow planned once has it)."""
    got = list(map(_COOKIE_SLOT, flows))
    return list(map(_COOKIE, flows)) if None in got else got


def flow_keys(flows: list) -> list:
    """``[f.key for f in flows]``: (table, priority, cookie) of each, in C."""
    return list(zip(map(_TABLE, flows), map(_PRIORITY, flows), cookies(flows)))


def flow_orders(items: list) -> list:
    """``openflow.installed.flow_order`` of each (Flow.key, ...) pair of ``items``, in C: a plan's sort keys."""
    keys = list(map(_FIRST, items))
    high = map(or_, map(lshift, map(_FIRST, keys), repeat(80)), map(lshift, map(_SECOND, keys), repeat(64)))
    return list(map(or_, high, map(_THIRD, keys)))


def owner_bits(flows) -> int:
    """The upper half of the cookies of an owner's flows (``flows``: a non-empty set of them): Canopy's mark, the
    owner's kind and the 20-bit hint of its id (openflow/flows.py), read from a cookie already computed."""
    return next(iter(flows)).cookie >> 32


def owners_bits(sets: list) -> list:
    """``owner_bits`` of each of ``sets`` (non-empty sets of flows), in C."""
    return list(map(rshift, cookies(list(map(next, map(iter, sets)))), repeat(32)))


class OwnersByBits:
    """The installed owners by their cookies' upper half (``owner_bits``). Almost every value has one owner, kept
    as itself; a set where a hint collides, its owners in ``involved``."""

    def __init__(self):
        self._owners: dict = {}  # owner bits -> Owner, or the set of Owners that share them
        self.involved: set = set()  # the owners that share their bits with another installed owner

    def add(self, owner, flows) -> None:
        bits = owner_bits(flows)
        held = self._owners.setdefault(bits, owner)
        if held is owner:  # almost always: bits of its own
            return
        if type(held) is set:
            held.add(owner)
            self.involved.add(owner)
        elif held != owner:
            self._owners[bits] = {held, owner}
            self.involved.update((held, owner))

    def discard(self, owner, flows) -> None:
        """``owner`` is no longer installed (``flows``: what it had)."""
        bits = owner_bits(flows)
        held = self._owners.get(bits)
        if held is owner:
            del self._owners[bits]
        elif type(held) is set:
            held.discard(owner)
            self.involved.discard(owner)
            if len(held) == 1:
                self._owners[bits] = last = held.pop()
                self.involved.discard(last)
        elif held == owner:
            del self._owners[bits]

    def discard_all(self, owners: list, sets: list) -> None:
        """``discard`` of each of ``owners`` (distinct, each installed with the non-empty set of flows at its place in
        ``sets``), in C for those whose bits are their own (all but a hint collision's: ``discard`` then)."""
        bits = owners_bits(sets)
        alone = list(map(is_, map(self._owners.get, bits), owners))
        deque(map(self._owners.__delitem__, compress(bits, alone)), 0)
        for owner, flows in compress(zip(owners, sets), map(not_, alone)):
            self.discard(owner, flows)

    def others(self, owner, flows) -> tuple:
        """The other installed owners with the bits of ``owner`` (itself installed or not; ``flows``: a non-empty set
        of its flows)."""
        held = self._owners.get(owner_bits(flows))
        if type(held) is set:
            return tuple(held - {owner})
        return () if held is None or held == owner else (held,)

    def any_twin_in(self, owners, among) -> bool:
        """Whether an installed owner with the bits of one of ``owners`` (installed or not; none of them in
        ``among``) is in ``among``. Computes each owner's bits from its kind and id (~0.5 µs); a kind no flow has
        has no bits."""
        get = self._owners.get
        for owner in owners:
            if owner.kind not in OWNER_KINDS:
                continue
            held = get(make_cookie(owner, 0) >> 32)
            if held is None or held == owner:
                continue
            if held in among if type(held) is not set else not held.isdisjoint(among):
                return True
        return False

    def clear(self) -> None:
        self._owners.clear()
        self.involved.clear()
