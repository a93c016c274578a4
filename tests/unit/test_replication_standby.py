"""What a standby accepts of replicated changes and snapshots (what a REST write would refuse is refused and changes
nothing), and REST writes on a node taking over while its applier still handles the old active's last batch. Real
TCP on 127.0.0.1, real SQLite stores and real threads; every wait is bounded."""

import threading

import pytest

from controller.policy import Policy

from .replication_pair import BOUND, Node, Sent, connected, free_port, pair, wait_for  # noqa: F401 - pair: a fixture

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
    # a domain and an L2-only subnet are both "scopes" of IPs, keyed by their id (controller/viewremote.py, derive):
    # one id would make them one; a REST write never gives two objects one id (each a new UUID, "id" not writable)
    "id-of-two-kinds": [_wire("tenant", "t1", {"id": "t1", "source": None, "name": "acme"}),
                        _wire("domain", "x", {"id": "x", "source": None, "name": "prod", "tenant_id": "t1"}, seq=2),
                        _wire("subnet", "x", {"id": "x", "source": None, "name": "l2", "tenant_id": "t1"}, seq=3)],
    # a field a REST update may not change (controller/model.py ``immutable``), on an object an earlier put holds
    "immutable-field": [_wire("tenant", "t1", {"id": "t1", "source": None, "name": "acme"}),
                        _wire("tenant", "t2", {"id": "t2", "source": None, "name": "other"}, seq=2),
                        _wire("domain", "d1", {"id": "d1", "source": None, "name": "prod", "tenant_id": "t1"}, seq=3),
                        _wire("domain", "d1", {"id": "d1", "source": None, "name": "prod", "tenant_id": "t2"}, seq=4)],
}


@pytest.mark.parametrize("changes", BAD_CHANGES.values(), ids=BAD_CHANGES.keys())
def test_replicated_changes_that_a_rest_write_would_refuse_are_refused_and_change_nothing(pair, changes):
    active, standby = pair("active"), pair("standby")
    connected(active, standby)
    before = (standby.store.load_objects(), standby.store.history(), dict(standby.state.policy.objects))
    assert active.link.send({"t": "changes", "changes": changes, "meta": {}})
    wait_for(lambda: standby.applier.refused == 1, "the standby to refuse the changes")
    assert (standby.store.load_objects(), standby.store.history(), dict(standby.state.policy.objects)) == before
    tenant = active.tenant("fine")  # the link and the stream go on
    assert standby.state.policy.get("tenant", tenant["id"]) and active.shipped == [True]


def test_the_refusal_told_to_the_active_names_the_change_that_broke_the_rule(tmp_path):
    """Its seq and ts (the active matches them to the write it waits for) and its kind, id and field in the reason."""
    node = Node(tmp_path, "standby", "standby", free_port(), free_port())
    node.applier.link = sent = Sent()
    node.applier.on_message({"t": "changes", "changes": BAD_CHANGES["immutable-field"], "meta": {}})
    assert sent.messages == [{"t": "refused", "seq": 4, "ts": 1004.0, "reason": (
        "domain 'd1': domain 'prod': tenant_id: cannot be changed after creation (held here: 't1', "
        "replicated: 't2')")}]
    node.close()


@pytest.mark.parametrize("snapshot", [
    {"objects": {"tenant": {"t1": {"id": "t1", "source": None, "name": "acme", "evil": 1}}}, "meta": {},
     "last_seq": 1, "history": [1, 1001.0]},
    {"objects": {"domain": {"d1": {"id": "d1", "source": None, "name": "p", "tenant_id": "nope"}}}, "meta": {},
     "last_seq": 1, "history": [1, 1001.0]},
    {"objects": {}, "meta": {"counters": {"vni": "many"}}, "last_seq": 1, "history": [1, 1001.0]},
    {"objects": "all of them", "meta": {}, "last_seq": 1},
    {"objects": {"tenant": {"t1": {"id": "t1", "source": None, "name": "acme"}},
                 "domain": {"x": {"id": "x", "source": None, "name": "prod", "tenant_id": "t1"}},
                 "subnet": {"x": {"id": "x", "source": None, "name": "l2", "tenant_id": "t1"}}}, "meta": {},
     "last_seq": 1, "history": [1, 1001.0]},
], ids=["unknown-field", "dangling-reference", "bad-counters", "not-a-map", "id-of-two-kinds"])
def test_a_snapshot_that_breaks_a_rule_is_refused_and_changes_nothing(pair, snapshot, caplog):
    active, standby = pair("active", solo=True), pair("standby")
    active.tenant("acme")
    connected(active, standby)
    before = (standby.store.load_objects(), standby.store.history(), dict(standby.state.policy.objects))
    assert active.link.send({"t": "snapshot", "snapshot": snapshot})
    wait_for(lambda: standby.applier.refused == 1, "the standby to refuse the snapshot")
    assert (standby.store.load_objects(), standby.store.history(), dict(standby.state.policy.objects)) == before
    # the refusal is counted before it is logged: the standby's delivery thread logged it after the test had ended
    wait_for(lambda: any(r.getMessage().startswith("refused replicated data") for r in caplog.records),
             "the standby to log the refusal")
    for node in (active, standby):  # their delivery threads end here, not after the test
        node.link.stop()


def test_a_snapshot_replaces_what_the_standby_held_immutable_fields_included(pair):
    """A snapshot is not compared with the objects the standby held (docs/ha.md): it replaces a store that is behind
    or diverged, so a subnet whose domain differs there is taken as the snapshot has it, not refused."""
    active, standby = pair("active"), pair("standby")
    connected(active, standby)
    tenant = active.tenant("acme")
    prod, dev = (active.service.create("domain", {"tenant_id": tenant["id"], "name": name}) for name in ("prod", "dev"))
    web = active.service.create("subnet", {"tenant_id": tenant["id"], "domain_id": prod["id"], "name": "web",
                                           "cidr": "10.0.1.0/24", "gateway": "10.0.1.1"})
    assert standby.state.policy.get("subnet", web["id"])["domain_id"] == prod["id"]
    snapshot = active.store.snapshot()
    snapshot["objects"]["subnet"][web["id"]]["domain_id"] = dev["id"]
    assert active.link.send({"t": "snapshot", "snapshot": snapshot})
    wait_for(lambda: standby.state.policy.get("subnet", web["id"])["domain_id"] == dev["id"], "the snapshot restored")
    assert standby.store.load_objects()["subnet"][web["id"]]["domain_id"] == dev["id"] and standby.applier.refused == 0


# ------------------------------------------------------------------ REST writes during a takeover

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
