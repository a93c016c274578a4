"""Where each vport is: a pure function of the policy and what discovery has seen.

A vport is located when a VRS shows the port its binding names:
- kvm:    an interface on the integration bridge with ``external_ids:iface-id`` = binding.iface_id (any VRS);
- hyperv: an interface named binding.port_name on a VRS of flavour hyperv (the port name is the identity);
- esxi:   on a VRS of flavour esxi, a trunk interface whose ``external_ids:canopy-vnic-<VLAN>`` = binding.vnic_id
          (written by the vCenter agent), or the static host/trunk_port/vlan of the binding.
A Hyper-V port with an ``iface-id`` that names a KVM vport shows that vport, and never the Hyper-V vport its name
would name (``conflicting``): one port cannot classify two vports (their flows would match the same ``in_port`` and
replace each other on the switch), and the ``iface-id`` is the port's explicit word; the Hyper-V vport stays unbound
there, logged once and shown in its REST status (``port_conflicts``).
When the same vport shows up in two places, a port with a device (an ofport) wins over one without; among those with
one the earliest appearance wins (an ESXi trunk's vNIC: the latest), among those without the latest (``preferred``).
A live migration in flight is the case: libvirt plugs the destination's port (with the VM's iface-id) when the
migration starts, while the VM runs on the source until it ends; the source's port keeps the vport until it goes, or
loses its device with the source's VM.

A located vport is bound only when the hypervisor does not contradict its MAC: when the port's
``external_ids:attached-mac`` (libvirt/Nova, os-vif on Hyper-V) names another MAC than the vport's policy MAC,
the vport is a MAC mismatch instead (``partition``) and is not programmed: port security would drop every
frame the VM sends from its real MAC anyway, and the switch would answer ARP and advertise (EVPN) a MAC the
VM does not have. The port's own ``mac_in_use`` is not compared: on KVM it is the tap device's MAC
(fe:..), never the VM's. ESXi trunk ports carry no per-vNIC MAC.

State keeps locations with ``BindingIndex`` (which ports show which binding key), re-resolving only the vports
a changed port or vport reaches; ``resolve`` is the same rule over everything at once, the reference the
incremental result is tested against (tests/unit/test_incremental_oracle.py).
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from itertools import chain, compress, repeat
from operator import and_, eq, itemgetter, not_

from controller.discovery import VrsSnapshot
from controller.fields import Invalid, mac as parse_mac
from controller.frozen import one_step_init
from controller.model import binding_key, esxi_static_key

_FIRST, _SECOND, _ID = itemgetter(0), itemgetter(1), itemgetter("id")
_FEW = 8  # what the ports gone showed: at most so many forgotten a Python step each (forget_ports)


@one_step_init  # built by the ten thousand (controller/frozen.py)
@dataclass(frozen=True)
class Location:
    vport_id: str
    session: str
    chassis: str
    datapath_id: int | None
    port: str
    ofport: int | None
    vlan: int | None
    flavour: str
    mac_seen: str | None  # the MAC the hypervisor reports for the port, if any
    attached_mac: str | None = None  # external_ids:attached-mac, normalised: the VM's MAC per the hypervisor

    def to_json(self):
        return {"chassis": self.chassis, "datapath_id": _dpid(self.datapath_id), "port": self.port,
                "ofport": self.ofport, "vlan": self.vlan, "flavour": self.flavour, "mac_seen": self.mac_seen}


def _dpid(dpid):
    return None if dpid is None else f"{dpid:016x}"


def resolve(policy, snapshots: dict[str, VrsSnapshot], flavour_of, seen_order, activated=None) -> dict[str, Location]:
    """vport id -> Location. ``flavour_of(snap)`` gives a VRS's effective flavour; ``seen_order(session,
    port, vlan)`` a number that grows with the time the port appeared there (the latest appearance wins);
    ``activated``: vport id -> the (session, port) its VM's first packet made active (``preferred``)."""
    activated = activated or {}
    by_key = {binding_key(v): v for v in policy.all("vport")}
    static = defaultdict(list)  # (host, trunk port) -> [(vlan, vport)]
    for v in policy.all("vport"):
        skey = esxi_static_key(v)
        if skey:
            static[skey[:2]].append((skey[2], v))
    found: dict[str, tuple[int, Location]] = {}
    for snap in snapshots.values():
        flavour = flavour_of(snap)
        for vport, port, vlan in _hits(snap, flavour, by_key, static):
            loc = Location(vport["id"], snap.session, snap.chassis, snap.datapath_id, port.name, port.ofport, vlan,
                           flavour, port.mac, None if vlan is not None else attached_mac(port))
            order = preferred(port, seen_order(snap.session, port.name, vlan), vlan,
                              activated.get(vport["id"]) == (snap.session, port.name))
            if vport["id"] not in found or order > found[vport["id"]][0]:
                found[vport["id"]] = (order, loc)
    return {vid: loc for vid, (_, loc) in found.items()}


def standby_ports(policy, snapshots: dict[str, VrsSnapshot], flavour_of, locations: dict[str, Location]) -> dict:
    """session -> {port name: (ofport, MAC, vport id)} of the ports with a device that show a bound KVM or Hyper-V
    vport elsewhere than its location (a live migration's other port: controller/state_activation.py), unless its
    hypervisor reports another MAC for its VM (a mismatch, never activated): the same rule over everything at once,
    the reference State's ``standby`` is tested against (tests/unit/oracle_checks.py)."""
    by_key = {binding_key(v): v for v in policy.all("vport")}
    out: dict[str, dict] = {}
    for snap in snapshots.values():
        for vport, port, vlan in _hits(snap, flavour_of(snap), by_key, {}):
            loc = locations.get(vport["id"])
            if vlan is None and port.ofport is not None and loc is not None and loc.vlan is None and \
                    (loc.session, loc.port) != (snap.session, port.name) and attached_mac(port) in (None, vport["mac"]):
                out.setdefault(snap.session, {})[port.name] = (port.ofport, vport["mac"], vport["id"])
    return out


def preferred(port, order: int, vlan: int | None = None, active: bool = False) -> tuple:
    """How much a port that appeared at ``order`` is preferred for a vport several ports show (the greatest wins): one
    with a device (an ofport; OVS sets -1 when the device is gone) over one without; among those with one, the port
    the VM's first packet made active (``active``: controller/state_activation.py), then the earliest appearance, so
    that a VM whose live migration is in flight keeps its source's port until its first packet from the destination,
    or until the source's port goes or loses its device (when the source's VM stops); among those without, the latest.
    An ESXi vNIC on a trunk (``vlan`` given) is the latest appearance among trunks with a device (a trunk always has
    one): the agent announces it where the vNIC came up, which is where the VM runs once a vMotion switched over, and
    its removal on the host it left may come later, or never (that agent or host down)."""
    if port.ofport is None:
        return False, order
    return (True, active, -order) if vlan is None else (True, False, order)


def has_device(port) -> bool:
    """Whether the port has a device (an ofport; OVS sets -1 when it is gone: the IDL's stand-in reads None)."""
    return port.ofport is not None and port.ofport > 0


def attached_mac(port) -> str | None:
    """The port's ``external_ids:attached-mac`` normalised (Hyper-V's dashes too); None when absent or not a
    unicast MAC (nothing reliable to compare)."""
    raw = port.ext("attached-mac")
    try:
        return parse_mac(raw) if raw else None
    except Invalid:
        return None


def partition(policy, found: dict[str, Location]) -> tuple[dict[str, Location], dict[str, Location]]:
    """(bound, mac mismatches): a location is a mismatch when the hypervisor reports a MAC for the VM that
    is not the vport's policy MAC."""
    bound, mismatched = {}, {}
    for vid, loc in found.items():
        (mismatched if is_mismatch(policy.get("vport", vid), loc) else bound)[vid] = loc
    return bound, mismatched


def _hits(snap, flavour, by_key, static):
    """(vport, port, vlan) for every vport this VRS shows."""
    for port in snap.ports:
        iface_id = port.ext("iface-id")
        if iface_id and ("kvm", iface_id) in by_key:
            yield by_key[("kvm", iface_id)], port, None
        if flavour == "hyperv" and ("hyperv", port.name) in by_key and not (
                iface_id and ("kvm", iface_id) in by_key):  # (a KVM vport's iface-id takes the port: ``conflicting``)
            yield by_key[("hyperv", port.name)], port, None
        if flavour == "esxi":
            for vlan, vnic in port.vnic_vlans().items():
                if ("esxi", vnic) in by_key:
                    yield by_key[("esxi", vnic)], port, vlan
            for vlan, vport in static.get((snap.chassis, port.name), ()):
                yield vport, port, vlan


class BindingIndex:
    """``resolve`` kept up to date by deltas: which ports show which binding key, so a changed port or a
    changed vport re-resolves only the vports it reaches.

    - ``vport_at``: binding key -> vport id (from policy), ``static_at``: (host, trunk port) -> {vport id: vlan};
    - ``sightings``: binding key -> {(session, port, vlan): (session rank, port, flavour, chassis, dpid)} of the
      ports that show it now, ``trunks``: (chassis, port) -> the same for ESXi trunks (static bindings);
    - ``shown``: session -> {port name: the sighting keys that port contributed}.
    ``locate(vid, seen_order)`` answers like ``resolve`` for one vport: the ``preferred`` port wins (ties: the
    switch that connected first)."""

    def __init__(self):
        self.vport_at: dict[tuple, str] = {}
        self.hyperv_keys = 0  # Hyper-V binding keys in ``vport_at`` (none: no port's vport is ever ``crossed``)
        self.key_of: dict[str, tuple] = {}
        self.static_of: dict[str, tuple] = {}
        self.static_at: dict[tuple, dict[str, int]] = defaultdict(dict)
        self.sightings: dict[tuple, dict[tuple, tuple]] = defaultdict(dict)
        self.trunks: dict[tuple, dict[str, tuple]] = defaultdict(dict)
        self.shown: dict[str, dict[str, list]] = defaultdict(dict)
        self.conflicts: dict[str, tuple] = {}  # Hyper-V vport id -> ((session, port, KVM vport id), ...) taken from it
        self.new_conflicts: list[tuple] = []  # (vport id, its conflicts) met since State last logged them

    # ---------------------------------------------------------------- policy side
    def forget_vport(self, vport: dict) -> None:
        vid = vport["id"]
        self.conflicts.pop(vid, None)
        key = self.key_of.pop(vid, None)
        if key is not None and self.vport_at.get(key) == vid:
            del self.vport_at[key]
            self.hyperv_keys -= key[0] == "hyperv"
        skey = self.static_of.pop(vid, None)
        if skey is not None:
            self.static_at[skey[:2]].pop(vid, None)
            if not self.static_at[skey[:2]]:
                del self.static_at[skey[:2]]

    def learn_vport(self, vport: dict, keys: tuple | None = None) -> None:
        """``keys``: the vport's (binding_key, esxi_static_key) if computed already (controller/commits.py)."""
        vid = vport["id"]
        key, skey = keys if keys is not None else (binding_key(vport), esxi_static_key(vport))
        self.key_of[vid] = key
        self.hyperv_keys += key[0] == "hyperv" and key not in self.vport_at
        self.vport_at[key] = vid
        if skey:
            self.static_of[vid] = skey
            self.static_at[skey[:2]][vid] = skey[2]

    def take_vports(self, changes: list) -> set:
        """A commit's vport changes ((before, after, after's (binding key, ESXi static key)) each, in order:
        controller/commits.py ``CommitRead.vports``) forgotten and learnt, as ``forget_vport(before)`` then
        ``learn_vport(after)`` for each in turn; returns the Hyper-V vports they cross (``crossed`` of each KVM key
        forgotten, then learnt). In C loops when their order cannot matter (``_apart``): 10,000 vports of an apply were
        ~75 Python bytecodes each here, one stretch of the event loop (stop 47: 24-33 ms of CPU)."""
        vids = self._apart(changes)
        if vids is None:
            return self._take_one_by_one(changes)
        bvids, bkeys, avids, akeys = vids
        key_of, vport_at = self.key_of, self.vport_at
        deque(map(self.conflicts.pop, bvids, repeat(None)), maxlen=0)
        deque(map(key_of.pop, bvids), maxlen=0)
        deque(map(vport_at.pop, compress(bkeys, map(eq, map(vport_at.get, bkeys), bvids))), maxlen=0)
        key_of.update(zip(avids, akeys))
        vport_at.update(zip(akeys, avids))
        return set()

    def _apart(self, changes: list) -> tuple | None:
        """(ids of the vports before, their binding keys, ids of the vports after, their binding keys) when taking
        ``changes`` all at once (every vport forgotten, then every one learnt) gives what taking them one by one gives,
        else None: each vport changed once (a key another one takes then ends the same either way: a vport's forgetting
        drops only the key it holds itself), no ESXi static binding, no Hyper-V key among them and no Hyper-V vport
        shown on the ports of their KVM keys (then none is crossed whatever the order: none when the index holds no
        Hyper-V vport). Checked in C loops, few passes over the changes (10,000: a few ms of CPU)."""
        if not changes:
            return [], [], [], []
        befores, afters, keys = zip(*changes)
        bvids, avids = list(map(_ID, filter(None, befores))), list(map(_ID, filter(None, afters)))
        keys = list(filter(None, keys))  # (None: no vport after)
        if len(keys) != len(avids) or len(set(bvids).union(avids)) < len(changes) or any(map(_SECOND, keys)) or \
                not self.static_of.keys().isdisjoint(bvids):
            return None
        bkeys, akeys = list(map(self.key_of.get, bvids)), list(map(_FIRST, keys))
        every = bkeys + akeys
        if None in bkeys or "hyperv" in map(_FIRST, every):
            return None
        if self.hyperv_keys:  # (a Hyper-V vport somewhere: one shown on a port of these KVM keys is crossed)
            kvm = compress(every, map(eq, map(_FIRST, every), repeat("kvm")))
            names = map(_SECOND, chain.from_iterable(map(self.sightings.get, kvm, repeat(()))))
            if any(map(self.vport_at.__contains__, zip(repeat("hyperv"), names))):
                return None
        return bvids, bkeys, avids, akeys

    def _take_one_by_one(self, changes: list) -> set:
        crossed = set()
        for before, after, keys in changes:
            if before is not None:
                crossed |= self.crossed(self.key_of.get(before["id"]))
                self.forget_vport(before)
            if after is not None:
                self.learn_vport(after, keys)
                crossed |= self.crossed(keys[0] if keys is not None else self.key_of.get(after["id"]))
        return crossed

    # ---------------------------------------------------------------- discovery side
    def forget_port(self, session: str, name: str, chassis: str, reached: set) -> None:
        """Drop what a port showed; the vport ids it showed are added to ``reached``. A switch's entry goes with its
        last port (nothing is kept per switch that went)."""
        ports = self.shown.get(session, {})
        self._forget(session, ports, ports.pop(name, ()), reached)

    def forget_ports(self, session: str, names, reached: set) -> None:
        """``forget_port`` for each of ``names`` (a report's ports gone: 10,000 at once, in C loops when none of them
        is an ESXi trunk)."""
        ports = self.shown.get(session, {})
        shown = list(chain.from_iterable(map(ports.pop, names, repeat(()))))  # (kind, key) of each
        if len(shown) > _FEW and "trunk" not in map(_FIRST, shown):
            sightings, vport_at = self.sightings, self.vport_at
            spots = list(map(_SECOND, shown))  # ((session, port, vlan), binding key) of each
            bkeys = list(map(_SECOND, spots))
            held = list(map(sightings.__getitem__, bkeys))
            deque(map(dict.pop, held, map(_FIRST, spots), repeat(None)), maxlen=0)
            deque(map(sightings.pop, compress(bkeys, map(not_, held)), repeat(None)), maxlen=0)
            reached.update(map(vport_at.__getitem__, filter(vport_at.__contains__, bkeys)))
            shown = ()
        self._forget(session, ports, shown, reached)

    def _forget(self, session: str, ports: dict, shown, reached: set) -> None:
        """What ports of ``session`` showed (``shown``: (kind, key) of each, taken out of ``ports``) forgotten."""
        sightings, vport_at, trunks = self.sightings, self.vport_at, self.trunks
        for kind, key in shown:
            if kind == "trunk":
                trunks[key].pop(session, None)
                if not trunks[key]:
                    del trunks[key]
                reached.update(self.static_at.get(key, ()))
                continue
            spot, bkey = key
            spots = sightings[bkey]
            spots.pop(spot, None)
            if not spots:
                del sightings[bkey]
            if bkey in vport_at:
                reached.add(vport_at[bkey])
        if not ports:
            self.shown.pop(session, None)

    def shown_nowhere(self, vids: list) -> list:
        """Of ``vids``, those ``locate`` finds nowhere at its first look (their binding key shown on no port, no
        static binding), in C loops (10,000 vports unbound at once)."""
        spots = map(self.sightings.get, map(self.key_of.get, vids))
        return list(compress(vids, map(and_, map(not_, spots), map(not_, map(self.static_of.get, vids)))))

    def learn_port(self, snap, rank: int, flavour: str, port, reached: set, keys=None) -> None:
        """Record what a port shows on its VRS; the vport ids it shows are added to ``reached``. ``keys``: the
        port's ``port_keys`` if computed already (they read only the port). Each sighting is in ``shown`` as soon as
        it is made: a key that raises (State then takes the switch again whole: controller/state.py ``_failed``)
        leaves none that forgetting the port would not find."""
        shown = self.shown[snap.session][port.name] = []
        where = (rank, port, flavour, snap.chassis, snap.datapath_id)
        if flavour == "esxi":
            trunk = (snap.chassis, port.name)
            self.trunks[trunk][snap.session] = where
            shown.append(("trunk", trunk))
            reached.update(self.static_at.get(trunk, ()))
        for bkey, vlan in port_keys(port, flavour) if keys is None else keys:
            spot = (snap.session, port.name, vlan)
            self.sightings[bkey][spot] = where
            shown.append(("key", (spot, bkey)))
            if bkey in self.vport_at:
                reached.add(self.vport_at[bkey])

    def forget_session(self, session: str, chassis: str, reached: set) -> None:
        for name in list(self.shown.get(session, ())):
            self.forget_port(session, name, chassis, reached)
        self.shown.pop(session, None)

    # ---------------------------------------------------------------- resolution
    def locate(self, vid: str, seen_order, active: tuple | None = None) -> Location | None:
        """Where vport ``vid`` is now (see ``resolve``), or None. ``active``: the (session, port) its VM's first
        packet made active, if any."""
        key, skey = self.key_of.get(vid), self.static_of.get(vid)
        spots = self.sightings.get(key) if key else None
        if not spots and not skey:  # (shown nowhere: 10,000 vports unbound at once)
            return None
        if key and key[0] == "hyperv" and spots:  # (a port whose iface-id names a KVM vport is that vport's: ``conflicting``)
            spots = self._unconflicted(vid, spots)
            if not spots:
                return None
        if not skey and len(spots) == 1:  # one port shows it (the common case)
            for (session, _name, vlan), where in spots.items():
                port = where[1]
                return Location(vid, session, where[3], where[4], port.name, port.ofport, vlan, where[2], port.mac,
                                None if vlan is not None else attached_mac(port))
        candidates = []
        for (session, name, vlan), where in spots.items() if spots else ():
            candidates.append((session, vlan, where))
        if skey:
            candidates += [(session, skey[2], where) for session, where in self.trunks.get(skey[:2], {}).items()]
        if len(candidates) > 1:  # the preferred first (one port showing it, the common case: no order)
            candidates = [max(candidates, key=lambda c: (preferred(c[2][1], seen_order(c[0], c[2][1].name, c[1]), c[1],
                                                                   active == (c[0], c[2][1].name)), -c[2][0]))]
        for session, vlan, where in candidates:
            rank, port, flavour, chassis, dpid = where
            return Location(vid, session, chassis, dpid, port.name, port.ofport, vlan, flavour, port.mac,
                            None if vlan is not None else attached_mac(port))
        return None


    def standbys(self, vid: str, loc: Location | None, mac: str | None = None) -> tuple:
        """The other ports with a device that show KVM or Hyper-V vport ``vid`` located at ``loc`` (a live migration's
        destination, or its source once the destination is active): ((session, port name, ofport), ...), sorted.
        Nothing when ``loc`` is None or an ESXi trunk's (one port showing it, the common case: one dict lookup). A
        port whose hypervisor reports another MAC than ``mac`` (the vport's) is none: activated, it would be a MAC
        mismatch and unbind the vport (``standby_ports``)."""
        key = self.key_of.get(vid)
        spots = self.sightings.get(key) if loc is not None and loc.vlan is None else None
        if not spots or len(spots) == 1:
            return ()
        return tuple(sorted((session, name, where[1].ofport) for (session, name, vlan), where in spots.items()
                            if vlan is None and where[1].ofport is not None and (session, name) != (loc.session, loc.port)
                            and attached_mac(where[1]) in (None, mac)
                            and (key[0] != "hyperv" or self.conflicting(vid, where[1]) is None)))

    def _unconflicted(self, vid: str, spots: dict) -> dict:
        """Of Hyper-V vport ``vid``'s ``spots``, those no KVM vport takes (``conflicting``); a conflict not met before
        goes to ``new_conflicts`` (State logs it once), and ``conflicts`` keeps each vport's."""
        kept, taken = {}, []
        for spot, where in spots.items():
            other = self.conflicting(vid, where[1])
            if other is None:
                kept[spot] = where
            else:
                taken.append((spot[0], spot[1], other))
        if taken:
            taken = tuple(sorted(taken))
            if self.conflicts.get(vid) != taken:
                self.new_conflicts.append((vid, taken))
            self.conflicts[vid] = taken
        else:
            self.conflicts.pop(vid, None)
        return kept

    def conflicting(self, vid: str, port) -> str | None:
        """The KVM vport that takes ``port`` from Hyper-V vport ``vid`` (its ``iface-id`` names that vport), or None."""
        iface_id = port.ext("iface-id")
        other = self.vport_at.get(("kvm", iface_id)) if iface_id else None
        return other if other is not None and other != vid else None

    def port_conflicts(self, vid: str) -> list[tuple]:
        """(session, port name, the KVM vport that takes it) of each port whose name shows Hyper-V vport ``vid`` but
        whose ``iface-id`` names another vport (REST: the vport's ``port_conflicts``)."""
        key = self.key_of.get(vid)
        if key is None or key[0] != "hyperv":
            return []
        return sorted((session, name, other) for (session, name, _vlan), where in self.sightings.get(key, {}).items()
                      if (other := self.conflicting(vid, where[1])) is not None)

    def crossed(self, key: tuple | None) -> set:
        """The Hyper-V vports shown (by name) on the ports that show KVM binding key ``key``: a KVM vport of that key
        created or deleted takes those ports from them, or gives them back (re-resolved with it)."""
        out = set()
        if key is None or key[0] != "kvm":
            return out
        for (session, name, vlan) in self.sightings.get(key, ()):
            vid = self.vport_at.get(("hyperv", name))
            if vid is not None and (session, name, vlan) in self.sightings.get(("hyperv", name), ()):
                out.add(vid)
        return out


def port_keys(port, flavour: str) -> list[tuple[tuple, int | None]]:
    """The (binding key, vlan) pairs a port shows on a VRS of ``flavour`` (a pure function of the port: State
    computes them for a big report before it changes anything, pausing meanwhile)."""
    keys = []
    iface_id = port.ext("iface-id")
    if iface_id:
        keys.append((("kvm", iface_id), None))
    if flavour == "hyperv":
        keys.append((("hyperv", port.name), None))
    if flavour == "esxi":
        keys += [(("esxi", vnic), vlan) for vlan, vnic in port.vnic_vlans().items()]
    return keys


def is_mismatch(vport: dict | None, loc: Location) -> bool:
    """Whether the hypervisor reports a MAC for the VM that is not the vport's policy MAC."""
    return vport is not None and loc.attached_mac is not None and loc.attached_mac != vport["mac"]
