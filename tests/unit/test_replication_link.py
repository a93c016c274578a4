"""The HA pair's link (controller/pairlink.py) over real TCP on 127.0.0.1: garbage, handler exceptions, refused
dials, and who may speak on it (the shared secret, strangers). Every wait is bounded (wait_for)."""

import logging
import socket
import threading

import msgpack
import pytest

from controller.pairlink import PairLink

from .replication_pair import BOUND, INTERVAL, SECRET, free_port, link, wait_for

# ------------------------------------------------------------------ the link itself

def _closed_by_peer(sock):
    sock.settimeout(BOUND)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return True


@pytest.mark.parametrize("garbage", [
    b"\xc1\xc1 not msgpack at all",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    msgpack.packb([1, 2, 3]),
    msgpack.packb({"t": "changes", "changes": []}),        # no handshake first
    msgpack.packb({"t": "hello", "node": "peer"}),         # the old unauthenticated hello
    msgpack.packb({"t": "hi", "node": "me", "nonce": b"n" * 32}),  # claims to be ourselves
    msgpack.packb({"t": "hi", "nonce": b"n" * 32}),        # hi without a node
    msgpack.packb({"t": "hi", "node": "peer", "nonce": b"n" * 32}) + msgpack.packb({"t": "auth", "proof": b"x" * 32}),
    b"\xdf\xff\xff\xff\xff",                               # a map header far beyond any size limit
], ids=["bad-bytes", "http", "not-a-map", "no-handshake", "old-hello", "own-node", "anonymous", "bad-proof",
        "huge-header"])
def test_garbage_closes_that_connection_and_the_link_keeps_working(tmp_path, garbage):
    received = []
    me = link("me", 0, free_port(), on_message=received.append)
    me.start()
    try:
        with socket.create_connection(("127.0.0.1", me.port), timeout=BOUND) as rogue:
            rogue.sendall(garbage)
            assert _closed_by_peer(rogue)
        assert received == [] and not me.connected_in
        peer = link("peer", 0, me.port, heartbeat=lambda: {"x": 1})
        peer.start()
        try:
            wait_for(lambda: any(m.get("t") == "hb" for m in received), "a heartbeat from the real peer")
            assert me.connected_in and received[0] == {"t": "hello", "node": "peer", "x": 1}
            assert me.last_heard is not None
        finally:
            peer.stop()
    finally:
        me.stop()


def test_a_handler_exception_is_logged_and_the_link_goes_on(tmp_path):
    received = []

    def handler(msg):
        received.append(msg)
        raise RuntimeError("handler bug")

    me = link("me", 0, free_port(), on_message=handler)
    me.start()
    peer = link("peer", 0, me.port)
    peer.start()
    try:
        wait_for(lambda: len(received) >= 3, "several messages despite the failing handler")
        assert me.connected_in and peer.connected_out
    finally:
        peer.stop()
        me.stop()


def test_dialling_a_port_nobody_listens_on_reports_refused(tmp_path):
    me = link("me", 0, free_port())
    me.start()
    try:
        wait_for(me.refused, "a refused dial")
        assert me.last_dial_error == "connection refused" and not me.connected_out
        assert me.send({"t": "x"}) is False
    finally:
        me.stop()


def test_a_refused_dial_is_never_seen_without_its_reason(tmp_path):
    """The dialler's thread records the reason before the refusal: a reader seeing ``refused()`` sees why (was: the
    refusal first, then a log line, then the reason, and a loaded machine showed a reader refused with no reason)."""
    me = link("me", 0, free_port())
    seen = []
    say = me._say
    me._say = lambda *args: (seen.append((me.refused(), me.last_dial_error)), say(*args))[1]
    me.start()
    try:
        wait_for(me.refused, "a refused dial")
        assert seen and (True, None) not in seen
    finally:
        me.stop()


def test_the_peer_coming_up_ends_refused(tmp_path):
    port = free_port()
    me = link("me", 0, port)
    me.start()
    peer = link("peer", port, me.port)
    try:
        wait_for(me.refused, "a refused dial")
        peer.start()
        wait_for(lambda: me.connected_out and me.connected_in, "both directions")
        assert not me.refused() and me.last_dial_error is None
        assert me.send({"t": "anything"}) is True
    finally:
        peer.stop()
        me.stop()


# ------------------------------------------------------------------ who may speak on the link

def test_a_node_without_the_secret_cannot_connect_either_way(tmp_path):
    received, stranger_got = [], []
    me = link("me", 0, free_port(), on_message=received.append)
    me.start()
    stranger = link("peer", 0, me.port, on_message=stranger_got.append, secret="not-the-pair-secret")
    stranger.start()
    me.peer_port = stranger.port  # and we dial it: it cannot prove the secret to us either
    try:
        wait_for(lambda: me.auth_failures >= 2 and stranger.auth_failures >= 1, "both handshakes to fail")
        assert received == [] and stranger_got == [] and not me.connected_in and not me.connected_out
        assert "authentication failed" in (me.last_dial_error or "")
        assert "authentication failed" in (stranger.last_dial_error or "")
    finally:
        stranger.stop()
        me.stop()


def test_two_nodes_given_one_node_id_are_told_so_and_a_node_dialling_itself_is_not(tmp_path):
    """Both nodes named alike (ha.node_id defaults to the host name: two hosts or containers of one name): each
    refuses the other, and each says why in last_dial_error (/v1/ha), not "does the peer use the same ha.secret?"
    as before (faults50). A node whose peer address is its own still closes its own dial as ourselves, and says so
    on both ends."""
    me = link("ctl", 0, free_port())
    me.start()
    twin = link("ctl", 0, me.port)
    twin.start()
    me.peer_port = twin.port
    try:
        said = "both nodes have ha.node_id 'ctl'"
        wait_for(lambda: said in (me.last_dial_error or "") and said in (twin.last_dial_error or ""),
                 "both dials refused naming the node id")
        assert not me.connected_in and not me.connected_out and not twin.connected_in
    finally:
        twin.stop()
        me.stop()
    alone = link("ctl", 0, free_port())
    alone.start()
    alone.peer_port = alone.port
    try:
        wait_for(lambda: "authentication" in (alone.last_dial_error or ""), "its dial of itself to fail")  # (its
        # first dial, of the port it was given before its own, is refused: "connection refused")
        assert "node_id" not in alone.last_dial_error and not alone.connected_in
        assert "refused by the peer: it is ourselves" in alone.last_dial_error  # (review50f: was "the same ha.secret?")
    finally:
        alone.stop()


def _answering_every_hi_with(answer):
    """A listener (not a node of the pair) that answers each hi it is sent with ``answer`` and closes; its port and
    how to stop it."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    done = threading.Event()

    def serve():
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(BOUND)
                try:
                    conn.recv(4096)
                    conn.sendall(msgpack.packb(answer))
                except OSError:  # the dialler gone meanwhile (the link stopped)
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def stop():
        done.set()
        thread.join(BOUND)
        server.close()
    return server.getsockname()[1], stop


def test_a_refusal_from_whoever_answers_the_dial_is_one_line_of_printable_text(tmp_path, caplog):
    """The refusal a node sends before any proof of the secret (two nodes of one ha.node_id) can come from anyone at
    the peer address: what it says is shown (log, /v1/ha ``last_dial_error``), bounded and printable. Before
    (review50f) its line breaks went into the log as they were, forged lines of this node's own log."""
    forged = "ok\n2026-12-08 01:00:00 WARNING canopy.ha: HA: now standby (generation 9)\r\x1b[2J" + "x" * 500
    port, stop = _answering_every_hi_with({"t": "refused", "reason": forged})
    me = link("me", 0, port)
    try:
        with caplog.at_level(logging.INFO, logger="canopy.ha"):
            me.start()
            wait_for(lambda: "refused by the peer" in (me.last_dial_error or ""), "the dial refused")
            wait_for(lambda: any("refused by the peer" in r.getMessage() for r in caplog.records), "its log line")
        shown = [me.last_dial_error] + [r.getMessage() for r in caplog.records if "refused by the peer" in r.getMessage()]
        assert all(text.isprintable() and len(text) < 400 for text in shown), shown
        assert me.auth_failures >= 1 and not me.connected_out
    finally:
        me.stop()
        stop()


def test_a_stranger_cannot_displace_or_speak_for_a_live_peer(tmp_path):
    received = []
    me = link("me", 0, free_port(), on_message=received.append)
    me.start()
    peer = link("peer", 0, me.port, heartbeat=lambda: {"x": 1})
    peer.start()
    try:
        wait_for(lambda: me.connected_in and len(received) >= 2, "the real peer")
        real = me._peer_in
        with socket.create_connection(("127.0.0.1", me.port), timeout=BOUND) as rogue:
            rogue.sendall(msgpack.packb({"t": "hi", "node": "peer", "nonce": b"r" * 32}))
            challenge = msgpack.Unpacker(raw=False)
            challenge.feed(rogue.recv(4096))
            assert next(challenge)["t"] == "challenge"  # it gets a challenge it cannot answer
            rogue.sendall(msgpack.packb({"t": "auth", "proof": b"\0" * 32})
                          + msgpack.packb({"t": "changes", "changes": [], "node": "peer"}))
            assert _closed_by_peer(rogue)
        count = len(received)
        wait_for(lambda: len(received) > count + 2, "the real peer still heard")
        assert me._peer_in is real and all(m.get("node") == "peer" and m.get("x") == 1 for m in received)
    finally:
        peer.stop()
        me.stop()


@pytest.mark.parametrize("ip", ["127.0.0.1", "127.0.0.81"])  # (tests/integration/gobgp.py's for gobgpd: .81)
def test_a_port_free_port_gave_is_the_links_whoever_binds_first(tmp_path, ip):
    """A port handed out for a listener stays its own until it binds it (test_ha_busy's nodes bind theirs in child
    processes a second or two later; gobgpd and ExaBGP theirs too): another socket binding it meanwhile is refused,
    the link (SO_REUSEADDR) is not (tests/harness/ports.py)."""
    import errno

    from tests.harness.ports import reserved_port

    port = free_port() if ip == "127.0.0.1" else reserved_port(ip)
    competitor = socket.socket()  # another test's listener, or a connection's local port, taking it first
    try:
        with pytest.raises(OSError) as refused:
            competitor.bind((ip, port))
        assert refused.value.errno == errno.EADDRINUSE
    finally:
        competitor.close()
    me = PairLink("me", ip, port, "127.0.0.1", free_port(), INTERVAL, dict, print, secret=SECRET)
    me.start()
    try:
        assert me.port == port
        with socket.create_connection((ip, port), timeout=BOUND):
            pass  # the link's listener answers on it
    finally:
        me.stop()


def _held(links) -> dict:
    """{descriptor: what it is open on} of the links' own descriptors: their wake-up pipes' ends and listeners."""
    import os

    out = {}
    for one in links:
        for fd in (one._wake_out._wake_r, one._wake_out._wake_w, one._inbox._wake_r, one._inbox._wake_w,
                   one._listener.fileno()):
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
    return out


def _still_open(held: dict) -> dict:
    """Those of ``held`` still open on the same pipe or socket (a number reused since is another's)."""
    import os

    out = {}
    for fd, target in held.items():
        try:
            now = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if now == target:
            out[fd] = target
    return out


def test_a_stopped_link_leaves_no_descriptor_open_and_starts_again(tmp_path):
    """Its wake-up pipes stayed open after stop() (four descriptors per link): a whole unit run held ~950
    descriptors by the time test_stream_gate filled them up to select()'s 1,024. Started again, it works. Only the
    links' own descriptors are looked at (counting the process's, a descriptor another test's thread or the garbage
    collector opened or closed meanwhile failed it: 366 == 364 in a whole unit run)."""
    ports = free_port(), free_port()
    received = []
    me, peer = link("me", ports[1], ports[0], on_message=received.append), link("peer", ports[0], ports[1])
    for run in range(2):
        me.start()
        peer.start()
        held = _held((me, peer))
        assert len(held) == 10 and len(set(held.values())) == 6, held  # (a pipe's two ends: one pipe)
        try:
            wait_for(lambda: len([m for m in received if m.get("t") == "hb"]) > run, "a heartbeat from the peer")
        finally:
            peer.stop()
            me.stop()
        assert _still_open(held) == {}, f"run {run}"  # was: the four pipe ends of each link
