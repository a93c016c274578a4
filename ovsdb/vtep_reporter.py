"""The reporter of a hardware VTEP's OVSDB session: its Physical_Switch's snapshots, keyed by name, fed to State
through the claims (ovsdb/claims.py ``VtepClaims``), with the local MACs that changed kept from row changes.

The snapshot itself is read by ovsdb/vtep.py ``build_vtep_snapshot``; the rows Canopy writes are planned there too.

Reading the local MACs ticks a pacer per row (the session's: ovsdb/peersession.py): a switch's 10,000 local MACs read
whole (at connect, or when a snapshot table other than Ucast_Macs_Local changes) were one stretch of ~130 ms of CPU
(tests/unit/test_paced_wiring.py). In its pauses another session may make this one speak (``speak``): that reads
the same rows, already complete, whole, as ovsdb/vrs.py's reporter does. A speak in another green thread (the
speaker's session gone while this one is idle) pauses too, and this session's own next update may be read in those
pauses: a read that a newer one began in its pauses is dropped (``_reads``), the newer one reports.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
from collections.abc import Iterable

from controller.discovery import DiscoverySink, VtepMac, VtepSnapshot, mac_order
from controller.logs import Throttle
from controller.pacer import NEVER, Pacer
from ovsdb.claims import Claimant, VtepClaims, vtep_key
from ovsdb.rowchanges import row_key
from ovsdb.vtep import SNAPSHOT_TABLES, build_vtep_snapshot, local_mac


class LocalMacs:
    """The ``VtepMac`` of each Ucast_Macs_Local row, kept from row changes, and their sorted set."""

    def __init__(self, rows: Iterable, read, pacer: Pacer = NEVER):
        self._read = read  # row -> VtepMac or None
        self._of: dict = {}  # row_key -> VtepMac
        self._count: dict[VtepMac, int] = {}
        self._sorted: list[VtepMac] = []
        self._appeared_or_went: set[VtepMac] = set()  # since take_changed
        self._keys: list[tuple] = []  # mac_order of _sorted, for bisect
        for row in rows:
            self.row_changed(row_key(row), row)
            pacer.tick()

    def sorted(self) -> tuple[VtepMac, ...]:
        return tuple(self._sorted)

    def take_changed(self) -> set[VtepMac]:
        """The MACs that appeared or went since the last call."""
        out, self._appeared_or_went = self._appeared_or_went, set()
        return out

    def row_changed(self, uuid, row) -> None:
        old = self._of.pop(uuid, None)
        if old is not None:
            self._count[old] -= 1
            if not self._count[old]:
                del self._count[old]
                i = bisect.bisect_left(self._keys, mac_order(old))
                del self._keys[i], self._sorted[i]
                self._appeared_or_went ^= {old}
        mac = self._read(row) if row is not None else None
        if mac is None:
            return
        self._of[uuid] = mac
        self._count[mac] = self._count.get(mac, 0) + 1
        if self._count[mac] == 1:
            i = bisect.bisect_left(self._keys, mac_order(mac))
            self._keys.insert(i, mac_order(mac))
            self._sorted.insert(i, mac)
            self._appeared_or_went ^= {mac}


class VtepReporter(Claimant):
    """Reports one OVSDB session's hardware VTEP snapshots, keyed by Physical_Switch name, through ``claims``
    (``ovsdb.claims.VtepClaims``) to its sink (vtep_update / vtep_gone).

    The snapshot reported has ``session`` = the switch key (``vtep:<name>``) and ``changed`` = the local MACs
    added or removed since the last snapshot reported for that key (by any session; None when there was none).
    A switch is reported only while this session speaks for it, and only when its snapshot changed. ``gone()``
    ends the claim (once); the claims decide when the switch is reported gone. Without ``claims`` the reporter
    has its own, with no grace (gone at once).
    """

    def __init__(self, sink: DiscoverySink, session: str, peer: str, log: logging.Logger | None = None,
                 claims: VtepClaims | None = None, pacer: Pacer = NEVER):
        self.session = session  # the connection's name (logs, sessions())
        self.pacer = pacer  # ticked per local MAC row read (module docstring)
        self.peer = peer
        self._log = log or logging.getLogger(__name__)
        self._claims = claims if claims is not None else VtepClaims(sink, 0.0, self._log)
        self._many_logged: tuple[str, ...] = ()
        self._bad = Throttle(self._log)
        self._local: LocalMacs | None = None
        self._rows: tuple = ((), ())  # the last switches and local MAC rows read (speak reads them again)
        self.key: str | None = None  # the switch key this session claims
        self.last: VtepSnapshot | None = None  # this session's latest snapshot (reported or not)
        self._changed: set[VtepMac] | None = None  # local MACs changed since the switch was last reported
        self._gone = False
        self._reads = 0  # refreshes begun: one that a newer one began in its pauses is dropped (module docstring)

    @property
    def speaking(self) -> bool:
        """Whether this session speaks for its switch (see ovsdb/claims.py)."""
        return self.key is not None and self._claims.speaker(self.key) is self

    def refresh(self, switches: Iterable, local_macs: Iterable, changes=None) -> bool:
        """Read the current rows; report and return True if the snapshot changed. With ``changes``
        (``ovsdb.rowchanges.RowChanges``) touching no snapshot table but Ucast_Macs_Local, only the local MACs
        named there are read again (``local_macs``, rows or a function returning them, is not read)."""
        if self._gone:
            return False
        self._reads += 1
        read = self._reads
        switches = list(switches)
        self._rows = (switches, local_macs)
        self._note_many(switches)
        local = self._local
        if changes is None or local is None or any(changes.table(t) for t in SNAPSHOT_TABLES
                                                    if t != "Ucast_Macs_Local"):
            rows = local_macs() if callable(local_macs) else local_macs
            local = LocalMacs(rows, lambda row: local_mac(row, self._bad_value), self.pacer)
            if read != self._reads or self._gone:  # a newer read began in a pause (it reports), or the session ended
                return False
            self._local = local
            self._changed = None  # compared with the last snapshot reported below
        else:
            for uuid, change in changes.table("Ucast_Macs_Local").items():
                local.row_changed(uuid, None if change.deleted else change.row)
                self.pacer.tick()
            if read != self._reads or self._gone:  # (a speak: it set ``_local`` aside and read the rows whole)
                return False
            if self._changed is not None:
                self._changed |= local.take_changed()
        local.take_changed()
        snap = build_vtep_snapshot(self.session, self.peer, switches, (), self._bad_value)
        if snap is None:
            return self._switch_deleted()
        key = vtep_key(snap.name)
        if key != self.key:
            if self.key is not None:
                self._claims.leave(self.key, self, now=True)
            self.key, self._changed = key, None
            self._claims.join(key, self)
        macs = local.sorted()
        self.last = dataclasses.replace(snap, session=key, local_macs=macs, changed=self._delta(key, macs))
        if not self.speaking:
            return False
        self._changed = set()
        return self._claims.report(key, self.last)

    def _switch_deleted(self) -> bool:
        """The database no longer holds a Physical_Switch (deleted by hand): the VTEP is gone at once, as a renamed
        one is, rather than shown connected with its old ports and bindings while it forwards nothing."""
        if self.key is None:
            return False
        if self.speaking:  # else another session speaks for it: that one's database says whether it is gone
            self._log.warning("ovsdb %s: hardware VTEP %s: its Physical_Switch row was deleted: gone until one is "
                              "created again", self.peer, self.last.name)
        self._claims.leave(self.key, self, now=True)
        self.key, self.last, self._changed = None, None, None
        return True

    def _delta(self, key: str, macs: tuple[VtepMac, ...]) -> frozenset[VtepMac] | None:
        """The local MACs changed since the last snapshot reported for ``key``: from the rows that changed, or
        (after a full read, or another session reported last) by comparing with that snapshot."""
        if self._changed is not None and self.speaking:
            return frozenset(self._changed)
        last = self._claims.last(key)
        return None if last is None else frozenset(set(last.local_macs).symmetric_difference(macs))

    def speak(self) -> None:
        """This session speaks for its switch again (the speaker went): report its rows as they are."""
        self._changed = None
        switches, local_macs = self._rows
        self._local = None
        self.refresh(switches, local_macs)

    def _bad_value(self, what: str, value, reason: str) -> None:
        self._bad.warning((what, str(value)[:64]), "ovsdb %s: hardware VTEP: ignoring %s %r: %s", self.peer,
                          what, value, reason)

    def _note_many(self, switches: list) -> None:
        names = tuple(sorted(row.name for row in switches))
        if len(names) > 1 and names != self._many_logged:
            self._log.warning("ovsdb %s: %d physical switches (%s); managing only %s", self.peer,
                              len(names), ", ".join(names), names[0])
        self._many_logged = names if len(names) > 1 else ()
