"""evpn_routes' probe of GoBGP A's RIB: when A had taken in some, a quarter, half, three quarters of the routes, for
an announce (counts growing) and a withdraw (counts falling: A's intake of the withdrawals)."""

from tests.benchmarks.evpn_routes import Filling
from tests.benchmarks.evpn_routes_report import print_rounds


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


def test_a_function_gives_the_counts_too():
    """receive_withdraw follows br-int's flows and the routes Canopy holds: a function of no argument, not a GoBGP."""
    filling = polled(Filling(Counts([100, 80, 30, 0]).count, 100, 100, 0), [10.1, 10.2, 10.3, 10.4])
    assert filling.shares(10.0) == {0.0: 0.2, 0.25: 0.3, 0.5: 0.3, 0.75: 0.4}


def test_rounds_print_every_ratio_the_median_and_the_worst(capsys):
    rounds = [{"announce": {"seconds": s, "baseline_seconds": b, "ratio": b / s, "load": 2.0}}
              for s, b in ((10.0, 9.0), (10.0, 6.0), (10.0, 12.0))]
    print_rounds(rounds)
    line = capsys.readouterr().out.splitlines()[-1]
    assert "0.90x (10.00 / 9.00, 2.0), 0.60x (10.00 / 6.00, 2.0), 1.20x (10.00 / 12.00, 2.0)" in line
    assert line.endswith("median 0.90x, worst 0.60x")


def test_one_round_prints_no_rounds(capsys):
    print_rounds([{"announce": {"seconds": 1.0, "baseline_seconds": 1.0, "ratio": 1.0, "load": None}}])
    assert capsys.readouterr().out == ""
