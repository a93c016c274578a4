"""A node that stops originating (an HA active demoted to standby) withdraws every route its speaker holds a pacer's
run at a time, pausing between runs (bgp/federation.py ``_withdraw_all``): before, its publish handed the speaker
``set_desired({})`` under both locks, one stretch of ~50 bytecodes a route (10,000 routes: half a million). A node
promoted again during those pauses leaves the rest to the publish its promotion wakes, which starts from scratch."""

from __future__ import annotations

from bgp.evpn import originate
from controller import loglimit
from controller.pacer import Pacer
from tests.bytecodes import Bytecodes
from tests.unit.test_originator_oracle import _bulk

EVERY = 50


class Stretches:
    """A pacer's pause that records the most Python bytecodes run between two pauses (all frames, traced)."""

    def __init__(self, on_pause=None):
        self.bytecodes, self.most, self.pauses, self.on_pause = Bytecodes(), 0, 0, on_pause

    def pause(self) -> None:
        self.most, self.pauses = max(self.most, self.bytecodes.count), self.pauses + 1
        if self.on_pause is not None:
            with self.bytecodes.untraced():
                self.on_pause(self.pauses)
        self.bytecodes.count = 0

    def run(self, function) -> int:
        self.bytecodes.run(function)
        return max(self.most, self.bytecodes.count)


def demoted(n: int) -> tuple[int, int, int]:
    """(the most bytecodes between two pauses, the pauses, the routes held before) of the publish of a node demoted
    while it announced the routes of ``n`` bound vports (a real RouteBook behind the speaker)."""
    _state, prog, fed = _bulk(n, n)
    held = len(fed.speaker.desired)
    assert held > n
    stretches = Stretches()
    fed.pacer, fed.originating = Pacer(stretches.pause, EVERY), False
    most = stretches.run(lambda: fed.publish(prog.view))
    assert fed.speaker.desired == {} and fed.speaker.book.expected == {}, "not every route withdrawn"
    return most, stretches.pauses, held


def test_a_demotions_withdraw_pauses_every_so_many_routes_whatever_the_routes(monkeypatch):
    """300 and 3,000 vports (their routes and type 3 routes): the most bytecodes between two pauses are the same
    (before: one stretch of every route, 10 times as long at 3,000), and every route is withdrawn."""
    monkeypatch.setattr(loglimit, "_last_logged", {})
    small, small_pauses, small_held = demoted(300)
    big, big_pauses, big_held = demoted(3_000)
    assert small_pauses >= small_held // EVERY and big_pauses >= big_held // EVERY, (small_pauses, big_pauses)
    assert big <= small * 1.1, (small, big)
    assert big <= 100 * EVERY, big  # (~45 a route withdrawn, the command lines' text included)


def test_a_node_promoted_during_the_withdraw_leaves_the_rest_to_its_next_publish(monkeypatch):
    """Active again in a pause of the withdraw (the pair decided again): the rest is not withdrawn (a route announced
    at bind meanwhile would be), and the publish the promotion wakes hands over every route, from scratch."""
    monkeypatch.setattr(loglimit, "_last_logged", {})
    n = 1_000
    state, prog, fed = _bulk(n, n)
    held = len(fed.speaker.desired)

    def promote(pauses):
        if pauses == 3:
            fed.originating = True

    stretches = Stretches(promote)
    fed.pacer, fed.originating = Pacer(stretches.pause, EVERY), False
    fed.publish(prog.view)
    left = len(fed.speaker.desired)
    assert 0 < left < held, (left, held)  # some withdrawn, the rest left once promoted
    fed.pacer = Pacer()
    fed.publish(prog.view)
    assert fed.speaker.desired == originate(prog.view, state.policy, fed.mobility.seqs)
    assert fed.speaker.book.expected == fed.speaker.desired
