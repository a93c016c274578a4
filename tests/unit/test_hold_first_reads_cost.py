"""What the programming loop asks every 5 ms while the start-up hold waits for first reads (controller/startup_hold.py
``AwaitedFirstReads``, ovsdb/server.py ``first_reads_pending``) costs the same with 300 switches as with one: the
switches are looked at again only when State changed, and the sessions before their first report are counted as they
change state, not over every session at each ask. The answers are those of the from-scratch question (the oracle)."""

from __future__ import annotations

import random
from types import SimpleNamespace

from controller.discovery import DiscoverySink
from controller.startup_hold import AwaitedFirstReads, StartupHold
from ovsdb import server

from .test_compiler import base_state, snapshot
from .test_startup_hold import Clock

SWITCHES = 300
ASKS = 1000  # 5 s of the loop's 5 ms ticks


class Counted(dict):
    """A dict that counts how often its values are walked."""
    walks = 0

    def values(self):
        Counted.walks += 1
        return super().values()


def from_scratch(hold, pending, state) -> bool:
    """The question as it was asked before (every 5 ms): O(switches)."""
    return (hold.holding and pending > 0
            and hold.awaits({snap.chassis for snap in state.vrs.values()},
                            {snap.name for snap in state.vteps.values() if snap.name}))


def _vtep(i):
    return f"10.251.{i // 250}.{i % 250 + 1}"


def world(remembered, reported, clock):
    store = SimpleNamespace(get_meta=lambda key: {"vrs": [f"s{i}" for i in range(remembered)]},
                            set_meta=lambda key, value: None)
    hold = StartupHold(store, 15.0, clock=clock, wall=lambda: 1_800_000_000.0 + clock.now)
    state = base_state()
    for i in range(reported):
        state.vrs_update(snapshot(f"s{i}", _vtep(i), []))
    return hold, state


def test_asking_while_nothing_changes_looks_at_the_switches_once():
    clock = Clock()
    hold, state = world(SWITCHES + 1, SWITCHES, clock)  # one remembered switch not back
    state.vrs = Counted(state.vrs)
    Counted.walks = 0
    ovsdb = SimpleNamespace(first_reads_pending=lambda: 1)
    awaited = AwaitedFirstReads(hold, ovsdb, state)
    assert all(awaited() for _ in range(ASKS))
    assert (awaited.looks, Counted.walks) == (1, 1)  # before: ASKS walks of SWITCHES switches
    state.vrs_update(snapshot(f"s{SWITCHES}", _vtep(SWITCHES), []))  # the last one reports
    assert not awaited() and awaited.looks == 2
    assert not any(awaited() for _ in range(ASKS)) and awaited.looks == 2


def test_the_answers_are_those_of_the_question_from_scratch():
    """Switches report and leave, first reads start and end, the clock runs past the hold's end: every answer is the
    from-scratch one (and the switches were looked at once per change, not once per ask)."""
    rng, clock = random.Random(39), Clock()
    hold, state = world(12, 0, clock)
    pending = [0]
    awaited = AwaitedFirstReads(hold, SimpleNamespace(first_reads_pending=lambda: pending[0]), state)
    changes = 0
    for _ in range(400):
        step = rng.random()
        if step < 0.3:
            i = rng.randrange(14)  # s12, s13: switches the hold does not wait for
            if f"s{i}" in state.vrs and rng.random() < 0.4:
                state.vrs_gone(f"s{i}")
            else:
                state.vrs_update(snapshot(f"s{i}", _vtep(i), []))
            changes += 1
        elif step < 0.5:
            pending[0] = max(0, pending[0] + rng.choice((-1, 1)))
        elif step < 0.55:
            clock.now += 1.0
        for _ in range(3):
            assert awaited() == from_scratch(hold, pending[0], state)
    assert awaited.looks <= changes + 1


def test_the_ovsdb_server_counts_sessions_before_their_first_report_without_walking_them():
    manager = server.OvsdbManagerServer("127.0.0.1", 0, DiscoverySink())
    manager._sessions = Counted()
    Counted.walks = 0
    sessions = []
    for i in range(SWITCHES):
        session = server.PeerSession(manager, f"ovsdb:{i:03d}", SimpleNamespace(peer=f"192.0.2.{i % 250}:{6640 + i}"))
        manager._sessions[session.name] = session
        sessions.append(session)
    assert manager.first_reads_pending() == SWITCHES  # each in its handshake
    for i, session in enumerate(sessions):
        session.state = (server.QUEUED, server.SYNCING, server.SYNCED)[i % 3]
    assert manager.first_reads_pending() == 200
    sessions[1].state = server.SYNCED  # its first copy reported
    sessions[0]._finish()  # queued, then gone
    assert manager.first_reads_pending() == 198 and sessions[0].name not in manager._sessions
    assert [manager.first_reads_pending() for _ in range(ASKS)] == [198] * ASKS
    assert Counted.walks == 0  # before: one walk of every session per ask
