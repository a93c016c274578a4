"""A real gobgpd for integration tests: started on a loopback address, driven with the gobgp CLI.

``start_gobgpd`` writes a TOML configuration, starts gobgpd in its own process group (through
``tests.harness.process``, so it is stopped by PID), and returns a ``GoBGP`` handle whose
methods run ``gobgp -u <address> -p <grpc port> ...`` with bounded timeouts.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.harness.process import Child, log_tail, spawn, stop
from tests.harness.wait import wait_until

AVAILABLE = bool(shutil.which("gobgpd") and shutil.which("gobgp"))
CLI_TIMEOUT = 10
STARTUP_TIMEOUT = 30
ESTABLISHED = 6  # gobgp's session_state for Established


def free_port(ip: str) -> int:
    """A TCP port free on ``ip`` right now (the kernel's pick)."""
    with socket.socket() as sock:
        sock.bind((ip, 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class GoBGPNeighbor:
    """A neighbor in gobgpd's configuration; ``passive``: gobgpd only accepts."""

    address: str
    asn: int
    passive: bool = True
    remote_port: int = 179
    md5_password: str | None = None
    graceful: bool = False  # graceful restart (RFC 4724), l2vpn-evpn: a restarting peer's routes kept till End-of-RIB


@dataclass
class GoBGP:
    """A running gobgpd: its BGP address, AS, ports and process."""

    address: str
    asn: int
    port: int
    grpc_port: int
    child: Child

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["gobgp", "-u", self.address, "-p", str(self.grpc_port), *args],
                              capture_output=True, text=True, timeout=CLI_TIMEOUT, check=check)

    def answers(self) -> bool:
        """gobgpd is running and its gRPC API answers."""
        if not self.child.alive():
            raise AssertionError(f"gobgpd exited:\n{log_tail(self.child.log_path)}")
        return self.cli("global", check=False).returncode == 0

    def rib(self) -> dict:
        """``gobgp global rib -a evpn -j`` ({} while gobgpd does not answer)."""
        out = self.cli("global", "rib", "-a", "evpn", "-j", check=False)
        return json.loads(out.stdout or "{}") if out.returncode == 0 else {}

    def rib_paths(self) -> list[dict]:
        return [path for paths in self.rib().values() for path in paths]

    def session_state(self, neighbor: str) -> int | None:
        out = self.cli("neighbor", neighbor, "-j", check=False)
        if out.returncode != 0:
            return None
        return json.loads(out.stdout).get("state", {}).get("session_state")

    def established(self, neighbor: str) -> bool:
        return self.session_state(neighbor) == ESTABLISHED

    def add_evpn(self, *args: str) -> None:
        """``gobgp global rib -a evpn add <args>`` (macadv ..., multicast ..., prefix ...)."""
        self.cli("global", "rib", "-a", "evpn", "add", *args)

    def del_evpn(self, *args: str) -> None:
        self.cli("global", "rib", "-a", "evpn", "del", *args)

    def log_count(self, message: str) -> int:
        """How many times gobgpd logged ``message`` (its log is JSON lines with a "msg" member)."""
        try:
            text = self.child.log_path.read_text(errors="replace")
        except OSError:
            return 0
        return text.count(f'"msg":"{message}"')

    def stop(self) -> None:
        stop([self.child])


GRACEFUL = "\n  [neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = 120"
GRACEFUL_AFI = "\n    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true"


def _toml(address: str, asn: int, port: int, neighbors: tuple[GoBGPNeighbor, ...]) -> str:
    text = f"""
[global.config]
  as = {asn}
  router-id = "{address}"
  port = {port}
  local-address-list = ["{address}"]
"""
    for n in neighbors:
        password = f'\n    auth-password = "{n.md5_password}"' if n.md5_password else ""
        text += f"""
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{n.address}"
    peer-as = {n.asn}{password}
  [neighbors.transport.config]
    passive-mode = {"true" if n.passive else "false"}
    local-address = "{address}"
    remote-port = {n.remote_port}
  [neighbors.timers.config]
    connect-retry = 1
    idle-hold-time-after-reset = 1{GRACEFUL if n.graceful else ""}
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "l2vpn-evpn"{GRACEFUL_AFI if n.graceful else ""}
"""
    return text


def start_gobgpd(workdir: Path, address: str, asn: int, neighbors: tuple[GoBGPNeighbor, ...]) -> GoBGP:
    """gobgpd on ``address`` (BGP on a free port, gRPC on another); stop it with ``.stop()``."""
    workdir.mkdir(parents=True, exist_ok=True)
    port, grpc_port = free_port(address), free_port(address)
    conf = workdir / "gobgpd.toml"
    conf.write_text(_toml(address, asn, port, neighbors))
    child = spawn("gobgpd", ["gobgpd", "-f", str(conf), "--api-hosts", f"{address}:{grpc_port}"],
                  workdir / "gobgpd.log")
    gobgp = GoBGP(address, asn, port, grpc_port, child)
    try:
        wait_until(lambda: gobgp.answers(), timeout=STARTUP_TIMEOUT, what=f"gobgpd on {address} to answer")
    except AssertionError:
        gobgp.stop()
        raise AssertionError(f"gobgpd did not start:\n{log_tail(child.log_path)}") from None
    return gobgp


def lab_router_config(router_ip: str, asn: int, peers: list[str], peer_asn: int, reflect: bool = False,
                      graceful: bool = False) -> str:
    """gobgpd.toml for a router in a lab namespace: passive EVPN sessions with each of ``peers``
    (controllers, which dial it); gobgpd listens on its default port in that namespace. ``reflect`` (iBGP):
    the peers are its route-reflector clients, so what one announces reaches the others unchanged. ``graceful``:
    graceful restart (RFC 4724) for l2vpn evpn, so a restarting peer's routes are kept until its End-of-RIB."""
    rr = ("\n  [neighbors.route-reflector.config]\n    route-reflector-client = true\n"
          f'    route-reflector-cluster-id = "{router_ip}"') if reflect else ""
    if graceful:
        rr += "\n  [neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = 120"
    gr_afi = "\n    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true" if graceful else ""
    neighbors = "".join(f"""
[[neighbors]]
  [neighbors.config]
    neighbor-address = "{peer}"
    peer-as = {peer_asn}
  [neighbors.transport.config]
    passive-mode = true{rr}
  [[neighbors.afi-safis]]
    [neighbors.afi-safis.config]
      afi-safi-name = "l2vpn-evpn"{gr_afi}
""" for peer in peers)
    return f"""[global.config]\n  as = {asn}\n  router-id = "{router_ip}"\n{neighbors}"""


def lab_gobgp_and_canopy(lab, gobgp_asn: int, canopy_asn: int, policy: dict):
    """A Lab with gobgpd on controller host "gobgp" peered with a Canopy on "ctl1" (the policy applied):
    (controller host, gobgp host, the Canopy controller process)."""
    ctl, peer = lab.add_controller_host("ctl1"), lab.add_controller_host("gobgp")
    conf = lab.workdir / "gobgpd.toml"
    conf.write_text(lab_router_config(peer.ip, gobgp_asn, [ctl.ip], canopy_asn))
    lab.spawn("gobgpd", ["gobgpd", "-f", str(conf), "--api-hosts", "127.0.0.1:50051"],
              lab.workdir / "gobgpd.log", ns=peer.ns)
    canopy = lab.start_controller(ctl, {"bgp": {"asn": canopy_asn, "router_id": ctl.ip, "neighbors": [
        {"address": peer.ip, "asn": gobgp_asn, "local_address": ctl.ip, "hold_time": 9}]}})
    reply = canopy.api.post("/v1/apply", {"document": policy, "source": "t"})
    assert reply.status == 200, reply.text
    return ctl, peer, canopy


def lab_gobgp_reflector(lab, asn: int, clients, graceful: bool = False) -> object:
    """gobgpd on a new controller host "gobgp" as the iBGP route reflector of ``clients`` (controller hosts, in
    AS ``asn`` too), with graceful restart if ``graceful``: returns its host."""
    peer = lab.add_controller_host("gobgp")
    conf = lab.workdir / "gobgpd.toml"
    conf.write_text(lab_router_config(peer.ip, asn, [c.ip for c in clients], asn, reflect=True, graceful=graceful))
    lab.spawn("gobgpd", ["gobgpd", "-f", str(conf), "--api-hosts", "127.0.0.1:50051"],
              lab.workdir / "gobgpd.log", ns=peer.ns)
    return peer
