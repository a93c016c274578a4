"""The REST listener: eventlet's HTTP/1.1 protocol behind Canopy's guarded accept loop, serving Api.

What a client cannot do here (docs/rest.md, "Limits"):
- hold a connection without finishing its request line and headers within ``header_timeout`` seconds
  (counted from when the server starts waiting for the request, so it is also the keep-alive idle time);
- hold a request whose declared body does not arrive within ``body_timeout`` seconds (408);
- make the server read a body before it is authorised: the route, method (405 with ``Allow``) and the
  token are checked from the headers first; a body over ``max_body`` bytes is refused (413) unread;
- send a chunked body (411: send ``Content-Length``);
- open more than ``per_source`` connections from one address or ``max_connections`` in all (503, closed);
- get an error that is not JSON (HTML from the HTTP layer is replaced by a JSON body).
Every answer says where its time went in a ``Server-Timing`` header (``_timing``): a client that finds a request
slow can tell the controller's work from the waits for the event loop and from its own side.
Paths under /ui are the topology page's static files (controller/rest/ui.py), answered without reading a body.
The listener itself survives EMFILE and the like (controller.guard).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.parse

import eventlet
import eventlet.wsgi
from eventlet import patcher

from controller import guard
from controller.rest import ui
from controller.rest.wire import Request, Response, _error, stopping

log = logging.getLogger("canopy.rest")
access_log = logging.getLogger("canopy.rest.access")
BUSY_TIMEOUT = 1.0  # seconds to hand a refused connection its 503
STOP_DRAIN = 2.0  # seconds ``stop`` waits at most for the requests being handled to finish
STOP_POLL = 0.01  # seconds between two looks at them
_select = patcher.original("select")  # a poll with no wait that gives no turn (eventlet's green select has none)
_CLOSED = _select.POLLRDHUP | _select.POLLHUP | _select.POLLERR | _select.POLLNVAL  # the peer's FIN, a reset, gone


class _HeaderTimeout(Exception):
    """The request line and headers did not arrive in time."""


class _Protocol(eventlet.wsgi.HttpProtocol):
    """eventlet's protocol with one deadline for the request line and headers, and JSON errors."""

    def handle_one_request(self):
        self.parsed_at = None
        self._deadline = eventlet.Timeout(self.server.header_timeout, _HeaderTimeout())
        try:
            super().handle_one_request()
        except _HeaderTimeout:
            log.debug("rest %s: no complete request within %.1f s; closing", self.client_address,
                      self.server.header_timeout)
            self.close_connection = 1
        finally:
            self._deadline.cancel()

    def parse_request(self):
        ok = super().parse_request()
        self.parsed_at = time.monotonic()
        self._deadline.cancel()  # the headers are in: the body has its own deadline
        return ok

    def get_environ(self):
        env = super().get_environ()
        env["canopy.protocol"] = self
        return env

    def send_error(self, code, message=None, explain=None):
        """The HTTP layer's own refusals (a malformed request line, an unsupported version): JSON."""
        self.close_connection = 1
        body = _error(code, "bad_request", message or self.responses.get(code, ("error",))[0]).encoded()
        head = (f"HTTP/1.1 {code} {self.responses.get(code, ('Error',))[0]}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
        self.wfile.write(head + body)
        self.wfile.flush()


class RestServer:
    """Serves ``api`` (controller.rest.api.Api) on ``host:port`` with the limits in ``limits``
    (controller.settings.Limits)."""

    def __init__(self, host: str, port: int, api, limits, tls=None):
        self.host, self.port = host, port
        self.tls = tls  # a server-side ssl.SSLContext (controller.tls): HTTPS; None: plain HTTP
        self.api = api
        self.limits = limits
        self.connections = guard.ConnectionLimits(limits.rest_per_source, limits.rest_max_connections)
        self._wsgi = None
        self._sock = None  # the listening socket (None: not started, or stopped)
        self._accepting = None  # the accept loop's green thread
        self.handling = 0  # requests being handled now (read, answered, encoded)

    def start(self):
        """Bind (raises OSError if it cannot) and serve in a green thread, which is returned."""
        self._sock = guard.listen(self.host, self.port)
        self.port = self._sock.getsockname()[1]
        self._wsgi = eventlet.wsgi.Server(self._sock, self._sock.getsockname(), self.application,
                                          log=access_log, protocol=_Protocol,
                                          keepalive=self.limits.rest_header_timeout,
                                          socket_timeout=self.limits.rest_body_timeout, debug=False)
        self._wsgi.header_timeout = self.limits.rest_header_timeout
        log.info("REST API on %s://%s:%d", "https" if self.tls is not None else "http", self.host, self.port)
        self._accepting = eventlet.spawn(guard.accept_forever, self._sock, self._serve,
                                         f"rest {self.host}:{self.port}", self.connections, _busy, stamped=True,
                                         first=True)
        return self._accepting

    @property
    def listening(self):
        """The listening socket; None before ``start`` and once stopped."""
        return self._sock

    def stop(self, drain: float | None = None, clock=time.monotonic) -> None:
        """Stop serving, before the store closes (controller/app.py ``stop``): no connection is accepted any more (the
        listener is closed: a client is refused, not left waiting), a request read from now on is answered 503
        ``stopping`` and its connection closed, and the requests being handled get ``drain`` seconds at most to
        finish. One that fails after that, the store closed under it, is answered 503 ``stopping`` too, not 500
        (``Api.stopping``). ``drain``: STOP_DRAIN unless given."""
        self.api.stopping = True
        if self._accepting is not None:
            self._accepting.kill()
            self._accepting = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        drain = STOP_DRAIN if drain is None else drain
        deadline = clock() + drain
        while self.handling and clock() < deadline:
            eventlet.sleep(STOP_POLL)
        if self.handling:
            log.info("stopping: %d REST request(s) still being handled after %g s", self.handling, drain)

    def _serve(self, sock, addr, accepted=None):
        began = time.monotonic()
        sock.settimeout(self.limits.rest_body_timeout)
        if self.tls is not None:  # the TLS handshake counts against the header deadline
            try:
                with eventlet.Timeout(self.limits.rest_header_timeout):
                    sock = self.tls.wrap_socket(sock, server_side=True)
            except (OSError, eventlet.Timeout) as exc:  # not TLS, gone, or too slow: nothing to serve
                log.debug("rest %s: no TLS session: %s", addr, exc)
                return
        # eventlet reads the first three; the fourth is the connection's first turn, for ``_timing``
        self._wsgi.process_request([addr, sock, eventlet.wsgi.STATE_IDLE, (accepted or began, began)])

    # ------------------------------------------------------------------ WSGI
    def application(self, environ, start_response):
        self.handling += 1
        try:
            return self._answer(environ, start_response)
        finally:
            self.handling -= 1

    def _answer(self, environ, start_response):
        req = _request(environ)
        protocol = environ.get("canopy.protocol")
        first = _first_turn(protocol)  # taken by whatever the first request is: a page's answer has no header
        if ui.handles(req.path):
            return self._page(req, protocol, environ, start_response)
        if protocol is not None:
            req.gone = lambda: _peer_closed(protocol.connection)
        started, cpu = time.monotonic(), time.thread_time()
        resp = stopping() if self.api.stopping else self._read_body(environ, req)
        handled = time.monotonic()
        if resp is None:
            resp = self.api.handle(req)
        else:
            self.api.record(req, resp, time.monotonic() - started)  # refused before handle(): counted too
            if protocol is not None:
                protocol.close_connection = 1  # the body (if any) was not read: the connection cannot be reused
        if self.api.stopping and protocol is not None:
            protocol.close_connection = 1  # no later request on it: the listener is gone
        encoding = time.monotonic()
        body = self.api.encoded(resp)
        marks = {"body": handled - started, "handle": encoding - handled, "encode": time.monotonic() - encoding,
                 "cpu": time.thread_time() - cpu}
        ctype = "application/json; charset=UTF-8" if resp.content_type == "application/json" else resp.content_type
        headers = [("Content-Type", ctype), ("Content-Length", str(len(body))),
                   ("Server-Timing", _timing(first, marks))]
        headers += [(k, v) for k, v in resp.headers.items()]
        start_response(f"{resp.status} {_reason(resp.status)}", headers)
        return [body]

    def _page(self, req, protocol, environ, start_response):
        """The topology page's static files (controller/rest/ui.py); a request body is never read."""
        page = ui.serve(req.method, req.path)
        if protocol is not None and (environ.get("CONTENT_LENGTH") or environ.get("HTTP_TRANSFER_ENCODING")):
            protocol.close_connection = 1
        headers = [("Content-Type", page.content_type), ("Content-Length", str(len(page.body)))]
        start_response(f"{page.status} {_reason(page.status)}", headers + list(page.headers.items()))
        return [page.body]

    def _read_body(self, environ, req) -> Response | None:
        """Check everything the headers tell, then read the body into ``req``; a refusal (unread body)."""
        refused = self.api.preflight(req)
        if refused is not None:
            return refused
        if environ.get("HTTP_TRANSFER_ENCODING"):
            return _error(411, "length_required", "chunked request bodies are not accepted; send the body with "
                          "Content-Length")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _error(400, "bad_request", "Content-Length is not a number")
        if length > self.limits.rest_max_body:
            return _error(413, "too_large", f"the body is larger than {self.limits.rest_max_body} bytes")
        if length:
            try:
                with eventlet.Timeout(self.limits.rest_body_timeout):
                    req.body = environ["wsgi.input"].read(length)
            except eventlet.Timeout:
                return _error(408, "body_timeout", f"the body did not arrive within "
                              f"{self.limits.rest_body_timeout:g} s")
            if len(req.body) < length:
                return _error(400, "bad_request", "the connection closed before the declared body arrived")
        return None


def _peer_closed(sock) -> bool:
    """Whether the client closed its connection (or reset it): its FIN arrived, bytes it sent before it unread or not
    (a pipelined request is not a close). One poll that does not wait, of the kernel's socket under any TLS."""
    try:
        poll = _select.poll()
        poll.register(sock.fileno(), _CLOSED)
        return bool(poll.poll(0))
    except (OSError, ValueError):  # (a socket closed on our side: fileno -1)
        return True


def _first_turn(protocol) -> list:
    """For the first request of a connection, [("turn", ...), ("read", ...)] in seconds: ``turn`` from the accept to the
    connection's green thread's first turn of the event loop, ``read`` from then to the request line and headers
    parsed (the TLS handshake, the bytes, more turns); [] for a later request (it waited idle before). Taken once."""
    if protocol is None or len(protocol.conn_state) <= 3 or protocol.parsed_at is None:
        return []
    accepted, began = protocol.conn_state.pop()
    return [("turn", began - accepted), ("read", protocol.parsed_at - began)]


def _timing(first: list, marks: dict) -> str:
    """The ``Server-Timing`` header (milliseconds): ``first`` (``_first_turn``), then ``body`` (read), ``handle``,
    ``encode`` (the answer's bytes), each wall-clock, and ``cpu``, this thread's CPU over those three (less than their
    sum: the request waited for the event loop inside them). The time before the accept and the write are the
    client's to tell (tests/benchmarks/statuspoll.py)."""
    return ", ".join(f"{name};dur={seconds * 1000:.2f}" for name, seconds in [*first, *marks.items()])


def _request(environ) -> Request:
    headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    query = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
    # PEP 3333: PATH_INFO holds the decoded bytes as latin-1 characters; paths are UTF-8
    path = (environ.get("PATH_INFO") or "/").encode("latin-1").decode("utf-8", "replace")
    return Request(method=environ["REQUEST_METHOD"], path=path, query=query,
                   headers=headers, remote=environ.get("REMOTE_ADDR") or "")


def _reason(status: int) -> str:
    return _Protocol.responses.get(status, ("Error",))[0]


def _busy(sock, reason):
    """A refused connection gets a 503 saying why (if it takes it at once), then is closed."""
    body = (json.dumps({"error": {"code": "busy", "message": reason, "reason": reason, "field": None}}) + "\n").encode()
    sock.settimeout(BUSY_TIMEOUT)
    sock.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                 b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
