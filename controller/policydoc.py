"""Declarative policy documents: what ``canopy check`` and ``canopy apply`` read.

A document nests objects by name (see config/examples/demo.yaml)::

    source: demo            # optional; names the set of objects this document manages (default: file name)
    tenants:
      - name: acme
        domains:
          - name: prod
            subnets:
              - name: web
                cidr: 10.0.1.0/24
                gateway: 10.0.1.1
                vports: [{name: vm1, mac: "02:00:00:00:00:01", binding: {flavour: kvm}}]
        subnets: [...]      # L2-only subnets of the tenant
        acls: [...]         # rules name remote_group / remote_subnet, and policy_groups, by name in the tenant
        policy_groups: [{name: web}]   # vports join with policy_groups: [web]
        floating_ips:       # external_network by name, vport as subnet/vport of the tenant (absent: free)
          - {name: web1, external_network: public, vport: web/vm1}
    external_networks:
      - {name: public, cidr: 203.0.113.0/24, gateway: 203.0.113.1,
         uplinks: [{chassis: hv1, port: uplink, ip: 203.0.113.11}]}   # domains name it: external_network: public
    vtep_bindings:
      - {switch: tor1, port: p1, vlan: 100, subnet: acme/web}

``plan()`` turns a document into the changes that make the stored policy match it: objects are matched
by name path, absent optional fields return to their defaults, allocations are kept, and objects that
an earlier apply of the same source created but the document no longer lists are deleted when
``prune`` is set. Applying the same document twice plans nothing.

A document owns every object it lists. So it is refused when it names one object twice (same kind, same
name in the same parent: the second would silently replace the first), and when it lists an object that
another source (or a REST create) owns, unless ``adopt`` is set: the object then changes hands. Each
update and adoption in the plan carries its field-level diff.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from controller import policy as pol
from controller.model import MANAGED, SCHEMA, PolicyError, Problem, did_you_mean, normalise
from controller.pacer import NEVER, Pacer
from controller.store import Change
from controller.yamldoc import join

DOC_KEYS = {"source", "tenants", "vtep_bindings", "external_networks"}
NESTED = {"tenant": {"domains", "subnets", "acls", "policy_groups", "floating_ips"}, "domain": {"subnets"},
          "subnet": {"vports"}}
TENANT_LEAVES = (("acl", "acls"), ("policy_group", "policy_groups"), ("floating_ip", "floating_ips"))  # (kind, key)
# of a tenant's objects that hold no others, in the order a document's are read
ORDER = ("external_network", "tenant", "policy_group", "domain", "subnet", "acl", "vport", "floating_ip",
         "vtep_binding")
PARENT_KIND = {"domain": "tenant", "subnet": "tenant", "acl": "tenant", "policy_group": "tenant",
               "vport": "subnet", "floating_ip": "tenant"}  # whose names scope it
REF_FIELDS = {"tenant_id": "tenant", "domain_id": "domain", "subnet_id": "subnet",
              "external_network_id": "external_network", "vport_id": "vport"}  # shown by name in diffs
DOC_NAMES = {("domain", "external_network_id"): "external_network", ("floating_ip", "external_network_id"):
             "external_network", ("floating_ip", "vport_id"): "vport"}  # what a document calls a reference


@dataclass
class Desired:
    kind: str
    ref: str  # name path, same as Policy.ref()
    path: str  # where in the document ("tenants[0].domains[1]")
    body: dict  # model fields; references still by name (resolved in plan())
    parent_ref: str | None = None


@dataclass
class Plan:
    source: str
    policy: pol.Policy  # the candidate policy after the plan
    changes: list[Change] = field(default_factory=list)
    summary: list[dict] = field(default_factory=list)  # {"op", "kind", "ref", "id"[, "diff", "from_source"]}
    paths: dict[tuple[str, str], str] = field(default_factory=dict)  # (kind, ref) -> document path


def read(data, default_source: str, pacer: Pacer = NEVER) -> tuple[str, list[Desired], list[Problem]]:
    """Flatten a document into Desired objects (parents first). Shape problems carry document paths. ``pacer`` is
    ticked per vport read and per object checked for duplicates (reads only ``data``)."""
    problems: list[Problem] = []
    if not isinstance(data, dict):
        return default_source, [], [Problem("document", "", "", "must be a mapping with 'tenants'")]
    settings_file = _settings_file(data)
    if settings_file:
        return default_source, [], [Problem("document", "", "", settings_file)]
    for key in data:
        if key not in DOC_KEYS:
            problems.append(Problem("document", "", str(key), f"unknown top-level key; expected {sorted(DOC_KEYS)}"
                                    + did_you_mean(key, DOC_KEYS)))
    source = data.get("source", default_source)
    if not isinstance(source, str) or not source:
        problems.append(Problem("document", "", "source", "must be a non-empty string"))
        source = default_source
    out: list[Desired] = []
    for i, net in enumerate(_list(data, "external_networks", "", problems)):
        path = join("external_networks", i)
        if _is_mapping(net, path, problems):
            out.append(Desired("external_network", _ref(net, path), path, dict(net)))
    for i, tenant in enumerate(_list(data, "tenants", "", problems)):
        _read_tenant(tenant, join("tenants", i), out, problems, pacer)
    for i, binding in enumerate(_list(data, "vtep_bindings", "", problems)):
        path = join("vtep_bindings", i)
        if _is_mapping(binding, path, problems):
            out.append(Desired("vtep_binding", _binding_ref(binding, path), path, dict(binding)))
    problems.extend(_duplicates(out, pacer))
    out.sort(key=lambda d: ORDER.index(d.kind))
    return source, out, problems


def _settings_file(data: dict) -> str | None:
    """The likely mistake of giving the controller's settings file where a policy document goes: one problem that
    says so (instead of one "unknown top-level key" per section) naming the sections it has, or None. A mapping
    mostly of other keys is not called one (one of its keys a section's name is no sign)."""
    if not data or any(key in DOC_KEYS for key in data):
        return None
    from controller.settings import SETTINGS  # only here: the settings do not belong to the documents' model

    names = {s.name for s in SETTINGS}
    found = [str(key) for key in data if key in names]  # named, not the other keys (they may be anything)
    if 2 * len(found) < len(data):  # mostly other keys: the usual errors, one per key
        return None
    return ("this is a settings file of the controller (" + ", ".join(found[:3]) + "), not a policy "
            "document: check it with 'canopy check-settings FILE' and start the controller with 'canopy run --config "
            "FILE'; a policy document lists tenants (config/examples/demo.yaml)")


def _read_tenant(tenant, path, out, problems, pacer):
    if not _is_mapping(tenant, path, problems):
        return
    ref = _ref(tenant, path)
    out.append(Desired("tenant", ref, path, _own_fields("tenant", tenant)))
    for kind, key in TENANT_LEAVES:
        for i, obj in enumerate(_list(tenant, key, path, problems)):
            opath = join(join(path, key), i)
            if _is_mapping(obj, opath, problems):
                out.append(Desired(kind, _ref(obj, opath, ref), opath, dict(obj), ref))
    for i, dom in enumerate(_list(tenant, "domains", path, problems)):
        dpath = join(join(path, "domains"), i)
        if not _is_mapping(dom, dpath, problems):
            continue
        dref = _ref(dom, dpath, ref)
        out.append(Desired("domain", dref, dpath, _own_fields("domain", dom), ref))
        for j, sub in enumerate(_list(dom, "subnets", dpath, problems)):
            _read_subnet(sub, join(join(dpath, "subnets"), j), ref, dref, out, problems, pacer)
    for i, sub in enumerate(_list(tenant, "subnets", path, problems)):
        _read_subnet(sub, join(join(path, "subnets"), i), ref, None, out, problems, pacer)


def _read_subnet(sub, path, tenant_ref, domain_ref, out, problems, pacer):
    if not _is_mapping(sub, path, problems):
        return
    sref = _ref(sub, path, tenant_ref)
    body = _own_fields("subnet", sub)
    body["domain_id"] = domain_ref  # resolved to an id in plan()
    out.append(Desired("subnet", sref, path, body, tenant_ref))
    for i, vport in enumerate(_list(sub, "vports", path, problems)):
        pacer.tick()
        vpath = join(join(path, "vports"), i)
        if _is_mapping(vport, vpath, problems):
            out.append(Desired("vport", _ref(vport, vpath, sref), vpath, dict(vport), sref))


def _ref(obj: dict, path: str, parent_ref: str | None = None) -> str:
    """The object's name path, as Policy.ref() makes it. An object without a string name is known by its place in
    the document instead ("tenants[0]"; no name can look like that, controller/fields.py): its problems then name
    that place, not "None", and two unnamed objects never share a ref (nor one problem's place)."""
    name = obj.get("name")
    if not isinstance(name, str):
        return path
    return name if parent_ref is None else f"{parent_ref}/{name}"


def _binding_ref(binding: dict, path: str) -> str:
    """A vtep binding's switch/port/vlan, as Policy.ref() makes it; its place in the document when one is missing."""
    switch, port, vlan = binding.get("switch"), binding.get("port"), binding.get("vlan")
    if not isinstance(switch, str) or not isinstance(port, str) or not isinstance(vlan, int):
        return path
    return f"{switch}/{port}/{vlan}"


def unnamed(kind: str, ref: str, path: str) -> bool:
    """Whether a Desired ref is a place in the document (the object, or a parent, has no usable name). No name can
    hold "[" (controller/fields.py), but a vtep binding's port can ("eth[1]"): a binding is known by its place only
    when its ref is its path."""
    return ref == path if kind == "vtep_binding" else "[" in ref


def named(desired):
    """The Desired objects (in document order, parents first) whose name path is real: objects without a
    string name, or under a parent without one, are left to the field checks."""
    seen = set()
    for d in desired:
        if d.kind != "vtep_binding":
            parent = (PARENT_KIND[d.kind], d.parent_ref) if d.kind in PARENT_KIND else None
            if not isinstance(d.body.get("name"), str) or (parent is not None and parent not in seen):
                continue
            seen.add((d.kind, d.ref))
        yield d


def _duplicates(desired, pacer: Pacer = NEVER):
    """Problems for every object defined a second time in the document."""
    first, problems = {}, []
    for d in named(desired):
        pacer.tick()
        key = (d.kind, d.ref)
        if key not in first:
            first[key] = d
            continue
        problems.append(Problem(d.kind, d.ref, name_path(d), f"{_scope_text(d)}; each object may appear once "
                                "(a second definition would replace the first)", "duplicate",
                                also=name_path(first[key])))
    return problems


def name_path(d: Desired) -> str:
    """Where the object's name is in the document (a vtep binding: the entry itself)."""
    return d.path if d.kind == "vtep_binding" else join(d.path, "name")


def _scope_text(d: Desired) -> str:
    if d.kind == "vtep_binding":
        return f"switch {d.body.get('switch')!r} port {d.body.get('port')!r} vlan {d.body.get('vlan')!r} is bound twice"
    where = f" in {PARENT_KIND[d.kind]} {d.parent_ref!r}" if d.kind in PARENT_KIND else ""
    return f"{d.kind} name {d.body['name']!r} is used twice{where}"


def _own_fields(kind, data):
    return {k: v for k, v in data.items() if k not in NESTED.get(kind, ())}


def _list(data, key, path, problems):
    value = data.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(Problem("document", "", join(path, key), "must be a list"))
        return []
    return value


def _is_mapping(value, path, problems):
    if not isinstance(value, dict):
        problems.append(Problem("document", "", path, "must be a mapping"))
        return False
    return True


# ---------------------------------------------------------------------------------------------- plan

def plan(current: pol.Policy, data, default_source: str, allocator: pol.Allocator, prune=False,
         adopt=False, pacer: Pacer = NEVER) -> Plan:
    """The changes that make ``current`` match the document. Raises PolicyError (problems carry document
    paths in ``field``) and leaves ``current`` untouched. ``adopt``: take over objects another source (or
    a REST create) owns instead of refusing them. ``pacer`` (controller/pacer.py) is ticked per object placed,
    allocated and checked: an apply of 10,000 vports gives the event loop turns (the caller keeps other writes
    out meanwhile; ``current`` is never changed, so readers are not disturbed)."""
    source, desired, problems = read(data, default_source, pacer)
    if problems:
        raise PolicyError(problems)
    result = Plan(source, current.copy())
    cand = result.policy
    index = {kind: {} for kind in ORDER}
    for kind in ORDER:
        for obj in cand.all(kind):
            pacer.tick()
            index[kind][cand.ref(kind, obj)] = obj
    created, failed = [], set()
    for d in desired:
        pacer.tick()
        result.paths[(d.kind, d.ref)] = d.path
        body = _resolve_refs(d, index, failed, problems)
        if body is None:  # a parent was refused already; its problems say why
            failed.add((d.kind, d.ref))
            continue
        place_problems = _place(d, body, index, source, result, created, adopt)
        if place_problems:
            failed.add((d.kind, d.ref))
        problems.extend(place_problems)
    for kind, obj in created:  # allocate once every explicit value in the document is known
        pacer.tick()
        problems.extend(allocator.fill(cand, kind, obj))
        cand.put(kind, obj)  # again: what was allocated is indexed too
    if prune:
        problems.extend(_prune(result, {(d.kind, d.ref) for d in desired}, source))
    problems.extend(pol.check_changes(cand, [(c.kind, c.id) for c in result.changes], pacer))
    if problems:
        raise PolicyError(_without_echoes([_to_doc_path(p, result.paths) for p in problems]))
    return result


def _without_echoes(problems: list[Problem]) -> list[Problem]:
    """The problems, less the echo of a reference not found: its id is left empty, so the field check says again, at
    the same place, that it "must not be null" (an operator read two problems for one misspelt name)."""
    not_found = {p.field for p in problems if p.code == "not_found"}
    return [p for p in problems if not (p.reason == "must not be null" and p.field in not_found)]


def _resolve_refs(d: Desired, index, failed, problems):
    """The body with name references replaced by ids; None when a referenced object was itself refused."""
    body = {k: v for k, v in d.body.items() if k not in ("subnet",)} if d.kind == "vtep_binding" else dict(d.body)
    blocked = []

    def lookup(kind, ref, field_name):
        obj = index[kind].get(ref)
        if (kind, ref) in failed:
            blocked.append(ref)
        elif obj is None:
            problems.append(Problem("document", "", join(d.path, field_name), f"no {kind} named {ref!r}", "not_found"))
        return obj["id"] if obj else None

    if d.kind in ("domain", "subnet", "acl", "policy_group", "floating_ip"):
        body["tenant_id"] = lookup("tenant", d.parent_ref, "name")
    if d.kind in ("domain", "floating_ip"):
        _resolve_external_names(d, body, lookup)
    if d.kind == "acl":
        _resolve_acl_names(body, d.parent_ref, lookup)
    if d.kind == "subnet" and body.get("domain_id"):
        body["domain_id"] = lookup("domain", body["domain_id"], "name")
    if d.kind == "vport":
        body["subnet_id"] = lookup("subnet", d.parent_ref, "name")
        tenant_ref = d.parent_ref.split("/")[0]
        for key, kind in (("acls", "acl"), ("policy_groups", "policy_group")):
            names = body.get(key, [])
            if isinstance(names, list):
                body[key] = [lookup(kind, f"{tenant_ref}/{a}", f"{key}[{i}]") if isinstance(a, str) else a
                             for i, a in enumerate(names)]
    if d.kind == "vtep_binding":
        ref = d.body.get("subnet")
        if not isinstance(ref, str):
            problems.append(Problem("document", "", join(d.path, "subnet"), "is required: the subnet as "
                                    "tenant/subnet"))
        else:
            body["subnet_id"] = lookup("subnet", ref, "subnet")
    return None if blocked else body


def _resolve_external_names(d, body, lookup):
    """A domain's or floating IP's external_network (by name) and a floating IP's vport (as subnet/vport in the
    tenant), as ids. Absent: none."""
    for (kind, key), name in DOC_NAMES.items():
        if kind != d.kind or name not in body:
            continue
        value = body.pop(name)
        if value is None or not isinstance(value, str):
            body[key] = value  # null: none; another type: the field check names it
        elif name == "vport":
            body[key] = lookup("vport", f"{d.parent_ref}/{value}", name)
        else:
            body[key] = lookup(name, value, name)


def _resolve_acl_names(body, tenant_ref, lookup):
    """An ACL's policy_groups and its rules' remote_group / remote_subnet, named in the tenant, as ids."""
    groups = body.get("policy_groups", [])
    if isinstance(groups, list):
        body["policy_groups"] = [lookup("policy_group", f"{tenant_ref}/{g}", f"policy_groups[{i}]")
                                 if isinstance(g, str) else g for i, g in enumerate(groups)]
    rules = body.get("rules")
    if not isinstance(rules, list):
        return
    body["rules"] = [dict(r) if isinstance(r, dict) else r for r in rules]
    for i, rule in enumerate(body["rules"]):
        if not isinstance(rule, dict):
            continue
        for key, kind in (("remote_group", "policy_group"), ("remote_subnet", "subnet")):
            if isinstance(rule.get(key), str):
                rule[key] = lookup(kind, f"{tenant_ref}/{rule[key]}", f"rules[{i}].{key}")


def _place(d: Desired, body, index, source, result, created, adopt):
    """Create, update or adopt one object in the candidate; returns problems."""
    cand = result.policy
    existing = index[d.kind].get(d.ref)
    prior = existing.get("source") if existing is not None else None
    adopting = existing is not None and prior != source
    if adopting and not adopt:
        return [Problem(d.kind, d.ref, "", f"is managed by {_owner(prior)}, not by this document's source "
                        f"{source!r}; apply with --adopt (REST: \"adopt\": true) to take it over", "source_conflict")]
    try:
        if existing is None:
            obj = normalise(d.kind, body, ref=d.ref)
            obj["id"] = str(uuid.uuid4())
        else:
            keep = {s.name: existing[s.name] for s in SCHEMA[d.kind] if s.auto and s.name not in body}
            obj = normalise(d.kind, {**body, **keep}, current={"id": existing["id"], **{
                s.name: existing[s.name] for s in SCHEMA[d.kind] if s.immutable}}, ref=d.ref, stored=existing)
    except PolicyError as exc:
        return [Problem(p.kind, d.ref, p.field, p.reason, p.code, more=p.more) for p in exc.problems]
    obj["source"] = source
    ref = d.ref
    if existing is not None and existing == obj:
        index[d.kind][ref] = obj
        return []
    if existing is None:
        created.append((d.kind, obj))
    cand.put(d.kind, obj)
    index[d.kind][ref] = obj
    result.changes.append(Change(d.kind, obj["id"], "put", obj))
    entry = {"op": "create", "kind": d.kind, "ref": ref, "id": obj["id"]}
    if existing is not None:
        entry.update(op="adopt" if adopting else "update", diff=field_diff(existing, obj, cand))
        if adopting:
            entry["from_source"] = prior
    result.summary.append(entry)
    return []


def _owner(source) -> str:
    return "the REST API (created there, no source)" if source is None else f"source {source!r}"


def field_diff(old: dict, new: dict, policy: pol.Policy) -> list[dict]:
    """[{"field", "old", "new"}] for every field (dotted inside sub-objects) that differs; references by name."""
    out: list[dict] = []
    _diff_into(out, "", old, new, policy)
    return out


def _diff_into(out, prefix, old, new, policy):
    for key in list(new) + [k for k in old if k not in new]:
        if key in MANAGED and not prefix:
            continue
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        path = join(prefix, key)
        if isinstance(a, dict) and isinstance(b, dict):
            _diff_into(out, path, a, b, policy)
        else:
            out.append({"field": path, "old": _shown(key, a, policy), "new": _shown(key, b, policy)})


def _shown(key, value, policy):
    """A value as the operator wrote it: ids of referenced objects become their name paths."""
    def name(kind, oid):
        obj = policy.get(kind, oid) if isinstance(oid, str) else None
        return policy.ref(kind, obj) if obj is not None else oid

    if key in REF_FIELDS:
        return name(REF_FIELDS[key], value)
    if key in ("acls", "policy_groups") and isinstance(value, list):
        return [name("acl" if key == "acls" else "policy_group", a) for a in value]
    return value


def _prune(result, keep, source):
    """Delete what this source created earlier and the document no longer has, children first."""
    cand = result.policy
    problems = []
    for kind in reversed(ORDER):
        for obj in list(cand.all(kind)):
            ref = cand.ref(kind, obj)
            if obj.get("source") != source or (kind, ref) in keep:
                continue
            blockers = [(k, c) for k, c in cand.children(kind, obj["id"]) if c.get("source") != source]
            if blockers:
                k, c = blockers[0]
                problems.append(Problem(kind, ref, "", f"cannot prune: {k} {cand.ref(k, c)!r} (not managed by "
                                        f"{source!r}) still depends on it", "conflict"))
                continue
            cand.remove(kind, obj["id"])
            result.changes.append(Change(kind, obj["id"], "delete", None))
            result.summary.append({"op": "delete", "kind": kind, "ref": ref, "id": obj["id"]})
    return problems


def _to_doc_path(p: Problem, paths) -> Problem:
    """Point a problem at its place in the document when the object came from it."""
    if p.kind == "document":
        return p
    base = paths.get((p.kind, p.ref))
    if base is None:
        return p
    ref = "" if unnamed(p.kind, p.ref, base) else p.ref  # no name: the field's place in the document says which object
    fld, reason = "subnet" if (p.kind == "vtep_binding" and p.field == "subnet_id") else p.field, p.reason
    if p.kind == "subnet" and fld == "domain_id":  # no such key in a document: the domain the subnet is placed under
        fld, reason = "", f"domain_id (the domain it is placed under): {reason}"
    fld = DOC_NAMES.get((p.kind, fld), fld)
    if reason == "unknown field" and p.kind in NESTED:  # a document nests objects by these names too ("subnet:")
        reason += did_you_mean(fld, NESTED[p.kind])
    return Problem(p.kind, ref, join(base, fld) if fld else base, reason, p.code)
