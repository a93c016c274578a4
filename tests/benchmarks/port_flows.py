"""The flows for N new (and then gone) ports on one VRS: flow-mods, bytes and messages per port, the controller's
CPU from the compiled desired state to the last byte, and ovs-vswitchd's CPU to take them against ``ovs-ofctl``.

    .venv/bin/python -m tests.benchmarks.port_flows [--ports 10000] [--ofports] [--repeat 3] [--ovs]

evpn_routes' policy (tests/benchmarks/evpn_routes.py: N vports in subnet ``out`` of a routed domain, w1 bound
already), as tests/benchmarks/evpn_announce.py builds it: one VRS report binds the N ports, a programming pass
compiles them, and kvm1's reconciler (a stand-in switch that takes the bytes and answers each commit at once)
plans, encodes and sends the change set; then a report without them, and the change set removing their flows.
Ports as in the lab (``ofport`` -1: no device; one ARP answer per vport), or with ``--ofports`` as a VM's tap
(ofport 100 + i: a vport's dozen flows). Printed: flow-mods, bytes, messages (bundle adds: one per flow-mod and
group-mod, plus open and commit) per port; the reconciler's CPU (``time.thread_time``, medians of ``--repeat``
fresh runs): plan (``_plan``: FlowBook.plan by owner) and the rest (``_execute``: encode, send, record).

``--ovs`` (root, Open vSwitch): the same change sets into a real netdev bridge of a lab hypervisor, from the
reconciler of tests/integration/ofdriver.py (OpenFlow 1.4, one bundle), against the same flows as
``ovs-ofctl --bundle add-flows`` / ``del-flows --strict`` of a file into a second bridge holding the same
flows before; the CPU seconds of ovs-vswitchd (``/proc/PID/stat``: from the desired state handed to the driver, or
``ovs-ofctl`` started, to the driver's report of the switch in sync, or ``ovs-ofctl``'s exit, plus 0.5 s) and of the
driver process (which diffs everything: ofdriver.py's ``set_desired``, not the controller's plan by owner). The flood
groups of ``--ofports`` (one bucket per port) are cut to their first MAX_BUCKETS buckets in the OVS part: from stop
41 a group of more is split into parts of at most 1,000 (openflow/floods.py), so the cut changes nothing (it made
the groups of stop 40 fit OpenFlow's 64 KiB message). Not collected by pytest.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import pickle
import statistics
import subprocess
import sys
import time

RECONCILE_EVERY = 1000  # as controller/app.py
MAX_BUCKETS = 1000  # a flood group's buckets in the OVS part (one group-mod of 2,000 or more exceeds 64 KiB)


def world(n: int, ofports: bool):
    """(State, Programmer, the report binding the ``n`` ports, the report without them) of evpn_routes' policy."""
    from tests.benchmarks.evpn_announce import report, world as announce_world

    logging.getLogger("canopy").setLevel(logging.ERROR)
    state, programmer, _federation = announce_world(n)
    snap = report(n)
    ports = tuple(p if p.ofport is not None else dataclasses.replace(p, ofport=100 + i if ofports else -1)
                  for i, p in enumerate(snap.ports))
    return state, programmer, dataclasses.replace(snap, ports=ports), report(0)


class Counting:
    """kvm1 as a datapath: counts the bytes and messages written and answers every commit or barrier at once."""

    def __init__(self, version: int = 5):
        from controller.ryu_compat import ofproto_protocol

        desc = ofproto_protocol.ProtocolDesc(version)
        self.id, self.ofproto, self.ofproto_parser, self.xid = 5, desc.ofproto, desc.ofproto_parser, 0
        self.address = ("10.250.0.5", 1)
        self.rec, self.bytes, self.messages = None, 0, 0

    def send(self, data):
        self.bytes += len(data)
        at = 0
        while at < len(data):  # whole messages each write (openflow/changeset.py)
            at += int.from_bytes(data[at + 2:at + 4], "big")
            self.messages += 1
        for waiter in self.rec._waiters.values():
            waiter.event.set()

    def send_msg(self, msg):
        pass


def reconciler(switch):
    from controller.pacer import Pacer
    from controller.ryu_compat import hub
    from openflow.reconciler import SwitchReconciler

    rec = switch.rec = SwitchReconciler(switch, log=logging.getLogger("bench.port_flows"),
                                        pacer=Pacer(lambda: hub.sleep(0), RECONCILE_EVERY))
    rec._need_read = False  # as after a read-back of a switch holding nothing of Canopy's
    rec._book.read_back({})
    return rec


def change(state, programmer, rec, snap) -> dict:
    """``snap`` into State, a pass, and kvm1's change set: what it sent and the reconciler's CPU."""
    from controller.pacer import collector_paused

    with collector_paused():
        state.vrs_update(snap)
        programmer.refresh()
        session = next(iter(programmer.desired))
        wanted = programmer.desired[session]
        rec.set_desired_owners(wanted.flows, tuple(wanted.all_groups().values()), programmer.take_changes(session))
        before = dict(rec.counters), rec.datapath.bytes, rec.datapath.messages
        started = time.thread_time()
        changes = rec._plan()
        planned = time.thread_time()
        rec._execute(changes)
        done = time.thread_time()
        changes = None
    sent = {k: v - before[0][k] for k, v in rec.counters.items() if v != before[0][k]}
    return {"sent": sent, "bytes": rec.datapath.bytes - before[1], "messages": rec.datapath.messages - before[2],
            "plan": planned - started, "rest": done - planned}


def in_process(n: int, ofports: bool) -> dict:
    state, programmer, bound, gone = world(n, ofports)
    rec = reconciler(Counting())
    change(state, programmer, rec, gone)  # w1's flows, and the subnets' groups
    return {"add": change(state, programmer, rec, bound), "remove": change(state, programmer, rec, gone)}


def bytecodes(n: int, ofports: bool) -> dict:
    """Python bytecodes (``sys.settrace`` opcodes) of kvm1's reconciler per port: {"add", "remove"} -> (plan, the
    rest: encode, send, record), for tests/unit/test_port_flows_cost.py."""
    from tests.bytecodes import Bytecodes

    state, programmer, bound, gone = world(n, ofports)
    rec = reconciler(Counting())
    out = {}
    for what, snap in (("start", gone), ("add", bound), ("remove", gone)):
        state.vrs_update(snap)
        programmer.refresh()
        session = next(iter(programmer.desired))
        wanted = programmer.desired[session]
        rec.set_desired_owners(wanted.flows, tuple(wanted.all_groups().values()), programmer.take_changes(session))
        with Bytecodes() as planning:
            changes = rec._plan()
        with Bytecodes() as rest:
            rec._execute(changes)
        out[what] = (planning.count / n, rest.count / n)
    del out["start"]
    return out


def desired_flows(n: int, ofports: bool) -> tuple[list, list, list]:
    """(flows without the ports, flows with them, the groups with them: at most MAX_BUCKETS buckets each) as kvm1's
    desired state."""
    state, programmer, bound, gone = world(n, ofports)

    def flows_now(snap):
        state.vrs_update(snap)
        programmer.refresh()
        wanted = next(iter(programmer.desired.values()))
        return [f for fs in wanted.flows.values() for f in fs], list(wanted.all_groups().values())

    base = flows_now(gone)[0]
    added, groups = flows_now(bound)
    return base, added, [dataclasses.replace(g, buckets=g.buckets[:MAX_BUCKETS]) for g in groups]


# --------------------------------------------------------------------------------------------------- real OVS

def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def on_ovs(n: int, ofports: bool) -> dict:
    from openflow import meters
    from tests.benchmarks import flow_rate as fr
    from tests.harness import netns
    from tests.harness.lab import Lab
    base, added, groups = desired_flows(n, ofports)
    new = sorted(set(added) - set(base), key=lambda f: f.key)
    out = {"flows before": len(base), "flows after": len(added)}
    with Lab() as lab:
        hv = lab.add_hypervisor("hv1")
        ctl = lab.add_controller_host("ctl")
        vswitchd = hv.ovs.processes[-1].pid
        workdir = lab.workdir / "driver"
        workdir.mkdir()

        def desire(generation, flows):
            draft = workdir / "desired.tmp"
            draft.write_bytes(pickle.dumps((generation, flows, groups)))
            draft.replace(workdir / "desired.pickle")

        def measured(action, count, bridge, pids, generation=None):
            """CPU of ``pids`` from ``action`` to its end (the driver's report of ``generation`` in sync: a file, not
            a question to ovs-vswitchd, whose dump of 120,000 flows every poll would be its own CPU; or ``action``'s
            return: ovs-ofctl exits once its bundle is committed) plus 0.5 s; the flow count checked after."""
            cpu = [cpu_seconds(p) for p in pids]
            started = time.monotonic()
            action()
            if generation is not None:
                lab.wait_until(lambda: synced(generation), timeout=180, interval=0.05, what=f"generation {generation}")
            seconds = time.monotonic() - started
            time.sleep(0.5)
            used = [cpu_seconds(p) - c for p, c in zip(pids, cpu)]
            if flow_count(hv, bridge) != count:
                raise SystemExit(f"{bridge} holds {flow_count(hv, bridge)} flows, not {count}")
            return seconds, used

        def synced(generation):
            return any(e["generation"] == generation and e["status"]["state"] == "in_sync"
                       for e in fr.read_report(workdir).values())

        # idle: what vswitchd spends in 1 s doing nothing but its main loop with these bridges
        desire(1, base)
        driver = fr.start_driver(lab, ctl, workdir)
        hv.ovs.add_bridge("br-c", "fail_mode=secure", "protocols=OpenFlow13,OpenFlow14",
                          "other_config:disable-in-band=true")
        hv.vsctl("set-controller", "br-c", f"tcp:{ctl.ip}:{fr.OF_PORT}")
        lab.wait_until(lambda: flow_count(hv, "br-c") == len(base), timeout=120, interval=0.05, what="br-c synced")
        time.sleep(1.0)
        idle = cpu_seconds(vswitchd)
        time.sleep(2.0)
        out["vswitchd idle CPU s per s"] = (cpu_seconds(vswitchd) - idle) / 2
        out["canopy add"] = measured(lambda: desire(2, added), len(added), "br-c", [vswitchd, driver.pid], 2)
        out["canopy remove"] = measured(lambda: desire(3, base), len(base), "br-c", [vswitchd, driver.pid], 3)
        hv.vsctl("del-controller", "br-c")

        hv.ovs.add_bridge("br-o", "fail_mode=secure")
        for name, flows in (("base.txt", base), ("new.txt", new)):
            (lab.workdir / name).write_text("\n".join(map(render_flow, flows)) + "\n")
        (lab.workdir / "gone.txt").write_text("\n".join(map(strict_delete, new)) + "\n")
        env = {**os.environ, **hv.ovs.env}

        def ofctl(*args, stdin=None):
            def run():
                with open(stdin or os.devnull, "rb") as given:
                    subprocess.run(["ovs-ofctl", "-O", "OpenFlow14", "--bundle", *args], stdin=given, env=env,
                                   timeout=600, check=True, capture_output=True)
            return run

        for m in meters.named([*base, *new]).values():  # the meters the flows name first (openflow/meters.py)
            hv.ofctl("add-meter", "br-o", meters.render_meter(m))
        (lab.workdir / "groups.txt").write_text("\n".join(map(render_group, groups)) + "\n")
        netns.run(["ovs-ofctl", "-O", "OpenFlow14", "add-groups", "br-o", str(lab.workdir / "groups.txt")],
                  timeout=600, env=env)
        ofctl("add-flows", "br-o", str(lab.workdir / "base.txt"))()
        time.sleep(1.0)
        out["ofctl add"] = measured(ofctl("add-flows", "br-o", str(lab.workdir / "new.txt")), len(added), "br-o",
                                    [vswitchd])
        out["ofctl remove"] = measured(ofctl("--strict", "del-flows", "br-o", "-", stdin=lab.workdir / "gone.txt"),
                                       len(base), "br-o", [vswitchd])
    return out


def render_flow(f) -> str:
    from openflow.flows import render_flow as render

    return render(f)


def render_group(g) -> str:
    from openflow.flows import render_group as render

    return render(g)


def strict_delete(f) -> str:
    """``f`` as a line of ``ovs-ofctl --strict del-flows``: as Canopy deletes it, by full cookie, priority, match."""
    text = render_flow(f).split(",actions=")[0]
    return text.replace(f"cookie={f.cookie:#x}", f"cookie={f.cookie:#x}/-1", 1)


def flow_count(hv, bridge: str) -> int:
    reply = hv.ofctl("dump-aggregate", bridge)
    return int(reply.split("flow_count=")[1].split()[0])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=10000)
    parser.add_argument("--ofports", action="store_true", help="ports with an ofport (a VM's tap), not the lab's -1")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--ovs", action="store_true", help="also into a real OVS bridge, against ovs-ofctl")
    args = parser.parse_args(argv)
    n = args.ports
    runs = [in_process(n, args.ofports) for _ in range(args.repeat)]
    import openflow

    print(f"# port_flows {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}, code "
          f"{os.path.dirname(os.path.dirname(os.path.abspath(openflow.__file__)))}")
    print(f"{n:,} ports on kvm1 ({'ofport 100+i' if args.ofports else 'ofport -1, as in the lab'}), OpenFlow 1.4")
    for what in ("add", "remove"):
        first = runs[0][what]
        plan = statistics.median(r[what]["plan"] for r in runs) * 1000
        rest = statistics.median(r[what]["rest"] for r in runs) * 1000
        print(f"  {what:6s} {first['sent']}; per port: {sum(v for k, v in first['sent'].items() if k.startswith('flow')) / n:.2f}"
              f" flow-mods, {first['bytes'] / n:.0f} bytes, {first['messages'] / n:.2f} messages; reconciler CPU ms "
              f"(median of {len(runs)}): plan {plan:.1f}, encode+send+record {rest:.1f}, both {plan + rest:.1f}")
    if args.ovs:
        result = on_ovs(n, args.ofports)
        print(f"  real OVS: kvm1's flows {result['flows before']:,} -> {result['flows after']:,}; ovs-vswitchd idle "
              f"{result['vswitchd idle CPU s per s']:.3f} CPU s per s")
        for key in ("canopy add", "ofctl add", "canopy remove", "ofctl remove"):
            seconds, cpu = result[key]
            extra = f", driver {cpu[1]:.2f}" if len(cpu) > 1 else ""
            print(f"    {key:14s} {seconds:6.2f} s to in sync (driver) or exit (ovs-ofctl); CPU s: ovs-vswitchd {cpu[0]:.2f}{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
