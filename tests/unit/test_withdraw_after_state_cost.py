"""evpn_routes' withdraw after State in process (tests/benchmarks/evpn_withdraw.py: 1,000 bound vports' ports gone in
one VRS report), in Python bytecodes a gone port of each step after State: the View delta, the compile, the publish
and kvm1's reconciler's push (the run checks that the switch's flows end as desired, the speaker and State hold
none of the gone vports). At stop 48's start (main 95a4b671): View 26, compile 155, publish 49, push 228 (458 in
all); after wd48b 17 / 1 / 27 / 16 (61): gone owners compiled, planned, sorted and recorded in C loops, the
mobility feed split and the gone MACs' endpoints looked up in C (docs/benchmarks.md "Branch wd48b"). The bounds fail
at 95a4b671."""

from __future__ import annotations

N = 1_000
BOUNDS = {"View delta": 20, "compile": 5, "publish": 35, "push": 25}


def test_a_thousand_gone_ports_cost_each_step_after_state_a_few_bytecodes_each():
    from tests.benchmarks.evpn_withdraw import PUSH, STEPS, run
    from tests.bytecodes import Bytecodes

    counted = run(N, Bytecodes)
    per_port = {"View delta": counted[STEPS[1]] / N, "compile": counted[STEPS[2]] / N,
                "publish": counted[STEPS[3]] / N, "push": counted[PUSH] / N}
    assert all(per_port[step] <= bound for step, bound in BOUNDS.items()), per_port
    assert sum(per_port.values()) <= 80, per_port
