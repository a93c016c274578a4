"""How fast Canopy installs flows, against ``ovs-ofctl`` measured in the same run (DESIGN "Speed").

    .venv/bin/python -m tests.benchmarks.flow_rate --flows 50000

Builds N realistic flows (L2 lookup entries: half to a local vport, half to a remote VTEP) and measures,
each into a fresh netdev bridge of one lab hypervisor:

- baseline: ``ovs-ofctl --bundle add-flows`` of the flows' render_flow text (and without --bundle);
- Canopy: the reconciler in the test driver (tests/integration/ofdriver.py), from the switch reaching
  MAIN state to the commit (OpenFlow 1.4) or barrier (1.3) reply, read-back and diff included;
- Canopy reconnecting (a new driver process) to the OpenFlow 1.4 bridge holding all N flows: read-back
  and diff, no flow-mod sent;
- the encoders alone, in this process: WireEncoder and Ryu's message objects.

Needs root and Open vSwitch, like the integration tests. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import time

from controller.ryu_compat import ofproto_protocol
from openflow import encode, ryumsg
from openflow import pipeline as p
from openflow.flows import Owner, flow, render_flow
from tests.benchmarks import health
from tests.harness import netns, process
from tests.harness.lab import Lab
from tests.integration.ofdriver import read_report

OF_PORT = 6653
TUNNEL_PORT = 1


def l2_flows(count: int) -> list:
    """``count`` L2 lookup entries over 100 subnets; even ones local, odd ones behind a remote VTEP."""
    flows = []
    for i in range(count):
        vni = 5000 + i % 100
        mac = f"02:{i >> 24 & 0xff:02x}:{i >> 16 & 0xff:02x}:{i >> 8 & 0xff:02x}:{i & 0xff:02x}:01"
        if i % 2:
            actions = [("set", "tunnel_id", vni), ("set", "tun_ipv4_dst", f"10.251.{i >> 8 & 0xff}.{i & 0xff}"),
                       ("output", TUNNEL_PORT)]
        else:
            actions = [("set", "reg7", 2 + i % 200), ("goto", p.EGRESS_ACL)]
        flows.append(flow(p.L2_LOOKUP, 100, {"reg5": vni, "eth_dst": mac}, actions, Owner("vport", f"vport-{i}")))
    return flows


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def encoder_rates(flows) -> dict:
    """flow-mods/s of the WireEncoder and of Ryu's OFPFlowMod (on at most 20,000 flows), OpenFlow 1.3."""
    dp = ofproto_protocol.ProtocolDesc(4)
    wire = encode.WireEncoder(dp.ofproto)
    keyed = [(f.key, f) for f in flows]
    started = time.perf_counter()
    for key, f in keyed:
        wire.flow_add(f, 1, key[2])
    wire_rate = rate(len(flows), time.perf_counter() - started)
    sample = flows[:20000]
    started = time.perf_counter()
    for f in sample:
        msg = ryumsg.flow_add(dp, f)
        msg.set_xid(1)
        msg.serialize()
    return {"wire": wire_rate, "ryu": rate(len(sample), time.perf_counter() - started)}


def ofctl_rate(lab, hv, flows, bundle: bool) -> float:
    bridge = "br-ofctl-b" if bundle else "br-ofctl"
    hv.ovs.add_bridge(bridge, "fail_mode=secure")
    path = lab.workdir / "flows.txt"
    if not path.exists():
        path.write_text("\n".join(map(render_flow, flows)) + "\n")
    started = time.perf_counter()
    netns.run(["ovs-ofctl", "-O", "OpenFlow14", *(["--bundle"] if bundle else []), "add-flows", bridge,
               str(path)], timeout=600, env={**os.environ, **hv.ovs.env})
    seconds = time.perf_counter() - started
    check_count(hv, bridge, len(flows))
    return rate(len(flows), seconds)


def check_count(hv, bridge: str, expected: int) -> None:
    reply = hv.ofctl("dump-aggregate", bridge)
    count = int(reply.split("flow_count=")[1].split()[0])
    if count != expected:
        raise SystemExit(f"{bridge} holds {count} flows, expected {expected}")


def canopy_rate(lab, hv, ctl, workdir, flows, protocols: str, name: str) -> dict:
    """Connect a fresh bridge to the running driver; flows/s from MAIN to the last commit/barrier reply."""
    hv.ovs.add_bridge(name, "fail_mode=secure", f"protocols={protocols}", "other_config:disable-in-band=true")
    dpid = hv.vsctl("get", "Bridge", name, "datapath_id").strip('"')
    hv.vsctl("set-controller", name, f"tcp:{ctl.ip}:{OF_PORT}")
    entry = synced(lab, workdir, dpid, name)
    check_count(hv, name, len(flows))
    seconds = entry["synced_at"] - entry["connected_at"]
    return {"rate": rate(len(flows), seconds), "seconds": seconds, "dpid": dpid,
            "change_set_seconds": entry["status"]["last_change"]["seconds"], "lag": entry.get("lag")}


def synced(lab, workdir, dpid: str, name: str) -> dict:
    def entry():
        return read_report(workdir).get(dpid)

    return lab.wait_until(entry, timeout=600, interval=0.05, what=f"{name} in sync")


def start_driver(lab, ctl, workdir):
    (workdir / "report.json").unlink(missing_ok=True)
    return lab.spawn("ofdriver", [sys.executable, "-m", "tests.integration.ofdriver", str(workdir), str(OF_PORT)],
                     workdir / "ofdriver.log", ctl.ns)


def reconnect_seconds(lab, hv, ctl, workdir, driver, flows, dpid: str) -> float:
    """A new driver process meets the bridge already holding the flows: MAIN to in sync."""
    process.stop([driver])
    start_driver(lab, ctl, workdir)
    entry = synced(lab, workdir, dpid, "the reconnected bridge")
    sent = entry["status"]["sent"]
    if sent["flow_add"] or sent["flow_delete"]:
        raise SystemExit(f"a reconnect sent flow-mods: {sent}")
    check_count(hv, "br-c14", len(flows))
    return entry["synced_at"] - entry["connected_at"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=50000)
    args = parser.parse_args(argv)
    flows = l2_flows(args.flows)
    encoders = encoder_rates(flows)
    with Lab() as lab:
        hv = lab.add_hypervisor("hv1")
        ctl = lab.add_controller_host("ctl")
        workdir = lab.workdir / "driver"
        workdir.mkdir()
        (workdir / "desired.pickle").write_bytes(pickle.dumps((1, flows, [])))
        driver = start_driver(lab, ctl, workdir)
        bundled = ofctl_rate(lab, hv, flows, bundle=True)
        plain = ofctl_rate(lab, hv, flows, bundle=False)
        of13 = canopy_rate(lab, hv, ctl, workdir, flows, "OpenFlow13", "br-c13")
        hv.vsctl("set", "Bridge", "br-c13", "protocols=OpenFlow10")  # off the driver: one bridge at a time
        of14 = canopy_rate(lab, hv, ctl, workdir, flows, "OpenFlow13,OpenFlow14", "br-c14")
        reconnect = reconnect_seconds(lab, hv, ctl, workdir, driver, flows, of14["dpid"])
    print(f"{args.flows} L2 lookup flows into fresh netdev bridges")
    print(f"  ovs-ofctl --bundle add-flows   {bundled:10,.0f} flows/s   (baseline)")
    print(f"  ovs-ofctl add-flows            {plain:10,.0f} flows/s")
    for label, result in (("Canopy, OpenFlow 1.4 bundle", of14), ("Canopy, OpenFlow 1.3 barrier", of13)):
        print(f"  {label:30} {result['rate']:10,.0f} flows/s   {result['rate'] / bundled:5.2f} x baseline"
              f"   ({result['seconds']:.2f} s from MAIN, change set {result['change_set_seconds']:.2f} s)")
    print(f"  Canopy reconnect, all present  {rate(args.flows, reconnect):10,.0f} flows/s   ({reconnect:.2f} s from "
          f"MAIN: read-back and diff, no flow-mod)")
    print(f"  encoder: WireEncoder           {encoders['wire']:10,.0f} flow-mods/s")
    print(f"  encoder: Ryu OFPFlowMod        {encoders['ryu']:10,.0f} flow-mods/s"
          f"   (WireEncoder {encoders['wire'] / encoders['ryu']:.1f} x faster)")
    print("  " + health.lag_line(of13["lag"], "driver, at the OpenFlow 1.3 sync"))
    print("  " + health.lag_line(of14["lag"], "driver, at the OpenFlow 1.4 sync"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
