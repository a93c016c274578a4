"""What changed in State since a reader last looked: the change journal the Programmer drains.

State records every change it takes as the objects it reaches (vports, subnets, domains, VRS and hardware
VTEP sessions, EVPN scopes, whether security policy or external networks changed); ``controller.viewdelta``
updates the derived View for just those and tells the Programmer which owners to recompile where. A policy
replaced without a change list (a snapshot restore on an HA standby) is compared with the previous one, so it
too arrives as the objects that changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(eq=False)
class Journal:
    vports: set[str] = field(default_factory=set)  # policy or location changed
    vport_policies: set[str] = field(default_factory=set)  # of those, the ones whose policy changed (a move alone
    # changes nothing security or the bare-metal servers read: 10,000 ports bound are 10,000 vports, no policy)
    subnets: set[str] = field(default_factory=set)  # policy changed (vtep bindings and bare-metal servers too)
    domains: set[str] = field(default_factory=set)  # policy changed
    switches: set[str] = field(default_factory=set)  # VRS sessions updated, connected or gone
    ports: dict[str, set[str] | None] = field(default_factory=dict)  # VRS session -> names of the ports changed
    # over every report since the journal was taken (None: all of them; a session in ``switches`` and not here:
    # none named), so a reader that skipped a report still sees what it changed (controller/extdelta.py)
    vteps: set[str] = field(default_factory=set)  # hardware VTEP sessions updated, connected or gone
    vtep_vnis: set[tuple[str, int]] = field(default_factory=set)  # (VTEP session, VNI): only local MACs changed
    remote_subnets: set[str] = field(default_factory=set)  # EVPN MACs or type 3 floods changed there
    remote_macs: set[tuple[str, str]] = field(default_factory=set)  # (subnet, MAC) whose EVPN route changed
    remote_domains: set[str] = field(default_factory=set)  # EVPN prefixes changed there
    security: bool = False  # ACLs, policy groups, or what a port's policy derives from changed beyond one vport
    external: bool = False  # external networks, floating IPs or resolved gateway MACs changed (controller/extnet.py)
    floating_ips: set[str] = field(default_factory=set)  # floating IPs changed in policy
    external_networks: set[str] = field(default_factory=set)  # external networks changed in policy
    gateways: set[tuple[str, str]] = field(default_factory=set)  # (session, network id): resolved MAC changed
    acls: set[str] = field(default_factory=set)  # ACLs changed (controller/security.py LiveSecurity)
    groups: set[str] = field(default_factory=set)  # policy groups changed

    def empty(self) -> bool:
        return not (self.security or self.external or self.vports or self.subnets or self.domains or self.switches
                    or self.vteps or self.vtep_vnis or self.remote_subnets or self.remote_macs or self.remote_domains
                    or self.acls or self.groups)

    def take(self) -> "Journal":
        """What was recorded (returned) and a clean slate (this journal)."""
        out = Journal(**{name: getattr(self, name) for name in self.__dataclass_fields__})
        self.__init__()
        return out
