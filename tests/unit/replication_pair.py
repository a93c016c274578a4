"""A pair of controllers for the replication tests (test_replication*.py, test_ha_busy.py, test_ha_bursts.py,
test_commits_wait.py, integration/test_store_full.py): real TCP on 127.0.0.1, real SQLite stores and real threads.
Every wait is bounded (wait_for)."""

import time

import pytest

from controller.pairlink import PairLink
from controller.policy import Policy
from controller.replication import Applier, Replicator
from controller.service import NotActive, PolicyService
from controller.state import State
from controller.store import Store
from tests.harness.ports import reserved_port

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
    """A port on 127.0.0.1 kept for the node's link until it binds it (tests/harness/ports.py)."""
    return reserved_port()


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
            self.service.unreplicated = self.replicator.forget  # as controller/app.py wires them
            self.service.committed = self.replicator.committed
        else:
            self.applier = Applier(self.store, self.state, self.link)
            self.link.heartbeat = self.applier.hello

    def _receive(self, msg):
        (self.replicator or self.applier).on_message(msg)

    def _replicate(self, changes, meta):
        why = self.replicator.confirm(changes, meta, solo=self.solo)
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


def connected(active, standby):
    """Starts both nodes' links and waits until the pair is in step."""
    active.link.start()
    standby.link.start()
    wait_for(lambda: in_step(active, standby), "the pair to connect")


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


class Sent:
    """The applier's side of the HA link, for an applier driven on the test's own threads: what it sends."""

    def __init__(self):
        self.messages = []

    def send(self, msg):
        self.messages.append(msg)
        return True
