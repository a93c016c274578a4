"""State: the one place everything Canopy knows comes together.

Inputs change it as deltas (policy commits with their change list, VRS snapshots with the ports that changed,
hardware VTEP snapshots, EVPN routes after import policy, datapaths from OpenFlow). State keeps vport locations
current with a binding index (controller/binding.py ``BindingIndex``): a changed port or a changed vport
re-resolves only the vports it reaches. Every change is recorded in the change journals of its readers
(controller/journal.py; the Programmer drains its own), naming the objects it reached. State never talks to a
device: subscribers are told that something changed and do their own work.
"""

from __future__ import annotations

import itertools
import logging
import operator
import time
import weakref

from controller import binding, commits
from controller.discovery import DiscoverySink, VrsSnapshot, VtepSnapshot
from controller.journal import Journal
from controller.keyed import drop_keys
from controller.ofports import OfportHints
from controller.pacer import NEVER, Finishing, Pacer, runs
from controller.policy import Policy
from controller.remote import RemoteDelta, RemoteIndex, RemoteTable, changed_scopes
from controller.state_activation import Activations
from controller.state_leaving import Leaving
from controller.state_log import BindingLog
from controller.state_ports import ReportPorts, changed_ports, log_bridge_safety
from controller.state_report import StateReport, dpid_str
from controller.store import Change

log = logging.getLogger("canopy.state")
RELOCATE_CHUNK = 250  # vports re-resolved (and recorded) between two chances to pause (``State.pacer``)
INDEX_CHUNK = 250  # ports of a report forgotten and learnt by the binding index between two chances to pause
_NAME = operator.attrgetter("name")


class State(Activations, Leaving, ReportPorts, StateReport, BindingLog, DiscoverySink):
    def __init__(self, policy: Policy, default_flavour: str = "kvm", last_seq: int = 0, hosts=()):
        self.policy = policy
        self.last_seq = last_seq
        self._settling: list[int] = []  # last_seq before each commit State is still taking (its vports relocated)
        self.default_flavour = default_flavour
        self.hosts = dict(hosts)  # chassis -> {"vtep_ip", "flavour"} from settings; wins over OVSDB
        self.vrs: dict[str, VrsSnapshot] = {}
        self.vteps: dict[str, VtepSnapshot] = {}  # hardware VTEPs by switch key ("vtep:<name>", ovsdb/claims.py)
        self.vrs_since: dict[str, float] = {}
        self.datapaths: dict[int, dict] = {}
        self.locations: dict[str, binding.Location] = {}  # bound vports: these are programmed
        self.mismatched: dict[str, binding.Location] = {}  # located, but the hypervisor reports another MAC
        self._warned: dict[str, tuple] = {}  # vport id -> the mismatch last logged for it
        self.gateway_macs: dict[tuple[str, str], str] = {}  # (VRS session, external network id) -> MAC by ARP
        self.gateway_replicated: set[tuple[str, str]] = set()  # those of gateway_macs the HA active sent, not heard
        self.gateway_version = 0  # raised by every change of gateway_macs (controller/gatewaykeep.py sends them)
        self.remote_index = RemoteIndex()  # what of it our import policy takes (kept by bgp.federation)
        self._seen: dict[tuple, int] = {}  # (session, port, vlan) -> order of first appearance
        self._seen_ports: dict[str, dict[str, list]] = {}  # session -> port name -> its keys in _seen
        self._clock = itertools.count(1)
        self._rank: dict[str, int] = {}  # VRS session -> order it connected in (ties between sightings)
        self.tunnel_ports: dict[str, dict[str, int]] = {}  # VRS session -> {VXLAN port: ofport} (derive.switch_info)
        self.agent_ports: dict[str, dict[str, tuple]] = {}  # VRS session -> {metadata agent port: (ofport, MAC)}
        self._init_activations()  # a live migration's destination activated by its first packet
        self.ofport_hints = OfportHints()  # ports numbered by the switch before OVSDB says so (controller/ofports.py)
        self._dpid_session: dict[int, str] = {}  # datapath id -> the VRS session reporting it
        self._ranks = itertools.count(1)
        self.index = binding.BindingIndex()
        self.reports_taking = 0  # VRS reports being taken now (vrs_update, across its pauses)
        self.partial: dict[str, int] = {}  # VRS session -> its first reports being taken now (vrs_update): in a pause
        # the switch may be in ``vrs`` (and the journals) with only some of its vports located, or not yet
        self.partial_chassis: dict[str, int] = {}  # the chassis of those reports -> how many (the start-up hold's)
        self._ended: dict[str, int] = {}  # VRS session in ``partial`` -> times it went (vrs_gone) since (_vrs_apply)
        self._whole: set[str] = set()  # VRS sessions whose next report is taken whole (a report failed: _failed)
        self.pacer: Pacer = NEVER  # big reports and commits pause (the app: hub.sleep(0)); see _port_keys, _relocate
        self._journals = weakref.WeakSet()
        self._commits = commits.OneAtATime()  # policy commits taken one after another (policy_committed)
        self._learn_policy(policy)
        self._subscribers = []
        self._leaving_listeners = []  # told of vports whose ports a VRS is deleting (controller/state_leaving.py)
        self.version = 0  # grows with every change of anything State holds (REST readers poll it)
        self.up_since = time.monotonic()  # uptime: a step of the wall clock does not change it
        # connections seen (for metrics): openflow, vrs, vtep and each kind's "_down"
        self.connects: dict[str, int] = dict.fromkeys(("openflow", "openflow_down", "vrs", "vrs_down", "vtep",
                                                       "vtep_down"), 0)

    # ------------------------------------------------------------------ subscriptions
    def subscribe(self, callback):
        """callback(what: str, detail) after every change; what in policy|vrs|vtep|datapath|locations|bgp|external,
        or settled: a commit's relocation ended (``settled_seq`` grew: a pass in its pauses computed from before it)."""
        self._subscribers.append(callback)

    def _notify(self, what, detail=None):
        self.version += 1
        for callback in self._subscribers:
            try:
                callback(what, detail)
            except Exception:  # a subscriber's bug must not break State
                log.exception("subscriber %r failed on %s", callback, what)

    # ------------------------------------------------------------------ policy
    def journal(self) -> Journal:
        """A change journal of this State for one reader (the Programmer), recording from now on."""
        journal = Journal()
        self._journals.add(journal)
        return journal

    def _record(self, what: str, items) -> None:
        for journal in self._journals:
            getattr(journal, what).update(items)

    def _record_ports(self, session: str, names) -> None:
        """The ports of a VRS that changed in one report (None: every port), added to what each journal holds."""
        for journal in self._journals:
            held = journal.ports.get(session, set())
            journal.ports[session] = None if names is None or held is None else held | names

    def _record_security(self) -> None:
        for journal in self._journals:
            journal.security = True

    def _record_external(self) -> None:
        for journal in self._journals:
            journal.external = True

    def gateway_learned(self, session: str, network_id: str, mac: str | None, replicated: bool = False) -> None:
        """What a VRS's ARP resolution found for an external network's gateway (openflow/gateway_arp.py), or what
        the HA active said it found (``replicated``: controller/gatewaykeep.py); None: forgotten (no answer in
        time). A MAC that did not change is no change (only where it came from is noted)."""
        key = (session, network_id)
        if replicated and mac is not None:
            self.gateway_replicated.add(key)
        else:
            self.gateway_replicated.discard(key)
        if self.gateway_macs.get(key) == mac:
            return
        if mac is None:
            del self.gateway_macs[key]
        else:
            self.gateway_macs[key] = mac
        self.gateway_version += 1
        self._record_external()
        self._record("gateways", [key])
        self._notify("external", key)

    @property
    def remote(self) -> RemoteTable:
        """EVPN routes after import policy, whole (built from ``remote_index`` when read)."""
        return self.remote_index.table()

    @remote.setter
    def remote(self, table: RemoteTable) -> None:
        """EVPN routes after import policy, whole (tests, tools): ``take_remote`` with State's pacer."""
        self.take_remote(table)

    def take_remote(self, table: RemoteTable, pacer: Pacer | None = None) -> bool:
        """EVPN routes after import policy, from scratch (bgp.federation, at start and after a policy change); True
        when they changed. Compared with the index entry by entry, ``pacer`` (default: State's) ticked per entry
        (``RemoteIndex.delta_to``), and taken as the delta found (``remote_changed``): the index, the journal and
        its readers get only what changed. A table with two locations for one (subnet, MAC), which the import never
        makes (only a table given whole), replaces the index whole: the journal gets the subnets and domains whose
        entries were added or withdrawn. Neither the index nor ``table`` may change during the pauses (the
        programming loop's import)."""
        delta = self.remote_index.delta_to(table, self.pacer if pacer is None else pacer)
        if delta is not None:
            if delta:
                self.remote_changed(delta)
            return bool(delta)
        subnets, domains = changed_scopes(self.remote_index.table(), table)
        self.remote_index = RemoteIndex(table)
        self._record("remote_subnets", subnets)
        self._record("remote_domains", domains)
        return bool(subnets or domains)

    def remote_changed(self, delta: RemoteDelta) -> None:
        """EVPN routes added and withdrawn after import policy (bgp.federation, every round of received
        routes): the index takes the delta, the journal gets the (subnet, MAC) pairs, the subnets of the
        flood targets and the domains of the prefixes it reached."""
        macs, subnets, domains = self.remote_index.apply(delta)
        self._record("remote_macs", macs)
        self._record("remote_subnets", subnets)
        self._record("remote_domains", domains)

    def committing(self, wait: float | None = None, holder: str = "a policy commit"):
        """A context for a whole policy commit: from reading ``policy`` to build the candidate until
        ``policy_committed`` has taken it, no other commit lands (controller/commits.py ``OneAtATime.section``:
        ``wait`` bounds the wait for it, CommitBusy past it; ``holder`` names this commit to those waiting)."""
        return self._commits.section(wait, holder)

    def commit_busy(self) -> str | None:
        """What holds the commit section now and for how long, or None (read without waiting)."""
        return self._commits.busy()

    def policy_committed(self, policy: Policy, changes):
        """A commit (its change list; none: a policy replaced wholesale). What it reaches is read first
        (controller/commits.py), pausing (``pacer``) every so many changes: that reads only the two policies and the
        changes, and State is unchanged meanwhile (another commit waits until this one is taken: ``OneAtATime``).
        Then State takes the commit in one stretch (policy, binding index, journal), and the vports it reaches are
        re-resolved in chunks (_relocate, pausing between them)."""
        before = self.last_seq  # (a commit landing while this one waits for its turn: only later said settled)
        self._settling.append(before)
        try:
            with self._commits.held():
                old = self.policy
                read = None if not changes and old is policy else commits.read_changes(old, policy, changes, self.pacer)
                self.policy = policy
                if changes:
                    self.last_seq = max(self.last_seq, changes[-1].seq)
                reached = set() if read is None else self._take_changes(read)
                self._notify("policy", changes)
            self._relocate(reached)
        finally:
            self._settling.remove(before)
        if reached and self.settled_seq > before:  # (without a vport reached nothing paused: the next pass has it)
            self._notify("settled")

    @property
    def settled_seq(self) -> int:
        """The newest policy seq State has taken whole: every commit up to it, its vports re-resolved too (a commit's
        relocation pauses: a programming pass meanwhile sees only part of it). What a pass computes from
        (Programmer.revision) and so what a switch in sync with that pass has programmed (docs/operations.md)."""
        return min(self._settling) if self._settling else self.last_seq

    def _learn_policy(self, policy) -> None:
        """Index every vport of a policy (from scratch)."""
        self.index = binding.BindingIndex()
        for vport in policy.all("vport"):
            self.index.learn_vport(vport)

    def _take_changes(self, read: commits.CommitRead) -> set[str]:
        """The binding index updated from a commit's changes as read (keys computed already), the journal told;
        returns the vports to re-resolve."""
        crossed = self.index.take_vports(read.vports)  # Hyper-V vports on the ports of a KVM vport created or
        # deleted (binding.py ``conflicting``)
        if crossed:
            read.reached |= crossed
        if read.security:
            self._record_security()
        if read.external:
            self._record_external()
        for what, items in read.records.items():
            if items:
                self._record(what, items)
        return read.reached

    # ------------------------------------------------------------------ discovery (DiscoverySink)
    def vrs_update(self, snap: VrsSnapshot) -> None:
        """A VRS's report (its ports' numbers completed by what the switch announced before OVSDB had them);
        ``reports_taking`` counts the reports being taken (a big one pauses: the programming loop waits for it).

        A switch's first report (State does not know it) is named in ``partial`` (its chassis in ``partial_chassis``)
        while it is taken: in its pauses the switch is not known yet (its ports read), known but not in the journals
        (its ports indexed), or known with only some of its vports located, and a programming pass then sees it so
        (the start-up hold does not end on such a pass, the switch in its View or not: controller/app.py
        ``_partial``). If it paused, State's last change is notified again once it is taken whole: the pass that sees
        it whole runs even if nothing else changes.

        A report that fails (raises) leaves no switch half taken in (``_failed``): State goes back to what it last
        held whole of the switch (its VMs stay bound), and the switch's next report is taken whole."""
        session, old, pauses = snap.session, self.vrs.get(snap.session), self.pacer.pauses
        first, whole, taking = old is None, snap.session in self._whole, snap
        self.reports_taking += 1
        if first:
            self.partial[session] = self.partial.get(session, 0) + 1
            self.partial_chassis[snap.chassis] = self.partial_chassis.get(snap.chassis, 0) + 1
        try:
            taking = self.ofport_hints.apply(snap, old)
            self._vrs_apply(taking, whole)
            if whole and self.vrs.get(session) is taking:
                self._whole.discard(session)
        except BaseException as exc:  # (GreenletExit too: its OVSDB session killed in a pause)
            self._failed(taking, old, exc)
            raise
        finally:
            self.reports_taking -= 1
            if first:
                self.partial[session] -= 1
                if not self.partial[session]:
                    del self.partial[session]
                    self._ended.pop(session, None)
                self.partial_chassis[snap.chassis] -= 1
                if not self.partial_chassis[snap.chassis]:
                    del self.partial_chassis[snap.chassis]
        if first and session not in self.partial and session in self.vrs and self.pacer.pauses != pauses:
            self._notify("vrs", session)

    def _vrs_apply(self, snap: VrsSnapshot, whole: bool = False) -> None:
        """What its changed ports show is read first (_read_ports), pausing (``pacer``) every so many ports: that
        reads only ``snap`` and changes nothing. Then State takes the report (_take: the binding index is updated in
        chunks, pausing between them), and the vports it reaches are re-resolved in chunks (_relocate, pausing
        before and between them). The switch's end landing while a first report is read drops that report (the
        switch is not kept as present: ``_ended``). ``whole``: every port counts as changed (``_failed``)."""
        old = self.vrs.get(snap.session)
        ends = self._ended.get(snap.session, 0)
        changed = None if whole else changed_ports(old, snap, self.flavour_of)
        found = None if changed is None else snap.ports_named(changed)  # the changed ports still there
        read = self._read_ports(snap, changed, found, self.pacer)
        if self.vrs.get(snap.session) is not old:
            self._superseded(snap)
        elif old is None and self._ended.get(snap.session, 0) != ends:
            log.info("VRS %s: its first report is dropped: the switch went while it was read", snap.chassis)
        else:
            self._take(old, snap, changed, found, read)

    def _failed(self, snap, old, exc: BaseException, what: str = "its report") -> None:
        """Taking ``snap`` raised: State may hold its switch half taken in (some ports indexed, some vports located),
        and what its reporter reports next is a delta against ``snap`` (ovsdb/claims.py keeps it as reported). So State
        takes again, whole, what it last held whole of the switch: ``old`` (its report before), or the report that
        superseded ``snap`` in a pause; and marks the switch (``_whole``): its next report is taken whole, every port
        re-read. Its VMs stay bound meanwhile, through its OVSDB session's reconnect grace (the session ends on the
        error: ovsdb/peersession.py). A switch State held nothing whole of (``snap`` was its first report), or whose
        retaking fails too, is forgotten: never kept half taken in. Not an end of the switch (``_ended``): a report of
        it read meanwhile is taken. ``what``: what could not be taken (a port numbered by the switch: ofport_seen).

        The retaking pauses as a report does (_take: every port State holds anything of forgotten and learnt again, in
        chunks); a pause that raises (the green thread killed again) ends the pauses: the rest is done without them,
        then that is raised (``Finishing``): no vport is left located from the index as it was before."""
        current = self.vrs.get(snap.session)
        keep = old if current is snap else current
        log.log(logging.WARNING if isinstance(exc, Exception) else logging.INFO,  # (not: its session killed, a stop)
                "VRS %s: %s could not be taken (%s: %.200s): %s", snap.chassis, what, type(exc).__name__, exc,
                "forgotten until it is reported again, then taken whole" if keep is None else
                "its last report taken whole is kept (its VMs stay bound), its next one is taken whole")
        pacer = Finishing(self.pacer)
        try:
            if keep is None:
                self._forget(snap.session, pacer)
            else:
                self._whole.add(snap.session)
                if snap.datapath_id != keep.datapath_id and self._dpid_session.get(snap.datapath_id) == snap.session:
                    del self._dpid_session[snap.datapath_id]
                self.vrs[snap.session] = keep  # (before a pause: a report read from now on is a delta against it)
                read = self._read_ports(keep, None, None, pacer)
                if self.vrs.get(snap.session) is keep:
                    self._take(keep, keep, None, None, read, pacer)
                else:  # a report of the switch (taken whole: _whole), or its end, landed in a pause of the read
                    self._superseded(keep, pacer)
        except Exception:  # (the report's error is the one raised)
            log.exception("VRS %s: taking its last report again after the failed one failed too: forgotten",
                          snap.chassis)
            try:
                self._forget(snap.session, pacer, everywhere=True)
            except Exception:
                log.exception("VRS %s: forgetting it failed too", snap.chassis)
        pacer.raise_held()

    def _superseded(self, snap, pacer: Pacer | None = None) -> None:
        """Another report of this switch (another OVSDB session speaking for it) or its end landed while ``snap`` was
        read: that one is newer and wins. Its ``changed`` may have been relative to ``snap`` (its reporter's previous
        report), which State never took: the switch, if still there, is taken again whole (every port re-read in one
        stretch; a rare race). ``pacer`` (default State's): ticked while the vports reached are re-resolved."""
        current = self.vrs.get(snap.session)
        log.info("VRS %s: a report was superseded while it was read (a later one, or the switch gone)", snap.chassis)
        if current is not None:
            self._take(current, current, None, None, self._read_ports(current, None, None, NEVER), pacer, NEVER)

    def _take(self, old, snap, changed, found, read, pacer: Pacer | None = None, index_pacer: Pacer | None = None):
        """State takes a report: ``changed`` names the ports that changed since ``old`` (None: all), ``found`` those
        of them still there, ``read`` what they show. ``pacer`` (default State's): ticked while the binding index
        is updated (_index_ports; ``index_pacer`` there if given) and the vports reached are re-resolved; a report of
        the switch, or its end, landing in the index's pauses stops that, and the switch is taken again whole,
        without pauses (_superseded). A switch State knew taken whole (every port changed: its chassis, datapath
        or flavour changed, or a report failed) is taken as a delta of every port State holds anything of and every
        port of ``snap`` (_held_names): each forgotten and learnt again in chunks, paused like any delta."""
        pacer = self.pacer if pacer is None else pacer
        every = changed is None
        if every and old is not None:
            changed, found = self._held_names(snap), dict(zip(map(_NAME, snap.ports), snap.ports))
        if snap.datapath_id is not None:
            self._dpid_session[snap.datapath_id] = snap.session
        if old is None:
            self.vrs_since[snap.session] = time.time()
            self.connects["vrs"] += 1
            log.info("VRS %s connected over OVSDB from %s (bridge %s, dpid %s)", snap.chassis, snap.peer,
                     snap.bridge, dpid_str(snap.datapath_id))
        self.vrs[snap.session] = snap
        self._rank.setdefault(snap.session, next(self._ranks))
        log_bridge_safety(old, snap)
        self._log_vtep_ip(old, snap)
        self._mark_seen(snap, changed, read.seen)
        self._track_tunnels(snap, changed, read)
        reached = self._index_ports(snap, changed, found, read.keys, pacer if index_pacer is None else index_pacer)
        if self.vrs.get(snap.session) is not snap:  # that one recorded the switch; ours reached vports all the same
            self._superseded(snap, pacer)
            self._relocate(reached, pacer)
            return
        self._record("switches", [snap.session])
        self._record_ports(snap.session, None if every else changed)
        self._notify("vrs", snap.session)
        pacer.tick(len(read.keys))  # the ports taken count: a big report pauses before its vports are re-resolved
        self._relocate(reached, pacer)

    def _held_names(self, snap) -> set[str]:
        """The names of the ports of ``snap`` and of every port of its switch State holds anything of (the binding
        index, first appearances, tunnel and agent ports): a whole take forgets and learns each (_take)."""
        names, session = set(map(_NAME, snap.ports)), snap.session
        for held in (self.index.shown, self._seen_ports, self.tunnel_ports, self.agent_ports):
            names.update(held.get(session, ()))
        return names

    def ofport_seen(self, dpid: int, name: str, ofport: int) -> None:
        """The switch ``dpid`` announced port ``name`` as ``ofport`` (OpenFlow PORT_STATUS, reason add or modify):
        a port OVSDB has not numbered yet is bound with it now (controller/ofports.py). Taking it fails as a report
        does (``_failed``: the switch's last report taken again whole, its next report whole; the hint dropped)."""
        session = self._dpid_session.get(dpid)
        snap = self.vrs.get(session) if session is not None else None
        if snap is None or snap.datapath_id != dpid:
            return
        numbered = self.ofport_hints.seen(session, snap, name, ofport)
        if numbered is not None:
            log.debug("port %s of %s numbered %d by the switch before OVSDB", name, snap.chassis, ofport)
            try:
                self._vrs_apply(numbered)
            except BaseException as exc:  # as a report that fails: ``snap`` taken again whole, the next report whole
                self.ofport_hints.forget(session, name)  # (OVSDB's number follows)
                self._failed(numbered, snap, exc, f"port {name} numbered {ofport} by the switch")
                raise

    def ofport_deleted(self, dpid: int, name: str) -> None:
        """The switch ``dpid`` deleted port ``name`` (PORT_STATUS, reason delete): its hint ends (OVSDB reports the
        row going)."""
        session = self._dpid_session.get(dpid)
        if session is not None:
            self.ofport_hints.forget(session, name)

    def vrs_gone(self, session: str) -> None:
        """The switch went (its OVSDB session's grace over: ovsdb/claims.py). A first report of it being read now
        is dropped (``_ended``)."""
        if session in self.partial:
            self._ended[session] = self._ended.get(session, 0) + 1
        self._forget(session)

    def _forget(self, session: str, pacer: Pacer | None = None, everywhere: bool = False) -> None:
        """Everything State holds of a VRS goes (``vrs_gone``, ``_failed``); ``pacer`` (default State's): ticked while
        the vports it showed are re-resolved; ``everywhere``: those located on it too (the index may have lost some
        of its ports: a failure between forgetting and learning them)."""
        self._whole.discard(session)
        self.ofport_hints.gone(session)
        snap = self.vrs.pop(session, None)
        if snap is not None and self._dpid_session.get(snap.datapath_id) == session:
            del self._dpid_session[snap.datapath_id]
        for key in [k for k in self.gateway_macs if k[0] == session]:
            del self.gateway_macs[key]
            self.gateway_replicated.discard(key)
            self.gateway_version += 1
        self.vrs_since.pop(session, None)
        self._rank.pop(session, None)
        self.tunnel_ports.pop(session, None)
        self.agent_ports.pop(session, None)
        for keys in self._seen_ports.pop(session, {}).values():
            for key in keys:
                self._seen.pop(key, None)
        if snap is not None:
            self.connects["vrs_down"] += 1
            log.info("VRS %s (OVSDB %s) disconnected", snap.chassis, snap.peer)
            reached = {vid for located in (self.locations, self.mismatched) for vid, loc in located.items()
                       if loc.session == session} if everywhere else set()
            self.index.forget_session(session, snap.chassis, reached)
            self._record("switches", [session])
            self._record_ports(session, None)
            self._notify("vrs", session)
            self._relocate(reached, pacer)

    def _index_ports(self, snap, changed, found, keys, pacer: Pacer) -> set[str]:
        """Update the binding index for the ports that changed (``keys``: theirs, from _read_ports); returns the
        vport ids they reach. A port that changed or came is forgotten and learnt at once, in chunks of
        INDEX_CHUNK ports, ``pacer`` ticked per port; the ports that went are forgotten last, in chunks too, each
        with its order of first appearance. So in a pause every port shows either what it showed or what it shows
        now, and a vport moving from a port that went to one that came is never found nowhere: what a handler
        resolves in a pause is a state the switch could have reported (the report in parts). Stops after a pause in
        which another report of the switch, or its end, landed (the caller then takes the switch whole). ``changed``
        None: a first report (State holds none of its ports: _take)."""
        reached = set()
        if changed is None:
            ports, gone = snap.ports, ()
        else:
            ports, gone = list(map(found.__getitem__, sorted(found))), sorted(set(changed).difference(found))
        flavour, rank = self.flavour_of(snap), self._rank[snap.session]
        for start in range(0, len(ports), INDEX_CHUNK):
            chunk = ports[start:start + INDEX_CHUNK]
            if changed is not None:  # (what each port showed forgotten first: no port's reaches another's)
                self.index.forget_ports(snap.session, list(map(_NAME, chunk)), reached)
            for port in chunk:
                self.index.learn_port(snap, rank, flavour, port, reached, keys[port.name])
            pacer.tick(len(chunk))
            if self.vrs.get(snap.session) is not snap:
                return reached
        for names in runs(pacer, gone, INDEX_CHUNK):  # 10,000 ports deleted at once: ~50 ms in one piece
            self.index.forget_ports(snap.session, names, reached)
            self._forget_seen(snap.session, names)  # with the index: in a pause a port is all there or all gone
            pacer.tick(len(names))
            if self.vrs.get(snap.session) is not snap:
                return reached
        return reached

    def vtep_update(self, snap: VtepSnapshot) -> None:
        """A hardware VTEP's snapshot. With ``snap.changed`` (and the switch otherwise as before) the journal gets
        only the VNIs whose local MACs changed; else the whole VTEP."""
        old = self.vteps.get(snap.session)
        if old is None:
            self.connects["vtep"] += 1
            log.info("hardware VTEP %s connected over OVSDB from %s (tunnel IP %s)", snap.name, snap.peer,
                     snap.tunnel_ip)
        self.vteps[snap.session] = snap
        if snap.changed is not None and snap.same_switch(old):
            self._record("vtep_vnis", {(snap.session, mac.vni) for mac in snap.changed})
        else:
            self._record("vteps", [snap.session])
        self._notify("vtep", snap.session)

    def vtep_gone(self, session: str) -> None:
        snap = self.vteps.pop(session, None)
        if snap is not None:
            self.connects["vtep_down"] += 1
            log.info("hardware VTEP %s (OVSDB %s) disconnected", snap.name, snap.peer)
            self._record("vteps", [session])
            self._notify("vtep", session)

    def bgp_received(self, pending: int) -> None:
        """BGP peers sent routes (``pending`` route changes wait for the programming loop's import)."""
        self._notify("bgp", pending)

    def datapath_up(self, dpid: int, peer: str, conn=None) -> None:
        self.datapaths[dpid] = {"peer": peer, "since": time.time(), "conn": conn}
        self.connects["openflow"] += 1
        log.info("datapath %s connected over OpenFlow from %s", dpid_str(dpid), peer)
        self._notify("datapath", dpid)

    def datapath_down(self, dpid: int, conn=None) -> None:
        """``conn`` names the connection that closed: a late close of a replaced connection is ignored."""
        current = self.datapaths.get(dpid)
        if current is None or (conn is not None and current["conn"] not in (None, conn)):
            return
        del self.datapaths[dpid]
        self.connects["openflow_down"] += 1
        log.info("datapath %s disconnected", dpid_str(dpid))
        self._notify("datapath", dpid)

    # ------------------------------------------------------------------ derived views
    def flavour_of(self, snap: VrsSnapshot) -> str:
        return self.hosts.get(snap.chassis, {}).get("flavour") or snap.flavour or self.default_flavour

    def vtep_ip_of(self, snap: VrsSnapshot) -> str | None:
        return self.hosts.get(snap.chassis, {}).get("vtep_ip") or snap.vtep_ip

    def _relocate(self, reached, pacer: Pacer | None = None):
        """Re-resolve the vports a change reached (binding.BindingIndex); the rest keep their location. Done in
        chunks of RELOCATE_CHUNK, each recorded in the journals and notified before ``pacer`` may pause: in a
        pause every input may change (a commit, another report, a switch gone) and a programming pass may run, but
        the binding index is whole then, and a vport's location is re-resolved from it whenever it is reached
        (here or by the change that landed), so a vport re-resolved after a pause is resolved from the newest.
        ``pacer``: State's unless given."""
        pacer = self.pacer if pacer is None else pacer
        reached, moved = list(reached), set()
        for chunk in runs(pacer, reached, RELOCATE_CHUNK):  # (ending where a BoundedPacer checks its clock too)
            moved |= self._relocate_some(chunk)
            pacer.tick(len(chunk))
        self._log_moved(moved)

    def _relocate_some(self, vids) -> set[str]:
        def seen_order(session, port, vlan, seen=self._seen):
            return seen.get((session, port, vlan), 0)

        warn, index, locations, mismatched = set(), self.index, self.locations, self.mismatched
        restored = self.restored  # (a restart's records: their vports' locations before, _hold_restored)
        before = {vid: locations.get(vid) for vid in restored.intersection(vids)} if restored else None
        nowhere = index.shown_nowhere(vids)  # (unbound: not located one by one, 10,000 ports gone at once)
        if index.conflicts:  # (shown nowhere: no port to conflict over)
            drop_keys(index.conflicts, nowhere)
        drop_keys(self._warned, drop_keys(mismatched, nowhere))
        moved = set(drop_keys(locations, nowhere))
        vports = self.policy.objects["vport"]  # (``Policy.get``'s, without its call per vport)
        activated = self.activated
        for vid in itertools.filterfalse(set(nowhere).__contains__, vids) if nowhere else vids:
            loc = index.locate(vid, seen_order, activated.get(vid)) if vid in index.key_of else None
            bound = None if loc is None or binding.is_mismatch(vports.get(vid), loc) else loc
            if loc is not None and bound is None:
                mismatched[vid] = loc
                warn.add(vid)
            elif vid in mismatched:
                del mismatched[vid]
                self._warned.pop(vid, None)
            was = locations.get(vid)
            if (bound is None) != (was is None) or (bound is not None and bound != was):  # (new: no __eq__ call)
                moved.add(vid)
                if bound is None:
                    del locations[vid]
                else:
                    locations[vid] = bound
        if before:
            self._hold_restored(vids, before, moved, warn)  # (controller/state_activation.py)
        self._warn_mismatches(warn)
        if index.new_conflicts:
            self._warn_conflicts()  # (controller/state_report.py)
        self._track_standbys(vids)
        if moved:
            self._record("vports", moved)
            self._notify("locations", moved)
        return moved
