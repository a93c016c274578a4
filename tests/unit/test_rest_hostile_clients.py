"""Hostile REST clients of a paced answer, over real sockets on loopback (controller/rest/server.py, lane.py): a client
that closes its connection in the middle of an answer (in one of its pauses), or resets it, and one that stops
reading, hold no turn of the REST lane and stall no other request; their connections and green threads are freed.

The answer is ``GET /v1/vports`` of 600 vports (~480 kB), encoded with a pause every 40 views through the app's lane
(its turns given by ``eventlet.sleep(0)``); a client is closed from inside a pause of its own answer. The server's
sockets send through a small kernel buffer here (``SEND_BUFFER``), so that an answer not read fills it and the write
waits, as it does on a real network (on loopback the kernel would take the whole answer). Waits are bounded.
"""

from __future__ import annotations

import logging
import socket
import struct

import eventlet
import pytest
from eventlet.green import socket as green_socket

from controller.rest import api as rest_api
from controller.rest.lane import Lane
from controller.rest.server import RestServer
from controller.settings import Limits

from .test_rest_snapshots import EVERY, VPORTS, _controller
from .test_rest_stop import answer_of

REQUEST = b"GET /v1/vports HTTP/1.1\r\nHost: x\r\n\r\n"
TIMEOUT = 1.0  # seconds: the server's header and body (write) timeouts here
WAIT = 20.0  # seconds a wait of the test takes at most
SEND_BUFFER = 4096  # bytes of an accepted socket's kernel send buffer (module docstring)


@pytest.fixture
def serving(tmp_path, monkeypatch):
    """(controller, server, lane, hooks): each function put in ``hooks`` runs once, in the next pause of an answer."""
    serve = RestServer._serve

    def small_send_buffer(self, sock, addr, accepted=None):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        return serve(self, sock, addr, accepted)

    monkeypatch.setattr(RestServer, "_serve", small_send_buffer)
    ctl = _controller(tmp_path, VPORTS)
    monkeypatch.setattr(rest_api, "ANSWER_EVERY", EVERY)
    hooks = []

    def give_way():
        while hooks:
            hooks.pop(0)()
        eventlet.sleep(0)

    lane = Lane(give_way)
    ctl.api.pause = lane.pause
    server = RestServer("127.0.0.1", 0, ctl.api, Limits(rest_header_timeout=TIMEOUT, rest_body_timeout=TIMEOUT))
    server.start()
    try:
        yield ctl, server, lane, hooks
    finally:
        server.stop(drain=0)
        ctl.close()


def _connect(server, receive_buffer: int | None = None):
    sock = green_socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:  # before the connect: the window it offers
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", server.port))
    return sock


def _settled(server, lane) -> None:
    """Wait (bounded) until no request is handled, no connection is open and no answer holds the lane's turn."""
    with eventlet.Timeout(WAIT):
        while server.handling or server.connections.count() or lane._turn.held:
            eventlet.sleep(0.01)


def _answer(server) -> tuple[int, dict]:
    sock = _connect(server)
    try:
        return answer_of(sock, REQUEST)
    finally:
        sock.close()


def test_clients_gone_in_the_middle_of_an_answer_hold_nothing_and_others_are_answered(serving, caplog):
    """Ten clients each close (five with a reset) while their answer is paused; each time the next client is answered
    in full, and at the end nothing is handled, no connection is open and the lane's turn is free, nothing logged as
    an internal error."""
    ctl, server, lane, hooks = serving
    status, expected = _answer(server)
    assert status == 200 and expected["count"] == VPORTS
    with caplog.at_level(logging.INFO):
        for n in range(10):
            gone = _connect(server)
            if n % 2:  # a reset, not a close: the server's write fails at once
                gone.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            closed = eventlet.Event()
            hooks.append(lambda sock=gone, done=closed: (sock.close(), done.send()))
            gone.sendall(REQUEST)
            with eventlet.Timeout(WAIT):
                closed.wait()  # closed from a pause of its own answer
            assert _answer(server) == (200, expected)
    _settled(server, lane)
    assert not [r for r in caplog.records if "internal error" in r.getMessage() or r.levelno >= logging.ERROR]


def test_a_client_that_stops_reading_holds_no_turn_and_is_dropped_after_the_timeout(serving):
    """A client asks for the answer and reads nothing (a small receive window): three other clients are answered in
    full meanwhile; the answer it stopped reading is dropped with its connection after the server's write timeout,
    and the lane's turn is free throughout (held only inside a pause)."""
    ctl, server, lane, hooks = serving
    status, expected = _answer(server)
    assert status == 200
    slow = _connect(server, receive_buffer=4096)
    try:
        paused = eventlet.Event()
        hooks.append(paused.send)
        slow.sendall(REQUEST)
        with eventlet.Timeout(WAIT):
            paused.wait()  # its answer is being made
        for _ in range(3):
            assert _answer(server) == (200, expected)
        _settled(server, lane)  # it too: dropped, or written whole into the buffers and closed idle, by the timeouts
        received = b""
        with eventlet.Timeout(WAIT):
            while chunk := slow.recv(65536):
                received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        assert head.startswith(b"HTTP/1.1 200") and len(body) < length  # cut: the write waited past the timeout
    finally:
        slow.close()
