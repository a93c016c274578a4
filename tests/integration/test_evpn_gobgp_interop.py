"""Canopy's EVPN against an independent implementation: GoBGP (Debian's gobgpd) as a BGP peer.

What Canopy announces shows in ``gobgp global rib -a evpn`` with the right VNIs, route targets, VXLAN
encapsulation, Router's MAC and PMSI; routes added in GoBGP (macadv, multicast, prefix) appear in
Canopy's REST and become flows on the VRS; withdrawing them in GoBGP removes them; routes for route
targets Canopy does not import are ignored."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.harness.process import child_running
from tests.integration.gobgp import lab_gobgp_and_canopy

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not shutil.which("gobgpd"), reason="gobgpd (Debian package gobgpd) not installed")]

WEB_VNI, L3_VNI = 6101, 9601
GOBGP_ASN, CANOPY_ASN = 65099, 65000
REMOTE_VTEP = "10.251.0.200"  # a VTEP GoBGP speaks for (inside the lab's underlay prefix)
POLICY = {"tenants": [{"name": "acme", "domains": [{
    "name": "prod", "l3_vni": L3_VNI, "subnets": [
        {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", "vni": WEB_VNI, "vports": [
            {"name": "w1", "mac": "02:00:00:00:01:01", "ips": ["10.0.1.11"], "binding": {"flavour": "kvm"}}]}]}]}]}
WEB_RT, L3_RT = f"{CANOPY_ASN}:{WEB_VNI}", f"{CANOPY_ASN}:{L3_VNI}"


@pytest.fixture(scope="module")
def interop(lab_capable):
    from tests.harness.lab import Lab

    with Lab() as lab:
        ctl, peer, canopy = lab_gobgp_and_canopy(lab, GOBGP_ASN, CANOPY_ASN, POLICY)
        hv = lab.add_hypervisor("kvm1", "kvm")
        hv.connect(ctl)
        lab.add_vm(hv, "w1", mac="02:00:00:00:01:01", ip="10.0.1.11/24", vnic_id="w1")

        def gobgp(*args, check=True):
            done = peer.exec("gobgp", "-u", "127.0.0.1", "-p", "50051", *args, timeout=15)
            if check:
                assert done.returncode == 0, done.stderr
            return done.stdout

        lab.wait_until(lambda: canopy.api.get("/v1/bgp/peers").json["items"][0]["state"] == "up", timeout=60,
                       what="Canopy's session with GoBGP")
        yield lab, canopy, hv, gobgp


def gobgp_paths(gobgp):
    table = json.loads(gobgp("global", "rib", "-a", "evpn", "-j") or "{}")
    return [path for paths in table.values() for path in paths]


def communities(path):
    return next((a["value"] for a in path["attrs"] if a["type"] == 16), [])


def test_what_canopy_announces_shows_in_gobgp_with_the_right_attributes(interop):
    lab, canopy, hv, gobgp = interop
    want = {2, 3, 5}
    lab.wait_until(lambda: want <= {p["nlri"]["type"] for p in gobgp_paths(gobgp)}, timeout=30,
                   what="Canopy's type 2, 3 and 5 routes in GoBGP")
    paths = {p["nlri"]["type"]: p for p in gobgp_paths(gobgp)}
    mac = paths[2]
    assert mac["nlri"]["value"]["mac"] == "02:00:00:00:01:01" and mac["nlri"]["value"]["ip"] == "10.0.1.11"
    assert mac["nlri"]["value"]["labels"] == [WEB_VNI, L3_VNI]
    router_mac = "02:cb:" + ":".join(f"{int(o):02x}" for o in hv.vtep_ip.split("."))
    assert {"type": 6, "subtype": 3, "mac": router_mac} in communities(mac)
    for kind, rts in ((2, {WEB_RT, L3_RT}), (3, {WEB_RT}), (5, {L3_RT})):
        found = {c["value"] for c in communities(paths[kind]) if c.get("subtype") == 2}
        assert found == rts, kind
        assert {"type": 3, "subtype": 12, "tunnel_type": 8} in communities(paths[kind])
        nexthop = next(a["nexthop"] for a in paths[kind]["attrs"] if a["type"] == 14)
        assert nexthop == hv.vtep_ip
    pmsi = next(a for a in paths[3]["attrs"] if a["type"] == 22)
    assert (pmsi["tunnel-type"], pmsi["label"], pmsi["tunnel-id"]) == (6, WEB_VNI, hv.vtep_ip)
    assert paths[5]["nlri"]["value"]["prefix"] == "10.0.1.0/24" and paths[5]["nlri"]["value"]["label"] == L3_VNI


def received(canopy, kind):
    return canopy.api.get(f"/v1/bgp/routes?direction=in&type={kind}").json["items"]


def flows(hv):
    return hv.ofctl("dump-flows", "br-int").lower()


def test_routes_added_in_gobgp_become_canopy_routes_and_flows(interop):
    lab, canopy, hv, gobgp = interop
    gobgp("global", "rib", "-a", "evpn", "add", "macadv", "02:aa:00:00:00:09", "10.0.1.99", "etag", "0",
          "label", f"{WEB_VNI},{L3_VNI}", "rd", "10.250.0.99:1", "rt", WEB_RT, L3_RT, "encap", "vxlan",
          "router-mac", "02:cb:0a:fb:00:c8", "nexthop", REMOTE_VTEP)
    gobgp("global", "rib", "-a", "evpn", "add", "multicast", REMOTE_VTEP, "etag", "0", "rd", "10.250.0.99:1",
          "rt", WEB_RT, "encap", "vxlan", "pmsi", "ingress-repl", str(WEB_VNI), REMOTE_VTEP, "nexthop", REMOTE_VTEP)
    gobgp("global", "rib", "-a", "evpn", "add", "prefix", "172.16.9.0/24", "172.16.9.1", "etag", "0",
          "label", str(L3_VNI), "rd", "10.250.0.99:2", "rt", L3_RT, "encap", "vxlan", "router-mac",
          "02:cb:0a:fb:00:c8", "nexthop", REMOTE_VTEP)
    gobgp("global", "rib", "-a", "evpn", "add", "macadv", "02:aa:00:00:00:0a", "0.0.0.0", "etag", "0",
          "label", str(WEB_VNI), "rd", "10.250.0.99:3", "rt", "65123:1", "encap", "vxlan", "nexthop", REMOTE_VTEP)
    lab.wait_until(lambda: len(received(canopy, 2)) == 2 and received(canopy, 3) and received(canopy, 5),
                   timeout=30, what="GoBGP's routes in Canopy's REST")
    macs = {r["mac"]: r for r in received(canopy, 2)}
    assert (macs["02:aa:00:00:00:09"]["l2_vni"], macs["02:aa:00:00:00:09"]["l3_vni"]) == (WEB_VNI, L3_VNI)
    assert received(canopy, 3)[0]["vni"] == WEB_VNI and received(canopy, 5)[0]["prefix"] == "172.16.9.0/24"

    def programmed():
        text = flows(hv)
        return ("dl_dst=02:aa:00:00:00:09" in text and "nw_dst=172.16.9.0/24" in text
                and text.count(f"tun_dst:{REMOTE_VTEP}") + text.count(f"set_field:{REMOTE_VTEP}->tun_dst") >= 3)

    lab.wait_until(programmed, timeout=20, what="flows to GoBGP's VTEP on the VRS")
    assert "02:aa:00:00:00:0a" not in flows(hv)  # a route target Canopy does not import
    bucket = hv.ofctl("-O", "OpenFlow13", "dump-groups", "br-int").lower()
    assert f"{REMOTE_VTEP}->tun_dst" in bucket  # the type 3 VTEP is in the subnet's flood list
    peers = canopy.api.get("/v1/bgp/peers").json
    assert peers["items"][0]["received"] == 4 and peers["import"]["ignored"] == 1

    gobgp("global", "rib", "-a", "evpn", "del", "macadv", "02:aa:00:00:00:09", "10.0.1.99", "etag", "0",
          "label", f"{WEB_VNI},{L3_VNI}", "rd", "10.250.0.99:1")
    lab.wait_until(lambda: "02:aa:00:00:00:09" not in flows(hv), timeout=20, what="withdrawn MAC's flows gone")


def canopy_types(gobgp, hv):
    """Route types GoBGP holds from Canopy (next hop: the hypervisor's VTEP)."""
    return {p["nlri"]["type"] for p in gobgp_paths(gobgp)
            if any(a["type"] == 14 and a.get("nexthop") == hv.vtep_ip for a in p["attrs"])}


def test_a_restarted_controller_announces_again_and_a_killed_one_leaves_no_exabgp(interop):
    lab, canopy, hv, gobgp = interop
    canopy.restart()
    lab.wait_until(lambda: {2, 3, 5} <= canopy_types(gobgp, hv), timeout=60, what="routes announced after a restart")
    exabgp = lab.wait_until(lambda: child_running(canopy.pid, "bgp.exabgp_ext"), timeout=15,
                            what="the controller's ExaBGP child")  # REST does not show its pid
    canopy.kill()  # SIGKILL: Canopy cannot clean up; its ExaBGP must still go (and with it the session)

    def gone():
        try:
            with open(f"/proc/{exabgp}/stat") as stat:
                return stat.read().split()[2] == "Z"  # a zombie of a reaper that is not us: gone enough
        except FileNotFoundError:
            return True

    lab.wait_until(gone, timeout=15, what="the killed controller's ExaBGP to exit")
    lab.wait_until(lambda: not canopy_types(gobgp, hv), timeout=30, what="GoBGP to drop the dead peer's routes")
