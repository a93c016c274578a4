"""The external gateway's MAC resolved by ARP survives an HA takeover (controller/gatewaykeep.py, docs/external.md
"The gateway's MAC"): a pair drives one hypervisor with a floating IP on it; the external network has no static
gateway_mac, so the active resolves the outside host (the gateway) by ARP and sends the MAC to the standby. The
outside host then stops answering ARP (arptables in its namespace drops its replies) and the active is killed: the
new active, which cannot resolve the gateway itself, still sends the VM's translated traffic to it (the VM pings
the outside host by its floating IP and gets answers), changes no flow on the hypervisor (its compiled flows were
the old active's), shows the MAC as ``replicated``, and forgets it once the timeout has passed since the old active
last heard it; when the gateway answers again it is ``arp``. Before this change the new active sent nothing
translated out until the gateway answered its ARP, and its first pass removed the translation flows."""

from __future__ import annotations

import time

import pytest

from tests.integration.test_ha_garps import OUTSIDE_IP, OUTSIDE_MAC, floating_ip_world
from tests.integration.test_ha_garps import POLICY as GARPS_POLICY
from tests.integration.test_ha_hold_takeover import flow_changes, flow_monitor, in_sync
from tests.integration.test_ha_writes import masters, pair_settings, role

pytestmark = pytest.mark.integration

REFRESH_MS, TIMEOUT_MS = 1000, 20000  # vrs.gateway_arp_refresh_ms, vrs.gateway_arp_timeout_ms of both nodes
# (the takeover and the checks under B must fit in TIMEOUT_MS - 2 s: B active up to ~5 s after the kill, OVS's
# statistics interval, docs/ha.md, then 1-2 s; 9.8 s at load 8 when it also waited for hv1's table to show B master)
DROP_REPLIES = ["OUTPUT", "--opcode", "2", "-j", "DROP"]  # the outside host's ARP replies
POLICY = {**GARPS_POLICY,  # the same world, the gateway's MAC not given: the active resolves it by ARP
          "external_networks": [{"name": "public", "cidr": "203.0.113.0/24", "gateway": OUTSIDE_IP}]}


def settings(node, peer, priority):
    return {**pair_settings(node, peer, priority),
            "vrs": {"gateway_arp_refresh_ms": REFRESH_MS, "gateway_arp_timeout_ms": TIMEOUT_MS}}


def gateway(ctl) -> tuple:
    """(MAC, origin) of hv1's gateway on the network, as ``ctl`` shows it; None if it does not answer."""
    try:
        net_id = ctl.api.get("/v1/external-networks?name=public").json["items"][0]["id"]
        [gw] = [g for g in ctl.api.get(f"/v1/external-networks/{net_id}/stats").json["gateways"]
                if g["chassis"] == "hv1"]
    except Exception:  # noqa: BLE001 - a controller not answering yet, or hv1 not translating yet
        return None
    return gw["mac"], gw["origin"]


def test_a_new_active_sends_translated_traffic_to_the_gateway_mac_the_old_one_resolved(lab_capable):
    from tests.harness.lab import Lab

    with Lab() as lab:
        hosts = {"a": lab.add_controller_host("ctla"), "b": lab.add_controller_host("ctlb")}
        ctls = {"a": lab.start_controller(hosts["a"], settings("a", hosts["b"], 200), name="canopya"),
                "b": lab.start_controller(hosts["b"], settings("b", hosts["a"], 100), name="canopyb")}
        lab.wait_until(lambda: role(ctls["a"]) == "active" and role(ctls["b"]) == "standby", timeout=30,
                       what="A active, B standby")
        hv, outside, vm = floating_ip_world(lab, ctls, hosts, POLICY, "gwmac")
        lab.wait_until(lambda: gateway(ctls["a"]) == (OUTSIDE_MAC, "arp"), timeout=30, what="A resolved the gateway")
        lab.wait_until(lambda: gateway(ctls["b"]) == (OUTSIDE_MAC, "replicated"), timeout=30,
                       what="B holds the MAC A resolved")
        lab.wait_until(lambda: vm.ping(OUTSIDE_IP, timeout=1), timeout=20, what="vm1 reaches the outside under A")

        monitor = flow_monitor(lab, hv, "monitor-hv1")
        outside.exec("arptables", "-A", *DROP_REPLIES, check=True)
        blocked = time.monotonic()  # A heard the gateway last at most about a refresh before this
        ctls["a"].kill()
        lab.wait_until(lambda: role(ctls["b"]) == "active", timeout=30, what="B takes over")
        # B's first pass over hv1 done (it reads hv1's flows back once its master): what B keeps or removes is
        # there by then. (hv1's Controller table shows B master only with OVS's next statistics, up to 5 s later:
        # looked at once the MAC is checked, so that the wait does not eat into the time before B forgets it.)
        lab.wait_until(lambda: in_sync(ctls["b"], hv), timeout=30, what="B in sync with hv1")
        left = blocked + TIMEOUT_MS / 1000 - 2 - time.monotonic()  # before B forgets the MAC
        assert left > 5, f"the takeover took too long to test anything: {left:.1f} s left"
        lab.wait_until(lambda: vm.ping(OUTSIDE_IP, timeout=1), timeout=left,
                       what="vm1 reaches the outside under B, the gateway not answering ARP")
        assert gateway(ctls["b"]) == (OUTSIDE_MAC, "replicated")  # B heard no answer itself
        time.sleep(1)  # a pass that would still send something
        changes = flow_changes(monitor)
        assert time.monotonic() < blocked + TIMEOUT_MS / 1000 - 2, "the takeover took too long to look at the flows"
        assert not changes, f"{len(changes)} flow changes on hv1 across the takeover: {changes[:5]}"
        lab.wait_until(lambda: masters(hv) == [f"tcp:{hosts['b'].ip}:6653"], timeout=30, what="B master of hv1")

        lab.wait_until(lambda: gateway(ctls["b"]) == (None, "unresolved"), timeout=TIMEOUT_MS / 1000 + 20,
                       what="the silent gateway forgotten by B")
        forgotten = time.monotonic() - blocked
        assert forgotten > TIMEOUT_MS / 1000 - REFRESH_MS / 1000 - 1, f"forgotten {forgotten:.1f} s after the block"
        # B's REST answers the MAC forgotten before its next pass has changed hv1's flows (a busy machine: a ping
        # got through in between): the flows that stood for the MAC change, then B is in sync with hv1 again
        lab.wait_until(lambda: flow_changes(monitor), timeout=20, what="hv1's flows changed for the forgotten MAC")
        lab.wait_until(lambda: in_sync(ctls["b"], hv), timeout=30, what="B in sync with hv1 after the forget")
        assert not vm.ping(OUTSIDE_IP, timeout=2)  # nothing leaves translated without the MAC
        outside.exec("arptables", "-D", *DROP_REPLIES, check=True)
        lab.wait_until(lambda: gateway(ctls["b"]) == (OUTSIDE_MAC, "arp"), timeout=30, what="B resolved it")
        lab.wait_until(lambda: vm.ping(OUTSIDE_IP, timeout=1), timeout=20, what="vm1 reaches the outside again")
