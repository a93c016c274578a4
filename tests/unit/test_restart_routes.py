"""After a restart Canopy writes no switch before the routes its BGP peers send are in (RFC 4724 4.2, the restarting
speaker defers its route selection until End-of-RIB): otherwise the first write removes the flows towards the peers'
endpoints, and adds them again once the routes arrive (pings lost meanwhile). What is awaited: each configured peer
not up yet, or up with graceful restart for l2vpn evpn and no End-of-RIB on this session (``RouteBook.awaited``), as
of the import the View was built from (``Federation.awaited``); the start-up hold waits for them, to its usual end."""

from __future__ import annotations

from bgp.routes import MacIpRoute
from controller.startup_hold import KEY
from tests.unit.test_importer import BookSpeaker, candidates, setup_view
from tests.unit.test_routebook import EOR, ROUTE, book, open_message, state, update
from tests.unit.test_startup_hold import Clock, hold
from controller.store import Store
from tests.unit.stores import stores_closed  # noqa: F401 - autouse: closes the stores a test leaves open


def test_a_peer_is_awaited_until_up_and_its_end_of_rib_is_in_which_counts_as_a_change():
    b = book()
    assert b.awaited() == ["127.0.0.1"]  # not up yet
    for text in (open_message(), state("up"), update(ROUTE)):
        b.handle_line(text)
    assert b.awaited() == ["127.0.0.1"]  # up, does graceful restart, no End-of-RIB yet
    assert b.handle_line(EOR) and b.awaited() == []  # a change: the speaker tells the app, whose hold waits
    assert not b.handle_line(EOR)  # once per session
    b.handle_line(state("down", "closing connection"))
    assert b.awaited() == ["127.0.0.1"]  # a new session: its End-of-RIB is still to come


def test_a_peer_without_graceful_restart_is_not_awaited_once_up():
    b = book()
    for text in (open_message(restart_time=None), state("up")):
        b.handle_line(text)
    assert b.awaited() == []


def test_without_graceful_restart_here_a_peer_is_not_awaited_once_up():
    """Nothing negotiated: the peer need not send End-of-RIB (RFC 4724 section 2), the hold would wait to its end."""
    from bgp.routebook import GracefulRestart

    b = book(graceful=GracefulRestart(enabled=False))
    for text in (open_message(), state("up")):
        b.handle_line(text)
    assert b.awaited() == []


def test_the_federation_awaits_a_peer_as_of_the_routes_it_imported():
    from bgp.federation import Federation

    state_, _ = setup_view()
    speaker = BookSpeaker()
    federation = Federation(None, "/nonexistent", state_, speaker=speaker)
    routes = [r for r in candidates(state_.policy) if isinstance(r, MacIpRoute) and r.mobility_seq is None][:3]
    for text in (open_message(), state("up")):
        speaker.book.handle_line(text)
    for route in routes:
        speaker.receive(route)
    federation._received_changed()
    speaker.book.handle_line(EOR)  # after the changes were taken: the next import has it
    federation.refresh_import()
    assert federation.awaited == ["127.0.0.1"] == federation.awaited_now()
    federation._received_changed()
    assert federation.awaited == ["127.0.0.1"] and federation.awaited_now() == []  # the next import's
    federation.refresh_import()
    assert federation.awaited == [] and state_.remote == speaker.imported(state_.policy)


def test_the_start_up_hold_waits_for_awaited_peers_to_its_usual_end(tmp_path):
    store, clock = Store(str(tmp_path)), Clock()
    store.set_meta(KEY, {"vrs": ["hv1"], "vteps": []})
    h = hold(store, clock)
    assert not h.check({"hv1"}, set(), peers=["10.0.0.2"])  # the switch is back, the peer's routes are not in
    status = h.status()
    assert status["state"] == "syncing" and "BGP peer(s) 10.0.0.2 (End-of-RIB)" in status["message"]
    assert status["waiting_for"] == [{"kind": "bgp peer", "name": "10.0.0.2"}] and h.waiting() == {"vrs": 0, "vtep": 0}
    assert h.check({"hv1"}, set(), peers=[])
    assert "every BGP peer's routes are in" in h.status()["message"]


def test_a_peer_that_never_sends_end_of_rib_holds_only_to_the_hold_time(tmp_path):
    store, clock = Store(str(tmp_path)), Clock()
    store.set_meta(KEY, {"vrs": ["hv1"], "vteps": []})
    h = hold(store, clock)
    clock.now += 1
    assert not h.check({"hv1"}, set(), arrived=({"hv1"}, set()), peers=["10.0.0.2"])
    clock.now += 15.0  # hold_time after the switch came back
    assert h.check({"hv1"}, set(), arrived=({"hv1"}, set()), peers=["10.0.0.2"])
    assert "still missing bgp peer 10.0.0.2" in h.status()["message"]


def test_a_hold_ending_when_a_missing_peer_s_routes_are_just_in_waits_for_the_pass_that_imports_them(tmp_path):
    """The pass being checked imported before the peer's End-of-RIB (``peers``), which was taken since (``peers_now``):
    releasing now would hand out the View without its routes (the flows towards its endpoints removed for a pass)."""
    store, clock = Store(str(tmp_path)), Clock()
    store.set_meta(KEY, {"vrs": ["hv1"], "vteps": []})
    h = hold(store, clock)
    assert not h.check({"hv1"}, set(), peers=["10.0.0.2"], peers_now=["10.0.0.2"])
    clock.now += 15.0  # the hold's end
    assert not h.check({"hv1"}, set(), peers=["10.0.0.2"], peers_now=[])  # the next pass has its routes
    assert h.check({"hv1"}, set(), peers=[], peers_now=[])
    assert "every BGP peer's routes are in" in h.status()["message"]


def test_past_hold_max_a_peer_s_routes_coming_in_are_waited_for_once(tmp_path):
    store, clock = Store(str(tmp_path)), Clock()
    store.set_meta(KEY, {"vrs": ["hv1"], "vteps": []})
    h = hold(store, clock)
    clock.now += 60.0  # hold_max
    assert not h.check({"hv1"}, set(), peers=["10.0.0.2"], peers_now=[])
    assert h.check({"hv1"}, set(), peers=["10.0.0.2"], peers_now=[])  # (its session dropped again meanwhile)
    assert "still missing bgp peer 10.0.0.2" in h.status()["message"]


def test_a_hold_ending_while_a_missing_peer_is_still_awaited_releases(tmp_path):
    """Nothing more comes with the next pass: no reason to wait for it (the hold's usual end)."""
    store, clock = Store(str(tmp_path)), Clock()
    store.set_meta(KEY, {"vrs": ["hv1"], "vteps": []})
    h = hold(store, clock)
    assert not h.check({"hv1"}, set(), peers=["10.0.0.2"], peers_now=["10.0.0.2"])
    clock.now += 15.0
    assert h.check({"hv1"}, set(), peers=["10.0.0.2"], peers_now=["10.0.0.2"])


def test_a_hold_that_waits_only_for_a_peer_says_so_not_that_switches_are_coming_back(tmp_path, caplog):
    """Every switch back, a configured peer down (a second reflector): the log and the release reason name the peer
    the hold waits for; they said "switches ... are still coming back (1 of 1 back)", then "no switch connected before
    came back for 15 s", which sent an operator looking for a switch."""
    import logging

    store, clock = Store(str(tmp_path)), Clock()
    store.set_meta(KEY, {"vrs": ["hv1"], "vteps": []})
    h = hold(store, clock)
    clock.now += 5
    assert not h.check({"hv1"}, set(), peers=["10.0.0.12"])  # back at 5 s: the hold lasts until 20 s
    clock.now += 10  # the hold time since the start is over
    with caplog.at_level(logging.INFO, logger="canopy.hold"):
        caplog.clear()  # the start's line, when an earlier test left canopy.hold at info
        assert not h.check({"hv1"}, set(), peers=["10.0.0.12"])
    [line] = [r.getMessage() for r in caplog.records if r.name == "canopy.hold"]
    assert line == ("hold time of 15 s over; every switch connected before is back (1 of 1), not yet the routes of bgp "
                    "peer 10.0.0.12: holding for them until 2027-01-15T08:02:00+00:00 at the latest (restart.hold_time "
                    "after the last switch came back)")
    clock.now += 5
    assert h.check({"hv1"}, set(), peers=["10.0.0.12"])
    assert h.status()["message"] == ("every switch connected before is back, and 15 s (hold time) passed since the "
                                     "last one came back; still missing bgp peer 10.0.0.12")


def test_a_hold_that_hold_max_ends_while_only_a_peer_is_missing_names_the_peer_not_switches(tmp_path, caplog):
    """The last switch back so late that hold_max ends the hold (not hold_time after it): the log named
    restart.hold_time as the bound, and the release said "reached while switches were coming back" with every switch
    back and only a BGP peer's routes missing."""
    import logging

    store, clock = Store(str(tmp_path)), Clock()
    store.set_meta(KEY, {"vrs": ["hv1"], "vteps": []})
    h = hold(store, clock, hold_max=20.0)
    clock.now += 10
    assert not h.check({"hv1"}, set(), peers=["10.0.0.12"])  # back at 10 s: hold_time after it is past hold_max
    clock.now += 5
    with caplog.at_level(logging.INFO, logger="canopy.hold"):
        caplog.clear()
        assert not h.check({"hv1"}, set(), peers=["10.0.0.12"])
    [line] = [r.getMessage() for r in caplog.records if r.name == "canopy.hold"]
    assert line.endswith("not yet the routes of bgp peer 10.0.0.12: holding for them until 2027-01-15T08:02:00+00:00 "
                         "at the latest (restart.hold_max 20 s)")
    clock.now += 5
    assert h.check({"hv1"}, set(), peers=["10.0.0.12"])
    assert h.status()["message"] == ("restart.hold_max of 20 s reached with every switch connected before back, "
                                     "waiting for BGP peers' routes; still missing bgp peer 10.0.0.12")
