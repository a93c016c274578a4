"""``bgp.evpn.originate`` by delta: the routes Canopy announces, kept from publish to publish and taken again only
for what changed (issue 15: a one-port change among 10,000 local endpoints walked all of them, ~4.3 million bytecodes
a publish).

What each route depends on, and how a change of it is found:

- a local endpoint (``view.local``): the View's change feed (``View.local_feeds``, controller/feed.py), as MAC
  mobility's update read it (``Mobility.fed``: one walk of the feed for both);
- its MAC's mobility sequence number: the (subnet, MAC) pairs ``Mobility.update`` took again (``Mobility.taken``);
  their endpoints, and those of a session whose facts changed, are read from MAC mobility's index of the same View
  (``Mobility.endpoints_of``, ``endpoints_on``: one index of the local endpoints, not two);
- its session's tunnel IP and, on a VRS, Router's MAC: compared per session holding local endpoints, every update;
- its subnet (the policy's RD and export RTs, the View's ``SubnetInfo``, whether the View has the subnet at all,
  the hardware VTEPs bound to it and their tunnel IPs, its domain's export RTs): compared per subnet, every update.

A changed session or subnet takes again every local endpoint there (and a subnet's type 3 routes). Type 3 routes are
kept per subnet and tunnel IP as the sets of what stands behind them (local endpoints, bound VTEP sessions): an
endpoint moving changes the two sets it leaves and joins. Type 5 routes (subnet prefixes, static routes, floating IPs)
are made again every update (they grow with the subnets, static routes and switches, not the endpoints) and compared.

A View not followed yet (the first update, a View built again from scratch, one without feeds), a feed that overflowed,
``Mobility`` having walked everything or not updated exactly once with this View since the last update read it
(``Mobility.last_update``), or an update that raised: everything is taken from scratch. Two sources giving
routes of one key are not kept by delta: ``update`` raises ``Clash`` (after forgetting everything) and the caller uses
the full ``originate`` (a policy's RDs are unique, and the keys that go are removed before those that come are added: a
subnet deleted and another given its RD in one pass is no clash). tests/unit/test_originator_oracle.py checks the
routes and what stands behind them against ``originate`` after every step of random event sequences.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Iterable
from itertools import chain, compress, islice, repeat
from operator import add, and_, attrgetter, itemgetter, not_

from bgp.evpn import _floating_routes, _prefix_routes, _route, _rts, mac_ip_routes
from bgp.routes import InclusiveMulticastRoute
from controller.keyed import add_all, add_to, remove_all
from controller.pacer import NEVER, Pacer, runs


_FIRST, _SECOND, _THIRD, _KIND = itemgetter(0), itemgetter(1), itemgetter(2), attrgetter("kind")
_SUBNET = attrgetter("subnet_id")
_FOURTH, _VPORT_ID = itemgetter(3), attrgetter("vport_id")
_FEW_GROUPS = 8  # type 3 groups of a run of endpoints dropped: at most these, each group's endpoints found in C
_NO_SUBNET = (None, None, False, (), None)  # the facts of a subnet nothing here has (its entry goes)


class Clash(Exception):
    """Two sources originate routes of one key: left to the full ``originate``."""


class _Group:
    """What stands behind one type 3 route (a subnet at one tunnel IP)."""

    __slots__ = ("vports", "others", "sessions")

    def __init__(self):
        self.vports: dict = {}  # endpoint id -> vport id, local vport endpoints
        self.others: set = set()  # endpoint ids of other local endpoints (hardware VTEP MACs, servers): pins
        self.sessions: set = set()  # hardware VTEP sessions bound to the subnet: pins

    def __bool__(self):
        return bool(self.vports or self.others or self.sessions)


class Originator:
    """The routes ``originate`` would give, kept by delta (see the module docstring); also the base of each
    publish's ``Origins`` (``keys_of``, ``behind``, ``pinned``, ``vports``)."""

    def __init__(self):
        self.watcher = None  # the Origins of the last publish, told before anything it reads here changes
        self._reset()

    def forget(self, pacer: Pacer = NEVER) -> None:
        """Drop everything (the last publish's Origins keeps what it reads, ``pacer`` ticked: ``_keep_all``): the next
        update starts from scratch. A pause that raises (a shutdown's) has the rest kept at once, and everything
        dropped all the same, before the exception goes on."""
        try:
            self._keep_all(pacer)
        except BaseException:
            self._keep_all(NEVER)  # (``keep`` skips what it holds already)
            raise
        finally:
            self._reset()

    def _reset(self) -> None:
        self.routes: dict = {}  # key -> route
        self._view = _unfollowed
        self._eps: dict = {}  # endpoint id -> (endpoint, its type 2 keys, its type 3 group's (subnet, tunnel IP)); a
        # View keys its endpoints by vport id (controller/derive.py), so a vport's endpoint id is the vport's id
        self._in_subnet: dict = {}  # subnet -> endpoint ids
        self._owner: dict = {}  # type 2 key -> endpoint id
        self._groups: dict = {}  # subnet -> tunnel IP -> _Group
        self._t3: dict = {}  # subnet -> tunnel IP -> its type 3 key
        self._group_of: dict = {}  # type 3 key -> (subnet, tunnel IP)
        self._bound: dict = {}  # subnet -> {bound VTEP session: tunnel IP}
        self._t5: set = set()  # keys of the type 5 routes
        self._subnet_fp: dict = {}
        self._session_fp: dict = {}
        self._after = None  # (the Mobility, its update number) the last update read (``_changes``)

    # ------------------------------------------------------------------ the base of Origins
    def keys_of(self, vport_id) -> list:
        held = self._eps.get(vport_id)
        if held is None or held[0].kind != "vport":
            return []
        _ep, t2, group = held
        key = self._t3.get(group[0], {}).get(group[1]) if group else None
        return [*t2, key] if key is not None else list(t2)

    def behind(self, key) -> int:
        eid = self._owner.get(key)
        if eid is not None:
            return 1 if self._eps[eid][0].kind == "vport" else 0
        at = self._group_of.get(key)
        return len(self._groups[at[0]][at[1]].vports) if at else 0

    def pinned(self, key) -> bool:
        eid = self._owner.get(key)
        if eid is not None:
            return self._eps[eid][0].kind != "vport"
        at = self._group_of.get(key)
        if not at:
            return False
        group = self._groups[at[0]][at[1]]
        return bool(group.others or group.sessions)

    def vports(self):
        return [vid for vid, (ep, _t2, _group) in self._eps.items() if ep.kind == "vport" and self.keys_of(vid)]

    def standing(self, vport_ids) -> tuple[dict, list, list]:
        """What ``keys_of`` says of each of ``vport_ids`` (those it names keys for), with those keys apart: their
        type 2 keys (one vport behind each, unpinned: ``behind`` 1, ``pinned`` False) and their type 3 keys (one per
        vport standing behind one). For ``Origins.unbound``: 10,000 vports unbound at once, one call, not three
        per key."""
        eps, t3, ids = self._eps, self._t3, list(vport_ids)
        found = dict(filter(_SECOND, zip(ids, map(eps.get, ids))))  # (in C: no Python step per vport)
        if set(map(_KIND, map(_FIRST, found.values()))) - {"vport"}:
            found = {vid: at for vid, at in found.items() if at[0].kind == "vport"}
        t2s, groups = list(map(_SECOND, found.values())), list(map(_THIRD, found.values()))
        key_of = {group: t3.get(group[0], {}).get(group[1]) if group else None for group in set(groups)}
        tail = {group: () if key is None else (key,) for group, key in key_of.items()}
        held = dict(zip(found, map(list, map(add, t2s, map(tail.__getitem__, groups)))))
        if [] in held.values():  # (an endpoint without routes: its vport names none)
            held = {vid: keys for vid, keys in held.items() if keys}
        return held, list(chain.from_iterable(t2s)), list(filter(None, map(key_of.__getitem__, groups)))

    def named(self, vport_ids) -> set:
        """Those of ``vport_ids`` that ``keys_of`` names keys for (those held here looked at only)."""
        return {vid for vid in filter(self._eps.__contains__, vport_ids) if self.keys_of(vid)}

    # ------------------------------------------------------------------ update
    def update(self, view, policy, mobility, pacer: Pacer = NEVER) -> set | None:
        """Bring ``routes`` to ``originate(view, policy, mobility.seqs)``; the keys that changed (came, went or
        changed), or None when everything was taken from scratch. ``mobility``: the ``Mobility`` just updated with this
        View (its ``taken``: the (subnet, MAC) pairs whose ``seqs`` entry may have changed since the last update; its
        index of the View's local endpoints by (subnet, MAC) and by session, which this reads instead of keeping its
        own; any other than its next update of this View after the one read last: from scratch). ``pacer`` is ticked
        per endpoint dropped and taken again; the View, policy and ``seqs`` must not change during its pauses
        (``originate``'s rule). Raises ``Clash`` (see the module docstring); an update that raises is followed by one
        from scratch."""
        try:
            changed = self._update(view, policy, mobility, pacer)
            self._after = (mobility, mobility.updates)
            return changed
        except BaseException as exc:  # what changed was kept (``watcher``) before it changed; the rest as the last
            self.forget(paced(pacer, exc))  # publish saw it (nothing changes in the pauses: the same answers)
            raise

    def _update(self, view, policy, mobility, pacer) -> set | None:
        changed: set = set()
        seqs = mobility.seqs
        eids = self._changes(view, mobility)
        scratch = eids is None
        if scratch:
            self.forget(pacer)
            self._view = _follow(view)
            eids = set(view.local)
        subnets = self._subnets_changed(view, policy)
        for session in self._sessions_changed(view, mobility):  # (its endpoints now; those gone are in the feed)
            eids |= mobility.endpoints_on(session)
        for sid in subnets:
            eids |= self._in_subnet.get(sid, set())
        groups = set()
        self._drop(eids, changed, groups, pacer)
        self._take(eids, view, policy, seqs, changed, groups, pacer)
        for sid in subnets:
            self._rebind(sid, view, groups)
            groups.update((sid, ip) for ip in self._groups.get(sid, ()))
            groups.update((sid, ip) for ip in self._t3.get(sid, ()))
        new = [made for sid, ip in groups if (made := self._multicast(sid, ip, view, policy, changed))]
        for sid, ip, route in new:  # (after every key that goes went: a subnet deleted, another given its RD)
            self._add_multicast(sid, ip, route, changed, pacer)
        self._prefixes(view, changed)
        return None if scratch else changed

    def _changes(self, view, mobility) -> set | None:
        """The local endpoint ids whose routes may have changed (None: start from scratch)."""
        if self._view() is not view or self._after is None:
            return None
        last, seen = self._after
        if last is not mobility or mobility.last_update(view) != seen + 1:  # not MAC mobility's next update, of this
            return None  # View: its ``fed``, ``taken`` and index do not tell what changed since the one read last
        fed, taken = mobility.fed, mobility.taken
        if fed is None or taken is None:  # (a View without feeds, a feed that overflowed: MAC mobility walked all)
            return None
        return fed | mobility.endpoints_of(taken)  # (their endpoints now; those gone are in the feed)

    def _subnets_changed(self, view, policy) -> set:
        """The subnets whose facts (see the module docstring) changed since the last update."""
        changed = set()
        fps = self._subnet_fp
        for sid in set(fps) | set(view.subnets) | set(view.by_subnet) | set(self._in_subnet):
            subnet, info = policy.get("subnet", sid), view.subnets.get(sid)
            dom = view.domains.get(info.domain_id) if info is not None and info.domain_id else None
            fp = (None if subnet is None else (subnet["rd"], _rts(subnet)), info, sid in view.by_subnet,
                  tuple(sorted((s, view.tunnel_ip_of(s)) for s in view.bound_vteps.get(sid, ()))),
                  None if dom is None else _rts(dom))
            if fps.get(sid) != fp:
                changed.add(sid)
                fps[sid] = fp
            if fp == _NO_SUBNET:
                del fps[sid]
        return changed

    def _sessions_changed(self, view, mobility) -> set:
        changed = set()
        fps = self._session_fp
        for session in list(fps):  # (every session an endpoint was taken on)
            if not mobility.endpoints_on(session):
                del fps[session]  # no local endpoint there now: those it had are taken again already
                continue
            fp = _session_facts(view, session)
            if fps.get(session) != fp:
                changed.add(session)
                fps[session] = fp
        return changed

    # ------------------------------------------------------------------ endpoints
    def _drop(self, eids, changed: set, groups: set, pacer: Pacer) -> None:
        """Forget the routes of the endpoints ``eids`` (those held), the last publish's Origins told first."""
        held = list(filter(self._eps.__contains__, eids))
        if self.watcher is not None:
            self._keep_dropped(held, pacer)
        for run in runs(pacer, held):  # (10,000 endpoints gone: C loops, no Python step each)
            self._drop_run(run, changed, groups)
            pacer.tick(len(run))

    def _drop_run(self, eids: list, changed: set, groups: set) -> None:
        olds = list(map(self._eps.pop, eids))
        keys = list(chain.from_iterable(map(_SECOND, olds)))
        routes, owner = self.routes, self._owner
        deque(map(routes.__delitem__, keys), maxlen=0)
        deque(map(owner.__delitem__, keys), maxlen=0)
        changed.update(keys)
        endpoints = list(map(_FIRST, olds))
        remove_all(self._in_subnet, list(map(_SUBNET, endpoints)), eids)
        at = list(map(_THIRD, olds))
        grouped, distinct = self._groups, set(at)
        distinct.discard(None)
        groups.update(distinct)
        if len(distinct) > _FEW_GROUPS:  # (a walk of the run per group: a Python step each, past a few)
            for eid, ep, group in zip(eids, endpoints, at):
                if group:
                    where = grouped[group[0]][group[1]]
                    if ep.kind == "vport":
                        del where.vports[eid]
                    else:
                        where.others.discard(eid)
            return
        for group in distinct:  # (one group, most often: the run's endpoints are all its own)
            mine = set(compress(eids, map(group.__eq__, at))) if len(distinct) > 1 or None in at else eids
            where = grouped[group[0]][group[1]]
            deque(map(where.vports.pop, mine, repeat(None)), maxlen=0)  # (a vport's: held there,
            if where.others:  # any other's in ``others``)
                where.others.difference_update(mine)

    def _keep_dropped(self, held: list, pacer: Pacer) -> None:
        """The watcher holds what it reads of the endpoints ``held`` (held here) about to be dropped: their vports'
        keys, their type 2 keys and their type 3 groups' keys. A vport endpoint whose vport the watcher unbound holds
        those already (``Origins.unbound``: its keys, their counts; a vport's type 2 key is never pinned, here or
        after the drop): its vport and type 2 keys are passed over (10,000 ports gone, unbound before the pass: two
        hashes of a 5-tuple a key less)."""
        olds = list(map(self._eps.__getitem__, held))
        kinds = list(map("vport".__eq__, map(_KIND, map(_FIRST, olds))))
        told = getattr(self.watcher, "unbound_ids", None)
        if told:
            fresh = list(map(not_, map(and_, kinds, map(told.__contains__, held))))
            held, kinds, groups = list(compress(held, fresh)), list(compress(kinds, fresh)), set(map(_THIRD, olds))
            olds = list(compress(olds, fresh))
        else:
            groups = set(map(_THIRD, olds))
        vports = list(compress(held, kinds))
        keys = list(chain.from_iterable(map(_SECOND, olds)))
        for group in groups:
            key = self._t3.get(group[0], {}).get(group[1]) if group else None
            if key is not None:
                keys.append(key)
        _in_slices(self.watcher.keep, vports, keys, pacer)

    def _take(self, eids, view, policy, seqs, changed: set, groups: set, pacer: Pacer) -> None:
        """Make the routes of the endpoints ``eids`` the View has (none held: ``_drop`` first). Made first, kept
        after: the last publish's Origins is told of every key and group they change before the first changes."""
        made, hops, subnets, memo, local, held = [], {}, {}, {}, view.local, self.routes
        for run in runs(pacer, list(filter(local.__contains__, eids))):  # (a tick per endpoint, in runs)
            for eid in run:
                ep = local[eid]
                sid, session = ep.subnet_id, ep.session
                key = (sid, ep.mac)
                next_hop = hops[session] if session in hops else hops.setdefault(session, view.tunnel_ip_of(session))
                subnet = subnets[sid] if sid in subnets else subnets.setdefault(sid, policy.get("subnet", sid))
                routes = () if next_hop is None or subnet is None or (key in seqs and seqs[key] is None) else {
                    route.key: route for route in mac_ip_routes(view, ep, subnet, next_hop, seqs.get(key) or None,
                                                                memo)}
                for rkey in routes:
                    if rkey in held:
                        raise Clash(rkey)
                made.append((eid, ep, routes, None if next_hop is None else (sid, next_hop)))
            pacer.tick(len(run))
        if self.watcher is not None:
            self._keep_taken(made, pacer)
        for session in hops:
            if session not in self._session_fp:  # its facts as this View has them (what its routes are made of)
                self._session_fp[session] = _session_facts(view, session)
        owner, grouped, eps = self._owner, self._groups, self._eps
        in_subnet = self._in_subnet
        for run in runs(pacer, made):
            if self._held_at_once(run, changed, groups):
                pacer.tick(len(run))
                continue
            for eid, ep, routes, group in run:
                add_to(in_subnet, ep.subnet_id, eid)
                for rkey in routes:
                    if rkey in held:  # (two endpoints of this update)
                        raise Clash(rkey)
                    owner[rkey] = eid
                held.update(routes)
                changed.update(routes)
                if group is not None:
                    at = grouped.get(group[0], {}).get(group[1])
                    if at is None:
                        at = grouped.setdefault(group[0], {})[group[1]] = _Group()
                    if ep.kind == "vport":
                        at.vports[eid] = ep.vport_id
                    else:
                        at.others.add(eid)
                    groups.add(group)
                eps[eid] = (ep, tuple(routes), group)
            pacer.tick(len(run))

    def _held_at_once(self, run: list, changed: set, groups: set) -> bool:
        """What ``_take`` holds of the endpoints ``run`` (its ``made``), in C loops, when they are vports of one type 3
        group whose route keys are new here and distinct (10,000 ports bound in one subnet); False: not done."""
        group = run[0][3]
        eids, eps, routes = list(map(_FIRST, run)), list(map(_SECOND, run)), list(map(_THIRD, run))
        keys, held = list(chain.from_iterable(routes)), self.routes
        if group is None or set(map(_FOURTH, run)) != {group} or set(map(_KIND, eps)) != {"vport"} \
                or not held.keys().isdisjoint(keys) or len(set(keys)) != len(keys):
            return False
        add_all(self._in_subnet, group[0], eids)  # (a group's endpoints are of its subnet)
        self._owner.update(zip(keys, chain.from_iterable(map(repeat, eids, map(len, routes)))))
        deque(map(held.update, routes), maxlen=0)
        changed.update(keys)
        at = self._groups.get(group[0], {}).get(group[1])
        if at is None:
            at = self._groups.setdefault(group[0], {})[group[1]] = _Group()
        at.vports.update(zip(eids, map(_VPORT_ID, eps)))
        groups.add(group)
        self._eps.update(zip(eids, zip(eps, map(tuple, routes), repeat(group))))
        return True

    def _keep_taken(self, made, pacer: Pacer) -> None:
        """The watcher holds what it reads of the vports, type 2 keys and type 3 groups the endpoints ``made`` are
        about to change. Their vports and keys are new here (dropped first; a key held is a ``Clash``)."""
        vports = list(compress(map(_FIRST, made), map("vport".__eq__, map(_KIND, map(_SECOND, made)))))
        keys = list(chain.from_iterable(map(_THIRD, made)))  # (the last publish's Origins may name one: carried, say)
        groups = []
        for group in dict.fromkeys(map(_FOURTH, made)):  # (each once, in the order first made: C loops)
            if group is not None:
                key = self._t3.get(group[0], {}).get(group[1])
                if key is not None:
                    groups.append(key)
        _in_slices(self.watcher.keep_absent, vports, keys, pacer)
        self.watcher.keep(keys=groups)

    # ------------------------------------------------------------------ type 3, type 5
    def _rebind(self, sid, view, groups: set) -> None:
        """The hardware VTEPs bound to subnet ``sid`` as the View has them now."""
        for ip in self._groups.get(sid, ()):
            self._keep_group((sid, ip))
        for session in view.bound_vteps.get(sid, ()):
            self._keep_group((sid, view.tunnel_ip_of(session)))
        for session, ip in self._bound.pop(sid, {}).items():
            self._groups[sid][ip].sessions.discard(session)
            groups.add((sid, ip))
        bound = {}
        for session in view.bound_vteps.get(sid, ()):
            ip = view.tunnel_ip_of(session)
            if ip is not None:
                bound[session] = ip
                self._groups.setdefault(sid, {}).setdefault(ip, _Group()).sessions.add(session)
                groups.add((sid, ip))
        if bound:
            self._bound[sid] = bound

    def _multicast(self, sid, ip, view, policy, changed: set) -> tuple | None:
        """The type 3 route of subnet ``sid`` at tunnel IP ``ip`` again (``bgp.evpn._multicast_routes``): the old
        one replaced or gone; (sid, ip, route) when a route of another key is to come (``_add_multicast``)."""
        at = self._groups.get(sid, {}).get(ip)
        subnet = policy.get("subnet", sid)
        route = None
        if at and subnet is not None and sid in view.subnets and sid in view.by_subnet:
            route = _route(InclusiveMulticastRoute, rd=subnet["rd"], vni=view.subnets[sid].vni, next_hop=ip,
                           route_targets=_rts(subnet))
        old = self._t3.get(sid, {}).get(ip)
        if route is not None and route.key == old:
            if (held := self.routes[old]) is not route:
                self.routes[old] = route  # (the cache's from now on: compared by identity next time)
                if held != route:  # an equal one built anew (the route cache cleared): no change
                    changed.add(old)
            return None
        if old is not None:
            self._keep_key(old, moved=True)  # the key its vports stand behind goes
            del self.routes[old], self._group_of[old], self._t3[sid][ip]
            if not self._t3[sid]:
                del self._t3[sid]
            changed.add(old)
        if not at:
            if at is not None:
                del self._groups[sid][ip]
                if not self._groups[sid]:
                    del self._groups[sid]
            return None
        return None if route is None else (sid, ip, route)

    def _add_multicast(self, sid, ip, route, changed: set, pacer: Pacer) -> None:
        key = route.key
        if key in self.routes:
            raise Clash(key)
        self._keep_key(key)
        if self.watcher is not None:  # a key they stand behind comes
            _in_slices(self.watcher.keep, list(self._groups[sid][ip].vports.values()), [], pacer)
        self.routes[key] = route
        self._group_of[key] = (sid, ip)
        self._t3.setdefault(sid, {})[ip] = key
        changed.add(key)

    def _prefixes(self, view, changed: set) -> None:
        """Type 5 routes, made again and compared."""
        made = {}
        for route in _prefix_routes(view):
            made[route.key] = route
        for route in _floating_routes(view):
            made[route.key] = route
        for key in self._t5 - set(made):
            del self.routes[key]
            changed.add(key)
        for key, route in made.items():
            old = self.routes.get(key)
            if old is not None and key not in self._t5:
                raise Clash(key)
            if old is not route and old != route:
                self.routes[key] = route
                changed.add(key)
        self._t5 = set(made)

    # ------------------------------------------------------------------ the last publish's Origins
    def _keep_group(self, group) -> None:
        key = self._t3.get(group[0], {}).get(group[1])
        if key is not None:
            self._keep_key(key)

    def _keep_key(self, key, moved: bool = False) -> None:
        """The watcher holds the vports behind ``key`` and whether it is pinned, and (``moved``: the key itself
        goes) which keys each of its vports stands behind."""
        if self.watcher is None:
            return
        self.watcher.keep(keys=(key,))
        at = self._group_of.get(key)
        if at is not None and moved:
            self.watcher.keep(vport_ids=self._groups[at[0]][at[1]].vports.values())

    def _keep_all(self, pacer: Pacer) -> None:
        """Everything is about to go: the last publish's Origins holds what it reads of it (every vport held, every
        key but type 5's), a pacer's ``every`` of each at a time (``_in_slices``): a View built again from scratch
        with 10,000 local endpoints was one unpaused stretch of 2.2 million bytecodes (at most 8,503 between two
        pauses now with a pause every 50, whatever the endpoints: tests/unit/test_originator_forget.py). (A demotion
        tells nothing: its hand-over replaces the watcher under the lock, then forgets; bgp/federation.py.)"""
        if self.watcher is not None:
            _in_slices(self.watcher.keep, (eid for eid, held in self._eps.items() if held[0].kind == "vport"),
                       (key for key in self.routes if key not in self._t5), pacer)


def paced(pacer: Pacer, exc: BaseException) -> Pacer:
    """The pacer of a ``forget`` after ``exc`` (a Clash, a bug: 10,000 endpoints are one walk): ``pacer``, unless
    ``exc`` ends the green thread (GreenletExit, KeyboardInterrupt, SystemExit: no pause then)."""
    return pacer if isinstance(exc, Exception) else NEVER


def _unfollowed():
    """What an Originator follows before its first update: nothing."""
    return None


def _follow(view):
    """A weak reference to ``view``, or a function giving None when it cannot have one (taken from scratch each
    update, as a View without feeds: MAC mobility walks it whole, ``fed`` None)."""
    try:
        return weakref.ref(view)
    except TypeError:
        return _unfollowed


def _in_slices(tell, vports: Iterable, keys: Iterable, pacer: Pacer) -> None:
    """``tell(vports, keys)`` (the watcher's ``keep``) a pacer's ``every`` of each at a time, ticking as many: the
    endpoints dropped or taken, or the vports behind a new type 3 key, of 10,000 ports gone or new were one unpaused
    stretch of ~13-21 ms of CPU (load 8). Nothing it reads has changed yet, so what the last publish's Origins
    answers during the pauses is the same; nor has anything ``vports`` and ``keys`` walk (they may be lazy: taken a
    slice at a time too)."""
    every, due, vports, keys = pacer.every, getattr(pacer, "due", None), iter(vports), iter(keys)
    while True:
        step = every if due is None else min(every, due())  # (ending where a BoundedPacer checks its clock too)
        part = list(islice(vports, step)), list(islice(keys, step))
        if not part[0] and not part[1]:
            return
        tell(*part)
        pacer.tick(step)


def _session_facts(view, session) -> tuple:
    """What a session's local endpoints' routes read of it: its tunnel IP, Router's MAC, and whether it is a VRS."""
    switch = view.switches.get(session)
    return view.tunnel_ip_of(session), switch.router_mac if switch is not None else None, switch is not None

