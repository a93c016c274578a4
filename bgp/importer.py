"""Import policy applied route by route: received EVPN routes in, remote endpoints out, by delta.

``RouteImport(policy)`` holds what every received route contributes to the ``RemoteTable`` (a MAC location,
a flood target, prefixes), indexed so that a change costs what it touches:

- ``apply(changes)``: ``changes`` is {(peer, route key): route, or None when withdrawn} (what
  ``RouteBook.take_received_changes`` gives); each changed route's old contribution is taken out and its new
  one put in, and only the (subnet, MAC) groups it reaches are merged again. Returns a ``RemoteDelta``: the
  table entries added and removed.
- ``table()``: the ``RemoteTable`` now (rebuilt only when an entry changed).

The import rules (``bgp.evpn.import_routes`` is this class run from scratch): type 2 and 3 routes go into
the subnets whose import route targets they carry and whose VNI they name; type 5 routes, and type 2 host
routes (with an IP, an L3 VNI and a Router's MAC) of subnets not imported at L2, into the domains whose
import route targets they carry. One location per (subnet, MAC) wins: the highest mobility sequence
number, then the lowest VTEP IP (RFC 7432 section 15.1); the routes of one location (MAC only, MAC/IP
per IP) are merged into one ``RemoteMac``, in route-key order, so the result does not depend on the order
routes arrived in. A policy change is a new ``RouteImport``.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from operator import attrgetter

from bgp.routes import InclusiveMulticastRoute, IpPrefixRoute, MacIpRoute
from controller.pacer import NEVER, Pacer, c_ticks
from controller.remote import RemoteDelta, RemoteMac, RemotePrefix, RemoteTable, prefix_order
from openflow.pacedsort import sorted_paced

_MAC_ORDER = attrgetter("subnet_id", "mac")  # a table's MACs in order


@dataclass(frozen=True)
class _Contribution:
    macs: tuple = ()  # (subnet id, MAC) groups the route is a candidate location in
    floods: tuple = ()  # (subnet id, VTEP IP)
    prefixes: tuple = ()  # RemotePrefix

    @property
    def used(self) -> bool:
        return bool(self.macs or self.floods or self.prefixes)


@dataclass
class RouteImport:
    policy: object
    received: dict = field(default_factory=dict)  # (peer, key) -> route
    imported: int = 0  # received routes used by at least one subnet or domain
    ignored: int = 0

    def __post_init__(self):
        self._subnets_by_rt, self._domains_by_rt = defaultdict(list), defaultdict(list)
        for sub in self.policy.all("subnet"):
            for rt in sub["import_rts"] or ():
                self._subnets_by_rt[rt].append(sub)
        for dom in self.policy.all("domain"):
            for rt in dom["import_rts"] or ():
                self._domains_by_rt[rt].append(dom)
        self._contributions: dict = {}  # (peer, key) -> _Contribution
        self._order: dict = {}  # (peer, key) -> when the route was received (``apply``'s ``order``)
        self._used_at: Counter = Counter()  # VTEP IP (a used route's next hop) -> used routes naming it
        self._groups: dict = defaultdict(dict)  # (subnet id, MAC) -> {(peer, key): route}
        self._floods: Counter = Counter()  # (subnet id, VTEP IP) -> routes naming it
        self._prefixes: Counter = Counter()  # RemotePrefix -> routes naming it
        self._macs: dict = {}  # (subnet id, MAC) -> the winning RemoteMac
        self._table: RemoteTable | None = RemoteTable()

    # ------------------------------------------------------------------ changes
    def apply(self, changes: dict, pacer: Pacer = NEVER, order: dict | None = None) -> RemoteDelta:
        """Take ``changes`` ({(peer, key): route or None}) in; the table entries that changed. ``order``: {(peer,
        key): n}, when each route was received (the speaker's ``RouteBook.order_of``; absent: 0), the tie-break of
        an IP two MACs announce (``RemoteMac.ip_rank``). ``pacer`` is ticked per change and per (subnet, MAC)
        merged again: during its pauses ``changes`` must not change (the caller's own dict) and no other caller may
        use this RouteImport (the programming loop's alone)."""
        added, removed, touched = set(), set(), set()
        order = order or {}
        for pk, route in changes.items():
            self._withdraw(pk, added, removed, touched)
            if route is not None:
                self._order[pk] = order.get(pk, 0)
                self._announce(pk, route, added, removed, touched)
            pacer.tick()
        for group in touched:
            pacer.tick()
            routes = self._groups.get(group)  # none left: the MAC withdrawn (no merge)
            old, new = self._macs.pop(group, None), _merged(group, routes, self._order) if routes else None
            if old is not None and new is not None and old == new:  # (a route sent again: merged anew, the same)
                self._macs[group] = old  # the object State holds kept: a later withdrawal finds it by identity
                continue
            if new is not None:
                self._macs[group] = new
                added.add(new)
            if old is not None:
                removed.add(old)
        both = added & removed  # added back what was removed (or the reverse): no change
        delta = RemoteDelta(frozenset(added - both), frozenset(removed - both))
        if delta or pacer.pauses:
            self._table = None  # (after a pause: a table read during it may have seen half of the changes)
        return delta

    def _withdraw(self, pk, added, removed, touched) -> None:
        route = self.received.pop(pk, None)
        if route is None:
            return
        contribution = self._contributions.pop(pk)
        self._order.pop(pk, None)
        used = contribution.used
        self.imported -= used
        self.ignored -= not used
        if used:
            vtep, used_at = _vtep(route), self._used_at
            n = used_at[vtep] - 1
            if n:
                used_at[vtep] = n
            else:
                del used_at[vtep]
        groups = self._groups
        for group in contribution.macs:
            routes = groups[group]
            del routes[pk]
            if not routes:
                del groups[group]
            touched.add(group)
        if contribution.floods:
            _count_down(self._floods, contribution.floods, removed)
        if contribution.prefixes:
            _count_down(self._prefixes, contribution.prefixes, removed)

    def _announce(self, pk, route, added, removed, touched) -> None:
        contribution = self._contribution(pk[0], route)
        self.received[pk] = route
        self._contributions[pk] = contribution
        self.imported += contribution.used
        self.ignored += not contribution.used
        if contribution.used:
            _count_up(self._used_at, (_vtep(route),), set())
        for group in contribution.macs:
            self._groups[group][pk] = route
            touched.add(group)
        _count_up(self._floods, contribution.floods, added)
        _count_up(self._prefixes, contribution.prefixes, added)

    def _contribution(self, peer: str, route) -> _Contribution:
        subnets = _matching(self._subnets_by_rt, route)
        if isinstance(route, MacIpRoute):
            macs = tuple((s["id"], route.mac) for s in subnets if s["vni"] == route.l2_vni)
            if macs or not (route.ip and route.l3_vni and route.router_mac):
                return _Contribution(macs=macs)
            return _Contribution(prefixes=tuple(
                RemotePrefix(d["id"], f"{route.ip}/32", route.next_hop, route.router_mac, route.l3_vni, peer)
                for d in _matching(self._domains_by_rt, route)))
        if isinstance(route, InclusiveMulticastRoute):
            return _Contribution(floods=tuple((s["id"], route.vtep) for s in subnets if s["vni"] == route.vni))
        if isinstance(route, IpPrefixRoute) and route.router_mac:
            return _Contribution(prefixes=tuple(
                RemotePrefix(d["id"], route.prefix, route.next_hop, route.router_mac, route.l3_vni, peer)
                for d in _matching(self._domains_by_rt, route)))
        return _Contribution()

    def counts(self, own_ips) -> dict:
        """{"imported", "own_vtep", "ignored"}: received routes used by a subnet or domain (and naming a VTEP not
        ours), those naming one of our own VTEPs (``own_ips``: ours come back, which the View ignores; on an HA
        standby behind a route reflector, the active's), and those nothing imports. Costs one look-up per own IP."""
        return self.tally().counts(own_ips)

    def tally(self) -> ImportTally:
        """What ``counts`` reads, as of now (a copy: the next ``apply`` does not change it). Costs the VTEPs named."""
        return ImportTally(self.imported, self.ignored, dict(self._used_at))

    # ------------------------------------------------------------------ the table
    def table(self, pacer: Pacer = NEVER) -> RemoteTable:
        """The table now, built when an entry changed: its MACs and prefixes sorted with ``pacer`` ticked as they are
        (openflow/pacedsort.py; a ``sorted`` of 10,000 MACs keyed in Python was one stretch of ~430,000 bytecodes of
        the programming pass at each policy commit, stop 47). Nothing here changes during its pauses: the import is
        the programming loop's alone (``apply``)."""
        if self._table is None:
            tick = c_ticks(pacer)
            self._table = RemoteTable(
                macs=tuple(sorted_paced(list(self._macs.values()), tick, _MAC_ORDER)),
                floods=tuple(sorted(self._floods)),
                prefixes=tuple(sorted_paced(list(self._prefixes), tick, prefix_order)))
        return self._table


@dataclass(frozen=True)
class ImportTally:
    """The counts of one import as it stood (``RouteImport.tally``): what the status reports while the import
    is dropped after a round that raised (State holds what that import gave it, bgp/federation.py)."""

    imported: int = 0
    ignored: int = 0
    used_at: dict = field(default_factory=dict)  # VTEP IP -> used routes naming it

    def counts(self, own_ips) -> dict:
        """``RouteImport.counts`` as of the tally."""
        own = sum(self.used_at.get(ip, 0) for ip in own_ips)
        return {"imported": self.imported - own, "own_vtep": own, "ignored": self.ignored}


def _vtep(route) -> str:
    """The VTEP a received route sends traffic to: a type 3's PMSI tunnel identifier, the others' next hop."""
    return route.vtep if isinstance(route, InclusiveMulticastRoute) else route.next_hop


def _matching(by_rt, route) -> list:
    found = {}
    for rt in route.route_targets:
        for obj in by_rt.get(rt, ()):
            found[obj["id"]] = obj
    return list(found.values())


def _count_up(counter: Counter, entries, added: set) -> None:
    for entry in entries:
        counter[entry] += 1
        if counter[entry] == 1:
            added.add(entry)


def _count_down(counter: Counter, entries, removed: set) -> None:
    for entry in entries:
        counter[entry] -= 1
        if not counter[entry]:
            del counter[entry]
            removed.add(entry)


def _merged(group, routes: dict, order: dict) -> RemoteMac | None:
    """The winning location of one (subnet, MAC): each VTEP's routes merged (IPs with when the latest route naming
    each was received, Router's MAC, L3 VNI, the highest sequence number, sticky if one is), then a sticky one, the
    highest sequence number, the lowest VTEP IP."""
    subnet_id, mac = group
    locations: dict = {}
    for pk, route in sorted(routes.items(), key=lambda item: repr(item[0])):
        old = locations.get(route.next_hop)
        if old is None:  # the usual case: one route per MAC and VTEP
            ips, ip_order = ((route.ip,), (order.get(pk, 0),)) if route.ip else ((), ())
        else:
            received = dict(zip(old.ips, old.ip_order))
            if route.ip:
                received[route.ip] = max(received.get(route.ip, 0), order.get(pk, 0))
            ips = tuple(sorted(received))
            ip_order = tuple(received[ip] for ip in ips)
        router_mac = route.router_mac or (old.router_mac if old else None)
        l3_vni = route.l3_vni or (old.l3_vni if old else 0)
        seq = max(route.mobility_seq or 0, old.seq if old else 0)
        sticky = route.sticky or (old.sticky if old else False)
        locations[route.next_hop] = RemoteMac(subnet_id, mac, ips, route.next_hop, router_mac if l3_vni else None,
                                              l3_vni, seq, pk[0], sticky, ip_order)
    best = None
    for location in locations.values():
        if best is None or beats(location, best):
            best = location
    return best


def beats(mac, other) -> bool:
    """Whether location ``mac`` wins over ``other`` (RemoteMacs, or anything with ``sticky``, ``seq`` and ``vtep_ip``):
    a sticky (static) MAC cannot move (RFC 7432 section 15.2), then the higher sequence number wins, then the lower
    VTEP IP (section 15.1)."""
    if mac.sticky != other.sticky:
        return mac.sticky
    if mac.seq != other.seq:
        return mac.seq > other.seq
    return ipaddress.IPv4Address(mac.vtep_ip) < ipaddress.IPv4Address(other.vtep_ip)
