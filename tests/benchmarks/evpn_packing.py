"""GoBGP A's intake of Canopy's type-2 routes by the number of routes ExaBGP packs into one UPDATE
(``bgp.exabgp_ext.ANNOUNCED_PER_UPDATE``), in evpn_routes' lab (docs/benchmarks.md, "announce, stop 37").

    .venv/bin/python -m tests.benchmarks.evpn_packing [--routes 10000] [--sizes 8,16,32] [--rounds 3] [--verbose]

Canopy announces N routes once (evpn_routes' announce: N KVM ports in one OVSDB transaction) so that the routes are
Canopy's own (read back from ``/v1/bgp/routes?direction=out``), then withdraws them (the ports deleted). Then, for
each round and each size in turn (interleaved, so that the machine's load is spread alike over the sizes), the
feeder writes those routes to A packed as Canopy's ExaBGP packs them with that size (``evpn_routes.encode_packed``:
ExaBGP's own encoder in this process; the controller's ExaBGP is not changed), all at once, until A holds them
("intake": seconds and A's CPU), then withdraws them one route per UPDATE until A holds none ("withdraw": A's CPU for
dropping paths received packed, GoBGP re-encoding each path's MP_REACH_NLRI for its peers: docs/evpn.md, "Grouped
EVPN UPDATEs"). A's export policy holds its announcements back from its peers (Canopy, Y), as in evpn_routes'
announce; its withdrawals reach them.

Needs root, Open vSwitch and gobgpd, like the integration tests. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import types

from tests.benchmarks import evpn_routes as er
from tests.harness.lab import Lab


@contextlib.contextmanager
def packing(size: int):
    """ExaBGP's encoder in this process packs ``size`` announcements to an UPDATE meanwhile."""
    from bgp import exabgp_ext

    before = exabgp_ext.ANNOUNCED_PER_UPDATE
    exabgp_ext.ANNOUNCED_PER_UPDATE = size
    try:
        yield
    finally:
        exabgp_ext.ANNOUNCED_PER_UPDATE = before


def canopy_routes(b: er.Bench) -> list:
    """Canopy's N type-2 routes for N new ports, as it announces them; A holds none of them afterwards."""
    vports, base = [er.out_vport(i) for i in range(b.n)], b.base
    b.timed("canopy announce", lambda: er.transact(b.hv, er.add_ports_ops(vports)),
            {"gobgp": lambda: b.a.count() == base + b.n + 1}, ("gobgp",), A=b.a.count)
    routes = [r for r in b.canopy.api.get("/v1/bgp/routes?direction=out&type=2").json["items"]
              if r["mac"].startswith("02:0e:")]
    if len(routes) != b.n:
        raise SystemExit(f"Canopy announced {len(routes)} type-2 routes for {b.n} ports")
    b.timed("canopy withdraw", lambda: er.transact(b.hv, er.delete_ports_ops(b.hv, {v["name"] for v in vports})),
            {"gobgp": lambda: b.a.count() == base}, ("gobgp",), A=b.a.count)
    return routes


def sweep(b: er.Bench, routes: list, sizes: list[int], rounds: int) -> dict:
    """{size: [{intake_s, intake_cpu, withdraw_s, withdraw_cpu, updates}, ...]} for each round."""
    from bgp.routes import route_from_dict

    parsed = [route_from_dict(r) for r in routes]
    _, withdraw = b.encoded(parsed)
    packed = {}
    for size in sizes:
        with packing(size):
            packed[size] = er.encode_packed(parsed)
    out: dict = {size: [] for size in sizes}
    for _ in range(rounds):
        for size in sizes:
            filling = er.Filling(b.a, b.base, b.n, b.base + b.n)
            took = b.timed(f"intake, {size} per UPDATE", b.feed(packed[size]), {"gobgp": filling}, ("gobgp",),
                           A=b.a.count)
            gone = b.timed(f"withdraw, {size} per UPDATE", b.feed(withdraw),
                           {"gobgp": lambda: b.a.count() == b.base}, ("gobgp",), A=b.a.count)
            out[size].append({"intake_s": round(took["gobgp"], 2), "intake_cpu": took["cpu"]["gobgpd A"],
                              "withdraw_s": round(gone["gobgp"], 2), "withdraw_cpu": gone["cpu"]["gobgpd A"],
                              "bytes": len(packed[size])})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--routes", type=int, default=10000, help="type-2 routes (default 10,000)")
    parser.add_argument("--sizes", default="8,16,32", help="announcements per UPDATE to compare (default 8,16,32)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over every size (default 3)")
    parser.add_argument("--verbose", action="store_true", help="print each step as it runs (on stderr)")
    parser.add_argument("--code", metavar="DIR", help="run the controller of the checkout at DIR with this venv")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip().isdigit()]
    if not 1 <= args.routes <= er.MAX_ROUTES or len(sizes) != len(args.sizes.split(",")) or \
            not all(1 <= s <= 4096 for s in sizes) or args.rounds < 1:
        parser.error("--routes 1..60000, --sizes integers 1..4096 separated by commas, --rounds >= 1")
    with Lab() as lab:
        if args.code:
            er.health.run_code(lab, args.code)
        bench = er.Bench(lab, types.SimpleNamespace(routes=args.routes, verbose=args.verbose, stretches=0,
                                                    py_spy=None, py_spy_phase=None))
        bench.build()
        result = sweep(bench, canopy_routes(bench), sizes, args.rounds)
        bench.feeder.close()
    print(json.dumps(result, indent=1))
    for size, runs in result.items():
        def column(name):
            return [r[name] for r in runs]

        print(f"{size:4d} per UPDATE ({runs[0]['bytes']:,} bytes): intake {column('intake_s')} s, A CPU "
              f"{column('intake_cpu')} (median {statistics.median(column('intake_cpu')):.2f}); withdraw "
              f"{column('withdraw_s')} s, A CPU {column('withdraw_cpu')} (median "
              f"{statistics.median(column('withdraw_cpu')):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
