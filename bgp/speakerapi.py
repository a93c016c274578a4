"""The speaker's conversation with ExaBGP's API, through the relay (``bgp.relay``, the API process ExaBGP starts):
its connection accepted (only from the relay of the current ExaBGP: SO_PEERCRED), what it says read and handled a run
at a time (received updates, peer states, one acknowledgement per command line), the command lines written, and the
watchdog's verdicts (``bgp.watchdog``) acted on: a probe, the peers reported down, a silent ExaBGP killed.

Part of ``bgp.speaker`` (``Speaker`` takes these methods), apart so that module stays about supervising ExaBGP, its
thread's turns and the public interface. Runs in the speaker's thread; the route book, the output buffer and the
watchdog are touched under the speaker's lock.
"""

from __future__ import annotations

import os
import signal
import subprocess

from bgp.speakerproc import TERM_GRACE, parent_pid, peer_pid, wait_exit
from bgp.watchdog import PROBE, PROBE_NOW, RESTART, SILENT
from controller.pacer import unit_runs

MAX_LINE = 16 * 1024 * 1024  # a line from ExaBGP longer than this is dropped
READ_CHUNK = 1 << 16  # bytes per recv from the relay
WRITE_CHUNK = 1 << 20  # bytes offered to the relay's socket per send (it takes what fits)
WRITE_BURST = 1 << 24  # bytes sent to the relay per turn of the I/O thread at most (the relay holds what it reads)
READ_BURST = 1 << 18  # bytes read from the relay per turn of the I/O thread before its lines are handled
HANDLE_BYTES = 1 << 14  # bytes of ExaBGP's lines handled between two pauses (~23 one-route UPDATEs, ~1.5 ms of CPU)


class SpeakerApi:
    """The API conversation of ``Speaker`` (module docstring): its state (``Speaker.__init__``: the connection and
    its buffers, the route book, the watchdog, the lock, the pacer) and its ``_queue``, ``_wake``, ``_reap`` and
    ``_terminate_child``."""

    def _accept(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except BlockingIOError:
            return
        proc = self._proc
        relay_pid = peer_pid(conn)
        if proc is None or self._conn is not None or self._stopping or parent_pid(relay_pid) != proc.pid:
            self.log.warning("BGP speaker: refused API connection from pid %d (not the relay of the current "
                             "exabgp)", relay_pid)
            conn.close()
            return
        conn.setblocking(False)
        with self._lock:
            self._conn, self._inbuf, self._outbuf = conn, bytearray(), bytearray()
            self._changed |= self._failure is not None
            self._failure = None  # an ExaBGP is up and takes commands
            commands = self._book.attach()
            self._queue(commands)
            self._watchdog.connected()
            routes = len(self._book.expected)  # every desired route goes out again (a line holds up to 8)
        self.log.info("BGP speaker: exabgp API connected (relay pid %d); injecting %d route(s) in %d command "
                      "line(s)", relay_pid, routes, len(commands))

    def _read(self) -> None:
        """Read what the relay has (up to READ_BURST bytes: on_change is told in batches of that size) and handle its
        complete lines (``_handle``)."""
        data = bytearray()
        self._backlog = False
        while len(data) < READ_BURST:
            try:
                chunk = self._conn.recv(READ_CHUNK)
            except BlockingIOError:
                break
            except OSError as error:
                chunk = b""
                self.log.warning("BGP speaker: API connection failed: %s", error)
            if not chunk:
                if data:
                    break  # handle what came before the end; the next turn sees the end again
                self._api_lost()
                return
            data += chunk
        self._backlog = len(data) >= READ_BURST
        if not data:
            return
        self._inbuf += data
        *lines, rest = self._inbuf.split(b"\n")
        if len(rest) > MAX_LINE:
            self.log.warning("BGP speaker: dropped an over-long ExaBGP line (%d bytes, no newline)", len(rest))
            rest = b""
        self._inbuf = bytearray(rest)
        self._handle(lines)

    def _handle(self, lines: list) -> None:
        """ExaBGP's complete lines a run at a time (``pacer``: ``HANDLE_BYTES`` or its budget), each run under the lock,
        the pause outside it: 256 KiB of one-route UPDATEs were one stretch of ~850,000 bytecodes (stop 46)."""
        sizes = list(map(len, lines))
        for start, stop in unit_runs(self.pacer, sizes):
            with self._lock:
                acks = self._book.acks
                for line in lines[start:stop]:  # handle_line never raises: no acknowledgement after a bad line is lost
                    self._changed |= self._book.handle_line(line.decode("utf-8", errors="replace"))
                self._queue(self._book.take_outbox())
                if self._book.acks != acks:
                    self._acknowledged()
            self._tick(sum(sizes[start:stop]))

    def _tick(self, size: int) -> None:
        """``size`` bytes of lines handled (``pacer``); a pause it makes is the speaker's own, no wait for ExaBGP, also
        to whoever asks the watchdog during it (``ApiWatchdog.pause_begins``; a tick that makes no pause adds its
        microseconds, the speaker's own too)."""
        with self._lock:
            self._watchdog.pause_begins()
        try:
            self.pacer.tick(size)
        finally:
            with self._lock:
                self._watchdog.pause_ends()

    def _acknowledged(self) -> None:
        """ExaBGP acknowledged lines (caller holds the lock). After a silent spell, one more probe: its peers are
        reported as ExaBGP says only once that is answered too (``bgp.watchdog``: ExaBGP reports a session that
        dropped meanwhile only after answering the lines it had read)."""
        if self._watchdog.acknowledged(waiting=bool(self._book.pending)):
            self._queue([self._book.probe(PROBE)])
            self._watchdog.probed()
            self._watchdog.resumed(self._book.acks + len(self._book.pending))
            self.log.warning("BGP speaker: exabgp answers its API again; its peers stay reported down until it "
                             "answers one more command (it reports them first)")
        elif self._watchdog.settled(self._book.acks):
            self._changed = True
            self.log.warning("BGP speaker: exabgp has had its peers' turn since it answered again; its peers are "
                             "reported as it says")

    def _write(self) -> None:
        """Hand the relay all the commands its socket takes now (WRITE_BURST at most): this thread gets a turn
        only between other green threads' stretches (a programming pass pauses every few milliseconds), so a
        burst of commands (10,000 withdrawals: ~3 MB) went out 64 KiB a turn while ExaBGP waited for them."""
        for _ in range(WRITE_BURST // WRITE_CHUNK):
            with self._lock:
                chunk = bytes(self._outbuf[:WRITE_CHUNK])
            try:
                sent = self._conn.send(chunk)
            except BlockingIOError:
                return
            except OSError as error:
                self.log.warning("BGP speaker: API connection failed: %s", error)
                self._api_lost()
                return
            with self._lock:
                del self._outbuf[:sent]
                if sent < len(chunk) or not self._outbuf:
                    return

    def _api_lost(self) -> None:
        """The relay closed: usually ExaBGP died; if not, its messages can no longer be trusted: restart it."""
        self._drop_connection()
        proc = self._proc
        if proc is not None and not self._stopping:
            try:
                wait_exit(proc, 1.0)
            except subprocess.TimeoutExpired:
                self.log.error("BGP speaker: exabgp API connection closed; restarting exabgp (pid %d)", proc.pid)
                self._terminate_child()
        self._reap()

    def _watch(self) -> None:
        """Probe an idle ExaBGP; report a silent one's peers down; kill one silent too long (``bgp.watchdog``)."""
        proc = self._proc
        if proc is None:
            return
        if self._conn is None:  # (only this thread connects and drops the API)
            with self._lock:
                unconnected = self._watchdog.unconnected()
            if unconnected:
                self._kill_silent(proc, "its API relay never connected")
            return
        with self._lock:
            verdict = self._watchdog.check(waiting=bool(self._book.pending))
            if verdict == PROBE_NOW:
                self._queue([self._book.probe(PROBE)])
                self._watchdog.probed()
            unanswered = len(self._book.pending)
        if verdict == PROBE_NOW:
            self._wake()
        elif verdict == SILENT:
            with self._lock:
                self._changed = True
            self.log.error("BGP speaker: exabgp (pid %d) has not answered its API for %.0fs (%d command line(s) "
                           "unacknowledged): its peers are reported down; restart in %.0fs unless it answers",
                           proc.pid, self.config.api_timeout, unanswered,
                           self._watchdog.restart_bound() - self.config.api_timeout)
        elif verdict == RESTART:
            self._kill_silent(proc)

    def _kill_silent(self, proc: subprocess.Popen, why: str = "still not answering its API") -> None:
        """SIGKILL a frozen or wedged ExaBGP's process group (SIGTERM would wait on it); reaped and restarted
        by the usual path, which re-sends every desired route."""
        self._kill_reason = "exabgp did not answer its API; killed" if why.startswith("still") else \
            f"exabgp: {why}; killed"
        self.log.error("BGP speaker: exabgp (pid %d): %s: killing it to restart it", proc.pid, why)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
            wait_exit(proc, TERM_GRACE)
        except (ProcessLookupError, subprocess.TimeoutExpired) as error:
            self.log.warning("BGP speaker: killing exabgp (pid %d): %r", proc.pid, error)
        self._drop_connection()
        self._reap()

    def _drop_connection(self) -> None:
        conn = self._conn
        with self._lock:
            self._conn, self._outbuf = None, bytearray()
            self._book.connected = False
            self._watchdog.disconnected()
        if conn is not None:
            conn.close()
