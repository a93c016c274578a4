"""Duplicate MAC flags kept across a restart and handed to the HA standby (``bgp.duplicates``).

Where they are kept, and why not in the store: the store (controller/store.py) holds the policy, and what it
replicates is a policy write: validated on the standby with the rules of a REST write, numbered in the change
history (which GET /v1/changes lists and a pair's election compares: the node with the newest change wins), and
acknowledged only once the standby confirmed it (refused otherwise). A flag is runtime state the programming loop
sets in the middle of a pass: it must not wait for the standby, be refused when the standby is away, nor make a node
look newer to the election; and the store's meta values travel only with a policy write or a snapshot (which
replaces them all). DESIGN.md keeps config and runtime state apart. So:

- **Restart**: each node writes its flags to ``<data_dir>/evpn-duplicate-macs.json`` whenever they changed, after
  the pass that changed them, and reads them back at start. Written safely (``write_file``): to
  ``evpn-duplicate-macs.json.part`` created anew (whatever was at that path removed first, never opened: a FIFO
  there would block the write, a symbolic link redirect it), fsynced, renamed over the file, then the directory
  fsynced (a power cut leaves the old file or the new one, whole); off the event loop (``offload``: the app's
  ``blocking``, eventlet's OS threads: an fsync can take seconds on a busy disk; the pass waits for it, the event
  loop does not). A file that cannot be read or parsed is logged and ignored (the MACs are detected anew), never a
  failed start.
- **HA**: the active sends its flags to the standby over the HA link (``{"t": "duplicate_macs", "flags": [...]}``)
  whenever they changed, again on each new link connection (the peer's heartbeats tell it whether the last one
  went out on the current connection) and once it is the active again; the standby holds exactly those (its own
  detection runs too, between two messages) and writes them to its own file (when they differ). A takeover so keeps
  the active's flags, and a DELETE /v1/bgp/duplicate-macs on the active clears both (a standby refuses the write, as
  any other).
- **Bounded**: at most ``KEPT`` flags are written and sent, the oldest first (a flood of new flags never pushes out
  those set before it); the rest stay in memory (not announced) and are counted (``not_kept``, logged); rows read or
  received that are malformed are dropped and counted (``dropped``); a message without a list of flags is dropped
  whole (the standby's kept).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os

from controller import fields, secretfile
from controller.loglimit import warn_limited

log = logging.getLogger("canopy.bgp")
KEPT = 1000  # flags written to the file and sent to the standby (~170 bytes each)
FILE_NAME = "evpn-duplicate-macs.json"
MESSAGE = "duplicate_macs"
MAX_FILE = 1 << 20  # bytes read from the file at most


class DuplicateKeeper:
    def __init__(self, duplicates, path: str | None, wake=lambda: None):
        """``duplicates()``: the DuplicateMacs to keep (MAC mobility's); ``path``: the file (None: none); ``wake``:
        start a programming pass (which takes the flags the active sent)."""
        self._duplicates, self.path, self.wake = duplicates, path, wake
        self.link = None  # the HA link (controller.pairlink.PairLink) once paired: Federation.pair_with
        self.not_kept = 0  # flags held now beyond KEPT: neither in the file nor on the standby
        self.dropped = 0  # malformed rows read from the file or received from the active, not taken
        self._written = self._sent = None  # duplicates.version last written; (version, link epoch) last sent
        self._incoming: tuple | None = None  # (the active's flags, our version then), taken by the next pass
        self.offload = lambda function, *args: function(*args)  # the app's ``blocking``: the write off the loop
        self._load()

    @property
    def duplicates(self):
        return self._duplicates()

    def counts(self) -> dict:
        return {"duplicate_not_kept": self.not_kept, "duplicate_dropped": self.dropped}

    # ------------------------------------------------------------------ the programming loop's steps
    def take_incoming(self, active: bool) -> None:
        """Before MAC mobility: hold the flags the active sent last, if any came since; not on a node that has taken
        over since and changed its own flags meanwhile (a DELETE on it: newer than what the old active sent)."""
        incoming, self._incoming = self._incoming, None
        if incoming is not None and not (active and incoming[1] != self.duplicates.version):
            self.duplicates.replace(incoming[0])

    def sync(self, active: bool) -> None:
        """After MAC mobility: write the flags if they changed, and send them to the standby (``active``)."""
        version = self.duplicates.version
        if version != self._written and self._write(self._kept()):
            self._written = version  # not after a failed write: the next pass tries again
        if active:
            self._offer()

    # ------------------------------------------------------------------ the HA link (event loop)
    def on_peer_message(self, msg: dict, role: str) -> None:
        """Every message from the HA peer (controller.ha.Pair.listeners): an active offers its flags on each
        heartbeat (sent once per change and connection); a standby takes the active's."""
        kind = msg.get("t")
        if role != "active":
            self._sent = None  # this node sends its flags anew once it is the active again, whatever it sent before
        if role == "active" and kind in ("hb", "hello"):
            self._offer()
        elif role != "active" and kind == MESSAGE:
            rows = self._valid(msg.get("flags"), "the HA active")
            if rows is not None:  # not a list: no word on the flags; those held stay
                self._incoming = (rows, self.duplicates.version)
                self.wake()

    def _offer(self) -> None:
        link = self.link
        if link is None:
            return
        sent = (self.duplicates.version, link.out_epoch)
        if sent != self._sent and link.send({"t": MESSAGE, "flags": self._kept()}):
            self._sent = sent

    # ------------------------------------------------------------------ the file
    def _kept(self) -> list[dict]:
        rows = self.duplicates.oldest(KEPT)
        self.not_kept = len(self.duplicates.flagged) - len(rows)
        if self.not_kept:
            warn_limited(log, ("duplicate MACs not kept",), "%d duplicate MAC flag(s) beyond the %d kept across a "
                         "restart and sent to the HA standby: they hold here until this process ends",
                         self.not_kept, KEPT)
        return rows

    def _write(self, rows: list[dict]) -> bool:
        """Whether the flags' file now holds ``rows`` (or there is no file to keep)."""
        if self.path is None:
            return True
        # dumps: C's encoder, a few calls; json.dump's to a file is Python's, ~170 calls a row (on the event loop)
        data = json.dumps({"flags": rows}, separators=(",", ":")).encode("utf-8")
        try:
            exc = self.offload(write_file, self.path, data)
        except Exception as error:  # not an OSError (write_file returns those), raised in the pool's thread and
            exc = error  # re-raised here: it failed the pass's publish too, every pass until a write succeeded
        if exc is not None:
            warn_limited(log, ("duplicate MACs file",), "duplicate MAC flags not written to %s (they hold in memory; "
                         "tried again at the next pass; a restart meanwhile reads the file last written): %s",
                         self.path, exc)
        return exc is None

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            data = json.loads(_read_regular(self.path, MAX_FILE))
        except FileNotFoundError:
            return
        except (OSError, ValueError, RecursionError) as exc:  # RecursionError: JSON nested too deep
            log.warning("duplicate MAC flags in %s not read (ignored: the MACs are detected anew): %s", self.path, exc)
            return
        rows = self._valid(data.get("flags") if isinstance(data, dict) else None, self.path) or []
        self.duplicates.replace(rows)
        self._written = self.duplicates.version
        if rows:
            log.info("%d duplicate MAC flag(s) read from %s: still not announced", len(rows), self.path)

    def _valid(self, rows, where: str) -> list[dict] | None:
        """The well-formed rows of ``rows`` (at most KEPT), normalised; the others dropped, counted and logged. None
        if ``rows`` is not a list (counted as one row dropped)."""
        if not isinstance(rows, list):
            self.dropped += 1
            log.warning("duplicate MAC flags from %s dropped: not a list of flags", where)
            return None
        out = [row for row in map(_row, rows[:KEPT]) if row is not None]
        bad = len(rows) - len(out)
        if bad:
            self.dropped += bad
            log.warning("%d duplicate MAC flag(s) from %s dropped: malformed, or beyond the %d kept", bad, where, KEPT)
        return out


def write_file(path: str, data: bytes) -> OSError | None:
    """Replace the file at ``path`` by one holding ``data``, whole or not at all, also across a power cut; the error,
    or None. Runs in an OS thread (DuplicateKeeper.offload): no logging, no green lock. The ``.part`` file is made
    anew (O_EXCL, O_NOFOLLOW) after removing whatever is at its path (unlink removes a link or a FIFO itself, never
    what it names or opens it); fsynced before the rename, and the directory after it (the rename durable too)."""
    part = path + ".part"
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(part)  # a stale one (a crash mid-write), or anything put there
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(part, path)
        _fsync_directory(os.path.dirname(path) or ".")
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(part)
        return exc
    return None


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _row(row) -> dict | None:
    """A flag as ``DuplicateMacs`` holds it, or None if ``row`` is not one."""
    try:
        subnet_id, mac, how = row["subnet_id"], fields.mac(row["mac"]), row["last_move"]
        since, took, window = (float(row[k]) for k in ("since", "took", "window"))
    except (TypeError, KeyError, ValueError, OverflowError, fields.Invalid):  # OverflowError: an int beyond a float
        return None
    if not (isinstance(subnet_id, str) and 0 < len(subnet_id) <= 255 and isinstance(how, str) and len(how) <= 255
            and all(map(math.isfinite, (since, took, window)))):
        return None
    return {"subnet_id": subnet_id, "mac": mac, "took": took, "last_move": how, "window": window, "since": since}


def _read_regular(path: str, limit: int) -> bytes:
    """Up to ``limit`` bytes of the regular file at ``path`` (secretfile.open_regular: a FIFO put there would otherwise
    hold the controller's start until a writer came)."""
    with os.fdopen(secretfile.open_regular(path), "rb") as fh:
        return fh.read(limit + 1)[:limit]
