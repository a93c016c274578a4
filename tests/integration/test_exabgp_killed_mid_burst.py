"""ExaBGP SIGKILLed in the middle of a burst of route changes (its first half acknowledged, its second half handed
to a stopped ExaBGP), against a real gobgpd with graceful restart for
l2vpn-evpn (faults40 tried it with 10,000 changes: correct, ~2 min; here 1,200, so that it stays short): the speaker
starts a new ExaBGP and sends every desired route again, the desired routes changed again while it was down included;
GoBGP keeps Canopy's routes meanwhile (none desired before and after the burst withdrawn at any moment: GoBGP's own
stream of best-path changes, ``gobgp monitor global rib``, says so; a look at its table every 0.2 s saw the routes
back already at its first look, 1.5-3 s after the kill, with graceful restart off too) and ends with exactly the
desired routes, none stale, none missing: End-of-RIB only once the new ExaBGP holds them all (bgp/endofrib.py)."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from bgp.routes import MacIpRoute
from bgp.speaker import Neighbor, Speaker, SpeakerConfig
from tests.harness.process import spawn, stop
from tests.harness.wait import wait_until
from tests.integration.gobgp import GoBGPNeighbor, start_gobgpd
from tests.integration.test_bgp_speaker import CANOPY_AS, CANOPY_IP, GOBGP_AS, GOBGP_IP, WAIT, needs_gobgp, peer

pytestmark = pytest.mark.integration
HELD = 600  # routes GoBGP holds before the burst
GONE, NEW = 300, 900  # the burst: the first GONE of them withdrawn, NEW new ones announced (1,200 changes)


def macs(first: int, count: int) -> dict:
    """{key: route} of ``count`` type-2 routes, MACs numbered from ``first``."""
    routes = (MacIpRoute(rd="65000:100", mac=f"52:54:00:00:{i >> 8:02x}:{i & 255:02x}", ip=f"10.1.{i >> 8}.{i & 255}",
                         l2_vni=5001, l3_vni=9001, next_hop="192.0.2.1", route_targets=("65000:5001",),
                         router_mac="02:00:00:00:00:01") for i in range(first, first + count))
    return {route.key: route for route in routes}


def held(gobgp) -> tuple[set[str], int] | None:
    """(the MACs of GoBGP's type-2 routes, how many of its paths are stale); None when its CLI did not answer."""
    out = gobgp.cli("global", "rib", "-a", "evpn", "-j", check=False)
    if out.returncode != 0:
        return None
    paths = [p for ps in json.loads(out.stdout or "{}").values() for p in ps if p["nlri"]["type"] == 2]
    return {p["nlri"]["value"]["mac"] for p in paths}, sum(1 for p in paths if p.get("stale"))


def mac_set(routes: dict) -> set[str]:
    return {route.mac for route in routes.values()}


def streamed(path) -> tuple[set[str], set[str]]:
    """(the MACs of type-2 routes ``gobgp monitor global rib -j`` reported, those it reported withdrawn) in its log."""
    seen, withdrawn = set(), set()
    for line in path.read_text().split("\n")[:-1]:  # whole lines (the last may be being written)
        if line.startswith("["):
            for p in json.loads(line):
                if p["nlri"]["type"] == 2:
                    (withdrawn if p.get("withdrawal") else seen).add(p["nlri"]["value"]["mac"])
    return seen, withdrawn


@needs_gobgp
def test_exabgp_killed_in_a_burst_ends_with_exactly_the_desired_routes_at_a_graceful_peer(tmp_path):
    gobgp = start_gobgpd(tmp_path / "gobgpd", GOBGP_IP, GOBGP_AS, (GoBGPNeighbor(CANOPY_IP, CANOPY_AS, graceful=True),))
    speaker = Speaker(SpeakerConfig(asn=CANOPY_AS, router_id=CANOPY_IP, workdir=str(tmp_path / "speaker"), neighbors=(
        Neighbor(GOBGP_IP, GOBGP_AS, port=gobgp.port, local_address=CANOPY_IP, hold_time=9),)))
    monitor = None
    try:
        before = macs(0, HELD)
        speaker.set_desired(before)
        speaker.start()
        speaker.complete()
        wait_until(lambda: (held(gobgp) or [None])[0] == mac_set(before), timeout=WAIT, interval=0.3,
                   what=f"GoBGP holding {HELD} routes")
        pid = speaker.status()["pid"]
        log = tmp_path / "monitor.log"  # every best-path change at GoBGP from now on, as it happens
        monitor = spawn("gobgp monitor", ["gobgp", "-u", gobgp.address, "-p", str(gobgp.grpc_port), "monitor", "global",
                                          "rib", "-a", "evpn", "-j", "--current"], log)
        wait_until(lambda: streamed(log)[0] == mac_set(before), timeout=WAIT, interval=0.1,
                   what="the monitor streaming (GoBGP's routes first)")

        # The burst's first half acknowledged, its second half handed to an ExaBGP that cannot answer (stopped),
        # then the kill: the kill always falls mid-burst (killed at the first acknowledgement, a fast machine had
        # ExaBGP acknowledge all 900 new routes at once before the kill).
        burst = {**macs(GONE, HELD - GONE), **macs(10_000, NEW)}
        new = mac_set(burst) - mac_set(before)
        first = {**macs(GONE, HELD - GONE), **macs(10_000, NEW // 2)}
        speaker.set_desired(first)
        wait_until(lambda: mac_set(speaker.announced()) == mac_set(first), timeout=WAIT, interval=0.05,
                   what="ExaBGP acknowledging the burst's first half")
        os.kill(pid, signal.SIGSTOP)
        speaker.set_desired(burst)
        wait_until(lambda: speaker.status()["pending_acks"], timeout=WAIT, interval=0.01,
                   what="the burst's second half handed to ExaBGP")
        os.kill(pid, signal.SIGKILL)
        acked = len(mac_set(speaker.announced()) & new)
        assert acked == NEW // 2, "ExaBGP acknowledged lines while stopped"
        desired = {k: r for k, r in burst.items() if r.mac not in mac_set(macs(GONE, 100))}  # 100 more go
        speaker.set_desired(desired)  # while ExaBGP is down
        kept = mac_set(before) & mac_set(desired)

        looks, started = 0, time.monotonic()
        while True:  # bounded by WAIT
            look = held(gobgp)
            if look is not None:
                got, stale = look
                assert kept <= got, f"GoBGP lost {len(kept - got)} routes kept through the restart"
                looks += 1
                if got == mac_set(desired) and not stale and gobgp.established(CANOPY_IP) \
                        and speaker.status()["pid"] not in (None, pid):
                    break
            assert time.monotonic() - started < WAIT, look and (len(look[0]), len(mac_set(desired)), look[1])
            time.sleep(0.2)
        assert peer(speaker)["state"] == "up" and speaker.status()["restarts"] == 1
        gone = mac_set(before) - mac_set(desired)  # withdrawn by Canopy: the stream has them all once it caught up
        wait_until(lambda: gone <= streamed(log)[1], timeout=WAIT, interval=0.2, what="the monitor's withdrawals")
        lost = streamed(log)[1] & kept
        assert not lost, f"GoBGP withdrew {len(lost)} routes kept through the restart (its best paths then)"
        print(f"killed with {acked} of {len(new)} new routes acknowledged; exactly the {len(desired)} desired "
              f"routes at GoBGP {time.monotonic() - started:.1f} s after, {looks} looks")
    finally:
        if monitor is not None:
            stop([monitor])
        speaker.stop()
        gobgp.stop()
