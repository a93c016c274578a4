"""The witnesses of an HA takeover (tests/benchmarks/ha_takeover.py, vrs_scale.py): OVS's Controller table of each
hypervisor, followed with ``ovsdb-client monitor`` (each update stamped by ovsdb-client), and the OpenFlow role
messages on the wire, read from a tcpdump capture (kernel timestamps)."""

from __future__ import annotations

import csv
import json
import re
import socket
import struct
from datetime import datetime, timezone
from pathlib import Path

from tests.harness import process


OF_PORT = 6653
OFPT_ROLE_REQUEST, OFPT_ROLE_REPLY, OFPCR_ROLE_MASTER = 24, 25, 2
_MONITOR_TIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}$")


# ---------------------------------------------------------------------------------------------- OVS's Controller table

class ControllerTable:
    """br-int's Controller rows of one hypervisor as ``ovsdb-client monitor --format=csv --timestamp`` reports them
    (started once, writing to a file): ``events`` is [(wall time, {target: (is_connected, role)})], one per row
    change, stamped with ovsdb-client's receive time (ms)."""

    def __init__(self, lab, hv, path: Path):
        self.hv, self.path = hv, path
        self.child = lab.spawn(f"{hv.name}/monitor", [
            "ovsdb-client", "monitor", f"unix:{hv.ovs.db_socket}", "Open_vSwitch", "Controller",
            "target,is_connected,role", "--format=csv", "--timestamp"], path)
        self.events: list[tuple[float, dict]] = []
        self._rows: dict[str, dict] = {}
        self._offset, self._tail = 0, ""
        self._stamp: float | None = None
        self._columns: list[str] | None = None
        self._old_uuid = ""

    def poll(self) -> dict:
        """Read what the monitor wrote since the last call; the current state."""
        with open(self.path, "rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        self._offset += len(data)
        lines = (self._tail + data.decode(errors="replace")).split("\n")
        self._tail = lines.pop()
        for line in lines:
            self._line(line)
        return self.state()

    def state(self) -> dict:
        return {row["target"]: (row["is_connected"], row["role"]) for row in self._rows.values()}

    def _line(self, line: str) -> None:
        if _MONITOR_TIME.match(line):
            self._stamp = datetime.strptime(line, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=timezone.utc).timestamp()
            return
        if line.startswith("row,action,"):
            self._columns = line.split(",")[2:]
            return
        if not line.strip() or self._stamp is None or self._columns is None:
            return
        fields = next(csv.reader([line]))
        if len(fields) != 2 + len(self._columns):
            return  # not a row (ovsdb-client's own messages go to the same file)
        uuid, action = fields[0], fields[1]
        if action == "old":
            self._old_uuid = uuid
            return
        if action == "delete":
            self._rows.pop(uuid, None)
        elif action in ("initial", "insert", "new"):
            values = {c: _ovsdb_value(v) for c, v in zip(self._columns, fields[2:])}
            self._rows[self._old_uuid if action == "new" else uuid] = {
                "target": values.get("target"), "is_connected": values.get("is_connected") is True,
                "role": values.get("role") or None}
        self.events.append((self._stamp, self.state()))

    def first(self, condition, after: float) -> float | None:
        """Wall time of the first state at or after ``after`` for which ``condition(state)`` holds."""
        before = [state for stamp, state in self.events if stamp < after]
        if before and condition(before[-1]):
            return after
        return next((stamp for stamp, state in self.events if stamp >= after and condition(state)), None)


def _ovsdb_value(text: str):
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return None if value == [] else value


def connected_as(target: str, role: str):
    return lambda state: state.get(target, (False, None)) == (True, role)


def disconnected(target: str):
    return lambda state: not state.get(target, (False, None))[0]


def taken_over(survivor, killed):
    """The survivor's target connected as master and the killed one's disconnected."""
    master, gone = connected_as(survivor.target, "master"), disconnected(killed.target)
    return lambda state: master(state) and gone(state)


# ---------------------------------------------------------------------------------------------- OpenFlow on the wire

class RoleCapture:
    """tcpdump of OpenFlow on one controller host's mgmt0 for one run; afterwards, per switch (by its management IP),
    when the first ROLE_REQUEST(master) left and the first ROLE_REPLY(master) arrived (kernel timestamps)."""

    def __init__(self, lab, host, path: Path):
        self.path, self.log = path, path.with_suffix(".log")
        self.child = lab.spawn(f"tcpdump-{host.name}", [
            "tcpdump", "-i", "mgmt0", "-n", "-U", "-Z", "root", "-B", "8192", "-s", "0", "-w", str(path),
            "tcp", "port", str(OF_PORT)], self.log, ns=host.ns)
        lab.wait_until(lambda: "listening on" in self._log_text() or not self.child.alive(), timeout=15,
                       interval=0.02, what="tcpdump to listen")
        if not self.child.alive():
            raise RuntimeError(f"tcpdump exited: {self._log_text()[-500:]}")

    def _log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> int | None:
        """Stop tcpdump (SIGTERM: it flushes); the packets it says the kernel dropped."""
        process.stop([self.child], 5.0)
        found = re.findall(r"(\d+) packets? dropped by kernel", self._log_text())
        return int(found[-1]) if found else None

    def roles(self, after: float) -> dict[str, dict[str, float]]:
        """{switch IP: {"request": wall time, "reply": wall time}} of master role messages at or after ``after``."""
        streams: dict[tuple, _OfStream] = {}
        out: dict[str, dict[str, float]] = {}
        for stamp, flow, seq, payload in _tcp_segments(_pcap_frames(self.path)):
            stream = streams.setdefault(flow, _OfStream())
            for msg in stream.feed(seq, payload):
                if stamp < after or msg[1] not in (OFPT_ROLE_REQUEST, OFPT_ROLE_REPLY) or len(msg) < 12:
                    continue
                if struct.unpack("!I", msg[8:12])[0] != OFPCR_ROLE_MASTER:
                    continue
                src, sport, dst, _ = flow
                switch, kind = (src, "reply") if msg[1] == OFPT_ROLE_REPLY else (dst, "request")
                if sport == OF_PORT and kind == "reply" or sport != OF_PORT and kind == "request":
                    continue  # not the direction this message goes in
                out.setdefault(switch, {}).setdefault(kind, stamp)
        return out


def _pcap_frames(path: Path):
    data = path.read_bytes() if path.exists() else b""
    if len(data) < 24:
        return
    formats = {b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
               b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9)}
    endian, scale = formats[data[:4]]
    offset = 24
    while offset + 16 <= len(data):
        sec, frac, length, _ = struct.unpack(endian + "IIII", data[offset:offset + 16])
        offset += 16
        if offset + length > len(data):
            return
        yield sec + frac * scale, data[offset:offset + length]
        offset += length


def _tcp_segments(frames):
    """(time, (src, sport, dst, dport), seq, payload) of every IPv4 TCP segment in Ethernet frames."""
    for stamp, frame in frames:
        if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[23] != 6:
            continue
        ip = frame[14:]
        header, total = (ip[0] & 0x0F) * 4, struct.unpack("!H", ip[2:4])[0]
        tcp = ip[header:total]
        if len(tcp) < 20:
            continue
        sport, dport, seq = struct.unpack("!HHI", tcp[:8])
        flow = (socket.inet_ntoa(ip[12:16]), sport, socket.inet_ntoa(ip[16:20]), dport)
        yield stamp, flow, seq, tcp[(tcp[12] >> 4) * 4:]


class _OfStream:
    """One direction of an OpenFlow connection rebuilt from captured segments into whole messages. The capture
    starts mid-stream: it locks on at the first segment that starts with a plausible OpenFlow header, and again
    after a gap (a segment the capture missed)."""

    def __init__(self):
        self.next_seq: int | None = None
        self.buffer = b""

    def feed(self, seq: int, payload: bytes) -> list[bytes]:
        if not payload:
            return []
        end = (seq + len(payload)) & 0xFFFFFFFF
        if self.next_seq is not None:
            ahead = (seq - self.next_seq) & 0xFFFFFFFF
            if ahead >= 0x80000000:  # starts before what we have: a retransmission, keep only what is new
                overlap = (self.next_seq - seq) & 0xFFFFFFFF
                if overlap >= len(payload):
                    return []
                payload = payload[overlap:]
            elif ahead:  # a gap: lose the partial message, lock on again
                self.next_seq, self.buffer = None, b""
        if self.next_seq is None:
            if not _plausible(payload):
                return []
            self.buffer = b""
        self.next_seq = end
        self.buffer += payload
        messages = []
        while len(self.buffer) >= 8:
            length = struct.unpack("!H", self.buffer[2:4])[0]
            if not _plausible(self.buffer):
                self.next_seq, self.buffer = None, b""
                break
            if len(self.buffer) < length:
                break
            messages.append(self.buffer[:length])
            self.buffer = self.buffer[length:]
        return messages


def _plausible(data: bytes) -> bool:
    return len(data) >= 8 and 1 <= data[0] <= 6 and data[1] < 40 and struct.unpack("!H", data[2:4])[0] >= 8
