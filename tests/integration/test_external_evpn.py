"""A floating IP over EVPN, against GoBGP (Debian's gobgpd) as the DC gateway's route reflector: while the floating
IP is active GoBGP holds it as a type-5 /32 of its domain (L3 VNI, route target, next hop: the VTEP of the
hypervisor that translates for it); detached, it is withdrawn; attached again, announced again. A second Canopy
behind the same reflector (a branch of the same domain, another subnet) learns the /32 and reaches the VM through
it by TCP: the VM's answers, routed back over EVPN, leave with the floating IP (they would be refused with the
inside address)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from controller.extnet import nat_zones
from tests.integration.gobgp import lab_gobgp_reflector

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not shutil.which("gobgpd"), reason="gobgpd (Debian package gobgpd) not installed")]

ECHO = str(Path(__file__).resolve().parents[1] / "harness" / "echo.py")
L3_VNI, ASN = 9601, 65000
FIP = "203.0.113.10"
POLICY = {
    "external_networks": [{"name": "public", "cidr": "203.0.113.0/24", "gateway": "203.0.113.1",
                           "gateway_mac": "02:00:00:ee:00:01"}],
    "tenants": [{"name": "acme",
                 "floating_ips": [{"name": "w1", "external_network": "public", "address": FIP, "vport": "web/w1"}],
                 "domains": [{"name": "prod", "l3_vni": L3_VNI, "external_network": "public", "subnets": [
                     {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", "vports": [
                         {"name": "w1", "mac": "02:00:00:00:01:01", "ips": ["10.0.1.11"],
                          "binding": {"flavour": "kvm"}}]}]}]}]}
BRANCH = {"tenants": [{"name": "acme", "domains": [{"name": "prod", "l3_vni": L3_VNI, "subnets": [
    {"name": "branch", "cidr": "10.0.9.0/24", "gateway": "10.0.9.1", "vports": [
        {"name": "c1", "mac": "02:00:00:00:09:01", "ips": ["10.0.9.11"], "binding": {"flavour": "kvm"}}]}]}]}]}


def bgp(me, peer):
    return {"bgp": {"asn": ASN, "router_id": me.ip, "neighbors": [
        {"address": peer.ip, "asn": ASN, "local_address": me.ip, "hold_time": 9, "rr_client": True}]}}


def own_rds(doc, me):
    """This controller's own RDs (the reflector keeps one best path per RD)."""
    for number, dom in enumerate(doc["tenants"][0]["domains"], start=1):
        dom["rd"] = f"{me.ip}:{number}"
        for sub_number, sub in enumerate(dom["subnets"], start=10):
            sub["rd"] = f"{me.ip}:{sub_number}"
    return doc


def vm_with_echo(lab, hv, name, mac, cidr, gateway):
    vm = lab.add_vm(hv, name, mac=mac, ip=cidr, vnic_id=name)
    vm.exec("ip", "route", "add", "default", "via", gateway, check=True)
    lab.spawn(f"echo-{name}", [sys.executable, ECHO, "serve", "22"], lab.workdir / f"echo-{name}.log", ns=vm.ns)
    return vm


@pytest.fixture(scope="module")
def interop(lab_capable):
    from tests.harness.lab import Lab

    with Lab() as lab:
        ctl, ctl_b = lab.add_controller_host("ctl1"), lab.add_controller_host("ctl2")
        peer = lab_gobgp_reflector(lab, ASN, [ctl, ctl_b])
        canopy = lab.start_controller(ctl, bgp(ctl, peer))
        branch = lab.start_controller(ctl_b, bgp(ctl_b, peer), name="branch")
        for api, doc, me in ((canopy.api, POLICY, ctl), (branch.api, BRANCH, ctl_b)):
            reply = api.post("/v1/apply", {"document": own_rds(json.loads(json.dumps(doc)), me), "source": "t"})
            assert reply.status == 200, reply.text
        hv, hv_b = lab.add_hypervisor("kvm1", "kvm"), lab.add_hypervisor("kvm2", "kvm")
        hv.vsctl("add-port", "br-int", "up0", "--", "set", "Interface", "up0", "type=internal",
                 "external_ids:canopy-external-network=public")
        hv.connect(ctl)
        hv_b.connect(ctl_b)
        vms = {"w1": vm_with_echo(lab, hv, "w1", "02:00:00:00:01:01", "10.0.1.11/24", "10.0.1.1"),
               "c1": vm_with_echo(lab, hv_b, "c1", "02:00:00:00:09:01", "10.0.9.11/24", "10.0.9.1")}

        def gobgp(*args):
            done = peer.exec("gobgp", "-u", "127.0.0.1", "-p", "50051", *args, timeout=15)
            assert done.returncode == 0, done.stderr
            return done.stdout

        lab.wait_until(lambda: all(api.get("/v1/bgp/peers").json["items"][0]["state"] == "up"
                                   for api in (canopy.api, branch.api)), timeout=60,
                       what="both controllers' sessions with GoBGP")
        yield lab, canopy, hv, gobgp, vms


def host_routes(gobgp):
    table = json.loads(gobgp("global", "rib", "-a", "evpn", "-j") or "{}")
    return {p["nlri"]["value"]["prefix"]: p for paths in table.values() for p in paths
            if p["nlri"]["type"] == 5 and p["nlri"]["value"]["prefix"].endswith("/32")}


def tcp(vm, ip, port):
    return vm.exec(sys.executable, ECHO, "probe", "tcp", ip, str(port), timeout=10).returncode == 0


def test_an_evpn_peer_reaches_a_vm_through_its_floating_ip_and_gets_answers_from_it(interop):
    """c1 (the branch, behind the other Canopy) connects to the floating IP: routed over the L3 VNI to kvm1,
    translated to w1; w1's answers, routed back over EVPN to the branch's prefix, are translated back to the
    floating IP, the only source c1's TCP accepts. Each connection is counted once by kvm1's switch."""
    lab, canopy, hv, _, vms = interop
    lab.wait_until(lambda: tcp(vms["c1"], FIP, 22), timeout=60, what="c1 connects to w1 through its floating IP")
    fip = canopy.api.get("/v1/floating-ips?name=w1").json["items"][0]
    ctl = str(hv.ovs.rundir / "ovs-vswitchd.ctl")

    def opened():
        hv.exec("ovs-appctl", "-t", ctl, "revalidator/wait", check=True)
        hv.exec("ovs-appctl", "-t", ctl, "revalidator/wait", check=True)
        return canopy.api.get(f"/v1/floating-ips/{fip['id']}/stats").json["connections_opened"]["inbound"]

    before = opened()
    for _ in range(3):
        assert tcp(vms["c1"], FIP, 22)
    assert opened() - before == 3
    zone = nat_zones([L3_VNI])[L3_VNI]  # the domain's NAT zone on kvm1 (its only domain with a floating IP)
    dump = hv.exec("ovs-appctl", "-t", ctl, "dpctl/dump-conntrack", f"zone={zone}", check=True).stdout
    assert f"src=10.0.9.11,dst={FIP}" in dump and "src=10.0.1.11,dst=10.0.9.11" in dump, dump
    assert tcp(vms["w1"], "10.0.9.11", 22), "w1's own connections to the branch keep its inside address"


def test_the_dc_gateway_learns_where_a_floating_ip_is_and_forgets_it_when_detached(interop):
    lab, canopy, hv, gobgp, _ = interop
    lab.wait_until(lambda: f"{FIP}/32" in host_routes(gobgp), timeout=30, what="the floating IP's /32 in GoBGP")
    path = host_routes(gobgp)[f"{FIP}/32"]
    assert path["nlri"]["value"]["label"] == L3_VNI
    assert next(a["nexthop"] for a in path["attrs"] if a["type"] == 14) == hv.vtep_ip
    rts = {c["value"] for a in path["attrs"] if a["type"] == 16 for c in a["value"] if c.get("subtype") == 2}
    assert rts == {f"{ASN}:{L3_VNI}"}
    fip = canopy.api.get("/v1/floating-ips?name=w1").json["items"][0]
    assert fip["active_on"]["chassis"] == "kvm1"
    vport = fip["vport_id"]
    assert canopy.api.patch(f"/v1/floating-ips/{fip['id']}", {"vport_id": None}).status == 200
    lab.wait_until(lambda: f"{FIP}/32" not in host_routes(gobgp), timeout=30, what="the /32 withdrawn")
    assert canopy.api.patch(f"/v1/floating-ips/{fip['id']}", {"vport_id": vport}).status == 200
    lab.wait_until(lambda: f"{FIP}/32" in host_routes(gobgp), timeout=30, what="the /32 announced again")
