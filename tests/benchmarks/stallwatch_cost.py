"""What the stall watch costs when nothing stalls (docs/operations.md "Where the loop was when it stalled").

The controller's lag probe (controller/lagprobe.py) and its cause, the stall watch (controller/stallwatch.py) with the
lag's split (controller/lagcause.py ``LateSamples``), wired as controller/app.py wires them, run on an eventlet hub
for ``--seconds`` with nothing else to do. Figures per second of that run: the watching OS thread's CPU (its own
thread CPU clock), and the event loop's CPU with the watch on against the probe alone (``stall_report_ms: 0``: no
thread; the split of each sample still runs), each run ``--repeat`` times, interleaved. Say the machine's load with
them: the thread's wake-ups cost more when it waits for a CPU.

    .venv/bin/python -m tests.benchmarks.stallwatch_cost --seconds 20 --repeat 5
"""

from __future__ import annotations

import argparse
import os
import threading
import time

import eventlet


def one_run(seconds: float, report: float | None) -> tuple[float, float]:
    """(the watching thread's CPU, the event loop's CPU), each in ms per second of the run."""
    from controller.lagcause import LateSamples
    from controller.lagprobe import LagProbe
    from controller.stallwatch import StallWatch

    probe = LagProbe()
    watch = StallWatch(probe, LateSamples(8), report)
    probe.cause = watch
    watch.start()
    loop_before, wall = time.thread_time(), time.monotonic()
    green = eventlet.spawn(probe.run, eventlet.sleep)
    eventlet.sleep(seconds)
    green.kill()
    loop_ms = (time.thread_time() - loop_before) * 1000 / (time.monotonic() - wall)
    thread_ms = 0.0
    if watch._thread is not None:
        clock = time.pthread_getcpuclockid(watch._thread.ident)
        thread_ms = time.clock_gettime(clock) * 1000 / (time.monotonic() - wall)
    watch.stop()
    return thread_ms, loop_ms


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    assert threading.current_thread() is threading.main_thread()
    for i in range(args.repeat):
        load_before = os.getloadavg()[0]
        thread_ms, loop_on = one_run(args.seconds, 0.1)
        _, loop_off = one_run(args.seconds, None)
        print(f"run {i + 1}: watching thread {thread_ms:.2f} ms/s; event loop {loop_on:.2f} ms/s with the watch, "
              f"{loop_off:.2f} ms/s without (load {load_before:.1f} -> {os.getloadavg()[0]:.1f})", flush=True)


if __name__ == "__main__":
    main()
