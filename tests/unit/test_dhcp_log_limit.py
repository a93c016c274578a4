"""A VM flooding DHCP does not flood the log (openflow/dhcp_service.py): each request is logged at INFO at most once per
LOG_EVERY for the same port and message type, the first of each always, with a count of those left out; another
port's request, or the next message type of the same VM (its REQUEST after a DISCOVER), is logged at once."""

from __future__ import annotations

import logging

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
