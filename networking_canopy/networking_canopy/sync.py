"""Make Canopy match Neutron: for what one API call touched (networks and routers, a project's security groups,
a project's floating IPs), and in full (at start and every ``[canopy] sync_interval`` seconds). Neutron is the
source of truth for what it made; every repair is logged; Canopy objects not made by Neutron
(mapping.actual_items) are left alone."""

from __future__ import annotations

import threading

from neutron_lib import context as n_context
from neutron_lib.plugins import constants as plugin_constants
from neutron_lib.plugins import directory
from oslo_log import log as logging

from networking_canopy import mapping
from networking_canopy.client import CanopyError
from networking_canopy.names import name_of

LOG = logging.getLogger(__name__)


class Syncer:
    def __init__(self, client, gateway_macs=None):
        self.client = client
        self.gateway_macs = gateway_macs or {}
        self.lock = threading.Lock()  # one convergence at a time: API calls and the periodic sync

    # ------------------------------------------------------------------ reading Neutron
    @staticmethod
    def _neutron(ctx, network_ids=None, router_ids=None) -> dict:
        """Neutron's resources as desired_items' keyword arguments: everything (``network_ids`` None), or these
        networks, their ports, the routers on them or named, those routers' external networks, and the floating
        IPs of their ports."""
        core = directory.get_plugin()
        l3 = directory.get_plugin(plugin_constants.L3)
        if network_ids is None:
            return {"networks": core.get_networks(ctx), "subnets": core.get_subnets(ctx),
                    "ports": core.get_ports(ctx), "routers": l3.get_routers(ctx) if l3 else [],
                    "groups": core.get_security_groups(ctx), "rules": core.get_security_group_rules(ctx),
                    "fips": l3.get_floatingips(ctx) if l3 else []}
        networks = core.get_networks(ctx, filters={"id": list(network_ids)}) if network_ids else []
        ids = [n["id"] for n in networks]
        ports = core.get_ports(ctx, filters={"network_id": ids}) if ids else []
        routers, fips = [], []
        if l3 is not None:
            wanted = set(router_ids or ()) | {p["device_id"] for p in ports
                                               if p.get("device_owner") in mapping.ROUTER_INTERFACE_OWNERS}
            routers = l3.get_routers(ctx, filters={"id": list(wanted)}) if wanted else []
            vm_ports = [p["id"] for p in ports if mapping.is_vm_port(p)]
            fips = l3.get_floatingips(ctx, filters={"port_id": vm_ports}) if vm_ports else []
        outside = ({(r.get("external_gateway_info") or {}).get("network_id") for r in routers}
                   | {f["floating_network_id"] for f in fips}) - set(ids) - {None}
        if outside:
            networks += core.get_networks(ctx, filters={"id": sorted(outside)})
        all_ids = [n["id"] for n in networks]
        subnets = core.get_subnets(ctx, filters={"network_id": all_ids}) if all_ids else []
        return {"networks": networks, "subnets": subnets, "ports": ports, "routers": routers, "fips": fips}

    @staticmethod
    def _neutron_groups(ctx, project_ids) -> dict:
        core = directory.get_plugin()
        groups = core.get_security_groups(ctx, filters={"project_id": list(project_ids)})
        ids = [g["id"] for g in groups]
        rules = core.get_security_group_rules(ctx, filters={"security_group_id": ids}) if ids else []
        return {"networks": [], "subnets": [], "ports": [], "routers": [], "groups": groups, "rules": rules}

    @staticmethod
    def _neutron_fips(ctx, project_ids) -> dict:
        core = directory.get_plugin()
        l3 = directory.get_plugin(plugin_constants.L3)
        fips = l3.get_floatingips(ctx, filters={"project_id": list(project_ids)}) if l3 else []
        port_ids = sorted({f["port_id"] for f in fips if f.get("port_id")})
        ports = core.get_ports(ctx, filters={"id": port_ids}) if port_ids else []
        net_ids = sorted({p["network_id"] for p in ports} | {f["floating_network_id"] for f in fips})
        networks = core.get_networks(ctx, filters={"id": net_ids}) if net_ids else []
        subnets = core.get_subnets(ctx, filters={"network_id": net_ids}) if net_ids else []
        return {"networks": networks, "subnets": subnets, "ports": ports, "routers": [], "fips": fips}

    # ------------------------------------------------------------------ reading Canopy
    def _canopy_all(self):
        got = {k: self.client.items(mapping.COLLECTION[k]) for k in mapping.KINDS}
        return self._actual(got, {})

    def _actual(self, got, named):
        """(actual items, ids by (kind, name)) from the objects ``got`` by kind and those ``named`` by kind (fetched
        to read references only)."""
        names = {o["id"]: o["name"] for objs in named.values() for o in objs}
        actual = mapping.actual_items(*(got.get(k, []) for k in mapping.KINDS), names=names)
        ids = {(k, o["name"]): o["id"] for k, objs in named.items() for o in objs}
        ids.update({(k, o["name"]): o["id"] for k, objs in got.items() for o in objs})
        return actual, ids

    def _tenants(self, names, got):
        for name in sorted(n for n in names if n):
            got.setdefault("tenant", []).extend(self.client.items("tenants", name=name))
        return [t["id"] for t in got.get("tenant", [])]

    def _canopy_around(self, desired, network_ids, router_ids):
        """The Canopy objects of these networks and routers (and their tenants, their tenants' floating IPs and
        the external networks) made by Neutron."""
        got = {k: [] for k in mapping.KINDS}
        tenants = {item.parents.get("tenant_id") for item in desired.values()} | {
            n for k, n in desired if k == "tenant"}
        for name in sorted({name_of(r) for r in router_ids} | {n for k, n in desired if k == "domain"}):
            got["domain"] += self.client.items("domains", name=name)
        for name in sorted(name_of(i) for i in network_ids):
            subnets = self.client.items("subnets", name=name)
            got["subnet"] += subnets
            for subnet in subnets:
                got["vport"] += self.client.items("vports", subnet_id=subnet["id"])
        self._tenants(tenants, got)
        known = {t["id"] for t in got["tenant"]}
        got["tenant"] += [self.client.get(f"/v1/tenants/{tid}") for tid in sorted(_parent_ids(got) - known)]
        got["external_network"] = self.client.items("external-networks")
        named = {"policy_group": []}
        for tenant in got["tenant"]:
            named["policy_group"] += self.client.items("policy-groups", tenant_id=tenant["id"])
            got["floating_ip"] += self.client.items("floating-ips", tenant_id=tenant["id"])
        return self._actual(got, named)

    def _canopy_tenant_kinds(self, project_ids, kinds):
        """Every object of ``kinds`` in the tenants of these projects, with the external networks, policy groups
        and the attached vports to read their references with."""
        got = {k: [] for k in mapping.KINDS}
        self._tenants({name_of(p) for p in project_ids}, got)
        named = {"external_network": self.client.items("external-networks"), "policy_group": [], "vport": []}
        for tenant in got["tenant"]:
            for kind in kinds:
                got[kind] += self.client.items(mapping.COLLECTION[kind], tenant_id=tenant["id"])
            if "policy_group" not in kinds:
                named["policy_group"] += self.client.items("policy-groups", tenant_id=tenant["id"])
        for fip in got["floating_ip"]:
            if fip.get("vport_id"):
                named["vport"].append(self.client.get(f"/v1/vports/{fip['vport_id']}"))
        return self._actual(got, named)

    # ------------------------------------------------------------------ converging
    def networks(self, network_ids=(), router_ids=()):
        """Converge the Canopy objects of these networks (subnet, vports, an external network) and routers
        (domain), and the floating IPs of their ports."""
        network_ids, router_ids = set(network_ids), set(router_ids)
        touched = {name_of(i) for i in network_ids | router_ids}

        def read(ctx):
            desired = mapping.desired_items(**self._neutron(ctx, network_ids, router_ids),
                                            gateway_macs=self.gateway_macs)
            actual, ids = self._canopy_around(desired, network_ids, router_ids)
            vports = {name for kind, name in actual if kind == "vport"}

            def scope(key):  # never deletes a tenant here, nor a domain that is not one of these routers
                if key[0] in ("subnet", "vport"):
                    return True
                if key[0] == "floating_ip":
                    return key in desired or actual[key].body.get("vport_id") in vports
                return key[0] != "policy_group" and key[0] != "acl" and (key in desired or key[1] in touched)
            return desired, actual, ids, scope
        return self._converge(read, f"networks {sorted(network_ids)} / routers {sorted(router_ids)}", "update")

    def security_groups(self, project_ids):
        """Converge the policy groups and ACLs of these projects' security groups."""
        project_ids = [p for p in project_ids if mapping.nameable(p)]
        if not project_ids:
            return []
        def read(ctx):
            desired = mapping.desired_items(**self._neutron_groups(ctx, project_ids))
            actual, ids = self._canopy_tenant_kinds(project_ids, ("policy_group", "acl"))
            return desired, actual, ids, lambda key: key[0] in ("policy_group", "acl") or (
                key[0] == "tenant" and key in desired)
        return self._converge(read, f"security groups of {sorted(project_ids)}", "update")

    def floating_ips(self, project_ids):
        """Converge these projects' floating IPs."""
        project_ids = [p for p in project_ids if mapping.nameable(p)]
        if not project_ids:
            return []
        def read(ctx):
            desired = mapping.desired_items(**self._neutron_fips(ctx, project_ids), gateway_macs=self.gateway_macs)
            actual, ids = self._canopy_tenant_kinds(project_ids, ("floating_ip",))
            return desired, actual, ids, lambda key: key[0] == "floating_ip" or (
                key[0] == "tenant" and key in desired)
        return self._converge(read, f"floating IPs of {sorted(project_ids)}", "update")

    def full(self):
        """Compare everything and repair Canopy; returns the operations done."""
        seen = []

        def read(ctx):
            desired = mapping.desired_items(**self._neutron(ctx), gateway_macs=self.gateway_macs)
            actual, ids = self._canopy_all()
            seen.append(len(desired))
            return desired, actual, ids, None
        ops = self._converge(read, "everything", "repair")
        LOG.info("Canopy: consistency sync done: %d Neutron objects, %d repair(s)", seen[-1] if seen else 0,
                 len(ops))
        return ops

    def _converge(self, read, what, verb, passes=2):
        """Read both sides, plan, execute; once more when an operation failed (an order Canopy refused: a
        policy group still named by a rule that the same plan changes later)."""
        done = []
        with self.lock:
            for _ in range(passes):
                try:
                    desired, actual, ids, scope = read(n_context.get_admin_context())
                except CanopyError as exc:
                    LOG.error("Canopy: cannot sync %s now (%s); the periodic sync will", what, exc)
                    return done
                except Exception:  # never fail a Neutron call that has committed (ML2 would undo it)
                    LOG.exception("Canopy: syncing %s failed; the periodic sync retries", what)
                    return done
                ops = mapping.plan(desired, actual, scope)
                ran = self.execute(ops, actual, verb, ids)
                done += ran
                if len(ran) == len(ops):
                    break
        return done

    def execute(self, ops, actual, verb, ids=None):
        ids = dict(ids or {})
        ids.update({key: item.id for key, item in actual.items()})
        done = []
        for op in ops:
            item, coll = op.item, mapping.COLLECTION[op.item.kind]
            try:
                if op.op == "delete":
                    self._free_floating_ips(item, actual, ids)
                    self.client.delete(coll, item.id, cascade=item.kind == "subnet")
                    ids.pop(item.key, None)
                elif op.op == "create":
                    body = mapping.convert_refs(item.kind, item.body, lambda k, n: self._id_of(ids, k, n))
                    for fname, parent in item.parents.items():
                        if parent is not None:
                            body[fname] = ids[(mapping.PARENT_KIND[fname], parent)]
                    ids[item.key] = self.client.create(coll, body)["id"]
                else:
                    fields = mapping.convert_refs(item.kind, op.fields, lambda k, n: self._id_of(ids, k, n))
                    self.client.update(coll, item.id or ids[item.key], fields)
            except (CanopyError, KeyError) as exc:
                LOG.error("Canopy %s: %s %s %s failed (%s): %s", verb, op.op, item.kind, item.name, op.why, exc)
                continue
            log = LOG.warning if verb == "repair" else LOG.info
            log("Canopy %s: %s %s %s (%s)%s", verb, op.op, item.kind, item.name, op.why,
                f": {sorted(op.fields)}" if op.fields else "")
            done.append(op)
        return done

    def _id_of(self, ids, kind, name):
        """Canopy's id of an object named in a reference: known from the reads, else asked by name."""
        if (kind, name) not in ids:
            found = self.client.items(mapping.COLLECTION[kind], name=name)
            if len(found) != 1:
                raise KeyError(f"{kind} {name} is not in Canopy")
            ids[(kind, name)] = found[0]["id"]
        return ids[(kind, name)]

    def _free_floating_ips(self, item, actual, ids):
        """Before a vport (or a subnet with its vports) is deleted: free the floating IPs on it that the plan did
        not (made outside this scope), since Canopy keeps a vport that has one."""
        if item.kind == "vport":
            vport_ids = [item.id]
        elif item.kind == "subnet":
            vport_ids = [v.id for v in actual.values() if v.kind == "vport" and v.parents["subnet_id"] == item.name]
        else:
            return
        for vport_id in vport_ids:
            for fip in self.client.items("floating-ips", vport_id=vport_id):
                self.client.update("floating-ips", fip["id"], {"vport_id": None})
                LOG.info("Canopy: freed floating IP %s of vport %s before deleting it", fip["name"], vport_id)


def _parent_ids(got):
    return {obj.get("tenant_id") for kind in ("domain", "subnet") for obj in got[kind]}
