"""The kernel's IPv4 neighbour table, which every network namespace shares: room for a lab's hosts, given back after.

The table's limits (``net.ipv4.neigh.default.gc_thresh3``: no entry beyond it; ``gc_thresh2``: above it, entries
idle for 5 s are evicted) are the kernel's, where each real host has a table of its own. A full table makes the
kernel ignore an ARP request for its own address (it answers only once it holds an entry for the asker): 50 lab
hypervisors resolving each other's VTEP over the flat underlay need 2,450 entries, and at the default 1,024 a cold
start of tests/benchmarks/vrs_scale.py left hundreds of tunnel neighbours unresolved (``table_fulls`` in
/proc/net/stat/arp_cache; docs/benchmarks.md, "probes50").

So a lab raises the limits as it adds hosts (``room``; never lowering them: other labs on the machine may need more),
and the last lab on the machine to close sets what the harness raised back (``give_back``). Which values the
harness found and wrote is kept in ``STATE`` beside the run records (tests.harness.runrecord), one file for the
machine, changed only under ``LOCK``: a lab claims its run record before it asks for room, so a closing lab that
sees no other live run under the lock cannot race a starting one (a later lab raises the limits again and notes
what it found). A limit changed since by someone else is left as it is. A run that died (its record's owner gone)
does not count: the next lab to close gives the table back; until then it stays raised.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import time
from pathlib import Path
from typing import Callable

from tests.harness.runrecord import RECORD_DIR

SYSCTL = Path("/proc/sys/net/ipv4/neigh/default")
STATE = RECORD_DIR / "neighbour-table.state"  # not *.json: that is a run record
LOCK_TIMEOUT = 10.0  # seconds; the lock is held for a few file reads and writes
DEFAULT_LIMIT = 1024  # gc_thresh3 of a machine nobody tuned
log = logging.getLogger(__name__)
_unraised: set[Path] = set()  # tables that could not be raised (warned once each)


def room(entries: int, sysctl: Path = SYSCTL, state: Path = STATE) -> None:
    """Let the table hold ``entries`` more than a machine's default (1,024), never lowering a limit; note what was
    found and written in ``state`` for ``give_back``. Where a limit cannot be written (a read-only /proc/sys), a
    warning says so (once per process) and the lab goes on with the table it has."""
    hard = DEFAULT_LIMIT + entries
    with _locked(state):
        saved = _load(state)
        for name, value in (("gc_thresh3", hard), ("gc_thresh2", hard // 2)):
            path = sysctl / name
            try:
                found = int(path.read_text())
                if found >= value:
                    continue
                saved["found"].setdefault(name, found)
                saved["wrote"][name] = value
                _save(state, saved)  # first: a limit written is always one the last lab gives back
                path.write_text(f"{value}\n")
            except (OSError, ValueError) as exc:
                if sysctl not in _unraised:
                    _unraised.add(sysctl)
                    log.warning("the kernel's neighbour table stays as it is (%s not raised to %d: %s): a large "
                                "lab's ARP may go unanswered", path, value, exc)
                return


def give_back(live_runs: Callable[[], set[str]], sysctl: Path = SYSCTL, state: Path = STATE) -> None:
    """Once ``live_runs()`` is empty (call it after removing the closing lab's record), set each limit the harness
    raised back to what it found, unless someone else changed it since; forget the state. Never raises."""
    try:
        with _locked(state):
            if not state.exists() or live_runs():
                return
            saved = _load(state)
            for name, found in saved["found"].items():
                path = sysctl / name
                try:
                    now = int(path.read_text())
                    if now == saved["wrote"].get(name):
                        path.write_text(f"{found}\n")
                    else:
                        log.info("%s left at %d: changed since the test harness set it to %s", path, now,
                                 saved["wrote"].get(name))
                except (OSError, ValueError) as exc:
                    log.warning("%s not set back to %d: %s", path, found, exc)
            state.unlink()
    except (OSError, TimeoutError) as exc:
        log.warning("the kernel's neighbour table was not given back (%s): its limits stay raised", exc)


@contextlib.contextmanager
def _locked(state: Path):
    """Hold the machine-wide lock beside ``state`` (waiting at most LOCK_TIMEOUT)."""
    state.parent.mkdir(parents=True, exist_ok=True)
    lock = state.with_name(f".{state.name}.lock")
    with open(lock, "a") as handle:
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{lock} held by another process for over {LOCK_TIMEOUT} s") from None
                time.sleep(0.01)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load(state: Path) -> dict:
    try:
        saved = json.loads(state.read_text())
        if isinstance(saved.get("found"), dict) and isinstance(saved.get("wrote"), dict):
            return saved
    except (OSError, ValueError, AttributeError):
        pass
    return {"found": {}, "wrote": {}}  # none yet (or unreadable: what the harness found is not known)


def _save(state: Path, saved: dict) -> None:
    draft = state.with_name(f".{state.name}.draft")
    draft.write_text(json.dumps(saved))
    draft.replace(state)
