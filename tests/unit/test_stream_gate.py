"""At most STREAMS_AT_ONCE connections parse multipart replies at a time (controller.ryu_compat.StreamGate).

Eight switches read back at once each parsed a 512 KB piece of flow stats in the same round of the hub: 30-90 ms of
CPU that every other green thread waited for (vrs_scale's takeover and restart). Here Ryu's receive loops run as
they are, in green threads of the real hub, each on a stand-in socket holding a whole read-back (16,000 flows, then
an echo request): what is counted is bytes parsed between two turns of a probe thread (one round of the hub),
hub rounds until each echo request is dispatched, the order slots are given in, and that no slot is left held when
a connection ends, fails or is killed. Counts, not time.
"""

import contextlib
import fcntl
import gc
import os
import ssl
import struct

import pytest

from controller import ryu_compat
from controller.ryu_compat import StreamGate, hub, ofproto_protocol
from tests.unit.flow_samples import FLOWS
from tests.unit.green import joined, raise_failed, spawned
from tests.unit.test_flow_stats_read_back import flow_stats_reply
from tests.unit.test_openflow_read_pacing import HeldStream, read_back_stream

SWITCHES = 8  # read back at once (openflow/atonce.py READ_BACKS_AT_ONCE)
PIECE = ryu_compat.READ_PAUSE_BYTES + 65_536  # most bytes parsed in one turn: a read finishes a message


class Dispatched:
    """Ryu's ofp_event brick as the receive loop uses it: the hub round each connection's echo request came in."""

    def __init__(self, rounds: list):
        self.rounds, self.echo_round, self.parsed = rounds, {}, 0

    def send_event_to_observers(self, ev, state) -> None:
        msg = getattr(ev, "msg", None)
        self.parsed += msg.msg_len if msg is not None else 0
        if msg is not None and type(msg).__name__ == "OFPEchoRequest":
            self.echo_round[msg.datapath.address] = self.rounds[0]

    def get_handlers(self, ev):
        return []


def run_loops(streams: list, gate: StreamGate, monkeypatch) -> tuple[list, Dispatched]:
    """Ryu's receive loop on each stream, every one with ``gate``, and a probe that counts the hub's rounds: the
    bytes of the messages parsed (dispatched) during each round, and where each echo request was dispatched."""
    rounds = [0]
    brick = Dispatched(rounds)
    monkeypatch.setattr(ryu_compat.app_manager, "lookup_service_brick", lambda name: brick)
    loops = []
    for n, stream in enumerate(streams):
        dp = ryu_compat.open_datapath(stream, (f"192.0.2.{n + 1}", 6653), gate=gate, budget=None)  # (pieces counted)
        dp.set_state(ryu_compat.MAIN_DISPATCHER)
        loops.append(spawned(dp._recv_loop))
    per_round, parsed = [], 0
    for _ in range(10_000):  # bounded: a few hundred rounds
        hub.sleep(0)
        rounds[0] += 1
        per_round.append(brick.parsed - parsed)
        parsed = brick.parsed
        if all(loop.dead for loop in loops):
            break
    joined(*loops, bound=0)  # all ended, none by an error
    return per_round, brick


def read_backs(count: int = SWITCHES, version: int = 4) -> tuple[list, int]:
    data, _ = read_back_stream(version)
    return [HeldStream(data) for _ in range(count)], len(data)


@pytest.mark.parametrize("slots", [1, ryu_compat.STREAMS_AT_ONCE])
def test_a_round_parses_at_most_slots_pieces_of_multipart_replies(slots, monkeypatch):
    streams, size = read_backs()
    gate = StreamGate(slots)
    per_round, brick = run_loops(streams, gate, monkeypatch)
    assert all(stream.offset == size and stream.closed for stream in streams)
    assert len(brick.echo_round) == SWITCHES  # every stream parsed to its end
    assert max(per_round) <= slots * PIECE  # without the gate: SWITCHES pieces (4 MB) in a round
    assert gate.most == slots and gate.held == 0 and gate.waited > 0


def test_an_echo_behind_a_read_back_waits_for_the_pieces_in_front_of_it_only(monkeypatch):
    """Each connection's echo request, behind its 2.5 MB read-back, is dispatched once the read-backs in front of
    it are parsed, ``slots`` pieces a round: within (pieces of all read-backs) / slots rounds, and a few more."""
    streams, size = read_backs()
    gate = StreamGate(ryu_compat.STREAMS_AT_ONCE)
    _, brick = run_loops(streams, gate, monkeypatch)
    pieces = SWITCHES * -(-size // ryu_compat.READ_PAUSE_BYTES)
    assert max(brick.echo_round.values()) <= pieces // gate.limit + SWITCHES


def test_every_read_back_advances_in_turn(monkeypatch):
    """Slots go round: the first read-back to finish is done when every other one has parsed most of its own."""
    streams, size = read_backs()
    done = []
    gate = StreamGate(ryu_compat.STREAMS_AT_ONCE)
    close = HeldStream.close

    def closed(stream):
        done.append(sum(s.offset for s in streams if s is not stream) / (size * (SWITCHES - 1)))
        close(stream)

    monkeypatch.setattr(HeldStream, "close", closed)
    run_loops(streams, gate, monkeypatch)
    assert done[0] >= 0.5  # one after the other (no turns): 0


def test_slots_are_given_first_come_first_served():
    gate, order = StreamGate(2), []

    def holder(n):
        gate.acquire()
        order.append(n)
        hub.sleep(0)
        gate.release()

    gate.acquire()
    gate.acquire()
    threads = [spawned(holder, n) for n in range(5)]
    hub.sleep(0)  # all five waiting, in the order they came
    gate.release()
    threads.append(spawned(holder, 5))  # comes later: behind them even though a slot is free for a moment
    gate.release()
    joined(*threads)
    hub.sleep(0.01)
    assert order == [0, 1, 2, 3, 4, 5] and gate.held == 0 and gate.most == 2


def test_a_thread_killed_while_waiting_leaves_no_slot_held():
    gate = StreamGate(1)
    gate.acquire()
    waiter = hub.spawn(gate.acquire)
    hub.sleep(0)
    gate.release()  # handed to the waiter, which is killed before it runs
    hub.kill(waiter)
    assert gate.held == 0 and gate.waiting == 0
    gate.acquire()  # free again, at once
    queued = hub.spawn(gate.acquire)
    hub.sleep(0)
    hub.kill(queued)  # killed in the queue: leaves it
    assert gate.waiting == 0 and gate.held == 1


class FailingStream(HeldStream):
    """A stream that fails (or ends) after ``after`` bytes: the switch reset the connection mid-reply."""

    def __init__(self, data: bytes, after: int, error: bool):
        super().__init__(data[:after])
        self.error = error

    def recv(self, size: int) -> bytes:
        if self.offset >= len(self.data) and self.error:
            raise ConnectionResetError("reset by peer")
        return super().recv(size)


@pytest.mark.parametrize("error", [True, False])
def test_a_connection_that_fails_or_ends_mid_reply_gives_its_slot_back(error, monkeypatch):
    streams, size = read_backs(3)
    streams[0] = FailingStream(streams[0].data, size // 3, error)
    gate = StreamGate(1)
    _, brick = run_loops(streams, gate, monkeypatch)
    assert gate.held == 0 and len(brick.echo_round) == 2  # the two others read to their end


def test_small_messages_are_read_while_every_slot_is_held(monkeypatch):
    """Echo and barrier replies, errors and packet-ins need no slot, nor a multipart reply of one message (at most
    64 KB: a handshake's port descriptions, a group's description): read even while other read-backs hold every
    one."""
    dp = ofproto_protocol.ProtocolDesc(4)
    parser = dp.ofproto_parser
    messages = [parser.OFPEchoRequest(dp, data=b"probe"), parser.OFPBarrierReply(dp),
                parser.OFPEchoReply(dp, data=b"x")]
    for msg in messages:
        msg.serialize()
    port_desc = struct.pack("!BBHIHH4x", 4, dp.ofproto.OFPT_MULTIPART_REPLY, 16, 7, dp.ofproto.OFPMP_PORT_DESC, 0)
    gate = StreamGate(1)
    gate.acquire()
    stream = HeldStream(port_desc + flow_stats_reply(dp, FLOWS[:3]) + b"".join(bytes(msg.buf) for msg in messages))
    _, brick = run_loops([stream], gate, monkeypatch)
    assert stream.closed and len(brick.echo_round) == 1 and gate.waited == 0 and gate.held == 1


def wait_for(condition, *threads) -> None:
    """Until ``condition()`` holds, a second at most (the test then checks what it needs); one of ``threads`` ended
    by an error fails the test at once with it."""
    for _ in range(1000):  # bounded: a second
        hub.sleep(0.001)
        if condition():
            return
        raise_failed(threads)


@contextlib.contextmanager
def descriptors_from(low: int, on: bool):
    """While inside: new descriptors are numbered ``low`` or more (``on``), as in a controller of a thousand
    switches: ``select()`` cannot poll them (FD_SETSIZE is 1024)."""
    taken = []
    # an earlier test's unreachable socket closed by the collector after the fill would free a descriptor below
    # ``low`` for this test's sockets (seen once in a whole unit run: 943): collect first
    gc.collect()
    try:
        while on and len(taken) <= low:  # bounded: at most low + 1 descriptors
            taken.append(os.open(os.devnull, os.O_RDONLY))
            if taken[-1] >= low - 1:
                break
        yield
    finally:
        for fd in taken:
            os.close(fd)


@pytest.mark.parametrize("high_fd", [False, True])
@pytest.mark.parametrize("stop_at", [10_000, -13])  # mid-message (a stalled switch), after the replies
def test_a_slot_is_given_back_when_the_socket_has_nothing_more_to_read(stop_at, high_fd, monkeypatch):
    """A real socket: a connection waiting for its switch does not hold its slot, whether the read-back is over or
    the switch stopped in the middle of a reply (slow, or on purpose): the others would wait for nothing. Also when
    its descriptor is above select()'s 1024 (it held the slot until the socket's timeout, 5 s, each time)."""
    with descriptors_from(1024, high_fd):
        given_back_before_a_read_that_waits(stop_at, high_fd, monkeypatch)


def numbered_from(sock, low: int):
    """``sock`` as a green socket whose descriptor is ``low`` or more (the lowest free one), the old one closed."""
    from eventlet.green import socket

    fd = fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD, low)
    sock.close()
    return socket.socket(fileno=fd)


def loopback_connection() -> tuple:
    """Both ends of a TCP connection over loopback, green sockets: the switch's, the controller's."""
    from eventlet.green import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    switch = socket.create_connection(listener.getsockname())
    controller, _ = listener.accept()
    listener.close()
    return switch, controller


def receive_loop(sock, gate: StreamGate, monkeypatch) -> tuple:
    """Ryu's receive loop on ``sock`` with ``gate``, in a green thread: what it dispatched to, the thread."""
    brick = Dispatched([0])
    monkeypatch.setattr(ryu_compat.app_manager, "lookup_service_brick", lambda name: brick)
    dp = ryu_compat.open_datapath(sock, ("192.0.2.1", 6653), gate=gate)
    dp.set_state(ryu_compat.MAIN_DISPATCHER)
    return brick, spawned(dp._recv_loop)


def given_back_before_a_read_that_waits(stop_at, high_fd, monkeypatch):
    data, _ = read_back_stream(4)
    switch, controller = loopback_connection()
    if high_fd and controller.fileno() < 1024:  # a descriptor freed after the fill (an earlier test's, closed late)
        controller = numbered_from(controller, 1024)
    assert controller.fileno() >= 1024 or not high_fd
    gate = StreamGate(1)
    brick, loop = receive_loop(controller, gate, monkeypatch)
    sent = spawned(switch.sendall, data[:stop_at])
    wait_for(lambda: sent.dead and gate.most == 1 and gate.held == 0, sent, loop)
    assert gate.held == 0 and gate.most == 1 and not loop.dead
    switch.sendall(data[stop_at:])
    switch.close()
    joined(loop)
    assert brick.echo_round and gate.held == 0


@pytest.mark.parametrize("end", ["killed", "closed"])
def test_a_receive_loop_stopped_while_it_holds_a_slot_gives_it_back(end, monkeypatch):
    """Ryu's loop also ends outside a read: its thread killed at a pause (GreenletExit), or its datapath set DEAD by
    another thread (Ryu's echo timeout, ``Datapath.close``) so that the loop stops before reading again. Ryu closes
    the socket as the loop ends (``_deactivate``), and the slot goes with it."""
    brick = Dispatched([0])
    monkeypatch.setattr(ryu_compat.app_manager, "lookup_service_brick", lambda name: brick)
    data, _ = read_back_stream(4)
    paused = []
    gate = StreamGate(1)

    def pause():
        paused.append(gate.held)
        if end == "closed":
            dp.close()
        else:
            hub.sleep(60)  # killed meanwhile

    dp = ryu_compat.open_datapath(HeldStream(data), ("192.0.2.1", 6653), pause=pause, gate=gate,
                                  budget=None)  # (by the count: its first pause holds the slot; by the clock it may
    dp.set_state(ryu_compat.MAIN_DISPATCHER)  # come at the first message, before the slot is taken for it)
    loop = spawned(dp._recv_loop)
    wait_for(lambda: paused, loop)
    if end == "killed":
        hub.kill(loop)
    joined(loop)
    assert paused == [1] and gate.held == 0 and gate.waiting == 0
    gate.acquire()  # free, at once


def tls_client(raw, context) -> ssl.SSLObject:
    """A TLS client over ``raw`` whose records the test sends itself (MemoryBIO), so that it can stop in one."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing)
    for _ in range(20):  # bounded: a handshake is two or three round trips
        try:
            client.do_handshake()
            break
        except ssl.SSLWantReadError:
            raw.sendall(outgoing.read())
            incoming.write(raw.recv(65_536))
    raw.sendall(outgoing.read())
    client.outgoing = outgoing
    return client


def test_a_tls_switch_stalled_inside_a_record_does_not_hold_a_slot(tmp_path, monkeypatch):
    """Over TLS, bytes in the kernel's buffer may be only part of a record: a read of them waits for the rest (up to
    the socket's timeout, 5 s, each time). The connection gives its slot back before such a read too."""
    from eventlet.green import socket
    from eventlet.green import ssl as green_ssl

    from tests.harness.pki import Pki

    pki = Pki(tmp_path, "ca")
    own = pki.issue("canopy")
    server = green_ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(own.cert), str(own.key))
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.check_hostname, client_context.verify_mode = False, ssl.CERT_NONE
    raw, accepted = loopback_connection()
    wrapping = spawned(server.wrap_socket, accepted, server_side=True)
    switch = tls_client(raw, client_context)
    [controller] = joined(wrapping)
    data, _ = read_back_stream(4)
    switch.write(data)
    records = switch.outgoing.read()
    stop_at = 40_000  # in the third record (16 KB each)
    gate = StreamGate(1)
    brick, loop = receive_loop(controller, gate, monkeypatch)
    raw.sendall(records[:stop_at])
    wait_for(lambda: gate.most == 1 and gate.held == 0, loop)
    assert gate.held == 0 and gate.most == 1 and not loop.dead
    raw.sendall(records[stop_at:])
    raw.shutdown(socket.SHUT_WR)  # not close(): the server's session tickets, unread, would make it a reset
    joined(loop)
    raw.close()
    assert brick.echo_round and gate.held == 0
