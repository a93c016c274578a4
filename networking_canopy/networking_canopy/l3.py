"""The L3 service plugin ``canopy_router``: routers as Canopy domains (docs/openstack.md).

Routers, their interfaces, gateways and floating IPs are not ML2 calls: this plugin keeps Neutron's router
database (the in-tree DB-only mixins, no L3 agent) and follows the callback registry:

- ROUTER_INTERFACE BEFORE_CREATE refuses an interface Canopy cannot express (mapping.router_interface_refusal,
  and on a router that translates, subnets overlapping another translating router's: external.translation_refusal);
  AFTER_CREATE / AFTER_DELETE move the network's Canopy subnet into or out of the router's domain;
- ROUTER AFTER_CREATE / AFTER_UPDATE / AFTER_DELETE converge the domain (extra routes: static routes);
- a router gateway is checked before Neutron makes its gateway port (external.gateway_refusal) and converges with
  the router (the domain's external network and ``underlay_nat`` from ``enable_snat``, the ``ext-gw-mode``
  extension);
- FLOATING_IP PRECOMMIT_CREATE / PRECOMMIT_UPDATE refuse an association Canopy cannot express
  (external.floating_ip_refusal), inside Neutron's transaction; AFTER_CREATE / AFTER_UPDATE / AFTER_DELETE converge
  the project's floating IPs (attach, move, free, delete).
"""

from __future__ import annotations

from neutron.db import extraroute_db
from neutron.db import l3_gwmode_db
from neutron.db.models import l3 as l3_models
from neutron.quota import resource_registry
from neutron_lib.api.definitions import extraroute as extraroute_apidef
from neutron_lib.api.definitions import l3 as l3_apidef
from neutron_lib.api.definitions import l3_ext_gw_mode as gw_mode_apidef
from neutron_lib.callbacks import events
from neutron_lib.callbacks import registry
from neutron_lib.callbacks import resources
from neutron_lib.plugins import constants as plugin_constants
from neutron_lib.plugins import directory
from neutron_lib.services import base as service_base
from oslo_config import cfg
from oslo_log import log as logging

from networking_canopy import external
from networking_canopy import mapping
from networking_canopy.mech_driver import Refused

LOG = logging.getLogger(__name__)


@registry.has_registry_receivers
class CanopyL3RouterPlugin(service_base.ServicePluginBase, extraroute_db.ExtraRoute_dbonly_mixin,
                           l3_gwmode_db.L3_NAT_dbonly_mixin):
    _supported_extension_aliases = [l3_apidef.ALIAS, extraroute_apidef.ALIAS, gw_mode_apidef.ALIAS]

    @resource_registry.tracked_resources(router=l3_models.Router, floatingip=l3_models.FloatingIP)
    def __init__(self):
        super().__init__()
        LOG.info("Canopy L3 router plugin: routers are Canopy domains")

    @property
    def supported_extension_aliases(self):
        return self._supported_extension_aliases

    def get_plugin_type(self):
        return plugin_constants.L3

    def get_plugin_description(self):
        return "L3 routers as Canopy domains (distributed anycast gateway on every hypervisor)"

    @staticmethod
    def _syncer():
        for driver in directory.get_plugin().mechanism_manager.ordered_mech_drivers:
            if hasattr(driver.obj, "syncer"):
                return driver.obj.syncer
        raise RuntimeError("the canopy mechanism driver is not loaded: add it to [ml2] mechanism_drivers")

    # ------------------------------------------------------------------ refusals
    @registry.receives(resources.ROUTER_INTERFACE, [events.BEFORE_CREATE])
    def _check_interface(self, resource, event, trigger, payload):
        port = payload.metadata["port"]
        core = directory.get_plugin()
        ctx = payload.context
        if external.is_external(core.get_network(ctx, port["network_id"])):
            raise Refused("a router interface on an external network: Canopy reaches external networks through "
                          "the hypervisors' uplinks; set it as the router's gateway instead")
        subnet_ids = [ip["subnet_id"] for ip in port.get("fixed_ips") or []]
        subnets = core.get_subnets(ctx, filters={"id": subnet_ids}) if subnet_ids else []
        others = core.get_ports(ctx, filters={"network_id": [port["network_id"]],
                                              "device_owner": list(mapping.ROUTER_INTERFACE_OWNERS)})
        attached = next((p["device_id"] for p in others if p["device_id"] != payload.resource_id), None)
        reason = mapping.router_interface_refusal(port, subnets, attached, payload.resource_id)
        if reason:
            raise Refused(reason)
        router = self.get_router(ctx, payload.resource_id)
        if _translates((router.get("external_gateway_info") or {})):
            self._check_translation(ctx, payload.resource_id, [s["cidr"] for s in subnets if s["ip_version"] == 4])

    def _update_router_gw_info(self, context, router_id, info, request_body, router=None):
        """Refuse a gateway Canopy cannot express before Neutron changes anything (a router created with it is
        deleted again by Neutron)."""
        if info and info.get("network_id"):
            subnets = directory.get_plugin().get_subnets(context.elevated(),
                                                         filters={"network_id": [info["network_id"]]})
            reason = external.gateway_refusal(info, subnets)
            if reason:
                raise Refused(reason)
            if _translates(info):
                self._check_translation(context.elevated(), router_id, [])
        return super()._update_router_gw_info(context, router_id, info, request_body, router=router)

    def _check_translation(self, ctx, router_id, new_cidrs):
        """Refuse a router that translates with subnets (its own and ``new_cidrs``) overlapping those of another
        router that translates (external.translation_refusal)."""
        routers = [r for r in self.get_routers(ctx) if r["id"] == router_id or
                   _translates(r.get("external_gateway_info") or {})]
        core = directory.get_plugin()
        ports = core.get_ports(ctx, filters={"device_id": [r["id"] for r in routers],
                                             "device_owner": list(mapping.ROUTER_INTERFACE_OWNERS)})
        subnet_ids = sorted({ip["subnet_id"] for p in ports for ip in p["fixed_ips"]})
        subnets = core.get_subnets(ctx, filters={"id": subnet_ids}) if subnet_ids else []
        cidr_of = {s["id"]: s["cidr"] for s in subnets if s["ip_version"] == 4}
        cidrs = {r["id"]: [] for r in routers}
        for port in ports:
            cidrs[port["device_id"]] += [cidr_of[ip["subnet_id"]] for ip in port["fixed_ips"]
                                         if ip["subnet_id"] in cidr_of]
        reason = external.translation_refusal(router_id, cidrs.pop(router_id, []) + list(new_cidrs), cidrs)
        if reason:
            raise Refused(reason)

    @registry.receives(resources.FLOATING_IP, [events.PRECOMMIT_CREATE, events.PRECOMMIT_UPDATE])
    def _check_floating_ip(self, resource, event, trigger, payload):
        fip = payload.desired_state
        port_id = getattr(fip, "fixed_port_id", None)
        if not port_id:
            return
        core = directory.get_plugin()
        ctx = payload.context.elevated()
        port = core.get_port(ctx, port_id)
        network = core.get_network(ctx, port["network_id"])
        reason = external.floating_ip_refusal({"project_id": fip.project_id, "port_id": port_id,
                                               "fixed_ip_address": str(fip.fixed_ip_address or "") or None},
                                              port, network["project_id"])
        if reason:
            raise Refused(reason)

    # ------------------------------------------------------------------ convergence
    @registry.receives(resources.ROUTER, [events.AFTER_CREATE, events.AFTER_UPDATE, events.AFTER_DELETE])
    def _router_changed(self, resource, event, trigger, payload):
        self._syncer().networks((), [payload.resource_id])

    @registry.receives(resources.ROUTER_INTERFACE, [events.AFTER_CREATE, events.AFTER_DELETE])
    def _interface_changed(self, resource, event, trigger, payload):
        port = payload.metadata["port"]
        self._syncer().networks([port["network_id"]], [payload.resource_id])

    @registry.receives(resources.FLOATING_IP, [events.AFTER_CREATE, events.AFTER_UPDATE, events.AFTER_DELETE])
    def _floating_ip_changed(self, resource, event, trigger, payload):
        projects = {state["project_id"] for state in payload.states if isinstance(state, dict) and
                    state.get("project_id")}
        self._syncer().floating_ips(sorted(projects))


def _translates(info: dict) -> bool:
    """Whether a gateway (external_gateway_info, or the requested one) translates: enable_snat, default from
    Neutron's enable_snat_by_default."""
    if not info or not info.get("network_id"):
        return False
    return bool(info.get("enable_snat", cfg.CONF.enable_snat_by_default))
