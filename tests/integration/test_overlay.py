"""The seed demo, proven by traffic: one tenant's domain with two subnets across a KVM, a Hyper-V and an
ESXi hypervisor (plus a second KVM host for migration), VMs configured by Canopy's DHCP, pings within
and across subnets, a second tenant with the same addresses that cannot reach the first, spoofing that
does not pass, a migration, and a controller restart during traffic that loses nothing."""

from __future__ import annotations

import functools
import re
import textwrap

import pytest

from tests.harness.fabric import reach as fabric_reach

pytestmark = pytest.mark.integration

POLICY = {
    "tenants": [
        {"name": "acme", "domains": [{"name": "prod",
                                      "static_routes": [{"prefix": "192.168.50.0/24", "next_hop": "10.0.2.13"}],
                                      "subnets": [
            {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1",
             "dhcp": {"dns_servers": ["10.0.1.53"], "domain_name": "acme.example", "lease_time": 600},
             "vports": [
                 {"name": "webk", "mac": "02:00:00:00:01:01", "ips": ["10.0.1.11"], "binding": {"flavour": "kvm"}},
                 {"name": "webh", "mac": "02:00:00:00:01:02", "ips": ["10.0.1.12"],
                  "binding": {"flavour": "hyperv"}},
                 {"name": "webe", "mac": "02:00:00:00:01:03", "ips": ["10.0.1.13"], "binding": {"flavour": "esxi"}},
             ]},
            {"name": "db", "cidr": "10.0.2.0/24", "gateway": "10.0.2.1", "vports": [
                {"name": "dbk", "mac": "02:00:00:00:02:01", "ips": ["10.0.2.11"], "binding": {"flavour": "kvm"}},
                {"name": "dbe", "mac": "02:00:00:00:02:03", "ips": ["10.0.2.13"], "binding": {"flavour": "esxi"}},
            ]},
        ]}]},
        {"name": "globex", "domains": [{"name": "main", "subnets": [
            {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", "vports": [
                {"name": "g1", "mac": "02:00:00:00:09:01", "ips": ["10.0.1.12"], "binding": {"flavour": "kvm"}},
            ]}]}]},
    ]}

DHCP_SCRIPT = textwrap.dedent("""\
    #!/bin/sh
    # udhcpc hook for test VMs: record what the server offered, and configure eth0 with it.
    env | grep -E '^(ip|subnet|mask|router|dns|domain|mtu|lease|staticroutes|serverid)=' > "$LEASE_FILE.$1"
    case "$1" in
      bound|renew)
        ip -4 addr flush dev "$interface"
        ip addr add "$ip/$mask" dev "$interface"
        [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
        [ -n "$router" ] && ip route replace default via "$router" dev "$interface"
        ;;
    esac
    exit 0
""")


def dhcp(lab, vm, timeout=20):
    """Run udhcpc in the VM; returns the lease variables it was given (empty when no answer)."""
    script = lab.workdir / "udhcpc.sh"
    if not script.exists():
        script.write_text(DHCP_SCRIPT)
        script.chmod(0o755)
    lease_file = lab.workdir / f"lease-{vm.name}"
    vm.exec("env", f"LEASE_FILE={lease_file}", "udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "4", "-T", "1",
            "-s", str(script), timeout=timeout)
    bound = lab.workdir / f"lease-{vm.name}.bound"
    if not bound.exists():
        return {}
    return dict(line.split("=", 1) for line in bound.read_text().splitlines() if "=" in line)


def pings(vm, ip, count=1, timeout=2):
    return vm.ping(ip, count=count, timeout=timeout)


# Bounded wait until one ping gets through (the first packets may go while tunnels resolve ARP).
reach = functools.partial(fabric_reach, timeout=15)


@pytest.fixture(scope="module")
def demo(lab_capable):
    from tests.harness.lab import Lab

    with Lab() as lab:
        ctl = lab.add_controller_host("ctl1")
        canopy = lab.start_controller(ctl)
        reply = canopy.api.post("/v1/apply", {"document": POLICY, "source": "demo"})
        assert reply.status == 200, reply.text
        hosts = {"kvm1": lab.add_hypervisor("kvm1", "kvm"), "kvm2": lab.add_hypervisor("kvm2", "kvm"),
                 "hyv1": lab.add_hypervisor("hyv1", "hyperv"), "esx1": lab.add_hypervisor("esx1", "esxi")}
        for hv in hosts.values():
            hv.connect(ctl)
        vms = {
            "webk": lab.add_vm(hosts["kvm1"], "webk", mac="02:00:00:00:01:01", vnic_id="webk"),
            "dbk": lab.add_vm(hosts["kvm1"], "dbk", mac="02:00:00:00:02:01", vnic_id="dbk"),
            "g1": lab.add_vm(hosts["kvm1"], "g1", mac="02:00:00:00:09:01", vnic_id="g1"),
            "webh": lab.add_vm(hosts["hyv1"], "webh", mac="02:00:00:00:01:02"),
            "webe": lab.add_vm(hosts["esx1"], "webe", mac="02:00:00:00:01:03", vnic_id="webe", vlan=101),
            "dbe": lab.add_vm(hosts["esx1"], "dbe", mac="02:00:00:00:02:03", vnic_id="dbe", vlan=102),
        }
        lab.wait_until(lambda: canopy.api.get("/v1/status").json["vports_bound"] == 6, timeout=15,
                       what="all six vports bound")
        leases = {name: dhcp(lab, vm) for name, vm in vms.items()}
        yield lab, canopy, hosts, vms, leases


def test_every_vm_gets_its_configured_address_by_dhcp(demo):
    lab, _, _, vms, leases = demo
    expected = {"webk": "10.0.1.11", "webh": "10.0.1.12", "webe": "10.0.1.13", "dbk": "10.0.2.11",
                "dbe": "10.0.2.13", "g1": "10.0.1.12"}
    for name, ip in expected.items():
        assert leases[name].get("ip") == ip, (name, leases[name])
    web = leases["webk"]
    assert (web["router"], web["mask"], web["dns"], web["domain"], web["mtu"], web["lease"]) == (
        "10.0.1.1", "24", "10.0.1.53", "acme.example", "1450", "600")
    assert leases["dbe"]["router"] == "10.0.2.1"
    assert "10.0.1.11/24" in vms["webk"].exec("ip", "-4", "addr", "show", "dev", "eth0").stdout


def test_a_vm_canopy_does_not_know_gets_no_dhcp_answer(demo):
    lab, _, hosts, _, _ = demo
    stranger = lab.add_vm(hosts["kvm1"], "strgr", mac="02:00:00:00:0f:0f", vnic_id="nobody")
    try:
        assert dhcp(lab, stranger) == {}
    finally:
        lab.remove_vm(stranger)


def test_ping_within_the_subnet_across_kvm_hyperv_and_esxi(demo):
    lab, _, _, vms, _ = demo
    for src, dst in (("webk", "10.0.1.12"), ("webk", "10.0.1.13"), ("webh", "10.0.1.13"), ("webe", "10.0.1.11")):
        reach(lab, vms[src], dst)


def test_ping_across_subnets_through_the_distributed_router(demo):
    lab, _, _, vms, _ = demo
    for src, dst in (("webk", "10.0.2.11"), ("webk", "10.0.2.13"), ("webh", "10.0.2.13"), ("dbe", "10.0.1.12")):
        reach(lab, vms[src], dst)
    out = vms["webh"].exec("ping", "-c", "1", "-W", "2", "10.0.2.13", timeout=5).stdout
    assert re.search(r"ttl=6[23]", out), out  # routed: the TTL went down on the way


def test_a_second_tenant_with_the_same_addresses_is_isolated(demo):
    lab, _, _, vms, _ = demo
    reach(lab, vms["webk"], "10.0.1.12")  # acme's webh, the same IP as globex's g1
    assert not pings(vms["g1"], "10.0.1.11", count=3)  # acme's webk
    assert not pings(vms["g1"], "10.0.1.13", count=2)
    neigh = vms["webk"].exec("ip", "neigh", "show", "10.0.1.12").stdout
    assert "02:00:00:00:01:02" in neigh and "02:00:00:00:09:01" not in neigh


def test_spoofed_sources_are_dropped(demo):
    lab, _, _, vms, _ = demo
    vm = vms["webh"]
    reach(lab, vm, "10.0.1.11")
    vm.exec("ip", "addr", "add", "10.0.1.99/24", "dev", "eth0", check=True)
    try:
        assert not vm.exec("ping", "-c", "3", "-W", "1", "-I", "10.0.1.99", "10.0.1.11", timeout=10).returncode == 0
    finally:
        vm.exec("ip", "addr", "del", "10.0.1.99/24", "dev", "eth0")
    vm.exec("ip", "link", "set", "eth0", "address", "02:00:00:00:01:99", check=True)
    try:
        vm.exec("ip", "neigh", "flush", "dev", "eth0")
        assert not pings(vm, "10.0.1.11", count=3)
    finally:
        vm.exec("ip", "link", "set", "eth0", "address", "02:00:00:00:01:02", check=True)
    reach(lab, vm, "10.0.1.11", what="traffic flows again with the real MAC")


def test_controller_restart_during_pings_loses_nothing_and_leaves_exactly_the_desired_flows(demo):
    lab, canopy, hosts, vms, _ = demo
    reach(lab, vms["webk"], "10.0.1.13")
    reach(lab, vms["webk"], "10.0.2.13")
    pingers = [lab.spawn(f"ping-{dst}", ["ping", "-i", "0.05", "-c", "200", "-W", "1", dst],
                         lab.workdir / f"ping-restart-{dst}.log", ns=vms["webk"].ns)
               for dst in ("10.0.1.13", "10.0.2.13")]
    canopy.stop()
    canopy.restart()
    for pinger in pingers:
        lab.wait_until(lambda: not pinger.alive(), timeout=40, what="the ping run to finish")
    for dst in ("10.0.1.13", "10.0.2.13"):
        text = (lab.workdir / f"ping-restart-{dst}.log").read_text()
        assert " 0% packet loss" in text, text[-300:]
    for hv in hosts.values():
        dpid = f"{hv.datapath_id():016x}"
        lab.wait_until(lambda: canopy.api.get(f"/v1/switches/{dpid}/flows").json.get("in_sync"), timeout=20,
                       what=f"{hv.name} flows in sync after the restart")
        reply = canopy.api.get(f"/v1/switches/{dpid}/flows").json
        installed = [f for f in reply["flows"] if f["installed"]]
        assert all(f["desired"] for f in installed)
        dump = hv.ofctl("dump-flows", "br-int")
        canopy_lines = [line for line in dump.splitlines() if "cookie=0xca" in line]
        assert len(canopy_lines) == len(installed)  # no stale, no duplicates


def test_domain_fib_shows_connected_host_and_static_routes(demo):
    _, canopy, hosts, _, _ = demo
    domain = canopy.api.get("/v1/domains?name=prod").json["items"][0]
    fib = canopy.api.get(f"/v1/domains/{domain['id']}/fib").json
    routes = {r["prefix"]: r for r in fib["routes"]}
    assert routes["10.0.1.0/24"]["origin"] == "connected" and routes["10.0.2.0/24"]["origin"] == "connected"
    host = routes["10.0.1.13/32"]
    assert (host["origin"], host["vport"]["ref"], host["chassis"], host["vtep_ip"]) == (
        "host", "acme/web/webe", "esx1", hosts["esx1"].vtep_ip)
    static = routes["192.168.50.0/24"]
    assert (static["origin"], static["next_hop"], static["vport"]["ref"], static["chassis"]) == (
        "static", "10.0.2.13", "acme/db/dbe", "esx1")
    assert [r["prefix"] for r in fib["routes"]][:1] != ["10.0.1.0/24"]  # longest prefixes first
    assert canopy.api.get("/v1/domains/nope/fib").status == 404


def test_a_vm_leaving_removes_its_flows_everywhere(demo):
    lab, canopy, hosts, vms, _ = demo
    subnet = canopy.api.get("/v1/subnets?name=web").json["items"]
    web = next(s for s in subnet if s["ref"] == "acme/web")
    created = canopy.api.post("/v1/vports", {"subnet_id": web["id"], "name": "tmpv", "mac": "02:00:00:00:01:07",
                                             "ips": ["10.0.1.17"], "binding": {"flavour": "kvm"}})
    assert created.status == 201, created.text
    vm = lab.add_vm(hosts["kvm2"], "tmpv", mac="02:00:00:00:01:07", vnic_id="tmpv")

    def flows_mentioning():
        return {name: [line for line in hv.ofctl("dump-flows", "br-int").splitlines()
                       if "10.0.1.17" in line or "02:00:00:00:01:07" in line]
                for name, hv in hosts.items()}

    lab.wait_until(lambda: all(flows_mentioning()[h] for h in ("kvm1", "kvm2", "hyv1", "esx1")), timeout=10,
                   what="tmpv's flows on every switch that has its subnet or domain")
    lab.remove_vm(vm)
    lab.wait_until(lambda: not any(flows_mentioning().values()), timeout=10,
                   what="every flow of tmpv gone from every switch")
    assert _location(canopy, "tmpv") is None


def test_migration_keeps_traffic_flowing_and_remote_vrs_follow(demo):
    lab, canopy, hosts, vms, _ = demo
    reach(lab, vms["webh"], "10.0.1.11")
    old = vms.pop("webk")
    lab.remove_vm(old)
    moved = lab.add_vm(hosts["kvm2"], "webk", mac="02:00:00:00:01:01", vnic_id="webk")
    vms["webk"] = moved
    assert dhcp(lab, moved).get("ip") == "10.0.1.11"
    lab.wait_until(lambda: _location(canopy, "webk") == "kvm2", timeout=15, what="webk bound on kvm2")
    reach(lab, vms["webh"], "10.0.1.11", what="webh reaches the moved VM")
    reach(lab, vms["dbe"], "10.0.1.11", what="a routed path reaches the moved VM")
    reach(lab, moved, "10.0.2.11", what="the moved VM reaches its old neighbour on kvm1")
    kvm1 = f"{hosts['kvm1'].datapath_id():016x}"
    flows = canopy.api.get(f"/v1/switches/{kvm1}/flows").json["flows"]
    # kvm1 (which kept dbk in another subnet of the domain) now routes to webk through kvm2's VTEP
    to_webk = [f for f in flows if "nw_dst=10.0.1.11," in f["flow"] and f["desired"] and f["installed"]]
    assert to_webk and all(f"set_field:{hosts['kvm2'].vtep_ip}->tun_dst" in f["flow"] for f in to_webk)


def _location(canopy, name):
    for item in canopy.api.get("/v1/vports").json["items"]:
        if item["name"] == name:
            return (item["location"] or {}).get("chassis")
    return None
