"""Keeps every switch's desired flows current: derive, find what changed, recompile only that.

Compile once, share: the programmer keeps one ``compiler.Shared``, so an owner's flows that are the same on
many switches (a remote vport's L2, ARP and host-route entries; a subnet's and a domain's flows) are compiled
once and every switch's ``Desired`` holds the same frozenset. Per switch it also records which owners
changed since the switch was last handed its state (``take_changes``), so its reconciler plans only those.

``refresh()`` derives a new View from State (EVPN-learned reachability included), works out which owners
(switch, subnet, domain, vport, remote MAC) have different inputs than last time, and recompiles just those
owners on the switches where they are or were present. When a switch itself changed (new switch, VTEP IP,
tunnel port) everything is recompiled: the full recompute is the safety net, and tests check both paths give
the same flows.
"""

from __future__ import annotations

import gc
import logging
import time
from contextlib import contextmanager

from controller.derive import View, derive
from openflow import acl
from openflow.compiler import Desired, Shared, compile_owners, compile_switch, present
from openflow.flows import Owner

log = logging.getLogger("canopy.programmer")


class Programmer:
    def __init__(self, state):
        self.state = state
        self.view = View()
        self.desired: dict[str, Desired] = {}
        self.shared = Shared()
        self._changes: dict[str, set | None] = {}  # session -> owners changed since take_changes (None: all)
        self.full_recomputes = 0
        self.incremental_updates = 0
        self.timings: dict[str, float] = {}  # the last refresh: seconds in derive, finding owners, compiling (and CPU)

    def derive(self) -> View:
        s = self.state
        return derive(s.policy, s.locations, s.vrs, s.vtep_ip_of, s.vteps, getattr(s, "remote", None))

    def refresh(self, full: bool = False) -> set[str]:
        """Bring desired state up to date; returns the sessions whose desired flows or groups changed."""
        recomputes = self.full_recomputes
        with _cycle_collector_paused() as after:
            touched = self._refresh(full)
            after.freeze = self.full_recomputes != recomputes
        return touched

    def _refresh(self, full: bool) -> set[str]:
        started = time.perf_counter()
        old, new = self.view, self.derive()
        self.view = new
        self.timings = {"derive": time.perf_counter() - started, "compile": 0.0}
        if full or old.switches != new.switches or old.vteps != new.vteps or old.bound_vteps != new.bound_vteps:
            return self._recompute_all(new, diff_all=full)
        changed_owners = affected_owners(old, new)
        work = {}
        for session in new.switches:
            owners = {o for o in changed_owners | _presence_changes(old, new, session)
                      if present(old, session, o) or present(new, session, o)}
            if owners:
                work[session] = owners
        self.incremental_updates += 1
        touched = self._recompile(new, work, changed_owners)
        self.timings["owners"] = time.perf_counter() - started - self.timings["derive"] - self.timings["compile"]
        return touched

    def _recompile(self, view: View, work: dict, changed_owners) -> set[str]:
        """Recompile ``work`` (session -> owners) against ``view``; ``changed_owners``: the owners whose inputs
        changed (their shared flows are compiled again). Returns the sessions whose desired state changed."""
        started, cpu = time.perf_counter(), time.process_time()
        self.shared.forget(changed_owners)
        self.shared.begin(view)
        touched = set()
        for session, owners in work.items():
            current = self.desired.setdefault(session, Desired())
            before = {o: (current.flows.get(o, frozenset()), current.groups.get(o, ())) for o in owners}
            current.update(compile_owners(view, session, owners, self.shared), owners)
            changed = {o for o in owners
                       if (current.flows.get(o, frozenset()), current.groups.get(o, ())) != before[o]}
            if changed:
                touched.add(session)
                self._note(session, changed)
        self.timings["compile"] = time.perf_counter() - started
        self.timings["compile_cpu"] = time.process_time() - cpu
        return touched

    def _recompute_all(self, view, diff_all: bool = False) -> set[str]:
        """Every owner on every switch from scratch (nothing kept from before): the oracle and the fallback.
        ``diff_all`` (a full refresh asked for: at start, after a failed pass): the switches' reconcilers are
        told to diff every owner, whatever was handed out before."""
        self.full_recomputes += 1
        started, cpu = time.perf_counter(), time.process_time()
        previous = self.desired
        self.shared.clear()
        self.shared.begin(view)
        self.desired = {session: compile_switch(view, session, self.shared) for session in view.switches}
        touched, same = set(), {}
        if diff_all:
            for session in self.desired:
                self._note(session, None)
        for session in set(previous) | set(self.desired):
            if session not in previous:  # new (at start: every switch): all of it is new, nothing to compare
                touched.add(session)
                self._note(session, None)
                continue
            changed = _changed_owners(previous.get(session), self.desired.get(session), same)
            if changed:
                touched.add(session)
                held = len(self.desired[session].flows) if session in self.desired else 0
                self._note(session, changed if len(changed) * 2 < held and not diff_all else None)
        self.timings["compile"] = time.perf_counter() - started
        self.timings["compile_cpu"] = time.process_time() - cpu
        return touched

    def _note(self, session: str, owners: set | None) -> None:
        if owners is None:
            self._changes[session] = None
            return
        pending = self._changes.setdefault(session, set())
        if pending is not None:
            pending.update(owners)

    def take_changes(self, session: str) -> set | None:
        """The owners whose desired flows or groups on this switch changed since the last call (and so since
        its reconciler was last handed its state); None: unknown or most of them, diff every owner."""
        return self._changes.pop(session, set())


class _Pause:
    freeze = False  # set: freeze what exists at the end (a full compile's result) out of the collector's sight


@contextmanager
def _cycle_collector_paused():
    """Deriving and compiling allocate up to millions of acyclic objects (freed by reference counting): without a
    pause the cyclic collector walks all of them again and again while they pile up (34 s of a 78 s full compile
    before issue 13), and once more right after. After a full compile, what it keeps is frozen (gc.freeze: never
    scanned again, still freed by reference counting), so the collector does not walk it at all."""
    enabled = gc.isenabled()
    gc.disable()
    pause = _Pause()
    try:
        yield pause
    finally:
        if pause.freeze:
            gc.freeze()
        if enabled:
            gc.enable()


def _changed_owners(old: Desired | None, new: Desired | None, same: dict) -> set:
    """Owners whose flows or groups differ between two desired states of one switch. ``same`` remembers
    comparisons by identity: switches share their flow sets, so each pair of sets is compared once."""
    old, new = old or Desired(), new or Desired()
    changed = set()
    for attr, none in (("flows", frozenset()), ("groups", ())):
        before, after = getattr(old, attr), getattr(new, attr)
        for owner in before.keys() | after.keys():
            a, b = before.get(owner, none), after.get(owner, none)
            if a is b:
                continue
            pair = (id(a), id(b))
            equal = same.get(pair)
            if equal is None:
                equal = same[pair] = a == b
            if not equal:
                changed.add(owner)
    return changed


def _presence_changes(old: View, new: View, session: str) -> set[Owner]:
    """Owners whose flows on this switch change because a subnet or domain arrived on it or left it:
    the subnet or domain itself and every vport of it (its ARP, L2 and route entries appear or go)."""
    subnets = old.subnets_on(session) ^ new.subnets_on(session)
    domains = old.domains_on(session) ^ new.domains_on(session)
    if not subnets and not domains:
        return set()
    owners = {Owner("subnet", s) for s in subnets} | {Owner("domain", d) for d in domains}
    for view in (old, new):
        reached = set(subnets)
        for dom in domains:
            reached.update(view.subnets_of_domain(dom))
        for sid in reached:
            owners.update(ep.owner for ep in view.by_subnet.get(sid, ()))
    return owners


def affected_owners(old: View, new: View) -> set[Owner]:
    """Owners whose compile inputs differ between two views that share the same switches."""
    owners = set()
    for vid in set(old.endpoints) | set(new.endpoints):
        if old.endpoints.get(vid) != new.endpoints.get(vid):
            owners.add((old.endpoints.get(vid) or new.endpoints.get(vid)).owner)
            for view in (old, new):  # static routes of its domain may point at it
                ep = view.endpoints.get(vid)
                sub = view.subnets.get(ep.subnet_id) if ep else None
                if sub and sub.domain_id:
                    owners.add(Owner("domain", sub.domain_id))
    for sid in set(old.subnets) | set(new.subnets):
        if old.subnets.get(sid) != new.subnets.get(sid) or \
                old.by_subnet.get(sid, []) != new.by_subnet.get(sid, []) or \
                old.remote_floods.get(sid) != new.remote_floods.get(sid):  # type 3: its flood group
            owners.add(Owner("subnet", sid))
            sub = new.subnets.get(sid) or old.subnets.get(sid)
            if old.subnets.get(sid) != new.subnets.get(sid):  # VNI, gateway... every port in it changes
                owners |= {e.owner for e in new.by_subnet.get(sid, []) + old.by_subnet.get(sid, [])}
            if sub.domain_id:
                owners.add(Owner("domain", sub.domain_id))
    for sid in set(old.bm_gateways) | set(new.bm_gateways):
        if old.bm_gateways.get(sid) != new.bm_gateways.get(sid):  # its services, and routes to its bare metal
            for view in (old, new):
                sub = view.subnets.get(sid)
                owners.add(Owner("subnet", sid))
                owners |= {e.owner for e in view.by_subnet.get(sid, [])}
                if sub and sub.domain_id:
                    owners.add(Owner("domain", sub.domain_id))
    for did in set(old.domains) | set(new.domains):
        if old.domains.get(did) != new.domains.get(did) or old.fib.get(did) != new.fib.get(did):
            owners.add(Owner("domain", did))  # static and EVPN prefix routes live in the FIB
        if old.domains.get(did) != new.domains.get(did):  # L3 VNI or gateway MAC: every routed port changes
            for view in (old, new):
                owners |= {e.owner for e in view.endpoints.values()
                           if view.subnets.get(e.subnet_id) and view.subnets[e.subnet_id].domain_id == did}
    owners |= acl.affected(old, new)  # security policy: openflow/acl.py
    return owners
