"""The clocks of the EVPN route benchmark (tests/benchmarks/evpn_routes.py): probes polling a check from threads of
their own, the counts they keep (``Filling``), a step clocked until its probes are reached, CPU seconds of processes."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

PROBE_INTERVAL = 0.1  # seconds between polls, growing to PROBE_FRACTION of the time elapsed: a bounded error
PROBE_FRACTION = 0.02  # and fewer polls in long phases (a RIB summary costs gobgpd ~8 ms at 10,000 routes)
PHASE_TIMEOUT = 900


class Probe(threading.Thread):
    """Polls ``check`` every PROBE_INTERVAL s (or PROBE_FRACTION of the time elapsed, if longer); ``at``:
    seconds from ``started`` to the middle of the first poll that found it true (about when the other side
    answered it). An exception (a slow or refused answer) counts as "not yet"."""

    def __init__(self, name: str, check, started: float, deadline: float):
        super().__init__(name=f"probe-{name}", daemon=True)
        self.check, self.started, self.deadline = check, started, deadline
        self.at: float | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        while time.monotonic() < self.deadline:
            before = time.monotonic()
            try:
                if self.check() is True:
                    self.at = (before + time.monotonic()) / 2 - self.started
                    return
            except Exception as error:  # noqa: BLE001
                self.error = error
            step = max(PROBE_INTERVAL, PROBE_FRACTION * (before - self.started))
            time.sleep(max(0.0, step - (time.monotonic() - before)))


class Filling:
    """A probe's check that A holds ``target`` EVPN destinations, keeping every count it polled: ``shares``, when A
    had first taken in some, a quarter, half, three quarters of the ``n`` routes counted from ``start`` (the
    destinations it held before: fewer of them for a withdraw), how they reached it. ``gobgp``: a GoBGP (what its
    ``count`` gives), or a function of no argument giving the count to follow (flows on br-int, routes Canopy holds)."""

    SHARES = (0.0, 0.25, 0.5, 0.75)

    def __init__(self, gobgp, start: int, n: int, target: int):
        self.count = getattr(gobgp, "count", gobgp)
        self.start, self.n, self.target = start, n, target
        self.polls: list[tuple[float, int]] = []  # (monotonic time of the poll's middle, count)

    def __call__(self) -> bool:
        before = time.monotonic()
        count = self.count()
        self.polls.append(((before + time.monotonic()) / 2, count))
        return count == self.target

    def shares(self, started: float) -> dict:
        """{share: seconds from ``started`` to the first poll that found more than that share of the routes taken
        in (added, or for a withdraw removed)}; a poll without an answer (-1) counts as none."""
        return {share: next((round(at - started, 2) for at, count in self.polls
                             if count >= 0 and abs(count - self.start) > share * self.n), None)
                for share in self.SHARES}


def clock(action, probes: dict, until: tuple[str, ...], what: str, values: dict) -> dict:
    """Start the probes (name -> check, True once reached), run ``action`` (the clock starts just before
    it) and wait until the probes named in ``until`` are reached: {name: seconds or None, "action": how long
    ``action`` took}. ``values`` (name -> callable) describe the state when the wait times out."""
    started = time.monotonic()
    marks = {"started": started, "load": os.getloadavg()[0]}  # the 1-minute load average as it began
    threads = {name: Probe(name, check, started, started + PHASE_TIMEOUT) for name, check in probes.items()}
    for thread in threads.values():
        thread.start()
    action()
    marks["action"] = time.monotonic() - started
    for name in until:
        threads[name].join(PHASE_TIMEOUT + 1)
        if threads[name].at is None:
            now = {k: v() for k, v in values.items()}
            raise SystemExit(f"{what}: {name} not reached in {PHASE_TIMEOUT}s; now {now}; {threads[name].error!r}")
    for name, thread in threads.items():
        thread.join(2 * PROBE_INTERVAL + 1)
        marks[name] = thread.at
    return marks


def cpu_seconds(pids) -> float:
    """User + system CPU seconds the processes (all their threads) have used; a gone one counts 0."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")
