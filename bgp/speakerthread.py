"""The BGP speaker's own thread: started by ``Speaker.start``, and again when it could not start.

``Thread.start`` raising (``RuntimeError: can't start new thread``: ulimit -u, memory) is a failure of the speaker
like an ExaBGP that cannot start: shown (last_error, its peers down, /v1/status degraded), with one traceback per
reason, on the speaker's bounded back-off (``Speaker._start_failed``). Once the back-off is over the thread is
started again by a timer (``threading.Timer``: a green thread under ryu-manager, as the speaker's own thread is), so
that a controller nobody asks (no REST client, no /metrics scrape, no route change) gets its speaker back by itself,
and by whatever asks the speaker before that (``status``, ``peers``, a route change, SIGHUP's ``reconfigure``). One
timer at a time; none once the thread runs or the speaker stops. A timer that cannot start either is logged once per
reason, and the callers retry.

Part of ``bgp.speaker`` (``Speaker`` takes these methods), apart so that module stays about the child process and the
conversation with it.
"""

from __future__ import annotations

import threading
import time

from bgp.speakerfail import FirstTime, one_line


class SpeakerThread:
    """The start of ``Speaker``'s thread, which runs ``self._run``; uses the speaker's ``_start_failed`` (the
    back-off: ``_next_start``), ``_stopping`` and ``log``."""

    def _init_thread(self) -> None:
        self._thread: threading.Thread | None = None  # not started (ident None): start() could not, _retry will
        self._retrying = threading.Lock()  # one _retry at a time
        self._retry_timer: threading.Timer | None = None  # starts the thread again once the back-off is over
        self._timer_failures = FirstTime(time.monotonic)  # a timer that could not start: logged once per reason

    def _start_thread(self) -> None:
        self._thread = thread = threading.Thread(target=self._run, name="canopy-bgp-speaker", daemon=True)
        try:
            thread.start()
        except RuntimeError as error:  # no thread to be had (ulimit -u, memory): shown, and retried
            # on the back-off even with SIGHUP's settings handed over: they wait for this thread (Speaker._take_config)
            self._start_failed(error, "could not start the BGP speaker's thread: ", at_once=False)
            self._retry_later()

    def _retry(self) -> None:
        """Start the thread that could not start, once the back-off is over: called by the timer, ``status``,
        ``peers`` (/v1/status, the image's HEALTHCHECK, /metrics ask them) and every route change or ``reconfigure``
        (``_wake``)."""
        thread = self._thread
        if not self._unstarted(thread) or time.monotonic() < self._next_start:
            return
        if self._retrying.acquire(blocking=False):
            try:
                if self._thread is thread and not self._stopping:
                    self._start_thread()
            finally:
                self._retrying.release()

    def _unstarted(self, thread) -> bool:
        """Whether ``thread`` is the speaker's thread that could not start, the speaker not stopping."""
        return thread is not None and thread.ident is None and not self._stopping

    def _retry_later(self) -> None:
        """A timer calling ``_retry`` when the back-off is over, instead of the one pending."""
        self._cancel_retry()
        timer = threading.Timer(max(0.0, self._next_start - time.monotonic()), lambda: self._on_timer(timer))
        timer.daemon = True
        try:
            timer.start()
        except RuntimeError as error:  # no thread for the timer either: status, peers or a route change retry
            reason = one_line(error)
            if self._timer_failures.first(reason):
                self.log.warning("BGP speaker: no timer to start its thread again (%s); retried when it is next "
                                 "asked or given a change", reason)
            return
        self._retry_timer = timer

    def _on_timer(self, timer: threading.Timer) -> None:
        self._retry()  # a failure there arms the next timer (_start_thread)
        if self._retry_timer is timer and self._unstarted(self._thread) and time.monotonic() < self._next_start:
            self._retry_later()  # not due yet (a back-off that moved on): wait for it

    def _cancel_retry(self) -> None:
        timer, self._retry_timer = self._retry_timer, None
        if timer is not None:
            timer.cancel()
