"""The host's wall clock stepped by minutes (NTP correcting a clock at boot, an operator's ``date -s``) while Canopy
runs with a BGP session to a real GoBGP: the session stays up, and Canopy's routes stay at the peer.

Every Python process of the controller (Canopy and its ExaBGP child) runs with ``tests/harness/wallclock`` on its
path, whose ``time.time`` adds the seconds a file holds: the test steps the wall clock of exactly those processes,
not the host's (other tests share it). ExaBGP 5.0.15 times its hold timer and its keepalives with ``time.time``: a
step forward by more than the hold time made it send NOTIFICATION "hold timer expired" at once, and a step back
stopped its keepalives until the wall clock had caught up (GoBGP, hearing nothing, reset the session after its hold
time). Each reset made GoBGP, without graceful restart, drop Canopy's routes. bgp.exabgp_ext now runs those timers
on the monotonic clock."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.integration.gobgp import lab_gobgp_and_canopy
from tests.integration.test_evpn_gobgp_interop import CANOPY_ASN, GOBGP_ASN, POLICY, canopy_types

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not shutil.which("gobgpd"), reason="gobgpd (Debian package gobgpd) not installed")]

WALLCLOCK = Path(__file__).resolve().parents[1] / "harness" / "wallclock"
HOLD_TIME = 9  # seconds (GoBGP's keepalive: a third of it)


def peer(canopy) -> dict:
    return canopy.api.get("/v1/bgp/peers").json["items"][0]


def test_a_wall_clock_stepped_forward_or_back_by_ten_minutes_resets_no_bgp_session(lab_capable, tmp_path,
                                                                                    monkeypatch):
    from tests.harness.lab import Lab

    clock = tmp_path / "wall-clock-offset"
    clock.write_text("0")
    monkeypatch.setenv("CANOPY_TEST_WALL_CLOCK_FILE", str(clock))
    monkeypatch.setenv("PYTHONPATH", ":".join(p for p in (str(WALLCLOCK), __import__("os").environ.get("PYTHONPATH"))
                                              if p))
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
