"""The longest stretch of CPU between two turns of the event loop, in-process, for the State and policy steps of
the bursts benchmark at 10,000 (issue 15 item 1; docs/benchmarks.md "bursts"). Load-independent: CPU time of the
main thread (``time.thread_time()``) between two pauses of a ``Pacer`` (controller/pacer.py), or the whole call
where a step has no pacer; the cyclic collector paused, as the controller has it during these steps.

    .venv/bin/python -m tests.benchmarks.stretches [--count 10000] [--json]

Steps, on the policy of tests.benchmarks.bursts (subnet ``out``: ``--count`` vports; the apply: ``--count`` more
in subnet ``apply``; one domain):
- plan: ``policydoc.plan`` of the apply (its pacer as the service wires it);
- commit: ``State.policy_committed`` of the apply's changes;
- bind: ``State.vrs_update`` with ``--count`` ports of subnet ``out`` appearing at once (binding);
- fib: the domain's FIB read by a compile after one more vport is bound (``Routes.fib``, 2 x ``--count`` host routes);
- rest_fib: ``GET /v1/domains/{id}/fib``'s handler on that FIB, pausing where the REST lane would.
Not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

from controller import policy as pol
from controller import policydoc
from controller.discovery import PortInfo, VrsSnapshot
from controller.pacer import Pacer, collector_paused
from controller.programmer import Programmer
from controller.rest import dataplane
from controller.state import State
from controller.store import Change
from tests.benchmarks.bursts import APPLY_NET, document
from tests.benchmarks.evpn_routes import host_ip, mac

APPLY_EVERY = 40  # the service's pacer (controller/app.py)
STATE_EVERY = 500  # State's (controller/app.py)


class Stretches:
    """A pause for a Pacer that records the CPU time since the previous pause; ``longest`` includes the stretches
    before the first and after the last pause of a ``measure``d call."""

    def __init__(self):
        self.longest = 0.0
        self.pauses = 0
        self._since = time.thread_time()

    def pause(self) -> None:
        now = time.thread_time()
        self.longest = max(self.longest, now - self._since)
        self.pauses += 1
        self._since = time.thread_time()

    def measure(self, work):
        self._since = time.thread_time()
        out = work()
        self.pause()
        self.pauses -= 1
        return out


def measured(work, every: int | None = None):
    """(result, longest stretch in ms, pauses); ``every``: the Pacer handed to ``work`` pauses that often."""
    stretches = Stretches()
    pacer = Pacer(stretches.pause, every) if every else Pacer(stretches.pause)
    with collector_paused():  # as in the controller: an OVSDB update, an apply and a programming pass pause it
        out = stretches.measure(lambda: work(pacer))
    return out, round(stretches.longest * 1000, 1), stretches.pauses


def ports(count: int, prefix: str, first_ofport: int) -> tuple:
    return tuple(PortInfo(name=f"p-{prefix}{i}", ofport=first_ofport + i,
                          external_ids=(("iface-id", f"{prefix}{i}"), ("attached-mac", _mac(prefix, i))))
                 for i in range(count))


def _mac(prefix, i):
    return mac("0e" if prefix == "o" else "0a", i)


def snapshot(infos, changed=None) -> VrsSnapshot:
    """kvm1 with ``infos`` (and its tunnel port); ``changed``: the ports the OVSDB update changed, as the reporter
    names them (ovsdb/vrs.py)."""
    changed = None if changed is None else {p.name: p for p in changed}
    return VrsSnapshot("kvm1", "peer", "kvm1", vtep_ip="10.251.0.1", datapath_id=1, bridge_present=True,
                       fail_mode="secure", protocols=("OpenFlow13",),
                       ports=infos + (PortInfo(name="vxlan0", ofport=9, type="vxlan"),),
                       changed=None if changed is None else frozenset(changed), changed_ports=changed)


def run(count: int) -> dict:
    allocator = pol.Allocator({}, 65000, (10000, 20000))
    base = policydoc.plan(pol.Policy(), document(count, applied=False), "bench", allocator)
    state = State(base.policy)
    programmer = Programmer(state)
    out = {}
    applied = document(count, applied=True)
    plan, out["plan_ms"], _ = measured(
        lambda pacer: policydoc.plan(state.policy, applied, "bench", allocator, pacer=pacer), APPLY_EVERY)
    _, out["commit_ms"], _ = measured(lambda pacer: _paced(state, pacer).policy_committed(plan.policy, plan.changes),
                                      STATE_EVERY)
    state.vrs_update(snapshot(()))  # the switch is connected before the burst
    report = snapshot(*[ports(count, "o", 100)] * 2)  # built before the clock: the report as OVSDB hands it over
    _, out["bind_ms"], _ = measured(lambda pacer: _paced(state, pacer).vrs_update(report), STATE_EVERY)
    state.pacer = Pacer()
    state.vrs_update(snapshot(ports(count, "o", 100) + ports(count, "a", 100 + count)))
    programmer.refresh(full=True)
    last = snapshot(ports(count, "o", 100) + ports(count + 1, "a", 100 + count))
    state.policy_committed(*_one_more(state, count))
    state.vrs_update(last)
    programmer.refresh()
    did = state.policy.find("domain", "bench/dom")["id"]
    routes = programmer.live.routes
    state.policy_committed(*_one_more(state, count + 1))
    state.vrs_update(snapshot(last.ports[:-1] + ports(count + 2, "a", 100 + count)[-1:] + last.ports[-1:]))
    programmer.refresh()
    _, out["fib_ms"], _ = measured(lambda pacer: routes.fib(did))
    out["fib_routes"] = len(routes.fib(did))
    out["rest_fib_ms"] = rest_fib(state, programmer, did)
    return out


def rest_fib(state, programmer, did) -> float:
    """The longest stretch (ms) of GET /v1/domains/{id}/fib's handler, its pauses the stretches' own."""
    stretches = Stretches()
    [fib] = [r for r in dataplane.routes(state, programmer, dict, stretches.pause) if r.pattern.endswith("/fib")]
    with collector_paused():
        stretches.measure(lambda: fib.handler(None, did))
    return round(stretches.longest * 1000, 1)


def _paced(state, pacer):
    """``state`` pausing with ``pacer`` (as the app wires it), if this version of State pauses at all."""
    state.pacer = pacer
    return state


def _one_more(state, i):
    """A policy with vport a<i> added to subnet apply, and its change."""
    policy = state.policy.copy()
    sub = policy.find("subnet", "bench/apply")
    vid = f"extra{i}"
    policy.put("vport", {"id": vid, "source": None, "subnet_id": sub["id"], "name": f"a{i}", "description": "",
                         "mac": _mac("a", i), "ips": [host_ip(APPLY_NET, i)],
                         "binding": {"flavour": "kvm", "iface_id": f"a{i}", "port_name": None, "vnic_id": None,
                                     "host": None, "trunk_port": None, "vlan": None},
                         "port_security": True, "acls": []})
    return policy, [Change("vport", vid, "put", None, seq=state.last_seq + 1)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=open(os.devnull, "w"))  # the controller's level, logged nowhere
    out = run(args.count)
    print(json.dumps(out) if args.json else "\n".join(f"{k}: {v}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
