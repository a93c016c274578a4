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


def _longest_stretch(macs: int) -> int:
    """The most bytecodes between two pauses (a count-only pacer of 200 units, as the programmer's) of the pass that
    derives the EVPN endpoints of a scope of ``macs`` received MACs again whole (a local vport leaves it)."""
    from tests.bytecodes import Bytecodes

    state, prog, received = received_copies(macs)
    ports = [(f"vm{i}", 10 + i) for i in range(macs)]
    receive(state, received)
    prog.refresh()
    counter, most = Bytecodes(), [0]

    def pause():
        most[0] = max(most[0], counter.count)
        counter.count = 0

    prog.pacer = Pacer(pause, 200)
    state.vrs_update(snapshot("hv1", HV1, ports[1:]))
    counter.run(prog.refresh)
    assert_matches_full(prog)
    return most[0]  # (after the last pause: the subnets' flood groups, a bucket per port of hv1 each)


def test_a_scope_derived_again_whole_pauses_in_stretches_that_do_not_grow_with_its_macs():
    """Before the loop that takes a subnet's MACs (``_take``, which ticks per MAC), the subnet's MACs were forgotten
    and sorted (a Python key a MAC) in one stretch: the longest 46,860 bytecodes at 300 MACs, 144,530 at 3,000 (main
    017c55f6; ~17-20 ms of CPU at 10,000 in the bursts benchmark, branch perf47). Now 41,021 and 45,637: the sort
    paced (openflow/pacedsort.py), the forgetting ticked per MAC and per IP. (The pass's last stretch, after its
    last pause, holds the subnets' flood groups: a bucket per port of hv1, here as many as the MACs.)"""
    small, big = _longest_stretch(300), _longest_stretch(3_000)
    assert big < small * 1.25, (small, big)


def test_a_subnets_flood_group_passes_over_its_evpn_macs_in_c():
    """A subnet's flood groups (openflow/floods.py) read its endpoints once per pass: those with a port on each switch
    and the switches holding any. EVPN MACs have neither, yet each was looked at in Python (``Endpoint.key``, a set
    comprehension): 10,000 received MACs and one local vport, 170,205 bytecodes on main 017c55f6 at each pass that
    compiled the subnet (one local vport coming or going: 389 with 10); ~210 now, as with 10."""
    from types import SimpleNamespace

    from controller.derive import Endpoint
    from openflow.floods import _flood_vteps, _local_ports
    from tests.bytecodes import opcodes

    def cost(remote: int) -> int:
        eps = [Endpoint(f"e{n}", "s1", f"0a:00:00:00:{n >> 8:02x}:{n & 255:02x}", (), False, "evpn:10.251.0.200",
                        None, None, kind="evpn") for n in range(remote)]
        eps.append(Endpoint("v1", "s1", "02:00:00:00:00:01", (), True, "hv1", 5, None))
        view = SimpleNamespace(by_subnet={"s1": eps}, bound_vteps={}, bm_gateways={}, remote_floods={},
                               tunnel_ip_of={"hv1": "10.0.0.1"}.get)
        local = _local_ports(view, "s1", {})
        assert list(local) == ["hv1"] and [ep.vport_id for ep in local["hv1"]] == ["v1"]
        return opcodes(lambda: (_local_ports(view, "s1", {}), _flood_vteps(view, "s1", {})))

    small, big = cost(10), cost(10_000)
    assert big < small + 50, (small, big)


def _in_paced_sort() -> bool:
    """Whether the pause running was ticked from inside openflow/pacedsort.py."""
    frame = sys._getframe(1)
    while frame is not None and not frame.f_code.co_filename.endswith("pacedsort.py"):
        frame = frame.f_back
    return frame is not None


def test_a_scope_derived_again_whole_sorts_its_macs_a_pacer_unit_per_c_per_unit_items():
    """``_take`` sorts a subnet's MACs (openflow/pacedsort.py: keys in C, runs sorted and merged in C) ticking the
    pass's pacer through ``c_ticks``, a unit per ``C_PER_UNIT`` items, as controller/zones.py does: a unit per item
    made ~92 of the 343 pauses of a 10,000-MAC scope rebuilt whole needless (stop 47). Here, of 3,000 MACs (two
    subnets' sorts): 26 pauses from inside the sorts before, 2 now (of the pass's 78). Counted: pauses made from inside the sort."""
    state, prog, received = received_copies(3_000)
    ports = [(f"vm{i}", 10 + i) for i in range(3_000)]
    receive(state, received)
    prog.refresh()
    sorting = []
    prog.pacer = Pacer(lambda: sorting.append(_in_paced_sort()), 200)
    state.vrs_update(snapshot("hv1", HV1, ports[1:]))
    prog.refresh()
    assert sorting.count(True) <= 3, (sorting.count(True), len(sorting))
    assert_matches_full(prog)
