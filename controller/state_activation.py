"""A live migration's destination activated by the VM's first packet (as OVN's ``activation-strategy=rarp``).

While a KVM or Hyper-V vport shows on two ports with a device (libvirt plugs the destination's port when a live
migration starts), one is its location (controller/binding.py ``preferred``) and each other one is a *standby*: the
compiler gives it one flow (openflow/activation.py) that sends what the VM sends from its own MAC to the controller,
and the classify table's default drops the rest. QEMU announces the VM with RARP frames the moment it resumes on the
destination; that packet-in (controller/app.py) calls ``State.activate``, which makes that port the vport's active
one: the vport is re-located there (normal programming follows) and the port it left becomes the standby.

``Activations`` is part of State (controller/state.py ``State`` inherits it). It keeps:
- ``activated``: vport id -> (session, port name) of its active port, for each vport shown on two ports with a
  device (its source's by the first-appearance rule, or the one its VM's first packet made active); ``preferred``
  puts it first. It goes when that port no longer shows the vport with a device, or no other port does (at most one
  per vport, none once a migration is over; kept while a switch that showed the vport went, with its port, and
  may come back, or until the vport is deleted). It is this controller's memory of a migration: ``on_active`` (the
  app: the store's meta ``ACTIVE_KEY``, written off the event loop) is told each new content, and a restart starts
  from what was stored (``load_active``), so that it does not order the two ports by when their switches reported
  to it. A record whose switch has not reported yet is kept, and a record restored so (``restored``) keeps the vport
  unlocated until that switch reports or the start-up hold ends (``end_restore``): before, the port whose switch
  reported first located it meanwhile (the log said it bound at the paused destination; REST showed it there, and the
  hold's passes announce the routes of what is located: controller/routepass.py).
- ``standby``: session -> {port name: (ofport, MAC, vport id)}, what each switch's activation flows are built from
  (derive.switch_info), ``standby_of``: vport id -> its standby ports' (session, port name, ofport), and
  ``standby_at``: session -> {ofport: port name}, so that a packet-in finds its port by one dict lookup, however many
  standby ports its switch has (before, each packet-in scanned them all).

A hostile VM cannot make it work without bound: the flow matches only the vport's own MAC, a port that is not a
standby is ignored by a dict lookup, and one vport is activated at most once per ``ACTIVATION_HOLD`` seconds (two
ports sending from one MAC at once would otherwise move it back and forth at the packet rate); packet-ins refused
are counted (``activation_counts``, GET /v1/status).
"""

from __future__ import annotations

import logging
import time
from itertools import compress, repeat
from operator import itemgetter

log = logging.getLogger("canopy.state")
ACTIVATION_HOLD = 2.0  # seconds after a vport's activation during which another packet cannot move it again
_SESSION = itemgetter(0)
ACTIVE_KEY = "active_ports"  # the store's meta key for ``activated`` (this node's own: controller/store.py LOCAL_META)


class Activations:
    """The activation side of State (module docstring)."""

    def _init_activations(self) -> None:
        self.activated: dict[str, tuple[str, str]] = {}
        self.standby: dict[str, dict[str, tuple]] = {}
        self.standby_of: dict[str, tuple] = {}
        self.standby_at: dict[str, dict[int, str]] = {}  # session -> {ofport: port name} of its ``standby`` ports
        self._activated_at: dict[str, float] = {}  # vport id -> monotonic time of its last activation
        self.activation_counts = dict.fromkeys(("activated", "not_standby", "held", "foreign_mac"), 0)
        self.on_active = None  # called with a copy of ``activated`` whenever it changed (the app stores it)
        self.active_version = 0  # raised by every change of ``activated`` (controller/activekeep.py sends it)
        self.restored: set[str] = set()  # vports of a stored record whose switch has not reported since the start

    def load_active(self, stored) -> None:
        """``activated`` as stored before a restart ({vport id: [session, port]}); anything malformed, or of a vport
        not in the policy, is skipped."""
        vports = self.policy.objects["vport"]  # (a vport deleted while this node was down: its record dropped)
        for vid, where in (stored or {}).items() if isinstance(stored, dict) else ():
            if vid in vports and isinstance(where, (list, tuple)) and len(where) == 2 and \
                    all(isinstance(part, str) for part in where):
                self.activated[vid] = (where[0], where[1])
        self.restored = set(self.activated)
        if self.activated:
            log.info("%d vports were shown on two ports (live migrations in flight): their active ports restored",
                     len(self.activated))

    def end_restore(self) -> None:
        """The start-up hold ended (or there was none): a restored record no longer keeps its vport unlocated while
        its switch has not reported (a switch not back by then may never be: its vport goes where it is shown)."""
        if self.restored:
            vids, self.restored = sorted(self.restored), set()
            self._relocate(vids)

    def _hold_restored(self, vids, before: dict, moved: set, warn: set) -> None:
        """Of ``vids`` (just re-located), those whose restored record's switch has not reported yet are not located
        anywhere (``restored``); once it has, their record no longer holds them. ``before``: their locations before."""
        known, restored, activated, locations = self.vrs, self.restored, self.activated, self.locations
        for vid in restored.intersection(vids):
            record = activated.get(vid)
            if record is None or record[0] in known:  # (its ports indexed: this re-location saw them)
                restored.discard(vid)
                continue
            self.mismatched.pop(vid, None)
            self._warned.pop(vid, None)
            warn.discard(vid)
            locations.pop(vid, None)
            if before.get(vid) is None:
                moved.discard(vid)
            else:
                moved.add(vid)

    def activate(self, datapath_id: int, ofport: int, src_mac: str | None = None, now: float | None = None) -> str | None:
        """The switch ``datapath_id`` sent the controller a packet its port ``ofport`` received from a standby's
        VM (openflow/activation.py's flow): that port becomes the vport's active one. Returns the vport id, or None
        when nothing changed (not a standby port now, ``src_mac`` not the vport's, or activated too recently)."""
        session = self._dpid_session.get(datapath_id)
        name = self.standby_at.get(session, {}).get(ofport) if session is not None else None
        entry = self.standby.get(session, {}).get(name) if name is not None else None
        if entry is None or entry[0] != ofport:
            self.activation_counts["not_standby"] += 1
            return None
        _, mac, vid = entry
        if src_mac is not None and src_mac != mac:
            self.activation_counts["foreign_mac"] += 1
            return None
        now = time.monotonic() if now is None else now
        if now - self._activated_at.get(vid, -ACTIVATION_HOLD) < ACTIVATION_HOLD:
            self.activation_counts["held"] += 1
            return None
        self._activated_at[vid] = now
        self.activated[vid] = (session, name)
        self.activation_counts["activated"] += 1
        vport = self.policy.get("vport", vid)
        log.info("vport %s: its VM's first packet at %s:%s (ofport %d) made that port active",
                 self.policy.ref("vport", vport) if vport else vid, self.vrs[session].chassis, name, ofport)
        self._relocate([vid])
        self._tell_active()
        return vid

    def _track_standbys(self, vids) -> None:
        """The standby ports of ``vids`` (just re-located) brought up to date, and their activation record dropped
        when its port no longer shows them with a device; the switches whose standby ports changed are recorded."""
        index, locations, standby_of, activated = self.index, self.locations, self.standby_of, self.activated
        shown = map(index.sightings.get, map(index.key_of.get, vids), repeat(()))
        reached = set(compress(vids, map((1).__lt__, map(len, shown))))  # shown on two ports or more (C loops)
        if standby_of:
            reached |= standby_of.keys() & set(vids)
        if activated:
            reached |= activated.keys() & set(vids)
        if not reached:
            return
        sessions, told = set(), False
        vports, reported = self.policy.objects["vport"], self.vrs.keys() - self.partial.keys()
        for vid in sorted(reached):
            loc = locations.get(vid)
            now = index.standbys(vid, loc, mac=(vports.get(vid) or {}).get("mac"))
            before = standby_of.get(vid, ())
            record = activated.get(vid)
            if record is not None and vid not in vports:
                del activated[vid]  # the vport deleted: whether its switch reported or not (nothing else drops it)
                self._activated_at.pop(vid, None)
                told = True
            elif record is not None and record[0] not in reported:
                pass  # its switch has not reported (yet, after a restart): kept
            elif now and record != (loc.session, loc.port):
                activated[vid] = (loc.session, loc.port)
                told = True
            elif record is not None and not now and reported.issuperset(map(_SESSION, before)):
                del activated[vid]  # (a switch gone with a port that showed it may come back with it: kept)
                self._activated_at.pop(vid, None)
                told = True
            mac = vports[vid]["mac"] if now else None
            if now == before and all(self.standby[s][name][1] == mac for s, name, _ in now):  # (its MAC too)
                continue
            for session, name, _ in before:
                ports = self.standby.get(session, {})
                if ports.get(name, (None, None, vid))[2] == vid:  # (not another vport's since: one re-created)
                    self._unindex(session, name, ports.pop(name, None))
                if not ports:
                    self.standby.pop(session, None)
                sessions.add(session)
            if now:
                standby_of[vid] = now
                for session, name, ofport in now:
                    ports = self.standby.setdefault(session, {})
                    self._unindex(session, name, ports.get(name))
                    ports[name] = (ofport, mac, vid)
                    self.standby_at.setdefault(session, {})[ofport] = name
                    sessions.add(session)
            else:
                standby_of.pop(vid, None)
        if sessions:
            self._record("switches", sessions)
        if told:
            self._tell_active()

    def _unindex(self, session: str, name: str, entry: tuple | None) -> None:
        """Port ``name`` of ``session`` (its ``standby`` entry ``entry``, if it had one) out of ``standby_at``."""
        at = self.standby_at.get(session)
        if entry is not None and at is not None and at.get(entry[0]) == name:
            del at[entry[0]]
            if not at:
                del self.standby_at[session]

    def take_active(self, table: dict) -> None:
        """Not the HA active: the active's ``activated`` ({vport id: (session, port)}, controller/activekeep.py) taken
        as this node's own; the vports whose record changed are re-located, so that its flows are the active's."""
        changed = {vid for vid in self.activated.keys() | table.keys() if self.activated.get(vid) != table.get(vid)}
        if not changed:
            return
        self.activated.clear()
        self.activated.update(table)
        for vid in changed:
            self._activated_at.pop(vid, None)
        self._relocate(sorted(changed))
        self._tell_active()

    def _tell_active(self) -> None:
        self.active_version += 1
        if self.on_active is not None:
            self.on_active({vid: list(where) for vid, where in self.activated.items()})

    def migration_of(self, vid: str) -> dict | None:
        """A bound vport's live migration in flight, for REST: None, or {"pending": the ports waiting for its VM's
        first packet [{chassis, port, ofport}], "activated_by_packet": whether its location was made active so}."""
        ports = self.standby_of.get(vid)
        if not ports:
            return None
        return {"pending": [{"chassis": self.vrs[s].chassis if s in self.vrs else s, "port": name, "ofport": ofport}
                            for s, name, ofport in ports], "activated_by_packet": vid in self._activated_at}

    def activation_report(self) -> list[dict]:
        """Each vport waiting for its VM's first packet on another port (a live migration in flight)."""
        out = []
        for vid in sorted(self.standby_of):
            vport = self.policy.get("vport", vid)
            loc = self.locations.get(vid)
            out.append({"vport": self.policy.ref("vport", vport) if vport else vid,
                        "active": {"chassis": loc.chassis, "port": loc.port} if loc else None,
                        **self.migration_of(vid)})
        return out
