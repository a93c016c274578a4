"""CPU instructions (valgrind's callgrind) of a big delete's intake: N bound vports' ports deleted in one OVSDB
update, from its text to State having taken every slice's report (tests/unit/test_withdraw_whole_intake_cost.py
``Intake``: the framing and decoding, the replica's plan and slices, rows deleted, the bridge's ``ports`` shrinking, the
reporter and claims, State's leaving path and reports), and apart what State's subscribers do with it (the
Federation's hooks: bgp/).

    PYTHONHASHSEED=0 PYTHONPATH=CHECKOUT valgrind --tool=callgrind --instr-atstart=no --collect-atstart=no \\
        --callgrind-out-file=DIR/cg.out .venv/bin/python -P tests/benchmarks/intake_instructions.py [--ports 10000] \\
        [--steps] --sum DIR

Callgrind instruments nothing until the intake starts (the world of N bound vports is built at native speed), then
counts instructions by segments, each dumped to a file of its own (client requests through a small C library built
here with ``cc`` from ``CGSTEP``): the intake less its subscribers' hooks, the hooks (State's ``_subscribers`` and
``_leaving_listeners``). ``--steps``: the intake split further at the functions of ``STEPS`` (each segment counted to
the innermost step running: exclusive of the steps it calls; the wrappers' own work counted too). The figures, summed
from the dumps: ``--sum DIR`` (the same command line again, after the run; without valgrind it prints them). Run with
PYTHONPATH naming the checkout to measure (a git archive of main for "before", this file and
tests/unit/test_withdraw_whole_intake_cost.py copied into it). Not collected by pytest.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import importlib
import pathlib
import re
import subprocess
import sys
import tempfile

CGSTEP = r"""
#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_START_INSTRUMENTATION; CALLGRIND_ZERO_STATS; CALLGRIND_TOGGLE_COLLECT; }
void cg_dump(const char *name) { CALLGRIND_DUMP_STATS_AT(name); }
"""
HOOKS = "State's subscribers (the Federation's hooks)"
INTAKE = "the intake, less its subscribers"
STEPS = (  # module:function of the intake's steps (--steps)
    "ovsdb.jsonstream:Parser.feed", "ovsdb.jsonstream:Parser.finish",
    "ovsdb.idl.refusals:check_plain_sets", "ovsdb.idl.slices:plan", "ovsdb.idl.slices:_slice",
    "ovsdb.idl.slices:_rest", "ovsdb.longsets:pace_long_sets", "ovsdb.idl.rowloop:_delete_all",
    "ovsdb.idl.rowloop:_modify", "ovsdb.idl.paced:_TrackingIdl.notify_deleted", "ovsdb.vrs:VrsReporter.refresh",
    "controller.state:State.vrs_update", "controller.state:State.vrs_leaving", "controller.state:State._index_ports",
    "controller.state:State._relocate",
)


class Segments:
    """Callgrind's counters dumped at each step's start and end, named after the step that ran (``stack``)."""

    def __init__(self):
        source = pathlib.Path(tempfile.mkdtemp()) / "cgstep.c"
        source.write_text(CGSTEP)
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(source.with_suffix(".so")), str(source)],
                       check=True)
        self.lib = ctypes.CDLL(str(source.with_suffix(".so")))
        self.stack = [INTAKE]

    def step(self, name: str, function):
        """``function`` counted as the segment ``name`` (the steps it calls apart)."""
        stack, dump = self.stack, self.lib.cg_dump

        @functools.wraps(function)
        def counted(*args, **kwargs):
            dump(stack[-1].encode())
            stack.append(name)
            try:
                return function(*args, **kwargs)
            finally:
                dump(stack.pop().encode())
        return counted

    def wrap(self, target: str) -> None:
        module, _, path = target.partition(":")
        owner = importlib.import_module(module)
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        setattr(owner, name, self.step(target, getattr(owner, name)))

    def hooks(self, state) -> None:
        state._subscribers[:] = [self.step(HOOKS, hook) for hook in state._subscribers]
        state._leaving_listeners[:] = [(self.step(HOOKS, told), self.step(HOOKS, left))
                                       for told, left in state._leaving_listeners]


def summed(directory: pathlib.Path) -> dict[str, int]:
    """{segment: instructions} of the dumps in ``directory`` (callgrind's "desc: Trigger: Client Request: NAME" and
    "totals:" lines)."""
    out: dict[str, int] = {}
    for path in directory.glob("cg.out*"):
        text = path.read_text(errors="replace")
        name = re.search(r"^desc: Trigger: Client Request: (.*)$", text, re.M)
        total = re.search(r"^(?:totals|summary): (\d+)", text, re.M)
        if name and total:
            out[name.group(1)] = out.get(name.group(1), 0) + int(total.group(1))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", type=int, default=10000)
    parser.add_argument("--steps", action="store_true", help="split the intake at the functions of STEPS")
    parser.add_argument("--sum", metavar="DIR", help="print the figures of the dumps in DIR (after the run)")
    args = parser.parse_args(argv)
    from tests.benchmarks.evpn_announce import collector_off
    from tests.unit.test_withdraw_whole_intake_cost import Intake, type2_routes

    if args.sum and list(pathlib.Path(args.sum).glob("cg.out*")):
        figures = summed(pathlib.Path(args.sum))
        print(f"{args.ports:,} bound vports' ports deleted: instructions (callgrind)")
        for name, count in sorted(figures.items(), key=lambda item: -item[1]):
            print(f"  {name:70s} {count:>14,}")
        print(f"  {'all':70s} {sum(figures.values()):>14,}")
        return 0
    intake = Intake(args.ports)
    text = intake.delete_all()
    segments = Segments()
    for target in STEPS if args.steps else ():
        segments.wrap(target)
    segments.hooks(intake.state)
    with collector_off():
        segments.lib.cg_start()
        intake.take(text)
        segments.lib.cg_dump(INTAKE.encode())
    if intake.state.locations or type2_routes(intake.federation) or intake.reporter.last.ports:
        raise SystemExit("the intake did not unbind every vport")
    print(f"{args.ports:,} bound vports' ports deleted: intake taken")
    return 0


if __name__ == "__main__":
    sys.exit(main())
