"""The OpenStack metadata service on the VRS: each local VM's HTTP requests to 169.254.169.254 steered to the
hypervisor's metadata agent (controller/metadata_agent.py, docs/metadata.md), with no Neutron agent.

The agent sits on br-int behind an internal port marked ``external_ids:canopy-metadata-agent=true``
(``SwitchInfo.metadata_port``: its ofport and MAC). What is compiled here, only on a switch with such a port:

- owner ``metadata_agent`` (id: the switch's session): the agent port's classifier into ``metadata``, the answer
  to local VMs' ARP for 169.254.169.254 (``METADATA_MAC``), IP to 169.254.169.254 on to ``metadata``, and the
  default of ``metadata`` (drop);
- owner ``metadata`` (id: the vport's id), where the vport is bound with an address: its TCP to
  169.254.169.254:80 from its first address goes out of the agent's port with the source rewritten to
  ``source_address(ofport, vlan)``, a class E address (240.0.0.0/4) that names the VM's port; the agent's
  replies to that address are rewritten back (destination the VM's address, source MAC ``METADATA_MAC``) and
  delivered to the port through its egress ACLs (a stateful policy sees them as replies of the VM's own
  connection: the request went through the VM's ACLs, in its zone, before the rewrite); the agent's ARP for that
  address is answered.

The rewrite is stateless (set_field; OVS fixes the checksums). The agent learns which vport asked from the source
address alone, which the switch sets from the packet's ingress port (``reg6``), never from what the VM wrote: a
VM cannot pose as another, and tenants may reuse the same addresses. A VM with several addresses is answered on
its first one.
"""

from __future__ import annotations

import ipaddress

from openflow import pipeline as p
from openflow.flows import Owner, arp_reply_actions, flow

OWNER_KINDS = ("metadata", "metadata_agent")
METADATA_IP, METADATA_PORT = "169.254.169.254", 80
METADATA_MAC = "02:ca:fe:a9:fe:fe"  # what 169.254.169.254 is at for the VMs, and the agent's replies' source
SOURCE_NET = ipaddress.IPv4Network("240.0.0.0/4")  # source addresses naming local ports: 240 + ofport << 12 | vlan
ETH_IP, ETH_ARP, TCP = 0x0800, 0x0806, 6
STEER = 100  # in services: IP to 169.254.169.254 (above the vports' own services, 100-110, only DHCP and own ARP)
ANSWER = 105  # in services: ARP for 169.254.169.254 (above the subnets' responders)
MAX_OFPORT = 0xFFFF


def source_address(ofport: int, vlan: int | None) -> str:
    """The source address the agent sees for requests from port ``ofport`` (VLAN ``vlan`` of a trunk)."""
    if not 0 < ofport <= MAX_OFPORT or not 0 <= (vlan or 0) <= 4094:
        raise ValueError(f"no metadata source address for ofport {ofport} vlan {vlan}")
    return str(SOURCE_NET.network_address + ((ofport << 12) | (vlan or 0)))


def port_of(address: str) -> tuple[int, int | None] | None:
    """(ofport, vlan or None) named by a source address, None for an address outside SOURCE_NET."""
    try:
        addr = ipaddress.IPv4Address(address)
    except ValueError:
        return None
    if addr not in SOURCE_NET:
        return None
    offset = int(addr) - int(SOURCE_NET.network_address)
    ofport, vlan = offset >> 12, offset & 0xFFF
    return (ofport, vlan or None) if ofport else None


# ------------------------------------------------------------------------------------------ owners

def _local(view, session, vport_id):
    ep = view.endpoints.get(vport_id)
    if ep is None or ep.kind != "vport" or ep.session != session or not ep.key or not ep.ips:
        return None
    return ep


def present(view, session, owner) -> bool:
    sw = view.switches.get(session)
    if sw is None or sw.metadata_port is None:
        return False
    if owner.kind == "metadata_agent":
        return owner.id == session
    return _local(view, session, owner.id) is not None


def owners_on(view, session) -> set[Owner]:
    sw = view.switches.get(session)
    if sw is None or sw.metadata_port is None:
        return set()
    owners = {Owner("metadata_agent", session)}
    for sid in view.subnets_on(session):
        owners.update(Owner("metadata", ep.vport_id) for ep in view.by_subnet.get(sid, ())
                      if _local(view, session, ep.vport_id) is ep)
    return owners


# ---------------------------------------------------------------------------------------- compilers

def _agent(view, sw, owner):
    ofport, _ = sw.metadata_port
    return [
        flow(p.CLASSIFY, 100, {"in_port": ofport}, [("goto", p.METADATA)], owner),
        flow(p.SERVICES, ANSWER, {"eth_type": ETH_ARP, "arp_op": 1, "arp_tpa": METADATA_IP},
             arp_reply_actions(METADATA_MAC, METADATA_IP) + list(p.BACK_TO_PORT), owner),
        flow(p.SERVICES, STEER, {"eth_type": ETH_IP, "ipv4_dst": METADATA_IP}, [("goto", p.METADATA)], owner),
        flow(p.METADATA, 0, {}, [], owner),
    ]


def _vport(view, sw, owner):
    ep = view.endpoints[owner.id]
    agent_port, agent_mac = sw.metadata_port
    source = source_address(ep.ofport, ep.vlan)
    return [
        flow(p.METADATA, 100, {"reg6": ep.key, "eth_type": ETH_IP, "ip_proto": TCP, "ipv4_src": ep.ips[0],
                               "ipv4_dst": METADATA_IP, "tcp_dst": METADATA_PORT},
             [("set", "ipv4_src", source), ("set", "eth_src", METADATA_MAC), ("set", "eth_dst", agent_mac),
              ("output", agent_port)], owner),
        flow(p.METADATA, 100, {"in_port": agent_port, "eth_type": ETH_IP, "ip_proto": TCP, "ipv4_src": METADATA_IP,
                               "ipv4_dst": source, "tcp_src": METADATA_PORT},
             [("set", "ipv4_dst", ep.ips[0]), ("set", "eth_src", METADATA_MAC), ("set", "eth_dst", ep.mac),
              ("set", p.REG_OUT, ep.key), ("goto", p.EGRESS_ACL)], owner),
        flow(p.METADATA, 100, {"in_port": agent_port, "eth_type": ETH_ARP, "arp_op": 1, "arp_tpa": source},
             arp_reply_actions(METADATA_MAC, source) + [("output", "in_port")], owner),
    ]


COMPILERS = {"metadata_agent": _agent, "metadata": _vport}
