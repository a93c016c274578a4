"""evpn_routes' probe of GoBGP A's RIB: when A had taken in some, a quarter, half, three quarters of the routes, for
an announce (counts growing) and a withdraw (counts falling: A's intake of the withdrawals)."""

from tests.benchmarks.evpn_routes import Filling


class Counts:
    """A stand-in for the GoBGP CLI's RIB summary: the counts the probe reads, one per poll (no gobgpd here)."""

    def __init__(self, counts):
        self.counts = list(counts)

    def count(self) -> int:
        return self.counts.pop(0)


def polled(filling: Filling, times) -> Filling:
    """Poll ``filling`` once per count, then stamp the polls at ``times``."""
    done = [filling() for _ in times]
    filling.polls = [(at, count) for at, (_, count) in zip(times, filling.polls)]
    assert done[-1] and not any(done[:-1])
    return filling


def test_announce_shares_count_routes_added():
    filling = polled(Filling(Counts([2, 2, 3, 40, 70, 102]), 2, 100, 102), [10.1, 10.2, 10.3, 10.4, 10.5, 10.6])
    assert filling.shares(10.0) == {0.0: 0.3, 0.25: 0.4, 0.5: 0.5, 0.75: 0.6}


def test_withdraw_shares_count_routes_removed():
    """A held 101 (base 1 + 100): the first poll below that is when A began taking the withdrawals in."""
    filling = polled(Filling(Counts([101, 101, 95, 60, 40, 20, 1]), 101, 100, 1),
                     [10.1, 10.2, 10.3, 10.4, 10.5, 10.6, 10.7])
    assert filling.shares(10.0) == {0.0: 0.3, 0.25: 0.4, 0.5: 0.5, 0.75: 0.6}


def test_unanswered_poll_counts_as_nothing_taken_in():
    filling = polled(Filling(Counts([101, -1, 1]), 101, 100, 1), [10.1, 10.2, 10.3])
    assert filling.shares(10.0) == {0.0: 0.3, 0.25: 0.3, 0.5: 0.3, 0.75: 0.3}
