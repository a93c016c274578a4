"""How far a subnet's broadcast reaches on one switch, against Open vSwitch's two limits (docs/limits.md), and the
report when a subnet passes one (a warning once per crossing, GET /v1/status, the subnet's and the switch's REST
views, /metrics).

Measured on the userspace datapath (flood41, review41f, stop 41; ``python -m tests.benchmarks.flood_parts --ovs``):
- **resubmits**: OVS drops a packet whose translation takes more than 4,096 resubmits. A flood takes
  ``TABLE_HOPS`` before the group, two per local port (its bucket's ``resubmit(,50)`` and egress's hop) and, with
  native tunnelling, one per VTEP (its VXLAN output translated through br-phy): past ``4 + 2 x local + VTEPs >
  4,096`` the VTEPs after the limit get no copy, and past 2,046 local ports the broadcast is dropped whole.
- **datapath_actions**: its 64 kB cap on one packet's datapath actions gives a copy to ``MAX_VTEPS`` (~780) VTEPs
  at most (~84 bytes each); the rest get none.
Both are counted as the userspace datapath counts (the lab's; the kernel datapath's tunnel output is smaller and was
not measured): a report may come early there, never late.

``reach`` reads a subnet owner's compiled groups (openflow/floods.py: the local-only family ``2*VNI+1`` holds one
bucket per local port, the ``2*VNI`` family those and one per VTEP), in work that grows with the groups (at most
2 x 16), not their buckets; ``FloodWatch`` keeps the pairs (switch, subnet) over a limit, fed by the programmer with
each subnet owner whose groups changed (controller/programmer.py), and logs each crossing once.
"""

from __future__ import annotations

import heapq
import logging

from openflow.floods import PART_SHIFT

log = logging.getLogger("canopy.floods")
RESUBMITS = 4096  # Open vSwitch's limit on one packet's translation (ofproto-dpif-xlate: "Too many resubmits")
TABLE_HOPS = 4  # resubmits a broadcast takes before its flood group
MAX_VTEPS = 780  # copies to VTEPs one packet's 64 kB of datapath actions hold (userspace datapath, measured)
STATUS_OVER = 20  # pairs GET /v1/status lists in ``flood_limits.over`` (the first, by switch session and subnet id);
# ``more`` counts the rest: a subnet past a limit on every one of 800 switches is 800 pairs (the subnet's and the
# switch's own views list theirs whole)


def reach(groups) -> tuple[int, int]:
    """(local ports, VTEPs) a subnet's flood groups on one switch copy a broadcast to (``groups``: the subnet owner's
    compiled groups, openflow/floods.py ``flood_groups``; none: (0, 0)). A family split into parts holds its buckets in
    the parts (its head names them); a ``2*VNI`` of the split form starts with one bucket to ``2*VNI+1`` instead of
    repeating the local ports."""
    heads, parts, lead = [0, 0], [0, 0], [None, None]  # by low bit: the heads' buckets, the parts', the first group
    for group in groups:
        bit, n = group.group_id & 1, group.group_id >> PART_SHIFT
        if n:
            parts[bit] += len(group.buckets)
            if n == 1:
                lead[bit] = group
        else:
            heads[bit] += len(group.buckets)
            if lead[bit] is None:  # (its part 1 takes its place if it has parts)
                lead[bit] = group
    local = parts[1] or heads[1]
    everyone = parts[0] or heads[0]
    first = lead[0].buckets[:1] if lead[0] is not None else ()
    if first and first[0] == (("group", (lead[0].group_id & ((1 << PART_SHIFT) - 1)) | 1),):
        return local, everyone - 1  # the split form: one bucket to the local-only group, then the VTEPs
    return local, max(everyone - local, 0)


def passed(local: int, vteps: int) -> tuple[str, ...]:
    """The limits (``resubmits``, ``datapath_actions``) a broadcast to ``local`` ports and ``vteps`` VTEPs passes."""
    out = ()
    if TABLE_HOPS + 2 * local + vteps > RESUBMITS:
        out += ("resubmits",)
    if vteps > MAX_VTEPS:
        out += ("datapath_actions",)
    return out


def _what(local: int, vteps: int, limits) -> str:
    parts = []
    if "resubmits" in limits:
        whole = TABLE_HOPS + 2 * local > RESUBMITS
        parts.append(f"{TABLE_HOPS} + 2 x {local:,} local ports + {vteps:,} VTEPs is over Open vSwitch's {RESUBMITS:,} "
                     + ("resubmits: a broadcast is dropped whole" if whole else
                        "resubmits: the VTEPs past the limit get no copy"))
    if "datapath_actions" in limits:
        parts.append(f"{vteps:,} VTEPs are over the ~{MAX_VTEPS} one packet's 64 kB of datapath actions hold: the "
                     "rest get no copy")
    return "; ".join(parts)


class FloodWatch:
    """The (switch session, subnet id) pairs whose broadcast passes a limit: ``over`` -> {"local_ports", "vteps",
    "passed"}. ``check`` is told a subnet owner's groups on a switch whenever they changed; a pair that comes over a
    limit (or passes another one) is logged once as a warning, one back under once as info (one whose subnet went from
    the switch: said so); ``crossings`` counts the warnings (a metric). Kept in memory only: after a restart, a pair
    still over is warned of once more (the new process's log says what passes a limit now). ``names``: session -> chassis and subnet id -> its reference, for the log (optional)."""

    def __init__(self, chassis_of=None, subnet_ref=None):
        self.over: dict[tuple[str, str], dict] = {}
        self.sessions_of: dict[str, set[str]] = {}  # subnet id -> the sessions of its pairs in ``over``
        self.subnets_on: dict[str, set[str]] = {}  # session -> the subnet ids of its pairs in ``over``
        self.crossings = 0
        self.chassis_of = chassis_of or (lambda session: session)
        self.subnet_ref = subnet_ref or (lambda subnet_id: subnet_id)

    def check(self, session: str, subnet_id: str, groups) -> None:
        local, vteps = reach(groups or ())
        limits = passed(local, vteps)
        key = (session, subnet_id)
        before = self.over.get(key)
        if not limits:
            if before is None:
                return
            self.drop(key)
            if groups:
                log.info("subnet %s on %s: its broadcast is within Open vSwitch's limits again (%d local ports, %d "
                         "VTEPs)", self.subnet_ref(subnet_id), self.chassis_of(session), local, vteps)
            else:  # no flood groups left there: the subnet was deleted, or its last port on the switch went
                log.info("subnet %s on %s: removed from the switch (the subnet deleted, or its last port there gone): "
                         "off the flood-limit report", self.subnet_ref(subnet_id), self.chassis_of(session))
            return
        self.over[key] = {"local_ports": local, "vteps": vteps, "passed": list(limits)}
        if before is None:
            self.sessions_of.setdefault(subnet_id, set()).add(session)
            self.subnets_on.setdefault(session, set()).add(subnet_id)
        if before is None or set(limits) - set(before["passed"]):
            self.crossings += 1
            log.warning("subnet %s on %s: its broadcast passes Open vSwitch's limits (docs/limits.md): %s",
                        self.subnet_ref(subnet_id), self.chassis_of(session), _what(local, vteps, limits))

    def forget(self, session: str) -> None:
        """A switch gone from the View: its pairs dropped (nothing logged: nothing floods there)."""
        for subnet_id in list(self.subnets_on.get(session, ())):
            self.drop((session, subnet_id))

    def keep(self, session: str, subnet_ids) -> None:
        """Of ``session``'s pairs, those of subnets not in ``subnet_ids`` dropped (a switch compiled whole: what it
        no longer floods)."""
        for subnet_id in [sid for sid in self.subnets_on.get(session, ()) if sid not in subnet_ids]:
            self.drop((session, subnet_id))

    def drop(self, key: tuple[str, str]) -> None:
        """The pair ``key`` (session, subnet id) out of ``over`` and its indexes (nothing logged)."""
        if self.over.pop(key, None) is None:
            return
        session, subnet_id = key
        for index, outer, inner in ((self.sessions_of, subnet_id, session), (self.subnets_on, session, subnet_id)):
            held = index[outer]
            held.discard(inner)
            if not held:
                del index[outer]

    def retake(self, desired: dict, tick=None) -> None:
        """Every switch's subnet owners checked again (a full compile: ``desired``, session -> compiler.Desired), and
        the pairs of subnets and switches gone dropped; ``tick(units)`` (a pacer's: it may pause) once a switch, by
        its subnets (50 switches of 1,000 subnets: ~50,000 checks)."""
        seen = set()
        for session, want in list(desired.items()):
            checked = 0
            for owner, groups in want.groups.items():
                if owner.kind == "subnet":
                    seen.add((session, owner.id))
                    self.check(session, owner.id, groups)
                    checked += 1
            if tick is not None:
                tick(1 + checked // 100)
        for key in [key for key in self.over if key not in seen]:
            self.drop(key)

    def of_subnet(self, subnet_id: str) -> list[dict]:
        """The switches where this subnet's broadcast passes a limit (its REST view's ``flood_limits``)."""
        return [{"chassis": self.chassis_of(session), **self.over[(session, subnet_id)]}
                for session in sorted(self.sessions_of.get(subnet_id, ()))]  # (its own pairs: 10,000 subnets listed)

    def of_chassis(self, chassis: str, by_chassis: dict | None = None) -> list[dict]:
        """The subnets whose broadcast passes a limit on the switch of this chassis (its REST view's
        ``flood_limits``); ``by_chassis``: ``by_chassis()``'s, taken once for a listing of every switch."""
        return (self.by_chassis() if by_chassis is None else by_chassis).get(chassis, [])

    def by_chassis(self) -> dict[str, list[dict]]:
        """chassis -> ``of_chassis``'s rows, in one walk over the pairs (GET /v1/switches: not one walk a switch)."""
        out: dict[str, list[dict]] = {}
        for session in sorted(self.subnets_on):
            rows = out.setdefault(self.chassis_of(session), [])
            rows += [{"subnet": self.subnet_ref(sid), **self.over[(session, sid)]}
                     for sid in sorted(self.subnets_on[session])]
        return out

    def rows(self) -> list[dict]:
        """Every pair over a limit, as ``status`` lists its first ones (the /metrics gauge: one series a pair)."""
        return [{"chassis": self.chassis_of(session), "subnet": self.subnet_ref(sid), **entry}
                for (session, sid), entry in sorted(self.over.items())]

    def status(self) -> dict:
        """GET /v1/status ``flood_limits``: how many (switch, subnet) pairs pass a limit, the first ``STATUS_OVER`` of
        them (by switch session and subnet id) and how many more (the subnet's and the switch's views list theirs)."""
        first = heapq.nsmallest(STATUS_OVER, self.over.items())  # (keys unique: the entries are never compared)
        return {"count": len(self.over), "crossings": self.crossings,
                "over": [{"chassis": self.chassis_of(session), "subnet": self.subnet_ref(sid), **entry}
                         for (session, sid), entry in first],
                "more": len(self.over) - len(first)}
