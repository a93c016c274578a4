"""Bare metal behind a hardware VTEP (the real ovs-vtep emulator) as a first-class endpoint, with two VRS:
the server, declared in policy as a bare-metal vport, gets its address from Canopy's DHCP (BusyBox udhcpc in
its namespace), pings its anycast gateway, a VM of its subnet and a VM of another subnet of the domain
(routed through the subnet's gateway VRS), both with Canopy's choice of gateway and with one named in policy;
when the gateway VRS's hypervisor stops, the other VRS takes over and the routed pings resume."""

from __future__ import annotations

import functools
import os
import re
import shutil

import pytest

from tests.harness import process
from tests.harness.fabric import reach as fabric_reach
from tests.integration.test_dhcp_client import UDHCPC_SCRIPT, _read_env, _write_script

pytestmark = pytest.mark.integration

BM_MAC, BM_IP = "02:00:00:00:0b:01", "10.0.1.50"
MOVER_MAC = "02:00:00:00:01:02"  # a VM of web on hv1 that turns bare metal (test_a_vm_turning_bare_metal_...)
POLICY = {
    "tenants": [{"name": "acme", "domains": [{"name": "prod", "subnets": [
        {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", "vni": 5001, "vports": [
            {"name": "webk", "mac": "02:00:00:00:01:01", "ips": ["10.0.1.11"], "binding": {"flavour": "kvm"}},
            {"name": "mover", "mac": MOVER_MAC, "ips": ["10.0.1.12"], "binding": {"flavour": "kvm"}},
            {"name": "bm1", "mac": BM_MAC, "ips": [BM_IP], "binding": {"flavour": "baremetal"}},
        ]},
        {"name": "db", "cidr": "10.0.2.0/24", "gateway": "10.0.2.1", "vni": 5002, "vports": [
            {"name": "dbk", "mac": "02:00:00:00:02:01", "ips": ["10.0.2.11"], "binding": {"flavour": "kvm"}},
        ]}]}]}],
    "vtep_bindings": [{"switch": "tor1", "port": "p1", "vlan": 100, "subnet": "acme/web"}],
}
LS = "canopy-5001"
TAKEOVER = 60  # seconds: bound on the wait for the routed pings to resume after the gateway VRS stops


def needs(reason):
    """Skip for a missing tool, except in CI, where every test must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def gateway(canopy):
    gateways = canopy.api.get("/v1/vteps/tor1").json["gateways"]
    return gateways[0]["chassis"] if gateways else None


reach = functools.partial(fabric_reach, timeout=30)


@pytest.fixture(scope="module")
def fabric(lab_capable):
    from tests.harness.lab import Lab
    from tests.harness.vtep import vtep_unavailable

    reason = vtep_unavailable() or (None if shutil.which("udhcpc") else "udhcpc (busybox) is not installed")
    if reason:
        needs(reason)
    with Lab() as lab:
        ctl = lab.add_controller_host("ctl1")
        canopy = lab.start_controller(ctl)
        assert canopy.api.post("/v1/apply", {"document": POLICY, "source": "bm"}).status == 200
        hosts = {"hv1": lab.add_hypervisor("hv1", "kvm"), "hv2": lab.add_hypervisor("hv2", "kvm")}
        for hv in hosts.values():
            hv.connect(ctl)
        vms = {"webk": lab.add_vm(hosts["hv1"], "webk", mac="02:00:00:00:01:01", ip="10.0.1.11/24"),
               "mover": lab.add_vm(hosts["hv1"], "mover", mac=MOVER_MAC, ip="10.0.1.12/24"),
               "dbk": lab.add_vm(hosts["hv2"], "dbk", mac="02:00:00:00:02:01", ip="10.0.2.11/24")}
        for vm, gw in ((vms["webk"], "10.0.1.1"), (vms["dbk"], "10.0.2.1")):
            vm.exec("ip", "route", "add", "default", "via", gw, check=True)
        tor = lab.add_hardware_vtep("tor1", ports=("p1",))
        tor.connect(ctl)
        bm = lab.add_baremetal(tor, "bm1", port="p1", vlan=100, mac=BM_MAC, ip=None)
        lab.wait_until(lambda: tor.bindings("p1") == {100: LS}, timeout=20, what="VLAN 100 bound on tor1")
        yield lab, canopy, hosts, vms, tor, bm


def test_the_bare_metal_server_gets_its_lease_from_canopy(fabric, tmp_path):
    lab, canopy, hosts, vms, tor, bm = fabric
    # webk's VRS holds the subnet, dbk's only the domain: Canopy picks hv1 (docs/vtep.md)
    lab.wait_until(lambda: gateway(canopy) == "hv1", timeout=20, what="hv1 is web's bare-metal gateway")
    gw_mac = canopy.api.get("/v1/domains").json["items"][0]["gateway_mac"]
    lab.wait_until(lambda: tor.remote_macs(LS)[0].get(gw_mac) == hosts["hv1"].vtep_ip, timeout=20,
                   what="tor1's remote MAC for the gateway points at hv1")
    script = _write_script(tmp_path / "udhcpc.sh", UDHCPC_SCRIPT.format(out=tmp_path))
    argv = ["udhcpc", "-f", "-q", "-n", "-i", "eth0", "-t", "5", "-T", "2", "-s", str(script)]
    done = bm.exec(*argv, timeout=40)
    assert done.returncode == 0, f"udhcpc exit {done.returncode}\n{done.stdout}{done.stderr}"
    env = _read_env(tmp_path / "bound.env")
    assert (env["ip"], env["mask"], env["router"], env["serverid"]) == (BM_IP, "24", "10.0.1.1", "10.0.1.1")
    assert f"inet {BM_IP}/24" in bm.exec("ip", "-4", "-o", "addr", "show", "dev", "eth0").stdout
    assert "default via 10.0.1.1" in bm.exec("ip", "-4", "route").stdout


def test_the_bare_metal_server_reaches_its_gateway_its_subnet_and_another_subnet(fabric):
    lab, canopy, hosts, vms, tor, bm = fabric
    reach(lab, bm, "10.0.1.1", what="the bare-metal server pings its anycast gateway")
    reach(lab, bm, "10.0.1.11", what="the bare-metal server reaches the VM of its subnet (bridged)")
    reach(lab, bm, "10.0.2.11", what="the bare-metal server reaches the VM of the db subnet (routed)")
    reach(lab, vms["dbk"], BM_IP, what="the db VM reaches the bare-metal server (routed back through hv1)")
    assert bm.ping("10.0.2.11", count=3, timeout=5)


def test_policy_names_the_gateway_and_routing_follows(fabric):
    lab, canopy, hosts, vms, tor, bm = fabric
    web = next(s for s in canopy.api.get("/v1/subnets").json["items"] if s["name"] == "web")
    gw_mac = canopy.api.get("/v1/domains").json["items"][0]["gateway_mac"]
    for chassis in (["hv2"], []):  # named, then Canopy's own choice again
        assert canopy.api.patch(f"/v1/subnets/{web['id']}", {"gateway_chassis": chassis}).status == 200
        expected = chassis[0] if chassis else "hv1"
        lab.wait_until(lambda: gateway(canopy) == expected, timeout=20, what=f"{expected} is web's gateway")
        lab.wait_until(lambda: tor.remote_macs(LS)[0].get(gw_mac) == hosts[expected].vtep_ip, timeout=20,
                       what=f"tor1's remote MAC for the gateway points at {expected}")
        reach(lab, bm, "10.0.2.11", what=f"routed pings from the bare-metal server through {expected}")
        reach(lab, vms["dbk"], BM_IP, what=f"routed pings to the bare-metal server through {expected}")
        reach(lab, bm, "10.0.1.1", what=f"the bare-metal server pings its gateway at {expected}")


COUNTERS = re.compile(r"\s*(duration|n_packets|n_bytes|idle_age|hard_age)=[^,\s]+,?")


def flows_by_owner(hv) -> dict[int, set[str]]:
    """Canopy's flows on br-int (cookie mark 0xca), without their counters, by owner (the cookie's top 32 bits: mark,
    owner kind, owner hint)."""
    out: dict[int, set[str]] = {}
    for line in hv.ofctl("dump-flows", "br-int").splitlines():
        cookie = re.search(r"cookie=(0x[0-9a-f]+)", line)
        if cookie and int(cookie.group(1), 16) >> 56 == 0xCA:
            out.setdefault(int(cookie.group(1), 16) >> 32, set()).add(COUNTERS.sub("", line).strip())
    return out


def test_a_vm_turning_bare_metal_leaves_no_flows_under_its_old_owner_and_touches_no_other(fabric):
    """mover, a VM on hv1, becomes a bare-metal server behind tor1 (same MAC and IP; its VM port stays, unbound): on
    both VRS its vport owner's flows go, its VTEP MAC owner's come (one endpoint id, another kind: on code that filed
    the new endpoint's flows under the old owner too, hv1 kept them under the vport's cookie, openflow/owners.py
    ``_endpoint_present``), and every other owner's flows stay as they were."""
    lab, canopy, hosts, vms, tor, bm = fabric
    from openflow.flows import MARK, OWNER_KINDS, Owner

    mover = next(v for v in canopy.api.get("/v1/vports").json["items"] if v["name"] == "mover")
    as_vm, as_server = ((MARK << 24) | (OWNER_KINDS[kind] << 20) | Owner(kind, mover["id"]).hint()
                        for kind in ("vport", "vtep_mac"))
    reach(lab, vms["mover"], "10.0.1.11", what="mover, a VM, reaches webk")
    for hv in hosts.values():
        dpid = f"{hv.datapath_id():016x}"
        lab.wait_until(lambda: canopy.api.get(f"/v1/switches/{dpid}/flows").json.get("in_sync"), timeout=20,
                       what=f"{hv.name} in sync")
    before = {name: flows_by_owner(hv) for name, hv in hosts.items()}
    assert as_vm in before["hv1"] and as_vm in before["hv2"] and as_server not in before["hv1"]

    server = lab.add_baremetal(tor, "mover-bm", port="p1", vlan=100, mac=MOVER_MAC, ip="10.0.1.12/24")
    reply = canopy.api.patch(f"/v1/vports/{mover['id']}", {"binding": {"flavour": "baremetal"}})
    assert reply.status == 200, reply.text
    reach(lab, server, "10.0.1.11", what="mover, now a server behind tor1, reaches webk")
    for name, hv in hosts.items():
        lab.wait_until(lambda: as_server in flows_by_owner(hv) and as_vm not in flows_by_owner(hv), timeout=20,
                       what=f"{name}: mover's flows under its VTEP MAC owner only")
    after = {name: flows_by_owner(hv) for name, hv in hosts.items()}
    for name in hosts:
        assert as_vm not in after[name], (name, sorted(after[name][as_vm]))
        others = {owner: flows for owner, flows in before[name].items() if owner != as_vm}
        assert {owner: after[name].get(owner) for owner in others} == others, name  # nothing else touched
        assert set(after[name]) - set(before[name]) == {as_server}, name


def test_another_vrs_takes_over_when_the_gateway_vrs_stops(fabric):
    lab, canopy, hosts, vms, tor, bm = fabric
    reach(lab, bm, "10.0.2.11")
    process.stop(hosts["hv1"].ovs.processes)  # the gateway's hypervisor goes: its OVSDB and OpenFlow close
    lab.wait_until(lambda: gateway(canopy) == "hv2", timeout=20, what="hv2 takes over web's bare-metal gateway")
    gw_mac = canopy.api.get("/v1/domains").json["items"][0]["gateway_mac"]
    lab.wait_until(lambda: tor.remote_macs(LS)[0].get(gw_mac) == hosts["hv2"].vtep_ip, timeout=20,
                   what="tor1's remote MAC for the gateway points at hv2")
    row = next(r for r in tor.rows("Ucast_Macs_Remote") if r["MAC"] == gw_mac)
    assert row["ipaddr"] == "10.0.1.1"
    reach(lab, bm, "10.0.2.11", timeout=TAKEOVER, what="routed pings from the bare-metal server resume via hv2")
    reach(lab, vms["dbk"], BM_IP, what="the db VM reaches the bare-metal server again")
    reach(lab, bm, "10.0.1.1", what="the bare-metal server pings its gateway at hv2")
    assert bm.ping("10.0.2.11", count=3, timeout=5)
