"""A UTF-8 character split between two reads of an OVSDB connection (ovsdb/idl/links.py ``_ReadBudget``,
ovsdb/jsonstream.py ``whole_characters``): ``ovs.jsonrpc.Connection.recv`` decodes with a decoder of its own per
call, so a read that ends inside a character, followed by EAGAIN (the read budget spent, or the rest not arrived
yet), used to lose its first bytes and drop the connection (EILSEQ) at the next call; the same message after the
reconnect split at the same place again. Real sockets (a socket pair) and ovs's own stream and connection."""

from __future__ import annotations

import errno
import socket

import ovs.jsonrpc
import ovs.stream
import pytest

from ovsdb.idl import READ_BUDGET, BoundedConnection
from ovsdb.jsonstream import whole_characters

TEXT = "aé€😀z"  # characters of 1, 2, 3, 4 and 1 bytes


def test_whole_characters_at_every_cut():
    data = TEXT.encode()
    for cut in range(len(data) + 1):
        head = data[:cut]
        whole = whole_characters(head)
        assert head[:whole].decode() == data[:whole].decode()  # whole characters only
        assert cut - whole < 4 and (whole == cut or head[whole] >= 0xC0)  # only a character's start held back
        assert whole_characters(data) == len(data)


def test_malformed_bytes_are_passed_on_for_the_decoder_to_refuse():
    assert whole_characters(b"ab\x80\x80\x80\x80") == 6 and whole_characters(b"\xff") == 1
    assert whole_characters(b"") == 0


@pytest.mark.parametrize("character, offset", [(c, n) for c in ("é", "€", "😀") for n in range(1, len(c.encode()))])
def test_a_character_across_the_read_budget_arrives_whole(character, offset):
    """The read budget ends ``offset`` bytes into ``character``."""
    encoded = character.encode()
    ours, theirs = socket.socketpair()
    try:
        ours.setblocking(False)
        prefix = '{"id":1,"result":["'
        text = prefix + "x" * (READ_BUDGET - offset - len(prefix)) + character + "y" * 100 + '"],"error":null}'
        assert text.encode()[READ_BUDGET - offset:READ_BUDGET - offset + len(encoded)] == encoded
        theirs.sendall(text.encode())
        rpc = BoundedConnection(ovs.stream.Stream(ours, "unix:test", 0), 1 << 20)
        for _ in range(10):  # one call per read budget: a few suffice
            status, msg = rpc.recv()
            if status != errno.EAGAIN:
                break
        assert status == 0 and msg.type == ovs.jsonrpc.Message.T_REPLY
        assert msg.result == ["x" * (READ_BUDGET - offset - len(prefix)) + character + "y" * 100]
    finally:
        ours.close()
        theirs.close()


def test_a_long_message_is_read_a_budget_at_a_time_not_in_4_kib_reads():
    """``ovs.jsonrpc.Connection.recv`` asks its stream for 4 KiB at a time: a 1.58 MB update (10,000 ports deleted)
    was 386 reads, each through the stream, the green socket and the framing. Each read takes what is left of the
    read budget, so a message of 16 budgets arrives in about 16 reads (and the session still yields between them)."""
    ours, theirs = socket.socketpair()
    try:
        ours.setblocking(False)
        items = READ_BUDGET // 3
        text = '{"id":1,"result":[' + ",".join(['"%s"' % ("é" * 28)] * items) + '],"error":null}'
        data = text.encode()
        assert len(data) > 15 * READ_BUDGET
        stream = ovs.stream.Stream(ours, "unix:test", 0)
        reads = []
        real = stream.recv
        stream.recv = lambda n: reads.append(n) or real(n)
        rpc = BoundedConnection(stream, 1 << 22)
        sent, turns = 0, 0
        while turns < 1000:  # bounded: one call per read budget, the peer writing what its socket takes meanwhile
            turns += 1
            if sent < len(data):
                try:
                    sent += theirs.send(data[sent:sent + READ_BUDGET])
                except BlockingIOError:
                    pass
            status, msg = rpc.recv()
            if status != errno.EAGAIN:
                break
        assert status == 0 and msg.result == ["é" * 28] * items
        assert len([n for n in reads if n > 0]) <= 2 * len(data) // READ_BUDGET + 2  # 4 KiB reads: 16 per budget
    finally:
        ours.close()
        theirs.close()
