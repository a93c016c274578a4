"""What the flood-limit report (openflow/floodlimits.py) costs REST's listings, before/after review42c (stop 42).

    .venv/bin/python -m tests.benchmarks.flood_limit_views [--code DIR] [--pairs 800] [--runs 5]

One subnet past ~780 VTEPs is over on every switch of it (``--pairs`` switches): GET /v1/subnets makes a view of
each subnet (1,000 here, none of them that one), GET /v1/switches of each switch (``--pairs``). CPU
(``time.thread_time``, medians of ``--runs``) and bytecodes (tests/bytecodes.py) of those views' ``flood_limits``, in
a child process of the checkout measured: ``--code`` (``git archive main | tar -x -C /tmp/X``) and this one,
interleaved. Prints the figures; not collected by pytest.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

CHILD = r"""
import logging, statistics, sys, time
logging.disable(logging.CRITICAL)
from openflow import floodlimits, floods
from openflow.flows import Owner
from tests.bytecodes import opcodes
from tests.unit.test_oversized_group import remote
pairs, runs = int(sys.argv[1]), int(sys.argv[2])
everyone, local_only = floods.group_ids(10_000)
wide = floods.flood_groups(everyone, local_only, (), tuple(map(remote, range(781))), Owner("subnet", "big"))
watch = floodlimits.FloodWatch(chassis_of=lambda session: "hv-" + session)
for i in range(pairs):
    watch.check(f"s{i}", "big", wide)
def subnets():
    for j in range(1000):
        watch.of_subnet(f"x{j}")
def switches():
    rows = watch.by_chassis() if hasattr(watch, "by_chassis") else None  # (after: once a listing, api.py)
    for i in range(pairs):
        watch.of_chassis(f"hv-s{i}", rows) if rows is not None else watch.of_chassis(f"hv-s{i}")
for name, view in (("1,000 subnet views", subnets), (f"{pairs:,} switch views", switches)):
    cpu = []
    for _ in range(runs):
        started = time.thread_time(); view(); cpu.append(time.thread_time() - started)
    print(f"  {name}: {statistics.median(cpu) * 1000:.1f} ms CPU, {opcodes(view):,} bytecodes")
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", help="another checkout to measure first (before)")
    parser.add_argument("--pairs", type=int, default=800)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    print("load:", os.getloadavg())
    for code in ([args.code] if args.code else []) + [here]:
        print(code)
        subprocess.run([sys.executable, "-c", CHILD, str(args.pairs), str(args.runs)], cwd=code, check=True,
                       env={**os.environ, "PYTHONPATH": code})


if __name__ == "__main__":
    main()
