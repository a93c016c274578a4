"""A redundant pair behind an FRR route reflector (iBGP, both nodes its clients): the reflector sends the active's
routes to the standby too, under the active's router id, so the standby does not refuse them as its own; their
VTEPs are the pair's own, so its View drops them. GET /v1/bgp/peers on the standby counted them as imported (8
while the active had 0); they are counted as own_vtep."""

from __future__ import annotations

import pytest

from tests.integration import frr
from tests.integration.test_ha import HA_SECRET, POLICY, role
from tests.integration.test_overlay import dhcp

pytestmark = pytest.mark.integration

ASN = 65000


def pair_settings(node, me, peer, priority, reflector):
    return {"ha": {"node_id": node, "peer": peer.ip, "priority": priority, "heartbeat_interval_ms": 100,
                   "dead_interval_ms": 500, "secret": HA_SECRET},
            "bgp": {"asn": ASN, "router_id": me.ip, "neighbors": [
                {"address": reflector.ip, "asn": ASN, "local_address": me.ip, "hold_time": 9, "rr_client": True}]}}


def bgp(ctl):
    return ctl.api.get("/v1/bgp/peers").json


def test_a_standby_counts_its_pairs_reflected_routes_as_its_own_vteps_not_imported(lab_capable):
    from tests.harness.lab import Lab

    with Lab() as lab:
        ctl_a, ctl_b, rr = (lab.add_controller_host(name) for name in ("ctla", "ctlb", "rr"))
        frr.start_route_reflector(lab, rr, ASN, [ctl_a.ip, ctl_b.ip])
        a = lab.start_controller(ctl_a, pair_settings("a", ctl_a, ctl_b, 200, rr), name="canopya")
        b = lab.start_controller(ctl_b, pair_settings("b", ctl_b, ctl_a, 100, rr), name="canopyb")
        lab.wait_until(lambda: role(a) == "active" and role(b) == "standby", timeout=30, what="A active, B standby")
        reply = a.api.post("/v1/apply", {"document": POLICY, "source": "ha"})
        assert reply.status == 200, reply.text
        hv = lab.add_hypervisor("hv1", "kvm")
        hv.connect([ctl_a, ctl_b])
        vm = lab.add_vm(hv, "w1", mac="02:00:00:00:01:01", vnic_id="w1")
        assert dhcp(lab, vm).get("ip"), "w1: no DHCP lease"
        lab.wait_until(lambda: all(bgp(c)["items"][0]["state"] == "up" for c in (a, b)), timeout=60,
                       what="both nodes' sessions with the reflector")
        lab.wait_until(lambda: bgp(b)["import"]["own_vtep"] >= 2, timeout=30,
                       what="the active's type 2 and 3 routes reflected to the standby")
        assert bgp(b)["import"]["imported"] == 0, bgp(b)
        assert bgp(a)["import"] == {"imported": 0, "own_vtep": 0, "ignored": 0}  # its own refused as own_route
        assert bgp(a)["items"][0]["refused"].get("own_route", 0) >= 1
