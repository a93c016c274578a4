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

from controller.pairlink import PairLink
from controller.policy import Policy
from controller.replication import Applier, Replicator
from controller.service import NotActive, PolicyService
from controller.state import State
from controller.store import Store

from .helpers import make_settings

BOUND = 20.0      # seconds any single wait may take before the test fails
INTERVAL = 0.05   # heartbeat interval of the test links
SECRET = "unit-test-pair-secret"


def link(name, port, peer_port, heartbeat=dict, on_message=print, secret=SECRET):
    return PairLink(name, "127.0.0.1", port, "127.0.0.1", peer_port, INTERVAL, heartbeat, on_message, secret=secret)


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
    and the Replicator (role "active") or the Applier (role "standby") wired to the link. An active in
    ``solo`` mode commits writes the standby did not confirm; otherwise they are refused (as controller.ha)."""

    def __init__(self, tmp_path, name, role, port, peer_port, keep_changes=100_000, ack_timeout=BOUND, solo=False):
        settings = make_settings(tmp_path / name)
        self.store = Store(settings.data_dir, keep_changes=keep_changes)
        self.state = State(Policy(self.store.load_objects()), last_seq=self.store.last_seq())
        self.service = PolicyService(self.store, self.state, settings)
        self.link = link(name, port, peer_port, on_message=self._receive)
        self.replicator = self.applier = None
        self.solo = solo
        self.shipped = []  # for each write: whether the standby confirmed it
        if role == "active":
            self.replicator = Replicator(self.store, self.link, ack_timeout=ack_timeout)
            self.service.replicate = self._replicate
        else:
            self.applier = Applier(self.store, self.state, self.link)
            self.link.heartbeat = self.applier.hello

    def _receive(self, msg):
        (self.replicator or self.applier).on_message(msg)

    def _replicate(self, changes, meta):
        why = self.replicator.confirm(changes, meta)
        self.shipped.append(why is None)
        if why is not None and not self.solo:
            raise NotActive(why, code="not_replicated")

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
    msgpack.packb({"t": "changes", "changes": []}),        # no handshake first
    msgpack.packb({"t": "hello", "node": "peer"}),         # the old unauthenticated hello
    msgpack.packb({"t": "hi", "node": "me", "nonce": b"n" * 32}),  # claims to be ourselves
    msgpack.packb({"t": "hi", "nonce": b"n" * 32}),        # hi without a node
    msgpack.packb({"t": "hi", "node": "peer", "nonce": b"n" * 32}) + msgpack.packb({"t": "auth", "proof": b"x" * 32}),
    b"\xdf\xff\xff\xff\xff",                               # a map header far beyond any size limit
], ids=["bad-bytes", "http", "not-a-map", "no-handshake", "old-hello", "own-node", "anonymous", "bad-proof",
        "huge-header"])
def test_garbage_closes_that_connection_and_the_link_keeps_working(tmp_path, garbage):
    received = []
    me = link("me", 0, free_port(), on_message=received.append)
    me.start()
    try:
        with socket.create_connection(("127.0.0.1", me.port), timeout=BOUND) as rogue:
            rogue.sendall(garbage)
            assert _closed_by_peer(rogue)
        assert received == [] and not me.connected_in
        peer = link("peer", 0, me.port, heartbeat=lambda: {"x": 1})
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

    me = link("me", 0, free_port(), on_message=handler)
    me.start()
    peer = link("peer", 0, me.port)
    peer.start()
    try:
        wait_for(lambda: len(received) >= 3, "several messages despite the failing handler")
        assert me.connected_in and peer.connected_out
    finally:
        peer.stop()
        me.stop()


def test_dialling_a_port_nobody_listens_on_reports_refused(tmp_path):
    me = link("me", 0, free_port())
    me.start()
    try:
        wait_for(me.refused, "a refused dial")
        assert me.last_dial_error == "connection refused" and not me.connected_out
        assert me.send({"t": "x"}) is False
    finally:
        me.stop()


def test_the_peer_coming_up_ends_refused(tmp_path):
    port = free_port()
    me = link("me", 0, port)
    me.start()
    peer = link("peer", port, me.port)
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
    from tests.unit.test_replication import Node, free_port, in_step, wait_for
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
    active.link.start()
    standby.link.start()
    wait_for(lambda: in_step(active, standby), "the pair to connect")
    kept = active.tenant("kept")
    standby.link.send = lambda msg: False  # it applies the write, but nothing it says arrives any more:
    standby.link.heartbeat = dict  # its heartbeats (sent by the link's own thread) carry no position either
    with pytest.raises(NotActive) as refused:
        active.tenant("refused")
    assert refused.value.code == "not_replicated" and "did not confirm" in refused.value.reason
    assert [t["name"] for t in active.state.policy.all("tenant")] == ["kept"] and active.store.last_seq() == 1
    assert standby.store.last_seq() == 2  # it got there: the ambiguous case
    del standby.link.send  # speaking again: it reports a position not on our history
    standby.link.heartbeat = standby.applier.hello
    wait_for(lambda: in_step(active, standby), "the standby's copy replaced by a snapshot")
    assert [t["name"] for t in standby.state.policy.all("tenant")] == ["kept"]
    assert_same(active, standby, log=False)
    again = active.tenant("again")  # the same seq number as the refused write, another commit time
    assert active.shipped[-1] is True and standby.state.policy.get("tenant", again["id"])
    assert standby.state.policy.get("tenant", kept["id"])
    assert_same(active, standby, log=False)


# ------------------------------------------------------------------ what the standby accepts

def _wire(kind, oid, body, seq=1, op="put"):
    return {"seq": seq, "txn": seq, "ts": 1000.0 + seq, "kind": kind, "id": oid, "op": op, "body": body}


BAD_CHANGES = {
    "unknown-kind": [_wire("router", "r1", {"id": "r1", "source": None, "name": "x"})],
    "unknown-field": [_wire("tenant", "t1", {"id": "t1", "source": None, "name": "acme", "evil": 1})],
    "bad-value": [_wire("tenant", "t1", {"id": "t1", "source": None, "name": 42})],
    "id-mismatch": [_wire("tenant", "t1", {"id": "t2", "source": None, "name": "acme"})],
    "bad-op": [_wire("tenant", "t1", {"id": "t1", "source": None, "name": "acme"}, op="merge")],
    "dangling-reference": [_wire("domain", "d1", {"id": "d1", "source": None, "name": "prod", "tenant_id": "nope"})],
    "duplicate-name": [_wire("tenant", "t1", {"id": "t1", "source": None, "name": "acme"}),
                       _wire("tenant", "t2", {"id": "t2", "source": None, "name": "acme"}, seq=2)],
    "not-a-body": [_wire("tenant", "t1", ["a", "list"])],
}


@pytest.mark.parametrize("changes", BAD_CHANGES.values(), ids=BAD_CHANGES.keys())
def test_replicated_changes_that_a_rest_write_would_refuse_are_refused_and_change_nothing(pair, changes):
    active, standby = pair("active"), pair("standby")
    active.link.start()
    standby.link.start()
    wait_for(lambda: in_step(active, standby), "the pair to connect")
    before = (standby.store.load_objects(), standby.store.history(), dict(standby.state.policy.objects))
    assert active.link.send({"t": "changes", "changes": changes, "meta": {}})
    wait_for(lambda: standby.applier.refused == 1, "the standby to refuse the changes")
    assert (standby.store.load_objects(), standby.store.history(), dict(standby.state.policy.objects)) == before
    tenant = active.tenant("fine")  # the link and the stream go on
    assert standby.state.policy.get("tenant", tenant["id"]) and active.shipped == [True]


@pytest.mark.parametrize("snapshot", [
    {"objects": {"tenant": {"t1": {"id": "t1", "source": None, "name": "acme", "evil": 1}}}, "meta": {},
     "last_seq": 1, "history": [1, 1001.0]},
    {"objects": {"domain": {"d1": {"id": "d1", "source": None, "name": "p", "tenant_id": "nope"}}}, "meta": {},
     "last_seq": 1, "history": [1, 1001.0]},
    {"objects": {}, "meta": {"counters": {"vni": "many"}}, "last_seq": 1, "history": [1, 1001.0]},
    {"objects": "all of them", "meta": {}, "last_seq": 1},
], ids=["unknown-field", "dangling-reference", "bad-counters", "not-a-map"])
def test_a_snapshot_that_breaks_a_rule_is_refused_and_changes_nothing(pair, snapshot):
    active, standby = pair("active", solo=True), pair("standby")
    active.tenant("acme")
    active.link.start()
    standby.link.start()
    wait_for(lambda: in_step(active, standby), "the pair to connect")
    before = (standby.store.load_objects(), standby.store.history(), dict(standby.state.policy.objects))
    assert active.link.send({"t": "snapshot", "snapshot": snapshot})
    wait_for(lambda: standby.applier.refused == 1, "the standby to refuse the snapshot")
    assert (standby.store.load_objects(), standby.store.history(), dict(standby.state.policy.objects)) == before


# ------------------------------------------------------------------ who may speak on the link

def test_a_node_without_the_secret_cannot_connect_either_way(tmp_path):
    received, stranger_got = [], []
    me = link("me", 0, free_port(), on_message=received.append)
    me.start()
    stranger = link("peer", 0, me.port, on_message=stranger_got.append, secret="not-the-pair-secret")
    stranger.start()
    me.peer_port = stranger.port  # and we dial it: it cannot prove the secret to us either
    try:
        wait_for(lambda: me.auth_failures >= 2 and stranger.auth_failures >= 1, "both handshakes to fail")
        assert received == [] and stranger_got == [] and not me.connected_in and not me.connected_out
        assert "authentication failed" in (me.last_dial_error or "")
        assert "authentication failed" in (stranger.last_dial_error or "")
    finally:
        stranger.stop()
        me.stop()


def test_a_stranger_cannot_displace_or_speak_for_a_live_peer(tmp_path):
    received = []
    me = link("me", 0, free_port(), on_message=received.append)
    me.start()
    peer = link("peer", 0, me.port, heartbeat=lambda: {"x": 1})
    peer.start()
    try:
        wait_for(lambda: me.connected_in and len(received) >= 2, "the real peer")
        real = me._peer_in
        with socket.create_connection(("127.0.0.1", me.port), timeout=BOUND) as rogue:
            rogue.sendall(msgpack.packb({"t": "hi", "node": "peer", "nonce": b"r" * 32}))
            challenge = msgpack.Unpacker(raw=False)
            challenge.feed(rogue.recv(4096))
            assert next(challenge)["t"] == "challenge"  # it gets a challenge it cannot answer
            rogue.sendall(msgpack.packb({"t": "auth", "proof": b"\0" * 32})
                          + msgpack.packb({"t": "changes", "changes": [], "node": "peer"}))
            assert _closed_by_peer(rogue)
        count = len(received)
        wait_for(lambda: len(received) > count + 2, "the real peer still heard")
        assert me._peer_in is real and all(m.get("node") == "peer" and m.get("x") == 1 for m in received)
    finally:
        peer.stop()
        me.stop()


class Sent:
    """The applier's side of the HA link, for an applier driven on the test's own threads: what it sends."""

    def __init__(self):
        self.messages = []

    def send(self, msg):
        self.messages.append(msg)
        return True


def write_during_takeover(tmp_path, replicated, pause_in) -> tuple:
    """A takeover: the node is active (REST writes accepted) while its applier still handles the old active's last
    batch (``replicated`` tenants), stopped at its first pause in ``pause_in(node)`` (a pacer's owner); a REST write
    of tenant "written" meanwhile. Returns (old, node) once both finished, neither having raised."""
    from controller.pacer import Pacer
    from tests.unit.interleave import Gate, SpyLock, either, finish, run

    old = Node(tmp_path, "old", "active", free_port(), free_port())
    old.service.replicate = None
    for name in replicated:
        old.tenant(name)
    batch = {"t": "changes", "changes": [c.to_wire() for c in old.store.changes_since(0)], "meta": {}}
    node = Node(tmp_path, "new", "standby", free_port(), free_port())
    node.applier.link = Sent()
    gate, contended = Gate(), threading.Event()
    node.state._commits._lock = SpyLock(node.state._commits._lock, contended)
    pause_in(node).pacer = Pacer(lambda: gate.entered.is_set() or gate.stop(), every=1)  # the first pause stops
    applying, _, failed_a = run(node.applier.on_message, batch)
    assert gate.entered.wait(BOUND)
    writing, written, failed_b = run(node.tenant, "written")
    either(contended, written)  # waits for the applier (fixed) or has gone ahead already
    gate.open()
    finish(applying, writing)
    assert not failed_a and not failed_b, failed_a + failed_b
    return old, node


def test_a_rest_write_during_the_appliers_commit_builds_on_the_replicated_changes(tmp_path):
    """The applier commits the batch into State, pausing as big commits do. A REST write then must build its
    candidate on the policy with that batch: built before (while State's commit was under way), it would be committed
    to the store after the batch and then replace State's policy without it; the store would hold both, State only
    the write."""
    old, node = write_during_takeover(tmp_path, ["replicated"], lambda node: node.state)
    stored = {o["name"] for o in Policy(node.store.load_objects()).all("tenant")}
    assert stored == {"replicated", "written"}
    assert {o["name"] for o in node.state.policy.all("tenant")} == stored
    old.close()
    node.close()


def test_a_rest_write_while_the_applier_reads_its_batch_waits_for_the_whole_batch(tmp_path):
    """The applier still reads the batch (decoding pauses per change): a REST write must wait for the whole batch.
    Committed first, it took the batch's first seq: the store then skipped that change as one it held already and
    applied the rest of the batch on top of the write, a history neither node wrote (the old active, back as the
    standby, would match us at the batch's last seq and never be given a snapshot)."""
    old, node = write_during_takeover(tmp_path, ["first", "second"], lambda node: node.applier)
    history = [(c.seq, c.ts, c.body["name"]) for c in node.store.changes_since(0)]
    assert history[:2] == [(c.seq, c.ts, c.body["name"]) for c in old.store.changes_since(0)], history
    assert [name for _, _, name in history] == ["first", "second", "written"], history
    assert {o["name"] for o in node.state.policy.all("tenant")} == {"first", "second", "written"}
    old.close()
    node.close()
