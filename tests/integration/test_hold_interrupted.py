"""SIGTERM during the start-up hold (docs/operations.md "After a restart: the start-up hold"): a controller restarted
while one of its two hypervisors cannot reach it holds every write; stopped in the middle of that hold, twice, it
exits at once and records nothing of it (the switches it remembers stay the two it knew), so each start waits for
both again; once kvm2 is back the hold ends, and nothing is written to either switch, with VM a pinging VM b all
along. On code that recorded the connected switches while holding, the next start would have waited for kvm1 alone
and, its hold over, removed b's flows from kvm1 until kvm2 reported."""

from __future__ import annotations

import time

import pytest

from tests.integration.test_ovsdb_reconnect import in_sync, sent, two_hypervisors
from tests.integration.test_store_guard import tenant_flows
from tests.integration.test_vtep_faults import Pings

pytestmark = pytest.mark.integration

NOTHING_SENT = {"change_sets": 0, "flow_add": 0, "flow_delete": 0, "group_add": 0, "group_delete": 0,
                "group_modify": 0, "meter_add": 0, "meter_modify": 0, "meter_delete": 0, "errors": 0}


def hold(canopy) -> dict:
    return canopy.api.get("/v1/status").json["startup_hold"]


def test_a_stop_during_the_start_up_hold_records_nothing_and_the_next_start_rewrites_nothing(lab):
    ctl, canopy, kvm1, kvm2, vm_a = two_hypervisors(lab)
    lab.wait_until(lambda: in_sync(canopy, (kvm1, kvm2)), timeout=20, what="both switches in sync")
    for hv in (kvm1, kvm2):  # back within a second of each start, not after OVS's 1, 2, 4, 8 s (docs/vrs.md)
        hv.set_max_backoff(1000)
    flows = {hv.name: tenant_flows(hv) for hv in (kvm1, kvm2)}
    away = ("OUTPUT", "-p", "tcp", "-d", ctl.ip, "-j", "DROP")  # kvm2 cannot reach the controller
    with Pings(vm_a, "10.0.1.12") as pings:
        canopy.stop()
        assert kvm2.exec("iptables", "-A", *away).returncode == 0
        try:
            for _ in range(2):
                canopy.start()
                lab.wait_until(lambda: [w["name"] for w in hold(canopy).get("waiting_for", [])] == ["kvm2"],
                               timeout=20, what="holding for kvm2 alone, kvm1 back")
                started = time.monotonic()
                canopy.stop()
                assert canopy.child.popen.returncode == 0
                # a stop that waited for the hold would take most of restart.hold_time (15 s by default: it has just
                # begun); a loaded machine's stop takes seconds
                assert time.monotonic() - started < 10.0, "a stop during the hold waits for nothing"
        finally:
            kvm2.exec("iptables", "-D", *away)
        canopy.start()
        assert hold(canopy)["state"] == "syncing"
        lab.wait_until(lambda: hold(canopy)["state"] == "synced", timeout=60, what="the hold over")
        assert hold(canopy)["message"] == "all 2 switches connected before have reported", hold(canopy)
        lab.wait_until(lambda: in_sync(canopy, (kvm1, kvm2)), timeout=30, what="both switches in sync")
        for name, counts in sent(canopy, (kvm1, kvm2)).items():
            assert {k: counts[k] for k in NOTHING_SENT} == NOTHING_SENT, (name, counts)
    assert {hv.name: tenant_flows(hv) for hv in (kvm1, kvm2)} == flows
    assert pings.lost == 0, pings.lost
    assert "hold time of" not in canopy.log_path.read_text()  # never released for lack of a switch
