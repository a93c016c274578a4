"""Vports leaving a subnet, few or many in one pass (controller/viewplaces.py: those leaving are taken out of the
subnet's sorted vports together, one by one when few, by one filtering copy when many, and before one comes to the
same subnet): the View's endpoints in order and every LiveView index equal a View derived and built from scratch,
with EVPN endpoints behind the vports in ``by_subnet``."""

from __future__ import annotations

import pytest

from controller.remote import RemoteDelta

from .oracle_checks import check_indexes
from .test_compiler import assert_matches_full, snapshot
from .test_incremental_reach import HOSTS, remote_mac, world

VPORTS = 60  # acme/web holds the even ones (30), acme/db the odd ones; vm i is on hv(1 + i % 3)


def ports_of(host: str, leaving=(), coming=()) -> list:
    n = list(HOSTS).index(host)
    ports = [(f"vm{i}", 10 + i) for i in range(VPORTS) if i % 3 == n and i not in leaving]
    return ports + [(f"vm{i}", 100 + i) for i in coming]


def evpn_world():
    state, prog = world(vports=VPORTS)
    web = state.policy.find("subnet", "acme/web")
    dom = state.policy.get("domain", web["domain_id"])
    macs = frozenset(remote_mac(web, dom, i, f"10.0.1.{200 + i}") for i in range(5))  # (IPs no vport has)
    state.remote_changed(RemoteDelta(added=macs))
    prog.refresh()
    return state, prog


CASES = {
    "one of thirty": {"hv1": {"leaving": (0,)}},
    "three of thirty": {"hv1": {"leaving": (0, 6, 12)}},
    "ten of thirty and of thirty": {"hv1": {"leaving": tuple(range(0, VPORTS, 3))}},
    "every one": {host: {"leaving": tuple(range(VPORTS))} for host in HOSTS},
    "two moving, two leaving": {"hv1": {"leaving": (0, 6, 3, 9)}, "hv2": {"coming": (0, 6)}},
    "many moving": {"hv1": {"leaving": tuple(range(0, VPORTS, 3))}, "hv2": {"coming": tuple(range(0, VPORTS, 3))}},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_vports_leaving_a_subnet_in_one_pass_leave_the_view_as_derived(case):
    state, prog = evpn_world()
    for host, change in CASES[case].items():
        state.vrs_update(snapshot(host, HOSTS[host], ports_of(host, **change)))
    prog.refresh()
    derived = prog.derive()
    assert prog.view.by_subnet == derived.by_subnet
    assert prog.view.endpoints == derived.endpoints
    assert prog.view.fib == derived.fib  # (read: the host routes that went are taken out)
    assert_matches_full(prog)
    check_indexes(state, prog.live, case)


def test_a_thousand_ports_gone_cost_fewer_bytecodes_each_than_in_stop_36():
    """evpn_routes' withdraw after the IDL at 1,000 ports (tests/benchmarks/evpn_withdraw.py): State taking the report
    (the unbinding, the routes withdrawn at unbind), the View delta and the publish, in Python bytecodes per port
    gone: 2,339 at bf1818d (stop 36's end), 1,866 at stop 37's cuts; the bound ~10% above (docs/benchmarks.md
    "withdraw after the IDL, stop 37"). The compile (155 per port) is left out: not changed."""
    from tests.benchmarks.evpn_withdraw import STEPS, Opcodes, run

    n = 1_000
    counted = run(n, Opcodes)
    cost = sum(counted[step] for step in STEPS if step != "compile")
    assert cost <= 2_050 * n, counted
