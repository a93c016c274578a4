"""Listeners that hostile peers cannot stop, and a process that never ends quietly.

- ``accept_forever``: the accept loop of every TCP listener Canopy runs itself (OpenFlow, REST). Any
  other accept error than a connection gone before it was accepted, such as EMFILE ("too many open
  files"), is logged once per kind and retried after a growing pause (``BACKOFF_MIN`` .. ``BACKOFF_MAX``) instead of ending the loop; a source address
  already holding ``per_source`` connections, or any source once ``total`` are open, gets its new
  connection closed at once (``on_refused`` may say why first).
- ``raise_nofile``: the soft descriptor limit is raised to the hard limit at start.
- ``fatal`` and ``essential``: a listener or another thread the controller cannot work without that
  ends, for whatever reason, ends the process with ``EXIT_FATAL`` (never 0), after one log line naming it.

Uses only the eventlet hub (through controller.ryu_compat) and the standard library.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import socket
import time
from collections import Counter
from typing import Callable

from controller import runtime
from controller.loglimit import warn_limited
from controller.ryu_compat import hub, spawn_first

log = logging.getLogger("canopy.guard")

EXIT_FATAL = 70  # EX_SOFTWARE: an essential part of the controller stopped
BACKOFF_MIN, BACKOFF_MAX = 0.05, 2.0  # seconds between accept attempts while accept keeps failing
FATAL_GRACE = 10.0  # seconds an orderly stop may take after a fatal error before the process is ended
# accept errors about the one connection being accepted (it went away): accept the next at once
TRANSIENT_ERRNOS = {errno.ECONNABORTED, errno.EPROTO, errno.EINTR, errno.EAGAIN}


class ConnectionLimits:
    """Open connections of one listener, by source address; ``admit`` says whether one more may open."""

    def __init__(self, per_source: int, total: int | None = None):
        self.per_source = per_source
        self.total = total
        self.open: Counter = Counter()

    def admit(self, source: str) -> str | None:
        """None if a connection from ``source`` may open (and count it), else the reason it may not."""
        if self.open[source] >= self.per_source:
            return f"{source} already has {self.per_source} connections open (the limit per source address)"
        if self.total is not None and sum(self.open.values()) >= self.total:
            return f"{self.total} connections are open (the limit of this listener)"
        self.open[source] += 1
        return None

    def release(self, source: str) -> None:
        self.open[source] -= 1
        if self.open[source] <= 0:
            del self.open[source]

    def count(self) -> int:
        return sum(self.open.values())


def accept_forever(server_sock, handle: Callable, name: str, limits: ConnectionLimits,
                   on_refused: Callable | None = None, stamped: bool = False, first: bool = False) -> None:
    """Accept connections on ``server_sock`` forever; each admitted one runs ``handle(sock, addr)`` in
    its own green thread and is closed and uncounted when it returns. Only the thread's kill ends this.
    ``stamped``: ``handle(sock, addr, accepted)`` with the ``time.monotonic()`` of the accept, so that the
    handler can tell how long its green thread waited for its first turn (REST's ``Server-Timing``). ``first``:
    that turn comes before those of the green threads already waiting (``ryu_compat.spawn_first``: a request
    is answered in the turn after its accept, not a round of paced work later)."""
    backoff, last_error = BACKOFF_MIN, None
    while True:
        try:
            sock, addr = server_sock.accept()
        except OSError as exc:
            if exc.errno in TRANSIENT_ERRNOS:  # that one connection is gone; the next may be fine
                continue
            if exc.errno != last_error:
                log.error("%s: accept failed: %s; keeping the listener, retrying with back-off up to %.0f s "
                          "(logged once until it recovers)", name, exc, BACKOFF_MAX)
            last_error = exc.errno
            hub.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)
            continue
        if last_error is not None:
            log.info("%s: accepting again", name)
        backoff, last_error = BACKOFF_MIN, None
        source = addr[0] if isinstance(addr, tuple) else str(addr)
        reason = limits.admit(source)
        if reason is not None:
            _refuse(sock, addr, name, reason, on_refused)
            continue
        args = (sock, addr, time.monotonic()) if stamped else (sock, addr)
        (spawn_first if first else hub.spawn)(_serve, args, source, handle, limits, name)


def _serve(args, source, handle, limits, name):
    sock, addr = args[:2]
    try:
        handle(*args)
    except Exception:  # one connection's failure is that connection's
        log.exception("%s: error serving %s", name, _peer(addr))
    finally:
        limits.release(source)
        try:
            sock.close()
        except OSError:
            pass


def _refuse(sock, addr, name, reason, on_refused):
    warn_limited(log, (name, addr[0] if isinstance(addr, tuple) else addr),
                 "%s: refusing connection from %s: %s", name, _peer(addr), reason)
    try:
        if on_refused is not None:
            on_refused(sock, reason)
    except OSError:
        pass
    finally:
        try:
            sock.close()
        except OSError:
            pass


def _peer(addr):
    return "%s:%s" % addr[:2] if isinstance(addr, tuple) else str(addr)


def listen(host: str, port: int, backlog: int = 1024):
    """A green listening TCP socket (IPv4 or IPv6 by the address)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return hub.listen((host, port), family=family, backlog=backlog)


def raise_nofile() -> tuple[int, int]:
    """Raise the soft descriptor limit to the hard limit (logged); returns (soft, hard) as they now are."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and hard != resource.RLIM_INFINITY:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            log.info("open file limit raised from %d to %d (the hard limit)", soft, hard)
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("open file limit stays %d (hard %d): %s", soft, hard, exc)
    else:
        log.info("open file limit %s", soft if soft != resource.RLIM_INFINITY else "unlimited")
    return soft, hard


def essential(thread, name: str) -> None:
    """End the process with EXIT_FATAL if green thread ``thread`` ever ends (returns, raises or is killed)
    while the controller is not stopping."""
    thread.link(lambda _gt: fatal(f"{name} stopped"))


def fatal(reason: str) -> None:
    """An essential part stopped: log it, stop in order (the main thread gets SystemExit(EXIT_FATAL)), and
    end the process outright if that has not finished within FATAL_GRACE seconds."""
    if runtime.STOPPING or runtime.FATAL:
        return
    runtime.FATAL = reason
    log.critical("fatal: %s; the controller exits with status %d", reason, EXIT_FATAL)
    for handler in logging.getLogger("canopy").handlers:
        handler.flush()
    _start_deadline()
    main = runtime.MAIN_GREENLET
    if main is not None and not main.dead:
        hub.spawn(main.throw, SystemExit(EXIT_FATAL))
    else:
        os._exit(EXIT_FATAL)


def _start_deadline():
    from eventlet import patcher

    real_threading = patcher.original("threading")
    real_time = patcher.original("time")

    def deadline():
        real_time.sleep(FATAL_GRACE)
        os._exit(EXIT_FATAL)

    real_threading.Thread(target=deadline, name="canopy-fatal", daemon=True).start()


__all__ = ["ConnectionLimits", "EXIT_FATAL", "accept_forever", "essential", "fatal", "listen", "raise_nofile",
           "warn_limited"]
