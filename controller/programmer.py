"""Keeps every switch's desired flows current: derive, find what changed, recompile only that.

``refresh()`` derives a new View from State (EVPN-learned reachability included), works out which owners
(switch, subnet, domain, vport, remote MAC) have different inputs than last time, and recompiles just those
owners on the switches where they are or were present. When a switch itself changed (new switch, VTEP IP,
tunnel port) everything is recompiled: the full recompute is the safety net, and tests check both paths give
the same flows.
"""

from __future__ import annotations

import logging

from controller.derive import View, derive
from openflow import acl, external
from openflow.compiler import Desired, compile_owners, compile_switch, present
from openflow.flows import Owner

log = logging.getLogger("canopy.programmer")


class Programmer:
    def __init__(self, state):
        self.state = state
        self.view = View()
        self.desired: dict[str, Desired] = {}
        self.full_recomputes = 0
        self.incremental_updates = 0

    def derive(self) -> View:
        s = self.state
        return derive(s.policy, s.locations, s.vrs, s.vtep_ip_of, s.vteps, getattr(s, "remote", None))

    def refresh(self, full: bool = False) -> set[str]:
        """Bring desired state up to date; returns the sessions whose desired flows or groups changed."""
        old, new = self.view, self.derive()
        self.view = new
        if full or old.switches != new.switches or old.vteps != new.vteps or old.bound_vteps != new.bound_vteps:
            return self._recompute_all(new)
        changed_owners = affected_owners(old, new)
        touched = set()
        for session in new.switches:
            owners = {o for o in changed_owners | _presence_changes(old, new, session)
                      if present(old, session, o) or present(new, session, o)}
            if not owners:
                continue
            current = self.desired.setdefault(session, Desired())
            before = {o: (current.flows.get(o, frozenset()), current.groups.get(o, ())) for o in owners}
            current.update(compile_owners(new, session, owners), owners)
            if any((current.flows.get(o, frozenset()), current.groups.get(o, ())) != before[o] for o in owners):
                touched.add(session)
        self.incremental_updates += 1
        return touched

    def _recompute_all(self, view) -> set[str]:
        self.full_recomputes += 1
        previous = self.desired
        self.desired = {session: compile_switch(view, session) for session in view.switches}
        return {s for s in set(previous) | set(self.desired)
                if _content(previous.get(s)) != _content(self.desired.get(s))}


def _content(desired):
    return None if desired is None else (desired.all_flows(), desired.all_groups())


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
    owners |= external.affected(old, new)  # external networks: openflow/external.py
    return owners
