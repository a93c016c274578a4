"""What the kernel's answers on a hypervisor's uplink cost Open vSwitch (not collected by pytest; needs root and OVS).

    python -m tests.benchmarks.underlay_arp --vrs 10 --runs 3

A lab of N hypervisors and no controller: each gets a VXLAN port on br-int and sends, as the controller's tunnel
probes do (openflow/tunnel_warm.py), one packet-out per other VTEP through it; once every tunnel neighbour cache
holds every other VTEP (at most 30 s), each sends them again (through resolved entries). Printed per run: entries
resolved, ``rev_reconfigure`` summed over the ovs-vswitchd ``coverage/show`` (each makes Open vSwitch revalidate
every datapath flow), the kernels' underlay neighbour entries (those on ``ul0``), and ICMP destination-unreachables
the kernels sent. Two kinds of run, interleaved: ``ovs`` is the lab as it is (``ul0`` ignores ARP: only br-phy
answers), ``kernel`` sets ``net.ipv4.conf.ul0.arp_ignore`` back to 0 (the kernel answers on ``ul0`` too, as the
labs did before review32c). Counts, not times: comparable on a busy machine.
"""

from __future__ import annotations

import argparse
import time

from tests.benchmarks.port_to_ping import coverage
from tests.harness import netns
from tests.harness.lab import Lab

VXLAN_PORT = 100
RESOLVE_TIMEOUT = 30.0
PROBE = ("02ca00000000" * 2 + "88b5").ljust(120, "0")  # as tunnel_warm.probe_frame, hex


def icmp_unreachables(ns: str) -> int:
    rows = [line.split() for line in netns.run(["cat", "/proc/net/snmp"], ns=ns).stdout.splitlines()
            if line.startswith("Icmp:")]
    return dict(zip(rows[0][1:], map(int, rows[1][1:])))["OutDestUnreachs"]


def held(hvs) -> int:
    return sum(hv.ovs.appctl("tnl/neigh/show").count("10.251.") for hv in hvs)


def revalidations(hvs) -> int:
    return sum(coverage(hv).get("rev_reconfigure", 0) for hv in hvs)


def settle(hvs, quiet: float = 1.0, timeout: float = 15.0) -> None:
    """Return once no ovs-vswitchd counted a ``rev_reconfigure`` for ``quiet`` seconds (at most ``timeout``)."""
    deadline, last = time.monotonic() + timeout, revalidations(hvs)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = revalidations(hvs)
        if now == last:
            return
        last = now
    raise AssertionError(f"ovs-vswitchd still reconfiguring after {timeout} s")


def probe_all(hvs) -> None:
    for hv in hvs:
        for other in hvs:
            if other is not hv:
                hv.ofctl("packet-out", "br-int", f"in_port=controller packet={PROBE} "
                         f"actions=set_field:{other.vtep_ip}->tun_dst,output:{VXLAN_PORT}")


def run(count: int, kind: str) -> str:
    with Lab() as lab:
        hvs = [lab.add_hypervisor(f"h{i}") for i in range(count)]
        for hv in hvs:
            if kind == "kernel":
                netns.sysctl(hv.ns, "net.ipv4.conf.ul0.arp_ignore", "0")
            hv.vsctl("add-port", "br-int", "vxlan0", "--", "set", "interface", "vxlan0", "type=vxlan",
                     "options:remote_ip=flow", "options:key=flow", f"ofport_request={VXLAN_PORT}")
        settle(hvs)  # the ports' own reconfiguration counted before, not in the figures
        before = revalidations(hvs), sum(icmp_unreachables(hv.ns) for hv in hvs)
        probe_all(hvs)
        lab.wait_until(lambda: held(hvs) >= count * (count - 1), timeout=RESOLVE_TIMEOUT,
                       what="every tunnel neighbour cache to hold every other VTEP")
        probe_all(hvs)
        time.sleep(2)  # the second round's packets are out; nothing else is sent
        revalidated = revalidations(hvs) - before[0]
        unreachables = sum(icmp_unreachables(hv.ns) for hv in hvs) - before[1]
        entries = sum(netns.ip(hv.ns, "neigh", "show", "to", "10.251.0.0/16").count("\n") for hv in hvs)
        on_ul0 = sum(netns.ip(hv.ns, "neigh", "show", "dev", "ul0").count("\n") for hv in hvs)
        return (f"{kind:6} {count} VRS: resolved {held(hvs)} of {count * (count - 1)}, rev_reconfigure "
                f"{revalidated}, kernel underlay neighbours {entries} ({on_ul0} on ul0), ICMP unreachables "
                f"sent {unreachables}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vrs", type=int, default=10, help="hypervisors in the lab (default 10)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each kind, interleaved (default 3)")
    args = parser.parse_args()
    if args.vrs < 2 or args.runs < 1:
        parser.error("--vrs must be at least 2 and --runs at least 1")
    for _ in range(args.runs):
        for kind in ("kernel", "ovs"):
            load = open("/proc/loadavg").read().split()[0]
            print(f"{run(args.vrs, kind)} (load {load})", flush=True)


if __name__ == "__main__":
    main()
