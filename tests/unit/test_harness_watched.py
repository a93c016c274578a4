"""tests/harness/watched.py: the route watcher and the pinger stopped however a lab case ends, a failed assertion
said again with what they saw, anything else raised as it is."""

import pytest

from tests.harness.watched import SHOWN, Watched


class FakePinger:
    def __init__(self, log):
        self.log, self.counters = log, {}

    def stop(self):
        self.log.append("pinger")
        self.counters = {"InEchos": 97}
        return 100, 90


class FakeRoutes:
    def __init__(self, log):
        self.log = log

    def stop(self):
        self.log.append("routes")


def case(log, error=None):
    with Watched(FakePinger(log), lambda: [f"event=ADDED {n}" for n in range(9)], "hva") as watched:
        watched.routes = FakeRoutes(log)
        if error is not None:
            raise error
    return watched


def test_a_case_that_passes_stops_the_route_watcher_then_the_pinger_and_keeps_what_the_pinger_counted():
    log = []
    watched = case(log)
    assert log == ["routes", "pinger"] and (watched.sent, watched.got) == (100, 90)


def test_a_failed_assertion_is_said_again_with_the_pings_lost_and_the_first_flow_changes():
    log = []
    with pytest.raises(AssertionError) as raised:
        case(log, AssertionError("a1's route not back"))
    assert log == ["routes", "pinger"]
    message = str(raised.value)
    assert message.startswith("a1's route not back; meanwhile 10 of 100 pings lost, 97 requests reached the responder")
    assert f"event=ADDED {SHOWN - 1}'" in message and f"event=ADDED {SHOWN}'" not in message
    assert raised.value.__suppress_context__


def test_another_error_is_raised_as_it_is_once_both_are_stopped():
    log = []
    with pytest.raises(KeyError):
        case(log, KeyError("x"))
    assert log == ["routes", "pinger"]


def test_no_route_watcher_yet_stops_the_pinger_only():
    log = []
    with pytest.raises(AssertionError):
        with Watched(FakePinger(log), list, "hva"):
            raise AssertionError("too early")
    assert log == ["pinger"]
