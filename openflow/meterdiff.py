"""A switch reconciler's meters (openflow/meters.py): read back at connect, and which to add, modify or delete, looking
only at the meters that may differ: those whose desired, installed or refused entry changed since they were last found
in sync (DESIGN "Scale": one port added to a switch of 5,000 vports diffs its one meter, not 5,000;
tests/unit/test_meter_diff.py counts it).

``MeterSync`` is a part of ``openflow.reconciler.SwitchReconciler`` (which inherits it, as ``ChangeSender``): it keeps
the ids to look at in a set, ``_meter_todo``. An id joins it when the count of the desired flows' meters gains or loses
it (``_count_owners``: ``_want_meter``), and when the switch confirms or refuses a meter (openflow/reconciler_send.py:
``_meter_changed``); after a read-back (or a count from scratch) every desired and installed meter is looked at
(``whole``). ``changes`` leaves in it only the ids that still differ (a meter to add, modify or delete), looked at
again until the switch has confirmed them.

Deletes go in a change set of their own once no flow is left to change and no change came during the plan (``_sync``:
a meter's delete deletes the flows naming it, so a vport moved to another ofport has its old flow replaced first); a port
handed out during their pauses (making, encoding) may name a meter they delete (a freed ofport reused at once: the same
meter id), so such a change set is dropped unsent (``_interrupted``), the port counted, and the meter kept: no delete
and add again.
"""

from __future__ import annotations

from openflow import encode, meters, ryumsg
from openflow.changeset import ChangeSet
from openflow.meters import Meter

KINDS = ("meter_add", "meter_modify", "meter_delete")


def whole(want: dict, have: dict) -> set:
    """Every meter id to look at after a read-back: the desired and the installed ones."""
    return want.keys() | have.keys()


def changes(todo: set, want: dict, have: dict, refused: dict, adds: bool, keep: bool, tick) -> dict:
    """{kind: [(meter id, Meter)]} for the ids of ``todo`` (sorted), each kind of KINDS present: adds and modifies of
    the desired meters (``want``) missing from or differing on the switch (``have``: id -> Meter, None when not of
    Canopy's shape), only if ``adds`` (a switch with meters); deletes of the installed ones no longer desired, unless
    ``keep`` (keep_stale, whose end reads the switch back: every meter looked at again). Ids ``refused`` are left
    alone. Ids found in sync or kept leave ``todo``; ``tick()`` once an id (the reconciler's pacer: the look after a
    read-back covers every meter)."""
    parts: dict = {kind: [] for kind in KINDS}
    for mid in sorted(todo):
        tick()
        kind = _kind(mid, want, have, refused, adds)
        if kind is None or (kind == "meter_delete" and keep):
            todo.discard(mid)
        elif kind == "meter_delete":
            parts[kind].append((mid, have[mid] or Meter(mid, 0, 0)))
        else:
            parts[kind].append((mid, want[mid]))
    return parts


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
                                  if m.meter_id in meters.METER_RANGE}
        self._rejected_meters, self._meter_todo = {}, None  # every meter diffed after a read-back
        return True

    def _set_meter_support(self, on: bool, note: str | None) -> None:
        if on != self.meter_support:
            self._wire = encode.WireEncoder(self.ofp, meters=on)
        self.meter_support, self.meter_note = on, note

    _deleting_meters = False  # a change set of meter deletes is being made or sent (``_deletes_outdated``)

    def _send_meters(self, kinds) -> bool:
        """Send the meter changes of ``kinds`` (``_meter_parts``) as a change set of their own, messages and a barrier
        (Open vSwitch takes no meter-mod in a bundle), so that the flows' change sets stay atomic bundles; False if
        there were none."""
        self._deleting_meters = "meter_delete" in kinds
        try:
            parts = self._meter_parts()
            changes = ChangeSet({kind: parts[kind] for kind in kinds if parts.get(kind)})
            if not changes:
                return False
            self._plan_version = self._book.version  # (no flow planned: nothing of the book's to outdate it)
            self._execute(changes)
            return True
        finally:
            self._deleting_meters = False

    def _deletes_outdated(self) -> bool:
        """Whether the meter deletes being made or sent may delete a meter a desired flow names again: a change came
        since the meters were counted (module docstring; the reconciler's ``_interrupted``)."""
        return self._deleting_meters and self._meter_dirty != set()

    def _meter_parts(self) -> dict:
        """The meter changes: adds and modifies (sent before the flows: a meter is on the switch before the flows that
        name it), deletes of Canopy's meters no longer desired (sent once the flows are in: a meter's delete deletes
        the flows that name it; never while ``keep_stale``). Only the meters that may differ are looked at
        (``_meter_todo``, module docstring; every one after a read-back). No adds or modifies on a switch without meters (or that
        refused one: its flows go without them), but its stale meters are deleted all the same; nothing before the
        read-back."""
        if self.meter_support is None:
            return {}
        want, have = self._desired_meters, self._installed_meters
        if self._meter_todo is None:
            self._meter_todo = whole(want, have)
        return changes(self._meter_todo, want, have, self._rejected_meters, self.meter_support, self._keep,
                       self.pacer.tick)

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
