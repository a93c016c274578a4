"""A switch under test with local ports of every kind, and a second one whose endpoints are remote.

Shared by the unit tests of the tracer (tests/unit/test_trace.py) and the integration tests that ask real
Open vSwitch the same questions (tests/integration/test_pipeline_trace.py).
hv1 (session s1) holds web1, web2, db1, globex's g1 and two ESXi vNICs on trunk0; hv2 (s2, VTEP REMOTE_VTEP)
holds web3 and db2.
"""

from __future__ import annotations

from controller import policy as pol
from controller import policydoc, yamldoc
from controller.derive import derive
from controller.discovery import PortInfo, VrsSnapshot
from controller.state import State

POLICY = """
tenants:
  - name: acme
    domains:
      - name: prod
        static_routes: [{prefix: 192.168.50.0/24, next_hop: 10.0.2.12}]
        subnets:
          - name: web
            cidr: 10.0.1.0/24
            gateway: 10.0.1.1
            vports:
              - {name: web1, mac: "02:00:00:00:01:01", ips: [10.0.1.11], binding: {flavour: kvm}}
              - {name: web2, mac: "02:00:00:00:01:02", ips: [10.0.1.12], binding: {flavour: kvm}}
              - {name: web3, mac: "02:00:00:00:01:03", ips: [10.0.1.13], binding: {flavour: kvm}}
              - {name: esx1, mac: "02:00:00:00:01:04", ips: [10.0.1.14], binding: {flavour: esxi}}
              - {name: esx2, mac: "02:00:00:00:01:05", ips: [10.0.1.15], binding: {flavour: esxi}}
          - name: db
            cidr: 10.0.2.0/24
            gateway: 10.0.2.1
            vports:
              - {name: db1, mac: "02:00:00:00:02:01", ips: [10.0.2.11], binding: {flavour: kvm}}
              - {name: db2, mac: "02:00:00:00:02:02", ips: [10.0.2.12], binding: {flavour: kvm}}
  - name: globex
    domains:
      - name: main
        subnets:
          - name: web
            cidr: 10.0.1.0/24
            gateway: 10.0.1.1
            vports:
              - {name: g1, mac: "02:00:00:00:09:01", ips: [10.0.1.11], binding: {flavour: kvm, iface_id: g1}}
"""
PORTS = {"web1": 1, "web2": 2, "db1": 3, "trunk0": 4, "g1": 5, "vxlan0": 100}
REMOTE_VTEP = "10.251.0.99"
LOCAL_VTEP = "10.251.0.1"


def port(name, ofport, type_="internal", **ext):
    return PortInfo(name=name, ofport=ofport, type=type_, external_ids=tuple(sorted(ext.items())))


def build_view(vtep_ip=LOCAL_VTEP):
    """(policy, View) of the case."""
    state = build_state(vtep_ip)
    return state.policy, derive(state.policy, state.locations, state.vrs, state.vtep_ip_of)


def build_state(vtep_ip=LOCAL_VTEP) -> State:
    doc = yamldoc.load(POLICY)
    policy = policydoc.plan(pol.Policy(), doc.data, "t", pol.Allocator({}, 65000, (10000, 20000))).policy
    state = State(policy, default_flavour="kvm")
    for snap in snapshots(vtep_ip):
        state.vrs_update(snap)
    return state


def snapshots(vtep_ip=LOCAL_VTEP) -> list[VrsSnapshot]:
    """What OVSDB says about hv1 (ESXi flavour: its trunk0 carries two vNICs) and hv2."""
    local = [port(n, o, **{"iface-id": n}) for n, o in PORTS.items() if n in ("web1", "web2", "db1", "g1")]
    local += [port("trunk0", 4, **{"canopy-vnic-101": "esx1", "canopy-vnic-102": "esx2"}),
              port("vxlan0", 100, type_="vxlan")]
    remote = [port("tapA", 7, **{"iface-id": "web3"}), port("tapB", 8, **{"iface-id": "db2"}),
              port("vxlan0", 100, type_="vxlan")]
    return [VrsSnapshot("s1", "p", "hv1", flavour="esxi", vtep_ip=vtep_ip, datapath_id=1, bridge_present=True,
                        ports=tuple(local)),
            VrsSnapshot("s2", "p", "hv2", vtep_ip=REMOTE_VTEP, datapath_id=2, bridge_present=True,
                        ports=tuple(remote))]
