"""The tenancy model, declared once as data.

Each kind (tenant, domain, subnet, vport, acl, policy_group, external_network, floating_ip, vtep_binding) is a
tuple of ``Field`` specs. The same declaration validates REST bodies and YAML documents and generates the
OpenAPI schemas, so the three cannot drift. Stored objects are plain JSON-able dicts with every field present
(``None`` for unset optional fields), plus a server-assigned ``id``.

Cross-object rules (uniqueness, references, overlaps) live in controller/policy.py.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Callable

from controller import fields as f
from controller.fields import Invalid

_MISSING = object()
MAX_DHCP_ROUTES = 16
MAX_ACL_TAG = 2**20 - 1  # 20 bits: the tag is part of conjunction ids (openflow/acl.py)


@dataclass(frozen=True)
class Field:
    name: str
    type: str  # "string" | "integer" | "boolean" | "array" | "object"
    doc: str
    check: Callable[[Any], Any] | None = None
    required: bool = False
    default: Any = None  # for optional fields; callables are called for a fresh value
    nullable: bool = True
    immutable: bool = False  # may not change after creation
    auto: bool = False  # allocated by the controller when absent; never changes once allocated
    items: "Field | None" = None  # for arrays
    fields: tuple["Field", ...] = ()  # for objects
    ref: str | None = None  # the kind this id refers to
    most: tuple[int, str] | None = None  # arrays: at most so many items, and what they are ("rules in one ACL")

    def fresh_default(self):
        return self.default() if callable(self.default) else self.default


@dataclass(frozen=True)
class Problem:
    """One reason an input is refused. ``field`` is a dotted path inside the object ("dhcp.routes[0].prefix")."""

    kind: str
    ref: str  # the object's name path, e.g. "acme/prod/web", or its id
    field: str
    reason: str
    code: str = "invalid"
    also: str = ""  # a second place in the input the problem is about (the first definition of a duplicate)
    more: int = 0  # "and N more" of a list cut short: how many problems it stands for (``listed``)

    def describe(self):
        where = f"{self.kind} {self.ref!r}" if self.ref else self.kind
        text = f"{where}: {self.field}: {self.reason}" if self.field else f"{where}: {self.reason}"
        return f"{text} (first at {self.also})" if self.also else text


MAX_ITEMS = 4096  # items of a list field without a limit of its own: a body of 1,000,000 ids held the hub ~0.5 s
LISTED = 20  # problems one refusal lists (a list field's items, an object's unknown keys): the rest are summed up
SUMMED = 5  # fields whose problems past the first LISTED are summed up one by one ("and N more"), then all together
_INDEX = re.compile(r"\[\d+\]")


class PolicyError(Exception):
    """The input was refused; nothing was changed. Carries the problems found: the first LISTED, then the others
    summed up by field (``listed``): a body of 10,000 bad references listed 10,000 errors."""

    def __init__(self, problems, status=422):
        self.problems = listed(problems)
        self.status = status
        super().__init__("; ".join(p.describe() for p in self.problems))


def listed(problems) -> list[Problem]:
    """The first LISTED problems, then per kind and field (its item indexes left out: "acls", "rules[].remote_group")
    of those left, in order, one "and N more" problem for the first SUMMED fields and one for all the others (its
    object named when they all are one's)."""
    problems = list(problems)
    if len(problems) <= LISTED:
        return problems
    out, left = problems[:LISTED], {}
    for p in problems[LISTED:]:
        field = _INDEX.sub("[]", p.field)
        field = field[:-2] if field.endswith("[]") else field
        key = (p.kind, field)  # (an apply's 2,500 vports with a bad MAC: one field, tenants[]...vports[].mac)
        if key in left:
            entry = left[key]
            entry[1] += p.more or 1
            entry[2] = None
            entry[3] = entry[3] if entry[3] == p.ref else ""
        else:
            left[key] = [p.code, p.more or 1, p, p.ref]  # p: the field's only problem left, as it is
    for (kind, field), (code, count, alone, ref) in list(left.items())[:SUMMED]:
        out.append(alone or Problem(kind, ref, field, f"and {count:,} more problems of this field (not listed)",
                                    code, more=count))
    rest = list(left.items())[SUMMED:]
    if rest:
        count = sum(entry[1] for _, entry in rest)
        refs = {entry[3] for _, entry in rest}
        out.append(Problem(rest[0][0][0], refs.pop() if len(refs) == 1 else "", "", f"and {count:,} more problems "
                           f"with {len(rest):,} other fields (not listed)", rest[0][1][0], more=count))
    return out


def _rt_list(name, doc):
    return Field(name, "array", doc, items=Field("rt", "string", "route target", f.route_target), auto=True)


ROUTE = (
    Field("prefix", "string", "destination prefix", f.ipv4_network, required=True),
    Field("next_hop", "string", "next hop IPv4 address", f.ipv4, required=True),
)

BINDING = (
    Field("flavour", "string", "hypervisor flavour, or baremetal: a server behind a hardware VTEP bound to the "
          "vport's subnet (its MAC and IPs are what Canopy's DHCP and routing use)",
          f.one_of("kvm", "hyperv", "esxi", "baremetal"), required=True),
    Field("iface_id", "string", "kvm: external_ids:iface-id of the tap port (default: the vport name)",
          f.text_upto(255)),
    Field("port_name", "string", "hyperv: OVS port name given with Set-VMNetworkAdapterOVSPort "
          "(at most 48 characters; default: the vport name)", f.text_upto(48)),
    Field("vnic_id", "string", "esxi: the id the vCenter agent writes as canopy-vnic-<vlan> on the trunk "
          "port (default: the vport name)", f.text_upto(255)),
    Field("host", "string", "esxi static binding: the hypervisor's chassis name (system-id)", f.name),
    Field("trunk_port", "string", "esxi static binding: the trunk port on the integration bridge",
          f.text_upto(255)),
    Field("vlan", "integer", "esxi static binding: the vNIC's VLAN on the trunk", f.vlan),
)

DHCP = (
    Field("enabled", "boolean", "serve DHCP on this subnet", f.boolean, default=True, nullable=False),
    Field("dns_servers", "array", "DNS servers (option 6)", items=Field("dns", "string", "IPv4", f.ipv4),
          default=list, nullable=False),
    Field("domain_name", "string", "domain name (option 15)", f.text_upto(253)),
    Field("lease_time", "integer", "lease time in seconds (option 51)", f.int_range(60, 2**31 - 1),
          default=86400, nullable=False),
    Field("mtu", "integer", "interface MTU (option 26); default: underlay MTU minus VXLAN overhead",
          f.int_range(576, 9000)),
    Field("ntp_servers", "array", "NTP servers (option 42)", items=Field("ntp", "string", "IPv4", f.ipv4),
          default=list, nullable=False),
    Field("routes", "array", "classless static routes (option 121)", items=Field("route", "object", "", fields=ROUTE),
          default=list, nullable=False, most=(MAX_DHCP_ROUTES, "routes (a DHCP reply must fit 576 bytes)")),
)

MAX_UPLINKS = 16384  # hypervisors of one external network declared in policy (more may say so in OVSDB)
MAX_ACL_RULES = 1000  # rules of one ACL: each takes one OpenFlow priority in its table (openflow/acl.py)

ACL_RULE = (
    Field("direction", "string", "traffic entering the VM (ingress) or leaving it (egress)",
          f.one_of("ingress", "egress"), required=True),
    Field("action", "string", "allow or deny", f.one_of("allow", "deny"), required=True),
    Field("priority", "integer", "evaluation order inside the ACL, lowest first (absent: 1000; ties: list "
          "order; docs/policy.md)", f.int_range(0, 9999)),
    Field("protocol", "string", "any, icmp, tcp, udp", f.one_of("any", "icmp", "tcp", "udp"),
          default="any", nullable=False),
    Field("remote", "string", "the other end's prefix (default: any)", f.ipv4_network, default="0.0.0.0/0",
          nullable=False),
    Field("remote_subnet", "string", "the other end is any address of this subnet of the tenant (instead of "
          "remote)", f.text),
    Field("remote_group", "string", "the other end is any address of a member of this policy group of the "
          "tenant, as membership changes (instead of remote)", f.text),
    Field("ports", "string", "tcp/udp destination port or range, e.g. 80 or 1000-2000", f.port_range),
    Field("source_ports", "string", "tcp/udp source port or range", f.port_range),
    Field("icmp_type", "integer", "icmp: the ICMP type (default: any)", f.int_range(0, 255)),
    Field("icmp_code", "integer", "icmp: the ICMP code (needs icmp_type; default: any)", f.int_range(0, 255)),
    Field("stateful", "boolean", "allow the return traffic (conntrack)", f.boolean, default=True, nullable=False),
)

UPLINK = (
    Field("chassis", "string", "the hypervisor's chassis name (system-id)", f.name, required=True),
    Field("port", "string", "the port on the integration bridge that reaches the external network (a physical "
          "port, or a patch port to the bridge that holds it)", f.text_upto(255), required=True),
    Field("vlan", "integer", "VLAN of the external network on that port (absent: untagged)", f.vlan),
    Field("ip", "string", "the hypervisor's own address on the external network: its port address translation "
          "hides domains behind it", f.ipv4, required=True),
)

SCHEMA: dict[str, tuple[Field, ...]] = {
    "tenant": (
        Field("name", "string", "tenant (enterprise) name, unique", f.name, required=True),
        Field("description", "string", "free text", f.text, default="", nullable=False),
        Field("project_id", "string", "the OpenStack project this tenant is (X-Tenant-ID of its VMs' metadata "
              "requests; docs/metadata.md)", f.openstack_id),
    ),
    "domain": (
        Field("tenant_id", "string", "owning tenant", f.text, required=True, immutable=True, ref="tenant"),
        Field("name", "string", "domain name, unique in its tenant", f.name, required=True),
        Field("description", "string", "free text", f.text, default="", nullable=False),
        Field("l3_vni", "integer", "L3 VNI for symmetric IRB (allocated when absent)", f.vni, auto=True),
        Field("rd", "string", "route distinguisher (allocated as ASN:L3VNI when absent)", f.route_distinguisher,
              auto=True),
        _rt_list("import_rts", "route targets imported (default: the domain's own)"),
        _rt_list("export_rts", "route targets exported (default: ASN:L3VNI)"),
        Field("gateway_mac", "string", "anycast gateway MAC of the domain (allocated when absent)", f.mac,
              auto=True),
        Field("static_routes", "array", "static routes; next hops must lie in one of the domain's subnets",
              items=Field("route", "object", "", fields=ROUTE), default=list, nullable=False),
        Field("default_acl_action", "string", "what happens to IP traffic of the domain's vports that have no ACL",
              f.one_of("allow", "deny"), default="allow", nullable=False),
        Field("external_network_id", "string", "the external network the domain's traffic leaves by (floating IPs "
              "and underlay translation; docs/external.md)", f.text, ref="external_network"),
        Field("underlay_nat", "boolean", "translate the domain's outbound traffic to destinations outside the "
              "domain behind the hypervisor's address on its external network (port address translation)",
              f.boolean, default=False, nullable=False),
    ),
    "subnet": (
        Field("tenant_id", "string", "owning tenant", f.text, required=True, immutable=True, ref="tenant"),
        Field("domain_id", "string", "routed domain; absent for an L2-only subnet", f.text, immutable=True,
              ref="domain"),
        Field("name", "string", "subnet name, unique in its tenant", f.name, required=True),
        Field("description", "string", "free text", f.text, default="", nullable=False),
        Field("cidr", "string", "IPv4 prefix (required in a domain, optional for L2-only)",
              f.network_upto(30)),
        Field("gateway", "string", "gateway IP inside the CIDR (required in a domain)", f.ipv4),
        Field("vni", "integer", "L2 VNI (allocated when absent)", f.vni, auto=True),
        Field("rd", "string", "route distinguisher (allocated as ASN:VNI when absent)", f.route_distinguisher,
              auto=True),
        _rt_list("import_rts", "route targets imported (default: the subnet's own)"),
        _rt_list("export_rts", "route targets exported (default: ASN:VNI)"),
        Field("dhcp", "object", "DHCP options served by Canopy", fields=DHCP, default=dict, nullable=False),
        Field("gateway_chassis", "array", "VRS chassis (system-id) preferred to answer ARP and DHCP and route for "
              "this subnet's bare-metal servers behind hardware VTEPs, most preferred first; when none of them is "
              "connected, Canopy picks one (docs/vtep.md)",
              items=Field("chassis", "string", "a VRS chassis name", f.name), default=list, nullable=False),
    ),
    "vport": (
        Field("subnet_id", "string", "subnet the port is in", f.text, required=True, immutable=True, ref="subnet"),
        Field("name", "string", "port name, unique in its subnet", f.name, required=True),
        Field("description", "string", "free text", f.text, default="", nullable=False),
        Field("mac", "string", "the VM's MAC address", f.mac, required=True),
        Field("ips", "array", "IPv4 addresses (one is allocated from the subnet when absent)",
              items=Field("ip", "string", "IPv4", f.ipv4), auto=True),
        Field("binding", "object", "how the port is recognised on its hypervisor", fields=BINDING, required=True),
        Field("port_security", "boolean", "drop frames not from the port's own MAC/IPs", f.boolean, default=True,
              nullable=False),
        Field("acls", "array", "ACL policy ids applied to the port (enforced by the dataplane)",
              items=Field("acl", "string", "acl id", f.text, ref="acl"), default=list, nullable=False),
        Field("policy_groups", "array", "policy groups the port is a member of (their ACLs apply to it, and "
              "rules naming them as remote_group match its addresses)",
              items=Field("group", "string", "policy group id", f.text, ref="policy_group"), default=list,
              nullable=False),
        Field("instance_id", "string", "the compute instance (Nova server UUID) using the port: the metadata "
              "service answers the port's requests for it (docs/metadata.md); absent: no metadata", f.uuid),
    ),
    "acl": (
        Field("tenant_id", "string", "owning tenant", f.text, required=True, immutable=True, ref="tenant"),
        Field("name", "string", "ACL name, unique in its tenant", f.name, required=True),
        Field("description", "string", "free text", f.text, default="", nullable=False),
        Field("priority", "integer", "order among the ACLs of one vport, lowest first (ties: by name)",
              f.int_range(0, 9999), default=1000, nullable=False),
        Field("default_action", "string", "what happens to traffic no rule of the vport's ACLs matches (deny "
              "when any of them says deny)", f.one_of("allow", "deny"), default="deny", nullable=False),
        Field("rules", "array", "rules, by priority then list order; the first match wins",
              items=Field("rule", "object", "", fields=ACL_RULE), default=list, nullable=False,
              most=(MAX_ACL_RULES, "rules in one ACL")),
        Field("policy_groups", "array", "policy groups whose members this ACL also applies to",
              items=Field("group", "string", "policy group id", f.text, ref="policy_group"), default=list,
              nullable=False),
        Field("tag", "integer", "the ACL's number in the dataplane (allocated when absent)", f.int_range(1, MAX_ACL_TAG),
              auto=True),
    ),
    "policy_group": (
        Field("tenant_id", "string", "owning tenant", f.text, required=True, immutable=True, ref="tenant"),
        Field("name", "string", "policy group name, unique in its tenant", f.name, required=True),
        Field("description", "string", "free text", f.text, default="", nullable=False),
    ),
    "external_network": (
        Field("name", "string", "external network name, unique", f.name, required=True),
        Field("description", "string", "free text", f.text, default="", nullable=False),
        Field("cidr", "string", "the external network's IPv4 prefix (floating IPs are allocated from it)",
              f.network_upto(30), required=True),
        Field("gateway", "string", "the router on the external network that outbound traffic is sent to", f.ipv4,
              required=True),
        Field("gateway_mac", "string", "the gateway's MAC, a static override (absent: each VRS resolves it by ARP "
              "on its uplink)", f.mac),
        Field("uplinks", "array", "how each hypervisor reaches the network (a hypervisor may instead say so in "
              "OVSDB: docs/external.md)", items=Field("uplink", "object", "", fields=UPLINK), default=list,
              nullable=False, most=(MAX_UPLINKS, "uplinks (one per hypervisor)")),
    ),
    "floating_ip": (
        Field("tenant_id", "string", "owning tenant", f.text, required=True, immutable=True, ref="tenant"),
        Field("name", "string", "floating IP name, unique in its tenant", f.name, required=True),
        Field("description", "string", "free text", f.text, default="", nullable=False),
        Field("external_network_id", "string", "the external network the address belongs to", f.text,
              required=True, immutable=True, ref="external_network"),
        Field("address", "string", "the public address (allocated from the external network when absent)", f.ipv4,
              auto=True, immutable=True),
        Field("vport_id", "string", "the vport it is attached to (absent: free); change it to move the address",
              f.text, ref="vport"),
    ),
    "vtep_binding": (
        Field("switch", "string", "hardware VTEP name (Physical_Switch name)", f.name, required=True),
        Field("port", "string", "physical port name on that switch", f.text_upto(255), required=True),
        Field("vlan", "integer", "VLAN on that port (0 = untagged)", f.int_range(0, 4094),
              required=True),
        Field("subnet_id", "string", "the subnet this VLAN joins", f.text, required=True, ref="subnet"),
    ),
}

KINDS = tuple(SCHEMA)
MANAGED = ("id", "source")  # set by the controller on every stored object: its id and the apply source
PARENT = {"domain": "tenant_id", "subnet": "tenant_id", "vport": "subnet_id", "acl": "tenant_id",
          "policy_group": "tenant_id", "floating_ip": "tenant_id"}


def _problem(kind, ref, path, reason):
    return Problem(kind, ref, path, reason)


def _normalise_value(spec: Field, value, path, problems, kind, ref, held=0):
    """``held``: the length of the list stored in this field (an update), which it may keep over its limit."""
    if value is None:
        if spec.required or not spec.nullable:
            problems.append(_problem(kind, ref, path, "must not be null"))
        return None
    if spec.type == "object":
        if not isinstance(value, dict):
            problems.append(_problem(kind, ref, path, "must be an object"))
            return None
        return normalise_fields(spec.fields, value, path + ".", problems, kind, ref)
    if spec.type == "array":
        if not isinstance(value, list):
            problems.append(_problem(kind, ref, path, "must be a list"))
            return None
        most, what = spec.most or (MAX_ITEMS, "items")
        if len(value) > most and len(value) > held:  # refused before its items are checked, one by one (a list
            # stored before the limit, or a replica's, keeps its length: an update of another field, a document
            # applied again)
            problems.append(_problem(kind, ref, path, f"at most {most:,} {what} ({len(value):,} given)"))
            return None
        return _normalise_items(spec.items, value, path, problems, kind, ref)
    try:
        return spec.check(value) if spec.check else value
    except Invalid as exc:
        problems.append(_problem(kind, ref, path, str(exc)))
        return None


def _normalise_items(spec: Field, value: list, path, problems, kind, ref) -> list:
    """A list's items, each checked against ``spec``; past LISTED problems the others are not checked (the list is
    refused already: bounded work). Plain values (strings, numbers) are checked in a tight loop: a valid item costs
    ~30 bytecodes with its check, its path built only if it fails."""
    out, before, check = [], len(problems), spec.check
    plain = spec.type not in ("object", "array")
    for i, item in enumerate(value):
        if len(problems) - before >= LISTED:
            problems.append(Problem(kind, ref, path, f"and {len(value) - i:,} more items not checked (the first "
                                    f"{LISTED} problems of {path} are listed)", more=len(value) - i))
            break
        if item is None:  # a list holds values; null is never one (it would be stored, then break later)
            problems.append(_problem(kind, ref, f"{path}[{i}]", "must not be null"))
        elif not plain:
            out.append(_normalise_value(spec, item, f"{path}[{i}]", problems, kind, ref))
        elif check is None:
            out.append(item)
        else:
            try:
                out.append(check(item))
            except Invalid as exc:
                problems.append(_problem(kind, ref, f"{path}[{i}]", str(exc)))
                out.append(None)
    return out


def did_you_mean(key, known) -> str:
    """" (did you mean 'listen'?)" for a key one typo away from a known one ("lisen", "neighbours"), else ""."""
    close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def normalise_fields(specs, data, prefix, problems, kind, ref="", stored=None):
    """Check ``data`` against field specs; append Problems; return the normalised dict (defaults filled).
    ``stored``: the object as stored (an update): its lists may keep their length over their limit."""
    known = {s.name for s in specs}
    unknown = [key for key in data if key not in known]
    for key in unknown[:LISTED]:  # each costs a close-match search: 10,000 unknown keys were ~0.2 s of the hub
        problems.append(_problem(kind, ref, prefix + str(key), "unknown field" + did_you_mean(key, known)))
    if len(unknown) > LISTED:
        problems.append(Problem(kind, ref, prefix.rstrip(".") if prefix else "",
                                f"and {len(unknown) - LISTED:,} more unknown fields (not listed)",
                                more=len(unknown) - LISTED))
    out = {}
    for spec in specs:
        path = prefix + spec.name
        if spec.name not in data:
            if spec.required:
                problems.append(_problem(kind, ref, path, "is required"))
            default = spec.fresh_default()
            if spec.type == "object" and default == {}:  # an absent sub-object gets its own defaults
                default = normalise_fields(spec.fields, {}, path + ".", problems, kind, ref)
            out[spec.name] = default
            continue
        held = stored.get(spec.name) if stored is not None and spec.type == "array" else None
        out[spec.name] = _normalise_value(spec, data[spec.name], path, problems, kind, ref,
                                          len(held) if isinstance(held, list) else 0)
    return out


def normalise(kind: str, data, current: dict | None = None, ref: str = "", stored: dict | None = None) -> dict:
    """Validate one object's own fields and return its full normalised form.

    ``current`` is the stored object for an update: fields absent from ``data`` keep their current
    value (merge semantics), immutable fields may not change, and auto fields keep their allocation.
    Raises PolicyError listing every problem; returns a new dict (with ``id`` when ``current`` has one).
    ``stored`` (by default ``current``): the object as stored, whose list fields may keep their length over their
    limit (MAX_ITEMS, ``Field.most``): a limit refuses a list that grows past it, never what is held already.
    """
    if not isinstance(data, dict):
        raise PolicyError([Problem(kind, ref, "", "the body must be a JSON object")])
    problems: list[Problem] = []
    for key in MANAGED:
        if key in data and (current is None or data[key] != current.get(key)):
            problems.append(Problem(kind, ref, key, "is set by the controller and cannot be written"))
    data = {k: v for k, v in data.items() if k not in MANAGED}
    if current is not None:
        problems.extend(immutable_problems(kind, data, current, ref))
        merged = {k: v for k, v in current.items() if k not in MANAGED}
        merged.update(data)
        data = merged
    obj = normalise_fields(SCHEMA[kind], data, "", problems, kind, ref, current if stored is None else stored)
    if not problems:  # rules across fields only make sense once each field is valid
        problems.extend(_object_rules(kind, obj, ref))
    if problems:
        raise PolicyError(problems)
    for key in MANAGED:
        if current is not None and key in current:
            obj[key] = current[key]
    return obj


def immutable_problems(kind: str, data: dict, current: dict, ref: str = "") -> list[Problem]:
    """The fields declared ``immutable`` that ``data`` gives a value other than the stored object ``current``'s:
    the one rule for an update, of a REST write (normalise) and of a replicated put (controller/replicacheck.py)."""
    return [Problem(kind, ref, spec.name, "cannot be changed after creation") for spec in SCHEMA[kind]
            if spec.immutable and spec.name in data and data[spec.name] != current.get(spec.name)]


def _object_rules(kind, obj, ref):
    """Rules that look at several fields of one object."""
    rule = _OBJECT_RULES.get(kind)
    return [Problem(kind, ref, path, reason) for path, reason in rule(obj)] if rule else []


def _subnet_rules(obj):
    import ipaddress

    if obj["domain_id"] and not obj["cidr"]:
        yield "cidr", "is required for a subnet in a domain"
    if obj["domain_id"] and obj["cidr"] and not obj["gateway"]:
        yield "gateway", "is required for a subnet in a domain"
    if obj["gateway"] and not obj["cidr"]:
        yield "gateway", "needs a cidr"
    if obj["cidr"] and obj["gateway"]:
        net = ipaddress.IPv4Network(obj["cidr"])
        gw = ipaddress.IPv4Address(obj["gateway"])
        if gw not in net:
            yield "gateway", f"{gw} is outside the subnet's cidr {net}"
        elif gw in (net.network_address, net.broadcast_address):
            yield "gateway", f"{gw} is the network or broadcast address of {net}"
    if obj["cidr"] is None and (obj["dhcp"] or {}).get("routes"):
        yield "dhcp.routes", "needs a cidr"
    if len((obj["dhcp"] or {}).get("routes") or ()) > MAX_DHCP_ROUTES:
        yield "dhcp.routes", f"at most {MAX_DHCP_ROUTES} routes (a DHCP reply must fit 576 bytes)"


def _vport_rules(obj):
    binding = obj["binding"] or {}
    flavour = binding.get("flavour")
    own = {"kvm": {"iface_id"}, "hyperv": {"port_name"}, "esxi": {"vnic_id", "host", "trunk_port", "vlan"},
           "baremetal": set()}
    for key in ("iface_id", "port_name", "vnic_id", "host", "trunk_port", "vlan"):
        if flavour in own and binding.get(key) is not None and key not in own[flavour]:
            yield f"binding.{key}", f"does not apply to flavour {flavour}"
    if flavour == "esxi":
        static = [binding.get(k) is not None for k in ("host", "trunk_port", "vlan")]
        if any(static) and not all(static):
            yield "binding", "an esxi static binding needs host, trunk_port and vlan together"
    if len(obj["ips"] or []) != len(set(obj["ips"] or [])):
        yield "ips", "lists the same address twice"
    if len(obj["policy_groups"] or []) != len(set(obj["policy_groups"] or [])):
        yield "policy_groups", "lists the same group twice"


def _acl_rules(obj):
    rules = obj["rules"] or []
    if len(rules) > MAX_ACL_RULES:
        yield "rules", f"at most {MAX_ACL_RULES} rules in one ACL"
    for i, rule in enumerate(rules):
        yield from ((f"rules[{i}].{field}", reason) for field, reason in _acl_rule(rule or {}))
    if len(obj["policy_groups"] or []) != len(set(obj["policy_groups"] or [])):
        yield "policy_groups", "lists the same group twice"


def _acl_rule(rule):
    proto = rule.get("protocol")
    for key in ("ports", "source_ports"):
        if rule.get(key) and proto not in ("tcp", "udp"):
            yield key, "needs protocol tcp or udp"
    for key in ("icmp_type", "icmp_code"):
        if rule.get(key) is not None and proto != "icmp":
            yield key, "needs protocol icmp"
    if rule.get("icmp_code") is not None and rule.get("icmp_type") is None:
        yield "icmp_code", "needs icmp_type"
    remotes = [k for k in ("remote_subnet", "remote_group") if rule.get(k) is not None]
    if rule.get("remote") != "0.0.0.0/0":
        remotes.insert(0, "remote")
    if len(remotes) > 1:
        yield remotes[1], f"give only one of remote, remote_subnet and remote_group (also {remotes[0]})"


def _domain_rules(obj):
    if obj["underlay_nat"] and not obj["external_network_id"]:
        yield "underlay_nat", "needs external_network_id (the network whose uplinks translate)"


def _external_network_rules(obj):
    import ipaddress

    net = ipaddress.IPv4Network(obj["cidr"])
    reserved = {str(net.network_address): "network", str(net.broadcast_address): "broadcast"}
    gateway = obj["gateway"]
    if ipaddress.IPv4Address(gateway) not in net:
        yield "gateway", f"{gateway} is outside the network's cidr {net}"
    elif gateway in reserved:
        yield "gateway", f"{gateway} is the {reserved[gateway]} address of {net}"
    chassis, ips = {}, {gateway: "the gateway"}
    for i, up in enumerate(obj["uplinks"]):
        if up["chassis"] in chassis:
            yield f"uplinks[{i}].chassis", f"{up['chassis']} already has an uplink (uplinks[{chassis[up['chassis']]}])"
        chassis.setdefault(up["chassis"], i)
        ip = up["ip"]
        if ipaddress.IPv4Address(ip) not in net:
            yield f"uplinks[{i}].ip", f"{ip} is outside the network's cidr {net}"
        elif ip in reserved:
            yield f"uplinks[{i}].ip", f"{ip} is the {reserved[ip]} address of {net}"
        elif ip in ips:
            yield f"uplinks[{i}].ip", f"{ip} is already {ips[ip]}"
        ips.setdefault(ip, f"the address of uplinks[{i}]")


_OBJECT_RULES = {"subnet": _subnet_rules, "vport": _vport_rules, "acl": _acl_rules, "domain": _domain_rules,
                 "external_network": _external_network_rules}


def binding_key(vport: dict) -> tuple:
    """What identifies a vport on a hypervisor; unique across all vports. A bare-metal server is known
    by its MAC in its subnet (unique there already)."""
    b = vport["binding"]
    flavour = b["flavour"]
    if flavour == "baremetal":
        return ("baremetal", vport.get("subnet_id"), vport["mac"])
    if flavour == "kvm":
        return ("kvm", b.get("iface_id") or vport["name"])
    if flavour == "hyperv":
        return ("hyperv", b.get("port_name") or vport["name"])
    return ("esxi", b.get("vnic_id") or vport["name"])


def esxi_static_key(vport: dict) -> tuple | None:
    b = vport["binding"]
    if b["flavour"] == "esxi" and b.get("host"):
        return (b["host"], b["trunk_port"], b["vlan"])
    return None
