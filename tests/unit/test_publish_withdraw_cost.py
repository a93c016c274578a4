"""The publish after evpn_routes' withdraw (tests/benchmarks/evpn_withdraw.py, its step "publish": MAC mobility,
the Originator, the hand-over) in Python bytecodes per port gone, at 1,000 ports: 523 at stop 37's start (1998bf7),
451 after one walk of the View's feed for MAC mobility and the Originator, the MACs no longer local forgotten
without a step each, the endpoints gone not walked again by the Originator's intake and the vports named asked of the
Originator at once (docs/benchmarks.md "publish, stop 37"); 63 at stop 38, the endpoints gone taken out of MAC
mobility's index, forgotten, and dropped by the Originator a pacer's run at a time in C loops, and the last publish's
Origins told of them without a Python step per vport held already (docs/benchmarks.md "wdpub38, stop 38"). The bound is
~10 % above: any one of those cuts undone is more."""

from __future__ import annotations


def test_a_thousand_ports_gone_cost_the_publish_fewer_bytecodes_each_than_at_stop_37_end():
    from tests.benchmarks.evpn_withdraw import run
    from tests.bytecodes import Bytecodes

    n = 1_000
    counted = run(n, Bytecodes)
    assert counted["publish"] <= 70 * n, counted
