"""Neutron's external networks, router gateways and floating IPs onto Canopy's external connectivity
(docs/external.md), as pure functions (no Neutron, no HTTP).

- network with ``router:external`` and its one IPv4 subnet -> external network ``os-<network id>``: ``cidr``, the
  subnet's ``gateway_ip`` as ``gateway``, and ``gateway_mac`` from ``[canopy] external_gateway_macs`` (keyed by the
  network's id or name); no Canopy subnet (Canopy does not carry the external network in the overlay, the
  hypervisors' uplinks reach it);
- router gateway -> the domain's ``external_network_id``; ``enable_snat`` -> ``underlay_nat`` (translation
  behind each hypervisor's own address on the external network: the gateway port's address that Neutron
  allocates is not used by Canopy);
- floating IP -> floating IP ``os-<floating IP id>`` in the tenant of its project, same address, attached to the
  vport of its port when that port is a vport (bound by this driver), else free.
"""

from __future__ import annotations

import ipaddress

from networking_canopy.names import name_of


def is_external(network: dict) -> bool:
    return bool(network.get("router:external"))


# ------------------------------------------------------------------ refusals

def external_subnet_refusal(subnet: dict) -> str | None:
    if not subnet.get("gateway_ip"):
        return ("an external network's subnet needs a gateway_ip: Canopy sends the external traffic to that "
                "router")
    return None


def gateway_refusal(info: dict | None, ext_subnets: list) -> str | None:
    """``info``: the router's requested external_gateway_info; ``ext_subnets``: the external network's subnets."""
    if not info or not info.get("network_id"):
        return None
    if info.get("external_fixed_ips"):
        return ("external_fixed_ips: Canopy translates a router's traffic behind each hypervisor's own address on "
                "the external network, not a router address; leave the gateway's address to Neutron")
    ipv4 = [s for s in ext_subnets if s.get("ip_version") == 4]
    if len(ipv4) != 1 or not ipv4[0].get("gateway_ip"):
        return (f"external network {info['network_id']} needs exactly one IPv4 subnet with a gateway_ip to be a "
                "Canopy external network")
    return None


def translation_refusal(router_id: str, cidrs: list, others: dict) -> str | None:
    """A router that translates (gateway with enable_snat) with subnets ``cidrs``, against ``others``: {router id:
    its subnets' cidrs} of the other routers that translate. Canopy's translated domains share one conntrack zone
    on a hypervisor, so their subnets may not overlap (docs/external.md)."""
    for cidr in sorted(cidrs):
        for other, theirs in sorted(others.items()):
            if other == router_id:
                continue
            for their in sorted(theirs):
                if ipaddress.ip_network(cidr).overlaps(ipaddress.ip_network(their)):
                    return (f"subnet {cidr} overlaps {their} of router {other}, which also translates (enable_snat): "
                            "Canopy's translated routers share one conntrack zone per hypervisor; disable SNAT on "
                            "one of them or renumber")
    return None


def floating_ip_refusal(fip: dict, port: dict | None, port_network_project: str | None) -> str | None:
    """``fip`` with its (new) ``port_id`` and ``fixed_ip_address``; ``port`` that port (None: not associated)."""
    if port is None:
        return None
    if port_network_project != fip.get("project_id"):
        return (f"port {port['id']} is in a network of project {port_network_project}, the floating IP belongs to "
                f"{fip.get('project_id')}: Canopy attaches a floating IP to a vport of its own tenant")
    first = first_ipv4(port)
    if fip.get("fixed_ip_address") and fip["fixed_ip_address"] != first:
        return (f"fixed_ip_address {fip['fixed_ip_address']}: Canopy translates a floating IP to its port's first "
                f"IPv4 address ({first}) and gives a port one floating IP")
    return None


def first_ipv4(port: dict) -> str | None:
    ips = []
    for ip in port.get("fixed_ips") or []:
        try:
            addr = ipaddress.ip_address(ip["ip_address"])
        except ValueError:
            continue
        if addr.version == 4:
            ips.append(addr)
    return str(min(ips)) if ips else None


# ------------------------------------------------------------------ Neutron -> Canopy

def network_body(network: dict, subnet: dict, gateway_macs: dict) -> dict:
    body = {"name": name_of(network["id"]),
            "description": f"neutron external network {network.get('name') or ''}".strip()[:200],
            "cidr": subnet["cidr"], "gateway": subnet["gateway_ip"]}
    mac = gateway_macs.get(network["id"]) or gateway_macs.get(network.get("name") or "")
    if mac:
        body["gateway_mac"] = mac.lower()
    return body


def gateway_fields(router: dict, mapped_networks: set) -> dict:
    """The domain's external fields for a router (``mapped_networks``: ids of external networks Canopy has)."""
    info = router.get("external_gateway_info") or {}
    net = info.get("network_id")
    if not net or net not in mapped_networks:
        return {"external_network_id": None, "underlay_nat": False}
    return {"external_network_id": name_of(net), "underlay_nat": bool(info.get("enable_snat", True))}


def floating_ip_body(fip: dict, vports: set) -> dict:
    """``vports``: ids of the ports that are vports in Canopy."""
    port = fip.get("port_id")
    return {"name": name_of(fip["id"]),
            "description": f"neutron floating IP {fip.get('description') or ''}".strip()[:200],
            "external_network_id": name_of(fip["floating_network_id"]), "address": fip["floating_ip_address"],
            "vport_id": name_of(port) if port and port in vports else None}
