"""GET /v1/vports/{id} of a bare-metal vport says where its MAC is: the hardware VTEP that reports it in the
subnet's VNI (Ucast_Macs_Local), with the port and VLAN that bind that VNI there; a MAC two VTEPs report is shown on
both (a conflict), in the REST answer, the listing and ``canopy show``. It always said unbound."""

from __future__ import annotations

from controller import show, yamldoc
from controller.discovery import VtepMac, VtepPort, VtepSnapshot
from tests.unit.helpers import Controller
from tests.unit.pipeline_case import POLICY
from tests.unit.test_show import fetcher

MAC = "02:00:00:00:0b:07"


def tor(name: str, ports, macs) -> VtepSnapshot:
    return VtepSnapshot(f"vtep:{name}", "p", name, tunnel_ips=("192.0.2.9",), ports=ports, local_macs=tuple(macs))


def served(tmp_path):
    ctl = Controller(tmp_path)
    ctl.service.apply(yamldoc.load(POLICY).data, "case")
    web = ctl.state.policy.find("subnet", "acme/web")
    vport = ctl.service.create("vport", {"subnet_id": web["id"], "name": "db7", "mac": MAC.upper(),
                                         "ips": ["10.0.1.50"], "binding": {"flavour": "baremetal"}})
    return ctl, web, vport


def test_a_bare_metal_vport_is_reported_where_a_vtep_has_its_mac_and_on_both_of_two(tmp_path):
    ctl, web, vport = served(tmp_path)
    try:
        vni = web["vni"]
        status, got = ctl.call("GET", f"/v1/vports/{vport['id']}")
        assert (got["status"], got["location"], got["learnt_on"]) == ("unbound", None, [])
        other = VtepMac("02:00:00:00:0b:08", vni, None, "192.0.2.9")
        elsewhere = VtepMac(MAC, vni + 1, None, "192.0.2.9")  # the same MAC in another VNI: not this vport
        ctl.state.vtep_update(tor("tor1", (VtepPort("p1", ((100, vni),)), VtepPort("p2", ((7, vni + 1),))),
                                  [other, elsewhere, VtepMac(MAC, vni, "10.0.1.50", "192.0.2.9")]))
        status, got = ctl.call("GET", f"/v1/vports/{vport['id']}")
        assert status == 200 and got["status"] == "bound"
        place = {"chassis": None, "datapath_id": None, "ofport": None, "flavour": "baremetal", "mac_seen": MAC,
                 "vtep": "tor1", "port": "p1", "vlan": 100, "ports": [{"port": "p1", "vlan": 100}], "vni": vni,
                 "ips": ["10.0.1.50"], "locators": ["192.0.2.9"]}
        assert got["location"] == place and got["learnt_on"] == [place]
        fetch = fetcher(ctl)
        line = [x for x in show.format_vport(show.gather_vport(fetch, "db7")).splitlines() if "status" in x]
        assert line == ["    status bound  bare metal on hardware VTEP tor1 port p1 vlan 100"]

        # a second VTEP reports it too, on a port of two VLANs of the VNI: both shown, the conflict said
        ctl.state.vtep_update(tor("tor0", (VtepPort("x1", ((10, vni), (11, vni))),), [VtepMac(MAC, vni, None, "192.0.2.8")]))
        status, got = ctl.call("GET", f"/v1/vports/{vport['id']}")
        assert [p["vtep"] for p in got["learnt_on"]] == ["tor0", "tor1"] and got["location"]["vtep"] == "tor0"
        assert (got["learnt_on"][0]["port"], got["learnt_on"][0]["ports"]) == (None, [{"port": "x1", "vlan": 10},
                                                                                    {"port": "x1", "vlan": 11}])
        listed = {v["id"]: v for v in ctl.call("GET", "/v1/vports")[1]["items"]}
        assert listed[vport["id"]]["learnt_on"] == got["learnt_on"]
        fetch = fetcher(ctl)
        line = [x for x in show.format_vport(show.gather_vport(fetch, "db7")).splitlines() if "status" in x]
        assert line == ["    status bound  bare metal on hardware VTEPs tor0 (2 ports bind its VNI), tor1 port p1 vlan "
                        "100: CONFLICT, its MAC is reported by 2 VTEPs"]
        tree = [x for x in show.format_tree(show.gather_tree(fetch)).splitlines() if "vport db7" in x]
        assert tree[0].endswith("CONFLICT, its MAC is reported by 2 VTEPs"), tree

        ctl.state.vtep_update(tor("tor0", (), []))
        ctl.state.vtep_update(tor("tor1", (), [other]))
        status, got = ctl.call("GET", f"/v1/vports/{vport['id']}")
        assert (got["status"], got["location"], got["learnt_on"]) == ("unbound", None, [])
    finally:
        ctl.close()


def test_a_bare_metal_vport_follows_its_mac_between_vteps_and_is_unbound_when_its_vtep_goes(tmp_path):
    """VTEP churn: the MAC moves from tor1 to tor0 (a moment on both: the conflict shown while it lasts), then tor0's
    OVSDB session goes: unbound, nothing left of tor0."""
    ctl, web, vport = served(tmp_path)
    try:
        vni, path = web["vni"], f"/v1/vports/{vport['id']}"
        port = (VtepPort("p1", ((100, vni),)),)
        ctl.state.vtep_update(tor("tor1", port, [VtepMac(MAC, vni, None, "192.0.2.9")]))
        assert [p["vtep"] for p in ctl.call("GET", path)[1]["learnt_on"]] == ["tor1"]
        ctl.state.vtep_update(tor("tor0", port, [VtepMac(MAC, vni, None, "192.0.2.8")]))
        assert [p["vtep"] for p in ctl.call("GET", path)[1]["learnt_on"]] == ["tor0", "tor1"]
        ctl.state.vtep_update(tor("tor1", port, []))  # tor1 aged it out
        got = ctl.call("GET", path)[1]
        assert got["status"] == "bound" and [p["vtep"] for p in got["learnt_on"]] == ["tor0"]
        assert got["location"]["locators"] == ["192.0.2.8"]
        ctl.state.vtep_gone("vtep:tor0")
        got = ctl.call("GET", path)[1]
        assert (got["status"], got["location"], got["learnt_on"]) == ("unbound", None, [])
    finally:
        ctl.close()
