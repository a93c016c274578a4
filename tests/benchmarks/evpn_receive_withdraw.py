"""In-process CPU of evpn_routes' receive_withdraw: N received type-2 routes withdrawn, ExaBGP's side and Canopy's.

    PYTHONPATH=CHECKOUT .venv/bin/python -P tests/benchmarks/evpn_receive_withdraw.py [--routes 10000] [--repeat 3]

evpn_routes' policy and kvm1 (w1 bound, as tests/benchmarks/evpn_announce.py), Canopy holding the N routes GoBGP
A sends in the lab (``evpn_routes.remote_routes``), their flows pushed to the switch's reconciler. Then the N
withdrawals, each its own UPDATE with one MP_UNREACH_NLRI as GoBGP sends them, through each step, CPU
(``time.thread_time``) of each:

- **ExaBGP**: the checkout's extension installed, each UPDATE body unpacked by ExaBGP's ``Update.unpack_message``
  and handed to its API dispatch (``Processes.message``) for a JSON process, whose writes are collected as the
  relay would read them (the reactor's flush before each sleep: once at the end here);
- **speaker**: those lines through ``RouteBook.handle_line``, in reads of ``bgp.speakerapi.READ_BURST`` bytes, the
  Federation told after each (as the speaker does);
- **pass**: ``Federation.refresh_import`` (the import's delta into State), then ``Programmer.refresh`` (the View
  and the compile), either once for all N (``--passes 1``) or after every N/passes withdrawals read (at most one
  pass per API line: ExaBGP's batches);
- **publish**: ``Federation.publish`` of the pass's View (MAC mobility, originate: what the app does in every pass
  that hands out), whose cost should follow the local endpoints, not the received MACs;
- **reconciler**: the switch's change set after each pass (``set_desired_owners``, plan, encode, send, record), to
  push_cpu's stand-in datapath.

Checked at the end: the switch's reconciler holds no flow of an EVPN MAC and Canopy holds no received route. Medians of
``--repeat`` runs. Neither the relay nor the event loop is in it. Run it with PYTHONPATH naming the checkout to
measure (a git archive of main for "before"). Not collected by pytest.
"""

from __future__ import annotations

import argparse
import gc
import logging
import statistics
import struct
import sys
import time
from types import SimpleNamespace

from tests.unit.test_importer import BookSpeaker as RouteBookSpeaker

SESSION = "vrs:kvm1"
PEER = "127.0.0.1"  # the codec's neighbor (bgp.exabgp_codec._codec): where the withdrawals come from


class Pipe:
    """A process's stdin as ExaBGP's Processes.write uses it: keeps what is written."""

    def __init__(self):
        self.data = []

    def write(self, data):
        self.data.append(data)

    def flush(self):
        pass


def exabgp_processes():
    """ExaBGP's Processes (the checkout's extension installed) with one JSON API process, every UPDATE to it."""
    from bgp import exabgp_codec, exabgp_ext

    exabgp_ext.install()
    processes, pipe = exabgp_ext.Processes(), Pipe()
    processes._process["canopy"] = SimpleNamespace(stdin=pipe)
    processes._encoder["canopy"] = exabgp_ext.Response.JSON("5.0.0")
    processes._notify = lambda neighbor, event: ["canopy"]
    return processes, pipe


def flush_api():
    """The extension's flush of held API messages (in bgp.exabgp_ext_api, or bgp.exabgp_ext before it)."""
    from bgp import exabgp_codec, exabgp_ext

    api = sys.modules.get("bgp.exabgp_ext_api")
    return api.flush_api if api is not None else exabgp_ext.flush_api


def mp_unreach(route) -> bytes:
    """An UPDATE body withdrawing ``route`` as GoBGP does: one MP_UNREACH_NLRI and nothing else."""
    from bgp import exabgp_codec, exabgp_ext

    value = struct.pack("!HB", 25, 70) + exabgp_ext.build_nlri(route, "withdraw").pack_nlri()
    attribute = bytes([0x90, 15]) + struct.pack("!H", len(value)) + value
    return struct.pack("!HH", 0, len(attribute)) + attribute


def exabgp_lines(bodies: list) -> tuple[list, float]:
    """ExaBGP reading each UPDATE body and writing its API message(s): (the lines, CPU s)."""
    from exabgp.bgp.message import Message
    from exabgp.bgp.message.direction import Direction

    from bgp import exabgp_codec, exabgp_ext

    neighbor, negotiated = exabgp_codec._codec(65000, 65001)
    processes, pipe = exabgp_processes()
    started = time.thread_time()
    for body in bodies:
        update = exabgp_ext.Update.unpack_message(body, Direction.IN, negotiated)
        processes.message(Message.CODE.UPDATE, neighbor, "receive", update, None, b"", b"")
    flush_api()(processes)
    cpu = time.thread_time() - started
    return b"".join(pipe.data).decode().splitlines(), cpu


def announce_lines(routes) -> list:
    from exabgp.bgp.message import Message
    from exabgp.bgp.message.direction import Direction

    from bgp import exabgp_codec, exabgp_ext

    neighbor, negotiated = exabgp_codec._codec(65000, 65001)
    processes, pipe = exabgp_processes()
    for route in routes:
        body = exabgp_codec.encode_update(route, "announce")[19:]
        update = exabgp_ext.Update.unpack_message(body, Direction.IN, negotiated)
        processes.message(Message.CODE.UPDATE, neighbor, "receive", update, None, b"", b"")
    flush_api()(processes)
    return b"".join(pipe.data).decode().splitlines()


class BookSpeaker(RouteBookSpeaker):
    """The Federation's speaker: tests.unit.test_importer's (a real RouteBook fed the lines, no process behind it,
    what the Federation reads of it kept in step with bgp.speaker by the unit tests); what a publish hands it goes
    nowhere."""

    def set_desired(self, routes):
        pass

    announce = set_desired

    def complete(self):
        pass

    def withdraw(self, keys):
        pass


class Lab:
    """kvm1 with w1 bound, the Federation over a BookSpeaker, the switch's reconciler in sync."""

    def __init__(self):
        from bgp.federation import Federation
        from controller import policy as pol
        from controller import policydoc
        from controller.pacer import Pacer
        from controller.programmer import Programmer
        from controller.ryu_compat import hub
        from controller.state import State
        from openflow.reconciler import SwitchReconciler
        from tests.benchmarks.evpn_announce import report
        from tests.benchmarks.evpn_routes import policy
        from tests.benchmarks.push_cpu import Switch

        plan = policydoc.plan(pol.Policy(), policy(0), "bench", pol.Allocator({}, 65000, (10000, 20000)))
        self.state = State(plan.policy)
        self.programmer = Programmer(self.state)
        self.speaker = BookSpeaker()
        self.federation = Federation(None, "/unused", self.state, speaker=self.speaker)
        self.state.vrs_update(report(0))
        self.programmer.refresh(full=True)
        self.switch = Switch(5, 5)  # answers every request at once; OpenFlow 1.4 (bundles), as OVS here
        self.rec = self.switch.rec = SwitchReconciler(self.switch, log=logging.getLogger("bench.rw"),
                                                      pacer=Pacer(lambda: hub.sleep(0), 1000))
        self.rec._need_read = False
        self.rec._book.read_back({})
        self.push()

    def read(self, lines: list) -> None:
        """The speaker's reads: READ_BURST bytes of lines at a time, the Federation told after each."""
        from bgp.speakerapi import READ_BURST

        burst = 0
        for line in lines:
            self.speaker.book.handle_line(line)
            burst += len(line) + 1
            if burst >= READ_BURST:
                self.federation._received_changed()
                burst = 0
        self.federation._received_changed()

    def pass_(self) -> None:
        self.federation.refresh_import()
        self.programmer.refresh()

    def publish(self) -> None:
        self.federation.publish(self.programmer.view)

    def push(self) -> None:
        desired = self.programmer.desired[SESSION]
        self.rec.set_desired_owners(desired.flows, desired.all_groups().values(), self.programmer.take_changes(SESSION))
        self.rec._execute(self.rec._plan())


def run(n: int, passes: int) -> dict:
    from controller.pacer import collector_paused
    from tests.benchmarks.evpn_routes import remote_routes

    logging.getLogger("canopy").setLevel(logging.ERROR)
    routes = remote_routes(n)
    lab = Lab()
    lab.read(announce_lines(routes))
    lab.pass_()
    lab.publish()
    lab.push()
    held = lab.rec.counters.get("flow_add", 0)
    bodies = [mp_unreach(route) for route in routes]
    gc.collect()
    cpu = {}
    with collector_paused():
        lines, cpu["ExaBGP: read the UPDATEs, write the API messages"] = exabgp_lines(bodies)
        per_pass = -(-len(lines) // passes)
        cpu.update(dict.fromkeys(("speaker: handle the lines", "pass: import, View, compile",
                                  "publish: MAC mobility, originate", "reconciler: plan, encode, send"), 0.0))
        sent, deleted = lab.switch.bytes, lab.rec.counters.get("flow_delete", 0)
        for start in range(0, len(lines), per_pass):
            step = time.thread_time()
            lab.read(lines[start:start + per_pass])
            cpu["speaker: handle the lines"] += time.thread_time() - step
            step = time.thread_time()
            lab.pass_()
            cpu["pass: import, View, compile"] += time.thread_time() - step
            step = time.thread_time()
            lab.publish()
            cpu["publish: MAC mobility, originate"] += time.thread_time() - step
            step = time.thread_time()
            lab.push()
            cpu["reconciler: plan, encode, send"] += time.thread_time() - step
    cpu["Canopy total"] = sum(v for k, v in cpu.items() if not k.startswith("ExaBGP"))
    evpn_held = [owner for owner in lab.rec._book.installed if owner.kind == "evpn"]
    if lab.speaker.book.received or evpn_held:
        raise SystemExit("the withdrawn routes or their flows are still there")
    counts = {"API lines": len(lines), "flows held before": held,
              "flow deletes": lab.rec.counters.get("flow_delete", 0) - deleted, "bytes sent": lab.switch.bytes - sent}
    return cpu, counts


def main(argv=None) -> int:
    import os

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--passes", type=int, default=1, help="programming passes over the N withdrawals")
    args = parser.parse_args(argv)
    runs = [run(args.routes, args.passes) for _ in range(args.repeat)]
    code = os.path.dirname(os.path.dirname(os.path.abspath(sys.modules["bgp"].__file__)))
    print(f"{args.routes:,} received routes withdrawn, {args.passes} pass(es); code {code}; load "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}; CPU ms, median (min-max) of {args.repeat} runs")
    for step in runs[0][0]:
        values = sorted(r[0][step] * 1000 for r in runs)
        print(f"  {step:50s} {statistics.median(values):8.1f} ({values[0]:.1f}-{values[-1]:.1f})")
    print("  " + ", ".join(f"{k} {v:,}" for k, v in runs[0][1].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
