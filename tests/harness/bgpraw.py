"""A minimal BGP speaker that sends UPDATE messages byte for byte as given, for what no peer at hand
sends on demand (an EVPN next hop of 16 bytes). Standard library only.

``python -m tests.harness.bgpraw --listen IP --asn N --router-id IP UPDATE_HEX_FILE`` accepts one
session at a time on IP:179, sends its OPEN (l2vpn evpn, 4-byte AS), and once the session is up sends an
EVPN End-of-RIB and keepalives, and every UPDATE in the file (one hex string per line), reading it again
every second for new lines. It prints one line per event (``established``, ``sent update N``,
``received NOTIFICATION c/s``, ``closed``), flushed, so a test can read them from its log.
"""

from __future__ import annotations

import argparse
import ipaddress
import select
import socket
import struct
import sys
import time

MARKER = b"\xff" * 16
OPEN, UPDATE, NOTIFICATION, KEEPALIVE = 1, 2, 3, 4
EVPN_EOR = bytes.fromhex("0000" "0006" "800f03" "001946")  # MP_UNREACH_NLRI for l2vpn evpn, nothing in it


def message(kind: int, body: bytes = b"") -> bytes:
    return MARKER + struct.pack("!HB", 19 + len(body), kind) + body


def open_message(asn: int, router_id: str, hold_time: int = 90) -> bytes:
    multiprotocol = bytes([1, 4]) + struct.pack("!HBB", 25, 0, 70)  # l2vpn evpn
    four_byte_as = bytes([65, 4]) + struct.pack("!I", asn)
    params = b"".join(bytes([2, len(c)]) + c for c in (multiprotocol, four_byte_as))
    my_as = asn if asn < 65536 else 23456
    body = struct.pack("!BHH", 4, my_as, hold_time) + ipaddress.IPv4Address(router_id).packed
    return message(OPEN, body + bytes([len(params)]) + params)


def _path_attributes(update: bytes):
    """(flags, type code, value) of each path attribute of ``update`` (a whole UPDATE message)."""
    body = update[19:]
    withdrawn = struct.unpack("!H", body[:2])[0]
    length = struct.unpack("!H", body[2 + withdrawn:4 + withdrawn])[0]
    data = body[4 + withdrawn:4 + withdrawn + length]
    while data:
        flags, code = data[0], data[1]
        size, head = (struct.unpack("!H", data[2:4])[0], 4) if flags & 0x10 else (data[2], 3)
        yield flags, code, data[head:head + size]
        data = data[head + size:]


def _update(attributes) -> bytes:
    """An UPDATE (no IPv4 withdrawn routes nor NLRI) of ``attributes``: (flags, type code, value)."""
    out = b"".join(bytes([flags | 0x10, code]) + struct.pack("!H", len(value)) + value
                   for flags, code, value in attributes)
    return message(UPDATE, b"\0\0" + struct.pack("!H", len(out)) + out)


def with_next_hop(update: bytes, hop: bytes) -> bytes:
    """``update`` (a whole UPDATE message) with its MP_REACH_NLRI next hop replaced by ``hop``."""
    return _update((flags, code, value[:3] + bytes([len(hop)]) + hop + value[4 + value[3]:] if code == 14 else value)
                   for flags, code, value in _path_attributes(update))


def with_pmsi_tunnel(update: bytes, tunnel: bytes) -> bytes:
    """``update`` (a whole UPDATE message) with its PMSI tunnel attribute's tunnel identifier replaced by ``tunnel``
    (its flags, tunnel type and label kept)."""
    return _update((flags, code, value[:5] + tunnel if code == 22 else value)
                   for flags, code, value in _path_attributes(update))


def joined(withdraw: bytes, announce: bytes) -> bytes:
    """One UPDATE holding the MP_UNREACH_NLRI of ``withdraw`` and every attribute of ``announce``: what a peer sends
    to replace a route in one message (RFC 4760 allows both in one UPDATE)."""
    unreach = [attribute for attribute in _path_attributes(withdraw) if attribute[1] == 15]
    return _update(unreach + list(_path_attributes(announce)))


def _messages(buffer: bytearray):
    while len(buffer) >= 19:
        length, kind = struct.unpack("!HB", buffer[16:19])
        if len(buffer) < length:
            return
        body = bytes(buffer[19:length])
        del buffer[:length]
        yield kind, body


def _updates(path: str) -> list[bytes]:
    try:
        with open(path) as handle:
            return [bytes.fromhex(line) for line in handle.read().split()]
    except (OSError, ValueError):
        return []


def session(conn: socket.socket, args) -> None:
    conn.sendall(open_message(args.asn, args.router_id))
    buffer, opened, up, last, sent = bytearray(), False, False, 0.0, 0
    while True:
        ready, _, _ = select.select([conn], [], [], 1.0)
        if ready:
            data = conn.recv(65536)
            if not data:
                return
            buffer += data
        for kind, body in _messages(buffer):
            if kind == OPEN:
                opened = True
                conn.sendall(message(KEEPALIVE))
            elif kind == NOTIFICATION:
                print(f"received NOTIFICATION {body[0]}/{body[1]}", flush=True)
            elif kind == KEEPALIVE and opened and not up:
                up = True
                print("established", flush=True)
                conn.sendall(message(UPDATE, EVPN_EOR))
        if opened and time.monotonic() - last >= 1.0:
            conn.sendall(message(KEEPALIVE))
            last = time.monotonic()
            for update in _updates(args.updates)[sent:] if up else ():
                conn.sendall(update)
                sent += 1
                print(f"sent update {sent}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bgpraw")
    parser.add_argument("--listen", required=True)
    parser.add_argument("--asn", type=int, required=True)
    parser.add_argument("--router-id", required=True)
    parser.add_argument("updates", help="file of UPDATE messages in hex, one per line")
    args = parser.parse_args(argv)
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((args.listen, 179))
        listener.listen(1)
        while True:
            conn, peer = listener.accept()
            print(f"connection from {peer[0]}", flush=True)
            with conn:
                try:
                    session(conn, args)
                except OSError as error:
                    print(f"error {error}", flush=True)
            print("closed", flush=True)


if __name__ == "__main__":
    sys.exit(main())
