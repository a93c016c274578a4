"""REST view of the OVSDB manager's sessions: ``GET /v1/ovsdb/sessions``.

One entry per accepted connection (hundreds with a big fleet, a hardware VTEP's with its MAC conflicts): the answer
waits for its turn of the REST lane (controller/rest/lane.py), then pauses every SESSIONS_EVERY sessions described,
as the big listings do.
"""

from __future__ import annotations

from controller.rest.lane import answer_pacer
from controller.rest.wire import Response, Route

SESSIONS_EVERY = 100  # sessions described between two pauses of GET /v1/ovsdb/sessions (a few ms)


def routes(server, pause=None, budget: float | None = None) -> list[Route]:
    """``server``: the ovsdb.server.OvsdbManagerServer; ``pause``: a turn for the event loop (the REST lane's), taken
    first and every SESSIONS_EVERY sessions (None: never), and once ``budget`` seconds have run (controller/rest/lane.py
    ``answer_pacer``; None: by the count only)."""

    def sessions(req):
        pacer = answer_pacer(pause, SESSIONS_EVERY, budget)
        pacer.tick(SESSIONS_EVERY)  # waits for its turn (controller/rest/lane.py)
        items = server.sessions(pacer.tick)
        return Response(200, {"items": items, "count": len(items), "first_reads": server.first_reads.status()})

    return [Route("GET", "/v1/ovsdb/sessions", sessions, "accepted OVSDB manager connections")]
