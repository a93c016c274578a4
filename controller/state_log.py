"""What State logs as vports bind, unbind or disagree with their hypervisor about their MAC, and as a VRS lacks or
gains a VTEP IP (logger ``canopy.state``). ``BindingLog`` is part of State (controller/state.py ``State`` inherits it):
it reads ``locations``, ``mismatched``, ``policy`` and ``vtep_ip_of`` and keeps ``_warned``."""

from __future__ import annotations

import logging

log = logging.getLogger("canopy.state")

LOG_EACH_MOVE = 50  # more vports moving in one change are summarised at info level, listed at debug


class BindingLog:
    """State's log lines of bindings (module docstring)."""

    def _log_vtep_ip(self, old, snap) -> None:
        """One warning when a VRS has no VTEP IP (a likely slip: the key left out or misspelt), one line once it has:
        without it no other switch has a tunnel to its VMs, and nothing else says so."""
        had = old is not None and self.vtep_ip_of(old) is not None
        if self.vtep_ip_of(snap) is None and (old is None or had):
            log.warning("VRS %s has no VTEP IP (external_ids:canopy-vtep-ip, or vrs.hosts in the settings): other "
                        "hypervisors, VTEPs and EVPN peers cannot reach its VMs (docs/vrs.md)", snap.chassis)
        elif old is not None and not had and self.vtep_ip_of(snap) is not None:
            log.info("VRS %s: VTEP IP %s", snap.chassis, self.vtep_ip_of(snap))

    def _log_moved(self, moved) -> None:
        """One line per vport bound or unbound; more than LOG_EACH_MOVE at once: a summary, and each at debug."""
        if not moved:
            return
        new = self.locations
        level = logging.INFO if len(moved) <= LOG_EACH_MOVE else logging.DEBUG
        if level == logging.DEBUG:
            log.info("%d vports bound or unbound at once (%d bound now); each at debug level", len(moved), len(new))
            if not log.isEnabledFor(logging.DEBUG):
                return
        for vid in sorted(moved):
            vport = self.policy.get("vport", vid)
            name = self.policy.ref("vport", vport) if vport else vid
            where = new.get(vid)
            log.log(level, "vport %s %s", name, f"bound at {where.chassis}:{where.port}"
                    + (f" vlan {where.vlan}" if where.vlan else "") if where else "unbound")

    def _warn_mismatches(self, vids):
        """One warning per vport and distinct mismatch (again only after it was resolved or changed)."""
        for vid in sorted(vids):
            loc = self.mismatched[vid]
            vport = self.policy.get("vport", vid)
            key = (loc.attached_mac, vport["mac"], loc.chassis, loc.port)
            if self._warned.get(vid) != key:
                log.warning("vport %s: MAC mismatch at %s:%s: policy MAC %s, the hypervisor reports %s "
                            "(external_ids:attached-mac); not programmed until they agree",
                            self.policy.ref("vport", vport), loc.chassis, loc.port, vport["mac"], loc.attached_mac)
            self._warned[vid] = key
