"""The longest stretch of CPU a switch reconciler or a big REST answer holds the event loop, measured in-process.

`.venv/bin/python -m tests.benchmarks.reconcile_stretches [--owners 10000] [--flows 16000] [--listed 100000]`

Every switch between green threads is traced (``greenlet.settrace``); the figure of a step is the largest
``time.thread_time()`` between two switches while it runs, with the pauses wired as the controller wires them
(controller/app.py: ``Pacer(hub.sleep(0), RECONCILE_EVERY)`` for a reconciler, ``hub.sleep(0)`` for REST). CPU
time, not wall: independent of the machine's load (docs/benchmarks.md, "bursts"). The steps:

- **change**: a switch in sync with ``--owners`` owners (3 flows each, new Flow objects: cookies and wire bytes not
  yet computed, as after a compile), every owner changed: plan, encode and send the change set, record it applied;
- **read-back**: after a (re)connect, ``--flows`` flows desired, half of them read back plus as many stale: the full
  plan, its encoding and sending;
- **status**: ``status()`` (every REST status and scrape) between a read-back and its plan, and with every owner
  changed;
- **listing**: ``GET /v1/switches/<dpid>/flows`` with ``--listed`` flows desired and as many installed differently;
- **switches**: ``GET /v1/switches`` with one switch of ``--owners`` ports.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import pathlib
import sys
import time

import greenlet

from controller.pacer import Pacer
from controller.ryu_compat import hub, ofproto_protocol
from openflow import pipeline as p
from openflow.flows import Group, Owner, flow
from openflow.reconciler import SwitchReconciler

RECONCILE_EVERY = 1000  # as controller/app.py


class Stretches:
    """The longest CPU time between two green-thread switches while it is on."""

    def __init__(self):
        self.longest = 0.0
        self.last = time.thread_time()
        self.switches = 0
        self.collecting = 0.0  # CPU of the cyclic collector since the last switch
        self.longest_gc = 0.0  # ... within the longest stretch
        self._gc_start = None
        gc.callbacks.append(self._gc)

    def _gc(self, phase, info):
        now = time.thread_time()
        if phase == "start":
            self._gc_start = now
        elif self._gc_start is not None:
            self.collecting += now - self._gc_start

    def __call__(self, event, args):
        now = time.thread_time()
        if now - self.last > self.longest:
            self.longest, self.longest_gc = now - self.last, self.collecting
        self.last, self.collecting = now, 0.0
        self.switches += 1

    def measure(self, work):
        """(result, longest stretch in ms, CPU in ms, switches, the collector's ms in the longest) of ``work()``."""
        self.longest, self.switches, self.collecting = 0.0, 0, 0.0
        started = self.last = time.thread_time()
        previous = greenlet.settrace(self)
        try:
            result = work()
            self(None, None)
        finally:
            greenlet.settrace(previous)
        return result, self.longest * 1000, (time.thread_time() - started) * 1000, self.switches, \
            self.longest_gc * 1000


class Switch:
    """A datapath that takes the bytes written to it and answers every request at once (commit or barrier)."""

    def __init__(self):
        desc = ofproto_protocol.ProtocolDesc(5)
        self.id, self.ofproto, self.ofproto_parser, self.xid = 1, desc.ofproto, desc.ofproto_parser, 0
        self.address = ("10.0.0.1", 1)
        self.rec = None
        self.bytes = 0

    def send(self, data):
        self.bytes += len(data)
        for waiter in self.rec._waiters.values():
            waiter.event.set()

    def send_msg(self, msg):
        pass


def owner_flows(i: int, salt: int = 0) -> frozenset:
    """An owner's flows as a vport's look: an L2 lookup, an ARP answer and a host route (3 flows)."""
    own = Owner("vport", f"v{i}")
    mac = f"02:{salt:02x}:00:{i >> 16 & 0xff:02x}:{i >> 8 & 0xff:02x}:{i & 0xff:02x}"
    ip = f"10.{salt}.{i >> 8 & 0xff}.{i & 0xff}"
    return frozenset({
        flow(p.L2_LOOKUP, 100, {"reg5": 7, "eth_dst": mac}, [("set", "tunnel_id", 7), ("output", 5)], own),
        flow(p.SERVICES, 100, {"reg5": 7, "eth_type": 0x0806, "arp_tpa": ip, "arp_op": 1},
             [("goto", p.EGRESS_ACL)], own),
        flow(p.L3_ROUTING, 200, {"reg6": 3, "eth_type": 0x0800, "ipv4_dst": ip},
             [("set", "eth_dst", mac), ("goto", p.EGRESS_ACL)], own)})


def desired(count: int, salt: int = 0) -> dict:
    return {Owner("vport", f"v{i}"): owner_flows(i, salt) for i in range(count)}


def reconciler():
    switch = Switch()
    rec = switch.rec = SwitchReconciler(switch, log=logging.getLogger("bench.reconciler"),
                                        pacer=Pacer(lambda: hub.sleep(0), RECONCILE_EVERY))
    rec._need_read = False  # as after its first read-back: it may send
    return rec, switch




def sync(rec) -> None:
    """Plan, encode, send and record one change set as the reconciler's round does (before ``_sync``: in two
    steps, for a run of this script against an older tree)."""
    if hasattr(rec, "_sync"):
        rec._sync()
        return
    ops = rec._plan()
    if ops:
        rec._execute(ops)


def change(owners: int):
    rec, _ = reconciler()
    rec.set_desired_owners(desired(owners), [Group(7, ())])
    rec._book.read_back({})
    sync(rec)
    new = desired(owners, salt=1)
    rec.set_desired_owners(new, [Group(7, ())], changed=set(new))
    return rec


def read_back(flows: int):
    rec, _ = reconciler()
    owners = flows // 3
    rec.set_desired_owners(desired(owners), [Group(7, ())])
    held = {f.key: f for i in range(0, owners, 2) for f in owner_flows(i)}
    held.update({f.key: f for i in range(owners // 2) for f in owner_flows(i, salt=9)})
    rec._book.read_back(held)
    return rec


def rest_api(tmp, rec, ports: int):
    from controller.discovery import PortInfo, VrsSnapshot
    from controller.programmer import Programmer
    from controller.rest import dataplane as rest_dataplane
    from controller.rest.api import Api
    from tests.unit.helpers import Controller

    ctl = Controller(tmp)
    infos = tuple(PortInfo(name=f"tap{i}", ofport=i + 1, mac=f"02:00:00:{i >> 16 & 0xff:02x}:{i >> 8 & 0xff:02x}:"
                           f"{i & 0xff:02x}", external_ids=(("iface-id", f"vm{i}"),)) for i in range(ports))
    ctl.state.vrs_update(VrsSnapshot(session="s1", chassis="hv1", hostname="hv1", peer="127.0.0.1:1",
                                     bridge="br-int", bridge_present=True, datapath_id=1,
                                     vtep_ip="192.0.2.10", flavour="kvm", ports=infos))
    routes = rest_dataplane.routes(ctl.state, Programmer(ctl.state), lambda: {1: rec}, lambda: hub.sleep(0))
    flows_api = Api(ctl.service, ctl.state, ctl.settings, extra_routes=routes)
    ctl.api.pause = lambda: hub.sleep(0)
    return ctl, flows_api


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--owners", type=int, default=10_000)
    parser.add_argument("--flows", type=int, default=16_000)
    parser.add_argument("--listed", type=int, default=100_000)
    args = parser.parse_args(argv)
    import tempfile

    from controller.rest.api import Request
    from tests.unit.helpers import TOKEN

    stretches = Stretches()
    rows = []

    def row(name, work):
        rows.append((name, *stretches.measure(work)[1:]))

    rec = change(args.owners)
    row(f"status() with {args.owners:,} owners changed", rec.status)
    row(f"change of {args.owners:,} owners: plan, encode, send, record", lambda: sync(rec))
    rec = read_back(args.flows)
    row(f"status() after a read-back, {args.flows:,} flows desired", rec.status)
    row(f"full plan after a read-back, {args.flows:,} flows desired: plan, encode, send, record", lambda: sync(rec))
    listed = change(args.listed // 3)  # desired and installed differ: every flow listed twice
    with tempfile.TemporaryDirectory() as tmp:
        ctl, api = rest_api(pathlib.Path(tmp), listed, args.owners)
        try:
            auth = {"authorization": f"Bearer {TOKEN}"}
            row(f"GET /v1/switches/<dpid>/flows, {2 * (args.listed // 3) * 3:,} rows", lambda: api.handle(
                Request("GET", "/v1/switches/0000000000000001/flows", {}, {}, b"", "127.0.0.1")).encoded())
            row(f"GET /v1/switches, one switch of {args.owners:,} ports", lambda: ctl.api.handle(
                Request("GET", "/v1/switches", {}, auth, b"", "127.0.0.1")).encoded())
        finally:
            ctl.close()
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load {os.getloadavg()[0]:.1f}, "
          f"Python {sys.version.split()[0]}; CPU ms (thread_time)")
    print("| step | longest stretch ms (of which collector) | CPU ms | green-thread switches |")
    print("|---|---:|---:|---:|")
    for name, longest, cpu, switches, collecting in rows:
        print(f"| {name} | {longest:.1f} ({collecting:.0f}) | {cpu:.0f} | {switches} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
