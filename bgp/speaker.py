"""Canopy's BGP speaker: ExaBGP as a supervised child process, and the conversation with it.

``Speaker`` renders ``exabgp.conf`` from a ``SpeakerConfig``, runs ``python -m bgp.exabgp_ext``
(ExaBGP with Canopy's ``announce evpn`` / ``withdraw evpn`` commands) in its own process group,
and talks to it through ``bgp.relay``, the API process ExaBGP starts, which connects back to a
Unix socket in the speaker's workdir. One thread of the speaker's own does all the I/O:

- it (re)starts ExaBGP, with a bounded exponential back-off when it exits or cannot be started, and reaps it;
  until a new one's API connects (or the speaker stops), why (``status()["failure"]``) reports its peers down
  and degrades /v1/status;
- it accepts the relay's connection (only from a child of the current ExaBGP: SO_PEERCRED),
  re-injects every desired route (a new ExaBGP knows none of them), and sends what
  ``set_desired`` queued;
- it reads ExaBGP's JSON messages (received EVPN updates, neighbor state changes) and the
  acknowledgements ("done" / "error", one per command line, in order);
- it sends each peer End-of-RIB when ``bgp.endofrib`` says (ExaBGP runs with ``manual-eor``): once every route
  Canopy announces after its start (``complete()``) is acknowledged, or ``restart_time`` after the session came up;
- it watches that ExaBGP goes on acknowledging (``bgp.watchdog``): one that leaves its commands, or a probe,
  unanswered for ``api_timeout`` seconds (frozen, or wedged) has its peers reported down, and is killed and
  restarted after ``api_restart_after``.

Its settings (``Neighbor``, ``SpeakerConfig``) and ``exabgp.conf`` rendered from them: ``bgp.speakerconf``, re-exported
here; why it has no ExaBGP running, one line each: ``bgp.speakerfail``; its sockets and the child's death signal:
``bgp.speakerproc``; its own thread's start, again after the back-off when it could not: ``bgp.speakerthread``; the
conversation with ExaBGP's API (the relay's connection, its lines read and handled, commands written, the watchdog's
verdicts acted on): ``bgp.speakerapi``.
``RouteBook`` is the bookkeeping behind it (what is desired, sent, acknowledged, received, and each peer's state); it
does no I/O and is unit tested on its own with real ExaBGP JSON.

Only the standard library's threading, socket, subprocess and select are used, so this runs
unchanged under ryu-manager's eventlet monkey patching. No ExaBGP import here (STYLE rule 7).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
from typing import Callable

from bgp.received import Local
from bgp.routebook import RouteBook
from bgp.speakerconf import Neighbor, SpeakerConfig, exabgp_env, render_config, write_config
from bgp.speakerfail import FirstTime, exit_reason, one_line, size
from bgp.speakerapi import HANDLE_BYTES, SpeakerApi
from bgp.speakerproc import TERM_GRACE, die_with_parent, listen_unix, terminate_group, wake_pair
from bgp.speakerthread import SpeakerThread
from bgp.watchdog import ApiWatchdog
from controller.loglimit import warn_limited
from controller.pacer import Pacer

LOG = logging.getLogger("canopy.bgp.speaker")
BACKOFF_MIN, BACKOFF_MAX = 0.5, 30.0  # seconds before restarting an ExaBGP that exited
STABLE_AFTER = 30.0  # an ExaBGP that ran this long restarts after BACKOFF_MIN again
POLL_INTERVAL = 0.25  # how often the I/O thread checks the child when nothing else happens
NOTIFY_EVERY = 0.25  # seconds: while ExaBGP has more to say, on_change is called at most this often


class Speaker(SpeakerApi, SpeakerThread):
    """ExaBGP as a supervised child process, with the desired, announced and received EVPN routes.

    ``on_change()`` is called from the speaker's thread after received routes or peer states
    changed (its exceptions are logged). Keep it quick: that thread also reads ExaBGP, which
    stalls when its API output is not read. Every public method is thread-safe.
    """

    def __init__(self, config: SpeakerConfig, on_change: Callable[[], None] | None = None, log=None):
        self.config = config
        self.on_change = on_change
        self.log = log or LOG
        self._lock = threading.Lock()
        self._book = RouteBook(config.neighbors, log=self.log, local=Local(config.asn, config.router_id),
                               graceful=config.graceful_restart)
        self._outbuf = bytearray()  # command bytes for the relay, written by the I/O thread
        self._init_thread()  # bgp.speakerthread
        self._stopping = False
        self._listener: socket.socket | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._inbuf = bytearray()
        self._proc: subprocess.Popen | None = None
        self._started_at = 0.0  # monotonic time of the current ExaBGP's start
        self._offsets = (0, 0)  # sizes of exabgp.log and exabgp.out when it started
        self._spawns = 0
        self._backoff = BACKOFF_MIN
        self._next_start = 0.0  # monotonic time before which ExaBGP is not (re)started
        self._last_error: str | None = None
        self._failure: str | None = None  # why no ExaBGP is up: it could not start, or exited (until one connects)
        self._traced = FirstTime(time.monotonic)  # unexpected errors' reasons: a traceback the first time each occurs
        self._changed = False
        self._backlog = False  # the last read stopped at READ_BURST: the relay probably has more
        self._notified = 0.0  # monotonic time of the last on_change call
        self._watchdog = ApiWatchdog(config.api_timeout, config.api_restart_after)
        self._kill_reason: str | None = None  # why the watchdog killed the current ExaBGP (for its exit)
        self._next_config: SpeakerConfig | None = None  # handed over by reconfigure(), taken by the next start
        self.pacer = Pacer(None, HANDLE_BYTES)  # its lines' handling pauses (controller/app.py wires the event loop's)

    # ------------------------------------------------------------------ public interface
    def start(self) -> None:
        """Start the thread that runs ExaBGP. Its every start renders exabgp.conf (and opens the relay socket and the
        wake pair): what stops that (an unusable data directory, no file descriptor left) is a failure of the speaker
        like an exit, shown and retried on the back-off (``_start_failed``), never an error of the caller's start. So is
        the thread itself not starting (``RuntimeError: can't start new thread``): started again (bgp.speakerthread)."""
        with self._lock:
            if self._thread is not None:
                return
            self._stopping = False
        self._next_start = 0.0
        self._start_thread()

    def reconfigure(self, config: SpeakerConfig, check: Callable[[], None] | None = None) -> bool:
        """Start ExaBGP at once with ``config`` (SIGHUP's new settings, same workdir) if none is up now: its start
        failed or it exited (a rejected exabgp.conf), and no new one runs yet (one being started now with the old
        settings is stopped and started again with these: ``_spawn``). Then no session can be reset and no route lost
        that is not already down; the back-off starts over. False, nothing changed, while one runs (its API not
        connected yet included: a restart applies the settings then) or the speaker is stopped. ``check()``, if
        given, runs first (under the lock: no start is decided meanwhile); what it raises goes to the caller, nothing
        changed."""
        with self._lock:
            if self._thread is None or self._stopping or self._failure is None or self._proc is not None:
                return False
            if check is not None:
                check()
            self._next_config = config
            self._next_start, self._backoff = 0.0, BACKOFF_MIN
        self._wake()
        return True

    def stop(self) -> None:
        """Terminate ExaBGP (SIGTERM, then SIGKILL, to its process group), reap it, close the sockets; a failure it
        had ends (last_error keeps it) and its back-off starts over."""
        thread = self._thread
        if thread is None:
            return
        self._stopping = True
        self._cancel_retry()
        self._wake()
        if thread.ident is not None:  # else start() could not start it
            thread.join(timeout=3 * TERM_GRACE)
        if thread.is_alive():
            self.log.error("BGP speaker thread did not stop in time; terminating ExaBGP from stop()")
            self._terminate_child()
        for sock in (self._conn, self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._conn = self._listener = self._wake_r = self._wake_w = None
        try:
            os.unlink(self.config.socket_path)
        except (FileNotFoundError, NotADirectoryError):  # never made (its start failed: _prepare)
            pass
        with self._lock:  # a stopped speaker is not failing: /v1/status is not degraded by it while REST shuts down
            self._failure = None
        self._backoff = BACKOFF_MIN  # a new start() is a fresh start, not the next step of an old back-off
        self._thread = None

    def set_desired(self, routes: dict) -> None:
        """Announce exactly ``routes`` ({route.key: route}): withdraw what went, announce what is new or changed."""
        with self._lock:
            if routes == self._book.desired:
                return
            commands = self._book.set_desired(routes)
            self._queue(commands)
        if commands:
            self._wake()

    def complete(self) -> None:
        """Every route Canopy announces after this start is handed over: each peer gets End-of-RIB once ExaBGP
        holds them (graceful restart, the restarting side: ``bgp.endofrib``)."""
        with self._lock:
            self._book.complete()
        self._wake()

    def announce(self, routes: dict) -> None:
        """Announce ``routes`` ({route.key: route}) too, leaving every other desired route as it is."""
        self._change(self._book.announce, routes)

    def withdraw(self, keys) -> None:
        """Withdraw the routes ``keys`` from what is announced, leaving every other desired route as it is."""
        self._change(self._book.withdraw, keys)

    def _change(self, book_step, what) -> None:
        with self._lock:
            commands = book_step(what)
            self._queue(commands)
        if commands:
            self._wake()

    def desired_keys(self) -> list:
        """The keys of the routes Canopy wants announced now (a copy: a standby withdraws them a run at a time)."""
        with self._lock:
            return list(self._book.desired)

    def announced(self) -> dict:
        """{key: route} ExaBGP acknowledged as announced."""
        with self._lock:
            return dict(self._book.announced)

    def received(self) -> dict:
        """{(peer ip, key): route} currently received from peers."""
        with self._lock:
            return dict(self._book.received)

    def take_received_in_order(self) -> tuple[dict, dict, list]:
        """{(peer ip, key): route, or None if withdrawn} since the last call, and taken with it the receive order of
        those routes and the peers whose routes may not all be in yet (``RouteBook.take_received_in_order``)."""
        with self._lock:
            return self._book.take_received_in_order()

    def received_in_order(self) -> tuple[dict, dict]:
        """``received`` and the receive order of every route in it, read together."""
        with self._lock:
            return self._book.received_in_order()

    def peers(self) -> list[dict]:
        """One row per configured neighbor: address, asn, state, since, uptime, received, sent, last_error."""
        self._retry()
        with self._lock:
            rows = self._book.peer_rows()
            why = self._watchdog.why_down() or self._failure
        if why is None:
            return rows
        return [{**row, "state": "down", "uptime": None, "sent": 0, "last_error": why} for row in rows]

    def status(self) -> dict:
        """The ExaBGP process and the API conversation with it."""
        self._retry()
        with self._lock:
            proc, book = self._proc, self._book
            running = proc is not None and proc.returncode is None
            waiting = max(0.0, self._next_start - time.monotonic()) if not running and self._thread else None
            return {
                "running": running, "pid": proc.pid if running else None,
                "restarts": max(0, self._spawns - 1), "pending_acks": len(book.pending),
                "api_connected": book.connected, "api_silent_for": self._watchdog.silent_for(),
                "api_resuming": self._watchdog.resuming,
                "api_longest_wait": round(self._watchdog.longest_wait, 3),
                "api_longest_quiet": round(self._watchdog.longest_quiet, 3),
                "desired": len(book.desired),
                "announced": len(book.announced), "refused": len(book.failed), "received": len(book.received),
                "last_error": self._last_error, "failure": self._failure, "restart_in": waiting,
                "config": self.config.conf_path, "log": self.config.log_path,
            }

    # ------------------------------------------------------------------ the I/O thread
    def _run(self) -> None:
        try:
            while not self._stopping:
                try:
                    self._supervise()
                    self._poll(self._timeout())
                    with self._lock:
                        self._changed |= self._book.expire()
                        self._queue(self._book.end_of_rib() if self._conn is not None else [])
                    self._watch()
                except Exception as error:  # noqa: BLE001 - the supervisor must outlive any bug in one turn
                    self._turn_failed(error)
                if not self._backlog or time.monotonic() - self._notified >= NOTIFY_EVERY:
                    self._notify()  # a burst of updates is reported once it is read (or every NOTIFY_EVERY)
        finally:
            self._terminate_child()
            self._reap()
            self._notify()

    def _turn_failed(self, error: Exception) -> None:
        """A turn of this thread raised (a bug): it is ``last_error``, logged with its traceback the first time that
        reason occurs (at most one traceback per LOG_EVERY seconds), else in one line at most every LOG_EVERY seconds
        whatever the reason; the next turn comes after POLL_INTERVAL."""
        reason = "unexpected error: " + one_line(error)
        with self._lock:
            self._last_error = reason
        if self._traced.first(reason):
            self.log.exception("BGP speaker: %s; continuing", reason)
        else:  # one key for every reason: a reason that varies per turn is still a line per LOG_EVERY at most
            warn_limited(self.log, ("bgp speaker", id(self), "turn"), "BGP speaker: %s; continuing", reason)
        time.sleep(POLL_INTERVAL)

    def _timeout(self) -> float:
        if self._proc is None:
            return max(0.0, min(POLL_INTERVAL, self._next_start - time.monotonic()))
        return POLL_INTERVAL

    def _supervise(self) -> None:
        if self._proc is None and not self._stopping and time.monotonic() >= self._next_start:
            self._spawn()
        elif self._proc is not None:
            self._reap()

    def _spawn(self) -> None:
        config = self._take_config()
        self._offsets = (size(config.log_path), size(config.output_path))
        argv = [sys.executable, "-m", "bgp.exabgp_ext", config.conf_path]
        try:
            self._prepare(config)
            with open(config.output_path, "ab") as output:
                proc = subprocess.Popen(argv, cwd=config.workdir, env=exabgp_env(config), stdin=subprocess.DEVNULL,
                                        stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                                        preexec_fn=die_with_parent)
        except Exception as error:  # noqa: BLE001 - whatever stops the start is reported and retried with the back-off
            self._start_failed(error)
            return
        with self._lock:
            self._proc, self._spawns = proc, self._spawns + 1
            self._watchdog.started()
            superseded = self._next_config is not None  # reconfigure() came after _take_config: this one is stale
        self._started_at = time.monotonic()
        self.log.info("BGP speaker: started exabgp (pid %d) with %s", proc.pid, config.conf_path)
        if superseded:
            self._kill_reason = "exabgp stopped: it was started with the bgp settings a SIGHUP replaced meanwhile"
            self._terminate_child()
            self._reap()  # restarts at once with the new settings (_record_exit)

    def _take_config(self) -> SpeakerConfig:
        """The configuration of this start: one ``reconfigure`` handed over replaces the running one here, in this
        thread, while no ExaBGP runs (the route book's peers and the watchdog's times follow it)."""
        with self._lock:
            config, self._next_config = self._next_config, None
            if config is not None:
                self.config = config
                self._changed |= self._book.configure(config.neighbors, Local(config.asn, config.router_id),
                                                      config.graceful_restart)
                self._watchdog = ApiWatchdog(config.api_timeout, config.api_restart_after)
                self.log.warning("BGP speaker: starting exabgp with the reloaded bgp settings")
        return self.config

    def _prepare(self, config: SpeakerConfig) -> None:
        """exabgp.conf written from ``config``; the wake pair and the relay socket opened (once per start())."""
        if self._wake_r is None:
            self._wake_r, self._wake_w = wake_pair()
        write_config(config)
        if self._listener is None:
            self._listener = listen_unix(config.socket_path)

    def _reap(self) -> None:
        """If ExaBGP exited: reap it, forget what it held, and schedule the restart."""
        proc = self._proc
        if proc is None or proc.poll() is None:
            return
        reason = self._kill_reason or exit_reason(proc.returncode, self.config, self._offsets)
        self._kill_reason = None
        self._drop_connection()
        with self._lock:
            self._proc = None
            self._changed |= self._book.detach()
        if self._stopping:
            self.log.info("BGP speaker: exabgp (pid %d) stopped", proc.pid)
            return
        if time.monotonic() - self._started_at >= STABLE_AFTER:
            self._backoff = BACKOFF_MIN
        self._record_exit(f"{reason} (pid {proc.pid})")

    def _start_failed(self, error: Exception, what: str = "could not start exabgp: ", at_once: bool = True) -> None:
        """Starting ExaBGP (or the thread) raised: the reason, one line, is recorded as for an exit and retried with the
        same back-off. An unexpected error (not an OSError) has its traceback logged the first time that reason occurs.
        ``at_once``: as ``_record_exit``."""
        unexpected = not isinstance(error, OSError)
        reason = what + one_line(error, named=unexpected)
        self._record_exit(reason, trace=unexpected and self._traced.first(reason), at_once=at_once)

    def _record_exit(self, reason: str, trace: bool = False, at_once: bool = True) -> None:
        """Why no ExaBGP is up; the next start after the back-off (at once with settings reconfigure() handed over
        meanwhile: under the lock, so either order of the two starts them at once). Not at once (``at_once`` False)
        when what failed was the speaker's thread, which takes them: they stay handed over, and every retry at once
        was a retry without a back-off (bgp.speakerthread)."""
        with self._lock:
            self._last_error = self._failure = reason
            self._changed = True  # its peers are reported down for this reason (peers())
            reloaded = self._next_config is not None
            immediate = reloaded and at_once
            delay = 0.0 if immediate else self._backoff
            self._next_start = time.monotonic() + delay
            if not immediate:
                self._backoff = min(self._backoff * 2, BACKOFF_MAX)
        self.log.error("BGP speaker: %s; restarting in %.1fs%s", reason, delay,
                       " with the reloaded bgp settings" if reloaded else "", exc_info=trace)

    def _terminate_child(self) -> None:
        """SIGTERM ExaBGP's process group, wait, then SIGKILL it; the exit is reaped by ``_reap``."""
        terminate_group(self._proc, TERM_GRACE, self.log)

    # ------------------------------------------------------------------ sockets
    def _wake(self) -> None:
        self._retry()
        wake = self._wake_w
        if wake is not None:
            try:
                wake.send(b"x")
            except OSError:
                pass  # already woken (buffer full), or stopping

    def _queue(self, commands: list[str]) -> None:
        """Append command lines for the relay (caller holds the lock)."""
        if commands:
            self._outbuf += "".join(c + "\n" for c in commands).encode("ascii")

    def _poll(self, timeout: float) -> None:
        readable = [s for s in (self._listener, self._wake_r, self._conn) if s is not None]
        with self._lock:
            writable = [self._conn] if self._conn is not None and self._outbuf else []
        ready, can_write, _ = select.select(readable, writable, [], timeout)
        if self._wake_r in ready:
            try:
                self._wake_r.recv(4096)
            except BlockingIOError:
                pass
            with self._lock:  # woken for new commands: offered now (``_write`` stops where the socket is full), not at
                fresh = self._conn is not None and self._conn not in can_write and bool(self._outbuf)  # the next turn
            if fresh:
                can_write = [*can_write, self._conn]
        if self._listener in ready:
            self._accept()
        if self._conn is not None and self._conn in ready:
            self._read()
        if self._conn is not None and self._conn in can_write:
            self._write()

    def _notify(self) -> None:
        self._notified = time.monotonic()
        with self._lock:
            changed, self._changed = self._changed, False
        if changed and self.on_change is not None:
            try:
                self.on_change()
            except Exception:  # noqa: BLE001 - a callback bug must not stop the speaker
                self.log.exception("BGP speaker: on_change callback failed")


__all__ = ["Neighbor", "RouteBook", "Speaker", "SpeakerConfig", "exabgp_env", "render_config"]
