"""The lane tests' probe (tests/unit/probeturns.py): the work between two of its turns, and a failing job that ends
the probe and fails the test (each test's own copy ran its jobs in green threads that swallowed the error: the job
never said it was done, and its probe took turns for ever)."""

import pytest

from controller.ryu_compat import hub
from tests.unit.probeturns import PROBE, beside_probe, runs_between


def test_the_work_between_two_turns_of_the_probe_is_counted():
    marks = []

    def job(name):
        for _ in range(3):
            marks.append(name)
            hub.sleep(0)

    beside_probe([lambda: job("a"), lambda: job("b")], marks)
    assert marks[0] == PROBE and marks.count("a") == marks.count("b") == 3
    assert max(runs_between(marks)) == 2  # each round: one mark of each job between two of the probe's turns
    assert sum(runs_between(marks, weight=lambda mark: 10)) == 60


def test_a_failing_job_fails_the_test_and_ends_the_probe():
    marks, ended = [], []

    def failing():
        hub.sleep(0)
        raise AssertionError("the job's check")

    def other():
        for _ in range(5):
            hub.sleep(0)
        ended.append(1)

    with pytest.raises(AssertionError, match="the job's check"):
        beside_probe([failing, other], marks)
    assert ended == [1]  # the other job ran to its end, then the probe stopped
    count = marks.count(PROBE)
    hub.sleep(0)
    hub.sleep(0)
    assert marks.count(PROBE) == count  # no probe left taking turns
