"""What federation peers told Canopy, after import policy: the input the View takes from EVPN.

``bgp.evpn.import_routes`` turns received routes into one ``RemoteTable``; ``controller.derive`` turns it
into remote endpoints (type 2), extra BUM replication targets (type 3) and domain FIB entries (type 5 and
type 2 host routes of subnets that are not imported at L2). Frozen values: equal tables compile alike.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RemoteMac:
    """A MAC (with its IPs) in one of our subnets, behind a remote VTEP (type 2, imported at L2)."""

    subnet_id: str
    mac: str
    ips: tuple[str, ...]
    vtep_ip: str
    router_mac: str | None = None  # symmetric IRB: the remote VTEP's MAC on the L3 VNI
    l3_vni: int = 0  # 0: no symmetric IRB for this MAC (L2 only)
    seq: int = 0  # MAC mobility sequence number
    peer: str = ""  # the BGP peer it came from


@dataclass(frozen=True)
class RemotePrefix:
    """A prefix routed in one of our domains over its L3 VNI to a remote VTEP (type 5, or a type 2 host
    route whose subnet is not imported at L2)."""

    domain_id: str
    prefix: str
    vtep_ip: str
    router_mac: str
    l3_vni: int
    peer: str = ""


@dataclass(frozen=True)
class RemoteTable:
    macs: tuple[RemoteMac, ...] = ()
    floods: tuple[tuple[str, str], ...] = ()  # (subnet id, remote VTEP IP) from type 3
    prefixes: tuple[RemotePrefix, ...] = ()
