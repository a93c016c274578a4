"""What a subnet's flood groups cost at N local ports of one VRS: split into parts (openflow/floods.py) against one
group per flood group (before: not encodable past ~1,360 ports; here encoded as if OpenFlow allowed it).

    .venv/bin/python -m tests.benchmarks.flood_parts [--ports 2000 5000] [--remotes 2] [--repeat 5] [--ovs]

In process (a reconciler of OpenFlow 1.4 and a stand-in switch that takes the bytes and answers each commit at
once): the first install of the groups, then one port added at the end of the subnet; per step the group-mods sent,
their bytes and the reconciler's CPU (``time.thread_time`` of plan, encode and send, medians of ``--repeat``
interleaved runs of the two variants). The single groups' length fields are cut to 16 bits (their bytes counted
whole): a switch would refuse them, this only measures the work.

``--ovs`` (root, Open vSwitch): the split groups into a real netdev bridge with ``ovs-ofctl --bundle add-groups``
(ovs-vswitchd's CPU, ``/proc/PID/stat``), the one-port change with ``mod-group``; and whether a broadcast from a
local port is flooded at all (``ofproto/trace``) through Canopy's pipeline shape: 4 table hops before the flood
group (classify, port security, ingress ACL, services, L2 lookup) and per local port the bucket's resubmit to the
egress ACL and its hop to egress; Open vSwitch gives up past 4,096 resubmits ("Too many resubmits"). Then (review41f)
the same with VTEP buckets to a VXLAN port ``remote_ip=flow`` tunnelled natively over the lab's br-phy (the userspace
datapath, as every VRS of tests/harness): each VTEP takes a resubmit too (its tunnel's translation through br-phy)
and about 84 bytes of datapath actions, which Open vSwitch caps at 64 kB ("resubmits yielded over 64 kB of actions":
the VTEPs past it get no copy). Not collected by pytest.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import statistics
import struct
import subprocess
import time

from controller.ryu_compat import hub, ofproto_protocol
from openflow import encode, floods
from openflow import pipeline as p
from openflow.flows import Group, Owner, render_group
from openflow.reconciler import SwitchReconciler

VNI = 7000
EVERYONE, LOCAL_ONLY = floods.group_ids(VNI)
OWNER = Owner("subnet", "s")


class Switch:
    """A datapath of OpenFlow 1.4 that takes the bytes and answers every commit at once."""

    def __init__(self):
        desc = ofproto_protocol.ProtocolDesc(5)
        self.id, self.ofproto, self.ofproto_parser, self.xid = 1, desc.ofproto, desc.ofproto_parser, 0
        self.address = ("10.0.0.1", 1)
        self.rec, self.sent = None, 0

    def send(self, data):
        self.sent += len(data)
        for waiter in self.rec._waiters.values():
            waiter.event.set()

    def send_msg(self, msg):
        pass


def local(i: int) -> tuple:
    return ("set", p.REG_OUT, 100 + i), ("resubmit", p.EGRESS_ACL)


def remote(i: int) -> tuple:
    return ("set", "tunnel_id", VNI), ("set", "tun_ipv4_dst", f"10.1.{i // 250}.{i % 250 + 1}"), ("output", 7)


def groups_of(n: int, remotes: int, split: bool, middle: int = 0) -> list:
    """The flood groups of local ports 0..n-1 and then ``middle`` more ports placed in the middle of them (a vport's
    place in its subnet is its id's: a random UUID's)."""
    ports = list(range(n))
    ports[n // 2:n // 2] = range(n, n + middle)
    lo, re_ = tuple(map(local, ports)), tuple(map(remote, range(remotes)))
    if split:
        return list(floods.flood_groups(EVERYONE, LOCAL_ONLY, lo, re_, OWNER))
    return [Group(EVERYONE, lo + re_, OWNER), Group(LOCAL_ONLY, lo, OWNER)]


class _Unlimited(struct.Struct):
    """A header Struct whose 16-bit length field (index 2) wraps instead of raising: the single groups' bytes."""

    def pack(self, *values):
        values = list(values)
        values[2] &= 0xFFFF
        return super().pack(*values)


def _unlimited() -> None:
    encode.MAX_MESSAGE = 1 << 30
    encode._GROUP_MOD = _Unlimited(encode._GROUP_MOD.format)
    encode._BUNDLE_ADD = _Unlimited(encode._BUNDLE_ADD.format)


def _limited(saved) -> None:
    encode.MAX_MESSAGE, encode._GROUP_MOD, encode._BUNDLE_ADD = saved


def one_run(n: int, remotes: int, split: bool) -> dict:
    """Install, then one port more at the end, then one in the middle: {step: (group-mods, bytes, CPU s)}."""
    saved = encode.MAX_MESSAGE, encode._GROUP_MOD, encode._BUNDLE_ADD
    if not split:
        _unlimited()
    try:
        switch = Switch()
        rec = switch.rec = SwitchReconciler(switch, log=logging.getLogger("bench.flood_parts"))
        rec._need_read = False
        rec._book.read_back({})
        out = {}
        for step, ports, middle in (("install", n, 0), ("one port more at the end", n + 1, 0),
                                    ("one port more in the middle", n + 1, 1)):
            groups = groups_of(ports, remotes, split, middle)
            mods = sum(rec.counters[k] for k in ("group_add", "group_modify", "group_delete"))
            sent = switch.sent
            cpu = time.thread_time()
            rec.set_desired([], groups)
            with hub.Timeout(60):
                rec._sync()
            cpu = time.thread_time() - cpu
            assert not rec._rejected_groups, rec._rejected_groups
            out[step] = (sum(rec.counters[k] for k in ("group_add", "group_modify", "group_delete")) - mods,
                         switch.sent - sent, cpu)
        return out
    finally:
        _limited(saved)


def in_process(n: int, remotes: int, repeat: int) -> dict:
    runs = {True: [], False: []}
    for _ in range(repeat):  # interleaved
        for split in (True, False):
            runs[split].append(one_run(n, remotes, split))
    out = {}
    for split, results in runs.items():
        name = "split" if split else "single"
        for step in results[0]:
            mods, sent, _ = results[0][step]
            cpu = statistics.median(r[step][2] for r in results)
            out[f"{name} {step}"] = f"{mods} group-mods, {sent:,} bytes, {cpu * 1000:.1f} ms CPU"
    return out


# --------------------------------------------------------------------------------------------------- real OVS

def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def on_ovs(sizes, remotes: int) -> dict:
    from tests.harness.lab import Lab
    out = {}
    with Lab() as lab:
        hv = lab.add_hypervisor("hv1")
        vswitchd = hv.ovs.processes[-1].pid
        env = {**os.environ, **hv.ovs.env}

        def ofctl(*args):
            subprocess.run(["ovs-ofctl", "-O", "OpenFlow14", *args], env=env, timeout=600, check=True,
                           capture_output=True)

        def timed(*args):
            cpu = cpu_seconds(vswitchd)
            ofctl(*args)
            time.sleep(0.5)
            return cpu_seconds(vswitchd) - cpu

        for n in sizes:
            bridge = f"br-f{n}"
            hv.ovs.add_bridge(bridge, "fail_mode=secure", "protocols=OpenFlow13,OpenFlow14")
            path = lab.workdir / f"groups-{n}.txt"
            groups = groups_of(n, remotes, True)
            path.write_text("\n".join(map(render_group, sorted(groups, key=lambda g: floods.send_rank(g.group_id))))
                            + "\n")
            install = timed("--bundle", "add-groups", bridge, str(path))
            after = {g.group_id: g for g in groups_of(n + 1, remotes, True)}
            changed = [g for g in after.values() if g not in groups]
            more = [timed("mod-group" if g.group_id in {x.group_id for x in groups} else "add-group", bridge,
                          render_group(g)) for g in sorted(changed, key=lambda g: floods.send_rank(g.group_id))]
            dumped = subprocess.run(["ovs-ofctl", "-O", "OpenFlow14", "dump-groups", bridge], env=env,
                                    capture_output=True, text=True, check=True).stdout.count("group_id=")
            out[f"{n} ports on OVS"] = (f"{len(groups)} groups ({dumped} dumped after one port more); vswitchd "
                                        f"CPU (10 ms ticks, 0.5 s idle included) add-groups {install:.3f} s, one "
                                        f"port more {len(changed)} group-mod(s) {sum(more):.3f} s")
        for n in sizes + [2040, 2046, 2047, 2050]:
            out[f"broadcast from a local port, {n} ports"] = flooded(lab, hv, n)
        for n, remotes_ in ((2000, 92), (2000, 93), (0, 770), (0, 800), (0, 1000)):
            out[f"broadcast from a local port, {n} ports and {remotes_} VTEPs"] = flooded(lab, hv, n, remotes_)
    return out


def vtep(i: int, ofport: int) -> tuple:
    """A VTEP bucket to 10.251.4.0 + i (the lab's underlay, reached over br-phy: its neighbor entry is set)."""
    return ("set", "tunnel_id", VNI), ("set", "tun_ipv4_dst", f"10.251.{4 + i // 250}.{i % 250 + 1}"), \
        ("output", ofport)


def flooded(lab, hv, n: int, remotes: int = 0) -> str:
    """ofproto/trace of a broadcast through Canopy's pipeline shape (module docstring) at ``n`` local ports and
    ``remotes`` VTEPs (a VXLAN port of its own, removed with the bridge after the trace: the userspace datapath
    takes one VXLAN port on UDP 4789)."""
    bridge = f"br-t{n}-{remotes}"
    hv.ovs.add_bridge(bridge, "fail_mode=secure", "protocols=OpenFlow13,OpenFlow14", "datapath_type=netdev")
    port = f"t{n}-{remotes}"
    hv.vsctl("add-port", bridge, port, "--", "set", "Interface", port, "type=internal")
    lo, vteps = tuple(map(local, range(n))), ()
    if remotes:
        hv.vsctl("add-port", bridge, "vx-t", "--", "set", "Interface", "vx-t", "type=vxlan", "ofport_request=100",
                 "options:remote_ip=flow", "options:key=flow")
        vteps = tuple(vtep(i, 100) for i in range(remotes))
        for i in range(remotes):
            hv.ovs.appctl("tnl/neigh/set", "br-phy", vtep(i, 100)[1][2], f"02:00:00:aa:{i >> 8:02x}:{i & 255:02x}")
    groups = floods.flood_groups(EVERYONE, LOCAL_ONLY, lo, vteps, OWNER)
    path = lab.workdir / f"trace-groups-{n}-{remotes}.txt"
    path.write_text("\n".join(map(render_group, sorted(groups, key=lambda g: floods.send_rank(g.group_id)))) + "\n")
    env = {**os.environ, **hv.ovs.env}
    subprocess.run(["ovs-ofctl", "-O", "OpenFlow14", "--bundle", "add-groups", bridge, str(path)], env=env,
                   check=True, timeout=600, capture_output=True)
    flows = [f"table={a},priority=0,actions=goto_table:{b}" for a, b in ((0, 10), (10, 20), (20, 25), (25, 30))]
    flows += [f"table=30,priority=0,actions=group:{EVERYONE}", f"table={p.EGRESS_ACL},priority=0,actions=goto_table:"
              f"{p.EGRESS}", f"table={p.EGRESS},priority=0,actions=output:LOCAL"]
    flows_path = lab.workdir / f"trace-flows-{n}-{remotes}.txt"
    flows_path.write_text("\n".join(flows) + "\n")
    hv.ofctl("-O", "OpenFlow14", "add-flows", bridge, str(flows_path))
    trace = hv.ovs.appctl("ofproto/trace", bridge, f"in_port={port},dl_dst=ff:ff:ff:ff:ff:ff")
    if remotes:
        hv.vsctl("del-br", bridge)
    failed = [line for line in trace.splitlines() if line.startswith("Translation failed")]
    datapath = next((line for line in trace.splitlines() if line.startswith("Datapath actions:")), "")
    over = sorted({m.strip(" >") for m in re.findall(r">>>> (over \d+ resubmit actions|resubmits yielded over 64 kB "
                                                          r"of actions) <<<<", trace)})
    if failed:
        return failed[0]
    copies = f", {datapath.count('tnl_push(')} of {remotes} VTEPs" if remotes else ""
    cut = f"; cut: {', '.join(over)}" if over else ""
    return f"flooded ({trace.count('resubmit(,50)')} bucket resubmits traced{copies}{cut})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, nargs="+", default=[2000, 5000])
    parser.add_argument("--remotes", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--ovs", action="store_true", help="also into a real OVS bridge, and a traced broadcast")
    args = parser.parse_args(argv)
    print(f"load: {os.getloadavg()[0]:.1f}")
    for n in args.ports:
        print(f"{n:,} local ports and {args.remotes} VTEPs of one subnet, OpenFlow 1.4 bundles:")
        for key, value in in_process(n, args.remotes, args.repeat).items():
            print(f"  {key}: {value}")
    if args.ovs:
        for key, value in on_ovs(list(args.ports), args.remotes).items():
            print(f"  {key}: {value}")
    print(f"load: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
