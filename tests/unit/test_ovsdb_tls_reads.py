"""An OVSDB session over TLS reads what OpenSSL already holds (ovsdb/idl/links.py ``TlsStream.wait``, ``_ReadBudget``).

A session loop reads at most ``READ_BUDGET`` bytes per turn, then waits for more. Over TLS, the bytes of a record
that one read did not take are decrypted inside the SSL object, not in the socket: a wait for the socket to become
readable would sleep while they sit there (until the peer sends something else, or the next timer). Whenever the
SSL object holds bytes after a turn, the wait must wake at once, and the whole update must arrive.

Real TLS on loopback (OpenSSL on both ends, certificates made by tests/harness/pki.py, mutual as Canopy's OVSDB
listener is), Canopy's own listener and replica; the peer plays the hypervisor's ovsdb-server with a TLS socket,
writing its update in records of 5,003 bytes, so that a turn's budget runs out inside a record. A real ovsdb-server
never makes that happen: its records are 16 KB from the start of each message, four reads of ``Connection.recv``'s
4,096 bytes, so a turn ends on a record's end (measured: its first copy of 3,000 ports over TLS, 1.27 MB in 23 turns,
OpenSSL held no byte after any turn). Real hypervisors over TLS: tests/integration/test_tls.py.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import uuid

import ovs.poller
import pytest

from controller import tls
from ovsdb import idl
from tests.harness.pki import Pki

BOUND = 10.0  # seconds for any one step (a handshake, an update's arrival)
RECORD = 5003  # bytes the peer writes at a time: one TLS record each
PORT_SCHEMA = {"name": "Open_vSwitch", "version": "1.0.0",
               "tables": {"Port": {"columns": {"name": {"type": "string"}}, "isRoot": True}}}


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    ca = Pki(tmp_path_factory.mktemp("pki"), "canopy-ca")
    return ca, ca.issue("canopy"), ca.issue("hv1")


class TlsPeer(threading.Thread):
    """The hypervisor's side: completes the handshake, then writes ``message`` in records of ``RECORD`` bytes."""

    def __init__(self, port: int, pki, message: bytes):
        super().__init__(daemon=True)
        ca, _, hv = pki
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.context.load_verify_locations(ca.ca_cert)
        self.context.load_cert_chain(hv.cert, hv.key)
        self.context.check_hostname = False
        self.port, self.message = port, message
        self.sent, self.error, self.sock = threading.Event(), None, None

    def run(self):
        try:
            raw = socket.create_connection(("127.0.0.1", self.port), timeout=BOUND)
            self.sock = self.context.wrap_socket(raw)  # the handshake: Canopy's side steps it in its own loop
            for start in range(0, len(self.message), RECORD):
                self.sock.sendall(self.message[start:start + RECORD])
        except Exception as exc:  # reported by the test
            self.error = exc
        finally:
            self.sent.set()


def accept(listener) -> idl.PeerLink:
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        listener.wait(100)
        link = listener.accept()
        if link is not None:
            return link
    raise AssertionError("nothing accepted")


def wakes_at_once(replica) -> bool:
    """Whether the replica's wait would return without waiting (what ``Replica.wait`` registers)."""
    poller = ovs.poller.Poller()
    replica._idl.wait(poller)
    return poller.timeout == 0


def test_bytes_openssl_holds_after_a_turn_are_read_at_once_and_the_whole_update_arrives(pki):
    _, canopy, _ = pki
    context = tls.server_context(tls.TlsFiles(str(canopy.key), str(canopy.cert), str(pki[0].ca_cert)), mutual=True)
    listener = idl.Listener("127.0.0.1", 0, tls=context)
    rows = 6000  # an update of ~390 KB: six turns' budgets
    update = {"Port": {str(uuid.UUID(int=i + 1)): {"insert": {"name": "port-%05d" % i}} for i in range(rows)}}
    message = json.dumps({"id": None, "method": "update2", "params": ["peer", update]}).encode()
    assert len(message) > 5 * idl.READ_BUDGET
    peer = TlsPeer(listener.port, pki, message)
    peer.start()
    link = accept(listener)
    replica = idl.Replica(link, PORT_SCHEMA, {"Port": ["name"]}, track=True)
    try:
        held_after_a_turn, slept_on_them = 0, 0
        deadline = time.monotonic() + BOUND
        while len(replica.rows("Port")) < rows and time.monotonic() < deadline:
            replica.run()
            assert replica.connected, replica.limit_error
            if link._stream._handshaken and peer.sent.is_set() and link._stream.socket.pending():
                held_after_a_turn += 1
                slept_on_them += not wakes_at_once(replica)
            if not peer.sent.is_set():
                peer.sent.wait(0.01)  # the handshake first, then the whole update written (the peer's thread)
            replica.wait(100)
        assert peer.error is None
        assert sorted(row.name for row in replica.rows("Port")) == ["port-%05d" % i for i in range(rows)]
        assert held_after_a_turn > 0  # the case under test happened: a turn's budget ran out inside a record
        assert slept_on_them == 0
    finally:
        replica.close()
        listener.close()
        if peer.sock is not None:
            peer.sock.close()
        peer.join(BOUND)
