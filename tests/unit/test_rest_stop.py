"""The controller stops REST before it closes the store (controller/app.py ``_shut_down``, controller/rest/server.py
``stop``): a real request racing the stop gets its answer, or 503 ``stopping``, never a 500 from a closed store; a
client connecting after it is refused. Before, the store closed while REST still served, and a late read got 500.

The requests go over a real listening socket on loopback; the request under way is a read of the store's change log
(``GET /v1/changes``) made to wait, inside its handler, until the test lets it go on."""

from __future__ import annotations

import json
from types import SimpleNamespace

import eventlet
import pytest

from controller import app
from controller.rest import server as rest_server
from controller.rest.server import RestServer
from controller.settings import Limits

from .helpers import Controller

REQUEST = b"GET /v1/changes HTTP/1.1\r\nHost: x\r\n\r\n"


class Racing:
    """A controller serving REST on loopback whose ``GET /v1/changes`` waits for ``go`` before it reads the store;
    ``glue``: what ``CanopyApp._shut_down`` stops (the REST server and the store real, the rest idle)."""

    def __init__(self, tmp_path):
        self.ctl = Controller(tmp_path)
        self.ctl.create("tenants", {"name": "acme"})  # one change in the log
        self.started, self.go = eventlet.Event(), eventlet.Event()
        reader = self.ctl.store.reader
        changes = reader.changes

        def late_changes(seq, limit):
            self.started.send()
            self.go.wait()
            return changes(seq, limit)

        reader.changes = late_changes
        self.server = RestServer("127.0.0.1", 0, self.ctl.api, Limits())
        self.server.start()
        self.glue = SimpleNamespace(hold=SimpleNamespace(close=lambda: None), rest=self.server, pair=None,
                                    federation=None, ovsdb=SimpleNamespace(stop=lambda: None), reconcilers={},
                                    _worker=None, store=self.ctl.store, stretches=None, stall=None,
                                    state=SimpleNamespace())
        self.stopped = False

    def stop(self):
        app.CanopyApp._shut_down(self.glue)
        self.stopped = True


def answer_of(sock, request=REQUEST) -> tuple[int, dict]:
    """Send ``request`` on ``sock``; (status, JSON body)."""
    sock.sendall(request)
    data = b""
    with eventlet.Timeout(10):
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        while len(body) < length:
            body += sock.recv(65536)
    return int(head.split(b" ")[1]), json.loads(body)


@pytest.fixture
def racing(tmp_path):
    r = Racing(tmp_path)
    yield r
    if not r.go.ready():
        r.go.send()
    if not r.stopped:
        r.server.stop(drain=0)
        r.ctl.close()


def test_a_request_under_way_when_the_controller_stops_gets_its_answer_and_then_the_store_closes(racing):
    sock = eventlet.connect(("127.0.0.1", racing.server.port))
    try:
        asking = eventlet.spawn(answer_of, sock)
        with eventlet.Timeout(10):
            racing.started.wait()  # the request is being handled
        stopping = eventlet.spawn(racing.stop)
        for _ in range(100):  # turns until the stop has closed the listener (REST stops first)
            eventlet.sleep(0)
            if racing.server.listening is None:
                break
        assert racing.ctl.api.stopping and not racing.stopped  # it waits for the request
        with pytest.raises(ConnectionRefusedError):  # nothing new is accepted
            eventlet.connect(("127.0.0.1", racing.server.port))
        racing.go.send()  # the request reads the store now: still open
        status, body = asking.wait()
        stopping.wait()
    finally:
        sock.close()
    assert status == 200 and [c["kind"] for c in body["items"]] == ["tenant"]
    assert racing.stopped and racing.server.handling == 0
    with pytest.raises(Exception):  # the store is closed, after the request
        racing.ctl.store.reader.last_seq()


def test_a_request_still_under_way_after_the_drain_gets_503_stopping_not_500(racing, monkeypatch):
    monkeypatch.setattr(rest_server, "STOP_DRAIN", 0.0)  # the drain is over at once: the store closes under it
    sock = eventlet.connect(("127.0.0.1", racing.server.port))
    kept = eventlet.connect(("127.0.0.1", racing.server.port))  # a connection open before the stop
    try:
        assert answer_of(kept, b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 200  # served, kept alive
        asking = eventlet.spawn(answer_of, sock)
        with eventlet.Timeout(10):
            racing.started.wait()
        racing.stop()
        racing.go.send()  # the request reads the store now: closed
        status, body = asking.wait()
        late_status, late = answer_of(kept)  # a request read after the stop, on a connection open before it
    finally:
        sock.close()
        kept.close()
    assert (status, body["error"]["code"]) == (503, "stopping")
    assert (late_status, late["error"]["code"]) == (503, "stopping")
    assert "stopping" in body["error"]["message"]


def test_a_write_under_way_when_the_controller_stops_is_answered_and_still_in_the_store_once_it_closed(racing):
    """A write whose commit is in flight when the stop begins (held in the store's offload) is answered 201 and the
    store closes after it: opened again, the store has it (an acknowledged write is never lost by the stop)."""
    from controller.store import Store

    from .helpers import TOKEN

    store = racing.ctl.store
    committing, commit = eventlet.Event(), eventlet.Event()
    offload = store.offload

    def held(function, *args):
        if not committing.ready():
            committing.send()
            commit.wait()
        return offload(function, *args)

    store.offload = held
    body = json.dumps({"name": "late"}).encode()
    request = (b"POST /v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer "
               + TOKEN.encode() + b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    sock = eventlet.connect(("127.0.0.1", racing.server.port))
    try:
        asking = eventlet.spawn(answer_of, sock, request)
        with eventlet.Timeout(10):
            committing.wait()  # the write's transaction is about to run
        stopping = eventlet.spawn(racing.stop)
        for _ in range(100):
            eventlet.sleep(0)
            if racing.server.listening is None:
                break
        assert racing.ctl.api.stopping and not racing.stopped  # the store waits for the write
        commit.send()
        status, answer = asking.wait()
        stopping.wait()
    finally:
        sock.close()
    assert status == 201 and answer["name"] == "late" and racing.stopped
    reopened = Store(store.path.rsplit("/", 1)[0])
    try:
        assert sorted(o["name"] for o in reopened.load_objects()["tenant"].values()) == ["acme", "late"]
    finally:
        reopened.close()
