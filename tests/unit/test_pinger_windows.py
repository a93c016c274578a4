"""The ping count of tests/integration/test_evpn_frr.py excuses a loss only in a port addition's window
(docs/vrs.md, "A packet in flight when a port is added")."""

import pytest

from tests.integration.test_evpn_frr import Pinger


def pinger(lost_seq=108, next_sent="100.065", sent=200):
    """A stopped Pinger whose request ``lost_seq`` never reached the responder (no ping process)."""
    p = Pinger.__new__(Pinger)
    p.seqs = set(range(1, sent + 1)) - {lost_seq}
    p.unanswered = {lost_seq: next_sent}
    p.windows, p.lines = [], []
    p.counters = {"InEchos": sent - 1, "OutErrors": 0}
    p.responder = type("Responder", (), {"name": "a1"})()
    p.evidence = type("NoEvidence", (), {"report": lambda self: ""})()  # nothing moved on the path
    return p


def test_a_loss_without_a_port_addition_fails():
    with pytest.raises(AssertionError, match="1 of 200 echo requests never reached a1"):
        pinger().check(200, 199, 200, "now")


def test_a_request_in_flight_while_a_port_was_added_is_excused():
    p = pinger()
    p.excuse((100.040, 100.062))  # its successor left 3 ms after the addition ended: within GRACE intervals
    assert p.in_a_window() == [108]
    p.check(200, 199, 200, "now")


@pytest.mark.parametrize("window", [(100.070, 100.100), (99.0, 100.030)])  # the successor before, 35 ms after
def test_a_request_outside_the_window_is_not(window):
    p = pinger()
    p.excuse(window)
    assert p.in_a_window() == []
    with pytest.raises(AssertionError, match="0 while a port was added"):
        p.check(200, 199, 200, "now")
