"""The derived View kept up to date by deltas, and the owners each delta reaches.

``LiveView.apply(journal)`` takes what State recorded (``controller.journal``) and updates its ``View`` in place
for just those objects: the endpoints of the vports that moved or changed, the hardware-VTEP and EVPN endpoints of
the subnets they reach (EVPN: ``controller.viewremote``, by route delta), each subnet's endpoints in order
(``controller.viewplaces``), switch presence, bare-metal gateways,
flood lists, and per domain its static and EVPN routes (``controller.viewroutes``; the full FIB, host routes
included, is rebuilt lazily when read). It returns a ``Reach``: per switch the owners to recompile
(``controller.viewowners``), and the switches to compile whole (connected or changed). Nothing here walks every
vport or every switch because one changed. ``LiveView.build()`` is the same from scratch (start, fallback); the
incremental and scratch results are checked against ``derive.derive`` by tests/unit/test_incremental_oracle.py,
and so are its indexes: an entry that empties goes (controller/keyed.py), so a LiveView kept by deltas for months
of tenants coming and going holds what one built from scratch holds.

Many vports at once (10,000 ports appearing, an apply of 10,000) pause (``pacer``, controller/pacer.py) once every
so many vports placed and secured, endpoints compared (a subnet's EVPN or hardware-VTEP endpoints derived again) and
endpoints whose owners are listed, so the event loop gets turns. Handlers may change State
during those pauses: one pass reads the policy it started with (``_Pinned``); what changed meanwhile is in State's
journal for the next pass, which reads each object it names again (the other inputs are read per object, or
wholesale, so reading them late is reading them as the next pass will). tests/unit/test_incremental_oracle.py runs
its random events inside those pauses too.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import chain, repeat
from operator import attrgetter, is_not

from controller import derive as d
from controller.extdelta import ExternalDelta
from controller.feed import Feeds
from controller.journal import Journal
from controller.keyed import EMPTY_COUNTS, add_to, count_in, count_of, discard_from
from controller.pacer import NEVER, Pacer, runs
from controller.security import LiveSecurity
from controller.viewbatch import BatchSwaps
from controller.viewremote import RemoteEndpoints
from controller.viewroutes import Routes
from controller.viewowners import OwnerReach
from controller.viewplaces import SubnetPlaces
from controller.viewvteps import VtepReach, reach as vtep_reach
from openflow.flows import Owner


@dataclass
class Reach:
    """What one delta reaches: the owners to recompile per switch, the switches to compile whole."""

    owners: dict[str, set[Owner]] = field(default_factory=lambda: defaultdict(set))  # session -> owners
    rebuild: set[str] = field(default_factory=set)  # switches compiled whole
    gone: set[str] = field(default_factory=set)  # switches that left
    touched: set[Owner] = field(default_factory=set)  # owners whose inputs changed, on a switch or not (and gone)
    vteps: VtepReach = field(default_factory=VtepReach)  # what it reaches of the hardware VTEPs' rows


NOWHERE = (frozenset(), frozenset())  # the subnets and domains of a session with none
_SUBNET_ID = attrgetter("subnet_id")
_NOT_NONE = partial(is_not, None)


class _Pinned:
    """State as one pass of ``LiveView.apply`` sees it: the policy that pass started with, the rest as it is."""

    def __init__(self, state):
        self._state = state
        self.policy = state.policy

    def __getattr__(self, name):
        return getattr(self._state, name)


class LiveView(OwnerReach, SubnetPlaces, BatchSwaps):
    """The View of one State and the indexes that keep it current (see the module docstring); what a delta reaches
    is worked out by ``OwnerReach`` (controller/viewowners.py)."""

    def __init__(self, state, pacer: Pacer = NEVER):
        self.state = state
        self.pacer = pacer  # ticked per vport placed and per endpoint reached (see the module docstring)
        self.view = d.View()
        self.routes = Routes(self)
        v = self.view
        v._on = {}
        # Every index keyed by subnet, domain, session or scope loses an entry when it empties (controller/keyed.py)
        self.sub_on: dict[str, set[str]] = {}  # subnet -> switches (sessions) it is present on
        self.dom_on: dict[str, set[str]] = {}
        self.dom_count: dict[str, Counter] = {}  # session -> domain -> its subnets there
        self.ep_count: dict[str, Counter] = {}  # subnet -> session -> endpoints
        v._holders = self.ep_count
        self.by_session: dict[str, set[str]] = {}  # session -> endpoint ids
        v._sessions = self.by_session
        self.by_datapath: dict[int, dict[str, None]] = {}  # datapath id -> sessions of the switches with it (in order)
        v._datapaths = self.by_datapath
        self.vports_in: dict[str, list[str]] = {}  # subnet -> sorted located vport ids
        self.hw: dict[str, list] = {}  # subnet -> its hardware VTEP endpoints, in derive's order
        self.remote = RemoteEndpoints(self)  # EVPN endpoints (controller/viewremote.py)
        self.ev = self.remote.ev  # subnet -> its EVPN endpoints, sorted by MAC
        self.vport_macs: dict[str, Counter] = {}  # subnet -> MACs of its vport endpoints
        self.claims: dict[str, Counter] = {}  # scope -> IPs of vport and hw endpoints
        self.dom_subnets: dict[str, list[str]] = {}
        self.servers: dict[str, dict[str, dict]] = {}  # subnet -> MAC -> bare-metal vport
        self.server_at: dict[str, tuple] = {}
        self.vtep_macs: dict[str, dict[int, list]] = {}  # VTEP session -> VNI -> MACs sorted
        self.vtep_tunnels: dict[str, tuple] = {}
        self.own_ips: Counter = Counter()
        self.present_dom: dict[tuple, str | None] = {}  # (session, subnet) present -> the subnet's domain then
        self.places: dict[tuple, set] = {}  # OwnerReach._where's answers, until a presence changes
        self.leaving: dict[str, set] | None = None  # within _vport_eps: the vports leaving each subnet (_unplace)
        self.sec = LiveSecurity()  # view.security and its indexes (controller/security.py)
        self.ext_delta = ExternalDelta()  # view.external by delta (controller/extdelta.py)
        v._dom_subnets = self.dom_subnets
        v.local_feeds = Feeds()
        v.journals = 0

    # ------------------------------------------------------------------------------------------ build
    def build(self) -> Reach:
        """From scratch: every object of State is dirty (no owners to list: every switch is compiled whole)."""
        self.__init__(self.state, self.pacer)
        s = self.state
        kinds = ("vport", "subnet", "domain", "acl", "policy_group")
        ids = {kind: {x["id"] for x in s.policy.all(kind)} for kind in kinds}
        j = Journal(vports=set(s.locations) | ids["vport"], vport_policies=ids["vport"], subnets=ids["subnet"],
                    domains=ids["domain"], switches=set(s.vrs), vteps=set(s.vteps),
                    remote_subnets=s.remote_index.subnets(), remote_domains=s.remote_index.domains(), acls=ids["acl"],
                    groups=ids["policy_group"])
        return self.apply(j, owners=False)

    # ------------------------------------------------------------------------------------------ apply
    def apply(self, j: Journal, owners: bool = True) -> Reach:
        """Update the View for what the journal names; returns what that reaches (owners: per switch, the
        owners to recompile; not needed when everything is compiled anyway)."""
        state, fib = self.state, self.view.fib
        self.view.journals += 1  # (taken: what it names is in the View from now on, or the next pass builds it whole)
        self.state = _Pinned(state)  # one policy for the whole pass, however long it pauses
        fib.passing = True  # the View is whole again at the pass's end: a FIB read in a pause is not kept till then
        try:
            return self._apply(j, owners)
        finally:
            self.state = state
            fib.passing = False
            self._feed_local()

    def changed_subnets(self) -> set[str]:
        """The subnets of the endpoints this pass changed so far, as they were and are. Kept as the batched swaps go
        (``changed_sids``: their subnets are at hand there); worked out from ``changed`` again only after a ``_swap``
        (an endpoint changed twice in a pass no longer names the subnet it was in between). Asked three times a pass:
        10,000 endpoints gone were three C walks of ``changed`` (~1,200 instructions an endpoint)."""
        if self.changed_sids is None:
            self.changed_sids = set(map(_SUBNET_ID, filter(_NOT_NONE, chain.from_iterable(self.changed.values()))))
        return set(self.changed_sids)

    def _feed_local(self) -> None:
        """Tell the View's readers (``View.local_feeds``) which local endpoints and tunnel IPs this pass changed, also
        when it failed part way (what it changed stays changed)."""
        changed = list(zip(repeat("endpoint"), getattr(self, "local_changed", ())))  # (C: 10,000 ports bound or gone)
        self.view.local_feeds.record(changed + [("tunnel", session) for session in getattr(self, "tunnels", ())])

    def _apply(self, j: Journal, owners: bool) -> Reach:
        self.r = Reach()
        self.listing = owners
        self.changed = {}  # endpoint id -> (old, new)
        self.changed_sids = set()  # the subnets of ``changed``'s endpoints (None: to work out, ``changed_subnets``)
        self.local_changed = set()  # ids of the endpoints of view.local that changed (came, went or changed)
        self.presence = defaultdict(set)  # session -> subnets and ("d", domain) whose presence there changed
        self.on_before = {}  # ("s", subnet) or ("d", domain) whose switches changed -> its switches at the start
        self.places = {}  # OwnerReach._where's answers, until a presence changes
        self.holders_changed = set()  # subnets whose set of endpoint sessions changed
        self.tunnels = set()  # sessions whose tunnel IP (or tunnel port) changed
        self.switches_changed = False
        self.redo = set()  # vports of subnets whose SubnetInfo changed
        self.was_at = {}  # endpoint id -> where its owner had flows before it changed (sets shared: not changed)
        self.tails = set()  # subnets whose hardware VTEP or EVPN endpoints changed
        self.routes.start()
        own_before = set(self.own_ips)
        self._switches(j.switches)
        self._vteps(j.vteps)
        self._vtep_vnis(j.vtep_vnis, j.vteps)
        info_changed = self._policy(j)
        own_changed = set(self.own_ips) != own_before
        self._vport_eps(j.vports | self.redo, j.vport_policies)
        hw_dirty = set(j.subnets) | info_changed | self.bound_changed | self.hw_vtep_subnets
        hw_dirty |= {sid for sid in self.changed_subnets() if self.view.bound_vteps.get(sid) or self.servers.get(sid)}
        for sid in sorted(hw_dirty):
            self._hw(sid)
        self.remote.update(j, info_changed, own_changed)
        self._by_subnet()
        bm_changed = self._bm_gateways(j, info_changed)
        self.routes.update(j, own_changed)
        self._security(j)
        ext_owners = self._external(j)
        self.r.vteps = vtep_reach(self, j, info_changed, bm_changed)
        if owners:
            self._owners(info_changed, bm_changed)
            for session, reached in self.acl_reach.items():
                self._add_all(reached, session)
            for owner, sessions in ext_owners.items():
                self._add(owner, sessions)
            self._metadata()
        return self.r

    # ------------------------------------------------------------------------------------------ external networks
    def _external(self, j) -> dict[Owner, set[str]]:
        """view.external (controller/extnet.py), kept per object by controller/extdelta.py: the owners whose
        inputs changed and the switches they are or were on."""
        return self.ext_delta.apply(self, j, full=not self.listing)

    # ------------------------------------------------------------------------------------------ inputs
    def _switches(self, sessions):
        s, v = self.state, self.view
        for session in sessions:
            snap = s.vrs.get(session)
            old = v.switches.get(session)
            new = (d.switch_info(snap, s.vtep_ip_of(snap), s.tunnel_ports.get(session), s.agent_ports.get(session),
                                 getattr(s, "standby", {}).get(session)) if snap is not None else None)
            if old == new:
                continue
            if old is not None and new is not None and old.standby != new.standby and \
                    replace(old, standby=new.standby) == new:  # only its standby ports: their one owner recompiled
                v.switches[session] = new
                self._add(Owner("activation", session), (session,))
                continue
            if old is not None:
                self.own_ips[old.vtep_ip] -= 1
            self._datapath_moved(session, old, new)
            if new is None:
                del v.switches[session]
                self.r.gone.add(session)
            else:
                v.switches[session] = new
                self.own_ips[new.vtep_ip] += 1
                self.r.rebuild.add(session)
            self.own_ips = +self.own_ips
            if old is None or new is None or (old.vtep_ip, old.tunnel_ofport) != (new.vtep_ip, new.tunnel_ofport):
                self.tunnels.add(session)
            self.switches_changed = True

    def _datapath_moved(self, session, old, new):
        """``by_datapath`` as the switch ``session`` goes from ``old`` to ``new`` (each a SwitchInfo or None)."""
        before, after = old.datapath_id if old else None, new.datapath_id if new else None
        if before == after:
            return
        if before is not None:
            held = self.by_datapath.get(before)
            if held is not None:
                held.pop(session, None)
                if not held:
                    del self.by_datapath[before]
        if after is not None:
            self.by_datapath.setdefault(after, {})[session] = None

    def _vteps(self, sessions):
        s, v = self.state, self.view
        names = set()
        for session in sessions:
            snap = s.vteps.get(session)
            old = v.vteps.get(session)
            for ip in self.vtep_tunnels.pop(session, ()):
                self.own_ips[ip] -= 1
            if snap is None:
                v.vteps.pop(session, None)
                self.vtep_macs.pop(session, None)
            else:
                v.vteps[session] = d.VtepInfo(session, snap.name, snap.tunnel_ip)
                self.vtep_tunnels[session] = tuple(snap.tunnel_ips)
                self.own_ips.update(snap.tunnel_ips)
                macs = defaultdict(list)
                for mac in sorted(snap.local_macs, key=lambda m: (m.vni, m.mac)):
                    macs[mac.vni].append(mac)
                self.vtep_macs[session] = dict(macs)
            self.own_ips = +self.own_ips
            new = v.vteps.get(session)
            if (old and old.tunnel_ip) != (new and new.tunnel_ip):
                self.tunnels.add(session)
            names |= {x.name for x in (old, new) if x is not None}
        v.vteps = dict(sorted(v.vteps.items()))
        touched = set(sessions)
        self.hw_vtep_subnets = {sid for sid, bound in v.bound_vteps.items() if bound & touched}
        self.vtep_names = names  # of the VTEP sessions changed (before and after)

    def _vtep_vnis(self, pairs, whole):
        """Only the local MACs of these (VTEP session, VNI) changed: those VNIs' lists again, and the subnets of
        those VNIs bound to that VTEP are dirty (not every subnet of the VTEP)."""
        s, v = self.state, self.view
        vnis = defaultdict(set)
        for session, vni in pairs:
            snap = s.vteps.get(session)
            if session in whole or snap is None or session not in self.vtep_macs:
                continue
            macs = self.vtep_macs[session]
            macs[vni] = list(snap.macs_of(vni))
            if not macs[vni]:
                del macs[vni]
            vnis[session].add(vni)
        if vnis:
            self.hw_vtep_subnets |= {sid for sid, bound in v.bound_vteps.items() if sid in v.subnets and
                                     any(v.subnets[sid].vni in vnis.get(session, ()) for session in bound)}

    def _policy(self, j) -> set[str]:
        """Domains and subnets from policy; returns the subnets whose SubnetInfo changed."""
        p, v = self.state.policy, self.view
        for did in j.domains:
            dom = p.get("domain", did)
            if dom is None:
                v.domains.pop(did, None)
            else:
                v.domains[did] = dom
        info_changed = set()
        wanted = set(j.subnets) | {s for did in j.domains for s in self.dom_subnets.get(did, ())}
        ordered = [x["id"] for x in p.all("subnet") if x["id"] in wanted] if wanted else []  # derive's order
        for sid in ordered + sorted(wanted - set(ordered)):
            old = v.subnets.get(sid)
            new = d.subnet_info(p, p.get("subnet", sid))
            if old == new:
                continue
            info_changed.add(sid)
            if old is not None:
                self._drop_subnet_eps(sid)
            for info in (old, new):
                if info is not None and info.domain_id:
                    self.routes.touched.add(info.domain_id)
            if new is None:
                del v.subnets[sid]
            else:
                v.subnets[sid] = new
            if (old and old.domain_id) != (new and new.domain_id):
                if old is not None and old.domain_id:
                    self._unfile_subnet(old.domain_id, sid)
                if new is not None and new.domain_id:
                    self.dom_subnets.setdefault(new.domain_id, []).append(sid)
                    order = {x: n for n, x in enumerate(v.subnets)}
                    self.dom_subnets[new.domain_id].sort(key=order.get)
        if j.vteps or j.subnets:
            self._bound()
        else:
            self.bound_changed = set()
        return info_changed

    def _unfile_subnet(self, did, sid):
        subnets = self.dom_subnets[did]
        subnets.remove(sid)
        if not subnets:
            del self.dom_subnets[did]

    def _bound(self):
        v, p = self.view, self.state.policy
        by_name = {}
        for session, vtep in v.vteps.items():
            by_name.setdefault(vtep.name, session)
        bound = {}
        for b in p.all("vtep_binding"):
            session = by_name.get(b["switch"])
            if session is not None and b["subnet_id"] in v.subnets:
                bound.setdefault(b["subnet_id"], set()).add(session)
        self.bound_changed = {sid for sid in set(bound) | set(v.bound_vteps) if bound.get(sid) != v.bound_vteps.get(sid)}
        self.hw_vtep_subnets |= {b["subnet_id"] for b in p.all("vtep_binding") if b["switch"] in self.vtep_names}
        v.bound_vteps = bound

    # ------------------------------------------------------------------------------------------ endpoints
    def _vport_eps(self, vids, policy_changed):
        self.leaving = {}  # subnet -> vport ids leaving its sorted vports, taken out together (_unplace)
        try:
            for run in runs(self.pacer, sorted(vids)):  # (a run at a time: controller/viewbatch.py)
                self._swap_run(self._run_changes(run, policy_changed))
                self.pacer.tick(len(run))
        finally:
            leaving, self.leaving = self.leaving, None
            for sid, gone in leaving.items():
                self._unplace(sid, gone)

    def _server(self, vid, vport):
        old = self.server_at.pop(vid, None)
        servers = self.servers.get(old[0], {}) if old is not None else {}
        if old is not None and servers.get(old[1], {}).get("id") == vid:
            del servers[old[1]]
            if not servers:
                del self.servers[old[0]]
        if vport is not None and vport["binding"]["flavour"] == "baremetal":
            self.servers.setdefault(vport["subnet_id"], {})[vport["mac"]] = vport
            self.server_at[vid] = (vport["subnet_id"], vport["mac"])

    def _hw(self, sid):
        """The subnet's hardware VTEP endpoints (derive._add_vteps, for one subnet)."""
        v = self.view
        sub = v.subnets.get(sid)
        out, known = [], set()
        if sub is not None:
            bound = v.bound_vteps.get(sid, set())
            servers = self.servers.get(sid, {})
            macs = self.vport_macs.get(sid, EMPTY_COUNTS)
            for session in sorted(bound):
                snap_name = v.vteps[session].name
                for mac in self.vtep_macs.get(session, {}).get(sub.vni, ()):
                    if mac.mac in known or macs.get(mac.mac):
                        continue
                    server = servers.get(mac.mac)
                    out.append(d.server_endpoint(server, session) if server is not None else
                               d.learned_endpoint(snap_name, mac, sid, session))
                    known.add(mac.mac)
            for mac, server in sorted(servers.items()):
                if mac not in known and not macs.get(mac) and len(bound) == 1:
                    out.append(d.server_endpoint(server, next(iter(bound))))
        self._replace_list(self.hw, sid, out)

    def _replace_list(self, lists, sid, new):
        """A subnet's hardware-VTEP or EVPN endpoints (``lists``) become ``new``; the pacer is ticked per endpoint
        compared (a subnet of 10,000 EVPN MACs derived again when a local vport of its domain came)."""
        old = {ep.vport_id: ep for ep in lists.get(sid, ())}
        tick = self.pacer.tick
        kept = []  # one object per endpoint: the old one when equal
        for ep in new:
            was = old.get(ep.vport_id)
            kept.append(was if was is not None and was == ep else ep)
            tick()
        if kept:
            lists[sid] = kept
        else:
            lists.pop(sid, None)
        fresh = {ep.vport_id: ep for ep in kept}
        if list(old.values()) != kept:
            self.tails.add(sid)
        for eid in set(old) | set(fresh):
            before, after = old.get(eid), fresh.get(eid)
            if before is not after and before != after:
                self._swap(eid, before, after)
            tick()

    def _swap(self, eid, old, new):
        """Replace one endpoint in the view and every index. A vport turning bare metal or back keeps its id as it
        changes kind, and the vport's side may come first (its server endpoint still in the view): what the pass
        changed is recorded from what the view held, not from ``old`` and ``new``."""
        v = self.view
        first = self.changed[eid][0] if eid in self.changed else v.endpoints.get(eid)
        if eid in v.local or (new is not None and new.kind in d.LOCAL_KINDS):
            self.local_changed.add(eid)
        if old is not None:
            was, where = self.was_at.get(eid), self._where(old)  # (shared: never changed in place)
            self.was_at[eid] = where if was is None or was <= where else was | where
            self._count(old, -1)
            held = v.endpoints.get(eid)
            if held is old or held == old:  # (a dataclass's == compares every field, even of the same object)
                del v.endpoints[eid]
                v.local.pop(eid, None)
        if new is not None:
            self._count(new, +1)
            v.endpoints[eid] = new
            if new.kind in d.LOCAL_KINDS:
                v.local[eid] = new
        self.changed[eid] = (first, v.endpoints.get(eid))
        self.changed_sids = None

    def _count(self, ep, step):
        v = self.view
        sub = v.subnets.get(ep.subnet_id)
        sid, session = ep.subnet_id, ep.session
        if count_in(self.ep_count, sid, session, step) == (step > 0):  # its first endpoint there came, or its last went
            self.holders_changed.add(sid)
            self._presence(session, sid)
        if step > 0:
            add_to(self.by_session, session, ep.vport_id)
        else:
            discard_from(self.by_session, session, ep.vport_id)
        if ep.kind == "vport":
            count_in(self.vport_macs, sid, ep.mac, step)
        if ep.kind != "evpn":
            scope = (sub.domain_id if sub else None) or sid
            for ip in ep.ips:
                if count_in(self.claims, scope, ip, step) == (step > 0):
                    self.remote.claim_changed(scope, ip)
        elif session in self.by_session:
            v.remote_vteps[session] = session[len("evpn:"):]
        else:  # its last endpoint went
            v.remote_vteps.pop(session, None)
        if sub is not None and sub.domain_id and sub.cidr:
            self.routes.count(ep, sub.domain_id, step)

    def _drop_subnet_eps(self, sid):
        """Every endpoint of a subnet whose SubnetInfo changes leaves (counted under the old info); the
        derivation puts them back under the new one."""
        for vid in list(self.vports_in.get(sid, ())):
            ep = self.view.endpoints.get(vid)
            self._swap(vid, ep, None)
            self._place(ep, remove=True)
            self.redo.add(vid)
        self._replace_list(self.hw, sid, [])
        self._replace_list(self.ev, sid, [])
        self.remote.forget_subnet(sid)

    def _scope(self, sid):
        sub = self.view.subnets.get(sid)
        return (sub.domain_id if sub else None) or sid

    def _presence(self, session, sid):
        """Whether the subnet (and so its domain) is on this session now; records a change. A subnet that stays
        there while its domain changed (its gateway VRS keeps it; a snapshot restored on a standby can change a
        subnet's domain_id, which a REST write and a replicated put refuse: controller/replicacheck.py) leaves under
        the domain it was counted under and comes back under its new one."""
        v = self.view
        here = count_of(self.ep_count, sid, session) > 0 or v.bm_gateways.get(sid) == session
        was = sid in v._on.get(session, NOWHERE)[0]
        if here and was and self.present_dom.get((session, sid)) != getattr(v.subnets.get(sid), "domain_id", None):
            self._present(session, sid, False)
        elif here == was:
            return
        self._present(session, sid, here)

    def _present(self, session, sid, here):
        """The subnet arrives on this session (``here``) or leaves it: the indexes and the pass's notes."""
        v = self.view
        subnets, domains = v._on.setdefault(session, (set(), set()))
        self.presence[session].add(sid)
        self.places = {}  # what _where read changes below
        self.on_before.setdefault(("s", sid), set(self.sub_on.get(sid, ())))
        if here:
            sub = v.subnets.get(sid)
            dom = self.present_dom[(session, sid)] = sub.domain_id if sub else None
            subnets.add(sid)
            add_to(self.sub_on, sid, session)
        else:
            dom = self.present_dom.pop((session, sid), None)  # the domain it was counted under
            subnets.discard(sid)
            discard_from(self.sub_on, sid, session)
        if dom:
            self.on_before.setdefault(("d", dom), set(self.dom_on.get(dom, ())))
            if not count_in(self.dom_count, session, dom, 1 if here else -1):
                domains.discard(dom)
                discard_from(self.dom_on, dom, session)
                self.presence[session].add(("d", dom))
            elif here and dom not in domains:
                domains.add(dom)
                add_to(self.dom_on, dom, session)
                self.presence[session].add(("d", dom))
        if not (subnets or domains):
            del v._on[session]

    # ------------------------------------------------------------------------------------------ gateways
    def _bm_gateways(self, j, info_changed) -> set[str]:
        """derive.bm_gateways, recomputed when a switch, a binding or the holders of a subnet changed and
        some subnet has a VTEP binding; returns the subnets whose gateway changed."""
        v, p = self.view, self.state.policy
        if not (v.bm_gateways or p.count("vtep_binding")):
            return set()
        if not (self.switches_changed or j.subnets or self.bound_changed or info_changed or self.holders_changed):
            return set()
        new = self._gateways()
        changed = {sid for sid in set(new) | set(v.bm_gateways) if new.get(sid) != v.bm_gateways.get(sid)}
        old = v.bm_gateways
        v.bm_gateways = new
        for sid in changed | (info_changed & new.keys()):  # (a gateway kept: its subnet's domain may have changed)
            for session in {old.get(sid), new.get(sid)} - {None}:
                self._presence(session, sid)
        return changed

    def _gateways(self):
        v, p = self.view, self.state.policy
        candidates = [sw for sw in v.switches.values() if sw.vtep_ip and sw.tunnel_ofport]
        if not candidates:
            return {}
        out = {}
        for sid in sorted({b["subnet_id"] for b in p.all("vtep_binding") if b["subnet_id"] in v.subnets}):
            sub = v.subnets[sid]
            if not d.needs_gateway(sub):
                continue
            holding = {s for s in self.ep_count.get(sid, ()) if s in v.switches}
            in_domain = set()
            for other in self.dom_subnets.get(sub.domain_id, ()) if sub.domain_id else ():
                in_domain |= {s for s in self.ep_count.get(other, ()) if s in v.switches}
            preferred = list(p.get("subnet", sid).get("gateway_chassis") or ())
            out[sid] = min(candidates, key=lambda sw: d._gateway_rank(sid, sw, preferred, (holding, in_domain))).session
        return out
