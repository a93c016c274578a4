"""Time from ``ovs-vsctl add-port`` of a VM to its first answered ping, with 1,000 vports present (benchmark (a)).

    .venv/bin/python -m tests.benchmarks.port_to_ping [--samples 30] [--present 1000]
    .venv/bin/python -m tests.benchmarks.port_to_ping --present 500,1000,5000 --before /work/main

Setup (tests.harness.lab): one controller, two KVM hypervisors (kvm1, kvm2). POST /v1/apply of one tenant,
one domain, a few /22 subnets holding ``--present`` vports plus one peer vport and ``--samples`` sample
vports. The present vports are bound cheaply as internal OVS ports on br-int carrying their iface-id
(half on each hypervisor, added in batches of 50 per ovs-vsctl call); the peer is a VM on kvm2. The run
waits (bounded) until /v1/status counts them all bound and both switches' flows are in sync.

One sample: the VM namespace with its veth and static address was made during setup (every sample VM is
made up front: the lab plugs it with an iface-id Canopy does not know and it is unplugged at once, so no
VM-making churn reaches the controller between samples). Static neighbour entries are set in it and in
the peer (so no ARP timer takes part: the figure is the dataplane's readiness, not the kernel's ARP retry
policy), a pinger starts sending ICMP echo requests to the peer from a raw socket inside the VM every
``--interval`` seconds, and then the clock starts and the VM's port is added to br-int exactly as libvirt
does it (one ``ovs-vsctl add-port br-int tap... -- set Interface ... external_ids:iface-id=...``). The
figure is the time from just before that ovs-vsctl to the first echo reply received in the VM. The path
goes kvm1 -> VXLAN -> kvm2 and back, so Canopy must have learned the port over OVSDB, bound it,
recompiled and sent its flows to both switches. The VM is then removed, the run waits until both switches
are in sync again and leaves the controller QUIET seconds before the next clock starts. From the
controller's log it also reports when Canopy logged the vport bound (first without, then with its ofport).

Baseline, measured in the same run and interleaved with the samples (each Canopy sample follows one
baseline sample): a VM made the same way, the same pinger and add-port on
a plain OVS bridge in NORMAL (MAC learning) mode on the same two ovs-vswitchd processes (br-base, joined
by a fixed VXLAN port kvm1 <-> kvm2), to an identical peer. It has every cost of the Canopy sample except
Canopy's own: OVS adding the port, the datapath, VXLAN, the pinger's granularity. So "Canopy minus
baseline" is what Canopy adds (OVSDB notification, binding, compile, flow-mods to two switches).

Needs root and Open vSwitch, like the integration tests. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import os
import re
import signal
import statistics
import sys
import tempfile
import time

from tests.benchmarks import health, vswitchd_trace
from tests.benchmarks.pinger import Pinger
from tests.benchmarks.port_to_ping_figures import bound_times, ofport_leads, pass_timings, summary
from tests.harness.hosts import BR_INT
from tests.harness.lab import Lab

PREFIXLEN = 22
FIRST_NET = ipaddress.IPv4Network("10.10.0.0/22")
PRESENT_PER_SUBNET = 700  # present vports per /22 (addresses .1.0 upwards), samples in .0.10 upwards
BASE_NET = ipaddress.IPv4Network("192.168.77.0/24")  # the baseline bridge's VMs
BASE_BRIDGE = "br-base"
BASE_KEY = 99  # VNI of the baseline's fixed VXLAN port (Canopy allocates from 10000)
BATCH = 50  # ports per ovs-vsctl call (100 took more than the harness's 10 s ovs-vsctl timeout at load 13)
SETUP_TIMEOUT = 300
SETTLE_TIMEOUT = 60
REPLY_TIMEOUT = 15.0
SETUP_AGAIN = 3.0  # seconds between the two settles that end a round's set-up
QUIET = 0.3  # seconds left after a settle so the controller has handled the last OVSDB change when the clock starts
FIRST_OFPORT = 60000  # sample k's port asks for ofport FIRST_OFPORT + k (ofport_request), in both br-int samples
FOREIGN_MARK = 0xB0  # top cookie byte of Canopy's flows re-added by ovs-ofctl: not Canopy's, never read back
MARK_MASK = 0xFF << 56
PROFILED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "profiled.py")
COVERAGE_TOP = 18  # ovs-vswitchd coverage counters reported per round (largest growth per sample)


# ---------------------------------------------------------------------------------------------- policy

def subnet_net(s: int) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network((int(FIRST_NET.network_address) + (s << (32 - PREFIXLEN)), PREFIXLEN))


def present_vports(count: int) -> list[dict]:
    """Present vport i: iface-id p<i>, in subnet i % n (round-robin), address .1.0 upwards."""
    subnets = max(3, math.ceil(count / PRESENT_PER_SUBNET))
    out = []
    for i in range(count):
        s, k = i % subnets, i // subnets
        ip = subnet_net(s).network_address + 256 + k
        out.append({"name": f"p{i}", "subnet": s, "mac": mac("ee", i), "ip": str(ip)})
    return out


def mac(kind: str, i: int) -> str:
    return f"02:{kind}:00:{i >> 16 & 0xff:02x}:{i >> 8 & 0xff:02x}:{i & 0xff:02x}"


def sample_ip(k: int) -> str:
    return str(FIRST_NET.network_address + 10 + k)


PEER = {"name": "peer", "mac": "02:aa:00:00:00:01", "ip": str(FIRST_NET.network_address + 2)}


def document(present: list[dict], samples: int) -> dict:
    subnets = max(3, max((p["subnet"] for p in present), default=0) + 1)
    nets = [{"name": f"s{s}", "cidr": str(subnet_net(s)), "gateway": str(subnet_net(s).network_address + 1),
             "vports": []} for s in range(subnets)]

    def kvm(name, mac_, ip):
        return {"name": name, "mac": mac_, "ips": [ip], "binding": {"flavour": "kvm", "iface_id": name}}

    nets[0]["vports"].append(kvm(PEER["name"], PEER["mac"], PEER["ip"]))
    for k in range(samples):
        nets[0]["vports"].append(kvm(f"sample{k}", mac("bb", k), sample_ip(k)))
    for p in present:
        nets[p["subnet"]]["vports"].append(kvm(p["name"], p["mac"], p["ip"]))
    return {"source": "bench", "tenants": [{"name": "bench", "domains": [{"name": "dom", "subnets": nets}]}]}


# ---------------------------------------------------------------------------------------------- lab steps

def add_present_ports(hv, ports: list[dict]) -> None:
    """Internal ports on br-int with the vports' iface-ids, in batches of BATCH per ovs-vsctl."""
    for start in range(0, len(ports), BATCH):
        args = []
        for p in ports[start:start + BATCH]:
            args += ["--", "add-port", BR_INT, p["name"], "--", "set", "Interface", p["name"], "type=internal",
                     f"external_ids:iface-id={p['name']}", f"external_ids:attached-mac={p['mac']}",
                     "external_ids:iface-status=active"]
        hv.vsctl(*args[1:])


def dpid_of(hv) -> str:
    return f"{hv.datapath_id():016x}"


def api_get(canopy, path: str):
    """GET ``path``, or None while the controller is too busy to answer within the client's timeout (a
    controller compiling thousands of vports at start)."""
    try:
        return canopy.api.get(path)
    except OSError:  # socket.timeout is TimeoutError, an OSError
        return None


def api_retry(lab, canopy, path: str, method: str = "get", body=None):
    """``method`` ``path`` until the controller answers 200 (bounded: a loaded controller may let one time out)."""
    box = {}

    def answered():
        try:
            reply = getattr(canopy.api, method)(path, body) if body is not None else getattr(canopy.api, method)(path)
        except OSError:
            return False
        box["reply"] = reply
        return reply.status == 200

    lab.wait_until(answered, timeout=SETTLE_TIMEOUT, interval=0.5, what=f"{method.upper()} {path} answered")
    return box["reply"]


def in_sync(canopy, hvs) -> bool:
    for hv in hvs:
        reply = api_get(canopy, f"/v1/switches/{dpid_of(hv)}/flows")
        if reply is None or reply.status != 200 or not reply.json.get("in_sync") or \
                reply.json["status"].get("openflow") == "disconnected":
            return False
    return True


def settle(lab, canopy, hvs, bound: int, timeout: float, what: str) -> None:
    def bound_now():
        reply = api_get(canopy, "/v1/status")
        return reply is not None and reply.json["vports_bound"] == bound

    lab.wait_until(bound_now, timeout=timeout, interval=0.1, what=f"{bound} vports bound ({what})")
    lab.wait_until(lambda: in_sync(canopy, hvs), timeout=timeout, interval=0.2,
                   what=f"both switches in sync ({what})")


def make_vm(lab, hv, name: str, vm_mac: str, ip_cidr: str):
    """A VM namespace with eth0 and its address, plugged nowhere (the lab plugs it under an iface-id
    nobody knows; it is unplugged at once)."""
    vm = lab.add_vm(hv, name, mac=vm_mac, ip=ip_cidr, vnic_id=f"unplugged-{name}")
    hv.vsctl("--if-exists", "del-port", BR_INT, vm.port)
    return vm


def plug_args(vm, bridge: str, iface_id: str, ofport: int | None = None) -> list[str]:
    """What libvirt/Nova run for a tap (tests.harness.vports.KvmVports.plug), on ``bridge``; ``ofport``: asked
    for with ofport_request (so Canopy's flows for the port, copied, match it again)."""
    ids = {"iface-id": iface_id, "attached-mac": vm.mac, "vm-uuid": str(vm.uuid), "iface-status": "active"}
    return ["add-port", bridge, vm.port, "--", "set", "Interface", vm.port,
            *(f"external_ids:{k}={v}" for k, v in ids.items()),
            *([f"ofport_request={ofport}"] if ofport is not None else [])]


def static_neighbour(host, ip: str, lladdr: str) -> None:
    host.exec("ip", "neigh", "replace", ip, "lladdr", lladdr, "dev", "eth0", "nud", "permanent", check=True)


def measure(vm, hv, bridge: str, iface_id: str, peer, interval: float, ofport: int | None = None,
            profile=None) -> tuple[float, float, float, float]:
    """(seconds to the first reply, seconds until ovs-vsctl returned, seconds from add-port to sending the
    request that was answered, wall-clock time of the add-port) for one add-port of ``vm`` to ``bridge``;
    ``profile``: a controller pid whose profiler (tests/benchmarks/profiled.py) runs from just before the
    add-port to the reply."""
    static_neighbour(vm, peer.address, peer.mac)
    static_neighbour(peer, vm.address, vm.mac)
    pinger = Pinger(vm.ns, peer.address, interval, REPLY_TIMEOUT + 10)
    pinger.start()
    try:
        time.sleep(3 * interval)  # the pinger is sending (into a veth that is not on any bridge yet)
        args = plug_args(vm, bridge, iface_id, ofport)
        if profile is not None:
            os.kill(profile, signal.SIGUSR1)
        wall, started = time.time(), time.monotonic()
        hv.vsctl(*args)
        vsctl_done = time.monotonic()
        pinger.join(REPLY_TIMEOUT)
        if profile is not None:
            os.kill(profile, signal.SIGUSR2)
        if pinger.reply_at is None:
            raise NoReply(f"{vm.name}: no echo reply from {peer.address} within {REPLY_TIMEOUT}s of add-port "
                          f"on {bridge}")
        return (pinger.reply_at - started, vsctl_done - started,
                pinger.sent.get(pinger.reply_seq, started) - started, wall)
    finally:
        pinger.halt()
        pinger.join(2)
        peer.exec("ip", "neigh", "del", vm.address, "dev", "eth0")


class NoReply(AssertionError):
    """A sample without an answer within REPLY_TIMEOUT (counted, and left out of the figures)."""


# ---------------------------------------------------------------------------------------------- OVS alone

def flow_lines(hv) -> dict[str, str]:
    """br-int's flows as ``ovs-ofctl dump-flows --no-stats --no-names`` prints them, by table, priority and match."""
    out = {}
    for line in hv.ofctl("dump-flows", "--no-stats", "--no-names", BR_INT).splitlines():
        line = line.strip()
        if line.startswith("cookie=") and " actions=" in line:
            out[line.split(",", 1)[1].split(" actions=", 1)[0].strip()] = line
    return out


def foreign(line: str) -> str:
    """A flow line with its cookie's top byte changed from Canopy's mark to FOREIGN_MARK."""
    return re.sub(r"cookie=(0x[0-9a-f]+)",
                  lambda m: f"cookie={int(m.group(1), 16) & ~MARK_MASK | FOREIGN_MARK << 56:#x}", line, count=1)


def copy_flows(hv, lines: list[str]) -> None:
    """Add ``lines`` to br-int with ovs-ofctl (one bundle, as Canopy sends them)."""
    with tempfile.NamedTemporaryFile("w", suffix=".flows", delete=False) as out:
        out.write("\n".join(lines) + "\n")
    try:
        hv.ovs._tool(["ovs-ofctl", "-O", "OpenFlow14", "--bundle", "add-flows", BR_INT, out.name])
    finally:
        os.unlink(out.name)


def drop_copies(hv) -> None:
    hv.ofctl("del-flows", BR_INT, f"cookie={FOREIGN_MARK << 56:#x}/{MARK_MASK:#x}")


def coverage(hv) -> dict[str, int]:
    """ovs-vswitchd's coverage counters (their totals since it started)."""
    out = {}
    for line in hv.ovs.appctl("coverage/show").splitlines():
        m = re.match(r"^(\w+)\s+.*total:\s+(\d+)", line.strip())
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def setup_baseline(lab, kvm1, kvm2):
    """br-base on both hypervisors, NORMAL mode, a fixed VXLAN port to the other; a peer VM on kvm2's."""
    for hv, other in ((kvm1, kvm2), (kvm2, kvm1)):
        hv.ovs.add_bridge(BASE_BRIDGE, "fail_mode=standalone")
        hv.vsctl("add-port", BASE_BRIDGE, "vxbase", "--", "set", "Interface", "vxbase", "type=vxlan",
                 f"options:remote_ip={other.vtep_ip}", f"options:local_ip={hv.vtep_ip}", f"options:key={BASE_KEY}")
    peer = make_vm(lab, kvm2, "bpeer", "02:cc:00:00:00:01", f"{BASE_NET.network_address + 2}/{BASE_NET.prefixlen}")
    kvm2.vsctl(*plug_args(peer, BASE_BRIDGE, "baseline-peer"))
    return peer


# ---------------------------------------------------------------------------------------------- rounds

def parse_sizes(text: str) -> list[int]:
    sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    if not sizes or sizes[0] < 0:
        raise ValueError(text)
    return sizes


class Round:
    """The figures of one (vports present, controller code) round."""

    def __init__(self, present: int, label: str):
        self.present, self.label = present, label
        self.canopy, self.base, self.vsctl_canopy, self.vsctl_base, self.sent = [], [], [], [], []
        self.walls: list[float] = []
        self.flows: dict[str, int] = {}
        self.setup = 0.0
        self.log_lines: list[str] = []
        self.counts: dict = {}
        self.no_reply: list[str] = []  # samples (Canopy or baseline) without an answer in REPLY_TIMEOUT
        self.ovs, self.vsctl_ovs, self.copied = [], [], []  # OVS alone with Canopy's flows copied in advance
        self.coverage: dict[str, dict[str, int]] = {}  # hypervisor -> counter -> growth over the round
        self.upcall: dict[str, str] = {}  # hypervisor -> ovs-appctl upcall/show at the end of the round
        self.profile: str | None = None
        self.dpids: dict[str, str] = {}  # hypervisor -> datapath id as the controller's log prints it
        self.ports: list[str] = []  # the port of each Canopy sample with a reply (as walls)
        self.vswitchd: list[dict[str, float]] = []  # --vswitchd-trace: kvm1's timeline per Canopy sample

    @property
    def adds(self) -> float:
        return statistics.median(self.canopy) - statistics.median(self.base)

    @property
    def ovs_adds(self) -> float | None:
        """What OVS alone takes over the baseline with Canopy's flows for the port already in place."""
        return statistics.median(self.ovs) - statistics.median(self.base) if self.ovs else None


def start_canopy(lab, ctl, code: str | None, name: str, profile: str | None = None):
    """A controller from this checkout (``code`` None) or from the checkout at ``code`` (same venv);
    ``profile``: run it under tests/benchmarks/profiled.py, writing its profile there."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if profile is not None:
        lab.controller_argv = lambda path: ["env", f"PYTHONPATH={code or here}", sys.executable, PROFILED, profile,
                                            "run", "--config", str(path)]
    elif code is not None:
        lab.controller_argv = lambda path: ["env", f"PYTHONPATH={code}", sys.executable, "-P", "-c",
                                            "from controller.cli import main; main()", "run", "--config", str(path)]
    else:
        lab.__dict__.pop("controller_argv", None)  # the Lab's own: this venv's canopy
    return lab.start_controller(ctl, name=name)


def run_round(lab, ctl, hvs, peer, base_peer, vms, bvms, present, rnd: Round, code, args) -> None:
    t = time.monotonic()
    if args.profile:
        rnd.profile = os.path.join(os.path.abspath(args.profile), f"canopy-{rnd.label}-{rnd.present}.pstats")
        os.makedirs(os.path.dirname(rnd.profile), exist_ok=True)
    canopy = start_canopy(lab, ctl, code, f"canopy-{rnd.label}-{rnd.present}", rnd.profile)
    try:
        reply = canopy.api.post("/v1/apply", {"document": document(present[:rnd.present], args.samples),
                                              "source": "bench"})
        if reply.status != 200:
            raise SystemExit(f"apply failed: {reply.status} {reply.text[:500]}")
        settle(lab, canopy, hvs, rnd.present + 1, SETUP_TIMEOUT, f"setup {rnd.label} {rnd.present}")
        # at 5,000 a programming pass of the apply can still be running when both switches first say in sync
        # (with the desired state before it): its ~33,000 flow-mods then landed in the first samples
        time.sleep(SETUP_AGAIN)
        settle(lab, canopy, hvs, rnd.present + 1, SETUP_TIMEOUT, f"setup {rnd.label} {rnd.present}, again")
        rnd.setup = time.monotonic() - t
        rnd.dpids = {hv.name: dpid_of(hv) for hv in hvs}
        rnd.flows = {hv.name: api_retry(lab, canopy, f"/v1/switches/{dpid_of(hv)}/flows").json["count"] for hv in hvs}
        api_retry(lab, canopy, "/v1/log-level", "put", {"level": "debug"})  # the timing lines of each pass and change set
        counters = {hv.name: coverage(hv) for hv in hvs}
        traced = vswitchd_trace.start(hvs[0]) if args.vswitchd_trace else None
        for k, (vm, bvm) in enumerate(zip(vms, bvms)):
            one_sample(lab, canopy, hvs, peer, base_peer, vm, bvm, k, rnd, args)
        traced_lines = vswitchd_trace.stop(hvs[0], traced) if traced is not None else []
        if traced_lines:
            logged = vswitchd_trace.entries(traced_lines)
            rnd.vswitchd = [vswitchd_trace.sample_timeline(logged, port, wall, first)
                            for port, wall, first in zip(rnd.ports, rnd.walls, rnd.canopy)]
        for hv in hvs:
            after = coverage(hv)
            rnd.coverage[hv.name] = {name: after[name] - counters[hv.name].get(name, 0) for name in after}
            rnd.upcall[hv.name] = hv.ovs.appctl("upcall/show")
        rnd.counts = api_retry(lab, canopy, "/v1/status").json
        rnd.log_lines = [line for line in canopy.log_path.read_text().splitlines()
                         if "bench/s0/sample" in line or "programming pass " in line or "change set of " in line
                         or "OVSDB gave ofport" in line]
        rnd.log_lines += [f"kvm1 ovs-vswitchd: {line}" for line in traced_lines if "OFPT_ECHO" not in line]
    finally:
        canopy.stop()


def one_sample(lab, canopy, hvs, peer, base_peer, vm, bvm, k: int, rnd: Round, args) -> None:
    """Sample k: the baseline on br-base, then Canopy on br-int, then (``--ovs-alone``) OVS alone on br-int with
    the flows Canopy installed for the Canopy sample copied in by ovs-ofctl before the add-port."""
    kvm1, ofport = hvs[0], FIRST_OFPORT + k
    time.sleep(QUIET)
    try:
        bfirst, bvsctl, _, _ = measure(bvm, kvm1, BASE_BRIDGE, f"baseline{k}", base_peer, args.interval)
        rnd.base.append(bfirst)
        rnd.vsctl_base.append(bvsctl)
    except NoReply as exc:
        rnd.no_reply.append(str(exc))
    kvm1.vsctl("--if-exists", "del-port", BASE_BRIDGE, bvm.port)
    settle(lab, canopy, hvs, rnd.present + 1, SETTLE_TIMEOUT, f"after baseline sample {k}")
    before = {hv.name: flow_lines(hv) for hv in hvs} if args.ovs_alone else {}
    time.sleep(QUIET)
    try:
        first, vsctl, sent, wall = measure(vm, kvm1, BR_INT, f"sample{k}", peer, args.interval, ofport,
                                           canopy.pid if rnd.profile else None)
        rnd.walls.append(wall)
        rnd.ports.append(vm.port)
        rnd.canopy.append(first)
        rnd.vsctl_canopy.append(vsctl)
        rnd.sent.append(sent)
    except NoReply as exc:
        rnd.no_reply.append(str(exc))
    copies = {}
    if args.ovs_alone:
        settle(lab, canopy, hvs, rnd.present + 2, SETTLE_TIMEOUT, f"sample {k} programmed")
        for hv in hvs:
            copies[hv.name] = [foreign(line) for key, line in flow_lines(hv).items() if key not in before[hv.name]]
    kvm1.vsctl("--if-exists", "del-port", BR_INT, vm.port)  # the VM is kept for the next round
    settle(lab, canopy, hvs, rnd.present + 1, SETTLE_TIMEOUT, f"after sample {k}")
    if copies:
        ovs_alone(lab, canopy, hvs, peer, vm, k, copies, rnd, args)
    if args.verbose and rnd.canopy and rnd.base:
        print(f"{rnd.label} {rnd.present:5d} sample {k:3d}: Canopy {rnd.canopy[-1] * 1000:7.1f} ms (ovs-vsctl "
              f"{rnd.vsctl_canopy[-1] * 1000:6.1f}, answered request sent at {rnd.sent[-1] * 1000:7.1f})   "
              f"baseline {rnd.base[-1] * 1000:7.1f} ms (ovs-vsctl {rnd.vsctl_base[-1] * 1000:6.1f})"
              + (f"   OVS alone {rnd.ovs[-1] * 1000:7.1f} ms" if rnd.ovs else "")
              + (f"   [{len(rnd.no_reply)} without reply so far]" if rnd.no_reply else ""), flush=True)


def ovs_alone(lab, canopy, hvs, peer, vm, k: int, copies: dict, rnd: Round, args) -> None:
    """The same add-port on br-int with Canopy's flows for it already there (copied under a cookie Canopy does
    not own, so its reconcilers never see them) and an iface-id Canopy does not know: what OVS itself takes to
    add the port and forward by those ~37,000 flows, without the controller in the path."""
    kvm1 = hvs[0]
    for hv in hvs:
        copy_flows(hv, copies[hv.name])
    rnd.copied.append(sum(len(lines) for lines in copies.values()))
    time.sleep(QUIET)  # the revalidators have seen the new flows before the clock starts
    try:
        first, vsctl, _, _ = measure(vm, kvm1, BR_INT, f"ovs-alone{k}", peer, args.interval, FIRST_OFPORT + k)
        rnd.ovs.append(first)
        rnd.vsctl_ovs.append(vsctl)
    except NoReply as exc:
        rnd.no_reply.append(f"(OVS alone) {exc}")
    finally:
        kvm1.vsctl("--if-exists", "del-port", BR_INT, vm.port)
        for hv in hvs:
            drop_copies(hv)
    settle(lab, canopy, hvs, rnd.present + 1, SETTLE_TIMEOUT, f"after OVS-alone sample {k}")


def report(rnd: Round, args) -> None:
    print(f"{rnd.label}: {args.samples} samples, {rnd.present} vports present and bound ({rnd.flows.get('kvm1', 0):,} "
          f"flows on kvm1, {rnd.flows.get('kvm2', 0):,} on kvm2), {rnd.counts.get('vports_bound')} bound at the end; "
          f"controller ready, policy applied, bound and in sync in {rnd.setup:.1f} s"
          + (f"; {len(rnd.no_reply)} samples without a reply within {REPLY_TIMEOUT:g} s, left out: "
             + "; ".join(rnd.no_reply) if rnd.no_reply else ""))
    print(summary("Canopy (br-int, secure, flows from Canopy)", rnd.canopy))
    print(summary("baseline (br-base, NORMAL, same OVS/VXLAN)", rnd.base))
    print(summary("  ovs-vsctl add-port returned, Canopy", rnd.vsctl_canopy))
    print(summary("  ovs-vsctl add-port returned, baseline", rnd.vsctl_base))
    print(summary("  answered request sent, Canopy", rnd.sent))
    if rnd.ovs:
        print(summary("OVS alone (br-int, Canopy's flows copied)", rnd.ovs))
        print(summary("  ovs-vsctl add-port returned, OVS alone", rnd.vsctl_ovs))
    bound_first, bound_last = bound_times(rnd.log_lines, rnd.walls)
    if bound_first:
        print(summary("  Canopy logs the vport bound (1 ms clock)", bound_first))
        print(summary("  ... and bound again with its ofport", bound_last))
    median, base_median = statistics.median(rnd.canopy), statistics.median(rnd.base)
    print(f"  Canopy adds {rnd.adds * 1000:.1f} ms at the median ({rnd.adds / base_median * 100:.0f}% of the baseline "
          f"median, {median / base_median:.2f} x baseline), "
          f"{(health.percentile(rnd.canopy, 95) - health.percentile(rnd.base, 95)) * 1000:.1f} ms at p95", flush=True)
    if rnd.ovs:
        print(f"  split: OVS alone with Canopy's flows ({statistics.median(rnd.copied):.0f} flows copied per sample) "
              f"adds {rnd.ovs_adds * 1000:.1f} ms over the baseline; the controller adds "
              f"{(rnd.adds - rnd.ovs_adds) * 1000:.1f} ms over OVS alone")
    timings = pass_timings(rnd.log_lines, rnd.walls, rnd.canopy, rnd.dpids)
    for name, values in timings.items():
        if values and any(values):
            print(summary(f"  controller log: {name}", values))
    leads = ofport_leads(rnd.log_lines, rnd.ports, rnd.walls, REPLY_TIMEOUT)
    if leads:
        print(summary("  ofport from PORT_STATUS, OVSDB's came later by", leads))
    for name in dict.fromkeys(key for events in rnd.vswitchd for key in events):
        print(summary(f"  kvm1 ovs-vswitchd log: {name}", [e[name] for e in rnd.vswitchd if name in e]))
    for name, grown in rnd.coverage.items():
        top = sorted(grown.items(), key=lambda item: -item[1])[:COVERAGE_TOP]
        print(f"  {name} ovs-vswitchd coverage growth per sample (all three kinds): "
              + ", ".join(f"{counter} {count / max(1, args.samples):.0f}" for counter, count in top if count))
    for name, text in rnd.upcall.items():
        print(f"  {name} upcall/show: " + " | ".join(line.strip() for line in text.splitlines()[:8]))
    if rnd.profile:
        print(f"  profile of the controller during the Canopy samples: {rnd.profile}")
    print("  " + health.lag_line(health.lag_from_status(rnd.counts)), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=30, help="add-ports measured on Canopy (and as many "
                                                                "on the baseline bridge) per round")
    parser.add_argument("--present", default="1000", help="vports bound before measuring; a comma-separated "
                        "list (e.g. 500,1000,5000) measures each size in turn, adding ports between rounds")
    parser.add_argument("--before", metavar="DIR", default=None,
                        help="also measure, in each round and on the same lab, the controller of the checkout "
                             "at DIR (e.g. /work/main), run with this venv: before/after in one run")
    parser.add_argument("--after", metavar="DIR", default=None,
                        help="measure the controller of the checkout at DIR instead of this one (e.g. a snapshot "
                             "made with git archive, so that editing this checkout does not change a long run)")
    parser.add_argument("--interval", type=float, default=0.005, help="seconds between echo requests")
    parser.add_argument("--verbose", action="store_true", help="print every sample")
    parser.add_argument("--ovs-alone", action=argparse.BooleanOptionalAction, default=True,
                        help="a third sample after each Canopy one: the same add-port on br-int with the flows Canopy "
                             "installed for it copied in beforehand by ovs-ofctl (OVS alone, no controller in the path)")
    parser.add_argument("--profile", metavar="DIR", default=None,
                        help="run each controller under cProfile (tests/benchmarks/profiled.py), profiling from each "
                             "Canopy add-port to its reply; DIR gets one .pstats per round (it slows the samples)")
    parser.add_argument("--vswitchd-trace", action="store_true",
                        help="kvm1's ovs-vswitchd logs each OpenFlow message with a ms timestamp during the samples: "
                             "report when it added the port and read and committed each bundle (tests/benchmarks/"
                             "vswitchd_trace.py; best with --no-ovs-alone, whose flow dumps it would log too)")
    parser.add_argument("--dump-log", action="store_true", help="print the controller's log lines about samples")
    args = parser.parse_args(argv)
    if not 1 <= args.samples <= 240:
        parser.error("--samples must be 1..240 (sample addresses .10-.249 of the first subnet)")
    if args.interval < 0.001:
        parser.error("--interval must be at least 0.001")
    try:
        sizes = parse_sizes(args.present)
    except ValueError:
        parser.error("--present must be a number or a comma-separated list of numbers")
    codes = ([("before", args.before)] if args.before else []) + [("after", args.after)]

    present = present_vports(sizes[-1])
    rounds: list[Round] = []
    with Lab() as lab:
        ctl = lab.add_controller_host("ctl1")
        kvm1, kvm2 = lab.add_hypervisor("kvm1", "kvm"), lab.add_hypervisor("kvm2", "kvm")
        hvs = (kvm1, kvm2)
        for hv in hvs:
            hv.connect(ctl)
        peer = make_vm(lab, kvm2, PEER["name"], PEER["mac"], f"{PEER['ip']}/{PREFIXLEN}")
        kvm2.vsctl(*plug_args(peer, BR_INT, PEER["name"]))
        base_peer = setup_baseline(lab, kvm1, kvm2)
        # every sample VM made up front (and reused by every round), so no VM-making churn reaches the
        # controller between samples
        vms = [make_vm(lab, kvm1, f"s{k}", mac("bb", k), f"{sample_ip(k)}/{PREFIXLEN}") for k in range(args.samples)]
        bvms = [make_vm(lab, kvm1, f"b{k}", mac("cc", k + 2),
                        f"{BASE_NET.network_address + 10 + k}/{BASE_NET.prefixlen}") for k in range(args.samples)]
        added = 0
        for size in sizes:
            t = time.monotonic()
            new = range(added, size)  # vport i on kvm1 when i is even, else on kvm2
            add_present_ports(kvm1, [present[i] for i in new if i % 2 == 0])
            add_present_ports(kvm2, [present[i] for i in new if i % 2 == 1])
            print(f"{size - added} internal ports added in {time.monotonic() - t:.1f} s ({size} present)", flush=True)
            added = size
            for label, code in codes:
                rnd = Round(size, label)
                run_round(lab, ctl, hvs, peer, base_peer, vms, bvms, present, rnd, code, args)
                rounds.append(rnd)
                report(rnd, args)
                if args.dump_log:
                    print("\n".join(rnd.log_lines))

    print("\nport to first ping: one controller, two KVM hypervisors (userspace OVS), sample VM on kvm1 -> VXLAN -> "
          "peer VM on kvm2, same /22 subnet; addresses and neighbours static; echo requests every "
          f"{args.interval * 1000:g} ms; clock from just before 'ovs-vsctl add-port' to the first echo reply")
    print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())} at the end; {os.cpu_count()} CPUs")
    print(f"{'present':>8} {'code':>7} {'Canopy ms':>10} {'baseline ms':>12} {'adds ms':>8} {'adds/baseline':>14} "
          f"{'OVS alone ms':>13} {'OVS adds ms':>12} {'controller adds ms':>19}")
    for rnd in rounds:
        base = statistics.median(rnd.base)
        alone = (f"{statistics.median(rnd.ovs) * 1000:13.1f} {rnd.ovs_adds * 1000:12.1f} "
                 f"{(rnd.adds - rnd.ovs_adds) * 1000:19.1f}") if rnd.ovs else ""
        print(f"{rnd.present:8d} {rnd.label:>7} {statistics.median(rnd.canopy) * 1000:10.1f} {base * 1000:12.1f} "
              f"{rnd.adds * 1000:8.1f} {rnd.adds / base * 100:13.0f}% {alone}")
    for label, _ in codes:
        mine = [r for r in rounds if r.label == label]
        if len(mine) > 1 and mine[0].adds > 0:
            print(f"  {label}: adds at {mine[-1].present} present / adds at {mine[0].present}: "
                  f"{mine[-1].adds / mine[0].adds:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
