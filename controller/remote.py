"""What federation peers told Canopy, after import policy: the input the View takes from EVPN.

``bgp.evpn.import_routes`` turns received routes into one ``RemoteTable``; ``controller.derive`` turns it
into remote endpoints (type 2), extra BUM replication targets (type 3) and domain FIB entries (type 5 and
type 2 host routes of subnets that are not imported at L2). Frozen values: equal tables compile alike.
An import from scratch (at start, after a policy change) is taken by delta too: ``RemoteIndex.delta_to`` compares
the new table with the index entry by entry, with pauses. Only a table given whole with two locations for one
(subnet, MAC) replaces the index whole; ``changed_scopes`` then gives the subnets and domains whose routes were added
or withdrawn, which State records in its change journal, so the View re-derives only those.

The import runs by delta (``bgp.importer.RouteImport``): a round of received routes becomes a ``RemoteDelta``
(the table entries added and removed), and State keeps a ``RemoteIndex`` (subnet -> MAC -> RemoteMac, subnet ->
flood VTEPs, domain -> prefixes) updated by those deltas, so a round costs what it changed: the journal gets
the (subnet, MAC) pairs, flood subnets and domains it reached, and the whole ``RemoteTable`` is only built when
something reads it whole (the from-scratch derive, REST).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property

from controller.feed import Feeds
from controller.keyed import discard_from


@dataclass(frozen=True)
class RemoteMac:
    """A MAC (with its IPs) in one of our subnets, behind a remote VTEP (type 2, imported at L2)."""

    subnet_id: str
    mac: str
    ips: tuple[str, ...]
    vtep_ip: str
    router_mac: str | None = None  # symmetric IRB: the remote VTEP's MAC on the L3 VNI
    l3_vni: int = 0  # 0: no symmetric IRB for this MAC (L2 only)
    seq: int = 0  # MAC mobility sequence number
    peer: str = ""  # the BGP peer it came from
    sticky: bool = False  # announced static (RFC 7432 section 15.2): it cannot move
    ip_order: tuple[int, ...] = ()  # per IP (as ``ips``): when the latest route naming it was received (a counter)

    def ip_rank(self, ip: str) -> tuple[int, int]:
        """How strongly this MAC holds ``ip`` against another MAC announcing it (RFC 7432 section 15, RFC 9135 ARP
        entries: an IP that moves to a new MAC follows the newer binding): the higher sequence number, then the
        route received later (higher wins)."""
        order = self.ip_order[self.ips.index(ip)] if self.ip_order else 0
        return self.seq, order


def ip_holder(wanting: dict):
    """Which of the remote MACs announcing one IP gets it: ``wanting`` is {(subnet id, MAC): its ``ip_rank``}; the
    highest rank, then the lowest (subnet, MAC), so the result does not depend on the order they came in."""
    return min(wanting.items(), key=lambda item: (-item[1][0], -item[1][1], item[0]))[0]


@dataclass(frozen=True)
class RemotePrefix:
    """A prefix routed in one of our domains over its L3 VNI to a remote VTEP (type 5, or a type 2 host
    route whose subnet is not imported at L2)."""

    domain_id: str
    prefix: str
    vtep_ip: str
    router_mac: str
    l3_vni: int
    peer: str = ""


@dataclass(frozen=True)
class RemoteTable:
    macs: tuple[RemoteMac, ...] = ()
    floods: tuple[tuple[str, str], ...] = ()  # (subnet id, remote VTEP IP) from type 3
    prefixes: tuple[RemotePrefix, ...] = ()

    @cached_property
    def by_subnet(self) -> dict[str, tuple]:
        """Subnet id -> (its MACs, its type 3 flood VTEP IPs), for the View's per-subnet updates."""
        macs, floods = defaultdict(list), defaultdict(list)
        for mac in self.macs:
            macs[mac.subnet_id].append(mac)
        for sid, ip in self.floods:
            floods[sid].append(ip)
        return {sid: (tuple(macs.get(sid, ())), tuple(floods.get(sid, ()))) for sid in set(macs) | set(floods)}

    @cached_property
    def by_domain(self) -> dict[str, tuple[RemotePrefix, ...]]:
        """Domain id -> its remote prefixes."""
        out = defaultdict(list)
        for prefix in self.prefixes:
            out[prefix.domain_id].append(prefix)
        return {did: tuple(ps) for did, ps in out.items()}

    @cached_property
    def _by_mac(self) -> dict[tuple[str, str], tuple[RemoteMac, ...]]:
        out = defaultdict(list)
        for mac in self.macs:
            out[(mac.subnet_id, mac.mac)].append(mac)
        return {key: tuple(macs) for key, macs in out.items()}

    def macs_at(self, subnet_id: str, mac: str) -> tuple[RemoteMac, ...]:
        """The remote locations of one (subnet, MAC)."""
        return self._by_mac.get((subnet_id, mac), ())


def changed_scopes(old: RemoteTable, new: RemoteTable) -> tuple[set[str], set[str]]:
    """(subnet ids, domain ids) whose entries differ between two tables: the routes added or withdrawn."""
    if old is new:
        return set(), set()
    macs = set(old.macs) ^ set(new.macs)
    floods = set(old.floods) ^ set(new.floods)
    prefixes = set(old.prefixes) ^ set(new.prefixes)
    return {m.subnet_id for m in macs} | {sid for sid, _ in floods}, {p.domain_id for p in prefixes}


def prefix_order(prefix: RemotePrefix) -> tuple:
    """Domain, prefix, VTEP IP, then the rest: the same prefix from two peers sorts the same every time."""
    return (prefix.domain_id, prefix.prefix, prefix.vtep_ip, prefix.peer, prefix.router_mac, prefix.l3_vni)


@dataclass(frozen=True)
class RemoteDelta:
    """Entries of the RemoteTable (RemoteMac, (subnet id, VTEP IP) flood, RemotePrefix) that one import round
    added and removed; a changed entry is in both (its old value removed, its new one added)."""

    added: frozenset = frozenset()
    removed: frozenset = frozenset()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)

    def scopes(self) -> tuple[set[str], set[str]]:
        """(subnet ids, domain ids) the changed entries belong to."""
        subnets, domains = set(), set()
        for entry in self.added | self.removed:
            if isinstance(entry, RemoteMac):
                subnets.add(entry.subnet_id)
            elif isinstance(entry, RemotePrefix):
                domains.add(entry.domain_id)
            else:
                subnets.add(entry[0])
        return subnets, domains


COMPARE_TRIES = 3  # RemoteIndex.delta_to: comparisons started before it gives up on an index that keeps changing


class IndexChanged(RuntimeError):
    """The remote index kept changing while ``RemoteIndex.delta_to`` compared it (a caller broke its rule)."""


class RemoteIndex:
    """The RemoteTable kept as indexes updated by ``RemoteDelta``s (State's copy of what the import took):
    subnet -> MAC -> RemoteMac, subnet -> flood VTEP IPs, domain -> prefixes. ``table()`` builds the frozen
    table only when read whole, and keeps it until the next delta."""

    def __init__(self, table: RemoteTable | None = None):
        table = table or RemoteTable()
        self.macs: dict[str, dict[str, RemoteMac]] = defaultdict(dict)
        self.floods: dict[str, set[str]] = defaultdict(set)
        self.prefixes: dict[str, dict[RemotePrefix, None]] = defaultdict(dict)  # an ordered set per domain
        self._extra: dict[tuple[str, str], list[RemoteMac]] = {}  # a table with two locations for one MAC
        self.feeds = Feeds()  # the (subnet, MAC) pairs each delta reached, for readers keeping results by delta
        self.generation = 0  # deltas taken: ``delta_to`` knows by it whether the index changed during its pauses
        for mac in table.macs:
            self._add_mac(mac)
        for sid, ip in table.floods:
            self.floods[sid].add(ip)
        for prefix in table.prefixes:
            self.prefixes[prefix.domain_id][prefix] = None
        self._table = table

    def _add_mac(self, mac: RemoteMac) -> None:
        here = self.macs[mac.subnet_id]
        if mac.mac in here:  # the import gives one location per (subnet, MAC); a table given whole may not
            self._extra.setdefault((mac.subnet_id, mac.mac), []).append(mac)
        else:
            here[mac.mac] = mac

    def apply(self, delta: RemoteDelta) -> tuple[set, set[str], set[str]]:
        """Take a delta in; returns the (subnet, MAC) pairs, flood subnets and domains it reached."""
        macs, subnets, domains = set(), set(), set()
        for entry in delta.removed:
            if isinstance(entry, RemoteMac):
                self._drop_mac(entry)
                macs.add((entry.subnet_id, entry.mac))
            elif isinstance(entry, RemotePrefix):
                discard_from(self.prefixes, entry.domain_id, entry)
                domains.add(entry.domain_id)
            else:
                discard_from(self.floods, entry[0], entry[1])
                subnets.add(entry[0])
        for entry in delta.added:
            if isinstance(entry, RemoteMac):
                self._add_mac(entry)
                macs.add((entry.subnet_id, entry.mac))
            elif isinstance(entry, RemotePrefix):
                self.prefixes[entry.domain_id][entry] = None
                domains.add(entry.domain_id)
            else:
                self.floods[entry[0]].add(entry[1])
                subnets.add(entry[0])
        if delta:
            self._table = None
            self.generation += 1
        self.feeds.record(macs)
        return macs, subnets, domains

    def delta_to(self, table: RemoteTable, pacer) -> RemoteDelta | None:
        """The delta that makes this index hold ``table`` (an import from scratch: State takes it as any other),
        found entry by entry, ``pacer`` ticked per entry compared (10,000 MACs: ~10-40 ms of CPU); None when this index
        or ``table`` has two locations for one (subnet, MAC) (only a table given whole: it is then taken whole).
        The index should not change during the pauses (only the programming loop imports; ``table`` is frozen): if a
        delta was taken meanwhile (``generation``), the comparison starts again on the index as it is then, at most
        COMPARE_TRIES times in all, then raises IndexChanged (a delta found on an index that changed under it could
        miss or repeat entries)."""
        for _ in range(COMPARE_TRIES):
            generation = self.generation
            try:
                delta = self._delta_to(table, pacer)
            except RuntimeError:  # "dictionary changed size during iteration", if the index changed in a pause
                if self.generation == generation:
                    raise
                continue
            if self.generation == generation:
                return delta
        raise IndexChanged(f"the remote index took a delta during each of {COMPARE_TRIES} comparisons with an "
                           "imported table: something besides the import changes it")

    def _delta_to(self, table: RemoteTable, pacer) -> RemoteDelta | None:
        """``delta_to`` once, on an index that does not change meanwhile."""
        if self._extra:
            return None
        added, removed, seen = set(), set(), set()
        tick = pacer.tick
        for mac in table.macs:
            key = (mac.subnet_id, mac.mac)
            if key in seen:
                return None
            seen.add(key)
            old = self.mac(*key)
            if old is not mac and old != mac:
                added.add(mac)
                if old is not None:
                    removed.add(old)
            tick()
        for sid, here in self.macs.items():
            for mac, old in here.items():
                if (sid, mac) not in seen:
                    removed.add(old)
                tick()
        floods, prefixes = set(), set()
        for sid, ip in table.floods:
            floods.add((sid, ip))
            if ip not in self.floods.get(sid, ()):
                added.add((sid, ip))
            tick()
        for sid, ips in self.floods.items():
            removed.update((sid, ip) for ip in ips if (sid, ip) not in floods)
            tick(len(ips))
        for prefix in table.prefixes:
            prefixes.add(prefix)
            if prefix not in self.prefixes.get(prefix.domain_id, ()):
                added.add(prefix)
            tick()
        for here in self.prefixes.values():
            for prefix in here:
                if prefix not in prefixes:
                    removed.add(prefix)
                tick()
        return RemoteDelta(frozenset(added), frozenset(removed))

    def _drop_mac(self, mac: RemoteMac) -> None:
        if not self._extra:  # one location per (subnet, MAC): the import's case (10,000 withdrawn, one at a time)
            here = self.macs.get(mac.subnet_id)
            if here is not None and ((held := here.get(mac.mac)) is mac or (held is not None and held == mac)):
                del here[mac.mac]
                if not here:
                    del self.macs[mac.subnet_id]
            return
        key = (mac.subnet_id, mac.mac)
        extra = self._extra.get(key)
        if extra and mac in extra:
            extra.remove(mac)
        elif (held := self.macs.get(mac.subnet_id, {}).get(mac.mac)) is mac or held == mac:  # (a dataclass's ==
            # compares every field, even of the same object: the delta's MAC is the one held)
            if extra:
                self.macs[mac.subnet_id][mac.mac] = extra.pop(0)
            else:
                discard_from(self.macs, mac.subnet_id, mac.mac)
        if not extra:
            self._extra.pop(key, None)

    # ------------------------------------------------------------------ reading
    def several(self) -> bool:
        """Some (subnet, MAC) has more than one location (only a table given whole can have that)."""
        return bool(self._extra)

    def subnet_macs(self, sid: str) -> tuple[RemoteMac, ...]:
        here = self.macs.get(sid)
        if not here:
            return ()
        out = tuple(here.values())
        if self._extra:
            out += tuple(m for (s, _), extra in self._extra.items() if s == sid for m in extra)
        return out

    def mac(self, sid: str, mac: str) -> RemoteMac | None:
        """The location of one (subnet, MAC) (the first, should a table given whole have several)."""
        return self.macs.get(sid, {}).get(mac)

    def macs_at(self, sid: str, mac: str) -> tuple[RemoteMac, ...]:
        first = self.mac(sid, mac)
        return () if first is None else (first, *self._extra.get((sid, mac), ()))

    def subnet_floods(self, sid: str) -> tuple[str, ...]:
        return tuple(sorted(self.floods.get(sid, ())))

    def domain_prefixes(self, did: str) -> tuple[RemotePrefix, ...]:
        """The domain's prefixes in the table's order."""
        if self._table is not None:
            return self._table.by_domain.get(did, ())
        return tuple(sorted(self.prefixes.get(did, ()), key=prefix_order))

    def subnets(self) -> set[str]:
        """Subnets with MACs or flood targets."""
        return {sid for sid, macs in self.macs.items() if macs} | {sid for sid, ips in self.floods.items() if ips}

    def domains(self) -> set[str]:
        return {did for did, prefixes in self.prefixes.items() if prefixes}

    def table(self) -> RemoteTable:
        if self._table is None:
            macs = [m for here in self.macs.values() for m in here.values()]
            macs += [m for extra in self._extra.values() for m in extra]
            self._table = RemoteTable(
                macs=tuple(sorted(macs, key=lambda m: (m.subnet_id, m.mac, m.vtep_ip))),
                floods=tuple(sorted((sid, ip) for sid, ips in self.floods.items() for ip in ips)),
                prefixes=tuple(sorted((p for ps in self.prefixes.values() for p in ps), key=prefix_order)))
        return self._table
