"""CPU instructions (valgrind's callgrind, independent of the machine's load) of each step of evpn_withdraw.py's
withdraw, and optionally of the functions inside them.

    PYTHONHASHSEED=0 valgrind --tool=callgrind --instr-atstart=no --collect-atstart=no \\
        --callgrind-out-file=DIR/callgrind.out.%p .venv/bin/python -P tests/benchmarks/callgrind_steps.py CHECKOUT \\
        [--routes 2000] [--wrap module:Class.function ...]
    .venv/bin/python -P tests/benchmarks/callgrind_steps.py --sum DIR

The first form runs one ``evpn_withdraw.run`` of the checkout CHECKOUT (a git archive of another commit, this file
copied in as for evpn_withdraw.py) with callgrind collecting only inside its steps: a dump per step, named by it
(callgrind's client requests, from a helper built with gcc against valgrind/callgrind.h in a temporary folder).
``--wrap``: each named function dumps as it is entered and left, so that each dump is the work of the innermost
wrapped function running (its own: "excl"; with the wrapped functions it called: "incl"; the wrapping's calls count
a few thousand instructions a call, so wrap functions called per run or per step, not per item). ``--sum DIR``: the
dumps' instructions by step and function. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import functools
import glob
import importlib
import os
import re
import subprocess
import sys
import tempfile

HELPER = r"""
#include <valgrind/callgrind.h>
static int started;
void cg_on(void) { if (!started) { started = 1; CALLGRIND_START_INSTRUMENTATION; } CALLGRIND_ZERO_STATS;
                   CALLGRIND_TOGGLE_COLLECT; }
void cg_off(const char *name) { CALLGRIND_TOGGLE_COLLECT; CALLGRIND_DUMP_STATS_AT(name); }
void cg_dump(const char *name) { CALLGRIND_DUMP_STATS_AT(name); }
"""
STEPS = ("state", "view", "compile", "publish", "push", "exabgp")  # evpn_withdraw.run's meters, in its order


def helper() -> ctypes.CDLL:
    """The client requests, built once into a temporary folder."""
    folder = tempfile.mkdtemp(prefix="callgrind-steps-")
    source, library = os.path.join(folder, "cg.c"), os.path.join(folder, "cg.so")
    with open(source, "w") as out:
        out.write(HELPER)
    subprocess.run(["gcc", "-O1", "-shared", "-fPIC", "-o", library, source], check=True)
    return ctypes.CDLL(library)


def measure(routes: int, wrapped: list) -> None:
    lib, stack, names = helper(), [], iter(STEPS)

    def dump() -> None:
        lib.cg_dump("|".join(stack).encode())

    def wrap(target: str) -> None:
        module, _, attr = target.partition(":")
        holder = importlib.import_module(module)
        *path, name = attr.split(".")
        for part in path:
            holder = getattr(holder, part)
        real = getattr(holder, name)

        @functools.wraps(real)
        def counted(*args, **kwargs):
            if not stack:
                return real(*args, **kwargs)
            dump()
            stack.append(attr)
            try:
                return real(*args, **kwargs)
            finally:
                dump()
                stack.pop()
        setattr(holder, name, counted)

    class Meter:
        def __enter__(self):
            stack.append(next(names))
            lib.cg_on()
            return self

        def __exit__(self, *_exc):
            lib.cg_off("|".join(stack).encode())
            stack.pop()
            self.count = 0

    from tests.benchmarks import evpn_withdraw

    for target in wrapped:
        wrap(target)
    evpn_withdraw.run(routes, Meter)


def summed(folder: str) -> None:
    incl, excl = collections.Counter(), collections.Counter()
    for name in glob.glob(os.path.join(folder, "callgrind.out.*.*")):
        with open(name) as dumped:
            text = dumped.read()
        trigger = re.search(r"^desc: Trigger: Client Request: (.*)$", text, re.M)
        if trigger is None:
            continue
        total = int(re.search(r"^(?:summary|totals): (\d+)", text, re.M).group(1))
        path = trigger.group(1).split("|")
        excl["|".join(path)] += total
        for end in range(1, len(path) + 1):
            incl["|".join(path[:end])] += total
    for step in sorted(incl, key=lambda k: (STEPS.index(k.split("|")[0]) if k.split("|")[0] in STEPS else 9, k)):
        print(f"{incl[step] / 1e6:9.1f} M incl {excl[step] / 1e6:9.1f} M excl  {step}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkout", nargs="?", help="the checkout to measure (under valgrind)")
    parser.add_argument("--routes", type=int, default=2000)
    parser.add_argument("--wrap", nargs="*", default=[], metavar="module:Class.function")
    parser.add_argument("--sum", metavar="DIR", help="sum the dumps in DIR")
    args = parser.parse_args(argv)
    if args.sum:
        summed(args.sum)
        return 0
    sys.path.insert(0, os.path.abspath(args.checkout))
    measure(args.routes, args.wrap)
    return 0


if __name__ == "__main__":
    sys.exit(main())
