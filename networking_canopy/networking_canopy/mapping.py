"""Neutron's resources mapped onto Canopy's model, as pure functions (no Neutron, no HTTP).

- project -> tenant ``os-<project id>``
- router -> domain ``os-<router id>`` (extra routes -> static routes)
- network -> subnet ``os-<network id>``: the VXLAN segment id is the VNI; the network's one IPv4 subnet gives
  cidr, gateway, DNS servers, host routes (DHCP option 121) and MTU; a router interface on the network puts the
  subnet in that router's domain
- port bound by this driver -> vport ``os-<port id>`` (MAC, IPv4 fixed IPs, port security, a kvm, hyperv or
  esxi binding keyed by the port id, the policy groups of its security groups)
- security group -> policy group and ACL ``os-<sg id>`` (secgroups.py)
- external network, router gateway, floating IP -> external network ``os-<network id>``, the domain's
  ``external_network_id`` and ``underlay_nat``, floating IP ``os-<fip id>`` (external.py)

Items name other objects (parents and references such as a vport's policy groups) by these names; the sync turns
them into Canopy ids (convert_refs).

Canopy objects whose names are not ``os-`` + a Neutron id, or that sit in a tenant not named so, were not made
by Neutron and are never touched. Neutron ids are what tie both sides together; a Canopy id is only used to
address an object in a request.

``plan(desired, actual)`` compares the two sides and returns the operations that make Canopy match Neutron.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from networking_canopy import external, secgroups
from networking_canopy.names import PREFIX, name_of, neutron_id  # noqa: F401 (part of this module's API)

# parents first (and what a reference names before what names it)
KINDS = ("tenant", "external_network", "domain", "subnet", "policy_group", "acl", "vport", "floating_ip")
COLLECTION = {"tenant": "tenants", "external_network": "external-networks", "domain": "domains",
              "subnet": "subnets", "policy_group": "policy-groups", "acl": "acls", "vport": "vports",
              "floating_ip": "floating-ips"}
PARENT_FIELDS = {"tenant": (), "external_network": (), "domain": ("tenant_id",), "subnet": ("tenant_id", "domain_id"),
                 "policy_group": ("tenant_id",), "acl": ("tenant_id",), "vport": ("subnet_id",),
                 "floating_ip": ("tenant_id",)}
PARENT_KIND = {"tenant_id": "tenant", "domain_id": "domain", "subnet_id": "subnet"}
# fields that name other objects (Canopy: by id; items: by name): kind -> (field, referred kind, shape)
REFS = {"domain": (("external_network_id", "external_network", "one"),),
        "vport": (("policy_groups", "policy_group", "list"),),
        "acl": (("policy_groups", "policy_group", "list"), ("remote_group", "policy_group", "rules")),
        "floating_ip": (("external_network_id", "external_network", "one"), ("vport_id", "vport", "one"))}
FLAVOURS = ("kvm", "hyperv", "esxi")
HYPERV_PORT_NAME_MAX = 48
MAX_HOST_ROUTES = 16  # Canopy's DHCP option 121 limit (a reply must fit 576 bytes)
ROUTER_INTERFACE_OWNERS = ("network:router_interface", "network:router_interface_distributed")
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
    if external.is_external(network):
        return None  # not carried by Canopy's overlay: the hypervisors' uplinks reach it (external.py)
    kind = network.get("provider:network_type")
    if kind not in (None, "vxlan"):
        return f"Canopy carries tenant networks as VXLAN segments; provider:network_type {kind!r} is not supported"
    return None


def network_update_refusal(original: dict, network: dict) -> str | None:
    if external.is_external(original) != external.is_external(network):
        return ("router:external cannot change on an existing network (Canopy keeps tenant and external networks "
                "apart): create a new network")
    return network_refusal(network)


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


def port_refusal(port: dict, network: dict | None = None) -> str | None:
    if not is_vm_port(port):
        return None
    if network is not None and external.is_external(network):
        return ("Canopy does not attach ports to external networks (it reaches them through the hypervisors' "
                "uplinks): attach the port to a tenant network and give it a floating IP")
    if port.get("port_security_enabled", True) and not port.get("security_groups"):
        return ("port security without security groups is not supported by Canopy (Neutron drops all traffic of "
                "such a port, Canopy cannot express that); give the port a security group or "
                "port_security_enabled=false")
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


def desired_items(networks, subnets, ports, routers, groups=(), rules=(), fips=(), gateway_macs=None) -> dict:
    """Every Canopy object Neutron's resources call for: {(kind, name): Item}. ``groups`` and ``rules``: security
    groups and their rules; ``fips``: floating IPs; ``gateway_macs``: ``[canopy] external_gateway_macs``.
    Resources of a project whose id cannot make a name of ours (Keystone ids are hex; Neutron's noauth makes
    default security groups for ``fake_project_id``-like ids) are left out: their tenant would not be ours."""
    items = {}
    networks = [n for n in networks if nameable(n["project_id"]) or external.is_external(n)]
    routers, groups, fips = ([r for r in rs if nameable(r["project_id"])] for rs in (routers, groups, fips))
    router_of = {p["network_id"]: p["device_id"] for p in ports if p.get("device_owner") in ROUTER_INTERFACE_OWNERS}
    ipv4 = {}
    for s in subnets:
        if s.get("ip_version") == 4:
            ipv4.setdefault(s["network_id"], s)
    network_ids, external_ids = set(), set()
    for net in networks:
        if network_refusal(net):
            continue
        if external.is_external(net):
            sub = ipv4.get(net["id"])
            if sub is not None and not external.external_subnet_refusal(sub):
                external_ids.add(net["id"])
                _add(items, Item("external_network", name_of(net["id"]), {},
                                 external.network_body(net, sub, gateway_macs or {})))
            continue
        network_ids.add(net["id"])
        _add(items, tenant_item(net["project_id"]))
        _add(items, subnet_item(net, ipv4.get(net["id"]), router_of.get(net["id"])))
    for router in routers:
        _add(items, tenant_item(router["project_id"]))
        domain = domain_item(router)
        domain.body.update(external.gateway_fields(router, external_ids))
        _add(items, domain)
    for group in groups:
        _add(items, tenant_item(group["project_id"]))
        for item in secgroups.group_items(group, rules, Item):
            _add(items, item)
    vports = set()
    for port in ports:
        flavour = bound_flavour(port)
        if flavour and port["network_id"] in network_ids and is_vm_port(port):
            vport = vport_item(port, flavour)
            vport.body["policy_groups"] = secgroups.port_policy_groups(port)
            _add(items, vport)
            vports.add(port["id"])
    for fip in fips:
        if fip["floating_network_id"] in external_ids:
            _add(items, tenant_item(fip["project_id"]))
            _add(items, Item("floating_ip", name_of(fip["id"]), {"tenant_id": name_of(fip["project_id"])},
                             external.floating_ip_body(fip, vports)))
    return items


def _add(items, item):
    items[item.key] = item


def nameable(project_id) -> bool:
    return isinstance(project_id, str) and neutron_id(name_of(project_id)) is not None


# ------------------------------------------------------------------ references: names in items, ids in Canopy

def convert_refs(kind: str, body: dict, lookup) -> dict:
    """``body`` with every reference field passed through ``lookup(kind referred, value)`` (None stays None)."""
    out = dict(body)
    for fname, referred, shape in REFS.get(kind, ()):
        def one(value, referred=referred):
            return None if value is None else lookup(referred, value)
        if shape == "one" and fname in out:
            out[fname] = one(out[fname])
        elif shape == "list" and fname in out:
            out[fname] = [one(v) for v in out[fname] or []]
        elif shape == "rules" and "rules" in out:
            out["rules"] = [{**r, fname: one(r.get(fname))} if isinstance(r, dict) else r for r in out["rules"] or []]
    return out


# ------------------------------------------------------------------ Canopy -> items

def actual_items(*lists, names=None) -> dict:
    """The Canopy objects this driver made (see the module docstring), as {(kind, name): Item}; ``lists`` are the
    objects of each kind in KINDS order (fewer: the rest empty), ``names`` more id -> name pairs to read
    references with (objects fetched only to be named)."""
    known = dict(names or {})
    by_kind = dict(zip(KINDS, lists))
    for objs in by_kind.values():
        for obj in objs:
            known[obj["id"]] = obj["name"]
    items = {}
    for kind in KINDS:
        for obj in by_kind.get(kind, ()):
            parents = {f: known.get(obj.get(f)) if obj.get(f) else None for f in PARENT_FIELDS[kind]}
            ours = neutron_id(obj["name"]) is not None and all(
                neutron_id(n) is not None for f, n in parents.items() if f != "domain_id" or n is not None)
            if ours and all(n is not None for f, n in parents.items() if f != "domain_id"):
                body = convert_refs(kind, obj, lambda _kind, value: known.get(value))
                items[(kind, obj["name"])] = Item(kind, obj["name"], parents, body, obj["id"])
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
    again likewise. A floating IP attached to a vport that goes is detached first (Canopy keeps a vport with a
    floating IP), and attached again by the updates when the vport is made again."""
    inside = scope or (lambda key: True)
    remade = set()
    for key, want in desired.items():
        have = actual.get(key)
        if have is None or not inside(key):
            continue
        if want.parents != have.parents or (key[0] == "vport" and not _same(want.body["binding"],
                                                                           have.body.get("binding"))) or (
                key[0] == "floating_ip" and _immutable_changed(want, have)):
            remade.add(key)
    gone = {k for k in actual if k not in desired or k in remade}
    gone |= {k for k in actual if k[0] == "vport" and ("subnet", actual[k].parents["subnet_id"]) in remade}
    ops, actual = _detach_floating_ips(actual, gone, inside)
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
    for key in sorted((k for k in desired if k in actual and k not in gone and inside(k)),
                      key=lambda k: (KINDS.index(k[0]), k[1])):
        changed = {f: v for f, v in desired[key].body.items() if not _same(v, actual[key].body.get(f))}
        changed.pop("vni", None)  # allocated once; a Neutron segment id never changes
        if changed:
            ops.append(Op("update", actual[key], changed, why="differs from Neutron"))
    return ops + later


def _immutable_changed(want, have) -> bool:
    return any(want.body[f] != have.body.get(f) for f in ("external_network_id", "address"))


def _detach_floating_ips(actual, gone, inside):
    """Updates freeing the floating IPs (that stay) of vports that go; ``actual`` as it is after them."""
    leaving = {k[1] for k in gone if k[0] == "vport"}
    ops, after = [], dict(actual)
    for key, have in sorted(actual.items()):
        if key[0] == "floating_ip" and key not in gone and inside(key) and have.body.get("vport_id") in leaving:
            ops.append(Op("update", have, {"vport_id": None}, why="its vport is deleted or made again"))
            after[key] = Item(have.kind, have.name, have.parents, {**have.body, "vport_id": None}, have.id)
    return ops, after


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
