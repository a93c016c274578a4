"""A standby receiving a big replicated batch (issue 15: 10,000 vports in one apply) keeps hearing its peer:
the batch is applied on the applier's own thread while the link's receiving thread goes on delivering
heartbeats, every frame from the peer counts as a sign of life, the standby does not take over while it holds
a batch, and the active gets its acknowledgement. Real store and State, the HA link not started (messages are
delivered as the link delivers them: ``_on_frame`` as its receiving thread does, then ``_on_message``); every wait
is bounded, nothing depends on how fast it ran."""

import threading

import pytest

from controller.core import build_core
from controller.ha import Pair
from controller.pacer import Pacer
from controller import replication
from controller.replication import ACK_PER_CHANGE, Replicator

from tests.unit.replication_pair import wait_for
from tests.unit.test_ha_rules import DEAD, ha_settings

BOUND = 20.0
BATCH = 60
HEARTBEATS = 5


@pytest.fixture
def standby(tmp_path):
    settings = ha_settings(tmp_path)
    store, state, _ = build_core(settings)
    pair = Pair(settings.ha, store, state, lambda role, gen: None)
    pair.sent = []
    pair.link.send = lambda msg: pair.sent.append(msg) or True  # what it tells the active
    pair.role = "standby"
    pair.applier.start()
    yield pair
    pair.applier.stop()
    store.close()


def batch(count):
    changes = [{"seq": i, "txn": 1, "ts": 1000.0, "kind": "tenant", "id": f"t{i}", "op": "put",
                "body": {"id": f"t{i}", "source": None, "name": f"tenant-{i}"}} for i in range(1, count + 1)]
    return {"t": "changes", "changes": changes, "meta": {}}


def heartbeat(n):
    return {"t": "hb", "node": "a", "role": "active", "generation": 1, "priority": 100, "seq": 0, "n": n}


def deliver(pair, msg):
    """As the link does: noted on the receiving thread, then handled on the delivering one."""
    pair._on_frame(msg)
    pair._on_message(msg)


def gate_store(pair):
    """Hold the standby's store write until the returned event is set; returns (entered, release)."""
    entered, release = threading.Event(), threading.Event()
    apply = pair.store.apply_replicated

    def held(*args, **kwargs):
        entered.set()
        release.wait(2 * BOUND)  # longer than any wait_for: held until released
        return apply(*args, **kwargs)

    pair.store.apply_replicated = held
    return entered, release


def test_heartbeats_behind_a_big_batch_are_heard_and_the_standby_does_not_take_over(standby):
    heard = []
    hear = standby._on_frame
    standby._on_frame = lambda msg: (hear(msg), msg["t"] == "hb" and heard.append(msg.get("n")))
    entered, release = gate_store(standby)
    receiver = threading.Thread(target=lambda: [deliver(standby, m)
                                                for m in [batch(BATCH)] + [heartbeat(n) for n in range(HEARTBEATS)]])
    receiver.start()
    try:
        # the receiving thread delivers every heartbeat while the batch is still being applied
        wait_for(lambda: len(heard) == HEARTBEATS, "the heartbeats queued behind the batch to be heard")
        # the applier's thread may still be checking the batch (a loaded machine): wait until it holds the store
        wait_for(entered.is_set, "the batch to reach the store")
        assert heard == list(range(HEARTBEATS)) and standby.applier.busy
        assert standby.sent == []  # not acknowledged yet: it is not in the store
        # even with the peer silent from here on, a standby holding a batch decides nothing
        standby._decide(standby.peer.heard_at + 10 * DEAD)
        assert standby.role == "standby"
    finally:
        release.set()
        receiver.join(BOUND)
    wait_for(lambda: standby.sent, "the acknowledgement")
    assert standby.sent == [{"t": "ack", "seq": BATCH, "history": [BATCH, 1000.0]}]
    assert standby.state.policy.count("tenant") == BATCH and not standby.applier.busy
    standby._decide(standby.peer.heard_at + DEAD / 2)  # heard within the dead interval: alive, still the standby
    assert standby.role == "standby"


def test_any_frame_from_the_peer_counts_as_a_sign_of_life(standby):
    assert standby.peer.heard_at is None
    deliver(standby, batch(1))
    assert standby.peer.heard_at is not None and standby.peer.heard_wall is not None
    wait_for(lambda: standby.sent, "the acknowledgement")


def test_checking_a_batch_gives_the_event_loop_a_turn_per_so_many_changes(standby):
    paused = []
    standby.applier.pacer = Pacer(lambda: paused.append(standby.peer.heard_at), 10)
    standby._on_message(batch(BATCH))
    wait_for(lambda: standby.sent, "the acknowledgement")
    assert len(paused) >= BATCH // 10 and standby.state.policy.count("tenant") == BATCH


def test_a_node_that_became_active_drops_queued_batches(standby):
    entered, release = gate_store(standby)
    standby._on_message(batch(1))
    wait_for(entered.is_set, "the first batch to reach the store")
    second = batch(2)
    second["changes"] = second["changes"][1:]
    standby._on_message(second)
    standby.role = "active"  # (as after a takeover by hand: the pair itself waits while a batch is in hand)
    release.set()
    wait_for(lambda: not standby.applier.busy, "the queue to drain")
    assert standby.store.last_seq() == 1 and standby.state.policy.count("tenant") == 1


def test_the_acknowledgement_timeout_grows_with_the_write(standby):
    replicator = Replicator(standby.store, standby.link, ack_timeout=2.0)
    assert replicator.timeout_for(1) == pytest.approx(2.0 + ACK_PER_CHANGE)
    assert replicator.timeout_for(10_000) == pytest.approx(2.0 + 10_000 * ACK_PER_CHANGE)
    assert replicator.timeout_for(10_000) > 2 * replicator.ack_timeout


def test_decoding_a_batch_gives_the_event_loop_a_turn_per_so_many_changes(standby, monkeypatch):
    """The batch's bodies are decoded (a JSON round trip each) with pauses too, before they are checked."""
    paused, at_check = [], []
    standby.applier.pacer = Pacer(lambda: paused.append(1), 10)
    checked = replication.checked_changes
    monkeypatch.setattr(replication, "checked_changes", lambda *a: (at_check.append(len(paused)), checked(*a))[1])
    standby._on_message(batch(BATCH))
    wait_for(lambda: standby.sent, "the acknowledgement")
    assert at_check == [BATCH // 10] and standby.state.policy.count("tenant") == BATCH
