"""Each hardware VTEP's desired rows (``derive.vtep_desired``), kept current by the programming pass's delta.

``vtep_desired(view, policy, name)`` reads, for the VTEP called ``name``: the OVSDB sessions connected under that
name (its own endpoints are not remote MACs to it, its own tunnel IPs not in its flood lists), its bindings in
policy, and per bound subnet: the subnet's info (VNI, gateway MAC and address), its endpoints (``by_subnet``) and
their tunnel IPs, its bare-metal gateway VRS, and its flood list (the VRS holding it, the VTEPs bound to it, its
gateway, the remote VTEPs that have it, and their tunnel IPs). Computing it for every VTEP on every pass costs
VTEPs x (bindings + endpoints of the bound subnets), whatever changed.

So a pass recomputes only the VTEPs one of those inputs changed for (``VtepReach``, from what
``controller.viewdelta.LiveView`` updated): the VTEPs whose own sessions changed (connected, left, renamed, tunnel
IP), and the VTEPs bound (before or after) to a subnet whose policy, info, endpoints, holders, bound VTEPs, gateway
or flood list changed, or that holds an endpoint of a session whose tunnel IP changed. ``LiveVteps.build`` (at
start, on request, after a failed pass) computes every VTEP from scratch; tests/unit/test_incremental_oracle.py
checks after every pass that each VTEP's rows equal ``vtep_desired`` over a View derived from scratch.

The VTEPs whose rows changed are noted until ``take_changes`` (the app hands them to ovsdb/server.py, whose VTEP
reconciler writes only the rows that differ); a pass not handed out (the start-up hold) leaves them noted. A VTEP
neither bound nor connected any more is forgotten (handed None: the server forgets it too); should it connect again,
its pass computes it anew, as at start. So nothing is kept per VTEP that went.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from controller import derive as d
from controller.discovery import VtepDesired
from controller.pacer import NEVER, Pacer

ROWS_UNIT = 200  # remote MACs of one VTEP's rows per pacer unit
NO_ROWS = VtepDesired()


@dataclass
class VtepReach:
    """What one pass's delta reaches of the VTEPs' rows."""

    subnets: set[str] = field(default_factory=set)  # subnets whose part of a bound VTEP's rows may have changed
    names: set[str] = field(default_factory=set)  # VTEPs whose own sessions changed
    bindings: bool = False  # the policy of some subnet changed (a binding may have): read the bindings again


def reach(live, j, info_changed: set[str], bm_changed: set[str]) -> VtepReach:
    """The VTEP part of what a pass of ``live`` (a ``LiveView``, after it applied the journal ``j``) reached."""
    v = live.view
    subnets = set(j.subnets) | info_changed | bm_changed | live.holders_changed | live.bound_changed
    subnets |= live.changed_subnets()
    for session in live.tunnels:  # its endpoints' locators, and the flood lists it is in
        subnets |= v._on.get(session, (set(), set()))[0]
        subnets |= {sid for sid, bound in v.bound_vteps.items() if session in bound}
    return VtepReach(subnets, set(live.vtep_names), bool(j.subnets))


class LiveVteps:
    """Every known hardware VTEP's desired rows (bound in policy, connected, or handed rows before: a VTEP whose
    bindings went is handed empty rows, which take Canopy's rows away)."""

    def __init__(self):
        self.desired: dict = {}  # VTEP name -> its VtepDesired
        self.bindings: dict[str, list[dict]] = {}  # VTEP name -> its vtep_binding objects
        self.bound: dict[str, set[str]] = {}  # subnet id -> VTEP names with a binding there
        self._changed: set[str] = set()

    def build(self, view, policy, pacer: Pacer = NEVER) -> None:
        """Every VTEP from scratch, each noted as changed."""
        self._index(policy)
        names = set(self.bindings) | {vtep.name for vtep in view.vteps.values()} | set(self.desired)
        self._compute(view, policy, names, pacer, note_all=True)

    def update(self, view, policy, reached: VtepReach, pacer: Pacer = NEVER) -> None:
        """The VTEPs ``reached`` reaches (with ``policy`` the policy the pass read, ``view`` updated by it)."""
        names = set(reached.names)
        before = self.bound
        if reached.bindings:
            self._index(policy)
        for sid in reached.subnets:
            names |= before.get(sid, set()) | self.bound.get(sid, set())
        self._compute(view, policy, names, pacer)

    def take_changes(self) -> dict:
        """VTEP name -> its desired rows, for the VTEPs whose rows changed since the last call (None: forgotten)."""
        names, self._changed = self._changed, set()
        return {name: self.desired.get(name) for name in sorted(names)}

    def _index(self, policy) -> None:
        """The bindings by VTEP, and the VTEPs by subnet, read from ``policy`` (once per pass, not per VTEP)."""
        bindings, bound = defaultdict(list), defaultdict(set)
        for b in policy.all("vtep_binding"):
            bindings[b["switch"]].append(b)
            bound[b["subnet_id"]].add(b["switch"])
        self.bindings, self.bound = dict(bindings), dict(bound)

    def _compute(self, view, policy, names, pacer: Pacer, note_all: bool = False) -> None:
        connected = {vtep.name for vtep in view.vteps.values()}
        for name in sorted(n for n in names if n):
            rows = d.vtep_desired(view, policy, name, self.bindings.get(name, ()))
            if name not in connected and name not in self.bindings and rows == NO_ROWS:  # gone: forgotten
                if self.desired.pop(name, None) is not None:
                    self._changed.add(name)
            elif note_all or self.desired.get(name) != rows:
                self.desired[name] = rows
                self._changed.add(name)
            pacer.tick(1 + len(rows.remote_macs) // ROWS_UNIT)
