"""An HA takeover while the standby is still in its own start-up hold, and as that hold ends, proven by traffic.

A redundant pair (A, B) drives one VRS, hva; a third Canopy, C, drives hvb; all three are iBGP clients of one GoBGP
route reflector with graceful restart for l2vpn evpn. a1 (on hva) pings b1 (on hvb) every 10 ms: the requests leave
hva through flows the pair built from C's routes (received through the reflector), the replies reach hva through
flows C built from the pair's routes. The standby is restarted with its new BGP session held back at the reflector,
so that its start-up hold waits for the reflector's End-of-RIB (controller/startup_hold.py), and the active is
killed (SIGKILL):

- ``during``: while the standby's hold still waits (the standby becomes active inside its hold);
- ``at_end``: the moment the standby's hold is seen released (polled every 20 ms), as a standby.

What an operator relies on (docs/ha.md): the standby takes over; no ping is lost; nothing on hva changes (no flow
added, modified or deleted: ``ovs-ofctl monitor``), so the flows towards C's VM are never removed while the new
active waits; a1's route never leaves the reflector nor C (graceful restart keeps the dead active's); after the
hold the new active announces the pair's routes, is in sync with hva, and programs what comes next (a VM plugged
afterwards gets DHCP and reaches b1 through C). Each case restarts the killed node first when the previous case left
it dead, so the two cases alternate which node is active.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.harness.hosts import BR_INT
from tests.harness.watched import Watched
from tests.integration import gobgp
from tests.integration.test_evpn_frr import (ASN, MACS, Pinger, apply_policies, bgp_settings, controller_policy, peers,
                                             received_macs, sessions_and_leases)
from tests.integration.test_evpn_gr_restart import Reflector, Watcher, held_back
from tests.integration.test_ha import HA_SECRET, masters, role
from tests.integration.test_hitless_restart import Watch
from tests.integration.test_overlay import dhcp, reach

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not gobgp.AVAILABLE and os.environ.get("CI") != "true",
                                 reason="gobgpd (Debian package gobgpd) not installed")]

HOLD_TIME = 30  # restart.hold_time: outlasts a takeover (up to ~5 s after the kill: docs/ha.md) on a loaded machine
LATE = {"during": ("late1", "02:00:00:0d:00:01", "10.0.1.41"), "at_end": ("late2", "02:00:00:0d:00:02", "10.0.1.42")}
POLL = {"during": 0.1, "at_end": 0.02}  # seconds between two looks at the standby's role / hold


def pair_settings(node, me, peer, priority, reflector, restart=None):
    return {"ha": {"node_id": node, "peer": peer.ip, "priority": priority, "heartbeat_interval_ms": 100,
                   "dead_interval_ms": 500, "secret": HA_SECRET},
            **bgp_settings(me, (reflector,)), "restart": restart or {"hold_time": HOLD_TIME}}


def pair_policy(me):
    """The shared tenant with the pair's RDs, plus the vports plugged after each takeover (LATE)."""
    doc = controller_policy(me)
    web = doc["tenants"][0]["domains"][0]["subnets"][0]
    web["vports"] += [{"name": name, "mac": mac, "ips": [ip], "binding": {"flavour": "kvm"}}
                      for name, mac, ip in LATE.values()]
    return doc


@pytest.fixture(scope="module")
def holdlab(lab_capable):
    from tests.harness.lab import Lab

    with Lab() as lab:
        ctl_a, ctl_b, ctl_c = (lab.add_controller_host(name) for name in ("ctla", "ctlb", "ctlc"))
        reflector = Reflector(gobgp.lab_gobgp_reflector(lab, ASN, (ctl_a, ctl_b, ctl_c), graceful=True))
        nodes, c = start_pair_and_c(lab, (ctl_a, ctl_b, ctl_c), reflector.host, None, "holdtake")
        hva, hvb = lab.add_hypervisor("hva", "kvm"), lab.add_hypervisor("hvb", "kvm")
        hva.connect([ctl_a, ctl_b])
        hvb.connect(ctl_c)
        vms = {name: lab.add_vm(hv, name, mac=MACS[name], vnic_id=name) for name, hv in (("a1", hva), ("b1", hvb))}
        sessions_and_leases(lab, [ctl.api for ctl in (*nodes.values(), c)], (reflector.host.ip,), vms,
                            "the three controllers' sessions with the reflector")
        reach(lab, vms["a1"], "10.0.1.21", timeout=30)
        yield lab, nodes, {"a": ctl_a, "b": ctl_b}, c, hva, vms, reflector


def start_pair_and_c(lab, hosts, reflector_host, restart, source) -> tuple[dict, object]:
    """({"a": A, "b": B}, C): the pair on ``hosts``' first two (A active, B standby; ``restart``: their restart
    settings, None: HOLD_TIME) and C on the third, clients of the reflector on ``reflector_host``, with their
    policies applied."""
    ctl_a, ctl_b, ctl_c = hosts
    nodes = {"a": lab.start_controller(ctl_a, pair_settings("a", ctl_a, ctl_b, 200, reflector_host, restart),
                                       name="canopya"),
             "b": lab.start_controller(ctl_b, pair_settings("b", ctl_b, ctl_a, 100, reflector_host, restart),
                                       name="canopyb")}
    c = lab.start_controller(ctl_c, bgp_settings(ctl_c, (reflector_host,)), name="canopyc")
    lab.wait_until(lambda: role(nodes["a"]) == "active" and role(nodes["b"]) == "standby", timeout=30,
                   what="A active, B standby")
    apply_policies(((nodes["a"].api, pair_policy(ctl_a)), (c.api, controller_policy(ctl_c))), source)
    return nodes, c


def hold(node) -> dict:
    return node.api.get("/v1/status").json["startup_hold"]


def back(node, reflector) -> bool:
    """The node is up, its start-up hold released, its session with the reflector up and End-of-RIB sent on it."""
    if not node.alive() or hold(node)["state"] != "synced":
        return False
    row = peers(node.api)[reflector.host.ip]
    return row["state"] == "up" and row["end_of_rib_sent"]


def settled_pair(lab, nodes, hosts, reflector, hva) -> tuple[str, str]:
    """(active, standby) once both nodes run (a node a previous case killed is started again, as standby), both are
    back, the active masters hva, and the reflector holds the pair's routes from the active only."""
    for node in nodes.values():
        if not node.alive():
            node.start()
    lab.wait_until(lambda: sorted(map(role, nodes.values())) == ["active", "standby"], timeout=30,
                   what="one node active, the other standby")
    act = next(name for name, node in nodes.items() if role(node) == "active")
    sby = next(name for name in nodes if name != act)
    lab.wait_until(lambda: all(back(node, reflector) for node in nodes.values()), timeout=90,
                   what="both nodes back: hold released, End-of-RIB sent")
    lab.wait_until(lambda: masters(hva) == [f"tcp:{hosts[act].ip}:6653"], timeout=15, what=f"{act} master of hva")
    pair_ips = {host.ip for host in hosts.values()}
    lab.wait_until(lambda: reflector.evpn_sources() & pair_ips == {hosts[act].ip}, timeout=60,
                   what="the pair's routes at the reflector from the active only")
    return act, sby


def kill(node) -> float:
    """SIGKILL ``node``; when (monotonic)."""
    node.kill()
    return time.monotonic()


class Looks:
    """The restarted standby's (role, start-up hold state), looked at again by each ``see``, with when each was
    first and last seen."""

    def __init__(self, node):
        self.node = node
        self.last = (None, None)
        self.first: dict[str, float] = {}
        self.last_seen: dict[str, float] = {}

    def see(self) -> tuple:
        self.last = (role(self.node), hold(self.node)["state"])
        now = time.monotonic()
        for thing in self.last:
            self.first.setdefault(thing, now)
            self.last_seen[thing] = now
        return self.last

    def when(self, thing: str) -> float:
        return self.first[thing]


def flow_monitor(lab, hv, name) -> Watch:
    """``ovs-ofctl monitor`` of every flow change on ``hv``'s br-int from now on (read by ``flow_changes``)."""
    log_path = lab.workdir / f"{name}.log"
    lab.spawn(name, ["ovs-ofctl", "-O", "OpenFlow13", "monitor", BR_INT, "watch:"], log_path, None, hv.ovs.env)
    monitor = Watch(log_path)
    lab.wait_until(lambda: monitor.peek().strip(), timeout=10, what=f"the flow monitor on {hv.name} (its first reply)")
    monitor.take()
    return monitor


def flow_changes(monitor) -> list[str]:
    """The flow changes the monitor reported since the last look."""
    return [line for line in monitor.take().splitlines() if "event=" in line]


def in_sync(node, hva) -> bool:
    status = node.api.get(f"/v1/switches/{hva.datapath_id():016x}/flows").json.get("status", {})
    return status.get("state") == "in_sync"


@pytest.mark.parametrize("when", ["during", "at_end"])
def test_the_active_dying_in_or_at_the_end_of_the_standbys_start_up_hold_touches_no_traffic(holdlab, when):
    lab, nodes, hosts, c, hva, vms, reflector = holdlab
    act, sby = settled_pair(lab, nodes, hosts, reflector, hva)
    new = nodes[sby]
    monitor = flow_monitor(lab, hva, f"monitor-{when}")
    looks, pinger = Looks(new), Pinger(vms["a1"], vms["b1"], "10.0.1.21")
    with Watched(pinger, lambda: flow_changes(monitor), "hva") as watched:
        pinger.wait_replies(lab, 100)
        routes = watched.routes = Watcher(reflector, c.api, {MACS["a1"]})  # a1's route at the reflector and at C
        with held_back(reflector, hosts[sby].ip):
            new.stop()
            new.start()
            lab.wait_until(lambda: looks.see() == ("standby", "syncing")
                           and {"kind": "bgp peer", "name": reflector.host.ip} in hold(new)["waiting_for"],
                           timeout=30, what=f"{sby} standby, its start-up hold waiting for the reflector")
            if when == "during":
                killed = kill(nodes[act])
                lab.wait_until(lambda: looks.see() == ("active", "syncing") or looks.last[0] == "active",
                               timeout=30, interval=POLL[when], what=f"{sby} takes over")
                assert looks.last == ("active", "syncing"), f"{sby} did not take over inside its hold: {looks.last}"
                lab.wait_until(lambda: masters(hva) == [f"tcp:{hosts[sby].ip}:6653"], timeout=15,
                               what=f"{sby} master of hva inside its hold")
                assert looks.see() == ("active", "syncing"), f"{sby}'s hold ended before it mastered hva"
        if when == "at_end":
            lab.wait_until(lambda: looks.see()[1] == "synced", timeout=60, interval=POLL[when],
                           what=f"{sby}'s start-up hold to end")
            killed = kill(nodes[act])
            assert looks.last == ("standby", "synced"), looks.last
            lab.wait_until(lambda: looks.see()[0] == "active", timeout=30, interval=0.1, what=f"{sby} takes over")
        took_over = looks.when("active") - killed
        lab.wait_until(lambda: back(new, reflector), timeout=90, what=f"{sby}'s hold over, End-of-RIB sent")
        released = time.monotonic() - killed
        lab.wait_until(lambda: masters(hva) == [f"tcp:{hosts[sby].ip}:6653"], timeout=15,
                       what=f"{sby} master of hva")
        lab.wait_until(lambda: in_sync(new, hva), timeout=30, what=f"hva in sync with {sby}")
        lab.wait_until(lambda: hosts[sby].ip in reflector.evpn_sources(), timeout=30,
                       what=f"the pair's routes at the reflector from {sby}")
        pinger.wait_replies(lab, 200)  # 2 s more, once the new active programs hva
    sent, got = watched.sent, watched.got
    ended = (f"hold over {released:.2f} s after the kill" if when == "during" else
             f"hold seen over within {killed - looks.last_seen['syncing']:.3f} s before the kill")
    print(f"\n{when}: {act} killed; {sby} active {took_over:.2f} s later, {ended} ({hold(new)['message']}); "
          f"{sent} pings, {got} replies, {sent - got} lost; a1's route missing in {len(routes.missing)} of "
          f"{routes.looks} looks")
    changes = flow_changes(monitor)
    assert not changes, f"{len(changes)} flow changes on hva across the takeover ({when}): {changes[:5]}"
    pinger.check(sent, got, 300, f"across the takeover {when} {sby}'s start-up hold")
    assert routes.looks > 10
    assert not routes.missing, f"a1's route left the reflector or C: {routes.missing[:3]}, {len(routes.missing)} looks"
    name, mac, ip = LATE[when]  # the new active programs what comes next: a VM plugged now
    vm = vms[name] = lab.add_vm(hva, name, mac=mac, vnic_id=name)
    assert dhcp(lab, vm).get("ip") == ip, f"{name}: no DHCP lease from {sby}"
    lab.wait_until(lambda: mac in received_macs(c.api), timeout=30, what=f"{name}'s route at C")
    reach(lab, vm, "10.0.1.21", timeout=30)
