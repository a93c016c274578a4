"""EVPN compilers: what Canopy originates from a View, what it imports, and MAC mobility sequence numbers."""

from bgp.evpn import import_routes, originate
from bgp.mobility import Mobility
from bgp.routes import InclusiveMulticastRoute, IpPrefixRoute, MacIpRoute
from controller.programmer import Programmer
from controller.remote import RemoteMac, RemoteTable
from tests.unit.test_compiler import add_vport, base_state, snapshot

HV1, HV2 = "10.251.0.1", "10.251.0.2"


def setup_view(placement=None):
    """vm1 (web) and vm2 (db, the static route's next hop 10.0.2.11) on hv1, vm3 (web) on hv2, vm4 (lan, L2) on hv2."""
    state = base_state()
    add_vport(state, "acme/web", "vm1", "02:00:00:00:00:01", "10.0.1.10")
    add_vport(state, "acme/db", "vm2", "02:00:00:00:00:02", "10.0.2.11")
    add_vport(state, "acme/web", "vm3", "02:00:00:00:00:03", "10.0.1.12")
    add_vport(state, "acme/lan", "vm4", "02:00:00:00:00:04", "10.9.0.5")
    return state, place(state, placement or {"hv1": [("vm1", 10), ("vm2", 11)], "hv2": [("vm3", 10), ("vm4", 11)]})


def place(state, placement):
    """The View with the vports plugged in where ``placement`` says (host -> [(vport, ofport)])."""
    for host, vtep in (("hv1", HV1), ("hv2", HV2)):
        state.vrs_update(snapshot(host, vtep, placement.get(host, [])))
    return Programmer(state).derive()


def by_type(routes, kind):
    return [r for r in routes.values() if r.TYPE == kind]


def test_type2_per_local_vport_with_symmetric_irb_attributes():
    state, view = setup_view()
    web, dom, lan = (state.policy.find(*ref) for ref in (("subnet", "acme/web"), ("domain", "acme/prod"),
                                                           ("subnet", "acme/lan")))
    routes = originate(view, state.policy)
    macs = {r.mac: r for r in by_type(routes, 2)}
    assert set(macs) == {f"02:00:00:00:00:0{i}" for i in range(1, 5)}
    vm1 = macs["02:00:00:00:00:01"]
    assert (vm1.ip, vm1.l2_vni, vm1.l3_vni, vm1.next_hop, vm1.rd) == ("10.0.1.10", web["vni"], dom["l3_vni"], HV1,
                                                                      web["rd"])
    assert vm1.router_mac == view.switches["hv1"].router_mac
    assert set(vm1.route_targets) == set(web["export_rts"]) | set(dom["export_rts"])
    assert vm1.mobility_seq is None  # sequence 0: no MAC mobility community
    vm4 = macs["02:00:00:00:00:04"]  # L2-only subnet: one label, no Router's MAC
    assert (vm4.l3_vni, vm4.router_mac, vm4.next_hop, vm4.route_targets) == (None, None, HV2,
                                                                             tuple(lan["export_rts"]))


def test_type3_per_subnet_per_vtep_and_type5_per_prefix_and_static_route():
    state, view = setup_view()
    web = state.policy.find("subnet", "acme/web")
    imet = {(r.vni, r.next_hop) for r in by_type(originate(view, state.policy), 3)}
    db, lan = state.policy.find("subnet", "acme/db"), state.policy.find("subnet", "acme/lan")
    assert imet == {(web["vni"], HV1), (web["vni"], HV2), (db["vni"], HV1), (lan["vni"], HV2)}
    prefixes = {r.prefix: r for r in by_type(originate(view, state.policy), 5)}
    assert set(prefixes) == {"10.0.1.0/24", "10.0.2.0/24", "192.168.0.0/16"}
    assert prefixes["10.0.1.0/24"].next_hop == HV1  # the lowest VTEP with a port in the subnet
    assert prefixes["192.168.0.0/16"].next_hop == HV1  # where its next hop vm2 is
    assert prefixes["192.168.0.0/16"].router_mac == view.switches["hv1"].router_mac


def test_a_vport_that_leaves_withdraws_exactly_its_routes():
    state, view = setup_view()
    before = originate(view, state.policy)
    view2 = place(state, {"hv1": [("vm1", 10), ("vm2", 11)], "hv2": [("vm4", 11)]})
    after = originate(view2, state.policy)
    gone = set(before) - set(after)
    web = state.policy.find("subnet", "acme/web")
    assert {(r.TYPE, getattr(r, "mac", None), r.next_hop) for k, r in before.items() if k in gone} == {
        (2, "02:00:00:00:00:03", HV2), (3, None, HV2)}
    assert all(after[k] == before[k] for k in after)
    assert InclusiveMulticastRoute(rd=web["rd"], vni=web["vni"], next_hop=HV2,
                                   route_targets=tuple(web["export_rts"])).key in gone


def received_from(policy, *routes, peer="10.250.0.9"):
    return {(peer, r.key): r for r in routes}


def winner(state, *routes):
    """The VTEP of the one MAC imported from ``routes``, each received from a peer of its own."""
    received = {}
    for i, r in enumerate(routes):
        received.update(received_from(state.policy, r, peer=f"10.250.0.{i + 1}"))
    [mac] = import_routes(received, state.policy).table.macs
    return mac.vtep_ip


def test_import_by_route_target_and_vni():
    state, _ = setup_view()
    web, dom = state.policy.find("subnet", "acme/web"), state.policy.find("domain", "acme/prod")
    rt, l3rt = web["import_rts"][0], dom["import_rts"][0]
    routes = [
        MacIpRoute(rd="65001:1", mac="02:aa:00:00:00:01", ip="10.0.1.50", l2_vni=web["vni"], l3_vni=dom["l3_vni"],
                   next_hop="10.251.0.9", route_targets=(rt, l3rt), router_mac="02:cb:0a:fb:00:09",
                   mobility_seq=4),
        MacIpRoute(rd="65001:1", mac="02:aa:00:00:00:02", l2_vni=web["vni"], next_hop="10.251.0.9",
                   route_targets=("65999:1",)),  # RT we do not import
        MacIpRoute(rd="65001:1", mac="02:aa:00:00:00:03", l2_vni=web["vni"] + 999, next_hop="10.251.0.9",
                   route_targets=(rt,)),  # our RT, another VNI
        MacIpRoute(rd="65001:2", mac="02:aa:00:00:00:04", ip="10.7.0.4", l2_vni=7777, l3_vni=dom["l3_vni"],
                   next_hop="10.251.0.8", route_targets=(l3rt,), router_mac="02:cb:0a:fb:00:08"),  # L3 only
        InclusiveMulticastRoute(rd="65001:1", vni=web["vni"], next_hop="10.251.0.9", route_targets=(rt,)),
        IpPrefixRoute(rd="65001:3", prefix="172.16.0.0/16", l3_vni=dom["l3_vni"], next_hop="10.251.0.8",
                      route_targets=(l3rt,), router_mac="02:cb:0a:fb:00:08"),
    ]
    result = import_routes(received_from(state.policy, *routes), state.policy)
    assert (result.imported, result.ignored) == (4, 2)
    [mac] = result.table.macs
    assert (mac.subnet_id, mac.mac, mac.ips, mac.vtep_ip, mac.l3_vni, mac.seq) == (
        web["id"], "02:aa:00:00:00:01", ("10.0.1.50",), "10.251.0.9", dom["l3_vni"], 4)
    assert result.table.floods == ((web["id"], "10.251.0.9"),)
    assert {(p.prefix, p.vtep_ip) for p in result.table.prefixes} == {("10.7.0.4/32", "10.251.0.8"),
                                                                      ("172.16.0.0/16", "10.251.0.8")}


def test_a_type3_floods_to_its_pmsi_tunnel_identifier():
    state, _ = setup_view()
    web = state.policy.find("subnet", "acme/web")
    flood = InclusiveMulticastRoute(rd="65009:1", vni=web["vni"], next_hop="10.251.0.9", tunnel="10.251.0.7",
                                    route_targets=tuple(web["import_rts"]))
    assert import_routes(received_from(state.policy, flood), state.policy).table.floods == ((web["id"], "10.251.0.7"),)


def test_import_picks_highest_sequence_then_lowest_vtep_ip():
    state, _ = setup_view()
    web = state.policy.find("subnet", "acme/web")

    def route(nh, seq):
        return MacIpRoute(rd=f"6500{nh[-1]}:1", mac="02:aa:00:00:00:01", l2_vni=web["vni"], next_hop=nh,
                          route_targets=tuple(web["import_rts"]), mobility_seq=seq)


    assert winner(state, route("10.251.0.7", 1), route("10.251.0.5", 0)) == "10.251.0.7"
    assert winner(state, route("10.251.0.7", 2), route("10.251.0.5", 2)) == "10.251.0.5"
    # a sticky (static) MAC cannot move (RFC 7432 section 15.2): it wins over any sequence number and VTEP IP
    static = MacIpRoute(**{**vars(route("10.251.0.7", 0)), "sticky": True})
    late = route("10.251.0.5", 9)
    assert winner(state, static, late) == winner(state, late, static) == "10.251.0.7"
    mac_only = route("10.251.0.7", 0)  # the same MAC at the same VTEP from another peer, not sticky: still static
    [mac] = import_routes({**received_from(state.policy, static), **received_from(state.policy, mac_only, peer="p2")},
                          state.policy).table.macs
    assert mac.sticky


def test_mobility_sequence_numbers():
    state, view = setup_view()
    web = state.policy.find("subnet", "acme/web")
    key = (web["id"], "02:00:00:00:00:01")
    mobility = Mobility()

    def remote(seq, vtep="10.251.0.9"):
        return RemoteTable(macs=(RemoteMac(web["id"], key[1], ("10.0.1.10",), vtep, seq=seq),))

    assert mobility.update(view, remote(3))[key] == 4  # appeared here while a peer had it: it moved to us
    assert mobility.update(view, remote(3))[key] == 4  # stable while nothing moves
    assert mobility.update(view, remote(5))[key] is None  # it moved away later: the peer wins, we withdraw
    assert mobility.update(view, RemoteTable())[key] == 4  # the peer gave it up: ours again
    moved = place(state, {"hv2": [("vm1", 12), ("vm3", 10)]})
    assert mobility.update(moved, RemoteTable())[key] == 5  # moved between our own VRS
    gone = place(state, {"hv2": [("vm3", 10)]})
    assert key not in mobility.update(gone, RemoteTable())
    back = place(state, {"hv1": [("vm1", 10)]})
    assert mobility.update(back, RemoteTable())[key] == 0  # back with nothing remote: starts afresh


def test_mobility_tie_goes_to_the_lower_vtep_ip():
    state, view = setup_view()
    web = state.policy.find("subnet", "acme/web")
    key = (web["id"], "02:00:00:00:00:01")  # ours is at 10.251.0.1
    mobility = Mobility()
    mobility.update(view, RemoteTable())
    lower = RemoteTable(macs=(RemoteMac(web["id"], key[1], (), "10.251.0.0", seq=0),))
    higher = RemoteTable(macs=(RemoteMac(web["id"], key[1], (), "10.251.0.200", seq=0),))
    assert mobility.update(view, higher)[key] == 0
    assert mobility.update(view, lower)[key] is None


def test_a_local_mac_a_peer_announces_sticky_is_not_announced_and_the_operator_is_told(caplog, monkeypatch):
    """RFC 7432 section 15.2: a static MAC cannot move, whatever our sequence number; a conflict to alert to."""
    monkeypatch.setattr("controller.loglimit._last_logged", {})  # no other test's rate limit carried over
    state, view = setup_view()
    web = state.policy.find("subnet", "acme/web")
    key = (web["id"], "02:00:00:00:00:01")  # ours is at 10.251.0.1, lower than the peer's VTEP
    mobility = Mobility()
    assert mobility.update(view, RemoteTable())[key] == 0
    static = RemoteTable(macs=(RemoteMac(web["id"], key[1], (), "10.251.0.200", seq=0, peer="10.250.0.9",
                                         sticky=True),))
    with caplog.at_level("WARNING", logger="canopy.bgp"):
        assert mobility.update(view, static)[key] is None
        assert mobility.update(view, static)[key] is None
    assert [r.levelname for r in caplog.records if "static (sticky)" in r.getMessage()] == ["WARNING"]  # once
    assert mobility.counts() == {"not_announced": 1, "sticky": 1, "duplicate": 0}
    assert mobility.update(view, RemoteTable())[key] == 0  # the static one withdrawn: ours again
    assert mobility.counts() == {"not_announced": 0, "sticky": 0, "duplicate": 0}


def test_a_peer_announcing_every_local_mac_sticky_is_counted_and_logged_once(caplog, monkeypatch):
    """A hostile (or wrong) peer announcing every local MAC sticky takes them all from Canopy's announcements: one
    warning per peer per controller.loglimit.LOG_EVERY, not one per MAC, and the number in ``counts`` (REST,
    /metrics). A MAC lost to a higher sequence number that the peer then announces sticky is warned of too."""
    monkeypatch.setattr("controller.loglimit._last_logged", {})
    state, view = setup_view()
    web = state.policy.find("subnet", "acme/web")
    keys = [(web["id"], "02:00:00:00:00:01"), (web["id"], "02:00:00:00:00:03")]
    mobility = Mobility()
    mobility.update(view, RemoteTable())

    def table(sticky, peer="10.250.0.9"):
        return RemoteTable(macs=tuple(RemoteMac(*key, (), "10.251.0.200", seq=5, peer=peer, sticky=sticky)
                                      for key in keys))

    with caplog.at_level("INFO", logger="canopy.bgp"):
        assert [mobility.update(view, table(False))[key] for key in keys] == [None, None]  # a higher sequence
        assert mobility.counts() == {"not_announced": 2, "sticky": 0, "duplicate": 0}
        assert [mobility.update(view, table(True))[key] for key in keys] == [None, None]  # now sticky
        assert mobility.counts() == {"not_announced": 2, "sticky": 2, "duplicate": 0}
        mobility.update(view, RemoteTable())
        mobility.update(view, table(True, peer="10.250.0.8"))  # another peer: its own warning
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and r.name == "canopy.bgp"]
    assert len(warnings) == 2 and "peer 10.250.0.9" in warnings[0] and "peer 10.250.0.8" in warnings[1], warnings


def test_a_peer_winning_many_local_macs_by_sequence_number_logs_one_line_per_interval_with_a_count(caplog,
                                                                                                    monkeypatch):
    """A peer announcing every local MAC with a higher sequence number takes them all from Canopy's announcements:
    one INFO line per peer per controller.loglimit.LOG_EVERY, the next counting those left out (before: one line
    per MAC); ``counts`` has the number."""
    from controller import loglimit

    monkeypatch.setattr(loglimit, "_last_logged", {})
    now = [1000.0]
    monkeypatch.setattr(loglimit.time, "monotonic", lambda: now[0])
    state, view = setup_view()
    web = state.policy.find("subnet", "acme/web")
    keys = [(web["id"], "02:00:00:00:00:01"), (web["id"], "02:00:00:00:00:03")]
    mobility = Mobility()
    mobility.update(view, RemoteTable())

    def table(*keys, peer="10.250.0.9"):
        return RemoteTable(macs=tuple(RemoteMac(*key, (), "10.251.0.200", seq=5, peer=peer) for key in keys))

    def lines():
        return [r.getMessage() for r in caplog.records if "not announcing ours" in r.getMessage()]

    with caplog.at_level("INFO", logger="canopy.bgp"):
        assert [mobility.update(view, table(*keys))[key] for key in keys] == [None, None]
        assert len(lines()) == 1 and "peer 10.250.0.9" in lines()[0] and caplog.records[-1].levelname == "INFO"
        mobility.update(view, RemoteTable())
        now[0] += loglimit.LOG_EVERY
        mobility.update(view, table(keys[0]))
        assert len(lines()) == 2 and lines()[1].endswith("(1 more like it not logged)")
        mobility.update(view, table(keys[1], peer="10.250.0.8"))  # another peer: its own line
    assert len(lines()) == 3 and "peer 10.250.0.8" in lines()[2]
    assert mobility.counts() == {"not_announced": 1, "sticky": 0, "duplicate": 0}


def test_a_mac_moving_max_moves_times_within_the_window_is_a_duplicate_not_announced_until_cleared(caplog,
                                                                                                    monkeypatch):
    """RFC 7432 section 15.1: a MAC that moves ``max_moves`` times within ``window`` seconds (between our VRS, into
    this controller from a peer, away to a peer's higher sequence number) is flagged: not announced, its sequence
    number frozen, one warning, counted, until cleared; then announced again. A live migration (one move) and moves
    spread wider than the window are not duplicates."""
    from bgp.duplicates import DuplicateMacs
    from controller import loglimit

    monkeypatch.setattr(loglimit, "_last_logged", {})
    state, _ = setup_view()
    web = state.policy.find("subnet", "acme/web")
    key = (web["id"], "02:00:00:00:00:01")
    now = [0.0]
    mobility = Mobility(DuplicateMacs(max_moves=3, window=100, clock=lambda: now[0]))
    at_hv1 = place(state, {"hv1": [("vm1", 10)]})
    at_hv2 = place(state, {"hv2": [("vm1", 10)]})
    assert mobility.update(at_hv1, RemoteTable())[key] == 0
    assert mobility.update(at_hv2, RemoteTable())[key] == 1  # a live migration: one move
    now[0] = 150.0
    assert mobility.update(at_hv1, RemoteTable())[key] == 2  # the first move is out of the window
    now[0] = 160.0
    higher = RemoteTable(macs=(RemoteMac(*key, (), "10.251.0.200", seq=7, peer="10.250.0.9"),))
    with caplog.at_level("WARNING", logger="canopy.bgp"):
        assert mobility.update(at_hv1, higher)[key] is None  # moved away: the second move, the peer wins
        assert mobility.counts()["duplicate"] == 0
        now[0] = 170.0
        assert mobility.update(at_hv2, higher)[key] is None  # the third move: a duplicate
        assert mobility.counts() == {"not_announced": 0, "sticky": 0, "duplicate": 1}
        frozen = mobility.entries[key]
        for placed in (at_hv1, at_hv2, at_hv1):  # more moves, the peer gone: not announced, nothing counted
            assert mobility.update(placed, RemoteTable())[key] is None
    assert mobility.entries[key] == frozen
    assert [r.getMessage() for r in caplog.records if "duplicate MAC" in r.getMessage()] == [
        f"duplicate MAC {key[1]} in subnet {key[0]}: 3 moves within 100s (the last between two of its VRS): no "
        "longer announced, its sequence number frozen, until cleared (DELETE /v1/bgp/duplicate-macs)"]
    assert [r["mac"] for r in mobility.duplicates.clear(mac=key[1])] == [key[1]]
    assert mobility.update(at_hv1, RemoteTable())[key] == frozen[0] + 1  # announced again (it moved to hv1)
    assert mobility.counts()["duplicate"] == 0


def test_two_sticky_locations_of_one_mac_rank_by_sequence_then_vtep_ip():
    """RFC 7432 leaves two sticky locations of one MAC open: Canopy ranks them as any two (docs/evpn.md)."""
    state, _ = setup_view()
    web = state.policy.find("subnet", "acme/web")

    def route(vtep, seq):
        return MacIpRoute(rd=f"{vtep}:1", mac="02:00:00:00:00:99", l2_vni=web["vni"], next_hop=vtep,
                          mobility_seq=seq, sticky=True, route_targets=tuple(web["import_rts"]))


    assert winner(state, route("10.251.0.7", 1), route("10.251.0.5", 0)) == "10.251.0.7"
    assert winner(state, route("10.251.0.5", 0), route("10.251.0.7", 1)) == "10.251.0.7"
    assert winner(state, route("10.251.0.7", 2), route("10.251.0.5", 2)) == "10.251.0.5"
    assert winner(state, route("10.251.0.5", 2), route("10.251.0.7", 2)) == "10.251.0.5"


def test_originate_skips_macs_a_peer_won():
    state, view = setup_view()
    web = state.policy.find("subnet", "acme/web")
    routes = originate(view, state.policy, {(web["id"], "02:00:00:00:00:01"): None,
                                            (web["id"], "02:00:00:00:00:03"): 7})
    macs = {r.mac: r for r in by_type(routes, 2)}
    assert "02:00:00:00:00:01" not in macs and macs["02:00:00:00:00:03"].mobility_seq == 7


class CountedIp(str):
    """A VTEP IP that counts how often it is hashed (set and dict look-ups)."""

    hashes = 0

    def __hash__(self):
        CountedIp.hashes += 1
        return str.__hash__(self)


class FakeView:
    """The two things Mobility reads from a View: its local endpoints and the VTEP IP of a session."""

    def __init__(self, macs, sessions):
        from types import SimpleNamespace

        self.local = {mac: SimpleNamespace(kind="vport", subnet_id="s", mac=mac, session=session)
                      for mac, session in zip(macs, sessions)}
        self._ips = {session: CountedIp(f"10.251.0.{i + 1}") for i, session in enumerate(sorted(set(sessions)))}

    def tunnel_ip_of(self, session):
        return self._ips[session]


def test_mobility_is_indexed_by_mac_work_grows_linearly_with_the_macs():
    """Every local MAC against every remote one: the check costs a few look-ups per MAC, not one per pair."""
    n = 2000
    macs = [f"02:00:00:00:{i >> 8:02x}:{i & 0xff:02x}" for i in range(n)]
    view = FakeView(macs, [f"hv{i % 50}" for i in range(n)])
    remote = RemoteTable(macs=tuple(RemoteMac("s", mac, (), CountedIp("10.251.1.1"), seq=2) for mac in macs[::2]))
    mobility = Mobility()
    CountedIp.hashes = 0
    seqs = mobility.update(view, remote)
    assert CountedIp.hashes <= 4 * n
    assert [seqs[("s", mac)] for mac in macs[:4]] == [3, 0, 3, 0]  # moved to us from the remote VTEP, or new


def test_originating_again_reuses_the_routes_built_before():
    """A round that originates unchanged routes does not build (and validate) them again: same objects."""
    state, view = setup_view()
    first, again = originate(view, state.policy), originate(view, state.policy)
    assert first == again and all(again[key] is route for key, route in first.items() if route.TYPE in (2, 3))


def test_type2_routes_sharing_all_but_the_host_are_validated_whole_once(monkeypatch):
    """Two vports of a subnet at one VTEP: the second route is made from the first (only its MAC and IP are
    checked), and equals one built and validated whole."""
    import bgp.evpn

    state, view = setup_view({"hv1": [("vm1", 10), ("vm3", 11)]})
    bgp.evpn._BUILT.clear()
    whole = []
    real = MacIpRoute.__post_init__
    monkeypatch.setattr(MacIpRoute, "__post_init__", lambda self: (whole.append(self.mac), real(self))[1])
    routes = by_type(originate(view, state.policy), 2)
    assert len(routes) == 2 and len(whole) == 1
    monkeypatch.setattr(MacIpRoute, "__post_init__", real)
    assert all(route == MacIpRoute(**vars(route)) for route in routes)
    assert {route.mac for route in routes} == {"02:00:00:00:00:01", "02:00:00:00:00:03"}


def test_type2_routes_made_from_the_first_have_their_text_written_from_its(monkeypatch):
    """Two vports of a subnet at one VTEP: the JSON encoder writes the first route's dict only; the second's text,
    written from the first's, is what the encoder writes for it."""
    import bgp.evpn
    import bgp.routes

    state, view = setup_view({"hv1": [("vm1", 10), ("vm3", 11)]})
    bgp.evpn._BUILT.clear()
    bgp.routes._PAYLOADS.clear()
    real, dicts = bgp.routes._PAYLOAD_JSON, []
    monkeypatch.setattr(bgp.routes, "_PAYLOAD_JSON", lambda value: (dicts.append(type(value) is dict), real(value))[1])
    routes = by_type(originate(view, state.policy), 2)
    texts = [bgp.routes.payload(route) for route in routes]
    assert len(routes) == 2 and dicts.count(True) == 1
    assert texts == [real(bgp.routes.route_to_dict(route)) for route in routes]


class RecordingSpeaker:
    """What Federation.publish asks of its speaker: the routes it wants announced, and that they are all of them."""

    def __init__(self):
        self.desired = None
        self.completed = 0

    def set_desired(self, routes):
        self.desired = routes

    def desired_keys(self):
        return list(self.desired or ())

    def complete(self):
        self.completed += 1


def test_publishing_many_routes_lets_other_green_threads_run_and_announces_the_same():
    """Originating 10,000 routes is ~0.3 s of CPU (more on a loaded machine): MAC mobility, originate and the
    routes' command text pause every so many routes, the speaker's lock is taken only once they are encoded, and
    pausing changes nothing announced."""
    import eventlet

    from bgp.federation import Federation
    from bgp.routes import encode
    from controller.pacer import Pacer
    from tests.unit.test_pacing import Ticker, vports_state

    state = vports_state(600)
    state.vrs_update(snapshot("hv1", HV1, [(f"vm{i}", 10 + i) for i in range(600)]))
    view = Programmer(state).derive()
    fed = Federation(None, "/unused", state, speaker=RecordingSpeaker())
    fed.pacer = Pacer(lambda: eventlet.sleep(0), 20)
    ticker = Ticker()
    try:
        fed.publish(view)
    finally:
        ticker.close()
    expected = originate(view, state.policy, Mobility().update(view, state.remote_index))
    assert fed.speaker.desired == expected and len(by_type(expected, 2)) == 600
    # mobility's first walk (its endpoints, then its MACs), originate
    assert fed.pacer.pauses >= 3 * 600 // 20 and ticker.turns >= fed.pacer.pauses
    assert not any(encode(route) for route in fed.speaker.desired.values())  # encoded before set_desired


def test_importing_many_routes_pauses_and_imports_the_same():
    """Importing 10,000 received routes (~0.1 s) pauses per change and per MAC merged; the table is the same."""
    from bgp.importer import RouteImport
    from controller.pacer import Pacer

    state, view = setup_view()
    web = state.policy.find("subnet", "acme/web")
    routes = [MacIpRoute(rd="10.250.0.9:1", mac=f"02:aa:00:00:{i >> 8:02x}:{i & 0xff:02x}", l2_vni=web["vni"],
                         next_hop="10.99.0.1", route_targets=tuple(web["import_rts"])) for i in range(300)]
    changes = {("10.250.0.9", r.key): r for r in routes}
    pauses = []
    paced, plain = RouteImport(state.policy), RouteImport(state.policy)
    assert paced.apply(changes, Pacer(lambda: pauses.append(1), 10)) == plain.apply(changes)
    assert len(pauses) == 2 * 300 // 10 and paced.table() == plain.table() and len(plain.table().macs) == 300


def received_copies(count: int):
    """(state, its Programmer, received routes): ``count`` vports on hv1, programmed, and as many type 2 routes a
    peer (10.250.0.9) sends for other MACs (ours with another first byte) in the same subnets."""
    from dataclasses import replace

    from tests.unit.test_pacing import vports_state

    state = vports_state(count)
    state.vrs_update(snapshot("hv1", HV1, [(f"vm{i}", 10 + i) for i in range(count)]))
    prog = Programmer(state)
    prog.refresh(full=True)
    view = prog.derive()
    ours = originate(view, state.policy, Mobility().update(view, state.remote_index))
    received = {("10.250.0.9", r.key): replace(r, mac="0a" + r.mac[2:], next_hop="10.251.0.200")
                for r in by_type(ours, 2)}
    return state, prog, received


def receive(state, received) -> None:
    """``received`` taken in by a fresh import, as the federation's first does."""
    from bgp.importer import RouteImport

    importer = RouteImport(state.policy)
    importer.apply({})
    state.remote_changed(importer.apply(received))


def test_a_pass_taking_many_received_routes_pauses_in_the_views_evpn_part():
    """10,000 received routes reach as many MACs in the View (controller/viewremote.py): ~0.15 s in one stretch
    before it paused per MAC. Counted: pauses made from inside it, and the flows equal a full recompute."""
    import traceback

    from controller.pacer import Pacer
    from tests.unit.test_compiler import assert_matches_full

    state, prog, received = received_copies(300)
    inside = []
    prog.pacer = Pacer(lambda: inside.append(any(f.filename.endswith("viewremote.py")
                                                 for f in traceback.extract_stack())), 10)
    receive(state, received)
    prog.refresh()
    assert sum(ep.kind == "evpn" for ep in prog.view.endpoints.values()) == 300
    assert sum(inside) >= 300 // 10
    assert_matches_full(prog)


def test_publishing_walks_the_local_endpoints_not_the_macs_peers_sent():
    """A pass publishes (MAC mobility, originate) after every import: with 10,000 received MACs in the View it walked
    all of them three times a pass, however few routes the pass took in (~4 ms a pass, during the whole of a burst of
    withdrawals). Counted in pacer ticks: the same with 300 received MACs as with none, in the live View and in one
    derived from scratch, and the same routes announced; and none of the three walks goes over ``View.endpoints``
    (MAC mobility's ticked per endpoint, the type 2 and type 3 walks did not)."""
    from dataclasses import replace

    from bgp.federation import Federation
    from bgp.importer import RouteImport
    from controller.pacer import Pacer

    class Unwalked(dict):
        """A View's endpoints the publish may look up (a static route's next hop) but not walk."""

        def walked(self, *args):
            raise AssertionError("the publish walked View.endpoints, not View.local")

        __iter__ = keys = values = items = walked

    def published(view, state):
        fed = Federation(None, "/unused", state, speaker=RecordingSpeaker())
        ticks = []
        fed.pacer = Pacer(lambda: ticks.append(1), 1)
        view.domains_on("")  # a View derived from scratch finds its switches' subnets in one walk, before this
        endpoints, view.endpoints = view.endpoints, Unwalked(view.endpoints)
        try:
            fed.publish(view)
        finally:
            view.endpoints = endpoints
        return len(ticks), fed.speaker.desired

    state, _ = setup_view()
    prog = Programmer(state)
    prog.refresh(full=True)
    published(prog.view, state)  # (the routes' command text is made once: the first publish ticks for it too)
    before = published(prog.view, state)
    ours = by_type(before[1], 2)
    theirs = [replace(ours[0], mac=f"0a:{i >> 8:02x}:00:00:{i & 0xff:02x}:01", ip=None, next_hop="10.251.0.200")
              for i in range(300)]
    received = {("10.250.0.9", r.key): r for r in theirs}
    importer = RouteImport(state.policy)
    importer.apply({})
    state.remote_changed(importer.apply(received))
    prog.refresh()
    assert sum(ep.kind == "evpn" for ep in prog.view.endpoints.values()) == 300
    assert published(prog.view, state) == before
    assert published(prog.derive(), state) == before
    assert prog.view.local == prog.derive().local == {eid: ep for eid, ep in prog.view.endpoints.items()
                                                      if ep.kind != "evpn"}


def test_an_ha_standby_flags_duplicate_macs_on_its_own():
    """A standby's publish runs MAC mobility on the same ports and routes as the active's, only announcing nothing:
    it flags a MAC moving too often by itself, so a takeover keeps the flag (between two of the active's messages of
    its flags, which the standby then holds: tests/unit/test_duplicate_macs.py)."""
    from bgp.duplicates import DuplicateMacs
    from bgp.federation import Federation
    from tests.unit.test_evpn_early_withdraw import BookedSpeaker

    state, _ = setup_view()
    key = (state.policy.find("subnet", "acme/web")["id"], "02:00:00:00:00:01")
    fed = Federation(None, "/unused", state, speaker=BookedSpeaker())
    fed.mobility = Mobility(DuplicateMacs(max_moves=2))
    fed.originating = False
    for host in ("hv1", "hv2", "hv1"):  # two moves
        fed.publish(place(state, {host: [("vm1", 10)]}))
    assert key in fed.mobility.duplicates and not fed.speaker.desired
    fed.originating = True  # taken over: still not announced
    fed.publish(place(state, {"hv1": [("vm1", 10)]}))
    assert not [r for r in fed.speaker.desired.values() if getattr(r, "mac", None) == key[1]]


def test_many_macs_flagged_duplicate_at_once_log_one_line_per_interval(caplog, monkeypatch):
    """A loop makes every local MAC move: flagging them all logs one warning per controller.loglimit.LOG_EVERY,
    the next one counting those left out (GET /v1/bgp/peers lists them, /metrics counts them)."""
    from bgp.duplicates import DuplicateMacs
    from controller import loglimit

    monkeypatch.setattr(loglimit, "_last_logged", {})
    now = [1000.0]
    monkeypatch.setattr(loglimit.time, "monotonic", lambda: now[0])
    duplicates = DuplicateMacs(max_moves=2, clock=lambda: now[0])
    with caplog.at_level("WARNING", logger="canopy.bgp"):
        for round_ in range(2):
            for i in range(50):
                duplicates.moved(("s", f"02:00:00:00:{round_:02x}:{i:02x}"), "between two of its VRS")
                duplicates.moved(("s", f"02:00:00:00:{round_:02x}:{i:02x}"), "between two of its VRS")
            now[0] += loglimit.LOG_EVERY
    lines = [r.getMessage() for r in caplog.records if "duplicate MAC" in r.getMessage()]
    assert len(duplicates.flagged) == 100 and len(lines) == 2 and lines[1].endswith("(49 more like it not logged)")
