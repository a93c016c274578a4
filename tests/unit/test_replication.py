"""Active/standby replication over real TCP on 127.0.0.1, real SQLite stores and real threads: writes, catch-up,
snapshots, the service hooks, refused writes. The link itself: test_replication_link.py; what the standby accepts
and REST writes during a takeover: test_replication_standby.py.

Every wait is bounded (wait_for); no assertion depends on how fast anything ran.
"""

import json
import os
import subprocess
import sys
import textwrap
import threading

import pytest

from controller.policy import Policy
from controller.service import NotActive
from controller.store import StoreError, StoreFault

from .replication_pair import (BOUND, Node, assert_same, connected, free_port, in_step, pair,  # noqa: F401 - a fixture
                               wait_for)

def test_writes_reach_the_standby_before_they_are_acknowledged(pair):
    active, standby = pair("active"), pair("standby")
    connected(active, standby)
    tenant = active.tenant("acme")
    domain = active.service.create("domain", {"tenant_id": tenant["id"], "name": "prod"})
    subnet = active.service.create("subnet", {"tenant_id": tenant["id"], "domain_id": domain["id"], "name": "web",
                                              "cidr": "10.0.1.0/24", "gateway": "10.0.1.1"})
    active.service.update("subnet", subnet["id"], {"description": "front end"})
    active.tenant("other")
    active.service.delete("tenant", tenant["id"], cascade=True)
    # confirm() returned None, so each write was on the standby before the service call returned
    assert active.shipped == [True] * 6 and active.replicator.lag() == 0
    assert_same(active, standby)
    assert [c.seq for c in standby.store.changes_since(0)] == list(range(1, 9))
    assert standby.state.policy.get("subnet", subnet["id"]) is None


def test_a_late_standby_catches_up_by_changes(pair):
    active = pair("active", solo=True)
    active.link.start()
    for name in ("a", "b", "c"):
        active.tenant(name)
    assert active.shipped == [False] * 3
    standby = pair("standby")
    standby.link.start()
    wait_for(lambda: in_step(active, standby), "the standby to catch up")
    assert_same(active, standby)  # the change log too: it came as changes, not as a snapshot
    active.tenant("d")
    assert active.shipped[-1] is True
    assert_same(active, standby)


def test_a_standby_behind_a_compacted_log_gets_a_snapshot(pair):
    active = pair("active", keep_changes=2, solo=True)
    active.link.start()
    for name in "abcde":
        active.tenant(name)
    standby = pair("standby")
    standby.link.start()
    wait_for(lambda: in_step(active, standby), "the standby to receive a snapshot")
    assert standby.store.changes_since(0) == []  # a restore starts an empty log at the snapshot's seq
    assert_same(active, standby, log=False)
    active.tenant("f")
    assert active.shipped[-1] is True and standby.store.change_at(6) == active.store.change_at(6)
    assert_same(active, standby, log=False)


@pytest.mark.parametrize("rogue_commits", [1, 2, 4], ids=["shorter", "same-length", "longer"])
def test_a_diverged_standby_is_replaced_by_a_snapshot(pair, rogue_commits):
    active, standby = pair("active", solo=True), pair("standby")
    active.tenant("a")
    active.tenant("b")
    for i in range(rogue_commits):  # commits of its own, e.g. while it was active alone
        standby.tenant(f"rogue{i}")
    assert standby.store.history() != active.store.history()
    active.link.start()
    standby.link.start()
    wait_for(lambda: in_step(active, standby), "the diverged standby to be replaced")
    assert_same(active, standby, log=False)
    assert all(not t["name"].startswith("rogue") for t in standby.state.policy.all("tenant"))
    active.tenant("c")
    assert active.shipped[-1] is True
    assert_same(active, standby, log=False)


def test_without_a_standby_a_write_is_refused_at_once_and_changes_nothing(pair):
    active = pair("active", ack_timeout=3600)  # waiting for an acknowledgement would hang the writer
    active.link.start()
    done = threading.Event()
    refused = []

    def write():
        try:
            active.tenant("acme")
        except NotActive as exc:
            refused.append(exc)
        done.set()

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    thread.join(BOUND)
    assert done.is_set() and active.shipped == [False] and refused[0].code == "not_replicated"
    assert "not connected" in refused[0].reason
    assert active.store.last_seq() == 0 and active.store.load_objects() == {}
    assert active.state.policy.count("tenant") == 0 and active.state.last_seq == 0


def test_in_solo_mode_without_a_standby_the_write_stands_at_once(pair):
    active = pair("active", ack_timeout=3600, solo=True)
    active.link.start()
    done = threading.Event()
    thread = threading.Thread(target=lambda: (active.tenant("acme"), done.set()), daemon=True)
    thread.start()
    thread.join(BOUND)
    assert done.is_set() and active.shipped == [False]
    assert active.store.last_seq() == 1 and active.state.policy.count("tenant") == 1
    assert active.replicator.lagging and active.replicator.lag() == 1


def test_a_standby_that_stops_acknowledging_lags_then_catches_up(pair):
    active, standby = pair("active", ack_timeout=0.2, solo=True), pair("standby")
    connected(active, standby)
    standby.link.on_message = lambda msg: None  # alive (heartbeats) but applying nothing
    active.tenant("a")
    assert active.shipped == [False] and active.replicator.lagging and active.replicator.lag() == 1
    assert standby.store.last_seq() == 0
    standby.link.on_message = standby.applier.on_message  # its heartbeats now bring the catch-up
    wait_for(lambda: in_step(active, standby) and not active.replicator.lagging, "the catch-up")
    assert_same(active, standby)


def _report_before_commit(active, position):
    """Make the active's store hear ``position`` (the standby's report, an "hb") right before it commits the next
    write, after confirm() returned: the interleaving a heartbeat may take. Returns what the replicator said then."""
    seen = {}
    commit = active.store.apply_replicated

    def report_then_commit(changes, meta, what="a replicated batch"):
        active.replicator.on_message({"t": "hb", **position})
        seen.update(lagging=active.replicator.lagging, synced=active.replicator.synced)
        return commit(changes, meta, what)

    active.store.apply_replicated = report_then_commit
    return seen


def test_a_report_of_the_old_position_before_an_unconfirmed_solo_write_commits_leaves_the_standby_lagging(pair):
    # the flake of the test above made certain: the standby's heartbeat lands after confirm() gave up, before the commit
    active, standby = pair("active", solo=True), pair("standby")
    connected(active, standby)
    active.tenant("a")
    old = standby.applier.hello()  # at seq 1, confirmed
    held = []
    standby.link.on_message = held.append  # alive, but what the active sends waits (a standby far behind),
    standby.link.heartbeat = dict  # and its heartbeats carry no position: the test delivers its report
    active.replicator.ack_timeout = 0.05  # it will not confirm: no need to wait long
    sent, send = [], active.link.send
    active.link.send = lambda msg: sent.append(msg) or send(msg)
    seen = _report_before_commit(active, old)
    active.tenant("b")  # unconfirmed, committed anyway (solo mode)
    assert active.shipped == [True, False] and standby.store.last_seq() == 1
    assert seen == {"lagging": True, "synced": False}  # the standby lacks seq 2, which is being committed
    assert active.replicator.lagging and not active.replicator.synced
    # sent by confirm(), then at once again at the report: unconfirmed, it no longer counts as on its way
    assert [[c["seq"] for c in m["changes"]] for m in sent if m["t"] == "changes"] == [[2], [2]]
    standby.link.on_message = standby.applier.on_message
    standby.link.heartbeat = standby.applier.hello
    for msg in held:
        standby.applier.on_message(msg)
    wait_for(lambda: in_step(active, standby) and not active.replicator.lagging, "the catch-up")
    assert_same(active, standby)


@pytest.mark.parametrize("solo", [True, False], ids=["solo", "refused"])
def test_without_a_standby_only_a_committed_write_keeps_the_standby_lagging(pair, solo):
    active = pair("active", solo=solo)  # the link is not started: no standby connected
    seen = _report_before_commit(active, {"seq": 0, "history": [0, None]})
    if solo:  # committed: the standby must hold seq 1 before it is in step
        active.tenant("a")
        assert seen == {"lagging": True, "synced": False} and active.replicator.lagging
        ts = active.store.change_at(1).ts
        active.replicator.on_message({"t": "hb", "seq": 1, "history": [1, ts]})
    else:  # refused, nothing committed: the standby at seq 0 holds everything
        with pytest.raises(NotActive):
            active.tenant("a")
        assert seen == {} and active.store.last_seq() == 0 and active.replicator.lagging
        active.replicator.on_message({"t": "hb", "seq": 0, "history": [0, None]})
    assert not active.replicator.lagging and active.replicator.synced


@pytest.mark.parametrize("error", [StoreFault("store.db", "a write", OSError("disk full")), StoreError("a bug")],
                         ids=["store_fault", "other_error"])
def test_an_unconfirmed_solo_write_that_fails_to_commit_is_not_a_position_the_standby_must_hold(pair, error):
    # the write's caller was told it failed: the standby must neither be sent it nor be held lagging until it has it
    active = pair("active", solo=True)  # no standby connected: each write goes unconfirmed
    active.tenant("a")
    commit = active.store.apply_replicated

    def fail(*args, **kw):
        raise error

    active.store.apply_replicated = fail
    with pytest.raises(type(error)):
        active.tenant("b")
    active.store.apply_replicated = commit
    assert active.store.last_seq() == 1 and active.replicator.lagging
    ts = active.store.change_at(1).ts
    active.replicator.on_message({"t": "hb", "seq": 1, "history": [1, ts]})  # the standby holds all we committed
    assert not active.replicator.lagging and active.replicator.synced


def test_an_unconfirmed_solo_write_a_snapshot_took_away_is_neither_awaited_nor_sent_when_active_again(pair):
    # committed alone, then the node stepped down and the peer (never given it) replaced its store with a snapshot
    active, standby = pair("active", solo=True), pair("standby")
    connected(active, standby)
    standby.link.on_message = lambda msg: None  # the write never reaches the standby,
    standby.link.heartbeat = dict  # whose heartbeats carry no position: the test delivers its report
    active.replicator.ack_timeout = 0.05
    active.tenant("a")  # unconfirmed, committed anyway (solo mode)
    assert active.shipped == [False] and active.store.last_seq() == 1
    active.store.restore(standby.store.snapshot())  # as the standby: the peer's history, at seq 0
    active.replicator.reset()  # active again (controller.ha.Pair._become)
    sent, send = [], active.link.send
    active.link.send = lambda msg: sent.append(msg) or send(msg)
    active.replicator.on_message({"t": "hb", **standby.applier.hello()})  # at seq 0: all the store has
    assert active.replicator.synced and not active.replicator.lagging
    assert [m for m in sent if m["t"] in ("changes", "snapshot")] == []  # the discarded write is not sent


def test_a_takeover_while_a_confirmed_write_commits_does_not_take_the_write_from_the_standby(pair):
    # the node stepped down and became active again (controller.ha.Pair._become: reset) while the write the standby
    # had confirmed was being committed, and the standby's report of it arrived before the commit landed
    active, standby = pair("active"), pair("standby")
    connected(active, standby)
    active.tenant("a")
    sent, send = [], active.link.send
    active.link.send = lambda msg: sent.append(msg) or send(msg)
    commit, seen = active.store.apply_replicated, {}

    def takeover_then_commit(changes, meta, what="a replicated batch"):
        active.replicator.reset()
        active.replicator.on_message({"t": "hb", **standby.applier.hello()})  # it holds seq 2, this write
        seen.update(synced=active.replicator.synced)
        return commit(changes, meta, what)

    active.store.apply_replicated = takeover_then_commit
    active.tenant("b")
    active.store.apply_replicated = commit
    assert active.shipped == [True, True] and seen == {"synced": True}
    # the report is on our history: no snapshot that would take the acknowledged write away from the standby
    assert [m["t"] for m in sent if m["t"] in ("changes", "snapshot")] == ["changes"]
    wait_for(lambda: in_step(active, standby), "the pair in step")
    assert_same(active, standby)


# ------------------------------------------------------------------ the service hooks

def test_a_node_that_is_not_writable_refuses_every_write_and_changes_nothing(tmp_path):
    node = Node(tmp_path, "standby", "standby", free_port(), free_port())
    tenant = node.tenant("acme")
    before = (node.store.load_objects(), node.store.last_seq(), dict(node.state.policy.objects["tenant"]))
    reason = "this node is the standby; writes go to the active at 10.250.0.2"
    node.service.writable = lambda: reason
    calls = [lambda: node.tenant("new"),
             lambda: node.service.update("tenant", tenant["id"], {"description": "x"}),
             lambda: node.service.delete("tenant", tenant["id"]),
             lambda: node.service.apply({"tenants": [{"name": "x"}]}, "doc", dry_run=True),
             lambda: node.service.apply({"tenants": [{"name": "x"}]}, "doc")]
    for call in calls:
        with pytest.raises(NotActive) as refused:
            call()
        assert refused.value.reason == reason
    assert (node.store.load_objects(), node.store.last_seq(), dict(node.state.policy.objects["tenant"])) == before
    node.service.writable = lambda: None
    node.tenant("now-allowed")
    assert node.store.last_seq() == 2
    node.close()


def test_replicate_sees_the_numbered_write_before_the_commit_and_a_refusal_changes_nothing(tmp_path):
    node = Node(tmp_path, "solo", "standby", free_port(), free_port())
    node.tenant("before")  # no hook: committed directly
    seen = []

    def replicate(changes, meta):
        seen.append(([(c.seq, c.txn) for c in changes], meta, node.store.last_seq(), node.state.last_seq))
        raise NotActive("the standby did not confirm it", code="not_replicated")

    node.service.replicate = replicate
    before = (node.store.load_objects(), node.store.history(), node.store.replicated_meta())
    with pytest.raises(NotActive):
        node.tenant("acme")
    assert seen == [([(2, 2)], {"counters": node.store.get_meta("counters"), "last_txn": 2}, 1, 1)]
    assert (node.store.load_objects(), node.store.history(), node.store.replicated_meta()) == before
    assert node.state.policy.count("tenant") == 1 and node.state.last_seq == 1
    node.service.replicate = lambda changes, meta: seen.append(changes)
    node.tenant("acme")
    assert [c.to_wire() for c in node.store.changes_since(1)] == [c.to_wire() for c in seen[-1]]
    node.close()


def test_a_standby_at_the_compaction_boundary_catches_up_by_changes(pair):
    active = pair("active", keep_changes=2, solo=True)
    for name in "abc":
        active.tenant(name)
    standby = pair("standby")
    standby.store.restore(active.store.snapshot())  # at seq 3, with an empty log of its own
    standby.state.policy_committed(Policy(standby.store.load_objects()), [])
    for name in "de":  # the active's log now holds 4-5 only; 3 is compacted but its time is kept
        active.tenant(name)
    assert active.store.changes_since(0)[0].seq == 4
    active.link.start()
    standby.link.start()
    wait_for(lambda: in_step(active, standby), "the standby to catch up")
    assert [c.seq for c in standby.store.changes_since(0)] == [4, 5]  # changes, not a snapshot
    assert_same(active, standby, log=False)


EVENTLET_PAIR = textwrap.dedent("""
    import eventlet
    eventlet.monkey_patch()   # as under ryu-manager: green threads, sockets and select
    import json, pathlib, sys
    sys.path.insert(0, {root!r})
    from tests.unit.replication_pair import Node, free_port, in_step, wait_for
    tmp, ports = pathlib.Path({tmp!r}), (free_port(), free_port())
    active = Node(tmp, "active", "active", ports[0], ports[1], solo=True)
    standby = Node(tmp, "standby", "standby", ports[1], ports[0])
    standby.applier.hello()
    standby.link.heartbeat = standby.applier.beat  # built on the link's OS thread: no green lock (the store's)
    active.tenant("before")
    active.link.start()
    standby.link.start()
    wait_for(lambda: in_step(active, standby), "the pair")
    for i in range(20):
        active.tenant(f"t{{i}}")
    print(json.dumps({{"shipped": active.shipped, "same": standby.store.history() == active.store.history(),
                      "tenants": standby.state.policy.count("tenant")}}))
    active.close()
    standby.close()
""")


def test_the_pair_works_under_eventlet_monkey_patching(tmp_path):
    code = EVENTLET_PAIR.format(root=os.getcwd(), tmp=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"shipped": [False] + [True] * 20, "same": True, "tenants": 21}


# ------------------------------------------------------------------ refused writes never resurface

def test_a_write_the_standby_got_but_did_not_confirm_in_time_is_refused_and_removed_from_it(pair):
    active, standby = pair("active", ack_timeout=0.3), pair("standby")
    connected(active, standby)
    kept = active.tenant("kept")
    standby.link.send = lambda msg: False  # it applies the write, but nothing it says arrives any more:
    standby.link.heartbeat = dict  # its heartbeats (sent by the link's own thread) carry no position either
    with pytest.raises(NotActive) as refused:
        active.tenant("refused")
    assert refused.value.code == "not_replicated" and "did not confirm" in refused.value.reason
    assert [t["name"] for t in active.state.policy.all("tenant")] == ["kept"] and active.store.last_seq() == 1
    # it got there (the ambiguous case): applied by the standby's link thread, maybe after the active gave up
    wait_for(lambda: standby.store.last_seq() == 2, "the standby to apply the write it could not confirm")
    del standby.link.send  # speaking again: it reports a position not on our history
    standby.link.heartbeat = standby.applier.hello
    wait_for(lambda: in_step(active, standby), "the standby's copy replaced by a snapshot")
    assert [t["name"] for t in standby.state.policy.all("tenant")] == ["kept"]
    assert_same(active, standby, log=False)
    again = active.tenant("again")  # the same seq number as the refused write, another commit time
    assert active.shipped[-1] is True and standby.state.policy.get("tenant", again["id"])
    assert standby.state.policy.get("tenant", kept["id"])
    assert_same(active, standby, log=False)
