"""A new port's OpenFlow number from the switch's PORT_STATUS, before OVSDB has it (docs/benchmarks.md, port_to_ping
branch ``p2p5k``).

ovs-vswitchd numbers a port in the middle of its reconfiguration: it sends OFPT_PORT_STATUS (reason ADD) to its
controllers as soon as the port is in the bridge, but writes ``Interface.ofport`` to OVSDB only when the whole
reconfiguration is done, and that walks every port of every bridge: with 2,500 ports per ovs-vswitchd the ofport
reaches Canopy 100-200 ms after the PORT_STATUS. Every flow of a local port matches or outputs to its ofport,
so until then none of them can be sent.

``OfportHints`` keeps, per VRS, the numbers the switch announced for ports whose Interface row has no ofport yet,
and lays them over every snapshot State receives for that VRS (``apply``), so that a snapshot reported for another
change does not take the number away again. A hint ends when OVSDB gives the port an ofport (OVSDB says what the
switch did: it wins), when the switch deletes the port, and when the VRS goes. Only a port without an ofport is
given one: a hint never changes a number OVSDB reported.
"""

from __future__ import annotations

import bisect
import logging
import time
from dataclasses import replace
from operator import attrgetter

from controller.discovery import PortInfo, VrsSnapshot

_NAME = attrgetter("name")
log = logging.getLogger("canopy.state")


def known_ofport(port: PortInfo | None) -> bool:
    """Whether OVSDB gave ``port`` its number (an absent, empty or -1 ofport is none)."""
    return port is not None and port.ofport is not None and port.ofport > 0


class OfportHints:
    """Per VRS session: {port name: ofport} the switch announced and OVSDB has not reported yet."""

    def __init__(self):
        self._hints: dict[str, dict[str, int]] = {}
        self._since: dict[tuple[str, str], float] = {}  # (session, name) -> when the switch announced it (monotonic)

    def pending(self, session: str) -> dict[str, int]:
        """The hints of ``session`` (a copy)."""
        return dict(self._hints.get(session, {}))

    def seen(self, session: str, snap: VrsSnapshot | None, name: str, ofport: int) -> VrsSnapshot | None:
        """The switch of ``session`` (last snapshot ``snap``) announced ``name`` as ``ofport``: the snapshot to
        apply now (the port numbered, ``changed`` naming it), or None when nothing changes yet (the row is
        not known: the hint waits for it; OVSDB already numbered the port: it is not needed)."""
        port = _find(snap, name) if snap is not None else None
        if known_ofport(port) and name not in self._hints.get(session, ()):
            return None  # OVSDB numbered it (a hinted number is State's until OVSDB reports: a MOD then keeps it)
        self._hints.setdefault(session, {})[name] = ofport
        self._since.setdefault((session, name), time.monotonic())
        if port is None or port.ofport == ofport:
            return None
        numbered = replace(port, ofport=ofport)
        return replace(snap, ports=_swap(snap.ports, numbered), changed=frozenset((name,)),
                       changed_ports={name: numbered})

    def forget(self, session: str, name: str) -> None:
        """The switch deleted ``name`` (or OVSDB numbered it)."""
        hints = self._hints.get(session)
        self._since.pop((session, name), None)
        if hints is not None:
            hints.pop(name, None)
            if not hints:
                del self._hints[session]

    def gone(self, session: str) -> None:
        """The VRS went: its hints with it."""
        for name in self._hints.pop(session, {}):
            self._since.pop((session, name), None)

    def apply(self, snap: VrsSnapshot, before: VrsSnapshot | None) -> VrsSnapshot:
        """``snap`` with the pending hints of its session laid over its ports (``before``: the snapshot State
        holds, whose numbered ``PortInfo`` is handed out again when the port did not change, so that it stays
        the same object); hints OVSDB has caught up with, or whose port went, end here."""
        hints = self._hints.get(snap.session)
        if not hints:
            return snap
        ports, changed_ports = snap.ports, dict(snap.changed_ports) if snap.changed_ports is not None else None
        for name, ofport in list(hints.items()):
            port = _find(snap, name)
            if known_ofport(port):
                since = self._since.get((snap.session, name))
                if since is not None:  # how much earlier the switch said it (port_to_ping reads this line)
                    log.debug("port %s: OVSDB gave ofport %d %.1f ms after the switch announced %d", name,
                              port.ofport, (time.monotonic() - since) * 1000, ofport)
                self.forget(snap.session, name)
                continue
            if port is None:
                continue  # the row has not arrived yet (or went: the switch's DELETE ends the hint)
            old = _find(before, name) if before is not None else None
            numbered = old if old is not None and old == replace(port, ofport=ofport) else replace(port, ofport=ofport)
            ports = _swap(ports, numbered)
            if changed_ports is not None and name in changed_ports:
                changed_ports[name] = numbered
        if ports is snap.ports:
            return snap
        return replace(snap, ports=ports, changed_ports=changed_ports)


def port_status(state, msg) -> None:
    """Hand one OFPT_PORT_STATUS (Ryu's parsed ``OFPPortStatus``) to ``state``: a port added or modified with a
    valid number is ``ofport_seen``, a port deleted ``ofport_deleted``."""
    dp, port = msg.datapath, msg.desc
    ofp = dp.ofproto
    name = port.name.decode("utf-8", "replace") if isinstance(port.name, bytes) else str(port.name)
    if msg.reason == ofp.OFPPR_DELETE:
        state.ofport_deleted(dp.id, name)
    elif 0 < port.port_no <= ofp.OFPP_MAX:
        state.ofport_seen(dp.id, name, port.port_no)


def _index(ports: tuple[PortInfo, ...], name: str) -> int | None:
    """Where the port ``name`` is in ``ports``: a binary search (a reporter's ports are sorted by name), else a
    pass (a snapshot made otherwise), None when absent."""
    i = bisect.bisect_left(ports, name, key=_NAME)
    if i < len(ports) and ports[i].name == name:
        return i
    return next((k for k, port in enumerate(ports) if port.name == name), None)


def _find(snap: VrsSnapshot, name: str) -> PortInfo | None:
    """The port ``name`` of ``snap``, or None."""
    i = _index(snap.ports, name)
    return None if i is None else snap.ports[i]


def _swap(ports: tuple[PortInfo, ...], port: PortInfo) -> tuple[PortInfo, ...]:
    """``ports`` with the port of ``port``'s name (present) replaced by ``port``."""
    i = _index(ports, port.name)
    return ports[:i] + (port,) + ports[i + 1:]
