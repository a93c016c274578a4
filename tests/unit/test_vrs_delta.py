"""VRS discovery applies the rows the IDL reports changed (ovsdb/bridgeports.py) and keys switches by
chassis across OVSDB sessions (ovsdb/claims.py). Row stand-ins carry a uuid like IDL rows; a change list is
an ``ovsdb.rowchanges.RowChanges`` filled as the IDL's notify hook fills it."""

import random
import uuid
from types import SimpleNamespace

import pytest

from ovsdb import vrs
from ovsdb.claims import VrsClaims
from ovsdb.rowchanges import RowChange, RowChanges, row_key
from ovsdb.vrs import VrsReporter, bridge_ports
from tests.unit.sinks import Reports

PEER_A, PEER_B = "10.250.0.11:51034", "10.250.0.11:51999"


def row(**columns):
    return SimpleNamespace(uuid=uuid.uuid4(), **columns)


def iface(name, ofport=1, ext=None):
    return row(name=name, ofport=[ofport], external_ids=dict(ext or {}), mac_in_use=[], type="")


def port(name, *interfaces):
    return row(name=name, interfaces=list(interfaces))


class Db:
    """One hypervisor's rows, changed the way ovsdb-server would, recording what changed."""

    def __init__(self, chassis="hv1", ports=0):
        own = port("br-int", iface("br-int", 65534))
        self.bridge = row(name="br-int", ports=[own], datapath_id=["00000000000000aa"], controller=[],
                          fail_mode=["secure"], protocols=["OpenFlow13", "OpenFlow14"])
        self.root = row(external_ids={"system-id": chassis}, bridges=[self.bridge], ovs_version=["3.1.0"])
        self.changes = RowChanges()
        for i in range(ports):
            self.add(f"tap{i}", {"iface-id": f"vp{i}"})
        self.take()

    def take(self) -> RowChanges:
        changes, self.changes = self.changes, RowChanges()
        return changes

    def add(self, name, ext=None):
        i = iface(name, len(self.bridge.ports), ext)
        p = port(name, i)
        self.bridge.ports = self.bridge.ports + [p]
        self.changes.record("Interface", row_key(i), RowChange(i))
        self.changes.record("Port", row_key(p), RowChange(p))
        self.changes.record("Bridge", row_key(self.bridge), RowChange(self.bridge, columns=frozenset({"ports"})))

    def remove(self, name):
        p = next(p for p in self.bridge.ports if p.name == name)
        self.bridge.ports = [q for q in self.bridge.ports if q is not p]
        self.changes.record("Bridge", row_key(self.bridge), RowChange(self.bridge, columns=frozenset({"ports"})))
        self.changes.record("Port", row_key(p), RowChange(p, deleted=True))
        for i in p.interfaces:
            self.changes.record("Interface", row_key(i), RowChange(i, deleted=True))

    def bond(self, name, member):
        """Port ``name`` gains an interface ``member`` (a bond): one change of its ``interfaces`` column."""
        p = next(p for p in self.bridge.ports if p.name == name)
        i = iface(member, 500 + len(p.interfaces))
        p.interfaces = p.interfaces + [i]
        self.changes.record("Interface", row_key(i), RowChange(i))
        self.changes.record("Port", row_key(p), RowChange(p, columns=frozenset({"interfaces"})))

    def set_iface(self, which, **columns):
        i = next(i for p in self.bridge.ports for i in p.interfaces if i.name == which)
        for column, value in columns.items():
            setattr(i, column, value)
        self.changes.record("Interface", row_key(i), RowChange(i, columns=frozenset(columns)))

    def touch_bridge(self, **columns):
        for column, value in columns.items():
            setattr(self.bridge, column, value)
        self.changes.record("Bridge", row_key(self.bridge), RowChange(self.bridge, columns=frozenset(columns)))


def follow(db, sink, claims=None, peer=PEER_A):
    reporter = VrsReporter(sink, "ovsdb:" + peer, peer, claims=claims)
    reporter.refresh([db.root])
    return reporter


def by_name(snap):
    return {p.name: p for p in snap.ports}


def test_a_changed_interface_is_the_only_port_changed_and_the_others_are_the_same_objects():
    db, sink = Db(ports=50), Reports()
    reporter = follow(db, sink)
    first = sink.calls[-1][1]
    assert first.changed is None and len(first.ports) == 50  # nothing before: unknown
    db.set_iface("tap7", external_ids={"iface-id": "vp7", "attached-mac": "02:00:00:00:00:07"})
    assert reporter.refresh([db.root], db.take())
    second = sink.calls[-1][1]
    assert second.changed == {"tap7"}
    assert by_name(second)["tap7"].mac == "02:00:00:00:00:07"
    assert all(by_name(second)[n] is p for n, p in by_name(first).items() if n != "tap7")


def test_ports_appearing_and_leaving_are_the_ones_changed():
    db, sink = Db(ports=20), Reports()
    reporter = follow(db, sink)
    before = by_name(sink.calls[-1][1])
    db.add("tapnew", {"iface-id": "vpnew"})
    db.remove("tap3")
    reporter.refresh([db.root], db.take())
    snap = sink.calls[-1][1]
    assert snap.changed == {"tapnew", "tap3"}
    assert "tap3" not in by_name(snap) and by_name(snap)["tapnew"].ext("iface-id") == "vpnew"
    assert [p.name for p in snap.ports] == sorted(p.name for p in snap.ports)
    assert all(by_name(snap)[n] is p for n, p in before.items() if n != "tap3")


def test_a_bridge_column_change_reads_no_port_and_reports_none_changed():
    db, sink = Db(ports=5), Reports()
    reporter = follow(db, sink)
    db.touch_bridge(fail_mode=[])
    reporter.refresh([db.root], db.take())
    snap = sink.calls[-1][1]
    assert snap.fail_mode == "" and snap.changed == frozenset()


def test_a_rename_changes_both_names():
    db, sink = Db(ports=3), Reports()
    reporter = follow(db, sink)
    db.set_iface("tap1", name="tap9")
    reporter.refresh([db.root], db.take())
    snap = sink.calls[-1][1]
    assert snap.changed == {"tap1", "tap9"} and [p.name for p in snap.ports] == ["tap0", "tap2", "tap9"]


def test_an_interface_changed_with_its_ports_interfaces_in_one_update_is_read_again():
    """A port gains a second interface (a bond) and its first interface's external_ids change in the same update (or
    in two, taken together): the first one's change is applied, not left until the next change of that row."""
    db, sink = Db(ports=3), Reports()
    reporter = follow(db, sink)
    db.bond("tap1", "tap1b")
    db.set_iface("tap1", external_ids={"iface-id": "vp-other"})
    reporter.refresh([db.root], db.take())
    assert reporter.last.ports == bridge_ports(db.bridge)
    assert by_name(reporter.last)["tap1"].ext("iface-id") == "vp-other" and reporter.last.changed == {"tap1", "tap1b"}


@pytest.mark.parametrize("to_new_port", [False, True])
@pytest.mark.parametrize("destination_first", [False, True])
def test_an_interface_moved_between_ports_in_one_update_stays_whichever_port_is_applied_first(destination_first,
                                                                                            to_new_port):
    """A buggy or hostile peer moves an Interface row from one port to another (the other one replaced, or a new
    port while the first is deleted) in one update: the port losing it must not drop it after the port taking it
    was applied."""
    db, sink = Db(ports=3), Reports()
    reporter = follow(db, sink)
    losing = next(p for p in db.bridge.ports if p.name == "tap1")
    moved, instead = losing.interfaces[0], iface("tap1-instead", 90)
    if to_new_port:
        taking = port("bond9", moved)
        db.bridge.ports = [p for p in db.bridge.ports if p is not losing] + [taking]
        db.changes.record("Bridge", row_key(db.bridge), RowChange(db.bridge, columns=frozenset({"ports"})))
        taken, lost = RowChange(taking), RowChange(losing, deleted=True)
    else:
        taking = next(p for p in db.bridge.ports if p.name == "tap2")
        taking.interfaces, losing.interfaces = taking.interfaces + [moved], [instead]
        db.changes.record("Interface", row_key(instead), RowChange(instead))
        taken, lost = (RowChange(p, columns=frozenset({"interfaces"})) for p in (taking, losing))
    for change in (taken, lost) if destination_first else (lost, taken):
        db.changes.record("Port", row_key(change.row), change)
    reporter.refresh([db.root], db.take())
    assert reporter.last.ports == bridge_ports(db.bridge) and "tap1" in by_name(reporter.last)


def _iface_change(rng) -> dict:
    """Some columns of an Interface changed: ``ofport`` alone, or with others, or others alone."""
    others = {
        "external_ids": {"iface-id": f"v{rng.randrange(9)}", "attached-mac": f"02:00:00:00:00:0{rng.randrange(1, 9)}"},
        "mac_in_use": [f"02:00:00:00:01:0{rng.randrange(1, 9)}"],
        "type": rng.choice(("", "internal")),
    }
    columns = {c: others[c] for c in rng.sample(sorted(others), rng.randint(0, 2))}
    if rng.random() < 0.6 or not columns:
        columns["ofport"] = [rng.choice((-1, rng.randrange(1, 99)))]
    return columns


def test_random_deltas_equal_a_rebuild_from_scratch():
    rng = random.Random(13)
    db, sink = Db(ports=10), Reports()
    reporter = follow(db, sink)
    names = [f"tap{i}" for i in range(10)]
    for step in range(300):
        roll = rng.random()
        if roll < 0.3 or not names:
            names.append(f"n{step}")
            db.add(names[-1], {"iface-id": f"x{step}"})
        elif roll < 0.5:
            db.remove(names.pop(rng.randrange(len(names))))
        elif roll < 0.9:  # ofport alone (read alone: vrs.port_info_again), or with other columns, in one take
            for _ in range(rng.randint(1, 3)):
                db.set_iface(rng.choice(names), **_iface_change(rng))
            if rng.random() < 0.3:  # and the port of one of them, or another, bonded in the same take
                which = rng.choice(names)
                db.bond(which, f"{which}.{step}")
        else:
            db.touch_bridge(datapath_id=["%016x" % rng.randrange(1, 1 << 40)])
        before = reporter.last
        reporter.refresh([db.root], db.take())
        after = reporter.last
        assert after.ports == bridge_ports(db.bridge)
        assert after.changed == {n for n in set(by_name(before)) | set(by_name(after))
                                 if by_name(before).get(n) != by_name(after).get(n)}


def test_an_ofport_change_alone_reads_no_other_column_and_equals_a_full_read(monkeypatch):
    """ovs-vswitchd numbers new ports, or sets -1 on those it cannot open (10,000 rows after evpn_routes' announce):
    only ``ofport`` is read again; the result is what reading the bridge from scratch gives."""
    db, sink = Db(ports=30), Reports()
    reporter = follow(db, sink)
    first = by_name(reporter.last)
    reads = []
    real = vrs.port_info
    monkeypatch.setattr(vrs, "port_info", lambda *a: reads.append(a) or real(*a))
    for i in range(10):
        db.set_iface(f"tap{i}", ofport=[-1])  # could not open it
    for i in range(10, 20):
        db.set_iface(f"tap{i}", ofport=[100 + i])  # renumbered
    reporter.refresh([db.root], db.take())
    second = by_name(reporter.last)
    for i in range(10):
        db.set_iface(f"tap{i}", ofport=[])  # none, as -1: no change
    reporter.refresh([db.root], db.take())
    third = reporter.last
    assert reads == []
    assert third.ports == bridge_ports(db.bridge)
    assert [second[f"tap{i}"].ofport for i in (0, 10)] == [None, 110]
    assert {n for n in first if first[n] is not second[n]} == {f"tap{i}" for i in range(20)}
    assert third.changed == frozenset() and all(second[n] is p for n, p in by_name(third).items())


def test_a_reconnect_of_the_chassis_within_the_grace_is_the_same_switch():
    db, sink, clock = Db(ports=30), Reports(), [0.0]
    claims = VrsClaims(sink, grace=10.0, clock=lambda: clock[0])
    old = follow(db, sink, claims)
    first = sink.calls[-1][1]
    old.gone()
    clock[0] = 5.0
    claims.expire()
    follow(db, sink, claims, peer=PEER_B)  # the same hypervisor, a new connection (new ephemeral port)
    clock[0] = 60.0
    claims.expire()
    assert [c[0] for c in sink.calls] == ["update", "update"]  # never gone
    again = sink.calls[-1][1]
    assert again.session == first.session == "vrs:hv1" and again.peer == PEER_B
    assert again.changed == frozenset()  # nothing changed on the hypervisor
    assert all(a is b for a, b in zip(again.ports, first.ports))


def test_a_chassis_silent_for_the_grace_is_gone_once():
    db, sink, clock = Db(ports=2), Reports(), [0.0]
    claims = VrsClaims(sink, grace=10.0, clock=lambda: clock[0])
    follow(db, sink, claims).gone()
    claims.expire()
    assert [c[0] for c in sink.calls] == ["update"]
    clock[0] = 10.0
    claims.expire()
    claims.expire()
    assert sink.calls[-1] == ("gone", "vrs:hv1") and len(sink.calls) == 2


def test_a_chassis_whose_bridge_still_answers_over_openflow_is_not_gone_until_it_stops_answering(caplog):
    """Its ovsdb-server hangs or restarts slowly while ovs-vswitchd forwards: the ports it forwards with cannot
    change without ovsdb-server, so the last snapshot stays true and its vports stay bound (on code that reported
    it gone after the grace, every VM of the hypervisor lost its flows elsewhere: 18 s of pings lost in a lab)."""
    db, sink, clock, answering = Db(ports=2), Reports(), [0.0], {0xaa}
    claims = VrsClaims(sink, grace=10.0, clock=lambda: clock[0], forwarding=lambda dpids: dpids & answering)
    follow(db, sink, claims).gone()
    for clock[0] in (10.0, 25.0, 40.0):
        claims.expire()
    assert [c[0] for c in sink.calls] == ["update"]
    assert caplog.text.count("still answers over OpenFlow") == 1  # said once, not at every expiry
    answering.clear()  # and now ovs-vswitchd stops answering too: gone at the next expiry after one grace
    clock[0] = 49.0
    claims.expire()
    assert [c[0] for c in sink.calls] == ["update"]
    clock[0] = 50.0
    claims.expire()
    assert sink.calls[-1] == ("gone", "vrs:hv1") and len(sink.calls) == 2


def test_a_chassis_kept_by_openflow_that_reconnects_over_ovsdb_is_the_same_switch(caplog):
    caplog.set_level("INFO")
    db, sink, clock, answering = Db(ports=2), Reports(), [0.0], {0xaa}
    claims = VrsClaims(sink, grace=10.0, clock=lambda: clock[0], forwarding=lambda dpids: dpids & answering)
    follow(db, sink, claims).gone()
    clock[0] = 30.0
    claims.expire()
    follow(db, sink, claims, peer=PEER_B)
    assert "reconnected: the same switch" in caplog.text
    assert [c[0] for c in sink.calls] == ["update", "update"] and sink.calls[-1][1].changed == frozenset()
    answering.clear()
    clock[0] = 100.0
    claims.expire()
    assert [c[0] for c in sink.calls] == ["update", "update"]  # its OVSDB session lives: not leaving


@pytest.mark.parametrize("answers", [False, True])
def test_a_chassis_that_reconnects_while_its_bridge_is_asked_is_not_gone(answers):
    """Asking the bridge waits for an echo reply, and the OVSDB session may come back meanwhile: the answer
    must not report gone (or re-arm the grace of) a switch that has a live session again."""
    db, sink, clock = Db(ports=2), Reports(), [0.0]
    asked = []

    def forwarding(dpids):
        asked.append(dpids)
        follow(db, sink, claims, peer=PEER_B)  # the reconnect lands while the echo request is out
        return set(dpids) if answers else set()

    claims = VrsClaims(sink, grace=10.0, clock=lambda: clock[0], forwarding=forwarding)
    follow(db, sink, claims).gone()
    clock[0] = 10.0
    claims.expire()
    assert asked and claims.pending() == []
    clock[0] = 100.0
    claims.expire()
    assert [c[0] for c in sink.calls] == ["update", "update"] and len(asked) == 1


def test_chassis_whose_grace_ends_together_have_their_bridges_asked_together():
    """A rack that lost power: every bridge is asked in one round of echo requests (each unanswered one waits the
    probe's timeout), so the last switch is not reported gone a timeout per switch late."""
    sink, clock, asked = Reports(), [0.0], []
    claims = VrsClaims(sink, grace=10.0, clock=lambda: clock[0],
                       forwarding=lambda dpids: asked.append(set(dpids)) or {0xbb})
    for n, dpid in enumerate(("00000000000000aa", "00000000000000bb", "00000000000000cc")):
        db = Db(chassis=f"hv{n}")
        db.touch_bridge(datapath_id=[dpid])
        db.take()
        follow(db, sink, claims).gone()
    clock[0] = 10.0
    claims.expire()
    assert asked == [{0xaa, 0xbb, 0xcc}]
    assert sorted(c[1] for c in sink.calls if c[0] == "gone") == ["vrs:hv0", "vrs:hv2"]  # hv1's bridge answers


def test_two_live_sessions_of_one_chassis_the_newest_speaks_and_the_other_takes_over(caplog):
    db_a, db_b, sink = Db(ports=2), Db(ports=2), Reports()
    db_b.add("only-b")
    db_b.take()
    claims = VrsClaims(sink, grace=10.0)
    a = follow(db_a, sink, claims)
    b = follow(db_b, sink, claims, peer=PEER_B)
    assert "also claimed" in caplog.text and not a.speaking and b.speaking
    assert sink.calls[-1][1].peer == PEER_B and sink.calls[-1][1].changed == {"only-b"}
    db_a.add("only-a")
    assert not a.refresh([db_a.root], db_a.take())  # silent while b speaks
    b.gone()
    snap = sink.calls[-1][1]  # a speaks again at once, as a delta against what b said
    assert (snap.peer, snap.changed) == (PEER_A, {"only-a", "only-b"})
    assert [c[0] for c in sink.calls] == ["update", "update", "update"]


def test_a_port_moved_from_another_bridge_is_found_by_the_port_count():
    db, sink = Db(ports=3), Reports()
    reporter = follow(db, sink)
    moved = port("tapm", iface("tapm", 9, {"iface-id": "vpm"}))  # was on another bridge: no Port row created
    db.bridge.ports = db.bridge.ports + [moved]
    db.changes.record("Bridge", row_key(db.bridge), RowChange(db.bridge, columns=frozenset({"ports"})))
    reporter.refresh([db.root], db.take())
    snap = sink.calls[-1][1]
    assert snap.changed == {"tapm"} and by_name(snap)["tapm"].ext("iface-id") == "vpm"


def test_row_changes_merge_per_row():
    changes, a, b = RowChanges(), object(), object()
    changes.record("Interface", 1, RowChange(a, columns=frozenset({"ofport"})))
    changes.record("Interface", 1, RowChange(a, columns=frozenset({"external_ids"})))
    changes.record("Interface", 2, RowChange(b))  # created
    changes.record("Interface", 2, RowChange(b, columns=frozenset({"ofport"})))
    assert changes.table("Interface")[1].columns == {"ofport", "external_ids"}
    assert changes.table("Interface")[2].columns is None and len(changes) == 2
    changes.record("Interface", 1, RowChange(a, deleted=True))
    assert changes.table("Interface")[1].deleted and changes.table("Port") == {}


class CountedPorts(tuple):
    """A snapshot's ports that count the passes made over them."""

    passes = 0

    def __iter__(self):
        CountedPorts.passes += 1
        return super().__iter__()


def test_state_applies_one_port_appearing_without_a_pass_over_the_bridges_ports():
    """State binds the vports of the ports a report names changed from ``changed_ports``: no pass over the
    other ports of the bridge (before: two per report, 2,500 ports each on a port_to_ping hypervisor at 5,000)."""
    from dataclasses import replace

    from controller import policy as pol
    from controller.state import State

    db, sink = Db(ports=200), Reports()
    reporter = follow(db, sink)
    state = State(pol.Policy(), default_flavour="kvm")
    state.vrs_update(sink.calls[-1][1])
    db.add("tapnew", {"iface-id": "vpnew"})
    db.set_iface("tap5", ofport=[77])
    reporter.refresh([db.root], db.take())
    snap = sink.calls[-1][1]
    assert snap.changed == {"tapnew", "tap5"} and set(snap.changed_ports) == {"tapnew", "tap5"}
    counted = replace(snap, ports=CountedPorts(snap.ports))
    CountedPorts.passes = 0
    state.vrs_update(counted)
    assert CountedPorts.passes == 0
    assert state.index.sightings[("kvm", "vpnew")]  # the new port was learned
    # the same change without changed_ports (a hand-made snapshot) still applies, by one pass
    state2 = State(pol.Policy(), default_flavour="kvm")
    state2.vrs_update(sink.calls[0][1])
    plain = replace(snap, ports=CountedPorts(snap.ports), changed_ports=None)
    CountedPorts.passes = 0
    state2.vrs_update(plain)
    assert CountedPorts.passes >= 1 and state2.index.sightings[("kvm", "vpnew")]


def test_a_port_appearing_is_programmed_without_a_pass_over_the_bridges_ports():
    """From the report to the switches' desired state (State, the live View, the compile): the tunnel port
    comes from State's tunnel_ports, kept from deltas, not from a search of every port (before: one pass per
    programming pass, in derive.switch_info); and a tunnel port changing is still seen."""
    from dataclasses import replace

    from controller import policy as pol
    from controller.programmer import Programmer
    from controller.state import State

    db, sink = Db(ports=100), Reports()
    db.add("vxlan0")
    db.set_iface("vxlan0", type="vxlan", ofport=[9])
    reporter = follow(db, sink)
    state = State(pol.Policy(), default_flavour="kvm")
    state.vrs_update(sink.calls[-1][1])
    programmer = Programmer(state)
    programmer.refresh(full=True)
    session = sink.calls[-1][1].session
    assert programmer.view.switches[session].tunnel_ofport == 9
    db.add("tapnew", {"iface-id": "vpnew"})
    reporter.refresh([db.root], db.take())
    counted = replace(sink.calls[-1][1], ports=CountedPorts(sink.calls[-1][1].ports))
    CountedPorts.passes = 0
    state.vrs_update(counted)
    programmer.refresh()
    assert CountedPorts.passes == 0
    db.set_iface("vxlan0", ofport=[12])
    reporter.refresh([db.root], db.take())
    state.vrs_update(sink.calls[-1][1])
    programmer.refresh()
    assert programmer.view.switches[session].tunnel_ofport == 12 == programmer.derive().switches[session].tunnel_ofport


def test_a_speaker_leaving_while_the_other_session_reads_many_ports_is_answered_once_the_read_is_done():
    """Reading ports pauses (controller/pacer.py); another session's green thread may end meanwhile and hand this
    one the word (``speak``): what it reports is complete."""
    from controller.pacer import Pacer

    db_a, db_b, sink = Db(ports=2), Db(ports=2), Reports()
    claims = VrsClaims(sink, grace=10.0)
    pending = []
    a = VrsReporter(sink, "ovsdb:" + PEER_A, PEER_A, claims=claims,
                    pacer=Pacer(lambda: pending and pending.pop()(), every=5))
    a.refresh([db_a.root])
    b = follow(db_b, sink, claims, peer=PEER_B)
    assert b.speaking and not a.speaking
    for i in range(40):
        db_a.add(f"new{i}", {"iface-id": f"n{i}"})
    pending.append(b.gone)  # b's session ends while a is reading its 40 new ports
    a.refresh([db_a.root], db_a.take())
    assert not pending and a.speaking
    snap = sink.calls[-1][1]
    assert snap.peer == PEER_A and {f"new{i}" for i in range(40)} <= set(by_name(snap))
    assert set(by_name(snap)) == {p.name for p in db_a.bridge.ports if p.name != "br-int"}


def test_ports_appearing_at_once_give_the_event_loop_turns_while_their_rows_are_looked_at_again():
    """A port read pauses (controller/pacer.py), and so do the changed rows looked at again once read (10,000 new ports
    are 20,000 Port and Interface rows: ~20 ms of lookups in one stretch before): one unit per ROWS_PER_TICK rows."""
    from controller.pacer import Pacer
    from ovsdb.bridgeports import ROWS_PER_TICK

    db, sink = Db(ports=2), Reports()
    pacer = Pacer(lambda: None, every=1)
    reporter = VrsReporter(sink, "ovsdb:" + PEER_A, PEER_A, pacer=pacer)
    reporter.refresh([db.root])
    for i in range(200):
        db.add(f"new{i}", {"iface-id": f"n{i}"})
    before = pacer.pauses
    reporter.refresh([db.root], db.take())
    assert pacer.pauses - before == 200 + 2 * 200 // ROWS_PER_TICK  # 200 ports read, 400 rows looked at again
    assert {f"new{i}" for i in range(200)} <= set(by_name(sink.calls[-1][1]))


def test_ports_deleted_at_once_give_the_event_loop_turns_while_they_are_dropped():
    """10,000 ports deleted in one OVSDB update (evpn_routes' withdraw) were dropped from the bridge's ports in one
    stretch (~45 ms): one pacer unit per ROWS_PER_TICK ports dropped now; the deleted rows are not looked at again
    (skipped in C loops: they were, a pacer unit per ROWS_PER_TICK of them)."""
    from controller.pacer import Pacer
    from ovsdb.bridgeports import ROWS_PER_TICK

    db, sink = Db(ports=2), Reports()
    pacer = Pacer(lambda: None, every=1)
    reporter = VrsReporter(sink, "ovsdb:" + PEER_A, PEER_A, pacer=pacer)
    for i in range(200):
        db.add(f"old{i}", {"iface-id": f"o{i}"})
    reporter.refresh([db.root])
    db.take()
    for i in range(200):
        db.remove(f"old{i}")
    before = pacer.pauses
    reporter.refresh([db.root], db.take())
    assert pacer.pauses - before == 200 // ROWS_PER_TICK  # 200 ports dropped
    assert not {f"old{i}" for i in range(200)} & set(by_name(sink.calls[-1][1]))


@pytest.mark.parametrize("gone", [3, 400])
def test_ports_deleted_at_once_leave_the_sorted_names_by_one_filter_and_equal_a_rebuild(monkeypatch, gone):
    """Many ports deleted in one update (10,000 in slices: evpn_routes' withdraw) leave the bridge's sorted names by
    one pass over them, not a bisection and a deletion from the list each (which moved half the list per port); a
    few still by bisection. Either way the ports are what a fresh read gives, sorted, a name gone and back included."""
    from ovsdb import bridgeports

    db, sink = Db(ports=1000), Reports()
    reporter = follow(db, sink)
    rng = random.Random(gone)
    names = rng.sample([f"tap{i}" for i in range(1000)], gone)
    for name in names:
        db.remove(name)
    db.add(names[0], {"iface-id": "again"})  # gone and back in the same update
    bisected = []
    real = bridgeports.bisect.bisect_left
    monkeypatch.setattr(bridgeports.bisect, "bisect_left", lambda *args: bisected.append(1) or real(*args))
    reporter.refresh([db.root], db.take())
    snap = sink.calls[-1][1]
    assert len(bisected) <= bridgeports.FEW_GONE
    assert snap.ports == bridge_ports(db.bridge) and [p.name for p in snap.ports] == sorted(by_name(snap))
    assert snap.changed == set(names) and by_name(snap)[names[0]].ext("iface-id") == "again"


def test_a_vrs_made_to_speak_while_idle_keeps_the_rows_its_own_session_read_in_the_speaks_pauses():
    """Session A goes while B is idle: the claims make B speak in A's green thread, a read of every port with pauses.
    In one, B's own thread takes its next update (a port added, one deleted, one's ofport changed) and reports it.
    It was applied as a delta to the speak's half-read ports: the switch reported with no ports (every vport
    unbound), then the speak's read, of the ports listed before, reported the deleted port again (stale until the
    next full read). Now a read of every port is kept only at its end, B's update reads them all (the speak's
    pending), and the speak's read, overtaken, is dropped."""
    from controller.pacer import Pacer

    db_a, db_b, sink = Db(ports=2), Db(ports=40), Reports()
    claims = VrsClaims(sink, grace=10.0)
    armed = []

    def pause():
        if armed == [True]:
            armed.append(False)
            db_b.add("new", {"iface-id": "vp-new"})
            db_b.remove("tap3")
            db_b.set_iface("tap5", ofport=[77])
            b.refresh([db_b.root], db_b.take())  # B's own thread, meanwhile

    b = VrsReporter(sink, "ovsdb:" + PEER_B, PEER_B, claims=claims, pacer=Pacer(pause, every=5))
    b.refresh([db_b.root])
    a = follow(db_a, sink, claims)
    assert a.speaking and not b.speaking
    armed.append(True)
    a.gone()  # B speaks (in A's thread), its update arriving in a pause of that read
    assert b.speaking and armed == [True, False]
    want = {p.name for p in db_b.bridge.ports if p.name != "br-int"}
    reported = [c[1] for c in sink.calls if c[0] == "update"]
    for snap in reported[2:]:  # every report since A went: the rows as they were, or as they are, whole
        assert set(by_name(snap)) in (want, want - {"new"} | {"tap3"}), sorted(set(by_name(snap)) ^ want)
    snap = reported[-1]
    assert len(reported) == 3 and b.full_reads == 2  # B's first read, its update's; the speak's dropped
    assert set(by_name(snap)) == want and by_name(snap)["tap5"].ofport == 77
    assert b.last.ports == snap.ports
    db_b.set_iface("tap7", ofport=[78])  # B's next update applied to the rows as they are
    assert b.refresh([db_b.root], db_b.take())
    snap = sink.calls[-1][1]
    assert set(by_name(snap)) == want and by_name(snap)["tap7"].ofport == 78 and snap.changed == {"tap7"}


def test_a_vrs_session_ended_in_a_pause_of_its_first_read_reports_nothing_and_holds_no_claim():
    """The session ends (``gone``) in a pause of its first read of every port: nothing reported, no claim left."""
    from controller.pacer import Pacer
    from ovsdb.claims import switch_key

    db, sink = Db(ports=40), Reports()
    claims = VrsClaims(sink, grace=10.0)
    b = VrsReporter(sink, "ovsdb:" + PEER_B, PEER_B, claims=claims, pacer=Pacer(lambda: b.gone(), every=5))
    assert b.refresh([db.root]) is False
    assert sink.calls == [] and claims.speaker(switch_key("hv1")) is None and not b.speaking
