"""The ML2 mechanism driver ``canopy``: networks, subnets and ports onto Canopy (docs/openstack.md).

- precommit: refuses what Canopy cannot express (mapping.*_refusal), so nothing is half-created; a bound VM
  port gets Neutron's L2 provisioning block;
- postcommit: converges the network's Canopy subnet and vports (sync.Syncer.networks); a Canopy that is
  down or refuses is logged and repaired by the periodic sync;
- security groups and rules (Neutron's callback registry, not ML2 calls): a rule Canopy cannot express is refused
  at BEFORE_CREATE (secgroups.rule_refusal); after a group or rule is created, updated or deleted the project's
  policy groups and ACLs converge (sync.Syncer.security_groups);
- bind_port: VXLAN segments on hosts Canopy knows (its switch list says each host's flavour, or
  ``[canopy] host_flavours``): vif_type ovs with port_filter true;
- in each API worker, once Neutron has loaded its plugins (PROCESS AFTER_INIT), a PortWatcher thread completes
  the provisioning block when Canopy reports the vport programmed, and a sync thread runs the full consistency
  sync at start and every ``sync_interval`` seconds.
"""

from __future__ import annotations

import threading
import time

from neutron.db import provisioning_blocks
from neutron_lib.api.definitions import portbindings
from neutron_lib.callbacks import events
from neutron_lib.callbacks import registry
from neutron_lib.callbacks import resources
from neutron_lib import constants as n_const
from neutron_lib import exceptions as n_exc
from neutron_lib.plugins import directory
from neutron_lib.plugins.ml2 import api
from oslo_config import cfg
from oslo_log import log as logging

from networking_canopy import config  # noqa: F401 (registers [canopy])
from networking_canopy import external
from networking_canopy import mapping
from networking_canopy import secgroups
from networking_canopy.client import CanopyClient, CanopyError, token_from
from networking_canopy.sync import Syncer
from networking_canopy.watcher import PortWatcher

LOG = logging.getLogger(__name__)
FLAVOUR_CACHE_SECONDS = 5.0
START_RETRY = 5.0  # seconds between attempts of the start-up sync while Canopy is unreachable


class Refused(n_exc.InvalidInput):
    """A Neutron request Canopy cannot express (HTTP 400 with the reason)."""

    def __init__(self, reason):
        super().__init__(error_message=f"Canopy: {reason}")


def make_client() -> CanopyClient:
    conf = cfg.CONF.canopy
    return CanopyClient(conf.url, token_from(conf.token, conf.token_file), conf.timeout, conf.ca_file)


class CanopyMechanismDriver(api.MechanismDriver):
    def initialize(self):
        self.client = make_client()
        self.syncer = Syncer(self.client, cfg.CONF.canopy.external_gateway_macs)
        self.watcher = PortWatcher(self.client, cfg.CONF.canopy.watch_wait)
        self._flavours, self._flavours_at = {}, 0.0
        registry.subscribe(self._post_fork_initialize, resources.PROCESS, events.AFTER_INIT)
        registry.subscribe(self._check_rule, resources.SECURITY_GROUP_RULE, events.BEFORE_CREATE)
        for event in (events.AFTER_CREATE, events.AFTER_UPDATE, events.AFTER_DELETE):
            registry.subscribe(self._group_changed, resources.SECURITY_GROUP, event)
        for event in (events.AFTER_CREATE, events.AFTER_DELETE):
            registry.subscribe(self._rule_changed, resources.SECURITY_GROUP_RULE, event)
        LOG.info("Canopy mechanism driver: Canopy at %s", cfg.CONF.canopy.url)

    def _post_fork_initialize(self, resource, event, trigger, payload=None):
        """In each API worker once its plugins are loaded: the vport watch and the consistency sync."""
        _start("canopy-vport-watch", self.watcher.run)
        _start("canopy-sync", self._sync_loop)

    def _sync_loop(self):
        interval = cfg.CONF.canopy.sync_interval
        while not self._start_sync():
            time.sleep(START_RETRY)
        while interval:
            time.sleep(interval)
            self._start_sync()

    def _start_sync(self) -> bool:
        try:
            self.client.get("/v1/status")
        except CanopyError as exc:
            LOG.warning("Canopy: not reachable for the consistency sync (%s)", exc)
            return False
        try:
            self.syncer.full()
        except Exception:  # the thread must live on; the next round retries
            LOG.exception("Canopy: consistency sync failed")
        return True

    # ------------------------------------------------------------------ networks
    def create_network_precommit(self, context):
        _refuse(mapping.network_refusal(_network_view(context)))

    def update_network_precommit(self, context):
        _refuse(mapping.network_update_refusal(context.original, _network_view(context)))

    def create_network_postcommit(self, context):
        self.syncer.networks([context.current["id"]])

    def update_network_postcommit(self, context):
        self.syncer.networks([context.current["id"]])

    def delete_network_postcommit(self, context):
        self.syncer.networks([context.current["id"]])

    # ------------------------------------------------------------------ subnets
    def create_subnet_precommit(self, context):
        self._check_subnet(context)

    def update_subnet_precommit(self, context):
        self._check_subnet(context)

    @staticmethod
    def _check_subnet(context):
        subnet = context.current
        others = directory.get_plugin().get_subnets(context.plugin_context,
                                                    filters={"network_id": [subnet["network_id"]]})
        _refuse(mapping.subnet_refusal(subnet, others))
        if external.is_external(context.network.current):
            _refuse(external.external_subnet_refusal(subnet))

    def create_subnet_postcommit(self, context):
        self.syncer.networks([context.current["network_id"]])

    def update_subnet_postcommit(self, context):
        self.syncer.networks([context.current["network_id"]])

    def delete_subnet_postcommit(self, context):
        self.syncer.networks([context.current["network_id"]])

    # ------------------------------------------------------------------ ports
    def create_port_precommit(self, context):
        self._check_port(context)
        self._block_until_wired(context, None)

    def update_port_precommit(self, context):
        self._check_port(context)
        self._block_until_wired(context, context.original_host)

    @staticmethod
    def _check_port(context):
        port, network = context.current, context.network.current
        _refuse(mapping.port_refusal(port, network))
        group_ids = port.get("security_groups") or []
        if mapping.is_vm_port(port) and group_ids:
            groups = directory.get_plugin().get_security_groups(context.plugin_context.elevated(),
                                                                filters={"id": list(group_ids)})
            _refuse(secgroups.port_groups_refusal(port, groups, network["project_id"]))

    # ------------------------------------------------------------------ security groups (callback registry)
    def _check_rule(self, resource, event, trigger, payload):
        """Refuse a rule Canopy cannot express before Neutron stores it."""
        rule = payload.latest_state
        ctx = payload.context.elevated()
        core = directory.get_plugin()
        group = core.get_security_group(ctx, rule["security_group_id"])
        remote = core.get_security_group(ctx, rule["remote_group_id"]) if rule.get("remote_group_id") else None
        count = sum(1 for r in group.get("security_group_rules") or [] if secgroups.is_ipv4(r))
        _refuse(secgroups.rule_refusal(rule, remote, group, count))

    def _group_changed(self, resource, event, trigger, payload):
        self.syncer.security_groups([payload.states[-1]["project_id"]])

    def _rule_changed(self, resource, event, trigger, payload):
        group_id = (payload.metadata or {}).get("security_group_id") or payload.latest_state["security_group_id"]
        try:
            group = directory.get_plugin().get_security_group(payload.context.elevated(), group_id)
        except n_exc.NotFound:  # deleted with its group: the group's own event converges
            return
        self.syncer.security_groups([group["project_id"]])

    def _block_until_wired(self, context, original_host):
        """OVN's rule: a VM port not ACTIVE that (newly) has a host waits for Canopy's word."""
        port = context.current
        if (mapping.is_vm_port(port) and context.host and context.host != original_host
                and port.get(portbindings.VNIC_TYPE, portbindings.VNIC_NORMAL) == portbindings.VNIC_NORMAL
                and port["status"] != n_const.PORT_STATUS_ACTIVE):
            provisioning_blocks.add_provisioning_component(context.plugin_context, port["id"], resources.PORT,
                                                           provisioning_blocks.L2_AGENT_ENTITY)
            self.watcher.forget(port["id"])

    def create_port_postcommit(self, context):
        self.syncer.networks([context.current["network_id"]])

    def update_port_postcommit(self, context):
        self.syncer.networks([context.current["network_id"]])

    def delete_port_postcommit(self, context):
        self.syncer.networks([context.current["network_id"]])

    # ------------------------------------------------------------------ binding
    def bind_port(self, context):
        port = context.current
        if port.get(portbindings.VNIC_TYPE, portbindings.VNIC_NORMAL) != portbindings.VNIC_NORMAL:
            return
        flavour = self.flavour_of(context.host)
        if flavour is None:
            LOG.warning("Canopy: not binding port %s: host %r is not a hypervisor Canopy knows (no switch with "
                        "that chassis or name, and not in [canopy] host_flavours)", port["id"], context.host)
            return
        for segment in context.segments_to_bind:
            if segment[api.NETWORK_TYPE] == "vxlan":
                context.set_binding(segment[api.ID], portbindings.VIF_TYPE_OVS,
                                    {portbindings.CAP_PORT_FILTER: True, "canopy_flavour": flavour})
                LOG.info("Canopy: bound port %s on %s (%s)", port["id"], context.host, flavour)
                return

    def flavour_of(self, host: str) -> str | None:
        configured = cfg.CONF.canopy.host_flavours.get(host)
        if configured in mapping.FLAVOURS:
            return configured
        if host not in self._flavours or time.monotonic() - self._flavours_at > FLAVOUR_CACHE_SECONDS:
            try:
                switches = self.client.items("switches")
            except CanopyError as exc:
                LOG.error("Canopy: cannot read its switches to bind a port on %s: %s", host, exc)
                return None
            self._flavours = {}
            for sw in switches:
                for key in (sw.get("name"), sw.get("chassis")):
                    if key and sw.get("flavour") in mapping.FLAVOURS:
                        self._flavours[key] = sw["flavour"]
            self._flavours_at = time.monotonic()
        return self._flavours.get(host)


def _network_view(context) -> dict:
    """The network with its segment's type and id as mapping.network_refusal expects them."""
    net = dict(context.current)
    segments = context.network_segments or []
    if len(segments) > 1:
        net["provider:network_type"] = "multi-segment"
    elif segments:
        net["provider:network_type"] = segments[0][api.NETWORK_TYPE]
    return net


def _refuse(reason):
    if reason:
        raise Refused(reason)


def _start(name, target):
    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    return thread
