"""What the REST API takes and gives, independent of any web framework and of the routes (controller/rest/api.py):
the ``Request``, the ``Response`` and its encoding, ``ApiError`` (a 4xx or 5xx answer naming the field and the
reason), the ``Route`` table entry, the JSON error body, and the request's body and query parameters read against
their limits. Every route module (controller/rest/*.py) builds on these; controller/rest/server.py serves them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Callable

from controller import fields
from controller.rest import jsonbody
from controller.rest.paced import paced_json

MAX_BODY = 32 * 1024 * 1024
QUESTION_BODY = 64 * 1024  # bytes of a body that asks (a trace, a log level, HA solo): a few hundred in use
MAX_DEPTH = 32  # lists and objects nested deeper than any Canopy document is refused up front
MAX_QUERY_INT = 2**63 - 1  # the store's sequence numbers are SQLite INTEGERs
SEQ_SCHEMA = {"type": "integer", "minimum": 0, "maximum": MAX_QUERY_INT}
BOOL_SCHEMA = {"type": "string", "enum": ["true", "false", "1", "0"]}


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    remote: str = "127.0.0.1"
    route: str | None = None  # the matched route's pattern, set by Api (metrics and logs)
    gone: Callable[[], bool] = lambda: False  # the client closed its connection (rest/server.py: a look that never
    # blocks at its socket); off a socket, never


@dataclass
class Response:
    status: int
    body: object = None  # JSON-ready, or bytes sent as they are (with content_type)
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def encoded(self, tick: Callable[[int], None] | None = None) -> bytes:
        """The body's bytes; with ``tick`` (a controller/pacer.py ``Pacer.tick``) the same bytes written a piece at a
        time with ticks between (rest/paced.py): an apply's answer of 10,000 changes is ~40 ms of encoding."""
        if isinstance(self.body, bytes):
            return self.body
        if self.body is None:
            return b""
        if tick is not None:
            return paced_json(self.body, tick)
        return (json.dumps(self.body, indent=1, sort_keys=True) + "\n").encode()


class ApiError(Exception):
    def __init__(self, status, code, reason, field_name=None, errors=None, headers=None):
        self.status, self.code, self.reason, self.field, self.errors = status, code, reason, field_name, errors
        self.headers = headers or {}
        super().__init__(reason)


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str  # "/v1/tenants/{id}"
    handler: Callable
    summary: str
    write: bool = False
    kind: str | None = None  # the model kind for body/response schemas
    action: str = ""  # list|create|get|update|delete for object routes
    query: tuple[tuple, ...] = ()  # (name, description) or (name, description, JSON schema of the value)
    media: str = "application/json"  # what a success returns
    body: dict | None = None  # JSON schema of the request body of a route that is not an object route
    # a write that changes only this node (its log level, its diagnostics), never the pair's data: taken on a
    # standby. By keyword only: the object routes give write, kind and action by position
    local: bool = field(default=False, kw_only=True)
    # a read only the active can answer (the vport watch's "programmed": a standby sends no flows and does not
    # see the active's): refused with 503 not_active elsewhere, so a client that follows a pair goes to the active
    active: bool = field(default=False, kw_only=True)

    @property
    def regex(self):
        return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.pattern) + "$")


def _json_body(req, pause: Callable[[], None] | None = None, limit: int = MAX_BODY):
    """The request's body as a JSON object, checked against the limits (``limit`` bytes, nesting depth, sizes).
    ``pause``: the event loop's turn (``Api.pause``): the body is turned into text, decoded and measured for its
    nesting depth a window at a time whatever its shape (controller/rest/jsonbody.py). Only the body is read
    meanwhile. A question (``POST /v1/trace``, the log level, HA solo) passes ``QUESTION_BODY``: a larger body is
    refused before anything is decoded."""
    ctype = req.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype not in ("application/json", "", "application/x-www-form-urlencoded"):  # the last: curl -d
        raise ApiError(415, "unsupported_media_type", f"send application/json, not {ctype}")
    if len(req.body) > limit:
        raise ApiError(413, "too_large", f"the body is larger than {limit} bytes")
    try:
        data = jsonbody.loads(jsonbody.text(req.body, pause), MAX_DEPTH, pause) if req.body else None
    except (jsonbody.TooDeep, RecursionError):
        raise ApiError(400, "bad_json", f"the body nests deeper than {MAX_DEPTH} levels") from None
    except jsonbody.TooMany as exc:
        raise ApiError(400, "bad_json", f"the body has {exc}") from None
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError: also an integer of more than 4300 digits
        raise ApiError(400, "bad_json", f"the body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    return data


def _int_param(req, name, default):
    raw = req.query.get(name)
    if raw is None:
        return default
    if not fields.is_digits(raw) or int(raw) > MAX_QUERY_INT:
        raise ApiError(400, "bad_query", f"must be an integer from 0 to {MAX_QUERY_INT} (digits 0-9)", name)
    return int(raw)


def _bool_param(req, name):
    raw = req.query.get(name, "false").lower()
    if raw not in ("true", "false", "1", "0"):
        raise ApiError(400, "bad_query", "must be true or false", name)
    return raw in ("true", "1")


def _error(status, code, reason, field_name=None, errors=None):
    message = f"{field_name}: {reason}" if field_name else reason
    err = {"code": code, "message": message, "reason": reason, "field": field_name}
    if errors:
        err["errors"] = errors
    headers = {"WWW-Authenticate": 'Bearer realm="canopy"'} if status == 401 else {}
    return Response(status, {"error": err}, headers)


def stopping() -> Response:
    """The answer to a request that arrives, or fails, while the controller stops."""
    return _error(503, "stopping", "the controller is stopping; retry against it once it is back, or its HA peer")
