"""The start-up hold's 5 ms question (controller/startup_hold.py ``AwaitedFirstReads``) against the question from
scratch (tests/unit/test_hold_first_reads_cost.py ``from_scratch``) with the old count of the sessions before their
first report (over every session of the OVSDB server, by state), through what really moves them: OVSDB sessions of
VRS and hardware VTEPs connecting, reading, reporting, ending (``_finish``) and closed (``close``, ``stop``), a peer
reconnecting (its session's name taken again once the old one is forgotten, or suffixed while it is open), two
sessions claiming one chassis (the newest speaks; the other speaks again when it goes: ovsdb/claims.py), a chassis
that changes (its claim moves to another key at once), reconnect graces running out (``expire``), and the hold's
clock and its release. State is the claims' sink, as in the controller (controller/app.py)."""

from __future__ import annotations

import logging
import random
from types import SimpleNamespace

import pytest

from controller.discovery import VrsSnapshot, VtepSnapshot
from controller.startup_hold import AwaitedFirstReads, StartupHold
from ovsdb import server
from ovsdb.claims import Claimant, VrsClaims, VtepClaims, switch_key, vtep_key

from .test_compiler import base_state
from .test_hold_first_reads_cost import from_scratch
from .test_startup_hold import Clock

LOG = logging.getLogger("test.hold_oracle")
CHASSIS = [f"c{i}" for i in range(7)]  # c0..c5 remembered, c6 not
VTEPS = ["t0", "t1", "t2"]  # t0, t1 remembered
PEERS = ["192.0.2.1:6640", "192.0.2.2:6640", "192.0.2.3:6640", "192.0.2.4:6640"]  # few: names are taken again


class Reporter(Claimant):
    """A session's reporter as the claims see it (ovsdb/vrs.py, ovsdb/vtep_reporter.py): it joins the key of what
    it reports, speaks when it is the newest claimant, and leaves its key at once when its switch's name changes."""

    def __init__(self, claims, peer):
        self._claims, self.peer, self.key, self.last, self._gone = claims, peer, None, None, False

    def report(self, snap) -> None:
        if self.key != snap.session:
            if self.key is not None:
                self._claims.leave(self.key, self, now=True)
            self.key = snap.session
            self._claims.join(self.key, self)
        self.last = snap
        if self._claims.speaker(self.key) is self:
            self._claims.report(self.key, snap)

    def speak(self) -> None:
        self._claims.report(self.key, self.last)


class Link:
    def __init__(self, peer):
        self.peer = peer

    def close(self):
        pass


def old_count(manager) -> int:
    """The count as it was taken before (every 5 ms): over every session."""
    return sum(1 for s in manager._sessions.values() if s.state in (server.HANDSHAKE, server.QUEUED, server.SYNCING))


@pytest.mark.parametrize("seed", range(6))
def test_the_answers_are_those_from_scratch_through_sessions_claims_and_graces(seed):
    rng, clock, grace_clock = random.Random(seed), Clock(), Clock()
    store = SimpleNamespace(get_meta=lambda key: {"vrs": CHASSIS[:6], "vteps": VTEPS[:2]},
                            set_meta=lambda key, value: None)
    hold = StartupHold(store, 15.0, clock=clock, wall=lambda: 1_800_000_000.0 + clock.now)
    state = base_state()
    manager = server.OvsdbManagerServer("127.0.0.1", 0, state)
    manager.claims = VrsClaims(state, 10.0, LOG, clock=grace_clock)
    manager.vtep_claims = VtepClaims(state, 10.0, LOG, clock=grace_clock)
    awaited = AwaitedFirstReads(hold, manager, state)
    seen, stopped = set(), 0

    def connect():
        peer = rng.choice(PEERS)
        session = server.PeerSession(manager, manager._session_name(peer), Link(peer))  # as _accept_pending
        manager._sessions[session.name] = session
        session._reporter = Reporter(manager.claims, peer)
        session._vtep_reporter = Reporter(manager.vtep_claims, peer)

    def report(session):
        if session.database is None:
            session.database = rng.choice(("vrs", "vtep"))
        if session.database == "vrs":
            chassis = rng.choice(CHASSIS)
            session._reporter.report(VrsSnapshot(switch_key(chassis), session.peer, chassis,
                                                 hostname=str(rng.randrange(3))))
        else:
            name = rng.choice(VTEPS + [""])  # a Physical_Switch without its name yet
            session._vtep_reporter.report(VtepSnapshot(vtep_key(name or session.name), session.peer, name,
                                                       description=str(rng.randrange(3))))

    def step():
        nonlocal stopped
        sessions = list(manager._sessions.values())
        roll = rng.random()
        if roll < 0.22 or not sessions:
            connect()
        elif roll < 0.5:
            session = rng.choice(sessions)
            order = (server.HANDSHAKE, server.QUEUED, server.SYNCING, server.SYNCED)
            if session.state != server.SYNCED:
                session.state = order[order.index(session.state) + 1]
            if session.state == server.SYNCED:  # (as _follow_vrs: SYNCED, then the report, which may pause)
                report(session)
        elif roll < 0.68:
            session = rng.choice(sessions)
            session._finish() if rng.random() < 0.5 else session.close()
        elif roll < 0.8:
            grace_clock.now += rng.choice((1.0, 6.0, 11.0))
            manager.claims.expire()
            manager.vtep_claims.expire()
        elif roll < 0.9:
            clock.now += rng.choice((0.5, 2.0))
        elif roll < 0.97:
            hold.check({s.chassis for s in state.vrs.values()}, {s.name for s in state.vteps.values() if s.name})
        elif stopped < 2:
            stopped += 1
            manager.stop()
        seen.add((awaited(), hold.holding))

    for _ in range(600):
        step()
        for _ in range(2):
            assert awaited() == from_scratch(hold, old_count(manager), state)
            assert manager.first_reads_pending() == old_count(manager)
    assert (True, True) in seen and (False, True) in seen  # both answers asked while holding


def test_a_chassis_that_changes_moves_its_claim_at_once_and_the_answer_with_it():
    """One step takes a switch away and brings another (a session's chassis changes: its claim leaves the old key at
    once, ovsdb/claims.py ``leave(now=True)``): as many switches as before, another answer. A look kept by the number
    of switches only would miss it; State's version does not."""
    clock = Clock()
    store = SimpleNamespace(get_meta=lambda key: {"vrs": ["c0", "c1"]}, set_meta=lambda key, value: None)
    hold = StartupHold(store, 15.0, clock=clock, wall=lambda: 1_800_000_000.0 + clock.now)
    state = base_state()
    manager = server.OvsdbManagerServer("127.0.0.1", 0, state)
    awaited = AwaitedFirstReads(hold, manager, state)
    reporters = []
    for chassis, peer in (("c0", PEERS[0]), ("c6", PEERS[1])):
        session = server.PeerSession(manager, manager._session_name(peer), Link(peer))
        manager._sessions[session.name] = session
        reporters.append(Reporter(manager.claims, peer))
        session.state = server.SYNCED
        reporters[-1].report(VrsSnapshot(switch_key(chassis), peer, chassis))
    waiting = server.PeerSession(manager, manager._session_name(PEERS[2]), Link(PEERS[2]))  # in its handshake
    manager._sessions[waiting.name] = waiting
    assert awaited() and len(state.vrs) == 2  # c1 not back
    reporters[1].report(VrsSnapshot(switch_key("c1"), PEERS[1], "c1"))  # c6's system-id set to c1
    assert sorted(state.vrs) == [switch_key("c0"), switch_key("c1")]
    assert not awaited() and awaited() == from_scratch(hold, old_count(manager), state)


def test_in_the_pauses_of_a_first_report_the_switch_counts_as_reported_as_from_scratch():
    """A big first report pauses (State's pacer) with its switch in ``state.vrs`` before State's version moves (it
    moves when the report is taken whole): the look is made again on the number of switches, as the question from
    scratch sees it in those pauses."""
    from controller.pacer import Pacer

    from .test_compiler import snapshot

    clock = Clock()
    store = SimpleNamespace(get_meta=lambda key: {"vrs": ["s0", "s1"]}, set_meta=lambda key, value: None)
    hold = StartupHold(store, 15.0, clock=clock, wall=lambda: 1_800_000_000.0 + clock.now)
    state = base_state()
    state.vrs_update(snapshot("s1", "10.251.0.2", []))
    awaited = AwaitedFirstReads(hold, SimpleNamespace(first_reads_pending=lambda: 1), state)
    assert awaited()
    answers = []
    state.pacer = Pacer(lambda: answers.append((awaited(), from_scratch(hold, 1, state), "s0" in state.vrs)), 10)
    state.vrs_update(snapshot("s0", "10.251.0.1", [(f"v{i}", i + 1) for i in range(50)]))
    assert (False, False, True) in answers and all(a == b for a, b, _ in answers), answers
    assert not awaited()
