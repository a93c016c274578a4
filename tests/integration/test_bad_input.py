"""Bad rows from a real hardware VTEP (the ovs-vtep emulator) do not stop programming.

A switch may report in Ucast_Macs_Local what Canopy cannot use: an IPv6 neighbour's address in ``ipaddr``,
a MAC that is not one, a locator whose address is not IPv4. Once such rows are written into tor1's
database, Canopy must go on programming: a VM that starts afterwards gets its flows and reaches the
bare-metal server and the other VM, and /v1/status stays ok. (On code that let the IPv6 address reach
derive, the programming thread died and the new VM got nothing.)
"""

from __future__ import annotations

import pytest

from tests.harness.fabric import reach, vtep_fabric

pytestmark = pytest.mark.integration

LS = "canopy-5001"
POLICY = {
    "tenants": [{"name": "acme", "domains": [{"name": "prod", "subnets": [
        {"name": "web", "cidr": "10.0.1.0/24", "gateway": "10.0.1.1", "vni": 5001, "vports": [
            {"name": "webk", "mac": "02:00:00:00:01:01", "ips": ["10.0.1.11"], "binding": {"flavour": "kvm"}},
            {"name": "late", "mac": "02:00:00:00:01:03", "ips": ["10.0.1.13"], "binding": {"flavour": "kvm"}},
        ]}]}]}],
    "vtep_bindings": [{"switch": "tor1", "port": "p1", "vlan": 100, "subnet": "acme/web"}],
}
IPV6_NEIGHBOUR = "02:00:00:00:0b:06"


def uuid_of(tor, table, *conditions) -> str:
    [uuid] = tor.vtepctl("--bare", "--columns=_uuid", "find", table, *conditions).split()
    return uuid


def write_garbage(tor) -> None:
    """Ucast_Macs_Local rows Canopy cannot fully use, in Canopy's logical switch, as a switch might."""
    ls = uuid_of(tor, "Logical_Switch", f"name={LS}")
    own = uuid_of(tor, "Physical_Locator", f"dst_ip={tor.tunnel_ip}")
    tor.vtepctl("--", "create", "Ucast_Macs_Local", f'MAC="{IPV6_NEIGHBOUR}"', f"logical_switch={ls}",
                f"locator={own}", 'ipaddr="fe80::6"',
                "--", "create", "Ucast_Macs_Local", 'MAC="not-a-mac"', f"logical_switch={ls}", f"locator={own}",
                "--", "create", "Ucast_Macs_Local", 'MAC="02:00:00:00:0b:08"', f"logical_switch={ls}",
                f"locator={own}", 'ipaddr="10.0.1.300"',
                "--", "--id=@bad", "create", "Physical_Locator", "encapsulation_type=vxlan_over_ipv4",
                'dst_ip="2001:db8::9"',
                "--", "create", "Ucast_Macs_Local", 'MAC="02:00:00:00:0b:07"', f"logical_switch={ls}",
                "locator=@bad")


@pytest.fixture(scope="module")
def fabric(lab_capable):
    with vtep_fabric(POLICY, "bad-input", {"kvm1": "kvm", "kvm2": "kvm"}, {"webk": ("kvm1", {"vnic_id": "webk"})},
                     bm_mac="02:00:00:00:0b:01") as f:
        yield f.lab, f.canopy, f.hosts, f.vms["webk"], f.tor, f.bm


def test_garbage_in_ucast_macs_local_does_not_stop_programming(fabric):
    lab, canopy, hosts, webk, tor, bm = fabric
    reach(lab, bm, "10.0.1.11", what="the bare-metal server reaches webk")
    write_garbage(tor)
    lab.wait_until(lambda: IPV6_NEIGHBOUR in {m["mac"] for m in canopy.api.get("/v1/vteps/tor1").json["local_macs"]},
                   timeout=20, what="Canopy has read the new Ucast_Macs_Local rows")

    late = lab.add_vm(hosts["kvm2"], "late", mac="02:00:00:00:01:03", ip="10.0.1.13/24", vnic_id="late")
    reach(lab, late, "10.0.1.11", what="a VM started after the bad rows reaches webk")
    reach(lab, late, "10.0.1.50", what="... and the bare-metal server")
    dpid = f"{hosts['kvm2'].datapath_id():016x}"
    flows = canopy.api.get(f"/v1/switches/{dpid}/flows").json
    assert any("02:00:00:00:01:03" in f["flow"] and f["installed"] for f in flows["flows"])
    lab.wait_until(lambda: tor.remote_macs(LS)[0].get("02:00:00:00:01:03") == hosts["kvm2"].vtep_ip, timeout=20,
                   what="tor1 told where the new VM is")
    macs = {m["mac"]: m for m in canopy.api.get("/v1/vteps/tor1").json["local_macs"]}
    assert IPV6_NEIGHBOUR in macs and not {"not-a-mac", "02:00:00:00:0b:07"} & set(macs)  # unusable rows left out
    assert "fe80::6" in canopy.log_path.read_text()  # and logged
    status = canopy.api.get("/v1/status").json
    assert status["health"] == "ok", status
    log = canopy.log_path.read_text()
    assert "Traceback" not in log, log[-3000:]
