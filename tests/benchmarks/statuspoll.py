"""GET /v1/status polled every ``--interval`` seconds, each request's time split where it went.

    .venv/bin/python -m tests.benchmarks.statuspoll --ns NS --host H --port P [--interval 0.05]

Prints ``ready`` when it polls, runs until a line (or the end) arrives on stdin, then prints one JSON list: per
request its start (``time.monotonic()``, the same clock as the controller's on this machine), the client's
milliseconds (``connect``: the TCP handshake, done by the kernel whatever the controller does; ``wait``: from the
request sent to the answer's headers; ``read``: the body; ``decode``: its JSON) and the controller's own (its
``Server-Timing`` header, controller/rest/server.py: ``turn``, ``read``, ``body``, ``handle``, ``encode``, ``cpu``),
and the event-loop lag the answer reports. ``split`` turns a record into the parts that add up to its total.

A process of its own, in the controller's network namespace for its whole life: a poller thread inside the
benchmark's process waited for that process's GIL (the benchmark encodes a 3.5 MB OVSDB transaction and decodes
replies meanwhile) and started a thread per request to join the namespace, which the request's time then included
(docs/benchmarks.md, bursts, branch statuslat). Used by tests/benchmarks/bursts.py; not collected by pytest.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import select
import socket
import sys
import time

from tests.harness import netns

SERVER_PARTS = ("turn", "read", "body", "handle", "encode")  # wall-clock, accept to the answer's bytes, in order


def server_timing(header: str | None) -> dict:
    """``Server-Timing: a;dur=1.5, b;dur=2`` as {"a": 1.5, "b": 2.0} (milliseconds); {} without the header."""
    out = {}
    for entry in (header or "").split(","):
        name, _, rest = entry.strip().partition(";")
        if rest.startswith("dur="):
            out[name] = float(rest[4:])
    return out


def timed_get(connect, host: str, path: str = "/v1/status") -> dict:
    """One GET on a new connection from ``connect()``, its times in milliseconds (module docstring)."""
    at = time.monotonic()
    sock = connect()
    connected = time.monotonic()
    conn = http.client.HTTPConnection(host)
    conn.sock = sock
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        sent = time.monotonic()
        reply = conn.getresponse()
        headed = time.monotonic()
        raw = reply.read()
        read = time.monotonic()
    finally:
        conn.close()
    status = json.loads(raw)
    done = time.monotonic()
    lag = status.get("event_loop_lag") or {}
    return {"at": at, "status": reply.status, "total": (done - at) * 1000, "connect": (connected - at) * 1000,
            "send": (sent - connected) * 1000, "wait": (headed - sent) * 1000, "read": (read - headed) * 1000,
            "decode": (done - read) * 1000, "server": server_timing(reply.getheader("Server-Timing")),
            "lag_ms": lag.get("current_ms", 0.0), "lag_max_ms": lag.get("max_ms", 0.0)}


def split(record: dict) -> dict:
    """A record's total (ms) in parts that add up to it: the client's ``connect``, ``send``, the time the controller
    had the connection before accepting it plus writing the answer (``unaccepted+write``: ``wait`` less what
    Server-Timing accounts for), the controller's parts (SERVER_PARTS), and the client's ``read`` and ``decode``."""
    server = record["server"]
    inside = sum(server.get(part, 0.0) for part in SERVER_PARTS)
    parts = {"connect": record["connect"], "send": record["send"], "unaccepted+write": record["wait"] - inside}
    parts.update((f"ctl {part}", server.get(part, 0.0)) for part in SERVER_PARTS)
    parts.update({"client read": record["read"], "decode": record["decode"]})
    return parts


def poll(connect, host: str, interval: float, stop) -> list[dict]:
    """Requests every ``interval`` s until ``stop(timeout)`` says so; failures as {"at", "error"}."""
    records = []
    while True:
        started = time.monotonic()
        try:
            records.append(timed_get(connect, host))
        except (OSError, ValueError, http.client.HTTPException) as exc:
            records.append({"at": started, "error": repr(exc)})
        if stop(max(0.0, interval - (time.monotonic() - started))):
            return records


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ns", required=True, help="the controller's network namespace")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--interval", type=float, default=0.05, help="seconds from one request's start to the next")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds a request may take")
    args = parser.parse_args(argv)
    with open(netns.NETNS_DIR / args.ns, "rb") as handle:  # this process's only thread: for its whole life
        if netns._libc.setns(handle.fileno(), netns.CLONE_NEWNET) != 0:
            raise SystemExit(f"setns into {args.ns} failed: {os.strerror(netns.ctypes.get_errno())}")

    def connect():
        return socket.create_connection((args.host, args.port), timeout=args.timeout)

    def stop(timeout: float) -> bool:
        return bool(select.select([sys.stdin], [], [], timeout)[0])

    print("ready", flush=True)  # in the namespace, polling from now on
    print(json.dumps(poll(connect, args.host, args.interval, stop)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
