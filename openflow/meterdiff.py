"""A switch reconciler's meters (openflow/meters.py): read back at connect, and which to add, modify or delete, looking
only at the meters that may differ: those whose desired, installed or refused entry changed since they were last found
in sync (DESIGN "Scale": one port added to a switch of 5,000 vports diffs its one meter, not 5,000;
tests/unit/test_meter_diff.py counts it).

``MeterSync`` is a part of ``openflow.reconciler.SwitchReconciler`` (which inherits it, as ``ChangeSender``): it keeps
the ids to look at in a set, ``_meter_todo``. An id joins it when the count of the desired flows' meters gains or loses
it (``_count_owners``: ``_want_meter``), and when the switch confirms or refuses a meter (openflow/reconciler_send.py:
``_meter_changed``); after a read-back (or a count from scratch) every desired and installed meter is looked at
(``whole``). ``changes`` leaves in it only the adds and modifies still to confirm, and moves the ids to delete to a set
of their own, ``_stale_meters``, which only their delete pass looks at: an add or modify pass costs what changed, not
the deletes waiting (any change of an id puts it back in ``_meter_todo``).

Deletes go in a change set of their own at the end of every round (``_send_meter_deletes``), after the round's flows:
a meter's delete deletes the flows naming it, so a stale meter is left for a later round while a flow may still name it
on the switch or be about to: the flows, installed or desired, of the owners changed since the last plan or count
(``held``; any other owner's installed flows are its desired ones as last counted, which name no stale meter). A vport moved to
another ofport has its old flow replaced first, in the next plan. A port handed out during the delete pass's pauses
(making, encoding) may name a meter it deletes (a freed ofport reused at once: the same meter id): the change set is
dropped unsent (``_deletes_outdated``), the port counted, and the meter kept: no delete and add again; after
``MAX_REPLANS`` drops in a row it is sent as made (a delete and an add again, never a flow's meter deleted under it).
So a stale meter is deleted within a few rounds whatever the stream of changes (tests/unit/test_meter_diff.py).
"""

from __future__ import annotations

from itertools import repeat

from openflow import encode, meters, ryumsg
from openflow.changeset import ChangeSet
from openflow.installed import EMPTY
from openflow.meters import Meter

KINDS = ("meter_add", "meter_modify")  # the kinds ``changes`` finds; deletes: ``stale_deletes``
HELD_PART = 500  # owners whose flows are looked at between two ticks (``_meters_held``: in C)


def whole(want: dict, have: dict) -> set:
    """Every meter id to look at after a read-back: the desired and the installed ones."""
    return want.keys() | have.keys()


def changes(todo: set, want: dict, have: dict, refused: dict, adds: bool, keep: bool, tick, stale: set) -> dict:
    """{kind: [(meter id, Meter)]} for the ids of ``todo`` (sorted), each kind of KINDS present: adds and modifies of
    the desired meters (``want``) missing from or differing on the switch (``have``: id -> Meter, None when not of
    Canopy's shape), only if ``adds`` (a switch with meters). The installed ones no longer desired move from ``todo``
    to ``stale`` (deleted by their own pass), unless ``keep`` (keep_stale, whose end reads the switch back: every
    meter looked at again). Ids ``refused`` are left alone. Ids found in sync or kept leave ``todo``; ``tick()`` once
    an id (the reconciler's pacer: the look after a read-back covers every meter)."""
    parts: dict = {kind: [] for kind in KINDS}
    for mid in sorted(todo):
        tick()
        kind = _kind(mid, want, have, refused, adds)
        if kind == "meter_delete" and not keep:
            stale.add(mid)
        if kind is None or kind == "meter_delete":
            todo.discard(mid)
        else:
            parts[kind].append((mid, want[mid]))
    return parts


def stale_deletes(ids: list, have: dict) -> list:
    """The meter deletes of ``ids`` (installed, no longer desired), as a change set lists them."""
    return [(mid, have[mid] or Meter(mid, 0, 0)) for mid in ids]


def _kind(mid: int, want: dict, have: dict, refused: dict, adds: bool) -> str | None:
    """The change meter ``mid`` needs, None if none (in sync, refused, or desired on a switch taking no adds)."""
    if mid in refused:
        return None
    if mid in want:
        if not adds:
            return None
        if mid not in have:
            return "meter_add"
        return "meter_modify" if have[mid] != want[mid] else None
    return "meter_delete" if mid in have else None


class MeterSync:
    """The meters of one switch's reconciler (module docstring)."""

    def _read_meters(self) -> bool | None:
        """Read the switch's meter features and, if it has meters, Canopy's meters (openflow/meters.py); False: it
        has none (its flows go without their meter instruction, one warning); None: it did not answer."""
        features = self._request(ryumsg.meter_features_request(self.datapath))
        if features is None:
            return None
        most = getattr(features[0], "max_meter", 0) if features else 0
        # a switch that refuses to list its meters: as one without (not a read-back failing every RETRY_DELAY)
        config = self._request(ryumsg.meter_config_request(self.datapath)) if most else False
        if config is None:
            return None
        if config is False:
            why = "meter configuration refused" if most else features and "max_meter 0" or "meter features refused"
            note = f"the switch has no meters ({why}): packets to the controller are not metered (docs/vrs.md)"
            if note != self.meter_note:
                self._log.warning("%s", note)
            self._set_meter_support(False, note)
            self._installed_meters, self._meter_todo = {}, None
            return False
        self._set_meter_support(True, None)
        self._installed_meters = {m.meter_id: meters.decode_config(self.ofp, m) for m in config
                                  if m.meter_id in meters.METER_IDS}
        self._rejected_meters, self._meter_todo = {}, None  # every meter diffed after a read-back
        return True

    def _set_meter_support(self, on: bool, note: str | None) -> None:
        if on != self.meter_support:
            self._wire = encode.WireEncoder(self.ofp, meters=on)
        self.meter_support, self.meter_note = on, note

    _deleting_meters: frozenset = frozenset()  # the ids of the meter deletes being made or sent

    def _send_meters(self) -> bool:
        """Send the meter adds and modifies (``_meter_parts``) as a change set of their own; False if there were
        none."""
        return self._send_meter_set({kind: items for kind, items in self._meter_parts().items() if items})

    def _send_meter_set(self, parts: dict) -> bool:
        """Send ``parts`` (kind -> [(meter id, Meter)]) as a change set of their own, messages and a barrier (Open
        vSwitch takes no meter-mod in a bundle), so that the flows' change sets stay atomic bundles; False if empty."""
        changes = ChangeSet(parts)
        if not changes:
            return False
        self._plan_version = self._book.version  # (no flow planned: nothing of the book's to outdate it)
        self._execute(changes)
        return True

    def _send_meter_deletes(self) -> bool:
        """Delete the stale meters no flow may name (module docstring: ``_meters_held``), in a change set of their own
        after the round's flows; False if none was sent. Nothing while flows are kept (keep_stale), a read-back is due,
        or the owners changed are not known (a full plan or count is due)."""
        if self._keep or self._need_read or self._hold or self._not_master or self.meter_support is None \
                or self._book.dirty is None or self._meter_dirty is None:
            return False
        if self._meter_todo is not None and not self._meter_todo and not self._stale_meters:
            return False  # (most rounds: nothing to look at)
        seen = set(self._meter_dirty)  # owners changed since: ``_deletes_outdated`` looks at theirs
        self._meter_parts()  # the ids changed since the round's add pass: their deletes too (it may pause)
        if not self._stale_meters or self._book.dirty is None:
            return False
        ids = sorted(self._stale_meters - self._meters_held())
        if not ids:
            return False
        self._deleting_meters, self._delete_seen = frozenset(ids), seen
        try:
            return self._send_meter_set({"meter_delete": stale_deletes(ids, self._installed_meters)})
        finally:
            self._deleting_meters = frozenset()

    def _meters_held(self) -> set:
        """The meters named by the flows, installed or desired, of the owners changed since the last plan or the last
        count (those of the kinds that punt, HELD_PART at a time, their flows looked at in C): what a meter's delete
        could take down with it, or what is about to name it again (an owner changed after the last count may have
        been planned, its new flow installed, naming a meter the count still finds stale: a freed ofport reused)."""
        book, owners = self._book, meters.punting(list(self._book.dirty | self._meter_dirty))
        held: set = set()
        for start in range(0, len(owners), HELD_PART):
            part = owners[start:start + HELD_PART]
            desired = book.desired  # as it is now (a full set_desired replaces the dict)
            flowsets = [*map(book.installed.get, part, repeat(EMPTY)), *map(desired.get, part, repeat(EMPTY))]
            held |= meters.named_in(flowsets)
            self.pacer.tick(sum(map(len, flowsets)))
        return held

    def _deletes_outdated(self) -> bool:
        """Whether the meter deletes being made or sent would delete a meter a desired flow names again: an owner
        changed since they began whose flows name one of them (a port handed the freed ofport: the same meter id), or
        a change whose owners are not known. Looks only at the owners new since it last looked."""
        if not self._deleting_meters:
            return False
        dirty, seen = self._meter_dirty, self._delete_seen
        if dirty is None:
            return True
        if len(dirty) == len(seen):  # (it only grows between two counts, and none runs meanwhile)
            return False
        new = list(dirty - seen)
        seen.update(new)
        desired = self._book.desired
        return not self._deleting_meters.isdisjoint(meters.named_in(map(desired.get, new, repeat(EMPTY))))

    def _meter_parts(self) -> dict:
        """The meter adds and modifies (sent before the flows: a meter is on the switch before the flows that name
        it); the stale meters found on the way join ``_stale_meters`` (never while ``keep_stale``). Only the meters
        that may differ are looked at (``changes``; every one after a read-back). No adds or modifies on a switch
        without meters (or that refused one: its flows go without them), but its stale meters are deleted all the
        same; nothing before the read-back."""
        if self.meter_support is None:
            return {}
        want, have = self._desired_meters, self._installed_meters
        if self._meter_todo is None:
            self._meter_todo, self._stale_meters = whole(want, have), set()
        return changes(self._meter_todo, want, have, self._rejected_meters, self.meter_support, self._keep,
                       self.pacer.tick, self._stale_meters)

    def _want_meter(self, mid: int, wanted: bool) -> None:
        """The meter ``mid`` is named by a desired flow now (``wanted``) or by none any more: desired, to be diffed."""
        if wanted:
            self._desired_meters[mid] = meters.meter(mid, self._meter_rates)
        else:
            self._desired_meters.pop(mid, None)
        self._meter_changed(mid)

    def _meter_changed(self, mid: int) -> None:
        """The desired, installed or refused entry of meter ``mid`` changed: diffed again (module docstring)."""
        if self._meter_todo is not None:
            self._meter_todo.add(mid)
            self._stale_meters.discard(mid)
