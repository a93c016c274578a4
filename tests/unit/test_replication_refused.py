"""A catch-up the standby's store refused (its disk full) is sent again at a heartbeat REFUSED_HOLDOFF later, not
only once the whole ``resend_after`` (the ack timeout) has passed: a standby whose disk is freed meanwhile catches up
at once (tests/integration/test_store_full.py failed when the heartbeat's catch-up came before the disk was freed).
Also when the refused change is the write still pending (its confirm() returned, its commit not ended yet)."""

import logging
from types import SimpleNamespace

import pytest

import controller.replication as replication
from controller import loglimit
from controller.replication import REFUSED_HOLDOFF, STORE_REFUSED
from controller.store import StoreFault

from .replication_pair import Node, free_port


class Link:
    """The active's side of the HA link: connected, records what is sent."""

    connected_out = connected_in = True
    out_epoch = 1

    def __init__(self):
        self.sent = []

    def send(self, msg):
        self.sent.append(msg)
        return True


@pytest.mark.parametrize("pending", [False, True], ids=["committed", "still-pending"])
def test_a_catch_up_the_standbys_store_refused_is_sent_again_after_the_holdoff(tmp_path, monkeypatch, pending):
    clock = [1000.0]
    monkeypatch.setattr(replication.time, "monotonic", lambda: clock[0])
    node = Node(tmp_path, "active", "active", free_port(), free_port())
    node.service.replicate = None  # its writes commit without a standby
    node.tenant("both")
    rep = node.replicator
    rep.link = link = Link()
    assert rep.resend_after > 10 * REFUSED_HOLDOFF
    rep.on_message({"t": "hello", **_position(node, 1)})  # the standby holds seq 1
    node.tenant("solo")  # seq 2: the standby lacks it
    if pending:  # as after a solo-mode confirm() the standby refused, before the commit ended
        rep._pending = node.store.changes_since(1)
    rep.on_message({"t": "hb", **_position(node, 1)})
    assert _sent_changes(link) == [[2]]
    [change] = node.store.changes_since(1)
    rep.on_message({"t": "refused", "seq": 2, "ts": change.ts, "reason": f"{STORE_REFUSED}: the disk is full"})
    rep.on_message({"t": "hb", **_position(node, 1)})
    assert _sent_changes(link) == [[2]]  # not at once
    clock[0] += REFUSED_HOLDOFF + 0.01
    rep.on_message({"t": "hb", **_position(node, 1)})
    assert _sent_changes(link) == [[2], [2]]  # at the first heartbeat after the holdoff, not after resend_after
    node.close()


def test_a_catch_up_refused_as_invalid_waits_the_whole_resend_after(tmp_path, monkeypatch):
    """Data the standby refuses as invalid is refused again: not sent more often than before."""
    clock = [1000.0]
    monkeypatch.setattr(replication.time, "monotonic", lambda: clock[0])
    node = Node(tmp_path, "active", "active", free_port(), free_port())
    node.service.replicate = None
    node.tenant("both")
    rep = node.replicator
    rep.link = link = Link()
    rep.on_message({"t": "hello", **_position(node, 1)})
    node.tenant("solo")
    rep.on_message({"t": "hb", **_position(node, 1)})
    [change] = node.store.changes_since(1)
    rep.on_message({"t": "refused", "seq": 2, "ts": change.ts, "reason": "tenant 'x': name: bad"})
    clock[0] += REFUSED_HOLDOFF + 0.01
    rep.on_message({"t": "hb", **_position(node, 1)})
    assert _sent_changes(link) == [[2]]
    node.close()


def _position(node, seq):
    change = node.store.change_at(seq)
    return {"seq": seq, "history": [seq, change.ts]}


def _sent_changes(link):
    return [[c["seq"] for c in msg["changes"]] for msg in link.sent if msg["t"] == "changes"]


def test_a_standby_whose_store_keeps_refusing_the_catch_up_warns_once_per_log_interval(tmp_path, monkeypatch, caplog):
    """The active sends a refused catch-up again every REFUSED_HOLDOFF (0.5 s) while the standby's disk stays full:
    each is refused and told to the active, but the standby's log gets one warning per LOG_EVERY (the store's own
    warning is limited so already), with a count of those left out, not two lines a second for the whole outage."""
    node = Node(tmp_path, "standby", "standby", free_port(), free_port())
    node.applier.link = link = Link()

    def full(changes, meta):
        raise StoreFault(node.store.path, "a replicated batch", OSError(28, "No space left on device"))

    monkeypatch.setattr(node.store, "apply_replicated", full)
    body = {"id": "t1", "source": None, "name": "acme"}
    wire = {"seq": 1, "txn": 1, "ts": 1001.0, "kind": "tenant", "id": "t1", "op": "put", "body": body}
    with caplog.at_level(logging.WARNING, logger="canopy.ha"):
        for _ in range(5):
            node.applier.on_message({"t": "changes", "changes": [wire], "meta": {}})
    assert node.applier.store_refusals == 5
    assert [m["reason"].startswith(STORE_REFUSED) for m in link.sent if m["t"] == "refused"] == [True] * 5
    warned = [r for r in caplog.records if r.getMessage().startswith("could not store replicated changes")]
    assert len(warned) == 1, [r.getMessage() for r in warned]
    node.close()


def test_the_batches_after_one_the_store_refused_warn_once_per_log_interval(tmp_path, caplog):
    """A catch-up of more than BATCH changes to a standby whose disk is full: every batch after the refused first is a
    gap (a resync asked, limited by RESYNC_HOLDOFF), sent again at every round: one warning per LOG_EVERY."""
    node = Node(tmp_path, "standby", "standby", free_port(), free_port())
    node.applier.link = link = Link()
    body = {"id": "t2", "source": None, "name": "acme"}
    wire = {"seq": 2, "txn": 2, "ts": 1002.0, "kind": "tenant", "id": "t2", "op": "put", "body": body}  # seq 1 lacks
    with caplog.at_level(logging.WARNING, logger="canopy.ha"):
        for _ in range(5):
            node.applier.on_message({"t": "changes", "changes": [wire], "meta": {}})
    assert node.store.last_seq() == 0 and [m["t"] for m in link.sent] == ["resync"]  # (RESYNC_HOLDOFF)
    warned = [r for r in caplog.records if r.getMessage().startswith("cannot apply replicated changes")]
    assert len(warned) == 1, [r.getMessage() for r in warned]
    node.close()


def test_a_standby_whose_store_keeps_refusing_the_snapshot_warns_once_per_log_interval(tmp_path, monkeypatch, caplog):
    """The active sends its snapshot again while the standby's disk stays full (its heartbeat says so, paced): each
    is refused, nothing applied, but the log gets one warning per LOG_EVERY, with a count of those left out."""
    active = Node(tmp_path / "a", "active", "active", free_port(), free_port())
    active.service.replicate = None
    active.tenant("acme")
    node = Node(tmp_path / "s", "standby", "standby", free_port(), free_port())
    node.applier.link = Link()

    def full(snapshot):
        raise StoreFault(node.store.path, "a snapshot", OSError(28, "No space left on device"))

    monkeypatch.setattr(node.store, "restore", full)
    clock = [1000.0]  # the limiter's clock: the flood within one LOG_EVERY however slow the machine, then one past it
    monkeypatch.setattr(loglimit, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(loglimit, "_last_logged", {})
    with caplog.at_level(logging.WARNING, logger="canopy.ha"):
        for _ in range(20):
            node.applier.on_message({"t": "snapshot", "snapshot": active.store.snapshot()})
        clock[0] += loglimit.LOG_EVERY
        node.applier.on_message({"t": "snapshot", "snapshot": active.store.snapshot()})
    assert node.applier.store_refusals == 21 and node.store.last_seq() == 0 and node.state.policy.count("tenant") == 0
    warned = [r.getMessage() for r in caplog.records if r.getMessage().startswith("could not store the active's")]
    assert len(warned) == 2 and "(19 more like it not logged)" in warned[1], warned
    active.close()
    node.close()
