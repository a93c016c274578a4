"""The whole tenant policy: objects of every kind, the rules that span objects, and allocation.

``Policy`` is a value: mutations work on a ``copy()`` (copy-on-write per kind), are checked as a whole
with ``check()``, and only then committed and swapped in. So a refused change leaves nothing behind.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict

from controller import extnet
from controller.fields import MAX_VNI
from controller import policyindex
from controller.model import KINDS, LISTED, MAX_ACL_TAG, PARENT, SCHEMA, Problem, binding_key, esxi_static_key
from controller.pacer import NEVER, Pacer
from controller.policyindex import PolicyIndex


class Policy:
    def __init__(self, objects: dict[str, dict[str, dict]] | None = None):
        self.objects = {kind: dict((objects or {}).get(kind, {})) for kind in KINDS}
        self._token = object()  # who this policy is, for the shared index (controller/policyindex.py)
        self._index: PolicyIndex | None = None
        self._base = None  # the token of the policy this one was copied from
        self._pending: list[tuple[str, str]] = []  # (kind, id) put or removed since that copy

    def copy(self) -> "Policy":
        copied = Policy(self.objects)
        copied._index, copied._base = self._index, self._token
        return copied

    def index(self, pacer: Pacer = NEVER) -> PolicyIndex:
        """The index of this policy's objects (controller/policyindex.py): shared with the policy it was
        copied from, brought up to date with this one's changes; built from scratch only if that one's
        index has moved on to another copy meanwhile. ``pacer`` is ticked per object indexed; while it
        pauses the index belongs to no policy (one asking meanwhile builds its own)."""
        index = self._index
        if index is not None and index.owner is self._token:
            return index
        if index is not None and index.owner is self._base:
            index.owner = None
            for kind, oid in self._pending:
                pacer.tick()
                index.update(kind, oid, self.objects[kind].get(oid))
            index.owner = self._token
        else:
            self._index = index = PolicyIndex.build(self, self._token, pacer)
        self._pending = []
        return index

    def _changed(self, kind, oid):
        index = self._index
        if index is not None and index.owner is self._token:
            index.update(kind, oid, self.objects[kind].get(oid))
        else:
            self._pending.append((kind, oid))

    def get(self, kind, oid):
        return self.objects[kind].get(oid)

    def getter(self, kind):
        """``get`` of ``kind`` as one C function of the id (``map`` over 10,000 vport ids: no Python call each)."""
        return self.objects[kind].get

    def all(self, kind):
        return self.objects[kind].values()

    def count(self, kind):
        return len(self.objects[kind])

    def put(self, kind, obj):
        self.objects[kind][obj["id"]] = obj
        self._changed(kind, obj["id"])

    def remove(self, kind, oid):
        removed = self.objects[kind].pop(oid, None)
        self._changed(kind, oid)
        return removed

    def children(self, kind, oid):
        """(kind, object) pairs that directly depend on the object: parents, subnets of a domain, bindings."""
        out = []
        for child, key in PARENT.items():
            if SCHEMA_REFS.get((child, key)) == kind:
                out.extend((child, o) for o in self.objects[child].values() if o[key] == oid)
        if kind == "domain":
            out.extend(("subnet", s) for s in self.objects["subnet"].values() if s["domain_id"] == oid)
        if kind == "subnet":
            out.extend(("vtep_binding", b) for b in self.objects["vtep_binding"].values() if b["subnet_id"] == oid)
        if kind == "acl":
            out.extend(("vport", v) for v in self.objects["vport"].values() if oid in v["acls"])
        if kind == "policy_group":
            out.extend(("vport", v) for v in self.objects["vport"].values() if oid in (v.get("policy_groups") or ()))
        if kind == "external_network":
            out.extend(("domain", d) for d in self.objects["domain"].values() if d.get("external_network_id") == oid)
            out.extend(("floating_ip", f) for f in self.objects["floating_ip"].values()
                       if f["external_network_id"] == oid)
        if kind == "vport":
            out.extend(("floating_ip", f) for f in self.objects["floating_ip"].values() if f["vport_id"] == oid)
        if kind in ("policy_group", "subnet"):
            key = "remote_group" if kind == "policy_group" else "remote_subnet"
            out.extend(("acl", a) for a in self.objects["acl"].values()
                       if oid in (a.get("policy_groups") or ()) or any(r.get(key) == oid for r in a["rules"]))
        return out

    def ref(self, kind, obj) -> str:
        """A readable name path: tenant 'acme', domain 'acme/prod', subnet 'acme/web', vport 'acme/web/vm1'."""
        if obj is None:
            return ""
        if kind in ("tenant", "external_network"):
            return obj["name"]
        if kind == "vport":
            subnet = self.get("subnet", obj["subnet_id"])
            return f"{self.ref('subnet', subnet) if subnet else obj['subnet_id']}/{obj['name']}"
        if kind == "vtep_binding":
            return f"{obj['switch']}/{obj['port']}/{obj['vlan']}"
        tenant = self.get("tenant", obj["tenant_id"])
        return f"{tenant['name'] if tenant else obj['tenant_id']}/{obj['name']}"

    def find(self, kind, path: str):
        """The object whose ref() is ``path``, or None."""
        for obj in self.objects[kind].values():
            if self.ref(kind, obj) == path:
                return obj
        return None

    def counts(self):
        return {kind: len(objs) for kind, objs in self.objects.items()}


def dhcp_server_ip(subnet: dict) -> str | None:
    """The address Canopy's DHCP answers from in a subnet: its gateway, or for an L2-only subnet without
    one the last host address of the CIDR (reserved: never allocated to or configured on a vport)."""
    if not subnet["cidr"]:
        return None
    return subnet["gateway"] or str(ipaddress.IPv4Network(subnet["cidr"]).broadcast_address - 1)


SCHEMA_REFS = {(kind, spec.name): spec.ref for kind, specs in SCHEMA.items() for spec in specs if spec.ref}


# ---------------------------------------------------------------------------------------------- rules

def check_changes(policy: Policy, changed, pacer: Pacer = NEVER) -> list[Problem]:
    """What ``check`` says, looking at the changed (kind, id) and what they reach first: when none of
    them can break a rule, that is no problem, without going through the whole policy (the policy before
    the change is presumed to pass ``check``). See controller/policyindex.py; ``pacer``: controller/pacer.py."""
    return policyindex.check_changes(policy, changed, check, pacer)


def check(policy: Policy) -> list[Problem]:
    """Every rule that spans objects. Empty list: the policy is consistent."""
    problems: list[Problem] = []
    for rule in (_references, _acl_references, _unique_names, _unique_vnis, _unique_rds, _unique_tags,
                 _domain_cidrs, _vport_addresses, _binding_keys, _static_routes, _vtep_bindings, extnet.check):
        problems.extend(rule(policy))
    return problems


def _p(policy, kind, obj, field, reason, code="invalid"):
    return Problem(kind, policy.ref(kind, obj), field, reason, code)


class _NoSuch:
    """Why a reference to ``value`` fails: no ``target`` has that id; when names are what was given (a likely mistake:
    a policy document names objects, REST takes ids), which objects have that name and their ids. Each kind's names
    are gathered once, on the error's path only: a body of 10,000 names, each looked up by going through every
    object of its kind, made one PATCH cost ~10,000 x the ACLs in one stretch."""

    def __init__(self, policy):
        self.policy = policy
        self.named: dict[str, dict] = {}  # kind -> {name: the objects with that name}, gathered when first asked

    def __call__(self, target, value) -> str:
        reason = f"no {target} with id {value!r}"
        if not isinstance(value, str):
            return reason
        if target not in self.named:
            by_name = self.named[target] = {}
            for obj in self.policy.all(target):
                if isinstance(obj.get("name"), str):
                    by_name.setdefault(obj["name"], []).append(obj)
        named = self.named[target].get(value, ())[:3]
        if named:
            which = ", ".join(f"{self.policy.ref(target, o)} (id {o['id']})" for o in named)
            reason += f"; {value!r} is the name of {target} {which}: REST references objects by id"
        return reason


def _references(policy):
    no_such = _NoSuch(policy)
    for (kind, key), target in SCHEMA_REFS.items():
        if key in ("acls", "policy_groups"):  # lists: checked with their tenant in _acl_references
            continue
        for obj in policy.all(kind):
            if obj[key] is not None and policy.get(target, obj[key]) is None:
                yield _p(policy, kind, obj, key, no_such(target, obj[key]), "not_found")
    for sub in policy.all("subnet"):
        dom = policy.get("domain", sub["domain_id"]) if sub["domain_id"] else None
        if dom is not None and dom["tenant_id"] != sub["tenant_id"]:
            yield _p(policy, "subnet", sub, "domain_id", "the domain belongs to another tenant")
    for vport in policy.all("vport"):
        subnet = policy.get("subnet", vport["subnet_id"])
        yield from _list_refs(policy, "vport", vport, "acls", "acl", subnet["tenant_id"] if subnet else None, no_such)


def _list_refs(policy, kind, obj, key, target, tenant, no_such):
    """The problems of a list of references (``obj[key]``): each must name a ``target`` of ``tenant`` (None: any).
    The first LISTED are described, the others counted in one more problem: 10,000 bad references cost 10,000
    problems and their text, ~0.1 s of the hub in one stretch."""
    path, more, shown, objects = key, 0, 0, policy.objects[target]
    for i, tid in enumerate(obj.get(key) or ()):
        found = objects.get(tid)
        if found is not None and (tenant is None or found["tenant_id"] == tenant):
            continue
        if shown >= LISTED:
            more += 1
            continue
        shown += 1
        if found is None:
            yield _p(policy, kind, obj, f"{path}[{i}]", no_such(target, tid), "not_found")
        else:
            yield _p(policy, kind, obj, f"{path}[{i}]", f"the {target} belongs to another tenant")
    if more:
        yield Problem(kind, policy.ref(kind, obj), path, f"and {more:,} more of its {target} references fail "
                      "(not listed)", "not_found", more=more)


def _acl_references(policy):
    """Policy groups named by vports and ACLs, and the subnets and groups ACL rules name as their remote: they
    exist and belong to the same tenant."""
    no_such = _NoSuch(policy)

    def same_tenant(kind, obj, path, target_kind, target_id, tenant_id):
        target = policy.get(target_kind, target_id)
        if target is None:
            yield _p(policy, kind, obj, path, no_such(target_kind, target_id), "not_found")
        elif tenant_id is not None and target["tenant_id"] != tenant_id:
            yield _p(policy, kind, obj, path, f"the {target_kind} belongs to another tenant")

    for vport in policy.all("vport"):
        subnet = policy.get("subnet", vport["subnet_id"])
        tenant = subnet["tenant_id"] if subnet else None
        yield from _list_refs(policy, "vport", vport, "policy_groups", "policy_group", tenant, no_such)
    for acl in policy.all("acl"):
        yield from _list_refs(policy, "acl", acl, "policy_groups", "policy_group", acl["tenant_id"], no_such)
        for i, rule in enumerate(acl["rules"]):
            if rule.get("remote_group") is not None:
                yield from same_tenant("acl", acl, f"rules[{i}].remote_group", "policy_group", rule["remote_group"],
                                       acl["tenant_id"])
            if rule.get("remote_subnet") is not None:
                yield from same_tenant("acl", acl, f"rules[{i}].remote_subnet", "subnet", rule["remote_subnet"],
                                       acl["tenant_id"])
                sub = policy.get("subnet", rule["remote_subnet"])
                if sub is not None and not sub["cidr"]:
                    yield _p(policy, "acl", acl, f"rules[{i}].remote_subnet", "the subnet has no cidr")


def _unique_tags(policy):
    seen = {}
    for acl in policy.all("acl"):
        if acl.get("tag") is None:
            continue
        if acl["tag"] in seen:
            yield _p(policy, "acl", acl, "tag", f"tag {acl['tag']} is already used by acl "
                     f"{policy.ref('acl', seen[acl['tag']])!r}", "conflict")
        seen[acl["tag"]] = acl


def _unique_names(policy):
    scopes = {"tenant": lambda o: None, "external_network": lambda o: None, "floating_ip": lambda o: o["tenant_id"],
              "domain": lambda o: o["tenant_id"], "subnet": lambda o: o["tenant_id"],
              "acl": lambda o: o["tenant_id"], "policy_group": lambda o: o["tenant_id"],
              "vport": lambda o: o["subnet_id"]}
    for kind, scope in scopes.items():
        seen = {}
        for obj in policy.all(kind):
            key = (scope(obj), obj["name"])
            if key in seen:
                yield _p(policy, kind, obj, "name", f"{obj['name']!r} is already used by another {kind} here",
                         "conflict")
            seen[key] = obj


def _unique_vnis(policy):
    owners = {}
    for kind, key in (("domain", "l3_vni"), ("subnet", "vni")):
        for obj in policy.all(kind):
            vni = obj[key]
            if vni is None:
                continue
            if vni in owners:
                other_kind, other = owners[vni]
                yield _p(policy, kind, obj, key, f"VNI {vni} is already used by {other_kind} "
                         f"{policy.ref(other_kind, other)!r}", "conflict")
            else:
                owners[vni] = (kind, obj)


def _unique_rds(policy):
    owners = {}
    for kind in ("domain", "subnet"):
        for obj in policy.all(kind):
            if obj["rd"] is None:
                continue
            if obj["rd"] in owners:
                other_kind, other = owners[obj["rd"]]
                yield _p(policy, kind, obj, "rd", f"route distinguisher {obj['rd']} is already used by "
                         f"{other_kind} {policy.ref(other_kind, other)!r}", "conflict")
            else:
                owners[obj["rd"]] = (kind, obj)


def _domain_cidrs(policy):
    """Subnets of one domain may not overlap (they share a routing table). Across tenants they may."""
    by_domain = defaultdict(list)
    for sub in policy.all("subnet"):
        if sub["domain_id"] and sub["cidr"]:
            by_domain[sub["domain_id"]].append(sub)
    for subs in by_domain.values():
        subs.sort(key=lambda s: (ipaddress.IPv4Network(s["cidr"]).network_address, s["name"]))
        for a, b in zip(subs, subs[1:]):
            if ipaddress.IPv4Network(a["cidr"]).overlaps(ipaddress.IPv4Network(b["cidr"])):
                yield _p(policy, "subnet", b, "cidr", f"{b['cidr']} overlaps subnet {a['name']!r} ({a['cidr']}) "
                         "in the same domain", "conflict")


def _vport_addresses(policy):
    macs, ips = {}, {}
    for vport in sorted(policy.all("vport"), key=lambda v: (v["subnet_id"], v["name"])):
        subnet = policy.get("subnet", vport["subnet_id"])
        if subnet is None:
            continue
        mkey = (subnet["id"], vport["mac"])
        if mkey in macs:
            yield _p(policy, "vport", vport, "mac", f"{vport['mac']} is already used by vport "
                     f"{macs[mkey]['name']!r} in this subnet", "conflict")
        macs[mkey] = vport
        yield from _vport_ips(policy, vport, subnet, ips)


def _vport_ips(policy, vport, subnet, seen):
    net = ipaddress.IPv4Network(subnet["cidr"]) if subnet["cidr"] else None
    for i, ip in enumerate(vport["ips"] or []):
        path = f"ips[{i}]"
        addr = ipaddress.IPv4Address(ip)
        if net is None:
            yield _p(policy, "vport", vport, path, "the subnet has no cidr, so its ports have no IPs")
            continue
        if addr not in net:
            yield _p(policy, "vport", vport, path, f"{ip} is outside the subnet's cidr {net}")
        elif addr in (net.network_address, net.broadcast_address):
            yield _p(policy, "vport", vport, path, f"{ip} is the network or broadcast address of {net}")
        elif ip == subnet["gateway"]:
            yield _p(policy, "vport", vport, path, f"{ip} is the subnet's gateway", "conflict")
        elif ip == dhcp_server_ip(subnet):
            yield _p(policy, "vport", vport, path, f"{ip} is reserved for the subnet's DHCP server (the last host "
                     "address of an L2-only subnet without a gateway)", "conflict")
        elif (subnet["id"], ip) in seen:
            yield _p(policy, "vport", vport, path, f"{ip} is already used by vport "
                     f"{seen[(subnet['id'], ip)]['name']!r} in this subnet", "conflict")
        seen[(subnet["id"], ip)] = vport


def _binding_keys(policy):
    seen, static = {}, {}
    for vport in policy.all("vport"):
        key = binding_key(vport)
        if key[0] == "baremetal":  # its MAC, already unique in its subnet
            continue
        if key in seen:
            yield _p(policy, "vport", vport, "binding", f"{key[0]} binding {key[1]!r} is already used by vport "
                     f"{policy.ref('vport', seen[key])!r}", "conflict")
        seen[key] = vport
        skey = esxi_static_key(vport)
        if skey and skey in static:
            yield _p(policy, "vport", vport, "binding", f"host {skey[0]} trunk {skey[1]} vlan {skey[2]} is already "
                     f"bound to vport {policy.ref('vport', static[skey])!r}", "conflict")
        if skey:
            static[skey] = vport


def _static_routes(policy):
    nets = defaultdict(list)
    for sub in policy.all("subnet"):
        if sub["domain_id"] and sub["cidr"]:
            nets[sub["domain_id"]].append(ipaddress.IPv4Network(sub["cidr"]))
    for dom in policy.all("domain"):
        for i, route in enumerate(dom["static_routes"]):
            hop = ipaddress.IPv4Address(route["next_hop"])
            if not any(hop in net for net in nets[dom["id"]]):
                yield _p(policy, "domain", dom, f"static_routes[{i}].next_hop",
                         f"{hop} is not inside any subnet of the domain")
    for sub in policy.all("subnet"):
        if not sub["cidr"]:
            continue
        net = ipaddress.IPv4Network(sub["cidr"])
        for i, route in enumerate(sub["dhcp"]["routes"]):
            if ipaddress.IPv4Address(route["next_hop"]) not in net:
                yield _p(policy, "subnet", sub, f"dhcp.routes[{i}].next_hop", f"must be inside {net}")


def _vtep_bindings(policy):
    seen = {}
    for b in policy.all("vtep_binding"):
        key = (b["switch"], b["port"], b["vlan"])
        if key in seen:
            yield _p(policy, "vtep_binding", b, "vlan", f"port {b['port']} vlan {b['vlan']} of switch "
                     f"{b['switch']} is already bound", "conflict")
        seen[key] = b


# ----------------------------------------------------------------------------------------- allocation

class Allocator:
    """Fills the fields the operator left out. Allocations are written into the object and stored, so
    they never change afterwards; the VNI counter only moves forward so a freed VNI is not reused soon."""

    def __init__(self, counters: dict, asn: int, vni_range: tuple[int, int]):
        self.counters = dict(counters)
        self.asn = asn
        self.low, self.high = vni_range
        self._ips: dict[str, set] = {}

    def _used_ips(self, policy, subnet):
        """Addresses taken in a subnet: by its vports (the policy's index) and by this allocator so far (one
        allocator serves one change)."""
        if subnet["id"] not in self._ips:
            self._ips[subnet["id"]] = _UsedIps(policy.index(), subnet)
        return self._ips[subnet["id"]]

    def fill(self, policy: Policy, kind: str, obj: dict) -> list[Problem]:
        if kind == "domain":
            return self._fill_domain(policy, obj)
        if kind == "subnet":
            return self._fill_vni(policy, obj, "subnet", "vni")
        if kind == "vport":
            return self._fill_ips(policy, obj)
        if kind == "acl":
            return self._fill_tag(policy, obj)
        if kind == "floating_ip":
            problem = extnet.allocate_address(policy, obj, self.counters)
            return [problem] if problem else []
        return []

    def _fill_tag(self, policy, obj):
        """The lowest free ACL tag at or after the counter (wrapping), so tags are reused only late."""
        if obj.get("tag") is not None:
            return []
        used = {a.get("tag") for a in policy.all("acl")}
        start = self.counters.get("acl_tag", 1)
        for step in range(MAX_ACL_TAG):
            tag = 1 + (start - 1 + step) % MAX_ACL_TAG
            if tag not in used:
                obj["tag"] = tag
                self.counters["acl_tag"] = tag + 1
                return []
        return [Problem("acl", policy.ref("acl", obj), "tag", "no free ACL tag left", "exhausted")]

    def _fill_domain(self, policy, obj):
        problems = self._fill_vni(policy, obj, "domain", "l3_vni")
        if obj["gateway_mac"] is None and obj["l3_vni"] is not None:
            v = obj["l3_vni"]
            obj["gateway_mac"] = f"02:ca:00:{v >> 16 & 0xff:02x}:{v >> 8 & 0xff:02x}:{v & 0xff:02x}"
        return problems

    def _fill_vni(self, policy, obj, kind, key):
        if obj[key] is None:
            used = {o["l3_vni"] for o in policy.all("domain")} | {o["vni"] for o in policy.all("subnet")}
            vni = self._next_vni(used)
            if vni is None:
                return [Problem(kind, policy.ref(kind, obj), key, f"no free VNI left in {self.low}-{self.high}",
                                "exhausted")]
            obj[key] = vni
        admin = self.asn if self.asn <= 0xFFFF else self.asn & 0xFFFF
        own = f"{admin}:{obj[key]}"
        if obj["rd"] is None:
            obj["rd"] = own
        for rts in ("import_rts", "export_rts"):
            if obj[rts] is None:
                obj[rts] = [own]
        return []

    def _next_vni(self, used):
        start = self.counters.get("vni", self.low)
        span = self.high - self.low + 1
        for step in range(span):
            vni = self.low + (start - self.low + step) % span
            if vni not in used and vni <= MAX_VNI:
                self.counters["vni"] = vni + 1
                return vni
        return None

    def _fill_ips(self, policy, obj):
        if obj["ips"] is not None:
            return []
        subnet = policy.get("subnet", obj["subnet_id"])
        if subnet is None or not subnet["cidr"]:
            obj["ips"] = []
            return []
        used = self._used_ips(policy, subnet)
        for host in ipaddress.IPv4Network(subnet["cidr"]).hosts():
            if str(host) not in used:
                obj["ips"] = [str(host)]
                used.add(str(host))
                return []
        return [Problem("vport", policy.ref("vport", obj), "ips", f"subnet {subnet['cidr']} has no free address",
                        "exhausted")]


class _UsedIps:
    """Whether an address of a subnet is taken: reserved, held by a vport, or allocated in this change."""

    def __init__(self, index: PolicyIndex, subnet: dict):
        self._index, self._sid = index, subnet["id"]
        self._taken = {subnet["gateway"], dhcp_server_ip(subnet)}

    def __contains__(self, ip: str) -> bool:
        return ip in self._taken or bool(self._index.holders("ip", self._sid, ip))

    def add(self, ip: str) -> None:
        self._taken.add(ip)
