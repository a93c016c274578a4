"""The first packet between two hypervisors is not lost (openflow/tunnel_warm.py).

Open vSwitch's userspace datapath drops a packet to a VTEP whose underlay MAC its tunnel neighbour cache does not
hold yet, and only then resolves it. Before the controller made each VRS resolve its VTEPs ahead, the first ping
between VMs on two hypervisors that had not exchanged traffic lost its first request, however long after both VMs
were bound. Here the first ping of each pair of hypervisors, sent as soon as both switches are in sync, must be
answered in full: bridged within a subnet, and routed between hypervisors that share no subnet (only the domain's
routes name the other VTEP there, no flood list does); and after a quiet spell longer than Open vSwitch's ageing of
those entries (the periodic refresh); and after the first ARP replies towards a hypervisor were lost (the probes
sent once more)."""

from __future__ import annotations

import re
import time

import pytest

from tests.harness import netns
from tests.integration.test_federation import VPORTS, policy

pytestmark = pytest.mark.integration

ADDRESSES = {v["name"]: (v["mac"], v["ips"][0]) for v in VPORTS}
PLACES = {"a1": ("hva", "/24"), "b1": ("hvb", "/24"), "b2": ("hvc", "/24")}  # a1, b1: web; b2: db


AGING = 3  # seconds: Open vSwitch's tunnel neighbour ageing in the refresh test (tnl/neigh/aging; 900 by default)


def build(lab, settings=None, aging=None):
    """One controller, three KVM hypervisors connected first, then a VM on each; returns (hosts, vms) once every
    vport is bound and every switch in sync. ``aging``: Open vSwitch's tunnel neighbour ageing on each, seconds."""
    ctl = lab.add_controller_host("ctl")
    canopy = lab.start_controller(ctl, settings)
    reply = canopy.api.post("/v1/apply", {"document": policy([dict(v) for v in VPORTS]), "source": "firstping"})
    assert reply.status == 200, reply.text
    hosts = {name: lab.add_hypervisor(name, "kvm") for name in ("hva", "hvb", "hvc")}
    for hv in hosts.values():
        if aging is not None:
            hv.ovs.appctl("tnl/neigh/aging", str(aging))
        hv.connect(ctl)
    vms = {}
    for name, (host, prefix) in PLACES.items():
        mac, ip = ADDRESSES[name]
        vms[name] = lab.add_vm(hosts[host], name, mac=mac, ip=ip + prefix, vnic_id=name)
        vms[name].exec("ip", "route", "add", "default", "via", ip.rsplit(".", 1)[0] + ".1", check=True)
    lab.wait_until(lambda: canopy.api.get("/v1/status").json["vports_bound"] == len(PLACES), timeout=30,
                   what="every vport bound")
    for hv in hosts.values():
        dpid = f"{hv.datapath_id():016x}"
        lab.wait_until(lambda: canopy.api.get(f"/v1/switches/{dpid}/flows").json.get("in_sync"), timeout=30,
                       what=f"{hv.name} in sync")
    return hosts, vms


@pytest.fixture(scope="module")
def fabric(lab_capable):
    """One fabric for the two tests that ping as soon as every switch is in sync: each pings between a pair of
    hypervisors the other does not (hvb and hva; hva and hvc), and each VTEP's MAC is resolved on its own (one flat
    underlay, no router between them), so neither's ping resolves anything the other's first ping needs."""
    from tests.harness.lab import Lab

    with Lab() as lab:
        yield build(lab)


def first_ping(src, dst_ip, hosts) -> str:
    """``ping -c 2`` once; fails unless both requests are answered, showing the tunnel neighbour caches."""
    out = src.exec("ping", "-n", "-c", "2", "-W", "2", dst_ip, timeout=15).stdout
    received = re.search(r"(\d+) received", out)
    caches = {name: hv.ovs.appctl("tnl/neigh/show") for name, hv in hosts.items()}
    assert received and received.group(1) == "2", f"{src.name} -> {dst_ip}:\n{out}\ncaches: {caches}"
    return out


def test_first_ping_within_a_subnet_across_hypervisors_loses_nothing(fabric):
    hosts, vms = fabric
    first_ping(vms["b1"], ADDRESSES["a1"][1], hosts)


def test_first_routed_ping_between_hypervisors_sharing_no_subnet_loses_nothing(fabric):
    hosts, vms = fabric
    out = first_ping(vms["a1"], ADDRESSES["b2"][1], hosts)
    assert re.search(r"ttl=6[23]", out), out  # routed: it went through the distributed router


def test_first_ping_after_a_quiet_spell_longer_than_the_neighbour_ageing_loses_nothing(lab):
    """Probed again every second (vrs.tunnel_probe_refresh_ms), the hypervisors keep each other's entries through
    a quiet spell of over twice their ageing (the first probes' entries, and a single refresh's, would have aged
    out: Open vSwitch counts it in whole seconds, hence the second more); probed once only, they would have
    forgotten them (checked: without the refresh, the ping after this spell got 0 of 2 answers). The first probes are
    not sent again (vrs.tunnel_probe_retry_ms 0), so that only the refresh rounds keep the entries."""
    hosts, vms = build(lab, {"vrs": {"tunnel_probe_refresh_ms": 1000, "tunnel_probe_retry_ms": 0}}, aging=AGING)
    time.sleep(2 * AGING + 1)  # nothing between the VMs meanwhile
    first_ping(vms["b1"], ADDRESSES["a1"][1], hosts)


RETRY = 10  # seconds: vrs.tunnel_probe_retry_ms in the lost-replies test (the rule must go before the retry)
DROP_REPLIES_TO_HVA = ["FORWARD", "-o", "u-hva", "-p", "ARP", "--arp-op", "Reply", "-j", "DROP"]  # on the fabric


def replies_dropped(lab) -> int:
    out = netns.run(["ebtables", "-L", "FORWARD", "--Lc"], ns=lab.fabric_ns).stdout
    counted = re.search(r"-o u-hva --arp-op Reply -j DROP , pcnt = (\d+)", out)
    assert counted, out
    return int(counted.group(1))


def test_first_ping_after_the_first_arp_replies_to_a_hypervisor_were_lost_loses_nothing(lab):
    """The underlay switch drops every ARP reply towards hva until it has dropped two (hvb's and hvc's answers to
    hva's probes), as a starved hypervisor loses them: hva resolved neither. Its probes sent once more
    vrs.tunnel_probe_retry_ms later resolve them, and the first ping from hva after that is answered in full;
    sent once only, they would be sent again at the next refresh round (5 min), and the ping's first request lost.
    The ebtables rule goes with the lab's fabric namespace if the test fails before it deletes it."""
    netns.run(["ebtables", "-A", *DROP_REPLIES_TO_HVA], ns=lab.fabric_ns)
    hosts, vms = build(lab, {"vrs": {"tunnel_probe_retry_ms": RETRY * 1000}})
    lab.wait_until(lambda: replies_dropped(lab) >= 2, timeout=RETRY, interval=0.05,
                   what="hvb's and hvc's ARP replies to hva's probes dropped")
    dropped = replies_dropped(lab)  # more than 2: the second probes' too (the rule went too late: raise RETRY)
    netns.run(["ebtables", "-D", *DROP_REPLIES_TO_HVA], ns=lab.fabric_ns)
    cache = hosts["hva"].ovs.appctl("tnl/neigh/show")
    assert hosts["hvb"].vtep_ip not in cache, cache  # really lost: hva does not know hvb's MAC
    lab.wait_until(lambda: hosts["hvb"].vtep_ip in hosts["hva"].ovs.appctl("tnl/neigh/show"), timeout=3 * RETRY,
                   interval=0.2, what=f"hva resolved hvb by its second probe ({dropped} ARP replies dropped)")
    first_ping(vms["a1"], ADDRESSES["b1"][1], hosts)
