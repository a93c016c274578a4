"""Make Canopy match Neutron: for the networks or routers one API call touched, and in full (at start and
every ``[canopy] sync_interval`` seconds). Neutron is the source of truth for what it made; every repair is
logged; Canopy objects not made by Neutron (mapping.actual_items) are left alone."""

from __future__ import annotations

import threading

from neutron_lib import context as n_context
from neutron_lib.plugins import constants as plugin_constants
from neutron_lib.plugins import directory
from oslo_log import log as logging

from networking_canopy import mapping
from networking_canopy.client import CanopyError

LOG = logging.getLogger(__name__)


class Syncer:
    def __init__(self, client):
        self.client = client
        self.lock = threading.Lock()  # one convergence at a time: API calls and the periodic sync

    # ------------------------------------------------------------------ reading both sides
    @staticmethod
    def _neutron(ctx, network_ids=None, router_ids=None):
        core = directory.get_plugin()
        l3 = directory.get_plugin(plugin_constants.L3)
        net_filter = {"id": list(network_ids)} if network_ids is not None else None
        networks = core.get_networks(ctx, filters=net_filter) if network_ids is None or network_ids else []
        ids = [n["id"] for n in networks]
        by_net = {"network_id": ids} if network_ids is not None else None
        subnets = core.get_subnets(ctx, filters=by_net) if ids or network_ids is None else []
        ports = core.get_ports(ctx, filters=by_net) if ids or network_ids is None else []
        if l3 is None:
            routers = []
        elif network_ids is None:
            routers = l3.get_routers(ctx)
        else:
            wanted = set(router_ids or ()) | {p["device_id"] for p in ports
                                               if p.get("device_owner") in mapping.ROUTER_INTERFACE_OWNERS}
            routers = l3.get_routers(ctx, filters={"id": list(wanted)}) if wanted else []
        return networks, subnets, ports, routers

    def _canopy_all(self):
        return mapping.actual_items(*(self.client.items(mapping.COLLECTION[k]) for k in mapping.KINDS))

    def _canopy_around(self, desired, network_ids, router_ids):
        """The Canopy objects of these networks and routers (and their tenants) made by Neutron."""
        names = {mapping.name_of(i) for i in network_ids}
        tenants = {item.parents.get("tenant_id") for item in desired.values()} | {
            n for k, n in desired if k == "tenant"}
        got = {"tenant": [], "domain": [], "subnet": [], "vport": []}
        for name in sorted(n for n in tenants if n):
            got["tenant"] += self.client.items("tenants", name=name)
        for name in sorted({mapping.name_of(r) for r in router_ids} | {n for k, n in desired if k == "domain"}):
            got["domain"] += self.client.items("domains", name=name)
        for name in sorted(names):
            subnets = self.client.items("subnets", name=name)
            got["subnet"] += subnets
            for subnet in subnets:
                got["vport"] += self.client.items("vports", subnet_id=subnet["id"])
        known = {t["id"] for t in got["tenant"]}
        got["tenant"] += [self.client.get(f"/v1/tenants/{tid}") for tid in sorted(_parent_ids(got) - known)]
        return mapping.actual_items(got["tenant"], got["domain"], got["subnet"], got["vport"])

    # ------------------------------------------------------------------ converging
    def networks(self, network_ids=(), router_ids=()):
        """Converge the Canopy objects of these networks (subnet, vports) and routers (domain)."""
        network_ids, router_ids = set(network_ids), set(router_ids)
        with self.lock:
            try:
                ctx = n_context.get_admin_context()
                networks, subnets, ports, routers = self._neutron(ctx, network_ids, router_ids)
                desired = mapping.desired_items(networks, subnets, ports, routers)
                actual = self._canopy_around(desired, network_ids, router_ids)
            except CanopyError as exc:
                LOG.error("Canopy: cannot sync networks %s / routers %s now (%s); the periodic sync will",
                          sorted(network_ids), sorted(router_ids), exc)
                return []
            except Exception:  # never fail a Neutron call that has committed (ML2 would undo it)
                LOG.exception("Canopy: syncing networks %s / routers %s failed; the periodic sync retries",
                              sorted(network_ids), sorted(router_ids))
                return []
            touched = {mapping.name_of(i) for i in network_ids | router_ids}

            def scope(key):  # never deletes a tenant here, nor a domain that is not one of these routers
                return key[0] in ("subnet", "vport") or key in desired or key[1] in touched
            return self.execute(mapping.plan(desired, actual, scope), actual, "update")

    def full(self):
        """Compare everything and repair Canopy; returns the operations done."""
        with self.lock:
            try:
                ctx = n_context.get_admin_context()
                desired = mapping.desired_items(*self._neutron(ctx))
                actual = self._canopy_all()
            except CanopyError as exc:
                LOG.error("Canopy: consistency sync skipped: %s", exc)
                return []
            ops = self.execute(mapping.plan(desired, actual), actual, "repair")
            LOG.info("Canopy: consistency sync done: %d Neutron objects, %d repair(s)", len(desired), len(ops))
            return ops

    def execute(self, ops, actual, verb):
        ids = {key: item.id for key, item in actual.items()}
        done = []
        for op in ops:
            item, coll = op.item, mapping.COLLECTION[op.item.kind]
            try:
                if op.op == "delete":
                    self.client.delete(coll, item.id, cascade=item.kind == "subnet")
                    ids.pop(item.key, None)
                elif op.op == "create":
                    body = dict(item.body)
                    for fname, parent in item.parents.items():
                        if parent is not None:
                            body[fname] = ids[(mapping.PARENT_KIND[fname], parent)]
                    ids[item.key] = self.client.create(coll, body)["id"]
                else:
                    self.client.update(coll, item.id or ids[item.key], op.fields)
            except (CanopyError, KeyError) as exc:
                LOG.error("Canopy %s: %s %s %s failed (%s): %s", verb, op.op, item.kind, item.name, op.why, exc)
                continue
            log = LOG.warning if verb == "repair" else LOG.info
            log("Canopy %s: %s %s %s (%s)%s", verb, op.op, item.kind, item.name, op.why,
                f": {sorted(op.fields)}" if op.fields else "")
            done.append(op)
        return done


def _parent_ids(got):
    return {obj.get("tenant_id") for kind in ("domain", "subnet") for obj in got[kind]}
