"""Announcing at bind (bgp/early.py) where MAC mobility has a say, for the originator oracle
(tests/unit/test_originator_oracle.py): both of its Federations announce at bind with the same code, so their agreeing
proves nothing of it. ``ContestedBinds`` (mixed into its driver) moves VMs that are bound nowhere behind a peer (its
route of the MAC, a number above 0) or behind a hardware VTEP port of their subnet (a MAC local to us, numbered by MAC
mobility), binds such a VM on a VRS between a View and its publish (it came back), and checks every route announced
at bind against the sequence number RFC 7432 section 15 gives its MAC then (``rfc_seq``): announced at bind, a route
has none (0), which is right only for a MAC nobody numbers."""

from __future__ import annotations

import random

from bgp.importer import beats
from bgp.mobility import Mobility
from controller.discovery import VtepMac
from controller.remote import RemoteDelta, RemoteMac
from tests.unit.oracle_inputs import SUBNETS, VPORTS, VTEP_IPS
from tests.unit.test_mobility_oracle import PEERS


class ContestedBinds:
    """Events and the check of announcing at bind, for a driver with ``fed`` and ``ref`` Federations on the oracle's
    world, ``mobility`` being ``fed``'s MAC mobility."""

    def _vms(self) -> dict:
        """(subnet id, MAC) -> name of each KVM and Hyper-V vport in the policy."""
        policy, vms = self.state.policy, {}
        for name, v in sorted(self.vports.items()):
            vport = policy.find("vport", f"acme/{v['subnet']}/{name}") if v["subnet"] in self.subnets else None
            if VPORTS[name] in ("kvm", "hyperv") and vport is not None:
                vms[(vport["subnet_id"], vport["mac"])] = name
        return vms

    def ev_away(self, rng: random.Random) -> None:
        """A VM not bound on any VRS shows up elsewhere: behind a peer (its route of the MAC, a number above 0), or
        behind a connected hardware VTEP (which learns its MAC: a MAC local to us, MAC mobility numbers it)."""
        away = sorted((name, mac) for mac, name in self._vms().items()
                      if name not in self.placed and name not in self.lingering)  # (by name: ids are new every run)
        if not away:
            return
        name, mac = rng.choice(away)
        subnet = self.vports[name]["subnet"]
        if rng.random() < 0.5:  # behind a hardware VTEP port of its subnet (connected, bound: a local MAC)
            tor = rng.choice(sorted(self.tors))
            if not any(b[0] == tor and b[3] == subnet for b in self.bindings):
                self.bindings.add((tor, "p9", 900 + sorted(SUBNETS).index(subnet), subnet))
                self.commit()
            learned = VtepMac(mac[1], self.vni_of(subnet), None, self.tor_ips[tor])
            self.tors[tor] = self.tors[tor] or []
            self.tors[tor] = [m for m in self.tors[tor] if m.mac != mac[1]] + [learned]
            self.push_tor(tor)
        else:
            claim = RemoteMac(mac[0], mac[1], (), rng.choice(VTEP_IPS), seq=rng.randrange(1, 4), peer=rng.choice(PEERS))
            self.state.remote_changed(RemoteDelta(frozenset({claim}), frozenset()))

    def ev_bind_contested(self, rng: random.Random) -> None:
        """Between a View and its publish: a VM no route of the last publish names, whose MAC MAC mobility numbers
        (learned by a hardware VTEP) or flags a duplicate, or a peer claims, is bound on a VRS (it came back); the
        announcement at bind must leave it to the pass, whose number is above 0 or which announces none
        (``rfc_seq``)."""
        remote, origins, entries = self.state.remote_index, self.fed._origins, self.mobility.entries
        flagged = self.mobility.duplicates  # (a flag outlives the MAC's entry: a MAC gone from here, then back)
        names = sorted(name for mac, name in self._vms().items() if not origins.has(self._vport_id(name)) and
                       (mac in entries or mac in flagged or remote.macs_at(*mac)) and
                       name not in self.wrong_mac | self.unnumbered)
        if not names:
            return
        name = rng.choice(names)
        old = self.placed.get(name)
        hosts = [host for host in sorted(self.hosts) if host != old]  # (connected: State locates it there)
        if hosts:
            self.placed[name] = rng.choice(hosts)
            self.ofports[name] = rng.randrange(10, 20)
            for host in {old, self.placed[name]} - {None}:
                self.push(host)

    def _vport_id(self, name: str) -> str:
        return self.state.policy.find("vport", f"acme/{self.vports[name]['subnet']}/{name}")["id"]

    def check_early(self, where: str, bound) -> int:
        """Each route announced at bind since the last publish (on either side) carries the sequence number
        ``rfc_seq`` gives its MAC now, which is 0: announced at bind, a route has none. Returns how many of the vports
        ``bound`` have a MAC that MAC mobility numbers or a peer claims (what the announcement at bind must leave to
        the pass)."""
        remote = self.state.remote_index
        for fed in (self.fed, self.ref):
            for key, early in fed._early._routes.items():
                if early.fresh and key in fed.speaker.desired:
                    route, mac = early.route, (early.endpoint.subnet_id, early.endpoint.mac)
                    assert rfc_seq(fed.mobility, remote, mac, route.next_hop) == (route.mobility_seq or 0), \
                        f"{where}: {route} announced at bind"
        policy, contested = self.state.policy, 0
        for vid in bound:
            vport = policy.get("vport", vid)
            mac = (vport["subnet_id"], vport["mac"]) if vport is not None else None
            contested += mac is not None and (mac in self.mobility.entries or mac in self.mobility.duplicates or
                                              bool(remote.macs_at(*mac)))
        return contested



def rfc_seq(mobility: Mobility, remote, mac: tuple, ip: str) -> int | None:
    """The sequence number RFC 7432 section 15 gives local MAC ``mac`` (subnet, MAC) at our VTEP ``ip``, from what
    ``mobility`` holds of it (its number and VTEP as last announced, a duplicate flag) and the peers' routes of it in
    ``remote`` (not at one of our VTEPs); None: not announced (a peer's route wins, or a duplicate)."""
    if mac in mobility.duplicates:
        return None
    ours = {at for _seq, at in mobility.entries.values()} | {ip}
    others = [m for m in remote.macs_at(*mac) if m.vtep_ip not in ours]
    other, held = (others[-1] if others else None), mobility.entries.get(mac)
    if held is None:  # new here: one more than a peer's
        seq = other.seq + 1 if other is not None else 0
    elif held[1] != ip:  # moved between our VTEPs: one more than ours and the peer's
        seq = max(held[0], other.seq if other is not None else -1) + 1
    else:
        seq = held[0]
    if other is not None and beats(other, RemoteMac(mac[0], mac[1], (), ip, seq=seq)):
        return None
    return seq


