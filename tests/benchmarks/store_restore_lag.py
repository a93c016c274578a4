"""The event loop's lag while a standby's store restores the active's snapshot (docs/benchmarks.md "store41").

    .venv/bin/python -m tests.benchmarks.store_restore_lag [--vports 5000] [--runs 3] [--code /tmp/main]

Each run is a Python process of its own, eventlet's threads patched and the store's ``offload`` the controller's
(``controller.ryu_compat.blocking``), as under ryu-manager: a real Store in a temporary directory restores a snapshot
of ``--vports`` vports while a green thread probes the hub every 2 ms. Prints per run the longest gap between
two of its turns (the hub's lag, ms), how many probes ran during the restore, the restore's wall time and the
process's CPU time, for this checkout and, interleaved, for ``--code`` (another checkout: ``git archive main | tar -x
-C /tmp/main``), with the load average. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap

RUN = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {root!r})
    from controller.ryu_compat import blocking, hub
    hub.patch(thread=True)
    from controller.store import Store
    store = Store({data!r})
    store.offload = blocking
    body = lambda i: {{"id": f"v{{i}}", "subnet_id": "s1", "mac": "02:00:00:%02x:%02x:%02x" % (i >> 16, i >> 8 & 255,
                      i & 255), "ips": ["10.0.0.1"], "binding": {{"flavour": "kvm", "iface_id": f"v{{i}}"}}}}
    snapshot = {{"objects": {{"vport": {{f"v{{i}}": body(i) for i in range({vports})}}}}, "meta": {{}}, "last_seq": 9,
                "history": [9, 1.0]}}
    gaps, turns, last = [0.0], [0], [time.monotonic()]

    def ticker():
        while True:
            now = time.monotonic()
            gaps[0] = max(gaps[0], now - last[0])
            last[0] = now
            turns[0] += 1
            hub.sleep(0.002)  # a probe every 2 ms, not a spin: the process's CPU is the restore's

    hub.spawn(ticker)
    hub.sleep(0.05)
    gaps[0], turns[0], last[0] = 0.0, 0, time.monotonic()
    wall, cpu = time.monotonic(), time.process_time()
    store.restore(snapshot)
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    hub.sleep(0)
    print(round(gaps[0] * 1000, 1), turns[0], round(wall * 1000), round(cpu * 1000))
""")


def run(root: str, vports: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        code = RUN.format(root=root, data=os.path.join(tmp, "data"), vports=vports)
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=root)
        if done.returncode:
            raise SystemExit(done.stderr)
        return [float(x) for x in done.stdout.split()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vports", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--code", help="another checkout, run interleaved with this one")
    args = parser.parse_args()
    here = os.getcwd()
    print(f"load {os.getloadavg()}; {args.vports} vports; lag ms, hub turns, restore wall ms, process CPU ms")
    for i in range(args.runs):
        for name, root in ([("before", args.code)] if args.code else []) + [("after", here)]:
            lag, turns, wall, cpu = run(root, args.vports)
            print(f"run {i + 1} {name:6}: lag {lag:7.1f} ms  turns {int(turns):6d}  wall {int(wall):5d} ms  "
                  f"cpu {int(cpu):5d} ms")
    print(f"load {os.getloadavg()}")


if __name__ == "__main__":
    main()
