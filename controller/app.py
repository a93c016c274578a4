"""The Ryu application: thin glue between Ryu's events and Canopy's core.

Handlers here only translate events into State changes or hand replies to their switch's reconciler
(STYLE.md rule 1). State changes wake one green thread that refreshes the desired flows (the
programmer: derive, recompile what changed) and hands each changed switch its new desired state; the
switch's reconciler sends only the difference. After a start, nothing is handed to any switch or VTEP
(BGP peers: controller/routepass.py) until the start-up hold ends (controller/startup_hold.py: the switches
connected before have reported, or they stopped coming back: restart.hold_time, restart.hold_max). The store,
State, the policy service, the REST API and the OVSDB manager listener are built once, from the Settings that
``canopy run`` parked in controller.runtime. This node's HA role, applied to the switches: controller/approles.py;
what it sends into the network on its own (gratuitous ARPs, tunnel probes, external gateways' ARP): appannounce.py.
"""

from __future__ import annotations

import functools
import logging

from controller import collector, guard, ofports, runtime, sdnotify, stretchtrace, zones
from controller.activekeep import ActiveKeeper
from controller.appannounce import Announcements
from controller.activestore import MetaBehind
from controller.core import build_core
from controller.approles import RoleWiring
from controller.gatewaykeep import GatewayKeeper
from controller.lagcause import LateSamples
from controller.stallwatch import StallWatch
from controller.programmed import ProgrammedSeqs
from controller.state_activation import ACTIVE_KEY
from controller.programloop import ProgramLoop
from controller.programmer import Programmer
from controller.routepass import RoutePass
from controller.rest import bgp as rest_bgp
from controller.rest import dataplane as rest_dataplane
from controller.rest import external as rest_external
from controller.rest import inspection as rest_inspect
from controller.rest import security as rest_security
from controller.rest import sessions as rest_sessions
from controller.rest import vteps as rest_vteps
from controller.rest.api import Api
from controller.rest.server import RestServer
from controller.rest.lane import Lane
from controller.rest.watch import VportWatch
from controller.tls import listener_context
from controller.ryu_compat import (
    DEAD_DISPATCHER,
    MAIN_DISPATCHER,
    RyuApp,
    drop_datapath,
    hub,
    probe_datapaths,
    ofp_event,
    ofproto_v1_3,
    blocking,
    ofproto_v1_4,
    set_ev_cls,
)
from controller.pacer import BUDGET, loop_pacer, paused_now
from controller.startup_hold import AwaitedFirstReads, StartupHold
from openflow import claims, external
from openflow.flows import owner_kind_of
from openflow.gateway_arp import GatewayResolver
from openflow.gateway_garp import GatewayAnnouncer
from openflow.tunnel_warm import ProbeSender, TunnelWarmer
from openflow.dhcp_service import DhcpService
from openflow.ryumsg import role_name
from openflow.reconciler import REPLY_EVENTS, SwitchReconciler
from ovsdb.server import OvsdbManagerServer, give_way

log = logging.getLogger("canopy.app")
HOLD_TIMER_SLACK = 0.05  # seconds after the start-up hold's deadline at which the loop is woken
STATE_EVERY = 500  # ports read or vports re-resolved by State between two pauses (controller/state.py; a few ms)
RECONCILE_EVERY = 1000  # flows planned, diffed or encoded by a switch reconciler between two pauses (a few ms)


class CanopyApp(RoleWiring, Announcements, RyuApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION, ofproto_v1_4.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        settings = runtime.SETTINGS
        if settings is None:
            raise RuntimeError("start Canopy with 'canopy run', which passes its settings to this app")
        self.settings = settings
        self.meter_rates = dict(settings.punt_meters)  # kind -> (pktps, burst) of the punt meters (openflow/meters.py)
        self.store, self.state, self.service = build_core(settings)
        self.store.offload = blocking  # commits and their fsyncs off the event loop (controller/store.py)
        self.state.on_active = MetaBehind(self.store, ACTIVE_KEY, hub.spawn).put  # controller/state_activation.py
        # nothing is written before it is released
        self.hold = StartupHold(self.store, settings.restart_hold, hold_max=settings.restart_hold_max)
        if not self.hold.holding:
            self.state.end_restore()  # (no hold: a live migration's restored record keeps no vport unlocated)
        self.programmer = Programmer(self.state)
        # stretches bounded by count and by the wall clock too (controller/pacer.py loop_pacer: BoundedPacer)
        self.programmer.pacer = loop_pacer(give_way)  # a pass never holds the hub: it pauses inside derive, compile
        self.service.pacer = loop_pacer(give_way, 40)  # planning a big apply pauses (a vport placed: ~0.25 ms)
        self.state.pacer = loop_pacer(give_way, STATE_EVERY)  # a report of 10,000 ports, a commit of 10,000 vports
        self.reconcilers: dict[int, SwitchReconciler] = {}
        self._handed: dict[str, int | None] = {}  # session -> the datapath id handed every change of it taken
        self.dhcp = DhcpService(self.state, self.programmer, settings.underlay_mtu)
        self.garp = external.Announcer()  # floating IPs announced by gratuitous ARP (openflow/external.py)
        self.gateway_garp = GatewayAnnouncer()  # gateway MACs told to VMs (openflow/gateway_garp.py)
        self.tunnels = TunnelWarmer()  # VTEPs each VRS resolves before a VM needs them (openflow/tunnel_warm.py)
        self.probes = ProbeSender(hub.spawn, lambda: self.pair is None or self.pair.role == "active",
                                  settings.tunnel_probe_rate, settings.tunnel_probe_retry)
        self.gateway_arp = GatewayResolver(settings.gateway_arp_refresh, settings.gateway_arp_timeout)
        self.gateway_keep = GatewayKeeper(self.state, self.gateway_arp)  # resolved MACs to the HA standby
        limits = settings.limits
        self.ovsdb = OvsdbManagerServer(settings.ovsdb_listen, settings.ovsdb_port, self.state,
                                        bridge=settings.bridge, log=logging.getLogger("canopy.ovsdb"),
                                        handshake_timeout=limits.ovsdb_handshake_timeout,
                                        per_source=limits.ovsdb_per_source, max_message=limits.ovsdb_max_message,
                                        sync_timeout=limits.ovsdb_sync_timeout,
                                        reconnect_grace=limits.ovsdb_reconnect_grace,
                                        probe_interval=limits.ovsdb_probe_interval,
                                        tls=listener_context(settings, "ovsdb"), forwarding=self._answers)
        self.ovsdb.held = self.hold.holding
        self.ovsdb.pause = Lane(give_way).pause  # the OVSDB sessions' big updates (4 first reads at once) likewise
        self.ovsdb.budget = BUDGET  # their pacers bounded by the wall clock too (controller/pacer.py BoundedPacer)
        self.rest_lane = Lane(give_way)  # big answers of many clients pause one at a time (controller/rest/lane.py)
        self.reconcile_lane = Lane(give_way)  # and so do the switches' reconcilers: one's stretch a round, not 50
        extra = rest_sessions.routes(self.ovsdb, self.rest_lane.pause, budget=BUDGET)  # by the wall clock too
        extra += rest_dataplane.routes(self.state, self.programmer, lambda: self.reconcilers, self.rest_lane.pause,
                                       budget=BUDGET)
        extra += rest_security.routes(self.state, self.programmer, lambda: self.reconcilers)
        extra += rest_external.routes(self.state, self.programmer, lambda: self.reconcilers)
        extra += rest_vteps.routes(self.state, self.programmer, self.rest_lane.pause, budget=BUDGET,
                                   programmed=lambda name: self.programmed.of_vtep(*self.ovsdb.vtep_settled(name)))
        extra += rest_inspect.routes(self.state, self.programmer, self.dhcp, settings.underlay_mtu)
        self.watch = VportWatch(self.state, lambda: self.reconcilers, sleep=hub.sleep, pause=self.rest_lane.pause,
                                budget=BUDGET)
        extra.append(self.watch.route())
        self.federation = None
        if settings.bgp is not None and settings.bgp.enabled:
            from bgp.federation import Federation  # imports ExaBGP's extension only when BGP is configured
            from bgp.speakerapi import HANDLE_BYTES

            self.federation = Federation(settings.bgp, settings.data_dir, self.state)
            self.federation.pacer = self.programmer.pacer  # importing and originating 10,000 routes pause too
            self.federation.speaker.pacer = loop_pacer(give_way, HANDLE_BYTES)  # and handling what ExaBGP says
            flags = self.federation.keeper.file  # the duplicate MAC flags' file (bgp/dupkeep.py):
            flags.spawn, flags.offload = hub.spawn, blocking  # written behind the pass, its fsyncs off the loop
        extra += rest_bgp.routes(self.federation, self.rest_lane.pause, budget=BUDGET)  # listing 10,000 routes pauses
        self.routes = RoutePass(self.federation, self.programmer, self.hold, lambda: self.program_loop.started)
        self.programmer.on_view = self.routes.view_ready  # the EVPN routes go out before the pass compiles
        self.pair = None
        if settings.ha is not None and settings.ha.enabled:
            from controller.ha import Pair

            self.pair = Pair(settings.ha, self.store, self.state, self._on_role)
            if self.federation is not None:  # End-of-RIB only once the role says what this node announces
                self.federation.settled = lambda: self.pair.role in ("active", "standby")
                self.federation.pair_with(self.pair)  # duplicate MAC flags go to the standby
            self.gateway_keep.pair_with(self.pair)  # and the external gateways' resolved MACs
            ActiveKeeper(self.state).pair_with(self.pair)  # and the live migrations' active ports
            self.pair.applier.pacer = loop_pacer(give_way, 100)  # a standby checking a big batch pauses (per change)
            self.service.replicate = self.pair.replicate
            self.service.unreplicated = self.pair.replicator.forget  # a write refused or failed: not in our store
            self.service.committed = self.pair.replicator.committed  # our store holds the write from now on
            self.service.writable = self.pair.writable
            self.ovsdb.writes_enabled = False  # until this node is the active one
            if self.federation is not None:
                self.federation.originating = False
        self.stretches = stretchtrace.from_environment()  # None unless CANOPY_STRETCH_TRACE asks for it
        self.stall = None  # the stall watch, from start()
        extra += stretchtrace.routes(self.stretches)
        self._roles_wake = hub.Event()
        self._takeover_due: set = set()  # datapath ids each announced to once it takes this node as master
        parts, faults = {"startup_hold": self.hold.status, "programmer": self._programmer_counts,
                         "flood_limits": self.programmer.floods.status}, {}  # (openflow/floodlimits.py)
        if self.federation is not None:
            parts["bgp"] = functools.partial(rest_bgp.status_part, self.federation)
            faults["BGP speaker"] = functools.partial(rest_bgp.failure, self.federation)
        self.api = Api(self.service, self.state, settings, extra_routes=extra, ha=self.pair,
                       programming=lambda: self.program_loop.status(), status_parts=parts, faults=faults)
        self.api.switch_status = self._switch_status
        self.api.floods = self.programmer.floods
        self.api.pause = self.rest_lane.pause  # big answers (GET /v1/switches) give the event loop turns
        self.api.budget = BUDGET  # by the wall clock too
        self.api.list_counters = {"floating_ip": rest_external.floating_counters(self.programmer,
                                                                                   lambda: self.reconcilers)}
        self.rest = RestServer(settings.rest_listen, settings.rest_port, self.api, limits,
                               tls=listener_context(settings, "rest"))
        self.api.metrics.attach(reconcilers=lambda: dict(self.reconcilers), ovsdb=self.ovsdb, dhcp=self.dhcp,
                                federation=self.federation, pair=self.pair, hold=self.hold, budget=BUDGET,
                                pause=lambda: hub.sleep(0), floods=self.programmer.floods, zones=lambda: zones.refused_zones(self.programmer.view),
                                external=lambda: rest_external.metric_rows(self.programmer, lambda: self.reconcilers))
        runtime.API = self.api  # for SIGHUP (controller.lifecycle)
        runtime.FEDERATION = self.federation  # for SIGHUP too: a failed speaker takes the new bgp settings
        self._wake = hub.Event()
        self.program_loop = self._programming()
        self.programmed = ProgrammedSeqs(lambda: self.program_loop.handed_seq, lambda: self.programmer.withheld)
        self._worker = None
        # a new, empty store deletes nothing from switches until the first policy change (docs/store.md)
        self._keep_stale = self.store.last_seq() == 0 and not runtime.STORE_ACCEPTED
        if self._keep_stale:
            self.state.subscribe(self._first_policy)
        counts = self.state.policy.counts()
        log.info("Canopy started: data %s, %s; OpenFlow %s:%d, OVSDB %s:%d, REST %s:%d",
                 settings.data_dir, ", ".join(f"{n} {k}s" for k, n in counts.items() if n) or "no policy yet",
                 settings.openflow_listen, settings.openflow_port, settings.ovsdb_listen, settings.ovsdb_port,
                 settings.rest_listen, settings.rest_port)

    def start(self):
        self.api.metrics.attach(collector=collector.install())  # the collector's policy (controller/collector.py)
        late = LateSamples(stretchtrace.LATE_KEEP, self.stretches)  # the lag's split, the tracer's figures if on
        if self.stretches is not None:
            self.stretches.start()
            self.stretches.late = late
        self.stall = StallWatch(self.api.metrics.lag, late, self.settings.stall_report)  # controller/stallwatch.py
        self.api.metrics.lag.cause = self.stall
        self.stall.start()
        thread = super().start()
        hub.spawn(collector.Refresher(collector.WATCH, self._quiet, hub.sleep).run)
        self._worker = hub.spawn(self._program_loop)
        guard.essential(self._worker, "the programming loop")
        hub.spawn(self.api.metrics.watch_loop, hub.sleep)
        hub.spawn(self._resolve_gateways)
        hub.spawn(self._refresh_tunnel_probes)
        if self.hold.holding:
            hub.spawn(self._end_hold_in_time)
        self.ovsdb.start()
        guard.essential(self.ovsdb.accept_thread, "the OVSDB listener")
        guard.essential(self.rest.start(), "the REST listener")
        if self.federation is not None:
            self.federation.start()
        if self.pair is not None:
            hub.spawn(self._role_keeper)
            self.pair.start()
        hub.spawn(sdnotify.announce_ready_when_serving, self.settings.rest_listen, self.settings.rest_port, hub.sleep)
        return thread

    def stop(self):
        self._shut_down()
        super().stop()

    def _shut_down(self):
        """Everything but Ryu's own threads, in order: REST first (a request reads the store; one that arrives or
        fails from now on gets 503 ``stopping``, not 500: controller/rest/server.py ``stop``); the programming loop
        (no pass starts from now on, one under way is abandoned where it paused: no pass hands anything to the speaker
        or the switches after they are told to stop; the stop of BGP below waits, up to a few seconds, for the
        duplicate MAC flags' last write); then the HA pair, BGP, the switches; the store last."""
        self.hold.close()  # the sessions closed below are not switches leaving
        self.state.on_active = None  # nor migrations ending: their active ports stay stored as they are
        sdnotify.notify("STOPPING=1")
        self.rest.stop()
        if self._worker is not None:
            hub.kill(self._worker)
        if self.pair is not None:
            self.pair.stop()
        if self.federation is not None:
            self.federation.stop()
        self.ovsdb.stop()
        for rec in self.reconcilers.values():
            self._stop(rec)
        self.store.close()
        collector.WATCH.uninstall()  # the process ends, or (tests) another controller starts in it
        if self.stall is not None:
            self.stall.stop()
        if self.stretches is not None:
            self.stretches.stop()
            log.info("the longest stretches between two turns of the event loop:\n%s", self.stretches.summary())

    def _quiet(self) -> bool:
        """No work under way (the collector's refresh holds the loop for the whole heap's walk): no collector-paused
        region open (a pass, an OVSDB update, a plan), no report being taken, no switch read back or synced."""
        return (not paused_now() and self.state.reports_taking == 0
                and not any(rec.state in ("reading", "syncing") for rec in list(self.reconcilers.values())))

    # ------------------------------------------------------------------ programming switches
    def _programming(self) -> ProgramLoop:
        """The programming loop (controller/programloop.py), woken by every change of State; a pass waits for a
        switch report State is taking across its pauses (``State.reports_taking``), and for the rest of an OVSDB
        update reported in slices (``OvsdbManagerServer.slicing``: one pass after its last), while they progress and
        nothing but their switches' reports changed (bounded: ``ProgramLoop._report_taken``)."""
        loop = ProgramLoop(self.programmer, self._wake, self._hand_out, prepare=self.routes.import_remote,
                           sleep=hub.sleep, taking=lambda: self.state.reports_taking > 0,
                           slicing=lambda: bool(self.ovsdb.slicing), turns=lambda: self.ovsdb.slicing_turns,
                           due=lambda: self.hold.latest(),
                           arriving=AwaitedFirstReads(self.hold, self.ovsdb, self.state))

        def changed(what, detail):
            loop.noted(what, sliced=what == "locations" or what == "vrs" and detail in self.ovsdb.slicing_switches())
            self._wake.set()

        self.state.subscribe(changed)
        return loop

    def _program_loop(self):
        """Wait for State to change, then recompile what changed and hand it to the switches; supervised
        (controller/programloop.py): a failing pass is logged, reported degraded in /v1/status and retried
        with back-off while the switches keep their last good state. The thread never ends."""
        self.program_loop.run()

    def _hand_out(self, touched):
        """A programming pass's result: the EVPN routes, each touched switch, the hardware VTEPs; nothing
        while the start-up hold lasts, and every switch when it ends."""
        touched = self._after_hold(touched)
        if touched is None:
            self.routes.held()  # the start-up hold: nothing is written anywhere yet (but EVPN routes: routepass.py)
            return
        touched = self.programmer.due(touched)  # none to a switch State has only partly read (Programmer.due)
        self.routes.hand_out()
        with self.tunnels.reading():  # the tunnel probes read a flow set shared by switches once per pass
            for session in touched:
                self._push(session)
                hub.sleep(0)  # a turn for echo replies, heartbeats and REST between switches
        self._announce_floating_ips()
        self._push_vteps()
        self.hold.remember(*self._reported())

    def _end_hold_in_time(self):
        """Wake the programming loop when the hold can end, even if nothing else happens then (a switch coming back
        meanwhile wakes it too, and moves that end: this sleeps again until the new one)."""
        while self.hold.holding:
            hub.sleep(self.hold.seconds_left() + HOLD_TIMER_SLACK)
            self._wake.set()

    def _reported(self):
        """(chassis of every VRS, name of every hardware VTEP) that had reported over OVSDB when the desired
        state about to be handed out was computed: the programmer's view, not State, which may have moved on
        while the pass yielded (the hold must end on a pass that saw every remembered switch)."""
        view = self.programmer.view
        return ({sw.chassis for sw in view.switches.values()}, {v.name for v in view.vteps.values() if v.name})

    def _arrived(self):
        """(chassis of every VRS, name of every hardware VTEP) State has now, which a pass still in progress or
        the next one will see (the start-up hold waits for that pass rather than release without them; State woke
        the programming loop when they arrived)."""
        return ({snap.chassis for snap in self.state.vrs.values()},
                {snap.name for snap in self.state.vteps.values() if snap.name})

    def _partial(self):
        """Chassis of the VRS whose first report State was still taking when the programmer's view was computed
        (``Programmer.partial``, ``partial_chassis``): only some of their vports may be in it, or none, the switch not
        in it yet (its ports read or indexed before State records it in the journal: controller/state.py ``_take``)."""
        switches = self.programmer.view.switches
        return {switches[session].chassis for session in self.programmer.partial if session in switches} | \
            self.programmer.partial_chassis

    def _after_hold(self, touched):
        """The sessions to hand their desired state: ``touched``; every one on the pass that releases the
        start-up hold; None while it lasts (controller/startup_hold.py)."""
        if not self.hold.holding:
            return touched
        federation = self.federation
        peers, now = (federation.awaited, federation.awaited_now()) if federation is not None else ((), None)
        if self.hold.check(*self._reported(), arrived=self._arrived(), peers=peers, peers_now=now,
                           partial=self._partial()):
            self.ovsdb.release()
            self.state.end_restore()  # a switch not back: its restored records hold their vports no longer
            return set(self.programmer.desired)
        return None

    def _push(self, session):
        sw = self.programmer.view.switches.get(session)
        rec = self.reconcilers.get(sw.datapath_id) if sw and sw.datapath_id is not None else None
        desired = self.programmer.desired.get(session)
        changed = self.programmer.take_changes(session)  # owners changed since this switch's last hand-out
        self.programmer.handed(session)
        if rec is not None and desired is not None:
            if self._handed.setdefault(session, sw.datapath_id) != sw.datapath_id:  # its changes went to another
                changed = None  # datapath (two hypervisors given one system-id, in turn): diff all of it
                self._handed[session] = sw.datapath_id
            rec.set_desired_owners(desired.flows, desired.all_groups().values(), changed)
            self._announce_gateways(rec, session, changed)
            self._warm_tunnels(rec, sw, desired, changed)
        elif sw is None:
            self._handed.pop(session, None)
            self.gateway_garp.forget(session)
            self.tunnels.forget(session)
        else:  # its changes taken and handed to no reconciler (none of its datapath): whichever it is handed to next
            self._handed[session] = None  # diffs all of it (the one it was handed to before holds none of them)

    def _push_vteps(self):
        """Hand the hardware VTEPs whose desired rows changed (the programmer keeps them by delta:
        controller/viewvteps.py) their rows; OVSDB writes only the differences."""
        for name, desired in self.programmer.vteps.take_changes().items():
            self.ovsdb.set_vtep_desired(name, desired)

    # ------------------------------------------------------------------ Ryu events
    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _datapath_state(self, ev):
        dp = ev.datapath
        if dp.id is None:
            return
        if ev.state == MAIN_DISPATCHER:
            old = self.reconcilers.get(dp.id)
            if old is not None and old.datapath is not dp and old.datapath.is_active:
                hub.spawn(self._contest, old, dp)  # a second claim: decided without holding the event loop
                return
            self._adopt(dp)
        elif ev.state == DEAD_DISPATCHER:
            rec = self.reconcilers.get(dp.id)
            if rec is not None and rec.datapath is dp:
                self._stop(rec)
                del self.reconcilers[dp.id]
            self.tunnels.disconnected(dp)
            self.state.datapath_down(dp.id, conn=id(dp))

    def _answers(self, dpids):
        """The datapath ids of ``dpids`` connected over OpenFlow that answer an echo request now (asked together): a
        VRS whose OVSDB session ended but whose bridge answers is not gone (ovsdb/claims.py)."""
        recs = [self.reconcilers.get(dpid) for dpid in dpids]
        dps = [rec.datapath for rec in recs if rec is not None]
        return {dp.id for dp in probe_datapaths(dps, claims.PROBE_TIMEOUT)}

    def _contest(self, old, dp):
        """A second connection claims a datapath whose session is live: keep one (openflow/claims.py)."""
        keep_old, reason = claims.decide(self.state, old.datapath, dp, self.settings.openflow_port)
        if self.reconcilers.get(dp.id) is not old:  # the old session went meanwhile
            keep_old = False
        loser = dp if keep_old else old.datapath
        log.warning("datapath %016x: OpenFlow connection from %s claims it while the session from %s is live; "
                    "%s: keeping %s, closing %s", dp.id, claims.peer(dp), claims.peer(old.datapath), reason,
                    claims.peer(old.datapath if keep_old else dp), claims.peer(loser))
        drop_datapath(loser)
        if not keep_old and dp.is_active:
            self._adopt(dp)

    def _stop(self, rec):
        """A switch's reconciler whose connection closed or was replaced: it and its probes' sender end."""
        rec.stop()
        self.probes.disconnected(rec)

    def _adopt(self, dp):
        """Make ``dp`` the session of its datapath: a reconciler of its own, programmed as desired."""
        if dp.id is not None:
            old = self.reconcilers.pop(dp.id, None)
            if old is not None:
                self._stop(old)
            rec = SwitchReconciler(dp, on_sync=self.watch.note_synced,
                                   pacer=loop_pacer(self.reconcile_lane.pause, RECONCILE_EVERY),
                                   meter_rates=self.meter_rates)
            self.reconcilers[dp.id] = rec
            rec.keep_stale(self._keep_stale)
            if self.pair is not None:
                rec.hold(self.pair.role != "active")  # a standby (or undecided) node never writes
                self._roles_wake.set()
            rec.start()
            self.state.datapath_up(dp.id, claims.peer(dp), conn=id(dp))  # before the push: it may pause (_contest's
            # thread), and the connection's close handled then (_datapath_state) must find it to take it away
            session = self._session_of(dp.id)
            if session is not None and not self.hold.holding:  # known over OVSDB, and so its desired state
                for due in self.programmer.due({session}):  # (not if State has only partly read it)
                    self._push(due)

    def _first_policy(self, what, detail):
        """The first policy change (made here or replicated) lets the switches be synced fully."""
        if what == "policy" and self._keep_stale:
            self._keep_stale = False
            log.info("first policy change on a new store: switches are now synced fully")
            for rec in list(self.reconcilers.values()):
                rec.keep_stale(False)

    def _reconciler_of(self, dp):
        """The reconciler of ``dp``'s session; None for a connection that is not (or no longer) it."""
        rec = self.reconcilers.get(dp.id)
        return rec if rec is not None and rec.datapath is dp else None

    @set_ev_cls(REPLY_EVENTS, MAIN_DISPATCHER)
    def _switch_reply(self, ev):
        rec = self._reconciler_of(ev.msg.datapath)
        if rec is not None:
            rec.handle(ev.msg)

    @set_ev_cls(ofp_event.EventOFPRoleStatus, MAIN_DISPATCHER)
    def _role_status(self, ev):
        """OpenFlow 1.4: a switch changed our role (another controller took master)."""
        if self.pair is not None:
            msg = ev.msg
            rec = self._reconciler_of(msg.datapath)
            if rec is None:
                return
            self.pair.switch_reported(msg.generation_id, role_name(msg.datapath.ofproto, msg.role))
            rec.role = role_name(msg.datapath.ofproto, msg.role)
            self._roles_wake.set()

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def _port_status(self, ev):
        """A port added, changed or deleted on a switch: its OpenFlow number, known here before ovs-vswitchd has
        finished reconfiguring and written it to OVSDB (controller/ofports.py)."""
        ofports.port_status(self.state, ev.msg)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev):
        msg = ev.msg
        dp = msg.datapath
        if self.pair is not None and self.pair.role != "active":
            return  # only the active answers (an undecided node's connection is still EQUAL)
        kind = owner_kind_of(msg.cookie)
        counted = self._reconciler_of(dp)
        if counted is not None:  # by meter kind (openflow/meters.py): GET /v1/switches, metrics
            counted.count_packet_in(kind)
        if kind == "uplink":
            self._gateway_answer(msg)
            return
        if kind == "activation":  # a live migration's standby port heard from its VM (controller/state_activation.py)
            data = bytes(msg.data[6:12])
            self.state.activate(dp.id, msg.match.get("in_port"), ":".join(f"{b:02x}" for b in data)
                                if len(data) == 6 else "")
            return
        rec = self._reconciler_of(dp)
        answer = self.dhcp.answer(dp.id, msg.cookie, bytes(msg.data)) if rec is not None else None
        if answer is not None:
            rec.packet_out(answer.actions, answer.frame)

    def _switch_status(self, dpid, tick=None):
        """The switch's programming status for REST, counted with the REST answer's pauses (``tick``), not through
        the reconcilers' lane (a GET /v1/switches does not wait for the switches' plans)."""
        rec = self.reconcilers.get(dpid)
        if rec is None:
            return None
        programmed = self.programmed.of_switch(rec, self._session_of(dpid))  # (read before the count pauses)
        return {**rec.status(tick), "programmed_seq": programmed}

    def _programmer_counts(self):
        """For GET /v1/status: how often the desired state was recomputed from scratch or incrementally."""
        return {"full_recomputes": self.programmer.full_recomputes,
                "incremental_updates": self.programmer.incremental_updates,
                "vports_without_zone": zones.zones_status(self.programmer.view)}

