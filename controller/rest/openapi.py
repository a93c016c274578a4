"""OpenAPI 3.0 document built from the REST route table and the model schema (never written by hand)."""

from __future__ import annotations

import re

from controller import __version__
from controller.model import SCHEMA, Field
from controller.rest.api import COLLECTIONS

_ERROR_CODES = {
    "400": "malformed request (bad JSON, bad query parameter)",
    "401": "missing or invalid bearer token",
    "404": "no such object or endpoint",
    "405": "method not allowed on this path",
    "409": "conflict with existing objects (duplicate, dependents)",
    "413": "body too large",
    "415": "body is not application/json",
    "422": "validation failed; error.field names the field",
}
_WRITE_ERROR_CODES = {"403": "a write with the read-only token (rest.read_token)"}


def _field_schema(spec: Field, for_write: bool) -> dict:
    if spec.type == "object":
        out = _object_schema(spec.fields, for_write, partial=False)
    elif spec.type == "array":
        out = {"type": "array", "items": _field_schema(spec.items, for_write)}
    else:
        out = {"type": spec.type, **getattr(spec.check, "schema", {})}  # bounds the checker enforces
        choices = getattr(spec.check, "choices", None)
        if choices:
            out["enum"] = list(choices)
    if spec.doc:
        out["description"] = spec.doc + (" (allocated when absent; never changes once allocated)" if spec.auto else "")
    if spec.nullable and not spec.required:
        out["nullable"] = True
    if spec.immutable:
        out["description"] = out.get("description", "") + " (cannot change after creation)"
    return out


def _object_schema(specs, for_write, partial):
    schema = {"type": "object", "additionalProperties": False,
              "properties": {s.name: _field_schema(s, for_write) for s in specs}}
    required = [s.name for s in specs if s.required and not partial]
    if required:
        schema["required"] = required
    return schema


def _kind_schemas(kind):
    specs = SCHEMA[kind]
    out = _object_schema(specs, False, partial=False)
    out["additionalProperties"] = True
    out["properties"] = dict(out["properties"], id={"type": "string", "description": "assigned by the controller"},
                             ref={"type": "string", "description": "readable name path"},
                             source={"type": "string", "nullable": True,
                                     "description": "the apply source that manages it, if any"})
    if kind == "vport":
        out["properties"]["status"] = {"type": "string", "enum": ["bound", "unbound", "mac_mismatch"],
                                       "description": "mac_mismatch: the port is there but the hypervisor "
                                       "reports another MAC for the VM (see mac_mismatch); it is not programmed"}
        out["properties"]["mac_mismatch"] = {"type": "object", "nullable": True, "description": "with status "
                                             "mac_mismatch: {policy, hypervisor} MACs"}
        out["properties"]["location"] = {"type": "object", "nullable": True,
                                         "description": "where the port is attached, when it is (a baremetal "
                                         "vport: the first of learnt_on)"}
        out["properties"]["learnt_on"] = {"type": "array", "items": {"type": "object"}, "description": "a "
                                          "baremetal vport only: each hardware VTEP reporting its MAC in its "
                                          "subnet's VNI (vtep, port, vlan, ports); two or more are a conflict"}
        out["properties"]["migration"] = {"type": "object", "nullable": True, "description": "a live migration in "
                                          "flight: {pending: the other ports showing the vport, waiting for its VM's "
                                          "first packet [{chassis, port, ofport}], activated_by_packet}"}
        out["properties"]["port_conflicts"] = {"type": "array", "items": {"type": "object"}, "description": "an "
                                               "unbound Hyper-V vport only, when there are some: the ports its port "
                                               "name names whose iface-id names another (KVM) vport, which takes "
                                               "them [{chassis, port, taken_by}]"}
    if kind == "subnet":
        out["properties"]["flood_limits"] = {"type": "array", "items": {"type": "object"}, "description": "the "
                                             "switches where its broadcast passes Open vSwitch's flood limits "
                                             "[{chassis, local_ports, vteps, passed}] (docs/limits.md)"}
    if kind == "floating_ip":
        out["properties"]["state"] = {"type": "string", "enum": ["free", "attached_unbound", "no_uplink", "active"],
                                      "description": "active: its vport is bound and its VRS, which has an uplink "
                                      "to the floating IP's network, translates for it (no_uplink: bound on "
                                      "bound_on, whose VRS has none)"}
        out["properties"]["active_on"] = {"type": "object", "nullable": True,
                                          "description": "{chassis, dpid} of the VRS that answers for it"}
    return {
        kind: out,
        kind + "_create": _object_schema(specs, True, partial=False),
        kind + "_update": _object_schema([s for s in specs if not s.immutable], True, partial=True),
    }


def _operation(route):
    op = {"summary": route.summary, "operationId": _op_id(route), "responses": {}}
    params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
              for name in re.findall(r"\{(\w+)\}", route.pattern)]
    params += [{"name": name, "in": "query", "required": False, "description": doc,
                "schema": dict(schema[0]) if schema else {"type": "string"}} for name, doc, *schema in route.query]
    if params:
        op["parameters"] = params
    ok = "201" if route.action == "create" else "200"
    if route.kind and route.action in ("get", "create", "update"):
        body = {"$ref": f"#/components/schemas/{route.kind}"}
    elif route.kind and route.action == "list":
        body = {"type": "object", "properties": {"items": {"type": "array", "items": {
            "$ref": f"#/components/schemas/{route.kind}"}}, "count": {"type": "integer"}}}
    else:
        body = {"type": "object"}
    if route.media != "application/json":
        body = {"type": "string"}
    op["responses"][ok] = {"description": "success", "content": {route.media: {"schema": body}}}
    if route.action == "create":
        op["responses"][ok]["links"] = _links(route.kind)
    for code, why in {**_ERROR_CODES, **(_WRITE_ERROR_CODES if route.write else {})}.items():
        op["responses"][code] = {"description": why, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/error"}}}}
    if route.action in ("create", "update"):
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
            "$ref": f"#/components/schemas/{route.kind}_{route.action}"}}}}
    elif route.body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": route.body}}}
    elif route.write:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
    op["security"] = [{"bearer": []}] if route.write else [{}, {"bearer": []}]
    return op


# what a created object's id fills in another kind's create body: {child kind: {field: expression}}
_CHILD_LINKS = {
    "tenant": {"domain": {"tenant_id": "$response.body#/id"}, "subnet": {"tenant_id": "$response.body#/id"},
               "acl": {"tenant_id": "$response.body#/id"}, "policy_group": {"tenant_id": "$response.body#/id"}},
    "domain": {"subnet": {"tenant_id": "$response.body#/tenant_id", "domain_id": "$response.body#/id"}},
    "subnet": {"vport": {"subnet_id": "$response.body#/id"}, "vtep_binding": {"subnet_id": "$response.body#/id"}},
}


def _links(kind):
    """OpenAPI links from a create: read, change and delete the new object, and create what belongs to it
    (clients and fuzzers follow them to reach objects that exist)."""
    collection = "/v1/" + COLLECTIONS[kind]
    words = collection.strip("/").replace("/", "_").replace("-", "_")
    links = {f"{verb}_{kind}": {"operationId": f"{verb}_{words}_id", "parameters": {"id": "$response.body#/id"}}
             for verb in ("get", "patch", "delete")}
    for child, body in _CHILD_LINKS.get(kind, {}).items():
        child_words = ("/v1/" + COLLECTIONS[child]).strip("/").replace("/", "_").replace("-", "_")
        links[f"create_{child}"] = {"operationId": f"post_{child_words}", "requestBody": body}
    return links


def _op_id(route):
    words = re.sub(r"[{}]", "", route.pattern).strip("/").replace("/", "_").replace("-", "_").replace(".", "_")
    return f"{route.method.lower()}_{words}"


def document(routes) -> dict:
    paths: dict[str, dict] = {}
    for route in routes:
        paths.setdefault(route.pattern, {})[route.method.lower()] = _operation(route)
    schemas = {"error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
        "code": {"type": "string"}, "message": {"type": "string"}, "reason": {"type": "string"},
        "field": {"type": "string", "nullable": True}, "errors": {"type": "array", "items": {"type": "object"}}},
        "required": ["code", "message", "reason"]}}, "required": ["error"]}}
    for kind in SCHEMA:
        schemas.update(_kind_schemas(kind))
    return {
        "openapi": "3.0.3",
        "info": {"title": "Canopy SDN controller", "version": __version__,
                 "description": "Inspection and policy management. Writes need 'Authorization: Bearer <token>' "
                                "with the write token; the read-only token (rest.read_token) only reads."},
        "paths": paths,
        "components": {"schemas": schemas,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
