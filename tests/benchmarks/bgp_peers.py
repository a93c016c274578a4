"""The BGP speakers of the EVPN route benchmarks (tests/benchmarks/evpn_routes.py, bursts.py): a gobgpd in a lab
namespace driven with the gobgp CLI, holding routes back from chosen peers until released, and the feeder, this
process writing prepared UPDATE bytes on a BGP session of its own."""

from __future__ import annotations

import json
import re
import socket
import struct
import threading
import time

from tests.harness import netns


HOLD_DUMMY = "192.0.2.1"  # keeps A's neighbor-set non-empty (an empty set would match every peer)

HOLD_POLICY = """[global.apply-policy.config]
  export-policy-list = ["bench-export"]
  default-export-policy = "accept-route"
[[defined-sets.neighbor-sets]]
  neighbor-set-name = "held"
  neighbor-info-list = [{members}]
[[policy-definitions]]
  name = "bench-export"
  [[policy-definitions.statements]]
    name = "hold"
    [policy-definitions.statements.conditions.match-neighbor-set]
      neighbor-set = "held"
      match-set-options = "any"
    [policy-definitions.statements.actions]
      route-disposition = "reject-route"
  [[policy-definitions.statements]]
    name = "next-hop-unchanged"
    [policy-definitions.statements.actions]
      route-disposition = "accept-route"
    [policy-definitions.statements.actions.bgp-actions]
      set-next-hop = "unchanged"
"""
NEIGHBOR = """[[neighbors]]
  [neighbors.config]
    neighbor-address = "{address}"
    peer-as = {asn}
  [neighbors.transport.config]
    passive-mode = {passive}
    local-address = "{me}"
  [neighbors.timers.config]
    connect-retry = 1
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "l2vpn-evpn"
"""


class GoBGP:
    """A gobgpd in a lab namespace, driven with the gobgp CLI (gRPC on 127.0.0.1 inside it). ``neighbors``:
    (address, asn, passive); ``held``: the peers it holds routes back from (with the export policy above)."""

    def __init__(self, lab, host, asn: int, neighbors, held=()):
        self.host = host
        text = f'[global.config]\n  as = {asn}\n  router-id = "{host.ip}"\n  local-address-list = ["{host.ip}"]\n'
        if held:
            text += HOLD_POLICY.format(members=", ".join(f'"{ip}"' for ip in (HOLD_DUMMY, *held)))
        for address, peer_asn, passive in neighbors:
            text += NEIGHBOR.format(address=address, asn=peer_asn, passive=str(passive).lower(), me=host.ip)
        conf = lab.workdir / f"gobgpd-{host.name}.toml"
        conf.write_text(text)
        self.child = lab.spawn(f"gobgpd-{host.name}", ["gobgpd", "-f", str(conf), "--api-hosts", "127.0.0.1:50051"],
                               lab.workdir / f"gobgpd-{host.name}.log", ns=host.ns)

    def run(self, *args: str, timeout: float = 30):
        return self.host.exec("gobgp", "-u", "127.0.0.1", "-p", "50051", *args, timeout=timeout)

    def cli(self, *args: str, timeout: float = 30) -> str:
        done = self.run(*args, timeout=timeout)
        if done.returncode != 0:
            raise SystemExit(f"gobgp {' '.join(args)} on {self.host.name}: {done.stderr.strip()}")
        return done.stdout

    def count(self) -> int:
        """EVPN destinations in the global RIB (``gobgp global rib -a evpn summary``), -1 without an answer."""
        done = self.run("global", "rib", "-a", "evpn", "summary")
        found = re.search(r"Destination: (\d+)", done.stdout)
        return int(found.group(1)) if done.returncode == 0 and found else -1

    def established(self, address: str) -> bool:
        done = self.run("neighbor", address, "-j")
        return done.returncode == 0 and json.loads(done.stdout).get("state", {}).get("session_state") == 6

    def hold(self, address: str) -> None:
        """Hold routes back from ``address`` again: what A takes in from now on is not sent to it (what it was sent
        before stays there)."""
        self.cli("policy", "neighbor", "add", "held", address)

    def release(self, address: str) -> None:
        """Stop holding routes back from ``address`` and send it everything (soft reset out)."""
        self.cli("policy", "neighbor", "del", "held", address)
        self.cli("neighbor", address, "softresetout", "-a", "evpn")

    def macs(self) -> set[str]:
        table = json.loads(self.cli("global", "rib", "-a", "evpn", "-j", timeout=120) or "{}")
        return {p["nlri"]["value"]["mac"] for paths in table.values() for p in paths if p["nlri"]["type"] == 2}


class Feeder:
    """A minimal BGP speaker (this process; its socket made in namespace ``host``) writing prepared UPDATE
    bytes to one peer. It reads (and drops) what the peer sends and keeps the session alive."""

    HOLD = 90

    def __init__(self, host, peer_ip: str, asn: int):
        self.sock = netns.call_in(host.ns, lambda: socket.create_connection((peer_ip, 179), timeout=5,
                                                                           source_address=(host.ip, 0)))
        self.sock.settimeout(None)
        self._lock = threading.Lock()
        self.open_seen = threading.Event()
        self.closed: str | None = None
        caps = bytes([1, 4, 0, 25, 0, 70, 65, 4]) + struct.pack("!I", asn)  # L2VPN EVPN; 4-octet AS
        params = bytes([2, len(caps)]) + caps
        self.send(self._message(1, struct.pack("!BHH4sB", 4, asn, self.HOLD, socket.inet_aton(host.ip), len(params))
                                + params))
        self.send(self._message(4, b""))
        threading.Thread(target=self._read, name="feeder-read", daemon=True).start()
        threading.Thread(target=self._keepalive, name="feeder-keepalive", daemon=True).start()

    @staticmethod
    def _message(kind: int, body: bytes) -> bytes:
        return b"\xff" * 16 + struct.pack("!HB", 19 + len(body), kind) + body

    def send(self, data: bytes) -> None:
        with self._lock:
            self.sock.sendall(data)

    def _keepalive(self) -> None:
        while self.closed is None:
            time.sleep(self.HOLD / 3)
            try:
                self.send(self._message(4, b""))
            except OSError:
                return

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except OSError as error:
                self.closed = self.closed or str(error)
                return
            if not data:
                self.closed = self.closed or "closed by the peer"
                return
            buf += data
            while len(buf) >= 19 and len(buf) >= struct.unpack("!H", buf[16:18])[0]:
                size, kind = struct.unpack("!H", buf[16:18])[0], buf[18]
                if kind == 1:
                    self.open_seen.set()
                elif kind == 3:
                    self.closed = f"NOTIFICATION {buf[19:size].hex()}"
                buf = buf[size:]

    def close(self) -> None:
        self.closed = self.closed or "closed"
        self.sock.close()
