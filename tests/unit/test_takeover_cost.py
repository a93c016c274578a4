"""A node that takes over asks, once per switch as each takes it as master, which session that switch is
(controller/appannounce.py ``_session_of``, for ``_announce_after_takeover``): the question was a walk over every switch of
the View, so a takeover cost switches^2 (200 switches: 40,000 switches looked at). A live View now keeps its switches
by datapath id (controller/viewdelta.py ``by_datapath``, ``View.session_of_datapath``): the takeover's work grows with
the switches, counted in bytecodes at 100 and 200 switches; and the answers are those of the walk, through switches
coming, going and coming back under a new session."""

from __future__ import annotations

import functools
from dataclasses import replace
from types import SimpleNamespace

from controller import loglimit
from controller.app import CanopyApp
from controller.programmer import Programmer
from openflow import external
from openflow.gateway_garp import GatewayAnnouncer
from tests.bytecodes import opcodes
from tests.unit.test_compiler import snapshot
from tests.unit.test_pacing import vports_state


def vrs(k: int, session: str | None = None):
    """VRS number ``k`` (datapath id 0x1000 + k) holding vm``k``, reported under ``session`` (default hv``k``)."""
    snap = snapshot(session or f"hv{k}", f"10.251.{k >> 8}.{k & 0xff}", [(f"vm{k}", 10)])
    return replace(snap, datapath_id=0x1000 + k)


def world(switches: int):
    """A live View of ``switches`` VRS, a vport on each."""
    state = vports_state(switches)
    for k in range(switches):
        state.vrs_update(vrs(k))
    prog = Programmer(state)
    prog.refresh(full=True)
    return state, prog


def walk(view, dpid):
    """The session of ``dpid`` as it was found before (a walk over every switch): the oracle."""
    return next((s for s, sw in view.switches.items() if sw.datapath_id == dpid), None)


def takeover_cost(switches: int) -> int:
    """Bytecodes of ``_announce_after_takeover`` for every switch (each took this node as master), nothing due."""
    _state, prog = world(switches)
    glue = SimpleNamespace(programmer=prog, garp=external.Announcer(), gateway_garp=GatewayAnnouncer(), pair=None)
    for name in ("_announce_after_takeover", "_session_of"):
        setattr(glue, name, functools.partial(getattr(CanopyApp, name), glue))
    recs = [SimpleNamespace(datapath=SimpleNamespace(id=sw.datapath_id)) for sw in prog.view.switches.values()]
    assert len(recs) == switches and all(prog.view.session_of_datapath(r.datapath.id) for r in recs)

    def take_over():
        for rec in recs:
            glue._announce_after_takeover(rec)
    return opcodes(take_over)


def test_a_takeovers_work_grows_with_the_switches_not_their_square(monkeypatch):
    """100 and 200 switches: twice the switches, twice the work (17,405 and 34,805 bytecodes; with the walk 61,955 and
    213,905: 3.5 times, tending to 4)."""
    monkeypatch.setattr(loglimit, "_last_logged", {})
    few, many = takeover_cost(100), takeover_cost(200)
    assert many <= few * 2.2, (few, many)


def test_the_datapath_index_answers_as_the_walk_does_through_switches_coming_and_going(monkeypatch):
    """Every answer of the live View's index equals the walk's and a from-scratch View's, as switches go, come back
    under a new session (the old one still there for a while: the first to come keeps answering), and leave."""
    monkeypatch.setattr(loglimit, "_last_logged", {})
    state, prog = world(6)

    def check():
        view, fresh = prog.view, prog.derive()
        for dpid in [0x1000 + k for k in range(8)] + [None]:
            assert view.session_of_datapath(dpid) == walk(view, dpid) == fresh.session_of_datapath(dpid), dpid
        assert prog.live.by_datapath == {sw.datapath_id: {s: None} for s, sw in view.switches.items()
                                         if s not in ("hv2", "hv2-again")} | \
            ({0x1002: dict.fromkeys(s for s in ("hv2", "hv2-again") if s in view.switches)}
             if {"hv2", "hv2-again"} & set(view.switches) else {})
    check()
    state.vrs_gone("hv1")
    prog.refresh()
    check()
    state.vrs_update(vrs(2, "hv2-again"))  # hv2 reported again under a new session before its old one went
    prog.refresh()
    assert prog.view.session_of_datapath(0x1002) == "hv2"
    check()
    state.vrs_gone("hv2")
    prog.refresh()
    assert prog.view.session_of_datapath(0x1002) == "hv2-again"
    check()
    state.vrs_update(replace(vrs(3), datapath_id=0x1007))  # a switch whose datapath id changed
    prog.refresh()
    assert prog.view.session_of_datapath(0x1003) is None and prog.view.session_of_datapath(0x1007) == "hv3"
    check()
