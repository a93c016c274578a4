"""A big delete's EVPN routes withdrawn at intake (controller/state_leaving.py, ``Federation._ports_leaving``): the
deleted interfaces of a pure delete of ports are told before its first slice, and the routes only their vports stand
behind leave at once, not slice by slice. Never one for something still present, never announced again by a publish
while the slices are still to come, never withdrawn twice, none left behind when the port stays or comes back."""

import json
import random

from bgp.federation import Federation
from bgp.routes import ANNOUNCE, WITHDRAW, MacIpRoute
from controller.programmer import Programmer
from ovsdb.claims import VrsClaims
from ovsdb.idl import slices
from tests.unit.sinks import Reports
from tests.unit.test_compiler import snapshot
from tests.unit.test_evpn import HV1, HV2, setup_view
from tests.unit.test_evpn_early_withdraw import WEB_HV1, BookedSpeaker, published, vm1_routes, web_type3_at_hv1
from tests.unit.test_ovsdb_slices import UPDATE2, Database, session, take

HV1_ALL = [("vm1", 10), ("vm2", 11)]


def vm1_mac_routes(routes):
    return {k: r for k, r in routes.items() if isinstance(r, MacIpRoute) and r.mac == "02:00:00:00:00:01"}


def commands(fed, action):
    return [c for c in fed.speaker.commands if c.startswith(action)]


def test_ports_leaving_withdraw_their_routes_at_once_and_once():
    """Told leaving, vm1's routes are withdrawn before State unbinds it; a publish meanwhile does not announce them
    again; the report without the port, and the pass after it, withdraw nothing more."""
    state, fed = published()
    before = dict(fed.speaker.desired)
    gone = vm1_routes(before)
    fed.speaker.commands.clear()
    state.vrs_leaving("hv1", ["p-vm1"])
    assert "vm1" in state.locations  # (nothing of State changed)
    assert set(before) - set(fed.speaker.desired) == gone and len(commands(fed, WITHDRAW)) == 1
    fed.publish(Programmer(state).derive())  # a pass before the slices: the View still has vm1
    assert not gone & set(fed.speaker.desired) and not commands(fed, ANNOUNCE)
    state.vrs_update(snapshot("hv1", HV1, WEB_HV1))  # the slice without vm1's port
    fed.publish(Programmer(state).derive())
    state.vrs_left("hv1", ["p-vm1"])
    assert len(commands(fed, WITHDRAW)) == 1 and not [c for c in commands(fed, ANNOUNCE) if "02:00:00:00:00:01" in c]
    assert not gone & set(fed.speaker.desired) and set(fed.speaker.desired) == set(before) - gone


def test_a_vport_another_port_shows_is_not_told():
    """vm1 shown on hv2 too (a live migration's other port): its port on hv1 going moves it, so nothing is withdrawn."""
    state, fed = published()
    state.vrs_update(snapshot("hv2", HV2, [("vm3", 10), ("vm4", 11), ("vm1", 12)]))
    before = dict(fed.speaker.desired)
    fed.speaker.commands.clear()
    state.vrs_leaving("hv1", ["p-vm1"])
    assert fed.speaker.desired == before and not fed.speaker.commands


def test_a_vport_bound_elsewhere_before_its_port_goes_ends_announced_there():
    state, fed = published()
    state.vrs_leaving("hv1", ["p-vm1"])
    assert not vm1_mac_routes(fed.speaker.desired)
    state.vrs_update(snapshot("hv2", HV2, [("vm3", 10), ("vm4", 11), ("vm1", 12)]))  # plugged on hv2 meanwhile
    state.vrs_update(snapshot("hv1", HV1, WEB_HV1))  # then its hv1 port goes: moved, not unbound
    assert state.locations["vm1"].session == "hv2"
    fed.publish(Programmer(state).derive())
    routes = vm1_mac_routes(fed.speaker.desired)
    assert routes and {r.next_hop for r in routes.values()} == {HV2}


def test_a_port_deleted_and_added_again_ends_announced():
    state, fed = published()
    before = dict(fed.speaker.desired)
    state.vrs_leaving("hv1", ["p-vm1"])
    state.vrs_update(snapshot("hv1", HV1, WEB_HV1))
    state.vrs_left("hv1", ["p-vm1"])
    state.vrs_update(snapshot("hv1", HV1, HV1_ALL))  # the next update adds it again
    fed.publish(Programmer(state).derive())
    assert fed.speaker.desired == before


def test_a_port_still_there_when_its_session_ends_is_announced_again():
    """The update deleting the port never taken (refused, or its session killed before its slice): the vport stays
    located there, no longer leaving, and the next publish announces its routes again."""
    state, fed = published()
    before = dict(fed.speaker.desired)
    state.vrs_leaving("hv1", ["p-vm1"])
    fed.publish(Programmer(state).derive())
    assert not vm1_routes(before) & set(fed.speaker.desired)
    state.vrs_left("hv1", ["p-vm1"])  # (VrsReporter.gone)
    fed.publish(Programmer(state).derive())
    assert fed.speaker.desired == before


def test_an_ha_standby_withdraws_nothing():
    state, fed = published()
    fed.originating = False
    fed.speaker.commands.clear()
    before = dict(fed.speaker.desired)
    state.vrs_leaving("hv1", ["p-vm1"])
    assert fed.speaker.desired == before and not fed.speaker.commands and not fed._leaving


def test_withdrawn_while_exabgp_is_down_they_are_not_injected_again():
    """ExaBGP down (the book detached): the routes leave what is desired; ExaBGP back, only the others are injected."""
    state, fed = published()
    gone = vm1_routes(fed.speaker.desired)
    fed.speaker.book.detach()
    state.vrs_leaving("hv1", ["p-vm1"])
    fed.speaker.commands = fed.speaker.book.attach()
    injected = " ".join(commands(fed, ANNOUNCE))
    assert not gone & set(fed.speaker.desired)
    for key in gone:
        assert fed.speaker.book.desired.get(key) is None
    assert "02:00:00:00:00:01" not in injected and "02:00:00:00:00:03" in injected


class LeavingSink(Reports):
    def __init__(self):
        super().__init__()
        self.told = []

    def vrs_leaving(self, session, names):
        self.told.append(("leaving", len(self.updates), sorted(names)))

    def vrs_left(self, session, names):
        self.told.append(("left", len(self.updates), sorted(names)))


def test_a_big_delete_tells_its_ports_before_its_first_slice():
    """1,200 ports deleted (on two bridges): the integration bridge's are told leaving before the first slice is
    reported, each once; the session's word that the update is reported follows the last report. A big insert tells
    nothing."""
    db = Database(random.Random(7))
    db._apply(db.insert_ports(1200))
    replica = db.fresh()
    sink = LeavingSink()
    reporter = session(replica, VrsClaims(sink, 0.0), sink)
    on_bridge = {p.name for p in reporter.last.ports}
    replica.on_slice = lambda: take(replica, reporter)
    replica.on_leaving = reporter.leaving
    update = db.delete_ports(1200 + 10)
    reports = len(sink.updates)
    replica._Idl__parse_update(json.loads(json.dumps(update)), UPDATE2)
    take(replica, reporter)
    reporter.leaving_done()
    assert len(sink.updates) > reports + 2  # in slices
    assert sink.told == [("leaving", reports, sorted(on_bridge)), ("left", len(sink.updates), sorted(on_bridge))]
    assert len(on_bridge) > slices.SLICE_PORTS and reporter.last.ports == ()
    sink.told.clear()
    replica._Idl__parse_update(json.loads(json.dumps(db.insert_ports(1200))), UPDATE2)
    take(replica, reporter)
    reporter.leaving_done()
    assert sink.told == []


def test_chunks_of_leaving_vports_pause_between_them():
    state, fed = published()
    pauses = []

    class Counting:
        def tick(self, n=1):
            pauses.append(n)

    state.pacer = Counting()
    state.vrs_leaving("hv1", ["p-vm1", "p-vm2"] + ["p-none%d" % k for k in range(2500)])
    assert len(pauses) == 4  # the lead's 100 names, then 1,000, 1,000 and 402: a pause after each


def test_the_first_withdrawals_of_a_big_delete_leave_after_a_lead_of_ports_not_a_whole_chunk():
    """1,200 bound vports' ports deleted: the first withdrawals reach the speaker after the lead's ports are looked at
    (``LEAVING_LEAD``, then a pause: they go to ExaBGP meanwhile), not a whole chunk's (``LEAVING_CHUNK``)."""
    from controller.state_leaving import LEAVING_LEAD
    from tests.benchmarks.evpn_announce import report, world

    n = 1200
    state, programmer, federation = world(n)
    full = report(n)
    state.vrs_update(full)
    programmer.refresh()
    federation.publish(programmer.view)
    handed, pauses, looked = [], [], []  # looked: the ports looked at by each call of ``_leaving_vports``

    def withdraw(keys):
        handed.append((sum(looked), len(pauses), len(list(keys))))

    federation.speaker.withdraw = withdraw
    state.pacer = type("Counting", (), {"tick": lambda self, units=1: pauses.append(units)})()
    find = state._leaving_vports
    state._leaving_vports = lambda session, names: looked.append(len(names)) or find(session, names)
    state.vrs_leaving(full.session, [port.name for port in full.ports[2:]])
    first_at, paused, routes = handed[0]
    assert paused == 0 and 0 < routes <= 2 * LEAVING_LEAD and sum(r for _, _, r in handed) >= n  # every one, in turn
    assert first_at == LEAVING_LEAD, first_at  # (not a first chunk of 1,000 ports looked at)


class _Told(Exception):
    """Raised by the leaving hook: the count ends there."""


def test_a_big_delete_tells_every_port_after_at_most_one_bytecode_a_port():
    """4,000 ports deleted: every deleted interface is handed to the reader (``on_leaving``: the vports' withdrawals)
    after at most one bytecode a port from the update (~0.28 here: C loops), where before the last of them waited for the last
    slice's report (~291 a port to the reporter's last snapshot, tests/unit/test_withdraw_intake_cost.py; the first
    for the lead's, ~91: tests/unit/test_ovsdb_slices_lead.py)."""
    from tests.bytecodes import opcodes

    ports = 4000  # (the count per port is the point: the same at 10,000)
    db = Database(random.Random(5))
    db._apply(db.insert_ports(ports))
    replica = db.fresh()
    update = json.loads(json.dumps(db.delete_ports(ports)))
    told = []

    def leaving(numbers):
        told.append(len(numbers))
        raise _Told

    def until_told():
        try:
            replica._Idl__parse_update(update, UPDATE2)
        except _Told:
            pass

    replica.on_slice, replica.on_leaving = lambda: None, leaving
    counted = opcodes(until_told)
    assert told == [len(update["Interface"])] and len(replica.tables["Port"].rows) > ports  # before any slice
    assert counted <= ports, counted


def test_a_vport_no_longer_leaving_keeps_the_routes_it_stands_behind_when_another_goes():
    """vm1 and vm3 (web) on hv1: web's type 3 at hv1 has both behind it. vm1 told leaving, then no longer (its update
    never taken: vm1 still there), then vm3 unplugged before any pass: vm1 still stands behind the type 3, which must
    stay announced (``Origins.bound`` in ``Federation._ports_left`` pins it)."""
    state, view = setup_view({"hv1": [("vm1", 10), ("vm2", 11), ("vm3", 12)], "hv2": [("vm4", 11)]})
    fed = Federation(None, "/unused", state, speaker=BookedSpeaker())
    fed.publish(view)
    web_at_hv1 = web_type3_at_hv1(fed.speaker.desired)
    assert len(web_at_hv1) == 1
    state.vrs_leaving("hv1", ["p-vm1"])
    assert web_at_hv1 <= set(fed.speaker.desired)  # (vm3 still behind it)
    state.vrs_left("hv1", ["p-vm1"])  # (VrsReporter.gone: vm1 still located on hv1)
    state.vrs_update(snapshot("hv1", HV1, [("vm1", 10), ("vm2", 11)]))  # vm3 unplugged: vm1 is still there
    assert "vm1" in state.locations and web_at_hv1 <= set(fed.speaker.desired)


def test_ports_no_longer_leaving_with_their_vports_still_there_wake_a_pass():
    """The update deleting the port never taken (its session ended first): State does not change (the switch's grace
    runs), so the pass whose publish announces vm1's routes again must be woken; nothing is woken when the slices
    unbound the vports already."""
    state, fed = published()
    woken = []
    state.subscribe(lambda what, detail: woken.append(what))
    state.vrs_leaving("hv1", ["p-vm1"])
    assert not woken
    state.vrs_left("hv1", ["p-vm1"])
    assert woken
    fed.publish(Programmer(state).derive())
    assert vm1_routes(fed.speaker.desired)
    woken.clear()
    state.vrs_leaving("hv1", ["p-vm1"])
    state.vrs_update(snapshot("hv1", HV1, WEB_HV1))  # its slice: vm1 unbound
    woken.clear()
    state.vrs_left("hv1", ["p-vm1"])
    assert not woken


class _Killed(Exception):
    """The session's green thread killed at a pause between two slices."""


def test_a_session_ending_mid_slices_tells_its_ports_no_longer_leaving_once():
    """The session killed after the lead slice's report (``PeerSession._finish``: ``VrsReporter.gone``): the ports told
    leaving are told no longer leaving (what State still locates there is announced again), once."""
    db = Database(random.Random(11))
    db._apply(db.insert_ports(1200))
    replica = db.fresh()
    sink = LeavingSink()
    reporter = session(replica, VrsClaims(sink, 0.0), sink)
    on_bridge = sorted(p.name for p in reporter.last.ports)

    def first_slice_then_killed():
        take(replica, reporter)
        raise _Killed

    replica.on_slice, replica.on_leaving = first_slice_then_killed, reporter.leaving
    reports = len(sink.updates)
    try:
        replica._Idl__parse_update(json.loads(json.dumps(db.delete_ports(1200))), UPDATE2)
    except _Killed:
        pass
    assert len(sink.updates) == reports + 1 and reporter.last.ports  # (the lead only)
    reporter.gone()
    told = sink.told[0][2]
    assert len(told) > slices.SLICE_PORTS and set(told) <= set(on_bridge)
    assert sink.told == [("leaving", reports, told), ("left", reports + 1, told)]
    reporter.leaving_done()  # (the session's loop, had it gone on)
    assert len(sink.told) == 2


def test_a_role_change_between_leaving_and_the_slices_ends_with_exactly_what_is_there():
    """Demoted after vm1's routes were withdrawn at intake, promoted again before its slice: the promotion's publish
    announces vm1 (still located there), its slice withdraws it, and nothing else is missing or left."""
    state, fed = published()
    before = dict(fed.speaker.desired)
    gone = vm1_routes(before)
    state.vrs_leaving("hv1", ["p-vm1"])
    fed.originating = False
    fed.publish(Programmer(state).derive())
    assert not fed.speaker.desired and not fed._leaving
    fed.originating = True
    fed.publish(Programmer(state).derive())
    assert fed.speaker.desired == before  # (vm1 still there: nothing leaving on this node's word now)
    state.vrs_update(snapshot("hv1", HV1, WEB_HV1))  # its slice
    assert set(fed.speaker.desired) == set(before) - gone
    state.vrs_left("hv1", ["p-vm1"])
    fed.publish(Programmer(state).derive())
    assert set(fed.speaker.desired) == set(before) - gone and not fed._leaving
