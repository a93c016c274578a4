"""The View's EVPN part (controller/viewremote.py) pauses inside a subnet's endpoints made again whole."""

import sys

from controller.pacer import Pacer
from tests.unit.test_compiler import assert_matches_full, snapshot
from tests.unit.test_evpn import HV1, receive, received_copies

MACS = 300
EVERY = 10


def _caller_of_tick() -> str:
    """The function that ticked the pacer whose pause is running (the frame above ``Pacer.tick``)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_name != "tick":
        frame = frame.f_back
    return frame.f_back.f_code.co_name if frame is not None else ""


def test_a_local_vport_leaving_a_subnet_of_many_evpn_macs_pauses_while_its_endpoints_are_made():
    """A local endpoint of a scope that changes derives the scope's EVPN endpoints again, whole (``update``): the
    loop making a subnet's endpoints (``_endpoints``) ran without a pause, 58-66 ms of CPU for 10,000 received MACs
    in the bursts benchmark. Counted: pauses made from that loop itself, and the flows equal a full recompute."""
    state, prog, received = received_copies(MACS)
    ports = [(f"vm{i}", 10 + i) for i in range(MACS)]
    receive(state, received)
    prog.refresh()
    assert sum(ep.kind == "evpn" for ep in prog.view.endpoints.values()) == MACS

    callers = []
    prog.pacer = Pacer(lambda: callers.append(_caller_of_tick()), EVERY)
    state.vrs_update(snapshot("hv1", HV1, ports[1:]))  # vm0 leaves: its subnet's scope is derived whole
    prog.refresh()
    assert sum(ep.kind == "evpn" for ep in prog.view.endpoints.values()) == MACS
    assert callers.count("_endpoints") >= MACS // EVERY - 2  # the two subnets' MACs, a pause every EVERY
    assert_matches_full(prog)
