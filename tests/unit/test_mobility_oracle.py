"""MAC mobility by delta (bgp/mobility.py) against the full walk it replaced (``FullWalk``: ``Mobility.update`` as
it was until stop 33, every local MAC three times a pass), and the work a pass costs.

The oracle: random sequences of the incremental oracle's events (tests/unit/oracle_world.py: vports placed, moved
and deleted, VRS and hardware VTEPs coming, going and changing tunnel IP, EVPN tables and deltas), and of events of
its own: peers announcing local MACs (higher and lower sequence numbers, sticky, at our own VTEPs: reflected) by
delta and by whole tables (some with two locations of one MAC: State's index replaced whole), duplicate flags
cleared one by one or all, replaced (the HA active's), recovering as the clock moves on (moves counted with
``max_moves`` 2, so MACs get flagged), and Views built again from scratch. After
every pass both get the same View and remote index: the sequence numbers, the entries, the MACs lost (and to sticky
routes), the flags and the moves being counted must be the same, and the VTEPs peers announce MACs at are kept for
local MACs only (a MAC forgotten, in bulk since stop 37, leaves no entry behind)."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from bgp.duplicates import DuplicateMacs
from bgp.mobility import Mobility
from controller import loglimit
from controller.remote import RemoteDelta, RemoteMac, RemoteTable
from tests.bytecodes import opcodes
from tests.unit.oracle_inputs import HOSTS, TORS, VTEP_IPS
from tests.unit.oracle_world import World

SEEDS, STEPS = 10, 120
STOPPING_SEEDS = 10  # seeds with ``World.stopping`` on
PEERS = ("10.250.0.1", "10.250.0.2")


class FullWalk(Mobility):
    """``Mobility.update`` as it was (bgp/evpn.py, stop 33): every local MAC walked three times a pass (its local
    VTEP, a peer's location of it, its sequence number). The step of one MAC (``Mobility._seq``) is the old loop's
    body, moved; what the oracle checks is which MACs the delta takes again, and what it keeps between passes."""

    def update(self, view, remote, pacer=None) -> dict:
        ours = {}
        for ep in view.local.values():
            ip = view.tunnel_ip_of(ep.session)
            if ip:
                ours[(ep.subnet_id, ep.mac)] = ip
        our_vteps = set(ours.values())
        theirs = {}
        for key in ours:
            elsewhere = [m for m in remote.macs_at(*key) if m.vtep_ip not in our_vteps]
            if elsewhere:
                theirs[key] = elsewhere[-1]
        self.duplicates.prune()
        seqs = {key: self._seq(key, ip, theirs.get(key)) for key, ip in ours.items()}
        for key in set(self.entries) - set(ours):
            del self.entries[key]
            self.lost.discard(key)
            self.lost_to_sticky.discard(key)
        return seqs


def _duplicates(now: list) -> DuplicateMacs:
    return DuplicateMacs(max_moves=2, window=1000.0, clock=lambda: now[0], recovery=30.0, wall=lambda: now[0])


class Driver(World):
    """The incremental oracle's world, with peers contesting local MACs and the duplicate flags changing."""

    def __init__(self, rng):
        super().__init__(rng)
        self.now = [1000.0]
        self.mobility = Mobility(_duplicates(self.now))
        self.full = FullWalk(_duplicates(self.now))

    def step(self):
        roll = self.rng.random()
        if roll < 0.2:
            self.contest()
        elif roll < 0.3:
            self.flags()
        elif roll < 0.35:
            self.prog.refresh(full=True)  # a View built from scratch: a new object, followed anew
        elif roll < 0.45:
            self.retunnel()
        else:
            super().step()

    def retunnel(self):
        """A VRS or a hardware VTEP changes its tunnel IP (its MACs move between our VTEPs; a peer's route at the old
        or new IP becomes or stops being one of ours)."""
        rng = self.rng
        if rng.random() < 0.7 and self.hosts:
            host = rng.choice(sorted(self.hosts))
            self.hosts[host]["vtep"] = rng.choice([f"10.251.{side}.{host[2:]}" for side in (0, 1)])
            self.push(host)
        else:
            name = rng.choice(sorted(TORS))
            self.tor_ips[name] = rng.choice(TORS[name])
            if self.tors[name] is not None:
                self.push_tor(name)

    def _vteps(self) -> list[str]:
        """Remote VTEPs, and our own or ones that may become ours (routes reflected back to us)."""
        ours = [f"10.251.{side}.{host[2:]}" for host in HOSTS for side in (0, 1)]
        return list(VTEP_IPS) + ours + [ip for ips in TORS.values() for ip in ips]

    def _remote(self, key) -> RemoteMac:
        rng = self.rng
        return RemoteMac(key[0], key[1], (), rng.choice(self._vteps()), seq=rng.randrange(6),
                         peer=rng.choice(PEERS), sticky=rng.random() < 0.15)

    def contest(self):
        """Peers announce or withdraw local MACs (and MACs once local): by delta, one location per MAC as the
        import gives them, or a table given whole."""
        rng, index = self.rng, self.state.remote_index
        keys = sorted({(ep.subnet_id, ep.mac) for ep in self.prog.view.local.values()} | set(self.mobility.entries))
        if not keys:
            return
        if rng.random() < 0.25:
            table = index.table()
            macs = {(m.subnet_id, m.mac): m for m in table.macs}
            for key in rng.sample(keys, min(len(keys), rng.randrange(1, 5))):
                if key in macs and rng.random() < 0.3:
                    del macs[key]
                else:
                    macs[key] = self._remote(key)
            extra = [self._remote(rng.choice(keys))] if rng.random() < 0.5 else []  # two locations of one MAC:
            # State replaces its index whole (a new object, followed anew)
            self.state.remote = RemoteTable(tuple(macs.values()) + tuple(extra), table.floods, table.prefixes)
            return
        added, removed = set(), set()
        for key in rng.sample(keys, min(len(keys), rng.randrange(1, 4))):
            old = index.mac(*key)
            if old is not None:
                removed.add(old)
            if old is None or rng.random() < 0.7:
                added.add(self._remote(key))
        self.state.remote_changed(RemoteDelta(frozenset(added), frozenset(removed)))

    def flags(self):
        """The flags: one cleared, all cleared, the HA active's replacing them, or the clock moving on (recovery)."""
        rng, both = self.rng, (self.mobility.duplicates, self.full.duplicates)
        what = rng.choice(["one", "all", "replace", "clock", "clock"])
        if what == "one" and both[0].flagged:
            key = rng.choice(sorted(both[0].flagged))
            for duplicates in both:
                duplicates.clear(*key)
        elif what == "all":
            for duplicates in both:
                duplicates.clear()
        elif what == "replace":
            rows = [row for row in both[0].rows(None) if rng.random() < 0.6]
            for ep in rng.sample(sorted(self.prog.view.local.values(), key=lambda e: e.vport_id),
                                 min(2, len(self.prog.view.local))):
                rows.append({"subnet_id": ep.subnet_id, "mac": ep.mac, "took": 1.0, "last_move": "away",
                             "window": 1000.0, "since": self.now[0]})
            for duplicates in both:
                duplicates.replace(rows)
        else:
            self.now[0] += rng.choice((5.0, 20.0, 40.0))

    def compare(self, where: str):
        view, remote = self.prog.view, self.state.remote_index
        expected = self.full.update(view, remote)
        got = self.mobility.update(view, remote)
        assert got == expected, where
        for name in ("entries", "lost", "lost_to_sticky"):
            assert getattr(self.mobility, name) == getattr(self.full, name), f"{where}: {name}"
        mine, theirs = self.mobility.duplicates, self.full.duplicates
        # (the moves of one pass come in another order: one clock reading apart at most)
        assert mine.flagged == theirs.flagged and dict(mine.moves) == dict(theirs.moves), where
        heard, at = self.mobility._heard, self.mobility._heard_at  # (only local MACs', each VTEP's their inverse:
        # a MAC forgotten leaves neither behind)
        assert heard.keys() <= self.mobility._ours.keys(), f"{where}: heard of MACs not local"
        assert at == {ip: {k for k, ips in heard.items() if ip in ips} for ip in set().union(*heard.values())}, where
        return expected


def run(seed: int) -> dict:
    """One seeded sequence, compared after every pass; what it went through (passes with each case)."""
    rng = random.Random(seed)
    world = Driver(rng)
    world.commit()
    world.prog.refresh(full=True)
    seen = {"lost": 0, "sticky": 0, "flagged": 0, "moved in": 0, "index replaced": 0}
    index = world.state.remote_index
    for step in range(STEPS):
        world.step()
        if rng.random() < 0.25:
            world.step()  # two events in one pass
        world.prog.refresh()
        seqs = world.compare(f"seed {seed} step {step}")
        seen["lost"] += bool(world.full.lost)
        seen["sticky"] += bool(world.full.lost_to_sticky)
        seen["flagged"] += bool(world.full.duplicates.flagged)
        seen["moved in"] += any(seq for seq in seqs.values())
        seen["index replaced"] += world.state.remote_index is not index
        index = world.state.remote_index
    return seen


@pytest.mark.parametrize("seed", range(SEEDS))
def test_by_delta_equals_the_full_walk_after_every_pass(seed, monkeypatch):
    monkeypatch.setattr(loglimit, "_last_logged", {})
    run(seed)


@pytest.mark.parametrize("seed", range(STOPPING_SEEDS))
def test_by_delta_equals_the_full_walk_with_migrating_vms_stopping(seed, monkeypatch):
    """The world's VMs of a migration in flight also stop on the host they leave (``World.stopping``: another
    random sequence for every seed, so these run beside the seeds above, not instead of them)."""
    monkeypatch.setattr(loglimit, "_last_logged", {})
    monkeypatch.setattr(World, "stopping", True)
    run(seed)


def assert_every_case_reached(run, first: int, seeds: int = 8) -> None:
    """``run(seed)`` gives each case's count of passes; within ``seeds`` seeds from ``first`` every case is reached
    (shared by the oracles built on this driver: tests/unit/test_originator_oracle.py)."""
    seen = {}
    for seed in range(first, first + seeds):
        for case, passes in run(seed).items():
            seen[case] = seen.get(case, 0) + passes
        if all(seen.values()):
            break
    assert all(seen.values()), seen


def test_the_sequences_reach_every_case(monkeypatch):
    """The driver is worth its time: within a few seeds, MACs lost to a peer (and to a sticky route), flagged, and
    announced with a number above 0 (moved in, or between our VRS)."""
    monkeypatch.setattr(loglimit, "_last_logged", {})
    assert_every_case_reached(run, SEEDS)


# ------------------------------------------------------------------------------------ the work per pass

def local_macs(n: int):
    """A LiveView (with ``n`` vports on one VRS) and State."""
    from tests.unit.test_pacing import vports_state
    from tests.unit.test_evpn import HV1, snapshot
    from controller.programmer import Programmer

    state = vports_state(n)
    state.vrs_update(snapshot("hv1", HV1, [(f"vm{i}", 10 + i) for i in range(n)]))
    prog = Programmer(state)
    prog.refresh(full=True)
    return state, prog


def outbid(state, prog, count: int, start: int = 0) -> None:
    """A peer announces ``count`` of the local MACs (from the ``start``-th by id) with a higher sequence number (it
    wins them)."""
    eps = sorted(prog.view.local.values(), key=lambda e: e.vport_id)[start:start + count]
    state.remote_changed(RemoteDelta(frozenset(RemoteMac(ep.subnet_id, ep.mac, (), "10.99.0.1", seq=3, peer="p")
                                               for ep in eps)))


def one_port_changed(state, prog, name: str = "vm1"):
    """A pass in which one vport's MAC changed (its endpoint went and came back with another MAC)."""
    policy = state.policy.copy()
    vport = dict(next(v for v in policy.all("vport") if v["name"] == name))
    vport["mac"] = "02:fe:00:00:00:01" if vport["mac"] != "02:fe:00:00:00:01" else "02:fe:00:00:00:02"
    policy.put("vport", vport)
    state.policy_committed(policy, [])
    prog.refresh()


@pytest.mark.parametrize("n", [10_000])
def test_a_pass_costs_what_changed_not_the_local_macs(n, monkeypatch):
    """One port changing among ``n`` local MACs (50 of them won by a peer): the same bytecodes as among 100 (the full
    walk: bytecodes in proportion to the local MACs; docs/benchmarks.md "mobility, stop 34" has the counts)."""
    costs = []
    for size in (100, n):
        monkeypatch.setattr(loglimit, "_last_logged", {})
        state, prog = local_macs(size)
        mobility = Mobility()
        assert set(mobility.update(prog.view, state.remote_index).values()) == {0}
        outbid(state, prog, 50)
        assert sum(seq is None for seq in mobility.update(prog.view, state.remote_index).values()) == 50
        one_port_changed(state, prog, f"vm{size - 1}")  # not one of those
        costs.append(opcodes(lambda: mobility.update(prog.view, state.remote_index)))
        assert len(mobility.seqs) == size and len(mobility.lost) == 50
    small, big = costs
    assert big <= small + 50, costs


def test_a_view_without_feeds_is_walked_whole_each_time():
    """A View derived from scratch (no feeds), or a stand-in without weak references, is walked whole: the result
    follows what it holds, as the full walk's."""
    state, prog = local_macs(20)
    mobility, full = Mobility(), FullWalk(DuplicateMacs())
    for view in (prog.derive(), SimpleNamespace(local=prog.view.local, tunnel_ip_of=prog.view.tunnel_ip_of)):
        assert mobility.update(view, state.remote_index) == full.update(view, state.remote_index)
    one_port_changed(state, prog)
    for view in (prog.derive(), SimpleNamespace(local=dict(prog.view.local), tunnel_ip_of=prog.view.tunnel_ip_of)):
        assert mobility.update(view, state.remote_index) == full.update(view, state.remote_index)


def test_a_feed_holding_too_much_walks_everything_once(monkeypatch):
    """A reader that falls behind (more than ``controller.feed.LIMIT`` items recorded) gets None, everything: the
    next update walks every local MAC and ends where the full walk does."""
    from controller import feed

    monkeypatch.setattr(feed, "LIMIT", 2)
    state, prog = local_macs(20)
    mobility, full = Mobility(), FullWalk(DuplicateMacs())
    assert mobility.update(prog.view, state.remote_index) == full.update(prog.view, state.remote_index)
    outbid(state, prog, 5)  # five (subnet, MAC) recorded: over the limit
    for name in ("vm3", "vm4", "vm19"):
        one_port_changed(state, prog, name)  # three local endpoints: over the limit
    assert mobility._view_feed.take() is None and mobility._remote_feed.take() is None
    outbid(state, prog, 3, start=5)
    for name in ("vm5", "vm6", "vm7"):
        one_port_changed(state, prog, name)
    expected = full.update(prog.view, state.remote_index)
    assert sum(seq is None for seq in expected.values()) == 8
    assert mobility.update(prog.view, state.remote_index) == expected
    assert mobility.entries == full.entries and mobility.lost == full.lost


class _RaiseOnce:
    """A pacer whose ``at``-th tick raises (a pause that ends in an exception: a shutdown's GreenletExit)."""

    every = 1

    def __init__(self, at: int):
        self.left = at

    def tick(self, n: int = 1) -> None:
        self.left -= 1
        if self.left == 0:
            raise RuntimeError("stopped in a pause")


def test_an_update_that_raises_part_way_is_repaired_by_the_next(monkeypatch):
    """An update stopped in a pause after it took in a local endpoint's new MAC (before it took the MAC the endpoint
    had): the next update walks everything and ends where the full walk does (the old MAC is no longer announced)."""
    monkeypatch.setattr(loglimit, "_last_logged", {})
    state, prog = local_macs(5)
    mobility, full = Mobility(), FullWalk(DuplicateMacs())
    assert mobility.update(prog.view, state.remote_index) == full.update(prog.view, state.remote_index)
    one_port_changed(state, prog, "vm1")
    with pytest.raises(RuntimeError):
        mobility.update(prog.view, state.remote_index, _RaiseOnce(1))
    expected = full.update(prog.view, state.remote_index)
    assert mobility.update(prog.view, state.remote_index) == expected
    assert mobility.entries == full.entries
