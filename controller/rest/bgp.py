"""REST view of EVPN federation: BGP peers and the routes sent and received."""

from __future__ import annotations

import operator

from controller import fields
from controller.pacer import collector_paused
from controller.rest.lane import answer_pacer
from controller.rest.wire import ApiError, Response, Route
from controller.rest.paced import paced_json, release, sorted_paced

DIRECTIONS = ("in", "out")
TYPES = ("2", "3", "5")
PRIVATE = ("pid", "config", "log")  # speaker status fields REST never shows (docs/security.md)
ROUTES_EVERY = 200  # routes listed, or encoded, between two pauses of GET /v1/bgp/routes (a few ms)
_ORDER, _ENTRY = operator.itemgetter(0), operator.itemgetter(1)  # a listed route's (order key, dict)


def routes(federation, pause=None, budget: float | None = None) -> list[Route]:
    """``federation`` is a bgp.federation.Federation, or None when no neighbor is configured. ``pause`` gives the
    event loop a turn, taken every ROUTES_EVERY routes while they are listed and encoded (None: never): 10,000
    routes listed and encoded in one piece held the loop ~0.15-0.4 s (evpn_routes, docs/benchmarks.md); and once
    ``budget`` seconds have run (controller/rest/lane.py ``answer_pacer``; None: by the count only)."""

    def peers(req):
        _no_query(req, ())
        items = federation.peers() if federation else []
        body = {"items": items, "count": len(items), "enabled": federation is not None}
        if federation is not None:
            # ExaBGP's pid and file paths stay in the log ("BGP speaker: started exabgp (pid N) with FILE")
            body["speaker"] = {k: v for k, v in federation.speaker.status().items() if k not in PRIVATE}
            body["import"] = federation.import_counts()
            body["mobility"] = federation.mobility.counts()  # local MACs a peer's route wins (sticky ones apart)
            kept = federation.keeper.counts()  # flags not kept across a restart, rows dropped
            body["mobility"].update({f"duplicate_{k}": n for k, n in kept.items()})
            body["mobility"]["duplicate_macs"] = federation.mobility.duplicates.rows()
        return Response(200, body)

    def bgp_routes(req):
        _no_query(req, ("direction", "type"))
        direction = req.query.get("direction", "in")
        if direction not in DIRECTIONS:
            raise ApiError(400, "bad_query", f"must be one of {', '.join(DIRECTIONS)}", "direction")
        kind = req.query.get("type")
        if kind is not None and kind not in TYPES:
            raise ApiError(400, "bad_query", f"must be one of {', '.join(TYPES)}", "type")
        pacer = answer_pacer(pause, ROUTES_EVERY, budget)
        pacer.tick(ROUTES_EVERY)  # waits for its turn (controller/rest/lane.py), the collector not held off meanwhile
        with collector_paused():  # the rows are freed before it ends
            rows = federation.routes(direction, int(kind) if kind else None, pacer) if federation else []
            items = list(map(_ENTRY, sorted_paced(rows, pacer.tick, _ORDER)))
            release(rows, pacer.tick)
            body = paced_json({"items": items, "count": len(items), "direction": direction}, pacer.tick)
            release(items, pacer.tick)
        return Response(200, body)

    def clear_duplicates(req):
        _no_query(req, ("subnet_id", "mac"))
        if federation is None:
            raise ApiError(404, "not_found", "BGP is not configured (bgp.neighbors)", "bgp")
        mac = req.query.get("mac")
        if mac is not None:
            try:
                mac = fields.mac(mac)
            except fields.Invalid as exc:
                raise ApiError(400, "bad_query", str(exc), "mac") from None
        cleared = federation.clear_duplicates(req.query.get("subnet_id"), mac)
        return Response(200, {"items": cleared, "count": len(cleared)})

    return [Route("GET", "/v1/bgp/peers", peers, "BGP neighbors: state, uptime, routes received and sent"),
            Route("DELETE", "/v1/bgp/duplicate-macs", clear_duplicates,
                  "clear duplicate MAC flags (RFC 7432 section 15.1): those MACs are announced again", write=True,
                  query=(("subnet_id", "only this subnet's"), ("mac", "only this MAC"))),
            Route("GET", "/v1/bgp/routes", bgp_routes, "EVPN routes received from peers (in) or announced (out)",
                  query=(("direction", "in (default) or out"), ("type", "only this route type: 2, 3 or 5")))]


def status_part(federation) -> dict:
    """``bgp`` in GET /v1/status: each neighbor's session state ("down" while ExaBGP does not answer its API, with
    ``api_silent_for`` its seconds of silence: bgp/watchdog.py) and ExaBGP's restarts."""
    speaker = federation.speaker.status()
    return {"peers": {row["address"]: row["state"] for row in federation.peers()},
            "api_silent_for": speaker["api_silent_for"], "restarts": speaker["restarts"],
            "failure": speaker["failure"]}


def failure(federation) -> str | None:
    """Why the speaker has no ExaBGP up (it could not be started, or exited or was killed, until a new one connects),
    or None: /v1/status ``health`` is ``degraded`` meanwhile."""
    return federation.speaker.status()["failure"]


def _no_query(req, allowed):
    for key in req.query:
        if key not in allowed:
            raise ApiError(400, "bad_query", f"unknown query parameter; use {sorted(allowed)}", key)
