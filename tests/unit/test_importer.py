"""The EVPN import by delta: route changes in, RemoteTable entries changed out; the import from scratch is
the oracle (randomised sequences of announcements, replacements and withdrawals from several peers)."""

import random

import pytest

from bgp.evpn import import_routes
from bgp.importer import RouteImport
from bgp.routes import InclusiveMulticastRoute, IpPrefixRoute, MacIpRoute
from controller.remote import RemoteMac
from tests.unit.test_evpn import setup_view


def candidates(policy):
    """Routes that hit every import rule: L2 MACs with and without IPs, competing locations and sequence
    numbers, L3-only host routes, type 3, type 5, and routes nothing imports."""
    web, dom = policy.find("subnet", "acme/web"), policy.find("domain", "acme/prod")
    rt, l3rt = web["import_rts"][0], dom["import_rts"][0]
    out = []
    for m in range(4):
        mac = f"02:aa:00:00:00:0{m}"
        for vtep in ("10.251.0.8", "10.251.0.9"):
            for seq in (None, 1, 2):
                out.append(MacIpRoute(rd=f"{vtep}:1", mac=mac, l2_vni=web["vni"], next_hop=vtep, mobility_seq=seq,
                                      route_targets=(rt,)))
                out.append(MacIpRoute(rd=f"{vtep}:1", mac=mac, ip=f"10.0.1.{50 + m}", l2_vni=web["vni"],
                                      l3_vni=dom["l3_vni"], next_hop=vtep, router_mac="02:cb:0a:fb:00:09",
                                      mobility_seq=seq, route_targets=(rt, l3rt)))
        out.append(MacIpRoute(rd="65001:2", mac=mac, ip=f"10.7.0.{m}", l2_vni=7777, l3_vni=dom["l3_vni"],
                              next_hop="10.251.0.8", route_targets=(l3rt,), router_mac="02:cb:0a:fb:00:08"))
        out.append(MacIpRoute(rd="65001:1", mac=mac, l2_vni=web["vni"], next_hop="10.251.0.9",
                              route_targets=("65999:1",)))
    for vtep in ("10.251.0.8", "10.251.0.9"):
        out.append(InclusiveMulticastRoute(rd=f"{vtep}:1", vni=web["vni"], next_hop=vtep, route_targets=(rt,)))
        out.append(IpPrefixRoute(rd=f"{vtep}:3", prefix="172.16.0.0/16", l3_vni=dom["l3_vni"], next_hop=vtep,
                                 route_targets=(l3rt,), router_mac="02:cb:0a:fb:00:08"))
    return out


def test_import_by_delta_equals_the_import_from_scratch_after_every_change():
    state, _ = setup_view()
    routes, peers = candidates(state.policy), ("10.250.0.1", "10.250.0.2")
    for seed in range(20):
        rng = random.Random(seed)
        importer, received = RouteImport(state.policy), {}
        table = importer.table()
        for _ in range(30):
            changes = {}
            for _ in range(rng.randint(1, 12)):
                route, peer = rng.choice(routes), rng.choice(peers)
                if rng.random() < 0.35:
                    changes[(peer, route.key)] = None
                    received.pop((peer, route.key), None)
                else:
                    changes[(peer, route.key)] = route
                    received[(peer, route.key)] = route
            delta = importer.apply(changes)
            scratch = import_routes(dict(received), state.policy)
            assert importer.table() == scratch.table, f"seed {seed}"
            assert (importer.imported, importer.ignored) == (scratch.imported, scratch.ignored)
            before, after = _entries(table), _entries(importer.table())
            assert (set(delta.added), set(delta.removed)) == (after - before, before - after)
            table = importer.table()


def _entries(table) -> set:
    return set(table.macs) | set(table.floods) | set(table.prefixes)


def test_a_change_merges_only_the_mac_it_reaches():
    state, _ = setup_view()
    web = state.policy.find("subnet", "acme/web")
    importer = RouteImport(state.policy)

    def mac_route(i, seq=None):
        return MacIpRoute(rd="10.251.0.9:1", mac=f"02:aa:00:00:{i >> 8:02x}:{i & 0xff:02x}", l2_vni=web["vni"],
                          next_hop="10.251.0.9", mobility_seq=seq, route_targets=tuple(web["import_rts"]))

    importer.apply({("p", mac_route(i).key): mac_route(i) for i in range(1000)})
    moved = mac_route(7, seq=3)
    delta = importer.apply({("p", moved.key): moved})
    assert [m.mac for m in delta.added] == [moved.mac] and [m.seq for m in delta.added] == [3]
    assert [(m.mac, m.seq) for m in delta.removed] == [(moved.mac, 0)]
    assert delta.scopes() == ({web["id"]}, set())
    assert len(importer.table().macs) == 1000 and isinstance(importer.table().macs[0], RemoteMac)
    assert not importer.apply({("p", moved.key): moved})  # the same again: no change


class BookSpeaker:
    """A speaker without a process: a real RouteBook fed with ExaBGP's JSON for received routes."""

    def __init__(self, peers=("127.0.0.1",)):
        from bgp.routebook import RouteBook
        from bgp.speaker import Neighbor

        self.book = RouteBook(tuple(Neighbor(peer, 65001) for peer in peers))

    def receive(self, route, action="announce", peer="127.0.0.1"):
        from tests.unit.test_routebook import update

        self.book.handle_line(update(route, action).replace('"peer": "127.0.0.1"', f'"peer": "{peer}"'))

    def received(self):
        return dict(self.book.received)

    def take_received_in_order(self):
        return self.book.take_received_in_order()

    def received_in_order(self):
        return self.book.received_in_order()

    def imported(self, policy):
        """The import from scratch of what was received (the oracle), in the order it was received."""
        received, order = self.received_in_order()
        return import_routes(received, policy, order).table


def test_federation_imports_only_what_changed_and_again_from_scratch_after_a_policy_change():
    from bgp.federation import Federation

    state, _ = setup_view()
    speaker = BookSpeaker()
    federation = Federation(None, "/nonexistent", state, speaker=speaker)
    routes = [r for r in candidates(state.policy) if isinstance(r, MacIpRoute) and r.mobility_seq is None][:6]
    for route in routes:
        speaker.receive(route)
    federation._received_changed()
    assert federation.refresh_import() and federation.remote_delta is None  # the first import: from scratch
    assert state.remote == speaker.imported(state.policy)
    speaker.receive(routes[1], "withdraw")  # its IP goes from the MAC
    federation._received_changed()
    assert federation.refresh_import()
    assert federation.remote_delta is not None and federation.remote_delta.removed
    assert state.remote == speaker.imported(state.policy)
    assert not federation.refresh_import()  # nothing new
    ignored = MacIpRoute(rd="65001:9", mac="02:aa:00:00:00:0f", l2_vni=7, next_hop="10.251.0.9",
                         route_targets=("65999:1",))
    before = federation.result.ignored
    speaker.receive(ignored)  # a route nothing imports: no change to State, but it is counted
    federation._received_changed()
    assert not federation.refresh_import() and federation.result.ignored == before + 1
    state.policy = state.policy.copy()  # as a policy commit swaps it
    federation.refresh_import()
    assert federation.remote_delta is None and state.remote == speaker.imported(state.policy)


def test_routes_naming_our_own_vteps_are_counted_apart_from_the_imported():
    """A standby peered with a route reflector receives its pair's routes (the active's router id, so not refused
    as its own) at its own VTEPs: /v1/bgp/peers said imported 8 while the active had 0, though its View drops
    them. Such routes count as own_vtep, and a withdrawal takes them out again."""
    from bgp.federation import Federation
    from tests.unit.test_evpn import HV1

    state, _ = setup_view()
    speaker = BookSpeaker()
    federation = Federation(None, "/nonexistent", state, speaker=speaker)
    web = state.policy.find("subnet", "acme/web")
    for i, vtep in enumerate((HV1, HV1, "10.251.0.9")):
        speaker.receive(MacIpRoute(rd=f"{vtep}:1", mac=f"02:aa:00:00:00:0{i}", l2_vni=web["vni"], next_hop=vtep,
                                   route_targets=tuple(web["import_rts"])))
    speaker.receive(InclusiveMulticastRoute(rd=f"{HV1}:1", vni=web["vni"], next_hop=HV1,
                                            route_targets=tuple(web["import_rts"])))
    speaker.receive(MacIpRoute(rd="65001:9", mac="02:aa:00:00:00:0f", l2_vni=7, next_hop=HV1,
                               route_targets=("65999:1",)))  # nothing imports it: ignored, wherever it points
    federation._received_changed()
    federation.refresh_import()
    assert federation.import_counts() == {"imported": 1, "own_vtep": 3, "ignored": 1}
    speaker.receive(InclusiveMulticastRoute(rd=f"{HV1}:1", vni=web["vni"], next_hop=HV1,
                                            route_targets=tuple(web["import_rts"])), "withdraw")
    federation._received_changed()
    federation.refresh_import()
    assert federation.import_counts() == {"imported": 1, "own_vtep": 2, "ignored": 1}


def test_an_import_from_scratch_compares_the_tables_between_pauses(monkeypatch):
    """A policy commit imports every received route again from scratch and compares the new table with State's:
    the sorts and the comparison of 10,000 MACs (new objects, compared field by field) ran after the import's last
    pause, 37.7 ms of CPU in one stretch in the bursts benchmark; and a table that differed was then compared again
    and indexed whole by State, unpaced (stop 34). Counted: MACs compared or hashed between two pauses, the table the
    same, then one that differs in one MAC (taken as a delta)."""
    from bgp.federation import Federation
    from controller.pacer import Pacer
    from tests.unit.test_remote_compare import counted_comparisons

    every, count = 10, 300
    state, _ = setup_view()
    speaker = BookSpeaker()
    federation = Federation(None, "/nonexistent", state, speaker=speaker)
    web = state.policy.find("subnet", "acme/web")
    for i in range(count):
        speaker.receive(MacIpRoute(rd="10.251.0.9:1", mac=f"02:aa:00:00:{i >> 8:02x}:{i & 0xff:02x}",
                                   l2_vni=web["vni"], next_hop="10.251.0.9", route_targets=tuple(web["import_rts"])))
    federation._received_changed()
    assert federation.refresh_import()
    with monkeypatch.context() as patched:
        compared = counted_comparisons(patched, RemoteMac)  # [since the last pause, the most between two pauses]
        federation.pacer = Pacer(lambda: compared.__setitem__(0, 0), every)
        state.policy = state.policy.copy()  # as a policy commit swaps it: imported again from scratch, the same table
        assert not federation.refresh_import()
        most = compared[1]
        assert most <= 3 * every and len(state.remote.macs) == count
        assert state.remote == speaker.imported(state.policy)
        speaker.receive(MacIpRoute(rd="10.251.0.9:1", mac="02:aa:00:00:00:00", l2_vni=web["vni"],
                                   next_hop="10.251.0.9", route_targets=tuple(web["import_rts"])), "withdraw")
        federation._received_changed()
        compared[:] = [0, 0]
        state.policy = state.policy.copy()
        assert federation.refresh_import() and len(state.remote.macs) == count - 1
        assert compared[1] <= 3 * every, compared
    assert state.remote == speaker.imported(state.policy)


def test_routes_and_commits_landing_in_an_import_from_scratchs_pauses_reach_the_next_round():
    """An import from scratch pauses (the import, its sorts, the comparison with State's table): meanwhile the
    speaker's thread takes routes in and a REST commit may replace the policy. The round takes what it read (its
    result may miss them); the next round, which they wake, ends where an import from scratch of everything then
    received does. Randomised: announcements, withdrawals and commits inside every pause of the rounds."""
    from bgp.federation import Federation
    from controller.pacer import Pacer

    landed = 0
    for seed in range(15):
        rng = random.Random(seed)
        state, _ = setup_view()
        routes = candidates(state.policy)
        speaker = BookSpeaker()
        federation = Federation(None, "/nonexistent", state, speaker=speaker)
        inside = {"left": 0}

        def pause():  # as the speaker's thread or a REST commit would, while the loop is paused
            nonlocal landed
            if inside["left"] and rng.random() < 0.5:
                inside["left"] -= 1
                landed += 1
                if rng.random() < 0.2:
                    state.policy = state.policy.copy()  # a commit: the next round imports from scratch again
                else:
                    speaker.receive(rng.choice(routes), rng.choice(("announce", "announce", "withdraw")))
                    federation._received_changed()

        for route in rng.sample(routes, 12):
            speaker.receive(route)
        federation._received_changed()
        federation.pacer = Pacer(pause, rng.choice((1, 2, 5)))
        for step in range(12):
            state.policy = state.policy.copy()  # this round imports from scratch
            inside["left"] = rng.randrange(1, 5)
            federation.refresh_import()
            inside["left"] = 0
            federation.refresh_import()  # takes what landed during the pauses
            assert state.remote == speaker.imported(state.policy), f"seed {seed} step {step}"
    assert landed >= 100  # routes and commits did land inside the rounds


def test_the_counts_stay_those_of_the_import_state_holds_while_it_is_dropped(monkeypatch):
    """A round whose import raises drops the importer (the next round imports from scratch: test_remote_import_
    invariant.py); GET /v1/bgp/peers then said 0 imported, 0 own, 0 ignored until the next round, though State kept
    every route of the import before. Now: that import's counts, until the next round's; then the new ones."""
    import bgp.importer
    from bgp.federation import Federation
    from tests.unit.test_evpn import HV1

    state, _ = setup_view()
    speaker = BookSpeaker()
    federation = Federation(None, "/nonexistent", state, speaker=speaker)
    web = state.policy.find("subnet", "acme/web")
    for i, vtep in enumerate((HV1, "10.251.0.9", "10.251.0.9")):
        speaker.receive(MacIpRoute(rd=f"{vtep}:1", mac=f"02:aa:00:00:00:0{i}", l2_vni=web["vni"], next_hop=vtep,
                                   route_targets=tuple(web["import_rts"])))
    speaker.receive(MacIpRoute(rd="65001:9", mac="02:aa:00:00:00:0f", l2_vni=7, next_hop=HV1,
                               route_targets=("65999:1",)))  # ignored
    federation._received_changed()
    federation.refresh_import()
    held = {"imported": 2, "own_vtep": 1, "ignored": 1}
    assert federation.import_counts() == held
    more = MacIpRoute(rd="10.251.0.9:1", mac="02:aa:00:00:00:0e", l2_vni=web["vni"], next_hop="10.251.0.9",
                      route_targets=tuple(web["import_rts"]))
    with monkeypatch.context() as patched:
        patched.setattr(bgp.importer, "_merged", lambda *a: (_ for _ in ()).throw(RuntimeError("an import bug")))
        speaker.receive(more)
        federation._received_changed()
        with pytest.raises(RuntimeError):
            federation.refresh_import()
        assert federation.import_counts() == held  # what State holds: the round before's
        state.policy = state.policy.copy()  # a commit: from scratch, failing again
        with pytest.raises(RuntimeError):
            federation.refresh_import()
        assert federation.import_counts() == held
    federation.refresh_import()  # from scratch: every route received, the failed rounds' too
    assert federation.import_counts() == {"imported": 3, "own_vtep": 1, "ignored": 1}
    assert state.remote == speaker.imported(state.policy)


def test_the_counts_during_an_import_from_scratchs_pauses_are_those_of_the_import_state_holds():
    """An import from scratch (a commit) pauses while it imports every received route and while State compares the
    table: GET /v1/bgp/peers read meanwhile said the counts of the half-done import (0 imported at its first pause),
    though State still held the import before. Now: that one's counts in every pause, the new ones once taken."""
    from bgp.federation import Federation
    from controller.pacer import Pacer
    from tests.unit.test_evpn import HV1

    state, _ = setup_view()
    speaker = BookSpeaker()
    federation = Federation(None, "/nonexistent", state, speaker=speaker)
    web = state.policy.find("subnet", "acme/web")
    for i in range(20):
        vtep = HV1 if i == 0 else "10.251.0.9"
        speaker.receive(MacIpRoute(rd=f"{vtep}:1", mac=f"02:aa:00:00:00:{i:02x}", l2_vni=web["vni"], next_hop=vtep,
                                   route_targets=tuple(web["import_rts"])))
    federation._received_changed()
    federation.refresh_import()
    held = {"imported": 19, "own_vtep": 1, "ignored": 0}
    assert federation.import_counts() == held
    speaker.receive(MacIpRoute(rd="10.251.0.9:1", mac="02:aa:00:00:00:ee", l2_vni=web["vni"], next_hop="10.251.0.9",
                               route_targets=tuple(web["import_rts"])))
    federation._received_changed()
    seen = []
    federation.pacer = Pacer(lambda: seen.append(federation.import_counts()), 1)
    state.policy = state.policy.copy()  # as a policy commit swaps it: imported again from scratch
    assert federation.refresh_import()
    assert len(seen) > 20 and all(counts == held for counts in seen), seen
    assert federation.import_counts() == {"imported": 20, "own_vtep": 1, "ignored": 0}
