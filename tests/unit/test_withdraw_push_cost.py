"""The switch reconciler's push after evpn_routes' withdraw (tests/benchmarks/evpn_withdraw.py, its step "push": kvm1's
reconciler handed the changed owners, its rounds until in sync) in Python bytecodes per port gone, at 1,000 ports:
222 at stop 44's end (c462a99f, at 10,000 ports), 310 at stop 45's (33295b54: the punt meters' count looked at each of
the 1,000 changed owners, though none has a flow left or had a meter), 228 once the count looks only at the owners
that have flows or named a meter (docs/benchmarks.md "wd46"). The bound is ~10 % above."""

from __future__ import annotations


def test_a_thousand_ports_gone_cost_the_reconcilers_push_no_more_bytecodes_each_than_before_the_meters():
    from tests.benchmarks.evpn_withdraw import PUSH, run
    from tests.bytecodes import Bytecodes

    n = 1_000
    counted = run(n, Bytecodes)
    assert counted[PUSH] <= 250 * n, counted
