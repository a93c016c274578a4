"""An HA takeover inside the standby's own start-up hold behind a peer without graceful restart for EVPN (FRR 8.4 as
the route reflector), proven by traffic.

A redundant pair (A, B) drives three VRS: hva (a1), hva2 (a2) and hva3 (no VM: a third witness, so that the standby,
with hva2 away, still sees a majority of the pair's switches and may take over: docs/ha.md, rule 2); a third Canopy,
C, drives hvb (b1); all three are iBGP clients of one FRR reflector. a1 pings b1 every 10 ms: the requests leave hva
through flows the pair built from C's routes, the replies reach hva through flows C built from the pair's routes. The
standby is restarted with hva2's packets to it dropped, so that its start-up hold waits for hva2 (restart.hold_time
45 s), and the active is killed (SIGKILL). FRR drops the dead active's routes when its session goes (no graceful
restart for EVPN), so C withdraws a1 and the replies are lost until the new active announces a1 again: it does so
inside its hold (controller/routepass.py), not when the hold ends.

What is proven: the standby takes over inside its hold, within TAKEOVER_WITHIN of the kill; a1's route is back at the
reflector (from the new active) and at C within ROUTE_BACK_AFTER of the takeover (not only of the kill: a route
announced late, with a later pass, fails), and the replies lost meanwhile are lost in one window of consecutive
requests, from the kill to the same bound (counted and printed; a second window, e.g. when the hold ends, fails; no
request is lost); a2's route (hva2 not back) is not announced and no End-of-RIB is sent while the hold lasts; nothing
on hva changes (no flow added, modified or deleted: ``ovs-ofctl monitor``) before or after the hold ends. Once hva2 is let
back the hold ends (every switch reported), End-of-RIB and a2's route follow.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.harness.watched import Watched
from tests.integration import frr
from tests.integration.test_evpn_frr import ASN, MACS, Pinger, peers, received_macs, sessions_and_leases
from tests.integration.test_evpn_gr_restart import Watcher, dropping
from tests.integration.test_ha import masters
from tests.integration.test_ha_hold_takeover import (Looks, back, flow_changes, flow_monitor, hold, in_sync, kill,
                                                     settled_pair, start_pair_and_c)
from tests.integration.test_overlay import reach

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not frr.AVAILABLE and os.environ.get("CI") != "true",
                                 reason="FRR bgpd (Debian package frr) not installed")]

HOLD = {"hold_time": 45, "hold_max": 60}  # long against what the test waits for inside the hold (the bounds below)
# Seconds after the kill by which the standby is seen active: up to ~5 s (OVS reports the dead master with its
# statistics, every 5 s: docs/ha.md), on a loaded machine.
TAKEOVER_WITHIN = 15
# Seconds after the takeover was seen by which a1's route is back at the reflector and C (the first look that found it
# began), and the pings pass again: one programming pass and the route's way through ExaBGP, the reflector and C's
# pass. 0.07-0.30 s in the 10 runs of branch holdfrr (load 5.8-14.6, each look's end); 0.00 s in 8 runs of branch
# tidy (load 9.9-21.4: the first look after the takeover was seen found it); a route announced 5 s late (a scratch
# delay in RoutePass): 5.00 s, refused here, passed the former bound of 15 s from the kill (docs/benchmarks.md, tidy).
ROUTE_BACK_AFTER = 3
RECONNECT_MS = 1000  # hva2's reconnection back-off once let back (OVS's default grows to 8 s)


@pytest.fixture(scope="module")
def frrpair(lab_capable):
    from tests.harness.lab import Lab

    with Lab() as lab:
        ctl_a, ctl_b, ctl_c, rr_host = (lab.add_controller_host(name) for name in ("ctla", "ctlb", "ctlc", "rr"))
        rr = frr.start_route_reflector(lab, rr_host, ASN, [ctl_a.ip, ctl_b.ip, ctl_c.ip])
        nodes, c = start_pair_and_c(lab, (ctl_a, ctl_b, ctl_c), rr_host, HOLD, "holdfrr")
        hvs = {name: lab.add_hypervisor(name, "kvm") for name in ("hva", "hva2", "hva3", "hvb")}
        for name, hv in hvs.items():
            hv.connect(ctl_c if name == "hvb" else [ctl_a, ctl_b])
        hvs["hva2"].set_max_backoff(RECONNECT_MS)
        vms = {name: lab.add_vm(hvs[hv], name, mac=MACS[name], vnic_id=name)
               for name, hv in (("a1", "hva"), ("a2", "hva2"), ("b1", "hvb"))}
        sessions_and_leases(lab, [ctl.api for ctl in (*nodes.values(), c)], (rr_host.ip,), vms,
                            "the three controllers' sessions with the reflector")
        reach(lab, vms["a1"], "10.0.1.21", timeout=30)
        yield lab, nodes, {"a": ctl_a, "b": ctl_b}, c, hvs, vms, rr


def first_seen(lab, check, what: str) -> float:
    """When (monotonic) the first look that found ``check()`` true began (a look's own time, a reflector's table read
    through vtysh, is not counted against what it looks for)."""
    def look():
        at = time.monotonic()
        return check() and at
    return lab.wait_until(look, timeout=30, what=what)


def lost_apart(pinger, start: float, end: float) -> list[int]:
    """The lost requests but those of one window: the longest run of consecutive lost requests whose successors
    went between ``start`` and ``end`` (wall clock)."""
    runs: list[list[int]] = []
    for seq, at in pinger.lost_sent().items():
        if at is not None and start <= at <= end:
            if runs and runs[-1][-1] == seq - 1:
                runs[-1].append(seq)
            else:
                runs.append([seq])
    window = set(max(runs, key=len, default=[]))
    return [seq for seq in pinger.missing() if seq not in window]


class Restarted:
    """Whether the restarted standby is ready for the kill: standby, its session with the reflector up, its hold waiting
    for hva2 only. Each look that differs from the one before is kept with when it began (seconds after the first
    look), for a timeout's message: one run in 11 (load 10-15) timed out here, where 2.1-2.6 s after the start is
    usual (review34b: 4 runs, load 11-15), and the message did not say which part was missing."""

    READY = (("standby", "syncing"), "up", ["vrs hva2"])

    def __init__(self, node, looks, reflector):
        self.node, self.looks, self.reflector = node, looks, reflector
        self.began = time.monotonic()
        self.seen: list[tuple[float, tuple]] = []

    def __call__(self) -> bool:
        at = time.monotonic() - self.began
        state = hold(self.node)  # released: no "waiting_for" (the hold's message says why)
        waiting = [f"{item['kind']} {item['name']}" for item in state["waiting_for"]] \
            if state["state"] == "syncing" else state["message"]
        look = (self.looks.see(), peers(self.node.api).get(self.reflector.host.ip, {}).get("state"), waiting)
        if not self.seen or self.seen[-1][1] != look:
            self.seen.append((round(at, 2), look))
        return look == self.READY

    def said(self, ip: str) -> str:
        """What was seen (the first and the last 10 changes), the reflector's view of the session and the node's log."""
        seen = self.seen if len(self.seen) <= 11 else [*self.seen[:1], "...", *self.seen[-10:]]
        row = self.reflector.json(f"show bgp neighbors {ip} json").get(ip, {})
        session = {key: row.get(key) for key in ("bgpState", "lastResetDueTo", "connectionsEstablished",
                                                  "connectionsDropped")}
        return f"seen (seconds after the start: look): {seen}; the reflector's session: {session}; " \
               f"the standby's log:\n{self.node.log_tail()}"


def test_a_takeover_inside_the_standbys_hold_behind_frr_announces_what_it_knows_at_once(frrpair):
    lab, nodes, hosts, c, hvs, vms, rr = frrpair
    hva, hva2 = hvs["hva"], hvs["hva2"]
    a1, a2 = MACS["a1"], MACS["a2"]
    act, sby = settled_pair(lab, nodes, hosts, rr, hva)
    new, new_ip = nodes[sby], hosts[sby].ip
    lab.wait_until(lambda: {a1, a2} <= rr.evpn_macs(hosts[act].ip) and {a1, a2} <= received_macs(c.api), timeout=30,
                   what="the pair's VMs at the reflector and C")
    monitor = flow_monitor(lab, hva, "monitor-holdfrr")
    looks, pinger = Looks(new), Pinger(vms["a1"], vms["b1"], "10.0.1.21")
    with Watched(pinger, lambda: flow_changes(monitor), "hva") as watched:
        pinger.wait_replies(lab, 100)
        with dropping(hosts[sby], hva2.mgmt_ip):  # hva2 stays away from the standby's new process
            new.stop()
            new.start()
            restarted = Restarted(new, looks, rr)
            try:
                lab.wait_until(restarted, timeout=30, what=f"{sby} standby, its session with the reflector up, its "
                               "hold waiting for hva2 only")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; {restarted.said(new_ip)}") from None
            routes = watched.routes = Watcher(rr, c.api, {a1})  # a1's route at the reflector and at C, every 0.1 s
            killed_wall = time.time()  # before the signal: no loss it causes can come before
            killed = kill(nodes[act])
            lab.wait_until(lambda: looks.see()[0] == "active", timeout=30, what=f"{sby} takes over")
            took_over = looks.when("active") - killed
            assert looks.last == ("active", "syncing"), f"{sby} did not take over inside its hold: {looks.last}"
            back_at = first_seen(lab, lambda: a1 in rr.evpn_macs(new_ip) and a1 in received_macs(c.api),
                                 f"a1's route at the reflector from {sby} and at C")
            route_back, after_takeover = back_at - killed, back_at - looks.when("active")
            lab.wait_until(lambda: masters(hva) == [f"tcp:{new_ip}:6653"], timeout=15, what=f"{sby} master of hva")
            pinger.wait_replies(lab, 200)  # 2 s of pings with a1's route back
            assert looks.see() == ("active", "syncing"), f"{sby}'s hold ended before the test could look: raise HOLD"
            assert a2 not in rr.evpn_macs() and a2 not in received_macs(c.api), "a2 announced, its switch not back"
            assert not peers(new.api)[rr.host.ip]["end_of_rib_sent"], f"{sby} sent End-of-RIB inside its hold"
            in_hold = flow_changes(monitor)
        lab.wait_until(lambda: back(new, rr), timeout=60, what=f"{sby}'s hold over with hva2 back, End-of-RIB sent")
        released = time.monotonic() - killed
        lab.wait_until(lambda: a2 in rr.evpn_macs(new_ip) and a2 in received_macs(c.api), timeout=30,
                       what=f"a2's route at the reflector from {sby} and at C after the hold")
        lab.wait_until(lambda: in_sync(new, hva), timeout=30, what=f"hva in sync with {sby}")
        pinger.wait_replies(lab, 200)  # 2 s more, once the new active may write hva
    sent, got = watched.sent, watched.got
    # each lost request with when its successor went, in seconds after the kill (None: ping did not say)
    after_kill = {seq: None if at is None else round(at - killed_wall, 2) for seq, at in pinger.lost_sent().items()}
    lost = [at for at in after_kill.values() if at is not None]
    window = f"{min(lost):.2f}-{max(lost):.2f} s after the kill" if lost else "none"
    gone = routes.missing_at
    print(f"\n{act} killed; {sby} active {took_over:.2f} s later inside its hold; a1's route back at the reflector "
          f"and C {route_back:.2f} s after the kill, {after_takeover:.2f} s after the takeover (missing in {len(gone)} "
          f"of {routes.looks} looks, the last "
          f"{(max(gone, default=killed) - killed):.2f} s after it); {sent} pings, {got} replies, {sent - got} lost "
          f"({window}); hold over {released:.2f} s after the kill ({hold(new)['message']})")
    assert not in_hold, f"{len(in_hold)} flow changes on hva inside {sby}'s hold: {in_hold[:5]}"
    changes = flow_changes(monitor)
    assert not changes, f"{len(changes)} flow changes on hva once {sby}'s hold ended: {changes[:5]}"
    assert hold(new)["message"].startswith("all 3 switches connected before have reported"), hold(new)["message"]
    assert took_over <= TAKEOVER_WITHIN, f"{sby} active {took_over:.2f} s after the kill"
    assert after_takeover <= ROUTE_BACK_AFTER, (f"a1's route back {after_takeover:.2f} s after the takeover "
                                                f"({route_back:.2f} s after the kill)")
    pinger.check_reached(sent, "across the takeover")
    # One window: a second one (or a loss before the kill, or after ROUTE_BACK_AFTER from the takeover) is a fault,
    # e.g. the routes withdrawn again when the hold ends (9.8-14.1 s after the kill in the runs of docs/benchmarks.md)
    window_end = killed_wall + took_over + ROUTE_BACK_AFTER
    apart = lost_apart(pinger, killed_wall, window_end)
    assert len(apart) <= pinger.counters["OutErrors"], (
        f"{len(apart)} pings lost apart from one window from the kill to {window_end - killed_wall:.2f} s after it "
        f"({pinger.counters['OutErrors']} replies not sent by b1's kernel), the first (icmp_seq, seconds after the "
        f"kill its successor went): {[(seq, after_kill[seq]) for seq in apart[:10]]}")
