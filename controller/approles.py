"""This node's HA role, applied to its switches and services (part of the Ryu application, controller/app.py).

The pair (controller/ha.py) decides the role and calls ``_on_role`` from its thread: the OVSDB writes, the BGP
origination and the programming loop follow it at once, every switch is held (a standby or undecided node never
writes), and the role keeper (one green thread) asks every switch for the OpenFlow role that matches (MASTER on the
active, SLAVE on the standby, with the pair's generation id), again until each confirms. A switch that takes this
node, just become active, as master gets what the old active may not have finished announcing
(``_announce_after_takeover``: controller/garps.py).

``RoleWiring`` is a mixin of ``CanopyApp``: it uses the app's ``pair``, ``reconcilers``, ``programmer``, ``ovsdb``,
``federation``, ``program_loop``, ``_roles_wake`` and ``_takeover_due`` (datapath ids owed a batch).
"""

from __future__ import annotations

import logging

from controller.ryu_compat import hub

log = logging.getLogger("canopy.app")
ROLE_RETRY = 0.2  # seconds before asking a switch again for a role it did not confirm


def may_announce(pair, rec) -> bool:
    """Whether a gratuitous ARP may go out through reconciler ``rec`` now: this node is the active one (or not
    paired) and the switch's reconciler was not stopped (it left, or the controller is shutting down). Asked
    before every packet of a batch (controller/garps.py): a node demoted while a batch pauses sends no more."""
    return (pair is None or pair.role == "active") and rec.state != "stopped"


class RoleWiring:
    """See the module docstring."""

    def _on_role(self, role, generation):
        """The pair decided this node's role (called from the pair's thread): apply it everywhere."""
        active = role == "active"
        known = {sw.datapath_id for sw in list(self.programmer.view.switches.values())} | set(self.reconcilers)
        self._takeover_due = known - {None} if active else set()  # a batch at each one's first MASTER, any connection
        self.ovsdb.set_writes(active)
        if self.federation is not None:
            self.federation.originating = active
        for rec in list(self.reconcilers.values()):
            if not active:
                rec.hold(True)
        if active:  # the pair made the role visible before this call: a switch may have confirmed MASTER meanwhile
            for rec in list(self.reconcilers.values()):
                if rec.role == "master" and rec.role_generation == generation:
                    self._announce_if_due(rec)
        self._roles_wake.set()
        self.program_loop.urge()  # republish BGP routes and VTEP rows under the new role, not behind slices

    def _announce_if_due(self, rec):
        """The takeover's batch to a switch that confirmed MASTER of this term, once, if it is owed one and the
        reconciler may send (not replaced)."""
        if rec.datapath.id in self._takeover_due and may_announce(self.pair, rec):
            self._takeover_due.discard(rec.datapath.id)
            self._announce_after_takeover(rec)

    def _role_keeper(self):
        """Keep every switch's OpenFlow role equal to this node's HA role: MASTER (then sync) on the
        active, SLAVE on the standby, each with the pair's generation id. All switches are asked at once
        (one green thread each); unconfirmed ones are asked again."""
        while True:
            self._roles_wake.wait(1.0)
            self._roles_wake.clear()
            role = {"active": "master", "standby": "slave"}.get(self.pair.role)
            if role is None:
                continue
            generation = self.pair.generation
            asks = [hub.spawn(self._ask_role, rec, role, generation) for rec in list(self.reconcilers.values())
                    if not (rec.role == role and rec.role_generation == generation)]
            hub.joinall(asks)

    def _ask_role(self, rec, role, generation):
        ok, error = rec.request_role(role, generation)
        if ok:  # a MASTER confirmed after a demotion (the pair decided while the switch answered) releases nothing
            master = role == "master" and self.pair.role == "active"  # and the keeper's next round asks SLAVE
            rec.hold(not master)
            if master:
                self._announce_if_due(rec)
        elif error and "STALE" in error.upper():
            log.warning("switch %016x refused %s with generation %d as stale", rec.datapath.id or 0, role,
                        generation)
            self.pair.switch_reported(generation + 1, "slave")
            hub.sleep(ROLE_RETRY)
            self._roles_wake.set()
        else:
            log.warning("switch %016x did not confirm the %s role: %s", rec.datapath.id or 0, role, error)
            hub.sleep(ROLE_RETRY)
            self._roles_wake.set()
