"""Where a tunnel probe ends (openflow/tunnel_warm.py, docs/vrs.md): with the hypervisors probing each other and a
hardware VTEP every second, no probe reaches a tenant, neither a VM on another hypervisor (its classify table drops
VNI 0) nor the bare-metal server behind the VTEP. ovs-vtep takes VNI 0 in on its BFD bridge (``vtep_bfd``: one
tunnel per remote VTEP without a key, action NORMAL), apart from every logical switch (tunnels keyed by their VNI);
the probe's source and destination MAC are the same, so NORMAL learns it on the tunnel it came in by and sends it
nowhere: not back out to the other hypervisors either."""

from __future__ import annotations

import copy
import re
import subprocess

import pytest

from openflow.tunnel_warm import PROBE_ETHERTYPE
from tests.integration.test_bare_metal import BM_MAC, LS, POLICY, needs

pytestmark = pytest.mark.integration

WATCH = 5  # seconds of capture: five refresh rounds
WEB2 = {"name": "webk2", "mac": "02:00:00:00:01:03", "ips": ["10.0.1.13"], "binding": {"flavour": "kvm"}}  # (not
# test_bare_metal's mover: 02:00:00:00:01:02, 10.0.1.12)


def policy() -> dict:
    """test_bare_metal's, with a second VM of web on hv2: tor1 then tunnels to both hypervisors."""
    doc = copy.deepcopy(POLICY)
    doc["tenants"][0]["domains"][0]["subnets"][0]["vports"].append(WEB2)
    return doc


def capture(ns: str) -> subprocess.Popen:
    """tcpdump in namespace ``ns`` on eth0 for a probe frame, for WATCH seconds (exit 124 if none came)."""
    return subprocess.Popen(["ip", "netns", "exec", ns, "timeout", str(WATCH), "tcpdump", "-i", "eth0", "-nn", "-e",
                             "-c", "1", "ether", "proto", f"0x{PROBE_ETHERTYPE:04x}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def bfd_ports(tor) -> dict[str, tuple[int, int]]:
    """vtep_bfd's tunnel ports: OpenFlow port -> (rx, tx) packets."""
    out = tor.ovs.ofctl("dump-ports", "vtep_bfd")
    ports = re.findall(r"port\s+(\d+): rx pkts=(\d+).*?\n\s+tx pkts=(\d+)", out)
    return {port: (int(rx), int(tx)) for port, rx, tx in ports}


def test_no_probe_reaches_a_vm_or_a_bare_metal_server_and_a_hardware_vtep_sends_none_on(lab):
    from tests.harness.vtep import vtep_unavailable

    reason = vtep_unavailable()
    if reason:
        needs(reason)
    ctl = lab.add_controller_host("ctl")
    canopy = lab.start_controller(ctl, {"vrs": {"tunnel_probe_refresh_ms": 1000}})
    assert canopy.api.post("/v1/apply", {"document": policy(), "source": "probes"}).status == 200
    hosts = {"hv1": lab.add_hypervisor("hv1", "kvm"), "hv2": lab.add_hypervisor("hv2", "kvm")}
    for hv in hosts.values():
        hv.connect(ctl)
    vms = [lab.add_vm(hosts["hv1"], "webk", mac="02:00:00:00:01:01", ip="10.0.1.11/24"),
           lab.add_vm(hosts["hv2"], "dbk", mac="02:00:00:00:02:01", ip="10.0.2.11/24"),
           lab.add_vm(hosts["hv2"], "webk2", mac=WEB2["mac"], ip="10.0.1.13/24")]
    tor = lab.add_hardware_vtep("tor1", ports=("p1",))
    tor.connect(ctl)
    bm = lab.add_baremetal(tor, "bm1", port="p1", vlan=100, mac=BM_MAC, ip="10.0.1.50/24")
    lab.wait_until(lambda: tor.bindings("p1") == {100: LS}, timeout=20, what="VLAN 100 bound on tor1")
    lab.wait_until(lambda: tor.tunnel_ip in hosts["hv1"].ovs.appctl("tnl/neigh/show"), timeout=30,
                   what="hv1 probed tor1")  # hv1 holds web, whose flood list names tor1
    lab.wait_until(lambda: len(bfd_ports(tor)) == 2 and all(rx for rx, _ in bfd_ports(tor).values()), timeout=30,
                   what="probes from both hypervisors arriving on tor1's vtep_bfd")
    before = bfd_ports(tor)
    watching = {host.name: capture(host.ns) for host in (*vms, bm)}
    results = {name: proc.communicate(timeout=WATCH + 10) for name, proc in watching.items()}
    after = bfd_ports(tor)
    for name, (out, err) in results.items():
        assert "listening on eth0" in err, f"{name}: {err}"
        assert watching[name].returncode == 124 and not out.strip(), f"a probe reached {name}: {out}"
    assert all(after[port][0] > rx for port, (rx, _) in before.items()), (before, after)  # still probed meanwhile
    assert all(tx == 0 for _, tx in after.values()), after  # nothing sent on towards the other hypervisors
