"""A node that starts with its HA link cut, beside a live active, while a new hypervisor connects to both
(faults50): it must not go active. The switch's Controller rows are there before OVS has published their roles;
a node that counted such a switch as free went active beside the active (split brain: OVSDB writes, EVPN routes).
Now the switch cannot be judged until OVS publishes, then shows the active as master: the node stays undecided
(docs/ha.md "Switches that cannot be judged yet")."""

from __future__ import annotations

import time

import pytest

from tests.integration.test_ha import HA_SECRET
from tests.integration.test_ha_writes import RoleSampler, masters, role

pytestmark = pytest.mark.integration

HA_PORT = 6690
WATCH_S = 16.0  # past B's startup wait (4 dead intervals of 1 s) and the bound on unpublished roles (10 s)


def node_settings(node, peer):
    return {"ha": {"node_id": node, "peer": peer.ip, "priority": 100, "secret": HA_SECRET, "solo": True}}


def cut_ha_link(host) -> None:
    """Drop the HA link (TCP 6690, both directions) in ``host``'s namespace only."""
    for rule in (["-p", "tcp", "--dport", str(HA_PORT), "-j", "DROP"],
                 ["-p", "tcp", "--sport", str(HA_PORT), "-j", "DROP"]):
        done = host.exec("iptables", "-A", "INPUT", *rule)
        assert done.returncode == 0, done.stderr


def test_a_node_started_with_its_ha_link_cut_does_not_go_active_on_a_new_switch(lab):
    host_a, host_b = lab.add_controller_host("ctla"), lab.add_controller_host("ctlb")
    ctl_a = lab.start_controller(host_a, node_settings("a", host_b), name="canopya")
    lab.wait_until(lambda: role(ctl_a) == "active", timeout=30, what="A active")
    hv = lab.add_hypervisor("kvm1", "kvm")
    cut_ha_link(host_b)
    ctl_b = lab.start_controller(host_b, node_settings("b", host_a), name="canopyb")
    hv.connect([host_a, host_b])  # a new switch, while B still waits for its peer
    with RoleSampler({"a": ctl_a, "b": ctl_b}) as sampler:
        deadline = time.monotonic() + WATCH_S
        while time.monotonic() < deadline:
            time.sleep(0.5)
    assert sampler.rounds and not sampler.both_active(), \
        f"both nodes active in {len(sampler.both_active())} of {len(sampler.rounds)} rounds"
    assert role(ctl_a) == "active" and role(ctl_b) != "active"
    assert masters(hv) == [f"tcp:{host_a.ip}:6653"]
    switches = ctl_b.api.get("/v1/ha").json["switches"]
    assert switches == {"seen": 1, "reporting_a_master": 1, "roles_unpublished": 0}, switches
