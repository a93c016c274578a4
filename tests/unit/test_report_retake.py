"""What State does after a switch's report (or a port number the switch announced) failed to be taken: it takes the
switch's last report again whole, paced like any report, and a green thread killed again in that re-take leaves no
vport located from the index as it was (controller/state.py ``_failed``, controller/pacer.py ``Finishing``).
"""

from __future__ import annotations

import dataclasses

import eventlet
import greenlet
import pytest

from controller import binding
from controller.pacer import Pacer
from controller.state import State
from tests.bytecodes import Bytecodes
from tests.unit.green import turns_until
from tests.unit.test_compiler import add_vports, snapshot
from tests.unit.test_report_ends import PORTS, VMS, Bad, vports_state

WHOLE = snapshot("hv1", "10.251.0.1", PORTS)


def resolved_again(state) -> bool:
    """Whether every vport's location is what the binding index says now (nothing left stale): re-resolving them all
    changes nothing."""
    before = dict(state.locations)
    state._relocate([vport["id"] for vport in state.policy.all("vport")])
    return state.locations == before


def from_scratch(*snaps) -> dict:
    fresh = vports_state()
    for snap in snaps:
        fresh.vrs_update(snap)
    return fresh.locations


@pytest.fixture
def failing_port(monkeypatch):
    """While ``failing`` holds a port name, State's binding index raises on that port; ``raised`` counts the raises."""
    failing, raised = [], []
    learn = binding.BindingIndex.learn_port

    def learn_port(self, snap, rank, flavour, port, *args):
        if port.name in failing or (port.name, port.ofport) in failing:
            raised.append(port.name)
            raise Bad(f"bad row {port.name}")
        return learn(self, snap, rank, flavour, port, *args)

    monkeypatch.setattr(binding.BindingIndex, "learn_port", learn_port)
    return failing, raised


def test_a_port_number_the_switch_announced_that_state_fails_on_is_retaken_like_a_failed_report(failing_port):
    """The switch announces p-vm3's number (PORT_STATUS) before OVSDB does, and State fails taking it: the switch's
    last report is taken again whole (vm3 stays bound, the index knows its port: on main the port was forgotten by
    the index, vm3's location left stale), the hint is dropped, and the switch's next report is taken whole."""
    failing, _ = failing_port  # (the numbered port fails: p-vm3 with ofport 7, not as the switch's report had it)
    unnumbered = [(name, None if name == "vm3" else ofport) for name, ofport in PORTS]
    state = vports_state()
    state.vrs_update(snapshot("hv1", "10.251.0.1", unnumbered))
    before = dict(state.locations)
    assert before["vm3"].ofport is None
    failing.append(("p-vm3", 7))
    with pytest.raises(Bad):
        state.ofport_seen(1, "p-vm3", 7)
    assert state.locations == before and resolved_again(state)  # on main: vm3 shown nowhere by the index
    assert "hv1" in state._whole and state.ofport_hints.pending("hv1") == {}
    failing.clear()
    numbered = snapshot("hv1", "10.251.0.1", PORTS)
    state.vrs_update(dataclasses.replace(numbered, changed=frozenset({"p-vm0"})))  # OVSDB numbers it, says one changed
    assert state.locations == from_scratch(numbered) and state.locations["vm3"].ofport == 13
    assert "hv1" not in state._whole


def killed_twice(known: int, first: int, second: int):
    """hv1's report (its first, or a later one when it had ``known`` ports) has its green thread killed in pause
    ``first`` of the report (0: never) and again in pause ``second`` after that (in State's re-take; 0: never).
    (state, locations before, the report's pauses, the re-take's pauses, the kills made)."""
    state = vports_state()
    if known:
        state.vrs_update(snapshot("hv1", "10.251.0.1", PORTS[:known]))
    before, count = dict(state.locations), {"report": 0, "retake": 0, "kills": 0}

    def pause():
        step = "retake" if count["kills"] else "report"
        count[step] += 1
        if count[step] == (first if step == "report" else second) and count["kills"] < 2:
            count["kills"] += 1
            raise greenlet.GreenletExit()

    state.pacer = Pacer(pause, every=1)
    try:
        state.vrs_update(WHOLE)
    except greenlet.GreenletExit:
        assert count["kills"]
    state.pacer = Pacer()
    return state, before, count["report"], count["retake"], count["kills"]


def test_a_report_whose_thread_is_killed_in_any_pause_and_again_in_any_pause_of_the_retake_leaves_nothing_stale():
    """The OVSDB session taking hv1's report is killed in a pause (a stop, a session closed), and again in a pause of
    State taking the switch's last report again (its first report: forgetting it). Whatever the two pauses, no vport
    is left located from the index as it was (on main: the vports the report had re-resolved before the first kill
    stayed where it put them when the second kill landed in the re-take's re-resolving), the switch is as its last
    report says, and its next report binds every VM."""
    for known in (0, 2):
        _, _, total, _, _ = killed_twice(known, 0, 0)
        assert total > VMS
        for first in range(1, total + 1):
            state, before, _, retake, kills = killed_twice(known, first, 0)
            assert kills == 1 and state.locations == before and resolved_again(state), (known, first)
            for second in range(1, retake + 1):
                state, before, _, _, kills = killed_twice(known, first, second)
                where = (known, first, second)
                assert kills == 2, where
                assert state.locations == before and resolved_again(state), where
                assert state.partial == {} and state.reports_taking == 0, where
                assert sorted(state.vrs) == (["hv1"] if known else []), where
                state.vrs_update(dataclasses.replace(WHOLE, changed=frozenset()))  # the session back: no change
                assert state.locations == from_scratch(WHOLE), where


def test_a_green_thread_killed_twice_by_eventlet_in_a_report_and_its_retake_leaves_nothing_stale():
    """Real green threads: hv1's later report pauses (eventlet.sleep(0)) and its thread is killed once it has
    re-resolved some vports; State takes the switch's last report again, pausing, and the thread is killed there
    again. The second kill ends the thread; the re-take is done (on main: the re-take's re-resolving stopped there)."""
    state = vports_state()
    state.vrs_update(snapshot("hv1", "10.251.0.1", PORTS[:2]))
    before = dict(state.locations)
    state.pacer = Pacer(lambda: eventlet.sleep(0), every=1)
    thread = eventlet.spawn(state.vrs_update, WHOLE)
    turns_until(lambda: len(state.locations) > len(before) + 1, thread, bound=1000)  # the report moved some vports
    assert state.reports_taking == 1
    thread.kill()
    assert not thread.dead and state.reports_taking == 1  # in a pause of the re-take: killed a second time
    thread.kill()
    assert thread.dead and state.reports_taking == 0
    state.pacer = Pacer()
    assert state.locations == before and resolved_again(state) and "hv1" in state._whole
    state.vrs_update(dataclasses.replace(WHOLE, changed=frozenset()))
    assert state.locations == from_scratch(WHOLE)


def stretches(function, pacer_every: int, state, tag) -> list[tuple[int, object]]:
    """The Python bytecodes ``function()`` runs between two pauses of State's pacer (traced), each with what ``tag()``
    said as the stretch ended."""
    bytecodes, out = Bytecodes(), []

    def pause():
        out.append((bytecodes.count, tag()))
        bytecodes.count = 0

    state.pacer = Pacer(pause, every=pacer_every)
    try:
        bytecodes.run(function)
    finally:
        state.pacer = Pacer()
    out.append((bytecodes.count, tag()))
    return out


def test_the_retake_after_a_report_of_5000_ports_failed_pauses_like_a_report(failing_port):
    """hv1 holds 5,000 bound ports; a report adding 5,000 more fails on its last row. The re-take of the 5,000 held
    (its read, the binding index, the vports' re-resolving) pauses as a report does (every 200 units of State's
    pacer): at most 300,000 bytecodes between two pauses from the failure on (260,000: the marks of first appearance
    of the 5,000 ports, one stretch as in any report of 5,000 known ports changed; on main the re-take's read and
    index were one stretch of 2.66 million)."""
    failing, raised = failing_port
    n = 5000
    state = State(vports_state().policy)
    ports = [(f"vm{i}", 10 + i) for i in range(2 * n)]
    add_vports(state, [("acme/web", f"vm{i}", f"02:00:00:00:{i >> 8 & 255:02x}:{i & 255:02x}", "10.0.1.200")
                       for i in range(VMS + 3, 2 * n)])  # one commit (one by one: a policy copied per vport)
    state.vrs_update(snapshot("hv1", "10.251.0.1", ports[:n]))
    assert len(state.locations) == n
    before = dict(state.locations)
    failing.append(f"p-vm{2 * n - 1}")
    new = snapshot("hv1", "10.251.0.1", ports)  # as the reporter reports it: the ports that changed named
    added = {port.name: port for port in new.ports[n:2 * n]}
    new = dataclasses.replace(new, changed=frozenset(added), changed_ports=added)

    def report():
        with pytest.raises(Bad):
            state.vrs_update(new)

    seen = stretches(report, 200, state, lambda: bool(raised))
    assert raised and state.locations == before and resolved_again(state)
    retake_most = max(count for count, failed in seen if failed)
    assert retake_most <= 300_000, retake_most


def test_a_retake_that_fails_too_forgets_the_switch_with_every_vm_located_on_it(failing_port):
    """hv1's report changes p-vm0, which State fails on, and fails on again when it takes the switch's last report
    again (a row that fails every time): the re-take had forgotten the index's ports of its chunk before learning
    p-vm0 again, so the index shows none of the others. The switch is forgotten, and every VM located on it is
    re-resolved (``_forget(everywhere=True)``), not only those the index still shows there: none is left located on a
    switch State no longer has."""
    failing, raised = failing_port
    state = vports_state()
    state.vrs_update(WHOLE)
    assert len(state.locations) == VMS
    failing.append("p-vm0")
    moved = [(name, 30 if name == "vm0" else ofport) for name, ofport in PORTS]
    new = snapshot("hv1", "10.251.0.1", moved)
    with pytest.raises(Bad):
        state.vrs_update(dataclasses.replace(new, changed=frozenset({"p-vm0"}),
                                             changed_ports={"p-vm0": new.ports_named({"p-vm0"})["p-vm0"]}))
    assert len(raised) == 2 and "hv1" not in state.vrs  # the report's failure, then the re-take's
    assert state.locations == {} and resolved_again(state)
    failing.clear()
    state.vrs_update(WHOLE)  # the switch reported again (its session back)
    assert state.locations == from_scratch(WHOLE)
