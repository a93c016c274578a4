"""The world the incremental oracle drives (tests/unit/test_incremental_oracle.py): what its random driver controls
(policy, hypervisors and their ports, hardware VTEPs, the external network, security policy) and how it turns that into
State inputs: a policy document committed with its change list, VRS and VTEP snapshots. The random events that change
it are ``World`` (tests/unit/oracle_world.py). ``CANOPY_ORACLE_SEEDS`` / ``CANOPY_ORACLE_STEPS`` make longer runs."""

from __future__ import annotations

import copy
import os
import random
from dataclasses import replace

from controller import policy as pol
from controller import policydoc, replicacheck
from controller.discovery import PortInfo, VrsSnapshot, VtepSnapshot
from controller.programmer import Programmer
from controller.state import State
from controller.store import Change

SEEDS = int(os.environ.get("CANOPY_ORACLE_SEEDS", "16"))
STEPS = int(os.environ.get("CANOPY_ORACLE_STEPS", "150"))
HOSTS = {"hv1": "kvm", "hv2": "hyperv", "hv3": "esxi", "hv4": "kvm"}
SUBNETS = {  # name -> (domain or None for L2-only, cidr)
    "web": ("prod", "10.0.1.0/24"), "db": ("prod", "10.0.2.0/24"), "app": ("dev", "10.0.3.0/24"),
    "lan": (None, "10.9.0.0/24")}
# name -> (flavour, how the hypervisor shows it): kvm iface-id, hyperv port name, esxi vNIC key, esxi static
VPORTS = {"k1": "kvm", "k2": "kvm", "k3": "kvm", "k4": "kvm", "h1": "hyperv", "h2": "hyperv", "e1": "esxi",
          "e2": "esxi", "s1": "static", "b1": "baremetal", "b2": "baremetal"}
CROSS = {"h1": "k3", "h2": "k4"}  # a Hyper-V vport's port that may carry a KVM vport's iface-id (``crossed``)
VTEP_IPS = ("10.99.0.1", "10.99.0.2")
TORS = {"tor1": ("10.252.0.1", "10.252.1.1"), "tor2": ("10.252.0.2", "10.252.1.2")}  # hardware VTEP -> tunnel IPs
BINDINGS = [("tor1", "p1", 100, "web"), ("tor1", "p1", 200, "lan"), ("tor1", "p2", 100, "db"),  # tor3: bound, never
            ("tor2", "p1", 100, "web"), ("tor2", "p2", 300, "app"), ("tor3", "p1", 100, "lan")]  # connected
FIPS = ("f1", "f2", "f3")  # floating IPs of the external network "public"
EXT_UPLINKS = {"hv1": ("uplink", None, "203.0.113.11"), "hv2": ("uplink", 100, "203.0.113.12")}  # from policy
EXT_OVSDB = "hv4"  # says its uplink in OVSDB (external_ids of port eth-ext)


def mac_of(name: str, variant: int = 0) -> str:
    n = sorted(VPORTS).index(name) + 1
    return f"02:00:00:00:{variant:02x}:{n:02x}"


class Inputs:
    """What the random driver controls, and how it turns that into State inputs (the events: ``World``)."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.subnets = {"web": {"dhcp": True, "chassis": []}, "db": {"dhcp": True, "chassis": []},
                        "lan": {"dhcp": True, "chassis": []}}
        self.domains = {"prod": {"static": []}}
        self.detached: dict[str, int] = {}  # routed subnets taken out of their domain -> their VNI (kept)
        self.inside_a_pass = False  # events land in a pass's pause: no pass of their own (one programming loop)
        self.committing = False  # a commit is in State's hands (it may pause)
        self.vports: dict[str, dict] = {}  # name -> {subnet, mac variant, ip}
        self.bare: set[str] = set()  # KVM vports turned bare metal in policy (their ports may still show)
        self.bindings: set[tuple] = set()  # (switch, port, vlan, subnet)
        self.hosts: dict[str, dict] = {}  # connected: name -> {tunnel ofport, vtep ip}
        self.placed: dict[str, str] = {}  # vport name -> host it is on
        self.lingering: dict[str, str] = {}  # vport name -> the host it left, still showing its port (migration)
        self.ofports: dict[str, int] = {}
        self.unnumbered: set[str] = set()  # KVM ports whose row OVSDB shows before ovs-vswitchd numbered them
        self.stopped: set[str] = set()  # lingering ports whose VM stopped there: no device (ofport -1: None)
        self.wrong_mac: set[str] = set()  # the hypervisor reports another MAC for these
        self.crossed: set[str] = set()  # Hyper-V vports whose port carries CROSS's iface-id (binding.py ``conflicting``)
        self.tors: dict[str, list | None] = dict.fromkeys(TORS)  # hardware VTEP -> None (not connected) or its MACs
        self.tor_ips = {name: ips[0] for name, ips in TORS.items()}
        self.tor_pushes = 0
        # external network: policy uplinks listed, gateway MAC known, hosts showing their uplink port,
        # floating IP -> vport name (None: free), domains translated to the underlay
        self.ext = {"uplinks": set(EXT_UPLINKS), "gateway_mac": True, "ports": set(), "fips": {}, "nat": set()}
        # security policy: groups, ACLs (name -> body), vport -> its groups, vport -> its own ACLs, domain defaults
        self.sec = {"groups": {"g1", "g2"}, "acls": {}, "member": {}, "direct": {}, "deny": set()}
        self.trunk_ofport = 5  # the ESXi trunk's ofport: >= 16 makes its vports' zones allocated
        self.state = State(pol.Policy(), default_flavour="kvm")
        self.prog = Programmer(self.state)

    # ------------------------------------------------------------------ policy as a document
    def document(self) -> dict:
        domains = {name: {"name": name, "static_routes": copy.deepcopy(d["static"]), "subnets": [],
                          **({"external_network": "public", "underlay_nat": True} if name in self.ext["nat"] else {}),
                          **({"default_acl_action": "deny"} if name in self.sec["deny"] else {}),
                          **({"gateway_mac": d["gmac"]} if d.get("gmac") else {})}
                   for name, d in self.domains.items()}
        l2 = []
        for name, s in sorted(self.subnets.items()):
            routed, cidr = SUBNETS[name]
            dom = self.domain_of(name)
            net = cidr.rsplit(".", 1)[0]
            body = {"name": name, "cidr": cidr, "dhcp": {"enabled": s["dhcp"]}, "vports": []}
            if routed:  # kept out of its domain, as a Neutron network whose router interface was removed
                body["gateway"] = f"{net}.1"
            if s.get("vni"):
                body["vni"] = s["vni"]
            if s["chassis"]:
                body["gateway_chassis"] = list(s["chassis"])
            for vname, v in sorted(self.vports.items()):
                if v["subnet"] == name:
                    body["vports"].append(self.vport_body(vname, v, net))
            (domains[dom]["subnets"] if dom else l2).append(body)
        bindings = [{"switch": switch, "port": port, "vlan": vlan, "subnet": f"acme/{sub}"}
                    for switch, port, vlan, sub in sorted(self.bindings) if sub in self.subnets]
        return {"source": "oracle", "tenants": [{"name": "acme", "domains": list(domains.values()), "subnets": l2,
                                                 "floating_ips": self.floating_ips(), **self.security()}],
                "vtep_bindings": bindings, "external_networks": [self.external_network()]}

    def external_network(self) -> dict:
        ups = [{"chassis": h, "port": port, "ip": ip, **({"vlan": vlan} if vlan else {})}
               for h, (port, vlan, ip) in sorted(EXT_UPLINKS.items()) if h in self.ext["uplinks"]]
        return {"name": "public", "cidr": "203.0.113.0/24", "gateway": "203.0.113.1", "uplinks": ups,
                **({"gateway_mac": "02:ee:ee:00:00:01"} if self.ext["gateway_mac"] else {})}

    def floating_ips(self) -> list:
        """Attached only to vports that may hold one (routed, not bare metal); else free."""
        out = []
        for n, name in enumerate(FIPS):
            if name not in self.ext["fips"]:
                continue
            vport = self.ext["fips"][name]
            v = self.vports.get(vport)
            ok = v is not None and v["subnet"] in self.subnets and self.domain_of(v["subnet"]) is not None \
                and vport not in self.bare
            out.append({"name": name, "external_network": "public", "address": f"203.0.113.{50 + n}",
                        **({"vport": f"{v['subnet']}/{vport}"} if ok else {})})
        return out

    def security(self) -> dict:
        """Policy groups and ACLs, leaving out what names a group or subnet that is not there."""
        groups = self.sec["groups"]
        acls = []
        for name, body in sorted(self.sec["acls"].items()):
            rules = [r for r in body["rules"] if r.get("remote_group", "g1") in groups and
                     r.get("remote_subnet", "web") in self.subnets]
            acls.append({**body, "name": name, "rules": rules, "policy_groups": sorted(set(body["groups"]) & groups)})
            del acls[-1]["groups"]
        return {"policy_groups": [{"name": g} for g in sorted(groups)], "acls": acls}

    def vport_body(self, name, v, net):
        flavour = "baremetal" if name in self.bare else VPORTS[name]
        binding_ = {"flavour": "esxi" if flavour == "static" else flavour}
        if flavour == "esxi":
            binding_["vnic_id"] = f"vnic-{name}"
        if flavour == "static":
            binding_.update(host="hv3", trunk_port="trunk0", vlan=300 + sorted(VPORTS).index(name))
        return {"name": name, "mac": mac_of(name, v["mac"]), "ips": [f"{net}.{v['ip']}"], "binding": binding_,
                "policy_groups": sorted(set(self.sec["member"].get(name, ())) & self.sec["groups"]),
                "acls": sorted(set(self.sec["direct"].get(name, ())) & set(self.sec["acls"]))}

    def commit(self):
        plan = policydoc.plan(self.state.policy, self.document(), "oracle",
                              pol.Allocator({}, 65000, (10000, 20000)), prune=True)
        seq = self.state.last_seq
        self.take(plan.policy, [Change(c.kind, c.id, c.op, c.body, seq + n) for n, c in enumerate(plan.changes, 1)])

    def restore(self, kind, body) -> None:
        """A standby's store replaced by its active's snapshot, which holds ``body`` (controller/replication.py
        ``Applier._restore``): checked as it checks one (controller/replicacheck.py), then given to State wholesale
        (no change list: State compares the two policies). A snapshot replaces what the standby held, so an
        object's immutable fields may differ there (a replicated put changing one is refused:
        tests/unit/test_replicacheck.py)."""
        snapshot = {"objects": {k: dict(objs) for k, objs in self.state.policy.objects.items()}, "meta": {}}
        snapshot["objects"][kind][body["id"]] = body
        self.take(replicacheck.checked_snapshot(snapshot), [])

    def take(self, policy, changes):
        self.committing = True  # writes are one at a time (the service's write lock): none lands in this one's pauses
        try:
            self.state.policy_committed(policy, changes)
        finally:
            self.committing = False

    # ------------------------------------------------------------------ discovery
    def snapshot(self, host) -> VrsSnapshot:
        h = self.hosts[host]
        flavour = HOSTS[host]
        ports = [PortInfo("vxlan0", h["tunnel"], None, (), "vxlan")]
        trunk = []
        shown = [(n, h, False) for n, h in sorted(self.placed.items())] + \
                [(n, h, n in self.stopped) for n, h in sorted(self.lingering.items())]
        for name, where, stopped in shown:
            if where != host:
                continue
            kind = VPORTS[name]
            mac = "02:ee:00:00:00:01" if name in self.wrong_mac else mac_of(name, self.vports[name]["mac"]
                                                                                 if name in self.vports else 0)
            if kind in ("kvm", "hyperv"):
                ext = (("attached-mac", mac),) + ((("iface-id", name),) if kind == "kvm" else
                                                  (("iface-id", CROSS[name]),) if name in self.crossed else ())
                ofport = None if name in self.unnumbered or stopped else self.ofports[name]
                ports.append(PortInfo(f"tap-{name}" if kind == "kvm" else name, ofport, mac, ext))
            elif kind == "esxi":
                trunk.append((f"canopy-vnic-{200 + self.ofports[name]}", f"vnic-{name}"))
        if flavour == "esxi" and (trunk or "s1" in self.placed):
            ports.append(PortInfo("trunk0", self.trunk_ofport, None, tuple(sorted(trunk))))
        if host in self.ext["ports"]:  # the uplink to the external network
            ports.append(PortInfo("eth-ext", 3, None, (("canopy-external-network", "public"),
                                                       ("canopy-external-ip", "203.0.113.14")))
                         if host == EXT_OVSDB else PortInfo("uplink", 4, None, ()))
        if h.get("agent"):
            ports.append(PortInfo("canopy-md", 6, "02:aa:00:00:00:06", (("canopy-metadata-agent", "true"),),
                                  "internal"))
        return VrsSnapshot(f"ovsdb:{host}", "peer", host, host, flavour, h["vtep"], "br-int", True,
                           0x100 + int(host[2:]), "3.1.0", tuple(ports))

    def push(self, host):
        """Report a host's snapshot, half of the time saying which ports changed (as ovsdb/vrs.py does), half
        of the time not (State then compares with the previous snapshot)."""
        if host not in self.hosts:
            return
        snap = self.snapshot(host)
        before = self.state.vrs.get(snap.session)
        if before is not None and self.rng.random() < 0.5:
            old = {p.name: p for p in before.ports}
            new = {p.name: p for p in snap.ports}
            changed = frozenset(n for n in old.keys() | new.keys() if old.get(n) != new.get(n))
            snap = replace(snap, changed=changed, changed_ports={n: new[n] for n in changed if n in new})
        self.state.vrs_update(snap)

    def push_tor(self, name):
        """Report a VTEP's snapshot, half of the time saying which local MACs changed (as ovsdb/vtep_reporter.py
        does), half of the time not (the whole VTEP is then taken again)."""
        macs = self.tors[name]
        if macs is None:
            self.state.vtep_gone(f"vtep:{name}")
            return
        snap = VtepSnapshot(f"vtep:{name}", "peer", name, (self.tor_ips[name],), (), "",
                            (), tuple(sorted(macs, key=lambda m: (m.vni, m.mac))))
        before = self.state.vteps.get(snap.session)
        self.tor_pushes += 1
        if before is not None and self.tor_pushes % 2:  # (not from rng: the other events' sequences stay as they were)
            snap = replace(snap, changed=frozenset(set(before.local_macs) ^ set(snap.local_macs)))
        self.state.vtep_update(snap)

    def domain_of(self, subnet):
        return None if subnet in self.detached else SUBNETS[subnet][0]

    def vni_of(self, subnet):
        obj = self.state.policy.find("subnet", f"acme/{subnet}")
        return obj["vni"] if obj else 4242
