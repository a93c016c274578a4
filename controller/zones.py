"""Conntrack zones of the policed vports of each switch (controller/security.py derives the policy; openflow/acl.py
compiles a vport's zone into its flows).

``allocate_zones`` gives a switch's vport keys their zones, a function of the set of keys alone (a restarted
controller computes the same ones); ``Local`` keeps, per switch, its policed vports, the ACLs they use and their
zones, as vports are put and dropped (controller/viewowners.py), and names the vports whose zone moved. A switch
whose keys all are their own zones takes only the keys that came and went; one with ESXi trunk keys is allocated
again whole, paced (``pacer``: the programming pass's), as is the walk of its vports for those whose zone moved or
that got none (branch perf47: a change on a switch past the zone limit was one stretch of 13.4 million bytecodes).
"""

from __future__ import annotations

import logging
import zlib
from bisect import bisect_left
from collections import Counter, defaultdict
from itertools import compress, filterfalse, repeat
from operator import add, and_, ne, not_

from controller.pacer import C_PER_UNIT, NEVER, Pacer, c_runs, c_ticks
from openflow.pacedsort import sorted_paced

ZONE_LIMIT = 0xFF00  # vport zones are 1..0xFEFF; 0xFF00-0xFFFF are left to other stages (docs/pipeline.md)
LOGGED_UNZONED = 20  # vports named in the line that says a switch has policed vports without a zone
WALK_MASK = 7  # a key's walk over taken zones ticks the pacer every 8 zones walked
KEYS_MASK = 7  # keys placed between two ticks of the pacer (of 8 units: a tick a key cost a third of the placing)

_log = logging.getLogger("controller.security")  # (the name operators know these lines by: from before this module)


def allocate_zones(keys, held=None, pacer: Pacer = NEVER) -> dict[int, int]:
    """Conntrack zones for the policed vports of one switch, by vport key (ofport, or ofport << 12 | VLAN on an
    ESXi trunk): a function of the set of keys alone, so a restarted controller computes the same zones and
    conntrack entries stay valid. A key below ZONE_LIMIT is its own zone (no two keys of a switch are equal).
    The others (trunks with ofport >= 16) each take the first zone not taken, from a hash of the key upwards,
    in key order: never a zone another vport of the switch has. Such a vport's zone changes only when a vport
    arriving on the switch takes it (a plain port whose ofport is that zone, or a lower key whose probe meets it), or
    one leaving frees a zone its probe passed.

    Past 65,279 keys there are not zones enough: the keys left get none (not in the answer; docs/limits.md). Then
    the trunk keys that have a zone in ``held`` (the switch's zones before this change) keep it, unless a plain port
    is that zone, and the others take what is left in key order: a vport arriving on a full switch is the one
    refused, the established ones keep their zones and connections.

    ``pacer`` is ticked per key hashed or kept (every ``KEYS_MASK + 1``), and per ``C_PER_UNIT`` keys sorted or placed
    in C (openflow/pacedsort.py, ``c_runs``)."""
    ordered = sorted_paced(list(keys), c_ticks(pacer, C_PER_UNIT), int)
    start, end = bisect_left(ordered, 1), bisect_left(ordered, ZONE_LIMIT)
    own, left = ordered[start:end], ordered[:start] + ordered[end:]
    zones: dict[int, int] = {}
    for a, b in c_runs(pacer, len(own)):
        zones.update(zip(own[a:b], own[a:b]))
    taken = set(own)
    probed = hashed_zones(left, 1, ZONE_LIMIT - 1, taken, pacer)
    if len(probed) < len(left) and held:
        kept = {}
        for n, key in enumerate(left, 1):
            zone = held.get(key)
            if zone is not None and zone not in taken:
                kept[key] = zone
                taken.add(zone)
            if not n & KEYS_MASK:
                pacer.tick(KEYS_MASK + 1)
        probed = hashed_zones(list(filterfalse(kept.__contains__, left)), 1, ZONE_LIMIT - 1, taken, pacer)
        probed.update(kept)
    zones.update(probed)
    return zones


def hashed_zones(keys, first, span, taken=frozenset(), pacer: Pacer = NEVER) -> dict[int, int]:
    """Zones in ``first .. first + span - 1`` for ``keys``, in the order given: each takes the first zone not in
    ``taken`` nor given to an earlier key, from a hash of the key upwards (wrapping). Keys left when the range is
    full get none. A key whose hash meets a run of zones taken skips it at once (``after``: each taken zone points
    at a zone further on, paths shortened as they are walked), not zone by zone: a run of 8,000 plain ports' zones
    was walked by every trunk vport hashed into it (0.8 s for 31,000 keys). ``pacer`` is ticked per key (every
    ``KEYS_MASK + 1`` keys), every ``WALK_MASK + 1`` zones a key's walk passes (a range nearly full: a walk of up to
    the whole range, 300,000 bytecodes past the zone limit), and per ``C_PER_UNIT`` zones taken (``c_runs``)."""
    taken = set(taken)
    count, last = len(taken), first + span - 1
    after, zones = {}, list(taken)
    for a, b in c_runs(pacer, len(zones)):
        part = zones[a:b]
        part = list(compress(part, map(and_, map(first.__le__, part), map(last.__ge__, part))))
        after.update(zip(part, map(add, part, repeat(1))))
    if last in after:
        after[last] = first  # (wrapping)
    out = {}
    for n, key in enumerate(keys, 1):
        if count >= span:
            break
        if not n & KEYS_MASK:
            pacer.tick(KEYS_MASK + 1)
        zone, walked = first + zlib.crc32(key.to_bytes(8, "big")) % span, []
        while zone in after:
            walked.append(zone)
            zone = after[zone]
            if not len(walked) & WALK_MASK:
                pacer.tick()  # (a long walk: a range nearly full, whose free zones are far apart)
        if len(walked) > WALK_MASK:
            after.update(zip(walked, repeat(zone)))  # (C: a long walk's zones, each pointing past it now)
        else:
            for passed in walked:
                after[passed] = zone
        out[key] = zone
        after[zone] = first if zone == last else zone + 1
        count += 1
    return out


class Local:
    """Per switch: its policed vports (id -> key), how many of them use each ACL, and their zones by key; and per
    ACL the switches using it. ``put``/``drop`` one vport; ``zones_changed`` allocates again on the switches whose
    keys changed and names the vports whose zone changed: a switch whose keys all are their own zones (no trunk key
    probing, none coming or going) only takes and drops the keys that came and went, as many steps as they; any
    other is allocated again whole (``allocate_zones``)."""

    def __init__(self):
        self.ports: dict[str, dict[str, int]] = defaultdict(dict)  # session -> vport id -> key
        self.acls: dict[str, Counter] = defaultdict(Counter)  # session -> ACL id -> policed vports using it
        self.acl_on: dict[str, Counter] = defaultdict(Counter)  # ACL id -> session -> policed vports using it
        self.zones: dict[str, dict[int, int]] = {}  # session -> key -> zone
        self.at: dict[str, tuple] = {}  # vport id -> (session, key, ACL ids)
        self.keys: dict[str, Counter] = defaultdict(Counter)  # session -> key -> policed vports with it
        self.hashed: dict[str, int] = Counter()  # session -> keys present without a zone of their own (trunks)
        self._keys_changed: dict[str, set[int]] = defaultdict(set)  # session -> keys that came or went
        self.unzoned: dict[str, frozenset[int]] = {}  # session -> policed keys without a zone (allocate_zones)
        self.refused_vports: dict[str, set[str]] = {}  # session -> policed vports whose key is in ``unzoned``

    @classmethod
    def of(cls, endpoints, ports) -> "Local":
        """From scratch: every policed vport endpoint (bound on a VRS, with a key)."""
        out = cls()
        for ep in endpoints:
            port = ports.get(ep.vport_id)
            if port is not None and ep.key and ep.kind == "vport":
                out.put(ep.vport_id, ep.session, ep.key, port)
        out.zones_changed()
        return out

    def put(self, vid, session, key, port) -> None:
        acls = tuple(a for a, _ in port.acls)
        self.at[vid] = (session, key, acls)
        self.ports[session][vid] = key
        for aid in acls:
            self.acls[session][aid] += 1
            self.acl_on[aid][session] += 1
        if key in self.unzoned.get(session, ()):
            self.refused_vports.setdefault(session, set()).add(vid)
        keys = self.keys[session]
        keys[key] += 1
        if keys[key] == 1:
            self._keys_changed[session].add(key)
            if not 0 < key < ZONE_LIMIT:
                self.hashed[session] += 1

    def drop(self, vid) -> tuple | None:
        """Forget a vport; returns where it was (session, key, ACL ids), or None."""
        was = self.at.pop(vid, None)
        if was is None:
            return None
        session, key, acls = was
        if session in self.refused_vports:
            self.refused_vports[session].discard(vid)
        del self.ports[session][vid]
        if not self.ports[session]:
            del self.ports[session]
        for aid in acls:
            for counts, k in ((self.acls[session], aid), (self.acl_on[aid], session)):
                counts[k] -= 1
                if counts[k] <= 0:
                    del counts[k]
            if not self.acl_on[aid]:
                del self.acl_on[aid]
        if not self.acls[session]:
            del self.acls[session]
        keys = self.keys[session]
        keys[key] -= 1
        if keys[key] <= 0:
            del keys[key]
            self._keys_changed[session].add(key)
            if not 0 < key < ZONE_LIMIT:
                self.hashed[session] -= 1
                if not self.hashed[session]:
                    del self.hashed[session]
            if not keys:
                del self.keys[session]
        return was

    def zones_changed(self, pacer: Pacer = NEVER) -> dict[str, set[str]]:
        """Allocate zones again on the switches whose policed keys changed; returns session -> vports still there
        whose zone is not what it was. A switch allocated again whole is paced (``pacer``, ticked per key and per
        vport looked at): its zones, refused vports and what is logged change together, after the last pause, and
        nothing else changes this ``Local`` meanwhile (only the pass that calls this puts and drops)."""
        out = {}
        for session, came_or_went in self._keys_changed.items():
            present, old = self.keys.get(session, {}), self.zones.get(session, {})
            was_unzoned = self.unzoned.get(session)
            if was_unzoned and not was_unzoned <= present.keys():  # a vport without a zone left (no zone changed)
                self._note_unzoned(session, present, old, was_unzoned, pacer, frozenset(was_unzoned & present.keys()))
            came_or_went = {key for key in came_or_went if (key in present) != (key in old)}
            if not came_or_went:
                continue  # (a vport dropped and put again with its key)
            if not self.hashed.get(session) and all(0 < key < ZONE_LIMIT for key in came_or_went):
                for key in came_or_went:  # (no trunk key before nor now: every key is its own zone, none moves)
                    if key in present:
                        old[key] = key
                    else:
                        del old[key]
                self.zones[session] = old
            else:
                ports, was_unzoned = self.ports.get(session, {}), self.unzoned.get(session, frozenset())
                new = allocate_zones(present, old, pacer)
                keys = set(_picked(list(old), list(old.values()), lambda ks, zs: map(ne, map(new.get, ks), zs), pacer))
                keys.update(new.keys() & was_unzoned)  # (keys of old whose zone changed or went, refused ones zoned)
                moved = set(_vports_with(ports, keys, pacer))
                if moved:
                    out[session] = moved
                self._note_unzoned(session, present, new, was_unzoned, pacer, zoned=new)
            if not self.zones[session]:
                del self.zones[session]
        self._keys_changed = defaultdict(set)
        return out

    def _note_unzoned(self, session, present, zones, was, pacer, unzoned=None, zoned=None) -> None:
        """Keep and log once (when it changes) which policed keys of the switch got no zone (``unzoned``: known), and
        their vports (``refused_vports``, kept by ``put`` and ``drop`` until the keys change again); ``zoned``: the
        switch's new zones, made its own with them (after the pauses)."""
        if unzoned is None:
            unzoned = frozenset(_picked(list(present), (), lambda ks, _: map(not_, map(zones.__contains__, ks)),
                                        pacer)) if len(zones) < len(present) else frozenset()
        vids = sorted(_vports_with(self.ports.get(session, {}), unzoned, pacer)) if unzoned != was and unzoned else []
        if zoned is not None:
            self.zones[session] = zoned
        if unzoned == was:
            return
        self.refused_vports.pop(session, None)
        if unzoned:
            self.unzoned[session] = unzoned
            self.refused_vports[session] = set(vids)
            more = f" and {len(vids) - LOGGED_UNZONED:,} more" if len(vids) > LOGGED_UNZONED else ""
            _log.error("switch %s: %d policed vports got no conntrack zone (over %s on one switch), their IP "
                       "traffic is dropped: %s%s", session, len(vids), f"{ZONE_LIMIT - 1:,}",
                       ", ".join(vids[:LOGGED_UNZONED]), more)
        else:
            del self.unzoned[session]
            _log.warning("switch %s: every policed vport has a conntrack zone again", session)

    def zone(self, session, key) -> int | None:
        """The key's conntrack zone; None: none left for it (``unzoned``)."""
        return self.zones[session].get(key)

    def refused(self) -> dict[str, list[str]]:
        """Per switch (session) the policed vports without a conntrack zone, sorted (GET /v1/status, /metrics): as
        many steps as they, not a walk of the switch's vports (``refused_vports``)."""
        return {session: sorted(self.refused_vports.get(session, ())) for session in self.unzoned}



def _picked(names: list, values, selectors, pacer: Pacer) -> list:
    """The ``names`` picked by ``selectors(names[a:b], values[a:b])`` (truths, one a name, as ``compress`` takes), in
    C loops a run at a time (``c_runs``)."""
    out: list = []
    for a, b in c_runs(pacer, len(names)):
        part = names[a:b]
        out += compress(part, selectors(part, values[a:b]))
    return out


def _vports_with(ports: dict, keys, pacer: Pacer) -> list:
    """The vports of ``ports`` (vport id -> key) whose key is in ``keys`` (``_picked``: C loops, paced)."""
    return _picked(list(ports), list(ports.values()), lambda _ids, held: map(keys.__contains__, held), pacer)


def refused_zones(view) -> dict[str, list[str]]:
    """Per switch (session) the policed vports the View's switches have no conntrack zone for (``Local.refused``)."""
    local = view.security.local if view is not None and view.security is not None else None
    return local.refused() if local is not None else {}


def zones_status(view) -> dict:
    """GET /v1/status ``programmer.vports_without_zone``: how many policed vports have no conntrack zone, and per
    switch (session) how many and the first LOGGED_UNZONED of them."""
    refused = refused_zones(view)
    return {"count": sum(map(len, refused.values())),
            "switches": {session: {"count": len(vids), "vports": vids[:LOGGED_UNZONED]}
                         for session, vids in sorted(refused.items())}}
