"""End-of-RIB after a restart (bgp.endofrib through RouteBook): not before every route Canopy announces after the
start is acknowledged by ExaBGP, at once for a session that comes up later, and at the latest after the bound."""

from __future__ import annotations

import json

from bgp.endofrib import command
from bgp.routebook import GracefulRestart, RouteBook
from bgp.routes import MacIpRoute
from bgp.speaker import Neighbor

PEER = "10.0.0.2"
ROUTES = {r.key: r for r in (MacIpRoute(rd="10.0.0.1:1", mac=f"02:00:00:00:00:0{i}", ip=None, l2_vni=100,
                                        next_hop="10.0.0.9", route_targets=("65000:100",)) for i in range(1, 4))}


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def up(book, peer=PEER):
    return book.handle_line(json.dumps({"type": "state", "neighbor": {"address": {"peer": peer}, "state": "up"}}))


def book_with(clock=None):
    book = RouteBook((Neighbor(PEER, 65000),), graceful=GracefulRestart(restart_time=120), clock=clock or Clock())
    book.batch = 1  # one line per route: acknowledgements count routes
    return book


def test_end_of_rib_waits_for_the_first_complete_set_to_be_acknowledged():
    book = book_with()
    assert book.attach() == []
    up(book)
    assert book.end_of_rib() == []  # the session is up, nothing handed over yet (the start-up hold)
    lines = book.set_desired(ROUTES)
    book.complete()
    assert len(lines) == 3 and book.end_of_rib() == []
    book.handle_line("done")
    book.handle_line("done")
    assert book.end_of_rib() == []  # one route still unacknowledged
    book.handle_line("done")
    assert book.end_of_rib() == [command(PEER)] and book.end_of_rib() == []
    assert not book.peer_rows()[0]["end_of_rib_sent"]
    book.handle_line("done")
    assert book.peer_rows()[0]["end_of_rib_sent"]


def test_a_later_session_and_a_new_exabgp_get_it_once_their_routes_are_in():
    book = book_with()
    book.set_desired(ROUTES)
    book.complete()  # handed over while no ExaBGP is connected
    lines = book.attach()
    up(book)
    for _ in lines:
        assert book.end_of_rib() == []
        book.handle_line("done")
    assert book.end_of_rib() == [command(PEER)]
    book.handle_line("done")
    book.handle_line(json.dumps({"type": "state", "neighbor": {"address": {"peer": PEER}, "state": "down"}}))
    up(book)
    assert book.end_of_rib() == [command(PEER)]  # routes all in: at once
    book.detach()
    lines = book.attach()  # a new ExaBGP: sent every route again, End-of-RIB after them
    up(book)
    assert lines and book.end_of_rib() == []


def test_at_the_latest_after_the_restart_time_and_an_unsettled_publish_does_not_count():
    clock = Clock()
    book = book_with(clock)
    book.attach()
    up(book)
    book.set_desired(ROUTES)  # published, but complete() not called (an HA role not decided yet)
    for _ in ROUTES:
        book.handle_line("done")
    clock.now = 119.0
    assert book.end_of_rib() == []
    clock.now = 120.0
    assert book.end_of_rib() == [command(PEER)]  # the bound: the peer drops what it kept and was not sent
    assert book.end_of_rib() == []


def test_an_answered_error_is_not_sent():
    book = book_with()
    book.attach()
    up(book)
    book.complete()
    assert book.end_of_rib() == [command(PEER)]
    book.handle_line("error")  # ExaBGP had no session with it any more
    assert not book.peer_rows()[0]["end_of_rib_sent"] and not book.pending


def test_routes_of_the_last_line_re_sent_one_by_one_after_a_refusal_are_waited_for():
    book = book_with()
    book.batch = 3  # the whole set in one line
    book.attach()
    up(book)
    assert len(book.set_desired(ROUTES)) == 1
    book.complete()
    book.handle_line("error")  # that one line refused: its routes go again, one per line
    resent = book.take_outbox()
    assert len(resent) == 3 and book.end_of_rib() == []
    for _ in resent:
        assert book.end_of_rib() == []
        book.handle_line("done")
    assert book.end_of_rib() == [command(PEER)]
