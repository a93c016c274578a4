"""A small REST client that reaches a server listening inside a network namespace.

Each request opens a fresh TCP connection created inside the namespace (see
``netns.connect_tcp``) and drives ``http.client`` over it, so tests can talk to a controller bound
to 127.0.0.1 in its own namespace without touching the root namespace.
"""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass
from email.message import Message

from tests.harness import netns

#: Sentinel: "use the client's own token" (pass token=None to send no Authorization header).
CLIENT_TOKEN = object()


@dataclass
class Response:
    """An HTTP response: ``json`` is the decoded body when the server says it is JSON, else None.

    ``headers`` looks names up case-insensitively (``resp.headers["content-type"]``).
    """

    status: int
    json: object
    text: str
    headers: Message


class RestClient:
    """Requests to ``http://host:port`` as seen from inside namespace ``ns``.

    Writes send ``Authorization: Bearer <token>`` with the client's token unless told otherwise;
    reads send none unless given a token. Bodies: a dict or list goes as JSON; str and bytes go as
    they are (give a Content-Type in ``headers``).
    """

    def __init__(self, ns: str, host: str = "127.0.0.1", port: int = 8080,
                 token: str | None = "test-token", timeout: float = 10.0, tls=None):
        self.ns = ns
        self.tls = tls  # an ssl.SSLContext: HTTPS (the server's certificate checked against host)
        self.host = host
        self.port = port
        self.token = token
        self.timeout = timeout

    def get(self, path: str, token: str | None = None, headers: dict | None = None) -> Response:
        return self.request("GET", path, None, token, headers)

    def post(self, path: str, body=None, token=CLIENT_TOKEN, headers: dict | None = None) -> Response:
        return self.request("POST", path, body, token, headers)

    def put(self, path: str, body=None, token=CLIENT_TOKEN, headers: dict | None = None) -> Response:
        return self.request("PUT", path, body, token, headers)

    def patch(self, path: str, body=None, token=CLIENT_TOKEN, headers: dict | None = None) -> Response:
        return self.request("PATCH", path, body, token, headers)

    def delete(self, path: str, body=None, token=CLIENT_TOKEN, headers: dict | None = None) -> Response:
        return self.request("DELETE", path, body, token, headers)

    def request(self, method: str, path: str, body=None, token=CLIENT_TOKEN,
                headers: dict | None = None) -> Response:
        """Send one request on a new connection and read the whole response."""
        payload, all_headers = _encode(body, headers)
        token = self.token if token is CLIENT_TOKEN else token
        if token is not None:
            all_headers.setdefault("Authorization", f"Bearer {token}")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        conn.sock = netns.connect_tcp(self.ns, self.host, self.port, self.timeout)
        if self.tls is not None:
            conn.sock = self.tls.wrap_socket(conn.sock, server_hostname=self.host)
        try:
            conn.request(method, path, body=payload, headers=all_headers)
            reply = conn.getresponse()
            raw = reply.read()
        finally:
            conn.close()
        return _decode(reply.status, raw, reply.msg)


def _encode(body, headers: dict | None) -> tuple[bytes | None, dict]:
    all_headers = dict(headers or {})
    if body is None or isinstance(body, bytes):
        return body, all_headers
    if isinstance(body, str):
        return body.encode(), all_headers
    all_headers.setdefault("Content-Type", "application/json")
    return json.dumps(body).encode(), all_headers


def _decode(status: int, raw: bytes, headers: Message) -> Response:
    text = raw.decode("utf-8", errors="replace")
    is_json = "json" in headers.get("Content-Type", "")
    return Response(status, json.loads(text) if is_json and text else None, text, headers)
