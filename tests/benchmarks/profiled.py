"""Run a Canopy controller with a cProfile that a benchmark switches on and off (not collected by pytest).

    python tests/benchmarks/profiled.py OUT.pstats run --config FILE     (PYTHONPATH: the checkout to run)

The same as ``canopy run``, plus: SIGUSR1 starts profiling, SIGUSR2 stops it and writes the statistics
gathered so far (every window since the start, summed) to OUT.pstats. port_to_ping sends them around each
sample so the profile holds the controller's work during the samples only, not its start or the settling
polls between them. Every green thread runs on the main thread, so one profiler sees them all. Standalone on
purpose: it runs from a path, with PYTHONPATH naming the checkout under test (``--before DIR``).
"""

import cProfile
import signal
import sys


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    profiler = cProfile.Profile()

    def start(_sig, _frame):
        profiler.enable()

    def stop(_sig, _frame):
        profiler.disable()
        profiler.dump_stats(out)

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, stop)
    from controller.cli import main as canopy_main
    return canopy_main(argv)


if __name__ == "__main__":
    sys.exit(main())
