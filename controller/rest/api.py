"""The /v1 REST API, independent of any web framework.

``Api.handle(Request)`` returns a ``Response`` (both in controller/rest/wire.py, with ``ApiError`` and ``Route``);
controller/rest/server.py serves it over HTTP.
Routes are a table of data; the OpenAPI document (controller/rest/openapi.py) is generated from that
same table and the model schema, so the document describes what the server does.

Errors are JSON: ``{"error": {"code", "message", "field", "reason", "errors": [...]}}`` with a 4xx status
for anything the client got wrong; an unexpected fault is a 500 with an error id that is in the log,
never a traceback.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import time
import uuid
from typing import Callable

from controller import __version__, logs
from controller.metrics import Metrics
from controller import extnet, security
from controller.commits import CommitBusy
from controller.model import KINDS, PolicyError
from controller.pacer import collector_paused
from controller.rest.lane import answer_pacer
from controller.rest.paced import paced_json
from controller.rest.wire import (BOOL_SCHEMA, QUESTION_BODY, SEQ_SCHEMA, ApiError, Request, Response, Route,
                                   _bool_param, _error, _int_param, _json_body, stopping)
from controller.service import NotActive, NotFound
from controller.store import StoreFault
from openflow.installed import paced

log = logging.getLogger("canopy.rest")
access_log = logging.getLogger("canopy.rest.access")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")  # others are counted as "other"

SWITCHES_EVERY = 1000  # list elements (switches, ports) encoded by GET /v1/switches between two pauses
CHANGES_PAGE = 1000  # changes GET /v1/changes reads and makes into their wire form between two pauses (~13 ms)
LIST_EVERY = 500  # objects of a collection ordered, or made into views, between two pauses of GET /v1/<kind>
LIST_CHUNK = 100  # of them between two ticks
_SYNC_KEYS = ("state", "desired", "installed", "pending", "rejected", "kept", "meters", "packet_ins",
              "programmed_seq")  # ``sync`` (``_with_sync``)
ANSWER_EVERY = 1000  # elements of an answer's long lists encoded between two pauses (~4 ms: an apply's changes)
COLLECTIONS = {"tenant": "tenants", "domain": "domains", "subnet": "subnets", "vport": "vports", "acl": "acls",
               "policy_group": "policy-groups", "external_network": "external-networks",
               "floating_ip": "floating-ips", "vtep_binding": "vtep-bindings"}
FILTERS = {"domain": ("tenant_id",), "subnet": ("tenant_id", "domain_id"), "vport": ("subnet_id",),
           "acl": ("tenant_id",), "policy_group": ("tenant_id",), "vtep_binding": ("subnet_id", "switch"),
           "floating_ip": ("tenant_id", "external_network_id", "vport_id")}
STATUS_FOR_CODE = {"conflict": 409, "has_dependents": 409, "exhausted": 409, "source_conflict": 409}
APPLY_FLAGS = ("prune", "dry_run", "adopt")
RETRY_BUSY = 1  # Retry-After (seconds) of a write refused because the commit section stayed busy
RETRY_STORE = 10  # Retry-After (seconds) of a write the store's disk refused (an operator frees space)


# Endpoints the docs name that exist only when a setting turns them on, and what turns each on: their 404 says so
# (an operator following README.md's /v1/stretches got "no such endpoint", and /v1/openapi.json does not list it)
SWITCHED_OFF = {
    "/v1/ha/solo": "this controller is not one of an HA pair (no ha.peer in its settings; docs/ha.md)",
    "/v1/stretches": "the stretch trace is off; start the controller with CANOPY_STRETCH_TRACE=N, the number of "
                     "stretches to keep (docs/operations.md)",
}


class Api:
    # None or a function (datapath id as int, the answer's pacer tick) -> that switch's programming status (its
    # reconciler's counts: state, desired, installed, pending) or None when it has no OpenFlow connection
    switch_status: Callable[[int, Callable], dict | None] | None = None
    pause: Callable[[], None] | None = None  # a turn for the event loop in big answers (None: never)
    budget: float | None = None  # and seconds of wall clock they run before they pause (None: by the count only)
    stopping = False  # the controller is stopping (controller/rest/server.py ``stop``): requests get 503
    # kind -> callable(objects) -> {id: counters}: GET /v1/<kind>?counters=true adds them (read from the switches)
    list_counters: dict = {}

    def __init__(self, service, state, settings, extra_routes=(), ha=None, programming=None, status_parts=None,
                 faults=None):
        """``ha``: the controller.ha.Pair of an HA pair (None: standalone): its role shows in /v1/status,
        and while it is not active every write is refused with 503 naming the active. ``programming``:
        returns the programming loop's status (controller/programloop.py) for /v1/status. ``status_parts``:
        {key: callable returning a JSON-ready value} added to /v1/status (e.g. the start-up hold). ``faults``:
        {what: callable returning why it fails, or None}: /v1/status is ``degraded`` while one fails (BGP speaker)."""
        self.programming = programming
        self.service = service
        self.state = state
        self.settings = settings
        self.ha = ha
        self.metrics = Metrics(state, service)
        self.status_parts = dict(status_parts or {})
        self.floods = None  # the programmer's openflow.floodlimits.FloodWatch (the app sets it)
        self.faults = dict(faults or {})
        self.routes = self._object_routes() + [
            Route("GET", "/v1/status", self.status, "version, HA role, uptime and object counts"),
            Route("GET", "/v1/switches", self.switches, "connected VRS with their ports",
                  query=(("ports", "false: without their ports (null), as canopy apply --wait polls", BOOL_SCHEMA),)),
            Route("GET", "/v1/switches/{dpid}", self.switch, "one VRS by datapath id (16 hex digits)"),
            Route("GET", "/v1/changes", self.changes, "the committed change log",
                  query=(("since", "return changes after this sequence number", SEQ_SCHEMA),
                         ("limit", "at most this many (capped at 10000)", SEQ_SCHEMA))),
            Route("GET", "/v1/ha", self.ha_status,
                  "HA pair: role, peer, heartbeats, replication sequence and lag, generation id"),
            Route("POST", "/v1/apply", self.apply, "apply a policy document declaratively", write=True),
            Route("GET", "/v1/openapi.json", self.openapi, "this API's OpenAPI 3 document"),
            Route("GET", "/metrics", self.prometheus, "metrics in the Prometheus text format (docs/operations.md)",
                  media="text/plain"),
            Route("GET", "/v1/log-level", self.log_level, "the controller's log level"),
            Route("PUT", "/v1/log-level", self.set_log_level, "change the log level of every logger now "
                  "(body {\"level\": \"debug|info|warning|error\"}; not kept across restarts)", write=True,
                  local=True),
        ] + list(extra_routes)
        if ha is not None:
            self.routes.append(Route("PUT", "/v1/ha/solo", self.ha_solo, "solo mode on or off: {\"solo\": true} lets "
                                     "this active acknowledge writes the standby did not confirm", write=True))
        self._compiled = [(r, r.regex) for r in self.routes]

    # ------------------------------------------------------------------ dispatch
    def handle(self, req: Request) -> Response:
        started = time.monotonic()
        try:
            resp = self._dispatch(req)
        except ApiError as exc:
            resp = _error(exc.status, exc.code, exc.reason, exc.field, exc.errors)
            resp.headers.update(exc.headers)
        except PolicyError as exc:
            resp = _policy_error(exc)
        except NotFound as exc:
            resp = _error(404, "not_found", str(exc))
        except NotActive as exc:
            resp = _error(503, exc.code, exc.reason)
        except CommitBusy as exc:  # the write waited rest.write_wait_ms for State's commit section
            resp = _error(503, "commit_busy", str(exc))
            resp.headers["Retry-After"] = str(RETRY_BUSY)
        except StoreFault as exc:  # the disk refused the write's transaction (full, read-only, I/O error)
            resp = _error(503, "store_failed", str(exc))
            resp.headers["Retry-After"] = str(RETRY_STORE)
        except Exception:
            if self.stopping:  # the store closed under it: the controller is going, not failing
                log.info("%s %s failed while the controller stops", req.method, req.path, exc_info=True)
                resp = stopping()
            else:
                error_id = uuid.uuid4().hex[:12]
                log.exception("internal error %s on %s %s", error_id, req.method, req.path)
                resp = _error(500, "internal", f"internal error {error_id}; the controller log has the details")
        self.record(req, resp, time.monotonic() - started)
        return resp

    def take_turn(self) -> None:
        """A big answer waits for its turn before it starts: many asked at once are computed one stretch at a time
        (``pause`` is controller/rest/lane.py's in the controller)."""
        if self.pause is not None:
            self.pause()

    def encoded(self, resp: Response) -> bytes:
        """``resp``'s bytes as the REST server writes them: pausing (``pause``) every ANSWER_EVERY elements of its long
        lists (an apply's changes or problems, a listing)."""
        return resp.encoded(None if self.pause is None else answer_pacer(self.pause, ANSWER_EVERY, self.budget).tick)

    def record(self, req, resp, seconds):
        """The access line (never the query string) and the request metrics; also for requests the REST
        server refused before handle() (preflight)."""
        route = req.route or "unmatched"
        method = req.method if req.method in METHODS else "other"
        self.metrics.observe_request(method, route, resp.status, seconds)
        level = logging.INFO if getattr(self.settings, "access_log", False) else logging.DEBUG
        access_log.log(level, "%s %s %s -> %d (%.1f ms)", req.remote, method, req.path, resp.status, seconds * 1000)

    def preflight(self, req: Request) -> Response | None:
        """What the request line and headers alone decide, before a body is read: the error response for an
        unknown path (404), a method the path does not take (405 with Allow), a missing or wrong token (401) or a
        write with the read-only token (403); None if the request may go on."""
        try:
            self._authorised_route(req)
        except ApiError as exc:
            resp = _error(exc.status, exc.code, exc.reason, exc.field, exc.errors)
            resp.headers.update(exc.headers)
            return resp
        return None

    def _authorised_route(self, req):
        """(route, path parameters) for a request its token allows. The token is checked first: without one a client
        learns nothing of the API's shape (which paths exist, which methods each takes), 401 before 404 and 405."""
        try:
            route, params = self._match(req)
        except ApiError:
            self._authorise(req, None)
            raise
        self._authorise(req, route)
        return route, params

    def _match(self, req):
        """(route, path parameters) for the request; ApiError 404 or 405 (with Allow) if none."""
        path = req.path.rstrip("/") or "/"
        allowed = []
        for route, regex in self._compiled:
            match = regex.fullmatch(path)  # not match(): "$" also matches before a final newline
            if not match:
                continue
            if route.method != req.method:
                allowed.append(route.method)
                continue
            req.route = route.pattern
            return route, match.groupdict()
        if allowed:
            raise ApiError(405, "method_not_allowed", f"{req.method} is not allowed here; use {', '.join(allowed)}",
                           headers={"Allow": ", ".join(sorted(set(allowed)))})
        if path in SWITCHED_OFF:  # a documented endpoint this controller serves only with a setting it lacks
            raise ApiError(404, "not_found", f"{path} is not served here: {SWITCHED_OFF[path]}")
        raise ApiError(404, "not_found", f"no such endpoint: {req.path!r} (see /v1/openapi.json)")

    def _dispatch(self, req):
        route, params = self._authorised_route(req)
        if (route.write and not route.local or route.active) and self.ha is not None:
            reason = self.ha.writable()
            if reason:
                raise ApiError(503, "not_active", reason)
        return route.handler(req, **params)

    def _authorise(self, req, route):
        """401 or 403 unless the token (or an open read) allows ``route``; None: nothing serves the path and method,
        a GET or HEAD is a read, any other method needs either token (the read-only one may read the OpenAPI)."""
        write = route.write if route is not None else req.method not in ("GET", "HEAD")
        if not write and self._open_read(req.remote):
            return
        header = req.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiError(401, "unauthorized", "this request needs 'Authorization: Bearer <token>'")
        token, read_token = token.strip(), self.settings.rest_read_token
        writer = _same(token, self.settings.rest_token or "")
        reader = _same(token, read_token or "") and read_token is not None  # both compared: the time tells neither
        if writer or (reader and (route is None or not route.write)):
            return
        if reader:
            raise ApiError(403, "read_only_token", f"{req.method} {route.pattern} changes state, and the bearer token "
                           "is the read-only one (rest.read_token): it may only read; writes need the write token "
                           "(rest.token)")
        raise ApiError(401, "unauthorized", "the bearer token is not valid")

    def _open_read(self, remote):
        mode = self.settings.open_reads
        if mode == "always":
            return True
        if mode == "never":
            return False
        try:
            return ipaddress.ip_address(remote.split("%")[0]).is_loopback
        except ValueError:
            return False

    # ------------------------------------------------------------------ object routes
    def _object_routes(self):
        routes = []
        for kind in KINDS:
            base = "/v1/" + COLLECTIONS[kind]
            filters = tuple((f, f"only objects with this {f}") for f in FILTERS.get(kind, ())) + (
                ("name", "only objects with this name"),)
            routes += [
                Route("GET", base, self._lister(kind), f"list {kind}s", kind=kind, action="list", query=filters),
                Route("POST", base, self._creator(kind), f"create a {kind}", True, kind, "create"),
                Route("GET", base + "/{id}", self._getter(kind), f"one {kind}", kind=kind, action="get"),
                Route("PATCH", base + "/{id}", self._updater(kind), f"change fields of a {kind} (merge)", True,
                      kind, "update"),
                Route("DELETE", base + "/{id}", self._deleter(kind), f"delete a {kind}", True, kind, "delete",
                      query=(("cascade", "true: also delete what belongs to it", BOOL_SCHEMA),)),
            ]
        return routes

    def _lister(self, kind):
        def handler(req):
            self.take_turn()
            allowed = set(FILTERS.get(kind, ())) | {"name"} | ({"counters"} if kind in self.list_counters else set())
            for key in req.query:
                if key not in allowed:
                    raise ApiError(400, "bad_query", f"unknown query parameter; use {sorted(allowed)}", key)
            filters = {k: v for k, v in req.query.items() if k != "counters"}
            counters = "counters" in req.query and _bool_param(req, "counters")
            pacer, policy = answer_pacer(self.pause, LIST_EVERY, self.budget), self.state.policy
            with collector_paused():  # a view's dicts each, tens of thousands (rest/dataplane.py's listing)
                # the policy as it is now (a value: a change meanwhile makes a new one, in the next answer), its
                # objects and refs alike; where a vport is bound is read as each view is made
                objects = list(policy.all(kind))
                keyed = [((policy.ref(kind, o), o["id"]), o) for o in paced(objects, pacer.tick, LIST_CHUNK)
                         if all(o.get(k) == v for k, v in filters.items())]
                keyed.sort(key=lambda pair: pair[0])
                items = [o for _, o in keyed]
                extra = {"reach": security.Reach(list(policy.all("vport")), pacer.tick)} \
                    if kind == "acl" else {}  # each ACL's vports: one walk over them for the whole listing
                views = [self._view(kind, o, policy=policy, **extra) for o in paced(items, pacer.tick, LIST_CHUNK)]
            if counters:
                found = self.list_counters[kind](items)
                for view in views:
                    view["counters"] = found.get(view["id"])
            return Response(200, {"items": views, "count": len(items)})
        return handler

    def _creator(self, kind):
        def handler(req):
            obj = self.service.create(kind, _json_body(req, self.pause))
            return Response(201, self._view(kind, obj),
                            {"Location": f"/v1/{COLLECTIONS[kind]}/{obj['id']}"})
        return handler

    def _getter(self, kind):
        def handler(req, id):
            return Response(200, self._view(kind, self.service.get(kind, id)))
        return handler

    def _updater(self, kind):
        def handler(req, id):
            return Response(200, self._view(kind, self.service.update(kind, id, _json_body(req, self.pause))))
        return handler

    def _deleter(self, kind):
        def handler(req, id):
            cascade = _bool_param(req, "cascade")
            return Response(200, {"deleted": self.service.delete(kind, id, cascade=cascade)})
        return handler

    def _view(self, kind, obj, reach=None, policy=None):
        """``obj``'s answer; ``policy``: the one its refs come from (a listing's, taken when it began), else State's."""
        policy = self.state.policy if policy is None else policy
        out = dict(obj)
        out["ref"] = policy.ref(kind, obj)
        if kind == "vport":
            out.update(self.state.vport_status(obj["id"]))
        if kind == "acl":  # where it applies (controller/security.py)
            out["applied"] = security.applied(policy, obj, self.state.locations, reach)
        if kind == "subnet" and self.floods is not None:  # where its broadcast passes OVS's limits (floodlimits)
            out["flood_limits"] = self.floods.of_subnet(obj["id"])
        if kind == "floating_ip":  # where it is active (controller/extnet.py)
            out.update(extnet.floating_status(policy, obj, self.state.locations, self.state.vrs))
        return out

    # ------------------------------------------------------------------ other routes
    def status(self, req):
        return Response(200, {
            "version": __version__, "role": self.ha.role if self.ha is not None else "standalone",
            "uptime": round(time.monotonic() - self.state.up_since, 3),
            "seq": self.state.last_seq, "state_version": self.state.version, "counts": self.service.counts(),
            "switches": {"ovsdb": len(self.state.vrs), "openflow": len(self.state.datapaths)},
            "vports_bound": len(self.state.locations), "vports_mac_mismatch": len(self.state.mismatched),
            "vports_migrating": len(self.state.standby_of), "activation": dict(self.state.activation_counts),
            "event_loop_lag": self.metrics.lag.status(), "store": self._store_status(), **self._health(),
            **{key: part() for key, part in self.status_parts.items()}})

    def _store_status(self):
        """The store: ``state`` ok|deferred|failed, and while not ok the last write refused (``fault``: what, reason,
        since, at, file_gone); ``faults``: refused since the start (controller/store.py ``StoreFault``); ``renewal``:
        "deferred: a backup is copying" while an HA standby's renewal waits for a ``canopy backup`` (``deferral``:
        reason, since, tries), else null, and ``state`` deferred, not failed, when what it mends is the file gone
        (``Store.refusing``); ``renewals_deferred``: such refusals since the start; ``file_system_warning``: data_dir on
        a network file system (controller/storedisk.py), else null."""
        store = self.service.store
        fault, deferral = store.fault, store.deferral
        state = "failed" if store.refusing else "deferred" if deferral else "ok"
        return {"path": store.path, "state": state, "fault": dict(fault) if fault else None,
                "faults": store.faults, "renewal": "deferred: a backup is copying" if deferral else None,
                "deferral": dict(deferral) if deferral else None, "renewals_deferred": store.deferrals,
                "file_system_warning": store.file_system_warning}

    def _health(self):
        """``health`` ok|degraded and, when degraded, ``degraded_reason``; ``programming`` in detail. A store that
        refuses writes degrades it too (the switches stay programmed; policy writes are refused), and so does each of
        ``faults`` while it fails (a BGP speaker that cannot start ExaBGP or keep it running)."""
        out = {"health": "ok"}
        reasons = []
        if self.programming is not None:
            programming = self.programming()
            out = {"health": programming["state"], "programming": programming}
            if programming["state"] != "ok":
                reasons.append("programming switches failed: %s" % programming["reason"])
        fault = self.service.store.refusing
        if fault is not None:
            reasons.append(f"the store {self.service.store.path} refuses writes: {fault['reason']}")
        reasons += self._deferred_too_long()
        reasons += [f"{what}: {reason}" for what, failing in self.faults.items() if (reason := failing())]
        if reasons:
            out["health"] = "degraded"
            out["degraded_reason"] = "; ".join(reasons)
        return out

    def _deferred_too_long(self) -> list[str]:
        """A standby's renewal deferred by backups for longer than ``ha.store_renewal_wait_ms``: degraded (a shorter
        deferral is not: the renewal goes ahead once the backups copying end)."""
        store = self.service.store
        if store.deferral is None or (waited := store.deferred_for()) <= store.renewal_wait:
            return []
        return [f"the store's renewal has been deferred by 'canopy backup' for {waited:.0f} s"]

    def switches(self, req):
        ports = "ports" not in req.query or _bool_param(req, "ports")  # (false: a poll's work not every port's)
        self.take_turn()
        # every port: described, then encoded, a port at a time
        pacer = answer_pacer(self.pause, SWITCHES_EVERY, self.budget)
        with collector_paused():  # a port's dicts each, tens of thousands: freed (as bytes) before it ends
            floods = self.floods.by_chassis() if self.floods is not None else None  # (one walk, not one a switch)
            items = [self._with_sync(item, floods, pacer.tick) for item in self.state.switches(pacer.tick,
                                                                                                ports=ports)]
            return Response(200, paced_json({"items": items, "count": len(items)}, pacer.tick))

    def _with_sync(self, item, floods=None, tick=None):
        """A switch's REST view plus ``sync``: its programming status (None while not connected), counted with
        ``tick``'s pauses (the answer's: not the reconcilers' lane)."""
        status = self.switch_status(int(item["datapath_id"], 16), tick) if (
            self.switch_status is not None and item.get("datapath_id")) else None
        item["sync"] = {k: status[k] for k in _SYNC_KEYS if k in status} if status else None
        if self.floods is not None and item.get("chassis"):  # its subnets past OVS's flood limits (floodlimits)
            item["flood_limits"] = self.floods.of_chassis(item["chassis"], floods)
        return item

    def switch(self, req, dpid):
        key = dpid.lower().replace(":", "")
        if not re.fullmatch(r"[0-9a-f]{1,16}", key):
            raise ApiError(400, "bad_request", "a datapath id is up to 16 hex digits", "dpid")
        self.take_turn()  # its ports described and its count may be long: it waits for its turn, as a listing
        pacer = answer_pacer(self.pause, SWITCHES_EVERY, self.budget)
        for item in self.state.switches(pacer.tick, datapath_id=int(key, 16)):  # that switch's view only
            return Response(200, self._with_sync(item, tick=pacer.tick))
        raise ApiError(404, "not_found", f"no switch with datapath id {key.zfill(16)}")

    def changes(self, req):
        """The change log after ``since``, read CHANGES_PAGE changes at a time with the lane's turn between two pages
        (10,000 changes read and made into their wire form at once: ~130 ms in one stretch), each page from one
        committed state (never waiting for a commit in flight). ``last_seq`` is that of the last page's state: the
        items hold every change up to it, unless ``limit`` cut them or the log was trimmed past the next page meanwhile
        (that ends the answer). ``oldest_seq`` is that of the first page's state, or of the one that ended the answer
        by a trim: ``oldest_seq > since + 1`` says changes after ``since`` are missing exactly when some are (not when
        a trim meanwhile took only changes the pages had read already; tests/unit/test_changes_paging.py)."""
        since = _int_param(req, "since", 0)
        limit = min(_int_param(req, "limit", 1000), 10000)
        items: list = []
        gone = None  # oldest_seq (docstring)
        while True:
            ask = min(CHANGES_PAGE, limit - len(items))
            page, oldest, last = self.service.store.reader.changes(since, ask)
            if items and page and page[0].seq != since + 1:  # trimmed past them while this answer paused
                gone = oldest
                break
            gone = oldest if gone is None else gone
            items += [c.to_wire() for c in page]
            if len(page) < ask or len(items) >= limit:
                break
            since = page[-1].seq
            self.take_turn()
        return Response(200, {"items": items, "last_seq": last, "oldest_seq": gone})

    def ha_status(self, req):
        return Response(200, self.ha.status() if self.ha is not None else {"role": "standalone"})

    def apply(self, req):
        body = _only(_json_body(req, self.pause), ("document", "source") + APPLY_FLAGS)
        source = body.get("source", "api")
        if not isinstance(source, str) or not source:
            raise ApiError(422, "invalid", "must be a non-empty string", "source")
        for flag in APPLY_FLAGS:
            if not isinstance(body.get(flag, False), bool):
                raise ApiError(422, "invalid", "must be true or false", flag)
        if "document" not in body:
            raise ApiError(422, "invalid", "is required: the policy document as JSON", "document")
        result = self.service.apply(body["document"], source, **{flag: body.get(flag, False) for flag in APPLY_FLAGS})
        return Response(200, result)

    def ha_solo(self, req):
        body = _only(_json_body(req, self.pause, QUESTION_BODY), ("solo",))
        if not isinstance(body.get("solo"), bool):
            raise ApiError(422, "invalid", "is required: true or false", "solo")
        return Response(200, {"solo": self.ha.set_solo(body["solo"], f"REST from {req.remote}")})

    def prometheus(self, req):
        body, content_type = self.metrics.exposition()
        return Response(200, body, content_type=content_type)

    def log_level(self, req):
        return Response(200, {"level": logs.current_level()})

    def set_log_level(self, req):
        body = _only(_json_body(req, self.pause, QUESTION_BODY), ("level",))
        level = body.get("level")
        if level not in logs.LEVELS:
            raise ApiError(422, "invalid", f"must be one of {', '.join(logs.LEVELS)}", "level")
        previous = logs.set_level(level)
        logs.announce(log, "log level changed from %s to %s over REST (from %s)", previous, level, req.remote)
        return Response(200, {"level": level, "previous": previous})

    def openapi(self, req):
        from controller.rest.openapi import document

        return Response(200, document(self.routes))


def _same(a: str, b: str) -> bool:
    import hmac

    return hmac.compare_digest(a.encode(), b.encode())


def _policy_error(exc: PolicyError):
    first = exc.problems[0]
    status = exc.status if exc.status != 422 else STATUS_FOR_CODE.get(first.code, 422)
    errors = [{"kind": p.kind, "ref": p.ref, "field": p.field, "reason": p.reason, "code": p.code,
               **({"also": p.also} if p.also else {})} for p in exc.problems]
    reason = f"{first.reason} (first at {first.also})" if first.also else first.reason
    return _error(status, first.code, reason, first.field or None, errors)


def _only(body: dict, fields: tuple) -> dict:
    """``body`` (a request's JSON object), refused (422, naming the field) when it holds a field not in ``fields``."""
    for key in body:
        if key not in fields:
            raise ApiError(422, "invalid", "unknown field", key)
    return body
