"""The View's EVPN endpoints, kept up to date by route deltas (``controller.viewdelta`` calls it).

A received MAC (``controller.remote.RemoteMac``) becomes an endpoint of kind "evpn" in its subnet unless a local
endpoint has its MAC or its VTEP is not usable; each of its IPs goes to it unless a local endpoint of the scope
(the subnet's domain, or the L2-only subnet) has the IP or another remote MAC holds it more strongly
(``controller.remote.ip_holder``: the higher sequence number, then the route received later; ``derive._add_remote``
from scratch). ``RemoteEndpoints`` keeps, per scope, the remote MACs wanting each IP,
so a route delta re-derives the MACs it names and the ones sharing an IP with them; a whole scope is derived
again only when its subnets, its local endpoints or our own VTEP IPs changed.

A round of 10,000 received or withdrawn routes reaches as many MACs: the LiveView's pacer (controller/pacer.py) is
ticked per MAC derived. What may change during its pauses is what may change during the rest of
``LiveView.apply`` (which pauses too): State takes new changes into its journal, for the next pass; State's remote
index, read here, changes only in the programming loop's import step, not during this pass.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from itertools import compress, repeat
from operator import attrgetter, is_, itemgetter, not_

from controller import derive as d
from controller.keyed import EMPTY_COUNTS, add_to, count_of, discard_from, discard_under
from controller.pacer import c_ticks, runs
from controller.remote import ip_holder
from controller.viewbatch import grouped
from openflow.pacedsort import sorted_paced

_MAC = attrgetter("mac")  # an endpoint's MAC: the sort key of a subnet's EVPN endpoints (in C, not a lambda)
_MAC_ORDER = attrgetter("mac", "vtep_ip")  # a remote MAC's order in its subnet (``_take``): (MAC, VTEP), in C
_VPORT_ID, _FIRST, _SECOND = attrgetter("vport_id"), itemgetter(0), itemgetter(1)


class RemoteEndpoints:
    def __init__(self, live):
        self.live = live
        self.ev: dict[str, list] = {}  # subnet -> its EVPN endpoints, sorted by MAC
        self.want: dict[tuple, tuple] = {}  # (subnet, MAC) taken as an EVPN endpoint -> (scope, its IPv4 IPs)
        self.wanted: dict[str, set] = {}  # subnet -> its keys in want
        self.by_ip: dict[str, dict[str, dict]] = {}  # scope -> IP -> {(subnet, MAC) wanting it: its ip_rank}
        # (no empty entries)
        self.recheck: dict[str, set] = defaultdict(set)  # scope -> keys whose IP lost or gained a claim

    def claim_changed(self, scope, ip):
        """A local endpoint of the scope took or freed ``ip``: the remote MACs wanting it are checked again."""
        if ip in self.by_ip.get(scope, ()):
            self.recheck[scope].update(self.by_ip[scope][ip])

    def update(self, j, info_changed, own_changed):
        """EVPN endpoints and flood targets: a scope (domain, or L2-only subnet) is derived whole when its
        subnets' info, local endpoints or floods changed (or our own VTEP IPs); otherwise only the MACs whose
        routes changed, and the MACs that share an IP with them (``_macs``)."""
        v, index = self.live.view, self.live.state.remote_index
        remote = index.subnets()
        subnets = set(j.remote_subnets) | info_changed
        subnets |= self.live.changed_subnets()
        if own_changed:
            subnets |= remote | set(v.remote_floods) | set(self.ev)
        scopes = {self.live._scope(sid) for sid in subnets if sid in v.subnets} | \
            {sid for sid in subnets if sid not in v.subnets}
        fast = defaultdict(set)  # scope -> its (subnet, MAC) whose routes changed
        several, scope_of = index.several(), {}  # subnet -> its scope, found once per subnet (not per MAC)
        for sid, mac in j.remote_macs:
            if sid not in v.subnets or several:
                scopes.add(sid if sid not in v.subnets else self.live._scope(sid))
                continue
            scope = scope_of.get(sid)
            if scope is None:
                scope = scope_of[sid] = self.live._scope(sid)
            if scope not in scopes:
                fast[scope].add((sid, mac))
        for scope in sorted(scopes):
            sids = sorted({sid for sid in remote | set(self.ev) if sid == scope or
                           (sid in v.subnets and v.subnets[sid].domain_id == scope)})
            for key in set().union(*self.by_ip.pop(scope, {}).values()):
                self._unwant(key)
                self.live.pacer.tick()
            taken = [(sid, self._take(sid, index.subnet_macs(sid))) for sid in sids]
            holders = {}  # once every MAC of the scope wants its IPs: each IP to its holder, found once
            for sid, macs in taken:
                self._endpoints(sid, macs, holders)
        for scope, keys in sorted(fast.items()):
            self._macs(scope, keys)
        recheck, self.recheck = self.recheck, defaultdict(set)  # an IP freed by a MAC no longer taken
        for scope, keys in sorted(recheck.items()):
            self._macs(scope, {k for k in keys if self.want.get(k, (None,))[0] == scope})
        for sid in subnets:
            ips = index.subnet_floods(sid)
            floods = frozenset(ip for ip in ips if sid in v.subnets and d._ipv4(ip) and ip not in self.live.own_ips)
            if floods != v.remote_floods.get(sid, frozenset()):
                self.live.holders_changed.add(sid)
            if floods:
                v.remote_floods[sid] = floods
            else:
                v.remote_floods.pop(sid, None)

    def _take(self, sid, macs) -> list:
        """The remote MACs of one subnet that become its EVPN endpoints (derive._add_remote, for one subnet), each
        recorded as wanting its IPs; ``_endpoints`` makes them once the whole scope is taken."""
        self.forget_subnet(sid)
        if sid not in self.live.view.subnets:
            return []
        scope, out, known = self.live._scope(sid), [], {ep.mac for ep in self.live.hw.get(sid, ())}
        for mac in sorted_paced(list(macs), c_ticks(self.live.pacer), _MAC_ORDER):  # (10,000: ~20 ms in one)
            self.live.pacer.tick()
            if self._eligible(sid, mac, known):
                self._want((sid, mac.mac), scope, mac)
                out.append(mac)
                known.add(mac.mac)
        return out

    def _endpoints(self, sid, macs, holders):
        """The subnet's EVPN endpoints, each with the IPs no local endpoint of the scope has and it holds
        (``ip_holder``: among the remote MACs wanting an IP, the newer binding; ``holders``: {IP: its holder}
        of the scope, filled as found)."""
        out = []
        if macs:
            scope = self.live._scope(sid)
            held = self._held_by(scope, holders)
            tick = self.live.pacer.tick
            for mac in macs:
                tick()  # a subnet of 10,000 MACs made again: 58-66 ms in one stretch before (bursts, stop 33)
                key = (sid, mac.mac)
                out.append(d.evpn_endpoint(mac, held(key)))
        self.live._replace_list(self.ev, sid, out)

    def _held_by(self, scope, holders):
        """A function giving the IPs a key wanting them holds in ``scope`` (no local endpoint of the scope has
        them and it is their ``ip_holder``); each IP's holder is found once and kept in ``holders``, valid while
        the scope's wanting MACs do not change: 10,000 MACs announcing one IP were 10,000 holders found among
        10,000 (~12 s of CPU per pass; review33d)."""
        claims, wanted = self.live.claims.get(scope, EMPTY_COUNTS), self.by_ip.get(scope, {})

        def held(key):
            out = []
            for ip in self.want[key][1]:
                if not claims.get(ip):
                    if ip not in holders:
                        holders[ip] = ip_holder(wanted[ip])
                    if holders[ip] == key:
                        out.append(ip)
            return tuple(out)
        return held

    def _eligible(self, sid, mac, known) -> bool:
        """A remote MAC becomes an endpoint unless a local endpoint has it or its VTEP is not usable."""
        return not (count_of(self.live.vport_macs, sid, mac.mac) or mac.mac in known or not d._ipv4(mac.vtep_ip)
                    or mac.vtep_ip in self.live.own_ips)

    def _want(self, key, scope, mac):
        ips = tuple(ip for ip in mac.ips if d._ipv4(ip))
        self.want[key] = (scope, ips)
        add_to(self.wanted, key[0], key)
        for ip in ips:
            self.by_ip.setdefault(scope, {}).setdefault(ip, {})[key] = mac.ip_rank(ip)

    def forget_subnet(self, sid):
        """The subnet's MACs no longer want their IPs; the other MACs that want one of them are checked again at
        the end of the pass (``recheck``), gathered once per IP (10,000 MACs of the subnet on one IP: not the
        ones left after each, 50,000,000 set insertions). Ticks the pass's pacer per MAC and per IP (a subnet of
        10,000 MACs taken again whole was one stretch with the sort in ``_take``: test_view_evpn_pacing.py)."""
        touched, tick = set(), self.live.pacer.tick  # (scope, IP)
        for key in self.wanted.pop(sid, ()):
            scope, ips = self._unwant(key, keep_subnet=True)
            touched.update((scope, ip) for ip in ips)
            tick()
        for scope, ip in touched:
            self.recheck[scope].update(self.by_ip.get(scope, {}).get(ip, ()))
            tick()

    def _unwant(self, key, keep_subnet=False) -> tuple:
        """``key`` no longer wants its IPs: (the scope, the IPs) it wanted, for the caller to check the other MACs
        wanting them again."""
        if key not in self.want:
            return None, ()
        scope, ips = self.want.pop(key)
        if not keep_subnet:
            discard_from(self.wanted, key[0], key)
        discard_under(self.by_ip, scope, ips, key)
        return scope, ips

    def _macs(self, scope, keys):
        """The EVPN endpoints of the MACs whose routes changed in one scope, and of the MACs that want one of
        the same IPs (an IP goes to its holder among the MACs wanting it, ``ip_holder``, as in derive)."""
        index = self.live.state.remote_index
        touched, known = set(), {}  # the IPs the keys wanted before or want now
        for key in keys:
            self.live.pacer.tick()
            touched.update(self.want.get(key, (None, ()))[1])
            self._unwant(key)
            sid, mac = key
            remote = index.mac(sid, mac)
            if sid not in known:
                known[sid] = {ep.mac for ep in self.live.hw.get(sid, ())}
            if remote is not None and self._eligible(sid, remote, known[sid]):
                self._want(key, scope, remote)
                touched.update(self.want[key][1])
        wanted = self.by_ip.get(scope, {})  # the keys sharing a touched IP, gathered once per IP: only keys
        reached = set(keys).union(*(wanted.get(ip, ()) for ip in touched))  # in ``keys`` came or went
        held = self._held_by(scope, {})
        # the endpoints that go first, from the end of each subnet's sorted list (ascending, each removal moved the
        # rest of the list: 10,000 withdrawn MACs of one subnet, 50 million moves), then the others ascending (an
        # insertion into an empty list lands at its end)
        self._drop_going(sorted((key for key in reached if key not in self.want), reverse=True))
        for key in sorted(key for key in reached if key in self.want):
            self.live.pacer.tick()
            sid, mac = key
            new = d.evpn_endpoint(index.mac(sid, mac), held(key)) if key in self.want else None
            self._put(sid, mac, new)

    def _drop_going(self, going: list) -> None:
        """``_put(sid, mac, None)`` for each (subnet, MAC) of ``going`` in its order, a run at a time (``runs``:
        pausing where a tick per key would): 10,000 withdrawn MACs' endpoints out of their subnets' lists and the
        View together (``_drop_run``), not a bisect and a ``_swap`` each."""
        pacer = self.live.pacer
        for run in runs(pacer, going):
            self._drop_run(run)
            pacer.tick(len(run))

    def _drop_run(self, keys: list) -> None:
        live, v = self.live, self.live.view
        olds = {}  # (subnet, MAC) -> its endpoint, of the keys held
        for sid, macs in grouped(list(map(_FIRST, keys)), list(map(_SECOND, keys))).items():
            eps = self.ev.get(sid)
            if not eps:
                continue
            gone = set(macs)  # looked for between the first and the last of them only (not the whole list each run)
            lo, hi = bisect.bisect_left(eps, min(macs), key=_MAC), bisect.bisect_right(eps, max(macs), key=_MAC)
            part = eps[lo:hi]
            flags = list(map(gone.__contains__, map(_MAC, part)))
            if True not in flags:
                continue
            held = list(compress(part, flags))
            olds.update(zip(zip(repeat(sid), map(_MAC, held)), held))
            eps[lo:hi] = compress(part, map(not_, flags))
            if not eps:
                del self.ev[sid]
            live.tails.add(sid)
        olds = [olds[key] for key in keys if key in olds]  # (in the order of ``keys``, as ``_put`` one at a time)
        vids = list(map(_VPORT_ID, olds))
        if len(olds) > 1 and len(set(vids)) == len(vids) and live.changed.keys().isdisjoint(vids) and \
                v.local.keys().isdisjoint(vids) and all(map(is_, map(v.endpoints.get, vids), olds)):
            live._swap_out_evpn(vids, olds)
            return
        for vid, old in zip(vids, olds):
            live._swap(vid, old, None)

    def _put(self, sid, mac, new):
        """Put one EVPN endpoint in its subnet's list (sorted by MAC), replacing or removing the old one."""
        eps = self.ev.setdefault(sid, [])
        at = bisect.bisect_left(eps, mac, key=_MAC)
        old = eps[at] if at < len(eps) and eps[at].mac == mac else None
        if old is new or (old is not None and new is not None and old == new):
            if not eps:
                del self.ev[sid]
            return
        if old is not None and new is not None:
            eps[at] = new
        elif old is not None:
            del eps[at]
        else:
            eps.insert(at, new)
        if not eps:
            del self.ev[sid]
        self.live.tails.add(sid)
        self.live._swap((old or new).vport_id, old, new)
