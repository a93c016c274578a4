"""Type 2 routes announced as State binds their vports (``Federation``'s subscriber, chunk by chunk), not after the
programming pass that follows: the announcing side of ``bgp.origins``' early withdrawal.

Why: 10,000 ports in one OVSDB transaction are bound in chunks over a second or more, and the pass that then derives
the View for all of them takes seconds more before ``publish``; GoBGP A, taking 10,000 routes in at a cost that grows
with its table, started only then (evpn_routes' announce phase, docs/benchmarks.md). A route announced here is the
one ``publish`` will make for that vport (``bgp.evpn.mac_ip_routes``, the same function), from what the last
``publish`` saw (``Context``: the View's switches, subnets and domains, and the policy) and the vport's location in
State now. Only the plain case is announced here; everything else is left to the pass:

- the policy is the one the last publish read (a commit since may have changed the vport, its subnet or domain),
  and that View's subnet and domain agree with it;
- the vport's switch and subnet were in that View, and the switch's VTEP IP is the same now;
- no route stands for the vport yet (a vport that moves keeps its route until the pass), and the MAC is new to
  MAC mobility: neither ours before nor any peer's (its sequence number is then 0);
- Canopy originates (not an HA standby) and the app allows it (``Federation.early``: not before the first pass,
  nor during the start-up hold).

A route announced here is recorded in ``Origins`` like a published one (an unbinding withdraws it at once), and the
next ``publish`` keeps it (``carry``) when its View does not have the vport yet (the vport was bound while that pass
ran) and it is still on the switch it was bound at; a second publish without it withdraws it, as then the View had
the vport (its binding was in the journal that pass took) and does not announce it. A publish whose View has taken
no change journal of State since the last publish (``View.journals``: the same View published again, the binding not
taken yet) carries what that one carried: counting publishes alone, it withdrew the route of a vport still bound
there, until the publish of the next pass whose View took the binding announced it again.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter

from bgp.evpn import mac_ip_routes
from bgp.mobility import Mobility
from controller.derive import subnet_info, vport_endpoint
from controller.pacer import NEVER, Pacer, runs

_VPORT_OF = attrgetter("endpoint.vport_id")  # an ``_Early``'s vport (read in C)


@dataclass(frozen=True)
class Context:
    """What a publish saw: the View's switches, subnets and domains (copies: the View changes in place), and the
    policy it read."""

    policy: object
    switches: dict
    subnets: dict
    domains: dict
    agrees: dict = field(default_factory=dict)  # subnet id -> whether the View's subnet and domain are the policy's

    def subnet_agrees(self, sid) -> bool:
        """The View's facts of this subnet and its domain are what the policy says (a commit landing between the
        pass's start and its publish is in the policy, not in that View: its subnets are left to the next pass)."""
        agrees = self.agrees.get(sid)
        if agrees is None:
            sub = self.policy.get("subnet", sid)
            info = self.subnets.get(sid)
            agrees = self.agrees[sid] = info is not None and subnet_info(self.policy, sub) == info and (
                not info.domain_id or self.policy.get("domain", info.domain_id) == self.domains.get(info.domain_id))
        return agrees


@dataclass
class _Early:
    route: object
    endpoint: object
    fresh: bool  # announced since the last publish


class EarlyAnnounce:
    def __init__(self, state, mobility: Callable[[], Mobility]):
        self.state = state
        self.mobility = mobility  # () -> the Federation's MAC mobility now (one it was given later included)
        self.context: Context | None = None
        self._routes: dict = {}  # key -> _Early: announced here, not yet in a publish
        self._viewed = None  # (a weak reference to the View ``carry`` last read, its ``journals`` then), or None

    def remember(self, view, policy, originating: bool) -> None:
        """The View and policy a publish made its routes from (called by ``Federation.publish``); nothing when it
        did not originate (an HA standby: a node that becomes active again starts from its next publish, and
        carries none of the routes announced here before: they were made from an older context)."""
        if not originating:
            self.context, self._routes = None, {}
            return
        self.context = Context(policy, dict(view.switches), dict(view.subnets), dict(view.domains))

    def bound(self, vport_ids, origins) -> dict:
        """{key: route} of the vports ``vport_ids`` that State binds now and that can be announced here (see the
        module docstring); each recorded in ``origins``."""
        ctx, state = self.context, self.state
        if ctx is None or state.policy is not ctx.policy:
            return {}
        out, memo, vtep_ips, subnets = {}, {}, {}, {}  # (for this call: ctx and State's switches stay as they are)
        mobility = self.mobility()
        for vid in vport_ids:
            endpoint = self._endpoint(ctx, vid, vtep_ips, mobility)
            if endpoint is None or origins.has(endpoint.vport_id):
                continue
            sid = endpoint.subnet_id
            subnet = subnets[sid] if sid in subnets else subnets.setdefault(sid, ctx.policy.get("subnet", sid))
            for route in mac_ip_routes(ctx, endpoint, subnet, ctx.switches[endpoint.session].vtep_ip, None, memo):
                key = route.key
                out[key] = route
                self._routes[key] = _Early(route, endpoint, True)
                origins.add_vport(key, endpoint.vport_id)
        return out

    def _endpoint(self, ctx: Context, vid, vtep_ips: dict, mobility: Mobility):
        """The vport's endpoint where State binds it, or None when its route is left to the pass. ``vtep_ips``: the
        caller's, session -> the switch's VTEP IP now, or None (State's snapshot of it is gone); ``mobility``: the
        Federation's MAC mobility now."""
        loc, vport = self.state.locations.get(vid), ctx.policy.objects["vport"].get(vid)  # (Policy.get, no call)
        if loc is None or vport is None or not ctx.subnet_agrees(vport["subnet_id"]):
            return None
        switch = ctx.switches.get(loc.session)
        if loc.session not in vtep_ips:
            snap = self.state.vrs.get(loc.session)
            vtep_ips[loc.session] = None if snap is None else self.state.vtep_ip_of(snap)
        if switch is None or vtep_ips[loc.session] is None or not switch.vtep_ip or \
                switch.vtep_ip != vtep_ips[loc.session]:
            return None
        endpoint = vport_endpoint(vport, loc)
        key = (endpoint.subnet_id, endpoint.mac)
        if key in mobility.entries or key in mobility.duplicates or self.state.remote_index.macs_at(*key):
            return None
        return endpoint

    def carry(self, desired: dict, origins, view=None, locations=None, pacer: Pacer = NEVER) -> None:
        """At the end of a publish: the routes announced here that its View did not have yet go into ``desired``
        (and ``origins``) while their vports are still where they were bound; forgotten once a publish has them,
        or after the next one whose View (``view``; None: not known) took a change of State since the last.
        ``locations``: where the vports are as the publish settles them (default: State's), read for every route
        before the first pause: ``pacer`` is ticked per route (the pass that raced 10,000 bindings carries 9,000,
        ~30 ms of CPU), and State may change during its pauses, whose changes the caller hears of after it
        (``Federation._hand_over``: its subscriber waits for the lock)."""
        locations, kept = self.state.locations if locations is None else locations, {}
        same = self._unchanged(view)
        # (``desired``'s parts read inline when it is the publish's ``_Handed``: a route key is a 5-tuple hashed again
        # at every dict or set operation, and the pass that raced 10,000 bindings carries 9,000)
        handed = hasattr(desired, "carried")
        routes, left_out = (desired.routes, desired.left_out) if handed else (desired, ())
        into = desired.carried if handed else desired
        where = map(locations.get, map(_VPORT_OF, self._routes.values()))
        earlies = list(zip(self._routes.items(), where))  # (in C, before any pause)
        for run in runs(pacer, earlies):
            for (key, early), loc in run:
                if not (early.fresh or same) or key in routes and not (left_out and key in left_out):
                    continue
                endpoint = early.endpoint
                if loc is not None and loc.session == endpoint.session:  # the route depends on the switch only
                    into[key] = early.route
                    origins.add_vport(key, endpoint.vport_id)
                    early.fresh = False
                    kept[key] = early
            pacer.tick(len(run))
        self._routes = kept

    def _unchanged(self, view) -> bool:
        """Whether ``view`` is the View the last ``carry`` read and has taken no change journal of State since (its
        ``journals``): nor, then, the bindings of the vports carried then. False when not known (another View, one
        derived from scratch, no View given)."""
        taken = getattr(view, "journals", None)
        last, self._viewed = self._viewed, None
        if taken is None:
            return False
        try:
            self._viewed = (weakref.ref(view), taken)
        except TypeError:  # (a stand-in View of a test)
            return False
        return last is not None and last[0]() is view and last[1] == taken
