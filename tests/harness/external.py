"""Traffic helpers shared by integration tests: TCP/UDP echo probes (tests/harness/echo.py run in a host's
namespace) and an external network: a Linux bridge in its own namespace that hypervisors' uplink ports join
(announced in OVSDB, docs/external.md) with an outside host on it."""

from __future__ import annotations

import sys
from pathlib import Path

ECHO = str(Path(__file__).resolve().parent / "echo.py")


def probe(host, proto: str, ip: str, port: int, src_port: int | None = None, payload: str = "hello") -> bool:
    """One echo exchange from ``host`` to ``ip``:``port`` (tcp or udp; from ``src_port`` with ``payload`` when
    given); True when the same payload came back."""
    extra = (str(src_port), payload) if src_port is not None else ()
    return host.exec(sys.executable, ECHO, "probe", proto, ip, str(port), *extra, timeout=10).returncode == 0


def tcp(host, ip: str, port: int) -> bool:
    return probe(host, "tcp", ip, port)


def serve_echo(lab, host, *ports: int, name: str | None = None):
    """TCP and UDP echo servers on ``ports`` inside ``host``'s namespace (stopped with the Lab)."""
    name = name or f"echo-{host.name}"
    return lab.spawn(name, [sys.executable, ECHO, "serve", *map(str, ports)], lab.workdir / f"{name}.log", ns=host.ns)


def external_segment(lab, name: str = "ext") -> str:
    """A namespace holding bridge br0: the external network's wire. Returns the namespace."""
    from tests.harness import netns

    segment = lab.add_namespace(name)
    netns.add_bridge(segment, "br0")
    return segment


def join_external(segment: str, hv, network: str, ip: str, port: str = "up0") -> None:
    """``hv``'s uplink to the external network named ``network`` in Canopy: port ``port`` on br-int, wired to the
    segment, announced in OVSDB with the hypervisor's address ``ip`` there."""
    from tests.harness import netns

    netns.add_veth(segment, f"x-{hv.name}", hv.ns, port)
    netns.enslave(segment, f"x-{hv.name}", "br0")
    hv.vsctl("add-port", "br-int", port, "--", "set", "Interface", port,
             f"external_ids:canopy-external-network={network}", f"external_ids:canopy-external-ip={ip}")


def outside_host(lab, segment: str, ip_prefix: str, mac: str, routes=(), name: str = "outside"):
    """A host on the external network (``ip_prefix`` like 203.0.113.1/24, ``mac``): typically the network's
    gateway. ``routes``: prefixes it sends out of its interface anyway (to show they are not answered)."""
    from tests.harness import netns
    from tests.harness.hosts import NetnsHost

    host = NetnsHost(name, lab.add_namespace(name))
    netns.add_veth(segment, f"x-{name}", host.ns, "eth0", mac_b=mac)
    netns.enslave(segment, f"x-{name}", "br0")
    netns.disable_tx_checksum(host.ns, "eth0")
    netns.add_address(host.ns, "eth0", ip_prefix)
    for prefix in routes:
        host.exec("ip", "route", "add", prefix, "dev", "eth0", check=True)
    return host
