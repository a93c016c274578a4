"""A few OVSDB sessions read their peer's whole database at a time.

After a restart every hypervisor's ovsdb-server connects again within a second, and each session's first read (the
monitor's whole reply: the bridges, ports and interfaces of one VRS, parsed, replicated and reported to State) is
paced: a turn of the event loop every ``idl.PAUSE_ROWS`` rows or ``PAUSE_PORTS`` ports, 2-4 ms of CPU each. A
paused green thread resumes in the hub's next round, and a round runs every green thread that was ready when it began:
with 50 first reads under way, each round held 50 such turns, 140-190 ms of CPU (vrs_scale's restart, branch
startlag in docs/benchmarks.md). Every other green thread (OpenFlow echo replies, HA heartbeats, REST, a sleeping
green thread's wake-up) waited that long for its next turn.

``FirstReads`` lets ``limit`` sessions read at once; the others wait for a slot before asking for their schema and
database (nothing they would read is in flight yet; the schema alone is ~1 ms of CPU each), in the order they asked
(a slot given back goes to the first waiting session itself: a semaphore's ``acquire(timeout=...)`` puts a waiter
whose wait timed out behind the later ones, and a session asking just after a release took the slot from the one
woken for it), and answer their peer's echo requests every ``ANSWER_EVERY_S`` meanwhile (ovsdb-server drops a
manager that has not answered for two probe intervals). A slot is given back when the session has reported its first
copy, when it ends, or ``HOLD_S`` after it was taken if the peer has still not sent its whole copy (a slow or
hostile peer cannot keep the others waiting until ``sync_timeout``: each connection of it delays them by ``HOLD_S``
at most, and ``per_source`` bounds its connections).
The whole takes as much CPU as before: the same reads, a few at a time instead of all interleaved.
"""

from __future__ import annotations

from controller.ryu_compat import FifoSlots

LIMIT = 4  # sessions reading their first full copy at once: 4 turns of 2-4 ms in a round of the hub
HOLD_S = 2.0  # a session whose peer has not sent its whole copy this long after its slot was given gives it back
ANSWER_EVERY_S = 0.5  # a waiting session answers its peer's echo requests at least this often


class FirstReads(FifoSlots):
    """At most ``limit`` first reads at once (see the module docstring), first asked first served."""

    def __init__(self, limit: int = LIMIT, answer_every: float = ANSWER_EVERY_S):
        super().__init__(limit)
        self.answer_every = answer_every

    def admit(self, answer) -> None:
        """Wait for a slot, calling ``answer()`` (the session's echo replies) every ``answer_every`` seconds
        meanwhile; ``answer`` may raise (the peer went), and the wait may be killed (the session closed): then no
        slot is held (one given to it meanwhile goes on to the next waiting session)."""
        self.acquire(self.answer_every, answer)

    def status(self) -> dict:
        """``GET /v1/ovsdb/sessions``' ``first_reads``: the limit, the sessions waiting now, those that waited."""
        return {"limit": self.limit, "waiting": self.waiting, "waited": self.waited}
