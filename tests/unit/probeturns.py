"""The lane tests' probe (tests/unit/test_reconcile_lane.py, test_reads_off_lane.py, test_rest_lane.py): green threads
doing paced work beside a probe green thread that stands for the loop's other users (the lag probe, an OVSDB probe,
an HA heartbeat), and the work done between two of its turns. Counted, not timed: the work marks itself in ``marks``
(a pause, a view built, flows counted), the probe marks each of its turns with ``PROBE``.

One helper for all: each test had its own copy, whose jobs ran in ``hub.spawn`` green threads that log an exception
and swallow it, so a failing job never said it was done and its probe took turns for ever (the test hung)."""

from __future__ import annotations

from controller.ryu_compat import hub

PROBE = "probe"
PROBE_TURNS = 1_000_000  # turns a probe takes at the most (the tests' jobs end in a few thousand)


def beside_probe(jobs, marks: list) -> None:
    """Run each of ``jobs`` (callables) in a green thread of its own, spawned in that order after the probe's first
    turn, beside a probe that appends ``PROBE`` to ``marks`` at each of its turns until every job ended; return when
    all ended, raising the first job's error, if one failed (the probe stops all the same)."""
    done = []

    def probe():
        for _ in range(PROBE_TURNS):
            if len(done) == len(jobs):
                return
            marks.append(PROBE)
            hub.sleep(0)
        raise AssertionError(f"the jobs did not end in {PROBE_TURNS} turns of the probe")

    def run(job):
        try:
            job()
        finally:
            done.append(job)

    prober = hub.spawn(probe, raise_error=True)
    hub.sleep(0)
    threads = [hub.spawn(run, job, raise_error=True) for job in jobs]
    errors = []
    for thread in threads + [prober]:
        try:
            thread.wait()
        except Exception as exc:  # (an AssertionError too): after the others ended
            errors.append(exc)
    if errors:
        raise errors[0]


def runs_between(marks: list, weight=lambda mark: 1) -> list[int]:
    """The work between two of the probe's turns: for each run of marks between two ``PROBE`` marks (and before the
    first and after the last), the sum of ``weight(mark)``."""
    runs, run = [], 0
    for mark in marks:
        if mark == PROBE:
            runs.append(run)
            run = 0
        else:
            run += weight(mark)
    return runs + [run]
