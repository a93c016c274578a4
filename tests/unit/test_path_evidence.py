"""What a lost ping's report says of the path's hypervisors (tests.harness.path_evidence): the counters kept and
compared, read from the texts Open vSwitch 3.1 and the kernel print."""

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.harness import path_evidence
from tests.harness.path_evidence import counters, coverage_totals, moved, snmp_counters
from tests.harness.wait import wait_until
from tests.integration.test_evpn_frr import Pinger
from tests.unit.pings import ping_lines, stopped_pinger

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
    p = stopped_pinger(ping_lines(200, {41}), 199, "b1", Evidence())
    with pytest.raises(AssertionError, match=r"icmp_seq=41 \(left .*-.*\); hvb: counters moved \{'Udp:NoPorts': 1\}"):
        p.check(200, 199, 200, "now")


def test_a_monitors_line_lands_after_the_older_ones_though_the_reader_sought_back():
    """The monitor writes through the file description it inherited: its offset is the reader's."""
    log = path_evidence.event_log()
    os.write(log.fileno(), b"[1] first\n")
    log.seek(0)  # events() reads from the start: the monitor's offset moves too
    os.write(log.fileno(), b"[2] second\n")
    log.seek(0)
    assert log.read().splitlines() == ["[1] first", "[2] second"]


class Monitor:
    """A monitor process that ends on SIGTERM, or not at all if ``stubborn``."""

    def __init__(self, stubborn=False):
        self.stubborn, self.returncode = stubborn, None

    def poll(self):
        return self.returncode

    def terminate(self):
        if not self.stubborn:
            self.returncode = -signal.SIGTERM

    def wait(self, timeout=None):
        if self.returncode is None:
            raise subprocess.TimeoutExpired("ip", timeout)
        return self.returncode


class Hv:
    def __init__(self, name):
        self.name, self.ns = name, f"lab-{name}"
        self.ovs = type("Ovs", (), {"appctl": lambda _, *args: COVERAGE})()

    def exec(self, *argv):
        return type("Done", (), {"stdout": SNMP})()


def monitors_started(monkeypatch, *outcomes):
    """subprocess.Popen as PathEvidence sees it: each call the next of ``outcomes`` (a Monitor, or an exception to
    raise); returns the list of the monitors it started."""
    started, queue = [], list(outcomes)

    def popen(argv, **_):
        outcome = queue.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        started.append(outcome)
        return outcome

    monkeypatch.setattr(path_evidence.subprocess, "Popen", popen)
    return started


def test_a_monitor_that_does_not_end_when_asked_is_killed_with_its_child_and_the_others_end_too(monkeypatch):
    """Real processes: ``timeout`` running a child that ignores SIGTERM (as the monitors' ``timeout`` runs ``ip``)."""
    stubborn = "trap '' TERM; echo ready $$; exec sleep 60"  # sleep keeps the pid and the ignored SIGTERM
    argv = {"lab-hva": ["timeout", "60", "sh", "-c", stubborn], "lab-hvb": ["sleep", "60"]}
    monkeypatch.setattr(path_evidence, "netns_argv", lambda ns, watch: argv[ns])
    monkeypatch.setattr(path_evidence, "STOP_WAIT", 0.2)
    evidence = path_evidence.PathEvidence([Hv("hva"), Hv("hvb")])
    log = evidence._logs["hva"]
    try:
        said = wait_until(lambda: log.seek(0) == 0 and log.read().split(), timeout=10, what="the child's trap set")
    finally:
        evidence.stop()
    assert all(monitor.poll() is not None for monitor in evidence._monitors.values())
    child = Path(f"/proc/{said[1]}/status")
    wait_until(lambda: not child.exists() or "State:\tZ" in child.read_text(), timeout=10,
               what=f"timeout's child {said[1]} killed too")  # gone, or dead and not yet reaped
    assert evidence.moved() == {"hva": {}, "hvb": {}}


def test_a_monitor_that_cannot_start_leaves_none_of_the_others_running(monkeypatch):
    started = monitors_started(monkeypatch, Monitor(), OSError("no ip"))
    with pytest.raises(OSError, match="no ip"):
        path_evidence.PathEvidence([Hv("hva"), Hv("hvb")])
    assert [m.returncode for m in started] == [-signal.SIGTERM]


class Stopped:
    """Evidence that only says whether it was stopped."""

    stopped = False

    def stop(self):
        self.stopped = True


def test_a_ping_that_does_not_stop_still_ends_the_evidences_monitors():
    p = Pinger.__new__(Pinger)
    p.proc, p.evidence = Monitor(stubborn=True), Stopped()
    p.proc.send_signal = lambda sig: None  # SIGINT, ignored
    with pytest.raises(subprocess.TimeoutExpired):
        p.stop()
    assert p.evidence.stopped


def test_a_ping_that_cannot_start_ends_the_evidences_monitors(monkeypatch):
    import tests.integration.test_evpn_frr as module

    evidence = Stopped()
    monkeypatch.setattr(module, "PathEvidence", lambda hypervisors: evidence)
    monkeypatch.setattr(module.subprocess, "Popen", lambda *a, **k: (_ for _ in ()).throw(OSError("no ping")))
    responder = type("Responder", (), {"icmp_counters": lambda self: {"InEchos": 0, "OutErrors": 0}})()
    vm = type("Vm", (), {"ns": "lab-a1"})()
    with pytest.raises(OSError, match="no ping"):
        Pinger(vm, responder, "10.0.1.21")
    assert evidence.stopped


def test_a_request_that_never_reached_the_responder_is_named_with_what_moved_even_if_replies_may_be_lost():
    """check_reached, as tests/integration/test_ha_hold_frr.py uses it: replies lost pass, a request lost does not."""
    p = stopped_pinger(ping_lines(200, {41, 42}), 200, "b1", Evidence())  # 41 and 42: their replies were lost
    p.check_reached(200, "across the takeover")
    p.counters["InEchos"] = 199
    with pytest.raises(AssertionError, match=r"1 of 200 echo requests never reached b1 across the takeover .*"
                                             r"icmp_seq=41 .*hvb: counters moved \{'Udp:NoPorts': 1\}"):
        p.check_reached(200, "across the takeover")
