"""Ports go ACTIVE when Canopy says their vport is wired: one long poll of Canopy's /v1/watch/vports.

A bound port carries Neutron's L2 provisioning block (added at precommit, mech_driver). When Canopy reports
the port's vport ``programmed`` (bound on its hypervisor and every flow of it installed), the block is
completed: ML2 marks the port ACTIVE and tells Nova (network-vif-plugged). When a programmed vport stops being
so (the VM's interface left its hypervisor), the block is put back and the port goes DOWN.
"""

from __future__ import annotations

import threading
import time

from neutron.db import provisioning_blocks
from neutron_lib.callbacks import resources
from neutron_lib import constants as n_const
from neutron_lib import context as n_context
from neutron_lib.plugins import directory
from oslo_log import log as logging

from networking_canopy import mapping
from networking_canopy.client import CanopyError

LOG = logging.getLogger(__name__)
RETRY = 2.0  # seconds before asking an unreachable Canopy again


class PortWatcher:
    def __init__(self, client, wait: int):
        self.client = client
        self.wait = wait
        self.cursor = None
        self.wired: set = set()  # ports whose provisioning this process completed
        self.lock = threading.Lock()

    def forget(self, port_id: str) -> None:
        """The port got a new provisioning block (bound again): complete it at the next report."""
        with self.lock:
            self.wired.discard(port_id)

    def run(self) -> None:
        while True:
            try:
                reply = self.client.watch_vports(self.cursor, self.wait, mapping.PREFIX)
            except CanopyError as exc:
                LOG.warning("Canopy: watching vports failed (%s); again in %.0f s", exc, RETRY)
                self.cursor = None
                time.sleep(RETRY)
                continue
            self.cursor = reply["cursor"]
            try:
                self.handle(reply["items"])
            except Exception:  # a Neutron DB hiccup must not end the watch
                LOG.exception("Canopy: handling a vport report failed")
                self.cursor = None
                time.sleep(RETRY)

    def handle(self, items) -> None:
        ctx = n_context.get_admin_context()
        seen = set()
        for item in items:
            port_id = mapping.neutron_id(item["name"])
            if port_id is None:
                continue
            seen.add(port_id)
            with self.lock:
                was = port_id in self.wired
                if item["programmed"]:
                    self.wired.add(port_id)
                else:
                    self.wired.discard(port_id)
            if item["programmed"] and not was:
                LOG.info("Canopy: port %s is wired (vport %s programmed): provisioning complete", port_id, item["id"])
                provisioning_blocks.provisioning_complete(ctx, port_id, resources.PORT,
                                                          provisioning_blocks.L2_AGENT_ENTITY)
            elif was and not item["programmed"]:
                LOG.info("Canopy: port %s is no longer wired (vport %s %s): DOWN", port_id, item["id"], item["status"])
                self.set_down(ctx, port_id)
        with self.lock:
            self.wired &= seen

    @staticmethod
    def set_down(ctx, port_id: str) -> None:
        provisioning_blocks.add_provisioning_component(ctx, port_id, resources.PORT,
                                                       provisioning_blocks.L2_AGENT_ENTITY)
        directory.get_plugin().update_port_status(ctx, port_id, n_const.PORT_STATUS_DOWN)
