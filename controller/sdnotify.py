"""systemd's readiness protocol (sd_notify), without a dependency: one datagram to $NOTIFY_SOCKET.

Under a unit with ``Type=notify`` systemd waits for ``READY=1`` before it calls the service started (and
starts what is ordered after it); ``STOPPING=1`` says a clean shutdown has begun. Canopy sends READY=1 once
its REST API answers (``announce_ready_when_serving``), and STOPPING=1 when the app stops. Without
$NOTIFY_SOCKET (not started by systemd, or by a unit of another type) nothing is sent.
See sd_notify(3): the address is a path, or an abstract socket when it starts with '@'.
"""

from __future__ import annotations

import http.client
import logging
import os
import socket

log = logging.getLogger("canopy.sdnotify")
READY_POLL = 0.05  # seconds between checks that the REST API answers
READY_PATIENCE = 1200  # checks (one minute) before giving up on READY=1


def notify(message: str, environ=None) -> bool:
    """Send ``message`` (e.g. "READY=1\\nSTATUS=...") to the service manager; True when sent."""
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
        return True
    except OSError as exc:
        log.warning("could not notify the service manager at %s: %s", address.replace("\0", "@"), exc)
        return False


def rest_answers(host: str, port: int) -> bool:
    """Whether the REST server at host:port answers GET /v1/status (any HTTP status counts)."""
    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("GET", "/v1/status")
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def probe_host(listen: str) -> str:
    """The address to reach a server listening on ``listen`` from this host."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(listen, listen)


def announce_ready_when_serving(listen: str, port: int, sleep) -> bool:
    """Poll (with ``sleep``, the event loop's) until the REST API answers, then send READY=1. Does
    nothing without $NOTIFY_SOCKET. Returns whether READY=1 was sent."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return False
    host = probe_host(listen)
    for _ in range(READY_PATIENCE):
        if rest_answers(host, port):
            return notify(f"READY=1\nSTATUS=serving REST on {listen}:{port}\nMAINPID={os.getpid()}")
        sleep(READY_POLL)
    log.warning("the REST API on %s:%d did not answer: READY=1 not sent to the service manager", host, port)
    return False
