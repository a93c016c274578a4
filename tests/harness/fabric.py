"""One lab shape several integration tests share: one Canopy on its own host, hypervisors of the flavours asked
for, VMs on them, and a hardware VTEP ``tor1`` (the real ovs-vtep) with a bare-metal server ``bm1`` on VLAN 100 of
its port ``p1``, bound to a subnet by the policy.

``vtep_fabric`` builds it (skipping when ovs-vtep cannot run here) and yields a ``VtepFabric``; each VM's MAC and
address come from its vport in the policy, so the policy is the one place that names them."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

TOR, TOR_PORT, BM_VLAN = "tor1", "p1", 100


@dataclass
class VtepFabric:
    lab: object  # tests.harness.lab.Lab
    canopy: object  # the controller process (tests.harness.controller)
    ctl: object  # its host
    hosts: dict  # hypervisor name -> Hypervisor
    vms: dict  # VM name -> Vm
    tor: object  # tests.harness.vtep.HardwareVtep
    bm: object  # the bare-metal server behind tor1 p1, VLAN 100


def reach(lab, host, ip, what=None, timeout=20):
    """Wait until ``host`` answers a ping to ``ip`` (one ping per try)."""
    lab.wait_until(lambda: host.ping(ip, count=1, timeout=2), timeout=timeout, interval=0.2,
                   what=what or f"{host.name} reaches {ip}")


def vport_addresses(policy: dict) -> dict[str, tuple[str, str]]:
    """{vport name: (MAC, first IP with its subnet's prefix length)} for every vport of the policy."""
    out = {}
    for tenant in policy.get("tenants", []):
        for domain in tenant.get("domains", []):
            for subnet in domain.get("subnets", []):
                prefix = ipaddress.ip_network(subnet["cidr"]).prefixlen
                for vport in subnet.get("vports", []):
                    out[vport["name"]] = (vport["mac"], f"{vport['ips'][0]}/{prefix}")
    return out


@contextlib.contextmanager
def vtep_fabric(policy: dict, source: str, hypervisors: dict[str, str], vms: dict[str, tuple[str, dict]],
                bm_mac: str, bm_ip: str = "10.0.1.50/24", logical_switch: str = "canopy-5001",
                timeout: float = 20) -> Iterator[VtepFabric]:
    """The lab above: ``policy`` applied (as ``source``), ``hypervisors`` {name: flavour} connected,
    ``vms`` {vport name: (hypervisor name, extra add_vm arguments such as vnic_id or vlan)}, then tor1 with
    the bare-metal server; ready once tor1 has VLAN 100 bound to ``logical_switch`` (waits up to ``timeout``)."""
    from tests.harness.lab import Lab
    from tests.harness.vtep import vtep_unavailable

    reason = vtep_unavailable()
    if reason:
        pytest.skip(reason)
    addresses = vport_addresses(policy)
    with Lab() as lab:
        ctl = lab.add_controller_host("ctl1")
        canopy = lab.start_controller(ctl)
        assert canopy.api.post("/v1/apply", {"document": policy, "source": source}).status == 200
        hosts = {name: lab.add_hypervisor(name, flavour) for name, flavour in hypervisors.items()}
        for hv in hosts.values():
            hv.connect(ctl)
        made = {}
        for name, (host, extra) in vms.items():
            mac, ip = addresses[name]
            made[name] = lab.add_vm(hosts[host], name, mac=mac, ip=ip, **extra)
        tor = lab.add_hardware_vtep(TOR, ports=(TOR_PORT,))
        tor.connect(ctl)
        bm = lab.add_baremetal(tor, "bm1", port=TOR_PORT, vlan=BM_VLAN, mac=bm_mac, ip=bm_ip)
        lab.wait_until(lambda: tor.bindings(TOR_PORT) == {BM_VLAN: logical_switch}, timeout=timeout,
                       what=f"VLAN {BM_VLAN} bound on {TOR}")
        yield VtepFabric(lab, canopy, ctl, hosts, made, tor, bm)
