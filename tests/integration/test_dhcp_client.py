"""Real DHCP clients accept what openflow/dhcp.py answers.

Two fresh network namespaces joined by a veth pair: in one, a small responder (an AF_PACKET socket in a
thread of this process) parses each frame with ``parse_request`` and answers with ``reply`` for the
leases it knows, a dict MAC -> Lease as the controller keeps; in the other, BusyBox ``udhcpc`` or ISC
``dhclient`` runs with a script of ours that records what it was told and applies it inside the
namespace. Nothing runs outside those namespaces and every wait is bounded.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import pytest

from openflow import dhcp
from tests.harness import netns
from tests.harness.process import netns_argv

pytestmark = pytest.mark.integration

CLIENT_MAC = "02:00:00:00:00:0b"
STRANGER_MAC = "02:00:00:00:00:99"
LEASE = dhcp.Lease(client_mac=CLIENT_MAC, ip="10.0.1.11", prefix_len=24, server_ip="10.0.1.1",
                   server_mac="02:ca:00:00:00:07", router="10.0.1.1", dns_servers=("10.0.1.53",),
                   domain_name="acme.example", lease_time=3600, mtu=1450,
                   routes=(("192.168.50.0/24", "10.0.1.254"),), ntp_servers=("10.0.1.123",))
ETH_P_ALL = 0x0003


class Responder:
    """Answers DHCP on ``ifname`` in ``ns`` from ``leases`` (MAC -> Lease) in a thread, for at most ``lifetime`` s."""

    def __init__(self, ns: str, ifname: str, leases: dict, lifetime: float = 60.0):
        self.leases = leases
        self.seen: list[dhcp.Request] = []
        self.sent: list[tuple[dhcp.Request, bytes]] = []
        self._deadline = time.monotonic() + lifetime
        self._stop = threading.Event()
        self._sock = netns.call_in(ns, lambda: self._open(ifname))
        self._thread = threading.Thread(target=self._serve, name=f"dhcp-responder-{ns}", daemon=True)

    @staticmethod
    def _open(ifname: str) -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        sock.bind((ifname, ETH_P_ALL))
        sock.settimeout(0.2)
        return sock

    def _serve(self) -> None:
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            try:
                data, address = self._sock.recvfrom(65535)
            except (socket.timeout, OSError):
                continue
            request = dhcp.parse_request(data) if address[2] != socket.PACKET_OUTGOING else None
            if request is None:
                continue
            self.seen.append(request)
            lease = self.leases.get(request.chaddr)
            answer = dhcp.reply(request, lease) if lease else None
            if answer:
                self._sock.send(answer)
                self.sent.append((request, answer))

    def sent_types(self) -> list[int]:
        return [answer[14 + 20 + 8 + 240 + 2] for _, answer in self.sent]  # option 53 comes first

    def log(self) -> str:
        return "seen: " + "; ".join(r.describe() for r in self.seen) + f" | sent types: {self.sent_types()}"

    def __enter__(self) -> "Responder":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


@pytest.fixture
def link():
    """(server namespace, its veth, client namespace); the client's end is ``eth0`` with CLIENT_MAC."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, veths, packet sockets)")
    prefix = "cnpd" + secrets.token_hex(2)
    server_ns, client_ns, server_if = f"{prefix}s", f"{prefix}c", f"{prefix}s0"
    try:
        netns.create(server_ns)
        netns.create(client_ns)
        netns.add_veth(server_ns, server_if, client_ns, "eth0", mac_b=CLIENT_MAC)
        yield server_ns, server_if, client_ns
    finally:
        netns.delete(client_ns)
        netns.delete(server_ns)


def _write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def _read_env(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines() if path.exists() else []
    return dict(line.split("=", 1) for line in lines if "=" in line)


def _interface(ns: str) -> tuple[str, str]:
    """(``ip -4 addr`` of eth0, ``ip -4 route``) inside ``ns``."""
    return netns.ip(ns, "-4", "-o", "addr", "show", "dev", "eth0"), netns.ip(ns, "-4", "route")


# ------------------------------------------------------------------------------------------------- udhcpc

UDHCPC_SCRIPT = """\
env | sort > "{out}/$1.env"
case "$1" in
  bound|renew)
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
    [ -n "$router" ] && ip route add default via "$router" dev "$interface"
    set -- $staticroutes
    while [ $# -ge 2 ]; do
      [ "$1" = 0.0.0.0/0 ] || ip route add "$1" via "$2" dev "$interface"
      shift 2
    done
    ;;
esac
exit 0
"""


def _udhcpc(client_ns: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    if not shutil.which("udhcpc"):
        pytest.skip("udhcpc (busybox) not installed")
    script = _write_script(tmp_path / "udhcpc.sh", UDHCPC_SCRIPT.format(out=tmp_path))
    argv = ["udhcpc", "-f", "-q", "-n", "-i", "eth0", "-t", "3", "-T", "1", "-s", str(script), *extra]
    return subprocess.run(netns_argv(client_ns, argv), capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("flags", [(), ("-B",)], ids=["unicast", "broadcast-flag"])
def test_udhcpc_accepts_the_lease(link, tmp_path, flags):
    server_ns, server_if, client_ns = link
    with Responder(server_ns, server_if, {CLIENT_MAC: LEASE}) as responder:
        done = _udhcpc(client_ns, tmp_path, *flags)
    context = f"udhcpc exit {done.returncode}\n{done.stdout}{done.stderr}\n{responder.log()}"
    assert done.returncode == 0, context
    assert responder.sent_types() == [dhcp.OFFER, dhcp.ACK], context
    assert all(r.broadcast == bool(flags) for r, _ in responder.sent), context

    env = _read_env(tmp_path / "bound.env")
    assert (env["ip"], env["subnet"], env["mask"], env["router"]) == ("10.0.1.11", "255.255.255.0", "24", "10.0.1.1")
    assert (env["dns"].strip(), env["domain"], env["mtu"], env["lease"]) == ("10.0.1.53", "acme.example", "1450",
                                                                              "3600")
    assert env["serverid"] == "10.0.1.1" and env["ntpsrv"].strip() == "10.0.1.123"
    assert env["staticroutes"].split() == ["192.168.50.0/24", "10.0.1.254", "0.0.0.0/0", "10.0.1.1"]
    assert "msstaticroutes" not in env  # option 249 is not served

    addr, routes = _interface(client_ns)
    assert "inet 10.0.1.11/24" in addr, addr
    assert "default via 10.0.1.1 dev eth0" in routes and "192.168.50.0/24 via 10.0.1.254 dev eth0" in routes, routes
    assert "mtu 1450" in netns.ip(client_ns, "link", "show", "dev", "eth0")


def test_udhcpc_with_an_unknown_mac_gets_no_answer_and_gives_up(link, tmp_path):
    server_ns, server_if, client_ns = link
    with Responder(server_ns, server_if, {STRANGER_MAC: LEASE}) as responder:
        started = time.monotonic()
        done = _udhcpc(client_ns, tmp_path)
        took = time.monotonic() - started
    assert done.returncode != 0 and took < 15, f"exit {done.returncode} after {took:.1f}s {done.stderr}"
    assert len(responder.seen) >= 2 and {r.chaddr for r in responder.seen} == {CLIENT_MAC}, responder.log()
    assert responder.sent == [] and not (tmp_path / "bound.env").exists()
    assert "inet " not in _interface(client_ns)[0]


# ----------------------------------------------------------------------------------------------- dhclient

DHCLIENT_SCRIPT = """\
env | sort > "{out}/dhclient.$reason.env"
case "$reason" in
  BOUND|REBOOT|RENEW)
    ip addr add "$new_ip_address/$new_subnet_mask" dev "$interface"
    [ -n "$new_interface_mtu" ] && ip link set dev "$interface" mtu "$new_interface_mtu"
    ;;
esac
exit 0
"""
DHCLIENT_CONF = """\
option rfc3442-classless-static-routes code 121 = array of unsigned integer 8;
timeout 20;
initial-interval 1;
request subnet-mask, routers, domain-name-servers, domain-name, interface-mtu, ntp-servers,
        rfc3442-classless-static-routes;
"""
# A lease for another address that dhclient still believes in: it asks for it first (INIT-REBOOT), must
# be refused with a NAK, and then discovers its real address.
STALE_LEASE = """\
lease {
  interface "eth0";
  fixed-address 10.0.1.99;
  option subnet-mask 255.255.255.0;
  option dhcp-lease-time 3600;
  renew 4 2099/01/01 00:00:00;
  rebind 4 2099/01/01 00:00:00;
  expire 4 2099/01/01 00:00:00;
}
"""


def _wait_for(path: Path, child: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and child.poll() is None:
        if path.exists():
            return True
        time.sleep(0.1)
    return path.exists()


def test_dhclient_is_refused_its_stale_address_then_accepts_the_lease(link, tmp_path):
    if not shutil.which("dhclient"):
        pytest.skip("dhclient (isc-dhcp-client) not installed")
    server_ns, server_if, client_ns = link
    script = _write_script(tmp_path / "dhclient.sh", DHCLIENT_SCRIPT.format(out=tmp_path))
    (tmp_path / "dhclient.conf").write_text(DHCLIENT_CONF)
    (tmp_path / "dhclient.leases").write_text(STALE_LEASE)
    argv = ["dhclient", "-4", "-d", "-1", "-v", "-sf", str(script), "-cf", str(tmp_path / "dhclient.conf"),
            "-lf", str(tmp_path / "dhclient.leases"), "-pf", str(tmp_path / "dhclient.pid"), "eth0"]
    log = tmp_path / "dhclient.log"
    with Responder(server_ns, server_if, {CLIENT_MAC: LEASE}) as responder, open(log, "wb") as out:
        child = subprocess.Popen(netns_argv(client_ns, argv), stdout=out, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
        try:
            bound = _wait_for(tmp_path / "dhclient.BOUND.env", child, timeout=25)
        finally:
            child.terminate()  # our own child, by its PID (ip netns exec execs dhclient in place)
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait(timeout=5)
    context = f"{log.read_text()}\n{responder.log()}"
    assert bound, context
    assert responder.sent_types() == [dhcp.NAK, dhcp.OFFER, dhcp.ACK], context
    assert responder.seen[0].requested_ip == "10.0.1.99" and responder.seen[0].server_id is None, context

    env = _read_env(tmp_path / "dhclient.BOUND.env")
    assert (env["new_ip_address"], env["new_subnet_mask"], env["new_routers"]) == ("10.0.1.11", "255.255.255.0",
                                                                                   "10.0.1.1")
    assert (env["new_domain_name_servers"], env["new_domain_name"]) == ("10.0.1.53", "acme.example")
    assert (env["new_interface_mtu"], env["new_dhcp_lease_time"]) == ("1450", "3600")
    assert (env["new_dhcp_server_identifier"], env["new_ntp_servers"]) == ("10.0.1.1", "10.0.1.123")
    assert env["new_rfc3442_classless_static_routes"] == "24 192 168 50 10 0 1 254 0 10 0 1 1"
    assert "inet 10.0.1.11/24" in _interface(client_ns)[0]
