"""A switch's report cut short: by the switch's end while State reads it, or by an error while State takes it.

State takes a big report with pauses (controller/state.py ``vrs_update``). A switch whose end (``vrs_gone``) lands in
a pause of its first report must not be kept as present: nothing reports it gone again. A report State fails on
(raises) must not leave the switch half taken in: its OVSDB session ends on the error, and the session that comes
back reports the same rows as a delta against the report that failed (ovsdb/claims.py), no port changed: the vports
State had not located stayed unbound.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from controller import binding
from controller.pacer import Pacer
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
        assert state.vrs == {} and state.locations == {} and state.partial == {}, where  # on main: hv1 and its VMs
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


@pytest.mark.parametrize("which", ["a first report", "a later report"])
def test_after_a_report_state_failed_on_the_switch_back_binds_every_vm(failing_port, which):
    """hv1's OVSDB session reports its VMs through the claims (ovsdb/claims.py, a grace of 10 s) to State, which
    raises on one port (tap3) of that report (its first, or one adding VMs to those it bound); the session ends on
    the error (ovsdb/peersession.py), and a new session of hv1 reports the same rows within the grace: every VM is
    bound, none half (on main: those after tap3 stayed unbound)."""
    state = vports_state("vp")
    db = Db(ports=0)
    claims = VrsClaims(state, grace=10.0, clock=lambda: 0.0)
    if which == "a later report":
        for i in range(2):
            db.add(f"tap{i}", {"iface-id": f"vp{i}"})
        follow(db, state, claims, PEER_A).gone()  # bound, then the session ends (a reconnect, say)
        assert sorted(state.locations) == ["vp0", "vp1"]
    for i in range(2 if which == "a later report" else 0, VMS):
        db.add(f"tap{i}", {"iface-id": f"vp{i}"})
    failing_port.append("tap3")
    with pytest.raises(Bad):
        follow(db, state, claims, PEER_A)  # the sink's error ends that session (below: as peersession does)
    assert state.vrs == {} and state.locations == {} and state.partial == {}  # not half taken in: forgotten
    failing_port.clear()
    claims.leave("vrs:hv1", claims.speaker("vrs:hv1"))
    follow(db, state, claims, PEER_B)  # hv1 back within its grace, the same rows
    assert sorted(state.locations) == [f"vp{i}" for i in range(VMS)]
    fresh = vports_state("vp")
    fresh.vrs_update(claims.last("vrs:hv1"))
    assert state.locations == fresh.locations and set(state.vrs) == set(fresh.vrs) == {"vrs:hv1"}


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
    raises GreenletExit there): State forgets the switch rather than keep it half taken in."""
    import greenlet

    def cut(at: int, known: int):
        state = vports_state()
        if known:
            state.vrs_update(snapshot("hv1", "10.251.0.1", PORTS[:known]))
        pauses = []

        def pause():
            pauses.append(1)
            if len(pauses) == at:
                raise greenlet.GreenletExit()

        state.pacer = Pacer(pause, every=1)
        try:
            state.vrs_update(snapshot("hv1", "10.251.0.1", PORTS))
        except greenlet.GreenletExit:
            assert state.vrs == {} and state.locations == {} and state.partial == {} and state.reports_taking == 0
            return len(pauses)
        assert at == 0
        return len(pauses)

    for known in (0, 2):  # its first report, a later one
        total = cut(0, known)
        assert total > 3
        for at in range(1, total + 1):
            cut(at, known)
