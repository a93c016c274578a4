"""Raw frames a VM sends from a packet socket on its eth0 (QEMU's announcement, a DHCP discover), once or as a flood
(tests/integration/test_migration_activation.py, test_punt_meters.py)."""

from __future__ import annotations

import struct
import subprocess
import sys
import time

# sends one frame ``count`` times, in bursts of 20, for at most ``seconds``, pausing ``pause`` seconds after each
# burst (0: as fast as the socket takes them); stopped early by SIGTERM; prints "sending" first and the count last
SENDER = ("import signal, socket, sys, time\n"
          "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n"
          "s.bind(('eth0', 0))\n"
          "frame, count, seconds, pause = bytes.fromhex(sys.argv[1]), *map(float, sys.argv[2:5])\n"
          "n, end, stop = 0, time.monotonic() + seconds, []\n"
          "signal.signal(signal.SIGTERM, lambda *_: stop.append(1))\n"
          "print('sending', flush=True)\n"
          "while n < count and not stop and time.monotonic() < end:\n"
          "    for _ in range(int(min(20, count - n))):\n"
          "        s.send(frame)\n"
          "        n += 1\n"
          "    if pause:\n"
          "        time.sleep(pause)\n"
          "print(n, flush=True)\n")
FLOOD_PAUSE = 0.005  # a flood's pause after each burst of 20: about 4,000 frames a second, CPU left on two cores


def rarp(mac: str) -> bytes:
    """QEMU's announcement of a VM (RARP request reverse, its own MAC as sender and target), padded to 60 bytes."""
    own = bytes.fromhex(mac.replace(":", ""))
    body = bytes.fromhex("0001080006040003") + own + bytes(4) + own + bytes(4)
    return (b"\xff" * 6 + own + b"\x80\x35" + body).ljust(60, b"\0")


def dhcp_discover(mac: str) -> bytes:
    """A DHCP discover from ``mac`` (0.0.0.0:68 to 255.255.255.255:67, broadcast), as udhcpc sends it."""
    own = bytes.fromhex(mac.replace(":", ""))
    bootp = (bytes([1, 1, 6, 0]) + (0x3903F326).to_bytes(4, "big") + bytes(4) + bytes(16) + own + bytes(10)
             + bytes(192) + bytes.fromhex("63825363") + bytes([53, 1, 1, 255])).ljust(300, b"\0")
    udp = struct.pack("!HHHH", 68, 67, 8 + len(bootp), 0) + bootp
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, bytes(4), b"\xff" * 4)
    checksum = sum(struct.unpack("!10H", ip))
    checksum = (checksum & 0xFFFF) + (checksum >> 16)
    ip = ip[:10] + struct.pack("!H", ~checksum & 0xFFFF) + ip[12:]
    return b"\xff" * 6 + own + b"\x08\x00" + ip + udp


class Flood:
    """``vm`` sending ``frame`` over and over (``SENDER``: ``count`` times at most, for at most ``seconds``, pausing
    ``pause`` after each burst of 20), from its start until ``stop()``."""

    def __init__(self, vm, frame: bytes, seconds: float, count: int = 10**12, pause: float = FLOOD_PAUSE):
        self.proc = subprocess.Popen(["ip", "netns", "exec", vm.ns, sys.executable, "-c", SENDER, frame.hex(),
                                      str(count), str(seconds), str(pause)], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "sending"
        self.started = time.monotonic()

    def stop(self) -> tuple[int, float]:
        """(frames sent, seconds flooded)."""
        self.proc.terminate()
        return self.sent(), time.monotonic() - self.started

    def sent(self, timeout: float = 10) -> int:
        """The frames sent, once the sender ended (within ``timeout`` seconds)."""
        self.proc.wait(timeout)  # (its output is a line: no pipe fills meanwhile)
        out = self.proc.stdout.read()  # (not communicate: it reads past what the first readline buffered)
        assert self.proc.returncode == 0, f"the sender failed ({self.proc.returncode}): {out!r}"
        return int(out)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def send(vm, frame: bytes, count: int) -> None:
    """``vm`` sends ``frame`` ``count`` times, as fast as its packet socket takes them (a minute at most)."""
    sender = Flood(vm, frame, 60, count=count, pause=0)
    try:
        assert sender.sent(timeout=70) == count, f"{vm.name} sent fewer than {count} frames in a minute"
    finally:
        sender.kill()
