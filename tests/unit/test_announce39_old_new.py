"""announce39's C loops (merge ea463af) against the code they replaced (main before the merge, ea463af^1, copied
here as ``Old*`` and ``old_*``): random sequences, after each the same results and the same state kept, and the
pauses in the same places.

- MAC mobility (bgp/mobility.py ``_locals`` with ``_new``, ``_update`` with ``_take_all``): MAC mobility's oracle
  world (tests/unit/test_mobility_oracle.py ``Driver``) drives the new and the old Mobility side by side.
- The Originator (bgp/originator.py ``_take`` in runs with ``_held_at_once``, ``_keep_taken``) and the announce at
  bind (bgp/early.py ``bound``, ``_endpoint``): the originator oracle's world (tests/unit/test_originator_oracle.py
  ``Publishing``) with its full publish replaced by a Federation running the old code.
- State's port steps (controller/state_ports.py ``_read_ports``, ``_mark_seen``, ``changed_ports``; controller/state.py
  ``_index_ports``' chunk: its ports forgotten at once; controller/binding.py ``locate``) and the type 2 payload text
  (bgp/routes.py ``encode_host``), on random inputs.

Each side ticks a real Pacer pausing every 1-4 units; each pause records how much was done: the records must be equal
(work done a run at a time in C loops pauses where work done an item at a time did)."""

from __future__ import annotations

import itertools
import json
import random
from itertools import filterfalse, repeat

import pytest

from bgp import originator as originator_mod
from bgp import routes as bgp_routes
from bgp.early import EarlyAnnounce, _Early
from bgp.evpn import mac_ip_routes
from bgp.federation import Federation
from bgp.mobility import Mobility
from bgp.originator import Clash, Originator, _Group, _in_slices, _session_facts
from controller import binding, loglimit
from controller import state_ports
from controller.binding import BindingIndex, Location, attached_mac
from controller.derive import vport_endpoint
from controller.discovery import PortInfo, VrsSnapshot
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


def old_read_ports(self, snap, changed, found, pacer):
    flavour, read = self.flavour_of(snap), state_ports.Read()
    for port in snap.ports if changed is None else found.values():
        read.keys[port.name] = binding.port_keys(port, flavour)
        read.seen[port.name] = [(snap.session, port.name, None)] + \
            [(snap.session, port.name, vlan) for vlan in port.vnic_vlans()]
        read.tunnels.update(state_ports.derive.tunnel_ports((port,)))
        read.agents.update(state_ports.derive.agent_ports((port,)))
        pacer.tick()
    return read


def old_mark_seen(self, snap, changed, seen):
    ports = self._seen_ports.setdefault(snap.session, {})
    names = set(ports) | set(seen) if changed is None else [name for name in changed if name in seen] if seen \
        else ()
    for name in names:
        keys = seen.get(name, ())
        for key in keys:
            self._seen.setdefault(key, next(self._clock))
        before = ports.get(name)
        if before is not None and before != keys:
            for key in set(before).difference(keys):
                self._seen.pop(key, None)
        if keys:
            ports[name] = keys
        else:
            ports.pop(name, None)


def old_changed_ports(old, snap, flavour_of):
    if old is None or (old.chassis, old.datapath_id, flavour_of(old)) != \
            (snap.chassis, snap.datapath_id, flavour_of(snap)):
        return None
    changed = getattr(snap, "changed", None)
    if changed is not None:
        return frozenset(changed)
    before = {p.name: p for p in old.ports}
    names = set()
    for port in snap.ports:
        was = before.pop(port.name, None)
        if was is not port and was != port:
            names.add(port.name)
    return frozenset(names | set(before))


def old_locate(self, vid, seen_order):
    key, skey = self.key_of.get(vid), self.static_of.get(vid)
    spots = self.sightings.get(key) if key else None
    if not spots and not skey:
        return None
    candidates = []
    for (session, name, vlan), where in spots.items() if spots else ():
        candidates.append((session, vlan, where))
    if skey:
        candidates += [(session, skey[2], where) for session, where in self.trunks.get(skey[:2], {}).items()]
    if len(candidates) > 1:
        candidates = [max(candidates, key=lambda c: (seen_order(c[0], c[2][1].name, c[1]), -c[2][0]))]
    for session, vlan, where in candidates:
        rank, port, flavour, chassis, dpid = where
        return Location(vid, session, chassis, dpid, port.name, port.ofport, vlan, flavour, port.mac,
                        None if vlan is not None else attached_mac(port))
    return None


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
            pacer, records = paced(every, lambda m=mobility: (len(m._eps), len(m.seqs), len(m.entries), len(m._ours)))
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
            fed.pacer, records = paced(every, lambda f=fed: (len(f.originator.routes), len(f.originator._eps),
                                                             len(f.mobility.seqs)))
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


# ------------------------------------------------------------------------------------------- State's port steps
_FLAVOURS = ("kvm", "hyperv", "esxi")


def _port(rng, name: str) -> PortInfo:
    ext = []
    if rng.random() < 0.8:
        ext.append(("iface-id", f"if{rng.randrange(12)}"))  # (a small pool: two ports showing one key)
    for _ in range(rng.choice((0, 0, 1, 2))):
        ext.append((f"canopy-vnic-{rng.choice((1, 5, 100, 4095, 0))}", f"vnic{rng.randrange(6)}"))
    if rng.random() < 0.1:
        ext.append(("canopy-metadata-agent", rng.choice(("true", "false"))))
    return PortInfo(name, rng.choice((None, -1, 0, 1, 7, 12)), rng.choice((None, "02:00:00:00:00:01",
                                                                          "02:00:00:00:00:02")),
                    tuple(ext), rng.choice(("", "", "vxlan", "internal")))


def _snap(rng, session: str, ports, changed=None) -> VrsSnapshot:
    return VrsSnapshot(session, "127.0.0.1:1", f"ch-{session}", datapath_id=1 + rng.randrange(2), ports=tuple(ports),
                       changed=changed)


class _Ports:
    """What ``ReportPorts`` keeps, alone: the steps are called on it unbound."""

    def __init__(self, flavour: str):
        self.flavour = flavour
        self._seen_ports, self._seen, self._clock = {}, {}, itertools.count()

    def flavour_of(self, _snap):
        return self.flavour

    def kept(self) -> tuple:
        return list(self._seen.items()), {k: list(v) for k, v in self._seen_ports.items()}, next(self._clock)


@pytest.mark.parametrize("seed", range(SEEDS))
def test_read_ports_mark_seen_and_changed_ports_equal_a_step_per_port(seed, monkeypatch):
    rng = random.Random(seed)
    calls = [0]
    port_keys = binding.port_keys

    def counted(*args):
        calls[0] += 1
        return port_keys(*args)

    monkeypatch.setattr(binding, "port_keys", counted)
    flavour = rng.choice(_FLAVOURS)
    sides = {"old": _Ports(flavour), "new": _Ports(flavour)}
    names = [f"p{i}" for i in range(30)]
    ports = {name: _port(rng, name) for name in rng.sample(names, 12)}
    snap, fast = None, 0
    for step in range(60):
        old_snap, ports = snap, dict(ports)
        for name in rng.sample(names, rng.randrange(0, 15)):  # new, changed, gone, the same object, an equal one
            roll = rng.random()
            if roll < 0.4:
                ports[name] = _port(rng, name)
            elif roll < 0.6:
                ports.pop(name, None)
            elif name in ports and roll < 0.8:
                ports[name] = PortInfo(**{f: getattr(ports[name], f) for f in ("name", "ofport", "mac",
                                                                                 "external_ids", "type")})
        snap = _snap(rng, "s1", sorted(ports.values(), key=lambda p: p.name))
        if old_snap is not None and rng.random() < 0.05:
            snap = VrsSnapshot(**{**vars(snap), "datapath_id": 3 - old_snap.datapath_id})  # every port changed
        changed = state_ports.changed_ports(old_snap, snap, sides["new"].flavour_of)
        assert changed == old_changed_ports(old_snap, snap, sides["new"].flavour_of), step
        found = None if changed is None else snap.ports_named(changed)
        every, reads = rng.randint(1, 4), {}
        for name, read_ports in (("old", old_read_ports), ("new", state_ports.ReportPorts._read_ports)):
            calls[0] = 0
            pacer, records = paced(every, lambda: calls[0])
            read = read_ports(sides[name], snap, changed, found, pacer)
            reads[name] = (read.keys, read.seen, read.tunnels, read.agents, records, pacer.due())
        assert reads["new"] == reads["old"], f"seed {seed} step {step}"
        seen = reads["new"][1]
        fast += changed is not None and bool(seen) and sides["new"]._seen_ports.get("s1", {}).keys().isdisjoint(seen)
        old_mark_seen(sides["old"], snap, changed, {k: list(v) for k, v in seen.items()})
        state_ports.ReportPorts._mark_seen(sides["new"], snap, changed, {k: list(v) for k, v in seen.items()})
        assert sides["new"].kept() == sides["old"].kept(), f"seed {seed} step {step}"
        gone = [name for name in (changed or ()) if name not in ports]
        for side in sides.values():
            state_ports.ReportPorts._forget_seen(side, "s1", gone)
    assert fast, "the all-new path of _mark_seen never taken"


def _index_pair(rng) -> tuple[BindingIndex, BindingIndex, list]:
    """Two indexes, the vports each binding key is of (some static, on an ESXi trunk's VLAN)."""
    pair, vids = (BindingIndex(), BindingIndex()), []
    for i in range(14):
        vid, kind = f"v{i}", rng.choice(("kvm", "esxi", "hyperv")) if i % 3 == 0 else "kvm"
        vids.append(vid)
        for index in pair:
            if i < 12:
                key = (kind, f"if{i}" if kind == "kvm" else f"vnic{i % 6}" if kind == "esxi" else f"p{i}")
                index.key_of[vid], index.vport_at[key] = key, vid
            else:
                skey = (f"ch-s{i % 3}", f"p{i}", 5)
                index.static_of[vid] = skey
                index.static_at[skey[:2]][vid] = 5
    return pair[0], pair[1], vids


def _index_kept(index: BindingIndex) -> tuple:
    return ({k: list(v.items()) for k, v in index.sightings.items()}, {k: dict(v) for k, v in index.trunks.items()},
            {s: {n: list(v) for n, v in ports.items()} for s, ports in index.shown.items()}, dict(index.vport_at))


@pytest.mark.parametrize("seed", range(SEEDS))
def test_a_chunk_forgotten_at_once_and_locate_equal_a_port_at_a_time(seed):
    """controller/state.py ``_index_ports``: a chunk's changed ports forgotten at once (``forget_ports``), then each
    learnt, against each forgotten and learnt in turn; and ``locate`` with its one-port way against the old."""
    rng = random.Random(seed)
    old, new, vids = _index_pair(rng)
    order: dict = {}

    def seen_order(session, name, vlan):
        return order.setdefault((session, name, vlan), rng.random())

    names, held, short = [f"p{i}" for i in range(40)], {}, 0
    for step in range(40):
        session = f"s{rng.randrange(3)}"
        flavour = "esxi" if session == "s2" else rng.choice(("kvm", "hyperv"))
        snap = _snap(rng, session, ())
        ports = held.setdefault(session, {})
        changed = rng.sample(names, rng.randrange(1, 30))
        for name in changed:
            if rng.random() < 0.25:
                ports.pop(name, None)
            else:
                ports[name] = _port(rng, name)
        found = [ports[name] for name in changed if name in ports]
        keys = {port.name: binding.port_keys(port, flavour) for port in found}
        reached_old, reached_new = set(), set()
        for port in found:  # (ea463af^1: forget_port, learn_port, a port at a time)
            old.forget_port(session, port.name, snap.chassis, reached_old)
            old.learn_port(snap, 0, flavour, port, reached_old, keys[port.name])
        new.forget_ports(session, [port.name for port in found], reached_new)
        for port in found:
            new.learn_port(snap, 0, flavour, port, reached_new, keys[port.name])
        gone = [name for name in changed if name not in ports]
        old.forget_ports(session, gone, reached_old)
        new.forget_ports(session, gone, reached_new)
        assert reached_new == reached_old and _index_kept(new) == _index_kept(old), f"seed {seed} step {step}"
        for vid in vids:
            got = new.locate(vid, seen_order)
            assert got == old_locate(new, vid, seen_order), f"seed {seed} step {step} {vid}"
            key = new.key_of.get(vid)
            short += bool(key and vid not in new.static_of and len(new.sightings.get(key, ())) == 1)
    assert short, "locate's one-port way never taken"


# ------------------------------------------------------------------------------------------------ the payload text
_ODD = ["", "a", "é", "ü\u00ff", "\u2028\u2029", "\U0001f600", "\ud800", "\x00\x1f\x7f", '"\\/', "\t\n\r\b\f",
        "02:00:00:00:00:01", "fe80::1", "10.0.0.1", "<>&'"]


class _Text(str):
    """A str of another class (the encoder writes it as a str)."""


def test_encode_host_writes_each_value_as_the_json_encoder_does():
    """``encode_host`` writes a type 2 route's IP and MAC by the encoder's C function: the route's text must be the
    whole route's as ``payload`` writes it (ea463af^1: ``_PAYLOAD_JSON`` of each), for routes built normally, and for
    any text at all in the two fields (unusual, non-ASCII, lone surrogates, a str subclass, None)."""
    rng = random.Random(39)
    encode = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
    for text in _ODD + ["".join(rng.choice(_ODD) for _ in range(3)) for _ in range(200)]:
        for value in (text, _Text(text)):
            assert bgp_routes._JSON_TEXT(value) == bgp_routes._PAYLOAD_JSON(value) == encode(value), repr(value)
    first = bgp_routes.MacIpRoute(rd="65000:1", mac="02:00:00:00:00:01", ip="10.0.0.1", l2_vni=10,
                                  next_hop="10.251.0.1", route_targets=("65000:10",))
    for i in range(300):
        route = first.with_host(f"02:00:00:{i % 256:02x}:{rng.randrange(256):02x}:{rng.randrange(256):02x}",
                                rng.choice([None, f"10.0.{i % 256}.{rng.randrange(256)}", f"fd00::{i:x}"]))
        if i % 3 == 0:  # whatever the fields hold
            object.__setattr__(route, "ip", rng.choice(_ODD + [None, _Text("é")]))
            object.__setattr__(route, "mac", rng.choice(_ODD + [_Text("ü")]))
        bgp_routes.encode_host(route, first)
        assert bgp_routes.payload(route) == encode(bgp_routes.route_to_dict(route)), i
