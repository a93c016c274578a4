"""What federation peers told Canopy, after import policy: the input the View takes from EVPN.

``bgp.evpn.import_routes`` turns received routes into one ``RemoteTable``; ``controller.derive`` turns it
into remote endpoints (type 2), extra BUM replication targets (type 3) and domain FIB entries (type 5 and
type 2 host routes of subnets that are not imported at L2). Frozen values: equal tables compile alike.
``changed_scopes`` gives the subnets and domains whose routes were added or withdrawn between two tables:
State records them in its change journal, so the View re-derives only those.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property


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

    @cached_property
    def by_subnet(self) -> dict[str, tuple]:
        """Subnet id -> (its MACs, its type 3 flood VTEP IPs), for the View's per-subnet updates."""
        macs, floods = defaultdict(list), defaultdict(list)
        for mac in self.macs:
            macs[mac.subnet_id].append(mac)
        for sid, ip in self.floods:
            floods[sid].append(ip)
        return {sid: (tuple(macs.get(sid, ())), tuple(floods.get(sid, ()))) for sid in set(macs) | set(floods)}

    @cached_property
    def by_domain(self) -> dict[str, tuple[RemotePrefix, ...]]:
        """Domain id -> its remote prefixes."""
        out = defaultdict(list)
        for prefix in self.prefixes:
            out[prefix.domain_id].append(prefix)
        return {did: tuple(ps) for did, ps in out.items()}


def changed_scopes(old: RemoteTable, new: RemoteTable) -> tuple[set[str], set[str]]:
    """(subnet ids, domain ids) whose entries differ between two tables: the routes added or withdrawn."""
    if old is new:
        return set(), set()
    macs = set(old.macs) ^ set(new.macs)
    floods = set(old.floods) ^ set(new.floods)
    prefixes = set(old.prefixes) ^ set(new.prefixes)
    return {m.subnet_id for m in macs} | {sid for sid, _ in floods}, {p.domain_id for p in prefixes}
