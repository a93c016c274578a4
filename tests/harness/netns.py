"""Network namespaces, veth pairs and commands run inside them.

Nothing here touches the root namespace's network configuration: every ``ip`` command is scoped
with ``ip -n <ns>`` and veth pairs are created with both ends placed directly in namespaces. (The
IPv4 neighbour table's size, which every namespace shares, is tests.harness.neighbour_table's.)
"""

from __future__ import annotations

import ctypes
import fcntl
import re
import socket
import struct
import subprocess
import threading
from pathlib import Path
from typing import Callable, TypeVar

from tests.harness.process import netns_argv

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
SIOCETHTOOL = 0x8946
ETHTOOL_STXCSUM = 0x17  # set TX checksum offload; data 0 = off
IFNAMSIZ = 15
_IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")


class CommandError(RuntimeError):
    """A command exited non-zero; the message carries its argv, exit code and output."""


def run(argv: list[str], ns: str | None = None, timeout: float = 10, check: bool = True,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``argv`` (inside ``ns`` if given) to completion, text output captured."""
    full = netns_argv(ns, argv)
    try:
        done = subprocess.run(full, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise CommandError(f"{' '.join(full)}: timed out after {timeout}s") from exc
    if check and done.returncode != 0:
        raise CommandError(f"{' '.join(full)}: exit {done.returncode}\n{done.stdout}{done.stderr}")
    return done


def ip(ns: str, *args: str) -> str:
    """``ip -n <ns> <args>``, returning stdout."""
    return run(["ip", "-n", ns, *args]).stdout


def check_ifname(name: str) -> str:
    """Return ``name`` if it is a valid Linux interface name (at most 15 characters), else raise."""
    if len(name) > IFNAMSIZ or not _IFNAME.match(name):
        raise ValueError(f"invalid interface name {name!r} (at most {IFNAMSIZ} characters, "
                         "letters, digits, '-', '_', '.')")
    return name


def exists(ns: str) -> bool:
    return (NETNS_DIR / ns).exists()


def list_namespaces() -> list[str]:
    return sorted(p.name for p in NETNS_DIR.iterdir()) if NETNS_DIR.is_dir() else []


def create(ns: str) -> None:
    """Create namespace ``ns`` with its loopback up."""
    run(["ip", "netns", "add", ns])
    ip(ns, "link", "set", "lo", "up")


def delete(ns: str) -> None:
    """Delete namespace ``ns`` if it exists (its veths go with it once no process holds it)."""
    if exists(ns):
        run(["ip", "netns", "delete", ns])


def add_veth(ns_a: str, name_a: str, ns_b: str, name_b: str, mac_b: str | None = None) -> None:
    """Create a veth pair, end ``name_a`` in ``ns_a`` and ``name_b`` (MAC ``mac_b``) in ``ns_b``, up."""
    peer_mac = ["address", mac_b] if mac_b else []
    ip(ns_a, "link", "add", check_ifname(name_a), "type", "veth",
       "peer", "name", check_ifname(name_b), *peer_mac, "netns", ns_b)
    ip(ns_a, "link", "set", name_a, "up")
    ip(ns_b, "link", "set", name_b, "up")


def add_bridge(ns: str, name: str) -> None:
    """Create a plain Linux bridge (no STP, no VLAN filtering) in ``ns``, up."""
    ip(ns, "link", "add", check_ifname(name), "type", "bridge", "stp_state", "0")
    ip(ns, "link", "set", name, "up")


def enslave(ns: str, ifname: str, bridge: str) -> None:
    ip(ns, "link", "set", ifname, "master", bridge)


def add_address(ns: str, ifname: str, cidr: str) -> None:
    """Assign ``cidr`` to ``ifname`` in ``ns`` and bring the interface up."""
    ip(ns, "addr", "add", cidr, "dev", ifname)
    ip(ns, "link", "set", ifname, "up")


def call_in(ns: str, function: Callable[[], T], timeout: float = 10.0) -> T:
    """Return ``function()`` called from a short-lived thread that has joined namespace ``ns``.

    setns(2) changes the namespace of the calling thread only, so the rest of the process stays
    where it is; sockets keep the namespace they were created in.
    """
    outcome: dict[str, object] = {}

    def in_namespace() -> None:
        try:
            with open(NETNS_DIR / ns, "rb") as handle:
                if _libc.setns(handle.fileno(), CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns into {ns} failed")
            outcome["value"] = function()
        except BaseException as exc:  # handed back to the caller's thread
            outcome["error"] = exc

    worker = threading.Thread(target=in_namespace, name=f"in-{ns}", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise TimeoutError(f"{function!r} in {ns} did not finish within {timeout}s")
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def connect_tcp(ns: str, host: str, port: int, timeout: float = 5.0) -> socket.socket:
    """A TCP socket connected to ``host:port`` as seen from inside namespace ``ns``."""
    return call_in(ns, lambda: socket.create_connection((host, port), timeout=timeout), timeout + 1)


def disable_tx_checksum(ns: str, ifname: str) -> None:
    """``ethtool -K <ifname> tx off`` in ``ns``, done with the SIOCETHTOOL ioctl (no ethtool needed).

    A veth offloads checksums, so a packet the kernel sends on it carries a partial checksum; the
    userspace datapath reads it from a packet socket as it is and would forward it broken.
    """
    command = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_STXCSUM, 0))
    ifreq = struct.pack("16sP", ifname.encode(), ctypes.addressof(command)).ljust(40, b"\0")

    def ioctl() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifreq)

    call_in(ns, ioctl)


def sysctl(ns: str, key: str, value: str) -> None:
    """Set the network sysctl ``key`` (``net.ipv4.conf.ul0.arp_ignore``, say) to ``value`` in namespace ``ns`` only."""
    run(["sysctl", "-q", "-w", f"{key}={value}"], ns=ns)


def disable_ipv6(ns: str) -> None:
    """No IPv6 in namespace ``ns``: off on the interfaces it has (``all``) and on those made later (``default``)."""
    for scope in ("all", "default"):
        sysctl(ns, f"net.ipv6.conf.{scope}.disable_ipv6", "1")
