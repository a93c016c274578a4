"""EVPN federation: the glue between State and the BGP speaker.

Data flow (DESIGN.md): the speaker's receive handler only collects the route changes and wakes the programming
loop (``State.bgp_received``); the programming loop then imports it (``refresh_import``: import policy ->
``State.remote``), recompiles flows, and announces (``publish``: MAC mobility, then the pure originate
compiler, then the speaker sends only the difference).

The import goes by delta: the receive handler also collects the speaker's route changes
({(peer, key): route or None}, ``RouteBook.take_received_changes``), and ``refresh_import`` hands only
those to the importer (``bgp.importer.RouteImport``), so a round costs what changed, not what was
received, and State takes only what it changed (``State.remote_changed``: its index, and the (subnet, MAC)
pairs, subnets and domains reached in its journal), so the View and the owners to recompile follow the delta.
``remote_delta`` is what the last import changed in the RemoteTable (entries added and removed), None after an
import from scratch (at start, and after every policy change).

Withdrawn early: ``publish`` also records which vports stand behind each route (``bgp.origins``), and State's
subscribers hear of every chunk of vports it binds or unbinds; the routes only unbound vports stood behind are
withdrawn there and then (``_locations_changed``), on the thread that unbound them, instead of after the pass
those unbindings wake (seconds for 10,000 ports). ``publish`` leaves out the routes whose vports were unbound
while it made them, so what is announced never again includes them; the pass's own publish then finds nothing
more to withdraw. One lock (``_origins_lock``) orders the two: a withdrawal never lands between the check and
the hand-over to the speaker. The hand-over pauses holding it (the routes announced at bind it carries, 9,000 after a
pass that raced 10,000 bindings: ~30 ms of CPU in one stretch before), having read State's locations first: a change
of State during its pauses reaches the subscriber, which waits for the lock, after it, as if it came after it
(tests/unit/test_hand_over_pauses.py). A pause that raises (the thread killed) lets it finish unpaused first.

Announced at bind: the same subscriber announces the type 2 routes of the vports a chunk binds when nothing but the
binding is new (``bgp.early``), so routes reach the peers while the pass is still to come; ``publish`` carries them
until its View has them. ``early`` (set by the app) keeps this off until the programming passes hand their results
out (after the first, and after the start-up hold).
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections import deque
from itertools import chain, compress, filterfalse, repeat
from operator import is_, not_

from bgp import routes as bgp_routes
from bgp.dupkeep import FILE_NAME, DuplicateKeeper
from bgp.duplicates import DuplicateMacs
from bgp.early import EarlyAnnounce
from bgp.evpn import ImportResult, originate
from bgp.mobility import Mobility
from bgp.importer import ImportTally, RemoteDelta, RouteImport
from bgp.origins import Origins
from bgp.originator import Clash, Originator, paced
from bgp.routebook import GracefulRestart
from bgp.speaker import Neighbor, Speaker, SpeakerConfig
from controller.derive import own_vtep_ips
from controller.pacer import NEVER, Finishing, runs
from controller.remote import RemoteTable
from controller.writebehind import later

log = logging.getLogger("canopy.bgp")
_FULL = object()  # ``_originate``'s answer when the full originate made the routes
RECOVERY_MIN = 0.05  # seconds: the soonest a pass is woken for a flag's recovery


def speaker_config(bgp, data_dir: str) -> SpeakerConfig:
    """The speaker's configuration from the controller's BgpSettings."""
    neighbors = tuple(Neighbor(address=n.address, asn=n.asn, port=n.port, md5_password=n.md5_password,
                               hold_time=n.hold_time, local_address=n.local_address, passive=n.passive,
                               rr_client=n.rr_client) for n in bgp.neighbors)
    graceful = bgp.graceful_restart
    return SpeakerConfig(asn=bgp.asn, router_id=bgp.router_id, neighbors=neighbors, listen=bgp.listen,
                         listen_port=bgp.port, workdir=os.path.join(data_dir, "bgp"),
                         graceful_restart=GracefulRestart(graceful.enabled, graceful.restart_time, graceful.stale_time),
                         api_timeout=float(bgp.api_timeout), api_restart_after=float(bgp.api_restart_after))


class Federation:
    def __init__(self, bgp_settings, data_dir: str, state, speaker=None):
        self.settings = bgp_settings
        self.state = state
        self.speaker = speaker or Speaker(speaker_config(bgp_settings, data_dir),
                                          on_change=self._received_changed, log=log)
        self.mobility = Mobility(DuplicateMacs())
        dup = getattr(bgp_settings, "duplicate_mac", None)
        if dup is not None:
            self.mobility.duplicates.configure(dup)
        # the flags outlive a restart (a file in the data directory) and reach the HA standby (pair_with)
        path = os.path.join(data_dir, FILE_NAME) if bgp_settings is not None else None
        self.keeper = DuplicateKeeper(lambda: self.mobility.duplicates, path, wake=lambda: state.bgp_received(0))
        self.later = later  # (delay, function) -> a timer with cancel(): wakes a pass when a flag is to recover
        self._recovery: tuple | None = None  # (due, timer) armed
        # raised when the flags change outside a publish (a recovery or the active's flags at a pass's start, a
        # DELETE): a publish made before is out of date (controller/routepass.py, during the start-up hold)
        self.flag_changes = 0
        self.originating = True  # False on an HA standby: only the active announces
        self.remote_delta: RemoteDelta | None = None  # what the last import changed (None: from scratch)
        self._lock = threading.Lock()  # the receive handler runs in the speaker's thread
        self._changes: dict = {}  # {(peer, key): route or None} reported and not imported yet
        self._order: dict = {}  # {(peer, key): n} when those routes were received (RouteBook.order_of)
        self._importer: RouteImport | None = None
        self._held = ImportTally()  # the counts of the last import State took, while ``_importer`` is dropped
        # peers whose routes may not all be in (RouteBook.awaited), as of the changes taken and as of the last import
        # (what the start-up hold waits for: its View holds every route of the others)
        self._awaited = self.awaited = sorted(str(n.address) for n in getattr(bgp_settings, "neighbors", ()))
        self.pacer = NEVER  # the programming loop's (controller/app.py): its steps here pause every so many routes
        self.originator = Originator()  # the routes this node originates, kept by delta (bgp/originator.py)
        self._origins = Origins()  # what stands behind the routes the last publish handed to the speaker
        self._unlocated: set = set()  # vports State unbound, not bound since, that the last publish's routes name
        # (or unbound since it): what the next publish's Origins may have to leave out (``Origins.settle``)
        self._told: dict = {}  # key -> the route (None: none) the speaker holds for it, for the keys told otherwise
        # than ``originator.routes`` say since the last publish's hand-over (left out, carried, withdrawn or
        # announced at bind): looked at again at the next, and told only if it wants something else
        self._full = self._full_origins = None  # the full originate's routes and Origins (a ``Clash``)
        self._origins_lock = threading.Lock()
        self.early = False  # announce at bind (bgp/early.py): the app allows it once passes hand out
        self.settled = lambda: True  # the HA role is decided (the app's): what a publish hands over is complete
        self._early = EarlyAnnounce(state, lambda: self.mobility)  # (the MAC mobility held when a vport binds)
        self._leaving: dict = {}  # vport id -> (switch, port) being deleted there, its routes withdrawn at intake, while
        # State still locates it there (``_ports_leaving``): left out of what a publish announces
        state.subscribe(self._locations_changed)
        state.listen_leaving(self._ports_leaving, self._ports_left)

    def start(self):
        self.speaker.start()

    def stop(self):
        if self._recovery is not None:
            self._recovery[1].cancel()
        self.speaker.stop()
        self.keeper.close()  # the newest duplicate MAC flags written (a few seconds at most)

    def pair_with(self, pair) -> None:
        """Hand the duplicate MAC flags to the HA standby, and take the active's there (``bgp.dupkeep``)."""
        self.keeper.pair_with(pair)

    def reconfigure(self, bgp_settings, data_dir: str, check=None) -> bool:
        """Hand new bgp settings (SIGHUP) to a speaker with no ExaBGP up, which starts one at once with them
        (``Speaker.reconfigure``, ``check`` first), and their duplicate_mac to MAC mobility; False, nothing changed,
        while one is up or starting."""
        if not self.speaker.reconfigure(speaker_config(bgp_settings, data_dir), check):
            return False
        self.settings = bgp_settings
        self.set_duplicate_mac(bgp_settings.duplicate_mac)
        return True

    def set_duplicate_mac(self, settings) -> None:
        """New bgp.duplicate_mac settings (SIGHUP, also while ExaBGP is up: only Canopy uses them): flags kept, the
        moves from now on counted with these; a pass at once, which clears the flags older than a new recovery."""
        self.mobility.duplicates.configure(settings)
        self.state.bgp_received(0)

    # ------------------------------------------------------------------ receive (handler -> State)
    def _received_changed(self):
        with self._lock:
            changes, order, self._awaited = self.speaker.take_received_in_order()
            self._changes.update(changes)
            self._order.update(order)
            pending = len(self._changes)
        self.state.bgp_received(pending)

    def awaited_now(self) -> list[str]:
        """The peers whose routes may not all be in as of the route changes taken so far (the next import's;
        ``awaited`` is as of the last import): the start-up hold waits for the next pass when it has them."""
        with self._lock:
            return self._awaited

    # ------------------------------------------------------------------ programming loop steps
    def tend_flags(self) -> None:
        """Every pass's first step, whether it publishes or not (during the start-up hold, on a standby): take the
        flags the HA active sent, clear those whose recovery is due, write and send them if they changed, and arm
        the timer that wakes a pass when the next is due. Costs what changed and what is due (``bgp.duplicates``)."""
        duplicates = self.mobility.duplicates
        before = duplicates.version
        self.keeper.take_incoming(self.originating)
        duplicates.prune()
        self.keeper.sync(self.originating)
        self._arm_recovery()
        if duplicates.version != before:
            self.flag_changes += 1

    def refresh_import(self) -> bool:
        """Import what peers sent since the last round (from scratch when the policy changed); True when
        State.remote changed. A round hands State only its delta (``State.remote_changed``). The import pauses
        per route (``pacer``): meanwhile the speaker's thread may add changes (taken by the next round) and a REST
        commit may replace the policy (the importer keeps the one it was built with; the next round, which the
        commit wakes, imports again from scratch). A round that raises (the caller logs it; State does not take its
        changes) leaves the importer half changed and its changes taken: the next round imports from scratch (else its
        delta would miss the failed round's changes and could add a MAC State holds elsewhere without removing it);
        until then the import counts are those of the import State holds (``import_counts``)."""
        importer = self._importer
        held = importer.tally() if importer is not None else self._held
        try:
            return self._import()
        except BaseException:
            self._importer, self._held = None, held
            raise

    def _import(self) -> bool:
        with self._lock:
            changes, self._changes = self._changes, {}
            order, self._order = self._order, {}
            self.awaited = self._awaited
        if self._importer is None or self._importer.policy is not self.state.policy:
            # the new import is ours once State has taken it: until then (its pauses) the counts are those of the
            # import State holds
            importer = RouteImport(self.state.policy)
            # everything received (read after taking the changes, so it holds them; what arrives meanwhile is
            # also in the next round's changes, and applying a change twice gives the same table)
            received, received_order = self.speaker.received_in_order()
            pacer = self.pacer
            importer.apply(received, pacer, received_order)
            self.remote_delta = None
            # a pause after the sort of every MAC, and per entry compared with State's: with the import and the
            # comparison, one stretch of 37.7 ms of CPU for 10,000 received MACs at each policy commit (bursts, stop
            # 33); State takes what differs as a delta (a table that changed was taken whole, unpaced, before)
            table = importer.table(pacer)
            pacer.tick(pacer.every)
            changed = self.state.take_remote(table, pacer)
            self._importer = importer
            return changed
        if not changes:
            return False
        self.remote_delta = self._importer.apply(changes, self.pacer, order)
        if not self.remote_delta:
            return False
        self.state.remote_changed(self.remote_delta)
        return True

    def import_counts(self) -> dict:
        """{"imported", "own_vtep", "ignored"} (``RouteImport.counts``), with our own VTEPs as State has them now:
        a standby counted its pair's routes, reflected back by a route reflector, as imported, though its View
        drops them as its own."""
        importer, state = self._importer, self.state
        counted = importer if importer is not None else self._held  # dropped after a round that raised: the counts
        # of the import State still holds (it did not take that round's changes)
        return counted.counts(own_vtep_ips(map(state.vtep_ip_of, state.vrs.values()), state.vteps))

    @property
    def result(self) -> ImportResult:
        """The import's table and counts (the table is built when read: a whole copy, for tests and tools)."""
        importer = self._importer
        if importer is None:
            return ImportResult(RemoteTable(), 0, 0)
        return ImportResult(importer.table(), importer.imported, importer.ignored)

    def publish(self, view, complete: bool = True) -> None:
        """Announce what this View originates, and withdraw what it no longer does.

        Paced (10,000 routes: 0.4 s of CPU the first time, more on a loaded machine): MAC mobility, originate and
        the routes' command text pause every so many routes. What may change during a pause: a REST commit may
        replace State's policy and an HA role change may flip ``originating``; both are read once, here, and the
        pass the change wakes publishes again with the new ones. The View and State's remote index change only
        in the programming loop, which is running this pass; the speaker's thread only reads ExaBGP meanwhile (the
        speaker is told after the last pause: ``_hand_over``).

        Work in proportion to what changed: the routes are kept by delta (``bgp.originator``), only the changed ones
        are encoded, and the speaker is handed only the keys that changed (``set_desired``, every route, only after an
        origination from scratch).

        The first publish (after the start-up hold, the HA role decided) hands over every route announced after
        this start: the speaker sends each peer End-of-RIB once ExaBGP holds them (graceful restart, RFC 4724,
        the restarting side: ``bgp.endofrib``). ``complete`` False (a publish during the start-up hold, of the
        routes of what its View knows: controller/routepass.py): the set is not complete, no End-of-RIB follows."""
        settled = self.settled()  # read with ``originating``: a role decided later publishes again
        pacer, policy, originating = self.pacer, self.state.policy, self.originating
        self.keeper.take_incoming(originating)  # the HA active's flags (a standby)
        try:  # (raising, up to the speaker told, the sequence numbers ``Mobility.taken`` named or the routes kept
            # since may not be handed over: the next publish starts from scratch)
            seqs = self.mobility.update(view, self.state.remote_index, pacer)
            self.keeper.sync(originating)
            self._arm_recovery()
            delta = self._originate(view, policy, seqs, pacer) if originating else None
            plan = self._encode(delta, pacer) if originating else None
            finishing = Finishing(pacer)  # (a pause that raises ends its pauses: the hand-over is never left half done)
            with self._origins_lock:  # pauses only with State read for what it reads: see the module docstring
                self._hand_over(view, policy, originating, delta, plan, finishing)
            finishing.raise_held()
        except BaseException as exc:
            self.originator.forget(paced(pacer, exc))
            raise
        if not originating:
            self._withdraw_all(pacer)
        if settled and complete:
            self.speaker.complete()  # End-of-RIB follows once ExaBGP holds these (bgp/endofrib.py)

    def _encode(self, delta, pacer) -> tuple | None:
        """Each new route's command text, made here, not under the speaker's lock; with a ``delta``, what its keys are
        to the speaker (announced {key: route}, withdrawn {key}: the plan ``_hand_over`` completes)."""
        routes = self.originator.routes if delta is not _FULL else self._full
        if delta is None or delta is _FULL:
            for route in routes.values():
                if bgp_routes.encode(route):
                    pacer.tick()
            return None
        withdraw = delta.difference(routes)
        announce = {key: routes[key] for key in delta - withdraw}
        for route in announce.values():
            bgp_routes.encode(route)
            pacer.tick()
        return announce, withdraw

    def _originate(self, view, policy, seqs, pacer):
        """The routes of this View (``originator.routes``, by delta): the keys that changed, or None (taken from
        scratch); ``_FULL`` when the Originator cannot keep them (``Clash``): the full ``originate`` in ``_full``,
        with its ``Origins`` in ``_full_origins``."""
        try:
            return self.originator.update(view, policy, self.mobility, pacer)
        except Clash:
            self._full_origins = Origins()
            self._full = originate(view, policy, seqs, pacer, self._full_origins)
            return _FULL

    def _hand_over(self, view, policy, originating: bool, delta, plan, pacer=NEVER) -> None:
        """Under ``_origins_lock``: this publish's Origins (on the Originator's routes), the routes of vports unbound
        meanwhile left out and those announced at bind carried (``bgp.early``), and the speaker told. After a
        publish from scratch (or not originating, or the full ``originate``) the speaker gets every route
        (``set_desired``); else only the keys that changed, those this publish's or the last one's Origins left
        out or carried, and those withdrawn or announced at bind since the last publish (``_told``), each only if
        the speaker holds something else for it (10,000 keys withdrawn at unbind are not told again). ``plan``:
        (announced, withdrawn) of the changed keys, made before the lock as the kept routes say; only the others
        are looked at here. ``pacer`` is ticked per route carried (``EarlyAnnounce.carry``), which reads State's
        locations before its first pause: what State changes during the pauses, its subscribers here hear of after
        the hand-over (they wait for the lock)."""
        originator = self.originator
        if not originating:
            origins, routes, candidates = Origins(), {}, None
        elif delta is _FULL:
            origins, routes, candidates = self._full_origins, self._full, None
            self._full = self._full_origins = None
        else:
            origins, routes = Origins(originator), originator.routes
            candidates = self._unlocated if delta is not None else None
        if candidates is not None:  # (those no route names now, dropped by the delta, are not looked at again)
            candidates = self._unlocated = origins.named(candidates)
        if not originating:
            self._leaving.clear()
        located = _Without(self.state.locations, self._leaving) if self._leaving else self.state.locations
        left_out = set(origins.settle(located, candidates))  # vports unbound (or leaving) while this View was made
        if candidates is None:
            self._unlocated = origins.named(self._unlocated)
        desired = _Handed(routes, left_out)
        if originating:
            self._early.carry(desired, origins, view, located, pacer)  # announced at bind, not in this View yet
        self._early.remember(view, policy, originating)
        self._origins = origins  # (with the watcher: the Origins ``_locations_changed`` reads is the one told)
        originator.watcher = origins if routes is originator.routes else None
        if not originating:  # the last Origins is read no more (replaced under the lock): the Originator forgets
            originator.forget()  # telling nothing (walking 10,000 endpoints into it was 3/4 of a demotion's publish)
        if not originating:
            pass  # the speaker's routes are withdrawn after the lock, paced (``_withdraw_all``)
        elif delta is None or delta is _FULL:
            full = {key: route for key, route in routes.items() if key not in left_out}
            full.update(desired.carried)
            self.speaker.set_desired(full)
        else:
            announce, withdraw = plan
            _settle(announce, withdraw, self._told, desired)
            if withdraw:
                self.speaker.withdraw(withdraw)
            if announce:
                self.speaker.announce(announce)
        self._told = dict.fromkeys(left_out)  # what the speaker holds for them now
        self._told.update(desired.carried)

    def _withdraw_all(self, pacer) -> None:
        """A node that does not originate (an HA standby, a demoted active) withdraws every route its speaker holds, a
        pacer's run at a time (``runs``), each run under ``_origins_lock``: 10,000 routes were one stretch of ~50
        bytecodes a route under both locks (``set_desired({})``, the commands' text included). During the pauses the
        role may change back: once ``originating`` is set again the rest is left (the pass the promotion wakes
        publishes from scratch, as the Originator forgot: ``set_desired`` with every route), so a route announced at
        bind meanwhile (``_locations_changed``, which reads ``originating`` under the same lock) is never withdrawn
        here. Unbinding withdraws nothing meanwhile (the hand-over left an empty Origins)."""
        keys = self.speaker.desired_keys()
        for run in runs(pacer, keys):
            with self._origins_lock:
                if self.originating:
                    return
                self.speaker.withdraw(run)
            pacer.tick(len(run))

    def handed_over(self) -> None:
        """What the last publish handed to the speaker is complete (it was published with ``complete`` False, and
        nothing it read has changed since: controller/routepass.py): End-of-RIB follows as after a complete publish,
        once the HA role is decided."""
        if self.settled():
            self.speaker.complete()

    def _locations_changed(self, what, vport_ids) -> None:
        """State's subscriber: withdraw now the routes only vports it no longer locates stood behind (those it
        locates again pin theirs: ``Origins.bound``), and announce those of the vports it binds that ``bgp.early``
        can make."""
        if what != "locations" or not vport_ids:
            return
        locations = self.state.locations
        unbound = list(filterfalse(locations.__contains__, vport_ids))  # (C loops: 10,000 vports at once)
        bound = list(filter(locations.__contains__, vport_ids)) if len(unbound) < len(vport_ids) else []
        with self._origins_lock:
            if self._leaving:  # (their routes withdrawn at intake: ``_ports_leaving``)
                bound = self._left(unbound, bound)
            self._unlocated.update(unbound)
            self._unlocated.difference_update(bound)
            gone = self._origins.unbound(unbound)
            self._origins.bound(bound)
            if gone:
                self._told.update(dict.fromkeys(gone))
                self.speaker.withdraw(gone)
            if self.early and self.originating:
                new = self._early.bound(bound, self._origins)
                if new:
                    self._told.update(new)
                    self.speaker.announce(new)

    def _ports_leaving(self, vport_ids: list) -> None:
        """State's listener (controller/state_leaving.py): the ports of these vports are being deleted (a big delete,
        before its slices unbind them): withdraw now the routes only they (or vports unbound already) stand behind, as
        their unbinding would (``_locations_changed`` then finds them withdrawn: ``Origins.unbound`` counts each vport
        once), and leave their routes out of what a publish announces while State still locates them there
        (``_hand_over``). One that State locates elsewhere before its port goes (bound again) pins its routes, as after
        an unbinding (``Origins.bound``): the next pass announces them. Nothing on an HA standby."""
        locations = self.state.locations
        with self._origins_lock:
            if not self.originating:
                return
            for vid in vport_ids:
                loc = locations.get(vid)
                if loc is not None:
                    self._leaving[vid] = (loc.session, loc.port)
            self._unlocated.update(vport_ids)
            gone = self._origins.unbound(vport_ids)
            if gone:
                self._told.update(dict.fromkeys(gone))
                self.speaker.withdraw(gone)

    def _ports_left(self, session: str, names: set) -> None:
        """State's listener: the ports ``names`` of ``session`` told leaving are no longer (their update taken: their
        vports are unbound, nothing left here; or its session ended first): a vport still leaving there is located as
        State says, its routes pinned as after an unbinding (``Origins.bound``), and the next publish announces them
        while it stays located (a port found again by the next session): a pass is woken for it (nothing else may change
        State: the grace of an ended session, ``VrsClaims``)."""
        with self._origins_lock:
            if not self._leaving:
                return
            stale = [vid for vid, where in self._leaving.items() if where[0] == session and where[1] in names]
            for vid in stale:
                del self._leaving[vid]
            self._origins.bound(stale)
        if stale:  # State did not change (the switch's grace runs): a pass must publish their routes again
            self.state.bgp_received(0)

    def _left(self, unbound: list, bound: list) -> list:
        """Under the lock: the leaving vports among ``unbound`` (their ports went) or among ``bound`` located elsewhere
        than the port that was leaving are no longer leaving; ``bound`` without those still leaving where they were
        (their location changed on that port: they are not bound again)."""
        leaving, locations = self._leaving, self.state.locations
        for vid in filter(leaving.__contains__, unbound):
            del leaving[vid]
        kept = []
        for vid in bound:
            where = leaving.get(vid)
            if where is not None:
                loc = locations.get(vid)
                if loc is not None and (loc.session, loc.port) == where:
                    continue
                del leaving[vid]
            kept.append(vid)
        return kept

    def clear_duplicates(self, subnet_id: str | None = None, mac: str | None = None) -> list[dict]:
        """Unflag duplicate MACs (``bgp.duplicates``; None: any) and wake a programming pass, whose publish announces
        those still local here; the rows cleared."""
        cleared = self.mobility.duplicates.clear(subnet_id, mac)
        if cleared:
            self.flag_changes += 1
            log.info("duplicate MAC flag cleared for %d MAC(s)", len(cleared))
            self.state.bgp_received(0)  # a pass: MAC mobility again with the flags gone
        return cleared

    def _arm_recovery(self) -> None:
        """Wake a pass when the oldest flag is to be cleared by bgp.duplicate_mac.recovery (no pass may come
        otherwise): one timer, re-armed when a flag is due sooner."""
        duplicates = self.mobility.duplicates
        delay = duplicates.next_recovery()
        if delay is None:
            return
        due = duplicates.wall() + max(delay, RECOVERY_MIN)  # the flags' clock
        if self._recovery is not None and self._recovery[0] <= due:
            return
        if self._recovery is not None:
            self._recovery[1].cancel()
        self._recovery = (due, self.later(max(delay, RECOVERY_MIN), self._recovery_due))

    def _recovery_due(self) -> None:
        self._recovery = None
        self.state.bgp_received(0)

    # ------------------------------------------------------------------ inspection (REST)
    def peers(self) -> list[dict]:
        return self.speaker.peers()

    def routes(self, direction: str, kind: int | None = None, pacer=NEVER) -> list[tuple]:
        """The routes announced ("out") or received ("in"), as (order key, dict) pairs in no order: sorted by key, the
        dicts are in a stable order (GET /v1/bgp/routes sorts them pausing: controller/rest/bgp.py). ``pacer`` is
        ticked per route (10,000 routes: ~0.1-0.4 s of CPU): it reads copies the speaker hands over, so anything may
        change during the pauses."""
        if direction == "out":
            items = [(None, r) for r in self.speaker.announced().values()]
        else:
            items = [(peer, r) for (peer, _key), r in self.speaker.received().items()]
        keyed = []
        for peer, route in items:
            if kind is not None and route.TYPE != kind:
                continue
            entry = bgp_routes.route_to_dict(route)
            if peer is not None:
                entry["peer"] = peer
            keyed.append(((entry["type"], peer or "", json.dumps(entry, sort_keys=True)), entry))
            pacer.tick()
        return keyed


def _settle(announce: dict, withdraw: set, told: dict, desired: _Handed) -> None:
    """``_hand_over``'s plan (``announce``, ``withdraw``) completed for the keys ``told`` (key -> the route the speaker
    holds, or None), left out or carried: each told only if the speaker holds something else than ``desired.get``
    gives. The keys told looked at by C loops (``map``), Python only for those left out and those whose route
    differs (a route key is a 5-tuple, hashed again at every dict or set operation: the pass that raced 10,000
    bindings has 10,000 told and 9,000 carried, ~15 ms of CPU in a Python loop of its own, evpn_routes' announce,
    stop 44; tests/unit/test_early_carry_cost.py; the publish after 10,000 ports withdrawn at unbind, 10,000 told and
    none carried, 170,131 bytecodes in a loop per key not carried until branch hand48, ~100 now)."""
    carried, left_out, routes = desired.carried, desired.left_out, desired.routes
    keys, held = list(told), list(told.values())
    got = list(map(routes.get, keys))  # the View's, None where left out, the carried one where carried
    if left_out:
        for at in list(compress(range(len(keys)), map(left_out.__contains__, keys))):
            got[at] = None
    if carried:
        got = list(map(carried.get, keys, got))
    same = list(map(is_, held, got))
    for at in list(compress(range(len(same)), map(not_, same))):  # (not the same object: equal, or told)
        if held[at] == got[at]:
            same[at] = True
        else:
            _tell(announce, withdraw, keys[at], got[at])
    if announce or withdraw:  # the speaker holds these already (all of them, most often: a set made from ``told``
        kept = set(told) if all(same) else list(compress(keys, same))  # takes their kept hashes: none hashed again)
        if announce:
            deque(map(announce.pop, kept, repeat(None)), maxlen=0)
        if withdraw:
            withdraw.difference_update(kept)
    for key in filterfalse(told.__contains__, chain(left_out, carried)):
        _tell(announce, withdraw, key, desired.get(key))


def _tell(announce: dict, withdraw: set, key, route) -> None:
    """``_hand_over``'s plan for ``key``, which the speaker does not hold as ``route``: withdrawn (``route`` None) or
    announced."""
    if route is None:
        announce.pop(key, None)
        withdraw.add(key)
    else:
        withdraw.discard(key)
        announce[key] = route

class _Without:
    """State's ``locations`` as a publish settles them: without the vports leaving (``Federation._leaving``)."""

    def __init__(self, locations: dict, leaving: dict):
        self.locations, self.leaving = locations, leaving

    def __contains__(self, vid) -> bool:
        return vid in self.locations and vid not in self.leaving

    def get(self, vid, default=None):
        return default if vid in self.leaving else self.locations.get(vid, default)


class _Handed:
    """What a publish hands over, for ``EarlyAnnounce.carry``: ``routes`` without ``left_out``, plus what is carried
    (``carried``), read without copying ``routes``."""

    def __init__(self, routes: dict, left_out: set):
        self.routes, self.left_out, self.carried = routes, left_out, {}

    def __contains__(self, key) -> bool:
        return key in self.carried or (key in self.routes and key not in self.left_out)

    def __setitem__(self, key, route) -> None:
        self.carried[key] = route

    def get(self, key):
        route = self.carried.get(key)
        if route is None and key not in self.left_out:
            route = self.routes.get(key)
        return route
