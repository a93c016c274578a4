"""The host's wall clock stepped by minutes (NTP correcting a clock at boot, an operator's ``date -s``) while Canopy
runs with a BGP session to a real GoBGP: the session stays up, and Canopy's routes stay at the peer.

Every Python process of the controller (Canopy and its ExaBGP child) runs with ``tests/harness/wallclock`` on its
path, whose ``time.time`` adds the seconds a file holds: the test steps the wall clock of exactly those processes,
not the host's (other tests share it). ExaBGP 5.0.15 times its hold timer and its keepalives with ``time.time``: a
step forward by more than the hold time made it send NOTIFICATION "hold timer expired" at once, and a step back
stopped its keepalives until the wall clock had caught up (GoBGP, hearing nothing, reset the session after its hold
time). Each reset made GoBGP, without graceful restart, drop Canopy's routes. bgp.exabgp_ext now runs those timers
on the monotonic clock.

And an HA pair whose nodes' wall clocks are stepped one at a time, forward and back (the heartbeats, the dead
interval, the write acknowledgements and the stall rule all count elapsed time): no role changes, every write is
acknowledged, and the standby holds them all."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.integration.gobgp import lab_gobgp_and_canopy
from tests.integration.test_evpn_gobgp_interop import CANOPY_ASN, GOBGP_ASN, POLICY, canopy_types
from tests.integration.test_ha_writes import (Ledger, RoleSampler, connect_to_pair, linked, masters, pair_settings,
                                               role)

pytestmark = pytest.mark.integration
needs_gobgp = pytest.mark.skipif(not shutil.which("gobgpd"), reason="gobgpd (Debian package gobgpd) not installed")

WALLCLOCK = Path(__file__).resolve().parents[1] / "harness" / "wallclock"
HOLD_TIME = 9  # seconds (GoBGP's keepalive: a third of it)
# Each step of the pair's clocks is watched this long (four of its 0.5 s dead intervals: a rule timed by the wall clock
# sees 600 s pass or go back at once; was 4 s), and writes go on until six more were acknowledged, for up to
# WRITES_WITHIN (a write waits up to 1 s for the standby: a loaded machine acknowledges fewer in WATCH_S).
WATCH_S, WRITES_WITHIN = 2.0, 30.0


def peer(canopy) -> dict:
    return canopy.api.get("/v1/bgp/peers").json["items"][0]


def stepped_clocks(monkeypatch, tmp_path, *names):
    """A wall-clock file per name (0 s added), and the processes started from now on run with tests/harness/wallclock
    (``use(name)`` picks the file of the next ones)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(WALLCLOCK), os.environ.get("PYTHONPATH")) if p))
    clocks = {name: tmp_path / f"wall-clock-{name}" for name in names}
    for clock in clocks.values():
        clock.write_text("0")
    return clocks, lambda name: monkeypatch.setenv("CANOPY_TEST_WALL_CLOCK_FILE", str(clocks[name]))


@needs_gobgp
def test_a_wall_clock_stepped_forward_or_back_by_ten_minutes_resets_no_bgp_session(lab_capable, tmp_path,
                                                                                    monkeypatch):
    from tests.harness.lab import Lab

    clocks, use = stepped_clocks(monkeypatch, tmp_path, "canopy")
    use("canopy")
    clock = clocks["canopy"]
    with Lab() as lab:
        ctl, gobgp_host, canopy = lab_gobgp_and_canopy(lab, GOBGP_ASN, CANOPY_ASN, POLICY)
        hv = lab.add_hypervisor("kvm1", "kvm")
        hv.connect(ctl)
        lab.add_vm(hv, "w1", mac="02:00:00:00:01:01", ip="10.0.1.11/24", vnic_id="w1")

        def gobgp(*args):
            done = gobgp_host.exec("gobgp", "-u", "127.0.0.1", "-p", "50051", *args, timeout=15)
            assert done.returncode == 0, done.stderr
            return done.stdout

        lab.wait_until(lambda: peer(canopy)["state"] == "up", timeout=60, what="Canopy's session with GoBGP")
        lab.wait_until(lambda: {2, 3, 5} <= canopy_types(gobgp, hv), timeout=60, what="Canopy's routes in GoBGP")
        gobgp_log = lab.workdir / "gobgpd.log"
        downs = gobgp_log.read_text().count("Peer Down")
        since = peer(canopy)["since"]

        def unchanged(what):
            now = peer(canopy)
            assert now["state"] == "up" and now["since"] == since, f"{what}: the session was reset: {now}"
            assert gobgp_log.read_text().count("Peer Down") == downs, f"{what}: GoBGP saw the session go down"
            assert {2, 3, 5} <= canopy_types(gobgp, hv), f"{what}: GoBGP lost Canopy's routes"

        for offset, watch in ((600, 5.0), (0, 3.0 * HOLD_TIME / 2 + 3)):  # ten minutes forward, then back
            clock.write_text(str(offset))
            deadline = time.monotonic() + watch  # a step back shows once GoBGP's hold time has run out
            while time.monotonic() < deadline:
                unchanged(f"wall clock stepped to {offset:+} s")
                time.sleep(0.5)
        assert canopy.alive() and canopy.api.get("/v1/status").json["health"] == "ok"


def test_an_ha_pair_whose_wall_clocks_are_stepped_keeps_its_roles_and_acknowledges_every_write(lab_capable, tmp_path,
                                                                                               monkeypatch):
    from tests.harness.lab import Lab

    clocks, use = stepped_clocks(monkeypatch, tmp_path, "a", "b")
    with Lab() as lab:
        hosts = {"a": lab.add_controller_host("ctla"), "b": lab.add_controller_host("ctlb")}
        ctls = {}
        for node, peer_node, priority in (("a", "b", 200), ("b", "a", 100)):
            use(node)
            ctls[node] = lab.start_controller(hosts[node], pair_settings(node, hosts[peer_node], priority),
                                              name=f"canopy{node}")
        lab.wait_until(lambda: role(ctls["a"]) == "active" and role(ctls["b"]) == "standby", timeout=30,
                       what="A active, B standby")
        hv = lab.add_hypervisor("hv1", "kvm")
        connect_to_pair(hv, hosts)
        lab.wait_until(lambda: masters(hv) == [f"tcp:{hosts['a'].ip}:6653"], timeout=30, what="A master of hv1")
        lab.wait_until(lambda: linked(ctls["a"]) and linked(ctls["b"]), timeout=30, what="the HA link up")
        ledger = Ledger()
        with RoleSampler(ctls) as sampler:
            for node, offset in (("a", 600), ("a", 0), ("b", 600), ("b", 0), ("a", -600), ("b", -600)):
                clocks[node].write_text(str(offset))
                acked, began = len(ledger.acked), time.monotonic()
                # at least WATCH_S, and until six more writes were acknowledged (however slow the machine), within
                # WRITES_WITHIN
                while (time.monotonic() - began < WATCH_S or len(ledger.acked) <= acked + 5) \
                        and time.monotonic() - began < WRITES_WITHIN:
                    ledger.write(ctls["a"])  # a loaded machine may refuse one (1 s to confirm): never acknowledge it
                    time.sleep(0.2)
                assert len(ledger.acked) > acked + 5, f"writes refused after {node}'s clock moved to {offset:+} s"
        moved = [r for r in sampler.rounds if r.get("a") not in ("active", None) or r.get("b") not in ("standby", None)]
        assert not moved, moved  # None: no answer within 1 s (load)
        ledger.check(lab, ctls["a"], ctls["b"])
        assert masters(hv) == [f"tcp:{hosts['a'].ip}:6653"]
