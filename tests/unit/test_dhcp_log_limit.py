"""A VM flooding DHCP does not flood the log (openflow/dhcp_service.py): each request is logged at INFO at most once per
LOG_EVERY for the same port and message type, the first of each always, with a count of those left out; another
port's request, or the next message type of the same VM (its REQUEST after a DISCOVER), is logged at once. A request
ignored is keyed by the client's MAC too: each MAC a VM asks under has its line, in a table of its own kind."""

from __future__ import annotations

import logging

from controller import loglimit
from openflow import dhcp
from tests.unit.test_bare_metal import HOSTS, dhcp_service, punt_cookie, setup
from tests.unit.test_dhcp import dhcp_payload, frame
from tests.unit.test_dhcp_index import vport_punt_cookie
from tests.unit.test_loglimit import clock  # noqa: F401 - a fixture


def lines(caplog) -> list:
    return [r.getMessage() for r in caplog.records if r.name == "canopy.dhcp"]


def test_a_flooding_vm_logs_one_discover_per_interval_and_the_count_of_the_rest(caplog, clock):
    state, prog = setup()
    service = dhcp_service(state, prog)
    vm1, vm2 = state.policy.find("vport", "acme/web/vm1"), state.policy.find("vport", "acme/web/vm2")

    def ask(vm, kind=dhcp.DISCOVER):
        request = frame(dhcp_payload(msg_type=kind, mac=vm["mac"]), src_mac=vm["mac"])
        session = prog.view.endpoints[vm["id"]].session
        assert service.answer(int(HOSTS[session][0][-1]), vport_punt_cookie(prog, session, vm["id"]), request)

    with caplog.at_level(logging.INFO, logger="canopy.dhcp"):
        for _ in range(50):  # five seconds of vm1's meter's 10 a second
            ask(vm1)
            clock[0] += 0.1
        assert len(lines(caplog)) == 1 and "DHCPDISCOVER" in lines(caplog)[0]
        ask(vm2)  # another port: its own first line
        ask(vm1, dhcp.REQUEST)  # vm1's next message type: its lease is logged
        assert len(lines(caplog)) == 3 and "DHCPREQUEST" in lines(caplog)[2]
        clock[0] += 6  # the interval over: the next discover says how many were left out
        ask(vm1)
        assert len(lines(caplog)) == 4 and "(49 more like it not logged)" in lines(caplog)[3]
    assert service.counters == {"requests": 53, "answered": 53, "ignored": 0}


def test_unknown_macs_behind_a_hardware_vtep_each_log_their_own_ignored_line(caplog, clock):
    """The ignored lines of a hardware VTEP's DHCP are keyed by the client's MAC too, not only by the subnet's punt
    flow: one unknown MAC flooding does not hide another's line for LOG_EVERY."""
    state, prog = setup(gateway_chassis=["hv2"])
    service = dhcp_service(state, prog)

    def ask(mac):
        assert service.answer(2, punt_cookie(prog, "hv2"), frame(dhcp_payload(mac=mac), src_mac=mac)) is None

    with caplog.at_level(logging.INFO, logger="canopy.dhcp"):
        for _ in range(20):
            ask("02:00:00:00:0b:99")
            clock[0] += 0.1
        ask("02:00:00:00:0b:98")
    assert [line.split(" from ")[1].split(" ")[0] for line in lines(caplog)] == [
        "02:00:00:00:0b:99", "02:00:00:00:0b:98"]
    assert service.counters["ignored"] == 21


def test_a_vm_asking_under_macs_not_its_own_logs_a_line_per_mac_in_a_bounded_table(caplog, clock, monkeypatch):
    """vm1's port asks under MACs that are not vm1's (spoofed, or a nested VM's): each is ignored, and each MAC's line
    is logged (before: one line per port and message type for LOG_EVERY, whatever the MAC, so a second MAC's requests
    went unseen behind the first's). The ignored keys fill their own kind's table, bounded (KEYS_PER_KIND, the key
    logged longest ago forgotten), and the answered requests' limits stay as they were."""
    monkeypatch.setattr(loglimit, "KEYS_PER_KIND", 8)
    monkeypatch.setattr(loglimit, "GROUP_LINES", 100)  # the port's lines together not capped here (the next test)
    state, prog = setup()
    service = dhcp_service(state, prog)
    vm1 = state.policy.find("vport", "acme/web/vm1")
    session = prog.view.endpoints[vm1["id"]].session
    dpid, cookie = int(HOSTS[session][0][-1]), vport_punt_cookie(prog, session, vm1["id"])

    def ask(mac):
        return service.answer(dpid, cookie, frame(dhcp_payload(mac=mac), src_mac=mac))

    macs = ["02:00:00:00:0c:%02x" % n for n in range(20)]
    with caplog.at_level(logging.INFO, logger="canopy.dhcp"):
        assert ask(vm1["mac"])  # answered: its line
        for mac in macs + macs[:2]:  # every foreign MAC once, then the first two again within LOG_EVERY
            assert ask(mac) is None
            clock[0] += 0.1
        assert ask(vm1["mac"])  # answered again within LOG_EVERY: still limited
    ignored = [line.split(" from ")[1].split(" ")[0] for line in lines(caplog) if line.startswith("ignoring")]
    assert ignored == macs + macs[:2]  # the first two forgotten (the table holds 8): logged again, not lost
    assert len(loglimit._last_logged["dhcp ignored"]) == loglimit.KEYS_PER_KIND
    assert sum(line.startswith("DHCPDISCOVER") for line in lines(caplog)) == 1
    assert service.counters == {"requests": 24, "answered": 2, "ignored": 22}


def test_a_vm_asking_under_a_fresh_mac_each_time_logs_a_few_lines_per_interval_and_their_count(caplog, clock):
    """Each ignored MAC has its own line, but a port's ignored lines together are at most GROUP_LINES per LOG_EVERY
    (review of rest47: with a line per MAC, a VM putting a fresh MAC in every request logged every request); the
    port's next line, after the interval, says how many were left out, and another port is not held back by it."""
    state, prog = setup()
    service = dhcp_service(state, prog)
    vm1, vm2 = state.policy.find("vport", "acme/web/vm1"), state.policy.find("vport", "acme/web/vm2")

    def ask(vm, mac):
        session = prog.view.endpoints[vm["id"]].session
        cookie = vport_punt_cookie(prog, session, vm["id"])
        return service.answer(int(HOSTS[session][0][-1]), cookie, frame(dhcp_payload(mac=mac), src_mac=mac))

    with caplog.at_level(logging.INFO, logger="canopy.dhcp"):
        for n in range(50):  # five seconds of vm1's meter, each request under a MAC never seen
            assert ask(vm1, "02:00:00:00:0d:%02x" % n) is None
            clock[0] += 0.1
        assert len(lines(caplog)) == loglimit.GROUP_LINES
        assert ask(vm2, "02:00:00:00:0e:01") is None  # another port: its own line at once
        assert len(lines(caplog)) == loglimit.GROUP_LINES + 1
        clock[0] += 6  # vm1's interval over: its next line counts the lines left out
        assert ask(vm1, "02:00:00:00:0d:ff") is None
    last = lines(caplog)[-1]
    assert "02:00:00:00:0d:ff" in last and f"({50 - loglimit.GROUP_LINES} more lines of the same source left out)" in last
    assert service.counters["ignored"] == 52
