"""ovsdb/firstreads.py: a few OVSDB sessions read their peer's whole database at a time, the others wait for a slot
answering their peer's echoes, and a slot comes back when a read ends, however it ends."""

import eventlet
import pytest

from ovsdb.firstreads import FirstReads

BOUND = 200  # turns of the event loop any wait here may take


def turns_until(condition) -> None:
    for _ in range(BOUND):
        if condition():
            return
        eventlet.sleep(0)
    raise AssertionError("not within %d turns" % BOUND)


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
    turns_until(lambda: second.dead)
    second.wait()  # admitted: the gone peer took no slot with it


def test_a_limit_below_one_is_refused():
    with pytest.raises(ValueError, match="limit"):
        FirstReads(limit=0)
