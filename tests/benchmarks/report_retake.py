"""State taking a switch's last report again after a report failed (controller/state.py ``_failed``): CPU of the
longest stretch between two pauses of State's pacer (every 200 units), and of the whole re-take.

hv1 holds ``--ports`` bound ports; a report adding as many fails on its last row (an injected error in the binding
index); the figures are this OS thread's CPU (``time.thread_time``) from the failure on. ``--code DIR`` runs the code
in DIR (``git archive main | tar -x -C DIR``) instead of this checkout's: run both interleaved, note ``uptime``.

    python tests/benchmarks/report_retake.py --ports 5000 --runs 3 [--code /tmp/main]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time


def one_run(ports: int) -> tuple[float, float]:
    from controller import binding
    from controller.pacer import Pacer
    from controller.state import State
    from tests.unit.test_compiler import add_vport, snapshot
    from tests.unit.test_report_ends import VMS, vports_state

    bad = f"p-vm{2 * ports - 1}"
    learn = binding.BindingIndex.learn_port
    failed = []

    def learn_port(self, snap, rank, flavour, port, *args):
        if port.name == bad:
            failed.append(time.thread_time())
            raise ValueError("a row State cannot take")
        return learn(self, snap, rank, flavour, port, *args)

    binding.BindingIndex.learn_port = learn_port
    try:
        state = State(vports_state().policy)
        names = [(f"vm{i}", 10 + i) for i in range(2 * ports)]
        for i in range(VMS + 3, 2 * ports):
            add_vport(state, "acme/web", f"vm{i}", f"02:00:00:00:{i >> 8 & 255:02x}:{i & 255:02x}", "10.0.1.200")
        state.vrs_update(snapshot("hv1", "10.251.0.1", names[:ports]))
        new = snapshot("hv1", "10.251.0.1", names)
        added = {port.name: port for port in new.ports[ports:2 * ports]}
        new = dataclasses.replace(new, changed=frozenset(added), changed_ports=added)
        marks = []
        state.pacer = Pacer(lambda: marks.append(time.thread_time()), every=200)
        try:
            state.vrs_update(new)
        except ValueError:
            pass
        end = time.thread_time()
        after = [failed[0]] + [mark for mark in marks if mark >= failed[0]] + [end]
        return max(b - a for a, b in zip(after, after[1:])), end - failed[0]
    finally:
        binding.BindingIndex.learn_port = learn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--code", help="run the code in this directory (a checkout of another commit)")
    args = parser.parse_args()
    root = args.code or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path.insert(0, root)
    import logging
    logging.disable(logging.WARNING)
    figures = [one_run(args.ports) for _ in range(args.runs)]
    longest, whole = (statistics.median(f[i] for f in figures) * 1000 for i in (0, 1))
    print(f"code {root}: {args.ports} ports, median of {args.runs}: longest stretch after the failure "
          f"{longest:.1f} ms CPU, the failure to the end {whole:.1f} ms CPU; load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
