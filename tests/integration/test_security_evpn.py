"""Traffic from an EVPN peer meets the destination vport's ingress ACL, proven by packets (issue 14): two Canopy
controllers federated by MP-BGP EVPN (tests/integration/test_federation.py's tenant), each with its own
hypervisor. Controller A alone gives its VM a1 an ACL (default deny) that admits TCP 5432 from b1 (same subnet:
L2 VNI) and from b2 (another subnet: symmetric IRB over the L3 VNI), and ping from b1. b1 and b2 are VMs under
controller B: their packets reach A's hypervisor over VXLAN from B's VTEP, and A's ACL decides: what it allows
passes (and a1's replies, statefully), the rest is dropped and counted on a1's entering side; a1 itself opens
nothing towards them."""

from __future__ import annotations

import pytest

from tests.integration.test_federation import ASN_A, ASN_B, VPORTS, bgp_settings, peer_up, policy, remote_macs
from tests.integration.test_security_policy import ECHO, tcp

pytestmark = pytest.mark.integration

A1, B1, B2 = "10.0.1.11", "10.0.1.21", "10.0.2.21"
A1_IN = {"name": "a1-in", "default_action": "deny", "rules": [
    {"direction": "ingress", "action": "allow", "protocol": "tcp", "ports": "5432", "remote": f"{B1}/32"},
    {"direction": "ingress", "action": "allow", "protocol": "tcp", "ports": "5432", "remote": f"{B2}/32"},
    {"direction": "ingress", "action": "allow", "protocol": "icmp", "icmp_type": 8, "remote": f"{B1}/32"}]}
GATEWAYS = {"web": "10.0.1.1", "db": "10.0.2.1"}


def policy_of_a():
    """The federation's tenant, with a1 behind its own ACL (on controller A only)."""
    doc = policy([dict(v) for v in VPORTS])
    tenant = doc["tenants"][0]
    tenant["acls"] = [A1_IN]
    for subnet in tenant["domains"][0]["subnets"]:
        for vport in subnet["vports"]:
            if vport["name"] == "a1":
                vport["acls"] = ["a1-in"]
    return doc


@pytest.fixture(scope="module")
def fed(lab_capable):
    import sys

    from tests.harness.lab import Lab

    with Lab() as lab:
        ctl_a, ctl_b = lab.add_controller_host("ctla"), lab.add_controller_host("ctlb")
        a = lab.start_controller(ctl_a, bgp_settings(ctl_a, ctl_b, ASN_B, ASN_A, listen=True), name="canopya")
        b = lab.start_controller(ctl_b, bgp_settings(ctl_b, ctl_a, ASN_A, ASN_B, listen=False), name="canopyb")
        for api, doc in ((a.api, policy_of_a()), (b.api, policy([dict(v) for v in VPORTS]))):
            reply = api.post("/v1/apply", {"document": doc, "source": "fed"})
            assert reply.status == 200, reply.text
        hva, hvb = lab.add_hypervisor("hva", "kvm"), lab.add_hypervisor("hvb", "kvm")
        hva.connect(ctl_a)
        hvb.connect(ctl_b)
        vms = {}
        for v in VPORTS:
            if v["name"] == "mover":
                continue
            hv = hva if v["name"].startswith("a") else hvb
            vm = vms[v["name"]] = lab.add_vm(hv, v["name"], mac=v["mac"], ip=f"{v['ips'][0]}/24", vnic_id=v["name"])
            vm.exec("ip", "route", "add", "default", "via", GATEWAYS[v["subnet"]], check=True)
        for name in ("a1", "b1"):
            lab.spawn(f"echo-{name}", [sys.executable, ECHO, "serve", "22", "5432", "8080"],
                      lab.workdir / f"echo-{name}.log", ns=vms[name].ns)
        lab.wait_until(lambda: peer_up(a.api) and peer_up(b.api), timeout=60, what="the EVPN session A-B")
        lab.wait_until(lambda: {"02:00:00:0b:00:01", "02:00:00:0b:00:02"} <= set(remote_macs(a.api)), timeout=30,
                       what="B's VMs in A's received routes")
        # the EVPN paths work where no ACL decides: b2 -> a2 (L2 VNI), b1 -> a2 (L3 VNI)
        lab.wait_until(lambda: vms["b2"].ping("10.0.2.11", timeout=1), timeout=30, what="b2 reaches a2")
        lab.wait_until(lambda: vms["b1"].ping("10.0.2.11", timeout=1), timeout=30, what="b1 reaches a2 (routed)")
        yield lab, a, vms


def entering(api, vport="a1"):
    vid = api.get(f"/v1/vports?name={vport}").json["items"][0]["id"]
    return api.get(f"/v1/vports/{vid}/acl-stats").json["entering"]


def test_what_the_ingress_acl_allows_from_evpn_peers_passes(fed):
    lab, _, vms = fed
    lab.wait_until(lambda: tcp(vms["b1"], A1), timeout=30, what="b1 (under B, L2 VNI) -> a1 tcp 5432")
    lab.wait_until(lambda: tcp(vms["b2"], A1), timeout=30, what="b2 (under B, L3 VNI) -> a1 tcp 5432")
    lab.wait_until(lambda: vms["b1"].ping(A1, timeout=1), timeout=20, what="b1 -> a1 ping")


def test_what_it_does_not_allow_is_dropped_at_a1(fed):
    lab, a, vms = fed
    lab.wait_until(lambda: tcp(vms["b1"], A1), timeout=30, what="the policy is in place")
    before = entering(a.api)
    assert not tcp(vms["b1"], A1, 22), "b1 -> a1 tcp 22 has no rule"
    assert not tcp(vms["b2"], A1, 8080), "b2 -> a1 tcp 8080 has no rule"
    assert not vms["b2"].ping(A1, count=2, timeout=2), "ping is allowed from b1 only"
    lab.wait_until(lambda: entering(a.api)["default_denied"] >= before["default_denied"] + 3, timeout=15,
                   what="the drops counted on a1's entering side (flow statistics)")


def test_a1_answers_but_opens_nothing_towards_them(fed):
    lab, _, vms = fed
    lab.wait_until(lambda: tcp(vms["b1"], A1), timeout=30, what="b1 -> a1 (a1's replies are return traffic)")
    assert not tcp(vms["a1"], B1), "a1 -> b1: no egress rule, default deny"
