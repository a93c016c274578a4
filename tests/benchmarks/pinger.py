"""ICMP echo from a raw socket inside a lab namespace, until the first reply (tests/benchmarks/port_to_ping.py): the
time from plugging a port to the first packet answered through it."""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time

from tests.harness import netns


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int) -> bytes:
    payload = b"canopy-port-to-ping".ljust(32, b".")
    head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    return struct.pack("!BBHHH", 8, 0, _checksum(head + payload), ident, seq) + payload


class Pinger(threading.Thread):
    """Echo requests to ``dst`` every ``interval`` s from a raw socket made inside namespace ``ns``;
    stops at the first matching echo reply (``reply_at``, time.monotonic()) or at ``deadline``."""

    def __init__(self, ns: str, dst: str, interval: float, timeout: float):
        super().__init__(name=f"pinger-{ns}", daemon=True)
        self.sock = netns.call_in(ns, lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW,
                                                            socket.IPPROTO_ICMP))
        self.sock.setblocking(False)
        self.dst = dst
        self.interval = interval
        self.deadline = time.monotonic() + timeout
        self.icmp_id = (os.getpid() ^ threading.get_ident()) & 0xFFFF
        self.sent: dict[int, float] = {}
        self.reply_at: float | None = None
        self.reply_seq: int | None = None
        self.send_errors = 0
        self._halt = threading.Event()

    def run(self) -> None:
        seq, next_send = 0, time.monotonic()
        try:
            while not self._halt.is_set() and time.monotonic() < self.deadline:
                now = time.monotonic()
                if now >= next_send:
                    seq = (seq + 1) & 0xFFFF
                    self.sent[seq] = now
                    try:
                        self.sock.sendto(echo_request(self.icmp_id, seq), (self.dst, 0))
                    except OSError:
                        self.send_errors += 1
                    next_send += self.interval
                ready, _, _ = select.select([self.sock], [], [], max(0.0, next_send - time.monotonic()))
                if ready and self._reply(self.sock.recv(2048)):
                    return
        finally:
            self.sock.close()

    def _reply(self, packet: bytes) -> bool:
        header = (packet[0] & 0x0F) * 4
        if len(packet) < header + 8 or socket.inet_ntoa(packet[12:16]) != self.dst:
            return False
        kind, _, _, ident, seq = struct.unpack("!BBHHH", packet[header:header + 8])
        if kind != 0 or ident != self.icmp_id:
            return False
        self.reply_at, self.reply_seq = time.monotonic(), seq
        return True

    def halt(self) -> None:
        self._halt.set()
