"""What a lost ping's report says of the path's hypervisors (tests.harness.path_evidence): the counters kept and
compared, read from the texts Open vSwitch 3.1 and the kernel print."""

import pytest

from tests.harness.path_evidence import counters, coverage_totals, moved, snmp_counters
from tests.integration.test_evpn_frr import Pinger

# the shape of lib/coverage.c's lines ("%-24s %5.1f/sec %9.3f/sec %13.4f/sec   total: %llu")
COVERAGE = """Event coverage, avg rate over last: 5 seconds, last minute, last hour,  hash=8e5a1b2c:
rev_reconfigure            0.0/sec     0.033/sec        0.0006/sec   total: 40
rev_flow_table             0.2/sec     0.150/sec        0.0025/sec   total: 9
xlate_actions             12.4/sec    10.117/sec        0.1686/sec   total: 607
drop_action_of_pipeline    0.0/sec     0.017/sec        0.0003/sec   total: 3
datapath_drop_tunnel_push_error   0.0/sec     0.000/sec        0.0000/sec   total: 1
412 events never hit
"""
SNMP = """Ip: Forwarding DefaultTTL InReceives
Ip: 2 64 1035
Icmp: InMsgs InErrors InEchos OutErrors
Icmp: 10 0 5 0
Udp: InDatagrams NoPorts InErrors OutDatagrams
Udp: 0 7 0 0
"""


def test_the_coverage_totals_are_read_from_each_counter_line():
    assert coverage_totals(COVERAGE) == {"rev_reconfigure": 40, "rev_flow_table": 9, "xlate_actions": 607,
                                         "drop_action_of_pipeline": 3, "datapath_drop_tunnel_push_error": 1}


def test_one_group_of_the_kernels_snmp_counters_is_read_by_name():
    assert snmp_counters(SNMP, "Udp") == {"InDatagrams": 0, "NoPorts": 7, "InErrors": 0, "OutDatagrams": 0}
    assert snmp_counters(SNMP, "Icmp")["InEchos"] == 5
    assert snmp_counters(SNMP, "Tcp") == {}


def test_only_the_counters_of_a_loss_and_of_full_revalidations_are_kept():
    assert counters(COVERAGE, SNMP) == {"rev_reconfigure": 40, "drop_action_of_pipeline": 3,
                                        "datapath_drop_tunnel_push_error": 1, "Udp:NoPorts": 7}


def test_moved_names_the_counters_that_changed_and_by_how_much():
    before = {"Udp:NoPorts": 7, "rev_reconfigure": 40, "drop_action_of_pipeline": 3}
    after = {"Udp:NoPorts": 8, "rev_reconfigure": 42, "drop_action_of_pipeline": 3, "datapath_drop_meter": 1}
    assert moved(before, after) == {"Udp:NoPorts": 1, "datapath_drop_meter": 1, "rev_reconfigure": 2}
    assert moved(after, after) == {}


class Evidence:
    def report(self):
        return "hvb: counters moved {'Udp:NoPorts': 1}; route/address/link changes in its namespace: none"


def test_a_lost_request_is_reported_with_what_moved_on_the_path():
    p = Pinger.__new__(Pinger)
    p.seqs, p.unanswered, p.windows, p.lines = set(range(1, 201)) - {41}, {41: "100.065"}, [], []
    p.counters = {"InEchos": 199, "OutErrors": 0}
    p.responder = type("Responder", (), {"name": "b1"})()
    p.evidence = Evidence()
    with pytest.raises(AssertionError, match=r"icmp_seq=41 \(next sent .*\); hvb: counters moved \{'Udp:NoPorts': 1\}"):
        p.check(200, 199, 200, "now")
