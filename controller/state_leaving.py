"""Ports a VRS is deleting, known before State takes the report without them: the vports bound there that nothing else
shows, told to the listeners (``bgp.federation``: their EVPN routes withdrawn at intake).

Why: a big delete of ports (10,000 in one OVSDB transaction) is reported a slice at a time (ovsdb/idl/slices.py), and
its vports are unbound, and their routes withdrawn, as each slice is taken: spread over a second of the controller's
intake, while the peers could take all the withdrawals in at once (evpn_routes' withdraw phase, docs/benchmarks.md).
The update's deleted Interface rows are known as soon as it is decoded (``VrsReporter.leaving``); the vports they
stand for are told here, before the first slice is applied.

``Leaving`` is part of State (controller/state.py ``State`` inherits it). It changes nothing of State (the vports stay
located until the report without their ports is taken) and wakes no programming pass: it only tells the listeners
(``listen_leaving``), a chunk of vports at a time, pausing (``pacer``) between chunks. A vport is told only when it is
located on that very port of that switch, and its binding key is shown by that port alone (no other port, on any
switch, that would take it when this one goes: a live migration's other port, a vport that moved) and it has no ESXi
static binding: what is told is what the report without those ports unbinds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from itertools import chain, compress, repeat
from operator import attrgetter, eq, is_, itemgetter, not_

log = logging.getLogger("canopy.state")

LEAVING_CHUNK = 1000  # vports told (their withdrawals handed over) between two chances to pause (``State.pacer``)
_FIRST, _SECOND, _THIRD = itemgetter(0), itemgetter(1), itemgetter(2)
_AT = attrgetter("session", "port", "vlan")  # a Location's spot
LEAVING_LEAD = 100  # the first chunk's: its withdrawals leave at the first pause, after ~1 ms of work, not ~10-25 ms


class Leaving:
    """The ports leaving a VRS, as State's listeners hear of them (module docstring)."""

    def listen_leaving(self, callback: Callable[[list], None], left: Callable[[str, set], None]) -> None:
        """``callback(vport ids)``: those vports are about to be unbound (their ports are being deleted);
        ``left(session, port names)``: the update deleting those ports of switch ``session`` is taken (their vports
        are unbound), or its session ended first: what still shows them is as State locates it."""
        self._leaving_listeners.append((callback, left))

    def vrs_leaving(self, session: str, names: Iterable[str]) -> None:
        """The ports ``names`` of switch ``session`` are deleted by an update not taken yet: tell the listeners the
        vports only they show, the first ``LEAVING_LEAD`` names, then a chunk of ``LEAVING_CHUNK`` at a time, ``pacer``
        ticked a chunk's worth after each (a pause in the controller: the lead's withdrawals go to ExaBGP, and on to
        its peers, while the rest are found)."""
        if not self._leaving_listeners:
            return
        names, told = list(names), 0
        for start, end in _chunks(len(names)):
            vids = self._leaving_vports(session, names[start:end])
            told += len(vids)
            if vids:
                for callback, _left in self._leaving_listeners:
                    try:
                        callback(vids)
                    except Exception:  # a listener's bug must not break the intake
                        log.exception("leaving listener %r failed", callback)
            self.pacer.tick(LEAVING_CHUNK)
        log.info("VRS %s: %d ports being deleted, %d vports bound there told before their report", session, len(names),
                 told)

    def vrs_left(self, session: str, names) -> None:
        """The ports ``names`` of ``session`` told ``vrs_leaving`` are no longer leaving."""
        names = set(names)
        for _callback, left in self._leaving_listeners:
            try:
                left(session, names)
            except Exception:
                log.exception("leaving listener %r failed", left)

    def _leaving_vports(self, session: str, names: list[str]) -> list:
        """Of the vports the ports ``names`` of ``session`` show, those located there that nothing else shows. In C
        loops (``map``) when none of the ports is an ESXi trunk (``_leaving_keyed``): 10,000 ports deleted at once
        took ~76 Python bytecodes each here."""
        index = self.index
        shown = index.shown.get(session)
        if not shown:
            return []
        entries = list(chain.from_iterable(map(shown.get, names, repeat(()))))  # (kind, key) of each port's sightings
        if "trunk" not in map(_FIRST, entries):
            return _leaving_keyed(index, self.locations, list(map(_SECOND, entries)))
        return self._leaving_one_by_one(session, names, shown)

    def _leaving_one_by_one(self, session: str, names: list[str], shown: dict) -> list:
        """``_leaving_vports`` port by port (an ESXi trunk among them: its sightings are of another kind)."""
        index, locations = self.index, self.locations
        sightings, vport_at, static_of, out = index.sightings, index.vport_at, index.static_of, []
        for name in names:
            for kind, key in shown.get(name, ()):
                if kind != "key":
                    continue
                spot, bkey = key
                vid = vport_at.get(bkey)
                loc = locations.get(vid) if vid is not None else None
                if loc is not None and loc.session == session and loc.port == name and loc.vlan is None and \
                        len(sightings.get(bkey, ())) == 1 and vid not in static_of:
                    out.append(vid)
        return out


def _leaving_keyed(index, locations: dict, keys: list) -> list:
    """The vports of the sightings ``keys`` (``(spot, binding key)``, spot = (session, port, vlan)) located at that
    very spot, with no VLAN, shown there alone and without an ESXi static binding, in order: ``_leaving_one_by_one``'s
    rule, in C loops. A located vport shown by one spot alone (and no static binding) is located at that spot
    (``BindingIndex.locate``), so its location's (session, port, vlan) is the spot."""
    spots, bkeys = list(map(_FIRST, keys)), list(map(_SECOND, keys))
    vids = list(map(index.vport_at.get, bkeys))
    locs = list(map(locations.get, vids))  # (None for None: a key no vport has)
    spots, bkeys, vids, locs = (list(compress(column, locs)) for column in (spots, bkeys, vids, locs))
    sightings, static_of = index.sightings, index.static_of
    keep = map(all, zip(map(eq, map(_AT, locs), spots),  # located at the spot
                        map(is_, map(_THIRD, spots), repeat(None)),  # without a VLAN
                        map(eq, map(len, map(sightings.get, bkeys, repeat(()))), repeat(1)),  # shown there alone
                        map(not_, map(static_of.__contains__, vids))))  # no static binding
    return list(compress(vids, keep))


def _chunks(count: int) -> list[tuple[int, int]]:
    """(start, end) of the chunks of ``count`` names told in turn: ``LEAVING_LEAD`` first, then ``LEAVING_CHUNK`` each."""
    bounds = [0, *range(min(LEAVING_LEAD, count), count, LEAVING_CHUNK), count] if count else []
    return list(zip(bounds, bounds[1:]))
