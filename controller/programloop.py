"""The programming thread, supervised: wait for State to change, refresh the desired state, hand it out.

One pass: ``prepare()`` (import EVPN routes), ``programmer.refresh()`` (derive, recompile what changed),
then ``hand_out(touched)`` (push to switches, hardware VTEPs and BGP). Between the steps (and, in the app,
between the switches handed out) the loop gives the event loop a turn, so echo replies and HA heartbeats
wait at most for one step, not a whole pass (and within the steps the programmer pauses: controller/pacer.py); the
cyclic collector is paused for the whole pass. A pass that raises, whatever the
reason (a bad input that slipped past validation, a compiler bug), never ends the thread:

- it is logged (the traceback once per distinct reason, then one line) and the loop reports
  ``degraded`` with the reason (``status()``, shown by ``/v1/status``) until a pass succeeds;
- nothing of the failed pass is handed out: switches and VTEPs keep the last good desired state;
- the next pass comes after a bounded exponential back-off (or sooner if State changes) and is a full
  recompute, and then hands every switch its desired state (the reconcilers send only differences), so
  nothing a half-done pass changed inside the programmer is left unsent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from controller.pacer import collector_paused

log = logging.getLogger("canopy.app")
COALESCE = 0.005  # seconds: changes arriving together are compiled together
REPORT_WAIT = 1.0  # seconds a pass waits for a switch report being taken to make progress (a slice, a chunk) before it
# runs anyway: a report stalled this long is not waited for
REPORT_WAIT_MAX = 5.0  # seconds a pass waits at most for switch reports being taken, however steadily they progress
REPORTS = frozenset(("vrs", "vtep", "locations"))  # State's changes that come of switch reports (State.subscribe):
# a pass may wait for the rest of them; any other change (policy through REST, EVPN routes from BGP, an external
# network, a switch connecting over OpenFlow) ends the wait at once
RETRY_BASE_S = 0.5  # first back-off after a failed pass
RETRY_MAX_S = 30.0
OK, DEGRADED = "ok", "degraded"


def retry_delay(failures: int) -> float:
    """Seconds before the next pass after ``failures`` failed passes in a row (0 when none failed)."""
    return 0.0 if failures <= 0 else min(RETRY_MAX_S, RETRY_BASE_S * 2 ** (failures - 1))


class ProgramLoop:
    """Runs programming passes (see the module docstring); ``run`` is the green thread's body.

    ``wake``: an event (``wait(timeout)``, ``clear``) that State changes set; ``sleep``: the hub's. ``taking``: True
    while State is taking a switch's report (it pauses inside a big one, and its first chunks wake this loop);
    ``slicing``: True while an OVSDB session has more slices of an update to report; ``turns``: a count that grows
    while those sessions work on their slices (between two slices' reports, the next one is parsed: at load 10,
    2-3 s for 4,000 ports, with no change of State meanwhile). ``noted(what, sliced)``: called
    with each change of State (its kind, ``State.subscribe``; for a switch report, whether it is a slice of a
    switch slicing), so the wait for reports knows whether they progress and whether anything else is waiting for
    the pass; ``urge()``: a pass is needed now for something else. ``clock``: the wall clock (``since``);
    ``timer``: monotonic, for the wait; ``due``: on that timer, when a pass must run whatever reports are being taken
    (the start-up hold's hold_max: the pass that ends the hold), None: no such time. ``arriving``: True while the
    start-up hold waits for a switch that has not reported and an OVSDB session's first read is under way (a pass
    now would be computed without that switch, and could not end the hold: controller/app.py).
    """

    def __init__(self, programmer, wake, hand_out: Callable[[set], None], prepare: Callable[[], None] = lambda: None,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time,
                 taking: Callable[[], bool] = lambda: False, slicing: Callable[[], bool] = lambda: False,
                 turns: Callable[[], int] = lambda: 0, timer: Callable[[], float] = time.monotonic,
                 due: Callable[[], float | None] = lambda: None, arriving: Callable[[], bool] = lambda: False):
        self.programmer = programmer
        self._due = due
        self._arriving = arriving
        self._taking = taking
        self._slicing = slicing
        self._turns = turns
        self._wake = wake
        self._hand_out = hand_out
        self._prepare = prepare
        self._sleep = sleep
        self._clock = clock  # wall clock: when a degradation began (status)
        self._timer = timer  # the wait for reports: a step of the wall clock neither stretches nor cuts it
        self.state = OK
        self.reason: str | None = None
        self.since: float | None = None  # when the current degradation began
        self.failures = 0  # failed passes in a row
        self.passes = 0
        self.handed_seq = 0  # the programmer's revision of the last pass that succeeded: every switch handed its
        # desired state since holds that policy seq or a newer one (but those withheld: Programmer.due)
        self._started = False  # the first (full, not handed out) pass succeeded
        self._logged_reason = None
        self._reported = 0  # switch reports noted (their slices and chunks): the wait for reports sees them progress
        self._urgent = False  # a change that is not a switch report was noted since the last pass began
        self._unsliced = False  # so was a report of a switch that is not slicing

    def noted(self, what: str, sliced: bool = True) -> None:
        """State changed (``what``: its kind; ``sliced``: a switch report comes of an update reported in slices, or
        of the vports it moved; a hardware VTEP never slices): a switch report's progress, or a change that must not
        wait for others' slices."""
        if what not in REPORTS:
            if what == "datapath" and self._arriving():
                return  # a switch connecting over OpenFlow in the start-up hold: nothing is handed to it before it ends
            self._urgent = True
            return
        self._reported += 1
        if not sliced:
            self._unsliced = True

    def urge(self) -> None:
        """Something that is not a change of State needs a pass now (an HA role taken: the routes and VTEP rows to
        publish under it): wake the loop, and the pass does not wait for switch reports."""
        self._urgent = True
        self._wake.set()

    @property
    def started(self) -> bool:
        """The first pass succeeded: every pass from now on hands its result out."""
        return self._started

    def status(self) -> dict:
        """JSON-ready: state ok|degraded, reason, since (epoch seconds), failures in a row, next retry; ``handed_seq``:
        the policy seq the switches' desired state was last computed from and handed out (docs/operations.md)."""
        return {"state": self.state, "reason": self.reason, "since": self.since, "failures": self.failures,
                "retry_in": retry_delay(self.failures) if self.failures else None, "handed_seq": self.handed_seq}

    def run(self) -> None:
        """Forever: a pass, then wait for State to change (or for the back-off to end after a failure)."""
        self.attempt()
        while True:
            self._wake.wait(retry_delay(self.failures) if self.failures else None)
            self._sleep(COALESCE)
            self._report_taken()
            self._wake.clear()
            self.attempt()

    def _report_taken(self) -> None:
        """Wait for the switch reports State is taking, if any, to be taken whole: a big one (an OVSDB update
        deleting 10,000 ports, reported in slices) unbinds its vports chunk by chunk, pausing between chunks, and a
        pass the first chunk wakes would derive, publish and compile a View that the next chunks change again, on
        the same event loop, holding back the rest of the report (and the EVPN withdrawals made as each chunk is
        unbound). One pass after the report does the work once.

        The wait is bounded so that nothing else waits behind a stream of reports (several hypervisors sending big
        updates in turn): it ends at once when a change other than a switch report is noted (a policy applied
        through REST, EVPN routes from BGP: ``REPORTS``; an HA role taken: ``urge``), and as soon as State has
        taken a report of a switch that is not slicing (a VM started on another hypervisor, a hardware VTEP's)
        whole; when no report has progressed for ``REPORT_WAIT`` (a stalled report is not waited for: progress is a
        report noted or a turn of a slicing session); and after ``REPORT_WAIT_MAX`` in all, on the monotonic timer
        (a pass runs at least that often while reports keep coming; it is incremental, and the next pass takes only
        what came after it); and when ``due`` is reached (the start-up hold ends then at the latest: waiting on for
        reports would stretch it past restart.hold_max, by REPORT_WAIT_MAX at most before).

        During the start-up hold it also waits, bounded alike, while switches it waits for are still to report and
        OVSDB sessions are reading their first copies (``arriving``), whether or not a report is being taken: nothing
        is written before the hold ends, and the pass it ends on must have them all (nor does a switch connecting over
        OpenFlow meanwhile end this wait: nothing is handed to it before the hold ends). A pass started on the first of
        50 switches back (a restart) took as long as their first reads did, interleaved with them, and the hold
        could end only on the pass after it (vrs_scale: 5.3 s after the last switch had reported, at load 10,
        docs/benchmarks.md "hold38"; first reads lasting longer than REPORT_WAIT_MAX still see one such pass)."""
        started = self._timer()
        progressed, seen = started, (self._reported, self._turns())
        while not self._urgent:
            arriving = self._arriving()
            if not (arriving or self._taking() or self._slicing()):
                return
            if self._unsliced and not self._taking() and not arriving:
                return  # taken whole: that switch's pass does not wait for another's slices
            now = self._timer()
            if (self._reported, self._turns()) != seen:
                progressed, seen = now, (self._reported, self._turns())
            due = self._due()
            if due is not None and now >= due:
                log.debug("programming pass: switch reports still being taken, but a pass is due (the start-up hold's "
                          "end): the pass runs")
                return
            if now - progressed >= REPORT_WAIT or now - started >= REPORT_WAIT_MAX:
                log.debug("programming pass: switch reports still being taken after %.2f s (%s): the pass runs",
                          now - started, "stalled" if now - progressed >= REPORT_WAIT else "the longest wait")
                return
            self._sleep(COALESCE)

    def attempt(self) -> bool:
        """One supervised pass; True if it succeeded. Never raises (but lets GreenletExit through)."""
        try:
            self._pass()
        except Exception as exc:  # whatever it is, programming goes on
            self._failed(exc)
            return False
        self._succeeded()
        return True

    def _pass(self) -> None:
        self._urgent = self._unsliced = False  # a change noted from here on is taken by this pass, or wakes the next
        full_before = self.programmer.full_recomputes
        with collector_paused() as collector:  # no full collection in the middle of a pass (controller/pacer.py)
            self._steps()
            # flows are acyclic (freed by reference counting): after a full recompute keep the collector off them
            collector.freeze = self.programmer.full_recomputes != full_before

    def _steps(self) -> None:
        started = time.perf_counter()
        self._prepare()
        self._sleep(0)  # a turn for echo replies, heartbeats and REST between the steps of a pass
        if not self._started or self.failures:  # at start, and after a failure: from scratch
            touched = self.programmer.refresh(full=True)
        else:
            touched = self.programmer.refresh()
        refreshed = time.perf_counter()
        self._sleep(0)
        if self.failures:  # every switch gets its state again: a failed pass may have changed some unsent
            self._hand_out(set(self.programmer.desired))
        elif self._started:  # (a clean start hands nothing out: switches get theirs as they connect)
            self._hand_out(touched)
        self._log_timings(started, refreshed, touched)
        self.handed_seq = getattr(self.programmer, "revision", 0)
        self._started = True
        self.passes += 1

    def _log_timings(self, started: float, refreshed: float, touched: set) -> None:
        """One debug line per pass: where its time went (Programmer.timings), for benchmarks and operators."""
        if not log.isEnabledFor(logging.DEBUG):
            return
        timings = getattr(self.programmer, "timings", {})
        log.debug("programming pass %d: refresh %.1f ms (view %.1f, owners %.1f, compile %.1f), %d switches "
                  "touched, handed out in %.1f ms", self.passes + 1, (refreshed - started) * 1000,
                  timings.get("derive", 0.0) * 1000, timings.get("owners", 0.0) * 1000,
                  timings.get("compile", 0.0) * 1000, len(touched), (time.perf_counter() - refreshed) * 1000)

    def _failed(self, exc: Exception) -> None:
        reason = "%s: %s" % (type(exc).__name__, exc)
        self.failures += 1
        if self.state != DEGRADED:
            self.state, self.since = DEGRADED, self._clock()
        self.reason = reason
        delay = retry_delay(self.failures)
        if reason != self._logged_reason:
            log.exception("programming pass failed (%s); switches keep their last good state; retrying in "
                          "%.1fs", reason, delay)
            self._logged_reason = reason
        else:
            log.error("programming pass failed again (%d in a row: %s); retrying in %.1fs", self.failures, reason,
                      delay)

    def _succeeded(self) -> None:
        if self.state == DEGRADED:
            log.warning("programming recovered after %d failed passes (last: %s)", self.failures, self.reason)
        self.state, self.reason, self.since, self.failures = OK, None, None, 0
        self._logged_reason = None
