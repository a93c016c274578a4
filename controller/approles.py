"""This node's HA role, applied to its switches and services (part of the Ryu application, controller/app.py).

The pair (controller/ha.py) decides the role and calls ``_on_role`` from its thread: the OVSDB writes, the BGP
origination and the programming loop follow it at once, every switch is held (a standby or undecided node never
writes), and the role keeper (one green thread) asks every switch for the OpenFlow role that matches (MASTER on the
active, SLAVE on the standby, with the pair's generation id), again until each confirms. A switch that takes this
node, just become active, as master gets what the old active may not have finished announcing
(``_announce_after_takeover``: controller/garps.py).

``RoleWiring`` is a mixin of ``CanopyApp``: it uses the app's ``pair``, ``reconcilers``, ``ovsdb``, ``federation``,
``program_loop``, ``_roles_wake`` and ``_takeover_due``.
"""

from __future__ import annotations

import logging

from controller.ryu_compat import hub

log = logging.getLogger("canopy.app")
ROLE_RETRY = 0.2  # seconds before asking a switch again for a role it did not confirm


class RoleWiring:
    """See the module docstring."""

    def _on_role(self, role, generation):
        """The pair decided this node's role (called from the pair's thread): apply it everywhere."""
        active = role == "active"
        self._takeover_due = dict(self.reconcilers) if active else {}  # each announces once it takes MASTER
        self.ovsdb.set_writes(active)
        if self.federation is not None:
            self.federation.originating = active
        for rec in list(self.reconcilers.values()):
            if not active:
                rec.hold(True)
        self._roles_wake.set()
        self.program_loop.urge()  # republish BGP routes and VTEP rows under the new role, not behind slices

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
        if ok:
            rec.hold(role != "master")
            if role == "master" and self._takeover_due.get(rec.datapath.id) is rec:
                del self._takeover_due[rec.datapath.id]
                self._announce_after_takeover(rec)
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
