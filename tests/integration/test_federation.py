"""Two Canopy controllers federated by MP-BGP EVPN (each runs its own ExaBGP child), each with its own
hypervisor: VMs under controller A reach VMs under controller B in the same subnet (L2 over VXLAN to the
remote VTEP) and in another subnet of the same domain (symmetric IRB on the L3 VNI); a VM that stops is
withdrawn on the other side; a VM that migrates from A's hypervisor to B's keeps working and its MAC
mobility sequence number rises; a bare-metal server behind a hardware VTEP driven by B reaches a VM
under A (the VTEP's learned MAC and flood list travel as type 2 and type 3 routes)."""

from __future__ import annotations

import pytest

from tests.integration.test_overlay import dhcp, reach

pytestmark = pytest.mark.integration

ASN_A, ASN_B = 65001, 65002
WEB_VNI, DB_VNI, L3_VNI = 5101, 5102, 9100


def policy(vports):
    """The same tenant on both controllers: VNIs, route targets and the anycast gateway MAC are set
    explicitly so both sides agree (automatic ones are derived from each controller's own ASN)."""
    def subnet(name, cidr, gw, vni):
        rt = f"65000:{vni}"
        return {"name": name, "cidr": cidr, "gateway": gw, "vni": vni, "import_rts": [rt], "export_rts": [rt],
                "vports": [v for v in vports if v["subnet"] == name]}

    for v in vports:
        v.setdefault("binding", {"flavour": "kvm"})
    subnets = [subnet("web", "10.0.1.0/24", "10.0.1.1", WEB_VNI), subnet("db", "10.0.2.0/24", "10.0.2.1", DB_VNI)]
    for s in subnets:
        s["vports"] = [{k: v for k, v in vp.items() if k != "subnet"} for vp in s["vports"]]
    return {"tenants": [{"name": "acme", "domains": [{
        "name": "prod", "l3_vni": L3_VNI, "gateway_mac": "02:00:5e:00:01:01",
        "import_rts": [f"65000:{L3_VNI}"], "export_rts": [f"65000:{L3_VNI}"], "subnets": subnets}]}]}


VPORTS = [
    {"name": "a1", "subnet": "web", "mac": "02:00:00:0a:00:01", "ips": ["10.0.1.11"]},
    {"name": "a2", "subnet": "db", "mac": "02:00:00:0a:00:02", "ips": ["10.0.2.11"]},
    {"name": "b1", "subnet": "web", "mac": "02:00:00:0b:00:01", "ips": ["10.0.1.21"]},
    {"name": "b2", "subnet": "db", "mac": "02:00:00:0b:00:02", "ips": ["10.0.2.21"]},
    {"name": "mover", "subnet": "web", "mac": "02:00:00:0c:00:01", "ips": ["10.0.1.30"]},
]


def bgp_settings(me, peer, peer_asn, my_asn, listen):
    neighbor = {"address": peer.ip, "asn": peer_asn, "local_address": me.ip, "hold_time": 9}
    bgp = {"asn": my_asn, "router_id": me.ip, "neighbors": [neighbor]}
    if listen:
        bgp["listen"] = me.ip
        neighbor["passive"] = True
    return {"bgp": bgp}


def peer_up(api):
    peers = api.get("/v1/bgp/peers").json["items"]
    return peers and all(p["state"] == "up" for p in peers)


def routes(api, direction, kind):
    return api.get(f"/v1/bgp/routes?direction={direction}&type={kind}").json["items"]


def remote_macs(api):
    return {r["mac"]: r for r in routes(api, "in", 2)}


def announced(api):
    return {r["mac"]: r for r in routes(api, "out", 2)}


@pytest.fixture(scope="module")
def fed(lab_capable):
    from tests.harness.lab import Lab

    with Lab() as lab:
        ctl_a, ctl_b = lab.add_controller_host("ctla"), lab.add_controller_host("ctlb")
        a = lab.start_controller(ctl_a, bgp_settings(ctl_a, ctl_b, ASN_B, ASN_A, listen=True), name="canopya")
        b = lab.start_controller(ctl_b, bgp_settings(ctl_b, ctl_a, ASN_A, ASN_B, listen=False), name="canopyb")
        for api in (a.api, b.api):
            reply = api.post("/v1/apply", {"document": policy([dict(v) for v in VPORTS]), "source": "fed"})
            assert reply.status == 200, reply.text
        hva, hvb = lab.add_hypervisor("hva", "kvm"), lab.add_hypervisor("hvb", "kvm")
        hva.connect(ctl_a)
        hvb.connect(ctl_b)
        vms = {name: lab.add_vm(hv, name, mac=mac, vnic_id=name) for name, hv, mac in (
            ("a1", hva, "02:00:00:0a:00:01"), ("a2", hva, "02:00:00:0a:00:02"),
            ("b1", hvb, "02:00:00:0b:00:01"), ("b2", hvb, "02:00:00:0b:00:02"),
            ("mover", hva, "02:00:00:0c:00:01"))}
        lab.wait_until(lambda: peer_up(a.api) and peer_up(b.api), timeout=60, what="the EVPN session A-B")
        for name, vm in vms.items():
            assert dhcp(lab, vm).get("ip"), f"{name} got no DHCP lease"
        yield lab, a, b, (hva, hvb), vms, (ctl_a, ctl_b)


def test_routes_cross_with_vnis_router_mac_and_real_vtep_next_hops(fed):
    lab, a, b, (hva, hvb), _, _ = fed
    lab.wait_until(lambda: {"02:00:00:0b:00:01", "02:00:00:0b:00:02"} <= set(remote_macs(a.api)), timeout=30,
                   what="B's VMs in A's received routes")
    b1 = remote_macs(a.api)["02:00:00:0b:00:01"]
    assert (b1["ip"], b1["l2_vni"], b1["l3_vni"], b1["next_hop"]) == ("10.0.1.21", WEB_VNI, L3_VNI, hvb.vtep_ip)
    assert b1["router_mac"] and f"65000:{WEB_VNI}" in b1["route_targets"]
    imet = {(r["vni"], r["next_hop"]) for r in routes(a.api, "in", 3)}
    assert (WEB_VNI, hvb.vtep_ip) in imet and (DB_VNI, hvb.vtep_ip) in imet
    prefixes = {r["prefix"] for r in routes(b.api, "in", 5)}
    assert {"10.0.1.0/24", "10.0.2.0/24"} <= prefixes
    out = {r["mac"] for r in routes(a.api, "out", 2)}
    assert {"02:00:00:0a:00:01", "02:00:00:0a:00:02"} <= out


def test_ping_across_controllers_in_the_same_subnet_and_across_subnets(fed):
    lab, _, _, _, vms, _ = fed
    reach(lab, vms["a1"], "10.0.1.21", timeout=30)  # web -> web over the L2 VNI
    reach(lab, vms["a1"], "10.0.2.21", timeout=30)  # web -> db over the L3 VNI (symmetric IRB)
    reach(lab, vms["b2"], "10.0.1.11", timeout=30)
    assert vms["b1"].ping("10.0.1.11", count=3, timeout=5)


def test_a_vm_that_stops_is_withdrawn_on_the_other_side(fed):
    lab, a, b, (hva, _), vms, _ = fed
    reach(lab, vms["a1"], "10.0.2.11", timeout=30)
    lab.remove_vm(vms.pop("a2"))
    lab.wait_until(lambda: "02:00:00:0a:00:02" not in remote_macs(b.api), timeout=30,
                   what="a2's route withdrawn at B")
    lab.wait_until(lambda: "02:00:00:0a:00:02" not in hvb_flows(fed), timeout=15, what="a2's flows gone on hvb")
    assert not vms["b2"].ping("10.0.2.11", count=1, timeout=2)


def hvb_flows(fed):
    return fed[3][1].ofctl("dump-flows", "br-int").lower()


def test_a_vm_migrating_from_a_to_b_keeps_working_and_its_sequence_rises(fed):
    lab, a, b, (hva, hvb), vms, _ = fed
    mac = "02:00:00:0c:00:01"
    reach(lab, vms["b1"], "10.0.1.30", timeout=30)
    before = remote_macs(b.api)[mac]
    assert before["next_hop"] == hva.vtep_ip and not before.get("mobility_seq")
    moved = lab.add_vm(hvb, "mover2", mac=mac, vnic_id="mover")  # the VM arrives on B's hypervisor...
    # ...while A still announces it (a live migration): B takes the move from A's route (sequence 0 + 1). It leaves
    # A's only once B announces that: had A's withdrawal reached B before B's pass took the new port, the MAC would
    # be new to B, no peer announcing it, so sequence 0 (RFC 7432 section 15), no move (a loaded two-worker run did
    # that: quiet, B binds the port ~25 ms before A unbinds it, and the two controllers' passes race)
    lab.wait_until(lambda: ((announced(b.api).get(mac) or {}).get("mobility_seq") or 0) >= 1, timeout=30,
                   what="B announcing the mover with a sequence number")
    lab.remove_vm(vms.pop("mover"))  # ...and leaves A's
    vms["mover"] = moved
    lab.wait_until(lambda: (remote_macs(a.api).get(mac) or {}).get("next_hop") == hvb.vtep_ip, timeout=30,
                   what="A sees the mover at hvb")
    assert remote_macs(a.api)[mac]["mobility_seq"] >= 1
    lab.wait_until(lambda: mac not in {r["mac"] for r in routes(a.api, "out", 2)}, timeout=15,
                   what="A no longer announcing the mover")
    assert dhcp(lab, moved).get("ip") == "10.0.1.30"
    reach(lab, vms["a1"], "10.0.1.30", timeout=30)
    reach(lab, moved, "10.0.2.21", timeout=30)


def test_bare_metal_behind_b_and_a_vm_under_a_reach_each_other(fed):
    from tests.harness.vtep import vtep_unavailable

    reason = vtep_unavailable()
    if reason:
        pytest.skip(reason)
    lab, a, b, (hva, _), vms, (_, ctl_b) = fed
    tor = lab.add_hardware_vtep("tor1", ports=("p1",))
    tor.connect(ctl_b)
    web = b.api.get("/v1/subnets?name=web").json["items"][0]
    reply = b.api.post("/v1/vtep-bindings", {"switch": "tor1", "port": "p1", "vlan": 100, "subnet_id": web["id"]})
    assert reply.status == 201, reply.text
    bm = lab.add_baremetal(tor, "bm1", port="p1", vlan=100, mac="02:00:00:0d:00:01", ip="10.0.1.50/24")
    lab.wait_until(lambda: tor.remote_macs(f"canopy-{WEB_VNI}")[0].get("02:00:00:0a:00:01") == hva.vtep_ip,
                   timeout=30, what="A's VM as a remote MAC on B's hardware VTEP")
    reach(lab, bm, "10.0.1.11", timeout=30)  # bare metal (B's VTEP) -> VM under A
    lab.wait_until(lambda: (remote_macs(a.api).get("02:00:00:0d:00:01") or {}).get("next_hop") == tor.tunnel_ip,
                   timeout=30, what="the bare-metal MAC announced by B at the VTEP's tunnel IP")
    assert vms["a1"].ping("10.0.1.50", count=2, timeout=4)
