"""GET /v1/watch/vports: a long poll over every vport's wiring, for integrations (OpenStack's driver).

A client keeps one request open instead of polling each port: the reply comes as soon as anything the
answer depends on has changed since the client's ``since`` cursor (or after ``wait`` seconds), and lists
each vport's ``status`` (bound, unbound, mac_mismatch) and ``programmed``: bound, and every flow Canopy
compiled for it is installed on its switch (confirmed by the switch's bundle commit or barrier reply).
The answer is made as the big listings are (controller/rest/lane.py): it waits for its turn of the REST lane
(``pause``), then pauses every WATCH_EVERY vports described or sorted; the cursor it gives is read before it
begins, so a change made meanwhile moves the cursor past it and the next poll is answered at once (a change is never
missed, though it may be half in this answer).

The cursor is an opaque number that only grows: State.version (every change of policy, switches and
bindings) plus the count of times a switch became equal to its desired flows. A client passes the
cursor of its last reply as ``since``; any other value (or none) answers at once.

A client that closes its connection while it waits (``Request.gone``, looked at every ``POLL``) or before its
turn stops the wait: the answer is not made (a cheap 499 ``client_gone``, which nobody reads), nor a lane turn taken
when it closed while waiting for a change.

Only the active answers (``Route.active``): a standby sends no flows and reads its switches back once (when it
becomes standby), so its ``programmed`` would stay false for every vport made since, and turn false for one whose
flows changed (a client following a pair, networking_canopy, would mark such ports DOWN). A standby answers
``503 not_active``, as to a write.
"""

from __future__ import annotations

import time
from typing import Callable

from controller.rest.lane import answer_pacer
from controller.rest.wire import SEQ_SCHEMA, ApiError, Response, Route, _int_param
from openflow.installed import paced
from openflow.pacedsort import sorted_paced

MAX_WAIT = 25  # seconds a request may stay open: under the 30 s many proxies and clients time out at
POLL = 0.1  # seconds between looks at the cursor while a request waits (a green sleep: cheap)
WATCH_EVERY = 500  # vports described (or sorted) between two pauses of an answer (~160 bytecodes a vport)
CHUNK = 50  # of them between two ticks


class VportWatch:
    """``reconcilers()`` returns {datapath id: SwitchReconciler}; ``sleep`` is the server's (green) sleep."""

    def __init__(self, state, reconcilers: Callable[[], dict], sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, pause: Callable[[], None] | None = None,
                 budget: float | None = None):
        """``pause``: the REST lane's (module docstring), None: never; ``budget``: seconds of wall clock an answer
        runs before it pauses (controller/rest/lane.py ``answer_pacer``; None: by the count only)."""
        self.pause, self.budget = pause, budget
        self.state = state
        self.reconcilers = reconcilers
        self.sleep = sleep
        self.clock = clock
        self.synced = 0

    def note_synced(self) -> None:
        """A switch became equal to its desired flows (its reconciler's on_sync)."""
        self.synced += 1

    def cursor(self) -> int:
        return self.state.version + self.synced

    def programmed(self, vid: str) -> bool:
        loc = self.state.locations.get(vid)
        if loc is None or loc.datapath_id is None:
            return False
        rec = self.reconcilers().get(loc.datapath_id)
        return rec is not None and rec.owner_programmed(vid)

    def items(self, prefix: str, tick: Callable[[int], None] = lambda n: None) -> list[dict]:
        """Each vport of the policy as it is now (whose name starts with ``prefix``), described and sorted with
        ``tick(n)`` after every ``n`` (a controller/pacer.py ``Pacer.tick``: it may pause)."""
        out = []
        for vport in paced(list(self.state.policy.all("vport")), tick, CHUNK):
            if not vport["name"].startswith(prefix):
                continue
            status = self.state.vport_status(vport["id"])["status"]
            out.append({"id": vport["id"], "name": vport["name"], "subnet_id": vport["subnet_id"],
                        "status": status, "programmed": status == "bound" and self.programmed(vport["id"])})
        return sorted_paced(out, tick, _order)

    def handle(self, req) -> Response:
        for key in req.query:
            if key not in ("since", "wait", "prefix"):
                raise ApiError(400, "bad_query", "unknown query parameter; use ['prefix', 'since', 'wait']", key)
        since = _int_param(req, "since", 0) if "since" in req.query else None
        wait = _int_param(req, "wait", 0)
        if wait > MAX_WAIT:
            raise ApiError(400, "bad_query", f"must be from 0 to {MAX_WAIT} (seconds)", "wait")
        deadline = self.clock() + wait
        while since is not None and self.cursor() == since and self.clock() < deadline and not req.gone():
            self.sleep(POLL)
        _unless_gone(req)
        prefix = req.query.get("prefix", "")
        pacer = answer_pacer(self.pause, WATCH_EVERY, self.budget)
        pacer.tick(WATCH_EVERY)  # waits for its turn (controller/rest/lane.py)
        _unless_gone(req)  # (closed while it waited for its turn)
        cursor = self.cursor()  # before the answer's pauses (module docstring)
        items = self.items(prefix, pacer.tick)
        return Response(200, {"cursor": cursor, "items": items, "count": len(items)})

    def route(self) -> Route:
        return Route("GET", "/v1/watch/vports", self.handle,
                     "every vport's status and whether its flows are programmed; long poll: answers when "
                     "anything changed since the cursor `since`, or after `wait` seconds",
                     query=(("since", "the cursor of the previous reply: wait for a change after it", SEQ_SCHEMA),
                            ("wait", f"seconds to wait for a change (0 to {MAX_WAIT})",
                             {"type": "integer", "minimum": 0, "maximum": MAX_WAIT}),
                            ("prefix", "only vports whose name starts with this")),
                     active=True)  # a standby's switches are read back once: it cannot tell what is programmed


def _unless_gone(req) -> None:
    """A cheap 499 for a client that closed its connection (module docstring): nobody reads the answer."""
    if req.gone():
        raise ApiError(499, "client_gone", "the client closed its connection before its answer was made")


def _order(item: dict) -> tuple:
    return item["name"], item["id"]
