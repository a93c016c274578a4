"""Flood groups split into parts (openflow/floods.py) against real Open vSwitch (userspace datapath).

- 2,000 local ports of one subnet (and two VTEPs): the groups, each under OpenFlow's 64 KiB, are taken by the
  switch (dump-groups), read back over the bridge's management socket as Ryu parses them (controller/groupdesc.py's
  lazy entries against Ryu's own parser, on OVS's bytes), a restart's read-back sends nothing, and the subnet shrinks
  and grows across part boundaries (OpenFlow 1.3: messages and a barrier; 1.4: one bundle).
- A broadcast from one VM reaches the VMs in the first and in the last part, with the part size lowered to 2
  buckets by the test hook ``CANOPY_FLOOD_PART_BUCKETS`` (5 VMs of one subnet on one hypervisor: 3 parts).
"""

from __future__ import annotations

import re
import time

import pytest

from openflow import floods
from openflow import pipeline as p
from openflow.flows import flow
from tests.harness import netns
from tests.integration.test_reconciler import rig, started  # noqa: F401 (rig: the fixture)
from tests.unit.flow_samples import FLOWS, GROUPS, SUBNET
from tests.unit.test_oversized_group import local, remote

pytestmark = pytest.mark.integration

VNI = 7000
EVERYONE, LOCAL_ONLY = floods.group_ids(VNI)
FLOODS = (flow(p.L2_LOOKUP, 30, {"reg5": VNI}, [("group", EVERYONE)], SUBNET),
          flow(p.L2_LOOKUP, 31, {"reg5": VNI, "reg0": 2}, [("group", LOCAL_ONLY)], SUBNET))


def flood_groups(locals_: int, remotes: int = 2) -> tuple:
    return floods.flood_groups(EVERYONE, LOCAL_ONLY, tuple(map(local, range(locals_))),
                               tuple(map(remote, range(remotes))), SUBNET)


def dumped(rig) -> dict:
    """group id -> buckets of every group on br-int (a reply of more than 64 KiB comes in parts, each with its
    own header line)."""
    out = {}
    for line in rig.groups():
        found = re.match(r"group_id=(\d+),type=all", line)
        if found:
            out[int(found.group(1))] = line.count("bucket=")
    return out


def expect(groups: tuple) -> dict:
    return {**{g.group_id: len(g.buckets) for g in GROUPS}, **{g.group_id: len(g.buckets) for g in groups}}


def mods(entry: dict, before: dict | None = None) -> dict:
    sent = entry["status"]["sent"]
    kinds = ("flow_add", "flow_delete", "group_add", "group_modify", "group_delete")
    return {k: sent[k] - (before or {}).get(k, 0) for k in kinds}


def test_two_thousand_local_ports_are_flooded_by_groups_the_switch_takes_and_a_restart_sends_nothing(rig):
    """About 5-10 s a protocol (9 at a load of 10): three group sets of up to 3,001 buckets written and dumped, one
    driver restart."""
    groups = flood_groups(2000)
    assert len(groups) == 4 and max(len(g.buckets) for g in groups) == floods.PART_BUCKETS  # 2 parts, 2 heads
    entry = started(rig, FLOWS + FLOODS, GROUPS + groups)
    assert entry["status"]["rejected"] == 0, rig.log()[-2000:]
    assert dumped(rig) == expect(groups) and len(rig.flows()) == len(FLOWS) + len(FLOODS)
    read_back_as_ryu_parses(rig, GROUPS + groups)
    rig.hv.set_max_backoff(1000)  # back within a second of the driver's start, not after 1, 2, 4 s (docs/vrs.md)
    rig.stop_driver()
    rig.start_driver()
    entry = rig.synced()
    assert mods(entry) == dict.fromkeys(mods(entry), 0)  # read back, compared by content: nothing rewritten
    for locals_, added, deleted in ((900, 0, 2), (3001, 4, 0)):  # plain (parts deleted); 4 parts (added)
        before = entry["status"]["sent"]
        groups = flood_groups(locals_)
        rig.desire(FLOWS + FLOODS, GROUPS + groups)
        entry = rig.synced()
        assert entry["status"]["rejected"] == 0 and dumped(rig) == expect(groups), locals_
        changed = mods(entry, before)
        assert (changed["group_add"], changed["group_delete"], changed["flow_add"]) == (added, deleted, 0), locals_
    assert len(rig.flows()) == len(FLOWS) + len(FLOODS)  # no flood flow went with a group deleted


def read_back_as_ryu_parses(rig, groups) -> None:
    """The bridge's group-description reply, as OVS writes it (its 1,000-bucket parts a message each): Canopy's lazy
    entries (controller/groupdesc.py) say what Ryu's whole parse says, bucket by bucket, and decode to ``groups``."""
    from controller.ryu_compat import ofproto_protocol
    from openflow import decode
    from tests.integration.ofcapture import MP_GROUP_DESC, multipart
    from tests.unit.test_group_desc_lazy import parsed, same_as_ryus

    version = 5 if rig.mode == "bundle" else 4
    replies = multipart(rig.hv.ovs.rundir, "br-int", version, MP_GROUP_DESC)
    assert len(replies) >= 2 and min(map(len, replies)) > 45_000, [len(r) for r in replies]  # (a part per message)
    ofp, read = ofproto_protocol.ProtocolDesc(version).ofproto, {}
    for message in replies:
        same_as_ryus(version, message)
        read.update({entry.group_id: decode.decode_group(ofp, entry) for entry in parsed(version, message)})
    assert read == {g.group_id: g for g in groups}


BROADCAST_PORT = 9999


def listener(lab, vm, round_: str):
    """A process in ``vm`` that prints the first UDP datagram to BROADCAST_PORT (any address), bounded to 20 s."""
    code = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
            f"s.bind(('', {BROADCAST_PORT})); s.settimeout(20); print(s.recvfrom(100)[0].decode(), flush=True)")
    path = lab.workdir / f"listen-{vm.name}-{round_}.log"
    lab.spawn(f"listen-{vm.name}-{round_}", ["python3", "-c", code], path, vm.ns)
    return path


def test_a_broadcast_reaches_the_vms_in_the_first_and_the_last_part(lab, monkeypatch):
    """About 9 s: a controller, a hypervisor and 5 VMs started, two broadcasts sent (each every 0.8 s until heard)."""
    monkeypatch.setenv("CANOPY_FLOOD_PART_BUCKETS", "2")  # the controller's environment (the lab's spawn keeps it)
    ctl = lab.add_controller_host("ctl")
    canopy = lab.start_controller(ctl)
    names = [f"v{i}" for i in range(1, 6)]
    vports = [{"name": n, "mac": f"02:00:00:07:00:0{i}", "ips": [f"10.0.7.1{i}"], "binding": {"flavour": "kvm"}}
              for i, n in enumerate(names, 1)]
    document = {"tenants": [{"name": "acme", "domains": [{"name": "prod", "subnets": [
        {"name": "web", "cidr": "10.0.7.0/24", "gateway": "10.0.7.1", "vni": VNI, "vports": vports}]}]}]}
    reply = canopy.api.post("/v1/apply", {"document": document, "source": "floodparts"})
    assert reply.status == 200, reply.text
    hv = lab.add_hypervisor("hv1", "kvm")
    hv.connect(ctl)
    vms = [lab.add_vm(hv, v["name"], mac=v["mac"], ip=v["ips"][0] + "/24", vnic_id=v["name"]) for v in vports]
    lab.wait_until(lambda: canopy.api.get("/v1/status").json["vports_bound"] == len(vms), timeout=30,
                   what="every vport bound")
    dpid = f"{hv.datapath_id():016x}"
    lab.wait_until(lambda: canopy.api.get(f"/v1/switches/{dpid}/flows").json.get("in_sync"), timeout=30,
                   what="hv1 in sync")
    groups = {}
    for line in hv.ofctl("dump-groups", "br-int").splitlines()[1:]:
        found = re.match(r"\s*group_id=(\d+),type=all,(.*)", line)
        if found:
            groups[int(found.group(1))] = found.group(2)
    parts = [floods.part_id(LOCAL_ONLY, n) for n in (1, 2, 3)]
    assert groups[LOCAL_ONLY] == ",".join(f"bucket=actions=group:{g}" for g in parts), groups
    assert [groups[g].count("bucket=") for g in parts] == [2, 2, 1], groups
    assert groups[EVERYONE] == f"bucket=actions=group:{LOCAL_ONLY}", groups  # no other VTEP
    send = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            "s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1); "
            "s.sendto(b'flood41', ('10.0.7.255', %d))" % BROADCAST_PORT)
    # from the first VM and from the last: each part holds a VM other than the sender in one of the two rounds
    for sender in (vms[0], vms[-1]):
        heard = {vm.name: listener(lab, vm, sender.name) for vm in vms if vm is not sender}

        def all_heard():
            netns.run(["python3", "-c", send], ns=sender.ns)
            time.sleep(0.2)
            return all("flood41" in path.read_text() for path in heard.values())

        lab.wait_until(all_heard, timeout=15, interval=0.8, what=f"{sender.name}'s broadcast heard by every other VM")
