"""The full recompute is the oracle (issue 13, item 4): random sequences of events go through State and the
incremental Programmer, and after every programming pass the incremental result must equal a from-scratch one:

- vport locations: ``State.locations`` / ``mismatched`` (kept by the binding index from deltas) equal
  ``binding.resolve`` + ``partition`` over everything State holds;
- desired state: for every switch, ``Programmer.desired`` (updated from the change journal, owner by owner)
  equals ``compile_switch`` over ``derive.derive`` from scratch, compared per owner with every flow's cookie
  (Flow equality ignores the owner, so a flow filed under the wrong owner would otherwise pass) and every group;
- hardware VTEPs: every VTEP's desired rows (``Programmer.vteps``, kept by delta: controller/viewvteps.py) equal
  ``vtep_desired`` over the View derived from scratch.

Events: policy create/update/delete (subnets routed and L2-only, domains and their static routes, vports of every
flavour, hardware VTEP bindings, DHCP and gateway chassis) applied as documents with their commit's change list; a
routed subnet leaving its domain and joining it again (deleted with its vports and created again with the same VNI,
as a Neutron router interface removed and added makes it); a domain's gateway MAC changing; ports appearing, leaving
and moving across KVM, Hyper-V and ESXi hypervisors (vNIC keys and static trunk bindings, MAC mismatches); VRS
connecting, disconnecting, changing tunnel port or VTEP IP; two hardware VTEPs connecting, leaving, changing tunnel
IP and learning MACs (and a third bound in policy, never connected); EVPN routes (types 2, 3, 5) arriving and
withdrawn; an external network (its gateway MAC and uplinks, from policy and from OVSDB), floating IPs attached,
moved and freed, domains translated to the underlay or not (controller/extnet.py, docs/external.md); security
policies: ACLs created, changed and deleted (rules naming policy groups, subnets and prefixes; applied to groups and
to vports directly), vports joining and leaving policy groups, groups created and deleted, a domain's default ACL
action, an ESXi trunk whose ofport makes its vports' conntrack zones allocated (controller/security.py). Seeded: a
failure names its seed and step. ``CANOPY_ORACLE_SEEDS`` / ``CANOPY_ORACLE_STEPS`` make longer runs.
"""

from __future__ import annotations

import copy
import os
import random
from dataclasses import replace

import pytest

from controller import binding
from controller import policy as pol
from controller import policydoc
from controller.derive import View, derive, vtep_desired
from controller.extnet import ExternalView
from controller.discovery import PortInfo, VrsSnapshot, VtepMac, VtepSnapshot
from controller.pacer import Pacer
from controller.programmer import Programmer
from controller.remote import RemoteDelta, RemoteMac, RemotePrefix, RemoteTable
from controller.state import State
from controller.store import Change
from controller.viewdelta import LiveView
from controller.viewroutes import LazyFib
from openflow import acl
from openflow.compiler import compile_switch

SEEDS = int(os.environ.get("CANOPY_ORACLE_SEEDS", "16"))
STEPS = int(os.environ.get("CANOPY_ORACLE_STEPS", "150"))
HOSTS = {"hv1": "kvm", "hv2": "hyperv", "hv3": "esxi", "hv4": "kvm"}
SUBNETS = {  # name -> (domain or None for L2-only, cidr)
    "web": ("prod", "10.0.1.0/24"), "db": ("prod", "10.0.2.0/24"), "app": ("dev", "10.0.3.0/24"),
    "lan": (None, "10.9.0.0/24")}
# name -> (flavour, how the hypervisor shows it): kvm iface-id, hyperv port name, esxi vNIC key, esxi static
VPORTS = {"k1": "kvm", "k2": "kvm", "k3": "kvm", "k4": "kvm", "h1": "hyperv", "h2": "hyperv", "e1": "esxi",
          "e2": "esxi", "s1": "static", "b1": "baremetal", "b2": "baremetal"}
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


class World:
    """What the random driver controls, and how it turns that into State inputs."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.subnets = {"web": {"dhcp": True, "chassis": []}, "db": {"dhcp": True, "chassis": []},
                        "lan": {"dhcp": True, "chassis": []}}
        self.domains = {"prod": {"static": []}}
        self.detached: dict[str, int] = {}  # routed subnets taken out of their domain -> their VNI (kept)
        self.inside_a_pass = False  # events land in a pass's pause: no pass of their own (one programming loop)
        self.committing = False  # a commit is in State's hands (it may pause)
        self.vports: dict[str, dict] = {}  # name -> {subnet, mac variant, ip}
        self.bindings: set[tuple] = set()  # (switch, port, vlan, subnet)
        self.hosts: dict[str, dict] = {}  # connected: name -> {tunnel ofport, vtep ip}
        self.placed: dict[str, str] = {}  # vport name -> host it is on
        self.lingering: dict[str, str] = {}  # vport name -> the host it left, still showing its port (migration)
        self.ofports: dict[str, int] = {}
        self.unnumbered: set[str] = set()  # KVM ports whose row OVSDB shows before ovs-vswitchd numbered them
        self.wrong_mac: set[str] = set()  # the hypervisor reports another MAC for these
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
            ok = v is not None and v["subnet"] in self.subnets and self.domain_of(v["subnet"]) is not None
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
        flavour = VPORTS[name]
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
        changes = [Change(c.kind, c.id, c.op, c.body, seq + n) for n, c in enumerate(plan.changes, 1)]
        self.committing = True  # writes are one at a time (the service's write lock): none lands in this one's pauses
        try:
            self.state.policy_committed(plan.policy, changes)
        finally:
            self.committing = False

    # ------------------------------------------------------------------ discovery
    def snapshot(self, host) -> VrsSnapshot:
        h = self.hosts[host]
        flavour = HOSTS[host]
        ports = [PortInfo("vxlan0", h["tunnel"], None, (), "vxlan")]
        trunk = []
        shown = sorted(self.placed.items()) + sorted(self.lingering.items())
        for name, where in shown:
            if where != host:
                continue
            kind = VPORTS[name]
            mac = "02:ee:00:00:00:01" if name in self.wrong_mac else mac_of(name, self.vports[name]["mac"]
                                                                                 if name in self.vports else 0)
            if kind in ("kvm", "hyperv"):
                ext = (("attached-mac", mac),) + ((("iface-id", name),) if kind == "kvm" else ())
                ofport = None if name in self.unnumbered else self.ofports[name]
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
        """Report a VTEP's snapshot, half of the time saying which local MACs changed (as ovsdb/vtep.py does),
        half of the time not (the whole VTEP is then taken again)."""
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

    def vni_of(self, subnet):
        obj = self.state.policy.find("subnet", f"acme/{subnet}")
        return obj["vni"] if obj else 4242

    # ------------------------------------------------------------------ events
    def step(self):
        rng = self.rng
        events = ["vport", "vport", "vport", "place", "place", "place", "subnet", "domain", "binding", "vrs", "tor",
                  "evpn", "mismatch", "external", "external", "security", "security", "security", "move", "numbered"]
        if self.inside_a_pass:  # received routes are imported by the programming loop itself, between passes
            events.remove("evpn")  # (controller/app.py _import_remote), never while a pass is paused
        event = rng.choice(events)
        getattr(self, "ev_" + event)()

    def ev_vport(self):
        rng, name = self.rng, self.rng.choice(sorted(VPORTS))
        if name in self.vports and rng.random() < 0.3:
            del self.vports[name]
        else:
            subs = sorted(s for s in self.subnets if VPORTS[name] != "baremetal" or s in ("web", "lan"))
            self.vports[name] = {"subnet": rng.choice(subs), "mac": rng.randrange(2),
                                 "ip": 20 + 2 * sorted(VPORTS).index(name) + rng.randrange(2)}
        self.commit()

    def ev_place(self):
        rng, name = self.rng, self.rng.choice(sorted(n for n in VPORTS if VPORTS[n] != "baremetal"))
        old = self.placed.pop(name, None)
        gone = self.lingering.pop(name, None)
        kind = VPORTS[name]
        fits = [h for h in HOSTS if kind not in ("esxi", "static") or HOSTS[h] == "esxi"]
        if rng.random() < 0.75:
            self.placed[name] = rng.choice(fits)
            self.ofports[name] = rng.randrange(10, 20)
        if old and old != self.placed.get(name) and kind in ("kvm", "hyperv") and rng.random() < 0.4:
            self.lingering[name] = old  # a migration in flight: both hypervisors show the port for a while
            old = None
        for host in {old, gone, self.placed.get(name)} - {None}:
            self.push(host)

    def ev_external(self):
        """A floating IP attached, moved or freed; a domain translated or not; the network's gateway MAC or an
        uplink (in policy, or the port on the hypervisor) come or go."""
        rng, ext = self.rng, self.ext
        what = rng.choice(["fip", "fip", "fip", "nat", "gateway", "uplink", "port", "arp"])
        if what == "fip":
            name = rng.choice(FIPS)
            held = {v for f, v in ext["fips"].items() if f != name}
            free = sorted(n for n in VPORTS if VPORTS[n] != "baremetal" and n not in held)
            near = [n for n in free if self.placed.get(n) in set(EXT_UPLINKS) | {EXT_OVSDB}]  # can be active
            if name in ext["fips"] and rng.random() < 0.2:
                del ext["fips"][name]
            else:
                ext["fips"][name] = rng.choice(near if near and rng.random() < 0.6 else free + [None])
                for host in {self.placed.get(ext["fips"][name])} & (set(EXT_UPLINKS) | {EXT_OVSDB}):
                    ext["ports"].add(host)  # its uplink port shows too (the policy uplink needs it)
                    self.push(host)
        elif what == "nat":
            ext["nat"] ^= {rng.choice(sorted(self.domains))}
        elif what == "gateway":
            ext["gateway_mac"] = not ext["gateway_mac"]
        elif what == "uplink":
            ext["uplinks"] ^= {rng.choice(sorted(EXT_UPLINKS))}
        elif what == "arp":  # a VRS's ARP resolution of the gateway (openflow/gateway_arp.py) found or forgot it
            net = self.state.policy.find("external_network", "public")
            host = rng.choice(sorted(EXT_UPLINKS) + [EXT_OVSDB])
            if net is not None:
                self.state.gateway_learned(f"ovsdb:{host}", net["id"], rng.choice([None, "02:ee:ee:00:00:02",
                                                                                   "02:ee:ee:00:00:03"]))
            return
        else:
            host = rng.choice(sorted(EXT_UPLINKS) + [EXT_OVSDB])
            ext["ports"] ^= {host}
            self.push(host)
            return
        self.commit()

    def ev_security(self):
        """An ACL created, changed or deleted; a vport joining or leaving a group, or given ACLs of its own; a
        group created or deleted; a domain's default action; the ESXi trunk's ofport (zones allocated or not)."""
        rng, sec = self.rng, self.sec
        what = rng.choice(["acl", "acl", "rule", "join", "join", "direct", "group", "default", "trunk"])
        if what in ("acl", "rule"):
            name = rng.choice(["a1", "a2", "a3"])
            if what == "acl" and name in sec["acls"] and rng.random() < 0.25:
                del sec["acls"][name]
            elif what == "rule" and name in sec["acls"]:
                rules = sec["acls"][name]["rules"]
                if rules and rng.random() < 0.4:
                    del rules[rng.randrange(len(rules))]
                else:
                    rules.insert(rng.randrange(len(rules) + 1), self.rule())
            else:
                sec["acls"][name] = {"priority": rng.randrange(3), "default_action": rng.choice(["allow", "deny"]),
                                     "groups": rng.sample(["g1", "g2", "g3"], rng.randrange(1, 3)),
                                     "rules": [self.rule() for _ in range(rng.randrange(4))]}
        elif what == "join":
            name = rng.choice(sorted(n for n in VPORTS if VPORTS[n] != "baremetal"))
            sec["member"][name] = rng.sample(["g1", "g2", "g3"], rng.randrange(3))
        elif what == "direct":
            name = rng.choice(sorted(n for n in VPORTS if VPORTS[n] != "baremetal"))
            sec["direct"][name] = rng.sample(["a1", "a2", "a3"], rng.randrange(3))
        elif what == "group":
            sec["groups"] ^= {rng.choice(["g1", "g2", "g3"])}
        elif what == "default":
            sec["deny"] ^= {rng.choice(sorted(self.domains))}
        else:
            self.trunk_ofport = 5 if self.trunk_ofport != 5 else rng.choice([16, 17, 300])
            if "hv3" in self.hosts:
                self.push("hv3")
            return
        self.commit()

    def rule(self) -> dict:
        rng = self.rng
        rule = {"direction": rng.choice(["ingress", "egress"]), "action": rng.choice(["allow", "allow", "deny"]),
                "protocol": rng.choice(["tcp", "udp", "icmp", "any"]), "stateful": rng.random() < 0.7}
        remote = rng.choice(["group", "group", "subnet", "prefix", "any"])
        if remote == "group":
            rule["remote_group"] = rng.choice(["g1", "g2", "g3"])
        elif remote == "subnet":
            rule["remote_subnet"] = rng.choice(sorted(SUBNETS))
        elif remote == "prefix":
            rule["remote"] = rng.choice(["10.0.0.0/16", "10.0.1.32/32"])
        if rule["protocol"] in ("tcp", "udp") and rng.random() < 0.6:
            rule["ports"] = rng.choice(["80", "1000-1099"])
        return rule

    def ev_mismatch(self):
        name = self.rng.choice(["k1", "k2", "h1"])
        self.wrong_mac ^= {name}
        if name in self.placed:
            self.push(self.placed[name])

    def ev_subnet(self):
        rng, name = self.rng, self.rng.choice(sorted(SUBNETS))
        if name in self.subnets and rng.random() < 0.25 and name != "web":
            del self.subnets[name]
            self.vports = {k: v for k, v in self.vports.items() if v["subnet"] != name}
            net = SUBNETS[name][1].rsplit(".", 1)[0] + "."
            for d in self.domains.values():
                d["static"] = [r for r in d["static"] if not r["next_hop"].startswith(net)]
        else:
            if SUBNETS[name][0] and SUBNETS[name][0] not in self.domains:
                self.domains[SUBNETS[name][0]] = {"static": []}
            self.subnets[name] = {"dhcp": rng.random() < 0.7,
                                  "chassis": rng.sample(sorted(HOSTS), rng.randrange(3))}
        self.commit()

    def domain_of(self, subnet):
        return None if subnet in self.detached else SUBNETS[subnet][0]

    def ev_move(self):
        """A routed subnet leaves its domain or joins it again, as Neutron's router interface removed or added
        makes it (networking_canopy mapping.plan; a subnet's domain_id never changes): the subnet is deleted with
        its vports and created again in its new place with the same VNI, gateway and vports; half of the time
        both commits reach one programming pass."""
        rng = self.rng
        self.move(rng.choice(sorted(s for s in self.subnets if SUBNETS[s][0])),
                  rng.random() < 0.5 and not self.inside_a_pass)

    def move(self, name, pass_between):
        vni = self.state.policy.find("subnet", f"acme/{name}")["vni"]
        kept = self.subnets.pop(name)
        net = SUBNETS[name][1].rsplit(".", 1)[0] + "."
        for d in self.domains.values():
            d["static"] = [r for r in d["static"] if not r["next_hop"].startswith(net)]
        vports = self.vports
        self.vports = {k: v for k, v in vports.items() if v["subnet"] != name}
        self.commit()
        if pass_between:
            self.prog.refresh()
        if name in self.detached:
            del self.detached[name]
            self.domains.setdefault(SUBNETS[name][0], {"static": []})  # (deleted while it had no subnets)
        else:
            self.detached[name] = vni
        self.subnets[name] = {**kept, "vni": vni}
        self.vports = vports
        self.commit()

    def ev_domain(self):
        """A domain's static routes change, or its anycast gateway MAC (every subnet's info in it changes); a domain
        left without subnets is deleted (a tenant's router gone: created again later, it is another domain)."""
        rng = self.rng
        dom = rng.choice(sorted(self.domains))
        nets = [SUBNETS[s][1].rsplit(".", 1)[0] for s in self.subnets if self.domain_of(s) == dom]
        if not nets:
            if rng.random() < 0.5 and len(self.domains) > 1:
                del self.domains[dom]
                self.commit()
            return
        if rng.random() < 0.25:
            self.domains[dom]["gmac"] = "02:ca:fe:00:0d:02" if self.domains[dom].get("gmac") == "02:ca:fe:00:0d:01" \
                else "02:ca:fe:00:0d:01"
            self.commit()
            return
        hops = [f"{rng.choice(nets)}.{n}" for n in (32, 34, 35, 20, 99, 77)]
        self.domains[dom]["static"] = [{"prefix": p, "next_hop": rng.choice(hops)}
                                       for p in rng.sample(["192.168.0.0/16", "172.16.0.0/12", "10.0.1.33/32"],
                                                           rng.randrange(3))]
        self.commit()

    def ev_binding(self):
        entry = self.rng.choice(BINDINGS)
        self.bindings ^= {entry}
        self.commit()

    def ev_numbered(self):
        """A KVM port's row reported before ovs-vswitchd numbered it, then the switch's PORT_STATUS numbering it
        (State.ofport_seen, controller/ofports.py); half of the time OVSDB reports the number at once, else with
        the host's next report."""
        rng = self.rng
        kvm = sorted(n for n, h in self.placed.items() if VPORTS[n] == "kvm" and h in self.hosts)
        if not kvm:
            return
        name = rng.choice(kvm)
        host = self.placed[name]
        self.unnumbered.add(name)
        self.push(host)
        self.unnumbered.discard(name)
        self.state.ofport_seen(0x100 + int(host[2:]), f"tap-{name}", self.ofports[name])
        if rng.random() < 0.5:
            self.push(host)

    def ev_vrs(self):
        rng, host = self.rng, self.rng.choice(sorted(HOSTS))
        if host in self.hosts and rng.random() < 0.3:
            del self.hosts[host]
            self.state.vrs_gone(f"ovsdb:{host}")
            return
        h = self.hosts.setdefault(host, {"tunnel": 99, "vtep": f"10.251.0.{host[2:]}"})
        if rng.random() < 0.3:
            h["tunnel"] = rng.choice([98, 99])
        if rng.random() < 0.2:
            h["vtep"] = rng.choice([f"10.251.0.{host[2:]}", f"10.251.1.{host[2:]}"])
        if rng.random() < 0.3:  # the metadata agent's port (openflow/metadata.py) comes or goes
            h["agent"] = not h.get("agent")
        self.push(host)

    def ev_tor(self):
        """A hardware VTEP leaves, changes its tunnel IP, or connects or learns MACs (of bare-metal servers, an
        unknown host, a vport's MAC; both VTEPs may learn the same MAC)."""
        rng = self.rng
        name = rng.choice(sorted(TORS))
        ip = self.tor_ips[name]
        if self.tors[name] is not None and rng.random() < 0.2:
            self.tors[name] = None
        elif self.tors[name] is not None and rng.random() < 0.15:
            self.tor_ips[name] = next(x for x in TORS[name] if x != ip)
        else:
            pool = [VtepMac(mac_of("b1"), self.vni_of("web"), "10.0.1.21", ip),
                    VtepMac(mac_of("b2", 1), self.vni_of("lan"), None, ip),
                    VtepMac("02:00:00:00:0b:07", self.vni_of("web"), "10.0.1.77", ip),
                    VtepMac(mac_of("k1"), self.vni_of("web"), "10.0.1.32", ip)]  # a vport's MAC
            self.tors[name] = rng.sample(pool, rng.randrange(len(pool) + 1))
        self.push_tor(name)

    def ev_evpn(self):
        """EVPN routes after import: half the time a whole new table, half the time a delta of a few routes
        added, replaced and withdrawn (what bgp.federation hands State every round of received routes)."""
        if self.rng.random() < 0.5:
            self.evpn_table()
        else:
            self.evpn_delta()

    def evpn_delta(self):
        """A few MACs (their IPs shared with other MACs and vports of the scope), floods and prefixes added,
        replaced or withdrawn, as one RemoteDelta."""
        rng, p = self.rng, self.state.policy
        subnets = [p.find("subnet", f"acme/{s}") for s in sorted(self.subnets)]
        table = self.state.remote_index.table()
        macs = {(m.subnet_id, m.mac): m for m in table.macs}
        added, removed = set(), set()
        own = [h["vtep"] for h in self.hosts.values()]
        for _ in range(rng.randrange(1, 6)):
            sub = rng.choice(subnets)
            n = rng.randrange(30, 36)
            key = (sub["id"], f"02:00:00:00:00:{n - 23:02x}")
            old = macs.pop(key, None)
            if old is not None:
                removed.add(old)
                added.discard(old)
            if old is not None and rng.random() < 0.4:
                continue  # withdrawn
            routed = sub["domain_id"] is not None and rng.random() < 0.7
            dom = p.get("domain", sub["domain_id"]) if routed else None
            nets = [s["cidr"].rsplit(".", 1)[0] for s in subnets if s["domain_id"] == sub["domain_id"]] \
                if sub["domain_id"] else [sub["cidr"].rsplit(".", 1)[0]]
            ips = tuple(sorted({f"{rng.choice(nets)}.{rng.randrange(30, 36)}" for _ in range(rng.randrange(3))}))
            mac = RemoteMac(key[0], key[1], ips, rng.choice(list(VTEP_IPS) + own[:1]),
                            "02:dd:00:00:00:01" if routed else None, dom["l3_vni"] if routed else 0,
                            rng.randrange(3))
            macs[key] = mac
            added.add(mac)
            removed.discard(mac)
        for _ in range(rng.randrange(2)):
            flood = (rng.choice(subnets)["id"], rng.choice(VTEP_IPS))
            (removed if flood in table.floods else added).add(flood)
        for dom in p.all("domain"):
            if rng.random() < 0.3:
                prefix = RemotePrefix(dom["id"], rng.choice(["0.0.0.0/0", "10.0.1.0/24", "10.0.1.33/32"]),
                                      rng.choice(VTEP_IPS), "02:dd:00:00:00:02", dom["l3_vni"])
                (removed if prefix in table.prefixes else added).add(prefix)
        self.state.remote_changed(RemoteDelta(frozenset(added), frozenset(removed)))

    def evpn_table(self):
        rng, p = self.rng, self.state.policy
        subnets = [p.find("subnet", f"acme/{s}") for s in sorted(self.subnets)]
        macs, floods, prefixes = {}, set(), []
        own = [h["vtep"] for h in self.hosts.values()]
        for _ in range(rng.randrange(5)):
            sub = rng.choice(subnets)
            n = rng.randrange(30, 36)  # 32..35: the kvm vports' addresses, 0x20..: some of their MACs
            routed = sub["domain_id"] is not None and rng.random() < 0.7
            dom = p.get("domain", sub["domain_id"]) if routed else None
            mac = RemoteMac(sub["id"], f"02:00:00:00:00:{n - 23:02x}", (sub["cidr"].rsplit(".", 1)[0] + f".{n}",),
                            rng.choice(list(VTEP_IPS) + own[:1]), "02:dd:00:00:00:01" if routed else None,
                            dom["l3_vni"] if routed else 0)
            macs[(mac.subnet_id, mac.mac)] = mac
        for _ in range(rng.randrange(3)):
            floods.add((rng.choice(subnets)["id"], rng.choice(VTEP_IPS)))
        for dom in p.all("domain"):
            for prefix in rng.sample(["0.0.0.0/0", "10.0.1.0/24", "10.0.1.33/32", "10.8.0.0/16"], rng.randrange(3)):
                prefixes.append(RemotePrefix(dom["id"], prefix, rng.choice(VTEP_IPS), "02:dd:00:00:00:02",
                                             dom["l3_vni"]))
        self.state.remote = RemoteTable(tuple(macs.values()), tuple(sorted(floods)), tuple(prefixes))


# ---------------------------------------------------------------------------------------------- oracle

def by_owner(desired):
    """owner -> flows with their cookies, and owner -> groups (an owner without flows is no owner)."""
    flows = {o: frozenset((f, f.cookie) for f in fs) for o, fs in desired.flows.items() if fs}
    groups = {o: gs for o, gs in desired.groups.items() if gs}
    return flows, groups


def check(world: World, where: str, read_fib: bool = True):
    """The incremental state equals one derived and compiled from scratch; ``read_fib``: False leaves the FIBs and
    the LiveView's indexes unread (a host route that went is taken out of a domain's FIB only when it is read:
    controller/viewroutes.py ``OrderedFib``), so that removals pile up over passes until a later check reads them."""
    state, prog = world.state, world.prog
    seen = state._seen
    found = binding.resolve(state.policy, state.vrs, state.flavour_of,
                            lambda session, port, vlan: seen.get((session, port, vlan), 0))
    bound, mismatched = binding.partition(state.policy, found)
    assert state.locations == bound, where
    assert state.mismatched == mismatched, where
    view = derive(state.policy, state.locations, state.vrs, state.vtep_ip_of, state.vteps, state.remote,
                  state.gateway_macs)
    assert set(prog.desired) == set(view.switches), where
    for session in view.switches:
        full, inc = by_owner(compile_switch(view, session)), by_owner(prog.desired[session])
        for part, name in ((0, "flows"), (1, "groups")):
            if inc[part] != full[part]:
                wrong = {o for o in set(inc[part]) | set(full[part]) if inc[part].get(o) != full[part].get(o)}
                raise AssertionError(f"{where}: {session}: {name} of {sorted(wrong, key=str)} differ")
    check_vteps(state, prog, view, where)
    if read_fib:
        assert prog.view.fib == view.fib, where
    assert prog.view.bm_gateways == view.bm_gateways, where
    assert prog.view.external == view.external, where
    assert prog.view.security == view.security, where
    if read_fib:
        check_indexes(state, prog.live, where)
    stale = {o for o in prog.shared.flows if o.id not in (view.subnets if o.kind == "subnet" else view.domains
                                                        if o.kind == "domain" else view.endpoints)}
    assert not stale, f"{where}: flows kept for owners that went: {sorted(stale, key=str)[:5]}"
    check_state_indexes(state, where)
    for spec in view.security.acls.values():  # an ACL's flows are cached and patched rule by rule: build them anew
        fresh, _ = acl._build(spec, frozenset(), {})
        assert acl.acl_flows(spec) == fresh and {f.cookie for f in acl.acl_flows(spec)} == {f.cookie for f in fresh}, \
            f"{where}: ACL {spec.id}"


# per-pass notes of a LiveView (reset by every pass, bounded by what one pass reached) and its links to State
PASS_NOTES = {"state", "pacer", "live", "view", "r", "listing", "changed", "presence", "on_before", "holders_changed",
              "tunnels", "switches_changed", "redo", "was_at", "tails", "bound_changed", "hw_vtep_subnets",
              "vtep_names", "acl_reach", "touched", "touched_ips", "_build", "_keys_changed", "recheck"}


def indexes(obj):
    """Everything a LiveView keeps between passes (its indexes, its helpers' and its View's), as plain values: a
    Counter's zero counts and a defaultdict's empty entries stay visible (a Counter compares them as absent)."""
    if isinstance(obj, LazyFib):
        return {k: indexes(v) for k, v in obj.items()}
    if isinstance(obj, dict):
        return {k: indexes(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [indexes(x) for x in obj]
    if type(obj).__module__.startswith("controller.") and hasattr(obj, "__dict__") and \
            not getattr(type(obj), "__dataclass_params__", None) or isinstance(obj, (View, ExternalView)):
        return {k: indexes(v) for k, v in vars(obj).items() if k not in PASS_NOTES}
    return obj


def differences(a, b, path=""):
    """Paths where two ``indexes`` differ (the first few)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=repr):
            if k not in a or k not in b:
                out.append(f"{path}[{k!r}] only in the {'incremental' if k in a else 'fresh'} one")
            elif a[k] != b[k]:
                out += differences(a[k], b[k], f"{path}[{k!r}]")
        return out[:8]
    return [f"{path}: {a!r} != {b!r}"]


def check_indexes(state, live, where: str):
    """The LiveView's indexes after any sequence of deltas equal those of one built from scratch on the same State:
    nothing is kept for a subnet, domain, vport or switch that went (a controller running for months with tenants
    coming and going does not grow)."""
    fresh = LiveView(state)
    fresh.build()
    fresh.view.fib.items()  # (read: a stale FIB is built)
    wrong = differences(indexes(live), indexes(fresh))
    assert not wrong, f"{where}: LiveView indexes differ from a fresh build: {wrong}"


# (not ``ofport_hints``: ports the switch numbered before OVSDB, ended by the switch's port deletion, which a fresh
# State is not given)
STATE_INDEXES = ("index", "_seen", "_seen_ports", "tunnel_ports", "agent_ports", "_dpid_session", "_rank", "vrs_since",
                 "gateway_macs", "remote_index")


def keys_of(obj):
    """The keys a State index holds, nested (values aside: a fresh State numbers sightings and switches anew)."""
    if isinstance(obj, dict):
        return {k: keys_of(v) for k, v in obj.items()}
    if type(obj).__module__.startswith("controller.") and hasattr(obj, "__dict__") and \
            not getattr(type(obj), "__dataclass_params__", None):
        return {k: keys_of(v) for k, v in vars(obj).items() if not k.startswith("_table")}
    return True


def check_state_indexes(state, where: str):
    """State's own indexes (binding index, ports seen per switch, tunnel and agent ports, EVPN routes) hold what a
    State given the same inputs from scratch holds: nothing stays for a switch, port or vport that went."""
    fresh = State(state.policy, default_flavour=state.default_flavour, hosts=state.hosts)
    for snap in state.vrs.values():
        fresh.vrs_update(replace(snap, changed=None, changed_ports=None))
    for snap in state.vteps.values():
        fresh.vtep_update(replace(snap, changed=None))
    for (session, net_id), mac in state.gateway_macs.items():
        fresh.gateway_learned(session, net_id, mac)
    fresh.remote = state.remote
    wrong = differences(keys_of({n: getattr(state, n) for n in STATE_INDEXES}),
                        keys_of({n: getattr(fresh, n) for n in STATE_INDEXES}))
    assert not wrong, f"{where}: State's indexes differ from a fresh State's: {wrong}"


def check_vteps(state, prog, view, where: str):
    """Every hardware VTEP's rows (kept by delta: controller/viewvteps.py) equal ``vtep_desired`` over ``view``, derived
    from scratch; every VTEP bound or connected has rows."""
    names = {b["switch"] for b in state.policy.all("vtep_binding")} | {v.name for v in view.vteps.values()}
    assert names == set(prog.vteps.desired), f"{where}: VTEPs kept: {sorted(set(prog.vteps.desired) ^ names)}"
    for name, rows in prog.vteps.desired.items():
        assert rows == vtep_desired(view, state.policy, name), f"{where}: VTEP {name}'s rows differ"


@pytest.mark.parametrize("seed", range(SEEDS))
def test_incremental_equals_a_from_scratch_compile_after_every_step(seed):
    rng, reads = random.Random(seed), random.Random(-seed - 1)  # reads: whether a check reads the FIBs
    world = World(rng)
    world.commit()
    world.prog.refresh(full=True)
    for step in range(STEPS):
        world.step()
        if rng.random() < 0.75:  # else the next pass takes two events at once
            world.prog.refresh()
            check(world, f"seed {seed} step {step}", read_fib=reads.random() < 0.5)
    world.prog.refresh()
    check(world, f"seed {seed} at the end")
    assert world.prog.full_recomputes == 1  # every pass after the first was incremental


def test_the_events_reach_every_kind_of_owner():
    """The driver is worth its time: the incremental passes recompile every kind of owner (within a few seeds)."""
    wanted = {"switch", "subnet", "domain", "vport", "vtep_mac", "evpn", "uplink", "fip", "pat", "acl", "acl_port",
              "acl_switch", "metadata"}
    kinds = set()
    for seed in range(16):
        world = World(random.Random(seed))
        world.commit()
        world.prog.refresh(full=True)
        for _ in range(STEPS):
            world.step()
            world.prog.refresh()
            kinds |= {o.kind for d in world.prog.desired.values() for o in d.flows}
        if kinds >= wanted:
            break
    assert kinds >= wanted, wanted - kinds


@pytest.mark.parametrize("seed", range(SEEDS // 2))
def test_events_during_a_passs_pauses_reach_the_next_pass(seed):
    """A pass pauses (controller/pacer.py) while it derives and compiles, and handlers change State meanwhile (every
    kind of event of ``World.step``): the pass after it still ends where a from-scratch compile of the State then
    does, and the paused pass itself compiled one consistent State (no error)."""
    rng = random.Random(1000 + seed)
    world = World(rng)
    world.commit()
    world.prog.refresh(full=True)
    inside = {"left": 0, "events": 0}

    def pause():  # an event handled while the pass is paused (as a green thread would)
        if inside["left"] and rng.random() < 0.5:
            inside["left"] -= 1
            inside["events"] += 1
            world.inside_a_pass = True
            try:
                world.step()
            finally:
                world.inside_a_pass = False

    world.prog.pacer = Pacer(pause, every=1)
    for step in range(STEPS // 2):
        for _ in range(rng.randrange(1, 3)):  # one or two events before the pass, up to four inside it
            world.step()
        inside["left"] = rng.randrange(1, 5)
        world.prog.refresh()
        inside["left"] = 0
        world.prog.refresh()  # takes what changed during the pauses
        check(world, f"seed {seed} step {step}")
    assert inside["events"] >= 10  # events did land inside passes
    assert world.prog.full_recomputes == 1


@pytest.mark.parametrize("seed", range(SEEDS // 2))
def test_events_during_states_own_pauses_reach_the_next_pass(seed):
    """State pauses too (``State.pacer``): while it reads a VRS report's ports, between the chunks of ports whose
    bindings it updates, and between the chunks of vports it re-resolves after a report or a commit. Handlers change State meanwhile (in a report's pauses every kind of event
    of ``World.step``, reports of the same switch and commits included, themselves pausing; in a commit's pauses VRS
    reports, as writes are one at a time): the next pass still ends where a from-scratch compile of the State then
    does."""
    import controller.state as state_module

    rng = random.Random(2000 + seed)
    world = World(rng)
    inside = {"left": 0, "events": 0}

    def pause():  # an event handled while State is paused (as a green thread would); in a commit's, no other write
        if inside["left"] and rng.random() < 0.5:
            inside["left"] -= 1
            inside["events"] += 1
            (world.ev_place if world.committing else world.step)()

    world.state.pacer = Pacer(pause, every=1)
    chunk, state_module.RELOCATE_CHUNK = state_module.RELOCATE_CHUNK, 1  # a pause after every vport re-resolved
    ports, state_module.INDEX_CHUNK = state_module.INDEX_CHUNK, 1  # ... and every port of a report indexed
    try:
        world.commit()
        world.prog.refresh(full=True)
        for step in range(STEPS // 2):
            inside["left"] = rng.randrange(1, 5)
            for _ in range(rng.randrange(1, 3)):
                world.step()
            inside["left"] = 0
            world.prog.refresh()
            check(world, f"seed {seed} step {step}")
    finally:
        state_module.RELOCATE_CHUNK, state_module.INDEX_CHUNK = chunk, ports
    assert inside["events"] >= 10  # events did land inside State's pauses
    assert world.prog.full_recomputes == 1


def test_two_reports_of_a_switch_between_passes_reach_its_uplinks():
    """Two VRS reports reach one pass (or one lands in a pass's pause): the first shows the port marked for the
    external network, the second changes another port. The uplinks are taken again for what every report since
    the last pass changed (``Journal.ports``), not just the last one's ``changed``: the floating IP bound there
    becomes active."""
    world = World(random.Random(7))
    world.subnets["web"] = {"dhcp": True, "chassis": []}
    world.vports = {n: {"subnet": "web", "mac": 0, "ip": 20 + 2 * sorted(VPORTS).index(n)} for n in ("k1", "k2")}
    world.ext["fips"] = {"f1": "k1"}
    world.commit()
    world.hosts[EXT_OVSDB] = {"tunnel": 1, "vtep": "10.251.0.4"}
    world.placed["k1"], world.ofports["k1"] = EXT_OVSDB, 11
    world.push(EXT_OVSDB)
    world.prog.refresh(full=True)
    assert not world.prog.view.external.floating
    world.rng.random = lambda: 0.0  # every report says which ports it changed
    world.ext["ports"].add(EXT_OVSDB)  # first report: the uplink port appears
    world.push(EXT_OVSDB)
    world.placed["k2"], world.ofports["k2"] = EXT_OVSDB, 12  # second: another VM's port
    world.push(EXT_OVSDB)
    assert world.state.vrs[f"ovsdb:{EXT_OVSDB}"].changed == {"tap-k2"}
    world.prog.refresh()
    assert [f.session for f in world.prog.view.external.floating.values()] == [f"ovsdb:{EXT_OVSDB}"]
    check(world, "two reports in one pass")


def test_a_vport_gone_while_its_domain_left_a_switch_and_came_back_in_one_pass_leaves_it():
    """One pass: subnet db changes (its endpoints leave and come back, so the domain leaves hv4 and comes back) and
    subnet web is deleted with its vport on hv2 (a router interface removed: web is created again outside the
    domain). The vport's routed flows on hv4, where the domain is, go: the switches it had flows on are the ones its
    subnet and domain were on when the pass began, not in the middle of it."""
    world = World(random.Random(3))
    for name in ("web", "db"):
        world.subnets[name] = {"dhcp": True, "chassis": []}
    world.vports = {"k1": {"subnet": "web", "mac": 0, "ip": 30}, "k2": {"subnet": "db", "mac": 0, "ip": 40}}
    world.commit()
    for host, vm in (("hv2", "k1"), ("hv4", "k2")):
        world.hosts[host] = {"tunnel": 1, "vtep": f"10.251.0.{host[2:]}"}
        world.placed[vm], world.ofports[vm] = host, 12
        world.push(host)
    world.prog.refresh(full=True)
    k1 = world.state.policy.find("vport", "acme/web/k1")["id"]
    assert any(o.id == k1 for o in world.prog.desired["ovsdb:hv4"].flows)  # its host route, where db's domain is
    world.subnets["db"]["dhcp"] = False
    world.commit()
    world.move("web", pass_between=False)
    world.prog.refresh()
    check(world, "db changed, web left its domain")


def test_an_external_change_derives_only_the_floating_ips_and_switches_it_reaches(monkeypatch):
    """Per object (controller/extdelta.py): a floating IP moved derives that floating IP and the switches it was
    and is on; a vport that moved, its floating IP; a gateway MAC resolved on one switch, that switch's; the
    external network changed, all of its floating IPs. Checked by counting the derivations, and against a
    from-scratch compile after each."""
    from controller import extdelta

    rng = random.Random(7)
    world = World(rng)
    for name in ("web", "db"):
        world.subnets[name] = {"dhcp": True, "chassis": []}
    world.vports = {name: {"subnet": "web", "mac": 0, "ip": 20 + 2 * sorted(VPORTS).index(name)}
                    for name in ("k1", "k2", "h1")}
    world.ext["fips"] = {"f1": "k1", "f2": "k2", "f3": "h1"}
    world.ext["ports"] = {"hv1", "hv2"}
    world.commit()
    for host, vms in (("hv1", ("k1", "k2")), ("hv2", ("h1",))):
        world.hosts[host] = {"tunnel": 1, "vtep": f"10.251.0.{host[2:]}"}
        for vm in vms:
            world.placed[vm], world.ofports[vm] = host, 10 + len(world.placed)
    for host in ("hv1", "hv2"):
        world.push(host)
    world.prog.refresh(full=True)
    assert len(world.prog.view.external.floating) == 3
    derived = []
    real = extdelta.floating_info
    monkeypatch.setattr(extdelta, "floating_info", lambda policy, view, snaps, fip, resolved: (
        derived.append(fip["name"]), real(policy, view, snaps, fip, resolved))[1])
    session_parts = []
    real_refresh = extdelta.refresh_session
    monkeypatch.setattr(extdelta, "refresh_session", lambda ext, policy, view, session, snap, resolved: (
        session_parts.append(session), real_refresh(ext, policy, view, session, snap, resolved))[1])

    def step(what, fips, sessions):
        derived.clear()
        session_parts.clear()
        world.prog.refresh()
        check(world, what)
        assert sorted(derived) == sorted(fips), (what, derived)
        assert sorted(session_parts) == sorted(sessions), (what, session_parts)

    world.ext["fips"]["f2"] = None
    world.commit()
    step("a floating IP freed", ["f2"], ["ovsdb:hv1"])
    world.placed["k1"] = "hv2"
    world.push("hv1")
    world.push("hv2")
    step("a VM migrated", ["f1"], ["ovsdb:hv1", "ovsdb:hv2"])
    net = world.state.policy.find("external_network", "public")
    world.state.gateway_learned("ovsdb:hv2", net["id"], "02:ee:ee:00:00:09")
    step("a gateway MAC resolved on one switch", ["f1", "f3"], ["ovsdb:hv2"])
    world.ext["gateway_mac"] = not world.ext["gateway_mac"]
    world.commit()
    step("the external network changed", ["f1", "f2", "f3"], ["ovsdb:hv1", "ovsdb:hv2"])
