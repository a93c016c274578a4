"""The BGP speaker (ExaBGP as a supervised child) against a real gobgpd on loopback addresses."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from pathlib import Path

import pytest

from bgp.routes import InclusiveMulticastRoute, IpPrefixRoute, MacIpRoute
from bgp.speaker import Neighbor, Speaker, SpeakerConfig
from tests.harness.wait import wait_until
from tests.integration.gobgp import AVAILABLE, GoBGPNeighbor, free_port, start_gobgpd

pytestmark = pytest.mark.integration
needs_gobgp = pytest.mark.skipif(not AVAILABLE, reason="gobgpd/gobgp not installed")

GOBGP_IP, CANOPY_IP = "127.0.0.81", "127.0.0.82"
GOBGP_AS, CANOPY_AS = 65001, 65000
WAIT = 60  # seconds: the bound of every wait (BGP sessions on loopback come up in about one)

TYPE2 = MacIpRoute(rd="65000:100", mac="52:54:00:12:34:56", ip="10.1.0.5", l2_vni=5001, l3_vni=9001,
                   next_hop="192.0.2.1", route_targets=("65000:5001",), router_mac="02:00:00:00:00:01")
TYPE3 = InclusiveMulticastRoute(rd="65000:100", vni=5001, next_hop="192.0.2.1", route_targets=("65000:5001",))
TYPE5 = IpPrefixRoute(rd="65000:100", prefix="10.1.0.0/24", l3_vni=9001, next_hop="192.0.2.1",
                      route_targets=("65000:9001",), router_mac="02:00:00:00:00:01")
GOBGP_ROUTES = {  # gobgp 3.10 syntax for `gobgp global rib -a evpn add ...`
    "macadv": ("macadv", "52:54:00:aa:bb:cc", "10.1.0.9", "etag", "0", "label", "5001,9001", "rd", "65001:100",
               "rt", "65001:5001", "encap", "vxlan", "router-mac", "02:00:00:00:00:02", "nexthop", "192.0.2.2"),
    "multicast": ("multicast", "192.0.2.2", "etag", "0", "rd", "65001:100", "rt", "65001:5001", "encap", "vxlan",
                  "pmsi", "ingress-repl", "5001", "192.0.2.2", "nexthop", "192.0.2.2"),
    "prefix": ("prefix", "10.2.0.0/24", "gw", "0.0.0.0", "etag", "0", "label", "9001", "rd", "65001:100",
               "rt", "65001:9001", "encap", "vxlan", "router-mac", "02:00:00:00:00:02", "nexthop", "192.0.2.2"),
}


def table(*routes):
    return {route.key: route for route in routes}


class Changes:
    """Counts on_change calls (made from the speaker's thread)."""

    def __init__(self):
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            self.count += 1


@pytest.fixture
def lab(tmp_path):
    """gobgpd (passive) and a Speaker that connects to it; both stopped whatever happens."""
    gobgp = start_gobgpd(tmp_path / "gobgpd", GOBGP_IP, GOBGP_AS, (GoBGPNeighbor(CANOPY_IP, CANOPY_AS),))
    changes = Changes()
    config = SpeakerConfig(asn=CANOPY_AS, router_id=CANOPY_IP, workdir=str(tmp_path / "speaker"), neighbors=(
        Neighbor(GOBGP_IP, GOBGP_AS, port=gobgp.port, local_address=CANOPY_IP, hold_time=9),))
    speaker = Speaker(config, on_change=changes)
    try:
        yield gobgp, speaker, changes
    finally:
        speaker.stop()
        gobgp.stop()


def nlri_types(gobgp) -> list[int]:
    return sorted(path["nlri"]["type"] for path in gobgp.rib_paths())


def router_macs(gobgp, kind: int) -> set[str]:
    """Router's MAC extended communities on GoBGP's routes of type ``kind``."""
    return {community["mac"] for path in gobgp.rib_paths() if path["nlri"]["type"] == kind
            for attribute in path["attrs"] if attribute["type"] == 16
            for community in attribute["value"] if (community.get("type"), community.get("subtype")) == (6, 3)}


def peer(speaker) -> dict:
    [row] = speaker.peers()
    return row


def listening_sockets(pid: int) -> list[str]:
    """``ip:port`` of every TCP socket in LISTEN state that process ``pid`` holds (from /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for name in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{name}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                address, port = fields[1].split(":")
                if len(address) == 8:  # IPv4, in host (little-endian) byte order
                    address = socket.inet_ntoa(bytes.fromhex(address)[::-1])
                found.append(f"{address}:{int(port, 16)}")
    return found


def gone_or_not_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@needs_gobgp
def test_desired_routes_reach_gobgp_and_changes_withdraw_exactly_what_went(lab):
    gobgp, speaker, _ = lab
    speaker.set_desired(table(TYPE2, TYPE3, TYPE5))
    speaker.start()
    wait_until(lambda: nlri_types(gobgp) == [2, 3, 5], timeout=WAIT, what="types 2, 3 and 5 in GoBGP")
    wait_until(lambda: speaker.announced() == table(TYPE2, TYPE3, TYPE5), timeout=WAIT, what="acknowledgements")
    assert speaker.status()["pending_acks"] == 0
    before = {path["nlri"]["type"]: path["nlri"] for path in gobgp.rib_paths()}

    moved = MacIpRoute(**{**TYPE2.__dict__, "router_mac": "02:00:00:00:00:09"})
    speaker.set_desired(table(moved, TYPE5))
    wait_until(lambda: nlri_types(gobgp) == [2, 5], timeout=WAIT, what="type 3 withdrawn from GoBGP")
    after = {path["nlri"]["type"]: path for path in gobgp.rib_paths()}
    assert {kind: path["nlri"] for kind, path in after.items()} == {2: before[2], 5: before[5]}
    wait_until(lambda: router_macs(gobgp, 2) == {"02:00:00:00:00:09"}, timeout=WAIT,
               what="the type 2 route re-announced with its new router MAC")
    wait_until(lambda: speaker.announced() == table(moved, TYPE5), timeout=WAIT, what="acknowledgements")


@needs_gobgp
def test_routes_from_gobgp_are_received_and_reported(lab):
    gobgp, speaker, changes = lab
    speaker.set_desired(table(TYPE3))
    speaker.start()
    wait_until(lambda: peer(speaker)["state"] == "up", timeout=WAIT, what="session up")
    for args in GOBGP_ROUTES.values():
        gobgp.add_evpn(*args)
    received = wait_until(lambda: len(r := speaker.received()) == 3 and r, timeout=WAIT,
                          what="three routes from GoBGP")
    assert {peer_ip for peer_ip, _ in received} == {GOBGP_IP}
    by_type = {route.TYPE: route for route in received.values()}
    assert (by_type[2].mac, by_type[2].ip, by_type[2].l2_vni, by_type[2].l3_vni) == (
        "52:54:00:aa:bb:cc", "10.1.0.9", 5001, 9001)
    assert by_type[2].router_mac == "02:00:00:00:00:02" and by_type[2].route_targets == ("65001:5001",)
    assert (by_type[3].vni, by_type[3].originator, by_type[3].next_hop) == (5001, "192.0.2.2", "192.0.2.2")
    assert (by_type[5].prefix, by_type[5].l3_vni, by_type[5].next_hop) == ("10.2.0.0/24", 9001, "192.0.2.2")
    assert changes.count > 0
    row = wait_until(lambda: (r := peer(speaker))["sent"] == 1 and r, timeout=WAIT, what="sent count")
    assert (row["address"], row["asn"], row["state"], row["received"]) == (GOBGP_IP, GOBGP_AS, "up", 3)
    assert row["uptime"] is not None and row["since"] is not None

    seen = changes.count
    gobgp.del_evpn(*GOBGP_ROUTES["multicast"])
    wait_until(lambda: len(speaker.received()) == 2, timeout=WAIT, what="the withdrawn route gone")
    assert 3 not in {route.TYPE for route in speaker.received().values()}
    wait_until(lambda: changes.count > seen, timeout=WAIT, what="on_change after the withdraw")


@needs_gobgp
def test_killed_exabgp_is_reaped_restarted_and_routes_reinjected(lab, caplog):
    gobgp, speaker, changes = lab
    caplog.set_level(logging.INFO, logger="canopy.bgp.speaker")
    speaker.set_desired(table(TYPE2, TYPE3, TYPE5))
    speaker.start()
    wait_until(lambda: nlri_types(gobgp) == [2, 3, 5], timeout=WAIT, what="routes in GoBGP")
    gobgp.add_evpn(*GOBGP_ROUTES["prefix"])
    wait_until(lambda: len(speaker.received()) == 1, timeout=WAIT, what="a route from GoBGP")
    first = speaker.status()["pid"]
    seen = changes.count

    os.kill(first, signal.SIGKILL)
    wait_until(lambda: speaker.status()["restarts"] == 1, timeout=WAIT, what="ExaBGP restarted")
    wait_until(lambda: gone_or_not_zombie(first), timeout=WAIT, what="the killed ExaBGP reaped")
    assert changes.count > seen  # its peers went down and its received routes were dropped
    status = wait_until(lambda: (s := speaker.status())["api_connected"] and s, timeout=WAIT, what="API again")
    assert status["running"] and status["pid"] != first
    assert "signal 9" in status["last_error"] and status["failure"] is None  # kept as the last error, over
    # GoBGP drops a peer's routes when its session goes down (no graceful restart here), so
    # routes present after its second "Peer Up" were sent again by the new ExaBGP.
    wait_until(lambda: gobgp.log_count("Peer Down") == 1 and gobgp.log_count("Peer Up") == 2
               and gobgp.established(CANOPY_IP), timeout=WAIT, what="GoBGP saw the session go down and come back")
    wait_until(lambda: nlri_types(gobgp) == [2, 3, 5, 5], timeout=WAIT, what="routes re-injected into GoBGP")
    wait_until(lambda: speaker.announced() == table(TYPE2, TYPE3, TYPE5), timeout=WAIT, what="acknowledged")
    wait_until(lambda: len(speaker.received()) == 1, timeout=WAIT, what="GoBGP's route received again")
    # the three routes went out again in one command line: the log counts routes, not lines (it said "1 route")
    assert "injecting 3 route(s) in 1 command line(s)" in caplog.text


@needs_gobgp
def test_peer_going_away_drops_its_routes(lab):
    gobgp, speaker, changes = lab
    speaker.start()
    gobgp.add_evpn(*GOBGP_ROUTES["macadv"])
    wait_until(lambda: len(speaker.received()) == 1, timeout=WAIT, what="a route from GoBGP")
    seen = changes.count
    gobgp.stop()
    wait_until(lambda: peer(speaker)["state"] == "down", timeout=WAIT, what="peer down")
    assert speaker.received() == {}
    row = peer(speaker)
    assert row["received"] == 0 and row["uptime"] is None and row["last_error"]
    assert changes.count > seen
    assert speaker.status()["running"]  # ExaBGP itself carries on, retrying the peer


@needs_gobgp
def test_listens_nowhere_without_listen(lab):
    gobgp, speaker, _ = lab
    speaker.start()
    wait_until(lambda: peer(speaker)["state"] == "up", timeout=WAIT, what="session up")
    assert listening_sockets(speaker.status()["pid"]) == []


@needs_gobgp
def test_passive_neighbor_with_md5_accepts_on_the_listen_address(tmp_path):
    password = "pa ss;{w}#rd"  # spaces, semicolon, braces and hash: all ExaBGP configuration syntax
    port = free_port(CANOPY_IP)
    gobgp = start_gobgpd(tmp_path / "gobgpd", GOBGP_IP, GOBGP_AS, (
        GoBGPNeighbor(CANOPY_IP, CANOPY_AS, passive=False, remote_port=port, md5_password=password),))
    config = SpeakerConfig(asn=CANOPY_AS, router_id=CANOPY_IP, workdir=str(tmp_path / "speaker"), listen=CANOPY_IP,
                           listen_port=port, neighbors=(Neighbor(GOBGP_IP, GOBGP_AS, port=gobgp.port, passive=True,
                                                                 md5_password=password),))
    speaker = Speaker(config)
    try:
        speaker.set_desired(table(TYPE3))
        speaker.start()
        wait_until(lambda: peer(speaker)["state"] == "up", timeout=WAIT, what="GoBGP connected to the speaker")
        wait_until(lambda: nlri_types(gobgp) == [3], timeout=WAIT, what="route in GoBGP")
        assert listening_sockets(speaker.status()["pid"]) == [f"{CANOPY_IP}:{port}"]
    finally:
        speaker.stop()
        gobgp.stop()


def test_rejected_configuration_is_reported_and_retried_with_back_off(tmp_path, caplog):
    config = SpeakerConfig(asn=CANOPY_AS, router_id=CANOPY_IP, workdir=str(tmp_path / "speaker"),
                           neighbors=(Neighbor(GOBGP_IP, GOBGP_AS, hold_time=1),))  # ExaBGP wants 0 or >= 3
    speaker = Speaker(config)
    try:
        with caplog.at_level(logging.ERROR, logger="canopy.bgp.speaker"):
            speaker.start()
            wait_until(lambda: speaker.status()["restarts"] >= 2, timeout=WAIT, what="two restarts")
        status = speaker.status()
        assert "exabgp.conf rejected" in status["last_error"]
        assert "holdtime must be zero or at least 3 seconds" in status["last_error"]
        assert status["failure"] == status["last_error"]  # no ExaBGP up since: /v1/status degraded with it
        row = peer(speaker)
        assert row["state"] == "down" and "exabgp.conf rejected" in row["last_error"]
        delays = [r.getMessage().rsplit("restarting in ", 1)[1] for r in caplog.records
                  if "restarting in" in r.getMessage()]
        assert delays[:2] == ["0.5s", "1.0s"]
    finally:
        speaker.stop()
    assert not speaker.status()["running"]


def test_api_socket_refuses_other_processes_and_stop_is_idempotent(tmp_path):
    absent = free_port(GOBGP_IP)  # nothing listens there: ExaBGP keeps retrying, on loopback only
    config = SpeakerConfig(asn=CANOPY_AS, router_id=CANOPY_IP, workdir=str(tmp_path / "speaker"),
                           neighbors=(Neighbor(GOBGP_IP, GOBGP_AS, port=absent, local_address=CANOPY_IP),))
    speaker = Speaker(config)
    try:
        speaker.start()
        wait_until(lambda: speaker.status()["api_connected"], timeout=WAIT, what="the relay connected")
        assert oct(os.stat(config.socket_path).st_mode & 0o777) == "0o600"
        assert oct(os.stat(config.conf_path).st_mode & 0o777) == "0o600"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stranger:
            stranger.settimeout(WAIT)
            stranger.connect(config.socket_path)
            assert stranger.recv(100) == b""  # closed at once: not a child of this ExaBGP
        assert speaker.status()["api_connected"] and speaker.status()["restarts"] == 0
    finally:
        speaker.stop()
    speaker.stop()
    assert not os.path.exists(config.socket_path) and not speaker.status()["running"]
