"""The REST server says where a request's time went (``Server-Timing``, controller/rest/server.py), over a real
listening socket on the eventlet hub: what tests/benchmarks/bursts.py splits a slow GET /v1/status with."""

from __future__ import annotations

import time

import eventlet
import pytest

from controller.rest.server import RestServer
from controller.settings import Limits
from tests.benchmarks.statuspoll import SERVER_PARTS, server_timing, split

from .helpers import Controller


@pytest.fixture
def served(tmp_path):
    ctl = Controller(tmp_path)
    server = RestServer("127.0.0.1", 0, ctl.api, Limits())
    listener = server.start()
    yield server
    listener.kill()
    ctl.close()


def exchange(sock, request: bytes) -> tuple[bytes, float]:
    """Send ``request`` on ``sock``, read one answer (headers and Content-Length bytes); (answer, seconds)."""
    started = time.monotonic()
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    length = int(next(line.split(b":")[1] for line in lines if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head, time.monotonic() - started


def timing_of(head: bytes) -> dict:
    line = next(line for line in head.decode().split("\r\n") if line.lower().startswith("server-timing:"))
    return server_timing(line.split(":", 1)[1])


def test_every_answer_splits_its_time_and_the_first_of_a_connection_its_waits(served):
    sock = eventlet.connect(("127.0.0.1", served.port))
    try:
        head, seconds = exchange(sock, b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
        first = timing_of(head)
        head, _ = exchange(sock, b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")  # the same connection, kept alive
        second = timing_of(head)
    finally:
        sock.close()
    assert set(first) == {"turn", "read", "body", "handle", "encode", "cpu"}
    assert all(ms >= 0 for ms in first.values())
    assert sum(first[part] for part in SERVER_PARTS) <= seconds * 1000  # within what the client waited
    # a kept-alive connection's later request waited idle, not for the event loop: no turn, no read
    assert set(second) == {"body", "handle", "encode", "cpu"}


def test_a_page_first_leaves_the_next_answer_without_the_connections_first_turn(served):
    """The topology page's files carry no ``Server-Timing``; an API answer after one on the same connection is not the
    connection's first: it has no ``turn`` nor ``read``, which would count the page's request and the idle time
    since the accept as reading its headers."""
    sock = eventlet.connect(("127.0.0.1", served.port))
    try:
        head, _ = exchange(sock, b"GET /ui HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"server-timing" not in head.lower()
        head, _ = exchange(sock, b"GET /v1/status HTTP/1.1\r\nHost: x\r\n\r\n")
    finally:
        sock.close()
    assert set(timing_of(head)) == {"body", "handle", "encode", "cpu"}


def test_split_adds_up_to_the_total():
    record = {"total": 20.0, "connect": 1.0, "send": 0.5, "wait": 16.0, "read": 1.5, "decode": 1.0,
              "server": {"turn": 4.0, "read": 2.0, "body": 0.0, "handle": 1.0, "encode": 0.5, "cpu": 1.2}}
    parts = split(record)
    assert parts["unaccepted+write"] == 16.0 - 7.5
    assert sum(parts.values()) == pytest.approx(record["total"])


def test_a_request_is_handled_before_the_paced_work_already_waiting(served):
    """Three green threads pacing long work (a turn each, again and again: controller/pacer.py) and a client: the
    accepted connection's first turn comes before theirs (ryu_compat.spawn_first). With ``hub.spawn`` it came after
    a whole round of them (3 turns), whose length during a burst is the event loop's lag."""
    turns, handled, stop = [0], [], [False]

    def paced_work():
        while not stop[0]:
            turns[0] += 1
            eventlet.sleep(0)

    handle = served.api.handle
    served.api.handle = lambda req: handled.append(turns[0]) or handle(req)
    workers = [eventlet.spawn(paced_work) for _ in range(3)]
    try:
        eventlet.sleep(0)
        for _ in range(3):
            sock = eventlet.connect(("127.0.0.1", served.port))
            try:
                sent = turns[0]
                head, _ = exchange(sock, b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            finally:
                sock.close()
            assert b" 200 " in head.split(b"\r\n")[0]
            assert handled[-1] - sent == 0  # no paced turn between the request sent and its handling
    finally:
        stop[0] = True
        for worker in workers:
            worker.wait()
