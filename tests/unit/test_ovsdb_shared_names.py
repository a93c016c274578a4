"""Interface rows of one name on the integration bridge (a buggy or hostile hypervisor's: ovs-vsctl refuses them): the
name is the port of the interface with the smallest uuid, whatever order the rows are read or applied in; the others
of that name wait, and when the holder goes (its port deleted, or the interface renamed) the next takes the name at
once, as a fresh read of the rows finds it (ovsdb/bridgeports.py; the fresh read: ``ovsdb.vrs.bridge_ports``)."""

import random
import uuid

import pytest

from ovsdb.rowchanges import RowChange, row_key
from ovsdb.vrs import bridge_ports
from tests.unit.sinks import Reports
from tests.unit.test_ovsdb_hostile_updates import TwoClaims, feed
from tests.unit.test_vrs_delta import Db, by_name, follow, iface, port


def one_name(db, name="same"):
    """Both interfaces of ``TwoClaims`` (if1 of p1, uuid 0x11, ofport 1; if2 of p2, 0x12, ofport 2) named ``name``."""
    feed(db.replica, {"Interface": {u: {"modify": {"name": name}} for u in db.ifaces.values()}})


def add_port(db, port_name, iface_name, ofport, number=0x71, iface_number=0x31):
    """A new Port ``port_name`` (uuid ``number``) of a new Interface ``iface_name`` (uuid ``iface_number``)."""
    db.ports[port_name] = p = str(uuid.UUID(int=number))
    i = str(uuid.UUID(int=iface_number))
    feed(db.replica, {"Interface": {i: {"insert": {"name": iface_name, "ofport": ofport}}},
                      "Port": {p: {"insert": {"name": port_name, "interfaces": ["uuid", i]}}},
                      "Bridge": {db.bridge: {"modify": {"ports": ["set", [["uuid", p]]]}}}})


def test_a_fresh_read_names_the_port_after_the_interface_of_the_smallest_uuid(caplog):
    db = TwoClaims(caplog)
    one_name(db)
    reporter = db.reporter()
    assert [(p.name, p.ofport) for p in reporter.last.ports] == [("same", 1)]  # if1's (0x11), not if2's (0x12)
    assert db.step(reporter) == (["same"], [])


@pytest.mark.parametrize("iface_number, ofport", [(0x05, 3), (0x31, 1)])  # the holder, if1, is 0x11
def test_a_new_interface_of_a_name_held_takes_it_only_with_a_smaller_uuid(caplog, iface_number, ofport):
    db = TwoClaims(caplog)
    one_name(db)
    reporter = db.reporter()
    add_port(db, "p3", "same", 3, iface_number=iface_number)
    assert db.step(reporter) == (["same"], [])
    assert reporter.last.ports[0].ofport == ofport


@pytest.mark.parametrize("with_other_change", [False, True])
def test_the_holders_port_deleted_the_other_interface_of_its_name_is_seen_at_once(caplog, with_other_change):
    """Before, the name left with the holder and the other interface was hidden until a read of every port. Deleted
    alone (ports dropped together, ``_drop_ports``) or with another port's change in the same update."""
    db = TwoClaims(caplog)
    one_name(db)
    reporter = db.reporter()
    [held] = reporter.last.ports
    db.delete(f"p{held.ofport}")  # (if<n> is p<n>'s, of ofport n)
    if with_other_change:
        add_port(db, "p3", "if3", 3)
    assert db.step(reporter) == (["if3", "same"][1 - with_other_change:], [])
    assert by_name(reporter.last)["same"].ofport == 3 - held.ofport and "same" in reporter.last.changed


def test_the_holder_renamed_the_other_interface_of_its_name_is_seen_at_once(caplog):
    db = TwoClaims(caplog)
    one_name(db)
    reporter = db.reporter()
    [held] = reporter.last.ports
    feed(db.replica, {"Interface": {db.ifaces[f"if{held.ofport}"]: {"modify": {"name": "moved"}}}})
    assert db.step(reporter) == (["moved", "same"], [])
    assert [p.ofport for p in reporter.last.ports] == [held.ofport, 3 - held.ofport]
    assert reporter.last.changed == {"moved", "same"}


def test_the_waiting_interface_renamed_or_deleted_leaves_the_holder_as_it_is(caplog):
    db = TwoClaims(caplog)
    one_name(db)
    reporter = db.reporter()
    [held] = reporter.last.ports
    feed(db.replica, {"Interface": {db.ifaces["if2"]: {"modify": {"name": "moved"}}}})
    assert db.step(reporter) == (["moved", "same"], []) and reporter.last.changed == {"moved"}
    feed(db.replica, {"Interface": {db.ifaces["if2"]: {"modify": {"name": "same"}}}})
    assert db.step(reporter) == (["same"], []) and reporter.last.changed == {"moved"}
    db.delete("p2")
    assert db.step(reporter) == (["same"], []) and reporter.last.ports[0] is held


def test_two_interfaces_of_one_name_read_again_then_deleted_together_leave_the_bridge_as_a_fresh_read(caplog):
    """A peer gives two interfaces the same name and the same columns: a read of every port (the session speaking
    again) hands both the one ``PortInfo`` it reported before (``BridgePorts.rebuild`` reuses equal values). Both
    ports then deleted in one update: the name leaves once (stop 48's wd48a: twice, a KeyError that ended the
    session)."""
    db = TwoClaims(caplog)
    feed(db.replica, {"Interface": {u: {"modify": {"name": "same", "ofport": ["set", []]}}
                                    for u in db.ifaces.values()}})
    reporter = db.reporter()
    assert [p.name for p in reporter.last.ports] == ["same"]
    reporter.speak()
    assert len(set(map(id, reporter._ports._infos.values()))) == 1  # (the case: one object for both interfaces)
    gone = [db.ports.pop("p1"), db.ports.pop("p2")]
    feed(db.replica, {"Port": {u: {"delete": None} for u in gone},
                      "Bridge": {db.bridge: {"modify": {"ports": ["set", [["uuid", u] for u in gone]]}}}})
    assert db.step(reporter) == ([], [])


def test_the_waiting_interfaces_port_deleted_leaves_the_name_to_the_holder(caplog):
    """The waiting interface's port deleted alone in its update: the name stays with the interface holding it."""
    db = TwoClaims(caplog)
    one_name(db)
    reporter = db.reporter()
    db.delete("p2")
    assert db.step(reporter) == (["same"], []) and reporter.last.ports[0].ofport == 1


@pytest.mark.parametrize("deleted, told", [(("if2",), []), (("if1",), []), (("if1", "if2"), [["same"]])])
def test_a_big_delete_of_the_waiting_interface_tells_no_port_leaving(caplog, deleted, told):
    """A big delete's interfaces are told leaving before its first slice (``VrsReporter.leaving``: the port's vports
    unbound and their routes withdrawn at intake). The interface waiting for a name (if2, 0x12) is no port: its
    deletion told the holder's port, which stays, leaving (withdrawn, then bound and announced again); nor is the
    holder's alone (the waiting one takes the name: the port stays). Both together are told, once."""
    db = TwoClaims(caplog)
    one_name(db)
    reporter = db.reporter()
    said = []
    reporter._claims.leaving = lambda key, names: said.append(list(names))
    reporter.leaving([uuid.UUID(db.ifaces[name]).int for name in deleted])
    assert said == told


NAMES = ("a", "b", "c")


def add_named(db, port_name, iface_name, ofport):
    """A new Port ``port_name`` of one Interface ``iface_name`` (``Db.add`` names both alike)."""
    i = iface(iface_name, ofport)
    p = port(port_name, i)
    db.bridge.ports = db.bridge.ports + [p]
    db.changes.record("Interface", row_key(i), RowChange(i))
    db.changes.record("Port", row_key(p), RowChange(p))
    db.changes.record("Bridge", row_key(db.bridge), RowChange(db.bridge, columns=frozenset({"ports"})))


def change(db, rng, column, value):
    """One interface (any, of a port but the bridge's own) given ``value`` in ``column``."""
    i = rng.choice([i for p in db.bridge.ports[1:] for i in p.interfaces])
    setattr(i, column, value)
    db.changes.record("Interface", row_key(i), RowChange(i, columns=frozenset({column})))


def remove(db, gone) -> None:
    """Port ``gone`` deleted, and its interfaces no other port references (OVSDB collects an Interface then only)."""
    db.bridge.ports = [p for p in db.bridge.ports if p is not gone]
    db.changes.record("Bridge", row_key(db.bridge), RowChange(db.bridge, columns=frozenset({"ports"})))
    db.changes.record("Port", row_key(gone), RowChange(gone, deleted=True))
    held = {row_key(i) for p in db.bridge.ports for i in p.interfaces}
    for i in gone.interfaces:
        if row_key(i) not in held:
            db.changes.record("Interface", row_key(i), RowChange(i, deleted=True))


def claim(db, rng, name) -> None:
    """A new Port ``name`` referencing an interface another port holds (a refused claim: ovsdb/bridgeports.py)."""
    p = port(name, rng.choice([i for p in db.bridge.ports[1:] for i in p.interfaces]))
    db.bridge.ports = db.bridge.ports + [p]
    db.changes.record("Port", row_key(p), RowChange(p))
    db.changes.record("Bridge", row_key(db.bridge), RowChange(db.bridge, columns=frozenset({"ports"})))


@pytest.mark.parametrize("seed", range(4))
def test_random_ports_of_few_names_equal_a_fresh_read_at_every_step(seed, monkeypatch):
    """Ports added, deleted (alone, or with others' changes), their interfaces renamed, changed, bonded, claimed by a
    second port, among three names; now and then a read of every port (the session made to speak). The names told
    changed include every name whose value changed (and may include one gone and back, equal, in one update)."""
    rng = random.Random(seed)
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=rng.getrandbits(128)))  # tests.unit.test_vrs_delta's rows
    db = Db()
    reporter = follow(db, Reports())
    for step in range(200):
        for n in range(rng.randint(1, 3)):
            roll, ports = rng.random(), db.bridge.ports[1:]
            if roll < 0.3 or len(ports) < 3:
                add_named(db, f"p{step}.{n}", rng.choice(NAMES), rng.randrange(1, 99))
            elif roll < 0.5:
                remove(db, rng.choice(ports))
            elif roll < 0.65:
                change(db, rng, "name", rng.choice(NAMES))
            elif roll < 0.8:  # (one waiting for its name, or holding it)
                change(db, rng, "ofport", [rng.randrange(1, 99)])
            elif roll < 0.9:
                claim(db, rng, f"c{step}.{n}")
            else:
                db.bond(rng.choice(ports).name, rng.choice(NAMES))
        before = by_name(reporter.last)
        reporter.refresh([db.root], db.take())
        after = by_name(reporter.last)
        assert reporter.last.ports == bridge_ports(db.bridge)
        assert reporter.last.changed >= {n for n in set(before) | set(after) if before.get(n) != after.get(n)}
        assert all(before.get(n) is after.get(n) for n in (set(before) | set(after)) - reporter.last.changed)
        assert_leaving_named_as_held(db, reporter, rng)
        if rng.random() < 0.05:
            reporter.speak()
            assert reporter.last.ports == bridge_ports(db.bridge)


def assert_leaving_named_as_held(db, reporter, rng) -> None:
    """``names_of`` (a big delete's ports told leaving) of some of the bridge's interfaces names the ports those
    interfaces are, each once: a name when every interface of that name is among them (else one left holds it)."""
    ifaces = {row_key(i): i for p in db.bridge.ports[1:] for i in p.interfaces}
    keys_of: dict = {}
    for key, found in ifaces.items():
        keys_of.setdefault(found.name, set()).add(key)
    some = rng.sample(sorted(ifaces), rng.randint(0, len(ifaces)))
    assert sorted(reporter._ports.names_of(some)) == sorted(n for n, keys in keys_of.items() if keys <= set(some))


def test_a_name_another_interface_keeps_is_not_told_leaving(caplog):
    """A big delete's early word (``VrsReporter.leaving``: the vports of those ports withdrawn before the update is
    applied) names a port shared by interfaces of one name only when every one of them is deleted: the holder's
    deleted alone, the other takes the name (its vport stays bound), and the other's alone leaves it as it is."""
    db = TwoClaims(caplog)
    one_name(db)
    ports = db.reporter()._ports
    held, waiting = 0x11, 0x12  # if1 (the holder: the smaller uuid) and if2
    assert ports.names_of([waiting]) == [] and ports.names_of([held]) == []
    assert ports.names_of([held, waiting]) == ["same"]
    assert ports.names_of([0x99, waiting, held]) == ["same"]


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("deleted_first", [True, False])
def test_a_name_that_goes_and_comes_back_equal_in_one_update_is_no_change(caplog, shared, deleted_first):
    """In one update the port of interface if1 (ofport 1) is deleted and a new port's interface takes its name with
    the same columns (and, ``shared``, if2 of that name too, which held it in between). The port's ``PortInfo`` is
    the one it had (the same object) and it is not told changed: before stop 50, applied deleted first, it was
    (work downstream for a port as it was)."""
    db = TwoClaims(caplog)
    name = "same" if shared else "if1"
    if shared:
        one_name(db)
    reporter = db.reporter()
    held = by_name(reporter.last)[name]
    assert held.ofport == 1
    gone = [db.ports.pop(p) for p in (("p1", "p2") if shared else ("p1",))]
    new_port, new_iface = str(uuid.UUID(int=0x73)), str(uuid.UUID(int=0x33))
    deletes = {u: {"delete": None} for u in gone}
    insert = {new_port: {"insert": {"name": "p3", "interfaces": ["uuid", new_iface]}}}
    db.ports["p3"] = new_port
    feed(db.replica, {"Interface": {new_iface: {"insert": {"name": name, "ofport": 1}}},
                      "Port": {**deletes, **insert} if deleted_first else {**insert, **deletes},
                      "Bridge": {db.bridge: {"modify": {"ports": ["set", [["uuid", u] for u in gone + [new_port]]]}}}})
    assert db.step(reporter)[0] == ([name] if shared else [name, "if2"])
    assert by_name(reporter.last)[name] is held
    assert reporter.last.changed == frozenset(), reporter.last.changed


def test_a_name_gone_with_a_port_dropped_in_c_loops_and_taken_back_equal_is_no_change(caplog):
    """Only ports deleted in the update (dropped in C loops: ``_drop_ports``), and if2 renamed to the deleted if1's name
    with its columns: the port is as it was, the same object, told unchanged; if2's own name goes."""
    db = TwoClaims(caplog)
    reporter = db.reporter()
    held = by_name(reporter.last)["if1"]
    gone = db.ports.pop("p1")
    feed(db.replica, {"Interface": {db.ifaces["if2"]: {"modify": {"name": "if1", "ofport": 1}}},
                      "Port": {gone: {"delete": None}},
                      "Bridge": {db.bridge: {"modify": {"ports": ["set", [["uuid", gone]]]}}}})
    assert db.step(reporter)[0] == ["if1"]
    assert by_name(reporter.last)["if1"] is held and reporter.last.changed == {"if2"}


def test_a_name_new_in_an_update_is_told_changed_whatever_hands_it_over_in_it(caplog):
    """Three new ports, their interfaces of one new name, the smaller uuid applied later each time, the first and the
    last of equal columns: the name passes from one to the next, and comes back to a value equal to the first. It did
    not exist before the update, so it is told changed (a hand-over took the first value for the one before the update:
    the name was told unchanged, never reported)."""
    db = TwoClaims(caplog)
    reporter = db.reporter()
    news = [(f"p{n}", str(uuid.UUID(int=0x70 + n)), str(uuid.UUID(int=0x40 - n)), ofport)
            for n, ofport in ((3, 3), (4, 4), (5, 3))]  # (interfaces 0x3d, 0x3c, 0x3b: each smaller)
    db.ports.update((name, port_uuid) for name, port_uuid, _, _ in news)
    feed(db.replica, {"Interface": {i: {"insert": {"name": "new", "ofport": ofport}} for _, _, i, ofport in news},
                      "Port": {p: {"insert": {"name": name, "interfaces": ["uuid", i]}} for name, p, i, _ in news},
                      "Bridge": {db.bridge: {"modify": {"ports": ["set", [["uuid", p] for _, p, _, _ in news]]}}}})
    assert db.step(reporter)[0] == ["if1", "if2", "new"]
    assert by_name(reporter.last)["new"].ofport == 3 and reporter.last.changed == {"new"}


def test_a_name_changed_in_place_then_handed_over_back_to_that_value_is_told_changed(caplog):
    """In one update the holder's ofport changes (in place), then two interfaces renamed to its name, each of a smaller
    uuid, take it over in turn, the last with the holder's new columns: the name's value is not the one it had before
    the update, so it is told changed (a hand-over took the value changed in place for the one before: told
    unchanged, the port's old ofport kept downstream)."""
    db = TwoClaims(caplog)
    add_port(db, "p3", "same", 1, iface_number=0x31)  # the holder, A (0x31); if2 (0x12) and if1 (0x11) smaller
    reporter = db.reporter()
    assert by_name(reporter.last)["same"].ofport == 1
    feed(db.replica, {"Interface": {str(uuid.UUID(int=0x31)): {"modify": {"ofport": 5}},
                                    db.ifaces["if2"]: {"modify": {"name": "same"}},
                                    db.ifaces["if1"]: {"modify": {"name": "same", "ofport": 5}}}})
    assert db.step(reporter)[0] == ["same"]
    assert by_name(reporter.last)["same"].ofport == 5 and reporter.last.changed >= {"same"}, reporter.last.changed
