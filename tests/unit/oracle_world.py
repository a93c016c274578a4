"""The random events of the incremental oracle (tests/unit/test_incremental_oracle.py): policy commits, ports
placed and moved, VRS and hardware VTEPs, EVPN routes, the external network, security policy; each changes the
``Inputs`` (tests/unit/oracle_inputs.py) and hands State what changed, as the controller's handlers would."""

from __future__ import annotations

from controller import replicacheck
from controller.discovery import VtepMac
from controller.remote import RemoteDelta, RemoteMac, RemotePrefix, RemoteTable
from tests.unit.oracle_inputs import (BINDINGS, CROSS, EXT_OVSDB, EXT_UPLINKS, FIPS, HOSTS, SUBNETS, TORS, VPORTS, VTEP_IPS,
                                      Inputs, mac_of)


class World(Inputs):
    """The driver's world with its random events: ``step`` picks one. ``stopping``: a migration's VM may stop on the
    host it left (``ev_stopped``); off by default, so the sequences of the other oracles' seeds stay as they were."""

    stopping = False
    crossing = False  # a Hyper-V vport's port may carry a KVM vport's iface-id (``ev_crossed``); off by default too


    def step(self):
        rng = self.rng
        events = ["vport", "vport", "vport", "place", "place", "place", "subnet", "domain", "binding", "vrs", "tor",
                  "evpn", "mismatch", "external", "external", "security", "security", "security", "move", "numbered",
                  "restored", "bare"] + ["stopped"] * self.stopping + ["crossed"] * self.crossing
        if self.inside_a_pass:  # received routes are imported by the programming loop itself, between passes
            events.remove("evpn")  # (controller/routepass.py import_remote), never while a pass is paused
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
            self.stopped.discard(name)
            old = None
        for host in {old, gone, self.placed.get(name)} - {None}:
            self.push(host)

    def ev_bare(self):
        """A KVM vport turns bare metal in policy (a server behind a hardware VTEP, known under the vport's id) or
        back, while its port may still show on its hypervisor; half of the time another port comes, goes or moves in
        the same pass (the View delta walks them in one run: controller/viewbatch.py). Back, its vport endpoint comes
        before its server endpoint goes (controller/viewroutes.py ``Routes.count``)."""
        rng = self.rng
        pool = sorted(self.bare) if self.bare and rng.random() < 0.6 else [n for n in sorted(VPORTS) if VPORTS[n] == "kvm"]
        shown = [n for n in pool if n in self.vports and self.placed.get(n) in self.hosts]  # (bound back: the case)
        self.bare ^= {rng.choice(shown or pool)}
        if rng.random() < 0.5:
            self.ev_place()
        self.commit()

    def ev_stopped(self):
        """The VM of a migration in flight stops on the host it leaves: its port stays there without a device (OVS's
        kernel datapath sets its ofport to -1), so the port it came to takes the vport; or it gets one again (the
        migration aborted: controller/binding.py ``preferred``)."""
        if self.lingering:
            name = self.rng.choice(sorted(self.lingering))
            self.stopped ^= {name}
            self.push(self.lingering[name])

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

    def ev_crossed(self):
        """A Hyper-V vport's port gets (or loses) a KVM vport's iface-id: the KVM vport takes the port, the Hyper-V
        vport is not bound there (controller/binding.py ``conflicting``)."""
        name = self.rng.choice(sorted(CROSS))
        self.crossed ^= {name}
        for host in {self.placed.get(name), self.lingering.get(name)} - {None}:
            self.push(host)

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

    def ev_restored(self):
        """A standby's store replaced by its active's snapshot (controller/replication.py) where a subnet's domain_id
        differs (another domain or none), which neither a REST write nor a replicated put may change in place; a
        second puts it back (the world's document stays true); half of the time a programming pass between."""
        rng, p = self.rng, self.state.policy
        subnets = p.all("subnet")
        if not subnets:
            return
        sub = rng.choice(sorted(subnets, key=lambda s: s["name"]))  # (by name: ids are new on every run)
        target = rng.choice([None] + [d["id"] for d in sorted(p.all("domain"), key=lambda d: d["name"])])
        if target == sub["domain_id"]:
            return
        try:
            self.restore("subnet", {**sub, "domain_id": target})
        except replicacheck.InvalidReplica:  # (a routed subnet left without a cidr, a next hop no longer in one...)
            return
        if rng.random() < 0.5 and not self.inside_a_pass:
            self.prog.refresh()
        self.restore("subnet", sub)

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
                    VtepMac(mac_of("k1"), self.vni_of("web"), "10.0.1.32", ip),  # a vport's MAC
                    VtepMac("02:00:00:00:0b:08", self.vni_of("web"), "10.0.1.34", ip)]  # k2's IP at times: two host routes
            self.tors[name] = rng.sample(pool, rng.randrange(len(pool) + 1))
        self.push_tor(name)

    def ev_evpn(self):
        """EVPN routes after import: half the time a whole new table, half the time a delta of a few routes
        added, replaced and withdrawn (what bgp.federation hands State every round of received routes).

        The import is a programming pass's first step (controller/routepass.py ``import_remote``), on the programming
        loop: events landing in its pauses (a whole table is compared with State's index pausing: ``State.take_remote``)
        are those of a pass's pauses, no import and no pass of their own (``RemoteIndex.delta_to`` compares an index
        that nothing else changes meanwhile)."""
        importing, self.inside_a_pass = self.inside_a_pass, True
        try:
            if self.rng.random() < 0.5:
                self.evpn_table()
            else:
                self.evpn_delta()
        finally:
            self.inside_a_pass = importing

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
                            rng.randrange(3), ip_order=tuple(rng.randrange(3) for _ in ips))  # ranks: ip_holder
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
