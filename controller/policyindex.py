"""What the cross-object rules look up, indexed, so that a write checks what it changes and not the whole
policy (``check_changes``).

``PolicyIndex`` maps keys (a name in its scope, a VNI, a route distinguisher, a MAC or IP in a subnet, a
binding key, a VTEP port and VLAN, the subnets of a domain, the vports of a subnet) to the objects holding
them. One index is shared by a policy and the copies made from it (``Policy.copy``): a copy records its
puts and removes, and the first time it asks for the index it applies them to the shared one, which then
follows that copy (the committed candidate, in the normal write path). A policy that asks after its index
moved on to a copy (a refused write's base, rarely) builds its own from scratch.

``check_changes(policy, changed)`` answers "could the full ``check`` find a problem?" by looking only at
the changed objects and what they reach (their subnet's vports when a subnet changes, a domain's subnets,
the holders of the same keys). When it finds a suspect, or a change it does not handle locally (a tenant,
domain, subnet or ACL deleted), it runs the full ``check`` and returns what that says, so the problems and
their messages are exactly the full check's. It presumes the policy before the change passed the full
check (every commit does).
"""

from __future__ import annotations

import functools
import ipaddress

from controller.model import SCHEMA, binding_key, esxi_static_key
from controller.pacer import NEVER

REFS = {kind: tuple((spec.name, spec.ref) for spec in specs if spec.ref) for kind, specs in SCHEMA.items()}
SCOPES = {"tenant": lambda o: None, "domain": lambda o: o["tenant_id"], "subnet": lambda o: o["tenant_id"],
          "acl": lambda o: o["tenant_id"], "vport": lambda o: o["subnet_id"]}


def object_keys(kind: str, obj: dict) -> tuple:
    """The index keys of one object."""
    keys = [("name", kind, SCOPES[kind](obj), obj["name"])] if kind in SCOPES else []
    if kind == "domain":
        keys += [("vni", obj["l3_vni"])] if obj["l3_vni"] is not None else []
        keys += [("rd", obj["rd"])] if obj["rd"] is not None else []
    elif kind == "subnet":
        keys += [("vni", obj["vni"])] if obj["vni"] is not None else []
        keys += [("rd", obj["rd"])] if obj["rd"] is not None else []
        keys += [("in_domain", obj["domain_id"])] if obj["domain_id"] else []
    elif kind == "vport":
        sid = obj["subnet_id"]
        keys += [("in_subnet", sid), ("mac", sid, obj["mac"])]
        keys += [("ip", sid, ip) for ip in set(obj["ips"] or ())]
        key = binding_key(obj)
        keys += [("binding", key)] if key[0] != "baremetal" else []
        static = esxi_static_key(obj)
        keys += [("static", static)] if static else []
    elif kind == "vtep_binding":
        keys.append(("vtep", obj["switch"], obj["port"], obj["vlan"]))
    elif kind == "floating_ip":
        keys.append(("floating_in", obj["external_network_id"]))
        keys += [("floating_on", obj["vport_id"])] if obj["vport_id"] else []
    return tuple(keys)


class PolicyIndex:
    """key -> {(kind, id)}; ``owner`` is the token of the policy whose objects it reflects."""

    def __init__(self, owner):
        self.owner = owner
        self._holders: dict[tuple, set] = {}
        self._keys: dict[tuple, tuple] = {}  # (kind, id) -> the keys it was indexed under

    @classmethod
    def build(cls, policy, owner, pacer=NEVER) -> "PolicyIndex":
        index = cls(None)  # nobody's until it is complete (``pacer`` may pause)
        for kind, objects in policy.objects.items():
            for oid, obj in objects.items():
                pacer.tick()
                index.update(kind, oid, obj)
        index.owner = owner
        return index

    def update(self, kind: str, oid: str, obj: dict | None) -> None:
        """(kind, oid) is now ``obj`` (None: gone)."""
        member = (kind, oid)
        for key in self._keys.pop(member, ()):
            holders = self._holders.get(key)
            if holders is not None:
                holders.discard(member)
                if not holders:
                    del self._holders[key]
        if obj is None:
            return
        keys = object_keys(kind, obj)
        self._keys[member] = keys
        for key in keys:
            self._holders.setdefault(key, set()).add(member)

    def holders(self, *key) -> set:
        """The (kind, id) holding ``key`` (do not change the set)."""
        return self._holders.get(key, set())

    def ids(self, kind: str, *key) -> list[str]:
        return [oid for k, oid in self.holders(*key) if k == kind]


# ---------------------------------------------------------------------------------------------- checking

def check_changes(policy, changed, full_check, pacer=NEVER) -> list:
    """The problems ``full_check(policy)`` reports, computed only if a changed (kind, id) is suspect. ``pacer``
    (controller/pacer.py) is ticked per change looked at, and per vport of a changed subnet. ``policy`` must not
    change during its pauses (the caller holds the writes back); the index it shares with other copies may move
    to another copy meanwhile (one asking for its own), so it is asked for again after every pause: then
    ``policy`` builds its own."""
    for kind, oid in changed:
        pacer.tick()
        index = policy.index(pacer)
        obj = policy.get(kind, oid)
        if obj is None:
            suspect = kind not in ("vport", "vtep_binding")  # what referenced it: the full check says
        elif kind == "subnet":
            suspect = _subnet(policy, index, obj) or _subnet_vports(policy, obj, pacer)
        else:  # a kind without a local check (policy groups, and ACLs: tags, rule remotes) gets the full one
            suspect = _SUSPECT.get(kind, _always)(policy, index, obj)
        if suspect:
            return full_check(policy)
    return []


def _always(_policy, _index, _obj) -> bool:
    return True


def _refs_missing(policy, kind, obj) -> bool:
    return any(isinstance(obj[field], str) and policy.get(target, obj[field]) is None
               for field, target in REFS.get(kind, ()))


def _name_taken(index, kind, obj) -> bool:
    return len(index.holders("name", kind, SCOPES[kind](obj), obj["name"])) > 1


def _shared(index, *key) -> bool:
    return key[-1] is not None and len(index.holders(*key)) > 1


def _tenant(policy, index, obj) -> bool:
    return _name_taken(index, "tenant", obj)


def _domain(policy, index, obj) -> bool:
    return (_refs_missing(policy, "domain", obj) or _name_taken(index, "domain", obj)
            or obj["underlay_nat"] or bool(obj["external_network_id"])  # external networks: controller/extnet.py
            or _shared(index, "vni", obj["l3_vni"]) or _shared(index, "rd", obj["rd"])
            or _stranded_routes(policy, index, obj))


def _stranded_routes(policy, index, dom) -> bool:
    """A static route whose next hop is in none of the domain's subnets."""
    if not dom["static_routes"]:
        return False
    spans = [_span(s["cidr"]) for s in (policy.get("subnet", sid) for sid in
                                        index.ids("subnet", "in_domain", dom["id"]))
             if s is not None and s["cidr"]]
    hops = [int(ipaddress.IPv4Address(r["next_hop"])) for r in dom["static_routes"]]
    return any(not any(lo <= hop <= hi for lo, hi in spans) for hop in hops)


@functools.lru_cache(maxsize=65_536)
def _span(cidr: str) -> tuple[int, int]:
    """A CIDR's first and last address as integers, parsed once: a subnet's checks compare it with every sibling
    of its domain, and parsing each again made a document of 1,000 subnets in one domain plan in ~50 s."""
    net = ipaddress.IPv4Network(cidr)
    return int(net.network_address), int(net.broadcast_address)


def _subnet(policy, index, sub) -> bool:
    if (_refs_missing(policy, "subnet", sub) or _name_taken(index, "subnet", sub)
            or _shared(index, "vni", sub["vni"]) or _shared(index, "rd", sub["rd"])):
        return True
    dom = policy.get("domain", sub["domain_id"]) if sub["domain_id"] else None
    if policy.count("floating_ip") or (dom is not None and dom["underlay_nat"]):
        return True  # floating IPs' vports and translated domains' subnets: controller/extnet.py
    if dom is not None and (dom["tenant_id"] != sub["tenant_id"] or _stranded_routes(policy, index, dom)
                            or _overlaps_sibling(policy, index, sub)):
        return True
    net = ipaddress.IPv4Network(sub["cidr"]) if sub["cidr"] else None
    return net is not None and any(ipaddress.IPv4Address(r["next_hop"]) not in net for r in sub["dhcp"]["routes"])


def _subnet_vports(policy, sub, pacer=NEVER) -> bool:
    """Whether a vport of a changed subnet has an address its subnet refuses now; ``pacer`` ticked per vport (a
    subnet of 10,000), and the index asked for again after each (see check_changes)."""
    rules = _ip_rules(sub)
    for vid in policy.index(pacer).ids("vport", "in_subnet", sub["id"]):
        pacer.tick()
        vport = policy.get("vport", vid)
        if vport is not None and _bad_ips(policy, policy.index(pacer), vport, sub, rules):
            return True
    return False


def _overlaps_sibling(policy, index, sub) -> bool:
    if not sub["cidr"]:
        return False
    lo, hi = _span(sub["cidr"])
    for sid in index.ids("subnet", "in_domain", sub["domain_id"]):
        other = policy.get("subnet", sid)
        if sid != sub["id"] and other is not None and other["cidr"]:
            other_lo, other_hi = _span(other["cidr"])
            if lo <= other_hi and other_lo <= hi:
                return True
    return False


def _vport(policy, index, vport) -> bool:
    if _refs_missing(policy, "vport", vport) or _name_taken(index, "vport", vport) or \
            index.holders("floating_on", vport["id"]):  # its floating IP's rules: controller/extnet.py
        return True
    subnet = policy.get("subnet", vport["subnet_id"])
    for kind, ids in (("acl", vport["acls"]), ("policy_group", vport.get("policy_groups") or ())):
        for oid in ids:
            target = policy.get(kind, oid)
            if target is None or (subnet is not None and target["tenant_id"] != subnet["tenant_id"]):
                return True
    if subnet is None:
        return False
    key, static = binding_key(vport), esxi_static_key(vport)
    return (_shared(index, "mac", subnet["id"], vport["mac"]) or _bad_ips(policy, index, vport, subnet)
            or (key[0] != "baremetal" and _shared(index, "binding", key))
            or (static is not None and _shared(index, "static", static)))


def _ip_rules(subnet) -> tuple | None:
    """(network, reserved addresses) of a subnet with a CIDR, else None: what a vport's addresses are checked
    against (computed once for the vports of one subnet)."""
    from controller.policy import dhcp_server_ip  # noqa: PLC0415 (policy imports this module)
    if not subnet["cidr"]:
        return None
    return ipaddress.IPv4Network(subnet["cidr"]), {subnet["gateway"], dhcp_server_ip(subnet)}


def _bad_ips(policy, index, vport, subnet, rules=False) -> bool:
    """``rules``: the subnet's ``_ip_rules`` if computed already."""
    ips = vport["ips"] or []
    if not ips:
        return False
    if not subnet["cidr"] or len(set(ips)) != len(ips):
        return True
    net, reserved = _ip_rules(subnet) if rules is False else rules
    for ip in ips:
        addr = ipaddress.IPv4Address(ip)
        if addr not in net or addr in (net.network_address, net.broadcast_address) or ip in reserved or \
                _shared(index, "ip", subnet["id"], ip):
            return True
    return False


def _vtep_binding(policy, index, obj) -> bool:
    return _refs_missing(policy, "vtep_binding", obj) or _shared(index, "vtep", obj["switch"], obj["port"],
                                                                  obj["vlan"])


_SUSPECT = {"tenant": _tenant, "domain": _domain, "subnet": _subnet, "vport": _vport,
            "vtep_binding": _vtep_binding}
