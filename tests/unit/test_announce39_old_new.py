"""announce39's MAC mobility, Originator and announce at bind (merge ea463af) against the code they replaced (main
before the merge, ea463af^1, copied here as ``Old*``): random sequences, after each the same results and the same
state kept, and the pauses in the same places. (State's port steps, ``locate``, the payload text and RouteBook:
tests/unit/test_announce39_old_new_state.py.)

- MAC mobility (bgp/mobility.py ``_locals`` with ``_new``, ``_update`` with ``_take_all``): MAC mobility's oracle
  world (tests/unit/test_mobility_oracle.py ``Driver``) drives the new and the old Mobility side by side.
- The Originator (bgp/originator.py ``_take`` in runs with ``_held_at_once``, ``_keep_taken``) and the announce at
  bind (bgp/early.py ``bound``, ``_endpoint``): the originator oracle's world (tests/unit/test_originator_oracle.py
  ``Publishing``) with its full publish replaced by a Federation running the old code; the keys each update says
  changed compared too.

Each side ticks a real Pacer pausing every 1-4 units; each pause records what was done so far (what a vport bound in
the pause would read): the records must be equal (work done a run at a time in C loops pauses where, and with what
done, work done an item at a time did)."""

from __future__ import annotations

import random
from itertools import filterfalse

from bgp.early import EarlyAnnounce, _Early
from bgp.evpn import mac_ip_routes
from bgp.federation import Federation
from bgp.mobility import Mobility
from bgp.originator import Clash, Originator, _Group, _in_slices, _session_facts
from controller import loglimit
from controller.derive import vport_endpoint
from controller.keyed import add_to, discard_from
from controller.pacer import Pacer, runs
from tests.unit import test_originator_oracle as originator_oracle
from tests.unit.test_mobility_oracle import Driver, _duplicates

SEEDS, STEPS = 6, 80

# ---------------------------------------------------------------------------------------------- old code (ea463af^1)
class OldMobility(Mobility):
    """``_update`` and ``_locals`` as they were: a tick per MAC taken, a step per endpoint."""

    def _update(self, view, remote, pacer):
        endpoints, heard = self._changes(view, remote)
        self.duplicates.prune()
        flags = self._flag_feed.take()
        moved, vteps = self._locals(view, endpoints, pacer)
        if endpoints is None or heard is None or flags is None:
            keys = set(self._ours) | set(self.entries) | set(self.seqs) | moved
        else:
            keys = moved | heard | flags
            for ip in vteps:
                keys |= self._heard_at.get(ip, set())
        self.taken = self.fed = None
        gone = keys.difference(self._ours)
        self._forget_keys(gone, pacer)
        for key in keys - gone if gone else keys:
            self._take(key, remote)
            pacer.tick()
        if endpoints is not None and heard is not None and flags is not None:
            self.taken, self.fed = keys, self._fed
        self.updates += 1
        return self.seqs

    def _locals(self, view, ids, pacer):
        if ids is None:
            ids = set(self._eps) | set(view.local)
        keys, eps, local, by_session, keyed = set(), self._eps, view.local, self._by_session, self._keyed
        for run in runs(pacer, list(filterfalse(local.__contains__, ids))):
            self._gone(run, keys)
            pacer.tick(len(run))
        for eid in filter(local.__contains__, ids):
            old = eps.pop(eid, None)
            if old is not None:
                discard_from(by_session, old[1], eid)
                discard_from(keyed, old[0], eid)
                keys.add(old[0])
            ep = local[eid]
            key = (ep.subnet_id, ep.mac)
            eps[eid] = (key, ep.session)
            add_to(by_session, ep.session, eid)
            add_to(keyed, key, eid)
            keys.add(key)
            pacer.tick()
        return keys, self._ours_again(view, keys)


class OldOriginator(Originator):
    """``_take`` and ``_keep_taken`` as they were: a tick per endpoint, no memo of shared route fields."""

    def _take(self, eids, view, policy, seqs, changed, groups, pacer):
        made, hops, subnets, local, held = [], {}, {}, view.local, self.routes
        for eid in filter(local.__contains__, eids):
            ep = local[eid]
            sid, session, key = ep.subnet_id, ep.session, (ep.subnet_id, ep.mac)
            next_hop = hops[session] if session in hops else hops.setdefault(session, view.tunnel_ip_of(session))
            subnet = subnets[sid] if sid in subnets else subnets.setdefault(sid, policy.get("subnet", sid))
            routes = () if next_hop is None or subnet is None or (key in seqs and seqs[key] is None) else \
                {route.key: route for route in mac_ip_routes(view, ep, subnet, next_hop,
                                                                            seqs.get(key) or None)}
            for rkey in routes:
                if rkey in held:
                    raise Clash(rkey)
            made.append((eid, ep, routes, None if next_hop is None else (sid, next_hop)))
            pacer.tick()
        if self.watcher is not None:
            self._keep_taken(made, pacer)
        for session in hops:
            if session not in self._session_fp:
                self._session_fp[session] = _session_facts(view, session)
        owner, grouped, eps = self._owner, self._groups, self._eps
        in_subnet = self._in_subnet
        for eid, ep, routes, group in made:
            add_to(in_subnet, ep.subnet_id, eid)
            for rkey in routes:
                if rkey in held:
                    raise Clash(rkey)
                owner[rkey] = eid
            held.update(routes)
            changed.update(routes)
            if group is not None:
                at = grouped.get(group[0], {}).get(group[1])
                if at is None:
                    at = grouped.setdefault(group[0], {})[group[1]] = _Group()
                if ep.kind == "vport":
                    at.vports[eid] = ep.vport_id
                else:
                    at.others.add(eid)
                groups.add(group)
            eps[eid] = (ep, tuple(routes), group)
            pacer.tick()

    def _keep_taken(self, made, pacer):
        vports, keys, groups, seen = [], [], [], set()
        for eid, ep, routes, group in made:
            if ep.kind == "vport":
                vports.append(eid)
            keys.extend(routes)
            if group is not None and group not in seen:
                seen.add(group)
                key = self._t3.get(group[0], {}).get(group[1])
                if key is not None:
                    groups.append(key)
        _in_slices(self.watcher.keep_absent, vports, keys, pacer)
        self.watcher.keep(keys=groups)


class OldEarly(EarlyAnnounce):
    """``bound`` and ``_endpoint`` as they were: ``Policy.get`` per vport and subnet, the mobility asked per vport."""

    def bound(self, vport_ids, origins):
        ctx, state = self.context, self.state
        if ctx is None or state.policy is not ctx.policy:
            return {}
        out, memo, vtep_ips = {}, {}, {}
        for vid in vport_ids:
            endpoint = self._old_endpoint(ctx, vid, vtep_ips)
            if endpoint is None or origins.has(endpoint.vport_id):
                continue
            for route in mac_ip_routes(ctx, endpoint, ctx.policy.get("subnet", endpoint.subnet_id),
                                                      ctx.switches[endpoint.session].vtep_ip, None, memo):
                key = route.key
                out[key] = route
                self._routes[key] = _Early(route, endpoint, True)
                origins.add(key, (endpoint,))
        return out

    def _old_endpoint(self, ctx, vid, vtep_ips):
        loc, vport = self.state.locations.get(vid), ctx.policy.get("vport", vid)
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
        mobility = self.mobility()
        if key in mobility.entries or key in mobility.duplicates or self.state.remote_index.macs_at(*key):
            return None
        return endpoint


# ---------------------------------------------------------------------------------------------------- the pauses
def paced(every: int, record) -> tuple[Pacer, list]:
    """A Pacer pausing every ``every`` units; each pause appends ``record()`` to the list returned."""
    records: list = []
    return Pacer(lambda: records.append(record()), every), records


# ---------------------------------------------------------------------------------------------------- MAC mobility
_KEPT = ("seqs", "entries", "lost", "lost_to_sticky", "_eps", "_by_session", "_keyed", "_ours", "_our_vteps", "_heard",
         "_heard_at", "taken", "fed", "updates")


class MobilityPair(Driver):
    """MAC mobility's oracle world driving the new Mobility (``mobility``) and the old (``full``)."""

    def __init__(self, rng):
        super().__init__(rng)
        self.full = OldMobility(_duplicates(self.now))
        self.pauses = 0

    def compare(self, where: str):
        view, remote, every = self.prog.view, self.state.remote_index, self.rng.randint(1, 4)
        sides = {}
        for name, mobility in (("old", self.full), ("new", self.mobility)):
            pacer, records = paced(every, lambda m=mobility: (frozenset(m._eps), frozenset(m.seqs.items()),  # (what
                                   frozenset(m.entries.items()), frozenset(m._ours.items())))  # a pause's bind reads)
            sides[name] = (dict(mobility.update(view, remote, pacer)), records)
        assert sides["new"] == sides["old"], where
        self.pauses += len(sides["new"][1])
        for name in _KEPT:
            assert getattr(self.mobility, name) == getattr(self.full, name), f"{where}: {name}"
        mine, theirs = self.mobility.duplicates, self.full.duplicates
        assert mine.flagged == theirs.flagged and dict(mine.moves) == dict(theirs.moves), where
        return sides["new"][0]


def _count_paths(monkeypatch) -> dict:
    """Counts of the new code's C-loop paths taken and left (``_new``; ``_take_all`` at once or a MAC at a time)."""
    hits = {"_new": 0, "_take_all at once": 0, "_take_all by _take": 0}
    new, take_all, take = Mobility._new, Mobility._take_all, Mobility._take
    calls = [0]

    def counted_new(self, *args):
        hits["_new"] += 1
        return new(self, *args)

    def counted_take(self, *args):
        calls[0] += 1
        return take(self, *args)

    def counted_take_all(self, keys, remote):
        before = calls[0]
        take_all(self, keys, remote)
        hits["_take_all at once" if calls[0] == before else "_take_all by _take"] += 1

    monkeypatch.setattr(Mobility, "_new", counted_new)
    monkeypatch.setattr(Mobility, "_take", counted_take)
    monkeypatch.setattr(Mobility, "_take_all", counted_take_all)
    return hits


def test_mobility_in_runs_equals_a_step_per_item(monkeypatch):
    monkeypatch.setattr(loglimit, "_last_logged", {})
    hits, pauses = _count_paths(monkeypatch), 0
    for seed in range(SEEDS):
        rng = random.Random(seed)
        world = MobilityPair(rng)
        world.commit()
        world.prog.refresh(full=True)
        for step in range(STEPS):
            world.step()
            if rng.random() < 0.25:
                world.step()
            world.prog.refresh()
            world.compare(f"seed {seed} step {step}")
        pauses += world.pauses
    assert all(hits.values()) and pauses, (hits, pauses)  # both ways of each, and pauses, reached


# ---------------------------------------------------------------------------------- the Originator, announce at bind
class OldFederation(Federation):
    """A Federation publishing by delta with the Originator and the announce at bind as they were."""

    left_out = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.originator.__class__ = OldOriginator
        self._early.__class__ = OldEarly


def _originator_state(originator) -> tuple:
    groups = {sid: {ip: (dict(g.vports), set(g.others), set(g.sessions)) for ip, g in at.items()}
              for sid, at in originator._groups.items()}
    return (originator.routes, originator._owner, originator._eps, originator._in_subnet, groups,
            list(originator.routes), list(originator._eps))  # (and the orders they were taken in)


class PublishingPair(originator_oracle.Publishing):
    """The originator oracle's world: ``fed`` the new code, ``ref`` the old (OldFederation), both by delta."""

    pauses = 0

    def publish(self, where: str) -> None:
        """The pauses are compared up to the Originator's update's end: after it, a route's text is made (and ticked
        for) by whichever Federation meets it first (bgp/routes.py keeps one text per route object, and both get
        the same objects from bgp/evpn.py's cache)."""
        every, sides = self.rng.randint(1, 4), {}
        for name, fed in (("old", self.ref), ("new", self.fed)):
            fed.pacer, records = paced(every, lambda o=fed.originator, m=fed.mobility: (
                frozenset(o.routes), frozenset(o._eps), frozenset(m.seqs.items())))
            sides[name] = None

            def updated(*args, _update=fed.originator._update, _name=name, _records=records, _pacer=fed.pacer):
                changed = "raised"
                try:
                    changed = _update(*args)
                    return changed
                finally:  # (the keys that changed, None: all; the pauses so far)
                    sides[_name] = (None if changed is None else set(changed), list(_records), _pacer.due())

            fed.originator._update = updated
        try:
            super().publish(where)
        finally:
            for fed in (self.ref, self.fed):
                vars(fed.originator).pop("_update", None)
        assert sides["new"] == sides["old"], f"{where}: the keys changed, the pauses"
        PublishingPair.pauses += len(sides["new"][1]) if sides["new"] else 0

    def compare(self, where: str) -> None:
        super().compare(where)
        assert _originator_state(self.fed.originator) == _originator_state(self.ref.originator), where
        assert self.fed._early._routes == self.ref._early._routes, where


def test_originator_and_announce_at_bind_in_runs_equal_a_step_per_item(monkeypatch):
    monkeypatch.setattr(loglimit, "_last_logged", {})
    monkeypatch.setattr(originator_oracle, "FullPublish", OldFederation)
    monkeypatch.setattr(originator_oracle, "Publishing", PublishingPair)
    held = Originator._held_at_once
    hits = {True: 0, False: 0}

    def counted(self, *args):
        done = held(self, *args)
        hits[done] += 1
        return done

    monkeypatch.setattr(Originator, "_held_at_once", counted)
    bound, announced = EarlyAnnounce.bound, [0]

    def counted_bound(self, *args):
        out = bound(self, *args)
        announced[0] += len(out)
        return out

    monkeypatch.setattr(EarlyAnnounce, "bound", counted_bound)
    PublishingPair.pauses = 0
    for seed in range(SEEDS):
        originator_oracle.run(seed)
    assert hits[True] and hits[False] and PublishingPair.pauses and announced[0], (hits, PublishingPair.pauses,
                                                                                 announced)
