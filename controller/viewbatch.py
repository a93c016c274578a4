"""Many vport endpoints coming or going in one run of ``LiveView._vport_eps`` (``controller.viewdelta`` inherits
``BatchSwaps``): swapped into or out of the View and its indexes together, in C loops, not a ``_swap`` each.

``_vport_eps`` walks the vports in runs that end where a tick per vport would pause (``controller.pacer.runs``). A
run whose changed endpoints all went (10,000 ports gone) or all came (10,000 ports bound), none of them changed
before in the pass, is swapped here; any other run (moves, changes, a vport turning bare metal) endpoint by endpoint
as before (``LiveView._swap``). The result is the same, indexes, notes and order included: the counts per subnet
and switch (``ep_count``) are changed together and a subnet's presence on a switch is looked at again where its
first endpoint came or its last went, in the order those came in the walk (``_presence`` reads nothing the other
counts change); the MACs', IPs' and host routes' counts and the endpoints per switch do not depend on the order
they are counted in; the switches where an endpoint that went had flows (``_where``) are the same before and after
a presence changed within a run of endpoints going (a subnet or domain leaves a switch within the walk only with
endpoints counted there at its start: the switch is in ``on_before``). 10,000 ports gone were ~520 Python
bytecodes each in ``_swap``, ``_count`` and the host routes; tests/unit/test_view_batch.py compares both ways.
"""

from __future__ import annotations

from collections import Counter, deque
from itertools import chain, compress, count, repeat
from operator import attrgetter, eq, is_, is_not, itemgetter

from controller import derive as d
from controller.keyed import count_all, count_in, remove_all, same

_SUBNET_ID, _SESSION, _VPORT_ID, _MAC = (attrgetter(name) for name in ("subnet_id", "session", "vport_id", "mac"))
_IPS, _KIND = attrgetter("ips"), attrgetter("kind")
_FIRST, _SECOND, _THIRD = itemgetter(0), itemgetter(1), itemgetter(2)


def grouped(keys: list, items: list) -> dict:
    """``items`` per key of ``keys`` (in the same order): key -> its items, in their order (one key: no Python step
    per item)."""
    if not keys:
        return {}
    if keys.count(keys[0]) == len(keys):
        return {keys[0]: items}
    out: dict = {}
    for key, item in zip(keys, items):
        group = out.get(key)
        if group is None:
            out[key] = group = []
        group.append(item)
    return out


class BatchSwaps:
    """The batched swaps of ``LiveView`` (see the module docstring)."""

    def _run_changes(self, run: list, policy_changed) -> list:
        """The vport endpoints of one run of the walk (``run``: vport ids, sorted) that changed: ``(vid, old, new)``
        in the walk's order (a vport's bare-metal server noted again, ``_server``, if its policy changed). A run of
        vports none of which is located (10,000 ports gone): found in C loops."""
        p, v = self.state.policy, self.view
        # (State's and the View's tables are changed in place, never replaced: read once, not through _Pinned per vport)
        locations, endpoints, switches, subnets = self.state.locations, v.endpoints, v.switches, v.subnets
        vports = list(map(p.getter("vport"), run)) if policy_changed else None  # (else read once any is located)
        if policy_changed:
            for vid, vport in compress(zip(run, vports), map(policy_changed.__contains__, run)):
                self._server(vid, vport)
        locs = list(map(locations.get, run))
        helds = list(map(endpoints.get, run))
        if all(map(is_, locs, repeat(None))):  # (none located: each held vport endpoint goes)
            held = list(compress(zip(run, helds), map(is_not, helds, repeat(None))))
            gone = list(compress(held, map(eq, map(_KIND, map(_SECOND, held)), repeat("vport"))))
            return list(zip(map(_FIRST, gone), map(_SECOND, gone), repeat(None)))
        swaps = []
        for vid, vport, loc, old in zip(run, vports or map(p.getter("vport"), run), locs, helds):
            new = None
            if vport is not None and loc is not None and loc.session in switches and vport["subnet_id"] in subnets:
                new = d.vport_endpoint(vport, loc)
            old = old if old is not None and old.kind == "vport" else None
            if (old is None) != (new is None) or (old is not None and old != new):  # (gone: no __eq__ call)
                swaps.append((vid, old, new))
        return swaps

    def _swap_run(self, swaps: list) -> None:
        """The endpoints of one run of the walk that changed (``(vid, old, new)`` in the walk's order): swapped
        and placed, together when all went or all came (see the module docstring)."""
        vids, olds, news = list(map(_FIRST, swaps)), list(map(_SECOND, swaps)), list(map(_THIRD, swaps))
        if len(swaps) > 1 and self.changed.keys().isdisjoint(vids):
            if all(map(is_, news, repeat(None))):
                return self._swap_out(vids, olds)
            if all(map(is_, olds, repeat(None))) and self.view.endpoints.keys().isdisjoint(vids):
                return self._swap_in(vids, news)
        for vid, old, new in swaps:
            self._swap(vid, old, new)
            if old is not None:
                self._place(old, remove=True)
            if new is not None:
                self._place(new)
        return None

    def _swap_out(self, vids: list, olds: list) -> None:
        """The vport endpoints ``olds`` (of ``vids``, held by the View) go; noted as leaving their subnets."""
        v = self.view
        self.local_changed.update(filter(v.local.__contains__, vids))
        self.was_at.update(zip(vids, self._where_all(olds)))
        self._count_all(olds, -1)
        deque(map(v.endpoints.__delitem__, vids), maxlen=0)
        deque(map(v.local.pop, vids, repeat(None)), maxlen=0)
        self.changed.update(zip(vids, zip(olds, repeat(None))))
        by_subnet = grouped(list(map(_SUBNET_ID, olds)), vids)
        self._subnets_changed(by_subnet)
        for sid, gone in by_subnet.items():
            self.leaving.setdefault(sid, set()).update(gone)

    def _swap_in(self, vids: list, news: list) -> None:
        """The vport endpoints ``news`` (of ``vids``, none in the View) come, into their subnets' places."""
        v = self.view
        self.local_changed.update(vids)
        self._count_all(news, 1)
        v.endpoints.update(zip(vids, news))
        v.local.update(zip(vids, news))
        self.changed.update(zip(vids, zip(repeat(None), news)))
        by_subnet = grouped(list(map(_SUBNET_ID, news)), news)
        self._subnets_changed(by_subnet)
        for sid, eps in by_subnet.items():
            self._place_all(sid, eps)

    def _swap_out_evpn(self, vids: list, olds: list) -> None:
        """The EVPN endpoints ``olds`` (of ``vids``, distinct, held by the View, none changed before in the pass)
        go: ``_swap(vid, old, None)`` for each, together (withdrawn MACs: ``RemoteEndpoints._drop_going``)."""
        self.was_at.update(zip(vids, self._where_all(olds)))
        self._count_all(olds, -1, evpn=True)
        deque(map(self.view.endpoints.__delitem__, vids), maxlen=0)
        self.changed.update(zip(vids, zip(olds, repeat(None))))
        self._subnets_changed(set(map(_SUBNET_ID, olds)))

    def _subnets_changed(self, sids) -> None:
        """``sids`` hold endpoints this pass changed (new entries of ``changed``): into ``changed_sids``, unless that
        is to be worked out again (``LiveView.changed_subnets``)."""
        if self.changed_sids is not None:
            self.changed_sids.update(sids)

    def _count_all(self, eps: list, step: int, evpn: bool = False) -> None:
        """``_count(ep, step)`` for each of the vport endpoints ``eps`` (distinct, in the walk's order), or of EVPN
        ones (``evpn``: no MAC or IP claimed; their sessions' remote VTEPs as the last of them leaves them)."""
        subnets = self.view.subnets
        sids, sessions = list(map(_SUBNET_ID, eps)), list(map(_SESSION, eps))
        vids = list(map(_VPORT_ID, eps))
        one = same(sids) and same(sessions)  # (a run of one subnet's endpoints on one switch: no pair made each)
        pairs = [] if one else list(zip(sids, sessions))
        tally = Counter({(sids[0], sessions[0]): len(eps)}) if one else Counter(pairs)
        if step > 0 or len(tally) == 1:  # a subnet's presence on a switch looked at where its first endpoint there came
            order = list(tally)
        else:  # or where its last went
            last = dict(zip(pairs, count()))
            order = sorted(last, key=last.__getitem__)
        crossed = []
        for pair in order:
            k = tally[pair]
            n = count_in(self.ep_count, pair[0], pair[1], step * k)
            if (n == k) if step > 0 else n == 0:
                crossed.append(pair)
        for sid, session in crossed:
            self.holders_changed.add(sid)
            self._presence(session, sid)
        if step > 0:
            for session, ids in grouped(sessions, vids).items():
                self.by_session.setdefault(session, set()).update(ids)
        else:
            remove_all(self.by_session, sessions, vids)
        by_subnet = grouped(sids, eps)
        if evpn:
            vteps = self.view.remote_vteps
            for session in dict.fromkeys(sessions):
                if session in self.by_session:
                    vteps[session] = session[len("evpn:"):]
                else:  # its last endpoint went
                    vteps.pop(session, None)
            for sid, group in by_subnet.items():
                sub = subnets.get(sid)
                if sub is not None and sub.domain_id and sub.cidr:
                    self.routes.count_all(group, sub.domain_id, step)
            return
        for sid, group in by_subnet.items():
            count_all(self.vport_macs, sid, list(map(_MAC, group)), step)
        by_scope: dict = {}  # scope -> the IPs of its endpoints (of the subnets' groups: made once each)
        for sid, group in by_subnet.items():
            sub = subnets.get(sid)
            ips = list(chain.from_iterable(map(_IPS, group)))
            by_scope.setdefault((sub.domain_id if sub else None) or sid, []).extend(ips)
            if sub is not None and sub.domain_id and sub.cidr:
                self.routes.count_all(group, sub.domain_id, step, ips)
        by_ip = self.remote.by_ip
        for scope, ips in by_scope.items():
            crossed_ips = count_all(self.claims, scope, ips, step)
            wanted = by_ip.get(scope)
            if wanted and crossed_ips:
                for ip in filter(wanted.__contains__, crossed_ips):
                    self.remote.claim_changed(scope, ip)
