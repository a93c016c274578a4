"""Routes withdrawn as soon as State unbinds the vports behind them (bgp/origins.py, Federation), not after the
programming pass: never one for something still present, and never announced again by a publish under way."""

from bgp.evpn import originate
from bgp.federation import Federation
from bgp.origins import Origins
from bgp.routebook import RouteBook
from bgp.routes import WITHDRAW, InclusiveMulticastRoute, MacIpRoute
from bgp.speaker import Neighbor
from controller.pacer import Pacer
from controller.programmer import Programmer
from tests.unit.test_compiler import snapshot
from tests.unit.test_evpn import HV1, HV2, setup_view

WEB_HV1 = [("vm2", 11)]  # hv1 once vm1 (web) is unplugged: vm2 (db) only


class BookedSpeaker:
    """A speaker without a process: a real RouteBook, attached, whose commands are kept."""

    def __init__(self):
        self.book = RouteBook((Neighbor("127.0.0.1", 65001),))
        self.commands = self.book.attach()

    @property
    def desired(self):
        return self.book.desired

    def desired_keys(self):
        return list(self.book.desired)

    def set_desired(self, routes):
        if routes != self.book.desired:
            self.commands += self.book.set_desired(routes)

    def complete(self):
        self.book.complete()

    def withdraw(self, keys):
        self.commands += self.book.withdraw(keys)

    def announce(self, routes):
        self.commands += self.book.announce(routes)


def publish_while_hv1_reports(fed, state, view, ports) -> bool:
    """``fed.publish(view)``, with hv1 reporting ``ports`` in its first pause (another green thread's turn: the
    OVSDB session); True when it did."""
    reported = []

    def pause():
        if not reported:
            reported.append(1)
            state.vrs_update(snapshot("hv1", HV1, ports))

    fed.pacer = Pacer(pause, 1)
    fed.publish(view)
    return bool(reported)


def published():
    state, view = setup_view()
    fed = Federation(None, "/unused", state, speaker=BookedSpeaker())
    fed.publish(view)
    return state, fed


def vm1_routes(routes):
    """vm1's type 2 and the type 3 of its subnet at hv1 (vm1 is web's only vport there)."""
    return {k for k, r in routes.items() if (isinstance(r, MacIpRoute) and r.mac == "02:00:00:00:00:01")
            or (isinstance(r, InclusiveMulticastRoute) and r.next_hop == HV1 and r.vni == web_vni(routes))}


def web_vni(routes):
    return next(r.l2_vni for r in routes.values() if isinstance(r, MacIpRoute) and r.mac == "02:00:00:00:00:01")


def web_type3_at_hv1(routes) -> set:
    """The keys of web's type 3 routes with hv1 as next hop."""
    return {k for k, r in routes.items()
            if isinstance(r, InclusiveMulticastRoute) and r.next_hop == HV1 and r.vni == web_vni(routes)}


def test_unbinding_a_vport_withdraws_its_routes_at_once_and_nothing_still_present():
    state, fed = published()
    before = dict(fed.speaker.desired)
    gone = vm1_routes(before)
    assert len(gone) == 2
    fed.speaker.commands.clear()
    state.vrs_update(snapshot("hv1", HV1, WEB_HV1))  # vm1 unplugged; no programming pass runs
    assert set(before) - set(fed.speaker.desired) == gone
    assert len(fed.speaker.commands) == 1 and fed.speaker.commands[0].startswith(WITHDRAW)
    after = originate(Programmer(state).derive(), state.policy)  # what the next pass will announce
    assert not gone & set(after) and set(after) <= set(fed.speaker.desired) | (set(after) - set(before))
    fed.speaker.commands.clear()
    fed.publish(Programmer(state).derive())
    assert not any(c.startswith(WITHDRAW) for c in fed.speaker.commands)  # nothing left for the pass to withdraw


def test_a_vport_that_moves_keeps_its_route_until_the_pass():
    state, fed = published()
    before = dict(fed.speaker.desired)
    state.vrs_update(snapshot("hv2", HV2, [("vm3", 10), ("vm4", 11), ("vm1", 12)]))  # vm1 also on hv2 now
    state.vrs_update(snapshot("hv1", HV1, WEB_HV1))  # and gone from hv1: moved, not gone
    assert "vm1" in state.locations and fed.speaker.desired == before


def test_a_vport_unbound_while_a_publish_pauses_is_left_out_of_it():
    state, view = setup_view()
    fed = Federation(None, "/unused", state, speaker=BookedSpeaker())
    assert publish_while_hv1_reports(fed, state, view, WEB_HV1)  # the View still has vm1: derived before
    assert not vm1_routes(originate(view, state.policy)) & set(fed.speaker.desired)
    assert any(r.mac == "02:00:00:00:00:03" for r in fed.speaker.desired.values() if isinstance(r, MacIpRoute))


def test_a_route_with_anything_but_vports_behind_it_is_kept():
    origins = Origins()
    origins.add(("t3", "web"), [Endpoint("vm1"), "a hardware VTEP's session"])
    origins.add(("t2", "vm1"), [Endpoint("vm1")])
    origins.add(("t2", "vm2"), [Endpoint("vm2")])
    origins.add(("t2", "vm2"), [Endpoint("vm3")])  # two vports behind one key: it goes with the last
    assert origins.unbound(["vm1", "vm2"]) == [("t2", "vm1")]
    assert origins.settle({"vm9"}) == [("t2", "vm2")]


def test_withdrawing_some_routes_sends_only_theirs():
    book = RouteBook((Neighbor("127.0.0.1", 65001),))
    routes = {r.key: r for r in (MacIpRoute(rd="10.0.0.1:1", mac=f"02:00:00:00:00:0{i}", l2_vni=10,
                                            next_hop="10.251.0.1") for i in range(3))}
    assert book.withdraw(list(routes)[:1]) == [] and len(book.desired) == 0  # disconnected: nothing sent
    book.attach()
    book.set_desired(routes)
    commands = book.withdraw([*list(routes)[:2], ("not", "desired")])
    assert len(commands) == 1 and commands[0].startswith(WITHDRAW) and set(book.desired) == set(list(routes)[2:])
    assert book.withdraw(list(routes)[:2]) == []  # already gone


class Endpoint:
    kind = "vport"

    def __init__(self, vport_id):
        self.vport_id = vport_id


def test_a_vport_bound_again_keeps_the_routes_it_stands_behind_when_another_goes():
    """vm1 and vm3 (web) on hv1: web's type 3 at hv1 has both behind it. vm1 unplugged and plugged back, then vm3
    unplugged: vm1 still stands behind the type 3, which must stay announced."""
    state, view = setup_view({"hv1": [("vm1", 10), ("vm2", 11), ("vm3", 12)], "hv2": [("vm4", 11)]})
    fed = Federation(None, "/unused", state, speaker=BookedSpeaker())
    fed.publish(view)
    web_at_hv1 = web_type3_at_hv1(fed.speaker.desired)
    assert len(web_at_hv1) == 1
    state.vrs_update(snapshot("hv1", HV1, [("vm2", 11), ("vm3", 12)]))  # vm1 unplugged
    state.vrs_update(snapshot("hv1", HV1, [("vm1", 10), ("vm2", 11), ("vm3", 12)]))  # and plugged back
    state.vrs_update(snapshot("hv1", HV1, [("vm1", 10), ("vm2", 11)]))  # vm3 unplugged: vm1 is still there
    assert "vm1" in state.locations and web_at_hv1 <= set(fed.speaker.desired)
