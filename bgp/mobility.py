"""MAC mobility (RFC 7432 section 15): the sequence number Canopy announces for each local MAC.

A MAC that appears here while a peer announces it gets that sequence + 1; a local move (between two of our VTEPs)
increments ours; a peer with a higher number (or the same number from a lower VTEP IP), or one announcing it sticky
(static, section 15.2), wins and we stop announcing it. Moves are counted by ``bgp.duplicates``: a MAC that moves too
often is flagged a duplicate, not announced, its number frozen.

Work per programming pass: what changed, not every local MAC. ``Mobility.update`` keeps what it last saw (each local
endpoint's (subnet, MAC) and session, each local MAC's VTEP IP, our VTEP IPs counted, the VTEPs peers announce each
local MAC at) and takes again only the MACs whose inputs changed, as change feeds (controller/feed.py) tell it: the
local endpoints and tunnel IPs the LiveView changed (``View.local_feeds``), the (subnet, MAC) pairs a delta of State's
remote index reached (``RemoteIndex.feeds``), the duplicate flags set or cleared (``DuplicateMacs.feeds``), and the
MACs peers announce at a VTEP that became or stopped being one of ours. A View or remote index it does not follow yet
(the first pass, a View built again from scratch, a table given whole, a View or table without feeds) is walked whole
once. Taking again a MAC whose inputs did not change changes nothing, so the result is the full walk's
(tests/unit/test_mobility_oracle.py holds the full walk as it was and checks the two agree).
"""

from __future__ import annotations

import logging
import weakref
from collections import Counter, deque
from itertools import compress, filterfalse, repeat
from operator import attrgetter, itemgetter, not_

from bgp.duplicates import DuplicateMacs
from bgp.importer import beats
from controller.keyed import add_all, add_to, discard_from, remove_all
from controller.loglimit import log_limited, warn_limited
from controller.pacer import NEVER, Pacer, runs
from controller.remote import RemoteMac

log = logging.getLogger("canopy.bgp")
_FIRST, _SECOND = itemgetter(0), itemgetter(1)
_KEY, _SESSION = attrgetter("subnet_id", "mac"), attrgetter("session")  # an endpoint's (subnet, MAC) pair, session
_NONE = frozenset()  # no endpoints on a session, a MAC heard at no VTEP (shared: never changed)


class Mobility:
    """Sequence numbers of the MACs Canopy announces, kept between rounds (runtime state, not policy)."""

    def __init__(self, duplicates: DuplicateMacs | None = None):
        self.duplicates = duplicates if duplicates is not None else DuplicateMacs()  # RFC 7432 section 15.1
        self.entries: dict[tuple[str, str], tuple[int, str]] = {}  # (subnet, MAC) -> (seq, our VTEP IP)
        self.lost: set[tuple[str, str]] = set()  # (subnet, MAC) local but not announced: a peer's route wins
        self.lost_to_sticky: set[tuple[str, str]] = set()  # of those, the ones a peer announces sticky (static)
        self.seqs: dict[tuple[str, str], int | None] = {}  # what ``update`` returns, kept from pass to pass
        self._flag_feed = self.duplicates.feeds.follow()
        self.updates = 0  # updates that completed (``last_update``)
        self._forget()

    def _forget(self) -> None:
        """Forget what the last update saw (see the module docstring): the next walks every local MAC, and takes every
        MAC of ``entries`` and ``seqs`` again (the results kept)."""
        self._eps: dict[str, tuple] = {}  # local endpoint id -> ((subnet, MAC), session)
        self._by_session: dict[str, set[str]] = {}  # session -> its local endpoint ids
        self._keyed: dict[tuple, set[str]] = {}  # (subnet, MAC) -> its local endpoint ids (one: policy, derive)
        self._ours: dict[tuple, str] = {}  # local (subnet, MAC) whose session has a tunnel IP -> that IP
        self._our_vteps: dict[str, int] = {}  # tunnel IP -> local MACs there
        self._heard: dict[tuple, frozenset] = {}  # local (subnet, MAC) -> the VTEP IPs peers announce it at
        self._heard_at: dict[str, set] = {}  # VTEP IP -> the local (subnet, MAC) peers announce there
        self._view = self._remote = _unfollowed  # () -> the View / remote index followed (weakly), or None
        self._view_feed = self._remote_feed = None
        self._fed = None  # ``fed`` of the update under way
        self.taken: set | None = None  # the (subnet, MAC) pairs the last update took again (None: every one); only
        # those may have another ``seqs`` entry than before it (bgp/originator.py takes their routes again)
        self.fed: set | None = None  # the local endpoint ids the View's feed named to the last update (None: it
        # walked every one): bgp/originator.py reads them instead of walking a feed of its own (read, not changed)

    def last_update(self, view) -> int | None:
        """The number of the last update (``updates``) when it completed with ``view``, else None. ``taken``, ``fed`` and
        the index (``endpoints_of``, ``endpoints_on``) tell of that update of that View only: bgp/originator.py reads them
        only right after the update that follows the one it read last."""
        return self.updates if self._view() is view else None

    def endpoints_of(self, keys) -> set:
        """The ids of the View's local endpoints of the (subnet, MAC) pairs ``keys`` as of the last update."""
        return set().union(*filter(None, map(self._keyed.get, keys)))  # (in C: 10,000 MACs gone)

    def endpoints_on(self, session) -> set | frozenset:
        """The ids of the View's local endpoints on ``session`` as of the last update (read, not changed)."""
        return self._by_session.get(session, _NONE)

    def counts(self) -> dict:
        """{"not_announced": local MACs not announced because a peer's route wins, "sticky": of those, the ones a
        peer announces sticky} (GET /v1/bgp/peers ``mobility``, /metrics): a peer announcing many local MACs
        sticky takes them all away from Canopy's announcements, and its warnings are rate limited."""
        return {"not_announced": len(self.lost), "sticky": len(self.lost_to_sticky),
                "duplicate": len(self.duplicates.flagged)}

    def update(self, view, remote, pacer: Pacer = NEVER) -> dict:
        """(subnet id, MAC) -> sequence number to announce, or None where a peer's route wins, for every local MAC
        whose session has a tunnel IP: ``seqs``, changed in place by the next update. ``remote``: State's RemoteIndex
        or a RemoteTable (``macs_at(subnet, MAC)``: the remote locations of one MAC). ``pacer`` is ticked per local
        endpoint, per MAC still local (``_ours_again``) and per MAC taken again; ``view`` and ``remote`` must not
        change during its pauses (the programming loop's View, and State's index, which only the same loop's import
        changes), and no other caller may update this Mobility meanwhile (one programming loop; a vport bound
        meanwhile reads only ``entries`` and the flags: bgp/early.py). Flags set or cleared meanwhile (a DELETE) are
        taken at the next update (the DELETE wakes a pass). An update that raises is followed by a whole walk."""
        try:
            return self._update(view, remote, pacer)
        except BaseException:  # what it took from the feeds is lost, and what it saw may be half changed (an
            self._forget()  # endpoint taken in, its old MAC not yet): the next update walks everything afresh
            raise

    def _update(self, view, remote, pacer: Pacer) -> dict:
        endpoints, heard = self._changes(view, remote)
        self.duplicates.prune()
        flags = self._flag_feed.take()
        moved, vteps = self._locals(view, endpoints, pacer)
        if endpoints is None or heard is None or flags is None:  # everything: every MAC taken again
            keys = set(self._ours) | set(self.entries) | set(self.seqs) | moved
        else:
            keys = moved | heard | flags
            for ip in vteps:  # a VTEP became ours or stopped being: the MACs peers announce there
                keys |= self._heard_at.get(ip, set())
        self.taken = self.fed = None
        gone = keys.difference(self._ours)  # (C loops: 10,000 ports gone take no Python step each here)
        self._forget_keys(gone, pacer)
        for run in runs(pacer, list(keys - gone if gone else keys)):  # (a tick per MAC, in runs)
            self._take_all(run, remote)
            pacer.tick(len(run))
        if endpoints is not None and heard is not None and flags is not None:
            self.taken, self.fed = keys, self._fed
        self.updates += 1
        return self.seqs

    # ------------------------------------------------------------------ what changed
    def _changes(self, view, remote) -> tuple[set | None, set | None]:
        """(local endpoint ids, remote (subnet, MAC) pairs) changed since the last update; None: not known, all."""
        if self._view() is not view:
            self._view, self._view_feed = _follow(view, getattr(view, "local_feeds", None))
            endpoints = None
        else:
            endpoints = self._view_feed.take() if self._view_feed is not None else None
        self._fed = None
        if endpoints is not None:  # (the endpoints named, kept as ``fed``; those of a tunnel IP's session added)
            items = list(endpoints)  # (kind, id) pairs, sorted in C loops (10,000 ports gone: 10,000 named)
            tunnel = list(map("tunnel".__eq__, map(_FIRST, items)))
            ids = set(map(_SECOND, compress(items, map(not_, tunnel))))
            tunnels = list(map(_SECOND, compress(items, tunnel)))
            self._fed = endpoints = ids
            if tunnels:
                endpoints = set(ids)
                for session in tunnels:
                    endpoints |= self._by_session.get(session, _NONE)
        if self._remote() is not remote:
            self._remote, self._remote_feed = _follow(remote, getattr(remote, "feeds", None))
            heard = None
        else:
            heard = self._remote_feed.take() if self._remote_feed is not None else None
        return endpoints, heard

    def _locals(self, view, ids: set | None, pacer: Pacer) -> tuple[set, set]:
        """Take the local endpoints ``ids`` (None: every one, seen before or now) again; returns the (subnet, MAC)
        pairs whose local side may have changed and the tunnel IPs that became or stopped being ours."""
        if ids is None:
            ids = set(self._eps) | set(view.local)
        keys, eps, local, by_session, keyed = set(), self._eps, view.local, self._by_session, self._keyed
        for run in runs(pacer, list(filterfalse(local.__contains__, ids))):  # gone: no Python step each
            self._gone(run, keys)
            pacer.tick(len(run))
        for run in runs(pacer, list(filter(local.__contains__, ids))):  # (a tick per endpoint, in runs)
            olds = list(map(eps.pop, run, repeat(None)))
            if olds.count(None) == len(olds):  # all new here (10,000 ports bound): C loops
                self._new(run, list(map(local.__getitem__, run)), keys)
                pacer.tick(len(run))
                continue
            for eid, old in zip(run, olds):
                if old is not None:
                    discard_from(by_session, old[1], eid)
                    discard_from(keyed, old[0], eid)
                    keys.add(old[0])
                ep = local[eid]
                key = (ep.subnet_id, ep.mac)
                eps[eid] = (key, ep.session)
                add_to(by_session, ep.session, eid)
                add_to(keyed, key, eid)
                keys.add(key)
            pacer.tick(len(run))
        return keys, self._ours_again(view, keys, pacer)

    def _new(self, eids: list, endpoints: list, keys: set) -> None:
        """The endpoints ``eids`` (``endpoints`` theirs), none in the index, into it; their (subnet, MAC) pairs into
        ``keys``: what ``_locals`` does an endpoint at a time, in C loops."""
        pairs, sessions, keyed = list(map(_KEY, endpoints)), list(map(_SESSION, endpoints)), self._keyed
        self._eps.update(zip(eids, zip(pairs, sessions)))
        if len(set(sessions)) == 1:
            add_all(self._by_session, sessions[0], eids)
        else:
            deque(map(add_to, repeat(self._by_session), sessions, eids), maxlen=0)
        if keyed.keys().isdisjoint(pairs) and len(set(pairs)) == len(pairs):  # a MAC each, none held: a set each
            keyed.update(zip(pairs, map(set, zip(eids))))
        else:
            deque(map(add_to, repeat(keyed), pairs, eids), maxlen=0)
        keys.update(pairs)

    def _gone(self, eids: list, keys: set) -> None:
        """The endpoints ``eids``, no longer in the View, out of the index; their (subnet, MAC) pairs into ``keys``."""
        eps = self._eps
        olds = list(map(eps.pop, eids, repeat(None)))
        if None in olds:  # (ids never here)
            eids, olds = [e for e, old in zip(eids, olds) if old is not None], [old for old in olds if old is not None]
        macs = list(map(_FIRST, olds))
        keys.update(macs)
        remove_all(self._keyed, macs, eids)
        remove_all(self._by_session, list(map(_SECOND, olds)), eids)

    def _ours_again(self, view, keys: set, pacer: Pacer = NEVER) -> set:
        """``_ours`` again for the (subnet, MAC) pairs ``keys``; the tunnel IPs that became or stopped being ours.
        ``pacer`` ticked per MAC still local (10,000 ports bound: one unpaused stretch of 22-28 ms at load 6-13 in
        evpn_routes' announce; nothing reads ``_ours`` outside an update, and the entries change after this)."""
        vteps, ours, hops, keyed = set(), self._ours, {}, self._keyed
        gone = list(filterfalse(keyed.__contains__, keys))  # no local endpoint now: not ours (in C loops)
        for ip, n in Counter(filter(None, map(ours.pop, gone, repeat(None)))).items():
            if _count(self._our_vteps, ip, -n) == 0:
                vteps.add(ip)
        for run in runs(pacer, list(filter(keyed.__contains__, keys))):
            self._ours_run(view, run, hops, vteps)
            pacer.tick(len(run))
        return vteps

    def _ours_run(self, view, keys: list, hops: dict, vteps: set) -> None:
        """``_ours_again`` for a run of MACs still local (``hops``: session -> tunnel IP, the caller's)."""
        ours, keyed, eps = self._ours, self._keyed, self._eps
        for key in keys:
            ip = None
            for eid in sorted(keyed[key]):  # the last with a tunnel IP (one endpoint per MAC)
                session = eps[eid][1]
                hop = hops[session] if session in hops else hops.setdefault(session, view.tunnel_ip_of(session))
                ip = hop or ip
            old = ours.pop(key, None)
            if ip:
                ours[key] = ip
            if old != ip:
                if old and _count(self._our_vteps, old, -1) == 0:
                    vteps.add(old)
                if ip and _count(self._our_vteps, ip, 1) == 1:
                    vteps.add(ip)

    # ------------------------------------------------------------------ one MAC
    def _take(self, key, remote) -> None:
        """The sequence number (or None) of local MAC ``key`` (``_ours``) from its inputs now."""
        ip = self._ours[key]
        locations = remote.macs_at(*key)
        if locations or key in self._heard:  # (most local MACs: no peer has them, nothing to note)
            self._hear(key, locations)
        elsewhere = [m for m in locations if m.vtep_ip not in self._our_vteps]  # at our own VTEP: our route
        self.seqs[key] = self._seq(key, ip, elsewhere[-1] if elsewhere else None)

    def _take_all(self, keys: list, remote) -> None:
        """``_take`` of each of the local MACs ``keys``; when none is held, flagged, heard of or at a peer (new local
        MACs: 10,000 ports bound), what ``_take`` does for each (sequence number 0) in C loops."""
        entries = self.entries
        if any(map(remote.macs_at, map(_FIRST, keys), map(_SECOND, keys))) or not entries.keys().isdisjoint(keys) \
                or not self._heard.keys().isdisjoint(keys) or any(map(self.duplicates.flagged.__contains__, keys)):
            for key in keys:
                self._take(key, remote)
            return
        entries.update(zip(keys, zip(repeat(0), map(self._ours.__getitem__, keys))))
        self._not_lost(keys)
        self.seqs.update(zip(keys, repeat(0)))

    def _forget_keys(self, keys, pacer: Pacer) -> None:
        """The MACs ``keys``, not local (any more): forgotten, with the VTEPs peers announced them at."""
        seqs, entries, heard = self.seqs, self.entries, self._heard
        for run in runs(pacer, list(keys)):  # (10,000 ports gone: C loops, no Python step each)
            for key in filter(heard.__contains__, run) if heard else ():
                self._hear(key, ())
            deque(map(seqs.pop, run, repeat(None)), maxlen=0)
            held = list(compress(run, map(entries.pop, run, repeat(None))))  # (an entry: a (seq, ip) pair)
            self._not_lost(held)
            pacer.tick(len(run))

    def _not_lost(self, keys: list) -> None:
        """The MACs ``keys`` out of ``lost`` and ``lost_to_sticky``, each looked at only if it holds any (most often
        neither does: a set's ``difference_update`` hashes every key of a list, a (subnet, MAC) tuple's hash is not
        kept, even when the set is empty)."""
        for lost in (self.lost, self.lost_to_sticky):
            if lost:
                lost.difference_update(keys)

    def _hear(self, key, locations) -> None:
        """Note the VTEPs peers announce ``key`` at (``_heard_at``: which MACs a VTEP becoming ours reaches): called
        when some do, or did."""
        ips = frozenset(m.vtep_ip for m in locations) if locations else _NONE  # (a withdrawn MAC: heard nowhere)
        before = self._heard.pop(key, _NONE)
        if ips:
            self._heard[key] = ips
        for ip in before - ips:
            discard_from(self._heard_at, ip, key)
        for ip in ips - before:
            add_to(self._heard_at, ip, key)

    def _seq(self, key, ip: str, other: RemoteMac | None) -> int | None:
        """The sequence number of local MAC ``key`` at our VTEP ``ip``, ``other`` the peer's location of it not at
        one of our VTEPs (the last, if several); None: not announced (a peer wins, or a duplicate)."""
        duplicates = self.duplicates
        if key in duplicates:  # not announced, its sequence number frozen, until cleared
            return None
        prev = self.entries.get(key)
        moved = None
        if prev is None:  # new here: if a peer has it, the MAC moved to us
            seq = other.seq + 1 if other else 0
            moved = "into this controller" if other else None
        elif prev[1] != ip:  # moved between our own VTEPs
            seq = max(prev[0], other.seq if other else -1) + 1
            moved = "between two of its VRS"
        else:
            seq = prev[0]
        self.entries[key] = (seq, ip)
        if other is not None and beats(other, RemoteMac(key[0], key[1], (), ip, seq=seq)):
            if key not in self.lost and not other.sticky:
                moved = f"away, to {other.vtep_ip}"
            if moved and duplicates.moved(key, moved):
                self.lost.discard(key)
                self.lost_to_sticky.discard(key)
                return None
            if key not in self.lost or (other.sticky and key not in self.lost_to_sticky):
                _log_lost(key, other, seq)
            self.lost.add(key)
            (self.lost_to_sticky.add if other.sticky else self.lost_to_sticky.discard)(key)
            return None
        self.lost.discard(key)
        self.lost_to_sticky.discard(key)
        return None if moved and duplicates.moved(key, moved) else seq


def _unfollowed():
    """What a Mobility follows before its first update: nothing."""
    return None


def _follow(obj, feeds):
    """(a weak reference to ``obj``, or a function giving None when it cannot have one; its feed, or None)."""
    try:
        ref = weakref.ref(obj)
    except TypeError:  # (a stand-in object of a test): walked whole every time
        return _unfollowed, None
    return ref, feeds.follow() if feeds is not None else None


def _count(counts: dict, key, step: int) -> int:
    """``counts[key] += step``, the entry gone at 0; the count now."""
    n = counts.get(key, 0) + step
    if n:
        counts[key] = n
    else:
        del counts[key]
    return n


def _log_lost(key, other, seq) -> None:
    """A peer's route for one of our MACs wins: a sticky one is a conflict to alert the operator to (RFC 7432
    section 15.2: a static MAC cannot move), a higher sequence number a move. Both lines are rate limited per
    peer (``controller.loglimit``): a peer announcing every local MAC sticky, or every one with a higher sequence
    number, logs one line, not one per MAC (``Mobility.counts`` has the number)."""
    if other.sticky:
        warn_limited(log, ("sticky", other.peer), "MAC %s of subnet %s is announced static (sticky) at %s by peer %s, "
                     "and is also a local port here: not announcing ours (a duplicate MAC, or the static one is "
                     "wrong; GET /v1/bgp/peers mobility counts them)", key[1], key[0], other.vtep_ip, other.peer)
    else:
        log_limited(log, logging.INFO, ("outbid", other.peer), "MAC %s of subnet %s is at %s with sequence %d (ours "
                    "%d) from peer %s: not announcing ours", key[1], key[0], other.vtep_ip, other.seq, seq, other.peer)
