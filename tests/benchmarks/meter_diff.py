"""The reconciler's work for one port added to a switch holding N vports in sync, each with its port's DHCP meter
(openflow/meterdiff.py), and its add pass for one port while W meter deletes wait for theirs: Python bytecodes
(load-independent) and CPU (``time.process_time``, median of the repeats).

    PYTHONPATH=CHECKOUT .venv/bin/python -P tests/benchmarks/meter_diff.py [--vports 500 5000 20000]
        [--waiting 100 2000] [--repeat 3]

The switch is tests/unit/test_punt_meters.py's ``MeterSwitch`` (it holds meters and flows as the bytes it is sent
say, and answers barriers at once); the reconciler is synced with the N vports' punt flows, then handed one more
vport (its owner as the only one changed, as the app hands it) and run until in sync: one meter add, its flow. Run it
with PYTHONPATH naming the checkout to measure (a git archive of main for "before"). Not collected by pytest.
"""

from __future__ import annotations

import argparse
import statistics
import time

from controller.ryu_compat import hub
from openflow import meters
from openflow import pipeline as p
from openflow.flows import Owner, flow
from tests.bytecodes import opcodes
from tests.unit.test_punt_meters import MeterSwitch, synced


def punt(port: int, name: str | None = None):
    """A vport's DHCP punt through its port's meter (ofport ``port``), owned by vport ``name`` (vm<port>)."""
    owner = Owner("vport", name or f"vm{port}")
    return flow(p.SERVICES, 150, {"reg6": port, "eth_type": 0x800, "ip_proto": 17, "udp_dst": 67},
                meters.punt("dhcp", port), owner)


def owners(ports) -> dict:
    return {f.owner: frozenset({f}) for f in map(punt, ports)}


def settle(rec) -> None:
    with hub.Timeout(10):
        while rec._sync():
            pass


def meter_mods(switch) -> list:
    return [entry for entry in switch.log if entry[0].startswith("meter")]


def one_port_added(vports: int, measure=opcodes):
    """``measure(add)`` (default: its bytecodes) of the reconciler's rounds, and the desired state handed to it, for one
    port added to a switch holding ``vports`` vports in sync, each with its port's DHCP meter."""
    switch = MeterSwitch(5)
    desired = owners(range(1, vports + 1))
    rec = synced(switch, [f for fs in desired.values() for f in fs])
    rec.set_desired_owners(desired, (), None)  # as the app hands it: by owner, the owners changed since
    settle(rec)
    new = owners([vports + 1])
    more = {**desired, **new}
    del switch.log[:]

    def add() -> None:
        rec.set_desired_owners(more, (), set(new))
        settle(rec)

    got = measure(add)
    assert meter_mods(switch) == [("meter_add", meters.PORT_DHCP + vports + 1)] and switch.violations == []
    assert len(switch.meters) == vports + 1
    return got


def add_pass_with_deletes_waiting(waiting: int, measure=opcodes):
    """``measure`` of the add and modify pass for one port added to a switch whose ``waiting`` vports just left, their
    meters' deletes found and waiting for their own pass (the round's flows go first)."""
    switch = MeterSwitch(5)
    ports = range(1, waiting + 3)
    rec = synced(switch, list(map(punt, ports)))
    kept = owners((1, 2))
    rec.set_desired_owners(kept, (), {Owner("vport", f"vm{port}") for port in ports[2:]})
    rec._count_meters()
    assert not rec._meter_parts()["meter_add"]  # the deletes found; none sent (the round's flows go first)
    new = owners((waiting + 10,))
    rec.set_desired_owners({**kept, **new}, (), set(new))
    rec._count_meters()
    parts = {}
    got = measure(lambda: parts.update(rec._meter_parts()))
    assert parts["meter_add"] == [(meters.PORT_DHCP + waiting + 10, meters.meter(meters.PORT_DHCP + waiting + 10,
                                                                                 meters.DEFAULT_RATES))]
    return got


def cpu_ms(function) -> float:
    start = time.process_time()
    function()
    return (time.process_time() - start) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vports", type=int, nargs="+", default=[500, 5000, 20000])
    parser.add_argument("--waiting", type=int, nargs="+", default=[100, 2000])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for waiting in args.waiting:
        count = add_pass_with_deletes_waiting(waiting)
        cpu = [add_pass_with_deletes_waiting(waiting, cpu_ms) for _ in range(args.repeat)]
        print(f"{waiting:>7,} meter deletes waiting: an add pass for one port: {count:>9,} bytecodes, CPU "
              f"{statistics.median(cpu):.2f} ms (median of {args.repeat})", flush=True)
    for vports in args.vports:
        count = one_port_added(vports)
        cpu = [one_port_added(vports, cpu_ms) for _ in range(args.repeat)]
        print(f"{vports:>7,} vports: one port added: {count:>9,} bytecodes, CPU {statistics.median(cpu):.2f} ms "
              f"(median of {args.repeat}: {', '.join(f'{c:.2f}' for c in cpu)})", flush=True)


if __name__ == "__main__":
    main()
