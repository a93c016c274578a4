"""The ping count of tests/integration/test_evpn_frr.py excuses a loss only when the lost request left while a port
was added (docs/vrs.md, "A packet in flight when a port is added"): placed between when its predecessor (or itself)
and its successor left, read from ping's own lines."""

import pytest

from tests.unit.pings import left_at, ping_lines, stopped_pinger


def test_a_loss_without_a_port_addition_fails():
    with pytest.raises(AssertionError, match="1 of 200 echo requests never reached a1"):
        stopped_pinger(ping_lines(200, {108}), 199).check(200, 199, 200, "now")


def test_a_lost_request_is_placed_between_its_predecessor_and_its_successor_leaving():
    p = stopped_pinger(ping_lines(200, {108}), 199)
    assert p.placed(108) == pytest.approx((left_at(107), left_at(109)))


@pytest.mark.parametrize("window", [(100.040, 100.072), (100.075, 100.085), (100.088, 100.2)])
def test_a_request_that_left_while_a_port_was_added_is_excused(window):
    """108 left between 100.070 (107 left) and 100.090 (109 left): the addition overlaps that."""
    p = stopped_pinger(ping_lines(200, {108}), 199)
    p.excuse(window)
    assert p.in_a_window() == [108]
    p.check(200, 199, 200, "now")


@pytest.mark.parametrize("window", [(100.095, 100.2),  # began after its successor left
                                    (99.0, 100.055),  # ended 35 ms before its successor left
                                    (99.0, 100.069)])  # ended 21 ms before its successor left, 1 ms before 107 left
def test_a_request_that_left_before_or_after_the_addition_is_not(window):
    p = stopped_pinger(ping_lines(200, {108}), 199)
    p.excuse(window)
    assert p.in_a_window() == []
    with pytest.raises(AssertionError, match="0 while a port was added"):
        p.check(200, 199, 200, "now")


def test_a_request_whose_predecessor_was_lost_too_left_as_ping_named_its_predecessor():
    """107 and 108 lost: ping printed "no answer yet for icmp_seq=107" as 108 left, so 108 is placed from then; 107
    from 106's leaving. The addition (100.062-100.075) ended before 108 left."""
    p = stopped_pinger(ping_lines(200, {107, 108}), 198)
    assert p.placed(107) == pytest.approx((left_at(106), left_at(108)))
    assert p.placed(108) == pytest.approx((left_at(108), left_at(109)))
    p.excuse((100.062, 100.075))
    assert p.in_a_window() == [107]
    with pytest.raises(AssertionError, match="2 of 200 echo requests never reached a1 now \\(1 while a port"):
        p.check(200, 198, 200, "now")


def test_a_request_whose_lost_predecessor_ping_did_not_name_is_placed_from_the_nearest_known_one():
    lines = [line for line in ping_lines(200, {107, 108}) if "icmp_seq=107" not in line]
    p = stopped_pinger(lines, 198)
    assert p.placed(108) == pytest.approx((left_at(106), left_at(109)))
    p.excuse((100.062, 100.065))  # before 107 left: all that is known of either is that it left after 106
    assert p.in_a_window() == [107, 108]


def test_a_request_with_no_known_leaving_before_it_is_not_excused():
    p = stopped_pinger(ping_lines(200, {1}), 199)  # the first request: none left before it
    assert p.placed(1) is None
    p.excuse((0.0, 1e12))
    assert p.in_a_window() == []


def test_a_successor_whose_reply_was_printed_late_is_placed_by_when_ping_named_the_lost_request():
    """ping stamps a reply when it prints it (its round trip ends at the kernel's receipt), so a reply printed 40 ms
    late says 109 left 40 ms late; "no answer yet for icmp_seq=108", printed just before 109 went, says when it did.
    An addition that began after 109 left does not excuse 108."""
    late = f"[{left_at(109) + 0.040:.6f}] 64 bytes from 10.0.1.21: icmp_seq=109 ttl=64 time=0.5 ms\n"
    lines = [late if "icmp_seq=109 " in line else line for line in ping_lines(200, {108})]
    p = stopped_pinger(lines, 199)
    assert p.placed(108) == pytest.approx((left_at(107), left_at(109)))
    p.excuse((100.095, 100.2))
    assert p.in_a_window() == []
