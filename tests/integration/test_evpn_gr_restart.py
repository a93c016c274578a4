"""Graceful restart (RFC 4724), the restarting side: Canopy itself restarts and its peers keep its routes.

Two Canopy controllers in one AS, each an iBGP client of one GoBGP route reflector with graceful restart for l2vpn
evpn (FRR 8.4 keeps a restarting peer's routes for unicast and L3VPN families only, not for EVPN: its graceful restart
loop stops at SAFI_MPLS_VPN). A VM under A pings a VM under B: the replies reach A's VM only through flows B built
from A's routes, which B has only while the reflector holds them. A is restarted (SIGTERM, SIGKILL, and SIGKILL with
its new session held back until its switch is back: "late"): while it is gone the reflector keeps A's routes,
stale; when A's new session comes up the reflector waits for A's End-of-RIB, and A sends
it only once it has injected every route it announces after the restart (after its start-up hold). Throughout, A's
routes never leave the reflector's table nor B's received routes, and no ping is lost: A writes its switch only once
the reflector's routes are in (its End-of-RIB; controller/startup_hold.py), or the flows towards B's VMs would go.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time

import pytest

from tests.integration import gobgp
from tests.integration.test_evpn_frr import (ASN, MACS, Pinger, apply_policies, bgp_settings, controller_policy, peers,
                                             received_macs, sessions_and_leases)
from tests.integration.test_ha import evpn_sources
from tests.integration.test_overlay import reach

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not gobgp.AVAILABLE and os.environ.get("CI") != "true",
                                 reason="gobgpd (Debian package gobgpd) not installed")]

A_MACS = {MACS["a1"], MACS["a2"]}
WATCH_EVERY = 0.1  # seconds between two looks at the reflector's table and B's received routes
LATE_SESSION = 6.0  # seconds the reflector takes no BGP packet after A's restart (its switch is back before that)


@pytest.fixture(scope="module")
def grlab(lab_capable):
    from tests.harness.lab import Lab

    with Lab() as lab:
        ctl_a, ctl_b = lab.add_controller_host("ctla"), lab.add_controller_host("ctlb")
        rr = gobgp.lab_gobgp_reflector(lab, ASN, (ctl_a, ctl_b), graceful=True)
        reflector = Reflector(rr)
        # a start-up hold long enough to outlast the reflector's session held back (see "late"), on a loaded machine
        a = lab.start_controller(ctl_a, {**bgp_settings(ctl_a, (rr,)), "restart": {"hold_time": 30}}, name="canopya")
        b = lab.start_controller(ctl_b, bgp_settings(ctl_b, (rr,)), name="canopyb")
        apply_policies(((a.api, controller_policy(ctl_a)), (b.api, controller_policy(ctl_b))), "gr")
        hva, hvb = lab.add_hypervisor("hva", "kvm"), lab.add_hypervisor("hvb", "kvm")
        hva.connect(ctl_a)
        hvb.connect(ctl_b)
        vms = {name: lab.add_vm(hv, name, mac=MACS[name], vnic_id=name)
               for name, hv in (("a1", hva), ("a2", hva), ("b1", hvb), ("b2", hvb))}
        sessions_and_leases(lab, (a.api, b.api), (rr.ip,), vms, "both controllers' sessions with the reflector")
        lab.wait_until(lambda: A_MACS <= received_macs(b.api), timeout=30, what="A's VMs in B's received routes")
        reach(lab, vms["a1"], "10.0.1.21", timeout=30)
        yield lab, a, b, vms, reflector, ctl_a.ip


class Reflector:
    """The GoBGP route reflector in its namespace, through its CLI."""

    def __init__(self, host):
        self.host = host

    def cli(self, *args):
        done = self.host.exec("gobgp", "-u", "127.0.0.1", "-p", "50051", *args, timeout=gobgp.CLI_TIMEOUT)
        return done.stdout if done.returncode == 0 else ""

    def evpn_macs(self) -> set[str]:
        table = json.loads(self.cli("global", "rib", "-a", "evpn", "-j") or "{}")
        return {path["nlri"]["value"]["mac"].lower() for paths in table.values() for path in paths
                if path["nlri"]["type"] == 2}

    def evpn_sources(self) -> set[str]:
        """The neighbors it holds EVPN routes from."""
        return evpn_sources(self.host)

    def graceful_restart(self, neighbor: str) -> dict:
        """What gobgpd negotiated with ``neighbor`` (its "graceful_restart" state)."""
        return json.loads(self.cli("neighbor", neighbor, "-j") or "{}").get("graceful_restart", {})


class Watcher:
    """Looks, every WATCH_EVERY seconds until stopped, at the reflector's EVPN table and B's received routes, and
    records each look (its time, and in ``missing_at`` its time on the monotonic clock) where one of ``macs``
    (default: A's VMs') was missing from either."""

    def __init__(self, reflector, b_api, macs=A_MACS):
        self.reflector, self.b_api, self.macs = reflector, b_api, set(macs)
        self.looks, self.missing, self.missing_at = 0, [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            at, started = time.strftime("%H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}", time.monotonic()
            gone = {"reflector": self.macs - self.reflector.evpn_macs(), "B": self.macs - received_macs(self.b_api)}
            if any(gone.values()):
                self.missing.append((at, {where: sorted(macs) for where, macs in gone.items() if macs}))
                self.missing_at.append(started)
            self.looks += 1
            self._stop.wait(WATCH_EVERY)

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=30)


def restarted(lab, a, reflector):
    """A is back: its start-up hold released, its session with the reflector up, End-of-RIB sent on it."""
    def back():
        if not a.alive() or a.api.get("/v1/status").json["startup_hold"]["state"] != "synced":
            return False
        row = peers(a.api)[reflector.host.ip]
        return row["state"] == "up" and row["end_of_rib_sent"]

    lab.wait_until(back, timeout=120, what="A back: hold released, End-of-RIB sent to the reflector")


@contextlib.contextmanager
def dropping(host, source: str, *match: str):
    """While inside, ``host`` drops every packet from ``source`` that ``match`` (iptables options) selects (a filter
    in its own namespace)."""
    rule = ["INPUT", "-s", source, *match, "-j", "DROP"]
    host.exec("iptables", "-I", *rule, timeout=10, check=True)
    try:
        yield
    finally:
        host.exec("iptables", "-D", *rule, timeout=10, check=True)


def held_back(reflector, source: str):
    """While inside, the reflector drops every BGP packet from ``source``."""
    return dropping(reflector.host, source, "-p", "tcp", "--dport", "179")


@pytest.mark.parametrize("how", ["sigterm", "sigkill", "late"])
def test_a_restarting_controller_keeps_its_routes_at_the_peer_and_loses_no_ping(grlab, how):
    """``late``: SIGKILL, and A's new session comes up only after its switch is back (the reflector takes no BGP
    packet for LATE_SESSION seconds): A must not write its switch before the reflector's routes are in (before, it
    removed the flows towards B's VMs for that while: the pings on the way out of A's hypervisor were lost)."""
    lab, a, b, vms, reflector, a_ip = grlab
    pinger = Pinger(vms["a1"], vms["b1"], "10.0.1.21")
    watcher = None
    try:
        pinger.wait_replies(lab, 100)
        watcher = Watcher(reflector, b.api)
        if how == "sigterm":
            a.stop()
        else:
            a.kill()
        with held_back(reflector, a_ip) if how == "late" else contextlib.nullcontext():
            a.start()
            time.sleep(LATE_SESSION if how == "late" else 0)
        restarted(lab, a, reflector)
        assert reflector.graceful_restart(a_ip).get("enabled"), "no graceful restart between A and the reflector"
        pinger.wait_replies(lab, 200)  # 2 s more, after A's End-of-RIB
    finally:
        if watcher is not None:
            watcher.stop()
        sent, got = pinger.stop()
    assert watcher.looks > 10
    assert not watcher.missing, (f"A's routes left the reflector or B after the {how} restart: "
                                 f"{watcher.missing[:3]} ... {watcher.missing[-2:]}, {len(watcher.missing)} looks")
    pinger.check(sent, got, 300, f"across A's {how} restart")

