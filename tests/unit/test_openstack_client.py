"""networking_canopy.client against a redundant pair: ``url`` lists both nodes, and a request reaches the active
whichever node Neutron asked first, never twice (tiny HTTP servers on loopback play the nodes)."""

import json
import logging
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "networking_canopy"))
from networking_canopy.client import CanopyClient, CanopyError  # noqa: E402 (the driver's own folder)

NOT_ACTIVE = {"error": {"code": "not_active", "field": None, "reason": "this controller (ctl-a) is the standby"}}


class Node:
    """One controller node: answers reads; writes with 201, or 503 not_active while ``standby``; records requests.
    ``silent``: reads each request and never answers (an answer that is late); ``broken``: "cut" (an answer that
    breaks off after its headers), "garbled" (no HTTP answer) or "json" (a 200 whose body is no JSON)."""

    def __init__(self, standby=False, silent=False, write_status=201, broken=None, tls=None):
        self.standby, self.silent, self.write_status, self.broken = standby, silent, write_status, broken
        self.seen: list[tuple[str, str]] = []
        self.release = threading.Event()
        node = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                node.seen.append((self.command, self.path))
                if node.silent:
                    node.release.wait(10)
                    return
                if node.broken:
                    self.wfile.write({"cut": b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\n{\"id\"",
                                      "garbled": b"\x00\x01 not HTTP\r\n\r\n",
                                      "json": b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n{x}"}[node.broken])
                    self.close_connection = True
                    return
                if self.command == "GET":
                    status, body = 200, {"items": [], "role": "standby" if node.standby else "active"}
                elif node.standby:
                    status, body = 503, NOT_ACTIVE
                else:
                    status = node.write_status
                    body = {"id": "t1"} if status < 400 else {"error": {"code": "conflict", "field": "name",
                                                                        "reason": "exists"}}
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_DELETE = _answer

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        if tls:  # an Identity (tests/harness/pki.py): HTTPS with its certificate
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.cert, tls.key)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.url = "https" + self.url[4:]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def nodes():
    made = []

    def make(**kw):
        made.append(Node(**kw))
        return made[-1]

    yield make
    for node in made:
        node.close()


def dead_url():
    """A loopback port nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_a_write_reaches_the_active_past_a_dead_node_and_a_standby_and_stays_there(nodes):
    standby, active = nodes(standby=True), nodes()
    client = CanopyClient(f"{dead_url()}, {standby.url}/, {active.url}", "tok", timeout=5)
    assert client.create("tenants", {"name": "os-p"}) == {"id": "t1"}
    assert standby.seen == [("POST", "/v1/tenants")] and active.seen == [("POST", "/v1/tenants")]
    assert client.base == active.url
    client.update("tenants", "t1", {"description": "x"})  # straight to the node that answered last
    assert standby.seen == [("POST", "/v1/tenants")] and active.seen[-1] == ("PATCH", "/v1/tenants/t1")


def test_after_a_failover_writes_follow_the_new_active(nodes):
    a, b = nodes(), nodes(standby=True)
    client = CanopyClient(f"{a.url},{b.url}", "tok", timeout=5)
    client.create("tenants", {"name": "one"})
    a.standby, b.standby = True, False  # b took over; a came back as standby
    client.create("tenants", {"name": "two"})
    assert a.seen[-1] == ("POST", "/v1/tenants") and b.seen == [("POST", "/v1/tenants")]
    assert client.base == b.url


def test_a_refusal_other_than_not_active_is_not_sent_elsewhere(nodes):
    a, b = nodes(write_status=409), nodes()
    client = CanopyClient(f"{a.url},{b.url}", "tok", timeout=5)
    with pytest.raises(CanopyError) as refused:
        client.create("tenants", {"name": "one"})
    assert (refused.value.status, refused.value.code, refused.value.field) == (409, "conflict", "name")
    assert b.seen == []


def test_a_request_whose_answer_is_late_is_not_sent_again(nodes):
    a, b = nodes(silent=True), nodes()
    client = CanopyClient(f"{a.url},{b.url}", "tok", timeout=0.5)
    with pytest.raises(CanopyError) as late:
        client.create("tenants", {"name": "one"})
    assert late.value.status == 0 and late.value.code == "unreachable"
    assert a.seen == [("POST", "/v1/tenants")] and b.seen == []  # it may have been applied on a


@pytest.mark.parametrize("broken", ["cut", "garbled", "json"])
def test_an_answer_that_breaks_off_or_is_garbled_is_one_error_and_not_sent_again(nodes, broken):
    """The request was sent (it may have been applied): a CanopyError, as for a late answer, not http.client's or
    json's own exception, and the other node is not asked."""
    a, b = nodes(broken=broken), nodes()
    client = CanopyClient(f"{a.url},{b.url}", "tok", timeout=5)
    with pytest.raises(CanopyError) as bad:
        client.create("tenants", {"name": "one"})
    assert bad.value.status == 0 and a.url in bad.value.reason
    assert a.seen == [("POST", "/v1/tenants")] and b.seen == []


def test_a_refusal_from_the_other_node_makes_it_the_one_asked_first(nodes):
    """The node that answered last is asked first, whatever its answer: after a refusal from the second node
    while the first is down, the next request does not wait for the first again (a dead node's connect timeout
    on every request after each refusal)."""
    b = nodes(write_status=409)
    client = CanopyClient(f"{dead_url()},{b.url}", "tok", timeout=5)
    with pytest.raises(CanopyError):
        client.create("tenants", {"name": "one"})
    assert client.base == b.url


def test_no_node_answering_is_one_error_naming_the_last_tried():
    first, second = dead_url(), dead_url()
    client = CanopyClient(f"{first},{second}", "tok", timeout=5)
    with pytest.raises(CanopyError) as down:
        client.get("/v1/status")
    assert down.value.code == "unreachable" and second in down.value.reason


def test_a_url_setting_without_a_url_is_refused():
    with pytest.raises(ValueError, match=r"\[canopy\] url"):
        CanopyClient(" , ", "tok")


def test_a_node_whose_certificate_fails_verification_is_one_warning_naming_it_per_change(nodes, tmp_path, caplog):
    """A wrong CA in ``[canopy] ca_file``: the node is passed over as before, and the log says which node and why,
    once while it keeps failing (not per request), once more when it is accepted, and again when it fails anew."""
    from tests.harness.pki import Pki

    right, wrong = Pki(tmp_path, "canopy-ca"), Pki(tmp_path, "other-ca")
    a, b = nodes(tls=right.issue("ctl-a", ("127.0.0.1",))), nodes(standby=True)
    client = CanopyClient(f"{a.url},{b.url}", "tok", timeout=5, ca_file=str(wrong.ca_cert))
    caplog.set_level(logging.INFO, logger="networking_canopy.client")

    def lines():
        return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "networking_canopy.client"]

    for _ in range(3):  # a fails its handshake, b is the standby: every write tries both
        with pytest.raises(CanopyError):
            client.create("tenants", {"name": "one"})
    assert client.get("/v1/status")["role"] == "standby"  # reads are answered by b
    [(level, message)] = lines()
    assert level == "WARNING" and a.url in message and "certificate verify failed" in message
    assert str(wrong.ca_cert) in message and b.url not in message
    assert a.seen == []  # no request reached it

    client.context = ssl.create_default_context(cafile=str(right.ca_cert))  # the operator fixed ca_file
    client.current = 0
    assert client.create("tenants", {"name": "one"}) == {"id": "t1"}
    assert lines()[1:] == [("INFO", f"Canopy node {a.url}: its TLS certificate is accepted again")]

    client.context = ssl.create_default_context(cafile=str(wrong.ca_cert))
    with pytest.raises(CanopyError):
        client.create("tenants", {"name": "two"})
    assert len(lines()) == 3 and lines()[2][0] == "WARNING" and a.url in lines()[2][1]
