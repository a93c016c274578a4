"""EVPN type-2 route rates: Canopy announcing and withdrawing N routes, and receiving N from GoBGP until the
flows are on the VRS, against GoBGP doing the same work in the same run (docs/benchmarks.md, evpn_routes).

    .venv/bin/python -m tests.benchmarks.evpn_routes [--routes 10000] [--rounds 1] [--verbose] [--json]
        [--keep-logs DIR] [--debug-log] [--stretches N] [--code DIR] [--py-spy BIN DIR] [--py-spy-phase PHASE]

Lab (tests.harness.lab): one controller (``bgp:`` settings, its ExaBGP child), one KVM hypervisor (kvm1)
with one VM (w1) in the subnet Canopy imports into, and three BGP speakers, each in a namespace of its own:
gobgpd A (Canopy's EVPN neighbor, passive, as in the GoBGP interop test), gobgpd Y (A's other peer, the
baseline receiver) and the feeder: this process writing UPDATEs made by ExaBGP's own encoder
(``bgp.exabgp_codec.encode_update``, one route per UPDATE, encoded before any clock starts) on a BGP session
to A. That is how N routes get into GoBGP fast: ``gobgp global rib add`` is a process per route, and
``gobgp mrt inject`` only takes IPv4/IPv6 unicast RIB records. A's export policy keeps next hops unchanged
(as an EVPN spine does) and holds back every route from the peers in its neighbor-set ``held`` (at first
Canopy, Y and the feeder); ``gobgp policy neighbor del held <ip>`` + ``gobgp neighbor <ip> softresetout``
then sends that peer all of A's routes at once, over a session already up.

Phases (bounded waits; each probe polls from a thread of its own every 0.1 s, or 2% of the time elapsed
once that is longer; the CPU seconds of the controller, ExaBGP, its relay, both gobgpd and kvm1's OVS are
reported per phase):

1. announce: N KVM ports (Port + Interface rows with ``external_ids:iface-id``, ONE OVSDB transaction) whose
   vports are in the policy, until A's RIB holds Canopy's N type-2 routes (and the type 3 of the newly
   present subnet); also stamped: Canopy's log of the last vport bound, ExaBGP's last acknowledgement.
   Baseline: the feeder writes the same routes (read back from ``/v1/bgp/routes?direction=out``) to A.
   Then A's own intake of the same routes packed as Canopy's ExaBGP packs them (``encode_packed``), fed at once
   with nothing else running: the announce's floor once the ports are in OVSDB.
2. withdraw: the N ports deleted in one transaction, until A holds none; baseline: the feeder's withdrawals.
   Also stamped, for both: when A first held fewer, a quarter, half, three quarters gone, and from the first
   route A dropped to the last: A's own intake of the withdrawals. Its floor (evpn_routes_floor): the delete on a
   hypervisor of its own to a bare monitor's whole update, plus A's intake of Canopy's withdrawals, packed.
3. receive: the feeder loads N type-2 routes into A (MACs and IPs in subnet ``in``, L2 + L3 VNI, Router's
   MAC, next hop a VTEP in the underlay range); A releases them to Y (baseline: until Y's RIB holds them),
   then to Canopy: until br-int has an l2_lookup flow (owner cookie kind evpn) for each MAC, counted with
   ``dump-aggregate`` and checked once afterwards (``dl_dst=<MAC>`` to ``tun_dst=<VTEP>``).
4. receive withdraw: the feeder withdraws them at A, until br-int has none of those flows and, on the same
   event at the same time, until Y holds none.

The ports have no device behind them: internal and patch ports cost this userspace-datapath OVS minutes at
this count, absent devices a few seconds. Canopy learns such a port like a VM's (the row with its iface-id,
then ``ofport=-1``), binds and announces it; without an ofport it compiles one ARP responder flow for the
vport instead of about ten.

With ``--stretches N`` (default 10; 0: off) the controller runs with ``CANOPY_STRETCH_TRACE``
(controller/stretchtrace.py) and each step reports the N longest stretches of the controller's CPU between two
turns of its event loop during the step, and then those from its end until the next step starts (what a phase
leaves running, and the benchmark's own requests between steps), with where they ran. ``--code DIR`` runs
the controller of the checkout at DIR with this venv (a snapshot of main: before/after on one machine).

With ``--rounds N`` (default 1) phases 1-2 run N times in turn (each round: announce, withdraw, then their
baselines), then phases 3-4 N times (A holding its routes back from Y and Canopy again before each round after the
first): each round's ratio is printed with the 1-minute load as the phase began, the median and the worst. The
baselines' own spread (GoBGP's announce took 5.8-12.5 s on the same machine at stop 43) is larger than what one round
can tell apart. A's packed intake and the withdraw floor are measured in the first round only; the rest of the table
is the first round's.

Needs root, Open vSwitch and gobgpd, like the integration tests. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from tests.benchmarks import evpn_routes_floor as floor, health
from tests.benchmarks.bgp_peers import Feeder, GoBGP
from tests.benchmarks.evpn_routes_clock import PHASE_TIMEOUT, Filling, clock, cpu_seconds  # noqa: F401 - (floor)
from tests.benchmarks.evpn_routes_report import print_table, report
from tests.harness.process import child_running, children_of
from tests.harness import cpugroup
from tests.harness.lab import Lab

CANOPY_ASN, A_ASN, Y_ASN, FEED_ASN = 65000, 65099, 65102, 65010
IN_VNI, OUT_VNI, L3_VNI = 6101, 6102, 9601
IN_NET, OUT_NET = "10.1", "10.2"  # a /16 each: "in" gets GoBGP's MACs, "out" holds the vports Canopy announces
REMOTE_VTEP = "10.251.0.200"  # where GoBGP's routes point (inside the lab's underlay prefix)
REMOTE_ROUTER_MAC = "02:cb:0a:fb:00:c8"
MAX_ROUTES = 60000
SETUP_TIMEOUT = 120
EVPN_L2_FLOWS = "table=30,cookie=0xca60000000000000/0xfff0000000000000"  # l2_lookup, owner kind evpn (6)
BURST_LINE = re.compile(r"canopy\.state: (\d+) vports bound or unbound at once")
W1 = {"name": "w1", "mac": "02:00:00:00:01:01", "ip": f"{IN_NET}.0.11"}


# ---------------------------------------------------------------------------------------------- policy, routes

def host_ip(net: str, i: int) -> str:
    return f"{net}.{(i + 256) >> 8 & 0xff}.{(i + 256) & 0xff}"


def mac(kind: str, i: int) -> str:
    return f"02:{kind}:00:{i >> 16 & 0xff:02x}:{i >> 8 & 0xff:02x}:{i & 0xff:02x}"


def out_vport(i: int) -> dict:
    return {"name": f"o{i}", "mac": mac("0e", i), "ip": host_ip(OUT_NET, i)}


def policy(count: int) -> dict:
    def subnet(name, net, vni, vports):
        rt = f"{CANOPY_ASN}:{vni}"
        return {"name": name, "cidr": f"{net}.0.0/16", "gateway": f"{net}.0.1", "vni": vni, "import_rts": [rt],
                "export_rts": [rt], "vports": [{"name": v["name"], "mac": v["mac"], "ips": [v["ip"]],
                                                "binding": {"flavour": "kvm", "iface_id": v["name"]}}
                                               for v in vports]}

    l3_rt = f"{CANOPY_ASN}:{L3_VNI}"
    return {"tenants": [{"name": "bench", "domains": [{
        "name": "dom", "l3_vni": L3_VNI, "import_rts": [l3_rt], "export_rts": [l3_rt], "subnets": [
            subnet("in", IN_NET, IN_VNI, [W1]),
            subnet("out", OUT_NET, OUT_VNI, [out_vport(i) for i in range(count)])]}]}]}


def remote_routes(count: int) -> list:
    """What a remote VTEP announces for ``count`` MACs of subnet ``in`` (symmetric IRB: two labels)."""
    from bgp.routes import MacIpRoute

    return [MacIpRoute(rd=f"{REMOTE_VTEP}:{IN_VNI}", mac=mac("aa", i), ip=host_ip(IN_NET, i), l2_vni=IN_VNI,
                       l3_vni=L3_VNI, next_hop=REMOTE_VTEP, router_mac=REMOTE_ROUTER_MAC,
                       route_targets=(f"{CANOPY_ASN}:{IN_VNI}", f"{CANOPY_ASN}:{L3_VNI}")) for i in range(count)]


def encode(routes, action: str) -> bytes:
    """BGP UPDATE messages from the feeder to A, one route each, made by ExaBGP's encoder."""
    from bgp.exabgp_codec import encode_update

    return b"".join(encode_update(route, action, FEED_ASN, A_ASN) for route in routes)


def encode_packed(routes) -> bytes:
    """The announcements of ``routes`` from the feeder to A packed as Canopy's ExaBGP packs them (bgp.exabgp_ext:
    ANNOUNCED_PER_UPDATE routes with the same attributes to an UPDATE)."""
    from bgp.exabgp_codec import encode_rib_updates

    return b"".join(encode_rib_updates(routes, "announce", FEED_ASN, A_ASN))


# ---------------------------------------------------------------------------------------------- OVSDB, OVS

def open_feeder(feed_host, gobgp: GoBGP) -> Feeder | None:
    """A feeder whose session with ``gobgp`` is up, or None (to be tried again)."""
    try:
        feeder = Feeder(feed_host, gobgp.host.ip, FEED_ASN)
    except OSError:
        return None
    if feeder.open_seen.wait(5) and gobgp.established(feed_host.ip):
        return feeder
    feeder.close()
    return None


def transact(hv, ops: list, timeout: float = 120) -> list:
    """One OVSDB transaction on the hypervisor's database (JSON-RPC on its unix socket)."""
    return transact_at(hv.ovs.db_socket, ops, timeout)


def transact_at(db_socket, ops: list, timeout: float = 120) -> list:
    """One OVSDB transaction on the database behind unix socket ``db_socket``; its result (SystemExit on an error)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(timeout)
        sock.connect(str(db_socket))
        sock.sendall(json.dumps({"method": "transact", "params": ["Open_vSwitch", *ops], "id": 0}).encode())
        decoder, buf = json.JSONDecoder(), ""
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise SystemExit("ovsdb-server closed the connection during a transaction")
            buf += chunk.decode()
            try:
                reply, end = decoder.raw_decode(buf)
            except ValueError:
                continue
            buf = buf[end:].lstrip()
            if reply.get("id") != 0:  # not our reply (an echo request, say)
                continue
            errors = [r for r in reply.get("result") or [] if isinstance(r, dict) and "error" in r]
            if reply.get("error") or errors:
                raise SystemExit(f"OVSDB transaction failed: {reply.get('error') or errors[:3]}")
            return reply["result"]


def add_ports_ops(vports: list[dict]) -> list:
    """Port + Interface rows on br-int as libvirt leaves them for a KVM tap (iface-id, attached-mac)."""
    ops = []
    for k, v in enumerate(vports):
        ids = [["iface-id", v["name"]], ["attached-mac", v["mac"]], ["iface-status", "active"]]
        ops += [{"op": "insert", "table": "Interface", "uuid-name": f"i{k}",
                 "row": {"name": v["name"], "external_ids": ["map", ids]}},
                {"op": "insert", "table": "Port", "uuid-name": f"p{k}",
                 "row": {"name": v["name"], "interfaces": ["named-uuid", f"i{k}"]}}]
    refs = [["named-uuid", f"p{k}"] for k in range(len(vports))]
    return ops + [{"op": "mutate", "table": "Bridge", "where": [["name", "==", "br-int"]],
                   "mutations": [["ports", "insert", ["set", refs]]]}]


def delete_ports_ops(hv, names: set[str]) -> list:
    rows = transact(hv, [{"op": "select", "table": "Port", "where": [], "columns": ["_uuid", "name"]}])[0]["rows"]
    uuids = [row["_uuid"] for row in rows if row["name"] in names]
    if len(uuids) != len(names):
        raise SystemExit(f"found {len(uuids)} of the {len(names)} ports to delete")
    return [{"op": "mutate", "table": "Bridge", "where": [["name", "==", "br-int"]],
             "mutations": [["ports", "delete", ["set", uuids]]]}]


def evpn_l2_flows(hv) -> int:
    """l2_lookup flows br-int holds for MACs behind remote EVPN VTEPs."""
    found = re.search(r"flow_count=(\d+)", hv.ofctl("dump-aggregate", "br-int", EVPN_L2_FLOWS))
    return int(found.group(1)) if found else -1


def check_remote_flows(hv, routes) -> None:
    """Every MAC has an l2_lookup flow to the remote VTEP (one full dump, after the clock)."""
    dump = hv.ofctl("dump-flows", "br-int", "table=30").lower()
    found = {m.group(1) for line in dump.splitlines() if f"{REMOTE_VTEP}->tun_dst" in line
             for m in [re.search(r"dl_dst=([0-9a-f:]{17})", line)] if m}
    missing = {r.mac for r in routes} - found
    if missing:
        raise SystemExit(f"{len(missing)} of {len(routes)} MACs have no flow to {REMOTE_VTEP}: {sorted(missing)[:3]}")


# ---------------------------------------------------------------------------------------------- clocks, CPU

def speaker(canopy) -> dict:
    reply = canopy.api.get("/v1/bgp/peers").json
    return {"peer": reply["items"][0], "speaker": reply["speaker"]}


def logged(canopy, wall: float, needle: str, count: int) -> float | None:
    """Seconds from ``wall`` to the controller log line (1 ms clock) that makes ``count`` lines containing
    ``needle``; Canopy's one line for a burst ("N vports bound or unbound at once") counts N."""
    seen = 0
    for line in canopy.log_path.read_text(errors="replace").splitlines():
        burst = BURST_LINE.search(line)
        if (burst or needle in line) and line[:4].isdigit():
            stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if stamp >= wall - 0.002:
                seen += int(burst.group(1)) if burst else 1
            if seen >= count:
                return stamp - wall
    return None


# ---------------------------------------------------------------------------------------------- the lab

@contextlib.contextmanager
def py_spy(binary: str, outputs: dict, form: str = "raw"):
    """py-spy ``binary`` samples each process {pid: output file} while the block runs (``form``: raw gives
    collapsed stacks to sum, speedscope samples in time order, for finding stretches)."""
    spies = [subprocess.Popen([binary, "record", "--pid", str(pid), "--rate", "200", "--format", form,
                               "--nonblocking", "--idle", "-o", str(out)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid, out in outputs.items()]
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            spy.wait(60)


class Bench:
    """The lab, built by ``build``: controller, kvm1, GoBGP A and Y, the feeder; ``base``: the routes A holds
    from Canopy before any phase (w1's), ``pids``: the processes whose CPU time the phases report."""

    def __init__(self, lab, args):
        self.lab, self.args, self.n = lab, args, args.routes
        self.setup: dict[str, float] = {}
        self.last_marks: dict = {}  # the marks of the last step clocked
        self.receive_updates: tuple[bytes, bytes] | None = None  # the feeder's UPDATEs of the receive phases

    def progress(self, text: str) -> None:
        if self.args.verbose:
            print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    def build(self) -> None:
        t, lab = time.monotonic(), self.lab
        self.ctl, a_host, y_host, self.feed_host = (lab.add_controller_host(name) for name in
                                                   ("ctl1", "gobgpa", "gobgpy", "feed"))
        self.a = GoBGP(lab, a_host, A_ASN, [(self.ctl.ip, CANOPY_ASN, True), (self.feed_host.ip, FEED_ASN, True),
                                            (y_host.ip, Y_ASN, True)], held=(self.ctl.ip, self.feed_host.ip, y_host.ip))
        self.y = GoBGP(lab, y_host, Y_ASN, [(a_host.ip, A_ASN, False)])
        neighbor = {"address": a_host.ip, "asn": A_ASN, "local_address": self.ctl.ip}
        self.canopy = lab.start_controller(self.ctl, {"bgp": {"asn": CANOPY_ASN, "router_id": self.ctl.ip,
                                                              "neighbors": [neighbor]}})
        reply = self.canopy.api.post("/v1/apply", {"document": policy(self.n), "source": "bench"})
        if reply.status != 200:
            raise SystemExit(f"apply failed: {reply.status} {reply.text[:500]}")
        self.hv = lab.add_hypervisor("kvm1", "kvm")
        self.hv.connect(self.ctl)
        lab.add_vm(self.hv, W1["name"], mac=W1["mac"], ip=f"{W1['ip']}/16", vnic_id=W1["name"])
        self.setup["lab, controller, policy"] = time.monotonic() - t
        t = time.monotonic()
        self.feeder = lab.wait_until(self._feeder, SETUP_TIMEOUT, 0.5, "the feeder's session with GoBGP A")
        lab.wait_until(lambda: speaker(self.canopy)["peer"]["state"] == "up", SETUP_TIMEOUT, 0.2, "Canopy-A session")
        lab.wait_until(lambda: self.a.established(y_host.ip), SETUP_TIMEOUT, 0.2, "the Y-A session")
        lab.wait_until(self._quiet, SETUP_TIMEOUT, 0.2, "w1 bound, its routes in A and br-int in sync")
        self.base = self.a.count()
        exabgp = child_running(self.canopy.pid, "bgp.exabgp_ext")  # REST does not show ExaBGP's pid
        self.pids = {"controller": [self.canopy.pid], "exabgp": [exabgp], "relay": children_of(exabgp),
                     "gobgpd A": [self.a.child.pid], "gobgpd Y": [self.y.child.pid],
                     "OVS kvm1": [c.pid for c in self.hv.ovs.processes]}
        self.setup["sessions up, w1 announced"] = time.monotonic() - t
        self.log_start = health.log_offsets(*self.logs())

    def logs(self) -> list:
        """The controller's, kvm1's ovs-vswitchd's and both gobgpd's logs (disconnects are counted in them)."""
        workdir = self.lab.workdir
        return [self.canopy.log_path, workdir / "kvm1" / "ovs-vswitchd.log", workdir / "gobgpd-gobgpa.log",
                workdir / "gobgpd-gobgpy.log"]

    def disconnects(self) -> dict:
        controller, ovs, *gobgp = self.logs()
        return health.disconnects([controller], [ovs], gobgp, since=self.log_start)

    def _feeder(self):
        return open_feeder(self.feed_host, self.a)

    def _quiet(self) -> bool:
        """Canopy has announced what it wants, A holds exactly that, and the switch is in sync."""
        state = speaker(self.canopy)["speaker"]
        if not state["desired"] or state["pending_acks"] or state["announced"] != state["desired"]:
            return False
        flows = self.canopy.api.get(f"/v1/switches/{self.hv.datapath_id():016x}/flows")
        return flows.status == 200 and flows.json["in_sync"] and self.a.count() == state["announced"]

    def timed(self, what: str, action, probes: dict, until: tuple[str, ...], **values) -> dict:
        """``clock`` plus the CPU seconds each watched process used meanwhile."""
        self.progress(f"{what} ...")
        self.trace_stretches(self.last_marks, "stretches_after")  # what the step before left running until now
        before = {name: cpu_seconds(pids) for name, pids in self.pids.items()}
        marks = clock(action, probes, until, what, values)
        self.trace_stretches(marks, "stretches")
        self.last_marks = marks
        marks["cpu"] = {name: round(cpu_seconds(pids) - before[name], 2) for name, pids in self.pids.items()}
        marks["lag"] = health.lag_from_status(self.canopy.api.get("/v1/status").json)
        self.progress(f"{what}: {json.dumps({k: v for k, v in marks.items() if k != 'stretches'}, default=str)}")
        return marks

    @contextlib.contextmanager
    def spied(self, phase: str):
        """With ``--py-spy BIN DIR``: py-spy samples the controller and ExaBGP during ``phase`` (``--py-spy-phase``)
        into DIR/PHASE-controller.txt and DIR/PHASE-exabgp.txt (collapsed stacks: one line per stack, its count)."""
        if not self.args.py_spy or phase != self.args.py_spy_phase:
            yield
            return
        binary, target = self.args.py_spy
        Path(target).mkdir(parents=True, exist_ok=True)
        with py_spy(binary, {self.canopy.pid: Path(target) / f"{phase}-controller.txt",
                             self.pids["exabgp"][0]: Path(target) / f"{phase}-exabgp.txt"}):
            yield

    def trace_stretches(self, marks: dict, key: str) -> None:
        """The stretches traced since the last call go to ``marks[key]``; tracing starts over."""
        if self.args.stretches:
            marks[key] = health.traced_stretches(self.canopy.api)
            health.traced_stretches(self.canopy.api, reset=True)  # its answer is the empty list it starts with

    def feed(self, data: bytes):
        def send():
            self.feeder.send(data)
            if self.feeder.closed:
                raise SystemExit(f"the feeder's session with A ended: {self.feeder.closed}")
        return send

    def encoded(self, routes) -> tuple[bytes, bytes]:
        t = time.monotonic()
        data = encode(routes, "announce"), encode(routes, "withdraw")
        label = "encoding UPDATEs"
        self.setup[label] = self.setup.get(label, 0.0) + time.monotonic() - t
        return data


# ---------------------------------------------------------------------------------------------- phases

def announce_withdraw(b: Bench, extras: bool = True) -> dict:
    """Canopy announces N routes for N new ports, then withdraws them; then the feeder does the same to A. With
    ``extras`` (the first round), also A's intake of Canopy's routes packed, and the withdraw floor's (b)."""
    from bgp.routes import route_from_dict

    vports, n, base = [out_vport(i) for i in range(b.n)], b.n, b.base

    def acked(count):  # ExaBGP acknowledged every command and holds ``count`` routes
        return lambda: (lambda s: s["announced"] == count and not s["pending_acks"])(speaker(b.canopy)["speaker"])

    # the newly present subnet on kvm1 also brings its type 3 route: A then holds base + N + 1
    ops, wall = add_ports_ops(vports), time.time()
    filling = Filling(b.a, base, n, base + n + 1)
    with b.spied("announce"):
        out = b.timed("announce", lambda: transact(b.hv, ops), {"gobgp": filling, "acked": acked(base + n + 1)},
                      ("gobgp", "acked"), A=b.a.count, speaker=lambda: speaker(b.canopy)["speaker"])
    out["filling"] = filling.shares(out["started"])
    out["logged"] = logged(b.canopy, wall, "bench/out/o", n)
    routes = [r for r in b.canopy.api.get("/v1/bgp/routes?direction=out&type=2").json["items"]
              if r["mac"].startswith("02:0e:")]
    if len(routes) != n or not {r["mac"] for r in routes} <= b.a.macs():
        raise SystemExit(f"Canopy announced {len(routes)} type-2 routes for {n} ports, or A lacks some")

    ops, wall = delete_ports_ops(b.hv, {v["name"] for v in vports}), time.time()
    draining = Filling(b.a, base + n + 1, n, base)
    with b.spied("withdraw"):
        back = b.timed("withdraw", lambda: transact(b.hv, ops), {"gobgp": draining, "acked": acked(base)},
                       ("gobgp", "acked"), A=b.a.count, speaker=lambda: speaker(b.canopy)["speaker"])
    back["filling"] = draining.shares(back["started"])
    back["logged"] = logged(b.canopy, wall, "unbound", n)

    announce, withdraw = b.encoded([route_from_dict(r) for r in routes])
    filling = Filling(b.a, base, n, base + n)
    base_out = b.timed("baseline announce", b.feed(announce), {"gobgp": filling}, ("gobgp",), A=b.a.count)
    base_out["filling"] = filling.shares(base_out["started"])
    draining = Filling(b.a, base + n, n, base)
    base_back = b.timed("baseline withdraw", b.feed(withdraw), {"gobgp": draining}, ("gobgp",), A=b.a.count)
    base_back["filling"] = draining.shares(base_back["started"])
    if not extras:
        return {"announce": (out, out["gobgp"], base_out, base_out["gobgp"]),
                "withdraw": (back, back["gobgp"], base_back, base_back["gobgp"])}
    # A's own intake of Canopy's routes as Canopy's ExaBGP packs them, fed at once on an otherwise idle machine: what
    # the announce would take if the routes reached A the moment the ports were added and nothing else ran
    filling, canopy_routes = Filling(b.a, base, n, base + n), [route_from_dict(r) for r in routes]
    packed = b.timed("A's intake, packed", b.feed(encode_packed(canopy_routes)), {"gobgp": filling}, ("gobgp",),
                     A=b.a.count)
    out["packed"] = dict(filling.shares(packed["started"]), all=packed["gobgp"], cpu=packed["cpu"]["gobgpd A"])
    back["floor_intake"] = floor.intake(b, canopy_routes)  # the withdraw floor's (b); A holds none of them after
    return {"announce": (out, out["gobgp"], base_out, base_out["gobgp"]),
            "withdraw": (back, back["gobgp"], base_back, base_back["gobgp"])}


def receive(b: Bench, again: bool = False) -> dict:
    """GoBGP A sends N routes to Y (baseline) and to Canopy (until the flows), then withdraws them. ``again``: a
    round after the first: A holds routes back from Y and Canopy again first."""
    routes, loaded = remote_routes(b.n), b.base + b.n
    if b.receive_updates is None:
        b.receive_updates = b.encoded(routes)
    announce, withdraw = b.receive_updates
    if again:
        for peer in (b.y.host.ip, b.ctl.ip):
            b.a.hold(peer)
    y_before = b.y.count()  # none at first (held from the start); w1's routes in a later round
    load = b.timed("loading A", b.feed(announce), {"gobgp": lambda: b.a.count() == loaded}, ("gobgp",),
                   A=b.a.count)
    b.setup["GoBGP A loading the routes it sends"] = load["gobgp"]
    if b.y.count() != y_before or speaker(b.canopy)["peer"]["received"]:
        raise SystemExit("A did not hold its routes back from Y and Canopy while it was loaded")

    def flows():
        return evpn_l2_flows(b.hv)

    def received():
        return speaker(b.canopy)["peer"]["received"]

    to_y = b.timed("baseline receive", lambda: b.a.release(b.y.host.ip), {"y": lambda: b.y.count() == loaded},
                   ("y",), Y=b.y.count)
    got = b.timed("receive", lambda: b.a.release(b.ctl.ip), {"flows": lambda: flows() == b.n,
                                                            "received": lambda: received() == b.n},
                  ("flows", "received"), flows=flows, received=received)
    check_remote_flows(b.hv, routes)
    # each probe keeps the counts it polled: when each first held fewer, a quarter gone, half, three quarters
    draining = {"y": Filling(b.y.count, loaded, b.n, b.base), "received": Filling(received, b.n, b.n, 0),
                "flows": Filling(flows, b.n, b.n, 0)}
    if b.args.debug_log:  # each programming pass's and change set's timings in the controller's log
        b.canopy.api.put("/v1/log-level", {"level": "debug"})
    with b.spied("receive_withdraw"):
        gone = b.timed("receive withdraw", b.feed(withdraw), draining, ("flows", "received", "y"), flows=flows,
                       received=received, Y=b.y.count)
    if b.args.debug_log:
        b.canopy.api.put("/v1/log-level", {"level": "info"})
    gone["filling"] = {name: probe.shares(gone["started"]) for name, probe in draining.items()}
    return {"receive": (got, got["flows"], to_y, to_y["y"]),
            "receive_withdraw": (gone, gone["flows"], gone, gone["y"])}


# ---------------------------------------------------------------------------------------------- logs, main

def keep_logs(b: Bench, target: Path) -> None:
    """Copy the controller's, ExaBGP's, both gobgpd's and kvm1's ovs-vswitchd logs to ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    workdir = b.lab.workdir
    paths = [*workdir.glob("*.log"), *workdir.glob("*-data/bgp/exabgp.log"), workdir / "kvm1" / "ovs-vswitchd.log"]
    for path in paths:
        if path.is_file():
            shutil.copy(path, target / path.name)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=10000, help="type-2 routes per direction (phases shorter "
                        "than ~0.5 s, as below ~1,000, are within the probes' resolution)")
    parser.add_argument("--rounds", type=int, default=1, metavar="N", help="each phase and its baseline N times: "
                        "announce, withdraw and their baselines N times in turn, then receive, receive_withdraw and "
                        "theirs; every round's ratios are printed, with their median and the worst (the table's other "
                        "figures are the first round's)")
    parser.add_argument("--verbose", action="store_true", help="print each phase as it runs (on stderr)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of the table")
    parser.add_argument("--keep-logs", type=Path, help="copy the logs of the controller, ExaBGP, gobgpd and OVS here")
    parser.add_argument("--stretches", type=int, default=10, metavar="N", help="trace the controller's stretches of "
                        "CPU between two turns of the event loop and print each step's N longest (0: off)")
    parser.add_argument("--code", metavar="DIR", help="run the controller of the checkout at DIR (e.g. a git archive "
                        "of main) with this venv: before/after comparisons on one machine")
    parser.add_argument("--debug-log", action="store_true", help="the controller logs at debug level during "
                        "receive_withdraw: each programming pass's and change set's timings (keep it: --keep-logs)")
    parser.add_argument("--py-spy", nargs=2, metavar=("BIN", "DIR"), help="sample the controller and ExaBGP with "
                        "py-spy BIN during one phase (--py-spy-phase) into DIR (collapsed stacks; py-spy's sampling "
                        "costs the processes it samples, so that run's figures are not comparable)")
    parser.add_argument("--py-spy-phase", choices=("announce", "withdraw", "receive_withdraw"), default="announce",
                        help="the phase --py-spy samples (default: announce)")
    cpugroup.add_option(parser)
    args = parser.parse_args(argv)
    cpugroup.check_option(parser, args)
    if args.stretches:
        os.environ["CANOPY_STRETCH_TRACE"] = str(args.stretches)  # the controller the lab starts inherits it
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if not 1 <= args.routes <= MAX_ROUTES:
        parser.error(f"--routes must be 1..{MAX_ROUTES} (a /16 per direction)")
    with contextlib.ExitStack() as groups, Lab() as lab:  # the group is removed after the lab stopped its processes
        if args.code:
            health.run_code(lab, args.code)
        group = cpugroup.weigh_controllers(groups, lab, args.controller_cpu_weight)
        bench = Bench(lab, args)
        try:
            bench.build()
            bench.progress(f"set up: A holds {bench.base} routes from Canopy (w1's)")
            rounds = [announce_withdraw(bench, extras=not k) for k in range(args.rounds)]
            for k, phases in enumerate(rounds):
                phases.update(receive(bench, again=k > 0))
            phases = rounds[0]
            phases["withdraw"][0]["floor_ovsdb"] = floor.ovsdb(bench)  # the withdraw floor's (a)
            bench.feeder.close()
        finally:
            if args.keep_logs:
                keep_logs(bench, args.keep_logs)
        result = report(bench, phases, rounds)
        result["cpu_group"] = group
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
