"""Neutron's resources mapped onto Canopy's model, as pure functions (no Neutron, no HTTP).

- project -> tenant ``os-<project id>``
- router -> domain ``os-<router id>`` (extra routes -> static routes)
- network -> subnet ``os-<network id>``: the VXLAN segment id is the VNI; the network's one IPv4 subnet gives
  cidr, gateway, DNS servers, host routes (DHCP option 121) and MTU; a router interface on the network puts the
  subnet in that router's domain
- port bound by this driver -> vport ``os-<port id>`` (MAC, IPv4 fixed IPs, port security, a kvm, hyperv or
  esxi binding keyed by the port id)

Canopy objects whose names are not ``os-`` + a Neutron id, or that sit in a tenant not named so, were not made
by Neutron and are never touched. Neutron ids are what tie both sides together; a Canopy id is only used to
address an object in a request.

``plan(desired, actual)`` compares the two sides and returns the operations that make Canopy match Neutron.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

PREFIX = "os-"
KINDS = ("tenant", "domain", "subnet", "vport")  # parents first
COLLECTION = {"tenant": "tenants", "domain": "domains", "subnet": "subnets", "vport": "vports"}
PARENT_FIELDS = {"tenant": (), "domain": ("tenant_id",), "subnet": ("tenant_id", "domain_id"),
                 "vport": ("subnet_id",)}
PARENT_KIND = {"tenant_id": "tenant", "domain_id": "domain", "subnet_id": "subnet"}
FLAVOURS = ("kvm", "hyperv", "esxi")
HYPERV_PORT_NAME_MAX = 48
MAX_HOST_ROUTES = 16  # Canopy's DHCP option 121 limit (a reply must fit 576 bytes)
ROUTER_INTERFACE_OWNERS = ("network:router_interface", "network:router_interface_distributed")
_NAME = re.compile(r"^os-[0-9a-fA-F-]{1,60}$")


def name_of(neutron_id: str) -> str:
    return PREFIX + neutron_id


def neutron_id(name: str) -> str | None:
    """The Neutron id in a name this driver made, None for any other name."""
    return name[len(PREFIX):] if isinstance(name, str) and _NAME.match(name) else None


@dataclass
class Item:
    """One Canopy object as Neutron wants it: parents by name, ``body`` the fields compared and written."""

    kind: str
    name: str
    parents: dict = field(default_factory=dict)  # "tenant_id" -> parent name (None: no parent)
    body: dict = field(default_factory=dict)
    id: str | None = None  # Canopy's id, for objects read from Canopy

    @property
    def key(self):
        return (self.kind, self.name)


# ------------------------------------------------------------------ refusals (checked at precommit)

def network_refusal(network: dict) -> str | None:
    if network.get("router:external"):
        return ("external networks (router gateways, floating IPs) need Canopy's external connectivity, "
                "which networking-canopy does not support yet")
    kind = network.get("provider:network_type")
    if kind not in (None, "vxlan"):
        return f"Canopy carries tenant networks as VXLAN segments; provider:network_type {kind!r} is not supported"
    return None


def subnet_refusal(subnet: dict, other_subnets: list) -> str | None:
    if subnet.get("ip_version") != 4:
        return "Canopy supports IPv4 subnets only"
    if ipaddress.ip_network(subnet["cidr"]).prefixlen > 30:
        return f"cidr {subnet['cidr']}: Canopy needs a prefix of /30 or shorter"
    if any(s.get("ip_version") == 4 and s["id"] != subnet["id"] for s in other_subnets):
        return "a network maps to one Canopy subnet: at most one IPv4 subnet per network"
    routes = subnet.get("host_routes") or []
    if len(routes) > MAX_HOST_ROUTES:
        return f"at most {MAX_HOST_ROUTES} host_routes (Canopy serves them in one DHCP reply)"
    for route in routes:
        if ipaddress.ip_network(route["destination"]).version != 4:
            return f"host_routes: {route['destination']} is not IPv4"
    return None


def is_vm_port(port: dict) -> bool:
    """Ports of VMs and bare ports (device_owner compute:* or empty); network:* ports are Neutron's own."""
    return not (port.get("device_owner") or "").startswith("network:")


def port_refusal(port: dict) -> str | None:
    if not is_vm_port(port):
        return None
    if port.get("security_groups"):
        return ("security groups are not supported by Canopy yet (security policies); create the port, or its "
                "network, with port_security_enabled=false")
    if port.get("port_security_enabled", True):
        return ("port security without security groups is not supported by Canopy yet (Neutron drops all "
                "traffic of such a port, Canopy cannot express that); use port_security_enabled=false")
    if port.get("allowed_address_pairs"):
        return "allowed_address_pairs are not supported by Canopy"
    name = (port.get("binding:profile") or {}).get("canopy_port_name")
    if name is not None and (not isinstance(name, str) or not 1 <= len(name) <= HYPERV_PORT_NAME_MAX):
        return f"binding:profile canopy_port_name must be 1-{HYPERV_PORT_NAME_MAX} characters"
    return None


def router_interface_refusal(port: dict, subnets: list, attached_router: str | None, router_id: str) -> str | None:
    """``subnets``: the Neutron subnets of the interface's IPs; ``attached_router``: the router already
    routing the port's network, if any."""
    if attached_router is not None and attached_router != router_id:
        return (f"network {port['network_id']} is already attached to router {attached_router}; a Canopy subnet "
                "belongs to one domain")
    by_id = {s["id"]: s for s in subnets}
    for ip in port.get("fixed_ips") or []:
        subnet = by_id.get(ip["subnet_id"])
        if subnet is not None and subnet.get("gateway_ip") != ip["ip_address"]:
            return (f"the interface address {ip['ip_address']} is not the subnet's gateway_ip "
                    f"{subnet.get('gateway_ip')}; Canopy routes a subnet at its gateway address")
    return None


# ------------------------------------------------------------------ Neutron -> Canopy items

def tenant_item(project_id: str) -> Item:
    return Item("tenant", name_of(project_id), {}, {"name": name_of(project_id), "project_id": project_id,
                                                    "description": f"OpenStack project {project_id}"})


def domain_item(router: dict) -> Item:
    routes = [{"prefix": r["destination"], "next_hop": r["nexthop"]} for r in router.get("routes") or []
              if ipaddress.ip_network(r["destination"]).version == 4]
    return Item("domain", name_of(router["id"]), {"tenant_id": name_of(router["project_id"])},
                {"name": name_of(router["id"]), "description": _text(f"neutron router {router.get('name') or ''}"),
                 "static_routes": sorted(routes, key=lambda r: (r["prefix"], r["next_hop"]))})


def subnet_item(network: dict, subnet: dict | None, router_id: str | None) -> Item:
    """The Canopy subnet of a network; ``subnet`` its IPv4 Neutron subnet (None: L2 only, no DHCP)."""
    dhcp = {"enabled": False, "dns_servers": [], "routes": []}
    cidr = gateway = None
    if subnet is not None:
        cidr, gateway = subnet["cidr"], subnet.get("gateway_ip")
        dhcp = {"enabled": bool(subnet.get("enable_dhcp", True)),
                "dns_servers": [d for d in subnet.get("dns_nameservers") or [] if _is_ipv4(d)],
                "routes": [{"prefix": r["destination"], "next_hop": r["nexthop"]}
                           for r in subnet.get("host_routes") or []]}
    if network.get("mtu"):
        dhcp["mtu"] = network["mtu"]
    body = {"name": name_of(network["id"]), "description": _text(f"neutron network {network.get('name') or ''}"),
            "cidr": cidr, "gateway": gateway, "dhcp": dhcp}
    if network.get("provider:segmentation_id"):
        body["vni"] = network["provider:segmentation_id"]
    parents = {"tenant_id": name_of(network["project_id"]),
               "domain_id": name_of(router_id) if router_id else None}
    return Item("subnet", name_of(network["id"]), parents, body)


def binding_of(port: dict, flavour: str) -> dict:
    """The Canopy binding of a bound port: the hypervisor knows the VM's interface by the Neutron port id
    (kvm: external_ids:iface-id; esxi: the vNIC id the vCenter agent reports; hyperv: the OVS port name, or
    binding:profile canopy_port_name)."""
    if flavour == "kvm":
        return {"flavour": "kvm", "iface_id": port["id"]}
    if flavour == "hyperv":
        name = (port.get("binding:profile") or {}).get("canopy_port_name") or port["id"]
        return {"flavour": "hyperv", "port_name": name}
    return {"flavour": "esxi", "vnic_id": port["id"]}


def bound_flavour(port: dict) -> str | None:
    """The flavour this driver bound the port with (kept in binding:vif_details), None if not bound by it."""
    if port.get("binding:vif_type") != "ovs":
        return None
    flavour = (port.get("binding:vif_details") or {}).get("canopy_flavour")
    return flavour if flavour in FLAVOURS else None


def vport_item(port: dict, flavour: str) -> Item:
    ips = sorted((ip["ip_address"] for ip in port.get("fixed_ips") or [] if _is_ipv4(ip["ip_address"])),
                 key=ipaddress.IPv4Address)
    return Item("vport", name_of(port["id"]), {"subnet_id": name_of(port["network_id"])},
                {"name": name_of(port["id"]), "description": _text(f"neutron port {port.get('name') or ''}"),
                 "mac": port["mac_address"].lower(), "ips": ips,
                 "port_security": bool(port.get("port_security_enabled", True)),
                 "binding": binding_of(port, flavour), "instance_id": instance_of(port)})


def instance_of(port: dict) -> str | None:
    """The Nova instance using the port (its device_id when a compute:* port), for the metadata service."""
    device = port.get("device_id") or ""
    owned = (port.get("device_owner") or "").startswith("compute:")
    return device.lower() if owned and re.fullmatch(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}", device) \
        else None


def desired_items(networks, subnets, ports, routers) -> dict:
    """Every Canopy object Neutron's resources call for: {(kind, name): Item}."""
    items = {}
    router_of = {p["network_id"]: p["device_id"] for p in ports if p.get("device_owner") in ROUTER_INTERFACE_OWNERS}
    ipv4 = {}
    for s in subnets:
        if s.get("ip_version") == 4:
            ipv4.setdefault(s["network_id"], s)
    network_ids = set()
    for net in networks:
        if network_refusal(net):
            continue
        network_ids.add(net["id"])
        _add(items, tenant_item(net["project_id"]))
        _add(items, subnet_item(net, ipv4.get(net["id"]), router_of.get(net["id"])))
    for router in routers:
        _add(items, tenant_item(router["project_id"]))
        _add(items, domain_item(router))
    for port in ports:
        flavour = bound_flavour(port)
        if flavour and port["network_id"] in network_ids and is_vm_port(port):
            _add(items, vport_item(port, flavour))
    return items


def _add(items, item):
    items[item.key] = item


# ------------------------------------------------------------------ Canopy -> items

def actual_items(tenants, domains, subnets, vports) -> dict:
    """The Canopy objects this driver made (see the module docstring), as {(kind, name): Item}."""
    names = {}
    items = {}
    for kind, objs in (("tenant", tenants), ("domain", domains), ("subnet", subnets), ("vport", vports)):
        for obj in objs:
            names[obj["id"]] = obj["name"]
        for obj in objs:
            parents = {f: names.get(obj.get(f)) if obj.get(f) else None for f in PARENT_FIELDS[kind]}
            ours = neutron_id(obj["name"]) is not None and all(
                neutron_id(n) is not None for f, n in parents.items() if f != "domain_id" or n is not None)
            if ours and all(n is not None for f, n in parents.items() if f != "domain_id"):
                items[(kind, obj["name"])] = Item(kind, obj["name"], parents, obj, obj["id"])
    for key in [k for k, item in items.items() if any(
            (PARENT_KIND[f], n) not in items for f, n in item.parents.items() if n is not None)]:
        del items[key]  # under a parent that is not ours
    return items


# ------------------------------------------------------------------ the difference

@dataclass
class Op:
    op: str  # create | update | delete
    item: Item
    fields: dict = field(default_factory=dict)  # update: the fields to write
    why: str = ""


def plan(desired: dict, actual: dict, scope=None) -> list:
    """Operations that make ``actual`` equal ``desired`` for the keys ``scope`` accepts (a predicate over
    (kind, name), None: all): deletions children first, then creations parents first, then updates.

    A subnet whose domain changes (a router interface added or removed) is deleted with its vports and
    created again in its new place (Canopy's domain_id never changes). A vport whose binding changes is made
    again likewise."""
    inside = scope or (lambda key: True)
    remade = set()
    for key, want in desired.items():
        have = actual.get(key)
        if have is None or not inside(key):
            continue
        if want.parents != have.parents or (key[0] == "vport" and not _same(want.body["binding"],
                                                                           have.body.get("binding"))):
            remade.add(key)
    gone = {k for k in actual if k not in desired or k in remade}
    gone |= {k for k in actual if k[0] == "vport" and ("subnet", actual[k].parents["subnet_id"]) in remade}
    ops = []
    for kind in reversed(KINDS):
        for key in sorted(k for k in gone if k[0] == kind and inside(k)):
            if key[0] == "vport" and ("subnet", actual[key].parents["subnet_id"]) in remade:
                continue  # goes with its subnet (cascade)
            why = "moves to another domain or binding" if key in remade else "not in Neutron"
            ops.append(Op("delete", actual[key], why=why))
    later = []
    for kind in KINDS:
        for key in sorted(k for k in desired if k[0] == kind and inside(k)):
            if key in gone or key not in actual:
                item = desired[key]
                why = "remade" if key in remade else "missing in Canopy"
                if kind == "domain" and item.body["static_routes"]:  # next hops need the subnets first
                    later.append(Op("update", item, {"static_routes": item.body["static_routes"]}, why=why))
                    item = Item(kind, item.name, item.parents, {**item.body, "static_routes": []})
                ops.append(Op("create", item, why=why))
    for key in sorted(k for k in desired if k in actual and k not in gone and inside(k)):
        changed = {f: v for f, v in desired[key].body.items() if not _same(v, actual[key].body.get(f))}
        changed.pop("vni", None)  # allocated once; a Neutron segment id never changes
        if changed:
            ops.append(Op("update", actual[key], changed, why="differs from Neutron"))
    return ops + later


def _same(want, have) -> bool:
    """Whether Canopy's value matches Neutron's: dicts compare on the keys Neutron sets."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(_same(v, have.get(k)) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and len(want) == len(have) and all(_same(a, b) for a, b in zip(want, have))
    return want == have


def _is_ipv4(text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == 4
    except ValueError:
        return False


def _text(value: str) -> str:
    return value.strip()[:200]
