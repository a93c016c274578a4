"""What a LiveView delta reaches: per switch, the owners to recompile (``controller.viewdelta.LiveView`` inherits
``OwnerReach``; it reads the pass's notes: the endpoints that changed, the subnets and domains whose presence on a
switch changed, the switches whose tunnel changed).

An endpoint's owner is recompiled where it is and where its subnet or domain is or was when the pass began; a
subnet's or domain's where it is; a subnet or domain arriving on a switch or leaving it, with every endpoint it
reaches there; an ACL on the switches using it; a vport's metadata steering where it was and is. ``Reach.touched``
also names the owners reached on no switch (one that went: the compile cache forgets it, openflow/compiler.py).
"""

from __future__ import annotations

from collections import defaultdict
from itertools import chain, compress, repeat
from operator import attrgetter, eq, gt, is_, is_not, itemgetter, le

from controller.keyed import same
from controller.pacer import runs, unit_runs
from controller.viewbatch import grouped
from openflow.flows import Owner

SESSIONS_PER_UNIT = 25  # switches an endpoint's owner is noted on per pacer unit (an owner on 100 switches: 5 units)
OWNERS_PER_UNIT = 100  # owners added to one switch's set per pacer unit (_add_listed)
_FIRST, _SECOND = itemgetter(0), itemgetter(1)
_KIND, _OFPORT, _SUBNET_ID, _SESSION, _OWNER = (attrgetter(name) for name in ("kind", "ofport", "subnet_id", "session",
                                                                                "owner"))
_NOWHERE = frozenset()  # where an endpoint was when the pass did not note it


class OwnerReach:
    """The owners part of ``LiveView`` (see the module docstring)."""

    def _security(self, j) -> None:
        """view.security (controller/security.py ``LiveSecurity``) for the ACLs, policy groups, vports, subnets and
        domains the journal names, then the per-switch side (``Local``: policed vports on each switch, the ACLs
        they use, their conntrack zones) for the vports whose policy or endpoint changed. Records the ACL owners
        reached: a changed ACL on the switches using it; a vport's chain and its ACLs where it was and is; the
        chain of a vport whose zone moved."""
        self.sec.pacer = self.pacer  # it reads the pinned policy and its own indexes only: pausing is safe
        acls, ports = self.sec.update(self.state.policy, j.vport_policies, j.acls, j.groups, j.subnets, j.domains)
        self.view.security = self.sec.view
        local, reached = self.sec.view.local, defaultdict(set)
        for aid in acls:
            for session in local.acl_on.get(aid, ()):
                reached[session].add(Owner("acl", aid))
        for vid in self._policed(ports, local):
            was = local.drop(vid)
            ep, port = self.view.endpoints.get(vid), self.sec.view.ports.get(vid)
            if port is not None and ep is not None and ep.kind == "vport" and ep.key:
                local.put(vid, ep.session, ep.key, port)
            now = local.at.get(vid)
            if was == now and vid not in ports:
                continue
            for where in (was, now):
                if where is not None:
                    reached[where[0]] |= {Owner("acl_port", vid)} | {Owner("acl", a) for a in where[2]}
        for session, vids in local.zones_changed(self.pacer).items():
            reached[session] |= {Owner("acl_port", vid) for vid in vids}
        self.acl_reach = reached

    def _policed(self, ports, local) -> set:
        """The vports to look at again for their security: those whose policy changed (``ports``) and, of the vport
        endpoints this pass changed (gone ones included), those policed before or now (one that is neither has
        nothing to drop or put; found by set operations, C loops: 10,000 unpoliced vports gone were ~40 bytecodes
        each)."""
        changed = self.changed
        out = set(ports) | (local.at.keys() & changed.keys())  # (policed before: a vport turning bare metal too)
        for vid in self.sec.view.ports.keys() & changed.keys():
            new = changed[vid][1]
            if new is None or new.kind == "vport":
                out.add(vid)
        return out

    def _metadata(self):
        """A vport endpoint that changed (came, went, moved): its metadata steering where it was and is, on
        switches with a metadata agent port (openflow/metadata.py; a switch whose agent port changed is compiled
        whole)."""
        switches = self.view.switches
        agents = {session for session, sw in switches.items() if getattr(sw, "metadata_port", None)} \
            if len(switches) < len(self.changed) else None  # (many endpoints: the few switches looked at first)
        if agents is not None and not agents:  # (most often: no switch has an agent port, nothing to steer)
            return
        for eid, pair in self.changed.items():
            self.pacer.tick()
            sessions = {ep.session for ep in pair if ep is not None and ep.kind == "vport" and
                        (ep.session in agents if agents is not None else
                         getattr(switches.get(ep.session), "metadata_port", None))}
            if sessions:
                self._add(Owner("metadata", eid), sessions)

    def _where(self, ep) -> set[str]:
        """The switches where an endpoint's owner may have flows: its own, and those its subnet or domain is on, or
        was on when the pass began (a subnet and so its domain can leave a switch and come back within one pass:
        an endpoint that left meanwhile had flows there). Shared by the endpoints of one session, subnet and domain
        until a presence changes (``places``, emptied by ``_presence`` and at a pass's start): not to be changed."""
        sub = self.view.subnets.get(ep.subnet_id)
        domain = sub.domain_id if sub is not None else None
        place = (ep.session, ep.subnet_id, domain)
        out = self.places.get(place)
        if out is None:
            out = self.places[place] = self._where_of(place)
        return out

    def _where_all(self, eps: list) -> list:
        """``_where`` of each of ``eps`` (C loops: a lookup of ``places`` each, worked out once per place)."""
        subnets, places = self.view.subnets, self.places
        sids, sessions = list(map(_SUBNET_ID, eps)), list(map(_SESSION, eps))
        if same(sids) and same(sessions):  # one place (a run of one subnet's endpoints on one switch): no key each
            return [self._where(eps[0])] * len(eps)
        domains = {sid: getattr(subnets.get(sid), "domain_id", None) for sid in set(sids)}
        keys = list(zip(sessions, sids, map(domains.__getitem__, sids)))
        for place in set(keys) - places.keys():
            places[place] = self._where_of(place)
        return list(map(places.__getitem__, keys))

    def _where_of(self, place) -> set[str]:
        """``_where`` worked out for one (session, subnet, domain), as the pass's notes stand now."""
        session, sid, domain = place
        out = {session} | self.sub_on.get(sid, set()) | self.on_before.get(("s", sid), set())
        if domain:
            out |= self.dom_on.get(domain, set()) | self.on_before.get(("d", domain), set())
        return out

    def _add(self, owner, sessions):
        self.r.touched.add(owner)
        switches, owners = self.view.switches, self.r.owners
        for session in sessions:
            if session in switches:
                owners[session].add(owner)

    def _add_listed(self, listed: dict) -> None:
        """The owners ``listed`` per switch added to its set, a switch at a time. Added owner by owner, the sets of
        100 switches grew in step when 10,000 endpoints arrived, and the owner that filled them resized all of them
        in one stretch (26-34 ms of CPU in-process; docs/benchmarks.md, bursts, branch statuslat)."""
        switches, owners = self.view.switches, self.r.owners
        for session, reached in listed.items():
            if session in switches:
                owners[session].update(reached)
            self.pacer.tick(1 + len(reached) // OWNERS_PER_UNIT)

    def _add_all(self, reached, session):
        if session in self.view.switches:
            self.r.owners[session] |= reached

    def _owners(self, info_changed, bm_changed):
        v = self.view
        subnets = set(info_changed) | self.holders_changed | self.bound_changed | bm_changed
        domains = set(self.routes.changed)
        endpoints, pacer, targets_of = {}, self.pacer, self.routes.targets  # (read once: 10,000 endpoints)
        for run in runs(pacer, list(self.changed.items())):  # (C loops: a Python step per endpoint was ~100 bytecodes)
            eids = list(map(_FIRST, run))
            eps = self._run_endpoints(eids, list(map(_SECOND, run)), endpoints)
            vports = list(compress(eps, map(eq, map(_KIND, eps), repeat("vport"))))
            numbered = list(compress(vports, map(is_not, map(_OFPORT, vports), repeat(None))))
            keyed = list(compress(numbered, map(gt, map(_OFPORT, numbered), repeat(0))))  # (``ep.key``: an ofport above 0)
            for sid, session in set(zip(map(_SUBNET_ID, keyed), map(_SESSION, keyed))):  # its local flood buckets
                self._add(Owner("subnet", sid), {session})
            domains.update(*filter(None, map(targets_of.get, eids)))  # (most often none: no empty set made each)
            pacer.tick(len(run))
        for session in self.tunnels:
            for eid in self.by_session.get(session, ()):
                endpoints[(eid, None)] = v.endpoints[eid]
                domains |= self.routes.targets.get(eid, set())
            subnets |= v._on.get(session, (set(), set()))[0]
            subnets |= {sid for sid, bound in v.bound_vteps.items() if session in bound}
            bm_changed = bm_changed | {sid for sid, gw in v.bm_gateways.items() if gw == session}
        for sid in bm_changed:
            for ep in v.by_subnet.get(sid, ()):
                endpoints[(ep.vport_id, None)] = ep
            sub = v.subnets.get(sid)
            if sub is not None and sub.domain_id:
                domains.add(sub.domain_id)
        self._list_owners(list(map(_FIRST, endpoints)), list(endpoints.values()))
        for sid in subnets:
            self._add(Owner("subnet", sid), self.sub_on.get(sid, ()))
        for did in domains:
            self._add(Owner("domain", did), self.dom_on.get(did, ()))
        self._presence_owners()

    @staticmethod
    def _run_endpoints(eids: list, pairs: list, endpoints: dict) -> list:
        """The endpoints of a run of ``changed`` (``eids``, each one's (old, new) in ``pairs``) that are not None, each
        filed in ``endpoints`` by (id, identity: an Endpoint's hash is its eleven fields' in Python), in the run's
        order. A run whose every endpoint went (10,000 ports gone): their olds alone, without walking the Nones."""
        news = list(map(_SECOND, pairs))
        if news.count(None) == len(news):
            olds = list(map(_FIRST, pairs))
            held = list(map(is_not, olds, repeat(None)))
            eids, olds = list(compress(eids, held)), list(compress(olds, held))
            endpoints.update(zip(zip(eids, map(id, olds)), olds))
            return olds
        eps = list(chain.from_iterable(pairs))
        keys = zip(chain.from_iterable(zip(eids, eids)), map(id, eps))
        endpoints.update(compress(zip(keys, eps), map(is_not, eps, repeat(None))))
        return list(filter(None, eps))

    def _list_owners(self, eids: list, eps: list) -> None:
        """Each endpoint's owner (of ``eps``, their ids ``eids``) on the switches where it is or was (``_where``, and
        ``was_at``), ticking ``1 + switches // SESSIONS_PER_UNIT`` per endpoint: a run of endpoints with the same
        switches (most often all of them: ``_where``'s answers are shared per place) listed there at once. Each run's
        places are worked out just before it (``_where_of``, a set union over switches each: not every place of the
        pass before its first pause): a run ends at the next pause, within ``due()`` endpoints (one unit or more
        each)."""
        listed = defaultdict(list)  # session -> the endpoints' owners there, added to its set below
        owners = list(map(_OWNER, eps))
        self.r.touched.update(owners)
        pacer, was_at, due = self.pacer, self.was_at, getattr(self.pacer, "due", None)
        start, end = 0, len(eps)
        while start < end:
            window = slice(start, min(end, start + (due() if due is not None else 1)))
            wheres = self._where_all(eps[window])
            wases = list(map(was_at.get, eids[window], repeat(_NOWHERE)))
            if not all(map(le, wases, wheres)):  # (most often they are: a new set per endpoint less)
                wheres = [where if was <= where else where | was for where, was in zip(wheres, wases)]
            units = [1 + n // SESSIONS_PER_UNIT for n in map(len, wheres)] if len(set(map(id, wheres))) > 1 else \
                [1 + len(wheres[0]) // SESSIONS_PER_UNIT] * len(wheres)
            _, stop = next(unit_runs(pacer, units))  # (the run up to the next pause)
            shared, run = wheres[0], owners[start:start + stop]
            if all(map(is_, wheres[:stop], repeat(shared))):
                for session in shared:
                    listed[session].extend(run)
            else:
                for where, owner in zip(wheres[:stop], run):
                    for session in where:
                        listed[session].append(owner)
            pacer.tick(sum(units[:stop]))
            start += stop
        self._add_listed(listed)

    def _presence_owners(self):
        """A subnet or domain arriving on a switch or leaving it: it and every endpoint it reaches, there."""
        v, owners, pacer = self.view, self.r.owners, self.pacer
        changed = defaultdict(set)  # subnet -> owners of endpoints that changed there (gone ones included)
        for run in runs(pacer, list(self.changed.values())):
            eps = list(filter(None, chain.from_iterable(run)))
            for sid, reached in grouped(list(map(_SUBNET_ID, eps)), list(map(_OWNER, eps))).items():
                changed[sid].update(reached)
            pacer.tick(len(run))
        for session, items in self.presence.items():
            if session not in v.switches:
                continue
            reached = set()
            for item in items:
                if isinstance(item, tuple):
                    owners[session].add(Owner("domain", item[1]))
                    reached.update(self.dom_subnets.get(item[1], ()))
                else:
                    owners[session].add(Owner("subnet", item))
                    reached.add(item)
            for sid in reached:
                for run in runs(pacer, v.by_subnet.get(sid, [])):
                    owners[session].update(map(_OWNER, run))
                    pacer.tick(len(run))
                gone = changed.get(sid, ())
                owners[session].update(gone)
                pacer.tick(1 + len(gone) // OWNERS_PER_UNIT)
