"""With TLS on the OVSDB listener, a peer is logged "connected" once it speaks OVSDB over TLS, not when its TCP
connection is accepted: a plain-TCP peer (``set-manager tcp:`` where ``ssl:`` was meant) was logged "connected
(session ...)" and then, a line later, "TLS handshake failed", which reads as a session that came and went.

Real TLS on loopback (certificates by tests/harness/pki.py, mutual as Canopy's listener is) and the manager's own
accept step and session; the peers are threads of this test, each ended within ``BOUND``."""

import json
import logging
import socket
import ssl
import threading
import time

import pytest

from controller import tls
from controller.discovery import DiscoverySink
from ovsdb import idl, peersession, server
from tests.harness.pki import Pki

BOUND = 10.0  # seconds for any one step


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    ca = Pki(tmp_path_factory.mktemp("pki"), "canopy-ca")
    return ca, ca.issue("canopy"), ca.issue("hv1")


def plain_peer(port):
    with socket.create_connection(("127.0.0.1", port), timeout=BOUND) as sock:
        sock.sendall(b'{"method":"list_dbs","params":[],"id":1}')
        try:
            sock.recv(4096)
        except OSError:
            pass


def tls_peer(port, pki):
    ca, _, hv = pki
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(ca.ca_cert)
    context.load_cert_chain(hv.cert, hv.key)
    context.check_hostname = False
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=BOUND)) as sock:
        request = json.loads(sock.recv(4096))  # Canopy's list_dbs
        sock.sendall(json.dumps({"id": request["id"], "result": ["Not_A_Switch"], "error": None}).encode())
        try:
            sock.recv(4096)
        except OSError:
            pass


def served(manager, listener, peer, *args) -> list[str]:
    """What the manager logs accepting ``peer`` and serving it to its end (the session run in this thread)."""
    thread = threading.Thread(target=peer, args=(listener.port, *args), daemon=True)
    records = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = lambda record: records.append(record)
    manager.log.addHandler(handler)
    try:
        thread.start()
        deadline = time.monotonic() + BOUND
        while not any("dropping connection" in r.getMessage() for r in records) and time.monotonic() < deadline:
            listener.wait(100)
            manager._accept_pending()
    finally:
        manager.log.removeHandler(handler)
        thread.join(BOUND)
    return [f"{r.levelname} {r.getMessage()}" for r in records]


def test_a_plain_tcp_peer_is_not_logged_connected_and_a_tls_peer_is_once_it_speaks(pki, monkeypatch):
    _, canopy, _ = pki
    context = tls.server_context(tls.TlsFiles(str(canopy.key), str(canopy.cert), str(pki[0].ca_cert)), mutual=True)
    log = logging.getLogger("test.ovsdb.tls")
    log.setLevel(logging.DEBUG)
    manager = server.OvsdbManagerServer("127.0.0.1", 0, DiscoverySink(), tls=context, handshake_timeout=BOUND / 2,
                                        log=log)
    monkeypatch.setattr(peersession.PeerSession, "start", lambda self: self._serve())  # served here, in turn
    manager._listener = listener = idl.Listener("127.0.0.1", 0, context)
    listener._pstream.socket.setblocking(False)  # as under the hub's green sockets: accept says when none is pending
    try:
        plain = served(manager, listener, plain_peer)
        assert any("TLS handshake failed" in line for line in plain), plain
        assert not any(line.startswith("INFO") and "connected" in line for line in plain), plain
        assert any(line.startswith("DEBUG") and "TLS handshake next" in line for line in plain), plain

        speaking = served(manager, listener, tls_peer, pki)
        connected = [line for line in speaking if "connected over TLS (session ovsdb:127.0.0.1:" in line]
        assert len(connected) == 1 and connected[0].startswith("INFO"), speaking
        assert "Not_A_Switch" in speaking[-1] and "dropping connection" in speaking[-1], speaking
    finally:
        listener.close()
        manager._listener = None
