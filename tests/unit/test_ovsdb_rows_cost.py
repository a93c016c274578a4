"""The controller's OVSDB work per new port, bounded in Python bytecodes (tests/benchmarks/ovsdb_rows.py: no clock,
the same count on a loaded machine): the IDL and the VRS reporter's ports for evpn_routes' announce (1,000 ports
inserted in one update), ovs-vswitchd's ``ofport`` on their interfaces, and a new session's first read of them."""

from __future__ import annotations

from tests.benchmarks.ovsdb_rows import run
from tests.bytecodes import Bytecodes

PORTS = 1_000
# bytecodes per port, IDL + reporter: at 53058ea (stop 37's start) 4,623 / 1,197 / 4,583; after stop 37's cuts
# 4,174 / 1,052 / 4,095 (docs/benchmarks.md "announce OVSDB side, stop 37"); each bound ~5 % above
BOUNDS = {"insert": 4_400, "ofport": 1_100, "first read": 4_320}


def test_new_ports_their_ofport_and_a_first_read_cost_fewer_bytecodes_each_than_at_stop_37s_start():
    counted = run(PORTS, Bytecodes)
    per_port = {step: (counted[f"{step}: IDL"] + counted[f"{step}: reporter"]) / PORTS for step in BOUNDS}
    assert all(per_port[step] <= bound for step, bound in BOUNDS.items()), (per_port, counted)
