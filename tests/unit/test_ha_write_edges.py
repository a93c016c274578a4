"""A write at the edges of the active's term (controller.ha.Pair.replicate, controller.replication.Replicator): the
node steps down while the write waits for the standby, or steps down and takes over again while the write commits.
A real store, State and PolicyService wired as controller/app.py wires them; the HA link is a stand-in for a
connected standby, driven from the test's own thread (what the active sends triggers the role change, so it happens
inside the wait, every run). Docs: docs/ha.md "Writes"."""

import sqlite3
import time

import pytest

from controller.core import build_core
from controller.ha import STARTUP_DEAD_INTERVALS, Pair
from controller.service import NotActive
from tests.unit.test_ha_rules import DEAD, ha_settings, hear


class Wire:
    """The replicator's side of an HA link to a connected standby: records what is sent and hands each message
    to ``on_send`` (the test's hook); ``connected_out`` goes False when the test cuts it."""

    def __init__(self):
        self.connected_out = self.connected_in = True
        self.out_epoch = 1
        self.sent = []
        self.on_send = lambda msg: None

    def send(self, msg):
        if not self.connected_out:
            return False
        self.sent.append(msg)
        self.on_send(msg)
        return True

    def kinds(self):
        return [m["t"] for m in self.sent]


@pytest.fixture
def ha(tmp_path):
    """An active Pair (alone, then given the Wire as its standby link) with its PolicyService wired as in app.py."""
    settings = ha_settings(tmp_path)
    store, state, service = build_core(settings)
    pair = Pair(settings.ha, store, state, lambda role, gen: None)
    service.replicate = pair.replicate
    service.unreplicated = pair.replicator.forget
    service.committed = pair.replicator.committed
    service.writable = pair.writable
    pair._decide(pair.started + STARTUP_DEAD_INTERVALS * DEAD)
    assert pair.role == "active"
    pair.wire = pair.replicator.link = Wire()
    pair.replicator.on_message({"t": "hello", "seq": 0, "history": [0, None]})  # the standby: an empty store
    pair.service = service
    yield pair
    store.close()


def ack(pair, change):
    """The standby's acknowledgement of a write up to ``change`` (it holds it)."""
    pair.replicator.on_message({"t": "ack", "seq": change["seq"], "history": [change["seq"], change["ts"]]})


def confirming(pair, msg):
    """A standby that holds every write it is sent."""
    if msg["t"] == "changes":
        ack(pair, msg["changes"][-1])


def position(pair) -> tuple:
    """What a write may not leave behind when it is refused: the store, its history and State."""
    return (pair.store.load_objects(), pair.store.history(), pair.store.replicated_meta(),
            pair.state.policy.objects, pair.state.last_seq)


LATER = 3600.0  # a peer heard this far ahead stays alive however slowly the test runs (no dead interval elapses)
STEP_DOWNS = {  # how the node stops being the active while a write waits; each leaves writable() saying why
    "stepped_down": lambda pair: pair._become("standby", "the peer is active"),
    "demoted_by_a_switch": lambda pair: pair.switch_reported(pair.generation + 1, "slave"),
    "superseded_by_the_peer": lambda pair: hear(pair, time.monotonic() + LATER, "active",
                                                generation=pair.generation + 1),
}


@pytest.mark.parametrize("solo", [True, False], ids=["solo", "not_solo"])
@pytest.mark.parametrize("step_down", STEP_DOWNS.values(), ids=STEP_DOWNS.keys())
def test_an_unconfirmed_write_whose_node_steps_down_while_it_waits_is_refused_and_leaves_no_trace(ha, step_down,
                                                                                                  solo):
    ha.wire.on_send = lambda msg: confirming(ha, msg)
    kept = ha.service.create("tenant", {"name": "kept"})  # confirmed: the standby holds seq 1
    ha.set_solo(solo, "a test")
    before = position(ha)
    out = []

    def standby_gets_it_then_the_node_steps_down(msg):
        if msg["t"] == "changes":  # on the wire: the standby may apply it, but its confirmation never arrives
            out.extend(msg["changes"])
            step_down(ha)
            ha.wire.connected_out = False

    ha.wire.on_send = standby_gets_it_then_the_node_steps_down
    with pytest.raises(NotActive) as refused:
        ha.service.create("tenant", {"name": "refused"})
    assert refused.value.code == "not_active"  # retry at the active, not "put this node in solo mode"
    reason = refused.value.reason
    assert "stepped down while" in reason and "not committed" in reason and ha.writable() in reason
    assert ha.status()["refused_writes"] == 1  # refused for want of the standby's confirmation (docs/ha.md)
    assert position(ha) == before  # nothing in the store, its history, meta or State
    # no trace in the replicator: a standby that applied the refused write is not on our history (a snapshot
    # removes it), and a standby at our last commit holds everything: nothing is awaited
    ha.wire.connected_out = True
    ha.wire.sent.clear()
    ha.wire.on_send = lambda msg: None
    ha.replicator.on_message({"t": "hb", "seq": out[0]["seq"], "history": [out[0]["seq"], out[0]["ts"]]})
    assert not ha.replicator.synced and ha.wire.kinds() == ["snapshot"]
    ha.replicator.on_message({"t": "ack", "seq": 1, "history": list(ha.store.history())})
    assert ha.replicator.synced
    # the next write, once active again, waits for the standby and stands
    hear(ha, 0.0, "standby")
    ha._become("active", "a test: active again")
    ha.wire.on_send = lambda msg: confirming(ha, msg)
    again = ha.service.create("tenant", {"name": "again"})
    assert ha.wire.kinds()[-1] == "changes" and ha.replicator.synced
    assert [t["id"] for t in ha.state.policy.all("tenant")] == [kept["id"], again["id"]]
    assert ha.store.last_seq() == 2 == ha.state.last_seq


@pytest.mark.parametrize("step_down", STEP_DOWNS.values(), ids=STEP_DOWNS.keys())
def test_a_write_the_standby_confirmed_while_its_node_stepped_down_is_acknowledged_and_committed(ha, step_down):
    """The standby holds it durably (it confirms only once its commit returned): refusing would tell the client
    that nothing changed while the node that takes over has it (a retry would then apply it twice)."""

    def confirmed_as_the_node_steps_down(msg):
        if msg["t"] == "changes":
            step_down(ha)
            ack(ha, msg["changes"][-1])

    ha.wire.on_send = confirmed_as_the_node_steps_down
    tenant = ha.service.create("tenant", {"name": "acme"})
    assert ha.writable()  # it did step down
    change = ha.wire.sent[-1]["changes"][-1]
    assert ha.store.history() == (1, change["ts"]) and ha.state.policy.get("tenant", tenant["id"])


def test_a_takeover_while_a_solo_write_commits_keeps_it_a_position_the_standby_must_hold(ha):
    """The node steps down and takes over again (Pair._become: Replicator.reset) while an unconfirmed solo-mode
    write is being committed: the write lands in our store, so the standby is in step only once it holds it."""
    ha.wire.on_send = lambda msg: confirming(ha, msg)
    ha.service.create("tenant", {"name": "kept"})  # the standby holds seq 1
    held = {"seq": 1, "history": list(ha.store.history())}
    ha.set_solo(True, "a test")
    ha.wire.connected_out = False  # the standby is gone: the next write stands alone
    commit, seen = ha.store.apply_replicated, {}

    def takeover_then_commit(changes, meta, what="a replicated batch"):
        ha._become("standby", "this node did not run for 2.0 s (a test)")
        ha._become("active", "the peer is silent (a test)")
        ha.replicator.on_message({"t": "hb", **held})  # the standby reports what it holds: seq 1, not this write
        seen.update(lagging=ha.replicator.lagging, synced=ha.replicator.synced)
        return commit(changes, meta, what)

    ha.store.apply_replicated = takeover_then_commit
    ha.service.create("tenant", {"name": "alone"})
    ha.store.apply_replicated = commit
    assert ha.store.last_seq() == 2
    assert seen == {"lagging": True, "synced": False}  # seq 2 is being committed: the standby lacks it
    ha.replicator.on_message({"t": "hb", **held})
    assert ha.replicator.lagging and not ha.replicator.synced
    ha.replicator.on_message({"t": "hb", "seq": 2, "history": list(ha.store.history())})
    assert ha.replicator.synced and not ha.replicator.lagging


def test_a_write_confirmed_while_its_node_stepped_down_and_took_over_again_stands(ha):
    """The role changes twice inside the wait (Replicator.reset on taking over): the write is still this node's
    to confirm, and the standby's acknowledgement of it is on our history (no snapshot takes it away)."""

    def confirmed_across_a_takeover(msg):
        if msg["t"] == "changes":
            ha._become("standby", "this node did not run for 2.0 s (a test)")
            ha._become("active", "the peer is silent (a test)")
            ack(ha, msg["changes"][-1])

    ha.wire.on_send = confirmed_across_a_takeover
    tenant = ha.service.create("tenant", {"name": "acme"})
    assert ha.wire.kinds() == ["changes"] and ha.writable() is None and ha.replicator.synced
    assert ha.store.history() == (1, ha.wire.sent[-1]["changes"][-1]["ts"])
    assert ha.state.policy.get("tenant", tenant["id"])


def test_a_write_whose_wait_for_the_standby_fails_leaves_nothing_to_send_or_await(ha):
    """The wait itself raises (here the store cannot read its replicated meta for the send: a failing disk): the
    write's caller gets the error and nothing is committed, so the replicator must neither wait for the standby to
    hold it nor send it on later, in this term or after a takeover (a standby given it would keep a write that no
    node acknowledged)."""
    ha.wire.on_send = lambda msg: confirming(ha, msg)
    ha.service.create("tenant", {"name": "kept"})  # the standby holds seq 1
    before, read = position(ha), ha.store.replicated_meta

    def failing_read():
        raise sqlite3.OperationalError("disk I/O error")

    ha.store.replicated_meta = failing_read
    with pytest.raises(sqlite3.OperationalError):
        ha.service.create("tenant", {"name": "failed"})
    ha.store.replicated_meta = read
    assert position(ha) == before
    ha.wire.sent.clear()
    ha.wire.on_send = lambda msg: None
    held = {"t": "hb", "seq": 1, "history": list(ha.store.history())}  # the standby holds all we hold
    ha.replicator.on_message(held)
    assert ha.replicator.synced and ha.wire.kinds() == []
    ha._become("standby", "this node did not run for 2.0 s (a test)")
    ha._become("active", "the peer is silent (a test)")
    ha.replicator.on_message(held)
    assert ha.replicator.synced and ha.wire.kinds() == []


def test_a_refusal_of_a_write_still_waiting_when_its_node_took_over_again_still_refuses_it_at_once(ha):
    """The standby refused the write, and the node stepped down and took over again before the write's wait saw the
    refusal (Replicator.reset): the write is still this node's, so is the refusal: refused with the standby's
    reason, not after the whole wait as a write the standby never answered."""

    def refused_across_a_takeover(msg):
        if msg["t"] == "changes":
            change = msg["changes"][-1]
            ha.replicator.on_message({"t": "refused", "seq": change["seq"], "ts": change["ts"],
                                      "reason": "tenant 'x': name: a test's refusal"})
            ha._become("standby", "this node did not run for 2.0 s (a test)")
            ha._become("active", "the peer is silent (a test)")

    ha.wire.on_send = refused_across_a_takeover
    with pytest.raises(NotActive) as refused:
        ha.service.create("tenant", {"name": "x"})
    assert refused.value.code == "not_replicated"
    assert "the standby refused it: tenant 'x': name: a test's refusal" in refused.value.reason
    assert ha.store.history() == (0, None) and ha.state.policy.count("tenant") == 0  # nothing committed
