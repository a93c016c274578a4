"""Hardware VTEPs are keyed by Physical_Switch name across OVSDB sessions (ovsdb/claims.py VtepClaims) and hand
State the local MACs that changed (VtepSnapshot.changed): a reconnect within the grace is the same VTEP (nothing
recomputed, nothing to push again), and one learned MAC reaches only its own VNI's subnets and owners."""

from controller.derive import vtep_desired
from controller.programmer import Programmer
from ovsdb.claims import VtepClaims
from ovsdb.rowchanges import RowChange, RowChanges, row_key
from ovsdb.vtep_reporter import VtepReporter
from tests.unit.helpers import state_from, vrs_snapshot
from tests.unit.vtep_fakes import FakeVtepDb, Row

DOC = """
tenants:
  - name: acme
    domains:
      - name: prod
        subnets:
          - name: web
            cidr: 10.0.1.0/24
            gateway: 10.0.1.1
            vni: 5001
            vports:
              - {name: vm1, mac: "02:00:00:00:01:01", ips: [10.0.1.11], binding: {flavour: kvm}}
          - {name: db, cidr: 10.0.2.0/24, gateway: 10.0.2.1, vni: 5002}
vtep_bindings:
  - {switch: tor1, port: p1, vlan: 100, subnet: acme/web}
  - {switch: tor1, port: p1, vlan: 200, subnet: acme/db}
"""
KEY = "vtep:tor1"
PEER_A, PEER_B = "10.250.0.9:40001", "10.250.0.9:40002"


def world():
    """State with a VRS and tor1 bound to both subnets, its database (a MAC learned in each VNI), a clock and claims."""
    state = state_from(DOC)
    state.vrs_update(vrs_snapshot("hv1", "10.251.0.1", ["vm1"]))
    db = FakeVtepDb()
    for vni in (5001, 5002):
        db.logical_switch(f"canopy-{vni}", vni)
    db.switch_learns(5001, "02:00:00:00:0b:01")
    db.switch_learns(5002, "02:00:00:00:0b:02")
    clock = [0.0]
    return state, db, VtepClaims(state, grace=10.0, clock=lambda: clock[0]), clock


def connect(state, db, claims, peer):
    reporter = VtepReporter(state, "ovsdb:" + peer, peer, claims=claims)
    reporter.refresh(db.all("Physical_Switch"), db.all("Ucast_Macs_Local"))
    return reporter


def flows(programmer):
    return {s: (d.flows, d.groups) for s, d in programmer.desired.items()}


def test_a_vtep_reconnect_within_the_grace_is_the_same_vtep_and_recomputes_nothing():
    state, db, claims, clock = world()
    old = connect(state, db, claims, PEER_A)
    programmer = Programmer(state)
    programmer.refresh(full=True)
    before, pushed = flows(programmer), vtep_desired(programmer.view, state.policy, "tor1")
    assert {e.mac for e in programmer.view.endpoints.values() if e.kind == "vtep_mac"} == \
        {"02:00:00:00:0b:01", "02:00:00:00:0b:02"}

    old.gone()  # the OVSDB session drops...
    clock[0] += 5.0
    claims.expire()
    assert list(state.vteps) == [KEY]  # ...within the grace the VTEP is still known
    new = connect(state, db, claims, PEER_B)  # ...and comes back from another port
    assert new.speaking and new.key == old.key == KEY
    snap = state.vteps[KEY]
    assert (snap.peer, snap.changed) == (PEER_B, frozenset())  # the same MACs: an empty delta
    assert (state.connects["vtep"], state.connects["vtep_down"]) == (1, 0)
    assert programmer.refresh() == set() and programmer.full_recomputes == 1
    assert flows(programmer) == before
    assert vtep_desired(programmer.view, state.policy, "tor1") == pushed  # nothing to push again

    clock[0] += 60.0
    claims.expire()  # the new session is connected: never gone
    assert KEY in state.vteps
    new.gone()
    clock[0] += 9.0
    claims.expire()
    assert KEY in state.vteps
    clock[0] += 2.0
    claims.expire()
    assert KEY not in state.vteps and state.connects["vtep_down"] == 1


def test_two_sessions_of_one_switch_name_the_newest_speaks():
    state, db, claims, _clock = world()
    first = connect(state, db, claims, PEER_A)
    second = connect(state, db, claims, PEER_B)
    assert (first.speaking, second.speaking, state.vteps[KEY].peer) == (False, True, PEER_B)
    row = db.switch_learns(5001, "02:00:00:00:0b:03")
    changes = RowChanges()
    changes.record("Ucast_Macs_Local", row_key(row), RowChange(row))
    # silent while the other speaks
    assert first.refresh(db.all("Physical_Switch"), lambda: db.all("Ucast_Macs_Local"), changes) is False
    assert "02:00:00:00:0b:03" not in {m.mac for m in state.vteps[KEY].local_macs}
    second.gone()  # the speaker goes: the other speaks again at once, its rows as a delta
    snap = state.vteps[KEY]
    assert first.speaking and snap.peer == PEER_A
    assert {m.mac for m in snap.changed} == {"02:00:00:00:0b:03"}
    assert state.connects["vtep"] == 1 and state.connects["vtep_down"] == 0


def test_a_renamed_switch_is_another_vtep():
    state, db, claims, _clock = world()
    reporter = connect(state, db, claims, PEER_A)
    db.switch.name = "tor2"
    reporter.refresh(db.all("Physical_Switch"), db.all("Ucast_Macs_Local"))
    assert list(state.vteps) == ["vtep:tor2"] and state.connects["vtep_down"] == 1


def test_one_learned_mac_reaches_only_its_vni_and_its_owner():
    state, db, claims, _clock = world()
    reporter = connect(state, db, claims, PEER_A)
    programmer = Programmer(state)
    programmer.refresh(full=True)
    for session in programmer.desired:
        programmer.take_changes(session)
    web = state.policy.find("subnet", "acme/web")["id"]

    row = db.switch_learns(5001, "02:00:00:00:0b:09")
    changes = RowChanges()
    changes.record("Ucast_Macs_Local", row_key(row), RowChange(row))

    def every_local_mac():
        raise AssertionError("every local MAC was read again")

    assert reporter.refresh(db.all("Physical_Switch"), every_local_mac, changes)
    assert {m.mac for m in state.vteps[KEY].changed} == {"02:00:00:00:0b:09"}
    journal = programmer.journal
    assert journal.vteps == set() and journal.vtep_vnis == {(KEY, 5001)}  # the MAC, not the whole VTEP
    touched = programmer.refresh()
    assert programmer.live.hw_vtep_subnets == {web}  # db (VNI 5002, also bound to tor1) is not looked at
    learned = next(e for e in programmer.view.endpoints.values() if e.mac == "02:00:00:00:0b:09")
    assert touched
    for session in touched:
        assert programmer.take_changes(session) == {learned.owner}, session
    scratch = Programmer(state)
    scratch.refresh(full=True)
    assert flows(programmer) == flows(scratch)


def test_a_deleted_switch_is_gone_at_once_and_a_vtep_again_when_created_again():
    """Its Physical_Switch row deleted by hand, the VTEP forwards nothing (ovs-vtep tears its bridges down): it was
    still shown connected with its old ports and bindings, and its learned MACs stayed endpoints."""
    state, db, claims, _clock = world()
    reporter = connect(state, db, claims, PEER_A)
    assert reporter.refresh([], db.all("Ucast_Macs_Local")) is True
    assert KEY not in state.vteps and state.connects["vtep_down"] == 1
    assert (reporter.key, reporter.last, reporter.speaking) == (None, None, False)
    assert reporter.refresh([], db.all("Ucast_Macs_Local")) is False  # reported once
    reporter.refresh(db.all("Physical_Switch"), db.all("Ucast_Macs_Local"))
    assert reporter.speaking and {m.mac for m in state.vteps[KEY].local_macs} == \
        {"02:00:00:00:0b:01", "02:00:00:00:0b:02"}
    assert state.connects["vtep"] == 2


def test_a_switch_deleted_in_one_sessions_database_while_another_speaks_keeps_the_vtep(caplog):
    """Two sessions claim tor1; the row goes from the silent one's database only: that session leaves its claim,
    quietly (the speaker's database says the VTEP is there), and the VTEP stays as the speaker reports it. The flows
    kept by delta through the deletion and the row created again equal a full recompute."""
    state, db, claims, _clock = world()
    silent = connect(state, db, claims, PEER_A)
    speaker = connect(state, db, claims, PEER_B)
    programmer = Programmer(state)
    programmer.refresh(full=True)
    assert silent.refresh([], db.all("Ucast_Macs_Local")) is True
    assert (silent.key, speaker.speaking, state.vteps[KEY].peer) == (None, True, PEER_B)
    assert "Physical_Switch row was deleted" not in caplog.text and state.connects["vtep_down"] == 0
    assert speaker.refresh([], db.all("Ucast_Macs_Local")) is True  # then from the speaker's: gone, said once
    assert KEY not in state.vteps and caplog.text.count("Physical_Switch row was deleted") == 1
    programmer.refresh()
    scratch = Programmer(state)
    scratch.refresh(full=True)
    assert flows(programmer) == flows(scratch)
    speaker.refresh(db.all("Physical_Switch"), db.all("Ucast_Macs_Local"))  # created again
    assert speaker.speaking and state.vteps[KEY].changed is None  # read whole, not as a delta of the old row's
    programmer.refresh()
    scratch = Programmer(state)
    scratch.refresh(full=True)
    assert flows(programmer) == flows(scratch)


def test_a_switch_deleted_and_created_again_in_one_update_stays_the_same_vtep():
    """vtep-ctl del-ps and add-ps in one transaction: the reporter sees a new row of the same name, so the VTEP is
    never reported gone; the new row's ports (none yet) are what it shows until they come."""
    state, db, claims, _clock = world()
    reporter = connect(state, db, claims, PEER_A)
    again = Row("Physical_Switch", name="tor1", description="", tunnel_ips=list(db.switch.tunnel_ips),
                management_ips=[], ports=[])
    assert reporter.refresh([again], db.all("Ucast_Macs_Local")) is True
    assert state.vteps[KEY].ports == () and state.connects["vtep_down"] == 0 and reporter.speaking
