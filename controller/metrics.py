"""Prometheus metrics: ``GET /metrics`` in the Prometheus text format (docs/operations.md lists them).

Most values already live in Canopy's objects (State, the switches' reconcilers, the OVSDB listener, the
BGP speaker, the HA pair, the DHCP service), so one collector reads them when Prometheus scrapes instead of
counting twice. Only what nothing else keeps is counted here: REST requests (by route pattern, never the
raw path, so that ids cannot grow the series) and the event loop's lag, measured by a green thread as the
overshoot of a short sleep (controller/lagprobe.py; the hub is shared by everything: a late wake-up means
something held it).
"""

from __future__ import annotations


from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.process_collector import ProcessCollector

from controller import __version__
from controller.lagcause import Schedstat
from controller.lagprobe import LagProbe
from controller.pacer import paced
from controller.rest.lane import Lane
from openflow import floodlimits

disable_created_metrics()  # the _created series only add noise to a long-running process

LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
REST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)
ROLES = ("standalone", "starting", "active", "standby")
SWITCH_STATES = ("connected", "reading", "waiting", "syncing", "in_sync", "standby", "not_master", "error",
                 "stopped")
SENT_KINDS = ("flow_add", "flow_delete", "group_add", "group_modify", "group_delete", "meter_add", "meter_modify",
              "meter_delete")
COUNT_EVERY = 1000  # flows a switch's count (its status) takes between two pauses of a scrape (as RECONCILE_EVERY)


class Metrics:
    """One registry per controller (tests build several in one process).

    ``state`` and ``service`` are always there; the app attaches the rest with ``attach``."""

    def __init__(self, state, service):
        self.state = state
        self.service = service
        self.sources: dict = {}
        self.count_pause = None  # the scrapes' counts take turns through it (``attach``'s pause in a lane of their own)
        self.registry = CollectorRegistry()
        self.rest_requests = Counter("canopy_rest_requests", "REST requests answered, by route and status code",
                                     ("method", "route", "code"), registry=self.registry)
        self.rest_seconds = Histogram("canopy_rest_request_duration_seconds", "time to answer a REST request",
                                      ("method", "route"), buckets=REST_BUCKETS, registry=self.registry)
        self.loop_lag = Histogram("canopy_event_loop_lag_seconds", "how late a green thread's short sleep woke up "
                                  "(the event loop was held by other work)", buckets=LAG_BUCKETS,
                                  registry=self.registry)
        self.loop_lag_last = Gauge("canopy_event_loop_lag_last_seconds", "the latest event-loop lag sample",
                                   registry=self.registry)
        self.lag = LagProbe(on_sample=self._observe_lag)  # its run() is the probe's green thread (watch_loop)
        self.loop_thread = None  # the event loop thread's Schedstat (controller/lagcause.py), from watch_loop
        Gauge("canopy_event_loop_lag_max_seconds", "the largest event-loop lag sample of the last minute",
              registry=self.registry).set_function(lambda: self.lag.max_recent())
        self.registry.register(_CanopyCollector(self))
        ProcessCollector(namespace="", registry=self.registry)

    def attach(self, **sources) -> None:
        """Sources read at scrape time, any of: reconcilers (a function returning {dpid: SwitchReconciler}),
        pause (called after each family and between switches: the app gives the event loop a turn),
        budget (seconds: a switch's count also pauses by the wall clock, controller/pacer.py ``BoundedPacer``),
        ovsdb (OvsdbManagerServer), federation (bgp.federation.Federation), pair (controller.ha.Pair),
        dhcp (openflow.dhcp_service.DhcpService), hold (controller.startup_hold.StartupHold),
        external (returns the rows of controller/rest/external.py ``metric_rows``),
        collector (controller.collector.Collections: the cyclic collector's figures)."""
        self.sources.update(sources)
        if sources.get("pause") is not None:  # scrapes at once count one stretch a round, not one each
            self.count_pause = Lane(sources["pause"]).pause

    def observe_request(self, method: str, route: str, code: int, seconds: float) -> None:
        self.rest_requests.labels(method, route, str(code)).inc()
        self.rest_seconds.labels(method, route).observe(seconds)

    def watch_loop(self, sleep, interval: float | None = None, clock=None) -> None:
        """Run forever in a green thread: the lag probe (controller/lagprobe.py), sampling every ``interval``."""
        if interval is not None:
            self.lag.interval = interval
        if clock is not None:
            self.lag.clock = clock
        self.loop_thread = Schedstat()
        self.loop_thread()  # opened here, in the event loop's OS thread: its figures, whoever scrapes
        self.lag.run(sleep)

    def record_lag(self, seconds: float) -> None:
        self.lag.record(seconds)

    def _observe_lag(self, seconds: float) -> None:
        self.loop_lag.observe(seconds)
        self.loop_lag_last.set(seconds)

    def exposition(self) -> tuple[bytes, str]:
        """(body, content type) of the Prometheus text format."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _CanopyCollector:
    """Reads Canopy's state on each scrape (see the module docstring)."""

    def __init__(self, metrics: Metrics):
        self.m = metrics

    def collect(self):
        """Every family, with a pause after each: prometheus_client formats a family as soon as it is yielded,
        so a scrape holds the event loop for one family's collection and formatting at a time."""
        pause = self.m.sources.get("pause") or (lambda: None)
        for family in self._families(pause):
            yield family
            pause()

    def _families(self, pause):
        m = self.m
        yield from _core(m.state, m.service)
        reconcilers = m.sources.get("reconcilers")
        if reconcilers is not None:
            yield from _switches(m.state, reconcilers(), pause, m.count_pause, m.sources.get("budget"))
        if m.sources.get("ovsdb") is not None:
            yield from _ovsdb(m.sources["ovsdb"])
        if m.sources.get("dhcp") is not None:
            yield _counter("canopy_dhcp_requests", "DHCP requests punted to the controller, by result",
                           ("result",), [((k,), v) for k, v in sorted(m.sources["dhcp"].counters.items())
                                         if k != "requests"])
        if m.sources.get("hold") is not None:
            yield from _hold(m.sources["hold"])
        if m.sources.get("zones") is not None:
            yield _gauge("canopy_switch_vports_without_conntrack_zone", "policed vports of a switch (OVSDB session) "
                         "that got no conntrack zone (over 65,279 on one switch): their IP traffic is dropped",
                         ("session",), [((session,), len(vids)) for session, vids in sorted(m.sources["zones"]().items())])
        if m.sources.get("floods") is not None:
            yield from _floods(m.sources["floods"])
        if m.sources.get("external") is not None:
            yield from _external(*m.sources["external"]())
        yield from _bgp(m.sources.get("federation"))
        yield from _ha(m.sources.get("pair"))
        if m.sources.get("collector") is not None:
            yield from _collector(m.sources["collector"])
        if m.loop_thread is not None:
            yield from _loop_thread(*m.loop_thread())


def _loop_thread(on_cpu: float, waited: float):
    """The event loop's OS thread, from the kernel: a lag with little CPU and much waiting is the machine's (other
    processes had the CPUs), not work of the controller's (docs/operations.md)."""
    yield _counter("canopy_event_loop_cpu_seconds", "CPU seconds of the event loop's OS thread", (), [((), on_cpu)])
    yield _counter("canopy_event_loop_cpu_wait_seconds", "seconds the event loop's OS thread was runnable and waited "
                   "for a CPU (other processes had them)", (), [((), waited)])


def _gauge(name, doc, labels=(), samples=()):
    family = GaugeMetricFamily(name, doc, labels=list(labels))
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


def _counter(name, doc, labels=(), samples=()):
    family = CounterMetricFamily(name, doc, labels=list(labels))
    for values, value in samples:
        family.add_metric(list(values), value)
    return family


def _collector(watch):
    """The cyclic garbage collector's collections per generation (controller/collector.py): a long one holds the
    event loop for its whole duration."""
    rows = watch.figures()
    generation = ("generation",)
    yield _counter("canopy_gc_collections", "cyclic garbage collections, by generation (2: full)", generation,
                   [((str(r["generation"]),), r["collections"]) for r in rows])
    yield _counter("canopy_gc_collection_seconds", "CPU seconds spent in cyclic garbage collections, by generation",
                   generation, [((str(r["generation"]),), r["seconds"]) for r in rows])
    yield _gauge("canopy_gc_collection_max_seconds", "the longest cyclic garbage collection since the start (CPU "
                 "seconds, the event loop held meanwhile), by generation", generation,
                 [((str(r["generation"]),), r["max_seconds"]) for r in rows])
    yield _counter("canopy_gc_refreshes", "refreshes: every frozen object unfrozen and collected once, at a quiet "
                   "moment", (), [((), watch.refreshes)])


def _core(state, service):
    yield _gauge("canopy_build_info", "the running Canopy's version", ("version",), [((__version__,), 1)])
    yield _gauge("canopy_store_sequence", "sequence number of the last committed policy change", (),
                 [((), state.last_seq)])
    store = service.store
    yield _gauge("canopy_store_ok", "1 while the store takes writes (or an HA standby's renewal of its file waits for "
                 "a 'canopy backup'), 0 while its disk refuses them (full, read-only, I/O error) or its file went: GET "
                 "/v1/status says why", (), [((), 0 if store.refusing else 1)])
    yield _counter("canopy_store_write_failures", "write transactions (and markers) the store's disk refused", (),
                   [((), store.faults)])
    yield _counter("canopy_store_renewals_deferred", "an HA standby's store renewals refused while a 'canopy backup' "
                   "copied (tried again at the next tick; not write failures)", (), [((), store.deferrals)])
    yield _gauge("canopy_store_renewal_deferred_seconds", "how long an HA standby's store renewal has been waiting for "
                 "'canopy backup's (0: none waits; health degraded past ha.store_renewal_wait_ms)", (),
                 [((), round(store.deferred_for(), 3))])
    yield _gauge("canopy_state_version", "grows with every change of anything the controller's State holds", (),
                 [((), state.version)])
    yield _gauge("canopy_policy_objects", "policy objects by kind", ("kind",),
                 [((k,), n) for k, n in sorted(service.counts().items())])
    bound: dict[str, int] = {}
    for loc in state.locations.values():
        bound[loc.flavour] = bound.get(loc.flavour, 0) + 1
    yield _gauge("canopy_vports_bound", "vports bound to a port of a virtual switch or VTEP, by flavour",
                 ("flavour",), [((f,), bound.get(f, 0)) for f in sorted({"kvm", "hyperv", "esxi"} | set(bound))])
    connects = getattr(state, "connects", {})
    yield _gauge("canopy_openflow_connected_switches", "datapaths connected over OpenFlow", (),
                 [((), len(state.datapaths))])
    yield _counter("canopy_openflow_connects", "OpenFlow connections that completed the handshake", (),
                   [((), connects.get("openflow", 0))])
    yield _counter("canopy_openflow_disconnects", "OpenFlow connections that closed", (),
                   [((), connects.get("openflow_down", 0))])
    yield _gauge("canopy_ovsdb_connected", "OVSDB peers reporting, by kind", ("kind",),
                 [(("vrs",), len(state.vrs)), (("vtep",), len(state.vteps))])
    yield _counter("canopy_ovsdb_connects", "OVSDB peers that reported for the first time on a connection",
                   ("kind",), [((k,), connects.get(k, 0)) for k in ("vrs", "vtep")])
    yield _counter("canopy_ovsdb_disconnects", "OVSDB peers whose connection closed", ("kind",),
                   [((k,), connects.get(k + "_down", 0)) for k in ("vrs", "vtep")])


def _switches(state, reconcilers, pause, count_pause=None, budget: float | None = None):
    """Per-switch families; ``pause()`` between switches, while reading and while adding their samples, lets the
    event loop serve others meanwhile (50 switches' samples added in one go: 30-50 ms in vrs_scale's takeover).
    ``count_pause``: the pause of a switch's count, in a lane of the scrapes' own (``Metrics.count_pause``): not the
    reconcilers' lane (a scrape does not wait behind the switches' plans), and scrapes at once, each counting a
    switch whose flows changed (a count is kept once it has ended), take one count's stretch a round between them.
    ``budget``: the counts also pause once a stretch has run that many seconds (``pacer.paced``)."""
    names = {f"{dpid:016x}": "" for dpid in state.datapaths}
    names.update({f"{snap.datapath_id:016x}": snap.chassis for snap in state.vrs.values()
                  if snap.datapath_id is not None})
    connected = _gauge("canopy_switch_openflow_connected", "1 while the VRS is connected over OpenFlow",
                       ("datapath", "chassis"))
    for dpid, chassis in sorted(names.items()):
        connected.add_metric([dpid, chassis], 1 if int(dpid, 16) in state.datapaths else 0)
    yield connected
    rows, tick = [], paced(count_pause or pause, COUNT_EVERY, budget).tick  # a long count: in the scrapes' lane,
    if reconcilers and count_pause is not None:  # its first stretch too: it waits for its turn (scrapes at once
        count_pause()  # would each take a first stretch in the same round)
    for dpid, rec in sorted(reconcilers.items()):
        key = f"{dpid:016x}"
        rows.append(((key, names.get(key, "")), rec, rec.status(tick)))
        pause()
    flows = _gauge("canopy_switch_flows", "flows of a connected switch: desired, installed, pending (still to "
                   "add or remove), rejected and kept (not deleted: a new, empty store)",
                   ("datapath", "chassis", "kind"))
    groups = _gauge("canopy_switch_groups", "groups of a connected switch: desired, installed, rejected",
                    ("datapath", "chassis", "kind"))
    sync = _gauge("canopy_switch_sync_state", "1 for the reconciler's current state", ("datapath", "chassis",
                                                                                         "state"))
    meters = _gauge("canopy_switch_meters", "meters on the flows to the controller of a connected switch: desired, "
                    "installed, rejected, and supported (1, or 0 on a switch without meters: those flows unmetered; "
                    "absent until the switch has said)",
                    ("datapath", "chassis", "kind"))
    punted = _counter("canopy_switch_packet_ins", "packets a switch sent to the controller (over its meters), by meter "
                      "kind: activation, dhcp, other", ("datapath", "chassis", "kind"))
    sent = _counter("canopy_switch_messages_sent", "flow-mods, group-mods and meter-mods sent, by kind",
                    ("datapath", "chassis", "kind"))
    changes = _counter("canopy_switch_change_sets", "change sets (reconcile rounds that sent something) applied",
                       ("datapath", "chassis"))
    reads = _counter("canopy_switch_read_backs", "full read-backs of the switch's flows and groups",
                     ("datapath", "chassis"))
    errors = _counter("canopy_switch_errors_received", "OpenFlow errors the switch returned for Canopy's "
                      "messages", ("datapath", "chassis"))
    faults = _counter("canopy_switch_reconcile_faults", "reconcile rounds that failed inside Canopy (then retried)",
                      ("datapath", "chassis"))
    seconds = SummaryMetricFamily("canopy_switch_change_set_seconds", "time to send and confirm a change set",
                                  labels=["datapath", "chassis"])
    for labels, rec, status in rows:
        pause()
        for kind in ("desired", "installed", "pending", "rejected", "kept"):
            flows.add_metric([*labels, kind], status[kind])
        for kind, value in status["groups"].items():
            groups.add_metric([*labels, kind], value)
        for kind in ("desired", "installed", "rejected"):
            meters.add_metric([*labels, kind], status["meters"][kind])
        if status["meters"]["supported"] is not None:  # unknown until the switch has said (its meter features)
            meters.add_metric([*labels, "supported"], int(status["meters"]["supported"]))
        for kind, value in status["packet_ins"].items():
            punted.add_metric([*labels, kind], value)
        for name in sorted(set(SWITCH_STATES) | {status["state"]}):
            sync.add_metric([*labels, name], 1 if status["state"] == name else 0)
        counters = status["sent"]
        for kind in SENT_KINDS:
            sent.add_metric([*labels, kind], counters.get(kind, 0))
        changes.add_metric(list(labels), counters.get("change_sets", 0))
        reads.add_metric(list(labels), counters.get("read_backs", 0))
        errors.add_metric(list(labels), counters.get("errors_received", 0))
        faults.add_metric(list(labels), counters.get("errors", 0))
        seconds.add_metric(list(labels), count_value=counters.get("change_sets", 0),
                           sum_value=getattr(rec, "change_seconds", 0.0))
    yield from (flows, groups, meters, punted, sync, sent, changes, reads, errors, faults, seconds)


def _floods(watch):
    """Subnets whose broadcast passes Open vSwitch's limits on a switch (openflow/floodlimits.py): a series for each
    of the first ``METRICS_OVER`` pairs (switch, subnet), the rest counted."""
    first = watch.rows(floodlimits.METRICS_OVER)
    yield _gauge("canopy_subnet_flood_over_limit", "1 for a subnet whose broadcast on a switch passes one of Open "
                 "vSwitch's limits (resubmits: the broadcast or its last VTEPs dropped; datapath_actions: VTEPs past "
                 f"~780 get no copy); the first {floodlimits.METRICS_OVER} (switch, subnet) pairs only",
                 ("chassis", "subnet", "limit"),
                 [((row["chassis"], row["subnet"], limit), 1) for row in first for limit in row["passed"]])
    yield _gauge("canopy_subnet_flood_over_limit_pairs", "(switch, subnet) pairs whose broadcast passes one of Open "
                 "vSwitch's limits", (), [((), len(watch.over))])
    yield _gauge("canopy_subnet_flood_over_limit_more", "of those pairs, the ones past the first "
                 f"{floodlimits.METRICS_OVER} given no series of their own (GET /v1/subnets/ID or /v1/switches lists "
                 "them)", (), [((), len(watch.over) - len(first))])
    yield _counter("canopy_flood_limit_crossings", "times a subnet's broadcast on a switch came to pass one of Open "
                   "vSwitch's limits (each logged once as a warning)", (), [((), watch.crossings)])


def _external(fip_rows, pat_rows):
    """Connections opened through floating IPs and port address translation: the packet counts of the flows that
    commit a new connection's translation (openflow/external.py), read from the switches at scrape time."""
    yield _counter("canopy_floating_ip_connections_opened", "connections opened through a floating IP on the VRS "
                   "where it is active, inbound (to it) or outbound (from its VM)",
                   ("floating_ip", "address", "chassis", "direction"),
                   [((fid, addr, chassis, direction), n) for fid, addr, chassis, direction, n in fip_rows])
    yield _counter("canopy_translation_connections_opened", "connections a VRS opened for a domain through port "
                   "address translation to an external network", ("chassis", "external_network", "domain"),
                   [((chassis, net, dom), n) for chassis, net, dom, n in pat_rows])


def _ovsdb(server):
    kinds = server.session_kinds()  # counted, not described: a scrape costs one look per session
    yield _gauge("canopy_ovsdb_sessions", "open OVSDB manager connections, by what the peer is", ("kind",),
                 [((k,), n) for k, n in sorted(kinds.items())])
    yield _counter("canopy_ovsdb_refused_interface_claims", "Port rows a VRS's OVSDB peer sent referencing an "
                   "Interface row another port holds: refused, the interface stays with its holder (GET "
                   "/v1/ovsdb/sessions names the session)", (), [((), server.claims.refused_interface_claims)])


def _hold(hold):
    yield _gauge("canopy_startup_hold", "1 while the start-up hold keeps every write back (hitless restart), "
                 "0 once released", (), [((), 1 if hold.holding else 0)])
    yield _gauge("canopy_startup_hold_waiting_switches", "switches connected before the restart that have not "
                 "reported yet (0 once released)", ("kind",), [((k,), n) for k, n in sorted(hold.waiting().items())])
    yield _gauge("canopy_startup_hold_seconds_left", "seconds the start-up hold can still last unless another switch "
                 "connected before comes back (each one that does moves its end, up to restart.hold_max; 0 once "
                 "released)", (), [((), round(hold.seconds_left() or 0.0, 3))])


def _bgp(federation):
    if federation is None:
        return
    rows = federation.peers()
    yield _gauge("canopy_bgp_session_up", "1 while the BGP session with the neighbor is established",
                 ("neighbor", "peer_asn"), [((r["address"], str(r["asn"])), 1 if r["state"] == "up" else 0)
                                            for r in rows])
    yield _gauge("canopy_bgp_routes_received", "EVPN routes the neighbor currently sends us", ("neighbor",),
                 [((r["address"],), r["received"]) for r in rows])
    yield _gauge("canopy_bgp_routes_sent", "EVPN routes announced to the neighbor", ("neighbor",),
                 [((r["address"],), r["sent"]) for r in rows])
    status = federation.speaker.status()
    yield _gauge("canopy_bgp_routes_announced", "EVPN routes Canopy announces (to every neighbor)", (),
                 [((), status["announced"])])
    yield _counter("canopy_bgp_speaker_restarts", "times the BGP speaker (ExaBGP) was restarted", (),
                   [((), status["restarts"])])
    mobility = federation.mobility.counts()
    yield _gauge("canopy_evpn_local_macs_not_announced", "local MACs Canopy does not announce because a peer's "
                 "route wins (MAC mobility: a higher sequence number, or sticky)", ("reason",),
                 [(("sequence",), mobility["not_announced"] - mobility["sticky"]), (("sticky",), mobility["sticky"])])
    yield _gauge("canopy_evpn_duplicate_macs", "MACs flagged duplicate (RFC 7432 section 15.1: moved bgp.duplicate_mac."
                 "max_moves times within its window): not announced until cleared", (), [((), mobility["duplicate"])])
    kept = federation.keeper.counts()
    yield _gauge("canopy_evpn_duplicate_macs_not_kept", "MACs flagged duplicate beyond those kept across a restart "
                 "and sent to the HA standby (bgp/dupkeep.py KEPT)", (), [((), kept["not_kept"])])
    yield _counter("canopy_evpn_duplicate_mac_flags_dropped", "malformed duplicate MAC flags read from the file or "
                   "received from the HA active, dropped", (), [((), kept["dropped"])])


def _ha(pair):
    role = pair.role if pair is not None else "standalone"
    yield _gauge("canopy_ha_role", "1 for this node's current role in the pair", ("role",),
                 [((r,), 1 if r == role else 0) for r in sorted(set(ROLES) | {role})])
    if pair is None:
        return
    status = pair.status()
    repl = status.get("replication") or {}
    yield _gauge("canopy_ha_generation", "the pair's OpenFlow generation id held by this node", (),
                 [((), status.get("generation_id") or 0)])
    yield _gauge("canopy_ha_replication_lag", "committed changes the standby has not confirmed (on the active) "
                 "or not received (on the standby)", (), [((), repl.get("lag") or 0)])
    yield _gauge("canopy_ha_peer_alive", "1 while the peer's heartbeats arrive", (),
                 [((), 1 if (status.get("peer") or {}).get("alive") else 0)])
    yield _counter("canopy_ha_takeovers", "times this node became active", (), [((), status.get("takeovers") or 0)])
    yield _counter("canopy_ha_store_renewals", "times this standby's store file went and it took a new one, filled "
                   "by the active's snapshot (docs/store.md)", (), [((), repl.get("store_renewals") or 0)])
    gateways = status["runtime"].get("gateway_macs")
    if gateways is not None:
        yield _counter("canopy_ha_gateway_macs_refused", "tables of external gateways' MACs from the HA peer refused "
                       "whole (malformed or hostile): nothing taken", (), [((), gateways["refused"])])
        yield _gauge("canopy_ha_gateway_macs_not_kept", "external gateways' MACs beyond those sent to the HA standby "
                     "(controller/gatewaykeep.py KEPT): a takeover resolves them again", (),
                     [((), gateways["not_kept"])])
