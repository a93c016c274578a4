"""A subnet's endpoints in the View's order (``View.by_subnet``), kept by ``LiveView`` (controller/viewdelta.py inherits
``SubnetPlaces``): its located vports sorted by id (``vports_in`` holds their ids), then its hardware VTEP endpoints
(``hw``) and its EVPN endpoints (``ev``), in derive's order.

A vport endpoint comes or goes by a search of its subnet's sorted ids (``_place``). Within the pass's walk of the
vports (``LiveView._vport_eps``) those leaving are noted per subnet and taken out together at its end, or before one
comes to the same subnet (``_unplace``: one filtering copy of the lists when many leave): 10,000 vports leaving one
by one were 10,000 searches and deletions from the front of two lists of 10,000, each moving the rest. In the walk's
pauses ``by_subnet`` may still hold vports whose endpoints went (as its hardware VTEP and EVPN tails wait for
``_by_subnet``): the View is whole again when the pass ends. What reads it in those pauses reads the View as it is
then (a REST trace or a hardware VTEP's rows shown, a gratuitous ARP to a switch that connected or took this node
as master: as to the vports the walk has not reached yet); nothing read there is kept past the pass (a domain's FIB
read in a pause is made, not kept: ``LazyFib.passing``, controller/viewroutes.py), and the compile and the EVPN
routes read the View after the pass.
"""

from __future__ import annotations

import bisect
from itertools import compress, repeat
from operator import attrgetter, not_

_VPORT_ID = attrgetter("vport_id")


class SubnetPlaces:
    """The ``by_subnet`` part of ``LiveView`` (see the module docstring)."""

    def _unplace(self, sid, gone: set) -> None:
        """The vports ``gone`` out of their subnet's sorted vports and by_subnet: one by one when few, else one
        filtering copy (C loops) of both lists: 10,000 vports leaving one by one were 10,000 searches and deletions
        from the front of the lists (each moving the rest of them)."""
        ids = self.vports_in[sid]
        if len(gone) * 8 <= len(ids):
            for vid in sorted(gone):
                self._take_out(sid, bisect.bisect_left(ids, vid))
            return
        v = self.view
        keep = list(map(not_, map(gone.__contains__, ids)))
        eps = v.by_subnet[sid]
        kept, eps = list(compress(ids, keep)), list(compress(eps, keep)) + eps[len(ids):]
        if kept:
            self.vports_in[sid] = kept
        else:
            del self.vports_in[sid]
        if eps:
            v.by_subnet[sid] = eps
        else:
            del v.by_subnet[sid]

    def _take_out(self, sid, at: int) -> None:
        """The vport at ``at`` out of its subnet's sorted vports and by_subnet."""
        v, ids, eps = self.view, self.vports_in[sid], self.view.by_subnet[sid]
        del ids[at]
        del eps[at]
        if not ids:
            del self.vports_in[sid]
        if not eps:
            del v.by_subnet[sid]

    def _place(self, ep, remove=False):
        """A vport endpoint into (or out of) its subnet's sorted vports and by_subnet; within ``_vport_eps`` one
        leaving is noted (``leaving``) and taken out with the others (``_unplace``), before one comes to its subnet."""
        v, sid, vid = self.view, ep.subnet_id, ep.vport_id
        leaving = self.leaving
        if leaving is not None:
            if remove:
                leaving.setdefault(sid, set()).add(vid)
                return
            if sid in leaving:
                self._unplace(sid, leaving.pop(sid))
        ids = self.vports_in.setdefault(sid, [])
        at = bisect.bisect_left(ids, vid)
        eps = v.by_subnet.setdefault(sid, [])
        if remove:
            self._take_out(sid, at)
        else:
            ids.insert(at, vid)
            eps.insert(at, ep)

    def _place_all(self, sid, eps: list) -> None:
        """``_place(ep)`` for each of the vport endpoints ``eps`` coming to subnet ``sid`` (none placed there yet,
        sorted by id): where each goes found by C loops; when all go to one place (ids after the subnet's last, most
        often), put in there by one slice assignment, else one by one from the last (each at its place found)."""
        leaving = self.leaving
        if leaving is not None and sid in leaving:
            self._unplace(sid, leaving.pop(sid))
        v = self.view
        ids, held = self.vports_in.setdefault(sid, []), v.by_subnet.setdefault(sid, [])
        vids = list(map(_VPORT_ID, eps))
        at = list(map(bisect.bisect_left, repeat(ids), vids))
        if at.count(at[0]) == len(at):
            ids[at[0]:at[0]] = vids
            held[at[0]:at[0]] = eps
            return
        for where, vid, ep in zip(reversed(at), reversed(vids), reversed(eps)):
            ids.insert(where, vid)
            held.insert(where, ep)

    def _by_subnet(self):
        """by_subnet: the vports (kept in place by _place), then the subnet's hardware VTEP and EVPN endpoints."""
        v = self.view
        for sid in self.tails:
            eps = v.by_subnet.get(sid, [])[:len(self.vports_in.get(sid, ()))] + self.hw.get(sid, []) + \
                self.ev.get(sid, [])
            if eps:
                v.by_subnet[sid] = eps
            else:
                v.by_subnet.pop(sid, None)
