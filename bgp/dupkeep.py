"""Duplicate MAC flags kept across a restart and handed to the HA standby (``bgp.duplicates``).

Where they are kept, and why not in the store: the store (controller/store.py) holds the policy, and what it
replicates is a policy write: validated on the standby with the rules of a REST write, numbered in the change
history (which GET /v1/changes lists and a pair's election compares: the node with the newest change wins), and
acknowledged only once the standby confirmed it (refused otherwise). A flag is runtime state the programming loop
sets in the middle of a pass: it must not wait for the standby, be refused when the standby is away, nor make a node
look newer to the election; and the store's meta values travel only with a policy write or a snapshot (which
replaces them all). DESIGN.md keeps config and runtime state apart. So:

- **Restart**: each node writes its flags to ``<data_dir>/evpn-duplicate-macs.json`` whenever they changed, and
  reads them back at start. Written behind the pass (``controller.writebehind``: the pass hands the newest flags
  over and goes on; one write at a time, in an OS thread, the newest flags written last, a failed write tried again)
  and safely (``write_file``): to ``evpn-duplicate-macs.json.part`` created anew (whatever was at that path removed
  first, never opened: a FIFO there would block the write, a symbolic link redirect it), fsynced, renamed over the
  file, then the directory fsynced (a power cut leaves the old file or the new one, whole). Neither the pass (its
  flows and routes) nor the event loop waits for a disk; a crash loses the changes since the last write that
  completed (a restart reads that file: a flag set since is detected anew, a flag cleared since comes back until
  cleared again); a stop waits a few seconds for the newest. A file that cannot be read or parsed is logged and
  ignored (the MACs are detected anew), never a failed start.
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

import json
import logging
import math
import os

from controller import fields, secretfile
from controller.loglimit import warn_limited
from controller.overlink import OverLink
from controller.writebehind import WriteBehind

log = logging.getLogger("canopy.bgp")
KEPT = 1000  # flags written to the file and sent to the standby (~170 bytes each)
FILE_NAME = "evpn-duplicate-macs.json"
MESSAGE = "duplicate_macs"
MAX_FILE = 1 << 20  # bytes read from the file at most


class DuplicateKeeper(OverLink):
    MESSAGE, FIELD = MESSAGE, "flags"

    def __init__(self, duplicates, path: str | None, wake=lambda: None):
        """``duplicates()``: the DuplicateMacs to keep (MAC mobility's); ``path``: the file (None: none); ``wake``:
        start a programming pass (which takes the flags the active sent)."""
        super().__init__()  # the HA link once paired (Federation.pair_with), what was sent on it
        self._duplicates, self.path, self.wake = duplicates, path, wake
        self.not_kept = 0  # flags held now beyond KEPT: neither in the file nor on the standby
        self.dropped = 0  # malformed rows read from the file or received from the active, not taken
        self._queued = None  # duplicates.version last handed to the file
        self._incoming: tuple | None = None  # (the active's flags, our version then), taken by the next pass
        # the file, written behind the pass: the app sets its ``spawn`` and ``offload`` (controller/app.py)
        self.file = WriteBehind(path, log, "duplicate MAC flags") if path is not None else None
        self._load()
        self._read = self.duplicates.version  # the flags as read at start: a stop before any change writes nothing

    @property
    def duplicates(self):
        return self._duplicates()

    def counts(self) -> dict:
        """What GET /v1/ha shows (``runtime``) and, prefixed ``duplicate_``, GET /v1/bgp/peers (``mobility``)."""
        return {"not_kept": self.not_kept, "dropped": self.dropped}

    # ------------------------------------------------------------------ the programming loop's steps
    def take_incoming(self, active: bool) -> None:
        """Before MAC mobility: hold the flags the active sent last, if any came since; not on a node that has taken
        over since and changed its own flags meanwhile (a DELETE on it: newer than what the old active sent)."""
        incoming, self._incoming = self._incoming, None
        if incoming is not None and not (active and incoming[1] != self.duplicates.version):
            self.duplicates.replace(incoming[0])

    def sync(self, active: bool) -> None:
        """After MAC mobility: have the flags written if they changed (behind the pass: ``self.file``), and send them
        to the standby (``active``)."""
        self._hand_to_file()
        if active:
            self.offer()

    def _hand_to_file(self, since=None) -> None:
        """The flags to the file if they changed since they were last handed to it (``since``: the version to
        compare with when none was)."""
        version = self.duplicates.version
        if version != (self._queued if self._queued is not None else since):
            self._write(version, self._kept())
            self._queued = version

    # ------------------------------------------------------------------ the HA link (event loop): OverLink's steps
    def version(self, link) -> tuple:
        return self.duplicates.version, link.out_epoch

    def rows(self) -> list[dict]:
        return self._kept()

    def receive(self, rows) -> None:
        """The active's flags: held until the next pass takes them (``take_incoming``)."""
        rows = self._valid(rows, "the HA active")
        if rows is not None:  # not a list: no word on the flags; those held stay
            self._incoming = (rows, self.duplicates.version)
            self.wake()

    # ------------------------------------------------------------------ the file
    def _kept(self) -> list[dict]:
        rows = self.duplicates.oldest(KEPT)
        self.not_kept = len(self.duplicates.flagged) - len(rows)
        if self.not_kept:
            warn_limited(log, ("duplicate MACs not kept",), "%d duplicate MAC flag(s) beyond the %d kept across a "
                         "restart and sent to the HA standby: they hold here until this process ends",
                         self.not_kept, KEPT)
        return rows

    def _write(self, version: int, rows: list[dict]) -> None:
        """Hand ``rows`` (the flags at ``version``) to the file, which writes them behind the pass."""
        if self.file is None:
            return
        # dumps: C's encoder, a few calls; json.dump's to a file is Python's, ~170 calls a row (on the event loop)
        self.file.put(version, json.dumps({"flags": rows}, separators=(",", ":")).encode("utf-8"))

    def close(self) -> None:
        """On stop: hand the file the flags held now, then wait a few seconds for them to be written
        (``WriteBehind.close``). The programming loop is stopped by then (controller/app.py ``_shut_down``): flags
        changed since its last ``sync`` (a DELETE not yet taken by a pass; MAC mobility of a pass abandoned part way)
        are handed over here, else the file would keep older ones."""
        if self.file is not None:
            self._hand_to_file(since=self._read)
            self.file.close()

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
        self._queued = self.file.written = self.duplicates.version
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
