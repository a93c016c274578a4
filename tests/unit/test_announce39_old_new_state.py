"""announce39's State port steps, ``locate``, type 2 payload text and RouteBook (merge ea463af) against the code
they replaced (ea463af^1, copied here as ``old_*`` and ``OldBook``), on random inputs (MAC mobility, the Originator
and the announce at bind: tests/unit/test_announce39_old_new.py).

- controller/state_ports.py ``_read_ports`` (in pacer runs; its pauses compared), ``_mark_seen`` (its all-new way),
  ``changed_ports``; controller/state.py ``_index_ports``' chunk (its ports forgotten at once, then each learnt);
  controller/binding.py ``locate`` (its one-port way).
- bgp/routes.py ``encode_host``: the IP's and MAC's text by the JSON encoder's C function.
- bgp/routebook.py ``announce``, ``_sync``: a key never sent nor failed taken as new without ``!=``."""

from __future__ import annotations

import itertools
import json
import random

import pytest

from bgp import routes as bgp_routes
from bgp.routebook import RouteBook
from bgp.speaker import Neighbor
from controller import binding, state_ports
from controller.binding import BindingIndex, Location, attached_mac, preferred
from controller.discovery import PortInfo, VrsSnapshot
from tests.unit.test_announce39_old_new import SEEDS, paced

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
        # the preference as it is since faults40 (controller/binding.py ``preferred``): this oracle is about the way
        candidates = [max(candidates, key=lambda c: (preferred(c[2][1], seen_order(c[0], c[2][1].name, c[1]), c[1]),
                                                     -c[2][0]))]
    for session, vlan, where in candidates:
        rank, port, flavour, chassis, dpid = where
        return Location(vid, session, chassis, dpid, port.name, port.ofport, vlan, flavour, port.mac,
                        None if vlan is not None else attached_mac(port))
    return None


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


# ------------------------------------------------------------------------------------------------------ RouteBook
class OldBook(RouteBook):
    """``announce`` and ``_sync`` as they were: both ``!=`` asked of a key never sent."""

    def announce(self, routes):
        self.desired.update(routes)
        if not self.connected:
            return []
        new = []
        expected, failed = self.expected, self.failed
        for key, route in routes.items():
            sent = expected.get(key)
            if sent is not route and sent != route and failed.get(key) != route:
                expected[key] = route
                new.append(route)
        return self._send_all(bgp_routes.ANNOUNCE, new)

    def _sync(self):
        withdraw = [self.expected.pop(k) for k in [k for k in self.expected if k not in self.desired]]
        announce = []
        expected, failed = self.expected, self.failed
        for key, route in self.desired.items():
            sent = expected.get(key)
            if sent is not route and sent != route and failed.get(key) != route:
                expected[key] = route
                announce.append(route)
        return self._send_all(bgp_routes.WITHDRAW, withdraw) + self._send_all(bgp_routes.ANNOUNCE, announce)


@pytest.mark.parametrize("seed", range(SEEDS))
def test_route_book_sends_what_it_sent_before(seed):
    """bgp/routebook.py ``announce`` and ``_sync`` take a key never sent nor failed as new without ``!=``: the same
    commands and the same books as before, for routes new, the same objects, equal copies, changed, failed (the
    same, or another route of the key), withdrawn, and ExaBGP attached again."""
    rng = random.Random(seed)
    books = {"old": OldBook((Neighbor("127.0.0.1", 65001),)), "new": RouteBook((Neighbor("127.0.0.1", 65001),))}
    made = [bgp_routes.MacIpRoute(rd="65000:1", mac=f"02:00:00:00:00:{i:02x}", ip=rng.choice([None, f"10.0.0.{i}"]),
                                  l2_vni=10, next_hop=rng.choice(("10.251.0.1", "10.251.0.2")),
                                  route_targets=("65000:10",), mobility_seq=rng.choice((None, 0, 1)))
            for i in range(40)]
    copies = [bgp_routes.MacIpRoute(**vars(route)) for route in made]  # equal, not the same objects
    out = {name: book.attach() for name, book in books.items()}
    assert out["new"] == out["old"]
    for step in range(120):
        roll, picks = rng.random(), rng.sample(range(40), rng.randrange(1, 12))
        routes = {made[i].key: rng.choice((made, made, copies))[i] for i in picks}
        if roll < 0.45:
            out = {name: book.announce(dict(routes)) for name, book in books.items()}
        elif roll < 0.6:
            out = {name: book.withdraw([made[i].key for i in picks]) for name, book in books.items()}
        elif roll < 0.8:
            desired = dict(rng.sample(sorted(books["new"].desired.items(), key=lambda kv: kv[1].mac),
                                      len(books["new"].desired) // 2))
            desired.update(routes)
            out = {name: book.set_desired(dict(desired)) for name, book in books.items()}
        elif roll < 0.9:  # an announce answered "error": not sent again until it changes
            for i in picks:
                route = rng.choice((made[i], copies[i], made[(i + 1) % 40]))
                for book in books.values():
                    book.expected.pop(made[i].key, None)
                    book.failed[made[i].key] = route
            out = {name: [] for name in books}
        else:
            out = {name: book.attach() for name, book in books.items()}
        assert out["new"] == out["old"], f"seed {seed} step {step}"
        for field_name in ("desired", "expected", "failed"):
            assert getattr(books["new"], field_name) == getattr(books["old"], field_name), (seed, step, field_name)
