"""The VMs a gateway announcement goes to on one switch (openflow/gateway_garp.py ``_vms_on``): a node that takes over
asks every switch in turn for the announcements due there (``recent``), and each asked for the VMs of the subnets that
changed there. They were read from the subnet's endpoints on every switch, once per switch: a subnet spread over S
switches cost S times its VMs. Now each switch reads the shorter of the subnet's endpoints and its own (a live View's
index by switch), so a takeover costs about the subnet's VMs once, whatever the switches; and the VMs, their order
and the packets are those the subnet's walk gives. And a switch leaving forgets its own answers only, whatever the
others (``forget``)."""

from __future__ import annotations

from controller import loglimit
from controller.programmer import Programmer
from openflow.compiler import arp_answer
from openflow.external import garp
from openflow.flows import Owner
from openflow.gateway_garp import GatewayAnnouncer, _vms_on
from tests.bytecodes import opcodes
from tests.unit.test_compiler import snapshot
from tests.unit.test_pacing import vports_state


def spread(vms: int, switches: int):
    """A live View of ``vms`` vports (web and db, alternately) placed round robin on ``switches`` VRS."""
    state = vports_state(vms)
    for k in range(switches):
        state.vrs_update(snapshot(f"hv{k}", f"10.251.{k >> 8}.{k & 0xff}",
                                  [(f"vm{i}", 10 + i) for i in range(vms) if i % switches == k]))
    prog = Programmer(state)
    prog.refresh(full=True)
    return state, prog.view


def by_subnet_walk(view, session, sid):
    """The VMs of ``sid`` on ``session`` as read before (the subnet's endpoints on every switch): the oracle."""
    return [ep for ep in view.by_subnet.get(sid, ()) if ep.kind == "vport" and ep.session == session and ep.ofport]


def takeover_cost(vms: int, switches: int) -> int:
    """Bytecodes of every switch's ``recent`` after each saw its web subnet's answer change (a standby's record)."""
    state, view = spread(vms, switches)
    web = state.policy.find("subnet", "acme/web")["id"]
    announcer = GatewayAnnouncer()
    sessions = sorted(s for s in view.switches)
    for session in sessions:  # the subnet new on each switch: announced there, and recorded for a takeover
        announcer.due(view, session, [Owner("subnet", web)], now=0.0)
    total = 0
    for session in sessions:
        total += opcodes(lambda: announcer.recent(view, session, 1.0))
    return total


def test_a_takeover_reads_a_spread_subnets_vms_about_once_whatever_the_switches(monkeypatch):
    """2,000 VMs (1,000 in web) over 10 and over 100 switches: the takeover's work stays that of the VMs (before, 10
    times as much over 100 switches as over 10: each switch walked the whole subnet)."""
    monkeypatch.setattr(loglimit, "_last_logged", {})
    few = takeover_cost(2_000, 10)
    many = takeover_cost(2_000, 100)
    assert many <= few * 1.5, (few, many)
    assert many <= 60 * 2_000, many


def test_the_vms_read_from_the_switch_are_those_of_the_subnets_walk_in_its_order(monkeypatch):
    """Every switch and subnet, and both together, from either source: the same VMs in the same order, and the packets
    the announcer makes name them in turn."""
    monkeypatch.setattr(loglimit, "_last_logged", {})
    state, view = spread(600, 7)
    sids = sorted(view.subnets)
    assert view._sessions is not None
    for session in sorted(view.switches):
        got = _vms_on(view, session, sids)
        assert set(got) == set(sids)
        for sid in sids:
            assert got[sid] == by_subnet_walk(view, session, sid), (session, sid)
        assert sum(map(len, got.values())) > 0
    web = state.policy.find("subnet", "acme/web")["id"]
    session = sorted(view.switches)[0]
    packets = GatewayAnnouncer().due(view, session, [Owner("subnet", web)], now=0.0)
    address, mac = arp_answer(view.subnets[web])
    assert packets and [p.vport for p in packets] == by_subnet_walk(view, session, web)
    assert {p.frame for p in packets} == {garp(mac, address)}


def _forgetting(switches: int) -> tuple[int, list, list]:
    """200 VMs over ``switches`` VRS, every switch's answers recorded (compiled whole), then the first switch leaving:
    the bytecodes of its ``forget``, and what its web subnet and another switch's are due after that."""
    state, view = spread(200, switches)
    web = state.policy.find("subnet", "acme/web")["id"]
    announcer, sessions = GatewayAnnouncer(), sorted(view.switches)
    for session in sessions:
        announcer.due(view, session, None)
    cost = opcodes(lambda: announcer.forget(sessions[0]))
    return cost, *(announcer.due(view, session, [Owner("subnet", web)]) for session in sessions[:2])


def test_a_switch_leaving_forgets_its_answers_only_whatever_the_others(monkeypatch):
    """A VRS that leaves forgets what its responder answered (its web subnet is new there again: announced) and nothing
    of another's (unchanged there: nothing due), in the same work over 10 switches as over 100 (before: the record of
    every switch copied, once per switch leaving)."""
    monkeypatch.setattr(loglimit, "_last_logged", {})
    few, left, other = _forgetting(10)
    many, _left, _other = _forgetting(100)
    assert left and not other
    assert many == few, (few, many)
