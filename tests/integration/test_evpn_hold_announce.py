"""The EVPN routes during the start-up hold, behind a peer without graceful restart for EVPN (FRR 8.4 as the route
reflector: it drops a restarting Canopy's routes at once, docs/evpn.md).

Two Canopy controllers in one AS, each an iBGP client of one FRR route reflector: A drives two hypervisors (a1 on
hva, a2 on hva2), B drives hvb (b1). A is killed (SIGKILL) and the reflector drops A's routes; A starts again while
hva2 stays away (its packets to A dropped), so A's start-up hold lasts restart.hold_time after hva came back. Within
a few seconds of A's session with the reflector coming up, and long before the hold ends, the reflector and B hold
a1's route again and b1 reaches a1 (controller/routepass.py); a2's route (its switch not back) is not announced, nor
is End-of-RIB sent, until the hold ends. Once hva2 is back the hold ends and both follow.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.integration import frr
from tests.integration.test_evpn_frr import (ASN, MACS, apply_policies, bgp_settings, controller_policy, peers,
                                             received_macs, sessions_and_leases)
from tests.integration.test_evpn_gr_restart import dropping
from tests.integration.test_overlay import reach

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not frr.AVAILABLE and os.environ.get("CI") != "true",
                                 reason="FRR bgpd (Debian package frr) not installed")]

HOLD = {"restart": {"hold_time": 45, "hold_max": 60}}  # long against what the test waits for (a1's route back)
# How long a1's route may take to come back after A's session with the reflector is up: what is proven is that it is
# back while A's hold still runs (looked at when it is seen back), not how fast a loaded machine gets there; the
# bound only ends a failing run, and is longer than the hold itself.
ANNOUNCED_WITHIN = HOLD["restart"]["hold_max"] + 30


@pytest.fixture(scope="module")
def frrlab(lab_capable):
    from tests.harness.lab import Lab

    with Lab() as lab:
        ctl_a, ctl_b, rr_host = (lab.add_controller_host(name) for name in ("ctla", "ctlb", "rr"))
        rr = frr.start_route_reflector(lab, rr_host, ASN, [ctl_a.ip, ctl_b.ip])
        a = lab.start_controller(ctl_a, {**bgp_settings(ctl_a, (rr_host,)), **HOLD}, name="canopya")
        b = lab.start_controller(ctl_b, bgp_settings(ctl_b, (rr_host,)), name="canopyb")
        apply_policies(((a.api, controller_policy(ctl_a)), (b.api, controller_policy(ctl_b))), "holdannounce")
        hva, hva2, hvb = (lab.add_hypervisor(name, "kvm") for name in ("hva", "hva2", "hvb"))
        for hv, ctl in ((hva, ctl_a), (hva2, ctl_a), (hvb, ctl_b)):
            hv.connect(ctl)
        vms = {name: lab.add_vm(hv, name, mac=MACS[name], vnic_id=name)
               for name, hv in (("a1", hva), ("a2", hva2), ("b1", hvb))}
        sessions_and_leases(lab, (a.api, b.api), (rr_host.ip,), vms, "both controllers' sessions with the reflector")
        yield lab, a, b, vms, rr, ctl_a, hva2


def hold_state(api) -> str:
    return api.get("/v1/status").json["startup_hold"]["state"]


def test_a_restarting_controller_announces_what_it_knows_during_its_hold(frrlab):
    lab, a, b, vms, rr, ctl_a, hva2 = frrlab
    a1, a2 = MACS["a1"], MACS["a2"]
    lab.wait_until(lambda: {a1, a2} <= rr.evpn_macs() and {a1, a2} <= received_macs(b.api), timeout=30,
                   what="A's VMs at the reflector and B")
    reach(lab, vms["b1"], "10.0.1.11", timeout=30)  # b1 -> a1
    a.kill()
    with dropping(ctl_a, hva2.mgmt_ip):  # hva2 stays away from A's new process
        lab.wait_until(lambda: not {a1, a2} & rr.evpn_macs(), timeout=30,
                       what="the reflector (no graceful restart for EVPN) to drop A's routes")
        a.start()
        assert hold_state(a.api) == "syncing"
        lab.wait_until(lambda: peers(a.api)[rr.host.ip]["state"] == "up", timeout=30,
                       what="A's new session with the reflector")
        up_at = time.monotonic()
        held = []  # A's hold state at each look, taken before the look at the routes: the last one is when a1 came back

        def a1_back() -> bool:
            held.append(hold_state(a.api))
            return a1 in rr.evpn_macs() and a1 in received_macs(b.api)

        lab.wait_until(a1_back, timeout=ANNOUNCED_WITHIN, what="a1's route at the reflector and B")
        back_in = time.monotonic() - up_at
        assert held[-1] == "syncing", f"a1's route came back {back_in:.1f} s after A's session, its hold over by then"
        reach(lab, vms["b1"], "10.0.1.11", timeout=10)  # b1 -> a1, whose switch is back
        assert hold_state(a.api) == "syncing", "the hold ended before the test could look: raise its hold_time"
        assert a2 not in rr.evpn_macs() and a2 not in received_macs(b.api)  # its switch is not back
        assert not peers(a.api)[rr.host.ip]["end_of_rib_sent"]  # End-of-RIB only once every route is announced
    lab.wait_until(lambda: hold_state(a.api) == "synced", timeout=90, what="A's hold to end with hva2 back")
    lab.wait_until(lambda: a2 in rr.evpn_macs() and a2 in received_macs(b.api), timeout=30,
                   what="a2's route at the reflector and B after the hold")
    lab.wait_until(lambda: peers(a.api)[rr.host.ip]["end_of_rib_sent"], timeout=30, what="A's End-of-RIB")
    print(f"a1's route back at the reflector and B {back_in:.1f} s after A's session came up")
