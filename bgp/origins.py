"""Which bound vports stand behind each route Canopy originates, so that a route goes the moment State unbinds
the last of them (``Federation``'s early withdrawal), not after the programming pass that follows.

Why: deleting 10,000 ports, the pass that derives and compiles the View without them takes seconds, and the
routes used to be withdrawn only after it (evpn_routes' withdraw phase, docs/benchmarks.md). A vport State no
longer locates (``State.locations``) has no endpoint in the next View (``controller/viewdelta.py``: an endpoint
needs a location), so the routes that only such vports stood behind are exactly what the next ``publish`` would
withdraw: withdrawing them at once never withdraws a route for something present.

A route is withdrawn early only when every source behind it was a vport and all of them are unbound: a type 2
has its one vport (or several sharing the key), a type 3 every local vport of its subnet at that VTEP; anything
else behind a route (a hardware VTEP's MAC or binding) pins it until a pass decides, and routes with no vport
behind them (type 5, floating IPs) are never withdrawn here. A vport that moves or is bound again is left to the
next pass (its route changes, it does not vanish): one bound again after it was unbound pins the routes it stood
behind, so that another vport going later does not take them away while it is there (``bound``).
"""

from __future__ import annotations

from collections import Counter
from itertools import chain, compress, filterfalse, repeat
from operator import is_, not_


class _NoBase:
    """The base of an Origins filled by ``add`` only: nothing."""

    @staticmethod
    def keys_of(vport_id) -> tuple:
        return ()

    @staticmethod
    def behind(key) -> int:
        return 0

    @staticmethod
    def pinned(key) -> bool:
        return False

    @staticmethod
    def vports():
        return ()

    @staticmethod
    def named(vport_ids) -> set:
        return set()

    @staticmethod
    def standing(vport_ids) -> tuple:
        return {}, (), ()


class Origins:
    """The vports behind each originated route of one ``publish``: those ``add`` records (``bgp.evpn.originate``,
    ``bgp.early``), on top of a ``base`` (``bgp.originator.Originator``: what it keeps by delta between publishes,
    read here, never copied whole). The base may change after this publish (the next one's origination) while this
    Origins still answers for the routes handed over: it calls ``keep`` first, for what it is about to change, so
    that this Origins goes on seeing the base as it was."""

    def __init__(self, base=None):
        self._base = base if base is not None else _NoBase
        self._keys_of: dict[str, list] = {}  # vport id -> keys of the routes it stands behind (base's kept or added)
        self._count: dict[tuple, int] = {}  # route key -> how many of its vports are still bound (else the base's)
        self._pins: dict[tuple, bool] = {}  # route key -> pinned: something other than a vport behind it too (else
        # the base's)
        self._unbound: set[str] = set()  # vports no longer counted behind their routes (``unbound``)

    def keep(self, vport_ids=(), keys=()) -> None:
        """The base is about to change what it says of these vports and route keys: hold what it says now."""
        base, keys_of, count, pins = self._base, self._keys_of, self._count, self._pins
        for vid in filterfalse(keys_of.__contains__, vport_ids):  # (those held already passed over in C)
            keys_of[vid] = list(base.keys_of(vid))
        keys = keys if isinstance(keys, (list, tuple)) else list(keys)  # (walked twice)
        for key in filterfalse(count.__contains__, keys):
            count[key] = base.behind(key)
        for key in filterfalse(pins.__contains__, keys):
            pins[key] = base.pinned(key)

    def keep_absent(self, vport_ids=(), keys=()) -> None:
        """``keep`` for vports and route keys the base does not have and is about to take: no keys for the vports,
        nothing behind the keys and no pin (what the base says of them now, without asking it each)."""
        keys_of, count, pins = self._keys_of, self._count, self._pins
        for vid in vport_ids:
            if vid not in keys_of:
                keys_of[vid] = []
        for key in keys:
            if key not in count:
                count[key] = 0
            if key not in pins:
                pins[key] = False

    def _keys(self, vid) -> list:
        keys = self._keys_of.get(vid)
        return keys if keys is not None else self._base.keys_of(vid)

    def behind(self, key) -> int:
        """The vports behind the route ``key`` now (the base's answer unless changed here): the base's protocol, read
        by the oracle tests."""
        left = self._count.get(key)
        return left if left is not None else self._base.behind(key)

    def pinned(self, key) -> bool:
        """Whether anything but vports stands behind the route ``key`` (the base's answer unless changed here)."""
        pinned = self._pins.get(key)
        return pinned if pinned is not None else self._base.pinned(key)

    def add(self, key: tuple, sources) -> None:
        """``sources`` stand behind the route ``key``: endpoints of kind "vport" (counted by vport id; each vport
        once per route: ``add_vport``), or anything else (a hardware VTEP's endpoint or session), which pins the
        route."""
        add_vport = self.add_vport
        for source in sources:
            if getattr(source, "kind", None) == "vport":
                add_vport(key, source.vport_id)
            else:
                self._pins[key] = True

    def add_vport(self, key: tuple, vport_id) -> None:
        """The vport ``vport_id`` stands behind the route ``key`` (once per route): ``add``'s rule for one vport, called
        alone for a route announced at bind or carried (bgp/early.py: 10,000 bindings announce 10,000, and the next
        publish may carry 9,000 of them)."""
        keys_of = self._keys_of
        held = keys_of.get(vport_id)
        if held is None:
            held = keys_of[vport_id] = list(self._base.keys_of(vport_id))
        held.append(key)
        self._count[key] = self.behind(key) + 1

    @property
    def unbound_ids(self) -> set:
        """The vports ``unbound`` took out from behind their routes, each with its keys held here (read only)."""
        return self._unbound

    def has(self, vport_id) -> bool:
        """Whether routes of the last publish (or announced since) name this vport, unbound since or not."""
        keys = self._keys_of.get(vport_id)  # (``_keys``, without its call: asked of every vport bound)
        return bool(keys if keys is not None else self._base.keys_of(vport_id))

    def named(self, vport_ids) -> set:
        """Those of ``vport_ids`` that ``has``."""
        keys_of, ids = self._keys_of, set(vport_ids)
        held = set(filter(keys_of.__contains__, ids))  # (the rest asked of the base at once)
        return {vid for vid in held if keys_of[vid]} | self._base.named(ids.difference(held))

    def unbound(self, vport_ids) -> list[tuple]:
        """``vport_ids`` no longer stand behind their routes (State no longer locates them); the keys of the routes
        nothing stands behind now (in no particular order)."""
        if not vport_ids:  # (vports bound: State's chunks call with none unbound)
            return []
        unbound, keys_of, count, pins = self._unbound, self._keys_of, self._count, self._pins
        ids = dict.fromkeys(filterfalse(unbound.__contains__, vport_ids))
        mine = list(filter(None, map(keys_of.get, ids)))  # (vports held here: ``add``, ``keep``; few)
        held, quick, grouped = self._base.standing(filterfalse(keys_of.__contains__, ids))
        keys_of.update(held)  # held from here (as ``keep`` would: the base drops them at the next origination)
        unbound.update(filter(keys_of.get, ids))
        others = list(chain.from_iterable(mine))
        odd = count.keys() & quick  # (counted here, or named by a vport held here)
        if others:
            odd |= set(others).intersection(quick)
        if odd:
            quick = [key for key in quick if key not in odd]
            others.extend(odd)
        # the base's keys with one vport behind each and nothing pinning them: nothing behind them now
        count.update(dict.fromkeys(quick, 0))
        pinned = list(map(pins.get, quick))  # (a key hashed once for both: None, not pinned here yet)
        pins.update(dict.fromkeys(compress(quick, map(is_, pinned, repeat(None))), False))
        gone = list(compress(quick, map(not_, pinned)))
        for key, n in Counter(chain(grouped, others)).items():  # (``behind`` and ``pinned`` inline)
            left = count.get(key)
            if left is None:
                left = self._base.behind(key)
            count[key] = left - n
            if 0 < left <= n:  # (it reached nothing behind it with one of these vports)
                pinned = pins.get(key)
                pinned = pins[key] = self._base.pinned(key) if pinned is None else pinned
                if not pinned:
                    gone.append(key)
        return gone

    def bound(self, vport_ids) -> None:
        """``vport_ids`` are located again: those ``unbound`` before pin the routes they stood behind (no longer
        counted, they would let another vport's unbinding withdraw a route they are behind) until the next pass."""
        for vid in vport_ids:
            if vid in self._unbound:
                for key in self._keys(vid):
                    self._pins[key] = True

    def settle(self, locations, candidates=None) -> list[tuple]:
        """``unbound`` for every vport not in ``locations`` (State's, now): what was unbound while the routes
        were being made, to be left out of what is announced. ``candidates``: the vports whose location changed
        since the routes' View was made (None: not known, every vport behind a route is looked at)."""
        if candidates is None:
            candidates = set(self._keys_of) | set(self._base.vports())
        return self.unbound([vid for vid in candidates if vid not in locations])
