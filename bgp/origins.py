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


class Origins:
    """The vports behind each originated route of one ``publish`` (filled by ``bgp.evpn.originate``)."""

    def __init__(self):
        self._keys_of: dict[str, list] = {}  # vport id -> keys of the routes it stands behind
        self._behind: dict[tuple, int] = {}  # route key -> how many of its vports are still bound
        self._pinned: set[tuple] = set()  # keys with something other than a vport behind them too
        self._unbound: set[str] = set()  # vports no longer counted behind their routes (``unbound``)

    def add(self, key: tuple, sources) -> None:
        """``sources`` stand behind the route ``key``: endpoints of kind "vport" (counted by vport id; each vport
        once per route), or anything else (a hardware VTEP's endpoint or session), which pins the route."""
        keys_of, behind = self._keys_of, 0
        for source in sources:
            if getattr(source, "kind", None) != "vport":
                self._pinned.add(key)
                continue
            keys = keys_of.get(source.vport_id)
            if keys is None:
                keys_of[source.vport_id] = [key]
            else:
                keys.append(key)
            behind += 1
        if behind:
            self._behind[key] = self._behind.get(key, 0) + behind

    def has(self, vport_id) -> bool:
        """Whether routes of the last publish (or announced since) name this vport, unbound since or not."""
        return vport_id in self._keys_of

    def unbound(self, vport_ids) -> list[tuple]:
        """``vport_ids`` no longer stand behind their routes (State no longer locates them); the keys of the routes
        nothing stands behind now."""
        gone = []
        for vid in vport_ids:
            keys = self._keys_of.get(vid)
            if keys is None or vid in self._unbound:
                continue
            self._unbound.add(vid)
            for key in keys:
                left = self._behind[key] - 1
                self._behind[key] = left
                if not left and key not in self._pinned:
                    gone.append(key)
        return gone

    def bound(self, vport_ids) -> None:
        """``vport_ids`` are located again: those ``unbound`` before pin the routes they stood behind (no longer
        counted, they would let another vport's unbinding withdraw a route they are behind) until the next pass."""
        for vid in vport_ids:
            if vid in self._unbound:
                self._pinned.update(self._keys_of.get(vid, ()))

    def settle(self, locations) -> list[tuple]:
        """``unbound`` for every vport not in ``locations`` (State's, now): what was unbound while the routes
        were being made, to be left out of what is announced."""
        return self.unbound([vid for vid in self._keys_of if vid not in locations])
