"""view.external (controller/extnet.py) kept by delta: what a change reaches is worked out per object, and only
those floating IPs and switches are derived again, with the same functions a from-scratch derive uses
(``floating_info``, ``refresh_session``), so both agree (tests/unit/test_incremental_oracle.py).

What reaches what:

- a floating IP changed in policy: itself;
- an external network changed: its floating IPs, and every switch's translation and gateway needs (its uplinks
  in policy, gateway and gateway MAC reach them all);
- a vport that changed or moved: its floating IP;
- a domain changed, or a subnet (its own domain, and the one it was in): the floating IPs of the domain's vports
  (their inside CIDRs, VNIs, MACs) and the translation of the switches the domain is on;
- a VRS snapshot: its translation and gateway needs, and when its uplinks changed (ports named for an external
  network, their numbers), the floating IPs of the vports bound there;
- a subnet or domain arriving on a switch or leaving it: that switch's translation;
- a gateway MAC resolved or forgotten on a switch: the floating IPs active there, and its translation.

A switch's translation and gateway needs are also derived again when one of its floating IPs changed (its NAT
zones are kept by ``ExternalView.set_floating``).
"""

from __future__ import annotations

from controller.extnet import OVSDB_NETWORK_KEY, external_view, floating_info, refresh_session, uplinks_of
from openflow import external


class ExternalDelta:
    def __init__(self):
        self.uplinks: dict[str, tuple] = {}  # session -> (its uplinks, their ofports) as last derived
        self.domain_of: dict[str, str | None] = {}  # subnet -> its domain as last derived

    def apply(self, vd, j, full: bool) -> dict:
        """Update vd.view.external for journal ``j`` (``full``: from scratch); returns the owners whose inputs
        changed and the switches they are or were on."""
        v, s = vd.view, vd.state
        if full:
            v.external = external_view(s.policy, v, s.vrs, s.gateway_macs)
            self._remember(vd, set(s.vrs), {x["id"] for x in s.policy.all("subnet")})
            return {}
        fids, sessions = self._reached(vd, j)
        # an external network changed (its uplinks in policy): every switch's uplinks are taken again
        self._remember(vd, set(s.vrs) | set(j.switches) if j.external_networks else set(j.switches), set(j.subnets),
                       {} if j.external_networks else j.ports)
        if not (s.policy.count("external_network") or v.external.floating or v.external.pat):
            return {}
        ext, policy = v.external, s.policy
        old_f = {fid: ext.floating.get(fid) for fid in fids}
        new_f = {}
        for fid in fids:
            fip = policy.get("floating_ip", fid)
            new_f[fid] = floating_info(policy, v, s.vrs, fip, s.gateway_macs) if fip is not None else None
        sessions |= {f.session for f in (*old_f.values(), *new_f.values()) if f}
        old_s = {session: external.session_part(ext, session) for session in sessions}
        for fid, info in new_f.items():
            ext.set_floating(fid, info)
        for session in sessions:
            refresh_session(ext, policy, v, session, s.vrs.get(session), s.gateway_macs)
        return external.reached_parts(old_f, new_f, old_s,
                                      {session: external.session_part(ext, session) for session in sessions})

    def _reached(self, vd, j) -> tuple[set[str], set[str]]:
        """(floating IP ids, switch sessions) the journal's changes reach (module docstring)."""
        v, s = vd.view, vd.state
        index, ext = s.policy.index(vd.pacer), v.external  # built from scratch after a start: it pauses
        fids, sessions = set(j.floating_ips), set(j.switches) | set(vd.presence)
        for net_id in j.external_networks:
            fids.update(index.ids("floating_ip", "floating_in", net_id))
            sessions |= set(v.switches) | set(ext.pat_by_session) | set(ext.gateways)
        domains = set(j.domains)
        for sid in j.subnets:
            sub = v.subnets.get(sid)
            domains |= {d for d in (self.domain_of.get(sid), sub.domain_id if sub else None) if d}
        for did in domains:
            sessions |= vd.dom_on.get(did, set())
            fids |= {fid for fid, f in ext.floating.items() if f.domain_id == did} if did not in v.domains else set()
        moved = {session for session in j.switches
                 if self.uplinks.get(session) != _uplinks_after(s.policy, s.vrs.get(session), self.uplinks.get(session),
                                                                 j.ports.get(session))}
        for session in moved:
            fids |= set(ext.by_session.get(session, ()))
        if s.policy.count("floating_ip"):  # else no vport has one: the index is not asked per vport
            fids |= _floating_of_vports(index, vd, j, domains, moved)
        for session, net_id in j.gateways:
            sessions.add(session)
            fids |= {fid for fid, f in ext.by_session.get(session, {}).items() if f.network_id == net_id}
        return fids, sessions

    def _remember(self, vd, sessions, subnets, ports=None) -> None:
        """The uplinks of ``sessions`` (``ports``: session -> the port names changed since they were last
        taken, ``Journal.ports``; a session not there: taken whole) and the domains of ``subnets``."""
        policy, v, ports = vd.state.policy, vd.view, ports or {}
        for session in sessions:
            snap = vd.state.vrs.get(session)
            if snap is None:
                self.uplinks.pop(session, None)
            else:
                self.uplinks[session] = _uplinks_after(policy, snap, self.uplinks.get(session), ports.get(session))
        for sid in subnets:
            sub = v.subnets.get(sid)
            if sub is None:
                self.domain_of.pop(sid, None)
            else:
                self.domain_of[sid] = sub.domain_id


def _floating_of_vports(index, vd, j, domains, moved) -> set[str]:
    """The floating IPs of the vports that changed or moved, of the vports of ``domains``, and of the vports bound
    on the switches whose uplinks changed (``moved``)."""
    vids = set(vd.changed) | set(j.vports)
    for did in domains:
        for sid in index.ids("subnet", "in_domain", did):
            vids.update(index.ids("vport", "in_subnet", sid))
    for session in moved:
        vids.update(vd.by_session.get(session, ()))
    return {fid for vid in vids for fid in index.ids("floating_ip", "floating_on", vid)}


NO_UPLINKS = ((), ())


def _uplinks_after(policy, snap, old, changed) -> tuple | None:
    """``_uplinks`` of ``snap``, taken again only when the reports since ``old`` was taken can have changed
    them (work proportional to the change, not to the ports of the bridge): with no external network there are
    none; when ``changed`` (``Journal.ports``: the names of the ports changed over every report since, None:
    unknown) holds no port that was an uplink or is marked for an external network, they are ``old``. Not the
    last report's own ``changed``: two reports can land between two passes, or one during a pass's pause.
    Whoever changes external networks in policy takes every switch's uplinks again."""
    if snap is None:
        return None
    if not policy.count("external_network"):
        return NO_UPLINKS
    if old is not None and changed is not None:
        before = {up.port for _net, up in old[0]}
        ports = snap.ports_named(changed - before)
        if not any(name in before or (name in ports and ports[name].ext(OVSDB_NETWORK_KEY)) for name in changed):
            return old
    return _uplinks(policy, snap)


def _uplinks(policy, snap) -> tuple | None:
    """A switch's uplinks to external networks and the numbers of their ports: when these change, its floating
    IPs are derived again."""
    if snap is None:
        return None
    ups = uplinks_of(policy, snap)
    names = {u.port for u in ups.values()}
    return tuple(sorted(ups.items())), tuple(sorted((p.name, p.ofport) for p in snap.ports if p.name in names))
