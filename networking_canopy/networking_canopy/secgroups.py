"""Neutron security groups onto Canopy's security policies, as pure functions (no Neutron, no HTTP).

- security group -> policy group ``os-<sg id>`` (its members: the vports of the ports that use the group) and
  ACL ``os-<sg id>`` applied to that policy group, ``default_action: deny``, in the tenant of the group's project;
- each IPv4 rule -> one allow rule of that ACL: direction, protocol (any, tcp, udp, icmp), port range (tcp/udp)
  or ICMP type and code (icmp), ``remote_ip_prefix`` -> ``remote``, ``remote_group_id`` -> ``remote_group``
  (the policy group of that security group), ``stateful`` from the group;
- IPv6 rules (ethertype IPv6) are kept by Neutron and ignored here: Canopy carries IPv4 only (IPv6 subnets are
  refused), so there is nothing for them to allow; a port with port security sends no IPv6 (Canopy's
  anti-spoofing passes its IPv4 addresses and ARP only).

A port's ``security_groups`` -> its vport's ``policy_groups``; port security off -> none. With only allow rules
and the default deny, a vport's ACLs combine as Neutron's groups do: the union of what they allow, nothing else
(docs/policy.md); stateful rules admit the return traffic.
"""

from __future__ import annotations

import ipaddress

from networking_canopy.names import name_of as _name

PROTOCOLS = {None: "any", "any": "any", "0": "any", "tcp": "tcp", "6": "tcp", "udp": "udp", "17": "udp",
             "icmp": "icmp", "1": "icmp"}
MAX_RULES = 1000  # Canopy's limit of rules in one ACL


def is_ipv4(rule: dict) -> bool:
    return rule.get("ethertype", "IPv4") == "IPv4"


# ------------------------------------------------------------------ refusals (checked before Neutron commits)

def rule_refusal(rule: dict, remote_group: dict | None, group: dict | None, ipv4_rules_now: int) -> str | None:
    """Why Canopy cannot express ``rule`` (None: it can). ``remote_group`` is the rule's remote security group,
    ``group`` the rule's own, ``ipv4_rules_now`` how many IPv4 rules the group has before this one."""
    if not is_ipv4(rule):
        return None  # kept in Neutron, ignored by Canopy (module docstring)
    proto = rule.get("protocol")
    proto = proto.lower() if isinstance(proto, str) else proto
    if proto not in PROTOCOLS:
        return (f"protocol {rule.get('protocol')!r}: Canopy's security policies match tcp, udp, icmp or any "
                "protocol (IPv4)")
    if rule.get("remote_address_group_id"):
        return "remote_address_group_id: address groups are not supported by Canopy"
    if remote_group is not None and group is not None and remote_group.get("project_id") != group.get("project_id"):
        return (f"remote_group_id {remote_group['id']} belongs to another project; a Canopy security policy names "
                "policy groups of its own tenant only")
    prefix = rule.get("remote_ip_prefix")
    if prefix and ipaddress.ip_network(prefix, strict=False).version != 4:
        return f"remote_ip_prefix {prefix} is not IPv4"
    if ipv4_rules_now >= MAX_RULES:
        return f"a security group maps to one Canopy ACL of at most {MAX_RULES} IPv4 rules"
    return None


def port_groups_refusal(port: dict, groups: list, network_project: str) -> str | None:
    """The port's security groups must be of the project its network (Canopy tenant) belongs to."""
    for group in groups:
        if group.get("project_id") != network_project:
            return (f"security group {group['id']} belongs to project {group.get('project_id')}, the port's "
                    f"network to {network_project}: Canopy applies policies of the vport's own tenant only")
    return None


# ------------------------------------------------------------------ Neutron -> Canopy

def acl_rule(rule: dict, stateful: bool) -> dict:
    """One Canopy ACL rule, with every field Canopy stores (absent ones as Canopy's defaults) so that a
    changed rule is seen as changed."""
    proto = PROTOCOLS[rule.get("protocol").lower() if isinstance(rule.get("protocol"), str) else None]
    low, high = rule.get("port_range_min"), rule.get("port_range_max")
    ports = icmp_type = icmp_code = None
    if proto in ("tcp", "udp") and low is not None:
        ports = str(low) if high in (None, low) else f"{low}-{high}"
    if proto == "icmp" and low is not None:
        icmp_type, icmp_code = low, high
    prefix = rule.get("remote_ip_prefix")
    group = rule.get("remote_group_id")
    return {"direction": rule["direction"], "action": "allow", "priority": None, "protocol": proto,
            "remote": str(ipaddress.ip_network(prefix, strict=False)) if prefix else "0.0.0.0/0",
            "remote_subnet": None, "remote_group": _name(group) if group else None,
            "ports": ports, "source_ports": None, "icmp_type": icmp_type, "icmp_code": icmp_code,
            "stateful": bool(stateful)}


def group_items(group: dict, rules: list, item_class) -> list:
    """The policy group and the ACL of one security group (``rules``: its rules, any order)."""
    name = _name(group["id"])
    parents = {"tenant_id": _name(group["project_id"])}
    description = f"neutron security group {group.get('name') or ''}".strip()[:200]
    stateful = group.get("stateful", True)
    mine = sorted((r for r in rules if r.get("security_group_id") == group["id"] and is_ipv4(r)),
                  key=lambda r: (r["direction"], r["id"]))
    acl = {"name": name, "description": description, "priority": 1000, "default_action": "deny",
           "rules": [acl_rule(r, stateful) for r in mine], "policy_groups": [name]}
    return [item_class("policy_group", name, parents, {"name": name, "description": description}),
            item_class("acl", name, parents, acl)]


def port_policy_groups(port: dict) -> list:
    """The vport's policy groups: those of its security groups, none without port security."""
    if not port.get("port_security_enabled", True):
        return []
    return sorted(_name(g) for g in port.get("security_groups") or [])
