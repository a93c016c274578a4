"""A real FRR bgpd (Debian's frr package) for integration tests: an EVPN route reflector in a lab namespace.

bgpd runs without zebra (``-Z``), as root without dropping privileges (``-S``), listening on the host's
management address, with its vty socket and log in the lab's workdir; ``vtysh`` reaches it there. It is
started through the lab (so it is stopped by PID at teardown), and can be killed and started again with
the same configuration (a restart).
"""

from __future__ import annotations

import json
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

from tests.harness.hosts import ControllerHost
from tests.harness.process import Child, log_tail

BGPD = "/usr/lib/frr/bgpd"
AVAILABLE = Path(BGPD).exists() and bool(shutil.which("vtysh"))
CLI_TIMEOUT = 15


def route_reflector_config(router_id: str, asn: int, clients: list[str], log_path: Path,
                           restart_time: int = 120) -> str:
    """bgpd.conf: an iBGP EVPN route reflector for ``clients`` with graceful restart (RFC 4724). It keeps
    its forwarding state bit set (``preserve-fw-state``): a reflector is not in the data path, so the
    clients may keep its routes across its restart."""
    lines = [f"log file {log_path} informational", "frr defaults traditional", "!",
             f"router bgp {asn}", f" bgp router-id {router_id}", f" bgp cluster-id {router_id}",
             " no bgp default ipv4-unicast", " no bgp ebgp-requires-policy", " bgp graceful-restart",
             " bgp graceful-restart preserve-fw-state", f" bgp graceful-restart restart-time {restart_time}",
             " timers bgp 3 9"]
    for client in clients:
        lines += [f" neighbor {client} remote-as {asn}", f" neighbor {client} timers connect 1"]
    lines += [" address-family l2vpn evpn"]
    for client in clients:
        lines += [f"  neighbor {client} activate", f"  neighbor {client} route-reflector-client"]
    lines += [" exit-address-family", "!"]
    return "\n".join(lines) + "\n"


@dataclass
class Bgpd:
    """One FRR bgpd in ``host``'s namespace; ``spawn`` is the lab's (records the PID)."""

    host: ControllerHost
    workdir: Path
    config: str
    spawn: object
    child: Child | None = None

    @property
    def vty_dir(self) -> Path:
        return self.workdir / "vty"

    def start(self) -> None:
        self.vty_dir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "bgpd.conf"
        conf.write_text(self.config)
        argv = [BGPD, "-Z", "-S", "-p", "179", "-l", self.host.ip, "--vty_socket", str(self.vty_dir),
                "-i", str(self.workdir / "bgpd.pid"), "-f", str(conf)]
        self.child = self.spawn(f"bgpd-{self.host.name}", argv, self.workdir / "bgpd.out", self.host.ns)

    def kill(self) -> None:
        """SIGKILL (a crash: no NOTIFICATION, the TCP sessions just close), and reap."""
        self.child.send(signal.SIGKILL)
        self.child.popen.wait(timeout=5)

    def vtysh(self, command: str) -> str:
        if not self.child.alive():
            raise AssertionError(f"bgpd on {self.host.name} exited:\n{log_tail(self.child.log_path)}")
        done = self.host.exec("vtysh", "--vty_socket", str(self.vty_dir), "-c", command, timeout=CLI_TIMEOUT)
        return done.stdout

    def json(self, command: str) -> dict:
        try:
            return json.loads(self.vtysh(command) or "{}")
        except ValueError:
            return {}

    def established(self, neighbor: str) -> bool:
        peers = self.json("show bgp l2vpn evpn summary json").get("peers", {})
        return peers.get(neighbor, {}).get("state") == "Established"

    def evpn_paths(self, kind: str = "macip") -> list[dict]:
        """The paths of the routes of type ``kind`` (macip, multicast, prefix) in bgpd's EVPN table."""
        table = self.json(f"show bgp l2vpn evpn route type {kind} json")
        found = []
        for rd, entries in table.items():
            for prefix, paths in (entries.items() if isinstance(entries, dict) else ()):
                for path in paths.get("paths", []) if isinstance(paths, dict) else []:
                    found += [hop for hop in (path if isinstance(path, list) else [path]) if isinstance(hop, dict)]
        return found

    def evpn_macs(self, source: str | None = None) -> set[str]:
        """MACs of the type 2 routes in bgpd's EVPN table (``source``: of those it holds from that neighbor)."""
        return {path["mac"].lower() for path in self.evpn_paths()
                if path.get("mac") and source in (None, path.get("peerId"))}

    def evpn_sources(self) -> set[str]:
        """The neighbors bgpd holds type 2 routes from."""
        return {path["peerId"] for path in self.evpn_paths() if path.get("peerId")}


def start_route_reflector(lab, host: ControllerHost, asn: int, clients: list[str], restart_time: int = 120) -> Bgpd:
    """bgpd as route reflector on ``host`` for ``clients`` (which dial it on port 179)."""
    workdir = lab.workdir / f"frr-{host.name}"
    workdir.mkdir(parents=True, exist_ok=True)
    config = route_reflector_config(host.ip, asn, clients, workdir / "bgpd.log", restart_time)
    bgpd = Bgpd(host, workdir, config, lab.spawn)
    bgpd.start()
    return bgpd
