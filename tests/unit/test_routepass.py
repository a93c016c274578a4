"""The EVPN routes during the start-up hold (controller/routepass.py): the routes of what the View knows are
announced while nothing is written to a switch, with no End-of-RIB before the first publish after the hold, nothing
withdrawn that was not announced since the start, and nothing announced by a standby or while a peer's routes may
not all be in."""

from types import SimpleNamespace

from bgp.federation import Federation
from bgp.routes import ANNOUNCE, WITHDRAW
from controller.routepass import RoutePass
from tests.unit.test_compiler import snapshot
from tests.unit.test_evpn import HV1, place, setup_view
from tests.unit.test_evpn_early_withdraw import BookedSpeaker
from tests.unit.test_endofrib import up

HV1_ONLY = {"hv1": [("vm1", 10), ("vm2", 11)]}  # hv2 (vm3, vm4) not back yet


class ImportingSpeaker(BookedSpeaker):
    """BookedSpeaker whose received routes and awaited peers Federation's import reads (its peer 127.0.0.1)."""

    def received_in_order(self):
        return self.book.received_in_order()

    def take_received_in_order(self):
        return self.book.take_received_in_order()


def holding(placement=HV1_ONLY):
    """A Federation behind a held pass whose View has ``placement``; the hold and the pass's View are mutable."""
    state, view = setup_view(placement)
    fed = Federation(None, "/unused", state, speaker=ImportingSpeaker())
    hold = SimpleNamespace(holding=True)
    programmer = SimpleNamespace(view=view)
    return state, fed, hold, programmer, RoutePass(fed, programmer, hold, lambda: True)


def a_pass(routes):
    routes.import_remote()
    routes.view_ready()
    if not routes.hold.holding:
        routes.hand_out()


def macs(commands):
    return sorted(m for c in commands for m in ("02:00:00:00:00:01", "02:00:00:00:00:03") if m in c.lower())


def test_the_known_switches_routes_go_during_the_hold_without_end_of_rib_then_every_route_and_end_of_rib():
    state, fed, hold, programmer, routes = holding()
    a_pass(routes)
    book = fed.speaker.book
    assert macs(fed.speaker.commands) == ["02:00:00:00:00:01"]  # hv1's vm1, not hv2's vm3
    assert all(c.startswith(ANNOUNCE) for c in fed.speaker.commands)
    assert not book.eor.handed and not fed.early  # no End-of-RIB, no announcement at bind yet
    programmer.view = place(state, {"hv1": HV1_ONLY["hv1"], "hv2": [("vm3", 10), ("vm4", 11)]})  # hv2 back
    routes.import_remote()
    routes.view_ready()  # the releasing pass: its View is ready while the hold still holds
    hold.holding = False
    routes.hand_out()
    assert macs(fed.speaker.commands) == ["02:00:00:00:00:01", "02:00:00:00:00:03"]
    assert book.eor.handed and fed.early  # the complete set: End-of-RIB follows once ExaBGP holds it


def test_a_route_announced_during_the_hold_goes_when_its_port_goes_and_a_missing_switch_loses_nothing():
    state, fed, hold, programmer, routes = holding()
    a_pass(routes)
    fed.speaker.commands.clear()
    state.vrs_update(snapshot("hv1", HV1, [("vm2", 11)]))  # vm1 unplugged during the hold
    programmer.view = place(state, {"hv1": [("vm2", 11)]})
    a_pass(routes)
    assert macs(fed.speaker.commands) == ["02:00:00:00:00:01"] and fed.speaker.commands[0].startswith(WITHDRAW)
    assert not any("02:00:00:00:00:03" in k for k in map(str, fed.speaker.desired))  # hv2's: neither sent nor withdrawn


def test_nothing_goes_during_the_hold_from_a_standby_or_an_undecided_role():
    for change in ({"originating": False}, {"settled": lambda: False}):
        state, fed, hold, programmer, routes = holding()
        for name, value in change.items():
            setattr(fed, name, value)
        a_pass(routes)
        assert fed.speaker.desired == {} and fed.speaker.commands == [], change


def test_during_the_hold_routes_go_once_every_peers_routes_are_in():
    """MAC mobility's sequence numbers need the peers' routes: nothing goes while the peer is not up."""
    state, fed, hold, programmer, routes = holding()
    fed._received_changed()  # what the speaker's thread does: its peer 127.0.0.1 is not up
    a_pass(routes)
    assert fed.awaited == ["127.0.0.1"] and fed.speaker.desired == {}
    up(fed.speaker.book, "127.0.0.1")  # up, without graceful restart: its routes are not awaited any more
    fed._received_changed()
    a_pass(routes)
    assert fed.awaited == [] and macs(fed.speaker.commands) == ["02:00:00:00:00:01"]


def test_nothing_goes_before_the_first_pass():
    state, fed, hold, programmer, routes = holding()
    routes.started = lambda: False
    routes.import_remote()
    routes.view_ready()
    assert fed.speaker.desired == {}


def test_a_node_demoted_during_its_hold_withdraws_what_it_announced_in_it():
    """Its standby role would otherwise leave them announced until its hold ends (restart.hold_max at most), beside
    the new active's: a vport unbound meanwhile, or moved, stays announced from here."""
    state, fed, hold, programmer, routes = holding()
    a_pass(routes)
    assert macs(fed.speaker.commands) == ["02:00:00:00:00:01"]
    fed.speaker.commands.clear()
    fed.originating = False  # controller/approles.py _on_role: this node is the standby now
    a_pass(routes)  # the pass the role change wakes, still during the hold
    assert fed.speaker.desired == {}
    assert macs(fed.speaker.commands) == ["02:00:00:00:00:01"] and fed.speaker.commands[0].startswith(WITHDRAW)
    calls = counting_publishes(fed)
    a_pass(routes)  # a standby's later passes in its hold: nothing left to withdraw, no publish
    assert calls == []


def counting_publishes(fed):
    calls = []
    update = fed.mobility.update
    fed.mobility.update = lambda *args: (calls.append(1), update(*args))[1]
    return calls


def test_the_pass_that_releases_the_hold_publishes_its_view_once_then_end_of_rib():
    """Its view_ready published the View during the hold; hand_out, the hold released, only hands it over as complete
    (publishing it again costs as much as the first: 10,000 routes, 520,000 calls)."""
    state, fed, hold, programmer, routes = holding()
    calls = counting_publishes(fed)
    routes.import_remote()
    routes.view_ready()
    hold.holding = False  # released by this pass (controller/app.py _after_hold)
    routes.hand_out()
    assert len(calls) == 1 and macs(fed.speaker.commands) == ["02:00:00:00:00:01"]
    assert fed.speaker.book.eor.handed and fed.early


def test_the_releasing_pass_publishes_again_if_the_role_or_policy_changed_since_its_view_ready():
    for change in ("role", "policy"):
        state, fed, hold, programmer, routes = holding()
        calls = counting_publishes(fed)
        routes.import_remote()
        routes.view_ready()
        if change == "role":
            fed.originating = False  # demoted while the pass compiled
        else:
            state.policy = state.policy.copy()  # a REST commit while the pass compiled
        hold.holding = False
        routes.hand_out()
        assert len(calls) == 2 and fed.speaker.book.eor.handed, change
        assert (fed.speaker.desired == {}) == (change == "role"), change


def a_pass_unchanged(routes):
    """A pass whose View did not change (Programmer.refresh calls no on_view): a role change, a peer's End-of-RIB or
    the hold's timer woke it."""
    routes.import_remote()
    if routes.hold.holding:
        routes.held()
    else:
        routes.hand_out()


def test_a_pass_that_changes_no_view_during_the_hold_publishes_when_the_role_or_the_peers_routes_do():
    state, fed, hold, programmer, routes = holding()
    fed.originating = False  # the standby
    a_pass(routes)
    assert fed.speaker.desired == {}
    fed.originating = True  # approles.py _on_role: active, inside its hold; the pass it wakes changes no View
    a_pass_unchanged(routes)
    assert macs(fed.speaker.commands) == ["02:00:00:00:00:01"]
    state, fed, hold, programmer, routes = holding()
    fed._received_changed()  # its peer 127.0.0.1 is not up
    a_pass(routes)
    assert fed.speaker.desired == {}
    up(fed.speaker.book, "127.0.0.1")  # up (no route changes: the pass changes no View)
    fed._received_changed()
    a_pass_unchanged(routes)
    assert macs(fed.speaker.commands) == ["02:00:00:00:00:01"]


def test_an_unchanged_pass_during_the_hold_publishes_nothing_again_and_one_after_it_publishes_in_full():
    """The hold's timer passes cost nothing; after the hold every pass publishes (a flag's recovery needs one)."""
    state, fed, hold, programmer, routes = holding()
    a_pass(routes)
    calls = counting_publishes(fed)
    a_pass_unchanged(routes)
    assert calls == []
    hold.holding = False
    a_pass_unchanged(routes)  # the releasing pass: End-of-RIB, no publish again
    assert calls == [] and fed.speaker.book.eor.handed
    a_pass_unchanged(routes)
    assert calls == [1]


def test_the_app_hands_a_held_pass_to_the_routes():
    from controller.app import CanopyApp

    held = []
    glue = SimpleNamespace(_after_hold=lambda touched: None, routes=SimpleNamespace(held=lambda: held.append(1)))
    CanopyApp._hand_out(glue, {"s1"})
    assert held == [1]
