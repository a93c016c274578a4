"""The compiler as a pure function: pipeline conformance, no conflicting flows, determinism, and
incremental recompilation agreeing with a full recompute through a long sequence of changes.
(What packets do in the compiled pipeline is tested against real OVS in tests/integration/test_pipeline_trace.py.)"""

import random
from collections import Counter

from controller import policy as pol
from controller import policydoc, yamldoc
from controller.discovery import PortInfo, VrsSnapshot
from controller.programmer import Programmer
from controller.remote import RemoteMac, RemotePrefix, RemoteTable
from controller.state import State
from openflow.compiler import compile_owners, compile_switch
from openflow.flows import Owner, is_ours

DOC = """
tenants:
  - name: acme
    domains:
      - name: prod
        static_routes: [{prefix: 192.168.0.0/16, next_hop: 10.0.2.11}]  # vm1: moves in the random test
        subnets:
          - {name: web, cidr: 10.0.1.0/24, gateway: 10.0.1.1}
          - {name: db, cidr: 10.0.2.0/24, gateway: 10.0.2.1}
    subnets:
      - {name: lan, cidr: 10.9.0.0/24, dhcp: {enabled: false}}
"""


def base_state():
    doc = yamldoc.load(DOC)
    plan = policydoc.plan(pol.Policy(), doc.data, "t", pol.Allocator({}, 65000, (10000, 20000)))
    return State(plan.policy)


def add_vport(state, subnet_ref, name, mac, ip, flavour="kvm"):
    add_vports(state, [(subnet_ref, name, mac, ip)], flavour)


def add_vports(state, vports, flavour="kvm"):
    """Vports ``(subnet_ref, name, mac, ip)`` added in one commit: the State ``add_vport`` one by one leaves, without
    a copy of the whole policy per vport (a test that needs thousands of vports)."""
    policy = state.policy.copy()
    for subnet_ref, name, mac, ip in vports:
        subnet = policy.find("subnet", subnet_ref)
        obj = {"id": name, "source": None, "subnet_id": subnet["id"], "name": name, "description": "", "mac": mac,
               "ips": [ip] if ip else [], "binding": {"flavour": flavour, "iface_id": None, "port_name": None,
                                                        "vnic_id": None, "host": None, "trunk_port": None,
                                                        "vlan": None},
               "port_security": True, "acls": []}
        policy.put("vport", obj)
    state.policy_committed(policy, [])


def snapshot(session, vtep, ports):
    infos = [PortInfo(name=f"p-{name}", ofport=ofport, external_ids=(("iface-id", name),)) for name, ofport in ports]
    infos.append(PortInfo(name="vxlan0", ofport=99, type="vxlan"))
    return VrsSnapshot(session, "peer", session, vtep_ip=vtep, datapath_id=int(vtep.split(".")[-1]),
                       bridge_present=True, ports=tuple(infos))


def assert_matches_full(prog):
    view = prog.derive()
    for session in view.switches:
        full = compile_switch(view, session)
        inc = prog.desired.get(session)
        assert inc is not None, session
        assert inc.all_flows() == full.all_flows(), session
        assert inc.all_groups() == full.all_groups(), session
        assert all(inc.flows.values()) and all(inc.groups.values()), session  # (no entry kept of an owner gone)


def random_remote(rng, state, hosts):
    """A random RemoteTable: MACs behind peers (some are our own VMs' MACs or IPs, some reflected from our own
    VTEPs), type 3 flood targets, and prefixes (some equal to or covering our subnets, some host routes)."""
    subnets = {ref: state.policy.find("subnet", ref) for ref in ("acme/web", "acme/db", "acme/lan")}
    dom = state.policy.find("domain", "acme/prod")
    vteps = ["10.99.0.1", "10.99.0.2", "10.99.0.3", rng.choice(list(hosts.values()))]
    macs = {}
    for _ in range(rng.randrange(5)):
        ref = rng.choice(list(subnets))
        net = subnets[ref]["cidr"].rsplit(".", 1)[0]
        n = rng.randrange(8, 16)  # 10..21 are our VMs' host numbers: some collide
        routed = rng.random() < 0.7 and ref != "acme/lan"
        mac = RemoteMac(subnets[ref]["id"], f"02:00:00:00:00:{n:02x}", (f"{net}.{n}",), rng.choice(vteps),
                        "02:dd:00:00:00:01" if routed else None, dom["l3_vni"] if routed else 0)
        macs[(mac.subnet_id, mac.mac)] = mac
    floods = {(subnets[rng.choice(list(subnets))]["id"], rng.choice(vteps)) for _ in range(rng.randrange(3))}
    prefixes = {RemotePrefix(dom["id"], rng.choice(["10.0.1.0/24", "10.0.0.0/8", "172.16.0.0/16", "10.0.2.12/32",
                                                    "10.0.1.128/25"]), rng.choice(vteps), "02:dd:00:00:00:02",
                             dom["l3_vni"]) for _ in range(rng.randrange(3))}
    return RemoteTable(tuple(macs.values()), tuple(sorted(floods)), tuple(sorted(prefixes, key=repr)))


def test_incremental_equals_full_recompute_through_random_changes():
    rng = random.Random(7)
    state = base_state()
    prog = Programmer(state)
    for i in range(12):
        subnet = ("acme/web", "acme/db", "acme/lan")[i % 3]
        net = {"acme/web": "10.0.1", "acme/db": "10.0.2", "acme/lan": "10.9.0"}[subnet]
        add_vport(state, subnet, f"vm{i}", f"02:00:00:00:00:{i + 1:02x}", f"{net}.{10 + i}")
    hosts = {"hv1": "10.251.0.1", "hv2": "10.251.0.2", "hv3": "10.251.0.3"}
    placement = {}
    for host, vtep in hosts.items():
        state.vrs_update(snapshot(host, vtep, []))
    prog.refresh()
    assert_matches_full(prog)
    for step in range(100):
        vm = f"vm{rng.randrange(12)}"
        action = rng.choice(["place", "place", "move", "remove", "subnet_change", "remote", "remote"])
        if action in ("place", "move"):
            placement[vm] = rng.choice(list(hosts))
        elif action == "remove":
            placement.pop(vm, None)
        elif action == "remote":
            state.remote = random_remote(rng, state, hosts)
        else:
            policy = state.policy.copy()
            sub = dict(policy.find("subnet", "acme/web"))
            sub["dhcp"] = dict(sub["dhcp"], enabled=not sub["dhcp"]["enabled"])
            policy.put("subnet", sub)
            state.policy_committed(policy, [])
        for host, vtep in hosts.items():
            ports = [(v, 10 + int(v[2:])) for v, h in sorted(placement.items()) if h == host]
            state.vrs_update(snapshot(host, vtep, ports))
        prog.refresh()
        assert_matches_full(prog)
    assert prog.incremental_updates > 90 and prog.full_recomputes == 1
    assert any(e.kind == "evpn" for e in prog.view.endpoints.values()) or state.remote == RemoteTable()


def test_a_new_vport_recompiles_only_its_owners():
    state = base_state()
    for i in range(3):
        add_vport(state, "acme/web", f"vm{i}", f"02:00:00:00:00:0{i + 1}", f"10.0.1.{10 + i}")
    state.vrs_update(snapshot("hv1", "10.251.0.1", [("vm0", 10), ("vm1", 11)]))
    state.vrs_update(snapshot("hv2", "10.251.0.2", []))
    prog = Programmer(state)
    prog.refresh()
    before = {s: d.flows.copy() for s, d in prog.desired.items()}
    state.vrs_update(snapshot("hv2", "10.251.0.2", [("vm2", 10)]))
    assert prog.refresh() == {"hv1", "hv2"}
    changed = {o.kind for o, fs in prog.desired["hv1"].flows.items() if before["hv1"].get(o) != fs}
    assert changed <= {"vport", "subnet", "domain"}
    untouched = [o for o in before["hv1"] if o.kind == "vport" and o.id in ("vm0", "vm1")]
    assert all(prog.desired["hv1"].flows[o] == before["hv1"][o] for o in untouched)


def test_flows_are_pipeline_checked_unique_and_deterministic():
    state = base_state()
    for i in range(4):
        add_vport(state, "acme/web" if i < 2 else "acme/db", f"vm{i}", f"02:00:00:00:00:0{i + 1}",
                  f"10.0.{1 if i < 2 else 2}.{10 + i}")
    state.vrs_update(snapshot("hv1", "10.251.0.1", [("vm0", 10), ("vm2", 12)]))
    state.vrs_update(snapshot("hv2", "10.251.0.2", [("vm1", 11), ("vm3", 13)]))
    prog = Programmer(state)
    prog.refresh()
    for session in ("hv1", "hv2"):
        flows = prog.desired[session].all_flows()
        assert all(is_ours(f.cookie) for f in flows)
        same_match = Counter((f.table, f.priority, f.match) for f in flows)
        assert [k for k, n in same_match.items() if n > 1] == []
        assert len({f.key for f in flows}) == len(flows)
        again = compile_switch(prog.derive(), session)
        assert again.all_flows() == flows


def test_a_flows_match_is_in_one_order_whatever_order_its_names_were_given_in():
    """``flow()`` finds the canonical order once per order of names given (openflow/flows.py ``_ORDERS``): every
    order of the same names, asked twice (found, then cached), is the order a read-back of that match decodes to
    (openflow/decode.py). Flows are compared by equality: another order would make the reconciler see a difference
    and rewrite the flow after a restart."""
    import itertools

    from ryu.ofproto import ofproto_v1_3_parser as parser

    from openflow.decode import decode_match
    from openflow.flows import Owner, flow

    values = {"in_port": 3, "reg5": 7, "eth_dst": "02:00:00:00:00:01", "eth_type": 0x0800, "ipv4_dst": "10.0.0.1",
              "ct_state": (0x22, 0x22)}
    read_back = decode_match(parser.OFPMatch(**values))
    for size in (2, 3, len(values)):
        for names in itertools.permutations(values, size):
            wanted = tuple(item for item in read_back if item[0] in names)
            for _ in range(2):
                assert flow(1, 100, {n: values[n] for n in names}, [], Owner("vport", "v")).match == wanted, names


def test_a_local_vport_without_a_port_number_parses_no_prefix():
    """Its host route waits for its port number (route_to returns nothing): its prefix is not parsed for it (10,000
    ports bound before OVS numbered them were 10,000 IPv4Network parses for no flow)."""
    from openflow import compiler

    state = base_state()
    add_vport(state, "acme/web", "vm1", "02:00:00:00:01:01", "10.0.1.77")
    state.vrs_update(snapshot("hv1", "10.251.0.1", [("vm1", None)]))
    view = Programmer(state).derive()
    compiler._prefix_match.cache_clear()
    compile_owners(view, "hv1", [Owner("vport", "vm1")])
    assert compiler._prefix_match.cache_info().misses == 0
