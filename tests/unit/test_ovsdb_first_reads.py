"""ovsdb/firstreads.py: a few OVSDB sessions read their peer's whole database at a time, the others wait for a slot
answering their peer's echoes, and a slot comes back when a read ends, however it ends."""

import functools

import eventlet
import eventlet.event
import pytest

from ovsdb.firstreads import FirstReads
from tests.unit import green

BOUND = 200  # turns of the event loop any wait here may take
# until ``condition``, failing at once with the error of a session (a green thread named) that raised
turns_until = functools.partial(green.turns_until, bound=BOUND)
waited_until = functools.partial(green.turns_until, bound=BOUND, sleep=0.005)  # (timers of a few ms)


def test_at_most_limit_sessions_read_at_once_and_the_others_wait_their_turn():
    reads, reading, most = FirstReads(limit=2, answer_every=0.01), [], [0]
    done = []

    def session(name):
        reads.admit(lambda: None)
        reading.append(name)
        most[0] = max(most[0], len(reading))
        eventlet.sleep(0.005)  # the read: several turns of the loop
        reading.remove(name)
        reads.release()
        done.append(name)

    threads = [eventlet.spawn(session, n) for n in range(6)]
    for thread in threads:
        thread.wait()
    assert most[0] == 2 and sorted(done) == list(range(6))
    assert reads.waited == 4 and reads.status() == {"limit": 2, "waiting": 0, "waited": 4}


def test_a_waiting_session_answers_its_peer_meanwhile_and_a_peer_gone_holds_no_slot():
    reads = FirstReads(limit=1, answer_every=0.001)
    reads.admit(lambda: None)  # the one slot taken
    answered = []

    def answer():
        answered.append(1)
        if len(answered) == 3:
            raise ConnectionError("peer gone")

    with pytest.raises(ConnectionError):
        reads.admit(answer)
    assert len(answered) == 3 and reads.waiting == 0
    reads.release()
    second = eventlet.spawn(reads.admit, lambda: None)
    turns_until(lambda: second.dead, second)
    second.wait()  # admitted: the gone peer took no slot with it


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError, match="limit"):
        FirstReads(limit=0)


def test_a_slot_given_back_goes_to_the_first_waiting_session_not_to_one_asking_just_after():
    """eventlet's semaphore let a session that asked right after a release take the slot the woken waiter was
    woken for (and put a waiter whose timed wait ran out behind the later ones): the order they asked is kept."""
    reads, order = FirstReads(limit=1, answer_every=0.001), []
    reads.admit(lambda: None)  # the one slot taken

    def session(name):
        reads.admit(lambda: None)
        order.append(name)

    first = eventlet.spawn(session, "first")
    turns_until(lambda: reads.waiting == 1, first)
    eventlet.sleep(0.005)  # several of its timed waits run out meanwhile (answering its peer)
    second = eventlet.spawn(session, "second")
    turns_until(lambda: reads.waiting == 2, first, second)

    def release_then_ask():
        reads.release()  # the holder's read ends ...
        session("late")  # ... and a new session asks at once, before the waiting ones have run

    asking = eventlet.spawn(release_then_ask)
    turns_until(lambda: order == ["first"], first, second, asking)
    reads.release()
    turns_until(lambda: order == ["first", "second"], first, second, asking)
    reads.release()
    turns_until(lambda: order == ["first", "second", "late"], first, second, asking)
    first.wait(), second.wait()


def test_a_session_closed_as_its_slot_is_given_passes_the_slot_on():
    reads, order = FirstReads(limit=1, answer_every=1.0), []
    reads.admit(lambda: None)

    def session(name):
        reads.admit(lambda: None)
        order.append(name)

    leaving = eventlet.spawn(session, "leaving")
    turns_until(lambda: reads.waiting == 1, leaving)
    staying = eventlet.spawn(session, "staying")
    turns_until(lambda: reads.waiting == 2, leaving, staying)
    reads.release()  # handed to "leaving", which is closed before it runs
    leaving.kill()
    turns_until(lambda: order == ["staying"], staying)
    assert reads.waiting == 0
    staying.wait()
    reads.release()
    reads.admit(lambda: None)  # the slot came back: nothing leaked


def test_a_session_holding_a_slot_wakes_when_it_is_due_back(monkeypatch):
    """The session loop sleeps up to WAKE_MS (1 s) waiting for its peer: a peer that sends nothing would keep its
    slot up to HOLD_S + 1 s. It wakes when HOLD_S ends instead."""
    from types import SimpleNamespace

    from ovsdb import firstreads, peersession, server

    monkeypatch.setattr(peersession, "time", SimpleNamespace(monotonic=lambda: 100.0))
    session = server.PeerSession.__new__(server.PeerSession)
    session._bridge = session._tunnel = session._vtep = None
    session._reading = 100.0 - firstreads.HOLD_S + 0.25  # taken HOLD_S - 0.25 s ago
    assert session._wake_ms() == 251
    session._reading = None
    assert session._wake_ms() == server.WAKE_MS


def test_a_slot_taken_back_from_a_slow_peer_is_logged(caplog):
    """An operator sees why a session is still syncing while the queued ones go ahead."""
    import logging
    from types import SimpleNamespace

    from ovsdb import server

    reads = FirstReads(limit=1)
    reads.admit(lambda: None)
    session = server.PeerSession.__new__(server.PeerSession)
    session._server, session.peer = SimpleNamespace(first_reads=reads), "192.0.2.7:6640"
    session._log = logging.getLogger("test.ovsdb")
    session._reading = 10.0
    with caplog.at_level(logging.INFO, logger="test.ovsdb"):
        session._first_read_done(unless_before=5.0)  # taken after: kept
        assert session._reading == 10.0 and not caplog.records
        session._first_read_done(unless_before=12.0)
    assert session._reading is None and reads.status()["waiting"] == 0
    assert "192.0.2.7:6640: no full copy" in caplog.text
    reads.admit(lambda: None)  # the slot came back


def test_the_server_names_the_switches_its_slicing_sessions_report_for():
    """What the programming loop asks (controller/app.py ``_programming``): the switch keys of the sessions in
    ``slicing``; a session gone, or not yet reporting a switch, names none."""
    from types import SimpleNamespace

    from controller.discovery import DiscoverySink
    from ovsdb import server

    manager = server.OvsdbManagerServer("127.0.0.1", 0, DiscoverySink())
    for name, key in (("ovsdb:a", "chassis-a"), ("ovsdb:b", None), ("ovsdb:c", "chassis-c")):
        session = server.PeerSession.__new__(server.PeerSession)
        session._reporter = SimpleNamespace(key=key)
        manager._sessions[name] = session
    manager.slicing.update({"ovsdb:a", "ovsdb:b", "ovsdb:gone"})
    assert manager.slicing_switches() == {"chassis-a"}


def test_a_slicing_sessions_turns_are_counted_as_its_progress():
    """The programming loop's sign that slices progress while State does not change (the next slice parsed): each
    turn a session gives the event loop while it is in ``slicing`` counts; others' turns do not."""
    from controller.discovery import DiscoverySink
    from ovsdb import server

    manager = server.OvsdbManagerServer("127.0.0.1", 0, DiscoverySink())
    manager.pause = lambda: None
    session = server.PeerSession.__new__(server.PeerSession)
    session._server, session.name, session._conn = manager, "ovsdb:a", None
    session._give_way()
    assert manager.slicing_turns == 0
    manager.slicing.add("ovsdb:a")
    session._give_way()
    session._give_way()
    assert manager.slicing_turns == 2


def test_the_sync_deadline_counts_elapsed_time_not_the_wall_clock(monkeypatch):
    """The wall clock stepped an hour forward (NTP correcting a clock at boot) while peers wait for their first read:
    with the deadline on time.time() every such session was dropped at once ("no full copy within 120 s"); stepped
    back, a stuck peer was kept an hour longer."""
    import logging
    from types import SimpleNamespace

    from ovsdb import idl, peersession, server
    clock = {"wall": 1_800_000_000.0, "monotonic": 500.0}
    monkeypatch.setattr(peersession, "time", SimpleNamespace(time=lambda: clock["wall"],
                                                        monotonic=lambda: clock["monotonic"]))
    owner = SimpleNamespace(log=logging.getLogger("test"), sink=None, bridge="br-int", claims=None, vtep_claims=None,
                            sync_timeout=120.0, first_read_pending=set(), budget=None)
    session = server.PeerSession(owner, "ovsdb:192.0.2.7:6640", SimpleNamespace(peer="192.0.2.7:6640"))
    clock["wall"] += 3600.0  # stepped forward
    clock["monotonic"] += 1.0
    session._check_sync_deadline()  # one second has passed: no error
    clock["wall"] -= 7200.0  # stepped back
    clock["monotonic"] += 120.0
    with pytest.raises(idl.PeerError, match="within 120 s"):
        session._check_sync_deadline()


class _VrsLink:
    """A VRS peer's link as the session sees it before its replica: serves Open_vSwitch; ``get_schema`` notes the
    ask and waits for ``schema_sent`` (the test then ends the session: no replica is made)."""

    def __init__(self):
        self.peer = "192.0.2.9:6640"
        self.asked, self.echoes = [], 0
        self.schema_sent = eventlet.event.Event()

    def list_dbs(self, timeout_ms):
        return ["Open_vSwitch"]

    def get_schema(self, database, timeout_ms):
        self.asked.append(database)
        self.schema_sent.wait()
        from ovsdb import idl
        raise idl.PeerError("the test ends the session here")

    def answer_echoes(self):
        self.echoes += 1

    def close(self):
        pass


def _vrs_session(reads):
    import logging
    from types import SimpleNamespace

    from ovsdb import server
    owner = SimpleNamespace(log=logging.getLogger("test.ovsdb"), sink=None, bridge="br-int", claims=None,
                            vtep_claims=None, first_reads=reads, handshake_timeout_ms=5000, slicing=set(), tls=None,
                            first_read_pending=set(), budget=None)
    owner._forget = lambda session: None  # the session's last step as it ends (was missing: its thread died there)
    link = _VrsLink()
    return server.PeerSession(owner, "ovsdb:" + link.peer, link), link


def test_a_queued_session_asks_for_its_schema_only_in_its_turn():
    """After a restart 50 VRS reconnect within a second: each schema read (15.6 KB of JSON, ~1 ms of CPU) before the
    queue put 50-70 ms of the loop's CPU into the same few rounds of the hub. A session waiting for its first-read
    slot has asked for nothing but the database list; its schema is read in its turn, and the slot comes back when
    the session ends."""
    from ovsdb import server

    reads = FirstReads(limit=1, answer_every=0.001)
    reads.admit(lambda: None)  # the one slot: another session's read
    session, link = _vrs_session(reads)
    session.start()
    waited_until(lambda: link.echoes >= 2)  # queued, answering its peer
    assert session.state == server.QUEUED and link.asked == []
    reads.release()
    turns_until(lambda: link.asked == ["Open_vSwitch"])
    assert session.state == server.SYNCING and reads.status()["waiting"] == 0
    link.schema_sent.send()
    turns_until(lambda: session.state == server.CLOSED)
    taken = eventlet.spawn(reads.admit, lambda: None)
    turns_until(lambda: taken.dead, taken)
    taken.wait()  # the ended session's slot came back


def test_a_peer_slow_to_send_its_schema_gives_its_slot_back_after_hold_s(monkeypatch):
    """The schema is asked for in the slot: a peer that answered list_dbs and stalls get_schema holds the slot
    ``HOLD_S`` at most (as one slow to send its copy does), not the handshake timeout (5 s here)."""
    from ovsdb import firstreads

    monkeypatch.setattr(firstreads, "HOLD_S", 0.02)
    reads = FirstReads(limit=1, answer_every=0.001)
    session, link = _vrs_session(reads)
    session.start()
    turns_until(lambda: link.asked)
    waiting = eventlet.spawn(reads.admit, lambda: None)  # the next session
    waited_until(lambda: waiting.dead, waiting)
    assert session._reading is None and not link.schema_sent.ready()
    link.schema_sent.send()
    session.close()



def test_a_session_that_cannot_be_built_is_not_counted_as_a_first_read_pending(monkeypatch):
    """Building a session for an accepted connection raises (its reporters: say a bug in one; the accept loop logs
    it): the session is never served, so nothing would end its first read. Its name must not stay among the first
    reads pending (the start-up hold's passes each waited their bound for it: on main the name entered the set before
    the reporters were built), and its connection is closed (it stayed open, its descriptor held: repeated, EMFILE)."""
    import logging
    from types import SimpleNamespace

    from controller.discovery import DiscoverySink
    from ovsdb import peersession, server

    class Broken:
        def __init__(self, *args):
            raise RuntimeError("a reporter that cannot be built")

    closed = []
    links = [SimpleNamespace(peer="192.0.2.5:6640", close=lambda: closed.append(True))]
    monkeypatch.setattr(peersession.vrs, "VrsReporter", Broken)
    manager = server.OvsdbManagerServer("127.0.0.1", 0, DiscoverySink(), log=logging.getLogger("test.ovsdb"))
    manager._listener = SimpleNamespace(accept=lambda max_message: links.pop() if links else None)
    with pytest.raises(RuntimeError, match="cannot be built"):
        manager._accept_pending()  # (what the accept loop runs when a connection is pending)
    assert manager.first_reads_pending() == 0 and manager.first_read_pending == set()
    assert manager._sessions == {} and closed == [True]
