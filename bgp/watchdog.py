"""Is ExaBGP still taking its API commands? The speaker's watchdog: its timing, without I/O.

A frozen ExaBGP (SIGSTOP) or a wedged one (alive, but not reading its API) keeps its process and its relay's
connection, so the speaker's supervision, which acts on exits and closed connections, never notices; its peers
drop the session after their hold time while Canopy would go on reporting them up. ExaBGP acknowledges every
command line in order ("done"/"error"), so progress is visible: ``ApiWatchdog`` is told when a command line is
waited for and when an acknowledgement arrives, and says

- ``probe``: nothing has been waited for for PROBE_EVERY seconds: send one probe (``canopy ping``, which
  bgp.exabgp_ext answers from ExaBGP's command scheduler, in order with the evpn commands, and costs nothing);
- ``silent``: commands have been waited for, with no acknowledgement, for ``timeout`` seconds: report the
  peers down;
- ``restart``: ... for ``restart_after`` seconds (doubled after each restart that was not followed by an
  acknowledgement, up to RESTART_MAX): kill ExaBGP, which the speaker then restarts.

After a silent spell, the first acknowledgement does not make the peers "up" again at once: ExaBGP answers the
lines it had read before it runs its peers, so a session that dropped during the spell (the peer's hold time ran
out) is reported only after that answer. The speaker sends one more probe then (``resumed``); the peers stay
reported down until its acknowledgement (``settled``), which ExaBGP gives in a later turn of its loop, after its
peers' turn. An unanswered probe is a wait like any other: silent again after ``timeout``.

It measures progress, not latency: a busy ExaBGP working through a burst of 10,000 routes acknowledges a line
of BATCH_ROUTES routes every fraction of a second, so it is never silent, however long its queue. The clock is
passed in (unit tests use their own, no wall clock).

Only ExaBGP's silence counts, not the speaker's own pauses: it handles a burst of ExaBGP's lines a run at a time and
gives the event loop a turn between runs (``pause_begins``, ``pause_ends``), and an acknowledgement handled after such
a pause, or read late because of one, was not waited for meanwhile. The verdicts (``silent``, ``restart``),
``silent_for`` and ``longest_wait`` (how close ExaBGP came to the timeout) leave those pauses out, the one still going
on included (``api_silent_for`` read meanwhile counted it before stop 50); before stop 49 the verdicts counted them (a
burst of received updates handled under load, an acknowledgement unread behind it: the peers reported down though
ExaBGP answered). ``longest_quiet`` is the longest wait in real time, the pauses in it. Pauses come only from
handling what ExaBGP wrote: a frozen ExaBGP writes nothing, and its silence counts whole. A wedged one whose peers keep
sending writes their updates on and on: the verdicts and ``silent_for`` leave pauses out of at most ``PAUSES_AT_MOST``
of a wait (left out whole, a speaker pausing 99% of the time counted 0.01 s a second: reported silent after ~500 s).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

PROBE_EVERY = 1.0  # seconds without anything waited for before a probe is sent
RESTART_MAX = 300.0  # the restart bound grows up to this while restarts do not help
PROBE = "canopy ping"  # the probe command (bgp.exabgp_ext registers it)
# the most of a wait's real time the speaker's own pauses take out of it: an ExaBGP that writes (its peers' updates)
# but answers nothing, handled with pauses 99% of the time under load, is still silent after 8 x ``timeout``
PAUSES_AT_MOST = 7 / 8

OK, PROBE_NOW, SILENT, RESTART = "ok", "probe", "silent", "restart"


@dataclass
class ApiWatchdog:
    """When ExaBGP last made progress on its API, and what the speaker should do about it (see the module)."""

    timeout: float = 5.0  # seconds without an acknowledgement, while waiting, before the peers are reported down
    restart_after: float = 30.0  # ... before ExaBGP is killed and restarted
    clock: object = time.monotonic
    silent: bool = False  # reported silent (peers reported down) and not answered since
    longest_wait: float = 0.0  # the longest wait for an acknowledgement that ended in one, the speaker's own pauses
    # left out (how long ExaBGP itself took; whole, not only up to ``PAUSES_AT_MOST`` as the verdicts do)
    longest_quiet: float = 0.0  # the same in real time, the speaker's pauses in it
    _since: float | None = None  # when the current wait began: the last acknowledgement or the first command after
    _paused: float = 0.0  # seconds the speaker spent in its own pauses that ended, in all (``pause_ends``)
    _pause_began: float | None = None  # when the speaker's pause going on began (``pause_begins``), else None
    _paused_before: float = 0.0  # ``_paused_until`` the current wait began
    _idle_since: float = 0.0  # when the last wait ended (or the API connected)
    _restarts_in_row: int = 0  # watchdog restarts with no acknowledgement since
    _armed: bool = field(default=False)
    _started: float | None = None  # when the current ExaBGP was started, until its API relay connects
    _resume_mark: int | None = None  # after a silent spell: the acknowledgement count that ends it (``resumed``)

    def started(self) -> None:
        """A new ExaBGP was started: its API relay is waited for (``unconnected``) until it connects."""
        self._started = self.clock()

    def unconnected(self) -> bool:
        """An ExaBGP started ``restart_bound()`` seconds ago whose API relay never connected (it hangs before
        loading its API process, or the relay cannot reach the speaker): True once, then it is up to a restart."""
        if self._started is None or self.clock() - self._started < self.restart_bound():
            return False
        self._started = None
        self._restarts_in_row += 1
        return True

    def connected(self) -> None:
        """A new ExaBGP's API connected: nothing is waited for yet."""
        self._armed, self.silent, self._since, self._started, self._resume_mark = True, False, None, None, None
        self._idle_since = self.clock()

    def disconnected(self) -> None:
        """ExaBGP is gone (it exited, or was killed): nothing to watch until the next one connects."""
        self._armed, self.silent, self._since, self._resume_mark = False, False, None, None

    def acknowledged(self, waiting: bool) -> bool:
        """ExaBGP acknowledged one or more command lines; ``waiting``: lines are still unacknowledged.
        True if it had been reported silent (the peers are reported as ExaBGP says again)."""
        was_silent = self.silent
        now = self.clock()
        if self._since is not None:
            self.longest_quiet = max(self.longest_quiet, now - self._since)
            paused = self._paused_until(now) - self._paused_before
            self.longest_wait = max(self.longest_wait, now - self._since - paused)
        self.silent, self._restarts_in_row = False, 0
        self._wait_from(now if waiting else None)
        if not waiting:
            self._idle_since = now
        return was_silent

    def pause_begins(self) -> None:
        """The speaker may give the event loop a turn from now, between two runs of its work (its pacer's tick): until
        ``pause_ends``, no wait of ExaBGP's (``longest_wait``, the verdicts, ``silent_for``), whoever asks meanwhile."""
        self._pause_began = self.clock()

    def pause_ends(self) -> None:
        """The speaker's turn of work is back (``pause_begins``)."""
        if self._pause_began is not None:
            self._paused += self.clock() - self._pause_began
            self._pause_began = None

    def _paused_until(self, now: float) -> float:
        """Seconds the speaker spent in its own pauses up to ``now``, the one going on included."""
        return self._paused + (now - self._pause_began if self._pause_began is not None else 0.0)

    def _waited(self, now: float) -> float:
        """Seconds of the current wait (it has begun) that were ExaBGP's: the speaker's own pauses left out, up to
        ``PAUSES_AT_MOST`` of it."""
        real = now - self._since
        return real - min(self._paused_until(now) - self._paused_before, real * PAUSES_AT_MOST)

    def _wait_from(self, since: float | None) -> None:
        """The current wait began at ``since`` (None: nothing waited for)."""
        self._since = since
        self._paused_before = self._paused_until(since) if since is not None else self._paused

    def check(self, waiting: bool) -> str:
        """What to do now: OK, PROBE_NOW, SILENT (the first time only) or RESTART. ``waiting``: command lines
        are unacknowledged."""
        if not self._armed:
            return OK
        now = self.clock()
        if not waiting:
            self._since = None
            return PROBE_NOW if now - self._idle_since >= PROBE_EVERY else OK
        if self._since is None:
            self._wait_from(now)
        quiet = self._waited(now)
        if quiet >= self.restart_bound():
            self._restarts_in_row += 1
            self.disconnected()
            return RESTART
        if quiet >= self.timeout and not self.silent:
            self.silent = True
            return SILENT
        return OK

    def resumed(self, mark: int) -> None:
        """ExaBGP answered again after a silent spell (``acknowledged`` said so) and a probe was sent after that
        answer: its peers stay reported down until acknowledgement number ``mark`` (the probe's) arrives."""
        self._resume_mark = mark

    def settled(self, acks: int) -> bool:
        """True once, when ``acks`` acknowledgements reach the resumption's mark: ExaBGP has had its peers' turn
        since it answered again, so the states it reported are current."""
        if self._resume_mark is None or acks < self._resume_mark:
            return False
        self._resume_mark = None
        return True

    @property
    def resuming(self) -> bool:
        """Answering again after a silent spell, and not yet past its peers' turn (``resumed``)."""
        return self._resume_mark is not None

    def why_down(self) -> str | None:
        """Why every peer is reported down whatever ExaBGP last said (silent, or resuming), or None."""
        silent = self.silent_for()
        if silent is not None:
            return f"exabgp has not answered its API for {silent:.0f}s"
        if self.resuming:
            return "exabgp answers its API again after a silent spell; waiting for it to report its peers"
        return None

    def probed(self) -> None:
        """A probe was sent: it is waited for from now."""
        if self._since is None:
            self._wait_from(self.clock())

    def silent_for(self) -> float | None:
        """Seconds ExaBGP has been waited for without an answer (the speaker's own pauses left out), once reported
        silent; else None."""
        return self._waited(self.clock()) if self.silent and self._since is not None else None

    def restart_bound(self) -> float:
        """Seconds of silence before a restart: ``restart_after``, doubled per restart in a row that did not help."""
        return min(self.restart_after * 2 ** self._restarts_in_row, max(RESTART_MAX, self.restart_after))
