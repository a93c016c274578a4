"""What a live migration's activation (controller/state_activation.py) adds to State's big reports, before/after.

    .venv/bin/python -m tests.benchmarks.activation_cost [--code DIR] [--ports 10000] [--runs 5]

One VRS report of ``--ports`` KVM ports (each showing its own vport) taken by a fresh State, then one report with
every port gone; and a second switch showing every vport too (all in migration: after, a ``standby`` port each),
then its ports gone; between the two, 1,000 packet-ins refused from that switch (a port not pending; the last
pending port with another MAC: stop 42's index, before it a scan of the switch's pending ports). CPU (``time.thread_time``) of each ``State.vrs_update``, medians of ``--runs``, each run in a
child process of the checkout measured: ``--code`` (``git archive main | tar -x -C /tmp/X``) and this one,
interleaved. Prints the figures; not collected by pytest.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import gc, json, logging, sys, time
logging.disable(logging.CRITICAL)
from controller import policy as pol
from controller.discovery import PortInfo, VrsSnapshot
from controller.model import normalise
from controller.state import State
n, both = int(sys.argv[1]), sys.argv[2] == "1"
p = pol.Policy()
for i in range(n):
    v = normalise("vport", {"subnet_id": "s", "name": f"vm{i}", "mac": f"02:00:00:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
                            "binding": {"flavour": "kvm"}})
    v.update(id=f"v{i}", source=None)
    p.put("vport", v)
def snap(session, dpid, ports):
    return VrsSnapshot(session=session, peer="p", chassis=session, datapath_id=dpid, bridge_present=True, ports=ports)
ports = tuple(PortInfo(name=f"tap{i}", ofport=i + 1, external_ids=(("iface-id", f"vm{i}"),)) for i in range(n))
state = State(p)
gc.collect(); gc.freeze()
out = {}
if both:
    state.vrs_update(snap("a", 1, ports))
    t = time.thread_time(); state.vrs_update(snap("b", 2, ports)); out["second switch, all migrating"] = time.thread_time() - t
    t = time.thread_time()
    for _ in range(1000):
        state.activate(2, 10 ** 7, None, now=1.0)  # a packet-in from a port that is not pending
    out["1,000 packet-ins, not pending"] = time.thread_time() - t
    t = time.thread_time()
    for _ in range(1000):
        state.activate(2, n, "02:66:66:66:66:66", now=1.0)  # the last pending port, another MAC
    out["1,000 packet-ins, foreign MAC"] = time.thread_time() - t
    t = time.thread_time(); state.vrs_update(snap("b", 2, ())); out["second switch's ports gone"] = time.thread_time() - t
else:
    t = time.thread_time(); state.vrs_update(snap("a", 1, ports)); out["first report"] = time.thread_time() - t
    t = time.thread_time(); state.vrs_update(snap("a", 1, ())); out["every port gone"] = time.thread_time() - t
print(json.dumps(out))
"""


def measure(code: str, ports: int, both: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(code))
    done = subprocess.run([sys.executable, "-c", CHILD, str(ports), "1" if both else "0"], cwd=code, env=env,
                          capture_output=True, text=True, timeout=600, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--code", help="the checkout before (default: none: this one only)")
    parser.add_argument("--ports", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    figures: dict[tuple, list] = {}
    for _ in range(args.runs):
        for label, code in (("before", args.code), ("after", ".")):
            if code is None:
                continue
            for both in (False, True):
                for what, seconds in measure(code, args.ports, both).items():
                    figures.setdefault((what, label), []).append(seconds)
    print(f"load: {os.getloadavg()[0]:.1f}  ports: {args.ports}  runs: {args.runs}")
    for (what, label), values in sorted(figures.items()):
        print(f"{what:32} {label:6} median {statistics.median(values) * 1000:8.1f} ms CPU "
              f"(min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})")


if __name__ == "__main__":
    main()
