"""Active/standby replication over real TCP on 127.0.0.1, real SQLite stores and real threads.

Every wait is bounded (wait_for); no assertion depends on how fast anything ran.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time

import msgpack
import pytest

from controller.policy import Policy
from controller.replication import Applier, PairLink, Replicator
from controller.service import NotActive, PolicyService
from controller.state import State
from controller.store import Store

from .helpers import make_settings

BOUND = 20.0      # seconds any single wait may take before the test fails
INTERVAL = 0.05   # heartbeat interval of the test links


def wait_for(condition, what, bound=BOUND):
    deadline = time.monotonic() + bound
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """One controller of a pair: store, State and PolicyService on its own data directory, its PairLink,
    and the Replicator (role "active") or the Applier (role "standby") wired to the link."""

    def __init__(self, tmp_path, name, role, port, peer_port, keep_changes=100_000, ack_timeout=BOUND):
        settings = make_settings(tmp_path / name)
        self.store = Store(settings.data_dir, keep_changes=keep_changes)
        self.state = State(Policy(self.store.load_objects()), last_seq=self.store.last_seq())
        self.service = PolicyService(self.store, self.state, settings)
        self.link = PairLink(name, "127.0.0.1", port, "127.0.0.1", peer_port, INTERVAL, dict, self._receive)
        self.replicator = self.applier = None
        self.shipped = []  # what ship() returned for each commit
        if role == "active":
            self.replicator = Replicator(self.store, self.link, ack_timeout=ack_timeout)
            self.service.before_ack = lambda changes, meta: self.shipped.append(self.replicator.ship(changes, meta))
        else:
            self.applier = Applier(self.store, self.state, self.link)
            self.link.heartbeat = self.applier.hello

    def _receive(self, msg):
        (self.replicator or self.applier).on_message(msg)

    def tenant(self, name):
        return self.service.create("tenant", {"name": name})

    def close(self):
        self.link.stop()
        self.store.close()


@pytest.fixture
def pair(tmp_path):
    """make(role, **kw) -> Node; the first active and first standby dial each other. Links start unstarted."""
    ports = {"active": free_port(), "standby": free_port()}
    made = []

    def make(role, **kw):
        other = "standby" if role == "active" else "active"
        node = Node(tmp_path, f"{role}{len(made)}", role, ports[role], ports[other], **kw)
        made.append(node)
        return node

    yield make
    for node in made:
        node.close()


def in_step(active, standby):
    return (active.link.connected_in and active.link.connected_out and active.replicator.synced
            and standby.store.history() == active.store.history())


def assert_same(active, standby, log=True):
    """The standby is a faithful copy: objects, position in history, change log, in-memory policy."""
    assert standby.store.load_objects() == active.store.load_objects()
    assert standby.store.history() == active.store.history()
    assert standby.store.replicated_meta() == active.store.replicated_meta()
    if log:
        assert ([c.to_wire() for c in standby.store.changes_since(0)]
                == [c.to_wire() for c in active.store.changes_since(0)])
    assert standby.state.policy.objects == Policy(active.store.load_objects()).objects
    assert standby.state.last_seq == active.store.last_seq()


def test_writes_reach_the_standby_before_they_are_acknowledged(pair):
    active, standby = pair("active"), pair("standby")
    active.link.start()
    standby.link.start()
    wait_for(lambda: in_step(active, standby), "the pair to connect")
    tenant = active.tenant("acme")
    domain = active.service.create("domain", {"tenant_id": tenant["id"], "name": "prod"})
    subnet = active.service.create("subnet", {"tenant_id": tenant["id"], "domain_id": domain["id"], "name": "web",
                                              "cidr": "10.0.1.0/24", "gateway": "10.0.1.1"})
    active.service.update("subnet", subnet["id"], {"description": "front end"})
    active.tenant("other")
    active.service.delete("tenant", tenant["id"], cascade=True)
    # ship() returned True, so each write was on the standby before the service call returned
    assert active.shipped == [True] * 6 and active.replicator.lag() == 0
    assert_same(active, standby)
    assert [c.seq for c in standby.store.changes_since(0)] == list(range(1, 9))
    assert standby.state.policy.get("subnet", subnet["id"]) is None


def test_a_late_standby_catches_up_by_changes(pair):
    active = pair("active")
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
    active = pair("active", keep_changes=2)
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
    active, standby = pair("active"), pair("standby")
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


def test_without_a_standby_ship_returns_false_at_once_and_the_write_stands(pair):
    active = pair("active", ack_timeout=3600)  # waiting for an acknowledgement would hang the writer
    active.link.start()
    done = threading.Event()
    thread = threading.Thread(target=lambda: (active.tenant("acme"), done.set()), daemon=True)
    thread.start()
    thread.join(BOUND)
    assert done.is_set() and active.shipped == [False]
    assert active.store.last_seq() == 1 and active.state.policy.count("tenant") == 1
    assert active.replicator.lagging and active.replicator.lag() == 1


def test_a_standby_that_stops_acknowledging_lags_then_catches_up(pair):
    active, standby = pair("active", ack_timeout=0.2), pair("standby")
    active.link.start()
    standby.link.start()
    wait_for(lambda: in_step(active, standby), "the pair to connect")
    standby.link.on_message = lambda msg: None  # alive (heartbeats) but applying nothing
    active.tenant("a")
    assert active.shipped == [False] and active.replicator.lagging and active.replicator.lag() == 1
    assert standby.store.last_seq() == 0
    standby.link.on_message = standby.applier.on_message  # its heartbeats now bring the catch-up
    wait_for(lambda: in_step(active, standby) and not active.replicator.lagging, "the catch-up")
    assert_same(active, standby)


# ------------------------------------------------------------------ the link itself

def _closed_by_peer(sock):
    sock.settimeout(BOUND)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return True


@pytest.mark.parametrize("garbage", [
    b"\xc1\xc1 not msgpack at all",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    msgpack.packb([1, 2, 3]),
    msgpack.packb({"t": "changes", "changes": []}),        # no hello first
    msgpack.packb({"t": "hello", "node": "me"}),           # claims to be ourselves
    msgpack.packb({"t": "hello"}),                         # hello without a node
    b"\xdf\xff\xff\xff\xff",                               # a map header far beyond any size limit
], ids=["bad-bytes", "http", "not-a-map", "no-hello", "own-node", "anonymous", "huge-header"])
def test_garbage_closes_that_connection_and_the_link_keeps_working(tmp_path, garbage):
    received = []
    me = PairLink("me", "127.0.0.1", 0, "127.0.0.1", free_port(), INTERVAL, dict, received.append)
    me.start()
    try:
        with socket.create_connection(("127.0.0.1", me.port), timeout=BOUND) as rogue:
            rogue.sendall(garbage)
            assert _closed_by_peer(rogue)
        assert received == [] and not me.connected_in
        peer = PairLink("peer", "127.0.0.1", 0, "127.0.0.1", me.port, INTERVAL, lambda: {"x": 1}, print)
        peer.start()
        try:
            wait_for(lambda: any(m.get("t") == "hb" for m in received), "a heartbeat from the real peer")
            assert me.connected_in and received[0] == {"t": "hello", "node": "peer", "x": 1}
            assert me.last_heard is not None
        finally:
            peer.stop()
    finally:
        me.stop()


def test_a_handler_exception_is_logged_and_the_link_goes_on(tmp_path):
    received = []

    def handler(msg):
        received.append(msg)
        raise RuntimeError("handler bug")

    me = PairLink("me", "127.0.0.1", 0, "127.0.0.1", free_port(), INTERVAL, dict, handler)
    me.start()
    peer = PairLink("peer", "127.0.0.1", 0, "127.0.0.1", me.port, INTERVAL, dict, print)
    peer.start()
    try:
        wait_for(lambda: len(received) >= 3, "several messages despite the failing handler")
        assert me.connected_in and peer.connected_out
    finally:
        peer.stop()
        me.stop()


def test_dialling_a_port_nobody_listens_on_reports_refused(tmp_path):
    link = PairLink("me", "127.0.0.1", 0, "127.0.0.1", free_port(), INTERVAL, dict, print)
    link.start()
    try:
        wait_for(link.refused, "a refused dial")
        assert link.last_dial_error == "connection refused" and not link.connected_out
        assert link.send({"t": "x"}) is False
    finally:
        link.stop()


def test_the_peer_coming_up_ends_refused(tmp_path):
    port = free_port()
    me = PairLink("me", "127.0.0.1", 0, "127.0.0.1", port, INTERVAL, dict, print)
    me.start()
    peer = PairLink("peer", "127.0.0.1", port, "127.0.0.1", me.port, INTERVAL, dict, print)
    try:
        wait_for(me.refused, "a refused dial")
        peer.start()
        wait_for(lambda: me.connected_out and me.connected_in, "both directions")
        assert not me.refused() and me.last_dial_error is None
        assert me.send({"t": "anything"}) is True
    finally:
        peer.stop()
        me.stop()


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


def test_before_ack_sees_the_commit_and_its_failure_undoes_nothing(tmp_path):
    node = Node(tmp_path, "solo", "standby", free_port(), free_port())
    seen = []

    def before_ack(changes, meta):
        seen.append(([c.seq for c in changes], meta, node.state.last_seq))
        raise RuntimeError("replication bug")

    node.service.before_ack = before_ack
    node.tenant("acme")
    assert seen == [([1], {"counters": node.store.get_meta("counters"), "last_txn": 1}, 1)]
    assert node.store.last_seq() == 1 and node.state.policy.count("tenant") == 1
    node.close()


def test_a_standby_at_the_compaction_boundary_catches_up_by_changes(pair):
    active = pair("active", keep_changes=2)
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
    from tests.unit.test_replication import Node, free_port, in_step, wait_for
    tmp, ports = pathlib.Path({tmp!r}), (free_port(), free_port())
    active = Node(tmp, "active", "active", ports[0], ports[1])
    standby = Node(tmp, "standby", "standby", ports[1], ports[0])
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
