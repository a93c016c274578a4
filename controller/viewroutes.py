"""Per domain, what its own flows and its FIB are made of, kept up to date by deltas (``controller.viewdelta``).

``Routes`` keeps, per domain, the endpoints behind each host IP (so a static route resolves without walking the
domain), resolves static routes and filters EVPN prefixes for the domains a delta reached, and says which domains'
own flows changed. The full FIB (connected, host, static and EVPN routes, sorted) is only needed by REST and by a
domain's own compile: ``LazyFib`` makes a domain's FIB list when it is read after a change, not on every vport, from
``OrderedFib``, which keeps the domain's routes in the FIB's order as they come and go (a host route in or out: a
search and a move, not a sort of 20,000 routes in one stretch of the event loop).
"""

from __future__ import annotations

import socket
from collections import Counter, defaultdict, deque
from functools import partial
from itertools import chain, compress, repeat
from operator import attrgetter, is_, is_not, itemgetter, not_

from sortedcontainers import SortedDict

from controller import derive as d
from controller.keyed import discard_under
from controller.pacer import Pacer, runs

_IPS, _VPORT_ID, _SUBNET_ID = attrgetter("ips"), attrgetter("vport_id"), attrgetter("subnet_id")
_PTON4 = partial(socket.inet_pton, socket.AF_INET)


def _ip_orders(ips: list) -> list:
    """``d._ip_order`` of each of ``ips``, in C loops when each is a dotted quad inet_pton takes (else as
    ``_ip_order`` does, which raises as before)."""
    try:
        return list(map(int.from_bytes, map(_PTON4, ips), repeat("big")))
    except (OSError, TypeError, ValueError):
        return list(map(d._ip_order, ips))


def _host_keys(ips: list, vids: list) -> list:
    """The sort keys of the host routes of ``ips`` to the endpoints ``vids`` (``OrderedFib.add_host``'s)."""
    return list(zip(repeat(-32), _ip_orders(ips), repeat(0), vids))


def _holds(held, ep) -> bool:
    """Whether the host route held for an IP and id (``Routes.host_eps``) is endpoint ``ep``'s."""
    return held is ep or (held is not None and held == ep)


def own_routes(view, did) -> list:
    """A domain's FIB without its host routes (its connected, static and EVPN routes: what the domain's own flows are
    compiled from), in no particular order. The LiveView keeps them apart (``LazyFib.own``): read through the whole
    FIB, 20,000 host routes at 10,000 vports were copied and filtered in one stretch for a few routes."""
    own = getattr(view.fib, "own", None)
    routes = own(did) if own is not None else None
    return [r for r in view.fib.get(did, ()) if r.kind != "host"] if routes is None else routes


class LazyFib(dict):
    """domain id -> FIB; a domain marked stale is rebuilt when read (host routes change with every vport)."""

    def __init__(self, build, own=None):
        super().__init__()
        self._build = build
        self._own = own  # domain id -> its routes but the host routes, or None (own_routes)
        self._stale = set()
        self.passing = False  # within a LiveView pass: a FIB read in one of its pauses is made, not kept (__getitem__)

    def own(self, did) -> list | None:
        """``own_routes`` without building the FIB; None when only the whole FIB tells."""
        return self._own(did) if self._own is not None and did in self else None

    def stale(self, did):
        self._stale.add(did)
        dict.__setitem__(self, did, None)

    def drop(self, did):
        self._stale.discard(did)
        self.pop(did, None)

    def __getitem__(self, did):
        if did in self._stale:
            if self.passing:  # (a REST read in a pass's pause: by_subnet is whole again only when the pass ends,
                return self._build(did)  # controller/viewplaces.py; kept, it held a gone vport's host route after)
            self._stale.discard(did)
            dict.__setitem__(self, did, self._build(did))
        return dict.__getitem__(self, did)

    def get(self, did, default=None):
        return self[did] if did in self else default

    def values(self):
        return [self[did] for did in self]

    def items(self):
        return [(did, self[did]) for did in self]

    def __eq__(self, other):
        return isinstance(other, dict) and dict(self.items()) == dict(other.items())

    __hash__ = None


class OrderedFib:
    """One domain's routes in the FIB's order (``derive._fib``: longest prefix first, then by address; among equal
    prefixes connected and host routes first in derive's order, then static routes, then EVPN ones, each in its
    order). Host routes come and go one by one (``Routes.count``); connected, static and EVPN routes are replaced
    together when the domain is re-resolved (``Routes._domain``). A host route that comes is held apart (``added``)
    and put in with the others that came when the routes are next read (``settle``): into an empty table (or by a
    read) one SortedDict update, which sorts the keys once; by a pass re-resolving the domain (``Routes._domain``),
    into a table that holds routes, one by one with the pass's pacer, as an update would sort every key again in one
    stretch (20,000 at an apply of 10,000 vports). Two connected or host routes of one prefix (one IP on two
    endpoints) are ordered by where their subnets and endpoints are in the View, which this does not keep:
    ``ordered()`` is then None and the FIB is sorted from the View instead. A host
    route that goes is only noted (``gone``) and taken out when the routes are next read (``ordered``, ``set_own``,
    ``Routes.own_routes``): a pass removing 10,000 EVPN MACs spent a sixth of its CPU on 10,000 searches and moves of
    this table, for a FIB nobody read before the next pass; taken out together they are one filtering copy of the
    table, when it is read."""

    def __init__(self):
        self.routes = SortedDict()  # sort key -> Route (the keys in ``gone`` included)
        self.gone: set[tuple] = set()  # keys of host routes removed, still in ``routes`` (taken out by ``settle``)
        self.added: dict[tuple, object] = {}  # host routes come, not in ``routes`` yet (put in by ``settle``)
        self.own: list[tuple] = []  # the keys of the connected, static and EVPN routes
        self.resolved = False  # the domain's own routes were set at least once
        self.local = Counter()  # (-prefix length, address) of connected and host routes -> how many
        self.ties = 0  # of those, how many are held by more than one route

    def add_host(self, ip: str, ep) -> None:
        key = (-32, d._ip_order(ip), 0, ep.vport_id)
        back = key in self.gone  # removed and not taken out yet: still counted
        self.gone.discard(key)
        route = d.Route(f"{ip}/32", "host", None, ep.vport_id, ep.subnet_id)
        held = key in self.added or (key in self.routes and not back)  # (by another endpoint of the id: replaced)
        if key in self.routes:
            self.routes[key] = route  # (a key held already: no search)
        else:
            self.added[key] = route
        if not (back or held):
            self._count(key[:2], 1)

    def remove_host(self, ip: str, vport_id: str) -> None:
        key = (-32, d._ip_order(ip), 0, vport_id)
        if self.added.pop(key, None) is not None:
            self._count(key[:2], -1)
        elif key in self.routes:
            self.gone.add(key)

    def add_hosts(self, ips: list, eps: list) -> None:
        """``add_host(ip, ep)`` for each pair of ``ips`` and ``eps``, in C loops when no key of theirs is held or
        repeated (10,000 ports bound: no search, no Python step each)."""
        vids = list(map(_VPORT_ID, eps))
        keys = _host_keys(ips, vids)
        if len(set(keys)) < len(keys) or not self.gone.isdisjoint(keys) or not self.added.keys().isdisjoint(keys) \
                or any(map(self.routes.__contains__, keys)):
            for ip, ep in zip(ips, eps):
                self.add_host(ip, ep)
            return
        self.added.update(zip(keys, map(d.Route, map("{}/32".format, ips), repeat("host"), repeat(None), vids,
                                        map(_SUBNET_ID, eps))))
        self._count_all(list(zip(repeat(-32), map(itemgetter(1), keys))), 1)

    def remove_hosts(self, ips: list, vids: list) -> None:
        """``remove_host(ip, vid)`` for each pair of ``ips`` and ``vids``, in C loops. A key repeated is as one by one
        without a check (a key is in ``added`` or in ``routes``, never both: its first pop takes it from ``added``,
        the next finds nothing in either; noting a key ``gone`` twice is noting it once)."""
        keys = _host_keys(ips, vids)
        if self.added:  # (routes come and not put in yet: taken back)
            popped = list(map(self.added.pop, keys, repeat(None)))
            taken = list(compress(keys, map(is_not, popped, repeat(None))))
            if taken:
                self._count_all(list(zip(repeat(-32), map(itemgetter(1), taken))), -1)
            keys = compress(keys, map(is_, popped, repeat(None)))
        self.gone.update(filter(self.routes.__contains__, keys))

    def empty(self) -> bool:
        return len(self.routes) + len(self.added) == len(self.gone)

    def settle(self, pacer: Pacer | None = None) -> None:
        """Put the host routes that came in (``added``), then take the removed ones out: one by one when they are few,
        else one copy of the rest (in order already, so SortedDict's sort of it is linear). With ``pacer`` (a pass's,
        when it pauses) and routes held already, those that came are put in one by one, ticked (``_put_added``)."""
        if self.added:
            if pacer is not None and pacer.pause is not None and self.routes:
                self._put_added(pacer)
            else:
                self.routes.update(self.added)  # (many: the keys sorted once; few: inserted one by one)
                self.added = {}
        gone = self.gone
        if not gone:
            return
        for key in gone:
            self._count(key[:2], -1)
        if len(gone) * 8 > len(self.routes):
            self.routes = SortedDict([(key, route) for key, route in self.routes.items() if key not in gone])
        else:
            for key in gone:
                del self.routes[key]
        gone.clear()

    def _put_added(self, pacer: Pacer) -> None:
        """The host routes that came put in one by one (a search and an insert each), ``pacer`` ticked per route: 10,000
        ports bound into a domain that held routes were one ``SortedDict.update``, which sorts every key again (stop 47:
        a stretch of 19-29 ms of CPU in the apply of 10,000 vports; per route ~100 bytecodes, ~20 % more CPU in all,
        in pieces). During its pauses each route is in ``routes`` or in ``added`` (a read then settles the rest)."""
        for run in runs(pacer, list(self.added)):
            added, routes = self.added, self.routes  # (a read in a pause settled them: a new ``added``)
            for key in run:
                route = added.pop(key, None)
                if route is not None:
                    routes[key] = route
            pacer.tick(len(run))

    def set_own(self, connected, static, evpn) -> None:
        """The domain's connected, static (in their order) and EVPN routes, replacing the previous ones."""
        self.settle()
        for key in self.own:
            del self.routes[key]
            if key[2] == 0:
                self._count(key[:2], -1)
        self.own = []
        for group, routes in ((0, connected), (1, static), (2, evpn)):
            for n, route in enumerate(routes):
                key = (*d._route_order(route.prefix), group, "" if group == 0 else n)
                self.routes[key] = route
                self.own.append(key)
                if group == 0:
                    self._count(key[:2], 1)
        self.resolved = True

    def _count(self, where, step) -> None:
        local = self.local
        before = local.get(where, 0)
        now = before + step
        self.ties += (now > 1) - (before > 1)
        if now:
            local[where] = now
        else:
            local.pop(where, None)  # (the dict's: Counter's ``del`` is Python)

    def _count_all(self, wheres: list, step: int) -> None:
        """``_count(where, step)`` for each of ``wheres`` (step 1 or -1), in C loops when each is there once."""
        local = self.local
        if len(set(wheres)) < len(wheres):
            for where, k in Counter(wheres).items():
                self._count(where, step * k)  # (the ties counted from the first and last count only)
            return
        befores = list(map(local.get, wheres, repeat(0)))
        if step > 0:
            self.ties += befores.count(1)
            local.update(wheres)
        elif befores.count(1) == len(befores):
            deque(map(local.pop, wheres), maxlen=0)
        else:
            for where in wheres:
                self._count(where, -1)

    def ordered(self) -> list | None:
        self.settle()
        return list(self.routes.values()) if self.resolved and not self.ties else None


class Routes:
    def __init__(self, live):
        self.live = live
        self.view = live.view
        self.view.fib = LazyFib(self.fib, self.own_routes)
        self.host_eps: dict[str, dict] = defaultdict(lambda: defaultdict(dict))  # domain -> ip -> {id: ep}
        self.targets: dict[str, set[str]] = defaultdict(set)  # endpoint id -> domains whose static routes use it
        self.prefixes: dict[str, list] = {}  # domain -> its EVPN routes (derive._evpn_routes)
        self.static_of: dict[str, set[str]] = {}  # domain -> endpoint ids its static routes go to
        self.dom_keys: dict[str, tuple] = {}  # domain -> what its own flows are compiled from
        self.ordered: dict[str, OrderedFib] = defaultdict(OrderedFib)  # domain -> its routes in the FIB's order
        self.start()

    def start(self):
        """A new delta: nothing touched yet."""
        self.touched = set()  # domains whose subnets changed
        self.touched_ips = defaultdict(set)  # domain -> IPs of endpoints that came or went there
        self.changed = set()  # domains whose own flows change

    def count(self, ep, dom, step):
        """An endpoint of a routed subnet (with a CIDR) of domain ``dom`` came (step 1) or went (-1). A vport turning
        bare metal or back keeps its id as it changes kind, and its new endpoint may come before the old one goes
        (``LiveView._swap``): a host route is keyed by IP and id, so the old one's going takes out only the routes it
        still holds (it took the new one's /32 out of the FIB)."""
        if step > 0:
            for ip in ep.ips:
                self.host_eps[dom][ip][ep.vport_id] = ep
                self.ordered[dom].add_host(ip, ep)
        elif ep.ips:
            held = self.host_eps.get(dom, {})
            vid = ep.vport_id
            ips = [ip for ip in ep.ips if _holds(held.get(ip, {}).get(vid), ep)]
            if ips:
                self._remove_hosts(dom, ips, vid)
        fib = self.view.fib
        if dom not in fib._stale and dom in self.view.domains:  # (stale already: 10,000 endpoints of one domain)
            fib.stale(dom)
        self.touched_ips[dom].update(ep.ips)

    def count_all(self, eps: list, dom, step: int, ips: list | None = None) -> None:
        """``count(ep, dom, step)`` for each of ``eps`` (distinct endpoints, all of ``dom``), in C loops: 10,000 ports
        bound or gone were ~170 Python bytecodes each here. ``ips``: their IPs in order, if the caller has them."""
        if ips is None:
            ips = list(chain.from_iterable(map(_IPS, eps)))
        if ips:  # the endpoint of each IP (an IP each, most often: the endpoints themselves)
            holders = eps if len(ips) == len(eps) and all(map(len, map(_IPS, eps))) else \
                list(chain.from_iterable(map(repeat, eps, map(len, map(_IPS, eps)))))
            vids = list(map(_VPORT_ID, holders))
            if step > 0:
                inner = self.host_eps[dom]
                deque(map(dict.__setitem__, map(inner.__getitem__, ips), vids, holders), maxlen=0)
                self.ordered[dom].add_hosts(ips, holders)
            else:
                self._remove_all_hosts(dom, ips, vids)
        fib = self.view.fib
        if dom not in fib._stale and dom in self.view.domains:
            fib.stale(dom)
        self.touched_ips[dom].update(ips)

    def _remove_all_hosts(self, dom, ips: list, vids: list) -> None:
        """``_remove_hosts`` for each IP of ``ips`` and its endpoint in ``vids``."""
        inner = self.host_eps.get(dom)
        held = list(map(inner.get, ips)) if inner is not None else [None]
        if None in held:  # (an IP not held: as one by one)
            for ip, vid in zip(ips, vids):
                discard_under(self.host_eps, dom, (ip,), vid)
        else:
            deque(map(dict.pop, held, vids, repeat(None)), maxlen=0)
            deque(map(inner.pop, compress(ips, map(not_, held)), repeat(None)), maxlen=0)
            if not inner:
                del self.host_eps[dom]
        ordered = self.ordered.get(dom)
        if ordered is not None:
            ordered.remove_hosts(ips, vids)
            if ordered.empty():
                del self.ordered[dom]

    def update(self, j, own_changed):
        """Re-resolve the domains a delta reached; ``changed`` then names those whose own flows change."""
        v, remote = self.view, self.live.state.remote_index
        dirty = set(j.domains) | self.touched | set(j.remote_domains)
        if own_changed:
            dirty |= remote.domains() | set(self.prefixes)
        for dom, ips in self.touched_ips.items():
            dvals = v.domains.get(dom)
            if dvals is not None and (remote.prefixes.get(dom) or
                                      any(r["next_hop"] in ips for r in dvals["static_routes"])):
                dirty.add(dom)
        for did in dirty:
            if did not in v.domains:
                v.static.pop(did, None)
                v.fib.drop(did)
                self.prefixes.pop(did, None)
                self.dom_keys.pop(did, None)
                if did in self.ordered:  # its host routes may go later: the last one takes the entry away
                    self.ordered[did].set_own((), (), ())
                    self._forget_if_empty(did)
                self._set_targets(did, ())
                continue
            self._domain(did, remote.domain_prefixes(did))

    def _domain(self, did, remote_prefixes):
        v = self.view
        kept = self.ordered.get(did)  # (a defaultdict: not made by a read)
        if kept is not None:
            kept.settle(self.live.pacer)  # the host routes that came, paced, before anything of the domain changes
        dom = v.domains[did]
        connected = [d.Route(v.subnets[s].cidr, "connected", None, None, s) for s in self.live.dom_subnets.get(did, ())
                     if v.subnets[s].cidr]
        static = []
        for route in dom["static_routes"]:
            target = self._host(did, route["next_hop"])
            static.append(d.Route(route["prefix"], "static", route["next_hop"], target.vport_id if target else None,
                                  target.subnet_id if target else None))
        prefixes = [rp for rp in remote_prefixes if d._ipv4(rp.vtep_ip) and rp.vtep_ip not in self.live.own_ips
                    and d._ipv4_prefix(rp.prefix)]
        taken = {d._ipv4_prefix(r.prefix) for r in connected + static if r.kind != "static" or r.vport_id}
        evpn = []
        for rp in sorted(prefixes, key=lambda x: (d._route_order(d._ipv4_prefix(x.prefix)),
                                                  d.ipaddress.IPv4Address(x.vtep_ip))):
            prefix = d._ipv4_prefix(rp.prefix)
            if prefix in taken or (prefix.endswith("/32") and prefix[:-3] in self.host_eps.get(did, {})):
                continue
            taken.add(prefix)
            evpn.append(d.Route(prefix, "evpn", rp.vtep_ip, None, None, rp.vtep_ip, rp.router_mac, rp.l3_vni))
        static.sort(key=lambda r: d._route_order(r.prefix))  # derive's order (the FIB's, stable)
        key = (dom, static, evpn, connected)
        if key != self.dom_keys.get(did):
            self.changed.add(did)
            self.dom_keys[did] = key
        v.static[did] = static
        self.prefixes[did] = evpn
        self.ordered[did].set_own(connected, static, evpn)
        self._forget_if_empty(did)
        self._set_targets(did, {r.vport_id for r in static if r.vport_id})
        v.fib.stale(did)

    def _remove_hosts(self, dom, ips, vport_id):
        """An endpoint's host routes out; a domain's entries go with its last route (none is kept per domain ever
        seen)."""
        discard_under(self.host_eps, dom, ips, vport_id)
        ordered = self.ordered.get(dom)  # (a defaultdict: not made by a read)
        if ordered is not None:
            for ip in ips:
                ordered.remove_host(ip, vport_id)
            if ordered.empty():
                del self.ordered[dom]

    def _forget_if_empty(self, did):
        """An OrderedFib without routes is not kept: a domain's FIB with none is empty read either way (``fib``)."""
        if self.ordered[did].empty():
            del self.ordered[did]

    def _set_targets(self, did, vids):
        for vid in self.static_of.pop(did, ()):
            self.targets[vid].discard(did)
            if not self.targets[vid]:
                del self.targets[vid]
        if vids:
            self.static_of[did] = set(vids)
        for vid in vids:
            self.targets[vid].add(did)

    def _host(self, did, ip):
        """The endpoint a host route of this IP goes to in the domain (derive's: the last one)."""
        eps = self.host_eps.get(did, {}).get(ip)
        if not eps:
            return None
        if len(eps) == 1:
            return next(iter(eps.values()))
        last = None
        for sid in self.live.dom_subnets.get(did, ()):
            for ep in self.view.by_subnet.get(sid, ()):
                if ep.vport_id in eps:
                    last = ep
        return last

    def own_routes(self, did) -> list | None:
        """The domain's connected, static and EVPN routes as its FIB holds them (``own_routes``); None when the FIB is
        sorted from the View (``fib``)."""
        kept = self.ordered.get(did)
        if kept is not None:
            kept.settle()  # the ties counted without the host routes that went
        return None if kept is None or not kept.resolved or kept.ties else [kept.routes[key] for key in kept.own]

    def fib(self, did):
        """derive._fib: the domain's routes kept in order (``OrderedFib``), or sorted from the View when that cannot
        order them."""
        ordered = self.ordered[did].ordered() if did in self.ordered else None
        return self._sorted_fib(did) if ordered is None else ordered

    def _sorted_fib(self, did):
        """derive._fib from the maintained parts: connected and host routes in derive's order, static and
        EVPN routes as _domain resolved them, sorted longest prefix first."""
        v = self.view
        routes = []
        for sid in self.live.dom_subnets.get(did, ()):
            sub = v.subnets[sid]
            if not sub.cidr:
                continue
            routes.append(d.Route(sub.cidr, "connected", None, None, sid))
            routes += [d.Route(f"{ip}/32", "host", None, ep.vport_id, sid) for ep in v.by_subnet.get(sid, ())
                       for ip in ep.ips]
        routes += v.static.get(did, []) + self.prefixes.get(did, [])
        routes.sort(key=lambda r: d._route_order(r.prefix))
        return routes
