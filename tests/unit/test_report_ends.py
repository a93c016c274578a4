"""A switch's report cut short: by the switch's end while State reads it, or by an error while State takes it.

State takes a big report with pauses (controller/state.py ``vrs_update``). A switch whose end (``vrs_gone``) lands in
a pause of its first report must not be kept as present: nothing reports it gone again. A report State fails on
(raises) must not leave the switch half taken in: its OVSDB session ends on the error, and the session that comes
back reports the same rows as a delta against the report that failed (ovsdb/claims.py), no port changed: the vports
State had not located stayed unbound.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from controller import binding
from controller.pacer import Pacer
from bgp.evpn import originate
from controller.programmer import Programmer
from ovsdb.claims import VrsClaims
from tests.unit.test_compiler import add_vport, base_state, snapshot
from tests.unit.test_vrs_delta import PEER_A, PEER_B, Db, follow

VMS = 6
PORTS = [(f"vm{i}", 10 + i) for i in range(VMS)]


def vports_state(prefix: str = "vm"):
    state = base_state()
    for i in range(VMS + 3):
        add_vport(state, "acme/web", f"{prefix}{i}", f"02:00:00:00:01:{i:02x}", f"10.0.1.{20 + i}")
    return state


def ended_in_pause(at: int, then=None):
    """hv1's first report, with a pause after every port read or indexed and every vport located; hv1 goes in pause
    ``at`` (0: never), and ``then(state)`` runs there after it; a programming pass runs in every pause. (State, the
    programmer after one more pass, the number of pauses)."""
    state = vports_state()
    programmer = Programmer(state)
    programmer.refresh(full=True)
    pauses = []

    def pause():
        pauses.append(1)
        if len(pauses) == at:
            state.vrs_gone("hv1")
            if then is not None:
                then(state)
        programmer.refresh()

    state.pacer = Pacer(pause, every=1)
    state.vrs_update(snapshot("hv1", "10.251.0.1", PORTS))
    state.pacer = Pacer()
    programmer.refresh()
    return state, programmer, len(pauses)


def test_a_switch_gone_in_any_pause_of_its_first_report_is_not_kept_as_present():
    _, _, total = ended_in_pause(0)
    assert total > VMS  # reading the ports, indexing them, locating the vports: each pauses
    for at in range(1, total + 1):
        state, programmer, _ = ended_in_pause(at)
        where = f"gone in pause {at} of {total}"
        assert state.vrs == {} and state.locations == {}, where  # on main: hv1 and its VMs
        assert state.partial == state.partial_chassis == {}, where
        assert "hv1" not in programmer.view.switches and "hv1" not in programmer.desired, where
        assert programmer.derive().switches == {}, where


def test_a_switch_gone_and_back_in_a_pause_of_its_first_report_is_the_one_back():
    """The end lands in a pause of the first report, and the switch's next first report (another session) lands
    there too, whole: State ends with that one (the first, read before the end, is dropped or superseded)."""
    back = snapshot("hv1", "10.251.0.1", PORTS[:3] + [("vm8", 30)])
    _, _, total = ended_in_pause(0)
    for at in range(1, total + 1):
        state, programmer, _ = ended_in_pause(at, lambda state: state.vrs_update(back))
        assert state.vrs == {"hv1": back}, f"pause {at}"
        assert sorted(state.locations) == ["vm0", "vm1", "vm2", "vm8"], f"pause {at}"
        assert sorted(programmer.view.switches) == ["hv1"]


class Bad(Exception):
    pass


@pytest.fixture
def failing_port(monkeypatch):
    """While ``failing`` holds a port name, State's binding index raises on that port (a row State cannot take)."""
    failing = []
    learn = binding.BindingIndex.learn_port

    def learn_port(self, snap, rank, flavour, port, *args):
        if port.name in failing:
            raise Bad(f"bad row {port.name}")
        return learn(self, snap, rank, flavour, port, *args)

    monkeypatch.setattr(binding.BindingIndex, "learn_port", learn_port)
    return failing


@pytest.fixture
def failing_keys(monkeypatch):
    """While ``failing`` holds a port name, reading that port's binding keys raises (State._read_ports: before State
    changes anything)."""
    failing = []
    keys = binding.port_keys

    def port_keys(port, flavour):
        if port.name in failing:
            raise Bad(f"bad row {port.name}")
        return keys(port, flavour)

    monkeypatch.setattr(binding, "port_keys", port_keys)
    return failing


def _seen(state, programmer):
    """What other switches and BGP peers see of hv1's VMs: hv2's desired flows and the EVPN routes announced."""
    programmer.refresh()
    return programmer.desired["hv2"].all_flows(), originate(programmer.derive(), state.policy)


@pytest.mark.parametrize("where", ["indexing", "reading"])
@pytest.mark.parametrize("which", ["a first report", "a later report"])
def test_after_a_report_state_failed_on_the_switch_back_binds_every_vm(failing_port, failing_keys, which, where):
    """hv1's OVSDB session reports its VMs through the claims (ovsdb/claims.py, a grace of 10 s) to State, which
    raises on one port (tap3) of that report (its first, or one adding VMs to those it bound), while indexing it
    (some ports taken) or reading it (none yet); the session ends on the error (ovsdb/peersession.py), and a new
    session of hv1 reports the same rows within the grace: every VM is bound, none half (on main before stop 39:
    those after tap3 stayed unbound). And the VMs bound before the failed report stay bound in every pause of it,
    their flows on hv2 and their EVPN routes kept, until the switch is back (stop 39's first fix forgot the switch at
    once: all withdrawn until the session came back)."""
    state = vports_state("vp")
    state.hosts = {"hv1": {"vtep_ip": "10.251.0.1"}}
    state.vrs_update(snapshot("hv2", "10.251.0.2", [("vp8", 10)]))  # a VM of the same subnet: hv2 sends to hv1's
    programmer = Programmer(state)
    programmer.refresh(full=True)
    db = Db(ports=0)
    claims = VrsClaims(state, grace=10.0, clock=lambda: 0.0)
    kept = []
    if which == "a later report":
        for i in range(2):
            db.add(f"tap{i}", {"iface-id": f"vp{i}"})
        follow(db, state, claims, PEER_A).gone()  # bound, then the session ends (a reconnect, say)
        kept = ["vp0", "vp1"]
        assert sorted(state.locations) == kept + ["vp8"]
    before, bound = _seen(state, programmer), dict(state.locations)
    macs = {getattr(route, "mac", None) for route in before[1].values()}
    for vid in kept:  # (what the test watches: hv2 sends to hv1's VMs, and they are announced)
        mac = next(v["mac"] for v in state.policy.all("vport") if v["id"] == vid)
        assert mac in macs and any(mac in repr(flow.match) for flow in before[0]), vid
    for i in range(2 if which == "a later report" else 0, VMS):
        db.add(f"tap{i}", {"iface-id": f"vp{i}"})
    (failing_port if where == "indexing" else failing_keys).append("tap3")
    pauses = []

    def pause():
        pauses.append({vid: state.locations.get(vid) for vid in kept})
        programmer.refresh()

    state.pacer = Pacer(pause, every=1)
    with pytest.raises(Bad):
        follow(db, state, claims, PEER_A)  # the sink's error ends that session (below: as peersession does)
    state.pacer = Pacer()
    assert pauses and all(seen == {vid: bound[vid] for vid in kept} for seen in pauses)  # bound in every pause
    assert state.partial == state.partial_chassis == {} and state.reports_taking == 0
    if which == "a later report":  # what it held whole before, kept: bound, flows and routes as they were
        assert state.locations == bound
        assert _seen(state, programmer) == before
    else:  # nothing held whole of it before: forgotten, not half taken in
        assert "vrs:hv1" not in state.vrs and state.locations == bound
    claims.leave("vrs:hv1", claims.speaker("vrs:hv1"))
    with pytest.raises(Bad):
        follow(db, state, claims, PEER_B)  # hv1 back, the bad row still there: its report (whole) fails again
    assert state.locations == bound and state.partial == state.partial_chassis == {} and state.reports_taking == 0
    failing_port.clear()
    failing_keys.clear()
    claims.leave("vrs:hv1", claims.speaker("vrs:hv1"))
    follow(db, state, claims, PEER_A)  # hv1 back within its grace, the same rows, the row fixed
    assert sorted(state.locations) == [f"vp{i}" for i in range(VMS)] + ["vp8"]
    fresh = vports_state("vp")
    fresh.hosts = state.hosts
    fresh.vrs_update(snapshot("hv2", "10.251.0.2", [("vp8", 10)]))
    fresh.vrs_update(claims.last("vrs:hv1"))
    assert state.locations == fresh.locations and set(state.vrs) == set(fresh.vrs) == {"hv2", "vrs:hv1"}
    fresh_programmer = Programmer(fresh)
    fresh_programmer.refresh(full=True)
    assert _seen(state, programmer) == _seen(fresh, fresh_programmer)


def test_a_report_failing_after_a_newer_one_was_taken_keeps_the_newer_one(failing_keys):
    """hv1's first report (session A) is read with pauses; in one, a report of hv1 from a newer session (B, which
    speaks for it now: ovsdb/claims.py) is taken whole; then A's report fails on a bad row. B's report is the switch
    as it is: kept, and bound (stop 39's first fix forgot the switch: absent until B reported a change)."""
    newer = snapshot("hv1", "10.251.0.1", PORTS[:2] + [("vm8", 30)])
    failing_keys.append("p-vm4")
    state = vports_state()
    pauses = []

    def pause():
        pauses.append(1)
        if len(pauses) == 2:
            state.vrs_update(newer)

    state.pacer = Pacer(pause, every=1)
    with pytest.raises(Bad):
        state.vrs_update(snapshot("hv1", "10.251.0.1", PORTS))
    state.pacer = Pacer()
    assert state.vrs == {"hv1": newer} and sorted(state.locations) == ["vm0", "vm1", "vm8"]
    assert state.partial == state.partial_chassis == {} and state.reports_taking == 0
    fresh = vports_state()
    fresh.vrs_update(newer)
    assert state.locations == fresh.locations


def test_a_datapath_whose_connection_closes_while_it_is_adopted_is_not_kept_connected(monkeypatch):
    """A second OpenFlow connection claiming a datapath is adopted from a green thread of its own (controller/app.py
    ``_contest``): handing the switch its desired state there may pause, and the connection's close may be handled
    in that pause (``_datapath_state``, DEAD). State must not keep the datapath connected afterwards (on main it
    was marked connected after the push, so after its close: for good)."""
    from controller import app
    from controller.ryu_compat import DEAD_DISPATCHER
    from tests.unit.test_partial_report_withheld import _glue, _Rec

    state = vports_state()
    state.vrs_update(snapshot("hv1", "10.251.0.1", PORTS))
    programmer = Programmer(state)
    programmer.refresh(full=True)
    glue = _glue(state, programmer)
    glue.tunnels.disconnected = lambda dp: None
    dp = SimpleNamespace(id=1, address=("127.0.0.2", 40000), is_active=True)
    closed = []

    class Closing(_Rec):
        def set_desired_owners(self, flows, groups, changed):  # a pause in the push: the close is handled there
            super().set_desired_owners(flows, groups, changed)
            if not closed:
                closed.append(True)
                app.CanopyApp._datapath_state(glue, SimpleNamespace(datapath=dp, state=DEAD_DISPATCHER))

        def stop(self):
            pass

    monkeypatch.setattr(app, "SwitchReconciler", lambda datapath, **kw: Closing(datapath))
    glue._adopt(dp)
    assert closed and 1 not in glue.reconcilers
    assert 1 not in state.datapaths  # on main: kept connected


def test_a_report_cut_in_any_pause_by_its_sessions_end_leaves_no_switch_half_taken_in():
    """The OVSDB session taking a report is killed in a pause (the controller stopping, a session closed: eventlet
    raises GreenletExit there): State keeps no switch half taken in. Its first report: forgotten; a later one: State
    keeps the report it took before (its VMs bound through the reconnect grace), and the switch's next report, a
    delta against the cut one (ovsdb/claims.py: no port changed), is taken whole: every VM bound."""
    import greenlet

    whole = snapshot("hv1", "10.251.0.1", PORTS)

    def cut(at: int, known: int):
        state = vports_state()
        if known:
            state.vrs_update(snapshot("hv1", "10.251.0.1", PORTS[:known]))
        before = dict(state.locations)
        pauses = []

        def pause():
            pauses.append(1)
            if len(pauses) == at:
                raise greenlet.GreenletExit()

        state.pacer = Pacer(pause, every=1)
        try:
            state.vrs_update(whole)
        except greenlet.GreenletExit:
            state.pacer = Pacer()
            assert state.locations == before and state.reports_taking == 0, at
            assert state.partial == state.partial_chassis == {}, at
            assert sorted(state.vrs) == (["hv1"] if known else []), at
            state.vrs_update(dataclasses.replace(whole, changed=frozenset()))  # the session back: nothing changed
            fresh = vports_state()
            fresh.vrs_update(whole)
            assert state.locations == fresh.locations and sorted(state.locations) == [f"vm{i}" for i in range(VMS)]
            return len(pauses)
        assert at == 0
        return len(pauses)

    for known in (0, 2):  # its first report, a later one
        total = cut(0, known)
        assert total > 3
        for at in range(1, total + 1):
            cut(at, known)


def test_a_first_report_failing_while_another_of_its_switch_is_taken_does_not_drop_that_one(failing_keys):
    """Two first reports of hv1 taken at once in green threads (a newer session's, B, read while the older one's,
    A, is: ovsdb/claims.py lets the newest speak); A's fails on a bad row while B's is taken. The switch did not go:
    B's report is taken, not dropped as if hv1 had left while it was read (stop 39's first fix counted the failure as
    an end: hv1 was then absent, its VMs unbound, until B reported a change)."""
    import eventlet

    failing_keys.append("p-vm4")
    state = vports_state()
    state.pacer = Pacer(lambda: eventlet.sleep(0), every=1)
    newer = snapshot("hv1", "10.251.0.1", PORTS[:2] + [("vm8", 30)])
    failed = []

    def a():
        try:
            state.vrs_update(snapshot("hv1", "10.251.0.1", PORTS))
        except Bad:
            failed.append(True)

    threads = [eventlet.spawn(a), eventlet.spawn(state.vrs_update, newer)]
    for thread in threads:
        thread.wait()
    state.pacer = Pacer()
    assert failed and state.vrs == {"hv1": newer} and sorted(state.locations) == ["vm0", "vm1", "vm8"]
    assert state.partial == state.partial_chassis == {} and state.reports_taking == 0


def test_a_port_failing_halfway_through_its_keys_leaves_no_sighting_behind(monkeypatch):
    """hv1's later report raises in the binding index halfway through one port's keys (the second cannot be taken):
    State takes its last report again whole, and nothing of that port stays in the index (its first key's sighting
    was left there, out of the port's record: the VM would be located on it at its next re-resolution)."""
    keys = binding.port_keys

    def port_keys(port, flavour):
        found = keys(port, flavour)
        return found + [(["not", "hashable"], None)] if port.name == "p-vm3" else found

    state = vports_state()
    state.vrs_update(snapshot("hv1", "10.251.0.1", PORTS[:2]))
    before = dict(state.locations)
    monkeypatch.setattr(binding, "port_keys", port_keys)
    with pytest.raises(TypeError):
        state.vrs_update(snapshot("hv1", "10.251.0.1", PORTS))
    assert state.locations == before
    assert not [spot for spots in state.index.sightings.values() for spot in spots if spot[1] == "p-vm3"]
    assert state.index.locate("vm3", lambda *key: 0) is None
