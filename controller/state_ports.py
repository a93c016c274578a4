"""A VRS report's ports as State takes them: what they show, read before anything changes, and what State keeps of
them besides the binding index (their order of first appearance, the tunnel and metadata agent ports).

``ReportPorts`` is part of State (controller/state.py ``State`` inherits it): it reads a report's snapshot and keeps
``_seen``, ``_seen_ports``, ``tunnel_ports`` and ``agent_ports``; the binding index and the journals stay State's.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque

from controller import binding, derive
from controller.keyed import drop_keys
from controller.pacer import Pacer, runs

log = logging.getLogger("canopy.state")


class ReportPorts:
    """The ports of the VRS reports State takes (module docstring)."""

    def _track_tunnels(self, snap, changed, read) -> None:
        """Keep ``tunnel_ports`` and ``agent_ports`` of the switch current from the ports that changed (all of
        them: None); ``read``: those ports' own (_read_ports)."""
        for kept, own in ((self.tunnel_ports, read.tunnels), (self.agent_ports, read.agents)):
            if changed is None:
                kept[snap.session] = own
                continue
            ports = kept.setdefault(snap.session, {})
            for name in changed.intersection(ports):  # (a walk of the few such ports, not of 10,000 changed)
                del ports[name]
            ports.update(own)

    def _read_ports(self, snap, changed, found, pacer: Pacer) -> Read:
        """What State takes from the ports that changed (None: all of them), read before anything changes, ticking
        ``pacer`` per port: this reads only the snapshot, so anything may change during the pauses."""
        flavour, read, session, port_keys = self.flavour_of(snap), Read(), snap.session, binding.port_keys
        keys, seen = read.keys, read.seen
        for run in runs(pacer, list(snap.ports if changed is None else found.values())):  # (a tick per port)
            for port in run:
                keys[name := port.name] = port_keys(port, flavour)
                seen[name] = [(session, name, None)] + [(session, name, vlan) for vlan in port.vnic_vlans()]
            read.tunnels.update(derive.tunnel_ports(run))
            read.agents.update(derive.agent_ports(run))
            pacer.tick(len(run))
        return read

    def _mark_seen(self, snap, changed, seen):
        """Order of first appearance of the (session, port, vlan) keys of the changed ports (None: all); ``seen``:
        the keys of those still there (_read_ports). The changed ports that went are forgotten with the binding
        index (_index_ports, paced), not here."""
        ports = self._seen_ports.setdefault(snap.session, {})
        names = set(ports) | set(seen) if changed is None else list(filter(seen.__contains__, changed)) if seen \
            else ()  # (a report of ports gone only)
        if changed is not None and names and ports.keys().isdisjoint(names):  # all new (10,000 ports): C loops
            keys, clock = list(map(seen.get, names, itertools.repeat(()))), itertools.repeat(self._clock)
            deque(map(self._seen.setdefault, itertools.chain.from_iterable(keys), map(next, clock)), maxlen=0)
            ports.update(itertools.compress(zip(names, keys), keys))
            return
        for name in names:
            keys = seen.get(name, ())
            for key in keys:
                self._seen.setdefault(key, next(self._clock))
            before = ports.get(name)
            if before is not None and before != keys:
                for key in set(before).difference(keys):
                    self._seen.pop(key, None)
            if keys:
                ports[name] = keys
            else:
                ports.pop(name, None)

    def _forget_seen(self, session: str, names) -> None:
        """The ports ``names`` of ``session`` went: their keys' order of first appearance is forgotten."""
        ports = self._seen_ports.get(session, {})  # (C loops: 10,000 ports gone at once)
        drop_keys(self._seen, itertools.chain.from_iterable(map(ports.pop, names, itertools.repeat(()))))


class Read:
    """What a VRS report's changed ports show (``ReportPorts._read_ports``): port name -> binding keys and sighting
    keys, and the tunnel and metadata agent ports among them."""

    def __init__(self):
        self.keys: dict[str, list] = {}
        self.seen: dict[str, list] = {}
        self.tunnels: dict[str, int] = {}
        self.agents: dict[str, tuple] = {}


def changed_ports(old, snap, flavour_of) -> frozenset[str] | None:
    """Names of the ports whose rows changed since ``old`` (``VrsSnapshot.changed``), or None when every
    port counts as changed: a new switch, or one whose chassis, datapath or flavour changed (every
    location on it says those)."""
    if old is None or (old.chassis, old.datapath_id, flavour_of(old)) != \
            (snap.chassis, snap.datapath_id, flavour_of(snap)):
        return None
    changed = getattr(snap, "changed", None)
    if changed is not None:
        return frozenset(changed)
    before = {p.name: p for p in old.ports}
    names = set()
    for port in snap.ports:
        was = before.pop(port.name, None)
        if was is None or (was is not port and was != port):  # an unchanged port is usually the same object
            names.add(port.name)
    return frozenset(names | set(before))


def log_bridge_safety(old, snap):
    """One line when a VRS's integration bridge becomes unsafe (or its problems change), one when it is safe."""
    problems = snap.bridge_problems()
    before = old.bridge_problems() if old is not None else ()
    if problems and problems != before:
        log.warning("VRS %s: bridge %s is NOT safe: %s", snap.chassis, snap.bridge, "; ".join(problems))
    elif before and not problems and snap.bridge_present:
        log.info("VRS %s: bridge %s is fail-secure with %s", snap.chassis, snap.bridge, ",".join(snap.protocols))
