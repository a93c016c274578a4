"""The integration bridge's interfaces as ``PortInfo`` values, kept current from row changes.

``BridgePorts`` holds one ``PortInfo`` per Interface of every Port on the bridge (except the bridge's own
internal interface), sorted by name. ``rebuild`` reads them all (the first copy, a bridge replaced, or no
change list); ``apply`` reads only the rows an ``ovsdb.rowchanges.RowChanges`` names: one port appearing costs
that port's rows, not the bridge's. Either way it returns the names of the ports whose ``PortInfo``
changed, and a ``PortInfo`` that did not change stays the same object (a name that goes and comes back in one update
with the columns it had included: ``_as_before``).

A port created or deleted is looked up in the bridge's ``ports`` column (one lookup, ``ovsdb.idl.references``),
never by reading the column; only when the bridge's port count disagrees with what was applied (a port
moved from another bridge, which ovs-vsctl never does), or the change does not say which columns changed (the
bridge row inserted again, the old protocol), is the column read in full. What still grows with
the bridge: the sorted tuple of references handed out is rebuilt on every change (a C-level copy, about a
microsecond per thousand ports).

An Interface row referenced by two Port rows of the bridge (ovs-vsctl never makes one; a buggy or hostile peer may) is
one port's: the port that held it first keeps it, the other claim is refused, counted (``refused_claims``) and
reported once through ``refused`` (the interface's name, the refused port's, the holder's). When the holder lets it go
the claim of the port with the smallest uuid still claiming it takes over, so the interface stays while a port
references it, as a fresh read finds it; a fresh read (``rebuild``) gives it to the port that held it before the
read, else to the port with the smallest uuid, whatever order the bridge lists its ports in.

Interface rows of one name (ovs-vsctl refuses one; a buggy or hostile peer may send them) are one port: the
interface's with the smallest uuid, whatever order they are read or applied in; the others of that name wait
(``_waiting``), and when the holder goes or is renamed the smallest of them takes the name at once, as a fresh read
(``ovsdb.vrs.bridge_ports``) finds it.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import logging
import operator
from collections.abc import Callable

from controller.discovery import PortInfo
from controller.pacer import NEVER, Pacer
from openflow.installed import paced
from ovsdb.idl import column_value, reference_count, reference_keys, referenced_rows, references
from ovsdb.rowchanges import row_key

LOG = logging.getLogger(__name__)
FEW_GONE = 32  # names gone in one update taken out of the sorted list one by one; more: the list filtered once
ROWS_PER_TICK = 10  # changed rows only looked at (read already, or not this bridge's), or ports dropped: one read
_DELETED = operator.attrgetter("deleted")  # of a RowChange
_NAME = operator.attrgetter("name")  # of a PortInfo
_NOT_BEFORE = object()  # ``BridgePorts._before`` of a name whose value before the update is not known: equal to none


class BridgePorts:
    """The ports of one bridge row, applied from deltas; ``ports`` is the sorted tuple of ``PortInfo``.
    ``pacer`` (controller/pacer.py) is ticked once per port or interface read (and per ``ROWS_PER_TICK`` changed
    rows only looked at, or ports dropped: 20,000 rows of new ports take ~20 ms to look at again, 10,000 ports
    deleted ~45 ms to drop), so that reading 10,000 new ports, or deleting them, gives the event loop turns;
    nothing else may use this object during those pauses."""

    def __init__(self, port_info: Callable[[object], PortInfo], pacer: Pacer = NEVER,
                 reread: Callable[[PortInfo, object, frozenset | None], PortInfo] | None = None,
                 refused: Callable[[str, str, str], None] | None = None):
        self._port_info = port_info  # Interface row -> PortInfo
        # (interface name, port whose claim of it is refused, port holding it): told once per claim
        self._refused = refused or (lambda iface, port, holder: LOG.warning(
            "interface %s is referenced by port %s and by port %s: it stays %s's, the claim of %s is refused",
            iface, port, holder, holder, port))
        self.pacer = pacer
        # (PortInfo read before, Interface row, its columns that changed or None) -> PortInfo: the same as port_info,
        # cheaper for a change of a few columns (ovsdb/vrs.py port_info_again)
        self._reread = reread or (lambda _old, iface, _columns: port_info(iface))
        self.bridge_key = None  # the bridge row these ports are of (None: none yet)
        self._bridge_name = ""
        self._members: dict = {}  # port key -> tuple of its interface keys
        self._rows: dict = {}  # port key -> its Port row (names the ports of a refused claim without a walk)
        self._iface_port: dict = {}  # interface key -> port key (the port holding it)
        self._others: dict = {}  # interface key -> set of the other ports claiming it (refused), while there are
        self.refused_claims = getattr(self, "refused_claims", 0)  # claims refused and reported (ever)
        self._told = getattr(self, "_told", set())  # (interface key, port key) of the refused claims reported
        self._untold: set = set()  # (interface key, port key) of claims refused since the last report
        self._infos: dict = {}  # interface key -> PortInfo
        self._by_name: dict[str, PortInfo] = {}
        self._name_key: dict = {}  # name -> key of the interface holding it (the smallest of that name)
        # name -> the keys of the other interfaces of that name, sorted (a hostile peer's 10,000 of one name deleted:
        # the next holder found by bisection, not by a pass over them each), while there are
        self._waiting: dict[str, list] = {}
        self._names: list[str] = []  # sorted (but for the names in ``_gone``, taken out at ``_flush_gone``)
        self._gone: set[str] = set()  # names no longer in ``_by_name``, still in ``_names`` (within ``apply``)
        self.ports: tuple[PortInfo, ...] = ()
        self.full_reads = getattr(self, "full_reads", 0)  # times every port of the bridge was read
        self._reuse: dict[str, PortInfo] = {}  # during rebuild: values to hand out again when equal
        # within ``apply``: name -> the PortInfo it had before the update (``_NOT_BEFORE``: not known), for a name that
        # went (``_unset``) or passed to another interface of that name (``_hand_over``), handed out again if it comes
        # back equal (``_went_from``); names gone in C loops (``_unset_all``) are kept as their PortInfos' lists, read
        # into ``_before`` only if a name comes back in that update (``_as_before``)
        self._before: dict[str, PortInfo] = {}
        self._went_runs: list[list[PortInfo]] = []
        # refused claims of a read not kept yet (``rebuilt``)
        self._held_claims: list = getattr(self, "_held_claims", [])
        self._refused_then = getattr(self, "_refused_then", self._refused)  # who is told them once it is kept
        self._bulk = False  # during rebuild: the names are sorted once at the end

    def holds_port(self, port_row) -> bool:
        """Whether ``port_row`` is one of the bridge's ports."""
        return row_key(port_row) in self._members

    def names_of(self, iface_keys) -> list[str]:
        """The names of the ports of the Interface rows ``iface_keys`` (row keys) that are on the bridge, in C loops
        (10,000 interfaces of a big delete). A name other interfaces share (``_waiting``) is one of them only when
        every interface of that name is among ``iface_keys``: else the name stays, held by one left (``_unset``)."""
        names = list(map(_NAME, filter(None, map(self._infos.get, iface_keys))))
        shared = self._waiting.keys() & set(names) if self._waiting else None
        if not shared:
            return names
        keys = set(iface_keys)
        whole = {name for name in shared if self._heir(name, keys) is None}
        return [name for name in names if name not in shared] + sorted(whole)

    def by_name(self) -> dict[str, PortInfo]:
        """{name: PortInfo} (the live mapping: do not change it)."""
        return self._by_name

    def clear(self) -> frozenset[str]:
        """No bridge: forget every port; returns the names that went."""
        gone = frozenset(self._by_name)
        self.__init__(self._port_info, self.pacer, self._reread, self._refused)
        self._told.clear()
        return gone

    def rebuilt(self, bridge, previous: dict[str, PortInfo] | None) -> tuple[BridgePorts, frozenset[str] | None]:
        """``rebuild`` into a new ``BridgePorts`` (its counts and claims carried on), this one left as it was: a read
        whose pauses another read may overtake (ovsdb/vrs.py) changes nothing until it is kept (``kept``): the claims
        it refuses are told then, not by a read dropped (the newer read tells them: once, not twice)."""
        held: list = []
        new = BridgePorts(self._port_info, self.pacer, self._reread, lambda *claim: held.append(claim))
        new.refused_claims, new.full_reads, new._told = self.refused_claims, self.full_reads, set(self._told)
        new._iface_port = dict(self._iface_port)  # who held each interface before the read (``_settle_claims``)
        new._held_claims, new._refused_then = held, self._refused
        return new, new.rebuild(bridge, previous)

    def kept(self) -> None:
        """The read ``rebuilt`` made is kept: the refused claims it found are told, and later ones as they come."""
        held, self._refused = self._held_claims, self._refused_then
        for claim in held:
            self._refused(*claim)
        held.clear()

    def rebuild(self, bridge, previous: dict[str, PortInfo] | None) -> frozenset[str] | None:
        """Read every port of ``bridge``. ``previous``: {name: PortInfo} last handed out for this switch
        (equal values are reused, and the result names what differs); None: nothing before, returns None."""
        held_before = self._iface_port
        self.__init__(self._port_info, self.pacer, self._reread, self._refused)
        self.bridge_key, self._bridge_name = row_key(bridge), bridge.name
        self.full_reads += 1
        self._reuse, self._bulk = previous or {}, True
        try:
            for port in referenced_rows(bridge, "ports"):  # their order does not matter: names are unique
                self._add_port(port, set())
        finally:
            self._reuse, self._bulk, self._before = {}, False, {}  # (a name passed on in the read: nothing before it)
        self._settle_claims(held_before)
        self._tell_refused()
        self._names = sorted(self._by_name)
        self._gone.clear()
        self.ports = tuple(map(self._by_name.__getitem__, self._names))
        if previous is None:
            return None
        return frozenset(n for n in set(previous) | set(self._by_name) if previous.get(n) is not self._by_name.get(n))

    def apply(self, bridge, changes) -> frozenset[str]:
        """Apply the changed rows of ``changes`` (an ``ovsdb.rowchanges.RowChanges``) for ``bridge``, the same
        bridge row as before; returns the names of the ports that changed."""
        changed: set[str] = set()
        done: set = set()
        dropped = 0
        ports = changes.table("Port")
        if ports and all(map(_DELETED, ports.values())):  # only ports deleted (a big delete's slice): together
            self._drop_ports(list(ports), changed)
            ports = {}
        held = self._held_now(bridge, ports) if ports else None
        for key, change in ports.items():  # ports created or deleted: one lookup each
            if change.deleted:
                self._drop_port(key, changed)
                dropped += 1
                if dropped % ROWS_PER_TICK == 0:  # 10,000 ports deleted: ~45 ms of dropping in one stretch before
                    self.pacer.tick()
            elif key not in self._members and change.columns is None and \
                    (key in held if held is not None else references(bridge, "ports", change.row)):
                done.update(self._add_port(change.row, changed))
                done.add(key)
        bridge_change = changes.table("Bridge").get(self.bridge_key)
        if bridge_change is not None and (bridge_change.columns is None or (  # a whole row again: any ports
                "ports" in bridge_change.columns and reference_count(bridge, "ports") != len(self._members))):
            self._resync_members(bridge, changed, done)  # a port moved between bridges: read them all
        for key, change in self._looked_at(changes.table("Port")):
            if key in self._members and key not in done and not change.deleted and \
                    (change.columns is None or "interfaces" in change.columns):
                done.update(self._reset_port(change.row, changed))
        for key, change in self._looked_at(changes.table("Interface")):
            if key in self._iface_port and key not in done and not change.deleted:
                self._update_iface(key, change.row, changed, change.columns)
        if self._untold:
            self._tell_refused()
        self._flush_gone()
        if self._before or self._went_runs:
            self._came_back(changed)
        if changed:
            self.ports = tuple(map(self._by_name.__getitem__, self._names))
        return frozenset(changed)

    @staticmethod
    def _held_now(bridge, ports: dict) -> set | None:
        """The keys of the ports ``bridge`` holds, when many ports changed (more than an eighth of the bridge's: a
        slice of a big insert), read at once (``reference_keys``: C loops); else None (each new port looked up)."""
        if len(ports) * 8 < reference_count(bridge, "ports"):
            return None
        return reference_keys(bridge, "ports")

    def _looked_at(self, rows: dict):
        """The items of ``rows`` but the deleted rows' (skipped in C loops: a big delete's 10,000 ports and 10,000
        interfaces, which the loops reading them skip), ticking the pacer once per ``ROWS_PER_TICK`` (a remainder
        ticks no unit)."""
        tick = self.pacer.tick
        items = itertools.compress(rows.items(), map(operator.not_, map(_DELETED, rows.values())))
        return paced(items, lambda n: tick(n // ROWS_PER_TICK), ROWS_PER_TICK)

    def _resync_members(self, bridge, changed: set, done: set) -> None:
        self.full_reads += 1
        now = {row_key(p): p for p in referenced_rows(bridge, "ports")}
        for key in self._members.keys() - now.keys():
            self._drop_port(key, changed)
        for key in now.keys() - self._members.keys():
            done.update(self._add_port(now[key], changed))
            done.add(key)

    # ------------------------------------------------------------------ one port or interface
    def _add_port(self, port, changed: set, known: frozenset = frozenset()) -> list:
        """Follow ``port`` and read its interfaces (except those in ``known``, and those another port holds: that
        claim is refused); returns the keys of those read."""
        self.pacer.tick()
        ifaces = [i for i in column_value(port, "interfaces") or [] if column_value(i, "name") != self._bridge_name]
        keys = [row_key(i) for i in ifaces]
        port_key = row_key(port)
        self._members[port_key] = tuple(keys)
        self._rows[port_key] = port
        read = []
        for key, iface in zip(keys, ifaces):
            if key in known:
                continue
            holder = self._iface_port.setdefault(key, port_key)
            if holder != port_key:
                self._others.setdefault(key, set()).add(port_key)
                self._untold.add((key, port_key))
                continue
            self._set(key, self._port_info(iface), changed)
            read.append(key)
        return read

    def _drop_ports(self, keys: list, changed: set) -> None:
        """``_drop_port`` of each of ``keys`` (ports deleted), ticking the pacer as ``apply`` does (once per
        ``ROWS_PER_TICK`` ports). When no claim was ever refused (each interface held by the one port listing it:
        checked), a run of ports between two pauses at a time in C loops (``map``) but for each name gone: a big
        delete's 10,000 ports made three Python calls each here (``_drop_port``, ``_release``, ``_unset``)."""
        start = 0
        while start < len(keys):
            run = keys[start:start + self.pacer.due() * ROWS_PER_TICK]
            start += len(run)
            members = list(map(self._members.get, run, itertools.repeat(())))
            ifaces = list(itertools.chain.from_iterable(members))
            owners = list(itertools.chain.from_iterable(map(itertools.repeat, run, map(len, members))))
            if self._others or self._told or self._waiting or list(map(self._iface_port.get, ifaces)) != owners:
                for key in run:
                    self._drop_port(key, changed)
            else:
                collections.deque(map(self._rows.pop, run, itertools.repeat(None)), maxlen=0)
                collections.deque(map(self._members.pop, run, itertools.repeat(None)), maxlen=0)
                collections.deque(map(self._iface_port.pop, ifaces), maxlen=0)
                self._unset_all(ifaces, changed)
            self.pacer.tick(len(run) // ROWS_PER_TICK)

    def _unset_all(self, ifaces: list, changed: set) -> None:
        """``_unset`` of each of ``ifaces`` (interfaces gone, none of them claimed twice, no name shared: each holds its
        name), in C loops."""
        infos = list(filter(None, map(self._infos.pop, ifaces, itertools.repeat(None))))
        self._went_runs.append(infos)
        names = list(map(_NAME, infos))
        collections.deque(map(self._by_name.pop, names), maxlen=0)
        collections.deque(map(self._name_key.pop, names), maxlen=0)
        self._gone.update(names)
        changed.update(names)

    def _drop_port(self, port_key, changed: set) -> None:
        self._rows.pop(port_key, None)
        for key in self._members.pop(port_key, ()):
            self._release(key, port_key, changed)

    def _release(self, key, port_key, changed: set) -> None:
        """``port_key`` no longer claims interface ``key``: if it held it, the port with the smallest key among the
        others claiming it takes it over (the same row: its ``PortInfo`` stays), else it goes. A row moved between
        ports in one update, the port taking it applied first, is handed over so."""
        others = self._others.get(key)
        if others is not None and port_key != self._iface_port.get(key):
            others.discard(port_key)
        elif others:
            self._iface_port[key] = heir = min(others)
            others.discard(heir)
            self._told.discard((key, heir))
        elif self._iface_port.get(key) == port_key:
            del self._iface_port[key]
            self._unset(key, changed)
        if others is not None and not others:
            del self._others[key]
        self._told.discard((key, port_key))

    def _settle_claims(self, held_before: dict) -> None:
        """After a fresh read: an interface claimed by several ports stays with the one that held it before the read,
        else goes to the one with the smallest key (not to whichever the bridge listed first)."""
        for key, others in self._others.items():
            holder = self._iface_port[key]
            claims = others | {holder}
            heir = held_before.get(key)
            heir = heir if heir in claims else min(claims)
            if heir != holder:
                self._iface_port[key] = heir
                others.discard(heir)
                others.add(holder)
                self._untold.add((key, holder))
        self._told = {(key, port) for key, port in self._told if port in self._others.get(key, ())}

    def _tell_refused(self) -> None:
        """Report each refused claim not reported yet, naming the interface and both ports, read from their rows (kept
        by ``_add_port``): O(1) per claim, not a walk of the bridge's ports per update bringing one (a hostile peer's
        update after update, each log line then throttled, made that O(ports) each)."""
        new = [(key, port) for key, port in self._untold
               if port in self._others.get(key, ()) and (key, port) not in self._told]
        self._untold.clear()
        for key, port in new:
            self._told.add((key, port))
            self.refused_claims += 1
            self._refused(self._infos[key].name, self._port_name(port), self._port_name(self._iface_port[key]))

    def _port_name(self, port_key) -> str:
        row = self._rows.get(port_key)
        return str(port_key) if row is None else column_value(row, "name", str(port_key))

    def _reset_port(self, port, changed: set) -> list:
        """``port``'s interfaces changed: drop the ones it no longer has, read the new ones; returns the keys of
        those read (the ones it kept are not: a change of their own rows in the same update is still to apply)."""
        port_key = row_key(port)
        before = frozenset(self._members.get(port_key, ()))
        read = self._add_port(port, changed, before)
        for key in before.difference(self._members[port_key]):
            self._release(key, port_key, changed)
        return read

    def _update_iface(self, key, iface, changed: set, columns: frozenset | None = None) -> None:
        self.pacer.tick()
        old = self._infos.get(key)
        info = self._port_info(iface) if old is None else self._reread(old, iface, columns)
        if old is not None and (info is old or old == info):  # the same value handed back (an ofport -1 -> -1 etc.)
            return
        self._set(key, info, changed)

    def _set(self, key, info: PortInfo, changed: set) -> None:
        old = self._infos.get(key)
        if old is not None and old.name != info.name:
            self._unset(key, changed)
        again = self._reuse.get(info.name)
        if again is not None and again == info:
            info = again
        elif self._before or self._went_runs:
            info = self._as_before(info)
        self._infos[key] = info
        holder = self._name_key.setdefault(info.name, key)
        if holder != key:
            self._share_name(info.name, key, holder, changed)
            return
        if info.name not in self._by_name and not self._bulk:
            self._flush_gone()  # a name that went and comes back is in ``_names`` once
            bisect.insort(self._names, info.name)
        self._by_name[info.name] = info
        changed.add(info.name)

    def _share_name(self, name: str, key, holder, changed: set) -> None:
        """Interface ``key`` has the name interface ``holder`` holds (``key`` read again, waiting already, or new to
        the name): the smaller key of the two holds it, the other waits."""
        waiting = self._waiting.setdefault(name, [])
        at = bisect.bisect_left(waiting, key)
        if key > holder:
            if at == len(waiting) or waiting[at] != key:
                waiting.insert(at, key)
        else:
            bisect.insort(waiting, holder)
            self._hand_over(name, key, changed)

    def _hand_over(self, name: str, heir, changed: set) -> None:
        """Interface ``heir`` holds ``name`` now: the name's ``PortInfo`` is its (an equal one stays, the same object,
        not told changed)."""
        self._name_key[name] = heir
        held, info = self._by_name[name], self._infos[heir]
        if info == held:
            self._infos[heir] = held
            return
        self._went_from(name, held, changed)
        self._infos[heir] = info = self._as_before(info)
        self._by_name[name] = info
        changed.add(name)

    def _unset(self, key, changed: set) -> None:
        """Interface ``key`` is gone, or is to be named otherwise: its name goes with it, or to the smallest of the
        interfaces waiting for it."""
        info = self._infos.pop(key, None)
        if info is None:
            return
        name = info.name
        waiting, heir = self._waiting.get(name), self._heir(name, (key,))
        if heir is None:
            del self._name_key[name], self._by_name[name]
            self._went_from(name, info, changed)
            self._gone.add(name)
            changed.add(name)
        elif heir == self._name_key[name]:  # ``key`` was waiting: the holder keeps it
            del waiting[bisect.bisect_left(waiting, key)]
        else:  # ``key`` held it: the first waiting takes it
            del waiting[0]
            self._hand_over(name, heir, changed)
        if waiting is not None and not waiting:
            del self._waiting[name]

    def _heir(self, name: str, leaving) -> object | None:
        """The interface holding ``name`` once the interfaces ``leaving`` (keys) are gone: the one of that name with the
        smallest key left (the holder, else the first waiting that stays); None: the name goes with them. The one
        rule of a shared name's holder, for ``_unset`` and ``names_of``."""
        stay = itertools.filterfalse(leaving.__contains__, itertools.chain((self._name_key[name],),
                                                                           self._waiting.get(name, ())))
        return next(stay, None)

    def _went_from(self, name: str, info: PortInfo, changed: set) -> None:
        """``name`` goes, or passes to another interface, from ``info``: its value before the update, unless it changed
        earlier in the update (``changed``: new in it, or changed in place), whose value before is then not known
        (``_NOT_BEFORE``: before stop 50's review, the value it had in the update was taken for it, and a name new in
        the update that came back to it was told unchanged, left out of ``ports``)."""
        self._before.setdefault(name, info if name not in changed else _NOT_BEFORE)

    def _as_before(self, info: PortInfo) -> PortInfo:
        """``info``, or the PortInfo its name had before this update when the name went or passed to another interface
        in it and comes back equal."""
        if self._went_runs:
            for run in self._went_runs:
                for old in run:
                    self._before.setdefault(old.name, old)
            self._went_runs.clear()
        before = self._before.get(info.name)
        return before if before is not None and before == info else info

    def _came_back(self, changed: set) -> None:
        """The end of ``apply``: a name that went and came back with the PortInfo it had before (the same object:
        ``_as_before``) did not change (before stop 50 it was told changed: work downstream for nothing)."""
        by_name = self._by_name
        changed.difference_update([name for name, info in self._before.items() if by_name.get(name) is info])
        self._before, self._went_runs = {}, []

    def _flush_gone(self) -> None:
        """Take the names in ``_gone`` out of ``_names``: each found by bisection when few, else the list filtered once
        (10,000 ports deleted in slices: a deletion from the list per port moved half of it each time)."""
        gone = self._gone
        if len(gone) <= FEW_GONE:
            names = self._names
            for name in gone:
                i = bisect.bisect_left(names, name)
                if i < len(names) and names[i] == name:
                    del names[i]
        else:  # (C loops: the bridge's names at each slice of 10,000 ports deleted)
            self._names = list(itertools.filterfalse(gone.__contains__, self._names))
        gone.clear()
