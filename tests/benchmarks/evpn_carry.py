"""In-process CPU of the publish whose View took only some of the vports bound while its pass ran: evpn_routes' announce
in the lab, which tests/benchmarks/evpn_announce.py does not reach (there one report binds every port before the pass).

    PYTHONPATH=CHECKOUT .venv/bin/python -P tests/benchmarks/evpn_carry.py [--routes 10000] [--taken 1000] [--repeat 5]
                                                                          [--count]

In the lab, 10,000 ports of one OVSDB transaction are bound chunk by chunk over a second or more, each chunk's
routes announced at bind (bgp/early.py), and the first programming pass starts after the first chunks: its View has
``--taken`` of the vports, and its publish carries the routes of the others (``EarlyAnnounce.carry``) and compares
every key told or carried with what the speaker holds (``Federation._hand_over``), under the Federation's lock with no
pause: the announce's longest stretch of CPU at stop 43's start (docs/benchmarks.md "ann43, stop 43"). Here:
evpn_announce's world, ``--taken`` ports bound and that pass's View delta and compile, the rest bound (announced at
bind), then that pass's publish (1) and the next pass's (2), which has them all. CPU (``time.thread_time``) of each
publish and of its hand-over, min and median of ``--repeat`` runs (each from a fresh world, the cyclic collector off);
``--count``: their Python bytecodes in one more run. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import statistics
import sys


def run(n: int, taken: int, meter) -> dict:
    """{"publish 1", "hand-over 1", "publish 2", "hand-over 2"}: ``meter()``'s count (a context manager class whose
    instance has ``count`` after the block; with a ``run`` method for the hand-over's, as tests/bytecodes.py
    ``Bytecodes``)."""
    import bgp.federation as federation_module
    from tests.benchmarks import evpn_announce as ea

    state, programmer, federation = ea.world(n)
    federation.early = True
    out: dict = {}
    hand_over = federation_module.Federation._hand_over

    def measured(self, *args):
        with meter() as m:
            hand_over(self, *args)
        out[f"hand-over {len(out) // 2 + 1}"] = m.count

    def view_compiled():
        reach = programmer.live.apply(programmer.journal.take())
        view = programmer.view
        work = {s: o for s, o in reach.owners.items() if o and s not in reach.rebuild and s in view.switches}
        programmer._recompile(view, work, set().union(*reach.owners.values()))
        return view

    federation_module.Federation._hand_over = measured
    try:
        with ea.collector_off():
            state.vrs_update(ea.report(taken))
            view = view_compiled()
            state.vrs_update(ea.report(n))  # bound while the pass runs: announced at bind, not in its View
            for k, view in enumerate((view, None)):
                view = view or view_compiled()
                with meter() as m:
                    federation.publish(view)
                out[f"publish {k + 1}"] = m.count
    finally:
        federation_module.Federation._hand_over = hand_over
    if sum(1 for route in federation.speaker.desired.values() if route.TYPE == 2) != n + 1:
        raise SystemExit("the speaker does not hold a type 2 route per vport")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=10000)
    parser.add_argument("--taken", type=int, default=1000, help="vports the first pass's View has")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--count", action="store_true", help="also each figure's Python bytecodes (one more run)")
    args = parser.parse_args(argv)
    from tests.benchmarks.evpn_announce import _Clock  # (thread CPU seconds)

    runs = [run(args.routes, args.taken, _Clock) for _ in range(args.repeat)]
    print(f"{args.routes:,} vports, the first pass's View with {args.taken:,}: CPU ms, min / median of {args.repeat}")
    for name in runs[0]:
        values = sorted(r[name] * 1000 for r in runs)
        print(f"  {name:12s} {values[0]:8.1f} / {statistics.median(values):8.1f}")
    if args.count:
        from tests.bytecodes import Bytecodes

        for name, count in run(args.routes, args.taken, Bytecodes).items():  # (a publish's: without its hand-over)
            print(f"  {name:12s} {count:>12,} bytecodes{' (without its hand-over)' if name[0] == 'p' else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
