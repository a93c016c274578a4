"""A floating IP over EVPN, against GoBGP (Debian's gobgpd) as the DC gateway: while the floating IP is active
GoBGP holds it as a type-5 /32 of its domain (L3 VNI, route target, next hop: the VTEP of the hypervisor that
translates for it); detached, it is withdrawn; attached again, announced again."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.integration.gobgp import lab_gobgp_and_canopy

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not shutil.which("gobgpd"), reason="gobgpd (Debian package gobgpd) not installed")]

L3_VNI, GOBGP_ASN, CANOPY_ASN = 9601, 65099, 65000
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


@pytest.fixture(scope="module")
def interop(lab_capable):
    from tests.harness.lab import Lab

    with Lab() as lab:
        ctl, peer, canopy = lab_gobgp_and_canopy(lab, GOBGP_ASN, CANOPY_ASN, POLICY)
        hv = lab.add_hypervisor("kvm1", "kvm")
        hv.vsctl("add-port", "br-int", "up0", "--", "set", "Interface", "up0", "type=internal",
                 "external_ids:canopy-external-network=public")
        hv.connect(ctl)
        lab.add_vm(hv, "w1", mac="02:00:00:00:01:01", ip="10.0.1.11/24", vnic_id="w1")

        def gobgp(*args):
            done = peer.exec("gobgp", "-u", "127.0.0.1", "-p", "50051", *args, timeout=15)
            assert done.returncode == 0, done.stderr
            return done.stdout

        lab.wait_until(lambda: canopy.api.get("/v1/bgp/peers").json["items"][0]["state"] == "up", timeout=60,
                       what="Canopy's session with GoBGP")
        yield lab, canopy, hv, gobgp


def host_routes(gobgp):
    table = json.loads(gobgp("global", "rib", "-a", "evpn", "-j") or "{}")
    return {p["nlri"]["value"]["prefix"]: p for paths in table.values() for p in paths
            if p["nlri"]["type"] == 5 and p["nlri"]["value"]["prefix"].endswith("/32")}


def test_the_dc_gateway_learns_where_a_floating_ip_is_and_forgets_it_when_detached(interop):
    lab, canopy, hv, gobgp = interop
    lab.wait_until(lambda: f"{FIP}/32" in host_routes(gobgp), timeout=30, what="the floating IP's /32 in GoBGP")
    path = host_routes(gobgp)[f"{FIP}/32"]
    assert path["nlri"]["value"]["label"] == L3_VNI
    assert next(a["nexthop"] for a in path["attrs"] if a["type"] == 14) == hv.vtep_ip
    rts = {c["value"] for a in path["attrs"] if a["type"] == 16 for c in a["value"] if c.get("subtype") == 2}
    assert rts == {f"{CANOPY_ASN}:{L3_VNI}"}
    fip = canopy.api.get("/v1/floating-ips?name=w1").json["items"][0]
    assert fip["active_on"]["chassis"] == "kvm1"
    vport = fip["vport_id"]
    assert canopy.api.patch(f"/v1/floating-ips/{fip['id']}", {"vport_id": None}).status == 200
    lab.wait_until(lambda: f"{FIP}/32" not in host_routes(gobgp), timeout=30, what="the /32 withdrawn")
    assert canopy.api.patch(f"/v1/floating-ips/{fip['id']}", {"vport_id": vport}).status == 200
    lab.wait_until(lambda: f"{FIP}/32" in host_routes(gobgp), timeout=30, what="the /32 announced again")
