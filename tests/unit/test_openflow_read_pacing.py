"""A switch's OpenFlow connection gives the event loop a turn while Ryu parses a big read-back
(controller.ryu_compat.PacedSocket).

Ryu's receive loop (``Datapath._recv_loop``, run here as it is, on a stand-in socket holding the whole stream)
parses and dispatches every message the socket holds and yields only every 2,048 messages: a read-back of a switch
of 16,000 flows (about 2.5 MB of flow-stats replies, already in the socket's buffer) was one stretch of 30-100 ms of
CPU in vrs_scale's restart and takeover. The connection Canopy makes (``open_datapath``) pauses every
``READ_PAUSE_BYTES`` read: counted here (pauses, not time), with what Ryu parsed between two of them; and at its first
check (every ``READ_CHECK_BYTES``) past the budget of wall clock, counted with a clock of bytecodes at the loop's
share of a CPU on a loaded machine (tests/unit/test_paced_wiring.py ``Stretches``).
"""

import struct

import pytest

from controller import ryu_compat
from controller.ryu_compat import ofproto_protocol
from controller.pacer import BoundedPacer
from tests.unit.flow_samples import FLOWS
from tests.unit.test_flow_stats_read_back import flow_stats_reply
from tests.unit.test_paced_wiring import LOADED_BUDGET, Stretches

FLOWS_READ = 16_000
PER_MESSAGE = 200  # flows per multipart reply (a reply's length is 16 bits)


def read_back_stream(version: int, count: int = FLOWS_READ) -> tuple[bytes, int]:
    """Flow-stats replies of ``count`` flows (the samples again and again), and an echo request: bytes, messages."""
    dp = ofproto_protocol.ProtocolDesc(version)
    flows = (FLOWS * (count // len(FLOWS) + 1))[:count]
    messages = [flow_stats_reply(dp, flows[i:i + PER_MESSAGE]) for i in range(0, len(flows), PER_MESSAGE)]
    messages = [more_to_follow(dp, msg) for msg in messages[:-1]] + messages[-1:]  # as OVS marks them
    echo = dp.ofproto_parser.OFPEchoRequest(dp, data=b"probe")
    echo.serialize()
    return b"".join(messages) + bytes(echo.buf), len(messages) + 1


def more_to_follow(dp, message: bytes) -> bytes:
    """``message`` (a multipart reply) flagged as one of several: more messages of its reply follow."""
    at = dp.ofproto.OFP_HEADER_SIZE + 2  # the flags, after the header and the reply's type
    return message[:at] + struct.pack("!H", dp.ofproto.OFPMPF_REPLY_MORE) + message[at + 2:]


class HeldStream:
    """A socket whose whole stream is already in its buffer: every recv is answered at once, then the end."""

    def __init__(self, data: bytes):
        self.data, self.offset, self.closed = data, 0, False

    def recv(self, size: int) -> bytes:
        chunk = self.data[self.offset:self.offset + size]
        self.offset += len(chunk)
        return chunk

    def setsockopt(self, *args) -> None:
        pass

    def settimeout(self, timeout) -> None:
        pass

    def shutdown(self, how) -> None:  # (Ryu's Datapath.close: its write side first)
        pass

    def close(self) -> None:
        self.closed = True


class Observers:
    """Ryu's ofp_event brick as the receive loop uses it: counts the messages dispatched."""

    def __init__(self):
        self.messages = 0

    def send_event_to_observers(self, ev, state) -> None:
        self.messages += hasattr(ev, "msg")  # not the connection's state changes

    def get_handlers(self, ev):
        return []


def run_receive_loop(version: int, monkeypatch):
    data, messages = read_back_stream(version)
    observers, parsed_at_pause = Observers(), []
    stream = HeldStream(data)
    monkeypatch.setattr(ryu_compat.app_manager, "lookup_service_brick", lambda name: observers)
    dp = ryu_compat.open_datapath(stream, ("192.0.2.1", 6653), pause=lambda: parsed_at_pause.append(stream.offset),
                                  budget=None)  # by the count alone: the same places whatever the load
    dp.set_state(ryu_compat.MAIN_DISPATCHER)
    dp._recv_loop()
    return data, messages, observers, parsed_at_pause, stream


@pytest.mark.parametrize("version", [4, 5])  # OpenFlow 1.3, 1.4
def test_a_read_back_of_16000_flows_pauses_every_READ_PAUSE_BYTES(version, monkeypatch):
    data, messages, observers, pauses, stream = run_receive_loop(version, monkeypatch)
    assert observers.messages == messages  # every reply and the echo request parsed and dispatched
    assert stream.closed
    assert len(data) > 2_000_000
    most = ryu_compat.READ_PAUSE_BYTES + 65_536  # a read finishes a message (of at most 64 KB) past the count
    assert len(data) // most <= len(pauses) <= len(data) // ryu_compat.READ_PAUSE_BYTES  # Ryu alone: none
    steps = [b - a for a, b in zip([0] + pauses, pauses + [len(data)])]
    assert max(steps) <= most


def test_the_socket_stays_the_switchs_for_everything_else():
    stream = HeldStream(b"")
    paced = ryu_compat.PacedSocket(stream)
    paced.close()
    assert stream.closed and paced.recv(8) == b"" and paced.pacer.pauses == 0


PIECE_FLOWS = 5_000  # ~0.8 MB of flow stats: more than a piece of READ_PAUSE_BYTES


def longest_piece(monkeypatch, **budget) -> tuple[int, int, type]:
    """The most bytecodes Ryu's receive loop runs between two pauses of a connection ``open_datapath`` makes
    (``budget``: its own, by default), reading a read-back of PIECE_FLOWS flows held whole in its socket; the pauses,
    and the connection's pacer's type."""
    data, messages = read_back_stream(4, PIECE_FLOWS)
    observers, stretches, stream = Observers(), Stretches(), HeldStream(data)
    monkeypatch.setattr(ryu_compat.app_manager, "lookup_service_brick", lambda name: observers)
    dp = ryu_compat.open_datapath(stream, ("192.0.2.1", 6653), pause=stretches.pause, **budget)
    dp.set_state(ryu_compat.MAIN_DISPATCHER)
    stretches.bind(dp.socket.pacer)
    most = stretches.run(dp._recv_loop)
    assert observers.messages == messages and stream.closed
    return most, stretches.pauses, type(dp.socket.pacer)


def test_a_read_backs_pieces_end_within_the_budget_at_the_loops_share(monkeypatch):
    """By the count alone a piece is READ_PAUSE_BYTES of parsing (~8 ms of CPU here, stop 46; 343,938 bytecodes,
    over eight times the budget in wall clock at a quarter of a CPU); bounded (the controller's connections:
    ``open_datapath``'s default), the budget and at most a check's bytes and a message past it (the clock is read when
    a message's body is read, before it is parsed): 52,346."""
    before, before_pauses, _ = longest_piece(monkeypatch, budget=None)
    after, after_pauses, bounded = longest_piece(monkeypatch)
    assert bounded is BoundedPacer
    assert before > 3 * LOADED_BUDGET, before
    data, messages = read_back_stream(4, PIECE_FLOWS)
    past = before * (ryu_compat.READ_CHECK_BYTES + len(data) // messages) // ryu_compat.READ_PAUSE_BYTES  # parsing
    assert after < LOADED_BUDGET + past, (before, after, past)
    assert after_pauses > before_pauses, (before_pauses, after_pauses)
