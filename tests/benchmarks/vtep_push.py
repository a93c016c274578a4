"""CPU a programming pass spends on the hardware VTEPs' desired rows when one vport changes (issue 13: "the VTEP push
over VTEPs x (bindings + endpoints)"; docs/benchmarks.md, Issue 13). In-process and load-independent: CPU time of
the main thread (``time.thread_time()``), the cyclic collector paused as in a pass.

    .venv/bin/python -m tests.benchmarks.vtep_push [--vteps 20] [--vports 10000] [--vrs 20] [--subnets 100]
                                                   [--samples 20] [--json]

Layout: one domain, ``--subnets`` subnets sharing ``--vports`` vports, spread over ``--vrs`` KVM hypervisors; VTEP
``tor<t>`` is connected and bound to subnets 2t and 2t+1 (the other subnets are carried by no VTEP). Each sample one
vport's port appears on (or leaves) its hypervisor, then one programming pass (``Programmer.refresh``) and the app's
VTEP push (``CanopyApp._push_vteps``, handing rows to a stand-in of the OVSDB server), in two cases: the vport's subnet
is bound to one VTEP (``bound``), or to none (``unbound``, when there is such a subnet).

Printed per case: ``vtep_ms`` (median and max): the VTEP part of the pass (``programmer.vteps.update`` where the
code has it, plus ``_push_vteps``); ``pass_ms``: the whole refresh plus the push; ``computed``: ``vtep_desired``
calls per pass; ``rest``: the CPU of one ``GET /v1/vteps`` (median, max). Run against another checkout's code (main) for a before/after: ``cd <checkout> && python -m
tests.benchmarks.vtep_push`` with this file copied there (it uses only what both have). Not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from types import SimpleNamespace

from controller import app, derive
from controller import policy as pol
from controller import policydoc
from controller.discovery import PortInfo, VrsSnapshot, VtepPort, VtepSnapshot
from controller.pacer import collector_paused
from controller.programmer import Programmer
from controller.state import State


def subnet_net(i: int, per: int) -> str:
    """The first three octets of subnet i's /24 (or, over 240 vports per subnet, the first two of its /16)."""
    return f"10.{100 + i // 200}.{i % 200}" if per < 240 else f"10.{100 + i}"


def vport_ip(i: int, k: int, per: int) -> str:
    return f"{subnet_net(i, per)}.{10 + k}" if per < 240 else f"{subnet_net(i, per)}.{k // 250}.{k % 250 + 2}"


def vport_name(i: int, k: int) -> str:
    return f"v{i}-{k}"


def vport_mac(i: int, k: int) -> str:
    return f"02:{i // 256:02x}:{i % 256:02x}:00:{k // 256:02x}:{k % 256:02x}"


def document(vteps: int, vports: int, subnets: int) -> dict:
    per = vports // subnets
    subs = [{"name": f"s{i}", "cidr": f"{subnet_net(i, per)}.0/24" if per < 240 else f"{subnet_net(i, per)}.0.0/16",
             "gateway": f"{subnet_net(i, per)}.1" if per < 240 else f"{subnet_net(i, per)}.0.1",
             "vports": [{"name": vport_name(i, k), "mac": vport_mac(i, k), "ips": [vport_ip(i, k, per)],
                         "binding": {"flavour": "kvm"}} for k in range(per)]} for i in range(subnets)]
    bindings = [{"switch": f"tor{t}", "port": "p1", "vlan": 100 + n, "subnet": f"bench/s{2 * t + n}"}
                for t in range(vteps) for n in range(2) if 2 * t + n < subnets]
    return {"tenants": [{"name": "bench", "domains": [{"name": "dom", "subnets": subs}]}], "vtep_bindings": bindings}


def placement(vrs: int, vports: int, subnets: int) -> dict[int, list[tuple[int, int]]]:
    """hypervisor -> the (subnet, vport) it holds, round robin."""
    per, out = vports // subnets, {h: [] for h in range(vrs)}
    for i in range(subnets):
        for k in range(per):
            out[(i * per + k) % vrs].append((i, k))
    return out


def port(i: int, k: int, ofport: int) -> PortInfo:
    name = vport_name(i, k)
    return PortInfo(f"tap-{name}", ofport, vport_mac(i, k), (("iface-id", name), ("attached-mac", vport_mac(i, k))))


def vrs_snapshot(h: int, ports: tuple, changed: PortInfo | None = None, gone: str | None = None) -> VrsSnapshot:
    names = {p.name: p for p in ports if changed is not None and p.name == changed.name}
    return VrsSnapshot(f"ovsdb:hv{h}", "peer", f"hv{h}", vtep_ip=f"10.251.{h // 250}.{h % 250 + 1}", datapath_id=h + 1,
                       bridge_present=True, ports=ports + (PortInfo("vxlan0", 9, None, (), "vxlan"),),
                       changed=frozenset(names) | ({gone} if gone else set()) if changed or gone else None,
                       changed_ports=names if changed or gone else None)


class Timed:
    """CPU spent in the wrapped calls, and the ``vtep_desired`` calls made."""

    def __init__(self):
        self.cpu = 0.0
        self.computed = 0

    def wrap(self, fn):
        def timed(*args, **kwargs):
            started = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.cpu += time.thread_time() - started
        return timed

    def counting(self, fn):
        def counted(*args, **kwargs):
            self.computed += 1
            return fn(*args, **kwargs)
        return counted


def run(vteps: int, vports: int, vrs: int, subnets: int, samples: int) -> dict:
    started = time.perf_counter()
    plan = policydoc.plan(pol.Policy(), document(vteps, vports, subnets), "bench",
                          pol.Allocator({}, 65000, (10000, 20000)))
    state = State(plan.policy)
    placed = placement(vrs, vports, subnets)
    ports = {h: tuple(port(i, k, 10 + n) for n, (i, k) in enumerate(held)) for h, held in placed.items()}
    for h in range(vrs):
        state.vrs_update(vrs_snapshot(h, ports[h]))
    for t in range(vteps):
        vnis = [state.policy.find("subnet", f"bench/s{2 * t + n}")["vni"] for n in range(2) if 2 * t + n < subnets]
        state.vtep_update(VtepSnapshot(f"vtep:tor{t}", "peer", f"tor{t}", tunnel_ips=(f"10.252.0.{t + 1}",),
                                       ports=(VtepPort("p1", tuple((100 + n, vni) for n, vni in enumerate(vnis))),)))
    programmer = Programmer(state)
    with collector_paused():
        programmer.refresh(full=True)
    glue = SimpleNamespace(programmer=programmer, state=state, _vtep_pushed={},
                           ovsdb=SimpleNamespace(set_vtep_desired=lambda name, desired: None))
    app.CanopyApp._push_vteps(glue)  # every VTEP handed its rows once, as after the start
    rest = rest_cost(state, programmer, samples)
    timed = Timed()
    if hasattr(programmer, "vteps"):
        programmer.vteps.update = timed.wrap(programmer.vteps.update)
    derive.vtep_desired = timed.counting(derive.vtep_desired)
    if hasattr(app, "vtep_desired"):
        app.vtep_desired = timed.counting(app.vtep_desired)
    out = {"setup_s": round(time.perf_counter() - started, 1), "vteps": vteps, "vports": vports, "vrs": vrs,
           "subnets": subnets, "samples": samples, "rest": rest}
    cases = [("bound", 0)] + ([("unbound", subnets - 1)] if subnets > 2 * vteps else [])  # a subnet no VTEP carries
    for case, sid in cases:
        h = next(h for h, held in placed.items() if any(i == sid for i, _ in held))
        n, (i, k) = next((n, x) for n, x in enumerate(placed[h]) if x[0] == sid)
        moved = ports[h][n]
        without = ports[h][:n] + ports[h][n + 1:]
        vtep_ms, pass_ms, computed = [], [], []
        for sample in range(samples):
            snap = vrs_snapshot(h, without, gone=moved.name) if sample % 2 == 0 else vrs_snapshot(h, ports[h], moved)
            state.vrs_update(snap)
            timed.cpu, timed.computed = 0.0, 0
            with collector_paused():
                cpu = time.thread_time()
                programmer.refresh()
                push = time.thread_time()
                app.CanopyApp._push_vteps(glue)
                done = time.thread_time()
            vtep_ms.append((timed.cpu + done - push) * 1000)
            pass_ms.append((done - cpu) * 1000)
            computed.append(timed.computed)
        out[case] = {"vtep_ms_median": round(statistics.median(vtep_ms), 2), "vtep_ms_max": round(max(vtep_ms), 2),
                     "pass_ms_median": round(statistics.median(pass_ms), 1), "computed": sorted(set(computed))}
    return out


def rest_cost(state, programmer, samples: int) -> dict:
    """CPU of one ``GET /v1/vteps`` (its handler: every VTEP's view, rows included) after the start's pass."""
    from controller.rest import vteps as rest_vteps

    listing = next(r.handler for r in rest_vteps.routes(state, programmer) if r.pattern == "/v1/vteps")
    ms = []
    for _ in range(samples):
        with collector_paused():
            cpu = time.thread_time()
            listing(None)
            ms.append((time.thread_time() - cpu) * 1000)
    return {"get_vteps_ms_median": round(statistics.median(ms), 2), "get_vteps_ms_max": round(max(ms), 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vteps", type=int, default=20)
    parser.add_argument("--vports", type=int, default=10000)
    parser.add_argument("--vrs", type=int, default=20)
    parser.add_argument("--subnets", type=int, default=100)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=open(os.devnull, "w"))  # the controller's level, logged nowhere
    out = run(args.vteps, args.vports, args.vrs, args.subnets, args.samples)
    out["load"] = [round(x, 2) for x in os.getloadavg()]
    out["cpus"] = os.cpu_count()
    print(json.dumps(out) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
